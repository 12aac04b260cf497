#ifndef REGISTRAR_LEASE_H
#define REGISTRAR_LEASE_H

#include <h2o.h>
#include <stdint.h>

/* Waiting for a relay to confirm that it listens on a freshly leased port (PROTOCOL.md 3.2-3.3).
 * A request kind that leases a port embeds a lease_waiter_t in its op and is called back through
 * on_bound: lease.c knows nothing of the kinds above it. */

typedef struct registrar registrar_t;
typedef struct lease_waiter lease_waiter_t;

struct lease_waiter {
    /* Set by the owner before lease_wait: */
    const char *label; /* named in the log line when the relay never answers; the owner's, borrowed */
    /* The outcome: 1 the relay listens, 0 it could not, -1 it did not answer within bound_timeout.
     * The waiter is no longer linked when this runs: it may wait again, or have its op freed. */
    void (*on_bound)(lease_waiter_t *w, int ok);
    /* lease.c's: */
    registrar_t *_r;
    uint16_t _port;
    lease_waiter_t *_next; /* r->waiting[port]'s list */
    h2o_timeout_entry_t _timeout;
};

/* Links w into r's wait for port and starts its bound_timeout; with announce, also publishes the
 * lease to relay (PROTOCOL 3.2). w must stay where it is until on_bound runs or lease_cancel. */
void lease_wait(registrar_t *r, lease_waiter_t *w, uint16_t port, const char *relay, int announce);

/* Publishes "lease PORT" to relay (PROTOCOL 3.2). When no subscriber gets it the relay is gone:
 * its heartbeat is removed and the waiters of port get on_bound 0 at once (event=relay_gone). */
void lease_announce(registrar_t *r, const char *relay, uint16_t port);

/* Stops w's wait, if it waits: on_bound will not be called. For an op being freed. */
void lease_cancel(lease_waiter_t *w);

/* A relay's answer for port (from the bound channel): calls on_bound of every waiter for it, with
 * 1 when ok, else 0 after one relay_bind_failed line naming reason. */
void lease_on_bound(registrar_t *r, uint16_t port, int ok, const char *reason);

#endif
