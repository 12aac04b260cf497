/* --tls-terminate: the consumer's TLS session ends at the pod (docs/PROTOCOL.md 3.5 and 4.4).
 *
 * The relay copies the consumer's bytes unchanged, so a live pre-connection carries a TLS
 * ClientHello. The tunnel (forward.c's, state TUNNEL_HANDSHAKE) gets an SSL from pod->tls_ctx as it
 * is at that moment (SSL_new takes its own reference: cert.c may swap the context meanwhile) on
 * the relay socket, non-blocking, and the handshake is driven by readiness within
 * POD_TLS_HANDSHAKE_MS. Only then is --forward connected (tunnel_connect(), shared with the splice
 * path), so that the local service never sees a failed handshake, and a local service that is down
 * costs the consumer a close_notify and a FIN: a clean close.
 *
 * The pump. Plain bytes sit in two bounded buffers of POD_TLS_BUF bytes:
 *   in   consumer -> local: filled by SSL_read (even while the local connect is in flight), emptied
 *        by send() to the local side;
 *   out  local -> consumer: filled by recv() from the local side, emptied by SSL_write.
 * A side is not read while the buffer it fills is full (back-pressure). Every event of either side
 * runs the whole pump: each step is tried until none moves a byte, so bytes OpenSSL holds already
 * decrypted (SSL_pending) are taken without waiting for the socket, and an SSL_read or SSL_write that
 * waits for the other readiness (WANT_WRITE / WANT_READ) is simply retried. An SSL_write that had
 * to wait is repeated with the same length (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER lets the bytes
 * move). The interest of each side is then set from what each TLS call waits for and from the
 * buffers. After POD_PUMP_BUDGET bytes a 0 ms timer continues, so that one busy tunnel does not
 * hold the loop.
 *
 * Half-close, both ways: the consumer's close_notify or TCP end of stream, once `in` is delivered,
 * shuts the local side for writing; the local service's end of stream, once `out` is sent, sends
 * close_notify (SSL_shutdown) and shuts the relay side for writing. The tunnel closes when both
 * directions are done, on any error, or when a side hangs up with bytes still owed to it (as the
 * splice does). A TCP end of stream without close_notify counts as an end of stream (the option
 * SSL_OP_IGNORE_UNEXPECTED_EOF keeps the session writable for the reply): the local service could
 * not tell a truncation from a plain TCP consumer's close either.
 *
 * Bytes are counted plain, in t->br.dir[0].bytes (delivered to the local side) and t->br.dir[1].bytes
 * (accepted by SSL_write), which pod->stats and forward_bytes() read as for a spliced tunnel. */
#include "pod.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "p2m/err.h"

#define ALPN_INPUT_MAX 1024 /* bytes in the comma-separated list */

/* --- the server context ----------------------------------------------------------------------- */

/* The ALPN list in wire format (length-prefixed names), kept in the context's ex_data so that it
 * is freed with the context. */
typedef struct {
    size_t len;
    unsigned char wire[];
} alpn_list_t;

static pthread_once_t alpn_once = PTHREAD_ONCE_INIT;
static int alpn_index = -1;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    free(ptr);
}

static void alpn_index_init(void)
{
    alpn_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
}

/* "h2,http/1.1" -> "\x02h2\x08http/1.1". Each name is 1..255 bytes of printable ASCII other than
 * space and comma. Returns the list (caller frees) or NULL with err. */
