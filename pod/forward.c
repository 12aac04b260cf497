/* A live pre-connection joined to the local service (--forward).
 *
 * The relay side arrives with the consumer's first bytes unread; the local connect is started
 * (non-blocking) and until it completes the relay side is watched for nothing but errors, so those
 * bytes wait in the kernel. Then t->br (lib/bridge.c, as in the relay's tunnels) moves the bytes:
 * br.dir[0] relay -> local (bytes in), br.dir[1] local -> relay (bytes out), spliced through pipes
 * borrowed from the pod's pool, end of stream passed on with shutdown(SHUT_WR), and the tunnel closed
 * once both directions are shut, on any error, or when a side hangs up with bytes still owed to it.
 *
 * The local service down (refused, or no answer in POD_LOCAL_CONNECT_MS): the consumer's bytes are
 * drained and the relay side closed with a FIN, so the consumer sees a clean close; the pool backs
 * off.
 *
 * With --tls-terminate the relay side carries the consumer's TLS: tls.c runs the handshake first
 * (state TUNNEL_HANDSHAKE), then tunnel_connect() connects to --forward as above, and tls.c moves
 * the plain bytes. The tunnel list, the local connect, the close and the reap are shared; every
 * event of a TLS tunnel other than the local connect's goes to tls_tunnel_event(). */
#include "pod.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "p2m/err.h"

enum { SIDE_RELAY = TUNNEL_RELAY, SIDE_LOCAL = TUNNEL_LOCAL };

#define DRAIN_MAX (256 * 1024) /* bytes read and dropped before closing on a refusal */

tunnel_t *tunnel_check(tunnel_t *t)
{
    if (t->magic != TUNNEL_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "tunnel_bad_magic", "ptr=%p magic=0x%08x", (void *)t, (unsigned)t->magic);
        abort();
    }
    return t;
}

void tunnel_log(p2m_log_level_t level, const tunnel_t *t, const char *event, const char *fmt, ...)
{
    char extra[512] = "";
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof(extra), fmt, ap);
        va_end(ap);
    }
    p2m_log(level, event, "label=%s lease=%u fd=%d local_fd=%d%s%s", t->pod->args->label, (unsigned)t->lease, t->br.fd[SIDE_RELAY],
            t->br.fd[SIDE_LOCAL], extra[0] ? " " : "", extra);
}

static void reap_tunnel(p2m_loop_reap_t *r)
{
    tunnel_t *t = (tunnel_t *)((char *)r - offsetof(tunnel_t, reap));
    tls_tunnel_free(t->tls);
    free(t);
}

