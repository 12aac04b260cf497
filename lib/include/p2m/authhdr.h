#ifndef P2M_AUTHHDR_H
#define P2M_AUTHHDR_H

#include <stddef.h>

#include "p2m/label.h"

/* Parser for the Authorization header values pipe2me accepts. Pure: no allocation, no I/O.
 *
 *   TOTP username="ID", response="TOKEN"     (TAAS rendezvous protocol)
 *   Bearer CREDENTIAL                        (session credential from a TOTP registration)
 *
 * Scheme names are case-insensitive; parameters may come in either order, separated by a comma
 * and optional spaces; values are quoted-strings without escapes. Anything else, including
 * duplicate or unknown parameters, NUL bytes and values over their limits, is refused. Spaces and
 * tabs around the whole value are ignored; the scheme is followed by spaces only. The response must be 6 to 8 digits. */

#define P2M_AUTHHDR_MAX 512
#define P2M_TOKEN_MAX 8
#define P2M_BEARER_MAX 128

typedef enum { P2M_AUTH_TOTP = 1, P2M_AUTH_BEARER = 2 } p2m_auth_scheme_t;

typedef struct {
    p2m_auth_scheme_t scheme;
    char id[P2M_ID_MAX + 1];         /* TOTP: the pod ID */
    char token[P2M_TOKEN_MAX + 1];   /* TOTP: the one-time password, digits only */
    char bearer[P2M_BEARER_MAX + 1]; /* Bearer: the credential, [A-Za-z0-9._~+/=-] */
} p2m_auth_t;

/* Parses value[0..len). Returns 0 and fills *out, or -1 with the reason in err. */
int p2m_authhdr_parse(const char *value, size_t len, p2m_auth_t *out, char *err);

#endif
