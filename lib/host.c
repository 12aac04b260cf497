#include "p2m/host.h"
#include "p2m/addr.h"
#include "p2m/err.h"

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
