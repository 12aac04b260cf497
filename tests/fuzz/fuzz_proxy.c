/* libFuzzer target for pod/proxy.c: the parser of a proxy's answer to CONNECT
 * (pod_proxy_resp_feed), and beside it the proxy URL, no_proxy, the CONNECT request and the refusal
 * message. The input is "URL\nNO_PROXY\nHOST\n" then the answer's bytes (a missing line is "").
 *
 * The answer is fed whole and again in pieces (of 1 to 16 bytes, the size taken from the input's
 * first byte), each piece an exact copy so that ASan sees a read past it; both give the same
 * outcome, header length and fields. Once done: the header is at most POD_PROXY_HDR_MAX bytes, ends
 * with LF, holds no NUL, and starts "HTTP/1."; the status is 100-599; the reason and the scheme are
 * printable. MORE means every byte was taken and the header is still within its bound. The URL,
 * when it parses, gives a host, a port, a shown form without the password and a CONNECT request
 * that fits POD_PROXY_REQ_MAX; when it does not, one printable line without the password. */

#include "fuzz.h"
#include "proxy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int rc;
    size_t used;
    pod_proxy_resp_t r;
} outcome_t;

/* Feeds data[0..size) in pieces of `piece` bytes (0: whole) until the parser is done or bad. */
static void feed(const uint8_t *data, size_t size, size_t piece, outcome_t *o)
{
    size_t off = 0;
    pod_proxy_resp_init(&o->r);
    o->rc = PROXY_RESP_MORE;
    o->used = 0;
    do {
        size_t n = piece == 0 || size - off < piece ? size - off : piece, used = 0;
        char *copy = malloc(n == 0 ? 1 : n);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, data + off, n);
        o->rc = pod_proxy_resp_feed(&o->r, copy, n, &used);
        free(copy);
        FUZZ_CHECK(used <= n);
        if (o->rc == PROXY_RESP_MORE)
            FUZZ_CHECK(used == n);
        o->used += used;
        off += n;
    } while (o->rc == PROXY_RESP_MORE && off < size);
}

static int printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static void check_answer(const uint8_t *data, size_t size, size_t piece)
{
    outcome_t whole, pieces;
    feed(data, size, 0, &whole);
    feed(data, size, piece, &pieces);
    FUZZ_CHECK(whole.rc == pieces.rc);
    FUZZ_CHECK(whole.rc == PROXY_RESP_MORE || whole.rc == PROXY_RESP_DONE || whole.rc == PROXY_RESP_BAD);
    if (whole.rc == PROXY_RESP_MORE) {
        FUZZ_CHECK(whole.used == size && pieces.used == size);
        FUZZ_CHECK(size <= POD_PROXY_HDR_MAX);
        return;
    }
    if (whole.rc == PROXY_RESP_BAD) {
        FUZZ_CHECK(whole.r.err != NULL && pieces.r.err != NULL && strcmp(whole.r.err, pieces.r.err) == 0);
        FUZZ_CHECK(whole.used == pieces.used && whole.used <= POD_PROXY_HDR_MAX + 1);
        return;
    }
    FUZZ_CHECK(whole.used == pieces.used);
    FUZZ_CHECK(whole.used >= 12 && whole.used <= POD_PROXY_HDR_MAX && whole.used <= size);
    FUZZ_CHECK(data[whole.used - 1] == '\n');
    FUZZ_CHECK(memchr(data, '\0', whole.used) == NULL);
    FUZZ_CHECK(memcmp(data, "HTTP/1.", 7) == 0);
    FUZZ_CHECK(whole.r.status >= 100 && whole.r.status <= 599 && whole.r.status == pieces.r.status);
    FUZZ_CHECK(FUZZ_TERMINATED(whole.r.reason) && FUZZ_TERMINATED(whole.r.auth_scheme));
    FUZZ_CHECK(printable(whole.r.reason) && printable(whole.r.auth_scheme));
    FUZZ_CHECK(strcmp(whole.r.reason, pieces.r.reason) == 0 && strcmp(whole.r.auth_scheme, pieces.r.auth_scheme) == 0);
    /* feeding more changes nothing */
    size_t used = 1;
    FUZZ_CHECK(pod_proxy_resp_feed(&whole.r, "HTTP/1.1 200 OK\r\n\r\n", 19, &used) == PROXY_RESP_DONE && used == 0);
}

static void check_url(const char *url, const char *no_proxy, const char *host, const pod_proxy_resp_t *answer)
{
    pod_proxy_t px;
    char err[P2M_ERR_LEN] = "", req[POD_PROXY_REQ_MAX], msg[P2M_ERR_LEN];
    int rc = pod_proxy_url_parse(url, &px, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(pod_proxy_bypass(no_proxy, host) == 0 || pod_proxy_bypass(no_proxy, host) == 1);
    if (strcmp(no_proxy, "*") == 0 && host[0] != '\0')
        FUZZ_CHECK(pod_proxy_bypass(no_proxy, host) == 1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        FUZZ_CHECK(px.host[0] == '\0' && px.pass[0] == '\0');
        return;
    }
    FUZZ_CHECK(FUZZ_TERMINATED(px.host) && FUZZ_TERMINATED(px.user) && FUZZ_TERMINATED(px.pass) && FUZZ_TERMINATED(px.shown) &&
               FUZZ_TERMINATED(px.url));
    FUZZ_CHECK(px.host[0] != '\0' && px.port >= 1);
    FUZZ_CHECK(strchr(px.user, ':') == NULL);
    FUZZ_CHECK(printable(px.shown) && strncmp(px.shown, "http://", 7) == 0 && strncmp(px.url, "http://", 7) == 0);
    /* the shown form is http://[USER@]HOSTPORT: the password could only show as part of those */
    FUZZ_CHECK(strchr(px.shown + 7, ':') == strrchr(px.shown, ':') || strchr(px.shown, '[') != NULL);
    /* the request for the longest target fits, and for the given host when it is one */
    char longest[P2M_HOST_MAX + 1];
    memset(longest, 'h', P2M_HOST_MAX);
    longest[P2M_HOST_MAX] = '\0';
    int n = pod_proxy_request(&px, longest, 65535, req, sizeof(req));
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(req) && (size_t)n == strlen(req));
    FUZZ_CHECK(memcmp(req + n - 4, "\r\n\r\n", 4) == 0);
    FUZZ_CHECK((strstr(req, "\r\nProxy-Authorization: Basic ") != NULL) == (px.auth != 0));
    n = pod_proxy_request(&px, host, 1, req, sizeof(req));
    FUZZ_CHECK(n == -1 || ((size_t)n < sizeof(req) && (size_t)n == strlen(req)));
    pod_proxy_refusal(&px, "relay:1", answer->status, answer->reason, answer->auth_scheme, msg, sizeof(msg));
    FUZZ_CHECK(printable(msg) && strlen(msg) < sizeof(msg));
    pod_proxy_wipe(&px);
    FUZZ_CHECK(px.pass[0] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line[3] = {"", "", ""};
    char *copy = fuzz_cstr(data, size);
    FUZZ_CHECK(copy != NULL);
    size_t off = 0;
    for (int i = 0; i < 3 && off < size; i++) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t end = nl != NULL ? (size_t)(nl - data) : size;
        copy[end] = '\0';
        line[i] = copy + off;
        off = end + (nl != NULL);
    }
    size_t piece = size > 0 ? 1 + data[0] % 16 : 1;
    check_answer(data + off, size - off, piece);
    outcome_t o;
    feed(data + off, size - off, 0, &o);
    check_url(line[0], line[1], line[2], &o.r);
    free(copy);
    return 0;
}
