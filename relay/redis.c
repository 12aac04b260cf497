/* The relay's two asynchronous Redis connections (docs/PROTOCOL.md section 3).
 *
 *   cmd  every command: bind confirmations, idle counts, lease checks, heartbeat, counters
 *   sub  SUBSCRIBE p2m:relay:NAME ("lease PORT") and p2m:events ("unlease PORT")
 *
 * Both run through p2m_redis_poller on the relay's loop and reconnect with exponential backoff.
 * Nothing waits for Redis: while the command connection is down, calls here do nothing, and each
 * (re)connect resynchronises everything instead: schema check, the idle hash rewritten from the
 * pre-connections actually held, heartbeat, a check of every lease held and a SCAN for leases
 * announced meanwhile (run once both connections are up, so that no announcement falls between
 * the SCAN and the SUBSCRIBE). Commands on one connection run in order, so the +1/-1 idle updates
 * sent after a resync apply on top of it.
 *
 * Keys and channels are spelled in the "schema" section below only. They belong with store.h /
 * store_cmd.c (see the relay's report): the builders are written so that they can move there. */
#include "relay.h"

#include <assert.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/redis_poller.h"
#include "p2m/store.h"

#define CONN_MAGIC 0x52434f4eu /* "RCON" */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000
#define STOP_WAIT_MS 2000
#define PING_DEAD_BEATS 3 /* heartbeats a PING may go unanswered before Redis counts as gone */
#define CMD_ARGS 16

_Static_assert(sizeof(uintptr_t) >= 8, "reply cookies pack a port and a generation into a pointer");

/* --- schema: keys, channels and scripts ------------------------------------------------------ */

#define KEY_RELAYS "p2m:relays"
#define KEY_SCHEMA "p2m:schema"
#define KEY_LEASE_PATTERN "p2m:lease:*"
#define KEY_LEASE_PREFIX "p2m:lease:"
#define CHANNEL_BOUND "p2m:bound"
#define CHANNEL_EVENTS "p2m:events"

static int key_relay(const char *name, char *out, size_t cap) /* hash: heartbeat */
{
    return snprintf(out, cap, "p2m:relay:%s", name);
}
static int key_idle(const char *name, char *out, size_t cap) /* hash: LABEL -> idle count */
{
    return snprintf(out, cap, "p2m:idle:%s", name);
}
static int key_stats(const char *name, char *out, size_t cap) /* hash: LABEL:bytes_in ... */
{
    return snprintf(out, cap, "p2m:stats:relay:%s", name);
}
static int key_wait(const char *name, char *out, size_t cap) /* hash: LABEL -> consumers waiting */
{
    return snprintf(out, cap, "p2m:wait:%s", name);
}
#define KEY_ALIVE_PREFIX "p2m:alive:" /* string per service: the relay that saw its pod last */
static int key_portbusy(const char *name, uint16_t port, char *out, size_t cap)
{
    return snprintf(out, cap, "p2m:portbusy:%s:%u", name, (unsigned)port);
}
static int channel_relay(const char *name, char *out, size_t cap) /* "lease PORT" */
{
    return snprintf(out, cap, "p2m:relay:%s", name);
}

/* The lease names this relay and still is the one we hold (created and pod identify it).
 * KEYS[1] lease; ARGV[1] relay, ARGV[2] created, ARGV[3] pod. */
#define LUA_LEASE_IS_OURS                                                                                                          \
    "local l = redis.call('HMGET', KEYS[1], 'relay', 'created', 'pod')\n"                                                          \
    "local ours = l[1] == ARGV[1] and l[2] == ARGV[2] and l[3] == ARGV[3]\n"

/* PROTOCOL 3.3, success. ARGV[4] port. Returns 1, or 0 (and says fail) when the lease is gone. A
 * service's consumer port (addr '*') lives as long as its label from now on: no TTL (3.6). */
static const char lua_bound[] =
    LUA_LEASE_IS_OURS "if ours then\n"
                      "  redis.call('HSET', KEYS[1], 'state', 'bound')\n"
                      "  if redis.call('HGET', KEYS[1], 'addr') == '*' then redis.call('PERSIST', KEYS[1]) end\n"
                      "  redis.call('PUBLISH', '" CHANNEL_BOUND "', ARGV[4] .. ' ok')\n"
                      "  return 1\n"
                      "end\n"
                      "redis.call('PUBLISH', '" CHANNEL_BOUND "', ARGV[4] .. ' fail lease gone')\n"
                      "return 0\n";

/* PROTOCOL 3.3, failure. KEYS[2] portbusy; ARGV[4] port, ARGV[5] reason. */
static const char lua_busy[] = LUA_LEASE_IS_OURS "redis.call('SET', KEYS[2], '1', 'EX', 60)\n"
                                                 "if ours then redis.call('DEL', KEYS[1]) end\n"
                                                 "redis.call('PUBLISH', '" CHANNEL_BOUND "', ARGV[4] .. ' fail ' .. ARGV[5])\n"
                                                 "return 0\n";

/* What the relay learnt in the last RELAY_SYNC_MS (PROTOCOL 3.4), in one script. KEYS[1] idle hash,
 * KEYS[2] wait hash, KEYS[3] stats hash; ARGV[1] relay name, ARGV[2] the ttl of a lease with an idle
 * connection, ARGV[3] the hashes' ttl, then three sections, each a count and its entries:
 *   leases a connection came on: PORT ... The lease is kept (EXPIRE) and marked "connected" (a
 *     relay that finds such a lease without holding its connection knows the connection is gone);
 *   leases ended: PORT CREATED POD ... Deleted if still the one this relay held;
 *   services: SERVICE IDLE_DELTA WAITING QUEUED WAITED_SERVED WAIT_TIMEOUTS ... The idle count
 *     moves by the delta (a field at 0 or below is removed), the wait count is set, the counters
 *     are added.
 * Returns {DRIFT, I...}: DRIFT 1 when an idle count went below 0 (resync), then the positions
 * (1-based) of the leases of the first section that no longer exist. */
static const char lua_sync[] =
    "local i, out, drift = 4, {}, 0\n"
    "local n = tonumber(ARGV[i]) i = i + 1\n"
    "for k = 1, n do\n"
    "  local key = '" KEY_LEASE_PREFIX "' .. ARGV[i]\n"
    "  if redis.call('EXPIRE', key, ARGV[2]) == 1 then redis.call('HSET', key, 'state', 'connected')\n"
    "  else table.insert(out, k) end\n"
    "  i = i + 1\n"
    "end\n"
    "n = tonumber(ARGV[i]) i = i + 1\n"
    "for k = 1, n do\n"
    "  local key = '" KEY_LEASE_PREFIX "' .. ARGV[i]\n"
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

/* Rewrites a count hash (idle or wait) from what the relay holds. KEYS[1] the hash; ARGV[1] ttl,
 * then LABEL COUNT pairs. */
static const char lua_idle_resync[] = "redis.call('DEL', KEYS[1])\n"
                                      "for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end\n"
                                      "if #ARGV > 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end\n"
                                      "return 0\n";

/* Marks services alive on this relay (PROTOCOL 2.1). ARGV[1] relay name, ARGV[2] seconds, then
 * SERVICE FLAG pairs: FLAG "1" when the relay holds idle pre-connections of the service (new ones
 * come here: the mark names this relay), "0" when it holds only joined tunnels (the pod is there,
 * but its next pre-connections may go to another relay: the mark is refreshed only when it names
 * this relay or is gone). */
