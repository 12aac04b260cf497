/* pipe2me-admin check: one look at a deployment after a change, one finding per line.
 *
 * It reads and never writes: the configuration this tool loads, Redis (connected without the
 * schema write every other connection makes), the relays' heartbeats, this host's ephemeral port
 * range, and the registrar's CA and certificate files. Each finding is ok, warn, fail or skip (not
 * checked, and why); check_run sets a->problems on any warn or fail, so that the exit status is 0
 * only for a clean deployment. */
#include "admin.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "p2m/cert.h"
#include "p2m/sysports.h"

#define CHECK_SKEW_MAX_MS 5000 /* TOTP's 30-s steps and the lease TTLs of seconds need clocks this close */
#define CHECK_CERT_DAYS 14     /* a certificate or CA that expires sooner is a warning */
#define CHECK_YEAR_MIN 2026    /* a clock before this is wrong: this code was written in 2026 */
#define CHECK_LIST_MAX 8       /* ranges named in an ok line before "..." */

typedef enum { ST_OK, ST_WARN, ST_FAIL, ST_SKIP } status_t;
static const char *const status_names[] = {"ok", "warn", "fail", "skip"};

typedef struct {
    const char *name; /* a check name, static */
    status_t status;
    char *detail; /* may hold outside input: escaped when printed */
} finding_t;

/* A port range to compare: a live relay's, or this configuration's relay.ports (relay NULL). */
typedef struct {
    const char *relay;
    p2m_port_range_t ports;
} range_t;

typedef struct {
    admin_t *a;
    const p2m_config_t *cfg; /* NULL when the configuration did not load */
    p2m_store_t *st;         /* NULL when Redis was not reached */
    const char *no_redis;    /* why st is NULL, for the skip notes */
    p2m_relay_info_t *relays;
    size_t nrelays;
    int have_relays; /* the relays were listed */
    range_t *ranges;
    size_t nranges;
    X509 *ca; /* the CA as the ca check read it, for the cert check; NULL when it could not */
    finding_t *v;
    size_t n, cap;
} check_t;

