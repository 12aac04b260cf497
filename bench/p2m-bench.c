/* p2m-bench: loopback benchmark client and backend for bench/run. Every byte is checked.
 *
 *   p2m-bench serve PORT                          backend on 127.0.0.1:PORT (thread per connection)
 *   p2m-bench bulk HOST PORT up|down STREAMS BYTES  STREAMS connections at once, BYTES each
 *   p2m-bench rr HOST PORT SIZE COUNT             COUNT request/responses of SIZE bytes on one connection
 *   p2m-bench cps HOST PORT COUNT PARALLEL        COUNT x (connect, 1 KiB each way, close)
 *   p2m-bench first HOST PORT COUNT               COUNT x, one at a time: connect, 64 B, first echo
 *                                                 byte (timed), rest of the echo (checked), close
 *   p2m-bench hello HOST PORT COUNT NAME          COUNT x, one at a time: connect, a TLS ClientHello
 *                                                 naming NAME (server_name), first echo byte
 *                                                 (timed), rest of the echo (checked), close. No
 *                                                 header: for `echo`, behind an SNI router
 *   p2m-bench burst HOST PORT COUNT SECS          COUNT connections opened at once (non-blocking,
 *                                                 one event loop): each sends a header and 64 B as
 *                                                 soon as it is connected, times its first echo
 *                                                 byte from the burst's start, checks the echo and
 *                                                 closes. Refused: connect refused, or a reset or
 *                                                 end of stream before any byte came back; errors:
 *                                                 wrong bytes, or not done within SECS.
 *   p2m-bench echo PORT                           event-driven echo backend on 127.0.0.1:PORT, no
 *                                                 header (case 6: thousands of connections at once)
 *   p2m-bench hold HOST PORT[,PORT...] COUNT INFLIGHT SIZE SECS
 *                                                 opens COUNT connections, round robin over the
 *                                                 ports, at most INFLIGHT being set up at a time;
 *                                                 each sends SIZE bytes and checks the echo, then
 *                                                 stays open. Prints a "hold" line, waits for
 *                                                 SIGUSR1 (at most SECS), does a second checked echo
 *                                                 on every connection, closes them all and prints
 *                                                 a "release" line. No header: for `echo`.
 *
 * A connection starts with a 16-byte header: "P2MB", a mode byte ('U' upload, 'D' download,
 * 'E' echo), 3 pad bytes, a 64-bit little-endian length. Bulk data is a fixed pattern with a
 * period (PAT_PERIOD) that is no power of two, so a lost, duplicated or reordered chunk fails
 * the memcmp. 'U': the backend checks what it reads and answers 9 bytes (status, count) once it
 * has all of it, so the client's time covers delivery. 'D': the backend writes the pattern and
 * closes; the client checks it. 'E': the backend echoes until end of stream.
 *
 * Prints one line of key=value results; exit status 0 only when every check passed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAT_PERIOD 1048573 /* a prime */
#define CHUNK 262144
#define HDR 16

static unsigned char pat[PAT_PERIOD + CHUNK]; /* pat[i] == pat[i % PAT_PERIOD] */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void pat_init(void)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < PAT_PERIOD; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        pat[i] = (unsigned char)x;
    }
    memcpy(pat + PAT_PERIOD, pat, CHUNK);
}

static int writen(int fd, const void *b, size_t n)
{
    const char *p = b;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

static int readn(int fd, void *b, size_t n)
{
    char *p = b;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r, n -= (size_t)r;
    }
    return 0;
}

