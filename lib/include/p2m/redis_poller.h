#ifndef P2M_REDIS_POLLER_H
#define P2M_REDIS_POLLER_H

/* Runs a hiredis async context under any event loop that can watch one file descriptor for
 * readability: h2o's evloop (which hiredis has no adapter for) and pipe2me's own epoll loop.
 *
 * The poller keeps a private epoll set holding the Redis socket with exactly the interest hiredis
 * asks for (read, write or both). That epoll descriptor is readable whenever hiredis has work, so
 * the owner watches it for reading only and calls p2m_redis_poller_dispatch() when it is. No
 * write-readiness API is needed from the outer loop, and nothing ever spins. */

struct redisAsyncContext;
typedef struct p2m_redis_poller p2m_redis_poller_t;

/* Called once when hiredis frees the context: the owner must stop watching fd and close it. */
typedef void (*p2m_redis_poller_release_cb)(int fd, void *data);

/* Attaches ac (which must not have an adapter yet). Returns the poller, whose lifetime follows
 * ac's, or NULL with err. On failure ac is left untouched: the caller frees it. */
p2m_redis_poller_t *p2m_redis_poller_attach(struct redisAsyncContext *ac, p2m_redis_poller_release_cb on_release, void *data,
                                            char *err);

/* The descriptor to watch for readability. */
int p2m_redis_poller_fd(const p2m_redis_poller_t *p);

/* Services every pending read and write on the Redis socket. May free ac (and the poller) when the
 * connection ends: do not touch either after this returns unless the disconnect callback has told
 * you the context is still alive. */
void p2m_redis_poller_dispatch(p2m_redis_poller_t *p);

#endif
