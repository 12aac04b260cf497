/* Unit tests for lib/label.c against lib/include/p2m/label.h: hostile rows for the DNS label and
 * pod ID checks, and statistical checks of the random label generator. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/label.h"

#include <stdlib.h>
#include <string.h>

/* A row: len bytes of in (which may hold NULs), the expected return and, on success, output. */
struct row {
    const char *in;
    size_t len;
    int rc;
    const char *out;
};

#define ROW(lit, rc, out) {lit, sizeof(lit) - 1, rc, out}

static char a63[P2M_LABEL_MAX + 1], a64[P2M_LABEL_MAX + 2], mix63[P2M_LABEL_MAX + 1], low63[P2M_LABEL_MAX + 1];
static char id64[P2M_ID_MAX + 1], id65[P2M_ID_MAX + 2];

static void test_normalize(void)
{
    memset(a63, 'a', P2M_LABEL_MAX);
    memset(a64, 'a', P2M_LABEL_MAX + 1);
    for (size_t i = 0; i < P2M_LABEL_MAX; i++) {
        mix63[i] = (char)((i % 2) ? 'A' + (char)(i % 26) : '0' + (char)(i % 10));
        low63[i] = (char)((i % 2) ? 'a' + (char)(i % 26) : '0' + (char)(i % 10));
    }
    const struct row rows[] = {
        ROW("", -1, NULL),
        ROW("a", 0, "a"),
        ROW("9", 0, "9"),
        ROW("-", -1, NULL),
        ROW("demo", 0, "demo"),
        ROW("handsome-lemon-panda", 0, "handsome-lemon-panda"),
        ROW("a--b", 0, "a--b"),
        ROW("xn--bcher-kva", 0, "xn--bcher-kva"),
        ROW("ABC", 0, "abc"),
        ROW("MiXeD-Case-42", 0, "mixed-case-42"),
        {a63, P2M_LABEL_MAX, 0, a63},
        {a64, P2M_LABEL_MAX + 1, -1, NULL},
        {mix63, P2M_LABEL_MAX, 0, low63},
        ROW("-abc", -1, NULL),
        ROW("abc-", -1, NULL),
        ROW("-abc-", -1, NULL),
        ROW("a_b", -1, NULL),
        ROW("_ab", -1, NULL),
        ROW("a.b", -1, NULL),
        ROW("a.", -1, NULL),
        ROW("ab\0cd", -1, NULL),
        ROW("abc\0", -1, NULL),
        ROW("\0abc", -1, NULL),
        ROW("\0", -1, NULL),
        ROW("\xff\xff", -1, NULL),
        ROW("ab\xff", -1, NULL),
        ROW("caf\xc3\xa9", -1, NULL),
        ROW("\x80", -1, NULL),
        ROW(" abc", -1, NULL),
        ROW("abc ", -1, NULL),
        ROW("a b", -1, NULL),
        ROW("abc\n", -1, NULL),
        ROW("abc\r\n", -1, NULL),
        ROW("\t", -1, NULL),
        ROW("a/b", -1, NULL),
        ROW("a:b", -1, NULL),
        ROW("a@b", -1, NULL),
        ROW("a*", -1, NULL),
        ROW("a%2e", -1, NULL),
        ROW("\x7f", -1, NULL),
        /* explicit length shorter than the C string: only len bytes count */
        {"abcdef", 3, 0, "abc"},
        {"abc-", 3, 0, "abc"},
        {"ab-", 3, -1, NULL},
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        char *in = check_exact_copy(r->in, r->len);
        char out[P2M_LABEL_MAX + 1];
        char err[P2M_ERR_LEN] = "";
        memset(out, 0x5a, sizeof(out));
        CHECK_CTX("normalize row %zu %s len %zu", i, check_bytes(r->in, r->len), r->len);
        int rc = p2m_label_normalize(in, r->len, out, err);
        if (CHECK_RC(rc, r->rc, err)) {
            if (r->rc == 0)
                CHECK_EQ_STR(out, r->out);
            else
                CHECK_MSG(err[0] != '\0', "err is empty on failure");
        }
        free(in);
    }
    CHECK_CTX(NULL);
}

