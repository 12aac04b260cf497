/* libFuzzer target for lib/proxyline.c: p2m_proxy_line_parse() on whatever a peer of the registrar's
 * PROXY listener may send first, as the registrar calls it each time more bytes have arrived, and
 * p2m_proxy_line_format() on every source address the reader accepts.
 *
 * Input: the bytes as they arrive. The whole input and each prefix are parsed from heap copies of
 * exactly their length, so ASan catches a read past len.
 *
 * Invariants: the answer is -1, 0 or a length of 1-107; 0 only for fewer than 107 bytes; a -1 err
 * is one printable line without '"'; *src and *src_len are written only for a length. A length n
 * is at most the input's, the line ends in its first CRLF there, starts "PROXY TCP4 " or
 * "PROXY TCP6 ", and the source names that family (sockaddr_in or sockaddr_in6, port 1-65535).
 * Prefixes get 0 until the first other answer, which is the whole input's and stays (for a length
 * n, every prefix shorter than n gets 0). Round trip: the source written by p2m_proxy_line_format()
 * with a fixed IPv4 and a fixed IPv6 destination is read back as the same source: the same
 * address and port, an IPv4 address and its IPv4-mapped IPv6 form counting as one (the writer
 * writes TCP4 for IPv4-mapped addresses when the destination is IPv4, and widens IPv4 to mapped
 * IPv6 when it is not), and the very same sockaddr whenever no mapping is involved. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/proxyline.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define UNTOUCHED 0x5a

static ssize_t parse_copy(const uint8_t *data, size_t len, struct sockaddr_storage *src, socklen_t *src_len, char *err)
{
    char *in = malloc(len == 0 ? 1 : len);
    if (in == NULL)
        abort();
    memcpy(in, data, len);
    memset(src, UNTOUCHED, sizeof(*src));
    *src_len = 0;
    ssize_t n = p2m_proxy_line_parse(in, len, src, src_len, err);
    free(in);
    return n;
}

/* The invariants of one answer on its own. */
static void check_one(const uint8_t *data, size_t len, ssize_t n, const struct sockaddr_storage *src, socklen_t src_len,
                      const char *err)
{
    FUZZ_CHECK(n >= -1 && n <= P2M_PROXY_LINE_MAX && n <= (ssize_t)len);
    if (n <= 0) {
        FUZZ_CHECK(src_len == 0 && ((const uint8_t *)src)[0] == UNTOUCHED);
        if (n == 0)
            FUZZ_CHECK(len < P2M_PROXY_LINE_MAX);
        if (n == -1) {
            fuzz_check_err_printable(err);
            FUZZ_CHECK(strchr(err, '"') == NULL);
        }
        return;
    }
    FUZZ_CHECK(n >= 2 && data[n - 2] == '\r' && data[n - 1] == '\n');
    FUZZ_CHECK(memchr(data, '\r', (size_t)n - 2) == NULL && memchr(data, '\n', (size_t)n - 2) == NULL);
    FUZZ_CHECK(n > 11 && (memcmp(data, "PROXY TCP4 ", 11) == 0 || memcmp(data, "PROXY TCP6 ", 11) == 0));
    if (data[9] == '4') {
        FUZZ_CHECK(src->ss_family == AF_INET && src_len == sizeof(struct sockaddr_in));
        FUZZ_CHECK(((const struct sockaddr_in *)src)->sin_port != 0);
    } else {
        FUZZ_CHECK(src->ss_family == AF_INET6 && src_len == sizeof(struct sockaddr_in6));
        FUZZ_CHECK(((const struct sockaddr_in6 *)src)->sin6_port != 0);
    }
}

/* An address as 16 bytes (IPv4 as IPv4-mapped IPv6) and a port. */
static void normal(const struct sockaddr_storage *sa, uint8_t a[16], uint16_t *port)
{
    memset(a, 0, 16);
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &s4->sin_addr, 4);
        *port = s4->sin_port;
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(a, &s6->sin6_addr, 16);
        *port = s6->sin6_port;
    }
}

static int is_mapped(const struct sockaddr_storage *sa)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return sa->ss_family == AF_INET6 && memcmp(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, mapped, 12) == 0;
}

/* Writes src with dst, reads it back: the same source. */
static void check_round_trip(const struct sockaddr_storage *src, socklen_t src_len, const struct sockaddr *dst)
{
    char out[P2M_PROXY_LINE_MAX + 1], err[P2M_ERR_LEN];
    int len = p2m_proxy_line_format((const struct sockaddr *)src, dst, out, sizeof(out));
    FUZZ_CHECK(len > 0 && len <= P2M_PROXY_LINE_MAX && strlen(out) == (size_t)len);
    struct sockaddr_storage got;
    socklen_t got_len;
    ssize_t n = parse_copy((const uint8_t *)out, (size_t)len, &got, &got_len, err);
    FUZZ_CHECK(n == len);
    check_one((const uint8_t *)out, (size_t)len, n, &got, got_len, err);

    uint8_t a[16], b[16];
    uint16_t ap, bp;
    normal(src, a, &ap);
    normal(&got, b, &bp);
    FUZZ_CHECK(memcmp(a, b, 16) == 0 && ap == bp);
    int dst_v4 = dst->sa_family == AF_INET;
    if (!is_mapped(src) && (src->ss_family == AF_INET6 || dst_v4)) /* no mapping either way */
        FUZZ_CHECK(got_len == src_len && memcmp(&got, src, src_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_storage src, psrc;
    socklen_t src_len, psrc_len;
    char err[P2M_ERR_LEN], perr[P2M_ERR_LEN];
    ssize_t n = parse_copy(data, size, &src, &src_len, err);
    check_one(data, size, n, &src, src_len, err);

    /* Prefixes: every one up to the bound (past it the answer no longer changes). */
    ssize_t first = 0;
    size_t last = size < P2M_PROXY_LINE_MAX + 1 ? size : P2M_PROXY_LINE_MAX + 1;
    for (size_t p = 0; p < last; p++) {
        ssize_t pn = parse_copy(data, p, &psrc, &psrc_len, perr);
        check_one(data, p, pn, &psrc, psrc_len, perr);
        if (n > 0)
            FUZZ_CHECK(pn == ((ssize_t)p < n ? 0 : n));
        else if (first != 0)
            FUZZ_CHECK(pn == first);
        else
            FUZZ_CHECK(pn == 0 || pn == n);
        if (pn != 0)
            first = pn;
        if (pn > 0)
            FUZZ_CHECK(psrc_len == src_len && memcmp(&psrc, &src, src_len) == 0);
    }
    if (n <= 0)
        return 0;

    struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons(443)};
    struct sockaddr_in6 d6 = {.sin6_family = AF_INET6, .sin6_port = htons(9443)};
    d4.sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1 */
    d6.sin6_addr.s6_addr[0] = 0x20;         /* 2001:db8::1 */
    d6.sin6_addr.s6_addr[1] = 0x01;
    d6.sin6_addr.s6_addr[2] = 0x0d;
    d6.sin6_addr.s6_addr[3] = 0xb8;
    d6.sin6_addr.s6_addr[15] = 1;
    check_round_trip(&src, src_len, (const struct sockaddr *)&d4);
    check_round_trip(&src, src_len, (const struct sockaddr *)&d6);
    return 0;
}