static alpn_list_t *alpn_parse(const char *s, char *err)
{
    size_t n = strlen(s);
    if (n == 0) {
        p2m_err(err, "ALPN list: empty");
        return NULL;
    }
    if (n > ALPN_INPUT_MAX) {
        p2m_err(err, "ALPN list: longer than %d bytes", ALPN_INPUT_MAX);
        return NULL;
    }
    alpn_list_t *ret = NULL;
    alpn_list_t *l = malloc(sizeof(*l) + n + 1); /* n + 1: every comma becomes a length byte, plus the first */
    if (l == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "what=alpn");
        abort();
    }
    l->len = 0;
    for (size_t i = 0, item = 1; i <= n; item++) {
        size_t j = i;
        while (j < n && s[j] != ',')
            j++;
        size_t len = j - i;
        if (len == 0) {
            p2m_err(err, "ALPN list: name %zu is empty", item);
            goto Exit;
        }
        if (len > 255) {
            p2m_err(err, "ALPN list: name %zu is longer than 255 bytes", item);
            goto Exit;
        }
        for (size_t k = i; k < j; k++) {
            unsigned char c = (unsigned char)s[k];
            if (c <= 0x20 || c >= 0x7f) {
                p2m_err(err, "ALPN list: name %zu has a byte that is not printable ASCII (0x%02x)", item, c);
                goto Exit;
            }
        }
        l->wire[l->len++] = (unsigned char)len;
        memcpy(l->wire + l->len, s + i, len);
        l->len += len;
        i = j + 1; /* past the comma; n + 1 ends the loop after the last name */
    }
    ret = l;
Exit:
    if (ret == NULL)
        free(l);
    return ret;
}

/* The client's first offer that is in our list; none (the handshake goes on without ALPN) when
 * nothing matches. The client's list is outside input: every length is bounded by inlen. */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned inlen,
                          void *arg)
{
    (void)ssl;
    const alpn_list_t *l = arg;
    for (unsigned i = 0; i < inlen;) {
        unsigned len = in[i];
        if (len == 0 || len > inlen - i - 1)
            break;
        for (size_t k = 0; k < l->len; k += 1 + (size_t)l->wire[k]) {
            if (l->wire[k] == len && memcmp(l->wire + k + 1, in + i + 1, len) == 0) {
                *out = in + i + 1;
                *outlen = (unsigned char)len;
                return SSL_TLSEXT_ERR_OK;
            }
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* The reason of the first error OpenSSL queued (never key material), then clears the queue. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    if (r != NULL)
        snprintf(buf, cap, "%s", r);
    else if (e != 0)
        snprintf(buf, cap, "error 0x%lx", e);
    else
        snprintf(buf, cap, "unknown error");
    ERR_clear_error();
    return buf;
}

SSL_CTX *tls_server_ctx(const char *chain_path, const char *key_path, const char *alpn, char *err)
{
    char why[160];
    SSL_CTX *ctx = NULL, *ret = NULL;
    alpn_list_t *l = NULL;

    ERR_clear_error();
    if (alpn != NULL && (l = alpn_parse(alpn, err)) == NULL)
        goto Exit;
    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        p2m_err(err, "SSL_CTX_new: %s", ssl_reason(why, sizeof(why)));
        goto Exit;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* SSL_OP_IGNORE_UNEXPECTED_EOF: see the top of this file (half-close). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 1024);
    static const unsigned char sid_ctx[] = "pipe2me-pod";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, chain_path) != 1) {
        p2m_err(err, "certificate chain %s: %s", chain_path, ssl_reason(why, sizeof(why)));
        goto Exit;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        p2m_err(err, "private key %s: %s", key_path, ssl_reason(why, sizeof(why)));
        goto Exit;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        p2m_err(err, "private key %s does not match the certificate in %s: %s", key_path, chain_path, ssl_reason(why, sizeof(why)));
        goto Exit;
    }
    if (l != NULL) {
        pthread_once(&alpn_once, alpn_index_init);
        if (alpn_index < 0 || SSL_CTX_set_ex_data(ctx, alpn_index, l) != 1) {
            p2m_err(err, "SSL_CTX_set_ex_data: %s", ssl_reason(why, sizeof(why)));
            goto Exit;
        }
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, l); /* l now lives as long as ctx */
    }
    ret = ctx;
Exit:
    if (ret == NULL) {
        if (ctx != NULL && l != NULL && alpn_index >= 0 && SSL_CTX_get_ex_data(ctx, alpn_index) == l)
            l = NULL; /* SSL_CTX_free frees it */
        SSL_CTX_free(ctx);
        free(l);
        ERR_clear_error();
    }
    return ret;
}

