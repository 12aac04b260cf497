/* Unit tests for pod/provision.c (and env_quote): the pod's command line, secret
 * file, provisioning file and status file, fed hostile input. Every refusal must be one line that
 * never contains the secret. */

#include "check.h"
#include "pod.h"
#include "p2m/err.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" /* 20 bytes */

static char dir[64];

/* Writes a file under the temp dir with the given mode; returns its path (static rotating). */
static const char *put(const char *name, const char *data, size_t len, mode_t mode)
{
    static char paths[8][128];
    static unsigned next;
    char *path = paths[next++ % 8];
    snprintf(path, 128, "%s/%s", dir, name);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
        perror(path);
        abort();
    }
    close(fd);
    chmod(path, mode);
    return path;
}

static const char *puts0600(const char *name, const char *text)
{
    return put(name, text, strlen(text), 0600);
}

/* Runs pod_args_parse on a NULL-terminated list of arguments after the program name. */
static int parse(pod_args_t *a, char *err, ...)
{
    char *argv[40];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    argv[argc++] = "pipe2me-pod";
    for (char *s; (s = va_arg(ap, char *)) != NULL && argc < 39;)
        argv[argc++] = s;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return pod_args_parse(argc, argv, a, err);
}

/* A refusal: rc -1, one line, mentioning want, never the secret. */
static void check_refused(int rc, const char *err, const char *want)
{
    CHECK_RC(rc, -1, err);
    CHECK_MSG(strstr(err, want) != NULL, "err %s does not mention %s", check_str(err), check_str(want));
    CHECK_MSG(strchr(err, '\n') == NULL && strlen(err) > 0, "err is not one line: %s", check_str(err));
    CHECK_MSG(strstr(err, "JBSWY3DP") == NULL && strstr(err, "jbswy3dp") == NULL, "err shows the secret: %s", check_str(err));
}

static const char *provision_doc(const char *id, const char *secret, const char *labels, const char *registrar, const char *domain,
                                 const char *extra)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"id\": \"%s\", \"secret\": \"%s\", \"labels\": %s, \"registrar\": \"%s\", \"domain\": \"%s\", "
             "\"otpauth\": \"otpauth://totp/pipe2me:%s?secret=%s&issuer=pipe2me\"%s}",
             id, secret, labels, registrar, domain, id, secret, extra);
    return buf;
}

static void test_commands(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN];
    CHECK_CTX("commands");
    check_refused(parse(&a, err, NULL), err, "expected a command");
    check_refused(parse(&a, err, "frobnicate", NULL), err, "unknown command");
    check_refused(parse(&a, err, "", NULL), err, "unknown command");
    check_refused(parse(&a, err, "\x01\xff", NULL), err, "\\x01\\xff");
    if (CHECK_RC(parse(&a, err, "--help", NULL), 0, err))
        CHECK_EQ_INT(a.cmd, POD_CMD_HELP);
    if (CHECK_RC(parse(&a, err, "help", NULL), 0, err))
        CHECK_EQ_INT(a.cmd, POD_CMD_HELP);
    if (CHECK_RC(parse(&a, err, "--version", NULL), 0, err))
        CHECK_EQ_INT(a.cmd, POD_CMD_VERSION);
    check_refused(parse(&a, err, "--version", "x", NULL), err, "takes no arguments");
    if (CHECK_RC(parse(&a, err, "register", "--help", NULL), 0, err))
        CHECK_EQ_INT(a.cmd, POD_CMD_HELP);
}

static void test_register_flags(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN];
    const char *sf = puts0600("secret", SECRET "\n");
    const char *url = "https://pipe2me.localhost:8443";

    CHECK_CTX("register: complete flags");
    if (CHECK_RC(parse(&a, err, "register", "--registrar", url, "--id", "pod-1", "--secret-file", sf, "--label", "Web", "--forward",
                       "127.0.0.1:8080", NULL),
                 0, err)) {
        CHECK_EQ_INT(a.cmd, POD_CMD_REGISTER);
        CHECK_EQ_STR(a.registrar, url);
        CHECK_EQ_STR(a.reg_host, "pipe2me.localhost");
        CHECK_EQ_INT(a.reg_port, 8443);
        CHECK_EQ_STR(a.id, "pod-1");
        CHECK_EQ_STR(a.label, "web");
        CHECK_EQ_STR(a.domain, "pipe2me.localhost");
        CHECK_EQ_INT(a.secret_len, 20);
        CHECK_EQ_STR(a.forward.host, "127.0.0.1");
        CHECK_EQ_INT(a.forward.port, 8080);
        CHECK_EQ_INT(a.pool, POD_POOL_DEFAULT);
        CHECK_EQ_INT(a.pool_max, POD_POOL_CEILING_DEFAULT);
        CHECK_EQ_INT(a.drain_timeout, POD_DRAIN_DEFAULT);
        CHECK_EQ_INT(a.log_level, P2M_LOG_INFO);
        pod_args_wipe(&a);
        CHECK_EQ_INT(a.secret_len, 0);
    }
    CHECK_CTX("register: --opt=value and limits");
    if (CHECK_RC(parse(&a, err, "register", "--registrar=https://r.example/", "--id=x",
                       "--secret-file="
                       "",
                       "--label=a", "--forward=:9", NULL),
                 -1, err))
        CHECK(strstr(err, "empty") != NULL || strstr(err, "secret") != NULL);
    char sfopt[200];
    snprintf(sfopt, sizeof(sfopt), "--secret-file=%s", sf);
    if (CHECK_RC(parse(&a, err, "register", "--registrar=https://r.example/", "--id=x", sfopt, "--label=a", "--forward=:9",
                       "--pool=1024", "--log-level=debug", "--state-dir=/tmp/x", "--cacert=/etc/ssl/ca.pem", NULL),
                 0, err)) {
        CHECK_EQ_STR(a.registrar, "https://r.example");
        CHECK_EQ_INT(a.reg_port, 0);
        CHECK_EQ_STR(a.forward.host, "127.0.0.1");
        CHECK_EQ_INT(a.forward.port, 9);
        CHECK_EQ_INT(a.pool, 1024);
        CHECK_EQ_INT(a.pool_max, 1024); /* the ceiling follows a floor above its default */
        CHECK_EQ_INT(a.log_level, P2M_LOG_DEBUG);
        CHECK_EQ_STR(a.state_dir, "/tmp/x");
        CHECK_EQ_STR(a.cacert, "/etc/ssl/ca.pem");
        CHECK_EQ_STR(a.domain, "r.example");
    }

    /* One bad value at a time on top of a good command line. */
    static const struct {
        const char *opt, *value, *want;
    } rows[] = {
        {"--pool", "0", "--pool"},
        {"--pool", "1025", "--pool"},
        {"--pool", "-1", "--pool"},
        {"--pool", "4x", "--pool"},
        {"--pool", "", "--pool"},
        {"--pool", "99999999999999999999", "--pool"},
        {"--pool", " 4", "--pool"},
        {"--pool-max", "0", "--pool-max"},
        {"--pool-max", "1025", "--pool-max"},
        {"--pool-max", "-1", "--pool-max"},
        {"--pool-max", "8x", "--pool-max"},
        {"--pool-max", "", "--pool-max"},
        {"--pool-max", "4294967297", "--pool-max"}, /* 2^32 + 1: must not wrap to 1 */
        {"--pool-max", "3", "below --pool"},        /* the good line's --pool is 4 */
        {"--drain-timeout", "-1", "--drain-timeout"},
        {"--drain-timeout", "3601", "--drain-timeout"},
        {"--drain-timeout", "999999999", "--drain-timeout"},
        {"--drain-timeout", "99999999999999999999", "--drain-timeout"},
        {"--drain-timeout", "4294967306", "--drain-timeout"}, /* 2^32 + 10: must not wrap to 10 */
        {"--drain-timeout", "", "--drain-timeout"},
        {"--drain-timeout", "ten", "--drain-timeout"},
        {"--drain-timeout", "10s", "--drain-timeout"},
        {"--drain-timeout", "1.5", "--drain-timeout"},
        {"--drain-timeout", "0x10", "--drain-timeout"},
        {"--drain-timeout", "+5", "--drain-timeout"},
        {"--drain-timeout", " 5", "--drain-timeout"},
        {"--drain-timeout", "5\n", "--drain-timeout"},
        {"--drain-timeout", "\xff", "--drain-timeout"},
        {"--forward", "host", "--forward"},
        {"--forward", "host:0", "--forward"},
        {"--forward", "host:65536", "--forward"},
        {"--forward", "::1:80", "--forward"},
        {"--forward", "[::1]", "--forward"},
        {"--forward", "a b:80", "--forward"},
        {"--forward", "", "--forward"},
        {"--label", "", "--label"},
        {"--label", "-web", "--label"},
        {"--label", "we_b", "--label"},
        {"--label", "a.b", "--label"},
        {"--label", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "--label"},
        {"--id", "", "--id"},
        {"--id", ".pod", "--id"},
        {"--id", "a b", "--id"},
        {"--id", "a\"b", "--id"},
        {"--id", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "--id"},
        {"--registrar", "", "--registrar"},
        {"--registrar", "http://pipe2me.localhost", "https://"},
        {"--registrar", "https://", "no host"},
        {"--registrar", "https:///register", "no host"},
        {"--registrar", "https://user:pw@host", "user info"},
        {"--registrar", "https://host/?q=1", "query"},
        {"--registrar", "https://host#frag", "query or fragment"},
        {"--registrar", "https://host/a/../b", "canonical"},
        {"--registrar", "https://host/a//b", "canonical"},
        {"--registrar", "https://host/a b", "path"},
        {"--registrar", "https://host:0", "port"},
        {"--registrar", "https://host:99999", "port"},
        {"--registrar", "https://host:", "port"},
        {"--registrar", "https://ho_st", "host"},
        {"--registrar", "https://-host", "host"},
        {"--registrar", "https://[::1", "host"},
        {"--log-level", "verbose", "--log-level"},
        {"--state-dir", "", "--state-dir"},
        {"--cacert", "", "--cacert"},
        {"--domain", "a..b", "--domain"},
        {"--json", NULL, "unknown option"},
        {"--forward-http", "80", "unknown option"},
        {"--frob", "1", "unknown option"},
        {"--", NULL, "unexpected argument"},
        {"-p", "4", "unexpected argument"},
        {"extra", NULL, "unexpected argument"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("register row %zu: %s %s", i, rows[i].opt, check_str(rows[i].value));
        int rc = rows[i].value != NULL ? parse(&a, err, "register", "--registrar", url, "--id", "p", "--secret-file", sf, "--label",
                                               "web", "--forward", "127.0.0.1:80", rows[i].opt, rows[i].value, NULL)
                                       : parse(&a, err, "register", "--registrar", url, "--id", "p", "--secret-file", sf, "--label",
                                               "web", "--forward", "127.0.0.1:80", rows[i].opt, NULL);
        /* Options already given make "given twice": both are refusals worth having. */
        check_refused(rc, err, strstr(err, "twice") != NULL ? "twice" : rows[i].want);
        CHECK_EQ_INT(a.secret_len, 0);
    }

    CHECK_CTX("register: --pool and --pool-max");
    static const struct {
        const char *pool, *pool_max;
        int rc;
        unsigned want_pool, want_max;
    } pools[] = {
        {NULL, NULL, 0, POD_POOL_DEFAULT, POD_POOL_CEILING_DEFAULT},
        {"8", NULL, 0, 8, POD_POOL_CEILING_DEFAULT},
        {"300", NULL, 0, 300, 300},
        {NULL, "4", 0, 4, 4},
        {NULL, "1024", 0, 4, 1024},
        {"16", "16", 0, 16, 16},
        {"16", "15", -1, 0, 0},
        {"1", "1", 0, 1, 1},
        {"1024", "1000", -1, 0, 0},
    };
    for (size_t i = 0; i < sizeof(pools) / sizeof(pools[0]); i++) {
        const char *argv[20] = {"register", "--registrar", url,   "--id",      "p",           "--secret-file",
                                sf,         "--label",     "web", "--forward", "127.0.0.1:80"};
        int n = 11;
        if (pools[i].pool != NULL) {
            argv[n++] = "--pool";
            argv[n++] = pools[i].pool;
        }
        if (pools[i].pool_max != NULL) {
            argv[n++] = "--pool-max";
            argv[n++] = pools[i].pool_max;
        }
        CHECK_CTX("--pool %s --pool-max %s", check_str(pools[i].pool), check_str(pools[i].pool_max));
        char *full[22] = {"pipe2me-pod"};
        for (int k = 0; k < n; k++)
            full[k + 1] = (char *)argv[k];
        int rc = pod_args_parse(n + 1, full, &a, err);
        if (pools[i].rc < 0) {
            check_refused(rc, err, "below --pool");
        } else if (CHECK_RC(rc, 0, err)) {
            CHECK_EQ_INT(a.pool, pools[i].want_pool);
            CHECK_EQ_INT(a.pool_max, pools[i].want_max);
        }
        pod_args_wipe(&a);
    }

    CHECK_CTX("register: --drain-timeout limits");
    static const struct {
        const char *value;
        unsigned want;
    } drains[] = {{"0", 0}, {"1", 1}, {"10", 10}, {"0010", 10}, {"3600", POD_DRAIN_MAX}};
    for (size_t i = 0; i < sizeof(drains) / sizeof(drains[0]); i++) {
        CHECK_CTX("--drain-timeout %s", drains[i].value);
        if (CHECK_RC(parse(&a, err, "register", "--registrar", url, "--id", "p", "--secret-file", sf, "--label", "web", "--forward",
                           "127.0.0.1:80", "--drain-timeout", drains[i].value, NULL),
                     0, err))
            CHECK_EQ_INT(a.drain_timeout, drains[i].want);
    }
    check_refused(parse(&a, err, "register", "--drain-timeout", "1", "--drain-timeout", "2", NULL), err,
                  "--drain-timeout given twice");
    check_refused(parse(&a, err, "register", "--drain-timeout", NULL), err, "--drain-timeout needs a value");
    check_refused(parse(&a, err, "status", "--state-dir", "/x", "--drain-timeout", "5", NULL), err, "unknown option");
    check_refused(parse(&a, err, "test", "--forward-tcp", "9", "--drain-timeout", "5", NULL), err, "unknown option");

    CHECK_CTX("register: repeated, missing and conflicting");
    check_refused(parse(&a, err, "register", "--pool", "4", "--pool", "5", NULL), err, "--pool given twice");
    check_refused(parse(&a, err, "register", "--pool", NULL), err, "--pool needs a value");
    check_refused(parse(&a, err, "register", "--json=1", NULL), err, "unknown option");
    check_refused(parse(&a, err, "register", "--id", "p", "--secret-file", sf, "--label", "web", "--forward", "1.2.3.4:5", NULL),
                  err, "--registrar");
    check_refused(
        parse(&a, err, "register", "--registrar", url, "--secret-file", sf, "--label", "web", "--forward", "1.2.3.4:5", NULL), err,
        "--id");
    check_refused(parse(&a, err, "register", "--registrar", url, "--id", "p", "--label", "web", "--forward", "1.2.3.4:5", NULL),
                  err, "--secret-file");
    check_refused(parse(&a, err, "register", "--registrar", url, "--id", "p", "--secret-file", sf, "--forward", "1.2.3.4:5", NULL),
                  err, "--label");
    check_refused(parse(&a, err, "register", "--registrar", url, "--id", "p", "--secret-file", sf, "--label", "web", NULL), err,
                  "--forward");
    check_refused(parse(&a, err, "register", "--provision", sf, "--id", "p", "--forward", "1.2.3.4:5", NULL), err, "drop --id");
}

