/* Unit tests for the TSIG key file parser of lib/dnsupd.c (p2m/dnsupd.h): what tsig-keygen
 * writes, the other algorithms, comments and layout, then hostile rows (empty, NUL, truncated at
 * every byte, duplicates, bad base64, overlong names and secrets, a second statement). No refusal
 * may quote the secret. Then p2m_tsig_key_load: the mode rule (0600 and 0400 only), a directory,
 * a missing file, an oversized one; and p2m_dnsupd_key_check. The updates themselves need a DNS
 * server: tests/e2e/75-dns-update.sh runs them against knotd. */

#include "check.h"
#include "p2m/dnsupd.h"
#include "p2m/err.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1hcHBlYXI="       /* base64 of "secret-that-must-never-appear" */
#define SECRET_B "VGhpcyBJcyBBIDMyIEJ5dGUgU2VjcmV0ISEhISEhISE=" /* 32 bytes */

static const char keygen[] = "key \"p2m-test\" {\n\talgorithm hmac-sha256;\n\tsecret \"" SECRET_B "\";\n};\n";

struct row {
    const char *in;
    const char *name, *alg; /* NULL: refused */
    const char *err;        /* part of the refusal */
};

static const struct row rows[] = {
    {keygen, "p2m-test", "hmac-sha256", NULL},
    {"key \"k\" { algorithm hmac-sha512; secret \"" SECRET "\"; };", "k", "hmac-sha512", NULL},
    {"key \"k\" { algorithm hmac-sha384; secret \"" SECRET "\"; };", "k", "hmac-sha384", NULL},
    {"key \"k\" { algorithm hmac-sha1; secret \"" SECRET "\"; };", "k", "hmac-sha1", NULL},
    {"key \"k\" { algorithm HMAC-SHA256.; secret \"" SECRET "\"; };", "k", "hmac-sha256", NULL},
    {"key \"k\" { algorithm \"hmac-sha256\"; secret \"" SECRET "\"; };", "k", "hmac-sha256", NULL},
    {"key \"k\" { secret \"" SECRET "\"; algorithm hmac-sha256; };", "k", "hmac-sha256", NULL},
    {"KEY k.example. { algorithm hmac-sha256; secret \"" SECRET "\"; };", "k.example", "hmac-sha256", NULL},
    {"# made by hand\n// another\n/* a\nblock */ key \"a_b.c-d\"{algorithm hmac-sha256;secret \"" SECRET "\";};\r\n", "a_b.c-d",
     "hmac-sha256", NULL},
    {"key \"k\" { algorithm hmac-sha256; secret \"QQ==\"; };", "k", "hmac-sha256", NULL},

    {"", NULL, NULL, "expected key"},
    {"   \n# only a comment\n", NULL, NULL, "line 3: expected key"},
    {"/* unclosed", NULL, NULL, "expected key"},
    {"zone \"k\" { };", NULL, NULL, "expected key"},
    {"key { algorithm hmac-sha256; secret \"" SECRET "\"; };", NULL, NULL, "key name"},
    {"key \"\" { algorithm hmac-sha256; secret \"" SECRET "\"; };", NULL, NULL, "key name"},
    {"key \"a..b\" { algorithm hmac-sha256; secret \"" SECRET "\"; };", NULL, NULL, "key name"},
    {"key \"a b\" { algorithm hmac-sha256; secret \"" SECRET "\"; };", NULL, NULL, "key name"},
    {"key \"a\\\"b\" { algorithm hmac-sha256; secret \"" SECRET "\"; };", NULL, NULL, "key name"},
    {"key \"k\" algorithm hmac-sha256; secret \"" SECRET "\"; };", NULL, NULL, "expected {"},
    {"key \"k\" { algorithm hmac-md5; secret \"" SECRET "\"; };", NULL, NULL, "algorithm must be"},
    {"key \"k\" { algorithm hmac-sha256x; secret \"" SECRET "\"; };", NULL, NULL, "algorithm must be"},
    {"key \"k\" { algorithm; secret \"" SECRET "\"; };", NULL, NULL, "algorithm must be"},
    {"key \"k\" { algorithm hmac-sha256; algorithm hmac-sha256; secret \"" SECRET "\"; };", NULL, NULL, "twice"},
    {"key \"k\" { algorithm hmac-sha256; secret \"" SECRET "\"; secret \"" SECRET "\"; };", NULL, NULL, "twice"},
    {"key \"k\" { secret \"" SECRET "\"; };", NULL, NULL, "needs an algorithm"},
    {"key \"k\" { algorithm hmac-sha256; };", NULL, NULL, "needs a secret"},
    {"key \"k\" { algorithm hmac-sha256; secret " SECRET "; };", NULL, NULL, "quoted base64"},
    {"key \"k\" { algorithm hmac-sha256; secret \"\"; };", NULL, NULL, "quoted base64"},
    {"key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0*\"; };", NULL, NULL, "quoted base64"},
    {"key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0L\"; };", NULL, NULL, "quoted base64"},
    {"key \"k\" { algorithm hmac-sha256; secret \"c2Vj=mV0\"; };", NULL, NULL, "quoted base64"},
    {"key \"k\" { algorithm hmac-sha256; secret \"====\"; };", NULL, NULL, "quoted base64"},
    {"key \"k\" { algorithm hmac-sha256; secret \"" SECRET "\n\"; };", NULL, NULL, "quoted base64"},
    {"key \"k\" { algorithm hmac-sha256 secret \"" SECRET "\"; };", NULL, NULL, "expected ; after the algorithm"},
    {"key \"k\" { algorithm hmac-sha256; secret \"" SECRET "\" };", NULL, NULL, "expected ; after the secret"},
    {"key \"k\" { algorithm hmac-sha256; secret \"" SECRET "\"; }", NULL, NULL, "expected ; after }"},
    {"key \"k\" { algorithm hmac-sha256; secret \"" SECRET "\"; nope yes; };", NULL, NULL, "expected algorithm, secret or }"},
    {"key \"k\" { algorithm hmac-sha256; secret \"" SECRET "\"; }; key \"j\" { };", NULL, NULL, "one key statement"},
    {"key \"k\" { algorithm hmac-sha256; secret \"" SECRET "\"; }; \x01", NULL, NULL, "one key statement"},
};