static const char lua_alive[] = "for i = 3, #ARGV, 2 do\n"
                                "  local k = '" KEY_ALIVE_PREFIX "' .. ARGV[i]\n"
                                "  if ARGV[i + 1] == '1' then redis.call('SET', k, ARGV[1], 'EX', ARGV[2])\n"
                                "  else\n"
                                "    local cur = redis.call('GET', k)\n"
                                "    if not cur or cur == ARGV[1] then redis.call('SET', k, ARGV[1], 'EX', ARGV[2]) end\n"
                                "  end\n"
                                "end\n"
                                "return 0\n";

/* The live relays other than ARGV[1] whose port range overlaps ARGV[2]-ARGV[3] (PROTOCOL 3.1: ranges
 * sharing a Redis must be disjoint, lease keys are named by port alone). Returns NAME, LO-HI pairs,
 * sorted by name. */
static const char lua_overlaps[] = "local out, names = {}, redis.call('SMEMBERS', '" KEY_RELAYS "')\n"
                                   "table.sort(names)\n"
                                   "local lo, hi = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
                                   "for _, name in ipairs(names) do\n"
                                   "  if name ~= ARGV[1] then\n"
                                   "    local p = redis.call('HGET', 'p2m:relay:' .. name, 'ports') or ''\n"
                                   "    local a, b = string.match(p, '^(%d+)-(%d+)$')\n"
                                   "    if a and tonumber(a) <= hi and tonumber(b) >= lo then\n"
                                   "      table.insert(out, name) table.insert(out, p)\n"
                                   "    end\n"
                                   "  end\n"
                                   "end\n"
                                   "return out\n";

/* Where an SNI consumer of SERVICE (ARGV[2], of label ARGV[1]) is served (relay/sni.c): "unknown" (no
 * pod owns the label), "gone" (no idle pre-connection on a live relay and no alive mark naming one),
 * "here" (the live relay with the most idle pre-connections, or else the alive mark, names ARGV[3],
 * this relay) or "elsewhere". */
static const char lua_sni_lookup[] = "if not redis.call('HGET', 'p2m:labels', ARGV[1]) then return 'unknown' end\n"
                                     "local best, most = nil, 0\n"
                                     "for _, name in ipairs(redis.call('SMEMBERS', '" KEY_RELAYS "')) do\n"
                                     "  if redis.call('EXISTS', 'p2m:relay:' .. name) == 1 then\n"
                                     "    local n = tonumber(redis.call('HGET', 'p2m:idle:' .. name, ARGV[2]) or '0') or 0\n"
                                     "    if n > most then best, most = name, n end\n"
                                     "  end\n"
                                     "end\n"
                                     "if not best then\n"
                                     "  local home = redis.call('GET', '" KEY_ALIVE_PREFIX "' .. ARGV[2])\n"
                                     "  if home and redis.call('EXISTS', 'p2m:relay:' .. home) == 1 then best = home end\n"
                                     "end\n"
                                     "if not best then return 'gone' end\n"
                                     "return best == ARGV[3] and 'here' or 'elsewhere'\n";

/* --- connections ------------------------------------------------------------------------------ */

typedef struct {
    uint32_t magic;
    rredis_t *rr;
    const char *what; /* "cmd" or "sub" */
    redisAsyncContext *ac;
    p2m_redis_poller_t *poller;
    p2m_loop_handler_t h;
    p2m_loop_timer_t retry;
    unsigned backoff_ms;
    int ready; /* cmd: connected and schema checked; sub: subscribed to both channels */
    int failures;
} conn_t;

/* A lease a connection came on, or one that ended, waiting for the next sync (lua_sync). */
typedef struct {
    uint16_t port;
    uint32_t gen;
} sync_conn_t;
typedef struct {
    uint16_t port;
    char created[24];
    char pod[P2M_ID_MAX + 1];
} sync_drop_t;

struct rredis {
    relay_t *relay;
    conn_t cmd, sub;
    p2m_loop_timer_t sync_timer; /* armed while something waits for the next sync */
    uint32_t sync_round;         /* the round sync_conns belong to (lease_t.sync_round) */
    sync_conn_t *sync_conns;
    size_t nsync_conns, sync_conns_cap;
    sync_drop_t *sync_drops;
    size_t nsync_drops, sync_drops_cap;
    p2m_loop_timer_t heartbeat, check, stop_wait;
    int stopping;
    int scan_running, scan_again;
    int synced;           /* a SCAN completed since the process started: later ones are rescans */
    uint64_t ping_sent;   /* loop ms of the PING awaiting its PONG, 0 when none */
    uint64_t overlaps;    /* hash of the last overlapping relays reported (0: none), so each change is logged once */
    unsigned ping_missed; /* heartbeats since that PING */
    char key_relay[96], key_idle[96], key_stats[96], key_wait[96], chan_relay[96];
    char ports[16], started[24];
};

typedef struct {
    int argc;
    const char *argv[CMD_ARGS];
    size_t len[CMD_ARGS];
    char buf[1024];
    size_t used;
} cmd_t;

static void cmd_begin(cmd_t *c)
{
    c->argc = 0;
    c->used = 0;
}

/* Arguments are bounded by their types (labels, IDs, ports, numbers): overflowing the buffer is
 * a bug, not an input error. */
static void cmd_push(cmd_t *c, const char *s)
{
    size_t n = strlen(s);
    if (c->argc >= CMD_ARGS || c->used + n + 1 > sizeof(c->buf)) {
        p2m_log(P2M_LOG_ERROR, "redis_cmd_overflow", "arg=%.32s", s);
        abort();
    }
    char *dst = c->buf + c->used;
    memcpy(dst, s, n + 1);
    c->used += n + 1;
    c->argv[c->argc] = dst;
    c->len[c->argc++] = n;
}

static void cmd_pushf(cmd_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cmd_pushf(cmd_t *c, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    cmd_push(c, tmp);
}

static void cmd_script(cmd_t *c, const char *script, size_t len, int nkeys)
{
    cmd_begin(c);
    cmd_push(c, "EVAL");
    c->argv[c->argc] = script;
    c->len[c->argc++] = len;
    cmd_pushf(c, "%d", nkeys);
}
#define CMD_SCRIPT(c, script, nkeys) cmd_script(c, script, sizeof(script) - 1, nkeys)

static int conn_send(conn_t *conn, redisCallbackFn *fn, void *priv, int argc, const char **argv, const size_t *len)
{
    if (conn->ac == NULL)
        return -1;
    if (redisAsyncCommandArgv(conn->ac, fn, priv, argc, argv, len) != REDIS_OK) {
        p2m_log(P2M_LOG_WARN, "redis_send_failed", "conn=%s command=%.16s", conn->what, argv[0]);
        return -1;
    }
    return 0;
}

static int cmd_send(rredis_t *rr, cmd_t *c, redisCallbackFn *fn, void *priv)
{
    if (!rr->cmd.ready)
        return -1;
    return conn_send(&rr->cmd, fn, priv, c->argc, c->argv, c->len);
}

/* A reply cookie: which lease (port and generation) a reply is about, plus a flag. */
static void *cookie(uint16_t port, uint32_t gen, unsigned flag)
{
    return (void *)(((uintptr_t)gen << 32) | ((uintptr_t)(flag & 0xffff) << 16) | port);
}
static uint16_t cookie_port(void *c)
{
    return (uint16_t)((uintptr_t)c & 0xffff);
}
static unsigned cookie_flag(void *c)
{
    return (unsigned)(((uintptr_t)c >> 16) & 0xffff);
}
static uint32_t cookie_gen(void *c)
{
    return (uint32_t)((uintptr_t)c >> 32);
}

static rredis_t *rr_from_ac(redisAsyncContext *ac)
{
    conn_t *conn = ac->data;
    if (conn == NULL || conn->magic != CONN_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "redis_bad_context", "ptr=%p", (void *)conn);
        abort();
    }
    return conn->rr;
}

