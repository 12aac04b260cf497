#ifndef P2M_STORE_CMD_H
#define P2M_STORE_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "p2m/service.h"
#include "p2m/token.h"

/* Commands for programs that talk to Redis asynchronously (the registrar and the relay). Each
 * builder fills a p2m_store_cmd_t with an argv for redisAsyncCommandArgv() (p2m_redis_send()) and
 * returns 0, or -1 when the command would not fit (nothing to send). The keys and scripts are
 * spelled in store_cmd.c (the registrar's) and store_relay.c (the relay's), next to store.c, so
 * that the schema documented in store.h has one owner. Every multi-key decision is one Lua
 * script, so registrars and relays sharing a Redis never race each other. Replies are documented
 * per builder. */

#define P2M_STORE_CMD_ARGS 24

typedef struct {
    int argc;
    const char *argv[P2M_STORE_CMD_ARGS];
    size_t argvlen[P2M_STORE_CMD_ARGS];
    char _buf[2048];
    size_t _used;
} p2m_store_cmd_t;

/* The authentication limiters' settings (registrar.auth_*; PROTOCOL 1.2). */
typedef struct {
    unsigned free;        /* failures a limiter allows before it makes the next attempt wait */
    unsigned window;      /* s after its last wait ends that a limiter is forgotten */
    unsigned backoff_max; /* s the wait doubles up to, from 1 s */
} p2m_auth_limits_t;

/* How long an address the pod authenticated from counts as its own (p2m:known:ID): 7 days. */
#define P2M_AUTH_KNOWN_SECS 604800u

/* TOTP registration, first step, at unix time now. Checks the limiters for (id, addr), then counts
 * this attempt as a failure (taken back by p2m_store_cmd_register_commit). Reply: {"limited",
 * RETRY_AFTER} (nothing counted) when a limiter makes the attempt wait; {"nopod"}; or {"ok",
 * SECRET, DISABLED "0"|"1", EPOCH, OWNER, DIGITS, TOKEN_REUSE, PROTOCOL, STRUCK} where OWNER is the
 * pod owning label ("" if none), DIGITS "6" or "8", TOKEN_REUSE "none" or "same-address",
 * PROTOCOL the label's default protocol ("" = https) and STRUCK "all" when the address is not one
 * the pod authenticated from lately (the ID and address limiters were counted too) or "pair". */
int p2m_store_cmd_auth_lookup(p2m_store_cmd_t *c, const char *id, const char *label, const char *addr, long long now,
                              const p2m_auth_limits_t *lim);

/* TOTP registration, second step, after the code matched `step`: claims the step (a replayed step
 * fails, but for a pod with token_reuse "same-address": see store_cmd.c), takes back the strike of
 * auth_lookup (struck_all as its STRUCK was "all"), re-checks that the pod is enabled and owns or
 * shares label ("notowner" otherwise), records addr as the pod's own, and stores the session
 * credential digest (if not "") for session_ttl seconds. Reply: status "ok", "reused" (a code used again as token_reuse allows),
 * "replay", "nopod", "disabled" or "notowner". */
int p2m_store_cmd_register_commit(p2m_store_cmd_t *c, const char *id, const char *label, const char *addr, long long now,
                                  uint64_t step, int struck_all, const char *session_digest, unsigned session_ttl,
                                  const p2m_auth_limits_t *lim);

/* Bearer registration (no limiter: a session cannot be guessed). Reply: {"badsession"} (unknown,
 * expired or revoked), {"disabled"}, {"notowner"} or {"ok", POD, PROTOCOL}, PROTOCOL as above. */
int p2m_store_cmd_session_lookup(p2m_store_cmd_t *c, const char *digest, const char *label, const char *addr, long long now);

/* Leases a pre-connection port on a live relay for the service (label, proto) of pod, peer addr,
 * ttl seconds, on which the pod may open conns connections (field "conns" when more than 1), and
 * marks the service alive on that relay for alive_window seconds. pool is the pool target the
 * registration declared, recorded as pool:SERVICE on the pod's hash (0: none, the field is
 * removed). rand picks the first port probed. Reply: {"ok", PORT, RELAY, RELAY_ADDRESS, WAITING, WAITED, DRAINING}, {"norelay"} or
 * {"noport"}; WAITING is the number of consumers waiting for the service on all live relays now,
 * WAITED the number that have had to wait so far (as the relays last counted); DRAINING is "1"
 * when RELAY is being drained (no relay that is not had a free port: PROTOCOL 3.9), else "0". */
