/* Unit tests for lib/sentinel.c (p2m/sentinel.h) and the config's redis object form: the reply
 * parsers fed hostile replies built by hand, +switch-master messages, AUTH argv, password files
 * (mode, length, lines) and hostile config objects whose errors must name the key and never the
 * password. */

#include "check.h"
#include "p2m/config.h"
#include "p2m/err.h"
#include "p2m/sentinel.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reply builders: static storage is enough for one reply at a time. */
static redisReply R_str(const char *s)
{
    return (redisReply){.type = REDIS_REPLY_STRING, .str = (char *)s, .len = strlen(s)};
}

static void test_master_reply(void)
{
    char err[P2M_ERR_LEN];
    p2m_hostport_t hp;
    redisReply ip = R_str("10.0.0.7"), port = R_str("6380"), *two[2] = {&ip, &port};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = two};

    CHECK_CTX("master reply ok");
    if (CHECK_RC(p2m_sentinel_master_reply(&arr, &hp, err), 0, err)) {
        CHECK_EQ_STR(hp.host, "10.0.0.7");
        CHECK_EQ_INT(hp.port, 6380);
    }
    redisReply v6 = R_str("::1"), *v6two[2] = {&v6, &port};
    redisReply v6arr = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = v6two};
    CHECK_CTX("master reply v6");
    if (CHECK_RC(p2m_sentinel_master_reply(&v6arr, &hp, err), 0, err))
        CHECK_EQ_STR(hp.host, "::1");

    /* hostile: nil, error, wrong shapes, bad ports, odd hosts, NUL inside */
    redisReply nil = {.type = REDIS_REPLY_NIL};
    redisReply e = {.type = REDIS_REPLY_ERROR, .str = "ERR No such master with that name", .len = 33};
    redisReply integer = {.type = REDIS_REPLY_INTEGER, .integer = 6379};
    redisReply one = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = two};
    redisReply *three_e[3] = {&ip, &port, &port};
    redisReply three = {.type = REDIS_REPLY_ARRAY, .elements = 3, .element = three_e};
    redisReply *intel[2] = {&ip, &integer};
    redisReply intarr = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = intel};
    redisReply p0 = R_str("0"), p70000 = R_str("70000"), pneg = R_str("-1"), pempty = R_str(""), plong = R_str("0006379");
    redisReply hsp = R_str("a b"), hempty = R_str(""), hcrlf = R_str("x\r\nFLUSHALL");
    redisReply hnul = {.type = REDIS_REPLY_STRING, .str = "ab\0c", .len = 4};
    struct {
        const char *name;
        redisReply *r;
        const char *want;
    } rows[] = {
        {"NULL", NULL, "no answer"},
        {"nil", &nil, "does not know the master"},
        {"error", &e, "No such master"},
        {"integer", &integer, "expected [IP, PORT]"},
        {"one element", &one, "expected [IP, PORT]"},
        {"three elements", &three, "expected [IP, PORT]"},
        {"port integer", &intarr, "expected [IP, PORT]"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("master reply %s", rows[i].name);
        err[0] = '\0';
        check_refusal(p2m_sentinel_master_reply(rows[i].r, &hp, err), err, rows[i].want);
    }
    redisReply *ports[] = {&p0, &p70000, &pneg, &pempty, &plong};
    for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        redisReply *el[2] = {&ip, ports[i]};
        redisReply a = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = el};
        CHECK_CTX("master reply port %s", check_str(ports[i]->str));
        check_refusal(p2m_sentinel_master_reply(&a, &hp, err), err, "expected [IP, PORT]");
    }
    redisReply *hosts[] = {&hsp, &hempty, &hcrlf, &hnul};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        redisReply *el[2] = {hosts[i], &port};
        redisReply a = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = el};
        CHECK_CTX("master reply host %zu", i);
        check_refusal(p2m_sentinel_master_reply(&a, &hp, err), err, "expected [IP, PORT]");
    }
    /* a 300-byte host */
    char big[301];
    memset(big, 'a', 300);
    big[300] = '\0';
    redisReply hbig = R_str(big), *bigel[2] = {&hbig, &port};
    redisReply bigarr = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = bigel};
    CHECK_CTX("master reply long host");
    check_refusal(p2m_sentinel_master_reply(&bigarr, &hp, err), err, "expected [IP, PORT]");
    CHECK_CTX(NULL);
}