/* No refusal quotes the secret, nor any part of it long enough to matter. */
static void check_no_secret(const char *err)
{
    CHECK_MSG(strstr(err, SECRET) == NULL && strstr(err, "c2VjcmV0") == NULL && strstr(err, SECRET_B) == NULL &&
                  strstr(err, "VGhpcyBJ") == NULL,
              "err quotes the secret: %s", check_str(err));
}

static int parse(const char *s, size_t len, p2m_tsig_key_t *key, char *err)
{
    char *in = check_exact_copy(s, len);
    err[0] = '\0';
    int rc = p2m_tsig_key_parse(in, len, key, err);
    free(in);
    return rc;
}

static void test_rows(void)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        p2m_tsig_key_t key;
        char err[P2M_ERR_LEN];
        CHECK_CTX("row %zu: %s", i, check_bytes(r->in, strlen(r->in)));
        int rc = parse(r->in, strlen(r->in), &key, err);
        if (r->name != NULL) {
            if (!CHECK_RC(rc, 0, err))
                continue;
            CHECK_EQ_STR(key.name, r->name);
            CHECK_EQ_STR(key.algorithm, r->alg);
            CHECK(strlen(key.secret) > 0 && strchr(key.secret, '"') == NULL);
        } else {
            check_refusal(rc, err, r->err);
            check_no_secret(err);
            CHECK(key.name[0] == '\0' && key.secret[0] == '\0');
        }
    }
    CHECK_CTX(NULL);
}

/* Every proper prefix of the tsig-keygen file is refused (it ends with the final ";"), every
 * refusal is one clean line, and none quotes the secret. */
