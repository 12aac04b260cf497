#include "p2m/authhdr.h"
#include "p2m/err.h"

#include <string.h>
#include <strings.h>

typedef struct {
    const char *p, *end;
} cursor_t;

static void skip_ows(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

/* Matches a case-insensitive word followed by a non-word byte or the end. */
static int take_word(cursor_t *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || strncasecmp(c->p, word, n) != 0)
        return 0;
    if (c->p + n < c->end) {
        char next = c->p[n];
        if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || (next >= '0' && next <= '9'))
            return 0;
    }
    c->p += n;
    return 1;
}

/* Reads a quoted-string without escapes into out (cap includes the NUL). */
static int take_quoted(cursor_t *c, char *out, size_t cap, const char *what, char *err)
{
    if (c->p >= c->end || *c->p != '"')
        return p2m_err(err, "%s: expected a quoted value", what);
    c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p == '\\')
            return p2m_err(err, "%s: escapes are not allowed", what);
        if (n + 1 >= cap)
            return p2m_err(err, "%s: value too long", what);
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return p2m_err(err, "%s: unterminated quoted value", what);
    c->p++;
    out[n] = '\0';
    return 0;
}

static int parse_totp(cursor_t *c, p2m_auth_t *out, char *err)
{
    int have_user = 0, have_resp = 0;
    for (;;) {
        skip_ows(c);
        char *dst;
        size_t cap;
        const char *what;
        int *seen;
        if (take_word(c, "username")) {
            dst = out->id, cap = sizeof(out->id), what = "username", seen = &have_user;
        } else if (take_word(c, "response")) {
            dst = out->token, cap = sizeof(out->token), what = "response", seen = &have_resp;
        } else {
            return p2m_err(err, "TOTP: expected username= or response=");
        }
        if (*seen)
            return p2m_err(err, "TOTP: %s given twice", what);
        *seen = 1;
        skip_ows(c);
        if (c->p >= c->end || *c->p != '=')
            return p2m_err(err, "TOTP: expected = after %s", what);
        c->p++;
        skip_ows(c);
        if (take_quoted(c, dst, cap, what, err) != 0)
            return -1;
        skip_ows(c);
        if (c->p == c->end)
            break;
        if (*c->p != ',')
            return p2m_err(err, "TOTP: expected , after %s", what);
        c->p++;
    }
    if (!have_user || !have_resp)
        return p2m_err(err, "TOTP: %s missing", have_user ? "response" : "username");
    if (p2m_id_valid(out->id, strlen(out->id), err) != 0)
        return -1;
    size_t tlen = strlen(out->token);
    if (tlen < 6 || tlen > 8)
        return p2m_err(err, "TOTP: response must be 6 to 8 digits");
    for (size_t i = 0; i < tlen; i++)
        if (out->token[i] < '0' || out->token[i] > '9')
            return p2m_err(err, "TOTP: response must be 6 to 8 digits");
    out->scheme = P2M_AUTH_TOTP;
    return 0;
}

static int parse_bearer(cursor_t *c, p2m_auth_t *out, char *err)
{
    size_t n = 0;
    while (c->p < c->end && *c->p != ' ' && *c->p != '\t') {
        char ch = *c->p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("._~+/=-", ch) != NULL;
        if (!ok || ch == '\0')
            return p2m_err(err, "Bearer: credential has a character outside [A-Za-z0-9._~+/=-]");
        if (n >= P2M_BEARER_MAX)
            return p2m_err(err, "Bearer: credential longer than %d characters", P2M_BEARER_MAX);
        out->bearer[n++] = ch;
        c->p++;
    }
    skip_ows(c);
    if (c->p != c->end)
        return p2m_err(err, "Bearer: trailing characters after the credential");
    if (n == 0)
        return p2m_err(err, "Bearer: credential missing");
    out->bearer[n] = '\0';
    out->scheme = P2M_AUTH_BEARER;
    return 0;
}

int p2m_authhdr_parse(const char *value, size_t len, p2m_auth_t *out, char *err)
{
    memset(out, 0, sizeof(*out));
    if (value == NULL || len == 0)
        return p2m_err(err, "Authorization header is empty");
    if (len > P2M_AUTHHDR_MAX)
        return p2m_err(err, "Authorization header longer than %d bytes", P2M_AUTHHDR_MAX);
    if (memchr(value, '\0', len) != NULL)
        return p2m_err(err, "Authorization header contains a NUL byte");

    cursor_t c = {value, value + len};
    skip_ows(&c);
    int ret;
    if (take_word(&c, "TOTP")) {
        if (c.p >= c.end || *c.p != ' ')
            return p2m_err(err, "TOTP: expected a space and parameters after the scheme");
        ret = parse_totp(&c, out, err);
    } else if (take_word(&c, "Bearer")) {
        if (c.p >= c.end || *c.p != ' ')
            return p2m_err(err, "Bearer: credential missing");
        while (c.p < c.end && *c.p == ' ')
            c.p++;
        ret = parse_bearer(&c, out, err);
    } else {
        return p2m_err(err, "unsupported authorization scheme (expected TOTP or Bearer)");
    }
    if (ret != 0)
        memset(out, 0, sizeof(*out));
    return ret;
}
