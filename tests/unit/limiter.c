/* The registrar's authentication limiters and token reuse (lib/store_cmd.c), driven through the
 * real Lua scripts on a private redis-server with a table of events: who asks, from where, at what
 * time (the scripts take `now` from their caller, so the table sets the clock), and what the
 * scripts must answer. Needs redis-server on PATH; the server is started on a unix socket in a
 * temp dir and stopped at the end. */
#include "check.h"
#include "p2m/store_cmd.h"
#include "redis_server.h"

#include <hiredis/hiredis.h>
#include <stdint.h>

/* Small numbers keep the table readable: 3 free failures, waits of 1, 2, 4, then 8 s at most. */
static const p2m_auth_limits_t lim = {.free = 3, .window = 100, .backoff_max = 8};

static redisContext *rc;
static char last_struck[8] = "pair"; /* STRUCK of the last lookup, for the commit that follows */

static redisReply *run(p2m_store_cmd_t *cmd)
{
    return redisCommandArgv(rc, cmd->argc, (const char **)cmd->argv, cmd->argvlen);
}

static void redis(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void redis(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        printf("redis: %s: %s\n", fmt, r != NULL ? r->str : rc->errstr);
    freeReplyObject(r);
}

/* Renders a reply as the table writes it: "ok:all", "ok:pair", "nopod", "limited:7", "reused". */
static void render(const redisReply *r, const char *op, char *out, size_t cap)
{
    if (r == NULL) {
        snprintf(out, cap, "no reply: %s", rc->errstr);
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(out, cap, "error: %s", r->str);
    } else if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) {
        snprintf(out, cap, "%s", r->str);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING) {
        const char *s = r->element[0]->str;
        if (strcmp(s, "limited") == 0 && r->elements == 2)
            snprintf(out, cap, "limited:%s", r->element[1]->str);
        else if (strcmp(s, "ok") == 0 && strcmp(op, "lookup") == 0 && r->elements == 9) {
            snprintf(last_struck, sizeof(last_struck), "%s", r->element[8]->str);
            snprintf(out, cap, "ok:%s", r->element[8]->str);
        } else if (strcmp(s, "ok") == 0 && strcmp(op, "session") == 0 && r->elements == 3)
            snprintf(out, cap, "ok:%s", r->element[1]->str);
        else
            snprintf(out, cap, "%s", s);
    } else {
        snprintf(out, cap, "reply type %d", r->type);
    }
}

typedef struct {
    long long now;
    const char *op; /* lookup | commit (the code matched `step`) | session (the digest is the ID) */
    const char *id;
    const char *addr;
    const char *label;
    unsigned step;
    const char *want;
} event_t;

/* Pods: alice owns web, bob (whose clock is wrong) owns api, carol owns blog, taas (token_reuse
 * same-address) owns t1 and t2, plain (no reuse) owns p1. The sessions "alice-session" and
 * "carol-session" exist for alice/web and carol/blog. */
