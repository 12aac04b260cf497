/* Unit tests for lib/bridge.c against lib/include/p2m/bridge.h, driven by a real lib/loop.c over TCP loopback pairs (splice
 * needs sockets that can feed a pipe, and a reset needs TCP): bytes both ways and the byte counters; half-close each way,
 * with the other direction still moving; a peer's reset and a hang-up whose error was already read; a slow reader that
 * fills the pipe and the socket buffers and then resumes, the reading side unwatched meanwhile; a pipe shortage where the
 * pool is empty and a second bridge waits for the first's pipe; and p2m_bridge_close() on bridges never started. */

#include "check.h"
#include "p2m/bridge.h"
#include "p2m/err.h"
#include "tcp_pair.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One bridge and its two peers: peer[0] talks to side 0, peer[1] to side 1. */
struct rig {
    p2m_bridge_t br;
    int peer[2];
    int closed;        /* on_close calls */
    char reason[128];  /* the last one's reason */
    uint64_t moved[2]; /* what on_moved reported per direction */
};

static void on_side0(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    p2m_bridge_event(&((struct rig *)((char *)h - offsetof(struct rig, br.side[0])))->br, 0, events);
}

static void on_side1(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    p2m_bridge_event(&((struct rig *)((char *)h - offsetof(struct rig, br.side[1])))->br, 1, events);
}

static void on_moved(p2m_bridge_t *b, int d, size_t n)
{
    ((struct rig *)b)->moved[d] += n;
}

static void on_close(p2m_bridge_t *b, const char *reason)
{
    struct rig *g = (struct rig *)b;
    g->closed++;
    snprintf(g->reason, sizeof(g->reason), "%s", reason);
    p2m_bridge_close(b);
}

/* The relay's shape (EPOLLRDHUP with EPOLLIN) and the pod's (EPOLLIN alone, no on_moved). */
static const p2m_bridge_ops_t ops_rdhup = {
    .io = {on_side0, on_side1},
    .name = {"a", "b"},
    .read_events = EPOLLIN | EPOLLRDHUP,
    .budget = 1024 * 1024,
    .on_moved = on_moved,
    .on_close = on_close,
};
static const p2m_bridge_ops_t ops_plain = {
    .io = {on_side0, on_side1},
    .name = {"a", "b"},
    .read_events = EPOLLIN,
    .budget = 0,
    .on_moved = NULL,
    .on_close = on_close,
};

static p2m_loop_t *loop;

/* Two loopback pairs, the bridge on their inner ends, registered and started as an owner does it. */
static int rig_open(struct rig *g, p2m_pipe_pool_t *pool, const p2m_bridge_ops_t *ops)
{
    int a[2], b[2];
    memset(g, 0, sizeof(*g));
    g->peer[0] = g->peer[1] = -1;
    p2m_bridge_init(&g->br, loop, pool, ops);
    if (tcp_pair(a) != 0)
        return -1;
    if (tcp_pair(b) != 0) {
        close(a[0]);
        close(a[1]);
        return -1;
    }
    g->peer[0] = a[0];
    g->br.fd[0] = a[1];
    g->br.fd[1] = b[0];
    g->peer[1] = b[1];
    /* Before the start an owner watches its sides for its own reasons: here for nothing. */
    if (p2m_bridge_watch(&g->br, 0, 0) != 0 || p2m_bridge_watch(&g->br, 1, 0) != 0)
        return -1;
    p2m_bridge_start(&g->br);
    p2m_bridge_update(&g->br);
    return 0;
}

static void rig_close(struct rig *g)
{
    p2m_bridge_close(&g->br);
    for (int i = 0; i < 2; i++)
        if (g->peer[i] >= 0)
            close(g->peer[i]);
    g->peer[0] = g->peer[1] = -1;
}

/* Runs loop turns until *flag is set or about 3 s passed. Returns *flag. */
static int run_until(const int *flag)
{
    for (int i = 0; i < 600 && !*flag; i++)
        p2m_loop_run_once(loop, 5);
    return *flag;
}

