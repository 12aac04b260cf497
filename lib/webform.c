/* What a browser sends the admin console: form bodies, one cookie, the Origin (webform.h). */
#include "p2m/webform.h"
#include "p2m/err.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* A value may hold any byte but NUL and the controls; TAB, CR and LF come from a textarea. */
static int value_char(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\t' || c == '\r' || c == '\n';
}

/* Decodes s[0..len) into a new string of at most max bytes, each of which ok() accepts. */
static int decode(const char *s, size_t len, size_t max, int (*ok)(unsigned char), char **out, size_t *outlen, const char *what,
                  size_t field, char *err)
{
    char *d = malloc(len + 1); /* the decoded form is never longer */
    size_t n = 0;

    *out = NULL;
    if (d == NULL)
        return p2m_err(err, "field %zu: out of memory", field);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                free(d);
                return p2m_err(err, "field %zu: bad percent escape in its %s", field, what);
            }
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c < 0x21 || c == 0x7f) {
            /* raw spaces and controls are not urlencoded; a browser never sends them */
            free(d);
            return p2m_err(err, "field %zu: a raw space or control byte in its %s", field, what);
        }
        if (!ok(c)) {
            free(d);
            return p2m_err(err, "field %zu: its %s holds a byte it may not (NUL or a control)", field, what);
        }
        if (n == max) {
            free(d);
            return p2m_err(err, "field %zu: its %s is longer than %zu bytes", field, what, max);
        }
        d[n++] = (char)c;
    }
    d[n] = '\0';
    *out = d;
    if (outlen != NULL)
        *outlen = n;
    return 0;
}

int p2m_form_parse(const char *body, size_t len, p2m_form_t *out, char *err)
{
    const char *p = body, *end = body + len;

    memset(out, 0, sizeof(*out));
    if (len > P2M_FORM_BODY_MAX)
        return p2m_err(err, "form body is longer than %d bytes", P2M_FORM_BODY_MAX);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp != NULL ? amp : end;
        if (pe == p) { /* "a=1&&b=2", a leading or trailing '&' */
            p = pe + 1;
            continue;
        }
        size_t field = out->n + 1;
        if (out->n == P2M_FORM_FIELDS_MAX) {
            p2m_form_dispose(out);
            return p2m_err(err, "form body has more than %d fields", P2M_FORM_FIELDS_MAX);
        }
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq != NULL ? eq : pe;
        p2m_form_field_t *f = &out->f[out->n];
        if (ke == p) {
            p2m_form_dispose(out);
            return p2m_err(err, "field %zu: empty name", field);
        }
        if (decode(p, (size_t)(ke - p), P2M_FORM_KEY_MAX, key_char, &f->key, NULL, "name", field, err) != 0) {
            p2m_form_dispose(out);
            return -1;
        }
        const char *vs = eq != NULL ? eq + 1 : pe;
        if (decode(vs, (size_t)(pe - vs), P2M_FORM_VALUE_MAX, value_char, &f->value, &f->value_len, "value", field, err) != 0) {
            free(f->key);
            f->key = NULL;
            p2m_form_dispose(out);
            return -1;
        }
        out->n++;
        p = amp != NULL ? amp + 1 : end;
    }
    return 0;
}

void p2m_form_dispose(p2m_form_t *form)
{
    if (form == NULL)
        return;
    for (size_t i = 0; i < form->n; i++) {
        free(form->f[i].key);
        if (form->f[i].value != NULL)
            OPENSSL_cleanse(form->f[i].value, form->f[i].value_len);
        free(form->f[i].value);
    }
    memset(form, 0, sizeof(*form));
}

int p2m_form_get(const p2m_form_t *form, const char *key, const char **value, char *err)
{
    size_t found = 0;
    *value = NULL;
    for (size_t i = 0; i < form->n; i++) {
        if (strcmp(form->f[i].key, key) == 0) {
            found++;
            *value = form->f[i].value;
        }
    }
    if (found == 1)
        return 0;
    *value = NULL;
    return found == 0 ? p2m_err(err, "form field %s is missing", key) : p2m_err(err, "form field %s is given more than once", key);
}

