#ifndef P2M_ADMIN_LOGIN_LIMIT_H
#define P2M_ADMIN_LOGIN_LIMIT_H

/* The console's login limiter: wrong tokens counted per client address and over all addresses,
 * each in a fixed window that opens at its first failure. Pure (the caller gives the time), in
 * memory, one instance per console; nothing here allocates. */
#include <stddef.h>
#include <stdint.h>

#define LOGIN_LIMIT_ADDRS 256   /* addresses tracked at once; a new one takes an expired slot, else the oldest */
#define LOGIN_LIMIT_ADDR_MAX 46 /* INET6_ADDRSTRLEN */

typedef struct {
    char addr[LOGIN_LIMIT_ADDR_MAX];
    unsigned failures;
    uint64_t since_ms; /* the first failure of the window */
} login_limit_slot_t;

typedef struct {
    unsigned per_addr, global;   /* failures allowed in a window: from one address, from all */
    uint64_t addr_ms, global_ms; /* the windows' lengths */
    login_limit_slot_t slots[LOGIN_LIMIT_ADDRS];
    unsigned global_failures;
    uint64_t global_since_ms;
} login_limit_t;

/* Sets l up, with nothing counted. */
void login_limit_init(login_limit_t *l, unsigned per_addr, uint64_t addr_ms, unsigned global, uint64_t global_ms);

/* Whether a login from addr may be tried at now_ms: 0 when it may, else the seconds until it may
 * (at least 1), with *scope "addr" or "global" saying which limit refused. Counts nothing: a
 * refused attempt's token is not looked at. */
unsigned login_limit_check(login_limit_t *l, const char *addr, uint64_t now_ms, const char **scope);

/* Counts a wrong token from addr at now_ms. */
void login_limit_fail(login_limit_t *l, const char *addr, uint64_t now_ms);

/* Forgets addr's failures (its login succeeded); the global count stays. */
void login_limit_ok(login_limit_t *l, const char *addr);

#endif
