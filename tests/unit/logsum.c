/* Unit tests for lib/logsum.c against lib/include/p2m/logsum.h: scripted events and flushes with
 * the decision and the reports each must give (first event in full, repeats counted, a new
 * interval in full again, keys independent, the overflow bucket, idle keys forgotten), hostile
 * parameters and keys, and a long random run checking that no count is ever lost and that a
 * steady flood makes at most one line per interval. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/logsum.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC 1000u
#define IVL (10 * SEC)

/* Keys as the relay builds them: a 16-byte address (IPv4 mapped), then the reason. */
typedef struct {
    uint8_t b[16 + 16];
    size_t len;
} tkey_t;

static tkey_t mkkey(const char *spec)
{
    /* "A.B.C.D/reason" */
    tkey_t k = {.b = {[10] = 0xff, [11] = 0xff}};
    unsigned a, b, c, d;
    char reason[17] = "";
    if (sscanf(spec, "%u.%u.%u.%u/%16s", &a, &b, &c, &d, reason) != 5)
        abort();
    k.b[12] = (uint8_t)a, k.b[13] = (uint8_t)b, k.b[14] = (uint8_t)c, k.b[15] = (uint8_t)d;
    memcpy(k.b + 16, reason, strlen(reason));
    k.len = 16 + strlen(reason);
    return k;
}

static void key_name(const void *key, size_t len, char *out, size_t cap)
{
    const uint8_t *b = key;
    if (key == NULL) {
        snprintf(out, cap, "other");
        return;
    }
    if (len < 16) {
        snprintf(out, cap, "len%zu", len);
        return;
    }
    snprintf(out, cap, "%u.%u.%u.%u/%.*s", b[12], b[13], b[14], b[15], (int)(len - 16), (const char *)b + 16);
}

/* Reports collected by a flush, as "KEY=COUNT@DATA" items sorted and joined by spaces. */
typedef struct {
    char items[64][64];
    size_t n;
} reports_t;

static void on_report(const void *key, size_t key_len, uint64_t count, const void *data, void *arg)
{
    reports_t *r = arg;
    char name[48];
    key_name(key, key_len, name, sizeof(name));
    uint32_t d = 0;
    if (data != NULL)
        memcpy(&d, data, sizeof(d));
    if (r->n < 64)
        snprintf(r->items[r->n++], sizeof(r->items[0]), "%s=%llu@%u", name, (unsigned long long)count, (unsigned)d);
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(a, b);
}

static const char *reports_str(reports_t *r, char *out, size_t cap)
{
    qsort(r->items, r->n, sizeof(r->items[0]), cmp_item);
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < r->n && pos < cap; i++)
        pos += (size_t)snprintf(out + pos, cap - pos, "%s%s", i ? " " : "", r->items[i]);
    return out;
}

/* A scripted step: an event (key, time, data, expected decision), or a flush (key NULL) with the
 * reports it must make and the number of keys held after it. */
typedef struct {
    const char *key;
    uint64_t t;
    uint32_t data; /* 0: the event passes no data */
    int want;      /* event: P2M_LOGSUM_FULL / _COUNTED; flush: keys held after it */
    const char *reports;
} step_t;

#define EV(k, t, d, w)                                                                                                             \
    {                                                                                                                              \
        k, t, d, w, NULL                                                                                                           \
    }
#define FLUSH(t, keys, reports)                                                                                                    \
    {                                                                                                                              \
        NULL, t, 0, keys, reports                                                                                                  \
    }
enum { F = P2M_LOGSUM_FULL, C = P2M_LOGSUM_COUNTED };

typedef struct {
    const char *name;
    size_t max_keys;
    step_t steps[40];
} script_t;

