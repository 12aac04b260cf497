/* PUT /register/LABEL: TOTP or session authentication (auth.c), then a pre-connection port lease.
 *
 *   authenticated -> lease_pre -> relay bound (lease.c) -> 200
 *
 * The lease is one Redis round trip; a port its relay cannot listen on is leased again, up to
 * LEASE_TRIES times. */
#include "register.h"
#include "auth.h"
#include "lease.h"
#include "redis_h2o.h"
#include "registrar.h"
#include "req.h"
#include "p2m/addr.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/store_cmd.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEASE_TRIES 3

typedef struct {
    auth_op_t super;
    lease_waiter_t wait;
    p2m_proto_t proto; /* the service the body declared (the label's default applies without a body) */
    int has_body;      /* the request had a body */
    unsigned conns;    /* pre-connections the leased port accepts (PROTOCOL 1.1) */
    unsigned pool;     /* the pool target the body declared, 0 when none (PROTOCOL 1.1) */
    unsigned tries;    /* leases whose relay could not listen */
    uint16_t port;     /* the port leased, 0 before */
    char relay_addr[P2M_HOST_MAX + 1];
    char waiting[24], waited[24]; /* the demand the pod is told of (P2M-Waiting, P2M-Waited) */
    /* the body's direct paths (PROTOCOL 5), "" when not declared */
    char direct_lan[P2M_DIRECT_ADDR_MAX + 1], direct_public[P2M_DIRECT_ADDR_MAX + 1];
} register_op_t;

static void lease_request(register_op_t *op);

static register_op_t *register_of(op_t *op)
{
    assert(op->kind == OP_REGISTER);
    return (register_op_t *)op;
}

/* The service registered: the body's, or without a body the label's default when it has one. */
static p2m_proto_t service(const register_op_t *op)
{
    return !op->has_body && op->super.has_label_proto ? op->super.label_proto : op->proto;
}

static void log_result(const auth_op_t *a, int status, const char *why)
{
    const register_op_t *op = (const register_op_t *)a;
    p2m_log(
        status == 200 ? P2M_LOG_INFO : P2M_LOG_WARN, "register",
        "status=%d label=%s protocol=%s pod=%s addr=%s auth=%s lease=%u conns=%u direct_lan=%s direct_public=%s reason=\"%s\"%s%s",
        status, a->label, p2m_proto_name(service(op)), a->id[0] ? a->id : "-", a->super.addr, auth_scheme(a), (unsigned)op->port,
        op->conns, op->direct_lan[0] ? op->direct_lan : "-", op->direct_public[0] ? op->direct_public : "-", why,
        a->reused ? " token=reused" : "", op_via(&a->super));
}

static void on_bound(lease_waiter_t *w, int ok)
{
    register_op_t *op = H2O_STRUCT_FROM_MEMBER(register_op_t, wait, w);
    op_t *base = &op->super.super;
    if (ok > 0) {
        char body[P2M_HOST_MAX + 16];
        char conns[16];
        p2m_hostport_format(op->relay_addr, op->port, body, sizeof(body));
        auth_session_headers(&op->super);
        /* Always sent, so that a pod knows how many connections the port takes without assuming. */
        snprintf(conns, sizeof(conns), "%u", op->conns);
        op_header(base, "P2M-Connections", conns);
        /* The demand for the service (PROTOCOL 1.3): the pod grows its pool to meet it. */
        op_header(base, "P2M-Waiting", op->waiting[0] ? op->waiting : "0");
        op_header(base, "P2M-Waited", op->waited[0] ? op->waited : "0");
        p2m_store_cmd_t cmd;
        if (p2m_store_cmd_stat(&cmd, "registrations") == 0)
            redis_send_nowait(base->r, &cmd);
        /* Each registration rewrites the service's direct paths with the address it came from, for
         * alive_window: they lapse with the pod, and one without paths withdraws them (PROTOCOL 5). */
        if (p2m_store_cmd_direct_record(&cmd, op->super.label, service(op), op->super.id, base->addr, op->direct_lan,
                                        op->direct_public, base->r->cfg.registrar.alive_window) == 0)
            redis_send_nowait(base->r, &cmd);
        log_result(&op->super, 200, "ok");
        if (base->req != NULL) {
            h2o_req_t *req = base->req;
            req->res.status = 200;
            req->res.reason = "OK";
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain"));
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
            req_send_body(req, body, strlen(body));
        }
        op_free(base);
        return;
    }
    if (ok == 0 && ++op->tries < LEASE_TRIES) {
        lease_request(op); /* that port was taken on the relay host: lease another */
        return;
    }
    op_header(base, "Retry-After", "5");
    auth_fail(&op->super, 503, "Service Unavailable", ok < 0 ? "relay did not answer" : "relay could not listen");
}

