/* Unit tests for pod/echo_http.c against pod/echo_http.h: the HTTP echo's request heads, with
 * hostile rows (no CRLF, split heads, a bad request line, header lines without a colon, chunked,
 * Content-Length negative, signed, spaced, huge, duplicated or in disagreement, NUL bytes, heads at
 * ECHO_HEAD_MAX and past it, bodies at ECHO_BODY_MAX and past it), and every split of a pipelined
 * input read in pieces. */

#include "check.h"
#include "echo_http.h"

#include <stdlib.h>
#include <string.h>

#define LIT(s) s, sizeof(s) - 1

struct row {
    const char *in;
    size_t len;
    int status;
    size_t head_len, body_len; /* on 200 */
    int close, head;
};

#define OK(lit, hl, bl, cl, hd) {LIT(lit), 200, hl, bl, cl, hd}
#define MORE(lit) {LIT(lit), 0, 0, 0, 0, 0}
#define REFUSED(lit, st) {LIT(lit), st, 0, 0, 0, 0}

static int parse_exact(const char *in, size_t len, echo_http_req_t *r)
{
    char *p = check_exact_copy(in, len);
    memset(r, 0x5a, sizeof(*r));
    int st = echo_http_parse(p, len, r);
    free(p);
    return st;
}

static void check_row(const char *table, size_t i, const struct row *w)
{
    echo_http_req_t r;
    CHECK_CTX("%s row %zu %s", table, i, check_bytes(w->in, w->len));
    int st = parse_exact(w->in, w->len, &r);
    if (!CHECK_EQ_INT(st, w->status) || st != 200)
        return;
    CHECK_EQ_INT(r.head_len, w->head_len);
    CHECK_EQ_INT(r.body_len, w->body_len);
    CHECK_EQ_INT(r.close, w->close);
    CHECK_EQ_INT(r.head, w->head);
}