static const char *reply_error(const redisReply *rep)
{
    return rep != NULL && rep->type == REDIS_REPLY_ERROR ? rep->str : NULL;
}

/* --- lease commands ------------------------------------------------------------------------- */

static void lease_key(uint16_t port, char *out, size_t cap)
{
    p2m_store_key_lease(port, out, cap);
}

static void copy_field(char *dst, size_t cap, const redisReply *v)
{
    if (v->type == REDIS_REPLY_STRING && v->len < cap) {
        memcpy(dst, v->str, v->len);
        dst[v->len] = '\0';
    } else {
        dst[0] = '\0';
        if (v->type == REDIS_REPLY_STRING)
            memcpy(dst, "\x01", 2); /* too long: invalid for every check downstream */
    }
}

static void on_lease_load(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    if (rep == NULL || rr->stopping)
        return;
    if (rep->type != REDIS_REPLY_ARRAY) {
        p2m_log(P2M_LOG_WARN, "redis_reply_unexpected", "command=HGETALL lease=%u error=\"%s\"", (unsigned)cookie_port(priv),
                reply_error(rep) ? reply_error(rep) : "not an array");
        return;
    }
    lease_info_t info;
    memset(&info, 0, sizeof(info));
    info.present = rep->elements > 0;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *k = rep->element[i], *v = rep->element[i + 1];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "kind") == 0)
            copy_field(info.kind, sizeof(info.kind), v);
        else if (strcmp(k->str, "label") == 0)
            copy_field(info.label, sizeof(info.label), v);
        else if (strcmp(k->str, "service") == 0)
            copy_field(info.service, sizeof(info.service), v);
        else if (strcmp(k->str, "pod") == 0)
            copy_field(info.pod, sizeof(info.pod), v);
        else if (strcmp(k->str, "addr") == 0)
            copy_field(info.addr, sizeof(info.addr), v);
        else if (strcmp(k->str, "relay") == 0)
            copy_field(info.relay, sizeof(info.relay), v);
        else if (strcmp(k->str, "created") == 0)
            copy_field(info.created, sizeof(info.created), v);
        else if (strcmp(k->str, "state") == 0)
            copy_field(info.state, sizeof(info.state), v);
        else if (strcmp(k->str, "conns") == 0)
            copy_field(info.conns, sizeof(info.conns), v);
    }
    ports_on_lease(rr->relay, cookie_port(priv), &info, (int)cookie_flag(priv));
}

void rredis_lease_load(rredis_t *rr, uint16_t port, int how)
{
    char key[64];
    lease_key(port, key, sizeof(key));
    const char *argv[] = {"HGETALL", key};
    if (rr->cmd.ready)
        conn_send(&rr->cmd, on_lease_load, cookie(port, 0, (unsigned)how), 2, argv, NULL);
}

/* KEYS[1] lease; ARGV relay, created, pod. */
static const char lua_lease_drop[] = LUA_LEASE_IS_OURS "if ours then return redis.call('DEL', KEYS[1]) end\n"
                                                       "return 0\n";

void rredis_lease_drop(rredis_t *rr, uint16_t port, const lease_info_t *info)
{
    cmd_t c;
    char key[64];
    lease_key(port, key, sizeof(key));
    CMD_SCRIPT(&c, lua_lease_drop, 1);
    cmd_push(&c, key);
    cmd_push(&c, rr->relay->cfg.relay.name);
    cmd_push(&c, info->created);
    cmd_push(&c, info->pod);
    cmd_send(rr, &c, NULL, NULL);
}

static void push_ours(cmd_t *c, const relay_t *r, const lease_t *l)
{
    cmd_push(c, r->cfg.relay.name);
    cmd_push(c, l->created);
    cmd_push(c, l->pod);
}

static void on_bound(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    if (rep == NULL || rr->stopping)
        return;
    if (rep->type != REDIS_REPLY_INTEGER) {
        p2m_log(P2M_LOG_WARN, "redis_reply_unexpected", "command=bound lease=%u error=\"%s\"", (unsigned)cookie_port(priv),
                reply_error(rep) ? reply_error(rep) : "not an integer");
        return;
    }
    ports_on_bound(rr->relay, cookie_port(priv), cookie_gen(priv), rep->integer == 1);
}

void rredis_lease_bound(rredis_t *rr, const lease_t *l)
{
    cmd_t c;
    char key[64];
    lease_key(l->port, key, sizeof(key));
    CMD_SCRIPT(&c, lua_bound, 1);
    cmd_push(&c, key);
    push_ours(&c, rr->relay, l);
    cmd_pushf(&c, "%u", (unsigned)l->port);
    cmd_send(rr, &c, on_bound, cookie(l->port, l->gen, 0));
}

void rredis_lease_busy(rredis_t *rr, uint16_t port, const lease_info_t *info, const char *reason)
{
    cmd_t c;
    char key[64], busy[128];
    lease_key(port, key, sizeof(key));
    key_portbusy(rr->relay->cfg.relay.name, port, busy, sizeof(busy));
    CMD_SCRIPT(&c, lua_busy, 2);
    cmd_push(&c, key);
    cmd_push(&c, busy);
    cmd_push(&c, rr->relay->cfg.relay.name);
    cmd_push(&c, info->created);
    cmd_push(&c, info->pod);
    cmd_pushf(&c, "%u", (unsigned)port);
    cmd_pushf(&c, "%.200s", reason);
    cmd_send(rr, &c, NULL, NULL);
}

void rredis_lease_fail(rredis_t *rr, uint16_t port, const char *reason)
{
    cmd_t c;
    cmd_begin(&c);
    cmd_push(&c, "PUBLISH");
    cmd_push(&c, CHANNEL_BOUND);
    cmd_pushf(&c, "%u fail %.200s", (unsigned)port, reason);
    cmd_send(rr, &c, NULL, NULL);
}

/* Integer replies of EXPIRE-like commands: 0 means the lease key is gone. */
static void on_lease_alive(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    if (rep == NULL || rr->stopping)
        return;
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer == 0)
        ports_on_gone(rr->relay, cookie_port(priv), cookie_gen(priv), "lease_gone");
    else if (rep->type == REDIS_REPLY_ERROR)
        p2m_log(P2M_LOG_WARN, "redis_reply_unexpected", "lease=%u error=\"%s\"", (unsigned)cookie_port(priv), rep->str);
}

static void idle_resync(rredis_t *rr);
static void alive_marks(rredis_t *rr);

