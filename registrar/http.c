/* Request routing, and the HTTPS, HTTP, PROXY and metrics listeners. */
#include "http.h"
#include "certificate.h"
#include "drain.h"
#include "health.h"
#include "redirect.h"
#include "redis_h2o.h"
#include "register.h"
#include "registrar.h"
#include "req.h"
#include "setup.h"
#include "p2m/addr.h"
#include "p2m/err.h"
#include "p2m/host.h"
#include "p2m/log.h"
#include "p2m/logsum.h"
#include "p2m/proxyline.h"
#include "p2m/store_cmd.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PATH_LEN 4096
#define MAX_BODY 65536

/* registrar.proxy_listen */
#define PROXY_LINE_TIMEOUT_MS 10000     /* from accept to a whole PROXY line */
#define PROXY_REFUSAL_INTERVAL_MS 10000 /* a (peer, reason) is logged in full at most once per interval */
#define PROXY_REFUSAL_KEYS 1024         /* (peer, reason) pairs followed at once; more share one "other" line */
#define PROXY_REFUSAL_KEY_MAX 64        /* "reason peer" */
#define PROXY_CONN_MAGIC 0x70726f78u    /* "prox" */

static h2o_hostconf_t *https_hosts[2], *http_hosts[2], *proxy_hosts[2], *metrics_hosts[2];

/* Sorts a request by its authority (Host): P2M_HOST_LABEL for LABEL.DOMAIN (label written),
 * P2M_HOST_BARE for the registrar itself, which is DOMAIN, a registrar.names entry or one of its
 * own addresses (names.h), with *self the name or address as the registrar spells it; -1 for
 * anything else. h2o has already refused requests without one. */
static int classify_host(registrar_t *r, h2o_req_t *req, char *label, const char **self)
{
    uint16_t port;
    char err[P2M_ERR_LEN];
    *self = r->cfg.domain;
    /* RFC 9112 3.2: a request with more than one Host is answered 400; we answer it like any
     * other host we do not serve. */
    ssize_t first = h2o_find_header(&req->headers, H2O_TOKEN_HOST, -1);
    if (first >= 0 && h2o_find_header(&req->headers, H2O_TOKEN_HOST, first) >= 0)
        return -1;
    int kind = p2m_host_parse(req->authority.base, req->authority.len, r->cfg.domain, label, &port, err);
    if (kind >= 0)
        return kind;
    int own = p2m_host_is_own(req->authority.base, req->authority.len, r->names.own, r->names.nown, &port);
    if (own < 0)
        return -1;
    *self = r->names.own[own];
    return P2M_HOST_BARE;
}

/* /metrics on the HTTPS listeners (PROTOCOL 2.3): only with registrar.metrics_token, presented as
 * "Authorization: Bearer TOKEN"; without a token configured the path does not exist there. The
 * digests are compared, in constant time, so that neither the token's bytes nor its length show in
 * the time a refusal takes. Returns 1 when the request may have the metrics, else answers it. */
static int metrics_allowed(registrar_t *r, h2o_req_t *req)
{
    if (r->cfg.registrar.metrics_token[0] == '\0') {
        req_send_text(req, 404, "Not Found", "not found");
        return 0;
    }
    const char *why = "no_token";
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (at >= 0 && h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, at) < 0) {
        h2o_iovec_t v = req->headers.entries[at].value;
        const char *p = v.base, *end = v.base + v.len;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        why = "bad_token";
        if (end - p > 7 && strncasecmp(p, "Bearer ", 7) == 0) {
            p += 7;
            while (p < end && *p == ' ')
                p++;
            unsigned char md[32];
            unsigned mdlen = 0;
            if (EVP_Digest(p, (size_t)(end - p), md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == sizeof(md) &&
                CRYPTO_memcmp(md, r->metrics_token_sha256, sizeof(md)) == 0)
                return 1;
        }
    }
    char addr[64];
    req_peer_addr(req, addr, sizeof(addr));
    p2m_log(P2M_LOG_INFO, "metrics_refused", "status=401 addr=%s reason=%s", addr, why);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer realm=\"metrics\""));
    req_send_text(req, 401, "Unauthorized", "metrics need Authorization: Bearer with registrar.metrics_token");
    return 0;
}

