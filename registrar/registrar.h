#ifndef REGISTRAR_H
#define REGISTRAR_H

#include <h2o.h>
#include <stdint.h>

#include "p2m/authhdr.h"
#include "p2m/config.h"
#include "p2m/err.h"
#include "p2m/service.h"
#include "p2m/store_cmd.h"
#include "names.h"
#include "tls.h"

struct redisAsyncContext;
struct redisReply;
struct p2m_logsum;
typedef struct registrar registrar_t;
typedef struct op op_t;

struct registrar {
    p2m_config_t cfg;
    h2o_globalconf_t h2o_config;
    h2o_context_t h2o_ctx;
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
    h2o_timeout_t bound_timeout;   /* how long an op waits for a relay to bind its port */
    op_t *waiting[65536];          /* ops waiting for "PORT ok", by port */
    uint64_t requests;

    /* registrar.proxy_listen (http.c): how long a connection may take to send its PROXY line, and
     * the refusals of that listener, logged in full once per (peer, reason) and interval. */
    h2o_timeout_t proxy_line_timeout;
    struct p2m_logsum *proxy_refusals;
    h2o_timeout_t proxy_flush_timeout;
    h2o_timeout_entry_t proxy_flush_entry;
};

/* The state of one request that needs Redis. Ops are malloc'd, never in the request pool: the
 * client may go away while a Redis reply is still due. req becomes NULL then (see op_guard in
 * http.c), and the op is freed when its pending callback or wait ends. */
typedef enum { OP_REGISTER, OP_CERTIFICATE, OP_CONSUMER, OP_TCP, OP_HEALTH, OP_METRICS } op_kind_t;

struct op {
    registrar_t *r;
    h2o_req_t *req;
    struct op_guard *guard;
    op_kind_t kind;
    char addr[64]; /* peer address, IPv4 dotted or IPv6 */
    char label[P2M_LABEL_MAX + 1];
    char id[P2M_ID_MAX + 1];
    p2m_auth_t auth;
    char session[64];        /* credential issued with a TOTP registration, "" if none */
    char session_digest[65]; /* hex SHA-256 of it: the Redis key never holds the credential */
    unsigned tries;
    uint16_t port;
    char relay_addr[P2M_HOST_MAX + 1];
    op_t *next_waiting;
    h2o_timeout_entry_t wait_entry;
    h2o_iovec_t path;             /* consumer: path and query, in the request pool */
    p2m_proto_t proto;            /* register: the service declared; consumer: the service chosen */
    unsigned conns;               /* register: pre-connections the leased port accepts (PROTOCOL 1.1) */
    char waiting[24], waited[24]; /* register: the demand the pod is told of (P2M-Waiting, P2M-Waited) */
    int queued;                   /* consumer: no idle pre-connection now, the consumer will wait at the relay */
    int plain_http;               /* consumer: the request came on the plain-HTTP listener */
    int via_sni;                  /* the request came through registrar.proxy_listen (the relay's SNI port) */
    struct X509_req_st *csr;      /* certificate: the checked request, freed with the op */
    char why[P2M_ERR_LEN + 32];   /* a refusal's reason while its strike is being counted */
    int has_body;                 /* register: the request had a body (else the label's default protocol applies) */
    int struck_all;               /* register: auth_lookup counted the ID and address limiters too */
    int reused;                   /* register: the TOTP code was used again, as the pod's token_reuse allows */
};

/* http.c */
op_t *op_new(registrar_t *r, h2o_req_t *req, op_kind_t kind);
void op_free(op_t *op);
/* Sends status with a one-line text/plain body ("reason\n") and frees op. Does nothing to a
 * request whose client has gone, but still frees op. */
void op_respond(op_t *op, int status, const char *reason, const char *body);
/* Adds a header to op's response (before op_respond). name must be a static string. */
void op_header(op_t *op, const char *name, const char *value);
/* Registers the handlers: before h2o_context_init. */
int registrar_http_setup(registrar_t *r);
/* Checks that every configured listener's host is an IP address (what --check-config adds to the
 * shared checks). Returns 0 or -1 with err naming the key. */
int registrar_listen_check(const p2m_config_t *cfg, char *err);
/* Opens the HTTPS and HTTP listeners, the PROXY listener when registrar.proxy_listen is set and
 * the metrics listener when registrar.metrics_listen is: after h2o_context_init. Returns 0 or -1
 * with err. */
int registrar_listen(registrar_t *r, char *err);
/* Logs the PROXY listener's refusals counted but not yet reported and frees its summariser:
 * before exit, so that no count is lost. Safe to call when the listener never opened. */
void registrar_listen_close(registrar_t *r);
/* The log field added to the request lines of requests that came through the PROXY listener:
 * " via=sni", or "" for the others. */
const char *op_via(const op_t *op);

/* redis_h2o.c */
/* Starts the connection manager on r's h2o loop. Returns 0. */
int redis_start(registrar_t *r, char *err);
/* Sends a command; cb gets (reply or NULL on failure, op). Returns 0, or -1 when Redis is down. */
int redis_send(registrar_t *r, const p2m_cmd_t *cmd, void (*cb)(op_t *, struct redisReply *), op_t *op);
/* Fire and forget (statistics). */
void redis_send_nowait(registrar_t *r, const p2m_cmd_t *cmd);

/* lease.c: waiting for relays */
/* Announces op->port to relay and waits for its answer; then calls op's continuation. */
void lease_wait(op_t *op, const char *relay, int announce);
void lease_on_bound(registrar_t *r, uint16_t port, int ok, const char *reason);

/* register.c: authentication (TOTP or session) for registrations and certificate requests */
void register_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len);
void register_bound(op_t *op, int ok);
/* Authenticates op (its label, addr and the request's Authorization) and calls
 * certificate_authorized(op) or answers 401/403/429/503 itself. */
void auth_start(op_t *op);
/* Answers a registration or certificate request with an error: logged, counted (fail:STATUS). */
void op_fail(op_t *op, int status, const char *reason, const char *why);
/* Adds the P2M-Session headers when op's TOTP authentication issued a credential. */
void session_headers(op_t *op);

/* certificate.c: POST /certificate/LABEL (PROTOCOL 4) */
void certificate_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len);
void certificate_authorized(op_t *op);

/* redirect.c: consumers (PROTOCOL 2). plain_http: the request came on the HTTP listener. */
void redirect_handle(registrar_t *r, h2o_req_t *req, const char *label, int plain_http);
/* GET /tcp/LABEL (PROTOCOL 2.2) */
void tcp_port_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len);
void redirect_bound(op_t *op, int ok);

/* health.c */
void health_handle(registrar_t *r, h2o_req_t *req);
void metrics_handle(registrar_t *r, h2o_req_t *req);
void cacert_handle(registrar_t *r, h2o_req_t *req);

#endif
