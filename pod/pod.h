#ifndef POD_H
#define POD_H

/* pipe2me-pod: keeps a pool of idle pre-connections to the relay (docs/PROTOCOL.md 1 and 3.4) and
 * joins each one a consumer comes through to the local service.
 *
 *   provision.c  settings: the command line, the secret file and the provisioning JSON (the only
 *                pod module that sees jansson; it also reads the status file back)
 *   register.c   PUT /register/LABEL with libcurl's multi interface on the p2m loop; TOTP, then the
 *                P2M-Session Bearer credential; Retry-After; the registrar's backoff
 *   pool.c       the idle pre-connections: refill, connect to the relay (or CONNECT through a
 *                proxy), liveness
 *   proxy.c      --proxy and https_proxy: the URL, no_proxy, the CONNECT request, the proxy's answer
 *   backoff.c    the exponential backoff with jitter that register.c, pool.c and cert.c retry with
 *   forward.c    a live pre-connection spliced to a connection to --forward
 *   direct.c     --direct-lan: the pod's own listener, each connection served as forward.c serves a
 *                live pre-connection; --source: the address the pod's connections leave from
 *   status.c     DIR/status.json and DIR/pod.pid for `pipe2me-pod status`, and that command
 *   env.c        `pipe2me-pod env`: shell assignments
 *   echo.c       `pipe2me-pod test`: HTTP and TCP echo services to check a tunnel with
 *   sets.c       tunnel sets: `setup` redeems a setup token into DIR/LABEL.DOMAIN/, `list`, `env` of a
 *                set (with provision.c, the only modules that see jansson)
 *   cert.c       --tls-terminate: the pod's key, its certificate from POST /certificate/LABEL, the
 *                registrar's CA, kept under DIR/tls/ and renewed before they expire
 *   tls.c        --tls-terminate: TLS served on a live pre-connection, plain bytes to --forward
 *
 * Everything runs on one p2m_loop_t and nothing blocks it once it runs (names are resolved before).
 * Objects handed to the loop carry a magic number checked when a pointer comes back; a closed
 * object is freed by p2m_loop_defer() at the end of the loop turn, never inside its own callback. */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "p2m/addr.h"
#include "p2m/bridge.h"
#include "p2m/config.h"
#include "p2m/err.h"
#include "p2m/label.h"
#include "p2m/log.h"
#include "p2m/loop.h"
#include "p2m/service.h"
#include "p2m/splice.h"

#include "backoff.h"
#include "proxy.h"

typedef struct ssl_ctx_st SSL_CTX;

#define POD_POOL_DEFAULT 4
#define POD_POOL_MAX 1024            /* --pool and --pool-max */
#define POD_POOL_CEILING_DEFAULT 256 /* --pool-max when not given (or --pool, when higher) */
#define POD_DRAIN_DEFAULT 10         /* seconds joined tunnels get to finish after SIGTERM */
#define POD_DRAIN_MAX 3600           /* a stop that waits longer than an hour is a hang */
#define POD_REFILL_BATCH 32          /* the largest refill waited for; = P2M_LEASE_CONNS_MAX (PROTOCOL 1.1) */
#define POD_TOPUP_MS 250             /* a deficit smaller than a batch waits at most this long */
#define POD_SECRET_MIN 16            /* bytes decoded: RFC 4226 R6 asks for at least 128 bits */
#define POD_SECRET_MAX 64            /* bytes decoded */
#define POD_SECRET_FILE_MAX 256      /* bytes in a secret file */
#define POD_PROVISION_MAX 65536      /* bytes in a provisioning file */
#define POD_LABELS_MAX 64            /* labels in a provisioning file */
#define POD_OTPAUTH_MAX 1024
#define POD_PATH_MAX 4095
#define POD_ALPN_MAX 127 /* bytes of --alpn */
#define POD_ALPN_DEFAULT "http/1.1"
#define POD_NO_PROXY_MAX 4096 /* bytes of no_proxy kept; a longer one is refused */

/* --- settings (provision.c) ----------------------------------------------------------------- */

/* run is register with its settings read from a JSON file (--config); both run a pod. */
typedef enum {
    POD_CMD_HELP = 1,
    POD_CMD_VERSION,
    POD_CMD_REGISTER,
    POD_CMD_RUN,
    POD_CMD_STATUS,
    POD_CMD_ENV,
    POD_CMD_TEST,
    POD_CMD_SETUP,
    POD_CMD_LIST
} pod_cmd_t;

#define POD_AUTH_MAX 256         /* bytes of setup's --auth token */
#define POD_SETUP_SERVICES_MAX 3 /* setup's --protocols: https, http and tcp, each at most once */
#define POD_SET_FILE "pod.json"  /* a tunnel set's run file: DIR/LABEL.DOMAIN/pod.json */
#define POD_SET_CACERT "cacert.pem"
#define POD_SET_REGISTRAR_CA "registrar-ca.pem"
#define POD_SET_STATE "state"
#define POD_SETS_ROOT_DIR "/var/lib/pipe2me/pods" /* the sets of root; others' are under ~/.pipe2me/pods */

