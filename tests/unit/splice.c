/* Unit tests for lib/splice.c against lib/include/p2m/splice.h, over real TCP loopback
 * connections: the pool's bound, reuse, dirty pipes and waiters; every stop reason of the pump
 * (source empty, destination full, no pipe, budget, end of stream with half-close, error); the
 * small-message copy path and its switches to splice and back; and 16 MiB through a throttled
 * destination arriving intact and in order. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/splice.h"
#include "tcp_pair.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* A relay's view: the consumer writes to c[0], the relay reads c[1] and writes p[1], the pod
 * reads p[0]. */
struct rig {
    int c[2], p[2];
};

static int rig_open(struct rig *g)
{
    return tcp_pair(g->c) == 0 && tcp_pair(g->p) == 0 ? 0 : -1;
}

static void rig_close(struct rig *g)
{
    for (int i = 0; i < 2; i++) {
        if (g->c[i] >= 0)
            close(g->c[i]);
        if (g->p[i] >= 0)
            close(g->p[i]);
    }
}

/* Reads at most cap bytes, waiting up to ~2 s for the first (loopback delivery is immediate in
 * practice; the wait only bounds a broken run). Returns what read(2) returned last. */
static ssize_t read_some(int fd, char *buf, size_t cap)
{
    for (int i = 0; i < 2000; i++) {
        ssize_t n = read(fd, buf, cap);
        if (n >= 0 || errno != EAGAIN)
            return n;
        usleep(1000);
    }
    return -1;
}

static int woken[3];
static p2m_pipe_waiter_t waiters[3];
static void on_wake(p2m_pipe_waiter_t *w)
{
    woken[w - waiters]++;
}

static void test_pool(void)
{
    char err[P2M_ERR_LEN] = "";
    p2m_pipe_pool_stats_t st;
    CHECK_CTX("pool");
    CHECK(p2m_pipe_pool_new(0, 0, err) == NULL);
    p2m_pipe_pool_t *pool = p2m_pipe_pool_new(2, 16384, err);
    if (!CHECK(pool != NULL))
        return;
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.open, 0); /* nothing opened up front */
    CHECK_EQ_INT(st.size, 16384);

    p2m_pipe_t *a = p2m_pipe_get(pool), *b = p2m_pipe_get(pool);
    if (!CHECK(a != NULL && b != NULL && a != b))
        return;
    CHECK_EQ_INT(fcntl(a->rfd, F_GETPIPE_SZ), 16384);
    errno = 0;
    CHECK(p2m_pipe_get(pool) == NULL);
    CHECK_EQ_INT(errno, EAGAIN);
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.open, 2);
    CHECK_EQ_INT(st.borrowed, 2);
    CHECK_EQ_INT(st.exhausted, 1);

    /* Waiters are woken one per returned pipe, oldest first; a cancelled one never. */
    for (int i = 0; i < 3; i++)
        p2m_pipe_wait(pool, &waiters[i], on_wake);
    p2m_pipe_wait(pool, &waiters[0], on_wake); /* queued already */
    p2m_pipe_wait_cancel(pool, &waiters[1]);
    p2m_pipe_wait_cancel(pool, &waiters[1]); /* not queued: no-op */
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.waiting, 2);
    p2m_pipe_put(pool, a, 0);
    CHECK(woken[0] == 1 && woken[1] == 0 && woken[2] == 0);
    /* A clean pipe is reused as is. */
    p2m_pipe_t *c = p2m_pipe_get(pool);
    CHECK(c == a);
    /* A dirty one is closed: the pool may open a new one instead. */
    CHECK_EQ_INT(write(b->wfd, "junk", 4), 4);
    p2m_pipe_put(pool, b, 1);
    CHECK(woken[2] == 1);
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.open, 1);
    CHECK_EQ_INT(st.borrowed, 1);
    CHECK_EQ_INT(st.waiting, 0);
    p2m_pipe_t *d = p2m_pipe_get(pool);
    CHECK(d != NULL);
    char buf[8];
    CHECK_EQ_INT(read(d->rfd, buf, sizeof(buf)), -1); /* a fresh pipe holds nothing */
    p2m_pipe_put(pool, c, 0);
    p2m_pipe_put(pool, d, 0);
    p2m_pipe_put(pool, NULL, 0);
    p2m_pipe_pool_free(pool);
    p2m_pipe_pool_free(NULL);
}

