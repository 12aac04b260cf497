/* Unit tests for lib/authhdr.c against lib/include/p2m/authhdr.h: valid TOTP and Bearer values and
 * hostile rows (quoting, duplicates, unknown parameters, NULs, limits +-1, escapes, whitespace). */

#include "check.h"
#include "p2m/authhdr.h"
#include "p2m/err.h"
#include "p2m/label.h"

#include <stdlib.h>
#include <string.h>

struct row {
    const char *in;
    size_t len;
    int rc;
    p2m_auth_scheme_t scheme; /* on success */
    const char *id, *token, *bearer;
};

#define TOTP_OK(lit, id, tok) {lit, sizeof(lit) - 1, 0, P2M_AUTH_TOTP, id, tok, NULL}
#define BEARER_OK(lit, cred) {lit, sizeof(lit) - 1, 0, P2M_AUTH_BEARER, NULL, NULL, cred}
#define BAD(lit) {lit, sizeof(lit) - 1, -1, 0, NULL, NULL, NULL}

/* Parses len bytes from a heap block of exactly that size, so that ASan flags over-reads. */
static int parse_exact(const char *in, size_t len, p2m_auth_t *out, char *err)
{
    char *p = check_exact_copy(in, len);
    memset(out, 0x5a, sizeof(*out));
    int rc = p2m_authhdr_parse(p, len, out, err);
    free(p);
    return rc;
}

static void run_rows(const char *table, const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct row *r = &rows[i];
        p2m_auth_t out;
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("%s row %zu %s len %zu", table, i, check_bytes(r->in, r->len), r->len);
        int rc = parse_exact(r->in, r->len, &out, err);
        if (!CHECK_RC(rc, r->rc, err))
            continue;
        if (rc != 0) {
            CHECK_MSG(err[0] != '\0', "err is empty on failure");
            continue;
        }
        CHECK_EQ_INT(out.scheme, r->scheme);
        if (r->scheme == P2M_AUTH_TOTP) {
            CHECK_EQ_STR(out.id, r->id);
            CHECK_EQ_STR(out.token, r->token);
        } else {
            CHECK_EQ_STR(out.bearer, r->bearer);
        }
    }
    CHECK_CTX(NULL);
}