/* --protocol, --tls-terminate and --alpn: values on their own, then what they need together. */
static void test_service_flags(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN];
    const char *sf = puts0600("secret-svc", SECRET "\n");
    const char *url = "https://pipe2me.localhost:8443";
#define BASE "register", "--registrar", url, "--id", "p", "--secret-file", sf, "--label", "web", "--forward", "127.0.0.1:80"
#define TLS BASE, "--tls-terminate", "--state-dir", dir, "--domain", "pipe2me.localhost"

    CHECK_CTX("service flags: defaults");
    if (CHECK_RC(parse(&a, err, BASE, NULL), 0, err)) {
        CHECK_EQ_INT(a.proto, P2M_PROTO_HTTPS);
        CHECK_EQ_INT(a.tls_terminate, 0);
        CHECK_EQ_STR(a.alpn, "http/1.1");
    }
    static const struct {
        const char *value;
        p2m_proto_t proto;
    } protos[] = {{"https", P2M_PROTO_HTTPS}, {"http", P2M_PROTO_HTTP}, {"tcp", P2M_PROTO_TCP}};
    for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
        CHECK_CTX("--protocol %s", protos[i].value);
        if (CHECK_RC(parse(&a, err, BASE, "--protocol", protos[i].value, NULL), 0, err))
            CHECK_EQ_INT(a.proto, protos[i].proto);
    }
    char longv[400];
    memset(longv, 'h', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    static const char *bad_protos[] = {"", "HTTPS", "Http", "https ", " tcp", "ftp", "http\x01", "tcp\xff", "https,http", "h"};
    for (size_t i = 0; i < sizeof(bad_protos) / sizeof(bad_protos[0]); i++) {
        CHECK_CTX("--protocol %s", check_str(bad_protos[i]));
        check_refused(parse(&a, err, BASE, "--protocol", bad_protos[i], NULL), err, "--protocol: expected https, http or tcp");
        CHECK_EQ_INT(a.secret_len, 0);
    }
    CHECK_CTX("--protocol overlong");
    check_refused(parse(&a, err, BASE, "--protocol", longv, NULL), err, "--protocol");
    check_refused(parse(&a, err, BASE, "--protocol", "http", "--protocol", "tcp", NULL), err, "--protocol given twice");
    check_refused(parse(&a, err, BASE, "--protocol", NULL), err, "--protocol needs a value");

    CHECK_CTX("--tls-terminate");
    if (CHECK_RC(parse(&a, err, TLS, NULL), 0, err)) {
        CHECK_EQ_INT(a.tls_terminate, 1);
        CHECK_EQ_INT(a.proto, P2M_PROTO_HTTPS);
        CHECK_EQ_STR(a.alpn, "http/1.1");
        CHECK_EQ_STR(a.domain, "pipe2me.localhost");
    }
    if (CHECK_RC(parse(&a, err, TLS, "--protocol", "https", NULL), 0, err))
        CHECK_EQ_INT(a.tls_terminate, 1);
    check_refused(parse(&a, err, BASE, "--tls-terminate", "--domain", "d.example", NULL), err, "--tls-terminate needs --state-dir");
    check_refused(parse(&a, err, BASE, "--tls-terminate", "--state-dir", dir, NULL), err, "--domain DOMAIN or --provision");
    check_refused(parse(&a, err, TLS, "--protocol", "http", NULL), err, "needs --protocol https, not http");
    check_refused(parse(&a, err, TLS, "--protocol", "tcp", NULL), err, "needs --protocol https, not tcp");
    check_refused(parse(&a, err, TLS, "--tls-terminate", NULL), err, "--tls-terminate given twice");
    check_refused(parse(&a, err, BASE, "--tls-terminate=yes", "--state-dir", dir, NULL), err, "--tls-terminate takes no value");
    check_refused(parse(&a, err, "test", "--forward-http", "80", "--tls-terminate", NULL), err, "unknown option");
    check_refused(parse(&a, err, "status", "--state-dir", dir, "--tls-terminate", NULL), err, "unknown option");
    /* The provisioning file names the domain. */
    const char *reg = "https://pipe2me.localhost:8443";
    const char *doc = provision_doc("pod1", SECRET, "[\"web\"]", reg, "tunnels.example", "");
    const char *pf = puts0600("prov-tls.json", doc);
    if (CHECK_RC(
            parse(&a, err, "register", "--provision", pf, "--forward", "127.0.0.1:80", "--tls-terminate", "--state-dir", dir, NULL),
            0, err)) {
        CHECK_EQ_STR(a.domain, "tunnels.example");
        CHECK_EQ_INT(a.tls_terminate, 1);
    }

    CHECK_CTX("--alpn");
    static const char *good_alpn[] = {"h2,http/1.1", "h2", "http/1.1", "x", "spdy/3.1,h2,http/1.1,http/1.0", "!~"};
    for (size_t i = 0; i < sizeof(good_alpn) / sizeof(good_alpn[0]); i++) {
        CHECK_CTX("--alpn %s", good_alpn[i]);
        if (CHECK_RC(parse(&a, err, TLS, "--alpn", good_alpn[i], NULL), 0, err))
            CHECK_EQ_STR(a.alpn, good_alpn[i]);
    }
    char at_max[POD_ALPN_MAX + 1], over_max[POD_ALPN_MAX + 2];
    memset(at_max, 'a', POD_ALPN_MAX);
    at_max[POD_ALPN_MAX] = '\0';
    memset(over_max, 'a', POD_ALPN_MAX + 1);
    over_max[POD_ALPN_MAX + 1] = '\0';
    CHECK_CTX("--alpn of %d bytes", POD_ALPN_MAX);
    if (CHECK_RC(parse(&a, err, TLS, "--alpn", at_max, NULL), 0, err))
        CHECK_EQ_INT(strlen(a.alpn), POD_ALPN_MAX);
    static const struct {
        const char *value, *want;
    } bad_alpn[] = {
        {"", "--alpn: empty"},
        {",", "empty name"},
        {"h2,", "empty name"},
        {",h2", "empty name"},
        {"h2,,http/1.1", "empty name"},
        {"h2 ,http/1.1", "not printable"},
        {"h2, http/1.1", "not printable"},
        {"h2\t", "not printable"},
        {"h2\x01", "\\x01"},
        {"h\xc3\xa9", "\\xc3\\xa9"},
        {"h2\x7f", "not printable"},
        {"\"h2\"\\", "not printable"},
    };
    for (size_t i = 0; i < sizeof(bad_alpn) / sizeof(bad_alpn[0]); i++) {
        CHECK_CTX("--alpn %s", check_str(bad_alpn[i].value));
        check_refused(parse(&a, err, TLS, "--alpn", bad_alpn[i].value, NULL), err, bad_alpn[i].want);
        CHECK_EQ_INT(a.secret_len, 0);
    }
    CHECK_CTX("--alpn overlong, repeated, without --tls-terminate");
    check_refused(parse(&a, err, TLS, "--alpn", over_max, NULL), err, "--alpn: longer than 127 bytes");
    check_refused(parse(&a, err, TLS, "--alpn", longv, NULL), err, "--alpn: longer than");
    check_refused(parse(&a, err, TLS, "--alpn", "h2", "--alpn", "h2", NULL), err, "--alpn given twice");
    check_refused(parse(&a, err, BASE, "--alpn", "h2", NULL), err, "--alpn is for --tls-terminate");
    check_refused(parse(&a, err, BASE, "--alpn", "h2", "--state-dir", dir, "--domain", "d.example", NULL), err,
                  "--alpn is for --tls-terminate");
#undef TLS
#undef BASE
}