int p2m_store_cmd_lease_pre(p2m_store_cmd_t *c, const char *label, p2m_proto_t proto, const char *pod, const char *addr,
                            long long now, unsigned ttl, uint32_t rand, unsigned conns, unsigned alive_window, unsigned pool);

/* Consumer port limits (registrar.consumer_*; PROTOCOL 3.6). */
typedef struct {
    unsigned ttl;       /* s a consumer port lives unused */
    unsigned per_addr;  /* ports one source address may hold, all labels together */
    unsigned per_label; /* ports one label may have, all addresses together */
    unsigned share;     /* percent of all live relays' ports consumers may hold */
} p2m_consumer_caps_t;

/* Finds or leases the consumer port for addr and the first of label's services protos[0..n) that
 * has an idle pre-connection or, when none has, the first whose pod is alive (PROTOCOL 2.1). addr
 * "*" asks for the service's one port, shared by every address (registrar.consumer_ports
 * "per-service", PROTOCOL 3.6); an address, for that address's own port, where a new lease beyond
 * one of caps' limits first evicts the least recently used consumer lease in that scope. Reply:
 * {"unknown"} (no pod owns label), {"gone"} (none of them has an idle pre-connection on any live
 * relay nor a pod alive), {"noport"}, or {"ok", PORT, RELAY_ADDRESS, RELAY, STATE, SERVICE, QUEUED}
 * where STATE is "0" (existing and bound: redirect now), "1" (new: announce it to the relay and
 * wait) or "2" (another request announced it: wait), SERVICE is the chosen service key and QUEUED
 * is "1" when the service has no idle pre-connection now (the consumer will wait at the relay),
 * else "0". */
int p2m_store_cmd_consumer_route(p2m_store_cmd_t *c, const char *label, const p2m_proto_t *protos, size_t nprotos, const char *addr,
                                 long long now, const p2m_consumer_caps_t *caps, uint32_t rand);

/* After a registration of (label, proto) by pod from addr (PROTOCOL 5): with a lan or public path
 * (either may be ""), rewrites p2m:direct:SERVICE for ttl seconds and adds label to p2m:directs
 * (a changed public path loses its verified mark); with neither, removes the service's paths.
 * Reply: integer. */
int p2m_store_cmd_direct_record(p2m_store_cmd_t *c, const char *label, p2m_proto_t proto, const char *pod, const char *addr,
                                const char *lan, const char *pub, unsigned ttl);

/* The direct path for consumer addr of label (PROTOCOL 5.3), asked over plain http or not. lan /
 * pub switch each kind on; lan_name / direct_name are the DNS names (a path is used only once the
 * name holds its address, p2m:dns:names). A consumer sent to a direct path within retry seconds
 * goes to the relay; one sent now is remembered for retry seconds. Reply: {"relay", WHY} or
 * {"lan"|"direct", SCHEME ("http"|"https"), "ADDR:PORT"}. */
int p2m_store_cmd_direct_route(p2m_store_cmd_t *c, const char *label, int plain_http, const char *addr, int lan, int pub,
                               const char *lan_name, const char *direct_name, unsigned retry);

/* Ends the lease on port if it is still in state pending (a relay never answered). Reply: integer. */
int p2m_store_cmd_lease_abandon(p2m_store_cmd_t *c, uint16_t port);

/* PUBLISH "lease PORT" to the relay's channel. */
int p2m_store_cmd_announce_lease(p2m_store_cmd_t *c, const char *relay, uint16_t port);

/* SUBSCRIBE to the channel relays answer on ("PORT ok" / "PORT fail REASON"). */
int p2m_store_cmd_subscribe_bound(p2m_store_cmd_t *c);

/* Bumps counter `name` in the shared statistics. Reply: integer. */
int p2m_store_cmd_stat(p2m_store_cmd_t *c, const char *name);

/* Everything /metrics and /_health show. Reply: {NRELAYS, STATS (flat field/value array),
 * LEASES_PRE, LEASES_CONSUMER, IDLE (flat array of relay, label, count triples), RELAY_STATS (flat
 * array of relay, field, value triples), WAITING (relay, label, consumers waiting triples)}. */
int p2m_store_cmd_metrics(p2m_store_cmd_t *c);

/* The channel name relays answer on, for matching subscription messages. */
extern const char p2m_channel_bound[];

/* --- the schema version (store.h), checked by every program on every connect ----------------- */

struct redisReply;

/* SET p2m:schema P2M_SCHEMA_VERSION NX: a new database gets this program's version. */
int p2m_store_cmd_schema_init(p2m_store_cmd_t *c);