void rredis_idle_add(rredis_t *rr, const lease_t *l)
{
    relay_t *r = rr->relay;
    lease_t *ml = (lease_t *)l;
    if (ml->sync_round != rr->sync_round) { /* once per lease and sync, however many came on it */
        if (rr->nsync_conns == rr->sync_conns_cap) {
            rr->sync_conns_cap = rr->sync_conns_cap ? rr->sync_conns_cap * 2 : 64;
            rr->sync_conns = relay_xrealloc(rr->sync_conns, rr->sync_conns_cap, sizeof(*rr->sync_conns));
        }
        rr->sync_conns[rr->nsync_conns++] = (sync_conn_t){l->port, l->gen};
        ml->sync_round = rr->sync_round;
    }
    /* The count goes up whatever becomes of the lease: it comes down with the connection. */
    l->label->idle_delta++;
    match_sync_mark(r, l->label);
}

void rredis_pre_release(rredis_t *rr, const lease_t *l, int delta, int last)
{
    relay_t *r = rr->relay;
    if (last) {
        if (rr->nsync_drops == rr->sync_drops_cap) {
            rr->sync_drops_cap = rr->sync_drops_cap ? rr->sync_drops_cap * 2 : 16;
            rr->sync_drops = relay_xrealloc(rr->sync_drops, rr->sync_drops_cap, sizeof(*rr->sync_drops));
        }
        sync_drop_t *d = &rr->sync_drops[rr->nsync_drops++];
        d->port = l->port;
        snprintf(d->created, sizeof(d->created), "%s", l->created);
        snprintf(d->pod, sizeof(d->pod), "%s", l->pod);
        rredis_sync_soon(rr);
    }
    if (delta != 0) {
        l->label->idle_delta += delta;
        match_sync_mark(r, l->label);
    }
}

/* The lease marks of one sync, kept for its reply. */
typedef struct {
    rredis_t *rr;
    size_t n;
    sync_conn_t conns[];
} sync_reply_t;

static void on_sync(redisAsyncContext *ac, void *reply, void *priv)
{
    sync_reply_t *sr = priv;
    redisReply *rep = reply;
    rredis_t *rr = rr_from_ac(ac);
    if (rep != NULL && !rr->stopping) {
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 && rep->element[0]->type == REDIS_REPLY_INTEGER) {
            for (size_t i = 1; i < rep->elements; i++) {
                const redisReply *e = rep->element[i];
                if (e->type == REDIS_REPLY_INTEGER && e->integer >= 1 && (size_t)e->integer <= sr->n) {
                    const sync_conn_t *c = &sr->conns[e->integer - 1];
                    ports_on_gone(rr->relay, c->port, c->gen, "lease_gone");
                }
            }
            if (rep->element[0]->integer == 1) {
                p2m_log(P2M_LOG_WARN, "idle_count_drift", "relay=%s", rr->relay->cfg.relay.name);
                idle_resync(rr);
            }
        } else {
            p2m_log(P2M_LOG_WARN, "redis_reply_unexpected", "command=sync error=\"%s\"",
                    reply_error(rep) ? reply_error(rep) : "shape");
        }
    }
    free(sr);
}

/* Arguments of one sync: argv into one arena, sized before the first is written. */
typedef struct {
    const char **argv;
    size_t *len;
    size_t n;
    char *arena;
    size_t used;
} sync_args_t;

static void sync_arg(sync_args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sync_arg(sync_args_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsprintf(a->arena + a->used, fmt, ap); /* the arena was sized for the longest values */
    va_end(ap);
    a->argv[a->n] = a->arena + a->used;
    a->len[a->n++] = (size_t)k;
    a->used += (size_t)k + 1;
}

static void sync_service(relay_t *r, label_t *l, void *arg)
{
    sync_args_t *a = arg;
    (void)r;
    sync_arg(a, "%s", l->name);
    sync_arg(a, "%d", l->idle_delta);
    sync_arg(a, "%u", l->nwait);
    sync_arg(a, "%llu", (unsigned long long)l->queued);
    sync_arg(a, "%llu", (unsigned long long)l->waited_served);
    sync_arg(a, "%llu", (unsigned long long)l->wait_timeouts);
    l->queued = l->waited_served = l->wait_timeouts = 0;
}

/* Writes everything the relay learnt since the last sync in one script (lua_sync). With the
 * command connection down it drops it: the resync after the reconnect rewrites the counts. */
static void sync_flush(rredis_t *rr)
{
    relay_t *r = rr->relay;
    p2m_loop_timer_stop(r->loop, &rr->sync_timer);
    rr->sync_round++;
    if (!rr->cmd.ready || rr->stopping) {
        rr->nsync_conns = rr->nsync_drops = 0;
        match_sync_flush(r, NULL, NULL);
        return;
    }
    size_t nlabels = 0;
    for (const label_t *l = r->sync_dirty; l != NULL; l = l->sync_next)
        nlabels++;
    size_t nargs = 12 + rr->nsync_conns + 3 * rr->nsync_drops + 6 * nlabels; /* 9 ahead of the sections, a count each */
    size_t arena = 64 + 8 * rr->nsync_conns + (8 + 24 + P2M_ID_MAX + 3) * rr->nsync_drops + (P2M_SERVICE_MAX + 6 * 24) * nlabels;
    sync_args_t a = {relay_xcalloc(nargs, sizeof(*a.argv)), relay_xcalloc(nargs, sizeof(*a.len)), 0, relay_xcalloc(arena, 1), 0};
    sync_reply_t *sr = relay_xcalloc(1, sizeof(*sr) + rr->nsync_conns * sizeof(sync_conn_t));
    sr->rr = rr;
    sr->n = rr->nsync_conns;
    a.argv[a.n] = "EVAL", a.len[a.n++] = 4;
    a.argv[a.n] = lua_sync, a.len[a.n++] = sizeof(lua_sync) - 1;
    sync_arg(&a, "3");
    a.argv[a.n] = rr->key_idle, a.len[a.n++] = strlen(rr->key_idle);
    a.argv[a.n] = rr->key_wait, a.len[a.n++] = strlen(rr->key_wait);
    a.argv[a.n] = rr->key_stats, a.len[a.n++] = strlen(rr->key_stats);
    a.argv[a.n] = r->cfg.relay.name, a.len[a.n++] = strlen(r->cfg.relay.name);
    sync_arg(&a, "%d", RELAY_IDLE_LEASE_TTL);
    sync_arg(&a, "%d", RELAY_HEARTBEAT_TTL);
    sync_arg(&a, "%zu", rr->nsync_conns);
    for (size_t i = 0; i < rr->nsync_conns; i++) {
        sync_arg(&a, "%u", (unsigned)rr->sync_conns[i].port);
        sr->conns[i] = rr->sync_conns[i];
    }
    sync_arg(&a, "%zu", rr->nsync_drops);
    for (size_t i = 0; i < rr->nsync_drops; i++) {
        sync_arg(&a, "%u", (unsigned)rr->sync_drops[i].port);
        sync_arg(&a, "%s", rr->sync_drops[i].created);
        sync_arg(&a, "%s", rr->sync_drops[i].pod);
    }
    sync_arg(&a, "%zu", nlabels);
    match_sync_flush(r, sync_service, &a);
    rr->nsync_conns = rr->nsync_drops = 0;
    assert(a.n <= nargs && a.used <= arena);
    if (conn_send(&rr->cmd, on_sync, sr, (int)a.n, a.argv, a.len) != 0)
        free(sr);
    free(a.argv);
    free(a.len);
    free(a.arena);
}

static void on_sync_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    sync_flush((rredis_t *)((char *)t - offsetof(rredis_t, sync_timer)));
}