/* What `pipe2me-admin pod add -o FILE` writes. */
typedef struct {
    char id[P2M_ID_MAX + 1];
    unsigned char secret[POD_SECRET_MAX]; /* raw, decoded */
    size_t secret_len;
    char labels[POD_LABELS_MAX][P2M_LABEL_MAX + 1];
    size_t nlabels;
    char registrar[P2M_URL_MAX + 1]; /* normalised: see pod_registrar_url_parse() */
    char domain[P2M_DOMAIN_MAX + 1];
    unsigned digits; /* "digits": 6 or 8, 6 when the file has none */
} provision_t;

/* Everything a command needs, validated. Paths are copied. */
typedef struct {
    pod_cmd_t cmd;
    char registrar[P2M_URL_MAX + 1]; /* https://HOST[:PORT][/PREFIX], no trailing slash */
    char reg_host[P2M_HOST_MAX + 1]; /* the registrar URL's host, without brackets */
    uint16_t reg_port;               /* its port, 0 when the URL names none */
    char id[P2M_ID_MAX + 1];
    char label[P2M_LABEL_MAX + 1];
    char domain[P2M_DOMAIN_MAX + 1];      /* "" when neither --domain nor the provisioning file says */
    unsigned char secret[POD_SECRET_MAX]; /* raw; secret_len 0 when none was read */
    size_t secret_len;
    unsigned digits; /* OTP length, 6 or 8: --digits or the provisioning file's, else 6 */
    int have_forward;
    p2m_hostport_t forward;
    unsigned pool;                    /* --pool: the floor, idle pre-connections kept at rest */
    unsigned pool_max;                /* --pool-max: the ceiling the pool grows to with demand */
    unsigned drain_timeout;           /* --drain-timeout: seconds; 0 cuts joined tunnels at once */
    char cacert[POD_PATH_MAX + 1];    /* "" for the system's CAs */
    char state_dir[POD_PATH_MAX + 1]; /* "" for none */
    p2m_log_level_t log_level;
    int json;                             /* status --json */
    char config[POD_PATH_MAX + 1];        /* run --config FILE */
    char run_state_dir[POD_PATH_MAX + 1]; /* run: --state-dir as given on the command line, "" when not */
    char run_log_level[8];                /* run: --log-level as given, "" when not */
    p2m_proto_t proto;                    /* --protocol: what the service is declared as (PROTOCOL 1.1) */
    int tls_terminate;                    /* --tls-terminate: the pod serves TLS in front of --forward */
    char alpn[POD_ALPN_MAX + 1];          /* --alpn: comma-separated ALPN names --forward speaks */
    char source[P2M_HOST_MAX + 1];        /* --source: the address registrations and pre-connections leave from, "" */
    p2m_hostport_t direct_lan;            /* --direct-lan: the pod's own listener; host "" when not given */
    p2m_hostport_t direct_public;         /* --direct-public: the router's port forwarded to it; host "" when not given */
    uint16_t http_port, tcp_port;         /* test: 0 when not asked for */
    /* --proxy, or else the environment's https_proxy (pod_args_proxy_env()); proxy.host "" for none */
    pod_proxy_t proxy;
    int proxy_env;                       /* the proxy came from the environment: no_proxy applies */
    char no_proxy[POD_NO_PROXY_MAX + 1]; /* the environment's no_proxy or NO_PROXY, "" for none */
    char proxy_arg[P2M_URL_MAX + 1];     /* --proxy as given (setup writes it into the set's run file) */
    char url[P2M_URL_MAX + 1];           /* run files: the URL consumers open for the service, "" if unknown */
    /* setup, list, and env, run and test of a tunnel set */
    char auth[POD_AUTH_MAX + 1];                  /* setup --auth: the setup token */
    p2m_proto_t protos[POD_SETUP_SERVICES_MAX];   /* setup --protocols, in the order given */
    size_t nprotos;                               /* 0: https alone */
    uint16_t local_ports[POD_SETUP_SERVICES_MAX]; /* setup --local-ports, one per protocol */
    size_t nports;
    char dir[POD_PATH_MAX + 1];   /* --dir, or the default (pod_sets_dir()) */
    char set[P2M_DOMAIN_MAX + 1]; /* env, run, test: the tunnel set LABEL.DOMAIN named, "" for none */
} pod_args_t;

/* Parses the command line (argv[0] is the program) into *a, reading the files it names: the
 * secret file and the provisioning file, both refused when group or others may read them. Every
 * value is checked and bounded. Returns 0, or -1 with a one-line reason in err (never containing
 * the secret). On failure *a holds no secret. */
