/* The data path: one consumer connection spliced to one pre-connection.
 *
 * Joined, t->br (lib/bridge.c) moves the bytes: br.dir[0] consumer -> pod, br.dir[1] pod -> consumer, with
 * p2m_splice_pump() through a pipe borrowed from the relay's pool only while bytes sit in it, and end of stream passed on
 * as shutdown(SHUT_WR). Here are the relay's parts: the join, the counters per label, and the close, once both directions
 * are shut, on any error, after relay.idle_timeout seconds without a byte either way, or when a side hangs up with bytes
 * still owed to it. A joined side's interest has EPOLLRDHUP beside EPOLLIN, as before the join, so that joining changes
 * nothing (no epoll_ctl) and a peer's end of stream reads like bytes.
 *
 * Before the join the same object holds one half: an idle pre-connection (TUNNEL_IDLE) or a
 * waiting consumer (TUNNEL_WAIT), watched only for hang-up so that bytes a consumer sends early
 * stay in the kernel until the join.
 *
 * Between the two, a consumer given a pre-connection that sat idle is joined on trial: its pod
 * may be giving that very pre-connection back (PROTOCOL 3.5), its reset crossing the consumer's
 * first bytes on the wire, and a pod that resets has read nothing. So the first bytes are copied
 * to the pod, not moved (recv with MSG_PEEK, then send): they stay in the consumer's socket until
 * the pod answers, the consumer sends more, or RELAY_TRIAL_MS pass; then they are dropped from it
 * and the bridge takes over. A reset before that puts the consumer back in line with its bytes
 * intact, for the next pre-connection. */
#include "relay.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "p2m/err.h"

static tunnel_t *tunnel_check(tunnel_t *t)
{
    if (t->magic != TUNNEL_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "tunnel_bad_magic", "ptr=%p magic=0x%08x", (void *)t, (unsigned)t->magic);
        abort();
    }
    return t;
}

void tunnel_log(p2m_log_level_t level, const tunnel_t *t, const char *event, const char *fmt, ...)
{
    char extra[1024] = "";
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(extra, sizeof(extra), fmt, ap);
        va_end(ap);
    }
    /* The lease a tunnel is known by: the consumer's once there is one, else the pre lease; an SNI
     * consumer's is the SNI port's (sni=1). */
    unsigned lease = t->via_sni ? t->relay->cfg.relay.sni_listen.port : t->qport != 0 ? t->qport : t->pport;
    int fd = t->qport != 0 || t->via_sni ? t->br.fd[SIDE_CONSUMER] : t->br.fd[SIDE_POD];
    /* A consumer of the SNI port before its service is known, or passed to the registrar: label=-. */
    const char *label = t->label->name[0] != '\0' ? t->label->name : "-", *sni = t->via_sni ? " sni=1" : "";
    if (t->state == TUNNEL_JOINED || (t->br.fd[SIDE_CONSUMER] >= 0 && t->br.fd[SIDE_POD] >= 0))
        p2m_log(level, event, "lease=%u label=%s fd=%d pre=%u pod_fd=%d%s%s%s", lease, label, fd, (unsigned)t->pport,
                t->br.fd[SIDE_POD], sni, extra[0] ? " " : "", extra);
    else
        p2m_log(level, event, "lease=%u label=%s fd=%d%s%s%s", lease, label, fd, sni, extra[0] ? " " : "", extra);
}

static void on_timer(p2m_loop_t *loop, p2m_loop_timer_t *timer);
static void on_consumer(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events);
static void on_pod(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events);

/* Bytes moved on a joined tunnel: counted per label, and the idle timeout starts over. */
static void on_moved(p2m_bridge_t *b, int d, size_t n)
{
    tunnel_t *t = (tunnel_t *)((char *)b - offsetof(tunnel_t, br));
    t->t_last = p2m_loop_now(t->relay->loop);
    if (d == SIDE_CONSUMER)
        t->label->bytes_in += n;
    else
        t->label->bytes_out += n;
}

static void on_bridge_close(p2m_bridge_t *b, const char *reason)
{
    tunnel_close(tunnel_check((tunnel_t *)((char *)b - offsetof(tunnel_t, br))), reason);
}