static int path_ok(h2o_iovec_t path)
{
    if (path.len == 0 || path.len > MAX_PATH_LEN || path.base[0] != '/')
        return 0;
    for (size_t i = 0; i < path.len; i++)
        if ((unsigned char)path.base[i] <= ' ' || (unsigned char)path.base[i] >= 0x7f)
            return 0;
    return 1;
}

/* Everything the HTTPS listener serves; the PROXY listener serves the same after its 421 check. */
static void serve_https(registrar_t *r, h2o_req_t *req)
{
    char label[P2M_LABEL_MAX + 1];
    const char *self;
    r->requests++;

    int kind = classify_host(r, req, label, &self);
    if (kind < 0) {
        req_send_text(req, 404, "Not Found", "unknown host");
        return;
    }
    if (!path_ok(req->path)) {
        req_send_text(req, 400, "Bad Request", "invalid request target");
        return;
    }
    if (kind == P2M_HOST_LABEL) {
        redirect_handle(r, req, label, 0);
        return;
    }
    h2o_iovec_t path = req->path_normalized;
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    static const struct {
        const char *prefix;
        const char *method;
        const char *usage;
        void (*handle)(registrar_t *, h2o_req_t *, const char *, size_t);
    } labelled[] = {
        {"/register/", "PUT", "use PUT /register/LABEL", register_handle},
        {"/certificate/", "POST", "use POST /certificate/LABEL", certificate_handle},
        {"/tcp/", "GET", "use GET /tcp/LABEL", tcp_port_handle},
    };
    for (size_t i = 0; i < sizeof(labelled) / sizeof(labelled[0]); i++) {
        size_t plen = strlen(labelled[i].prefix);
        if (path.len <= plen || memcmp(path.base, labelled[i].prefix, plen) != 0)
            continue;
        if (!h2o_memis(req->method.base, req->method.len, labelled[i].method, strlen(labelled[i].method))) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, labelled[i].method, strlen(labelled[i].method));
            req_send_text(req, 405, "Method Not Allowed", labelled[i].usage);
            return;
        }
        /* The raw path, not the normalized one: "/register/a/../b" is not a label. */
        if (req->query_at != SIZE_MAX || req->path.len != path.len) {
            req_send_text(req, 404, "Not Found", "no such label");
            return;
        }
        /* A draining registrar sends pods on before it looks at their credential (PROTOCOL 1.7). */
        if (labelled[i].handle != tcp_port_handle &&
            drain_redirect(r, req, i == 0 ? "register" : "certificate", req->path.base + plen, req->path.len - plen))
            return;
        labelled[i].handle(r, req, req->path.base + plen, req->path.len - plen);
        return;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/setup"))) {
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
            req_send_text(req, 405, "Method Not Allowed", "use POST /setup");
        } else {
            setup_handle(r, req);
        }
    } else if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/_health"))) {
        health_handle(r, req);
    } else if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/cacert"))) {
        cacert_handle(r, req);
    } else if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/metrics"))) {
        if (metrics_allowed(r, req))
            metrics_handle(r, req);
    } else {
        req_send_text(req, 404, "Not Found", "not found");
    }
}

static int on_req_https(h2o_handler_t *self, h2o_req_t *req)
{
    serve_https(*(registrar_t **)(self + 1), req);
    return 0;
}

/* libh2o 2.2 has no h2o_socket_get_ssl_server_name (2.3 added it). Its struct
 * st_h2o_socket_ssl_t is private, but begins with the SSL_CTX the handshake was given and then the
 * SSL: h2o_socket_ssl_handshake stores them there and h2o_socket_get_ssl_cipher reads the SSL from
 * the second word (checked in the disassembly of the Debian build, 2.2.5+dfsg2-7). Only a socket
 * whose first word is our own SSL_CTX, and whose SSL says so too, is read further; another h2o
 * version fails the build here rather than reading a struct it does not know. */
#if H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2
#error "conn_server_name reads libh2o 2.2's private socket struct: use h2o_socket_get_ssl_server_name (2.3+) instead"
#endif
struct h2o_ssl_head_22 {
    SSL_CTX *ssl_ctx;
    SSL *ossl;
};

