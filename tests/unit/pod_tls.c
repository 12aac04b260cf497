/* Unit tests for pod/tls.c (linked through p2m_pod_tls_extra): tls_server_ctx() fed bad files and
 * bad ALPN lists, and TLS tunnels run by forward_start() on a real p2m loop. A throwaway CA and
 * server certificate are made here with the OpenSSL API. A loopback TCP pair stands in for the
 * relay (the pod gets one end as a live pre-connection), a thread drives a non-blocking client SSL
 * on the other end, and another thread is the local service (--forward) on a loopback listener.
 * Waits are bounded; nothing asserts on time. */

#include "check.h"
#include "p2m/err.h"
#include "pod.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define HOST "echo.pipe2me.localhost"
#define WAIT_MS 30000 /* the bound of every wait; never reached when things work */
#define MIB (1024 * 1024)

static char dir[64];
static char chain_path[128], key_path[128], other_key_path[128], ca_path[128], junk_path[128];
static pod_args_t args;
static pod_t pod;
static int listen_fd = -1; /* the local service's listener */
static uint16_t next_lease = 20000;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void die(const char *what)
{
    fprintf(stderr, "pod_tls: %s failed: %s\n", what, strerror(errno));
    ERR_print_errors_fp(stderr);
    abort();
}

/* --- a throwaway CA and server certificate ---------------------------------------------------- */

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL || X509_add_ext(x, ext, -1) != 1)
        die("X509_add_ext");
    X509_EXTENSION_free(ext);
}

/* A certificate for key, named cn, signed by signer (issuer NULL: self-signed). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *signer, int ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    if (x == NULL)
        die("X509_new");
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -300);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x));
    if (ca) {
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(x, x, NID_subject_key_identifier, "hash");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "CA:FALSE");
        add_ext(x, issuer, NID_key_usage, "critical,digitalSignature");
        add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
        add_ext(x, issuer, NID_subject_alt_name, "DNS:" HOST);
    }
    if (X509_sign(x, signer, EVP_sha256()) == 0)
        die("X509_sign");
    return x;
}

static void write_pem(const char *path, EVP_PKEY *key, X509 *cert)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die(path);
    if ((key != NULL && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1) ||
        (cert != NULL && PEM_write_X509(f, cert) != 1))
        die("PEM_write");
    fclose(f);
    chmod(path, 0600);
}

static void make_certs(void)
{
    EVP_PKEY *ca_key = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    if (ca_key == NULL || key == NULL || other == NULL)
        die("EVP_EC_gen");
    X509 *ca = make_cert(ca_key, "pipe2me test CA", NULL, ca_key, 1);
    X509 *cert = make_cert(key, HOST, ca, ca_key, 0);
    snprintf(chain_path, sizeof(chain_path), "%s/chain.pem", dir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", dir);
    snprintf(other_key_path, sizeof(other_key_path), "%s/other.pem", dir);
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
    snprintf(junk_path, sizeof(junk_path), "%s/junk.pem", dir);
    write_pem(chain_path, NULL, cert);
    write_pem(key_path, key, NULL);
    write_pem(other_key_path, other, NULL);
    write_pem(ca_path, NULL, ca);
    FILE *f = fopen(junk_path, "w");
    if (f == NULL)
        die(junk_path);
    fputs("not a certificate\n", f);
    fclose(f);
    X509_free(cert);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    EVP_PKEY_free(ca_key);
}

/* --- tls_server_ctx ----------------------------------------------------------------------------- */

static void check_refused(SSL_CTX *ctx, const char *err, const char *want)
{
    CHECK_MSG(ctx == NULL, "expected NULL, got a context");
    SSL_CTX_free(ctx);
    CHECK_MSG(strstr(err, want) != NULL, "err %s does not mention %s", check_str(err), check_str(want));
    CHECK_MSG(strchr(err, '\n') == NULL && strlen(err) > 0, "err is not one line: %s", check_str(err));
}