/* --- the tunnel ------------------------------------------------------------------------------- */

#define TLS_HANDSHAKEN 0x0001u /* the handshake is done */
#define TLS_IN_EOF 0x0002u     /* the consumer ended its stream (close_notify or TCP end of stream) */
#define TLS_IN_SHUT 0x0004u    /* ... everything was delivered and the local side shut for writing */
#define TLS_OUT_EOF 0x0008u    /* the local service ended its stream */
#define TLS_OUT_SHUT 0x0010u   /* ... everything was sent, close_notify too, and the relay side shut */
#define TLS_FATAL 0x0020u      /* OpenSSL failed: no close_notify may follow */
#define TLS_NOTIFY 0x0040u     /* the consumer's close_notify was seen */

typedef struct {
    size_t start, end; /* bytes [start, end) wait */
    unsigned char data[POD_TLS_BUF];
} tls_buf_t;

struct tls_tunnel {
    uint32_t magic;
    tunnel_t *t;
    SSL *ssl;
    unsigned flags;
    /* What the last call of each kind waits for: SSL_ERROR_WANT_READ, _WANT_WRITE, or 0 (none). */
    int hs_want, rd_want, wr_want, sd_want;
    size_t wr_len; /* an SSL_write to repeat with this many bytes of out, 0 when none is pending */
    int pumping;   /* inside tls_run(): tls_tunnel_joined() leaves the work to it */
    char why[160]; /* the reason for the close a step asked for */
    p2m_loop_timer_t hs_timer, again;
    tls_buf_t in, out;
};

static struct tls_tunnel *tls_check(struct tls_tunnel *x)
{
    if (x->magic != TLS_TUNNEL_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "tls_bad_magic", "ptr=%p magic=0x%08x", (void *)x, (unsigned)x->magic);
        abort();
    }
    return x;
}

static size_t buf_len(const tls_buf_t *b)
{
    return b->end - b->start;
}

/* Room at the end, moving the waiting bytes to the front when that makes room (also the bytes of
 * an SSL_write to repeat: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows it). */
static size_t buf_room(tls_buf_t *b)
{
    if (b->start == b->end) {
        b->start = b->end = 0;
    } else if (b->end == sizeof(b->data) && b->start > 0) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    return sizeof(b->data) - b->end;
}

/* Step results. */
enum { STEP_IDLE = 0, STEP_MOVED = 1, STEP_FAIL = -1 };

/* An SSL call failed with e (SSL_ERROR_SSL, _SYSCALL, ...): no close_notify may follow. Fills
 * x->why with `what error="REASON"`, or with the bare reason when what is NULL. */
static int ssl_failed(struct tls_tunnel *x, const char *what, int e)
{
    char r[120];
    x->flags |= TLS_FATAL;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
        snprintf(r, sizeof(r), "%s", errno != 0 ? strerror(errno) : "end of stream");
    else
        ssl_reason(r, sizeof(r));
    if (what != NULL)
        snprintf(x->why, sizeof(x->why), "%s error=\"%s\"", what, r);
    else
        snprintf(x->why, sizeof(x->why), "%s", r);
    ERR_clear_error();
    return STEP_FAIL;
}

/* The info callback: notes the consumer's close_notify, for the log (an end of stream without it
 * is otherwise the same, see the top). */
static void on_info(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_READ_ALERT) && (ret & 0xff) == SSL_AD_CLOSE_NOTIFY) {
        struct tls_tunnel *x = SSL_get_app_data(ssl);
        if (x != NULL)
            x->flags |= TLS_NOTIFY;
    }
}

