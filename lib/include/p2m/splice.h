#ifndef P2M_SPLICE_H
#define P2M_SPLICE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Moving bytes socket -> pipe -> socket with splice(2), never through user space, as haproxy's
 * raw_sock.c and pipe.c do.
 *
 * Pipes come from a bounded pool shared by every connection of a process: a direction borrows a
 * pipe only while bytes sit in it and gives it back the moment it is empty, so an idle connection
 * holds none and a process with 10,000 connections needs pipes only for those whose destination
 * is slower than their source. Each pipe costs two descriptors, which count against the process'
 * descriptor limit: size the pool for it.
 *
 * Small reads are the exception: below P2M_SPLICE_COPY_MAX bytes a direction copies with
 * recv(2)/send(2), which costs less than two splices (see P2M_SPLICE_COPY).
 *
 * One function per direction of travel: p2m_splice_in() (socket -> pipe) and p2m_splice_out()
 * (pipe -> socket); p2m_splice_pump() alternates them for one direction of a connection until it
 * must wait, and says why in the flags. Sockets must be non-blocking and watched level-triggered:
 * the pump may stop after a short read without waiting for EAGAIN, leaving the readiness to the
 * next epoll_wait. splice(2) to a socket whose peer is gone raises SIGPIPE (it has no
 * MSG_NOSIGNAL): a process using this module ignores SIGPIPE. */

typedef struct p2m_pipe p2m_pipe_t;
typedef struct p2m_pipe_pool p2m_pipe_pool_t;
typedef struct p2m_pipe_waiter p2m_pipe_waiter_t;

struct p2m_pipe {
    int rfd, wfd;
    unsigned size;     /* bytes it holds for sure (the kernel may have refused the pool's size) */
    p2m_pipe_t *_next; /* free list */
};

/* Called when a pipe was given back while the pool was exhausted and w was waiting. It must not
 * pump (it runs inside another connection's pump): it should re-arm the reader's interest, whose
 * next event borrows the pipe. w is no longer queued when cb runs. */
typedef void (*p2m_pipe_waiter_cb)(p2m_pipe_waiter_t *w);

struct p2m_pipe_waiter {
    p2m_pipe_waiter_t *_next, *_prev;
    p2m_pipe_waiter_cb _cb;
    int _queued;
};

typedef struct {
    unsigned max;       /* most pipes open at once */
    unsigned size;      /* bytes per pipe as the kernel granted it */
    unsigned open;      /* pipes open now (borrowed + free) */
    unsigned borrowed;  /* lent out now */
    uint64_t exhausted; /* times p2m_pipe_get() found no pipe */
    unsigned waiting;   /* waiters queued now */
} p2m_pipe_pool_stats_t;

#define P2M_PIPE_SIZE_DEFAULT (64 * 1024)
#define P2M_SPLICE_COPY_MAX (16 * 1024)

/* Creates a pool of at most max pipes (1 or more) of size bytes each (rounded by the kernel to a
 * power of two pages; 0 takes P2M_PIPE_SIZE_DEFAULT). No pipe is opened until one is borrowed.
 * Returns the pool or NULL with err. */
p2m_pipe_pool_t *p2m_pipe_pool_new(unsigned max, unsigned size, char *err);

/* Closes every pipe in the pool. Pipes still borrowed must have been given back; waiters are
 * forgotten. NULL is a no-op. */
void p2m_pipe_pool_free(p2m_pipe_pool_t *pool);

/* Borrows an empty pipe: a free one, else a new one while fewer than max are open. Returns NULL
 * when the pool is exhausted or the system refuses a new pipe (errno says which: EAGAIN, or that of
 * pipe2). Never blocks. */
p2m_pipe_t *p2m_pipe_get(p2m_pipe_pool_t *pool);

/* Gives p back. A pipe that may still hold bytes (dirty) is closed rather than reused. Wakes the
 * oldest waiter if any. NULL is a no-op. */
void p2m_pipe_put(p2m_pipe_pool_t *pool, p2m_pipe_t *p, int dirty);

/* Queues w to be called once a pipe comes back; no-op when w is queued already. */
void p2m_pipe_wait(p2m_pipe_pool_t *pool, p2m_pipe_waiter_t *w, p2m_pipe_waiter_cb cb);

