/* --direct-lan: the pod's own listener in its network (docs/PROTOCOL.md 3.10), and --source.
 *
 * A connection accepted on the listener is served exactly as a pre-connection that comes alive:
 * its socket goes to forward_direct(), the entry forward_start() shares, so that with
 * --tls-terminate the consumer gets TLS with the pod's certificate (the one on the relay path:
 * pod->tls_ctx) and otherwise a connection of its own to --forward, spliced. Nothing here touches
 * the relay: the bytes of a direct connection count in the pod's stats, never in the relay's.
 *
 * Direct connections are tunnels (pod->ntunnels) and share the pod's descriptor budget with the
 * pool: one is accepted only while tunnels + idle + connecting pre-connections stay below
 * max_tunnels, the bound pool_refill() keeps; beyond it, or while the pod stops, the connection is
 * accepted and closed at once (a listener that left it queued would wake the loop again and
 * again). A full descriptor table pauses the listener for DIRECT_PAUSE_MS instead. */
#include "pod.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "p2m/err.h"

#define DIRECT_MAGIC 0x44495243u /* "DIRC" */
#define DIRECT_BACKLOG 512
#define DIRECT_ACCEPT_BATCH 64 /* connections accepted per wake-up: the loop's other work goes on */
#define DIRECT_PAUSE_MS 1000   /* out of descriptors: accept nothing for this long */

struct pod_direct {
    uint32_t magic;
    pod_t *pod;
    p2m_loop_handler_t h;   /* the listener */
    p2m_loop_timer_t pause; /* armed while the listener waits for descriptors */
    char addr[P2M_HOST_MAX + 16];
    int refusing; /* a refusal logged: the next one is not, until one is accepted again */
};

int pod_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *len = sizeof(*v6);
        return 0;
    }
    return -1;
}

int pod_source_bind(const pod_t *pod, int fd, int family, char *err)
{
    if (pod->args->source[0] == '\0')
        return 0;
    if (pod->src_addr.ss_family != family)
        return p2m_err(err, "--source %s is IPv%c but the peer is IPv%c", pod->args->source,
                       pod->src_addr.ss_family == AF_INET ? '4' : '6', family == AF_INET ? '4' : '6');
    /* The port is chosen at connect(), not here: binding first must not use up the ports. */
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&pod->src_addr, pod->src_len) != 0)
        return p2m_err(err, "bind --source %s: %s", pod->args->source, strerror(errno));
    return 0;
}

static pod_direct_t *direct_check(pod_direct_t *d)
{
    if (d->magic != DIRECT_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "direct_bad_magic", "ptr=%p magic=0x%08x", (void *)d, (unsigned)d->magic);
        abort();
    }
    return d;
}

/* The peer as ADDR:PORT, for the log. */
static void peer_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        port = ntohs(v4->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        port = ntohs(v6->sin6_port);
    }
    p2m_hostport_format(host, port, out, cap);
}

/* Never called: the handler only carries the socket to forward_direct(), which moves it. */
static void on_handed(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    (void)h;
    (void)events;
}

/* One accepted connection: handed to forward.c, or refused with a close. */
static void serve(pod_direct_t *d, int fd, const char *peer)
{
    pod_t *pod = d->pod;
    char err[P2M_ERR_LEN];
    const char *refuse = NULL;
    if (pod->stopping)
        refuse = "stopping";
    else if (pod->ntunnels + pod->nidle + pod->nconnecting >= pod->max_tunnels)
        refuse = "limit";
    if (refuse != NULL) {
        if (!d->refusing)
            p2m_log(P2M_LOG_WARN, "direct_refused", "label=%s listen=%s peer=%s reason=%s tunnels=%u max=%u", pod->args->label,
                    d->addr, peer, refuse, pod->ntunnels, pod->max_tunnels);
        d->refusing = 1;
        close(fd);
        return;
    }
    d->refusing = 0;
    pool_sockopts(fd);
    p2m_loop_handler_t h;
    p2m_loop_handler_init(&h);
    if (p2m_loop_add(pod->loop, &h, fd, 0, on_handed, err) != 0) {
        p2m_log(P2M_LOG_ERROR, "direct_failed", "label=%s listen=%s peer=%s error=\"%s\"", pod->args->label, d->addr, peer, err);
        close(fd);
        return;
    }
    p2m_log(P2M_LOG_INFO, "direct_accept", "label=%s listen=%s peer=%s fd=%d tls=%s", pod->args->label, d->addr, peer, fd,
            pod->args->tls_terminate ? "yes" : "no");
    forward_direct(pod, &h);
}

