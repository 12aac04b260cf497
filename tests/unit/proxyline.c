/* Unit tests for lib/proxyline.c against lib/include/p2m/proxyline.h: a table of PROXY protocol v1
 * lines, valid ones and hostile ones (case, spaces, tabs, line ends, ports, addresses of the wrong
 * family, zone ids, the 107-byte bound, NUL bytes, UNKNOWN, a ClientHello, the v2 signature), each
 * whole, at every prefix and followed by more bytes; then the writer: exact lines, IPv4-mapped and
 * mixed families, the bounds, and write -> read round trips, its IPv6 text checked against
 * inet_ntop.
 *
 * `unit_proxyline --write-corpus DIR` also writes chosen rows to DIR: that is how
 * tests/fuzz/corpus/proxyline/ was made. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/proxyline.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#define MORE 0
#define BAD (-1)
#define OK 1 /* the line's length: up to and including the first CRLF */

static const char *corpus_dir; /* --write-corpus */

/* Parses buf[0..len) from an exact heap copy, so that ASan sees any read past len. *src and
 * *src_len start filled with a pattern, to show what a refusal leaves there. */
static ssize_t parse(const char *buf, size_t len, struct sockaddr_storage *src, socklen_t *src_len, char *err)
{
    char *in = check_exact_copy(buf, len);
    memset(src, 0xa5, sizeof(*src));
    *src_len = 12345;
    err[0] = '\0';
    ssize_t n = p2m_proxy_line_parse(in, len, src, src_len, err);
    free(in);
    return n;
}

/* The address and port of sa as "ADDR PORT" (inet_ntop's text). */
static const char *sa_text(const struct sockaddr_storage *sa, socklen_t len)
{
    static char out[INET6_ADDRSTRLEN + 16];
    char a[INET6_ADDRSTRLEN];
    if (sa->ss_family == AF_INET && len == sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
        snprintf(out, sizeof(out), "%s %u", a, (unsigned)ntohs(s4->sin_port));
    } else if (sa->ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
        snprintf(out, sizeof(out), "%s %u", a, (unsigned)ntohs(s6->sin6_port));
    } else {
        snprintf(out, sizeof(out), "family %d, length %u", sa->ss_family, (unsigned)len);
    }
    return out;
}

/* The length of the line at the start of buf: up to and including its first CRLF. */
static size_t line_len(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (buf[i] == '\r' && buf[i + 1] == '\n')
            return i + 2;
    return 0;
}

/* Checks the answer for buf[0..len): want (OK: the line's length, with want_text "ADDR PORT" of the
 * source; BAD: an err that mentions want_text, printable, without '"' so that a log may quote it). */
static void check_answer(const char *buf, size_t len, int want, const char *want_text)
{
    struct sockaddr_storage src;
    socklen_t src_len;
    char err[P2M_ERR_LEN];
    ssize_t got = parse(buf, len, &src, &src_len, err);
    ssize_t want_n = want == OK ? (ssize_t)line_len(buf, len) : want;
    if (!CHECK_MSG(got == want_n, "expected %zd, got %zd (err %s)", want_n, got, check_str(err)))
        return;
    if (want == OK) {
        CHECK_EQ_STR(sa_text(&src, src_len), want_text);
        return;
    }
    CHECK_MSG(src_len == 12345 && ((unsigned char *)&src)[0] == 0xa5, "src or src_len written for %zd", got);
    if (want == MORE)
        return;
    CHECK_MSG(err[0] != '\0', "no err for -1");
    if (want_text != NULL)
        CHECK_MSG(strstr(err, want_text) != NULL, "err %s does not mention %s", check_str(err), check_str(want_text));
    for (const char *p = err; *p != '\0'; p++)
        if (!CHECK_MSG(*p >= 0x20 && *p < 0x7f && *p != '"', "err is not printable without quotes: %s", check_str(err)))
            break;
}

/* Every strict prefix of buf[0..len): 0 until the first other answer, which is the whole input's
 * and stays; for a valid line, 0 for every prefix that ends before its LF. */
