/* The request head of the HTTP echo (see echo_http.h). */
#include "echo_http.h"

#include <string.h>
#include <strings.h>

/* A header's value (trimmed) in head[0..len), from the first line after *from (a LF in head, or
 * NULL) that names it, or NULL. *from moves to the LF that ends that line, so that a second call
 * finds the next one. */
static const char *find_header_from(const char *head, size_t len, const char **from, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = *from, *end = head + len;
    while (p != NULL && p + 1 < end) {
        const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            break;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            *from = eol;
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* The first line after the request line that names the header, as find_header_from(). */
static const char *find_header(const char *head, size_t len, const char *name, size_t *vlen)
{
    const char *from = memchr(head, '\n', len);
    return find_header_from(head, len, &from, name, vlen);
}

int echo_http_parse(const char *in, size_t len, echo_http_req_t *req)
{
    const char *end = NULL;
    for (size_t i = 3; i < len && i < ECHO_HEAD_MAX; i++)
        if (in[i] == '\n' && in[i - 1] == '\r' && in[i - 2] == '\n' && in[i - 3] == '\r') {
            end = in + i + 1;
            break;
        }
    if (end == NULL)
        return len >= ECHO_HEAD_MAX ? 431 : 0;
    size_t head_len = (size_t)(end - in), vlen;
    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    const char *eol = memchr(in, '\r', head_len); /* head_len ends in CRLFCRLF: found */
    size_t line_len = (size_t)(eol - in);
    const char *sp1 = memchr(in, ' ', line_len);
    const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == in || sp2 == sp1 + 1 || eol - sp2 != 9 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return 400;
    int http10 = sp2[8] == '0';
    const char *v;
    size_t body_len = 0;
    if (find_header(in, head_len, "Transfer-Encoding", &vlen) != NULL)
        return 411;
    /* Every Content-Length line must say the same (RFC 9112 6.3): a reader that took another one
     * would see a different request boundary. */
    const char *from = memchr(in, '\n', head_len);
    for (int seen = 0; (v = find_header_from(in, head_len, &from, "Content-Length", &vlen)) != NULL; seen = 1) {
        size_t n = 0;
        int digits = vlen > 0;
        for (size_t i = 0; i < vlen; i++) {
            digits &= v[i] >= '0' && v[i] <= '9';
            if (digits && n <= ECHO_BODY_MAX) /* stops growing past the limit: no overflow */
                n = n * 10 + (size_t)(v[i] - '0');
        }
        if (!digits || (seen && n != body_len))
            return 400;
        body_len = n;
    }
    if (body_len > ECHO_BODY_MAX)
        return 413;
    if (len < head_len + body_len)
        return 0; /* the body is still coming */
    v = find_header(in, head_len, "Connection", &vlen);
    if (http10)
        req->close = !(v != NULL && vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0);
    else
        req->close = v != NULL && vlen == 5 && strncasecmp(v, "close", 5) == 0;
    req->head = sp1 - in == 4 && strncmp(in, "HEAD", 4) == 0;
    req->head_len = head_len;
    req->body_len = body_len;
    return 200;
}

const char *echo_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Error";
    }
}