static void test_pump_basic(void)
{
    char err[P2M_ERR_LEN] = "", buf[256];
    struct rig g;
    p2m_splice_dir_t d;
    p2m_pipe_pool_stats_t st;
    size_t moved = 123;
    CHECK_CTX("pump: empty source, bytes, end of stream");
    p2m_pipe_pool_t *pool = p2m_pipe_pool_new(4, 0, err);
    if (!CHECK(pool != NULL) || !CHECK(rig_open(&g) == 0))
        return;
    p2m_splice_dir_init(&d);

    /* Nothing to read: drained, and no pipe kept. */
    CHECK_EQ_INT(d.flags, P2M_SPLICE_COPY); /* a direction starts on the small-message path */
    unsigned f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved);
    CHECK_EQ_INT(f, P2M_SPLICE_COPY | P2M_SPLICE_SRC_EMPTY);
    CHECK_EQ_INT(moved, 0);
    CHECK(d.pipe == NULL);
    errno = 0;
    CHECK_EQ_INT(p2m_splice_in(&d, pool, g.c[1]), -1);
    CHECK_EQ_INT(errno, EAGAIN);
    CHECK(d.pipe == NULL);

    /* A request goes through unchanged; the pipe goes back once empty. */
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK_EQ_INT(write(g.c[0], req, sizeof(req) - 1), sizeof(req) - 1);
    for (int i = 0; i < 5000 && d.bytes == 0; i++) {
        f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved);
        if (d.bytes == 0)
            usleep(1000);
    }
    CHECK_EQ_INT(d.bytes, sizeof(req) - 1);
    CHECK(f & P2M_SPLICE_SRC_EMPTY);
    CHECK(d.pipe == NULL);
    CHECK_EQ_INT(d.pending, 0);
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.borrowed, 0);
    ssize_t n = read_some(g.p[0], buf, sizeof(buf));
    CHECK_EQ_INT(n, sizeof(req) - 1);
    CHECK(n > 0 && memcmp(buf, req, (size_t)n) == 0);

    /* End of stream: the destination is shut for writing, and stays so. */
    shutdown(g.c[0], SHUT_WR);
    for (int i = 0; i < 5000 && !(f & P2M_SPLICE_SHUT); i++) {
        f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved);
        if (!(f & P2M_SPLICE_SHUT))
            usleep(1000);
    }
    CHECK_EQ_INT(f, P2M_SPLICE_COPY | P2M_SPLICE_EOF | P2M_SPLICE_SHUT);
    CHECK_EQ_INT(read_some(g.p[0], buf, sizeof(buf)), 0); /* the pod sees the half-close */
    f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved);
    CHECK_EQ_INT(f, P2M_SPLICE_COPY | P2M_SPLICE_EOF | P2M_SPLICE_SHUT);
    CHECK_EQ_INT(moved, 0);
    /* The other direction still works after the half-close. */
    CHECK_EQ_INT(write(g.p[0], "pong", 4), 4);
    CHECK_EQ_INT(read_some(g.p[1], buf, sizeof(buf)), 4);

    p2m_splice_dir_release(&d, pool);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

/* Fills the consumer -> relay path with pattern bytes without blocking. Returns bytes written. */
static size_t fill(int fd, uint64_t *seq, size_t limit)
{
    unsigned char chunk[16384];
    size_t total = 0;
    while (total < limit) {
        size_t want = sizeof(chunk) < limit - total ? sizeof(chunk) : limit - total;
        for (size_t i = 0; i < want; i++)
            chunk[i] = (unsigned char)((*seq + i) * 2654435761u >> 13);
        ssize_t n = write(fd, chunk, want);
        if (n <= 0)
            break;
        *seq += (uint64_t)n;
        total += (size_t)n;
    }
    return total;
}