static void test_prefixes(void)
{
    size_t len = strlen(keygen);
    for (size_t n = 0; n + 1 < len; n++) {
        p2m_tsig_key_t key;
        char err[P2M_ERR_LEN];
        CHECK_CTX("prefix %zu: %s", n, check_bytes(keygen, n));
        int rc = parse(keygen, n, &key, err);
        /* the prefix that stops right after "};" is the whole statement */
        if (n == len - 1) {
            CHECK_RC(rc, 0, err);
            continue;
        }
        CHECK_RC(rc, -1, err);
        check_refusal(rc, err, "tsig key: line ");
        check_no_secret(err);
    }
    CHECK_CTX(NULL);
}

static void test_limits(void)
{
    p2m_tsig_key_t key;
    char err[P2M_ERR_LEN], buf[4096];
    const char nul[] = "key \"k\" { algorithm hmac-sha256; secret \"" SECRET "\"; };\0";

    CHECK_CTX("NUL byte");
    check_refusal(parse(nul, sizeof(nul) - 1, &key, err), err, "NUL");

    /* a 63-byte label and a 253-byte name pass; 64 and 254 do not */
    char label[70], name[300];
    memset(label, 'a', 63);
    label[63] = '\0';
    snprintf(buf, sizeof(buf), "key \"%s\" { algorithm hmac-sha256; secret \"%s\"; };", label, SECRET);
    CHECK_CTX("63-byte label");
    CHECK_RC(parse(buf, strlen(buf), &key, err), 0, err);
    snprintf(buf, sizeof(buf), "key \"%sa\" { algorithm hmac-sha256; secret \"%s\"; };", label, SECRET);
    CHECK_CTX("64-byte label");
    check_refusal(parse(buf, strlen(buf), &key, err), err, "key name");
    snprintf(name, sizeof(name), "%s.%s.%s.%.61s", label, label, label, label); /* 63*3 + 61 + 3 = 253 */
    snprintf(buf, sizeof(buf), "key \"%s\" { algorithm hmac-sha256; secret \"%s\"; };", name, SECRET);
    CHECK_CTX("253-byte name");
    if (CHECK_RC(parse(buf, strlen(buf), &key, err), 0, err))
        CHECK_EQ_INT(strlen(key.name), 253);
    snprintf(buf, sizeof(buf), "key \"%sb\" { algorithm hmac-sha256; secret \"%s\"; };", name, SECRET);
    CHECK_CTX("254-byte name");
    check_refusal(parse(buf, strlen(buf), &key, err), err, "key name");

    /* a 512-character secret passes, 516 does not */
    char sec[600];
    memset(sec, 'A', 512);
    sec[512] = '\0';
    snprintf(buf, sizeof(buf), "key k { algorithm hmac-sha256; secret \"%s\"; };", sec);
    CHECK_CTX("512-character secret");
    CHECK_RC(parse(buf, strlen(buf), &key, err), 0, err);
    memset(sec, 'A', 516);
    sec[516] = '\0';
    snprintf(buf, sizeof(buf), "key k { algorithm hmac-sha256; secret \"%s\"; };", sec);
    CHECK_CTX("516-character secret");
    check_refusal(parse(buf, strlen(buf), &key, err), err, "at most 512");
    CHECK_CTX(NULL);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!CHECK(fd >= 0))
        return;
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    CHECK(chmod(path, mode) == 0);
}

