/* The Location check of a registrar's redirect (redirect.h). The rule is exact and small on
 * purpose: a pod sends its Authorization (a TOTP code the redirecting registrar has not spent, or
 * its session credential) to wherever it follows, so only the registrar's own host and the
 * service's domain qualify, compared as whole names. */
#include "redirect.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "p2m/config.h"
#include "p2m/err.h"

/* n bytes at s equal the NUL-terminated t, ignoring ASCII case. */
static int same_name(const char *s, size_t n, const char *t)
{
    return strlen(t) == n && n > 0 && strncasecmp(s, t, n) == 0;
}

/* n bytes at s are a domain name (p2m_domain_normalize: dot-separated DNS labels). */
static int dns_labels(const char *s, size_t n)
{
    char name[P2M_DOMAIN_MAX + 1], norm[P2M_DOMAIN_MAX + 1], e[P2M_ERR_LEN];
    if (n == 0 || n > P2M_DOMAIN_MAX)
        return 0;
    memcpy(name, s, n);
    name[n] = '\0';
    return p2m_domain_normalize(name, norm, e) == 0;
}

int pod_redirect_check(const char *url, size_t len, const char *reg_host, const char *domain, char *out, size_t cap, char *err)
{
    static const char scheme[] = "https://";
    const size_t sl = sizeof(scheme) - 1;
    if (len > POD_REDIRECT_URL_MAX || cap < len + 1)
        return p2m_err(err, "Location longer than %d bytes", POD_REDIRECT_URL_MAX);
    if (memchr(url, '\0', len) != NULL)
        return p2m_err(err, "Location holds a NUL byte");
    if (len < sl || strncasecmp(url, scheme, sl) != 0)
        return p2m_err(err, "Location is not an https:// URL");
    /* The authority runs to the first '/', '?' or '#'; user info ('@') is refused outright. */
    size_t a = sl, e = sl;
    while (e < len && url[e] != '/' && url[e] != '?' && url[e] != '#')
        e++;
    if (memchr(url + a, '@', e - a) != NULL)
        return p2m_err(err, "Location carries user info");
    const char *host = url + a;
    size_t hl, pe = e; /* host length; where the port ends */
    int literal = 0;
    if (a < e && url[a] == '[') {
        const char *close = memchr(url + a, ']', e - a);
        if (close == NULL)
            return p2m_err(err, "Location has an unclosed IPv6 literal");
        host = url + a + 1;
        hl = (size_t)(close - host);
        a = (size_t)(close - url) + 1;
        literal = 1;
    } else {
        const char *colon = memchr(url + a, ':', e - a);
        hl = colon != NULL ? (size_t)(colon - host) : e - a;
        a += hl;
    }
    if (a < pe) { /* a port: ':' and 1 to 5 digits, 1 to 65535 */
        unsigned long port = 0;
        if (url[a] != ':' || pe - a < 2 || pe - a > 6)
            return p2m_err(err, "Location has a bad port");
        for (size_t i = a + 1; i < pe; i++) {
            if (url[i] < '0' || url[i] > '9')
                return p2m_err(err, "Location has a bad port");
            port = port * 10 + (unsigned long)(url[i] - '0');
        }
        if (port == 0 || port > 65535)
            return p2m_err(err, "Location has a bad port");
    }
    if (hl == 0)
        return p2m_err(err, "Location has no host");
    int ok = same_name(host, hl, reg_host);
    if (!ok && !literal && domain[0] != '\0' && dns_labels(host, hl)) {
        size_t dl = strlen(domain);
        /* DOMAIN itself, or LABELS "." DOMAIN: the dot is part of the match, so that "evilDOMAIN" is not under DOMAIN. */
        ok = same_name(host, hl, domain) ||
             (hl > dl + 1 && host[hl - dl - 1] == '.' && strncasecmp(host + hl - dl, domain, dl) == 0);
    }
    if (!ok)
        return p2m_err(err, "Location names a host that is neither the registrar's nor under the domain");
    for (size_t i = e; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '#')
            return p2m_err(err, "Location has a byte a URL path may not hold");
    }
    memcpy(out, url, len);
    out[len] = '\0';
    return 0;
}