static void test_ctx(void)
{
    char err[P2M_ERR_LEN];
    char missing[160], long_name[400];
    snprintf(missing, sizeof(missing), "%s/missing.pem", dir);

    static const char *good[] = {"http/1.1", "h2,http/1.1", "h2", "x", NULL};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK_CTX("good ALPN list %s", check_str(good[i]));
        err[0] = '\0';
        SSL_CTX *ctx = tls_server_ctx(chain_path, key_path, good[i], err);
        CHECK_MSG(ctx != NULL, "expected a context, got NULL (err: %s)", check_str(err));
        SSL_CTX_free(ctx);
    }
    memset(long_name, 'a', 300);
    long_name[300] = '\0';
    char long_ok[300];
    memset(long_ok, 'b', 255);
    snprintf(long_ok + 255, sizeof(long_ok) - 255, ",h2");
    CHECK_CTX("ALPN name of 255 bytes");
    SSL_CTX *ok = tls_server_ctx(chain_path, key_path, long_ok, err);
    CHECK_MSG(ok != NULL, "expected a context, got NULL (err: %s)", check_str(err));
    SSL_CTX_free(ok);

    static const struct {
        const char *alpn, *want;
    } bad[] = {
        {"", "empty"},
        {",", "empty"},
        {"h2,,x", "name 2 is empty"},
        {"h2,", "name 2 is empty"},
        {",h2", "name 1 is empty"},
        {"h2 x", "printable"},
        {"h2,\x01", "printable"},
        {"h2,\xc3\xa9", "printable"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_CTX("bad ALPN list %s", check_str(bad[i].alpn));
        err[0] = '\0';
        check_refused(tls_server_ctx(chain_path, key_path, bad[i].alpn, err), err, bad[i].want);
        CHECK_MSG(strstr(err, "ALPN") != NULL, "err %s does not name the ALPN list", check_str(err));
    }
    CHECK_CTX("ALPN name of 300 bytes");
    check_refused(tls_server_ctx(chain_path, key_path, long_name, err), err, "longer than 255");
    char huge[2048];
    memset(huge, 'h', sizeof(huge) - 1);
    for (size_t i = 100; i < sizeof(huge) - 1; i += 100)
        huge[i] = ',';
    huge[sizeof(huge) - 1] = '\0';
    CHECK_CTX("ALPN list of 2047 bytes");
    check_refused(tls_server_ctx(chain_path, key_path, huge, err), err, "longer than");

    CHECK_CTX("missing chain");
    check_refused(tls_server_ctx(missing, key_path, "h2", err), err, missing);
    CHECK_CTX("missing key");
    check_refused(tls_server_ctx(chain_path, missing, "h2", err), err, missing);
    CHECK_CTX("chain that is not PEM");
    check_refused(tls_server_ctx(junk_path, key_path, "h2", err), err, junk_path);
    CHECK_CTX("key that is not PEM");
    check_refused(tls_server_ctx(chain_path, junk_path, "h2", err), err, junk_path);
    CHECK_CTX("key of another certificate");
    check_refused(tls_server_ctx(chain_path, other_key_path, "h2", err), err, other_key_path);
    CHECK_CTX("key and certificate swapped");
    check_refused(tls_server_ctx(key_path, chain_path, "h2", err), err, key_path);
    CHECK_CTX(NULL);
    CHECK_MSG(ERR_peek_error() == 0, "tls_server_ctx left errors queued");
}

/* --- the peers: a TLS client and a local service, each a thread ------------------------------- */

/* The bytes sent: a xorshift stream, so that a lost, doubled or reordered chunk changes the hash. */
typedef struct {
    uint64_t x;
} pattern_t;

static void pattern_fill(pattern_t *p, unsigned char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p->x ^= p->x << 13;
        p->x ^= p->x >> 7;
        p->x ^= p->x << 17;
        buf[i] = (unsigned char)(p->x >> 32);
    }
}

typedef struct {
    /* what to do */
    size_t send_len;           /* bytes to send, then end the stream (close_notify / SHUT_WR) */
    uint64_t seed;             /* of the pattern sent */
    int wait_eof;              /* send only after the peer ended its stream */
    int no_end;                /* never end the stream (and send nothing) */
    int read_after_send;       /* read nothing until the own stream is ended: the other way backs up */
    int rst;                   /* reset the connection once it sent all and received a byte */
    const char *raw;           /* client: send these bytes instead of a ClientHello, then read to the end */
    size_t raw_len;            /* ... of this length */
    int tls11;                 /* client: offer TLS 1.1 only */
    int tls12;                 /* client: TLS 1.2 at most */
    int tcp_end;               /* client: end with a TCP FIN, without close_notify */
    SSL_SESSION *resume;       /* client: resume this session (not owned) */
    const unsigned char *alpn; /* client: the ALPN offer, wire format (NULL: none) */
    unsigned alpn_len;
    /* what happened */
    int fd;
    atomic_int done;
    int connected;     /* handshake done / connection accepted */
    char alpn_got[64]; /* "" when none */
    char failure[200]; /* why the thread gave up, "" when it did not */
    size_t sent, received;
    unsigned char sent_hash[32], recv_hash[32];
    int close_notify;     /* client: the pod's close_notify arrived */
    int eof;              /* the TCP end of stream (after close_notify for the client) */
    int resumed;          /* client: the session was resumed */
    SSL_SESSION *session; /* client: the session at the end (caller frees) */
} peer_t;

typedef struct {
    EVP_MD_CTX *md;
} hash_t;

