/* pipe2me-pod test: two services on 127.0.0.1 to check a tunnel with, as pipe2me's seed tool had.
 *
 *   --forward-http PORT  HTTP/1.1: every request is answered 200 with a text/plain body that is the
 *                        request itself (request line, headers, then the body if any), keep-alive
 *                        and pipelining honoured. Heads are capped at ECHO_HEAD_MAX, bodies at
 *                        ECHO_BODY_MAX (Content-Length only; chunked bodies get 411).
 *   --forward-tcp PORT   TCP echo: bytes back as they came, through a pipe with splice(2) (the
 *                        socket is both source and destination), end of stream passed back. */
#include "pod.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo_http.h"
#include "p2m/err.h"

#define ECHO_MAGIC 0x4543484fu /* "ECHO" */
#define ECHO_IN_MAX (ECHO_HEAD_MAX + ECHO_BODY_MAX)
#define ECHO_ACCEPT_BATCH 64

typedef enum { ECHO_HTTP = 1, ECHO_TCP } echo_kind_t;

typedef struct echo_conn echo_conn_t;

typedef struct {
    p2m_loop_handler_t h;
    echo_kind_t kind;
    uint16_t port;
    echo_t *e;
} echo_listener_t;

struct echo {
    p2m_loop_t *loop;
    p2m_pipe_pool_t *pipes;
    echo_listener_t listener[ECHO_PORTS_MAX];
    size_t nlisteners;
    echo_conn_t *conns;
    unsigned long long served;
};

struct echo_conn {
    uint32_t magic;
    echo_t *e;
    echo_kind_t kind;
    p2m_loop_handler_t h;
    /* HTTP */
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_off, out_cap;
    int close_after, peer_eof;
    /* TCP */
    p2m_splice_dir_t dir;
    echo_conn_t *next, *prev;
    p2m_loop_reap_t reap;
};

static void reap_conn(p2m_loop_reap_t *r)
{
    echo_conn_t *c = (echo_conn_t *)((char *)r - offsetof(echo_conn_t, reap));
    free(c->in);
    free(c->out);
    free(c);
}

static void conn_close(echo_conn_t *c)
{
    echo_t *e = c->e;
    if (c->magic != ECHO_MAGIC)
        return;
    p2m_splice_dir_release(&c->dir, e->pipes);
    p2m_loop_close(e->loop, &c->h);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        e->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->magic = POD_DEAD;
    p2m_loop_defer(e->loop, &c->reap, reap_conn);
}

/* --- TCP echo ----------------------------------------------------------------------------------- */

static void tcp_arm(echo_conn_t *c);

static void on_tcp_pipe(p2m_pipe_waiter_t *w)
{
    echo_conn_t *c = (echo_conn_t *)((char *)w - offsetof(echo_conn_t, dir.waiter));
    if (c->magic != ECHO_MAGIC)
        return;
    c->dir.flags &= ~P2M_SPLICE_NO_PIPE;
    tcp_arm(c);
}

static void tcp_arm(echo_conn_t *c)
{
    unsigned f = c->dir.flags;
    uint32_t ev = 0;
    if (!(f & (P2M_SPLICE_EOF | P2M_SPLICE_DST_FULL | P2M_SPLICE_NO_PIPE)))
        ev |= EPOLLIN;
    if (f & P2M_SPLICE_DST_FULL)
        ev |= EPOLLOUT;
    p2m_loop_set_events(c->e->loop, &c->h, ev);
}

static void on_tcp(echo_conn_t *c, uint32_t events)
{
    if (events & EPOLLERR) {
        conn_close(c);
        return;
    }
    /* A hang-up reads as end of stream or fails the write back: the pump finds out either way. */
    unsigned f = p2m_splice_pump(&c->dir, c->e->pipes, c->h.fd, c->h.fd, POD_PUMP_BUDGET, NULL);
    if (f & (P2M_SPLICE_ERROR | P2M_SPLICE_SHUT)) {
        conn_close(c);
        return;
    }
    if (f & P2M_SPLICE_NO_PIPE)
        p2m_pipe_wait(c->e->pipes, &c->dir.waiter, on_tcp_pipe);
    tcp_arm(c);
}

/* --- HTTP echo ---------------------------------------------------------------------------------- */