int pod_args_parse(int argc, char **argv, pod_args_t *a, char *err);

#define POD_RUN_SERVICES_MAX 32
#define POD_SERVICE_NAME_MAX (P2M_LABEL_MAX + 8)

/* run: reads run->config (with run's command-line --state-dir and --log-level) into one complete
 * pod_args_t per service, *nout of them in *out (free with pod_run_free). A service's state_dir is
 * the file's (or the command line's) DIR/NAME, NAME from pod_service_name(). Returns 0 or -1 with
 * err naming the file and the key. */
int pod_run_load(const pod_args_t *run, pod_args_t **out, size_t *nout, char *err);
void pod_run_free(pod_args_t *svcs, size_t n);

/* A service's name: its label, with "-http" or "-tcp" unless it is https. */
void pod_service_name(const pod_args_t *a, char *out, size_t cap);

/* Writes --help: the commands, and register's options from the table pod_args_parse() reads. */
void pod_args_usage(FILE *out);

/* Wipes the secret (and the proxy's password) from *a. */
void pod_args_wipe(pod_args_t *a);

/* register and run without --proxy: the proxy of the environment, as curl reads it. https_proxy
 * (else HTTPS_PROXY; NULL or "" for none) is parsed as --proxy is, and no_proxy (else NO_PROXY)
 * kept for pod_args_use_proxy(). No-op when --proxy was given. Returns 0, or -1 with err naming the
 * variable. */
int pod_args_proxy_env(pod_args_t *a, const char *https_proxy, const char *https_proxy_uc, const char *no_proxy,
                       const char *no_proxy_uc, char *err);

/* The proxy to reach host (the registrar's or the relay's, without brackets) through: &a->proxy,
 * or NULL when there is none or the environment's no_proxy exempts host (--proxy exempts none). */
const pod_proxy_t *pod_args_use_proxy(const pod_args_t *a, const char *host);

/* Parses a provisioning document (len bytes of JSON) into *p. Every key must be known and valid;
 * an error names the key. Returns 0 or -1 with err. On failure *p holds no secret. */
int provision_parse(const char *json, size_t len, provision_t *p, char *err);

/* Reads and parses the provisioning file at path, refusing it when group or others may read it.
 * Returns 0 or -1 with err (naming the file). */
int provision_load(const char *path, provision_t *p, char *err);

/* A direct path's address (--direct-lan, --direct-public): "A.B.C.D:PORT" or "[IPV6]:PORT", an
 * address literal (never a name: the pod binds it and the registrar publishes it) of one host (not
 * unspecified, multicast or broadcast) and a decimal port 1-65535. Fills *out with the address in
 * its canonical form, without brackets. Returns 0 or -1 with err (never quoting s). */
int pod_direct_addr_parse(const char *s, p2m_hostport_t *out, char *err);

/* --source: an IPv4 or IPv6 literal (brackets allowed around IPv6) of one host. Writes its
 * canonical form to out (INET6_ADDRSTRLEN bytes). Returns 0 or -1 with err (never quoting s). */
int pod_source_parse(const char *s, char *out, char *err);

/* Decodes a base32 TOTP secret (RFC 4648 alphabet, either case, optional '=' padding) of
 * POD_SECRET_MIN..POD_SECRET_MAX bytes into raw (POD_SECRET_MAX bytes). Returns 0 or -1 with err. */
int pod_secret_decode(const char *b32, size_t len, unsigned char *raw, size_t *raw_len, char *err);

/* Reads a secret file: the base32 secret on one line (an optional final newline), mode not
 * readable by group or others. Returns 0 or -1 with err. */
int pod_secret_load(const char *path, unsigned char *raw, size_t *raw_len, char *err);

/* Checks a registrar URL: https://HOST[:PORT][/PREFIX] with HOST a name or address (IPv6 in
 * brackets), no user info, query or fragment, PREFIX of [A-Za-z0-9._~/-]. Writes it without
 * trailing slashes to base (P2M_URL_MAX + 1 bytes), the host to host (P2M_HOST_MAX + 1) and the
 * port or 0 to *port. Returns 0 or -1 with err. */
int pod_registrar_url_parse(const char *url, char *base, char *host, uint16_t *port, char *err);