static void test_role_reply(void)
{
    char err[P2M_ERR_LEN];
    redisReply master = R_str("master"), slave = R_str("slave"), sentinel = R_str("sentinel"), odd = R_str("Master");
    redisReply offset = {.type = REDIS_REPLY_INTEGER, .integer = 42};
    redisReply *mel[2] = {&master, &offset}, *sel[1] = {&slave}, *snl[1] = {&sentinel}, *oel[1] = {&odd}, *iel[1] = {&offset};
    redisReply m = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = mel};
    redisReply s = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = sel};
    redisReply sn = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = snl};
    redisReply o = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = oel};
    redisReply i = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = iel};
    redisReply empty = {.type = REDIS_REPLY_ARRAY, .elements = 0};
    redisReply e = {.type = REDIS_REPLY_ERROR, .str = "NOAUTH Authentication required.", .len = 31};
    redisReply st = {.type = REDIS_REPLY_STATUS, .str = "master", .len = 6};

    CHECK_CTX("role master");
    CHECK_RC(p2m_sentinel_role_reply(&m, err), 0, err);
    struct {
        const char *name;
        redisReply *r;
        const char *want;
    } rows[] = {
        {"NULL", NULL, "no answer"},       {"slave", &s, "a replica"},   {"sentinel", &sn, "a sentinel"},
        {"Master", &o, "unexpected role"}, {"integer", &i, "malformed"}, {"empty", &empty, "malformed"},
        {"error", &e, "NOAUTH"},           {"status", &st, "malformed"},
    };
    for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
        CHECK_CTX("role %s", rows[k].name);
        err[0] = '\0';
        check_refusal(p2m_sentinel_role_reply(rows[k].r, err), err, rows[k].want);
    }
    CHECK_CTX(NULL);
}

static void test_switch(void)
{
    p2m_hostport_t old, now;
    const char *ok = "pipe2me 127.0.0.1 6379 127.0.0.1 6380";
    CHECK_CTX("switch ok");
    if (CHECK_EQ_INT(p2m_sentinel_switch_parse(ok, strlen(ok), "pipe2me", &old, &now), 1)) {
        CHECK_EQ_STR(old.host, "127.0.0.1");
        CHECK_EQ_INT(old.port, 6379);
        CHECK_EQ_STR(now.host, "127.0.0.1");
        CHECK_EQ_INT(now.port, 6380);
    }
    CHECK_CTX("switch other master");
    CHECK_EQ_INT(p2m_sentinel_switch_parse(ok, strlen(ok), "other", &old, &now), 0);
    CHECK_EQ_INT(p2m_sentinel_switch_parse(ok, strlen(ok), "pipe2m", &old, &now), 0);
    const char *v6 = "pipe2me ::1 6379 ::1 6380";
    CHECK_CTX("switch v6");
    CHECK_EQ_INT(p2m_sentinel_switch_parse(v6, strlen(v6), "pipe2me", &old, &now), 1);
    static const char *bad[] = {
        "",
        "pipe2me",
        "pipe2me 127.0.0.1 6379 127.0.0.1",
        "pipe2me 127.0.0.1 6379 127.0.0.1 6380 extra",
        "pipe2me 127.0.0.1 6379 127.0.0.1 6380 ",
        "pipe2me  127.0.0.1 6379 127.0.0.1 6380",
        "pipe2me 127.0.0.1 6379 127.0.0.1 0",
        "pipe2me 127.0.0.1 6379 127.0.0.1 65536",
        "pipe2me 127.0.0.1 6379 127.0.0.1 63x0",
        "pipe2me 127.0.0.1 6379 bad\rhost 6380",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_CTX("switch bad %s", check_str(bad[i]));
        CHECK_EQ_INT(p2m_sentinel_switch_parse(bad[i], strlen(bad[i]), "pipe2me", &old, &now), -1);
    }
    const char nul[] = "pipe2me 127.0.0.1 6379 127.0.0.1 6380";
    char withnul[sizeof(nul)];
    memcpy(withnul, nul, sizeof(nul));
    withnul[10] = '\0';
    CHECK_CTX("switch NUL inside");
    CHECK_EQ_INT(p2m_sentinel_switch_parse(withnul, sizeof(nul) - 1, "pipe2me", &old, &now), -1);
    CHECK_CTX("switch NULL");
    CHECK_EQ_INT(p2m_sentinel_switch_parse(NULL, 0, "pipe2me", &old, &now), -1);
    CHECK_CTX(NULL);
}

