/* The registrar's command builders in lib/store_cmd.c beyond the limiters (tests/unit/limiter.c):
 * leasing a pre-connection port (p2m_store_cmd_lease_pre), routing a consumer to a port
 * (p2m_store_cmd_consumer_route), abandoning a lease, announcing one, the bound channel, counters and
 * /metrics, run through their real Lua scripts on a private redis-server (redis_server.h) with
 * relays written as their heartbeats write them. Replies are rendered as one line ("ok|40001|r1|...")
 * and compared with what the builder's contract in store_cmd.h says. */
#include "check.h"
#include "p2m/err.h"
#include "p2m/store.h"
#include "p2m/store_cmd.h"
#include "redis_server.h"

#include <hiredis/hiredis.h>
#include <stdint.h>
#include <string.h>

static redisContext *rc;
static char got[4096];

#define R(...) redis_fmt(rc, got, sizeof(got), __VA_ARGS__)

/* Runs a built command; "build failed" when the builder refused. */
static const char *run(int built, p2m_store_cmd_t *c)
{
    if (built != 0) {
        snprintf(got, sizeof(got), "build failed");
        return got;
    }
    redisReply *r = redisCommandArgv(rc, c->argc, c->argv, c->argvlen);
    if (r == NULL)
        snprintf(got, sizeof(got), "no reply: %s", rc->errstr);
    else
        redis_render(r, got, sizeof(got));
    freeReplyObject(r);
    return got;
}

static void reset(void)
{
    R("FLUSHALL");
    /* Two live relays, as their heartbeats write them, and one whose hash expired. */
    R("SADD p2m:relays r1 r2 r3");
    R("HSET p2m:relay:r1 address 10.0.0.1 ports 40000-40003 started 1");
    R("HSET p2m:relay:r2 address 10.0.0.2 ports 41000-41001 started 1");
    R("HSET p2m:labels web alice api bob");
}

