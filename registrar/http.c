/* Request routing, the op lifecycle, and the HTTPS and HTTP listeners. */
#include "registrar.h"
#include "p2m/err.h"
#include "p2m/host.h"
#include "p2m/log.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PATH_LEN 4096
#define MAX_BODY 65536

/* Lives in the request's pool: when h2o disposes of the request (the response went out, or the
 * client left first), it detaches the op so that a late Redis reply never touches a freed req. */
struct op_guard {
    op_t *op;
};

static void on_guard_dispose(void *p)
{
    struct op_guard *g = p;
    if (g->op != NULL) {
        g->op->req = NULL;
        g->op->guard = NULL;
    }
}

static void peer_addr(h2o_req_t *req, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    snprintf(out, cap, "unknown");
    if (len == 0)
        return;
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
    } else if (ss.ss_family == AF_INET6) {
        struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        /* An IPv4 client on a dual-stack socket is the same client as on an IPv4 socket. */
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)cap);
    }
}

op_t *op_new(registrar_t *r, h2o_req_t *req, op_kind_t kind)
{
    op_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=op_new");
        abort();
    }
    op->r = r;
    op->req = req;
    op->kind = kind;
    op->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*op->guard), on_guard_dispose);
    op->guard->op = op;
    peer_addr(req, op->addr, sizeof(op->addr));
    return op;
}

void op_free(op_t *op)
{
    if (op == NULL)
        return;
    if (op->guard != NULL)
        op->guard->op = NULL;
    if (h2o_timeout_is_linked(&op->wait_entry))
        h2o_timeout_unlink(&op->wait_entry);
    X509_REQ_free(op->csr);
    /* The op held the Authorization value and, after a TOTP login, the new session credential. */
    OPENSSL_cleanse(op, sizeof(*op));
    free(op);
}

void op_header(op_t *op, const char *name, const char *value)
{
    if (op->req == NULL)
        return;
    h2o_req_t *req = op->req;
    h2o_iovec_t v = h2o_strdup(&req->pool, value, SIZE_MAX);
    /* HTTP/2 wants lower-case field names; HTTP/1 responses keep the usual spelling. */
    h2o_iovec_t lower = h2o_strdup(&req->pool, name, SIZE_MAX);
    h2o_strtolower(lower.base, lower.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, lower.base, lower.len, 1, name, v.base, v.len);
}

void send_body(h2o_req_t *req, const char *body, size_t len)
{
    /* h2o_send_inline leaves the length unset, and HTTP/1.1 then ends the body by closing the
     * connection: every redirect would cost the client a new TLS handshake. */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

static void send_text(h2o_req_t *req, int status, const char *reason, const char *body)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s\n", body);
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    send_body(req, line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void op_respond(op_t *op, int status, const char *reason, const char *body)
{
    if (op->req != NULL)
        send_text(op->req, status, reason, body);
    op_free(op);
}

/* Writes req's authority (Host) into a bounded check; h2o has already refused requests without one. */
static int classify_host(registrar_t *r, h2o_req_t *req, char *label)
{
    uint16_t port;
    char err[P2M_ERR_LEN];
    /* RFC 9112 3.2: a request with more than one Host is answered 400; we answer it like any
     * other host we do not serve. */
    ssize_t first = h2o_find_header(&req->headers, H2O_TOKEN_HOST, -1);
    if (first >= 0 && h2o_find_header(&req->headers, H2O_TOKEN_HOST, first) >= 0)
        return -1;
    return p2m_host_parse(req->authority.base, req->authority.len, r->cfg.domain, label, &port, err);
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

static int on_req_https(h2o_handler_t *self, h2o_req_t *req)
{
    registrar_t *r = *(registrar_t **)(self + 1);
    char label[P2M_LABEL_MAX + 1];
    r->requests++;

    int kind = classify_host(r, req, label);
    if (kind < 0) {
        send_text(req, 404, "Not Found", "unknown host");
        return 0;
    }
    if (!path_ok(req->path)) {
        send_text(req, 400, "Bad Request", "invalid request target");
        return 0;
    }
    if (kind == P2M_HOST_LABEL) {
        redirect_handle(r, req, label, 0);
        return 0;
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
            send_text(req, 405, "Method Not Allowed", labelled[i].usage);
            return 0;
        }
        /* The raw path, not the normalized one: "/register/a/../b" is not a label. */
        if (req->query_at != SIZE_MAX || req->path.len != path.len) {
            send_text(req, 404, "Not Found", "no such label");
            return 0;
        }
        labelled[i].handle(r, req, req->path.base + plen, req->path.len - plen);
        return 0;
    }
    if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/_health"))) {
        health_handle(r, req);
    } else if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/cacert"))) {
        cacert_handle(r, req);
    } else if (is_get && h2o_memis(path.base, path.len, H2O_STRLIT("/metrics"))) {
        metrics_handle(r, req);
    } else {
        send_text(req, 404, "Not Found", "not found");
    }
    return 0;
}

