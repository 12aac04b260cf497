#include "p2m/loop.h"
#include "p2m/err.h"
#include "p2m/log.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256 /* events taken per epoll_wait */

struct p2m_loop {
    int epfd;
    int stop;
    uint64_t now;
    uint32_t pass; /* turn counter, see p2m_loop_timer_t._pass */
    size_t nhandlers;

    /* The batch being dispatched: a handler removed meanwhile has its later events blanked. */
    struct epoll_event events[LOOP_BATCH];
    int batch_pos, batch_n;

    p2m_loop_timer_t **heap;
    size_t nheap, capheap;

    p2m_loop_reap_t *reap_head, **reap_tail;

    /* signals */
    p2m_loop_handler_t sig;
    sigset_t sig_mask, sig_old_mask;
    p2m_loop_signal_cb sig_cb;
    void *sig_data;
};

static uint64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Casting epoll_data.ptr back: anything but a live handler is memory corruption, never a case
 * to handle, so it aborts with a line saying what was found. */
static p2m_loop_handler_t *handler_check(void *ptr)
{
    p2m_loop_handler_t *h = ptr;
    if (h->_magic != P2M_LOOP_HANDLER_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "loop_bad_handler", "ptr=%p magic=0x%08x", ptr, (unsigned)h->_magic);
        abort();
    }
    return h;
}

static void timer_check(const p2m_loop_timer_t *t)
{
    if (t->_magic != P2M_LOOP_TIMER_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "loop_bad_timer", "ptr=%p magic=0x%08x", (const void *)t, (unsigned)t->_magic);
        abort();
    }
}

p2m_loop_t *p2m_loop_new(char *err)
{
    p2m_loop_t *loop = calloc(1, sizeof(*loop));
    if (loop == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    if ((loop->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        p2m_err(err, "epoll_create1: %s", strerror(errno));
        free(loop);
        return NULL;
    }
    loop->now = clock_ms();
    loop->reap_tail = &loop->reap_head;
    p2m_loop_handler_init(&loop->sig);
    return loop;
}

void p2m_loop_free(p2m_loop_t *loop)
{
    if (loop == NULL)
        return;
    p2m_loop_reap(loop);
    for (size_t i = 0; i < loop->nheap; i++)
        loop->heap[i]->_slot = SIZE_MAX;
    free(loop->heap);
    if (loop->sig.fd >= 0) {
        close(loop->sig.fd);
        pthread_sigmask(SIG_SETMASK, &loop->sig_old_mask, NULL);
    }
    close(loop->epfd);
    free(loop);
}

uint64_t p2m_loop_now(const p2m_loop_t *loop)
{
    return loop->now;
}

void p2m_loop_update_now(p2m_loop_t *loop)
{
    loop->now = clock_ms();
}

/* --- I/O ------------------------------------------------------------------------------------ */

void p2m_loop_handler_init(p2m_loop_handler_t *h)
{
    h->_magic = P2M_LOOP_HANDLER_MAGIC;
    h->fd = -1;
    h->_events = 0;
    h->_cb = NULL;
}

int p2m_loop_add(p2m_loop_t *loop, p2m_loop_handler_t *h, int fd, uint32_t events, p2m_loop_io_cb cb, char *err)
{
    handler_check(h);
    if (h->fd >= 0)
        return p2m_err(err, "handler already watches fd %d", h->fd);
    struct epoll_event ev = {.events = events, .data.ptr = h};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return p2m_err(err, "epoll_ctl ADD fd %d: %s", fd, strerror(errno));
    h->fd = fd;
    h->_events = events;
    h->_cb = cb;
    loop->nhandlers++;
    return 0;
}

int p2m_loop_set_events(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    if (h->_events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = h};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, h->fd, &ev) != 0)
        return -1;
    h->_events = events;
    return 0;
}

/* Blanks the events still to be dispatched in this batch that name h. */
static void forget(p2m_loop_t *loop, p2m_loop_handler_t *h)
{
    for (int i = loop->batch_pos + 1; i < loop->batch_n; i++)
        if (loop->events[i].data.ptr == h)
            loop->events[i].data.ptr = NULL;
    h->fd = -1;
    h->_events = 0;
    loop->nhandlers--;
}

void p2m_loop_del(p2m_loop_t *loop, p2m_loop_handler_t *h)
{
    if (h->fd < 0)
        return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, h->fd, NULL);
    forget(loop, h);
}

