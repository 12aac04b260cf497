#include "p2m/bridge.h"
#include "p2m/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void p2m_bridge_init(p2m_bridge_t *b, p2m_loop_t *loop, p2m_pipe_pool_t *pipes, const p2m_bridge_ops_t *ops)
{
    memset(b, 0, sizeof(*b));
    for (int s = 0; s < 2; s++) {
        p2m_loop_handler_init(&b->side[s]);
        b->fd[s] = -1;
        p2m_splice_dir_init(&b->dir[s]);
    }
    b->_loop = loop;
    b->_pipes = pipes;
    b->_ops = ops;
}

void p2m_bridge_start(p2m_bridge_t *b)
{
    b->_started = 1;
}

/* Stops the bridge before telling the owner, so that nothing the owner does from on_close reaches it again. */
static void done(p2m_bridge_t *b, const char *reason)
{
    b->_started = 0;
    b->_ops->on_close(b, reason);
}

int p2m_bridge_watch(p2m_bridge_t *b, int s, uint32_t events)
{
    char err[P2M_ERR_LEN];
    if (b->side[s].fd < 0)
        return p2m_loop_add(b->_loop, &b->side[s], b->fd[s], events, b->_ops->io[s], err);
    return p2m_loop_set_events(b->_loop, &b->side[s], events);
}

/* Sets each side's interest from the state of the two directions. Returns 0, or -1 when epoll refused (the caller closes).
 * Never closes: pipe waiters call it from inside another bridge's pump.
 *
 * A side that hung up (EPOLLHUP: its peer finished and so did we, level-triggered for good) is watched only while its
 * direction can read; while that direction waits for the other side or for a pipe, the side is taken out of epoll and put
 * back when the wait ends. */
static int arm(p2m_bridge_t *b)
{
    for (int s = 0; s < 2; s++) {
        if (b->fd[s] < 0)
            continue;
        int can_read =
            !(b->dir[s].flags & (P2M_SPLICE_EOF | P2M_SPLICE_SHUT | P2M_SPLICE_ERROR | P2M_SPLICE_DST_FULL | P2M_SPLICE_NO_PIPE));
        if (b->hup[s]) {
            if (!can_read)
                p2m_loop_del(b->_loop, &b->side[s]);
            else if (b->side[s].fd < 0 && p2m_bridge_watch(b, s, b->_ops->read_events) != 0)
                return -1;
            continue;
        }
        uint32_t ev = can_read ? b->_ops->read_events : 0;
        if (b->dir[1 - s].flags & P2M_SPLICE_DST_FULL)
            ev |= EPOLLOUT;
        if (p2m_bridge_watch(b, s, ev) != 0)
            return -1;
    }
    return 0;
}

static void on_pipe_free(p2m_bridge_t *b, int d)
{
    if (!b->_started)
        return;
    b->dir[d].flags &= ~P2M_SPLICE_NO_PIPE;
    arm(b); /* a refusal here shows again at the next event */
}

static void on_pipe_free0(p2m_pipe_waiter_t *w)
{
    on_pipe_free((p2m_bridge_t *)((char *)w - offsetof(p2m_bridge_t, dir[0].waiter)), 0);
}

static void on_pipe_free1(p2m_pipe_waiter_t *w)
{
    on_pipe_free((p2m_bridge_t *)((char *)w - offsetof(p2m_bridge_t, dir[1].waiter)), 1);
}

static void pump(p2m_bridge_t *b, int d)
{
    size_t moved = 0;
    unsigned f = p2m_splice_pump(&b->dir[d], b->_pipes, b->fd[d], b->fd[1 - d], b->_ops->budget, &moved);
    if (moved != 0 && b->_ops->on_moved != NULL)
        b->_ops->on_moved(b, d, moved);
    if (f & P2M_SPLICE_NO_PIPE)
        p2m_pipe_wait(b->_pipes, &b->dir[d].waiter, d == 0 ? on_pipe_free0 : on_pipe_free1);
}

void p2m_bridge_update(p2m_bridge_t *b)
{
    if (!b->_started)
        return;
    p2m_splice_dir_t *d0 = &b->dir[0], *d1 = &b->dir[1];
    if ((d0->flags | d1->flags) & P2M_SPLICE_ERROR) {
        int e = (d0->flags & P2M_SPLICE_ERROR) ? d0->err : d1->err;
        char reason[96];
        snprintf(reason, sizeof(reason), "error error=\"%s\" dir=%s", strerror(e), (d0->flags & P2M_SPLICE_ERROR) ? "in" : "out");
        done(b, reason);
        return;
    }
    if ((d0->flags & P2M_SPLICE_SHUT) && (d1->flags & P2M_SPLICE_SHUT)) {
        done(b, "done");
        return;
    }
    for (int s = 0; s < 2; s++) {
        /* Hung up with bytes still owed to it: they can no longer be written. */
        if (b->hup[s] && !(b->dir[1 - s].flags & P2M_SPLICE_SHUT)) {
            char reason[64];
            snprintf(reason, sizeof(reason), "%s_hangup", b->_ops->name[s]);
            done(b, reason);
            return;
        }
    }
    if (arm(b) != 0)
        done(b, "epoll");
}

void p2m_bridge_pump(p2m_bridge_t *b, int d)
{
    if (!b->_started)
        return;
    pump(b, d);
    p2m_bridge_update(b);
}

void p2m_bridge_event(p2m_bridge_t *b, int s, uint32_t events)
{
    if (!b->_started)
        return;
    if (events & EPOLLERR) {
        int e = 0;
        socklen_t len = sizeof(e);
        getsockopt(b->fd[s], SOL_SOCKET, SO_ERROR, &e, &len);
        char reason[128];
        snprintf(reason, sizeof(reason), "%s_error error=\"%s\"", b->_ops->name[s], strerror(e != 0 ? e : EIO));
        done(b, reason);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
        pump(b, s);
    if (events & EPOLLOUT)
        pump(b, 1 - s);
    if (events & EPOLLHUP)
        b->hup[s] = 1;
    p2m_bridge_update(b);
}

void p2m_bridge_close(p2m_bridge_t *b)
{
    b->_started = 0;
    for (int s = 0; s < 2; s++) {
        p2m_splice_dir_release(&b->dir[s], b->_pipes);
        if (b->side[s].fd >= 0)
            p2m_loop_close(b->_loop, &b->side[s]);
        else if (b->fd[s] >= 0)
            close(b->fd[s]);
        b->fd[s] = -1;
    }
}
