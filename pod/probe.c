/* Does the local service speak what --protocol says? A plain HTTP server behind the default
 * --protocol https (no --tls-terminate) otherwise fails quietly: the consumer's TLS reaches it, the
 * consumer reads "wrong version number" and the pod only sees tunnels that end.
 *
 * The probe opens a connection to --forward and says what a consumer's first bytes would: a TLS
 * ClientHello for LABEL.DOMAIN when the service is to speak TLS (--protocol https without
 * --tls-terminate), else an HTTP HEAD request (--protocol http, or https with --tls-terminate in
 * front of a plain service). It reads the first bytes of the answer and classifies them: a TLS
 * record (0x15 alert or 0x16 handshake, version 3.x), "HTTP/", anything else, or nothing. A
 * ClientHello met with silence is followed by a HEAD on a second connection (probe_finish). Only a
 * definite mismatch is a problem; no answer within PROBE_TIMEOUT_MS, a close without a word, or a
 * refusal (the pool's local_down says that), is not. It runs at start, after a tunnel that ended short or failed
 * (at most once per PROBE_MIN_GAP_MS), and every PROBE_RECHECK_MS while a problem stands, so that
 * a fixed service clears it. A problem is logged once when it appears (local_protocol) and when
 * it clears (local_protocol_ok), and shown by `status`. */
#include "pod.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "p2m/err.h"

#define PROBE_TIMEOUT_MS 3000
#define PROBE_MIN_GAP_MS 10000
#define PROBE_RECHECK_MS 60000
#define PROBE_HELLO_MAX 2048

struct pod_probe {
    pod_t *pod;
    p2m_loop_handler_t h;
    p2m_loop_timer_t timer; /* the running probe's deadline, or the next probe */
    int running;
    int want_tls; /* the service is to answer a ClientHello */
    int stage;    /* 0: the first bytes a consumer sends; 1: the other protocol's, after a silent answer */
    uint64_t last_ms;
    unsigned char out[PROBE_HELLO_MAX], head[512];
    size_t out_len, head_len, sent;
    unsigned char in[8];
    size_t got;
};

typedef enum { ANSWER_NONE, ANSWER_TLS, ANSWER_HTTP, ANSWER_OTHER } answer_t;

/* The classification of the first bytes of an answer (n of them, 0 for a close without any). */
static answer_t classify(const unsigned char *b, size_t n)
{
    if (n == 0)
        return ANSWER_NONE;
    if ((b[0] == 0x15 || b[0] == 0x16) && (n < 2 || b[1] == 0x03))
        return ANSWER_TLS;
    if (n >= 5 ? memcmp(b, "HTTP/", 5) == 0 : memcmp(b, "HTTP/", n) == 0)
        return ANSWER_HTTP;
    return ANSWER_OTHER;
}

/* A TLS ClientHello for LABEL.DOMAIN, as OpenSSL's client writes it, into p->out. Returns 0 or -1. */
static int client_hello(pod_probe_t *p)
{
    const pod_args_t *a = p->pod->args;
    char name[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 2];
    int ok = -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx != NULL ? SSL_new(ctx) : NULL;
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (ssl == NULL || rbio == NULL || wbio == NULL)
        goto Exit;
    SSL_set_bio(ssl, rbio, wbio); /* ssl owns them now */
    rbio = wbio = NULL;
    snprintf(name, sizeof(name), "%s.%s", a->label, a->domain);
    if (a->domain[0] != '\0')
        SSL_set_tlsext_host_name(ssl, name);
    SSL_set_connect_state(ssl);
    if (SSL_do_handshake(ssl) == 1) /* cannot complete: nothing answers it */
        goto Exit;
    int n = BIO_read(SSL_get_wbio(ssl), p->out, sizeof(p->out));
    if (n > 0) {
        p->out_len = (size_t)n;
        ok = 0;
    }
Exit:
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return ok;
}

static void http_head(pod_probe_t *p)
{
    const pod_args_t *a = p->pod->args;
    int n = snprintf((char *)p->head, sizeof(p->head),
                     "HEAD / HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: pipe2me-pod/%s probe\r\n"
                     "Connection: close\r\n\r\n",
                     a->label, a->domain[0] != '\0' ? "." : "", a->domain, P2M_VERSION);
    p->head_len = n > 0 && (size_t)n < sizeof(p->head) ? (size_t)n : 0;
}

static void set_problem(pod_t *pod, const char *problem)
{
    if (strcmp(pod->local_problem, problem) == 0)
        return;
    if (problem[0] != '\0')
        p2m_log(P2M_LOG_WARN, "local_protocol", "label=%s forward=%s protocol=%s problem=\"%s\"", pod->args->label, pod->fwd_str,
                p2m_proto_name(pod->args->proto), problem);
    else
        p2m_log(P2M_LOG_INFO, "local_protocol_ok", "label=%s forward=%s protocol=%s", pod->args->label, pod->fwd_str,
                p2m_proto_name(pod->args->proto));
    snprintf(pod->local_problem, sizeof(pod->local_problem), "%s", problem);
}

