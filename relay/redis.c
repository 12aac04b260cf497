/* The relay's two asynchronous Redis connections (docs/PROTOCOL.md section 3).
 *
 *   cmd  every command: bind confirmations, idle counts, lease checks, heartbeat, counters
 *   sub  SUBSCRIBE p2m:relay:NAME ("lease PORT") and p2m:events ("unlease PORT")
 *
 * Both are kept by the connection manager (p2m/redis.h) on the relay's loop.
 * Nothing waits for Redis: while the command connection is down, calls here do nothing, and each
 * (re)connect resynchronises everything instead: schema check, the idle hash rewritten from the
 * pre-connections actually held, heartbeat, a check of every lease held and a SCAN for leases
 * announced meanwhile (run once both connections are up, so that no announcement falls between
 * the SCAN and the SUBSCRIBE). Commands on one connection run in order, so the +1/-1 idle updates
 * sent after a resync apply on top of it.
 *
 * The connections themselves (reconnect, -LOADING, schema check, watchdog) are lib/redis.c's; every
 * key, script and command is built by lib/store_relay.c. */
#include "relay.h"

#include <assert.h>
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/redis.h"
#include "p2m/redis_loop.h"
#include "p2m/store.h"
#include "p2m/store_cmd.h"

#define STOP_WAIT_MS 2000

_Static_assert(sizeof(uintptr_t) >= 8, "reply cookies pack a port and a generation into a pointer");

/* --- connections ------------------------------------------------------------------------------ */

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
    p2m_redis_loop_t ev;
    p2m_redis_t *redis;
    p2m_loop_timer_t sync_timer; /* armed while something waits for the next sync */
    uint32_t sync_round;         /* the round sync_conns belong to (lease_t.sync_round) */
    sync_conn_t *sync_conns;
    size_t nsync_conns, sync_conns_cap;
    sync_drop_t *sync_drops;
    size_t nsync_drops, sync_drops_cap;
    p2m_loop_timer_t heartbeat, check, stop_wait;
    int stopping;
    int scan_running, scan_again;
    int synced;        /* a SCAN completed since the process started: later ones are rescans */
    uint64_t overlaps; /* hash of the last overlapping relays reported (0: none), so each change is logged once */
    char ports[16], started[24];
};

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
    return p2m_redis_data(ac);
}

/* Sends a built command on the command connection; nothing when it is down or did not build. */
static int send_cmd(rredis_t *rr, int built, const p2m_store_cmd_t *c, redisCallbackFn *fn, void *priv)
{
    if (built != 0) {
        p2m_log(P2M_LOG_WARN, "redis_cmd_overflow", "command=%.16s", c->argc > 0 ? c->argv[0] : "");
        return -1;
    }
    return p2m_redis_send(rr->redis, fn, priv, c);
}

static void send_cmdv(rredis_t *rr, int built, p2m_store_cmdv_t *v, redisCallbackFn *fn, void *priv)
{
    if (built != 0)
        p2m_log(P2M_LOG_WARN, "redis_cmd_overflow", "command=EVAL");
    else
        p2m_redis_sendv(rr->redis, fn, priv, v->argc, v->argv, v->argvlen);
    p2m_store_cmdv_free(v);
}

static const char *reply_error(const redisReply *rep)
{
    return rep != NULL && rep->type == REDIS_REPLY_ERROR ? rep->str : NULL;
}

/* --- lease commands ------------------------------------------------------------------------- */

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
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_lease_get(&c, port), &c, on_lease_load, cookie(port, 0, (unsigned)how));
}

void rredis_lease_drop(rredis_t *rr, uint16_t port, const lease_info_t *info)
{
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_lease_drop(&c, port, rr->relay->cfg.relay.name, info->created, info->pod), &c, NULL, NULL);
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
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_lease_bound(&c, l->port, rr->relay->cfg.relay.name, l->created, l->pod), &c, on_bound,
             cookie(l->port, l->gen, 0));
}

