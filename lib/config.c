#include "p2m/config.h"
#include "p2m/err.h"
#include "p2m/label.h"
#include "p2m/sentinel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_MAX_BYTES (1024 * 1024)

/* The registrar's public URL follows the domain and HTTPS port unless the file names one. */
static void derive_url(p2m_config_t *cfg)
{
    uint16_t port = cfg->registrar.listen.port;
    if (port == 443)
        snprintf(cfg->registrar.url, sizeof(cfg->registrar.url), "https://%s", cfg->domain);
    else
        snprintf(cfg->registrar.url, sizeof(cfg->registrar.url), "https://%s:%u", cfg->domain, (unsigned)port);
}

void p2m_config_defaults(p2m_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->domain, "pipe2me.localhost");
    strcpy(cfg->public_address, "127.0.0.1");
    strcpy(cfg->redis_str, "127.0.0.1:6379");
    p2m_redis_addr_parse(cfg->redis_str, &cfg->redis, NULL);
    strcpy(cfg->state_dir, "/var/lib/pipe2me");
    cfg->log_level = P2M_LOG_INFO;

    p2m_hostport_parse(":8443", &cfg->registrar.listen, NULL);
    cfg->registrar.http_enabled = 1;
    p2m_hostport_parse(":8080", &cfg->registrar.http, NULL);
    cfg->registrar.preconnect_timeout = 10;
    cfg->registrar.consumer_ttl = 60;
    cfg->registrar.alive_window = 30;
    cfg->registrar.consumer_ports_per_addr = 16;
    cfg->registrar.consumer_ports_per_label = 1024;
    cfg->registrar.consumer_ports_share = 50;
    cfg->registrar.session_ttl = 600;
    cfg->registrar.auth_fail_limit = 5;
    cfg->registrar.auth_fail_window = 86400;
    cfg->registrar.auth_backoff_max = 900;
    cfg->registrar.cert_lifetime = 30 * 86400;
    strcpy(cfg->registrar.proxy_from[0], "127.0.0.1");
    strcpy(cfg->registrar.proxy_from[1], "::1");
    cfg->registrar.nproxy_from = 2;
    cfg->registrar.metrics_enabled = 1;
    p2m_hostport_parse("127.0.0.1:9464", &cfg->registrar.metrics_listen, NULL);

    /* A host name that is not a valid label (dots, odd bytes) falls back to "relay". */
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || p2m_label_normalize(host, strcspn(host, "."), cfg->relay.name, NULL) != 0)
        strcpy(cfg->relay.name, "relay");
    if (p2m_label_normalize(host, strcspn(host, "."), cfg->registrar.name, NULL) != 0)
        strcpy(cfg->registrar.name, "registrar");
    cfg->registrar.direct_lan = 1;
    cfg->registrar.direct_public = 1;
    cfg->registrar.direct_check_interval = 10;
    cfg->registrar.direct_retry_window = 30;
    cfg->dns.ttl = 30;
    cfg->relay.ports = (p2m_port_range_t){20000, 29999};
    cfg->relay.wait_timeout = 5;
    cfg->relay.first_byte_timeout = 10;
    cfg->relay.idle_timeout = 600;
    cfg->relay.max_conns_per_addr = 256;
    derive_url(cfg);
}

int p2m_https_base_normalize(const char *s, char *out, char *err)
{
    size_t len = s == NULL ? 0 : strlen(s);
    if (len > P2M_URL_MAX)
        return p2m_err(err, "longer than %d bytes", P2M_URL_MAX);
    if (len < 9 || strncmp(s, "https://", 8) != 0)
        return p2m_err(err, "expected an https:// URL");
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~' || strchr("@?#\"\\", s[i]) != NULL)
            return p2m_err(err, "holds a blank, a non-ASCII byte or one of @ ? # \" \\");
    while (len > 8 && s[len - 1] == '/')
        len--;
    if (len == 8 || s[8] == '/' || s[8] == ':')
        return p2m_err(err, "expected a host after https://");
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

int p2m_domain_normalize(const char *s, char *out, char *err)
{
    size_t len = s == NULL ? 0 : strlen(s);
    if (len == 0)
        return p2m_err(err, "domain is empty");
    if (len > P2M_DOMAIN_MAX)
        return p2m_err(err, "domain is longer than %d characters", P2M_DOMAIN_MAX);
    const char *label = s;
    for (;;) {
        const char *dot = strchr(label, '.');
        size_t n = dot != NULL ? (size_t)(dot - label) : strlen(label);
        char lerr[P2M_ERR_LEN];
        if (p2m_label_normalize(label, n, out + (label - s), lerr) != 0)
            return p2m_err(err, "domain: %s", lerr);
        if (dot == NULL)
            break;
        out[dot - s] = '.';
        label = dot + 1;
    }
    out[len] = '\0';
    return 0;
}

/* Outside text (an unknown key, jansson's quote of a bad token) goes into an error message only as
 * printable ASCII, so that the message stays one line. */
static const char *printable_key(const char *key, char *out, size_t cap)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0' && n + 5 < cap && n < 96; p++) {
        if (*p >= 0x20 && *p < 0x7f)
            out[n++] = (char)*p;
        else
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", *p);
    }
    out[n] = '\0';
    return out;
}

