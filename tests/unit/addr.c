/* Unit tests for lib/addr.c against lib/include/p2m/addr.h: HOST:PORT, port ranges, Redis
 * addresses and formatting, with hostile rows at every limit. */

#include "check.h"
#include "p2m/addr.h"
#include "p2m/err.h"

#include <stdlib.h>
#include <string.h>

static char host255[P2M_HOST_MAX + 1], host256[P2M_HOST_MAX + 2];
static char hp255[512], hp256[512], hp256v6[512];

struct hp_row {
    const char *in;
    int rc;
    const char *host;
    unsigned port;
};

/* Copies s into a heap block of exactly strlen + 1 bytes, so that ASan flags over-reads. */
static char *exact_str(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

static void test_hostport(void)
{
    memset(host255, 'h', P2M_HOST_MAX);
    memset(host256, 'h', P2M_HOST_MAX + 1);
    snprintf(hp255, sizeof(hp255), "%s:80", host255);
    snprintf(hp256, sizeof(hp256), "%s:80", host256);
    snprintf(hp256v6, sizeof(hp256v6), "[%s]:80", host256);

    const struct hp_row rows[] = {
        {"127.0.0.1:8443", 0, "127.0.0.1", 8443},
        {"[::1]:443", 0, "::1", 443},
        {"[::ffff:192.0.2.1]:80", 0, "::ffff:192.0.2.1", 80},
        {"[2001:db8::1]:65535", 0, "2001:db8::1", 65535},
        {"localhost:1", 0, "localhost", 1},
        {"relay.pipe2me.localhost:20000", 0, "relay.pipe2me.localhost", 20000},
        {"My-Host.Example:22", 0, "My-Host.Example", 22},
        {":80", 0, "", 80},
        {"80", 0, "", 80},
        {"65535", 0, "", 65535},
        {hp255, 0, host255, 80},
        {hp256, -1, NULL, 0},
        {hp256v6, -1, NULL, 0},
        {"", -1, NULL, 0},
        {":", -1, NULL, 0},
        {"host:", -1, NULL, 0},
        {"host", -1, NULL, 0},
        {"host:0", -1, NULL, 0},
        {":0", -1, NULL, 0},
        {"0", -1, NULL, 0},
        {"host:65536", -1, NULL, 0},
        {"65536", -1, NULL, 0},
        {"host:99999999999", -1, NULL, 0},
        {"host:18446744073709551617", -1, NULL, 0},
        {"host:-1", -1, NULL, 0},
        {"host:+80", -1, NULL, 0},
        {"host: 80", -1, NULL, 0},
        {"host:80 ", -1, NULL, 0},
        {" host:80", -1, NULL, 0},
        {"host:8o", -1, NULL, 0},
        {"host:0x50", -1, NULL, 0},
        {"host:80\n", -1, NULL, 0},
        {"[::1", -1, NULL, 0},
        {"[::1]", -1, NULL, 0},
        {"[::1]:", -1, NULL, 0},
        {"[::1]443", -1, NULL, 0},
        {"[::1]:0", -1, NULL, 0},
        {"[::1]:65536", -1, NULL, 0},
        {"::1]:443", -1, NULL, 0},
        {"[[::1]]:443", -1, NULL, 0},
        {"[::1]:443]", -1, NULL, 0},
        {"a b:1", -1, NULL, 0},
        {"a_b:1", -1, NULL, 0},
        {"a/b:1", -1, NULL, 0},
        {"a@b:1", -1, NULL, 0},
        {"h\xffst:1", -1, NULL, 0},
        {"h\xc3\xb6st:1", -1, NULL, 0},
        {"host\t:1", -1, NULL, 0},
        {"[::1 ]:443", -1, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct hp_row *r = &rows[i];
        p2m_hostport_t out;
        char err[P2M_ERR_LEN] = "";
        char *in = exact_str(r->in);
        memset(&out, 0x5a, sizeof(out));
        CHECK_CTX("hostport row %zu %s", i, check_str(r->in));
        int rc = p2m_hostport_parse(in, &out, err);
        if (CHECK_RC(rc, r->rc, err)) {
            if (rc == 0) {
                CHECK_EQ_STR(out.host, r->host);
                CHECK_EQ_INT(out.port, r->port);
            } else {
                CHECK_MSG(err[0] != '\0', "err is empty on failure");
            }
        }
        free(in);
    }
    CHECK_CTX(NULL);
}

static void test_port(void)
{
    const struct {
        const char *in;
        size_t len;
        int rc;
        unsigned port;
    } rows[] = {
        {"1", 1, 0, 1},
        {"80", 2, 0, 80},
        {"8080", 2, 0, 80},
        {"65535", 5, 0, 65535},
        {"", 0, -1, 0},
        {"0", 1, -1, 0},
        {"00", 2, -1, 0},
        {"65536", 5, -1, 0},
        {"99999", 5, -1, 0},
        {"4294967297", 10, -1, 0},
        {"18446744073709551617", 20, -1, 0},
        {"99999999999999999999999999", 26, -1, 0},
        {"8\0", 2, -1, 0},
        {"\0" "8", 2, -1, 0},
        {"+8", 2, -1, 0},
        {"-8", 2, -1, 0},
        {" 8", 2, -1, 0},
        {"8 ", 2, -1, 0},
        {"8a", 2, -1, 0},
        {"\xff", 1, -1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char *in = malloc(rows[i].len == 0 ? 1 : rows[i].len);
        memcpy(in, rows[i].in, rows[i].len);
        uint16_t port = 0x5a5a;
        CHECK_CTX("port row %zu %s len %zu", i, check_bytes(rows[i].in, rows[i].len), rows[i].len);
        int rc = p2m_port_parse(in, rows[i].len, &port);
        if (CHECK_EQ_INT(rc, rows[i].rc) && rc == 0)
            CHECK_EQ_INT(port, rows[i].port);
        free(in);
    }
    CHECK_CTX(NULL);
}

static void test_port_range(void)
{
    const struct {
        const char *in;
        int rc;
        unsigned lo, hi;
    } rows[] = {
        {"20000-29999", 0, 20000, 29999},
        {"5", 0, 5, 5},
        {"5-5", 0, 5, 5},
        {"1-65535", 0, 1, 65535},
        {"65535", 0, 65535, 65535},
        {"65535-65535", 0, 65535, 65535},
        {"1", 0, 1, 1},
        {"", -1, 0, 0},
        {"0", -1, 0, 0},
        {"0-10", -1, 0, 0},
        {"10-5", -1, 0, 0},
        {"1-65536", -1, 0, 0},
        {"65536", -1, 0, 0},
        {"-5", -1, 0, 0},
        {"5-", -1, 0, 0},
        {"-", -1, 0, 0},
        {" 5-6", -1, 0, 0},
        {"5-6 ", -1, 0, 0},
        {"5 -6", -1, 0, 0},
        {"5- 6", -1, 0, 0},
        {"5--6", -1, 0, 0},
        {"5-6-7", -1, 0, 0},
        {"a-b", -1, 0, 0},
        {"5:6", -1, 0, 0},
        {"5..6", -1, 0, 0},
        {"+5-6", -1, 0, 0},
        {"5-+6", -1, 0, 0},
        {"99999999999-5", -1, 0, 0},
        {"5-99999999999", -1, 0, 0},
        {"5-6\n", -1, 0, 0},
        {"5-6\xff", -1, 0, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        p2m_port_range_t out;
        char err[P2M_ERR_LEN] = "";
        char *in = exact_str(rows[i].in);
        memset(&out, 0x5a, sizeof(out));
        CHECK_CTX("range row %zu %s", i, check_str(rows[i].in));
        int rc = p2m_port_range_parse(in, &out, err);
        if (CHECK_RC(rc, rows[i].rc, err)) {
            if (rc == 0) {
                CHECK_EQ_INT(out.lo, rows[i].lo);
                CHECK_EQ_INT(out.hi, rows[i].hi);
            } else {
                CHECK_MSG(err[0] != '\0', "err is empty on failure");
            }
        }
        free(in);
    }
    CHECK_CTX(NULL);
}

static void test_redis_addr(void)
{
    static char path107[P2M_PATH_MAX + 1], path108[P2M_PATH_MAX + 2], unix107[256], unix108[256];
    memset(path107, 'p', P2M_PATH_MAX);
    path107[0] = '/';
    memset(path108, 'p', P2M_PATH_MAX + 1);
    path108[0] = '/';
    snprintf(unix107, sizeof(unix107), "unix:%s", path107);
    snprintf(unix108, sizeof(unix108), "unix:%s", path108);

    const struct {
        const char *in;
        int rc;
        int is_unix;
        const char *path_or_host;
        unsigned port;
    } rows[] = {
        {"unix:/tmp/x.sock", 0, 1, "/tmp/x.sock", 0},
        {"unix:redis.sock", 0, 1, "redis.sock", 0},
        {"unix:./run/redis.sock", 0, 1, "./run/redis.sock", 0},
        {unix107, 0, 1, path107, 0},
        {"127.0.0.1:6379", 0, 0, "127.0.0.1", 6379},
        {"localhost:6379", 0, 0, "localhost", 6379},
        {"[::1]:6379", 0, 0, "::1", 6379},
        {unix108, -1, 0, NULL, 0},
        {"unix:", -1, 0, NULL, 0},
        {"", -1, 0, NULL, 0},
        {"127.0.0.1:0", -1, 0, NULL, 0},
        {"127.0.0.1:65536", -1, 0, NULL, 0},
        {"127.0.0.1:", -1, 0, NULL, 0},
        {"a b:6379", -1, 0, NULL, 0},
        {"[::1:6379", -1, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        p2m_redis_addr_t out;
        char err[P2M_ERR_LEN] = "";
        char *in = exact_str(rows[i].in);
        memset(&out, 0x5a, sizeof(out));
        CHECK_CTX("redis row %zu %s", i, check_str(rows[i].in));
        int rc = p2m_redis_addr_parse(in, &out, err);
        if (CHECK_RC(rc, rows[i].rc, err)) {
            if (rc == 0) {
                if (CHECK_EQ_INT(!!out.is_unix, rows[i].is_unix)) {
                    if (out.is_unix) {
                        CHECK_EQ_STR(out.path, rows[i].path_or_host);
                    } else {
                        CHECK_EQ_STR(out.tcp.host, rows[i].path_or_host);
                        CHECK_EQ_INT(out.tcp.port, rows[i].port);
                    }
                }
            } else {
                CHECK_MSG(err[0] != '\0', "err is empty on failure");
            }
        }
        free(in);
    }
    CHECK_CTX(NULL);
}

static void test_format(void)
{
    const struct {
        const char *host;
        unsigned port;
        const char *want;
    } rows[] = {
        {"127.0.0.1", 8443, "127.0.0.1:8443"},
        {"::1", 443, "[::1]:443"},
        {"2001:db8::1", 65535, "[2001:db8::1]:65535"},
        {"localhost", 1, "localhost:1"},
        {"relay.pipe2me.localhost", 20000, "relay.pipe2me.localhost:20000"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char buf[512];
        size_t wl = strlen(rows[i].want);
        CHECK_CTX("format %s port %u", rows[i].host, rows[i].port);
        int n = p2m_hostport_format(rows[i].host, (uint16_t)rows[i].port, buf, sizeof(buf));
        if (CHECK_EQ_INT(n, wl))
            CHECK_EQ_STR(buf, rows[i].want);

        /* exactly enough room, then one byte short, then none */
        char *exact = malloc(wl + 1);
        if (CHECK_EQ_INT(p2m_hostport_format(rows[i].host, (uint16_t)rows[i].port, exact, wl + 1), wl))
            CHECK_EQ_STR(exact, rows[i].want);
        free(exact);
        char *shorter = malloc(wl);
        CHECK_EQ_INT(p2m_hostport_format(rows[i].host, (uint16_t)rows[i].port, shorter, wl), -1);
        free(shorter);
        char one[1];
        CHECK_EQ_INT(p2m_hostport_format(rows[i].host, (uint16_t)rows[i].port, one, 1), -1);
        CHECK_EQ_INT(p2m_hostport_format(rows[i].host, (uint16_t)rows[i].port, one, 0), -1);

        /* and it parses back to the same host and port */
        p2m_hostport_t back;
        char err[P2M_ERR_LEN] = "";
        if (CHECK_RC(p2m_hostport_parse(rows[i].want, &back, err), 0, err)) {
            CHECK_EQ_STR(back.host, rows[i].host);
            CHECK_EQ_INT(back.port, rows[i].port);
        }
    }

    /* the longest host still formats: 255 + ":65535" */
    char buf[P2M_HOST_MAX + 16];
    CHECK_CTX("format 255-byte host");
    CHECK_EQ_INT(p2m_hostport_format(host255, 65535, buf, sizeof(buf)), P2M_HOST_MAX + 6);
    CHECK_CTX(NULL);
}

int main(void)
{
    test_hostport();
    test_port();
    test_port_range();
    test_redis_addr();
    test_format();
    return check_done("addr");
}
