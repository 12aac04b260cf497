#include "p2m/splice.h"
#include "p2m/err.h"
#include "p2m/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct p2m_pipe_pool {
    unsigned max, size;
    unsigned open, borrowed;
    uint64_t exhausted;
    uint64_t create_failed;
    p2m_pipe_t *free;
    p2m_pipe_waiter_t *wait_head, *wait_tail;
    unsigned waiting;
    int size_refused; /* F_SETPIPE_SZ failed once (logged once) */
};

p2m_pipe_pool_t *p2m_pipe_pool_new(unsigned max, unsigned size, char *err)
{
    if (max == 0) {
        p2m_err(err, "a pipe pool needs room for at least one pipe");
        return NULL;
    }
    p2m_pipe_pool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    pool->max = max;
    pool->size = size != 0 ? size : P2M_PIPE_SIZE_DEFAULT;
    return pool;
}

static void pipe_destroy(p2m_pipe_pool_t *pool, p2m_pipe_t *p)
{
    close(p->rfd);
    close(p->wfd);
    free(p);
    pool->open--;
}

void p2m_pipe_pool_free(p2m_pipe_pool_t *pool)
{
    if (pool == NULL)
        return;
    while (pool->free != NULL) {
        p2m_pipe_t *p = pool->free;
        pool->free = p->_next;
        pipe_destroy(pool, p);
    }
    free(pool);
}

/* Opens one pipe at the pool's size. The size is a wish: past the per-user pipe page limit
 * (fs.pipe-user-pages-soft) the kernel refuses, and the pipe keeps its default size. */
static p2m_pipe_t *pipe_create(p2m_pipe_pool_t *pool)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        int saved = errno;
        /* Logged at 1, 2, 4, 8 ... failures: visible without flooding. */
        uint64_t n = ++pool->create_failed;
        if ((n & (n - 1)) == 0)
            p2m_log(P2M_LOG_WARN, "pipe_create_failed", "error=\"%s\" failures=%llu open=%u", strerror(saved),
                    (unsigned long long)pool->create_failed, pool->open);
        errno = saved;
        return NULL;
    }
    int got = fcntl(fds[1], F_SETPIPE_SZ, (int)pool->size);
    if (got < 0 && !pool->size_refused) {
        pool->size_refused = 1;
        p2m_log(P2M_LOG_WARN, "pipe_size_refused", "want=%u error=\"%s\"", pool->size, strerror(errno));
    }
    p2m_pipe_t *p = malloc(sizeof(*p));
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "what=pipe");
        abort();
    }
    p->rfd = fds[0];
    p->wfd = fds[1];
    /* What this pipe holds for sure: a refused size leaves the default, which may be small. */
    if (got <= 0)
        got = fcntl(fds[1], F_GETPIPE_SZ);
    p->size = got > 0 ? (unsigned)got : 4096u;
    p->_next = NULL;
    pool->open++;
    return p;
}

p2m_pipe_t *p2m_pipe_get(p2m_pipe_pool_t *pool)
{
    p2m_pipe_t *p = pool->free;
    if (p != NULL) {
        pool->free = p->_next;
    } else if (pool->open >= pool->max) {
        pool->exhausted++;
        errno = EAGAIN;
        return NULL;
    } else if ((p = pipe_create(pool)) == NULL) {
        pool->exhausted++;
        return NULL;
    }
    p->_next = NULL;
    pool->borrowed++;
    return p;
}

void p2m_pipe_put(p2m_pipe_pool_t *pool, p2m_pipe_t *p, int dirty)
{
    if (p == NULL)
        return;
    pool->borrowed--;
    if (dirty) {
        pipe_destroy(pool, p);
    } else {
        p->_next = pool->free;
        pool->free = p;
    }
    p2m_pipe_waiter_t *w = pool->wait_head;
    if (w != NULL) {
        p2m_pipe_wait_cancel(pool, w);
        w->_cb(w);
    }
}

void p2m_pipe_wait(p2m_pipe_pool_t *pool, p2m_pipe_waiter_t *w, p2m_pipe_waiter_cb cb)
{
    if (w->_queued)
        return;
    w->_cb = cb;
    w->_queued = 1;
    w->_next = NULL;
    w->_prev = pool->wait_tail;
    if (pool->wait_tail != NULL)
        pool->wait_tail->_next = w;
    else
        pool->wait_head = w;
    pool->wait_tail = w;
    pool->waiting++;
}