/* Each reader takes the JSON value found at path and stores it or names the path in err. */

static int read_string(json_t *v, const char *path, char *out, size_t cap, char *err)
{
    if (!json_is_string(v))
        return p2m_err(err, "%s: expected a string", path);
    size_t n = json_string_length(v);
    if (n == 0)
        return p2m_err(err, "%s: must not be empty", path);
    if (n >= cap)
        return p2m_err(err, "%s: longer than %zu bytes", path, cap - 1);
    if (memchr(json_string_value(v), '\0', n) != NULL)
        return p2m_err(err, "%s: contains a NUL byte", path);
    memcpy(out, json_string_value(v), n + 1);
    return 0;
}

static int read_seconds(json_t *v, const char *path, unsigned *out, char *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 86400)
        return p2m_err(err, "%s: expected whole seconds from 1 to 86400", path);
    *out = (unsigned)json_integer_value(v);
    return 0;
}

/* A whole number from lo to hi; the error says what it is ("whole seconds", "a percentage"). */
static int read_range(json_t *v, const char *path, long long lo, long long hi, const char *what, unsigned *out, char *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return p2m_err(err, "%s: expected %s from %lld to %lld", path, what, lo, hi);
    *out = (unsigned)json_integer_value(v);
    return 0;
}

static int read_count(json_t *v, const char *path, unsigned *out, char *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000000)
        return p2m_err(err, "%s: expected a whole number from 1 to 1000000", path);
    *out = (unsigned)json_integer_value(v);
    return 0;
}

static int read_hostport(json_t *v, const char *path, p2m_hostport_t *out, char *err)
{
    char buf[P2M_HOST_MAX + 16], perr[P2M_ERR_LEN];
    if (read_string(v, path, buf, sizeof(buf), err) != 0)
        return -1;
    if (p2m_hostport_parse(buf, out, perr) != 0)
        return p2m_err(err, "%s: %s", path, perr);
    return 0;
}

/* An IP address literal, written back in its canonical form (IPv4-mapped IPv6 as IPv4). */
static int read_ip(json_t *v, const char *path, char *out, size_t cap, char *err)
{
    char buf[P2M_HOST_MAX + 1];
    unsigned char a[16];
    if (read_string(v, path, buf, sizeof(buf), err) != 0)
        return -1;
    if (inet_pton(AF_INET, buf, a) == 1)
        return inet_ntop(AF_INET, a, out, (socklen_t)cap) != NULL ? 0 : p2m_err(err, "%s: address too long", path);
    if (inet_pton(AF_INET6, buf, a) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        int mapped = memcmp(a, v4mapped, 12) == 0;
        const char *ok = mapped ? inet_ntop(AF_INET, a + 12, out, (socklen_t)cap) : inet_ntop(AF_INET6, a, out, (socklen_t)cap);
        return ok != NULL ? 0 : p2m_err(err, "%s: address too long", path);
    }
    return p2m_err(err, "%s: expected an IP address", path);
}

/* registrar.names[i]: a DNS name (as the domain), lower-cased; not an IPv4 literal, which would
 * pass as a name of digit labels (IP literals are answered as the registrar's own addresses), and
 * no repeat of an earlier entry. */
static int read_name(json_t *v, size_t i, p2m_registrar_config_t *r, char *err)
{
    char path[48], buf[P2M_DOMAIN_MAX + 1], derr[P2M_ERR_LEN];
    unsigned char a[16];
    snprintf(path, sizeof(path), "registrar.names[%zu]", i);
    if (read_string(v, path, buf, sizeof(buf), err) != 0)
        return -1;
    if (inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1)
        return p2m_err(err, "%s: an IP address, not a host name (the registrar's own addresses need no entry)", path);
    if (p2m_domain_normalize(buf, r->names[i], derr) != 0)
        return p2m_err(err, "%s: %s", path, derr);
    for (size_t j = 0; j < i; j++)
        if (strcmp(r->names[j], r->names[i]) == 0)
            return p2m_err(err, "%s: %s repeats registrar.names[%zu]", path, r->names[i], j);
    return 0;
}

