/* The direct-path checker (direct.h, PROTOCOL 5). The loop only ticks: the h2o timer wakes the
 * worker, which does everything that blocks, so that a slow pod's router or DNS server never
 * holds up a registration. A tick that comes while a pass is running is merged into the next. */
#include "direct.h"
#include "registrar.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/service.h"
#include "p2m/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DIRECT_IO_MS 3000       /* connect, handshake and each DNS exchange */
#define DIRECT_LABELS_MAX 65536 /* labels one pass visits; the rest wait for a later pass */

#define DIRECT_LOGGED_SLOTS 4096 /* failures remembered, so that each is logged at warn once */

typedef struct {
    uint64_t key, reason; /* hashes of (label, public path) and of the reason; 0: empty */
} direct_logged_t;

struct direct {
    registrar_t *r; /* only r->cfg is read from the worker: it does not change after start */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ticks, stopping; /* under mu */
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick_entry;
    SSL_CTX *ssl;       /* verifies pods against the registrar's CA */
    p2m_tsig_key_t key; /* signs updates (dns section only) */
    p2m_dnsupd_conf_t dns;
    p2m_store_t *st;                             /* the worker's own connection, made again after an error */
    int reconcile;                               /* look names up in the zone on this pass (the first, and after a failure) */
    int busy;                                    /* this pass found a label locked by another registrar */
    direct_logged_t logged[DIRECT_LOGGED_SLOTS]; /* the worker's alone */
};

int direct_key_load(const p2m_config_t *cfg, p2m_tsig_key_t *key, char *err)
{
    char kerr[P2M_ERR_LEN];
    memset(key, 0, sizeof(*key));
    if (!cfg->dns.enabled)
        return 0;
    if (p2m_tsig_key_load(cfg->dns.tsig_key_file, key, kerr) != 0)
        return p2m_err(err, "dns.tsig_key_file: %s", kerr);
    if (p2m_dnsupd_key_check(key, kerr) != 0) {
        p2m_tsig_key_clear(key);
        return p2m_err(err, "dns.tsig_key_file: %s: %s", cfg->dns.tsig_key_file, kerr);
    }
    return 0;
}

/* The address part of a canonical direct path ("10.0.0.5:80" -> "10.0.0.5", "[::1]:80" -> "::1"). */
static void path_host(const char *path, char *host)
{
    host[0] = '\0';
    if (path[0] != '\0' && p2m_direct_addr_parse(path, NULL, host, NULL, NULL) != 0)
        host[0] = '\0';
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Connects to host:port within DIRECT_IO_MS and completes a TLS handshake with SNI name whose chain
 * verifies against the CA and names name. Returns 0, or -1 with err. */
static int tls_check(direct_t *d, const char *host, unsigned port, const char *name, char *err)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sslen = sizeof(*sin);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sslen = sizeof(*sin6);
    } else {
        return p2m_err(err, "not an address");
    }
    int ret = -1, fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    SSL *ssl = NULL;
    if (fd < 0) {
        p2m_err(err, "socket: %s", strerror(errno));
        goto Exit;
    }
    if (connect(fd, (struct sockaddr *)&ss, sslen) != 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int soerr = 0;
        socklen_t l = sizeof(soerr);
        if (errno != EINPROGRESS) {
            p2m_err(err, "connect: %s", strerror(errno));
            goto Exit;
        }
        if (poll(&pfd, 1, DIRECT_IO_MS) != 1) {
            p2m_err(err, "connect: no answer within %d ms", DIRECT_IO_MS);
            goto Exit;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0 || soerr != 0) {
            p2m_err(err, "connect: %s", strerror(soerr != 0 ? soerr : errno));
            goto Exit;
        }
    }
    if ((ssl = SSL_new(d->ssl)) == NULL || !SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, name) ||
        !SSL_set1_host(ssl, name)) {
        p2m_err(err, "cannot set up TLS");
        goto Exit;
    }
    /* The whole handshake has one deadline, however the peer doles out its bytes: a socket
     * timeout per call would let a slow peer hold the checker for DIRECT_IO_MS per record. */
    uint64_t deadline = monotonic_ms() + DIRECT_IO_MS;
    int rc;
    while ((rc = SSL_connect(ssl)) != 1) {
        int want = SSL_get_error(ssl, rc);
        uint64_t now = monotonic_ms();
        if ((want != SSL_ERROR_WANT_READ && want != SSL_ERROR_WANT_WRITE) || now >= deadline) {
            long v = SSL_get_verify_result(ssl);
            if (v != X509_V_OK)
                p2m_err(err, "certificate: %s", X509_verify_cert_error_string(v));
            else if (now >= deadline)
                p2m_err(err, "TLS handshake: not done within %d ms", DIRECT_IO_MS);
            else
                p2m_err(err, "TLS handshake failed");
            goto Exit;
        }
        struct pollfd pfd = {.fd = fd, .events = want == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
        if (poll(&pfd, 1, (int)(deadline - now)) < 0 && errno != EINTR) {
            p2m_err(err, "poll: %s", strerror(errno));
            goto Exit;
        }
    }
    X509 *peer = SSL_get1_peer_certificate(ssl);
    int named = peer != NULL && X509_check_host(peer, name, 0, 0, NULL) == 1;
    X509_free(peer);
    if (SSL_get_verify_result(ssl) != X509_V_OK || !named) {
        p2m_err(err, "certificate does not name %s", name);
        goto Exit;
    }
    SSL_shutdown(ssl);
    ret = 0;
Exit:
    ERR_clear_error();
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    return ret;
}

