/* Unit tests for lib/loop.c against lib/include/p2m/loop.h: timer heap order under random arming
 * and stopping, I/O readiness, interest changes, events of a handler removed mid-batch, deferred
 * frees, signals through signalfd, run/stop, refusals, and the magic check (in a child). */

#include "check.h"
#include "p2m/err.h"
#include "p2m/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- timers --------------------------------------------------------------------------------- */

#define NTIMERS 500

struct tt {
    p2m_loop_timer_t t;
    int id;
    int fired;
    uint64_t at; /* deadline as armed */
};

static struct tt timers[NTIMERS];
static int fire_order[NTIMERS], nfired;
static uint64_t last_at;
static int order_ok = 1;

static void on_tt(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    struct tt *x = (struct tt *)t;
    x->fired++;
    if (x->at < last_at)
        order_ok = 0;
    last_at = x->at;
    fire_order[nfired++] = x->id;
}

/* Runs turns until cond() holds or `turns` turns passed. */
static int run_until(p2m_loop_t *loop, int (*cond)(void), int turns)
{
    for (int i = 0; i < turns; i++) {
        if (cond())
            return 1;
        p2m_loop_run_once(loop, 20);
    }
    return cond();
}

static int expected_fired;
static int all_fired(void)
{
    return nfired >= expected_fired;
}

static void test_timer_heap(void)
{
    char err[P2M_ERR_LEN] = "";
    p2m_loop_t *loop = p2m_loop_new(err);
    CHECK_CTX("timer heap");
    if (!CHECK(loop != NULL))
        return;
    srand(12345);
    /* Arm every timer at a random deadline 0-60 ms, then re-arm or stop a random third. */
    for (int i = 0; i < NTIMERS; i++) {
        timers[i].id = i;
        p2m_loop_timer_init(&timers[i].t, on_tt);
        CHECK(!p2m_loop_timer_armed(&timers[i].t));
        p2m_loop_timer_start(loop, &timers[i].t, (uint64_t)(rand() % 61));
    }
    CHECK_EQ_INT(p2m_loop_timer_count(loop), NTIMERS);
    int stopped = 0;
    for (int i = 0; i < NTIMERS; i++) {
        int r = rand() % 6;
        if (r == 0) {
            p2m_loop_timer_stop(loop, &timers[i].t);
            p2m_loop_timer_stop(loop, &timers[i].t); /* twice: no-op */
            stopped++;
        } else if (r == 1) {
            p2m_loop_timer_start(loop, &timers[i].t, (uint64_t)(rand() % 61));
        }
    }
    CHECK_EQ_INT(p2m_loop_timer_count(loop), NTIMERS - stopped);
    for (int i = 0; i < NTIMERS; i++) {
        timers[i].at = p2m_loop_timer_armed(&timers[i].t) ? p2m_loop_now(loop) + p2m_loop_timer_left(loop, &timers[i].t) : 0;
        if (!p2m_loop_timer_armed(&timers[i].t))
            CHECK_EQ_INT(p2m_loop_timer_left(loop, &timers[i].t) == UINT64_MAX, 1);
    }
    expected_fired = NTIMERS - stopped;
    CHECK(run_until(loop, all_fired, 1000));
    CHECK_EQ_INT(nfired, NTIMERS - stopped);
    CHECK_MSG(order_ok, "timers fired out of deadline order");
    for (int i = 0; i < NTIMERS; i++)
        CHECK_EQ_INT(timers[i].fired, timers[i].at != 0 ? 1 : 0);
    CHECK_EQ_INT(p2m_loop_timer_count(loop), 0);
    p2m_loop_free(loop);
}

/* A callback re-arming its own timer for 0 ms must not keep the loop in one turn. */
static int rearms;
static void on_rearm(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    if (++rearms < 5)
        p2m_loop_timer_start(loop, t, 0);
}

static void test_timer_rearm(void)
{
    char err[P2M_ERR_LEN];
    p2m_loop_t *loop = p2m_loop_new(err);
    p2m_loop_timer_t t;
    CHECK_CTX("timer re-armed from its callback");
    p2m_loop_timer_init(&t, on_rearm);
    p2m_loop_timer_start(loop, &t, 0);
    p2m_loop_run_once(loop, 0);
    CHECK_EQ_INT(rearms, 1); /* one firing per turn */
    for (int i = 0; i < 10; i++)
        p2m_loop_run_once(loop, 0);
    CHECK_EQ_INT(rearms, 5);
    CHECK(!p2m_loop_timer_armed(&t));
    /* Freeing a loop with a timer armed disarms it. */
    p2m_loop_timer_start(loop, &t, 100000);
    p2m_loop_free(loop);
    CHECK(!p2m_loop_timer_armed(&t));
}

