/* The Redis connection manager (p2m/redis.h). Each connection goes through these states:
 *
 *   down        ac NULL; the timer waits for the retry (backoff, or the LOADING delay)
 *   connecting  ac set, connected 0; the timer is the connect timeout
 *   connected   the first command (GET p2m:schema, or SUBSCRIBE) is on its way
 *   ready       cmd: schema checked (on_up ran); sub: every channel confirmed
 *
 * Whatever ends a connection, hiredis frees its context and calls on_release, which closes the
 * watch and schedules the retry: that is the one path back to "down".
 *
 * With Sentinels (addr->nsentinels), a connection about to start asks them for the primary
 * (ask_primary), sends AUTH and ROLE before its first command, and a third connection "sentinel"
 * SUBSCRIBEs to +switch-master on the Sentinel that answered: a failover of our master, a reply
 * "-READONLY" (a demoted primary) or a ROLE that is not "master" drops cmd and sub, which
 * reconnect to the primary the Sentinels name then. */
#include "p2m/redis.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/redis_poller.h"
#include "p2m/sentinel.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONN_MAGIC 0x52434f4eu /* "RCON" */

typedef struct {
    uint32_t magic;
    p2m_redis_t *m;
    const char *what; /* "cmd" or "sub" */
    redisAsyncContext *ac;
    p2m_redis_poller_t *poller;
    void *io, *timer;
    unsigned backoff_ms;
    unsigned retry_ms; /* the delay of the next retry */
    int connected;
    int ready;
    int failures;      /* connect failures in a row: only the first of an outage is logged */
    int dropping;      /* AUTH or ROLE failed: the replies still due are ignored */
    int auth_failures; /* AUTH refusals since the connection was last ready: only the first is logged */
    size_t nchannels;
} conn_t;

struct p2m_redis {
    p2m_redis_ev_t *ev;
    p2m_redis_conf_t conf;
    conn_t cmd, sub;
    conn_t sen;       /* SUBSCRIBEd to +switch-master on a Sentinel; only with Sentinels */
    int have_primary; /* primary is what a Sentinel named; cleared whenever a connection ends */
    p2m_hostport_t primary;
    char primary_str[P2M_HOST_MAX + 16]; /* "HOST:PORT" for logs, "" before the first answer */
    unsigned via;                        /* the Sentinel that named it, where sen subscribes */
    int sentinel_failures;               /* discovery rounds failed in a row: only the first is logged */
    void *drop_timer;                    /* drops cmd and sub outside any hiredis callback */
    void *ping_timer;
    uint64_t ping_sent; /* loop ms of the PING awaiting its PONG, 0 when none */
    unsigned ping_missed;
    char sub_channels[256]; /* "A,B" as the SUBSCRIBE named them, for logs */
    int stopping;           /* no reconnect, no ping */
    int freeing;            /* p2m_redis_free(): no callback into the owner */
};

static void conn_start(conn_t *c);

static void *xcheck(void *p)
{
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=redis");
        abort();
    }
    return p;
}

static conn_t *conn_of(const redisAsyncContext *ac)
{
    conn_t *c = ac->data;
    if (c == NULL || c->magic != CONN_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "redis_bad_context", "ptr=%p", (void *)c);
        abort();
    }
    return c;
}

void *p2m_redis_data(const redisAsyncContext *ac)
{
    return conn_of(ac)->m->conf.data;
}

/* How logs name the server: the primary a Sentinel named, or the configured address. */
static const char *where(const p2m_redis_t *m)
{
    return m->primary_str[0] != '\0' ? m->primary_str : m->conf.where;
}

static void conn_failed(conn_t *c, const char *why)
{
    p2m_redis_t *m = c->m;
    char hp[P2M_HOST_MAX + 16] = "";
    if (c->failures++ != 0)
        return;
    if (c == &m->sen)
        p2m_hostport_format(m->conf.addr->sentinels[m->via].host, m->conf.addr->sentinels[m->via].port, hp, sizeof(hp));
    p2m_log(P2M_LOG_WARN, "redis_connect_failed", "conn=%s redis=%s error=\"%s\"", c->what, hp[0] ? hp : where(m), why);
}

/* Drops cmd and sub at once from the drop timer (a failover, a demoted primary): they reconnect
 * to the primary the Sentinels name then. */
static void drop_soon(p2m_redis_t *m)
{
    m->have_primary = 0;
    m->ev->timer_start(m->ev, m->drop_timer, 0);
}

