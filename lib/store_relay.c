/* The relay's Redis commands and scripts (PROTOCOL 3.1 to 3.4; keys: store.h). Each script changes
 * only what still belongs to the relay that sends it, so relays sharing a Redis, and a relay
 * restarted over its own leftovers, never undo each other's work. */
#include "p2m/store_cmd.h"
#include "p2m/addr.h"
#include "p2m/label.h"
#include "store_priv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define push store_cmd_push
#define pushf store_cmd_pushf
#define pushu store_cmd_pushu
#define begin store_cmd_begin
#define EVAL STORE_EVAL

/* The lease names this relay and still is the one it holds (created and pod identify it).
 * KEYS[1] lease; ARGV[1] relay, ARGV[2] created, ARGV[3] pod. */
#define LUA_LEASE_IS_OURS                                                                                                          \
    "local l = redis.call('HMGET', KEYS[1], 'relay', 'created', 'pod')\n"                                                          \
    "local ours = l[1] == ARGV[1] and l[2] == ARGV[2] and l[3] == ARGV[3]\n"

/* KEYS[1] lease; ARGV relay, created, pod. */
static const char lua_lease_drop[] = LUA_LEASE_IS_OURS "if ours then return redis.call('DEL', KEYS[1]) end\n"
                                                       "return 0\n";

/* PROTOCOL 3.3, success. ARGV[4] port. A service's consumer port (addr '*') lives as long as its
 * label from now on: no TTL (3.6). One the registrar has moved off a draining relay (p2m:cport:SERVICE
 * names another port) keeps the TTL it was given, so that a relay restarting meanwhile does not
 * make it permanent (3.9). */
static const char lua_bound[] =
    LUA_LEASE_IS_OURS "if ours then\n"
                      "  redis.call('HSET', KEYS[1], 'state', 'bound')\n"
                      "  local c = redis.call('HMGET', KEYS[1], 'addr', 'service', 'label')\n"
                      "  if c[1] == '*' and redis.call('GET', '" P2M_KEY_CPORT "' .. (c[2] or c[3] or '')) == ARGV[4] then\n"
                      "    redis.call('PERSIST', KEYS[1])\n"
                      "  end\n"
                      "  redis.call('PUBLISH', '" P2M_CHANNEL_BOUND "', ARGV[4] .. ' ok')\n"
                      "  return 1\n"
                      "end\n"
                      "redis.call('PUBLISH', '" P2M_CHANNEL_BOUND "', ARGV[4] .. ' fail lease gone')\n"
                      "return 0\n";

/* PROTOCOL 3.3, failure. KEYS[2] portbusy; ARGV[4] port, ARGV[5] reason. */
static const char lua_busy[] = LUA_LEASE_IS_OURS "redis.call('SET', KEYS[2], '1', 'EX', 60)\n"
                                                 "if ours then redis.call('DEL', KEYS[1]) end\n"
                                                 "redis.call('PUBLISH', '" P2M_CHANNEL_BOUND "', ARGV[4] .. ' fail ' .. ARGV[5])\n"
                                                 "return 0\n";

/* KEYS[1] idle hash, KEYS[2] wait hash, KEYS[3] stats hash; ARGV[1] relay name, ARGV[2] the ttl of
 * a lease with an idle connection, ARGV[3] the hashes' ttl, then three sections, each a count and
 * its entries:
 *   leases a connection came on: PORT ... The lease is kept (EXPIRE) and marked "connected" (a
 *     relay that finds such a lease without holding its connection knows the connection is gone);
 *   leases ended: PORT CREATED POD ... Deleted if still the one this relay held;
 *   services: SERVICE IDLE_DELTA WAITING QUEUED WAITED_SERVED WAIT_TIMEOUTS ... */