void rredis_lease_busy(rredis_t *rr, uint16_t port, const lease_info_t *info, const char *reason)
{
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_lease_busy(&c, port, rr->relay->cfg.relay.name, info->created, info->pod, reason), &c, NULL, NULL);
}

void rredis_lease_fail(rredis_t *rr, uint16_t port, const char *reason)
{
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_lease_fail(&c, port, reason), &c, NULL, NULL);
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
static void send_over_labels(rredis_t *rr, int what, int skip_empty);

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

static void sync_service(relay_t *r, label_t *l, void *arg)
{
    (void)r;
    p2m_sync_service_t svc = {l->name, l->idle_delta, l->nwait, l->queued, l->waited_served, l->wait_timeouts};
    p2m_store_cmdv_relay_sync_service(arg, &svc); /* copies: l may go once this returns */
    l->queued = l->waited_served = l->wait_timeouts = 0;
}

/* Writes everything the relay learnt since the last sync in one script (p2m_store_cmdv_relay_sync_begin).
 * With the command connection down it drops it: the resync after the reconnect rewrites the counts. */
static void sync_flush(rredis_t *rr)
{
    relay_t *r = rr->relay;
    p2m_loop_timer_stop(r->loop, &rr->sync_timer);
    rr->sync_round++;
    if (!p2m_redis_up(rr->redis) || rr->stopping) {
        rr->nsync_conns = rr->nsync_drops = 0;
        match_sync_flush(r, NULL, NULL);
        return;
    }
    size_t nlabels = 0;
    for (const label_t *l = r->sync_dirty; l != NULL; l = l->sync_next)
        nlabels++;
    uint16_t *ports = relay_xcalloc(rr->nsync_conns + 1, sizeof(*ports));
    p2m_sync_drop_t *drops = relay_xcalloc(rr->nsync_drops + 1, sizeof(*drops));
    sync_reply_t *sr = relay_xcalloc(1, sizeof(*sr) + rr->nsync_conns * sizeof(sync_conn_t));
    sr->rr = rr;
    sr->n = rr->nsync_conns;
    for (size_t i = 0; i < rr->nsync_conns; i++) {
        ports[i] = rr->sync_conns[i].port;
        sr->conns[i] = rr->sync_conns[i];
    }
    for (size_t i = 0; i < rr->nsync_drops; i++)
        drops[i] = (p2m_sync_drop_t){rr->sync_drops[i].port, rr->sync_drops[i].created, rr->sync_drops[i].pod};
    p2m_store_cmdv_t v;
    int built = p2m_store_cmdv_relay_sync_begin(&v, r->cfg.relay.name, RELAY_IDLE_LEASE_TTL, P2M_RELAY_HEARTBEAT_TTL, ports,
                                                rr->nsync_conns, drops, rr->nsync_drops, nlabels);
    match_sync_flush(r, built == 0 ? sync_service : NULL, &v);
    rr->nsync_conns = rr->nsync_drops = 0;
    if (built != 0) {
        p2m_log(P2M_LOG_WARN, "redis_cmd_overflow", "command=sync");
        free(sr);
    } else if (p2m_redis_sendv(rr->redis, on_sync, sr, v.argc, v.argv, v.argvlen) != 0) {
        free(sr);
    }
    p2m_store_cmdv_free(&v);
    free(ports);
    free(drops);
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
    p2m_store_cmd_t c;
    return send_cmd(rr, p2m_store_cmd_sni_lookup(&c, service, rr->relay->cfg.relay.name), &c, on_sni_lookup, cookie);
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
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_lease_owner(&c, l->port), &c, on_lease_check, cookie(l->port, l->gen, 0));
}

void rredis_lease_touch(rredis_t *rr, const lease_t *l, unsigned ttl)
{
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_lease_touch(&c, l->port, ttl), &c, on_lease_alive, cookie(l->port, l->gen, 0));
}

/* --- periodic work -------------------------------------------------------------------------- */