static void hash_init(hash_t *h)
{
    if ((h->md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1)
        die("EVP_DigestInit_ex");
}

static void hash_done(hash_t *h, unsigned char *out)
{
    unsigned len = 32;
    EVP_DigestFinal_ex(h->md, out, &len);
    EVP_MD_CTX_free(h->md);
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    uint64_t now = now_ms();
    if (now >= deadline)
        return -1;
    struct pollfd p = {.fd = fd, .events = events};
    int left = (int)(deadline - now);
    return poll(&p, 1, left < 100 ? left : 100);
}

/* After the pod's close_notify: the TCP end of stream follows. */
static void client_wait_eof(peer_t *c, uint64_t deadline)
{
    char b;
    while (wait_fd(c->fd, POLLIN, deadline) >= 0) {
        ssize_t n = recv(c->fd, &b, 1, MSG_DONTWAIT);
        if (n == 0) {
            c->eof = 1;
            return;
        }
        if (n > 0) {
            snprintf(c->failure, sizeof(c->failure), "bytes after close_notify");
            return;
        }
        if (errno != EAGAIN && errno != EINTR) {
            snprintf(c->failure, sizeof(c->failure), "recv after close_notify: %s", strerror(errno));
            return;
        }
    }
    snprintf(c->failure, sizeof(c->failure), "no end of stream after close_notify");
}

/* Closes fd with a reset (SO_LINGER 0). */
static void reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static SSL_CTX *client_ctx(int tls11, int tls12)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1)
        die("client ctx");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (tls11) {
        SSL_CTX_set_security_level(ctx, 0);
        SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
        SSL_CTX_set_min_proto_version(ctx, TLS1_1_VERSION);
        SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
    }
    if (tls12)
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    return ctx;
}

/* The consumer: a non-blocking client SSL that reads and writes at once. */
static void *client_main(void *arg)
{
    peer_t *c = arg;
    uint64_t deadline = now_ms() + WAIT_MS;
    SSL_CTX *ctx = client_ctx(c->tls11, c->tls12);
    SSL *ssl = SSL_new(ctx);
    hash_t hs, hr;
    pattern_t pat = {c->seed};
    static __thread unsigned char wbuf[16384], rbuf[16384];
    size_t wlen = 0;
    int ended = 0, peer_ended = 0;

    hash_init(&hs);
    hash_init(&hr);
    if (c->raw != NULL) {
        /* Not TLS at all: the pod must close without bothering the local service. */
        if (send(c->fd, c->raw, c->raw_len, MSG_NOSIGNAL) != (ssize_t)c->raw_len)
            snprintf(c->failure, sizeof(c->failure), "send: %s", strerror(errno));
        for (;;) {
            if (wait_fd(c->fd, POLLIN, deadline) < 0) {
                snprintf(c->failure, sizeof(c->failure), "the pod did not close");
                break;
            }
            ssize_t n = recv(c->fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
            if (n == 0) {
                c->eof = 1;
                break;
            }
            if (n > 0) {
                c->received += (size_t)n; /* an alert, perhaps */
                continue;
            }
            if (errno != EAGAIN && errno != EINTR) {
                snprintf(c->failure, sizeof(c->failure), "recv: %s", strerror(errno));
                break;
            }
        }
        goto Out;
    }
    SSL_set_fd(ssl, c->fd);
    SSL_set_connect_state(ssl);
    SSL_set_tlsext_host_name(ssl, HOST);
    SSL_set1_host(ssl, HOST);
    if (c->alpn != NULL)
        SSL_set_alpn_protos(ssl, c->alpn, c->alpn_len);
    if (c->resume != NULL)
        SSL_set_session(ssl, c->resume);
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            unsigned long q = ERR_peek_error();
            snprintf(c->failure, sizeof(c->failure), "handshake: %s",
                     q != 0                   ? ERR_reason_error_string(q)
                     : e == SSL_ERROR_SYSCALL ? "syscall/eof"
                                              : "error");
            ERR_clear_error();
            goto Out;
        }
        if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline) < 0) {
            snprintf(c->failure, sizeof(c->failure), "handshake timed out");
            goto Out;
        }
    }
    c->connected = 1;
    c->resumed = SSL_session_reused(ssl);
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(ssl, &sel, &sel_len);
    snprintf(c->alpn_got, sizeof(c->alpn_got), "%.*s", (int)sel_len, sel != NULL ? (const char *)sel : "");

    while (!(peer_ended && (ended || c->no_end))) {
        int moved = 0, want_write = 0, want_read = 0;
        if (c->rst && c->sent == c->send_len && c->received > 0) {
            reset(c->fd);
            c->fd = -1;
            goto Out;
        }
        if (!ended && !c->no_end && (!c->wait_eof || peer_ended)) {
            if (c->sent < c->send_len) {
                if (wlen == 0) {
                    wlen = c->send_len - c->sent < sizeof(wbuf) ? c->send_len - c->sent : sizeof(wbuf);
                    pattern_fill(&pat, wbuf, wlen);
                }
                ERR_clear_error();
                int n = SSL_write(ssl, wbuf, (int)wlen);
                if (n > 0) {
                    EVP_DigestUpdate(hs.md, wbuf, (size_t)n);
                    c->sent += (size_t)n;
                    memmove(wbuf, wbuf + n, wlen - (size_t)n);
                    wlen -= (size_t)n;
                    moved = 1;
                } else {
                    int e = SSL_get_error(ssl, n);
                    if (e == SSL_ERROR_WANT_WRITE) {
                        want_write = 1;
                    } else if (e == SSL_ERROR_WANT_READ) {
                        want_read = 1;
                    } else {
                        snprintf(c->failure, sizeof(c->failure), "SSL_write: error %d", e);
                        goto Out;
                    }
                }
            } else if (c->tcp_end) {
                shutdown(c->fd, SHUT_WR);
                ended = 1;
                moved = 1;
            } else {
                ERR_clear_error();
                int r = SSL_shutdown(ssl);
                if (r >= 0) {
                    ended = 1;
                    moved = 1;
                } else if (SSL_get_error(ssl, r) == SSL_ERROR_WANT_WRITE) {
                    want_write = 1;
                } else {
                    snprintf(c->failure, sizeof(c->failure), "SSL_shutdown: error %d", SSL_get_error(ssl, r));
                    goto Out;
                }
            }
        }
        if (!peer_ended && (!c->read_after_send || ended)) {
            want_read = 1;
            ERR_clear_error();
            int n = SSL_read(ssl, rbuf, sizeof(rbuf));
            if (n > 0) {
                EVP_DigestUpdate(hr.md, rbuf, (size_t)n);
                c->received += (size_t)n;
                moved = 1;
            } else {
                int e = SSL_get_error(ssl, n);
                if (e == SSL_ERROR_ZERO_RETURN) {
                    peer_ended = 1;
                    c->close_notify = 1;
                    moved = 1;
                } else if (e == SSL_ERROR_WANT_WRITE) {
                    want_write = 1;
                } else if (e != SSL_ERROR_WANT_READ) {
                    unsigned long q = ERR_peek_error();
                    snprintf(c->failure, sizeof(c->failure), "SSL_read: %s",
                             q != 0                   ? ERR_reason_error_string(q)
                             : e == SSL_ERROR_SYSCALL ? "syscall/eof"
                                                      : "error");
                    goto Out;
                }
            }
        }
        if (!moved && wait_fd(c->fd, (short)((want_read ? POLLIN : 0) | (want_write ? POLLOUT : 0)), deadline) < 0) {
            snprintf(c->failure, sizeof(c->failure), "timed out (sent %zu, received %zu)", c->sent, c->received);
            goto Out;
        }
    }
    client_wait_eof(c, deadline);
    c->session = SSL_get1_session(ssl);
