#ifndef RELAY_H
#define RELAY_H

/* pipe2me-relay: listens on the ports the registrar leases (docs/PROTOCOL.md section 3), keeps
 * the pre-connections pods open to them, and splices each consumer connection to an idle
 * pre-connection of the same label.
 *
 *   ports.c   leases and their listeners: bind on "lease PORT", accept, follow the lease keys
 *   match.c   labels: idle pre-connections, consumers waiting for one (bounded), joining
 *   tunnel.c  one consumer/pod pair (or either half while it waits): the splice data path
 *   limits.c  concurrent consumer connections per address
 *   redis.c   the two async Redis connections, heartbeat, lease checks, counters
 *
 * Everything runs on one p2m_loop_t; nothing blocks it. Objects handed to the loop or to hiredis
 * carry a magic number checked when a void pointer comes back; Redis replies name a lease by
 * (port, generation) so that a reply for a lease closed meanwhile is recognised and dropped. */

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "p2m/bridge.h"
#include "p2m/config.h"
#include "p2m/log.h"
#include "p2m/logsum.h"
#include "p2m/loop.h"
#include "p2m/service.h"
#include "p2m/splice.h"

#define RELAY_MAGIC 0x52454c59u  /* "RELY" */
#define LEASE_MAGIC 0x4c454153u  /* "LEAS" */
#define TUNNEL_MAGIC 0x54554e4eu /* "TUNN" */
#define TUNNEL_DEAD 0x44454144u  /* "DEAD": a closed tunnel waiting to be reaped */

#define RELAY_LEASE_CHECK_MS 2000 /* PROTOCOL 3.4 */
/* Idle counts, lease marks and wait counts reach Redis at most this late, in one script for all the
 * connections of the interval: a script per connection took more of Redis than all the rest a
 * connection costs it. */
#define RELAY_SYNC_MS 5
#define RELAY_IDLE_LEASE_TTL 30         /* s, a pre lease while its connection is idle */
#define RELAY_WAIT_MAX 1024             /* consumers waiting per label; more are refused */
#define RELAY_ACCEPT_BATCH 64           /* accepts per listener event */
#define RELAY_ACCEPT_PAUSE_MS 100       /* listener rest after EMFILE/ENFILE */
#define RELAY_PUMP_BUDGET (1024 * 1024) /* bytes per direction per event, for fairness */
#define RELAY_TRIAL_BYTES (64 * 1024)   /* a consumer's first bytes copied to a pod on trial, at most */
#define RELAY_TRIAL_MS 1000             /* a trial ends (the pre-connection is kept) after this */
#define RELAY_TRIAL_RETRIES 3           /* pre-connections given back under one consumer, at most */
#define RELAY_PIPES_DEFAULT 1024        /* pipes per process (2 descriptors each) */
#define RELAY_PIPE_SIZE_DEFAULT (64 * 1024)
/* Refused connections are logged per (peer address, reason): the first in full, the rest counted
 * and logged as one conn_refused_repeat line per interval, so that a port scan of the range
 * cannot flood the log (lib/include/p2m/logsum.h). About 650 KiB for the table. */
#define RELAY_REFUSAL_INTERVAL_MS 10000
#define RELAY_REFUSAL_KEYS 4096     /* (address, reason) pairs followed at once; more share one "other" line */
#define RELAY_REFUSAL_REASON_MAX 31 /* bytes of a reason= constant */

typedef struct relay relay_t;
typedef struct lease lease_t;
typedef struct tunnel tunnel_t;
typedef struct label label_t;
typedef struct rredis rredis_t;
typedef struct limits limits_t;

#define PEER_ADDR_STRLEN 46 /* INET6_ADDRSTRLEN */

/* A peer address as 16 bytes: IPv6, or IPv4 mapped to ::ffff:a.b.c.d. */
typedef struct {
    uint8_t b[16];
} peer_addr_t;

/* --- labels (match.c) ----------------------------------------------------------------------- */

/* The idle pre-connections of one pod of a service. Several pods may serve a label (pipe2me-admin
 * label share): consumers go to them in turn, each pod's oldest first (PROTOCOL 3.4). */