static const p2m_bridge_ops_t bridge_ops = {
    .io = {on_consumer, on_pod},
    .name = {"consumer", "pod"},
    .read_events = EPOLLIN | EPOLLRDHUP,
    .budget = RELAY_PUMP_BUDGET,
    .on_moved = on_moved,
    .on_close = on_bridge_close,
};

tunnel_t *tunnel_new(relay_t *r, label_t *label)
{
    tunnel_t *t = relay_xcalloc(1, sizeof(*t));
    t->magic = TUNNEL_MAGIC;
    t->relay = r;
    t->label = label;
    label->refs++;
    p2m_bridge_init(&t->br, r->loop, r->pipes, &bridge_ops);
    p2m_loop_timer_init(&t->timer, on_timer);
    t->t_start = p2m_loop_now(r->loop);
    t->all_next = r->tunnels;
    if (r->tunnels != NULL)
        r->tunnels->all_prev = t;
    r->tunnels = t;
    r->ntunnels++;
    return t;
}

int tunnel_attach(tunnel_t *t, int side, int fd, int joining)
{
    char err[P2M_ERR_LEN];
    /* Before the join only a hang-up matters; joining, the interest tunnel_join() will want; a
     * consumer waiting for its first bytes, EPOLLIN | EPOLLRDHUP (see on_first). */
    uint32_t events = joining ? EPOLLIN | EPOLLRDHUP : EPOLLRDHUP;
    if (p2m_loop_add(t->relay->loop, &t->br.side[side], fd, events, side == SIDE_CONSUMER ? on_consumer : on_pod, err) != 0) {
        tunnel_log(P2M_LOG_ERROR, t, "tunnel_attach_failed", "side=%s error=\"%s\"", side == SIDE_CONSUMER ? "consumer" : "pod",
                   err);
        return -1;
    }
    t->br.fd[side] = fd;
    return 0;
}

int tunnel_attach_upstream(tunnel_t *t, int fd)
{
    char err[P2M_ERR_LEN];
    if (p2m_loop_add(t->relay->loop, &t->br.side[SIDE_POD], fd, EPOLLOUT, on_pod, err) != 0) {
        tunnel_log(P2M_LOG_ERROR, t, "tunnel_attach_failed", "side=registrar error=\"%s\"", err);
        return -1;
    }
    t->br.fd[SIDE_POD] = fd;
    return 0;
}

int tunnel_take_side(tunnel_t *t, int s, tunnel_t *from)
{
    char err[P2M_ERR_LEN];
    if (p2m_loop_move(t->relay->loop, &from->br.side[s], &t->br.side[s], EPOLLIN | EPOLLRDHUP,
                      s == SIDE_CONSUMER ? on_consumer : on_pod, err) != 0) {
        tunnel_log(P2M_LOG_ERROR, t, "tunnel_attach_failed", "side=%s error=\"%s\"", s == SIDE_CONSUMER ? "consumer" : "pod", err);
        return -1;
    }
    t->br.fd[s] = from->br.fd[s];
    from->br.fd[s] = -1;
    return 0;
}

static void reap_tunnel(p2m_loop_reap_t *rp)
{
    tunnel_t *t = (tunnel_t *)((char *)rp - offsetof(tunnel_t, reap));
    relay_t *r = t->relay;
    label_put(r, t->label);
    t->magic = 0;
    free(t);
}

void tunnel_close(tunnel_t *t, const char *reason)
{
    relay_t *r = t->relay;
    if (t->state == TUNNEL_CLOSED)
        return;
    tunnel_state_t was = (tunnel_state_t)t->state;
    int counted = was == TUNNEL_IDLE && t->queued; /* announced idle: the count comes down */
    sni_forget(t);
    match_unlink(r, t);
    if (t->pre != NULL) {
        lease_t *l = t->pre;
        t->pre = NULL;
        ports_pre_release(r, l, counted ? -1 : 0);
    }

    uint64_t now = p2m_loop_now(r->loop);
    if (was == TUNNEL_JOINED)
        tunnel_log(P2M_LOG_INFO, t, "tunnel_close", "reason=%s bytes_in=%llu bytes_out=%llu ms=%llu", reason,
                   (unsigned long long)t->br.dir[0].bytes, (unsigned long long)t->br.dir[1].bytes,
                   (unsigned long long)(now - t->t_join));
    else if (was != TUNNEL_IDLE || strcmp(reason, "joined") != 0) /* an idle half taken by a join goes quietly */
        tunnel_log(P2M_LOG_INFO, t, was == TUNNEL_IDLE ? "preconn_close" : "consumer_close", "reason=%s ms=%llu", reason,
                   (unsigned long long)(now - t->t_start));

    t->state = TUNNEL_CLOSED;
    p2m_loop_timer_stop(r->loop, &t->timer);
    p2m_bridge_close(&t->br);
    if (t->qport != 0)
        ports_consumer_closed(r, t->qport, t->qgen);
    if (t->limited)
        limits_release(r->limits, &t->caddr);
    t->limited = 0;
    if (was == TUNNEL_JOINED) {
        r->njoined--;
        t->label->njoined--;
    }

    if (t->all_prev != NULL)
        t->all_prev->all_next = t->all_next;
    else
        r->tunnels = t->all_next;
    if (t->all_next != NULL)
        t->all_next->all_prev = t->all_prev;
    r->ntunnels--;
    t->magic = TUNNEL_DEAD;
    p2m_loop_defer(r->loop, &t->reap, reap_tunnel);
}