static void test_lease_pre(void)
{
    p2m_store_cmd_t c;
    char relay[8];

    CHECK_CTX("lease_pre: no relay");
    R("FLUSHALL");
    CHECK_EQ_STR(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 0), &c),
                 "norelay");

    CHECK_CTX("lease_pre: a service's home relay");
    reset();
    if (!CHECK_MSG(strncmp(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 0), &c),
                           "ok|", 3) == 0,
                   "got %s", got))
        return;
    /* ok|PORT|RELAY|ADDRESS|WAITING|WAITED|ALL_DRAINING */
    unsigned port = 0;
    char addr[32];
    CHECK_MSG(sscanf(got, "ok|%u|%7[^|]|%31[^|]|0|0|0", &port, relay, addr) == 3, "reply %s", got);
    int on_r1 = strcmp(relay, "r1") == 0;
    CHECK(on_r1 || strcmp(relay, "r2") == 0);
    CHECK_EQ_STR(addr, on_r1 ? "10.0.0.1" : "10.0.0.2");
    CHECK_EQ_INT(port, on_r1 ? 40000 : 41000); /* rand 0 probes the range's first port first */
    CHECK_EQ_STR(R("HMGET p2m:lease:%u kind label service pod addr relay created state conns", port),
                 on_r1 ? "pre|web|web|alice|1.2.3.4|r1|1000|pending|(nil)" : "pre|web|web|alice|1.2.3.4|r2|1000|pending|(nil)");
    long long ttl = atoll(R("TTL p2m:lease:%u", port));
    CHECK(ttl > 25 && ttl <= 30);
    CHECK_EQ_STR(R("GET p2m:alive:web"), relay);
    ttl = atoll(R("TTL p2m:alive:web"));
    CHECK(ttl > 85 && ttl <= 90);
    CHECK_EQ_STR(R("SCARD p2m:relays"), "2"); /* r3's hash is gone: forgotten */
    CHECK_EQ_STR(R("SISMEMBER p2m:relays r3"), "0");

    /* Every pre-connection of the service goes home, rand only moves the first port probed. */
    CHECK_CTX("lease_pre: the same relay, the next free port");
    unsigned lo = on_r1 ? 40000 : 41000, size = on_r1 ? 4 : 2;
    char want[64];
    snprintf(want, sizeof(want), "ok|%u|%s|%s|0|0|0", lo + 1, relay, addr);
    CHECK_EQ_STR(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 4, 90, 0), &c), want);
    CHECK_EQ_STR(R("HGET p2m:lease:%u conns", lo + 1), "4");
    /* the home relay full (and a busy port skipped): the other relay */
    for (unsigned p = lo + 2; p < lo + size; p++)
        R("SET p2m:portbusy:%s:%u 1", relay, p);
    CHECK_EQ_STR(R("GET p2m:alive:web"), relay);
    const char *other = on_r1 ? "r2" : "r1";
    CHECK_MSG(strstr(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 7, 1, 90, 0), &c),
                     other) != NULL,
              "want a port on %s, got %s", other, got);
    CHECK_EQ_STR(R("GET p2m:alive:web"), other);
    /* all full */
    for (int i = 0; i < 8; i++)
        run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 0), &c);
    CHECK_EQ_STR(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 0), &c), "noport");

    CHECK_CTX("lease_pre: protocol, demand, the consumer port's relay is home");
    reset();
    R("HSET p2m:wait:r1 web:tcp 3");
    R("HSET p2m:wait:r2 web:tcp 2 web 9");
    R("HSET p2m:stats:relay:r1 web:tcp:queued 7");
    R("HSET p2m:lease:41001 kind consumer service web:tcp addr * relay r2 state bound");
    R("SET p2m:cport:web:tcp 41001");
    CHECK_EQ_STR(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_TCP, "alice", "::1", 1000, 30, 0, 1, 90, 0), &c),
                 "ok|41000|r2|10.0.0.2|5|7|0");
    CHECK_EQ_STR(R("HMGET p2m:lease:41000 label service addr"), "web|web:tcp|::1");

    /* The pod's hash records the registration and the pool target it declared, per service; a
     * registration that declares none removes the service's. A pod removed meanwhile gets none. */
    CHECK_CTX("lease_pre: last_registration and pool:SERVICE");
    reset();
    run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_TCP, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 4), &c);
    CHECK_EQ_STR(R("EXISTS p2m:pod:alice"), "0");
    R("HSET p2m:pod:alice secret x");
    run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_TCP, "alice", "1.2.3.4", 1001, 30, 0, 1, 90, 4), &c);
    run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1001, 30, 0, 1, 90, 1024), &c);
    CHECK_EQ_STR(R("HMGET p2m:pod:alice last_registration pool:web:tcp pool:web pool:web:http"), "1001|4|1024|(nil)");
    run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_TCP, "alice", "1.2.3.4", 1002, 30, 0, 1, 90, 0), &c);
    CHECK_EQ_STR(R("HMGET p2m:pod:alice last_registration pool:web:tcp pool:web"), "1002|(nil)|1024");

    /* Hostile bytes are data. */
    CHECK_CTX("lease_pre: hostile label and pod");
    reset();
    const char *evil = "x') redis.call('FLUSHALL') --";
    run(p2m_store_cmd_lease_pre(&c, evil, P2M_PROTO_HTTP, "a\r\nb", "1.2.3.4", 1000, 30, 0, 1, 90, 0), &c);
    CHECK_MSG(strncmp(got, "ok|", 3) == 0, "got %s", got);
    CHECK_EQ_STR(R("HGET p2m:labels web"), "alice");
    CHECK_EQ_STR(R("EXISTS p2m:alive:%s:http", evil), "1");

    CHECK_CTX("lease_pre: arguments beyond the command's buffer are refused");
    static char big[2100];
    memset(big, 'a', sizeof(big) - 1);
    CHECK_EQ_INT(p2m_store_cmd_lease_pre(&c, big, P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 0), -1);
}

