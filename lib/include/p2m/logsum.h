#ifndef P2M_LOGSUM_H
#define P2M_LOGSUM_H

#include <stddef.h>
#include <stdint.h>

/* A log summariser: keeps an event that outside input can repeat at will (a refused connection
 * from one address) from writing one log line per occurrence.
 *
 * Events are grouped by a key of opaque bytes (an address and a reason, say). For each event
 * p2m_logsum_event() answers whether to log it in full or only count it:
 *
 * - The first event of a key is logged in full; the following ones are counted.
 * - p2m_logsum_flush(), which the caller runs every interval_ms, reports every key with counted
 *   events (one report per key: the count and the caller's data of the last event counted) and
 *   starts the key's next interval, whose events are counted too. So a steady flood from one key
 *   makes one line in full, then one report per interval.
 * - A key whose interval passed with nothing counted is forgotten by the next flush (idle); its
 *   next event is logged in full again. A key flushed less than interval_ms after its full event
 *   is kept, so a key logs at most one event in full per interval_ms however often it flushes.
 * - Every event is either logged in full or counted, and every count is reported once: the events
 *   logged in full plus the counts reported equal the events.
 *
 * Memory is fixed at creation: at most max_keys keys, each with key_max bytes of key and
 * data_size bytes of caller data. An event for a new key when every slot is taken, or with a key
 * longer than key_max, goes to one overflow bucket: counted, never logged in full, and reported
 * by the flush with key NULL. Nothing is allocated after p2m_logsum_new().
 *
 * Pure: time comes in as now_ms (any monotonic millisecond clock; the relay passes
 * p2m_loop_now()), nothing reads a clock or logs. Not thread-safe. */

typedef struct p2m_logsum p2m_logsum_t;

typedef enum {
    P2M_LOGSUM_COUNTED = 0, /* only counted: a later flush reports it */
    P2M_LOGSUM_FULL = 1,    /* log this event in full */
} p2m_logsum_decision_t;

#define P2M_LOGSUM_KEYS_MAX (1u << 20) /* max_keys above this is refused */
#define P2M_LOGSUM_KEY_MAX 256         /* key_max above this is refused */
#define P2M_LOGSUM_DATA_MAX 1024       /* data_size above this is refused */

/* Called by p2m_logsum_flush() once per key with counted events. key (key_len bytes) is NULL for
 * the overflow bucket; count > 0 is the number of events counted (not logged in full) since the
 * key's last report; data (data_size bytes) is what the last counted event passed, or NULL when
 * none passed any. key and data are borrowed for the call only. The callback must not call into
 * the summariser. */
typedef void (*p2m_logsum_report_cb)(const void *key, size_t key_len, uint64_t count, const void *data, void *arg);

/* Creates a summariser for at most max_keys keys (1 .. P2M_LOGSUM_KEYS_MAX) of at most key_max
 * bytes (1 .. P2M_LOGSUM_KEY_MAX), with data_size bytes (0 .. P2M_LOGSUM_DATA_MAX) of caller data
 * kept per key, and an interval of interval_ms (> 0). Allocates everything it will ever use.
 * Returns it, or NULL with err (a bad parameter, or out of memory). */
p2m_logsum_t *p2m_logsum_new(size_t max_keys, size_t key_max, size_t data_size, uint64_t interval_ms, char *err);

/* Frees s; counts not yet flushed are lost (flush first). NULL is a no-op. */
void p2m_logsum_free(p2m_logsum_t *s);

/* One event for key (key_len bytes, borrowed) at now_ms. Returns P2M_LOGSUM_FULL when the caller
 * should log it in full, P2M_LOGSUM_COUNTED when it was counted instead; then data (data_size
 * bytes, copied) replaces the key's data for the report, unless it is NULL. A now_ms before the
 * key's interval began counts as no time passed. O(1) expected, no allocation. */
p2m_logsum_decision_t p2m_logsum_event(p2m_logsum_t *s, const void *key, size_t key_len, uint64_t now_ms, const void *data);

/* Reports (cb, in no particular order, then the overflow bucket last) every key with counted
 * events and resets their counts, starting their next interval at now_ms; forgets the keys whose
 * interval ended with nothing counted. Run it every interval_ms, and once more before
 * p2m_logsum_free() so that no count is lost. Returns the number of reports made. */
size_t p2m_logsum_flush(p2m_logsum_t *s, uint64_t now_ms, p2m_logsum_report_cb cb, void *arg);

/* Keys held now (at most max_keys), for tests and metrics. */
size_t p2m_logsum_keys(const p2m_logsum_t *s);

/* Events counted in the overflow bucket since the last flush. */
uint64_t p2m_logsum_overflow(const p2m_logsum_t *s);

#endif