static void test_secret_file(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN];
    unsigned char raw[POD_SECRET_MAX];
    size_t raw_len;
    static const struct {
        const char *name, *data;
        size_t len;
        mode_t mode;
        int rc;
        const char *want;
    } rows[] = {
        {"ok", SECRET "\n", 33, 0600, 0, NULL},
        {"ok_nonl", SECRET, 32, 0400, 0, NULL},
        {"ok_crlf", SECRET "\r\n", 34, 0600, 0, NULL},
        {"ok_lower", "jbswy3dpehpk3pxpjbswy3dpehpk3pxp\n", 33, 0600, 0, NULL},
        {"ok_pad", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DP====\n", 45, 0600, 0, NULL},
        {"group", SECRET "\n", 33, 0640, -1, "chmod 600"},
        {"other", SECRET "\n", 33, 0604, -1, "group or others"},
        {"empty", "", 0, 0600, -1, "empty"},
        {"newline", "\n", 1, 0600, -1, "empty"},
        {"twolines", SECRET "\n" SECRET "\n", 66, 0600, -1, "one line"},
        {"trailing", SECRET "\n\n", 34, 0600, -1, "one line"},
        {"space", "JBSWY3DP EHPK3PXPJBSWY3DPEHPK3PXP\n", 34, 0600, -1, "base32"},
        {"digit1", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PX1\n", 33, 0600, -1, "base32"},
        {"padmid", "JBSWY3DP=EHPK3PXPJBSWY3DPEHPK3PXP\n", 34, 0600, -1, "base32"},
        {"nul", "JBSWY3DP\0EHPK3PXPJBSWY3DPEHPK3PXP\n", 34, 0600, -1, "NUL"},
        {"short", "JBSWY3DPEHPK3PXP\n", 17, 0600, -1, "16 to 64 bytes"},
        {"utf8", "JBSWY3DPEHPK3PXP\xc3\xa9JBSWY3DPEHPK3PX\n", 34, 0600, -1, "base32"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("secret file %s", rows[i].name);
        const char *path = put(rows[i].name, rows[i].data, rows[i].len, rows[i].mode);
        err[0] = '\0';
        int rc = pod_secret_load(path, raw, &raw_len, err);
        if (rows[i].rc == 0) {
            if (CHECK_RC(rc, 0, err))
                CHECK_MSG(raw_len >= POD_SECRET_MIN, "raw_len %zu", raw_len);
        } else {
            check_refused(rc, err, rows[i].want);
            CHECK_MSG(strstr(err, path) != NULL, "err does not name the file: %s", check_str(err));
        }
    }
    CHECK_CTX("secret file: oversized, missing, directory");
    char big[400];
    memset(big, 'A', sizeof(big));
    check_refused(pod_secret_load(put("big", big, sizeof(big), 0600), raw, &raw_len, err), err, "larger than");
    char longsecret[POD_SECRET_FILE_MAX];
    memset(longsecret, 'A', sizeof(longsecret)); /* 160 bytes decoded: too many */
    check_refused(pod_secret_load(put("long", longsecret, sizeof(longsecret), 0600), raw, &raw_len, err), err, "16 to 64");
    check_refused(pod_secret_load("/nonexistent/secret", raw, &raw_len, err), err, "No such file");
    check_refused(pod_secret_load(dir, raw, &raw_len, err), err, "not a regular file");
    check_refused(parse(&a, err, "register", "--registrar", "https://h", "--id", "p", "--secret-file", put("g", SECRET, 32, 0644),
                        "--label", "web", "--forward", "1.2.3.4:5", NULL),
                  err, "chmod 600");
}

static void test_provision(void)
{
    provision_t p;
    pod_args_t a;
    char err[P2M_ERR_LEN];
    const char *reg = "https://pipe2me.localhost:8443";
    static char good[4096]; /* provision_doc's buffer is reused below */
    snprintf(good, sizeof(good), "%s", provision_doc("pod1", SECRET, "[\"web\", \"Api\"]", reg, "pipe2me.localhost", ""));

    CHECK_CTX("provision: good");
    if (CHECK_RC(provision_parse(good, strlen(good), &p, err), 0, err)) {
        CHECK_EQ_STR(p.id, "pod1");
        CHECK_EQ_INT(p.nlabels, 2);
        CHECK_EQ_STR(p.labels[1], "api");
        CHECK_EQ_STR(p.registrar, reg);
        CHECK_EQ_STR(p.domain, "pipe2me.localhost");
        CHECK_EQ_INT(p.secret_len, 20);
        CHECK_EQ_INT(p.digits, 6); /* no "digits": a file from before they existed */
    }

    /* "digits": the integer 6 or 8, nothing else; hostile values name the key and leave no secret */
    static const struct {
        const char *extra;
        unsigned digits;  /* 0: refused */
        const char *want; /* the refusal */
    } digit_rows[] = {
        {", \"digits\": 6", 6, NULL},
        {", \"digits\": 8", 8, NULL},
        {", \"digits\": 7", 0, "digits: expected 6 or 8"},
        {", \"digits\": \"8\"", 0, "digits: expected 6 or 8"},
        {", \"digits\": -1", 0, "digits: expected 6 or 8"},
        {", \"digits\": 1e9", 0, "digits: expected 6 or 8"},
        {", \"digits\": 8.0", 0, "digits: expected 6 or 8"},
        {", \"digits\": 0", 0, "digits: expected 6 or 8"},
        {", \"digits\": null", 0, "digits: expected 6 or 8"},
        {", \"digits\": true", 0, "digits: expected 6 or 8"},
        {", \"digits\": [8]", 0, "digits: expected 6 or 8"},
        {", \"digits\": 4294967304", 0, "digits: expected 6 or 8"}, /* 8 + 2^32 */
        {", \"digits\": -4294967288", 0, "digits: expected 6 or 8"},
        {", \"digits\": 9223372036854775807", 0, "digits: expected 6 or 8"},
        {", \"digits\": 8, \"digits\": 6", 0, "not valid JSON"}, /* jansson refuses the duplicate */
    };
    for (size_t i = 0; i < sizeof(digit_rows) / sizeof(digit_rows[0]); i++) {
        const char *doc = provision_doc("pod1", SECRET, "[\"web\"]", reg, "pipe2me.localhost", digit_rows[i].extra);
        CHECK_CTX("provision digits row %zu: %s", i, check_str(digit_rows[i].extra));
        err[0] = '\0';
        int rc = provision_parse(doc, strlen(doc), &p, err);
        if (digit_rows[i].digits != 0) {
            if (CHECK_RC(rc, 0, err))
                CHECK_EQ_INT(p.digits, digit_rows[i].digits);
        } else {
            check_refused(rc, err, digit_rows[i].want);
            CHECK_EQ_INT(p.secret_len, 0);
        }
    }

    static const struct {
        const char *doc, *want;
    } raw_rows[] = {
        {"", "not valid JSON"},
        {"[]", "expected a JSON object"},
        {"\"x\"", "not valid JSON"},
        {"{", "not valid JSON (line 1"},
        {"{\"secret\": \"" SECRET "\x01\"}", "not valid JSON"},
        {"{\"secret\": \"" SECRET "\", \"secret\": \"" SECRET "\"}", "not valid JSON"},
        {"{\"secret\": \"" SECRET "\\u0000\"}", "not valid JSON"},
        {"{\"id\": 1}", "id: expected a string"},
        {"{\"id\": \"\"}", "id: is empty"},
        {"{\"id\": \"-x\"}", "id:"},
        {"{\"secret\": 5}", "secret: expected a string"},
        {"{\"secret\": \"JBSWY3DP\"}", "secret:"},
        {"{\"secret\": \"" SECRET "1\"}", "secret:"},
        {"{\"labels\": []}", "labels: expected a non-empty array"},
        {"{\"labels\": \"web\"}", "labels: expected a non-empty array"},
        {"{\"labels\": [\"ok\", 3]}", "labels[1]: expected a string"},
        {"{\"labels\": [\"ok\", \"-no\"]}", "labels[1]:"},
        {"{\"registrar\": \"http://x\"}", "registrar:"},
        {"{\"registrar\": \"\"}", "registrar: is empty"},
        {"{\"domain\": \"a..b\"}", "domain:"},
        {"{\"otpauth\": \"https://x\"}", "otpauth:"},
        {"{\"frob\": 1}", "unknown key \"frob\""},
        {"{\"\\u0001\\\"k\": 1}", "unknown key \"\\x01\\x22k\""},
        {"{\"id\": \"p\"}", "missing key \"secret\""},
    };
    for (size_t i = 0; i < sizeof(raw_rows) / sizeof(raw_rows[0]); i++) {
        CHECK_CTX("provision row %zu: %s", i, check_str(raw_rows[i].doc));
        err[0] = '\0';
        check_refused(provision_parse(raw_rows[i].doc, strlen(raw_rows[i].doc), &p, err), err, raw_rows[i].want);
        CHECK_EQ_INT(p.secret_len, 0);
    }

    CHECK_CTX("provision: missing keys");
    static const char *keys[] = {"id", "secret", "labels", "registrar", "domain"};
    for (size_t k = 0; k < 5; k++) {
        char doc[1024] = "{", want[64];
        const char *vals[] = {"\"id\": \"p\"", "\"secret\": \"" SECRET "\"", "\"labels\": [\"web\"]",
                              "\"registrar\": \"https://h\"", "\"domain\": \"d.example\""};
        for (size_t j = 0, n = 0; j < 5; j++) {
            if (j == k)
                continue;
            strcat(doc, n++ ? ", " : "");
            strcat(doc, vals[j]);
        }
        strcat(doc, "}");
        snprintf(want, sizeof(want), "missing key \"%s\"", keys[k]);
        check_refused(provision_parse(doc, strlen(doc), &p, err), err, want);
    }

    CHECK_CTX("provision: too many labels, too large, embedded NUL");
    char doc[8192] = "{\"labels\": [";
    for (int i = 0; i <= POD_LABELS_MAX; i++)
        snprintf(doc + strlen(doc), sizeof(doc) - strlen(doc), "%s\"l%d\"", i ? "," : "", i);
    strcat(doc, "]}");
    check_refused(provision_parse(doc, strlen(doc), &p, err), err, "more than 64 labels");
    static char huge[POD_PROVISION_MAX + 2];
    memset(huge, ' ', sizeof(huge));
    check_refused(provision_parse(huge, sizeof(huge), &p, err), err, "larger than");
    const char nul[] = "{\"id\": \"p\"}\0{\"x\":1}";
    check_refused(provision_parse(nul, sizeof(nul) - 1, &p, err), err, "not valid JSON");

    CHECK_CTX("provision via the command line");
    const char *pf = puts0600("prov.json", good);
    if (CHECK_RC(parse(&a, err, "register", "--provision", pf, "--forward", "localhost:80", NULL), 0, err)) {
        CHECK_EQ_INT(a.digits, 6);
        CHECK_EQ_STR(a.id, "pod1");
        CHECK_EQ_STR(a.label, "web");
        CHECK_EQ_STR(a.registrar, reg);
        CHECK_EQ_STR(a.forward.host, "localhost");
        CHECK_EQ_INT(a.secret_len, 20);
    }
    if (CHECK_RC(parse(&a, err, "register", "--provision", pf, "--label", "API", "--forward", "[::1]:80", NULL), 0, err)) {
        CHECK_EQ_STR(a.label, "api");
        CHECK_EQ_STR(a.forward.host, "::1");
    }
    /* A label the file does not list (one the pod shares: pipe2me-admin label share) is the registrar's to judge. */
    if (CHECK_RC(parse(&a, err, "register", "--provision", pf, "--label", "Other", "--forward", "1.2.3.4:80", NULL), 0, err))
        CHECK_EQ_STR(a.label, "other");
    if (CHECK_RC(parse(&a, err, "register", "--provision", pf, "--registrar", "https://other.example:1", "--forward", "1.2.3.4:80",
                       NULL),
                 0, err)) {
        CHECK_EQ_STR(a.registrar, "https://other.example:1");
        CHECK_EQ_STR(a.domain, "pipe2me.localhost"); /* from the file */
    }
    check_refused(
        parse(&a, err, "register", "--provision", put("open.json", good, strlen(good), 0644), "--forward", "1.2.3.4:80", NULL), err,
        "chmod 600");
    check_refused(parse(&a, err, "register", "--provision", puts0600("bad.json", "{\"secret\": \"" SECRET "X"), "--forward",
                        "1.2.3.4:80", NULL),
                  err, "not valid JSON");
    check_refused(parse(&a, err, "register", "--provision", "/nonexistent", "--forward", "1.2.3.4:80", NULL), err, "No such file");

    CHECK_CTX("provision with 8 digits via the command line; --digits is the file's to say");
    const char *pf8 =
        puts0600("prov8.json", provision_doc("pod1", SECRET, "[\"web\"]", reg, "pipe2me.localhost", ", \"digits\": 8"));
    if (CHECK_RC(parse(&a, err, "register", "--provision", pf8, "--forward", "localhost:80", NULL), 0, err))
        CHECK_EQ_INT(a.digits, 8);
    check_refused(parse(&a, err, "register", "--provision", pf8, "--digits", "8", "--forward", "localhost:80", NULL), err,
                  "--provision gives the digits");
    check_refused(parse(&a, err, "env", "--provision", pf, "--digits=6", NULL), err, "--provision gives the digits");
}

/* --digits with --secret-file: 6 or 8 exactly, once. */
static void test_digits_flag(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN];
    const char *sf = puts0600("secret-digits", SECRET "\n");
#define BASE                                                                                                                       \
    "register", "--registrar", "https://h.example", "--id", "p", "--secret-file", sf, "--label", "web", "--forward", "127.0.0.1:1"
    CHECK_CTX("--digits");
    if (CHECK_RC(parse(&a, err, BASE, NULL), 0, err))
        CHECK_EQ_INT(a.digits, 6);
    if (CHECK_RC(parse(&a, err, BASE, "--digits", "8", NULL), 0, err))
        CHECK_EQ_INT(a.digits, 8);
    if (CHECK_RC(parse(&a, err, BASE, "--digits=6", NULL), 0, err))
        CHECK_EQ_INT(a.digits, 6);
    static const char *const bad[] = {"", "7", "9", "08", " 8", "8 ", "-6", "+8", "6\n", "1e9", "eight", "88", "\xff"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_CTX("--digits %s", check_str(bad[i]));
        check_refused(parse(&a, err, BASE, "--digits", bad[i], NULL), err, "--digits: expected 6 or 8");
        CHECK_EQ_INT(a.secret_len, 0);
    }
    CHECK_CTX("--digits twice, without a value, for status");
    check_refused(parse(&a, err, BASE, "--digits", "6", "--digits", "8", NULL), err, "--digits given twice");
    check_refused(parse(&a, err, BASE, "--digits", NULL), err, "--digits needs a value");
    check_refused(parse(&a, err, "status", "--state-dir", "/tmp", "--digits", "8", NULL), err, "unknown option");
#undef BASE
}

static void test_other_commands(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN];
    CHECK_CTX("status");
    check_refused(parse(&a, err, "status", NULL), err, "--state-dir");
    check_refused(parse(&a, err, "status", "--state-dir", "/x", "--pool", "3", NULL), err, "unknown option");
    check_refused(parse(&a, err, "status", "--state-dir", "/x", "--json", "--json", NULL), err, "twice");
    check_refused(parse(&a, err, "status", "--state-dir", "/x", "--json=yes", NULL), err, "takes no value");
    if (CHECK_RC(parse(&a, err, "status", "--state-dir", "/x", "--json", NULL), 0, err))
        CHECK_EQ_INT(a.json, 1);

    CHECK_CTX("test");
    check_refused(parse(&a, err, "test", NULL), err, "--forward-http");
    check_refused(parse(&a, err, "test", "--forward-http", "0", NULL), err, "1 to 65535");
    check_refused(parse(&a, err, "test", "--forward-http", "65536", NULL), err, "1 to 65535");
    check_refused(parse(&a, err, "test", "--forward-tcp", "x", NULL), err, "1 to 65535");
    check_refused(parse(&a, err, "test", "--forward-http", "80", "--forward-tcp", "80", NULL), err, "must differ");
    check_refused(parse(&a, err, "test", "--forward", "1.2.3.4:5", NULL), err, "unknown option");
    if (CHECK_RC(parse(&a, err, "test", "--forward-tcp", "8081", NULL), 0, err)) {
        CHECK_EQ_INT(a.tcp_port, 8081);
        CHECK_EQ_INT(a.http_port, 0);
    }

    CHECK_CTX("env");
    if (CHECK_RC(parse(&a, err, "env", "--registrar", "https://Pipe2me.Example:8443/", "--id", "p", "--label", "web", NULL), 0,
                 err)) {
        CHECK_EQ_STR(a.domain, "pipe2me.example");
        CHECK_EQ_INT(a.secret_len, 0); /* env never needs the secret */
    }
    if (CHECK_RC(parse(&a, err, "env", "--registrar", "https://127.0.0.1", "--id", "p", "--label", "web", NULL), 0, err))
        CHECK_EQ_STR(a.domain, "127.0.0.1"); /* digits make a valid DNS name; env_command shows it as is */
    if (CHECK_RC(parse(&a, err, "env", "--registrar", "https://[::1]:8443", "--id", "p", "--label", "web", NULL), 0, err)) {
        CHECK_EQ_STR(a.domain, "");
        CHECK_EQ_STR(a.reg_host, "::1");
    }
    if (CHECK_RC(parse(&a, err, "env", "--registrar", "https://[::1]:8443", "--id", "p", "--label", "web", "--domain", "D.example",
                       NULL),
                 0, err))
        CHECK_EQ_STR(a.domain, "d.example");
    check_refused(parse(&a, err, "env", "--registrar", "https://h", "--id", "p", NULL), err, "--label");
}

