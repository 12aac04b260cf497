#ifndef P2M_TEST_CHECK_H
#define P2M_TEST_CHECK_H

/* A header-only test helper for tests/unit/<module>.c.
 *
 *   CHECK_CTX("row %zu: %s", i, check_bytes(in, len));   what every following failure is about
 *   CHECK(cond);                                          any condition
 *   CHECK_EQ_INT(got, want);  CHECK_EQ_STR(got, want);    print what was expected and what came back
 *   CHECK_RC(rc, want, err);                              a 0/-1 return, printing err on mismatch
 *   return check_done("label");                          "unit.label: 57 passed, 0 failed"
 *   char *in = check_exact_copy(row, len);               input with no byte after it, for ASan
 *
 * Every macro evaluates to 1 on pass and 0 on failure, so a row can stop early with
 * `if (!CHECK_RC(...)) continue;`. Failures go to stdout, so tests may redirect stderr. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct check_state {
    unsigned passed;
    unsigned failed;
    char ctx[512];
};

/* One instance per test executable: a static inside a static inline function. */
static inline struct check_state *check_state(void)
{
    static struct check_state st;
    return &st;
}

/* Sets the context printed with every failure until the next call; NULL or "" clears it. */
static inline void check_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void check_ctx(const char *fmt, ...)
{
    struct check_state *st = check_state();
    st->ctx[0] = '\0';
    if (fmt == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->ctx, sizeof(st->ctx), fmt, ap);
    va_end(ap);
}
#define CHECK_CTX(...) check_ctx(__VA_ARGS__)

/* Renders len bytes of s as a quoted C literal (\xNN for anything unprintable) into one of a few
 * rotating static buffers, so that two renderings may appear in one printf. Long input is cut. */
static inline const char *check_bytes(const char *s, size_t len)
{
    static char bufs[4][400];
    static unsigned next;
    char *buf = bufs[next++ % 4];
    static const char hex[] = "0123456789abcdef";
    size_t pos = 0, cap = sizeof(bufs[0]);

    if (s == NULL)
        return "NULL";
    buf[pos++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (pos + 10 >= cap) {
            memcpy(buf + pos, "\"...", 5); /* cut, including the NUL */
            return buf;
        }
        if (c >= 0x20 && c <= 0x7e && c != '"' && c != '\\') {
            buf[pos++] = (char)c;
        } else {
            buf[pos++] = '\\';
            buf[pos++] = 'x';
            buf[pos++] = hex[c >> 4];
            buf[pos++] = hex[c & 0xf];
        }
    }
    buf[pos++] = '"';
    buf[pos] = '\0';
    return buf;
}

/* check_bytes() for a NUL-terminated string (or NULL). */
static inline const char *check_str(const char *s)
{
    return s == NULL ? "NULL" : check_bytes(s, strlen(s));
}

static inline int check_report(int ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static inline int check_report(int ok, const char *file, int line, const char *fmt, ...)
{
    struct check_state *st = check_state();
    if (ok) {
        st->passed++;
        return 1;
    }
    st->failed++;
    printf("FAIL %s:%d: ", file, line);
    if (st->ctx[0] != '\0')
        printf("[%s] ", st->ctx);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    return 0;
}

#define CHECK(cond) check_report(!!(cond), __FILE__, __LINE__, "%s: expected true, got false", #cond)

#define CHECK_MSG(cond, ...) check_report(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define CHECK_EQ_INT(got, want)                                                                                                    \
    __extension__({                                                                                                                \
        long long check_got_ = (long long)(got), check_want_ = (long long)(want);                                                  \
        check_report(check_got_ == check_want_, __FILE__, __LINE__, "%s: expected %lld, got %lld", #got, check_want_, check_got_); \
    })

#define CHECK_EQ_STR(got, want)                                                                                                    \
    __extension__({                                                                                                                \
        const char *check_got_ = (got), *check_want_ = (want);                                                                     \
        int check_ok_ =                                                                                                            \
            (check_got_ == NULL || check_want_ == NULL) ? check_got_ == check_want_ : strcmp(check_got_, check_want_) == 0;        \
        check_report(check_ok_, __FILE__, __LINE__, "%s: expected %s, got %s", #got, check_str(check_want_),                       \
                     check_str(check_got_));                                                                                       \
    })

/* For the 0/-1 convention: on mismatch also shows the err buffer the function filled. */
#define CHECK_RC(got, want, err)                                                                                                   \
    __extension__({                                                                                                                \
        int check_got_ = (got), check_want_ = (want);                                                                              \
        check_report(check_got_ == check_want_, __FILE__, __LINE__, "%s: expected %d, got %d (err: %s)", #got, check_want_,        \
                     check_got_, check_str(err));                                                                                  \
    })

/* Copies len bytes of in into a heap block of exactly that size (1 byte when len is 0), so that
 * ASan flags any read past them; aborts when out of memory. The caller frees it. */
static inline char *check_exact_copy(const void *in, size_t len)
{
    char *p = malloc(len == 0 ? 1 : len);
    if (p == NULL)
        abort();
    memcpy(p, in, len);
    return p;
}

/* Fills argv (cap entries) with prog, then the NULL-terminated char * arguments in ap, then NULL.
 * Returns argc. For the command-line parsers' tests. */
static inline int check_argv(char **argv, int cap, const char *prog, va_list ap)
{
    int argc = 0;
    argv[argc++] = (char *)prog;
    for (char *s; (s = va_arg(ap, char *)) != NULL && argc < cap - 1;)
        argv[argc++] = s;
    argv[argc] = NULL;
    return argc;
}

/* Prints an informational line that is not a check (e.g. a skipped cross-check). */
static inline void check_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void check_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("note: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

/* Prints the summary line and returns main's exit status: non-zero on any failure. */
static inline int check_done(const char *module)
{
    struct check_state *st = check_state();
    printf("unit.%s: %u passed, %u failed\n", module, st->passed, st->failed);
    fflush(stdout);
    return st->failed != 0 || st->passed == 0;
}

/* A refusal: rc is -1, and err a printable line that mentions want. */
static inline void check_refusal(int rc, const char *err, const char *want)
{
    CHECK_RC(rc, -1, err);
    CHECK_MSG(strstr(err, want) != NULL, "err %s does not mention %s", check_str(err), check_str(want));
    for (const char *p = err; *p != '\0'; p++)
        if (!CHECK_MSG(*p >= 0x20 && *p < 0x7f, "err is not printable: %s", check_str(err)))
            break;
}

#endif