/* GET p2m:schema. */
int p2m_store_cmd_schema_get(p2m_store_cmd_t *c);

/* Judges the reply to p2m_store_cmd_schema_get() (not an error reply: the caller tells "-LOADING" from
 * an answer). Returns 0 when it is this program's version, or -1 with err ("schema version 2, this
 * program knows 1"): a newer pipe2me wrote the database, and nothing may write to it. */
int p2m_store_schema_check(const struct redisReply *r, char *err);

/* --- setup tokens (store.h: p2m:token:HASH) ---------------------------------------------------- */

/* Spends one use of the token whose SHA-256 is hash (P2M_TOKEN_HASH_LEN lower-case hex: -1 for
 * anything else, which the caller answers as an unknown token) at unix time now, in one script:
 * exists, not expired, a use left, then uses_left - 1 and pods_created + 1. Judge the reply with
 * p2m_store_token_redeem_reply(). */
int p2m_store_cmd_token_redeem(p2m_store_cmd_t *c, const char *hash, long long now);

/* Judges the reply to p2m_store_cmd_token_redeem() for hash. Returns a p2m_token_status_t, with
 * *info (if not NULL) the token after the use when P2M_TOKEN_REDEEMED, or -1 with err for a reply
 * that is none of the script's (an error reply included). */
int p2m_store_token_redeem_reply(const struct redisReply *r, const char *hash, p2m_token_info_t *info, char *err);

/* --- self-service setup (PROTOCOL 1.6) ------------------------------------------------------- */

/* What one POST /setup attempt asks of the store. All strings are borrowed. */
typedef struct {
    const char *hash;   /* the token's SHA-256, P2M_TOKEN_HASH_LEN lower-case hex */
    const char *prefix; /* the label prefix the label was chosen for ("" for none) */
    const char *label;  /* the pod's one label, valid */
    int wanted;         /* 1: the client asked for label (taken is final); 0: generated (taken: draw again) */
    const char *id;     /* the new pod's ID */
    const char *secret; /* its TOTP secret, base32 */
    unsigned digits;    /* 6 or 8 */
    size_t nprotos;     /* services asked for */
    const char *addr;   /* the client's address, for the address limiter */
    long long now;      /* unix s */
} p2m_setup_cmd_t;

/* Redeems one use of a token and creates its pod, in one script: the address limiter (PROTOCOL
 * 1.2) lets the attempt through, the token exists, has not expired and has a use left (otherwise
 * the attempt counts against the address), it allows nprotos services, its label prefix is
 * s->prefix, the label and the pod are free; then the pod is made as p2m_store_pod_add() makes it
 * (token_reuse none, the label with the default protocol) and one use is spent. Returns -1 when
 * the command does not fit or hash is not a hash. Reply: {"limited", RETRY_AFTER}, {"unknown"},
 * {"expired"}, {"spent"}, {"tunnels", TUNNELS} (more services than the token allows),
 * {"prefix", PREFIX} (the token's prefix is another: choose the label again), {"taken"} (a wanted
 * label), {"collision"} (a generated label or the pod ID exists: draw again) or {"ok",
 * USES_LEFT}. Only "ok" changed the token or made a pod. */
int p2m_store_cmd_setup(p2m_store_cmd_t *c, const p2m_setup_cmd_t *s, const p2m_auth_limits_t *lim);

/* --- the relay's commands (store_relay.c; PROTOCOL 3.1 to 3.4) -------------------------------- *
 * relay is the relay's name (relay.name), created and pod identify the lease the relay holds:
 * a script changes a lease only while it still names this relay with that created and pod. */

/* SUBSCRIBE to the relay's own channel ("lease PORT") and p2m:events ("unlease PORT"). */
int p2m_store_cmd_relay_subscribe(p2m_store_cmd_t *c, const char *relay);

/* What a message on the relay's subscription asks for. */
typedef enum {
    P2M_RELAY_MSG_NONE,    /* another channel, or not for this relay */
    P2M_RELAY_MSG_LEASE,   /* a registrar asks to bind *port */
    P2M_RELAY_MSG_UNLEASE, /* the lease on *port ended */
    P2M_RELAY_MSG_UNKNOWN, /* on the relay's own channel, but not understood */
} p2m_relay_msg_t;

/* Parses a message (msg, len bytes) that arrived on channel for relay. */
p2m_relay_msg_t p2m_store_relay_message(const char *relay, const char *channel, const char *msg, size_t len, uint16_t *port);

/* The channels p2m_store_cmd_relay_subscribe() names, "A,B", for logs. Returns the length, or -1. */
int p2m_store_relay_channels(const char *relay, char *out, size_t cap);