void p2m_pipe_wait_cancel(p2m_pipe_pool_t *pool, p2m_pipe_waiter_t *w)
{
    if (!w->_queued)
        return;
    if (w->_prev != NULL)
        w->_prev->_next = w->_next;
    else
        pool->wait_head = w->_next;
    if (w->_next != NULL)
        w->_next->_prev = w->_prev;
    else
        pool->wait_tail = w->_prev;
    w->_next = w->_prev = NULL;
    w->_queued = 0;
    pool->waiting--;
}

void p2m_pipe_pool_stats(const p2m_pipe_pool_t *pool, p2m_pipe_pool_stats_t *out)
{
    out->max = pool->max;
    out->size = pool->size;
    out->open = pool->open;
    out->borrowed = pool->borrowed;
    out->exhausted = pool->exhausted;
    out->waiting = pool->waiting;
}

/* --- one direction ---------------------------------------------------------------------------- */

void p2m_splice_dir_init(p2m_splice_dir_t *d)
{
    memset(d, 0, sizeof(*d));
    d->flags = P2M_SPLICE_COPY;
}

void p2m_splice_dir_release(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool)
{
    p2m_pipe_wait_cancel(pool, &d->waiter);
    if (d->pipe != NULL) {
        p2m_pipe_t *p = d->pipe;
        d->pipe = NULL;
        p2m_pipe_put(pool, p, d->pending != 0);
        d->pending = 0;
    }
}

/* Gives the pipe back once it is empty: an idle direction holds no pipe. */
static void release_if_empty(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool)
{
    if (d->pending == 0 && d->pipe != NULL) {
        p2m_pipe_t *p = d->pipe;
        d->pipe = NULL;
        p2m_pipe_put(pool, p, 0);
    }
}

static void fail(p2m_splice_dir_t *d, int err)
{
    d->flags |= P2M_SPLICE_ERROR;
    d->err = err;
}

/* Gives d a pipe to read into, borrowing one when it has none. Returns 0, or -1 with errno
 * ENOBUFS when the pool is exhausted (a borrowed pipe will come back: wait), or the system's
 * refusal when none is borrowed (P2M_SPLICE_ERROR set). */
static int have_pipe(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool)
{
    if (d->pipe != NULL || (d->pipe = p2m_pipe_get(pool)) != NULL)
        return 0;
    /* Waiting only makes sense when a borrowed pipe will come back; with none borrowed the
     * system refused to make one (descriptors, memory), and waiting would hang. */
    if (pool->borrowed == 0) {
        fail(d, errno == EAGAIN ? ENOBUFS : errno);
        errno = d->err;
        return -1;
    }
    errno = ENOBUFS;
    return -1;
}

