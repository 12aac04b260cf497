/* The log summariser (p2m/logsum.h): a fixed pool of entries, found through an open-addressing
 * index (linear probing, at most half full, so a probe always ends at an empty slot). Entries are
 * forgotten only by a flush, which then rebuilds the index: no tombstones, and no work on the
 * per-event path beyond one probe. */
#include "p2m/logsum.h"
#include "p2m/err.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct {
    uint64_t start_ms; /* the interval began: event logged in full, or the flush that last reported it */
    uint64_t counted;  /* events counted since the last report */
    uint64_t hash;
    uint16_t key_len;
    uint8_t has_data; /* a counted event passed data */
    uint8_t used;
} entry_t;

struct p2m_logsum {
    size_t max_keys, key_max, data_size;
    uint64_t interval_ms;
    uint64_t seed;
    entry_t *entries; /* max_keys */
    uint8_t *keys;    /* key_max bytes per entry */
    uint8_t *data;    /* data_size bytes per entry, then the overflow bucket's */
    uint32_t *index;  /* cap slots: entry number + 1, or 0 when empty */
    size_t cap;       /* a power of two, >= 2 * max_keys */
    uint32_t *unused; /* stack of free entry numbers */
    size_t nunused;
    uint64_t over_count; /* the overflow bucket */
    int over_has_data;
};

/* FNV-1a seeded per table and finished with a 64-bit mixer: the keys are outside input (peer
 * addresses), and a seed the sender cannot know keeps it from lining them up on one probe chain.
 * Even then a probe is bounded by the table, which is bounded by max_keys. */