void rredis_sync_soon(rredis_t *rr)
{
    if (!p2m_loop_timer_armed(&rr->sync_timer))
        p2m_loop_timer_start(rr->relay->loop, &rr->sync_timer, RELAY_SYNC_MS);
}

static void on_sni_lookup(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    (void)ac;
    const char *verdict = rep != NULL && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS) ? rep->str : NULL;
    sni_on_lookup(priv, verdict);
}

int rredis_sni_lookup(rredis_t *rr, const char *service, void *cookie)
{
    cmd_t c;
    char label[P2M_SERVICE_MAX + 1];
    snprintf(label, sizeof(label), "%.*s", (int)strcspn(service, ":"), service);
    CMD_SCRIPT(&c, lua_sni_lookup, 0);
    cmd_push(&c, label);
    cmd_push(&c, service);
    cmd_push(&c, rr->relay->cfg.relay.name);
    return cmd_send(rr, &c, on_sni_lookup, cookie);
}

static void on_lease_check(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    if (rep == NULL || rr->stopping)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
        return;
    lease_t *l = ports_find(rr->relay, cookie_port(priv));
    if (l == NULL || l->gen != cookie_gen(priv))
        return;
    const redisReply *relay = rep->element[0], *created = rep->element[1];
    if (relay->type != REDIS_REPLY_STRING || strcmp(relay->str, rr->relay->cfg.relay.name) != 0 ||
        created->type != REDIS_REPLY_STRING || strcmp(created->str, l->created) != 0)
        ports_on_gone(rr->relay, l->port, l->gen, relay->type == REDIS_REPLY_STRING ? "lease_replaced" : "lease_gone");
}

void rredis_lease_check(rredis_t *rr, const lease_t *l)
{
    char key[64];
    lease_key(l->port, key, sizeof(key));
    const char *argv[] = {"HMGET", key, "relay", "created"};
    if (rr->cmd.ready)
        conn_send(&rr->cmd, on_lease_check, cookie(l->port, l->gen, 0), 4, argv, NULL);
}

void rredis_lease_touch(rredis_t *rr, const lease_t *l, unsigned ttl)
{
    char key[64], ttl_s[16];
    lease_key(l->port, key, sizeof(key));
    snprintf(ttl_s, sizeof(ttl_s), "%u", ttl);
    const char *argv[] = {"EXPIRE", key, ttl_s};
    if (rr->cmd.ready)
        conn_send(&rr->cmd, on_lease_alive, cookie(l->port, l->gen, 0), 3, argv, NULL);
}

/* --- periodic work -------------------------------------------------------------------------- */

static void emit_counters(relay_t *r, const label_t *l, void *arg)
{
    rredis_t *rr = arg;
    (void)r;
    if (l->name[0] == '\0') /* the SNI port's consumers before their service is known: no service */
        return;
    const struct {
        const char *name;
        uint64_t v;
    } fields[] = {{"bytes_in", l->bytes_in}, {"bytes_out", l->bytes_out},         {"conns", l->conns},
                  {"queued", l->queued},     {"waited_served", l->waited_served}, {"wait_timeouts", l->wait_timeouts}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if (fields[i].v == 0)
            continue;
        cmd_t c;
        cmd_begin(&c);
        cmd_push(&c, "HINCRBY");
        cmd_push(&c, rr->key_stats);
        cmd_pushf(&c, "%s:%s", l->name, fields[i].name);
        cmd_pushf(&c, "%llu", (unsigned long long)fields[i].v);
        cmd_send(rr, &c, NULL, NULL);
    }
}

static void on_pong(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    (void)priv;
    if (reply != NULL)
        rr->ping_sent = 0;
}

/* hiredis' async API has no timeouts: a Redis that stops answering without closing the connection
 * (a network partition) would hold every command forever. A PING per heartbeat notices it; both
 * connections are then dropped and the usual reconnect takes over. Returns -1 when it dropped. */
static int watchdog(rredis_t *rr)
{
    uint64_t now = p2m_loop_now(rr->relay->loop);
    if (rr->ping_sent != 0 && ++rr->ping_missed >= PING_DEAD_BEATS) {
        p2m_log(P2M_LOG_WARN, "redis_unresponsive", "redis=%s waited_ms=%llu", rr->relay->cfg.redis_str,
                (unsigned long long)(now - rr->ping_sent));
        rr->ping_sent = 0;
        /* Freed here, outside any hiredis callback: on_release() schedules the reconnects. */
        if (rr->cmd.ac != NULL)
            redisAsyncFree(rr->cmd.ac);
        if (rr->sub.ac != NULL)
            redisAsyncFree(rr->sub.ac);
        return -1;
    }
    if (rr->ping_sent == 0) {
        const char *argv[] = {"PING"};
        if (conn_send(&rr->cmd, on_pong, NULL, 1, argv, NULL) == 0) {
            rr->ping_sent = now;
            rr->ping_missed = 0;
        }
    }
    return 0;
}

static void on_overlaps(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    (void)priv;
    if (rep == NULL || rr->stopping || rep->type != REDIS_REPLY_ARRAY)
        return;
    uint64_t h = rep->elements > 0 ? 1469598103934665603ull : 0; /* FNV-1a over the pairs */
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        for (size_t k = 0; e->type == REDIS_REPLY_STRING && k < e->len; k++)
            h = (h ^ (unsigned char)e->str[k]) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
    }
    if (h == rr->overlaps)
        return;
    rr->overlaps = h;
    const relay_t *r = rr->relay;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *name = rep->element[i], *ports = rep->element[i + 1];
        if (name->type != REDIS_REPLY_STRING || ports->type != REDIS_REPLY_STRING)
            continue;
        p2m_log(P2M_LOG_WARN, "relay_range_overlap",
                "relay=%s ports=%s other=%.63s other_ports=%.31s fix=\"give each relay sharing a Redis its own relay.ports\"",
                r->cfg.relay.name, rr->ports, name->str, ports->str);
    }
    if (rep->elements == 0)
        p2m_log(P2M_LOG_INFO, "relay_range_overlap_gone", "relay=%s ports=%s", r->cfg.relay.name, rr->ports);
}

/* Two live relays with overlapping ranges would bind each other's leases: say so, once per change. */
static void check_overlaps(rredis_t *rr)
{
    const relay_t *r = rr->relay;
    cmd_t c;
    CMD_SCRIPT(&c, lua_overlaps, 0);
    cmd_push(&c, r->cfg.relay.name);
    cmd_pushf(&c, "%u", (unsigned)r->cfg.relay.ports.lo);
    cmd_pushf(&c, "%u", (unsigned)r->cfg.relay.ports.hi);
    cmd_send(rr, &c, on_overlaps, NULL);
}

