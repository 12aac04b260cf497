#ifndef P2M_ADDR_H
#define P2M_ADDR_H

#include <stddef.h>
#include <stdint.h>

/* Parsers for addresses in config files and on command lines. Pure: no name resolution. */

#define P2M_HOST_MAX 255
#define P2M_PATH_MAX 107 /* sun_path less the NUL */

typedef struct {
    char host[P2M_HOST_MAX + 1]; /* without brackets for IPv6 */
    uint16_t port;
} p2m_hostport_t;

typedef struct {
    uint16_t lo, hi; /* inclusive, lo <= hi, lo >= 1 */
} p2m_port_range_t;

#define P2M_SENTINELS_MAX 8
#define P2M_REDIS_MASTER_MAX 64    /* a Sentinel master name */
#define P2M_REDIS_USER_MAX 128     /* an ACL user name */
#define P2M_REDIS_PASSWORD_MAX 256 /* the one line of a password file */
#define P2M_REDIS_WAIT_MAX 8       /* wait_replicas at most */

/* How to reach Redis: one address, or the Sentinels that name the primary, and the credentials.
 * p2m_redis_addr_parse() fills only the address; the config's object form (p2m/config.h) the
 * rest. Passwords are secrets: never copied into a log line or an error message. */
typedef struct {
    int is_unix;
    char path[P2M_PATH_MAX + 1]; /* when is_unix */
    p2m_hostport_t tcp;          /* otherwise; unused with sentinels */
    unsigned nsentinels;         /* 0: talk to the address above */
    p2m_hostport_t sentinels[P2M_SENTINELS_MAX];
    char master[P2M_REDIS_MASTER_MAX + 1];              /* the name the Sentinels monitor */
    char user[P2M_REDIS_USER_MAX + 1];                  /* "" = AUTH with the password alone */
    char password[P2M_REDIS_PASSWORD_MAX + 1];          /* "" = no AUTH */
    char sentinel_password[P2M_REDIS_PASSWORD_MAX + 1]; /* "" = Sentinels without AUTH */
    unsigned wait_replicas;                             /* replicas an admin change waits for (WAIT) */
    unsigned wait_timeout_ms;                           /* how long it waits for them */
} p2m_redis_addr_t;

/* "HOST:PORT", "[V6]:PORT" or ":PORT"/"PORT" (host left empty: all addresses). Port 1-65535.
 * Host: a name or address of [A-Za-z0-9.:-], at most 255 bytes. Returns 0 or -1 with err. */
int p2m_hostport_parse(const char *s, p2m_hostport_t *out, char *err);

/* "LO-HI" with 1 <= LO <= HI <= 65535, or a single "PORT". Returns 0 or -1 with err. */
int p2m_port_range_parse(const char *s, p2m_port_range_t *out, char *err);

/* "unix:PATH" (absolute or relative path, at most 107 bytes) or "HOST:PORT". Zeroes the
 * Sentinel and credential fields. */
int p2m_redis_addr_parse(const char *s, p2m_redis_addr_t *out, char *err);

/* Parses a decimal port 1-65535 from s[0..len). Returns 0 or -1. */
int p2m_port_parse(const char *s, size_t len, uint16_t *out);

/* Formats host and port as "HOST:PORT" or "[V6]:PORT" into out. Returns bytes written or -1. */
int p2m_hostport_format(const char *host, uint16_t port, char *out, size_t cap);

#endif
