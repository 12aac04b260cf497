/* pipe2me-relay: see relay.h and docs/PROTOCOL.md section 3.
 *
 *   pipe2me-relay -c FILE [--check-config] [--pipes N] [--pipe-size BYTES]
 *
 * Exit status: 0 after SIGTERM/SIGINT or a successful --check-config; 1 when the relay fails
 * while running; 2 for a bad command line or configuration (one line on stderr). */
#include "relay.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2m/err.h"

#ifndef P2M_VERSION
#define P2M_VERSION "0.1.0"
#endif

static const char usage_text[] =
    "Usage: pipe2me-relay -c FILE [--check-config] [--pipes N] [--pipe-size BYTES]\n"
    "\n"
    "Listens on the ports the registrar leases (relay.ports) and splices each consumer\n"
    "connection to an idle pre-connection of the same label.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE    configuration file (required)\n"
    "  -t, --check-config   check the configuration and exit\n"
    "      --pipes N        most splice pipes open at once, 2 descriptors each (default 1024)\n"
    "      --pipe-size B    bytes per pipe (default 65536)\n"
    "  -h, --help           show this text\n"
    "      --version        show the version\n"
    "\n"
    "SIGTERM or SIGINT stops the relay: connections are closed and its heartbeat and idle\n"
    "counts removed from Redis.\n";

static void on_signal(p2m_loop_t *loop, int signo, void *data)
{
    relay_t *r = data;
    (void)loop;
    relay_shutdown(r, signo == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_VERSION = 256, OPT_PIPES, OPT_PIPE_SIZE };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},  {"check-config", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, OPT_VERSION},
        {"pipes", required_argument, NULL, OPT_PIPES}, {"pipe-size", required_argument, NULL, OPT_PIPE_SIZE},
        {NULL, 0, NULL, 0}};
    const char *config = NULL;
    int check_only = 0, opt;
    unsigned pipes = RELAY_PIPES_DEFAULT, pipe_size = RELAY_PIPE_SIZE_DEFAULT;
    char err[P2M_ERR_LEN];

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:th", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case OPT_VERSION:
            printf("pipe2me-relay %s\n", P2M_VERSION);
            return 0;
        case OPT_PIPES:
            if (parse_uint(optarg, 1, 8192, &pipes) != 0) {
                fprintf(stderr, "pipe2me-relay: --pipes: expected 1 to 8192\n");
                return 2;
            }
            break;
        case OPT_PIPE_SIZE:
            if (parse_uint(optarg, 4096, 1048576, &pipe_size) != 0) {
                fprintf(stderr, "pipe2me-relay: --pipe-size: expected 4096 to 1048576 bytes\n");
                return 2;
            }
            break;
        case ':':
            fprintf(stderr, "pipe2me-relay: %s needs an argument (see --help)\n", argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "pipe2me-relay: unknown option %s (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pipe2me-relay: unexpected argument %s (see --help)\n", argv[optind]);
        return 2;
    }
    if (config == NULL) {
        fprintf(stderr, "pipe2me-relay: -c FILE is required (see --help)\n");
        return 2;
    }

    p2m_config_t cfg;
    p2m_config_defaults(&cfg);
    if (p2m_config_load(config, &cfg, err) != 0) {
        fprintf(stderr, "pipe2me-relay: %s\n", err);
        return 2;
    }
    if (check_only) {
        /* What the relay itself adds to the shared checks: relay.listen must resolve. */
        relay_t probe = {.cfg = cfg};
        if (ports_init(&probe, err) != 0) {
            fprintf(stderr, "pipe2me-relay: %s\n", err);
            return 2;
        }
        free(probe.leases);
        printf("pipe2me-relay: %s: configuration ok (relay %s, ports %u-%u)\n", config, cfg.relay.name,
               (unsigned)cfg.relay.ports.lo, (unsigned)cfg.relay.ports.hi);
        return 0;
    }
    p2m_log_set_level(cfg.log_level);
    /* splice(2) into a socket whose peer left raises SIGPIPE: the error return is enough. */
    signal(SIGPIPE, SIG_IGN);

    relay_t *r = relay_new(&cfg, pipes, pipe_size, err);
    if (r == NULL) {
        fprintf(stderr, "pipe2me-relay: %s\n", err);
        return 1;
    }
    static const int sigs[] = {SIGTERM, SIGINT};
    if (p2m_loop_signals(r->loop, sigs, 2, on_signal, r, err) != 0) {
        fprintf(stderr, "pipe2me-relay: %s\n", err);
        relay_free(r);
        return 1;
    }
    p2m_log(P2M_LOG_INFO, "relay_start", "name=%s ports=%u-%u listen=%s redis=%s pipes=%u pipe_size=%u version=%s", cfg.relay.name,
            (unsigned)cfg.relay.ports.lo, (unsigned)cfg.relay.ports.hi, cfg.relay.listen[0] ? cfg.relay.listen : "*",
            cfg.redis_str, pipes, pipe_size, P2M_VERSION);
    int rc = 0;
    if (p2m_loop_run(r->loop) != 0) {
        p2m_log(P2M_LOG_ERROR, "loop_failed", "error=\"%s\"", strerror(errno));
        rc = 1;
    }
    if (r->exit_code != 0)
        rc = r->exit_code;
    p2m_log(P2M_LOG_INFO, "relay_stop", "status=%d", rc);
    relay_free(r);
    return rc;
}
