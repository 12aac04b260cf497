/* Unit tests for lib/setup.c against lib/include/p2m/setup.h: hostile POST /setup bodies
 * (PROTOCOL.md 1.6), the canonical body, the label prefix rule and the prefixed label generator. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/setup.h"

#include <stdlib.h>
#include <string.h>

/* Parses len bytes from a heap block of exactly that size, so that ASan flags any read past it. */
static int parse_exact(const char *body, size_t len, p2m_setup_req_t *req, char *err)
{
    char *p = check_exact_copy(body, len);
    err[0] = '\0';
    int rc = p2m_setup_body_parse(p, len, req, err);
    free(p);
    return rc;
}

/* Every byte of err is printable ASCII and there is at least one. */
static int printable_line(const char *err)
{
    if (err[0] == '\0')
        return 0;
    for (const char *p = err; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    }
    return 1;
}

struct body_row {
    const char *body;
    size_t len;       /* 0: strlen */
    int rc;           /* 0 or -1 */
    const char *want; /* on success: the canonical body; on failure: must appear in err */
};

#define B(lit, rc, want)                                                                                                           \
    {                                                                                                                              \
        lit, sizeof(lit) - 1, rc, want                                                                                             \
    }

static void test_body(void)
{
    static char exact[P2M_SETUP_BODY_MAX + 1], big[P2M_SETUP_BODY_MAX + 2], deep[P2M_SETUP_BODY_MAX + 1];
    static char many[400], many32[400], long_key[800], long_label[100], label63[100];
    /* {"protocols":["http"]} padded with spaces to exactly the limit, and one byte over */
    memset(exact, ' ', P2M_SETUP_BODY_MAX);
    memcpy(exact, "{\"protocols\":[\"http\"]}", 22);
    memset(big, ' ', P2M_SETUP_BODY_MAX + 1);
    memcpy(big, "{\"protocols\":[\"http\"]}", 22);
    for (size_t i = 0; i < P2M_SETUP_BODY_MAX; i++)
        deep[i] = i < P2M_SETUP_BODY_MAX / 2 ? '[' : ']';
    /* 33 entries, and 32 entries: the count is checked before duplicates */
    strcpy(many, "{\"protocols\":[\"tcp\"");
    for (int i = 1; i < 33; i++)
        strcat(many, ",\"tcp\"");
    strcat(many, "]}");
    strcpy(many32, "{\"protocols\":[\"tcp\"");
    for (int i = 1; i < 32; i++)
        strcat(many32, ",\"tcp\"");
    strcat(many32, "]}");
    /* a 100-byte key of control bytes: the error may quote only an escaped excerpt */
    strcpy(long_key, "{\"protocols\":[\"tcp\"],\"");
    for (int i = 0; i < 100; i++)
        strcat(long_key, "\\u001b");
    strcat(long_key, "\":1}");
    snprintf(long_label, sizeof(long_label), "{\"protocols\":[\"tcp\"],\"label\":\"%064d\"}", 0);
    snprintf(label63, sizeof(label63), "{\"protocols\":[\"tcp\"],\"label\":\"%063d\"}", 0);
    static char label63_canon[100];
    snprintf(label63_canon, sizeof(label63_canon), "{\"protocols\":[\"tcp\"],\"label\":\"%063d\"}", 0);

    const struct body_row rows[] = {
        /* accepted */
        B("{\"protocols\":[\"https\"]}", 0, "{\"protocols\":[\"https\"]}"),
        B("{\"protocols\":[\"https\",\"http\"]}", 0, "{\"protocols\":[\"https\",\"http\"]}"),
        B("{\"protocols\":[\"tcp\",\"http\",\"https\"]}", 0, "{\"protocols\":[\"tcp\",\"http\",\"https\"]}"),
        B(" \n{ \"label\" : \"Door-1\", \"protocols\" : [ \"http\" ] }\r\n", 0, "{\"protocols\":[\"http\"],\"label\":\"door-1\"}"),
        {label63, 0, 0, label63_canon},
        {exact, P2M_SETUP_BODY_MAX, 0, "{\"protocols\":[\"http\"]}"},
        /* size and shape */
        B("", -1, "body: empty"),
        {big, P2M_SETUP_BODY_MAX + 1, -1, "longer than 4096"},
        {deep, P2M_SETUP_BODY_MAX, -1, "expected a JSON object"},
        B(" \r\n", -1, "not JSON"),
        B("protocols=https", -1, "not JSON"),
        B("\"https\"", -1, "not JSON"),
        B("[\"https\"]", -1, "expected a JSON object"),
        B("{}", -1, "protocols: missing"),
        B("{\"label\":\"web\"}", -1, "protocols: missing"),
        B("{\"protocols\":[\"https\"]", -1, "not JSON"),
        B("{\"protocols\":[\"https\"]} {}", -1, "not JSON"),
        B("{\"protocols\":[\"https\"]}\0", -1, "not JSON"),
        B("\xef\xbb\xbf{\"protocols\":[\"https\"]}", -1, "not JSON"),
        B("{\"protocols\":[\"\xff\"]}", -1, "not JSON"),
        B("{\"protocols\":{\"https\":1}}", -1, "protocols: expected an array"),
        B("{\"protocols\":[[\"https\"]]}", -1, "protocols[0]"),
        B("{\"protocols\":[{\"p\":\"https\"}]}", -1, "protocols[0]"),
        /* NUL inside strings */
        B("{\"protocols\":[\"http\\u0000\"]}", -1, "not JSON"),
        B("{\"protocols\":[\"http\"],\"label\":\"we\\u0000b\"}", -1, "not JSON"),
        B("{\"protocols\":[\"http\"],\"la\\u0000bel\":\"web\"}", -1, "not JSON"),
        /* duplicates */
        B("{\"protocols\":[\"http\"],\"protocols\":[\"tcp\"]}", -1, "not JSON"),
        B("{\"protocols\":[\"http\"],\"label\":\"a\",\"label\":\"b\"}", -1, "not JSON"),
        B("{\"protocols\":[\"http\",\"tcp\",\"http\"]}", -1, "protocols[2]: \"http\" is listed twice"),
        {many32, 0, -1, "protocols[1]: \"tcp\" is listed twice"},
        {many, 0, -1, "protocols: expected 1 to 32 entries, got 33"},
        B("{\"protocols\":[]}", -1, "protocols: expected 1 to 32 entries, got 0"),
        /* unknown keys */
        B("{\"protocols\":[\"http\"],\"x\":1}", -1, "body: unknown key \"x\""),
        B("{\"Protocols\":[\"http\"]}", -1, "unknown key \"Protocols\""),
        B("{\"protocols\":[\"http\"],\"\\u001b[31m\":1}", -1, "unknown key \"\\x1b[31m\""),
        {long_key, 0, -1, "unknown key \"\\x1b\\x1b"},
        /* wrong types and values */
        B("{\"protocols\":\"https\"}", -1, "protocols: expected an array"),
        B("{\"protocols\":null}", -1, "protocols: expected an array"),
        B("{\"protocols\":[1]}", -1, "protocols[0]: expected"),
        B("{\"protocols\":[null]}", -1, "protocols[0]: expected"),
        B("{\"protocols\":[\"HTTPS\"]}", -1, "protocols[0]: expected \"https\", \"http\" or \"tcp\", got \"HTTPS\""),
        B("{\"protocols\":[\"https\",\"udp\"]}", -1, "protocols[1]: expected \"https\", \"http\" or \"tcp\", got \"udp\""),
        B("{\"protocols\":[\"\"]}", -1, "got \"\""),
        B("{\"protocols\":[\"http \"]}", -1, "got \"http \""),
        B("{\"protocols\":[\"\\\"\\n\\u001b0123456789abcdefghij\"]}", -1, "got \"\\x22\\x0a\\x1b0123456789abc...\""),
        B("{\"protocols\":[\"http\"],\"label\":1}", -1, "label: expected a string"),
        B("{\"protocols\":[\"http\"],\"label\":null}", -1, "label: expected a string"),
        B("{\"protocols\":[\"http\"],\"label\":[\"web\"]}", -1, "label: expected a string"),
        /* labels */
        B("{\"protocols\":[\"http\"],\"label\":\"\"}", -1, "label is empty"),
        B("{\"protocols\":[\"http\"],\"label\":\"a.b\"}", -1, "label has a character outside"),
        B("{\"protocols\":[\"http\"],\"label\":\"a_b\"}", -1, "label has a character outside"),
        B("{\"protocols\":[\"http\"],\"label\":\"a b\"}", -1, "label has a character outside"),
        B("{\"protocols\":[\"http\"],\"label\":\"-web\"}", -1, "hyphen"),
        B("{\"protocols\":[\"http\"],\"label\":\"web-\"}", -1, "hyphen"),
        B("{\"protocols\":[\"http\"],\"label\":\"w\\u00e9b\"}", -1, "label has a character outside"),
        {long_label, 0, -1, "label is longer than 63"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct body_row *r = &rows[i];
        size_t len = r->len != 0 ? r->len : strlen(r->body);
        p2m_setup_req_t req;
        char err[P2M_ERR_LEN];
        CHECK_CTX("body row %zu %s", i, check_bytes(r->body, len > 60 ? 60 : len));
        int rc = parse_exact(r->body, len, &req, err);
        if (!CHECK_RC(rc, r->rc, err))
            continue;
        if (rc == 0) {
            char canon[P2M_SETUP_BODY_MAX];
            int n = p2m_setup_body_format(&req, canon, sizeof(canon));
            CHECK(n > 0 && (size_t)n == strlen(canon));
            CHECK_EQ_STR(canon, r->want);
        } else {
            CHECK_MSG(strstr(err, r->want) != NULL, "err \"%s\" does not contain \"%s\"", err, r->want);
            CHECK_MSG(printable_line(err), "err is not one printable line: %s", check_bytes(err, strlen(err)));
        }
    }
    CHECK_CTX(NULL);
}

static void test_format(void)
{
    p2m_setup_req_t req = {.protos = {P2M_PROTO_HTTP}, .nprotos = 1, .label = "web"};
    char out[64], small[20];
    CHECK_EQ_INT(p2m_setup_body_format(&req, out, sizeof(out)), 36);
    CHECK_EQ_STR(out, "{\"protocols\":[\"http\"],\"label\":\"web\"}");
    CHECK_EQ_INT(p2m_setup_body_format(&req, small, sizeof(small)), -1);
    CHECK_EQ_INT(p2m_setup_body_format(&req, out, 36), -1);
    CHECK_EQ_INT(p2m_setup_body_format(&req, out, 37), 36);
    req.nprotos = 0;
    CHECK_EQ_INT(p2m_setup_body_format(&req, out, sizeof(out)), -1);
    req.nprotos = P2M_SETUP_PROTOS_MAX + 1;
    CHECK_EQ_INT(p2m_setup_body_format(&req, out, sizeof(out)), -1);
    req.nprotos = 1;
    req.protos[0] = (p2m_proto_t)7;
    CHECK_EQ_INT(p2m_setup_body_format(&req, out, sizeof(out)), -1);
}

static void test_allowed(void)
{
    static const struct {
        const char *label, *prefix;
        int rc;
        const char *want; /* on failure: must appear in err */
    } rows[] = {
        {"web", NULL, 0, NULL},
        {"web", "", 0, NULL},
        {"Web", NULL, 0, NULL},
        {"acme-door-1", "acme", 0, NULL},
        {"ACME-door", "acme", 0, NULL},
        {"acme-door", "ACME", 0, NULL},
        {"acme-x", "acme", 0, NULL},
        {"acme--x", "acme", 0, NULL},
        {"a-b-c", "a-b", 0, NULL},
        {"acme", "acme", -1, "of the form \"acme-...\""},
        {"acmex", "acme", -1, "of the form \"acme-...\""},
        {"acm-x", "acme", -1, "acme-..."},
        {"x-acme-door", "acme", -1, "acme-..."},
        {"door", "acme", -1, "acme-..."},
        {"", NULL, -1, "label is empty"},
        {NULL, "acme", -1, "label is empty"},
        {"a.b", NULL, -1, "outside"},
        {"acme-", "acme", -1, "hyphen"},
        {"acme-door", "ac.me", -1, "prefix is not a valid label"},
        {"acme-door", "-acme", -1, "prefix is not a valid label"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("allowed row %zu: %s prefix %s", i, check_str(rows[i].label), check_str(rows[i].prefix));
        int rc = p2m_setup_label_allowed(rows[i].label, rows[i].prefix, err);
        if (CHECK_RC(rc, rows[i].rc, err) && rc != 0) {
            CHECK_MSG(strstr(err, rows[i].want) != NULL, "err \"%s\" does not contain \"%s\"", err, rows[i].want);
            CHECK_MSG(printable_line(err), "err is not one printable line: %s", check_bytes(err, strlen(err)));
        }
    }
    CHECK_CTX(NULL);
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Draws labels for one prefix: each is a valid label, lower case, carries the prefix and passes
 * p2m_setup_label_allowed when the prefix fits (want_allowed). Returns how many were distinct. */
static unsigned draw(const char *prefix, const char *want_start, int want_allowed)
{
    enum { DRAWS = 10000 };
    static char labels[DRAWS][P2M_LABEL_MAX + 1];
    unsigned bad = 0;
    for (int i = 0; i < DRAWS; i++) {
        char err[P2M_ERR_LEN] = "", norm[P2M_LABEL_MAX + 1];
        int rc = p2m_setup_label_generate(prefix, labels[i], sizeof(labels[i]));
        size_t len = rc == 0 ? strnlen(labels[i], sizeof(labels[i])) : 0;
        int ok = rc == 0 && len <= P2M_LABEL_MAX && p2m_label_normalize(labels[i], len, norm, err) == 0 &&
                 strcmp(norm, labels[i]) == 0 && strncmp(labels[i], want_start, strlen(want_start)) == 0 &&
                 (p2m_setup_label_allowed(labels[i], prefix, err) == 0) == want_allowed;
        if (!ok && bad++ == 0)
            CHECK_MSG(0, "prefix %s: generated %s (rc %d, err %s)", check_str(prefix), rc == 0 ? check_str(labels[i]) : "-", rc,
                      check_str(err));
        if (rc != 0)
            labels[i][0] = '\0';
    }
    CHECK_EQ_INT(bad, 0);
    qsort(labels, DRAWS, sizeof(labels[0]), cmp_label);
    unsigned distinct = 1;
    for (int i = 1; i < DRAWS; i++)
        distinct += strcmp(labels[i - 1], labels[i]) != 0;
    /* 10,000 draws from 2^18 collide about 190 times (n^2 / 2N): collisions happen and the registrar
     * must retry, but far fewer than 1,000 of them means the generator still draws from them all. */
    CHECK_MSG(distinct >= 9000 && distinct < DRAWS, "prefix %s: %u distinct labels in %d draws", check_str(prefix), distinct,
              DRAWS);
    check_note("prefix %s: %u distinct labels in %d draws", check_str(prefix), distinct, DRAWS);
    return distinct;
}

static void test_generate(void)
{
    char p37[P2M_SETUP_PREFIX_MAX + 1], p38[P2M_SETUP_PREFIX_MAX + 2], p63[P2M_LABEL_MAX + 1], hy[P2M_LABEL_MAX + 1];
    char start[P2M_LABEL_MAX + 1], out[P2M_LABEL_MAX + 1], tiny[5];
    memset(p37, 'p', sizeof(p37) - 1);
    p37[sizeof(p37) - 1] = '\0';
    memset(p38, 'p', sizeof(p38) - 1);
    p38[sizeof(p38) - 1] = '\0';
    memset(p63, 'q', sizeof(p63) - 1);
    p63[sizeof(p63) - 1] = '\0';
    /* a prefix whose cut ends in hyphens: "h---...---h"; the cut drops them, never leaving "--" */
    memset(hy, '-', sizeof(hy) - 1);
    hy[0] = hy[sizeof(hy) - 2] = 'h';
    hy[sizeof(hy) - 1] = '\0';

    draw(NULL, "", 1);
    draw("", "", 1);
    draw("acme", "acme-", 1);
    draw("ACME", "acme-", 1);
    snprintf(start, sizeof(start), "%s-", p37);
    draw(p37, start, 1);
    /* too long for the rule: cut to P2M_SETUP_PREFIX_MAX, still valid, and no longer allowed (token add
     * refuses such prefixes) */
    draw(p38, p37, 0);
    draw(p63, "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", 0);
    draw(hy, "h-", 0);
    CHECK_EQ_INT(p2m_setup_label_generate(p38, out, sizeof(out)), 0);
    CHECK_MSG(out[P2M_SETUP_PREFIX_MAX] == '-' && strncmp(out, p37, P2M_SETUP_PREFIX_MAX) == 0, "cut prefix: %s", check_str(out));

    CHECK_EQ_INT(p2m_setup_label_generate("ac.me", out, sizeof(out)), -1);
    CHECK_EQ_INT(p2m_setup_label_generate("-acme", out, sizeof(out)), -1);
    CHECK_EQ_INT(p2m_setup_label_generate("acme", tiny, sizeof(tiny)), -1);
    CHECK_EQ_INT(p2m_setup_label_generate(NULL, tiny, 0), -1);
}

int main(void)
{
    test_body();
    test_format();
    test_allowed();
    test_generate();
    return check_done("setup");
}