/* Counters the running pod writes to DIR/status.json, as read back by `pipe2me-pod status`. */
typedef struct {
    long long pid;
    char state[16]; /* "running", "draining" (stopping: joined tunnels finish) or "stopped" */
    char id[P2M_ID_MAX + 1];
    char label[P2M_LABEL_MAX + 1];
    char forward[P2M_HOST_MAX + 16];
    char registrar_state[16], relay_state[16], local_state[16];  /* "up", "down", "unknown" */
    char registrar_error[P2M_ERR_LEN], relay_error[P2M_ERR_LEN]; /* why it is down; "" when up or not said */
    char proxy[POD_PROXY_SHOWN_MAX + 1];                         /* the proxy (no password), "" for none */
    unsigned long long updated, started;                         /* unix seconds */
    unsigned long long pool_target, pool_floor, pool_ceiling, pool_idle, pool_connecting, pool_registering, pool_joined;
    unsigned long long consumers_waiting, consumers_waited; /* as the registrar last said (P2M-Waiting, P2M-Waited) */
    unsigned long long tunnels_active, tunnels_total, tunnels_failed;
    unsigned long long registrations, registration_failures;
    unsigned long long bytes_in, bytes_out;
    char local_problem[400]; /* "problems.local": "" when none (or an older pod's status) */
} pod_status_t;

/* Parses the status document status.c writes. Returns 0 or -1 with err. */
int pod_status_parse(const char *json, size_t len, pod_status_t *st, char *err);

/* --- the running pod ------------------------------------------------------------------------ */

typedef struct pod pod_t;
typedef struct reg reg_t;
typedef struct preconn preconn_t;
typedef struct tunnel tunnel_t;
typedef struct pod_direct pod_direct_t;

#define POD_MAGIC 0x504f4421u     /* "POD!" */
#define PRECONN_MAGIC 0x50524543u /* "PREC" */
#define TUNNEL_MAGIC 0x54554e4eu  /* "TUNN" */
#define POD_DEAD 0x44454144u      /* "DEAD": closed, waiting to be reaped */

#define POD_PRECONNECT_MS 10000    /* PROTOCOL 1.3: connect to P within preconnect_timeout */
#define POD_LOCAL_CONNECT_MS 10000 /* a local service that neither accepts nor refuses */
#define POD_QUICK_CLOSE_MS 1000    /* an idle pre-connection ended sooner: the relay refused it */
#define POD_PUMP_BUDGET (1024 * 1024)
#define POD_PIPE_SIZE (64 * 1024)
#define POD_STATUS_MS 1000
#define POD_SHRINK_QUIET_MS 5000 /* no demand for this long: the pool starts shrinking */
#define POD_GROW_MS 250          /* a pool that runs dry doubles at most this often */
#define POD_SHRINK_TICK_MS 1000  /* each tick halves the distance to the floor: 1024 to 4 in 10 ticks */

/* Up, down or not known yet: each component's state, logged when it changes. */
typedef enum { POD_UNKNOWN = 0, POD_UP, POD_DOWN } pod_health_t;

struct pod {
    uint32_t magic;
    const pod_args_t *args;
    p2m_loop_t *loop;
    p2m_pipe_pool_t *pipes;
    int stopping; /* a first SIGTERM/SIGINT (or the end): no registration, no refill */
    int stop_now; /* a second one: joined tunnels are cut without waiting */

    /* main.c: the drain after the first signal (docs/OPERATIONS.md "Stopping a pod") */
    int draining;                 /* joined tunnels are given until drain_timer to finish */
    p2m_loop_timer_t drain_timer; /* --drain-timeout */
    int drain_over;               /* drain_timer fired */
    uint64_t drain_t0;            /* loop ms the drain began */

    /* --forward, resolved once at start */
    struct sockaddr_storage fwd_addr;
    socklen_t fwd_len;
    char fwd_str[P2M_HOST_MAX + 16];

    /* --source, as a socket address (port 0), resolved once at start; src_len 0 without it */
    struct sockaddr_storage src_addr;
    socklen_t src_len;

    pod_direct_t *direct; /* direct.c: the --direct-lan listener, NULL without it */

    reg_t *reg;                    /* register.c */
    struct pod_session_s *session; /* run: the session of the service's label, shared; NULL: reg's own */

    /* cert.c: the server context tls.c uses for new tunnels; replaced (and the old one released
     * with SSL_CTX_free, live connections keep their own reference) when the certificate is
     * renewed. NULL until the first certificate is loaded; no pre-connection is opened before. */
    SSL_CTX *tls_ctx;
    struct pod_cert *cert;

