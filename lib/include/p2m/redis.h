#ifndef P2M_REDIS_H
#define P2M_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "p2m/addr.h"
#include "p2m/store_cmd.h"

/* One Redis connection manager for the programs that talk to Redis asynchronously (the registrar
 * on h2o's loop, the relay on p2m_loop_t). It keeps two hiredis connections:
 *
 *   cmd  every command; usable ("up") once connected and the schema version checked
 *   sub  SUBSCRIBEd to the channels the owner names; its messages go to on_message
 *
 * Each reconnects on its own with capped exponential backoff, gives up a connect that takes longer
 * than P2M_REDIS_CONNECT_TIMEOUT_MS, and treats an error answer to its first command (a Redis
 * still loading its persistence answers "-LOADING") as "not yet": it drops the connection and
 * tries again after P2M_REDIS_LOADING_RETRY_MS. A PING every P2M_REDIS_PING_MS notices a Redis
 * that stops answering without closing the connection (hiredis' async API has no timeouts): after
 * P2M_REDIS_PING_DEAD unanswered beats both connections are dropped and reconnected.
 *
 * The manager knows no event loop: it asks the owner's loop for descriptors to watch and one-shot
 * timers through a p2m_redis_ev_t (lib/redis_loop.c for p2m_loop_t, registrar/redis_h2o.c for
 * h2o). Hiredis itself runs through p2m_redis_poller. Logs: redis_connected, redis_connect_failed
 * (the first failure of an outage), redis_not_ready, redis_disconnected, redis_subscribed,
 * redis_unresponsive, redis_schema_mismatch, each with conn=cmd|sub where it applies.
 *
 * With Sentinels (conf.addr->nsentinels) the manager asks them for the primary before it connects
 * cmd or sub (briefly blocking: P2M_REDIS_SENTINEL_TIMEOUT_MS per Sentinel), sends AUTH (when a
 * password is set) and ROLE first, and a third connection SUBSCRIBEs to +switch-master: a
 * failover, a "-READONLY" reply or a ROLE other than "master" drops cmd and sub, which reconnect
 * to the primary the Sentinels name then (on_down, then on_up, as for any reconnect). More logs:
 * redis_primary, redis_sentinel_failed, redis_failover, redis_readonly, redis_not_primary,
 * redis_auth_failed. Without Sentinels only AUTH applies.
 *
 * Callbacks run from the loop, never from inside a p2m_redis_* call but p2m_redis_free() (which
 * runs none). Not thread-safe. */

#define P2M_REDIS_BACKOFF_MIN_MS 100      /* first retry after a connection failed or was lost */
#define P2M_REDIS_BACKOFF_MAX_MS 5000     /* the backoff doubles up to this */
#define P2M_REDIS_CONNECT_TIMEOUT_MS 3000 /* a TCP connect that takes longer is given up and retried */
#define P2M_REDIS_LOADING_RETRY_MS 100    /* after "-LOADING" (or any error) on a connection's first command */
#define P2M_REDIS_PING_MS 5000            /* a PING on the command connection this often */
#define P2M_REDIS_PING_DEAD 3             /* beats a PING may go unanswered before Redis counts as gone */
#define P2M_REDIS_SENTINEL_TIMEOUT_MS 250 /* connect and answer of one Sentinel asked for the primary */

struct redisAsyncContext;
struct redisReply;
typedef struct p2m_redis p2m_redis_t;
typedef struct p2m_redis_ev p2m_redis_ev_t;

typedef void (*p2m_redis_ev_cb)(void *arg);

/* What the manager needs from an event loop: descriptors watched for readability and one-shot
 * timers, each created once and reused. Creation never fails (out of memory aborts with a log
 * line). Handles are the adapter's own; the manager only passes them back. */