static void test_consumer_route(void)
{
    p2m_store_cmd_t c;
    const p2m_consumer_caps_t caps = {.ttl = 60, .per_addr = 1, .per_label = 8, .share = 50};
    const p2m_proto_t https[] = {P2M_PROTO_HTTPS}, http_first[] = {P2M_PROTO_HTTP, P2M_PROTO_HTTPS};

    reset();
    CHECK_CTX("consumer_route: unknown and gone");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "nolabel", https, 1, "*", 1000, &caps, 0), &c), "unknown");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "gone");
    R("SET p2m:alive:web r9"); /* alive on a relay that is not live: still gone */
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "gone");

    CHECK_CTX("consumer_route: per service, to the relay with idle pre-connections");
    R("HSET p2m:idle:r2 web 2");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 1), &c), "ok|41001|10.0.0.2|r2|1|web|0");
    CHECK_EQ_STR(R("HMGET p2m:lease:41001 kind label service pod addr relay state"), "consumer|web|web|alice|*|r2|pending");
    CHECK_EQ_STR(R("GET p2m:cport:web"), "41001");
    CHECK_EQ_STR(R("SMEMBERS p2m:cports:service"), "41001");
    /* announced by another request: wait; once bound: redirect at once */
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "ok|41001|10.0.0.2|r2|2|web|0");
    R("HSET p2m:lease:41001 state bound");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "ok|41001|10.0.0.2|r2|0|web|0");

    CHECK_CTX("consumer_route: the services in order of preference");
    R("HSET p2m:idle:r1 web:http 1");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", http_first, 2, "*", 1000, &caps, 0), &c),
                 "ok|40000|10.0.0.1|r1|1|web:http|0");
    R("HDEL p2m:idle:r1 web:http");
    R("HDEL p2m:idle:r2 web");
    R("SET p2m:alive:web:http r1");
    /* no idle pre-connection anywhere: the first alive service, and the consumer will wait */
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", http_first, 2, "*", 1000, &caps, 0), &c),
                 "ok|40000|10.0.0.1|r1|2|web:http|1");

    CHECK_CTX("consumer_route: per address, capped per address");
    reset();
    R("HSET p2m:idle:r1 web 1 api 1");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "192.0.2.1", 1000, &caps, 0), &c),
                 "ok|40000|10.0.0.1|r1|1|web|0");
    CHECK_EQ_STR(R("HMGET p2m:lease:40000 addr state"), "192.0.2.1|pending");
    CHECK_EQ_STR(R("GET p2m:consumer:web:192.0.2.1"), "40000");
    long long ttl = atoll(R("TTL p2m:lease:40000"));
    CHECK(ttl > 55 && ttl <= 60);
    R("HSET p2m:lease:40000 state bound");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "192.0.2.1", 1000, &caps, 0), &c),
                 "ok|40000|10.0.0.1|r1|0|web|0");
    /* another address has its own port */
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "192.0.2.2", 1000, &caps, 0), &c),
                 "ok|40001|10.0.0.1|r1|1|web|0");
    /* the first address's second label: beyond per_addr 1, its least recently used port goes */
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "api", https, 1, "192.0.2.1", 1000, &caps, 0), &c),
                 "ok|40000|10.0.0.1|r1|1|api|0");
    CHECK_EQ_STR(R("HGET p2m:lease:40000 label"), "api");
    CHECK_EQ_STR(R("EXISTS p2m:consumer:web:192.0.2.1"), "0");
    CHECK_EQ_STR(R("HGET p2m:stats evictions"), "1");
    CHECK_EQ_STR(R("GET p2m:consumer:web:192.0.2.2"), "40001"); /* the other address kept its own */

    CHECK_CTX("consumer_route: the share of all ports");
    reset();
    const p2m_consumer_caps_t tight = {.ttl = 60, .per_addr = 8, .per_label = 8, .share = 1}; /* 1% of 6 ports: 1 */
    R("HSET p2m:idle:r1 web 1 api 1");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &tight, 0), &c), "ok|40000|10.0.0.1|r1|1|web|0");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "api", https, 1, "*", 1000, &tight, 0), &c), "noport");
}

/* A relay marked draining (p2m:draining, PROTOCOL 3.9): no pre leases while another relay does
 * not drain, the consumers follow the pre-connections and never go ahead of them, and a drain of
 * every relay changes nothing but the reply's last field. */
