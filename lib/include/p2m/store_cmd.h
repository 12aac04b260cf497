#ifndef P2M_STORE_CMD_H
#define P2M_STORE_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "p2m/service.h"

/* Commands for programs that talk to Redis asynchronously (the registrar). Each builder fills a
 * p2m_cmd_t with an argv for redisAsyncCommandArgv(); the keys and scripts are spelled in
 * store_cmd.c, next to store.c, so that the schema documented in store.h has one owner. Every
 * multi-key decision is one Lua script, so registrars sharing a Redis never race each other.
 * Replies are arrays whose first element is a status word, documented per builder. */

#define P2M_CMD_ARGS 24

typedef struct {
    int argc;
    const char *argv[P2M_CMD_ARGS];
    size_t argvlen[P2M_CMD_ARGS];
    char _buf[2048];
    size_t _used;
} p2m_cmd_t;

/* The authentication limiters' settings (registrar.auth_*; PROTOCOL 1.2). */
typedef struct {
    unsigned free;        /* failures a limiter allows before it makes the next attempt wait */
    unsigned window;      /* s after its last wait ends that a limiter is forgotten */
    unsigned backoff_max; /* s the wait doubles up to, from 1 s */
} p2m_auth_limits_t;

/* How long an address the pod authenticated from counts as its own (p2m:known:ID): 7 days. */
#define P2M_AUTH_KNOWN_SECS 604800u

/* TOTP registration, first step, at unix time now. Checks the limiters for (id, addr), then counts
 * this attempt as a failure (taken back by p2m_cmd_register_commit). Reply: {"limited",
 * RETRY_AFTER} (nothing counted) when a limiter makes the attempt wait; {"nopod"}; or {"ok",
 * SECRET, DISABLED "0"|"1", EPOCH, OWNER, DIGITS, TOKEN_REUSE, PROTOCOL, STRUCK} where OWNER is the
 * pod owning label ("" if none), DIGITS "6" or "8", TOKEN_REUSE "none" or "same-address",
 * PROTOCOL the label's default protocol ("" = https) and STRUCK "all" when the address is not one
 * the pod authenticated from lately (the ID and address limiters were counted too) or "pair". */
int p2m_cmd_auth_lookup(p2m_cmd_t *c, const char *id, const char *label, const char *addr, long long now,
                        const p2m_auth_limits_t *lim);

/* TOTP registration, second step, after the code matched `step`: claims the step (a replayed step
 * fails, but for a pod with token_reuse "same-address": see store_cmd.c), takes back the strike of
 * auth_lookup (struck_all as its STRUCK was "all"), re-checks that the pod is enabled and owns
 * label, records addr as the pod's own, and stores the session credential digest (if not "") for
 * session_ttl seconds. Reply: status "ok", "reused" (a code used again as token_reuse allows),
 * "replay", "nopod", "disabled" or "notowner". */
int p2m_cmd_register_commit(p2m_cmd_t *c, const char *id, const char *label, const char *addr, long long now, uint64_t step,
                            int struck_all, const char *session_digest, unsigned session_ttl, const p2m_auth_limits_t *lim);

/* Bearer registration (no limiter: a session cannot be guessed). Reply: {"badsession"} (unknown,
 * expired or revoked), {"disabled"}, {"notowner"} or {"ok", POD, PROTOCOL}, PROTOCOL as above. */
int p2m_cmd_session_lookup(p2m_cmd_t *c, const char *digest, const char *label, const char *addr, long long now);

/* Leases a pre-connection port on a live relay for the service (label, proto) of pod, peer addr,
 * ttl seconds, on which the pod may open conns connections (field "conns" when more than 1), and
 * marks the service alive on that relay for alive_window seconds. rand picks the first port
 * probed. Reply: {"ok", PORT, RELAY, RELAY_ADDRESS, WAITING, WAITED}, {"norelay"} or {"noport"};
 * WAITING is the number of consumers waiting for the service on all live relays now, WAITED the
 * number that have had to wait so far (as the relays last counted). */
int p2m_cmd_lease_pre(p2m_cmd_t *c, const char *label, p2m_proto_t proto, const char *pod, const char *addr, long long now,
                      unsigned ttl, uint32_t rand, unsigned conns, unsigned alive_window);

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
int p2m_cmd_consumer_route(p2m_cmd_t *c, const char *label, const p2m_proto_t *protos, size_t nprotos, const char *addr,
                           long long now, const p2m_consumer_caps_t *caps, uint32_t rand);

/* Ends the lease on port if it is still in state pending (a relay never answered). Reply: integer. */
int p2m_cmd_lease_abandon(p2m_cmd_t *c, uint16_t port);

/* PUBLISH "lease PORT" to the relay's channel. */
int p2m_cmd_announce_lease(p2m_cmd_t *c, const char *relay, uint16_t port);

/* SUBSCRIBE to the channel relays answer on ("PORT ok" / "PORT fail REASON"). */
int p2m_cmd_subscribe_bound(p2m_cmd_t *c);

/* Bumps counter `name` in the shared statistics. Reply: integer. */
int p2m_cmd_stat(p2m_cmd_t *c, const char *name);

/* Everything /metrics and /_health show. Reply: {NRELAYS, STATS (flat field/value array),
 * LEASES_PRE, LEASES_CONSUMER, IDLE (flat array of relay, label, count triples), RELAY_STATS (flat
 * array of relay, field, value triples), WAITING (relay, label, consumers waiting triples)}. */
int p2m_cmd_metrics(p2m_cmd_t *c);

/* The channel name relays answer on, for matching subscription messages. */
extern const char p2m_channel_bound[];

#endif
