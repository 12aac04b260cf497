/* Unit tests for lib/webform.c against lib/include/p2m/webform.h: form bodies (escapes, '+',
 * duplicates, limits +-1, NUL and controls), one cookie among others (quoting, whitespace, a
 * second copy, hostile bytes), the Origin comparison, base64url (RFC 4648 10) and the
 * constant-time compare. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/webform.h"

#include <stdlib.h>
#include <string.h>

struct form_row {
    const char *in;
    size_t len;
    int rc;
    size_t n;                /* fields on success */
    const char *k0, *v0;     /* the first field */
    size_t v0len;            /* its value's length (a value may hold no NUL, so strlen) */
    const char *want_in_err; /* on failure */
};

#define FORM_OK(lit, n, k, v)                                                                                                      \
    {                                                                                                                              \
        lit, sizeof(lit) - 1, 0, n, k, v, sizeof(v) - 1, NULL                                                                      \
    }
#define FORM_NONE(lit)                                                                                                             \
    {                                                                                                                              \
        lit, sizeof(lit) - 1, 0, 0, NULL, NULL, 0, NULL                                                                            \
    }
#define FORM_BAD(lit, why)                                                                                                         \
    {                                                                                                                              \
        lit, sizeof(lit) - 1, -1, 0, NULL, NULL, 0, why                                                                            \
    }

static void test_form_rows(void)
{
    const struct form_row rows[] = {
        FORM_NONE(""),
        FORM_NONE("&"),
        FORM_NONE("&&&"),
        FORM_OK("token=abc", 1, "token", "abc"),
        FORM_OK("token=a+b", 1, "token", "a b"),
        FORM_OK("token=a%20b", 1, "token", "a b"),
        FORM_OK("token=%2B%2b", 1, "token", "++"),
        FORM_OK("token=%41%7e", 1, "token", "A~"),
        FORM_OK("token=", 1, "token", ""),
        FORM_OK("token", 1, "token", ""),
        FORM_OK("token==", 1, "token", "="),
        FORM_OK("a=1&b=2", 2, "a", "1"),
        FORM_OK("a=1&&b=2&", 2, "a", "1"),
        FORM_OK("&a=1", 1, "a", "1"),
        FORM_OK("a=1&a=2", 2, "a", "1"),
        FORM_OK("a=%0D%0A%09", 1, "a", "\r\n\t"),
        FORM_OK("a=%C3%A9", 1, "a", "\xc3\xa9"),
        FORM_OK("a%5fb=1", 1, "a_b", "1"),
        FORM_OK("A.b-C_9=x", 1, "A.b-C_9", "x"),
        FORM_BAD("=x", "empty name"),
        FORM_BAD("a=1&=2", "field 2: empty name"),
        FORM_BAD("a=%", "percent"),
        FORM_BAD("a=%4", "percent"),
        FORM_BAD("a=%4g", "percent"),
        FORM_BAD("a=%g4", "percent"),
        FORM_BAD("a=%%41", "percent"),
        FORM_BAD("a=%00", "NUL"),
        FORM_BAD("a=x%00y", "NUL"),
        FORM_BAD("a=%01", "control"),
        FORM_BAD("a=%1b", "control"),
        FORM_BAD("a=%7f", "control"),
        FORM_BAD("a=b c", "raw space"),
        FORM_BAD("a=b\x00"
                 "c",
                 "control"),
        FORM_BAD("a=b\nc", "control"),
        FORM_BAD("a=b\x7f", "control"),
        FORM_BAD("a b=1", "raw space"),
        FORM_BAD("a%20b=1", "name"),
        FORM_BAD("a/b=1", "name"),
        FORM_BAD("a%00=1", "name"),
        FORM_BAD("\xc3\xa9=1", "name"),
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct form_row *r = &rows[i];
        p2m_form_t f;
        char err[P2M_ERR_LEN] = "";
        char *in = check_exact_copy(r->in, r->len);
        CHECK_CTX("form row %zu %s", i, check_bytes(r->in, r->len));
        int rc = p2m_form_parse(in, r->len, &f, err);
        free(in);
        if (r->rc != 0) {
            check_refusal(rc, err, r->want_in_err);
            CHECK_EQ_INT(f.n, 0);
            continue;
        }
        if (!CHECK_RC(rc, 0, err))
            continue;
        CHECK_EQ_INT(f.n, r->n);
        if (r->k0 != NULL && f.n > 0) {
            CHECK_EQ_STR(f.f[0].key, r->k0);
            CHECK_EQ_INT(f.f[0].value_len, r->v0len);
            CHECK(memcmp(f.f[0].value, r->v0, r->v0len) == 0);
        }
        p2m_form_dispose(&f);
    }
    CHECK_CTX(NULL);
}