static int fcntl_ok(int fd)
{
    return fcntl(fd, F_GETFD) != -1;
}

/* --- I/O ------------------------------------------------------------------------------------ */

struct io {
    p2m_loop_handler_t h;
    int calls;
    uint32_t events;
    struct io *victim; /* closed by this handler's callback */
    int reads;
};

static void on_io(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    struct io *x = (struct io *)h;
    x->calls++;
    x->events = events;
    if (x->victim != NULL)
        p2m_loop_close(loop, &x->victim->h);
    if (x->reads && (events & EPOLLIN)) {
        char buf[64];
        ssize_t n = read(h->fd, buf, sizeof(buf));
        (void)n;
    }
}

static void test_io(void)
{
    char err[P2M_ERR_LEN] = "";
    p2m_loop_t *loop = p2m_loop_new(err);
    int a[2], b[2];
    CHECK_CTX("io");
    if (!CHECK(loop != NULL) || !CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) == 0) ||
        !CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) == 0))
        return;

    struct io x = {0}, y = {0};
    p2m_loop_handler_init(&x.h);
    p2m_loop_handler_init(&y.h);
    CHECK_EQ_INT(x.h.fd, -1);
    CHECK_RC(p2m_loop_add(loop, &x.h, a[0], EPOLLIN, on_io, err), 0, err);
    CHECK_RC(p2m_loop_add(loop, &x.h, a[0], EPOLLIN, on_io, err), -1, err); /* already registered */
    CHECK_RC(p2m_loop_add(loop, &y.h, -1, EPOLLIN, on_io, err), -1, err);   /* bad fd */
    CHECK_EQ_INT(y.h.fd, -1);
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 1);

    /* Nothing to read: the turn times out without a call. */
    CHECK_EQ_INT(p2m_loop_run_once(loop, 0), 0);
    CHECK_EQ_INT(x.calls, 0);

    /* Readable: level-triggered, reported every turn until read. */
    CHECK_EQ_INT(write(a[1], "x", 1), 1);
    CHECK_EQ_INT(p2m_loop_run_once(loop, 1000), 1);
    CHECK_EQ_INT(x.calls, 1);
    CHECK(x.events & EPOLLIN);
    p2m_loop_run_once(loop, 0);
    CHECK_EQ_INT(x.calls, 2);

    /* Interest 0: still readable, not reported. Same interest twice costs nothing and works. */
    CHECK_EQ_INT(p2m_loop_set_events(loop, &x.h, 0), 0);
    CHECK_EQ_INT(p2m_loop_events(&x.h), 0);
    p2m_loop_run_once(loop, 0);
    CHECK_EQ_INT(x.calls, 2);
    CHECK_EQ_INT(p2m_loop_set_events(loop, &x.h, EPOLLIN | EPOLLOUT), 0);
    CHECK_EQ_INT(p2m_loop_set_events(loop, &x.h, EPOLLIN | EPOLLOUT), 0);
    p2m_loop_run_once(loop, 0);
    CHECK_EQ_INT(x.calls, 3);
    CHECK((x.events & (EPOLLIN | EPOLLOUT)) == (EPOLLIN | EPOLLOUT));
    CHECK_EQ_INT(p2m_loop_set_events(loop, &x.h, EPOLLIN), 0);
    x.reads = 1;
    p2m_loop_run_once(loop, 0); /* reads the byte */
    x.reads = 0;
    int before = x.calls;
    p2m_loop_run_once(loop, 0);
    CHECK_EQ_INT(x.calls, before);

    /* Peer hang-up is reported with an interest of 0 too. */
    CHECK_EQ_INT(p2m_loop_set_events(loop, &x.h, 0), 0);
    close(a[1]);
    p2m_loop_run_once(loop, 1000);
    CHECK(x.events & EPOLLHUP);

    /* del stops watching without closing; the fd still works. */
    p2m_loop_del(loop, &x.h);
    CHECK_EQ_INT(x.h.fd, -1);
    p2m_loop_del(loop, &x.h); /* no-op */
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 0);
    CHECK_EQ_INT(fcntl_ok(a[0]), 1);
    close(a[0]);

    /* Two handlers readable in one batch; whichever runs first closes the other, whose event
     * must then be dropped (its memory could be reused by now). */
    struct io p = {0}, q = {0};
    p2m_loop_handler_init(&p.h);
    p2m_loop_handler_init(&q.h);
    CHECK_RC(p2m_loop_add(loop, &p.h, b[0], EPOLLIN, on_io, err), 0, err);
    CHECK_RC(p2m_loop_add(loop, &q.h, b[1], EPOLLIN, on_io, err), 0, err);
    p.victim = &q;
    q.victim = &p;
    CHECK_EQ_INT(write(b[0], "y", 1), 1);
    CHECK_EQ_INT(write(b[1], "z", 1), 1);
    CHECK_EQ_INT(p2m_loop_run_once(loop, 1000), 2);
    CHECK_EQ_INT(p.calls + q.calls, 1);
    CHECK_EQ_INT(p.h.fd == -1 || q.h.fd == -1, 1);
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 1);
    struct io *left = p.h.fd >= 0 ? &p : &q;
    left->victim = NULL;
    p2m_loop_close(loop, &left->h);
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 0);
    p2m_loop_free(loop);
}

