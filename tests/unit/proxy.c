/* Unit tests for pod/proxy.c against pod/proxy.h: the proxy URL (schemes, user info and its
 * percent-encoding, hosts and ports, limits +-1, hostile bytes, the password kept out of errors and
 * of the shown form), no_proxy as curl reads it (suffixes, dots, "*", addresses and networks), the
 * CONNECT request (RFC 7617 Basic vectors), the incremental parser of the proxy's answer fed whole,
 * byte by byte and in every two-piece split (line endings, limits, NULs, bad status lines, the bytes
 * after the header left to the tunnel), and the refusal messages. */

#include "check.h"
#include "proxy.h"

#include <stdlib.h>
#include <string.h>

#define LIT(s) s, sizeof(s) - 1

/* --- pod_proxy_url_parse ---------------------------------------------------------------------- */

struct url_row {
    const char *url;
    int rc;
    const char *host; /* rc 0: what comes back */
    unsigned port;
    int auth;
    const char *user, *pass, *shown, *curl_url;
    const char *err; /* rc -1: a word the reason holds */
};

static void test_url(void)
{
    static const struct url_row rows[] = {
        {"http://proxy.example:3128", 0, "proxy.example", 3128, 0, "", "", "http://proxy.example:3128", "http://proxy.example:3128",
         NULL},
        {"HTTP://Proxy.Example:3128/", 0, "Proxy.Example", 3128, 0, "", "", "http://Proxy.Example:3128",
         "http://Proxy.Example:3128", NULL},
        {"proxy.example:8080", 0, "proxy.example", 8080, 0, "", "", "http://proxy.example:8080", "http://proxy.example:8080", NULL},
        {"http://proxy.example", 0, "proxy.example", 1080, 0, "", "", "http://proxy.example:1080", "http://proxy.example:1080",
         NULL},
        {"http://10.0.0.1:1", 0, "10.0.0.1", 1, 0, "", "", "http://10.0.0.1:1", "http://10.0.0.1:1", NULL},
        {"http://[2001:db8::1]:3128", 0, "2001:db8::1", 3128, 0, "", "", "http://[2001:db8::1]:3128", "http://[2001:db8::1]:3128",
         NULL},
        {"http://[::1]", 0, "::1", 1080, 0, "", "", "http://[::1]:1080", "http://[::1]:1080", NULL},
        {"http://u:p@h:65535", 0, "h", 65535, 1, "u", "p", "http://u@h:65535", "http://h:65535", NULL},
        {"http://user@h:1", 0, "h", 1, 1, "user", "", "http://user@h:1", "http://h:1", NULL},
        {"http://:secret@h:1", 0, "h", 1, 1, "", "secret", "http://h:1", "http://h:1", NULL},
        {"http://u:@h:1", 0, "h", 1, 1, "u", "", "http://u@h:1", "http://h:1", NULL},
        /* percent-encoding: decoded, and the user shown encoded again */
        {"http://us%65r:p%40ss%3Aw%2Fd@h:1", 0, "h", 1, 1, "user", "p@ss:w/d", "http://user@h:1", "http://h:1", NULL},
        {"http://a%20b:x@h:1", 0, "h", 1, 1, "a b", "x", "http://a%20b@h:1", "http://h:1", NULL},
        {"http://%C3%A9:x@h:1", 0, "h", 1, 1, "\xc3\xa9", "x", "http://%C3%A9@h:1", "http://h:1", NULL},
        {"http://u:p:q@h:1", 0, "h", 1, 1, "u", "p:q", "http://u@h:1", "http://h:1", NULL},
        {"http://u:p@q@h:1", 0, "h", 1, 1, "u", "p@q", "http://u@h:1", "http://h:1", NULL},
        {"http://u:%25%2525@h:1", 0, "h", 1, 1, "u", "%%25", "http://u@h:1", "http://h:1", NULL},
        /* refused */
        {"", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "empty"},
        {"https://proxy.example:3128", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "https://"},
        {"HTTPS://proxy.example:3128", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "https://"},
        {"socks5://proxy.example:1080", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "socks5"},
        {"socks5h://h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "only http://"},
        {"ftp://h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "unsupported proxy scheme"},
        {"://h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "scheme"},
        {"a_b://h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "scheme"},
        {"http://", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "no host"},
        {"http://u:p@", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "no host"},
        {"http://:3128", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "no host"},
        {"http://h:0", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "port"},
        {"http://h:65536", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "port"},
        {"http://h:", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "port"},
        {"http://h:80x", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "port"},
        {"http://h:-1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "port"},
        {"http://2001:db8::1:3128", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "brackets"},
        {"http://[2001:db8::1:3128", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "host"},
        {"http://[h]:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "IPv6"},
        {"http://h_x:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "host"},
        {"http://-h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "host"},
        {"http://.h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "host"},
        {"http://h:1/path", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "path"},
        {"http://h:1//", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "path"},
        {"http://h:1?x", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "query"},
        {"http://h:1#x", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "fragment"},
        {"http://h :1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "space"},
        {"http://h:1\n", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "control"},
        {"http://h\x7f:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "control"},
        {"http://h\xc3\xa9:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "ASCII"},
        {"http://u:p%4@h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "password"},
        {"http://u:p%@h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "two hex digits"},
        {"http://u:p%zz@h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "two hex digits"},
        {"http://u%g0:p@h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "user name"},
        {"http://u:p%00x@h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "%00"},
        {"http://u%3Av:p@h:1", -1, NULL, 0, 0, NULL, NULL, NULL, NULL, "':'"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct url_row *r = &rows[i];
        pod_proxy_t px;
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("url row %zu %s", i, check_str(r->url));
        int rc = pod_proxy_url_parse(r->url, &px, err);
        if (r->rc != 0) {
            check_refusal(rc, err, r->err);
            CHECK_EQ_STR(px.host, "");
            CHECK_EQ_STR(px.pass, "");
            continue;
        }
        if (!CHECK_RC(rc, 0, err))
            continue;
        CHECK_EQ_STR(px.host, r->host);
        CHECK_EQ_INT(px.port, r->port);
        CHECK_EQ_INT(px.auth, r->auth);
        CHECK_EQ_STR(px.user, r->user);
        CHECK_EQ_STR(px.pass, r->pass);
        CHECK_EQ_STR(px.shown, r->shown);
        CHECK_EQ_STR(px.url, r->curl_url);
        pod_proxy_wipe(&px);
        CHECK_EQ_STR(px.pass, "");
    }
    CHECK_CTX(NULL);
}

/* The password never shows in an error, whatever is wrong after it. */
static void test_url_secret(void)
{
    static const char *urls[] = {
        "http://u:Sekr1tPw@h:0",         "http://u:Sekr1tPw@h:1/x",   "https://u:Sekr1tPw@h:1", "socks5://u:Sekr1tPw@h:1",
        "http://u:Sekr1tPw%zz@h:1",      "http://u:Sekr1tPw@",        "http://u:Sekr1tPw@h_:1", "http://u:Sekr1tPw@[h]:1",
        "http://u:Sekr1tPw@2001:db8::1", "Sekr1tPw://u:Sekr1tPw@h:1",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        pod_proxy_t px;
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("secret row %zu %s", i, urls[i]);
        CHECK_RC(pod_proxy_url_parse(urls[i], &px, err), -1, err);
        if (i + 1 < sizeof(urls) / sizeof(urls[0]))
            CHECK_MSG(strstr(err, "Sekr1tPw") == NULL, "err quotes the password: %s", err);
        CHECK_EQ_STR(px.pass, "");
    }
    CHECK_CTX(NULL);
}

/* Limits: a URL of POD_PROXY_URL_MAX bytes, credentials of POD_PROXY_CRED_MAX bytes decoded, each +1. */
static void test_url_limits(void)
{
    char url[POD_PROXY_URL_MAX + 64], cred[3 * POD_PROXY_CRED_MAX + 8], err[P2M_ERR_LEN];
    pod_proxy_t px;
    /* credentials at the limit, plain and percent-encoded */
    memset(cred, 'u', POD_PROXY_CRED_MAX);
    cred[POD_PROXY_CRED_MAX] = '\0';
    snprintf(url, sizeof(url), "http://%s:pw@h:1", cred);
    CHECK_CTX("user of %d bytes", POD_PROXY_CRED_MAX);
    if (CHECK_RC(pod_proxy_url_parse(url, &px, err), 0, err))
        CHECK_EQ_INT(strlen(px.user), POD_PROXY_CRED_MAX);
    cred[POD_PROXY_CRED_MAX] = 'u';
    cred[POD_PROXY_CRED_MAX + 1] = '\0';
    snprintf(url, sizeof(url), "http://%s:pw@h:1", cred);
    CHECK_CTX("user of %d bytes", POD_PROXY_CRED_MAX + 1);
    check_refusal(pod_proxy_url_parse(url, &px, err), err, "longer than");
    for (int i = 0; i < POD_PROXY_CRED_MAX; i++)
        memcpy(cred + 3 * i, "%41", 3);
    cred[3 * POD_PROXY_CRED_MAX] = '\0';
    snprintf(url, sizeof(url), "http://u:%s@h:1", cred);
    CHECK_CTX("password of %d encoded bytes", POD_PROXY_CRED_MAX);
    if (CHECK_RC(pod_proxy_url_parse(url, &px, err), 0, err))
        CHECK_EQ_INT(strlen(px.pass), POD_PROXY_CRED_MAX);
    snprintf(url, sizeof(url), "http://u:%s%%41@h:1", cred);
    CHECK_CTX("password of %d encoded bytes", POD_PROXY_CRED_MAX + 1);
    check_refusal(pod_proxy_url_parse(url, &px, err), err, "longer than");
    /* the whole URL: 7 + 600 + 1 + 300 + 1 + HOST + 2 bytes, HOST of 113 bytes making 1024 */
    for (size_t hl = 113; hl <= 114; hl++) {
        char *p = url;
        p += sprintf(p, "http://");
        for (int i = 0; i < 200; i++)
            p += sprintf(p, "%%41");
        *p++ = ':';
        for (int i = 0; i < 100; i++)
            p += sprintf(p, "%%42");
        *p++ = '@';
        memset(p, 'h', hl);
        p += hl;
        sprintf(p, ":1");
        CHECK_CTX("URL of %zu bytes", strlen(url));
        int rc = pod_proxy_url_parse(url, &px, err);
        if (hl == 113) {
            CHECK_EQ_INT(strlen(url), POD_PROXY_URL_MAX);
            if (CHECK_RC(rc, 0, err))
                CHECK(strlen(px.user) == 200 && strlen(px.pass) == 100 && strlen(px.host) == hl);
        } else {
            check_refusal(rc, err, "longer than 1024 bytes");
        }
    }
    CHECK_CTX(NULL);
}

/* --- pod_proxy_bypass ------------------------------------------------------------------------- */

struct bypass_row {
    const char *no_proxy, *host;
    int want;
};

static void test_bypass(void)
{
    static const struct bypass_row rows[] = {
        {NULL, "example.com", 0},
        {"", "example.com", 0},
        {"*", "example.com", 1},
        {"*", "10.0.0.1", 1},
        {"a.org,*", "example.com", 1},
        {" * ", "example.com", 1},
        {"*.example.com", "a.example.com", 0}, /* not a wildcard: curl reads it literally */
        {"example.com", "example.com", 1},
        {"example.com", "EXAMPLE.COM", 1},
        {"example.com", "a.example.com", 1},
        {"example.com", "a.b.example.com", 1},
        {"example.com", "aexample.com", 0},
        {"example.com", "example.com.au", 0},
        {"example.com", "example.co", 0},
        {".example.com", "example.com", 1},
        {".example.com", "a.example.com", 1},
        {"example.com.", "a.example.com", 1},
        {"example.com", "a.example.com.", 1},
        {"a.example.com", "example.com", 0},
        {"foo, example.com ,bar", "x.example.com", 1},
        {"foo,\texample.com\t", "example.com", 1},
        {",,example.com,,", "example.com", 1},
        {"., ,", "example.com", 0},
        {"com", "example.com", 1},
        {"localhost", "pipe2me.localhost", 1},
        {"pipe2me.localhost", "localhost", 0},
        /* addresses and networks */
        {"10.0.0.1", "10.0.0.1", 1},
        {"10.0.0.1", "10.0.0.2", 0},
        {"10.0.0.0/8", "10.200.3.4", 1},
        {"10.0.0.0/8", "11.0.0.1", 0},
        {"127.0.0.0/8", "127.0.0.1", 1},
        {"192.168.1.0/23", "192.168.0.9", 1},
        {"192.168.1.0/23", "192.168.2.9", 0},
        {"0.0.0.0/0", "8.8.8.8", 1},
        {"10.0.0.1/32", "10.0.0.1", 1},
        {"10.0.0.1/33", "10.0.0.1", 0},
        {"10.0.0.1/", "10.0.0.1", 0},
        {"10.0.0.1/x", "10.0.0.1", 0},
        {"10.0.0.0/8", "10.example.com", 0},
        {"0.1", "10.0.0.1", 0}, /* no name suffix on addresses */
        {"::1", "::1", 1},
        {"[::1]", "::1", 1},
        {"2001:db8::/32", "2001:db8:1::5", 1},
        {"[2001:db8::]/32", "2001:db8:1::5", 1},
        {"2001:db8::/32", "2001:db9::5", 0},
        {"::/0", "2001:db8::1", 1},
        {"::ffff:10.0.0.1", "10.0.0.1", 0}, /* another family */
        {"10.0.0.1", "::ffff:10.0.0.1", 0},
        {"2001:db8::1", "2001:db8:0:0:0:0:0:1", 1},
        {"", "", 0},
        {"example.com", "", 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct bypass_row *r = &rows[i];
        CHECK_CTX("bypass row %zu no_proxy %s host %s", i, check_str(r->no_proxy), check_str(r->host));
        CHECK_EQ_INT(pod_proxy_bypass(r->no_proxy, r->host), r->want);
    }
    CHECK_CTX(NULL);
}

/* --- pod_proxy_request ------------------------------------------------------------------------ */

static void test_request(void)
{
    pod_proxy_t px;
    char err[P2M_ERR_LEN], out[POD_PROXY_REQ_MAX];
    /* RFC 7617 2: "Aladdin" / "open sesame" */
    CHECK_RC(pod_proxy_url_parse("http://Aladdin:open%20sesame@proxy:3128", &px, err), 0, err);
    int n = pod_proxy_request(&px, "relay.example", 40001, out, sizeof(out));
    CHECK_EQ_STR(out, "CONNECT relay.example:40001 HTTP/1.1\r\nHost: relay.example:40001\r\n"
                      "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n");
    CHECK_EQ_INT(n, strlen(out));
    /* RFC 7617 3: "test" / "123\u00a3" in UTF-8 */
    CHECK_RC(pod_proxy_url_parse("http://test:123%C2%A3@proxy:3128", &px, err), 0, err);
    pod_proxy_request(&px, "10.0.0.1", 1, out, sizeof(out));
    CHECK_EQ_STR(out, "CONNECT 10.0.0.1:1 HTTP/1.1\r\nHost: 10.0.0.1:1\r\nProxy-Authorization: Basic dGVzdDoxMjPCow==\r\n\r\n");
    /* padding: 1 and 2 bytes left over */
    CHECK_RC(pod_proxy_url_parse("http://a:@p", &px, err), 0, err);
    pod_proxy_request(&px, "h", 1, out, sizeof(out));
    CHECK(strstr(out, "Basic YTo=\r\n") != NULL);
    CHECK_RC(pod_proxy_url_parse("http://a:b@p", &px, err), 0, err);
    pod_proxy_request(&px, "h", 1, out, sizeof(out));
    CHECK(strstr(out, "Basic YTpi\r\n") != NULL);
    CHECK_RC(pod_proxy_url_parse("http://:@p", &px, err), 0, err);
    pod_proxy_request(&px, "h", 1, out, sizeof(out));
    CHECK(strstr(out, "Basic Og==\r\n") != NULL);
    /* no user info: no header; IPv6 in brackets */
    CHECK_RC(pod_proxy_url_parse("http://p:1", &px, err), 0, err);
    n = pod_proxy_request(&px, "2001:db8::1", 443, out, sizeof(out));
    CHECK_EQ_STR(out, "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n");
    /* does not fit: -1, nothing usable left */
    CHECK_EQ_INT(pod_proxy_request(&px, "2001:db8::1", 443, out, (size_t)n), -1);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(pod_proxy_request(&px, "2001:db8::1", 443, out, (size_t)n + 1), n);
    /* the largest: a host of P2M_HOST_MAX bytes, credentials of POD_PROXY_CRED_MAX each */
    char url[1200], host[P2M_HOST_MAX + 2];
    memset(host, 'h', sizeof(host));
    host[P2M_HOST_MAX] = '\0';
    int k = snprintf(url, sizeof(url), "http://");
    for (int i = 0; i < POD_PROXY_CRED_MAX; i++)
        url[k++] = 'u';
    url[k++] = ':';
    for (int i = 0; i < POD_PROXY_CRED_MAX; i++)
        url[k++] = 'p';
    snprintf(url + k, sizeof(url) - (size_t)k, "@p:1");
    CHECK_RC(pod_proxy_url_parse(url, &px, err), 0, err);
    n = pod_proxy_request(&px, host, 65535, out, sizeof(out));
    CHECK_MSG(n > 0 && (size_t)n < sizeof(out), "the largest request: %d bytes of %zu", n, sizeof(out));
    host[P2M_HOST_MAX] = 'h';
    host[P2M_HOST_MAX + 1] = '\0';
    CHECK_EQ_INT(pod_proxy_request(&px, host, 65535, out, sizeof(out)), -1);
    pod_proxy_wipe(&px);
}

/* --- pod_proxy_resp_feed ---------------------------------------------------------------------- */

struct resp_row {
    const char *in;
    size_t len;
    int rc;       /* after all of in */
    size_t after; /* DONE: the bytes after the header, the tunnel's */
    int status;
    const char *reason, *scheme, *err;
};

/* Feeds in[0..len) in pieces split at the offsets in cut (sorted, ncut of them); checks the
 * outcome. Each piece is an exact copy, so that ASan sees any read past it. */
static void feed_split(const struct resp_row *r, const size_t *cut, size_t ncut)
{
    pod_proxy_resp_t p;
    pod_proxy_resp_init(&p);
    size_t off = 0, total = 0;
    int rc = PROXY_RESP_MORE;
    for (size_t c = 0; c <= ncut && rc == PROXY_RESP_MORE; c++) {
        size_t end = c < ncut ? cut[c] : r->len, used = 12345;
        char *piece = check_exact_copy(r->in + off, end - off);
        rc = pod_proxy_resp_feed(&p, piece, end - off, &used);
        free(piece);
        if (rc == PROXY_RESP_MORE)
            CHECK_EQ_INT(used, end - off);
        CHECK(used <= end - off);
        total += used;
        off = end;
    }
    if (!CHECK_EQ_INT(rc, r->rc))
        return;
    size_t used = 1;
    if (rc != PROXY_RESP_MORE) { /* stays, and takes nothing more */
        CHECK_EQ_INT(pod_proxy_resp_feed(&p, "x", 1, &used), rc);
        CHECK_EQ_INT(used, 0);
    }
    if (rc == PROXY_RESP_DONE) {
        CHECK_EQ_INT(total, r->len - r->after);
        CHECK_EQ_INT(p.status, r->status);
        CHECK_EQ_STR(p.reason, r->reason);
        CHECK_EQ_STR(p.auth_scheme, r->scheme);
    } else if (rc == PROXY_RESP_BAD) {
        CHECK_MSG(p.err != NULL && strstr(p.err, r->err) != NULL, "err %s, want %s", check_str(p.err), r->err);
    }
}

static void test_resp(void)
{
    static const struct resp_row rows[] = {
        {LIT("HTTP/1.1 200 Connection established\r\n\r\n"), PROXY_RESP_DONE, 0, 200, "Connection established", "", NULL},
        {LIT("HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n"), PROXY_RESP_DONE, 0, 200,
         "Connection established", "", NULL},
        {LIT("HTTP/1.1 200\r\n\r\n"), PROXY_RESP_DONE, 0, 200, "", "", NULL},
        {LIT("HTTP/1.1 200 \r\n\r\n"), PROXY_RESP_DONE, 0, 200, "", "", NULL},
        {LIT("HTTP/1.1 200 OK\n\n"), PROXY_RESP_DONE, 0, 200, "OK", "", NULL},
        {LIT("HTTP/1.1 200 OK\r\nA: b\n\r\n"), PROXY_RESP_DONE, 0, 200, "OK", "", NULL},
        {LIT("HTTP/1.1 204 No Content\r\n\r\n"), PROXY_RESP_DONE, 0, 204, "No Content", "", NULL},
        /* what follows the header is the tunnel's */
        {LIT("HTTP/1.1 200 OK\r\n\r\nGET / HTTP/1.1\r\n"), PROXY_RESP_DONE, 16, 200, "OK", "", NULL},
        {LIT("HTTP/1.1 200 OK\r\n\r\n\0\0\r\n\r\n"), PROXY_RESP_DONE, 6, 200, "OK", "", NULL},
        {LIT("HTTP/1.1 200 OK\r\n\r\n\r\n"), PROXY_RESP_DONE, 2, 200, "OK", "", NULL},
        /* refusals */
        {LIT("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 5\r\n\r\n"
             "Nope!"),
         PROXY_RESP_DONE, 5, 407, "Proxy Authentication Required", "Basic", NULL},
        {LIT("HTTP/1.1 407 x\r\nproxy-authenticate:   Negotiate\r\nProxy-Authenticate: Basic\r\n\r\n"), PROXY_RESP_DONE, 0, 407,
         "x", "Negotiate", NULL},
        {LIT("HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"Tinyproxy\"\r\n\r\n"), PROXY_RESP_DONE, 0, 401,
         "Unauthorized", "Basic", NULL},
        {LIT("HTTP/1.1 407 x\r\nProxy-Authenticate: \r\n\r\n"), PROXY_RESP_DONE, 0, 407, "x", "", NULL},
        {LIT("HTTP/1.1 407 x\r\nProxy-Authenticate: AVeryLongSchemeNameIndeed\r\n\r\n"), PROXY_RESP_DONE, 0, 407, "x",
         "AVeryLongScheme", NULL},
        {LIT("HTTP/1.1 403 Access \"violation\"\x01\xff\r\n\r\n"), PROXY_RESP_DONE, 0, 403, "Access ?violation???", "", NULL},
        {LIT("HTTP/1.1 599 x\r\n\r\n"), PROXY_RESP_DONE, 0, 599, "x", "", NULL},
        {LIT("HTTP/1.1 100 Continue\r\n\r\n"), PROXY_RESP_DONE, 0, 100, "Continue", "", NULL},
        /* incomplete */
        {LIT(""), PROXY_RESP_MORE, 0, 0, NULL, NULL, NULL},
        {LIT("HTTP/1.1 200 OK\r\n"), PROXY_RESP_MORE, 0, 0, NULL, NULL, NULL},
        {LIT("HTTP/1.1 200 OK\r\n\r"), PROXY_RESP_MORE, 0, 0, NULL, NULL, NULL},
        {LIT("HTTP/1.1 200 OK\r\nA: b\r\n"), PROXY_RESP_MORE, 0, 0, NULL, NULL, NULL},
        /* not HTTP/1.x */
        {LIT("\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("\r\nHTTP/1.1 200 OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("SSH-2.0-OpenSSH_9.2\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/2 200\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1 20 OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1 2000 OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1 099 x\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1 600 x\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1 20x OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1  200 OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("http/1.1 200 OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.x 200 OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1\t200 OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1 200OK\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "status line"},
        {LIT("HTTP/1.1 200 OK\rX\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "CR not followed by LF"},
        {LIT("HTTP/1.1 200 OK\r\n\r\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "CR not followed by LF"},
        {LIT("HTTP/1.1 200 OK\0\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "NUL"},
        {LIT("HTTP/1.1 200 OK\r\nA: \0\r\n\r\n"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "NUL"},
        {LIT("\0"), PROXY_RESP_BAD, 0, 0, NULL, NULL, "NUL"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct resp_row *r = &rows[i];
        size_t cut[256];
        CHECK_CTX("resp row %zu %s whole", i, check_bytes(r->in, r->len));
        feed_split(r, NULL, 0);
        /* byte by byte */
        size_t n = 0;
        for (size_t k = 1; k < r->len && n < 256; k++)
            cut[n++] = k;
        CHECK_CTX("resp row %zu %s byte by byte", i, check_bytes(r->in, r->len));
        if (r->len <= 256)
            feed_split(r, cut, n);
        /* every two-piece split */
        for (size_t k = 0; k <= r->len; k++) {
            CHECK_CTX("resp row %zu %s split at %zu", i, check_bytes(r->in, r->len), k);
            cut[0] = k;
            feed_split(r, cut, 1);
        }
    }
    CHECK_CTX(NULL);
}

/* Limits: the header at POD_PROXY_HDR_MAX bytes and one more; a status line of 256 bytes and 257;
 * long header lines past the line buffer. */
static void test_resp_limits(void)
{
    char *buf = malloc(POD_PROXY_HDR_MAX + 64);
    pod_proxy_resp_t p;
    size_t used;
    CHECK(buf != NULL);
    /* one long header line fills the header to exactly the limit */
    size_t head = strlen("HTTP/1.1 200 OK\r\nX: "), tail = 4;
    memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", head);
    memset(buf + head, 'a', POD_PROXY_HDR_MAX - head - tail);
    memcpy(buf + POD_PROXY_HDR_MAX - tail, "\r\n\r\n", tail);
    CHECK_CTX("a header of %d bytes", POD_PROXY_HDR_MAX);
    pod_proxy_resp_init(&p);
    CHECK_EQ_INT(pod_proxy_resp_feed(&p, buf, POD_PROXY_HDR_MAX, &used), PROXY_RESP_DONE);
    CHECK_EQ_INT(used, POD_PROXY_HDR_MAX);
    CHECK_EQ_INT(p.status, 200);
    memset(buf + head, 'a', POD_PROXY_HDR_MAX - head - tail + 1);
    memcpy(buf + POD_PROXY_HDR_MAX - tail + 1, "\r\n\r\n", tail);
    CHECK_CTX("a header of %d bytes", POD_PROXY_HDR_MAX + 1);
    pod_proxy_resp_init(&p);
    CHECK_EQ_INT(pod_proxy_resp_feed(&p, buf, POD_PROXY_HDR_MAX + 1, &used), PROXY_RESP_BAD);
    CHECK_EQ_INT(used, POD_PROXY_HDR_MAX + 1);
    CHECK(p.err != NULL && strstr(p.err, "longer than") != NULL);
    /* many short lines, byte by byte, up to the limit */
    pod_proxy_resp_init(&p);
    int rc = pod_proxy_resp_feed(&p, LIT("HTTP/1.1 200 OK\r\n"), &used);
    size_t total = strlen("HTTP/1.1 200 OK\r\n");
    while (rc == PROXY_RESP_MORE && total < 2 * POD_PROXY_HDR_MAX) {
        rc = pod_proxy_resp_feed(&p, "A:b\n", 4, &used);
        total += used;
    }
    CHECK_EQ_INT(rc, PROXY_RESP_BAD);
    CHECK_EQ_INT(total, POD_PROXY_HDR_MAX + 1);
    /* the status line: 256 bytes fit the buffer, 257 do not */
    memcpy(buf, "HTTP/1.1 200 ", 13);
    memset(buf + 13, 'r', 256 - 13);
    memcpy(buf + 256, "\r\n\r\n", 4);
    CHECK_CTX("a status line of 256 bytes");
    pod_proxy_resp_init(&p);
    CHECK_EQ_INT(pod_proxy_resp_feed(&p, buf, 260, &used), PROXY_RESP_DONE);
    CHECK_EQ_INT(strlen(p.reason), POD_PROXY_REASON_MAX);
    buf[256] = 'r';
    memcpy(buf + 257, "\r\n\r\n", 4);
    CHECK_CTX("a status line of 257 bytes");
    pod_proxy_resp_init(&p);
    CHECK_EQ_INT(pod_proxy_resp_feed(&p, buf, 261, &used), PROXY_RESP_BAD);
    CHECK(p.err != NULL && strstr(p.err, "status line is too long") != NULL);
    free(buf);
    CHECK_CTX(NULL);
}

/* --- pod_proxy_refusal ------------------------------------------------------------------------ */

static void test_refusal(void)
{
    pod_proxy_t px, anon;
    char err[P2M_ERR_LEN], out[P2M_ERR_LEN];
    CHECK_RC(pod_proxy_url_parse("http://me:Sekr1t@proxy:3128", &px, err), 0, err);
    CHECK_RC(pod_proxy_url_parse("http://proxy:3128", &anon, err), 0, err);
    static const struct {
        int anon, status;
        const char *reason, *scheme, *want;
    } rows[] = {
        {0, 407, "Proxy Authentication Required", "Basic",
         "proxy http://me@proxy:3128 answered CONNECT r:1 with 407 Proxy Authentication Required: check the user and password in "
         "the "
         "proxy URL"},
        {0, 401, "Unauthorized", "",
         "proxy http://me@proxy:3128 answered CONNECT r:1 with 401 Unauthorized: check the user and password"},
        {1, 407, "", NULL,
         "proxy http://proxy:3128 answered CONNECT r:1 with 407: it wants a user and password: give them in the proxy URL"},
        {0, 407, "x", "NTLM", "with 407 x: it asks for authentication the pod does not speak (only Basic) (it offers NTLM)"},
        {0, 403, "Forbidden", NULL,
         "with 403 Forbidden: the proxy must allow CONNECT to the registrar's port and the relay's port range"},
        {0, 405, NULL, NULL, "with 405: the proxy must allow CONNECT"},
        {0, 502, "Bad Gateway", NULL, "with 502 Bad Gateway: the proxy could not connect to it, or failed"},
        {0, 500, "Unable to connect", NULL, "with 500 Unable to connect: the proxy could not connect to it"},
        {0, 301, "Moved", NULL, "with 301 Moved: only a 2xx opens a tunnel"},
        {0, 400, "a\"b\\c\x01\xff", "Ba\"sic", "with 400 a?b?c??: only a 2xx"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("refusal row %zu", i);
        pod_proxy_refusal(rows[i].anon ? &anon : &px, "r:1", rows[i].status, rows[i].reason, rows[i].scheme, out, sizeof(out));
        CHECK_MSG(strstr(out, rows[i].want) != NULL, "message %s, want %s", check_str(out), rows[i].want);
        CHECK_MSG(strstr(out, "Sekr1t") == NULL, "the password in %s", out);
        for (const char *c = out; *c != '\0'; c++)
            if (!CHECK_MSG(*c >= 0x20 && *c < 0x7f, "not printable: %s", check_str(out)))
                break;
    }
    /* cut to cap */
    pod_proxy_refusal(&px, "r:1", 407, "x", NULL, out, 20);
    CHECK_EQ_INT(strlen(out), 19);
    CHECK_CTX(NULL);
}

int main(void)
{
    test_url();
    test_url_secret();
    test_url_limits();
    test_bypass();
    test_request();
    test_resp();
    test_resp_limits();
    test_refusal();
    return check_done("proxy");
}
