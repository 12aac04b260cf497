#include "p2m/store_cmd.h"
#include "p2m/addr.h"
#include "p2m/label.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2m/err.h"
#include "p2m/store.h"
#include "store_priv.h"

/* Keys (see store.h). These scripts need a non-cluster Redis: they touch keys derived inside
 * the script (a relay's hash, a lease found by probing). */
const char p2m_channel_bound[] = P2M_CHANNEL_BOUND;

/* Helpers shared by the leasing scripts. live_relays() also forgets relays whose heartbeat hash
 * expired, and sets r.drain on those an operator is draining (p2m:draining). open_relays() keeps
 * those that are not draining, or, when every live relay is draining, all of them (and says so):
 * a drain must never leave a service without a relay (PROTOCOL 3.9). probe() returns the first
 * port of the relay's range, from `start` on and wrapping, that has neither a lease nor a recent
 * bind failure. */
#define LUA_LEASE_LIB                                                                                                              \
    "local function live_relays()\n"                                                                                               \
    "  local out = {}\n"                                                                                                           \
    "  for _, name in ipairs(redis.call('SMEMBERS', 'p2m:relays')) do\n"                                                           \
    "    local r = redis.call('HMGET', 'p2m:relay:' .. name, 'address', 'ports')\n"                                                \
    "    local lo, hi = string.match(r[2] or '', '^(%d+)-(%d+)$')\n"                                                               \
    "    if r[1] and lo then\n"                                                                                                    \
    "      table.insert(out, {name, r[1], tonumber(lo), tonumber(hi),\n"                                                           \
    "                         drain = redis.call('SISMEMBER', '" P2M_KEY_DRAINING "', name) == 1})\n"                              \
    "    elseif not r[1] then redis.call('SREM', 'p2m:relays', name) end\n"                                                        \
    "  end\n"                                                                                                                      \
    "  table.sort(out, function(a, b) return a[1] < b[1] end)\n"                                                                   \
    "  return out\n"                                                                                                               \
    "end\n"                                                                                                                        \
    "local function open_relays(relays)\n"                                                                                         \
    "  local out = {}\n"                                                                                                           \
    "  for _, r in ipairs(relays) do if not r.drain then table.insert(out, r) end end\n"                                           \
    "  if #out == 0 then return relays, #relays > 0 end\n"                                                                         \
    "  return out, false\n"                                                                                                        \
    "end\n"                                                                                                                        \
    "local function probe(r, start)\n"                                                                                             \
    "  local size = r[4] - r[3] + 1\n"                                                                                             \
    "  for i = 0, size - 1 do\n"                                                                                                   \
    "    local p = r[3] + (start + i) % size\n"                                                                                    \
    "    if redis.call('EXISTS', 'p2m:lease:' .. p) == 0 and\n"                                                                    \
    "       redis.call('EXISTS', 'p2m:portbusy:' .. r[1] .. ':' .. p) == 0 then return p end\n"                                    \
    "  end\n"                                                                                                                      \
    "  return nil\n"                                                                                                               \
    "end\n"                                                                                                                        \
    "local function make_lease(p, kind, label, service, pod, addr, relay, now, ttl)\n"                                             \
    "  local k = 'p2m:lease:' .. p\n"                                                                                              \
    "  redis.call('HSET', k, 'kind', kind, 'label', label, 'service', service, 'pod', pod, 'addr', addr,\n"                        \
    "             'relay', relay, 'created', now, 'state', 'pending')\n"                                                           \
    "  redis.call('EXPIRE', k, ttl)\n"                                                                                             \
    "end\n"

/* Whether pod p may serve label l: it owns it (p2m:labels, whose key the caller passes as k) or
 * shares it (p2m:label:LABEL:sharers). */
#define LUA_SERVES                                                                                                                 \
    "local function serves(k, l, p)\n"                                                                                             \
    "  return redis.call('HGET', k, l) == p or redis.call('SISMEMBER', '" P2M_KEY_LABEL "' .. l .. '" P2M_KEY_SHARERS              \
    "', p) == 1\n"                                                                                                                 \
    "end\n"

/* The authentication limiters (PROTOCOL 1.2, OPERATIONS "Security model"). Each is a hash
 * {n, until}: n failures so far, and no code is checked for its subject before `until`. One counts
 * per (pod ID, address), one per pod ID, and one per address over the distinct IDs that failed from
 * it. The first `free` failures cost nothing; then the wait is 1 s, doubling with every failure, up
 * to `cap`; a limiter is forgotten `keep` seconds after its last wait ends. An address the pod
 * authenticated from within `span` seconds (p2m:known:ID) answers only to its own (ID, address)
 * limiter, so a stranger guessing an ID, or a neighbour failing behind the same address, never
 * holds up a pod where it lives. */
#define LUA_LIMIT_LIB                                                                                                              \
    "local function lim_left(k, now)\n"                                                                                            \
    "  local u = tonumber(redis.call('HGET', k, 'until') or '0') or 0\n"                                                           \
    "  if u > now then return u - now end\n"                                                                                       \
    "  return 0\n"                                                                                                                 \
    "end\n"                                                                                                                        \
    "local function lim_strike(k, n, now, free, cap, keep)\n"                                                                      \
    "  local d = 0\n"                                                                                                              \
    "  if n > free then d = math.min(2 ^ math.min(n - free - 1, 30), cap) end\n"                                                   \
    "  redis.call('HSET', k, 'n', string.format('%d', n), 'until', string.format('%d', now + d))\n"                                \
    "  redis.call('EXPIRE', k, string.format('%d', keep + d))\n"                                                                   \
    "end\n"                                                                                                                        \
    "local function lim_known(k, addr, now, span)\n"                                                                               \
    "  local s = redis.call('ZSCORE', k, addr)\n"                                                                                  \
    "  return s and tonumber(s) >= now - span\n"                                                                                   \
    "end\n"                                                                                                                        \
    "local function mark_known(k, addr, now, span)\n"                                                                              \
    "  redis.call('ZADD', k, now, addr)\n"                                                                                         \
    "  redis.call('ZREMRANGEBYRANK', k, 0, -17)\n"                                                                                 \
    "  redis.call('EXPIRE', k, span)\n"                                                                                            \
    "end\n"

