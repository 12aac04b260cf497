/* pipe2me-registrar: HTTPS registration for pods and 307 redirects for consumers. */
#include "registrar.h"
#include "tls.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/totp.h"

#include <getopt.h>
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"version", no_argument, NULL, 'V'},
                                         {NULL, 0, NULL, 0}};
    const char *config_path = NULL;
    int check_only = 0, c;
    char err[P2M_ERR_LEN];
    static registrar_t r; /* large (the waiting table): keep it off the stack */

    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("pipe2me-registrar %s\n", P2M_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (config_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    p2m_config_defaults(&r.cfg);
    if (p2m_config_load(config_path, &r.cfg, err) != 0) {
        fprintf(stderr, "pipe2me-registrar: %s\n", err);
        return 2;
    }
    if (check_only) {
        printf("%s: ok\n", config_path);
        return 0;
    }
    p2m_log_set_level(r.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    if (p2m_totp_init(err) != 0) {
        P2M_LOG_ERR("startup_failed", "error=\"%s\"", err);
        return 1;
    }
    r.https_port = r.cfg.registrar.listen.port;
    if ((r.ssl_ctx = tls_setup(&r.cfg, &r.ca, err)) == NULL) {
        P2M_LOG_ERR("startup_failed", "error=\"%s\"", err);
        return 1;
    }
    registrar_http_setup(&r);
    h2o_context_init(&r.h2o_ctx, h2o_evloop_create(), &r.h2o_config);
    h2o_timeout_init(r.h2o_ctx.loop, &r.bound_timeout, 3000);
    if (registrar_listen(&r, err) != 0) {
        P2M_LOG_ERR("startup_failed", "error=\"%s\"", err);
        return 1;
    }
    redis_start(&r, err);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    p2m_log(P2M_LOG_INFO, "started", "domain=%s url=%s redis=%s", r.cfg.domain, r.cfg.registrar.url, r.cfg.redis_str);
    while (!stopping)
        h2o_evloop_run(r.h2o_ctx.loop, 1000);
    p2m_log(P2M_LOG_INFO, "stopping", NULL);
    return 0;
}