/* p2m_loop_move: the fd changes owner in one call; the old owner's events of the batch are dropped,
 * the new owner gets the next ones; a move to a registered handler or from an unregistered one is
 * refused with both unchanged. */
struct mover {
    p2m_loop_handler_t h;
    int calls;
    struct io *to; /* moves its fd there from inside its callback */
};

static void on_mover(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    struct mover *m = (struct mover *)h;
    char err[P2M_ERR_LEN];
    (void)events;
    m->calls++;
    if (m->to != NULL)
        p2m_loop_move(loop, &m->h, &m->to->h, EPOLLIN, on_io, err);
}

static void test_move(void)
{
    char err[P2M_ERR_LEN] = "";
    p2m_loop_t *loop = p2m_loop_new(err);
    int a[2];
    CHECK_CTX("move");
    if (!CHECK(loop != NULL) || !CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) == 0))
        return;
    struct mover m = {0};
    struct io x = {0}, y = {0};
    p2m_loop_handler_init(&m.h);
    p2m_loop_handler_init(&x.h);
    p2m_loop_handler_init(&y.h);
    CHECK_RC(p2m_loop_move(loop, &m.h, &x.h, EPOLLIN, on_io, err), -1, err); /* from watches nothing */
    CHECK_RC(p2m_loop_add(loop, &m.h, a[0], EPOLLRDHUP, on_mover, err), 0, err);
    CHECK_RC(p2m_loop_add(loop, &y.h, a[1], 0, on_io, err), 0, err);
    CHECK_RC(p2m_loop_move(loop, &m.h, &y.h, EPOLLIN, on_io, err), -1, err); /* to is registered */
    CHECK_EQ_INT(m.h.fd, a[0]);
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 2);

    /* Readable, but the old interest (hang-up only) reports nothing. */
    CHECK_EQ_INT(write(a[1], "x", 1), 1);
    CHECK_EQ_INT(p2m_loop_run_once(loop, 0), 0);
    /* Moved with EPOLLIN: the new owner gets the byte at once, the old one nothing. */
    CHECK_RC(p2m_loop_move(loop, &m.h, &x.h, EPOLLIN, on_io, err), 0, err);
    CHECK_EQ_INT(m.h.fd, -1);
    CHECK_EQ_INT(x.h.fd, a[0]);
    CHECK_EQ_INT(p2m_loop_events(&x.h), EPOLLIN);
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 2);
    CHECK_EQ_INT(p2m_loop_run_once(loop, 1000), 1);
    CHECK_EQ_INT(x.calls, 1);
    CHECK_EQ_INT(m.calls, 0);

    /* Moved back inside a callback of the batch: the event already queued for the old owner is
     * dropped (only the mover's own runs). */
    p2m_loop_del(loop, &x.h);
    x.calls = 0;
    struct io z = {0};
    p2m_loop_handler_init(&z.h);
    m.to = &z;
    CHECK_RC(p2m_loop_add(loop, &m.h, a[0], EPOLLIN, on_mover, err), 0, err);
    CHECK_EQ_INT(p2m_loop_run_once(loop, 1000), 1);
    CHECK_EQ_INT(m.calls, 1);
    CHECK_EQ_INT(z.h.fd, a[0]);
    CHECK_EQ_INT(m.h.fd, -1);
    z.reads = 1;
    CHECK_EQ_INT(p2m_loop_run_once(loop, 1000), 1);
    CHECK_EQ_INT(z.calls, 1);
    p2m_loop_close(loop, &z.h);
    p2m_loop_close(loop, &y.h);
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 0);
    p2m_loop_free(loop);
}

/* --- deferred frees ------------------------------------------------------------------------- */

struct obj {
    p2m_loop_reap_t reap;
    int *freed;
    p2m_loop_t *loop;
    struct obj *chain; /* deferred from this one's reap */
};

