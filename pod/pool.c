/* The pool: N idle pre-connections to the relay (docs/PROTOCOL.md 3.4 and 3.5).
 *
 * Each registration gives one relay port; the pod connects to it (non-blocking, within the
 * preconnect window) and the connection is idle. The relay joins a consumer to it: the first bytes
 * (or the consumer's end of stream) make it readable, and it is handed to forward.c with those
 * bytes still in the kernel, and a registration is started at once to refill the pool.
 *
 * An end of stream without a byte is ambiguous: a joined consumer that sent nothing, or the relay
 * closing an idle pre-connection (lease expired, relay restarted). PROTOCOL 3.5 calls it a consumer,
 * so it is forwarded (the local service sees a connection closed at once), except within
 * POD_QUICK_CLOSE_MS of the connect: that is the relay refusing us (wrong address, limits), and
 * forwarding it would hit the local service in a loop; it counts as a relay failure instead. A
 * reset or error is always the relay's doing. Either way the pool is refilled.
 *
 * Backoff: when the relay refuses or drops connections, or the local service is down, refilling
 * is held for an exponential backoff with jitter (POD_BACKOFF_MIN_MS doubling to
 * POD_BACKOFF_MAX_MS, +-25%: backoff.c), as the registrar's in register.c. Each component's state
 * change is logged once.
 *
 * The relay's address comes back as ADDRESS:PORT; addresses and *.localhost are used as they are,
 * names are resolved with getaddrinfo_a() (glibc's resolver threads; completion arrives through an
 * eventfd) and cached for POD_RESOLVE_TTL_MS, so that the loop never waits for DNS. A name is
 * resolved in the family the registration went out in: the relay accepts the pre-connection only
 * from the address the registrar saw. One lookup runs at a time, for the whole process.
 *
 * Behind an HTTP proxy (--proxy, or https_proxy less no_proxy: pod_args_use_proxy()) a
 * pre-connection connects to the proxy instead (its name resolved as the relay's would be), sends
 * "CONNECT RELAY:P" (proxy.c builds it, with the password: wiped after each send) and counts as
 * connecting until the proxy's 2xx, read with MSG_PEEK so that only the answer's header is taken
 * from the socket and a consumer's first bytes after it stay for on_idle(). The relay then sees the
 * proxy's address, as the registrar did for the registration that went through the same proxy. A
 * refusal is logged (proxy_refused) and backs off as any relay failure. */
#include "pod.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "p2m/err.h"

#define POD_RESOLVE_TTL_MS 60000
#define KEEPALIVE_IDLE_S 60 /* idle pre-connections cross NATs: keep their mappings */
/* ... turned on once a pre-connection has been idle this long: most are used within milliseconds,
 * and four setsockopt calls apiece would be a sixth of the pod's system calls per consumer. A NAT
 * keeps an idle TCP mapping for minutes at least (RFC 5382: 2 h 4 min), so the first probe, some
 * 60 + 10 s into the idleness, comes long before one forgets it. */
#define POD_KEEPALIVE_AFTER_MS 10000
#define KEEPALIVE_INTVL_S 10
#define KEEPALIVE_CNT 3

/* PRE_PROXY: connected to the proxy, CONNECT sent (or being sent), its answer awaited. */
typedef enum { PRE_RESOLVING = 1, PRE_CONNECTING, PRE_PROXY, PRE_IDLE, PRE_CLOSED } pre_state_t;

struct preconn {
    uint32_t magic;
    pod_t *pod;
    pre_state_t state;
    uint16_t lease;              /* the relay port P */
    int family;                  /* PRE_RESOLVING: the family to resolve host in */
    char host[P2M_HOST_MAX + 1]; /* what is connected to: the relay as the registrar named it, or the proxy */
    uint16_t port;               /* ... and its port: P, or the proxy's */
    /* Through a proxy (NULL: direct): the relay's host for CONNECT, the request's bytes sent so far,
     * and the proxy's answer as it arrives. */
    const pod_proxy_t *proxy;
    char *relay;
    size_t req_sent;
    pod_proxy_resp_t *resp;
    p2m_loop_handler_t h;
    p2m_loop_timer_t timer; /* the preconnect window */
    uint64_t t_start, t_idle;
    preconn_t *next, *prev;
    p2m_loop_reap_t reap;
};

/* --- state changes, logged once --------------------------------------------------------------- */

static void set_health(pod_t *pod, pod_health_t *h, pod_health_t to, const char *what, const char *why, unsigned retry_ms)
{
    if (*h == to) {
        if (to == POD_DOWN)
            p2m_log(P2M_LOG_DEBUG, "retry", "what=%s reason=\"%s\" retry_ms=%u", what, why, retry_ms);
        return;
    }
    *h = to;
    if (to == POD_DOWN)
        p2m_log(P2M_LOG_WARN, strcmp(what, "relay") == 0 ? "relay_down" : "local_down", "label=%s reason=\"%s\" retry_ms=%u",
                pod->args->label, why, retry_ms);
    else
        p2m_log(P2M_LOG_INFO, strcmp(what, "relay") == 0 ? "relay_up" : "local_up", "label=%s", pod->args->label);
    if (to == POD_UP && h == &pod->local_health) /* back after failures: does it speak what it should? */
        probe_kick(pod, 1);
}

