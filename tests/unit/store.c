/* lib/store.c, the admin tool's side of the Redis schema, against a real redis-server
 * (tests/unit/redis_server.h): the schema check, pod add/rm/show/set, label add/rm/set, lease
 * list/rm, the reads of pipe2me-admin check (a raw connection, the schema version, the relays and
 * their heartbeats, TIME), setup tokens (add, list, rm, and redeem, 20 processes at once on a
 * 1-use token), and hostile input. Every refusal must leave Redis as it was, so each refused row
 * compares a dump of the p2m:* keyspace before and after. */
#include "check.h"
#include "p2m/err.h"
#include "p2m/store.h"
#include "p2m/store_cmd.h"
#include "redis_server.h"

#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static redisContext *rc;  /* the test's own connection, to look behind the store's back */
static redisContext *sub; /* subscribed to p2m:events; NULL after a read timed out */
static const char *sock_path;
static char got[4096];

#define R(...) redis_fmt(rc, got, sizeof(got), __VA_ARGS__)

/* Every p2m:* key with its type and contents, sorted: what "nothing changed" compares. */
static const char dump_lua[] =
    "local out = {}\n"
    "for _, k in ipairs(redis.call('KEYS', 'p2m:*')) do\n"
    "  local t = redis.call('TYPE', k).ok\n"
    "  local v\n"
    "  if t == 'string' then v = redis.call('GET', k)\n"
    "  elseif t == 'hash' then local h = redis.call('HGETALL', k) table.sort(h) v = table.concat(h, ',')\n"
    "  elseif t == 'set' then local m = redis.call('SMEMBERS', k) table.sort(m) v = table.concat(m, ',')\n"
    "  else v = '?' end\n"
    "  out[#out + 1] = k .. '=' .. t .. ':' .. v\n"
    "end\n"
    "table.sort(out)\n"
    "return table.concat(out, '\\n')\n";

static char *dump(void)
{
    redisReply *r = redisCommand(rc, "EVAL %s 0", dump_lua);
    char *s = strdup(r != NULL && r->type == REDIS_REPLY_STRING ? r->str : "dump failed");
    freeReplyObject(r);
    if (s == NULL)
        abort();
    return s;
}

static void subscribe(void)
{
    sub = redisConnectUnix(sock_path);
    if (sub == NULL || sub->err != 0)
        abort();
    redisSetTimeout(sub, (struct timeval){2, 0});
    freeReplyObject(redisCommand(sub, "SUBSCRIBE p2m:events"));
}

/* The next message on p2m:events within 2 s, "" when none came. */
static const char *event(void)
{
    static char msg[256];
    redisReply *r = NULL;
    msg[0] = '\0';
    if (sub == NULL)
        subscribe();
    if (redisGetReply(sub, (void **)&r) == REDIS_OK && r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[2]->type == REDIS_REPLY_STRING)
        snprintf(msg, sizeof(msg), "%s", r->element[2]->str);
    freeReplyObject(r);
    if (sub->err != 0) { /* a timeout leaves the context unusable: reconnect and subscribe again */
        redisFree(sub);
        sub = NULL;
    }
    return msg;
}

static const char (*labels(const char *a, const char *b))[P2M_LABEL_MAX + 1]
{
    static char l[2][P2M_LABEL_MAX + 1];
    snprintf(l[0], sizeof(l[0]), "%s", a);
    snprintf(l[1], sizeof(l[1]), "%s", b != NULL ? b : "");
    return (const char(*)[P2M_LABEL_MAX + 1]) l;
}

/* Longer than any key buffer of store.c: refused. (The ID's syntax and P2M_ID_MAX are the admin
 * tool's checks, p2m_label.h; the store only bounds what it spells into a key.) */
static char LONG_ID[201];

static const char SECRET[] = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
static const char SECRET2[] = "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U";

static void lease(unsigned port, const char *kind, const char *label, const char *pod, const char *addr, int ttl)
{
    R("HSET p2m:lease:%u kind %s label %s pod %s addr %s created 1000 relay r1 state bound", port, kind, label, pod, addr);
    if (ttl > 0)
        R("EXPIRE p2m:lease:%u %d", port, ttl);
}

