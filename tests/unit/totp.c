/* Unit tests for lib/totp.c against lib/include/p2m/totp.h: RFC 6238 Appendix B vectors, hostile
 * base32 secrets and OTPs, the otpauth:// URI, and a cross-check with the real oathtool. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/totp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* RFC 6238 Appendix B: SHA-1 with the ASCII secret "12345678901234567890". */
static const unsigned char rfc_secret[] = "12345678901234567890";
#define RFC_SECRET_LEN 20
#define RFC_SECRET_B32 "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

static const struct {
    time_t t;
    const char *code8;
} rfc_vectors[] = {
    {59, "94287082"},         {1111111109, "07081804"}, {1111111111, "14050471"},
    {1234567890, "89005924"}, {2000000000, "69279037"}, {(time_t)20000000000LL, "65353130"},
};

/* RFC 4648 base32 without padding, for building hostile secrets of a given decoded length. */
static void b32_encode(const unsigned char *in, size_t len, char *out)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned buf = 0;
    int bits = 0;
    size_t pos = 0;
    for (size_t i = 0; i < len; i++) {
        buf = (buf << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[pos++] = alpha[(buf >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[pos++] = alpha[(buf << (5 - bits)) & 31];
    out[pos] = '\0';
}

static void test_rfc_vectors(void)
{
    for (size_t i = 0; i < sizeof(rfc_vectors) / sizeof(rfc_vectors[0]); i++) {
        for (unsigned digits = 6; digits <= 8; digits++) {
            char err[P2M_ERR_LEN] = "";
            char *out = malloc(digits + 1); /* exactly digits + 1, as the header promises */
            CHECK_CTX("RFC 6238 t=%lld digits=%u", (long long)rfc_vectors[i].t, digits);
            int rc = p2m_totp_generate(rfc_secret, RFC_SECRET_LEN, rfc_vectors[i].t, digits, out, err);
            if (CHECK_RC(rc, 0, err))
                CHECK_EQ_STR(out, rfc_vectors[i].code8 + (8 - digits));
            free(out);
        }
    }
    CHECK_CTX(NULL);

    /* digits outside 6..8 are refused */
    static const unsigned bad_digits[] = {0, 1, 5, 9, 10, 100};
    for (size_t i = 0; i < sizeof(bad_digits) / sizeof(bad_digits[0]); i++) {
        char err[P2M_ERR_LEN] = "", out[128];
        CHECK_CTX("generate digits=%u", bad_digits[i]);
        CHECK_RC(p2m_totp_generate(rfc_secret, RFC_SECRET_LEN, 59, bad_digits[i], out, err), -1, err);
    }
    CHECK_CTX(NULL);
}

static int is_b32_alpha(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

static void test_secret_new(void)
{
    char a[P2M_TOTP_SECRET_B32_LEN + 1], b[P2M_TOTP_SECRET_B32_LEN + 1], err[P2M_ERR_LEN] = "";
    unsigned char raw[256];
    size_t raw_len = 0;

    memset(a, 0x5a, sizeof(a));
    memset(b, 0x5a, sizeof(b));
    if (!CHECK_RC(p2m_totp_secret_new(a, err), 0, err) || !CHECK_RC(p2m_totp_secret_new(b, err), 0, err))
        return;
    CHECK_EQ_INT(strnlen(a, sizeof(a)), P2M_TOTP_SECRET_B32_LEN);
    CHECK_EQ_INT(strnlen(b, sizeof(b)), P2M_TOTP_SECRET_B32_LEN);
    int alpha_ok = 1;
    for (size_t i = 0; i < P2M_TOTP_SECRET_B32_LEN; i++)
        alpha_ok &= is_b32_alpha(a[i]) && is_b32_alpha(b[i]);
    CHECK_MSG(alpha_ok, "secrets %s %s are not [A-Z2-7]{32}", check_bytes(a, sizeof(a)), check_bytes(b, sizeof(b)));
    CHECK_MSG(strcmp(a, b) != 0, "two new secrets are equal: %s", check_str(a));
    if (CHECK_RC(p2m_totp_secret_decode(a, raw, sizeof(raw), &raw_len, err), 0, err))
        CHECK_EQ_INT(raw_len, P2M_TOTP_SECRET_BYTES);
}

struct decode_row {
    const char *in;
    int rc;
    const unsigned char *raw; /* expected bytes on success */
    size_t raw_len;
};

static void test_secret_decode(void)
{
    static unsigned char r128[128], r129[129];
    static char b128[256], b129[256], b128pad[300];
    for (size_t i = 0; i < sizeof(r129); i++)
        r129[i] = (unsigned char)(i * 7 + 3);
    memcpy(r128, r129, sizeof(r128));
    b32_encode(r128, sizeof(r128), b128);
    b32_encode(r129, sizeof(r129), b129);
    snprintf(b128pad, sizeof(b128pad), "%s===", b128); /* 205 characters + 3 = one full 8-char group */

    const struct decode_row rows[] = {
        {RFC_SECRET_B32, 0, rfc_secret, RFC_SECRET_LEN},
        {"gezdgnbvgy3tqojqgezdgnbvgy3tqojq", 0, rfc_secret, RFC_SECRET_LEN},
        {"GeZdGnBvGy3tQoJqGeZdGnBvGy3tQoJq", 0, rfc_secret, RFC_SECRET_LEN},
        {"GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ", 0, rfc_secret, RFC_SECRET_LEN},
        {"MZXW6===", 0, (const unsigned char *)"foo", 3},
        {"MZXW6YQ=", 0, (const unsigned char *)"foob", 4},
        {"MZXW6YTBOI======", 0, (const unsigned char *)"foobar", 6},
        {b128, 0, r128, sizeof(r128)},
        {b128pad, 0, r128, sizeof(r128)},
        {b129, -1, NULL, 0},
        {"", -1, NULL, 0},
        {"    ", -1, NULL, 0},
        {RFC_SECRET_B32 "\n", -1, NULL, 0},
        {"\t" RFC_SECRET_B32, -1, NULL, 0},
        {"GEZD=GNBVGY3TQOJQGEZDGNBVGY3TQOJQ", -1, NULL, 0}, /* '=' is padding only at the end (RFC 4648) */
        {"=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", -1, NULL, 0},
        {"========", -1, NULL, 0},
        {"A", -1, NULL, 0},
        {"GEZDGNBVGY3TQOJ1GEZDGNBVGY3TQOJQ", -1, NULL, 0},
        {"GEZDGNBVGY3TQOJ0GEZDGNBVGY3TQOJQ", -1, NULL, 0},
        {"GEZDGNBVGY3TQOJ8GEZDGNBVGY3TQOJQ", -1, NULL, 0},
        {"GEZDGNBVGY3TQOJ9GEZDGNBVGY3TQOJQ", -1, NULL, 0},
        {"GEZDGNBVGY3TQOJ!GEZDGNBVGY3TQOJQ", -1, NULL, 0},
        {"GEZDGNBVGY3TQOJ\xffGEZDGNBVGY3TQOJQ", -1, NULL, 0},
        {"GEZDGNBVGY3TQOJ\xc3\x89GEZDGNBVGY3TQOJQ", -1, NULL, 0},
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct decode_row *r = &rows[i];
        unsigned char raw[512];
        size_t raw_len = 12345;
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("decode row %zu %s", i, check_str(r->in));
        int rc = p2m_totp_secret_decode(r->in, raw, sizeof(raw), &raw_len, err);
        if (!CHECK_RC(rc, r->rc, err))
            continue;
        if (r->rc == 0) {
            if (CHECK_EQ_INT(raw_len, r->raw_len))
                CHECK_MSG(memcmp(raw, r->raw, r->raw_len) == 0, "decoded bytes differ");
        } else {
            CHECK_MSG(err[0] != '\0', "err is empty on failure");
        }
    }

    /* raw_cap smaller than the decoded secret is refused, and nothing is written past raw_cap */
    unsigned char *small = malloc(10);
    size_t small_len = 0;
    char err[P2M_ERR_LEN] = "";
    CHECK_CTX("decode %s into raw_cap 10", RFC_SECRET_B32);
    CHECK_RC(p2m_totp_secret_decode(RFC_SECRET_B32, small, 10, &small_len, err), -1, err);
    free(small);
    /* raw_cap exactly the decoded length is enough */
    unsigned char *exact = malloc(RFC_SECRET_LEN);
    CHECK_CTX("decode %s into raw_cap 20", RFC_SECRET_B32);
    if (CHECK_RC(p2m_totp_secret_decode(RFC_SECRET_B32, exact, RFC_SECRET_LEN, &small_len, err), 0, err))
        CHECK_EQ_INT(small_len, RFC_SECRET_LEN);
    free(exact);
    CHECK_CTX(NULL);
}

static void code_at(time_t t, char out[7])
{
    char err[P2M_ERR_LEN] = "";
    if (p2m_totp_generate(rfc_secret, RFC_SECRET_LEN, t, 6, out, err) != 0) {
        CHECK_MSG(0, "p2m_totp_generate(t=%lld) failed: %s", (long long)t, err);
        strcpy(out, "xxxxxx");
    }
}

static void test_validate(void)
{
    const time_t now = 1111111109;
    const uint64_t step = (uint64_t)now / P2M_TOTP_STEP;
    char c0[7], cm1[7], cp1[7], cm2[7], cp2[7];
    code_at(now, c0);
    code_at(now - 30, cm1);
    code_at(now + 30, cp1);
    code_at(now - 60, cm2);
    code_at(now + 60, cp2);
    CHECK_EQ_STR(c0, "081804");

    const struct {
        const char *otp;
        unsigned window;
        int rc;
        uint64_t step;
    } rows[] = {
        {c0, 0, 0, step},
        {c0, 1, 0, step},
        {cm1, 1, 0, step - 1},
        {cp1, 1, 0, step + 1},
        {cm1, 0, -1, 0},
        {cp1, 0, -1, 0},
        {cm2, 1, -1, 0},
        {cp2, 1, -1, 0},
        {cm2, 2, 0, step - 2},
        {cp2, 2, 0, step + 2},
        {"07081804", 1, -1, 0}, /* the 8-digit form of the right code */
        {"12345", 1, -1, 0},
        {"1234567", 1, -1, 0},
        {"abcdef", 1, -1, 0},
        {"08180a", 1, -1, 0},
        {"", 1, -1, 0},
        {"081 804", 1, -1, 0},
        {"081804 ", 1, -1, 0},
        {" 081804", 1, -1, 0},
        {"081804\n", 1, -1, 0},
        {"+81804", 1, -1, 0},
        {"-81804", 1, -1, 0},
        {"08180\xff", 1, -1, 0},
        {"\xef\xbc\x90"
         "81804",
         1, -1, 0}, /* fullwidth zero */
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t got_step = 0xdeadbeef;
        CHECK_CTX("validate row %zu otp %s window %u", i, check_str(rows[i].otp), rows[i].window);
        int rc = p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, now, rows[i].window, 6, rows[i].otp, &got_step);
        if (CHECK_EQ_INT(rc, rows[i].rc) && rows[i].rc == 0)
            CHECK_EQ_INT(got_step, rows[i].step);
    }

    /* RFC vector at t=59 is step 1; near the epoch a window must not wrap below step 0 */
    uint64_t got_step = 0;
    CHECK_CTX("validate 287082 at t=59");
    if (CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, 59, 0, 6, "287082", &got_step), 0))
        CHECK_EQ_INT(got_step, 1);
    char z[7];
    code_at(0, z);
    CHECK_CTX("validate code of step 0 at t=10 window 1");
    if (CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, 10, 1, 6, z, &got_step), 0))
        CHECK_EQ_INT(got_step, 0);
    CHECK_CTX(NULL);
}

