/* Unit tests for lib/config.c against lib/include/p2m/config.h: defaults, a file that overrides
 * every key, and hostile files whose errors must name the key path (or the line and column). */

#include "check.h"
#include "p2m/config.h"
#include "p2m/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MIB (1024 * 1024)

/* Parses len bytes from a heap block of exactly that size (no NUL after it), over defaults. */
static int parse_exact(const char *json, size_t len, p2m_config_t *cfg, char *err)
{
    char *p = check_exact_copy(json, len);
    memset(cfg, 0, sizeof(*cfg));
    p2m_config_defaults(cfg);
    err[0] = '\0';
    int rc = p2m_config_parse(p, len, cfg, err);
    free(p);
    return rc;
}

static int parse_str(const char *json, p2m_config_t *cfg, char *err)
{
    return parse_exact(json, strlen(json), cfg, err);
}

/* "https://HOST" optionally followed by ":DIGITS" and nothing else */
static int is_default_url(const char *url, const char *host)
{
    size_t hl = strlen(host);
    if (strncmp(url, "https://", 8) != 0 || strncmp(url + 8, host, hl) != 0)
        return 0;
    const char *p = url + 8 + hl;
    if (*p == '\0')
        return 1;
    if (*p++ != ':' || *p == '\0')
        return 0;
    for (; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

static void test_defaults(void)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN] = "", dom[P2M_DOMAIN_MAX + 1];
    memset(&cfg, 0x5a, sizeof(cfg));
    p2m_config_defaults(&cfg);

    CHECK_CTX("defaults");
    CHECK_EQ_STR(cfg.domain, "pipe2me.localhost");
    if (CHECK_RC(p2m_domain_normalize(cfg.domain, dom, err), 0, err))
        CHECK_EQ_STR(dom, cfg.domain);
    CHECK_EQ_INT(cfg.relay.ports.lo, 20000);
    CHECK_EQ_INT(cfg.relay.ports.hi, 29999);
    CHECK_EQ_INT(cfg.relay.ports_given, 0);
    CHECK_EQ_INT(cfg.log_level, P2M_LOG_INFO);
    CHECK_MSG(is_default_url(cfg.registrar.url, "pipe2me.localhost"), "registrar.url %s is not https://DOMAIN[:PORT]",
              check_str(cfg.registrar.url));
    CHECK_MSG(cfg.registrar.listen.port != 0, "registrar.https port is 0");
    CHECK_MSG(!cfg.registrar.http_enabled || cfg.registrar.http.port != 0, "registrar.http enabled with port 0");
    CHECK(cfg.registrar.preconnect_timeout > 0);
    CHECK(cfg.registrar.consumer_ttl > 0);
    CHECK_EQ_INT(cfg.registrar.consumer_ports_per_address, 0); /* per-service by default */
    CHECK(cfg.registrar.session_ttl > 0);
    CHECK(cfg.registrar.auth_fail_limit > 0);
    CHECK(cfg.registrar.auth_fail_window > 0);
    CHECK_EQ_INT(cfg.registrar.auth_fail_limit, 5);
    CHECK_EQ_INT(cfg.registrar.auth_fail_window, 86400);
    CHECK_EQ_INT(cfg.registrar.auth_backoff_max, 900);
    CHECK(cfg.relay.wait_timeout > 0);
    CHECK(cfg.relay.idle_timeout > 0);
    CHECK(cfg.relay.max_conns_per_addr > 0);
    CHECK(cfg.state_dir[0] != '\0');
    /* relay.name defaults to the host name: a non-empty string that fits */
    CHECK(memchr(cfg.relay.name, '\0', sizeof(cfg.relay.name)) != NULL && cfg.relay.name[0] != '\0');
    CHECK(memchr(cfg.state_dir, '\0', sizeof(cfg.state_dir)) != NULL);
    CHECK(memchr(cfg.public_address, '\0', sizeof(cfg.public_address)) != NULL);
    CHECK(memchr(cfg.relay.listen, '\0', sizeof(cfg.relay.listen)) != NULL);
    /* redis_str is what the redis address was written as: it parses back to the same address */
    p2m_redis_addr_t ra;
    if (CHECK(memchr(cfg.redis_str, '\0', sizeof(cfg.redis_str)) != NULL) &&
        CHECK_RC(p2m_redis_addr_parse(cfg.redis_str, &ra, err), 0, err)) {
        if (CHECK_EQ_INT(!!ra.is_unix, !!cfg.redis.is_unix)) {
            if (ra.is_unix) {
                CHECK_EQ_STR(ra.path, cfg.redis.path);
            } else {
                CHECK_EQ_STR(ra.tcp.host, cfg.redis.tcp.host);
                CHECK_EQ_INT(ra.tcp.port, cfg.redis.tcp.port);
            }
        }
    }

    /* "{}" changes nothing */
    p2m_config_t empty;
    CHECK_CTX("parse {}");
    if (CHECK_RC(parse_str("{}", &empty, err), 0, err)) {
        CHECK_EQ_STR(empty.domain, cfg.domain);
        CHECK_EQ_STR(empty.registrar.url, cfg.registrar.url);
        CHECK_EQ_STR(empty.redis_str, cfg.redis_str);
        CHECK_EQ_INT(empty.relay.ports.lo, cfg.relay.ports.lo);
        CHECK_EQ_INT(empty.relay.ports.hi, cfg.relay.ports.hi);
        CHECK_EQ_INT(empty.relay.ports_given, 0);
        CHECK_EQ_INT(empty.registrar.session_ttl, cfg.registrar.session_ttl);
        CHECK_EQ_INT(empty.relay.idle_timeout, cfg.relay.idle_timeout);
    }
    CHECK_CTX(NULL);
}

static const char full_json[] = "{\n"
                                "  \"domain\": \"Example.COM\",\n"
                                "  \"public_address\": \"203.0.113.7\",\n"
                                "  \"redis\": \"unix:/run/redis/redis.sock\",\n"
                                "  \"state_dir\": \"/var/lib/pipe2me\",\n"
                                "  \"log_level\": \"debug\",\n"
                                "  \"registrar\": {\n"
                                "    \"https\": \"0.0.0.0:8443\",\n"
                                "    \"http\": \"[::1]:8080\",\n"
                                "    \"url\": \"https://example.com:8443\",\n"
                                "    \"preconnect_timeout\": 11,\n"
                                "    \"consumer_ttl\": 12,\n"
                                "    \"alive_window\": 45,\n"
                                "    \"consumer_ports\": \"per-address\",\n"
                                "    \"session_ttl\": 13,\n"
                                "    \"auth_fail_limit\": 14,\n"
                                "    \"auth_fail_window\": 15,\n"
                                "    \"auth_backoff_max\": 16,\n"
                                "    \"cert_lifetime\": 3600,\n"
                                "    \"ca_cert\": \"/etc/pipe2me/ca.pem\",\n"
                                "    \"ca_key\": \"/etc/pipe2me/ca-key.pem\",\n"
                                "    \"cert\": \"/etc/pipe2me/wildcard.pem\",\n"
                                "    \"key\": \"/etc/pipe2me/wildcard-key.pem\"\n"
                                "  },\n"
                                "  \"relay\": {\n"
                                "    \"name\": \"relay-1\",\n"
                                "    \"ports\": \"30000-30099\",\n"
                                "    \"listen\": \"127.0.0.1\",\n"
                                "    \"wait_timeout\": 16,\n"
                                "    \"idle_timeout\": 17,\n"
                                "    \"max_conns_per_addr\": 18\n"
                                "  }\n"
                                "}\n";