static void add(check_t *c, const char *name, status_t status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void add(check_t *c, const char *name, status_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *detail = admin_xmalloc(len > 0 ? (size_t)len + 1 : 1);
    va_start(ap, fmt);
    vsnprintf(detail, len > 0 ? (size_t)len + 1 : 1, fmt, ap);
    va_end(ap);
    if (c->n == c->cap) {
        c->cap = c->cap == 0 ? 16 : c->cap * 2;
        c->v = admin_xrealloc(c->v, c->cap * sizeof(*c->v));
    }
    c->v[c->n++] = (finding_t){name, status, detail};
}

static const char *file_or_defaults(const admin_t *a)
{
    return a->config_file != NULL ? a->config_file : "the built-in defaults";
}

/* --- the configuration ---------------------------------------------------------------------- */

static void check_config(check_t *c)
{
    admin_t *a = c->a;
    if (a->config_err[0] != '\0') {
        add(c, "config", ST_FAIL, "%s", a->config_err);
        return;
    }
    c->cfg = &a->cfg;
    if (a->config_file == NULL)
        add(c, "config", ST_OK, "no configuration file (%s is absent): the built-in defaults, domain %s, redis %s",
            ADMIN_CONFIG_DEFAULT, a->cfg.domain, a->cfg.redis_str);
    else
        add(c, "config", ST_OK, "%s: valid; domain %s, redis %s, state_dir %s", a->config_file, a->cfg.domain, a->cfg.redis_str,
            a->cfg.state_dir);
}

/* --- Redis and its schema ----------------------------------------------------------------- */

static void check_redis(check_t *c)
{
    char err[P2M_ERR_LEN];
    if (c->cfg == NULL) {
        add(c, "redis", ST_SKIP, "the configuration did not load");
        c->no_redis = "the configuration did not load";
        return;
    }
    if ((c->st = p2m_store_connect_raw(&c->cfg->redis, ADMIN_REDIS_TIMEOUT_MS, err)) == NULL) {
        add(c, "redis", ST_FAIL, "%s", err);
        c->no_redis = "Redis is unreachable";
        return;
    }
    add(c, "redis", ST_OK, "redis %s answers", c->cfg->redis_str);
}

static void check_schema(check_t *c)
{
    char err[P2M_ERR_LEN], have[64], want[16];
    if (c->st == NULL) {
        add(c, "schema", ST_SKIP, "%s", c->no_redis);
        return;
    }
    snprintf(want, sizeof(want), "%d", P2M_SCHEMA_VERSION);
    int rc = p2m_store_schema_get(c->st, have, sizeof(have), err);
    if (rc < 0)
        add(c, "schema", ST_FAIL, "%s", err);
    else if (rc == 0)
        add(c, "schema", ST_WARN,
            "p2m:schema is not set: no registrar or relay has connected to this database (each writes version %s when it "
            "does); is redis the one they use?",
            want);
    else if (strcmp(have, want) != 0)
        add(c, "schema", ST_FAIL,
            "p2m:schema is %s, this build knows %s: every program of this build refuses the database (another pipe2me "
            "version wrote it)",
            have, want);
    else
        add(c, "schema", ST_OK, "p2m:schema is %s, as this build expects", have);
}

/* --- relays: heartbeats, ranges, the kernel's ephemeral ports --------------------------------- */

static void check_relays(check_t *c)
{
    char err[P2M_ERR_LEN];
    if (c->st == NULL) {
        add(c, "relays", ST_SKIP, "%s", c->no_redis);
        return;
    }
    if (p2m_store_relay_list(c->st, &c->relays, &c->nrelays, err) != 0) {
        add(c, "relays", ST_FAIL, "%s", err);
        return;
    }
    c->have_relays = 1;
    size_t listed = 0;
    for (size_t i = 0; i < c->nrelays; i++)
        listed += c->relays[i].listed;
    if (listed == 0) {
        add(c, "relays", ST_FAIL, "no relay is listed in p2m:relays: registrations are refused until one runs");
        return;
    }
    const long long late_ms = P2M_RELAY_HEARTBEAT_TTL * 1000LL - 2LL * P2M_RELAY_HEARTBEAT_MS; /* two beats missed */
    for (size_t i = 0; i < c->nrelays; i++) {
        const p2m_relay_info_t *r = &c->relays[i];
        char since[ADMIN_TIME_LEN];
        char *end;
        long long started = strtoll(r->started, &end, 10);
        admin_time_iso(end != r->started && *end == '\0' ? started : -1, since);
        if (!r->listed) /* only a drain mark names it: a relay drained and stopped, which is fine */
            continue;
        if (!r->live)
            add(c, "relays", ST_FAIL,
                "relay %s: listed in p2m:relays but its heartbeat is gone: it stopped without leaving (crashed or killed); "
                "start it again (the registrar forgets it at its next lease)",
                r->name);
        else if (r->ttl_ms < 0)
            add(c, "relays", ST_FAIL,
                "relay %s: its heartbeat hash has no TTL, so it would count as live forever: no relay wrote it that way; "
                "delete it or restart the relay",
                r->name);
        else if (r->ttl_ms < late_ms)
            add(c, "relays", ST_WARN,
                "relay %s: heartbeat late: it expires in %lld.%03lld s and a relay renews it every %d s; is the relay stuck, "
                "or cut off from Redis?",
                r->name, r->ttl_ms / 1000, r->ttl_ms % 1000, P2M_RELAY_HEARTBEAT_MS / 1000);
        else
            add(c, "relays", ST_OK, "relay %s: live (heartbeat expires in %lld s), address %s, ports %s, up since %s", r->name,
                (r->ttl_ms + 999) / 1000, r->address[0] ? r->address : "-", r->ports[0] ? r->ports : "-", since);
    }
}

/* The relays a relay started with this configuration runs as: relay.name, or NAME-N with --workers. */
static int is_own_relay(const p2m_config_t *cfg, const char *name)
{
    size_t n = strlen(cfg->relay.name);
    if (strncmp(name, cfg->relay.name, n) != 0)
        return 0;
    if (name[n] == '\0')
        return 1;
    if (name[n] != '-' || name[n + 1] == '\0')
        return 0;
    for (const char *p = name + n + 1; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

static const char *range_name(const check_t *c, const range_t *r, char *out, size_t cap)
{
    if (r->relay != NULL)
        snprintf(out, cap, "relay %s", r->relay);
    else
        snprintf(out, cap, "relay.ports of %s", file_or_defaults(c->a));
    return out;
}

/* Collects the live relays' ranges (a relay publishing a bad one is a finding) and this
 * configuration's relay.ports when the file names it and no relay of this configuration is live
 * (when one is, its published range stands for it, and is compared with the file's below). */
static void collect_ranges(check_t *c, status_t *worst)
{
    int own = 0;
    c->ranges = admin_xmalloc((c->nrelays + 1) * sizeof(*c->ranges));
    for (size_t i = 0; i < c->nrelays; i++) {
        const p2m_relay_info_t *r = &c->relays[i];
        p2m_port_range_t pr;
        if (!r->live)
            continue;
        if (p2m_port_range_parse(r->ports, &pr, NULL) != 0) {
            add(c, "relay_ports", ST_FAIL, "relay %s publishes ports \"%s\", not LO-HI: the registrar leases none of its ports",
                r->name, r->ports);
            *worst = ST_FAIL;
            continue;
        }
        c->ranges[c->nranges++] = (range_t){r->name, pr};
        own |= is_own_relay(c->cfg, r->name);
    }
    if (c->cfg->relay.ports_given && !own)
        c->ranges[c->nranges++] = (range_t){NULL, c->cfg->relay.ports};
}

static void check_relay_ports(check_t *c)
{
    status_t worst = ST_OK;
    char n1[ADMIN_ARG_MAX + 64], n2[ADMIN_ARG_MAX + 64]; /* "relay.ports of FILE" */
    if (!c->have_relays) {
        add(c, "relay_ports", ST_SKIP, "%s", c->st == NULL ? c->no_redis : "the relays could not be listed");
        return;
    }
    collect_ranges(c, &worst);
    for (size_t i = 0; i < c->nranges; i++) {
        for (size_t j = i + 1; j < c->nranges; j++) {
            const range_t *x = &c->ranges[i], *y = &c->ranges[j];
            unsigned lo = x->ports.lo > y->ports.lo ? x->ports.lo : y->ports.lo;
            unsigned hi = x->ports.hi < y->ports.hi ? x->ports.hi : y->ports.hi;
            if (lo > hi)
                continue;
            range_name(c, x, n1, sizeof(n1));
            range_name(c, y, n2, sizeof(n2));
            add(c, "relay_ports", ST_FAIL,
                "%s (%u-%u) and %s (%u-%u) overlap at %u-%u: leases are keyed by port alone, so one relay would bind the "
                "other's; give each relay its own relay.ports",
                n1, (unsigned)x->ports.lo, (unsigned)x->ports.hi, n2, (unsigned)y->ports.lo, (unsigned)y->ports.hi, lo, hi);
            worst = ST_FAIL;
        }
    }
    /* a relay of this configuration that publishes another range runs with an older file */
    const p2m_port_range_t want = c->cfg->relay.ports;
    for (size_t i = 0; c->cfg->relay.ports_given && i < c->nranges; i++) {
        const range_t *r = &c->ranges[i];
        if (r->relay == NULL || !is_own_relay(c->cfg, r->relay))
            continue;
        int exact = strcmp(r->relay, c->cfg->relay.name) == 0;
        if (exact ? r->ports.lo != want.lo || r->ports.hi != want.hi : r->ports.lo < want.lo || r->ports.hi > want.hi) {
            add(c, "relay_ports", ST_WARN, "relay %s publishes ports %u-%u, but relay.ports in %s is %u-%u: restart it to apply",
                r->relay, (unsigned)r->ports.lo, (unsigned)r->ports.hi, file_or_defaults(c->a), (unsigned)want.lo,
                (unsigned)want.hi);
            if (worst == ST_OK)
                worst = ST_WARN;
        }
    }
    if (worst != ST_OK)
        return;
    if (c->nranges == 0) {
        add(c, "relay_ports", ST_SKIP, "no live relay publishes a range, and %s names no relay.ports", file_or_defaults(c->a));
        return;
    }
    char list[CHECK_LIST_MAX * (P2M_LABEL_MAX + 16) + 8] = "";
    size_t len = 0;
    for (size_t i = 0; i < c->nranges && len < sizeof(list); i++) {
        const range_t *r = &c->ranges[i];
        int w = i == CHECK_LIST_MAX
                    ? snprintf(list + len, sizeof(list) - len, ", ...")
                    : snprintf(list + len, sizeof(list) - len, "%s%s %u-%u", i ? ", " : "",
                               r->relay != NULL ? r->relay : "relay.ports", (unsigned)r->ports.lo, (unsigned)r->ports.hi);
        if (w < 0 || i == CHECK_LIST_MAX)
            break;
        len += (size_t)w;
    }
    add(c, "relay_ports", ST_OK, "%zu range%s, pairwise disjoint: %s", c->nranges, c->nranges == 1 ? "" : "s", list);
}

static void check_ephemeral(check_t *c)
{
    char err[P2M_ERR_LEN], name[ADMIN_ARG_MAX + 64];
    p2m_sysports_risk_t risk;
    int found = 0;
    if (!c->have_relays) {
        add(c, "ephemeral_ports", ST_SKIP, "%s", c->st == NULL ? c->no_redis : "the relays could not be listed");
        return;
    }
    if (c->nranges == 0) {
        add(c, "ephemeral_ports", ST_SKIP, "no range to compare");
        return;
    }
    for (size_t i = 0; i < c->nranges; i++) {
        const range_t *r = &c->ranges[i];
        if (p2m_sysports_read(r->ports, NULL, NULL, &risk, err) != 0) {
            add(c, "ephemeral_ports", ST_SKIP, "%s (not Linux, or a container without the file)", err);
            return;
        }
        if (risk.at_risk == 0)
            continue;
        found = 1;
        range_name(c, r, name, sizeof(name));
        add(c, "ephemeral_ports", ST_WARN,
            "%s (%u-%u): %u ports from %u to %u are in this host's ephemeral range %u-%u and not reserved, so outgoing "
            "connections may take them and leases there fail; if it runs on this host: sysctl -w "
            "net.ipv4.ip_local_reserved_ports=%s",
            name, (unsigned)r->ports.lo, (unsigned)r->ports.hi, risk.at_risk, (unsigned)risk.first, (unsigned)risk.last,
            (unsigned)risk.ephemeral.lo, (unsigned)risk.ephemeral.hi, risk.fix[0] ? risk.fix : "(add the overlap to the list)");
    }
    if (!found)
        add(c, "ephemeral_ports", ST_OK, "%zu range%s outside this host's ephemeral range %u-%u (or reserved)", c->nranges,
            c->nranges == 1 ? "" : "s", (unsigned)risk.ephemeral.lo, (unsigned)risk.ephemeral.hi);
}

/* --- the registrar's CA and certificate ------------------------------------------------------- */

/* Never asks for a passphrase on the terminal: an encrypted key reads as unreadable. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* Reads the first PEM certificate of path. Returns it, or NULL with *eno the open's errno (0 when
 * the file opened but holds no PEM certificate). */
static X509 *read_cert(const char *path, int *eno)
{
    FILE *f = fopen(path, "r");
    *eno = 0;
    if (f == NULL) {
        *eno = errno;
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, no_passphrase, NULL);
    fclose(f);
    ERR_clear_error();
    return x;
}

/* Reports a certificate file that could not be read: a file of the registrar's own that does not
 * exist yet is skipped (it makes them at its first start), one this user may not read is a warning
 * (check is then run as the wrong user), anything else fails. */
static void cert_unreadable(check_t *c, const char *name, const char *what, const char *path, int eno, int own)
{
    if (eno == ENOENT && own)
        add(c, name, ST_SKIP, "%s does not exist: the registrar makes it at its first start (or runs on another host)", path);
    else if (eno == EACCES)
        add(c, name, ST_WARN, "%s %s: %s; run check as the registrar's user", what, path, strerror(eno));
    else
        add(c, name, ST_FAIL, "%s %s: %s", what, path, eno != 0 ? strerror(eno) : "no PEM certificate");
}

/* Judges a certificate's validity against now. Returns ST_OK, ST_WARN (expires within
 * CHECK_CERT_DAYS) or ST_FAIL, with a phrase in out. */
static status_t validity(const X509 *x, long long now, char *out, size_t cap)
{
    long long nb, na;
    char t[ADMIN_TIME_LEN];
    if (p2m_cert_validity(x, &nb, &na) != 0) {
        snprintf(out, cap, "its validity cannot be read");
        return ST_FAIL;
    }
    if (nb > now) {
        snprintf(out, cap, "not valid before %s: is this host's clock behind?", admin_time_iso(nb, t));
        return ST_FAIL;
    }
    if (na <= now) {
        snprintf(out, cap, "expired %s", admin_time_iso(na, t));
        return ST_FAIL;
    }
    long long days = (na - now) / 86400;
    snprintf(out, cap, "valid until %s (%lld day%s)", admin_time_iso(na, t), days, days == 1 ? "" : "s");
    return na - now < CHECK_CERT_DAYS * 86400LL ? ST_WARN : ST_OK;
}

/* A private key must not be readable by group or others: the registrar refuses it at start. Adds
 * a finding named name when it is, or cannot be looked at, and returns 0 when it is fine (its
 * mode then in *mode). */
static int check_key_mode(check_t *c, const char *name, const char *what, const char *path, unsigned *mode)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int eno = errno;
        add(c, name, eno == EACCES ? ST_WARN : ST_FAIL, "%s %s: %s%s", what, path, strerror(eno),
            eno == EACCES ? "; run check as the registrar's user" : "");
        return -1;
    }
    *mode = (unsigned)(sb.st_mode & 07777);
    if ((sb.st_mode & 077) != 0) {
        add(c, name, ST_FAIL, "%s %s is mode %04o, readable by group or others (the registrar refuses to start): chmod 600 %s",
            what, path, *mode, path);
        return -1;
    }
    return 0;
}

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* registrar.ca_cert and ca_key, or the CA the registrar made in state_dir: readable, a CA, in
 * date, its key private and (when this user can read it) matching. */
static void check_ca(check_t *c)
{
    char cert_path[P2M_PATH_MAX + 32], key_path[P2M_PATH_MAX + 32], valid[128];
    int eno;
    unsigned mode = 0;
    size_t before = c->n;
    EVP_PKEY *key = NULL;
    if (c->cfg == NULL) {
        add(c, "ca", ST_SKIP, "the configuration did not load");
        return;
    }
    const p2m_registrar_config_t *rc = &c->cfg->registrar;
    int own = rc->ca_cert[0] == '\0';
    if (own) {
        path_in(cert_path, sizeof(cert_path), c->cfg->state_dir, "ca.pem");
        path_in(key_path, sizeof(key_path), c->cfg->state_dir, "ca-key.pem");
    } else {
        snprintf(cert_path, sizeof(cert_path), "%s", rc->ca_cert);
        snprintf(key_path, sizeof(key_path), "%s", rc->ca_key);
    }
    const char *what = own ? "CA" : "registrar.ca_cert", *kwhat = own ? "CA key" : "registrar.ca_key";
    X509 *x = read_cert(cert_path, &eno);
    if (x == NULL) {
        struct stat sb;
        if (own && eno == ENOENT && stat(key_path, &sb) != 0 && errno == ENOENT) {
            add(c, "ca", ST_SKIP, "%s does not exist: the registrar creates its CA at its first start (or runs on another host)",
                cert_path);
            return;
        }
        cert_unreadable(c, "ca", what, cert_path, eno, 0);
        check_key_mode(c, "ca", kwhat, key_path, &mode);
        return;
    }
    status_t st = validity(x, (long long)time(NULL), valid, sizeof(valid));
    if (st != ST_OK)
        add(c, "ca", st, "%s %s: %s; %s", what, cert_path, valid,
            st == ST_WARN ? "pod certificates end with it: replace it soon" : "the registrar issues no pod certificate");
    if (X509_check_ca(x) < 1)
        add(c, "ca", ST_FAIL, "%s %s: the first certificate is not a CA", what, cert_path);
    const char *match = "not matched to the certificate (this user cannot read it)";
    if (check_key_mode(c, "ca", kwhat, key_path, &mode) == 0) {
        /* read only to match it to the certificate */
        FILE *f = fopen(key_path, "r");
        if (f != NULL) {
            key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
            fclose(f);
            ERR_clear_error();
            if (key == NULL)
                add(c, "ca", ST_FAIL, "%s %s: not a PEM private key without a passphrase, which the registrar needs", kwhat,
                    key_path);
            else if (X509_check_private_key(x, key) != 1)
                add(c, "ca", ST_FAIL, "%s %s does not match %s %s", kwhat, key_path, what, cert_path);
            else
                match = "matches the certificate";
            ERR_clear_error();
        }
    }
    if (c->n == before)
        add(c, "ca", ST_OK, "%s %s: %s; key %s mode %04o, %s", what, cert_path, valid, key_path, mode, match);
    EVP_PKEY_free(key);
    c->ca = x;
}

/* Whether cert serves name: a DNS entry equal to it, or a wildcard entry one level up
 * ("*.example.org" for "a.example.org"), as a TLS client matches. "*.DOMAIN" itself needs the
 * entry "*.DOMAIN". */
static int cert_covers(const X509 *cert, const char *name)
{
    char wild[P2M_DOMAIN_MAX + 3];
    const char *dot = strchr(name, '.');
    if (p2m_cert_has_name(cert, name))
        return 1;
    if (name[0] == '*' || dot == NULL || strchr(dot + 1, '.') == NULL)
        return 0;
    snprintf(wild, sizeof(wild), "*%s", dot);
    return p2m_cert_has_name(cert, wild);
}

/* registrar.cert, or the certificate the registrar made in state_dir: it covers DOMAIN, *.DOMAIN
 * and registrar.names, is in date, was issued by the current CA (the registrar's own) and its key
 * is private. */
static void check_cert(check_t *c)
{
    char cert_path[P2M_PATH_MAX + 32], key_path[P2M_PATH_MAX + 32], valid[128], wild[P2M_DOMAIN_MAX + 3];
    int eno;
    unsigned mode = 0;
    size_t before = c->n;
    if (c->cfg == NULL) {
        add(c, "cert", ST_SKIP, "the configuration did not load");
        return;
    }
    const p2m_config_t *cfg = c->cfg;
    int own = cfg->registrar.cert[0] == '\0';
    if (own) {
        path_in(cert_path, sizeof(cert_path), cfg->state_dir, "registrar.pem");
        path_in(key_path, sizeof(key_path), cfg->state_dir, "registrar-key.pem");
    } else {
        snprintf(cert_path, sizeof(cert_path), "%s", cfg->registrar.cert);
        snprintf(key_path, sizeof(key_path), "%s", cfg->registrar.key);
    }
    const char *what = own ? "the registrar's certificate" : "registrar.cert";
    const char *fix = own ? "restart the registrar, which reissues it" : "replace it";
    X509 *x = read_cert(cert_path, &eno);
    if (x == NULL) {
        cert_unreadable(c, "cert", what, cert_path, eno, own);
        return;
    }
    /* the names the registrar answers as itself: DOMAIN, every LABEL.DOMAIN, registrar.names */
    const char *names[P2M_NAMES_MAX + 2];
    size_t nnames = 0;
    snprintf(wild, sizeof(wild), "*.%s", cfg->domain);
    names[nnames++] = cfg->domain;
    names[nnames++] = wild;
    for (unsigned i = 0; i < cfg->registrar.nnames; i++)
        names[nnames++] = cfg->registrar.names[i];
    for (size_t i = 0; i < nnames; i++)
        if (!cert_covers(x, names[i]))
            add(c, "cert", ST_FAIL, "%s %s lacks %s, so clients that ask for it fail verification; %s", what, cert_path, names[i],
                own ? "restart the registrar, which reissues it with every name" : "get one that covers it");
    status_t st = validity(x, (long long)time(NULL), valid, sizeof(valid));
    if (st != ST_OK)
        add(c, "cert", st, "%s %s: %s; %s", what, cert_path, valid, fix);
    if (own && c->ca != NULL && X509_check_issued(c->ca, x) != X509_V_OK)
        add(c, "cert", ST_WARN, "%s %s was not issued by the current CA; %s", what, cert_path, fix);
    check_key_mode(c, "cert", own ? "its key" : "registrar.key", key_path, &mode);
    if (c->n == before)
        add(c, "cert", ST_OK, "%s %s covers %s, *.%s%s; %s; key %s mode %04o", what, cert_path, cfg->domain, cfg->domain,
            cfg->registrar.nnames > 0 ? " and registrar.names" : "", valid, key_path, mode);
    X509_free(x);
}

/* --- clocks ----------------------------------------------------------------------------------- */

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void check_clock(check_t *c)
{
    char t[ADMIN_TIME_LEN];
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || tm.tm_year + 1900 < CHECK_YEAR_MIN)
        add(c, "clock", ST_FAIL, "this host's clock says %s, before %d: set it (NTP); TOTP codes and certificates depend on it",
            admin_time_iso((long long)now, t), CHECK_YEAR_MIN);
    else
        add(c, "clock", ST_OK, "this host's clock says %s", admin_time_iso((long long)now, t));
}