static void test_token_reuse_names(void)
{
    static const struct {
        const char *in;
        int rc, out;
    } rows[] = {
        {"none", 0, P2M_TOKEN_REUSE_NONE},
        {"same-address", 0, P2M_TOKEN_REUSE_SAME_ADDRESS},
        {"", -1, 0},
        {"None", -1, 0},
        {"same_address", -1, 0},
        {"same-address ", -1, 0},
        {"same", -1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("token_reuse %s", check_str(rows[i].in));
        int out = -7;
        if (CHECK_EQ_INT(p2m_token_reuse_parse(rows[i].in, &out), rows[i].rc) && rows[i].rc == 0)
            CHECK_EQ_INT(out, rows[i].out);
    }
    CHECK_EQ_STR(p2m_token_reuse_name(P2M_TOKEN_REUSE_SAME_ADDRESS), "same-address");
    CHECK_EQ_STR(p2m_token_reuse_name(P2M_TOKEN_REUSE_NONE), "none");
    CHECK_EQ_STR(p2m_token_reuse_name(42), "none");
}

static void test_keys(void)
{
    char k[32];
    CHECK_CTX("key names");
    CHECK_EQ_INT(p2m_store_key_pod("web1", k, sizeof(k)), 12);
    CHECK_EQ_STR(k, "p2m:pod:web1");
    CHECK_EQ_INT(p2m_store_key_pod("web1", k, 12), -1); /* no room for the NUL */
    CHECK_EQ_INT(p2m_store_key_lease(65535, k, sizeof(k)), 15);
    CHECK_EQ_STR(k, "p2m:lease:65535");
    CHECK_EQ_INT(p2m_store_key_lease(1, k, 11), -1); /* "p2m:lease:1" and its NUL need 12 */
}

static p2m_store_t *connect_store(const char *addr)
{
    p2m_redis_addr_t a;
    char err[P2M_ERR_LEN] = "";
    if (!CHECK_RC(p2m_redis_addr_parse(addr, &a, err), 0, err))
        return NULL;
    p2m_store_t *st = p2m_store_connect(&a, 2000, err);
    CHECK_MSG(st != NULL, "connect to %s: %s", addr, err);
    return st;
}

/* What pipe2me-admin check reads, on an empty database: nothing may be written, not even the
 * schema version p2m_store_connect would. */
static void test_check_reads(const char *addr)
{
    char err[P2M_ERR_LEN] = "", have[8];
    p2m_redis_addr_t a;
    p2m_relay_info_t *relays = NULL;
    size_t n = 99;
    long long usec = 0;

    CHECK_CTX("connect_raw: no schema written");
    p2m_redis_addr_parse(addr, &a, err);
    p2m_store_t *st = p2m_store_connect_raw(&a, 2000, err);
    if (!CHECK_MSG(st != NULL, "connect_raw to %s: %s", addr, err))
        return;
    CHECK_EQ_INT(p2m_store_schema_get(st, have, sizeof(have), err), 0);
    CHECK_EQ_STR(have, "");
    CHECK_EQ_STR(R("EXISTS p2m:schema"), "0");

    CHECK_CTX("schema_get: any version, cut short; not a string");
    R("SET p2m:schema 2");
    if (CHECK_EQ_INT(p2m_store_schema_get(st, have, sizeof(have), err), 1))
        CHECK_EQ_STR(have, "2");
    R("SET p2m:schema 1234567890");
    if (CHECK_EQ_INT(p2m_store_schema_get(st, have, sizeof(have), err), 1))
        CHECK_EQ_STR(have, "1234567");
    R("DEL p2m:schema");
    R("HSET p2m:schema v 1");
    check_refusal(p2m_store_schema_get(st, have, sizeof(have), err), err, "WRONGTYPE");
    R("DEL p2m:schema");

    CHECK_CTX("relay_list: none");
    if (CHECK_RC(p2m_store_relay_list(st, &relays, &n, err), 0, err))
        CHECK_EQ_INT(n, 0);
    free(relays);
    relays = NULL;

    CHECK_CTX("relay_list: live, without TTL, gone, a hostile name, sorted");
    static char longname[201];
    memset(longname, 'n', sizeof(longname) - 1);
    R("SADD p2m:relays r1 r0 ghost %s", longname);
    freeReplyObject(redisCommand(rc, "SADD p2m:relays %b", "bin\n\xff", (size_t)5)); /* R() checks printf formats: no %b */
    R("HSET p2m:relay:r1 address 192.0.2.1 ports 100-200 started 1700000000");
    R("EXPIRE p2m:relay:r1 15");
    R("HSET p2m:relay:r0 ports junk");
    char *before = dump();
    if (CHECK_RC(p2m_store_relay_list(st, &relays, &n, err), 0, err) && CHECK_EQ_INT(n, 5)) {
        CHECK_EQ_STR(relays[0].name, "bin\n\xff");
        CHECK_EQ_INT(relays[0].live, 0);
        CHECK_EQ_STR(relays[1].name, "ghost");
        CHECK_EQ_INT(relays[1].live, 0);
        CHECK_EQ_INT(relays[1].ttl_ms, 0);
        CHECK_EQ_STR(relays[1].ports, "");
        CHECK_EQ_INT(strlen(relays[2].name), P2M_LABEL_MAX); /* cut short */
        CHECK_EQ_STR(relays[3].name, "r0");
        CHECK_EQ_INT(relays[3].live, 1);
        CHECK_EQ_INT(relays[3].ttl_ms, -1);
        CHECK_EQ_STR(relays[3].ports, "junk");
        CHECK_EQ_STR(relays[3].address, "");
        CHECK_EQ_STR(relays[4].name, "r1");
        CHECK_EQ_INT(relays[4].live, 1);
        CHECK_MSG(relays[4].ttl_ms > 0 && relays[4].ttl_ms <= 15000, "ttl_ms %lld, want 1-15000", relays[4].ttl_ms);
        CHECK_EQ_STR(relays[4].address, "192.0.2.1");
        CHECK_EQ_STR(relays[4].ports, "100-200");
        CHECK_EQ_STR(relays[4].started, "1700000000");
    }
    free(relays);
    relays = NULL;
    char *after = dump();
    CHECK_EQ_STR(after, before); /* read only */
    free(before);
    free(after);

    CHECK_CTX("relay_drain: an unknown or dead relay refused unless forced; the mark listed");
    int changed = -1;
    before = dump();
    check_refusal(p2m_store_relay_drain(st, "nosuch", 1, 0, &changed, err), err, "unknown relay nosuch");
    check_refusal(p2m_store_relay_drain(st, "ghost", 1, 0, &changed, err), err, "relay ghost is not live");
    check_refusal(p2m_store_relay_drain(st, "nosuch", 0, 0, &changed, err), err, "unknown relay nosuch");
    after = dump();
    CHECK_EQ_STR(after, before); /* refused: nothing changed */
    free(before);
    free(after);
    if (CHECK_RC(p2m_store_relay_drain(st, "r1", 1, 0, &changed, err), 0, err))
        CHECK_EQ_INT(changed, 1);
    if (CHECK_RC(p2m_store_relay_drain(st, "r1", 1, 0, &changed, err), 0, err))
        CHECK_EQ_INT(changed, 0);
    if (CHECK_RC(p2m_store_relay_drain(st, "gone", 1, 1, &changed, err), 0, err))
        CHECK_EQ_INT(changed, 1);
    R("HSET p2m:relay:r1 leases 3 idle 0 tunnels 12 waiting x draining 1");
    if (CHECK_RC(p2m_store_relay_list(st, &relays, &n, err), 0, err) && CHECK_EQ_INT(n, 6)) {
        CHECK_EQ_STR(relays[2].name, "gone"); /* marked, never in p2m:relays: listed, not live */
        CHECK_EQ_INT(relays[2].live, 0);
        CHECK_EQ_INT(relays[2].draining, 1);
        CHECK_EQ_INT(relays[2].listed, 0);
        CHECK_EQ_INT(relays[1].listed, 1);
        CHECK_EQ_INT(relays[2].leases, -1);
        CHECK_EQ_STR(relays[4].name, "r0");
        CHECK_EQ_INT(relays[4].draining, 0);
        CHECK_EQ_INT(relays[4].idle, -1);
        CHECK_EQ_STR(relays[5].name, "r1");
        CHECK_EQ_INT(relays[5].draining, 1);
        CHECK_EQ_INT(relays[5].drain_seen, 1);
        CHECK_EQ_INT(relays[5].leases, 3);
        CHECK_EQ_INT(relays[5].idle, 0);
        CHECK_EQ_INT(relays[5].tunnels, 12);
        CHECK_EQ_INT(relays[5].waiting, -1); /* not a number */
    }
    free(relays);
    relays = NULL;
    if (CHECK_RC(p2m_store_relay_drain(st, "r1", 0, 0, &changed, err), 0, err))
        CHECK_EQ_INT(changed, 1);
    if (CHECK_RC(p2m_store_relay_drain(st, "gone", 0, 1, &changed, err), 0, err))
        CHECK_EQ_INT(changed, 1);
    CHECK_EQ_STR(R("EXISTS p2m:draining"), "0");

    CHECK_CTX("relay_list: a heartbeat key of another type");
    R("SET p2m:relay:ghost x");
    check_refusal(p2m_store_relay_list(st, &relays, &n, err), err, "WRONGTYPE");
    free(relays);
    R("DEL p2m:relays p2m:relay:r1 p2m:relay:r0 p2m:relay:ghost");

    CHECK_CTX("registrar_list: none");
    p2m_registrar_info_t *regs = NULL;
    if (CHECK_RC(p2m_store_registrar_list(st, &regs, &n, err), 0, err))
        CHECK_EQ_INT(n, 0);
    free(regs);
    regs = NULL;

    CHECK_CTX("registrar_list: live, drained, gone (pruned), gone but drained (kept), sorted");
    R("SADD p2m:registrars rb ra gone kept");
    R("HSET p2m:registrar:ra url https://a.example started 1700000000");
    R("EXPIRE p2m:registrar:ra 15");
    R("HSET p2m:registrar:rb url https://b.example started 1700000001 pods_to https://c.example draining_to https://a.example");
    R("SET p2m:registrar:rb:drain https://a.example");
    R("SET p2m:registrar:kept:drain https://a.example");
    if (CHECK_RC(p2m_store_registrar_list(st, &regs, &n, err), 0, err) && CHECK_EQ_INT(n, 3)) {
        CHECK_EQ_STR(regs[0].name, "kept");
        CHECK_EQ_INT(regs[0].live, 0);
        CHECK_EQ_STR(regs[0].drain, "https://a.example");
        CHECK_EQ_STR(regs[0].url, "");
        CHECK_EQ_STR(regs[1].name, "ra");
        CHECK_EQ_INT(regs[1].live, 1);
        CHECK_MSG(regs[1].ttl_ms > 0 && regs[1].ttl_ms <= 15000, "ttl_ms %lld, want 1-15000", regs[1].ttl_ms);
        CHECK_EQ_STR(regs[1].url, "https://a.example");
        CHECK_EQ_STR(regs[1].started, "1700000000");
        CHECK_EQ_STR(regs[1].drain, "");
        CHECK_EQ_STR(regs[1].pods_to, "");
        CHECK_EQ_STR(regs[2].name, "rb");
        CHECK_EQ_STR(regs[2].pods_to, "https://c.example");
        CHECK_EQ_STR(regs[2].draining_to, "https://a.example");
        CHECK_EQ_STR(regs[2].drain, "https://a.example");
    }
    free(regs);
    regs = NULL;
    CHECK_EQ_STR(R("SISMEMBER p2m:registrars gone"), "0");

    CHECK_CTX("registrar drain and undrain");
    if (CHECK_RC(p2m_store_registrar_drain(st, "ra", "https://b.example", err), 0, err))
        CHECK_EQ_STR(R("GET p2m:registrar:ra:drain"), "https://b.example");
    check_refusal(p2m_store_registrar_drain(st, "nosuch", "https://b.example", err), err, "no live registrar nosuch");
    CHECK_EQ_STR(R("EXISTS p2m:registrar:nosuch:drain"), "0");
    int was = -1;
    if (CHECK_RC(p2m_store_registrar_undrain(st, "ra", &was, err), 0, err))
        CHECK_EQ_INT(was, 1);
    CHECK_EQ_STR(R("EXISTS p2m:registrar:ra:drain"), "0");
    if (CHECK_RC(p2m_store_registrar_undrain(st, "ra", &was, err), 0, err))
        CHECK_EQ_INT(was, 0);
    R("DEL p2m:registrars p2m:registrar:ra p2m:registrar:rb p2m:registrar:rb:drain p2m:registrar:kept:drain");

    CHECK_CTX("time");
    long long now = (long long)time(NULL) * 1000000;
    if (CHECK_RC(p2m_store_time(st, &usec, err), 0, err))
        CHECK_MSG(usec > now - 5000000 && usec < now + 5000000, "TIME %lld, this host %lld", usec, now);
    CHECK_EQ_STR(R("EXISTS p2m:schema"), "0");
    p2m_store_free(st);
}

static void test_schema(const char *addr)
{
    char err[P2M_ERR_LEN] = "";
    p2m_redis_addr_t a;
    CHECK_CTX("schema");
    p2m_store_free(NULL);
    p2m_store_t *st = connect_store(addr);
    p2m_store_free(st);
    CHECK_EQ_STR(R("GET p2m:schema"), "1"); /* written on first connect */
    st = connect_store(addr);               /* and accepted on the next */
    p2m_store_free(st);
    R("SET p2m:schema 2");
    p2m_redis_addr_parse(addr, &a, err);
    st = p2m_store_connect(&a, 2000, err);
    if (CHECK(st == NULL))
        check_refusal(-1, err, "schema version 2");
    p2m_store_free(st);
    R("SET p2m:schema 1");

    CHECK_CTX("schema: no server");
    p2m_redis_addr_parse("unix:/nonexistent/redis.sock", &a, err);
    st = p2m_store_connect(&a, 500, err);
    if (CHECK(st == NULL))
        CHECK_MSG(err[0] != '\0', "no reason given");
    p2m_store_free(st);
}

static void test_pods(p2m_store_t *st)
{
    char err[P2M_ERR_LEN];
    char *before;
    p2m_pod_t *pod = NULL;

    CHECK_CTX("pod add");
    CHECK_RC(p2m_store_pod_add(st, "alice", SECRET, labels("web", "blog"), 2, P2M_TOKEN_REUSE_NONE, 6, 1000, err), 0, err);
    CHECK_EQ_STR(event(), "pod alice");
    CHECK_EQ_STR(R("HMGET p2m:pod:alice secret created disabled epoch token_reuse digits"),
                 "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ|1000|0|0|none|6");
    CHECK_EQ_STR(R("HMGET p2m:labels web blog"), "alice|alice");
    R("HSET p2m:labels:protocol gone tcp"); /* left by an older run: a new owner starts afresh */
    CHECK_RC(p2m_store_pod_add(st, "bob", SECRET2, labels("gone", NULL), 1, P2M_TOKEN_REUSE_SAME_ADDRESS, 8, 1001, err), 0, err);
    CHECK_EQ_STR(event(), "pod bob");
    CHECK_EQ_STR(R("HEXISTS p2m:labels:protocol gone"), "0");
    CHECK_RC(p2m_store_pod_add(st, "carol", SECRET, NULL, 0, P2M_TOKEN_REUSE_NONE, 6, 1002, err), 0, err);
    event();

    /* Refused, with nothing changed. */
    static const struct {
        const char *what, *id, *l1, *l2;
        int reuse;
        unsigned digits;
        const char *want;
    } refused[] = {
        {"an existing pod", "alice", "new", NULL, 0, 6, "pod alice exists already"},
        {"a label of another pod", "dave", "new", "web", 0, 6, "label web belongs to pod alice"},
        {"token_reuse out of range", "dave", "new", NULL, 2, 6, "token_reuse"},
        {"token_reuse negative", "dave", "new", NULL, -1, 6, "token_reuse"},
        {"digits 7", "dave", "new", NULL, 0, 7, "digits: expected 6 or 8"},
        {"digits 0", "dave", "new", NULL, 0, 0, "digits: expected 6 or 8"},
        {"an overlong ID", LONG_ID, "new", NULL, 0, 6, "pod ID too long"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        CHECK_CTX("pod add refuses %s", refused[i].what);
        before = dump();
        int ret = p2m_store_pod_add(st, refused[i].id, SECRET, labels(refused[i].l1, refused[i].l2), refused[i].l2 ? 2 : 1,
                                    refused[i].reuse, refused[i].digits, 1003, err);
        check_refusal(ret, err, refused[i].want);
        char *after = dump();
        CHECK_EQ_STR(after, before);
        free(after);
        free(before);
    }
    CHECK_CTX("pod add refuses 61 labels");
    static char many[61][P2M_LABEL_MAX + 1];
    for (int i = 0; i < 61; i++)
        snprintf(many[i], sizeof(many[i]), "m%d", i);
    check_refusal(p2m_store_pod_add(st, "dave", SECRET, (const char(*)[P2M_LABEL_MAX + 1]) many, 61, 0, 6, 1003, err), err,
                  "too many labels");
    CHECK_EQ_STR(R("EXISTS p2m:pod:dave"), "0");

    /* Hostile bytes are data: a key or script never reads them as syntax. */
    CHECK_CTX("pod add with hostile IDs and labels");
    static const char *hostile[] = {"x y", "a\r\nFLUSHALL", "'..redis.call('FLUSHALL')..'", "p2m:pods", "*", "%s%n"};
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        char label[P2M_LABEL_MAX + 1];
        snprintf(label, sizeof(label), "h%zu%s", i, hostile[i]);
        CHECK_CTX("hostile %s", check_str(hostile[i]));
        CHECK_RC(p2m_store_pod_add(st, hostile[i], SECRET, labels(label, NULL), 1, 0, 6, 1004, err), 0, err);
        event();
        CHECK_EQ_STR(R("HGET p2m:labels %s", label), hostile[i]);
        if (CHECK_RC(p2m_store_pod_get(st, hostile[i], &pod, err), 0, err)) {
            CHECK_EQ_STR(pod->id, hostile[i]);
            CHECK_EQ_INT(pod->nlabels, 1);
            p2m_store_pod_free(pod);
        }
        CHECK_RC(p2m_store_pod_rm(st, hostile[i], err), 0, err);
        event();
        CHECK_EQ_STR(R("HEXISTS p2m:labels %s", label), "0");
    }
    CHECK_EQ_STR(R("HGET p2m:labels web"), "alice"); /* nothing was flushed */
    CHECK_EQ_STR(R("TYPE p2m:pods"), "set");

    CHECK_CTX("pod get");
    if (CHECK_RC(p2m_store_pod_get(st, "alice", &pod, err), 0, err)) {
        CHECK_EQ_STR(pod->secret, SECRET);
        CHECK_EQ_INT(pod->created, 1000);
        CHECK_EQ_INT(pod->disabled, 0);
        CHECK_EQ_INT(pod->epoch, 0);
        CHECK_EQ_INT(pod->token_reuse, P2M_TOKEN_REUSE_NONE);
        CHECK_EQ_INT(pod->digits, 6);
        if (CHECK_EQ_INT(pod->nlabels, 2)) { /* sorted */
            CHECK_EQ_STR(pod->labels[0], "blog");
            CHECK_EQ_STR(pod->labels[1], "web");
        }
        p2m_store_pod_free(pod);
    }
    if (CHECK_RC(p2m_store_pod_get(st, "bob", &pod, err), 0, err)) {
        CHECK_EQ_INT(pod->token_reuse, P2M_TOKEN_REUSE_SAME_ADDRESS);
        CHECK_EQ_INT(pod->digits, 8);
        p2m_store_pod_free(pod);
    }
    /* A pod written before token_reuse and digits existed reads as the defaults. */
    R("HSET p2m:pod:old secret %s created 5 disabled 1 epoch 3", SECRET);
    R("SADD p2m:pods old");
    if (CHECK_RC(p2m_store_pod_get(st, "old", &pod, err), 0, err)) {
        CHECK_EQ_INT(pod->token_reuse, P2M_TOKEN_REUSE_NONE);
        CHECK_EQ_INT(pod->digits, 6);
        CHECK_EQ_INT(pod->disabled, 1);
        CHECK_EQ_INT(pod->epoch, 3);
        CHECK_EQ_INT(pod->nlabels, 0);
        p2m_store_pod_free(pod);
    }
    p2m_store_pod_free(NULL);
    pod = NULL;
    check_refusal(p2m_store_pod_get(st, "nobody", &pod, err), err, "unknown pod nobody");
    CHECK(pod == NULL);
    check_refusal(p2m_store_pod_get(st, LONG_ID, &pod, err), err, "pod ID too long");

    CHECK_CTX("pod list");
    char(*ids)[P2M_ID_MAX + 1] = NULL;
    size_t nids = 0;
    if (CHECK_RC(p2m_store_pod_list(st, &ids, &nids, err), 0, err) && CHECK_EQ_INT(nids, 4)) {
        CHECK_EQ_STR(ids[0], "alice");
        CHECK_EQ_STR(ids[1], "bob");
        CHECK_EQ_STR(ids[2], "carol");
        CHECK_EQ_STR(ids[3], "old");
    }
    free(ids);

    CHECK_CTX("pod set secret");
    CHECK_RC(p2m_store_pod_set_secret(st, "alice", SECRET2, err), 0, err);
    CHECK_EQ_STR(event(), "pod alice");
    CHECK_EQ_STR(R("HMGET p2m:pod:alice secret epoch"), "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U|1");
    check_refusal(p2m_store_pod_set_secret(st, "nobody", SECRET2, err), err, "unknown pod nobody");
    CHECK_EQ_STR(R("EXISTS p2m:pod:nobody"), "0");

    CHECK_CTX("pod set disabled: the pod's leases end, a service's consumer port stays");
    lease(30001, "pre", "web", "alice", "127.0.0.1", 30);
    lease(30002, "consumer", "web", "alice", "127.0.0.1", 30);
    lease(30003, "consumer", "web", "alice", "*", 0);
    lease(30004, "pre", "gone", "bob", "127.0.0.1", 30);
    CHECK_RC(p2m_store_pod_set_disabled(st, "alice", 1, err), 0, err);
    CHECK_EQ_STR(R("HMGET p2m:pod:alice disabled epoch"), "1|2");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30001 p2m:lease:30002 p2m:lease:30003 p2m:lease:30004"), "2");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30003"), "1");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30004"), "1");
    /* the pod's change first, then one unlease per lease ended */
    CHECK_EQ_STR(event(), "pod alice");
    char e1[64], e2[64];
    snprintf(e1, sizeof(e1), "%s", event());
    snprintf(e2, sizeof(e2), "%s", event());
    CHECK(strcmp(e1, "unlease 30001") == 0 || strcmp(e1, "unlease 30002") == 0);
    CHECK(strcmp(e2, "unlease 30001") == 0 || strcmp(e2, "unlease 30002") == 0);
    CHECK(strcmp(e1, e2) != 0);
    CHECK_RC(p2m_store_pod_set_disabled(st, "alice", 0, err), 0, err);
    CHECK_EQ_STR(R("HMGET p2m:pod:alice disabled epoch"), "0|3");
    event();
    check_refusal(p2m_store_pod_set_disabled(st, "nobody", 1, err), err, "unknown pod nobody");

    CHECK_CTX("pod set settings");
    CHECK_RC(p2m_store_pod_set_settings(st, "alice", P2M_TOKEN_REUSE_SAME_ADDRESS, 0, err), 0, err);
    CHECK_EQ_STR(R("HMGET p2m:pod:alice token_reuse digits epoch"), "same-address|6|3"); /* sessions stay valid */
    CHECK_RC(p2m_store_pod_set_settings(st, "alice", -1, 8, err), 0, err);
    CHECK_EQ_STR(R("HMGET p2m:pod:alice token_reuse digits epoch"), "same-address|8|3");
    CHECK_RC(p2m_store_pod_set_settings(st, "alice", P2M_TOKEN_REUSE_NONE, 6, err), 0, err);
    CHECK_EQ_STR(R("HMGET p2m:pod:alice token_reuse digits epoch"), "none|6|3");
    before = dump();
    check_refusal(p2m_store_pod_set_settings(st, "alice", -1, 0, err), err, "no setting to change");
    check_refusal(p2m_store_pod_set_settings(st, "alice", 2, 0, err), err, "token_reuse");
    check_refusal(p2m_store_pod_set_settings(st, "alice", -1, 7, err), err, "digits: expected 6 or 8");
    check_refusal(p2m_store_pod_set_settings(st, "alice", P2M_TOKEN_REUSE_NONE, 9, err), err, "digits: expected 6 or 8");
    check_refusal(p2m_store_pod_set_settings(st, "nobody", -1, 8, err), err, "unknown pod nobody");
    char *after = dump();
    CHECK_EQ_STR(after, before);
    free(after);
    free(before);
    R("DEL p2m:lease:30003 p2m:lease:30004");
}

