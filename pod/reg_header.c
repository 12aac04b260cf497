/* The registrar's response headers (see reg_header.h). */
#include "reg_header.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

void reg_header_reset(reg_header_t *h)
{
    h->session[0] = '\0';
    h->session_ttl = 0;
    h->retry_after = -1;
    h->connections = 0;
    h->waiting = -1;
    h->waited = -1;
}

void reg_header_parse(reg_header_t *h, const char *line, size_t len)
{
    const char *v;
    int vl;
    if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        reg_header_reset(h);
    } else if ((vl = reg_header_value(line, len, "P2M-Session", &v)) >= 0) {
        /* Each P2M-Session line replaces what an earlier one said, so a value that is not a
         * credential (empty, too long, a byte outside the alphabet, a NUL that would cut it to a
         * shorter credential) leaves none. */
        h->session[0] = '\0';
        if (vl > 0 && vl <= REG_SESSION_MAX && memchr(v, '\0', (size_t)vl) == NULL) {
            memcpy(h->session, v, (size_t)vl);
            h->session[vl] = '\0';
            if (!reg_session_valid(h->session))
                h->session[0] = '\0';
        }
    } else if ((vl = reg_header_value(line, len, "P2M-Session-Expires", &v)) >= 0) {
        long s = reg_header_seconds(v, vl, REG_SESSION_TTL_MAX);
        h->session_ttl = s > 0 ? (unsigned)s : 0;
    } else if ((vl = reg_header_value(line, len, "P2M-Connections", &v)) >= 0) {
        /* Not cut to the maximum like the delays: more than a pod may ask for is a broken answer. */
        long n = reg_header_seconds(v, vl, REG_CONNECTIONS_MAX + 1L);
        h->connections = n >= 1 && n <= REG_CONNECTIONS_MAX ? (unsigned)n : 0;
    } else if ((vl = reg_header_value(line, len, "P2M-Waiting", &v)) >= 0) {
        h->waiting = reg_header_seconds(v, vl, REG_WAITING_MAX); /* a count, read like delay-seconds */
    } else if ((vl = reg_header_value(line, len, "P2M-Waited", &v)) >= 0) {
        h->waited = reg_header_seconds(v, vl, REG_WAITING_MAX);
    } else if ((vl = reg_header_value(line, len, "Retry-After", &v)) >= 0) {
        h->retry_after = reg_header_seconds(v, vl, REG_RETRY_AFTER_MAX); /* an HTTP-date reads as absent */
    }
}

int reg_header_value(const char *line, size_t len, const char *name, const char **value)
{
    size_t nl = strlen(name);
    /* the length is returned as an int; curl's lines are at most 100 KB */
    if (len <= nl || len > INT_MAX || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return -1;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *value = v;
    return (int)(end - v);
}

long reg_header_seconds(const char *v, int len, long max)
{
    long x = 0;
    if (len <= 0 || len > 9) /* 9 digits cannot overflow a long */
        return -1;
    for (int i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x > max ? max : x;
}

int reg_session_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > REG_SESSION_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("._~+/=-", c) != NULL))
            return 0;
    }
    return 1;
}