static void test_fixed_rows(void)
{
    const struct row rows[] = {
        TOTP_OK("TOTP username=\"pod1\", response=\"123456\"", "pod1", "123456"),
        TOTP_OK("TOTP response=\"123456\", username=\"pod1\"", "pod1", "123456"),
        TOTP_OK("totp username=\"pod1\", response=\"123456\"", "pod1", "123456"),
        TOTP_OK("ToTp username=\"pod1\", response=\"123456\"", "pod1", "123456"),
        TOTP_OK("TOTP username=\"pod1\",response=\"123456\"", "pod1", "123456"),
        TOTP_OK("TOTP username=\"pod1\",   response=\"123456\"", "pod1", "123456"),
        TOTP_OK("TOTP username=\"Pod.1_a-b\", response=\"000000\"", "Pod.1_a-b", "000000"),
        TOTP_OK("TOTP username=\"p\", response=\"654321\"", "p", "654321"),
        TOTP_OK("TOTP username=\"pod1\", response=\"12345678\"", "pod1", "12345678"),
        TOTP_OK("TOTP username=\"pod1\", response=\"1234567\"", "pod1", "1234567"),
        BEARER_OK("Bearer abc.def", "abc.def"),
        BEARER_OK("bearer abc.def", "abc.def"),
        BEARER_OK("BEARER abc.def", "abc.def"),
        BEARER_OK("Bearer aZ09._~+/-=", "aZ09._~+/-="),
        BEARER_OK("Bearer dGVzdA==", "dGVzdA=="),
        BEARER_OK("Bearer x", "x"),

        BAD(""),
        BAD(" "),
        BAD("TOTP"),
        BAD("TOTP "),
        BAD("Bearer"),
        BAD("Bearer "),
        BAD("Basic dXNlcjpwYXNz"),
        BAD("Digest username=\"pod1\", response=\"123456\""),
        BAD("TOTPX username=\"pod1\", response=\"123456\""),
        BAD("TOT username=\"pod1\", response=\"123456\""),
        BAD("TOTPusername=\"pod1\", response=\"123456\""),
        BAD("BearerX abc"),
        BAD("Bearerabc"),
        /* quoting */
        BAD("TOTP username=pod1, response=\"123456\""),
        BAD("TOTP username=\"pod1\", response=123456"),
        BAD("TOTP username=\"pod1, response=\"123456\""),
        BAD("TOTP username=\"pod1\", response=\"123456"),
        BAD("TOTP username=\"pod1\", response=\""),
        BAD("TOTP username=\"pod1\", response="),
        BAD("TOTP username=\"pod1\", response"),
        BAD("TOTP username='pod1', response='123456'"),
        BAD("TOTP username=\"po\\\"d1\", response=\"123456\""),
        BAD("TOTP username=\"pod\\1\", response=\"123456\""),
        BAD("TOTP username=\"pod1\", response=\"1234\\56\""),
        /* parameters */
        BAD("TOTP username=\"pod1\""),
        BAD("TOTP response=\"123456\""),
        BAD("TOTP username=\"a\", username=\"b\", response=\"123456\""),
        BAD("TOTP username=\"a\", username=\"a\", response=\"123456\""),
        BAD("TOTP username=\"pod1\", response=\"123456\", response=\"123456\""),
        BAD("TOTP username=\"pod1\", response=\"123456\", realm=\"x\""),
        BAD("TOTP realm=\"x\", username=\"pod1\", response=\"123456\""),
        BAD("TOTP user=\"pod1\", response=\"123456\""),
        BAD("TOTP username=\"pod1\" response=\"123456\""),
        BAD("TOTP username=\"pod1\"; response=\"123456\""),
        BAD("TOTP username=\"pod1\",, response=\"123456\""),
        BAD("TOTP , username=\"pod1\", response=\"123456\""),
        /* username */
        BAD("TOTP username=\"\", response=\"123456\""),
        BAD("TOTP username=\"pod 1\", response=\"123456\""),
        BAD("TOTP username=\"-pod\", response=\"123456\""),
        BAD("TOTP username=\".pod\", response=\"123456\""),
        BAD("TOTP username=\"pod,1\", response=\"123456\""),
        BAD("TOTP username=\"pod=1\", response=\"123456\""),
        BAD("TOTP username=\"pod\xff\", response=\"123456\""),
        BAD("TOTP username=\"p\xc3\xb6" "d\", response=\"123456\""),
        BAD("TOTP username=\"pod\r\n1\", response=\"123456\""),
        /* response */
        BAD("TOTP username=\"pod1\", response=\"\""),
        BAD("TOTP username=\"pod1\", response=\"12a456\""),
        BAD("TOTP username=\"pod1\", response=\"abcdef\""),
        BAD("TOTP username=\"pod1\", response=\"123 456\""),
        BAD("TOTP username=\"pod1\", response=\" 123456\""),
        BAD("TOTP username=\"pod1\", response=\"-12345\""),
        BAD("TOTP username=\"pod1\", response=\"123456789\""),
        BAD("TOTP username=\"pod1\", response=\"12345\""),
        BAD("TOTP username=\"pod1\", response=\"1\""),
        BAD("TOTP username=\"pod1\", response=\"1234567890123456\""),
        /* NUL bytes, with the length covering them */
        BAD("TOTP username=\"po\0d1\", response=\"123456\""),
        BAD("TOTP username=\"pod1\", response=\"123\0" "456\""),
        BAD("TOTP username=\"pod1\", response=\"123456\"\0"),
        BAD("TOTP\0username=\"pod1\", response=\"123456\""),
        BAD("\0TOTP username=\"pod1\", response=\"123456\""),
        BAD("Bearer abc\0def"),
        BAD("Bearer abc\0"),
        /* trailing garbage */
        BAD("TOTP username=\"pod1\", response=\"123456\" x"),
        BAD("TOTP username=\"pod1\", response=\"123456\"x"),
        BAD("TOTP username=\"pod1\", response=\"123456\"\""),
        BAD("TOTP username=\"pod1\", response=\"123456\"\r\n"),
        BAD("TOTP username=\"pod1\", response=\"123456\"\n"),
        BAD("Bearer abc def"),
        BAD("Bearer abc,def"),
        BAD("Bearer abc\r\n"),
        /* bearer alphabet */
        BAD("Bearer abc!def"),
        BAD("Bearer abc\"def"),
        BAD("Bearer \"abc\""),
        BAD("Bearer abc\xff"),
        BAD("Bearer abc\x80"),
        BAD("Bearer abc\tdef"),
        BAD("Bearer abc;def"),
        BAD("Bearer abc%20def"),
        BAD("Bearer abc\\def"),
        /* only the space after the scheme is a separator */
        BAD("TOTP\tusername=\"pod1\", response=\"123456\""),
        BAD("Bearer\tabc"),
        /* explicit length shorter than the C string */
        {"Bearer abcdef", 10, 0, P2M_AUTH_BEARER, NULL, NULL, "abc"},
        {"TOTP username=\"pod1\", response=\"123456\"", 38, -1, 0, NULL, NULL, NULL},
    };
    run_rows("fixed", rows, sizeof(rows) / sizeof(rows[0]));
}

