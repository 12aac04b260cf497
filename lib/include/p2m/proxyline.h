#ifndef P2M_PROXYLINE_H
#define P2M_PROXYLINE_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The PROXY protocol v1 line (HAProxy's proxy-protocol.txt, section 2.1, the text form) that the
 * relay's SNI port writes before a consumer's bytes when it passes the consumer on to the
 * registrar's PROXY listener, and that the registrar reads back:
 *
 *   "PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n"
 *
 * Both functions are pure: they read only what they are given, never allocate and keep no state.
 * What the writer writes the reader accepts, and what the reader accepts names one source address. */

/* The longest line, CRLF included (the spec's bound: "PROXY UNKNOWN" and two full IPv6 addresses). */
#define P2M_PROXY_LINE_MAX 107

/* Reads the PROXY protocol v1 line at the start of buf[0..len) (the bytes a relay sent first; not
 * NUL-terminated; may hold a prefix only, or the line and what follows it; buf may be NULL when len
 * is 0). Accepted, and nothing else:
 *
 *   "PROXY" SP ("TCP4" | "TCP6") SP SRC SP DST SP SPORT SP DPORT CR LF
 *
 * in at most P2M_PROXY_LINE_MAX bytes, case as shown, exactly one space between fields. SRC and DST
 * are addresses of the family named: for TCP4 dotted-quad IPv4 in canonical form (four decimal
 * numbers 0-255, no leading zeros: "01.2.3.4" is refused); for TCP6 what inet_pton(AF_INET6) reads
 * (hex groups in either case, "::", and a dotted IPv4 tail such as ::ffff:192.0.2.1, as HAProxy
 * reads them), without a zone id. SPORT and DPORT are decimal 1-65535 without leading zeros or a
 * sign. The spec allows port 0, but no TCP connection has it, so a line naming it is not one a
 * relay writes. "PROXY UNKNOWN" is refused: a relay always knows its consumer. Version 2 (binary)
 * headers are refused.
 *
 * Returns
 * - the line's length, CRLF included (what to consume before TLS starts), with the source address
 *   and port in *src and the size of its sockaddr_in or sockaddr_in6 in *src_len; what follows the
 *   line is not looked at;
 * - 0 when buf[0..len) may still begin such a line: fewer than P2M_PROXY_LINE_MAX bytes, each
 *   complete field valid, and every byte of the field in progress one it may hold; read more;
 * - -1 otherwise, with err (P2M_ERR_LEN bytes, or NULL) naming the field that failed in one
 *   printable line that never quotes the input (nor holds a '"'). A byte that no field in its place
 *   may hold is refused as soon as it arrives (a TLS ClientHello at its first byte, "UNKNOWN" at
 *   its U, a port's leading zero at the zero), a field whose bytes fit but whose value does not (an
 *   address inet_pton refuses) once the space or CR after it has arrived, and a line without CRLF
 *   when its P2M_PROXY_LINE_MAX bytes have arrived. A prefix never gets an answer other than 0 or
 *   the one the whole input gets.
 * *src and *src_len are written only when the return is positive. */
ssize_t p2m_proxy_line_parse(const char *buf, size_t len, struct sockaddr_storage *src, socklen_t *src_len, char *err);

/* Writes the PROXY protocol v1 line for a TCP connection from src to dst (AF_INET or AF_INET6
 * sockaddrs, ports in network order as in any sockaddr), NUL-terminated, into out (cap bytes;
 * P2M_PROXY_LINE_MAX + 1 always suffice). An IPv4-mapped IPv6 address (::ffff:a.b.c.d, as a
 * dual-stack listener sees an IPv4 peer) counts as the IPv4 address it maps. When both are IPv4
 * the line is TCP4. Otherwise it is TCP6, and an IPv4 address among them is written as its
 * IPv4-mapped IPv6 address: the spec wants both addresses in the one family the line names, and
 * since every IPv4 address has an exact IPv6 form, the line stays complete and true, where the
 * spec's other answer, "PROXY UNKNOWN", would drop the consumer's address (and is refused by
 * p2m_proxy_line_parse). IPv6 addresses are written in RFC 5952 form in hex groups only (no dotted
 * tail, which the spec's grammar lacks). Returns the line's length (CRLF included, NUL not), or -1
 * (out "" when cap > 0) for a NULL address, another family, a port 0, or a cap too small. The line
 * written is always one that p2m_proxy_line_parse accepts, and it names src (as IPv4 when src is
 * IPv4-mapped and dst IPv4 too, as IPv4-mapped IPv6 when src is IPv4 and dst IPv6). */
int p2m_proxy_line_format(const struct sockaddr *src, const struct sockaddr *dst, char *out, size_t cap);

#endif
