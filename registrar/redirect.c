/* A consumer asks for https://LABEL.DOMAIN/path (or http://): 307 to the consumer port leased for
 * its address and the service the protocol rule picks (PROTOCOL.md 2.1); GET /tcp/LABEL leases the
 * same way for the label's tcp service and names the port in the body (2.2). */
#include "redirect.h"
#include "lease.h"
#include "op.h"
#include "redis_h2o.h"
#include "registrar.h"
#include "req.h"
#include "p2m/label.h"
#include "p2m/log.h"
#include "p2m/service.h"
#include "p2m/store_cmd.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUTE_TRIES 3

/* OP_CONSUMER (a request for LABEL.DOMAIN) and OP_TCP (GET /tcp/LABEL) differ only in the services
 * they may be routed to and in their answer. */
typedef struct {
    op_t super;
    lease_waiter_t wait;
    char label[P2M_LABEL_MAX + 1]; /* "-" when the path had none */
    h2o_iovec_t path;              /* consumer: path and query, in the request pool */
    p2m_proto_t proto;             /* the service asked for, then the one chosen */
    int plain_http;                /* consumer: the request came on the plain-HTTP listener */
    int queued;                    /* no idle pre-connection now, the consumer will wait at the relay */
    unsigned tries;                /* leases whose relay could not listen */
    uint16_t port;                 /* the port leased, 0 before */
} consumer_op_t;

static void route(consumer_op_t *op);

static consumer_op_t *consumer_of(op_t *op)
{
    assert(op->kind == OP_CONSUMER || op->kind == OP_TCP);
    return (consumer_op_t *)op;
}

static void count(consumer_op_t *op, const char *name)
{
    p2m_store_cmd_t cmd;
    if (p2m_store_cmd_stat(&cmd, name) == 0)
        redis_send_nowait(op->super.r, &cmd);
}

static void done(consumer_op_t *op, int status, const char *reason, const char *why, const char *retry_after)
{
    p2m_log(status < 400 ? P2M_LOG_INFO : P2M_LOG_WARN, op->super.kind == OP_TCP ? "tcp_port" : "redirect",
            "status=%d label=%s protocol=%s addr=%s lease=%u queued=%s reason=\"%s\"%s", status, op->label,
            p2m_proto_name(op->proto), op->super.addr, (unsigned)op->port, op->queued ? "yes" : "no", why, op_via(&op->super));
    if (retry_after != NULL)
        op_header(&op->super, "Retry-After", retry_after);
    if (status != 307) {
        char counter[32];
        snprintf(counter, sizeof(counter), "fail:%d", status);
        count(op, counter);
    }
    op_respond(&op->super, status, reason, why);
}

/* The lease's relay listens (ok 1), could not (0) or did not answer (-1); also called with 1 for a
 * lease whose port was bound already. */
