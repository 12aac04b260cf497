/* Unit tests for the console's login limiter (tools/admin/login_limit.c): a table of events, each
 * a time, an address, a failure or a success, and what the next check from that address must
 * answer (0: may try; else the seconds to wait and the limit that refused). Small limits keep the
 * table readable: 3 failures per address in 10 s, 5 over all addresses in 4 s. */
#include "check.h"
#include "login_limit.h"

enum { CHECK_ONLY, FAIL, OK };

static const struct {
    uint64_t at_ms;
    const char *addr;
    int event;
    unsigned wait;     /* what login_limit_check answers after the event */
    const char *scope; /* and which limit, when wait > 0 */
} rows[] = {
    {0, "10.0.0.1", CHECK_ONLY, 0, NULL},
    {0, "10.0.0.1", FAIL, 0, NULL},
    {100, "10.0.0.1", FAIL, 0, NULL},
    {200, "10.0.0.1", FAIL, 10, "addr"}, /* the third: 10 s from the first */
    {1500, "10.0.0.1", CHECK_ONLY, 9, "addr"},
    {1500, "10.0.0.2", CHECK_ONLY, 0, NULL}, /* another address is let in */
    {9999, "10.0.0.1", CHECK_ONLY, 1, "addr"},
    {10000, "10.0.0.1", CHECK_ONLY, 0, NULL}, /* the window passed */
    {10000, "10.0.0.1", FAIL, 0, NULL},       /* a new window: one failure */
    {10001, "10.0.0.1", OK, 0, NULL},         /* a login forgets it */
    {10002, "10.0.0.1", FAIL, 0, NULL},
    {10003, "10.0.0.1", FAIL, 0, NULL},
    /* the global cap: 5 failures over all addresses within 4 s */
    {20000, "10.0.1.1", FAIL, 0, NULL},
    {20001, "10.0.1.2", FAIL, 0, NULL},
    {20002, "10.0.1.3", FAIL, 0, NULL},
    {20003, "10.0.1.4", FAIL, 0, NULL},
    {20004, "10.0.1.5", FAIL, 4, "global"},
    {20004, "10.0.9.9", CHECK_ONLY, 4, "global"}, /* an address never seen waits too */
    {23999, "10.0.9.9", CHECK_ONLY, 1, "global"},
    {24000, "10.0.9.9", CHECK_ONLY, 0, NULL},
    {24000, "10.0.1.1", CHECK_ONLY, 0, NULL}, /* one failure of its own: under its limit */
};

int main(void)
{
    static login_limit_t l; /* large: keep it off the stack */
    login_limit_init(&l, 3, 10000, 5, 4000);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *scope = NULL;
        CHECK_CTX("row %zu: at %llu ms from %s", i, (unsigned long long)rows[i].at_ms, rows[i].addr);
        if (rows[i].event == FAIL)
            login_limit_fail(&l, rows[i].addr, rows[i].at_ms);
        else if (rows[i].event == OK)
            login_limit_ok(&l, rows[i].addr);
        CHECK_EQ_INT(login_limit_check(&l, rows[i].addr, rows[i].at_ms, &scope), rows[i].wait);
        if (rows[i].wait > 0)
            CHECK_EQ_STR(scope, rows[i].scope);
    }

    /* More addresses than slots: the table stays bounded, the newest address is still counted,
     * and the global cap (set high here) is what bounds the spread. */
    CHECK_CTX("more addresses than slots");
    login_limit_init(&l, 2, 10000, 1000000, 60000);
    char addr[LOGIN_LIMIT_ADDR_MAX];
    for (unsigned i = 0; i < LOGIN_LIMIT_ADDRS + 10; i++) {
        snprintf(addr, sizeof(addr), "10.1.%u.%u", i / 256, i % 256);
        login_limit_fail(&l, addr, 1000 + i);
        login_limit_fail(&l, addr, 1000 + i);
    }
    const char *scope = NULL;
    CHECK_EQ_INT(login_limit_check(&l, addr, 2000, &scope), 10);      /* 9.265 s, rounded up */
    CHECK_EQ_INT(login_limit_check(&l, "10.1.0.0", 2000, &scope), 0); /* the oldest was pushed out */

    CHECK_CTX("the longest address inet_ntop writes fits its slot");
    login_limit_init(&l, 1, 10000, 100, 60000);
    static const char longest[] = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
    CHECK_EQ_INT(sizeof(longest), LOGIN_LIMIT_ADDR_MAX);
    login_limit_fail(&l, longest, 0);
    CHECK_EQ_INT(login_limit_check(&l, longest, 1, &scope), 10);
    return check_done("login_limit");
}
