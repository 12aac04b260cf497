/* Unit tests for lib/service.c: protocol names, service keys, and the registration body parser
 * with hostile bodies (PROTOCOL.md 1.1). */

#include "check.h"
#include "p2m/err.h"
#include "p2m/service.h"

#include <stdlib.h>
#include <string.h>

/* Parses len bytes from a heap block of exactly that size, so that ASan flags any read past it. */
static int parse_exact(const char *body, size_t len, p2m_proto_t *proto, unsigned *conns, char *err)
{
    char *p = check_exact_copy(body, len);
    err[0] = '\0';
    int rc = p2m_service_body_parse(p, len, proto, conns, err);
    free(p);
    return rc;
}

struct body_row {
    const char *body;
    size_t len; /* 0: strlen */
    int rc;
    p2m_proto_t proto; /* on success */
    const char *want;  /* on failure: must appear in err */
    unsigned conns;    /* on success; 0 reads as 1 */
};

static void test_body(void)
{
    static char big[P2M_REGISTER_BODY_MAX + 2], exact[P2M_REGISTER_BODY_MAX + 1], deep[P2M_REGISTER_BODY_MAX + 1];
    /* {"protocol":"http"} padded with spaces to exactly the limit, and one byte over */
    memset(exact, ' ', P2M_REGISTER_BODY_MAX);
    memcpy(exact, "{\"protocol\":\"http\"}", 19);
    memset(big, ' ', P2M_REGISTER_BODY_MAX + 1);
    memcpy(big, "{\"protocol\":\"http\"}", 19);
    for (size_t i = 0; i < P2M_REGISTER_BODY_MAX; i++)
        deep[i] = i < P2M_REGISTER_BODY_MAX / 2 ? '[' : ']';

    const struct body_row rows[] = {
        {"", 0, 0, P2M_PROTO_HTTPS, NULL},
        {" \r\n\t", 0, 0, P2M_PROTO_HTTPS, NULL},
        {"{}", 0, 0, P2M_PROTO_HTTPS, NULL},
        {"{\"protocol\":\"https\"}", 0, 0, P2M_PROTO_HTTPS, NULL},
        {"{\"protocol\":\"http\"}", 0, 0, P2M_PROTO_HTTP, NULL},
        {"{\"protocol\":\"tcp\"}", 0, 0, P2M_PROTO_TCP, NULL},
        {"\n{ \"protocol\" : \"tcp\" }\n", 0, 0, P2M_PROTO_TCP, NULL},
        {exact, P2M_REGISTER_BODY_MAX, 0, P2M_PROTO_HTTP, NULL},
        {big, P2M_REGISTER_BODY_MAX + 1, -1, 0, "longer than 1024"},
        {"{\"protocol\":\"HTTP\"}", 0, -1, 0, "protocol"},
        {"{\"protocol\":\"udp\"}", 0, -1, 0, "protocol"},
        {"{\"protocol\":\"\"}", 0, -1, 0, "protocol"},
        {"{\"protocol\":\"http \"}", 0, -1, 0, "protocol"},
        {"{\"protocol\":\"http\\u0000\"}", 0, -1, 0, "not JSON"},
        {"{\"protocol\":1}", 0, -1, 0, "protocol"},
        {"{\"protocol\":null}", 0, -1, 0, "protocol"},
        {"{\"protocol\":[\"http\"]}", 0, -1, 0, "protocol"},
        {"{\"protocol\":\"http\",\"protocol\":\"https\"}", 0, -1, 0, "not JSON"},
        {"{\"protocol\":\"http\",\"x\":1}", 0, -1, 0, "unknown key"},
        {"{\"connections\":1}", 0, 0, P2M_PROTO_HTTPS, NULL, 1},
        {"{\"connections\":32,\"protocol\":\"tcp\"}", 0, 0, P2M_PROTO_TCP, NULL, 32},
        {"{\"protocol\":\"http\", \"connections\": 7}", 0, 0, P2M_PROTO_HTTP, NULL, 7},
        {"{\"connections\":0}", 0, -1, 0, "connections: expected an integer from 1 to 32"},
        {"{\"connections\":33}", 0, -1, 0, "connections"},
        {"{\"connections\":-1}", 0, -1, 0, "connections"},
        {"{\"connections\":4294967297}", 0, -1, 0, "connections"},
        {"{\"connections\":99999999999999999999999}", 0, -1, 0, "not JSON"},
        {"{\"connections\":2.0}", 0, -1, 0, "connections"},
        {"{\"connections\":\"2\"}", 0, -1, 0, "connections"},
        {"{\"connections\":true}", 0, -1, 0, "connections"},
        {"{\"connections\":null}", 0, -1, 0, "connections"},
        {"{\"connections\":[2]}", 0, -1, 0, "connections"},
        {"{\"connections\":2,\"connections\":3}", 0, -1, 0, "not JSON"},
        {"{\"Connections\":2}", 0, -1, 0, "unknown key"},
        {"{\"Protocol\":\"http\"}", 0, -1, 0, "unknown key"},
        {"{\"\\u001b[31m\":1}", 0, -1, 0, "unknown key (5 bytes)"},
        {"\"http\"", 0, -1, 0, "not JSON"}, /* jansson decodes only arrays and objects by default */
        {"[\"http\"]", 0, -1, 0, "expected a JSON object"},
        {"protocol=http", 0, -1, 0, "not JSON"},
        {"{\"protocol\":\"http\"} {}", 0, -1, 0, "not JSON"},
        {"{\"protocol\":\"http\"", 0, -1, 0, "not JSON"},
        {"{\"protocol\":\"http\"}\0", 20, -1, 0, "not JSON"},
        {"\xef\xbb\xbf{}", 0, -1, 0, "not JSON"},
        {"{\"protocol\":\"\xff\"}", 0, -1, 0, "not JSON"},
        {deep, P2M_REGISTER_BODY_MAX, -1, 0, "expected a JSON object"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct body_row *r = &rows[i];
        size_t len = r->len != 0 ? r->len : strlen(r->body);
        p2m_proto_t proto = (p2m_proto_t)99;
        unsigned conns = 99;
        char err[P2M_ERR_LEN];
        CHECK_CTX("body row %zu %s", i, check_bytes(r->body, len > 60 ? 60 : len));
        int rc = parse_exact(r->body, len, &proto, &conns, err);
        if (!CHECK_RC(rc, r->rc, err))
            continue;
        if (rc == 0) {
            CHECK_EQ_INT(proto, r->proto);
            CHECK_EQ_INT(conns, r->conns != 0 ? r->conns : 1);
        } else {
            CHECK_MSG(strstr(err, r->want) != NULL, "err \"%s\" does not contain \"%s\"", err, r->want);
            CHECK_MSG(strchr(err, '\n') == NULL && strchr(err, '\x1b') == NULL, "err has a control byte: %s",
                      check_bytes(err, strlen(err)));
        }
    }
    CHECK_CTX(NULL);
}

struct direct_row {
    const char *body;
    int rc;
    const char *lan, *pub; /* on success: canonical, "" when absent */
    const char *want;      /* on failure: must appear in err */
};

/* The direct-path keys (PROTOCOL 1.1, 5): literals only, canonical on the way out, every hostile
 * shape refused with a reason that quotes none of it. */
static void test_direct(void)
{
    static char padded[P2M_REGISTER_BODY_MAX + 2];
    /* a valid body padded with spaces to exactly the limit, and one byte over */
    static const char head[] = "{\"direct_lan\":\"10.0.0.5:8443\",\"direct_public\":\"[2001:db8::1]:443\"}";
    memset(padded, ' ', sizeof(padded) - 1);
    memcpy(padded, head, sizeof(head) - 1);
    const struct direct_row rows[] = {
        {"{\"direct_lan\":\"192.168.1.20:8443\"}", 0, "192.168.1.20:8443", "", NULL},
        {"{\"direct_public\":\"203.0.113.7:443\"}", 0, "", "203.0.113.7:443", NULL},
        {"{\"direct_public\":\"[2001:DB8:0::1]:1\"}", 0, "", "[2001:db8::1]:1", NULL},
        {"{\"direct_lan\":\"[::ffff:10.0.0.1]:65535\"}", 0, "10.0.0.1:65535", "", NULL},
        {"{\"protocol\":\"http\",\"connections\":4,\"direct_lan\":\"127.0.0.21:9000\",\"direct_public\":\"127.0.0.22:9001\"}", 0,
         "127.0.0.21:9000", "127.0.0.22:9001", NULL},
        {"{\"direct_lan\":\"localhost:80\"}", -1, NULL, NULL, "not a name"},
        {"{\"direct_lan\":\"pod.example:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"10.0.0.5\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"10.0.0.5:\"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\"10.0.0.5:0\"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\"10.0.0.5:65536\"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\"10.0.0.5:099\"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\"10.0.0.5:+80\"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\"10.0.0.5:80 \"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\"10.0.0.5:999999\"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\"10.0.0.5:80:81\"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\" 10.0.0.5:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"10.0.0.256:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"10.1:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"0x7f.0.0.1:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"2001:db8::1:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"[2001:db8::1]\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"[2001:db8::1]80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"[fe80::1%eth0]:80\"}", -1, NULL, NULL, "IPv6"},
        {"{\"direct_lan\":\"[10.0.0.1]:80\"}", -1, NULL, NULL, "IPv6"},
        {"{\"direct_lan\":\"[]:80\"}", -1, NULL, NULL, "IPv6"},
        {"{\"direct_lan\":\"[:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"[1111:2222:3333:4444:5555:6666:7777:8888:9999]:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":\"[0000:0000:0000:0000:0000:ffff:203.0.113.255]:65535\"}", 0, "203.0.113.255:65535", "", NULL},
        {"{\"direct_lan\":\"[0000:0000:0000:0000:0000:ffff:255.255.255.255]:65535\"}", -1, NULL, NULL, "one host"},
        {"{\"direct_lan\":\"0.0.0.0:80\"}", -1, NULL, NULL, "one host"},
        {"{\"direct_lan\":\"224.0.0.1:80\"}", -1, NULL, NULL, "one host"},
        {"{\"direct_public\":\"239.255.255.250:1900\"}", -1, NULL, NULL, "one host"},
        {"{\"direct_lan\":\"[::]:80\"}", -1, NULL, NULL, "one host"},
        {"{\"direct_lan\":\"[ff02::1]:80\"}", -1, NULL, NULL, "one host"},
        {"{\"direct_lan\":\"[::ffff:0.0.0.0]:80\"}", -1, NULL, NULL, "one host"},
        {"{\"direct_lan\":\"[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:1]:80\"}", -1, NULL, NULL, "at most 54"},
        {"{\"direct_lan\":\"10.0.0.5:80\\u0000\"}", -1, NULL, NULL, "not JSON"},
        {"{\"direct_lan\":\"10.0.0.5:80\\n\"}", -1, NULL, NULL, "port"},
        {"{\"direct_lan\":\"\\u001b[31m:80\"}", -1, NULL, NULL, "direct_lan"},
        {"{\"direct_lan\":80}", -1, NULL, NULL, "direct_lan: expected a string"},
        {"{\"direct_lan\":null}", -1, NULL, NULL, "direct_lan: expected a string"},
        {"{\"direct_lan\":[\"10.0.0.5:80\"]}", -1, NULL, NULL, "direct_lan: expected a string"},
        {"{\"direct_public\":{\"a\":1}}", -1, NULL, NULL, "direct_public: expected a string"},
        {"{\"direct_lan\":\"10.0.0.5:80\",\"direct_lan\":\"10.0.0.6:80\"}", -1, NULL, NULL, "not JSON"},
        {"{\"Direct_lan\":\"10.0.0.5:80\"}", -1, NULL, NULL, "unknown key"},
        {"{\"direct\":\"10.0.0.5:80\"}", -1, NULL, NULL, "unknown key"},
        {padded, 0, "10.0.0.5:8443", "[2001:db8::1]:443", NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct direct_row *r = &rows[i];
        size_t len = r->body == padded ? P2M_REGISTER_BODY_MAX : strlen(r->body);
        p2m_service_body_t b;
        char err[P2M_ERR_LEN] = "";
        char *p = check_exact_copy(r->body, len);
        CHECK_CTX("direct row %zu %s", i, check_bytes(r->body, len > 80 ? 80 : len));
        memset(&b, 0x55, sizeof(b));
        int rc = p2m_service_body_parse_ex(p, len, &b, err);
        free(p);
        if (!CHECK_RC(rc, r->rc, err))
            continue;
        if (rc == 0) {
            CHECK_EQ_STR(b.direct_lan, r->lan);
            CHECK_EQ_STR(b.direct_public, r->pub);
        } else {
            CHECK_MSG(strstr(err, r->want) != NULL, "err \"%s\" does not contain \"%s\"", err, r->want);
            CHECK_MSG(strchr(err, '\n') == NULL && strchr(err, '\x1b') == NULL && strstr(err, "10.0.0") == NULL,
                      "err quotes the input or has a control byte: %s", check_bytes(err, strlen(err)));
        }
    }
    /* one byte over the limit */
    padded[P2M_REGISTER_BODY_MAX] = ' ';
    p2m_service_body_t b;
    char err[P2M_ERR_LEN];
    CHECK_CTX("direct body over the limit");
    CHECK_RC(p2m_service_body_parse_ex(padded, P2M_REGISTER_BODY_MAX + 1, &b, err), -1, err);
    /* without the keys, both are empty */
    CHECK_CTX("no direct keys");
    if (CHECK_RC(p2m_service_body_parse_ex("", 0, &b, err), 0, err)) {
        CHECK_EQ_STR(b.direct_lan, "");
        CHECK_EQ_STR(b.direct_public, "");
        CHECK_EQ_INT(b.conns, 1);
    }
    /* the address parser alone: host and port split out */
    char canon[P2M_DIRECT_ADDR_MAX + 1], host[64];
    unsigned port = 0;
    CHECK_CTX("p2m_direct_addr_parse");
    if (CHECK_RC(p2m_direct_addr_parse("[2001:db8::7]:8443", canon, host, &port, err), 0, err)) {
        CHECK_EQ_STR(canon, "[2001:db8::7]:8443");
        CHECK_EQ_STR(host, "2001:db8::7");
        CHECK_EQ_INT(port, 8443);
    }
    CHECK_RC(p2m_direct_addr_parse(NULL, canon, host, &port, err), -1, err);
    CHECK_CTX("p2m_direct_addr_public");
    static const char *const public_[] = {"203.0.113.7",    "8.8.8.8",    "100.63.255.255",  "100.128.0.0",
                                          "172.15.255.255", "172.32.0.0", "192.167.255.255", "169.253.0.1",
                                          "2001:db8::7",    "fbff::1",    "fec0::1"};
    static const char *const inside[] = {
        "127.0.0.1",   "127.255.0.9", "10.0.0.5", "172.16.0.1", "172.31.255.255", "192.168.1.20", "100.64.0.1", "100.127.255.255",
        "169.254.1.1", "0.1.2.3",     "::1",      "fc00::1",    "fd12:3456::1",   "fe80::1",      "febf::1",    "",
        "localhost",   "10.0.0.5:80"};
    for (size_t i = 0; i < sizeof(public_) / sizeof(public_[0]); i++)
        CHECK_MSG(p2m_direct_addr_public(public_[i]) == 1, "%s should be public", public_[i]);
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++)
        CHECK_MSG(p2m_direct_addr_public(inside[i]) == 0, "%s should not be public", inside[i]);
    CHECK_CTX(NULL);
}

/* "pool" (PROTOCOL 1.1): an integer from 1 to P2M_POOL_TARGET_MAX, 0 in the struct when absent;
 * anything else is refused with a reason that names the key. */
static void test_pool(void)
{
    static const struct {
        const char *body;
        int rc;
        unsigned pool;    /* on success */
        const char *want; /* on failure: must appear in err */
    } rows[] = {
        {"", 0, 0, NULL},
        {"{\"protocol\":\"tcp\"}", 0, 0, NULL},
        {"{\"pool\":1}", 0, 1, NULL},
        {"{\"pool\":3,\"protocol\":\"http\",\"connections\":3}", 0, 3, NULL},
        {"{\"pool\":1024}", 0, 1024, NULL},
        {"{\"direct_lan\":\"10.0.0.5:80\",\"pool\":4}", 0, 4, NULL},
        {"{\"pool\":0}", -1, 0, "pool: expected an integer from 1 to 1024"},
        {"{\"pool\":1025}", -1, 0, "pool: expected an integer from 1 to 1024"},
        {"{\"pool\":-1}", -1, 0, "pool: expected"},
        {"{\"pool\":-9223372036854775808}", -1, 0, "pool: expected"},
        {"{\"pool\":9223372036854775807}", -1, 0, "pool: expected"},
        {"{\"pool\":4294967299}", -1, 0, "pool: expected"},
        {"{\"pool\":99999999999999999999999}", -1, 0, "not JSON"},
        {"{\"pool\":2.0}", -1, 0, "pool: expected"},
        {"{\"pool\":1e3}", -1, 0, "pool: expected"},
        {"{\"pool\":\"4\"}", -1, 0, "pool: expected"},
        {"{\"pool\":true}", -1, 0, "pool: expected"},
        {"{\"pool\":null}", -1, 0, "pool: expected"},
        {"{\"pool\":[4]}", -1, 0, "pool: expected"},
        {"{\"pool\":{\"n\":4}}", -1, 0, "pool: expected"},
        {"{\"pool\":4,\"pool\":5}", -1, 0, "not JSON"},
        {"{\"Pool\":4}", -1, 0, "unknown key"},
        {"{\"pool_max\":4}", -1, 0, "unknown key"},
        {"{\"pool \":4}", -1, 0, "unknown key"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        size_t len = strlen(rows[i].body);
        p2m_service_body_t b;
        char err[P2M_ERR_LEN] = "";
        char *p = check_exact_copy(rows[i].body, len);
        CHECK_CTX("pool row %zu %s", i, check_bytes(rows[i].body, len > 80 ? 80 : len));
        memset(&b, 0x55, sizeof(b));
        int rc = p2m_service_body_parse_ex(p, len, &b, err);
        free(p);
        if (!CHECK_RC(rc, rows[i].rc, err))
            continue;
        if (rc == 0) {
            CHECK_EQ_INT(b.pool, rows[i].pool);
        } else {
            CHECK_MSG(strstr(err, rows[i].want) != NULL, "err \"%s\" does not contain \"%s\"", err, rows[i].want);
            CHECK_MSG(strchr(err, '\n') == NULL, "err has a newline: %s", check_bytes(err, strlen(err)));
        }
    }
    CHECK_CTX(NULL);
}

static void test_names(void)
{
    p2m_proto_t p;
    char err[P2M_ERR_LEN];
    CHECK_EQ_STR(p2m_proto_name(P2M_PROTO_HTTPS), "https");
    CHECK_EQ_STR(p2m_proto_name(P2M_PROTO_HTTP), "http");
    CHECK_EQ_STR(p2m_proto_name(P2M_PROTO_TCP), "tcp");
    CHECK_EQ_STR(p2m_proto_name((p2m_proto_t)7), "?");
    CHECK_RC(p2m_proto_parse("tcp", 3, &p, err), 0, err);
    CHECK_EQ_INT(p, P2M_PROTO_TCP);
    CHECK_RC(p2m_proto_parse("tc", 2, &p, err), -1, err);
    CHECK_RC(p2m_proto_parse("tcpx", 4, &p, err), -1, err);
    CHECK_RC(p2m_proto_parse("http\0", 5, &p, err), -1, err);
    CHECK_RC(p2m_proto_parse("", 0, &p, err), -1, err);

    char key[P2M_SERVICE_MAX + 1], label[P2M_LABEL_MAX + 1];
    p2m_service_key("demo", P2M_PROTO_HTTPS, key);
    CHECK_EQ_STR(key, "demo");
    p2m_service_key("demo", P2M_PROTO_HTTP, key);
    CHECK_EQ_STR(key, "demo:http");
    memset(label, 'z', P2M_LABEL_MAX);
    label[P2M_LABEL_MAX] = '\0';
    p2m_service_key(label, P2M_PROTO_HTTPS, key);
    CHECK_EQ_INT(strlen(key), P2M_LABEL_MAX);
    p2m_service_key(label, P2M_PROTO_HTTP, key);
    CHECK_EQ_INT(strlen(key), P2M_LABEL_MAX + 5);
    p2m_service_key(label, P2M_PROTO_TCP, key);
    CHECK_EQ_INT(strlen(key), P2M_LABEL_MAX + 4);

    static const struct {
        const char *in;
        const char *out; /* NULL: refused */
    } keys[] = {
        {"demo", "demo"},         {"Demo:http", "demo:http"},
        {"demo:tcp", "demo:tcp"}, {"demo:https", NULL},
        {"demo:", NULL},          {":http", NULL},
        {"demo:HTTP", NULL},      {"demo:http:x", NULL},
        {"de mo", NULL},          {"-demo:tcp", NULL},
        {"demo:tcp\n", NULL},     {"", NULL},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        CHECK_CTX("service key %s", check_bytes(keys[i].in, strlen(keys[i].in)));
        int rc = p2m_service_normalize(keys[i].in, strlen(keys[i].in), key, err);
        if (CHECK_RC(rc, keys[i].out != NULL ? 0 : -1, err) && rc == 0)
            CHECK_EQ_STR(key, keys[i].out);
    }
    CHECK_CTX(NULL);
}

int main(void)
{
    test_body();
    test_direct();
    test_pool();
    test_names();
    return check_done("service");
}