/* KEYS: limit:pair, limit:id, limit:addr, limit:addrids, known, pod, labels, labels:protocol.
 * ARGV: label, id, addr, now, free, cap, keep, span.
 *
 * The attempt is counted as a failure before its code is checked (register_commit takes it back
 * when the code matches): many guesses sent at once cannot all be checked before the first
 * failure lands. An unknown ID is counted exactly as a known one, so that the limiters do not tell
 * them apart either. */
static const char lua_auth_lookup[] =
    LUA_LIMIT_LIB "local now, free, cap, keep = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])\n"
                  "local known = lim_known(KEYS[5], ARGV[3], now, tonumber(ARGV[8]))\n"
                  "local wait = lim_left(KEYS[1], now)\n"
                  "if not known then wait = math.max(wait, lim_left(KEYS[2], now), lim_left(KEYS[3], now)) end\n"
                  "if wait > 0 then return {'limited', string.format('%d', wait)} end\n"
                  "lim_strike(KEYS[1], (tonumber(redis.call('HGET', KEYS[1], 'n')) or 0) + 1, now, free, cap, keep)\n"
                  "local struck = 'pair'\n"
                  "if not known then\n"
                  "  struck = 'all'\n"
                  "  lim_strike(KEYS[2], (tonumber(redis.call('HGET', KEYS[2], 'n')) or 0) + 1, now, free, cap, keep)\n"
                  "  if redis.call('SADD', KEYS[4], ARGV[2]) == 1 then\n"
                  "    redis.call('EXPIRE', KEYS[4], string.format('%d', keep + cap))\n"
                  "    lim_strike(KEYS[3], redis.call('SCARD', KEYS[4]), now, free, cap, keep)\n"
                  "  end\n"
                  "end\n"
                  "local p = redis.call('HMGET', KEYS[6], 'secret', 'disabled', 'epoch', 'digits', 'token_reuse')\n"
                  "if not p[1] then return {'nopod'} end\n"
                  "return {'ok', p[1], p[2] or '0', p[3] or '0', redis.call('HGET', KEYS[7], ARGV[1]) or '', p[4] or '6',\n"
                  "        p[5] or 'none', redis.call('HGET', KEYS[8], ARGV[1]) or '', struck}\n";

/* KEYS: otp step, pod, labels, session or '', limit:pair, limit:id, limit:addr, limit:addrids, known.
 * ARGV: id, label, session ttl, replay ttl, addr, now, struck, free, span.
 *
 * RFC 6238 5.2: a code is accepted once. A pod whose token_reuse is "same-address" (TAAS clients
 * open several pre-connections with one code) may use a code again within its step, for the same
 * label, from the address that used it first, 32 times in all; anything else is a replay. */
static const char lua_register_commit[] = LUA_LIMIT_LIB LUA_SERVES
    "local p = redis.call('HMGET', KEYS[2], 'disabled', 'epoch', 'token_reuse')\n"
    "local used = redis.call('HMGET', KEYS[1], 'addr', 'label', 'uses')\n"
    "local status = 'ok'\n"
    "if used[1] then\n"
    "  if p[3] ~= 'same-address' or used[1] ~= ARGV[5] or used[2] ~= ARGV[2] or (tonumber(used[3]) or 32) >= 32 then\n"
    "    return 'replay'\n"
    "  end\n"
    "  redis.call('HINCRBY', KEYS[1], 'uses', 1)\n"
    "  status = 'reused'\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'addr', ARGV[5], 'label', ARGV[2], 'uses', 1)\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "end\n"
    "redis.call('DEL', KEYS[5])\n"
    "if ARGV[7] == 'all' then\n"
    "  local free = tonumber(ARGV[8])\n"
    "  if redis.call('EXISTS', KEYS[6]) == 1 and redis.call('HINCRBY', KEYS[6], 'n', -1) <= free then\n"
    "    redis.call('HSET', KEYS[6], 'until', 0)\n"
    "  end\n"
    "  if redis.call('SREM', KEYS[8], ARGV[1]) == 1 and redis.call('EXISTS', KEYS[7]) == 1 then\n"
    "    local n = redis.call('SCARD', KEYS[8])\n"
    "    redis.call('HSET', KEYS[7], 'n', n)\n"
    "    if n <= free then redis.call('HSET', KEYS[7], 'until', 0) end\n"
    "  end\n"
    "end\n"
    "if not p[1] then return 'nopod' end\n"
    "if p[1] == '1' then return 'disabled' end\n"
    "if not serves(KEYS[3], ARGV[2], ARGV[1]) then return 'notowner' end\n"
    "mark_known(KEYS[9], ARGV[5], ARGV[6], ARGV[9])\n"
    "if KEYS[4] ~= '' then\n"
    "  redis.call('HSET', KEYS[4], 'pod', ARGV[1], 'label', ARGV[2], 'epoch', p[2] or '0')\n"
    "  redis.call('EXPIRE', KEYS[4], ARGV[3])\n"
    "end\n"
    "return status\n";

/* KEYS: session, labels, labels:protocol. ARGV: label, addr, now, span. A session issued under an
 * older epoch (the pod was disabled, enabled or its secret rotated since) or for a removed pod is
 * dead. A live one passes whatever the limiters say (it cannot be guessed: 256 bits), and marks
 * its address as the pod's own (at most once an hour per address, to keep the hot path a read). */
static const char lua_session_lookup[] =
    LUA_LIMIT_LIB LUA_SERVES "local s = redis.call('HMGET', KEYS[1], 'pod', 'label', 'epoch')\n"
                             "if not s[1] then return {'badsession'} end\n"
                             "local p = redis.call('HMGET', 'p2m:pod:' .. s[1], 'disabled', 'epoch')\n"
                             "if not p[1] or p[2] ~= s[3] then redis.call('DEL', KEYS[1]) return {'badsession'} end\n"
                             "if p[1] == '1' then return {'disabled'} end\n"
                             "if s[2] ~= ARGV[1] or not serves(KEYS[2], ARGV[1], s[1]) then return {'notowner'} end\n"
                             "local now = tonumber(ARGV[3])\n"
                             "if not lim_known('p2m:known:' .. s[1], ARGV[2], now, 3600) then\n"
                             "  mark_known('p2m:known:' .. s[1], ARGV[2], ARGV[3], ARGV[4])\n"
                             "end\n"
                             "return {'ok', s[1], redis.call('HGET', KEYS[3], ARGV[1]) or ''}\n";

