/* Listeners follow leases (docs/PROTOCOL.md 3.3, 3.4).
 *
 * A lease object exists while the relay acts on a lease key: listening for its pod or consumer,
 * or holding the idle pre-connection that came on it. It lives in a table indexed by port and
 * carries a generation, so that Redis replies about a lease replaced meanwhile are recognised.
 * Lease objects are freed at the end of the loop turn (their listener may be in the current
 * batch). */
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p2m/err.h"

#define PRE_BACKLOG 64 /* up to P2M_LEASE_CONNS_MAX wanted at once; more are refused one by one */
#define CONSUMER_BACKLOG 1024

static void lease_reap(p2m_loop_reap_t *rp);

int ports_in_range(const relay_t *r, uint16_t port)
{
    return port >= r->cfg.relay.ports.lo && port <= r->cfg.relay.ports.hi;
}

lease_t *ports_find(relay_t *r, uint16_t port)
{
    return ports_in_range(r, port) ? r->leases[port - r->cfg.relay.ports.lo] : NULL;
}

/* relay.listen: an address literal, a name resolved once here, or "" for every address (IPv6
 * dual-stack when the host has IPv6, else IPv4). */
static int parse_listen(relay_t *r, char *err)
{
    const char *h = r->cfg.relay.listen;
    memset(&r->listen_sa, 0, sizeof(r->listen_sa));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&r->listen_sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&r->listen_sa;
    if (h[0] == '\0') {
        int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            close(probe);
            s6->sin6_family = AF_INET6;
            s6->sin6_addr = in6addr_any;
            r->listen_len = sizeof(*s6);
        } else {
            s4->sin_family = AF_INET;
            s4->sin_addr.s_addr = htonl(INADDR_ANY);
            r->listen_len = sizeof(*s4);
        }
        return 0;
    }
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        r->listen_len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        r->listen_len = sizeof(*s6);
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    int rc = getaddrinfo(h, NULL, &hints, &res);
    if (rc != 0 || res == NULL)
        return p2m_err(err, "relay.listen: cannot resolve %s: %s", h, rc != 0 ? gai_strerror(rc) : "no address");
    memcpy(&r->listen_sa, res->ai_addr, res->ai_addrlen);
    r->listen_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int ports_init(relay_t *r, char *err)
{
    if (parse_listen(r, err) != 0)
        return -1;
    r->nports = (size_t)r->cfg.relay.ports.hi - r->cfg.relay.ports.lo + 1;
    r->leases = relay_xcalloc(r->nports, sizeof(*r->leases));
    return 0;
}

static const char *kind_name(const lease_t *l)
{
    return l->kind == LEASE_PRE ? "pre" : "consumer";
}

/* Takes the lease out of the table and frees it at the end of the turn. Its idle connection, if
 * any, must have been dealt with. */
static void lease_destroy(relay_t *r, lease_t *l)
{
    if (l->held > 0) /* not expected: every idle one releases it first; never leave them pointing here */
        for (tunnel_t *t = l->label->idle_head; t != NULL; t = t->next)
            if (t->pre == l)
                t->pre = NULL;
    l->held = 0;
    p2m_loop_close(r->loop, &l->listener);
    p2m_loop_timer_stop(r->loop, &l->pause);
    p2m_loop_timer_stop(r->loop, &l->deadline);
    if (r->leases[l->port - r->cfg.relay.ports.lo] == l) {
        r->leases[l->port - r->cfg.relay.ports.lo] = NULL;
        r->nleases--;
    }
    p2m_loop_defer(r->loop, &l->reap, lease_reap);
}

static void lease_reap(p2m_loop_reap_t *rp)
{
    lease_t *l = (lease_t *)((char *)rp - offsetof(lease_t, reap));
    relay_t *r = l->relay;
    label_put(r, l->label);
    l->magic = 0;
    free(l);
}