static uint64_t hash_key(const p2m_logsum_t *s, const uint8_t *key, size_t len)
{
    uint64_t h = 1469598103934665603ull ^ s->seed;
    for (size_t i = 0; i < len; i++) {
        h ^= key[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static uint8_t *entry_key(const p2m_logsum_t *s, size_t i)
{
    return s->keys + i * s->key_max;
}

static uint8_t *entry_data(const p2m_logsum_t *s, size_t i)
{
    return s->data + i * s->data_size;
}

p2m_logsum_t *p2m_logsum_new(size_t max_keys, size_t key_max, size_t data_size, uint64_t interval_ms, char *err)
{
    if (max_keys < 1 || max_keys > P2M_LOGSUM_KEYS_MAX) {
        p2m_err(err, "logsum: max_keys %zu not in 1..%u", max_keys, P2M_LOGSUM_KEYS_MAX);
        return NULL;
    }
    if (key_max < 1 || key_max > P2M_LOGSUM_KEY_MAX) {
        p2m_err(err, "logsum: key_max %zu not in 1..%d", key_max, P2M_LOGSUM_KEY_MAX);
        return NULL;
    }
    if (data_size > P2M_LOGSUM_DATA_MAX) {
        p2m_err(err, "logsum: data_size %zu above %d", data_size, P2M_LOGSUM_DATA_MAX);
        return NULL;
    }
    if (interval_ms == 0) {
        p2m_err(err, "logsum: interval_ms must be above 0");
        return NULL;
    }
    p2m_logsum_t *ret = NULL;
    p2m_logsum_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        p2m_err(err, "logsum: out of memory for %zu keys", max_keys);
        goto Exit;
    }
    s->max_keys = max_keys;
    s->key_max = key_max;
    s->data_size = data_size;
    s->interval_ms = interval_ms;
    for (s->cap = 2; s->cap < 2 * max_keys; s->cap *= 2)
        ;
    s->entries = calloc(max_keys, sizeof(*s->entries));
    s->keys = malloc(max_keys * key_max);
    s->data = malloc((max_keys + 1) * data_size + 1); /* + 1: malloc(0) may return NULL */
    s->index = calloc(s->cap, sizeof(*s->index));
    s->unused = malloc(max_keys * sizeof(*s->unused));
    if (s->entries == NULL || s->keys == NULL || s->data == NULL || s->index == NULL || s->unused == NULL) {
        p2m_err(err, "logsum: out of memory for %zu keys", max_keys);
        goto Exit;
    }
    /* Popped from the end: entry 0 is used first, which keeps reports in creation order. */
    for (size_t i = 0; i < max_keys; i++)
        s->unused[i] = (uint32_t)(max_keys - 1 - i);
    s->nunused = max_keys;
    if (getrandom(&s->seed, sizeof(s->seed), GRND_NONBLOCK) != (ssize_t)sizeof(s->seed))
        s->seed = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ull; /* no entropy yet: still differs per process (ASLR) */
    ret = s;
Exit:
    if (ret == NULL)
        p2m_logsum_free(s);
    return ret;
}

void p2m_logsum_free(p2m_logsum_t *s)
{
    if (s == NULL)
        return;
    free(s->entries);
    free(s->keys);
    free(s->data);
    free(s->index);
    free(s->unused);
    free(s);
}

/* The index slot holding key, or the empty slot where it would go. */
static size_t probe(const p2m_logsum_t *s, const uint8_t *key, size_t len, uint64_t h)
{
    size_t mask = s->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t v = s->index[i];
        if (v == 0)
            return i;
        const entry_t *e = &s->entries[v - 1];
        if (e->hash == h && e->key_len == len && (len == 0 || memcmp(entry_key(s, v - 1), key, len) == 0))
            return i;
    }
}

/* Time since `since`; a clock read before it counts as none. */
static uint64_t elapsed(uint64_t now, uint64_t since)
{
    return now >= since ? now - since : 0;
}

p2m_logsum_decision_t p2m_logsum_event(p2m_logsum_t *s, const void *key, size_t key_len, uint64_t now_ms, const void *data)
{
    if (key_len <= s->key_max) {
        uint64_t h = hash_key(s, key, key_len);
        size_t slot = probe(s, key, key_len, h);
        if (s->index[slot] != 0) {
            size_t i = s->index[slot] - 1;
            entry_t *e = &s->entries[i];
            if (e->counted == 0 && elapsed(now_ms, e->start_ms) >= s->interval_ms) {
                /* Its last interval passed with nothing to report: this is news again. */
                e->start_ms = now_ms;
                return P2M_LOGSUM_FULL;
            }
            e->counted++;
            if (data != NULL && s->data_size > 0) {
                memcpy(entry_data(s, i), data, s->data_size);
                e->has_data = 1;
            }
            return P2M_LOGSUM_COUNTED;
        }
        if (s->nunused > 0) {
            size_t i = s->unused[--s->nunused];
            entry_t *e = &s->entries[i];
            *e = (entry_t){.start_ms = now_ms, .hash = h, .key_len = (uint16_t)key_len, .used = 1};
            if (key_len > 0)
                memcpy(entry_key(s, i), key, key_len);
            s->index[slot] = (uint32_t)(i + 1);
            return P2M_LOGSUM_FULL;
        }
    }
    /* Full table or an overlong key: counted where memory is already set aside. */
    s->over_count++;
    if (data != NULL && s->data_size > 0) {
        memcpy(entry_data(s, s->max_keys), data, s->data_size);
        s->over_has_data = 1;
    }
    return P2M_LOGSUM_COUNTED;
}

size_t p2m_logsum_flush(p2m_logsum_t *s, uint64_t now_ms, p2m_logsum_report_cb cb, void *arg)
{
    size_t reports = 0, forgotten = 0;
    for (size_t i = 0; i < s->max_keys; i++) {
        entry_t *e = &s->entries[i];
        if (!e->used)
            continue;
        if (e->counted > 0) {
            cb(entry_key(s, i), e->key_len, e->counted, e->has_data ? entry_data(s, i) : NULL, arg);
            reports++;
            /* The flood may go on: its next events are counted into the next report, so a steady
             * one makes a line per interval, not a line in full and a report. */
            e->counted = 0;
            e->has_data = 0;
            e->start_ms = now_ms;
        } else if (elapsed(now_ms, e->start_ms) >= s->interval_ms) {
            e->used = 0;
            s->unused[s->nunused++] = (uint32_t)i;
            forgotten++;
        }
    }
    if (s->over_count > 0) {
        cb(NULL, 0, s->over_count, s->over_has_data ? entry_data(s, s->max_keys) : NULL, arg);
        reports++;
        s->over_count = 0;
        s->over_has_data = 0;
    }
    if (forgotten > 0) {
        /* Linear probing cannot just empty a slot (a chain through it would break): rebuild. */
        memset(s->index, 0, s->cap * sizeof(*s->index));
        for (size_t i = 0; i < s->max_keys; i++) {
            const entry_t *e = &s->entries[i];
            if (e->used)
                s->index[probe(s, entry_key(s, i), e->key_len, e->hash)] = (uint32_t)(i + 1);
        }
    }
    return reports;
}

size_t p2m_logsum_keys(const p2m_logsum_t *s)
{
    return s->max_keys - s->nunused;
}

uint64_t p2m_logsum_overflow(const p2m_logsum_t *s)
{
    return s->over_count;
}