Out:
    hash_done(&hs, c->sent_hash);
    hash_done(&hr, c->recv_hash);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (c->fd >= 0)
        close(c->fd);
    atomic_store(&c->done, 1);
    return NULL;
}

/* The local service: accepts one connection, sends and reads at once. */
static void *local_main(void *arg)
{
    peer_t *l = arg;
    uint64_t deadline = now_ms() + WAIT_MS;
    hash_t hs, hr;
    pattern_t pat = {l->seed};
    static __thread unsigned char wbuf[16384], rbuf[16384];
    size_t wlen = 0, woff = 0;
    int ended = 0, peer_ended = 0;

    hash_init(&hs);
    hash_init(&hr);
    l->fd = -1;
    while (l->fd < 0) {
        if (wait_fd(listen_fd, POLLIN, deadline) < 0) {
            snprintf(l->failure, sizeof(l->failure), "no connection");
            goto Out;
        }
        l->fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }
    l->connected = 1;
    while (!(peer_ended && (ended || l->no_end))) {
        int moved = 0;
        if (l->rst && l->sent == l->send_len && l->received > 0) {
            reset(l->fd);
            l->fd = -1;
            goto Out;
        }
        if (!ended && !l->no_end && (!l->wait_eof || peer_ended)) {
            if (l->sent < l->send_len || woff < wlen) {
                if (woff == wlen) {
                    wlen = l->send_len - l->sent < sizeof(wbuf) ? l->send_len - l->sent : sizeof(wbuf);
                    woff = 0;
                    pattern_fill(&pat, wbuf, wlen);
                    EVP_DigestUpdate(hs.md, wbuf, wlen);
                    l->sent += wlen;
                }
                ssize_t n = send(l->fd, wbuf + woff, wlen - woff, MSG_NOSIGNAL);
                if (n > 0) {
                    woff += (size_t)n;
                    moved = 1;
                } else if (errno != EAGAIN && errno != EINTR) {
                    snprintf(l->failure, sizeof(l->failure), "send: %s", strerror(errno));
                    goto Out;
                }
            } else {
                shutdown(l->fd, SHUT_WR);
                ended = 1;
                moved = 1;
            }
        }
        int reading = !peer_ended && (!l->read_after_send || ended);
        if (reading) {
            ssize_t n = recv(l->fd, rbuf, sizeof(rbuf), 0);
            if (n > 0) {
                EVP_DigestUpdate(hr.md, rbuf, (size_t)n);
                l->received += (size_t)n;
                moved = 1;
            } else if (n == 0) {
                peer_ended = 1;
                l->eof = 1;
                moved = 1;
            } else if (errno != EAGAIN && errno != EINTR) {
                snprintf(l->failure, sizeof(l->failure), "recv: %s", strerror(errno));
                goto Out;
            }
        }
        if (!moved && wait_fd(l->fd, (short)((reading ? POLLIN : 0) | (woff < wlen ? POLLOUT : 0)), deadline) < 0) {
            snprintf(l->failure, sizeof(l->failure), "timed out (sent %zu, received %zu)", l->sent, l->received);
            goto Out;
        }
    }
Out:
    hash_done(&hs, l->sent_hash);
    hash_done(&hr, l->recv_hash);
    if (l->fd >= 0)
        close(l->fd);
    atomic_store(&l->done, 1);
    return NULL;
}

