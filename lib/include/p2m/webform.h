#ifndef P2M_WEBFORM_H
#define P2M_WEBFORM_H

#include <stddef.h>

/* Parsers for what a browser sends the admin console (pipe2me-admin serve): an
 * application/x-www-form-urlencoded body, one named cookie from a Cookie header (RFC 6265 4.2),
 * and an Origin header compared with the console's own origins. Pure: no I/O; only
 * p2m_form_parse allocates, within the limits below. Reasons for a refusal are one printable line
 * that never quotes a value (a value may be the console's token). */

#define P2M_FORM_BODY_MAX 65536  /* bytes of one form body */
#define P2M_FORM_FIELDS_MAX 32   /* fields in one body */
#define P2M_FORM_KEY_MAX 64      /* bytes of one decoded field name */
#define P2M_FORM_VALUE_MAX 16384 /* bytes of one decoded value */
#define P2M_COOKIE_HDR_MAX 8192  /* bytes of one Cookie header */
#define P2M_ORIGIN_MAX 300       /* bytes of an Origin the console compares */

typedef struct {
    char *key;        /* decoded, NUL-terminated: 1..P2M_FORM_KEY_MAX of [A-Za-z0-9_.-] */
    char *value;      /* decoded, NUL-terminated: no NUL nor control byte (TAB, CR and LF excepted) */
    size_t value_len; /* strlen(value) */
} p2m_form_field_t;

typedef struct {
    size_t n;
    p2m_form_field_t f[P2M_FORM_FIELDS_MAX];
} p2m_form_t;

/* Parses body[0..len) as k=v&k=v: '+' is a space, %XX a byte (hex either case); an empty body
 * has no field, and empty pairs ("a=1&&b=2") are skipped. A pair without '=' has an empty value.
 * Duplicate names are kept, in order (p2m_form_get refuses them). Refused: a body over
 * P2M_FORM_BODY_MAX, more than P2M_FORM_FIELDS_MAX fields, a bad escape, a name or value over its
 * limit or with a byte it may not hold. Returns 0 with *out filled (p2m_form_dispose it), or -1
 * with err naming the field by position and *out empty. */
int p2m_form_parse(const char *body, size_t len, p2m_form_t *out, char *err);

/* Frees what p2m_form_parse allocated; the struct itself is the caller's. Values are wiped first,
 * as one may be a token. NULL is a no-op. */
void p2m_form_dispose(p2m_form_t *form);

/* Finds the field named key (a constant of the caller's). Returns 0 with *value (borrowed from
 * form) when it is given exactly once, -1 with err when it is missing or given more than once. */
int p2m_form_get(const p2m_form_t *form, const char *key, const char **value, char *err);

/* Looks for the cookie named name (a token, case-sensitive) in hdr[0..len), the value of one
 * Cookie header: pairs separated by ';' with optional spaces and tabs around them. A value may be
 * in double quotes, which are removed. Pairs that are malformed or not RFC 6265 cookie-octets are
 * skipped unless they carry name (other programs on the same host set their own cookies, and the
 * browser sends them all). Returns 1 with the value in out (cap bytes with the NUL), 0 when the
 * cookie is absent, -1 with err when the header holds a NUL or control byte or is over
 * P2M_COOKIE_HDR_MAX, or name's value is malformed, too long for out, or given twice. */
int p2m_cookie_find(const char *hdr, size_t len, const char *name, char *out, size_t cap, char *err);

/* Compares origin[0..len) (an Origin header: scheme://host[:port], no path) with each of the
 * n allowed origins, the console's own, ASCII case-insensitively and otherwise exactly: no
 * trailing slash, no default port filled in. "null" and anything over P2M_ORIGIN_MAX never match.
 * Returns 1 on a match, else 0. */
int p2m_origin_allowed(const char *origin, size_t len, const char *const *allowed, size_t n);

/* Writes the base64url encoding (RFC 4648 5, no padding) of in[0..len) to out, which holds
 * cap bytes with the NUL. Returns the encoded length, or -1 when cap is too small. */
int p2m_b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/* Compares two NUL-terminated secrets in time that depends on their lengths only. Returns 1 when
 * they are equal. */
int p2m_secret_equal(const char *a, const char *b);

#endif