static void on_hold(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    pod_t *pod = (pod_t *)((char *)t - offsetof(pod_t, hold));
    if (pod->magic != POD_MAGIC)
        abort();
    pool_refill(pod);
}

static void on_topup(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    pod_t *pod = (pod_t *)((char *)t - offsetof(pod_t, topup));
    if (pod->magic != POD_MAGIC)
        abort();
    pod->topup_due = 1;
    pool_refill(pod);
    pod->topup_due = 0;
}

/* --- the elastic pool ------------------------------------------------------------------------ */

static void pre_close(preconn_t *p, int keep_fd);

/* Closes an idle pre-connection with a reset, not a FIN: a relay that joined a consumer to it
 * before the reset arrived knows from it that the pod read nothing, and gives the consumer its
 * next pre-connection with the same bytes (PROTOCOL 3.5); an end of stream would reach the
 * consumer as the service's. */
static void pre_give_back(preconn_t *p)
{
    struct linger reset = {1, 0};
    setsockopt(p->h.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    pre_close(p, 0);
}
static void pre_connected(preconn_t *p, int refill);

static void set_target(pod_t *pod, unsigned target, const char *why)
{
    unsigned floor = pod->args->pool, ceiling = pod->args->pool_max;
    if (target < floor)
        target = floor;
    if (target > ceiling)
        target = ceiling;
    if (target == pod->target)
        return;
    p2m_log(P2M_LOG_INFO, "pool_target", "label=%s target=%u was=%u reason=%s idle=%u waiting=%llu", pod->args->label, target,
            pod->target, why, pod->nidle, pod->waiting);
    pod->target = target;
    if (target > floor && !p2m_loop_timer_armed(&pod->shrink))
        p2m_loop_timer_start(pod->loop, &pod->shrink, POD_SHRINK_TICK_MS);
}

/* The last idle pre-connection was taken before the refill brought more: consumers use the pool
 * faster than it refills, so it doubles (up to the ceiling), at most once per POD_GROW_MS, the time
 * a refill takes to show. */
static void ran_dry(pod_t *pod)
{
    uint64_t now = p2m_loop_now(pod->loop);
    pod->demand_at = now;
    if (pod->grown_at != 0 && now - pod->grown_at < POD_GROW_MS)
        return;
    pod->grown_at = now;
    set_target(pod, pod->target * 2, "ran_dry");
}

void pool_demand(pod_t *pod, long waiting, long waited)
{
    if (waited >= 0)
        pod->waited = (unsigned long long)waited;
    if (waiting < 0)
        return;
    pod->waiting = (unsigned long long)waiting;
    if (waiting == 0)
        return;
    /* Each waiting consumer takes one of the pre-connections coming, and the floor stays idle. */
    pod->demand_at = p2m_loop_now(pod->loop);
    unsigned long long want = (unsigned long long)pod->args->pool + (unsigned long long)waiting;
    if (want > pod->target)
        set_target(pod, want > POD_POOL_MAX ? POD_POOL_MAX : (unsigned)want, "waiting");
}

/* Gives back up to n idle pre-connections, the newest first: the relay joins the oldest first
 * (PROTOCOL 3.4), so the ones given back are the last it would reach. One whose consumer's bytes
 * already wait is served, as pool_drain() does; one the relay joins in the moment before our reset
 * reaches it is tried again there with the next pre-connection (the relay's trial). */
static void give_back(pod_t *pod, unsigned n)
{
    for (preconn_t *p = pod->preconns, *next; p != NULL && n > 0; p = next) {
        next = p->next;
        if (p->state != PRE_IDLE || p->h.fd < 0)
            continue;
        int fd = p->h.fd, waiting = 0;
        uint64_t lived = p2m_loop_now(pod->loop) - p->t_idle;
        n--;
        if (ioctl(fd, FIONREAD, &waiting) == 0 && waiting > 0) {
            uint16_t lease = p->lease;
            p2m_log(P2M_LOG_INFO, "preconn_alive", "label=%s lease=%u fd=%d idle_ms=%llu shrinking=yes bytes=%d", pod->args->label,
                    (unsigned)lease, fd, (unsigned long long)lived, waiting);
            pre_close(p, 1);
            forward_start(pod, &p->h, lease);
            continue;
        }
        p2m_log(P2M_LOG_DEBUG, "preconn_close", "label=%s lease=%u fd=%d reason=\"shrinking\" idle_ms=%llu", pod->args->label,
                (unsigned)p->lease, fd, (unsigned long long)lived);
        pre_give_back(p);
    }
}

/* Every POD_SHRINK_TICK_MS while the pool is above its floor: after POD_SHRINK_QUIET_MS without
 * demand the target halves its distance to the floor, and the idle pre-connections beyond it are
 * given back. */
static void on_shrink(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    pod_t *pod = (pod_t *)((char *)t - offsetof(pod_t, shrink));
    if (pod->magic != POD_MAGIC)
        abort();
    if (pod->stopping)
        return;
    unsigned floor = pod->args->pool;
    uint64_t now = p2m_loop_now(loop);
    if (now - pod->demand_at >= POD_SHRINK_QUIET_MS && pod->target > floor)
        set_target(pod, floor + (pod->target - floor) / 2, "quiet");
    unsigned have = pod->nidle + pod->nconnecting + pod_register_inflight(pod);
    if (have > pod->target && now - pod->demand_at >= POD_SHRINK_QUIET_MS)
        give_back(pod, have - pod->target < pod->nidle ? have - pod->target : pod->nidle);
    have = pod->nidle + pod->nconnecting + pod_register_inflight(pod);
    if (pod->target > floor || have > pod->target)
        p2m_loop_timer_start(loop, t, POD_SHRINK_TICK_MS);
    else
        p2m_log(P2M_LOG_INFO, "pool_floor", "label=%s target=%u idle=%u", pod->args->label, pod->target, pod->nidle);
}

static void hold(pod_t *pod, unsigned ms)
{
    uint64_t left = p2m_loop_timer_left(pod->loop, &pod->hold);
    if (left == UINT64_MAX || left < ms)
        p2m_loop_timer_start(pod->loop, &pod->hold, ms);
}

static void relay_failed(pod_t *pod, const char *why)
{
    unsigned ms = pod_backoff_next(&pod->bo_relay);
    snprintf(pod->relay_error, sizeof(pod->relay_error), "%s", why);
    set_health(pod, &pod->relay_health, POD_DOWN, "relay", why, ms);
    hold(pod, ms);
}

void pool_local_failed(pod_t *pod, const char *reason)
{
    unsigned ms = pod_backoff_next(&pod->bo_local);
    set_health(pod, &pod->local_health, POD_DOWN, "local", reason, ms);
    hold(pod, ms);
}

void pool_local_ok(pod_t *pod)
{
    pod_backoff_reset(&pod->bo_local);
    set_health(pod, &pod->local_health, POD_UP, "local", NULL, 0);
}

/* --- pre-connections -------------------------------------------------------------------------- */

static preconn_t *pre_check(preconn_t *p)
{
    if (p->magic != PRECONN_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "preconn_bad_magic", "ptr=%p magic=0x%08x", (void *)p, (unsigned)p->magic);
        abort();
    }
    return p;
}

