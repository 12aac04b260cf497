/* Waiting for a relay to confirm it listens on a freshly leased port (PROTOCOL.md 3.2-3.3). */
#include "lease.h"
#include "registrar.h"
#include "redis_h2o.h"
#include "p2m/log.h"
#include "p2m/store_cmd.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2m/redis.h"

static void unlink_waiting(lease_waiter_t *w)
{
    for (lease_waiter_t **pp = &w->_r->waiting[w->_port]; *pp != NULL; pp = &(*pp)->_next) {
        if (*pp == w) {
            *pp = w->_next;
            break;
        }
    }
    w->_next = NULL;
}

static void on_wait_timeout(h2o_timeout_entry_t *entry)
{
    lease_waiter_t *w = H2O_STRUCT_FROM_MEMBER(lease_waiter_t, _timeout, entry);
    unlink_waiting(w);
    p2m_log(P2M_LOG_WARN, "relay_timeout", "lease=%u label=%s", (unsigned)w->_port, w->label);
    /* The relay never answered: give the port back unless it got bound meanwhile. */
    p2m_store_cmd_t cmd;
    p2m_store_cmd_lease_abandon(&cmd, w->_port);
    redis_send_nowait(w->_r, &cmd);
    w->on_bound(w, -1);
}

/* The announcement of a lease, until Redis says how many subscribers got it. */
typedef struct {
    registrar_t *r;
    uint16_t port;
    char relay[128]; /* a relay name (relay.name, -N for a worker) */
} announce_t;

/* PUBLISH answers how many subscribers received "lease PORT". None means the relay is not there:
 * a relay that dies (kill -9, a lost machine) leaves its heartbeat behind for up to its TTL (15 s),
 * during which every lease on it would wait out the 3 s timeout. Its connection to Redis died with
 * it, so its subscription is gone at once: fail the lease now (the registration leases again, on
 * another relay) and take the relay's heartbeat out of the ranking, as a relay that stops does. A
 * live relay that was only reconnecting puts its heartbeat back within 5 s and re-reads its leases. */
static void on_announced(struct redisAsyncContext *ac, void *reply, void *priv)
{
    announce_t *a = priv;
    const redisReply *rep = reply;
    (void)ac;
    if (rep != NULL && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0 && a->r->waiting[a->port] != NULL) {
        p2m_store_cmd_t cmd;
        p2m_log(P2M_LOG_WARN, "relay_gone", "relay=%s lease=%u reason=\"not subscribed to its channel\"", a->relay,
                (unsigned)a->port);
        if (p2m_store_cmd_relay_leave(&cmd, a->relay) == 0)
            redis_send_nowait(a->r, &cmd);
        if (p2m_store_cmd_lease_abandon(&cmd, a->port) == 0)
            redis_send_nowait(a->r, &cmd);
        lease_on_bound(a->r, a->port, 0, "relay not subscribed");
    }
    free(a);
}

void lease_announce(registrar_t *r, const char *relay, uint16_t port)
{
    p2m_store_cmd_t cmd;
    announce_t *a = malloc(sizeof(*a));
    if (a == NULL || p2m_store_cmd_announce_lease(&cmd, relay, port) != 0) {
        free(a);
        return; /* the lease then times out */
    }
    a->r = r;
    a->port = port;
    snprintf(a->relay, sizeof(a->relay), "%s", relay);
    if (!p2m_redis_up(r->redis) || p2m_redis_send(r->redis, on_announced, a, &cmd) != 0)
        free(a);
}

void lease_wait(registrar_t *r, lease_waiter_t *w, uint16_t port, const char *relay, int announce)
{
    w->_r = r;
    w->_port = port;
    w->_next = r->waiting[port];
    r->waiting[port] = w;
    w->_timeout = (h2o_timeout_entry_t){0};
    w->_timeout.cb = on_wait_timeout;
    h2o_timeout_link(r->h2o_ctx.loop, &r->bound_timeout, &w->_timeout);
    if (announce)
        lease_announce(r, relay, port);
}

void lease_cancel(lease_waiter_t *w)
{
    /* Linked to its timeout exactly while it is in a waiting list (lease_on_bound unlinks both). */
    if (!h2o_timeout_is_linked(&w->_timeout))
        return;
    h2o_timeout_unlink(&w->_timeout);
    unlink_waiting(w);
}

void lease_on_bound(registrar_t *r, uint16_t port, int ok, const char *reason)
{
    lease_waiter_t *list = r->waiting[port];
    r->waiting[port] = NULL;
    if (!ok && list != NULL)
        p2m_log(P2M_LOG_WARN, "relay_bind_failed", "lease=%u reason=\"%s\"", (unsigned)port, reason);
    while (list != NULL) {
        lease_waiter_t *w = list;
        list = w->_next;
        w->_next = NULL;
        h2o_timeout_unlink(&w->_timeout);
        w->on_bound(w, ok ? 1 : 0);
    }
}