/* Reads and drops what the consumer sent, so that closing sends a FIN rather than a reset. */
static void drain(int fd)
{
    char buf[16384];
    size_t total = 0;
    while (total < DRAIN_MAX) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

void tunnel_close(tunnel_t *t, const char *reason, int drain_relay)
{
    pod_t *pod = t->pod;
    if (t->state == TUNNEL_CLOSED)
        return;
    uint64_t now = p2m_loop_now(pod->loop);
    if (t->state == TUNNEL_JOINED)
        tunnel_log(P2M_LOG_INFO, t, t->direct ? "direct_close" : "tunnel_close", "reason=%s bytes_in=%llu bytes_out=%llu ms=%llu",
                   reason, (unsigned long long)t->br.dir[0].bytes, (unsigned long long)t->br.dir[1].bytes,
                   (unsigned long long)(now - t->t_join));
    else
        tunnel_log(P2M_LOG_INFO, t, t->direct ? "direct_close" : "tunnel_close", "reason=%s forward=%s ms=%llu", reason,
                   pod->fwd_str, (unsigned long long)(now - t->t_start));
    if (t->state != TUNNEL_JOINED)
        pod->stats.tunnel_failures++;
    /* A tunnel that failed, or ended within 2 s having moved under 4 KiB, may be a consumer speaking
     * what the local service does not (TLS to plain HTTP): ask the probe. */
    if (t->state != TUNNEL_JOINED || (now - t->t_join < 2000 && t->br.dir[0].bytes + t->br.dir[1].bytes < 4096))
        probe_kick(pod, 0);
    pod->stats.bytes_in += t->br.dir[0].bytes;
    pod->stats.bytes_out += t->br.dir[1].bytes;
    if (t->tls != NULL)
        tls_tunnel_close(t, drain_relay);
    t->state = TUNNEL_CLOSED;
    p2m_loop_timer_stop(pod->loop, &t->timer);
    if (drain_relay && t->br.fd[SIDE_RELAY] >= 0) {
        drain(t->br.fd[SIDE_RELAY]);
        shutdown(t->br.fd[SIDE_RELAY], SHUT_WR);
    }
    p2m_bridge_close(&t->br);
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        pod->tunnels = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    pod->ntunnels--;
    t->magic = POD_DEAD;
    p2m_loop_defer(pod->loop, &t->reap, reap_tunnel);
    /* The last tunnel of the drain: the pod may exit. */
    if (pod->draining && pod->ntunnels == 0)
        p2m_loop_stop(pod->loop);
    pool_refill(pod); /* below the tunnel limit again, perhaps */
}

/* --- joined ----------------------------------------------------------------------------------- */

static void on_relay(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events);
static void on_local(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events);

static void on_bridge_close(p2m_bridge_t *b, const char *reason)
{
    tunnel_close(tunnel_check((tunnel_t *)((char *)b - offsetof(tunnel_t, br))), reason, 0);
}

static const p2m_bridge_ops_t bridge_ops = {
    .io = {on_relay, on_local},
    .name = {"relay", "local"},
    .read_events = EPOLLIN,
    .budget = POD_PUMP_BUDGET,
    .on_moved = NULL,
    .on_close = on_bridge_close,
};

int tunnel_watch(tunnel_t *t, int s, uint32_t events)
{
    return p2m_bridge_watch(&t->br, s, events);
}

/* The local connect completed: the splice (or tls.c) starts. */
static void tunnel_join(tunnel_t *t)
{
    pod_t *pod = t->pod;
    t->state = TUNNEL_JOINED;
    t->t_join = p2m_loop_now(pod->loop);
    p2m_loop_timer_stop(pod->loop, &t->timer);
    pool_local_ok(pod);
    tunnel_log(P2M_LOG_INFO, t, t->direct ? "direct_open" : "tunnel_open", "forward=%s connect_ms=%llu", pod->fwd_str,
               (unsigned long long)(t->t_join - t->t_connect));
    if (t->tls != NULL) {
        tls_tunnel_joined(t);
        return;
    }
    /* The consumer's first bytes wait in the relay socket: the first pump finds them. */
    p2m_bridge_start(&t->br);
    p2m_bridge_pump(&t->br, SIDE_RELAY);
}

/* --- connecting ------------------------------------------------------------------------------- */

static void local_failed(tunnel_t *t, const char *why)
{
    char reason[160];
    pod_t *pod = t->pod;
    snprintf(reason, sizeof(reason), "local_down error=\"%s\"", why);
    pool_local_failed(pod, why); /* first: the hold stops the refill tunnel_close() asks for */
    tunnel_close(t, reason, 1);
}

static void on_connecting(tunnel_t *t, int s, uint32_t events)
{
    if (s == SIDE_RELAY) {
        /* Only errors and hang-ups are watched before the join. */
        if (events & EPOLLERR) {
            tunnel_close(t, "relay_error", 0);
            return;
        }
        if (events & EPOLLHUP) {
            t->br.hup[SIDE_RELAY] = 1;
            p2m_loop_del(t->pod->loop, &t->br.side[SIDE_RELAY]); /* level-triggered: would fire again */
        }
        return;
    }
    /* A failed connect reports EPOLLERR (with EPOLLHUP): only then is SO_ERROR worth a syscall. */
    int e = 0;
    socklen_t len = sizeof(e);
    if ((events & (EPOLLERR | EPOLLHUP)) && getsockopt(t->br.fd[SIDE_LOCAL], SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        e = errno;
    if (e == 0 && (events & (EPOLLERR | EPOLLHUP)))
        e = ECONNREFUSED; /* reported, but the error was read meanwhile */
    if (e != 0) {
        local_failed(t, strerror(e));
        return;
    }
    tunnel_join(t);
}

static void on_event(tunnel_t *t, int s, uint32_t events)
{
    tunnel_check(t);
    if (t->state == TUNNEL_CLOSED)
        return;
    if (t->state == TUNNEL_CONNECTING && (s == SIDE_LOCAL || t->tls == NULL))
        on_connecting(t, s, events);
    else if (t->tls != NULL)
        tls_tunnel_event(t, s, events);
    else if (t->state == TUNNEL_JOINED)
        p2m_bridge_event(&t->br, s, events);
}

static void on_relay(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    on_event((tunnel_t *)((char *)h - offsetof(tunnel_t, br.side[SIDE_RELAY])), SIDE_RELAY, events);
}

static void on_local(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    on_event((tunnel_t *)((char *)h - offsetof(tunnel_t, br.side[SIDE_LOCAL])), SIDE_LOCAL, events);
}

static void on_timer(p2m_loop_t *loop, p2m_loop_timer_t *timer)
{
    (void)loop;
    tunnel_t *t = tunnel_check((tunnel_t *)((char *)timer - offsetof(tunnel_t, timer)));
    if (t->state == TUNNEL_CONNECTING)
        local_failed(t, "connect timed out");
}

void tunnel_connect(tunnel_t *t)
{
    pod_t *pod = t->pod;
    char err[P2M_ERR_LEN];
    t->state = TUNNEL_CONNECTING;
    t->t_connect = p2m_loop_now(pod->loop);
    int lfd = socket(pod->fwd_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        /* Out of descriptors, most likely: not the local service's fault. */
        char reason[96];
        snprintf(reason, sizeof(reason), "socket error=\"%s\"", strerror(errno));
        tunnel_close(t, reason, 1);
        return;
    }
    t->br.fd[SIDE_LOCAL] = lfd;
    /* Nagle off, as on every pod socket; no keepalive: the local service is near and a dead one
     * shows as a refused connect or a closed tunnel. One setsockopt per connection, not five. */
    int one = 1;
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(lfd, (struct sockaddr *)&pod->fwd_addr, pod->fwd_len);
    if (rc != 0 && errno != EINPROGRESS) {
        local_failed(t, strerror(errno));
        return;
    }
    if (p2m_loop_add(pod->loop, &t->br.side[SIDE_LOCAL], lfd, rc == 0 ? 0 : EPOLLOUT, on_local, err) != 0) {
        tunnel_log(P2M_LOG_ERROR, t, "tunnel_failed", "error=\"%s\"", err);
        tunnel_close(t, "epoll", 0);
        return;
    }
    if (rc == 0) {
        tunnel_join(t);
        return;
    }
    p2m_loop_timer_start(pod->loop, &t->timer, POD_LOCAL_CONNECT_MS);
}

/* forward_start() and forward_direct(): one tunnel, whichever way its consumer came. */
static void tunnel_begin(pod_t *pod, p2m_loop_handler_t *from, uint16_t lease, int direct)
{
    char err[P2M_ERR_LEN];
    int fd = from->fd;
    tunnel_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "what=tunnel");
        abort();
    }
    t->magic = TUNNEL_MAGIC;
    t->pod = pod;
    t->lease = lease;
    t->direct = direct;
    t->state = pod->args->tls_terminate ? TUNNEL_HANDSHAKE : TUNNEL_CONNECTING;
    p2m_bridge_init(&t->br, pod->loop, pod->pipes, &bridge_ops);
    p2m_loop_timer_init(&t->timer, on_timer);
    t->t_start = p2m_loop_now(pod->loop);
    t->next = pod->tunnels;
    if (pod->tunnels != NULL)
        pod->tunnels->prev = t;
    pod->tunnels = t;
    pod->ntunnels++;
    pod->stats.tunnels++;
    t->br.fd[SIDE_RELAY] = fd;

    /* The pre-connection's registration passes to the tunnel with one epoll_ctl. */
    if (p2m_loop_move(pod->loop, from, &t->br.side[SIDE_RELAY], 0, on_relay, err) != 0) {
        tunnel_log(P2M_LOG_ERROR, t, "tunnel_failed", "error=\"%s\"", err);
        p2m_loop_close(pod->loop, from);
        t->br.fd[SIDE_RELAY] = -1;
        tunnel_close(t, "epoll", 0);
        return;
    }
    if (t->state == TUNNEL_HANDSHAKE)
        tls_tunnel_start(t);
    else
        tunnel_connect(t);
}

void forward_start(pod_t *pod, p2m_loop_handler_t *from, uint16_t lease)
{
    tunnel_begin(pod, from, lease, 0);
}

void forward_direct(pod_t *pod, p2m_loop_handler_t *from)
{
    tunnel_begin(pod, from, 0, 1);
}

void forward_close_all(pod_t *pod)
{
    while (pod->tunnels != NULL)
        tunnel_close(pod->tunnels, "shutdown", 0);
}

void forward_bytes(const pod_t *pod, uint64_t *in, uint64_t *out)
{
    *in = pod->stats.bytes_in;
    *out = pod->stats.bytes_out;
    for (const tunnel_t *t = pod->tunnels; t != NULL; t = t->next) {
        *in += t->br.dir[0].bytes;
        *out += t->br.dir[1].bytes;
    }
}