static void reap_pre(p2m_loop_reap_t *r)
{
    preconn_t *p = (preconn_t *)((char *)r - offsetof(preconn_t, reap));
    free(p->relay);
    free(p->resp);
    free(p);
}

/* Unlinks p and frees it at the end of the turn. Closes its socket unless keep_fd; with keep_fd the
 * socket stays registered with p's handler, for forward_start() to take over. */
static void pre_close(preconn_t *p, int keep_fd)
{
    pod_t *pod = p->pod;
    if (p->state == PRE_CLOSED)
        return;
    if (p->state == PRE_IDLE)
        pod->nidle--;
    else
        pod->nconnecting--;
    p->state = PRE_CLOSED;
    p2m_loop_timer_stop(pod->loop, &p->timer);
    if (!keep_fd)
        p2m_loop_close(pod->loop, &p->h);
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        pod->preconns = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->magic = POD_DEAD;
    p2m_loop_defer(pod->loop, &p->reap, reap_pre);
}

static void on_idle(p2m_loop_t *loop, preconn_t *p, uint32_t events)
{
    pod_t *pod = p->pod;
    p2m_loop_handler_t *h = &p->h;
    int fd = h->fd;
    char c;
    /* Readable without a hang-up or an error: the consumer's bytes (the interest has EPOLLRDHUP). */
    ssize_t n = (events & EPOLLERR)                                       ? -1
                : (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) == EPOLLIN ? 1
                                                                          : recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(events & EPOLLERR))
        return;
    uint64_t lived = p2m_loop_now(loop) - p->t_idle;
    if (n > 0 || (n == 0 && lived >= POD_QUICK_CLOSE_MS)) {
        /* A consumer: its bytes stay in the kernel until the local service is connected. */
        p2m_log(n > 0 ? P2M_LOG_DEBUG : P2M_LOG_INFO, n > 0 ? "preconn_alive" : "preconn_eof",
                "label=%s lease=%u fd=%d idle_ms=%llu", pod->args->label, (unsigned)p->lease, fd, (unsigned long long)lived);
        uint16_t lease = p->lease;
        pre_close(p, 1);
        forward_start(pod, &p->h, lease);
        if (pod->nidle == 0)
            ran_dry(pod);
        pool_refill(pod);
        return;
    }
    int e = n < 0 && !(events & EPOLLERR) ? errno : 0;
    socklen_t len = sizeof(e);
    if (n < 0 && e == 0)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
    char why[128];
    snprintf(why, sizeof(why), "%s", n == 0 ? "closed by the relay at once" : e != 0 ? strerror(e) : "socket error");
    p2m_log(P2M_LOG_INFO, "preconn_close", "label=%s lease=%u fd=%d reason=\"%s\" idle_ms=%llu", pod->args->label,
            (unsigned)p->lease, fd, why, (unsigned long long)lived);
    pre_close(p, 0);
    /* Dropped at once: the relay refuses us (address, limits). Later: the relay went away, which
     * the next registration finds out. */
    if (lived < POD_QUICK_CLOSE_MS)
        relay_failed(pod, why);
    pool_refill(pod);
}