/* A body of n fields "kI=v" and one of exactly P2M_FORM_BODY_MAX bytes, each +-1. */
static void test_form_limits(void)
{
    char err[P2M_ERR_LEN];
    p2m_form_t f;
    size_t cap = P2M_FORM_BODY_MAX + 2;
    char *body = malloc(cap);
    size_t len = 0;

    CHECK_CTX("fields limit");
    for (int i = 0; i < P2M_FORM_FIELDS_MAX; i++)
        len += (size_t)snprintf(body + len, cap - len, "%sk%d=v", i ? "&" : "", i);
    CHECK_RC(p2m_form_parse(body, len, &f, err), 0, err);
    CHECK_EQ_INT(f.n, P2M_FORM_FIELDS_MAX);
    p2m_form_dispose(&f);
    CHECK_EQ_INT(f.n, 0);
    len += (size_t)snprintf(body + len, cap - len, "&one=more");
    check_refusal(p2m_form_parse(body, len, &f, err), err, "more than");

    CHECK_CTX("value limit");
    memcpy(body, "v=", 2);
    memset(body + 2, 'x', P2M_FORM_VALUE_MAX);
    CHECK_RC(p2m_form_parse(body, 2 + P2M_FORM_VALUE_MAX, &f, err), 0, err);
    CHECK_EQ_INT(f.f[0].value_len, P2M_FORM_VALUE_MAX);
    p2m_form_dispose(&f);
    body[2 + P2M_FORM_VALUE_MAX] = 'x';
    check_refusal(p2m_form_parse(body, 3 + P2M_FORM_VALUE_MAX, &f, err), err, "longer than");
    /* escapes count decoded: %41 three times is three bytes */
    for (size_t i = 0; i < P2M_FORM_VALUE_MAX; i++)
        memcpy(body + 2 + 3 * i, "%41", 3);
    CHECK_RC(p2m_form_parse(body, 2 + 3 * (size_t)P2M_FORM_VALUE_MAX, &f, err), 0, err);
    p2m_form_dispose(&f);

    CHECK_CTX("name limit");
    memset(body, 'k', P2M_FORM_KEY_MAX);
    memcpy(body + P2M_FORM_KEY_MAX, "=1", 2);
    CHECK_RC(p2m_form_parse(body, P2M_FORM_KEY_MAX + 2, &f, err), 0, err);
    p2m_form_dispose(&f);
    memset(body, 'k', P2M_FORM_KEY_MAX + 1);
    memcpy(body + P2M_FORM_KEY_MAX + 1, "=1", 2);
    check_refusal(p2m_form_parse(body, P2M_FORM_KEY_MAX + 3, &f, err), err, "longer than");

    CHECK_CTX("body limit");
    memset(body, 'a', cap);
    memcpy(body, "a=", 2);
    check_refusal(p2m_form_parse(body, P2M_FORM_BODY_MAX + 1, &f, err), err, "form body is longer");
    free(body);
    CHECK_CTX(NULL);
}