void tunnel_first(tunnel_t *t)
{
    relay_t *r = t->relay;
    /* Bytes that came with the connection are reported by the next epoll_wait (the side watches
     * EPOLLIN): asking the kernel now would cost a syscall per connection for the rare case. */
    p2m_loop_timer_start(r->loop, &t->timer, (uint64_t)r->cfg.relay.first_byte_timeout * 1000u);
}

/* A silent consumer became readable: its first bytes, or its end. */
static void on_first(tunnel_t *t, uint32_t events)
{
    int pending = 0;
    /* Readable without a hang-up or an error (the interest has EPOLLRDHUP): bytes, known without
     * asking the kernel how many. */
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) == EPOLLIN ||
        (ioctl(t->br.fd[SIDE_CONSUMER], FIONREAD, &pending) == 0 && pending > 0)) {
        p2m_loop_timer_stop(t->relay->loop, &t->timer);
        match_consumer_ready(t->relay, t);
        return;
    }
    tunnel_close(t, (events & EPOLLERR) ? "consumer_error" : "consumer_closed");
}

void tunnel_wait(tunnel_t *t)
{
    relay_t *r = t->relay;
    p2m_loop_timer_start(r->loop, &t->timer, (uint64_t)r->cfg.relay.wait_timeout * 1000u);
    tunnel_log(P2M_LOG_INFO, t, "consumer_wait", "waiting=%u", t->label->nwait);
}

/* --- trial ------------------------------------------------------------------------------------ */

/* One buffer per process (the relay's workers are processes, each with one loop). */
static char trial_buf[RELAY_TRIAL_BYTES];

static void trial_join(tunnel_t *t)
{
    tunnel_join(t);
    tunnel_pump_now(t, SIDE_CONSUMER);
}

/* The pod has taken the copied bytes: they leave the consumer's socket, counted as if the bridge
 * had moved them, and the bridge starts with whatever either side has sent since. On TCP,
 * MSG_TRUNC drops them in the kernel (tcp(7)) instead of copying them out once more. */
static void trial_commit(tunnel_t *t)
{
    relay_t *r = t->relay;
    uint32_t left = t->trial_sent;
    while (left > 0) {
        ssize_t n = recv(t->br.fd[SIDE_CONSUMER], NULL, left, MSG_DONTWAIT | MSG_TRUNC);
        if (n <= 0) { /* peeked, so they were there: only a reset takes them */
            tunnel_close(t, "consumer_error");
            return;
        }
        left -= (uint32_t)n;
    }
    t->br.dir[SIDE_CONSUMER].bytes += t->trial_sent;
    t->label->bytes_in += t->trial_sent;
    t->trial_sent = 0;
    p2m_loop_timer_stop(r->loop, &t->timer);
    tunnel_join(t);
    tunnel_pump_now(t, SIDE_POD);
    tunnel_pump_now(t, SIDE_CONSUMER);
}

/* The pod reset the pre-connection before answering: it gave it back without reading a byte. The
 * consumer goes back in line as if it had just sent its first bytes. */