static const char lua_sync[] =
    "local i, out, drift = 4, {}, 0\n"
    "local n = tonumber(ARGV[i]) i = i + 1\n"
    "for k = 1, n do\n"
    "  local key = '" P2M_KEY_LEASE "' .. ARGV[i]\n"
    "  if redis.call('EXPIRE', key, ARGV[2]) == 1 then redis.call('HSET', key, 'state', 'connected')\n"
    "  else table.insert(out, k) end\n"
    "  i = i + 1\n"
    "end\n"
    "n = tonumber(ARGV[i]) i = i + 1\n"
    "for k = 1, n do\n"
    "  local key = '" P2M_KEY_LEASE "' .. ARGV[i]\n"
    "  local l = redis.call('HMGET', key, 'relay', 'created', 'pod')\n"
    "  if l[1] == ARGV[1] and l[2] == ARGV[i + 1] and l[3] == ARGV[i + 2] then redis.call('DEL', key) end\n"
    "  i = i + 3\n"
    "end\n"
    "n = tonumber(ARGV[i]) i = i + 1\n"
    "for k = 1, n do\n"
    "  local svc, d = ARGV[i], tonumber(ARGV[i + 1])\n"
    "  if d ~= 0 then\n"
    "    local c = redis.call('HINCRBY', KEYS[1], svc, d)\n"
    "    if c <= 0 then redis.call('HDEL', KEYS[1], svc) end\n"
    "    if c < 0 then drift = 1 end\n"
    "  end\n"
    "  if ARGV[i + 2] ~= '0' then redis.call('HSET', KEYS[2], svc, ARGV[i + 2])\n"
    "  else redis.call('HDEL', KEYS[2], svc) end\n"
    "  for f, name in ipairs({'queued', 'waited_served', 'wait_timeouts'}) do\n"
    "    if ARGV[i + 2 + f] ~= '0' then redis.call('HINCRBY', KEYS[3], svc .. ':' .. name, ARGV[i + 2 + f]) end\n"
    "  end\n"
    "  i = i + 6\n"
    "end\n"
    "if n > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) redis.call('EXPIRE', KEYS[2], ARGV[3]) end\n"
    "table.insert(out, 1, drift)\n"
    "return out\n";

/* Rewrites a count hash (idle or wait). KEYS[1] the hash; ARGV[1] ttl, then SERVICE COUNT pairs. */
static const char lua_counts[] = "redis.call('DEL', KEYS[1])\n"
                                 "for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end\n"
                                 "if #ARGV > 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
                                 "return 0\n";

/* ARGV[1] relay name, ARGV[2] seconds, then SERVICE FLAG pairs (p2m_store_cmdv_relay_alive). */
static const char lua_alive[] = "for i = 3, #ARGV, 2 do\n"
                                "  local k = '" P2M_KEY_ALIVE "' .. ARGV[i]\n"
                                "  if ARGV[i + 1] == '1' then redis.call('SET', k, ARGV[1], 'EX', ARGV[2])\n"
                                "  else\n"
                                "    local cur = redis.call('GET', k)\n"
                                "    if not cur or cur == ARGV[1] then redis.call('SET', k, ARGV[1], 'EX', ARGV[2]) end\n"
                                "  end\n"
                                "end\n"
                                "return 0\n";

/* PROTOCOL 3.1: ranges sharing a Redis must be disjoint, lease keys are named by port alone.
 * ARGV[1] relay, ARGV[2]-ARGV[3] its range. */
static const char lua_overlaps[] = "local out, names = {}, redis.call('SMEMBERS', '" P2M_KEY_RELAYS "')\n"
                                   "table.sort(names)\n"
                                   "local lo, hi = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
                                   "for _, name in ipairs(names) do\n"
                                   "  if name ~= ARGV[1] then\n"
                                   "    local p = redis.call('HGET', '" P2M_KEY_RELAY "' .. name, 'ports') or ''\n"
                                   "    local a, b = string.match(p, '^(%d+)-(%d+)$')\n"
                                   "    if a and tonumber(a) <= hi and tonumber(b) >= lo then\n"
                                   "      table.insert(out, name) table.insert(out, p)\n"
                                   "    end\n"
                                   "  end\n"
                                   "end\n"
                                   "return out\n";