static void test_drain(void)
{
    p2m_store_cmd_t c;
    const p2m_consumer_caps_t caps = {.ttl = 60, .per_addr = 8, .per_label = 8, .share = 50};
    const p2m_proto_t https[] = {P2M_PROTO_HTTPS};

    CHECK_CTX("drain: pre leases skip a draining relay, even the consumer port's");
    reset();
    R("HSET p2m:lease:41001 kind consumer service web addr * relay r2 state bound");
    R("SET p2m:cport:web 41001");
    R("SADD p2m:cports:service 41001");
    R("SADD p2m:draining r2");
    for (int i = 0; i < 3; i++)
        CHECK_MSG(strncmp(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, i, 1, 90, 0), &c),
                          "ok|4000", 7) == 0 &&
                      strstr(got, "|r1|10.0.0.1|0|0|0") != NULL,
                  "want a port on r1, got %s", got);
    CHECK_EQ_STR(R("GET p2m:alive:web"), "r1");

    CHECK_CTX("drain: the consumer port stays while only the draining relay holds idle pre-connections");
    R("HSET p2m:idle:r2 web 3");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "ok|41001|10.0.0.2|r2|0|web|0");

    CHECK_CTX("drain: it moves once the pre-connections are elsewhere; the old lease expires, not deleted");
    R("HSET p2m:idle:r1 web 1");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "ok|40003|10.0.0.1|r1|1|web|0");
    CHECK_EQ_STR(R("GET p2m:cport:web"), "40003");
    CHECK_EQ_STR(R("HGET p2m:lease:41001 relay"), "r2");
    long long ttl = atoll(R("TTL p2m:lease:41001"));
    CHECK_MSG(ttl > 55 && ttl <= 60, "ttl %lld", ttl);
    CHECK_EQ_STR(R("SISMEMBER p2m:cports:service 41001"), "0");
    /* the next pre lease goes to the new consumer port's relay (one of its ports freed first) */
    R("DEL p2m:lease:40000");
    CHECK_MSG(strstr(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 0), &c),
                     "|r1|") != NULL,
              "got %s", got);

    CHECK_CTX("drain: no idle anywhere, alive on the draining relay: the relay the pod will go to");
    reset();
    R("HSET p2m:lease:41001 kind consumer service web addr * relay r2 state bound");
    R("SET p2m:cport:web 41001");
    R("SET p2m:alive:web r2");
    R("SADD p2m:draining r2");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "ok|40000|10.0.0.1|r1|1|web|1");

    CHECK_CTX("drain: a per-address port on a draining relay is not reused");
    reset();
    R("HSET p2m:idle:r1 web 1");
    R("HSET p2m:idle:r2 web 1");
    R("HSET p2m:lease:41000 kind consumer service web addr 192.0.2.1 relay r2 state bound");
    R("SET p2m:consumer:web:192.0.2.1 41000");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "192.0.2.1", 1000, &caps, 0), &c),
                 "ok|41000|10.0.0.2|r2|0|web|0");
    R("SADD p2m:draining r2");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "192.0.2.1", 1000, &caps, 0), &c),
                 "ok|40000|10.0.0.1|r1|1|web|0");

    CHECK_CTX("drain: every relay draining: used as before, and said");
    reset();
    R("SADD p2m:draining r1 r2");
    CHECK_MSG(strncmp(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 0), &c),
                      "ok|", 3) == 0 &&
                  strcmp(got + strlen(got) - 2, "|1") == 0,
              "got %s", got);
    R("DEL p2m:lease:40000 p2m:lease:41000");
    R("HSET p2m:idle:r2 web 1");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "ok|41000|10.0.0.2|r2|1|web|0");
    R("HSET p2m:lease:41000 state bound");
    CHECK_EQ_STR(run(p2m_store_cmd_consumer_route(&c, "web", https, 1, "*", 1000, &caps, 0), &c), "ok|41000|10.0.0.2|r2|0|web|0");

    CHECK_CTX("drain: the relays that do not drain are full: a draining one, and said");
    reset();
    R("SADD p2m:draining r2");
    for (unsigned p = 40000; p <= 40003; p++)
        R("SET p2m:portbusy:r1:%u 1", p);
    CHECK_MSG(strcmp(run(p2m_store_cmd_lease_pre(&c, "web", P2M_PROTO_HTTPS, "alice", "1.2.3.4", 1000, 30, 0, 1, 90, 0), &c),
                     "ok|41000|r2|10.0.0.2|0|0|1") == 0,
              "got %s", got);
    R("SREM p2m:draining r1 r2");
}