/* The TLS server name conn was opened for, or NULL when the client sent none. */
static const char *conn_server_name(registrar_t *r, h2o_conn_t *conn)
{
    h2o_socket_t *sock = conn->callbacks->get_socket != NULL ? conn->callbacks->get_socket(conn) : NULL;
    if (sock == NULL || sock->ssl == NULL)
        return NULL;
    const struct h2o_ssl_head_22 *head = (const struct h2o_ssl_head_22 *)sock->ssl;
    if (head->ssl_ctx != r->ssl_ctx || head->ossl == NULL || SSL_get_SSL_CTX(head->ossl) != r->ssl_ctx)
        return NULL;
    const char *name = SSL_get_servername(head->ossl, TLSEXT_NAMETYPE_host_name);
    return name != NULL && name[0] != '\0' ? name : NULL;
}

/* A host name without its one trailing dot, if any. */
static size_t name_len(const char *s, size_t len)
{
    return len > 1 && s[len - 1] == '.' ? len - 1 : len;
}

/* Whether authority (a Host value, maybe with a port or an IPv6 literal) names the host name sni,
 * case-insensitively and ignoring a trailing dot on either. */
static int authority_is(h2o_iovec_t authority, const char *sni)
{
    const char *a = authority.base;
    size_t alen = authority.len;
    if (alen > 0 && a[0] == '[')
        return 0; /* an IP literal: a server name is never one (RFC 6066 3) */
    const char *colon = memchr(a, ':', alen);
    if (colon != NULL)
        alen = (size_t)(colon - a);
    alen = name_len(a, alen);
    size_t slen = name_len(sni, strlen(sni));
    return alen == slen && strncasecmp(a, sni, alen) == 0;
}

/* A name from outside as a log field (p2m_log_safe): letters, digits and ".:_[]-". */
static const char *log_name(const char *s, size_t len, char *out, size_t cap)
{
    return p2m_log_safe(s, len, ".:_[]-", out, cap);
}

/* The PROXY listener: a request whose Host is not the name its TLS connection was opened for is
 * answered 421 (RFC 9110 15.5.20). A browser holding an HTTP/2 connection to DOMAIN may send
 * LABEL.DOMAIN requests on it, since the certificate covers *.DOMAIN; after the 421 it opens a
 * connection of its own, which the relay's SNI port routes to the pod. A connection without a
 * server name cannot have been coalesced: any Host is served. */
static int on_req_proxy(h2o_handler_t *self, h2o_req_t *req)
{
    registrar_t *r = *(registrar_t **)(self + 1);
    const char *sni = conn_server_name(r, req->conn);
    if (sni == NULL || authority_is(req->authority, sni)) {
        serve_https(r, req);
        return 0;
    }
    r->requests++;
    char addr[64], host[80], name[P2M_HOST_MAX + 8], body[P2M_HOST_MAX + 64];
    p2m_store_cmd_t cmd;
    req_peer_addr(req, addr, sizeof(addr));
    p2m_log(P2M_LOG_INFO, "misdirected", "status=421 addr=%s host=%s sni=%s via=sni", addr,
            log_name(req->authority.base, req->authority.len, host, sizeof(host)), log_name(sni, strlen(sni), name, sizeof(name)));
    if (p2m_store_cmd_stat(&cmd, "fail:421") == 0)
        redis_send_nowait(r, &cmd);
    snprintf(body, sizeof(body), "misdirected request: this connection is for %s", log_name(sni, strlen(sni), name, sizeof(name)));
    req_send_text(req, 421, "Misdirected Request", body);
    return 0;
}

/* Plain HTTP: a label's consumers go by the protocol rule (PROTOCOL 2.1), everything else is sent
 * to the same URL on HTTPS. */
static int on_req_http(h2o_handler_t *self, h2o_req_t *req)
{
    registrar_t *r = *(registrar_t **)(self + 1);
    char label[P2M_LABEL_MAX + 1];
    const char *host;
    int kind = classify_host(r, req, label, &host);
    if (kind < 0) {
        req_send_text(req, 404, "Not Found", "unknown host");
        return 0;
    }
    if (!path_ok(req->path)) {
        req_send_text(req, 400, "Bad Request", "invalid request target");
        return 0;
    }
    if (kind == P2M_HOST_LABEL) {
        redirect_handle(r, req, label, 1);
        return 0;
    }
    /* To the name the client used, as the registrar spells it: it is one the certificate has. */
    char port[8] = "";
    int v6 = strchr(host, ':') != NULL;
    if (r->https_port != 443)
        snprintf(port, sizeof(port), ":%u", (unsigned)r->https_port);
    h2o_iovec_t loc =
        h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("https://")), h2o_iovec_init("[", v6), h2o_iovec_init(host, strlen(host)),
                   h2o_iovec_init("]", v6), h2o_iovec_init(port, strlen(port)), req->path);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc.base, loc.len);
    req_send_text(req, 308, "Permanent Redirect", "use https");
    return 0;
}