/* --- running a tunnel ------------------------------------------------------------------------- */

/* A connected loopback TCP pair: *pod_end non-blocking (as pool.c's sockets are). */
static void tcp_pair(int *pod_end, int *client_end)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0)
        die("pair listener");
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
        die("pair connect");
    int p = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (p < 0)
        die("pair accept");
    close(l);
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    *pod_end = p;
    *client_end = c;
}

typedef struct {
    const char *name;
    peer_t client, local;
    int expect_local; /* the local service gets a connection */
    int swap_ctx;     /* replace pod.tls_ctx (as a renewal does) once the tunnel is joined */
    /* what the pod did */
    uint64_t tunnels, failures, bytes_in, bytes_out;
    int finished; /* every peer done and the tunnel closed within the bound */
} run_t;

static void on_unused(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop, (void)h, (void)events;
    die("the pre-connection's handler was called after forward_start() took it over");
}

static void run(run_t *r)
{
    pthread_t ct, lt;
    int pod_end, client_end;
    uint64_t t0 = pod.stats.tunnels, f0 = pod.stats.tunnel_failures, in0, out0, in1, out1;
    forward_bytes(&pod, &in0, &out0);

    tcp_pair(&pod_end, &client_end);
    r->client.fd = client_end;
    if (r->expect_local && pthread_create(&lt, NULL, local_main, &r->local) != 0)
        die("pthread_create");
    if (pthread_create(&ct, NULL, client_main, &r->client) != 0)
        die("pthread_create");
    /* As the pool hands a live pre-connection over: registered with its handler, then moved. */
    p2m_loop_handler_t pre;
    char aerr[P2M_ERR_LEN];
    p2m_loop_handler_init(&pre);
    if (p2m_loop_add(pod.loop, &pre, pod_end, EPOLLIN, on_unused, aerr) != 0)
        die(aerr);
    forward_start(&pod, &pre, next_lease++);
    uint64_t deadline = now_ms() + WAIT_MS + 5000;
    int swapped = 0;
    while (now_ms() < deadline) {
        if (atomic_load(&r->client.done) && (!r->expect_local || atomic_load(&r->local.done)) && pod.ntunnels == 0) {
            r->finished = 1;
            break;
        }
        if (r->swap_ctx && !swapped && pod.tunnels != NULL && pod.tunnels->state == TUNNEL_JOINED) {
            char err[P2M_ERR_LEN];
            SSL_CTX *fresh = tls_server_ctx(chain_path, key_path, args.alpn, err);
            if (fresh != NULL) {
                SSL_CTX_free(pod.tls_ctx);
                pod.tls_ctx = fresh;
                swapped = 1;
            }
        }
        p2m_loop_run_once(pod.loop, 20);
    }
    pthread_join(ct, NULL);
    if (r->expect_local)
        pthread_join(lt, NULL);
    if (!r->finished)
        forward_close_all(&pod);
    p2m_loop_run_once(pod.loop, 0); /* the reap */
    forward_bytes(&pod, &in1, &out1);
    r->tunnels = pod.stats.tunnels - t0;
    r->failures = pod.stats.tunnel_failures - f0;
    r->bytes_in = in1 - in0;
    r->bytes_out = out1 - out0;
    if (r->swap_ctx)
        CHECK_MSG(swapped, "the context was never swapped");
}

/* Sets pod.tls_ctx for an ALPN list. */
static void use_ctx(const char *alpn)
{
    char err[P2M_ERR_LEN];
    snprintf(args.alpn, sizeof(args.alpn), "%s", alpn);
    SSL_CTX_free(pod.tls_ctx);
    pod.tls_ctx = tls_server_ctx(chain_path, key_path, alpn, err);
    if (pod.tls_ctx == NULL) {
        fprintf(stderr, "pod_tls: tls_server_ctx: %s\n", err);
        abort();
    }
}

static void check_no_local_connection(void)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    CHECK_MSG(poll(&p, 1, 0) == 0, "the local service got a connection");
    int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK);
    if (fd >= 0)
        close(fd);
}