static int dial(const char *host, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1 || connect(fd, (void *)&a, sizeof a)) {
        perror("connect");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void hdr(unsigned char *h, char mode, uint64_t len)
{
    memcpy(h, "P2MB", 4);
    h[4] = (unsigned char)mode, h[5] = h[6] = h[7] = 0;
    for (int i = 0; i < 8; i++)
        h[8 + i] = (unsigned char)(len >> (8 * i));
}

/* Reads up to LEN pattern bytes from FD, checking them; returns the count read before EOF, or
 * -1 on a mismatch or error. */
static long long recv_pattern(int fd, uint64_t len, unsigned char *buf)
{
    uint64_t got = 0;
    while (got < len) {
        size_t want = len - got < CHUNK ? (size_t)(len - got) : CHUNK;
        ssize_t r = read(fd, buf, want);
        if (r == 0)
            break;
        if (r < 0 || memcmp(buf, pat + got % PAT_PERIOD, (size_t)r))
            return -1;
        got += (uint64_t)r;
    }
    return (long long)got;
}

static int send_pattern(int fd, uint64_t len)
{
    uint64_t sent = 0;
    while (sent < len) {
        size_t n = len - sent < CHUNK ? (size_t)(len - sent) : CHUNK;
        if (writen(fd, pat + sent % PAT_PERIOD, n))
            return -1;
        sent += n;
    }
    return 0;
}

/* ---------------------------------------------------------------- backend */

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg, one = 1;
    unsigned char h[HDR], *buf = malloc(CHUNK);
    uint64_t len = 0;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!buf || readn(fd, h, HDR) || memcmp(h, "P2MB", 4))
        goto Exit;
    for (int i = 0; i < 8; i++)
        len |= (uint64_t)h[8 + i] << (8 * i);
    if (h[4] == 'U') {
        long long got = recv_pattern(fd, len, buf);
        unsigned char st[9] = {got == (long long)len ? 'K' : 'F'};
        memcpy(st + 1, &got, 8);
        writen(fd, st, sizeof st);
    } else if (h[4] == 'D') {
        send_pattern(fd, len);
    } else if (h[4] == 'E') {
        ssize_t r;
        while ((r = read(fd, buf, CHUNK)) > 0)
            if (writen(fd, buf, (size_t)r))
                break;
    }
Exit:
    free(buf);
    close(fd);
    return NULL;
}

static int serve(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    pthread_attr_t at;
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (void *)&a, sizeof a) || listen(fd, 4096)) {
        perror("bind");
        return 2;
    }
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 128 * 1024);
    for (;;) {
        int c = accept(fd, NULL, NULL);
        pthread_t t;
        if (c < 0)
            continue;
        if (pthread_create(&t, &at, serve_conn, (void *)(intptr_t)c))
            close(c);
    }
}

/* ---------------------------------------------------------------- bulk */

static const char *g_host;
static int g_port;
static uint64_t g_bytes;
static int g_up;

static void *bulk_one(void *arg)
{
    intptr_t ok = 0;
    unsigned char h[HDR], st[9], *buf = malloc(CHUNK);
    int fd = dial(g_host, g_port);
    (void)arg;
    if (fd < 0 || !buf)
        goto Exit;
    hdr(h, g_up ? 'U' : 'D', g_bytes);
    if (writen(fd, h, HDR))
        goto Exit;
    if (g_up) {
        long long n;
        if (send_pattern(fd, g_bytes) || readn(fd, st, 9))
            goto Exit;
        memcpy(&n, st + 1, 8);
        ok = st[0] == 'K' && n == (long long)g_bytes;
    } else {
        ok = recv_pattern(fd, g_bytes, buf) == (long long)g_bytes;
    }
Exit:
    if (fd >= 0)
        close(fd);
    free(buf);
    return (void *)ok;
}

static int bulk(int streams)
{
    pthread_t t[64];
    int ok = 0;
    double t0 = now(), dt;
    for (int i = 0; i < streams; i++)
        pthread_create(&t[i], NULL, bulk_one, NULL);
    for (int i = 0; i < streams; i++) {
        void *r;
        pthread_join(t[i], &r);
        ok += r != NULL;
    }
    dt = now() - t0;
    printf("bulk dir=%s streams=%d ok=%d bytes=%llu secs=%.3f gbit_s=%.3f\n", g_up ? "up" : "down", streams, ok,
           (unsigned long long)g_bytes * (unsigned long long)streams, dt, g_bytes * 8.0 * streams / dt / 1e9);
    return ok == streams ? 0 : 1;
}

/* ---------------------------------------------------------------- request/response */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *s, int n, double p)
{
    int i = (int)(p * n);
    return s[i >= n ? n - 1 : i];
}