/* registrar.metrics_listen: plain HTTP for a scraper, no Host check (it may name the address),
 * nothing but the metrics and the health check. */
static int on_req_metrics(h2o_handler_t *self, h2o_req_t *req)
{
    registrar_t *r = *(registrar_t **)(self + 1);
    h2o_iovec_t path = req->path_normalized;
    int is_metrics = h2o_memis(path.base, path.len, H2O_STRLIT("/metrics")),
        is_health = h2o_memis(path.base, path.len, H2O_STRLIT("/_health"));
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    r->requests++;
    if (!is_metrics && !is_health) {
        req_send_text(req, 404, "Not Found", "not found");
    } else if (!is_get) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        req_send_text(req, 405, "Method Not Allowed", "use GET");
    } else if (is_metrics) {
        metrics_handle(r, req);
    } else {
        health_handle(r, req);
    }
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL)
        h2o_accept(listener->data, sock);
}

/* --- registrar.proxy_listen: the relay's SNI port passes the registrar's own names here ------------
 *
 * Every connection starts with one PROXY protocol v1 line naming the consumer, then TLS. libh2o
 * 2.2.5 can read that line itself (h2o_accept_ctx_t.expect_proxy_line), but it treats a connection
 * whose first bytes are not a valid line as one without a line: a malformed line goes on to the TLS
 * handshake, and a connection that starts with a ClientHello is served with the relay's address as
 * the consumer's; it tells the application nothing either way (lib/core/util.c, on_read_proxy_line:
 * "error, just pass the input to the next handler"). So the registrar reads the line itself, strictly
 * and within PROXY_LINE_TIMEOUT_MS, sets the address it names as the socket's peer name with
 * h2o_socket_setpeername (where h2o's own reader puts it, and what get_peername answers from then
 * on), and hands the socket to h2o_accept with expect_proxy_line off: h2o's TLS handshake starts
 * with the bytes already read after the line. */

typedef struct {
    uint32_t magic;
    registrar_t *r;
    h2o_socket_t *sock;
    h2o_timeout_entry_t timeout;
    char peer[INET6_ADDRSTRLEN]; /* the TCP peer: a relay */
} proxy_conn_t;

/* Logs a refusal on the PROXY listener: in full the first time for (reason, peer) in an interval,
 * counted otherwise (reported by on_proxy_flush). */
static void proxy_refused(registrar_t *r, const char *peer, const char *reason)
{
    char key[PROXY_REFUSAL_KEY_MAX];
    int n = snprintf(key, sizeof(key), "%s %s", reason, peer);
    size_t klen = n > 0 && (size_t)n < sizeof(key) ? (size_t)n : sizeof(key) - 1;
    if (r->proxy_refusals == NULL ||
        p2m_logsum_event(r->proxy_refusals, key, klen, h2o_now(r->h2o_ctx.loop), NULL) == P2M_LOGSUM_FULL)
        p2m_log(P2M_LOG_WARN, "proxy_refused", "peer=%s reason=%s", peer, reason);
}

static void on_proxy_report(const void *key, size_t key_len, uint64_t count, const void *data, void *arg)
{
    const char *k = key, *sp = key != NULL ? memchr(key, ' ', key_len) : NULL;
    (void)data;
    (void)arg;
    if (sp == NULL) {
        p2m_log(P2M_LOG_WARN, "proxy_refused_repeat", "peer=other reason=various count=%llu interval_s=%d",
                (unsigned long long)count, PROXY_REFUSAL_INTERVAL_MS / 1000);
        return;
    }
    p2m_log(P2M_LOG_WARN, "proxy_refused_repeat", "peer=%.*s reason=%.*s count=%llu interval_s=%d",
            (int)(key_len - (size_t)(sp - k) - 1), sp + 1, (int)(sp - k), k, (unsigned long long)count,
            PROXY_REFUSAL_INTERVAL_MS / 1000);
}