static void test_labels(p2m_store_t *st)
{
    char err[P2M_ERR_LEN], owner[P2M_ID_MAX + 1];
    int existed = -1;
    p2m_proto_t now = P2M_PROTO_HTTPS, tcp = P2M_PROTO_TCP, http = P2M_PROTO_HTTP;

    CHECK_CTX("label add");
    CHECK_RC(p2m_store_label_add(st, "carol", "shop", NULL, &existed, &now, err), 0, err);
    CHECK_EQ_INT(existed, 0);
    CHECK_EQ_INT(now, P2M_PROTO_HTTPS);
    CHECK_EQ_STR(R("SISMEMBER p2m:pod:carol:labels shop"), "1");
    CHECK_RC(p2m_store_label_add(st, "carol", "shop", &tcp, &existed, &now, err), 0, err);
    CHECK_EQ_INT(existed, 1);
    CHECK_EQ_INT(now, P2M_PROTO_TCP);
    CHECK_RC(p2m_store_label_add(st, "carol", "shop", NULL, &existed, &now, err), 0, err); /* keeps the protocol */
    CHECK_EQ_INT(now, P2M_PROTO_TCP);
    CHECK_RC(p2m_store_label_add(st, "carol", "api", &http, NULL, NULL, err), 0, err);
    CHECK_EQ_STR(R("HGET p2m:labels:protocol api"), "http");

    char *before = dump();
    check_refusal(p2m_store_label_add(st, "carol", "web", NULL, &existed, NULL, err), err, "label web belongs to pod alice");
    check_refusal(p2m_store_label_add(st, "nobody", "free", NULL, &existed, NULL, err), err, "unknown pod nobody");
    check_refusal(p2m_store_label_add(st, LONG_ID, "free", NULL, &existed, NULL, err), err, "pod ID too long");
    CHECK_CTX("label set protocol");
    check_refusal(p2m_store_label_set_protocol(st, "free", P2M_PROTO_TCP, owner, err), err, "unknown label free");
    char *after = dump();
    CHECK_EQ_STR(after, before);
    free(after);
    free(before);
    CHECK_RC(p2m_store_label_set_protocol(st, "web", P2M_PROTO_HTTP, owner, err), 0, err);
    CHECK_EQ_STR(owner, "alice");
    CHECK_EQ_STR(R("HGET p2m:labels:protocol web"), "http");
    CHECK_RC(p2m_store_label_set_protocol(st, "web", P2M_PROTO_HTTPS, NULL, err), 0, err);

    CHECK_CTX("label exists");
    CHECK_EQ_INT(p2m_store_label_exists(st, "web", err), 1);
    CHECK_EQ_INT(p2m_store_label_exists(st, "free", err), 0);
    CHECK_EQ_INT(p2m_store_label_exists(st, "", err), 0);

    CHECK_CTX("label list");
    p2m_label_owner_t *ls = NULL;
    size_t n = 0;
    if (CHECK_RC(p2m_store_label_list(st, &ls, &n, err), 0, err) && CHECK_EQ_INT(n, 5)) {
        static const char *want[][2] = {{"api", "carol"}, {"blog", "alice"}, {"gone", "bob"}, {"shop", "carol"}, {"web", "alice"}};
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ_STR(ls[i].label, want[i][0]);
            CHECK_EQ_STR(ls[i].pod, want[i][1]);
            CHECK_EQ_INT(ls[i].nsharers, 0);
            CHECK(ls[i].sharers == NULL);
        }
        CHECK_EQ_INT(ls[0].proto, P2M_PROTO_HTTP);
        CHECK_EQ_INT(ls[3].proto, P2M_PROTO_TCP);
        CHECK_EQ_INT(ls[4].proto, P2M_PROTO_HTTPS);
    }
    p2m_store_label_list_free(ls, n);

    CHECK_CTX("label rm: its leases and consumer ports end, the owner's sessions die");
    R("SET p2m:cport:shop:tcp 30010");
    R("SADD p2m:cports:service 30010");
    lease(30010, "consumer", "shop", "carol", "*", 0);
    lease(30011, "pre", "shop", "carol", "127.0.0.1", 30);
    lease(30012, "pre", "api", "carol", "127.0.0.1", 30);
    CHECK_EQ_STR(R("HGET p2m:pod:carol epoch"), "0");
    p2m_label_owner_t gone;
    CHECK_RC(p2m_store_label_rm(st, "shop", &gone, err), 0, err);
    CHECK_EQ_STR(gone.pod, "carol");
    CHECK_EQ_STR(gone.label, "shop");
    CHECK_EQ_INT(gone.nsharers, 0);
    p2m_store_label_owner_dispose(&gone);
    CHECK_EQ_STR(R("HGET p2m:pod:carol epoch"), "1");
    CHECK_EQ_STR(R("HEXISTS p2m:labels shop"), "0");
    CHECK_EQ_STR(R("HEXISTS p2m:labels:protocol shop"), "0");
    CHECK_EQ_STR(R("SISMEMBER p2m:pod:carol:labels shop"), "0");
    CHECK_EQ_STR(R("EXISTS p2m:cport:shop:tcp"), "0");
    CHECK_EQ_STR(R("SISMEMBER p2m:cports:service 30010"), "0");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30010 p2m:lease:30011 p2m:lease:30012"), "1");
    check_refusal(p2m_store_label_rm(st, "shop", NULL, err), err, "unknown label shop");
    R("DEL p2m:lease:30012");
}