static void test_url(void)
{
    char base[P2M_URL_MAX + 1], host[P2M_HOST_MAX + 1], err[P2M_ERR_LEN];
    uint16_t port;
    static const struct {
        const char *url, *base, *host;
        unsigned port;
    } ok[] = {
        {"https://h", "https://h", "h", 0},
        {"HTTPS://H.example/", "https://H.example", "H.example", 0},
        {"https://h:1/", "https://h:1", "h", 1},
        {"https://h:65535/p2m///", "https://h:65535/p2m", "h", 65535},
        {"https://[::1]", "https://[::1]", "::1", 0},
        {"https://[2001:db8::1]:8443/a/b", "https://[2001:db8::1]:8443/a/b", "2001:db8::1", 8443},
        {"https://10.0.0.1:443", "https://10.0.0.1:443", "10.0.0.1", 443},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        CHECK_CTX("url %s", ok[i].url);
        if (CHECK_RC(pod_registrar_url_parse(ok[i].url, base, host, &port, err), 0, err)) {
            CHECK_EQ_STR(base, ok[i].base);
            CHECK_EQ_STR(host, ok[i].host);
            CHECK_EQ_INT(port, ok[i].port);
        }
    }
    char longurl[P2M_URL_MAX + 16] = "https://h/";
    memset(longurl + 10, 'a', sizeof(longurl) - 11);
    longurl[sizeof(longurl) - 1] = '\0';
    CHECK_CTX("url: overlong");
    check_refused(pod_registrar_url_parse(longurl, base, host, &port, err), err, "longer than");
    longurl[P2M_URL_MAX] = '\0';
    CHECK_RC(pod_registrar_url_parse(longurl, base, host, &port, err), 0, err);
    char longhost[400] = "https://";
    memset(longhost + 8, 'a', 300);
    longhost[308] = '\0';
    check_refused(pod_registrar_url_parse(longhost, base, host, &port, err), err, "host");
}