static void check_prefixes(const char *buf, size_t len, int want)
{
    struct sockaddr_storage src;
    socklen_t src_len;
    char err[P2M_ERR_LEN];
    ssize_t want_n = want == OK ? (ssize_t)line_len(buf, len) : want, first = 0;
    size_t bad = 0;
    for (size_t p = 0; p < len; p++) {
        ssize_t got = parse(buf, p, &src, &src_len, err);
        int ok;
        if (want == OK)
            ok = got == ((ssize_t)p < want_n ? 0 : want_n);
        else if (first != 0)
            ok = got == first;
        else
            ok = got == 0 || got == want_n;
        if (ok && got != 0)
            first = got;
        if (!ok && bad++ < 3)
            CHECK_MSG(0, "prefix of %zu of %zu bytes: got %zd (err %s), expected %s%zd", p, len, got, check_str(err),
                      want == OK || first != 0 ? "" : "0 or ", want == OK ? ((ssize_t)p < want_n ? 0 : want_n) : want_n);
    }
    CHECK_MSG(bad == 0, "%zu bad prefixes of %zu", bad, len);
}

/* --- the reader -------------------------------------------------------------------------------- */

struct row {
    const char *what;
    const char *in;
    size_t len;
    int want;              /* OK, MORE or BAD */
    const char *want_text; /* OK: "ADDR PORT" of the source; BAD: what err mentions */
};

#define IN(s) s, sizeof(s) - 1
#define L4 "PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n"
#define L6 "PROXY TCP6 2001:db8::7 2001:db8::1 40002 443\r\n"
#define FFFF "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
#define HELLO "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
#define V2SIG "\r\n\r\n\x00\r\nQUIT\n"