static void on_drop_timer(void *arg)
{
    p2m_redis_t *m = arg;
    /* Outside any hiredis callback: on_release() schedules the reconnects. */
    if (m->cmd.ac != NULL)
        redisAsyncFree(m->cmd.ac);
    if (m->sub.ac != NULL)
        redisAsyncFree(m->sub.ac);
}

/* Asks the Sentinels in turn for the primary, from the one that answered last. This blocks the
 * loop, bounded by P2M_REDIS_SENTINEL_TIMEOUT_MS per Sentinel: a Sentinel answers from memory, a
 * dead one on loopback or a LAN refuses at once, and it happens only while a connection is down,
 * when the program waits for Redis anyway. An asynchronous query would need a fourth state
 * machine of connect, AUTH and reply with its own timeouts for the same result. Returns 0 with
 * m->primary, or -1 (logged once per outage). */
static int ask_primary(p2m_redis_t *m)
{
    const p2m_redis_addr_t *a = m->conf.addr;
    char err[P2M_ERR_LEN] = "", hp[P2M_HOST_MAX + 16], shp[P2M_HOST_MAX + 16];
    if (m->have_primary)
        return 0;
    for (unsigned k = 0; k < a->nsentinels; k++) {
        unsigned i = (m->via + k) % a->nsentinels;
        p2m_hostport_t primary;
        if (p2m_sentinel_ask(a, i, P2M_REDIS_SENTINEL_TIMEOUT_MS, &primary, err) != 0)
            continue;
        p2m_hostport_format(primary.host, primary.port, hp, sizeof(hp));
        p2m_hostport_format(a->sentinels[i].host, a->sentinels[i].port, shp, sizeof(shp));
        if (strcmp(hp, m->primary_str) != 0 || m->sentinel_failures > 0)
            p2m_log(P2M_LOG_INFO, "redis_primary", "redis=%s master=%s sentinel=%s", hp, a->master, shp);
        snprintf(m->primary_str, sizeof(m->primary_str), "%s", hp);
        m->primary = primary;
        m->via = i;
        m->have_primary = 1;
        m->sentinel_failures = 0;
        return 0;
    }
    if (m->sentinel_failures++ == 0)
        p2m_log(P2M_LOG_WARN, "redis_sentinel_failed", "master=%s sentinels=%u error=\"%s\"", a->master, a->nsentinels, err);
    return -1;
}

/* Arms the retry: after retry_ms when set (LOADING), else after the backoff, which then doubles. */
static void conn_retry(conn_t *c)
{
    p2m_redis_t *m = c->m;
    if (m->stopping)
        return;
    unsigned ms = c->retry_ms;
    if (ms == 0) {
        ms = c->backoff_ms;
        c->backoff_ms = c->backoff_ms * 2 > P2M_REDIS_BACKOFF_MAX_MS ? P2M_REDIS_BACKOFF_MAX_MS : c->backoff_ms * 2;
    }
    c->retry_ms = 0;
    m->ev->timer_start(m->ev, c->timer, ms);
}

/* The timer: a retry when down, the connect timeout while connecting. */
static void on_timer(void *arg)
{
    conn_t *c = arg;
    if (c->ac == NULL) {
        conn_start(c);
    } else if (!c->connected) {
        conn_failed(c, "connect timeout");
        redisAsyncFree(c->ac); /* outside any hiredis callback: on_release schedules the retry */
    }
}

static void on_io(void *arg)
{
    conn_t *c = arg;
    if (c->poller != NULL)
        p2m_redis_poller_dispatch(c->poller); /* may release the context */
}

/* hiredis freed the context (connection failed, lost or closed by us). */
static void on_release(int fd, void *data)
{
    conn_t *c = data;
    p2m_redis_t *m = c->m;
    (void)fd;
    m->ev->io_close(m->ev, c->io);
    c->ac = NULL;
    c->poller = NULL;
    c->connected = 0;
    c->ready = 0;
    m->ev->timer_stop(m->ev, c->timer);
    if (c != &m->sen)
        m->have_primary = 0; /* whatever ended it, the Sentinels are asked again */
    else if (!m->freeing)
        m->via = (m->via + 1) % m->conf.addr->nsentinels; /* that Sentinel may be gone: subscribe on the next */
    conn_retry(c);
}

/* An error answer to a connection's first command: most likely "-LOADING" while a restarted Redis
 * replays its persistence. Drop the connection; it is tried again after the LOADING delay. */