static int rr(int size, int count)
{
    int fd = dial(g_host, g_port), warm = count / 10 + 10, bad = 0;
    unsigned char h[HDR], *msg = malloc((size_t)size), *back = malloc((size_t)size);
    double *lat = malloc(sizeof(double) * (size_t)count), t0;
    if (fd < 0 || !msg || !back || !lat)
        return 2;
    hdr(h, 'E', 0);
    if (writen(fd, h, HDR))
        return 1;
    for (int i = -warm; i < count && !bad; i++) {
        /* each message a different window of the pattern, so a stale echo fails */
        memcpy(msg, pat + ((unsigned)(i + warm) * 7919u) % PAT_PERIOD, (size_t)size);
        t0 = now();
        if (writen(fd, msg, (size_t)size) || readn(fd, back, (size_t)size) || memcmp(msg, back, (size_t)size))
            bad = 1;
        if (i >= 0)
            lat[i] = (now() - t0) * 1e6;
    }
    close(fd);
    if (bad) {
        printf("rr size=%d ok=0\n", size);
        return 1;
    }
    qsort(lat, (size_t)count, sizeof(double), cmp_d);
    printf("rr size=%d ok=1 count=%d p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n", size, count, pct(lat, count, .5),
           pct(lat, count, .99), pct(lat, count, .999), lat[count - 1]);
    return 0;
}

/* ---------------------------------------------------------------- connections per second */

static int g_count;
static int g_next, g_ok;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static void *cps_worker(void *arg)
{
    unsigned char out[HDR + 1024], back[1024];
    (void)arg;
    for (;;) {
        int i, fd, good;
        pthread_mutex_lock(&g_mu);
        i = g_next < g_count ? g_next++ : -1;
        pthread_mutex_unlock(&g_mu);
        if (i < 0)
            return NULL;
        hdr(out, 'E', 0);
        memcpy(out + HDR, pat + ((unsigned)i * 104729u) % PAT_PERIOD, 1024);
        fd = dial(g_host, g_port);
        good = fd >= 0 && !writen(fd, out, sizeof out) && !readn(fd, back, sizeof back) &&
               !memcmp(back, out + HDR, sizeof back);
        if (fd >= 0)
            close(fd);
        pthread_mutex_lock(&g_mu);
        g_ok += good;
        pthread_mutex_unlock(&g_mu);
    }
}

static int cps(int count, int par)
{
    pthread_t t[256];
    double t0 = now(), dt;
    g_count = count;
    for (int i = 0; i < par; i++)
        pthread_create(&t[i], NULL, cps_worker, NULL);
    for (int i = 0; i < par; i++)
        pthread_join(t[i], NULL);
    dt = now() - t0;
    printf("cps count=%d parallel=%d ok=%d secs=%.3f conn_s=%.0f\n", count, par, g_ok, dt, count / dt);
    return g_ok == count ? 0 : 1;
}

/* ---------------------------------------------------------------- a ClientHello naming a server (case 8) */

/* A TLS 1.3 ClientHello (RFC 8446 4.1.2) as one record: what an SNI router reads before it picks a
 * backend. Offered: three cipher suites, no compression, server_name (RFC 6066 3) and
 * supported_versions. The echo backend never answers it as TLS; it only sends it back. */
static size_t client_hello(unsigned char *b, const char *name, unsigned seed)
{
    size_t n = strlen(name), at = 0, body, ext;
    unsigned char *p = b;
#define PUT8(v) (p[at++] = (unsigned char)(v))
#define PUT16(v) (PUT8((v) >> 8), PUT8(v))
    PUT8(0x16), PUT16(0x0301), PUT16(0);   /* record: handshake, length below */
    PUT8(0x01), PUT8(0), PUT16(0);          /* ClientHello, 24-bit length below */
    body = at;
    PUT16(0x0303);                          /* legacy_version */
    for (int i = 0; i < 32; i++)            /* random */
        PUT8(pat[(seed * 31u + (unsigned)i) % PAT_PERIOD]);
    PUT8(32);                               /* legacy_session_id */
    for (int i = 0; i < 32; i++)
        PUT8(pat[(seed * 17u + 101u + (unsigned)i) % PAT_PERIOD]);
    PUT16(6), PUT16(0x1301), PUT16(0x1302), PUT16(0xc02f);
    PUT8(1), PUT8(0);                       /* compression: null */
    PUT16(0);                               /* extensions, length below */
    ext = at;
    PUT16(0x0000), PUT16(n + 5), PUT16(n + 3), PUT8(0), PUT16(n); /* server_name: host_name */
    memcpy(p + at, name, n), at += n;
    PUT16(0x002b), PUT16(3), PUT8(2), PUT16(0x0304); /* supported_versions: TLS 1.3 */
#undef PUT16
#undef PUT8
    p[ext - 2] = (unsigned char)((at - ext) >> 8), p[ext - 1] = (unsigned char)(at - ext);
    p[body - 2] = (unsigned char)((at - body) >> 8), p[body - 1] = (unsigned char)(at - body);
    p[3] = (unsigned char)((at - 5) >> 8), p[4] = (unsigned char)(at - 5);
    return at;
}

