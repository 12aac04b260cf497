#ifndef P2M_CONFIG_H
#define P2M_CONFIG_H

#include "p2m/addr.h"
#include "p2m/label.h"
#include "p2m/log.h"

/* The one JSON configuration file every program reads (-c/--config FILE). jansson is used only
 * by config.c; everything else sees this plain struct. p2m_config_defaults() fills every field,
 * the file overrides what it names. Unknown keys and bad values are errors naming the key path,
 * e.g. "relay.ports: expected LO-HI with 1 <= LO <= HI <= 65535". See docs/OPERATIONS.md. */

#define P2M_DOMAIN_MAX 253
#define P2M_URL_MAX 512
#define P2M_PROXY_FROM_MAX 16 /* registrar.proxy_from: addresses at most */
#define P2M_NAMES_MAX 16      /* registrar.names: host names at most */
#define P2M_METRICS_TOKEN_MIN 16
#define P2M_METRICS_TOKEN_MAX 128
#define P2M_REDIS_WAIT_TIMEOUT_MS_DEFAULT 1000 /* redis.wait_timeout_ms */

typedef struct {
    p2m_hostport_t listen;             /* registrar.https */
    int http_enabled;                  /* registrar.http is not null */
    p2m_hostport_t http;               /* registrar.http: plain HTTP, redirects to HTTPS */
    char url[P2M_URL_MAX + 1];         /* registrar.url: what pods are told to use; default https://DOMAIN[:PORT] */
    char name[P2M_LABEL_MAX + 1];      /* registrar.name: this registrar's name in Redis; default the host name */
    char pods_to[P2M_URL_MAX + 1];     /* registrar.pods_to: pods are sent there for good (308); "" = none */
    unsigned preconnect_timeout;       /* registrar.preconnect_timeout: s a P port waits for its pod */
    unsigned consumer_ttl;             /* registrar.consumer_ttl: s a Q port lives while idle */
    unsigned alive_window;             /* registrar.alive_window: s a service counts as served after its pod was last seen */
    int consumer_ports_per_address;    /* registrar.consumer_ports: "per-address" (1) or "per-service" (0, the default) */
    unsigned consumer_ports_per_addr;  /* registrar.consumer_ports_per_addr: Q ports one address holds */
    unsigned consumer_ports_per_label; /* registrar.consumer_ports_per_label: Q ports one label has */
    unsigned consumer_ports_share;     /* registrar.consumer_ports_share: percent of the relays' ports for Q */
    unsigned session_ttl;              /* registrar.session_ttl: s a Bearer session credential lives */
    unsigned auth_fail_limit;          /* registrar.auth_fail_limit: failures a limiter allows before it backs off */
    unsigned auth_fail_window;         /* registrar.auth_fail_window: s after its last failure a limiter forgets */
    unsigned auth_backoff_max;         /* registrar.auth_backoff_max: s the backoff doubles up to (from 1 s) */
    unsigned cert_lifetime;            /* registrar.cert_lifetime: s a pod certificate is valid (PROTOCOL 4.3) */
    /* Operator-supplied PEM files; "" = created in state_dir on first start. ca_cert/ca_key are
     * both set or both empty, cert/key likewise. */
    char ca_cert[P2M_PATH_MAX + 1]; /* registrar.ca_cert: the signing CA, then its issuers up to the root */
    char ca_key[P2M_PATH_MAX + 1];  /* registrar.ca_key: its private key */
    char cert[P2M_PATH_MAX + 1];    /* registrar.cert: the chain for DOMAIN and *.DOMAIN (e.g. from ACME) */
    char key[P2M_PATH_MAX + 1];     /* registrar.key: its private key */
    /* registrar.proxy_listen: an HTTPS listener whose connections start with a PROXY protocol v1
     * line (the relay's SNI port passes the registrar's own names to it); null: none */
    int proxy_enabled;
    p2m_hostport_t proxy_listen;
    /* registrar.proxy_from: the only peer addresses proxy_listen accepts (IP literals, normalised) */
    char proxy_from[P2M_PROXY_FROM_MAX][P2M_HOST_MAX + 1];
    unsigned nproxy_from;
    /* registrar.names: further DNS names the registrar answers as itself (beside DOMAIN), lower
     * case, none equal to DOMAIN or under it; they go into its generated certificate and Host check */
    char names[P2M_NAMES_MAX][P2M_DOMAIN_MAX + 1];
    unsigned nnames;
    /* registrar.metrics_listen: plain HTTP serving only /metrics and /_health; null: none */
    int metrics_enabled;
    p2m_hostport_t metrics_listen;
    /* registrar.metrics_token: the Bearer credential /metrics on the HTTPS listeners wants; "" =
     * /metrics is not served there at all */
    char metrics_token[P2M_METRICS_TOKEN_MAX + 1];
    /* registrar.direct (PROTOCOL 5): which direct paths consumers are sent to, how often a public
     * path is checked, and how long a consumer sent to one and back goes to the relay */
    int direct_lan;                 /* registrar.direct.lan: same-network consumers to LABEL.lan.DOMAIN (default on) */
    int direct_public;              /* registrar.direct.public: others to a verified LABEL.direct.DOMAIN (default on) */
    int direct_public_private;      /* registrar.direct.public_private: a loopback, private or link-local public path is checked too
                                       (default off: the check would connect into the registrar's own networks) */
    unsigned direct_check_interval; /* registrar.direct.check_interval: s between checks (default 10) */
    unsigned direct_retry_window;   /* registrar.direct.retry_window: s a consumer sent to a direct path and back goes to the relay
                                       (default 30) */
} p2m_registrar_config_t;