static void run_turns(int n)
{
    for (int i = 0; i < n; i++)
        p2m_loop_run_once(loop, 2);
}

/* Reads exactly len bytes from fd, running the loop meanwhile. Returns the bytes read (short on EOF or error). */
static size_t read_all(int fd, char *buf, size_t len)
{
    size_t got = 0;
    for (int i = 0; i < 2000 && got < len; i++) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0 || errno != EAGAIN)
            break;
        p2m_loop_run_once(loop, 2);
    }
    return got;
}

/* Waits for end of stream on fd, running the loop meanwhile. Returns 0 at EOF, the errno of a failed read, or -1 when
 * bytes or nothing came. */
static int read_eof(int fd)
{
    char c;
    for (int i = 0; i < 1000; i++) {
        ssize_t n = read(fd, &c, 1);
        if (n == 0)
            return 0;
        if (n > 0)
            return -1;
        if (errno != EAGAIN)
            return errno;
        p2m_loop_run_once(loop, 2);
    }
    return -1;
}

/* Small socket buffers on the way to peer 1, so that a reader that does not read stops the bridge soon (loopback's
 * autotuned buffers would take megabytes first). */
static void small_buffers(struct rig *g)
{
    int sz = 16384;
    setsockopt(g->br.fd[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(g->peer[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

/* Closes *fd with a reset (SO_LINGER 0) rather than a FIN. */
static void reset_close(int *fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(*fd);
    *fd = -1;
}

static p2m_pipe_pool_t *pool_new(unsigned max, unsigned size)
{
    char err[P2M_ERR_LEN] = "";
    p2m_pipe_pool_t *pool = p2m_pipe_pool_new(max, size, err);
    if (pool == NULL) {
        printf("pool: %s\n", err);
        abort();
    }
    return pool;
}

static unsigned borrowed(const p2m_pipe_pool_t *pool)
{
    p2m_pipe_pool_stats_t st;
    p2m_pipe_pool_stats(pool, &st);
    return st.borrowed;
}

/* Bytes both ways, counted in dir[].bytes and on_moved; then one side half-closes, the other direction still moves,
 * and once the second side half-closes too the bridge is done. first is the side that shuts first. */
static void test_half_close(const p2m_bridge_ops_t *ops, int first)
{
    p2m_pipe_pool_t *pool = pool_new(4, 0);
    struct rig g;
    CHECK_CTX("half-close, side %d first, %s", first, ops == &ops_rdhup ? "EPOLLIN|EPOLLRDHUP" : "EPOLLIN");
    if (!CHECK(rig_open(&g, pool, ops) == 0))
        return;
    char buf[64];
    CHECK(write(g.peer[0], "hello", 5) == 5);
    CHECK_EQ_INT(read_all(g.peer[1], buf, 5), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(write(g.peer[1], "world!", 6) == 6);
    CHECK_EQ_INT(read_all(g.peer[0], buf, 6), 6);
    CHECK(memcmp(buf, "world!", 6) == 0);
    CHECK_EQ_INT(g.br.dir[0].bytes, 5);
    CHECK_EQ_INT(g.br.dir[1].bytes, 6);
    if (ops->on_moved != NULL) {
        CHECK_EQ_INT(g.moved[0], 5);
        CHECK_EQ_INT(g.moved[1], 6);
    }

    int other = 1 - first;
    CHECK(write(g.peer[first], "last", 4) == 4);
    CHECK(shutdown(g.peer[first], SHUT_WR) == 0);
    CHECK_EQ_INT(read_all(g.peer[other], buf, 4), 4);
    CHECK_EQ_INT(read_eof(g.peer[other]), 0); /* the half-close passed on */
    CHECK(g.br.dir[first].flags & P2M_SPLICE_SHUT);
    CHECK_EQ_INT(g.closed, 0);
    CHECK(p2m_bridge_running(&g.br));
    /* The other way still works, after the first side's direction stopped reading. */
    CHECK(write(g.peer[other], "reply", 5) == 5);
    CHECK_EQ_INT(read_all(g.peer[first], buf, 5), 5);
    CHECK(memcmp(buf, "reply", 5) == 0);
    CHECK(shutdown(g.peer[other], SHUT_WR) == 0);
    CHECK_EQ_INT(read_eof(g.peer[first]), 0);
    CHECK(run_until(&g.closed));
    CHECK_EQ_INT(g.closed, 1);
    CHECK_EQ_STR(g.reason, "done");
    CHECK_EQ_INT(g.br.dir[first].bytes, first == 0 ? 9 : 10);
    CHECK_EQ_INT(g.br.dir[other].bytes, other == 0 ? 10 : 11);
    CHECK(!p2m_bridge_running(&g.br));
    CHECK(g.br.fd[0] == -1 && g.br.fd[1] == -1);
    CHECK_EQ_INT(borrowed(pool), 0);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

/* Peer 1 resets its connection (SO_LINGER 0). The bridge closes with the reset in its reason, once, and peer 0 sees its
 * connection end. */
static void test_reset(void)
{
    p2m_pipe_pool_t *pool = pool_new(4, 0);
    struct rig g;
    CHECK_CTX("reset");
    if (!CHECK(rig_open(&g, pool, &ops_rdhup) == 0))
        return;
    char buf[16];
    CHECK(write(g.peer[0], "ping", 4) == 4);
    CHECK_EQ_INT(read_all(g.peer[1], buf, 4), 4);
    reset_close(&g.peer[1]);
    CHECK(run_until(&g.closed));
    CHECK_EQ_INT(g.closed, 1);
    /* Which of the two notices first depends on the event order: EPOLLERR on side b, or a pump's failed read. */
    CHECK_MSG(strstr(g.reason, strerror(ECONNRESET)) != NULL &&
                  (strncmp(g.reason, "b_error error=", 14) == 0 || strncmp(g.reason, "error error=", 12) == 0),
              "reason: expected b_error or error with a reset, got \"%s\"", g.reason);
    int e = read_eof(g.peer[0]);
    CHECK_MSG(e == 0 || e == ECONNRESET, "peer 0: expected end of stream, got %d", e);
    CHECK_EQ_INT(borrowed(pool), 0);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

/* Peer 1 resets while bytes from peer 0 are owed to it, and its error has been read already (as a read elsewhere does):
 * epoll then reports EPOLLHUP without EPOLLERR, and the bridge closes with b_hangup. */
static void test_hangup(void)
{
    p2m_pipe_pool_t *pool = pool_new(4, 0);
    struct rig g;
    CHECK_CTX("hang-up");
    if (!CHECK(rig_open(&g, pool, &ops_plain) == 0))
        return;
    reset_close(&g.peer[1]);
    usleep(20000); /* the reset crosses loopback */
    int e = 0;
    socklen_t len = sizeof(e);
    CHECK(getsockopt(g.br.fd[1], SOL_SOCKET, SO_ERROR, &e, &len) == 0);
    CHECK_EQ_INT(e, ECONNRESET);
    CHECK(run_until(&g.closed));
    CHECK_EQ_INT(g.closed, 1);
    CHECK_EQ_STR(g.reason, "b_hangup");
    CHECK(g.br.fd[0] == -1 && g.br.fd[1] == -1);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

/* Fills the path to a reader that does not read: bytes wait in the pipe, side 0 is no longer read (no EPOLLIN), side 1
 * is watched for EPOLLOUT. Then the reader reads everything, intact and in order, and the counters agree. */
#define SLOW_TOTAL (8u << 20)
static void fill(char *buf, size_t len, size_t off)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((off + i) * 7 % 251);
}

static void test_slow_reader(void)
{
    p2m_pipe_pool_t *pool = pool_new(4, 0);
    struct rig g;
    CHECK_CTX("slow reader");
    if (!CHECK(rig_open(&g, pool, &ops_rdhup) == 0))
        return;
    small_buffers(&g);
    static char out[65536], in[65536], want[65536];
    size_t sent = 0, got = 0;
    int stalled = 0;
    /* Phase 1: write until nothing more goes in and the bridge holds bytes it cannot deliver. */
    for (int i = 0; i < 4000 && stalled < 20; i++) {
        size_t n = SLOW_TOTAL - sent < sizeof(out) ? SLOW_TOTAL - sent : sizeof(out);
        fill(out, n, sent);
        ssize_t w = n > 0 ? write(g.peer[0], out, n) : -1;
        if (w > 0)
            sent += (size_t)w;
        p2m_loop_run_once(loop, 1);
        stalled = w > 0 ? 0 : stalled + 1;
    }
    CHECK(sent < SLOW_TOTAL);
    CHECK(g.br.dir[0].flags & P2M_SPLICE_DST_FULL);
    CHECK(g.br.dir[0].pending > 0);
    CHECK(g.br.dir[0].pipe != NULL);
    CHECK(!(p2m_loop_events(&g.br.side[0]) & EPOLLIN));
    CHECK(p2m_loop_events(&g.br.side[1]) & EPOLLOUT);
    CHECK_EQ_INT(g.closed, 0);
    /* Phase 2: the reader wakes up; the writer finishes. */
    int bad = 0;
    for (int i = 0; i < 200000 && got < SLOW_TOTAL && !bad; i++) {
        if (sent < SLOW_TOTAL) {
            size_t n = SLOW_TOTAL - sent < sizeof(out) ? SLOW_TOTAL - sent : sizeof(out);
            fill(out, n, sent);
            ssize_t w = write(g.peer[0], out, n);
            if (w > 0)
                sent += (size_t)w;
        }
        ssize_t r = read(g.peer[1], in, sizeof(in));
        if (r > 0) {
            fill(want, (size_t)r, got);
            bad = memcmp(in, want, (size_t)r) != 0;
            got += (size_t)r;
        } else if (r == 0 || errno != EAGAIN) {
            break;
        }
        p2m_loop_run_once(loop, 0);
    }
    CHECK_MSG(!bad, "bytes differ near offset %zu", got);
    CHECK_EQ_INT(got, SLOW_TOTAL);
    CHECK_EQ_INT(g.br.dir[0].bytes, SLOW_TOTAL);
    CHECK_EQ_INT(g.moved[0], SLOW_TOTAL);
    CHECK_EQ_INT(g.br.dir[1].bytes, 0);
    run_turns(5);
    CHECK(p2m_loop_events(&g.br.side[0]) & EPOLLIN);
    CHECK(!(p2m_loop_events(&g.br.side[1]) & EPOLLOUT));
    CHECK_EQ_INT(borrowed(pool), 0); /* an idle bridge holds no pipe */
    CHECK_EQ_INT(g.closed, 0);
    rig_close(&g);
    p2m_pipe_pool_free(pool);
}

/* A pool of one pipe: bridge x holds it (its reader is slow), so bridge y, with bytes to move, waits without reading
 * (no EPOLLIN on its side 0). Once x's reader drains x, the pipe comes back, y is woken and moves its bytes. */
static void test_pipe_shortage(void)
{
    p2m_pipe_pool_t *pool = pool_new(1, 0);
    struct rig x, y;
    CHECK_CTX("pipe shortage");
    if (!CHECK(rig_open(&x, pool, &ops_rdhup) == 0))
        return;
    if (!CHECK(rig_open(&y, pool, &ops_plain) == 0)) {
        rig_close(&x);
        return;
    }
    small_buffers(&x);
    static char out[65536], in[65536];
    memset(out, 'x', sizeof(out));
    size_t xsent = 0;
    int stalled = 0;
    for (int i = 0; i < 4000 && stalled < 20; i++) {
        ssize_t w = write(x.peer[0], out, sizeof(out));
        if (w > 0)
            xsent += (size_t)w;
        p2m_loop_run_once(loop, 1);
        stalled = w > 0 ? 0 : stalled + 1;
    }
    CHECK(x.br.dir[0].pipe != NULL);
    CHECK_EQ_INT(borrowed(pool), 1);

    CHECK(write(y.peer[0], "waiting", 7) == 7);
    run_turns(10);
    CHECK(y.br.dir[0].flags & P2M_SPLICE_NO_PIPE);
    CHECK(!(p2m_loop_events(&y.br.side[0]) & EPOLLIN));
    CHECK_EQ_INT(y.br.dir[0].bytes, 0);
    p2m_pipe_pool_stats_t st;
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.waiting, 1);
    CHECK(st.exhausted > 0);
    CHECK_EQ_INT(x.closed + y.closed, 0);

    /* x's reader drains it: the pipe comes back and y goes on. */
    size_t xgot = 0;
    for (int i = 0; i < 10000 && xgot < xsent; i++) {
        ssize_t r = read(x.peer[1], in, sizeof(in));
        if (r > 0)
            xgot += (size_t)r;
        p2m_loop_run_once(loop, r > 0 ? 0 : 1); /* a zero window reopens at the sender's next probe */
    }
    CHECK_EQ_INT(xgot, xsent);
    char buf[16];
    CHECK_EQ_INT(read_all(y.peer[1], buf, 7), 7);
    CHECK(memcmp(buf, "waiting", 7) == 0);
    CHECK(!(y.br.dir[0].flags & P2M_SPLICE_NO_PIPE));
    CHECK_EQ_INT(y.br.dir[0].bytes, 7);
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.waiting, 0);

    /* A bridge closed while it waits for a pipe leaves no waiter behind. */
    xsent = 0;
    stalled = 0;
    for (int i = 0; i < 4000 && stalled < 20; i++) {
        ssize_t w = write(x.peer[0], out, sizeof(out));
        stalled = w > 0 ? 0 : stalled + 1;
        p2m_loop_run_once(loop, 1);
    }
    CHECK(write(y.peer[0], "again", 5) == 5);
    run_turns(10);
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.waiting, 1);
    rig_close(&y);
    p2m_pipe_pool_stats(pool, &st);
    CHECK_EQ_INT(st.waiting, 0);
    rig_close(&x);
    CHECK_EQ_INT(borrowed(pool), 0);
    p2m_pipe_pool_free(pool);
}

/* Closing a bridge never started, or twice, is safe; an event or a pump on a bridge not running does nothing. */
static void test_close_unstarted(void)
{
    p2m_pipe_pool_t *pool = pool_new(1, 0);
    p2m_bridge_t b;
    CHECK_CTX("close unstarted");
    p2m_bridge_init(&b, loop, pool, &ops_plain);
    p2m_bridge_close(&b);
    p2m_bridge_close(&b);
    CHECK(!p2m_bridge_running(&b));
    int a[2];
    if (CHECK(tcp_pair(a) == 0)) {
        p2m_bridge_init(&b, loop, pool, &ops_plain);
        b.fd[0] = a[1];
        p2m_bridge_event(&b, 0, EPOLLIN);
        p2m_bridge_pump(&b, 0);
        p2m_bridge_update(&b);
        CHECK_EQ_INT(b.dir[0].flags, P2M_SPLICE_COPY);
        p2m_bridge_close(&b); /* closes a[1], never registered */
        CHECK_EQ_INT(b.fd[0], -1);
        CHECK_EQ_INT(read_eof(a[0]), 0);
        close(a[0]);
    }
    p2m_pipe_pool_free(pool);
}

int main(void)
{
    char err[P2M_ERR_LEN] = "";
    signal(SIGPIPE, SIG_IGN); /* as every user of splice.h must */
    loop = p2m_loop_new(err);
    if (loop == NULL) {
        printf("loop: %s\n", err);
        return 1;
    }
    for (int first = 0; first < 2; first++) {
        test_half_close(&ops_rdhup, first);
        test_half_close(&ops_plain, first);
    }
    test_reset();
    test_hangup();
    test_slow_reader();
    test_pipe_shortage();
    test_close_unstarted();
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 0);
    p2m_loop_reap(loop);
    p2m_loop_free(loop);
    return check_done("bridge");
}
