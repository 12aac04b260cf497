/* Unit tests for lib/host.c against lib/include/p2m/host.h: hostile Host / :authority rows (other
 * names, suffix and prefix tricks, nested labels, IP literals, userinfo, ports out of range, NUL and
 * control bytes, length limits +-1) and the accepted forms (DOMAIN, LABEL.DOMAIN, upper case, one
 * trailing dot, :PORT). Every input is an exact-length heap copy, so ASan flags any read past it. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/host.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define D "pipe2me.localhost"
#define FAIL -1
#define BARE P2M_HOST_BARE
#define LABEL P2M_HOST_LABEL

/* A row: len bytes of in (may hold NULs), the domain, the expected return and, on success, the
 * label and port written. */
struct row {
    const char *in;
    size_t len;
    const char *domain;
    int rc;
    const char *label;
    unsigned port;
};

#define ROW(lit, rc, label, port)                                                                                                  \
    {                                                                                                                              \
        lit, sizeof(lit) - 1, D, rc, label, port                                                                                   \
    }
#define ROWD(dom, lit, rc, label, port)                                                                                            \
    {                                                                                                                              \
        lit, sizeof(lit) - 1, dom, rc, label, port                                                                                 \
    }

/* Long inputs built at run time. */
static char label63[P2M_LABEL_MAX + 1], label63_upper[P2M_LABEL_MAX + 1];
static char host63[P2M_LABEL_MAX + sizeof("." D ":65535")], host63_upper[sizeof(host63)], host64[sizeof(host63) + 1];
static char max300[P2M_HOST_HEADER_MAX + 1], max301[P2M_HOST_HEADER_MAX + 2], huge[100000];

static void build_long_rows(void)
{
    memset(label63, 'a', P2M_LABEL_MAX);
    for (size_t i = 0; i < P2M_LABEL_MAX; i++) {
        label63[i] = (char)(i % 3 == 0 ? '0' + (char)(i % 10) : 'a' + (char)(i % 26));
        label63_upper[i] = (char)(label63[i] >= 'a' ? label63[i] - 'a' + 'A' : label63[i]);
    }
    snprintf(host63, sizeof(host63), "%s." D ":65535", label63);
    snprintf(host63_upper, sizeof(host63_upper), "%s.PIPE2ME.LOCALHOST:65535", label63_upper);
    snprintf(host64, sizeof(host64), "b%s." D, label63);
    /* No valid authority is longer than 88 bytes (63-byte label, domain, ":65535"), so the
     * P2M_HOST_HEADER_MAX bound shows only as refusals of 300, 301 and 100000 bytes that read
     * nothing past len. */
    memset(max300, 'a', P2M_HOST_HEADER_MAX);
    memset(max301, 'a', P2M_HOST_HEADER_MAX + 1);
    memset(huge, 'a', sizeof(huge));
    memcpy(huge + sizeof(huge) - sizeof("." D) + 1, "." D, sizeof("." D) - 1);
}

