#include "p2m/proxyline.h"
#include "p2m/err.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SIGNATURE "PROXY "
#define SIGNATURE_LEN 6
#define V4_TEXT_MAX 15 /* 255.255.255.255 */
#define V6_TEXT_MAX 45 /* INET6_ADDRSTRLEN - 1: ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 */
#define V6_HEX_MAX 39  /* ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff */

/* The fields after the signature, in line order. */
enum { F_PROTO, F_SRC, F_DST, F_SPORT, F_DPORT, F_COUNT };

static const char *const field_name[F_COUNT] = {"protocol", "source address", "destination address", "source port",
                                                "destination port"};

/* What a field has been found to hold, once it is complete. */
typedef struct {
    int family;          /* AF_INET or AF_INET6, from the protocol */
    uint8_t addr[2][16]; /* source, destination */
    unsigned port[2];    /* source, destination */
} line_t;

/* The answer for bytes that end before the line does: read more, unless the bound is reached. */
static ssize_t incomplete(size_t len, char *err)
{
    if (len < P2M_PROXY_LINE_MAX)
        return 0;
    p2m_err(err, "line: no CRLF within the first %d bytes", P2M_PROXY_LINE_MAX);
    return -1;
}

/* Checks byte c at index i of field f, as it arrives, so that a wrong byte is refused at once:
 * what the field may still hold, not whether it is complete. *port accumulates a port's value. */
static int field_byte(int f, const line_t *l, unsigned char c, size_t i, size_t at, unsigned *port, char *err)
{
    const char *name = field_name[f];
    switch (f) {
    case F_PROTO:
        if (i < 3 ? c == (unsigned char)"TCP"[i] : i == 3 && (c == '4' || c == '6'))
            return 0;
        return p2m_err(err, "%s: byte %zu (0x%02x) does not fit TCP4 or TCP6 (UNKNOWN is not accepted)", name, at, c);
    case F_SRC:
    case F_DST:
        if (l->family == AF_INET) {
            if (i >= V4_TEXT_MAX)
                return p2m_err(err, "%s: longer than %d bytes for IPv4", name, V4_TEXT_MAX);
            if ((c >= '0' && c <= '9') || c == '.')
                return 0;
            return p2m_err(err, "%s: byte %zu (0x%02x) cannot be in an IPv4 address", name, at, c);
        }
        if (i >= V6_TEXT_MAX)
            return p2m_err(err, "%s: longer than %d bytes for IPv6", name, V6_TEXT_MAX);
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.')
            return 0;
        return p2m_err(err, "%s: byte %zu (0x%02x) cannot be in an IPv6 address (zone ids are not accepted)", name, at, c);
    default: /* F_SPORT, F_DPORT */
        if (c < '0' || c > '9')
            return p2m_err(err, "%s: byte %zu (0x%02x) is not a decimal digit", name, at, c);
        if (i == 0 && c == '0')
            return p2m_err(err, "%s: starts with 0 (port 0, or a leading zero)", name);
        *port = *port * 10 + (unsigned)(c - '0'); /* at most 5 digits get here: no overflow */
        if (*port > 65535)
            return p2m_err(err, "%s: over 65535", name);
        return 0;
    }
}

/* Checks field f, complete as text[0..n), and keeps its value in *l. */
static int field_done(int f, line_t *l, const char *text, size_t n, unsigned port, char *err)
{
    const char *name = field_name[f];
    char s[V6_TEXT_MAX + 1], canon[INET6_ADDRSTRLEN];
    switch (f) {
    case F_PROTO:
        if (n != 4)
            return p2m_err(err, "%s: not TCP4 or TCP6", name);
        l->family = text[3] == '4' ? AF_INET : AF_INET6;
        return 0;
    case F_SRC:
    case F_DST: {
        uint8_t *a = l->addr[f - F_SRC];
        memcpy(s, text, n); /* n is within the family's bound: field_byte() saw to it */
        s[n] = '\0';
        if (l->family == AF_INET) {
            /* Canonical text only, as the spec asks: whatever libc's inet_pton lets through (some
             * take leading zeros), the text must be what inet_ntop writes for the address. */
            if (inet_pton(AF_INET, s, a) != 1 || inet_ntop(AF_INET, a, canon, sizeof(canon)) == NULL || strcmp(canon, s) != 0)
                return p2m_err(err, "%s: not an IPv4 address of four numbers 0-255 without leading zeros", name);
            return 0;
        }
        if (inet_pton(AF_INET6, s, a) != 1)
            return p2m_err(err, "%s: not an IPv6 address", name);
        return 0;
    }
    default: /* F_SPORT, F_DPORT: every byte is checked already; n > 0 */
        l->port[f - F_SPORT] = port;
        return 0;
    }
}

