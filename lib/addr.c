#include "p2m/addr.h"
#include "p2m/err.h"

#include <stdio.h>
#include <string.h>

int p2m_port_parse(const char *s, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int host_valid(const char *s, size_t len)
{
    if (len > P2M_HOST_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':'))
            return 0;
    }
    return 1;
}

int p2m_hostport_parse(const char *s, p2m_hostport_t *out, char *err)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL || *s == '\0')
        return p2m_err(err, "expected HOST:PORT");
    size_t len = strlen(s);
    const char *host = s, *port;
    size_t host_len;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return p2m_err(err, "expected [ADDRESS]:PORT");
        host = s + 1;
        host_len = (size_t)(close - host);
        port = close + 2;
        if (host_len == 0 || memchr(host, ':', host_len) == NULL)
            return p2m_err(err, "expected an IPv6 address inside brackets");
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL) {
            host_len = 0;
            port = s;
        } else {
            host_len = (size_t)(colon - s);
            port = colon + 1;
            if (memchr(s, ':', host_len) != NULL)
                return p2m_err(err, "IPv6 addresses need brackets: [ADDRESS]:PORT");
        }
    }
    if (!host_valid(host, host_len))
        return p2m_err(err, "invalid host");
    if (p2m_port_parse(port, len - (size_t)(port - s), &out->port) != 0)
        return p2m_err(err, "port must be a number from 1 to 65535");
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    return 0;
}

int p2m_port_range_parse(const char *s, p2m_port_range_t *out, char *err)
{
    if (s == NULL)
        return p2m_err(err, "expected LO-HI");
    const char *dash = strchr(s, '-');
    size_t len = strlen(s);
    if (dash == NULL) {
        if (p2m_port_parse(s, len, &out->lo) != 0)
            return p2m_err(err, "expected LO-HI with 1 <= LO <= HI <= 65535");
        out->hi = out->lo;
        return 0;
    }
    uint16_t lo, hi;
    if (p2m_port_parse(s, (size_t)(dash - s), &lo) != 0 || p2m_port_parse(dash + 1, len - (size_t)(dash - s) - 1, &hi) != 0 ||
        lo > hi)
        return p2m_err(err, "expected LO-HI with 1 <= LO <= HI <= 65535");
    out->lo = lo;
    out->hi = hi;
    return 0;
}

int p2m_redis_addr_parse(const char *s, p2m_redis_addr_t *out, char *err)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return p2m_err(err, "expected unix:PATH or HOST:PORT");
    if (strncmp(s, "unix:", 5) == 0) {
        size_t n = strlen(s + 5);
        if (n == 0)
            return p2m_err(err, "unix: needs a socket path");
        if (n > P2M_PATH_MAX)
            return p2m_err(err, "socket path longer than %d bytes", P2M_PATH_MAX);
        out->is_unix = 1;
        memcpy(out->path, s + 5, n + 1);
        return 0;
    }
    if (p2m_hostport_parse(s, &out->tcp, err) != 0)
        return -1;
    if (out->tcp.host[0] == '\0')
        return p2m_err(err, "expected unix:PATH or HOST:PORT");
    return 0;
}

int p2m_hostport_format(const char *host, uint16_t port, char *out, size_t cap)
{
    int v6 = strchr(host, ':') != NULL;
    int n = snprintf(out, cap, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}