static const script_t scripts[] = {
    {"first in full, repeats counted, reported at the flush",
     4,
     {EV("1.2.3.4/address", 0, 1, F), EV("1.2.3.4/address", 1, 2, C), EV("1.2.3.4/address", 5 * SEC, 3, C),
      EV("1.2.3.4/address", IVL - 1, 4, C), FLUSH(IVL, 1, "1.2.3.4/address=3@4"),
      /* the flood goes on: counted into the next report, not logged in full */
      EV("1.2.3.4/address", IVL + 1, 5, C), FLUSH(2 * IVL, 1, "1.2.3.4/address=1@5"),
      /* an interval with nothing: forgotten, and its next event is news again */
      FLUSH(3 * IVL, 0, ""), EV("1.2.3.4/address", 3 * IVL + 1, 6, F), EV("1.2.3.4/address", 3 * IVL + 2, 7, C),
      FLUSH(4 * IVL, 1, "1.2.3.4/address=1@7"), FLUSH(5 * IVL, 0, ""), FLUSH(6 * IVL, 0, "")}},
    {"a new interval logs in full again",
     4,
     {EV("1.2.3.4/address", 0, 1, F), EV("1.2.3.4/address", IVL - 1, 2, C), FLUSH(IVL, 1, "1.2.3.4/address=1@2"),
      FLUSH(2 * IVL, 0, ""),
      /* one event per interval, nothing counted: each one in full, no flush needed between */
      EV("5.6.7.8/address", 100, 1, F), EV("5.6.7.8/address", 100 + IVL, 2, F), EV("5.6.7.8/address", 100 + 2 * IVL, 3, F),
      EV("5.6.7.8/address", 100 + 3 * IVL - 1, 4, C), FLUSH(100 + 3 * IVL, 1, "5.6.7.8/address=1@4")}},
    {"an early flush keeps a key whose interval has not ended",
     4,
     {EV("1.2.3.4/limit", 1000, 1, F), FLUSH(2000, 1, ""), EV("1.2.3.4/limit", 5000, 2, C), EV("1.2.3.4/limit", IVL + 1000, 3, C),
      FLUSH(IVL + 2000, 1, "1.2.3.4/limit=2@3"), EV("1.2.3.4/limit", IVL + 2001, 4, C),
      FLUSH(2 * IVL + 2000, 1, "1.2.3.4/limit=1@4"), FLUSH(3 * IVL + 1999, 1, ""), FLUSH(3 * IVL + 2000, 0, "")}},
    {"reasons and addresses are independent",
     8,
     {EV("1.2.3.4/address", 0, 1, F), EV("1.2.3.4/limit", 1, 2, F), EV("1.2.3.5/address", 2, 3, F), EV("4.3.2.1/address", 3, 4, F),
      EV("1.2.3.4/address", 4, 5, C), EV("1.2.3.4/limit", 5, 6, C), EV("1.2.3.4/limit", 6, 7, C), EV("1.2.3.4/queue_full", 7, 8, F),
      FLUSH(IVL, 5, "1.2.3.4/address=1@5 1.2.3.4/limit=2@7"), FLUSH(2 * IVL, 0, "")}},
    {"table full: new keys go to the overflow bucket",
     2,
     {EV("10.0.0.1/address", 0, 1, F), EV("10.0.0.2/address", 1, 2, F), EV("10.0.0.3/address", 2, 3, C),
      EV("10.0.0.4/address", 3, 4, C), EV("10.0.0.3/limit", 4, 5, C), EV("10.0.0.1/address", 5, 6, C),
      FLUSH(IVL + 1, 1, "10.0.0.1/address=1@6 other=3@5"),
      /* 10.0.0.2 is forgotten (idle), 10.0.0.1 kept (reported): one slot for the next newcomer */
      EV("10.0.0.3/address", IVL + 2, 7, F), EV("10.0.0.4/address", IVL + 3, 8, C), FLUSH(2 * IVL + 1, 1, "other=1@8"),
      FLUSH(3 * IVL + 2, 0, "")}},
    {"events without data report none",
     4,
     {EV("1.2.3.4/address", 0, 0, F), EV("1.2.3.4/address", 1, 0, C), FLUSH(IVL, 1, "1.2.3.4/address=1@0"),
      EV("1.2.3.4/address", IVL + 1, 9, C), EV("1.2.3.4/address", IVL + 2, 0, C), FLUSH(2 * IVL, 1, "1.2.3.4/address=2@9")}},
    {"a clock that steps back counts as no time passed",
     4,
     {EV("1.2.3.4/address", 50 * SEC, 1, F), EV("1.2.3.4/address", 10 * SEC, 2, C), FLUSH(20 * SEC, 1, "1.2.3.4/address=1@2"),
      FLUSH(21 * SEC, 1, ""), FLUSH(30 * SEC, 0, "")}},
};