    /* pool.c */
    preconn_t *preconns; /* connecting and idle */
    unsigned nconnecting, nidle;
    /* The elastic pool: the refill fills idle + connecting + registering up to target, which starts
     * at --pool (the floor), grows with demand up to --pool-max (the ceiling) and, once there has
     * been no demand for POD_SHRINK_QUIET_MS, halves its distance to the floor every
     * POD_SHRINK_TICK_MS, closing the newest idle pre-connections beyond it. */
    unsigned target;
    uint64_t demand_at;                 /* loop ms of the last demand: consumers waiting, the pool run dry */
    uint64_t grown_at;                  /* loop ms the pool last doubled for running dry */
    p2m_loop_timer_t shrink;            /* armed while the pool is above the floor */
    unsigned long long waiting, waited; /* P2M-Waiting and P2M-Waited of the last registration */
    unsigned max_tunnels;               /* from the descriptor limit */
    p2m_loop_timer_t hold;              /* no refill while armed: the relay or the local service backs off */
    p2m_loop_timer_t topup;             /* a deficit smaller than a batch is refilled when it fires */
    int topup_due;                      /* pool_refill() called from it: refill whatever the deficit */
    pod_backoff_t bo_relay, bo_local;
    pod_health_t relay_health, local_health;
    char relay_error[P2M_ERR_LEN]; /* why the relay is down, for status; "" when up */
    int proxy_refused;             /* the proxy's last refusal of a CONNECT logged at error (its status), 0: none since up */
    int proxy_split_logged;        /* the registrar and the relay are reached differently: warned once */
    int limit_logged;

    /* forward.c */
    tunnel_t *tunnels;
    unsigned ntunnels;

    /* probe.c: what the local service speaks, checked against --protocol */
    struct pod_probe *probe;
    char local_problem[400]; /* "" when none is known */

    /* status.c */
    p2m_loop_timer_t status_timer;
    unsigned long long started;

    struct {
        uint64_t registrations, registration_failures;
        uint64_t tunnels, tunnel_failures;
        uint64_t bytes_in, bytes_out; /* of closed tunnels; live ones are added when reported */
    } stats;
};

/* --- register.c ----------------------------------------------------------------------------- */

/* Sets up libcurl's multi handle on pod->loop. Returns 0 or -1 with err. */
int pod_register_new(pod_t *pod, char *err);

/* Aborts requests in flight and frees everything. */
void pod_register_free(pod_t *pod);

/* Starts up to `want` registrations, as many as the credential and the registrar allow now (one at
 * a time with TOTP, a few at once with a session; none while waiting for Retry-After, a backoff or
 * the next TOTP step, after which it calls pool_refill()). Returns the number started. */
unsigned pod_register_start(pod_t *pod, unsigned want);

/* Registrations in flight. */
unsigned pod_register_inflight(const pod_t *pod);

/* The registrar's state, for status. */
pod_health_t pod_register_health(const pod_t *pod);

/* Why the registrar is down (the last failure), "" when it is not. */
const char *pod_register_error(const pod_t *pod);

/* The keys a registration's body carries besides "protocol" and "connections": "direct_lan",
 * "direct_lan,direct_public" or "none" (for the started line). */
const char *pod_register_declares(const pod_t *pod);

/* The proxy registrations go through, NULL when they go direct. */
const pod_proxy_t *pod_register_proxy(const pod_t *pod);

/* What register.c requests: PUT /register/LABEL for the pool; for cert.c, POST /certificate/LABEL
 * and GET /cacert. */
typedef enum { REG_REGISTER = 0, REG_CERT, REG_CACERT } reg_kind_t;

/* Asks for a certificate (kind REG_CERT, with csr: len bytes of PEM, copied; it replaces the CSR of
 * a request not started yet) or for the CA (REG_CACERT, csr NULL). The request starts as soon as
 * the registrar's holds and the credential allow (Bearer when a session is held, else TOTP under
 * the step rule, before any waiting registration); a request of that kind already in flight is not
 * repeated. The answer comes to cert_fetched(). */
void pod_register_fetch(pod_t *pod, reg_kind_t kind, const char *csr, size_t len);

/* Forgets what pod_register_fetch() asked for and aborts those requests in flight (no cert_fetched()). */
void pod_register_fetch_cancel(pod_t *pod);

/* --- pool.c --------------------------------------------------------------------------------- */

/* Sizes the pipe pool (pod->pipes) and the tunnel limit from the descriptor limit, and prepares
 * the pool. Returns 0 or -1 with err. */
int pool_init(pod_t *pod, char *err);

/* Socket options of every pod socket: TCP_NODELAY. Failures only cost the optimisation. */
void pool_sockopts(int fd);

/* Keepalives (60 s idle, then every 10 s, 3 probes) for a pre-connection that has stayed idle: it
 * crosses NATs, whose mappings they keep. Failures only cost the optimisation. */
void pool_keepalive(int fd);

/* Registers more pre-connections until idle + connecting + registering reaches the pool's target,
 * unless a backoff holds the refill or the tunnel limit is reached. Safe to call any time. */
void pool_refill(pod_t *pod);

/* A registration's answer said how many consumers wait for the service now (waiting) and have had
 * to wait so far (waited); -1 when it did not say. Waiting consumers raise the target to the floor
 * plus their number (at most the ceiling). Does not refill: the caller does. */
void pool_demand(pod_t *pod, long waiting, long waited);

/* A registration gave relay port `relay`: connect to it (non-blocking). A name in relay->host is
 * resolved in `family` (AF_INET or AF_INET6: the registration's; AF_UNSPEC when not known). */