/* 8 digits: the RFC 6238 appendix B vectors as they are printed, each valid at its own time and
 * not as its 6-digit tail; a 6-digit code is refused when 8 are wanted, and digits other than 6
 * and 8 are refused whatever the code. */
static void test_validate8(void)
{
    for (size_t i = 0; i < sizeof(rfc_vectors) / sizeof(rfc_vectors[0]); i++) {
        const time_t t = rfc_vectors[i].t;
        const char *code8 = rfc_vectors[i].code8;
        uint64_t got_step = 0xdeadbeef;
        CHECK_CTX("validate8 t=%lld %s", (long long)t, code8);
        if (CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, t, 0, 8, code8, &got_step), 0))
            CHECK_EQ_INT(got_step, (uint64_t)t / P2M_TOTP_STEP);
        CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, t, 1, 8, code8 + 2, &got_step), -1);
        CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, t, 1, 6, code8, &got_step), -1);
        if (CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, t, 0, 6, code8 + 2, &got_step), 0))
            CHECK_EQ_INT(got_step, (uint64_t)t / P2M_TOTP_STEP);
    }

    const time_t now = 1111111109;
    const struct {
        const char *otp;
        unsigned digits;
        int rc;
    } rows[] = {
        {"07081804", 8, 0},   {"7081804", 8, -1},  {"070818040", 8, -1},   {"0708180a", 8, -1}, {"07081804 ", 8, -1},
        {" 07081804", 8, -1}, {"", 8, -1},         {"0708 1804", 8, -1},   {"07081804", 7, -1}, {"7081804", 7, -1},
        {"07081804", 9, -1},  {"07081804", 0, -1}, {"081804", 5, -1},      {"081804", 7, -1},   {"07081804", 1000000000u, -1},
        {"-7081804", 8, -1},  {"+7081804", 8, -1}, {"0708180\xff", 8, -1},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t got_step = 0;
        CHECK_CTX("validate8 row %zu otp %s digits %u", i, check_str(rows[i].otp), rows[i].digits);
        CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, now, 1, rows[i].digits, rows[i].otp, &got_step), rows[i].rc);
    }
    /* the neighbouring steps' 8-digit codes within the window */
    char err[P2M_ERR_LEN] = "", prev[9], next[9];
    CHECK_CTX("validate8 window");
    if (CHECK_RC(p2m_totp_generate(rfc_secret, RFC_SECRET_LEN, now - 30, 8, prev, err), 0, err) &&
        CHECK_RC(p2m_totp_generate(rfc_secret, RFC_SECRET_LEN, now + 30, 8, next, err), 0, err)) {
        uint64_t got_step = 0;
        if (CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, now, 1, 8, prev, &got_step), 0))
            CHECK_EQ_INT(got_step, (uint64_t)now / P2M_TOTP_STEP - 1);
        if (CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, now, 1, 8, next, &got_step), 0))
            CHECK_EQ_INT(got_step, (uint64_t)now / P2M_TOTP_STEP + 1);
        CHECK_EQ_INT(p2m_totp_validate(rfc_secret, RFC_SECRET_LEN, now, 0, 8, next, &got_step), -1);
    }
    CHECK_CTX(NULL);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..len) into out; '+' stays '+'. Returns -1 on a malformed escape. */