static void test_small(void)
{
    p2m_store_cmd_t c;
    reset();
    CHECK_CTX("lease_abandon: only a pending lease");
    R("HSET p2m:lease:40000 state pending");
    R("HSET p2m:lease:40001 state bound");
    CHECK_EQ_STR(run(p2m_store_cmd_lease_abandon(&c, 40000), &c), "1");
    CHECK_EQ_STR(run(p2m_store_cmd_lease_abandon(&c, 40001), &c), "0");
    CHECK_EQ_STR(run(p2m_store_cmd_lease_abandon(&c, 40002), &c), "0");
    CHECK_EQ_STR(R("EXISTS p2m:lease:40000 p2m:lease:40001"), "1");

    CHECK_CTX("announce_lease");
    if (CHECK_EQ_INT(p2m_store_cmd_announce_lease(&c, "r1", 40001), 0) && CHECK_EQ_INT(c.argc, 3)) {
        CHECK_EQ_STR(c.argv[0], "PUBLISH");
        CHECK_EQ_STR(c.argv[1], "p2m:relay:r1");
        CHECK_EQ_STR(c.argv[2], "lease 40001");
    }
    CHECK_EQ_STR(run(0, &c), "0"); /* nobody listens */

    CHECK_CTX("subscribe_bound");
    if (CHECK_EQ_INT(p2m_store_cmd_subscribe_bound(&c), 0) && CHECK_EQ_INT(c.argc, 2)) {
        CHECK_EQ_STR(c.argv[0], "SUBSCRIBE");
        CHECK_EQ_STR(c.argv[1], p2m_channel_bound);
    }
    CHECK_EQ_STR(p2m_channel_bound, "p2m:bound");

    CHECK_CTX("stat");
    CHECK_EQ_STR(run(p2m_store_cmd_stat(&c, "registrations"), &c), "1");
    CHECK_EQ_STR(run(p2m_store_cmd_stat(&c, "registrations"), &c), "2");
    CHECK_EQ_STR(run(p2m_store_cmd_stat(&c, "fail:bad code"), &c), "1");
    redisReply *r = redisCommand(rc, "HGET p2m:stats %s", "fail:bad code");
    CHECK(r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, "1") == 0);
    freeReplyObject(r);

    CHECK_CTX("metrics");
    R("DEL p2m:stats");
    R("HSET p2m:stats redirects 5");
    R("HSET p2m:lease:40002 kind pre");
    R("HSET p2m:lease:40003 kind consumer");
    R("HSET p2m:idle:r1 web 2");
    R("HSET p2m:wait:r2 api 1");
    R("HSET p2m:stats:relay:r1 web:conns 4");
    R("HSET p2m:idle:r3 web 99"); /* a relay that is not live shows nothing */
    /* {NRELAYS, STATS, PRE, CONSUMER, IDLE, RELAY_STATS, WAITING}; 40000 is gone, 40001 has no kind */
    CHECK_EQ_STR(run(p2m_store_cmd_metrics(&c), &c), "2|redirects|5|1|1|r1|web|2|r1|web:conns|4|r2|api|1");
}

/* The setup script (PROTOCOL 1.6): every refusal leaves the token and the pods as they were; "ok"
 * makes the pod as pod add does and spends one use; unknown tokens strike the address limiter once each. */