static void test_id(void)
{
    memset(id64, 'p', P2M_ID_MAX);
    memset(id65, 'p', P2M_ID_MAX + 1);
    const struct row rows[] = {
        ROW("", -1, NULL),
        ROW("p", 0, NULL),
        ROW("1", 0, NULL),
        ROW("pod1", 0, NULL),
        ROW("Pod.1_a-b", 0, NULL),
        ROW("POD1", 0, NULL),
        ROW("pod.", 0, NULL),
        ROW("pod-", 0, NULL),
        ROW("pod_", 0, NULL),
        ROW("0.0.0", 0, NULL),
        {id64, P2M_ID_MAX, 0, NULL},
        {id65, P2M_ID_MAX + 1, -1, NULL},
        ROW(".pod", -1, NULL),
        ROW("-pod", -1, NULL),
        ROW("_pod", -1, NULL),
        ROW(".", -1, NULL),
        ROW("pod\"1", -1, NULL),
        ROW("\"", -1, NULL),
        ROW("pod 1", -1, NULL),
        ROW(" pod1", -1, NULL),
        ROW("pod1 ", -1, NULL),
        ROW("pod1\t", -1, NULL),
        ROW("pod1\n", -1, NULL),
        ROW("pod1\r", -1, NULL),
        ROW("pod\0x", -1, NULL),
        ROW("pod1\0", -1, NULL),
        ROW("\0", -1, NULL),
        ROW("pod\xff", -1, NULL),
        ROW("\xc3\xa9t\xc3\xa9", -1, NULL),
        ROW("pod,1", -1, NULL),
        ROW("pod=1", -1, NULL),
        ROW("pod/1", -1, NULL),
        ROW("pod\\1", -1, NULL),
        ROW("pod:1", -1, NULL),
        ROW("pod;1", -1, NULL),
        ROW("pod~1", -1, NULL),
        ROW("pod+1", -1, NULL),
        {"pod1\"", 4, 0, NULL},
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        char *in = check_exact_copy(r->in, r->len);
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("id row %zu %s len %zu", i, check_bytes(r->in, r->len), r->len);
        int rc = p2m_id_valid(in, r->len, err);
        if (CHECK_RC(rc, r->rc, err) && r->rc != 0)
            CHECK_MSG(err[0] != '\0', "err is empty on failure");
        free(in);
    }
    CHECK_CTX(NULL);
}

/* word-word-word with each word [a-z]+ */
static int is_three_words(const char *s)
{
    int words = 0, inword = 0;
    for (; *s != '\0'; s++) {
        if (*s >= 'a' && *s <= 'z') {
            if (!inword)
                words++;
            inword = 1;
        } else if (*s == '-' && inword) {
            inword = 0;
        } else {
            return 0;
        }
    }
    return words == 3 && inword;
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_generate(void)
{
    enum { DRAWS = 1000 };
    static char labels[DRAWS][P2M_LABEL_MAX + 1];
    unsigned bad_rc = 0, bad_norm = 0, bad_form = 0;

    for (int i = 0; i < DRAWS; i++) {
        char err[P2M_ERR_LEN] = "", norm[P2M_LABEL_MAX + 1];
        if (p2m_label_generate(labels[i]) != 0) {
            bad_rc++;
            labels[i][0] = '\0';
            continue;
        }
        size_t len = strnlen(labels[i], sizeof(labels[i]));
        if (len == sizeof(labels[i]) || p2m_label_normalize(labels[i], len, norm, err) != 0 ||
            strcmp(norm, labels[i]) != 0) {
            if (bad_norm++ == 0)
                CHECK_MSG(0, "generated label %s does not normalize to itself (err: %s)", check_bytes(labels[i], len),
                          check_str(err));
        }
        if (!is_three_words(labels[i])) {
            if (bad_form++ == 0)
                CHECK_MSG(0, "generated label %s is not word-word-word", check_str(labels[i]));
        }
    }
    CHECK_EQ_INT(bad_rc, 0);
    CHECK_EQ_INT(bad_norm, 0);
    CHECK_EQ_INT(bad_form, 0);

    qsort(labels, DRAWS, sizeof(labels[0]), cmp_label);
    unsigned distinct = 1;
    for (int i = 1; i < DRAWS; i++)
        distinct += strcmp(labels[i - 1], labels[i]) != 0;
    CHECK_MSG(distinct > 1, "all %d generated labels are identical: %s", DRAWS, check_str(labels[0]));
    /* With 2^18 or more combinations, 1000 draws collide a handful of times at most. */
    CHECK_MSG(distinct >= 950, "only %u distinct labels in %d draws", distinct, DRAWS);
}

int main(void)
{
    test_normalize();
    test_id();
    test_generate();
    return check_done("label");
}