/* Removes w from the queue; no-op when it is not queued. */
void p2m_pipe_wait_cancel(p2m_pipe_pool_t *pool, p2m_pipe_waiter_t *w);

void p2m_pipe_pool_stats(const p2m_pipe_pool_t *pool, p2m_pipe_pool_stats_t *out);

/* --- one direction of a connection ---------------------------------------------------------- */

/* Lasting state of a direction (stays set once reached). */
#define P2M_SPLICE_EOF 0x0001u   /* the source said end of stream */
#define P2M_SPLICE_SHUT 0x0002u  /* everything was delivered and the destination shut for writing */
#define P2M_SPLICE_ERROR 0x0004u /* a splice or shutdown failed; errno in err; the direction is dead */
/* How the next read is made: set, with recv(2) into a buffer of P2M_SPLICE_COPY_MAX bytes and
 * send(2) (small messages: cheaper than a splice pair); clear, with splice(2). A read that fills
 * the buffer clears it, a splice read shorter than the buffer sets it. Directions start copying. */
#define P2M_SPLICE_COPY 0x0008u
/* Why the last p2m_splice_pump() stopped (cleared when the next one starts). */
#define P2M_SPLICE_SRC_EMPTY 0x0010u /* the source had nothing more: wait for it to be readable */
#define P2M_SPLICE_DST_FULL                                                                                                        \
    0x0020u                          /* bytes wait in the pipe and the destination would block:                                    \
                                        wait for it to be writable, do not read the source */
#define P2M_SPLICE_NO_PIPE 0x0040u   /* no pipe to read into: wait for one (p2m_pipe_wait) */
#define P2M_SPLICE_BUDGET 0x0080u    /* moved the budget; the source may have more */
#define P2M_SPLICE_PIPE_FULL 0x0100u /* the last read filled the pipe (informational) */
#define P2M_SPLICE_STOP_MASK 0x01f0u

typedef struct {
    p2m_pipe_t *pipe;         /* borrowed while pending > 0, else NULL */
    size_t pending;           /* bytes in the pipe */
    uint64_t bytes;           /* bytes delivered to the destination so far */
    unsigned flags;           /* P2M_SPLICE_* */
    int err;                  /* errno when P2M_SPLICE_ERROR */
    p2m_pipe_waiter_t waiter; /* for the owner's p2m_pipe_wait() */
} p2m_splice_dir_t;

/* Zeroes a direction: no pipe, nothing pending, no flags but P2M_SPLICE_COPY. */
void p2m_splice_dir_init(p2m_splice_dir_t *d);

/* Gives d's pipe back (dirty when bytes are still in it, which are lost) and cancels its wait. */
void p2m_splice_dir_release(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool);

/* Socket -> pipe, one splice(2) call into d's pipe, borrowing one first when d has none.
 * Returns the bytes read (> 0); 0 at end of stream (sets P2M_SPLICE_EOF); -1 with errno EAGAIN
 * when the socket is drained (an empty pipe always has room) or the pipe is full, ENOBUFS when the
 * pool is exhausted (a borrowed pipe will come back: wait), or another errno on failure, including
 * a pipe the system refused to create while none is borrowed (sets P2M_SPLICE_ERROR). The pipe
 * stays borrowed while it holds bytes. */
ssize_t p2m_splice_in(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool, int src);

/* Pipe -> socket until the pipe is empty or the socket would block. Returns the bytes written
 * (>= 0; adds them to d->bytes) and gives the pipe back once it is empty; -1 with errno on failure
 * (sets P2M_SPLICE_ERROR). Fewer bytes than were pending with no error means the socket is full. */
ssize_t p2m_splice_out(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool, int dst);

/* Moves bytes from src to dst: flushes the pipe, reads, flushes, ... until the source is empty,
 * the destination full, no pipe is free, or `budget` bytes have moved (0: no limit); at end of
 * stream, once the pipe is empty, shuts dst for writing (half-close passed on). Sets *moved (may be
 * NULL) to the bytes delivered by this call. Returns d->flags, holding exactly one of SRC_EMPTY,
 * DST_FULL, NO_PIPE and BUDGET unless the direction is SHUT or in ERROR. */
unsigned p2m_splice_pump(p2m_splice_dir_t *d, p2m_pipe_pool_t *pool, int src, int dst, size_t budget, size_t *moved);

#endif
