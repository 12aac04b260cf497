#include "p2m/args.h"
#include "p2m/err.h"

#include <stdio.h>
#include <string.h>

const char *p2m_shown(const char *s, char *buf)
{
    size_t n = 0, i;
    for (i = 0; s[i] != '\0' && i < P2M_SHOWN_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            buf[n++] = (char)c;
        else
            n += (size_t)snprintf(buf + n, P2M_SHOWN_CAP - n, "\\x%02x", c);
    }
    if (s[i] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

const char *p2m_getopt_option_name(const struct option *longopts, int first_long, char **argv, char *buf)
{
    if (optopt >= first_long) {
        for (size_t i = 0; longopts[i].name != NULL; i++)
            if (longopts[i].val == optopt) {
                snprintf(buf, P2M_SHOWN_CAP, "--%s", longopts[i].name);
                return buf;
            }
    }
    if (optopt > 0 && optopt < 256) {
        char opt[3] = {'-', (char)optopt, '\0'};
        return p2m_shown(opt, buf);
    }
    /* an unknown or ambiguous long option: getopt has stepped past it */
    return p2m_shown(argv[optind - 1], buf);
}

int p2m_getopt_fail(const struct option *longopts, int first_long, char **argv, int opt, char *err)
{
    char buf[P2M_SHOWN_CAP];
    const char *name = p2m_getopt_option_name(longopts, first_long, argv, buf);
    if (opt == ':')
        return p2m_err(err, "%s needs an argument", name);
    /* a long option given a value it does not take keeps its own code in optopt */
    if (optopt >= first_long)
        return p2m_err(err, "%s takes no argument", name);
    return p2m_err(err, "unknown option %s", name);
}