int p2m_loop_move(p2m_loop_t *loop, p2m_loop_handler_t *from, p2m_loop_handler_t *to, uint32_t events, p2m_loop_io_cb cb, char *err)
{
    handler_check(from);
    handler_check(to);
    if (from->fd < 0)
        return p2m_err(err, "handler watches no fd");
    if (to->fd >= 0)
        return p2m_err(err, "handler already watches fd %d", to->fd);
    int fd = from->fd;
    struct epoll_event ev = {.events = events, .data.ptr = to};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
        return p2m_err(err, "epoll_ctl MOD fd %d: %s", fd, strerror(errno));
    forget(loop, from); /* an event of this batch for from was about the old owner */
    loop->nhandlers++;
    to->fd = fd;
    to->_events = events;
    to->_cb = cb;
    return 0;
}

void p2m_loop_close(p2m_loop_t *loop, p2m_loop_handler_t *h)
{
    if (h->fd < 0)
        return;
    close(h->fd);
    forget(loop, h);
}

/* --- timers: a binary min-heap on _at ------------------------------------------------------- */

static void heap_set(p2m_loop_t *loop, size_t i, p2m_loop_timer_t *t)
{
    loop->heap[i] = t;
    t->_slot = i;
}

static void heap_up(p2m_loop_t *loop, size_t i)
{
    p2m_loop_timer_t *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (loop->heap[parent]->_at <= t->_at)
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(p2m_loop_t *loop, size_t i)
{
    p2m_loop_timer_t *t = loop->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= loop->nheap)
            break;
        if (c + 1 < loop->nheap && loop->heap[c + 1]->_at < loop->heap[c]->_at)
            c++;
        if (t->_at <= loop->heap[c]->_at)
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

static void heap_remove(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    size_t i = t->_slot;
    p2m_loop_timer_t *last = loop->heap[--loop->nheap];
    t->_slot = SIZE_MAX;
    if (last == t)
        return;
    heap_set(loop, i, last);
    if (i > 0 && loop->heap[(i - 1) / 2]->_at > last->_at)
        heap_up(loop, i);
    else
        heap_down(loop, i);
}

void p2m_loop_timer_init(p2m_loop_timer_t *t, p2m_loop_timer_cb cb)
{
    t->_magic = P2M_LOOP_TIMER_MAGIC;
    t->_pass = 0;
    t->_slot = SIZE_MAX;
    t->_at = 0;
    t->_cb = cb;
}

void p2m_loop_timer_start(p2m_loop_t *loop, p2m_loop_timer_t *t, uint64_t after_ms)
{
    timer_check(t);
    uint64_t at = after_ms > UINT64_MAX - loop->now ? UINT64_MAX : loop->now + after_ms;
    t->_pass = loop->pass;
    if (t->_slot != SIZE_MAX) {
        uint64_t old = t->_at;
        t->_at = at;
        if (at < old)
            heap_up(loop, t->_slot);
        else
            heap_down(loop, t->_slot);
        return;
    }
    if (loop->nheap == loop->capheap) {
        size_t cap = loop->capheap ? loop->capheap * 2 : 64;
        p2m_loop_timer_t **grown = realloc(loop->heap, cap * sizeof(*grown));
        if (grown == NULL) {
            p2m_log(P2M_LOG_ERROR, "oom", "what=timer_heap entries=%zu", cap);
            abort();
        }
        loop->heap = grown;
        loop->capheap = cap;
    }
    t->_at = at;
    heap_set(loop, loop->nheap++, t);
    heap_up(loop, t->_slot);
}

void p2m_loop_timer_stop(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    timer_check(t);
    if (t->_slot != SIZE_MAX)
        heap_remove(loop, t);
}

uint64_t p2m_loop_timer_left(const p2m_loop_t *loop, const p2m_loop_timer_t *t)
{
    if (t->_slot == SIZE_MAX)
        return UINT64_MAX;
    return t->_at > loop->now ? t->_at - loop->now : 0;
}

/* Fires the timers due at loop->now. A timer armed during this pass (even for 0 ms) waits for the
 * next turn, so that a callback re-arming itself cannot keep the loop here. */
static void run_timers(p2m_loop_t *loop)
{
    while (loop->nheap > 0) {
        p2m_loop_timer_t *t = loop->heap[0];
        if (t->_at > loop->now || t->_pass == loop->pass)
            break;
        heap_remove(loop, t);
        t->_cb(loop, t);
    }
}

/* --- deferred frees ------------------------------------------------------------------------- */

void p2m_loop_defer(p2m_loop_t *loop, p2m_loop_reap_t *r, p2m_loop_reap_cb cb)
{
    if (r->_queued)
        return;
    r->_queued = 1;
    r->_cb = cb;
    r->_next = NULL;
    *loop->reap_tail = r;
    loop->reap_tail = &r->_next;
}

void p2m_loop_reap(p2m_loop_t *loop)
{
    while (loop->reap_head != NULL) {
        p2m_loop_reap_t *r = loop->reap_head;
        loop->reap_head = r->_next;
        if (loop->reap_head == NULL)
            loop->reap_tail = &loop->reap_head;
        r->_queued = 0;
        r->_cb(r); /* may free r, may queue more */
    }
}

/* --- signals -------------------------------------------------------------------------------- */

static void on_signal(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)events;
    struct signalfd_siginfo si[8];
    ssize_t n = read(h->fd, si, sizeof(si));
    for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(si[0]); i++)
        loop->sig_cb(loop, (int)si[i].ssi_signo, loop->sig_data);
}