void pool_on_port(pod_t *pod, const p2m_hostport_t *relay, int family);

/* The local service refused or timed out: hold the refill for its backoff. */
void pool_local_failed(pod_t *pod, const char *reason);

/* The local service accepted a connection. */
void pool_local_ok(pod_t *pod);

/* The drain: stops the refill's hold and gives the pool back to the relay. A pre-connection still
 * connecting is closed; an idle one with nothing to read is shut down and closed, so that the relay
 * reads its FIN and takes it out of its idle set; an idle one whose consumer's bytes already wait
 * (the relay joined it before our FIN) goes to forward_start() like any live one, so that those
 * bytes are answered rather than reset. Call with pod->stopping set, outside loop callbacks. */
void pool_drain(pod_t *pod);

/* Closes every pre-connection (at shutdown). */
void pool_close_all(pod_t *pod);

/* --- run.c --------------------------------------------------------------------------------- */

/* Runs `register` (one service, from the command line) or `run` (the services of --config, with
 * SIGHUP) until SIGTERM or SIGINT. Returns the exit status: 0, 1 when the loop failed, 2 when a
 * service could not start. */
int pod_run(const pod_args_t *cli);

/* --- probe.c -------------------------------------------------------------------------------- */

typedef struct pod_probe pod_probe_t;

/* Prepares the local service's probe (none for --protocol tcp). Returns 0 or -1 with err. */
int probe_new(pod_t *pod, char *err);

/* Probes the local service now, unless a probe runs, the pod stops, or (force 0) one ran less than
 * PROBE_MIN_GAP_MS ago. The verdict lands in pod->local_problem. */
void probe_kick(pod_t *pod, int force);

void probe_free(pod_t *pod);

/* --- forward.c ------------------------------------------------------------------------------ */

/* A tunnel: a live pre-connection (the relay side) joined to a connection to --forward (the local
 * side). forward.c owns the list, the local connect, the close and the reap; the bytes move by
 * splice (forward.c) or, with --tls-terminate, through tls.c's TLS server. */
enum { TUNNEL_RELAY = 0, TUNNEL_LOCAL = 1 };

typedef enum {
    TUNNEL_HANDSHAKE = 1, /* tls.c: the consumer's TLS handshake; no local connection yet */
    TUNNEL_CONNECTING,    /* connecting to --forward */
    TUNNEL_JOINED,        /* bytes flow */
    TUNNEL_CLOSED         /* waiting to be reaped */
} tunnel_state_t;

struct tunnel {
    uint32_t magic;
    pod_t *pod;
    tunnel_state_t state;
    uint16_t lease;
    /* The sides, indexed by TUNNEL_RELAY, TUNNEL_LOCAL: br.fd (-1 when none), br.side (both call back
     * into forward.c), br.hup (EPOLLHUP seen: the side is done both ways). br.dir[0] is relay -> local
     * (bytes in), br.dir[1] local -> relay (bytes out). A spliced tunnel's bytes move through br; tls.c
     * only counts its plain bytes in br.dir[].bytes, so that stats and status read both alike. */
    p2m_bridge_t br;
    p2m_loop_timer_t timer;              /* the local connect */
    uint64_t t_start, t_connect, t_join; /* came alive, local connect started, joined */
    struct tls_tunnel *tls;              /* --tls-terminate: tls.c's state, NULL for a spliced tunnel */
    int direct;                          /* accepted on --direct-lan (lease 0): logs direct_open and direct_close */
    tunnel_t *next, *prev;
    p2m_loop_reap_t reap;
};

/* A pre-connection came alive: its socket and epoll registration pass from handler `from` (which
 * watches nothing afterwards) to a new tunnel. With --tls-terminate, serve TLS on it (tls.c) and
 * connect to --forward once the handshake is done; else connect to --forward and splice. */
void forward_start(pod_t *pod, p2m_loop_handler_t *from, uint16_t lease);

/* A connection accepted on --direct-lan (direct.c): served as forward_start() serves a live
 * pre-connection (the same code; the "relay" side is the consumer's socket, lease 0), but logged
 * as direct_open and direct_close. */
void forward_direct(pod_t *pod, p2m_loop_handler_t *from);

/* Aborts unless t's magic is TUNNEL_MAGIC. Returns t. */
tunnel_t *tunnel_check(tunnel_t *t);

