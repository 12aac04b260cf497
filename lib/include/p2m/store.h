#ifndef P2M_STORE_H
#define P2M_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "p2m/addr.h"
#include "p2m/config.h"
#include "p2m/label.h"
#include "p2m/service.h"
#include "p2m/token.h"
#include "p2m/totp.h"

/* The Redis schema. store.c is the sole owner of pipe2me's keys: no other file spells a key.
 *
 * Schema version 1 (all keys under the prefix "p2m:"):
 *
 *   p2m:schema               string  "1"; written on first connect, checked on every connect
 *   p2m:pods                 set     every pod ID
 *   p2m:pod:ID               hash    secret (base32), created (unix s), disabled ("0"|"1"),
 *                                    epoch (bumped on disable, enable and rotate-secret: session
 *                                    credentials carry the epoch they were issued under),
 *                                    token_reuse ("none"|"same-address"; absent = "none": an OTP
 *                                    is accepted once, RFC 6238 5.2; "same-address": again within
 *                                    its step for the same label from the address that used it
 *                                    first, a bounded number of times), digits ("6"|"8"; absent =
 *                                    "6": the length of the pod's OTPs). Pods created before these
 *                                    two fields existed lack them and read as the defaults.
 *                                    last_registration (unix s): written by each registration
 *                                    that got a lease (absent until the first), for the console
 *                                    pool:SERVICE (a number): the pool target the latest
 *                                    registration of SERVICE that got a lease declared ("pool",
 *                                    PROTOCOL 1.1; removed by one that declared none), for the
 *                                    console
 *   p2m:pod:ID:labels        set     the labels pod ID owns
 *   p2m:pod:ID:shares        set     the labels pod ID shares (serves beside their owner)
 *   p2m:labels               hash    LABEL -> owning pod ID (a label has one owner)
 *   p2m:label:LABEL:sharers  set     the pods besides the owner that may serve LABEL (at most
 *                                    P2M_LABEL_SHARERS_MAX; absent: none); a sharer registers,
 *                                    gets certificates and passes the 403 checks as the owner does;
 *                                    ends with the label, and with the pod for its own entry
 *   p2m:labels:protocol      hash    LABEL -> "http"|"https"|"tcp": the protocol a registration
 *                                    without a body is for (absent = "https"); ends with the label
 *   p2m:lease:PORT           hash    kind ("pre"|"consumer"), label, service (the service key,
 *                                    p2m/service.h: "LABEL", "LABEL:http", "LABEL:tcp"; the relay
 *                                    joins a consumer only to a pre-connection of the same
 *                                    service), pod, addr (the only peer address the relay accepts
 *                                    on PORT; "*" for a service's consumer port: any), relay
 *                                    (NAME), created (unix s), state ("pending"|"bound"|
 *                                    "connected": a pre lease's pod connected); has a TTL (a
 *                                    crashed process leaks no port past it), but for a service's
 *                                    consumer port once bound, which lives with its label
 *   p2m:cport:SERVICE        string  the service's consumer port (registrar.consumer_ports
 *                                    "per-service", the default); no TTL; ends with the label
 *   p2m:cports:service       set     every such port (at most consumer_ports_share of the ports)
 *   p2m:consumer:SERVICE:ADDR string the consumer port leased for ADDR and SERVICE (TTL as the
 *                                    lease; consumer_ports "per-address" only)
 *   p2m:cports               zset    consumer lease ports -> last use (unix s), all of them
 *   p2m:cports:addr:ADDR     zset    the same for one source address
 *   p2m:cports:label:LABEL   zset    the same for one label (caps and eviction: PROTOCOL 3.6)
 *   p2m:relays               set     relay names (stale ones are pruned when their hash is gone)
 *   p2m:relay:NAME           hash    address, ports ("LO-HI"), started, and what the relay holds
 *                                    as it last counted: leases, idle, tunnels, waiting, draining
 *                                    ("0"|"1": it follows the mark below); TTL 15 s, heartbeat 5 s
 *                                    (P2M_RELAY_HEARTBEAT_TTL, P2M_RELAY_HEARTBEAT_MS)
 *   p2m:registrars           set     registrar names (stale ones are pruned when their hash is gone)
 *   p2m:registrar:NAME       hash    url (its registrar.url), started (unix s), pods_to (its
 *                                    registrar.pods_to, absent when none), draining_to (the URL of
 *                                    :drain as the registrar last read it, absent when none); TTL
 *                                    15 s, heartbeat 5 s (P2M_REGISTRAR_HEARTBEAT_*)
 *   p2m:registrar:NAME:drain string  an https:// URL: registrar NAME answers registrations and
 *                                    certificate requests with 307 to it (PROTOCOL 1.7); no TTL;
 *                                    set by `pipe2me-admin registrar drain`, removed by undrain
 *   p2m:draining             set     relay names an operator is draining (pipe2me-admin relay
 *                                    drain); no TTL: a mark outlives the relay's restarts until
 *                                    relay undrain. A draining relay gets no new leases while
 *                                    another live relay does not drain (PROTOCOL 3.9)
 *   p2m:idle:NAME            hash    SERVICE -> idle pre-connections held by relay NAME
 *   p2m:wait:NAME            hash    SERVICE -> consumers waiting at relay NAME for a
 *                                    pre-connection (written at most 5 ms late; TTL as the idle hash)
 *   p2m:alive:SERVICE        string  NAME of the relay where the service's pod registered last, or
 *                                    that holds its pre-connections or tunnels; TTL
 *                                    registrar.alive_window: while it lives, consumers of a
 *                                    service without an idle pre-connection are queued, not refused
 *   p2m:stats:relay:NAME     hash    SERVICE:bytes_in, SERVICE:bytes_out, SERVICE:conns,
 *                                    SERVICE:queued, SERVICE:waited_served, SERVICE:wait_timeouts
 *   p2m:tunnels:NAME         hash    SERVICE -> tunnels open at relay NAME (rewritten with every
 *                                    heartbeat; TTL as the idle hash)
 *   p2m:series:SERVICE:MINUTE hash   conns, bytes_in, bytes_out (summed over the relays) and
 *                                    tunnels:NAME (relay NAME's most tunnels open at once) in that
 *                                    minute (unix time / 60); TTL P2M_SERIES_TTL (65 min)
 *   p2m:portbusy:NAME:PORT   string  PORT could not be bound on relay NAME; TTL 60 s
 *   p2m:totp:ID:STEP         string  a TOTP step already used by pod ID; TTL 5 steps (replay)
 *   p2m:session:DIGEST       hash    pod, label, epoch; TTL registrar.session_ttl
 *   p2m:fail:id:ID           string  failed authentications for ID in the current window (TTL)
 *   p2m:fail:addr:ADDR       string  the same per source address
 *   p2m:tokens               set     the hash of every setup token (p2m/token.h)
 *   p2m:token:HASH           hash    uses (as made), uses_left, tunnels (services a pod made with
 *                                    it may have), expires (unix s, "0" = never), label_prefix
 *                                    ("" = none), created (unix s), pods_created. HASH is the
 *                                    SHA-256 of the token in lower-case hex: the token itself is
 *                                    never stored. A spent or expired token stays until token rm
 *   p2m:direct:SERVICE       hash    pod, src (the address the pod registered from), lan, public
 *                                    (its direct paths, "ADDR:PORT" or ""); TTL
 *                                    registrar.alive_window, rewritten by each registration that
 *                                    declares a path, removed by one that declares none (PROTOCOL 5)
 *   p2m:direct-ok:SERVICE    string  the public path ("ADDR:PORT") whose TLS check last passed; TTL
 *                                    3 x registrar.direct.check_interval; removed when a check fails
 *   p2m:direct-lock:LABEL    string  the registrar (registrar.name) that checks LABEL's paths; PX
 *                                    check_interval, taken when free or already its own: one
 *                                    registrar checks a label while it keeps running
 *   p2m:direct-sent:SERVICE:ADDR string "lan"|"direct": consumer ADDR was sent to a direct path of
 *                                    the service it asked for; TTL registrar.direct.retry_window: its
 *                                    next request goes to the relay
 *   p2m:directs              set     labels the checker visits: any with a direct hash or a DNS name
 *                                    written; a label leaves once it has neither
 *   p2m:dns:names            hash    NAME (LABEL.lan.DOMAIN, LABEL.direct.DOMAIN) -> the address the
 *                                    registrars last wrote for it by RFC 2136; absent once deleted
 *   p2m:stats                hash    counters by name (registrations, redirects, fail:REASON ...)
 *   p2m:events               channel "unlease PORT", "pod ID": change notices for relays
 *   p2m:relay:NAME           channel "lease PORT": a registrar asks relay NAME to bind PORT
 *   p2m:bound                channel "PORT ok" | "PORT fail REASON": relays answer registrars
 *
 * The commands and scripts of the programs that talk to Redis asynchronously are built in
 * lib/store_cmd.c (the registrar's, and the schema check every connection makes) and
 * lib/store_relay.c (the relay's), declared in p2m/store_cmd.h; the key names C code builds are
 * spelled once, in lib/store_priv.h. No program spells a key.
 *
 * Multi-key changes run as Lua scripts, so that a refused change (a label owned by another pod,
 * an unknown pod) changes nothing, and several admins or registrars can share one Redis. */

