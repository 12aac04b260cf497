/* pipe2me-registrar's command line: see args.h. */
#include "args.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "p2m/err.h"

#define SHOWN_MAX 48 /* bytes of an argument quoted in an error before it is cut short */

/* Long forms get values of their own (not the short letters), so that getopt's optopt tells
 * which option an error is about. */
enum { OPT_CONFIG = 256, OPT_CHECK_CONFIG, OPT_HELP, OPT_VERSION };

static const struct option longopts[] = {{"config", required_argument, NULL, OPT_CONFIG},
                                         {"check-config", no_argument, NULL, OPT_CHECK_CONFIG},
                                         {"help", no_argument, NULL, OPT_HELP},
                                         {"version", no_argument, NULL, OPT_VERSION},
                                         {NULL, 0, NULL, 0}};

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

int registrar_args_parse(int argc, char **argv, registrar_args_t *out, char *err)
{
    char buf[SHOWN_MAX * 4 + 4];
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