/* The verdict on the first bytes of an answer (not ANSWER_NONE: a close without a word proves nothing). */
static void verdict(pod_probe_t *p, answer_t ans)
{
    pod_t *pod = p->pod;
    const pod_args_t *a = pod->args;
    char problem[sizeof(pod->local_problem)] = "";
    if (ans == ANSWER_OTHER && (!p->want_tls || p->stage != 0))
        return; /* not what either protocol says: no verdict */
    if (p->want_tls) {
        if (ans == ANSWER_HTTP)
            snprintf(problem, sizeof(problem), "%s answers plain HTTP, not TLS: add --tls-terminate or --protocol http",
                     pod->fwd_str);
        else if (ans == ANSWER_OTHER)
            snprintf(problem, sizeof(problem),
                     "%s does not answer a TLS ClientHello with TLS: check --forward, or use --protocol tcp", pod->fwd_str);
    } else if (ans == ANSWER_TLS) {
        snprintf(problem, sizeof(problem), "%s answers TLS, not plain HTTP: %s", pod->fwd_str,
                 a->tls_terminate ? "drop --tls-terminate (the service serves TLS itself)" : "use --protocol https");
    }
    set_problem(pod, problem);
}

static void probe_end(pod_probe_t *p, uint64_t next_ms)
{
    if (p->h.fd >= 0)
        p2m_loop_close(p->pod->loop, &p->h);
    p->running = 0;
    p2m_loop_timer_stop(p->pod->loop, &p->timer);
    if (next_ms > 0)
        p2m_loop_timer_start(p->pod->loop, &p->timer, next_ms);
}

static int probe_start(pod_probe_t *p);

static void probe_finish(pod_probe_t *p, int decided, answer_t ans)
{
    if (decided && ans != ANSWER_NONE) {
        verdict(p, ans);
    } else if (p->stage == 0 && p->got == 0) {
        /* Silence (or a close) after the declared protocol's first bytes: after a ClientHello, a
         * plain HTTP server that waits for the end of the headers, or a TLS server that drops what
         * it does not like; after a HEAD, a TLS server (openssl s_server closes without a word). The
         * other protocol's first bytes tell them apart (a TLS server that answers plain HTTP with
         * HTTP, as some do on their TLS port, has already answered the ClientHello with TLS). */
        probe_end(p, 0);
        p->stage = 1;
        if (probe_start(p) == 0)
            return;
    }
    p->stage = 0;
    probe_end(p, p->pod->local_problem[0] != '\0' ? PROBE_RECHECK_MS : 0);
}

static void on_io(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    pod_probe_t *p = (pod_probe_t *)((char *)h - offsetof(pod_probe_t, h));
    if (events & EPOLLOUT) {
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            probe_finish(p, 0, ANSWER_NONE); /* refused: the pool's local_down tells */
            return;
        }
        int hello = (p->stage == 0) == p->want_tls; /* this stage sends the ClientHello */
        const unsigned char *out = hello ? p->out : p->head;
        size_t out_len = hello ? p->out_len : p->head_len;
        while (p->sent < out_len) {
            ssize_t n = send(h->fd, out + p->sent, out_len - p->sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                return;
            if (n < 0) {
                probe_finish(p, 0, ANSWER_NONE);
                return;
            }
            p->sent += (size_t)n;
        }
        p2m_loop_set_events(p->pod->loop, h, EPOLLIN);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t n = recv(h->fd, p->in + p->got, sizeof(p->in) - p->got, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n < 0) /* reset: a service that drops what it cannot read */
            probe_finish(p, 1, classify(p->in, p->got));
        else if (n == 0 || (p->got += (size_t)n) >= 5 || classify(p->in, p->got) == ANSWER_TLS)
            probe_finish(p, 1, classify(p->in, p->got));
    }
}

static void on_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    pod_probe_t *p = (pod_probe_t *)((char *)t - offsetof(pod_probe_t, timer));
    if (p->running) /* no answer in time: a slow service is not a wrong one */
        probe_finish(p, p->got > 0, classify(p->in, p->got));
    else
        probe_kick(p->pod, 1);
}

int probe_new(pod_t *pod, char *err)
{
    if (pod->args->proto == P2M_PROTO_TCP)
        return 0;
    pod_probe_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return p2m_err(err, "out of memory");
    p->pod = pod;
    p2m_loop_handler_init(&p->h);
    p2m_loop_timer_init(&p->timer, on_timer);
    p->want_tls = pod->args->proto == P2M_PROTO_HTTPS && !pod->args->tls_terminate;
    http_head(p);
    if (p->head_len == 0 || client_hello(p) != 0) {
        free(p);
        return p2m_err(err, "cannot build the local service's probe");
    }
    pod->probe = p;
    return 0;
}

void probe_kick(pod_t *pod, int force)
{
    pod_probe_t *p = pod->probe;
    if (p == NULL || p->running || pod->stopping)
        return;
    uint64_t now = p2m_loop_now(pod->loop);
    if (!force && p->last_ms != 0 && now - p->last_ms < PROBE_MIN_GAP_MS)
        return;
    p->last_ms = now;
    p->stage = 0;
    probe_start(p);
}

/* Connects for the probe's current stage. Returns 0, or -1 when no connection could start. */
static int probe_start(pod_probe_t *p)
{
    pod_t *pod = p->pod;
    char err[P2M_ERR_LEN];
    p2m_loop_timer_stop(pod->loop, &p->timer);
    int fd = socket(pod->fwd_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&pod->fwd_addr, pod->fwd_len) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    if (p2m_loop_add(pod->loop, &p->h, fd, EPOLLOUT, on_io, err) != 0) {
        close(fd);
        return -1;
    }
    p->running = 1;
    p->sent = p->got = 0;
    p2m_loop_timer_start(pod->loop, &p->timer, PROBE_TIMEOUT_MS);
    return 0;
}

void probe_free(pod_t *pod)
{
    pod_probe_t *p = pod->probe;
    if (p == NULL)
        return;
    probe_end(p, 0);
    free(p);
    pod->probe = NULL;
}