static void test_form_get_and_secrets(void)
{
    char err[P2M_ERR_LEN];
    p2m_form_t f;
    const char *v;
    const char body[] = "token=s3cr%45t&csrf=a&csrf=b&x=";

    CHECK_RC(p2m_form_parse(body, sizeof(body) - 1, &f, err), 0, err);
    CHECK_RC(p2m_form_get(&f, "token", &v, err), 0, err);
    CHECK_EQ_STR(v, "s3crEt");
    CHECK_RC(p2m_form_get(&f, "x", &v, err), 0, err);
    CHECK_EQ_STR(v, "");
    check_refusal(p2m_form_get(&f, "csrf", &v, err), err, "more than once");
    CHECK(v == NULL);
    check_refusal(p2m_form_get(&f, "nope", &v, err), err, "missing");
    CHECK(strstr(err, "s3cr") == NULL);
    p2m_form_dispose(&f);
    p2m_form_dispose(NULL);

    /* a refusal names the field by position, never its value */
    const char bad[] = "token=hunter2%00";
    check_refusal(p2m_form_parse(bad, sizeof(bad) - 1, &f, err), err, "field 1");
    CHECK_MSG(strstr(err, "hunter2") == NULL, "err quotes the value: %s", err);

    CHECK(p2m_secret_equal("abc", "abc"));
    CHECK(!p2m_secret_equal("abc", "abd"));
    CHECK(!p2m_secret_equal("abc", "abcd"));
    CHECK(!p2m_secret_equal("", "a"));
    CHECK(p2m_secret_equal("", ""));
}

struct cookie_row {
    const char *in;
    size_t len;
    int rc;
    const char *value; /* on 1 */
};

#define C_ROW(lit, rc, v)                                                                                                          \
    {                                                                                                                              \
        lit, sizeof(lit) - 1, rc, v                                                                                                \
    }

static void test_cookie_rows(void)
{
    const struct cookie_row rows[] = {
        C_ROW("", 0, NULL),
        C_ROW("p2m_console=abc", 1, "abc"),
        C_ROW("  p2m_console=abc  ", 1, "abc"),
        C_ROW("a=1; p2m_console=abc; b=2", 1, "abc"),
        C_ROW("a=1;p2m_console=abc;b=2", 1, "abc"),
        C_ROW("a=1;\tp2m_console = abc\t;b=2", 1, "abc"),
        C_ROW("p2m_console=\"abc\"", 1, "abc"),
        C_ROW("p2m_console=", 1, ""),
        C_ROW("p2m_console=\"\"", 1, ""),
        C_ROW("p2m_console=a-b_c.d~E", 1, "a-b_c.d~E"),
        C_ROW("P2M_CONSOLE=abc", 0, NULL),
        C_ROW("xp2m_console=abc", 0, NULL),
        C_ROW("p2m_consolex=abc", 0, NULL),
        C_ROW("p2m_console", 0, NULL),
        C_ROW(";;;", 0, NULL),
        C_ROW("other=\"un balanced; p2m_console=abc", 1, "abc"),
        C_ROW("other=a b c; p2m_console=abc", 1, "abc"),
        C_ROW("garbage; p2m_console=abc", 1, "abc"),
        C_ROW("p2m_console=abc; p2m_console=abc", -1, NULL),
        C_ROW("p2m_console=abc; p2m_console=def", -1, NULL),
        C_ROW("p2m_console=a b", -1, NULL),
        C_ROW("p2m_console=a,b", -1, NULL),
        C_ROW("p2m_console=a\\b", -1, NULL),
        C_ROW("p2m_console=\"abc", -1, NULL),
        C_ROW("p2m_console=abc\"", -1, NULL),
        C_ROW("p2m_console=\"a\"b\"", -1, NULL),
        C_ROW("p2m_console=\xc3\xa9", -1, NULL),
        C_ROW("p2m_console=abc\x00", -1, NULL),
        C_ROW("a=1\r\n; p2m_console=abc", -1, NULL),
        C_ROW("p2m_console=abc\x7f", -1, NULL),
        C_ROW("p2m_console=0123456789012345678901234567890123456789012", 1, "0123456789012345678901234567890123456789012"),
        C_ROW("p2m_console=01234567890123456789012345678901234567890123", -1, NULL),
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct cookie_row *r = &rows[i];
        char out[44], err[P2M_ERR_LEN] = "";
        char *in = check_exact_copy(r->in, r->len);
        CHECK_CTX("cookie row %zu %s", i, check_bytes(r->in, r->len));
        int rc = p2m_cookie_find(in, r->len, "p2m_console", out, sizeof(out), err);
        free(in);
        CHECK_RC(rc, r->rc, err);
        if (rc == 1)
            CHECK_EQ_STR(out, r->value);
        if (rc == -1)
            check_refusal(rc, err, "");
        if (rc != 1)
            CHECK_EQ_STR(out, "");
    }
    CHECK_CTX("cookie over its limit");
    char *big = malloc(P2M_COOKIE_HDR_MAX + 1), out[8], err[P2M_ERR_LEN];
    memset(big, 'a', P2M_COOKIE_HDR_MAX + 1);
    big[1] = '=';
    CHECK_RC(p2m_cookie_find(big, P2M_COOKIE_HDR_MAX, "p2m_console", out, sizeof(out), err), 0, err);
    check_refusal(p2m_cookie_find(big, P2M_COOKIE_HDR_MAX + 1, "p2m_console", out, sizeof(out), err), err, "longer than");
    free(big);
    CHECK_CTX(NULL);
}

