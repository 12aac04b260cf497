/* The heartbeat and the drain switch (drain.h). One script a beat refreshes the hash and reads the
 * drain key, so that a drain set by the admin tool takes effect within one heartbeat on every
 * registrar that shares the Redis, and a registrar that stops leaves nothing behind but a hash
 * that expires. */
#include "drain.h"
#include "op.h"
#include "redis_h2o.h"
#include "registrar.h"
#include "req.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/store.h"
#include "p2m/store_cmd.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DRAIN_RETRY_MS 250 /* a beat Redis did not take is tried again this soon */

static registrar_t *beat_registrar(h2o_timeout_entry_t *e)
{
    return H2O_STRUCT_FROM_MEMBER(registrar_t, beat_entry, e);
}

static void beat(registrar_t *r);

static void on_beat_timer(h2o_timeout_entry_t *e)
{
    beat(beat_registrar(e));
}

static void schedule(registrar_t *r, int ok)
{
    if (h2o_timeout_is_linked(&r->beat_entry))
        h2o_timeout_unlink(&r->beat_entry);
    h2o_timeout_link(r->h2o_ctx.loop, ok ? &r->beat_timeout : &r->beat_retry_timeout, &r->beat_entry);
}

/* The heartbeat's reply: the drain URL or "". A change is logged once. */
static void on_beat(op_t *op, redisReply *rep)
{
    registrar_t *r = op->r;
    r->beat_pending = 0;
    if (rep == NULL || rep->type != REDIS_REPLY_STRING) {
        schedule(r, 0);
        return;
    }
    char to[P2M_URL_MAX + 1], raw[P2M_URL_MAX + 1], e[P2M_ERR_LEN];
    snprintf(raw, sizeof(raw), "%.*s", (int)(rep->len < sizeof(raw) ? rep->len : sizeof(raw) - 1), rep->str);
    /* The admin tool checked the URL; one written by hand goes through the same check before it
     * reaches a Location header (no blank or control byte, https://), or it is not followed. */
    to[0] = '\0';
    if (raw[0] != '\0' && (rep->len >= sizeof(raw) || p2m_https_base_normalize(raw, to, e) != 0)) {
        if (strcmp(r->drain_bad, raw) != 0)
            p2m_log(P2M_LOG_ERROR, "registrar_drain_refused", "name=%s reason=\"drain URL is not https://\"",
                    r->cfg.registrar.name);
        snprintf(r->drain_bad, sizeof(r->drain_bad), "%s", raw);
        to[0] = '\0';
    }
    if (strcmp(to, r->draining_to) != 0) {
        if (to[0] != '\0')
            p2m_log(P2M_LOG_WARN, "registrar_draining", "name=%s to=%s", r->cfg.registrar.name, to);
        else
            p2m_log(P2M_LOG_INFO, "registrar_undrained", "name=%s", r->cfg.registrar.name);
        memcpy(r->draining_to, to, sizeof(to));
    }
    schedule(r, 1);
}

static void beat(registrar_t *r)
{
    p2m_store_cmd_t cmd;
    if (r->beat_pending)
        return;
    if (p2m_store_cmd_registrar_heartbeat(&cmd, r->cfg.registrar.name, r->cfg.registrar.url, r->started, r->cfg.registrar.pods_to,
                                          P2M_REGISTRAR_HEARTBEAT_TTL) != 0 ||
        redis_send(r, &cmd, on_beat, r->beat_op) != 0) {
        schedule(r, 0);
        return;
    }
    r->beat_pending = 1;
}

void drain_start(registrar_t *r)
{
    if ((r->beat_op = calloc(1, sizeof(op_t))) == NULL) {
        p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=heartbeat");
        abort();
    }
    r->beat_op->r = r;
    r->beat_op->kind = OP_HEALTH;
    snprintf(r->started, sizeof(r->started), "%lld", (long long)time(NULL));
    h2o_timeout_init(r->h2o_ctx.loop, &r->beat_timeout, P2M_REGISTRAR_HEARTBEAT_MS);
    h2o_timeout_init(r->h2o_ctx.loop, &r->beat_retry_timeout, DRAIN_RETRY_MS);
    r->beat_entry = (h2o_timeout_entry_t){.cb = on_beat_timer};
    beat(r);
}

const char *drain_target(const registrar_t *r, int *status)
{
    if (r->cfg.registrar.pods_to[0] != '\0') {
        *status = 308;
        return r->cfg.registrar.pods_to;
    }
    if (r->draining_to[0] != '\0') {
        *status = 307;
        return r->draining_to;
    }
    return NULL;
}

int drain_redirect(registrar_t *r, h2o_req_t *req, const char *kind, const char *label, size_t label_len)
{
    int status;
    const char *to = drain_target(r, &status);
    if (to == NULL)
        return 0;
    size_t tl = strlen(to);
    char *loc = h2o_mem_alloc_pool(&req->pool, tl + req->path.len + 1);
    memcpy(loc, to, tl);
    memcpy(loc + tl, req->path.base, req->path.len);
    loc[tl + req->path.len] = '\0';
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc, tl + req->path.len);
    char addr[64];
    req_peer_addr(req, addr, sizeof(addr));
    p2m_log(P2M_LOG_INFO, "register_redirect", "status=%d kind=%s label=%.*s addr=%s to=%s", status, kind,
            (int)(label_len > P2M_LABEL_MAX ? P2M_LABEL_MAX : label_len), label, addr, loc);
    req_send_text(req, status, status == 308 ? "Permanent Redirect" : "Temporary Redirect",
                  status == 308 ? "this registrar sends its pods elsewhere for good"
                                : "this registrar is draining: register elsewhere");
    return 1;
}
