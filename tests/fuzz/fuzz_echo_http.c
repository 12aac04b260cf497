/* libFuzzer target for the request-head parser of the pod's HTTP echo (pod/echo_http.c:
 * echo_http_parse), which reads what consumers send through a tunnel. It returns one of the
 * statuses echo_http.h lists; a complete request ends its head at the first CRLF CRLF, within
 * ECHO_HEAD_MAX, has a body of at most ECHO_BODY_MAX that the input holds, and a body length that
 * every Content-Length line states; any prefix of the input gives "more" or the same answer, so
 * that reading in pieces changes nothing; and a request is answered the same without what follows
 * it (pipelining). */

#include "echo_http.h"
#include "fuzz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parses len bytes from an allocation of exactly that size, so that ASan catches a read past them. */
static int parse_exact(const uint8_t *data, size_t len, echo_http_req_t *req)
{
    char *in = malloc(len > 0 ? len : 1);
    FUZZ_CHECK(in != NULL);
    memcpy(in, data, len);
    memset(req, 0x5a, sizeof(*req));
    int st = echo_http_parse(in, len, req);
    free(in);
    return st;
}

/* Every header line (after the request line) of head[0..len) named Content-Length states n. */
static int content_lengths_agree(const uint8_t *head, size_t len, size_t n)
{
    static const char name[] = "content-length:";
    const uint8_t *p = memchr(head, '\n', len), *end = head + len;
    while (p != NULL && p + 1 < end) {
        const uint8_t *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            break;
        if ((size_t)(eol - line) >= sizeof(name) - 1 && strncasecmp((const char *)line, name, sizeof(name) - 1) == 0 &&
            memchr(line, '\0', sizeof(name) - 1) == NULL) {
            size_t v = 0;
            const uint8_t *q = line + sizeof(name) - 1;
            while (q < eol && (*q == ' ' || *q == '\t'))
                q++;
            for (; q < eol && *q >= '0' && *q <= '9'; q++)
                if ((v = v * 10 + (size_t)(*q - '0')) > ECHO_BODY_MAX)
                    return 0;
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r'))
                q++;
            if (q != eol || v != n)
                return 0;
        }
        p = eol;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    echo_http_req_t r, r2;
    int st = parse_exact(data, size, &r);
    FUZZ_CHECK(st == 0 || st == 200 || st == 400 || st == 411 || st == 413 || st == 431);
    FUZZ_CHECK(strlen(echo_http_reason(st)) > 0);
    if (st == 431)
        FUZZ_CHECK(size >= ECHO_HEAD_MAX);

    const uint8_t *crlf2 = memmem(data, size, "\r\n\r\n", 4);
    size_t head_end = crlf2 != NULL ? (size_t)(crlf2 - data) + 4 : 0;
    if (crlf2 == NULL || head_end > ECHO_HEAD_MAX)
        FUZZ_CHECK(st == 0 || st == 431);
    if (st == 200) {
        FUZZ_CHECK(r.head_len == head_end);
        FUZZ_CHECK(r.body_len <= ECHO_BODY_MAX && r.head_len + r.body_len <= size);
        FUZZ_CHECK(r.close == 0 || r.close == 1);
        FUZZ_CHECK(r.head == (r.head_len > 5 && memcmp(data, "HEAD ", 5) == 0));
        FUZZ_CHECK(content_lengths_agree(data, r.head_len, r.body_len));
        /* pipelining: the request alone gives the same answer */
        FUZZ_CHECK(parse_exact(data, r.head_len + r.body_len, &r2) == 200);
        FUZZ_CHECK(r2.head_len == r.head_len && r2.body_len == r.body_len && r2.close == r.close && r2.head == r.head);
    }
    /* reading in pieces: a prefix (its length taken from the input) says "more" or the same */
    if (size > 0) {
        size_t k = (size_t)data[size - 1] * 67 % size;
        int sk = parse_exact(data, k, &r2);
        FUZZ_CHECK(sk == 0 || sk == st);
        if (st == 200 && k >= r.head_len + r.body_len)
            FUZZ_CHECK(sk == 200 && r2.head_len == r.head_len && r2.body_len == r.body_len);
    }
    return 0;
}