static void not_ready(conn_t *c, redisAsyncContext *ac, const char *err)
{
    if (c->dropping)
        return; /* AUTH or ROLE said why already */
    p2m_log(P2M_LOG_WARN, "redis_not_ready", "conn=%s error=\"%.80s\"", c->what, err);
    c->retry_ms = P2M_REDIS_LOADING_RETRY_MS;
    redisAsyncDisconnect(ac);
}

static void on_schema(redisAsyncContext *ac, void *reply, void *priv)
{
    conn_t *c = conn_of(ac);
    p2m_redis_t *m = c->m;
    redisReply *rep = reply;
    char err[P2M_ERR_LEN];
    (void)priv;
    if (rep == NULL || m->stopping || c->dropping)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        not_ready(c, ac, rep->str);
        return;
    }
    if (p2m_store_schema_check(rep, err) != 0) {
        p2m_log(P2M_LOG_ERROR, "redis_schema_mismatch", "redis=%s error=\"%s\"", m->conf.where, err);
        m->stopping = 1;
        redisAsyncDisconnect(ac);
        if (m->conf.on_fatal != NULL)
            m->conf.on_fatal(m->conf.data, err);
        return;
    }
    c->ready = 1;
    c->auth_failures = 0;
    c->backoff_ms = P2M_REDIS_BACKOFF_MIN_MS;
    m->ping_sent = 0;
    if (!m->stopping)
        m->ev->timer_start(m->ev, m->ping_timer, P2M_REDIS_PING_MS);
    if (m->conf.on_up != NULL)
        m->conf.on_up(m->conf.data);
}

static void on_message(redisAsyncContext *ac, void *reply, void *priv)
{
    conn_t *c = conn_of(ac);
    p2m_redis_t *m = c->m;
    redisReply *rep = reply;
    (void)priv;
    if (rep == NULL || m->freeing || c->dropping)
        return;
    if (rep->type == REDIS_REPLY_ERROR && !c->ready) {
        not_ready(c, ac, rep->str);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
        return;
    const redisReply *kind = rep->element[0], *chan = rep->element[1], *msg = rep->element[2];
    if (kind->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        if (msg->type == REDIS_REPLY_INTEGER && (size_t)msg->integer == c->nchannels && !c->ready) {
            c->ready = 1;
            c->auth_failures = 0;
            c->backoff_ms = P2M_REDIS_BACKOFF_MIN_MS;
            p2m_log(P2M_LOG_INFO, "redis_subscribed", "conn=sub channels=%s", m->sub_channels);
            if (m->conf.on_subscribed != NULL)
                m->conf.on_subscribed(m->conf.data);
        }
        return;
    }
    if (strcmp(kind->str, "message") == 0 && msg->type == REDIS_REPLY_STRING && m->conf.on_message != NULL)
        m->conf.on_message(m->conf.data, chan->str, msg->str, msg->len);
}

/* AUTH refused (a wrong password, no such user): the connection is dropped and retried with the
 * backoff, not the LOADING delay; the log line says what Redis answered, never the password. */
static void on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    conn_t *c = conn_of(ac);
    redisReply *rep = reply;
    (void)priv;
    if (rep == NULL || c->m->freeing || rep->type != REDIS_REPLY_ERROR || c->dropping)
        return;
    if (c->auth_failures++ == 0)
        p2m_log(P2M_LOG_ERROR, "redis_auth_failed", "conn=%s redis=%s error=\"%.80s\"", c->what,
                c == &c->m->sen ? "sentinel" : where(c->m), rep->str);
    c->dropping = 1;
    redisAsyncDisconnect(ac);
}

/* AUTH first on a new connection when a password is set (hiredis pipelines what follows). */
static void send_auth(redisAsyncContext *ac, const char *user, const char *password)
{
    const char *argv[3];
    if (password[0] == '\0')
        return;
    redisAsyncCommandArgv(ac, on_auth, NULL, p2m_redis_auth_argv(user, password, argv), argv, NULL);
}

/* ROLE before the first command: a server that is not the primary (a Sentinel that has not seen
 * the failover yet named it) is dropped, and the Sentinels are asked again. */
static void on_role(redisAsyncContext *ac, void *reply, void *priv)
{
    conn_t *c = conn_of(ac);
    p2m_redis_t *m = c->m;
    char err[P2M_ERR_LEN];
    (void)priv;
    if (reply == NULL || m->freeing || c->dropping || p2m_sentinel_role_reply(reply, err) == 0)
        return;
    p2m_log(P2M_LOG_WARN, "redis_not_primary", "conn=%s redis=%s error=\"%s\"", c->what, where(m), err);
    c->dropping = 1;
    m->have_primary = 0;
    redisAsyncDisconnect(ac);
}

