#ifndef P2M_REDIS_LOOP_H
#define P2M_REDIS_LOOP_H

#include "p2m/loop.h"
#include "p2m/redis.h"

/* The p2m_redis_ev_t of pipe2me's own epoll loop (p2m/loop.h), for p2m_redis_new().
 * Embed it (or allocate it) next to the manager: it must outlive the manager. */
typedef struct {
    p2m_redis_ev_t super;
    p2m_loop_t *loop;
} p2m_redis_loop_t;

/* Fills ev for loop (borrowed). */
void p2m_redis_loop_init(p2m_redis_loop_t *ev, p2m_loop_t *loop);

#endif