static void test_pump_backpressure(void)
{
    char err[P2M_ERR_LEN] = "";
    struct rig g;
    p2m_splice_dir_t d, other;
    p2m_pipe_pool_stats_t st;
    const size_t total = 16u << 20;
    CHECK_CTX("pump: back-pressure, no pipe, budget, integrity");
    p2m_pipe_pool_t *pool = p2m_pipe_pool_new(1, 0, err);
    if (!CHECK(pool != NULL) || !CHECK(rig_open(&g) == 0))
        return;
    p2m_splice_dir_init(&d);
    p2m_splice_dir_init(&other);

    uint64_t wseq = 0, rseq = 0;
    size_t written = 0, received = 0;
    int saw_full = 0, saw_no_pipe = 0, saw_budget = 0, corrupt = 0, full_empty = 0, rounds = 0;
    unsigned char buf[65536];
    while (received < total && rounds++ < 2000000) {
        if (written < total)
            written += fill(g.c[0], &wseq, total - written);
        size_t moved = 0;
        unsigned f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 65536, &moved);
        if (f & P2M_SPLICE_ERROR)
            break;
        if (f & P2M_SPLICE_BUDGET)
            saw_budget = 1;
        if (f & P2M_SPLICE_DST_FULL) {
            saw_full = 1;
            if (d.pipe == NULL || d.pending == 0)
                full_empty = 1;
            /* The only pipe is held: the other direction cannot get one. */
            if (!saw_no_pipe) {
                int x[2];
                if (tcp_pair(x) == 0) {
                    if (write(x[0], "z", 1) == 1) {
                        size_t m2;
                        unsigned f2 = 0;
                        for (int i = 0; i < 5000 && !(f2 & P2M_SPLICE_NO_PIPE); i++) {
                            f2 = p2m_splice_pump(&other, pool, x[1], x[1], 0, &m2);
                            if (!(f2 & P2M_SPLICE_NO_PIPE))
                                usleep(1000);
                        }
                        saw_no_pipe = (f2 & P2M_SPLICE_NO_PIPE) != 0;
                    }
                    close(x[0]);
                    close(x[1]);
                }
            }
        }
        /* The pod reads nothing until the destination was full once, then unevenly. */
        ssize_t n = saw_full ? read(g.p[0], buf, rounds % 3 == 0 ? sizeof(buf) : 3000) : 0;
        if (n > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] != (unsigned char)((rseq + (uint64_t)i) * 2654435761u >> 13))
                    corrupt = 1;
            rseq += (uint64_t)n;
            received += (size_t)n;
        }
    }
    CHECK_EQ_INT(received, total);
    CHECK_EQ_INT(d.bytes, total);
    CHECK_MSG(!corrupt, "bytes arrived changed or out of order");
    CHECK_MSG(!full_empty, "destination full without bytes in the pipe");
    CHECK_MSG(saw_full, "never saw P2M_SPLICE_DST_FULL");
    CHECK_MSG(saw_no_pipe, "never saw P2M_SPLICE_NO_PIPE");
    CHECK_MSG(saw_budget, "never saw P2M_SPLICE_BUDGET");
    CHECK(d.pipe == NULL);
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.borrowed, 0);
    CHECK_EQ_INT(st.open, 1);
    p2m_splice_dir_release(&d, pool);
    p2m_splice_dir_release(&other, pool);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

/* Pumps until `want` bytes were delivered in all or ~2 s passed; returns the last flags. */
static unsigned pump_until(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool, int src, int dst, uint64_t want)
{
    unsigned f = 0;
    size_t moved;
    for (int i = 0; i < 2000 && d->bytes < want; i++) {
        f = p2m_splice_pump(d, pool, src, dst, 0, &moved);
        if (d->bytes < want)
            usleep(1000);
    }
    return f;
}

/* Reads exactly n bytes (or fails after ~2 s) and checks them against the fill() pattern. */
static int read_pattern(int fd, uint64_t *seq, size_t n)
{
    unsigned char buf[16384];
    int bad = 0;
    for (int i = 0; i < 4000 && n > 0; i++) {
        ssize_t k = read(fd, buf, n < sizeof(buf) ? n : sizeof(buf));
        if (k <= 0) {
            usleep(500);
            continue;
        }
        for (ssize_t j = 0; j < k; j++)
            if (buf[j] != (unsigned char)((*seq + (uint64_t)j) * 2654435761u >> 13))
                bad = 1;
        *seq += (uint64_t)k;
        n -= (size_t)k;
    }
    return n == 0 && !bad;
}