static void test_setup(void)
{
    p2m_store_cmd_t c;
    static const char h[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    static const char other[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const p2m_auth_limits_t lim = {.free = 1, .window = 60, .backoff_max = 30};
    p2m_setup_cmd_t s = {.hash = h,
                         .prefix = "",
                         .label = "gen-a",
                         .wanted = 0,
                         .id = "setup-1",
                         .secret = "SECRET",
                         .digits = 6,
                         .nprotos = 2,
                         .addr = "1.2.3.4",
                         .now = 1000};
    reset();
    R("HSET p2m:token:%s uses 2 uses_left 1 tunnels 2 expires 0 label_prefix acme created 1 pods_created 0", h);

    CHECK_CTX("setup: refusals change nothing");
    s.nprotos = 3;
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "tunnels|2");
    s.nprotos = 2;
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "prefix|acme");
    s.prefix = "acme";
    s.label = "web"; /* alice's (reset) */
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "collision");
    s.wanted = 1;
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "taken");
    R("HSET p2m:pod:setup-1 secret x");
    s.label = "acme-door";
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "collision");
    R("DEL p2m:pod:setup-1");
    CHECK_EQ_STR(R("HMGET p2m:token:%s uses_left pods_created", h), "1|0");
    CHECK_EQ_STR(R("EXISTS p2m:pod:setup-1 p2m:limit:addr:1.2.3.4"), "0");

    CHECK_CTX("setup: ok");
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "ok|0");
    CHECK_EQ_STR(R("HMGET p2m:pod:setup-1 secret created disabled epoch token_reuse digits"), "SECRET|1000|0|0|none|6");
    CHECK_EQ_STR(R("HGET p2m:labels acme-door"), "setup-1");
    CHECK_EQ_STR(R("SMEMBERS p2m:pod:setup-1:labels"), "acme-door");
    CHECK_EQ_STR(R("SISMEMBER p2m:pods setup-1"), "1");
    CHECK_EQ_STR(R("HMGET p2m:token:%s uses_left pods_created", h), "0|1");

    CHECK_CTX("setup: spent, expired, unknown, then limited");
    s.id = "setup-2";
    s.label = "acme-other";
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "spent");
    R("HSET p2m:token:%s uses_left 5 expires 1000", h);
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "expired");
    s.hash = other;
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "unknown"); /* a second distinct token: past free */
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "limited|1");
    CHECK_EQ_STR(R("EXISTS p2m:pod:setup-2"), "0");

    CHECK_CTX("setup: builder refusals");
    s.hash = "nothex";
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "build failed");
    s.hash = h;
    s.digits = 7;
    CHECK_EQ_STR(run(p2m_store_cmd_setup(&c, &s, &lim), &c), "build failed");
}

/* Direct paths (PROTOCOL 5): the registration's record, the redirect's choice (same network, a
 * verified public path, the retry mark, a disabled or removed pod, a name not written yet, http
 * and https), and the checker's synchronous calls. */
