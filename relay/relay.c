/* The relay object: what main.c builds, runs and frees, and the helpers every module shares. */
#include "relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

relay_t *relay_new(const p2m_config_t *cfg, unsigned pipes, unsigned pipe_size, char *err)
{
    relay_t *r = relay_xcalloc(1, sizeof(*r));
    r->magic = RELAY_MAGIC;
    r->cfg = *cfg;
    r->started = (long long)time(NULL);
    if ((r->loop = p2m_loop_new(err)) == NULL)
        goto Error;
    if ((r->pipes = p2m_pipe_pool_new(pipes, pipe_size, err)) == NULL)
        goto Error;
    r->limits = limits_new(cfg->relay.max_conns_per_addr);
    if (match_init(r, err) != 0 || ports_init(r, err) != 0)
        goto Error;
    if ((r->redis = rredis_new(r, err)) == NULL)
        goto Error;
    return r;
Error:
    relay_free(r);
    return NULL;
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
    while (r->tunnels != NULL)
        tunnel_close(r->tunnels, "shutdown");
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
    if (r->loop != NULL)
        p2m_loop_reap(r->loop); /* frees closed tunnels and leases, dropping their labels */
    ports_free(r);
    match_free(r);
    limits_free(r->limits);
    p2m_pipe_pool_free(r->pipes);
    p2m_loop_free(r->loop);
    r->magic = 0;
    free(r);
}