/* The sentinel connection: +switch-master for our master drops cmd and sub, which reconnect to
 * the new primary. */
static void on_switch(redisAsyncContext *ac, void *reply, void *priv)
{
    conn_t *c = conn_of(ac);
    p2m_redis_t *m = c->m;
    redisReply *rep = reply;
    p2m_hostport_t old, now;
    char ohp[P2M_HOST_MAX + 16], nhp[P2M_HOST_MAX + 16];
    (void)priv;
    if (rep == NULL || m->freeing || c->dropping)
        return;
    if (rep->type == REDIS_REPLY_ERROR && !c->ready) {
        not_ready(c, ac, rep->str);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 || rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        c->ready = 1;
        c->auth_failures = 0;
        c->backoff_ms = P2M_REDIS_BACKOFF_MIN_MS;
        return;
    }
    const redisReply *msg = rep->element[2];
    if (strcmp(rep->element[0]->str, "message") != 0 || msg->type != REDIS_REPLY_STRING ||
        p2m_sentinel_switch_parse(msg->str, msg->len, m->conf.addr->master, &old, &now) != 1)
        return;
    p2m_hostport_format(old.host, old.port, ohp, sizeof(ohp));
    p2m_hostport_format(now.host, now.port, nhp, sizeof(nhp));
    /* The Sentinel we asked may have named the new primary before it announced the switch (the
     * answer and the message cross during the failover): connected there already, nothing to drop. */
    int there = m->have_primary && now.port == m->primary.port && strcmp(now.host, m->primary.host) == 0;
    p2m_log(P2M_LOG_WARN, "redis_failover", "master=%s old=%s new=%s reconnect=%s", m->conf.addr->master, ohp, nhp,
            there ? "no" : "yes");
    if (!there)
        drop_soon(m);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    conn_t *c = conn_of(ac);
    p2m_redis_t *m = c->m;
    if (status != REDIS_OK) {
        conn_failed(c, ac->errstr);
        return; /* hiredis frees the context: on_release schedules the retry */
    }
    m->ev->timer_stop(m->ev, c->timer);
    c->connected = 1;
    c->failures = 0;
    /* The backoff starts over once the connection is ready, not at connect: a server that accepts
     * and then refuses (a replica a Sentinel still names, a wrong password) is asked again after a
     * growing delay, not every P2M_REDIS_BACKOFF_MIN_MS. */
    p2m_store_cmd_t cmd;
    if (c == &m->sen) {
        send_auth(ac, "", m->conf.addr->sentinel_password);
        const char *argv[] = {"SUBSCRIBE", "+switch-master"};
        redisAsyncCommandArgv(ac, on_switch, NULL, 2, argv, NULL);
        return;
    }
    p2m_log(P2M_LOG_INFO, "redis_connected", "conn=%s redis=%s", c->what, where(m));
    send_auth(ac, m->conf.addr->user, m->conf.addr->password);
    if (m->conf.addr->nsentinels > 0) {
        const char *argv[] = {"ROLE"};
        redisAsyncCommandArgv(ac, on_role, NULL, 1, argv, NULL);
    }
    if (c == &m->cmd) {
        /* As store.c does: write the schema version if the database is new, then check it. */
        if (p2m_store_cmd_schema_init(&cmd) == 0)
            redisAsyncCommandArgv(ac, NULL, NULL, cmd.argc, cmd.argv, cmd.argvlen);
        if (p2m_store_cmd_schema_get(&cmd) == 0)
            redisAsyncCommandArgv(ac, on_schema, NULL, cmd.argc, cmd.argv, cmd.argvlen);
    } else if (m->conf.subscribe(&cmd, m->conf.data) == 0) {
        c->nchannels = (size_t)cmd.argc - 1;
        size_t used = 0;
        m->sub_channels[0] = '\0';
        for (int i = 1; i < cmd.argc && used < sizeof(m->sub_channels); i++) {
            int n = snprintf(m->sub_channels + used, sizeof(m->sub_channels) - used, "%s%s", i > 1 ? "," : "", cmd.argv[i]);
            used += n > 0 ? (size_t)n : 0;
        }
        redisAsyncCommandArgv(ac, on_message, NULL, cmd.argc, cmd.argv, cmd.argvlen);
    } else {
        redisAsyncDisconnect(ac);
    }
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    conn_t *c = conn_of(ac);
    p2m_redis_t *m = c->m;
    c->ready = 0;
    if (!m->stopping || status != REDIS_OK)
        p2m_log(m->stopping ? P2M_LOG_INFO : P2M_LOG_WARN, "redis_disconnected", "conn=%s error=\"%s\"", c->what,
                ac->errstr[0] ? ac->errstr : "closed");
    if (c == &m->cmd) {
        m->ping_sent = 0;
        m->ev->timer_stop(m->ev, m->ping_timer);
        if (!m->freeing && m->conf.on_down != NULL)
            m->conf.on_down(m->conf.data);
    }
}

