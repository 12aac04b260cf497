#include "p2m/redis_poller.h"
#include "p2m/err.h"

#include <errno.h>
#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct p2m_redis_poller {
    redisAsyncContext *ac;
    int epfd;
    int redis_fd;
    uint32_t events; /* EPOLLIN / EPOLLOUT as hiredis asked */
    p2m_redis_poller_release_cb on_release;
    void *data;
};

static void update(p2m_redis_poller_t *p, uint32_t events)
{
    if (events == p->events)
        return;
    struct epoll_event ev = {.events = events, .data.fd = p->redis_fd};
    int op = p->events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(p->epfd, op, p->redis_fd, &ev) == 0)
        p->events = events;
}

static void add_read(void *arg)
{
    p2m_redis_poller_t *p = arg;
    update(p, p->events | EPOLLIN);
}

static void del_read(void *arg)
{
    p2m_redis_poller_t *p = arg;
    update(p, p->events & ~(uint32_t)EPOLLIN);
}

static void add_write(void *arg)
{
    p2m_redis_poller_t *p = arg;
    update(p, p->events | EPOLLOUT);
}

static void del_write(void *arg)
{
    p2m_redis_poller_t *p = arg;
    update(p, p->events & ~(uint32_t)EPOLLOUT);
}

static void cleanup(void *arg)
{
    p2m_redis_poller_t *p = arg;
    update(p, 0);
    p->on_release(p->epfd, p->data);
    free(p);
}

p2m_redis_poller_t *p2m_redis_poller_attach(redisAsyncContext *ac, p2m_redis_poller_release_cb on_release, void *data, char *err)
{
    if (ac->ev.data != NULL) {
        p2m_err(err, "redis context already has an event adapter");
        return NULL;
    }
    p2m_redis_poller_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    if ((p->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        p2m_err(err, "epoll_create1: %s", strerror(errno));
        free(p);
        return NULL;
    }
    p->ac = ac;
    p->redis_fd = ac->c.fd;
    p->on_release = on_release;
    p->data = data;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return p;
}

int p2m_redis_poller_fd(const p2m_redis_poller_t *p)
{
    return p->epfd;
}

void p2m_redis_poller_dispatch(p2m_redis_poller_t *p)
{
    struct epoll_event ev;
    /* One handler per call: either may free the context (and p). Whatever readiness is left keeps
     * the (level-triggered) epoll descriptor readable, so the owner's loop calls again. */
    if (epoll_wait(p->epfd, &ev, 1, 0) != 1)
        return;
    if (ev.events & EPOLLOUT)
        redisAsyncHandleWrite(p->ac);
    else
        redisAsyncHandleRead(p->ac);
}