/* Ends what the relay holds for l: listener, idle pre-connection, the object. */
static void lease_close(relay_t *r, lease_t *l, const char *why)
{
    p2m_log(P2M_LOG_INFO, "lease_closed", "lease=%u kind=%s label=%s pod=%s reason=%s", (unsigned)l->port, kind_name(l),
            l->label->name, l->pod, why);
    p2m_loop_close(r->loop, &l->listener);
    p2m_loop_timer_stop(r->loop, &l->deadline);
    if (l->kind == LEASE_PRE && l->held > 0) {
        /* Each close releases the lease through ports_pre_release(); the last one destroys it. */
        for (tunnel_t *t = l->label->idle_head, *next; t != NULL && l->held > 0; t = next) {
            next = t->next;
            if (t->pre == l)
                tunnel_close(t, why);
        }
        if (l->held > 0)
            lease_destroy(r, l);
    } else {
        lease_destroy(r, l);
    }
}

void ports_close_all(relay_t *r)
{
    for (size_t i = 0; r->leases != NULL && i < r->nports; i++)
        if (r->leases[i] != NULL)
            lease_close(r, r->leases[i], "shutdown");
}

void ports_free(relay_t *r)
{
    ports_close_all(r);
    free(r->leases);
    r->leases = NULL;
}

void ports_pre_release(relay_t *r, lease_t *l, int delta)
{
    if (delta < 0 && l->held > 0)
        l->held--;
    /* The lease lives while its listener may still accept or a pre-connection on it is idle. */
    int last = l->held == 0 && l->listener.fd < 0;
    if (delta != 0 || last) /* else Redis has nothing to learn: a connection joined as it came */
        rredis_pre_release(r->redis, l, delta, last);
    if (last)
        lease_destroy(r, l);
}

/* preconnect_timeout after the listener opened, a multi-connection pre lease stops accepting:
 * the pod had its time to open them all. */
static void on_deadline(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    lease_t *l = (lease_t *)((char *)t - offsetof(lease_t, deadline));
    relay_t *r = l->relay;
    (void)loop;
    if (l->magic != LEASE_MAGIC || l->listener.fd < 0)
        return;
    p2m_log(P2M_LOG_INFO, "lease_listen_done", "lease=%u kind=pre label=%s reason=deadline unused=%u held=%u", (unsigned)l->port,
            l->label->name, l->conns_left, l->held);
    p2m_loop_close(r->loop, &l->listener);
    if (l->held == 0)
        ports_pre_release(r, l, 0);
}

void ports_consumer_closed(relay_t *r, uint16_t qport, uint32_t qgen)
{
    lease_t *l = ports_find(r, qport);
    if (l != NULL && l->gen == qgen && l->nconns > 0)
        l->nconns--;
}

/* --- accepting -------------------------------------------------------------------------------- */

/* Options of every connection the listener fd accepts: Linux copies them from the listener to each
 * accepted socket, so they cost one setsockopt per lease instead of one per connection. */
static void set_sockopts(int fd, int keepalive)
{
    int one = 1;
    /* The relay forwards what arrives when it arrives; Nagle would only add latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (keepalive) {
        /* An idle pre-connection may sit for hours: notice a pod that vanished without a FIN. */
        int idle = 60, intvl = 10, cnt = 6;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    }
}

static void on_pause_end(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    lease_t *l = (lease_t *)((char *)t - offsetof(lease_t, pause));
    if (l->listener.fd >= 0)
        p2m_loop_set_events(loop, &l->listener, EPOLLIN);
}