static void conn_start(conn_t *c)
{
    p2m_redis_t *m = c->m;
    const p2m_redis_addr_t *a = m->conf.addr;
    char err[P2M_ERR_LEN];

    if (m->stopping || c->ac != NULL)
        return;
    c->dropping = 0;
    redisAsyncContext *ac;
    if (c == &m->sen) {
        ac = redisAsyncConnect(a->sentinels[m->via].host, a->sentinels[m->via].port);
    } else if (a->nsentinels > 0) {
        if (ask_primary(m) != 0) {
            conn_retry(c);
            return;
        }
        ac = redisAsyncConnect(m->primary.host, m->primary.port);
    } else {
        /* TCP addresses are numeric in practice (config); hiredis would resolve a name blocking. */
        ac = a->is_unix ? redisAsyncConnectUnix(a->path) : redisAsyncConnect(a->tcp.host, a->tcp.port);
    }
    if (ac == NULL || ac->err) {
        conn_failed(c, ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        conn_retry(c);
        return;
    }
    ac->data = c;
    p2m_redis_poller_t *p = p2m_redis_poller_attach(ac, on_release, c, err);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "redis_poller_failed", "conn=%s error=\"%s\"", c->what, err);
        redisAsyncFree(ac);
        conn_retry(c);
        return;
    }
    c->ac = ac;
    c->poller = p;
    if (m->ev->io_start(m->ev, c->io, p2m_redis_poller_fd(p), err) != 0) {
        p2m_log(P2M_LOG_ERROR, "redis_poller_failed", "conn=%s error=\"%s\"", c->what, err);
        redisAsyncFree(ac); /* on_release closes the poller's fd and schedules the retry */
        return;
    }
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    redisAsyncSetConnectCallback(ac, on_connect); /* after the adapter: it asks for writability */
    m->ev->timer_start(m->ev, c->timer, P2M_REDIS_CONNECT_TIMEOUT_MS);
}

static void on_pong(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    if (reply != NULL)
        conn_of(ac)->m->ping_sent = 0;
}

/* A PING per beat; a Redis that leaves P2M_REDIS_PING_DEAD of them unanswered is gone even if its
 * connections are open (a network partition): both are dropped and the usual reconnect takes over. */
static void on_ping_timer(void *arg)
{
    p2m_redis_t *m = arg;
    uint64_t now = m->ev->now_ms(m->ev);
    if (m->stopping || !m->cmd.ready)
        return;
    if (m->ping_sent != 0 && ++m->ping_missed >= P2M_REDIS_PING_DEAD) {
        p2m_log(P2M_LOG_WARN, "redis_unresponsive", "redis=%s waited_ms=%llu", m->conf.where,
                (unsigned long long)(now - m->ping_sent));
        m->ping_sent = 0;
        /* Freed here, outside any hiredis callback: on_release() schedules the reconnects. */
        if (m->cmd.ac != NULL)
            redisAsyncFree(m->cmd.ac);
        if (m->sub.ac != NULL)
            redisAsyncFree(m->sub.ac);
        return;
    }
    if (m->ping_sent == 0) {
        const char *argv[] = {"PING"};
        if (redisAsyncCommandArgv(m->cmd.ac, on_pong, NULL, 1, argv, NULL) == REDIS_OK) {
            m->ping_sent = now != 0 ? now : 1;
            m->ping_missed = 0;
        }
    }
    m->ev->timer_start(m->ev, m->ping_timer, P2M_REDIS_PING_MS);
}

static void conn_init(p2m_redis_t *m, conn_t *c, const char *what)
{
    c->magic = CONN_MAGIC;
    c->m = m;
    c->what = what;
    c->backoff_ms = P2M_REDIS_BACKOFF_MIN_MS;
    c->io = xcheck(m->ev->io_new(m->ev, on_io, c));
    c->timer = xcheck(m->ev->timer_new(m->ev, on_timer, c));
}

