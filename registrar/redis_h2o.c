/* The registrar's two Redis connections on h2o's event loop: one for commands, one subscribed
 * to the channel relays answer on. Both reconnect with capped exponential backoff; while the
 * command connection is down, requests that need Redis get 503 at once. */
#include "registrar.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/redis_poller.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

typedef struct {
    void (*cb)(op_t *, redisReply *);
    op_t *op;
} pending_t;

static void connect_one(rconn_t *c);

static void on_poll(h2o_socket_t *sock, const char *err)
{
    (void)err;
    p2m_redis_poller_dispatch(sock->data);
}

static void on_release(int fd, void *data)
{
    rconn_t *c = data;
    (void)fd;
    /* Closing the h2o socket closes the poller's descriptor. */
    if (c->sock != NULL) {
        h2o_socket_read_stop(c->sock);
        h2o_socket_close(c->sock);
        c->sock = NULL;
    }
}

static void on_reconnect_timer(h2o_timeout_entry_t *entry)
{
    registrar_t *r = H2O_STRUCT_FROM_MEMBER(registrar_t, reconnect_entry, entry);
    if (r->cmd.ac == NULL)
        connect_one(&r->cmd);
    if (r->sub.ac == NULL)
        connect_one(&r->sub);
}

static void schedule_reconnect(registrar_t *r)
{
    if (h2o_timeout_is_linked(&r->reconnect_entry))
        return;
    r->reconnect_backoff_ms = r->reconnect_backoff_ms == 0 ? BACKOFF_MIN_MS : r->reconnect_backoff_ms * 2;
    if (r->reconnect_backoff_ms > BACKOFF_MAX_MS)
        r->reconnect_backoff_ms = BACKOFF_MAX_MS;
    /* h2o timeouts have one fixed period each; re-init is cheap while unlinked. */
    h2o_timeout_dispose(r->h2o_ctx.loop, &r->reconnect_timeout);
    h2o_timeout_init(r->h2o_ctx.loop, &r->reconnect_timeout, r->reconnect_backoff_ms);
    h2o_timeout_link(r->h2o_ctx.loop, &r->reconnect_timeout, &r->reconnect_entry);
}

/* "PORT ok" / "PORT fail REASON" from a relay. */
static void on_bound_message(redisAsyncContext *ac, void *reply_, void *privdata)
{
    rconn_t *c = privdata;
    redisReply *reply = reply_;
    (void)ac;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    redisReply *kind = reply->element[0], *msg = reply->element[2];
    if (kind->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        p2m_log(P2M_LOG_INFO, "redis_subscribed", "channel=%s", p2m_channel_bound);
        return;
    }
    if (strcmp(kind->str, "message") != 0)
        return;
    char *end;
    unsigned long port = strtoul(msg->str, &end, 10);
    if (port == 0 || port > 65535 || *end != ' ')
        return;
    int ok = strncmp(end + 1, "ok", 2) == 0 && end[3] == '\0';
    const char *reason = strncmp(end + 1, "fail", 4) == 0 ? end + 1 + (end[5] == ' ' ? 5 : 4) : end + 1;
    lease_on_bound(c->r, (uint16_t)port, ok, reason);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rconn_t *c = ac->data;
    if (status != REDIS_OK) {
        p2m_log(P2M_LOG_WARN, "redis_connect_failed", "conn=%s error=\"%s\"", c->is_subscriber ? "sub" : "cmd", ac->errstr);
        c->ac = NULL; /* hiredis frees the context after this callback */
        c->connected = 0;
        schedule_reconnect(c->r);
        return;
    }
    c->connected = 1;
    c->r->reconnect_backoff_ms = 0;
    p2m_log(P2M_LOG_INFO, "redis_connected", "conn=%s redis=%s", c->is_subscriber ? "sub" : "cmd", c->r->cfg.redis_str);
    if (c->is_subscriber) {
        p2m_cmd_t cmd;
        p2m_cmd_subscribe_bound(&cmd);
        redisAsyncCommandArgv(c->ac, on_bound_message, c, cmd.argc, cmd.argv, cmd.argvlen);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rconn_t *c = ac->data;
    (void)status;
    p2m_log(P2M_LOG_WARN, "redis_disconnected", "conn=%s error=\"%s\"", c->is_subscriber ? "sub" : "cmd",
            ac->err ? ac->errstr : "closed");
    c->ac = NULL;
    c->connected = 0;
    schedule_reconnect(c->r);
}

static void connect_one(rconn_t *c)
{
    const p2m_redis_addr_t *a = &c->r->cfg.redis;
    char err[P2M_ERR_LEN];
    redisAsyncContext *ac = a->is_unix ? redisAsyncConnectUnix(a->path) : redisAsyncConnect(a->tcp.host, a->tcp.port);
    if (ac == NULL || ac->err) {
        p2m_log(P2M_LOG_WARN, "redis_connect_failed", "conn=%s error=\"%s\"", c->is_subscriber ? "sub" : "cmd",
                ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        schedule_reconnect(c->r);
        return;
    }
    p2m_redis_poller_t *p = p2m_redis_poller_attach(ac, on_release, c, err);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "redis_connect_failed", "error=\"%s\"", err);
        redisAsyncFree(ac);
        schedule_reconnect(c->r);
        return;
    }
    c->ac = ac;
    ac->data = c;
    c->sock = h2o_evloop_socket_create(c->r->h2o_ctx.loop, p2m_redis_poller_fd(p), H2O_SOCKET_FLAG_DONT_READ);
    c->sock->data = p;
    h2o_socket_read_start(c->sock, on_poll);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

int redis_start(registrar_t *r, char *err)
{
    (void)err;
    r->cmd.r = r;
    r->sub.r = r;
    r->sub.is_subscriber = 1;
    r->reconnect_entry = (h2o_timeout_entry_t){0};
    r->reconnect_entry.cb = on_reconnect_timer;
    h2o_timeout_init(r->h2o_ctx.loop, &r->reconnect_timeout, BACKOFF_MIN_MS);
    connect_one(&r->cmd);
    connect_one(&r->sub);
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

int redis_send(registrar_t *r, const p2m_cmd_t *cmd, void (*cb)(op_t *, redisReply *), op_t *op)
{
    if (!r->cmd.connected || r->cmd.ac == NULL)
        return -1;
    pending_t *p = malloc(sizeof(*p));
    if (p == NULL)
        return -1;
    p->cb = cb;
    p->op = op;
    if (redisAsyncCommandArgv(r->cmd.ac, on_reply, p, cmd->argc, (const char **)cmd->argv, cmd->argvlen) != REDIS_OK) {
        free(p);
        return -1;
    }
    return 0;
}

void redis_send_nowait(registrar_t *r, const p2m_cmd_t *cmd)
{
    if (r->cmd.connected && r->cmd.ac != NULL)
        redisAsyncCommandArgv(r->cmd.ac, NULL, NULL, cmd->argc, (const char **)cmd->argv, cmd->argvlen);
}