/* Logs event with label=, lease=, fd= and local_fd=, then fmt's key=value pairs (fmt may be NULL). */
void tunnel_log(p2m_log_level_t level, const tunnel_t *t, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Starts the connect to --forward (t in TUNNEL_CONNECTING). Once connected, a TLS tunnel goes on
 * in tls_tunnel_joined(), possibly before this returns; when the local service is down the tunnel
 * is closed as forward_start() closes it (the consumer sees a clean close, the pool backs off),
 * also possibly before this returns: the caller checks t->state. */
void tunnel_connect(tunnel_t *t);

/* Sets side s's interest to events, registering it (with forward.c's callback, which dispatches to
 * tls.c for a TLS tunnel) when it is not. Returns 0, or -1 when epoll refused. */
int tunnel_watch(tunnel_t *t, int s, uint32_t events);

/* Closes t once: logs reason, adds its bytes to pod->stats, closes both sides (tls.c first sends
 * close_notify when drain_relay and the handshake is done), unlinks it and frees it at the end of
 * the loop turn. With drain_relay the consumer's unread bytes are dropped and a FIN sent first, so
 * it sees a clean close rather than a reset. No-op on a closed tunnel. */
void tunnel_close(tunnel_t *t, const char *reason, int drain_relay);

/* Closes every tunnel (at shutdown). */
void forward_close_all(pod_t *pod);

/* Bytes moved so far by every tunnel, closed and live, each way. */
void forward_bytes(const pod_t *pod, uint64_t *in, uint64_t *out);

/* --- direct.c (--direct-lan, --source) -------------------------------------------------------- */

/* An address literal and port to a socket address. Returns 0, or -1 when host is not a literal. */
int pod_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);

/* Binds fd (a new socket of family, not connected yet) to --source with port 0 (chosen at
 * connect(), IP_BIND_ADDRESS_NO_PORT). No-op without --source. Returns 0, or -1 with err (the
 * families differ, or bind failed). */
int pod_source_bind(const pod_t *pod, int fd, int family, char *err);

/* Listens on --direct-lan and serves each connection with forward_direct(), within the tunnel
 * limit. No-op without --direct-lan. Returns 0 or -1 with err (the address cannot be bound: in use,
 * not this machine's); pod->direct is set either way, for direct_free(). */
int direct_start(pod_t *pod, char *err);

/* Stops accepting (the drain): the listener closes, connections already accepted go on. */
void direct_close(pod_t *pod);

/* Closes the listener if open and frees it. NULL pod->direct is a no-op. */
void direct_free(pod_t *pod);

/* --- cert.c (--tls-terminate) -------------------------------------------------------------- */

/* Loads DIR/tls/{key,cert,ca}.pem or obtains them from the registrar, sets pod->tls_ctx, and arms
 * the renewal timer; calls pool_refill() once the first certificate is in place. Returns 0 or -1
 * with err (only for what retrying cannot fix, e.g. an unwritable state directory). */
int cert_start(pod_t *pod, char *err);

/* Stops the timer and any request in flight, frees pod->tls_ctx. */
void cert_stop(pod_t *pod);

/* register.c's answer to pod_register_fetch(kind): on 200, body holds len bytes (NUL-terminated, borrowed
 * for the call) and reason is NULL; on failure body is NULL, status is the HTTP status (0: no
 * response), reason one printable line and retry_ms how long register.c holds its requests (0:
 * not held, e.g. a 400 for the CSR). May call pod_register_fetch() again. */
void cert_fetched(pod_t *pod, reg_kind_t kind, long status, const char *body, size_t len, const char *reason, unsigned retry_ms);

/* The current certificate's notAfter (unix seconds), 0 when none is installed. For status. */
long long cert_not_after(const pod_t *pod);

/* --- tls.c (--tls-terminate) ---------------------------------------------------------------- */

/* A server context: TLS 1.2 and up, the certificate chain and key from these PEM files (checked to
 * match), ALPN chosen from alpn ("h2,http/1.1"; the client's first offer that is in the list; none
 * when nothing matches). Returns NULL with err. */
SSL_CTX *tls_server_ctx(const char *chain_path, const char *key_path, const char *alpn, char *err);

#define TLS_TUNNEL_MAGIC 0x544c5354u /* "TLST" */
#define POD_TLS_HANDSHAKE_MS 10000   /* a consumer that neither finishes nor fails its handshake */
#define POD_TLS_BUF (32 * 1024)      /* plain bytes buffered each way per TLS tunnel */

/* t (TUNNEL_HANDSHAKE, relay side registered with forward.c's callback, nothing else) serves TLS
 * with pod->tls_ctx as it is now; once the handshake is done it calls tunnel_connect(). Closes the
 * tunnel on failure (no certificate yet, out of memory). */
void tls_tunnel_start(tunnel_t *t);

/* forward.c passes every event of a TLS tunnel's sides here, except the local connect's. */
void tls_tunnel_event(tunnel_t *t, int side, uint32_t events);

/* The local connect completed (t is TUNNEL_JOINED): plain bytes start to flow. */
void tls_tunnel_joined(tunnel_t *t);

/* From tunnel_close(), before the sockets close: sends close_notify when clean and the session
 * allows it, stops the timers and frees the SSL. Leaves the memory to tls_tunnel_free(). */
