/* Exponential backoff with jitter: see backoff.h. */
#include "backoff.h"

#include <openssl/rand.h>
#include <stdint.h>
#include <stdlib.h>

#define BACKOFF_FAILS_CAP 64 /* far past any ceiling: the doubling stops there anyway */

unsigned pod_backoff_next(pod_backoff_t *b)
{
    uint64_t lo = b->min_ms != 0 ? b->min_ms : POD_BACKOFF_MIN_MS;
    uint64_t hi = b->max_ms != 0 ? b->max_ms : POD_BACKOFF_MAX_MS;
    uint64_t ms = lo;
    for (unsigned i = 0; i < b->fails && ms < hi; i++)
        ms *= 2;
    if (ms > hi)
        ms = hi;
    if (b->fails < BACKOFF_FAILS_CAP)
        b->fails++;
    if (b->exact)
        return (unsigned)ms;
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint32_t)random();
    /* +-25%: ms * (0.75 + 0.5 * r / 2^32) */
    return (unsigned)(ms * 3 / 4 + ((ms / 2) * (uint64_t)r >> 32));
}

void pod_backoff_reset(pod_backoff_t *b)
{
    b->fails = 0;
}