static void out_append(echo_conn_t *c, const char *s, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (p == NULL) {
            p2m_log(P2M_LOG_ERROR, "oom", "what=echo_out");
            abort();
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

static void respond(echo_conn_t *c, int status, const char *reason, const char *body, size_t body_len, const char *head,
                    size_t head_len, int send_body)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nServer: pipe2me-pod-test\r\n"
                     "Connection: %s\r\n\r\n",
                     status, reason, head_len + body_len, c->close_after ? "close" : "keep-alive");
    out_append(c, hdr, (size_t)n);
    if (send_body) {
        out_append(c, head, head_len);
        out_append(c, body, body_len);
    }
}

/* Answers every complete request in c->in. Returns 0, or -1 when the connection must close after
 * what is queued. */
static int http_process(echo_conn_t *c)
{
    for (;;) {
        echo_http_req_t r;
        int status = echo_http_parse(c->in, c->in_len, &r);
        if (status == 0)
            return 0;
        if (status != 200) {
            c->close_after = 1;
            respond(c, status, echo_http_reason(status), "", 0, "", 0, 1);
            return -1;
        }
        c->close_after = r.close;
        respond(c, 200, "OK", c->in + r.head_len, r.body_len, c->in, r.head_len, !r.head);
        c->e->served++;
        size_t used = r.head_len + r.body_len;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        if (c->close_after)
            return -1;
    }
}

static void http_arm(echo_conn_t *c)
{
    uint32_t ev = 0;
    if (c->out_off < c->out_len)
        ev |= EPOLLOUT; /* answer first: no more reading while output waits (back-pressure) */
    else if (!c->peer_eof && !c->close_after)
        ev |= EPOLLIN;
    p2m_loop_set_events(c->e->loop, &c->h, ev);
}

static void on_http(echo_conn_t *c, uint32_t events)
{
    int fd = c->h.fd;
    if (events & EPOLLERR) {
        conn_close(c);
        return;
    }
    if ((events & (EPOLLIN | EPOLLHUP)) && !c->peer_eof && !c->close_after && c->out_off == c->out_len) {
        ssize_t n = recv(fd, c->in + c->in_len, ECHO_IN_MAX - c->in_len, MSG_DONTWAIT);
        if (n > 0) {
            c->in_len += (size_t)n;
            http_process(c);
        } else if (n == 0) {
            c->peer_eof = 1;
        } else if (errno != EAGAIN && errno != EINTR) {
            conn_close(c);
            return;
        }
    }
    while (c->out_off < c->out_len) {
        ssize_t n = send(fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        conn_close(c);
        return;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->close_after || c->peer_eof) {
            shutdown(fd, SHUT_WR);
            conn_close(c);
            return;
        }
        if (c->in_len > 0 && http_process(c) == 0 && c->out_len == 0 && c->in_len >= ECHO_IN_MAX) {
            conn_close(c);
            return;
        }
        if (c->out_len > 0) {
            on_http(c, 0); /* pipelined requests answered: write them now */
            return;
        }
    }
    http_arm(c);
}

/* --- accepting ---------------------------------------------------------------------------------- */

static void on_conn(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    echo_conn_t *c = (echo_conn_t *)((char *)h - offsetof(echo_conn_t, h));
    if (c->magic != ECHO_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "echo_bad_magic", "ptr=%p", (void *)c);
        abort();
    }
    if (c->kind == ECHO_HTTP)
        on_http(c, events);
    else
        on_tcp(c, events);
}

static void on_accept_kind(p2m_loop_t *loop, echo_t *e, p2m_loop_handler_t *h, echo_kind_t kind)
{
    char err[P2M_ERR_LEN];
    for (int i = 0; i < ECHO_ACCEPT_BATCH; i++) {
        int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                p2m_log(P2M_LOG_WARN, "echo_accept_failed", "error=\"%s\"", strerror(errno));
            return;
        }
        echo_conn_t *c = calloc(1, sizeof(*c));
        if (c == NULL || (kind == ECHO_HTTP && (c->in = malloc(ECHO_IN_MAX)) == NULL)) {
            p2m_log(P2M_LOG_ERROR, "oom", "what=echo_conn");
            abort();
        }
        c->magic = ECHO_MAGIC;
        c->e = e;
        c->kind = kind;
        p2m_loop_handler_init(&c->h);
        p2m_splice_dir_init(&c->dir);
        if (p2m_loop_add(loop, &c->h, fd, EPOLLIN, on_conn, err) != 0) {
            p2m_log(P2M_LOG_WARN, "echo_accept_failed", "error=\"%s\"", err);
            close(fd);
            free(c->in);
            free(c);
            continue;
        }
        c->next = e->conns;
        if (e->conns != NULL)
            e->conns->prev = c;
        e->conns = c;
    }
}

