#ifndef REGISTRAR_H
#define REGISTRAR_H

#include <h2o.h>
#include <stdint.h>

#include "p2m/config.h"
#include "names.h"
#include "tls.h"

/* The registrar's state, shared by its modules: main.c fills it, the others read it. Beside the
 * leaf modules names.h and tls.h it includes no registrar header, so that every module can include
 * it without closing a circle; the request modules' types are only forward-declared. */

struct p2m_logsum;
struct lease_waiter;
struct direct;
typedef struct registrar registrar_t;

enum { REGISTRAR_LISTEN_HTTPS, REGISTRAR_LISTEN_HTTP, REGISTRAR_LISTEN_METRICS, REGISTRAR_LISTEN_PROXY, REGISTRAR_LISTENERS };

struct registrar {
    p2m_config_t cfg;
    h2o_globalconf_t h2o_config;
    h2o_context_t h2o_ctx;
    int listen_fd[REGISTRAR_LISTENERS]; /* bound by registrar_bind(), -1 once the loop owns them */
    h2o_accept_ctx_t accept_https, accept_http;
    h2o_accept_ctx_t accept_proxy;          /* registrar.proxy_listen: HTTPS after our own check of the PROXY line */
    h2o_accept_ctx_t accept_metrics;        /* registrar.metrics_listen: plain HTTP, /metrics and /_health only */
    registrar_names_t names;                /* what the registrar answers as itself (names.h) */
    unsigned char metrics_token_sha256[32]; /* of registrar.metrics_token, when set */
    SSL_CTX *ssl_ctx;
    tls_ca_t ca;
    uint16_t https_port; /* the port consumers reach HTTPS on, for HTTP -> HTTPS redirects */

    struct p2m_redis *redis;       /* the connection manager (redis_h2o.c) */
    struct p2m_redis_ev *redis_ev; /* its adapter to h2o's loop */
    int fatal;                     /* Redis holds another schema version: main exits 1 */
    /* Where redis_h2o.c hands a relay's "PORT ok|fail" (redis_start's argument: lease_on_bound). */
    void (*on_bound)(registrar_t *r, uint16_t port, int ok, const char *reason);
    h2o_timeout_t bound_timeout;         /* how long a lease waits for a relay to bind its port */
    struct lease_waiter *waiting[65536]; /* leases waiting for "PORT ok", by port (lease.c) */
    uint64_t requests;
    int lease_on_draining; /* the last pre lease went to a draining relay: no other had a free port (logged once per change) */

    /* registrar.proxy_listen (http.c): how long a connection may take to send its PROXY line, and
     * the refusals of that listener, logged in full once per (peer, reason) and interval. */
    h2o_timeout_t proxy_line_timeout;
    struct p2m_logsum *proxy_refusals;
    h2o_timeout_t proxy_flush_timeout;
    h2o_timeout_entry_t proxy_flush_entry;
    /* drain.c: the heartbeat, and the drain URL it last read ("" when not draining) */
    h2o_timeout_t beat_timeout, beat_retry_timeout;
    h2o_timeout_entry_t beat_entry;
    struct op *beat_op; /* what the heartbeat's reply is handed back with */
    int beat_pending;
    char started[24];
    char draining_to[P2M_URL_MAX + 1];
    char drain_bad[P2M_URL_MAX + 1]; /* a drain URL refused (logged once) */
    struct direct *direct;           /* the direct-path checker (direct.c) */
};

#endif