/* consumer -> in: SSL_read while there is room. */
static int step_ssl_read(struct tls_tunnel *x)
{
    int moved = STEP_IDLE;
    while (!(x->flags & TLS_IN_EOF)) {
        size_t room = buf_room(&x->in);
        if (room == 0)
            return moved;
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(x->ssl, x->in.data + x->in.end, (int)room);
        if (n > 0) {
            x->in.end += (size_t)n;
            x->rd_want = 0;
            moved = STEP_MOVED;
            continue;
        }
        int e = SSL_get_error(x->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            x->rd_want = e;
            return moved;
        }
        x->rd_want = 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            x->flags |= TLS_IN_EOF;
            tunnel_log(P2M_LOG_DEBUG, x->t, "tls_eof", "from=consumer close_notify=%s", (x->flags & TLS_NOTIFY) ? "yes" : "no");
            return STEP_MOVED;
        }
        return ssl_failed(x, "tls_error", e);
    }
    return moved;
}

/* in -> local, then the half-close once the consumer's stream is all delivered. */
static int step_local_send(struct tls_tunnel *x)
{
    tunnel_t *t = x->t;
    int moved = STEP_IDLE;
    while (buf_len(&x->in) > 0) {
        ssize_t n = send(t->br.fd[TUNNEL_LOCAL], x->in.data + x->in.start, buf_len(&x->in), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            x->in.start += (size_t)n;
            t->br.dir[0].bytes += (uint64_t)n;
            moved = STEP_MOVED;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return moved;
        } else {
            snprintf(x->why, sizeof(x->why), "local_error error=\"%s\" dir=in", strerror(n < 0 ? errno : EIO));
            return STEP_FAIL;
        }
    }
    if ((x->flags & (TLS_IN_EOF | TLS_IN_SHUT)) == TLS_IN_EOF) {
        if (shutdown(t->br.fd[TUNNEL_LOCAL], SHUT_WR) != 0 && errno != ENOTCONN) {
            snprintf(x->why, sizeof(x->why), "local_error error=\"%s\" dir=in", strerror(errno));
            return STEP_FAIL;
        }
        x->flags |= TLS_IN_SHUT;
        moved = STEP_MOVED;
    }
    return moved;
}

/* local -> out: recv while there is room. */
static int step_local_recv(struct tls_tunnel *x)
{
    tunnel_t *t = x->t;
    int moved = STEP_IDLE;
    while (!(x->flags & TLS_OUT_EOF)) {
        size_t room = buf_room(&x->out);
        if (room == 0)
            return moved;
        ssize_t n = recv(t->br.fd[TUNNEL_LOCAL], x->out.data + x->out.end, room, MSG_DONTWAIT);
        if (n > 0) {
            x->out.end += (size_t)n;
            moved = STEP_MOVED;
        } else if (n == 0) {
            x->flags |= TLS_OUT_EOF;
            tunnel_log(P2M_LOG_DEBUG, t, "tls_eof", "from=local");
            return STEP_MOVED;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return moved;
        } else {
            snprintf(x->why, sizeof(x->why), "local_error error=\"%s\" dir=out", strerror(errno));
            return STEP_FAIL;
        }
    }
    return moved;
}

/* out -> consumer: SSL_write, then close_notify and the half-close once the local stream is all
 * sent. */
static int step_ssl_write(struct tls_tunnel *x)
{
    tunnel_t *t = x->t;
    int moved = STEP_IDLE;
    while (buf_len(&x->out) > 0) {
        /* A write that waited is repeated with the same length: its bytes are still the first. */
        size_t len = x->wr_len != 0 ? x->wr_len : buf_len(&x->out);
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(x->ssl, x->out.data + x->out.start, (int)len);
        if (n > 0) {
            x->out.start += (size_t)n;
            t->br.dir[1].bytes += (uint64_t)n;
            x->wr_len = 0;
            x->wr_want = 0;
            moved = STEP_MOVED;
            continue;
        }
        int e = SSL_get_error(x->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            x->wr_want = e;
            x->wr_len = len;
            return moved;
        }
        return ssl_failed(x, "tls_error", e);
    }
    if ((x->flags & (TLS_OUT_EOF | TLS_OUT_SHUT)) != TLS_OUT_EOF)
        return moved;
    ERR_clear_error();
    errno = 0;
    int r = SSL_shutdown(x->ssl); /* 0: our close_notify is out, the consumer's not seen yet; 1: both */
    if (r < 0) {
        int e = SSL_get_error(x->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            x->sd_want = e;
            return moved;
        }
        return ssl_failed(x, "tls_error", e);
    }
    x->sd_want = 0;
    if (shutdown(t->br.fd[TUNNEL_RELAY], SHUT_WR) != 0 && errno != ENOTCONN) {
        snprintf(x->why, sizeof(x->why), "relay_error error=\"%s\" dir=out", strerror(errno));
        return STEP_FAIL;
    }
    x->flags |= TLS_OUT_SHUT;
    return STEP_MOVED;
}