static void test_rows(void)
{
    build_long_rows();
    const struct row rows[] = {
        /* accepted forms */
        ROW(D, BARE, "", 0),
        ROW(D ".", BARE, "", 0),
        ROW(D ":8443", BARE, "", 8443),
        ROW(D ".:8443", BARE, "", 8443),
        ROW("PIPE2ME.LOCALHOST", BARE, "", 0),
        ROW("Pipe2Me.LocalHost:1", BARE, "", 1),
        ROW("demo." D, LABEL, "demo", 0),
        ROW("demo." D ".", LABEL, "demo", 0),
        ROW("demo." D ":443", LABEL, "demo", 443),
        ROW("demo." D ".:443", LABEL, "demo", 443),
        ROW("DEMO.PIPE2ME.LOCALHOST", LABEL, "demo", 0),
        ROW("DeMo." D ":65535", LABEL, "demo", 65535),
        ROW("a." D, LABEL, "a", 0),
        ROW("9." D, LABEL, "9", 0),
        ROW("a-b." D, LABEL, "a-b", 0),
        ROW("a--b." D, LABEL, "a--b", 0),
        ROW("xn--bcher-kva." D, LABEL, "xn--bcher-kva", 0),
        ROW("handsome-lemon-panda." D ":1", LABEL, "handsome-lemon-panda", 1),
        ROW(D ":00443", BARE, "", 443),
        {host63, strlen(host63), D, LABEL, label63, 65535},
        {host63_upper, strlen(host63_upper), D, LABEL, label63, 65535},
        /* explicit length shorter than the C string: only len bytes count */
        {"demo." D "evil", sizeof("demo." D) - 1, D, LABEL, "demo", 0},
        {D ":80x", sizeof(D ":80") - 1, D, BARE, "", 80},
        /* other domains */
        ROWD("localhost", "localhost", BARE, "", 0),
        ROWD("localhost", "web.localhost:8080", LABEL, "web", 8080),
        ROWD("localhost", "a.web.localhost", FAIL, NULL, 0),
        ROWD("example.com", "Web.Example.COM", LABEL, "web", 0),
        ROWD("example.com", "example.com.evil", FAIL, NULL, 0),
        ROWD("example.com", "xexample.com", FAIL, NULL, 0),

        /* empty and degenerate */
        ROW("", FAIL, NULL, 0),
        ROW(".", FAIL, NULL, 0),
        ROW("..", FAIL, NULL, 0),
        ROW(":", FAIL, NULL, 0),
        ROW(":443", FAIL, NULL, 0),
        ROW(" ", FAIL, NULL, 0),
        ROW("\0", FAIL, NULL, 0),
        /* other names, suffix and prefix tricks */
        ROW("evil.com", FAIL, NULL, 0),
        ROW("evil.com:443", FAIL, NULL, 0),
        ROW("localhost", FAIL, NULL, 0),
        ROW("pipe2me", FAIL, NULL, 0),
        ROW("pipe2me.localhos", FAIL, NULL, 0),
        ROW("pipe2me.localhostx", FAIL, NULL, 0),
        ROW("xpipe2me.localhost", FAIL, NULL, 0),
        ROW("evilpipe2me.localhost", FAIL, NULL, 0),
        ROW("demo-pipe2me.localhost", FAIL, NULL, 0),
        ROW("demo_pipe2me.localhost", FAIL, NULL, 0),
        ROW(D ".evil.com", FAIL, NULL, 0),
        ROW("demo." D ".evil.com", FAIL, NULL, 0),
        ROW("demo." D "..", FAIL, NULL, 0),
        ROW("demo." D ".:", FAIL, NULL, 0),
        ROW("demo.pipe2me", FAIL, NULL, 0),
        ROW("demo.localhost", FAIL, NULL, 0),
        ROW("." D, FAIL, NULL, 0),
        ROW(".." D, FAIL, NULL, 0),
        /* nested and invalid labels */
        ROW("a.b." D, FAIL, NULL, 0),
        ROW("demo.demo." D, FAIL, NULL, 0),
        ROW("demo.." D, FAIL, NULL, 0),
        ROW("-demo." D, FAIL, NULL, 0),
        ROW("demo-." D, FAIL, NULL, 0),
        ROW("-." D, FAIL, NULL, 0),
        ROW("de_mo." D, FAIL, NULL, 0),
        ROW("*." D, FAIL, NULL, 0),
        ROW("de*mo." D, FAIL, NULL, 0),
        ROW("demo%2e" D, FAIL, NULL, 0),
        ROW("demo%2E." D, FAIL, NULL, 0),
        ROW("d\xc3\xa9mo." D, FAIL, NULL, 0),
        ROW("\xff." D, FAIL, NULL, 0),
        ROW("demo\x80." D, FAIL, NULL, 0),
        {host64, strlen(host64), D, FAIL, NULL, 0},
        /* IP literals */
        ROW("127.0.0.1", FAIL, NULL, 0),
        ROW("127.0.0.1:8443", FAIL, NULL, 0),
        ROW("[::1]", FAIL, NULL, 0),
        ROW("[::1]:8443", FAIL, NULL, 0),
        ROW("::1", FAIL, NULL, 0),
        ROW("[::ffff:127.0.0.1]", FAIL, NULL, 0),
        ROW("[" D "]", FAIL, NULL, 0),
        ROW("[demo." D "]:443", FAIL, NULL, 0),
        /* userinfo, paths, queries, fragments, whitespace */
        ROW("user@demo." D, FAIL, NULL, 0),
        ROW("user:pass@demo." D, FAIL, NULL, 0),
        ROW("demo." D "@evil.com", FAIL, NULL, 0),
        ROW("evil.com@demo." D, FAIL, NULL, 0),
        ROW("demo." D "/", FAIL, NULL, 0),
        ROW("demo." D "/x", FAIL, NULL, 0),
        ROW("demo." D "?x", FAIL, NULL, 0),
        ROW("demo." D "#x", FAIL, NULL, 0),
        ROW("demo." D "\\evil.com", FAIL, NULL, 0),
        ROW(" demo." D, FAIL, NULL, 0),
        ROW("demo." D " ", FAIL, NULL, 0),
        ROW("demo." D "\t", FAIL, NULL, 0),
        ROW("demo ." D, FAIL, NULL, 0),
        ROW("demo." D " evil.com", FAIL, NULL, 0),
        ROW("demo." D "\r\nX-Evil: 1", FAIL, NULL, 0),
        ROW("demo." D "\n", FAIL, NULL, 0),
        ROW("demo." D ",evil.com", FAIL, NULL, 0),
        /* ports */
        ROW("demo." D ":", FAIL, NULL, 0),
        ROW("demo." D ":0", FAIL, NULL, 0),
        ROW("demo." D ":00000", FAIL, NULL, 0),
        ROW("demo." D ":65536", FAIL, NULL, 0),
        ROW("demo." D ":99999", FAIL, NULL, 0),
        ROW("demo." D ":100000", FAIL, NULL, 0),
        ROW("demo." D ":4294967297", FAIL, NULL, 0),
        ROW("demo." D ":18446744073709551617", FAIL, NULL, 0),
        ROW("demo." D ":-1", FAIL, NULL, 0),
        ROW("demo." D ":+443", FAIL, NULL, 0),
        ROW("demo." D ": 443", FAIL, NULL, 0),
        ROW("demo." D ":443 ", FAIL, NULL, 0),
        ROW("demo." D ":0x1bb", FAIL, NULL, 0),
        ROW("demo." D ":443.", FAIL, NULL, 0),
        ROW("demo." D ":443:443", FAIL, NULL, 0),
        ROW("demo." D "::443", FAIL, NULL, 0),
        ROW("demo." D ":https", FAIL, NULL, 0),
        ROW("demo." D ":443\0", FAIL, NULL, 0),
        /* NUL bytes anywhere */
        ROW("demo\0." D, FAIL, NULL, 0),
        ROW("demo." D "\0", FAIL, NULL, 0),
        ROW("demo." D "\0.evil.com", FAIL, NULL, 0),
        ROW("\0demo." D, FAIL, NULL, 0),
        ROW(D "\0", FAIL, NULL, 0),
        /* length: 300 is the most looked at, 301 and far more are refused before any parsing */
        {max300, P2M_HOST_HEADER_MAX, D, FAIL, NULL, 0},
        {max301, P2M_HOST_HEADER_MAX + 1, D, FAIL, NULL, 0},
        {huge, sizeof(huge), D, FAIL, NULL, 0},
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        char *in = check_exact_copy(r->in, r->len);
        /* The label buffer is exactly P2M_LABEL_MAX + 1 bytes on the heap, pre-filled with junk. */
        char *label = malloc(P2M_LABEL_MAX + 1);
        if (label == NULL)
            abort();
        memset(label, 'Z', P2M_LABEL_MAX);
        label[P2M_LABEL_MAX] = '\0';
        uint16_t port = 4242;
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("row %zu %s len %zu domain %s", i, check_bytes(r->in, r->len), r->len, r->domain);
        int rc = p2m_host_parse(in, r->len, r->domain, label, &port, err);
        if (CHECK_RC(rc, r->rc, err)) {
            if (r->rc == FAIL) {
                CHECK_MSG(err[0] != '\0' && strchr(err, '\n') == NULL, "err must be one non-empty line, got %s", check_str(err));
            } else {
                CHECK_EQ_STR(label, r->label);
                CHECK_EQ_INT(port, r->port);
            }
        }
        free(label);
        free(in);
    }
    CHECK_CTX(NULL);
}