typedef struct podq podq_t;
struct podq {
    char pod[P2M_ID_MAX + 1];
    tunnel_t *head, *tail; /* oldest first, linked through tunnel_t.pprev/pnext */
    unsigned n;            /* never 0: an emptied queue leaves the ring and is freed */
    podq_t *prev, *next;   /* the label's ring */
};

/* A service (p2m/service.h): consumers are joined only to pre-connections of the same service key,
 * "LABEL" (https), "LABEL:http" or "LABEL:tcp". Logs call it label. */
struct label {
    char name[P2M_SERVICE_MAX + 1];
    label_t *_hnext;
    unsigned refs;                   /* leases and tunnels naming it */
    tunnel_t *idle_head, *idle_tail; /* idle pre-connections, oldest first, of every pod */
    unsigned nidle;
    podq_t *turn;                    /* the ring of pods with idle pre-connections, at the one whose turn is next; NULL: none */
    tunnel_t *wait_head, *wait_tail; /* consumers waiting, oldest first */
    unsigned nwait;
    unsigned njoined; /* tunnels joined and open: the pod is there (p2m:alive, PROTOCOL 2.1) */
    /* What Redis has not heard yet (redis.c writes it every RELAY_SYNC_MS, see rredis_sync_soon()):
     * the change of the idle count, and (sync_dirty) whether the wait count changed. */
    int idle_delta;
    uint8_t sync_dirty; /* on the relay's sync list */
    label_t *sync_next;
    /* counters not yet added to Redis (p2m:stats:relay:NAME) */
    uint64_t bytes_in;      /* consumer -> pod */
    uint64_t bytes_out;     /* pod -> consumer */
    uint64_t conns;         /* tunnels joined */
    uint64_t queued;        /* consumers that found no idle pre-connection and waited */
    uint64_t waited_served; /* ... and were joined to a pre-connection that came */
    uint64_t wait_timeouts; /* ... and were closed after relay.wait_timeout */
};

/* --- leases (ports.c) ----------------------------------------------------------------------- */

typedef enum { LEASE_PRE = 1, LEASE_CONSUMER = 2 } lease_kind_t;

/* A lease as read from Redis (HGETALL p2m:lease:PORT), before it is checked. */
typedef struct {
    int present; /* the key existed */
    char kind[16];
    char label[P2M_LABEL_MAX + 1];
    char service[P2M_SERVICE_MAX + 1]; /* "" in a lease written without one: the label's https service */
    char pod[P2M_ID_MAX + 1];
    char addr[P2M_HOST_MAX + 1];
    char relay[P2M_LABEL_MAX + 1];
    char created[24];
    char state[16];
    char conns[8]; /* pre: connections the port accepts; "" in a lease written without it: 1 */
} lease_info_t;

struct lease {
    uint32_t magic;
    uint16_t port;
    uint8_t kind;     /* lease_kind_t */
    uint8_t bound;    /* Redis says state bound (our script ran) */
    uint8_t any_addr; /* consumer: the service's one port, for every address (lease addr "*") */
    uint32_t gen;
    uint32_t sync_round; /* the sync round that already marks it connected (redis.c) */
    relay_t *relay;
    label_t *label;
    char created[24];
    char pod[P2M_ID_MAX + 1];
    char addr_str[PEER_ADDR_STRLEN]; /* as the lease wrote it */
    peer_addr_t addr;
    p2m_loop_handler_t listener; /* fd -1 once closed */
    p2m_loop_timer_t pause;      /* accept paused after EMFILE */
    p2m_loop_reap_t reap;
    unsigned conns_left;       /* pre: connections the listener still accepts (PROTOCOL 1.1) */
    unsigned held;             /* pre: idle pre-connections accepted on it (tunnels whose pre is it) */
    p2m_loop_timer_t deadline; /* pre: the listener closes preconnect_timeout after it opened */
    unsigned nconns;           /* consumer: connections accepted and still open */
};

/* --- tunnels (tunnel.c) --------------------------------------------------------------------- */

enum { SIDE_CONSUMER = 0, SIDE_POD = 1 };
/* TUNNEL_FIRST: a consumer accepted but silent so far; it takes no pre-connection until its first
 * bytes arrive (relay.first_byte_timeout), so silent connections cannot drain a pod's pool. */
/* TUNNEL_TRIAL: a consumer just given a pre-connection that had been idle; its first bytes were
 * copied to the pod and stay in its socket until the pod is known to have taken them (tunnel.c). */
