/* A consumer asks for https://LABEL.DOMAIN/path: 307 to the consumer port leased for its address
 * and that label (PROTOCOL.md section 2). */
#include "registrar.h"
#include "p2m/log.h"

#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUTE_TRIES 3

static void route(op_t *op);

static void count(op_t *op, const char *name)
{
    p2m_cmd_t cmd;
    if (p2m_cmd_stat(&cmd, name) == 0)
        redis_send_nowait(op->r, &cmd);
}

static void done(op_t *op, int status, const char *reason, const char *why, const char *retry_after)
{
    p2m_log(status == 307 ? P2M_LOG_INFO : P2M_LOG_WARN, "redirect", "status=%d label=%s addr=%s lease=%u reason=\"%s\"", status,
            op->label, op->addr, (unsigned)op->port, why);
    if (retry_after != NULL)
        op_header(op, "Retry-After", retry_after);
    if (status != 307) {
        char counter[32];
        snprintf(counter, sizeof(counter), "fail:%d", status);
        count(op, counter);
    }
    op_respond(op, status, reason, why);
}

void redirect_bound(op_t *op, int ok)
{
    if (ok > 0) {
        if (op->req != NULL) {
            char port[8];
            snprintf(port, sizeof(port), ":%u", (unsigned)op->port);
            h2o_req_t *req = op->req;
            h2o_iovec_t loc =
                h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("https://")), h2o_iovec_init(op->label, strlen(op->label)),
                           h2o_iovec_init(H2O_STRLIT(".")), h2o_iovec_init(op->r->cfg.domain, strlen(op->r->cfg.domain)),
                           h2o_iovec_init(port, strlen(port)), op->path);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc.base, loc.len);
        }
        count(op, "redirects");
        done(op, 307, "Temporary Redirect", "ok", NULL);
        return;
    }
    if (ok == 0 && ++op->tries < ROUTE_TRIES) {
        route(op);
        return;
    }
    done(op, 503, "Service Unavailable", ok < 0 ? "relay did not answer" : "relay could not listen", "2");
}

static const char *elem(const redisReply *r, size_t i)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING)
        return NULL;
    return r->element[i]->str;
}

static void announce(op_t *op, const char *relay)
{
    p2m_cmd_t cmd;
    if (p2m_cmd_announce_lease(&cmd, relay, op->port) == 0)
        redis_send_nowait(op->r, &cmd);
}

static void on_route(op_t *op, redisReply *rep)
{
    const char *status = elem(rep, 0), *port = elem(rep, 1), *relay = elem(rep, 3), *state = elem(rep, 4);
    int leased = status != NULL && strcmp(status, "ok") == 0 && port != NULL && relay != NULL && state != NULL;
    if (leased)
        op->port = (uint16_t)atoi(port);
    if (op->req == NULL) {
        /* The consumer left, but its next request will find this lease: have the relay bind it. */
        if (leased && state[0] != '0')
            announce(op, relay);
        op_free(op);
        return;
    }
    if (status == NULL || (strcmp(status, "ok") == 0 && !leased)) {
        done(op, 503, "Service Unavailable", "registry unavailable", "5");
    } else if (strcmp(status, "unknown") == 0) {
        done(op, 404, "Not Found", "no such label", NULL);
    } else if (strcmp(status, "noidle") == 0) {
        done(op, 503, "Service Unavailable", "the pod has no idle connection; try again", "2");
    } else if (!leased) {
        done(op, 503, "Service Unavailable", "no free port", "5");
    } else if (state[0] == '0') {
        redirect_bound(op, 1);
    } else {
        /* New ("1"), or still pending from an earlier request ("2"): announcing again is harmless,
         * a relay that holds the lease confirms it again, and it covers an announcement lost with
         * a request that went away. */
        lease_wait(op, relay, 0);
        announce(op, relay);
    }
}

static void route(op_t *op)
{
    p2m_cmd_t cmd;
    uint32_t rnd;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    if (p2m_cmd_consumer_route(&cmd, op->label, op->addr, (long long)time(NULL), op->r->cfg.registrar.consumer_ttl,
                               rnd & 0x7fffffff) != 0 ||
        redis_send(op->r, &cmd, on_route, op) != 0)
        done(op, 503, "Service Unavailable", "registry unavailable", "5");
}

void redirect_handle(registrar_t *r, h2o_req_t *req, const char *label)
{
    op_t *op = op_new(r, req, OP_CONSUMER);
    snprintf(op->label, sizeof(op->label), "%s", label);
    op->path = req->path;
    route(op);
}