static void pre_idle(preconn_t *p)
{
    pod_t *pod = p->pod;
    /* The timer now waits for the idleness after which the keepalives are turned on. */
    p2m_loop_timer_start(pod->loop, &p->timer, POD_KEEPALIVE_AFTER_MS);
    /* EPOLLRDHUP: a readable event without it is the consumer's bytes, known without a peek. */
    if (p2m_loop_set_events(pod->loop, &p->h, EPOLLIN | EPOLLRDHUP) != 0) {
        relay_failed(pod, strerror(errno));
        pre_close(p, 0);
        return;
    }
    p->state = PRE_IDLE;
    p->t_idle = p2m_loop_now(pod->loop);
    pod->nconnecting--;
    pod->nidle++;
    pod_backoff_reset(&pod->bo_relay);
    set_health(pod, &pod->relay_health, POD_UP, "relay", NULL, 0);
    pod->relay_error[0] = '\0';
    pod->proxy_refused = 0;
    p2m_log(P2M_LOG_INFO, "preconn_idle", "label=%s lease=%u fd=%d ms=%llu idle=%u", pod->args->label, (unsigned)p->lease, p->h.fd,
            (unsigned long long)(p->t_idle - p->t_start), pod->nidle);
}

static void pre_connect_failed(preconn_t *p, const char *why)
{
    pod_t *pod = p->pod;
    p2m_log(P2M_LOG_DEBUG, "preconn_failed", "label=%s lease=%u fd=%d reason=\"%s\"", pod->args->label, (unsigned)p->lease, p->h.fd,
            why);
    pre_close(p, 0);
    relay_failed(pod, why);
    pool_refill(pod);
}

