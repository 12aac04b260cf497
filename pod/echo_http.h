#ifndef POD_ECHO_HTTP_H
#define POD_ECHO_HTTP_H

/* The request head of echo.c's HTTP/1.1 echo (`pipe2me-pod test --forward-http`), which reads
 * whatever consumers send through a tunnel. A pure parser over the bytes received so far, kept
 * apart from the connection code so that unit tests and tests/fuzz/fuzz_echo_http.c reach it. */

#include <stddef.h>

#define ECHO_HEAD_MAX 16384 /* request line and headers, the blank line included */
#define ECHO_BODY_MAX 65536 /* Content-Length */

/* One complete request at the start of the input. */
typedef struct {
    size_t head_len; /* request line and headers up to and including the CRLF CRLF */
    size_t body_len; /* Content-Length, 0 without one; the body follows the head */
    int close;       /* the connection closes after the answer (HTTP/1.0 without keep-alive, Connection: close) */
    int head;        /* a HEAD request: the answer carries no body */
} echo_http_req_t;

/* Reads the request at the start of in[0..len) (not NUL-terminated). Returns
 *   0    the head (within ECHO_HEAD_MAX) or the body is not complete yet: call again with more;
 *   200  a complete request, described in *req (its head and body are in[0..head_len + body_len));
 *   400  a request line that is not METHOD SP TARGET SP HTTP/1.x, a Content-Length that is not
 *        digits only, or Content-Length lines that differ;
 *   411  Transfer-Encoding (a chunked body is not read);
 *   413  Content-Length over ECHO_BODY_MAX;
 *   431  no end of head in the first ECHO_HEAD_MAX bytes.
 * After 400, 411, 413 and 431 the connection cannot be read on: the caller answers and closes.
 * *req is written only when 200 is returned. */
int echo_http_parse(const char *in, size_t len, echo_http_req_t *req);

/* The reason phrase for a status echo_http_parse() returns ("OK" for 200). */
const char *echo_http_reason(int status);

#endif