/* What the zone holds for name, as one canonical address, "" for none, or "*" for anything else
 * (several addresses). Returns 0 or -1 with err. */
static int zone_lookup(direct_t *d, const char *name, char *out, char *err)
{
    char addrs[P2M_DNSUPD_ADDRS_MAX][INET6_ADDRSTRLEN];
    size_t n = 0;
    uint32_t ttl;
    unsigned char a[16];
    if (p2m_dnsupd_lookup(&d->dns, name, addrs, P2M_DNSUPD_ADDRS_MAX, &n, &ttl, err) != 0)
        return -1;
    out[0] = '\0';
    if (n > 1) {
        strcpy(out, "*");
    } else if (n == 1) {
        int v4 = inet_pton(AF_INET, addrs[0], a) == 1;
        if (!v4 && inet_pton(AF_INET6, addrs[0], a) != 1)
            strcpy(out, "*");
        else
            inet_ntop(v4 ? AF_INET : AF_INET6, a, out, INET6_ADDRSTRLEN);
    }
    return 0;
}

/* Makes name hold want ("" = nothing). have is what Redis remembers having written; on a
 * reconciling pass the zone is asked instead. Returns 0, or -1 when the store failed; a DNS failure
 * is logged and leaves d->reconcile set, so that the next pass looks again. */
static int dns_keep(direct_t *d, const char *label, const char *name, const char *want, const char *have)
{
    char err[P2M_ERR_LEN], zone[INET6_ADDRSTRLEN];
    const p2m_dns_config_t *dc = &d->r->cfg.dns;
    int looked = d->reconcile;
    if (looked) {
        if (zone_lookup(d, name, zone, err) != 0) {
            p2m_log(P2M_LOG_WARN, "dns_lookup_failed", "name=%s error=\"%s\"", name, err);
            d->reconcile = 2; /* not reconciled yet: look again next pass */
            return 0;
        }
        have = zone;
    }
    if (strcmp(want, have) == 0) {
        /* Consistent: Redis should remember what the zone holds (a restart after a lost write). */
        return looked && p2m_store_direct_dns_set(d->st, label, name, want, err) != 0 ? -1 : 0;
    }
    const char *addrs[1] = {want};
    int rc = want[0] != '\0' ? p2m_dnsupd_replace(&d->dns, name, addrs, 1, dc->ttl, err) : p2m_dnsupd_delete(&d->dns, name, err);
    if (rc != 0) {
        p2m_log(P2M_LOG_WARN, "dns_update_failed", "name=%s addr=%s error=\"%s\"", name, want[0] ? want : "-", err);
        d->reconcile = 2; /* kept for the next pass (see pass()) */
        return 0;
    }
    p2m_log(P2M_LOG_INFO, "dns_update", "name=%s addr=%s was=%s ttl=%u reconcile=%s", name, want[0] ? want : "-",
            have[0] ? have : "-", dc->ttl, looked ? "yes" : "no");
    return p2m_store_direct_dns_set(d->st, label, name, want, err) != 0 ? -1 : 0;
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h * 1099511628211ull; /* the terminator counts: "ab" + "c" differs from "a" + "bc" */
}

/* Whether this failure of label's public path (reason) was logged already, and remembers it;
 * reason NULL (a pass) forgets it. A direct-mapped table: a collision costs one more or one less
 * line in the log, never a wrong check. */
static int failure_seen(direct_t *d, const char *label, const char *public_, const char *reason)
{
    uint64_t key = fnv(fnv(1469598103934665603ull, label), public_);
    direct_logged_t *slot = &d->logged[key % DIRECT_LOGGED_SLOTS];
    if (reason == NULL) {
        if (slot->key == key)
            slot->key = slot->reason = 0;
        return 0;
    }
    uint64_t why = fnv(1469598103934665603ull, reason);
    int seen = slot->key == key && slot->reason == why;
    slot->key = key;
    slot->reason = why;
    return seen;
}

