/* Concurrent consumer connections per source address (relay.max_conns_per_addr): a chained hash
 * table of counters, an entry existing only while its address holds a connection. */
#include "relay.h"

#include <stdlib.h>
#include <string.h>

#define LIMITS_BUCKETS_MIN 256

typedef struct entry {
    struct entry *next;
    peer_addr_t addr;
    unsigned n;
} entry_t;

struct limits {
    unsigned max;
    entry_t **b;
    size_t nb, n;
};

static size_t hash_addr(const peer_addr_t *a, size_t nb)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof(a->b); i++) {
        h ^= a->b[i];
        h *= 1099511628211ull;
    }
    return (size_t)(h & (nb - 1));
}

limits_t *limits_new(unsigned max_per_addr)
{
    limits_t *lim = relay_xcalloc(1, sizeof(*lim));
    lim->max = max_per_addr;
    lim->nb = LIMITS_BUCKETS_MIN;
    lim->b = relay_xcalloc(lim->nb, sizeof(*lim->b));
    return lim;
}

void limits_free(limits_t *lim)
{
    if (lim == NULL)
        return;
    for (size_t i = 0; i < lim->nb; i++) {
        while (lim->b[i] != NULL) {
            entry_t *e = lim->b[i];
            lim->b[i] = e->next;
            free(e);
        }
    }
    free(lim->b);
    free(lim);
}

static entry_t **find(limits_t *lim, const peer_addr_t *a)
{
    entry_t **pp = &lim->b[hash_addr(a, lim->nb)];
    while (*pp != NULL && memcmp(&(*pp)->addr, a, sizeof(*a)) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void grow(limits_t *lim)
{
    size_t nb = lim->nb * 2;
    entry_t **b = relay_xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < lim->nb; i++) {
        while (lim->b[i] != NULL) {
            entry_t *e = lim->b[i];
            lim->b[i] = e->next;
            size_t j = hash_addr(&e->addr, nb);
            e->next = b[j];
            b[j] = e;
        }
    }
    free(lim->b);
    lim->b = b;
    lim->nb = nb;
}

int limits_acquire(limits_t *lim, const peer_addr_t *addr)
{
    entry_t **pp = find(lim, addr);
    if (*pp != NULL) {
        if ((*pp)->n >= lim->max)
            return -1;
        (*pp)->n++;
        return 0;
    }
    entry_t *e = relay_xcalloc(1, sizeof(*e));
    e->addr = *addr;
    e->n = 1;
    *pp = e;
    if (++lim->n > lim->nb * 2)
        grow(lim);
    return 0;
}

void limits_release(limits_t *lim, const peer_addr_t *addr)
{
    entry_t **pp = find(lim, addr);
    if (*pp == NULL)
        return;
    if (--(*pp)->n == 0) {
        entry_t *e = *pp;
        *pp = e->next;
        free(e);
        lim->n--;
    }
}

size_t limits_count(const limits_t *lim, const peer_addr_t *addr)
{
    entry_t **pp = find((limits_t *)lim, addr);
    return *pp != NULL ? (*pp)->n : 0;
}