p2m_redis_t *p2m_redis_new(p2m_redis_ev_t *ev, const p2m_redis_conf_t *conf)
{
    p2m_redis_t *m = xcheck(calloc(1, sizeof(*m)));
    m->ev = ev;
    m->conf = *conf;
    m->ping_timer = xcheck(ev->timer_new(ev, on_ping_timer, m));
    m->drop_timer = xcheck(ev->timer_new(ev, on_drop_timer, m));
    conn_init(m, &m->cmd, "cmd");
    conn_start(&m->cmd);
    if (conf->subscribe != NULL) {
        conn_init(m, &m->sub, "sub");
        conn_start(&m->sub);
    }
    if (conf->addr->nsentinels > 0) {
        conn_init(m, &m->sen, "sentinel");
        conn_start(&m->sen);
    }
    return m;
}

void p2m_redis_stop(p2m_redis_t *m)
{
    m->stopping = 1;
    m->ev->timer_stop(m->ev, m->ping_timer);
    m->ev->timer_stop(m->ev, m->cmd.timer);
    m->ev->timer_stop(m->ev, m->drop_timer);
    if (m->sub.timer != NULL)
        m->ev->timer_stop(m->ev, m->sub.timer);
    if (m->sen.timer != NULL)
        m->ev->timer_stop(m->ev, m->sen.timer);
}

static void conn_free(p2m_redis_t *m, conn_t *c)
{
    if (c->magic != CONN_MAGIC)
        return;
    if (c->ac != NULL)
        redisAsyncFree(c->ac); /* pending callbacks get NULL; on_release closes the watch */
    m->ev->io_free(m->ev, c->io);
    m->ev->timer_free(m->ev, c->timer);
    c->magic = 0;
}

void p2m_redis_free(p2m_redis_t *m)
{
    if (m == NULL)
        return;
    m->stopping = 1;
    m->freeing = 1;
    conn_free(m, &m->cmd);
    conn_free(m, &m->sub);
    conn_free(m, &m->sen);
    m->ev->timer_free(m->ev, m->ping_timer);
    m->ev->timer_free(m->ev, m->drop_timer);
    free(m);
}

int p2m_redis_up(const p2m_redis_t *m)
{
    return m->cmd.ready;
}

int p2m_redis_subscribed(const p2m_redis_t *m)
{
    return m->sub.ready;
}

/* With Sentinels every reply passes here first: "-READONLY" means the server was demoted (a
 * failover we have not heard of yet), so cmd and sub are dropped and the Sentinels asked again. */
typedef struct {
    void (*fn)(redisAsyncContext *, void *, void *);
    void *priv;
} wrap_t;

static void on_wrapped(redisAsyncContext *ac, void *reply, void *priv)
{
    wrap_t w = *(wrap_t *)priv;
    redisReply *rep = reply;
    free(priv);
    /* "-READONLY ...", also inside a script's error text */
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "READONLY") != NULL) {
        conn_t *c = conn_of(ac);
        if (!c->m->freeing && !c->dropping) {
            p2m_log(P2M_LOG_WARN, "redis_readonly", "redis=%s error=\"%.80s\"", where(c->m), rep->str);
            c->dropping = 1;
            drop_soon(c->m);
        }
    }
    if (w.fn != NULL)
        w.fn(ac, reply, w.priv);
}

int p2m_redis_sendv(p2m_redis_t *m, void (*fn)(redisAsyncContext *, void *, void *), void *priv, int argc, const char **argv,
                    const size_t *argvlen)
{
    if (!m->cmd.ready || m->cmd.ac == NULL)
        return -1;
    if (m->conf.addr->nsentinels > 0) {
        wrap_t *w = xcheck(malloc(sizeof(*w)));
        w->fn = fn;
        w->priv = priv;
        fn = on_wrapped;
        priv = w;
    }
    if (redisAsyncCommandArgv(m->cmd.ac, fn, priv, argc, argv, argvlen) != REDIS_OK) {
        if (m->conf.addr->nsentinels > 0)
            free(priv);
        p2m_log(P2M_LOG_WARN, "redis_send_failed", "conn=cmd command=%.16s", argv[0]);
        return -1;
    }
    return 0;
}

int p2m_redis_send(p2m_redis_t *m, void (*fn)(redisAsyncContext *, void *, void *), void *priv, const p2m_store_cmd_t *c)
{
    return p2m_redis_sendv(m, fn, priv, c->argc, (const char **)c->argv, c->argvlen);
}