static int pct_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t pos = 0;
    for (size_t i = 0; i < len; i++) {
        if (pos + 1 >= cap)
            return -1;
        if (s[i] == '%') {
            if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                return -1;
            out[pos++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            out[pos++] = s[i];
        }
    }
    out[pos] = '\0';
    return 0;
}

/* Finds query parameter name in uri and percent-decodes its value into out. */
static int query_param(const char *uri, const char *name, char *out, size_t cap)
{
    const char *q = strchr(uri, '?');
    if (q == NULL)
        return -1;
    size_t nlen = strlen(name);
    for (const char *p = q + 1; *p != '\0';) {
        const char *end = strchr(p, '&');
        if (end == NULL)
            end = p + strlen(p);
        if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
            return pct_decode(p + nlen + 1, (size_t)(end - p) - nlen - 1, out, cap);
        p = *end == '&' ? end + 1 : end;
    }
    return -1;
}

static void test_uri(void)
{
    char secret[P2M_TOTP_SECRET_B32_LEN + 1], err[P2M_ERR_LEN] = "";
    if (!CHECK_RC(p2m_totp_secret_new(secret, err), 0, err))
        return;

    const struct {
        const char *issuer, *account;
    } rows[] = {
        {"pipe2me", "pod1"},
        {"pipe2me.example.com", "demo.pod-7_x"},
        {"A B&C=D", "x?y#z/%w"},
        {"caf\xc3\xa9", "pod\"1"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char uri[1024], val[1024], path[1024];
        CHECK_CTX("uri issuer %s account %s", check_str(rows[i].issuer), check_str(rows[i].account));
        int n = p2m_totp_uri(rows[i].issuer, rows[i].account, secret, 6, uri, sizeof(uri));
        if (!CHECK_MSG(n > 0, "p2m_totp_uri returned %d", n))
            continue;
        CHECK_EQ_INT(n, strlen(uri));
        CHECK_MSG(strncmp(uri, "otpauth://totp/", 15) == 0, "uri %s does not start with otpauth://totp/", check_str(uri));
        int clean = 1;
        for (const char *p = uri; *p != '\0'; p++)
            clean &= (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f && *p != '"' && *p != ' ';
        CHECK_MSG(clean, "uri %s holds unescaped bytes", check_str(uri));
        if (CHECK_MSG(query_param(uri, "secret", val, sizeof(val)) == 0, "no secret= in %s", check_str(uri)))
            CHECK_EQ_STR(val, secret);
        if (CHECK_MSG(query_param(uri, "issuer", val, sizeof(val)) == 0, "no issuer= in %s", check_str(uri)))
            CHECK_EQ_STR(val, rows[i].issuer);
        if (CHECK_MSG(query_param(uri, "digits", val, sizeof(val)) == 0, "no digits= in %s", check_str(uri)))
            CHECK_EQ_STR(val, "6");
        if (CHECK_MSG(query_param(uri, "period", val, sizeof(val)) == 0, "no period= in %s", check_str(uri)))
            CHECK_EQ_STR(val, "30");
        /* the label path is ISSUER:ACCOUNT (or just ACCOUNT); either way it decodes to end in the account */
        const char *q = strchr(uri, '?');
        if (q != NULL && pct_decode(uri + 15, (size_t)(q - (uri + 15)), path, sizeof(path)) == 0) {
            size_t pl = strlen(path), al = strlen(rows[i].account);
            CHECK_MSG(pl >= al && strcmp(path + pl - al, rows[i].account) == 0, "label path %s does not name account %s",
                      check_str(path), check_str(rows[i].account));
        } else {
            CHECK_MSG(0, "uri %s has no decodable label path", check_str(uri));
        }

        /* cap: exactly n + 1 fits, n does not, 0 does not */
        char *exact = malloc((size_t)n + 1);
        CHECK_EQ_INT(p2m_totp_uri(rows[i].issuer, rows[i].account, secret, 6, exact, (size_t)n + 1), n);
        CHECK_EQ_STR(exact, uri);
        free(exact);
        char *shorter = malloc((size_t)n);
        CHECK_EQ_INT(p2m_totp_uri(rows[i].issuer, rows[i].account, secret, 6, shorter, (size_t)n), -1);
        free(shorter);
        char one[1];
        CHECK_EQ_INT(p2m_totp_uri(rows[i].issuer, rows[i].account, secret, 6, one, 1), -1);
        CHECK_EQ_INT(p2m_totp_uri(rows[i].issuer, rows[i].account, secret, 6, one, 0), -1);
    }

    /* 8 digits are said in the URI; any other count is refused */
    char uri[1024], val[1024];
    CHECK_CTX("uri digits 8");
    if (CHECK_MSG(p2m_totp_uri("pipe2me", "pod1", secret, 8, uri, sizeof(uri)) > 0, "p2m_totp_uri digits 8 failed") &&
        CHECK_MSG(query_param(uri, "digits", val, sizeof(val)) == 0, "no digits= in %s", check_str(uri)))
        CHECK_EQ_STR(val, "8");
    static const unsigned bad_digits[] = {0, 5, 7, 9, 10, 1000000000u};
    for (size_t i = 0; i < sizeof(bad_digits) / sizeof(bad_digits[0]); i++) {
        CHECK_CTX("uri digits %u", bad_digits[i]);
        CHECK_EQ_INT(p2m_totp_uri("pipe2me", "pod1", secret, bad_digits[i], uri, sizeof(uri)), -1);
    }
    CHECK_CTX(NULL);
}

/* 2026-01-01 00:00:00 UTC */
#define OATHTOOL_NOW ((time_t)1767225600)

static void test_oathtool(void)
{
    char secret[P2M_TOTP_SECRET_B32_LEN + 1], err[P2M_ERR_LEN] = "", cmd[256], line[64] = "";
    unsigned char raw[64];
    size_t raw_len = 0;

    if (system("command -v oathtool >/dev/null 2>&1") != 0) {
        check_note("oathtool not found: cross-check skipped");
        return;
    }
    int matched = 0;
    for (int round = 0; round < 3; round++) {
        if (!CHECK_RC(p2m_totp_secret_new(secret, err), 0, err) ||
            !CHECK_RC(p2m_totp_secret_decode(secret, raw, sizeof(raw), &raw_len, err), 0, err))
            return;
        snprintf(cmd, sizeof(cmd), "oathtool --totp -b %s --now '2026-01-01 00:00:00 UTC'", secret);
        FILE *p = popen(cmd, "r");
        if (!CHECK_MSG(p != NULL, "popen(%s) failed", cmd))
            return;
        if (fgets(line, sizeof(line), p) == NULL)
            line[0] = '\0';
        int status = pclose(p);
        line[strcspn(line, "\r\n")] = '\0';
        CHECK_CTX("oathtool secret %s", secret);
        if (!CHECK_MSG(status == 0 && strlen(line) == 6, "oathtool exited %d printing %s", status, check_str(line)))
            continue;
        char code[7];
        if (CHECK_RC(p2m_totp_generate(raw, raw_len, OATHTOOL_NOW, 6, code, err), 0, err))
            matched += CHECK_EQ_STR(code, line);
        uint64_t step = 0;
        if (CHECK_EQ_INT(p2m_totp_validate(raw, raw_len, OATHTOOL_NOW, 1, 6, line, &step), 0))
            CHECK_EQ_INT(step, (uint64_t)OATHTOOL_NOW / P2M_TOTP_STEP);
    }
    check_note("oathtool cross-check at 2026-01-01T00:00:00Z: %d of 3 fresh secrets agree", matched);
    CHECK_CTX(NULL);
}

int main(void)
{
    char err[P2M_ERR_LEN] = "";
    if (!CHECK_RC(p2m_totp_init(err), 0, err))
        return check_done("totp");
    test_rfc_vectors();
    test_secret_new();
    test_secret_decode();
    test_validate();
    test_validate8();
    test_uri();
    test_oathtool();
    p2m_totp_done();
    return check_done("totp");
}
