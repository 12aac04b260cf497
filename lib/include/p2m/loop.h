#ifndef P2M_LOOP_H
#define P2M_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

/* A small epoll event loop shared by the relay and the pod.
 *
 * - I/O: a p2m_loop_handler_t is embedded in the owner's object and registered with an fd and an
 *   interest set of EPOLL* bits (level-triggered unless EPOLLET is among them). epoll_data.ptr is
 *   the handler; its magic number is checked every time the loop casts it back.
 * - Timers: p2m_loop_timer_t, embedded too, in a binary min-heap with millisecond resolution.
 *   Arming and stopping cost O(log n) and never allocate, except when the heap grows.
 * - Deferred frees: p2m_loop_defer() queues an object to be released at the end of the loop turn,
 *   once no event of the current batch can still point at it (redis' freeClientAsync).
 * - Signals: p2m_loop_signals() blocks the given signals and delivers them through a signalfd.
 *
 * One loop turn: wait for events (bounded by the nearest timer), run every I/O callback of the
 * batch, then every expired timer, then every deferred free. Callbacks may add, modify, remove and
 * close any handler, arm or stop any timer, and defer frees; they must not free a handler or timer
 * that is registered or armed, nor any object an event of the current batch may name: close it and
 * defer the free instead. Not thread-safe: one loop per thread. */

typedef struct p2m_loop p2m_loop_t;
typedef struct p2m_loop_handler p2m_loop_handler_t;
typedef struct p2m_loop_timer p2m_loop_timer_t;
typedef struct p2m_loop_reap p2m_loop_reap_t;

/* Called with the epoll events that fired (EPOLLIN, EPOLLOUT, EPOLLRDHUP, EPOLLERR, EPOLLHUP). */
typedef void (*p2m_loop_io_cb)(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events);
typedef void (*p2m_loop_timer_cb)(p2m_loop_t *loop, p2m_loop_timer_t *t);
typedef void (*p2m_loop_reap_cb)(p2m_loop_reap_t *r);
typedef void (*p2m_loop_signal_cb)(p2m_loop_t *loop, int signo, void *data);

#define P2M_LOOP_HANDLER_MAGIC 0x4c4f4f50u /* "LOOP" */
#define P2M_LOOP_TIMER_MAGIC 0x54494d52u   /* "TIMR" */

struct p2m_loop_handler {
    uint32_t _magic;
    int fd;           /* the registered descriptor, -1 when none; read-only for the owner */
    uint32_t _events; /* interest as registered with epoll */
    p2m_loop_io_cb _cb;
};

struct p2m_loop_timer {
    uint32_t _magic;
    uint32_t _pass; /* loop turn it was armed in: a timer armed while timers fire waits a turn */
    size_t _slot;   /* index in the heap, SIZE_MAX when not armed */
    uint64_t _at;   /* deadline, loop milliseconds */
    p2m_loop_timer_cb _cb;
};

struct p2m_loop_reap {
    p2m_loop_reap_t *_next;
    p2m_loop_reap_cb _cb;
    int _queued;
};

/* Creates a loop. Returns it, or NULL with err. */
p2m_loop_t *p2m_loop_new(char *err);

/* Frees the loop, its signalfd (restoring the signal mask p2m_loop_signals() changed) and runs
 * the deferred frees still queued. Handlers still registered are forgotten, not closed; timers
 * still armed are disarmed. NULL is a no-op. */
void p2m_loop_free(p2m_loop_t *loop);

/* Milliseconds on the monotonic clock, read once per loop turn (and by p2m_loop_new). */
uint64_t p2m_loop_now(const p2m_loop_t *loop);

/* Rereads the clock into p2m_loop_now(): for callbacks that ran long. */
void p2m_loop_update_now(p2m_loop_t *loop);

/* --- I/O ------------------------------------------------------------------------------------ */

/* Prepares an embedded handler (magic set, fd -1). Call once before the first p2m_loop_add(). */
void p2m_loop_handler_init(p2m_loop_handler_t *h);

/* Registers fd (non-blocking, owned by the caller) with interest `events` and callback cb. h must
 * be initialised and not registered. Returns 0, or -1 with err (h unchanged). */
int p2m_loop_add(p2m_loop_t *loop, p2m_loop_handler_t *h, int fd, uint32_t events, p2m_loop_io_cb cb, char *err);