/* Plain HTTP: a label's consumers go by the protocol rule (PROTOCOL 2.1), everything else is sent
 * to the same URL on HTTPS. */
static int on_req_http(h2o_handler_t *self, h2o_req_t *req)
{
    registrar_t *r = *(registrar_t **)(self + 1);
    char label[P2M_LABEL_MAX + 1];
    int kind = classify_host(r, req, label);
    if (kind < 0) {
        send_text(req, 404, "Not Found", "unknown host");
        return 0;
    }
    if (!path_ok(req->path)) {
        send_text(req, 400, "Bad Request", "invalid request target");
        return 0;
    }
    if (kind == P2M_HOST_LABEL) {
        redirect_handle(r, req, label, 1);
        return 0;
    }
    char port[8] = "";
    if (r->https_port != 443)
        snprintf(port, sizeof(port), ":%u", (unsigned)r->https_port);
    h2o_iovec_t loc =
        h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("https://")), h2o_iovec_init(r->cfg.domain, strlen(r->cfg.domain)),
                   h2o_iovec_init(port, strlen(port)), req->path);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc.base, loc.len);
    send_text(req, 308, "Permanent Redirect", "use https");
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

static int listen_on(registrar_t *r, const p2m_hostport_t *hp, h2o_accept_ctx_t *actx, const char *what, char *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    if (hp->host[0] == '\0' || strchr(hp->host, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(hp->port);
        s6->sin6_addr = in6addr_any;
        if (hp->host[0] != '\0' && inet_pton(AF_INET6, hp->host, &s6->sin6_addr) != 1)
            return p2m_err(err, "registrar.%s: %s is not an IP address", what, hp->host);
        sslen = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(hp->port);
        if (inet_pton(AF_INET, hp->host, &s4->sin_addr) != 1)
            return p2m_err(err, "registrar.%s: %s is not an IP address", what, hp->host);
        sslen = sizeof(*s4);
    }
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
    h2o_socket_t *sock = h2o_evloop_socket_create(r->h2o_ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    sock->data = actx;
    h2o_socket_read_start(sock, on_accept);
    p2m_log(P2M_LOG_INFO, "listening", "what=%s addr=%s port=%u", what, hp->host[0] ? hp->host : "*", (unsigned)hp->port);
    return 0;
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

static h2o_hostconf_t *https_hosts[2], *http_hosts[2];

int registrar_http_setup(registrar_t *r)
{
    h2o_config_init(&r->h2o_config);
    r->h2o_config.max_request_entity_size = MAX_BODY;
    r->h2o_config.server_name = h2o_iovec_init(H2O_STRLIT("pipe2me"));
    r->h2o_config.http1.req_timeout = 10000; /* slowloris: a request must arrive whole in 10 s */
    r->h2o_config.http2.idle_timeout = 30000;
    /* Two host lists share one globalconf: h2o falls back to a list's first host for any Host, so
     * each listener gets a one-host list and every request reaches the right handler. */
    https_hosts[0] = make_host(&r->h2o_config, "https", on_req_https, r);
    http_hosts[0] = make_host(&r->h2o_config, "http", on_req_http, r);
    return 0;
}

int registrar_listen(registrar_t *r, char *err)
{
    r->accept_https = (h2o_accept_ctx_t){.ctx = &r->h2o_ctx, .hosts = https_hosts, .ssl_ctx = r->ssl_ctx};
    r->accept_http = (h2o_accept_ctx_t){.ctx = &r->h2o_ctx, .hosts = http_hosts, .ssl_ctx = NULL};
    if (listen_on(r, &r->cfg.registrar.listen, &r->accept_https, "https", err) != 0)
        return -1;
    if (r->cfg.registrar.http_enabled && listen_on(r, &r->cfg.registrar.http, &r->accept_http, "http", err) != 0)
        return -1;
    return 0;
}