static void test_env_quote(void)
{
    char out[32];
    static const struct {
        const char *in, *out;
    } rows[] = {
        {"", "''"}, {"abc", "'abc'"}, {"a'b", "'a'\\''b'"}, {"'", "''\\'''"}, {"$(rm -rf /)`x` \"q\"", "'$(rm -rf /)`x` \"q\"'"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("env_quote %s", check_str(rows[i].in));
        if (CHECK_EQ_INT(env_quote(rows[i].in, out, sizeof(out)), (long long)strlen(rows[i].out)))
            CHECK_EQ_STR(out, rows[i].out);
    }
    CHECK_CTX("env_quote limits");
    CHECK_EQ_INT(env_quote("abc", out, 6), 5);
    CHECK_EQ_INT(env_quote("abc", out, 5), -1);
    CHECK_EQ_INT(env_quote("'", out, 6), -1);
    CHECK_EQ_INT(env_quote("", out, 2), -1);
}

static void test_status_doc(void)
{
    pod_status_t st;
    char err[P2M_ERR_LEN];
    const char *good = "{\"pid\": 12, \"state\": \"running\", \"id\": \"p\", \"label\": \"web\", \"forward\": \"127.0.0.1:80\","
                       " \"started\": 1, \"updated\": 2, \"pool\": {\"target\": 4, \"idle\": 3, \"connecting\": 1,"
                       " \"registering\": 0}, \"tunnels\": {\"active\": 0, \"total\": 9, \"failed\": 1}, \"registrations\":"
                       " {\"ok\": 10, \"failed\": 0}, \"bytes\": {\"in\": 5, \"out\": 6}, \"health\": {\"registrar\": \"up\","
                       " \"relay\": \"down\", \"local\": \"unknown\"}}";
    CHECK_CTX("status doc");
    if (CHECK_RC(pod_status_parse(good, strlen(good), &st, err), 0, err)) {
        CHECK_EQ_INT(st.pid, 12);
        CHECK_EQ_INT(st.pool_idle, 3);
        CHECK_EQ_INT(st.tunnels_total, 9);
        CHECK_EQ_STR(st.relay_state, "down");
        /* written by a pod before the elastic pool: read as 0 */
        CHECK_EQ_INT(st.pool_floor, 0);
        CHECK_EQ_INT(st.consumers_waited, 0);
    }
    const char *elastic = "{\"pid\": 12, \"state\": \"running\", \"id\": \"p\", \"label\": \"web\", \"forward\": \"127.0.0.1:80\","
                          " \"started\": 1, \"updated\": 2, \"pool\": {\"floor\": 4, \"ceiling\": 256, \"target\": 64, \"idle\": 3,"
                          " \"connecting\": 1, \"registering\": 32, \"joined\": 50, \"waiting\": 7, \"waited\": 190},"
                          " \"tunnels\": {\"active\": 50, \"total\": 9, \"failed\": 1}, \"registrations\":"
                          " {\"ok\": 10, \"failed\": 0}, \"bytes\": {\"in\": 5, \"out\": 6}, \"health\": {\"registrar\": \"up\","
                          " \"relay\": \"up\", \"local\": \"up\"}}";
    CHECK_CTX("status doc with the elastic pool");
    if (CHECK_RC(pod_status_parse(elastic, strlen(elastic), &st, err), 0, err)) {
        CHECK_EQ_INT(st.pool_floor, 4);
        CHECK_EQ_INT(st.pool_ceiling, 256);
        CHECK_EQ_INT(st.pool_target, 64);
        CHECK_EQ_INT(st.pool_joined, 50);
        CHECK_EQ_INT(st.consumers_waiting, 7);
        CHECK_EQ_INT(st.consumers_waited, 190);
    }
    char bad[1024];
    snprintf(bad, sizeof(bad), "%s", elastic);
    char *w = strstr(bad, "\"waited\": 190");
    if (CHECK(w != NULL)) {
        memcpy(w, "\"waited\": -19", 13);
        check_refused(pod_status_parse(bad, strlen(bad), &st, err), err, "pool.waited");
    }
    /* the reasons a component is down and the proxy, JSON-escaped by status.c */
    snprintf(bad, sizeof(bad), "%s", elastic);
    char *end = strrchr(bad, '}');
    snprintf(
        end, sizeof(bad) - (size_t)(end - bad),
        ", \"errors\": {\"registrar\": \"\", \"relay\": \"proxy http://u@p:1 answered CONNECT r:1 with 407 \\\"x\\\"\\u0001\"},"
        " \"proxy\": \"http://u@p:1\"}");
    CHECK_CTX("status doc with errors and a proxy");
    if (CHECK_RC(pod_status_parse(bad, strlen(bad), &st, err), 0, err)) {
        CHECK_EQ_STR(st.registrar_error, "");
        CHECK_EQ_STR(st.relay_error, "proxy http://u@p:1 answered CONNECT r:1 with 407 \"x\"\x01");
        CHECK_EQ_STR(st.proxy, "http://u@p:1");
    }
    CHECK_CTX("status doc");
    check_refused(pod_status_parse("{}", 2, &st, err), err, "pid");
    check_refused(pod_status_parse("{\"pid\": -1}", 11, &st, err), err, "pid");
    check_refused(pod_status_parse("{\"pid\": 1}", 10, &st, err), err, "updated");
    check_refused(pod_status_parse("nope", 4, &st, err), err, "not a status document");
}

/* run --config FILE: register's settings from a JSON file; the command line's --state-dir and
 * --log-level win; hostile files are refused naming the file and the key, never the secret. */
static void test_run_config(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN];
    static char secret_path[160], prov_path[160], doc[4096];
    snprintf(secret_path, sizeof(secret_path), "%s", puts0600("run-secret", SECRET "\n"));
    const char *pd = provision_doc("pod9", SECRET, "[\"web\", \"api\"]", "https://reg.test:8443", "pods.test", "");
    snprintf(prov_path, sizeof(prov_path), "%s", puts0600("run-prov.json", pd));

    CHECK_CTX("run: secret file, every key");
    snprintf(
        doc, sizeof(doc),
        "{\"registrar\": \"https://reg.test\", \"id\": \"pod1\", \"secret_file\": \"%s\", \"digits\": 8,"
        " \"cacert\": \"/etc/ca.pem\", \"state_dir\": \"/var/lib/x\", \"domain\": \"example.test\", \"drain_timeout\": 30,"
        " \"log_level\": \"warn\", \"services\": [{\"label\": \"web\", \"protocol\": \"https\", \"forward\": \"127.0.0.1:8080\","
        " \"tls_terminate\": true, \"alpn\": \"h2,http/1.1\", \"pool\": 8, \"pool_max\": 64}]}",
        secret_path);
    const char *cfg = put("run.json", doc, strlen(doc), 0644);
    pod_args_t *svcs = NULL;
    size_t n = 0;
    if (CHECK_RC(parse(&a, err, "run", "--config", cfg, NULL), 0, err)) {
        CHECK_EQ_INT(a.cmd, POD_CMD_RUN);
        CHECK_EQ_STR(a.config, cfg);
        CHECK_EQ_INT(a.log_level, P2M_LOG_WARN); /* the process logs at the file's level */
    }
    if (CHECK_RC(pod_run_load(&a, &svcs, &n, err), 0, err) && CHECK_EQ_INT(n, 1)) {
        CHECK_EQ_INT(svcs[0].cmd, POD_CMD_RUN);
        CHECK_EQ_STR(svcs[0].id, "pod1");
        CHECK_EQ_STR(svcs[0].label, "web");
        CHECK_EQ_STR(svcs[0].domain, "example.test");
        CHECK_EQ_STR(svcs[0].cacert, "/etc/ca.pem");
        CHECK_EQ_STR(svcs[0].state_dir, "/var/lib/x/web");
        CHECK_EQ_STR(svcs[0].alpn, "h2,http/1.1");
        CHECK_EQ_INT(svcs[0].digits, 8);
        CHECK_EQ_INT(svcs[0].pool, 8);
        CHECK_EQ_INT(svcs[0].pool_max, 64);
        CHECK_EQ_INT(svcs[0].drain_timeout, 30);
        CHECK_EQ_INT(svcs[0].tls_terminate, 1);
        CHECK_EQ_INT(svcs[0].log_level, P2M_LOG_WARN);
        CHECK_EQ_INT(svcs[0].forward.port, 8080);
        CHECK_EQ_INT(svcs[0].secret_len, 20);
    }
    pod_run_free(svcs, n);
    CHECK_CTX("run: the command line wins");
    if (CHECK_RC(parse(&a, err, "run", "--config", cfg, "--state-dir", "/srv/pod", "--log-level", "debug", NULL), 0, err) &&
        CHECK_RC(pod_run_load(&a, &svcs, &n, err), 0, err)) {
        CHECK_EQ_STR(svcs[0].state_dir, "/srv/pod/web");
        CHECK_EQ_INT(svcs[0].log_level, P2M_LOG_DEBUG);
        CHECK_EQ_INT(a.log_level, P2M_LOG_DEBUG);
        pod_run_free(svcs, n);
    }

    CHECK_CTX("run: provisioning file");
    snprintf(doc, sizeof(doc), "{\"provision\": \"%s\", \"services\": [{\"label\": \"api\", \"forward\": \"localhost:80\"}]}",
             prov_path);
    cfg = put("run-prov-cfg.json", doc, strlen(doc), 0600);
    if (CHECK_RC(parse(&a, err, "run", "--config", cfg, NULL), 0, err) && CHECK_RC(pod_run_load(&a, &svcs, &n, err), 0, err)) {
        CHECK_EQ_STR(svcs[0].id, "pod9");
        CHECK_EQ_STR(svcs[0].label, "api");
        CHECK_EQ_STR(svcs[0].domain, "pods.test");
        CHECK_EQ_INT(svcs[0].pool, 4);
        CHECK_EQ_STR(svcs[0].state_dir, ""); /* no state_dir: none for the services either */
        pod_run_free(svcs, n);
    }

    CHECK_CTX("run: several services, one process");
    snprintf(doc, sizeof(doc),
             "{\"provision\": \"%s\", \"state_dir\": \"/srv/p\", \"services\": ["
             "{\"label\": \"web\", \"forward\": \"127.0.0.1:1\", \"tls_terminate\": true},"
             "{\"label\": \"web\", \"protocol\": \"http\", \"forward\": \"127.0.0.1:2\", \"pool\": 2},"
             "{\"label\": \"api\", \"protocol\": \"tcp\", \"forward\": \"127.0.0.1:3\"}]}",
             prov_path);
    cfg = put("run-three.json", doc, strlen(doc), 0600);
    if (CHECK_RC(parse(&a, err, "run", "--config", cfg, NULL), 0, err) && CHECK_RC(pod_run_load(&a, &svcs, &n, err), 0, err) &&
        CHECK_EQ_INT(n, 3)) {
        char name[POD_SERVICE_NAME_MAX + 1];
        CHECK_EQ_STR(svcs[0].state_dir, "/srv/p/web");
        CHECK_EQ_STR(svcs[1].state_dir, "/srv/p/web-http");
        CHECK_EQ_STR(svcs[2].state_dir, "/srv/p/api-tcp");
        CHECK_EQ_INT(svcs[0].tls_terminate, 1);
        CHECK_EQ_INT(svcs[1].tls_terminate, 0);
        CHECK_EQ_INT(svcs[1].pool, 2);
        CHECK_EQ_INT(svcs[2].pool, 4);
        CHECK_EQ_INT(svcs[2].proto, P2M_PROTO_TCP);
        pod_service_name(&svcs[1], name, sizeof(name));
        CHECK_EQ_STR(name, "web-http");
        pod_run_free(svcs, n);
    }

    /* The file written by pipe2me-admin pod add -o FILE --service ...: the provisioning keys and run's. */
    CHECK_CTX("run: the provisioning keys inline");
    snprintf(doc, sizeof(doc), "%s",
             provision_doc("pod9", SECRET, "[\"web\", \"Api\"]", "https://reg.test:8443", "pods.test",
                           ", \"digits\": 8, \"cacert\": \"/etc/ca.pem\", \"state_dir\": \"/srv/i\", \"services\": ["
                           "{\"label\": \"api\", \"protocol\": \"tcp\", \"forward\": \"127.0.0.1:22\"},"
                           " {\"forward\": \"127.0.0.1:8080\", \"pool\": 2}]"));
    cfg = put("run-inline.json", doc, strlen(doc), 0600);
    if (CHECK_RC(parse(&a, err, "run", "--config", cfg, NULL), 0, err) && CHECK_RC(pod_run_load(&a, &svcs, &n, err), 0, err) &&
        CHECK_EQ_INT(n, 2)) {
        CHECK_EQ_INT(a.secret_len, 0); /* the command line's args keep no secret: each service has it */
        for (size_t i = 0; i < 2; i++) {
            CHECK_EQ_STR(svcs[i].id, "pod9");
            CHECK_EQ_STR(svcs[i].registrar, "https://reg.test:8443");
            CHECK_EQ_STR(svcs[i].domain, "pods.test");
            CHECK_EQ_STR(svcs[i].cacert, "/etc/ca.pem");
            CHECK_EQ_INT(svcs[i].secret_len, 20);
            CHECK_EQ_INT(svcs[i].digits, 8);
        }
        CHECK_EQ_STR(svcs[0].label, "api");
        CHECK_EQ_INT(svcs[0].proto, P2M_PROTO_TCP);
        CHECK_EQ_STR(svcs[0].state_dir, "/srv/i/api-tcp");
        CHECK_EQ_STR(svcs[1].label, "web"); /* none given: the first of "labels" */
        CHECK_EQ_INT(svcs[1].pool, 2);
        CHECK_EQ_STR(svcs[1].state_dir, "/srv/i/web");
        pod_run_free(svcs, n);
    }
    CHECK_CTX("run: the inline secret's file readable by group or others");
    static const mode_t open_modes[] = {0604, 0640, 0644, 0700 | 0020};
    for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        cfg = put("run-inline-open.json", doc, strlen(doc), open_modes[i]);
        check_refused(parse(&a, err, "run", "--config", cfg, NULL), err, "holds a secret but group or others may read it");
        CHECK_MSG(strstr(err, "run-inline-open.json") != NULL && strstr(err, "chmod 600") != NULL, "err: %s", check_str(err));
        CHECK_EQ_INT(a.secret_len, 0);
    }
    static const struct {
        const char *extra; /* after the provisioning keys of pod9, labels web and api */
        const char *want;
    } inline_rows[] = {
        {", \"services\": [{\"label\": \"ftp\", \"forward\": \"127.0.0.1:1\"}]",
         "services[0].label: ftp is not one of the file's \"labels\""},
        {", \"services\": [{\"forward\": \"127.0.0.1:1\"}, {\"label\": \"WEBX\", \"forward\": \"127.0.0.1:2\"}]",
         "services[1].label: webx is not one of"},
        {", \"provision\": \"/etc/p.json\", \"services\": [{\"forward\": \"127.0.0.1:1\"}]",
         "provision: the file has its own \"secret\": drop one of them"},
        {", \"secret_file\": \"/etc/s\", \"services\": [{\"forward\": \"127.0.0.1:1\"}]", "secret_file: the file has its own"},
        {", \"bogus\": 1, \"services\": [{\"forward\": \"127.0.0.1:1\"}]", "\"bogus\": unknown key"},
        {", \"digits\": 7, \"services\": [{\"forward\": \"127.0.0.1:1\"}]", "digits: expected 6 or 8"},
        {", \"pool\": 2, \"services\": [{\"forward\": \"127.0.0.1:1\"}]", "\"pool\": unknown key"},
        {", \"services\": [{\"forward\": \"127.0.0.1:1\", \"id\": \"x\"}]", "services[0].\"id\": unknown key"},
        {", \"services\": [{\"label\": \"web\"}]", "services[0]: needs \"forward\""},
        {", \"services\": []", "services: expected a list"},
        {", \"state_dir\": 1, \"services\": [{\"forward\": \"127.0.0.1:1\"}]", "state_dir: expected a string"},
    };
    for (size_t i = 0; i < sizeof(inline_rows) / sizeof(inline_rows[0]); i++) {
        CHECK_CTX("run: inline row %zu: %s", i, inline_rows[i].want);
        const char *d = provision_doc("pod9", SECRET, "[\"web\", \"api\"]", "https://reg.test", "pods.test", inline_rows[i].extra);
        cfg = put("run-inline-bad.json", d, strlen(d), 0600);
        check_refused(parse(&a, err, "run", "--config", cfg, NULL), err, inline_rows[i].want);
        CHECK_MSG(strstr(err, "run-inline-bad.json") != NULL, "err does not name the file: %s", check_str(err));
    }
    CHECK_CTX("run: inline, a bad secret or a missing key");
    {
        const char *d = provision_doc("pod9", "JBSWY3DP1", "[\"web\"]", "https://reg.test", "pods.test",
                                      ", \"services\": [{\"forward\": \"127.0.0.1:1\"}]");
        cfg = put("run-inline-bad.json", d, strlen(d), 0600);
        check_refused(parse(&a, err, "run", "--config", cfg, NULL), err, "secret: the secret is not base32");
        static const char nolabels[] = "{\"id\": \"p\", \"secret\": \"" SECRET "\", \"registrar\": \"https://r.test\", "
                                       "\"domain\": \"d.test\", \"services\": [{\"forward\": \"127.0.0.1:1\"}]}";
        cfg = put("run-inline-bad.json", nolabels, strlen(nolabels), 0600);
        check_refused(parse(&a, err, "run", "--config", cfg, NULL), err, "run-inline-bad.json: missing key \"labels\"");
    }

    /* hostile and broken files */
    static char rows_secret[8][600];
    static const struct {
        const char *text; /* %s: the secret file's path */
        const char *want;
    } rows[] = {
        {"", "not JSON"},
        {"[]", "expected a JSON object"},
        {"{\"services\": []}", "services: expected a list"},
        {"{\"services\": {}}", "services: expected a list"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\"}", "services: expected a list"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [1]}",
         "services[0]: expected an object"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"a\"}]}",
         "needs \"forward\""},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"services\": [{\"label\": \"a\", \"forward\": \"127.0.0.1:1\"}]}",
         "needs \"provision\""},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"a\", "
         "\"forward\": "
         "\"127.0.0.1:1\"}, {\"label\": \"a\", \"forward\": \"127.0.0.1:2\"}]}",
         "label a with protocol https is services[0] already"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"secret\": \"JBSWY3DP\", \"services\": "
         "[{}]}",
         "secret_file: the file has its own \"secret\": drop one of them"},
        {"{\"registrar\": \"https://r.test\", \"registrar\": \"https://s.test\", \"services\": []}", "not JSON"},
        {"{\"registrar\": 1, \"services\": [{}]}", "registrar: expected a string"},
        {"{\"registrar\": \"https://r\\u0000.test\", \"services\": []}", "not JSON"}, /* jansson refuses NUL */
        {"{\"registrar\": \"http://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"a\", "
         "\"forward\": "
         "\"127.0.0.1:1\"}]}",
         "registrar: the registrar URL must start with https://"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"a\", "
         "\"forward\": "
         "\"127.0.0.1:1\", \"pool\": 0}]}",
         "services[0].pool: expected a number"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"a\", "
         "\"forward\": "
         "\"127.0.0.1:1\", \"pool\": 1.5}]}",
         "services[0].pool: expected a whole number"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"a\", "
         "\"forward\": "
         "\"127.0.0.1:1\", \"tls_terminate\": \"yes\"}]}",
         "services[0].tls_terminate: expected true or false"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"-bad-\", "
         "\"forward\": \"127.0.0.1:1\"}]}",
         "services[0].label"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"a\", "
         "\"forward\": "
         "\"127.0.0.1:99999\"}]}",
         "services[0].forward"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"/nonexistent/s\", \"services\": [{\"label\": "
         "\"a\", "
         "\"forward\": \"127.0.0.1:1\"}]}",
         "No such file"},
        {"{\"registrar\": \"https://r.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"services\": [{\"lab\\nel\": \"a\"}]}",
         "\"lab\\x0ael\": unknown key"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char name[32];
        char *text = rows_secret[i % 8];
        snprintf(text, 600, rows[i].text, secret_path);
        snprintf(name, sizeof(name), "run-bad-%zu.json", i);
        CHECK_CTX("run: bad file %zu", i);
        cfg = put(name, text, strlen(text), 0600);
        check_refused(parse(&a, err, "run", "--config", cfg, NULL), err, rows[i].want);
        CHECK_MSG(strstr(err, name) != NULL, "err does not name the file: %s", check_str(err));
    }
    CHECK_CTX("run: command line");
    check_refused(parse(&a, err, "run", NULL), err, "run needs --config FILE");
    check_refused(parse(&a, err, "run", "--config", "/nonexistent.json", NULL), err, "No such file");
    check_refused(parse(&a, err, "run", "--config", cfg, "--pool", "3", NULL), err, "unknown option");
    check_refused(parse(&a, err, "run", "--config", dir, NULL), err, "not a regular file");
}

