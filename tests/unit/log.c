/* Unit tests for lib/log.c against lib/include/p2m/log.h: level names, the one-line format on
 * stderr, level filtering and the escaping that keeps outside input from forging lines. */

#include "check.h"
#include "p2m/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void test_level_parse(void)
{
    const struct {
        const char *in;
        int rc;
        p2m_log_level_t level;
    } rows[] = {
        {"debug", 0, P2M_LOG_DEBUG},
        {"info", 0, P2M_LOG_INFO},
        {"warn", 0, P2M_LOG_WARN},
        {"error", 0, P2M_LOG_ERROR},
        {"", -1, 0},
        {"INFO", -1, 0},
        {"Info", -1, 0},
        {"warning", -1, 0},
        {"err", -1, 0},
        {"inf", -1, 0},
        {"info ", -1, 0},
        {" info", -1, 0},
        {"info\n", -1, 0},
        {"infox", -1, 0},
        {"trace", -1, 0},
        {"0", -1, 0},
        {"1", -1, 0},
        {"d\xffug", -1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        p2m_log_level_t level = (p2m_log_level_t)77;
        char *in = strdup(rows[i].in);
        CHECK_CTX("level row %zu %s", i, check_str(rows[i].in));
        int rc = p2m_log_level_parse(in, &level);
        if (CHECK_EQ_INT(rc, rows[i].rc) && rc == 0)
            CHECK_EQ_INT(level, rows[i].level);
        free(in);
    }
    CHECK_CTX(NULL);
}

/* Everything p2m_log writes to fd 2 between capture_start and capture_end. */
struct capture {
    int saved;
    int rd;
};

static void capture_start(struct capture *c)
{
    int fds[2];
    if (pipe(fds) != 0)
        abort();
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    c->rd = fds[0];
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
}

/* Restores stderr and returns what was written (malloc'd, NUL-terminated), setting *len. */
static char *capture_end(struct capture *c, size_t *len)
{
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        ssize_t r = read(c->rd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap)
            break;
    }
    close(c->rd);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int count_newlines(const char *s, size_t len)
{
    int n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    return n;
}

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Checks "ts=YYYY-MM-DDTHH:MM:SS.mmmZ " and that the time is within a minute of now. Returns the
 * rest of the line after the timestamp, or NULL. */
static const char *check_ts(const char *line)
{
    const char *p = line;
    int ok = strncmp(p, "ts=", 3) == 0;
    p += 3;
    ok = ok && strlen(p) >= 25 && digits(p, 4) && p[4] == '-' && digits(p + 5, 2) && p[7] == '-' && digits(p + 8, 2) &&
         p[10] == 'T' && digits(p + 11, 2) && p[13] == ':' && digits(p + 14, 2) && p[16] == ':' && digits(p + 17, 2) &&
         p[19] == '.' && digits(p + 20, 3) && p[23] == 'Z' && p[24] == ' ';
    if (!CHECK_MSG(ok, "line %s does not start with ts=YYYY-MM-DDTHH:MM:SS.mmmZ", check_str(line)))
        return NULL;
    struct tm tm = {0};
    tm.tm_year = atoi(p) - 1900;
    tm.tm_mon = atoi(p + 5) - 1;
    tm.tm_mday = atoi(p + 8);
    tm.tm_hour = atoi(p + 11);
    tm.tm_min = atoi(p + 14);
    tm.tm_sec = atoi(p + 17);
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    CHECK_MSG(t <= now + 1 && t >= now - 60, "timestamp in %s is %lld, now is %lld (not UTC?)", check_str(line), (long long)t,
              (long long)now);
    return p + 25;
}

/* Logs through the given call and checks the whole output is exactly `want` after the timestamp
 * (want NULL: nothing at all is written). */
#define EXPECT_LOG(want, ...)                                                                                                      \
    do {                                                                                                                           \
        struct capture c_;                                                                                                         \
        size_t len_;                                                                                                               \
        capture_start(&c_);                                                                                                        \
        p2m_log(__VA_ARGS__);                                                                                                      \
        char *out_ = capture_end(&c_, &len_);                                                                                      \
        expect_output(out_, len_, want);                                                                                           \
        free(out_);                                                                                                                \
    } while (0)

static void expect_output(const char *out, size_t len, const char *want)
{
    if (want == NULL) {
        CHECK_MSG(len == 0, "expected no output, got %s", check_bytes(out, len));
        return;
    }
    if (!CHECK_MSG(len > 0 && out[len - 1] == '\n' && count_newlines(out, len) == 1, "expected exactly one line, got %s",
                   check_bytes(out, len)))
        return;
    CHECK_MSG(strlen(out) == len, "output %s holds a NUL byte", check_bytes(out, len));
    const char *rest = check_ts(out);
    if (rest != NULL)
        CHECK_EQ_STR(rest, want);
}

static void test_format(void)
{
    /* the default level is info */
    CHECK_CTX("default level");
    EXPECT_LOG(NULL, P2M_LOG_DEBUG, "x", "k=%s", "v");
    EXPECT_LOG("level=info event=x k=v\n", P2M_LOG_INFO, "x", "k=%s", "v");

    CHECK_CTX("format");
    EXPECT_LOG("level=info event=lease_start port=20001 label=demo\n", P2M_LOG_INFO, "lease_start", "port=%d label=%s", 20001,
               "demo");
    EXPECT_LOG("level=warn event=x a=1 b=2\n", P2M_LOG_WARN, "x", "a=%d b=%d", 1, 2);
    EXPECT_LOG("level=error event=boom\n", P2M_LOG_ERROR, "boom", NULL);
    EXPECT_LOG("level=info event=x\n", P2M_LOG_INFO, "x", "%s", "");

    CHECK_CTX("P2M_LOG_ERR");
    {
        struct capture c;
        size_t len;
        capture_start(&c);
        P2M_LOG_ERR("oops", "why=%s", "because");
        char *out = capture_end(&c, &len);
        expect_output(out, len, "level=error event=oops why=because\n");
        free(out);
    }

    CHECK_CTX("filtering at warn");
    p2m_log_set_level(P2M_LOG_WARN);
    EXPECT_LOG(NULL, P2M_LOG_DEBUG, "x", NULL);
    EXPECT_LOG(NULL, P2M_LOG_INFO, "x", NULL);
    EXPECT_LOG("level=warn event=x\n", P2M_LOG_WARN, "x", NULL);
    EXPECT_LOG("level=error event=x\n", P2M_LOG_ERROR, "x", NULL);
    CHECK_CTX("filtering at error");
    p2m_log_set_level(P2M_LOG_ERROR);
    EXPECT_LOG(NULL, P2M_LOG_WARN, "x", NULL);
    EXPECT_LOG("level=error event=x\n", P2M_LOG_ERROR, "x", NULL);
    CHECK_CTX("filtering at debug");
    p2m_log_set_level(P2M_LOG_DEBUG);
    EXPECT_LOG("level=debug event=x\n", P2M_LOG_DEBUG, "x", NULL);
    p2m_log_set_level(P2M_LOG_INFO);
    EXPECT_LOG(NULL, P2M_LOG_DEBUG, "x", NULL);
    CHECK_CTX(NULL);
}

static void test_escaping(void)
{
    CHECK_CTX("escaping");
    EXPECT_LOG("level=info event=x v=a\\x0ab\\x01c\n", P2M_LOG_INFO, "x", "v=%s",
               "a\nb\x01"
               "c");
    EXPECT_LOG("level=info event=x v=a\\x0d\\x0alevel=error event=forged\n", P2M_LOG_INFO, "x", "v=%s",
               "a\r\nlevel=error event=forged");
    EXPECT_LOG("level=info event=x v=\\x7f\\x80\\xff\\x1b[31m\n", P2M_LOG_INFO, "x", "v=%s", "\x7f\x80\xff\x1b[31m");
    EXPECT_LOG("level=info event=x v=caf\\xc3\\xa9\n", P2M_LOG_INFO, "x", "v=%s", "caf\xc3\xa9");
    EXPECT_LOG("level=info event=x v=tab\\x09end\n", P2M_LOG_INFO, "x", "v=%s", "tab\tend");
    EXPECT_LOG("level=info event=a\\x0ab\n", P2M_LOG_INFO, "a\nb", NULL);
    EXPECT_LOG("level=info event=x v=~!\"#\\ end\n", P2M_LOG_INFO, "x", "v=%s", "~!\"#\\ end");

    /* a very long value still gives exactly one line */
    char *big = malloc(20000);
    memset(big, 'y', 19999);
    big[19999] = '\0';
    big[5000] = '\n';
    struct capture c;
    size_t len;
    capture_start(&c);
    p2m_log(P2M_LOG_INFO, "big", "v=%s", big);
    char *out = capture_end(&c, &len);
    CHECK_CTX("20000-byte value");
    CHECK_MSG(len > 0 && out[len - 1] == '\n' && count_newlines(out, len) == 1, "expected one line, got %zu bytes with %d newlines",
              len, count_newlines(out, len));
    CHECK_MSG(strncmp(out, "ts=", 3) == 0, "line does not start with ts=");
    free(out);

    /* and a value full of newlines */
    memset(big, '\n', 19999);
    capture_start(&c);
    p2m_log(P2M_LOG_INFO, "nl", "v=%s", big);
    out = capture_end(&c, &len);
    CHECK_CTX("19999 newlines");
    CHECK_MSG(len > 0 && out[len - 1] == '\n' && count_newlines(out, len) == 1, "expected one line, got %zu bytes with %d newlines",
              len, count_newlines(out, len));
    free(out);
    free(big);
    CHECK_CTX(NULL);
}

static void test_safe(void)
{
    CHECK_CTX("p2m_log_safe");
    char out[8];
    CHECK_EQ_STR(p2m_log_safe("a.b/c", 5, "/.", out, sizeof(out)), "a.b/c");
    CHECK_EQ_STR(p2m_log_safe("a b=\"c\"", 7, "/.", out, sizeof(out)), "a?b??c?");
    CHECK_EQ_STR(p2m_log_safe("x\0y", 3, "", out, sizeof(out)), "x?y");
    CHECK_EQ_STR(p2m_log_safe("\xff\n", 2, "-", out, sizeof(out)), "??");
    CHECK_EQ_STR(p2m_log_safe("", 0, "", out, sizeof(out)), "-");
    CHECK_EQ_STR(p2m_log_safe("abcdefghij", 10, "", out, sizeof(out)), "abcdefg"); /* cut at cap - 1 */
    CHECK_EQ_STR(p2m_log_safe("[::1]:80", 8, ".:_[]-", out, sizeof(out)), "[::1]:8");
    CHECK_CTX(NULL);
}

int main(void)
{
    test_safe();
    test_level_parse();
    test_format();
    test_escaping();
    return check_done("log");
}