static void trial_retry(tunnel_t *t, const char *why)
{
    relay_t *r = t->relay;
    p2m_loop_timer_stop(r->loop, &t->timer);
    tunnel_log(P2M_LOG_INFO, t, "tunnel_retry", "reason=%s sent=%u retries=%u", why, (unsigned)t->trial_sent,
               (unsigned)t->retries + 1u);
    p2m_loop_close(r->loop, &t->br.side[SIDE_POD]);
    t->br.fd[SIDE_POD] = -1;
    t->pport = 0;
    t->trial_sent = 0;
    if (++t->retries > RELAY_TRIAL_RETRIES) {
        tunnel_close(t, "pod_reset");
        return;
    }
    t->state = TUNNEL_FIRST;
    p2m_loop_set_events(r->loop, &t->br.side[SIDE_CONSUMER], EPOLLIN | EPOLLRDHUP);
    match_consumer_ready(r, t);
}

void tunnel_trial(tunnel_t *t)
{
    relay_t *r = t->relay;
    int cfd = t->br.fd[SIDE_CONSUMER], pfd = t->br.fd[SIDE_POD];
    ssize_t n = recv(cfd, trial_buf, sizeof(trial_buf), MSG_PEEK | MSG_DONTWAIT);
    if (n <= 0) { /* an end of stream or an error: nothing to replay, the bridge says what happened */
        trial_join(t);
        return;
    }
    ssize_t sent = send(pfd, trial_buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0 && (errno == EPIPE || errno == ECONNRESET)) {
        trial_retry(t, errno == EPIPE ? "pod_closed" : "pod_reset");
        return;
    }
    if (sent <= 0) { /* a fresh socket that takes nothing: no trial */
        trial_join(t);
        return;
    }
    t->trial_sent = (uint32_t)sent;
    t->state = TUNNEL_TRIAL;
    /* Edge-triggered, the consumer wakes us for bytes beyond those copied, not for them. The pod
     * side keeps EPOLLIN | EPOLLRDHUP: its first byte, end or reset. */
    if (p2m_loop_set_events(r->loop, &t->br.side[SIDE_CONSUMER], EPOLLIN | EPOLLET) != 0) {
        tunnel_close(t, "epoll");
        return;
    }
    p2m_loop_timer_start(r->loop, &t->timer, RELAY_TRIAL_MS);
}