static void test_direct(redis_server_t *srv)
{
    p2m_store_cmd_t c;
    const char *LAN = "web.lan.d.example", *DIRECT = "web.direct.d.example";
#define ROUTE(http, addr, lan, pub) run(p2m_store_cmd_direct_route(&c, "web", http, addr, lan, pub, LAN, DIRECT, 30), &c)

    CHECK_CTX("direct: record");
    R("FLUSHALL");
    R("HSET p2m:pod:alice disabled 0");
    CHECK_EQ_STR(run(p2m_store_cmd_direct_record(&c, "web", P2M_PROTO_HTTPS, "alice", "198.51.100.7", "10.0.0.5:8443",
                                                 "203.0.113.7:443", 30),
                     &c),
                 "1");
    CHECK_EQ_STR(R("HMGET p2m:direct:web pod src lan public"), "alice|198.51.100.7|10.0.0.5:8443|203.0.113.7:443");
    long long ttl = atoll(R("TTL p2m:direct:web"));
    CHECK(ttl > 25 && ttl <= 30);
    CHECK_EQ_STR(R("SMEMBERS p2m:directs"), "web");
    CHECK_EQ_STR(run(p2m_store_cmd_direct_record(&c, "web", P2M_PROTO_HTTP, "alice", "198.51.100.7", "10.0.0.5:8080", "", 30), &c),
                 "1");
    CHECK_EQ_STR(R("HMGET p2m:direct:web:http lan public"), "10.0.0.5:8080|");

    CHECK_CTX("direct: route before the names are written");
    CHECK_EQ_STR(ROUTE(0, "198.51.100.7", 1, 1), "relay|none");
    R("HSET p2m:dns:names %s 10.0.0.5 %s 203.0.113.7", LAN, DIRECT);
    CHECK_CTX("direct: route, public path not verified");
    CHECK_EQ_STR(ROUTE(0, "192.0.2.1", 1, 1), "relay|none");
    CHECK_CTX("direct: same network, https");
    CHECK_EQ_STR(ROUTE(0, "198.51.100.7", 1, 1), "lan|https|10.0.0.5:8443");
    CHECK_EQ_STR(R("GET p2m:direct-sent:web:198.51.100.7"), "lan");
    ttl = atoll(R("TTL p2m:direct-sent:web:198.51.100.7"));
    CHECK(ttl > 25 && ttl <= 30);
    CHECK_CTX("direct: back within the retry window");
    CHECK_EQ_STR(ROUTE(0, "198.51.100.7", 1, 1), "relay|retry");
    CHECK_CTX("direct: same network, http gets the http service's lan path");
    CHECK_EQ_STR(ROUTE(1, "198.51.100.7", 1, 1), "lan|http|10.0.0.5:8080");
    CHECK_CTX("direct: lan switched off");
    R("DEL p2m:direct-sent:web:198.51.100.7");
    CHECK_EQ_STR(ROUTE(0, "198.51.100.7", 0, 1), "relay|none");
    CHECK_CTX("direct: elsewhere, verified");
    R("SET p2m:direct-ok:web 203.0.113.7:443");
    CHECK_EQ_STR(ROUTE(0, "192.0.2.1", 1, 1), "direct|https|203.0.113.7:443");
    CHECK_EQ_STR(ROUTE(0, "192.0.2.1", 1, 1), "relay|retry");
    CHECK_EQ_STR(ROUTE(1, "192.0.2.2", 1, 1), "direct|https|203.0.113.7:443"); /* http consumers too, upgraded */
    CHECK_EQ_STR(ROUTE(0, "192.0.2.3", 1, 0), "relay|none");
    CHECK_CTX("direct: the name holds another address");
    R("HSET p2m:dns:names %s 203.0.113.8", DIRECT);
    CHECK_EQ_STR(ROUTE(0, "192.0.2.4", 1, 1), "relay|none");
    R("HSET p2m:dns:names %s 203.0.113.7", DIRECT);
    CHECK_CTX("direct: a verified mark for another path");
    R("SET p2m:direct-ok:web 203.0.113.9:443");
    CHECK_EQ_STR(ROUTE(0, "192.0.2.5", 1, 1), "relay|none");
    R("SET p2m:direct-ok:web 203.0.113.7:443");
    CHECK_CTX("direct: a disabled pod, a removed pod");
    R("HSET p2m:pod:alice disabled 1");
    CHECK_EQ_STR(ROUTE(0, "198.51.100.7", 1, 1), "relay|none");
    CHECK_EQ_STR(ROUTE(0, "192.0.2.6", 1, 1), "relay|none");
    R("DEL p2m:pod:alice");
    CHECK_EQ_STR(ROUTE(0, "192.0.2.7", 1, 1), "relay|none");
    R("HSET p2m:pod:alice disabled 0");
    CHECK_CTX("direct: a changed public path loses its mark");
    CHECK_EQ_STR(run(p2m_store_cmd_direct_record(&c, "web", P2M_PROTO_HTTPS, "alice", "198.51.100.7", "10.0.0.5:8443",
                                                 "203.0.113.8:443", 30),
                     &c),
                 "1");
    CHECK_EQ_STR(R("EXISTS p2m:direct-ok:web"), "0");
    CHECK_CTX("direct: a registration without paths withdraws them");
    R("SET p2m:direct-ok:web 203.0.113.8:443");
    CHECK_EQ_STR(run(p2m_store_cmd_direct_record(&c, "web", P2M_PROTO_HTTPS, "alice", "198.51.100.7", "", "", 30), &c), "2");
    CHECK_EQ_STR(R("EXISTS p2m:direct:web p2m:direct-ok:web"), "0");
    CHECK_EQ_STR(ROUTE(0, "198.51.100.8", 1, 1), "relay|none");
#undef ROUTE

    /* The checker's side, on a connection of its own. */
    char err[P2M_ERR_LEN];
    p2m_redis_addr_t a;
    p2m_store_t *st = NULL;
    CHECK_CTX("direct: checker");
    if (!CHECK_RC(p2m_redis_addr_parse(srv->addr, &a, err), 0, err) || (st = p2m_store_connect(&a, 2000, err)) == NULL) {
        CHECK_MSG(0, "connect: %s", err);
        return;
    }
    R("DEL p2m:dns:names");
    run(p2m_store_cmd_direct_record(&c, "web", P2M_PROTO_HTTPS, "alice", "198.51.100.7", "10.0.0.5:8443", "[2001:db8::1]:443", 30),
        &c);
    R("SADD p2m:directs bad:label");
    char(*labels)[P2M_LABEL_MAX + 1] = NULL;
    size_t n = 0;
    if (CHECK_RC(p2m_store_direct_labels(st, &labels, &n, 16, err), 0, err) && CHECK_EQ_INT(n, 1))
        CHECK_EQ_STR(labels[0], "web"); /* what is not a label is skipped */
    free(labels);
    p2m_direct_state_t ds;
    if (CHECK_RC(p2m_store_direct_take(st, "web", "reg1", 5000, LAN, DIRECT, &ds, err), 0, err)) {
        CHECK_EQ_INT(ds.locked, 1);
        CHECK_EQ_STR(ds.lan, "10.0.0.5:8443");
        CHECK_EQ_STR(ds.lan_http, "10.0.0.5:8080");
        CHECK_EQ_STR(ds.public_, "[2001:db8::1]:443");
        CHECK_EQ_STR(ds.dns_lan, "");
        CHECK_EQ_STR(ds.verified, "");
    }
    CHECK_EQ_STR(R("GET p2m:direct-lock:web"), "reg1");
    if (CHECK_RC(p2m_store_direct_take(st, "web", "reg2", 5000, LAN, DIRECT, &ds, err), 0, err))
        CHECK_EQ_INT(ds.locked, 0); /* one registrar per label and interval */
    R("DEL p2m:direct-lock:web");
    CHECK_RC(p2m_store_direct_verified(st, "web", "[2001:db8::1]:443", 9000, err), 0, err);
    CHECK_EQ_STR(R("GET p2m:direct-ok:web"), "[2001:db8::1]:443");
    CHECK_RC(p2m_store_direct_verified(st, "web", "[2001:db8::2]:443", 9000, err), 0, err); /* not the declared path */
    CHECK_EQ_STR(R("EXISTS p2m:direct-ok:web"), "0");
    CHECK_RC(p2m_store_direct_dns_set(st, "web", LAN, "10.0.0.5", err), 0, err);
    CHECK_EQ_STR(R("HGET p2m:dns:names %s", LAN), "10.0.0.5");
    /* What Redis holds that is not an address or a path reads as "": it would reach DNS and Location. */
    R("HSET p2m:direct:web lan %s", "evil.example:80");
    R("HSET p2m:dns:names %s %s", DIRECT, "203.0.113.7\\n");
    if (CHECK_RC(p2m_store_direct_take(st, "web", "reg1", 5000, LAN, DIRECT, &ds, err), 0, err)) {
        CHECK_EQ_STR(ds.lan, "");
        CHECK_EQ_STR(ds.dns_lan, "10.0.0.5");
        CHECK_EQ_STR(ds.dns_direct, "");
    }
    R("HSET p2m:pod:alice disabled 1");
    R("DEL p2m:direct-lock:web");
    if (CHECK_RC(p2m_store_direct_take(st, "web", "reg1", 5000, LAN, DIRECT, &ds, err), 0, err)) {
        CHECK_EQ_STR(ds.public_, ""); /* a disabled pod's paths read as none */
        CHECK_EQ_STR(ds.lan_http, "");
    }
    CHECK_CTX("direct: forget");
    CHECK_RC(p2m_store_direct_forget(st, "web", LAN, DIRECT, err), 0, err);
    CHECK_EQ_STR(R("SISMEMBER p2m:directs web"), "1"); /* still has its records */
    R("DEL p2m:direct:web p2m:direct:web:http");
    CHECK_RC(p2m_store_direct_forget(st, "web", LAN, DIRECT, err), 0, err);
    CHECK_EQ_STR(R("SISMEMBER p2m:directs web"), "1"); /* a name is still remembered */
    CHECK_RC(p2m_store_direct_dns_set(st, "web", LAN, "", err), 0, err);
    R("HDEL p2m:dns:names %s", DIRECT);
    CHECK_RC(p2m_store_direct_forget(st, "web", LAN, DIRECT, err), 0, err);
    CHECK_EQ_STR(R("SISMEMBER p2m:directs web"), "0");
    p2m_store_free(st);
    CHECK_CTX(NULL);
}

int main(void)
{
    redis_server_t srv;
    if (!CHECK(redis_server_start(&srv, "store-registrar", &rc) == 0)) {
        printf("redis-server did not start (is it installed?)\n");
        return check_done("store_registrar");
    }
    test_lease_pre();
    test_consumer_route();
    test_drain();
    test_small();
    test_setup();
    test_direct(&srv);
    redisFree(rc);
    redis_server_stop(&srv);
    return check_done("store_registrar");
}