/* ARGV: label, pod, addr, now, ttl, rand, service, conns, alive window, pool target ('0': not
 * declared).
 *
 * A service's pre-connections all go to one relay, its home: the live relay ranking first by
 * SHA-1 of (service, relay name) (rendezvous hashing), or the next when it has no free port. The
 * consumer ports of a service are leased on the relay holding its idle pre-connections, so
 * spreading one service's pre-connections over several relays would leave consumers waiting on
 * one while the pool sits on another (pipe2me-relay --workers, or several relays). Services spread
 * over the relays by the hash; a relay that dies or joins moves only its own share.
 *
 * With consumer ports per service, the relay of the service's consumer port (p2m:cport:SERVICE) is
 * its home, whatever the hash says: consumers go there, so its pre-connections must too.
 *
 * The registration marks the service alive on that relay (p2m:alive:SERVICE, PROTOCOL 2.1), records
 * its time on the pod's hash (last_registration, for the console; not on a pod removed meanwhile)
 * with the pool target the body declared for the service (pool:SERVICE; removed when this
 * registration declared none, so that the field says what the latest one did) and
 * reads the demand the pod is told of: the consumers waiting for it now on every live relay
 * (p2m:wait:NAME) and those that have had to wait so far (SERVICE:queued in the relays' stats).
 *
 * A relay being drained (p2m:draining) ranks after every relay that is not, even as the relay of
 * the consumer port: pre leases move first, so that by the time the consumer port moves (the route
 * script below) the pod's pre-connections already come to the relay it moves to. A draining relay
 * is used only when no other has a free port, every live relay draining included (the reply's
 * last field is then "1", and the registrar logs it): a drain must never make a service
 * unavailable (PROTOCOL 3.9). */
static const char lua_lease_pre[] = LUA_LEASE_LIB
    "local live = live_relays()\n"
    "if #live == 0 then return {'norelay'} end\n"
    "local relays = {}\n"
    "for _, r in ipairs(live) do table.insert(relays, r) end\n"
    "local rnd = tonumber(ARGV[6])\n"
    "for _, r in ipairs(relays) do r.rank = (r.drain and '0' or '1') .. redis.sha1hex(ARGV[7] .. '/' .. r[1]) end\n"
    "local cp = redis.call('GET', 'p2m:cport:' .. ARGV[7])\n"
    "local home = cp and redis.call('HGET', 'p2m:lease:' .. cp, 'relay')\n"
    "for _, r in ipairs(relays) do if r[1] == home then r.rank = (r.drain and '0' or '1') .. 'z' end end\n"
    "table.sort(relays, function(a, b) return a.rank > b.rank end)\n"
    "for _, r in ipairs(relays) do\n"
    "  local p = probe(r, rnd)\n"
    "  if p then\n"
    "    make_lease(p, 'pre', ARGV[1], ARGV[7], ARGV[2], ARGV[3], r[1], ARGV[4], ARGV[5])\n"
    "    if ARGV[8] ~= '1' then redis.call('HSET', 'p2m:lease:' .. p, 'conns', ARGV[8]) end\n"
    "    redis.call('SET', 'p2m:alive:' .. ARGV[7], r[1], 'EX', ARGV[9])\n"
    "    if redis.call('EXISTS', 'p2m:pod:' .. ARGV[2]) == 1 then\n"
    "      redis.call('HSET', 'p2m:pod:' .. ARGV[2], 'last_registration', ARGV[4])\n"
    "      if ARGV[10] ~= '0' then\n"
    "        redis.call('HSET', 'p2m:pod:' .. ARGV[2], 'pool:' .. ARGV[7], ARGV[10])\n"
    "      else\n"
    "        redis.call('HDEL', 'p2m:pod:' .. ARGV[2], 'pool:' .. ARGV[7])\n"
    "      end\n"
    "    end\n"
    "    local waiting, waited = 0, 0\n"
    "    for _, x in ipairs(live) do\n"
    "      waiting = waiting + (tonumber(redis.call('HGET', 'p2m:wait:' .. x[1], ARGV[7]) or '0') or 0)\n"
    "      waited = waited + (tonumber(redis.call('HGET', 'p2m:stats:relay:' .. x[1], ARGV[7] .. ':queued') or '0') or 0)\n"
    "    end\n"
    "    return {'ok', tostring(p), r[1], r[2], string.format('%.0f', waiting), string.format('%.0f', waited),\n"
    "            r.drain and '1' or '0'}\n"
    "  end\n"
    "end\n"
    "return {'noport'}\n";

/* ARGV: label, addr ('*': one consumer port per service), now, ttl, rand, per-address cap, per-label
 * cap, share of the ports (percent),
 * then the services the request may go to, in order of preference (PROTOCOL 2.1). The first
 * service with an idle pre-connection on a live relay wins; when none has one, the first whose pod
 * is alive (p2m:alive:SERVICE names a live relay: the pod registered, or a relay held its
 * connections, within registrar.alive_window) wins, on that relay, and the consumer waits there
 * for the pre-connections the pod is opening. Neither: the pod is gone.
 *
 * Per service (addr '*'), the service's consumer port is p2m:cport:SERVICE, leased once for every
 * address and kept while the label is (no TTL once the relay has bound it); only a port whose relay
 * is no longer live is leased again, on the relay chosen above. Such ports are not evicted: they
 * stand in p2m:cports:service, at most the share of all relays' ports, beyond which 'noport'.
 *
 * Per address, consumer ports are capped (PROTOCOL 3.6) so that a flood from many addresses cannot take the
 * whole range: a new one beyond the cap of its address, of its label, or of the consumers' share
 * of all relays' ports first evicts the least recently used lease in that scope. Three sorted sets
 * (port -> last use, Redis TIME in microseconds, so that uses within one second keep their order)
 * track them; members whose lease has expired are dropped when met.
 *
 * Draining relays (PROTOCOL 3.9). The lease script above no longer sends pre leases to a draining
 * relay, so the pod's next pre-connections arrive on another one. The consumers must follow them,
 * but never ahead of them: a consumer sent where no pre-connection of its service is coming waits
 * for nothing. So a relay that does not drain and holds idle pre-connections of the service wins
 * over a draining one that holds more; a draining relay still wins while it alone holds some (its
 * idle pre-connections serve the consumers, and each one used is replaced by one the pod opens
 * elsewhere, after which the consumers move); with none held anywhere, an alive mark naming a
 * draining relay gives way to the first relay the lease script ranks for the service, where its
 * pre-connections will come. A service's consumer port on a draining relay is kept while that
 * relay wins; otherwise a new one is leased on the winner and the old lease gets the consumer TTL
 * instead of being deleted, so that a consumer redirected to it just before still finds the
 * listener (and the relay's idle pre-connections); the relay closes it when it expires. A
 * per-address port on a draining relay is not reused either. */