static void check_clean(run_t *r, size_t c2l, size_t l2c)
{
    CHECK_MSG(r->finished, "not finished within the bound (client done=%d local done=%d tunnels=%u)", atomic_load(&r->client.done),
              atomic_load(&r->local.done), pod.ntunnels);
    CHECK_EQ_STR(r->client.failure, "");
    CHECK_EQ_STR(r->local.failure, "");
    CHECK(r->client.connected);
    CHECK(r->local.connected);
    CHECK_EQ_INT(r->client.sent, c2l);
    CHECK_EQ_INT(r->local.received, c2l);
    CHECK_EQ_INT(r->local.sent, l2c);
    CHECK_EQ_INT(r->client.received, l2c);
    CHECK_MSG(memcmp(r->client.sent_hash, r->local.recv_hash, 32) == 0, "sha256 of consumer -> local differs");
    CHECK_MSG(memcmp(r->local.sent_hash, r->client.recv_hash, 32) == 0, "sha256 of local -> consumer differs");
    CHECK(r->client.close_notify);
    CHECK(r->client.eof);
    CHECK(r->local.eof);
    CHECK_EQ_INT(r->tunnels, 1);
    CHECK_EQ_INT(r->failures, 0);
    CHECK_EQ_INT(r->bytes_in, c2l);
    CHECK_EQ_INT(r->bytes_out, l2c);
}

static const unsigned char offer_h2_http11[] = "\x02h2\x08http/1.1";
static const unsigned char offer_foo[] = "\x03"
                                         "foo";

static void test_alpn(void)
{
    static const struct {
        const char *list;
        const unsigned char *offer;
        unsigned offer_len;
        const char *want;
    } rows[] = {
        {"http/1.1", offer_h2_http11, sizeof(offer_h2_http11) - 1, "http/1.1"},
        {"h2,http/1.1", offer_h2_http11, sizeof(offer_h2_http11) - 1, "h2"},
        {"http/1.1,h2", offer_h2_http11, sizeof(offer_h2_http11) - 1, "h2"}, /* the client's order wins */
        {"h2,http/1.1", offer_foo, sizeof(offer_foo) - 1, ""},
        {"h2,http/1.1", NULL, 0, ""},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("ALPN list %s, offer %s", rows[i].list,
                  rows[i].offer != NULL ? check_bytes((const char *)rows[i].offer, rows[i].offer_len) : "none");
        use_ctx(rows[i].list);
        run_t r = {.expect_local = 1};
        r.client.alpn = rows[i].offer;
        r.client.alpn_len = rows[i].offer_len;
        r.client.send_len = 5;
        r.client.seed = 1 + i;
        r.local.send_len = 7;
        r.local.seed = 100 + i;
        run(&r);
        CHECK_EQ_STR(r.client.alpn_got, rows[i].want);
        check_clean(&r, 5, 7);
    }
    use_ctx("h2,http/1.1");
}

static void test_bulk(void)
{
    CHECK_CTX("4 MiB each way, the context swapped meanwhile");
    run_t r = {.expect_local = 1, .swap_ctx = 1};
    r.client.send_len = 4 * MIB;
    r.client.seed = 0x1234;
    r.local.send_len = 4 * MIB;
    r.local.seed = 0x5678;
    run(&r);
    check_clean(&r, 4 * MIB, 4 * MIB);

    CHECK_CTX("4 MiB each way, the local service replying only after the consumer's close_notify");
    run_t q = {.expect_local = 1};
    q.client.send_len = 4 * MIB;
    q.client.seed = 7;
    q.local.send_len = 4 * MIB;
    q.local.seed = 8;
    q.local.wait_eof = 1; /* the consumer's 4 MiB arrive first, then the reply */
    run(&q);
    check_clean(&q, 4 * MIB, 4 * MIB);

    /* One way backs up to the sender (the local service reads only once it has sent all), while
     * the other flows: the pod must stop reading the consumer without stopping the reply. */
    CHECK_CTX("4 MiB each way, the local service reading only after sending");
    run_t b1 = {.expect_local = 1};
    b1.client.send_len = 4 * MIB;
    b1.client.seed = 31;
    b1.local.send_len = 4 * MIB;
    b1.local.seed = 32;
    b1.local.read_after_send = 1;
    run(&b1);
    check_clean(&b1, 4 * MIB, 4 * MIB);

    CHECK_CTX("4 MiB each way, the consumer reading only after sending");
    run_t b2 = {.expect_local = 1};
    b2.client.send_len = 4 * MIB;
    b2.client.seed = 33;
    b2.client.read_after_send = 1;
    b2.local.send_len = 4 * MIB;
    b2.local.seed = 34;
    run(&b2);
    check_clean(&b2, 4 * MIB, 4 * MIB);
}

