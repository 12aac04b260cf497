#ifndef P2M_DNSUPD_H
#define P2M_DNSUPD_H

/* RFC 2136 dynamic updates signed with TSIG (RFC 8945), for issue 20: the registrar keeps
 * LABEL.direct.DOMAIN and LABEL.lan.DOMAIN A/AAAA records in an operator's authoritative server.
 * Built on ldns (Debian's libldns-dev 1.8.3); nothing here writes a DNS message by hand.
 *
 * What is here:
 *   - p2m_tsig_key_parse / _load: a pure parser for the BIND key file that `tsig-keygen` writes,
 *       key "NAME" { algorithm hmac-sha256; secret "BASE64"; };
 *     (hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512; comments with #, // and slash-star).
 *     _load refuses a file that group or others may read or write. No error ever quotes the
 *     secret, or any other input byte: errors name the line and what was expected.
 *   - p2m_dnsupd_replace / _delete: one blocking UPDATE for the zone. Replace deletes the name's A
 *     and AAAA RRsets and adds the given addresses, in one message, so the server applies it as
 *     one transaction; delete removes both RRsets. The reply must come within the timeout, carry
 *     our id, verify with the key (ldns checks the reply's TSIG), and have RCODE NOERROR.
 *   - p2m_dnsupd_lookup: what the server holds now for a name (A and AAAA, no recursion).
 *
 * The exchange is UDP, repeated over TCP when the reply is truncated (each with the timeout). It
 * does not go through ldns_resolver_send_pkt: that drops a reply whose TSIG does not verify, and
 * a server that refuses a key (NOTAUTH with TSIG BADKEY/BADSIG) answers unsigned, so the reason
 * would be lost. An error RCODE is therefore reported without verification (RFC 8945 5.3 allows
 * it to be unsigned; the worst a forger gets is a failed update), while a NOERROR must verify.
 * A reply with another id ends the call with an error rather than waiting on.
 *
 * How the registrar uses it (registrar/direct.c, PROTOCOL 5):
 *   - At start, p2m_tsig_key_load(dns.tsig_key_file), p2m_dnsupd_key_check, and fill p2m_dnsupd_conf_t from the config
 *     ("dns": {"server", "zone", "tsig_key_file", "ttl"}); the server must be an address literal,
 *     since these calls resolve no names.
 *   - The calls block for up to timeout_ms: never call them on the h2o loop. Run them on one worker
 *     thread fed by a queue (or a child process), one update per name change, and log the outcome
 *     (event=dns_update name= rcode/err=). Each call is idempotent, so a failure is retried later.
 *   - Reconcile at start: for each LABEL.{direct,lan}.DOMAIN the zone might hold, compare
 *     p2m_dnsupd_lookup's addresses with what Redis says and replace or delete where they differ.
 *     A wildcard (`* A ...`) in the zone answers every name that has no records of its own, so a
 *     lookup of a deleted name returns the wildcard's address: compare addresses with what is
 *     expected; never treat "an answer" as "our record exists". Listing the zone (AXFR) would tell
 *     records from wildcards, but needs an ACL the operator must grant; not done here.
 *
 * Thread-safety: no shared state; each call makes its own ldns resolver and socket. */

#include "p2m/addr.h"
#include "p2m/err.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define P2M_DNS_NAME_MAX 253    /* a domain name in text, without the final dot */
#define P2M_TSIG_SECRET_MAX 512 /* base64 characters: a 384-byte key, far more than HMAC needs */
#define P2M_TSIG_ALG_MAX 16     /* "hmac-sha512" */
#define P2M_TSIG_FILE_MAX 8192  /* a key file larger than this is refused unread */
#define P2M_DNSUPD_ADDRS_MAX 16 /* addresses per name, A and AAAA together */

typedef struct {
    char name[P2M_DNS_NAME_MAX + 1];      /* the key's name, as written (no final dot) */
    char algorithm[P2M_TSIG_ALG_MAX + 1]; /* lower case: hmac-sha1, hmac-sha256, hmac-sha384, hmac-sha512 */
    char secret[P2M_TSIG_SECRET_MAX + 1]; /* base64, checked; a secret: never log it */
} p2m_tsig_key_t;

/* Parses a BIND key file's text s[0..len) (NUL bytes are refused) into *out: exactly one key
 * statement, with one algorithm and one secret in either order. Returns 0, or -1 with a one-line
 * err that quotes nothing from the input. *out is zeroed on failure. */
int p2m_tsig_key_parse(const char *s, size_t len, p2m_tsig_key_t *out, char *err);

/* Reads path (at most P2M_TSIG_FILE_MAX bytes, a regular file with mode 0600 or 0400, i.e. no
 * permission for group or others) and parses it. Returns 0, or -1 with err naming the path. */
int p2m_tsig_key_load(const char *path, p2m_tsig_key_t *out, char *err);

/* Zeroes the key (the secret with it) in a way the compiler keeps. */
void p2m_tsig_key_clear(p2m_tsig_key_t *key);

/* 0 when updates can be signed with key; -1 with err otherwise: ldns 1.8.3 cannot sign with
 * hmac-sha384 (it misspells the algorithm's name). The registrar should call it at start, beside
 * p2m_tsig_key_load, so that a key it cannot use stops it there; p2m_dnsupd_replace checks too. */
int p2m_dnsupd_key_check(const p2m_tsig_key_t *key, char *err);

/* Where and how to send updates. Borrowed by every call, never kept. */
typedef struct {
    p2m_hostport_t server;           /* an IPv4 or IPv6 address literal and a port */
    char zone[P2M_DNS_NAME_MAX + 1]; /* the zone updated, e.g. "pipe2me.example" */
    const p2m_tsig_key_t *key;       /* signs updates; NULL sends them unsigned (tests only) */
    unsigned timeout_ms;             /* for the one exchange; 0 means 3000 */
} p2m_dnsupd_conf_t;

/* Replaces the A and AAAA RRsets of name (which must be inside conf->zone) with addrs[0..naddrs)
 * (IPv4 or IPv6 literals, at most P2M_DNSUPD_ADDRS_MAX) at ttl, in one signed UPDATE. naddrs == 0
 * deletes both RRsets. Blocks for at most about conf->timeout_ms. Returns 0 when the server
 * answered NOERROR with a reply that verifies; else -1 with err, e.g. "dns update of NAME:
 * REFUSED", "...: NOTAUTH (TSIG BADSIG)", "...: no answer within 3000 ms". */
int p2m_dnsupd_replace(const p2m_dnsupd_conf_t *conf, const char *name, const char *const *addrs, size_t naddrs, uint32_t ttl,
                       char *err);

/* Deletes name's A and AAAA RRsets (p2m_dnsupd_replace with no addresses). Deleting a name
 * with no records succeeds (RFC 2136 3.4.2.3: deleting what is absent is no error). */
int p2m_dnsupd_delete(const p2m_dnsupd_conf_t *conf, const char *name, char *err);

/* Queries conf->server (no recursion; unsigned) for name's A and AAAA and stores up to cap
 * addresses in text form into addrs, their count in *n and the smallest TTL seen in *ttl (0 when
 * none). NXDOMAIN and empty answers give *n == 0. Returns 0, or -1 with err. See the wildcard note
 * at the top of this file. */
int p2m_dnsupd_lookup(const p2m_dnsupd_conf_t *conf, const char *name, char (*addrs)[INET6_ADDRSTRLEN], size_t cap, size_t *n,
                      uint32_t *ttl, char *err);

#endif