static void on_proxy_flush(h2o_timeout_entry_t *entry)
{
    registrar_t *r = H2O_STRUCT_FROM_MEMBER(registrar_t, proxy_flush_entry, entry);
    p2m_logsum_flush(r->proxy_refusals, h2o_now(r->h2o_ctx.loop), on_proxy_report, NULL);
    h2o_timeout_link(r->h2o_ctx.loop, &r->proxy_flush_timeout, &r->proxy_flush_entry);
}

/* Ends a connection that never reached h2o: logged, closed, its state freed. */
static void proxy_conn_refuse(proxy_conn_t *pc, const char *reason)
{
    h2o_socket_t *sock = pc->sock;
    proxy_refused(pc->r, pc->peer, reason);
    if (h2o_timeout_is_linked(&pc->timeout))
        h2o_timeout_unlink(&pc->timeout);
    pc->magic = 0;
    free(pc);
    sock->data = NULL;
    h2o_socket_close(sock);
}

static void on_proxy_timeout(h2o_timeout_entry_t *entry)
{
    proxy_conn_t *pc = H2O_STRUCT_FROM_MEMBER(proxy_conn_t, timeout, entry);
    if (pc->magic != PROXY_CONN_MAGIC)
        abort();
    proxy_conn_refuse(pc, "timeout");
}

static void on_proxy_line(h2o_socket_t *sock, const char *err)
{
    proxy_conn_t *pc = sock->data;
    if (pc == NULL || pc->magic != PROXY_CONN_MAGIC)
        abort();
    if (err != NULL) {
        proxy_conn_refuse(pc, "closed");
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    /* Strict (lib/proxyline.c): a wrong byte ends the connection as soon as it arrives. */
    ssize_t n = p2m_proxy_line_parse(sock->input->bytes, sock->input->size, &ss, &sslen, NULL);
    if (n == 0)
        return; /* more to come, within the timeout */
    if (n < 0) {
        proxy_conn_refuse(pc, "proxy_line");
        return;
    }
    registrar_t *r = pc->r;
    char consumer[INET6_ADDRSTRLEN];
    req_sockaddr_str((struct sockaddr *)&ss, consumer, sizeof(consumer));
    /* One line per connection, so that every consumer the relays pass on is on record, also where
     * its requests (/cacert, /_health) log nothing of their own. */
    p2m_log(P2M_LOG_INFO, "proxy_accepted", "peer=%s addr=%s via=sni", pc->peer, consumer);
    h2o_socket_read_stop(sock);
    h2o_buffer_consume(&sock->input, (size_t)n);
    h2o_socket_setpeername(sock, (struct sockaddr *)&ss, sslen);
    h2o_timeout_unlink(&pc->timeout);
    pc->magic = 0;
    free(pc);
    sock->data = NULL;
    h2o_accept(&r->accept_proxy, sock);
}

static void on_accept_proxy(h2o_socket_t *listener, const char *err)
{
    registrar_t *r = listener->data;
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock == NULL)
        return;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char peer[INET6_ADDRSTRLEN];
    if (getpeername(h2o_socket_get_fd(sock), (struct sockaddr *)&ss, &sslen) != 0) {
        h2o_socket_close(sock); /* already gone */
        return;
    }
    req_sockaddr_str((struct sockaddr *)&ss, peer, sizeof(peer));
    unsigned i;
    for (i = 0; i < r->cfg.registrar.nproxy_from; i++)
        if (strcmp(peer, r->cfg.registrar.proxy_from[i]) == 0)
            break;
    if (i == r->cfg.registrar.nproxy_from) {
        proxy_refused(r, peer, "address");
        h2o_socket_close(sock);
        return;
    }
    proxy_conn_t *pc = calloc(1, sizeof(*pc));
    if (pc == NULL) {
        p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=on_accept_proxy");
        abort();
    }
    pc->magic = PROXY_CONN_MAGIC;
    pc->r = r;
    pc->sock = sock;
    pc->timeout.cb = on_proxy_timeout;
    snprintf(pc->peer, sizeof(pc->peer), "%s", peer);
    sock->data = pc;
    h2o_timeout_link(r->h2o_ctx.loop, &r->proxy_line_timeout, &pc->timeout);
    h2o_socket_read_start(sock, on_proxy_line);
}