static void on_connect(preconn_t *p, uint32_t events)
{
    p2m_loop_handler_t *h = &p->h;
    /* A failed connect reports EPOLLERR (with EPOLLHUP): only then is SO_ERROR worth a syscall. */
    int e = 0;
    socklen_t len = sizeof(e);
    if ((events & (EPOLLERR | EPOLLHUP)) && getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        e = errno;
    if (e == 0 && (events & (EPOLLERR | EPOLLHUP)))
        e = ECONNREFUSED; /* reported, but the error was read meanwhile */
    if (e != 0) {
        char why[P2M_ERR_LEN];
        if (p->proxy != NULL)
            p2m_err(why, "connect to proxy %s: %s", p->proxy->shown, strerror(e));
        else
            p2m_err(why, "connect: %s", strerror(e));
        pre_connect_failed(p, why);
        return;
    }
    pre_connected(p, 1);
}

/* --- through a proxy ------------------------------------------------------------------------ */

/* "CONNECT RELAY:P" for messages. */
static const char *pre_target(const preconn_t *p, char *buf, size_t cap)
{
    p2m_hostport_format(p->relay, p->lease, buf, cap);
    return buf;
}

/* Sends (the rest of) the CONNECT request; waits for the rest of it to go, and for the answer.
 * Returns 0, or -1 when p failed (closed). */
static int proxy_send(preconn_t *p)
{
    pod_t *pod = p->pod;
    char req[POD_PROXY_REQ_MAX], why[P2M_ERR_LEN], target[P2M_HOST_MAX + 16];
    int n = pod_proxy_request(p->proxy, p->relay, p->lease, req, sizeof(req));
    ssize_t w = 0;
    if (n >= 0 && p->req_sent < (size_t)n)
        w = send(p->h.fd, req + p->req_sent, (size_t)n - p->req_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    int e = errno;
    explicit_bzero(req, sizeof(req)); /* Proxy-Authorization: the password */
    if (n < 0) {
        p2m_err(why, "the CONNECT request for %s does not fit", pre_target(p, target, sizeof(target)));
        pre_connect_failed(p, why);
        return -1;
    }
    if (w < 0 && e != EAGAIN && e != EINTR) {
        p2m_err(why, "proxy %s: send: %s", p->proxy->shown, strerror(e));
        pre_connect_failed(p, why);
        return -1;
    }
    if (w > 0)
        p->req_sent += (size_t)w;
    if (p2m_loop_set_events(pod->loop, &p->h, EPOLLIN | EPOLLRDHUP | (p->req_sent < (size_t)n ? EPOLLOUT : 0)) != 0) {
        pre_connect_failed(p, strerror(errno));
        return -1;
    }
    return 0;
}

/* The proxy refused the CONNECT (or answered something else than HTTP): logged at error once per
 * status until the relay is reached again, then the relay's backoff as for any failure. */
static void proxy_refused(preconn_t *p, int status, const char *why)
{
    pod_t *pod = p->pod;
    int key = status != 0 ? status : -1;
    if (pod->proxy_refused != key)
        p2m_log(P2M_LOG_ERROR, "proxy_refused", "label=%s what=relay status=%d error=\"%s\"", pod->args->label, status, why);
    pod->proxy_refused = key;
    pre_connect_failed(p, why);
}

/* The proxy's answer arrives. It is peeked at and only its header taken from the socket: bytes
 * after it are the tunnel's (a relay sends nothing before a consumer, but a consumer's first bytes
 * may already follow) and stay in the kernel for on_idle(), as on a direct pre-connection. */
static void on_proxy(preconn_t *p, uint32_t events)
{
    pod_t *pod = p->pod;
    char buf[POD_PROXY_HDR_MAX], why[P2M_ERR_LEN], target[P2M_HOST_MAX + 16];
    size_t used = 0;
    if ((events & EPOLLOUT) && proxy_send(p) != 0)
        return;
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    ssize_t n = recv(p->h.fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        p2m_err(why, "proxy %s %s before answering CONNECT %s", p->proxy->shown, n == 0 ? "closed the connection" : strerror(errno),
                pre_target(p, target, sizeof(target)));
        proxy_refused(p, 0, why);
        return;
    }
    pod_proxy_resp_rc_t rc = pod_proxy_resp_feed(p->resp, buf, (size_t)n, &used);
    /* Takes the header bytes just read; they are in the socket's buffer, so this reads them all. */
    for (size_t got = 0; got < used;) {
        ssize_t r = recv(p->h.fd, buf, used - got, MSG_DONTWAIT);
        if (r <= 0 && errno != EINTR) {
            p2m_err(why, "proxy %s: recv: %s", p->proxy->shown, r == 0 ? "end of stream" : strerror(errno));
            pre_connect_failed(p, why);
            return;
        }
        got += r > 0 ? (size_t)r : 0;
    }
    if (rc == PROXY_RESP_MORE)
        return;
    if (rc == PROXY_RESP_BAD) {
        p2m_err(why, "proxy %s answered CONNECT %s with no HTTP/1.x response: %s", p->proxy->shown,
                pre_target(p, target, sizeof(target)), p->resp->err);
        proxy_refused(p, 0, why);
        return;
    }
    if (p->resp->status < 200 || p->resp->status > 299) {
        pod_proxy_refusal(p->proxy, pre_target(p, target, sizeof(target)), p->resp->status, p->resp->reason, p->resp->auth_scheme,
                          why, sizeof(why));
        proxy_refused(p, p->resp->status, why);
        return;
    }
    /* The tunnel is open: from here on the relay's pre-connection, as if connected directly. */
    free(p->resp);
    p->resp = NULL;
    pre_idle(p);
    pool_refill(pod);
}

/* The TCP connection is up: through a proxy, CONNECT comes first; else it is idle (and, with
 * refill, the pool refilled: not while pool_on_port() is still called for a registration). */
static void pre_connected(preconn_t *p, int refill)
{
    if (p->proxy == NULL) {
        pre_idle(p);
        if (refill)
            pool_refill(p->pod);
        return;
    }
    p->state = PRE_PROXY;
    if ((p->resp = malloc(sizeof(*p->resp))) == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "what=preconn");
        abort();
    }
    pod_proxy_resp_init(p->resp);
    proxy_send(p);
}

static void on_pre(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    preconn_t *p = pre_check((preconn_t *)((char *)h - offsetof(preconn_t, h)));
    if (p->state == PRE_CONNECTING)
        on_connect(p, events);
    else if (p->state == PRE_PROXY)
        on_proxy(p, events);
    else if (p->state == PRE_IDLE)
        on_idle(loop, p, events);
}

static void on_pre_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    preconn_t *p = pre_check((preconn_t *)((char *)t - offsetof(preconn_t, timer)));
    char why[P2M_ERR_LEN], target[P2M_HOST_MAX + 16];
    if (p->state == PRE_IDLE) {
        pool_keepalive(p->h.fd);
        return;
    }
    if (p->state == PRE_PROXY) {
        p2m_err(why, "proxy %s did not answer CONNECT %s within %d s", p->proxy->shown, pre_target(p, target, sizeof(target)),
                POD_PRECONNECT_MS / 1000);
        proxy_refused(p, 0, why);
        return;
    }
    if (p->proxy != NULL)
        p2m_err(why, "%s proxy %s took too long", p->state == PRE_RESOLVING ? "resolving" : "connecting to", p->proxy->shown);
    else
        p2m_err(why, "%s", p->state == PRE_RESOLVING ? "resolving the relay took too long" : "connect: timed out");
    pre_connect_failed(p, why);
}

