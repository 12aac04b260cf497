/* libFuzzer target for p2m_config_parse over the defaults: it never crashes or leaks, fails with a
 * one-line reason, and a config it accepts holds values that satisfy config.h (registrar.names and
 * metrics_token included). */

#include "fuzz.h"

#include <arpa/inet.h>
#include "p2m/addr.h"
#include "p2m/config.h"
#include "p2m/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN] = "", dom[P2M_DOMAIN_MAX + 1];

    p2m_config_defaults(&cfg);
    /* data is exactly size bytes with no NUL after it: ASan catches a parser that reads on */
    int rc = p2m_config_parse((const char *)data, size, &cfg, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err(err);
        return 0;
    }
    FUZZ_CHECK(size <= 1024 * 1024);
    FUZZ_CHECK(FUZZ_TERMINATED(cfg.domain) && FUZZ_TERMINATED(cfg.public_address) && FUZZ_TERMINATED(cfg.redis_str) &&
               FUZZ_TERMINATED(cfg.state_dir) && FUZZ_TERMINATED(cfg.registrar.url) && FUZZ_TERMINATED(cfg.relay.listen) &&
               FUZZ_TERMINATED(cfg.registrar.listen.host) && FUZZ_TERMINATED(cfg.registrar.http.host) &&
               FUZZ_TERMINATED(cfg.relay.name));
    FUZZ_CHECK(p2m_domain_normalize(cfg.domain, dom, err) == 0 && strcmp(dom, cfg.domain) == 0);
    FUZZ_CHECK(cfg.relay.ports.lo >= 1 && cfg.relay.ports.lo <= cfg.relay.ports.hi);
    FUZZ_CHECK(cfg.registrar.listen.port >= 1);
    FUZZ_CHECK(!cfg.registrar.http_enabled || cfg.registrar.http.port >= 1);
    FUZZ_CHECK(cfg.log_level >= P2M_LOG_DEBUG && cfg.log_level <= P2M_LOG_ERROR);
    FUZZ_CHECK(cfg.registrar.preconnect_timeout > 0 && cfg.registrar.consumer_ttl > 0 && cfg.registrar.session_ttl > 0 &&
               cfg.registrar.alive_window >= 10 && cfg.registrar.alive_window <= 86400 && cfg.registrar.auth_fail_window > 0 &&
               cfg.registrar.auth_backoff_max >= 1 && cfg.registrar.auth_backoff_max <= 86400 && cfg.relay.wait_timeout > 0 &&
               cfg.relay.idle_timeout > 0);
    /* The SNI port always knows where the registrar's names go; proxy_from holds 1 to 16 IPs. */
    FUZZ_CHECK(!cfg.relay.sni_enabled || (cfg.relay.sni_registrar.port >= 1 && cfg.relay.sni_registrar.host[0] != '\0'));
    FUZZ_CHECK(cfg.registrar.nproxy_from >= 1 && cfg.registrar.nproxy_from <= P2M_PROXY_FROM_MAX);
    for (unsigned i = 0; i < cfg.registrar.nproxy_from; i++) {
        unsigned char a[16];
        FUZZ_CHECK(FUZZ_TERMINATED(cfg.registrar.proxy_from[i]));
        FUZZ_CHECK(inet_pton(AF_INET, cfg.registrar.proxy_from[i], a) == 1 ||
                   inet_pton(AF_INET6, cfg.registrar.proxy_from[i], a) == 1);
    }
    /* registrar.names: normalised DNS names, no IP literal, none repeated, none DOMAIN or under it;
     * metrics_token: "" or 16-128 b64token characters; metrics_listen has a port when on. */
    size_t dlen = strlen(cfg.domain);
    FUZZ_CHECK(cfg.registrar.nnames <= P2M_NAMES_MAX);
    for (unsigned i = 0; i < cfg.registrar.nnames; i++) {
        const char *n = cfg.registrar.names[i];
        size_t nlen;
        unsigned char a[16];
        FUZZ_CHECK(FUZZ_TERMINATED(cfg.registrar.names[i]));
        FUZZ_CHECK(p2m_domain_normalize(n, dom, err) == 0 && strcmp(dom, n) == 0);
        FUZZ_CHECK(inet_pton(AF_INET, n, a) != 1 && inet_pton(AF_INET6, n, a) != 1);
        nlen = strlen(n);
        FUZZ_CHECK(strcmp(n, cfg.domain) != 0);
        FUZZ_CHECK(!(nlen > dlen && n[nlen - dlen - 1] == '.' && strcmp(n + nlen - dlen, cfg.domain) == 0));
        for (unsigned j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(cfg.registrar.names[j], n) != 0);
    }
    FUZZ_CHECK(FUZZ_TERMINATED(cfg.registrar.metrics_token));
    size_t tlen = strlen(cfg.registrar.metrics_token);
    FUZZ_CHECK(tlen == 0 || (tlen >= P2M_METRICS_TOKEN_MIN && tlen <= P2M_METRICS_TOKEN_MAX));
    FUZZ_CHECK(strspn(cfg.registrar.metrics_token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=") ==
               tlen);
    FUZZ_CHECK(!cfg.registrar.metrics_enabled ||
               (cfg.registrar.metrics_listen.port >= 1 && FUZZ_TERMINATED(cfg.registrar.metrics_listen.host)));
    FUZZ_CHECK(cfg.redis.nsentinels <= P2M_SENTINELS_MAX && cfg.redis.wait_replicas <= P2M_REDIS_WAIT_MAX);
    FUZZ_CHECK(FUZZ_TERMINATED(cfg.redis.master) && FUZZ_TERMINATED(cfg.redis.user) && FUZZ_TERMINATED(cfg.redis.password));
    if (cfg.redis.nsentinels > 0) {
        FUZZ_CHECK(cfg.redis.master[0] != '\0');
        for (unsigned i = 0; i < cfg.redis.nsentinels; i++)
            FUZZ_CHECK(cfg.redis.sentinels[i].port >= 1 && cfg.redis.sentinels[i].host[0] != '\0');
    } else if (cfg.redis.is_unix) {
        FUZZ_CHECK(FUZZ_TERMINATED(cfg.redis.path) && cfg.redis.path[0] != '\0');
    } else {
        FUZZ_CHECK(cfg.redis.tcp.port >= 1);
    }
    return 0;
}