static void run_scripts(void)
{
    char err[P2M_ERR_LEN] = "";
    for (size_t si = 0; si < sizeof(scripts) / sizeof(scripts[0]); si++) {
        const script_t *sc = &scripts[si];
        p2m_logsum_t *s = p2m_logsum_new(sc->max_keys, 32, sizeof(uint32_t), IVL, err);
        CHECK_CTX("script %zu (%s)", si, sc->name);
        if (!CHECK(s != NULL))
            continue;
        uint64_t events = 0, full = 0, reported = 0;
        for (size_t i = 0; i < sizeof(sc->steps) / sizeof(sc->steps[0]) && (sc->steps[i].key || sc->steps[i].reports); i++) {
            const step_t *st = &sc->steps[i];
            CHECK_CTX("script %zu (%s) step %zu at %llu ms", si, sc->name, i, (unsigned long long)st->t);
            if (st->key != NULL) {
                tkey_t k = mkkey(st->key);
                int got = p2m_logsum_event(s, k.b, k.len, st->t, st->data ? &st->data : NULL);
                CHECK_MSG(got == st->want, "event %s: expected %s, got %s", st->key, st->want == F ? "full" : "counted",
                          got == F ? "full" : "counted");
                events++;
                full += got == F;
                continue;
            }
            reports_t r = {.n = 0};
            size_t n = p2m_logsum_flush(s, st->t, on_report, &r);
            CHECK_EQ_INT(n, r.n);
            for (size_t j = 0; j < r.n; j++)
                reported += strtoull(strchr(r.items[j], '=') + 1, NULL, 10);
            char got[1024];
            CHECK_EQ_STR(reports_str(&r, got, sizeof(got)), st->reports);
            CHECK_EQ_INT(p2m_logsum_keys(s), st->want);
            CHECK_EQ_INT(p2m_logsum_overflow(s), 0);
        }
        CHECK_CTX("script %zu (%s): totals", si, sc->name);
        /* The scripts end with a flush that reports everything: nothing may be left over. */
        CHECK_EQ_INT(full + reported, events);
        p2m_logsum_free(s);
    }
    CHECK_CTX(NULL);
}

