#include "p2m/host.h"
#include "p2m/addr.h"
#include "p2m/err.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

int p2m_host_parse(const char *authority, size_t len, const char *domain, char *label, uint16_t *port, char *err)
{
    label[0] = '\0';
    *port = 0;
    if (authority == NULL || len == 0)
        return p2m_err(err, "Host header is empty");
    if (len > P2M_HOST_HEADER_MAX)
        return p2m_err(err, "Host header longer than %d bytes", P2M_HOST_HEADER_MAX);
    if (memchr(authority, '\0', len) != NULL)
        return p2m_err(err, "Host header contains a NUL byte");

    /* Split off ":PORT". A name never contains ':', so the first one starts the port. */
    const char *colon = memchr(authority, ':', len);
    size_t name_len = len;
    if (colon != NULL) {
        name_len = (size_t)(colon - authority);
        if (p2m_port_parse(colon + 1, len - name_len - 1, port) != 0)
            return p2m_err(err, "Host header has an invalid port");
    }
    if (name_len > 0 && authority[name_len - 1] == '.')
        name_len--;

    size_t dlen = strlen(domain);
    if (name_len == dlen && strncasecmp(authority, domain, dlen) == 0)
        return P2M_HOST_BARE;
    if (name_len < dlen + 2 || authority[name_len - dlen - 1] != '.' || strncasecmp(authority + name_len - dlen, domain, dlen) != 0)
        return p2m_err(err, "Host is not %s or a name under it", domain);
    char lerr[P2M_ERR_LEN];
    if (p2m_label_normalize(authority, name_len - dlen - 1, label, lerr) != 0) {
        label[0] = '\0';
        return p2m_err(err, "Host: %s", lerr);
    }
    return P2M_HOST_LABEL;
}

/* An IP literal as 16 bytes (IPv4 as its IPv4-mapped IPv6 form, so both spellings compare equal);
 * 0 when s[0..len) is not one. */
static int ip_bytes(const char *s, size_t len, unsigned char out[16])
{
    char buf[64];
    unsigned char a4[4];
    if (len == 0 || len >= sizeof(buf))
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, a4) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(out, v4mapped, 12);
        memcpy(out + 12, a4, 4);
        return 1;
    }
    return inet_pton(AF_INET6, buf, out) == 1;
}

int p2m_host_is_own(const char *authority, size_t len, const char *const *own, size_t n, uint16_t *port)
{
    *port = 0;
    if (authority == NULL || len == 0 || len > P2M_HOST_HEADER_MAX || memchr(authority, '\0', len) != NULL)
        return -1;
    const char *host = authority, *rest;
    size_t host_len;
    int bracketed = authority[0] == '[';
    if (bracketed) {
        const char *close = memchr(authority, ']', len);
        if (close == NULL)
            return -1;
        host = authority + 1;
        host_len = (size_t)(close - host);
        rest = close + 1;
    } else {
        /* A name or an IPv4 literal never contains ':', so the first one starts the port; an
         * IPv6 literal without brackets fails the port's parse. */
        const char *colon = memchr(authority, ':', len);
        host_len = colon != NULL ? (size_t)(colon - authority) : len;
        rest = authority + host_len;
    }
    size_t rest_len = len - (size_t)(rest - authority);
    if (rest_len > 0 && (rest[0] != ':' || p2m_port_parse(rest + 1, rest_len - 1, port) != 0)) {
        *port = 0;
        return -1;
    }
    unsigned char addr[16], want[16];
    int is_ip = ip_bytes(host, host_len, addr);
    if (bracketed && (!is_ip || memchr(host, ':', host_len) == NULL)) {
        *port = 0;
        return -1; /* brackets hold an IPv6 literal and nothing else (RFC 3986 3.2.2) */
    }
    size_t name_len = !is_ip && host_len > 1 && host[host_len - 1] == '.' ? host_len - 1 : host_len;
    for (size_t i = 0; i < n; i++) {
        int entry_ip = ip_bytes(own[i], strlen(own[i]), want);
        if (is_ip ? entry_ip && memcmp(addr, want, 16) == 0
                  : !entry_ip && strlen(own[i]) == name_len && strncasecmp(host, own[i], name_len) == 0)
            return (int)i;
    }
    *port = 0;
    return -1;
}
