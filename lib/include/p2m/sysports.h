#ifndef P2M_SYSPORTS_H
#define P2M_SYSPORTS_H

#include <stddef.h>
#include <stdint.h>

#include "p2m/addr.h"

/* The kernel's ephemeral ports against a relay's relay.ports.
 *
 * connect() and bind() to port 0 take their local port from net.ipv4.ip_local_port_range, except
 * the ports in net.ipv4.ip_local_reserved_ports. A relay leases and binds ports only when the
 * registrar asks, so an outgoing connection on the same machine can take a port of relay.ports
 * first and the lease then fails with "Address already in use". This module tells the relay at
 * start (and --check-config) which of its ports are exposed that way.
 *
 * The parsers are pure, read only s[0..len) (NUL bytes inside are refused, not ends of string)
 * and refuse anything the kernel would not print: their err is printable and never quotes the
 * input. p2m_sysports_read() is the only function that touches the file system. */

/* Longest text either parser accepts (one /proc file). The kernel prints reserved ports as merged
 * ranges, so a list that does not fit is one no operator wrote by hand. */
#define P2M_SYSPORTS_TEXT_MAX 65536

/* Room for the value of the suggested sysctl line, NUL included (fits a p2m_log line). */
#define P2M_SYSPORTS_FIX_MAX 1024

/* The /proc files p2m_sysports_read() reads. */
#define P2M_SYSPORTS_RANGE_PATH "/proc/sys/net/ipv4/ip_local_port_range"
#define P2M_SYSPORTS_RESERVED_PATH "/proc/sys/net/ipv4/ip_local_reserved_ports"

/* A set of ports 0-65535, one bit each (8 KiB). Plain data: zero it to empty it. */
typedef struct {
    uint64_t bits[65536 / 64];
} p2m_port_set_t;

/* What p2m_sysports_assess() found. Ranges are inclusive. */
typedef struct {
    p2m_port_range_t ports;     /* relay.ports, as given */
    p2m_port_range_t ephemeral; /* the kernel's ip_local_port_range, as given */
    unsigned overlap_n;         /* ports in both; 0 when the ranges are disjoint */
    p2m_port_range_t overlap;   /* the ports in both, when overlap_n > 0 */
    unsigned at_risk;           /* ports of the overlap that are not reserved */
    uint16_t first, last;       /* lowest and highest of those, when at_risk > 0 */
    /* The value for net.ipv4.ip_local_reserved_ports that keeps every port reserved today and adds
     * the overlap ("8080,33000-33999"); writing the sysctl replaces the whole list, so the old
     * entries must be in it. "" when at_risk is 0 or the list does not fit. */
    char fix[P2M_SYSPORTS_FIX_MAX];
} p2m_sysports_risk_t;

/* True when port is in set. */
static inline int p2m_sysports_set_has(const p2m_port_set_t *set, uint16_t port)
{
    return (int)((set->bits[port / 64] >> (port % 64)) & 1u);
}

/* Parses the text of ip_local_port_range: "LO<TAB>HI" with an optional final newline, each a
 * decimal port 1-65535 of at most 5 digits, LO <= HI. One space instead of the tab is accepted
 * too; nothing else (no other blanks, signs or trailing bytes). Returns 0 with *out set, or -1 with
 * err (out unchanged). */
int p2m_sysports_parse_range(const char *s, size_t len, p2m_port_range_t *out, char *err);

/* Parses the text of ip_local_reserved_ports: "" or "\n" (nothing reserved), or a comma-separated
 * list of PORT and LO-HI items (ports 1-65535 of at most 5 digits, LO <= HI) with an optional
 * final newline, at most P2M_SYSPORTS_TEXT_MAX bytes. Items may overlap or come in any order (the
 * kernel accepts that on write): the set is their union. Empty items, blanks and any other byte
 * are refused. Returns 0 with *out set, or -1 with err (*out then undefined). */
int p2m_sysports_parse_reserved(const char *s, size_t len, p2m_port_set_t *out, char *err);

/* Decides which of ports lie in ephemeral and outside reserved (NULL: nothing reserved), and fills
 * *out (see p2m_sysports_risk_t). Pure; never fails. */
void p2m_sysports_assess(p2m_port_range_t ports, p2m_port_range_t ephemeral, const p2m_port_set_t *reserved,
                         p2m_sysports_risk_t *out);

/* Writes the set as the kernel prints it, merged ascending ranges ("80,8080-8090"), NUL-terminated
 * into out[0..cap). Returns the length, or -1 when it does not fit (out then holds ""). */
int p2m_sysports_set_format(const p2m_port_set_t *set, char *out, size_t cap);

/* Formats a risk with at_risk > 0 as the key=value part of a log line:
 * `ports=LO-HI ephemeral=A-B overlap=X-Y at_risk=N fix="sysctl -w net.ipv4.ip_local_reserved_ports=LIST"`
 * (fix says `add X-Y to net.ipv4.ip_local_reserved_ports` when risk->fix is empty). Returns the
 * length, or -1 when it does not fit cap (out then holds a truncated line). */
int p2m_sysports_format(const p2m_sysports_risk_t *risk, char *out, size_t cap);

/* Reads range_path and reserved_path (ip_local_port_range and ip_local_reserved_ports, or copies:
 * the tests pass their own files; NULL means the /proc file), at most P2M_SYSPORTS_TEXT_MAX bytes
 * each, parses them and assesses ports into *out. Returns 0, or -1 with err when a file cannot be
 * opened or read, is longer than that, or does not parse: not every system has these files (other
 * kernels, some containers), so callers then say nothing. */
int p2m_sysports_read(p2m_port_range_t ports, const char *range_path, const char *reserved_path, p2m_sysports_risk_t *out,
                      char *err);

#endif