static void test_pump_copy(void)
{
    char err[P2M_ERR_LEN] = "";
    struct rig g;
    p2m_splice_dir_t d;
    p2m_pipe_pool_stats_t st;
    uint64_t wseq = 0, rseq = 0, sent = 0;
    CHECK_CTX("pump: small-message copies, remainder in the pipe, switching to splice and back");
    p2m_pipe_pool_t *pool = p2m_pipe_pool_new(2, 0, err);
    if (!CHECK(pool != NULL) || !CHECK(rig_open(&g) == 0))
        return;
    p2m_splice_dir_init(&d);

    /* 64-byte messages are copied, one at a time, and no pipe stays borrowed. */
    for (int i = 0; i < 50; i++) {
        sent += fill(g.c[0], &wseq, 64);
        unsigned f = pump_until(&d, pool, g.c[1], g.p[1], sent);
        CHECK(f & P2M_SPLICE_COPY);
        CHECK_MSG(read_pattern(g.p[0], &rseq, 64), "message %d changed on the way", i);
    }
    CHECK_EQ_INT(d.bytes, sent);
    CHECK(d.pipe == NULL);

    /* The destination is full: the copied bytes wait in the pipe, in order, and go out first. */
    size_t stuffed = 0;
    uint64_t fseq = rseq; /* the pod reads the filler then the message: one continuous pattern */
    for (;;) {
        size_t k = fill(g.p[1], &fseq, 16384);
        stuffed += k;
        if (k < 16384)
            break;
    }
    wseq = fseq;
    sent += stuffed;
    d.bytes += stuffed; /* the filler reached the pod without the pump */
    sent += fill(g.c[0], &wseq, 100);
    unsigned f = 0;
    size_t moved = 0;
    for (int i = 0; i < 5000 && !(f & P2M_SPLICE_DST_FULL); i++) {
        f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved);
        if (!(f & P2M_SPLICE_DST_FULL))
            usleep(1000);
    }
    CHECK(f & P2M_SPLICE_DST_FULL);
    CHECK(d.pipe != NULL && d.pending > 0 && d.pending <= 100);
    CHECK_MSG(read_pattern(g.p[0], &rseq, stuffed), "filler changed");
    f = pump_until(&d, pool, g.c[1], g.p[1], sent);
    CHECK_EQ_INT(d.pending, 0);
    CHECK(d.pipe == NULL);
    CHECK_MSG(read_pattern(g.p[0], &rseq, 100), "the message behind a full destination changed");

    /* A bulk write fills the copy buffer: the direction goes over to splice, and comes back to
     * copying after a short splice read. */
    wseq = rseq;
    sent += fill(g.c[0], &wseq, 256 * 1024);
    int saw_splice = 0;
    for (int i = 0; i < 4000 && d.bytes < sent; i++) {
        f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved);
        if (!(f & P2M_SPLICE_COPY))
            saw_splice = 1;
        unsigned char sink[65536];
        ssize_t k = read(g.p[0], sink, sizeof(sink));
        if (k > 0) {
            for (ssize_t j = 0; j < k; j++)
                if (sink[j] != (unsigned char)((rseq + (uint64_t)j) * 2654435761u >> 13))
                    CHECK_MSG(0, "bulk byte %llu changed", (unsigned long long)(rseq + (uint64_t)j));
            rseq += (uint64_t)k;
        }
    }
    CHECK_EQ_INT(d.bytes, sent);
    CHECK_MSG(saw_splice, "a bulk write never took the splice path");
    CHECK_MSG(read_pattern(g.p[0], &rseq, (size_t)(wseq - rseq)), "bulk tail changed");
    sent += fill(g.c[0], &wseq, 64);
    f = pump_until(&d, pool, g.c[1], g.p[1], sent);
    sent += fill(g.c[0], &wseq, 64);
    f = pump_until(&d, pool, g.c[1], g.p[1], sent);
    CHECK_MSG(f & P2M_SPLICE_COPY, "small messages after bulk did not go back to copying");
    CHECK_MSG(read_pattern(g.p[0], &rseq, 128), "small messages after bulk changed");

    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.borrowed, 0);
    p2m_splice_dir_release(&d, pool);
    rig_close(&g);
    p2m_pipe_pool_free(pool);

    /* A pipe of one page: copies never read more than it can hold. */
    CHECK_CTX("pump: copies through a 4 KiB pipe");
    pool = p2m_pipe_pool_new(1, 4096, err);
    if (!CHECK(pool != NULL) || !CHECK(rig_open(&g) == 0))
        return;
    p2m_splice_dir_init(&d);
    wseq = rseq = 0;
    sent = fill(g.c[0], &wseq, 10000);
    pump_until(&d, pool, g.c[1], g.p[1], sent);
    CHECK_EQ_INT(d.bytes, sent);
    CHECK_MSG(read_pattern(g.p[0], &rseq, 10000), "bytes through a small pipe changed");
    p2m_splice_dir_release(&d, pool);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

