/* The pod behind an HTTP proxy: the proxy URL, no_proxy, the CONNECT request and the parser of the
 * proxy's answer (see proxy.h). */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "p2m/err.h"

/* --- the URL ---------------------------------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decodes s[0..n) into out (POD_PROXY_CRED_MAX + 1 bytes). Returns 0, or -1 with err naming
 * `what` (never quoting the value: it may be the password). */
static int decode(const char *s, size_t n, char *out, const char *what, char *err)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return p2m_err(err, "the proxy URL's %s holds a %% not followed by two hex digits", what);
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                return p2m_err(err, "the proxy URL's %s holds %%00", what);
            i += 2;
        }
        if (o == POD_PROXY_CRED_MAX)
            return p2m_err(err, "the proxy URL's %s is longer than %d bytes", what, POD_PROXY_CRED_MAX);
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

/* Writes s percent-encoded outside [A-Za-z0-9._~-] to out (at least 3 * strlen(s) + 1 bytes). */
static void encode(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._~-", c) != NULL) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

void pod_proxy_wipe(pod_proxy_t *px)
{
    explicit_bzero(px->pass, sizeof(px->pass));
}

int pod_proxy_url_parse(const char *url, pod_proxy_t *px, char *err)
{
    char hp_buf[P2M_HOST_MAX + 16], herr[P2M_ERR_LEN], user[3 * POD_PROXY_CRED_MAX + 1];
    p2m_hostport_t hp;
    memset(px, 0, sizeof(*px));
    size_t len = strlen(url);
    if (len == 0)
        return p2m_err(err, "the proxy URL is empty");
    if (len > POD_PROXY_URL_MAX)
        return p2m_err(err, "the proxy URL is longer than %d bytes", POD_PROXY_URL_MAX);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return p2m_err(err, "the proxy URL holds a space, a control byte or a byte that is not ASCII");
    const char *p = url, *sep = strstr(url, "://");
    if (sep != NULL) {
        size_t sl = (size_t)(sep - url);
        if (sl == 4 && strncasecmp(url, "http", 4) == 0) {
            p = sep + 3;
        } else if (sl == 5 && strncasecmp(url, "https", 5) == 0) {
            return p2m_err(err, "https:// proxies (TLS to the proxy) are not supported: give the proxy as http://HOST:PORT");
        } else {
            int ok = sl > 0 && sl <= 16;
            for (size_t i = 0; ok && i < sl; i++)
                ok = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-", url[i]) != NULL;
            if (ok)
                return p2m_err(err, "unsupported proxy scheme \"%.*s\": only http:// proxies (HTTP CONNECT) are", (int)sl, url);
            return p2m_err(err, "the proxy URL's scheme is not valid: expected http://HOST:PORT");
        }
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen;
    if (!(rest[0] == '\0' || (rest[0] == '/' && rest[1] == '\0')))
        return p2m_err(err, "the proxy URL must not have a path, query or fragment: expected http://HOST:PORT");
    const char *at = NULL;
    for (const char *q = p; q < p + alen; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ul = colon != NULL ? (size_t)(colon - p) : (size_t)(at - p);
        if (decode(p, ul, px->user, "user name", err) != 0)
            goto Fail;
        if (colon != NULL && decode(colon + 1, (size_t)(at - colon - 1), px->pass, "password", err) != 0)
            goto Fail;
        if (strchr(px->user, ':') != NULL) {
            p2m_err(err, "the proxy URL's user name must not hold ':' (Basic authentication, RFC 7617)");
            goto Fail;
        }
        px->auth = 1;
    }
    const char *h = at != NULL ? at + 1 : p;
    size_t hl = (size_t)(p + alen - h);
    if (hl == 0) {
        p2m_err(err, "the proxy URL has no host");
        goto Fail;
    }
    if (hl > P2M_HOST_MAX + 8) {
        p2m_err(err, "the proxy URL's host is longer than %d bytes", P2M_HOST_MAX);
        goto Fail;
    }
    memcpy(hp_buf, h, hl);
    hp_buf[hl] = '\0';
    int has_port = hp_buf[0] == '[' ? strstr(hp_buf, "]:") != NULL : strchr(hp_buf, ':') != NULL;
    if (!has_port)
        snprintf(hp_buf + hl, sizeof(hp_buf) - hl, ":%d", POD_PROXY_PORT);
    if (p2m_hostport_parse(hp_buf, &hp, herr) != 0) {
        p2m_err(err, "the proxy URL's host: %s", herr);
        goto Fail;
    }
    if (hp.host[0] == '\0' || hp.host[0] == '.' || hp.host[0] == '-') {
        p2m_err(err, "the proxy URL has no host name or address");
        goto Fail;
    }
    memcpy(px->host, hp.host, sizeof(px->host));
    px->port = hp.port;
    p2m_hostport_format(px->host, px->port, hp_buf, sizeof(hp_buf));
    snprintf(px->url, sizeof(px->url), "http://%s", hp_buf);
    encode(px->user, user);
    snprintf(px->shown, sizeof(px->shown), "http://%s%s%s", user, px->auth && px->user[0] != '\0' ? "@" : "", hp_buf);
    return 0;
Fail:
    pod_proxy_wipe(px);
    memset(px, 0, sizeof(*px));
    return -1;
}

/* --- no_proxy --------------------------------------------------------------------------------- */

/* An address, with the number of leading bits that count (all when bits_s is NULL). Returns the
 * family (AF_INET, AF_INET6) or 0. */
static int parse_ip(const char *s, size_t n, const char *bits_s, size_t bits_n, unsigned char *ip, unsigned *bits)
{
    char buf[64];
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    int fam = inet_pton(AF_INET, buf, ip) == 1 ? AF_INET : inet_pton(AF_INET6, buf, ip) == 1 ? AF_INET6 : 0;
    if (fam == 0)
        return 0;
    unsigned max = fam == AF_INET ? 32 : 128;
    *bits = max;
    if (bits_s != NULL) {
        unsigned b = 0;
        if (bits_n == 0 || bits_n > 3)
            return 0;
        for (size_t i = 0; i < bits_n; i++) {
            if (bits_s[i] < '0' || bits_s[i] > '9')
                return 0;
            b = b * 10 + (unsigned)(bits_s[i] - '0');
        }
        if (b > max)
            return 0;
        *bits = b;
    }
    return fam;
}

static int prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

int pod_proxy_bypass(const char *no_proxy, const char *host)
{
    unsigned char hip[16], eip[16];
    unsigned hbits, ebits;
    if (no_proxy == NULL || host == NULL || host[0] == '\0')
        return 0;
    size_t hl = strlen(host);
    int hfam = parse_ip(host, hl, NULL, 0, hip, &hbits);
    if (hfam == 0)
        while (hl > 0 && host[hl - 1] == '.')
            hl--;
    for (const char *e = no_proxy; *e != '\0';) {
        size_t n = strcspn(e, ","), next = n + (e[n] == ',');
        const char *s = e;
        while (n > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        e += next;
        if (n == 1 && s[0] == '*')
            return 1;
        if (hfam != 0) {
            const char *slash = memchr(s, '/', n);
            size_t an = slash != NULL ? (size_t)(slash - s) : n;
            int efam = parse_ip(s, an, slash != NULL ? slash + 1 : NULL, slash != NULL ? n - an - 1 : 0, eip, &ebits);
            if (efam == hfam && prefix_equal(hip, eip, ebits))
                return 1;
            continue;
        }
        while (n > 0 && s[0] == '.') {
            s++;
            n--;
        }
        while (n > 0 && s[n - 1] == '.')
            n--;
        if (n == 0 || n > hl)
            continue;
        if (strncasecmp(host + hl - n, s, n) == 0 && (n == hl || host[hl - n - 1] == '.'))
            return 1;
    }
    return 0;
}

/* --- CONNECT ---------------------------------------------------------------------------------- */

/* Base64 (RFC 4648, with padding) of in[0..n) into out (4 * ((n + 2) / 3) + 1 bytes). */
static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

int pod_proxy_request(const pod_proxy_t *px, const char *host, uint16_t port, char *out, size_t cap)
{
    char target[P2M_HOST_MAX + 16], cred[2 * POD_PROXY_CRED_MAX + 2], b64[4 * ((sizeof(cred) + 2) / 3) + 1];
    int n;
    if (strlen(host) > P2M_HOST_MAX || p2m_hostport_format(host, port, target, sizeof(target)) < 0)
        return -1;
    if (px->auth) {
        int cl = snprintf(cred, sizeof(cred), "%s:%s", px->user, px->pass);
        base64((const unsigned char *)cred, (size_t)cl, b64);
        n = snprintf(out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, target, b64);
        explicit_bzero(cred, sizeof(cred));
        explicit_bzero(b64, sizeof(b64));
    } else {
        n = snprintf(out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
    }
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            explicit_bzero(out, cap);
        return -1;
    }
    return n;
}

/* --- the answer ------------------------------------------------------------------------------- */

enum { RS_LINE = 0, RS_CR, RS_DONE, RS_BAD };

void pod_proxy_resp_init(pod_proxy_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    r->state = RS_LINE;
}

/* "HTTP/1.D DDD" then the end or a space and the reason. */
static int status_line(pod_proxy_resp_t *r, const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || l[7] < '0' || l[7] > '9' || l[8] != ' ')
        return -1;
    for (int i = 9; i < 12; i++)
        if (l[i] < '0' || l[i] > '9')
            return -1;
    if (l[9] < '1' || l[9] > '5' || (n > 12 && l[12] != ' '))
        return -1;
    r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    size_t k = 0;
    for (size_t i = 13; i < n && k < POD_PROXY_REASON_MAX; i++) {
        unsigned char c = (unsigned char)l[i];
        r->reason[k++] = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
    }
    r->reason[k] = '\0';
    return 0;
}

/* A header line: only the first scheme of Proxy-Authenticate (or WWW-Authenticate, which some
 * proxies send with a 401 instead of a 407) is kept. */
static void header_line(pod_proxy_resp_t *r, const char *l, size_t n)
{
    static const char proxy[] = "Proxy-Authenticate:", www[] = "WWW-Authenticate:";
    size_t nl, k = 0;
    if (r->auth_scheme[0] != '\0')
        return;
    if (n > sizeof(proxy) - 1 && strncasecmp(l, proxy, sizeof(proxy) - 1) == 0)
        nl = sizeof(proxy) - 1;
    else if (n > sizeof(www) - 1 && strncasecmp(l, www, sizeof(www) - 1) == 0)
        nl = sizeof(www) - 1;
    else
        return;
    size_t i = nl;
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    for (; i < n && k + 1 < sizeof(r->auth_scheme); i++) {
        char c = l[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
            break;
        r->auth_scheme[k++] = c;
    }
    r->auth_scheme[k] = '\0';
}

pod_proxy_resp_rc_t pod_proxy_resp_feed(pod_proxy_resp_t *r, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (r->state == RS_DONE)
        return PROXY_RESP_DONE;
    if (r->state == RS_BAD)
        return PROXY_RESP_BAD;
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        *used = i + 1;
        if (++r->total > POD_PROXY_HDR_MAX) {
            r->err = "the header is longer than 8192 bytes";
            goto Bad;
        }
        if (c == '\0') {
            r->err = "a NUL byte in the header";
            goto Bad;
        }
        if (r->state == RS_CR && c != '\n') {
            r->err = "a CR not followed by LF in the header";
            goto Bad;
        }
        if (c == '\r') {
            r->state = RS_CR;
            continue;
        }
        if (c != '\n') {
            if (r->line < sizeof(r->buf)) {
                r->buf[r->line++] = c;
            } else if (r->lines == 0) {
                r->err = "the status line is too long";
                goto Bad;
            }
            continue;
        }
        /* the end of a line */
        r->state = RS_LINE;
        if (r->lines == 0) {
            if (status_line(r, r->buf, r->line) != 0) {
                r->err = "not an HTTP/1.x status line";
                goto Bad;
            }
        } else if (r->line == 0) {
            r->state = RS_DONE;
            return PROXY_RESP_DONE;
        } else {
            header_line(r, r->buf, r->line);
        }
        r->lines++;
        r->line = 0;
    }
    return PROXY_RESP_MORE;
Bad:
    r->state = RS_BAD;
    return PROXY_RESP_BAD;
}

void pod_proxy_refusal(const pod_proxy_t *px, const char *target, int status, const char *reason, const char *auth_scheme,
                       char *out, size_t cap)
{
    char why[POD_PROXY_REASON_MAX + 2] = "", scheme[16] = "";
    const char *fix;
    size_t k = 0;
    for (size_t i = 0; reason != NULL && reason[i] != '\0' && k < POD_PROXY_REASON_MAX; i++) {
        unsigned char c = (unsigned char)reason[i];
        if (k == 0)
            why[k++] = ' ';
        why[k++] = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? (char)c : '?';
    }
    why[k] = '\0';
    for (k = 0; auth_scheme != NULL && auth_scheme[k] != '\0' && k + 1 < sizeof(scheme); k++) {
        char c = auth_scheme[k];
        scheme[k] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ? c : '?';
    }
    scheme[k] = '\0';
    /* 407, and 401 from proxies that answer so (tinyproxy). */
    int auth = status == 407 || status == 401, other_scheme = auth && scheme[0] != '\0' && strcasecmp(scheme, "Basic") != 0;
    if (other_scheme)
        fix = "it asks for authentication the pod does not speak (only Basic)";
    else if (auth && !px->auth)
        fix = "it wants a user and password: give them in the proxy URL, http://USER:PASSWORD@HOST:PORT";
    else if (auth)
        fix = "check the user and password in the proxy URL";
    else if (status == 403 || status == 405)
        fix = "the proxy must allow CONNECT to the registrar's port and the relay's port range";
    else if (status == 500 || status == 502 || status == 503 || status == 504)
        fix = "the proxy could not connect to it, or failed";
    else
        fix = "only a 2xx opens a tunnel";
    if (other_scheme)
        snprintf(out, cap, "proxy %s answered CONNECT %s with %d%s: %s (it offers %s)", px->shown, target, status, why, fix,
                 scheme);
    else
        snprintf(out, cap, "proxy %s answered CONNECT %s with %d%s: %s", px->shown, target, status, why, fix);
}
