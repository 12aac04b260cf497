/* p2m-load: many TCP exchanges with an echo service at HOST:PORT, for the system tests
 * (tests/e2e/41-system-scale.sh, 47-soak.sh), where a shell loop of socat processes would measure
 * fork(2).
 *
 *   p2m-load [-c CONNS] [-p PARALLEL] [-b BYTES|MIN-MAX] [-t SECONDS] [-r BYTES_PER_S] [-s SEED]
 *            [-o FILE] HOST PORT
 *
 * Each of CONNS connections (default 1) sends BYTES (default 1024) pseudo-random bytes, its own
 * stream, shuts its write side (a half-close the far end must pass on), reads until end of stream
 * and checks that exactly what it sent came back. At most PARALLEL (default 1) connections are open
 * at once, and each must end within SECONDS (default 30). HOST is a numeric IPv4 or IPv6 address.
 *   -b MIN-MAX  each connection sends its own size, drawn from [MIN, MAX] by SEED and its index;
 *   -r N        each connection sends at most N bytes per second (slow, long-lived consumers);
 *   -s SEED     selects other streams (and sizes), so that runs differ; 0, the default, gives the
 *               streams of the versions without -s;
 *   -o FILE     appends one line per connection: `INDEX START_MS END_MS BYTES GOT RESULT`, times
 *               in unix milliseconds (CLOCK_REALTIME, to compare with other programs' events),
 *               GOT the bytes that came back and checked, RESULT `ok` or a failure reason.
 *
 * Prints one line
 *     load conns=N ok=N failed=N parallel_max=N ms=N rate=N/s p50_ms=N p99_ms=N max_ms=N bytes=N
 * (bytes: sent and checked back by the connections that were served) and, for each kind of
 * failure, `fail reason=R count=N first=I` (I the first connection index that failed so). The
 * reasons `mismatch` and `too_long` mean bytes came back that were not sent (corruption); the
 * others mean bytes were missing. Exit status: 0 when every connection was served, 1 when any
 * failed, 2 on bad usage or when the process itself failed (out of memory, epoll, FILE). */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOAD_CONNS_MAX 10000000L
#define LOAD_PARALLEL_MAX 60000L
#define LOAD_BYTES_MAX (1L << 30)
#define LOAD_SECONDS_MAX 3600L
#define LOAD_READ_CHUNK 65536
#define LOAD_TICK_MS 100

/* Why a connection failed; the index into reason_names. */
enum { R_CONNECT, R_RESET, R_SHORT, R_LONG, R_MISMATCH, R_TIMEOUT, R_IO, R_COUNT };
static const char *const reason_names[R_COUNT] = {"connect", "reset", "short", "too_long", "mismatch", "timeout", "io"};

typedef struct {
    int fd; /* -1: slot free */
    long idx;
    size_t bytes, sent, got; /* bytes: what this connection sends */
    int shut;                /* write side shut */
    int writing;             /* EPOLLOUT asked for */
    int paused;              /* -r: waits for the next tick to send more */
    uint64_t t_start, wall_start;
} conn_t;

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

static uint64_t splitmix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t seed; /* -s, mixed into every stream; 0 keeps the original streams */

/* Byte `off` of connection idx's stream: a splitmix64 of (seed, idx, off / 8), so that both the
 * sender and the checker can compute any byte without keeping the stream. */
static unsigned char stream_byte(long idx, size_t off)
{
    uint64_t z = splitmix(((uint64_t)idx << 32) ^ (uint64_t)(off / 8) ^ 0x9e3779b97f4a7c15ull ^ seed * 0xd1b54a32d192ed03ull);
    return (unsigned char)(z >> (8 * (off % 8)));
}

