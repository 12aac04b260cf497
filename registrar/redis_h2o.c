/* The registrar's Redis: the connection manager (p2m/redis.h) on h2o's event loop, which hiredis
 * has no adapter for, and the registrar's side of it. While the command connection is down,
 * requests that need Redis get 503 at once. */
#include "redis_h2o.h"
#include "registrar.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

/* --- p2m_redis_ev_t over h2o's evloop ---------------------------------------------------------- */

typedef struct {
    p2m_redis_ev_t super;
    h2o_loop_t *loop;
} h2o_ev_t;

typedef struct {
    h2o_socket_t *sock; /* wraps the poller's descriptor while started */
    p2m_redis_ev_cb cb;
    void *arg;
} io_t;

/* h2o 2.2 timeouts have one fixed period each: re-initialised when the delay changes, unlinked. */
typedef struct {
    h2o_timeout_t timeout;
    h2o_timeout_entry_t entry;
    p2m_redis_ev_cb cb;
    void *arg;
    uint64_t ms;
} tm_t;

static h2o_loop_t *loop_of(p2m_redis_ev_t *ev)
{
    return ((h2o_ev_t *)ev)->loop;
}

static void *xcalloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=redis_h2o");
        abort();
    }
    return p;
}

static void on_poll(h2o_socket_t *sock, const char *err)
{
    io_t *io = sock->data;
    (void)err;
    io->cb(io->arg);
}

static void *io_new(p2m_redis_ev_t *ev, p2m_redis_ev_cb cb, void *arg)
{
    (void)ev;
    io_t *io = xcalloc(sizeof(*io));
    io->cb = cb;
    io->arg = arg;
    return io;
}

static int io_start(p2m_redis_ev_t *ev, void *p, int fd, char *err)
{
    io_t *io = p;
    (void)err;
    io->sock = h2o_evloop_socket_create(loop_of(ev), fd, H2O_SOCKET_FLAG_DONT_READ);
    io->sock->data = io;
    h2o_socket_read_start(io->sock, on_poll);
    return 0;
}

static void io_close(p2m_redis_ev_t *ev, void *p)
{
    io_t *io = p;
    (void)ev;
    if (io->sock != NULL) { /* h2o frees the socket, and closes its descriptor, after the callback */
        h2o_socket_read_stop(io->sock);
        h2o_socket_close(io->sock);
        io->sock = NULL;
    }
}

static void io_free(p2m_redis_ev_t *ev, void *p)
{
    io_close(ev, p);
    free(p);
}

static void on_timeout(h2o_timeout_entry_t *entry)
{
    tm_t *t = H2O_STRUCT_FROM_MEMBER(tm_t, entry, entry);
    t->cb(t->arg);
}

static void *timer_new(p2m_redis_ev_t *ev, p2m_redis_ev_cb cb, void *arg)
{
    tm_t *t = xcalloc(sizeof(*t));
    t->entry.cb = on_timeout;
    t->cb = cb;
    t->arg = arg;
    h2o_timeout_init(loop_of(ev), &t->timeout, 0);
    return t;
}

static void timer_stop(p2m_redis_ev_t *ev, void *p)
{
    tm_t *t = p;
    (void)ev;
    if (h2o_timeout_is_linked(&t->entry))
        h2o_timeout_unlink(&t->entry);
}

static void timer_start(p2m_redis_ev_t *ev, void *p, unsigned ms)
{
    tm_t *t = p;
    timer_stop(ev, t);
    if (t->ms != ms) {
        h2o_timeout_dispose(loop_of(ev), &t->timeout);
        h2o_timeout_init(loop_of(ev), &t->timeout, ms);
        t->ms = ms;
    }
    h2o_timeout_link(loop_of(ev), &t->timeout, &t->entry);
}

static void timer_free(p2m_redis_ev_t *ev, void *p)
{
    tm_t *t = p;
    timer_stop(ev, t);
    h2o_timeout_dispose(loop_of(ev), &t->timeout);
    free(t);
}

static uint64_t now_ms(p2m_redis_ev_t *ev)
{
    return h2o_now(loop_of(ev));
}

/* --- the registrar's side ---------------------------------------------------------------------- */

typedef struct {
    void (*cb)(op_t *, redisReply *);
    op_t *op;
} pending_t;

static int on_subscribe(p2m_store_cmd_t *c, void *data)
{
    (void)data;
    return p2m_store_cmd_subscribe_bound(c);
}

/* "PORT ok" / "PORT fail REASON" from a relay. */
static void on_message(void *data, const char *channel, const char *msg, size_t len)
{
    registrar_t *r = data;
    (void)len;
    if (strcmp(channel, p2m_channel_bound) != 0)
        return;
    char *end;
    unsigned long port = strtoul(msg, &end, 10);
    if (port == 0 || port > 65535 || *end != ' ')
        return;
    int ok = strncmp(end + 1, "ok", 2) == 0 && end[3] == '\0';
    const char *reason = strncmp(end + 1, "fail", 4) == 0 ? end + 1 + (end[5] == ' ' ? 5 : 4) : end + 1;
    r->on_bound(r, (uint16_t)port, ok, reason);
}

static void on_fatal(void *data, const char *err)
{
    registrar_t *r = data;
    (void)err;
    r->fatal = 1; /* main's loop ends: nothing may write to a database of another schema */
}

int redis_start(registrar_t *r, redis_bound_cb on_bound, char *err)
{
    (void)err;
    r->on_bound = on_bound;
    h2o_ev_t *ev = xcalloc(sizeof(*ev));
    ev->super = (p2m_redis_ev_t){io_new, io_start, io_close, io_free, timer_new, timer_start, timer_stop, timer_free, now_ms};
    ev->loop = r->h2o_ctx.loop;
    r->redis_ev = &ev->super;
    p2m_redis_conf_t conf = {.addr = &r->cfg.redis,
                             .where = r->cfg.redis_str,
                             .subscribe = on_subscribe,
                             .on_message = on_message,
                             .on_fatal = on_fatal,
                             .data = r};
    r->redis = p2m_redis_new(r->redis_ev, &conf);
    return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    pending_t *p = privdata;
    (void)ac;
    redisReply *rep = reply;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        p2m_log(P2M_LOG_ERROR, "redis_error", "error=\"%s\"", rep->str);
        rep = NULL;
    }
    void (*cb)(op_t *, redisReply *) = p->cb;
    op_t *op = p->op;
    free(p);
    cb(op, rep);
}

int redis_send(registrar_t *r, const p2m_store_cmd_t *cmd, void (*cb)(op_t *, redisReply *), op_t *op)
{
    if (!p2m_redis_up(r->redis))
        return -1;
    pending_t *p = malloc(sizeof(*p));
    if (p == NULL)
        return -1;
    p->cb = cb;
    p->op = op;
    if (p2m_redis_send(r->redis, on_reply, p, cmd) != 0) {
        free(p);
        return -1;
    }
    return 0;
}

const char *redis_reply_str(const redisReply *rep, size_t i)
{
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || i >= rep->elements || rep->element[i]->type != REDIS_REPLY_STRING)
        return NULL;
    return rep->element[i]->str;
}

void redis_send_nowait(registrar_t *r, const p2m_store_cmd_t *cmd)
{
    p2m_redis_send(r->redis, NULL, NULL, cmd);
}