static void on_accept(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    lease_t *l = (lease_t *)((char *)h - offsetof(lease_t, listener));
    relay_t *r = l->relay;
    (void)events;
    if (l->magic != LEASE_MAGIC)
        abort();

    for (int i = 0; i < RELAY_ACCEPT_BATCH && l->listener.fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->listener.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Level-triggered: the pending connection would wake us at once. Rest a while. */
                p2m_log(P2M_LOG_WARN, "accept_paused", "lease=%u error=\"%s\" pause_ms=%d", (unsigned)l->port, strerror(errno),
                        RELAY_ACCEPT_PAUSE_MS);
                p2m_loop_set_events(loop, &l->listener, 0);
                p2m_loop_timer_start(loop, &l->pause, RELAY_ACCEPT_PAUSE_MS);
                return;
            }
            continue; /* ECONNABORTED and friends: that connection is gone */
        }
        peer_addr_t peer;
        char pstr[64];
        if (peer_addr_from_sa((struct sockaddr *)&ss, &peer) != 0)
            memset(&peer, 0, sizeof(peer));
        if (!l->any_addr && memcmp(&peer, &l->addr, sizeof(peer)) != 0) {
            /* A scan of the range lands here once per port and pass: summed per peer. */
            if (relay_refusal_log_full(r, &peer, "address", l->port, l->label->name))
                p2m_log(P2M_LOG_WARN, "conn_refused", "lease=%u kind=%s label=%s fd=%d peer=%s want=%s reason=address",
                        (unsigned)l->port, kind_name(l), l->label->name, fd, peer_addr_str(&peer, pstr), l->addr_str);
            close(fd);
            continue;
        }
        if (l->kind == LEASE_PRE) {
            /* conns_left more connections, then the port stops listening. */
            if (l->conns_left > 0)
                l->conns_left--;
            if (l->conns_left == 0) {
                p2m_loop_close(loop, &l->listener);
                p2m_loop_timer_stop(loop, &l->deadline);
            }
            match_preconn(r, l, fd);
            /* It may have released l; a released lease's object lives to the end of the turn,
             * and its listener is closed. */
            continue;
        }
        if (limits_acquire(r->limits, &peer) != 0) {
            if (relay_refusal_log_full(r, &peer, "limit", l->port, l->label->name))
                p2m_log(P2M_LOG_WARN, "conn_refused", "lease=%u kind=consumer label=%s fd=%d peer=%s reason=limit max=%u",
                        (unsigned)l->port, l->label->name, fd, peer_addr_str(&peer, pstr), r->cfg.relay.max_conns_per_addr);
            close(fd);
            continue;
        }
        l->nconns++;
        match_consumer(r, l, fd, &peer);
    }
}