/* TUNNEL_SNI: a consumer on the SNI port whose ClientHello is being read (sni.c); TUNNEL_UPSTREAM:
 * one passed to the registrar, whose connection is being made (the pod side holds it). */
typedef enum {
    TUNNEL_IDLE = 1,
    TUNNEL_WAIT,
    TUNNEL_JOINED,
    TUNNEL_CLOSED,
    TUNNEL_FIRST,
    TUNNEL_SNI,
    TUNNEL_UPSTREAM,
    TUNNEL_TRIAL
} tunnel_state_t;

struct tunnel {
    uint32_t magic;
    uint8_t state;       /* tunnel_state_t */
    uint8_t limited;     /* holds a slot in the per-address limit */
    uint8_t queued;      /* on its label's idle list (TUNNEL_IDLE) or wait queue (TUNNEL_WAIT) */
    uint8_t via_sni;     /* came on the SNI port (sni.c), not on a consumer port */
    uint8_t retries;     /* TUNNEL_TRIAL: pre-connections that were given back under this consumer */
    uint32_t trial_sent; /* TUNNEL_TRIAL: bytes copied to the pod, still in the consumer's socket */
    relay_t *relay;
    label_t *label;
    lease_t *pre; /* TUNNEL_IDLE: the pre lease it came on (ports.c owns the link) */
    /* The sides (br.fd, br.side, indexed by SIDE_CONSUMER, SIDE_POD), watched by tunnel.c's callbacks from the first
     * attach; joined, br moves the bytes and counts them (br.dir[s] moves side s -> side 1 - s). */
    p2m_bridge_t br;
    p2m_loop_timer_t timer; /* wait timeout, then idle timeout */
    p2m_loop_reap_t reap;
    tunnel_t *prev, *next;         /* label's idle list or wait queue */
    podq_t *pq;                    /* TUNNEL_IDLE: its pod's queue of idle pre-connections */
    tunnel_t *pprev, *pnext;       /* ... in which these link it */
    tunnel_t *all_prev, *all_next; /* every tunnel of the relay */
    uint16_t qport, pport;         /* consumer lease, pre lease (0 = none) */
    uint32_t qgen;
    peer_addr_t caddr;
    uint16_t cport;                   /* SNI: the consumer's port, for the PROXY line */
    struct sni_lookup *sni_lookup;    /* SNI: the Redis lookup in flight, NULL when none */
    uint64_t t_start, t_join, t_last; /* loop ms: created, joined, last byte moved */
};

/* --- the relay ------------------------------------------------------------------------------ */

struct relay {
    uint32_t magic;
    p2m_config_t cfg;
    p2m_loop_t *loop;
    p2m_pipe_pool_t *pipes;
    rredis_t *redis;
    limits_t *limits;
    long long started; /* unix s */

    struct sockaddr_storage listen_sa; /* relay.listen, port 0 */
    socklen_t listen_len;

    lease_t **leases; /* indexed by port - cfg.relay.ports.lo */
    size_t nports;
    size_t nleases;
    uint32_t lease_gen;

    label_t **labels; /* hash table */
    size_t nbuckets, nlabels;

    /* sni.c: relay.sni_listen */
    p2m_loop_handler_t sni_listener;
    p2m_loop_timer_t sni_pause;            /* accept paused after EMFILE */
    label_t *sni_label;                    /* consumers whose service is not known yet ("": never counted) */
    struct sockaddr_storage sni_registrar; /* relay.sni_registrar */
    socklen_t sni_registrar_len;

    tunnel_t *tunnels; /* every tunnel, for shutdown */
    size_t ntunnels, njoined, nidle, nwaiting;

    /* Drain (PROTOCOL 3.9): the operator's mark (p2m:draining) as the last heartbeat read it. */
    int draining;
    int drain_alone;        /* every other live relay drains too: the pods have nowhere else to go */
    int drain_done;         /* relay_drained logged: nothing held any more */
    uint64_t drain_since;   /* loop ms the relay saw the mark */
    uint64_t last_consumer; /* loop ms a consumer last came on a consumer port */

    /* Labels with changes Redis has not heard yet (label_t.sync_dirty), most recent first. */
    label_t *sync_dirty;
    int stopping;
    int exit_code;