static void test_pump_error(void)
{
    char err[P2M_ERR_LEN] = "";
    struct rig g;
    p2m_splice_dir_t d;
    p2m_pipe_pool_stats_t st;
    size_t moved;
    CHECK_CTX("pump: destination reset");
    p2m_pipe_pool_t *pool = p2m_pipe_pool_new(2, 0, err);
    if (!CHECK(pool != NULL) || !CHECK(rig_open(&g) == 0))
        return;
    p2m_splice_dir_init(&d);
    /* The pod resets its connection. */
    struct linger lg = {1, 0};
    setsockopt(g.p[0], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(g.p[0]);
    g.p[0] = -1;
    uint64_t seq = 0;
    unsigned f = 0;
    for (int i = 0; i < 2000 && !(f & P2M_SPLICE_ERROR); i++) {
        fill(g.c[0], &seq, 65536);
        f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved);
        if (!(f & P2M_SPLICE_ERROR))
            usleep(1000);
    }
    CHECK(f & P2M_SPLICE_ERROR);
    CHECK_MSG(d.err == EPIPE || d.err == ECONNRESET, "err %d (%s)", d.err, strerror(d.err));
    /* A dead direction does nothing more. */
    CHECK_EQ_INT(p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved) & P2M_SPLICE_STOP_MASK, 0);
    /* Releasing it with bytes still in its pipe closes that pipe. */
    p2m_pipe_pool_stats(pool, &st);
    unsigned open_before = st.open;
    int dirty = d.pending > 0;
    p2m_splice_dir_release(&d, pool);
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.borrowed, 0);
    CHECK_EQ_INT(st.open, dirty ? open_before - 1 : open_before);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

/* The system refuses a pipe while none is borrowed: no pipe would ever come back, so the
 * direction fails (EMFILE) instead of waiting. */
static void test_pipe_refused(void)
{
    char err[P2M_ERR_LEN] = "";
    struct rig g;
    p2m_splice_dir_t d;
    size_t moved;
    struct rlimit old, low;
    CHECK_CTX("pipe2 refused");
    p2m_pipe_pool_t *pool = p2m_pipe_pool_new(4, 0, err);
    if (!CHECK(pool != NULL) || !CHECK(rig_open(&g) == 0))
        return;
    p2m_splice_dir_init(&d);
    CHECK_EQ_INT(write(g.c[0], "data", 4), 4);
    int top = g.c[0];
    for (int i = 0; i < 2; i++) {
        top = g.c[i] > top ? g.c[i] : top;
        top = g.p[i] > top ? g.p[i] : top;
    }
    getrlimit(RLIMIT_NOFILE, &old);
    low = old;
    low.rlim_cur = (rlim_t)top + 1; /* no descriptor left for a pipe */
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    unsigned f = 0;
    for (int i = 0; i < 2000 && !(f & (P2M_SPLICE_ERROR | P2M_SPLICE_NO_PIPE)); i++) {
        f = p2m_splice_pump(&d, pool, g.c[1], g.p[1], 0, &moved);
        if (!(f & (P2M_SPLICE_ERROR | P2M_SPLICE_NO_PIPE)))
            usleep(1000);
    }
    setrlimit(RLIMIT_NOFILE, &old);
    CHECK_EQ_INT(f & (P2M_SPLICE_ERROR | P2M_SPLICE_NO_PIPE), P2M_SPLICE_ERROR);
    CHECK_MSG(d.err == EMFILE, "err %d (%s), want EMFILE", d.err, strerror(d.err));
    p2m_splice_dir_release(&d, pool);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as every user of splice.h must */
    test_pool();
    test_pump_basic();
    test_pump_backpressure();
    test_pump_copy();
    test_pump_error();
    test_pipe_refused();
    return check_done("splice");
}