static void test_resume(void)
{
    for (int v = 0; v < 2; v++) {
        CHECK_CTX("session resumption, %s", v == 0 ? "TLS 1.2" : "TLS 1.3");
        run_t a = {.expect_local = 1};
        a.client.tls12 = v == 0;
        a.client.send_len = 10;
        a.local.send_len = 10;
        run(&a);
        check_clean(&a, 10, 10);
        CHECK(!a.client.resumed);
        if (!CHECK(a.client.session != NULL))
            continue;
        run_t b = {.expect_local = 1};
        b.client.tls12 = v == 0;
        b.client.resume = a.client.session;
        b.client.send_len = 10;
        b.local.send_len = 10;
        run(&b);
        check_clean(&b, 10, 10);
        CHECK_MSG(b.client.resumed, "the session was not resumed");
        SSL_SESSION_free(a.client.session);
        SSL_SESSION_free(b.client.session);
    }
}

static void test_resets(void)
{
    /* The byte from the local service shows the tunnel joined before the reset. */
    CHECK_CTX("the consumer resets mid-stream");
    run_t a = {.expect_local = 1};
    a.client.send_len = 100000;
    a.client.seed = 41;
    a.client.rst = 1;
    a.local.send_len = 1;
    run(&a);
    CHECK(a.finished);
    CHECK_EQ_STR(a.client.failure, "");
    CHECK_EQ_STR(a.local.failure, "");
    CHECK_MSG(a.local.eof, "the local service saw no end of stream");
    CHECK_EQ_INT(a.failures, 0);
    CHECK(a.bytes_in <= 100000);

    CHECK_CTX("the local service resets mid-stream");
    run_t b = {.expect_local = 1};
    b.client.send_len = 4 * MIB;
    b.client.seed = 42;
    b.local.rst = 1;
    b.local.no_end = 1; /* no FIN first: nothing the pod could take for an end of stream */
    run(&b);
    CHECK(b.finished);
    CHECK(b.local.connected);
    CHECK(b.local.received < 4 * MIB);
    CHECK_MSG(!b.client.close_notify, "a reset was passed on as close_notify");
    CHECK_MSG(b.client.failure[0] != '\0', "the consumer saw no failure");
    CHECK_EQ_INT(b.failures, 0);
}

static void test_half_close(void)
{
    CHECK_CTX("consumer close_notify first: the local service sees the end of stream, then replies");
    run_t a = {.expect_local = 1};
    a.client.send_len = 1000;
    a.client.seed = 11;
    a.local.send_len = 3000;
    a.local.seed = 12;
    a.local.wait_eof = 1;
    run(&a);
    check_clean(&a, 1000, 3000);

    CHECK_CTX("local end of stream first: the consumer sees close_notify and the end of stream, then sends");
    run_t b = {.expect_local = 1};
    b.client.send_len = 2000;
    b.client.seed = 13;
    b.client.wait_eof = 1;
    b.local.send_len = 500;
    b.local.seed = 14;
    run(&b);
    check_clean(&b, 2000, 500);

    CHECK_CTX("consumer TCP end of stream without close_notify: the local service sees the end, the reply gets through");
    run_t d = {.expect_local = 1};
    d.client.send_len = 1500;
    d.client.seed = 15;
    d.client.tcp_end = 1;
    d.local.send_len = 70000;
    d.local.seed = 16;
    d.local.wait_eof = 1;
    run(&d);
    check_clean(&d, 1500, 70000);

    CHECK_CTX("nothing either way");
    run_t c = {.expect_local = 1};
    c.client.wait_eof = 1;
    run(&c);
    check_clean(&c, 0, 0);
}

static void test_local_down(void)
{
    CHECK_CTX("local service refused");
    /* A port nobody listens on: bound, never listened, closed. */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(s, (struct sockaddr *)&a, &len) != 0)
        die("closed port");
    close(s);
    struct sockaddr_storage saved = pod.fwd_addr;
    memcpy(&pod.fwd_addr, &a, sizeof(a));

    run_t r = {.expect_local = 0};
    r.client.no_end = 1;
    r.client.send_len = 0;
    run(&r);
    CHECK(r.finished);
    CHECK_EQ_STR(r.client.failure, "");
    CHECK(r.client.connected);
    CHECK_MSG(r.client.close_notify, "the consumer got no close_notify");
    CHECK_MSG(r.client.eof, "the consumer got no end of stream");
    CHECK_EQ_INT(r.client.received, 0);
    CHECK_EQ_INT(r.failures, 1);
    CHECK_EQ_INT(pod.local_health, POD_DOWN);
    CHECK_MSG(p2m_loop_timer_armed(&pod.hold), "the pool does not back off");

    CHECK_CTX("local service refused, the consumer sending meanwhile");
    run_t q = {.expect_local = 0};
    q.client.send_len = 100000;
    q.client.seed = 21;
    q.client.no_end = 0;
    run(&q);
    CHECK(q.finished);
    CHECK(q.client.connected);
    /* The consumer may see its writes refused once the pod has closed; it never hangs. */
    CHECK_EQ_INT(q.failures, 1);

    memcpy(&pod.fwd_addr, &saved, sizeof(saved));
    p2m_loop_timer_stop(pod.loop, &pod.hold);
}