    p2m_logsum_t *refusals;          /* relay_refusal_log_full() */
    p2m_loop_timer_t refusals_flush; /* every RELAY_REFUSAL_INTERVAL_MS: the conn_refused_repeat lines */
};

/* relay lifecycle (main.c builds one, runs its loop, frees it) */

/* Creates the relay for cfg (copied): loop, pipe pool, port table, Redis connections started.
 * Returns it or NULL with err. */
relay_t *relay_new(const p2m_config_t *cfg, unsigned pipes, unsigned pipe_size, char *err);

/* Begins an orderly stop: listeners and connections closed, this relay's idle hash and heartbeat
 * removed from Redis; the loop stops once Redis answered (or after a bounded wait). */
void relay_shutdown(relay_t *r, const char *why);

/* Frees everything. NULL is a no-op. */
void relay_free(relay_t *r);

/* The heartbeat read the relay's drain mark: marked 1 (draining) or 0; alone 1 when every other live
 * relay drains too. Logs the change. */
void relay_drain_mark(relay_t *r, int marked, int alone);

/* Every heartbeat while draining: gives the idle pre-connections back once no consumer is coming
 * (PROTOCOL 3.9) and logs relay_drained when nothing is held any more. */
void relay_drain_tick(relay_t *r);

/* Runs one relay for cfg until SIGTERM/SIGINT (or a fatal error). Returns the exit status: 0
 * after a signal, 1 on failure. */
int relay_run(const p2m_config_t *cfg, unsigned pipes, unsigned pipe_size);

/* workers.c: --workers N. Derives worker i's configuration (name NAME-i, the i-th slice of
 * relay.ports). Returns 0, or -1 with err when the range has fewer ports than workers. */
int workers_config(const p2m_config_t *base, unsigned n, unsigned i, p2m_config_t *out, char *err);
/* Runs n worker relays under a supervisor until SIGTERM/SIGINT; returns the exit status. */
int workers_run(const p2m_config_t *cfg, unsigned n, unsigned pipes, unsigned pipe_size);

/* Formats a peer address ("192.0.2.1", "2001:db8::1") into out (PEER_ADDR_STRLEN bytes). */
const char *peer_addr_str(const peer_addr_t *a, char *out);

/* Parses a textual address (as in a lease's addr) into a peer_addr_t. Returns 0 or -1. */
int peer_addr_parse(const char *s, peer_addr_t *out);

/* Fills out from a socket address. Returns 0, or -1 for families other than IPv4/IPv6. */
int peer_addr_from_sa(const struct sockaddr *sa, peer_addr_t *out);

/* ports.c */
int ports_init(relay_t *r, char *err);
void ports_close_all(relay_t *r); /* every lease closed, listeners first */
void ports_free(relay_t *r);
lease_t *ports_find(relay_t *r, uint16_t port);
int ports_in_range(const relay_t *r, uint16_t port);
/* Why a lease is read: */
enum {
    LOAD_SCAN = 0,      /* found by the SCAN after the process started */
    LOAD_ANNOUNCED = 1, /* "lease PORT" on p2m:relay:NAME: the registrar waits for an answer */
    LOAD_RESCAN = 2,    /* found by the SCAN after a Redis reconnect */
};
/* Reads lease PORT from Redis (how = LOAD_*); ports_on_lease() follows. */
void ports_on_announce(relay_t *r, uint16_t port, int how);
/* The lease read back from Redis: bind, re-confirm, replace, drop or ignore it. */
void ports_on_lease(relay_t *r, uint16_t port, const lease_info_t *info, int how);
/* Reply of the bind confirmation script: ok = 0 means the lease vanished before it ran. */
void ports_on_bound(relay_t *r, uint16_t port, uint32_t gen, int ok);
/* The lease key is gone or belongs to another lease now: close what we hold for it. */
void ports_on_gone(relay_t *r, uint16_t port, uint32_t gen, const char *why);
/* "unlease PORT" on p2m:events. */
void ports_on_unlease(relay_t *r, uint16_t port);
/* A pre lease's connection stops being idle: joined (delta -1), closed while idle (-1), or joined
 * at once to a waiting consumer and never counted (0). Deletes the lease and frees its object. */