#define P2M_SCHEMA_VERSION 1

/* A relay rewrites its hash p2m:relay:NAME every P2M_RELAY_HEARTBEAT_MS with a TTL of
 * P2M_RELAY_HEARTBEAT_TTL seconds: it counts as live while the hash exists (PROTOCOL 3.1). */
#define P2M_RELAY_HEARTBEAT_MS 5000
#define P2M_RELAY_HEARTBEAT_TTL 15

/* A registrar rewrites its hash p2m:registrar:NAME likewise, and reads its drain key with each
 * heartbeat: a drain takes effect within P2M_REGISTRAR_HEARTBEAT_MS. */
#define P2M_REGISTRAR_HEARTBEAT_MS 5000
#define P2M_REGISTRAR_HEARTBEAT_TTL 15

typedef struct p2m_store p2m_store_t;

/* A pod's token_reuse: whether an OTP may be accepted again (p2m:pod:ID above). */
#define P2M_TOKEN_REUSE_NONE 0
#define P2M_TOKEN_REUSE_SAME_ADDRESS 1

/* Parses a token_reuse name as the admin tool and Redis spell it: "none" or "same-address"
 * (exactly, lower case). Returns 0 with *out a P2M_TOKEN_REUSE_*, or -1. */
int p2m_token_reuse_parse(const char *s, int *out);