/* hp as a socket address; what names the key in err. */
static int listen_addr(const p2m_hostport_t *hp, const char *what, struct sockaddr_storage *ss, socklen_t *sslen, char *err)
{
    memset(ss, 0, sizeof(*ss));
    if (hp->host[0] == '\0' || strchr(hp->host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(hp->port);
        s6->sin6_addr = in6addr_any;
        if (hp->host[0] != '\0' && inet_pton(AF_INET6, hp->host, &s6->sin6_addr) != 1)
            return p2m_err(err, "registrar.%s: %s is not an IP address", what, hp->host);
        *sslen = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(hp->port);
        if (inet_pton(AF_INET, hp->host, &s4->sin_addr) != 1)
            return p2m_err(err, "registrar.%s: %s is not an IP address", what, hp->host);
        *sslen = sizeof(*s4);
    }
    return 0;
}

/* Binds and listens on hp; the socket joins the event loop later, in listen_start(). */
static int bind_listener(const p2m_hostport_t *hp, const char *what, int *fd_out, char *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (listen_addr(hp, what, &ss, &sslen, err) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1, off = 0;
    if (fd < 0)
        return p2m_err(err, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return p2m_err(err, "registrar.%s: cannot listen on %s:%u: %s", what, hp->host[0] ? hp->host : "*", (unsigned)hp->port,
                       strerror(e));
    }
    *fd_out = fd;
    return 0;
}

static void listen_start(registrar_t *r, int *fd, const p2m_hostport_t *hp, h2o_socket_cb cb, void *data, const char *what)
{
    h2o_socket_t *sock = h2o_evloop_socket_create(r->h2o_ctx.loop, *fd, H2O_SOCKET_FLAG_DONT_READ);
    *fd = -1; /* the socket owns it now */
    sock->data = data;
    h2o_socket_read_start(sock, cb);
    p2m_log(P2M_LOG_INFO, "listening", "what=%s addr=%s port=%u", what, hp->host[0] ? hp->host : "*", (unsigned)hp->port);
}

static h2o_hostconf_t *make_host(h2o_globalconf_t *conf, const char *name, int (*on_req)(h2o_handler_t *, h2o_req_t *),
                                 registrar_t *r)
{
    h2o_hostconf_t *host = h2o_config_register_host(conf, h2o_iovec_init(name, strlen(name)), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h) + sizeof(registrar_t *));
    h->on_req = on_req;
    *(registrar_t **)(h + 1) = r;
    return host;
}

int registrar_http_setup(registrar_t *r)
{
    h2o_config_init(&r->h2o_config);
    r->h2o_config.max_request_entity_size = MAX_BODY;
    r->h2o_config.server_name = h2o_iovec_init(H2O_STRLIT("pipe2me"));
    r->h2o_config.http1.req_timeout = 10000; /* slowloris: a request must arrive whole in 10 s */
    r->h2o_config.http2.idle_timeout = 30000;
    /* The host lists share one globalconf: h2o falls back to a list's first host for any Host, so
     * each listener gets a one-host list and every request reaches the right handler. */
    https_hosts[0] = make_host(&r->h2o_config, "https", on_req_https, r);
    http_hosts[0] = make_host(&r->h2o_config, "http", on_req_http, r);
    proxy_hosts[0] = make_host(&r->h2o_config, "proxy", on_req_proxy, r);
    metrics_hosts[0] = make_host(&r->h2o_config, "metrics", on_req_metrics, r);
    const char *token = r->cfg.registrar.metrics_token;
    if (token[0] != '\0' && EVP_Digest(token, strlen(token), r->metrics_token_sha256, NULL, EVP_sha256(), NULL) != 1)
        return -1;
    return 0;
}

int registrar_listen_check(const p2m_config_t *cfg, char *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (listen_addr(&cfg->registrar.listen, "https", &ss, &sslen, err) != 0)
        return -1;
    if (cfg->registrar.http_enabled && listen_addr(&cfg->registrar.http, "http", &ss, &sslen, err) != 0)
        return -1;
    if (cfg->registrar.proxy_enabled && listen_addr(&cfg->registrar.proxy_listen, "proxy_listen", &ss, &sslen, err) != 0)
        return -1;
    if (cfg->registrar.metrics_enabled && listen_addr(&cfg->registrar.metrics_listen, "metrics_listen", &ss, &sslen, err) != 0)
        return -1;
    return 0;
}

int registrar_bind(registrar_t *r, char *err)
{
    const p2m_registrar_config_t *c = &r->cfg.registrar;
    for (unsigned i = 0; i < REGISTRAR_LISTENERS; i++)
        r->listen_fd[i] = -1;
    if (bind_listener(&c->listen, "https", &r->listen_fd[REGISTRAR_LISTEN_HTTPS], err) != 0 ||
        (c->http_enabled && bind_listener(&c->http, "http", &r->listen_fd[REGISTRAR_LISTEN_HTTP], err) != 0) ||
        (c->metrics_enabled &&
         bind_listener(&c->metrics_listen, "metrics_listen", &r->listen_fd[REGISTRAR_LISTEN_METRICS], err) != 0) ||
        (c->proxy_enabled && bind_listener(&c->proxy_listen, "proxy_listen", &r->listen_fd[REGISTRAR_LISTEN_PROXY], err) != 0)) {
        for (unsigned i = 0; i < REGISTRAR_LISTENERS; i++)
            if (r->listen_fd[i] >= 0)
                close(r->listen_fd[i]);
        return -1;
    }
    return 0;
}

int registrar_listen(registrar_t *r, char *err)
{
    const p2m_registrar_config_t *c = &r->cfg.registrar;
    r->accept_https = (h2o_accept_ctx_t){.ctx = &r->h2o_ctx, .hosts = https_hosts, .ssl_ctx = r->ssl_ctx};
    r->accept_http = (h2o_accept_ctx_t){.ctx = &r->h2o_ctx, .hosts = http_hosts, .ssl_ctx = NULL};
    /* expect_proxy_line stays off: on_proxy_line has read the line by the time h2o sees the socket. */
    r->accept_proxy = (h2o_accept_ctx_t){.ctx = &r->h2o_ctx, .hosts = proxy_hosts, .ssl_ctx = r->ssl_ctx};
    r->accept_metrics = (h2o_accept_ctx_t){.ctx = &r->h2o_ctx, .hosts = metrics_hosts, .ssl_ctx = NULL};
    if (c->proxy_enabled) {
        r->proxy_refusals = p2m_logsum_new(PROXY_REFUSAL_KEYS, PROXY_REFUSAL_KEY_MAX, 0, PROXY_REFUSAL_INTERVAL_MS, err);
        if (r->proxy_refusals == NULL)
            return -1;
    }
    listen_start(r, &r->listen_fd[REGISTRAR_LISTEN_HTTPS], &c->listen, on_accept, &r->accept_https, "https");
    if (c->http_enabled)
        listen_start(r, &r->listen_fd[REGISTRAR_LISTEN_HTTP], &c->http, on_accept, &r->accept_http, "http");
    if (c->metrics_enabled)
        listen_start(r, &r->listen_fd[REGISTRAR_LISTEN_METRICS], &c->metrics_listen, on_accept, &r->accept_metrics,
                     "metrics_listen");
    if (!c->proxy_enabled)
        return 0;
    h2o_timeout_init(r->h2o_ctx.loop, &r->proxy_line_timeout, PROXY_LINE_TIMEOUT_MS);
    h2o_timeout_init(r->h2o_ctx.loop, &r->proxy_flush_timeout, PROXY_REFUSAL_INTERVAL_MS);
    r->proxy_flush_entry = (h2o_timeout_entry_t){.cb = on_proxy_flush};
    h2o_timeout_link(r->h2o_ctx.loop, &r->proxy_flush_timeout, &r->proxy_flush_entry);
    listen_start(r, &r->listen_fd[REGISTRAR_LISTEN_PROXY], &c->proxy_listen, on_accept_proxy, r, "proxy_listen");
    char from[P2M_PROXY_FROM_MAX * (P2M_HOST_MAX + 1) + 1] = "";
    for (unsigned i = 0; i < c->nproxy_from; i++)
        snprintf(from + strlen(from), sizeof(from) - strlen(from), "%s%s", i ? "," : "", c->proxy_from[i]);
    p2m_log(P2M_LOG_INFO, "proxy_listen", "from=%s", from);
    return 0;
}

void registrar_listen_close(registrar_t *r)
{
    if (r->proxy_refusals == NULL)
        return;
    if (h2o_timeout_is_linked(&r->proxy_flush_entry))
        h2o_timeout_unlink(&r->proxy_flush_entry);
    p2m_logsum_flush(r->proxy_refusals, h2o_now(r->h2o_ctx.loop), on_proxy_report, NULL);
    p2m_logsum_free(r->proxy_refusals);
    r->proxy_refusals = NULL;
}
