#include "p2m/sysports.h"
#include "p2m/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "65535\t65535\n": the longest ip_local_port_range the kernel prints. */
#define RANGE_TEXT_MAX 12

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int p2m_sysports_parse_range(const char *s, size_t len, p2m_port_range_t *out, char *err)
{
    if (s == NULL || len == 0)
        return p2m_err(err, "ip_local_port_range: empty");
    if (len > RANGE_TEXT_MAX)
        return p2m_err(err, "ip_local_port_range: longer than %d bytes", RANGE_TEXT_MAX);
    if (s[len - 1] == '\n')
        len--;
    size_t sep = 0;
    while (sep < len && is_digit(s[sep]))
        sep++;
    uint16_t lo, hi;
    if (sep == len || (s[sep] != '\t' && s[sep] != ' ') || p2m_port_parse(s, sep, &lo) != 0 ||
        p2m_port_parse(s + sep + 1, len - sep - 1, &hi) != 0)
        return p2m_err(err, "ip_local_port_range: expected LO<TAB>HI, ports 1-65535");
    if (lo > hi)
        return p2m_err(err, "ip_local_port_range: %u > %u", (unsigned)lo, (unsigned)hi);
    out->lo = lo;
    out->hi = hi;
    return 0;
}

/* Adds lo..hi to set a word at a time: a list of many wide ranges stays cheap. */
static void set_add(p2m_port_set_t *set, unsigned lo, unsigned hi)
{
    while (lo <= hi) {
        unsigned bit = lo % 64, n = hi - lo + 1;
        if (n > 64 - bit)
            n = 64 - bit;
        uint64_t mask = n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1) << bit;
        set->bits[lo / 64] |= mask;
        lo += n;
    }
}

/* Parses the port that starts at s[*i], at most 5 digits, and moves *i past it. */
static int port_at(const char *s, size_t len, size_t *i, uint16_t *out)
{
    size_t start = *i;
    while (*i < len && is_digit(s[*i]))
        (*i)++;
    return p2m_port_parse(s + start, *i - start, out);
}

int p2m_sysports_parse_reserved(const char *s, size_t len, p2m_port_set_t *out, char *err)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return p2m_err(err, "ip_local_reserved_ports: no text");
    if (len > P2M_SYSPORTS_TEXT_MAX)
        return p2m_err(err, "ip_local_reserved_ports: longer than %d bytes", P2M_SYSPORTS_TEXT_MAX);
    if (len > 0 && s[len - 1] == '\n')
        len--;
    if (len == 0)
        return 0;
    for (size_t i = 0;;) {
        size_t at = i;
        uint16_t lo, hi;
        if (port_at(s, len, &i, &lo) != 0)
            return p2m_err(err, "ip_local_reserved_ports: byte %zu: expected a port 1-65535", at);
        hi = lo;
        if (i < len && s[i] == '-') {
            i++;
            at = i;
            if (port_at(s, len, &i, &hi) != 0)
                return p2m_err(err, "ip_local_reserved_ports: byte %zu: expected a port 1-65535", at);
            if (lo > hi)
                return p2m_err(err, "ip_local_reserved_ports: byte %zu: range %u-%u is reversed", at, (unsigned)lo, (unsigned)hi);
        }
        set_add(out, lo, hi);
        if (i == len)
            return 0;
        if (s[i] != ',')
            return p2m_err(err, "ip_local_reserved_ports: byte %zu: expected ',' or '-'", i);
        i++;
    }
}

int p2m_sysports_set_format(const p2m_port_set_t *set, char *out, size_t cap)
{
    size_t pos = 0;
    if (cap == 0)
        return -1;
    out[0] = '\0';
    for (unsigned p = 0; p <= 65535; p++) {
        if (p % 64 == 0 && set->bits[p / 64] == 0) {
            p += 63; /* most of a set is empty words */
            continue;
        }
        if (!p2m_sysports_set_has(set, (uint16_t)p))
            continue;
        unsigned lo = p;
        while (p < 65535 && p2m_sysports_set_has(set, (uint16_t)(p + 1)))
            p++;
        int n = lo == p ? snprintf(out + pos, cap - pos, "%s%u", pos ? "," : "", lo)
                        : snprintf(out + pos, cap - pos, "%s%u-%u", pos ? "," : "", lo, p);
        if (n < 0 || (size_t)n >= cap - pos) {
            out[0] = '\0';
            return -1;
        }
        pos += (size_t)n;
    }
    return (int)pos;
}