/* RFC 6265 4.1.1: token (RFC 2616 2.2) and cookie-octet. */
static int token_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

static int cookie_octet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) || (c >= 0x3c && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e);
}

static int cookie_find(const char *hdr, size_t len, const char *name, char *out, size_t cap, char *err)
{
    const char *p = hdr, *end = hdr + len;
    size_t namelen = strlen(name);
    int found = 0;

    if (cap > 0)
        out[0] = '\0';
    if (len > P2M_COOKIE_HDR_MAX)
        return p2m_err(err, "Cookie header is longer than %d bytes", P2M_COOKIE_HDR_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)hdr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return p2m_err(err, "Cookie header holds a NUL or control byte");
    }
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pe = semi != NULL ? semi : end;
        const char *ns = p, *ve = pe;
        p = semi != NULL ? semi + 1 : end;
        while (ns < pe && (*ns == ' ' || *ns == '\t'))
            ns++;
        while (ve > ns && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        const char *eq = memchr(ns, '=', (size_t)(ve - ns));
        if (eq == NULL)
            continue; /* not a pair: someone else's garbage */
        const char *ne = eq, *vs = eq + 1;
        while (ne > ns && (ne[-1] == ' ' || ne[-1] == '\t'))
            ne--;
        while (vs < ve && (*vs == ' ' || *vs == '\t'))
            vs++;
        if ((size_t)(ne - ns) != namelen || memcmp(ns, name, namelen) != 0)
            continue;
        for (const char *q = ns; q < ne; q++)
            if (!token_char((unsigned char)*q))
                return p2m_err(err, "cookie %s: malformed name", name);
        if (found)
            return p2m_err(err, "cookie %s is given more than once", name);
        found = 1;
        if (ve - vs >= 2 && vs[0] == '"' && ve[-1] == '"') {
            vs++;
            ve--;
        }
        size_t vlen = (size_t)(ve - vs);
        for (const char *q = vs; q < ve; q++)
            if (!cookie_octet((unsigned char)*q))
                return p2m_err(err, "cookie %s: its value holds a byte that is not a cookie-octet", name);
        if (vlen + 1 > cap)
            return p2m_err(err, "cookie %s: its value is longer than %zu bytes", name, cap > 0 ? cap - 1 : 0);
        memcpy(out, vs, vlen);
        out[vlen] = '\0';
    }
    return found;
}

int p2m_cookie_find(const char *hdr, size_t len, const char *name, char *out, size_t cap, char *err)
{
    int rc = cookie_find(hdr, len, name, out, cap, err);
    if (rc != 1 && cap > 0) /* a value found before a second copy is not the caller's */
        out[0] = '\0';
    return rc;
}

int p2m_origin_allowed(const char *origin, size_t len, const char *const *allowed, size_t n)
{
    if (len == 0 || len > P2M_ORIGIN_MAX || memchr(origin, '\0', len) != NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strlen(allowed[i]) == len && strncasecmp(origin, allowed[i], len) == 0 && strcmp(allowed[i], "null") != 0)
            return 1;
    return 0;
}

int p2m_b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t need = len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1), o = 0;

    if (need + 1 > cap || need > 0x7fffffff)
        return -1;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0) | (i + 2 < len ? in[i + 2] : 0);
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        if (i + 1 < len)
            out[o++] = alphabet[v >> 6 & 63];
        if (i + 2 < len)
            out[o++] = alphabet[v & 63];
    }
    out[o] = '\0';
    return (int)o;
}

int p2m_secret_equal(const char *a, const char *b)
{
    /* Comparing digests makes the time independent of where the secrets differ and of whether
     * their lengths do. */
    unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)a, strlen(a), da);
    SHA256((const unsigned char *)b, strlen(b), db);
    return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}