static const char lua_consumer_route[] = LUA_LEASE_LIB
    "local owner = redis.call('HGET', 'p2m:labels', ARGV[1])\n"
    "if not owner then return {'unknown'} end\n"
    "local relays = live_relays()\n"
    "local open, all_drain = open_relays(relays)\n"
    "local svc, best, best_idle, idle = nil, nil, 0, {}\n"
    "for i = 9, #ARGV do\n"
    "  for _, r in ipairs(relays) do\n"
    "    local n = tonumber(redis.call('HGET', 'p2m:idle:' .. r[1], ARGV[i]) or '0') or 0\n"
    "    idle[r[1]] = n\n"
    "    if n > 0 and (not best or (best.drain and not r.drain) or (best.drain == r.drain and n > best_idle)) then\n"
    "      best, best_idle = r, n\n"
    "    end\n"
    "  end\n"
    "  if best then svc = ARGV[i] break end\n"
    "end\n"
    "local queued = '0'\n"
    "if not best then\n"
    "  for i = 9, #ARGV do\n"
    "    local home = redis.call('GET', 'p2m:alive:' .. ARGV[i])\n"
    "    for _, r in ipairs(relays) do\n"
    "      if r[1] == home then best = r break end\n"
    "    end\n"
    "    if best then svc, queued = ARGV[i], '1' break end\n"
    "  end\n"
    "  if best and best.drain and not all_drain then\n"
    "    for _, r in ipairs(open) do r.rank = redis.sha1hex(svc .. '/' .. r[1]) end\n"
    "    table.sort(open, function(a, b) return a.rank > b.rank end)\n"
    "    best = open[1]\n"
    "  end\n"
    "end\n"
    "if not best then return {'gone'} end\n"
    "local function stays(name)\n"
    "  for _, r in ipairs(relays) do\n"
    "    if r[1] == name then return not r.drain or all_drain or name == best[1], r end\n"
    "  end\n"
    "  return false, nil\n"
    "end\n"
    "if ARGV[2] == '*' then\n"
    "  local ck = 'p2m:cport:' .. svc\n"
    "  local port = redis.call('GET', ck)\n"
    "  if port then\n"
    "    local k = 'p2m:lease:' .. port\n"
    "    local l = redis.call('HMGET', k, 'kind', 'service', 'addr', 'relay', 'state')\n"
    "    if l[1] == 'consumer' and l[2] == svc and l[3] == '*' then\n"
    "      local keep, r = stays(l[4])\n"
    "      if keep then return {'ok', port, r[2], r[1], l[5] == 'bound' and '0' or '2', svc, queued} end\n"
    "      if r then\n"
    "        redis.call('EXPIRE', k, ARGV[4])\n"
    "      else\n"
    "        redis.call('DEL', k)\n"
    "        redis.call('PUBLISH', 'p2m:events', 'unlease ' .. port)\n"
    "      end\n"
    "    end\n"
    "    redis.call('SREM', 'p2m:cports:service', port)\n"
    "  end\n"
    "  local total = 0\n"
    "  for _, r in ipairs(relays) do total = total + r[4] - r[3] + 1 end\n"
    "  local cap = math.max(1, math.floor(total * tonumber(ARGV[8]) / 100))\n"
    "  if redis.call('SCARD', 'p2m:cports:service') >= cap then\n"
    "    for _, m in ipairs(redis.call('SMEMBERS', 'p2m:cports:service')) do\n"
    "      if redis.call('HGET', 'p2m:lease:' .. m, 'addr') ~= '*' then redis.call('SREM', 'p2m:cports:service', m) end\n"
    "    end\n"
    "    if redis.call('SCARD', 'p2m:cports:service') >= cap then return {'noport'} end\n"
    "  end\n"
    "  local p = probe(best, tonumber(ARGV[5]))\n"
    "  if not p then return {'noport'} end\n"
    "  make_lease(p, 'consumer', ARGV[1], svc, owner, '*', best[1], ARGV[3], ARGV[4])\n"
    "  redis.call('SET', ck, p)\n"
    "  redis.call('SADD', 'p2m:cports:service', p)\n"
    "  return {'ok', tostring(p), best[2], best[1], '1', svc, queued}\n"
    "end\n"
    "local za, zl, zg = 'p2m:cports:addr:' .. ARGV[2], 'p2m:cports:label:' .. ARGV[1], 'p2m:cports'\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local mk = 'p2m:consumer:' .. svc .. ':' .. ARGV[2]\n"
    "local port = redis.call('GET', mk)\n"
    "if port then\n"
    "  local l = redis.call('HMGET', 'p2m:lease:' .. port, 'kind', 'service', 'addr', 'relay', 'state')\n"
    "  if l[1] == 'consumer' and l[2] == svc and l[3] == ARGV[2] and (l[4] == best[1] or (idle[l[4]] or 0) > 0) and\n"
    "     stays(l[4]) then\n"
    "    redis.call('EXPIRE', 'p2m:lease:' .. port, ARGV[4])\n"
    "    redis.call('EXPIRE', mk, ARGV[4])\n"
    "    for _, z in ipairs({za, zl, zg}) do redis.call('ZADD', z, now, port) redis.call('EXPIRE', z, ARGV[4]) end\n"
    "    for _, r in ipairs(relays) do\n"
    "      if r[1] == l[4] then return {'ok', port, r[2], r[1], l[5] == 'bound' and '0' or '2', svc, queued} end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function evict(p)\n"
    "  local k = 'p2m:lease:' .. p\n"
    "  local l = redis.call('HMGET', k, 'kind', 'service', 'addr', 'label')\n"
    "  if l[1] == 'consumer' then\n"
    "    redis.call('DEL', k)\n"
    "    local m = 'p2m:consumer:' .. l[2] .. ':' .. l[3]\n"
    "    if redis.call('GET', m) == p then redis.call('DEL', m) end\n"
    "    redis.call('ZREM', 'p2m:cports:addr:' .. l[3], p)\n"
    "    redis.call('ZREM', 'p2m:cports:label:' .. l[4], p)\n"
    "    redis.call('PUBLISH', 'p2m:events', 'unlease ' .. p)\n"
    "    redis.call('HINCRBY', 'p2m:stats', 'evictions', 1)\n"
    "  end\n"
    "  redis.call('ZREM', 'p2m:cports', p)\n"
    "end\n"
    "local function make_room(z, cap)\n"
    "  for _ = 1, 64 do\n"
    "    if redis.call('ZCARD', z) < cap then return end\n"
    "    local oldest = redis.call('ZRANGE', z, 0, 0)[1]\n"
    "    if redis.call('HGET', 'p2m:lease:' .. oldest, 'kind') == 'consumer' then evict(oldest)\n"
    "    else redis.call('ZREM', z, oldest) end\n"
    "  end\n"
    "end\n"
    "local total = 0\n"
    "for _, r in ipairs(relays) do total = total + r[4] - r[3] + 1 end\n"
    "make_room(za, tonumber(ARGV[6]))\n"
    "make_room(zl, tonumber(ARGV[7]))\n"
    "make_room(zg, math.max(1, math.floor(total * tonumber(ARGV[8]) / 100)))\n"
    "local p = probe(best, tonumber(ARGV[5]))\n"
    "if not p then return {'noport'} end\n"
    "make_lease(p, 'consumer', ARGV[1], svc, owner, ARGV[2], best[1], ARGV[3], ARGV[4])\n"
    "redis.call('SET', mk, p, 'EX', ARGV[4])\n"
    "for _, z in ipairs({za, zl, zg}) do redis.call('ZADD', z, now, p) redis.call('EXPIRE', z, ARGV[4]) end\n"
    "return {'ok', tostring(p), best[2], best[1], '1', svc, queued}\n";