/* "none" or "same-address"; any other value reads as "none". */
const char *p2m_token_reuse_name(int token_reuse);

typedef struct {
    char id[P2M_ID_MAX + 1];
    char secret[P2M_TOTP_SECRET_B32_LEN + 1];
    long long created;
    int disabled;
    long long epoch;
    int token_reuse; /* P2M_TOKEN_REUSE_*: NONE unless Redis says "same-address" */
    unsigned digits; /* 6 or 8: 6 unless Redis says "8" */
    size_t nlabels;
    char (*labels)[P2M_LABEL_MAX + 1]; /* nlabels entries, sorted */
    size_t nshares;
    char (*shares)[P2M_LABEL_MAX + 1]; /* the nshares labels it shares (p2m:pod:ID:shares), sorted */
} p2m_pod_t;

typedef struct {
    uint16_t port;
    char kind[16]; /* "pre" or "consumer" */
    char label[P2M_LABEL_MAX + 1];
    char pod[P2M_ID_MAX + 1];
    char addr[P2M_HOST_MAX + 1];
    long long created;
    long long ttl; /* seconds left, -1 none */
} p2m_lease_t;

/* The most pods that may share one label besides its owner (p2m:label:LABEL:sharers). */
#define P2M_LABEL_SHARERS_MAX 32

typedef struct {
    char label[P2M_LABEL_MAX + 1];
    char pod[P2M_ID_MAX + 1];
    p2m_proto_t proto; /* the label's default protocol (p2m:labels:protocol), https when unset */
    size_t nsharers;
    char (*sharers)[P2M_ID_MAX + 1]; /* nsharers pods that share the label, sorted; NULL when none */
} p2m_label_owner_t;