static void heartbeat(rredis_t *rr)
{
    relay_t *r = rr->relay;
    if (!rr->cmd.ready || watchdog(rr) != 0)
        return;
    cmd_t c;
    cmd_begin(&c);
    cmd_push(&c, "HSET");
    cmd_push(&c, rr->key_relay);
    cmd_push(&c, "address");
    cmd_push(&c, r->cfg.public_address);
    cmd_push(&c, "ports");
    cmd_push(&c, rr->ports);
    cmd_push(&c, "started");
    cmd_push(&c, rr->started);
    cmd_send(rr, &c, NULL, NULL);

    cmd_begin(&c);
    cmd_push(&c, "EXPIRE");
    cmd_push(&c, rr->key_relay);
    cmd_pushf(&c, "%d", RELAY_HEARTBEAT_TTL);
    cmd_send(rr, &c, NULL, NULL);

    cmd_begin(&c);
    cmd_push(&c, "SADD");
    cmd_push(&c, KEY_RELAYS);
    cmd_push(&c, r->cfg.relay.name);
    cmd_send(rr, &c, NULL, NULL);

    cmd_begin(&c);
    cmd_push(&c, "EXPIRE");
    cmd_push(&c, rr->key_idle);
    cmd_pushf(&c, "%d", RELAY_HEARTBEAT_TTL);
    cmd_send(rr, &c, NULL, NULL);

    cmd_begin(&c);
    cmd_push(&c, "EXPIRE");
    cmd_push(&c, rr->key_wait);
    cmd_pushf(&c, "%d", RELAY_HEARTBEAT_TTL);
    cmd_send(rr, &c, NULL, NULL);

    alive_marks(rr);
    check_overlaps(rr);

    /* Idle pre-connections keep their lease; consumer leases live while connections do. */
    for (size_t i = 0; i < r->nports; i++) {
        lease_t *l = r->leases[i];
        if (l == NULL)
            continue;
        if (l->kind == LEASE_PRE && l->held > 0)
            rredis_lease_touch(rr, l, RELAY_IDLE_LEASE_TTL);
        else if (l->kind == LEASE_CONSUMER && l->nconns > 0 && !l->any_addr) /* a service's port has no TTL */
            rredis_lease_touch(rr, l, r->cfg.registrar.consumer_ttl);
    }
    label_flush_counters(r, emit_counters, rr);
}

static void on_heartbeat(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    rredis_t *rr = (rredis_t *)((char *)t - offsetof(rredis_t, heartbeat));
    heartbeat(rr);
    if (rr->cmd.ready) /* else the reconnect (on_schema) starts it again */
        p2m_loop_timer_start(loop, t, RELAY_HEARTBEAT_MS);
}

static void check_leases(rredis_t *rr)
{
    relay_t *r = rr->relay;
    for (size_t i = 0; i < r->nports; i++)
        if (r->leases[i] != NULL)
            rredis_lease_check(rr, r->leases[i]);
}

static void on_check(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    rredis_t *rr = (rredis_t *)((char *)t - offsetof(rredis_t, check));
    check_leases(rr);
    p2m_loop_timer_start(loop, t, RELAY_LEASE_CHECK_MS);
}

typedef struct {
    size_t n, cap;
    const char **argv;
    size_t *len;
    char (*counts)[16];
    int what; /* COUNT_IDLE or COUNT_WAIT */
} resync_acc_t;

enum { COUNT_IDLE, COUNT_WAIT, COUNT_ALIVE };

static void collect(relay_t *r, label_t *l, void *arg)
{
    resync_acc_t *acc = arg;
    (void)r;
    if (l->name[0] == '\0') /* the SNI port's placeholder (relay/sni.c) is no service */
        return;
    if (acc->what == COUNT_ALIVE) {
        /* A pod with idle pre-connections or open tunnels here is there (lua_alive). */
        if ((l->nidle == 0 && l->njoined == 0) || acc->n + 2 > acc->cap)
            return;
        acc->argv[acc->n] = l->name;
        acc->len[acc->n++] = strlen(l->name);
        acc->argv[acc->n] = l->nidle > 0 ? "1" : "0";
        acc->len[acc->n++] = 1;
        return;
    }
    unsigned v = acc->what == COUNT_IDLE ? l->nidle : l->nwait;
    if (v == 0 || acc->n + 2 > acc->cap)
        return;
    snprintf(acc->counts[acc->n / 2], sizeof(acc->counts[0]), "%u", v);
    acc->argv[acc->n] = l->name;
    acc->len[acc->n++] = strlen(l->name);
    acc->argv[acc->n] = acc->counts[(acc->n - 1) / 2];
    acc->len[acc->n] = strlen(acc->argv[acc->n]);
    acc->n++;
}

/* One script over every label: head is the script's first arguments (EVAL, script, numkeys, ...),
 * then collect() adds what `what` asks for. Sends nothing when there are no labels and skip_empty. */
static void send_over_labels(rredis_t *rr, const char *const *head, size_t nhead, int what, int skip_empty)
{
    relay_t *r = rr->relay;
    size_t cap = 2 * r->nlabels;
    resync_acc_t acc = {nhead, nhead + cap, NULL, NULL, NULL, what};
    acc.argv = relay_xcalloc(nhead + cap, sizeof(*acc.argv));
    acc.len = relay_xcalloc(nhead + cap, sizeof(*acc.len));
    acc.counts = relay_xcalloc(nhead + cap, sizeof(*acc.counts)); /* indexed by argv slot / 2 */
    for (size_t i = 0; i < nhead; i++) {
        acc.argv[i] = head[i];
        acc.len[i] = strlen(head[i]);
    }
    label_foreach(r, collect, &acc);
    if (!skip_empty || acc.n > nhead)
        conn_send(&rr->cmd, NULL, NULL, (int)acc.n, acc.argv, acc.len);
    free(acc.argv);
    free(acc.len);
    free(acc.counts);
}

/* Rewrites p2m:idle:NAME and p2m:wait:NAME from the pre-connections and consumers held now. */
static void idle_resync(rredis_t *rr)
{
    if (!rr->cmd.ready)
        return;
    /* The counts written are those of now: changes not yet synced are in them already. */
    for (label_t *l = rr->relay->sync_dirty; l != NULL; l = l->sync_next)
        l->idle_delta = 0;
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", RELAY_HEARTBEAT_TTL);
    const char *idle[] = {"EVAL", lua_idle_resync, "1", rr->key_idle, ttl};
    send_over_labels(rr, idle, 5, COUNT_IDLE, 0);
    const char *wait[] = {"EVAL", lua_idle_resync, "1", rr->key_wait, ttl};
    send_over_labels(rr, wait, 5, COUNT_WAIT, 0);
}

/* Every heartbeat: the services whose pods this relay holds stay alive for the registrar. */
static void alive_marks(rredis_t *rr)
{
    char window[16];
    snprintf(window, sizeof(window), "%u", rr->relay->cfg.registrar.alive_window);
    const char *head[] = {"EVAL", lua_alive, "0", rr->relay->cfg.relay.name, window};
    send_over_labels(rr, head, 5, COUNT_ALIVE, 1);
}

/* --- startup SCAN --------------------------------------------------------------------------- */

static void scan_next(rredis_t *rr, const char *cursor);