/* KEYS: lease. */
static const char lua_lease_abandon[] = "if redis.call('HGET', KEYS[1], 'state') == 'pending' then\n"
                                        "  return redis.call('DEL', KEYS[1])\n"
                                        "end\n"
                                        "return 0\n";

static const char lua_metrics[] =
    "local names = {}\n"
    "for _, name in ipairs(redis.call('SMEMBERS', 'p2m:relays')) do\n"
    "  if redis.call('EXISTS', 'p2m:relay:' .. name) == 1 then table.insert(names, name) end\n"
    "end\n"
    "table.sort(names)\n"
    "local pre, consumer, cursor = 0, 0, '0'\n"
    "repeat\n"
    "  local r = redis.call('SCAN', cursor, 'MATCH', 'p2m:lease:*', 'COUNT', 1000)\n"
    "  cursor = r[1]\n"
    "  for _, k in ipairs(r[2]) do\n"
    "    local kind = redis.call('HGET', k, 'kind')\n"
    "    if kind == 'pre' then pre = pre + 1 elseif kind == 'consumer' then consumer = consumer + 1 end\n"
    "  end\n"
    "until cursor == '0'\n"
    "local idle, rstats, wait = {}, {}, {}\n"
    "for _, name in ipairs(names) do\n"
    "  local h = redis.call('HGETALL', 'p2m:idle:' .. name)\n"
    "  for i = 1, #h, 2 do table.insert(idle, name) table.insert(idle, h[i]) table.insert(idle, h[i + 1]) end\n"
    "  h = redis.call('HGETALL', 'p2m:wait:' .. name)\n"
    "  for i = 1, #h, 2 do table.insert(wait, name) table.insert(wait, h[i]) table.insert(wait, h[i + 1]) end\n"
    "  h = redis.call('HGETALL', 'p2m:stats:relay:' .. name)\n"
    "  for i = 1, #h, 2 do table.insert(rstats, name) table.insert(rstats, h[i]) table.insert(rstats, h[i + 1]) end\n"
    "end\n"
    "return {#names, redis.call('HGETALL', 'p2m:stats'), pre, consumer, idle, rstats, wait}\n";

/* Appends a copy of s to the command. Returns 0, or -1 when the command is full. */
int store_cmd_push(p2m_store_cmd_t *c, const char *s)
{
    size_t n = strlen(s);
    if (c->argc >= P2M_STORE_CMD_ARGS || c->_used + n + 1 > sizeof(c->_buf))
        return -1;
    char *dst = c->_buf + c->_used;
    memcpy(dst, s, n + 1);
    c->_used += n + 1;
    c->argv[c->argc] = dst;
    c->argvlen[c->argc] = n;
    c->argc++;
    return 0;
}

int store_cmd_push_static(p2m_store_cmd_t *c, const char *s, size_t n)
{
    if (c->argc >= P2M_STORE_CMD_ARGS)
        return -1;
    c->argv[c->argc] = s;
    c->argvlen[c->argc] = n;
    c->argc++;
    return 0;
}

int store_cmd_pushf(p2m_store_cmd_t *c, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return -1;
    return store_cmd_push(c, buf);
}

int store_cmd_pushu(p2m_store_cmd_t *c, unsigned long long v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%llu", v);
    return store_cmd_push(c, buf);
}

void store_cmd_begin(p2m_store_cmd_t *c)
{
    c->argc = 0;
    c->_used = 0;
}

/* Short names for the builders below. */
#define push store_cmd_push
#define pushu store_cmd_pushu
#define begin store_cmd_begin
#define EVAL STORE_EVAL

static int pushf(p2m_store_cmd_t *c, const char *fmt, const char *a, const char *b)
{
    return store_cmd_pushf(c, fmt, a, b);
}

int p2m_store_cmd_auth_lookup(p2m_store_cmd_t *c, const char *id, const char *label, const char *addr, long long now,
                              const p2m_auth_limits_t *lim)
{
    char pair[P2M_ID_MAX + P2M_HOST_MAX + 2];
    snprintf(pair, sizeof(pair), "%.64s:%.253s", id, addr);
    return EVAL(c, lua_auth_lookup, 8) || pushf(c, "p2m:limit:pair:%s%s", pair, "") || pushf(c, "p2m:limit:id:%s%s", id, "") ||
                   pushf(c, "p2m:limit:addr:%s%s", addr, "") || pushf(c, "p2m:limit:addrids:%s%s", addr, "") ||
                   pushf(c, "p2m:known:%s%s", id, "") || pushf(c, "p2m:pod:%s%s", id, "") || push(c, "p2m:labels") ||
                   push(c, "p2m:labels:protocol") || push(c, label) || push(c, id) || push(c, addr) ||
                   pushu(c, (unsigned long long)now) || pushu(c, lim->free) || pushu(c, lim->backoff_max) ||
                   pushu(c, lim->window) || pushu(c, P2M_AUTH_KNOWN_SECS)
               ? -1
               : 0;
}