void tls_tunnel_close(tunnel_t *t, int clean);

/* Frees what tls_tunnel_start() allocated, at the reap. NULL is a no-op. */
void tls_tunnel_free(struct tls_tunnel *x);

/* --- status.c ------------------------------------------------------------------------------- */

/* Writes DIR/pod.pid (refusing when another pod runs there) and starts writing DIR/status.json
 * every POD_STATUS_MS. No-op without --state-dir. Returns 0 or -1 with err. */
int status_start(pod_t *pod, char *err);

/* Writes the status now (state "draining" while pod->draining), as the timer would. No-op without
 * --state-dir. */
void status_update(pod_t *pod);

/* Writes the final status ("stopped") and removes DIR/pod.pid. */
void status_stop(pod_t *pod);

/* `pipe2me-pod status`: prints the table (or the JSON). Returns the exit status. */
int status_command(const pod_args_t *a);

/* Writes len bytes to path through path.tmp and rename(2), with mode (and fsync(2) first when
 * sync), so that a reader sees the old file or the new one. Returns 0 or -1 with errno. */
int pod_file_write(const char *path, const char *data, size_t len, mode_t mode, int sync);

/* The pid in DIR/pod.pid if that process runs and is a pipe2me-pod, else 0. */
long status_running_pid(const char *dir);

/* --- tunnel sets: setup, list, env LABEL.DOMAIN (sets.c) -------------------------------------- */

/* The default DIR of the tunnel sets: POD_SETS_ROOT_DIR for root, else $HOME/.pipe2me/pods.
 * Returns 0, or -1 with err when HOME is unset or too long. */
int pod_sets_dir(char *out, size_t cap, char *err);

/* Outside text for an error message: printable ASCII kept (no quote or backslash), the rest as
 * \xNN, cut at 48 bytes with "..." (provision.c). Returns buf. */
const char *pod_shown(const char *s, char *buf, size_t cap);

/* Reads a regular file of at most max bytes into a NUL-terminated buffer (wipe and free() it).
 * With private, refuses a file group or others may read (it holds a secret); mode (NULL for none)
 * receives its st_mode. Returns the buffer with *len, or NULL with err naming the file. */
char *pod_file_read(const char *path, size_t max, int private, mode_t *mode, size_t *len, char *err);

/* jansson's allocations, wiped when freed: for documents that hold a secret (provision.c). */
void pod_json_wiping_init(void);

/* Turns the registrar's answer to POST /setup (answer[0..len), PROTOCOL 1.6) into the set's run
 * file for the services a asked for (a->protos, a->local_ports): the provisioning keys kept, the
 * services checked against the request (same label, protocols in order), each given "forward"
 * 127.0.0.1:PORT, https ones "tls_terminate", and "state_dir" set_dir/state, "cacert" (when
 * cacert is not NULL) and "proxy" (a->proxy_arg) added. Returns the file's text (wipe and free()
 * it: it holds the secret) with the set's LABEL.DOMAIN in fqdn (P2M_DOMAIN_MAX + 1 bytes), or NULL
 * with a one-line reason in err that never shows the secret. */
char *pod_setup_config(const char *answer, size_t len, const pod_args_t *a, const char *set_dir, const char *cacert, char *fqdn,
                       char *err);

int setup_command(const pod_args_t *a);
int list_command(const pod_args_t *a);
int set_env_command(const pod_args_t *a);

/* --- env.c ---------------------------------------------------------------------------------- */

/* Writes s single-quoted for sh (' becomes '\''), NUL-terminated, to out. Returns the length, or
 * -1 when cap is too small. */
int env_quote(const char *s, char *out, size_t cap);

/* Prints NAME='VALUE' (env_quote) on stdout. Returns 0, or -1 with a line on stderr when too long. */
int env_assign(const char *name, const char *value);

/* `pipe2me-pod env`: prints P2M_ID=... lines. Returns the exit status. */
int env_command(const pod_args_t *a);

/* --- echo.c --------------------------------------------------------------------------------- */

/* `pipe2me-pod test`: runs the echo services until SIGTERM or SIGINT. Returns the exit status. */
int echo_command(const pod_args_t *a);

/* The echo services on a loop, for `test` of a run file: one listener on 127.0.0.1 per distinct
 * port (two services on one port share it, when both are http(s)). */
#define ECHO_PORTS_MAX POD_RUN_SERVICES_MAX
typedef struct echo echo_t;
typedef struct {
    int tcp; /* TCP echo; else HTTP echo */
    uint16_t port;
} echo_port_t;

/* Listens on every port. Returns the services, or NULL with err (nothing left open). */
echo_t *echo_start(p2m_loop_t *loop, const echo_port_t *ports, size_t n, char *err);

/* Closes the listeners and connections and frees e (NULL: nothing). */
void echo_stop(echo_t *e);

#endif