static void on_trial(tunnel_t *t, int s, uint32_t events)
{
    if (s == SIDE_CONSUMER) {
        int pending = 0;
        /* More than was copied, or the consumer is gone: the trial ends, the bridge moves it all. */
        if ((events & (EPOLLERR | EPOLLHUP)) || ioctl(t->br.fd[SIDE_CONSUMER], FIONREAD, &pending) != 0 ||
            (unsigned)pending > t->trial_sent)
            trial_commit(t);
        return;
    }
    char b;
    ssize_t n = recv(t->br.fd[SIDE_POD], &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0) { /* its answer, or an end of stream that the bridge passes on */
        trial_commit(t);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return;
    trial_retry(t, errno == ECONNRESET ? "pod_reset" : "pod_error");
}

/* --- joined ----------------------------------------------------------------------------------- */

void tunnel_pass_on(tunnel_t *t)
{
    tunnel_join(t);
    tunnel_pump_now(t, SIDE_CONSUMER);
}

void tunnel_pump_now(tunnel_t *t, int d)
{
    if (t->state != TUNNEL_JOINED)
        return;
    p2m_bridge_pump(&t->br, d);
}

/* Before the join: a hang-up ends the half that waits. A consumer that half-closed after sending
 * its request still waits (its bytes are in the kernel); it is simply no longer watched. */
static void on_half(tunnel_t *t, int s, uint32_t events)
{
    if (t->state == TUNNEL_IDLE) {
        /* A reset is how a pod gives an idle pre-connection back (PROTOCOL 3.5): closed, as a FIN. */
        int e = 0;
        socklen_t len = sizeof(e);
        if ((events & EPOLLERR) && getsockopt(t->br.fd[s], SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e == ECONNRESET)
            events &= ~(uint32_t)EPOLLERR;
        tunnel_close(t, (events & EPOLLERR) ? "pod_error" : "pod_closed");
        return;
    }
    int pending = 0;
    if (!(events & (EPOLLERR | EPOLLHUP)) && ioctl(t->br.fd[s], FIONREAD, &pending) == 0 && pending > 0) {
        p2m_loop_set_events(t->relay->loop, &t->br.side[s], 0);
        return;
    }
    tunnel_close(t, (events & EPOLLERR) ? "consumer_error" : "consumer_closed");
}

static void on_event(tunnel_t *t, int s, uint32_t events)
{
    tunnel_check(t);
    if (t->state == TUNNEL_JOINED)
        p2m_bridge_event(&t->br, s, events);
    else if (t->state == TUNNEL_IDLE || t->state == TUNNEL_WAIT)
        on_half(t, s, events);
    else if (t->state == TUNNEL_FIRST)
        on_first(t, events);
    else if (t->state == TUNNEL_SNI && s == SIDE_CONSUMER)
        sni_on_consumer(t, events);
    else if (t->state == TUNNEL_UPSTREAM)
        sni_on_upstream(t, s, events);
    else if (t->state == TUNNEL_TRIAL)
        on_trial(t, s, events);
}

static void on_consumer(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    on_event((tunnel_t *)((char *)h - offsetof(tunnel_t, br.side[SIDE_CONSUMER])), SIDE_CONSUMER, events);
}

static void on_pod(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    on_event((tunnel_t *)((char *)h - offsetof(tunnel_t, br.side[SIDE_POD])), SIDE_POD, events);
}

void tunnel_join(tunnel_t *t)
{
    relay_t *r = t->relay;
    uint64_t now = p2m_loop_now(r->loop);
    /* Joined from an idle pre-connection (how long it sat idle) or a waiting consumer (how long
     * the consumer waited). */
    const char *age = t->state == TUNNEL_IDLE ? "idle_ms" : "waited_ms";
    uint64_t ms = now - t->t_start;
    t->state = TUNNEL_JOINED;
    t->t_join = t->t_last = now;
    t->label->conns++;
    t->label->njoined++;
    r->njoined++;
    p2m_loop_timer_start(r->loop, &t->timer, (uint64_t)r->cfg.relay.idle_timeout * 1000u);
    tunnel_log(P2M_LOG_INFO, t, "tunnel_join", "%s=%llu", age, (unsigned long long)ms);
    p2m_bridge_start(&t->br);
    p2m_bridge_update(&t->br); /* sets the interest; an epoll refusal closes */
}

/* Reads and drops what a consumer sent and no pod will answer, at most WAIT_DRAIN_MAX bytes:
 * closing a socket with unread bytes sends a reset, and the consumer should see an orderly end
 * of stream instead. */
#define WAIT_DRAIN_MAX (64 * 1024)
static void drop_unread(int fd)
{
    char buf[4096];
    size_t total = 0;
    ssize_t n;
    while (total < WAIT_DRAIN_MAX && (n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        total += (size_t)n;
}

static void on_timer(p2m_loop_t *loop, p2m_loop_timer_t *timer)
{
    tunnel_t *t = tunnel_check((tunnel_t *)((char *)timer - offsetof(tunnel_t, timer)));
    if (t->state == TUNNEL_WAIT) {
        /* No pre-connection came in relay.wait_timeout: counted per label (PROTOCOL 3.6). */
        t->label->wait_timeouts++;
        drop_unread(t->br.fd[SIDE_CONSUMER]);
        tunnel_log(P2M_LOG_WARN, t, "consumer_wait_timeout", "waited_ms=%llu waiting=%u",
                   (unsigned long long)(p2m_loop_now(loop) - t->t_start), t->label->nwait);
        tunnel_close(t, "wait_timeout");
        return;
    }
    if (t->state == TUNNEL_FIRST || t->state == TUNNEL_SNI) {
        tunnel_close(t, "first_byte_timeout");
        return;
    }
    if (t->state == TUNNEL_UPSTREAM) {
        tunnel_close(t, "registrar_timeout");
        return;
    }
    if (t->state == TUNNEL_TRIAL) { /* no reset came: the pod has the bytes */
        trial_commit(t);
        return;
    }
    if (t->state != TUNNEL_JOINED)
        return;
    uint64_t limit = (uint64_t)t->relay->cfg.relay.idle_timeout * 1000u, now = p2m_loop_now(loop);
    /* Bytes do not re-arm the timer (that would cost a heap update per event): check here. */
    if (now - t->t_last >= limit)
        tunnel_close(t, "idle_timeout");
    else
        p2m_loop_timer_start(loop, timer, limit - (now - t->t_last));
}