ssize_t p2m_proxy_line_parse(const char *buf, size_t len, struct sockaddr_storage *src, socklen_t *src_len, char *err)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t n = len < P2M_PROXY_LINE_MAX ? len : P2M_PROXY_LINE_MAX, pos;
    line_t l = {0};

    for (pos = 0; pos < SIGNATURE_LEN; pos++) {
        if (pos == n)
            return incomplete(len, err); /* and buf may be NULL */
        if (b[pos] != (unsigned char)SIGNATURE[pos]) {
            p2m_err(err, "signature: byte %zu (0x%02x) does not fit PROXY and a space (version 1, text)", pos, b[pos]);
            return -1;
        }
    }
    for (int f = 0; f < F_COUNT; f++) {
        size_t start = pos;
        unsigned port = 0;
        for (; pos < n && b[pos] != ' ' && b[pos] != '\r'; pos++) {
            if (b[pos] == '\n') {
                p2m_err(err, "line: LF at byte %zu without a CR before it", pos);
                return -1;
            }
            if (field_byte(f, &l, b[pos], pos - start, pos, &port, err) != 0)
                return -1;
        }
        if (pos == n)
            return incomplete(len, err);
        if (pos == start) {
            p2m_err(err, "%s: empty (two spaces, or a space before CR)", field_name[f]);
            return -1;
        }
        if (f < F_DPORT && b[pos] != ' ') {
            p2m_err(err, "%s: the line ends after it (expected 6 fields)", field_name[f]);
            return -1;
        }
        if (f == F_DPORT && b[pos] != '\r') {
            p2m_err(err, "%s: followed by a space, not CRLF (more than 6 fields)", field_name[f]);
            return -1;
        }
        if (field_done(f, &l, buf + start, pos - start, port, err) != 0)
            return -1;
        pos++;
    }
    if (pos == n)
        return incomplete(len, err);
    if (b[pos] != '\n') {
        p2m_err(err, "line: CR at byte %zu followed by 0x%02x, not LF", pos - 1, b[pos]);
        return -1;
    }

    memset(src, 0, sizeof(*src));
    if (l.family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)src;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)l.port[0]);
        memcpy(&s4->sin_addr, l.addr[0], 4);
        *src_len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)src;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)l.port[0]);
        memcpy(&s6->sin6_addr, l.addr[0], 16);
        *src_len = sizeof(*s6);
    }
    return (ssize_t)(pos + 1);
}

/* --- writing --------------------------------------------------------------------------------- */

/* One end of the connection: IPv4 (4 bytes of b) or IPv6 (16), and its port. */
typedef struct {
    int v4;
    uint8_t b[16];
    unsigned port;
} end_t;

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* sa as an end, an IPv4-mapped IPv6 address as IPv4. */
static int end_of(const struct sockaddr *sa, end_t *e)
{
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        e->v4 = 1;
        memcpy(e->b, &s4->sin_addr, 4);
        e->port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a = s6->sin6_addr.s6_addr;
        e->v4 = memcmp(a, v4mapped, 12) == 0;
        memcpy(e->b, e->v4 ? a + 12 : a, e->v4 ? 4 : 16);
        e->port = ntohs(s6->sin6_port);
    } else {
        return -1;
    }
    return e->port == 0 ? -1 : 0;
}

/* An IPv6 address as RFC 5952 4 writes it (lower-case hex without leading zeros, the longest run of
 * two or more zero groups as "::", the first of equal runs), but in hex groups throughout: inet_ntop
 * writes a dotted tail for mapped and compatible addresses, which the spec's grammar lacks. */
static void v6_text(const uint8_t *a, char out[V6_HEX_MAX + 1])
{
    unsigned g[8];
    int best = -1, bestlen = 1;
    for (int i = 0; i < 8; i++)
        g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && g[j] == 0)
            j++;
        if (j - i > bestlen) {
            best = i;
            bestlen = j - i;
        }
        i = j > i ? j : i + 1;
    }
    size_t k = 0;
    for (int i = 0; i < 8;) {
        if (i == best) {
            out[k++] = ':';
            out[k++] = ':';
            i += bestlen;
            continue;
        }
        if (k > 0 && out[k - 1] != ':')
            out[k++] = ':';
        k += (size_t)snprintf(out + k, V6_HEX_MAX + 1 - k, "%x", g[i]);
        i++;
    }
    out[k] = '\0';
}

static void end_text(const end_t *e, int v4, char out[V6_HEX_MAX + 1])
{
    uint8_t a[16];
    if (v4) {
        inet_ntop(AF_INET, e->b, out, V6_HEX_MAX + 1);
        return;
    }
    if (e->v4) { /* widened: the line is TCP6 */
        memcpy(a, v4mapped, 12);
        memcpy(a + 12, e->b, 4);
    } else {
        memcpy(a, e->b, 16);
    }
    v6_text(a, out);
}

int p2m_proxy_line_format(const struct sockaddr *src, const struct sockaddr *dst, char *out, size_t cap)
{
    end_t s, d;
    char stext[V6_HEX_MAX + 1], dtext[V6_HEX_MAX + 1];
    if (cap > 0)
        out[0] = '\0'; /* what a refusal leaves: no line for a careless caller to send */
    if (end_of(src, &s) != 0 || end_of(dst, &d) != 0)
        return -1;
    int v4 = s.v4 && d.v4;
    end_text(&s, v4, stext);
    end_text(&d, v4, dtext);
    int n = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", stext, dtext, s.port, d.port);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0'; /* no cut line either */
        return -1;
    }
    return n;
}