/* ---------------------------------------------------------------- time to first byte */

/* COUNT connections one after the other: connect, send one message, time until the first byte of its
 * echo, then check the rest. The message is 64 B of pattern behind an 'E' header (case 3, the serve
 * backend echoes the 64 B), or with SNI a ClientHello naming it (case 8, the echo backend sends it
 * all back). Prints WHAT count=... ok=... p50_us=... */
static int first_bytes(const char *what, int count, const char *sni)
{
    double *lat = malloc(sizeof(double) * (size_t)count), t0;
    unsigned char out[512], back[512];
    int ok = 0;
    if (!lat || (sni && strlen(sni) > 253))
        return free(lat), 2;
    for (int i = 0; i < count; i++) {
        size_t len, skip = 0;
        int fd, good;
        if (sni) {
            len = client_hello(out, sni, (unsigned)i);
        } else {
            hdr(out, 'E', 0);
            memcpy(out + HDR, pat + ((unsigned)i * 7919u) % PAT_PERIOD, 64);
            len = HDR + 64, skip = HDR;
        }
        t0 = now();
        fd = dial(g_host, g_port);
        good = fd >= 0 && !writen(fd, out, len) && read(fd, back, 1) == 1;
        lat[i] = (now() - t0) * 1e6;
        good = good && !readn(fd, back + 1, len - skip - 1) && !memcmp(back, out + skip, len - skip);
        if (fd >= 0)
            close(fd);
        ok += good;
    }
    qsort(lat, (size_t)count, sizeof(double), cmp_d);
    printf("%s count=%d ok=%d p50_us=%.1f p99_us=%.1f max_us=%.1f\n", what, count, ok, pct(lat, count, .5),
           pct(lat, count, .99), lat[count - 1]);
    free(lat);
    return ok == count ? 0 : 1;
}

/* ---------------------------------------------------------------- case 6: many connections at once */

/* Raises the soft descriptor limit to the hard one: case 6 holds about 10,000 sockets. */
static void nofile_max(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

#define ECHO_READ 16384

/* One echo connection: bytes it could not take at once wait in pend (reading stops meanwhile). */
typedef struct {
    int fd;
    size_t npend, off;
    unsigned char *pend;
} econn_t;

static void echo_close(int ep, econn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pend);
    free(c);
}

/* Writes what is pending; returns 0 when all of it went, 1 when the socket is full, -1 on error. */
static int echo_flush(econn_t *c)
{
    while (c->off < c->npend) {
        ssize_t w = write(c->fd, c->pend + c->off, c->npend - c->off);
        if (w < 0)
            return errno == EAGAIN ? 1 : -1;
        c->off += (size_t)w;
    }
    free(c->pend);
    c->pend = NULL, c->npend = c->off = 0;
    return 0;
}

static void echo_event(int ep, econn_t *c, uint32_t ev)
{
    static unsigned char buf[ECHO_READ];
    struct epoll_event e = {.data.ptr = c};
    if (c->pend != NULL) {
        int rc = echo_flush(c);
        if (rc < 0)
            goto Close;
        if (rc == 0) {
            e.events = EPOLLIN;
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        }
        return;
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf), w = 0;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0)
            goto Close;
        while (w < r) {
            ssize_t n = write(c->fd, buf + w, (size_t)(r - w));
            if (n < 0 && errno == EAGAIN) {
                if ((c->pend = malloc((size_t)(r - w))) == NULL)
                    goto Close;
                memcpy(c->pend, buf + w, (size_t)(r - w));
                c->npend = (size_t)(r - w), c->off = 0;
                e.events = EPOLLOUT;
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                return;
            }
            if (n < 0)
                goto Close;
            w += n;
        }
    }
Close:
    echo_close(ep, c);
}

