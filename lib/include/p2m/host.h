#ifndef P2M_HOST_H
#define P2M_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "p2m/label.h"

/* Parser for the Host header (HTTP/1.1) or :authority (HTTP/2) a consumer or pod sends, against
 * the configured domain. Pure: no allocation, no I/O. */

#define P2M_HOST_HEADER_MAX 300

typedef enum { P2M_HOST_BARE = 1, P2M_HOST_LABEL = 2 } p2m_host_kind_t;

/* Accepts "DOMAIN" or "LABEL.DOMAIN", each optionally with one trailing dot and ":PORT" (1-65535),
 * case-insensitively; domain must be lower case. Returns P2M_HOST_BARE or P2M_HOST_LABEL, writing
 * the lower-cased label to label (P2M_LABEL_MAX + 1 bytes; "" for BARE) and the port or 0 to
 * *port. Returns -1 with err for anything else: other names, nested labels (a.b.DOMAIN), IP
 * literals, userinfo, empty input, NUL bytes, more than P2M_HOST_HEADER_MAX bytes. */
int p2m_host_parse(const char *authority, size_t len, const char *domain, char *label, uint16_t *port, char *err);

/* Whether authority names one of own[0..n): "NAME" (one trailing dot allowed), "IPV4" or "[IPV6]",
 * each optionally with ":PORT" (1-65535). An entry of own is a lower-case DNS name, matched
 * case-insensitively, or an IP literal without brackets, matched as an address (so "[::1]" matches
 * "0:0::1", and an IPv4-mapped IPv6 literal its IPv4 address); a name never matches an address
 * entry nor the reverse. Returns the index of the first matching entry, writing the port or 0 to
 * *port, or -1 (also for empty input, NUL bytes, userinfo, more than P2M_HOST_HEADER_MAX bytes). */
int p2m_host_is_own(const char *authority, size_t len, const char *const *own, size_t n, uint16_t *port);

#endif