/* Reads every event pending on p2m:events into one sorted line, "a|b|...", until none comes within
 * the timeout, and subscribes again (the read that timed out dropped the subscription). */
static const char *events_all(void)
{
    static char line[1024];
    char seen[16][64];
    size_t n = 0;
    const char *e;
    while ((e = event())[0] != '\0')
        if (n < 16)
            snprintf(seen[n++], sizeof(seen[0]), "%s", e);
    subscribe();
    qsort(seen, n, sizeof(seen[0]), (int (*)(const void *, const void *))strcmp);
    line[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s%s", i ? "|" : "", seen[i]);
    return line;
}

/* label share / unshare: who may serve a label besides its owner; what label rm, pod rm and pod
 * disable do to a shared label (PROTOCOL 1.2 step 4, OPERATIONS "Several pods behind one label"). */
static void test_shares(p2m_store_t *st)
{
    char err[P2M_ERR_LEN], owner[P2M_ID_MAX + 1];
    int existed = -1;
    char *before, *after;

    events_all();
    CHECK_CTX("label share");
    CHECK_RC(p2m_store_pod_add(st, "olga", SECRET, labels("pool", "solo"), 2, P2M_TOKEN_REUSE_NONE, 6, 1000, err), 0, err);
    CHECK_RC(p2m_store_pod_add(st, "sam", SECRET, labels("sams", NULL), 1, P2M_TOKEN_REUSE_NONE, 6, 1000, err), 0, err);
    CHECK_RC(p2m_store_pod_add(st, "sue", SECRET, NULL, 0, P2M_TOKEN_REUSE_NONE, 6, 1000, err), 0, err);
    CHECK_RC(p2m_store_pod_add(st, "tom", SECRET, NULL, 0, P2M_TOKEN_REUSE_NONE, 6, 1000, err), 0, err);
    CHECK_RC(p2m_store_label_share(st, "pool", "sam", &existed, owner, err), 0, err);
    CHECK_EQ_INT(existed, 0);
    CHECK_EQ_STR(owner, "olga");
    CHECK_RC(p2m_store_label_share(st, "pool", "sue", NULL, NULL, err), 0, err);
    CHECK_EQ_STR(R("SORT p2m:label:pool:sharers ALPHA"), "sam|sue");
    CHECK_EQ_STR(R("SMEMBERS p2m:pod:sam:shares"), "pool");
    CHECK_EQ_STR(R("HGET p2m:labels pool"), "olga"); /* the owner stays the owner */
    p2m_pod_t *pod = NULL;
    if (CHECK_RC(p2m_store_pod_get(st, "sam", &pod, err), 0, err) && CHECK_EQ_INT(pod->nshares, 1)) {
        CHECK_EQ_STR(pod->shares[0], "pool");
        CHECK_EQ_INT(pod->nlabels, 1);
        CHECK_EQ_STR(pod->labels[0], "sams");
    }
    p2m_store_pod_free(pod);
    pod = NULL;
    if (CHECK_RC(p2m_store_pod_get(st, "olga", &pod, err), 0, err))
        CHECK_EQ_INT(pod->nshares, 0);
    p2m_store_pod_free(pod);
    before = dump();
    CHECK_RC(p2m_store_label_share(st, "pool", "sam", &existed, owner, err), 0, err);
    CHECK_EQ_INT(existed, 1);
    after = dump();
    CHECK_EQ_STR(after, before);
    free(after);

    CHECK_CTX("label share: refusals change nothing");
    check_refusal(p2m_store_label_share(st, "nolabel", "sam", NULL, NULL, err), err, "unknown label nolabel");
    check_refusal(p2m_store_label_share(st, "pool", "nobody", NULL, NULL, err), err, "unknown pod nobody");
    check_refusal(p2m_store_label_share(st, "pool", "olga", NULL, NULL, err), err, "pod olga owns label pool");
    check_refusal(p2m_store_label_share(st, "pool", LONG_ID, NULL, NULL, err), err, "pod ID too long");
    check_refusal(p2m_store_label_share(st, LONG_ID, "sam", NULL, NULL, err), err, "label too long");
    check_refusal(p2m_store_label_share(st, "x') redis.call('FLUSHALL') --", "sam", NULL, NULL, err), err, "unknown label");
    CHECK_CTX("label unshare: refusals change nothing");
    check_refusal(p2m_store_label_unshare(st, "pool", "tom", NULL, err), err, "pod tom does not share label pool");
    check_refusal(p2m_store_label_unshare(st, "pool", "olga", NULL, err), err, "pod olga owns label pool (label rm takes it)");
    check_refusal(p2m_store_label_unshare(st, "nolabel", "sam", NULL, err), err, "unknown label nolabel");
    check_refusal(p2m_store_label_unshare(st, "pool", LONG_ID, NULL, err), err, "pod ID too long");
    after = dump();
    CHECK_EQ_STR(after, before);
    free(after);
    free(before);

    CHECK_CTX("label share: at most P2M_LABEL_SHARERS_MAX");
    for (int i = 2; i < P2M_LABEL_SHARERS_MAX; i++)
        R("SADD p2m:label:pool:sharers filler%d", i);
    before = dump();
    check_refusal(p2m_store_label_share(st, "pool", "tom", NULL, NULL, err), err, "label pool has 32 sharers already");
    after = dump();
    CHECK_EQ_STR(after, before);
    free(after);
    free(before);
    for (int i = 2; i < P2M_LABEL_SHARERS_MAX; i++)
        R("SREM p2m:label:pool:sharers filler%d", i);

    CHECK_CTX("label list: the sharers, sorted");
    p2m_label_owner_t *ls = NULL;
    size_t n = 0;
    if (CHECK_RC(p2m_store_label_list(st, &ls, &n, err), 0, err)) {
        size_t found = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(ls[i].label, "pool") == 0 && CHECK_EQ_INT(ls[i].nsharers, 2)) {
                found++;
                CHECK_EQ_STR(ls[i].pod, "olga");
                CHECK_EQ_STR(ls[i].sharers[0], "sam");
                CHECK_EQ_STR(ls[i].sharers[1], "sue");
            } else if (strcmp(ls[i].label, "pool") != 0) {
                CHECK_EQ_INT(ls[i].nsharers, 0);
            }
        }
        CHECK_EQ_INT(found, 1);
    }
    p2m_store_label_list_free(ls, n);
    p2m_store_label_list_free(NULL, 0);

    CHECK_CTX("label unshare: the pod's leases of the label end, nobody else's");
    events_all();
    lease(30100, "pre", "pool", "sue", "127.0.0.1", 30);
    lease(30101, "pre", "sams", "sue", "127.0.0.1", 30); /* not the label: stays (written by hand) */
    lease(30102, "pre", "pool", "sam", "127.0.0.1", 30);
    CHECK_RC(p2m_store_label_unshare(st, "pool", "sue", owner, err), 0, err);
    CHECK_EQ_STR(owner, "olga");
    CHECK_EQ_STR(R("SORT p2m:label:pool:sharers ALPHA"), "sam");
    CHECK_EQ_STR(R("EXISTS p2m:pod:sue:shares"), "0");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30100 p2m:lease:30101 p2m:lease:30102"), "2");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30100"), "0");
    CHECK_EQ_STR(events_all(), "unlease 30100");
    R("DEL p2m:lease:30101");

    CHECK_CTX("pod disable of the owner: its consumer leases of a shared label stay, its own pre leases go");
    lease(30110, "pre", "pool", "olga", "127.0.0.1", 30);
    lease(30111, "consumer", "pool", "olga", "10.0.0.1", 30);
    lease(30112, "consumer", "solo", "olga", "10.0.0.1", 30); /* nobody shares solo: ends */
    CHECK_RC(p2m_store_pod_set_disabled(st, "olga", 1, err), 0, err);
    CHECK_EQ_STR(R("EXISTS p2m:lease:30110 p2m:lease:30111 p2m:lease:30112 p2m:lease:30102"), "2");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30111 p2m:lease:30102"), "2");
    CHECK_EQ_STR(events_all(), "pod olga|unlease 30110|unlease 30112");
    CHECK_RC(p2m_store_pod_set_disabled(st, "olga", 0, err), 0, err);
    CHECK_CTX("pod disable of a sharer: only its own leases");
    CHECK_RC(p2m_store_pod_set_disabled(st, "sam", 1, err), 0, err);
    CHECK_EQ_STR(R("EXISTS p2m:lease:30102 p2m:lease:30111"), "1");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30111"), "1");
    CHECK_EQ_STR(R("SORT p2m:label:pool:sharers ALPHA"), "sam"); /* still a sharer, only disabled */
    CHECK_RC(p2m_store_pod_set_disabled(st, "sam", 0, err), 0, err);

    CHECK_CTX("pod rm of a sharer: only its share goes");
    CHECK_RC(p2m_store_label_share(st, "pool", "tom", NULL, NULL, err), 0, err);
    lease(30120, "pre", "pool", "tom", "127.0.0.1", 30);
    CHECK_RC(p2m_store_pod_rm(st, "tom", err), 0, err);
    CHECK_EQ_STR(R("SORT p2m:label:pool:sharers ALPHA"), "sam");
    CHECK_EQ_STR(R("EXISTS p2m:pod:tom p2m:pod:tom:shares p2m:lease:30120"), "0");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30111"), "1");
    CHECK_EQ_STR(R("HGET p2m:labels pool"), "olga");

    CHECK_CTX("label rm of a shared label: the sharers lose it, their leases end");
    CHECK_RC(p2m_store_label_add(st, "sue", "duo", NULL, NULL, NULL, err), 0, err);
    CHECK_RC(p2m_store_label_share(st, "duo", "sam", NULL, NULL, err), 0, err);
    lease(30130, "pre", "duo", "sam", "127.0.0.1", 30);
    p2m_label_owner_t gone;
    CHECK_RC(p2m_store_label_rm(st, "duo", &gone, err), 0, err);
    CHECK_EQ_STR(gone.pod, "sue");
    if (CHECK_EQ_INT(gone.nsharers, 1))
        CHECK_EQ_STR(gone.sharers[0], "sam");
    p2m_store_label_owner_dispose(&gone);
    CHECK_EQ_INT(gone.nsharers, 0);
    CHECK_EQ_STR(R("EXISTS p2m:label:duo:sharers p2m:lease:30130"), "0");
    CHECK_EQ_STR(R("SMEMBERS p2m:pod:sam:shares"), "pool");

    CHECK_CTX("pod rm of the owner: the label goes from its sharers, their leases end");
    lease(30140, "pre", "pool", "sam", "127.0.0.1", 30);
    lease(30141, "pre", "sams", "sam", "127.0.0.1", 30);
    CHECK_RC(p2m_store_pod_rm(st, "olga", err), 0, err);
    CHECK_EQ_STR(R("HMGET p2m:labels pool solo"), "(nil)|(nil)");
    CHECK_EQ_STR(R("EXISTS p2m:label:pool:sharers p2m:pod:sam:shares p2m:lease:30140 p2m:lease:30111 p2m:lease:30102"), "0");
    CHECK_EQ_STR(R("EXISTS p2m:lease:30141"), "1");
    CHECK_EQ_STR(R("HGET p2m:labels sams"), "sam");

    R("DEL p2m:lease:30141");
    CHECK_RC(p2m_store_pod_rm(st, "sam", err), 0, err);
    CHECK_RC(p2m_store_pod_rm(st, "sue", err), 0, err);
    CHECK_EQ_STR(R("KEYS p2m:label:*"), "");
    CHECK_EQ_STR(R("KEYS p2m:pod:*:shares"), "");
    events_all();
}