void ports_pre_release(relay_t *r, lease_t *l, int delta);
/* A consumer connection accepted on (qport, qgen) closed. */
void ports_consumer_closed(relay_t *r, uint16_t qport, uint32_t qgen);

/* match.c */
int match_init(relay_t *r, char *err);
void match_free(relay_t *r);
label_t *label_get(relay_t *r, const char *name);  /* finds or creates; takes a reference */
label_t *label_find(relay_t *r, const char *name); /* NULL when there is none; takes no reference */
void label_put(relay_t *r, label_t *l);            /* drops a reference; frees when unused and flushed */
/* Visits every label (for counters and resync); cb must not create or free labels. */
void label_foreach(relay_t *r, void (*cb)(relay_t *r, label_t *l, void *arg), void *arg);
/* Calls emit for every label with counters not yet published, zeroes them, and frees the labels
 * nothing references any more. */
void label_flush_counters(relay_t *r, void (*emit)(relay_t *r, const label_t *l, void *arg), void *arg);
/* A pod connected on pre lease l: join it to the oldest waiting consumer, or make it idle. */
void match_preconn(relay_t *r, lease_t *l, int fd);
/* A consumer connected on consumer lease l: it waits for its first bytes (TUNNEL_FIRST), then
 * match_consumer_ready() runs. */
void match_consumer(relay_t *r, lease_t *l, int fd, const peer_addr_t *peer);
/* Consumer c has sent its first bytes: join it to an idle pre-connection of its label (the pods
 * serving the label in turn, each pod's oldest first), or queue it (at most RELAY_WAIT_MAX per
 * label, else closed). */
void match_consumer_ready(relay_t *r, tunnel_t *c);
/* Takes t off its label's idle list or wait queue (no-op when on neither). */
void match_unlink(relay_t *r, tunnel_t *t);
/* Puts l on the relay's sync list (its idle delta, wait count or counters changed) and asks redis.c
 * to write the list soon. */
void match_sync_mark(relay_t *r, label_t *l);
/* Every label on the sync list, each once: calls cb (which writes the label's idle delta, wait count
 * and counters and zeroes the counters; NULL drops them) and clears the marks and the idle delta;
 * labels nothing references any more are freed after. */
void match_sync_flush(relay_t *r, void (*cb)(relay_t *r, label_t *l, void *arg), void *arg);

/* tunnel.c */
tunnel_t *tunnel_new(relay_t *r, label_t *label); /* takes a label reference */
/* Registers fd (accepted, non-blocking) as side s: watched for hang-up only while the tunnel
 * waits for its other half (joining 0); else for reading and hang-up, as a joined side is (a
 * consumer awaiting its first bytes, or tunnel_join() follows at once). */
int tunnel_attach(tunnel_t *t, int side, int fd, int joining);
/* Side s of t becomes from's side s (its socket and epoll registration, moved with one epoll_ctl,
 * with the interest a joining side wants); from keeps no descriptor on that side. Returns 0, or -1
 * when epoll refused (from keeps it). */
int tunnel_take_side(tunnel_t *t, int s, tunnel_t *from);
/* Registers fd (connecting, non-blocking) as the pod side of an SNI consumer passed to the
 * registrar (TUNNEL_UPSTREAM), watched for the connect's completion. Returns 0 or -1. */
int tunnel_attach_upstream(tunnel_t *t, int fd);
/* Both sides attached: starts splicing and the idle timeout, counts the join. */
void tunnel_join(tunnel_t *t);
/* Consumer t, whose first bytes wait in its socket, has just taken a pre-connection that sat idle:
 * joins it on trial (tunnel.c), or at once when nothing can be copied. */
void tunnel_trial(tunnel_t *t);
/* The registrar took an SNI consumer (sni.c): joined, the ClientHello moved on at once. */
void tunnel_pass_on(tunnel_t *t);
/* A joined t's direction d has bytes waiting: moves them now rather than at the next loop turn.
 * May close t. */
void tunnel_pump_now(tunnel_t *t, int d);
/* Closes both sides, releases pipes, counters and leases, and frees t at the end of the turn. */
void tunnel_close(tunnel_t *t, const char *reason);
/* Starts the consumer's wait timeout. */
void tunnel_wait(tunnel_t *t);
/* Starts the first-byte timeout of a consumer in TUNNEL_FIRST (watched for reading): its first
 * bytes, already there or not, come as an event. */