/* --proxy, run's "proxy" key, and the environment's https_proxy and no_proxy (pod_args_proxy_env,
 * pod_args_use_proxy): parsed as proxy.c says, the password never in an error. */
static void test_proxy(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN], doc[1024];
    const char *sf = puts0600("proxy-secret", SECRET "\n");
    const char *url = "https://reg.test:8443";
#define REG "register", "--registrar", url, "--id", "p", "--secret-file", sf, "--label", "web", "--forward", "127.0.0.1:1"

    CHECK_CTX("proxy: none");
    if (CHECK_RC(parse(&a, err, REG, NULL), 0, err)) {
        CHECK_EQ_STR(a.proxy.host, "");
        CHECK(pod_args_use_proxy(&a, "reg.test") == NULL);
        /* the environment's, when the option is absent; lower case first, "" as none */
        CHECK_RC(pod_args_proxy_env(&a, "", "http://U:pw@up.test:3128", " .reg.test ", "relay.test", err), 0, err);
        CHECK_EQ_STR(a.proxy.host, "up.test");
        CHECK_EQ_STR(a.proxy.user, "U");
        CHECK_EQ_INT(a.proxy_env, 1);
        CHECK_EQ_STR(a.no_proxy, " .reg.test ");
        CHECK(pod_args_use_proxy(&a, "reg.test") == NULL);
        CHECK(pod_args_use_proxy(&a, "relay.test") == &a.proxy);
        pod_args_wipe(&a);
        CHECK_EQ_STR(a.proxy.pass, "");
    }
    if (CHECK_RC(parse(&a, err, REG, NULL), 0, err)) {
        CHECK_RC(pod_args_proxy_env(&a, "http://low.test:1", "http://up.test:2", NULL, "*", err), 0, err);
        CHECK_EQ_STR(a.proxy.host, "low.test");
        CHECK_EQ_STR(a.no_proxy, "*");
        CHECK(pod_args_use_proxy(&a, "anything.test") == NULL);
    }
    if (CHECK_RC(parse(&a, err, REG, NULL), 0, err)) {
        CHECK_RC(pod_args_proxy_env(&a, NULL, NULL, "x", NULL, err), 0, err);
        CHECK_EQ_STR(a.proxy.host, "");
        CHECK_EQ_STR(a.no_proxy, "");
    }
    CHECK_CTX("proxy: a bad environment");
    if (CHECK_RC(parse(&a, err, REG, NULL), 0, err)) {
        check_refused(pod_args_proxy_env(&a, "https://u:Sekr1t@h:1", NULL, NULL, NULL, err), err, "https_proxy: https:// proxies");
        CHECK(strstr(err, "Sekr1t") == NULL);
        check_refused(pod_args_proxy_env(&a, NULL, "socks5://h:1", NULL, NULL, err), err, "HTTPS_PROXY: unsupported proxy scheme");
        CHECK_EQ_STR(a.proxy.host, "");
        char *big = malloc(POD_NO_PROXY_MAX + 2);
        if (CHECK(big != NULL)) {
            memset(big, 'a', POD_NO_PROXY_MAX + 1);
            big[POD_NO_PROXY_MAX + 1] = '\0';
            check_refused(pod_args_proxy_env(&a, "http://h:1", NULL, big, NULL, err), err, "no_proxy is longer than 4096");
            CHECK_EQ_STR(a.proxy.host, "");
            CHECK_EQ_STR(a.proxy.pass, "");
            big[POD_NO_PROXY_MAX] = '\0';
            CHECK_RC(pod_args_proxy_env(&a, "http://h:1", NULL, big, NULL, err), 0, err);
            CHECK_EQ_INT(strlen(a.no_proxy), POD_NO_PROXY_MAX);
            free(big);
        }
    }

    CHECK_CTX("proxy: --proxy");
    if (CHECK_RC(parse(&a, err, REG, "--proxy", "http://me:p%40ss@proxy.test:8080", NULL), 0, err)) {
        CHECK_EQ_STR(a.proxy.host, "proxy.test");
        CHECK_EQ_INT(a.proxy.port, 8080);
        CHECK_EQ_STR(a.proxy.user, "me");
        CHECK_EQ_STR(a.proxy.pass, "p@ss");
        CHECK_EQ_STR(a.proxy.shown, "http://me@proxy.test:8080");
        CHECK_EQ_INT(a.proxy_env, 0);
        /* the option wins over the environment, and no_proxy does not apply to it */
        CHECK_RC(pod_args_proxy_env(&a, "http://env.test:1", NULL, "*", NULL, err), 0, err);
        CHECK_EQ_STR(a.proxy.host, "proxy.test");
        CHECK(pod_args_use_proxy(&a, "reg.test") == &a.proxy);
        pod_args_wipe(&a);
    }
    if (CHECK_RC(parse(&a, err, REG, "--proxy=proxy.test", NULL), 0, err))
        CHECK_EQ_INT(a.proxy.port, 1080);
    check_refused(parse(&a, err, REG, "--proxy", "https://u:Sekr1t@proxy.test:1", NULL), err, "--proxy: https:// proxies");
    CHECK(strstr(err, "Sekr1t") == NULL);
    check_refused(parse(&a, err, REG, "--proxy", "http://u:Sekr1t@proxy.test:99999", NULL), err, "--proxy: the proxy URL's host");
    CHECK(strstr(err, "Sekr1t") == NULL);
    CHECK_EQ_STR(a.proxy.pass, "");
    check_refused(parse(&a, err, REG, "--proxy", "", NULL), err, "--proxy: the proxy URL is empty");
    check_refused(parse(&a, err, REG, "--proxy", "http://h:1/x", NULL), err, "path");
    check_refused(parse(&a, err, REG, "--proxy", "http://h:1", "--proxy", "http://h:2", NULL), err, "--proxy given twice");
    check_refused(parse(&a, err, REG, "--proxy", NULL), err, "--proxy needs a value");
    check_refused(parse(&a, err, "status", "--state-dir", "/x", "--proxy", "http://h:1", NULL), err, "unknown option");
    check_refused(parse(&a, err, "test", "--forward-http", "1", "--proxy", "http://h:1", NULL), err, "unknown option");

    CHECK_CTX("proxy: run's \"proxy\" key");
    snprintf(
        doc, sizeof(doc),
        "{\"registrar\": \"https://reg.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"proxy\": \"http://u:pw@px.test:3128\","
        " \"services\": [{\"label\": \"web\", \"forward\": \"127.0.0.1:1\"}]}",
        sf);
    const char *cfg = put("run-proxy.json", doc, strlen(doc), 0600);
    pod_args_t *svcs = NULL;
    size_t n = 0;
    if (CHECK_RC(parse(&a, err, "run", "--config", cfg, NULL), 0, err) && CHECK_RC(pod_run_load(&a, &svcs, &n, err), 0, err)) {
        CHECK_EQ_STR(svcs[0].proxy.host, "px.test");
        CHECK_EQ_STR(svcs[0].proxy.pass, "pw");
        pod_run_free(svcs, n);
    }
    snprintf(doc, sizeof(doc),
             "{\"registrar\": \"https://reg.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"proxy\": \"ftp://u:Sekr1t@px.test\","
             " \"services\": [{\"label\": \"web\", \"forward\": \"127.0.0.1:1\"}]}",
             sf);
    cfg = put("run-proxy-bad.json", doc, strlen(doc), 0600);
    check_refused(parse(&a, err, "run", "--config", cfg, NULL), err, "run-proxy-bad.json: proxy: unsupported proxy scheme \"ftp\"");
    CHECK(strstr(err, "Sekr1t") == NULL);
    snprintf(doc, sizeof(doc),
             "{\"registrar\": \"https://reg.test\", \"id\": \"p\", \"secret_file\": \"%s\", \"proxy\": 3128,"
             " \"services\": [{\"label\": \"web\", \"forward\": \"127.0.0.1:1\"}]}",
             sf);
    cfg = put("run-proxy-num.json", doc, strlen(doc), 0600);
    check_refused(parse(&a, err, "run", "--config", cfg, NULL), err, "proxy: expected a string");
#undef REG
    CHECK_CTX(NULL);
}

/* setup, list, and a tunnel set named on the command line of env, run and test. */
static void test_sets_args(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN], sets[128], setdir[256];
    CHECK_CTX("setup");
