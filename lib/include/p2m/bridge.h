#ifndef P2M_BRIDGE_H
#define P2M_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include "p2m/loop.h"
#include "p2m/splice.h"

/* Two connected sockets joined both ways with p2m_splice_pump(): the data path of the relay's tunnel (consumer <-> pod) and
 * of the pod's (relay <-> local service), written once.
 *
 * dir[s] moves side s -> side 1 - s through a pipe borrowed from the pool only while bytes sit in it. Interest per side
 * follows the two directions: ops->read_events while its direction may read (not at end of stream, not waiting for the other
 * side to drain, not waiting for a pipe), EPOLLOUT while the other direction waits for it to drain. An interest change costs
 * an epoll_ctl only when it changes. End of stream passes on as shutdown(SHUT_WR). The bridge is done once both directions
 * are shut, on any error, or when a side hangs up (EPOLLHUP) with bytes still owed to it; it then calls ops->on_close.
 *
 * Ownership: the bridge is embedded in its owner's object. The owner sets fd[] and registers side[] with its own callbacks
 * (it may watch the sides for its own reasons before p2m_bridge_start()), and its callbacks hand every event of a started
 * bridge to p2m_bridge_event(). The bridge frees nothing; it closes the descriptors only in p2m_bridge_close(), which the
 * owner calls, typically from on_close. Callbacks run from inside p2m_bridge_event(), p2m_bridge_pump() or
 * p2m_bridge_update(), never from p2m_bridge_close(). Not thread-safe, as lib/loop.c. */

typedef struct p2m_bridge p2m_bridge_t;

/* What differs between owners; one static instance per program, shared by its bridges. */
typedef struct {
    p2m_loop_io_cb io[2]; /* the owner's callbacks of side 0 and 1: a side that is not watched is registered with these */
    const char *name[2];  /* how close reasons name the sides: "NAME_error error=...", "NAME_hangup" */
    uint32_t read_events; /* the interest of a side whose direction may read: EPOLLIN, perhaps with EPOLLRDHUP */
    size_t budget;        /* bytes one pump of a direction moves at most, for fairness (0: no limit) */
    /* Called after a pump of direction d delivered n > 0 bytes (they are in dir[d].bytes already); NULL when not needed.
     * It must not close the bridge. */
    void (*on_moved)(p2m_bridge_t *b, int d, size_t n);
    /* The bridge is done. reason is "done" (both directions shut), "error error=\"...\" dir=in|out" (a splice failed; in
     * is dir[0]), "NAME_error error=\"...\"" (EPOLLERR on a side), "NAME_hangup" or "epoll" (an interest was refused);
     * borrowed for the call. The bridge is stopped when this runs: the owner should call p2m_bridge_close() (now or later)
     * and must not pump it again. Called at most once per p2m_bridge_start(). */
    void (*on_close)(p2m_bridge_t *b, const char *reason);
} p2m_bridge_ops_t;

struct p2m_bridge {
    int fd[2];                  /* the sides' sockets, -1 for none; set by the owner, kept while a side is not watched */
    p2m_loop_handler_t side[2]; /* their registrations, made by the owner (p2m_loop_add() or p2m_bridge_watch()) */
    p2m_splice_dir_t dir[2];    /* dir[s] moves side s -> side 1 - s; dir[s].bytes counts the bytes it delivered */
    uint8_t hup[2]; /* side s reported EPOLLHUP (done both ways); the owner may set it before the start, as the bridge does */
    uint8_t _started;
    p2m_loop_t *_loop;
    p2m_pipe_pool_t *_pipes;
    const p2m_bridge_ops_t *_ops;
};

/* Prepares b: no descriptors, sides not registered, directions empty, not started. loop, pipes and ops are borrowed and
 * must outlive b. Call once, before anything else. */
void p2m_bridge_init(p2m_bridge_t *b, p2m_loop_t *loop, p2m_pipe_pool_t *pipes, const p2m_bridge_ops_t *ops);

/* Both fd[] are set and side[] registered (a side already known hung up may be unregistered): from now on the owner's
 * callbacks pass every event to p2m_bridge_event(). Follow it with p2m_bridge_update(), or with p2m_bridge_pump() when
 * bytes are known to wait on one side. Costs no syscall. */
void p2m_bridge_start(p2m_bridge_t *b);

/* Whether b is started and not yet done or closed. */
static inline int p2m_bridge_running(const p2m_bridge_t *b)
{
    return b->_started;
}

/* Handles the epoll events of side s of a started bridge: pumps what they allow, then as p2m_bridge_update(). May call
 * ops->on_close. No-op on a bridge that is not running. */
void p2m_bridge_event(p2m_bridge_t *b, int s, uint32_t events);

/* Pumps direction d now (bytes wait in side d's socket: no need to wait for the next loop turn), then as
 * p2m_bridge_update(). May call ops->on_close. No-op on a bridge that is not running. */
void p2m_bridge_pump(p2m_bridge_t *b, int d);

/* Calls ops->on_close when b is done or broken, else sets both sides' interest from the directions' state. No-op on a
 * bridge that is not running. */
void p2m_bridge_update(p2m_bridge_t *b);

/* Sets side s's interest to events, registering fd[s] with ops->io[s] when it is not watched. Returns 0, or -1 when epoll
 * refused. For owners that drive the sides themselves (a TLS tunnel) with the same registrations. */
int p2m_bridge_watch(p2m_bridge_t *b, int s, uint32_t events);

/* Stops b: gives its pipes back (bytes still in them are lost), cancels its pipe waits and closes both descriptors
 * (unregistering them); fd[] become -1. The byte counters stay. Safe on a bridge never started and when called twice. */
void p2m_bridge_close(p2m_bridge_t *b);

#endif
