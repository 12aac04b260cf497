/* Unit tests for lib/sysports.c against lib/include/p2m/sysports.h: the texts of
 * ip_local_port_range and ip_local_reserved_ports with hostile rows at every limit, the
 * assessment of a relay.ports range against them, and the bounded read of the two files. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/sysports.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A literal and its length, NUL bytes inside included. */
#define TXT(s) s, sizeof(s) - 1

struct range_row {
    const char *in;
    size_t len;
    int rc;
    unsigned lo, hi;  /* when rc is 0 */
    const char *want; /* what err mentions when rc is -1 */
};

static void test_parse_range(void)
{
    char overlong[100];
    memset(overlong, '1', sizeof(overlong));

    const struct range_row rows[] = {
        {TXT("32768\t60999\n"), 0, 32768, 60999, NULL},
        {TXT("32768\t60999"), 0, 32768, 60999, NULL},
        {TXT("32768 60999\n"), 0, 32768, 60999, NULL},
        {TXT("1\t65535\n"), 0, 1, 65535, NULL},
        {TXT("65535\t65535\n"), 0, 65535, 65535, NULL},
        {TXT("1024\t1024\n"), 0, 1024, 1024, NULL},
        {TXT("00001\t00002\n"), 0, 1, 2, NULL},
        {TXT(""), -1, 0, 0, "empty"},
        {TXT("\n"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\n"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("\t1"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("60999\t32768\n"), -1, 0, 0, "60999 > 32768"},
        {TXT("2\t1"), -1, 0, 0, "2 > 1"},
        {TXT("0\t100\n"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t0\n"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("0\t0\n"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t65536\n"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("65536\t65536"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("000001\t5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("99999999999\t1"), -1, 0, 0, "longer than 12 bytes"},
        {TXT("-1\t5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("+1\t5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t-5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1-5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1,5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT(" 1\t5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t5 "), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1 \t5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t\t5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1  5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t5x"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t5\r\n"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t5\n\n"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t5\t7"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("0x10\t20"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\0\t5"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("1\t5\0"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("\0"), -1, 0, 0, "expected LO<TAB>HI"},
        {TXT("32768\t60999\n\n"), -1, 0, 0, "longer than 12 bytes"},
        {overlong, sizeof(overlong), -1, 0, 0, "longer than 12 bytes"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("range row %zu: %s", i, check_bytes(rows[i].in, rows[i].len));
        char *in = check_exact_copy(rows[i].in, rows[i].len);
        char err[P2M_ERR_LEN] = "";
        p2m_port_range_t r = {7, 7};
        int rc = p2m_sysports_parse_range(in, rows[i].len, &r, err);
        free(in);
        if (rows[i].rc == 0) {
            if (CHECK_RC(rc, 0, err)) {
                CHECK_EQ_INT(r.lo, rows[i].lo);
                CHECK_EQ_INT(r.hi, rows[i].hi);
            }
        } else {
            check_refusal(rc, err, rows[i].want);
            CHECK_MSG(r.lo == 7 && r.hi == 7, "out changed on a refusal: %u-%u", (unsigned)r.lo, (unsigned)r.hi);
        }
    }
    CHECK_CTX("range NULL");
    char err[P2M_ERR_LEN] = "";
    p2m_port_range_t r;
    check_refusal(p2m_sysports_parse_range(NULL, 0, &r, err), err, "empty");
    CHECK_CTX(NULL);
}

struct reserved_row {
    const char *in;
    size_t len;
    int rc;
    const char *want; /* rc 0: the set as p2m_sysports_set_format() writes it; rc -1: what err mentions */
};

/* The set as text; "<too long>" when it does not fit the buffer. */
static const char *set_text(const p2m_port_set_t *set)
{
    static char buf[4096];
    return p2m_sysports_set_format(set, buf, sizeof(buf)) < 0 ? "<too long>" : buf;
}

static void test_parse_reserved(void)
{
    const struct reserved_row rows[] = {
        {TXT(""), 0, ""},
        {TXT("\n"), 0, ""},
        {TXT("8080\n"), 0, "8080"},
        {TXT("8080"), 0, "8080"},
        {TXT("8080,20000-29999\n"), 0, "8080,20000-29999"},
        {TXT("1\n"), 0, "1"},
        {TXT("65535\n"), 0, "65535"},
        {TXT("1-65535\n"), 0, "1-65535"},
        {TXT("5-5"), 0, "5"},
        {TXT("00080"), 0, "80"},
        {TXT("63-64,127-128,191,192"), 0, "63-64,127-128,191-192"},
        {TXT("100-200,150-250\n"), 0, "100-250"},
        {TXT("100-199,200-300"), 0, "100-300"},
        {TXT("150-160,100-300"), 0, "100-300"},
        {TXT("300,100-200"), 0, "100-200,300"},
        {TXT("7,7,7"), 0, "7"},
        {TXT("1-65535,1-65535"), 0, "1-65535"},
        {TXT("0"), -1, "byte 0: expected a port 1-65535"},
        {TXT("0-5"), -1, "byte 0: expected a port 1-65535"},
        {TXT("5-0"), -1, "byte 2: expected a port 1-65535"},
        {TXT("65536"), -1, "byte 0: expected a port 1-65535"},
        {TXT("1-65536"), -1, "byte 2: expected a port 1-65535"},
        {TXT("123456"), -1, "byte 0: expected a port 1-65535"},
        {TXT("5-3"), -1, "range 5-3 is reversed"},
        {TXT("8080,300-200\n"), -1, "byte 9: range 300-200 is reversed"},
        {TXT(","), -1, "byte 0: expected a port"},
        {TXT("1,"), -1, "byte 2: expected a port"},
        {TXT("1,\n"), -1, "byte 2: expected a port"},
        {TXT(",1"), -1, "byte 0: expected a port"},
        {TXT("1,,2"), -1, "byte 2: expected a port"},
        {TXT("1-"), -1, "byte 2: expected a port"},
        {TXT("-1"), -1, "byte 0: expected a port"},
        {TXT("1--2"), -1, "byte 2: expected a port"},
        {TXT("1-2-3"), -1, "byte 3: expected ',' or '-'"},
        {TXT(" 1"), -1, "byte 0: expected a port"},
        {TXT("1 "), -1, "byte 1: expected ',' or '-'"},
        {TXT("1, 2"), -1, "byte 2: expected a port"},
        {TXT("1 ,2"), -1, "byte 1: expected ',' or '-'"},
        {TXT("1\t2"), -1, "byte 1: expected ',' or '-'"},
        {TXT("1;2"), -1, "byte 1: expected ',' or '-'"},
        {TXT("1\n\n"), -1, "byte 1: expected ',' or '-'"},
        {TXT("\n\n"), -1, "byte 0: expected a port"},
        {TXT("1\r\n"), -1, "byte 1: expected ',' or '-'"},
        {TXT("1\n2"), -1, "byte 1: expected ',' or '-'"},
        {TXT("a"), -1, "byte 0: expected a port"},
        {TXT("1a"), -1, "byte 1: expected ',' or '-'"},
        {TXT("+1"), -1, "byte 0: expected a port"},
        {TXT("0x10"), -1, "byte 0: expected a port"},
        {TXT("1\0002"), -1, "byte 1: expected ',' or '-'"},
        {TXT("\0"), -1, "byte 0: expected a port"},
        {TXT("8080\0"), -1, "byte 4: expected ',' or '-'"},
        {TXT("\xff"), -1, "byte 0: expected a port"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("reserved row %zu: %s", i, check_bytes(rows[i].in, rows[i].len));
        char *in = check_exact_copy(rows[i].in, rows[i].len);
        char err[P2M_ERR_LEN] = "";
        p2m_port_set_t set;
        int rc = p2m_sysports_parse_reserved(in, rows[i].len, &set, err);
        free(in);
        if (rows[i].rc == 0) {
            if (CHECK_RC(rc, 0, err))
                CHECK_EQ_STR(set_text(&set), rows[i].want);
        } else {
            check_refusal(rc, err, rows[i].want);
        }
    }
    CHECK_CTX("reserved NULL");
    char err[P2M_ERR_LEN] = "";
    p2m_port_set_t set;
    check_refusal(p2m_sysports_parse_reserved(NULL, 0, &set, err), err, "no text");
    CHECK_CTX(NULL);
}

/* Lists at and past P2M_SYSPORTS_TEXT_MAX: many ranges, wide overlapping ones, and one byte too many. */
static void test_reserved_limits(void)
{
    size_t cap = 4 * P2M_SYSPORTS_TEXT_MAX, len = 0;
    char *buf = malloc(cap), err[P2M_ERR_LEN] = "";
    p2m_port_set_t set;
    if (buf == NULL)
        abort();

    /* every odd port: 32768 items, the most the kernel would print, and longer than the limit */
    for (unsigned p = 1; p <= 65535; p += 2)
        len += (size_t)snprintf(buf + len, cap - len, "%s%u", len ? "," : "", p);
    CHECK_CTX("every odd port, %zu bytes", len);
    char *in = check_exact_copy(buf, len);
    check_refusal(p2m_sysports_parse_reserved(in, len, &set, err), err, "longer than 65536 bytes");
    free(in);

    /* exactly the limit, ending in a newline: "1" then odd ports while they fit, padded to the
     * byte with ",1" items and a leading zero */
    len = (size_t)snprintf(buf, cap, "1");
    for (unsigned p = 3; p <= 65535; p += 2) {
        int n = snprintf(NULL, 0, ",%u", p);
        if (len + (size_t)n + 1 > P2M_SYSPORTS_TEXT_MAX)
            break;
        len += (size_t)snprintf(buf + len, cap - len, ",%u", p);
    }
    size_t pad = P2M_SYSPORTS_TEXT_MAX - len - 1;
    if (pad % 2 == 1) {
        memmove(buf + 1, buf, len);
        buf[0] = '0';
        len++;
    }
    for (; len + 1 < P2M_SYSPORTS_TEXT_MAX; len += 2)
        memcpy(buf + len, ",1", 2);
    buf[len++] = '\n';
    CHECK_CTX("many ranges, %zu bytes", len);
    if (len == P2M_SYSPORTS_TEXT_MAX) {
        in = check_exact_copy(buf, len);
        if (CHECK_RC(p2m_sysports_parse_reserved(in, len, &set, err), 0, err)) {
            CHECK(p2m_sysports_set_has(&set, 1));
            CHECK(!p2m_sysports_set_has(&set, 2));
            CHECK(p2m_sysports_set_has(&set, 9999));
            CHECK(!p2m_sysports_set_has(&set, 10000));
            CHECK(!p2m_sysports_set_has(&set, 0));
            char small[64];
            CHECK_EQ_INT(p2m_sysports_set_format(&set, small, sizeof(small)), -1);
            CHECK_EQ_STR(small, "");
        }
        free(in);
        buf[len++] = '1'; /* one byte more */
        CHECK_CTX("many ranges, %zu bytes", len);
        in = check_exact_copy(buf, len);
        check_refusal(p2m_sysports_parse_reserved(in, len, &set, err), err, "longer than 65536 bytes");
        free(in);
    } else {
        CHECK_MSG(0, "could not build a list of exactly %d bytes", P2M_SYSPORTS_TEXT_MAX);
    }

    /* 8191 full ranges and one port: each sets 1024 words, which must stay cheap */
    len = 0;
    while (len + 16 < P2M_SYSPORTS_TEXT_MAX)
        len += (size_t)snprintf(buf + len, cap - len, "1-65535,");
    len += (size_t)snprintf(buf + len, cap - len, "9");
    CHECK_CTX("wide overlapping ranges, %zu bytes", len);
    in = check_exact_copy(buf, len);
    if (CHECK_RC(p2m_sysports_parse_reserved(in, len, &set, err), 0, err))
        CHECK_EQ_STR(set_text(&set), "1-65535");
    free(in);
    free(buf);
    CHECK_CTX(NULL);
}

struct assess_row {
    unsigned lo, hi;      /* relay.ports */
    unsigned elo, ehi;    /* ip_local_port_range */
    const char *reserved; /* ip_local_reserved_ports text, NULL for no set */
    unsigned overlap_n;   /* want */
    unsigned olo, ohi;    /* want, when overlap_n > 0 */
    unsigned at_risk;     /* want */
    unsigned first, last; /* want, when at_risk > 0 */
    const char *fix;      /* want */
};

static void test_assess(void)
{
    const struct assess_row rows[] = {
        /* quickstart's old range against Debian's default */
        {33000, 33999, 32768, 60999, "\n", 1000, 33000, 33999, 1000, 33000, 33999, "33000-33999"},
        {33000, 33999, 32768, 60999, NULL, 1000, 33000, 33999, 1000, 33000, 33999, "33000-33999"},
        /* outside: below, above */
        {20000, 29999, 32768, 60999, "", 0, 0, 0, 0, 0, 0, ""},
        {61000, 65535, 32768, 60999, NULL, 0, 0, 0, 0, 0, 0, ""},
        {32767, 32767, 32768, 60999, NULL, 0, 0, 0, 0, 0, 0, ""},
        /* touching at one end */
        {32000, 32768, 32768, 60999, NULL, 1, 32768, 32768, 1, 32768, 32768, "32768"},
        {60999, 61010, 32768, 60999, NULL, 1, 60999, 60999, 1, 60999, 60999, "60999"},
        /* ours around the ephemeral range, and the reverse */
        {1, 65535, 32768, 60999, NULL, 28232, 32768, 60999, 28232, 32768, 60999, "32768-60999"},
        {40000, 40009, 32768, 60999, NULL, 10, 40000, 40009, 10, 40000, 40009, "40000-40009"},
        {65535, 65535, 1, 65535, NULL, 1, 65535, 65535, 1, 65535, 65535, "65535"},
        /* reserved: all of the overlap, part of it, holes in it; the fix keeps what is reserved */
        {33000, 33999, 32768, 60999, "33000-33999\n", 1000, 33000, 33999, 0, 0, 0, ""},
        {33000, 33999, 32768, 60999, "1-65535\n", 1000, 33000, 33999, 0, 0, 0, ""},
        {33000, 33999, 32768, 60999, "8080,33000-33499\n", 1000, 33000, 33999, 500, 33500, 33999, "8080,33000-33999"},
        {33000, 33999, 32768, 60999, "33001-33998", 1000, 33000, 33999, 2, 33000, 33999, "33000-33999"},
        {32000, 33999, 32768, 60999, "32000-32999,50000", 1232, 32768, 33999, 1000, 33000, 33999, "32000-33999,50000"},
        /* reserved ports outside ours change nothing */
        {20000, 29999, 32768, 60999, "20000-29999", 0, 0, 0, 0, 0, 0, ""},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct assess_row *w = &rows[i];
        CHECK_CTX("assess row %zu: %u-%u against %u-%u reserved %s", i, w->lo, w->hi, w->elo, w->ehi, check_str(w->reserved));
        p2m_port_set_t set;
        char err[P2M_ERR_LEN] = "";
        if (w->reserved != NULL && !CHECK_RC(p2m_sysports_parse_reserved(w->reserved, strlen(w->reserved), &set, err), 0, err))
            continue;
        p2m_sysports_risk_t r;
        p2m_sysports_assess((p2m_port_range_t){(uint16_t)w->lo, (uint16_t)w->hi},
                            (p2m_port_range_t){(uint16_t)w->elo, (uint16_t)w->ehi}, w->reserved != NULL ? &set : NULL, &r);
        CHECK_EQ_INT(r.ports.lo, w->lo);
        CHECK_EQ_INT(r.ports.hi, w->hi);
        CHECK_EQ_INT(r.ephemeral.lo, w->elo);
        CHECK_EQ_INT(r.ephemeral.hi, w->ehi);
        CHECK_EQ_INT(r.overlap_n, w->overlap_n);
        if (w->overlap_n > 0) {
            CHECK_EQ_INT(r.overlap.lo, w->olo);
            CHECK_EQ_INT(r.overlap.hi, w->ohi);
        }
        CHECK_EQ_INT(r.at_risk, w->at_risk);
        if (w->at_risk > 0) {
            CHECK_EQ_INT(r.first, w->first);
            CHECK_EQ_INT(r.last, w->last);
        }
        CHECK_EQ_STR(r.fix, w->fix);
    }
    CHECK_CTX(NULL);
}

static void test_format(void)
{
    p2m_sysports_risk_t r;
    char line[2048];
    p2m_sysports_assess((p2m_port_range_t){33000, 33999}, (p2m_port_range_t){32768, 60999}, NULL, &r);
    static const char want[] = "ports=33000-33999 ephemeral=32768-60999 overlap=33000-33999 at_risk=1000 "
                               "fix=\"sysctl -w net.ipv4.ip_local_reserved_ports=33000-33999\"";
    CHECK_CTX("format the quickstart case");
    CHECK_EQ_INT(p2m_sysports_format(&r, line, sizeof(line)), (int)sizeof(want) - 1);
    CHECK_EQ_STR(line, want);
    CHECK_EQ_INT(p2m_sysports_format(&r, line, sizeof(want) - 1), -1);
    CHECK_EQ_INT(p2m_sysports_format(&r, line, sizeof(want)), (int)sizeof(want) - 1);

    /* a reserved list whose union with the overlap does not fit the fix: say what to add */
    size_t cap = 8 * 20000, len = 0;
    char *text = malloc(cap);
    p2m_port_set_t set;
    char err[P2M_ERR_LEN] = "";
    if (text == NULL)
        abort();
    for (unsigned p = 1; p < 20000; p += 2)
        len += (size_t)snprintf(text + len, cap - len, "%s%u", len ? "," : "", p);
    CHECK_CTX("format with a fix that does not fit");
    if (CHECK_RC(p2m_sysports_parse_reserved(text, len, &set, err), 0, err)) {
        p2m_sysports_assess((p2m_port_range_t){33000, 33999}, (p2m_port_range_t){32768, 60999}, &set, &r);
        CHECK_EQ_INT(r.at_risk, 1000);
        CHECK_EQ_STR(r.fix, "");
        CHECK(p2m_sysports_format(&r, line, sizeof(line)) > 0);
        CHECK_EQ_STR(strstr(line, "fix="), "fix=\"add 33000-33999 to net.ipv4.ip_local_reserved_ports\"");
    }
    free(text);

    /* p2m_sysports_set_format at its limits */
    CHECK_CTX("set_format limits");
    if (CHECK_RC(p2m_sysports_parse_reserved(TXT("80,8080-8090"), &set, err), 0, err)) {
        char out[13];
        CHECK_EQ_INT(p2m_sysports_set_format(&set, out, 0), -1);
        CHECK_EQ_INT(p2m_sysports_set_format(&set, out, 12), -1);
        CHECK_EQ_STR(out, "");
        CHECK_EQ_INT(p2m_sysports_set_format(&set, out, 13), 12);
        CHECK_EQ_STR(out, "80,8080-8090");
    }
    memset(&set, 0, sizeof(set));
    set.bits[0] = 1; /* port 0 cannot come from the parser, but the formatter must not trip on it */
    set.bits[1023] = (uint64_t)1 << 63;
    CHECK_EQ_STR(set_text(&set), "0,65535");
    CHECK_CTX(NULL);
}

/* Writes len bytes of text to dir/name, whose path goes to path[0..cap); aborts when it cannot. */
static void put_file(const char *dir, const char *name, const char *text, size_t len, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0)
        abort();
}

static void test_read(void)
{
    char dir[] = "/tmp/p2m-sysports.XXXXXX", range[256], reserved[256], err[P2M_ERR_LEN] = "";
    p2m_sysports_risk_t r;
    p2m_port_range_t ours = {33000, 33999};
    if (mkdtemp(dir) == NULL)
        abort();

    CHECK_CTX("read: files as the kernel writes them");
    put_file(dir, "range", TXT("32768\t60999\n"), range, sizeof(range));
    put_file(dir, "reserved", TXT("8080,33500-33999\n"), reserved, sizeof(reserved));
    if (CHECK_RC(p2m_sysports_read(ours, range, reserved, &r, err), 0, err)) {
        CHECK_EQ_INT(r.at_risk, 500);
        CHECK_EQ_STR(r.fix, "8080,33000-33999");
    }

    CHECK_CTX("read: a missing file");
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    check_refusal(p2m_sysports_read(ours, missing, reserved, &r, err), err, "No such file");
    check_refusal(p2m_sysports_read(ours, range, missing, &r, err), err, "/none: No such file");

    CHECK_CTX("read: a range that does not parse names the file");
    put_file(dir, "range", TXT("32768 60999 1\n"), range, sizeof(range));
    check_refusal(p2m_sysports_read(ours, range, reserved, &r, err), err, "/range: longer than 12 bytes");
    put_file(dir, "range", TXT("60999\t32768\n"), range, sizeof(range));
    check_refusal(p2m_sysports_read(ours, range, reserved, &r, err), err, "/range: ip_local_port_range: 60999 > 32768");

    CHECK_CTX("read: reserved ports longer than the limit, or not parsing");
    put_file(dir, "range", TXT("32768\t60999\n"), range, sizeof(range));
    size_t big = P2M_SYSPORTS_TEXT_MAX + 1;
    char *text = malloc(big);
    if (text == NULL)
        abort();
    memset(text, '1', big);
    put_file(dir, "reserved", text, big, reserved, sizeof(reserved));
    check_refusal(p2m_sysports_read(ours, range, reserved, &r, err), err, "longer than 65536 bytes");
    free(text);
    put_file(dir, "reserved", TXT("8080,,1\n"), reserved, sizeof(reserved));
    check_refusal(p2m_sysports_read(ours, range, reserved, &r, err), err, "/reserved: ip_local_reserved_ports: byte 5");
    put_file(dir, "reserved", TXT(""), reserved, sizeof(reserved));
    if (CHECK_RC(p2m_sysports_read(ours, range, reserved, &r, err), 0, err))
        CHECK_EQ_INT(r.at_risk, 1000);

    unlink(range);
    unlink(reserved);
    rmdir(dir);

    /* This machine's own files, when it has them. */
    CHECK_CTX("read: /proc");
    if (access(P2M_SYSPORTS_RANGE_PATH, R_OK) == 0 && access(P2M_SYSPORTS_RESERVED_PATH, R_OK) == 0) {
        if (CHECK_RC(p2m_sysports_read(ours, NULL, NULL, &r, err), 0, err))
            check_note("this machine: ephemeral %u-%u, %u of 33000-33999 at risk", (unsigned)r.ephemeral.lo,
                       (unsigned)r.ephemeral.hi, r.at_risk);
    } else {
        check_note("no %s here: not read", P2M_SYSPORTS_RANGE_PATH);
    }
    CHECK_CTX(NULL);
}

int main(void)
{
    test_parse_range();
    test_parse_reserved();
    test_reserved_limits();
    test_assess();
    test_format();
    test_read();
    return check_done("sysports");
}
