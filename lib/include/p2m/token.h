#ifndef P2M_TOKEN_H
#define P2M_TOKEN_H

#include <stddef.h>

/* Setup tokens: the currency of self-service setup. Each use creates one pod with at most
 * `tunnels` services. A token is P2M_TOKEN_PREFIX followed by 32 random bytes in base64url
 * without padding; it is shown once, when made, and Redis keeps only its SHA-256 (lower-case
 * hex), so that a copy of the database grants nothing. The first P2M_TOKEN_ID_LEN hex digits of
 * the hash name the token in listings. */

#define P2M_TOKEN_PREFIX "p2mt_"
#define P2M_TOKEN_RAW_BYTES 32
#define P2M_TOKEN_LEN (sizeof(P2M_TOKEN_PREFIX) - 1 + 43) /* 43 = base64url of 32 bytes, unpadded */
#define P2M_TOKEN_HASH_LEN 64                             /* SHA-256 in hex */
#define P2M_TOKEN_ID_LEN 12                               /* the short ID: the hash's first hex digits */

/* Bounds of a token's settings (pipe2me-admin token add). */
#define P2M_TOKEN_USES_MAX 1000000
#define P2M_TOKEN_TUNNELS_MAX 32               /* a pod's services */
#define P2M_TOKEN_EXPIRES_MAX (3650LL * 86400) /* seconds from its making */
#define P2M_TOKEN_LABEL_PREFIX_MAX 40

/* A setup token as stored (p2m:token:HASH, p2m/store.h). */
typedef struct {
    char hash[P2M_TOKEN_HASH_LEN + 1];
    long long uses, uses_left, tunnels;
    long long expires; /* unix s, 0: never */
    char label_prefix[P2M_TOKEN_LABEL_PREFIX_MAX + 1];
    long long created, pods_created;
} p2m_token_info_t;

/* What p2m_store_token_redeem (p2m/store.h) and p2m_store_token_redeem_reply (p2m/store_cmd.h) found. */
typedef enum {
    P2M_TOKEN_REDEEMED = 0, /* one use spent: *info holds the token as it is now */
    P2M_TOKEN_UNKNOWN,      /* no such token (or a hash that is not one) */
    P2M_TOKEN_EXPIRED,      /* its expiry is at or before now */
    P2M_TOKEN_SPENT,        /* no use left */
} p2m_token_status_t;

/* Writes a new token (P2M_TOKEN_LEN + 1 bytes, NUL-terminated) drawn from OpenSSL's RAND.
 * Returns 0, or -1 with err when the generator fails. */
int p2m_token_new(char *out, char *err);

/* Writes the SHA-256 of token[0..len) as lower-case hex (P2M_TOKEN_HASH_LEN + 1 bytes) to hex.
 * Any bytes are hashed: whether they form a token is for the store to find out. Returns 0 or -1
 * with err. */
int p2m_token_hash(const char *token, size_t len, char *hex, char *err);

/* Whether s[0..len) is n lower-case hex digits. */
int p2m_token_hex_valid(const char *s, size_t len, size_t n);

/* Checks a label prefix: 1..P2M_TOKEN_LABEL_PREFIX_MAX bytes of [a-z0-9-], not starting with a
 * hyphen (a generated label follows it, so it may end with one). Upper case is refused, not
 * folded, so that what is stored is what was asked for. Returns 0, or -1 with err saying why. */
int p2m_token_label_prefix_check(const char *s, size_t len, char *err);

#endif