/* A NULL authority with length 0 is empty input, not a crash. */
static void test_null(void)
{
    char label[P2M_LABEL_MAX + 1], err[P2M_ERR_LEN] = "";
    uint16_t port = 7;
    CHECK_CTX("NULL authority");
    CHECK_RC(p2m_host_parse(NULL, 0, D, label, &port, err), -1, err);
    CHECK_CTX(NULL);
}

/* Every byte value in a label position: only [A-Za-z0-9-] (not at the edges) may pass, and the
 * label comes back lower-cased. */
static void test_each_byte(void)
{
    unsigned bad = 0;
    for (int c = 0; c < 256; c++) {
        char in[] = "aXb." D;
        in[1] = (char)c;
        char label[P2M_LABEL_MAX + 1], err[P2M_ERR_LEN] = "";
        uint16_t port = 0;
        int rc = p2m_host_parse(in, sizeof(in) - 1, D, label, &port, err);
        int want_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        char want[4] = {'a', (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c), 'b', '\0'};
        if (want_ok ? (rc != LABEL || strcmp(label, want) != 0) : rc != FAIL) {
            CHECK_MSG(0, "byte 0x%02x in a label: rc %d label %s", (unsigned)c, rc, rc == LABEL ? check_str(label) : "-");
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%u byte values misjudged", bad);
}

/* Every port from 0 to 70000 on both forms: 1-65535 pass with that port, the rest fail. */
static void test_ports(void)
{
    unsigned bad = 0;
    for (unsigned p = 0; p <= 70000; p++) {
        char in[64], label[P2M_LABEL_MAX + 1], err[P2M_ERR_LEN];
        uint16_t port = 0;
        int n = snprintf(in, sizeof(in), "%s" D ":%u", (p & 1) ? "x." : "", p);
        int rc = p2m_host_parse(in, (size_t)n, D, label, &port, err);
        int want = p >= 1 && p <= 65535 ? ((p & 1) ? LABEL : BARE) : FAIL;
        if (rc != want || (want != FAIL && port != p)) {
            if (bad++ < 5)
                CHECK_MSG(0, "%s: rc %d port %u, want rc %d", in, rc, (unsigned)port, want);
        }
    }
    CHECK_MSG(bad == 0, "%u ports misjudged", bad);
}

/* p2m_host_is_own: names and addresses, ports, brackets, and what must not match. */
static void test_own(void)
{
    static const char *const own[] = {"registrar.example.org", "127.0.0.1", "::1", "2001:db8::7", "r2.example.org"};
    static const struct {
        const char *in;
        int want;
        unsigned port;
    } rows[] = {
        {"registrar.example.org", 0, 0},
        {"Registrar.Example.ORG:8443", 0, 8443},
        {"registrar.example.org.", 0, 0},
        {"registrar.example.org.:1", 0, 1},
        {"registrar.example.org..", -1, 0},
        {"registrar.example.orgx", -1, 0},
        {"xregistrar.example.org", -1, 0},
        {"a.registrar.example.org", -1, 0},
        {"registrar.example.org:0", -1, 0},
        {"registrar.example.org:65536", -1, 0},
        {"registrar.example.org:", -1, 0},
        {"registrar.example.org:80:80", -1, 0},
        {"user@registrar.example.org", -1, 0},
        {"r2.example.org:443", 4, 443},
        {"127.0.0.1", 1, 0},
        {"127.0.0.1:8443", 1, 8443},
        {"127.0.0.1.", -1, 0},
        {"127.0.0.01", -1, 0},
        {"127.1", -1, 0},
        {"127.0.0.2", -1, 0},
        {"[127.0.0.1]", -1, 0},
        {"[::ffff:127.0.0.1]:8443", 1, 8443},
        {"[::1]", 2, 0},
        {"[::1]:8443", 2, 8443},
        {"[0:0::1]:8443", 2, 8443},
        {"::1", -1, 0},
        {"[::1", -1, 0},
        {"[::1]8443", -1, 0},
        {"[::1]:", -1, 0},
        {"[::2]", -1, 0},
        {"[2001:DB8::7]", 3, 0},
        {"[registrar.example.org]", -1, 0},
        {"[]", -1, 0},
        {"", -1, 0},
        {":8443", -1, 0},
        {".", -1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t len = strlen(rows[i].in);
        char *copy = malloc(len == 0 ? 1 : len);
        memcpy(copy, rows[i].in, len);
        uint16_t port = 7;
        CHECK_CTX("p2m_host_is_own %s", check_str(rows[i].in));
        CHECK_EQ_INT(p2m_host_is_own(copy, len, own, sizeof(own) / sizeof(own[0]), &port), rows[i].want);
        CHECK_EQ_INT(port, rows[i].port);
        free(copy);
    }
    uint16_t port;
    CHECK_CTX("p2m_host_is_own: NUL, no entries, too long");
    CHECK_EQ_INT(p2m_host_is_own("127.0.0.1\0", 10, own, 5, &port), -1);
    CHECK_EQ_INT(p2m_host_is_own("127.0.0.1", 9, own, 0, &port), -1);
    CHECK_EQ_INT(p2m_host_is_own(NULL, 0, own, 5, &port), -1);
    CHECK_EQ_INT(p2m_host_is_own(huge, sizeof(huge), own, 5, &port), -1);
    CHECK_CTX(NULL);
}

int main(void)
{
    test_rows();
    test_null();
    test_each_byte();
    test_ports();
    test_own();
    return check_done("host");
}
