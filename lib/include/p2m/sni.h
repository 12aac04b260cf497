#ifndef P2M_SNI_H
#define P2M_SNI_H

#include <stddef.h>
#include <stdint.h>

/* The server name of a TLS ClientHello, read without terminating TLS.
 *
 * The relay's SNI listener routes each TLS consumer by the name it asks for. It peeks at the
 * client's first bytes (MSG_PEEK, so they stay queued for whoever terminates TLS) and calls
 * p2m_sni_parse() again each time more have arrived, until the answer is not P2M_SNI_NEED_MORE.
 * The parser keeps no state between calls and is pure: it reads only buf[0..len) (and of that at
 * most the first P2M_SNI_PEEK_MAX bytes), never allocates and works in a fixed buffer on the stack
 * (about 24 KiB). Its err is printable and never quotes the input. */

/* Bytes of a client's first flight the relay looks at, at most: one full TLS record (RFC 8446
 * 5.1: 2^14) holds any ClientHello a browser or curl sends, even with a post-quantum key share. */
#define P2M_SNI_PEEK_MAX 16384

/* Longest server name (a DNS name without its trailing dot), not counting the terminating NUL. */
#define P2M_SNI_NAME_MAX 253

typedef enum {
    P2M_SNI_NEED_MORE = 0, /* a prefix of what could still be a valid ClientHello: peek again */
    P2M_SNI_FOUND,         /* a valid ClientHello with a host_name: name holds it */
    P2M_SNI_NONE,          /* a valid ClientHello without one */
    P2M_SNI_INVALID        /* not a ClientHello this relay routes: err says why */
} p2m_sni_status_t;

/* Reads the server name (RFC 6066 server_name, host_name entry) of the TLS ClientHello at the start of
 * buf[0..len) (the bytes a client sent first; not NUL-terminated; may hold a prefix only; buf may be
 * NULL when len is 0). Returns
 * - P2M_SNI_NEED_MORE when the bytes end before the ClientHello does and len < P2M_SNI_PEEK_MAX;
 * - P2M_SNI_FOUND with the name lower-cased, without a trailing dot, NUL-terminated in name
 *   (P2M_SNI_NAME_MAX + 1 bytes);
 * - P2M_SNI_NONE for a complete, well-formed ClientHello without a server_name extension, or with
 *   one that lists names of other types only;
 * - P2M_SNI_INVALID (err, P2M_ERR_LEN bytes or NULL, says why in one printable line) for anything
 *   else.
 * Accepted: handshake records (content type 22) of version 0x0301-0x0304 and length 1-16384 carrying
 * one ClientHello, fragmented over any number of them, that ends within the first P2M_SNI_PEEK_MAX
 * bytes. A ClientHello whose declared length shows it cannot end there is INVALID as soon as that
 * length is read, not when P2M_SNI_PEEK_MAX bytes have arrived. Inside it every length must fit,
 * extension types must not repeat, and a host_name must be a DNS name: 1-253 bytes of [A-Za-z0-9.-]
 * (one trailing dot allowed and dropped) in labels of 1-63 bytes, at most one per ClientHello;
 * legacy_version and random are not looked at (the server decides on those). The answer depends
 * only on the bytes up to the ClientHello's end: what follows (the rest of its record, more records,
 * early data) is not looked at, and a prefix never gets an answer other than NEED_MORE or the one
 * the whole input gets. name is "" unless the answer is FOUND. */
p2m_sni_status_t p2m_sni_parse(const uint8_t *buf, size_t len, char *name, char *err);

/* The status as a lower-case word for logs ("need_more", "found", "none", "invalid"; "?" for a
 * value outside the enum). */
const char *p2m_sni_status_name(p2m_sni_status_t status);

#endif