static void on_accept(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)events;
    echo_listener_t *l = (echo_listener_t *)((char *)h - offsetof(echo_listener_t, h));
    on_accept_kind(loop, l->e, h, l->kind);
}

static int echo_listen(echo_t *e, echo_listener_t *l, char *err)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(l->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return p2m_err(err, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 512) != 0) {
        p2m_err(err, "127.0.0.1:%u: %s", (unsigned)l->port, strerror(errno));
        close(fd);
        return -1;
    }
    if (p2m_loop_add(e->loop, &l->h, fd, EPOLLIN, on_accept, err) != 0) {
        close(fd);
        return -1;
    }
    p2m_log(P2M_LOG_INFO, "echo_listening", "kind=%s addr=127.0.0.1:%u", l->kind == ECHO_HTTP ? "http" : "tcp", (unsigned)l->port);
    return 0;
}

echo_t *echo_start(p2m_loop_t *loop, const echo_port_t *ports, size_t n, char *err)
{
    echo_t *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    e->loop = loop;
    for (size_t i = 0; i < ECHO_PORTS_MAX; i++)
        p2m_loop_handler_init(&e->listener[i].h);
    if (n > ECHO_PORTS_MAX) {
        p2m_err(err, "more than %d echo ports", ECHO_PORTS_MAX);
        goto Fail;
    }
    if ((e->pipes = p2m_pipe_pool_new(256, POD_PIPE_SIZE, err)) == NULL)
        goto Fail;
    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (j = 0; j < e->nlisteners && e->listener[j].port != ports[i].port; j++)
            ;
        if (j < e->nlisteners) { /* two services on one port: one echo, which must be of one kind */
            if ((e->listener[j].kind == ECHO_TCP) != (ports[i].tcp != 0)) {
                p2m_err(err, "127.0.0.1:%u: both a tcp service and an http(s) one: one echo cannot serve both",
                        (unsigned)ports[i].port);
                goto Fail;
            }
            continue;
        }
        echo_listener_t *l = &e->listener[e->nlisteners];
        l->kind = ports[i].tcp ? ECHO_TCP : ECHO_HTTP;
        l->port = ports[i].port;
        l->e = e;
        if (echo_listen(e, l, err) != 0)
            goto Fail;
        e->nlisteners++;
    }
    return e;
Fail:
    echo_stop(e);
    return NULL;
}

void echo_stop(echo_t *e)
{
    if (e == NULL)
        return;
    while (e->conns != NULL)
        conn_close(e->conns);
    for (size_t i = 0; i < e->nlisteners; i++)
        p2m_loop_close(e->loop, &e->listener[i].h);
    p2m_loop_reap(e->loop);
    p2m_log(P2M_LOG_INFO, "echo_stopped", "http_requests=%llu", e->served);
    p2m_pipe_pool_free(e->pipes);
    free(e);
}

static void on_signal(p2m_loop_t *loop, int signo, void *data)
{
    (void)data;
    p2m_log(P2M_LOG_INFO, "stopping", "signal=%d", signo);
    p2m_loop_stop(loop);
}

int echo_command(const pod_args_t *a)
{
    p2m_loop_t *loop = NULL;
    echo_t *e = NULL;
    echo_port_t ports[2];
    size_t n = 0;
    char err[P2M_ERR_LEN];
    int ret = 2;
    static const int sigs[] = {SIGTERM, SIGINT};

    p2m_log_set_level(a->log_level);
    signal(SIGPIPE, SIG_IGN);
    if (a->http_port != 0)
        ports[n++] = (echo_port_t){.tcp = 0, .port = a->http_port};
    if (a->tcp_port != 0)
        ports[n++] = (echo_port_t){.tcp = 1, .port = a->tcp_port};
    if ((loop = p2m_loop_new(err)) == NULL || p2m_loop_signals(loop, sigs, 2, on_signal, NULL, err) != 0 ||
        (e = echo_start(loop, ports, n, err)) == NULL) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        goto Exit;
    }
    ret = 1;
    if (p2m_loop_run(loop) != 0) {
        P2M_LOG_ERR("loop_failed", "error=\"%s\"", strerror(errno));
        goto Exit;
    }
    ret = 0;
Exit:
    echo_stop(e);
    p2m_loop_free(loop);
    return ret;
}