/* ARGV[1] label, ARGV[2] service, ARGV[3] relay (p2m_store_cmd_sni_lookup). */
static const char lua_sni_lookup[] = "if not redis.call('HGET', '" P2M_KEY_LABELS "', ARGV[1]) then return 'unknown' end\n"
                                     "local best, most = nil, 0\n"
                                     "for _, name in ipairs(redis.call('SMEMBERS', '" P2M_KEY_RELAYS "')) do\n"
                                     "  if redis.call('EXISTS', '" P2M_KEY_RELAY "' .. name) == 1 then\n"
                                     "    local n = tonumber(redis.call('HGET', '" P2M_KEY_IDLE "' .. name, ARGV[2]) or '0') or 0\n"
                                     "    if n > most then best, most = name, n end\n"
                                     "  end\n"
                                     "end\n"
                                     "if not best then\n"
                                     "  local home = redis.call('GET', '" P2M_KEY_ALIVE "' .. ARGV[2])\n"
                                     "  if home and redis.call('EXISTS', '" P2M_KEY_RELAY "' .. home) == 1 then best = home end\n"
                                     "end\n"
                                     "if not best then return 'gone' end\n"
                                     "return best == ARGV[3] and 'here' or 'elsewhere'\n";

/* KEYS: relay hash, idle hash, wait hash. ARGV: name, address, ports, started, ttl, leases, idle,
 * tunnels, waiting, draining. Returns 0 when the relay is not marked draining, 1 when it is, 2 when
 * it is and so is every other live relay. */
static const char lua_heartbeat[] = "redis.call('HSET', KEYS[1], 'address', ARGV[2], 'ports', ARGV[3], 'started', ARGV[4],\n"
                                    "           'leases', ARGV[6], 'idle', ARGV[7], 'tunnels', ARGV[8], 'waiting', ARGV[9],\n"
                                    "           'draining', ARGV[10])\n"
                                    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
                                    "redis.call('SADD', '" P2M_KEY_RELAYS "', ARGV[1])\n"
                                    "redis.call('EXPIRE', KEYS[2], ARGV[5])\n"
                                    "redis.call('EXPIRE', KEYS[3], ARGV[5])\n"
                                    "if redis.call('SISMEMBER', '" P2M_KEY_DRAINING "', ARGV[1]) == 0 then return 0 end\n"
                                    "for _, n in ipairs(redis.call('SMEMBERS', '" P2M_KEY_RELAYS "')) do\n"
                                    "  if redis.call('SISMEMBER', '" P2M_KEY_DRAINING "', n) == 0 and\n"
                                    "     redis.call('EXISTS', '" P2M_KEY_RELAY "' .. n) == 1 then return 1 end\n"
                                    "end\n"
                                    "return 2\n";

/* KEYS: relay hash, idle hash, wait hash. ARGV: name. */
static const char lua_leave[] = "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], '" P2M_KEY_TUNNELS "' .. ARGV[1])\n"
                                "redis.call('SREM', '" P2M_KEY_RELAYS "', ARGV[1])\n"
                                "return 0\n";

/* KEYS: registrar hash, its drain key. ARGV: name, url, started, pods_to, ttl. */
static const char lua_registrar_heartbeat[] =
    "local to = redis.call('GET', KEYS[2])\n"
    "redis.call('HSET', KEYS[1], 'url', ARGV[2], 'started', ARGV[3])\n"
    "if to then redis.call('HSET', KEYS[1], 'draining_to', to) else redis.call('HDEL', KEYS[1], 'draining_to') end\n"
    "if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'pods_to', ARGV[4]) else redis.call('HDEL', KEYS[1], 'pods_to') end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "redis.call('SADD', '" P2M_KEY_REGISTRARS "', ARGV[1])\n"
    "return to or ''\n";