/* dns (PROTOCOL 5): the authoritative server the registrar keeps LABEL.direct.DOMAIN and
 * LABEL.lan.DOMAIN in by RFC 2136 updates signed with TSIG. Without the section (enabled 0) no
 * DNS is kept and no consumer is sent to a direct path. */
typedef struct {
    int enabled;                          /* the section is present */
    p2m_hostport_t server;                /* dns.server: an address literal and a port */
    char zone[P2M_DOMAIN_MAX + 1];        /* dns.zone: the zone updated; domain is the zone or under it */
    char tsig_key_file[P2M_PATH_MAX + 1]; /* dns.tsig_key_file: BIND key file, mode 0600 (read at start) */
    unsigned ttl;                         /* dns.ttl: s, the records' TTL (default 30) */
} p2m_dns_config_t;

typedef struct {
    char name[P2M_LABEL_MAX + 1];  /* relay.name: this relay's name in Redis; default the host name */
    p2m_port_range_t ports;        /* relay.ports: the rendezvous ports the registrar leases */
    int ports_given;               /* relay.ports is in the file, not the default */
    char listen[P2M_HOST_MAX + 1]; /* relay.listen: address the leased ports bind to ("" = all) */
    unsigned wait_timeout;         /* relay.wait_timeout: s a consumer waits for an idle pre-connection */
    unsigned first_byte_timeout;   /* relay.first_byte_timeout: s a consumer may stay silent before the join */
    unsigned idle_timeout;         /* relay.idle_timeout: s a joined tunnel may stay silent both ways */
    unsigned max_conns_per_addr;   /* relay.max_conns_per_addr: concurrent consumer connections per address */
    int sni_enabled;               /* relay.sni_listen is set */
    p2m_hostport_t sni_listen;     /* relay.sni_listen: TLS consumers routed by server name, no redirect */
    p2m_hostport_t sni_registrar;  /* relay.sni_registrar: where the registrar's names go (default: proxy_listen) */
} p2m_relay_config_t;

typedef struct {
    char domain[P2M_DOMAIN_MAX + 1];       /* domain: labels live at LABEL.DOMAIN */
    char public_address[P2M_HOST_MAX + 1]; /* public_address: the relay's address pods and consumers reach */
    p2m_redis_addr_t redis;                /* redis: "unix:PATH", "HOST:PORT", or the object form (sentinels, AUTH, WAIT) */
    char redis_str[P2M_PATH_MAX + 16];     /* redis as written ("sentinel:MASTER" with sentinels), for messages */
    char state_dir[P2M_PATH_MAX + 1];      /* state_dir: keys and certificates */
    p2m_log_level_t log_level;             /* log_level */
    p2m_registrar_config_t registrar;
    p2m_relay_config_t relay;
    p2m_dns_config_t dns;
} p2m_config_t;

/* Fills *cfg with the defaults documented in docs/OPERATIONS.md. */
void p2m_config_defaults(p2m_config_t *cfg);

/* Parses JSON text (len bytes, at most 1 MiB) over the defaults already in *cfg. Returns 0, or -1
 * with the key path and reason in err. On error *cfg may be partly updated: discard it. */
int p2m_config_parse(const char *json, size_t len, p2m_config_t *cfg, char *err);

/* Reads path and parses it over the defaults. Returns 0 or -1 with err (which names the file). */
int p2m_config_load(const char *path, p2m_config_t *cfg, char *err);

/* Checks a registrar's base URL as registrar.pods_to and `registrar drain --to` take it: https://,
 * then printable ASCII without blanks, '@', '?', '#', '"' or '\\', a host, at most P2M_URL_MAX
 * bytes; trailing slashes are dropped, so that a path appends to it. Writes it to out
 * (P2M_URL_MAX + 1 bytes). Returns 0 or -1 with err (which does not name the key). */
int p2m_https_base_normalize(const char *s, char *out, char *err);

/* Checks a domain name: dot-separated DNS labels, at most 253 bytes, lower-cased into out. */
int p2m_domain_normalize(const char *s, char *out, char *err);

#endif