static void on_accept(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)events;
    pod_direct_t *d = direct_check((pod_direct_t *)((char *)h - offsetof(pod_direct_t, h)));
    for (int i = 0; i < DIRECT_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char peer[P2M_HOST_MAX + 16];
        int fd = accept4(h->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The connection stays queued: accepting again at once would fail again. */
                p2m_log(P2M_LOG_WARN, "direct_refused", "label=%s listen=%s peer=- reason=descriptors error=\"%s\" pause_ms=%d",
                        d->pod->args->label, d->addr, strerror(errno), DIRECT_PAUSE_MS);
                p2m_loop_set_events(loop, h, 0);
                p2m_loop_timer_start(loop, &d->pause, DIRECT_PAUSE_MS);
            }
            return; /* EAGAIN: all taken */
        }
        peer_text(&ss, peer, sizeof(peer));
        serve(d, fd, peer);
    }
}

static void on_pause(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    pod_direct_t *d = direct_check((pod_direct_t *)((char *)t - offsetof(pod_direct_t, pause)));
    p2m_loop_set_events(loop, &d->h, EPOLLIN);
}

int direct_start(pod_t *pod, char *err)
{
    const p2m_hostport_t *lan = &pod->args->direct_lan;
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, fd = -1;
    if (lan->host[0] == '\0')
        return 0;
    pod_direct_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return p2m_err(err, "out of memory");
    d->magic = DIRECT_MAGIC;
    d->pod = pod;
    p2m_loop_handler_init(&d->h);
    p2m_loop_timer_init(&d->pause, on_pause);
    p2m_hostport_format(lan->host, lan->port, d->addr, sizeof(d->addr));
    pod->direct = d;
    if (pod_sockaddr(lan->host, lan->port, &ss, &len) != 0)
        return p2m_err(err, "--direct-lan %s: not an address literal", d->addr); /* provision.c checked it */
    if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        return p2m_err(err, "--direct-lan %s: socket: %s", d->addr, strerror(errno));
    /* SO_REUSEADDR: a restarted pod binds again while the last one's connections sit in TIME-WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, DIRECT_BACKLOG) != 0) {
        p2m_err(err, "--direct-lan %s: cannot listen: %s%s", d->addr, strerror(errno),
                errno == EADDRNOTAVAIL ? " (not an address of this machine)" : "");
        close(fd);
        return -1;
    }
    if (p2m_loop_add(pod->loop, &d->h, fd, EPOLLIN, on_accept, err) != 0) {
        close(fd);
        return -1;
    }
    p2m_log(P2M_LOG_INFO, "direct_listening", "label=%s listen=%s tls=%s forward=%s", pod->args->label, d->addr,
            pod->args->tls_terminate ? "yes" : "no", pod->fwd_str);
    return 0;
}

void direct_close(pod_t *pod)
{
    pod_direct_t *d = pod->direct;
    if (d == NULL || d->h.fd < 0)
        return;
    direct_check(d);
    p2m_loop_timer_stop(pod->loop, &d->pause);
    p2m_loop_close(pod->loop, &d->h);
    p2m_log(P2M_LOG_INFO, "direct_stopped", "label=%s listen=%s", pod->args->label, d->addr);
}

void direct_free(pod_t *pod)
{
    pod_direct_t *d = pod->direct;
    if (d == NULL)
        return;
    direct_check(d);
    p2m_loop_timer_stop(pod->loop, &d->pause);
    p2m_loop_close(pod->loop, &d->h);
    d->magic = POD_DEAD;
    free(d);
    pod->direct = NULL;
}