static void on_scan(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    (void)priv;
    if (rep == NULL || rr->stopping) {
        rr->scan_running = 0;
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_ARRAY) {
        p2m_log(P2M_LOG_WARN, "redis_reply_unexpected", "command=SCAN error=\"%s\"", reply_error(rep) ? reply_error(rep) : "shape");
        rr->scan_running = 0;
        return;
    }
    const redisReply *keys = rep->element[1];
    size_t plen = strlen(KEY_LEASE_PREFIX);
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        uint16_t port;
        if (k->type != REDIS_REPLY_STRING || k->len <= plen || p2m_port_parse(k->str + plen, k->len - plen, &port) != 0)
            continue;
        if (ports_in_range(rr->relay, port))
            rredis_lease_load(rr, port, rr->synced ? LOAD_RESCAN : LOAD_SCAN);
    }
    if (strcmp(rep->element[0]->str, "0") != 0) {
        scan_next(rr, rep->element[0]->str);
        return;
    }
    rr->scan_running = 0;
    rr->synced = 1;
    if (rr->scan_again) {
        rr->scan_again = 0;
        rr->scan_running = 1;
        scan_next(rr, "0");
    }
}

static void scan_next(rredis_t *rr, const char *cursor)
{
    const char *argv[] = {"SCAN", cursor, "MATCH", KEY_LEASE_PATTERN, "COUNT", "1000"};
    if (!rr->cmd.ready || conn_send(&rr->cmd, on_scan, NULL, 6, argv, NULL) != 0)
        rr->scan_running = 0;
}

/* Reads every lease once both connections are up: announcements before that were missed. */
static void scan_leases(rredis_t *rr)
{
    if (!rr->cmd.ready || !rr->sub.ready)
        return;
    if (rr->scan_running) {
        rr->scan_again = 1;
        return;
    }
    rr->scan_running = 1;
    scan_next(rr, "0");
}

/* --- connection lifecycle ------------------------------------------------------------------- */

static void conn_start(conn_t *conn);

static void conn_retry(conn_t *conn)
{
    rredis_t *rr = conn->rr;
    if (rr->stopping)
        return;
    unsigned ms = conn->backoff_ms;
    conn->backoff_ms = conn->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : conn->backoff_ms * 2;
    p2m_loop_timer_start(rr->relay->loop, &conn->retry, ms);
}

static void on_retry(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    conn_t *conn = (conn_t *)((char *)t - offsetof(conn_t, retry));
    conn_start(conn);
}

/* hiredis freed the context (connection failed, lost or closed by us). */
static void on_release(int fd, void *data)
{
    conn_t *conn = data;
    relay_t *r = conn->rr->relay;
    if (conn->h.fd == fd)
        p2m_loop_close(r->loop, &conn->h);
    else
        close(fd);
    conn->ac = NULL;
    conn->poller = NULL;
    conn->ready = 0;
    conn_retry(conn);
}

static void on_poller(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    (void)events;
    conn_t *conn = (conn_t *)((char *)h - offsetof(conn_t, h));
    if (conn->magic != CONN_MAGIC)
        abort();
    if (conn->poller != NULL)
        p2m_redis_poller_dispatch(conn->poller); /* may release the context */
}

static void on_schema(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    char want[16];
    (void)priv;
    if (rep == NULL || rr->stopping)
        return;
    snprintf(want, sizeof(want), "%d", P2M_SCHEMA_VERSION);
    if (rep->type == REDIS_REPLY_ERROR) {
        /* Not an answer about the schema: most likely "LOADING" while a restarted Redis replays
         * its persistence. Drop the connection; the usual backoff retries it. */
        p2m_log(P2M_LOG_WARN, "redis_not_ready", "conn=cmd error=\"%.80s\"", rep->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (rep->type != REDIS_REPLY_STRING || strcmp(rep->str, want) != 0) {
        p2m_log(P2M_LOG_ERROR, "redis_schema_mismatch", "want=%s got=\"%.32s\"", want,
                rep->type == REDIS_REPLY_STRING ? rep->str : "(not a string)");
        rr->relay->exit_code = 1;
        relay_shutdown(rr->relay, "schema");
        return;
    }
    /* Schema fine: the connection is usable. Resynchronise everything. */
    rr->cmd.ready = 1;
    idle_resync(rr);
    heartbeat(rr);
    p2m_loop_timer_start(rr->relay->loop, &rr->heartbeat, RELAY_HEARTBEAT_MS);
    check_leases(rr);
    p2m_loop_timer_start(rr->relay->loop, &rr->check, RELAY_LEASE_CHECK_MS);
    scan_leases(rr);
}

static void on_message(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    (void)priv;
    if (rep == NULL || rr->stopping)
        return;
    if (rep->type == REDIS_REPLY_ERROR && !rr->sub.ready) {
        /* The SUBSCRIBE was refused (e.g. "LOADING"): reconnect with the usual backoff. */
        p2m_log(P2M_LOG_WARN, "redis_not_ready", "conn=sub error=\"%.80s\"", rep->str);
        redisAsyncDisconnect(ac);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return;
    const redisReply *kind = rep->element[0], *chan = rep->element[1], *msg = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        if (msg->type == REDIS_REPLY_INTEGER && msg->integer == 2 && !rr->sub.ready) {
            rr->sub.ready = 1;
            p2m_log(P2M_LOG_INFO, "redis_subscribed", "channels=%s," CHANNEL_EVENTS, rr->chan_relay);
            scan_leases(rr);
        }
        return;
    }
    if (strcmp(kind->str, "message") != 0 || msg->type != REDIS_REPLY_STRING)
        return;
    uint16_t port;
    if (strcmp(chan->str, rr->chan_relay) == 0 && msg->len > 6 && strncmp(msg->str, "lease ", 6) == 0 &&
        p2m_port_parse(msg->str + 6, msg->len - 6, &port) == 0) {
        ports_on_announce(rr->relay, port, LOAD_ANNOUNCED);
    } else if (strcmp(chan->str, CHANNEL_EVENTS) == 0 && msg->len > 8 && strncmp(msg->str, "unlease ", 8) == 0 &&
               p2m_port_parse(msg->str + 8, msg->len - 8, &port) == 0) {
        ports_on_unlease(rr->relay, port);
    } else if (strcmp(chan->str, rr->chan_relay) == 0) {
        p2m_log(P2M_LOG_DEBUG, "redis_message_ignored", "channel=%s message=\"%.64s\"", chan->str, msg->str);
    }
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    rredis_t *rr = rr_from_ac(ac);
    conn_t *conn = ac->data;
    if (status != REDIS_OK) {
        if (conn->failures++ == 0)
            p2m_log(P2M_LOG_WARN, "redis_connect_failed", "conn=%s redis=%s error=\"%s\"", conn->what, rr->relay->cfg.redis_str,
                    ac->errstr);
        return; /* hiredis frees the context: on_release schedules the retry */
    }
    p2m_log(P2M_LOG_INFO, "redis_connected", "conn=%s redis=%s", conn->what, rr->relay->cfg.redis_str);
    conn->failures = 0;
    conn->backoff_ms = RETRY_MIN_MS;
    if (conn == &rr->cmd) {
        /* As store.c does: write the schema version if the database is new, then check it. */
        char want[16];
        snprintf(want, sizeof(want), "%d", P2M_SCHEMA_VERSION);
        const char *set[] = {"SET", KEY_SCHEMA, want, "NX"};
        const char *get[] = {"GET", KEY_SCHEMA};
        conn_send(conn, NULL, NULL, 4, set, NULL);
        conn_send(conn, on_schema, NULL, 2, get, NULL);
    } else {
        const char *argv[] = {"SUBSCRIBE", rr->chan_relay, CHANNEL_EVENTS};
        conn_send(conn, on_message, NULL, 3, argv, NULL);
    }
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    rredis_t *rr = rr_from_ac(ac);
    conn_t *conn = ac->data;
    conn->ready = 0;
    if (!rr->stopping || status != REDIS_OK)
        p2m_log(rr->stopping ? P2M_LOG_INFO : P2M_LOG_WARN, "redis_disconnected", "conn=%s error=\"%s\"", conn->what,
                ac->errstr[0] ? ac->errstr : "closed");
    if (conn == &rr->cmd) {
        rr->ping_sent = 0;
        rr->cmd.ready = 0;
        sync_flush(rr); /* drops what waits: the resync after the reconnect rewrites the counts */
        p2m_loop_timer_stop(rr->relay->loop, &rr->heartbeat);
        p2m_loop_timer_stop(rr->relay->loop, &rr->check);
        rr->scan_running = 0;
    }
}

static void conn_start(conn_t *conn)
{
    rredis_t *rr = conn->rr;
    relay_t *r = rr->relay;
    const p2m_redis_addr_t *a = &r->cfg.redis;
    char err[P2M_ERR_LEN];

    if (rr->stopping || conn->ac != NULL)
        return;
    /* TCP addresses are numeric in practice (config); hiredis would resolve a name blocking. */
    redisAsyncContext *ac = a->is_unix ? redisAsyncConnectUnix(a->path) : redisAsyncConnect(a->tcp.host, a->tcp.port);
    if (ac == NULL || ac->err) {
        if (conn->failures++ == 0)
            p2m_log(P2M_LOG_WARN, "redis_connect_failed", "conn=%s redis=%s error=\"%s\"", conn->what, r->cfg.redis_str,
                    ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        conn_retry(conn);
        return;
    }
    ac->data = conn;
    p2m_redis_poller_t *p = p2m_redis_poller_attach(ac, on_release, conn, err);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "redis_poller_failed", "conn=%s error=\"%s\"", conn->what, err);
        redisAsyncFree(ac);
        conn_retry(conn);
        return;
    }
    conn->ac = ac;
    conn->poller = p;
    if (p2m_loop_add(r->loop, &conn->h, p2m_redis_poller_fd(p), EPOLLIN, on_poller, err) != 0) {
        p2m_log(P2M_LOG_ERROR, "redis_poller_failed", "conn=%s error=\"%s\"", conn->what, err);
        redisAsyncFree(ac); /* on_release closes the poller's fd and schedules the retry */
        return;
    }
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect); /* after the adapter: it asks for writability */
}

