#ifndef REGISTRAR_AUTH_H
#define REGISTRAR_AUTH_H

#include "op.h"
#include "p2m/authhdr.h"
#include "p2m/label.h"
#include "p2m/service.h"

/* Authenticating a pod (TOTP or session) for a request on one of its labels, shared by
 * registrations (register.c) and certificate requests (certificate.c):
 *
 *   TOTP:   auth_lookup -> (TOTP check here) -> register_commit -> on_authorized
 *   Bearer: session_lookup -> on_authorized
 *
 * Each arrow is one Redis round trip; every decision that spans keys happens inside one script.
 * Both kinds embed auth_op_t as their `super`; auth.c reaches them only through the two hooks. */

typedef struct auth_op auth_op_t;

struct auth_op {
    op_t super;
    char label[P2M_LABEL_MAX + 1]; /* normalized; "-" when the path had none */
    char id[P2M_ID_MAX + 1];       /* the pod, once known ("" before) */
    p2m_auth_t auth;
    char session[64];        /* credential issued with a TOTP registration, "" if none */
    char session_digest[65]; /* hex SHA-256 of it: the Redis key never holds the credential */
    int struck_all;          /* auth_lookup counted the ID and address limiters too */
    int reused;              /* the TOTP code was used again, as the pod's token_reuse allows */
    int has_label_proto;     /* the label has a default protocol (admin `label add --protocol`): */
    p2m_proto_t label_proto; /* that one */
    /* Set by the kind's constructor. on_authorized: the pod is authenticated and owns the label;
     * the kind answers (and frees) the op. log_result: writes the kind's one result line for an
     * answer auth.c gives (why is the reason logged). */
    void (*on_authorized)(auth_op_t *op);
    void (*log_result)(const auth_op_t *op, int status, const char *why);
};

/* Authenticates op (its label, addr and the request's Authorization; label set, req not NULL)
 * and calls op->on_authorized, or answers 401/403/429/503 itself and frees op. */
void auth_start(auth_op_t *op);

/* Answers op with an error: counted (fail:STATUS), logged by op->log_result, freed. why is the
 * body and the logged reason. */
void auth_fail(auth_op_t *op, int status, const char *reason, const char *why);

/* auth_fail with 503 "registry unavailable" and Retry-After: 5 (Redis down or a reply not understood). */
void auth_unavailable(auth_op_t *op);

/* Adds the P2M-Session headers when op's TOTP authentication issued a credential. */
void auth_session_headers(auth_op_t *op);

/* The scheme for log lines: "totp", "bearer", or "-" before the header was read. */
const char *auth_scheme(const auth_op_t *op);

#endif