static void bound(consumer_op_t *op, int ok)
{
    registrar_t *r = op->super.r;
    if (ok > 0 && op->super.kind == OP_TCP) {
        if (op->super.req != NULL) {
            char body[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 16];
            h2o_req_t *req = op->super.req;
            int n = snprintf(body, sizeof(body), "%s.%s:%u\n", op->label, r->cfg.domain, (unsigned)op->port);
            req->res.status = 200;
            req->res.reason = "OK";
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain"));
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
            h2o_iovec_t v = h2o_strdup(&req->pool, body, (size_t)n);
            req_send_body(req, v.base, v.len);
            p2m_log(P2M_LOG_INFO, "tcp_port", "status=200 label=%s protocol=tcp addr=%s lease=%u queued=%s reason=\"ok\"%s",
                    op->label, op->super.addr, (unsigned)op->port, op->queued ? "yes" : "no", op_via(&op->super));
        }
        count(op, "tcp_ports");
        op_free(&op->super);
        return;
    }
    if (ok > 0) {
        if (op->super.req != NULL) {
            char port[8];
            snprintf(port, sizeof(port), ":%u", (unsigned)op->port);
            h2o_req_t *req = op->super.req;
            /* The scheme is the chosen service's: an https service is never reached over http. */
            h2o_iovec_t scheme =
                op->proto == P2M_PROTO_HTTP ? h2o_iovec_init(H2O_STRLIT("http://")) : h2o_iovec_init(H2O_STRLIT("https://"));
            h2o_iovec_t loc =
                h2o_concat(&req->pool, scheme, h2o_iovec_init(op->label, strlen(op->label)), h2o_iovec_init(H2O_STRLIT(".")),
                           h2o_iovec_init(r->cfg.domain, strlen(r->cfg.domain)), h2o_iovec_init(port, strlen(port)), op->path);
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

static void on_bound(lease_waiter_t *w, int ok)
{
    bound(H2O_STRUCT_FROM_MEMBER(consumer_op_t, wait, w), ok);
}

static void announce(consumer_op_t *op, const char *relay)
{
    lease_announce(op->super.r, relay, op->port);
}

static void on_route(op_t *base, redisReply *rep)
{
    consumer_op_t *op = consumer_of(base);
    const char *status = redis_reply_str(rep, 0), *port = redis_reply_str(rep, 1), *relay = redis_reply_str(rep, 3),
               *state = redis_reply_str(rep, 4), *svc = redis_reply_str(rep, 5);
    const char *queued = redis_reply_str(rep, 6);
    int leased = status != NULL && strcmp(status, "ok") == 0 && port != NULL && relay != NULL && state != NULL && svc != NULL;
    if (leased) {
        op->queued = queued != NULL && strcmp(queued, "1") == 0;
        const char *colon = strchr(svc, ':');
        op->port = (uint16_t)atoi(port);
        op->proto = colon == NULL ? P2M_PROTO_HTTPS : strcmp(colon + 1, "http") == 0 ? P2M_PROTO_HTTP : P2M_PROTO_TCP;
    }
    if (base->req == NULL) {
        /* The consumer left, but its next request will find this lease: have the relay bind it. */
        if (leased && state[0] != '0')
            announce(op, relay);
        op_free(base);
        return;
    }
    if (status == NULL || (strcmp(status, "ok") == 0 && !leased)) {
        done(op, 503, "Service Unavailable", "registry unavailable", "5");
    } else if (strcmp(status, "unknown") == 0) {
        done(op, 404, "Not Found", "no such label", NULL);
    } else if (strcmp(status, "gone") == 0) {
        /* No idle pre-connection and no sign of the pod within registrar.alive_window: nothing to
         * wait for (PROTOCOL 2.1). */
        done(op, 503, "Service Unavailable", "the pod is offline; try again later", "10");
    } else if (!leased) {
        done(op, 503, "Service Unavailable", "no free port", "5");
    } else if (state[0] == '0') {
        bound(op, 1);
    } else {
        /* New ("1"), or still pending from an earlier request ("2"): announcing again is harmless,
         * a relay that holds the lease confirms it again, and it covers an announcement lost with
         * a request that went away. */
        lease_wait(base->r, &op->wait, op->port, relay, 0);
        announce(op, relay);
    }
}

static void route(consumer_op_t *op)
{
    /* PROTOCOL 2.1: https only to https; http to http first, then https; tcp by name only. */
    static const p2m_proto_t https_only[] = {P2M_PROTO_HTTPS}, http_first[] = {P2M_PROTO_HTTP, P2M_PROTO_HTTPS},
                             tcp_only[] = {P2M_PROTO_TCP};
    const p2m_proto_t *protos = op->super.kind == OP_TCP ? tcp_only : op->plain_http ? http_first : https_only;
    size_t nprotos = op->super.kind == OP_TCP ? 1 : op->plain_http ? 2 : 1;
    p2m_store_cmd_t cmd;
    uint32_t rnd;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    const p2m_registrar_config_t *rc = &op->super.r->cfg.registrar;
    p2m_consumer_caps_t caps = {.ttl = rc->consumer_ttl,
                                .per_addr = rc->consumer_ports_per_addr,
                                .per_label = rc->consumer_ports_per_label,
                                .share = rc->consumer_ports_share};
    /* Per service (the default), every address shares the service's one port: "*" (PROTOCOL 3.6). */
    const char *who = rc->consumer_ports_per_address ? op->super.addr : "*";
    if (p2m_store_cmd_consumer_route(&cmd, op->label, protos, nprotos, who, (long long)time(NULL), &caps, rnd & 0x7fffffff) != 0 ||
        redis_send(op->super.r, &cmd, on_route, &op->super) != 0)
        done(op, 503, "Service Unavailable", "registry unavailable", "5");
}

/* Never today (every path out of a wait goes through on_bound), but an op freed while its relay's
 * answer is due must not stay in the waiting list. */
static void release(op_t *base)
{
    lease_cancel(&consumer_of(base)->wait);
}

static consumer_op_t *consumer_new(registrar_t *r, h2o_req_t *req, op_kind_t kind)
{
    consumer_op_t *op = (consumer_op_t *)op_new(r, req, kind, sizeof(*op));
    op->super.release = release;
    op->wait.label = op->label;
    op->wait.on_bound = on_bound;
    return op;
}

/* The direct-path script's answer (PROTOCOL 5.3): 307 to LABEL.lan.DOMAIN or LABEL.direct.DOMAIN
 * with the path's port, or on to the relay as before. What comes from Redis is checked again
 * before it reaches a Location header. */
static void on_direct(op_t *base, redisReply *rep)
{
    consumer_op_t *op = consumer_of(base);
    registrar_t *r = base->r;
    const char *kind = redis_reply_str(rep, 0), *scheme = redis_reply_str(rep, 1), *path = redis_reply_str(rep, 2);
    unsigned port = 0;
    if (base->req == NULL) {
        op_free(base);
        return;
    }
    if (kind == NULL || scheme == NULL || strcmp(kind, "relay") == 0 || path == NULL ||
        p2m_direct_addr_parse(path, NULL, NULL, &port, NULL) != 0 || (strcmp(kind, "lan") != 0 && strcmp(kind, "direct") != 0)) {
        route(op); /* Redis down, a reply of another shape, or no direct path: the relay */
        return;
    }
    /* Never a downgrade: an https request only ever gets https; an http one may get the http
     * service's lan path as http, or an https path. */
    int http = strcmp(scheme, "http") == 0 && op->plain_http;
    char loc[16 + P2M_LABEL_MAX + P2M_DOMAIN_MAX + 16];
    snprintf(loc, sizeof(loc), "%s://%s.%s.%s:%u", http ? "http" : "https", op->label, kind, r->cfg.domain, port);
    h2o_req_t *req = base->req;
    h2o_iovec_t v = h2o_concat(&req->pool, h2o_iovec_init(loc, strlen(loc)), op->path);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, v.base, v.len);
    p2m_log(P2M_LOG_INFO, "redirect_direct", "status=307 label=%s path=%s addr=%s to=%s%s", op->label, kind, base->addr, loc,
            op_via(base));
    count(op, strcmp(kind, "lan") == 0 ? "redirects_lan" : "redirects_direct");
    op_respond(base, 307, "Temporary Redirect", "ok");
}

/* Asks Redis for a direct path first when DNS is kept and a kind of path is on: without DNS the
 * names LABEL.lan.DOMAIN and LABEL.direct.DOMAIN do not resolve, so nobody is sent there. */
static int direct_first(consumer_op_t *op)
{
    registrar_t *r = op->super.r;
    const p2m_registrar_config_t *rc = &r->cfg.registrar;
    char lan[P2M_DOMAIN_MAX + 2], direct[P2M_DOMAIN_MAX + 2];
    p2m_store_cmd_t cmd;
    if (!r->cfg.dns.enabled || (!rc->direct_lan && !rc->direct_public))
        return -1;
    int nl = snprintf(lan, sizeof(lan), "%s.lan.%s", op->label, r->cfg.domain);
    int nd = snprintf(direct, sizeof(direct), "%s.direct.%s", op->label, r->cfg.domain);
    if (nl < 0 || nl > P2M_DOMAIN_MAX || nd < 0 || nd > P2M_DOMAIN_MAX)
        return -1;
    if (p2m_store_cmd_direct_route(&cmd, op->label, op->plain_http, op->super.addr, rc->direct_lan, rc->direct_public, lan, direct,
                                   rc->direct_retry_window) != 0 ||
        redis_send(r, &cmd, on_direct, &op->super) != 0)
        return -1;
    return 0;
}

void redirect_handle(registrar_t *r, h2o_req_t *req, const char *label, int plain_http)
{
    consumer_op_t *op = consumer_new(r, req, OP_CONSUMER);
    snprintf(op->label, sizeof(op->label), "%s", label);
    op->path = req->path;
    op->plain_http = plain_http;
    op->proto = plain_http ? P2M_PROTO_HTTP : P2M_PROTO_HTTPS;
    if (direct_first(op) != 0)
        route(op);
}

void tcp_port_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len)
{
    consumer_op_t *op = consumer_new(r, req, OP_TCP);
    op->proto = P2M_PROTO_TCP;
    if (p2m_label_normalize(label_part, label_len, op->label, NULL) != 0) {
        snprintf(op->label, sizeof(op->label), "-");
        done(op, 404, "Not Found", "no such label", NULL);
        return;
    }
    route(op);
}