void p2m_sysports_assess(p2m_port_range_t ports, p2m_port_range_t ephemeral, const p2m_port_set_t *reserved,
                         p2m_sysports_risk_t *out)
{
    memset(out, 0, sizeof(*out));
    out->ports = ports;
    out->ephemeral = ephemeral;
    unsigned lo = ports.lo > ephemeral.lo ? ports.lo : ephemeral.lo;
    unsigned hi = ports.hi < ephemeral.hi ? ports.hi : ephemeral.hi;
    if (lo > hi)
        return;
    out->overlap.lo = (uint16_t)lo;
    out->overlap.hi = (uint16_t)hi;
    out->overlap_n = hi - lo + 1;
    for (unsigned p = lo; p <= hi; p++) {
        if (reserved != NULL && p2m_sysports_set_has(reserved, (uint16_t)p))
            continue;
        if (out->at_risk++ == 0)
            out->first = (uint16_t)p;
        out->last = (uint16_t)p;
    }
    if (out->at_risk == 0)
        return;
    /* Reserving the whole overlap is simplest for the operator; it must keep what is reserved. */
    p2m_port_set_t want;
    if (reserved != NULL)
        want = *reserved;
    else
        memset(&want, 0, sizeof(want));
    set_add(&want, lo, hi);
    p2m_sysports_set_format(&want, out->fix, sizeof(out->fix));
}

int p2m_sysports_format(const p2m_sysports_risk_t *r, char *out, size_t cap)
{
    char fix[P2M_SYSPORTS_FIX_MAX + 64];
    if (r->fix[0] != '\0')
        snprintf(fix, sizeof(fix), "sysctl -w net.ipv4.ip_local_reserved_ports=%s", r->fix);
    else
        snprintf(fix, sizeof(fix), "add %u-%u to net.ipv4.ip_local_reserved_ports", (unsigned)r->overlap.lo,
                 (unsigned)r->overlap.hi);
    int n = snprintf(out, cap, "ports=%u-%u ephemeral=%u-%u overlap=%u-%u at_risk=%u fix=\"%s\"", (unsigned)r->ports.lo,
                     (unsigned)r->ports.hi, (unsigned)r->ephemeral.lo, (unsigned)r->ephemeral.hi, (unsigned)r->overlap.lo,
                     (unsigned)r->overlap.hi, r->at_risk, fix);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Reads at most cap - 1 bytes of path into buf; one byte more means the file is too long. */
static int read_bounded(const char *path, char *buf, size_t cap, size_t *len, char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return p2m_err(err, "%s: %s", path, strerror(errno));
    int rc = -1;
    *len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            p2m_err(err, "%s: %s", path, strerror(errno));
            goto Exit;
        }
        if (n == 0)
            break;
        *len += (size_t)n;
        if (*len == cap) {
            p2m_err(err, "%s: longer than %zu bytes", path, cap - 1);
            goto Exit;
        }
    }
    rc = 0;
Exit:
    close(fd);
    return rc;
}

int p2m_sysports_read(p2m_port_range_t ports, const char *range_path, const char *reserved_path, p2m_sysports_risk_t *out,
                      char *err)
{
    char range_text[RANGE_TEXT_MAX + 1];
    size_t len;
    p2m_port_range_t ephemeral;
    p2m_port_set_t *reserved = NULL;
    char *text = NULL;
    int rc = -1;
    char why[P2M_ERR_LEN];

    if (range_path == NULL)
        range_path = P2M_SYSPORTS_RANGE_PATH;
    if (reserved_path == NULL)
        reserved_path = P2M_SYSPORTS_RESERVED_PATH;
    if (read_bounded(range_path, range_text, sizeof(range_text), &len, err) != 0)
        goto Exit;
    if (p2m_sysports_parse_range(range_text, len, &ephemeral, why) != 0) {
        p2m_err(err, "%s: %s", range_path, why);
        goto Exit;
    }
    text = malloc(P2M_SYSPORTS_TEXT_MAX + 1);
    reserved = malloc(sizeof(*reserved));
    if (text == NULL || reserved == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    if (read_bounded(reserved_path, text, P2M_SYSPORTS_TEXT_MAX + 1, &len, err) != 0)
        goto Exit;
    if (p2m_sysports_parse_reserved(text, len, reserved, why) != 0) {
        p2m_err(err, "%s: %s", reserved_path, why);
        goto Exit;
    }
    p2m_sysports_assess(ports, ephemeral, reserved, out);
    rc = 0;
Exit:
    free(text);
    free(reserved);
    return rc;
}