static void check_full(const p2m_config_t *cfg)
{
    CHECK_EQ_STR(cfg->domain, "example.com");
    CHECK_EQ_STR(cfg->public_address, "203.0.113.7");
    CHECK_EQ_INT(!!cfg->redis.is_unix, 1);
    CHECK_EQ_STR(cfg->redis.path, "/run/redis/redis.sock");
    CHECK_EQ_STR(cfg->redis_str, "unix:/run/redis/redis.sock");
    CHECK_EQ_STR(cfg->state_dir, "/var/lib/pipe2me");
    CHECK_EQ_INT(cfg->log_level, P2M_LOG_DEBUG);
    CHECK_EQ_STR(cfg->registrar.listen.host, "0.0.0.0");
    CHECK_EQ_INT(cfg->registrar.listen.port, 8443);
    CHECK_EQ_INT(!!cfg->registrar.http_enabled, 1);
    CHECK_EQ_STR(cfg->registrar.http.host, "::1");
    CHECK_EQ_INT(cfg->registrar.http.port, 8080);
    CHECK_EQ_STR(cfg->registrar.url, "https://example.com:8443");
    CHECK_EQ_INT(cfg->registrar.preconnect_timeout, 11);
    CHECK_EQ_INT(cfg->registrar.consumer_ttl, 12);
    CHECK_EQ_INT(cfg->registrar.alive_window, 45);
    CHECK_EQ_INT(cfg->registrar.consumer_ports_per_address, 1);
    CHECK_EQ_INT(cfg->registrar.session_ttl, 13);
    CHECK_EQ_INT(cfg->registrar.auth_fail_limit, 14);
    CHECK_EQ_INT(cfg->registrar.auth_fail_window, 15);
    CHECK_EQ_INT(cfg->registrar.auth_backoff_max, 16);
    CHECK_EQ_INT(cfg->registrar.cert_lifetime, 3600);
    CHECK_EQ_STR(cfg->registrar.ca_cert, "/etc/pipe2me/ca.pem");
    CHECK_EQ_STR(cfg->registrar.ca_key, "/etc/pipe2me/ca-key.pem");
    CHECK_EQ_STR(cfg->registrar.cert, "/etc/pipe2me/wildcard.pem");
    CHECK_EQ_STR(cfg->registrar.key, "/etc/pipe2me/wildcard-key.pem");
    CHECK_EQ_STR(cfg->relay.name, "relay-1");
    CHECK_EQ_INT(cfg->relay.ports.lo, 30000);
    CHECK_EQ_INT(cfg->relay.ports.hi, 30099);
    CHECK_EQ_INT(cfg->relay.ports_given, 1);
    CHECK_EQ_STR(cfg->relay.listen, "127.0.0.1");
    CHECK_EQ_INT(cfg->relay.wait_timeout, 16);
    CHECK_EQ_INT(cfg->relay.idle_timeout, 17);
    CHECK_EQ_INT(cfg->relay.max_conns_per_addr, 18);
}

/* The SNI port and the registrar's PROXY listener: defaults, the relay's registrar address derived
 * from proxy_listen, addresses normalised. */
