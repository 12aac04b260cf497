/* The relay object: what main.c builds, runs and frees, and the helpers every module shares. */
#include "relay.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "p2m/err.h"

void *relay_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "bytes=%zu", n * size);
        abort();
    }
    return p;
}

void *relay_xrealloc(void *ptr, size_t n, size_t size)
{
    void *p = n != 0 && size > SIZE_MAX / n ? NULL : realloc(ptr, n * size == 0 ? 1 : n * size);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "bytes=%zu", n * size);
        abort();
    }
    return p;
}

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int peer_addr_from_sa(const struct sockaddr *sa, peer_addr_t *out)
{
    if (sa->sa_family == AF_INET) {
        memcpy(out->b, v4mapped, 12);
        memcpy(out->b + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 0;
    }
    return -1;
}

int peer_addr_parse(const char *s, peer_addr_t *out)
{
    struct in_addr a4;
    if (inet_pton(AF_INET, s, &a4) == 1) {
        memcpy(out->b, v4mapped, 12);
        memcpy(out->b + 12, &a4, 4);
        return 0;
    }
    return inet_pton(AF_INET6, s, out->b) == 1 ? 0 : -1;
}

const char *peer_addr_str(const peer_addr_t *a, char *out)
{
    if (memcmp(a->b, v4mapped, 12) == 0)
        inet_ntop(AF_INET, a->b + 12, out, 46);
    else
        inet_ntop(AF_INET6, a->b, out, 46);
    return out;
}

/* --- refusals: logged in full once per (peer, reason) and interval, the rest summed ----------- */

#define PEER_LEN sizeof(((peer_addr_t *)0)->b) /* a refusal's key: the peer's 16 bytes, then the reason */

/* What a conn_refused_repeat line names besides the count: the last refusal counted. */
typedef struct {
    uint16_t lease;
    char label[P2M_SERVICE_MAX + 1];
} refusal_t;

int relay_refusal_log_full(relay_t *r, const peer_addr_t *peer, const char *reason, uint16_t lease, const char *label)
{
    if (r->refusals == NULL)
        return 1;
    uint8_t key[PEER_LEN + RELAY_REFUSAL_REASON_MAX];
    size_t n = strlen(reason);
    assert(n <= RELAY_REFUSAL_REASON_MAX);
    if (n > RELAY_REFUSAL_REASON_MAX)
        n = RELAY_REFUSAL_REASON_MAX;
    memcpy(key, peer->b, PEER_LEN);
    memcpy(key + PEER_LEN, reason, n);
    refusal_t last = {.lease = lease};
    snprintf(last.label, sizeof(last.label), "%s", label != NULL ? label : "");
    return p2m_logsum_event(r->refusals, key, PEER_LEN + n, p2m_loop_now(r->loop), &last) == P2M_LOGSUM_FULL;
}

static void on_refusal_report(const void *key, size_t key_len, uint64_t count, const void *data, void *arg)
{
    const refusal_t *last = data;
    char pstr[PEER_ADDR_STRLEN] = "other";
    const char *reason = "various";
    int reason_len = 7;
    (void)arg;
    if (key != NULL && key_len >= PEER_LEN) {
        peer_addr_t peer;
        memcpy(peer.b, key, PEER_LEN);
        peer_addr_str(&peer, pstr);
        reason = (const char *)key + PEER_LEN;
        reason_len = (int)(key_len - PEER_LEN);
    }
    p2m_log(P2M_LOG_WARN, "conn_refused_repeat", "peer=%s reason=%.*s count=%llu interval_s=%d lease=%u label=%s", pstr, reason_len,
            reason, (unsigned long long)count, RELAY_REFUSAL_INTERVAL_MS / 1000, last != NULL ? (unsigned)last->lease : 0u,
            last != NULL ? last->label : "");
}

/* Logs the refusals counted since the last flush; a shutdown calls it too, so none is lost. */
static void refusals_flush(relay_t *r)
{
    if (r->refusals != NULL && r->loop != NULL)
        p2m_logsum_flush(r->refusals, p2m_loop_now(r->loop), on_refusal_report, NULL);
}

static void on_refusals_flush(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    relay_t *r = (relay_t *)((char *)t - offsetof(relay_t, refusals_flush));
    if (r->magic != RELAY_MAGIC)
        abort();
    refusals_flush(r);
    p2m_loop_timer_start(loop, t, RELAY_REFUSAL_INTERVAL_MS);
}

relay_t *relay_new(const p2m_config_t *cfg, unsigned pipes, unsigned pipe_size, char *err)
{
    relay_t *r = relay_xcalloc(1, sizeof(*r));
    int ok = 0;
    r->magic = RELAY_MAGIC;
    r->cfg = *cfg;
    /* Before anything can fail: relay_free() closes and stops these. */
    p2m_loop_handler_init(&r->sni_listener);
    p2m_loop_timer_init(&r->sni_pause, NULL);
    r->started = (long long)time(NULL);
    p2m_loop_timer_init(&r->refusals_flush, on_refusals_flush); /* before any relay_free() */
    if ((r->loop = p2m_loop_new(err)) == NULL)
        goto Exit;
    r->refusals =
        p2m_logsum_new(RELAY_REFUSAL_KEYS, PEER_LEN + RELAY_REFUSAL_REASON_MAX, sizeof(refusal_t), RELAY_REFUSAL_INTERVAL_MS, err);
    if (r->refusals == NULL)
        goto Exit;
    p2m_loop_timer_start(r->loop, &r->refusals_flush, RELAY_REFUSAL_INTERVAL_MS);
    if ((r->pipes = p2m_pipe_pool_new(pipes, pipe_size, err)) == NULL)
        goto Exit;
    r->limits = limits_new(cfg->relay.max_conns_per_addr);
    if (match_init(r, err) != 0 || ports_init(r, err) != 0 || sni_init(r, err) != 0)
        goto Exit;
    ok = (r->redis = rredis_new(r, err)) != NULL;
Exit:
    if (!ok) { /* relay_free() releases whatever was set up (see above) */
        relay_free(r);
        r = NULL;
    }
    return r;
}

void relay_shutdown(relay_t *r, const char *why)
{
    if (r->stopping) {
        p2m_log(P2M_LOG_WARN, "relay_stop_now", "reason=%s", why);
        p2m_loop_stop(r->loop);
        return;
    }
    p2m_log(P2M_LOG_INFO, "relay_stopping", "reason=%s leases=%zu tunnels=%zu", why, r->nleases, r->ntunnels);
    ports_close_all(r);
    p2m_loop_close(r->loop, &r->sni_listener);
    while (r->tunnels != NULL)
        tunnel_close(r->tunnels, "shutdown");
    /* The listeners are closed: nothing more is refused, and what was counted is logged now. */
    p2m_loop_timer_stop(r->loop, &r->refusals_flush);
    refusals_flush(r);
    r->stopping = 1;
    rredis_shutdown(r->redis);
}

void relay_free(relay_t *r)
{
    if (r == NULL)
        return;
    r->stopping = 1;
    if (r->leases != NULL)
        ports_close_all(r);
    while (r->tunnels != NULL)
        tunnel_close(r->tunnels, "shutdown");
    rredis_free(r->redis);
    r->redis = NULL; /* a wait flush still queued for the reap below finds it gone */
    if (r->loop != NULL)
        p2m_loop_reap(r->loop); /* frees closed tunnels and leases, dropping their labels */
    ports_free(r);
    sni_free(r); /* before match_free: it drops a label reference */
    match_free(r);
    limits_free(r->limits);
    if (r->loop != NULL)
        p2m_loop_timer_stop(r->loop, &r->refusals_flush);
    refusals_flush(r);
    p2m_logsum_free(r->refusals);
    p2m_pipe_pool_free(r->pipes);
    p2m_loop_free(r->loop);
    r->magic = 0;
    free(r);
}

/* --- drain (PROTOCOL 3.9) ----------------------------------------------------------------------- */

void relay_drain_mark(relay_t *r, int marked, int alone)
{
    r->drain_alone = alone;
    if (marked == r->draining || r->stopping)
        return;
    r->draining = marked;
    r->drain_done = 0;
    r->drain_since = p2m_loop_now(r->loop);
    p2m_log(P2M_LOG_INFO, marked ? "relay_draining" : "relay_undrained", "name=%s leases=%zu idle=%zu tunnels=%zu waiting=%zu",
            r->cfg.relay.name, r->nleases, r->nidle, r->njoined, r->nwaiting);
}

/* Whether the relay holds a consumer port: consumers may still be sent here. */
static int holds_consumer_port(const relay_t *r)
{
    for (size_t i = 0; i < r->nports; i++)
        if (r->leases[i] != NULL && r->leases[i]->kind == LEASE_CONSUMER)
            return 1;
    return 0;
}

void relay_drain_tick(relay_t *r)
{
    if (!r->draining || r->stopping)
        return;
    /* The idle pre-connections serve the consumers the registrar still sends here: the registrar
     * moves a service's consumers to another relay only once its pre-connections are there, or
     * none are left here. So they go back only when no consumer can come any more (no consumer
     * port left: the registrar gave the moved ones a TTL and they expired), or when none came for
     * relay.wait_timeout: a service without traffic would otherwise keep them here forever, and
     * once they are closed the pod registers elsewhere at once and its consumers follow. */
    uint64_t now = p2m_loop_now(r->loop), quiet_since = r->last_consumer > r->drain_since ? r->last_consumer : r->drain_since;
    int quiet = now - quiet_since >= (uint64_t)r->cfg.relay.wait_timeout * 1000;
    /* With every live relay draining, the pods would only register here again (PROTOCOL 3.9): keep
     * them until another relay is there. */
    if (r->nidle > 0 && !r->drain_alone && (quiet || !holds_consumer_port(r))) {
        size_t n = 0;
        tunnel_t *t = r->tunnels;
        while (t != NULL) {
            tunnel_t *next = t->all_next;
            if (t->state == TUNNEL_IDLE) {
                tunnel_close(t, "drain"); /* a FIN, as at shutdown: the pod registers again at once (elsewhere) */
                n++;
            }
            t = next;
        }
        if (n > 0)
            p2m_log(P2M_LOG_INFO, "relay_drain_idle", "name=%s closed=%zu reason=%s", r->cfg.relay.name, n,
                    quiet ? "no_consumers" : "no_consumer_ports");
    }
    if (!r->drain_done && r->nleases == 0 && r->nidle == 0 && r->njoined == 0 && r->nwaiting == 0) {
        r->drain_done = 1;
        p2m_log(P2M_LOG_INFO, "relay_drained", "name=%s leases=0 idle=0 tunnels=0 waiting=0 ms=%llu", r->cfg.relay.name,
                (unsigned long long)(now - r->drain_since));
    }
}

static void on_signal(p2m_loop_t *loop, int signo, void *data)
{
    relay_t *r = data;
    (void)loop;
    relay_shutdown(r, signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

int relay_run(const p2m_config_t *cfg, unsigned pipes, unsigned pipe_size)
{
    static const int sigs[] = {SIGTERM, SIGINT};
    char err[P2M_ERR_LEN];
    p2m_log(P2M_LOG_INFO, "relay_start", "name=%s ports=%u-%u listen=%s redis=%s pipes=%u pipe_size=%u pid=%d", cfg->relay.name,
            (unsigned)cfg->relay.ports.lo, (unsigned)cfg->relay.ports.hi, cfg->relay.listen[0] ? cfg->relay.listen : "*",
            cfg->redis_str, pipes, pipe_size, (int)getpid());
    /* splice(2) into a socket whose peer left raises SIGPIPE: the error return is enough. */
    signal(SIGPIPE, SIG_IGN);
    relay_t *r = relay_new(cfg, pipes, pipe_size, err);
    if (r == NULL) {
        p2m_log(P2M_LOG_ERROR, "relay_failed", "error=\"%s\"", err);
        return 2;
    }
    if (p2m_loop_signals(r->loop, sigs, 2, on_signal, r, err) != 0) {
        p2m_log(P2M_LOG_ERROR, "relay_failed", "error=\"%s\"", err);
        relay_free(r);
        return 2;
    }
    int rc = 0;
    if (p2m_loop_run(r->loop) != 0) {
        p2m_log(P2M_LOG_ERROR, "loop_failed", "error=\"%s\"", strerror(errno));
        rc = 1;
    }
    if (r->exit_code != 0)
        rc = r->exit_code;
    p2m_log(P2M_LOG_INFO, "relay_stop", "name=%s status=%d", cfg->relay.name, rc);
    relay_free(r);
    return rc;
}