int p2m_store_cmd_registrar_heartbeat(p2m_store_cmd_t *c, const char *name, const char *url, const char *started,
                                      const char *pods_to, unsigned ttl)
{
    return EVAL(c, lua_registrar_heartbeat, 2) || pushf(c, P2M_KEY_REGISTRAR "%s", name) ||
                   pushf(c, P2M_KEY_REGISTRAR "%s" P2M_KEY_DRAIN, name) || push(c, name) || push(c, url) || push(c, started) ||
                   push(c, pods_to) || pushu(c, ttl)
               ? -1
               : 0;
}

/* The relay's hashes, in the order the heartbeat and leave scripts take them. */
static int push_relay_keys(p2m_store_cmd_t *c, const char *relay)
{
    return pushf(c, P2M_KEY_RELAY "%s", relay) || pushf(c, P2M_KEY_IDLE "%s", relay) || pushf(c, P2M_KEY_WAIT "%s", relay);
}

static int push_ours(p2m_store_cmd_t *c, const char *relay, const char *created, const char *pod)
{
    return push(c, relay) || push(c, created) || push(c, pod);
}

int p2m_store_cmd_relay_subscribe(p2m_store_cmd_t *c, const char *relay)
{
    begin(c);
    return push(c, "SUBSCRIBE") || pushf(c, P2M_KEY_RELAY "%s", relay) || push(c, P2M_CHANNEL_EVENTS) ? -1 : 0;
}

