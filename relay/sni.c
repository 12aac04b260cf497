/* The SNI port (relay.sni_listen; docs/PROTOCOL.md 2.4): TLS consumers routed by the server name
 * of their ClientHello, read without terminating TLS, so that https://LABEL.DOMAIN/ needs neither a
 * redirect nor a port in the URL.
 *
 * An accepted consumer waits (TUNNEL_SNI, edge-triggered, for at most relay.first_byte_timeout)
 * until the bytes it has sent hold a whole ClientHello or are not one; the relay only peeks, so
 * every byte stays in the socket for whoever gets the connection:
 *
 *   LABEL.DOMAIN, served here    joined to an idle pre-connection of LABEL's https service, or
 *                                queued for one, exactly as on a consumer port (match.c)
 *   anything else                passed on, bytes unchanged, to the registrar's PROXY listener
 *                                (relay.sni_registrar) after a PROXY protocol v1 line naming the
 *                                consumer: DOMAIN and no server name (the registrar's own
 *                                requests: /cacert, registrations, /_health), an unknown label
 *                                (the registrar's 404), a service whose pod is gone (its 503), and
 *                                a service served by another relay (the registrar's 307 to the
 *                                service's port there)
 *   not a ClientHello            closed
 *
 * "Served here": this relay holds an idle pre-connection of the service, or Redis says it is the
 * relay the service's idle pre-connections or its alive mark name (one script, p2m:labels,
 * p2m:idle:*, p2m:alive: rredis_sni_lookup()). */
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/label.h"
#include "p2m/proxyline.h"
#include "p2m/sni.h"

#define SNI_BACKLOG 1024
#define SNI_CONNECT_MS 10000         /* the registrar neither accepts nor refuses */
#define SNI_LOOKUP_MAGIC 0x534e494cu /* "SNIL" */

/* A Redis lookup in flight for a consumer: the reply finds the tunnel through it, or NULL when the
 * consumer has gone meanwhile (tunnel_close() clears t). Allocated only while it is in flight, so
 * that tunnels, of which a relay holds tens of thousands, carry a pointer and no more. */
struct sni_lookup {
    uint32_t magic;
    tunnel_t *t;
    char service[P2M_SERVICE_MAX + 1];
};

static int sockaddr_of(const p2m_hostport_t *hp, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (hp->host[0] == '\0' || strchr(hp->host, ':') != NULL) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(hp->port);
        s6->sin6_addr = in6addr_any;
        if (hp->host[0] != '\0' && inet_pton(AF_INET6, hp->host, &s6->sin6_addr) != 1)
            return -1;
        *len = sizeof(*s6);
        return 0;
    }
    s4->sin_family = AF_INET;
    s4->sin_port = htons(hp->port);
    if (inet_pton(AF_INET, hp->host, &s4->sin_addr) != 1)
        return -1;
    *len = sizeof(*s4);
    return 0;
}

static void on_sni_accept(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events);

static void on_sni_pause_end(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    relay_t *r = (relay_t *)((char *)t - offsetof(relay_t, sni_pause));
    if (r->sni_listener.fd >= 0)
        p2m_loop_set_events(loop, &r->sni_listener, EPOLLIN);
}