static void check_skew(check_t *c)
{
    char err[P2M_ERR_LEN];
    long long redis_us;
    if (c->st == NULL) {
        add(c, "clock_skew", ST_SKIP, "%s", c->no_redis);
        return;
    }
    long long t0 = now_us();
    if (p2m_store_time(c->st, &redis_us, err) != 0) {
        add(c, "clock_skew", ST_FAIL, "%s", err);
        return;
    }
    long long t1 = now_us();
    /* Redis read its clock somewhere between t0 and t1: only what exceeds half the round trip is skew */
    long long skew_ms = (redis_us - (t0 + t1) / 2) / 1000, slack_ms = (t1 - t0) / 2000;
    long long abs_ms = skew_ms < 0 ? -skew_ms : skew_ms;
    if (abs_ms > CHECK_SKEW_MAX_MS + slack_ms)
        add(c, "clock_skew", ST_FAIL,
            "Redis's clock is %lld.%03lld s %s this host's, more than %d s: TOTP codes (30-s steps) and lease TTLs need the "
            "hosts' clocks to agree; sync them (NTP)",
            abs_ms / 1000, abs_ms % 1000, skew_ms > 0 ? "ahead of" : "behind", CHECK_SKEW_MAX_MS / 1000);
    else
        add(c, "clock_skew", ST_OK, "Redis's clock is within %lld ms of this host's (round trip %lld ms)", abs_ms + slack_ms,
            (t1 - t0) / 1000);
}