/* The handshake. Done: logged, and the handshake timer stopped. */
static int step_handshake(struct tls_tunnel *x)
{
    tunnel_t *t = x->t;
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(x->ssl);
    if (r != 1) {
        int e = SSL_get_error(x->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            x->hs_want = e;
            return STEP_IDLE;
        }
        if (e == SSL_ERROR_ZERO_RETURN) { /* an end of stream, with SSL_OP_IGNORE_UNEXPECTED_EOF */
            x->flags |= TLS_FATAL;
            snprintf(x->why, sizeof(x->why), "end of stream");
            ERR_clear_error();
            return STEP_FAIL;
        }
        ssl_failed(x, NULL, e);
        return STEP_FAIL;
    }
    x->flags |= TLS_HANDSHAKEN;
    x->hs_want = 0;
    p2m_loop_timer_stop(t->pod->loop, &x->hs_timer);
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(x->ssl, &alpn, &alpn_len);
    /* The ALPN name is one of ours (on_alpn_select), so it is printable. */
    tunnel_log(P2M_LOG_INFO, t, "tls_handshake", "version=%s alpn=%.*s cipher=%s resumed=%s ms=%llu", SSL_get_version(x->ssl),
               alpn_len != 0 ? (int)alpn_len : 1, alpn_len != 0 ? (const char *)alpn : "-", SSL_get_cipher_name(x->ssl),
               SSL_session_reused(x->ssl) ? "yes" : "no", (unsigned long long)(p2m_loop_now(t->pod->loop) - t->t_start));
    return STEP_MOVED;
}

static uint32_t want_events(int want)
{
    return want == SSL_ERROR_WANT_READ ? EPOLLIN : want == SSL_ERROR_WANT_WRITE ? EPOLLOUT : 0;
}

/* Sets each side's interest from what the TLS calls wait for and from the buffers. Returns 0, or
 * -1 when epoll refused. */
static int tls_arm(tunnel_t *t)
{
    struct tls_tunnel *x = t->tls;
    uint32_t ev[2] = {0, 0};
    if (!(x->flags & TLS_HANDSHAKEN)) {
        ev[TUNNEL_RELAY] |= want_events(x->hs_want);
    } else {
        if (!(x->flags & TLS_IN_EOF) && buf_room(&x->in) > 0)
            ev[TUNNEL_RELAY] |= want_events(x->rd_want);
        if (x->wr_len != 0)
            ev[TUNNEL_RELAY] |= want_events(x->wr_want);
        if ((x->flags & (TLS_OUT_EOF | TLS_OUT_SHUT)) == TLS_OUT_EOF && buf_len(&x->out) == 0)
            ev[TUNNEL_RELAY] |= want_events(x->sd_want);
    }
    if (t->state == TUNNEL_JOINED) {
        if (!(x->flags & TLS_OUT_EOF) && buf_room(&x->out) > 0)
            ev[TUNNEL_LOCAL] |= EPOLLIN;
        if (buf_len(&x->in) > 0)
            ev[TUNNEL_LOCAL] |= EPOLLOUT; /* send() would block: that is why bytes wait */
    }
    for (int s = 0; s < 2; s++) {
        if (t->br.fd[s] < 0 || (s == TUNNEL_LOCAL && t->state != TUNNEL_JOINED))
            continue;
        if (t->br.hup[s]) {
            /* EPOLLHUP is level-triggered for good: watch only while the side is read. */
            if (!(ev[s] & EPOLLIN)) {
                p2m_loop_del(t->pod->loop, &t->br.side[s]);
                continue;
            }
            ev[s] = EPOLLIN;
        }
        if (tunnel_watch(t, s, ev[s]) != 0)
            return -1;
    }
    return 0;
}