int sni_init(relay_t *r, char *err)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, zero = 0;
    p2m_loop_timer_init(&r->sni_pause, on_sni_pause_end);
    if (!r->cfg.relay.sni_enabled)
        return 0;
    const p2m_hostport_t *hp = &r->cfg.relay.sni_listen;
    if (sockaddr_of(hp, &ss, &len) != 0)
        return p2m_err(err, "relay.sni_listen: %s is not an IP address", hp->host);
    if (sockaddr_of(&r->cfg.relay.sni_registrar, &r->sni_registrar, &r->sni_registrar_len) != 0)
        return p2m_err(err, "relay.sni_registrar: %s is not an IP address", r->cfg.relay.sni_registrar.host);
    r->sni_label = label_get(r, ""); /* consumers whose service is not known yet */
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return p2m_err(err, "relay.sni_listen: socket: %s", strerror(errno));
    /* --workers: every worker listens on the port and the kernel spreads the consumers. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* inherited by every accepted socket */
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, SNI_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        return p2m_err(err, "relay.sni_listen: cannot listen on %s:%u: %s", hp->host[0] ? hp->host : "*", (unsigned)hp->port,
                       strerror(e));
    }
    if (p2m_loop_add(r->loop, &r->sni_listener, fd, EPOLLIN, on_sni_accept, err) != 0) {
        close(fd);
        return -1;
    }
    p2m_log(P2M_LOG_INFO, "sni_listen", "addr=%s port=%u registrar=%s:%u", hp->host[0] ? hp->host : "*", (unsigned)hp->port,
            r->cfg.relay.sni_registrar.host, (unsigned)r->cfg.relay.sni_registrar.port);
    return 0;
}

void sni_free(relay_t *r)
{
    if (r->loop != NULL) {
        p2m_loop_close(r->loop, &r->sni_listener);
        p2m_loop_timer_stop(r->loop, &r->sni_pause);
    }
    if (r->sni_label != NULL) {
        label_put(r, r->sni_label);
        r->sni_label = NULL;
    }
}

static void on_sni_accept(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    relay_t *r = (relay_t *)((char *)h - offsetof(relay_t, sni_listener));
    (void)events;
    if (r->magic != RELAY_MAGIC)
        abort();
    for (int i = 0; i < RELAY_ACCEPT_BATCH && r->sni_listener.fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(r->sni_listener.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                p2m_log(P2M_LOG_WARN, "accept_paused", "sni=%u error=\"%s\" pause_ms=%d", (unsigned)r->cfg.relay.sni_listen.port,
                        strerror(errno), RELAY_ACCEPT_PAUSE_MS);
                p2m_loop_set_events(loop, &r->sni_listener, 0);
                p2m_loop_timer_start(loop, &r->sni_pause, RELAY_ACCEPT_PAUSE_MS);
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM)
                return;
            continue;
        }
        peer_addr_t peer;
        char pstr[64];
        if (peer_addr_from_sa((struct sockaddr *)&ss, &peer) != 0)
            memset(&peer, 0, sizeof(peer));
        if (limits_acquire(r->limits, &peer) != 0) {
            if (relay_refusal_log_full(r, &peer, "limit", 0, "-"))
                p2m_log(P2M_LOG_WARN, "conn_refused", "sni=%u fd=%d peer=%s reason=limit max=%u",
                        (unsigned)r->cfg.relay.sni_listen.port, fd, peer_addr_str(&peer, pstr), r->cfg.relay.max_conns_per_addr);
            close(fd);
            continue;
        }
        tunnel_t *c = tunnel_new(r, r->sni_label);
        c->state = TUNNEL_SNI;
        c->via_sni = 1;
        c->caddr = peer;
        c->cport =
            ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port) : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        c->limited = 1;
        /* Edge-triggered: the bytes are only peeked at, so a level-triggered interest would fire
         * again at once; each new segment is a new edge. */
        if (tunnel_attach(c, SIDE_CONSUMER, fd, 1) != 0 ||
            p2m_loop_set_events(loop, &c->br.side[SIDE_CONSUMER], EPOLLIN | EPOLLRDHUP | EPOLLET) != 0) {
            if (c->br.fd[SIDE_CONSUMER] < 0)
                close(fd);
            tunnel_close(c, "epoll");
            continue;
        }
        p2m_loop_timer_start(loop, &c->timer, (uint64_t)r->cfg.relay.first_byte_timeout * 1000u);
    }
}

/* --- routing ---------------------------------------------------------------------------------- */