/* Opens the listener for l. Returns 0, or -1 with the reason in why (the errno text). */
static int lease_listen(relay_t *r, lease_t *l, char *why, size_t cap)
{
    struct sockaddr_storage sa = r->listen_sa;
    int fd = -1, one = 1, zero = 0, rc = -1, why_set = 0;
    char err[P2M_ERR_LEN];
    if (sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&sa)->sin_port = htons(l->port);
    else
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons(l->port);
    if ((fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        goto Exit;
    /* Leased ports come and go: TIME_WAIT from an earlier lease must not block the next one. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        goto Exit;
    if (sa.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&sa)->sin6_addr))
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, (struct sockaddr *)&sa, r->listen_len) != 0)
        goto Exit;
    set_sockopts(fd, l->kind == LEASE_PRE);
    if (listen(fd, l->kind == LEASE_PRE ? PRE_BACKLOG : CONSUMER_BACKLOG) != 0)
        goto Exit;
    if (p2m_loop_add(r->loop, &l->listener, fd, EPOLLIN, on_accept, err) != 0) {
        snprintf(why, cap, "%s", err);
        why_set = 1;
        goto Exit;
    }
    rc = 0;
Exit:
    if (rc != 0) {
        if (!why_set) /* a system call failed: before close() can change errno */
            snprintf(why, cap, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    return rc;
}

/* --- following leases ------------------------------------------------------------------------- */

void ports_on_announce(relay_t *r, uint16_t port, int how)
{
    int announced = how == LOAD_ANNOUNCED;
    if (r->stopping)
        return;
    if (!ports_in_range(r, port)) {
        p2m_log(P2M_LOG_WARN, "lease_out_of_range", "lease=%u ports=%u-%u", (unsigned)port, (unsigned)r->cfg.relay.ports.lo,
                (unsigned)r->cfg.relay.ports.hi);
        if (announced)
            rredis_lease_fail(r->redis, port, "port outside the relay's range");
        return;
    }
    rredis_lease_load(r->redis, port, how);
}

static int created_valid(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 20 && strspn(s, "0123456789") == n;
}

/* Checks a lease read from Redis. Returns 0 and fills kind, label (the service key, P2M_SERVICE_MAX
 * + 1 bytes) and addr, or -1 with why. */
static int lease_check(const lease_info_t *info, lease_kind_t *kind, char *label, peer_addr_t *addr, char *why)
{
    if (strcmp(info->kind, "pre") == 0)
        *kind = LEASE_PRE;
    else if (strcmp(info->kind, "consumer") == 0)
        *kind = LEASE_CONSUMER;
    else
        return p2m_err(why, "kind");
    const char *service = info->service[0] != '\0' ? info->service : info->label;
    if (p2m_service_normalize(service, strlen(service), label, NULL) != 0)
        return p2m_err(why, "service");
    if (p2m_id_valid(info->pod, strlen(info->pod), NULL) != 0)
        return p2m_err(why, "pod");
    /* "*": a service's consumer port, open to every address (PROTOCOL 3.6); pre leases name one. */
    if (strcmp(info->addr, "*") == 0 && *kind == LEASE_CONSUMER)
        memset(addr, 0, sizeof(*addr));
    else if (strlen(info->addr) >= PEER_ADDR_STRLEN || peer_addr_parse(info->addr, addr) != 0)
        return p2m_err(why, "addr");
    if (!created_valid(info->created))
        return p2m_err(why, "created");
    if (info->conns[0] != '\0') {
        size_t n = strlen(info->conns);
        if (n > 2 || strspn(info->conns, "0123456789") != n || atoi(info->conns) < 1 || atoi(info->conns) > P2M_LEASE_CONNS_MAX ||
            *kind != LEASE_PRE)
            return p2m_err(why, "conns");
    }
    return 0;
}

static int same_lease(const lease_t *l, lease_kind_t kind, const char *label, const lease_info_t *info)
{
    return l->kind == kind && strcmp(l->label->name, label) == 0 && strcmp(l->pod, info->pod) == 0 &&
           strcmp(l->addr_str, info->addr) == 0 && strcmp(l->created, info->created) == 0;
}

void ports_on_lease(relay_t *r, uint16_t port, const lease_info_t *info, int how)
{
    int announced = how == LOAD_ANNOUNCED;
    if (r->stopping || !ports_in_range(r, port))
        return;
    lease_t *cur = ports_find(r, port);
    if (!info->present) {
        if (cur != NULL)
            lease_close(r, cur, "lease_gone");
        if (announced) {
            p2m_log(P2M_LOG_WARN, "lease_missing", "lease=%u", (unsigned)port);
            rredis_lease_fail(r->redis, port, "no lease");
        }
        return;
    }
    if (strcmp(info->relay, r->cfg.relay.name) != 0) {
        if (cur != NULL)
            lease_close(r, cur, "lease_replaced");
        if (announced)
            p2m_log(P2M_LOG_WARN, "lease_foreign", "lease=%u relay=\"%.63s\"", (unsigned)port, info->relay);
        return;
    }

    lease_kind_t kind = LEASE_PRE;
    char label[P2M_SERVICE_MAX + 1], why[P2M_ERR_LEN];
    peer_addr_t addr;
    if (lease_check(info, &kind, label, &addr, why) != 0) {
        p2m_log(P2M_LOG_WARN, "lease_invalid", "lease=%u field=%s", (unsigned)port, why);
        if (cur != NULL)
            lease_close(r, cur, "lease_replaced");
        if (announced || strcmp(info->state, "bound") != 0)
            rredis_lease_fail(r->redis, port, "invalid lease");
        return;
    }

    if (cur == NULL && kind == LEASE_PRE && strcmp(info->state, "connected") == 0) {
        /* Its pod connected to a relay of this name that no longer holds the connection: this
         * process started after the one that held it died, or it ended while Redis was away.
         * Listening again would keep the port for a pod that has long since re-registered. */
        p2m_log(P2M_LOG_INFO, "lease_stale", "lease=%u kind=%s label=%s pod=%s state=connected", (unsigned)port, info->kind, label,
                info->pod);
        rredis_lease_drop(r->redis, port, info);
        return;
    }
    if (cur == NULL && how == LOAD_RESCAN && strcmp(info->state, "bound") == 0) {
        /* Bound by this process, which no longer holds it: it ended while Redis was away (a
         * pre-connection joined or closed, a listener closed) and could not be deleted then. */
        p2m_log(P2M_LOG_INFO, "lease_stale", "lease=%u kind=%s label=%s pod=%s", (unsigned)port, info->kind, label, info->pod);
        rredis_lease_drop(r->redis, port, info);
        return;
    }
    if (cur != NULL) {
        if (same_lease(cur, kind, label, info)) {
            /* Announced again, or found pending by a SCAN after a reconnect: confirm again. */
            if (cur->bound == 0 || announced || (strcmp(info->state, "bound") != 0 && strcmp(info->state, "connected") != 0))
                rredis_lease_bound(r->redis, cur);
            return;
        }
        lease_close(r, cur, "lease_replaced");
    }

    lease_t *l = relay_xcalloc(1, sizeof(*l));
    l->magic = LEASE_MAGIC;
    l->port = port;
    l->kind = (uint8_t)kind;
    l->gen = ++r->lease_gen;
    l->relay = r;
    l->label = label_get(r, label);
    l->addr = addr;
    l->any_addr = kind == LEASE_CONSUMER && strcmp(info->addr, "*") == 0;
    snprintf(l->created, sizeof(l->created), "%s", info->created);
    snprintf(l->pod, sizeof(l->pod), "%s", info->pod);
    memcpy(l->addr_str, info->addr, strlen(info->addr) + 1); /* lease_check() bounded it */
    p2m_loop_handler_init(&l->listener);
    p2m_loop_timer_init(&l->pause, on_pause_end);
    p2m_loop_timer_init(&l->deadline, on_deadline);
    l->conns_left = kind == LEASE_PRE ? (info->conns[0] != '\0' ? (unsigned)atoi(info->conns) : 1u) : 0;

    char reason[P2M_ERR_LEN];
    if (lease_listen(r, l, reason, sizeof(reason)) != 0) {
        p2m_log(P2M_LOG_WARN, "lease_bind_failed", "lease=%u kind=%s label=%s error=\"%s\"", (unsigned)port, kind_name(l), label,
                reason);
        rredis_lease_busy(r->redis, port, info, reason);
        label_put(r, l->label);
        free(l);
        return;
    }
    r->leases[port - r->cfg.relay.ports.lo] = l;
    r->nleases++;
    if (kind == LEASE_PRE && l->conns_left > 1)
        p2m_loop_timer_start(r->loop, &l->deadline, (uint64_t)r->cfg.registrar.preconnect_timeout * 1000u);
    p2m_log(P2M_LOG_INFO, "lease_listen", "lease=%u kind=%s label=%s pod=%s addr=%s fd=%d conns=%u", (unsigned)port, kind_name(l),
            label, l->pod, l->addr_str, l->listener.fd, l->kind == LEASE_PRE ? l->conns_left : 0u);
    rredis_lease_bound(r->redis, l);
}

void ports_on_bound(relay_t *r, uint16_t port, uint32_t gen, int ok)
{
    lease_t *l = ports_find(r, port);
    if (l == NULL || l->gen != gen)
        return;
    if (!ok) {
        lease_close(r, l, "lease_gone");
        return;
    }
    if (!l->bound)
        p2m_log(P2M_LOG_INFO, "lease_bound", "lease=%u kind=%s label=%s", (unsigned)port, kind_name(l), l->label->name);
    l->bound = 1;
}

void ports_on_gone(relay_t *r, uint16_t port, uint32_t gen, const char *why)
{
    lease_t *l = ports_find(r, port);
    if (l != NULL && l->gen == gen)
        lease_close(r, l, why);
}

void ports_on_unlease(relay_t *r, uint16_t port)
{
    lease_t *l = ports_find(r, port);
    if (l != NULL)
        lease_close(r, l, "unlease");
}
