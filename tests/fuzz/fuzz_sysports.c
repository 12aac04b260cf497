/* libFuzzer target for lib/sysports.c: the two /proc texts and the assessment of a relay.ports
 * range against them.
 *
 * Input: 4 bytes relay.ports (LO, HI, big-endian, made valid), 1 byte N, then N bytes of
 * ip_local_port_range text and the rest as ip_local_reserved_ports text (N larger than what is
 * left gives the range text all of it and the reserved text none). Both texts are exact heap
 * copies, so ASan catches a parser that reads past len.
 *
 * Invariants: a refusal has a printable one-line reason; an accepted range is 1 <= LO <= HI and
 * reparses from "LO\tHI\n"; an accepted set holds no port 0 and its canonical text reparses to the
 * same set; the assessment agrees with a brute-force count, and its fix, when given, is exactly the
 * reserved set plus the overlap. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/sysports.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *copy(const uint8_t *data, size_t size)
{
    char *p = malloc(size == 0 ? 1 : size);
    if (p != NULL)
        memcpy(p, data, size);
    return p;
}

static void check_range(const char *s, size_t len, p2m_port_range_t *eph, int *ok)
{
    char err[P2M_ERR_LEN] = "", back[32];
    p2m_port_range_t again;
    int rc = p2m_sysports_parse_range(s, len, eph, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    *ok = rc == 0;
    if (rc != 0) {
        fuzz_check_err_printable(err);
        return;
    }
    FUZZ_CHECK(len >= 3 && len <= 12 && memchr(s, '\0', len) == NULL);
    FUZZ_CHECK(eph->lo >= 1 && eph->lo <= eph->hi);
    int n = snprintf(back, sizeof(back), "%u\t%u\n", (unsigned)eph->lo, (unsigned)eph->hi);
    FUZZ_CHECK(p2m_sysports_parse_range(back, (size_t)n, &again, err) == 0);
    FUZZ_CHECK(again.lo == eph->lo && again.hi == eph->hi);
}

static void check_reserved(const char *s, size_t len, p2m_port_set_t *set, int *ok)
{
    static char text[4 * P2M_SYSPORTS_TEXT_MAX];
    static p2m_port_set_t again;
    char err[P2M_ERR_LEN] = "";
    int rc = p2m_sysports_parse_reserved(s, len, set, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    *ok = rc == 0;
    if (rc != 0) {
        fuzz_check_err_printable(err);
        return;
    }
    FUZZ_CHECK(len <= P2M_SYSPORTS_TEXT_MAX && memchr(s, '\0', len) == NULL);
    FUZZ_CHECK(!p2m_sysports_set_has(set, 0));
    int n = p2m_sysports_set_format(set, text, sizeof(text));
    FUZZ_CHECK(n >= 0 && (size_t)n <= len); /* merged ranges are never longer than the list they came from */
    FUZZ_CHECK(p2m_sysports_parse_reserved(text, (size_t)n, &again, err) == 0);
    FUZZ_CHECK(memcmp(&again, set, sizeof(again)) == 0);
}

static void check_assess(p2m_port_range_t ours, p2m_port_range_t eph, const p2m_port_set_t *reserved)
{
    static p2m_port_set_t want, got;
    p2m_sysports_risk_t r;
    char err[P2M_ERR_LEN] = "", line[2 * P2M_SYSPORTS_FIX_MAX];
    unsigned overlap = 0, at_risk = 0, first = 0, last = 0;

    p2m_sysports_assess(ours, eph, reserved, &r);
    for (unsigned p = ours.lo; p <= ours.hi; p++) {
        if (p < eph.lo || p > eph.hi)
            continue;
        overlap++;
        if (reserved != NULL && p2m_sysports_set_has(reserved, (uint16_t)p))
            continue;
        if (at_risk++ == 0)
            first = p;
        last = p;
    }
    FUZZ_CHECK(r.ports.lo == ours.lo && r.ports.hi == ours.hi && r.ephemeral.lo == eph.lo && r.ephemeral.hi == eph.hi);
    FUZZ_CHECK(r.overlap_n == overlap && r.at_risk == at_risk);
    FUZZ_CHECK(FUZZ_TERMINATED(r.fix));
    if (overlap > 0)
        FUZZ_CHECK(r.overlap.lo >= ours.lo && r.overlap.lo >= eph.lo && r.overlap.hi <= ours.hi && r.overlap.hi <= eph.hi &&
                   (unsigned)r.overlap.hi - r.overlap.lo + 1 == overlap);
    if (at_risk == 0) {
        FUZZ_CHECK(r.fix[0] == '\0');
        return;
    }
    FUZZ_CHECK(r.first == first && r.last == last);
    int n = p2m_sysports_format(&r, line, sizeof(line));
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(line) && strchr(line, '\n') == NULL);
    if (r.fix[0] == '\0')
        return; /* did not fit: the line says which ports to add instead */
    if (reserved != NULL)
        want = *reserved;
    else
        memset(&want, 0, sizeof(want));
    for (unsigned p = r.overlap.lo; p <= r.overlap.hi; p++)
        want.bits[p / 64] |= (uint64_t)1 << (p % 64);
    FUZZ_CHECK(p2m_sysports_parse_reserved(r.fix, strlen(r.fix), &got, err) == 0);
    FUZZ_CHECK(memcmp(&got, &want, sizeof(got)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static p2m_port_set_t reserved;
    if (size < 5)
        return 0;
    p2m_port_range_t ours = {(uint16_t)(data[0] << 8 | data[1]), (uint16_t)(data[2] << 8 | data[3])};
    if (ours.lo == 0)
        ours.lo = 1;
    if (ours.hi < ours.lo)
        ours.hi = ours.lo;
    size_t n = data[4], rest = size - 5;
    if (n > rest)
        n = rest;

    char *range = copy(data + 5, n), *list = copy(data + 5 + n, rest - n);
    if (range == NULL || list == NULL)
        goto Exit;
    p2m_port_range_t eph;
    int range_ok, reserved_ok;
    check_range(range, n, &eph, &range_ok);
    check_reserved(list, rest - n, &reserved, &reserved_ok);
    if (range_ok)
        check_assess(ours, eph, reserved_ok ? &reserved : NULL);
Exit:
    free(range);
    free(list);
    return 0;
}