static void stream_fill(long idx, size_t off, unsigned char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = stream_byte(idx, off + i);
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "N" or "MIN-MAX", both within [0, LOAD_BYTES_MAX]. */
static int parse_bytes(const char *s, long *lo, long *hi)
{
    char buf[64];
    const char *dash = strchr(s, '-');
    if (dash == NULL)
        return parse_long(s, 0, LOAD_BYTES_MAX, lo) == 0 ? (*hi = *lo, 0) : -1;
    if ((size_t)(dash - s) >= sizeof(buf))
        return -1;
    memcpy(buf, s, (size_t)(dash - s));
    buf[dash - s] = '\0';
    if (parse_long(buf, 0, LOAD_BYTES_MAX, lo) != 0 || parse_long(dash + 1, 0, LOAD_BYTES_MAX, hi) != 0 || *hi < *lo)
        return -1;
    return 0;
}

/* What connection idx sends: lo..hi, drawn from (seed, idx). */
static size_t conn_bytes(long idx, long lo, long hi)
{
    if (hi == lo)
        return (size_t)lo;
    return (size_t)lo + (size_t)(splitmix((uint64_t)idx * 0x9e3779b97f4a7c15ull ^ seed) % (uint64_t)(hi - lo + 1));
}

/* -r: the bytes connection c may have sent by now (one tick's worth at once, then rate per s). */
static size_t allowance(const conn_t *c, long rate, uint64_t now)
{
    if (rate <= 0)
        return c->bytes;
    uint64_t a = (uint64_t)rate * (now - c->t_start + LOAD_TICK_MS) / 1000;
    return a < c->bytes ? (size_t)a : c->bytes;
}

/* -o: one line for connection c, which ended now with reason (-1: served). */
static void record(FILE *out, const conn_t *c, int reason)
{
    if (out != NULL)
        fprintf(out, "%ld %llu %llu %zu %zu %s\n", c->idx, (unsigned long long)c->wall_start,
                (unsigned long long)clock_ms(CLOCK_REALTIME), c->bytes, c->got, reason < 0 ? "ok" : reason_names[reason]);
}

static void usage(void)
{
    fprintf(stderr, "usage: p2m-load [-c CONNS] [-p PARALLEL] [-b BYTES|MIN-MAX] [-t SECONDS] [-r BYTES_PER_S] [-s SEED]\n"
                    "                [-o FILE] HOST PORT\n");
}

int main(int argc, char **argv)
{
    long conns = 1, parallel = 1, bytes_lo = 1024, bytes_hi = 1024, seconds = 30, rate = 0, seed_arg = 0;
    int opt, ep = -1, status = 2;
    conn_t *slots = NULL;
    uint64_t *lat = NULL;
    unsigned char *buf = NULL, *want = NULL;
    const char *out_path = NULL;
    FILE *out = NULL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV}, *ai = NULL;

    while ((opt = getopt(argc, argv, "c:p:b:t:r:s:o:")) != -1) {
        int bad;
        switch (opt) {
        case 'c':
            bad = parse_long(optarg, 1, LOAD_CONNS_MAX, &conns);
            break;
        case 'p':
            bad = parse_long(optarg, 1, LOAD_PARALLEL_MAX, &parallel);
            break;
        case 'b':
            bad = parse_bytes(optarg, &bytes_lo, &bytes_hi);
            break;
        case 't':
            bad = parse_long(optarg, 1, LOAD_SECONDS_MAX, &seconds);
            break;
        case 'r':
            bad = parse_long(optarg, 1, LOAD_BYTES_MAX, &rate);
            break;
        case 's':
            bad = parse_long(optarg, 0, LONG_MAX, &seed_arg);
            break;
        case 'o':
            out_path = optarg;
            bad = 0;
            break;
        default:
            bad = 1;
        }
        if (bad) {
            usage();
            return 2;
        }
    }
    seed = (uint64_t)seed_arg;
    if (argc - optind != 2) {
        usage();
        return 2;
    }
    int gai = getaddrinfo(argv[optind], argv[optind + 1], &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "p2m-load: %s %s: %s\n", argv[optind], argv[optind + 1], gai_strerror(gai));
        return 2;
    }
    if (parallel > conns)
        parallel = conns;

    long failed[R_COUNT] = {0}, first[R_COUNT], next = 0, done = 0, ok = 0, open_now = 0, open_max = 0;
    unsigned long long bytes_ok = 0;
    if (out_path != NULL && (out = fopen(out_path, "a")) == NULL) {
        fprintf(stderr, "p2m-load: %s: %s\n", out_path, strerror(errno));
        goto Exit;
    }
    slots = calloc((size_t)parallel, sizeof(*slots));
    lat = calloc((size_t)conns, sizeof(*lat));
    buf = malloc(LOAD_READ_CHUNK);
    want = malloc(LOAD_READ_CHUNK);
    if (slots == NULL || lat == NULL || buf == NULL || want == NULL || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        fprintf(stderr, "p2m-load: %s\n", strerror(errno));
        goto Exit;
    }
    for (long i = 0; i < parallel; i++)
        slots[i].fd = -1;
    uint64_t t0 = now_ms(), last_tick = t0;

    while (done < conns) {
        /* Fill the free slots with new connections. */
        for (long s = 0; s < parallel && next < conns; s++) {
            conn_t *c = &slots[s];
            if (c->fd >= 0)
                continue;
            *c = (conn_t){.fd = -1, .idx = next++, .t_start = now_ms(), .wall_start = clock_ms(CLOCK_REALTIME)};
            c->bytes = conn_bytes(c->idx, bytes_lo, bytes_hi);
            c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->fd < 0) {
                fprintf(stderr, "p2m-load: socket: %s\n", strerror(errno));
                goto Exit;
            }
            if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
                if (failed[R_CONNECT]++ == 0)
                    first[R_CONNECT] = c->idx;
                record(out, c, R_CONNECT);
                close(c->fd);
                c->fd = -1;
                done++;
                continue;
            }
            c->writing = 1;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u64 = (uint64_t)s};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
                fprintf(stderr, "p2m-load: epoll_ctl: %s\n", strerror(errno));
                goto Exit;
            }
            if (++open_now > open_max)
                open_max = open_now;
        }

        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, LOAD_TICK_MS);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "p2m-load: epoll_wait: %s\n", strerror(errno));
            goto Exit;
        }
        uint64_t now = now_ms();
        for (int e = 0; e < n; e++) {
            conn_t *c = &slots[evs[e].data.u64];
            int reason = -1, finished = 0;
            if (c->fd < 0)
                continue;
            if (c->writing && (evs[e].events & (EPOLLOUT | EPOLLERR))) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if (c->sent == 0 && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr != 0) {
                    reason = R_CONNECT;
                    goto Done;
                }
                size_t may = allowance(c, rate, now);
                while (c->sent < may) {
                    size_t len = may - c->sent < LOAD_READ_CHUNK ? may - c->sent : LOAD_READ_CHUNK;
                    stream_fill(c->idx, c->sent, buf, len);
                    ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL);
                    if (w < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                            break;
                        reason = errno == ECONNRESET || errno == EPIPE ? R_RESET : R_IO;
                        goto Done;
                    }
                    c->sent += (size_t)w;
                }
                if ((c->sent == c->bytes && !c->shut) || (c->sent < c->bytes && c->sent == may)) {
                    /* All sent: half-close. Or -r's allowance spent: the tick resumes it. */
                    if (c->sent == c->bytes) {
                        shutdown(c->fd, SHUT_WR);
                        c->shut = 1;
                    } else {
                        c->paused = 1;
                    }
                    c->writing = 0;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u64 = evs[e].data.u64};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                for (;;) {
                    ssize_t r = recv(c->fd, buf, LOAD_READ_CHUNK, 0);
                    if (r < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                            break;
                        reason = errno == ECONNRESET ? R_RESET : c->sent == 0 ? R_CONNECT : R_IO;
                        goto Done;
                    }
                    if (r == 0) {
                        if (c->got == c->bytes && c->shut)
                            finished = 1;
                        else
                            reason = R_SHORT;
                        goto Done;
                    }
                    if (c->got + (size_t)r > c->sent) {
                        reason = R_LONG;
                        goto Done;
                    }
                    stream_fill(c->idx, c->got, want, (size_t)r);
                    if (memcmp(buf, want, (size_t)r) != 0) {
                        reason = R_MISMATCH;
                        goto Done;
                    }
                    c->got += (size_t)r;
                }
            }
            continue;
        Done:
            if (finished) {
                lat[ok++] = now - c->t_start;
                bytes_ok += c->bytes;
            } else if (failed[reason]++ == 0) {
                first[reason] = c->idx;
            }
            record(out, c, finished ? -1 : reason);
            close(c->fd); /* also leaves the epoll set */
            c->fd = -1;
            open_now--;
            done++;
        }
        /* Deadlines, checked once per tick. */
        if (now - last_tick >= LOAD_TICK_MS) {
            last_tick = now;
            for (long s = 0; s < parallel; s++) {
                conn_t *c = &slots[s];
                if (c->fd >= 0 && now - c->t_start > (uint64_t)seconds * 1000) {
                    if (failed[R_TIMEOUT]++ == 0)
                        first[R_TIMEOUT] = c->idx;
                    record(out, c, R_TIMEOUT);
                    close(c->fd);
                    c->fd = -1;
                    open_now--;
                    done++;
                } else if (c->fd >= 0 && c->paused && allowance(c, rate, now) > c->sent) {
                    c->paused = 0;
                    c->writing = 1;
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u64 = (uint64_t)s};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
        }
    }

    uint64_t ms = now_ms() - t0;
    qsort(lat, (size_t)ok, sizeof(*lat), cmp_u64);
    printf("load conns=%ld ok=%ld failed=%ld parallel_max=%ld ms=%llu rate=%llu/s p50_ms=%llu p99_ms=%llu max_ms=%llu bytes=%llu\n",
           conns, ok, conns - ok, open_max, (unsigned long long)ms, (unsigned long long)(ms > 0 ? (uint64_t)conns * 1000 / ms : 0),
           (unsigned long long)(ok > 0 ? lat[(ok - 1) / 2] : 0), (unsigned long long)(ok > 0 ? lat[(ok - 1) * 99 / 100] : 0),
           (unsigned long long)(ok > 0 ? lat[ok - 1] : 0), bytes_ok);
    for (int r = 0; r < R_COUNT; r++) {
        if (failed[r] > 0)
            printf("fail reason=%s count=%ld first=%ld\n", reason_names[r], failed[r], first[r]);
    }
    status = ok == conns ? 0 : 1;
    if (out != NULL && fflush(out) != 0) {
        fprintf(stderr, "p2m-load: %s: %s\n", out_path, strerror(errno));
        status = 2;
    }
Exit:
    if (out != NULL)
        fclose(out);
    if (slots != NULL) {
        for (long s = 0; s < parallel; s++) {
            if (slots[s].fd >= 0)
                close(slots[s].fd);
        }
    }
    if (ep >= 0)
        close(ep);
    free(slots);
    free(lat);
    free(buf);
    free(want);
    freeaddrinfo(ai);
    return status;
}