/* HGETALL of the lease on port. Reply: flat field/value array, empty when there is no lease. */
int p2m_store_cmd_lease_get(p2m_store_cmd_t *c, uint16_t port);

/* One SCAN step over every lease key from cursor ("0" first). Reply: {CURSOR, {KEY...}}. */
int p2m_store_cmd_lease_scan(p2m_store_cmd_t *c, const char *cursor);

/* The port of a lease key that p2m_store_cmd_lease_scan() returned (len bytes). Returns 0, or -1 when it
 * is no lease key. */
int p2m_store_lease_key_port(const char *key, size_t len, uint16_t *port);

/* HMGET of the lease's relay and created. Reply: {RELAY|nil, CREATED|nil}. */
int p2m_store_cmd_lease_owner(p2m_store_cmd_t *c, uint16_t port);

/* EXPIRE of the lease on port. Reply: 1, or 0 when the lease is gone. */
int p2m_store_cmd_lease_touch(p2m_store_cmd_t *c, uint16_t port, unsigned ttl);

/* Deletes the lease if it is still the one held. Reply: 1 deleted, 0 not. */
int p2m_store_cmd_lease_drop(p2m_store_cmd_t *c, uint16_t port, const char *relay, const char *created, const char *pod);

/* PROTOCOL 3.3, success: marks the lease bound (a service's consumer port loses its TTL) and
 * publishes "PORT ok" on p2m:bound. Reply: 1, or 0 (and "PORT fail lease gone" was published)
 * when the lease is no longer the one held. */
int p2m_store_cmd_lease_bound(p2m_store_cmd_t *c, uint16_t port, const char *relay, const char *created, const char *pod);

/* PROTOCOL 3.3, failure: marks port busy on relay for 60 s, deletes the lease if still the one
 * held and publishes "PORT fail REASON" (reason cut at 200 bytes). Reply: 0. */
int p2m_store_cmd_lease_busy(p2m_store_cmd_t *c, uint16_t port, const char *relay, const char *created, const char *pod,
                             const char *reason);

/* Publishes "PORT fail REASON" on p2m:bound (a lease that could not even be read). */
int p2m_store_cmd_lease_fail(p2m_store_cmd_t *c, uint16_t port, const char *reason);

/* The registrar's heartbeat: its hash p2m:registrar:NAME (url, started, pods_to when not "",
 * draining_to) with a TTL of ttl seconds, NAME in p2m:registrars, and its drain key read in the
 * same script. Reply: the drain URL, or "" when it is not draining. */
int p2m_store_cmd_registrar_heartbeat(p2m_store_cmd_t *c, const char *name, const char *url, const char *started,
                                      const char *pods_to, unsigned ttl);

/* What a relay holds now, for its heartbeat (pipe2me-admin relay ls). */
typedef struct {
    unsigned long long leases;  /* leases it holds (listening or with connections) */
    unsigned long long idle;    /* idle pre-connections */
    unsigned long long tunnels; /* tunnels joined and open */
    unsigned long long waiting; /* consumers waiting for a pre-connection */
    int draining;               /* it has seen its drain mark (PROTOCOL 3.9) */
} p2m_relay_counts_t;

/* The heartbeat (PROTOCOL 3.1): the relay's hash (address, ports "LO-HI", started, and the counts
 * n) with a TTL of ttl seconds, its name in p2m:relays, and the same TTL on its idle and wait
 * hashes. Reply: 0 when the relay is not marked draining (p2m:draining), 1 when it is, 2 when it
 * is and so is every other live relay (PROTOCOL 3.9). */
int p2m_store_cmd_relay_heartbeat(p2m_store_cmd_t *c, const char *relay, const char *address, const char *ports,
                                  const char *started, unsigned ttl, const p2m_relay_counts_t *n);

/* The live relays other than relay whose port range overlaps lo-hi. Reply: flat NAME, "LO-HI"
 * array sorted by name. */
int p2m_store_cmd_relay_overlaps(p2m_store_cmd_t *c, const char *relay, uint16_t lo, uint16_t hi);

/* Adds value to the relay's counter SERVICE:field. Reply: integer. */
int p2m_store_cmd_relay_stat(p2m_store_cmd_t *c, const char *relay, const char *service, const char *field,
                             unsigned long long value);

/* What a relay adds to a service's minute (p2m:series:SERVICE:MINUTE, PROTOCOL 3.4): the tunnels
 * joined and the bytes since its last emit, and the tunnels open now. */
