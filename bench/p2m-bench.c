/* p2m-bench: loopback benchmark client and backend for bench/run. Every byte is checked.
 *
 *   p2m-bench serve PORT                          backend on 127.0.0.1:PORT (thread per connection)
 *   p2m-bench bulk HOST PORT up|down STREAMS BYTES  STREAMS connections at once, BYTES each
 *   p2m-bench rr HOST PORT SIZE COUNT             COUNT request/responses of SIZE bytes on one connection
 *   p2m-bench cps HOST PORT COUNT PARALLEL        COUNT x (connect, 1 KiB each way, close)
 *   p2m-bench first HOST PORT COUNT               COUNT x, one at a time: connect, 64 B, first echo
 *                                                 byte (timed), rest of the echo (checked), close
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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* ---------------------------------------------------------------- time to first byte */

static int first(int count)
{
    double *lat = malloc(sizeof(double) * (size_t)count), t0;
    unsigned char out[HDR + 64], back[64];
    int ok = 0;
    if (!lat)
        return 2;
    for (int i = 0; i < count; i++) {
        int fd, good;
        hdr(out, 'E', 0);
        memcpy(out + HDR, pat + ((unsigned)i * 7919u) % PAT_PERIOD, 64);
        t0 = now();
        fd = dial(g_host, g_port);
        good = fd >= 0 && !writen(fd, out, sizeof out) && read(fd, back, 1) == 1;
        lat[i] = (now() - t0) * 1e6;
        good = good && !readn(fd, back + 1, sizeof back - 1) && !memcmp(back, out + HDR, sizeof back);
        if (fd >= 0)
            close(fd);
        ok += good;
    }
    qsort(lat, (size_t)count, sizeof(double), cmp_d);
    printf("first count=%d ok=%d p50_us=%.1f p99_us=%.1f max_us=%.1f\n", count, ok, pct(lat, count, .5),
           pct(lat, count, .99), lat[count - 1]);
    return ok == count ? 0 : 1;
}

int main(int argc, char **argv)
{
    pat_init();
    if (argc == 3 && !strcmp(argv[1], "serve"))
        return serve(atoi(argv[2]));
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
        return first(atoi(argv[4]));
Usage:
    fprintf(stderr, "usage: p2m-bench serve PORT | bulk HOST PORT up|down STREAMS BYTES | rr HOST PORT SIZE COUNT |"
                    " cps HOST PORT COUNT PARALLEL | first HOST PORT COUNT\n");
    return 2;
}
