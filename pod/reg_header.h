#ifndef POD_REG_HEADER_H
#define POD_REG_HEADER_H

/* The registrar's response headers that register.c acts on (docs/PROTOCOL.md 1.3): P2M-Session,
 * P2M-Session-Expires, P2M-Connections, P2M-Waiting, P2M-Waited and Retry-After. Pure functions over bytes from the network, kept
 * apart from the curl code so that unit tests and tests/fuzz/fuzz_reg_header.c reach them. */

#include <stddef.h>

#define REG_SESSION_MAX 128               /* PROTOCOL 1.1: bytes of a session credential */
#define REG_SESSION_TTL_MAX (30L * 86400) /* a longer P2M-Session-Expires is cut to this */
#define REG_RETRY_AFTER_MAX 3600          /* a longer Retry-After is cut to this */
#define REG_CONNECTIONS_MAX 32            /* P2M_LEASE_CONNS_MAX: a larger P2M-Connections is invalid */
#define REG_WAITING_MAX 999999999L        /* P2M-Waiting and P2M-Waited: 9 digits at most (PROTOCOL 1.3) */

/* What one response's headers said. */
typedef struct {
    char session[REG_SESSION_MAX + 1]; /* "" when absent or invalid */
    unsigned session_ttl;              /* seconds; 0 when absent or invalid */
    long retry_after;                  /* seconds; -1 when absent or not delay-seconds */
    unsigned connections;              /* P2M-Connections, 1 to REG_CONNECTIONS_MAX; 0 when absent or invalid */
    long waiting;                      /* P2M-Waiting: consumers waiting for the service now; -1 when absent or invalid */
    long waited;                       /* P2M-Waited: consumers that have had to wait so far; -1 when absent or invalid */
} reg_header_t;

/* Sets *h to "nothing said": no session, no expiry, no Retry-After. */
void reg_header_reset(reg_header_t *h);

/* Reads one header line as curl hands it over (len bytes, CRLF included, not NUL-terminated) into
 * *h. A status line ("HTTP/...", a new response after a 100, say) resets *h. P2M-Session keeps a
 * value that reg_session_valid() accepts and holds no NUL, and leaves no session for any other
 * value; P2M-Session-Expires and Retry-After keep reg_header_seconds() of their value;
 * P2M-Connections keeps 1 to REG_CONNECTIONS_MAX digits-only, else 0; P2M-Waiting and P2M-Waited keep
 * 1 to 9 digits (0 to REG_WAITING_MAX) and nothing else, else -1. Other lines leave *h as it is. */
void reg_header_parse(reg_header_t *h, const char *line, size_t len);

/* The value of header `name` (case-insensitive, the colon right after it) in line[0..len): *value
 * points into line, past leading blanks, and the returned length leaves out trailing blanks, CR
 * and LF. Returns -1 when the line is another header (or too long to be one of ours). */
int reg_header_value(const char *line, size_t len, const char *name, const char **value);

/* delay-seconds: 1 to 9 digits and nothing else, cut to max. Returns the seconds or -1. */
long reg_header_seconds(const char *v, int len, long max);

/* A session credential: 1 to REG_SESSION_MAX bytes of ALPHA / DIGIT / "." / "_" / "~" / "+" / "/"
 * / "=" / "-" (PROTOCOL 1.1) up to its NUL. Returns 1 or 0. */
int reg_session_valid(const char *s);

#endif
