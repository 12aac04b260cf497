#ifndef POD_BACKOFF_H
#define POD_BACKOFF_H

/* The pod's one exponential backoff: the delay starts at a floor and doubles with each failure in
 * a row up to a ceiling. Used for the registrar (register.c), the relay and the local service
 * (pool.c), and certificate renewals (cert.c). No allocation, no clock: the caller arms a timer. */

#define POD_BACKOFF_MIN_MS 250
#define POD_BACKOFF_MAX_MS 30000

/* Zero-initialised, it is the default: POD_BACKOFF_MIN_MS doubling to POD_BACKOFF_MAX_MS, +-25%
 * jitter (so that pods restarted together do not retry together). min_ms and max_ms replace the
 * floor and the ceiling when not 0; exact drops the jitter (a delay measured in minutes). */
typedef struct {
    unsigned min_ms, max_ms;
    int exact;
    unsigned fails; /* failures in a row, capped */
} pod_backoff_t;

/* Counts one more failure and returns the delay before the next attempt, in ms. */
unsigned pod_backoff_next(pod_backoff_t *b);

/* A success: the next failure waits for the floor again. */
void pod_backoff_reset(pod_backoff_t *b);

#endif
