/* pipe2me-relay: see relay.h and docs/PROTOCOL.md section 3.
 *
 *   pipe2me-relay -c FILE [--check-config] [--workers N|auto] [--pipes N] [--pipe-size BYTES]
 *
 * Exit status: 0 after SIGTERM/SIGINT or a successful --check-config; 1 when the relay fails
 * while running; 2 for a bad command line or configuration (one line on stderr). */
#include "args.h"
#include "relay.h"

#include <stdio.h>
#include <stdlib.h>

#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/sysports.h"

#ifndef P2M_VERSION
#define P2M_VERSION "0.1.0"
#endif

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

int main(int argc, char **argv)
{
    relay_args_t args;
    char err[P2M_ERR_LEN];

    if (relay_args_parse(argc, argv, &args, err) != 0) {
        fprintf(stderr, "pipe2me-relay: %s (see --help)\n", err);
        return 2;
    }
    if (args.action == RELAY_ACTION_HELP) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (args.action == RELAY_ACTION_VERSION) {
        printf("pipe2me-relay %s\n", P2M_VERSION);
        return 0;
    }
    const char *config = args.config;
    unsigned workers = args.workers;
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
    /* Outgoing connections on this host take their ports from the kernel's ephemeral range, so a
     * lease there can find its port taken (lease_bind_failed). Said once, before --workers splits
     * the range; nothing where the /proc files cannot be read. */
    p2m_sysports_risk_t risk;
    char warn[2 * P2M_SYSPORTS_FIX_MAX] = "";
    if (p2m_sysports_read(cfg.relay.ports, NULL, NULL, &risk, NULL) == 0 && risk.at_risk > 0)
        p2m_sysports_format(&risk, warn, sizeof(warn));
    if (args.check_only) {
        if (warn[0] != '\0')
            fprintf(stderr,
                    "pipe2me-relay: warning: relay.ports overlaps the kernel's ephemeral ports (net.ipv4.ip_local_port_range), "
                    "which outgoing connections may take; reserve them in net.ipv4.ip_local_reserved_ports: %s\n",
                    warn);
        printf("pipe2me-relay: %s: configuration ok (relay %s, ports %u-%u, workers %u)\n", config, cfg.relay.name,
               (unsigned)cfg.relay.ports.lo, (unsigned)cfg.relay.ports.hi, workers);
        return 0;
    }
    p2m_log_set_level(cfg.log_level);
    if (warn[0] != '\0')
        p2m_log(P2M_LOG_WARN, "port_range_ephemeral", "%s", warn);
    return workers > 1 ? workers_run(&cfg, workers, args.pipes, args.pipe_size) : relay_run(&cfg, args.pipes, args.pipe_size);
}