#define REG "--registrar", "https://reg.example:8443"
#define TOK "--auth", "p2mt_abc-DEF_123"
    snprintf(sets, sizeof(sets), "%s/sets", dir);
    if (CHECK_RC(parse(&a, err, "setup", REG, TOK, "--local-ports", "20102", "--dir", sets, NULL), 0, err)) {
        CHECK_EQ_INT(a.nprotos, 1);
        CHECK_EQ_INT(a.protos[0], P2M_PROTO_HTTPS);
        CHECK_EQ_INT(a.local_ports[0], 20102);
        CHECK_EQ_STR(a.dir, sets);
        CHECK_EQ_STR(a.auth, "p2mt_abc-DEF_123");
    }
    if (CHECK_RC(parse(&a, err, "setup", REG, TOK, "--protocols", "tcp,https,http", "--local-ports", "1,65535,1", "--label",
                       "Door-1", "--dir", sets, NULL),
                 0, err)) {
        CHECK_EQ_INT(a.nprotos, 3);
        CHECK_EQ_INT(a.protos[0], P2M_PROTO_TCP);
        CHECK_EQ_INT(a.protos[2], P2M_PROTO_HTTP);
        CHECK_EQ_INT(a.local_ports[1], 65535);
        CHECK_EQ_STR(a.label, "door-1");
    }
    check_refused(parse(&a, err, "setup", TOK, "--local-ports", "1", NULL), err, "--registrar");
    check_refused(parse(&a, err, "setup", REG, "--local-ports", "1", NULL), err, "--auth");
    check_refused(parse(&a, err, "setup", REG, TOK, NULL), err, "--local-ports");
    check_refused(parse(&a, err, "setup", REG, TOK, "--protocols", "https,http", "--local-ports", "1", NULL), err,
                  "1 port for 2 protocols");
    check_refused(parse(&a, err, "setup", REG, TOK, "--protocols", "https,https", "--local-ports", "1,2", NULL), err,
                  "https given twice");
    check_refused(parse(&a, err, "setup", REG, TOK, "--protocols", "https,", "--local-ports", "1", NULL), err, "empty item");
    check_refused(parse(&a, err, "setup", REG, TOK, "--protocols", ",", "--local-ports", "1", NULL), err, "empty item");
    check_refused(parse(&a, err, "setup", REG, TOK, "--protocols", "", "--local-ports", "1", NULL), err, "empty item");
    check_refused(parse(&a, err, "setup", REG, TOK, "--protocols", "HTTPS", "--local-ports", "1", NULL), err, "expected https");
    check_refused(parse(&a, err, "setup", REG, TOK, "--protocols", "https,http,tcp,https", "--local-ports", "1", NULL), err,
                  "more than 3");
    check_refused(parse(&a, err, "setup", REG, TOK, "--protocols", "httpsssssssssssssssss", "--local-ports", "1", NULL), err,
                  "too long");
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", "0", NULL), err, "1 to 65535");
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", "65536", NULL), err, "1 to 65535");
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", "-1", NULL), err, "1 to 65535");
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", " 80", NULL), err, "1 to 65535");
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", "80,,81", NULL), err, "empty item");
    check_refused(parse(&a, err, "setup", REG, "--auth", "", "--local-ports", "80", NULL), err, "setup token of 1 to");
    check_refused(parse(&a, err, "setup", REG, "--auth", "tok en", "--local-ports", "80", NULL), err, "never has");
    CHECK(strstr(err, "tok en") == NULL); /* the token is never quoted back */
    check_refused(parse(&a, err, "setup", REG, "--auth", "tok\r\nX-Evil: 1", "--local-ports", "80", NULL), err, "never has");
    {
        char big[POD_AUTH_MAX + 2];
        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        check_refused(parse(&a, err, "setup", REG, "--auth", big, "--local-ports", "80", NULL), err, "setup token of 1 to");
    }
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", "80", "--label", "-x", NULL), err, "--label");
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", "80", "--forward", "1.2.3.4:5", NULL), err, "unknown option");
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", "80", "--dir", "", NULL), err, "empty path");
    check_refused(parse(&a, err, "setup", "--registrar", "http://reg.example", TOK, "--local-ports", "80", NULL), err,
                  "--registrar");
    check_refused(parse(&a, err, "setup", REG, TOK, "--local-ports", "80", "extra", NULL), err, "unexpected argument");

    CHECK_CTX("list");
    if (CHECK_RC(parse(&a, err, "list", "--dir", sets, "--json", NULL), 0, err)) {
        CHECK_EQ_STR(a.dir, sets);
        CHECK_EQ_INT(a.json, 1);
    }
    check_refused(parse(&a, err, "list", "x.example", NULL), err, "unexpected argument");
    check_refused(parse(&a, err, "list", "--auth", "x", NULL), err, "unknown option");

    CHECK_CTX("a set named");
    snprintf(setdir, sizeof(setdir), "%s/web.example.org", sets);
    mkdir(sets, 0700);
    mkdir(setdir, 0700);
    check_refused(parse(&a, err, "env", "nosuch.example.org", "--dir", sets, NULL), err, "no tunnel set nosuch.example.org");
    check_refused(parse(&a, err, "env", "../../etc", "--dir", sets, NULL), err, "not a tunnel set");
    check_refused(parse(&a, err, "env", "a/b.example", "--dir", sets, NULL), err, "not a tunnel set");
    check_refused(parse(&a, err, "run", "nodot", "--dir", sets, NULL), err, "not a tunnel set");
    check_refused(parse(&a, err, "run", "\x01.example", "--dir", sets, NULL), err, "\\x01");
    check_refused(parse(&a, err, "run", "web.example.org", "other.example.org", "--dir", sets, NULL), err, "unexpected argument");
    check_refused(parse(&a, err, "register", "web.example.org", NULL), err, "unexpected argument");
    check_refused(parse(&a, err, "run", "--config", "/x", "--dir", sets, NULL), err, "--dir goes with a tunnel set");
    {
        char cfg[300];
        snprintf(cfg, sizeof(cfg), "%s/pod.json", setdir);
        const char *doc =
            provision_doc("setup-0123456789ab", SECRET, "[\"web\"]", "https://reg.example:8443", "example.org",
                          ", \"services\": [{\"label\": \"web\", \"protocol\": \"http\", \"forward\": \"127.0.0.1:8080\","
                          " \"url\": \"http://web.example.org:8080/\"}]");
        int fd = open(cfg, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, doc, strlen(doc)) != (ssize_t)strlen(doc))
            abort();
        close(fd);
        if (CHECK_RC(parse(&a, err, "env", "Web.Example.Org", "--dir", sets, NULL), 0, err)) {
            CHECK_EQ_STR(a.set, "web.example.org");
            CHECK_EQ_STR(a.config, cfg);
        }
        if (CHECK_RC(parse(&a, err, "run", "web.example.org", "--dir", sets, "--log-level", "debug", NULL), 0, err)) {
            CHECK_EQ_STR(a.config, cfg);
            CHECK_EQ_INT(a.log_level, P2M_LOG_DEBUG);
        }
        if (CHECK_RC(parse(&a, err, "test", "web.example.org", "--dir", sets, NULL), 0, err))
            CHECK_EQ_STR(a.config, cfg);
        check_refused(parse(&a, err, "run", "web.example.org", "--dir", sets, "--state-dir", "/x", NULL), err,
                      "takes only --dir and --log-level");
        check_refused(parse(&a, err, "test", "web.example.org", "--dir", sets, "--forward-http", "80", NULL), err,
                      "takes only --dir and --log-level");
        check_refused(parse(&a, err, "test", "--config", cfg, "--forward-http", "80", NULL), err, "not both");
        /* A url that is not one, in a run file. */
        doc = provision_doc("p", SECRET, "[\"web\"]", "https://reg.example:8443", "example.org",
                            ", \"services\": [{\"label\": \"web\", \"forward\": \"127.0.0.1:8080\", \"url\": \"ftp://x/\"}]");
        const char *bad = put("run-url.json", doc, strlen(doc), 0600);
        check_refused(parse(&a, err, "run", "--config", bad, NULL), err, "services[0].url: expected an http:// or https:// URL");
        doc =
            provision_doc("p", SECRET, "[\"web\"]", "https://reg.example:8443", "example.org",
                          ", \"services\": [{\"label\": \"web\", \"forward\": \"127.0.0.1:8080\", \"url\": \"https://x/\\\"'\"}]");
        bad = put("run-url2.json", doc, strlen(doc), 0600);
        check_refused(parse(&a, err, "run", "--config", bad, NULL), err, "services[0].url: a space, quote");
    }
#undef REG
#undef TOK
    CHECK_CTX(NULL);
}

/* The registrar's answer to POST /setup into a set's run file: hostile answers are refused with a
 * reason that never shows the secret; a good one loads as a run file. */
static void test_setup_config(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN], fqdn[P2M_DOMAIN_MAX + 1];
    char *text;
    CHECK_CTX("setup answer");
    memset(&a, 0, sizeof(a));
    a.protos[0] = P2M_PROTO_HTTPS;
    a.protos[1] = P2M_PROTO_HTTP;
    a.nprotos = 2;
    a.local_ports[0] = 20102;
    a.local_ports[1] = 20103;
    a.nports = 2;
#define SVCS                                                                                                                       \
    "\"services\": [{\"label\": \"handsome-lemon-panda\", \"protocol\": \"https\", \"url\": "                                      \
    "\"https://handsome-lemon-panda.example.org/\"},"                                                                              \
    " {\"label\": \"handsome-lemon-panda\", \"protocol\": \"http\"}]"