/* --- output ----------------------------------------------------------------------------------- */

/* The detail for a text line: printable ASCII as is but for '"' and '\', which are escaped, and
 * every other byte as \xNN. Returns a string to free(). */
static char *quote_detail(const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = strlen(s), pos = 0;
    char *out = admin_xmalloc(len * 4 + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[pos++] = '\\';
            out[pos++] = (char)ch;
        } else if (ch >= 0x20 && ch <= 0x7e) {
            out[pos++] = (char)ch;
        } else {
            out[pos++] = '\\';
            out[pos++] = 'x';
            out[pos++] = hex[ch >> 4];
            out[pos++] = hex[ch & 0xf];
        }
    }
    out[pos] = '\0';
    return out;
}

static int print_json(const check_t *c, int ok, char *err)
{
    json_t *arr = json_array(), *doc = NULL;
    int ret = -1;
    for (size_t i = 0; arr != NULL && i < c->n; i++) {
        /* outside input may not be UTF-8, which jansson refuses: the detail goes out escaped */
        char *detail = admin_escape_dup(c->v[i].detail);
        json_t *o = json_pack("{s:s, s:s, s:s}", "name", c->v[i].name, "status", status_names[c->v[i].status], "detail", detail);
        free(detail);
        if (json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (arr == NULL || (doc = json_pack("{s:b, s:O}", "ok", ok, "findings", arr)) == NULL) {
        p2m_err(err, "cannot build the JSON reply");
        goto Exit;
    }
    ret = admin_json_print(doc, err);
Exit:
    json_decref(arr);
    json_decref(doc);
    return ret;
}

static int print_text(const check_t *c, char *err)
{
    for (size_t i = 0; i < c->n; i++) {
        char *detail = quote_detail(c->v[i].detail);
        printf("check=%s status=%s detail=\"%s\"\n", c->v[i].name, status_names[c->v[i].status], detail);
        free(detail);
    }
    return admin_flush_stdout(err);
}

int check_run(admin_t *a, char *err)
{
    check_t c;
    memset(&c, 0, sizeof(c));
    c.a = a;

    check_config(&c);
    check_redis(&c);
    check_schema(&c);
    check_relays(&c);
    if (c.cfg != NULL) {
        check_relay_ports(&c);
        check_ephemeral(&c);
    } else {
        add(&c, "relay_ports", ST_SKIP, "the configuration did not load");
        add(&c, "ephemeral_ports", ST_SKIP, "the configuration did not load");
    }
    check_ca(&c);
    check_cert(&c);
    check_clock(&c);
    check_skew(&c);

    int ok = 1;
    for (size_t i = 0; i < c.n; i++)
        if (c.v[i].status == ST_FAIL || c.v[i].status == ST_WARN)
            ok = 0;
    a->problems = !ok;
    int ret = a->json ? print_json(&c, ok, err) : print_text(&c, err);

    for (size_t i = 0; i < c.n; i++)
        free(c.v[i].detail);
    free(c.v);
    free(c.relays);
    free(c.ranges);
    X509_free(c.ca);
    p2m_store_free(c.st);
    return ret;
}