static int echo_serve(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1, ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL}, evs[256];
    nofile_max();
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ep < 0 || bind(lfd, (void *)&a, sizeof a) || listen(lfd, 4096) || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e)) {
        perror("echo");
        return 2;
    }
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr != NULL) {
                echo_event(ep, evs[i].data.ptr, evs[i].events);
                continue;
            }
            for (;;) { /* the listener */
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                econn_t *c;
                if (fd < 0)
                    break;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if ((c = calloc(1, sizeof *c)) == NULL) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                e.events = EPOLLIN, e.data.ptr = c;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e)) {
                    close(fd);
                    free(c);
                }
            }
        }
    }
}

enum { H_IDLE = 0, H_CONNECT, H_ECHO, H_HELD, H_DONE, H_FAILED };

typedef struct {
    int fd;
    unsigned char state;
    unsigned got;
    unsigned char *back; /* the echo, while one is awaited */
} hconn_t;

typedef struct {
    int ep, size, inflight, active;
    hconn_t *c;
    int count;
    int ok, f_connect, f_echo, f_timeout;
} hold_t;

/* What connection i sends in round 0 (opening) and 1 (release): its own window of the pattern. */
static const unsigned char *hold_msg(int i, int round)
{
    return pat + ((unsigned)(2 * i + round) * 7919u) % PAT_PERIOD;
}

static void hold_fail(hold_t *h, int i, int *counter)
{
    hconn_t *c = &h->c[i];
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    free(c->back);
    c->back = NULL;
    c->state = H_FAILED;
    (*counter)++;
    h->active--;
}

/* Sends the round's message and waits for its echo. */
static void hold_send(hold_t *h, int i, int round)
{
    hconn_t *c = &h->c[i];
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    c->got = 0;
    if ((c->back = malloc((size_t)h->size)) == NULL || write(c->fd, hold_msg(i, round), (size_t)h->size) != h->size ||
        epoll_ctl(h->ep, EPOLL_CTL_MOD, c->fd, &e)) {
        hold_fail(h, i, &h->f_echo);
        return;
    }
    c->state = H_ECHO;
}

static void hold_event(hold_t *h, int i, int round)
{
    hconn_t *c = &h->c[i];
    if (c->state == H_CONNECT) {
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &len) || e) {
            hold_fail(h, i, &h->f_connect);
            return;
        }
        hold_send(h, i, round);
        return;
    }
    if (c->state != H_ECHO)
        return;
    for (;;) {
        ssize_t r = read(c->fd, c->back + c->got, (size_t)h->size - c->got);
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            hold_fail(h, i, &h->f_echo);
            return;
        }
        c->got += (unsigned)r;
        if (c->got < (unsigned)h->size)
            continue;
        if (memcmp(c->back, hold_msg(i, round), (size_t)h->size)) {
            hold_fail(h, i, &h->f_echo);
            return;
        }
        free(c->back);
        c->back = NULL;
        h->ok++, h->active--;
        if (round == 0) {
            struct epoll_event ev = {.events = 0, .data.u32 = (uint32_t)i};
            epoll_ctl(h->ep, EPOLL_CTL_MOD, c->fd, &ev); /* held: not watched until the release */
            c->state = H_HELD;
        } else {
            close(c->fd);
            c->fd = -1;
            c->state = H_DONE;
        }
        return;
    }
}

/* Starts connection i of round 0 (connect) or 1 (second echo on a held connection). */
static void hold_start(hold_t *h, int i, int round, const struct sockaddr_in *to)
{
    hconn_t *c = &h->c[i];
    int one = 1;
    h->active++;
    if (round == 1) {
        hold_send(h, i, 1);
        return;
    }
    struct epoll_event e = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
    if ((c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)) < 0) {
        hold_fail(h, i, &h->f_connect);
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if ((connect(c->fd, (const void *)to, sizeof *to) && errno != EINPROGRESS) || epoll_ctl(h->ep, EPOLL_CTL_ADD, c->fd, &e)) {
        hold_fail(h, i, &h->f_connect);
        return;
    }
    c->state = H_CONNECT;
}

/* One round over every connection (round 1: those held), at most h->inflight at a time, within
 * secs. Returns the wall time it took. */
