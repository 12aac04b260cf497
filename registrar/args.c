/* pipe2me-registrar's command line: see args.h. */
#include "args.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "p2m/args.h"
#include "p2m/err.h"

/* Long forms get values of their own (not the short letters), so that getopt's optopt tells
 * which option an error is about. */
enum { OPT_CONFIG = 256, OPT_CHECK_CONFIG, OPT_HELP, OPT_VERSION };

static const struct option longopts[] = {{"config", required_argument, NULL, OPT_CONFIG},
                                         {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {"version", no_argument, NULL, OPT_VERSION},
                                         {NULL, 0, NULL, 0}};

int registrar_args_parse(int argc, char **argv, registrar_args_t *out, char *err)
{
    char buf[P2M_SHOWN_CAP];
    int opt;

    *out = (registrar_args_t){0};
    optind = 0; /* GNU getopt: start over, as on a first call */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
        case OPT_CONFIG:
            out->config = optarg;
            break;
        case OPT_CHECK_CONFIG:
            out->check_only = 1;
            break;
        case 'h':
        case OPT_HELP:
            out->action = REGISTRAR_ACTION_HELP;
            return 0;
        case OPT_VERSION:
            out->action = REGISTRAR_ACTION_VERSION;
            return 0;
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