static const event_t events[] = {
    /* alice registers from her home address 10.0.0.1: it becomes hers. */
    {900, "lookup", "alice", "10.0.0.1", "web", 0, "ok:all"},
    {900, "commit", "alice", "10.0.0.1", "web", 30, "ok"},
    /* A stranger guesses alice's codes from 10.0.0.9: three free failures, then 1, 2, 4, 8, 8 s. */
    {1000, "lookup", "alice", "10.0.0.9", "web", 0, "ok:all"},
    {1000, "lookup", "alice", "10.0.0.9", "web", 0, "ok:all"},
    {1000, "lookup", "alice", "10.0.0.9", "web", 0, "ok:all"},
    {1000, "lookup", "alice", "10.0.0.9", "web", 0, "ok:all"}, /* the 4th failure: wait 1 s */
    {1000, "lookup", "alice", "10.0.0.9", "web", 0, "limited:1"},
    {1001, "lookup", "alice", "10.0.0.9", "web", 0, "ok:all"}, /* 5th: wait 2 s */
    {1002, "lookup", "alice", "10.0.0.9", "web", 0, "limited:1"},
    {1003, "lookup", "alice", "10.0.0.9", "web", 0, "ok:all"},    /* 6th: 4 s */
    {1007, "lookup", "alice", "10.0.0.9", "web", 0, "ok:all"},    /* 7th: 8 s */
    {1015, "lookup", "alice", "10.0.0.9", "web", 0, "ok:all"},    /* 8th: 8 s, the ceiling */
    {1016, "lookup", "alice", "10.0.0.9", "web", 0, "limited:7"}, /* waiting is not counted ... */
    {1022, "lookup", "alice", "10.0.0.9", "web", 0, "limited:1"}, /* ... so the wait does not grow */
    /* The ID is held against every address alice never authenticated from ... */
    {1016, "lookup", "alice", "10.0.0.10", "web", 0, "limited:7"},
    {1016, "lookup", "alice", "10.0.0.2", "web", 0, "limited:7"},
    /* ... but not at home: alice registers while the stranger guesses. */
    {1016, "lookup", "alice", "10.0.0.1", "web", 0, "ok:pair"},
    {1016, "commit", "alice", "10.0.0.1", "web", 33, "ok"},
    /* bob, a neighbour at 10.0.0.1 with a wrong clock, fails until his own limiter holds him ... */
    {1020, "lookup", "bob", "10.0.0.1", "api", 0, "ok:all"},
    {1020, "lookup", "bob", "10.0.0.1", "api", 0, "ok:all"},
    {1020, "lookup", "bob", "10.0.0.1", "api", 0, "ok:all"},
    {1020, "lookup", "bob", "10.0.0.1", "api", 0, "ok:all"},
    {1020, "lookup", "bob", "10.0.0.1", "api", 0, "limited:1"},
    /* ... and holds nobody else there: alice, and carol who registers from there the first time. */
    {1020, "lookup", "alice", "10.0.0.1", "web", 0, "ok:pair"},
    {1020, "commit", "alice", "10.0.0.1", "web", 34, "ok"},
    {1020, "lookup", "carol", "10.0.0.1", "blog", 0, "ok:all"},
    {1020, "commit", "carol", "10.0.0.1", "blog", 34, "ok"},
    /* A session passes whatever the limiters say, from anywhere, and makes the address the pod's. */
    {1020, "session", "alice", "10.0.0.10", "web", 0, "ok:alice"},
    {1020, "lookup", "alice", "10.0.0.10", "web", 0, "ok:pair"},
    /* One address spraying IDs (unknown ones count as known ones do): its 4th distinct ID makes it
     * wait for every ID that is not at home there. */
    {2000, "lookup", "x1", "10.0.0.20", "web", 0, "nopod"},
    {2000, "lookup", "x2", "10.0.0.20", "web", 0, "nopod"},
    {2000, "lookup", "x3", "10.0.0.20", "web", 0, "nopod"},
    {2000, "lookup", "x4", "10.0.0.20", "web", 0, "nopod"},
    {2000, "lookup", "x5", "10.0.0.20", "web", 0, "limited:1"},
    {2000, "lookup", "carol", "10.0.0.20", "blog", 0, "limited:1"},
    {2001, "lookup", "x5", "10.0.0.20", "web", 0, "nopod"},
    {2001, "lookup", "x6", "10.0.0.20", "web", 0, "limited:2"},
    /* An unknown ID is limited as a known one: the same answers at the same counts. */
    {3000, "lookup", "nobody", "10.0.0.30", "web", 0, "nopod"},
    {3000, "lookup", "nobody", "10.0.0.30", "web", 0, "nopod"},
    {3000, "lookup", "nobody", "10.0.0.30", "web", 0, "nopod"},
    {3000, "lookup", "nobody", "10.0.0.30", "web", 0, "nopod"},
    {3000, "lookup", "nobody", "10.0.0.30", "web", 0, "limited:1"},
    {3000, "lookup", "carol", "10.0.0.31", "blog", 0, "ok:all"},
    {3000, "lookup", "carol", "10.0.0.31", "blog", 0, "ok:all"},
    {3000, "lookup", "carol", "10.0.0.31", "blog", 0, "ok:all"},
    {3000, "lookup", "carol", "10.0.0.31", "blog", 0, "ok:all"},
    {3000, "lookup", "carol", "10.0.0.31", "blog", 0, "limited:1"},
    /* RFC 6238 5.2 by default: a code once. */
    {4000, "lookup", "plain", "10.0.0.5", "p1", 0, "ok:all"},
    {4000, "commit", "plain", "10.0.0.5", "p1", 133, "ok"},
    {4000, "lookup", "plain", "10.0.0.5", "p1", 0, "ok:pair"},
    {4000, "commit", "plain", "10.0.0.5", "p1", 133, "replay"},
    /* A replay is a failure of that pod at that address: the 4th makes it wait. */
    {4000, "lookup", "plain", "10.0.0.5", "p1", 0, "ok:pair"},
    {4000, "commit", "plain", "10.0.0.5", "p1", 133, "replay"},
    {4000, "lookup", "plain", "10.0.0.5", "p1", 0, "ok:pair"},
    {4000, "commit", "plain", "10.0.0.5", "p1", 133, "replay"},
    {4000, "lookup", "plain", "10.0.0.5", "p1", 0, "ok:pair"},
    {4000, "commit", "plain", "10.0.0.5", "p1", 133, "replay"},
    {4000, "lookup", "plain", "10.0.0.5", "p1", 0, "limited:1"},
    /* token_reuse same-address: the same code again, same label, same address: not a failure. */
    {5000, "lookup", "taas", "10.0.0.6", "t1", 0, "ok:all"},
    {5000, "commit", "taas", "10.0.0.6", "t1", 166, "ok"},
    {5000, "lookup", "taas", "10.0.0.6", "t1", 0, "ok:pair"},
    {5000, "commit", "taas", "10.0.0.6", "t1", 166, "reused"},
    {5000, "lookup", "taas", "10.0.0.6", "t1", 0, "ok:pair"},
    {5000, "commit", "taas", "10.0.0.6", "t1", 166, "reused"},
    /* ... but not from another address, nor for another label. */
    {5000, "lookup", "taas", "10.0.0.7", "t1", 0, "ok:all"},
    {5000, "commit", "taas", "10.0.0.7", "t1", 166, "replay"},
    {5000, "lookup", "taas", "10.0.0.6", "t2", 0, "ok:pair"},
    {5000, "commit", "taas", "10.0.0.6", "t2", 166, "replay"},
    /* A new step starts afresh. */
    {5030, "lookup", "taas", "10.0.0.6", "t2", 0, "ok:pair"},
    {5030, "commit", "taas", "10.0.0.6", "t2", 167, "ok"},
};