static void test_origin(void)
{
    const char *const allowed[] = {"http://127.0.0.1:8893", "http://localhost:8893"};
    struct {
        const char *in;
        int want;
    } rows[] = {
        {"http://127.0.0.1:8893", 1},
        {"HTTP://LOCALHOST:8893", 1},
        {"http://localhost:8893", 1},
        {"http://127.0.0.1:8894", 0},
        {"http://127.0.0.1:88930", 0},
        {"http://127.0.0.1:889", 0},
        {"http://127.0.0.1:8893/", 0},
        {"https://127.0.0.1:8893", 0},
        {"http://127.0.0.1", 0},
        {"null", 0},
        {"", 0},
        {"http://evil.example", 0},
        {"http://127.0.0.1:8893.evil.example", 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("origin row %zu %s", i, check_str(rows[i].in));
        CHECK_EQ_INT(p2m_origin_allowed(rows[i].in, strlen(rows[i].in), allowed, 2), rows[i].want);
    }
    CHECK_CTX("origin with a NUL");
    CHECK_EQ_INT(p2m_origin_allowed("http://127.0.0.1:8893\0", 22, allowed, 2), 0);
    const char *const nullok[] = {"null"};
    CHECK_EQ_INT(p2m_origin_allowed("null", 4, nullok, 1), 0);
    CHECK_CTX(NULL);
}

static void test_b64url(void)
{
    /* RFC 4648 10, in the URL alphabet without padding */
    const char *vec[][2] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
                            {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    char out[16];
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        CHECK_CTX("b64url %s", vec[i][0]);
        CHECK_EQ_INT(p2m_b64url_encode((const unsigned char *)vec[i][0], strlen(vec[i][0]), out, sizeof(out)), strlen(vec[i][1]));
        CHECK_EQ_STR(out, vec[i][1]);
    }
    CHECK_CTX("b64url alphabet");
    const unsigned char hi[] = {0xfb, 0xff, 0xbf};
    CHECK_EQ_INT(p2m_b64url_encode(hi, 3, out, sizeof(out)), 4);
    CHECK_EQ_STR(out, "-_-_");
    CHECK_EQ_INT(p2m_b64url_encode(hi, 3, out, 4), -1);
    CHECK_EQ_INT(p2m_b64url_encode(hi, 3, out, 5), 4);
    CHECK_CTX(NULL);
}

int main(void)
{
    test_form_rows();
    test_form_limits();
    test_form_get_and_secrets();
    test_cookie_rows();
    test_origin();
    test_b64url();
    return check_done("webform");
}
