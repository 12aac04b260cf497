/* Unit tests for pod/backoff.c: the default backoff (jittered +-25%, doubling to its ceiling), a
 * floor and a ceiling of its own without jitter (cert.c's refusals), and the reset. */

#include "check.h"
#include "backoff.h"

#include <stdio.h>

/* Runs n failures of *b and checks each delay against base doubling to hi, within +-pct%. */
static void check_run(pod_backoff_t *b, unsigned long long base, unsigned long long hi, unsigned pct, int n)
{
    unsigned long long want = base;
    for (int i = 0; i < n; i++) {
        unsigned ms = pod_backoff_next(b);
        CHECK_MSG(ms >= want * (100 - pct) / 100 && ms <= want * (100 + pct) / 100, "attempt %d: %u ms, want %llu +-%u%%", i, ms,
                  want, pct);
        want = want * 2 > hi ? hi : want * 2;
    }
}

int main(void)
{
    pod_backoff_t b = {0};
    CHECK_CTX("default");
    check_run(&b, POD_BACKOFF_MIN_MS, POD_BACKOFF_MAX_MS, 25, 20);
    pod_backoff_reset(&b);
    CHECK_CTX("default after reset");
    check_run(&b, POD_BACKOFF_MIN_MS, POD_BACKOFF_MAX_MS, 25, 1);

    /* Past any plausible count the delay stays at the ceiling (the count is capped, never wraps). */
    CHECK_CTX("default, many failures");
    for (int i = 0; i < 1000; i++)
        pod_backoff_next(&b);
    check_run(&b, POD_BACKOFF_MAX_MS, POD_BACKOFF_MAX_MS, 25, 3);

    pod_backoff_t exact = {.min_ms = 60000, .max_ms = 3600000, .exact = 1};
    CHECK_CTX("exact");
    check_run(&exact, 60000, 3600000, 0, 10);
    pod_backoff_reset(&exact);
    CHECK_EQ_INT(pod_backoff_next(&exact), 60000);

    /* A floor above the ceiling: the ceiling wins. */
    pod_backoff_t odd = {.min_ms = 5000, .max_ms = 1000, .exact = 1};
    CHECK_CTX("floor above ceiling");
    CHECK_EQ_INT(pod_backoff_next(&odd), 1000);
    return check_done("pod_backoff");
}