static void on_reap(p2m_loop_reap_t *r)
{
    struct obj *o = (struct obj *)r;
    (*o->freed)++;
    if (o->chain != NULL)
        p2m_loop_defer(o->loop, &o->chain->reap, on_reap);
}

static void test_defer(void)
{
    char err[P2M_ERR_LEN];
    p2m_loop_t *loop = p2m_loop_new(err);
    int freed = 0;
    struct obj o1 = {.freed = &freed, .loop = loop}, o2 = {.freed = &freed, .loop = loop};
    o1.chain = &o2;
    CHECK_CTX("deferred frees");
    p2m_loop_defer(loop, &o1.reap, on_reap);
    p2m_loop_defer(loop, &o1.reap, on_reap); /* queued already: once */
    CHECK_EQ_INT(freed, 0);
    /* A queued free makes the next turn not wait. */
    CHECK_EQ_INT(p2m_loop_run_once(loop, 5000), 0);
    CHECK_EQ_INT(freed, 2); /* o2, queued by o1's reap, ran in the same turn */
    p2m_loop_defer(loop, &o2.reap, on_reap);
    o2.chain = NULL;
    p2m_loop_free(loop); /* runs what is still queued */
    CHECK_EQ_INT(freed, 3);
}

/* --- signals and run/stop ------------------------------------------------------------------- */

static int got_signal;
static void on_sig(p2m_loop_t *loop, int signo, void *data)
{
    got_signal = signo;
    *(int *)data += 1;
    p2m_loop_stop(loop);
}

static void test_signals(void)
{
    char err[P2M_ERR_LEN] = "";
    p2m_loop_t *loop = p2m_loop_new(err);
    int count = 0;
    static const int sigs[] = {SIGUSR1, SIGUSR2};
    CHECK_CTX("signals");
    CHECK_RC(p2m_loop_signals(loop, sigs, 2, on_sig, &count, err), 0, err);
    CHECK_RC(p2m_loop_signals(loop, sigs, 2, on_sig, &count, err), -1, err); /* once per loop */
    CHECK_EQ_INT(p2m_loop_handler_count(loop), 0);
    raise(SIGUSR2); /* blocked: pending until the loop reads it */
    CHECK_EQ_INT(p2m_loop_run(loop), 0);
    CHECK_EQ_INT(got_signal, SIGUSR2);
    CHECK_EQ_INT(count, 1);
    p2m_loop_free(loop);
    sigset_t now;
    sigprocmask(SIG_SETMASK, NULL, &now);
    CHECK_EQ_INT(sigismember(&now, SIGUSR1), 0); /* mask restored */

    static const int bad[] = {0x7fff};
    loop = p2m_loop_new(err);
    CHECK_RC(p2m_loop_signals(loop, bad, 1, on_sig, &count, err), -1, err);
    p2m_loop_free(loop);
}

static void on_stop_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)t;
    p2m_loop_stop(loop);
}

static void test_run_stop(void)
{
    char err[P2M_ERR_LEN];
    p2m_loop_t *loop = p2m_loop_new(err);
    p2m_loop_timer_t t;
    CHECK_CTX("run until a timer stops it");
    p2m_loop_timer_init(&t, on_stop_timer);
    uint64_t before = p2m_loop_now(loop);
    p2m_loop_timer_start(loop, &t, 30);
    CHECK_EQ_INT(p2m_loop_run(loop), 0);
    CHECK(p2m_loop_now(loop) >= before + 30);
    p2m_loop_free(loop);
    p2m_loop_free(NULL);
}

/* A handler whose magic was overwritten: the loop must abort rather than call through it. */
static void test_magic(void)
{
    CHECK_CTX("corrupted handler magic aborts");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char err[P2M_ERR_LEN];
        int sv[2];
        p2m_loop_t *loop = p2m_loop_new(err);
        socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
        static struct io x;
        p2m_loop_handler_init(&x.h);
        p2m_loop_add(loop, &x.h, sv[0], EPOLLIN, on_io, err);
        if (write(sv[1], "x", 1) != 1)
            _exit(3);
        x.h._magic = 0xdeadbeef;
        close(STDERR_FILENO); /* the abort's log line is expected, not interesting */
        signal(SIGABRT, SIG_DFL);
        p2m_loop_run_once(loop, 1000);
        _exit(0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "want SIGABRT, got status 0x%x", status);
}

int main(void)
{
    test_timer_heap();
    test_timer_rearm();
    test_io();
    test_move();
    test_defer();
    test_signals();
    test_run_stop();
    test_magic();
    return check_done("loop");
}