/* The consumer is LABEL's: from now on it is a consumer like one on a consumer port. */
static void route_here(tunnel_t *c, const char *service)
{
    relay_t *r = c->relay;
    label_t *lab = label_get(r, service);
    label_put(r, c->label);
    c->label = lab;
    c->state = TUNNEL_FIRST;
    tunnel_log(P2M_LOG_DEBUG, c, "sni_route", "to=here");
    match_consumer_ready(r, c);
}

/* The PROXY protocol v1 line naming the consumer and the address it reached (PROTOCOL 2.4): an
 * IPv4 consumer on a dual-stack listener is TCP4, as the registrar reads its peer addresses
 * (p2m_proxy_line_format() sees through IPv4-mapped addresses). Returns its length or -1. */
static int proxy_line(const tunnel_t *c, char *out, size_t cap)
{
    struct sockaddr_storage me;
    socklen_t ml = sizeof(me);
    if (getsockname(c->br.fd[SIDE_CONSUMER], (struct sockaddr *)&me, &ml) != 0)
        return -1;
    struct sockaddr_in6 consumer = {.sin6_family = AF_INET6, .sin6_port = htons(c->cport)};
    memcpy(&consumer.sin6_addr, c->caddr.b, sizeof(c->caddr.b)); /* IPv4 as ::ffff:a.b.c.d */
    return p2m_proxy_line_format((const struct sockaddr *)&consumer, (const struct sockaddr *)&me, out, cap);
}

/* Passes the consumer on to the registrar's PROXY listener: connect, then the PROXY line, then the
 * consumer's bytes (the ClientHello first, still unread) both ways as any tunnel. */