void pool_sockopts(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void pool_keepalive(int fd)
{
    int one = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTVL_S, cnt = KEEPALIVE_CNT;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Starts the connect of a pre-connection to sa. */
static void pre_connect(preconn_t *p, const struct sockaddr *sa, socklen_t salen)
{
    pod_t *pod = p->pod;
    char err[P2M_ERR_LEN], why[P2M_ERR_LEN];
    int ok = 0;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(why, sizeof(why), "socket: %s", strerror(errno));
        goto Exit;
    }
    pool_sockopts(fd);
    /* --source: from the address that registered, which the relay checks pre-connections against. */
    if (pod_source_bind(pod, fd, sa->sa_family, err) != 0) {
        snprintf(why, sizeof(why), "%s", err);
        close(fd);
        goto Exit;
    }
    int rc = connect(fd, sa, salen);
    if (rc != 0 && errno != EINPROGRESS) {
        snprintf(why, sizeof(why), "connect: %s", strerror(errno));
        close(fd);
        goto Exit;
    }
    if (p2m_loop_add(pod->loop, &p->h, fd, rc == 0 ? 0 : EPOLLOUT, on_pre, err) != 0) {
        snprintf(why, sizeof(why), "%s", err);
        close(fd);
        goto Exit;
    }
    p->state = PRE_CONNECTING;
    ok = 1;
    if (rc == 0)
        pre_connected(p, 0);
Exit:
    if (!ok)
        pre_connect_failed(p, why);
}

/* --- resolving the relay's name --------------------------------------------------------------- */

static struct {
    int efd; /* eventfd the resolver's thread writes to; -1 before first use */
    p2m_loop_handler_t h;
    struct gaicb cb; /* the lookup in flight (req.ar_name set) */
    struct addrinfo hints;
    struct sigevent sev;
    char name[P2M_HOST_MAX + 1];  /* what is being (or was last) resolved */
    int family;                   /* ... and in which family */
    int busy;                     /* a lookup is in flight */
    struct sockaddr_storage addr; /* the cached answer for name */
    socklen_t addrlen;            /* 0: none */
    uint64_t until;               /* loop ms the answer is good for */
    pod_t *pod;
} res = {.efd = -1};

static int resolve_start(pod_t *pod, const char *name, int family, char *err);

static void on_resolved_thread(union sigval sv)
{
    (void)sv;
    uint64_t one = 1;
    ssize_t n = write(res.efd, &one, sizeof(one));
    (void)n;
}

static void with_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static void on_resolved(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)events;
    uint64_t v;
    if (read(h->fd, &v, sizeof(v)) < 0 || !res.busy)
        return;
    int rc = gai_error(&res.cb);
    if (rc == EAI_INPROGRESS)
        return;
    pod_t *pod = res.pod;
    res.busy = 0;
    res.addrlen = 0;
    if (rc == 0 && res.cb.ar_result != NULL && res.cb.ar_result->ai_addrlen <= sizeof(res.addr)) {
        memcpy(&res.addr, res.cb.ar_result->ai_addr, res.cb.ar_result->ai_addrlen);
        res.addrlen = res.cb.ar_result->ai_addrlen;
        res.until = p2m_loop_now(loop) + POD_RESOLVE_TTL_MS;
    }
    if (res.cb.ar_result != NULL)
        freeaddrinfo(res.cb.ar_result);
    res.cb.ar_result = NULL;
    char why[P2M_HOST_MAX + 64];
    snprintf(why, sizeof(why), "cannot resolve %s: %s", res.name, rc == 0 ? "no address" : gai_strerror(rc));
    /* Every pre-connection waiting for this name goes on (or fails); one waiting for another name
     * starts the next lookup. */
    preconn_t *other = NULL;
    for (preconn_t *p = pod->preconns, *next; p != NULL; p = next) {
        next = p->next;
        if (p->state != PRE_RESOLVING)
            continue;
        if (strcasecmp(p->host, res.name) != 0 || p->family != res.family) {
            other = p;
            continue;
        }
        if (res.addrlen == 0) {
            pre_connect_failed(p, why);
            continue;
        }
        struct sockaddr_storage ss = res.addr;
        with_port(&ss, p->port);
        pre_connect(p, (struct sockaddr *)&ss, res.addrlen);
    }
    char err[P2M_ERR_LEN];
    if (other != NULL && resolve_start(pod, other->host, other->family, err) != 0)
        pre_connect_failed(other, err);
}

