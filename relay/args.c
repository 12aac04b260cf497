/* pipe2me-relay's command line: see args.h. */
#include "args.h"
#include "relay.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p2m/args.h"
#include "p2m/err.h"

/* Long-only options, and the long forms of the short ones: distinct values, so that getopt's
 * optopt tells which option an error is about. */
enum { OPT_CONFIG = 256, OPT_CHECK_CONFIG, OPT_WORKERS, OPT_HELP, OPT_VERSION, OPT_PIPES, OPT_PIPE_SIZE };

static const struct option longopts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},       {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"workers", required_argument, NULL, OPT_WORKERS},     {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},           {"pipes", required_argument, NULL, OPT_PIPES},
    {"pipe-size", required_argument, NULL, OPT_PIPE_SIZE}, {NULL, 0, NULL, 0}};

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

int relay_args_parse(int argc, char **argv, relay_args_t *out, char *err)
{
    char buf[P2M_SHOWN_CAP];
    int opt;

    *out = (relay_args_t){.workers = 1, .pipes = RELAY_PIPES_DEFAULT, .pipe_size = RELAY_PIPE_SIZE_DEFAULT};
    optind = 0; /* GNU getopt: start over, as on a first call */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:tw:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
        case OPT_CONFIG:
            out->config = optarg;
            break;
        case 't':
        case OPT_CHECK_CONFIG:
            out->check_only = 1;
            break;
        case 'w':
        case OPT_WORKERS:
            if (strcmp(optarg, "auto") == 0) {
                long cores = sysconf(_SC_NPROCESSORS_ONLN);
                out->workers = cores < 1 ? 1 : cores > RELAY_WORKERS_MAX ? RELAY_WORKERS_MAX : (unsigned)cores;
            } else if (parse_uint(optarg, 1, RELAY_WORKERS_MAX, &out->workers) != 0) {
                return p2m_err(err, "--workers: expected 1 to %d or auto, got %s", RELAY_WORKERS_MAX, p2m_shown(optarg, buf));
            }
            break;
        case 'h':
        case OPT_HELP:
            out->action = RELAY_ACTION_HELP;
            return 0;
        case OPT_VERSION:
            out->action = RELAY_ACTION_VERSION;
            return 0;
        case OPT_PIPES:
            if (parse_uint(optarg, 1, RELAY_PIPES_MAX, &out->pipes) != 0)
                return p2m_err(err, "--pipes: expected 1 to %d, got %s", RELAY_PIPES_MAX, p2m_shown(optarg, buf));
            break;
        case OPT_PIPE_SIZE:
            if (parse_uint(optarg, RELAY_PIPE_SIZE_MIN, RELAY_PIPE_SIZE_MAX, &out->pipe_size) != 0)
                return p2m_err(err, "--pipe-size: expected %d to %d bytes, got %s", RELAY_PIPE_SIZE_MIN, RELAY_PIPE_SIZE_MAX,
                               p2m_shown(optarg, buf));
            break;
        case ':':
        default:
            return p2m_getopt_fail(longopts, OPT_CONFIG, argv, opt, err);
        }
    }
    if (optind < argc)
        return p2m_err(err, "unexpected argument %s", p2m_shown(argv[optind], buf));
    if (out->config == NULL)
        return p2m_err(err, "-c FILE is required");
    return 0;
}