/* Connects (blocking, timeout_ms for connect and each command), checks or writes the schema
 * version. Returns a store or NULL with err ("redis unix:/x.sock: Connection refused"). With
 * addr->nsentinels the primary is found through the Sentinels, and AUTH is sent when
 * addr->password is set (p2m/sentinel.h). With addr->wait_replicas, every change below is
 * followed by WAIT wait_replicas wait_timeout_ms; fewer acknowledgements fail the call with an
 * error saying the change is on the primary but not confirmed (the change is not undone). */
p2m_store_t *p2m_store_connect(const p2m_redis_addr_t *addr, unsigned timeout_ms, char *err);

/* Connects as p2m_store_connect does but neither writes nor checks the schema version, for a
 * caller that only reports what it finds (pipe2me-admin check): p2m_store_schema_get says what
 * the database holds. Use only the reads below on such a connection; the functions that change
 * the store assume a checked schema. */
p2m_store_t *p2m_store_connect_raw(const p2m_redis_addr_t *addr, unsigned timeout_ms, char *err);

/* Closes the connection. NULL is a no-op. */
void p2m_store_free(p2m_store_t *st);

/* From now on a change that WAIT does not confirm also sets *flag to 1 (borrowed; NULL: none), so
 * that a caller tells "changed but unconfirmed" from "refused". */
void p2m_store_flag_unconfirmed(p2m_store_t *st, int *flag);

/* Creates pod id with the given secret, labels (already normalized), token_reuse
 * (P2M_TOKEN_REUSE_*) and digits (6 or 8), atomically: fails with nothing changed if the pod
 * exists, any label has an owner, or a setting is out of range. The labels start with the
 * default protocol. */
int p2m_store_pod_add(p2m_store_t *st, const char *id, const char *secret, const char (*labels)[P2M_LABEL_MAX + 1], size_t nlabels,
                      int token_reuse, unsigned digits, long long now, char *err);

/* Loads one pod. Returns 0 with *out (free with p2m_store_pod_free), or -1 with err ("unknown pod"). */
int p2m_store_pod_get(p2m_store_t *st, const char *id, p2m_pod_t **out, char *err);
void p2m_store_pod_free(p2m_pod_t *pod);

/* Lists every pod ID, sorted. *ids is nids entries of P2M_ID_MAX + 1; free() it. */
int p2m_store_pod_list(p2m_store_t *st, char (**ids)[P2M_ID_MAX + 1], size_t *nids, char *err);

/* Removes pod id and its labels (with their default protocols and their sharers) in one script, and
 * takes it off the labels it shares; then ends its leases and those of the labels removed (a lease
 * left by a connection lost in between still expires with its TTL). Session credentials die with the
 * pod: the registrar checks the pod and its epoch on every use. */
int p2m_store_pod_rm(p2m_store_t *st, const char *id, char *err);

/* Sets or clears the disabled flag and bumps the epoch (revoking session credentials). Disabling
 * also ends the pod's leases, but for a service's consumer port and the consumer leases of a label
 * that other pods share (they serve them). */
int p2m_store_pod_set_disabled(p2m_store_t *st, const char *id, int disabled, char *err);

/* Replaces the secret and bumps the epoch. */
int p2m_store_pod_set_secret(p2m_store_t *st, const char *id, const char *secret, char *err);

/* Changes a pod's token_reuse (P2M_TOKEN_REUSE_*, or -1 to keep it) and digits (6 or 8, or 0 to
 * keep them), together. Session credentials stay valid: neither changes who the pod is. Fails
 * with nothing changed if the pod is unknown, nothing is asked for or a value is out of range. */
int p2m_store_pod_set_settings(p2m_store_t *st, const char *id, int token_reuse, unsigned digits, char *err);

/* Gives label to pod id. Fails with nothing changed if the pod is unknown or another pod owns
 * the label; giving a pod a label it already owns succeeds and sets *existed. proto (borrowed,
 * may be NULL) sets the label's default protocol; NULL gives a new label the default (https) and
 * leaves an existing one's alone. The label's protocol afterwards goes to *proto_now if not NULL. */
int p2m_store_label_add(p2m_store_t *st, const char *id, const char *label, const p2m_proto_t *proto, int *existed,
                        p2m_proto_t *proto_now, char *err);

/* Sets the default protocol of label, which must have an owner (written to owner,
 * P2M_ID_MAX + 1 bytes, if not NULL). */
int p2m_store_label_set_protocol(p2m_store_t *st, const char *label, p2m_proto_t proto, char *owner, char *err);

