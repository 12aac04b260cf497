/* libFuzzer target for the pod's reading of the registrar's response headers (pod/reg_header.c:
 * reg_header_parse, reg_header_value, reg_header_seconds, reg_session_valid). The input is split
 * into lines after each LF, and each line goes in its own allocation of exactly its size, as curl
 * hands them over. After every line the state agrees with a reference written from reg_header.h:
 * a status line resets it; P2M-Session holds the trimmed value when it is a credential (1 to 128
 * bytes of its alphabet, no NUL) and "" otherwise; P2M-Session-Expires and Retry-After hold 1 to 9
 * digits cut to their maximum (0 and -1 otherwise); any other line changes nothing. */

#include "fuzz.h"
#include "reg_header.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int is_cred_char(char c)
{
    return c != '\0' &&
           ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._~+/=-", c) != NULL);
}

/* The value of `name` in line[0..len) trimmed as reg_header.h says, or -1. */
static long ref_value(const char *line, size_t len, const char *name, const char **v)
{
    size_t nl = strlen(name), b, e = len;
    if (len < nl + 1 || line[nl] != ':')
        return -1;
    for (size_t i = 0; i < nl; i++)
        if (line[i] == '\0' || strncasecmp(line + i, name + i, 1) != 0)
            return -1;
    for (b = nl + 1; b < len && (line[b] == ' ' || line[b] == '\t'); b++)
        ;
    while (e > b && strchr("\r\n \t", line[e - 1]) != NULL && line[e - 1] != '\0')
        e--;
    *v = line + b;
    return (long)(e - b);
}

static long ref_seconds(const char *v, long n, long max)
{
    long x = 0;
    if (n < 1 || n > 9)
        return -1;
    for (long i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x > max ? max : x;
}

static reg_header_t h; /* one response's state, fresh for each input */

/* Every field of h but the one named `except` is as in before. */
static int same_but(const reg_header_t *before, const char *except)
{
    return (strcmp(except, "session") == 0 || strcmp(h.session, before->session) == 0) &&
           (strcmp(except, "session_ttl") == 0 || h.session_ttl == before->session_ttl) &&
           (strcmp(except, "retry_after") == 0 || h.retry_after == before->retry_after) &&
           (strcmp(except, "connections") == 0 || h.connections == before->connections) &&
           (strcmp(except, "waiting") == 0 || h.waiting == before->waiting) &&
           (strcmp(except, "waited") == 0 || h.waited == before->waited);
}

static void check_line(const char *line, size_t len)
{
    reg_header_t before;
    const char *v;
    long n;
    before = h;
    reg_header_parse(&h, line, len);

    FUZZ_CHECK(FUZZ_TERMINATED(h.session));
    FUZZ_CHECK(h.session[0] == '\0' || reg_session_valid(h.session));
    FUZZ_CHECK(h.session_ttl <= REG_SESSION_TTL_MAX);
    FUZZ_CHECK(h.retry_after >= -1 && h.retry_after <= REG_RETRY_AFTER_MAX);
    FUZZ_CHECK(h.connections <= REG_CONNECTIONS_MAX);
    FUZZ_CHECK(h.waiting >= -1 && h.waiting <= REG_WAITING_MAX && h.waited >= -1 && h.waited <= REG_WAITING_MAX);

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        FUZZ_CHECK(h.session[0] == '\0' && h.session_ttl == 0 && h.retry_after == -1 && h.connections == 0 && h.waiting == -1 &&
                   h.waited == -1);
    } else if ((n = ref_value(line, len, "P2M-Connections", &v)) >= 0) {
        long c = ref_seconds(v, n, REG_CONNECTIONS_MAX + 1L);
        FUZZ_CHECK(h.connections == (c >= 1 && c <= REG_CONNECTIONS_MAX ? (unsigned)c : 0u));
        FUZZ_CHECK(same_but(&before, "connections"));
    } else if ((n = ref_value(line, len, "P2M-Waiting", &v)) >= 0) {
        FUZZ_CHECK(h.waiting == ref_seconds(v, n, REG_WAITING_MAX));
        FUZZ_CHECK(same_but(&before, "waiting"));
    } else if ((n = ref_value(line, len, "P2M-Waited", &v)) >= 0) {
        FUZZ_CHECK(h.waited == ref_seconds(v, n, REG_WAITING_MAX));
        FUZZ_CHECK(same_but(&before, "waited"));
    } else if ((n = ref_value(line, len, "P2M-Session", &v)) >= 0) {
        int cred = n >= 1 && n <= REG_SESSION_MAX;
        for (long i = 0; cred && i < n; i++)
            cred = is_cred_char(v[i]);
        if (cred)
            FUZZ_CHECK((long)strlen(h.session) == n && memcmp(h.session, v, (size_t)n) == 0);
        else
            FUZZ_CHECK(h.session[0] == '\0');
        FUZZ_CHECK(same_but(&before, "session"));
    } else if ((n = ref_value(line, len, "P2M-Session-Expires", &v)) >= 0) {
        long s = ref_seconds(v, n, REG_SESSION_TTL_MAX);
        FUZZ_CHECK(h.session_ttl == (unsigned)(s > 0 ? s : 0));
        FUZZ_CHECK(same_but(&before, "session_ttl"));
    } else if ((n = ref_value(line, len, "Retry-After", &v)) >= 0) {
        FUZZ_CHECK(h.retry_after == ref_seconds(v, n, REG_RETRY_AFTER_MAX));
        FUZZ_CHECK(same_but(&before, "retry_after"));
    } else {
        FUZZ_CHECK(same_but(&before, ""));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    reg_header_reset(&h);
    while (off < size) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl != NULL ? (size_t)(nl - data - off) + 1 : size - off;
        /* exactly len bytes with nothing after them: ASan catches a read past the line */
        char *line = malloc(len);
        FUZZ_CHECK(line != NULL);
        memcpy(line, data + off, len);
        check_line(line, len);
        free(line);
        off += len;
    }
    return 0;
}