int p2m_store_relay_channels(const char *relay, char *out, size_t cap)
{
    int n = snprintf(out, cap, P2M_KEY_RELAY "%s," P2M_CHANNEL_EVENTS, relay);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* The rest of msg after word (which ends with its space), as a port. */
static int parse_word_port(const char *msg, size_t len, const char *word, uint16_t *port)
{
    size_t n = strlen(word);
    return len > n && strncmp(msg, word, n) == 0 && p2m_port_parse(msg + n, len - n, port) == 0 ? 0 : -1;
}

p2m_relay_msg_t p2m_store_relay_message(const char *relay, const char *channel, const char *msg, size_t len, uint16_t *port)
{
    size_t plen = sizeof(P2M_KEY_RELAY) - 1;
    if (strncmp(channel, P2M_KEY_RELAY, plen) == 0 && strcmp(channel + plen, relay) == 0)
        return parse_word_port(msg, len, "lease ", port) == 0 ? P2M_RELAY_MSG_LEASE : P2M_RELAY_MSG_UNKNOWN;
    if (strcmp(channel, P2M_CHANNEL_EVENTS) == 0 && parse_word_port(msg, len, "unlease ", port) == 0)
        return P2M_RELAY_MSG_UNLEASE;
    return P2M_RELAY_MSG_NONE;
}

int p2m_store_cmd_lease_get(p2m_store_cmd_t *c, uint16_t port)
{
    begin(c);
    return push(c, "HGETALL") || pushf(c, P2M_KEY_LEASE "%u", (unsigned)port) ? -1 : 0;
}

int p2m_store_cmd_lease_scan(p2m_store_cmd_t *c, const char *cursor)
{
    begin(c);
    return push(c, "SCAN") || push(c, cursor) || push(c, "MATCH") || push(c, P2M_KEY_LEASE_PATTERN) || push(c, "COUNT") ||
                   push(c, "1000")
               ? -1
               : 0;
}

int p2m_store_lease_key_port(const char *key, size_t len, uint16_t *port)
{
    size_t plen = sizeof(P2M_KEY_LEASE) - 1;
    if (len <= plen || strncmp(key, P2M_KEY_LEASE, plen) != 0)
        return -1;
    return p2m_port_parse(key + plen, len - plen, port);
}

int p2m_store_cmd_lease_owner(p2m_store_cmd_t *c, uint16_t port)
{
    begin(c);
    return push(c, "HMGET") || pushf(c, P2M_KEY_LEASE "%u", (unsigned)port) || push(c, "relay") || push(c, "created") ? -1 : 0;
}

int p2m_store_cmd_lease_touch(p2m_store_cmd_t *c, uint16_t port, unsigned ttl)
{
    begin(c);
    return push(c, "EXPIRE") || pushf(c, P2M_KEY_LEASE "%u", (unsigned)port) || pushu(c, ttl) ? -1 : 0;
}

int p2m_store_cmd_lease_drop(p2m_store_cmd_t *c, uint16_t port, const char *relay, const char *created, const char *pod)
{
    return EVAL(c, lua_lease_drop, 1) || pushf(c, P2M_KEY_LEASE "%u", (unsigned)port) || push_ours(c, relay, created, pod) ? -1 : 0;
}

int p2m_store_cmd_lease_bound(p2m_store_cmd_t *c, uint16_t port, const char *relay, const char *created, const char *pod)
{
    return EVAL(c, lua_bound, 1) || pushf(c, P2M_KEY_LEASE "%u", (unsigned)port) || push_ours(c, relay, created, pod) ||
                   pushu(c, port)
               ? -1
               : 0;
}

int p2m_store_cmd_lease_busy(p2m_store_cmd_t *c, uint16_t port, const char *relay, const char *created, const char *pod,
                             const char *reason)
{
    return EVAL(c, lua_busy, 2) || pushf(c, P2M_KEY_LEASE "%u", (unsigned)port) ||
                   pushf(c, P2M_KEY_PORTBUSY "%s:%u", relay, (unsigned)port) || push_ours(c, relay, created, pod) ||
                   pushu(c, port) || pushf(c, "%.200s", reason)
               ? -1
               : 0;
}

int p2m_store_cmd_lease_fail(p2m_store_cmd_t *c, uint16_t port, const char *reason)
{
    begin(c);
    return push(c, "PUBLISH") || push(c, P2M_CHANNEL_BOUND) || pushf(c, "%u fail %.200s", (unsigned)port, reason) ? -1 : 0;
}

int p2m_store_cmd_relay_heartbeat(p2m_store_cmd_t *c, const char *relay, const char *address, const char *ports,
                                  const char *started, unsigned ttl, const p2m_relay_counts_t *n)
{
    return EVAL(c, lua_heartbeat, 3) || push_relay_keys(c, relay) || push(c, relay) || push(c, address) || push(c, ports) ||
                   push(c, started) || pushu(c, ttl) || pushu(c, n->leases) || pushu(c, n->idle) || pushu(c, n->tunnels) ||
                   pushu(c, n->waiting) || pushu(c, n->draining ? 1 : 0)
               ? -1
               : 0;
}

int p2m_store_cmd_relay_overlaps(p2m_store_cmd_t *c, const char *relay, uint16_t lo, uint16_t hi)
{
    return EVAL(c, lua_overlaps, 0) || push(c, relay) || pushu(c, lo) || pushu(c, hi) ? -1 : 0;
}

int p2m_store_cmd_relay_stat(p2m_store_cmd_t *c, const char *relay, const char *service, const char *field,
                             unsigned long long value)
{
    begin(c);
    return push(c, "HINCRBY") || pushf(c, P2M_KEY_RELAY_STATS "%s", relay) || pushf(c, "%s:%s", service, field) || pushu(c, value)
               ? -1
               : 0;
}

/* KEYS[1] the service's bucket of the minute; ARGV: relay, conns, bytes_in, bytes_out, tunnels,
 * ttl. The counts add up over the relays; the gauge is each relay's own field, the most it saw in
 * the minute, so that readers can sum the relays without one relay's later, smaller count hiding
 * another's. */
static const char lua_series[] = "for i, f in ipairs({'conns', 'bytes_in', 'bytes_out'}) do\n"
                                 "  if ARGV[i + 1] ~= '0' then redis.call('HINCRBY', KEYS[1], f, ARGV[i + 1]) end\n"
                                 "end\n"
                                 "local g = 'tunnels:' .. ARGV[1]\n"
                                 "if tonumber(ARGV[5]) > tonumber(redis.call('HGET', KEYS[1], g) or '0') then\n"
                                 "  redis.call('HSET', KEYS[1], g, ARGV[5])\n"
                                 "end\n"
                                 "redis.call('EXPIRE', KEYS[1], ARGV[6])\n"
                                 "return 0\n";

int p2m_store_cmd_relay_series(p2m_store_cmd_t *c, const char *relay, const char *service, unsigned long long minute,
                               const p2m_series_add_t *add)
{
    return EVAL(c, lua_series, 1) || pushf(c, P2M_KEY_SERIES "%s:%llu", service, minute) || push(c, relay) ||
                   pushu(c, add->conns) || pushu(c, add->bytes_in) || pushu(c, add->bytes_out) || pushu(c, add->tunnels) ||
                   pushu(c, P2M_SERIES_TTL)
               ? -1
               : 0;
}

int p2m_store_cmd_relay_leave(p2m_store_cmd_t *c, const char *relay)
{
    return EVAL(c, lua_leave, 3) || push_relay_keys(c, relay) || push(c, relay) ? -1 : 0;
}

int p2m_store_cmd_sni_lookup(p2m_store_cmd_t *c, const char *service, const char *relay)
{
    size_t n = strcspn(service, ":");
    return EVAL(c, lua_sni_lookup, 0) || pushf(c, "%.*s", (int)n, service) || push(c, service) || push(c, relay) ? -1 : 0;
}

/* --- commands sized by the relay's labels ------------------------------------------------------ */

void p2m_store_cmdv_free(p2m_store_cmdv_t *v)
{
    free(v->argv);
    free(v->argvlen);
    free(v->_arena);
    memset(v, 0, sizeof(*v));
}

/* Allocates room for nargs arguments of arena bytes in all. Returns 0, or -1 out of memory. */
static int v_alloc(p2m_store_cmdv_t *v, size_t nargs, size_t arena)
{
    memset(v, 0, sizeof(*v));
    v->argv = calloc(nargs, sizeof(*v->argv));
    v->argvlen = calloc(nargs, sizeof(*v->argvlen));
    v->_arena = malloc(arena);
    if (v->argv == NULL || v->argvlen == NULL || v->_arena == NULL) {
        p2m_store_cmdv_free(v);
        return -1;
    }
    v->_cap = nargs;
    v->_arena_cap = arena;
    return 0;
}

static int v_static(p2m_store_cmdv_t *v, const char *s, size_t n)
{
    if ((size_t)v->argc >= v->_cap)
        return -1;
    v->argv[v->argc] = s;
    v->argvlen[v->argc++] = n;
    return 0;
}

/* Appends a formatted copy. Returns 0, or -1 when it does not fit what v_alloc() sized. */
static int v_pushf(p2m_store_cmdv_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int v_pushf(p2m_store_cmdv_t *v, const char *fmt, ...)
{
    if ((size_t)v->argc >= v->_cap || v->_used >= v->_arena_cap)
        return -1;
    char *dst = v->_arena + v->_used;
    size_t room = v->_arena_cap - v->_used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room)
        return -1;
    v->_used += (size_t)n + 1;
    return v_static(v, dst, (size_t)n);
}

#define V_EVAL(v, script, nkeys) (v_static(v, "EVAL", 4) || v_static(v, script, sizeof(script) - 1) || v_pushf(v, "%d", nkeys))
#define NUM 24 /* bytes for any number argument */

int p2m_store_cmdv_relay_sync_begin(p2m_store_cmdv_t *v, const char *relay, unsigned lease_ttl, unsigned hash_ttl,
                                    const uint16_t *conns, size_t nconns, const p2m_sync_drop_t *drops, size_t ndrops, size_t nsvcs)
{
    size_t nargs = 12 + nconns + 3 * ndrops + 6 * nsvcs; /* 9 ahead of the sections, a count each */
    size_t arena = 3 * (P2M_HOST_MAX + 24) + 8 * NUM + NUM * nconns + (2 * NUM + P2M_ID_MAX + 3) * ndrops +
                   (P2M_SERVICE_MAX + 1 + 5 * NUM) * nsvcs;
    if (v_alloc(v, nargs, arena) != 0)
        return -1;
    int bad = V_EVAL(v, lua_sync, 3) || v_pushf(v, P2M_KEY_IDLE "%s", relay) || v_pushf(v, P2M_KEY_WAIT "%s", relay) ||
              v_pushf(v, P2M_KEY_RELAY_STATS "%s", relay) || v_pushf(v, "%s", relay) || v_pushf(v, "%u", lease_ttl) ||
              v_pushf(v, "%u", hash_ttl) || v_pushf(v, "%zu", nconns);
    for (size_t i = 0; !bad && i < nconns; i++)
        bad = v_pushf(v, "%u", (unsigned)conns[i]);
    bad = bad || v_pushf(v, "%zu", ndrops);
    for (size_t i = 0; !bad && i < ndrops; i++)
        bad = v_pushf(v, "%u", (unsigned)drops[i].port) || v_pushf(v, "%.*s", NUM - 1, drops[i].created) ||
              v_pushf(v, "%.*s", P2M_ID_MAX, drops[i].pod);
    bad = bad || v_pushf(v, "%zu", nsvcs);
    if (bad) {
        p2m_store_cmdv_free(v);
        return -1;
    }
    return 0;
}

int p2m_store_cmdv_relay_sync_service(p2m_store_cmdv_t *v, const p2m_sync_service_t *s)
{
    return v_pushf(v, "%.*s", P2M_SERVICE_MAX, s->service) || v_pushf(v, "%d", s->idle_delta) || v_pushf(v, "%u", s->waiting) ||
                   v_pushf(v, "%llu", s->queued) || v_pushf(v, "%llu", s->waited_served) || v_pushf(v, "%llu", s->wait_timeouts)
               ? -1
               : 0;
}

/* EVAL of script with the relay's key (or none) and ARGV relay-or-nothing, value, then the pairs. */
static int v_pairs(p2m_store_cmdv_t *v, const char *script, size_t len, const char *key_prefix, const char *relay, unsigned value,
                   const p2m_count_t *items, size_t n)
{
    if (v_alloc(v, 6 + 2 * n, 2 * (P2M_HOST_MAX + 24) + 2 * NUM + (P2M_SERVICE_MAX + 1 + NUM) * n) != 0)
        return -1;
    int bad = v_static(v, "EVAL", 4) || v_static(v, script, len) || v_pushf(v, "%d", key_prefix != NULL ? 1 : 0) ||
              (key_prefix != NULL ? v_pushf(v, "%s%s", key_prefix, relay) : v_pushf(v, "%s", relay)) || v_pushf(v, "%u", value);
    for (size_t i = 0; !bad && i < n; i++)
        bad = v_pushf(v, "%.*s", P2M_SERVICE_MAX, items[i].service) || v_pushf(v, "%u", items[i].n);
    if (bad) {
        p2m_store_cmdv_free(v);
        return -1;
    }
    return 0;
}

int p2m_store_cmdv_relay_counts(p2m_store_cmdv_t *v, const char *relay, p2m_count_kind_t kind, unsigned ttl,
                                const p2m_count_t *items, size_t n)
{
    const char *prefix = kind == P2M_COUNT_IDLE ? P2M_KEY_IDLE : kind == P2M_COUNT_WAIT ? P2M_KEY_WAIT : P2M_KEY_TUNNELS;
    return v_pairs(v, lua_counts, sizeof(lua_counts) - 1, prefix, relay, ttl, items, n);
}

int p2m_store_cmdv_relay_alive(p2m_store_cmdv_t *v, const char *relay, unsigned window, const p2m_count_t *items, size_t n)
{
    return v_pairs(v, lua_alive, sizeof(lua_alive) - 1, NULL, relay, window, items, n);
}
