/* The relay's commands and scripts (lib/store_relay.c) and the schema check, run against a private
 * redis-server as tests/unit/limiter.c does: idle counts moving with syncs, a lease bound, marked
 * busy and dropped only while it is the one the relay holds, the heartbeat, and the schema
 * verdict. Needs redis-server on PATH; it is started on a unix socket in a temp dir. */
#include "check.h"
#include "redis_server.h"
#include "p2m/err.h"
#include "p2m/store.h"
#include "p2m/store_cmd.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static redisContext *rc;

static redisReply *run(const p2m_store_cmd_t *c)
{
    return redisCommandArgv(rc, c->argc, (const char **)c->argv, c->argvlen);
}

static redisReply *runv(const p2m_store_cmdv_t *v)
{
    return redisCommandArgv(rc, v->argc, v->argv, v->argvlen);
}

/* A command's reply as one string: "int:1", "str:x", "nil", "arr:1,2", "err:...". */
static void render(const redisReply *r, char *out, size_t cap)
{
    if (r == NULL) {
        snprintf(out, cap, "no reply: %s", rc->errstr);
    } else if (r->type == REDIS_REPLY_INTEGER) {
        snprintf(out, cap, "int:%lld", r->integer);
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
        snprintf(out, cap, "str:%s", r->str);
    } else if (r->type == REDIS_REPLY_NIL) {
        snprintf(out, cap, "nil");
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(out, cap, "err:%s", r->str);
    } else {
        size_t used = (size_t)snprintf(out, cap, "arr:");
        for (size_t i = 0; i < r->elements && used < cap; i++) {
            const redisReply *e = r->element[i];
            int n = e->type == REDIS_REPLY_INTEGER  ? snprintf(out + used, cap - used, "%s%lld", i ? "," : "", e->integer)
                    : e->type == REDIS_REPLY_STRING ? snprintf(out + used, cap - used, "%s%s", i ? "," : "", e->str)
                                                    : snprintf(out + used, cap - used, "%s?", i ? "," : "");
            used += n > 0 ? (size_t)n : 0;
        }
    }
}

/* Runs c (built: its builder's return) and checks its rendered reply. */
static int expect(int built, const p2m_store_cmd_t *c, const char *want)
{
    char got[512];
    if (!CHECK_EQ_INT(built, 0))
        return 0;
    redisReply *r = run(c);
    render(r, got, sizeof(got));
    freeReplyObject(r);
    return CHECK_EQ_STR(got, want);
}