static void route_registrar(tunnel_t *c, const char *why)
{
    relay_t *r = c->relay;
    tunnel_log(P2M_LOG_INFO, c, "sni_route", "to=registrar reason=%s", why);
    int fd = socket(r->sni_registrar.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tunnel_close(c, "registrar_socket");
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(fd, (struct sockaddr *)&r->sni_registrar, r->sni_registrar_len);
    if (rc != 0 && errno != EINPROGRESS) {
        tunnel_log(P2M_LOG_WARN, c, "sni_registrar_failed", "error=\"%s\"", strerror(errno));
        close(fd);
        tunnel_close(c, "registrar_down");
        return;
    }
    /* The consumer's bytes wait in its socket until the line has gone: no interest meanwhile. */
    p2m_loop_set_events(r->loop, &c->br.side[SIDE_CONSUMER], EPOLLRDHUP);
    c->state = TUNNEL_UPSTREAM;
    if (tunnel_attach_upstream(c, fd) != 0) {
        close(fd);
        tunnel_close(c, "epoll");
        return;
    }
    p2m_loop_timer_start(r->loop, &c->timer, SNI_CONNECT_MS);
}

void sni_on_upstream(tunnel_t *c, int side, uint32_t events)
{
    if (side == SIDE_CONSUMER) { /* it left before the registrar answered */
        tunnel_close(c, (events & EPOLLERR) ? "consumer_error" : "consumer_closed");
        return;
    }
    int e = 0;
    socklen_t len = sizeof(e);
    if ((events & (EPOLLERR | EPOLLHUP)) && (getsockopt(c->br.fd[SIDE_POD], SOL_SOCKET, SO_ERROR, &e, &len) != 0 || e == 0))
        e = ECONNREFUSED;
    char line[128];
    int n = e == 0 ? proxy_line(c, line, sizeof(line)) : -1;
    if (e == 0 && (n <= 0 || (size_t)n >= sizeof(line) || send(c->br.fd[SIDE_POD], line, (size_t)n, MSG_NOSIGNAL) != n))
        e = errno != 0 ? errno : EIO;
    if (e != 0) {
        tunnel_log(P2M_LOG_WARN, c, "sni_registrar_failed", "error=\"%s\"", strerror(e));
        tunnel_close(c, "registrar_down");
        return;
    }
    tunnel_pass_on(c);
}

/* The bytes the consumer has sent so far hold a verdict. */
static void route(tunnel_t *c, p2m_sni_status_t st, const char *name, const char *why)
{
    relay_t *r = c->relay;
    const char *domain = r->cfg.domain;
    size_t nl = strlen(name), dl = strlen(domain);
    p2m_loop_timer_stop(r->loop, &c->timer);
    if (st == P2M_SNI_INVALID) {
        char pstr[64];
        if (relay_refusal_log_full(r, &c->caddr, "not_tls", 0, "-"))
            p2m_log(P2M_LOG_WARN, "conn_refused", "sni=%u fd=%d peer=%s reason=not_tls error=\"%s\"",
                    (unsigned)r->cfg.relay.sni_listen.port, c->br.fd[SIDE_CONSUMER], peer_addr_str(&c->caddr, pstr), why);
        tunnel_close(c, "not_tls");
        return;
    }
    if (st == P2M_SNI_NONE) {
        route_registrar(c, "no_server_name");
        return;
    }
    /* LABEL.DOMAIN: a consumer of LABEL's https service, if LABEL is one label (the domain's own
     * name and deeper names are the registrar's). */
    char service[P2M_SERVICE_MAX + 1];
    if (nl > dl + 1 && name[nl - dl - 1] == '.' && strcmp(name + nl - dl, domain) == 0 &&
        p2m_label_normalize(name, nl - dl - 1, service, NULL) == 0) {
        /* Idle pre-connections here: no need to ask Redis. */
        label_t *lab = label_find(r, service);
        if (lab != NULL && lab->nidle > 0) {
            route_here(c, service);
            return;
        }
        struct sni_lookup *lk = relay_xcalloc(1, sizeof(*lk));
        lk->magic = SNI_LOOKUP_MAGIC;
        lk->t = c;
        snprintf(lk->service, sizeof(lk->service), "%s", service);
        c->sni_lookup = lk;
        if (rredis_sni_lookup(r->redis, service, lk) != 0) {
            /* Redis away: the registrar knows no more, but answers the consumer (503). */
            c->sni_lookup = NULL;
            free(lk);
            route_registrar(c, "redis_down");
        }
        return;
    }
    route_registrar(c, strcmp(name, domain) == 0 ? "registrar_name" : "other_name");
}

void sni_on_lookup(void *cookie, const char *verdict)
{
    struct sni_lookup *lk = cookie;
    if (lk == NULL || lk->magic != SNI_LOOKUP_MAGIC)
        abort();
    tunnel_t *c = lk->t;
    char service[P2M_SERVICE_MAX + 1];
    snprintf(service, sizeof(service), "%s", lk->service);
    lk->magic = 0;
    free(lk);
    if (c == NULL) /* the consumer left meanwhile */
        return;
    c->sni_lookup = NULL;
    if (verdict != NULL && strcmp(verdict, "here") == 0)
        route_here(c, service);
    else
        route_registrar(c, verdict != NULL ? verdict : "redis_down");
}

void sni_forget(tunnel_t *t)
{
    if (t->sni_lookup != NULL) {
        t->sni_lookup->t = NULL;
        t->sni_lookup = NULL;
    }
}

void sni_on_consumer(tunnel_t *c, uint32_t events)
{
    uint8_t buf[P2M_SNI_PEEK_MAX];
    char name[P2M_SNI_NAME_MAX + 1], why[P2M_ERR_LEN];
    if (c->sni_lookup != NULL) /* waiting for Redis: more bytes change nothing */
        return;
    ssize_t n = recv(c->br.fd[SIDE_CONSUMER], buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) && !(events & (EPOLLERR | EPOLLHUP)))
        return;
    if (n <= 0) {
        tunnel_close(c, n == 0 ? "consumer_closed" : "consumer_error");
        return;
    }
    p2m_sni_status_t st = p2m_sni_parse(buf, (size_t)n, name, why);
    if (st == P2M_SNI_NEED_MORE) {
        if (events & (EPOLLRDHUP | EPOLLHUP)) /* no more will come */
            tunnel_close(c, "consumer_closed");
        return;
    }
    route(c, st, name, why);
}