static double hold_round(hold_t *h, int round, const struct sockaddr_in *to, int nto, double secs)
{
    struct epoll_event evs[256];
    double t0 = now();
    int next = 0;
    h->ok = h->f_connect = h->f_echo = h->f_timeout = 0;
    for (;;) {
        while (h->active < h->inflight && next < h->count) {
            int i = next++;
            if (round == 0 || h->c[i].state == H_HELD)
                hold_start(h, i, round, &to[i % nto]);
        }
        if (h->active == 0 && next == h->count)
            break;
        if (now() - t0 > secs) {
            for (int i = 0; i < h->count; i++)
                if (h->c[i].state == H_CONNECT || h->c[i].state == H_ECHO)
                    hold_fail(h, i, &h->f_timeout);
            for (; next < h->count; next++)
                if (round == 0 || h->c[next].state == H_HELD)
                    h->c[next].state = H_FAILED, h->f_timeout++;
            break;
        }
        int n = epoll_wait(h->ep, evs, 256, 100);
        for (int k = 0; k < n; k++)
            hold_event(h, (int)evs[k].data.u32, round);
    }
    return now() - t0;
}

static int hold(const char *host, const char *ports, int count, int inflight, int size, int secs)
{
    struct sockaddr_in to[64];
    int nto = 0, sig = 0;
    char *list = strdup(ports), *save = NULL;
    sigset_t set;
    hold_t h = {.ep = epoll_create1(0), .size = size, .inflight = inflight, .count = count};
    nofile_max();
    for (char *p = strtok_r(list, ",", &save); p != NULL && nto < 64; p = strtok_r(NULL, ",", &save)) {
        to[nto] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(p))};
        if (inet_pton(AF_INET, host, &to[nto].sin_addr) != 1 || atoi(p) <= 0)
            return 2;
        nto++;
    }
    free(list);
    if (nto == 0 || h.ep < 0 || (h.c = calloc((size_t)count, sizeof *h.c)) == NULL)
        return 2;
    for (int i = 0; i < count; i++)
        h.c[i].fd = -1;
    /* SIGUSR1 ends the hold; taken with sigtimedwait, so blocked from the start. */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);

    double dt = hold_round(&h, 0, to, nto, secs);
    int held = h.ok, failed0 = count - h.ok;
    printf("hold ports=%d count=%d inflight=%d size=%d ok=%d failed=%d fail_connect=%d fail_echo=%d fail_timeout=%d secs=%.3f"
           " conn_s=%.0f\n",
           nto, count, inflight, size, h.ok, failed0, h.f_connect, h.f_echo, h.f_timeout, dt, h.ok / dt);
    fflush(stdout);

    struct timespec ts = {.tv_sec = secs};
    sig = sigtimedwait(&set, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT)
        return 1;
    dt = hold_round(&h, 1, to, nto, secs);
    printf("release by=%s held=%d ok=%d failed=%d fail_echo=%d fail_timeout=%d secs=%.3f\n", sig == SIGUSR1 ? "signal" : "timeout",
           held, h.ok, held - h.ok, h.f_echo, h.f_timeout, dt);
    return failed0 == 0 && h.ok == count && sig == SIGUSR1 ? 0 : 1;
}

/* ---------------------------------------------------------------- a burst of connections */

typedef struct {
    int fd;
    int state; /* 0 connecting, 1 waiting for the echo, 2 done */
    size_t got;
    double first; /* seconds from the burst's start to the first echo byte, -1 before */
} bconn_t;

enum { B_OK, B_REFUSED, B_ERROR };

