/* The console's login limiter (login_limit.h). Fixed windows rather than sliding ones: an
 * operator who mistyped five times knows when to try again (Retry-After), and the state is two
 * numbers per address. */
#include "login_limit.h"

#include <string.h>

void login_limit_init(login_limit_t *l, unsigned per_addr, uint64_t addr_ms, unsigned global, uint64_t global_ms)
{
    memset(l, 0, sizeof(*l));
    l->per_addr = per_addr;
    l->addr_ms = addr_ms;
    l->global = global;
    l->global_ms = global_ms;
}

/* The seconds from now until end, rounded up, at least 1. */
static unsigned wait_s(uint64_t end, uint64_t now)
{
    uint64_t s = end > now ? (end - now + 999) / 1000 : 1;
    return s > 0 ? (unsigned)s : 1;
}

static login_limit_slot_t *slot_find(login_limit_t *l, const char *addr)
{
    for (size_t i = 0; i < LOGIN_LIMIT_ADDRS; i++)
        if (l->slots[i].failures > 0 && strcmp(l->slots[i].addr, addr) == 0)
            return &l->slots[i];
    return NULL;
}

unsigned login_limit_check(login_limit_t *l, const char *addr, uint64_t now_ms, const char **scope)
{
    if (l->global_failures >= l->global && now_ms - l->global_since_ms < l->global_ms) {
        *scope = "global";
        return wait_s(l->global_since_ms + l->global_ms, now_ms);
    }
    login_limit_slot_t *s = slot_find(l, addr);
    if (s != NULL && s->failures >= l->per_addr && now_ms - s->since_ms < l->addr_ms) {
        *scope = "addr";
        return wait_s(s->since_ms + l->addr_ms, now_ms);
    }
    return 0;
}

void login_limit_fail(login_limit_t *l, const char *addr, uint64_t now_ms)
{
    if (l->global_failures == 0 || now_ms - l->global_since_ms >= l->global_ms) {
        l->global_failures = 0;
        l->global_since_ms = now_ms;
    }
    l->global_failures++;

    login_limit_slot_t *s = slot_find(l, addr);
    if (s == NULL) {
        /* a free or expired slot, else the one whose window opened first */
        for (size_t i = 0; i < LOGIN_LIMIT_ADDRS; i++) {
            login_limit_slot_t *t = &l->slots[i];
            if (t->failures == 0 || now_ms - t->since_ms >= l->addr_ms) {
                s = t;
                break;
            }
            if (s == NULL || t->since_ms < s->since_ms)
                s = t;
        }
        memset(s, 0, sizeof(*s));
        strncpy(s->addr, addr, sizeof(s->addr) - 1);
    } else if (now_ms - s->since_ms >= l->addr_ms) {
        s->failures = 0;
    }
    if (s->failures == 0)
        s->since_ms = now_ms;
    s->failures++;
}

void login_limit_ok(login_limit_t *l, const char *addr)
{
    login_limit_slot_t *s = slot_find(l, addr);
    if (s != NULL)
        memset(s, 0, sizeof(*s));
}
