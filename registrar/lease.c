/* Waiting for a relay to confirm it listens on a freshly leased port (PROTOCOL.md 3.2-3.3). */
#include "registrar.h"
#include "p2m/log.h"

#include <string.h>

static void finish(op_t *op, int ok)
{
    if (op->kind == OP_REGISTER)
        register_bound(op, ok);
    else
        redirect_bound(op, ok);
}

static void unlink_waiting(op_t *op)
{
    for (op_t **pp = &op->r->waiting[op->port]; *pp != NULL; pp = &(*pp)->next_waiting) {
        if (*pp == op) {
            *pp = op->next_waiting;
            break;
        }
    }
    op->next_waiting = NULL;
}

static void on_wait_timeout(h2o_timeout_entry_t *entry)
{
    op_t *op = H2O_STRUCT_FROM_MEMBER(op_t, wait_entry, entry);
    unlink_waiting(op);
    p2m_log(P2M_LOG_WARN, "relay_timeout", "lease=%u label=%s", (unsigned)op->port, op->label);
    /* The relay never answered: give the port back unless it got bound meanwhile. */
    p2m_cmd_t cmd;
    p2m_cmd_lease_abandon(&cmd, op->port);
    redis_send_nowait(op->r, &cmd);
    finish(op, -1);
}

void lease_wait(op_t *op, const char *relay, int announce)
{
    registrar_t *r = op->r;
    op->next_waiting = r->waiting[op->port];
    r->waiting[op->port] = op;
    op->wait_entry = (h2o_timeout_entry_t){0};
    op->wait_entry.cb = on_wait_timeout;
    h2o_timeout_link(r->h2o_ctx.loop, &r->bound_timeout, &op->wait_entry);
    if (announce) {
        p2m_cmd_t cmd;
        p2m_cmd_announce_lease(&cmd, relay, op->port);
        redis_send_nowait(r, &cmd);
    }
}

void lease_on_bound(registrar_t *r, uint16_t port, int ok, const char *reason)
{
    op_t *list = r->waiting[port];
    r->waiting[port] = NULL;
    if (!ok && list != NULL)
        p2m_log(P2M_LOG_WARN, "relay_bind_failed", "lease=%u reason=\"%s\"", (unsigned)port, reason);
    while (list != NULL) {
        op_t *op = list;
        list = op->next_waiting;
        op->next_waiting = NULL;
        h2o_timeout_unlink(&op->wait_entry);
        finish(op, ok ? 1 : 0);
    }
}