static void test_rows(void)
{
    static const struct row rows[] = {
        OK("GET / HTTP/1.1\r\n\r\n", 18, 0, 0, 0),
        OK("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27, 0, 0, 0),
        OK("GET / HTTP/1.1\r\nHost: a\r\n\r\ntrailing", 27, 0, 0, 0),
        OK("HEAD / HTTP/1.1\r\n\r\n", 19, 0, 0, 1),
        OK("HEADS / HTTP/1.1\r\n\r\n", 20, 0, 0, 0),
        OK("head / HTTP/1.1\r\n\r\n", 19, 0, 0, 0),
        OK("GET / HTTP/1.0\r\n\r\n", 18, 0, 1, 0),
        OK("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 42, 0, 0, 0),
        OK("GET / HTTP/1.0\r\nconnection:KEEP-ALIVE \r\n\r\n", 42, 0, 0, 0),
        OK("GET / HTTP/1.0\r\nConnection: keep-alive, x\r\n\r\n", 45, 0, 1, 0),
        OK("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 37, 0, 1, 0),
        OK("GET / HTTP/1.1\r\nCONNECTION:\tClose\t\r\n\r\n", 38, 0, 1, 0),
        OK("GET / HTTP/1.1\r\nConnection: close, upgrade\r\n\r\n", 46, 0, 0, 0),
        OK("GET / HTTP/1.1\r\nConnection : close\r\n\r\n", 38, 0, 0, 0),
        OK("GET / HTTP/1.9\r\n\r\n", 18, 0, 0, 0),
        OK("GET * HTTP/1.1\r\n\r\n", 18, 0, 0, 0),
        /* Content-Length */
        OK("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 38, 5, 0, 0),
        OK("POST / HTTP/1.1\r\ncontent-length:5\r\n\r\nhello", 37, 5, 0, 0),
        OK("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 38, 0, 0, 0),
        OK("POST / HTTP/1.1\r\nContent-Length: 005\r\n\r\nhello", 40, 5, 0, 0),
        OK("POST / HTTP/1.1\r\nContent-Length: 5 \t\r\n\r\nhello", 40, 5, 0, 0),
        OK("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 57, 5, 0, 0),
        OK("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\nhello", 58, 5, 0, 0),
        OK("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhello", 38, 2, 0, 0),
        MORE("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhell"),
        MORE("POST / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n"),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999999\r\n\r\n", 413),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 18446744073709551621\r\n\r\n", 413),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5,5\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5a\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5.0\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length:   \r\n\r\n", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5\0\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 6\r\ncontent-length: 5\r\n\r\nhello!", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: x\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length:\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 99999999\r\n\r\nhello", 400),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 99999999\r\nContent-Length: 99999999\r\n\r\n", 413),
        /* a name not followed by its colon is another header: no body is read */
        OK("POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello", 39, 0, 0, 0),
        OK("POST / HTTP/1.1\r\nContent-Lengthy: 5\r\n\r\nhello", 39, 0, 0, 0),
        OK("POST / HTTP/1.1\r\nX-Content-Length: 5\r\n\r\nhello", 40, 0, 0, 0),
        OK("POST / HTTP/1.1\r\n Content-Length: 5\r\n\r\nhello", 39, 0, 0, 0),
        OK("POST / HTTP/1.1\r\nContent\0Length: 5\r\n\r\nhello", 38, 0, 0, 0),
        /* chunked, or any Transfer-Encoding, is not read */
        REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
        REFUSED("POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n", 411),
        REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", 411),
        REFUSED("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello", 411),
        REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: -1\r\n\r\n", 411),
        /* header lines without a colon, or odd ones, are carried along */
        OK("GET / HTTP/1.1\r\nno colon here\r\n\r\n", 33, 0, 0, 0),
        OK("GET / HTTP/1.1\r\n:\r\n\r\n", 21, 0, 0, 0),
        OK("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26, 0, 0, 0),
        OK("GET / HTTP/1.1\r\nX: a\nConnection: close\r\n\r\n", 42, 0, 1, 0),
        /* the request line */
        REFUSED("GET  HTTP/1.1\r\n\r\n", 400),
        REFUSED(" / HTTP/1.1\r\n\r\n", 400),
        REFUSED("GET /HTTP/1.1\r\n\r\n", 400),
        REFUSED("GET / HTTP/1.1 \r\n\r\n", 400),
        REFUSED("GET / HTTP/2.0\r\n\r\n", 400),
        REFUSED("GET / HTTP/1.10\r\n\r\n", 400),
        REFUSED("GET / http/1.1\r\n\r\n", 400),
        REFUSED("GET / HTTP/1\r\n\r\n", 400),
        REFUSED("GET\r\n\r\n", 400),
        REFUSED("\r\n\r\n", 400),
        REFUSED("GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
        REFUSED("GET / a b HTTP/1.1\r\n\r\n", 400),
        REFUSED("GET\0/ HTTP/1.1\r\n\r\n", 400),
        REFUSED("\0\0\0\0\r\n\r\n", 400),
        OK("GET /\0 HTTP/1.1\r\n\r\n", 19, 0, 0, 0),
        REFUSED("GET\t/ HTTP/1.1\r\n\r\n", 400),
        /* no end of head yet */
        MORE(""),
        MORE("G"),
        MORE("GET / HTTP/1.1\r\n"),
        MORE("GET / HTTP/1.1\r\n\r"),
        MORE("GET / HTTP/1.1\n\n"),
        MORE("GET / HTTP/1.1\r\nHost: a\n\n"),
        MORE("GET / HTTP/1.1\r\n\n\r\n"),
        MORE("GET / HTTP/1.1\r\r\n\n"),
        MORE("\0\0\0\0\0\0\0\0"),
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        check_row("fixed", i, &rows[i]);
    CHECK_CTX(NULL);
}

/* Heads at ECHO_HEAD_MAX and past it; bodies at ECHO_BODY_MAX. */
static void test_limits(void)
{
    size_t cap = ECHO_HEAD_MAX + ECHO_BODY_MAX + 64;
    char *in = malloc(cap);
    echo_http_req_t r;
    if (in == NULL)
        abort();
    static const char line[] = "GET / HTTP/1.1\r\nX: ";

    /* a head of exactly ECHO_HEAD_MAX bytes */
    memcpy(in, line, sizeof(line) - 1);
    memset(in + sizeof(line) - 1, 'a', ECHO_HEAD_MAX - (sizeof(line) - 1) - 4);
    memcpy(in + ECHO_HEAD_MAX - 4, "\r\n\r\n", 4);
    CHECK_CTX("head of ECHO_HEAD_MAX bytes");
    if (CHECK_EQ_INT(parse_exact(in, ECHO_HEAD_MAX, &r), 200))
        CHECK_EQ_INT(r.head_len, ECHO_HEAD_MAX);
    CHECK_EQ_INT(parse_exact(in, ECHO_HEAD_MAX - 1, &r), 0);

    /* one byte more: the end is past the limit */
    memcpy(in, line, sizeof(line) - 1);
    memset(in + sizeof(line) - 1, 'a', ECHO_HEAD_MAX - (sizeof(line) - 1) - 3);
    memcpy(in + ECHO_HEAD_MAX - 3, "\r\n\r\n", 4);
    CHECK_CTX("head of ECHO_HEAD_MAX + 1 bytes");
    CHECK_EQ_INT(parse_exact(in, ECHO_HEAD_MAX + 1, &r), 431);
    CHECK_EQ_INT(parse_exact(in, ECHO_HEAD_MAX, &r), 431);
    CHECK_EQ_INT(parse_exact(in, ECHO_HEAD_MAX - 1, &r), 0);

    /* no CRLF at all: 431 once ECHO_HEAD_MAX bytes are in */
    memset(in, 'A', cap);
    CHECK_CTX("no end of head");
    CHECK_EQ_INT(parse_exact(in, ECHO_HEAD_MAX - 1, &r), 0);
    CHECK_EQ_INT(parse_exact(in, ECHO_HEAD_MAX, &r), 431);
    CHECK_EQ_INT(parse_exact(in, cap, &r), 431);
    memset(in, '\n', cap);
    CHECK_CTX("only LF");
    CHECK_EQ_INT(parse_exact(in, cap, &r), 431);
    memset(in, '\0', cap);
    CHECK_CTX("only NUL");
    CHECK_EQ_INT(parse_exact(in, cap, &r), 431);

    /* a body of ECHO_BODY_MAX bytes */
    int n = snprintf(in, cap, "PUT /b HTTP/1.1\r\nContent-Length: %d\r\n\r\n", ECHO_BODY_MAX);
    memset(in + n, 'b', ECHO_BODY_MAX);
    CHECK_CTX("body of ECHO_BODY_MAX bytes");
    if (CHECK_EQ_INT(parse_exact(in, (size_t)n + ECHO_BODY_MAX, &r), 200)) {
        CHECK_EQ_INT(r.head_len, n);
        CHECK_EQ_INT(r.body_len, ECHO_BODY_MAX);
    }
    CHECK_EQ_INT(parse_exact(in, (size_t)n + ECHO_BODY_MAX - 1, &r), 0);
    free(in);
    CHECK_CTX(NULL);
}

/* Pipelined requests read in two pieces at every split give what one read gives. */
static void test_split(void)
{
    static const char pipe[] = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
    size_t len = sizeof(pipe) - 1, first = 42, second = len - first;
    echo_http_req_t r;
    for (size_t k = 0; k <= len; k++) {
        CHECK_CTX("first %zu bytes", k);
        int st = parse_exact(pipe, k, &r);
        if (k < first) {
            CHECK_EQ_INT(st, 0);
        } else if (CHECK_EQ_INT(st, 200)) {
            CHECK_EQ_INT(r.head_len, 39);
            CHECK_EQ_INT(r.body_len, 3);
            CHECK_EQ_INT(r.close, 0);
        }
    }
    for (size_t k = 0; k <= second; k++) {
        CHECK_CTX("second request, %zu bytes", k);
        int st = parse_exact(pipe + first, k, &r);
        if (k < second) {
            CHECK_EQ_INT(st, 0);
        } else if (CHECK_EQ_INT(st, 200)) {
            CHECK_EQ_INT(r.head_len, second);
            CHECK_EQ_INT(r.body_len, 0);
            CHECK_EQ_INT(r.close, 1);
        }
    }
    CHECK_CTX(NULL);
}

static void test_reasons(void)
{
    CHECK_EQ_STR(echo_http_reason(200), "OK");
    CHECK_EQ_STR(echo_http_reason(400), "Bad Request");
    CHECK_EQ_STR(echo_http_reason(411), "Length Required");
    CHECK_EQ_STR(echo_http_reason(413), "Content Too Large");
    CHECK_EQ_STR(echo_http_reason(431), "Request Header Fields Too Large");
    CHECK_EQ_STR(echo_http_reason(0), "Error");
}

int main(void)
{
    test_rows();
    test_limits();
    test_split();
    test_reasons();
    return check_done("echo_http");
}