/* Starts resolving name in family (AF_UNSPEC: any). Returns 0, or -1 with err. */
static int resolve_start(pod_t *pod, const char *name, int family, char *err)
{
    if (res.busy)
        return 0; /* one lookup at a time: on_resolved() starts the next */
    if (res.efd < 0) {
        if ((res.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
            return p2m_err(err, "eventfd: %s", strerror(errno));
        p2m_loop_handler_init(&res.h);
        if (p2m_loop_add(pod->loop, &res.h, res.efd, EPOLLIN, on_resolved, err) != 0) {
            close(res.efd);
            res.efd = -1;
            return -1;
        }
    }
    res.pod = pod;
    snprintf(res.name, sizeof(res.name), "%s", name);
    res.family = family;
    memset(&res.hints, 0, sizeof(res.hints));
    res.hints.ai_family = family;
    res.hints.ai_socktype = SOCK_STREAM;
    memset(&res.cb, 0, sizeof(res.cb));
    res.cb.ar_name = res.name;
    res.cb.ar_request = &res.hints;
    memset(&res.sev, 0, sizeof(res.sev));
    res.sev.sigev_notify = SIGEV_THREAD;
    res.sev.sigev_notify_function = on_resolved_thread;
    struct gaicb *list[1] = {&res.cb};
    int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, &res.sev);
    if (rc != 0)
        return p2m_err(err, "cannot resolve %s: %s", name, gai_strerror(rc));
    res.busy = 1;
    return 0;
}

/* At exit: a lookup still running keeps glibc's pointers into res; wait a little for it. */
static void resolve_stop(pod_t *pod)
{
    if (res.busy) {
        if (gai_cancel(&res.cb) != EAI_CANCELED) {
            const struct gaicb *list[1] = {&res.cb};
            struct timespec ts = {2, 0};
            gai_suspend(list, 1, &ts);
        }
        if (gai_error(&res.cb) == 0 && res.cb.ar_result != NULL)
            freeaddrinfo(res.cb.ar_result);
        res.busy = 0;
    }
    if (res.efd >= 0) {
        p2m_loop_close(pod->loop, &res.h);
        res.efd = -1;
    }
}

/* --- the pool --------------------------------------------------------------------------------- */

/* Through a proxy or not, as the registration went (pod_args_use_proxy() for the relay's host and
 * the registrar's agree unless no_proxy names one and not the other: warned once, since the relay
 * then sees the pre-connections come from another address than the registration). */
static const pod_proxy_t *relay_proxy(pod_t *pod, const char *relay)
{
    const pod_proxy_t *px = pod_args_use_proxy(pod->args, relay);
    if ((px != NULL) != (pod_register_proxy(pod) != NULL) && !pod->proxy_split_logged) {
        pod->proxy_split_logged = 1;
        p2m_log(P2M_LOG_WARN, "proxy_split", "label=%s relay=%s relay_via=%s registrar_via=%s no_proxy=\"%s\"", pod->args->label,
                relay, px != NULL ? "proxy" : "direct", px != NULL ? "direct" : "proxy", pod->args->no_proxy);
    }
    return px;
}

void pool_on_port(pod_t *pod, const p2m_hostport_t *relay, int family)
{
    char err[P2M_ERR_LEN];
    if (pod->stopping)
        return; /* the lease expires by itself */
    preconn_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "what=preconn");
        abort();
    }
    p->magic = PRECONN_MAGIC;
    p->pod = pod;
    p->lease = relay->port;
    p->family = family;
    if ((p->proxy = relay_proxy(pod, relay->host)) != NULL) {
        /* The proxy resolves the relay's name: in whichever family, it is the proxy's address the relay sees. */
        if ((p->relay = strdup(relay->host)) == NULL) {
            p2m_log(P2M_LOG_ERROR, "oom", "what=preconn");
            abort();
        }
        snprintf(p->host, sizeof(p->host), "%s", p->proxy->host);
        p->port = p->proxy->port;
        p->family = AF_UNSPEC;
    } else {
        snprintf(p->host, sizeof(p->host), "%s", relay->host);
        p->port = relay->port;
    }
    p->state = PRE_RESOLVING;
    p->t_start = p2m_loop_now(pod->loop);
    p2m_loop_handler_init(&p->h);
    p2m_loop_timer_init(&p->timer, on_pre_timer);
    p->next = pod->preconns;
    if (pod->preconns != NULL)
        pod->preconns->prev = p;
    pod->preconns = p;
    pod->nconnecting++;
    p2m_loop_timer_start(pod->loop, &p->timer, POD_PRECONNECT_MS);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    const char *host = p->host;
    size_t hl = strlen(host);
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(p->port);
        pre_connect(p, (struct sockaddr *)v4, sizeof(*v4));
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(p->port);
        pre_connect(p, (struct sockaddr *)v6, sizeof(*v6));
    } else if (strcasecmp(host, "localhost") == 0 || (hl > 10 && strcasecmp(host + hl - 10, ".localhost") == 0)) {
        /* RFC 6761: curl and browsers resolve *.localhost to loopback themselves; so do we. */
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        v4->sin_port = htons(p->port);
        pre_connect(p, (struct sockaddr *)v4, sizeof(*v4));
    } else if (res.addrlen != 0 && strcasecmp(res.name, host) == 0 && res.family == p->family &&
               p2m_loop_now(pod->loop) < res.until) {
        ss = res.addr;
        with_port(&ss, p->port);
        pre_connect(p, (struct sockaddr *)&ss, res.addrlen);
    } else if (resolve_start(pod, host, p->family, err) != 0) {
        pre_connect_failed(p, err);
    }
    /* else: on_resolved() connects it. */
}