/* registrar.metrics_token: a Bearer credential (RFC 6750 b64token characters) long enough that
 * guessing it is hopeless, since nothing rate-limits /metrics. */
static int read_metrics_token(json_t *v, p2m_registrar_config_t *r, char *err)
{
    static const char *path = "registrar.metrics_token";
    if (json_is_null(v)) {
        r->metrics_token[0] = '\0';
        return 0;
    }
    if (!json_is_string(v))
        return p2m_err(err, "%s: expected a string or null", path);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n < P2M_METRICS_TOKEN_MIN || n > P2M_METRICS_TOKEN_MAX)
        return p2m_err(err, "%s: expected %d to %d characters", path, P2M_METRICS_TOKEN_MIN, P2M_METRICS_TOKEN_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c != '\0' && strchr("-._~+/=", c));
        if (!ok)
            return p2m_err(err, "%s: only letters, digits and -._~+/= are allowed", path);
    }
    memcpy(r->metrics_token, s, n + 1);
    return 0;
}

static int read_bool(json_t *v, const char *path, int *out, char *err)
{
    if (!json_is_boolean(v))
        return p2m_err(err, "%s: expected true or false", path);
    *out = json_is_true(v);
    return 0;
}

/* registrar.direct: {"lan": BOOL, "public": BOOL, "public_private": BOOL, "check_interval": S,
 * "retry_window": S}, each optional. */