static void emit_counters(relay_t *r, const label_t *l, void *arg)
{
    rredis_t *rr = arg;
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
        p2m_store_cmd_t c;
        send_cmd(rr, p2m_store_cmd_relay_stat(&c, r->cfg.relay.name, l->name, fields[i].name, (unsigned long long)fields[i].v), &c,
                 NULL, NULL);
    }
}

/* Before the counters are zeroed: what the period added to the service's minute, and the tunnels
 * open now (PROTOCOL 3.4, p2m:series). A service with open tunnels and no new bytes still counts
 * for the minute's gauge. */
static void emit_series(relay_t *r, label_t *l, void *arg)
{
    rredis_t *rr = arg;
    if (l->name[0] == '\0' || (l->conns == 0 && l->bytes_in == 0 && l->bytes_out == 0 && l->njoined == 0))
        return;
    p2m_series_add_t add = {l->conns, l->bytes_in, l->bytes_out, l->njoined};
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_relay_series(&c, r->cfg.relay.name, l->name, (unsigned long long)time(NULL) / 60, &add), &c, NULL,
             NULL);
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
    p2m_store_cmd_t c;
    send_cmd(rr, p2m_store_cmd_relay_overlaps(&c, r->cfg.relay.name, r->cfg.relay.ports.lo, r->cfg.relay.ports.hi), &c, on_overlaps,
             NULL);
}

/* The heartbeat's reply: whether the relay is marked draining. */
static void on_heartbeat_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rredis_t *rr = rr_from_ac(ac);
    redisReply *rep = reply;
    (void)priv;
    if (rep == NULL || rr->stopping || rep->type != REDIS_REPLY_INTEGER)
        return;
    relay_drain_mark(rr->relay, rep->integer != 0, rep->integer == 2);
}

static void heartbeat(rredis_t *rr)
{
    relay_t *r = rr->relay;
    if (!p2m_redis_up(rr->redis))
        return;
    relay_drain_tick(r); /* before the counts, which then show what it gave back */
    p2m_relay_counts_t n = {r->nleases, r->nidle, r->njoined, r->nwaiting, r->draining};
    p2m_store_cmd_t c;
    send_cmd(rr,
             p2m_store_cmd_relay_heartbeat(&c, r->cfg.relay.name, r->cfg.public_address, rr->ports, rr->started,
                                           P2M_RELAY_HEARTBEAT_TTL, &n),
             &c, on_heartbeat_reply, NULL);

    /* A draining relay marks nothing alive: the pods' next pre-connections go elsewhere, and an
     * alive mark naming it would send consumers to wait where none are coming (PROTOCOL 3.9). */
    if (!r->draining)
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
    send_over_labels(rr, P2M_COUNT_TUNNELS, 0); /* what idle_resync does for idle and wait */
    label_foreach(r, emit_series, rr);
    label_flush_counters(r, emit_counters, rr);
}

static void on_heartbeat(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    rredis_t *rr = (rredis_t *)((char *)t - offsetof(rredis_t, heartbeat));
    heartbeat(rr);
    if (p2m_redis_up(rr->redis)) /* else the reconnect (on_up) starts it again */
        p2m_loop_timer_start(loop, t, P2M_RELAY_HEARTBEAT_MS);
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
    p2m_count_t *items;
    int what; /* COUNT_IDLE, COUNT_WAIT, COUNT_TUNNELS or COUNT_ALIVE */
} collect_t;

/* The first three are p2m_count_kind_t's values. */
enum { COUNT_IDLE = P2M_COUNT_IDLE, COUNT_WAIT = P2M_COUNT_WAIT, COUNT_TUNNELS = P2M_COUNT_TUNNELS, COUNT_ALIVE };