void pool_refill(pod_t *pod)
{
    if (pod->stopping || p2m_loop_timer_armed(&pod->hold))
        return;
    unsigned target = pod->target;
    unsigned have = pod->nidle + pod->nconnecting + pod_register_inflight(pod);
    /* Every pre-connection may become a tunnel: stay within the descriptors we have. */
    if (pod->ntunnels + have >= pod->max_tunnels) {
        if (!pod->limit_logged)
            p2m_log(P2M_LOG_WARN, "tunnel_limit", "label=%s tunnels=%u max=%u", pod->args->label, pod->ntunnels, pod->max_tunnels);
        pod->limit_logged = 1;
        return;
    }
    pod->limit_logged = 0;
    if (have < target) {
        unsigned want = target - have;
        if (pod->ntunnels + have + want > pod->max_tunnels)
            want = pod->max_tunnels - pod->ntunnels - have;
        /* Refilled in batches: one registration leases a port for up to POD_REFILL_BATCH
         * connections, so a pool that lost one to a consumer waits until half of itself (at most
         * POD_REFILL_BATCH) is gone, or POD_TOPUP_MS, rather than paying a registration per
         * connection: the registrar's and Redis's share of a connection halves with each doubling
         * of the batch. A pool under 8 refills at once; a pool that runs dry doubles. */
        unsigned batch = target < 8 ? 1 : target / 2 > POD_REFILL_BATCH ? POD_REFILL_BATCH : target / 2;
        /* Consumers waiting, or none idle: they wait for this refill, not for a batch to gather. */
        int demand = pod->waiting > 0 || pod->nidle == 0;
        if (want >= batch || have * 2 <= target || pod->topup_due || demand) {
            p2m_loop_timer_stop(pod->loop, &pod->topup);
            pod_register_start(pod, want);
        } else if (!p2m_loop_timer_armed(&pod->topup)) {
            p2m_loop_timer_start(pod->loop, &pod->topup, POD_TOPUP_MS);
        }
    }
}

int pool_init(pod_t *pod, char *err)
{
    struct rlimit rl;
    unsigned long nofile = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        nofile = rl.rlim_cur;
    else if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        nofile = 1u << 20;
    /* Descriptors: a few for the loop, curl and status; 2 per pipe; 2 per tunnel (relay and
     * local side); the pool's pre-connections become tunnels, so they count as tunnels. */
    unsigned pipes = nofile / 8 < 256 ? (unsigned)(nofile / 8) : 256;
    long room = (long)nofile - 64 - 2 * (long)pipes;
    if (pipes == 0 || room / 2 < (long)pod->args->pool + 1)
        return p2m_err(err, "the descriptor limit (%lu) is too low for --pool %u", nofile, pod->args->pool);
    pod->max_tunnels = (unsigned)(room / 2);
    if ((pod->pipes = p2m_pipe_pool_new(pipes, POD_PIPE_SIZE, err)) == NULL)
        return -1;
    p2m_loop_timer_init(&pod->hold, on_hold);
    p2m_loop_timer_init(&pod->topup, on_topup);
    p2m_loop_timer_init(&pod->shrink, on_shrink);
    pod->target = pod->args->pool;
    return 0;
}

void pool_drain(pod_t *pod)
{
    p2m_loop_timer_stop(pod->loop, &pod->hold);
    p2m_loop_timer_stop(pod->loop, &pod->topup);
    p2m_loop_timer_stop(pod->loop, &pod->shrink);
    for (preconn_t *p = pod->preconns, *next; p != NULL; p = next) {
        next = p->next;
        int fd = p->h.fd, waiting = 0;
        if (p->state != PRE_IDLE || fd < 0) {
            pre_close(p, 0); /* not connected yet: the relay never counted it idle */
            continue;
        }
        uint64_t lived = p2m_loop_now(pod->loop) - p->t_idle;
        if (ioctl(fd, FIONREAD, &waiting) == 0 && waiting > 0) {
            /* Joined at the relay in the moment before we noticed: a consumer waits for an answer. */
            p2m_log(P2M_LOG_INFO, "preconn_alive", "label=%s lease=%u fd=%d idle_ms=%llu draining=yes bytes=%d", pod->args->label,
                    (unsigned)p->lease, fd, (unsigned long long)lived, waiting);
            uint16_t lease = p->lease;
            pre_close(p, 1);
            forward_start(pod, &p->h, lease);
            continue;
        }
        p2m_log(P2M_LOG_INFO, "preconn_close", "label=%s lease=%u fd=%d reason=\"draining\" idle_ms=%llu", pod->args->label,
                (unsigned)p->lease, fd, (unsigned long long)lived);
        pre_give_back(p);
    }
}

void pool_close_all(pod_t *pod)
{
    while (pod->preconns != NULL)
        pre_close(pod->preconns, 0);
    p2m_loop_timer_stop(pod->loop, &pod->hold);
    p2m_loop_timer_stop(pod->loop, &pod->topup);
    p2m_loop_timer_stop(pod->loop, &pod->shrink);
    resolve_stop(pod);
}
