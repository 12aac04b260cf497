/* pipe2me-relay's command line: see args.h. */
#include "args.h"
#include "relay.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p2m/err.h"

#define SHOWN_MAX 48 /* bytes of an argument quoted in an error before it is cut short */

/* Long-only options, and the long forms of the short ones: distinct values, so that getopt's
 * optopt tells which option an error is about. */
enum { OPT_CONFIG = 256, OPT_CHECK_CONFIG, OPT_WORKERS, OPT_HELP, OPT_VERSION, OPT_PIPES, OPT_PIPE_SIZE };

static const struct option longopts[] = {
    {"config", required_argument, NULL, OPT_CONFIG},       {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
    {"workers", required_argument, NULL, OPT_WORKERS},     {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},           {"pipes", required_argument, NULL, OPT_PIPES},
    {"pipe-size", required_argument, NULL, OPT_PIPE_SIZE}, {NULL, 0, NULL, 0}};

/* Writes an argument for an error message into buf (SHOWN_MAX * 4 + 4 bytes): printable ASCII as
 * is, any other byte as \xNN, cut short with "..." after SHOWN_MAX bytes. */
static const char *shown(const char *s, char *buf)
{
    size_t n = 0, i;
    for (i = 0; s[i] != '\0' && i < SHOWN_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            buf[n++] = (char)c;
        else
            n += (size_t)sprintf(buf + n, "\\x%02x", c);
    }
    if (s[i] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* The option an error from getopt_long is about, as the user would spell it. */
static const char *option_name(char **argv, char *buf)
{
    if (optopt >= OPT_CONFIG) {
        for (size_t i = 0; longopts[i].name != NULL; i++)
            if (longopts[i].val == optopt) {
                snprintf(buf, SHOWN_MAX * 4 + 4, "--%s", longopts[i].name);
                return buf;
            }
    }
    if (optopt > 0 && optopt < 256) {
        char opt[3] = {'-', (char)optopt, '\0'};
        return shown(opt, buf);
    }
    /* an unknown or ambiguous long option: getopt has stepped past it */
    return shown(argv[optind - 1], buf);
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

int relay_args_parse(int argc, char **argv, relay_args_t *out, char *err)
{
    char buf[SHOWN_MAX * 4 + 4];
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
                return p2m_err(err, "--workers: expected 1 to %d or auto, got %s", RELAY_WORKERS_MAX, shown(optarg, buf));
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
                return p2m_err(err, "--pipes: expected 1 to %d, got %s", RELAY_PIPES_MAX, shown(optarg, buf));
            break;
        case OPT_PIPE_SIZE:
            if (parse_uint(optarg, RELAY_PIPE_SIZE_MIN, RELAY_PIPE_SIZE_MAX, &out->pipe_size) != 0)
                return p2m_err(err, "--pipe-size: expected %d to %d bytes, got %s", RELAY_PIPE_SIZE_MIN, RELAY_PIPE_SIZE_MAX,
                               shown(optarg, buf));
            break;
        case ':':
            return p2m_err(err, "%s needs an argument", option_name(argv, buf));
        default:
            /* a long option given a value it does not take keeps its own code in optopt */
            if (optopt >= OPT_CONFIG)
                return p2m_err(err, "%s takes no argument", option_name(argv, buf));
            return p2m_err(err, "unknown option %s", option_name(argv, buf));
        }
    }
    if (optind < argc)
        return p2m_err(err, "unexpected argument %s", shown(argv[optind], buf));
    if (out->config == NULL)
        return p2m_err(err, "-c FILE is required");
    return 0;
}