static void test_params(void)
{
    const struct {
        size_t keys, key_max, data;
        uint64_t ivl;
        const char *want; /* NULL: accepted */
    } rows[] = {
        {1, 1, 0, 1, NULL},
        {4096, 48, 72, 10000, NULL},
        {P2M_LOGSUM_KEYS_MAX, 1, 0, 1, NULL},
        {1, P2M_LOGSUM_KEY_MAX, P2M_LOGSUM_DATA_MAX, UINT64_MAX, NULL},
        {0, 32, 0, 1000, "max_keys"},
        {P2M_LOGSUM_KEYS_MAX + 1, 32, 0, 1000, "max_keys"},
        {SIZE_MAX, 32, 0, 1000, "max_keys"},
        {16, 0, 0, 1000, "key_max"},
        {16, P2M_LOGSUM_KEY_MAX + 1, 0, 1000, "key_max"},
        {16, 32, P2M_LOGSUM_DATA_MAX + 1, 1000, "data_size"},
        {16, 32, SIZE_MAX, 1000, "data_size"},
        {16, 32, 0, 0, "interval_ms"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("params row %zu", i);
        p2m_logsum_t *s = p2m_logsum_new(rows[i].keys, rows[i].key_max, rows[i].data, rows[i].ivl, err);
        if (rows[i].want == NULL) {
            if (CHECK_MSG(s != NULL, "refused: %s", err)) {
                CHECK_EQ_INT(p2m_logsum_keys(s), 0);
                CHECK_EQ_INT(p2m_logsum_event(s, "k", 1, 0, NULL), F);
            }
        } else {
            CHECK(s == NULL);
            check_refusal(-1, err, rows[i].want);
        }
        p2m_logsum_free(s);
    }
    p2m_logsum_free(NULL);
    CHECK_CTX(NULL);
}

static void test_hostile_keys(void)
{
    char err[P2M_ERR_LEN] = "";
    p2m_logsum_t *s = p2m_logsum_new(4, 8, 0, IVL, err);
    if (!CHECK(s != NULL))
        return;
    /* Exactly key_max bytes is a key; one more goes to the overflow bucket. Keys are bytes: NUL
     * inside, and the empty key, are keys like any other. */
    char *k8 = check_exact_copy("\0abcdefg", 8), *k9 = check_exact_copy("\0abcdefgh", 9), *k0 = check_exact_copy("", 0);
    CHECK_EQ_INT(p2m_logsum_event(s, k8, 8, 0, NULL), F);
    CHECK_EQ_INT(p2m_logsum_event(s, k8, 8, 1, NULL), C);
    CHECK_EQ_INT(p2m_logsum_event(s, k8, 7, 2, NULL), F); /* a prefix is another key */
    CHECK_EQ_INT(p2m_logsum_event(s, k9, 9, 3, NULL), C);
    CHECK_EQ_INT(p2m_logsum_event(s, k9, 9, 4, NULL), C);
    CHECK_EQ_INT(p2m_logsum_overflow(s), 2);
    CHECK_EQ_INT(p2m_logsum_event(s, k0, 0, 5, NULL), F);
    CHECK_EQ_INT(p2m_logsum_event(s, k0, 0, 6, NULL), C);
    CHECK_EQ_INT(p2m_logsum_keys(s), 3);
    reports_t r = {.n = 0};
    CHECK_EQ_INT(p2m_logsum_flush(s, IVL, on_report, &r), 3);
    char got[1024];
    CHECK_EQ_STR(reports_str(&r, got, sizeof(got)), "len0=1@0 len8=1@0 other=2@0");
    /* Times at both ends of the clock. */
    CHECK_EQ_INT(p2m_logsum_event(s, "x", 1, UINT64_MAX, NULL), F);
    CHECK_EQ_INT(p2m_logsum_event(s, "x", 1, UINT64_MAX, NULL), C);
    r.n = 0;
    CHECK_EQ_INT(p2m_logsum_flush(s, UINT64_MAX, on_report, &r), 1);
    CHECK_EQ_STR(reports_str(&r, got, sizeof(got)), "len1=1@0");
    CHECK_EQ_INT(p2m_logsum_keys(s), 1);
    free(k8);
    free(k9);
    free(k0);
    p2m_logsum_free(s);
}

/* A small deterministic generator, so that a failure is reproducible. */
static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void count_report(const void *key, size_t key_len, uint64_t count, const void *data, void *arg)
{
    (void)key, (void)key_len, (void)data;
    uint64_t *sum = arg;
    *sum += count;
}

/* Many keys (more than fit), random times and flushes: events == full + reported, the table
 * never holds more than max_keys, and every key is forgotten once everything goes quiet. */
static void test_random(void)
{
    char err[P2M_ERR_LEN] = "";
    const size_t max_keys = 64;
    p2m_logsum_t *s = p2m_logsum_new(max_keys, 20, 0, IVL, err);
    if (!CHECK(s != NULL))
        return;
    uint64_t now = 0, next_flush = IVL, events = 0, full = 0, reported = 0;
    size_t max_held = 0;
    for (int i = 0; i < 200000; i++) {
        now += rnd(20);
        if (now >= next_flush) {
            p2m_logsum_flush(s, now, count_report, &reported);
            next_flush = now + IVL - 500 + rnd(1000); /* a timer is never exact */
        }
        uint8_t key[20] = {0};
        key[0] = (uint8_t)rnd(100); /* 100 addresses, 2 reasons: more keys than slots */
        key[19] = (uint8_t)rnd(2);
        full += p2m_logsum_event(s, key, 1 + rnd(20), now, NULL) == P2M_LOGSUM_FULL;
        events++;
        if (p2m_logsum_keys(s) > max_held)
            max_held = p2m_logsum_keys(s);
    }
    p2m_logsum_flush(s, now, count_report, &reported);
    CHECK_EQ_INT(full + reported, events);
    CHECK_EQ_INT(max_held, max_keys);
    CHECK_EQ_INT(p2m_logsum_flush(s, now + IVL, count_report, &reported), 0);
    CHECK_EQ_INT(p2m_logsum_keys(s), 0);
    CHECK_EQ_INT(full + reported, events);
    p2m_logsum_free(s);
}

/* One key flooded for E ms at various rates and flush phases: the lines it makes (events in full
 * plus reports) stay within 1 + ceil(E / interval) + 1, what tests/e2e/49-relay-log-flood.sh
 * asserts from the relay's log. */
static void test_flood_bound(void)
{
    char err[P2M_ERR_LEN] = "";
    for (int round = 0; round < 200; round++) {
        p2m_logsum_t *s = p2m_logsum_new(16, 4, 0, IVL, err);
        if (!CHECK(s != NULL))
            return;
        uint64_t start = 1000000 + rnd(IVL), len = 1 + rnd(8 * IVL), gap = 1 + rnd(round < 100 ? 50 : 3000);
        uint64_t next_flush = 1000000 + rnd(IVL), lines = 0, full = 0, events = 0, reported = 0;
        for (uint64_t now = start < next_flush ? start : next_flush; now < start + len + 3 * IVL; now++) {
            if (now >= start && now < start + len && (now - start) % gap == 0) {
                int f = p2m_logsum_event(s, "flod", 4, now, NULL) == P2M_LOGSUM_FULL;
                lines += f;
                full += f;
                events++;
            }
            if (now == next_flush) {
                lines += p2m_logsum_flush(s, now, count_report, &reported);
                next_flush = now + IVL + rnd(30); /* late, never early */
            }
        }
        uint64_t bound = 1 + (len + IVL - 1) / IVL + 1;
        CHECK_CTX("flood round %d: %llu ms, an event every %llu ms", round, (unsigned long long)len, (unsigned long long)gap);
        CHECK_MSG(lines <= bound, "%llu lines, bound %llu", (unsigned long long)lines, (unsigned long long)bound);
        CHECK_EQ_INT(full + reported, events);
        CHECK_EQ_INT(p2m_logsum_keys(s), 0);
        p2m_logsum_free(s);
    }
    CHECK_CTX(NULL);
}

int main(void)
{
    run_scripts();
    test_params();
    test_hostile_keys();
    test_random();
    test_flood_bound();
    return check_done("logsum");
}