ssize_t p2m_splice_in(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool, int src)
{
    if (have_pipe(d, pool) != 0)
        return -1;
    if (d->pending >= pool->size) {
        errno = EAGAIN;
        return -1;
    }
    ssize_t n;
    do {
        n = splice(src, NULL, d->pipe->wfd, NULL, pool->size - d->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    int saved = errno;
    if (n > 0) {
        d->pending += (size_t)n;
    } else if (n == 0) {
        d->flags |= P2M_SPLICE_EOF;
    } else if (saved != EAGAIN) {
        fail(d, saved);
    }
    release_if_empty(d, pool);
    errno = saved;
    return n;
}

ssize_t p2m_splice_out(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool, int dst)
{
    size_t total = 0;
    ssize_t ret = 0;
    while (d->pending > 0) {
        ssize_t n = splice(d->pipe->rfd, NULL, dst, NULL, d->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            d->pending -= (size_t)n;
            total += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        /* 0 from a pipe that holds bytes cannot happen; call it a broken destination. */
        fail(d, n == 0 ? EPIPE : errno);
        ret = -1;
        break;
    }
    d->bytes += total;
    release_if_empty(d, pool);
    if (ret < 0) {
        errno = d->err;
        return -1;
    }
    return (ssize_t)total;
}

/* The small-message path: recv(2) into a stack buffer and send(2) on, the way haproxy's
 * splice-auto leaves small reads to plain copies. For a few hundred bytes a splice pair costs more
 * than the copy (measured on loopback: a relay hop adds ~7 us less at p50 with recv/send for
 * 64-byte messages), and a request/response exchange is mostly such messages. What the
 * destination does not take at once goes into the direction's pipe (empty, and at least
 * as large as the read), so the rest of the machinery sees it as any pending bytes. The pipe
 * is borrowed before the read so that bytes read are never left without a place. */
static ssize_t copy_through(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool, int src, int dst, size_t *sent, size_t *asked)
{
    char buf[P2M_SPLICE_COPY_MAX];
    *sent = 0;
    if (have_pipe(d, pool) != 0)
        return -1;
    size_t want = d->pipe->size < sizeof(buf) ? d->pipe->size : sizeof(buf);
    *asked = want;
    ssize_t n;
    do {
        n = recv(src, buf, want, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        int saved = errno;
        if (n == 0)
            d->flags |= P2M_SPLICE_EOF;
        else if (saved != EAGAIN && saved != EWOULDBLOCK)
            fail(d, saved);
        else
            saved = EAGAIN;
        release_if_empty(d, pool);
        errno = saved;
        return n;
    }
    ssize_t w;
    do {
        w = send(dst, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            fail(d, errno);
            release_if_empty(d, pool);
            errno = d->err;
            return -1;
        }
        w = 0;
    }
    d->bytes += (uint64_t)w;
    *sent = (size_t)w;
    /* The remainder fits: the pipe was empty and holds at least `want` bytes. */
    for (size_t off = (size_t)w; off < (size_t)n;) {
        ssize_t k = write(d->pipe->wfd, buf + off, (size_t)n - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            fail(d, k < 0 ? errno : EIO);
            errno = d->err;
            return -1;
        }
        off += (size_t)k;
        d->pending += (size_t)k;
    }
    release_if_empty(d, pool);
    return n;
}

unsigned p2m_splice_pump(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool, int src, int dst, size_t budget, size_t *moved)
{
    size_t done = 0;
    int short_read = 0;

    d->flags &= ~P2M_SPLICE_STOP_MASK;
    if (d->flags & (P2M_SPLICE_SHUT | P2M_SPLICE_ERROR))
        goto Exit;
    for (;;) {
        if (d->pending > 0) {
            ssize_t n = p2m_splice_out(d, pool, dst);
            if (n < 0)
                goto Exit;
            done += (size_t)n;
            if (d->pending > 0) {
                d->flags |= P2M_SPLICE_DST_FULL;
                goto Exit;
            }
        }
        if (d->flags & P2M_SPLICE_EOF) {
            if (shutdown(dst, SHUT_WR) != 0 && errno != ENOTCONN)
                fail(d, errno);
            else
                d->flags |= P2M_SPLICE_SHUT;
            goto Exit;
        }
        /* A read shorter than the pipe almost always emptied the socket: rather than pay a
         * splice for the EAGAIN, leave it to the (level-triggered) poller to say otherwise. */
        if (short_read) {
            d->flags |= P2M_SPLICE_SRC_EMPTY;
            goto Exit;
        }
        if (budget != 0 && done >= budget) {
            d->flags |= P2M_SPLICE_BUDGET;
            goto Exit;
        }
        ssize_t n;
        if (d->flags & P2M_SPLICE_COPY) {
            size_t sent = 0, copy_want = 0;
            n = copy_through(d, pool, src, dst, &sent, &copy_want);
            done += sent;
            /* A full buffer: a bulk transfer, which splice serves better from the next read on. */
            if (n > 0 && (size_t)n >= copy_want)
                d->flags &= ~P2M_SPLICE_COPY;
            else if (n > 0)
                short_read = 1;
            if (n > 0)
                continue;
        } else {
            n = p2m_splice_in(d, pool, src);
            if (n > 0) {
                /* Small reads go back to copying (only once the pipe is empty, see above). */
                if ((size_t)n < P2M_SPLICE_COPY_MAX)
                    d->flags |= P2M_SPLICE_COPY;
                if ((size_t)n < pool->size)
                    short_read = 1;
                else
                    d->flags |= P2M_SPLICE_PIPE_FULL;
                continue;
            }
        }
        if (n == 0)
            continue; /* end of stream: the pipe is empty, shut dst next round */
        if (d->flags & P2M_SPLICE_ERROR)
            goto Exit;
        /* The pipe was empty before this read, so EAGAIN means a drained socket, never a full pipe. */
        d->flags |= errno == ENOBUFS ? P2M_SPLICE_NO_PIPE : P2M_SPLICE_SRC_EMPTY;
        goto Exit;
    }
Exit:
    if (moved != NULL)
        *moved = done;
    return d->flags;
}