static int parse_direct(json_t *obj, p2m_registrar_config_t *r, char *err)
{
    if (!json_is_object(obj))
        return p2m_err(err, "registrar.direct: expected an object");
    const char *key;
    char kbuf[128];
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int rc;
        if (strcmp(key, "lan") == 0)
            rc = read_bool(v, "registrar.direct.lan", &r->direct_lan, err);
        else if (strcmp(key, "public") == 0)
            rc = read_bool(v, "registrar.direct.public", &r->direct_public, err);
        else if (strcmp(key, "public_private") == 0)
            rc = read_bool(v, "registrar.direct.public_private", &r->direct_public_private, err);
        else if (strcmp(key, "check_interval") == 0)
            rc = read_range(v, "registrar.direct.check_interval", 1, 3600, "whole seconds", &r->direct_check_interval, err);
        else if (strcmp(key, "retry_window") == 0)
            rc = read_range(v, "registrar.direct.retry_window", 1, 3600, "whole seconds", &r->direct_retry_window, err);
        else
            rc = p2m_err(err, "registrar.direct.%s: unknown key", printable_key(key, kbuf, sizeof(kbuf)));
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* dns: {"server": "ADDR:PORT", "zone": Z, "tsig_key_file": F, "ttl": S}; the first three needed.
 * The key file is only named here: the registrar reads it (and checks its mode) at start. */
static int parse_dns(json_t *obj, p2m_dns_config_t *d, char *err)
{
    if (!json_is_object(obj))
        return p2m_err(err, "dns: expected an object");
    const char *key;
    char kbuf[128];
    json_t *v;
    memset(d, 0, sizeof(*d));
    d->enabled = 1;
    d->ttl = 30;
    json_object_foreach(obj, key, v)
    {
        int rc;
        if (strcmp(key, "server") == 0) {
            unsigned char a[16];
            rc = read_hostport(v, "dns.server", &d->server, err);
            /* The updates resolve no names: a server named by a name would need DNS to reach DNS. */
            if (rc == 0 && inet_pton(AF_INET, d->server.host, a) != 1 && inet_pton(AF_INET6, d->server.host, a) != 1)
                rc = p2m_err(err, "dns.server: expected an IP address literal and a port (ADDR:PORT or [V6]:PORT)");
        } else if (strcmp(key, "zone") == 0) {
            char buf[P2M_DOMAIN_MAX + 2], derr[P2M_ERR_LEN];
            rc = read_string(v, "dns.zone", buf, sizeof(buf), err);
            if (rc == 0 && p2m_domain_normalize(buf, d->zone, derr) != 0)
                rc = p2m_err(err, "dns.zone: %s", derr);
        } else if (strcmp(key, "tsig_key_file") == 0) {
            rc = read_string(v, "dns.tsig_key_file", d->tsig_key_file, sizeof(d->tsig_key_file), err);
        } else if (strcmp(key, "ttl") == 0) {
            rc = read_range(v, "dns.ttl", 1, 86400, "whole seconds", &d->ttl, err);
        } else {
            rc = p2m_err(err, "dns.%s: unknown key", printable_key(key, kbuf, sizeof(kbuf)));
        }
        if (rc != 0)
            return -1;
    }
    if (d->server.port == 0)
        return p2m_err(err, "dns.server: needed (ADDR:PORT of the authoritative server)");
    if (d->zone[0] == '\0')
        return p2m_err(err, "dns.zone: needed (the zone that holds DOMAIN)");
    if (d->tsig_key_file[0] == '\0')
        return p2m_err(err, "dns.tsig_key_file: needed (a BIND key file, mode 0600)");
    return 0;
}

static int parse_registrar(json_t *obj, p2m_registrar_config_t *r, char *err)
{
    if (!json_is_object(obj))
        return p2m_err(err, "registrar: expected an object");
    const char *key;
    char kbuf[128];
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int rc;
        if (strcmp(key, "https") == 0) {
            rc = read_hostport(v, "registrar.https", &r->listen, err);
        } else if (strcmp(key, "http") == 0) {
            r->http_enabled = !json_is_null(v);
            rc = r->http_enabled ? read_hostport(v, "registrar.http", &r->http, err) : 0;
        } else if (strcmp(key, "url") == 0) {
            rc = read_string(v, "registrar.url", r->url, sizeof(r->url), err);
            if (rc == 0 && strncmp(r->url, "https://", 8) != 0)
                rc = p2m_err(err, "registrar.url: must start with https://");
            for (const char *p = r->url; rc == 0 && *p != '\0'; p++)
                if (*p <= ' ' || *p > '~')
                    rc = p2m_err(err, "registrar.url: contains a space or a non-ASCII byte");
        } else if (strcmp(key, "name") == 0) {
            char buf[256], lerr[P2M_ERR_LEN];
            rc = read_string(v, "registrar.name", buf, sizeof(buf), err);
            if (rc == 0 && p2m_label_normalize(buf, strlen(buf), r->name, lerr) != 0)
                rc = p2m_err(err, "registrar.name: %s", lerr);
        } else if (strcmp(key, "pods_to") == 0) {
            char buf[P2M_URL_MAX + 1], uerr[P2M_ERR_LEN];
            r->pods_to[0] = '\0';
            rc = json_is_null(v) ? 0 : read_string(v, "registrar.pods_to", buf, sizeof(buf), err);
            if (rc == 0 && !json_is_null(v) && p2m_https_base_normalize(buf, r->pods_to, uerr) != 0)
                rc = p2m_err(err, "registrar.pods_to: %s", uerr);
        } else if (strcmp(key, "preconnect_timeout") == 0) {
            rc = read_seconds(v, "registrar.preconnect_timeout", &r->preconnect_timeout, err);
        } else if (strcmp(key, "consumer_ttl") == 0) {
            rc = read_seconds(v, "registrar.consumer_ttl", &r->consumer_ttl, err);
        } else if (strcmp(key, "alive_window") == 0) {
            /* Relays refresh the mark every heartbeat (5 s) while they hold the pod's connections:
             * a window of two heartbeats and more never lapses for a pod that is there. */
            rc = read_range(v, "registrar.alive_window", 10, 86400, "whole seconds", &r->alive_window, err);
        } else if (strcmp(key, "consumer_ports") == 0) {
            char mode[16];
            rc = read_string(v, "registrar.consumer_ports", mode, sizeof(mode), err);
            if (rc == 0 && strcmp(mode, "per-service") == 0)
                r->consumer_ports_per_address = 0;
            else if (rc == 0 && strcmp(mode, "per-address") == 0)
                r->consumer_ports_per_address = 1;
            else if (rc == 0 || json_is_string(v))
                rc = p2m_err(err, "registrar.consumer_ports: expected \"per-service\" or \"per-address\"");
        } else if (strcmp(key, "consumer_ports_per_addr") == 0) {
            rc = read_count(v, "registrar.consumer_ports_per_addr", &r->consumer_ports_per_addr, err);
        } else if (strcmp(key, "consumer_ports_per_label") == 0) {
            rc = read_count(v, "registrar.consumer_ports_per_label", &r->consumer_ports_per_label, err);
        } else if (strcmp(key, "consumer_ports_share") == 0) {
            rc = read_range(v, "registrar.consumer_ports_share", 1, 90, "a percentage", &r->consumer_ports_share, err);
        } else if (strcmp(key, "session_ttl") == 0) {
            rc = read_seconds(v, "registrar.session_ttl", &r->session_ttl, err);
        } else if (strcmp(key, "auth_fail_limit") == 0) {
            rc = read_count(v, "registrar.auth_fail_limit", &r->auth_fail_limit, err);
        } else if (strcmp(key, "auth_fail_window") == 0) {
            rc = read_seconds(v, "registrar.auth_fail_window", &r->auth_fail_window, err);
        } else if (strcmp(key, "auth_backoff_max") == 0) {
            rc = read_seconds(v, "registrar.auth_backoff_max", &r->auth_backoff_max, err);
        } else if (strcmp(key, "cert_lifetime") == 0) {
            /* Short lifetimes are what makes revocation unnecessary; a minute is the floor a pod
             * can still renew within. */
            rc = 0;
            if (!json_is_integer(v) || json_integer_value(v) < 60 || json_integer_value(v) > 397 * 86400)
                rc = p2m_err(err, "registrar.cert_lifetime: expected whole seconds from 60 to 34300800 (397 days)");
            else
                r->cert_lifetime = (unsigned)json_integer_value(v);
        } else if (strcmp(key, "proxy_listen") == 0) {
            r->proxy_enabled = !json_is_null(v);
            rc = r->proxy_enabled ? read_hostport(v, "registrar.proxy_listen", &r->proxy_listen, err) : 0;
        } else if (strcmp(key, "proxy_from") == 0) {
            rc = 0;
            if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > P2M_PROXY_FROM_MAX) {
                rc = p2m_err(err, "registrar.proxy_from: expected a list of 1 to %d IP addresses", P2M_PROXY_FROM_MAX);
            } else {
                size_t i;
                json_t *e;
                r->nproxy_from = 0;
                json_array_foreach(v, i, e)
                {
                    char path[48];
                    snprintf(path, sizeof(path), "registrar.proxy_from[%zu]", i);
                    if ((rc = read_ip(e, path, r->proxy_from[i], sizeof(r->proxy_from[i]), err)) != 0)
                        break;
                    r->nproxy_from++;
                }
            }
        } else if (strcmp(key, "names") == 0) {
            rc = 0;
            r->nnames = 0;
            if (!json_is_array(v) || json_array_size(v) > P2M_NAMES_MAX) {
                rc = p2m_err(err, "registrar.names: expected a list of at most %d host names", P2M_NAMES_MAX);
            } else {
                size_t i;
                json_t *e;
                json_array_foreach(v, i, e)
                {
                    if ((rc = read_name(e, i, r, err)) != 0)
                        break;
                    r->nnames++;
                }
            }
        } else if (strcmp(key, "metrics_listen") == 0) {
            r->metrics_enabled = !json_is_null(v);
            rc = r->metrics_enabled ? read_hostport(v, "registrar.metrics_listen", &r->metrics_listen, err) : 0;
        } else if (strcmp(key, "metrics_token") == 0) {
            rc = read_metrics_token(v, r, err);
        } else if (strcmp(key, "ca_cert") == 0) {
            rc = read_string(v, "registrar.ca_cert", r->ca_cert, sizeof(r->ca_cert), err);
        } else if (strcmp(key, "ca_key") == 0) {
            rc = read_string(v, "registrar.ca_key", r->ca_key, sizeof(r->ca_key), err);
        } else if (strcmp(key, "cert") == 0) {
            rc = read_string(v, "registrar.cert", r->cert, sizeof(r->cert), err);
        } else if (strcmp(key, "key") == 0) {
            rc = read_string(v, "registrar.key", r->key, sizeof(r->key), err);
        } else if (strcmp(key, "direct") == 0) {
            rc = parse_direct(v, r, err);
        } else {
            rc = p2m_err(err, "registrar.%s: unknown key", printable_key(key, kbuf, sizeof(kbuf)));
        }
        if (rc != 0)
            return -1;
    }
    if ((r->ca_cert[0] == '\0') != (r->ca_key[0] == '\0'))
        return p2m_err(err, "registrar.ca_cert and registrar.ca_key: give both or neither");
    if ((r->cert[0] == '\0') != (r->key[0] == '\0'))
        return p2m_err(err, "registrar.cert and registrar.key: give both or neither");
    return 0;
}