static void conn_init(rredis_t *rr, conn_t *conn, const char *what)
{
    conn->magic = CONN_MAGIC;
    conn->rr = rr;
    conn->what = what;
    conn->backoff_ms = RETRY_MIN_MS;
    p2m_loop_handler_init(&conn->h);
    p2m_loop_timer_init(&conn->retry, on_retry);
}

static void on_stop_wait(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)t;
    p2m_log(P2M_LOG_WARN, "redis_stop_timeout", "wait_ms=%d", STOP_WAIT_MS);
    p2m_loop_stop(loop);
}

rredis_t *rredis_new(relay_t *r, char *err)
{
    const char *name = r->cfg.relay.name;
    rredis_t *rr = calloc(1, sizeof(*rr));
    if (rr == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    rr->relay = r;
    key_relay(name, rr->key_relay, sizeof(rr->key_relay));
    key_idle(name, rr->key_idle, sizeof(rr->key_idle));
    key_stats(name, rr->key_stats, sizeof(rr->key_stats));
    key_wait(name, rr->key_wait, sizeof(rr->key_wait));
    channel_relay(name, rr->chan_relay, sizeof(rr->chan_relay));
    snprintf(rr->ports, sizeof(rr->ports), "%u-%u", (unsigned)r->cfg.relay.ports.lo, (unsigned)r->cfg.relay.ports.hi);
    snprintf(rr->started, sizeof(rr->started), "%lld", r->started);
    p2m_loop_timer_init(&rr->heartbeat, on_heartbeat);
    p2m_loop_timer_init(&rr->check, on_check);
    p2m_loop_timer_init(&rr->stop_wait, on_stop_wait);
    p2m_loop_timer_init(&rr->sync_timer, on_sync_timer);
    rr->sync_round = 1; /* leases start at 0: none is marked yet */
    conn_init(rr, &rr->cmd, "cmd");
    conn_init(rr, &rr->sub, "sub");
    conn_start(&rr->cmd);
    conn_start(&rr->sub);
    return rr;
}

int rredis_ready(const rredis_t *rr)
{
    return rr->cmd.ready;
}

static void on_final(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    (void)reply;
    (void)priv;
    p2m_loop_timer_stop(rr->relay->loop, &rr->stop_wait);
    p2m_loop_stop(rr->relay->loop);
}

void rredis_shutdown(rredis_t *rr)
{
    relay_t *r = rr->relay;
    p2m_loop_timer_stop(r->loop, &rr->heartbeat);
    p2m_loop_timer_stop(r->loop, &rr->check);
    p2m_loop_timer_stop(r->loop, &rr->cmd.retry);
    p2m_loop_timer_stop(r->loop, &rr->sub.retry);
    if (!rr->cmd.ready) {
        rr->stopping = 1;
        p2m_loop_stop(r->loop);
        return;
    }
    sync_flush(rr); /* the leases ended by the shutdown are deleted */
    label_flush_counters(r, emit_counters, rr);
    cmd_t c;
    cmd_begin(&c);
    cmd_push(&c, "DEL");
    cmd_push(&c, rr->key_idle);
    cmd_push(&c, rr->key_wait);
    cmd_push(&c, rr->key_relay);
    cmd_send(rr, &c, NULL, NULL);
    cmd_begin(&c);
    cmd_push(&c, "SREM");
    cmd_push(&c, KEY_RELAYS);
    cmd_push(&c, r->cfg.relay.name);
    cmd_send(rr, &c, on_final, NULL);
    rr->stopping = 1; /* after the sends: replies still pending are ignored from now on */
    p2m_loop_timer_start(r->loop, &rr->stop_wait, STOP_WAIT_MS);
}

void rredis_free(rredis_t *rr)
{
    if (rr == NULL)
        return;
    relay_t *r = rr->relay;
    rr->stopping = 1;
    p2m_loop_timer_stop(r->loop, &rr->heartbeat);
    p2m_loop_timer_stop(r->loop, &rr->check);
    p2m_loop_timer_stop(r->loop, &rr->cmd.retry);
    p2m_loop_timer_stop(r->loop, &rr->sub.retry);
    p2m_loop_timer_stop(r->loop, &rr->stop_wait);
    p2m_loop_timer_stop(r->loop, &rr->sync_timer);
    free(rr->sync_conns);
    free(rr->sync_drops);
    /* Pending callbacks run with NULL replies and do nothing; on_release closes the pollers. */
    if (rr->cmd.ac != NULL)
        redisAsyncFree(rr->cmd.ac);
    if (rr->sub.ac != NULL)
        redisAsyncFree(rr->sub.ac);
    free(rr);
}