static const struct row rows[] = {
    /* valid */
    {"tcp4", IN(L4), OK, "198.51.100.7 40000"},
    {"tcp6", IN(L6), OK, "2001:db8::7 40002"},
    {"tcp4 edges", IN("PROXY TCP4 255.255.255.255 0.0.0.0 65535 1\r\n"), OK, "255.255.255.255 65535"},
    {"tcp4 port 1", IN("PROXY TCP4 0.0.0.0 127.0.0.1 1 65535\r\n"), OK, "0.0.0.0 1"},
    {"tcp6 upper case hex", IN("PROXY TCP6 2001:DB8::7 ::1 1 65535\r\n"), OK, "2001:db8::7 1"},
    {"tcp6 leading zero groups", IN("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0001 :: 40000 443\r\n"), OK, "::1 40000"},
    {"tcp6 longest hex", IN("PROXY TCP6 " FFFF " " FFFF " 65535 65535\r\n"), OK, FFFF " 65535"},
    {"tcp6 mapped dotted tail", IN("PROXY TCP6 ::ffff:198.51.100.7 ::1 40000 443\r\n"), OK, "::ffff:198.51.100.7 40000"},
    {"107 bytes", IN("PROXY TCP6 " FFFF " ffff:ffff:ffff:ffff:ffff:ffff:100.100.10.1 65535 65535\r\n"), OK, FFFF " 65535"},
    {"tcp4 then a clienthello", IN(L4 HELLO), OK, "198.51.100.7 40000"},
    {"tcp4 then a second line", IN(L4 L6), OK, "198.51.100.7 40000"},
    {"tcp6 then 0xff", IN(L6 "\xff\x00"), OK, "2001:db8::7 40002"},

    /* a prefix */
    {"empty", IN(""), MORE, NULL},
    {"P", IN("P"), MORE, NULL},
    {"half a line", IN("PROXY TCP4 198.51.100.7"), MORE, NULL},
    {"no crlf yet", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443"), MORE, NULL},
    {"cr last", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r"), MORE, NULL},
    {"106 bytes, no crlf", IN("PROXY TCP6 " FFFF " ffff:ffff:ffff:ffff:ffff:ffff:100.100.10.1 65535 65535\r"), MORE, NULL},

    /* the signature */
    {"lower case", IN("proxy tcp4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "signature: byte 0 (0x70)"},
    {"mixed case", IN("Proxy TCP4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "signature: byte 1 (0x72)"},
    {"tab after PROXY", IN("PROXY\tTCP4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "signature: byte 5 (0x09)"},
    {"NUL after PROXY", IN("PROXY\0TCP4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "signature: byte 5 (0x00)"},
    {"NUL first", IN("\0PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "signature: byte 0 (0x00)"},
    {"clienthello", IN(HELLO), BAD, "signature: byte 0 (0x16)"},
    {"clienthello, 1 byte", IN("\x16"), BAD, "signature: byte 0 (0x16)"},
    {"v2 signature", IN(V2SIG "\x21\x11\x00\x0c\xc6\x33\x64\x07\xc0\x00\x02\x01\x9c\x40\x01\xbb"), BAD, "signature: byte 0 (0x0d)"},
    {"http request", IN("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), BAD, "signature: byte 0 (0x47)"},
    {"empty line", IN("\r\n"), BAD, "signature: byte 0 (0x0d)"},
    {"PROXY then 0x80", IN("PROXY\x80"), BAD, "signature: byte 5 (0x80)"},
    {"space first", IN(" PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "signature: byte 0 (0x20)"},

    /* the protocol */
    {"lower case protocol", IN("PROXY tcp4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "protocol: byte 6 (0x74)"},
    {"UNKNOWN", IN("PROXY UNKNOWN\r\n"), BAD, "protocol: byte 6 (0x55)"},
    {"UNKNOWN with addresses", IN("PROXY UNKNOWN 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "UNKNOWN is not accepted"},
    {"TCP5", IN("PROXY TCP5 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "protocol: byte 9 (0x35)"},
    {"TCP44", IN("PROXY TCP44 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "protocol: byte 10 (0x34)"},
    {"TCP4x (trailing garbage)", IN("PROXY TCP4x 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "protocol: byte 10"},
    {"TCP", IN("PROXY TCP 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "protocol: not TCP4 or TCP6"},
    {"UDP4", IN("PROXY UDP4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "protocol: byte 6 (0x55)"},
    {"protocol only", IN("PROXY TCP4\r\n"), BAD, "protocol: the line ends after it"},
    {"nothing after PROXY", IN("PROXY \r\n"), BAD, "protocol: empty"},

    /* spaces, tabs, line ends */
    {"two spaces after PROXY", IN("PROXY  TCP4 198.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "protocol: empty"},
    {"two spaces between addresses", IN("PROXY TCP4 198.51.100.7  192.0.2.1 40000 443\r\n"), BAD, "destination address: empty"},
    {"two spaces between ports", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000  443\r\n"), BAD, "destination port: empty"},
    {"tab between addresses", IN("PROXY TCP4 198.51.100.7\t192.0.2.1 40000 443\r\n"), BAD, "source address: byte 23 (0x09)"},
    {"tab before crlf", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\t\r\n"), BAD, "destination port: byte 43 (0x09)"},
    {"space before crlf", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443 \r\n"), BAD, "destination port: followed by a space"},
    {"seven fields", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443 1\r\n"), BAD, "more than 6 fields"},
    {"five fields", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000\r\n"), BAD, "source port: the line ends after it"},
    {"four fields", IN("PROXY TCP4 198.51.100.7 192.0.2.1\r\n"), BAD, "destination address: the line ends after it"},
    {"bare LF", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\n"), BAD, "LF at byte 43 without a CR"},
    {"bare LF early", IN("PROXY TCP4\n"), BAD, "LF at byte 10"},
    {"CR without LF", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\rX"), BAD, "CR at byte 43 followed by 0x58"},
    {"CR CR LF", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\r\n"), BAD, "followed by 0x0d"},
    {"CR NUL", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\0"), BAD, "followed by 0x00"},
    {"missing CRLF, clienthello follows", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443" HELLO), BAD,
     "destination port: byte 43 (0x16)"},
    {"LF CR", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\n\r"), BAD, "LF at byte 43"},

    /* ports */
    {"source port 0", IN("PROXY TCP4 198.51.100.7 192.0.2.1 0 443\r\n"), BAD, "source port: starts with 0"},
    {"destination port 0", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 0\r\n"), BAD, "destination port: starts with 0"},
    {"port 65536", IN("PROXY TCP4 198.51.100.7 192.0.2.1 65536 443\r\n"), BAD, "source port: over 65535"},
    {"port 99999", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 99999\r\n"), BAD, "destination port: over 65535"},
    {"port 655350", IN("PROXY TCP4 198.51.100.7 192.0.2.1 655350 443\r\n"), BAD, "source port: over 65535"},
    {"port 70000", IN("PROXY TCP4 198.51.100.7 192.0.2.1 7000 70000\r\n"), BAD, "destination port: over 65535"},
    {"leading zero", IN("PROXY TCP4 198.51.100.7 192.0.2.1 040000 443\r\n"), BAD, "source port: starts with 0"},
    {"leading zeros, 5 digits", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 00443\r\n"), BAD, "destination port: starts with 0"},
    {"plus sign", IN("PROXY TCP4 198.51.100.7 192.0.2.1 +40000 443\r\n"), BAD, "source port: byte 34 (0x2b)"},
    {"minus sign", IN("PROXY TCP4 198.51.100.7 192.0.2.1 -1 443\r\n"), BAD, "source port: byte 34 (0x2d)"},
    {"hex port", IN("PROXY TCP4 198.51.100.7 192.0.2.1 0x1bb 443\r\n"), BAD, "source port: starts with 0"},
    {"hex digits in a port", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 1bb\r\n"), BAD, "destination port: byte 41 (0x62)"},
    {"port with trailing garbage", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000x 443\r\n"), BAD, "source port: byte 39 (0x78)"},
    {"port with a NUL", IN("PROXY TCP4 198.51.100.7 192.0.2.1 400\0 443\r\n"), BAD, "source port: byte 37 (0x00)"},
    {"port with a high byte", IN("PROXY TCP4 198.51.100.7 192.0.2.1 40000 44\xb3\r\n"), BAD, "destination port: byte 42 (0xb3)"},
    {"port 1e3", IN("PROXY TCP4 198.51.100.7 192.0.2.1 1e3 443\r\n"), BAD, "source port: byte 35 (0x65)"},

    /* addresses */
    {"IPv6 in TCP4", IN("PROXY TCP4 2001:db8::7 192.0.2.1 40000 443\r\n"), BAD, "source address: byte 15 (0x3a)"},
    {"IPv6 destination in TCP4", IN("PROXY TCP4 198.51.100.7 ::1 40000 443\r\n"), BAD, "destination address: byte 24 (0x3a)"},
    {"IPv4 in TCP6", IN("PROXY TCP6 198.51.100.7 2001:db8::1 40000 443\r\n"), BAD, "source address: not an IPv6 address"},
    {"IPv4 destination in TCP6", IN("PROXY TCP6 2001:db8::7 192.0.2.1 40000 443\r\n"), BAD, "destination address: not an IPv6"},
    {"zone id", IN("PROXY TCP6 fe80::1%eth0 fe80::2 40000 443\r\n"), BAD, "source address: byte 18 (0x25)"},
    {"zone id, numeric", IN("PROXY TCP6 fe80::1 fe80::2%2 40000 443\r\n"), BAD, "destination address: byte 26 (0x25)"},
    {"IPv4 leading zero", IN("PROXY TCP4 198.051.100.7 192.0.2.1 40000 443\r\n"), BAD, "source address: not an IPv4 address"},
    {"IPv4 octal-looking zero", IN("PROXY TCP4 198.51.100.7 192.0.2.01 40000 443\r\n"), BAD, "destination address: not an IPv4"},
    {"IPv4 octet 256", IN("PROXY TCP4 198.51.100.256 192.0.2.1 40000 443\r\n"), BAD, "source address: not an IPv4 address"},
    {"IPv4 three parts", IN("PROXY TCP4 198.51.100 192.0.2.1 40000 443\r\n"), BAD, "source address: not an IPv4 address"},
    {"IPv4 five parts", IN("PROXY TCP4 198.51.100.7.1 192.0.2.1 40000 443\r\n"), BAD, "source address: not an IPv4 address"},
    {"IPv4 trailing dot", IN("PROXY TCP4 198.51.100.7. 192.0.2.1 40000 443\r\n"), BAD, "source address: not an IPv4 address"},
    {"IPv4 16 bytes", IN("PROXY TCP4 255.255.255.2555 192.0.2.1 40000 443\r\n"), BAD, "source address: longer than 15"},
    {"IPv4 with trailing garbage", IN("PROXY TCP4 198.51.100.7x 192.0.2.1 40000 443\r\n"), BAD, "source address: byte 23 (0x78)"},
    {"IPv4 name", IN("PROXY TCP4 not.an.ip 127.0.0.1 40000 443\r\n"), BAD, "source address: byte 11 (0x6e)"},
    {"IPv4 in hex", IN("PROXY TCP4 0xc6.51.100.7 192.0.2.1 40000 443\r\n"), BAD, "source address: byte 12 (0x78)"},
    {"IPv4 with a NUL", IN("PROXY TCP4 198.51\0.100.7 192.0.2.1 40000 443\r\n"), BAD, "source address: byte 17 (0x00)"},
    {"IPv6 of 46 bytes", IN("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555 ::1 40000 443\r\n"), BAD,
     "source address: longer than 45"},
    {"IPv6 triple colon", IN("PROXY TCP6 :::1 ::1 40000 443\r\n"), BAD, "source address: not an IPv6 address"},
    {"IPv6 two double colons", IN("PROXY TCP6 1::2::3 ::1 40000 443\r\n"), BAD, "source address: not an IPv6 address"},
    {"IPv6 nine groups", IN("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 40000 443\r\n"), BAD, "source address: not an IPv6 address"},
    {"IPv6 five-digit group", IN("PROXY TCP6 00001::1 ::1 40000 443\r\n"), BAD, "source address: not an IPv6 address"},
    {"IPv6 in brackets", IN("PROXY TCP6 [2001:db8::7] ::1 40000 443\r\n"), BAD, "source address: byte 11 (0x5b)"},
    {"IPv6 with g", IN("PROXY TCP6 2001:db8::g ::1 40000 443\r\n"), BAD, "source address: byte 21 (0x67)"},
    {"IPv6 mapped, leading zero", IN("PROXY TCP6 ::ffff:198.051.100.7 ::1 40000 443\r\n"), BAD, "not an IPv6 address"},

    /* the bound */
    {"108 bytes", IN("PROXY TCP6 " FFFF " ffff:ffff:ffff:ffff:ffff:ffff:100.100.100.1 65535 65535\r\n"), BAD,
     "no CRLF within the first 107 bytes"},
    {"107 bytes, CR last", IN("PROXY TCP6 " FFFF " ffff:ffff:ffff:ffff:ffff:ffff:100.100.100.1 65535 65535\r"), BAD,
     "no CRLF within the first 107 bytes"},
    {"e2e's over 107",
     IN("PROXY TCP4 198.51.100.7 127.0.0.1 40000 443"
        "0000000000"
        "\r\n"),
     BAD, "destination port: over 65535"},
};

/* Rows also written as fuzz seeds, named for the row (lower-cased, other bytes as '_'). */
static const char *const seed_rows[] = {
    "tcp4",
    "tcp6",
    "tcp4 edges",
    "tcp6 upper case hex",
    "tcp6 leading zero groups",
    "tcp6 longest hex",
    "tcp6 mapped dotted tail",
    "107 bytes",
    "tcp4 then a clienthello",
    "tcp4 then a second line",
    "half a line",
    "UNKNOWN with addresses",
    "v2 signature",
    "clienthello",
    "zone id",
    "108 bytes",
    "CR without LF",
    "leading zero",
    "port 65536",
    "IPv4 in TCP6",
};

static void die(const char *what)
{
    fprintf(stderr, "unit_proxyline: %s failed\n", what);
    abort();
}

static void write_seed(const char *what, const char *buf, size_t len)
{
    if (corpus_dir == NULL)
        return;
    char path[512];
    size_t n = (size_t)snprintf(path, sizeof(path), "%s/", corpus_dir);
    for (const char *p = what; *p != '\0' && n + 1 < sizeof(path); p++)
        path[n++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '_';
    path[n] = '\0';
    FILE *fp = fopen(path, "wb");
    if (fp == NULL || fwrite(buf, 1, len, fp) != len || fclose(fp) != 0)
        die("writing the corpus");
}

static void test_rows(void)
{
    static char more[1024];
    size_t nbad = 0;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        nbad += r->want == BAD;
        for (size_t k = 0; k < sizeof(seed_rows) / sizeof(seed_rows[0]); k++)
            if (strcmp(r->what, seed_rows[k]) == 0)
                write_seed(r->what, r->in, r->len);
        CHECK_CTX("row %zu (%s): %s", i, r->what, check_bytes(r->in, r->len));
        check_answer(r->in, r->len, r->want, r->want_text);
        check_prefixes(r->in, r->len, r->want);
        if (r->want == MORE)
            continue;
        /* What follows a line, or a refused prefix, does not change the answer. */
        memcpy(more, r->in, r->len);
        memset(more + r->len, 'P', sizeof(more) - r->len);
        CHECK_CTX("row %zu (%s), followed by %zu bytes", i, r->what, sizeof(more) - r->len);
        check_answer(more, sizeof(more), r->want, r->want_text);
    }
    CHECK_CTX(NULL);
    CHECK_MSG(nbad >= 40, "only %zu hostile rows", nbad);
    check_note("%zu rows, %zu of them refused", sizeof(rows) / sizeof(rows[0]), nbad);
}

/* A line of 107 bytes and more with no CR at all: refused at the bound, waited for before it. */
static void test_bound(void)
{
    char buf[200];
    memcpy(buf, "PROXY TCP6 ", 11);
    memset(buf + 11, ':', sizeof(buf) - 11); /* a long run of colons stays an IPv6-looking prefix up to 45 */
    CHECK_CTX("colons");
    check_answer(buf, 11 + 45, MORE, NULL);
    check_answer(buf, 11 + 46, BAD, "longer than 45");

    static const char l6[] = "PROXY TCP6 " FFFF " ffff:ffff:ffff:ffff:ffff:ffff:100.100.10.1 65535 65535\r\n";
    CHECK_CTX("107-byte line, cut");
    CHECK_EQ_INT(sizeof(l6) - 1, P2M_PROXY_LINE_MAX);
    check_answer(l6, P2M_PROXY_LINE_MAX - 1, MORE, NULL);
    check_answer(l6, P2M_PROXY_LINE_MAX, OK, FFFF " 65535");
    CHECK_CTX(NULL);
}

static void test_misc(void)
{
    struct sockaddr_storage src;
    socklen_t src_len = 7;
    CHECK_CTX("NULL buf, len 0; NULL err");
    CHECK_EQ_INT(p2m_proxy_line_parse(NULL, 0, &src, &src_len, NULL), 0);
    CHECK_EQ_INT(src_len, 7);
    CHECK_EQ_INT(p2m_proxy_line_parse("GET", 3, &src, &src_len, NULL), -1);
    CHECK_EQ_INT(p2m_proxy_line_parse(L4, sizeof(L4) - 1, &src, &src_len, NULL), (long long)sizeof(L4) - 1);
    CHECK_CTX(NULL);
}

/* --- the writer ------------------------------------------------------------------------------- */

static struct sockaddr_storage sa_make(const char *addr, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
    } else {
        die("sa_make: not an address");
    }
    return ss;
}

struct fmt_row {
    const char *src, *dst;
    unsigned sport, dport;
    const char *want;      /* the line, without CRLF; NULL: -1 */
    const char *want_read; /* what the reader makes of it: "ADDR PORT" */
};

static const struct fmt_row fmt_rows[] = {
    {"198.51.100.7", "192.0.2.1", 40000, 443, "PROXY TCP4 198.51.100.7 192.0.2.1 40000 443", "198.51.100.7 40000"},
    {"2001:db8::7", "2001:db8::1", 40002, 443, "PROXY TCP6 2001:db8::7 2001:db8::1 40002 443", "2001:db8::7 40002"},
    /* IPv4-mapped: a dual-stack listener's IPv4 consumer, on either side */
    {"::ffff:198.51.100.7", "::ffff:192.0.2.1", 40000, 9443, "PROXY TCP4 198.51.100.7 192.0.2.1 40000 9443", "198.51.100.7 40000"},
    {"::ffff:198.51.100.7", "192.0.2.1", 1, 65535, "PROXY TCP4 198.51.100.7 192.0.2.1 1 65535", "198.51.100.7 1"},
    {"198.51.100.7", "::ffff:192.0.2.1", 65535, 1, "PROXY TCP4 198.51.100.7 192.0.2.1 65535 1", "198.51.100.7 65535"},
    {"::ffff:0.0.0.0", "::ffff:255.255.255.255", 2, 3, "PROXY TCP4 0.0.0.0 255.255.255.255 2 3", "0.0.0.0 2"},
    /* mixed families: TCP6, the IPv4 side as IPv4-mapped IPv6 in hex groups */
    {"198.51.100.7", "2001:db8::1", 40000, 443, "PROXY TCP6 ::ffff:c633:6407 2001:db8::1 40000 443", "::ffff:198.51.100.7 40000"},
    {"2001:db8::7", "192.0.2.1", 40000, 443, "PROXY TCP6 2001:db8::7 ::ffff:c000:201 40000 443", "2001:db8::7 40000"},
    {"::ffff:198.51.100.7", "::1", 40000, 443, "PROXY TCP6 ::ffff:c633:6407 ::1 40000 443", "::ffff:198.51.100.7 40000"},
    /* IPv6 text: RFC 5952, hex groups only */
    {"::", "::1", 5, 6, "PROXY TCP6 :: ::1 5 6", ":: 5"},
    {"1::", "1:0:0:1:0:0:0:1", 5, 6, "PROXY TCP6 1:: 1:0:0:1::1 5 6", "1:: 5"},
    {"1:0:0:1:1:0:0:1", "1:0:1:1:1:1:1:1", 5, 6, "PROXY TCP6 1::1:1:0:0:1 1:0:1:1:1:1:1:1 5 6", "1::1:1:0:0:1 5"},
    {"::1.2.3.4", "FFFF::ABCD", 5, 6, "PROXY TCP6 ::102:304 ffff::abcd 5 6", "::1.2.3.4 5"},
    {"0:0:1::", "1:2:3:4:5:6:7:0", 5, 6, "PROXY TCP6 0:0:1:: 1:2:3:4:5:6:7:0 5 6", "0:0:1:: 5"},
    {FFFF, FFFF, 65535, 65535, "PROXY TCP6 " FFFF " " FFFF " 65535 65535", FFFF " 65535"},
    /* refused */
    {"198.51.100.7", "192.0.2.1", 0, 443, NULL, NULL},
    {"198.51.100.7", "192.0.2.1", 40000, 0, NULL, NULL},
    {"2001:db8::7", "2001:db8::1", 0, 0, NULL, NULL},
};

/* Writes a line with cap bytes of room, checks it against want, and reads it back. */
static void check_format(const struct sockaddr *src, const struct sockaddr *dst, size_t cap, const char *want,
                         const char *want_read)
{
    char out[P2M_PROXY_LINE_MAX + 1 + 16], line[P2M_PROXY_LINE_MAX + 3], err[P2M_ERR_LEN];
    memset(out, 'x', sizeof(out));
    int n = p2m_proxy_line_format(src, dst, out, cap);
    if (want == NULL) {
        CHECK_EQ_INT(n, -1);
        if (cap > 0)
            CHECK_EQ_STR(out, "");
        return;
    }
    snprintf(line, sizeof(line), "%s\r\n", want);
    if (!CHECK_EQ_INT(n, (long long)strlen(line)))
        return;
    CHECK_EQ_STR(out, line);
    struct sockaddr_storage got;
    socklen_t got_len;
    ssize_t r = parse(out, (size_t)n, &got, &got_len, err);
    if (CHECK_MSG(r == n, "read back: expected %d, got %zd (err %s)", n, r, check_str(err)))
        CHECK_EQ_STR(sa_text(&got, got_len), want_read);
}

static void test_format(void)
{
    for (size_t i = 0; i < sizeof(fmt_rows) / sizeof(fmt_rows[0]); i++) {
        const struct fmt_row *f = &fmt_rows[i];
        struct sockaddr_storage s = sa_make(f->src, f->sport), d = sa_make(f->dst, f->dport);
        CHECK_CTX("format row %zu: %s %u -> %s %u", i, f->src, f->sport, f->dst, f->dport);
        check_format((struct sockaddr *)&s, (struct sockaddr *)&d, P2M_PROXY_LINE_MAX + 1, f->want, f->want_read);
        if (f->want == NULL)
            continue;
        size_t len = strlen(f->want) + 2;
        CHECK_CTX("format row %zu: cap %zu, just enough", i, len + 1);
        check_format((struct sockaddr *)&s, (struct sockaddr *)&d, len + 1, f->want, f->want_read);
        CHECK_CTX("format row %zu: cap %zu, one short", i, len);
        check_format((struct sockaddr *)&s, (struct sockaddr *)&d, len, NULL, NULL);
    }

    struct sockaddr_storage s = sa_make("198.51.100.7", 40000), d = sa_make("192.0.2.1", 443);
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/tmp/x"};
    char out[8] = "x";
    CHECK_CTX("format: other families, NULL, cap 0");
    CHECK_EQ_INT(p2m_proxy_line_format((struct sockaddr *)&un, (struct sockaddr *)&d, out, sizeof(out)), -1);
    CHECK_EQ_INT(p2m_proxy_line_format((struct sockaddr *)&s, (struct sockaddr *)&un, out, sizeof(out)), -1);
    CHECK_EQ_INT(p2m_proxy_line_format(NULL, (struct sockaddr *)&d, out, sizeof(out)), -1);
    CHECK_EQ_INT(p2m_proxy_line_format((struct sockaddr *)&s, NULL, out, sizeof(out)), -1);
    CHECK_EQ_INT(p2m_proxy_line_format((struct sockaddr *)&s, (struct sockaddr *)&d, NULL, 0), -1);
    CHECK_CTX(NULL);
}

/* Round trips over many IPv6 addresses with runs of zero groups in every place: the writer's text
 * is what inet_ntop writes wherever inet_ntop writes hex groups only, and the reader gets the
 * address back. IPv4 addresses and IPv4-mapped ones come back as IPv4. */
static void test_round_trip(void)
{
    uint32_t x = 12345;
    unsigned n = 0, compared = 0;
    char out[P2M_PROXY_LINE_MAX + 1], err[P2M_ERR_LEN], want[INET6_ADDRSTRLEN];
    for (unsigned mask = 0; mask < 256; mask++) {
        for (int k = 0; k < 8; k++, n++) {
            struct sockaddr_in6 s6 = {.sin6_family = AF_INET6}, d6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
            uint8_t *a = s6.sin6_addr.s6_addr;
            for (int g = 0; g < 8; g++) {
                x = x * 1103515245u + 12345u;
                unsigned v = (mask >> g & 1) ? 0 : (x >> 8) & (k < 4 ? 0xffffu : 0xfu);
                a[2 * g] = (uint8_t)(v >> 8);
                a[2 * g + 1] = (uint8_t)v;
            }
            s6.sin6_port = htons((uint16_t)(1 + (x >> 4) % 65535));
            d6.sin6_addr.s6_addr[15] = 1;
            static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            int is_mapped = memcmp(a, mapped, 12) == 0;
            int len = p2m_proxy_line_format((struct sockaddr *)&s6, (struct sockaddr *)&d6, out, sizeof(out));
            CHECK_CTX("round trip %u", n);
            if (!CHECK_MSG(len > 0, "format failed"))
                continue;
            inet_ntop(AF_INET6, a, want, sizeof(want));
            if (!is_mapped && strchr(want, '.') == NULL) {
                compared++;
                char prefix[INET6_ADDRSTRLEN + 16];
                snprintf(prefix, sizeof(prefix), "PROXY TCP6 %s ", want);
                CHECK_MSG(strncmp(out, prefix, strlen(prefix)) == 0, "%s does not start %s", check_str(out), check_str(prefix));
            }
            struct sockaddr_storage got;
            socklen_t got_len;
            ssize_t r = parse(out, (size_t)len, &got, &got_len, err);
            if (!CHECK_MSG(r == len, "read back %s: got %zd (err %s)", check_str(out), r, check_str(err)))
                continue;
            CHECK_EQ_INT(got.ss_family, AF_INET6);
            CHECK(memcmp(((struct sockaddr_in6 *)&got)->sin6_addr.s6_addr, a, 16) == 0);
            CHECK_EQ_INT(((struct sockaddr_in6 *)&got)->sin6_port, s6.sin6_port);
        }
    }
    for (unsigned i = 0; i < 2000; i++, n++) {
        x = x * 1103515245u + 12345u;
        struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(1 + x % 65535))};
        struct sockaddr_in6 m6 = {.sin6_family = AF_INET6, .sin6_port = s4.sin_port};
        x = x * 1103515245u + 12345u;
        s4.sin_addr.s_addr = i < 4 ? (i == 0 ? 0 : i == 1 ? 0xffffffffu : x & 0xff00ff00u) : x;
        m6.sin6_addr.s6_addr[10] = m6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(m6.sin6_addr.s6_addr + 12, &s4.sin_addr, 4);
        struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons(443), .sin_addr.s_addr = htonl(0x7f000001)};
        const struct sockaddr *srcs[2] = {(struct sockaddr *)&s4, (struct sockaddr *)&m6};
        for (int k = 0; k < 2; k++) {
            CHECK_CTX("round trip %u, IPv4%s", n, k ? "-mapped" : "");
            int len = p2m_proxy_line_format(srcs[k], (struct sockaddr *)&d4, out, sizeof(out));
            if (!CHECK_MSG(len > 0 && strncmp(out, "PROXY TCP4 ", 11) == 0, "format: %d %s", len, check_str(out)))
                continue;
            struct sockaddr_storage got;
            socklen_t got_len;
            ssize_t r = parse(out, (size_t)len, &got, &got_len, err);
            if (!CHECK_MSG(r == len, "read back %s: got %zd (err %s)", check_str(out), r, check_str(err)))
                continue;
            CHECK_EQ_INT(got.ss_family, AF_INET);
            CHECK_EQ_INT(got_len, sizeof(struct sockaddr_in));
            CHECK_EQ_INT(((struct sockaddr_in *)&got)->sin_addr.s_addr, s4.sin_addr.s_addr);
            CHECK_EQ_INT(((struct sockaddr_in *)&got)->sin_port, s4.sin_port);
        }
    }
    CHECK_CTX(NULL);
    check_note("%u round trips, %u IPv6 texts compared with inet_ntop", n, compared);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        corpus_dir = argv[2];
    else if (argc != 1) {
        fprintf(stderr, "usage: unit_proxyline [--write-corpus DIR]\n");
        return 2;
    }
    test_rows();
    test_bound();
    test_misc();
    test_format();
    test_round_trip();
    return check_done("proxyline");
}