typedef struct {
    unsigned long long conns, bytes_in, bytes_out, tunnels;
} p2m_series_add_t;

/* A bucket lives this long (seconds): Redis holds the last hour and a little. */
#define P2M_SERIES_TTL 3900

/* Adds add's counts to the service's bucket of minute (unix time / 60), raises the relay's own
 * tunnels:RELAY field to add->tunnels if that is more, and gives the bucket P2M_SERIES_TTL. One
 * script per service per emit. Reply: 0. */
int p2m_store_cmd_relay_series(p2m_store_cmd_t *c, const char *relay, const char *service, unsigned long long minute,
                               const p2m_series_add_t *add);

/* A relay that stops: its hashes (heartbeat, idle, wait, tunnels) go and its name leaves p2m:relays.
 * Reply: 0. */
int p2m_store_cmd_relay_leave(p2m_store_cmd_t *c, const char *relay);

/* Where an SNI consumer of service (LABEL or LABEL:PROTO) is served: reply "unknown" (no pod owns
 * the label), "gone" (no idle pre-connection on a live relay and no alive mark naming one),
 * "here" (the live relay with the most idle pre-connections, else the alive mark, is relay) or
 * "elsewhere". */
int p2m_store_cmd_sni_lookup(p2m_store_cmd_t *c, const char *service, const char *relay);

/* Commands whose length follows the relay's labels: argv and the bytes it points at are on the
 * heap, sized by the builder. Free with p2m_store_cmdv_free(). */
typedef struct {
    int argc;
    const char **argv;
    size_t *argvlen;
    size_t _cap;
    char *_arena;
    size_t _used, _arena_cap;
} p2m_store_cmdv_t;

/* Frees what a builder allocated; the struct may be built again. */
void p2m_store_cmdv_free(p2m_store_cmdv_t *v);

/* A lease ended at the relay, for p2m_store_cmdv_relay_sync_begin(). */
typedef struct {
    uint16_t port;
    const char *created;
    const char *pod;
} p2m_sync_drop_t;

/* What changed for one service since the last sync. */
typedef struct {
    const char *service;
    int idle_delta;   /* idle pre-connections gained (or lost, < 0) */
    unsigned waiting; /* consumers waiting now */
    unsigned long long queued, waited_served, wait_timeouts;
} p2m_sync_service_t;

/* What the relay learnt since its last sync (PROTOCOL 3.4), in one script: the leases in conns
 * (a pre-connection came on them) get lease_ttl and state "connected"; the leases in drops are
 * deleted if still the ones held; then nsvcs services, each added with
 * p2m_store_cmdv_relay_sync_service(), move their idle count by the delta (a field at 0 or below goes),
 * set their wait count and add their counters; idle and wait hashes get hash_ttl. Reply: {DRIFT,
 * I...}: DRIFT 1 when an idle count went below 0 (resync), then the 1-based positions in conns of
 * the leases that no longer exist. Returns 0, or -1 out of memory. */
int p2m_store_cmdv_relay_sync_begin(p2m_store_cmdv_t *v, const char *relay, unsigned lease_ttl, unsigned hash_ttl,
                                    const uint16_t *conns, size_t nconns, const p2m_sync_drop_t *drops, size_t ndrops,
                                    size_t nsvcs);

/* Appends one of the nsvcs services (copied). Returns 0, or -1 beyond nsvcs. */
int p2m_store_cmdv_relay_sync_service(p2m_store_cmdv_t *v, const p2m_sync_service_t *s);

/* A service and a count, for the builders below. */
typedef struct {
    const char *service;
    unsigned n;
} p2m_count_t;

typedef enum { P2M_COUNT_IDLE, P2M_COUNT_WAIT, P2M_COUNT_TUNNELS } p2m_count_kind_t;

/* Rewrites the relay's idle, wait or tunnels hash from what it holds now (services with n > 0), with a TTL
 * of ttl seconds. Reply: 0. */
int p2m_store_cmdv_relay_counts(p2m_store_cmdv_t *v, const char *relay, p2m_count_kind_t kind, unsigned ttl,
                                const p2m_count_t *items, size_t n);

/* Marks services alive on the relay for window seconds (PROTOCOL 2.1): n 1 when the relay holds
 * idle pre-connections of the service (the mark names this relay), 0 when only joined tunnels
 * (the mark is refreshed only when it names this relay or is gone). Reply: 0. */
int p2m_store_cmdv_relay_alive(p2m_store_cmdv_t *v, const char *relay, unsigned window, const p2m_count_t *items, size_t n);

#endif