static void collect(relay_t *r, label_t *l, void *arg)
{
    collect_t *acc = arg;
    (void)r;
    if (l->name[0] == '\0' || acc->n == acc->cap) /* the SNI port's placeholder (relay/sni.c) is no service */
        return;
    unsigned v;
    if (acc->what == COUNT_ALIVE) {
        /* A pod with idle pre-connections or open tunnels here is there (p2m_store_cmdv_relay_alive). */
        if (l->nidle == 0 && l->njoined == 0)
            return;
        v = l->nidle > 0;
    } else if ((v = acc->what == COUNT_IDLE ? l->nidle : acc->what == COUNT_WAIT ? l->nwait : l->njoined) == 0) {
        return;
    }
    acc->items[acc->n++] = (p2m_count_t){l->name, v};
}

/* One script over every label: what `what` asks for, from collect(). Sends nothing when nothing
 * is collected and skip_empty. */
static void send_over_labels(rredis_t *rr, int what, int skip_empty)
{
    relay_t *r = rr->relay;
    collect_t acc = {0, r->nlabels, relay_xcalloc(r->nlabels + 1, sizeof(p2m_count_t)), what};
    label_foreach(r, collect, &acc);
    if (!skip_empty || acc.n > 0) {
        p2m_store_cmdv_t v;
        int built = what == COUNT_ALIVE
                        ? p2m_store_cmdv_relay_alive(&v, r->cfg.relay.name, r->cfg.registrar.alive_window, acc.items, acc.n)
                        : p2m_store_cmdv_relay_counts(&v, r->cfg.relay.name, (p2m_count_kind_t)what, P2M_RELAY_HEARTBEAT_TTL,
                                                      acc.items, acc.n);
        send_cmdv(rr, built, &v, NULL, NULL);
    }
    free(acc.items);
}

/* Rewrites the relay's idle and wait hashes from the pre-connections and consumers held now. */
static void idle_resync(rredis_t *rr)
{
    if (!p2m_redis_up(rr->redis))
        return;
    /* The counts written are those of now: changes not yet synced are in them already. */
    for (label_t *l = rr->relay->sync_dirty; l != NULL; l = l->sync_next)
        l->idle_delta = 0;
    send_over_labels(rr, COUNT_IDLE, 0);
    send_over_labels(rr, COUNT_WAIT, 0);
}

/* Every heartbeat: the services whose pods this relay holds stay alive for the registrar. */
static void alive_marks(rredis_t *rr)
{
    send_over_labels(rr, COUNT_ALIVE, 1);
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
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        uint16_t port;
        if (k->type != REDIS_REPLY_STRING || p2m_store_lease_key_port(k->str, k->len, &port) != 0)
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
    p2m_store_cmd_t c;
    if (send_cmd(rr, p2m_store_cmd_lease_scan(&c, cursor), &c, on_scan, NULL) != 0)
        rr->scan_running = 0;
}

/* Reads every lease once both connections are up: announcements before that were missed. */
static void scan_leases(rredis_t *rr)
{
    if (!p2m_redis_up(rr->redis) || !p2m_redis_subscribed(rr->redis))
        return;
    if (rr->scan_running) {
        rr->scan_again = 1;
        return;
    }
    rr->scan_running = 1;
    scan_next(rr, "0");
}

/* --- the manager's callbacks ------------------------------------------------------------------ */

/* The command connection is up (schema checked): resynchronise everything. */
static void on_up(void *data)
{
    rredis_t *rr = data;
    if (rr->stopping)
        return;
    idle_resync(rr);
    heartbeat(rr);
    p2m_loop_timer_start(rr->relay->loop, &rr->heartbeat, P2M_RELAY_HEARTBEAT_MS);
    check_leases(rr);
    p2m_loop_timer_start(rr->relay->loop, &rr->check, RELAY_LEASE_CHECK_MS);
    scan_leases(rr);
}

static void on_down(void *data)
{
    rredis_t *rr = data;
    sync_flush(rr); /* drops what waits: the resync after the reconnect rewrites the counts */
    p2m_loop_timer_stop(rr->relay->loop, &rr->heartbeat);
    p2m_loop_timer_stop(rr->relay->loop, &rr->check);
    rr->scan_running = 0;
}

