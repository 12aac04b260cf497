/* p2m_redis_ev_t over p2m_loop_t: a watch is a loop handler, a timer a loop timer, each in a small
 * struct of its own that lives until the manager frees it (never inside its own callback). */
#include "p2m/redis_loop.h"
#include "p2m/log.h"

#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>

typedef struct {
    p2m_loop_handler_t h;
    p2m_redis_ev_cb cb;
    void *arg;
} io_t;

typedef struct {
    p2m_loop_timer_t t;
    p2m_redis_ev_cb cb;
    void *arg;
} rtimer_t;

static p2m_loop_t *loop_of(p2m_redis_ev_t *ev)
{
    return ((p2m_redis_loop_t *)ev)->loop;
}

static void *xcalloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=redis_loop");
        abort();
    }
    return p;
}

static void on_io(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    io_t *io = (io_t *)((char *)h - offsetof(io_t, h));
    (void)loop;
    (void)events;
    io->cb(io->arg);
}

static void *io_new(p2m_redis_ev_t *ev, p2m_redis_ev_cb cb, void *arg)
{
    (void)ev;
    io_t *io = xcalloc(sizeof(*io));
    p2m_loop_handler_init(&io->h);
    io->cb = cb;
    io->arg = arg;
    return io;
}

static int io_start(p2m_redis_ev_t *ev, void *p, int fd, char *err)
{
    io_t *io = p;
    return p2m_loop_add(loop_of(ev), &io->h, fd, EPOLLIN, on_io, err);
}

static void io_close(p2m_redis_ev_t *ev, void *p)
{
    io_t *io = p;
    p2m_loop_close(loop_of(ev), &io->h); /* its events of the current batch are dropped */
}

static void io_free(p2m_redis_ev_t *ev, void *p)
{
    io_close(ev, p);
    free(p);
}

static void on_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    rtimer_t *tm = (rtimer_t *)((char *)t - offsetof(rtimer_t, t));
    (void)loop;
    tm->cb(tm->arg);
}

static void *timer_new(p2m_redis_ev_t *ev, p2m_redis_ev_cb cb, void *arg)
{
    (void)ev;
    rtimer_t *tm = xcalloc(sizeof(*tm));
    p2m_loop_timer_init(&tm->t, on_timer);
    tm->cb = cb;
    tm->arg = arg;
    return tm;
}

static void timer_start(p2m_redis_ev_t *ev, void *p, unsigned ms)
{
    p2m_loop_timer_start(loop_of(ev), &((rtimer_t *)p)->t, ms);
}

static void timer_stop(p2m_redis_ev_t *ev, void *p)
{
    p2m_loop_timer_stop(loop_of(ev), &((rtimer_t *)p)->t);
}

static void timer_free(p2m_redis_ev_t *ev, void *p)
{
    timer_stop(ev, p);
    free(p);
}

static uint64_t now_ms(p2m_redis_ev_t *ev)
{
    return p2m_loop_now(loop_of(ev));
}

void p2m_redis_loop_init(p2m_redis_loop_t *ev, p2m_loop_t *loop)
{
    ev->super = (p2m_redis_ev_t){io_new, io_start, io_close, io_free, timer_new, timer_start, timer_stop, timer_free, now_ms};
    ev->loop = loop;
}