static void test_leases(p2m_store_t *st)
{
    char err[P2M_ERR_LEN];
    p2m_lease_t *ls = NULL;
    size_t n = 7;

    CHECK_CTX("lease list: none");
    if (CHECK_RC(p2m_store_lease_list(st, &ls, &n, err), 0, err))
        CHECK_EQ_INT(n, 0);
    free(ls);

    CHECK_CTX("lease list");
    lease(65535, "pre", "web", "alice", "::1", 100);
    lease(1, "consumer", "web", "alice", "*", 0);
    lease(20000, "pre", "blog", "alice", "127.0.0.1", 50);
    R("SET p2m:lease:notaport x");                                 /* not a lease: skipped */
    R("HSET p2m:lease:70000 kind pre label web pod alice addr x"); /* a port out of range: skipped */
    ls = NULL;
    if (CHECK_RC(p2m_store_lease_list(st, &ls, &n, err), 0, err) && CHECK_EQ_INT(n, 3)) {
        CHECK_EQ_INT(ls[0].port, 1);
        CHECK_EQ_STR(ls[0].kind, "consumer");
        CHECK_EQ_STR(ls[0].addr, "*");
        CHECK_EQ_INT(ls[0].ttl, -1);
        CHECK_EQ_INT(ls[1].port, 20000);
        CHECK_EQ_STR(ls[1].label, "blog");
        CHECK(ls[1].ttl > 40 && ls[1].ttl <= 50);
        CHECK_EQ_INT(ls[2].port, 65535);
        CHECK_EQ_STR(ls[2].pod, "alice");
        CHECK_EQ_STR(ls[2].addr, "::1");
        CHECK_EQ_INT(ls[2].created, 1000);
    }
    free(ls);
    R("DEL p2m:lease:notaport p2m:lease:70000");

    CHECK_CTX("lease rm");
    while (event()[0] != '\0') /* the notices of the label's leases, and none after them */
        ;
    subscribe(); /* the read that timed out dropped the subscription */
    CHECK_RC(p2m_store_lease_rm(st, 20000, err), 0, err);
    CHECK_EQ_STR(event(), "unlease 20000");
    CHECK_EQ_STR(R("EXISTS p2m:lease:20000"), "0");
    check_refusal(p2m_store_lease_rm(st, 20000, err), err, "no lease on port 20000");
    check_refusal(p2m_store_lease_rm(st, 0, err), err, "no lease on port 0");
    CHECK_RC(p2m_store_lease_rm(st, 1, err), 0, err); /* the admin may end a service's consumer port */
    CHECK_EQ_STR(event(), "unlease 1");

    CHECK_CTX("pod rm: labels, protocols, consumer ports and leases go");
    R("SET p2m:cport:web 30020");
    R("SADD p2m:cports:service 30020");
    lease(30020, "consumer", "web", "alice", "*", 0);
    CHECK_RC(p2m_store_pod_rm(st, "alice", err), 0, err);
    CHECK_EQ_STR(event(), "pod alice");
    CHECK_EQ_STR(R("EXISTS p2m:pod:alice p2m:pod:alice:labels p2m:cport:web p2m:lease:30020 p2m:lease:65535"), "0");
    CHECK_EQ_STR(R("HMGET p2m:labels web blog"), "(nil)|(nil)");
    CHECK_EQ_STR(R("SISMEMBER p2m:pods alice"), "0");
    CHECK_EQ_STR(R("HGET p2m:labels gone"), "bob"); /* the others' are untouched */
    check_refusal(p2m_store_pod_rm(st, "alice", err), err, "unknown pod alice");
}