static int burst(int count, int secs)
{
    bconn_t *c = calloc((size_t)count, sizeof(*c));
    double *lat = malloc(sizeof(double) * (size_t)count);
    unsigned char out[HDR + 64], back[64];
    int ep = epoll_create1(0), left = count, ok = 0, refused = 0, errors = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    if (!c || !lat || ep < 0 || inet_pton(AF_INET, g_host, &a.sin_addr) != 1)
        return 2;
    nofile_max();
    hdr(out, 'E', 0);
    memcpy(out + HDR, pat + 4242, 64);
    double t0 = now();
    for (int i = 0; i < count; i++) {
        int one = 1;
        c[i].first = -1;
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c[i].fd < 0)
            return 2;
        setsockopt(c[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c[i].fd, (void *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
            close(c[i].fd);
            c[i].state = 2, refused++, left--;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
    }
    struct epoll_event evs[256];
    while (left > 0) {
        int n = epoll_wait(ep, evs, 256, 100);
        if (now() - t0 > secs)
            break;
        for (int k = 0; k < n; k++) {
            bconn_t *b = &c[evs[k].data.u32];
            int res = -1;
            if (b->state == 0) {
                int e = 0;
                socklen_t l = sizeof e;
                getsockopt(b->fd, SOL_SOCKET, SO_ERROR, &e, &l);
                if (e != 0 || write(b->fd, out, sizeof out) != (ssize_t)sizeof out) {
                    res = B_REFUSED;
                } else {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_MOD, b->fd, &ev);
                    b->state = 1;
                }
            } else {
                ssize_t r = read(b->fd, back + b->got, sizeof back - b->got);
                if (r > 0 && b->first < 0)
                    b->first = now() - t0;
                if (r > 0)
                    b->got += (size_t)r;
                if (r <= 0 && !(r < 0 && errno == EAGAIN))
                    res = b->got == 0 ? B_REFUSED : B_ERROR; /* nothing came back: turned away */
                else if (b->got == sizeof back)
                    res = memcmp(back, out + HDR, sizeof back) ? B_ERROR : B_OK;
            }
            if (res < 0)
                continue;
            close(b->fd);
            b->state = 2, left--;
            if (res == B_OK)
                lat[ok++] = b->first * 1e6;
            else if (res == B_REFUSED)
                refused++;
            else
                errors++;
        }
    }
    for (int i = 0; i < count; i++)
        if (c[i].state != 2) {
            close(c[i].fd);
            errors++; /* not done within SECS */
        }
    qsort(lat, (size_t)ok, sizeof(double), cmp_d);
    printf("burst count=%d ok=%d refused=%d errors=%d p50_us=%.1f p99_us=%.1f max_us=%.1f secs=%.3f\n", count, ok, refused,
           errors, ok ? pct(lat, ok, .5) : 0, ok ? pct(lat, ok, .99) : 0, ok ? lat[ok - 1] : 0, now() - t0);
    free(c);
    free(lat);
    close(ep);
    return ok == count ? 0 : 1;
}

int main(int argc, char **argv)
{
    pat_init();
    if (argc == 3 && !strcmp(argv[1], "serve"))
        return serve(atoi(argv[2]));
    if (argc == 3 && !strcmp(argv[1], "echo"))
        return echo_serve(atoi(argv[2]));
    if (argc == 8 && !strcmp(argv[1], "hold") && atoi(argv[4]) > 0 && atoi(argv[5]) > 0 && atoi(argv[6]) > 0 &&
        atoi(argv[6]) <= 4096 && atoi(argv[7]) > 0)
        return hold(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]));
    if (argc < 5)
        goto Usage;
    g_host = argv[2], g_port = atoi(argv[3]);
    if (argc == 7 && !strcmp(argv[1], "bulk")) {
        int s = atoi(argv[5]);
        g_up = !strcmp(argv[4], "up");
        g_bytes = strtoull(argv[6], NULL, 10);
        if (s < 1 || s > 64 || !g_bytes)
            goto Usage;
        return bulk(s);
    }
    if (argc == 6 && !strcmp(argv[1], "rr") && atoi(argv[4]) > 0 && atoi(argv[4]) <= CHUNK && atoi(argv[5]) > 0)
        return rr(atoi(argv[4]), atoi(argv[5]));
    if (argc == 6 && !strcmp(argv[1], "cps") && atoi(argv[4]) > 0 && atoi(argv[5]) > 0 && atoi(argv[5]) <= 256)
        return cps(atoi(argv[4]), atoi(argv[5]));
    if (argc == 5 && !strcmp(argv[1], "first") && atoi(argv[4]) > 0)
        return first_bytes("first", atoi(argv[4]), NULL);
    if (argc == 6 && !strcmp(argv[1], "hello") && atoi(argv[4]) > 0)
        return first_bytes("hello", atoi(argv[4]), argv[5]);
    if (argc == 6 && !strcmp(argv[1], "burst") && atoi(argv[4]) > 0 && atoi(argv[4]) <= 10000 && atoi(argv[5]) > 0)
        return burst(atoi(argv[4]), atoi(argv[5]));
Usage:
    fprintf(stderr, "usage: p2m-bench serve PORT | bulk HOST PORT up|down STREAMS BYTES | rr HOST PORT SIZE COUNT |"
                    " cps HOST PORT COUNT PARALLEL | first HOST PORT COUNT | hello HOST PORT COUNT NAME | burst HOST PORT COUNT SECS | echo PORT |"
                    " hold HOST PORT[,PORT...] COUNT INFLIGHT SIZE SECS\n");
    return 2;
}
