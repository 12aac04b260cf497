/* pipe2me-relay: see relay.h and docs/PROTOCOL.md section 3.
 *
 *   pipe2me-relay -c FILE [--check-config] [--workers N|auto] [--pipes N] [--pipe-size BYTES]
 *
 * Exit status: 0 after SIGTERM/SIGINT or a successful --check-config; 1 when the relay fails
 * while running; 2 for a bad command line or configuration (one line on stderr). */
#include "relay.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p2m/err.h"

#ifndef P2M_VERSION
#define P2M_VERSION "0.1.0"
#endif

#define WORKERS_MAX 64

static const char usage_text[] =
    "Usage: pipe2me-relay -c FILE [--check-config] [--workers N|auto] [--pipes N] [--pipe-size BYTES]\n"
    "\n"
    "Listens on the ports the registrar leases (relay.ports) and splices each consumer\n"
    "connection to an idle pre-connection of the same label.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE    configuration file (required)\n"
    "  -t, --check-config   check the configuration and exit\n"
    "  -w, --workers N      run N relay processes (auto: one per core), named NAME-0 ... NAME-N-1,\n"
    "                       each with its slice of relay.ports; default 1, named NAME\n"
    "      --pipes N        most splice pipes open at once per process, 2 descriptors each\n"
    "                       (default 1024)\n"
    "      --pipe-size B    bytes per pipe (default 65536)\n"
    "  -h, --help           show this text\n"
    "      --version        show the version\n"
    "\n"
    "SIGTERM or SIGINT stops the relay: connections are closed and its heartbeat and idle\n"
    "counts removed from Redis.\n";

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

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "pipe2me-relay: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

int main(int argc, char **argv)
{
    enum { OPT_VERSION = 256, OPT_PIPES, OPT_PIPE_SIZE };
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"check-config", no_argument, NULL, 't'},
                                             {"workers", required_argument, NULL, 'w'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, OPT_VERSION},
                                             {"pipes", required_argument, NULL, OPT_PIPES},
                                             {"pipe-size", required_argument, NULL, OPT_PIPE_SIZE},
                                             {NULL, 0, NULL, 0}};
    const char *config = NULL;
    int check_only = 0, opt;
    unsigned pipes = RELAY_PIPES_DEFAULT, pipe_size = RELAY_PIPE_SIZE_DEFAULT, workers = 1;
    char err[P2M_ERR_LEN];

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:tw:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'w':
            if (strcmp(optarg, "auto") == 0) {
                long cores = sysconf(_SC_NPROCESSORS_ONLN);
                workers = cores < 1 ? 1 : cores > WORKERS_MAX ? WORKERS_MAX : (unsigned)cores;
            } else if (parse_uint(optarg, 1, WORKERS_MAX, &workers) != 0) {
                return usage_error("--workers: expected 1 to 64 or auto, got %s", optarg);
            }
            break;
        case 'h':
            fputs(usage_text, stdout);
            return 0;
        case OPT_VERSION:
            printf("pipe2me-relay %s\n", P2M_VERSION);
            return 0;
        case OPT_PIPES:
            if (parse_uint(optarg, 1, 8192, &pipes) != 0)
                return usage_error("--pipes: expected 1 to 8192, got %s", optarg);
            break;
        case OPT_PIPE_SIZE:
            if (parse_uint(optarg, 4096, 1048576, &pipe_size) != 0)
                return usage_error("--pipe-size: expected 4096 to 1048576 bytes, got %s", optarg);
            break;
        case ':':
            return usage_error("%s needs an argument", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument %s", argv[optind]);
    if (config == NULL)
        return usage_error("%s", "-c FILE is required");

    p2m_config_t cfg;
    p2m_config_defaults(&cfg);
    if (p2m_config_load(config, &cfg, err) != 0) {
        fprintf(stderr, "pipe2me-relay: %s\n", err);
        return 2;
    }
    /* What the relay adds to the shared checks: relay.listen resolves, the ports split. */
    relay_t probe = {.cfg = cfg};
    p2m_config_t one;
    if (ports_init(&probe, err) != 0 || (workers > 1 && workers_config(&cfg, workers, workers - 1, &one, err) != 0)) {
        fprintf(stderr, "pipe2me-relay: %s\n", err);
        free(probe.leases);
        return 2;
    }
    free(probe.leases);
    if (check_only) {
        printf("pipe2me-relay: %s: configuration ok (relay %s, ports %u-%u, workers %u)\n", config, cfg.relay.name,
               (unsigned)cfg.relay.ports.lo, (unsigned)cfg.relay.ports.hi, workers);
        return 0;
    }
    p2m_log_set_level(cfg.log_level);
    return workers > 1 ? workers_run(&cfg, workers, pipes, pipe_size) : relay_run(&cfg, pipes, pipe_size);
}