static const char H1[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
static const char H2[] = "0011223344556677ffffffffffffffffffffffffffffffffffffffffffffffff";
static const char H3[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/* 20 processes, each with its own connection, redeem hash at once (released by one pipe). Returns
 * how many got P2M_TOKEN_REDEEMED; *spent counts P2M_TOKEN_SPENT. */
static int redeem_race(const char *addr, const char *hash, int *spent)
{
    int gate[2], ok = 0;
    pid_t pids[20];
    *spent = 0;
    if (pipe(gate) != 0)
        abort();
    for (int i = 0; i < 20; i++) {
        if ((pids[i] = fork()) == 0) {
            char err[P2M_ERR_LEN], c;
            p2m_redis_addr_t a;
            close(gate[1]);
            p2m_store_t *st = p2m_redis_addr_parse(addr, &a, err) == 0 ? p2m_store_connect(&a, 2000, err) : NULL;
            if (st == NULL || read(gate[0], &c, 1) != 0) /* EOF: the parent closed the gate */
                _exit(100);
            int got_rc = p2m_store_token_redeem(st, hash, 1000, NULL, err);
            p2m_store_free(st);
            _exit(got_rc < 0 ? 101 : got_rc);
        }
    }
    close(gate[0]);
    usleep(200 * 1000); /* let the children connect and block on the gate */
    close(gate[1]);
    for (int i = 0; i < 20; i++) {
        int status = 0;
        if (pids[i] < 0 || waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status)) {
            CHECK_MSG(0, "child %d did not exit", i);
            continue;
        }
        int code = WEXITSTATUS(status);
        ok += code == P2M_TOKEN_REDEEMED;
        *spent += code == P2M_TOKEN_SPENT;
        CHECK_MSG(code == P2M_TOKEN_REDEEMED || code == P2M_TOKEN_SPENT, "child %d: status %d", i, code);
    }
    return ok;
}

static void test_tokens(p2m_store_t *st, const char *addr)
{
    char err[P2M_ERR_LEN], tok[P2M_TOKEN_LEN + 1], tok2[P2M_TOKEN_LEN + 1], hex[P2M_TOKEN_HASH_LEN + 1], hash[80];
    p2m_token_info_t *ts = NULL, info;
    size_t n = 7;

    CHECK_CTX("token new and hash");
    if (CHECK_RC(p2m_token_new(tok, err), 0, err) && CHECK_RC(p2m_token_new(tok2, err), 0, err)) {
        CHECK_EQ_INT(strlen(tok), P2M_TOKEN_LEN);
        CHECK(strncmp(tok, "p2mt_", 5) == 0);
        CHECK(strspn(tok + 5, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == 43);
        CHECK(strcmp(tok, tok2) != 0);
    }
    CHECK_RC(p2m_token_hash("abc", 3, hex, err), 0, err); /* FIPS 180-2 B.1 */
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(p2m_token_hex_valid(H1, 64, 64));
    CHECK(!p2m_token_hex_valid("00112233445G", 12, 12));
    CHECK(!p2m_token_hex_valid("00112233445A", 12, 12)); /* upper case is not how hashes are stored */
    CHECK(!p2m_token_hex_valid("0011223344", 10, 12));
    CHECK_RC(p2m_token_label_prefix_check("dev-", 4, err), 0, err);
    check_refusal(p2m_token_label_prefix_check("", 0, err), err, "empty");
    check_refusal(p2m_token_label_prefix_check("-dev", 4, err), err, "hyphen");
    check_refusal(p2m_token_label_prefix_check("Dev", 3, err), err, "lower case");
    check_refusal(p2m_token_label_prefix_check("a.b", 3, err), err, "lower case");
    check_refusal(p2m_token_label_prefix_check("a\0b", 3, err), err, "lower case");
    check_refusal(p2m_token_label_prefix_check("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 41, err), err, "longer than 40");

    CHECK_CTX("token list: none");
    if (CHECK_RC(p2m_store_token_list(st, &ts, &n, err), 0, err))
        CHECK_EQ_INT(n, 0);
    free(ts);

    CHECK_CTX("token add");
    CHECK_RC(p2m_store_token_add(st, H1, 2, 4, 0, "", 1000, err), 0, err);
    CHECK_EQ_STR(R("HMGET p2m:token:%s uses uses_left tunnels expires label_prefix created pods_created", H1), "2|2|4|0||1000|0");
    CHECK_RC(p2m_store_token_add(st, H2, 1, 32, 2000, "dev-", 1000, err), 0, err);
    CHECK_EQ_STR(R("SCARD p2m:tokens"), "2");

    CHECK_CTX("token add: refusals change nothing");
    char *before = dump();
    check_refusal(p2m_store_token_add(st, H1, 1, 1, 0, "", 1000, err), err, "exists already");
    check_refusal(p2m_store_token_add(st, H3, 0, 1, 0, "", 1000, err), err, "uses");
    check_refusal(p2m_store_token_add(st, H3, 1000001, 1, 0, "", 1000, err), err, "uses");
    check_refusal(p2m_store_token_add(st, H3, 1, 0, 0, "", 1000, err), err, "tunnels");
    check_refusal(p2m_store_token_add(st, H3, 1, 33, 0, "", 1000, err), err, "tunnels");
    check_refusal(p2m_store_token_add(st, H3, 1, 1, -1, "", 1000, err), err, "expires");
    check_refusal(p2m_store_token_add(st, H3, 1, 1, 0, "a.b", 1000, err), err, "label prefix");
    check_refusal(p2m_store_token_add(st, "AAAA", 1, 1, 0, "", 1000, err), err, "hex");
    check_refusal(p2m_store_token_add(st, "x:y", 1, 1, 0, "", 1000, err), err, "hex");
    char *after = dump();
    CHECK_EQ_STR(after, before);
    free(after);
    free(before);

    CHECK_CTX("token list");
    ts = NULL;
    R("SADD p2m:tokens %s", H3); /* named but gone: skipped */
    if (CHECK_RC(p2m_store_token_list(st, &ts, &n, err), 0, err) && CHECK_EQ_INT(n, 2)) {
        CHECK_EQ_STR(ts[0].hash, H1);
        CHECK_EQ_INT(ts[0].uses_left, 2);
        CHECK_EQ_INT(ts[0].tunnels, 4);
        CHECK_EQ_STR(ts[1].hash, H2);
        CHECK_EQ_INT(ts[1].expires, 2000);
        CHECK_EQ_STR(ts[1].label_prefix, "dev-");
        CHECK_EQ_INT(ts[1].created, 1000);
    }
    free(ts);
    R("SREM p2m:tokens %s", H3);

    CHECK_CTX("token redeem");
    memset(&info, 0, sizeof(info));
    CHECK_RC(p2m_store_token_redeem(st, H1, 1500, &info, err), P2M_TOKEN_REDEEMED, err);
    CHECK_EQ_INT(info.tunnels, 4);
    CHECK_EQ_INT(info.uses_left, 1);
    CHECK_EQ_INT(info.pods_created, 1);
    CHECK_EQ_STR(info.label_prefix, "");
    CHECK_RC(p2m_store_token_redeem(st, H1, 1500, NULL, err), P2M_TOKEN_REDEEMED, err);
    before = dump();
    CHECK_RC(p2m_store_token_redeem(st, H1, 1500, &info, err), P2M_TOKEN_SPENT, err);
    CHECK_RC(p2m_store_token_redeem(st, H2, 2000, &info, err), P2M_TOKEN_EXPIRED, err); /* at its expiry */
    CHECK_RC(p2m_store_token_redeem(st, H3, 1500, &info, err), P2M_TOKEN_UNKNOWN, err);
    CHECK_RC(p2m_store_token_redeem(st, "", 1500, &info, err), P2M_TOKEN_UNKNOWN, err);
    CHECK_RC(p2m_store_token_redeem(st, "*", 1500, &info, err), P2M_TOKEN_UNKNOWN, err);
    after = dump();
    CHECK_EQ_STR(after, before);
    free(after);
    free(before);
    CHECK_EQ_STR(R("HMGET p2m:token:%s uses_left pods_created", H1), "0|2");
    memset(&info, 0, sizeof(info));
    CHECK_RC(p2m_store_token_redeem(st, H2, 1999, &info, err), P2M_TOKEN_REDEEMED, err);
    CHECK_EQ_INT(info.tunnels, 32);
    CHECK_EQ_STR(info.label_prefix, "dev-");
    CHECK_EQ_INT(info.expires, 2000);

    CHECK_CTX("token redeem: the asynchronous builder refuses what is not a hash; the judge what is not a reply");
    p2m_store_cmd_t cmd;
    CHECK_EQ_INT(p2m_store_cmd_token_redeem(&cmd, "p2m:*", 1), -1);
    CHECK_EQ_INT(p2m_store_cmd_token_redeem(&cmd, H1, 1), 0);
    CHECK_EQ_INT(p2m_store_token_redeem_reply(NULL, H1, &info, err), -1);

    CHECK_CTX("token redeem: 20 processes, a 1-use token, one wins");
    int spent;
    CHECK_RC(p2m_store_token_add(st, H3, 1, 2, 0, "", 1000, err), 0, err);
    CHECK_EQ_INT(redeem_race(addr, H3, &spent), 1);
    CHECK_EQ_INT(spent, 19);
    CHECK_EQ_STR(R("HMGET p2m:token:%s uses_left pods_created", H3), "0|1");
    CHECK_CTX("token redeem: 20 processes, a 5-use token, five win");
    R("HSET p2m:token:%s uses_left 5", H3);
    CHECK_EQ_INT(redeem_race(addr, H3, &spent), 5);
    CHECK_EQ_INT(spent, 15);
    CHECK_EQ_STR(R("HMGET p2m:token:%s uses_left pods_created", H3), "0|6");

    CHECK_CTX("token rm");
    before = dump();
    check_refusal(p2m_store_token_rm(st, "001122334455", hash, err), err, "ambiguous"); /* H1 and H2 */
    check_refusal(p2m_store_token_rm(st, "bbbbbbbbbbbb", hash, err), err, "unknown token bbbbbbbbbbbb");
    check_refusal(p2m_store_token_rm(st, "aaaa", hash, err), err, "hex");
    check_refusal(p2m_store_token_rm(st, "AAAAAAAAAAAA", hash, err), err, "hex");
    check_refusal(p2m_store_token_rm(st, "", hash, err), err, "hex");
    after = dump();
    CHECK_EQ_STR(after, before);
    free(after);
    free(before);
    CHECK_RC(p2m_store_token_rm(st, "aaaaaaaaaaaa", hash, err), 0, err);
    CHECK_EQ_STR(hash, H3);
    CHECK_RC(p2m_store_token_rm(st, H2, hash, err), 0, err);
    CHECK_EQ_STR(hash, H2);
    CHECK_RC(p2m_store_token_rm(st, "001122334455", NULL, err), 0, err); /* no longer ambiguous */
    CHECK_EQ_STR(R("EXISTS p2m:tokens p2m:token:%s p2m:token:%s p2m:token:%s", H1, H2, H3), "0");
    CHECK_RC(p2m_store_token_redeem(st, H3, 1500, &info, err), P2M_TOKEN_UNKNOWN, err);
}

/* The live numbers (p2m_store_live) sum a pod's services (every label's three) over the relays in
 * p2m:relays; the series (p2m_store_pod_series) sums its buckets, each relay's tunnels gauge
 * included, over the 60 minutes up to now and no further. */
static void test_live(p2m_store_t *st)
{
    char err[P2M_ERR_LEN];
    CHECK_CTX("live");
    CHECK_RC(p2m_store_pod_add(st, "livepod", SECRET, labels("lv1", "lv2"), 2, P2M_TOKEN_REUSE_NONE, 6, 1000, err), 0, err);
    R("SADD p2m:relays r1 r2");
    R("HSET p2m:idle:r1 lv1 2");
    R("HSET p2m:idle:r2 lv2:tcp 3");
    R("HSET p2m:wait:r1 lv1 1");
    R("HSET p2m:tunnels:r1 lv1 4");
    R("HSET p2m:tunnels:r2 lv2 1");
    R("HSET p2m:stats:relay:r1 lv1:bytes_in 100 lv1:bytes_out 200 lv1:conns 5 other:bytes_in 7");
    R("HSET p2m:stats:relay:r2 lv2:http:bytes_in 10");
    R("HSET p2m:pod:livepod last_registration 1234");
    /* pool targets per service: lv1 and lv2:tcp summed; lv3 is not the pod's (a label removed) */
    R("HSET p2m:pod:livepod pool:lv1 3 pool:lv2:tcp 4 pool:lv3 100");
    const char *names[] = {"livepod", "ghost"};
    p2m_live_t live[2];
    CHECK_RC(p2m_store_live(st, 1, names, 2, live, err), 0, err);
    CHECK_EQ_INT(live[0].online, 1);
    CHECK_EQ_INT(live[0].idle, 5);
    CHECK_EQ_INT(live[0].waiting, 1);
    CHECK_EQ_INT(live[0].tunnels, 5);
    CHECK_EQ_INT(live[0].bytes_in, 110);
    CHECK_EQ_INT(live[0].bytes_out, 200);
    CHECK_EQ_INT(live[0].conns, 5);
    CHECK_EQ_INT(live[0].last_registration, 1234);
    CHECK_EQ_INT(live[0].pool_target, 7);
    CHECK_EQ_INT(live[1].online, 0); /* an unknown pod: zero */
    CHECK_EQ_INT(live[1].idle, 0);
    CHECK_EQ_INT(live[1].pool_target, 0);
    const char *label[] = {"lv2"};
    CHECK_RC(p2m_store_live(st, 0, label, 1, live, err), 0, err);
    CHECK_EQ_INT(live[0].idle, 3);
    CHECK_EQ_INT(live[0].tunnels, 1);
    CHECK_EQ_INT(live[0].waiting, 0);
    CHECK_EQ_INT(live[0].last_registration, 0);
    CHECK_EQ_INT(live[0].pool_target, 0);                         /* pods only */
    CHECK_RC(p2m_store_live(st, 0, label, 0, live, err), 0, err); /* none: no command */

    CHECK_CTX("live: no pool target declared");
    R("HDEL p2m:pod:livepod pool:lv1 pool:lv2:tcp");
    CHECK_RC(p2m_store_live(st, 1, names, 1, live, err), 0, err);
    CHECK_EQ_INT(live[0].pool_target, 0);

    CHECK_CTX("live: online by p2m:alive alone");
    R("DEL p2m:idle:r1 p2m:idle:r2 p2m:tunnels:r1 p2m:tunnels:r2");
    CHECK_RC(p2m_store_live(st, 1, names, 1, live, err), 0, err);
    CHECK_EQ_INT(live[0].online, 0);
    R("SET p2m:alive:lv2:http r1");
    CHECK_RC(p2m_store_live(st, 1, names, 1, live, err), 0, err);
    CHECK_EQ_INT(live[0].online, 1);

    CHECK_CTX("series");
    R("HSET p2m:series:lv1:1000 conns 2 bytes_in 10 bytes_out 20 tunnels:r1 3");
    R("HSET p2m:series:lv2:tcp:1000 conns 1 tunnels:r2 2");
    R("HSET p2m:series:lv1:941 conns 7");
    R("HSET p2m:series:lv1:940 conns 100");   /* 61 minutes ago: out */
    R("HSET p2m:series:other:1000 conns 50"); /* another pod's */
    p2m_series_point_t pts[P2M_SERIES_MINUTES];
    CHECK_RC(p2m_store_pod_series(st, "livepod", 1000, pts, err), 0, err);
    CHECK_EQ_INT(pts[59].minute, 1000);
    CHECK_EQ_INT(pts[59].conns, 3);
    CHECK_EQ_INT(pts[59].tunnels, 5);
    CHECK_EQ_INT(pts[59].bytes_in, 10);
    CHECK_EQ_INT(pts[59].bytes_out, 20);
    CHECK_EQ_INT(pts[0].minute, 941);
    CHECK_EQ_INT(pts[0].conns, 7);
    long long sum = 0;
    for (size_t i = 0; i < P2M_SERIES_MINUTES; i++)
        sum += pts[i].conns;
    CHECK_EQ_INT(sum, 10);
    CHECK_EQ_INT(p2m_store_pod_series(st, "ghost", 1000, pts, err), 1);
    CHECK_EQ_STR(err, "unknown pod ghost");
    R("DEL p2m:relays p2m:wait:r1 p2m:stats:relay:r1 p2m:stats:relay:r2 p2m:alive:lv2:http");
    R("DEL p2m:series:lv1:1000 p2m:series:lv2:tcp:1000 p2m:series:lv1:941 p2m:series:lv1:940 p2m:series:other:1000");
    CHECK_RC(p2m_store_pod_rm(st, "livepod", err), 0, err);
}

int main(void)
{
    redis_server_t srv;
    if (!CHECK(redis_server_start(&srv, "store", &rc) == 0)) {
        printf("redis-server did not start (is it installed?)\n");
        return check_done("store");
    }
    sock_path = srv.sock;
    memset(LONG_ID, 'i', sizeof(LONG_ID) - 1);
    test_token_reuse_names();
    test_keys();
    test_check_reads(srv.addr);
    test_schema(srv.addr);
    subscribe();
    p2m_store_t *st = connect_store(srv.addr);
    if (st != NULL) {
        test_pods(st);
        test_labels(st);
        test_shares(st);
        test_leases(st);
        test_tokens(st, srv.addr);
        test_live(st);
    }
    p2m_store_free(st);
    redisFree(sub);
    redisFree(rc);
    redis_server_stop(&srv);
    return check_done("store");
}