/* Takes label from its owner and its sharers, forgets its default protocol and ends the label's
 * leases. When gone is not NULL it gets the label, its former owner and sharers (release with
 * p2m_store_label_owner_dispose). */
int p2m_store_label_rm(p2m_store_t *st, const char *label, p2m_label_owner_t *gone, char *err);

/* Lets pod id serve label beside its owner (and the other sharers). Fails with nothing changed if
 * the label or the pod is unknown, the pod owns the label, or the label has P2M_LABEL_SHARERS_MAX
 * sharers; a pod that shares it already succeeds and sets *existed. The owner goes to owner
 * (P2M_ID_MAX + 1 bytes) if not NULL. */
int p2m_store_label_share(p2m_store_t *st, const char *label, const char *id, int *existed, char *owner, char *err);

/* Stops pod id sharing label and ends the pod's leases of the label (its idle pre-connections
 * close; its sessions for the label fail the next ownership check). Fails with nothing changed if
 * the label is unknown or the pod does not share it (the owner included: label rm takes a label
 * from its owner). The owner goes to owner (P2M_ID_MAX + 1 bytes) if not NULL. */
int p2m_store_label_unshare(p2m_store_t *st, const char *label, const char *id, char *owner, char *err);

/* Returns 1 if label has an owner, 0 if not, -1 on error. */
int p2m_store_label_exists(p2m_store_t *st, const char *label, char *err);

/* Lists every label with its owner, sharers and default protocol, sorted by label, read in one
 * script. Release *out with p2m_store_label_list_free(*out, *n). */
int p2m_store_label_list(p2m_store_t *st, p2m_label_owner_t **out, size_t *n, char *err);

/* Frees a list p2m_store_label_list returned, with the sharers of each entry. NULL is a no-op. */
void p2m_store_label_list_free(p2m_label_owner_t *list, size_t n);

/* Frees the sharers of one entry (filled by p2m_store_label_rm) and empties it; the struct is the
 * caller's. */
void p2m_store_label_owner_dispose(p2m_label_owner_t *o);

/* Lists every live lease, sorted by port. free() *out. */
int p2m_store_lease_list(p2m_store_t *st, p2m_lease_t **out, size_t *n, char *err);

/* Ends the lease on port (DEL and an "unlease" notice). Fails if there is none. */
int p2m_store_lease_rm(p2m_store_t *st, uint16_t port, char *err);

/* Reads p2m:schema into out (cap bytes; a longer value is cut short). Returns 1 when it is set,
 * 0 when it is absent (out is then ""), -1 with err. Writes nothing. */
int p2m_store_schema_get(p2m_store_t *st, char *out, size_t cap, char *err);

/* A relay named in p2m:relays with what its heartbeat hash p2m:relay:NAME holds, read at one
 * instant. Strings are cut short to fit; fields the hash lacks are "". */
typedef struct {
    char name[P2M_LABEL_MAX + 1];
    int live;         /* the hash exists */
    long long ttl_ms; /* ms left on the hash; -1 when it has no TTL; 0 when !live */
    char address[P2M_HOST_MAX + 1];
    char ports[32];   /* "LO-HI" as published */
    char started[24]; /* unix s as published */
    /* As the relay last counted (its heartbeat); -1 when the hash lacks the field (an older relay). */
    long long leases, idle, tunnels, waiting;
    int draining;   /* the operator's mark: the name is in p2m:draining (dead relays too) */
    int drain_seen; /* the relay's heartbeat says it is draining (it has read the mark) */
    int listed;     /* in p2m:relays; 0 for a name only the drain mark names (a relay that left) */
} p2m_relay_info_t;

/* Lists the relays named in p2m:relays or marked draining (p2m:draining), sorted by name, each with
 * its heartbeat hash, in one read-only script. free() *out. Returns 0 or -1 with err. */
int p2m_store_relay_list(p2m_store_t *st, p2m_relay_info_t **out, size_t *n, char *err);

/* A registrar named in p2m:registrars with its heartbeat hash and drain key, read at one instant.
 * Strings are cut short to fit; fields the hash lacks are "". */
