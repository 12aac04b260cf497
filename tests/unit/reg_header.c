/* Unit tests for pod/reg_header.c against pod/reg_header.h: the registrar's P2M-Session,
 * P2M-Session-Expires and Retry-After headers, with hostile rows (name prefixes, case, no colon,
 * blanks, CR/LF variants, NUL bytes, over-long values, signs, overflow, trailing garbage, HTTP-dates,
 * duplicates, a second response after a 100). */

#include "check.h"
#include "reg_header.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LIT(s) s, sizeof(s) - 1

/* --- reg_header_value ---------------------------------------------------------------------------- */

struct value_row {
    const char *line;
    size_t len;
    const char *name;
    int rc; /* the value's length, or -1 */
    const char *value;
};

static void test_value(void)
{
    static const struct value_row rows[] = {
        {LIT("P2M-Session: abc\r\n"), "P2M-Session", 3, "abc"},
        {LIT("p2m-session: abc\r\n"), "P2M-Session", 3, "abc"},
        {LIT("P2M-SESSION:abc"), "P2M-Session", 3, "abc"},
        {LIT("P2M-Session: abc\n"), "P2M-Session", 3, "abc"},
        {LIT("P2M-Session: abc\r"), "P2M-Session", 3, "abc"},
        {LIT("P2M-Session: abc\r\n\r\n"), "P2M-Session", 3, "abc"},
        {LIT("P2M-Session: \t a b \t\r\n"), "P2M-Session", 3, "a b"},
        {LIT("P2M-Session: a\rb\r\n"), "P2M-Session", 3, "a\rb"},
        {LIT("P2M-Session: a\0b\r\n"), "P2M-Session", 3, "a\0b"},
        {LIT("P2M-Session:: x\r\n"), "P2M-Session", 3, ": x"},
        {LIT("P2M-Session:\r\n"), "P2M-Session", 0, ""},
        {LIT("P2M-Session:    \t\r\n"), "P2M-Session", 0, ""},
        {LIT("P2M-Session:"), "P2M-Session", 0, ""},
        /* another header, or not a header line */
        {LIT(""), "P2M-Session", -1, NULL},
        {LIT("P2M-Session"), "P2M-Session", -1, NULL},
        {LIT("P2M-Session\r\n"), "P2M-Session", -1, NULL},
        {LIT("P2M-Session abc\r\n"), "P2M-Session", -1, NULL},
        {LIT("P2M-Session : abc\r\n"), "P2M-Session", -1, NULL},
        {LIT(" P2M-Session: abc\r\n"), "P2M-Session", -1, NULL},
        {LIT("XP2M-Session: abc\r\n"), "P2M-Session", -1, NULL},
        {LIT("P2M-Sessio: abc\r\n"), "P2M-Session", -1, NULL},
        {LIT("P2M-Session-Expires: 60\r\n"), "P2M-Session", -1, NULL},
        {LIT("P2M-Session: 60\r\n"), "P2M-Session-Expires", -1, NULL},
        {LIT("P2M\0Session: abc\r\n"), "P2M-Session", -1, NULL},
        {LIT("P2M_Session: abc\r\n"), "P2M-Session", -1, NULL},
        {LIT(": abc\r\n"), "P2M-Session", -1, NULL},
        {LIT("Retry-After: 5\r\n"), "Retry-After", 1, "5"},
        {LIT("RETRY-AFTER:5"), "Retry-After", 1, "5"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct value_row *r = &rows[i];
        const char *v = NULL;
        CHECK_CTX("value row %zu %s name %s", i, check_bytes(r->line, r->len), r->name);
        char *in = check_exact_copy(r->line, r->len);
        int rc = reg_header_value(in, r->len, r->name, &v);
        if (CHECK_EQ_INT(rc, r->rc) && rc >= 0) {
            CHECK(v >= in && v + rc <= in + r->len);
            CHECK_MSG(memcmp(v, r->value, (size_t)rc) == 0, "value %s, want %s", check_bytes(v, (size_t)rc),
                      check_bytes(r->value, (size_t)rc));
        }
        free(in);
    }
    CHECK_CTX(NULL);
}

/* --- reg_header_seconds -------------------------------------------------------------------------- */

struct seconds_row {
    const char *v;
    int len;
    long max, want;
};

static void test_seconds(void)
{
    static const struct seconds_row rows[] = {
        {LIT("0"), 3600, 0},
        {LIT("1"), 3600, 1},
        {LIT("60"), 3600, 60},
        {LIT("3599"), 3600, 3599},
        {LIT("3600"), 3600, 3600},
        {LIT("3601"), 3600, 3600},
        {LIT("000000060"), 3600, 60},
        {LIT("999999999"), 3600, 3600},
        {LIT("999999999"), 999999999, 999999999},
        {LIT("2592000"), REG_SESSION_TTL_MAX, 2592000},
        {LIT("2592001"), REG_SESSION_TTL_MAX, 2592000},
        /* 10 digits and more: not delay-seconds here, even with leading zeros */
        {LIT("1000000000"), 3600, -1},
        {LIT("0000000060"), 3600, -1},
        {LIT("99999999999999999999"), 3600, -1},
        {LIT("18446744073709551617"), 3600, -1},
        {LIT(""), 3600, -1},
        {LIT("-1"), 3600, -1},
        {LIT("-0"), 3600, -1},
        {LIT("+5"), 3600, -1},
        {LIT(" 5"), 3600, -1},
        {LIT("5 "), 3600, -1},
        {LIT("5\t"), 3600, -1},
        {LIT("5s"), 3600, -1},
        {LIT("5.0"), 3600, -1},
        {LIT("1e3"), 3600, -1},
        {LIT("0x10"), 3600, -1},
        {LIT("5,6"), 3600, -1},
        {LIT("5\0"), 3600, -1},
        {LIT("\0"
             "5"),
         3600, -1},
        {LIT("\xd9\xa1"), 3600, -1}, /* ARABIC-INDIC DIGIT ONE */
        {LIT("Fri, 31 Dec 1999 23:59:59 GMT"), 3600, -1},
        {"5", 0, 3600, -1},
        {"5", -1, 3600, -1},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct seconds_row *r = &rows[i];
        CHECK_CTX("seconds row %zu %s len %d max %ld", i, check_bytes(r->v, r->len > 0 ? (size_t)r->len : 0), r->len, r->max);
        char *in = check_exact_copy(r->v, r->len > 0 ? (size_t)r->len : 0);
        CHECK_EQ_INT(reg_header_seconds(in, r->len, r->max), r->want);
        free(in);
    }
    CHECK_CTX(NULL);
}

/* --- reg_session_valid --------------------------------------------------------------------------- */

static void test_session_valid(void)
{
    static const struct {
        const char *s;
        int want;
    } rows[] = {
        {"a", 1},
        {"abc.DEF_123~+/=-", 1},
        {"dGVzdA==", 1},
        {"-", 1},
        {"", 0},
        {"abc def", 0},
        {" abc", 0},
        {"abc;", 0},
        {"abc,def", 0},
        {"a\"b", 0},
        {"a\tb", 0},
        {"a\rb", 0},
        {"a\nb", 0},
        {"a:b", 0},
        {"a\\b", 0},
        {"p\xc3\xb6"
         "d",
         0},
        {"\xff", 0},
        {"a\x7f", 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("session row %zu %s", i, check_str(rows[i].s));
        CHECK_EQ_INT(reg_session_valid(rows[i].s), rows[i].want);
    }
    char s[REG_SESSION_MAX + 2];
    memset(s, 'x', sizeof(s));
    s[REG_SESSION_MAX] = '\0';
    CHECK_CTX("session of %d bytes", REG_SESSION_MAX);
    CHECK_EQ_INT(reg_session_valid(s), 1);
    s[REG_SESSION_MAX] = 'x';
    s[REG_SESSION_MAX + 1] = '\0';
    CHECK_CTX("session of %d bytes", REG_SESSION_MAX + 1);
    CHECK_EQ_INT(reg_session_valid(s), 0);
    CHECK_CTX(NULL);
}

/* --- reg_header_parse: a response's lines -------------------------------------------------------- */

/* Feeds NUL-free lines (strings) to reg_header_parse one by one, each from its own exact allocation. */
static void feed(reg_header_t *h, const char *const *lines)
{
    for (size_t i = 0; lines[i] != NULL; i++) {
        size_t len = strlen(lines[i]);
        char *in = check_exact_copy(lines[i], len);
        reg_header_parse(h, in, len);
        free(in);
    }
}

static void feed_bytes(reg_header_t *h, const char *line, size_t len)
{
    char *in = check_exact_copy(line, len);
    reg_header_parse(h, in, len);
    free(in);
}

static void expect(const reg_header_t *h, const char *session, unsigned ttl, long retry_after)
{
    CHECK_EQ_STR(h->session, session);
    CHECK_EQ_INT(h->session_ttl, ttl);
    CHECK_EQ_INT(h->retry_after, retry_after);
}

struct seq_row {
    const char *what;
    const char *lines[8];
    const char *session;
    unsigned ttl;
    long retry_after;
};

static void test_parse_sequences(void)
{
    char long_session[300], over_session[300];
    memset(long_session, 0, sizeof(long_session));
    memset(over_session, 0, sizeof(over_session));
    snprintf(long_session, sizeof(long_session), "P2M-Session: %0*d\r\n", REG_SESSION_MAX, 7);
    snprintf(over_session, sizeof(over_session), "P2M-Session: %0*d\r\n", REG_SESSION_MAX + 1, 7);
    char want_long[REG_SESSION_MAX + 1];
    snprintf(want_long, sizeof(want_long), "%0*d", REG_SESSION_MAX, 7);

    const struct seq_row rows[] = {
        {"nothing", {NULL}, "", 0, -1},
        {"200 with session",
         {"HTTP/2 200\r\n", "P2M-Session: tok.1\r\n", "P2M-Session-Expires: 3600\r\n", "\r\n", NULL},
         "tok.1",
         3600,
         -1},
        {"order does not matter", {"P2M-Session-Expires: 60\r\n", "p2m-session: T\r\n", NULL}, "T", 60, -1},
        {"429", {"HTTP/1.1 429 Too Many Requests\r\n", "Retry-After: 120\r\n", NULL}, "", 0, 120},
        {"retry-after capped", {"retry-after: 7200\r\n", NULL}, "", 0, REG_RETRY_AFTER_MAX},
        {"retry-after 0", {"Retry-After: 0\r\n", NULL}, "", 0, 0},
        {"retry-after HTTP-date", {"Retry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\n", NULL}, "", 0, -1},
        {"retry-after negative", {"Retry-After: -5\r\n", NULL}, "", 0, -1},
        {"retry-after overflow", {"Retry-After: 99999999999999999999\r\n", NULL}, "", 0, -1},
        {"retry-after trailing garbage", {"Retry-After: 60s\r\n", NULL}, "", 0, -1},
        {"retry-after blanks around", {"Retry-After: \t 60 \t\r\n", NULL}, "", 0, 60},
        {"retry-after blank inside", {"Retry-After: 6 0\r\n", NULL}, "", 0, -1},
        {"retry-after empty", {"Retry-After:\r\n", NULL}, "", 0, -1},
        {"retry-after a bad second drops the first", {"Retry-After: 60\r\n", "Retry-After: soon\r\n", NULL}, "", 0, -1},
        {"expires capped", {"P2M-Session-Expires: 99999999\r\n", NULL}, "", REG_SESSION_TTL_MAX, -1},
        {"expires 0", {"P2M-Session-Expires: 0\r\n", NULL}, "", 0, -1},
        {"expires negative", {"P2M-Session-Expires: -60\r\n", NULL}, "", 0, -1},
        {"expires signed", {"P2M-Session-Expires: +60\r\n", NULL}, "", 0, -1},
        {"expires overflow", {"P2M-Session-Expires: 18446744073709551616\r\n", NULL}, "", 0, -1},
        {"expires LF only", {"P2M-Session-Expires: 60\n", NULL}, "", 60, -1},
        {"expires no line end", {"P2M-Session-Expires: 60", NULL}, "", 60, -1},
        {"expires CR CR LF", {"P2M-Session-Expires: 60\r\r\n", NULL}, "", 60, -1},
        {"expires is not a session", {"P2M-Session-Expires: abc\r\n", NULL}, "", 0, -1},
        {"a session named like expires is not an expiry", {"P2M-Session: 60\r\n", NULL}, "60", 0, -1},
        {"session with blanks inside", {"P2M-Session: a b\r\n", NULL}, "", 0, -1},
        {"session with a semicolon", {"P2M-Session: abc; Path=/\r\n", NULL}, "", 0, -1},
        {"session quoted", {"P2M-Session: \"abc\"\r\n", NULL}, "", 0, -1},
        {"session empty", {"P2M-Session:\r\n", NULL}, "", 0, -1},
        {"session of 128", {long_session, NULL}, want_long, 0, -1},
        {"session of 129", {over_session, NULL}, "", 0, -1},
        {"duplicate sessions: the last wins", {"P2M-Session: one\r\n", "P2M-Session: two\r\n", NULL}, "two", 0, -1},
        {"a bad duplicate leaves none", {"P2M-Session: one\r\n", "P2M-Session: t;o\r\n", NULL}, "", 0, -1},
        {"an empty duplicate leaves none", {"P2M-Session: one\r\n", "P2M-Session: \r\n", NULL}, "", 0, -1},
        {"an over-long duplicate leaves none", {"P2M-Session: one\r\n", over_session, NULL}, "", 0, -1},
        {"no colon", {"P2M-Session abc\r\n", "Retry-After 5\r\n", NULL}, "", 0, -1},
        {"blank before colon", {"P2M-Session : abc\r\n", NULL}, "", 0, -1},
        {"folded line", {" P2M-Session: abc\r\n", "\tRetry-After: 5\r\n", NULL}, "", 0, -1},
        {"other headers", {"Content-Type: text/plain\r\n", "X-P2M-Session: abc\r\n", "Session: abc\r\n", NULL}, "", 0, -1},
        {"a second response resets",
         {"HTTP/1.1 100 Continue\r\n", "P2M-Session: early\r\n", "Retry-After: 5\r\n", "P2M-Session-Expires: 60\r\n", "\r\n",
          "HTTP/1.1 200 OK\r\n", NULL},
         "",
         0,
         -1},
        {"status line in lower case is not one", {"P2M-Session: a\r\n", "http/1.1 200 OK\r\n", NULL}, "a", 0, -1},
        {"bare HTTP/ resets", {"P2M-Session: a\r\n", "HTTP/", NULL}, "", 0, -1},
        {"HTTP without slash does not", {"P2M-Session: a\r\n", "HTTP", NULL}, "a", 0, -1},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        reg_header_t h;
        CHECK_CTX("sequence %zu: %s", i, rows[i].what);
        memset(&h, 0x5a, sizeof(h));
        reg_header_reset(&h);
        feed(&h, rows[i].lines);
        expect(&h, rows[i].session, rows[i].ttl, rows[i].retry_after);
    }
    CHECK_CTX(NULL);
}

/* P2M-Connections (PROTOCOL 1.3): 1 to REG_CONNECTIONS_MAX digits-only, anything else reads as
 * absent (0), never cut to the maximum; the other fields untouched; a status line resets it. */
static void test_parse_connections(void)
{
    static const struct {
        const char *line;
        unsigned want;
    } rows[] = {
        {"P2M-Connections: 16\r\n", 16},       {"p2m-connections:1", 1},
        {"P2M-Connections: 32\r\n", 32},       {"P2M-Connections: \t 7 \t\r\n", 7},
        {"P2M-Connections: 0\r\n", 0},         {"P2M-Connections: 33\r\n", 0},
        {"P2M-Connections: 999999999\r\n", 0}, {"P2M-Connections: 99999999999999999999\r\n", 0},
        {"P2M-Connections: -1\r\n", 0},        {"P2M-Connections: +5\r\n", 0},
        {"P2M-Connections: 5x\r\n", 0},        {"P2M-Connections: 1 6\r\n", 0},
        {"P2M-Connections:\r\n", 0},           {"P2M-Connection: 5\r\n", 0},
        {"P2M-Connectionsx: 5\r\n", 0},        {"P2M-Connections 5\r\n", 0},
        {" P2M-Connections: 5\r\n", 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        reg_header_t h;
        const char *lines[] = {"P2M-Session: abc\r\n", "Retry-After: 9\r\n", rows[i].line, NULL};
        CHECK_CTX("connections row %zu: %s", i, check_bytes(rows[i].line, strlen(rows[i].line)));
        memset(&h, 0x5a, sizeof(h));
        reg_header_reset(&h);
        feed(&h, lines);
        CHECK_EQ_INT(h.connections, rows[i].want);
        expect(&h, "abc", 0, 9);
    }
    reg_header_t h;
    const char *again[] = {"P2M-Connections: 4\r\n", "P2M-Connections: x\r\n", NULL};
    CHECK_CTX("a bad second P2M-Connections drops the first");
    reg_header_reset(&h);
    feed(&h, again);
    CHECK_EQ_INT(h.connections, 0);
    const char *reset[] = {"P2M-Connections: 4\r\n", "HTTP/1.1 200 OK\r\n", NULL};
    CHECK_CTX("a status line resets P2M-Connections");
    reg_header_reset(&h);
    feed(&h, reset);
    CHECK_EQ_INT(h.connections, 0);
    CHECK_CTX(NULL);
}

/* P2M-Waiting and P2M-Waited (PROTOCOL 1.3): 1 to 9 digits and nothing else (the registrar cuts a
 * larger count to 999999999), anything else reads as absent (-1); the other fields untouched; a
 * status line resets them. */
static void test_parse_demand(void)
{
    static const struct {
        const char *name;
        const char *value;
        long want;
    } rows[] = {
        {"P2M-Waiting", "0", 0},
        {"P2M-Waiting", "196", 196},
        {"p2m-waiting", "7", 7},
        {"P2M-Waiting", " \t 12 \t", 12},
        {"P2M-Waiting", "999999999", REG_WAITING_MAX},
        {"P2M-Waiting", "000000007", 7},
        {"P2M-Waiting", "1000000000", -1}, /* ten digits: not a count we read */
        {"P2M-Waiting", "99999999999999999999", -1},
        {"P2M-Waiting", "-1", -1},
        {"P2M-Waiting", "+5", -1},
        {"P2M-Waiting", "5x", -1},
        {"P2M-Waiting", "1 6", -1},
        {"P2M-Waiting", "", -1},
        {"P2M-Waiting", "0x10", -1},
        {"P2M-Waited", "0", 0},
        {"P2M-Waited", "123456789", 123456789},
        {"P2M-Waited", "12e3", -1},
        {"P2M-Waited", "", -1},
    };
    char line[128];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        reg_header_t h;
        int waiting = strncasecmp(rows[i].name, "P2M-Waiting", 11) == 0;
        snprintf(line, sizeof(line), "%s:%s\r\n", rows[i].name, rows[i].value);
        const char *lines[] = {"P2M-Session: abc\r\n", "Retry-After: 9\r\n", "P2M-Connections: 3\r\n", line, NULL};
        CHECK_CTX("demand row %zu: %s", i, check_bytes(line, strlen(line)));
        reg_header_reset(&h);
        feed(&h, lines);
        CHECK_EQ_INT(waiting ? h.waiting : h.waited, rows[i].want);
        CHECK_EQ_INT(waiting ? h.waited : h.waiting, -1);
        CHECK_EQ_INT(h.connections, 3);
        expect(&h, "abc", 0, 9);
    }
    reg_header_t h;
    const char *names[] = {"P2M-Waite: 5\r\n", "P2M-Waitingx: 5\r\n", "P2M-Waiting 5\r\n", " P2M-Waited: 5\r\n", NULL};
    CHECK_CTX("near misses are other headers");
    reg_header_reset(&h);
    feed(&h, names);
    CHECK_EQ_INT(h.waiting, -1);
    CHECK_EQ_INT(h.waited, -1);
    const char *reset[] = {"P2M-Waiting: 4\r\n", "P2M-Waited: 40\r\n", "HTTP/1.1 200 OK\r\n", NULL};
    CHECK_CTX("a status line resets both");
    reg_header_reset(&h);
    feed(&h, reset);
    CHECK_EQ_INT(h.waiting, -1);
    CHECK_EQ_INT(h.waited, -1);
    CHECK_CTX(NULL);
}

/* Lines with NUL bytes: the length covers them. */
static void test_parse_nul(void)
{
    reg_header_t h;

    CHECK_CTX("session with a NUL inside");
    reg_header_reset(&h);
    feed_bytes(&h, LIT("P2M-Session: abc\0def\r\n"));
    expect(&h, "", 0, -1);

    CHECK_CTX("session ending in a NUL");
    reg_header_reset(&h);
    feed_bytes(&h, LIT("P2M-Session: abc\0\r\n"));
    expect(&h, "", 0, -1);

    CHECK_CTX("a session with a NUL drops an earlier one");
    reg_header_reset(&h);
    feed_bytes(&h, LIT("P2M-Session: good\r\n"));
    feed_bytes(&h, LIT("P2M-Session: \0good\r\n"));
    expect(&h, "", 0, -1);

    CHECK_CTX("NUL in the name");
    reg_header_reset(&h);
    feed_bytes(&h, LIT("P2M-Sess\0on: abc\r\n"));
    expect(&h, "", 0, -1);

    CHECK_CTX("expiry with a NUL");
    reg_header_reset(&h);
    feed_bytes(&h, LIT("P2M-Session-Expires: 6\0"
                       "0\r\n"));
    expect(&h, "", 0, -1);

    CHECK_CTX("retry-after with a NUL");
    reg_header_reset(&h);
    feed_bytes(&h, LIT("Retry-After: 60\0\r\n"));
    expect(&h, "", 0, -1);

    CHECK_CTX("only a NUL");
    reg_header_reset(&h);
    feed_bytes(&h, LIT("\0"));
    expect(&h, "", 0, -1);

    CHECK_CTX("empty line");
    reg_header_reset(&h);
    feed_bytes(&h, "", 0);
    expect(&h, "", 0, -1);
    CHECK_CTX(NULL);
}

/* A header line far longer than any value we keep. */
static void test_parse_long(void)
{
    size_t n = 100000;
    char *line = malloc(n);
    if (line == NULL)
        abort();
    reg_header_t h;

    memcpy(line, "P2M-Session: ", 13);
    memset(line + 13, 'a', n - 15);
    memcpy(line + n - 2, "\r\n", 2);
    CHECK_CTX("session of %zu bytes", n - 15);
    reg_header_reset(&h);
    feed_bytes(&h, "P2M-Session: keep\r\n", 19);
    feed_bytes(&h, line, n);
    expect(&h, "", 0, -1);

    memcpy(line, "Retry-After: ", 13);
    memset(line + 13, '9', n - 15);
    CHECK_CTX("retry-after of %zu digits", n - 15);
    reg_header_reset(&h);
    feed_bytes(&h, line, n);
    expect(&h, "", 0, -1);

    memset(line + 13, ' ', n - 16);
    line[n - 3] = '7';
    CHECK_CTX("retry-after after %zu blanks", n - 16);
    reg_header_reset(&h);
    feed_bytes(&h, line, n);
    expect(&h, "", 0, 7);
    free(line);
    CHECK_CTX(NULL);
}

int main(void)
{
    test_value();
    test_seconds();
    test_session_valid();
    test_parse_sequences();
    test_parse_connections();
    test_parse_demand();
    test_parse_nul();
    test_parse_long();
    return check_done("reg_header");
}