/* Changes the interest of a registered handler; costs a syscall only when it differs. Returns 0,
 * or -1 with errno (from epoll_ctl). EPOLLERR and EPOLLHUP are always reported, even with 0. */
int p2m_loop_set_events(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events);

/* The interest as last registered. */
static inline uint32_t p2m_loop_events(const p2m_loop_handler_t *h)
{
    return h->_events;
}

/* Stops watching h's fd without closing it; h->fd becomes -1 and events of the current batch for
 * h are dropped. No-op when h is not registered. */
void p2m_loop_del(p2m_loop_t *loop, p2m_loop_handler_t *h);

/* Hands the fd that `from` watches to `to` (initialised, not registered) with interest `events` and
 * callback cb, in one epoll_ctl instead of a p2m_loop_del() and a p2m_loop_add(): from becomes
 * unregistered (its events of the current batch are dropped), to watches the fd. Returns 0, or -1
 * with err (both unchanged). */
int p2m_loop_move(p2m_loop_t *loop, p2m_loop_handler_t *from, p2m_loop_handler_t *to, uint32_t events, p2m_loop_io_cb cb,
                  char *err);

/* Closes h's fd, which also removes it from epoll (the fd must not have been duplicated), and
 * makes h unregistered like p2m_loop_del(), with one syscall. No-op when h is not registered. */
void p2m_loop_close(p2m_loop_t *loop, p2m_loop_handler_t *h);

/* --- timers --------------------------------------------------------------------------------- */

/* Prepares an embedded timer (magic set, disarmed) with its callback. */
void p2m_loop_timer_init(p2m_loop_timer_t *t, p2m_loop_timer_cb cb);

/* Arms (or re-arms) t to fire once, after_ms milliseconds after p2m_loop_now(). Out of memory
 * (only when the heap must grow) aborts with a log line. */
void p2m_loop_timer_start(p2m_loop_t *loop, p2m_loop_timer_t *t, uint64_t after_ms);

/* Disarms t; no-op when it is not armed. */
void p2m_loop_timer_stop(p2m_loop_t *loop, p2m_loop_timer_t *t);

static inline int p2m_loop_timer_armed(const p2m_loop_timer_t *t)
{
    return t->_slot != SIZE_MAX;
}

/* Milliseconds until t fires (0 if due), or UINT64_MAX when it is not armed. */
uint64_t p2m_loop_timer_left(const p2m_loop_t *loop, const p2m_loop_timer_t *t);

/* --- deferred frees ------------------------------------------------------------------------- */

/* Queues cb(r) to run at the end of the current loop turn (or of the next one, when called from
 * outside the loop). Queuing an already queued r does nothing. */
void p2m_loop_defer(p2m_loop_t *loop, p2m_loop_reap_t *r, p2m_loop_reap_cb cb);

/* Runs every queued deferred free now, including those queued meanwhile. */
void p2m_loop_reap(p2m_loop_t *loop);

/* --- signals -------------------------------------------------------------------------------- */

/* Blocks the n signals in signos for the calling thread and delivers them to cb(loop, signo, data)
 * from the loop instead. Once per loop. Returns 0, or -1 with err. */
int p2m_loop_signals(p2m_loop_t *loop, const int *signos, size_t n, p2m_loop_signal_cb cb, void *data, char *err);

/* --- running -------------------------------------------------------------------------------- */

/* Runs one turn, waiting at most max_wait_ms for an event (-1: until an event or the next timer;
 * 0: not at all). Returns the number of I/O events handled, or -1 with errno when epoll_wait fails
 * for another reason than EINTR. */
int p2m_loop_run_once(p2m_loop_t *loop, int max_wait_ms);

/* Runs turns until p2m_loop_stop(). Returns 0, or -1 with errno as p2m_loop_run_once(). */
int p2m_loop_run(p2m_loop_t *loop);

/* Makes p2m_loop_run() return after the current turn. */
void p2m_loop_stop(p2m_loop_t *loop);

/* Number of armed timers and registered handlers, for tests and metrics. */
size_t p2m_loop_timer_count(const p2m_loop_t *loop);
size_t p2m_loop_handler_count(const p2m_loop_t *loop);

#endif