int p2m_loop_signals(p2m_loop_t *loop, const int *signos, size_t n, p2m_loop_signal_cb cb, void *data, char *err)
{
    int fd = -1;
    int ret = -1;
    if (loop->sig.fd >= 0)
        return p2m_err(err, "signals already set up");
    sigemptyset(&loop->sig_mask);
    for (size_t i = 0; i < n; i++)
        if (sigaddset(&loop->sig_mask, signos[i]) != 0)
            return p2m_err(err, "invalid signal %d", signos[i]);
    if (pthread_sigmask(SIG_BLOCK, &loop->sig_mask, &loop->sig_old_mask) != 0)
        return p2m_err(err, "pthread_sigmask failed");
    if ((fd = signalfd(-1, &loop->sig_mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        p2m_err(err, "signalfd: %s", strerror(errno));
        goto Exit;
    }
    loop->sig_cb = cb;
    loop->sig_data = data;
    if (p2m_loop_add(loop, &loop->sig, fd, EPOLLIN, on_signal, err) != 0)
        goto Exit;
    /* Not counted: a loop whose only handler is its signalfd has nothing to do. */
    loop->nhandlers--;
    ret = 0;
Exit:
    if (ret != 0) {
        if (fd >= 0)
            close(fd);
        pthread_sigmask(SIG_SETMASK, &loop->sig_old_mask, NULL);
    }
    return ret;
}

/* --- running -------------------------------------------------------------------------------- */

int p2m_loop_run_once(p2m_loop_t *loop, int max_wait_ms)
{
    int timeout = max_wait_ms;
    if (loop->nheap > 0) {
        uint64_t left = loop->heap[0]->_at > loop->now ? loop->heap[0]->_at - loop->now : 0;
        if (timeout < 0 || left < (uint64_t)timeout)
            timeout = left > INT32_MAX ? INT32_MAX : (int)left;
    }
    if (loop->reap_head != NULL)
        timeout = 0;

    int n = epoll_wait(loop->epfd, loop->events, LOOP_BATCH, timeout);
    int saved = errno;
    loop->now = clock_ms();
    loop->pass++;
    if (n < 0) {
        if (saved != EINTR) {
            errno = saved;
            return -1;
        }
        n = 0;
    }

    loop->batch_n = n;
    for (loop->batch_pos = 0; loop->batch_pos < n; loop->batch_pos++) {
        struct epoll_event *ev = &loop->events[loop->batch_pos];
        if (ev->data.ptr == NULL)
            continue; /* removed by an earlier callback of this batch */
        p2m_loop_handler_t *h = handler_check(ev->data.ptr);
        h->_cb(loop, h, ev->events);
    }
    loop->batch_n = 0;
    loop->batch_pos = 0;

    run_timers(loop);
    p2m_loop_reap(loop);
    return n;
}

int p2m_loop_run(p2m_loop_t *loop)
{
    loop->stop = 0;
    while (!loop->stop)
        if (p2m_loop_run_once(loop, -1) < 0)
            return -1;
    return 0;
}

void p2m_loop_stop(p2m_loop_t *loop)
{
    loop->stop = 1;
}

size_t p2m_loop_timer_count(const p2m_loop_t *loop)
{
    return loop->nheap;
}

size_t p2m_loop_handler_count(const p2m_loop_t *loop)
{
    return loop->nhandlers;
}