static int on_subscribe(p2m_store_cmd_t *c, void *data)
{
    rredis_t *rr = data;
    return p2m_store_cmd_relay_subscribe(c, rr->relay->cfg.relay.name);
}

static void on_subscribed(void *data)
{
    scan_leases(data);
}

static void on_message(void *data, const char *channel, const char *msg, size_t len)
{
    rredis_t *rr = data;
    uint16_t port;
    if (rr->stopping)
        return;
    switch (p2m_store_relay_message(rr->relay->cfg.relay.name, channel, msg, len, &port)) {
    case P2M_RELAY_MSG_LEASE:
        ports_on_announce(rr->relay, port, LOAD_ANNOUNCED);
        break;
    case P2M_RELAY_MSG_UNLEASE:
        ports_on_unlease(rr->relay, port);
        break;
    case P2M_RELAY_MSG_UNKNOWN:
        p2m_log(P2M_LOG_DEBUG, "redis_message_ignored", "channel=%s message=\"%.64s\"", channel, msg);
        break;
    case P2M_RELAY_MSG_NONE:
        break;
    }
}

static void on_fatal(void *data, const char *err)
{
    rredis_t *rr = data;
    (void)err;
    rr->relay->exit_code = 2;
    relay_shutdown(rr->relay, "schema");
}

static void on_stop_wait(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)t;
    p2m_log(P2M_LOG_WARN, "redis_stop_timeout", "wait_ms=%d", STOP_WAIT_MS);
    p2m_loop_stop(loop);
}

rredis_t *rredis_new(relay_t *r, char *err)
{
    rredis_t *rr = calloc(1, sizeof(*rr));
    if (rr == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    rr->relay = r;
    snprintf(rr->ports, sizeof(rr->ports), "%u-%u", (unsigned)r->cfg.relay.ports.lo, (unsigned)r->cfg.relay.ports.hi);
    snprintf(rr->started, sizeof(rr->started), "%lld", r->started);
    p2m_loop_timer_init(&rr->heartbeat, on_heartbeat);
    p2m_loop_timer_init(&rr->check, on_check);
    p2m_loop_timer_init(&rr->stop_wait, on_stop_wait);
    p2m_loop_timer_init(&rr->sync_timer, on_sync_timer);
    rr->sync_round = 1; /* leases start at 0: none is marked yet */
    p2m_redis_loop_init(&rr->ev, r->loop);
    p2m_redis_conf_t conf = {.addr = &r->cfg.redis,
                             .where = r->cfg.redis_str,
                             .subscribe = on_subscribe,
                             .on_up = on_up,
                             .on_down = on_down,
                             .on_subscribed = on_subscribed,
                             .on_message = on_message,
                             .on_fatal = on_fatal,
                             .data = rr};
    rr->redis = p2m_redis_new(&rr->ev.super, &conf);
    return rr;
}

int rredis_ready(const rredis_t *rr)
{
    return p2m_redis_up(rr->redis);
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
    p2m_redis_stop(rr->redis);
    if (!p2m_redis_up(rr->redis)) {
        rr->stopping = 1;
        p2m_loop_stop(r->loop);
        return;
    }
    sync_flush(rr); /* the leases ended by the shutdown are deleted */
    label_foreach(r, emit_series, rr);
    label_flush_counters(r, emit_counters, rr);
    p2m_store_cmd_t c;
    if (send_cmd(rr, p2m_store_cmd_relay_leave(&c, r->cfg.relay.name), &c, on_final, NULL) != 0) {
        rr->stopping = 1;
        p2m_loop_stop(r->loop);
        return;
    }
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
    p2m_loop_timer_stop(r->loop, &rr->stop_wait);
    p2m_loop_timer_stop(r->loop, &rr->sync_timer);
    /* Pending callbacks run with NULL replies and do nothing. */
    p2m_redis_free(rr->redis);
    free(rr->sync_conns);
    free(rr->sync_drops);
    free(rr);
}