static void test_auth_argv(void)
{
    const char *argv[3];
    CHECK_CTX("auth argv");
    CHECK_EQ_INT(p2m_redis_auth_argv("", "pw", argv), 2);
    CHECK_EQ_STR(argv[0], "AUTH");
    CHECK_EQ_STR(argv[1], "pw");
    CHECK_EQ_INT(p2m_redis_auth_argv(NULL, "pw", argv), 2);
    CHECK_EQ_INT(p2m_redis_auth_argv("u", "pw", argv), 3);
    CHECK_EQ_STR(argv[1], "u");
    CHECK_EQ_STR(argv[2], "pw");
    CHECK_CTX(NULL);
}

static char tmpdir[64];

/* Writes len bytes of s to tmpdir/name with mode; returns the path (static buffer). */
static const char *write_file(const char *name, const char *s, size_t len, mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(s, 1, len, f) != len || fclose(f) != 0)
        abort();
    if (chmod(path, mode) != 0)
        abort();
    return path;
}

static void test_password_file(void)
{
    char pw[P2M_REDIS_PASSWORD_MAX + 1], err[P2M_ERR_LEN];
    char max[P2M_REDIS_PASSWORD_MAX + 2];
    memset(max, 'p', sizeof(max));
    struct {
        const char *name, *content;
        size_t len;
        mode_t mode;
        const char *want; /* NULL: accepted as "s3cret" */
    } rows[] = {
        {"plain", "s3cret", 6, 0600, NULL},
        {"newline", "s3cret\n", 7, 0600, NULL},
        {"crlf", "s3cret\r\n", 8, 0400, NULL},
        {"group", "s3cret\n", 7, 0640, "group or others may read it (mode 640)"},
        {"others", "s3cret\n", 7, 0604, "mode 604"},
        {"empty", "", 0, 0600, "empty"},
        {"only newline", "\n", 1, 0600, "empty"},
        {"two lines", "s3cret\nmore\n", 12, 0600, "one line"},
        {"two newlines", "s3cret\n\n", 8, 0600, "one line"},
        {"NUL", "s3\0cret", 7, 0600, "one line"},
        {"CR inside", "s3\rcret", 7, 0600, "one line"},
        {"257 bytes", max, P2M_REDIS_PASSWORD_MAX + 1, 0600, "longer than 256 bytes"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("password file %s", rows[i].name);
        const char *path = write_file("pw", rows[i].content, rows[i].len, rows[i].mode);
        err[0] = '\0';
        int rc = p2m_redis_password_read(path, pw, err);
        if (rows[i].want == NULL) {
            if (CHECK_RC(rc, 0, err))
                CHECK_EQ_STR(pw, "s3cret");
        } else {
            check_refusal(rc, err, rows[i].want);
            CHECK_MSG(strstr(err, "s3cret") == NULL && strstr(err, "ppp") == NULL, "err shows the password: %s", err);
            CHECK_MSG(strstr(err, path) != NULL, "err does not name the file: %s", err);
        }
    }
    CHECK_CTX("password file 256 bytes");
    const char *path = write_file("pw", max, P2M_REDIS_PASSWORD_MAX, 0600);
    if (CHECK_RC(p2m_redis_password_read(path, pw, err), 0, err))
        CHECK_EQ_INT(strlen(pw), P2M_REDIS_PASSWORD_MAX);
    CHECK_CTX("password file missing");
    snprintf(pw, sizeof(pw), "%s/none", tmpdir);
    check_refusal(p2m_redis_password_read(pw, pw, err), err, "No such file");
    CHECK_CTX("password file a directory");
    check_refusal(p2m_redis_password_read(tmpdir, pw, err), err, "not a regular file");
    CHECK_CTX(NULL);
}

static int parse(const char *json, p2m_config_t *cfg, char *err)
{
    p2m_config_defaults(cfg);
    err[0] = '\0';
    return p2m_config_parse(json, strlen(json), cfg, err);
}

static void test_config(void)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN], json[1024];
    const char *pwpath = write_file("redis.pw", "hunter2\n", 8, 0600);
    char pwp[128];
    snprintf(pwp, sizeof(pwp), "%s", pwpath);
    const char *loose = write_file("loose.pw", "hunter2\n", 8, 0644);
    char loosep[128];
    snprintf(loosep, sizeof(loosep), "%s", loose);

    CHECK_CTX("config sentinels");
    snprintf(json, sizeof(json),
             "{\"redis\": {\"sentinels\": [\"127.0.0.1:26379\", \"[::1]:26380\"], \"master\": \"pipe2me\", \"user\": \"p2m\", "
             "\"password_file\": \"%s\", \"sentinel_password_file\": \"%s\"}}",
             pwp, pwp);
    if (CHECK_RC(parse(json, &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.redis.nsentinels, 2);
        CHECK_EQ_STR(cfg.redis.sentinels[1].host, "::1");
        CHECK_EQ_INT(cfg.redis.sentinels[1].port, 26380);
        CHECK_EQ_STR(cfg.redis.master, "pipe2me");
        CHECK_EQ_STR(cfg.redis.user, "p2m");
        CHECK_EQ_STR(cfg.redis.password, "hunter2");
        CHECK_EQ_STR(cfg.redis.sentinel_password, "hunter2");
        CHECK_EQ_INT(cfg.redis.wait_replicas, 1); /* the default with sentinels */
        CHECK_EQ_INT(cfg.redis.wait_timeout_ms, P2M_REDIS_WAIT_TIMEOUT_MS_DEFAULT);
        CHECK_EQ_STR(cfg.redis_str, "sentinel:pipe2me");
    }
    CHECK_CTX("config address");
    snprintf(json, sizeof(json),
             "{\"redis\": {\"address\": \"unix:/run/r.sock\", \"password_file\": \"%s\", \"wait_replicas\": 2, "
             "\"wait_timeout_ms\": 500}}",
             pwp);
    if (CHECK_RC(parse(json, &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.redis.is_unix, 1);
        CHECK_EQ_STR(cfg.redis.path, "/run/r.sock");
        CHECK_EQ_INT(cfg.redis.nsentinels, 0);
        CHECK_EQ_STR(cfg.redis.password, "hunter2");
        CHECK_EQ_STR(cfg.redis.user, "");
        CHECK_EQ_INT(cfg.redis.wait_replicas, 2);
        CHECK_EQ_INT(cfg.redis.wait_timeout_ms, 500);
        CHECK_EQ_STR(cfg.redis_str, "unix:/run/r.sock");
    }
    CHECK_CTX("config address default wait");
    if (CHECK_RC(parse("{\"redis\": {\"address\": \"127.0.0.1:6379\"}}", &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.redis.wait_replicas, 0);
        CHECK_EQ_STR(cfg.redis.password, "");
    }
    CHECK_CTX("config string form clears the object's fields");
    if (CHECK_RC(parse("{\"redis\": \"127.0.0.1:6380\"}", &cfg, err), 0, err))
        CHECK_EQ_INT(cfg.redis.nsentinels, 0);

    char loose_json[512], nine[512];
    snprintf(loose_json, sizeof(loose_json), "{\"redis\": {\"address\": \"127.0.0.1:1\", \"password_file\": \"%s\"}}", loosep);
    snprintf(nine, sizeof(nine),
             "{\"redis\": {\"master\": \"m\", \"sentinels\": [\"a:1\",\"a:2\",\"a:3\",\"a:4\",\"a:5\","
             "\"a:6\",\"a:7\",\"a:8\",\"a:9\"]}}");
    struct {
        const char *json, *want;
    } bad[] = {
        {"{\"redis\": {}}", "redis: expected either address or sentinels"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"sentinels\": [\"127.0.0.1:2\"], \"master\": \"m\"}}",
         "redis: expected either address or sentinels"},
        {"{\"redis\": {\"sentinels\": [\"127.0.0.1:2\"]}}", "redis.master: needed with sentinels"},
        {"{\"redis\": {\"sentinels\": [], \"master\": \"m\"}}", "redis.sentinels: expected 1 to 8"},
        {nine, "redis.sentinels: expected 1 to 8"},
        {"{\"redis\": {\"sentinels\": \"127.0.0.1:2\", \"master\": \"m\"}}", "redis.sentinels: expected 1 to 8"},
        {"{\"redis\": {\"sentinels\": [26379], \"master\": \"m\"}}", "redis.sentinels[0]: expected a string"},
        {"{\"redis\": {\"sentinels\": [\"127.0.0.1:2\", \"x\"], \"master\": \"m\"}}", "redis.sentinels[1]: expected HOST:PORT"},
        {"{\"redis\": {\"sentinels\": [\":26379\"], \"master\": \"m\"}}", "redis.sentinels[0]: expected HOST:PORT"},
        {"{\"redis\": {\"sentinels\": [\"a:1\"], \"master\": \"two words\"}}", "redis.master: expected printable ASCII"},
        {"{\"redis\": {\"sentinels\": [\"a:1\"], \"master\": \"\"}}", "redis.master: must not be empty"},
        {"{\"redis\": {\"sentinels\": [\"a:1\"], \"master\": 7}}", "redis.master: expected a string"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"master\": \"m\"}}", "master and sentinel_password_file need sentinels"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"user\": \"u\"}}", "redis.user: needs password_file"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"user\": \"a\\nb\"}}", "redis.user: expected printable ASCII"},
        {"{\"redis\": {\"address\": \"nope\"}}", "redis.address:"},
        {"{\"redis\": {\"address\": 6379}}", "redis.address: expected a string"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"wait_replicas\": 9}}", "redis.wait_replicas: expected"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"wait_replicas\": -1}}", "redis.wait_replicas: expected"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"wait_replicas\": \"1\"}}", "redis.wait_replicas: expected"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"wait_timeout_ms\": 0}}", "redis.wait_timeout_ms: expected"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"wait_timeout_ms\": 1.5}}", "redis.wait_timeout_ms: expected"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"password\": \"inline\"}}", "redis.password: unknown key"},
        {"{\"redis\": {\"address\": \"127.0.0.1:1\", \"password_file\": \"/nonexistent/pw\"}}",
         "redis.password_file: /nonexistent/pw"},
        {loose_json, "redis.password_file: "},
        {"{\"redis\": [\"127.0.0.1:1\"]}", "redis: expected a string"},
        {"{\"redis\": null}", "redis: expected a string"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_CTX("config bad %s", check_str(bad[i].json));
        check_refusal(parse(bad[i].json, &cfg, err), err, bad[i].want);
        CHECK_MSG(strstr(err, "hunter2") == NULL, "err shows the password: %s", err);
    }
    CHECK_CTX(NULL);
}

int main(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/p2m-sentinel.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_master_reply();
    test_role_reply();
    test_switch();
    test_auth_argv();
    test_password_file();
    test_config();
    char path[128];
    static const char *names[] = {"pw", "redis.pw", "loose.pw"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return check_done("sentinel");
}
