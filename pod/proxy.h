#ifndef POD_PROXY_H
#define POD_PROXY_H

/* The pod behind an HTTP proxy (docs/OPERATIONS.md "A pod behind an HTTP proxy"): the proxy URL
 * (--proxy, or https_proxy / HTTPS_PROXY), which hosts no_proxy / NO_PROXY exempt, the CONNECT
 * request that opens a pre-connection through the proxy, and an incremental, bounded parser of the
 * proxy's answer to it. Pure functions over bytes, kept apart from the sockets so that
 * tests/unit/proxy.c and tests/fuzz/fuzz_proxy.c reach them. No function here logs; none puts the
 * password anywhere but the CONNECT request it builds. */

#include <stddef.h>
#include <stdint.h>

#include "p2m/addr.h"
#include "p2m/err.h"

#define POD_PROXY_URL_MAX 1024  /* bytes of a proxy URL */
#define POD_PROXY_CRED_MAX 255  /* bytes of the user name and of the password, each, once decoded */
#define POD_PROXY_PORT 1080     /* the port of a proxy URL that names none, as curl */
#define POD_PROXY_HDR_MAX 8192  /* bytes of the proxy's response header to CONNECT, up to its empty line */
#define POD_PROXY_REASON_MAX 80 /* bytes of the status line's reason phrase kept */
/* "http://" USER "@" HOST:PORT (with room to spare), the user percent-encoded (3 bytes a byte at worst) */
#define POD_PROXY_SHOWN_MAX (7 + 3 * POD_PROXY_CRED_MAX + 1 + P2M_HOST_MAX + 16)
/* The CONNECT request: the request line and Host (each with a target of at most P2M_HOST_MAX + 8
 * bytes), Proxy-Authorization with the base64 of USER:PASSWORD, and the empty line. */
#define POD_PROXY_REQ_MAX (2 * (P2M_HOST_MAX + 8) + 4 * ((2 * POD_PROXY_CRED_MAX + 1 + 2) / 3) + 128)

/* A proxy: where it is and who we are to it. */
typedef struct {
    char host[P2M_HOST_MAX + 1]; /* a name or address, without brackets; "" when there is no proxy */
    uint16_t port;
    int auth;                            /* the URL had user info: send Proxy-Authorization: Basic */
    char user[POD_PROXY_CRED_MAX + 1];   /* percent-decoded; may be "" (":password@") */
    char pass[POD_PROXY_CRED_MAX + 1];   /* percent-decoded; never logged nor written to the status */
    char shown[POD_PROXY_SHOWN_MAX + 1]; /* http://[USER@]HOST:PORT for logs and the status: no password,
                                          * the user percent-encoded outside [A-Za-z0-9._~-] */
    char url[P2M_HOST_MAX + 24];         /* http://HOST:PORT, for libcurl (the credentials go apart) */
} pod_proxy_t;

/* Parses a proxy URL: [http://][USER[:PASSWORD]@]HOST[:PORT][/], the scheme in any case (none
 * means http, as curl reads it), HOST a name or address (IPv6 in brackets), PORT 1-65535 (default
 * POD_PROXY_PORT), USER and PASSWORD percent-encoded as RFC 3986 says, each at most
 * POD_PROXY_CRED_MAX bytes decoded, with no NUL, and USER with no ':' (RFC 7617). https:// (TLS to
 * the proxy), socks and any other scheme, a path other than "/", a query or a fragment are refused.
 * Returns 0, or -1 with err (never quoting the password) and *px holding no password. */
int pod_proxy_url_parse(const char *url, pod_proxy_t *px, char *err);

/* Wipes the password from *px. */
void pod_proxy_wipe(pod_proxy_t *px);

/* Whether host (a name, or an address without brackets) is exempt from the proxy by no_proxy, read
 * as curl reads it: entries separated by commas (blanks around them ignored); "*" alone exempts
 * every host; an entry matches a name that equals it or ends with "." and it (a leading "." on the
 * entry is ignored, and so is a trailing "." on either), case-insensitively; an IP address entry
 * matches that address, and ADDRESS/BITS a network (IPv4 or IPv6, an IPv6 entry in brackets or
 * not). NULL or "" exempts nothing. Returns 1 or 0. */
int pod_proxy_bypass(const char *no_proxy, const char *host);

/* Writes the CONNECT request for host:port (the host without brackets, at most P2M_HOST_MAX
 * bytes) through px, NUL-terminated, into out (cap bytes; POD_PROXY_REQ_MAX suffice):
 * "CONNECT T HTTP/1.1\r\nHost: T\r\n[Proxy-Authorization: Basic B64(USER:PASSWORD)\r\n]\r\n" with T
 * HOST:PORT or [V6]:PORT. Returns its length, or -1 when it does not fit. The caller wipes out. */
int pod_proxy_request(const pod_proxy_t *px, const char *host, uint16_t port, char *out, size_t cap);

/* The proxy's answer to CONNECT, read as it arrives. */
typedef enum { PROXY_RESP_MORE = 0, PROXY_RESP_DONE = 1, PROXY_RESP_BAD = -1 } pod_proxy_resp_rc_t;

typedef struct {
    int state;    /* private: where in the header the next byte goes */
    size_t total; /* header bytes read so far */
    size_t line;  /* bytes of the current line kept in buf */
    int lines;    /* lines ended so far */
    char buf[256];
    int status;                            /* the status code, 0 until the status line is read */
    char reason[POD_PROXY_REASON_MAX + 1]; /* printable ASCII; other bytes as '?' */
    char auth_scheme[16];                  /* the first Proxy-Authenticate's scheme, "" when none */
    const char *err;                       /* PROXY_RESP_BAD: why, a static string */
} pod_proxy_resp_t;

/* Starts reading a new answer. */
void pod_proxy_resp_init(pod_proxy_resp_t *r);

/* Reads the next len bytes of the answer (any split; data need not be NUL-terminated) and sets
 * *used to how many of them belong to its header. PROXY_RESP_MORE: all of them do (*used == len)
 * and the header goes on. PROXY_RESP_DONE: the header ended with the empty line at data[*used - 1];
 * what follows it is the tunnel's, and r->status, r->reason and r->auth_scheme say what it was.
 * PROXY_RESP_BAD: not an HTTP/1.x status line ("HTTP/1.D DDD[ REASON]"), a NUL or a bare CR in
 * the header, a status line longer than 256 bytes, or more than POD_PROXY_HDR_MAX bytes; r->err
 * says which. Lines end with LF or CRLF. Once DONE or BAD, it stays so and uses nothing. */
pod_proxy_resp_rc_t pod_proxy_resp_feed(pod_proxy_resp_t *r, const char *data, size_t len, size_t *used);

/* One line for the log and the status when the proxy px refused CONNECT to target (HOST:PORT) with
 * status (the reason may be NULL or ""), with what to do about it: 407, the user and password
 * (or a scheme other than Basic, when auth_scheme names one); 403 and 405, the proxy's
 * rules for CONNECT to that port; 500 and 502-504, the proxy's reach. 401 reads as 407 (some
 * proxies, tinyproxy among them, answer so). The reason is shown printable.
 * Written NUL-terminated to out (cap bytes), cut when longer. */
void pod_proxy_refusal(const pod_proxy_t *px, const char *target, int status, const char *reason, const char *auth_scheme,
                       char *out, size_t cap);

#endif