struct p2m_redis_ev {
    /* A descriptor watch calling cb(arg) while its descriptor is readable, not yet started. */
    void *(*io_new)(p2m_redis_ev_t *ev, p2m_redis_ev_cb cb, void *arg);
    /* Starts watching fd (non-blocking; the watch owns it from now on). Returns 0, or -1 with err. */
    int (*io_start)(p2m_redis_ev_t *ev, void *io, int fd, char *err);
    /* Stops watching and closes the descriptor. May be called from the watch's own callback. */
    void (*io_close)(p2m_redis_ev_t *ev, void *io);
    /* Frees a watch that is closed (or never started). Never called from a callback. */
    void (*io_free)(p2m_redis_ev_t *ev, void *io);
    /* A timer calling cb(arg) once per start. */
    void *(*timer_new)(p2m_redis_ev_t *ev, p2m_redis_ev_cb cb, void *arg);
    /* Arms (or re-arms) t to fire once after ms milliseconds. */
    void (*timer_start)(p2m_redis_ev_t *ev, void *t, unsigned ms);
    /* Disarms t; no-op when it is not armed. */
    void (*timer_stop)(p2m_redis_ev_t *ev, void *t);
    /* Frees a timer (disarming it). Never called from a callback. */
    void (*timer_free)(p2m_redis_ev_t *ev, void *t);
    /* The loop's clock in milliseconds. */
    uint64_t (*now_ms)(p2m_redis_ev_t *ev);
};

/* The owner's side. Every callback gets conf.data. Pointers are borrowed: addr and where must
 * outlive the manager. */
typedef struct {
    const p2m_redis_addr_t *addr;
    const char *where; /* how logs name the server: "unix:/run/redis.sock", "127.0.0.1:6379" */
    /* Fills the SUBSCRIBE command for the sub connection, on every (re)connect. NULL: no sub
     * connection. Returns 0, or -1 (then the connection is dropped and retried). */
    int (*subscribe)(p2m_store_cmd_t *c, void *data);
    /* The command connection is up (connected, schema checked): resynchronise. */
    void (*on_up)(void *data);
    /* The command connection was lost, or dropped before it came up. */
    void (*on_down)(void *data);
    /* Every channel of the SUBSCRIBE is confirmed. */
    void (*on_subscribed)(void *data);
    /* A message on a subscribed channel; channel and msg are NUL-terminated, valid during the call. */
    void (*on_message)(void *data, const char *channel, const char *msg, size_t len);
    /* Redis holds another schema version (err says which): nothing is sent; the owner should stop. */
    void (*on_fatal)(void *data, const char *err);
    void *data;
} p2m_redis_conf_t;

/* Starts connecting both connections under ev (borrowed, must outlive the manager). conf is
 * copied. Returns the manager; out of memory aborts with a log line. */
p2m_redis_t *p2m_redis_new(p2m_redis_ev_t *ev, const p2m_redis_conf_t *conf);

/* Stops reconnecting and pinging: connections that drop from now on stay down, replies still due
 * arrive as usual. For an orderly shutdown that still sends its last commands. */
void p2m_redis_stop(p2m_redis_t *m);

/* Closes both connections (pending callbacks run with a NULL reply; on_down does not run) and
 * frees the manager. NULL is a no-op. Not from a hiredis callback. */
void p2m_redis_free(p2m_redis_t *m);

/* 1 when the command connection is up, else 0. */
int p2m_redis_up(const p2m_redis_t *m);

/* 1 when the sub connection has every channel confirmed, else 0. */
int p2m_redis_subscribed(const p2m_redis_t *m);

/* Sends argv on the command connection; fn(ac, reply, priv) gets the reply (NULL when the
 * connection ends first), as hiredis calls it, and may be NULL. argvlen NULL: strlen of each.
 * Returns 0, or -1 (nothing sent, fn never called) when the connection is not up. */
int p2m_redis_sendv(p2m_redis_t *m, void (*fn)(struct redisAsyncContext *, void *, void *), void *priv, int argc, const char **argv,
                    const size_t *argvlen);

/* p2m_redis_sendv() of a built command. */
int p2m_redis_send(p2m_redis_t *m, void (*fn)(struct redisAsyncContext *, void *, void *), void *priv, const p2m_store_cmd_t *c);

/* conf.data of the manager whose connection ac is, for reply callbacks. Aborts on a context that
 * is not one of a manager's (a magic number is checked). */
void *p2m_redis_data(const struct redisAsyncContext *ac);

#endif