/* Runs every step until none moves a byte (or the budget is spent), then closes the tunnel when it
 * is done or broken, else sets the interest. */
static void tls_run(tunnel_t *t)
{
    struct tls_tunnel *x = t->tls;
    pod_t *pod = t->pod;
    uint64_t start = t->br.dir[0].bytes + t->br.dir[1].bytes;
    const char *close_why = NULL; /* set: Exit closes the tunnel for this reason */
    int drain_relay = 0;
    int rc;

    if (t->state == TUNNEL_CLOSED || x->pumping)
        return;
    x->pumping = 1;
    for (;;) {
        int moved = STEP_IDLE;
        if (!(x->flags & TLS_HANDSHAKEN)) {
            if ((rc = step_handshake(x)) == STEP_FAIL) {
                tunnel_log(P2M_LOG_INFO, t, "tls_failed", "reason=\"%s\" ms=%llu", x->why,
                           (unsigned long long)(p2m_loop_now(pod->loop) - t->t_start));
                close_why = "tls_failed";
                drain_relay = 1; /* the alert OpenSSL wrote goes out before the FIN */
                goto Exit;
            }
            if (rc == STEP_IDLE)
                break;
            tunnel_connect(t); /* may join (tls_tunnel_joined() only marks) or close at once */
            if (t->state == TUNNEL_CLOSED)
                goto Exit;
        }
        if ((rc = step_ssl_read(x)) == STEP_FAIL) {
            close_why = x->why;
            goto Exit;
        }
        moved |= rc;
        if (t->state == TUNNEL_JOINED) {
            if ((rc = step_local_send(x)) == STEP_FAIL) {
                close_why = x->why;
                goto Exit;
            }
            moved |= rc;
            if ((rc = step_local_recv(x)) == STEP_FAIL) {
                close_why = x->why;
                goto Exit;
            }
            moved |= rc;
            if ((rc = step_ssl_write(x)) == STEP_FAIL) {
                close_why = x->why;
                goto Exit;
            }
            moved |= rc;
        }
        if (moved == STEP_IDLE)
            break;
        if (t->br.dir[0].bytes + t->br.dir[1].bytes - start >= POD_PUMP_BUDGET) {
            p2m_loop_timer_start(pod->loop, &x->again, 0); /* the rest next turn: others get theirs */
            break;
        }
    }
    /* Done, else a side that hung up while it is still owed bytes (or the close_notify): it will not
     * take them. */
    if ((x->flags & (TLS_IN_SHUT | TLS_OUT_SHUT)) == (TLS_IN_SHUT | TLS_OUT_SHUT))
        close_why = "done";
    else if (t->br.hup[TUNNEL_RELAY] && !(x->flags & TLS_OUT_SHUT))
        close_why = "relay_hangup";
    else if (t->br.hup[TUNNEL_LOCAL] && t->state == TUNNEL_JOINED && !(x->flags & TLS_IN_SHUT))
        close_why = "local_hangup";
    else if (tls_arm(t) != 0)
        close_why = "epoll";
Exit:
    x->pumping = 0; /* tunnel_close() frees nothing yet: x lives until the loop reaps the tunnel */
    if (close_why != NULL)
        tunnel_close(t, close_why, drain_relay);
}

void tls_tunnel_event(tunnel_t *t, int side, uint32_t events)
{
    struct tls_tunnel *x = tls_check(t->tls);
    if (events & EPOLLERR) {
        int e = 0;
        socklen_t len = sizeof(e);
        getsockopt(t->br.fd[side], SOL_SOCKET, SO_ERROR, &e, &len);
        snprintf(x->why, sizeof(x->why), "%s error=\"%s\"", side == TUNNEL_RELAY ? "relay_error" : "local_error",
                 strerror(e != 0 ? e : EIO));
        x->flags |= TLS_FATAL;
        tunnel_close(t, x->why, 0);
        return;
    }
    if (events & EPOLLHUP)
        t->br.hup[side] = 1;
    tls_run(t);
}