int p2m_store_cmd_register_commit(p2m_store_cmd_t *c, const char *id, const char *label, const char *addr, long long now,
                                  uint64_t step, int struck_all, const char *session_digest, unsigned session_ttl,
                                  const p2m_auth_limits_t *lim)
{
    char stepkey[128], pair[P2M_ID_MAX + P2M_HOST_MAX + 2];
    snprintf(stepkey, sizeof(stepkey), "p2m:otp:%.64s:%" PRIu64, id, step);
    snprintf(pair, sizeof(pair), "%.64s:%.253s", id, addr);
    /* A step is spent for as long as any window that contains it can still match: 5 steps. */
    return EVAL(c, lua_register_commit, 9) || push(c, stepkey) || pushf(c, "p2m:pod:%s%s", id, "") || push(c, "p2m:labels") ||
                   (session_digest[0] ? pushf(c, "p2m:session:%s%s", session_digest, "") : push(c, "")) ||
                   pushf(c, "p2m:limit:pair:%s%s", pair, "") || pushf(c, "p2m:limit:id:%s%s", id, "") ||
                   pushf(c, "p2m:limit:addr:%s%s", addr, "") || pushf(c, "p2m:limit:addrids:%s%s", addr, "") ||
                   pushf(c, "p2m:known:%s%s", id, "") || push(c, id) || push(c, label) || pushu(c, session_ttl) || pushu(c, 150) ||
                   push(c, addr) || pushu(c, (unsigned long long)now) || push(c, struck_all ? "all" : "pair") ||
                   pushu(c, lim->free) || pushu(c, P2M_AUTH_KNOWN_SECS)
               ? -1
               : 0;
}

int p2m_store_cmd_session_lookup(p2m_store_cmd_t *c, const char *digest, const char *label, const char *addr, long long now)
{
    return EVAL(c, lua_session_lookup, 3) || pushf(c, "p2m:session:%s%s", digest, "") || push(c, "p2m:labels") ||
                   push(c, "p2m:labels:protocol") || push(c, label) || push(c, addr) || pushu(c, (unsigned long long)now) ||
                   pushu(c, P2M_AUTH_KNOWN_SECS)
               ? -1
               : 0;
}

int p2m_store_cmd_lease_pre(p2m_store_cmd_t *c, const char *label, p2m_proto_t proto, const char *pod, const char *addr,
                            long long now, unsigned ttl, uint32_t rand, unsigned conns, unsigned alive_window, unsigned pool)
{
    char service[P2M_SERVICE_MAX + 1];
    p2m_service_key(label, proto, service);
    return EVAL(c, lua_lease_pre, 0) || push(c, label) || push(c, pod) || push(c, addr) || pushu(c, (unsigned long long)now) ||
                   pushu(c, ttl) || pushu(c, rand) || push(c, service) || pushu(c, conns) || pushu(c, alive_window) ||
                   pushu(c, pool)
               ? -1
               : 0;
}

int p2m_store_cmd_consumer_route(p2m_store_cmd_t *c, const char *label, const p2m_proto_t *protos, size_t nprotos, const char *addr,
                                 long long now, const p2m_consumer_caps_t *caps, uint32_t rand)
{
    if (EVAL(c, lua_consumer_route, 0) || push(c, label) || push(c, addr) || pushu(c, (unsigned long long)now) ||
        pushu(c, caps->ttl) || pushu(c, rand) || pushu(c, caps->per_addr) || pushu(c, caps->per_label) || pushu(c, caps->share))
        return -1;
    for (size_t i = 0; i < nprotos; i++) {
        char service[P2M_SERVICE_MAX + 1];
        p2m_service_key(label, protos[i], service);
        if (push(c, service) != 0)
            return -1;
    }
    return 0;
}

int p2m_store_cmd_lease_abandon(p2m_store_cmd_t *c, uint16_t port)
{
    char key[32];
    snprintf(key, sizeof(key), P2M_KEY_LEASE "%u", (unsigned)port);
    return EVAL(c, lua_lease_abandon, 1) || push(c, key) ? -1 : 0;
}

int p2m_store_cmd_announce_lease(p2m_store_cmd_t *c, const char *relay, uint16_t port)
{
    char msg[32];
    snprintf(msg, sizeof(msg), "lease %u", (unsigned)port);
    begin(c);
    return push(c, "PUBLISH") || pushf(c, P2M_KEY_RELAY "%s%s", relay, "") || push(c, msg) ? -1 : 0;
}

int p2m_store_cmd_subscribe_bound(p2m_store_cmd_t *c)
{
    begin(c);
    return push(c, "SUBSCRIBE") || push(c, p2m_channel_bound) ? -1 : 0;
}

int p2m_store_cmd_stat(p2m_store_cmd_t *c, const char *name)
{
    begin(c);
    return push(c, "HINCRBY") || push(c, "p2m:stats") || push(c, name) || push(c, "1") ? -1 : 0;
}

int p2m_store_cmd_metrics(p2m_store_cmd_t *c)
{
    return EVAL(c, lua_metrics, 0) ? -1 : 0;
}

int p2m_store_cmd_schema_init(p2m_store_cmd_t *c)
{
    begin(c);
    return push(c, "SET") || push(c, P2M_KEY_SCHEMA) || pushu(c, P2M_SCHEMA_VERSION) || push(c, "NX") ? -1 : 0;
}

int p2m_store_cmd_schema_get(p2m_store_cmd_t *c)
{
    begin(c);
    return push(c, "GET") || push(c, P2M_KEY_SCHEMA) ? -1 : 0;
}

/* KEYS: token (p2m:token:HASH). ARGV: now. The check and the spending are one script: twenty registrars redeeming a
 * 1-use token at once see one "ok". Returns {"unknown"}, {"expired"}, {"spent"} or {"ok", uses,
 * uses_left, tunnels, expires, label_prefix, created, pods_created} after the use. */