/* One label: lock, check, keep its names. Returns 0, or -1 when the store failed. */
static int check_label(direct_t *d, const char *label)
{
    const p2m_config_t *cfg = &d->r->cfg;
    char lan_name[P2M_DOMAIN_MAX + 2], direct_name[P2M_DOMAIN_MAX + 2], name[P2M_DOMAIN_MAX + 2], err[P2M_ERR_LEN];
    int nl = snprintf(lan_name, sizeof(lan_name), "%s.lan.%s", label, cfg->domain);
    int nd = snprintf(direct_name, sizeof(direct_name), "%s.direct.%s", label, cfg->domain);
    snprintf(name, sizeof(name), "%s.%s", label, cfg->domain);
    if (nl < 0 || nl > P2M_DOMAIN_MAX || nd < 0 || nd > P2M_DOMAIN_MAX)
        return 0; /* such names cannot exist: nothing to keep for it */
    unsigned interval_ms = cfg->registrar.direct_check_interval * 1000;
    p2m_direct_state_t s;
    /* Held for an interval; this registrar takes it again at its next tick, another waits for it
     * to lapse (this one stopped). */
    if (p2m_store_direct_take(d->st, label, cfg->registrar.name, interval_ms, lan_name, direct_name, &s, err) != 0) {
        p2m_log(P2M_LOG_WARN, "direct_check_failed", "label=%s error=\"%s\"", label, err);
        return -1;
    }
    if (!s.locked) {
        /* Another registrar checks it this interval; a reconciling pass has not looked at it yet. */
        d->busy = 1;
        return 0;
    }

    char lan_host[INET6_ADDRSTRLEN], pub_host[INET6_ADDRSTRLEN] = "";
    path_host(s.lan[0] != '\0' ? s.lan : s.lan_http, lan_host);
    if (!cfg->registrar.direct_lan)
        lan_host[0] = '\0';
    if (s.public_[0] != '\0' && cfg->registrar.direct_public) {
        char host[INET6_ADDRSTRLEN];
        unsigned port = 0;
        /* A pod names the address; unless the operator allows it, the registrar does not connect
         * into its own networks for it (loopback, private, link-local). */
        int allowed = p2m_direct_addr_parse(s.public_, NULL, host, &port, err) == 0;
        if (allowed && !cfg->registrar.direct_public_private && !p2m_direct_addr_public(host)) {
            p2m_err(err, "a loopback, private or link-local address (registrar.direct.public_private is off)");
            allowed = 0;
        }
        if (allowed && tls_check(d, host, port, name, err) == 0) {
            memcpy(pub_host, host, sizeof(pub_host));
            failure_seen(d, label, s.public_, NULL);
            /* Logged at info when it changes, so that a check every interval does not fill the log. */
            p2m_log(strcmp(s.verified, s.public_) != 0 ? P2M_LOG_INFO : P2M_LOG_DEBUG, "direct_check",
                    "label=%s public=%s result=ok", label, s.public_);
        } else {
            /* At warn when the path worked until now, on a pass after a start, or when this failure
             * (this path, this reason) is new: a path that never worked is told once, not every
             * interval. */
            int fresh = !failure_seen(d, label, s.public_, err);
            p2m_log(s.verified[0] != '\0' || d->reconcile || fresh ? P2M_LOG_WARN : P2M_LOG_DEBUG, "direct_check",
                    "label=%s public=%s result=fail reason=\"%s\"", label, s.public_, err);
        }
    }
    /* A failure unmarks at once: the redirect stops using the path with this very write. */
    if (p2m_store_direct_verified(d->st, label, pub_host[0] != '\0' ? s.public_ : "", interval_ms * 3, err) != 0) {
        p2m_log(P2M_LOG_WARN, "direct_check_failed", "label=%s error=\"%s\"", label, err);
        return -1;
    }
    if (cfg->dns.enabled &&
        (dns_keep(d, label, lan_name, lan_host, s.dns_lan) != 0 || dns_keep(d, label, direct_name, pub_host, s.dns_direct) != 0)) {
        return -1;
    }
    if (p2m_store_direct_forget(d->st, label, lan_name, direct_name, err) != 0)
        return -1;
    return 0;
}