static void test_refused_handshakes(void)
{
    CHECK_CTX("TLS 1.1 client");
    run_t a = {.expect_local = 0};
    a.client.tls11 = 1;
    run(&a);
    CHECK(a.finished);
    CHECK(!a.client.connected);
    CHECK_MSG(a.client.failure[0] != '\0', "the TLS 1.1 handshake succeeded");
    CHECK_EQ_INT(a.failures, 1);
    CHECK_EQ_INT(a.bytes_in + a.bytes_out, 0);
    check_no_local_connection();

    static const char get[] = "GET / HTTP/1.1\r\nHost: " HOST "\r\n\r\n";
    CHECK_CTX("plain HTTP instead of a ClientHello");
    run_t b = {.expect_local = 0};
    b.client.raw = get;
    b.client.raw_len = sizeof(get) - 1;
    run(&b);
    CHECK(b.finished);
    CHECK_EQ_STR(b.client.failure, "");
    CHECK_MSG(b.client.eof, "the consumer saw no clean end of stream");
    CHECK_EQ_INT(b.failures, 1);
    check_no_local_connection();

    static const char junk[] = "\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff"; /* a ClientHello record of nonsense */
    CHECK_CTX("a broken ClientHello");
    run_t c = {.expect_local = 0};
    c.client.raw = junk;
    c.client.raw_len = sizeof(junk) - 1;
    run(&c);
    CHECK(c.finished);
    CHECK_EQ_STR(c.client.failure, "");
    CHECK(c.client.eof);
    CHECK_EQ_INT(c.failures, 1);
    check_no_local_connection();

    CHECK_CTX("a ClientHello that never completes: the handshake timeout");
    static const char part[] = "\x16\x03\x01\x02\x00\x01"; /* a record header promising 512 bytes */
    run_t d = {.expect_local = 0};
    d.client.raw = part;
    d.client.raw_len = sizeof(part) - 1;
    run(&d);
    CHECK(d.finished);
    CHECK_EQ_STR(d.client.failure, "");
    CHECK(d.client.eof);
    CHECK_EQ_INT(d.failures, 1);
    check_no_local_connection();

    CHECK_CTX("no certificate yet");
    SSL_CTX *ctx = pod.tls_ctx;
    pod.tls_ctx = NULL;
    run_t e = {.expect_local = 0};
    e.client.raw = get;
    e.client.raw_len = sizeof(get) - 1;
    run(&e);
    CHECK(e.finished);
    CHECK(e.client.eof);
    CHECK_EQ_INT(e.failures, 1);
    pod.tls_ctx = ctx;
    check_no_local_connection();
}

static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) != -1)
            n++;
    return n;
}

int main(void)
{
    char err[P2M_ERR_LEN];
    signal(SIGPIPE, SIG_IGN); /* as pipe2me-pod: SSL writes to a socket whose peer is gone */
    p2m_log_set_level(P2M_LOG_DEBUG);
    snprintf(dir, sizeof(dir), "/tmp/p2m-pod-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        die("mkdtemp");
    make_certs();
    test_ctx();

    /* A pod enough for forward.c and tls.c: a loop, the pool's pipes and hold timer, no registrar
     * (stopping: pool_refill() does nothing). */
    snprintf(args.label, sizeof(args.label), "echo");
    args.pool = 1;
    args.tls_terminate = 1;
    pod.magic = POD_MAGIC;
    pod.args = &args;
    if ((pod.loop = p2m_loop_new(err)) == NULL || pool_init(&pod, err) != 0) {
        fprintf(stderr, "pod_tls: %s\n", err);
        return 1;
    }
    pod.stopping = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(listen_fd, 16) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&a, &len) != 0)
        die("local listener");
    memcpy(&pod.fwd_addr, &a, sizeof(a));
    pod.fwd_len = sizeof(a);
    snprintf(pod.fwd_str, sizeof(pod.fwd_str), "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    use_ctx("h2,http/1.1");

    int fds = count_fds();
    test_alpn();
    test_bulk();
    test_half_close();
    test_resume();
    test_resets();
    test_local_down();
    test_refused_handshakes();

    CHECK_CTX("after every tunnel");
    p2m_loop_run_once(pod.loop, 0);
    CHECK_EQ_INT(pod.ntunnels, 0);
    CHECK(pod.tunnels == NULL);
    CHECK_EQ_INT(p2m_loop_handler_count(pod.loop), 0);
    CHECK_EQ_INT(p2m_loop_timer_count(pod.loop), 0);
    CHECK_EQ_INT(count_fds(), fds);
    p2m_pipe_pool_stats_t ps;
    p2m_pipe_pool_stats(pod.pipes, &ps);
    CHECK_EQ_INT(ps.borrowed, 0);

    SSL_CTX_free(pod.tls_ctx);
    p2m_pipe_pool_free(pod.pipes);
    p2m_loop_free(pod.loop);
    close(listen_fd);
    const char *names[] = {"chain.pem", "key.pem", "other.pem", "ca.pem", "junk.pem"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return check_done("pod_tls");
}
