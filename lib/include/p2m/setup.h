#ifndef P2M_SETUP_H
#define P2M_SETUP_H

#include <stddef.h>

#include "p2m/label.h"
#include "p2m/service.h"

/* The pure pieces of self-service setup (docs/PROTOCOL.md 1.6): the request body of POST /setup, and
 * the label rules for a token with a label prefix. Nothing here touches the store or the network;
 * every function is re-entrant and keeps no pointer to its arguments. */

/* Longest request body the registrar reads, and most entries in "protocols". Only three protocols
 * exist and duplicates are refused, so the count limit only bounds the work before that check. */
#define P2M_SETUP_BODY_MAX 4096
#define P2M_SETUP_PROTOS_MAX 32

/* Longest label p2m_label_generate writes ("handsome-tamarind-pelican"), and so the longest token
 * label prefix that leaves room for "-" and a generated label within P2M_LABEL_MAX. `token add`
 * should refuse a longer prefix; p2m_setup_label_generate cuts one (see there). */
#define P2M_SETUP_GENERATED_MAX 25
#define P2M_SETUP_PREFIX_MAX (P2M_LABEL_MAX - 1 - P2M_SETUP_GENERATED_MAX)

/* A parsed setup request: the protocols in the order given (distinct), and the wanted label,
 * normalized, or "" when the body names none (the registrar generates one). */
typedef struct {
    p2m_proto_t protos[P2M_SETUP_PROTOS_MAX];
    size_t nprotos;
    char label[P2M_LABEL_MAX + 1];
} p2m_setup_req_t;

/* Parses body[0..len), at most P2M_SETUP_BODY_MAX bytes: a JSON object whose keys are "protocols"
 * (required: an array of 1 to P2M_SETUP_PROTOS_MAX distinct strings, each "https", "http" or "tcp")
 * and "label" (optional: a string, a label as in p2m_label_normalize, stored lower-cased). Unknown
 * keys, repeated keys, NUL bytes and any other type are refused. Returns 0 with *out filled, or -1
 * with a one-line reason in err naming the key; the reason quotes the input only as a short
 * escaped excerpt of printable ASCII. *out is unspecified after -1. */
int p2m_setup_body_parse(const char *body, size_t len, p2m_setup_req_t *out, char *err);

/* Writes req as a canonical body ({"protocols":[...],"label":"..."}, the label only when set) to
 * out (cap bytes, NUL-terminated), as `pipe2me-pod setup` sends it. Returns the length, or -1 when
 * req holds an unknown protocol, an empty or overlong list, or the body does not fit in cap. */
int p2m_setup_body_format(const p2m_setup_req_t *req, char *out, size_t cap);

/* Whether a token with label prefix `prefix` (NULL or "" for none) may take the wanted label
 * `label`. Without a prefix any valid label is allowed. With one, the label must be the prefix,
 * '-', and at least one more character ("acme-door-1" for prefix "acme"); the bare prefix is not
 * allowed, so that every label a token hands out, wanted or generated, has the one form
 * "PREFIX-...". Both are compared lower-cased. Returns 0, or -1 with a one-line reason in err.
 * Whether the label is free is the store's business, not this function's. */
int p2m_setup_label_allowed(const char *label, const char *prefix, char *err);

/* Writes a random label for a token with label prefix `prefix` (NULL or "" for none) to out (cap
 * bytes): "PREFIX-adjective-fruit-animal", lower-cased, or p2m_label_generate's label alone without
 * a prefix. The result is always a valid DNS label of at most P2M_LABEL_MAX bytes: a prefix longer
 * than P2M_SETUP_PREFIX_MAX is cut to that length (and of trailing hyphens), and such a label no
 * longer passes p2m_setup_label_allowed, which is why `token add` refuses such prefixes.
 *
 * Labels repeat: there are 2^18 per prefix. The registrar claims a generated label atomically in
 * the store and, when it is taken, generates another, a bounded number of times (a few tries make
 * a failure negligible until most of the 2^18 are used), then answers that no label is free.
 * Returns 0, or -1 when the prefix is not a valid label, the label does not fit in cap, the random
 * generator fails or a generated part is longer than P2M_SETUP_GENERATED_MAX. */
int p2m_setup_label_generate(const char *prefix, char *out, size_t cap);

#endif
