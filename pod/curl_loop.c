/* libcurl's multi interface on the p2m loop: see curl_loop.h. */
#include "curl_loop.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "p2m/err.h"
#include "p2m/log.h"
#include "pod.h"

#define CURL_LOOP_MAGIC 0x43555246u /* "CURF" */
#define CSOCK_MAGIC 0x43534f43u     /* "CSOC" */

typedef struct csock csock_t;

struct pod_curl_loop {
    uint32_t magic;
    p2m_loop_t *loop;
    CURLM *multi;
    p2m_loop_timer_t timer; /* CURLMOPT_TIMERFUNCTION */
    pod_curl_loop_done_cb done;
    void *data;
    csock_t *socks; /* every socket curl asked us to watch */
};

struct csock {
    uint32_t magic;
    pod_curl_loop_t *cl;
    p2m_loop_handler_t h;
    p2m_loop_reap_t reap;
    csock_t *next, *prev;
};

static pod_curl_loop_t *cl_check(pod_curl_loop_t *cl)
{
    if (cl == NULL || cl->magic != CURL_LOOP_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "curl_loop_bad_magic", "ptr=%p", (void *)cl);
        abort();
    }
    return cl;
}

/* Hands every finished transfer to the done callback. */
static void check_done(pod_curl_loop_t *cl)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(cl->multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE)
            cl->done(cl->data, msg->easy_handle, msg->data.result);
}

static void reap_csock(p2m_loop_reap_t *r)
{
    csock_t *cs = (csock_t *)((char *)r - offsetof(csock_t, reap));
    free(cs);
}

static void csock_drop(pod_curl_loop_t *cl, csock_t *cs)
{
    p2m_loop_del(cl->loop, &cs->h);
    if (cs->prev != NULL)
        cs->prev->next = cs->next;
    else
        cl->socks = cs->next;
    if (cs->next != NULL)
        cs->next->prev = cs->prev;
    cs->magic = POD_DEAD;
    p2m_loop_defer(cl->loop, &cs->reap, reap_csock);
}

static void on_curl_io(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    csock_t *cs = (csock_t *)((char *)h - offsetof(csock_t, h));
    if (cs->magic != CSOCK_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "csock_bad_magic", "ptr=%p", (void *)cs);
        abort();
    }
    pod_curl_loop_t *cl = cl_check(cs->cl);
    int mask = 0, running = 0;
    if (events & (EPOLLIN | EPOLLHUP))
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        mask |= CURL_CSELECT_ERR;
    /* cs may be dropped inside (CURL_POLL_REMOVE); its memory lives until the end of the turn. */
    curl_multi_socket_action(cl->multi, h->fd, mask, &running);
    check_done(cl);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    pod_curl_loop_t *cl = cl_check(userp);
    csock_t *cs = socketp;
    char err[P2M_ERR_LEN];

    if (what == CURL_POLL_REMOVE) {
        if (cs != NULL) {
            curl_multi_assign(cl->multi, s, NULL);
            csock_drop(cl, cs);
        }
        return 0;
    }
    uint32_t ev = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    if (cs == NULL) {
        if ((cs = calloc(1, sizeof(*cs))) == NULL) {
            p2m_log(P2M_LOG_ERROR, "oom", "what=curl_socket");
            abort();
        }
        cs->magic = CSOCK_MAGIC;
        cs->cl = cl;
        p2m_loop_handler_init(&cs->h);
        if (p2m_loop_add(cl->loop, &cs->h, s, ev, on_curl_io, err) != 0) {
            p2m_log(P2M_LOG_ERROR, "curl_socket_failed", "fd=%d error=\"%s\"", (int)s, err);
            free(cs);
            return -1;
        }
        cs->next = cl->socks;
        if (cl->socks != NULL)
            cl->socks->prev = cs;
        cl->socks = cs;
        curl_multi_assign(cl->multi, s, cs);
        return 0;
    }
    if (p2m_loop_set_events(cl->loop, &cs->h, ev) != 0) {
        p2m_log(P2M_LOG_ERROR, "curl_socket_failed", "fd=%d error=\"%s\"", (int)s, strerror(errno));
        return -1;
    }
    return 0;
}

static int on_curl_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    pod_curl_loop_t *cl = cl_check(userp);
    /* Only arm here: curl must not be called back from inside this callback. */
    if (timeout_ms < 0)
        p2m_loop_timer_stop(cl->loop, &cl->timer);
    else
        p2m_loop_timer_start(cl->loop, &cl->timer, (uint64_t)timeout_ms);
    return 0;
}

static void on_curl_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    pod_curl_loop_t *cl = cl_check((pod_curl_loop_t *)((char *)t - offsetof(pod_curl_loop_t, timer)));
    int running = 0;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(cl);
}

pod_curl_loop_t *pod_curl_loop_new(p2m_loop_t *loop, pod_curl_loop_done_cb done, void *data, char *err)
{
    pod_curl_loop_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    cl->magic = CURL_LOOP_MAGIC;
    cl->loop = loop;
    cl->done = done;
    cl->data = data;
    p2m_loop_timer_init(&cl->timer, on_curl_timer);
    if ((cl->multi = curl_multi_init()) == NULL) {
        free(cl);
        p2m_err(err, "curl_multi_init failed");
        return NULL;
    }
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer_set);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, 2L);
    return cl;
}

CURLM *pod_curl_loop_multi(pod_curl_loop_t *cl)
{
    return cl_check(cl)->multi;
}

void pod_curl_loop_free(pod_curl_loop_t *cl)
{
    if (cl == NULL)
        return;
    curl_multi_cleanup(cl->multi); /* closes cached connections, calling on_curl_socket */
    while (cl->socks != NULL)
        csock_drop(cl, cl->socks);
    p2m_loop_timer_stop(cl->loop, &cl->timer);
    p2m_loop_reap(cl->loop); /* the sockets' memory, deferred above */
    cl->magic = POD_DEAD;
    free(cl);
}
