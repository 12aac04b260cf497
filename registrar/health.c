/* The bare domain's service endpoints: /_health, /cacert, /metrics. The checks that wait for Redis
 * need nothing beyond the base op (op.h). */
#include "health.h"
#include "drain.h"
#include "op.h"
#include "redis_h2o.h"
#include "registrar.h"
#include "req.h"
#include "p2m/log.h"
#include "p2m/store_cmd.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_health(op_t *op, redisReply *rep)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 || rep->element[0]->type != REDIS_REPLY_INTEGER)
        op_respond(op, 503, "Service Unavailable", "redis unavailable");
    else if (rep->element[0]->integer == 0)
        op_respond(op, 503, "Service Unavailable", "no relay is running");
    else {
        /* Still 200: a draining registrar serves consumers; the body tells an operator why pods leave. */
        int status;
        const char *to = drain_target(op->r, &status);
        char body[P2M_URL_MAX + 64];
        snprintf(body, sizeof(body), "ok%s%s", to != NULL ? (status == 307 ? ", draining to " : ", pods to ") : "",
                 to != NULL ? to : "");
        op_respond(op, 200, "OK", body);
    }
}

void health_handle(registrar_t *r, h2o_req_t *req)
{
    op_t *op = op_new(r, req, OP_HEALTH, sizeof(op_t));
    p2m_store_cmd_t cmd;
    if (p2m_store_cmd_metrics(&cmd) != 0 || redis_send(r, &cmd, on_health, op) != 0)
        op_respond(op, 503, "Service Unavailable", "redis unavailable");
}

void cacert_handle(registrar_t *r, h2o_req_t *req)
{
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/x-pem-file"));
    req_send_body(req, r->ca.pem, r->ca.pem_len);
}

/* Accumulates the exposition text in the request pool. */
typedef struct {
    char *buf;
    size_t len, cap;
} text_t;

static void add(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(text_t *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n) * 2;
        char *grown = realloc(t->buf, cap);
        if (grown == NULL) {
            p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=metrics");
            abort();
        }
        t->buf = grown;
        t->cap = cap;
    }
}

/* Label values come from Redis; only [a-z0-9-:] are ever written there, but escape anyway. */
static const char *esc(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s != '\0' && n + 3 < cap; s++) {
        if (*s == '"' || *s == '\\')
            out[n++] = '\\';
        out[n++] = *s == '\n' ? ' ' : *s;
    }
    out[n] = '\0';
    return out;
}

