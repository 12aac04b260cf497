#ifndef P2M_SERVICE_H
#define P2M_SERVICE_H

#include <stddef.h>

#include "p2m/label.h"

/* What a pod serves behind a label (docs/PROTOCOL.md 1.1 and 2). A label may have one service of
 * each protocol; each is a separate pool of pre-connections on the relays, named by its service
 * key: "LABEL" for https (the default), "LABEL:http" and "LABEL:tcp" for the others. ':' never
 * occurs in a label, so a key names exactly one (label, protocol) pair. */
typedef enum { P2M_PROTO_HTTPS = 0, P2M_PROTO_HTTP, P2M_PROTO_TCP } p2m_proto_t;

/* Longest service key, not counting the NUL: a label, ':' and the longest protocol name. */
#define P2M_SERVICE_MAX (P2M_LABEL_MAX + 6)

/* Longest registration body the registrar reads (PROTOCOL 1.1). */
#define P2M_REGISTER_BODY_MAX 1024

/* "https", "http" or "tcp". */
const char *p2m_proto_name(p2m_proto_t proto);

/* Parses s[0..len), exactly one of the names above (lower case). Returns 0 or -1 with err. */
int p2m_proto_parse(const char *s, size_t len, p2m_proto_t *proto, char *err);

/* Writes the service key of (label, proto) to out (P2M_SERVICE_MAX + 1 bytes). label must be
 * normalized already. */
void p2m_service_key(const char *label, p2m_proto_t proto, char *out);

/* Checks s[0..len) as a service key (a label, optionally ":http" or ":tcp") and writes it
 * normalized (label lower-cased) to out (P2M_SERVICE_MAX + 1 bytes). Returns 0 or -1 with err. */
int p2m_service_normalize(const char *s, size_t len, char *out, char *err);

/* Most pre-connections one registration may ask for (PROTOCOL 1.1): one port, up to this many
 * connections from the pod, so that a pool refills with one request per batch. */
#define P2M_LEASE_CONNS_MAX 32

/* Parses the body of PUT /register/LABEL: empty (or only white space) means https and one
 * connection; otherwise a JSON object of at most P2M_REGISTER_BODY_MAX bytes whose keys are
 * "protocol" (a string) and "connections" (an integer, 1 to P2M_LEASE_CONNS_MAX), both optional.
 * Returns 0 with *proto and *conns, or -1 with a one-line reason in err naming what is wrong. */
int p2m_service_body_parse(const char *body, size_t len, p2m_proto_t *proto, unsigned *conns, char *err);

/* Largest pool target a registration may declare ("pool", PROTOCOL 1.1): the most pipe2me-pod
 * --pool allows. */
#define P2M_POOL_TARGET_MAX 1024

/* A direct path in text: "A.B.C.D:PORT" or "[V6]:PORT" (INET6_ADDRSTRLEN + brackets, ':' and a port). */
#define P2M_DIRECT_ADDR_MAX 54

/* Everything a registration body declares (PROTOCOL 1.1). */
typedef struct {
    p2m_proto_t proto;
    unsigned conns;
    /* "direct_lan" and "direct_public" (PROTOCOL 5), canonical ("10.0.0.5:8443", "[2001:db8::1]:443";
     * IPv4-mapped IPv6 written as IPv4); "" when not declared */
    char direct_lan[P2M_DIRECT_ADDR_MAX + 1];
    char direct_public[P2M_DIRECT_ADDR_MAX + 1];
    unsigned pool; /* "pool": the pod's pool target for the service, 0 when not declared */
} p2m_service_body_t;

/* p2m_service_body_parse, with three more optional keys: "direct_lan" and "direct_public", each a
 * string "ADDR:PORT", ADDR an IPv4 literal or a bracketed IPv6 literal (no names, no zone), PORT
 * 1-65535 without sign or leading zero; and "pool", an integer from 1 to P2M_POOL_TARGET_MAX.
 * Returns 0 with *out filled, or -1 with err (nothing of the value is quoted). */
int p2m_service_body_parse_ex(const char *body, size_t len, p2m_service_body_t *out, char *err);

/* Checks s (NUL-terminated) as a direct path "ADDR:PORT" as above and writes its canonical form
 * to out (P2M_DIRECT_ADDR_MAX + 1 bytes), its address alone (no brackets) to host
 * (INET6_ADDRSTRLEN bytes) and its port to *port; host and port may be NULL. Returns 0 or -1 with
 * err. */
int p2m_direct_addr_parse(const char *s, char *out, char *host, unsigned *port, char *err);

/* Whether host (an address literal as p2m_direct_addr_parse writes it, no brackets) may be a
 * public direct path's: not loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), shared
 * (100.64/10), link-local (169.254/16, fe80::/10) or "this network" (0/8). 1 yes, 0 no (also for
 * what is not an address). */
int p2m_direct_addr_public(const char *host);

#endif