#define ANSWER(extra)                                                                                                              \
    "{\"id\": \"setup-0123456789ab\", \"secret\": \"" SECRET "\", \"digits\": 6, \"labels\": [\"handsome-lemon-panda\"], "         \
    "\"registrar\": \"https://example.org\", \"domain\": \"example.org\", \"otpauth\": \"otpauth://totp/pipe2me:x?secret=" SECRET  \
    "\"" extra "}"
    static const struct {
        const char *answer, *want;
    } bad[] = {
        {"", "not JSON"},
        {"[]", "expected a JSON object"},
        {"{\"secret\": \"" SECRET "\", \"secret\": \"x\"}", "not JSON"},
        {ANSWER(""), "\"services\": expected a list"},
        {ANSWER(", \"services\": []"), "\"services\": expected a list"},
        {ANSWER(", \"services\": [{}, {}]"), "services[0].label"},
        {ANSWER(", " SVCS ", \"state_dir\": \"/etc\""), "unknown key \"state_dir\""},
        {ANSWER(", " SVCS ", \"cacert\": \"/x\""), "unknown key \"cacert\""},
        {ANSWER(", \"services\": [{\"label\": \"other\", \"protocol\": \"https\"}, {\"label\": \"handsome-lemon-panda\", "
                "\"protocol\": "
                "\"http\"}]"),
         "services[0].label"},
        {ANSWER(", \"services\": [{\"label\": \"handsome-lemon-panda\", \"protocol\": \"http\"}, {\"label\": "
                "\"handsome-lemon-panda\", \"protocol\": \"https\"}]"),
         "services[0].protocol: expected https"},
        {ANSWER(", \"services\": [{\"label\": \"handsome-lemon-panda\", \"protocol\": \"https\", \"forward\": \"10.0.0.1:22\"}, "
                "{\"label\": \"handsome-lemon-panda\", \"protocol\": \"http\"}]"),
         "unknown key \"forward\""},
        {ANSWER(", \"services\": [{\"label\": \"handsome-lemon-panda\", \"protocol\": \"https\", \"url\": 1}, "
                "{\"label\": \"handsome-lemon-panda\", \"protocol\": \"http\"}]"),
         "services[0].url: expected a string"},
        {"{\"labels\": [\"a\", \"b\"], \"domain\": \"example.org\", " SVCS "}", "\"labels\""},
        {"{\"labels\": [\"UPPER\"], \"domain\": \"example.org\", " SVCS "}", "labels[0]"},
        {"{\"labels\": [\"handsome-lemon-panda\"], \"domain\": \"../etc\", " SVCS "}", "\"domain\""},
        {"{\"labels\": [\"handsome-lemon-panda\"], \"domain\": \"a\\u0000b\", " SVCS "}", "not JSON"}, /* jansson refuses NUL */
        {"{\"labels\": [\"handsome-lemon-panda\"], \"domain\": \"Example.org\", " SVCS "}", "\"domain\""},
        {"{\"labels\": [\"handsome-lemon-panda\"], \"\\u0001key\": 1}", "unknown key \"\\x01key\""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_CTX("setup answer %zu", i);
        text = pod_setup_config(bad[i].answer, strlen(bad[i].answer), &a, "/sets/x", NULL, fqdn, err);
        CHECK(text == NULL);
        free(text);
        check_refused(text == NULL ? -1 : 0, err, bad[i].want);
    }
    CHECK_CTX("setup answer, wrong label asked");
    snprintf(a.label, sizeof(a.label), "wanted");
    text = pod_setup_config(ANSWER(", " SVCS), strlen(ANSWER(", " SVCS)), &a, "/sets/x", NULL, fqdn, err);
    check_refused(text == NULL ? -1 : 0, err, "not wanted as asked");
    free(text);
    a.label[0] = '\0';

    CHECK_CTX("setup answer, good");
    char setdir[200], cfg[300];
    snprintf(setdir, sizeof(setdir), "%s/handsome-lemon-panda.example.org", dir);
    text = pod_setup_config(ANSWER(", " SVCS), strlen(ANSWER(", " SVCS)), &a, setdir, "/ca.pem", fqdn, err);
    if (CHECK_MSG(text != NULL, "refused: %s", check_str(err))) {
        CHECK_EQ_STR(fqdn, "handsome-lemon-panda.example.org");
        CHECK(strstr(text, "\"forward\": \"127.0.0.1:20102\"") != NULL);
        CHECK(strstr(text, "\"forward\": \"127.0.0.1:20103\"") != NULL);
        CHECK(strstr(text, "\"tls_terminate\": true") != NULL);
        CHECK(strstr(text, "\"cacert\": \"/ca.pem\"") != NULL);
        CHECK(strstr(text, "\"url\": \"https://handsome-lemon-panda.example.org/\"") != NULL);
        mkdir(setdir, 0700);
        snprintf(cfg, sizeof(cfg), "%s/pod.json", setdir);
        int fd = open(cfg, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
            abort();
        close(fd);
        pod_args_t run, *svcs;
        size_t n;
        memset(&run, 0, sizeof(run));
        run.cmd = POD_CMD_RUN;
        snprintf(run.config, sizeof(run.config), "%s", cfg);
        if (CHECK_RC(pod_run_load(&run, &svcs, &n, err), 0, err)) {
            CHECK_EQ_INT(n, 2);
            CHECK_EQ_INT(svcs[0].tls_terminate, 1);
            CHECK_EQ_INT(svcs[1].proto, P2M_PROTO_HTTP);
            CHECK_EQ_STR(svcs[0].url, "https://handsome-lemon-panda.example.org/");
            CHECK_EQ_STR(svcs[1].url, "");
            CHECK_EQ_STR(svcs[0].domain, "example.org");
            pod_run_free(svcs, n);
        }
        explicit_bzero(text, strlen(text));
        free(text);
    }
#undef ANSWER
#undef SVCS
    CHECK_CTX(NULL);
}

/* --direct-lan, --direct-public and --source: address literals only, each refusal one line and
 * naming the option; the run file's direct_lan, direct_public and source the same. */
static void test_direct_flags(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN], doc[1024];
    const char *sf = puts0600("secret-direct", SECRET "\n");
    const char *url = "https://pipe2me.localhost:8443";
#define DBASE "register", "--registrar", url, "--id", "p", "--secret-file", sf, "--label", "web", "--forward", "127.0.0.1:80"

    CHECK_CTX("direct: none by default");
    if (CHECK_RC(parse(&a, err, DBASE, NULL), 0, err)) {
        CHECK_EQ_STR(a.direct_lan.host, "");
        CHECK_EQ_STR(a.direct_public.host, "");
        CHECK_EQ_STR(a.source, "");
    }
    static const struct {
        const char *value, *host;
        unsigned port;
    } good[] = {
        {"127.0.0.21:8443", "127.0.0.21", 8443},
        {"192.168.1.20:1", "192.168.1.20", 1},
        {"10.0.0.1:65535", "10.0.0.1", 65535},
        {"[::1]:443", "::1", 443},
        {"[2001:DB8:0:0::1]:8443", "2001:db8::1", 8443}, /* canonical: what the registration declares */
        {"[::ffff:192.0.2.1]:80", "192.0.2.1", 80}, /* the registrar's canonical form: the IPv4 host */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK_CTX("--direct-lan %s", good[i].value);
        if (CHECK_RC(parse(&a, err, DBASE, "--direct-lan", good[i].value, NULL), 0, err)) {
            CHECK_EQ_STR(a.direct_lan.host, good[i].host);
            CHECK_EQ_INT(a.direct_lan.port, good[i].port);
        }
        CHECK_CTX("--direct-public %s", good[i].value);
        if (CHECK_RC(parse(&a, err, DBASE, "--direct-lan", "10.0.0.2:9000", "--direct-public", good[i].value, NULL), 0, err)) {
            CHECK_EQ_STR(a.direct_public.host, good[i].host);
            CHECK_EQ_INT(a.direct_public.port, good[i].port);
            CHECK_EQ_STR(a.direct_lan.host, "10.0.0.2");
        }
    }
    char longv[300];
    memset(longv, '1', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    static const char *bad[] = {
        "",                 /* empty */
        ":8443",            /* no address: the pod must say where */
        "8443",             /* a port alone */
        "127.0.0.21",       /* no port */
        "127.0.0.21:",      /* empty port */
        "127.0.0.21:0",     /* port 0 */
        "127.0.0.21:65536", /* port + 1 */
        "127.0.0.21:99999999999",
        "127.0.0.21:+80",
        "127.0.0.21:-1",
        "127.0.0.21: 80",
        "127.0.0.21:80 ",
        "127.0.0.21:0x50",
        "127.0.0.21:80:81",    /* two ports */
        "localhost:8443",      /* a name: never resolved */
        "pod.example:8443",    /* a name */
        "127.1:8443",          /* inet_aton's short form */
        "0127.0.0.1:8443",     /* octal-looking */
        "127.0.0.256:8443",    /* octet + 1 */
        "127.0.0.1.1:8443",    /* five octets */
        " 127.0.0.1:8443",     /* space */
        "0.0.0.0:8443",        /* unspecified: not one host */
        "255.255.255.255:80",  /* broadcast */
        "224.0.0.1:80",        /* multicast */
        "::1:8443",            /* IPv6 without brackets */
        "[::1]",               /* no port */
        "[::1]8443",           /* no colon */
        "[::1:8443",           /* unclosed */
        "[]:8443",             /* empty brackets */
        "[::]:8443",           /* unspecified */
        "[ff02::1]:8443",      /* multicast */
        "[fe80::1%eth0]:8443", /* a zone */
        "[127.0.0.1]:8443",    /* IPv4 in brackets */
        "[::1]:80:81",
        "127.0.0.1:8443\n",   /* newline */
        "127.0.0.1\x01:8443", /* control byte */
        "\xff\xfe:80",        /* not ASCII */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_CTX("--direct-lan %s", check_str(bad[i]));
        check_refused(parse(&a, err, DBASE, "--direct-lan", bad[i], NULL), err, "--direct-lan: ");
        CHECK_EQ_INT(a.secret_len, 0);
        CHECK_CTX("--direct-public %s", check_str(bad[i]));
        check_refused(parse(&a, err, DBASE, "--direct-lan", "10.0.0.2:9000", "--direct-public", bad[i], NULL), err,
                      "--direct-public: ");
    }
    CHECK_CTX("--direct-lan overlong");
    check_refused(parse(&a, err, DBASE, "--direct-lan", longv, NULL), err, "--direct-lan: expected ADDR:PORT, at most");
    CHECK_CTX("--direct-public without --direct-lan");
    check_refused(parse(&a, err, DBASE, "--direct-public", "203.0.113.7:443", NULL), err, "--direct-public needs --direct-lan");
    CHECK_CTX("--direct-lan twice, with =, on other commands");
    check_refused(parse(&a, err, DBASE, "--direct-lan", "10.0.0.2:1", "--direct-lan", "10.0.0.2:2", NULL), err,
                  "--direct-lan given twice");
    if (CHECK_RC(parse(&a, err, DBASE, "--direct-lan=10.0.0.2:9000", NULL), 0, err))
        CHECK_EQ_INT(a.direct_lan.port, 9000);
    check_refused(parse(&a, err, "test", "--forward-http", "80", "--direct-lan", "10.0.0.2:1", NULL), err, "unknown option");
    check_refused(parse(&a, err, "env", "--direct-lan", "10.0.0.2:1", NULL), err, "unknown option");
    check_refused(parse(&a, err, "status", "--state-dir", dir, "--source", "10.0.0.2", NULL), err, "unknown option");

    static const struct {
        const char *value, *want;
    } good_src[] = {{"127.0.0.20", "127.0.0.20"}, {"::1", "::1"}, {"[::1]", "::1"}, {"2001:DB8::0:1", "2001:db8::1"}};
    for (size_t i = 0; i < sizeof(good_src) / sizeof(good_src[0]); i++) {
        CHECK_CTX("--source %s", good_src[i].value);
        if (CHECK_RC(parse(&a, err, DBASE, "--source", good_src[i].value, NULL), 0, err))
            CHECK_EQ_STR(a.source, good_src[i].want);
    }
    static const char *bad_src[] = {"",      "localhost",   "127.0.0.20:80", "[::1]:80", "0.0.0.0",
                                    "::",    "[::]",        "224.0.0.5",     "[::1",     "::1]",
                                    "127.1", "127.0.0.20 ", "fe80::1%lo",    "\xff",     "1.2.3.4\n"};
    for (size_t i = 0; i < sizeof(bad_src) / sizeof(bad_src[0]); i++) {
        CHECK_CTX("--source %s", check_str(bad_src[i]));
        check_refused(parse(&a, err, DBASE, "--source", bad_src[i], NULL), err, "--source: ");
    }
    check_refused(parse(&a, err, DBASE, "--source", longv, NULL), err, "--source: ");

    CHECK_CTX("run file: direct_lan, direct_public, source");
    snprintf(doc, sizeof(doc),
             "{\"registrar\": \"%s\", \"id\": \"pod1\", \"secret_file\": \"%s\", \"source\": \"127.0.0.20\", \"services\": "
             "[{\"label\": \"web\", \"forward\": \"127.0.0.1:80\", \"direct_lan\": \"127.0.0.21:9443\", \"direct_public\": "
             "\"[2001:db8::7]:443\"}, {\"label\": \"web\", \"protocol\": \"tcp\", \"forward\": \"127.0.0.1:81\"}]}",
             url, sf);
    const char *cfg = put("run-direct.json", doc, strlen(doc), 0644);
    pod_args_t *svcs = NULL;
    size_t n = 0;
    if (CHECK_RC(parse(&a, err, "run", "--config", cfg, NULL), 0, err) && CHECK_RC(pod_run_load(&a, &svcs, &n, err), 0, err) &&
        CHECK_EQ_INT(n, 2)) {
        CHECK_EQ_STR(svcs[0].direct_lan.host, "127.0.0.21");
        CHECK_EQ_INT(svcs[0].direct_lan.port, 9443);
        CHECK_EQ_STR(svcs[0].direct_public.host, "2001:db8::7");
        CHECK_EQ_INT(svcs[0].direct_public.port, 443);
        CHECK_EQ_STR(svcs[0].source, "127.0.0.20");
        CHECK_EQ_STR(svcs[1].direct_lan.host, "");
        CHECK_EQ_STR(svcs[1].source, "127.0.0.20"); /* pod-wide */
    }
    pod_run_free(svcs, n);
    static const struct {
        const char *svc, *top, *want;
    } bad_cfg[] = {
        {"\"direct_lan\": \"localhost:1\"", "", "services[0].direct_lan: expected an IPv4 literal or a bracketed IPv6 literal, not a name"},
        {"\"direct_lan\": 9443", "", "services[0].direct_lan: expected a string"},
        {"\"direct_lan\": \"127.0.0.1:0\"", "", "services[0].direct_lan: expected a port"},
        {"\"direct_public\": \"203.0.113.7:443\"", "", "services[0].direct_public: --direct-public needs --direct-lan"},
        {"\"direct_lan\": \"127.0.0.1:1\", \"direct_public\": \"[::1]\"", "", "services[0].direct_public: expected [IPv6]:PORT"},
        {"\"source\": \"127.0.0.20\"", "", "services[0].\"source\": unknown key"},
        {"", "\"source\": \"host.example\",", "source: not an IPv4 address"},
        {"", "\"source\": true,", "source: expected a string"},
        {"", "\"direct_lan\": \"127.0.0.1:1\",", "\"direct_lan\": unknown key"},
    };
    for (size_t i = 0; i < sizeof(bad_cfg) / sizeof(bad_cfg[0]); i++) {
        CHECK_CTX("run file: %s%s", bad_cfg[i].top, bad_cfg[i].svc);
        snprintf(doc, sizeof(doc),
                 "{%s \"registrar\": \"%s\", \"id\": \"pod1\", \"secret_file\": \"%s\", \"services\": [{\"label\": \"web\", "
                 "\"forward\": \"127.0.0.1:80\"%s%s}]}",
                 bad_cfg[i].top, url, sf, bad_cfg[i].svc[0] != '\0' ? ", " : "", bad_cfg[i].svc);
        cfg = put("run-direct-bad.json", doc, strlen(doc), 0644);
        check_refused(parse(&a, err, "run", "--config", cfg, NULL), err, bad_cfg[i].want);
    }
#undef DBASE
}

/* A refused setup leaves neither --proxy's password nor --auth's token in *a (found by fuzz_pod_args). */
static void test_setup_refusal_wipes(void)
{
    pod_args_t a;
    char err[P2M_ERR_LEN];
    static const char zero[sizeof(a.proxy.pass)];
    CHECK_CTX("setup refused after --proxy with a password");
    check_refused(parse(&a, err, "setup", "--registrar", "https://reg.test", "--proxy", "http://u:sekret@proxy.test:3128", NULL),
                  err, "setup needs --auth");
    CHECK_MSG(memcmp(a.proxy.pass, zero, sizeof(zero)) == 0, "the proxy password is left in *a");
    CHECK_CTX("setup refused after --auth");
    check_refused(parse(&a, err, "setup", "--registrar", "https://reg.test", "--auth", "tok3n", NULL), err, "--local-ports");
    CHECK_MSG(a.auth[0] == '\0', "the token is left in *a: %s", check_str(a.auth));
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/unit-pod-args.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_commands();
    test_register_flags();
    test_service_flags();
    test_secret_file();
    test_provision();
    test_digits_flag();
    test_other_commands();
    test_url();
    test_env_quote();
    test_status_doc();
    test_run_config();
    test_proxy();
    test_sets_args();
    test_setup_config();
    test_direct_flags();
    test_setup_refusal_wipes();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        check_note("could not remove %s", dir);
    return check_done("pod_args");
}