void tunnel_first(tunnel_t *t);
/* One log line with lease= label= fd= of t, then fmt (may be NULL). */
void tunnel_log(p2m_log_level_t level, const tunnel_t *t, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* sni.c: the SNI port (relay.sni_listen) */
/* Opens the listener when configured. Returns 0 or -1 with err. */
int sni_init(relay_t *r, char *err);
void sni_free(relay_t *r);
/* Events of a consumer in TUNNEL_SNI: reads its ClientHello so far and routes it when it can. */
void sni_on_consumer(tunnel_t *c, uint32_t events);
/* Events of a TUNNEL_UPSTREAM tunnel: the registrar's connect, or the consumer leaving first. */
void sni_on_upstream(tunnel_t *c, int side, uint32_t events);
/* rredis_sni_lookup()'s answer for cookie: "here", "unknown", "gone", "elsewhere", or NULL (no
 * answer: Redis went away). */
void sni_on_lookup(void *cookie, const char *verdict);
/* From tunnel_close(): a lookup in flight for t finds no tunnel. */
void sni_forget(tunnel_t *t);

/* limits.c */
limits_t *limits_new(unsigned max_per_addr);
void limits_free(limits_t *lim);
/* Takes a slot for addr. Returns 0, or -1 when addr has max_per_addr slots already. */
int limits_acquire(limits_t *lim, const peer_addr_t *addr);
void limits_release(limits_t *lim, const peer_addr_t *addr);
size_t limits_count(const limits_t *lim, const peer_addr_t *addr);

/* redis.c: every call is fire-and-forget; when the command connection is down it does nothing,
 * and the resynchronisation that follows the reconnect makes up for it. */
rredis_t *rredis_new(relay_t *r, char *err);
void rredis_free(rredis_t *rr);
int rredis_ready(const rredis_t *rr);
void rredis_lease_load(rredis_t *rr, uint16_t port, int how);
/* Deletes lease port if it is still the one info describes (relay, created, pod). */
void rredis_lease_drop(rredis_t *rr, uint16_t port, const lease_info_t *info);
void rredis_lease_bound(rredis_t *rr, const lease_t *l);
void rredis_lease_busy(rredis_t *rr, uint16_t port, const lease_info_t *info, const char *reason);
void rredis_lease_fail(rredis_t *rr, uint16_t port, const char *reason);
void rredis_idle_add(rredis_t *rr, const lease_t *l);
void rredis_pre_release(rredis_t *rr, const lease_t *l, int delta, int last);
void rredis_lease_check(rredis_t *rr, const lease_t *l);
void rredis_lease_touch(rredis_t *rr, const lease_t *l, unsigned ttl);
/* Asks Redis where service's consumers are served (relay/sni.c): sni_on_lookup(cookie, ...) gets the
 * answer. Returns 0, or -1 when Redis is away (no call then). */
int rredis_sni_lookup(rredis_t *rr, const char *service, void *cookie);
/* Schedules the next write of the sync list and of the lease marks (at most RELAY_SYNC_MS from now). */
void rredis_sync_soon(rredis_t *rr);
/* Final writes before exit (idle hash and heartbeat removed, counters flushed); calls
 * p2m_loop_stop() once Redis acknowledged them or after a bounded wait. */
void rredis_shutdown(rredis_t *rr);

/* A connection from peer refused for reason (a constant of at most RELAY_REFUSAL_REASON_MAX bytes,
 * the log line's reason=) on port lease of label (NULL: none). Returns 1 when the caller should
 * log it in full: the first refusal of this peer and reason, or the first after an interval in
 * which none was counted. Returns 0 when it was only counted: one line `event=conn_refused_repeat
 * peer= reason= count= interval_s= lease= label=` (lease and label of the last one counted)
 * reports them at the next flush, within RELAY_REFUSAL_INTERVAL_MS, or when the relay stops. */
int relay_refusal_log_full(relay_t *r, const peer_addr_t *peer, const char *reason, uint16_t lease, const char *label);

/* Out of memory: log and abort (STYLE.md). */
void *relay_xcalloc(size_t n, size_t size);
void *relay_xrealloc(void *ptr, size_t n, size_t size);

#endif