static const char lua_token_redeem[] =
    "local t = redis.call('HMGET', KEYS[1], 'uses_left', 'expires')\n"
    "if not t[1] then return {'unknown'} end\n"
    "local exp = tonumber(t[2]) or 0\n"
    "if exp ~= 0 and exp <= tonumber(ARGV[1]) then return {'expired'} end\n"
    "if (tonumber(t[1]) or 0) <= 0 then return {'spent'} end\n"
    "redis.call('HINCRBY', KEYS[1], 'uses_left', -1)\n"
    "redis.call('HINCRBY', KEYS[1], 'pods_created', 1)\n"
    "local r = redis.call('HMGET', KEYS[1], 'uses', 'uses_left', 'tunnels', 'expires', 'label_prefix', 'created',\n"
    "                     'pods_created')\n"
    "for i = 1, 7 do r[i] = r[i] or '' end\n"
    "table.insert(r, 1, 'ok')\n"
    "return r\n";

int p2m_store_cmd_token_redeem(p2m_store_cmd_t *c, const char *hash, long long now)
{
    if (!p2m_token_hex_valid(hash, strlen(hash), P2M_TOKEN_HASH_LEN))
        return -1;
    return EVAL(c, lua_token_redeem, 1) || pushf(c, P2M_KEY_TOKEN "%s%s", hash, "") || pushu(c, (unsigned long long)now) ? -1 : 0;
}

/* A reply element as a number, "" and anything else reading 0. */
static long long reply_num(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
}

int p2m_store_token_redeem_reply(const redisReply *r, const char *hash, p2m_token_info_t *info, char *err)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING)
        return p2m_err(err, "unexpected token reply");
    const char *status = r->element[0]->str;
    if (strcmp(status, "unknown") == 0)
        return P2M_TOKEN_UNKNOWN;
    if (strcmp(status, "expired") == 0)
        return P2M_TOKEN_EXPIRED;
    if (strcmp(status, "spent") == 0)
        return P2M_TOKEN_SPENT;
    if (strcmp(status, "ok") != 0 || r->elements != 8)
        return p2m_err(err, "unexpected token reply");
    if (info != NULL) {
        redisReply **e = r->element;
        memset(info, 0, sizeof(*info));
        snprintf(info->hash, sizeof(info->hash), "%s", hash);
        info->uses = reply_num(e[1]);
        info->uses_left = reply_num(e[2]);
        info->tunnels = reply_num(e[3]);
        info->expires = reply_num(e[4]);
        if (e[5]->type == REDIS_REPLY_STRING)
            snprintf(info->label_prefix, sizeof(info->label_prefix), "%.*s", P2M_TOKEN_LABEL_PREFIX_MAX, e[5]->str);
        info->created = reply_num(e[6]);
        info->pods_created = reply_num(e[7]);
    }
    return P2M_TOKEN_REDEEMED;
}

/* KEYS: token, pod, pod-labels, pods, labels, labels-protocol, limit:addr, limit:addrids.
 * ARGV: now, nprotos, prefix, label, wanted, id, secret, digits, free, cap, keep, hash.
 *
 * Self-service setup (PROTOCOL 1.6) in one script, so that nothing is spent without a pod and a
 * 1-use token redeemed twenty times at once makes one pod. Every refusal changes nothing but the
 * address limiter of PROTOCOL 1.2: an unknown, expired or spent token counts as a failure of the
 * address, once per distinct token (in its ID set, as "setup:HASH"), so guessing tokens is held up
 * as guessing pod IDs is. The caller assumed the token's label prefix (ARGV[3]) when it chose the
 * label; another prefix is answered before the label is looked at, and the caller chooses again. */
static const char lua_setup[] = LUA_LIMIT_LIB LUA_POD_CREATE
    "local now = tonumber(ARGV[1])\n"
    "local wait = lim_left(KEYS[7], now)\n"
    "if wait > 0 then return {'limited', string.format('%d', wait)} end\n"
    "local t = redis.call('HMGET', KEYS[1], 'uses_left', 'expires', 'tunnels', 'label_prefix')\n"
    "local bad = nil\n"
    "local exp = tonumber(t[2]) or 0\n"
    "if not t[1] then bad = 'unknown'\n"
    "elseif exp ~= 0 and exp <= now then bad = 'expired'\n"
    "elseif (tonumber(t[1]) or 0) <= 0 then bad = 'spent' end\n"
    "if bad then\n"
    "  local cap, keep = tonumber(ARGV[10]), tonumber(ARGV[11])\n"
    "  if redis.call('SADD', KEYS[8], 'setup:' .. ARGV[12]) == 1 then\n"
    "    redis.call('EXPIRE', KEYS[8], string.format('%d', keep + cap))\n"
    "    lim_strike(KEYS[7], redis.call('SCARD', KEYS[8]), now, tonumber(ARGV[9]), cap, keep)\n"
    "  end\n"
    "  return {bad}\n"
    "end\n"
    "if tonumber(ARGV[2]) > (tonumber(t[3]) or 0) then return {'tunnels', t[3] or '0'} end\n"
    "if (t[4] or '') ~= ARGV[3] then return {'prefix', t[4] or ''} end\n"
    "if redis.call('HEXISTS', KEYS[5], ARGV[4]) == 1 then\n"
    "  if ARGV[5] == '1' then return {'taken'} end\n"
    "  return {'collision'}\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then return {'collision'} end\n"
    "pod_create(KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[6], ARGV[7], ARGV[1], 'none', ARGV[8], {ARGV[4]})\n"
    "redis.call('HINCRBY', KEYS[1], 'pods_created', 1)\n"
    "return {'ok', string.format('%d', redis.call('HINCRBY', KEYS[1], 'uses_left', -1))}\n";