static void on_handshake_timeout(p2m_loop_t *loop, p2m_loop_timer_t *timer)
{
    struct tls_tunnel *x = tls_check((struct tls_tunnel *)((char *)timer - offsetof(struct tls_tunnel, hs_timer)));
    tunnel_t *t = tunnel_check(x->t);
    if (t->state != TUNNEL_HANDSHAKE)
        return;
    tunnel_log(P2M_LOG_INFO, t, "tls_failed", "reason=\"handshake timed out\" ms=%llu",
               (unsigned long long)(p2m_loop_now(loop) - t->t_start));
    tunnel_close(t, "tls_failed", 1);
}

static void on_again(p2m_loop_t *loop, p2m_loop_timer_t *timer)
{
    (void)loop;
    struct tls_tunnel *x = tls_check((struct tls_tunnel *)((char *)timer - offsetof(struct tls_tunnel, again)));
    tls_run(tunnel_check(x->t));
}

void tls_tunnel_start(tunnel_t *t)
{
    pod_t *pod = t->pod;
    char r[120];
    /* Taken now: cert.c may replace pod->tls_ctx while this tunnel lives; SSL_new holds its own
     * reference to this one. */
    SSL_CTX *ctx = pod->tls_ctx;
    if (ctx == NULL) {
        tunnel_log(P2M_LOG_WARN, t, "tls_failed", "reason=\"no certificate yet\"");
        tunnel_close(t, "tls_failed", 1);
        return;
    }
    struct tls_tunnel *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "what=tls_tunnel");
        abort();
    }
    x->magic = TLS_TUNNEL_MAGIC;
    x->t = t;
    p2m_loop_timer_init(&x->hs_timer, on_handshake_timeout);
    p2m_loop_timer_init(&x->again, on_again);
    t->tls = x;
    ERR_clear_error();
    if ((x->ssl = SSL_new(ctx)) == NULL || SSL_set_fd(x->ssl, t->br.fd[TUNNEL_RELAY]) != 1) {
        tunnel_log(P2M_LOG_ERROR, t, "tls_failed", "reason=\"%s\"", ssl_reason(r, sizeof(r)));
        tunnel_close(t, "tls_failed", 1);
        return;
    }
    SSL_set_app_data(x->ssl, x);
    SSL_set_info_callback(x->ssl, on_info);
    SSL_set_accept_state(x->ssl);
    p2m_loop_timer_start(pod->loop, &x->hs_timer, POD_TLS_HANDSHAKE_MS);
    tls_run(t); /* the ClientHello is most likely in the socket already */
}

void tls_tunnel_joined(tunnel_t *t)
{
    tls_check(t->tls);
    tls_run(t); /* no-op when called from inside the pump, which goes on by itself */
}

void tls_tunnel_close(tunnel_t *t, int clean)
{
    struct tls_tunnel *x = tls_check(t->tls);
    p2m_loop_timer_stop(t->pod->loop, &x->hs_timer);
    p2m_loop_timer_stop(t->pod->loop, &x->again);
    if (x->ssl == NULL)
        return;
    /* A close that owes the consumer a clean end (the local service is down): close_notify, best
     * effort (the socket is not waited for). Never after a fatal error (SSL_shutdown(3)). */
    if (clean && (x->flags & (TLS_HANDSHAKEN | TLS_FATAL)) == TLS_HANDSHAKEN && !(SSL_get_shutdown(x->ssl) & SSL_SENT_SHUTDOWN)) {
        ERR_clear_error();
        SSL_shutdown(x->ssl);
    }
    ERR_clear_error();
    SSL_free(x->ssl);
    x->ssl = NULL;
}

void tls_tunnel_free(struct tls_tunnel *x)
{
    if (x == NULL)
        return;
    tls_check(x);
    x->magic = POD_DEAD;
    free(x);
}