/* A plain command given as a format, rendered. */
static void probe(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void probe(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    render(r, out, cap);
    freeReplyObject(r);
}

#define EXPECT_REDIS(want, ...)                                                                                                    \
    do {                                                                                                                           \
        char got_[512];                                                                                                            \
        probe(got_, sizeof(got_), __VA_ARGS__);                                                                                    \
        CHECK_EQ_STR(got_, want);                                                                                                  \
    } while (0)

static int sync_run(const uint16_t *conns, size_t nconns, const p2m_sync_drop_t *drops, size_t ndrops,
                    const p2m_sync_service_t *svcs, size_t nsvcs, const char *want)
{
    p2m_store_cmdv_t v;
    if (!CHECK_EQ_INT(p2m_store_cmdv_relay_sync_begin(&v, "r1", 30, 15, conns, nconns, drops, ndrops, nsvcs), 0))
        return 0;
    for (size_t i = 0; i < nsvcs; i++)
        CHECK_EQ_INT(p2m_store_cmdv_relay_sync_service(&v, &svcs[i]), 0);
    CHECK_EQ_INT(p2m_store_cmdv_relay_sync_service(&v, &svcs[0]), -1); /* one more than announced */
    char got[512];
    redisReply *r = runv(&v);
    render(r, got, sizeof(got));
    freeReplyObject(r);
    p2m_store_cmdv_free(&v);
    return CHECK_EQ_STR(got, want);
}

static void test_schema(void)
{
    p2m_store_cmd_t c;
    char err[P2M_ERR_LEN], want[16];
    snprintf(want, sizeof(want), "%d", P2M_SCHEMA_VERSION);
    CHECK_CTX("schema: a new database gets this version");
    expect(p2m_store_cmd_schema_init(&c), &c, "str:OK");
    expect(p2m_store_cmd_schema_init(&c), &c, "nil"); /* NX: written once */
    p2m_store_cmd_schema_get(&c);
    redisReply *r = run(&c);
    CHECK_EQ_INT(p2m_store_schema_check(r, err), 0);
    freeReplyObject(r);

    CHECK_CTX("schema: another version is refused");
    EXPECT_REDIS("str:OK", "SET p2m:schema 99");
    r = run(&c);
    if (CHECK_EQ_INT(p2m_store_schema_check(r, err), -1))
        CHECK(strstr(err, "schema version 99") != NULL);
    freeReplyObject(r);
    CHECK_EQ_INT(p2m_store_schema_check(NULL, err), -1);
    EXPECT_REDIS("str:OK", "SET p2m:schema %s", want);
}

static void test_idle(void)
{
    CHECK_CTX("sync: idle counts move by their deltas");
    p2m_sync_service_t web = {"web", 1, 0, 0, 0, 0}, api = {"api:tcp", 2, 3, 1, 0, 0};
    sync_run(NULL, 0, NULL, 0, (p2m_sync_service_t[]){web, api}, 2, "arr:0");
    EXPECT_REDIS("str:1", "HGET p2m:idle:r1 web");
    sync_run(NULL, 0, NULL, 0, &web, 1, "arr:0");
    EXPECT_REDIS("str:2", "HGET p2m:idle:r1 web");
    EXPECT_REDIS("str:2", "HGET p2m:idle:r1 api:tcp");
    EXPECT_REDIS("str:3", "HGET p2m:wait:r1 api:tcp");
    EXPECT_REDIS("str:1", "HGET p2m:stats:relay:r1 api:tcp:queued");
    EXPECT_REDIS("int:15", "TTL p2m:idle:r1");

    CHECK_CTX("sync: a count at 0 goes; below 0 is drift");
    web.idle_delta = -2;
    sync_run(NULL, 0, NULL, 0, &web, 1, "arr:0");
    EXPECT_REDIS("nil", "HGET p2m:idle:r1 web");
    web.idle_delta = -1;
    sync_run(NULL, 0, NULL, 0, &web, 1, "arr:1");
    EXPECT_REDIS("nil", "HGET p2m:idle:r1 web");

    CHECK_CTX("counts: the idle hash rewritten from what the relay holds");
    p2m_store_cmdv_t v;
    p2m_count_t held[] = {{"web", 4}, {"blog", 1}};
    if (CHECK_EQ_INT(p2m_store_cmdv_relay_counts(&v, "r1", P2M_COUNT_IDLE, 15, held, 2), 0)) {
        freeReplyObject(runv(&v));
        p2m_store_cmdv_free(&v);
    }
    EXPECT_REDIS("str:4", "HGET p2m:idle:r1 web");
    EXPECT_REDIS("nil", "HGET p2m:idle:r1 api:tcp");
    EXPECT_REDIS("int:2", "HLEN p2m:idle:r1");

    CHECK_CTX("alive: idle marks name this relay; joined-only ones do not take another's mark");
    EXPECT_REDIS("str:OK", "SET p2m:alive:blog r2");
    p2m_count_t alive[] = {{"web", 1}, {"blog", 0}};
    if (CHECK_EQ_INT(p2m_store_cmdv_relay_alive(&v, "r1", 60, alive, 2), 0)) {
        freeReplyObject(runv(&v));
        p2m_store_cmdv_free(&v);
    }
    EXPECT_REDIS("str:r1", "GET p2m:alive:web");
    EXPECT_REDIS("str:r2", "GET p2m:alive:blog");
}

static void lease(uint16_t port, const char *relay, const char *created, const char *addr)
{
    EXPECT_REDIS("int:8", "HSET p2m:lease:%u kind pre label web service web pod alice addr %s relay %s created %s state pending",
                 (unsigned)port, addr, relay, created);
    EXPECT_REDIS("int:1", "EXPIRE p2m:lease:%u 30", (unsigned)port);
}

static void test_leases(void)
{
    p2m_store_cmd_t c;
    CHECK_CTX("bound: the lease held is marked bound; a consumer port of a service loses its TTL");
    lease(20001, "r1", "100", "10.0.0.1");
    expect(p2m_store_cmd_lease_bound(&c, 20001, "r1", "100", "alice"), &c, "int:1");
    EXPECT_REDIS("str:bound", "HGET p2m:lease:20001 state");
    EXPECT_REDIS("int:30", "TTL p2m:lease:20001");
    lease(20002, "r1", "100", "*");
    EXPECT_REDIS("str:OK", "SET p2m:cport:web 20002");
    expect(p2m_store_cmd_lease_bound(&c, 20002, "r1", "100", "alice"), &c, "int:1");
    EXPECT_REDIS("int:-1", "TTL p2m:lease:20002");

    CHECK_CTX("bound: a consumer port moved off a draining relay keeps its TTL");
    lease(20003, "r1", "100", "*");
    expect(p2m_store_cmd_lease_bound(&c, 20003, "r1", "100", "alice"), &c, "int:1");
    EXPECT_REDIS("int:30", "TTL p2m:lease:20003");
    EXPECT_REDIS("int:2", "DEL p2m:cport:web p2m:lease:20003");

    CHECK_CTX("bound: a lease re-created for someone else is not ours");
    expect(p2m_store_cmd_lease_bound(&c, 20001, "r1", "99", "alice"), &c, "int:0");
    expect(p2m_store_cmd_lease_bound(&c, 20001, "r2", "100", "alice"), &c, "int:0");
    expect(p2m_store_cmd_lease_bound(&c, 20009, "r1", "100", "alice"), &c, "int:0");

    CHECK_CTX("sync: a connection keeps its lease; a gone lease is reported by position");
    uint16_t conns[] = {20009, 20001};
    p2m_sync_service_t none = {"web", 0, 0, 0, 0, 0};
    sync_run(conns, 2, NULL, 0, &none, 1, "arr:0,1");
    EXPECT_REDIS("str:connected", "HGET p2m:lease:20001 state");

    CHECK_CTX("drop (unbind): only the lease held goes");
    expect(p2m_store_cmd_lease_drop(&c, 20001, "r1", "99", "alice"), &c, "int:0");
    EXPECT_REDIS("int:1", "EXISTS p2m:lease:20001");
    expect(p2m_store_cmd_lease_drop(&c, 20001, "r1", "100", "alice"), &c, "int:1");
    EXPECT_REDIS("int:0", "EXISTS p2m:lease:20001");
    p2m_sync_drop_t drop = {20002, "100", "alice"};
    sync_run(NULL, 0, &drop, 1, &none, 1, "arr:0");
    EXPECT_REDIS("int:0", "EXISTS p2m:lease:20002");

    CHECK_CTX("busy: the port rests 60 s on this relay, the lease held goes");
    lease(20003, "r1", "100", "10.0.0.1");
    expect(p2m_store_cmd_lease_busy(&c, 20003, "r1", "100", "alice", "Address already in use"), &c, "int:0");
    EXPECT_REDIS("int:60", "TTL p2m:portbusy:r1:20003");
    EXPECT_REDIS("int:0", "EXISTS p2m:lease:20003");
    lease(20004, "r2", "100", "10.0.0.1");
    expect(p2m_store_cmd_lease_busy(&c, 20004, "r1", "100", "alice", "x"), &c, "int:0");
    EXPECT_REDIS("int:1", "EXISTS p2m:lease:20004");

    CHECK_CTX("touch, owner, scan");
    expect(p2m_store_cmd_lease_touch(&c, 20004, 45), &c, "int:1");
    expect(p2m_store_cmd_lease_touch(&c, 20003, 45), &c, "int:0");
    expect(p2m_store_cmd_lease_owner(&c, 20004), &c, "arr:r2,100");
    uint16_t port = 0;
    CHECK_EQ_INT(p2m_store_lease_key_port("p2m:lease:20004", 15, &port), 0);
    CHECK_EQ_INT(port, 20004);
    CHECK_EQ_INT(p2m_store_lease_key_port("p2m:lease:", 10, &port), -1);
    CHECK_EQ_INT(p2m_store_lease_key_port("p2m:idle:20004", 14, &port), -1);
}

/* The registrar's heartbeat: its hash with a TTL, its name in the set, and its drain key read back. */
static void test_registrar_heartbeat(void)
{
    p2m_store_cmd_t c;
    CHECK_CTX("registrar heartbeat: not draining");
    expect(p2m_store_cmd_registrar_heartbeat(&c, "rega", "https://a.example:8443", "1700000000", "", 15), &c, "str:");
    EXPECT_REDIS("str:https://a.example:8443", "HGET p2m:registrar:rega url");
    EXPECT_REDIS("str:1700000000", "HGET p2m:registrar:rega started");
    EXPECT_REDIS("int:0", "HEXISTS p2m:registrar:rega draining_to");
    EXPECT_REDIS("int:0", "HEXISTS p2m:registrar:rega pods_to");
    EXPECT_REDIS("int:15", "TTL p2m:registrar:rega");
    EXPECT_REDIS("int:1", "SISMEMBER p2m:registrars rega");
    CHECK_CTX("registrar heartbeat: drained, pods_to");
    EXPECT_REDIS("str:OK", "SET p2m:registrar:rega:drain https://b.example");
    expect(p2m_store_cmd_registrar_heartbeat(&c, "rega", "https://a.example:8443", "1700000000", "https://c.example", 15), &c,
           "str:https://b.example");
    EXPECT_REDIS("str:https://b.example", "HGET p2m:registrar:rega draining_to");
    EXPECT_REDIS("str:https://c.example", "HGET p2m:registrar:rega pods_to");
    EXPECT_REDIS("int:-1", "TTL p2m:registrar:rega:drain");
    CHECK_CTX("registrar heartbeat: undrained");
    EXPECT_REDIS("int:1", "DEL p2m:registrar:rega:drain");
    expect(p2m_store_cmd_registrar_heartbeat(&c, "rega", "https://a.example:8443", "1700000000", "", 15), &c, "str:");
    EXPECT_REDIS("int:0", "HEXISTS p2m:registrar:rega draining_to");
    EXPECT_REDIS("int:0", "HEXISTS p2m:registrar:rega pods_to");
    EXPECT_REDIS("int:1", "DEL p2m:registrar:rega");
    EXPECT_REDIS("int:1", "DEL p2m:registrars");
}

static void test_relay(void)
{
    p2m_store_cmd_t c;
    char chans[128];
    CHECK_CTX("heartbeat and leave");
    p2m_relay_counts_t counts = {3, 2, 1, 0, 0};
    expect(p2m_store_cmd_relay_heartbeat(&c, "r1", "relay.example:443", "20000-20099", "1700000000", 15, &counts), &c, "int:0");
    EXPECT_REDIS("str:20000-20099", "HGET p2m:relay:r1 ports");
    EXPECT_REDIS("arr:3,2,1,0,0", "HMGET p2m:relay:r1 leases idle tunnels waiting draining");
    CHECK_CTX("heartbeat: the drain mark comes back");
    EXPECT_REDIS("int:1", "SADD p2m:draining r1");
    counts.draining = 1;
    expect(p2m_store_cmd_relay_heartbeat(&c, "r1", "relay.example:443", "20000-20099", "1700000000", 15, &counts), &c, "int:2");
    CHECK_CTX("heartbeat: another live relay that does not drain");
    EXPECT_REDIS("int:1", "HSET p2m:relay:r9 address c");
    EXPECT_REDIS("int:1", "SADD p2m:relays r9");
    expect(p2m_store_cmd_relay_heartbeat(&c, "r1", "relay.example:443", "20000-20099", "1700000000", 15, &counts), &c, "int:1");
    EXPECT_REDIS("int:1", "SADD p2m:draining r9");
    expect(p2m_store_cmd_relay_heartbeat(&c, "r1", "relay.example:443", "20000-20099", "1700000000", 15, &counts), &c, "int:2");
    EXPECT_REDIS("int:1", "SREM p2m:draining r9");
    EXPECT_REDIS("int:1", "DEL p2m:relay:r9");
    EXPECT_REDIS("int:1", "SREM p2m:relays r9");
    EXPECT_REDIS("str:1", "HGET p2m:relay:r1 draining");
    EXPECT_REDIS("int:1", "SREM p2m:draining r1");
    expect(p2m_store_cmd_relay_heartbeat(&c, "r1", "relay.example:443", "20000-20099", "1700000000", 15, &counts), &c, "int:0");
    EXPECT_REDIS("int:15", "TTL p2m:relay:r1");
    EXPECT_REDIS("int:1", "SISMEMBER p2m:relays r1");
    EXPECT_REDIS("int:2", "HSET p2m:relay:r2 address b ports 20050-20199");
    EXPECT_REDIS("int:1", "SADD p2m:relays r2");
    expect(p2m_store_cmd_relay_overlaps(&c, "r1", 20000, 20099), &c, "arr:r2,20050-20199");
    expect(p2m_store_cmd_relay_overlaps(&c, "r1", 20000, 20049), &c, "arr:");
    expect(p2m_store_cmd_relay_stat(&c, "r1", "web", "bytes_in", 7), &c, "int:7");
    EXPECT_REDIS("int:1", "HSET p2m:labels web alice");
    expect(p2m_store_cmd_sni_lookup(&c, "web", "r1"), &c, "str:here");
    expect(p2m_store_cmd_sni_lookup(&c, "nobody", "r1"), &c, "str:unknown");
    expect(p2m_store_cmd_relay_leave(&c, "r1"), &c, "int:0");
    EXPECT_REDIS("int:0", "EXISTS p2m:relay:r1 p2m:idle:r1 p2m:wait:r1");
    EXPECT_REDIS("int:0", "SISMEMBER p2m:relays r1");

    CHECK_CTX("subscription messages");
    CHECK_EQ_INT(p2m_store_cmd_relay_subscribe(&c, "r1"), 0);
    CHECK_EQ_INT(c.argc, 3);
    CHECK(p2m_store_relay_channels("r1", chans, sizeof(chans)) > 0);
    CHECK_EQ_STR(chans, "p2m:relay:r1,p2m:events");
    uint16_t port = 0;
    CHECK_EQ_INT(p2m_store_relay_message("r1", "p2m:relay:r1", "lease 20005", 11, &port), P2M_RELAY_MSG_LEASE);
    CHECK_EQ_INT(port, 20005);
    CHECK_EQ_INT(p2m_store_relay_message("r1", "p2m:events", "unlease 20006", 13, &port), P2M_RELAY_MSG_UNLEASE);
    CHECK_EQ_INT(port, 20006);
    CHECK_EQ_INT(p2m_store_relay_message("r1", "p2m:relay:r1", "lease 0", 7, &port), P2M_RELAY_MSG_UNKNOWN);
    CHECK_EQ_INT(p2m_store_relay_message("r1", "p2m:relay:r10", "lease 20005", 11, &port), P2M_RELAY_MSG_NONE);
    CHECK_EQ_INT(p2m_store_relay_message("r1", "p2m:events", "pod x", 5, &port), P2M_RELAY_MSG_NONE);

    CHECK_CTX("limits: a command that would not fit is refused, not truncated");
    char big[400];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_EQ_INT(p2m_store_cmd_lease_bound(&c, 1, big, big, big), 0);
    CHECK_EQ_INT(p2m_store_cmd_lease_busy(&c, 1, big, big, big, big), 0);
    char huge[1200];
    memset(huge, 'y', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    CHECK_EQ_INT(p2m_store_cmd_lease_drop(&c, 1, huge, huge, "p"), -1);
}

/* p2m_store_cmd_relay_series: the counts add up over relays and emits, the gauge is each relay's
 * most in the minute; a bucket gets P2M_SERIES_TTL. The tunnels hash is rewritten like idle. */
static void test_series(void)
{
    p2m_store_cmd_t c;
    CHECK_CTX("series: two relays, two emits each");
    p2m_series_add_t a = {2, 100, 200, 3}, b = {1, 10, 0, 1}, zero = {0, 0, 0, 0};
    expect(p2m_store_cmd_relay_series(&c, "r1", "web:tcp", 29000000, &a), &c, "int:0");
    expect(p2m_store_cmd_relay_series(&c, "r1", "web:tcp", 29000000, &b), &c, "int:0");
    expect(p2m_store_cmd_relay_series(&c, "r2", "web:tcp", 29000000, &b), &c, "int:0");
    expect(p2m_store_cmd_relay_series(&c, "r2", "web:tcp", 29000000, &zero), &c, "int:0");
    EXPECT_REDIS("str:4", "HGET p2m:series:web:tcp:29000000 conns");
    EXPECT_REDIS("str:120", "HGET p2m:series:web:tcp:29000000 bytes_in");
    EXPECT_REDIS("str:200", "HGET p2m:series:web:tcp:29000000 bytes_out");
    EXPECT_REDIS("str:3", "HGET p2m:series:web:tcp:29000000 tunnels:r1");
    EXPECT_REDIS("str:1", "HGET p2m:series:web:tcp:29000000 tunnels:r2");
    char want[16];
    snprintf(want, sizeof(want), "int:%d", P2M_SERIES_TTL);
    EXPECT_REDIS(want, "TTL p2m:series:web:tcp:29000000");
    EXPECT_REDIS("int:0", "EXISTS p2m:series:web:tcp:29000001");

    CHECK_CTX("series: the tunnels hash");
    p2m_store_cmdv_t v;
    p2m_count_t open[] = {{"web", 2}};
    if (CHECK_EQ_INT(p2m_store_cmdv_relay_counts(&v, "r1", P2M_COUNT_TUNNELS, 15, open, 1), 0)) {
        freeReplyObject(runv(&v));
        p2m_store_cmdv_free(&v);
    }
    EXPECT_REDIS("str:2", "HGET p2m:tunnels:r1 web");
    EXPECT_REDIS("int:15", "TTL p2m:tunnels:r1");
    expect(p2m_store_cmd_relay_leave(&c, "r1"), &c, "int:0");
    EXPECT_REDIS("int:0", "EXISTS p2m:tunnels:r1");
}

int main(void)
{
    redis_server_t srv;
    if (!CHECK_EQ_INT(redis_server_start(&srv, "store-cmd", &rc), 0)) {
        printf("redis-server did not start (is it installed?)\n");
        return check_done("store_cmd");
    }
    test_schema();
    test_idle();
    test_leases();
    test_relay();
    test_series();
    test_registrar_heartbeat();

    redisFree(rc);
    redis_server_stop(&srv);
    return check_done("store_cmd");
}