static void test_load(void)
{
    char dir[] = "/tmp/p2m-unit-dnsupd.XXXXXX", path[128], err[P2M_ERR_LEN];
    p2m_tsig_key_t key;
    static const struct {
        mode_t mode;
        int ok;
    } modes[] = {{0600, 1}, {0400, 1}, {0640, 0}, {0604, 0}, {0644, 0}, {0660, 0}, {0602, 0}, {0620, 0}, {0610, 0}};

    if (!CHECK(mkdtemp(dir) != NULL))
        return;
    snprintf(path, sizeof(path), "%s/key.conf", dir);
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        CHECK_CTX("mode %04o", (unsigned)modes[i].mode);
        write_file(path, keygen, modes[i].mode);
        int rc = p2m_tsig_key_load(path, &key, err);
        if (modes[i].ok) {
            if (CHECK_RC(rc, 0, err)) {
                CHECK_EQ_STR(key.name, "p2m-test");
                CHECK_EQ_STR(key.secret, SECRET_B);
            }
        } else {
            check_refusal(rc, err, "chmod 600");
            check_no_secret(err);
        }
    }
    CHECK_CTX("a bad file names the path and the line");
    write_file(path, "key \"k\" {\n algorithm hmac-sha256;\n secret \"" SECRET "\"\n};\n", 0600);
    check_refusal(p2m_tsig_key_load(path, &key, err), err, "key.conf: tsig key: line 4: expected ;");
    check_no_secret(err);

    CHECK_CTX("oversized file");
    char *big = malloc(P2M_TSIG_FILE_MAX + 2);
    memset(big, ' ', P2M_TSIG_FILE_MAX + 1);
    big[P2M_TSIG_FILE_MAX + 1] = '\0';
    write_file(path, big, 0600);
    free(big);
    check_refusal(p2m_tsig_key_load(path, &key, err), err, "larger than");

    CHECK_CTX("missing file");
    unlink(path);
    check_refusal(p2m_tsig_key_load(path, &key, err), err, "No such file");
    CHECK_CTX("directory");
    chmod(dir, 0700);
    check_refusal(p2m_tsig_key_load(dir, &key, err), err, "not a regular file");
    rmdir(dir);

    CHECK_CTX("key check");
    CHECK_RC(p2m_tsig_key_parse(keygen, strlen(keygen), &key, err), 0, err);
    CHECK_RC(p2m_dnsupd_key_check(&key, err), 0, err);
    snprintf(key.algorithm, sizeof(key.algorithm), "hmac-sha384");
    check_refusal(p2m_dnsupd_key_check(&key, err), err, "hmac-sha384");
    p2m_tsig_key_clear(&key);
    CHECK(key.secret[0] == '\0' && key.name[0] == '\0');
    CHECK_CTX(NULL);
}

/* Arguments refused before anything is sent: nothing listens on port 9 of 127.0.0.1 here, and a
 * refusal must come without waiting for it. */
static void test_update_args(void)
{
    p2m_dnsupd_conf_t conf = {.timeout_ms = 100};
    char err[P2M_ERR_LEN];
    const char *a[] = {"127.0.0.7"}, *bad[] = {"127.0.0.300"};
    snprintf(conf.server.host, sizeof(conf.server.host), "127.0.0.1");
    conf.server.port = 9;
    snprintf(conf.zone, sizeof(conf.zone), "pipe2me.localhost");

    CHECK_CTX("name outside the zone");
    check_refusal(p2m_dnsupd_replace(&conf, "web.example.com", a, 1, 30, err), err, "not a name in zone");
    CHECK_CTX("name with a space");
    check_refusal(p2m_dnsupd_replace(&conf, "we b.pipe2me.localhost", a, 1, 30, err), err, "not a name in zone");
    CHECK_CTX("bad address");
    check_refusal(p2m_dnsupd_replace(&conf, "web.direct.pipe2me.localhost", bad, 1, 30, err), err, "address 1");
    CHECK_CTX("too many addresses");
    check_refusal(p2m_dnsupd_replace(&conf, "web.direct.pipe2me.localhost", a, P2M_DNSUPD_ADDRS_MAX + 1, 30, err), err,
                  "more than");
    CHECK_CTX("server by name");
    snprintf(conf.server.host, sizeof(conf.server.host), "localhost");
    check_refusal(p2m_dnsupd_replace(&conf, "web.direct.pipe2me.localhost", a, 1, 30, err), err, "IPv4 or IPv6 address");
    CHECK_CTX(NULL);
}

int main(void)
{
    test_rows();
    test_prefixes();
    test_limits();
    test_load();
    test_update_args();
    return check_done("dnsupd");
}