static int parse_relay(json_t *obj, p2m_relay_config_t *r, char *err)
{
    if (!json_is_object(obj))
        return p2m_err(err, "relay: expected an object");
    const char *key;
    char kbuf[128];
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int rc;
        if (strcmp(key, "name") == 0) {
            char buf[P2M_LABEL_MAX + 2], lerr[P2M_ERR_LEN];
            rc = read_string(v, "relay.name", buf, sizeof(buf), err);
            if (rc == 0 && p2m_label_normalize(buf, strlen(buf), r->name, lerr) != 0)
                rc = p2m_err(err, "relay.name: %s", lerr);
        } else if (strcmp(key, "ports") == 0) {
            char buf[32], perr[P2M_ERR_LEN];
            rc = read_string(v, "relay.ports", buf, sizeof(buf), err);
            if (rc == 0 && p2m_port_range_parse(buf, &r->ports, perr) != 0)
                rc = p2m_err(err, "relay.ports: %s", perr);
            r->ports_given = rc == 0;
        } else if (strcmp(key, "listen") == 0) {
            p2m_hostport_t hp;
            char buf[P2M_HOST_MAX + 8];
            /* "" means every address. */
            rc = json_is_string(v) && json_string_length(v) == 0
                     ? (r->listen[0] = '\0', 0)
                     : read_string(v, "relay.listen", r->listen, sizeof(r->listen), err);
            /* Validate the address with the host:port parser by giving it a dummy port. */
            if (rc == 0 && r->listen[0] != '\0') {
                snprintf(buf, sizeof(buf), strchr(r->listen, ':') ? "[%s]:1" : "%s:1", r->listen);
                if (p2m_hostport_parse(buf, &hp, NULL) != 0)
                    rc = p2m_err(err, "relay.listen: expected an address");
            }
        } else if (strcmp(key, "wait_timeout") == 0) {
            rc = read_seconds(v, "relay.wait_timeout", &r->wait_timeout, err);
        } else if (strcmp(key, "first_byte_timeout") == 0) {
            rc = read_seconds(v, "relay.first_byte_timeout", &r->first_byte_timeout, err);
        } else if (strcmp(key, "idle_timeout") == 0) {
            rc = read_seconds(v, "relay.idle_timeout", &r->idle_timeout, err);
        } else if (strcmp(key, "max_conns_per_addr") == 0) {
            rc = read_count(v, "relay.max_conns_per_addr", &r->max_conns_per_addr, err);
        } else if (strcmp(key, "sni_listen") == 0) {
            r->sni_enabled = !json_is_null(v);
            rc = r->sni_enabled ? read_hostport(v, "relay.sni_listen", &r->sni_listen, err) : 0;
        } else if (strcmp(key, "sni_registrar") == 0) {
            rc = read_hostport(v, "relay.sni_registrar", &r->sni_registrar, err);
            if (rc == 0 && r->sni_registrar.host[0] == '\0')
                rc = p2m_err(err, "relay.sni_registrar: expected HOST:PORT with a host");
        } else {
            rc = p2m_err(err, "relay.%s: unknown key", printable_key(key, kbuf, sizeof(kbuf)));
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* redis as an object: {"address": A} or {"sentinels": [...], "master": M}, with the optional
 * credentials and WAIT settings. Password files are read here, so that --check-config finds a bad
 * one; their content never reaches err. */
static int parse_redis(json_t *obj, p2m_config_t *cfg, char *err)
{
    p2m_redis_addr_t *r = &cfg->redis;
    const char *key;
    char kbuf[128], rerr[P2M_ERR_LEN], path[P2M_PATH_MAX + 1];
    json_t *v;
    int have_wait = 0, have_address = 0;

    memset(r, 0, sizeof(*r));
    json_object_foreach(obj, key, v)
    {
        int rc = 0;
        if (strcmp(key, "address") == 0) {
            rc = read_string(v, "redis.address", cfg->redis_str, sizeof(cfg->redis_str), err);
            p2m_redis_addr_t a;
            if (rc == 0 && p2m_redis_addr_parse(cfg->redis_str, &a, rerr) != 0)
                rc = p2m_err(err, "redis.address: %s", rerr);
            if (rc == 0) {
                r->is_unix = a.is_unix;
                memcpy(r->path, a.path, sizeof(r->path));
                r->tcp = a.tcp;
                have_address = 1;
            }
        } else if (strcmp(key, "sentinels") == 0) {
            size_t i;
            json_t *e;
            if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > P2M_SENTINELS_MAX)
                return p2m_err(err, "redis.sentinels: expected 1 to %d HOST:PORT strings", P2M_SENTINELS_MAX);
            json_array_foreach(v, i, e)
            {
                char buf[P2M_HOST_MAX + 16], ipath[48];
                snprintf(ipath, sizeof(ipath), "redis.sentinels[%zu]", i);
                if (read_string(e, ipath, buf, sizeof(buf), err) != 0)
                    return -1;
                if (p2m_hostport_parse(buf, &r->sentinels[i], rerr) != 0 || r->sentinels[i].host[0] == '\0')
                    return p2m_err(err, "%s: expected HOST:PORT", ipath);
            }
            r->nsentinels = (unsigned)json_array_size(v);
        } else if (strcmp(key, "master") == 0) {
            rc = read_string(v, "redis.master", r->master, sizeof(r->master), err);
            for (const char *c = r->master; rc == 0 && *c != '\0'; c++)
                if (*c <= 0x20 || *c >= 0x7f)
                    rc = p2m_err(err, "redis.master: expected printable ASCII without spaces");
        } else if (strcmp(key, "user") == 0) {
            rc = read_string(v, "redis.user", r->user, sizeof(r->user), err);
            for (const char *c = r->user; rc == 0 && *c != '\0'; c++)
                if (*c <= 0x20 || *c >= 0x7f)
                    rc = p2m_err(err, "redis.user: expected printable ASCII without spaces");
        } else if (strcmp(key, "password_file") == 0) {
            rc = read_string(v, "redis.password_file", path, sizeof(path), err);
            if (rc == 0 && p2m_redis_password_read(path, r->password, rerr) != 0)
                rc = p2m_err(err, "redis.password_file: %s", rerr);
        } else if (strcmp(key, "sentinel_password_file") == 0) {
            rc = read_string(v, "redis.sentinel_password_file", path, sizeof(path), err);
            if (rc == 0 && p2m_redis_password_read(path, r->sentinel_password, rerr) != 0)
                rc = p2m_err(err, "redis.sentinel_password_file: %s", rerr);
        } else if (strcmp(key, "wait_replicas") == 0) {
            rc = read_range(v, "redis.wait_replicas", 0, P2M_REDIS_WAIT_MAX, "a number of replicas", &r->wait_replicas, err);
            have_wait = 1;
        } else if (strcmp(key, "wait_timeout_ms") == 0) {
            rc = read_range(v, "redis.wait_timeout_ms", 1, 60000, "milliseconds", &r->wait_timeout_ms, err);
        } else {
            rc = p2m_err(err, "redis.%s: unknown key", printable_key(key, kbuf, sizeof(kbuf)));
        }
        if (rc != 0)
            return -1;
    }
    if (have_address == (r->nsentinels > 0))
        return p2m_err(err, "redis: expected either address or sentinels");
    if (r->nsentinels > 0 && r->master[0] == '\0')
        return p2m_err(err, "redis.master: needed with sentinels");
    if (r->nsentinels == 0 && (r->master[0] != '\0' || r->sentinel_password[0] != '\0'))
        return p2m_err(err, "redis: master and sentinel_password_file need sentinels");
    if (r->user[0] != '\0' && r->password[0] == '\0')
        return p2m_err(err, "redis.user: needs password_file");
    if (!have_wait)
        r->wait_replicas = r->nsentinels > 0 ? 1 : 0;
    if (r->wait_timeout_ms == 0)
        r->wait_timeout_ms = P2M_REDIS_WAIT_TIMEOUT_MS_DEFAULT;
    /* For messages: the address as written, or the master the Sentinels name. */
    if (r->nsentinels > 0)
        snprintf(cfg->redis_str, sizeof(cfg->redis_str), "sentinel:%s", r->master);
    return 0;
}

int p2m_config_parse(const char *text, size_t len, p2m_config_t *cfg, char *err)
{
    json_error_t jerr;
    json_t *root = NULL;
    int ret = -1;

    if (len > CONFIG_MAX_BYTES) {
        p2m_err(err, "config larger than %d bytes", CONFIG_MAX_BYTES);
        goto Exit;
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        char quoted[128];
        p2m_err(err, "invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                printable_key(jerr.text, quoted, sizeof(quoted)));
        goto Exit;
    }
    if (!json_is_object(root)) {
        p2m_err(err, "config: expected a JSON object at the top");
        goto Exit;
    }
    const char *key;
    char kbuf[128];
    json_t *v;
    json_object_foreach(root, key, v)
    {
        int rc;
        if (strcmp(key, "domain") == 0) {
            char buf[P2M_DOMAIN_MAX + 1], derr[P2M_ERR_LEN];
            rc = read_string(v, "domain", buf, sizeof(buf), err);
            if (rc == 0 && p2m_domain_normalize(buf, cfg->domain, derr) != 0)
                rc = p2m_err(err, "%s", derr);
        } else if (strcmp(key, "public_address") == 0) {
            p2m_hostport_t hp;
            char buf[P2M_HOST_MAX + 8];
            rc = read_string(v, "public_address", cfg->public_address, sizeof(cfg->public_address), err);
            if (rc == 0) {
                snprintf(buf, sizeof(buf), strchr(cfg->public_address, ':') ? "[%s]:1" : "%s:1", cfg->public_address);
                if (p2m_hostport_parse(buf, &hp, NULL) != 0)
                    rc = p2m_err(err, "public_address: expected a host name or address");
            }
        } else if (strcmp(key, "redis") == 0 && json_is_object(v)) {
            rc = parse_redis(v, cfg, err);
        } else if (strcmp(key, "redis") == 0) {
            char rerr[P2M_ERR_LEN];
            rc = read_string(v, "redis", cfg->redis_str, sizeof(cfg->redis_str), err);
            if (rc == 0 && p2m_redis_addr_parse(cfg->redis_str, &cfg->redis, rerr) != 0)
                rc = p2m_err(err, "redis: %s", rerr);
        } else if (strcmp(key, "state_dir") == 0) {
            rc = read_string(v, "state_dir", cfg->state_dir, sizeof(cfg->state_dir), err);
        } else if (strcmp(key, "log_level") == 0) {
            char buf[16];
            rc = read_string(v, "log_level", buf, sizeof(buf), err);
            if (rc == 0 && p2m_log_level_parse(buf, &cfg->log_level) != 0)
                rc = p2m_err(err, "log_level: expected debug, info, warn or error");
        } else if (strcmp(key, "registrar") == 0) {
            rc = parse_registrar(v, &cfg->registrar, err);
        } else if (strcmp(key, "relay") == 0) {
            rc = parse_relay(v, &cfg->relay, err);
        } else if (strcmp(key, "dns") == 0) {
            rc = json_is_null(v) ? (cfg->dns.enabled = 0, 0) : parse_dns(v, &cfg->dns, err);
        } else {
            rc = p2m_err(err, "%s: unknown key", printable_key(key, kbuf, sizeof(kbuf)));
        }
        if (rc != 0)
            goto Exit;
    }
    if (json_object_get(json_object_get(root, "registrar"), "url") == NULL)
        derive_url(cfg);
    /* Checked once the domain is known, wherever it stands in the file: a name under DOMAIN would
     * take a label's requests (or a nested name's, which *.DOMAIN does not cover) for the registrar. */
    size_t dlen = strlen(cfg->domain);
    for (unsigned i = 0; i < cfg->registrar.nnames; i++) {
        const char *n = cfg->registrar.names[i];
        size_t nlen = strlen(n);
        if (strcmp(n, cfg->domain) == 0 ||
            (nlen > dlen && n[nlen - dlen - 1] == '.' && strcmp(n + nlen - dlen, cfg->domain) == 0)) {
            p2m_err(err, "registrar.names[%u]: %s is the domain or under it, where names are labels", i, n);
            goto Exit;
        }
    }
    /* The names kept (LABEL.lan.DOMAIN, LABEL.direct.DOMAIN) must be inside the zone updated. */
    if (cfg->dns.enabled) {
        size_t zlen = strlen(cfg->dns.zone);
        if (strcmp(cfg->domain, cfg->dns.zone) != 0 &&
            !(dlen > zlen && cfg->domain[dlen - zlen - 1] == '.' && strcmp(cfg->domain + dlen - zlen, cfg->dns.zone) == 0)) {
            p2m_err(err, "dns.zone: %s does not hold the domain %s", cfg->dns.zone, cfg->domain);
            goto Exit;
        }
    }
    /* The relay passes the registrar's names to its PROXY listener unless told another address;
     * a listener on every address is reached on loopback. */
    if (cfg->relay.sni_enabled && cfg->relay.sni_registrar.port == 0) {
        if (!cfg->registrar.proxy_enabled) {
            p2m_err(err, "relay.sni_listen: needs relay.sni_registrar or registrar.proxy_listen, where the registrar's own "
                         "names go");
            goto Exit;
        }
        cfg->relay.sni_registrar = cfg->registrar.proxy_listen;
        if (cfg->relay.sni_registrar.host[0] == '\0')
            snprintf(cfg->relay.sni_registrar.host, sizeof(cfg->relay.sni_registrar.host), "127.0.0.1");
    }
    ret = 0;
Exit:
    json_decref(root);
    return ret;
}

int p2m_config_load(const char *path, p2m_config_t *cfg, char *err)
{
    FILE *f = NULL;
    char *buf = NULL;
    int ret = -1;
    char perr[P2M_ERR_LEN];

    if ((f = fopen(path, "rb")) == NULL) {
        p2m_err(err, "%s: %s", path, strerror(errno));
        goto Exit;
    }
    if ((buf = malloc(CONFIG_MAX_BYTES + 1)) == NULL) {
        p2m_err(err, "%s: out of memory", path);
        goto Exit;
    }
    size_t n = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
    if (ferror(f)) {
        p2m_err(err, "%s: read error", path);
        goto Exit;
    }
    if (p2m_config_parse(buf, n, cfg, perr) != 0) {
        p2m_err(err, "%s: %s", path, perr);
        goto Exit;
    }
    ret = 0;
Exit:
    free(buf);
    if (f != NULL)
        fclose(f);
    return ret;
}