static void test_sni(void)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN] = "";
    CHECK_CTX("sni: defaults");
    if (CHECK_RC(parse_str("{}", &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.relay.sni_enabled, 0);
        CHECK_EQ_INT(cfg.registrar.proxy_enabled, 0);
        CHECK_EQ_INT(cfg.registrar.nproxy_from, 2);
        CHECK_EQ_STR(cfg.registrar.proxy_from[0], "127.0.0.1");
        CHECK_EQ_STR(cfg.registrar.proxy_from[1], "::1");
    }
    CHECK_CTX("sni: the relay's registrar address from proxy_listen");
    if (CHECK_RC(parse_str("{\"registrar\": {\"proxy_listen\": \":8444\", \"proxy_from\": [\"::ffff:10.0.0.7\", \"2001:DB8::1\"]},"
                           " \"relay\": {\"sni_listen\": \"0.0.0.0:443\"}}",
                           &cfg, err),
                 0, err)) {
        CHECK_EQ_INT(cfg.relay.sni_enabled, 1);
        CHECK_EQ_STR(cfg.relay.sni_listen.host, "0.0.0.0");
        CHECK_EQ_INT(cfg.relay.sni_listen.port, 443);
        CHECK_EQ_STR(cfg.relay.sni_registrar.host, "127.0.0.1");
        CHECK_EQ_INT(cfg.relay.sni_registrar.port, 8444);
        CHECK_EQ_INT(cfg.registrar.nproxy_from, 2);
        CHECK_EQ_STR(cfg.registrar.proxy_from[0], "10.0.0.7");
        CHECK_EQ_STR(cfg.registrar.proxy_from[1], "2001:db8::1");
    }
    CHECK_CTX("sni: an explicit registrar address wins");
    if (CHECK_RC(parse_str("{\"registrar\": {\"proxy_listen\": \"10.0.0.1:8444\"},"
                           " \"relay\": {\"sni_listen\": \":443\", \"sni_registrar\": \"10.0.0.2:9444\"}}",
                           &cfg, err),
                 0, err)) {
        CHECK_EQ_STR(cfg.relay.sni_registrar.host, "10.0.0.2");
        CHECK_EQ_INT(cfg.relay.sni_registrar.port, 9444);
    }
    CHECK_CTX("sni: null turns both off");
    if (CHECK_RC(parse_str("{\"registrar\": {\"proxy_listen\": null}, \"relay\": {\"sni_listen\": null}}", &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.relay.sni_enabled, 0);
        CHECK_EQ_INT(cfg.registrar.proxy_enabled, 0);
    }
    CHECK_CTX(NULL);
}

static void test_full(void)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN] = "";
    CHECK_CTX("full config");
    if (CHECK_RC(parse_str(full_json, &cfg, err), 0, err))
        check_full(&cfg);

    /* partial nested objects keep their siblings' defaults */
    p2m_config_t def;
    p2m_config_defaults(&def);
    CHECK_CTX("relay.wait_timeout alone");
    if (CHECK_RC(parse_str("{\"relay\": {\"wait_timeout\": 5}}", &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.relay.wait_timeout, 5);
        CHECK_EQ_INT(cfg.relay.ports.lo, def.relay.ports.lo);
        CHECK_EQ_INT(cfg.relay.ports.hi, def.relay.ports.hi);
        CHECK_EQ_INT(cfg.relay.idle_timeout, def.relay.idle_timeout);
        CHECK_EQ_STR(cfg.domain, def.domain);
    }
    CHECK_CTX("registrar.http null disables plain HTTP");
    if (CHECK_RC(parse_str("{\"registrar\": {\"http\": null}}", &cfg, err), 0, err))
        CHECK_EQ_INT(cfg.registrar.http_enabled, 0);
    CHECK_CTX("redis tcp");
    if (CHECK_RC(parse_str("{\"redis\": \"127.0.0.1:6379\"}", &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.redis.is_unix, 0);
        CHECK_EQ_STR(cfg.redis.tcp.host, "127.0.0.1");
        CHECK_EQ_INT(cfg.redis.tcp.port, 6379);
        CHECK_EQ_STR(cfg.redis_str, "127.0.0.1:6379");
    }
    CHECK_CTX("relay.ports single port");
    if (CHECK_RC(parse_str("{\"relay\": {\"ports\": \"20000\"}}", &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.relay.ports.lo, 20000);
        CHECK_EQ_INT(cfg.relay.ports.hi, 20000);
    }

    /* config.h: relay.listen "" means all addresses */
    CHECK_CTX("relay.listen empty");
    if (CHECK_RC(parse_str("{\"relay\": {\"listen\": \"\"}}", &cfg, err), 0, err))
        CHECK_EQ_STR(cfg.relay.listen, "");
    CHECK_CTX("relay.listen IPv6");
    if (CHECK_RC(parse_str("{\"relay\": {\"listen\": \"::1\"}}", &cfg, err), 0, err))
        CHECK_EQ_STR(cfg.relay.listen, "::1");

    /* registrar.name and registrar.pods_to: a label (lower-cased); an https:// URL without
     * trailing slashes, null for none */
    {
        CHECK_CTX("registrar.name and pods_to");
        p2m_config_defaults(&cfg);
        CHECK(cfg.registrar.name[0] != '\0');
        CHECK_EQ_STR(cfg.registrar.pods_to, "");
        const char *j = "{\"registrar\": {\"name\": \"RegA\", \"pods_to\": \"https://b.example:8443/p2m//\"}}";
        if (CHECK_RC(p2m_config_parse(j, strlen(j), &cfg, err), 0, err)) {
            CHECK_EQ_STR(cfg.registrar.name, "rega");
            CHECK_EQ_STR(cfg.registrar.pods_to, "https://b.example:8443/p2m");
        }
        j = "{\"registrar\": {\"pods_to\": null}}";
        if (CHECK_RC(p2m_config_parse(j, strlen(j), &cfg, err), 0, err))
            CHECK_EQ_STR(cfg.registrar.pods_to, "");
        CHECK_CTX(NULL);
    }

    /* registrar.url defaults to https://DOMAIN[:PORT] of the file's domain, not the default's */
    CHECK_CTX("url follows domain");
    if (CHECK_RC(parse_str("{\"domain\": \"example.org\"}", &cfg, err), 0, err))
        CHECK_MSG(is_default_url(cfg.registrar.url, "example.org"), "registrar.url %s", check_str(cfg.registrar.url));
    CHECK_CTX("url follows domain and https port");
    if (CHECK_RC(parse_str("{\"domain\": \"example.org\", \"registrar\": {\"https\": \":9443\"}}", &cfg, err), 0, err))
        CHECK_EQ_STR(cfg.registrar.url, "https://example.org:9443");
    CHECK_CTX("url on port 443 has no port");
    if (CHECK_RC(parse_str("{\"domain\": \"example.org\", \"registrar\": {\"https\": \":443\"}}", &cfg, err), 0, err))
        CHECK_EQ_STR(cfg.registrar.url, "https://example.org");

    /* limits: 253-byte domain ok; exactly 1 MiB ok */
    char dom253[400];
    snprintf(dom253, sizeof(dom253), "{\"domain\": \"%.63s.%.63s.%.63s.%.61s\"}",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
             "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
             "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
    CHECK_CTX("253-byte domain");
    if (CHECK_RC(parse_str(dom253, &cfg, err), 0, err))
        CHECK_EQ_INT(strlen(cfg.domain), 253);

    char *big = malloc(MIB);
    memset(big, ' ', MIB);
    big[0] = '{';
    big[MIB - 1] = '}';
    CHECK_CTX("exactly 1 MiB");
    CHECK_RC(parse_exact(big, MIB, &cfg, err), 0, err);
    free(big);
    CHECK_CTX(NULL);
}

struct err_row {
    const char *json;
    size_t len;       /* 0: strlen */
    const char *want; /* must appear in err */
    const char *want2;
};

static void run_err_rows(const char *table, const struct err_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct err_row *r = &rows[i];
        size_t len = r->len != 0 ? r->len : strlen(r->json);
        p2m_config_t cfg;
        char err[P2M_ERR_LEN];
        CHECK_CTX("%s row %zu %s", table, i, check_bytes(r->json, len));
        int rc = parse_exact(r->json, len, &cfg, err);
        if (!CHECK_RC(rc, -1, err))
            continue;
        CHECK_MSG(err[0] != '\0', "err is empty on failure");
        CHECK_MSG(memchr(err, '\n', strlen(err)) == NULL, "err %s is more than one line", check_str(err));
        if (r->want != NULL)
            CHECK_MSG(strstr(err, r->want) != NULL, "err %s does not name %s", check_str(err), check_str(r->want));
        if (r->want2 != NULL)
            CHECK_MSG(strstr(err, r->want2) != NULL, "err %s does not say %s", check_str(err), check_str(r->want2));
    }
    CHECK_CTX(NULL);
}

static void test_errors(void)
{
    static char dom254[400], url513[700], state108[300], pub256[400], name64[200];
    snprintf(dom254, sizeof(dom254), "{\"domain\": \"%.63s.%.63s.%.63s.%.62s\"}",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
             "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
             "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
    char longs[600];
    memset(longs, 'x', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    snprintf(url513, sizeof(url513), "{\"registrar\": {\"url\": \"https://%.*s\"}}", P2M_URL_MAX + 1 - 8, longs);
    snprintf(state108, sizeof(state108), "{\"state_dir\": \"/%.*s\"}", P2M_PATH_MAX, longs);
    snprintf(name64, sizeof(name64), "{\"relay\": {\"name\": \"%.*s\"}}", P2M_LABEL_MAX + 1, longs);
    snprintf(pub256, sizeof(pub256), "{\"public_address\": \"%.*s\"}", P2M_HOST_MAX + 1, longs);

    const struct err_row rows[] = {
        /* unknown keys */
        {"{\"bogus\": 1}", 0, "bogus", NULL},
        {"{\"Domain\": \"example.com\"}", 0, "Domain", NULL},
        {"{\"relay\": {\"bogus\": 1}}", 0, "relay.bogus", NULL},
        {"{\"registrar\": {\"bogus\": 1}}", 0, "registrar.bogus", NULL},
        {"{\"registrar\": {\"listen\": \"0.0.0.0:443\"}}", 0, "registrar.listen", NULL},
        {"{\"relay\": {\"ports\": \"20000-20001\", \"port\": 1}}", 0, "relay.port", NULL},
        /* wrong types */
        {"{\"domain\": 5}", 0, "domain", NULL},
        {"{\"domain\": null}", 0, "domain", NULL},
        {"{\"domain\": [\"example.com\"]}", 0, "domain", NULL},
        {"{\"public_address\": 5}", 0, "public_address", NULL},
        {"{\"redis\": 6379}", 0, "redis", NULL},
        {"{\"state_dir\": 5}", 0, "state_dir", NULL},
        {"{\"log_level\": 1}", 0, "log_level", NULL},
        {"{\"registrar\": []}", 0, "registrar", NULL},
        {"{\"registrar\": \"x\"}", 0, "registrar", NULL},
        {"{\"relay\": 5}", 0, "relay", NULL},
        {"{\"registrar\": {\"https\": 443}}", 0, "registrar.https", NULL},
        {"{\"registrar\": {\"http\": 80}}", 0, "registrar.http", NULL},
        {"{\"registrar\": {\"url\": 5}}", 0, "registrar.url", NULL},
        {"{\"relay\": {\"ports\": 12}}", 0, "relay.ports", NULL},
        {"{\"relay\": {\"ports\": [20000, 29999]}}", 0, "relay.ports", NULL},
        {"{\"relay\": {\"listen\": 5}}", 0, "relay.listen", NULL},
        {"{\"relay\": {\"name\": 5}}", 0, "relay.name", NULL},
        /* bad values */
        {"{\"domain\": \"\"}", 0, "domain", NULL},
        {"{\"domain\": \"-a.com\"}", 0, "domain", NULL},
        {"{\"domain\": \"a-.com\"}", 0, "domain", NULL},
        {"{\"domain\": \"a..b\"}", 0, "domain", NULL},
        {"{\"domain\": \".a.b\"}", 0, "domain", NULL},
        {"{\"domain\": \"a_b.com\"}", 0, "domain", NULL},
        {"{\"domain\": \"a b.com\"}", 0, "domain", NULL},
        {"{\"domain\": \"\\u00e9.com\"}", 0, "domain", NULL},
        {dom254, 0, "domain", NULL},
        {pub256, 0, "public_address", NULL},
        {"{\"public_address\": \"a b\"}", 0, "public_address", NULL},
        {"{\"redis\": \"unix:\"}", 0, "redis", NULL},
        {"{\"redis\": \"localhost:0\"}", 0, "redis", NULL},
        {"{\"redis\": \"\"}", 0, "redis", NULL},
        {state108, 0, "state_dir", NULL},
        {"{\"log_level\": \"verbose\"}", 0, "log_level", NULL},
        {"{\"log_level\": \"\"}", 0, "log_level", NULL},
        {"{\"registrar\": {\"https\": \"host:0\"}}", 0, "registrar.https", NULL},
        {"{\"registrar\": {\"https\": \"[::1\"}}", 0, "registrar.https", NULL},
        {"{\"registrar\": {\"http\": \"x:99999\"}}", 0, "registrar.http", NULL},
        {url513, 0, "registrar.url", NULL},
        {"{\"relay\": {\"ports\": \"10-5\"}}", 0, "relay.ports", NULL},
        {"{\"relay\": {\"ports\": \"0-10\"}}", 0, "relay.ports", NULL},
        {"{\"relay\": {\"ports\": \"1-65536\"}}", 0, "relay.ports", NULL},
        {"{\"relay\": {\"ports\": \"\"}}", 0, "relay.ports", NULL},
        {"{\"relay\": {\"listen\": \"a b\"}}", 0, "relay.listen", NULL},
        {"{\"relay\": {\"listen\": \"[::1]\"}}", 0, "relay.listen", NULL},
        {"{\"relay\": {\"name\": \"\"}}", 0, "relay.name", NULL},
        {"{\"relay\": {\"name\": \"-relay\"}}", 0, "relay.name", NULL},
        {"{\"relay\": {\"name\": \"re lay\"}}", 0, "relay.name", NULL},
        {name64, 0, "relay.name", NULL},
        {"{\"registrar\": {\"name\": \"\"}}", 0, "registrar.name", NULL},
        {"{\"registrar\": {\"name\": \"a.b\"}}", 0, "registrar.name", NULL},
        {"{\"registrar\": {\"name\": 5}}", 0, "registrar.name", NULL},
        {"{\"registrar\": {\"pods_to\": \"http://b.example\"}}", 0, "registrar.pods_to", "https://"},
        {"{\"registrar\": {\"pods_to\": \"https://\"}}", 0, "registrar.pods_to", NULL},
        {"{\"registrar\": {\"pods_to\": \"https:///x\"}}", 0, "registrar.pods_to", NULL},
        {"{\"registrar\": {\"pods_to\": \"https://u@b.example\"}}", 0, "registrar.pods_to", NULL},
        {"{\"registrar\": {\"pods_to\": \"https://b.example/?x\"}}", 0, "registrar.pods_to", NULL},
        {"{\"registrar\": {\"pods_to\": \"https://b.example/#x\"}}", 0, "registrar.pods_to", NULL},
        {"{\"registrar\": {\"pods_to\": \"https://b .example\"}}", 0, "registrar.pods_to", NULL},
        {"{\"registrar\": {\"pods_to\": 5}}", 0, "registrar.pods_to", NULL},
        /* a hostile unknown key must not break the one-line err */
        {"{\"bo\\ngus\": 1}", 0, "bo", NULL},
        {"{\"relay\": {\"x\\r\\nlevel=error\": 1}}", 0, "relay.", NULL},
        {"{\"bogus\": 1, \"bogus\": 2}", 0, NULL, NULL},
        {"{\"domain\": \"a.com\", \"domain\": \"b.com\"}", 0, "domain", NULL},
        /* JSON that is not a config object */
        {"[]", 0, NULL, NULL},
        {"[{\"domain\": \"example.com\"}]", 0, NULL, NULL},
        {"5", 0, NULL, NULL},
        {"\"x\"", 0, NULL, NULL},
        {"null", 0, NULL, NULL},
        {"   ", 0, NULL, NULL},
        /* NUL bytes */
        {"{\"domain\": \"a\0b.com\"}", sizeof("{\"domain\": \"a\0b.com\"}") - 1, NULL, NULL},
        {"{}\0", 3, NULL, NULL},
        {"\0{}", 3, NULL, NULL},
        {"{\"domain\": \"a\\u0000b.com\"}", 0, NULL, NULL},
    };
    run_err_rows("error", rows, sizeof(rows) / sizeof(rows[0]));

    /* empty input: a zero length, which the row table uses for strlen */
    p2m_config_t cfg;
    char err[P2M_ERR_LEN];
    CHECK_CTX("empty input");
    if (CHECK_RC(parse_exact("", 0, &cfg, err), -1, err))
        CHECK(err[0] != '\0');

    /* certificates: lifetime bounds, files in pairs */
    const struct err_row certs[] = {
        {"{\"registrar\": {\"cert_lifetime\": 59}}", 0, "registrar.cert_lifetime", "60"},
        {"{\"registrar\": {\"cert_lifetime\": 0}}", 0, "registrar.cert_lifetime", NULL},
        {"{\"registrar\": {\"cert_lifetime\": -1}}", 0, "registrar.cert_lifetime", NULL},
        {"{\"registrar\": {\"cert_lifetime\": 34300801}}", 0, "registrar.cert_lifetime", NULL},
        {"{\"registrar\": {\"cert_lifetime\": 86400.5}}", 0, "registrar.cert_lifetime", NULL},
        {"{\"registrar\": {\"cert_lifetime\": \"30d\"}}", 0, "registrar.cert_lifetime", NULL},
        {"{\"registrar\": {\"cert_lifetime\": 9223372036854775807}}", 0, "registrar.cert_lifetime", NULL},
        {"{\"registrar\": {\"ca_cert\": \"/x/ca.pem\"}}", 0, "registrar.ca_key", "both"},
        {"{\"registrar\": {\"ca_key\": \"/x/ca-key.pem\"}}", 0, "registrar.ca_cert", "both"},
        {"{\"registrar\": {\"cert\": \"/x/c.pem\"}}", 0, "registrar.key", "both"},
        {"{\"registrar\": {\"key\": \"/x/k.pem\"}}", 0, "registrar.cert", "both"},
        {"{\"registrar\": {\"ca_cert\": \"\", \"ca_key\": \"/x\"}}", 0, "registrar.ca_cert", "empty"},
        {"{\"registrar\": {\"ca_cert\": 1, \"ca_key\": \"/x\"}}", 0, "registrar.ca_cert", "string"},
        {"{\"registrar\": {\"key\": \"/x\\u0000y\", \"cert\": \"/c\"}}", 0, "u0000", NULL},
    };
    run_err_rows("certs", certs, sizeof(certs) / sizeof(certs[0]));
    const struct err_row shares[] = {
        {"{\"registrar\": {\"consumer_ports_share\": 0}}", 0, "registrar.consumer_ports_share", "1 to 90"},
        {"{\"registrar\": {\"consumer_ports_share\": 91}}", 0, "registrar.consumer_ports_share", NULL},
        {"{\"registrar\": {\"consumer_ports_share\": 50.5}}", 0, "registrar.consumer_ports_share", NULL},
        {"{\"registrar\": {\"consumer_ports_share\": \"50\"}}", 0, "registrar.consumer_ports_share", NULL},
        {"{\"registrar\": {\"consumer_ports\": \"per-label\"}}", 0, "registrar.consumer_ports", "per-service"},
        {"{\"registrar\": {\"consumer_ports\": \"\"}}", 0, "registrar.consumer_ports", NULL},
        {"{\"registrar\": {\"consumer_ports\": \"Per-Service\"}}", 0, "registrar.consumer_ports", NULL},
        {"{\"registrar\": {\"consumer_ports\": \"per-service-and-more\"}}", 0, "registrar.consumer_ports", NULL},
        {"{\"registrar\": {\"consumer_ports\": 1}}", 0, "registrar.consumer_ports", "string"},
        {"{\"registrar\": {\"consumer_ports\": null}}", 0, "registrar.consumer_ports", NULL},
        /* below two relay heartbeats the mark could lapse while the pod is there */
        {"{\"registrar\": {\"alive_window\": 9}}", 0, "registrar.alive_window", "10 to 86400"},
        {"{\"registrar\": {\"alive_window\": 0}}", 0, "registrar.alive_window", NULL},
        {"{\"registrar\": {\"alive_window\": 86401}}", 0, "registrar.alive_window", NULL},
        {"{\"registrar\": {\"alive_window\": 30.5}}", 0, "registrar.alive_window", NULL},
        {"{\"registrar\": {\"alive_window\": \"30\"}}", 0, "registrar.alive_window", NULL},
        {"{\"registrar\": {\"alive_window\": null}}", 0, "registrar.alive_window", NULL},
    };
    run_err_rows("shares", shares, sizeof(shares) / sizeof(shares[0]));
    const struct err_row sni[] = {
        {"{\"registrar\": {\"proxy_from\": \"127.0.0.1\"}}", 0, "registrar.proxy_from", "list"},
        {"{\"registrar\": {\"proxy_from\": []}}", 0, "registrar.proxy_from", "1 to 16"},
        {"{\"registrar\": {\"proxy_from\": [\"1.1.1.1\",\"1.1.1.2\",\"1.1.1.3\",\"1.1.1.4\",\"1.1.1.5\",\"1.1.1.6\",\"1.1.1.7\","
         "\"1.1.1.8\",\"1.1.1.9\",\"1.1.1.10\",\"1.1.1.11\",\"1.1.1.12\",\"1.1.1.13\",\"1.1.1.14\",\"1.1.1.15\",\"1.1.1.16\","
         "\"1.1.1.17\"]}}",
         0, "registrar.proxy_from", NULL},
        {"{\"registrar\": {\"proxy_from\": [\"localhost\"]}}", 0, "registrar.proxy_from[0]", "IP address"},
        {"{\"registrar\": {\"proxy_from\": [\"127.0.0.1\", \" 10.0.0.1\"]}}", 0, "registrar.proxy_from[1]", NULL},
        {"{\"registrar\": {\"proxy_from\": [\"10.0.0.1:80\"]}}", 0, "registrar.proxy_from[0]", NULL},
        {"{\"registrar\": {\"proxy_from\": [\"10.0.0.0/8\"]}}", 0, "registrar.proxy_from[0]", NULL},
        {"{\"registrar\": {\"proxy_from\": [7]}}", 0, "registrar.proxy_from[0]", "string"},
        {"{\"registrar\": {\"proxy_from\": [\"\"]}}", 0, "registrar.proxy_from[0]", NULL},
        {"{\"registrar\": {\"proxy_listen\": \"127.0.0.1\"}}", 0, "registrar.proxy_listen", NULL},
        {"{\"registrar\": {\"proxy_listen\": 8444}}", 0, "registrar.proxy_listen", NULL},
        {"{\"relay\": {\"sni_listen\": \"127.0.0.1:0\"}}", 0, "relay.sni_listen", NULL},
        {"{\"relay\": {\"sni_listen\": \":8443\"}}", 0, "relay.sni_listen", "relay.sni_registrar or registrar.proxy_listen"},
        {"{\"relay\": {\"sni_listen\": \":8443\", \"sni_registrar\": \":8444\"}}", 0, "relay.sni_registrar", "host"},
        {"{\"relay\": {\"sni_registrar\": \"[::1\"}}", 0, "relay.sni_registrar", NULL},
    };
    run_err_rows("sni", sni, sizeof(sni) / sizeof(sni[0]));
    CHECK_CTX("cert_lifetime 60 and 34300800");
    CHECK_RC(parse_str("{\"registrar\": {\"cert_lifetime\": 60}}", &cfg, err), 0, err);
    CHECK_RC(parse_str("{\"registrar\": {\"cert_lifetime\": 34300800}}", &cfg, err), 0, err);
    CHECK_CTX(NULL);

    /* invalid JSON says where */
    const struct err_row syntax[] = {
        {"{\"domain\": }", 0, "line", "col"},
        {"{", 0, "line", "col"},
        {"{\"domain\": \"a.com\"", 0, "line", "col"},
        {"{\"domain\": \"a.com\"}}", 0, "line", "col"},
        {"{} x", 0, "line", "col"},
        {"{\"domain\": 'a.com'}", 0, "line", "col"},
        {"{\"relay\": {\"ports\": \"1-2\",}}", 0, "line", "col"},
        {"{\n\n  \"domain\": \"a.com\",\n  oops\n}", 0, "line", "col"},
        {"{\"domain\": \"\xff.com\"}", 0, NULL, NULL},
    };
    run_err_rows("syntax", syntax, sizeof(syntax) / sizeof(syntax[0]));

    /* every timeout-like key refuses 0, negatives, floats, strings, booleans and out-of-range values */
    static const char *const timeouts[][2] = {
        {"registrar", "preconnect_timeout"}, {"registrar", "consumer_ttl"},     {"registrar", "session_ttl"},
        {"registrar", "auth_fail_window"},   {"relay", "wait_timeout"},         {"relay", "idle_timeout"},
        {"relay", "first_byte_timeout"},     {"registrar", "auth_backoff_max"},
    };
    static const char *const counts[][2] = {
        {"registrar", "auth_fail_limit"},
        {"relay", "max_conns_per_addr"},
        {"registrar", "consumer_ports_per_addr"},
        {"registrar", "consumer_ports_per_label"},
    };
    static const char *const bad_any[] = {"-1",   "-4294967296", "1.5", "30.0", "1e3",        "\"30\"",
                                          "true", "null",        "[]",  "{}",   "4294967296", "9223372036854775807"};
    for (int pass = 0; pass < 2; pass++) {
        size_t nkeys = pass == 0 ? sizeof(timeouts) / sizeof(timeouts[0]) : sizeof(counts) / sizeof(counts[0]);
        for (size_t k = 0; k < nkeys; k++) {
            const char *obj = pass == 0 ? timeouts[k][0] : counts[k][0];
            const char *key = pass == 0 ? timeouts[k][1] : counts[k][1];
            char path[64], json[256];
            snprintf(path, sizeof(path), "%s.%s", obj, key);
            for (size_t v = 0; v < sizeof(bad_any) / sizeof(bad_any[0]) + (pass == 0); v++) {
                const char *val = v < sizeof(bad_any) / sizeof(bad_any[0]) ? bad_any[v] : "0";
                snprintf(json, sizeof(json), "{\"%s\": {\"%s\": %s}}", obj, key, val);
                struct err_row row = {json, 0, path, NULL};
                run_err_rows("number", &row, 1);
            }
            /* and a plain positive integer is fine */
            snprintf(json, sizeof(json), "{\"%s\": {\"%s\": 42}}", obj, key);
            CHECK_CTX("%s", json);
            CHECK_RC(parse_str(json, &cfg, err), 0, err);
        }
    }
    CHECK_CTX(NULL);

    /* more than 1 MiB is refused before parsing */
    char *big = malloc(MIB + 1);
    memset(big, ' ', MIB + 1);
    big[0] = '{';
    big[MIB] = '}';
    CHECK_CTX("1 MiB + 1");
    if (CHECK_RC(parse_exact(big, MIB + 1, &cfg, err), -1, err))
        CHECK(err[0] != '\0');
    free(big);
    CHECK_CTX(NULL);
}

/* registrar.names, metrics_listen and metrics_token: defaults, accepted forms, and hostile input
 * whose errors name the key (and the index in names). */
static void test_names_metrics(void)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN] = "";
    CHECK_CTX("names/metrics: defaults");
    if (CHECK_RC(parse_str("{}", &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.registrar.nnames, 0);
        CHECK_EQ_INT(cfg.registrar.metrics_enabled, 1);
        CHECK_EQ_STR(cfg.registrar.metrics_listen.host, "127.0.0.1");
        CHECK_EQ_INT(cfg.registrar.metrics_listen.port, 9464);
        CHECK_EQ_STR(cfg.registrar.metrics_token, "");
    }
    CHECK_CTX("names/metrics: set");
    if (CHECK_RC(parse_str("{\"registrar\": {\"names\": [\"Registrar.Example.ORG\", \"r2.example.org.x\"],"
                           " \"metrics_listen\": \"[::1]:9100\", \"metrics_token\": \"0123456789abcdef\"},"
                           " \"domain\": \"tunnels.example.org\"}",
                           &cfg, err),
                 0, err)) {
        CHECK_EQ_INT(cfg.registrar.nnames, 2);
        CHECK_EQ_STR(cfg.registrar.names[0], "registrar.example.org");
        CHECK_EQ_STR(cfg.registrar.names[1], "r2.example.org.x");
        CHECK_EQ_STR(cfg.registrar.metrics_listen.host, "::1");
        CHECK_EQ_INT(cfg.registrar.metrics_listen.port, 9100);
        CHECK_EQ_STR(cfg.registrar.metrics_token, "0123456789abcdef");
    }
    CHECK_CTX("names/metrics: empty list, null listener and token, 16 names, 253-byte name, 128-byte token");
    if (CHECK_RC(parse_str("{\"registrar\": {\"names\": [], \"metrics_listen\": null, \"metrics_token\": null}}", &cfg, err), 0,
                 err)) {
        CHECK_EQ_INT(cfg.registrar.nnames, 0);
        CHECK_EQ_INT(cfg.registrar.metrics_enabled, 0);
        CHECK_EQ_STR(cfg.registrar.metrics_token, "");
    }
    char json[8192], name253[P2M_DOMAIN_MAX + 2], token[P2M_METRICS_TOKEN_MAX + 2];
    /* 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 */
    snprintf(name253, sizeof(name253), "%063d.%063d.%063d.%061d", 1, 2, 3, 4);
    CHECK_EQ_INT(strlen(name253), P2M_DOMAIN_MAX);
    int n = snprintf(json, sizeof(json), "{\"registrar\": {\"names\": [\"%s\"", name253);
    for (int i = 1; i < P2M_NAMES_MAX; i++)
        n += snprintf(json + n, sizeof(json) - (size_t)n, ", \"n%d.example.org\"", i);
    memset(token, 'T', P2M_METRICS_TOKEN_MAX);
    token[P2M_METRICS_TOKEN_MAX] = '\0';
    snprintf(json + n, sizeof(json) - (size_t)n, "], \"metrics_token\": \"%s\"}}", token);
    if (CHECK_RC(parse_str(json, &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.registrar.nnames, P2M_NAMES_MAX);
        CHECK_EQ_STR(cfg.registrar.names[0], name253);
        CHECK_EQ_STR(cfg.registrar.names[P2M_NAMES_MAX - 1], "n15.example.org");
        CHECK_EQ_STR(cfg.registrar.metrics_token, token);
    }
    CHECK_CTX(NULL);

    /* 17 names; a 254-byte name; a 129-byte token */
    static char names17[2048], name254[600], token129[400];
    n = snprintf(names17, sizeof(names17), "{\"registrar\": {\"names\": [\"n0.example.org\"");
    for (int i = 1; i <= P2M_NAMES_MAX; i++)
        n += snprintf(names17 + n, sizeof(names17) - (size_t)n, ", \"n%d.example.org\"", i);
    snprintf(names17 + n, sizeof(names17) - (size_t)n, "]}}");
    snprintf(name254, sizeof(name254), "{\"registrar\": {\"names\": [\"ok.example.org\", \"%s1\"]}}", name253);
    memset(token, 'T', P2M_METRICS_TOKEN_MAX + 1);
    token[P2M_METRICS_TOKEN_MAX + 1] = '\0';
    snprintf(token129, sizeof(token129), "{\"registrar\": {\"metrics_token\": \"%s\"}}", token);
    const struct err_row rows[] = {
        {"{\"registrar\": {\"names\": \"registrar.example.org\"}}", 0, "registrar.names", "list"},
        {"{\"registrar\": {\"names\": null}}", 0, "registrar.names", "list"},
        {"{\"registrar\": {\"names\": {}}}", 0, "registrar.names", "list"},
        {names17, 0, "registrar.names", "at most 16"},
        {name254, 0, "registrar.names[1]", "longer than 253"},
        {"{\"registrar\": {\"names\": [\"a.example.org\", 7]}}", 0, "registrar.names[1]", "string"},
        {"{\"registrar\": {\"names\": [null]}}", 0, "registrar.names[0]", "string"},
        {"{\"registrar\": {\"names\": [[\"a.example.org\"]]}}", 0, "registrar.names[0]", "string"},
        {"{\"registrar\": {\"names\": [\"\"]}}", 0, "registrar.names[0]", "empty"},
        {"{\"registrar\": {\"names\": [\"a.example.org\", \"b.example.org\", \"127.0.0.1\"]}}", 0, "registrar.names[2]", "IP"},
        {"{\"registrar\": {\"names\": [\"::1\"]}}", 0, "registrar.names[0]", "IP"},
        {"{\"registrar\": {\"names\": [\"[::1]\"]}}", 0, "registrar.names[0]", NULL},
        {"{\"registrar\": {\"names\": [\"*.example.org\"]}}", 0, "registrar.names[0]", NULL},
        {"{\"registrar\": {\"names\": [\"a..example.org\"]}}", 0, "registrar.names[0]", NULL},
        {"{\"registrar\": {\"names\": [\"a.example.org.\"]}}", 0, "registrar.names[0]", NULL},
        {"{\"registrar\": {\"names\": [\"a.example.org:443\"]}}", 0, "registrar.names[0]", NULL},
        {"{\"registrar\": {\"names\": [\"-a.example.org\"]}}", 0, "registrar.names[0]", NULL},
        {"{\"registrar\": {\"names\": [\"a b.example.org\"]}}", 0, "registrar.names[0]", NULL},
        {"{\"registrar\": {\"names\": [\"a.example.org\\u0000x\"]}}", 0, "line", "col"}, /* jansson refuses NULs */
        {"{\"registrar\": {\"names\": [\"\\u00e9.example.org\"]}}", 0, "registrar.names[0]", NULL},
        {"{\"registrar\": {\"names\": [\"A.example.org\", \"a.EXAMPLE.org\"]}}", 0, "registrar.names[1]", "repeats"},
        {"{\"registrar\": {\"names\": [\"pipe2me.localhost\"]}}", 0, "registrar.names[0]", "domain"},
        {"{\"registrar\": {\"names\": [\"x.pipe2me.localhost\"]}}", 0, "registrar.names[0]", "domain"},
        {"{\"registrar\": {\"names\": [\"ok.org\", \"a.b.tunnels.example.org\"]}, \"domain\": \"tunnels.example.org\"}", 0,
         "registrar.names[1]", "domain"},
        {"{\"registrar\": {\"metrics_listen\": \"127.0.0.1\"}}", 0, "registrar.metrics_listen", NULL},
        {"{\"registrar\": {\"metrics_listen\": \"127.0.0.1:0\"}}", 0, "registrar.metrics_listen", NULL},
        {"{\"registrar\": {\"metrics_listen\": \"127.0.0.1:65536\"}}", 0, "registrar.metrics_listen", NULL},
        {"{\"registrar\": {\"metrics_listen\": \"127.0.0.1:-1\"}}", 0, "registrar.metrics_listen", NULL},
        {"{\"registrar\": {\"metrics_listen\": \"127.0.0.1:9x\"}}", 0, "registrar.metrics_listen", NULL},
        {"{\"registrar\": {\"metrics_listen\": 9464}}", 0, "registrar.metrics_listen", "string"},
        {"{\"registrar\": {\"metrics_listen\": \"\"}}", 0, "registrar.metrics_listen", NULL},
        {"{\"registrar\": {\"metrics_token\": \"short\"}}", 0, "registrar.metrics_token", "16 to 128"},
        {"{\"registrar\": {\"metrics_token\": \"0123456789abcde\"}}", 0, "registrar.metrics_token", "16 to 128"},
        {"{\"registrar\": {\"metrics_token\": \"\"}}", 0, "registrar.metrics_token", "16 to 128"},
        {token129, 0, "registrar.metrics_token", "16 to 128"},
        {"{\"registrar\": {\"metrics_token\": 1234567890123456789}}", 0, "registrar.metrics_token", "string"},
        {"{\"registrar\": {\"metrics_token\": [\"0123456789abcdef\"]}}", 0, "registrar.metrics_token", "string"},
        {"{\"registrar\": {\"metrics_token\": true}}", 0, "registrar.metrics_token", "string"},
        {"{\"registrar\": {\"metrics_token\": \"0123456789 abcdef\"}}", 0, "registrar.metrics_token", "only"},
        {"{\"registrar\": {\"metrics_token\": \"0123456789abcdef\\\"\"}}", 0, "registrar.metrics_token", "only"},
        {"{\"registrar\": {\"metrics_token\": \"0123456789abcdef\\u0000\"}}", 0, "line", "col"},
        {"{\"registrar\": {\"metrics_token\": \"0123456789abcdef\\n\"}}", 0, "registrar.metrics_token", "only"},
        {"{\"registrar\": {\"metrics_token\": \"0123456789abcdef\\u00e9\"}}", 0, "registrar.metrics_token", "only"},
    };
    run_err_rows("names/metrics", rows, sizeof(rows) / sizeof(rows[0]));
}

static void test_load(void)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN] = "";
    const char *missing = "/nonexistent-p2m-dir/pipe2me.json";

    CHECK_CTX("load missing file");
    p2m_config_defaults(&cfg);
    if (CHECK_RC(p2m_config_load(missing, &cfg, err), -1, err))
        CHECK_MSG(strstr(err, missing) != NULL, "err %s does not name %s", check_str(err), missing);

    CHECK_CTX("load a directory");
    p2m_config_defaults(&cfg);
    if (CHECK_RC(p2m_config_load("/", &cfg, err), -1, err))
        CHECK_MSG(err[0] != '\0', "err is empty");

    char path[] = "/tmp/p2m-unit-config-XXXXXX";
    int fd = mkstemp(path);
    if (!CHECK_MSG(fd >= 0, "mkstemp failed"))
        return;
    FILE *f = fdopen(fd, "w");
    fputs(full_json, f);
    fclose(f);
    CHECK_CTX("load full file");
    p2m_config_defaults(&cfg);
    if (CHECK_RC(p2m_config_load(path, &cfg, err), 0, err))
        check_full(&cfg);

    f = fopen(path, "w");
    fputs("{\n  \"relay\": {\n    \"ports\": \"9-1\"\n  }\n}\n", f);
    fclose(f);
    CHECK_CTX("load bad file");
    p2m_config_defaults(&cfg);
    if (CHECK_RC(p2m_config_load(path, &cfg, err), -1, err)) {
        CHECK_MSG(strstr(err, path) != NULL, "err %s does not name %s", check_str(err), path);
        CHECK_MSG(strstr(err, "relay.ports") != NULL, "err %s does not name relay.ports", check_str(err));
    }

    f = fopen(path, "w");
    fputs("{\n  \"domain\": \"a.com\",\n  oops\n}\n", f);
    fclose(f);
    CHECK_CTX("load invalid JSON file");
    p2m_config_defaults(&cfg);
    if (CHECK_RC(p2m_config_load(path, &cfg, err), -1, err)) {
        CHECK_MSG(strstr(err, path) != NULL, "err %s does not name %s", check_str(err), path);
        CHECK_MSG(strstr(err, "line") != NULL, "err %s does not give the line", check_str(err));
    }

    f = fopen(path, "w");
    fputc('{', f);
    for (int i = 0; i < MIB; i++)
        fputc(' ', f);
    fputc('}', f);
    fclose(f);
    CHECK_CTX("load a file over 1 MiB");
    p2m_config_defaults(&cfg);
    if (CHECK_RC(p2m_config_load(path, &cfg, err), -1, err))
        CHECK_MSG(strstr(err, path) != NULL, "err %s does not name %s", check_str(err), path);

    f = fopen(path, "w");
    fclose(f);
    CHECK_CTX("load an empty file");
    p2m_config_defaults(&cfg);
    if (CHECK_RC(p2m_config_load(path, &cfg, err), -1, err))
        CHECK_MSG(strstr(err, path) != NULL, "err %s does not name %s", check_str(err), path);

    unlink(path);
    CHECK_CTX(NULL);
}

/* "a{63}.b{63}.c{63}.d{last}": 192 + last bytes */
static void build_domain(char *out, int last)
{
    size_t pos = 0;
    for (int l = 0; l < 4; l++) {
        int n = l < 3 ? 63 : last;
        if (l > 0)
            out[pos++] = '.';
        memset(out + pos, 'a' + l, (size_t)n);
        pos += (size_t)n;
    }
    out[pos] = '\0';
}

static void test_domain(void)
{
    static char d253[300], d254[300], l63[300], l64[300];
    build_domain(d253, 61);
    build_domain(d254, 62);
    snprintf(l63, sizeof(l63), "%.63s.com", d253);
    snprintf(l64, sizeof(l64), "%.63sa.com", d253);
    const struct {
        const char *in;
        int rc;
        const char *out;
    } rows[] = {
        {"pipe2me.localhost", 0, "pipe2me.localhost"},
        {"Example.COM", 0, "example.com"},
        {"localhost", 0, "localhost"},
        {"a.b.c.d.e", 0, "a.b.c.d.e"},
        {"xn--bcher-kva.example", 0, "xn--bcher-kva.example"},
        {"1.2.3.example", 0, "1.2.3.example"},
        {"my-host.example.com", 0, "my-host.example.com"},
        {d253, 0, d253},
        {l63, 0, l63},
        {"", -1, NULL},
        {".", -1, NULL},
        {"..", -1, NULL},
        {"a..b", -1, NULL},
        {".a", -1, NULL},
        {"-a.com", -1, NULL},
        {"a-.com", -1, NULL},
        {"a.-com", -1, NULL},
        {"a_b.com", -1, NULL},
        {"a b.com", -1, NULL},
        {" a.com", -1, NULL},
        {"a.com ", -1, NULL},
        {"a.com\n", -1, NULL},
        {"\xff.com", -1, NULL},
        {"caf\xc3\xa9.com", -1, NULL},
        {"a/b.com", -1, NULL},
        {"a:80", -1, NULL},
        {"*.example.com", -1, NULL},
        {d254, -1, NULL},
        {l64, -1, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char out[P2M_DOMAIN_MAX + 1], err[P2M_ERR_LEN] = "";
        char *in = strdup(rows[i].in);
        memset(out, 0x5a, sizeof(out));
        CHECK_CTX("domain row %zu %s", i, check_str(rows[i].in));
        int rc = p2m_domain_normalize(in, out, err);
        if (CHECK_RC(rc, rows[i].rc, err)) {
            if (rc == 0)
                CHECK_EQ_STR(out, rows[i].out);
            else
                CHECK_MSG(err[0] != '\0', "err is empty on failure");
        }
        free(in);
    }
    CHECK_CTX(NULL);
}

/* The dns section and registrar.direct (PROTOCOL 5): defaults, a full section, and every bad
 * value named by its key path. */
static void test_direct_dns(void)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN];
    CHECK_CTX("direct and dns defaults");
    if (CHECK_RC(parse_str("{}", &cfg, err), 0, err)) {
        CHECK_EQ_INT(cfg.dns.enabled, 0);
        CHECK_EQ_INT(cfg.registrar.direct_lan, 1);
        CHECK_EQ_INT(cfg.registrar.direct_public, 1);
        CHECK_EQ_INT(cfg.registrar.direct_public_private, 0);
        CHECK_EQ_INT(cfg.registrar.direct_check_interval, 10);
        CHECK_EQ_INT(cfg.registrar.direct_retry_window, 30);
    }
    CHECK_CTX("dns full");
    if (CHECK_RC(parse_str("{\"domain\": \"p.example\", \"dns\": {\"server\": \"127.0.0.1:5353\", \"zone\": \"P.Example\", "
                           "\"tsig_key_file\": \"/etc/k.key\", \"ttl\": 5}, \"registrar\": {\"direct\": {\"lan\": false, "
                           "\"public\": true, \"public_private\": true, \"check_interval\": 2, \"retry_window\": 7}}}",
                           &cfg, err),
                 0, err)) {
        CHECK_EQ_INT(cfg.dns.enabled, 1);
        CHECK_EQ_STR(cfg.dns.server.host, "127.0.0.1");
        CHECK_EQ_INT(cfg.dns.server.port, 5353);
        CHECK_EQ_STR(cfg.dns.zone, "p.example");
        CHECK_EQ_STR(cfg.dns.tsig_key_file, "/etc/k.key");
        CHECK_EQ_INT(cfg.dns.ttl, 5);
        CHECK_EQ_INT(cfg.registrar.direct_lan, 0);
        CHECK_EQ_INT(cfg.registrar.direct_public, 1);
        CHECK_EQ_INT(cfg.registrar.direct_public_private, 1);
        CHECK_EQ_INT(cfg.registrar.direct_check_interval, 2);
        CHECK_EQ_INT(cfg.registrar.direct_retry_window, 7);
    }
    CHECK_CTX("dns: parent zone, IPv6 server, ttl default");
    if (CHECK_RC(parse_str("{\"domain\": \"p.example\", \"dns\": {\"server\": \"[::1]:53\", \"zone\": \"example\", "
                           "\"tsig_key_file\": \"k\"}}",
                           &cfg, err),
                 0, err)) {
        CHECK_EQ_STR(cfg.dns.server.host, "::1");
        CHECK_EQ_INT(cfg.dns.ttl, 30);
    }
    CHECK_CTX("dns null");
    if (CHECK_RC(parse_str("{\"dns\": null}", &cfg, err), 0, err))
        CHECK_EQ_INT(cfg.dns.enabled, 0);

#define DNS_OK "\"server\": \"127.0.0.1:53\", \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"k\""
    const struct err_row rows[] = {
        {"{\"dns\": 5}", 0, "dns", "object"},
        {"{\"dns\": []}", 0, "dns", "object"},
        {"{\"dns\": {}}", 0, "dns.server", "needed"},
        {"{\"dns\": {\"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.server", "needed"},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"tsig_key_file\": \"k\"}}", 0, "dns.zone", "needed"},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": \"pipe2me.localhost\"}}", 0, "dns.tsig_key_file", "needed"},
        {"{\"dns\": {" DNS_OK ", \"bogus\": 1}}", 0, "dns.bogus", "unknown"},
        {"{\"dns\": {" DNS_OK ", \"Server\": 1}}", 0, "dns.Server", "unknown"},
        {"{\"dns\": {\"server\": \"ns1.example:53\", \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.server",
         "literal"},
        {"{\"dns\": {\"server\": \"127.0.0.1\", \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.server",
         NULL},
        {"{\"dns\": {\"server\": \"127.0.0.1:0\", \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.server",
         NULL},
        {"{\"dns\": {\"server\": \"127.0.0.1:65536\", \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.server",
         NULL},
        {"{\"dns\": {\"server\": \":53\", \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.server", NULL},
        {"{\"dns\": {\"server\": 53, \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.server", "string"},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": \"a..b\", \"tsig_key_file\": \"k\"}}", 0, "dns.zone", NULL},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": \"\", \"tsig_key_file\": \"k\"}}", 0, "dns.zone", NULL},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": 1, \"tsig_key_file\": \"k\"}}", 0, "dns.zone", NULL},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": \"other.example\", \"tsig_key_file\": \"k\"}}", 0, "dns.zone",
         "does not hold"},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": \"me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.zone",
         "does not hold"},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": \"sub.pipe2me.localhost\", \"tsig_key_file\": \"k\"}}", 0, "dns.zone",
         "does not hold"},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": \"\"}}", 0,
         "dns.tsig_key_file", "empty"},
        {"{\"dns\": {\"server\": \"127.0.0.1:53\", \"zone\": \"pipe2me.localhost\", \"tsig_key_file\": [\"k\"]}}", 0,
         "dns.tsig_key_file", "string"},
        {"{\"dns\": {" DNS_OK ", \"ttl\": 0}}", 0, "dns.ttl", "1 to 86400"},
        {"{\"dns\": {" DNS_OK ", \"ttl\": 86401}}", 0, "dns.ttl", NULL},
        {"{\"dns\": {" DNS_OK ", \"ttl\": 30.5}}", 0, "dns.ttl", NULL},
        {"{\"dns\": {" DNS_OK ", \"ttl\": \"30\"}}", 0, "dns.ttl", NULL},
        {"{\"dns\": {" DNS_OK ", \"ttl\": -1}}", 0, "dns.ttl", NULL},
        {"{\"registrar\": {\"direct\": 1}}", 0, "registrar.direct", "object"},
        {"{\"registrar\": {\"direct\": {\"lan\": 1}}}", 0, "registrar.direct.lan", "true or false"},
        {"{\"registrar\": {\"direct\": {\"lan\": \"yes\"}}}", 0, "registrar.direct.lan", NULL},
        {"{\"registrar\": {\"direct\": {\"public\": null}}}", 0, "registrar.direct.public", NULL},
        {"{\"registrar\": {\"direct\": {\"public_private\": \"no\"}}}", 0, "registrar.direct.public_private", "true or false"},
        {"{\"registrar\": {\"direct\": {\"check_interval\": 0}}}", 0, "registrar.direct.check_interval", "1 to 3600"},
        {"{\"registrar\": {\"direct\": {\"check_interval\": 3601}}}", 0, "registrar.direct.check_interval", NULL},
        {"{\"registrar\": {\"direct\": {\"check_interval\": 1.5}}}", 0, "registrar.direct.check_interval", NULL},
        {"{\"registrar\": {\"direct\": {\"retry_window\": 0}}}", 0, "registrar.direct.retry_window", NULL},
        {"{\"registrar\": {\"direct\": {\"retry_window\": \"30\"}}}", 0, "registrar.direct.retry_window", NULL},
        {"{\"registrar\": {\"direct\": {\"lan\": true, \"lan\": false}}}", 0, NULL, NULL},
        {"{\"registrar\": {\"direct\": {\"x\\u001b\": true}}}", 0, "registrar.direct.x\\x1b", "unknown"},
    };
#undef DNS_OK
    run_err_rows("direct/dns", rows, sizeof(rows) / sizeof(rows[0]));
    CHECK_CTX(NULL);
}

int main(void)
{
    test_defaults();
    test_full();
    test_sni();
    test_errors();
    test_names_metrics();
    test_load();
    test_domain();
    test_direct_dns();
    return check_done("config");
}