/* A count from a script's reply as a P2M-Waiting or P2M-Waited value: "0" when it is not digits. */
static void count_header(const char *v, char *out, size_t cap)
{
    size_t n = v != NULL ? strlen(v) : 0;
    if (n == 0 || strspn(v, "0123456789") != n)
        snprintf(out, cap, "0");
    else if (n > 9)
        snprintf(out, cap, "999999999");
    else
        snprintf(out, cap, "%s", v);
}

static void on_lease(op_t *base, redisReply *rep)
{
    register_op_t *op = register_of(base);
    const char *status = redis_reply_str(rep, 0);
    if (base->req == NULL) { /* the pod gave up; a lease it will never use expires by itself */
        op_free(base);
        return;
    }
    if (status == NULL) {
        auth_unavailable(&op->super);
        return;
    }
    if (strcmp(status, "ok") != 0) {
        op_header(base, "Retry-After", "5");
        auth_fail(&op->super, 503, "Service Unavailable", strcmp(status, "norelay") == 0 ? "no relay is running" : "no free port");
        return;
    }
    const char *port = redis_reply_str(rep, 1), *relay = redis_reply_str(rep, 2), *addr = redis_reply_str(rep, 3);
    const char *waiting = redis_reply_str(rep, 4), *waited = redis_reply_str(rep, 5), *draining = redis_reply_str(rep, 6);
    if (port == NULL || relay == NULL || addr == NULL) {
        auth_unavailable(&op->super);
        return;
    }
    /* Leased on a draining relay: no other had a free port (every live relay draining, most
     * likely). A drain must never make a service unavailable (PROTOCOL 3.9), so it is used, and
     * the operator hears of it once per change. */
    int on_draining = draining != NULL && strcmp(draining, "1") == 0;
    if (on_draining != base->r->lease_on_draining) {
        base->r->lease_on_draining = on_draining;
        if (on_draining)
            p2m_log(P2M_LOG_WARN, "lease_on_draining_relay",
                    "relay=%s label=%s note=\"no relay that is not draining has a free port\"", relay, op->super.label);
        else
            p2m_log(P2M_LOG_INFO, "lease_on_draining_relay_gone", "relay=%s label=%s", relay, op->super.label);
    }
    /* Counts summed by the script from the relays' hashes: digits only reach a header, at most 9
     * of them (PROTOCOL 1.3: a larger count is sent as 999999999). */
    count_header(waiting, op->waiting, sizeof(op->waiting));
    count_header(waited, op->waited, sizeof(op->waited));
    op->port = (uint16_t)atoi(port);
    snprintf(op->relay_addr, sizeof(op->relay_addr), "%s", addr);
    lease_wait(base->r, &op->wait, op->port, relay, 1);
}

static void lease_request(register_op_t *op)
{
    op_t *base = &op->super.super;
    const p2m_registrar_config_t *rc = &base->r->cfg.registrar;
    p2m_store_cmd_t cmd;
    uint32_t rnd;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    if (p2m_store_cmd_lease_pre(&cmd, op->super.label, service(op), op->super.id, base->addr, (long long)time(NULL),
                                rc->preconnect_timeout, rnd & 0x7fffffff, op->conns, rc->alive_window, op->pool) != 0 ||
        redis_send(base->r, &cmd, on_lease, base) != 0)
        auth_unavailable(&op->super);
}

static void on_authorized(auth_op_t *a)
{
    lease_request(register_of(&a->super));
}

/* An op freed while its relay's answer is still due (never today: every path out of a wait goes
 * through on_bound) must not stay in the waiting list. */
static void release(op_t *base)
{
    lease_cancel(&register_of(base)->wait);
}

void register_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len)
{
    register_op_t *op = (register_op_t *)op_new(r, req, OP_REGISTER, sizeof(*op));
    char err[P2M_ERR_LEN];
    op->super.super.release = release;
    op->super.on_authorized = on_authorized;
    op->super.log_result = log_result;
    op->wait.label = op->super.label;
    op->wait.on_bound = on_bound;
    op->conns = 1;
    if (p2m_label_normalize(label_part, label_len, op->super.label, err) != 0) {
        snprintf(op->super.label, sizeof(op->super.label), "-");
        auth_fail(&op->super, 404, "Not Found", "no such label");
        return;
    }
    op->has_body = req->entity.base != NULL && req->entity.len > 0;
    p2m_service_body_t body;
    if (p2m_service_body_parse_ex(req->entity.base != NULL ? req->entity.base : "", req->entity.base != NULL ? req->entity.len : 0,
                                  &body, err) != 0) {
        auth_fail(&op->super, 400, "Bad Request", err);
        return;
    }
    op->proto = body.proto;
    op->conns = body.conns;
    op->pool = body.pool;
    memcpy(op->direct_lan, body.direct_lan, sizeof(op->direct_lan));
    memcpy(op->direct_public, body.direct_public, sizeof(op->direct_public));
    auth_start(&op->super);
}