/* Rows built at run time: limits +-1 on the ID, the bearer and the whole value. */
static void test_limits(void)
{
    char id64[P2M_ID_MAX + 1], id65[P2M_ID_MAX + 2];
    char b128[P2M_BEARER_MAX + 1], b129[P2M_BEARER_MAX + 2];
    static char h_id64[1024], h_id65[1024], h_b128[1024], h_b129[1024], h512[1024], h513[1024];
    static char huge[100000];

    memset(id64, 'a', P2M_ID_MAX);
    id64[P2M_ID_MAX] = '\0';
    memset(id65, 'a', P2M_ID_MAX + 1);
    id65[P2M_ID_MAX + 1] = '\0';
    memset(b128, 'b', P2M_BEARER_MAX);
    b128[P2M_BEARER_MAX] = '\0';
    memset(b129, 'b', P2M_BEARER_MAX + 1);
    b129[P2M_BEARER_MAX + 1] = '\0';
    snprintf(h_id64, sizeof(h_id64), "TOTP username=\"%s\", response=\"123456\"", id64);
    snprintf(h_id65, sizeof(h_id65), "TOTP username=\"%s\", response=\"123456\"", id65);
    snprintf(h_b128, sizeof(h_b128), "Bearer %s", b128);
    snprintf(h_b129, sizeof(h_b129), "Bearer %s", b129);

    /* A valid value padded to exactly P2M_AUTHHDR_MAX bytes with the optional spaces after the
     * comma, and the same with one more space. */
    const char *head = "TOTP username=\"pod1\",", *tail = "response=\"123456\"";
    size_t pad = P2M_AUTHHDR_MAX - strlen(head) - strlen(tail);
    snprintf(h512, sizeof(h512), "%s%*s%s", head, (int)pad, "", tail);
    snprintf(h513, sizeof(h513), "%s%*s%s", head, (int)pad + 1, "", tail);
    memset(huge, 'A', sizeof(huge));
    memcpy(huge, "Bearer ", 7);

    const struct row rows[] = {
        {h_id64, strlen(h_id64), 0, P2M_AUTH_TOTP, id64, "123456", NULL},
        {h_id65, strlen(h_id65), -1, 0, NULL, NULL, NULL},
        {h_b128, strlen(h_b128), 0, P2M_AUTH_BEARER, NULL, NULL, b128},
        {h_b129, strlen(h_b129), -1, 0, NULL, NULL, NULL},
        {h512, strlen(h512), 0, P2M_AUTH_TOTP, "pod1", "123456", NULL},
        {h513, strlen(h513), -1, 0, NULL, NULL, NULL},
        {huge, sizeof(huge), -1, 0, NULL, NULL, NULL},
    };
    CHECK_EQ_INT(strlen(h512), P2M_AUTHHDR_MAX);
    run_rows("limits", rows, sizeof(rows) / sizeof(rows[0]));
}

/* authhdr.h: "Spaces and tabs around the whole value are ignored" (RFC 9110 OWS, which HTTP
 * parsers usually strip already). The whitespace must not reach the output. */
static void test_surrounding_whitespace(void)
{
    const struct row rows[] = {
        TOTP_OK("TOTP username=\"pod1\", response=\"123456\" ", "pod1", "123456"),
        TOTP_OK("TOTP username=\"pod1\", response=\"123456\"   ", "pod1", "123456"),
        TOTP_OK("TOTP username=\"pod1\", response=\"123456\"\t", "pod1", "123456"),
        TOTP_OK(" TOTP username=\"pod1\", response=\"123456\"", "pod1", "123456"),
        TOTP_OK("\t TOTP username=\"pod1\", response=\"123456\" \t", "pod1", "123456"),
        BEARER_OK("Bearer abc.def ", "abc.def"),
        BEARER_OK("Bearer abc.def\t\t", "abc.def"),
        BEARER_OK("  Bearer abc.def", "abc.def"),
        BEARER_OK("\tBearer abc.def \t", "abc.def"),
        /* whitespace is not a value */
        BAD("   "),
        BAD("\t"),
        /* other bytes around the value are not whitespace */
        BAD("\vTOTP username=\"pod1\", response=\"123456\""),
        BAD("Bearer abc.def\v"),
        BAD("Bearer abc.def\r"),
        BAD("\nBearer abc.def"),
    };
    run_rows("whitespace", rows, sizeof(rows) / sizeof(rows[0]));
}

/* Every successful parse hands the caller an ID that p2m_id_valid accepts. */
static void test_id_contract(void)
{
    static const char *ids[] = {"a", "Z9", "pod.1", "pod_1", "pod-1", "0", "a.b.c"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char h[256], err[P2M_ERR_LEN] = "";
        p2m_auth_t out;
        snprintf(h, sizeof(h), "TOTP username=\"%s\", response=\"654321\"", ids[i]);
        CHECK_CTX("id %s", ids[i]);
        if (CHECK_RC(parse_exact(h, strlen(h), &out, err), 0, err)) {
            CHECK_EQ_STR(out.id, ids[i]);
            CHECK_RC(p2m_id_valid(out.id, strlen(out.id), err), 0, err);
        }
    }
    CHECK_CTX(NULL);
}

int main(void)
{
    test_fixed_rows();
    test_limits();
    test_surrounding_whitespace();
    test_id_contract();
    return check_done("authhdr");
}