int p2m_store_cmd_setup(p2m_store_cmd_t *c, const p2m_setup_cmd_t *s, const p2m_auth_limits_t *lim)
{
    if (!p2m_token_hex_valid(s->hash, strlen(s->hash), P2M_TOKEN_HASH_LEN) || (s->digits != 6 && s->digits != 8))
        return -1;
    return EVAL(c, lua_setup, 8) || pushf(c, P2M_KEY_TOKEN "%s%s", s->hash, "") || pushf(c, P2M_KEY_POD "%s%s", s->id, "") ||
                   pushf(c, P2M_KEY_POD "%s%s", s->id, P2M_KEY_POD_LABELS) || push(c, P2M_KEY_PODS) || push(c, P2M_KEY_LABELS) ||
                   push(c, P2M_KEY_LABELS_PROTOCOL) || pushf(c, "p2m:limit:addr:%s%s", s->addr, "") ||
                   pushf(c, "p2m:limit:addrids:%s%s", s->addr, "") || pushu(c, (unsigned long long)s->now) ||
                   pushu(c, s->nprotos) || push(c, s->prefix) || push(c, s->label) || push(c, s->wanted ? "1" : "0") ||
                   push(c, s->id) || push(c, s->secret) || push(c, s->digits == 8 ? "8" : "6") || pushu(c, lim->free) ||
                   pushu(c, lim->backoff_max) || pushu(c, lim->window) || push(c, s->hash)
               ? -1
               : 0;
}

int p2m_store_schema_check(const redisReply *r, char *err)
{
    char want[16];
    snprintf(want, sizeof(want), "%d", P2M_SCHEMA_VERSION);
    if (r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0)
        return 0;
    /* Version 1 is the first: there is nothing older to migrate from yet. A newer version means a
     * newer pipe2me wrote this database; refuse rather than corrupt it. */
    return p2m_err(err, "schema version %.32s, this program knows %s",
                   r != NULL && r->type == REDIS_REPLY_STRING ? r->str : "(not a string)", want);
}

/* --- direct paths (PROTOCOL 5) ----------------------------------------------------------------- */

/* KEYS: the service's direct hash, its verified mark, p2m:directs. ARGV: pod, src, lan, public,
 * ttl, label. A public path that changed is not the one verified: its mark goes. */
static const char lua_direct_record[] =
    "if ARGV[3] == '' and ARGV[4] == '' then\n"
    "  return redis.call('DEL', KEYS[1], KEYS[2])\n"
    "end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'pod', ARGV[1], 'src', ARGV[2], 'lan', ARGV[3], 'public', ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "redis.call('SADD', KEYS[3], ARGV[6])\n"
    "if redis.call('GET', KEYS[2]) ~= ARGV[4] then redis.call('DEL', KEYS[2]) end\n"
    "return 1\n";

int p2m_store_cmd_direct_record(p2m_store_cmd_t *c, const char *label, p2m_proto_t proto, const char *pod, const char *addr,
                                const char *lan, const char *pub, unsigned ttl)
{
    char svc[P2M_SERVICE_MAX + 1];
    p2m_service_key(label, proto, svc);
    return EVAL(c, lua_direct_record, 3) || pushf(c, P2M_KEY_DIRECT "%s%s", svc, "") ||
                   pushf(c, P2M_KEY_DIRECT_OK "%s%s", svc, "") || push(c, P2M_KEY_DIRECTS) || push(c, pod) || push(c, addr) ||
                   push(c, lan) || push(c, pub) || pushu(c, ttl) || push(c, label)
               ? -1
               : 0;
}

/* KEYS: [1] the sent mark of (asked service, consumer), [2] the https service's direct hash, [3]
 * its verified mark, [4] the http service's direct hash ("" for an https consumer), [5]
 * p2m:dns:names. ARGV: consumer address, lan on, public on, lan name, direct name, retry window.
 * A path is used only when the pod that declared it is enabled and the name holds its address,
 * so that a consumer is never sent to a name that does not resolve (yet) to the pod. */
static const char lua_direct_route[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return {'relay', 'retry'} end\n"
    "local function host(v) return string.match(v, '^%[(.*)%]:%d+$') or string.match(v, '^(.*):%d+$') end\n"
    "local function paths(k)\n"
    "  if k == '' then return nil end\n"
    "  local h = redis.call('HMGET', k, 'pod', 'src', 'lan', 'public')\n"
    "  if not h[1] or redis.call('HGET', 'p2m:pod:' .. h[1], 'disabled') ~= '0' then return nil end\n"
    "  return h\n"
    "end\n"
    "local function named(name, v) return redis.call('HGET', KEYS[5], name) == host(v) end\n"
    "local function sent(kind, scheme, v)\n"
    "  redis.call('SET', KEYS[1], kind, 'EX', ARGV[6])\n"
    "  return {kind, scheme, v}\n"
    "end\n"
    "local h = paths(KEYS[4])\n"
    "if h and ARGV[2] == '1' and h[3] ~= '' and h[2] == ARGV[1] and named(ARGV[4], h[3]) then\n"
    "  return sent('lan', 'http', h[3])\n"
    "end\n"
    "h = paths(KEYS[2])\n"
    "if not h then return {'relay', 'none'} end\n"
    "if ARGV[2] == '1' and h[3] ~= '' and h[2] == ARGV[1] and named(ARGV[4], h[3]) then\n"
    "  return sent('lan', 'https', h[3])\n"
    "end\n"
    "if ARGV[3] == '1' and h[4] ~= '' and redis.call('GET', KEYS[3]) == h[4] and named(ARGV[5], h[4]) then\n"
    "  return sent('direct', 'https', h[4])\n"
    "end\n"
    "return {'relay', 'none'}\n";

int p2m_store_cmd_direct_route(p2m_store_cmd_t *c, const char *label, int plain_http, const char *addr, int lan, int pub,
                               const char *lan_name, const char *direct_name, unsigned retry)
{
    char asked[P2M_SERVICE_MAX + 1];
    p2m_service_key(label, plain_http ? P2M_PROTO_HTTP : P2M_PROTO_HTTPS, asked);
    return EVAL(c, lua_direct_route, 5) || pushf(c, P2M_KEY_DIRECT_SENT "%s:%s", asked, addr) ||
                   pushf(c, P2M_KEY_DIRECT "%s%s", label, "") || pushf(c, P2M_KEY_DIRECT_OK "%s%s", label, "") ||
                   (plain_http ? pushf(c, P2M_KEY_DIRECT "%s%s", label, ":http") : push(c, "")) || push(c, P2M_KEY_DNS_NAMES) ||
                   push(c, addr) || push(c, lan ? "1" : "0") || push(c, pub ? "1" : "0") || push(c, lan_name) ||
                   push(c, direct_name) || pushu(c, retry)
               ? -1
               : 0;
}