static void seed(void)
{
    static const char *pods[][3] = {{"alice", "web", "none"},       {"bob", "api", "none"},         {"carol", "blog", "none"},
                                    {"taas", "t1", "same-address"}, {"taas", "t2", "same-address"}, {"plain", "p1", "none"}};
    for (size_t i = 0; i < sizeof(pods) / sizeof(pods[0]); i++) {
        redis("HSET p2m:pod:%s secret GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ disabled 0 epoch 0 token_reuse %s", pods[i][0], pods[i][2]);
        redis("HSET p2m:labels %s %s", pods[i][1], pods[i][0]);
    }
    redis("HSET p2m:labels:protocol p1 tcp");
    redis("HSET p2m:session:alice-session pod alice label web epoch 0");
}

int main(void)
{
    redis_server_t srv;
    if (!CHECK(redis_server_start(&srv, "limiter", &rc) == 0)) {
        printf("redis-server did not start (is it installed?)\n");
        return check_done("limiter");
    }
    seed();

    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        const event_t *e = &events[i];
        p2m_store_cmd_t cmd;
        int built;
        CHECK_CTX("event %zu: t=%lld %s %s from %s for %s", i, e->now, e->op, e->id, e->addr, e->label);
        if (strcmp(e->op, "lookup") == 0)
            built = p2m_store_cmd_auth_lookup(&cmd, e->id, e->label, e->addr, e->now, &lim);
        else if (strcmp(e->op, "commit") == 0)
            built = p2m_store_cmd_register_commit(&cmd, e->id, e->label, e->addr, e->now, e->step, strcmp(last_struck, "all") == 0,
                                                  "", 600, &lim);
        else {
            char digest[64];
            snprintf(digest, sizeof(digest), "%s-session", e->id);
            built = p2m_store_cmd_session_lookup(&cmd, digest, e->label, e->addr, e->now);
        }
        if (!CHECK_EQ_INT(built, 0))
            continue;
        redisReply *r = run(&cmd);
        char got[256];
        render(r, e->op, got, sizeof(got));
        freeReplyObject(r);
        CHECK_EQ_STR(got, e->want);
    }

    /* What the table leaves behind: a matched code took its strike back; the stranger's limiters
     * live on for `window` after their wait; the label's default protocol came with the lookup. */
    CHECK_CTX("state after the table");
    redisReply *r = redisCommand(rc, "EXISTS p2m:limit:pair:alice:10.0.0.1");
    CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
    freeReplyObject(r);
    r = redisCommand(rc, "TTL p2m:limit:pair:alice:10.0.0.9");
    CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer > 100 && r->integer <= 108);
    freeReplyObject(r);
    r = redisCommand(rc, "ZSCORE p2m:known:alice 10.0.0.10");
    CHECK(r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, "1020") == 0);
    freeReplyObject(r);
    r = redisCommand(rc, "HGET p2m:otp:taas:166 uses");
    CHECK(r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, "3") == 0);
    freeReplyObject(r);
    p2m_store_cmd_t cmd;
    if (CHECK_EQ_INT(p2m_store_cmd_auth_lookup(&cmd, "plain", "p1", "10.0.0.99", 9000, &lim), 0)) {
        r = run(&cmd);
        CHECK(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 9);
        if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 9)
            CHECK_EQ_STR(r->element[7]->str, "tcp");
        freeReplyObject(r);
    }
    /* 32 uses of one code in all, then a replay. */
    CHECK_CTX("token reuse up to 32");
    int reused = 0;
    for (int i = 0; i < 40; i++) {
        p2m_store_cmd_auth_lookup(&cmd, "taas", "t1", "10.0.0.6", 6000, &lim);
        freeReplyObject(run(&cmd));
        p2m_store_cmd_register_commit(&cmd, "taas", "t1", "10.0.0.6", 6000, 200, 0, "", 600, &lim);
        r = run(&cmd);
        char got[64];
        render(r, "commit", got, sizeof(got));
        freeReplyObject(r);
        if (i == 0)
            CHECK_EQ_STR(got, "ok");
        else if (strcmp(got, "reused") == 0)
            reused++;
        else {
            CHECK_EQ_STR(got, "replay");
            break;
        }
    }
    CHECK_EQ_INT(reused, 31);

    /* A label several pods serve (pipe2me-admin label share): a sharer passes the ownership check
     * of a registration and of a session as the owner does; another pod, and a sharer no more, not. */
    CHECK_CTX("sharers of a label");
    redis("HSET p2m:pod:dave secret GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ disabled 0 epoch 0");
    redis("SADD p2m:label:web:sharers dave");
    redis("HSET p2m:session:dave-session pod dave label web epoch 0");
    redis("HSET p2m:session:bob-session pod bob label web epoch 0");
    static const struct {
        const char *op, *id, *label;
        uint64_t step;
        const char *want;
    } shares[] = {
        {"commit", "dave", "web", 300, "ok"},       {"commit", "bob", "web", 300, "notowner"},
        {"commit", "dave", "api", 301, "notowner"}, {"commit", "alice", "web", 300, "ok"},
        {"session", "dave", "web", 0, "ok:dave"},   {"session", "bob", "web", 0, "notowner"},
        {"unshare", "dave", "web", 0, ""},          {"commit", "dave", "web", 302, "notowner"},
        {"session", "dave", "web", 0, "notowner"},  {"session", "alice", "web", 0, "ok:alice"},
    };
    for (size_t i = 0; i < sizeof(shares) / sizeof(shares[0]); i++) {
        char got[64], digest[64];
        CHECK_CTX("sharers, row %zu: %s %s for %s", i, shares[i].op, shares[i].id, shares[i].label);
        if (strcmp(shares[i].op, "unshare") == 0) {
            redis("SREM p2m:label:%s:sharers %s", shares[i].label, shares[i].id);
            continue;
        }
        if (strcmp(shares[i].op, "commit") == 0) {
            p2m_store_cmd_register_commit(&cmd, shares[i].id, shares[i].label, "10.0.0.50", 7000, shares[i].step, 0, "", 600, &lim);
        } else {
            snprintf(digest, sizeof(digest), "%s-session", shares[i].id);
            p2m_store_cmd_session_lookup(&cmd, digest, shares[i].label, "10.0.0.50", 7000);
        }
        r = run(&cmd);
        render(r, shares[i].op, got, sizeof(got));
        freeReplyObject(r);
        CHECK_EQ_STR(got, shares[i].want);
    }

    redisFree(rc);
    redis_server_stop(&srv);
    return check_done("limiter");
}