typedef struct {
    char name[P2M_LABEL_MAX + 1];
    int live;         /* the hash exists */
    long long ttl_ms; /* ms left on the hash; 0 when !live */
    char url[P2M_URL_MAX + 1];
    char started[24];
    char pods_to[P2M_URL_MAX + 1];     /* registrar.pods_to, "" for none */
    char draining_to[P2M_URL_MAX + 1]; /* as the registrar last read its drain key, "" for none */
    char drain[P2M_URL_MAX + 1];       /* the drain key now, "" for none */
} p2m_registrar_info_t;

/* Lists the registrars named in p2m:registrars, sorted by name, in one read-only script; names
 * whose hash is gone (and that have no drain key) are pruned from the set. free() *out. Returns 0
 * or -1 with err. */
int p2m_store_registrar_list(p2m_store_t *st, p2m_registrar_info_t **out, size_t *n, char *err);

/* Sets registrar name's drain key to url (checked by the caller: p2m_https_base_normalize). Fails
 * with nothing changed when no registrar of that name is live. */
int p2m_store_registrar_drain(p2m_store_t *st, const char *name, const char *url, char *err);

/* Removes registrar name's drain key; *was (if not NULL) tells whether there was one. */
int p2m_store_registrar_undrain(p2m_store_t *st, const char *name, int *was, char *err);

/* Sets (draining 1) or clears (0) the drain mark of relay name in p2m:draining (PROTOCOL 3.9). Fails
 * with nothing changed when the relay has no heartbeat hash ("unknown relay" or "relay NAME is not
 * live"), unless force (a relay that is down). *changed (if not NULL) says whether the mark moved.
 * Returns 0 or -1 with err. */
int p2m_store_relay_drain(p2m_store_t *st, const char *name, int draining, int force, int *changed, char *err);

/* What the relays report now about a pod's services or a label's (summed over its services and
 * the relays in p2m:relays): online when one has p2m:alive:SERVICE, idle pre-connections or open
 * tunnels; idle, waiting and tunnels from p2m:idle:NAME, p2m:wait:NAME and p2m:tunnels:NAME; the
 * totals bytes_in, bytes_out and conns from p2m:stats:relay:NAME; last_registration (unix s, 0
 * when none, pods only) from the pod's hash, and pool_target (pods only), the sum of the pool
 * targets its services' latest registrations declared (pool:SERVICE on its hash; 0 when none did).
 * A shared label counts for its owner and every sharer. */
typedef struct {
    int online;
    long long idle, waiting, tunnels;
    long long bytes_in, bytes_out, conns;
    long long last_registration;
    long long pool_target;
} p2m_live_t;

/* Fills out[i] for names[i], n pod IDs (pods) or labels, in one read-only script. An unknown pod
 * reads as all zero. Returns 0 or -1 with err. */
int p2m_store_live(p2m_store_t *st, int pods, const char *const *names, size_t n, p2m_live_t *out, char *err);

/* One minute of a pod's series (p2m:series:SERVICE:MINUTE, summed over its services): tunnels
 * joined, the most tunnels open at once (each relay's most, summed over the relays), bytes. */
#define P2M_SERIES_MINUTES 60
typedef struct {
    long long minute; /* unix time / 60 */
    long long conns, tunnels, bytes_in, bytes_out;
} p2m_series_point_t;

/* Reads pod id's last P2M_SERIES_MINUTES minutes up to minute_now, oldest first, minutes without a
 * bucket as zero, in one read-only script. Returns 0, 1 for an unknown pod (err says so), or -1 with
 * err. */
int p2m_store_pod_series(p2m_store_t *st, const char *id, long long minute_now, p2m_series_point_t out[P2M_SERIES_MINUTES],
                         char *err);

/* Reads Redis's clock (TIME) as microseconds since the epoch into *usec. Returns 0 or -1 with err. */
int p2m_store_time(p2m_store_t *st, long long *usec, char *err);

/* Stores a token by its hash (P2M_TOKEN_HASH_LEN lower-case hex) with uses (1..P2M_TOKEN_USES_MAX)
 * uses, at most tunnels (1..P2M_TOKEN_TUNNELS_MAX) services per pod, expires (unix s, 0 = never)
 * and label_prefix ("" = none, else p2m_token_label_prefix_check). Fails with nothing changed if a
 * value is out of range or the hash is stored already. */