static long long num(const redisReply *e)
{
    return e->type == REDIS_REPLY_INTEGER ? e->integer : e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

/* The consumers that had to wait (PROTOCOL 2.1), per label, all relays together: one family per
 * outcome, summed from the relays' SERVICE:queued, SERVICE:waited_served and SERVICE:wait_timeouts. */
static void wait_families(text_t *t, const redisReply *rstats)
{
    static const struct {
        const char *counter, *family, *help;
    } fams[] = {
        {"queued", "pipe2me_consumers_queued_total", "Consumers that found no idle pre-connection and waited at a relay."},
        {"waited_served", "pipe2me_consumers_waited_served_total", "Consumers joined to a pre-connection after waiting."},
        {"wait_timeouts", "pipe2me_consumers_wait_timeouts_total", "Consumers closed after waiting relay.wait_timeout."},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        add(t, "# HELP %s %s\n# TYPE %s counter\n", fams[f].family, fams[f].help, fams[f].family);
        /* Sum over relays: the triples are few (services x counters x relays); a label seen
         * before is skipped when met again. */
        for (size_t i = 0; i + 2 < rstats->elements; i += 3) {
            const char *field = rstats->element[i + 1]->str, *colon = strrchr(field, ':');
            if (colon == NULL || strcmp(colon + 1, fams[f].counter) != 0)
                continue;
            size_t llen = (size_t)(colon - field);
            int seen = 0;
            for (size_t j = 0; j < i && !seen; j += 3) {
                const char *g = rstats->element[j + 1]->str, *gc = strrchr(g, ':');
                seen =
                    gc != NULL && (size_t)(gc - g) == llen && strncmp(g, field, llen) == 0 && strcmp(gc + 1, fams[f].counter) == 0;
            }
            if (seen)
                continue;
            long long sum = 0;
            for (size_t j = i; j + 2 < rstats->elements; j += 3) {
                const char *g = rstats->element[j + 1]->str;
                if (strlen(g) == strlen(field) && strcmp(g, field) == 0)
                    sum += num(rstats->element[j + 2]);
            }
            char lb[128], name[128];
            snprintf(name, sizeof(name), "%.*s", (int)llen, field);
            add(t, "%s{label=\"%s\"} %lld\n", fams[f].family, esc(name, lb, sizeof(lb)), sum);
        }
    }
}

static void on_metrics(op_t *op, redisReply *rep)
{
    if (op->req == NULL) {
        op_free(op);
        return;
    }
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 7) {
        op_respond(op, 503, "Service Unavailable", "redis unavailable");
        return;
    }
    text_t t = {NULL, 0, 0};
    char a[128], b[128];
    redisReply *stats = rep->element[1], *idle = rep->element[4], *rstats = rep->element[5], *wait = rep->element[6];
    long long registrations = 0, redirects = 0;
    for (size_t i = 0; i + 1 < stats->elements; i += 2) {
        if (strcmp(stats->element[i]->str, "registrations") == 0)
            registrations = num(stats->element[i + 1]);
        else if (strcmp(stats->element[i]->str, "redirects") == 0)
            redirects = num(stats->element[i + 1]);
    }
    add(&t, "# HELP pipe2me_relays Relays with a live heartbeat.\n# TYPE pipe2me_relays gauge\npipe2me_relays %lld\n",
        num(rep->element[0]));
    add(&t,
        "# HELP pipe2me_registrations_total Successful pod registrations.\n# TYPE pipe2me_registrations_total counter\n"
        "pipe2me_registrations_total %lld\n",
        registrations);
    add(&t,
        "# HELP pipe2me_redirects_total Consumer redirects to a relay port.\n# TYPE pipe2me_redirects_total counter\n"
        "pipe2me_redirects_total %lld\n",
        redirects);
    add(&t, "# HELP pipe2me_failures_total Refused or failed requests by reason.\n# TYPE pipe2me_failures_total counter\n");
    for (size_t i = 0; i + 1 < stats->elements; i += 2)
        if (strncmp(stats->element[i]->str, "fail:", 5) == 0)
            add(&t, "pipe2me_failures_total{reason=\"%s\"} %lld\n", esc(stats->element[i]->str + 5, a, sizeof(a)),
                num(stats->element[i + 1]));
    add(&t,
        "# HELP pipe2me_leases Port leases in use.\n# TYPE pipe2me_leases gauge\npipe2me_leases{kind=\"pre\"} %lld\n"
        "pipe2me_leases{kind=\"consumer\"} %lld\n",
        num(rep->element[2]), num(rep->element[3]));
    add(&t, "# HELP pipe2me_idle_preconnections Idle pod pre-connections.\n# TYPE pipe2me_idle_preconnections gauge\n");
    for (size_t i = 0; i + 2 < idle->elements; i += 3)
        add(&t, "pipe2me_idle_preconnections{relay=\"%s\",label=\"%s\"} %lld\n", esc(idle->element[i]->str, a, sizeof(a)),
            esc(idle->element[i + 1]->str, b, sizeof(b)), num(idle->element[i + 2]));
    add(&t, "# HELP pipe2me_consumers_waiting Consumers waiting at a relay for a pre-connection.\n"
            "# TYPE pipe2me_consumers_waiting gauge\n");
    for (size_t i = 0; i + 2 < wait->elements; i += 3)
        add(&t, "pipe2me_consumers_waiting{relay=\"%s\",label=\"%s\"} %lld\n", esc(wait->element[i]->str, a, sizeof(a)),
            esc(wait->element[i + 1]->str, b, sizeof(b)), num(wait->element[i + 2]));
    wait_families(&t, rstats);
    add(&t, "# HELP pipe2me_relay_total Relay traffic counters by label.\n# TYPE pipe2me_relay_total counter\n");
    for (size_t i = 0; i + 2 < rstats->elements; i += 3) {
        /* Relay fields are LABEL:COUNTER. */
        const char *field = rstats->element[i + 1]->str, *colon = strrchr(field, ':');
        if (colon == NULL)
            continue;
        snprintf(b, sizeof(b), "%.*s", (int)(colon - field), field);
        char lb[128], cb[128];
        add(&t, "pipe2me_relay_total{relay=\"%s\",label=\"%s\",counter=\"%s\"} %lld\n", esc(rstats->element[i]->str, a, sizeof(a)),
            esc(b, lb, sizeof(lb)), esc(colon + 1, cb, sizeof(cb)), num(rstats->element[i + 2]));
    }
    h2o_req_t *req = op->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain; version=0.0.4"));
    req_send_body(req, t.buf, t.len);
    free(t.buf);
    op_free(op);
}

void metrics_handle(registrar_t *r, h2o_req_t *req)
{
    op_t *op = op_new(r, req, OP_METRICS, sizeof(op_t));
    p2m_store_cmd_t cmd;
    if (p2m_store_cmd_metrics(&cmd) != 0 || redis_send(r, &cmd, on_metrics, op) != 0)
        op_respond(op, 503, "Service Unavailable", "redis unavailable");
}
