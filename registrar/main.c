/* pipe2me-registrar: HTTPS registration for pods and 307 redirects for consumers. */
#include "args.h"
#include "direct.h"
#include "http.h"
#include "lease.h"
#include "redis_h2o.h"
#include "drain.h"
#include "registrar.h"
#include "tls.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/totp.h"

#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: pipe2me-registrar -c FILE [--check-config]\n"
                 "  -c, --config FILE   the pipe2me JSON configuration\n"
                 "      --check-config  validate the configuration and exit\n"
                 "  -h, --help          this text\n"
                 "      --version       print the version\n");
}

/* --check-config: "FILE: ok", then the listeners the registrar would open. */
static void check_report(const char *path, const p2m_config_t *cfg)
{
    char a[P2M_HOST_MAX + 16];
    printf("%s: ok\n", path);
    printf("name %s\n", cfg->registrar.name);
    printf("pods_to %s\n", cfg->registrar.pods_to[0] != '\0' ? cfg->registrar.pods_to : "off");
    p2m_hostport_format(cfg->registrar.listen.host, cfg->registrar.listen.port, a, sizeof(a));
    printf("https %s\n", a);
    if (cfg->registrar.http_enabled) {
        p2m_hostport_format(cfg->registrar.http.host, cfg->registrar.http.port, a, sizeof(a));
        printf("http %s\n", a);
    } else {
        printf("http off\n");
    }
    if (cfg->registrar.proxy_enabled) {
        p2m_hostport_format(cfg->registrar.proxy_listen.host, cfg->registrar.proxy_listen.port, a, sizeof(a));
        printf("proxy_listen %s (HTTPS after a PROXY protocol v1 line; from", a);
        for (unsigned i = 0; i < cfg->registrar.nproxy_from; i++)
            printf(" %s", cfg->registrar.proxy_from[i]);
        printf(" only)\n");
    } else {
        printf("proxy_listen off\n");
    }
    if (cfg->registrar.metrics_enabled) {
        p2m_hostport_format(cfg->registrar.metrics_listen.host, cfg->registrar.metrics_listen.port, a, sizeof(a));
        printf("metrics_listen %s (plain HTTP: /metrics and /_health only)\n", a);
    } else {
        printf("metrics_listen off\n");
    }
    /* The token itself stays out of the output, which may end up in a ticket. */
    printf("/metrics on https %s\n", cfg->registrar.metrics_token[0] != '\0' ? "with registrar.metrics_token (Bearer)" : "off");
    registrar_names_t names;
    registrar_names_init(cfg, &names);
    if (cfg->dns.enabled) {
        p2m_hostport_format(cfg->dns.server.host, cfg->dns.server.port, a, sizeof(a));
        printf("dns %s zone %s ttl %u (LABEL.lan.%s, LABEL.direct.%s)\n", a, cfg->dns.zone, cfg->dns.ttl, cfg->domain, cfg->domain);
    } else {
        printf("dns off (no consumer is sent to a direct path)\n");
    }
    printf("direct lan %s public %s check_interval %u retry_window %u\n", cfg->registrar.direct_lan ? "on" : "off",
           cfg->registrar.direct_public ? "on" : "off", cfg->registrar.direct_check_interval, cfg->registrar.direct_retry_window);
    printf("names");
    for (unsigned i = 0; i < names.ndns; i++)
        printf(" %s", names.dns[i]);
    for (unsigned i = 0; i < names.naddrs; i++)
        printf(" %s", names.addrs[i]);
    printf("\n");
}

int main(int argc, char **argv)
{
    registrar_args_t args;
    char err[P2M_ERR_LEN];
    static registrar_t r; /* large (the waiting table): keep it off the stack */

    if (registrar_args_parse(argc, argv, &args, err) != 0) {
        fprintf(stderr, "pipe2me-registrar: %s\n", err);
        usage(stderr);
        return 2;
    }
    if (args.action == REGISTRAR_ACTION_HELP) {
        usage(stdout);
        return 0;
    }
    if (args.action == REGISTRAR_ACTION_VERSION) {
        printf("pipe2me-registrar %s\n", P2M_VERSION);
        return 0;
    }
    const char *config_path = args.config;
    p2m_config_defaults(&r.cfg);
    if (p2m_config_load(config_path, &r.cfg, err) != 0) {
        fprintf(stderr, "pipe2me-registrar: %s\n", err);
        return 2;
    }
    if (registrar_listen_check(&r.cfg, err) != 0) {
        fprintf(stderr, "pipe2me-registrar: %s\n", err);
        return 2;
    }
    /* The TSIG key is read (and its mode checked) before anything else starts, so that a key file
     * others may read stops the registrar here, and --check-config says so too. */
    p2m_tsig_key_t dns_key;
    if (direct_key_load(&r.cfg, &dns_key, err) != 0) {
        fprintf(stderr, "pipe2me-registrar: %s\n", err);
        return 2;
    }
    if (args.check_only) {
        p2m_tsig_key_clear(&dns_key);
        check_report(config_path, &r.cfg);
        return 0;
    }
    p2m_log_set_level(r.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    /* Start-up failures exit 2 with one line, like every other error; the ports are bound before
     * anything is written (tls_setup creates the CA in state_dir on first start). */
    if (registrar_bind(&r, err) != 0 || p2m_totp_init(err) != 0) {
        P2M_LOG_ERR("startup_failed", "error=\"%s\"", err);
        return 2;
    }
    r.https_port = r.cfg.registrar.listen.port;
    registrar_names_init(&r.cfg, &r.names);
    if ((r.ssl_ctx = tls_setup(&r.cfg, &r.names, &r.ca, err)) == NULL) {
        P2M_LOG_ERR("startup_failed", "error=\"%s\"", err);
        return 2;
    }
    if (registrar_http_setup(&r) != 0) {
        P2M_LOG_ERR("startup_failed", "error=\"%s\"", "hashing registrar.metrics_token");
        return 2;
    }
    h2o_context_init(&r.h2o_ctx, h2o_evloop_create(), &r.h2o_config);
    h2o_timeout_init(r.h2o_ctx.loop, &r.bound_timeout, 3000);
    if (registrar_listen(&r, err) != 0) {
        P2M_LOG_ERR("startup_failed", "error=\"%s\"", err);
        return 2;
    }
    redis_start(&r, lease_on_bound, err);
    drain_start(&r);
    if (direct_start(&r, &dns_key, err) != 0) {
        P2M_LOG_ERR("startup_failed", "error=\"%s\"", err);
        return 2;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    p2m_log(P2M_LOG_INFO, "started", "domain=%s url=%s redis=%s", r.cfg.domain, r.cfg.registrar.url, r.cfg.redis_str);
    while (!stopping && !r.fatal)
        h2o_evloop_run(r.h2o_ctx.loop, 1000);
    p2m_log(P2M_LOG_INFO, "stopping", NULL);
    direct_stop(r.direct);
    registrar_listen_close(&r);
    return r.fatal ? 2 : 0;
}