int p2m_store_token_add(p2m_store_t *st, const char *hash, long long uses, long long tunnels, long long expires,
                        const char *label_prefix, long long now, char *err);

/* Lists every token, sorted by hash, read in one script. free() *out. */
int p2m_store_token_list(p2m_store_t *st, p2m_token_info_t **out, size_t *n, char *err);

/* Removes the one token whose hash starts with id (P2M_TOKEN_ID_LEN or P2M_TOKEN_HASH_LEN
 * lower-case hex), writing its full hash to hash (P2M_TOKEN_HASH_LEN + 1 bytes) if not NULL.
 * Fails with nothing changed when no token or more than one matches. */
int p2m_store_token_rm(p2m_store_t *st, const char *id, char *hash, char *err);

/* Spends one use of the token with this hash at unix time now, in one Lua script so that
 * concurrent redemptions never spend more uses than the token has: checks that it exists, has not
 * expired and has a use left, then decrements uses_left and increments pods_created. Returns a
 * p2m_token_status_t (nothing changed unless P2M_TOKEN_REDEEMED, when info, if not NULL, gets the
 * token's tunnels, label_prefix and counts after the use), or -1 with err when Redis fails. The
 * registrar sends the same script asynchronously: p2m_store_cmd_token_redeem (p2m/store_cmd.h). */
int p2m_store_token_redeem(p2m_store_t *st, const char *hash, long long now, p2m_token_info_t *info, char *err);

/* --- direct paths (PROTOCOL 5), for the registrar's checker ------------------------------------- */

/* What the checker holds for one label, read under its lock. */
typedef struct {
    int locked;                               /* 1: this registrar holds the label's lock now */
    char lan[P2M_DIRECT_ADDR_MAX + 1];        /* https service's lan path ("" none, or its pod disabled or gone) */
    char lan_http[P2M_DIRECT_ADDR_MAX + 1];   /* the http service's */
    char public_[P2M_DIRECT_ADDR_MAX + 1];    /* the https service's public path (only https is checked) */
    char dns_lan[P2M_DIRECT_ADDR_MAX + 1];    /* what p2m:dns:names holds for the lan name ("" none) */
    char dns_direct[P2M_DIRECT_ADDR_MAX + 1]; /* and for the direct name */
    char verified[P2M_DIRECT_ADDR_MAX + 1];   /* the public path marked verified now ("" none) */
} p2m_direct_state_t;

/* The labels in p2m:directs (at most cap; the rest wait for a later pass). free() *out. */
int p2m_store_direct_labels(p2m_store_t *st, char (**out)[P2M_LABEL_MAX + 1], size_t *n, size_t cap, char *err);

/* Takes label's lock for lock_ms as `who` (free, or held by who already: a registrar re-takes its
 * own at each tick, another waits until it lapses) and, when taken, reads its direct paths (a
 * path of a pod that is disabled or removed reads as "") and the addresses remembered for
 * lan_name and direct_name. out->locked 0: another registrar has it. Returns 0 or -1 with err. */
int p2m_store_direct_take(p2m_store_t *st, const char *label, const char *who, unsigned lock_ms, const char *lan_name,
                          const char *direct_name, p2m_direct_state_t *out, char *err);

/* Marks label's public path pub verified for ttl_ms, when it is still the path declared; pub ""
 * removes the mark. Returns 0 or -1 with err. */
int p2m_store_direct_verified(p2m_store_t *st, const char *label, const char *pub, unsigned ttl_ms, char *err);

/* Remembers addr as written for name (label's), or forgets name when addr is "". Returns 0 or -1. */
int p2m_store_direct_dns_set(p2m_store_t *st, const char *label, const char *name, const char *addr, char *err);

/* Drops label from p2m:directs when it has no direct hash and neither name is remembered. */
int p2m_store_direct_forget(p2m_store_t *st, const char *label, const char *lan_name, const char *direct_name, char *err);

/* Key names, for the modules that talk to Redis asynchronously. Each writes a NUL-terminated key
 * to out and returns its length, or -1 when cap is too small. */
int p2m_store_key_pod(const char *id, char *out, size_t cap);
int p2m_store_key_lease(uint16_t port, char *out, size_t cap);

#endif