static void pass(direct_t *d)
{
    char err[P2M_ERR_LEN];
    char(*labels)[P2M_LABEL_MAX + 1] = NULL;
    size_t n = 0;
    if (d->st == NULL && (d->st = p2m_store_connect(&d->r->cfg.redis, DIRECT_IO_MS, err)) == NULL) {
        p2m_log(P2M_LOG_WARN, "direct_check_failed", "error=\"%s\"", err);
        return;
    }
    if (p2m_store_direct_labels(d->st, &labels, &n, DIRECT_LABELS_MAX, err) != 0) {
        p2m_log(P2M_LOG_WARN, "direct_check_failed", "error=\"%s\"", err);
        goto Reconnect;
    }
    d->busy = 0;
    for (size_t i = 0; i < n; i++) {
        if (check_label(d, labels[i]) != 0)
            goto Reconnect;
    }
    /* Done looking once a pass has made every update it tried (dns_keep sets 2 on a failure) and
     * visited every label: one another registrar held may not have been looked up since this one
     * started. With several registrars that can keep a registrar looking up: two queries a label. */
    d->reconcile = d->reconcile == 2 || (d->reconcile && d->busy) ? 1 : 0;
    free(labels);
    return;
Reconnect:
    free(labels);
    p2m_store_free(d->st);
    d->st = NULL;
}

static void *worker(void *arg)
{
    direct_t *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        while (!d->ticks && !d->stopping)
            pthread_cond_wait(&d->cv, &d->mu);
        int stop = d->stopping;
        d->ticks = 0;
        pthread_mutex_unlock(&d->mu);
        if (stop)
            break;
        pass(d);
    }
    return NULL;
}

static void wake(direct_t *d)
{
    pthread_mutex_lock(&d->mu);
    d->ticks = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void on_tick(h2o_timeout_entry_t *e)
{
    direct_t *d = H2O_STRUCT_FROM_MEMBER(direct_t, tick_entry, e);
    wake(d);
    h2o_timeout_link(d->r->h2o_ctx.loop, &d->tick_timeout, &d->tick_entry);
}

int direct_start(registrar_t *r, p2m_tsig_key_t *key, char *err)
{
    /* Without DNS nobody is sent to a direct path, so nothing needs checking; and such a
     * registrar must not hold the labels' locks that one keeping DNS needs (several share Redis). */
    if (!r->cfg.dns.enabled) {
        p2m_tsig_key_clear(key);
        p2m_log(P2M_LOG_INFO, "direct_started", "check_interval=%u dns=off lan=off public=off",
                r->cfg.registrar.direct_check_interval);
        return 0;
    }
    direct_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=direct");
        abort();
    }
    d->r = r;
    d->reconcile = 1;
    memcpy(&d->key, key, sizeof(d->key));
    p2m_tsig_key_clear(key);
    d->dns.server = r->cfg.dns.server;
    snprintf(d->dns.zone, sizeof(d->dns.zone), "%s", r->cfg.dns.zone);
    d->dns.key = &d->key;
    d->dns.timeout_ms = DIRECT_IO_MS;
    /* The pods' certificates come from this CA (PROTOCOL 4); an operator's CA may be an
     * intermediate, trusted here as the anchor. */
    if ((d->ssl = SSL_CTX_new(TLS_client_method())) == NULL || !SSL_CTX_set_min_proto_version(d->ssl, TLS1_2_VERSION) ||
        X509_STORE_add_cert(SSL_CTX_get_cert_store(d->ssl), r->ca.cert) != 1) {
        SSL_CTX_free(d->ssl);
        p2m_tsig_key_clear(&d->key);
        free(d);
        ERR_clear_error();
        return p2m_err(err, "direct: cannot make the TLS client context");
    }
    X509_STORE_set_flags(SSL_CTX_get_cert_store(d->ssl), X509_V_FLAG_PARTIAL_CHAIN);
    SSL_CTX_set_verify(d->ssl, SSL_VERIFY_PEER, NULL);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    if (pthread_create(&d->thread, NULL, worker, d) != 0) {
        SSL_CTX_free(d->ssl);
        p2m_tsig_key_clear(&d->key);
        free(d);
        return p2m_err(err, "direct: cannot start the checker thread");
    }
    h2o_timeout_init(r->h2o_ctx.loop, &d->tick_timeout, r->cfg.registrar.direct_check_interval * 1000);
    d->tick_entry = (h2o_timeout_entry_t){.cb = on_tick};
    h2o_timeout_link(r->h2o_ctx.loop, &d->tick_timeout, &d->tick_entry);
    r->direct = d;
    wake(d); /* the first pass, which reconciles, at once */
    p2m_log(P2M_LOG_INFO, "direct_started", "check_interval=%u dns=%s lan=%s public=%s", r->cfg.registrar.direct_check_interval,
            r->cfg.dns.enabled ? r->cfg.dns.zone : "off", r->cfg.registrar.direct_lan ? "on" : "off",
            r->cfg.registrar.direct_public ? "on" : "off");
    return 0;
}

void direct_stop(direct_t *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->stopping = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    if (h2o_timeout_is_linked(&d->tick_entry))
        h2o_timeout_unlink(&d->tick_entry);
    p2m_store_free(d->st);
    SSL_CTX_free(d->ssl);
    p2m_tsig_key_clear(&d->key);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}
