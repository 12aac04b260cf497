/* Unit tests for registrar_args_parse (registrar/args.c), pipe2me-registrar's command line: the
 * options in their forms, and refusals that name the option in one printable line. */

#include "args.h"
#include "check.h"
#include "p2m/err.h"

#include <stdarg.h>
#include <string.h>

/* Runs registrar_args_parse on a NULL-terminated list of arguments after the program name. */
static int parse(registrar_args_t *a, char *err, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    argv[argc++] = "pipe2me-registrar";
    for (char *s; (s = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = s;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return registrar_args_parse(argc, argv, a, err);
}

static void refused(int rc, const char *err, const char *want)
{
    CHECK_RC(rc, -1, err);
    CHECK_MSG(strstr(err, want) != NULL, "err %s does not mention %s", check_str(err), check_str(want));
    for (const char *p = err; *p != '\0'; p++)
        if (!CHECK_MSG(*p >= 0x20 && *p < 0x7f, "err is not printable: %s", check_str(err)))
            break;
}

int main(void)
{
    registrar_args_t a;
    char err[P2M_ERR_LEN];

    CHECK_CTX("accepted");
    if (CHECK_RC(parse(&a, err, "-c", "p.json", NULL), 0, err)) {
        CHECK_EQ_INT(a.action, REGISTRAR_ACTION_RUN);
        CHECK_EQ_STR(a.config, "p.json");
        CHECK_EQ_INT(a.check_only, 0);
    }
    if (CHECK_RC(parse(&a, err, "--check-config", "--config=c", NULL), 0, err)) {
        CHECK_EQ_STR(a.config, "c");
        CHECK_EQ_INT(a.check_only, 1);
    }
    if (CHECK_RC(parse(&a, err, "-cx", "--check", NULL), 0, err)) { /* unambiguous abbreviation */
        CHECK_EQ_STR(a.config, "x");
        CHECK_EQ_INT(a.check_only, 1);
    }
    CHECK(parse(&a, err, "-h", NULL) == 0 && a.action == REGISTRAR_ACTION_HELP);
    CHECK(parse(&a, err, "-c", "p", "--help", NULL) == 0 && a.action == REGISTRAR_ACTION_HELP);
    CHECK(parse(&a, err, "--version", "-x", NULL) == 0 && a.action == REGISTRAR_ACTION_VERSION);

    CHECK_CTX("refused");
    refused(parse(&a, err, NULL), err, "-c FILE is required");
    refused(parse(&a, err, "--check-config", NULL), err, "-c FILE is required");
    refused(parse(&a, err, "-c", NULL), err, "-c needs an argument");
    refused(parse(&a, err, "--config", NULL), err, "--config needs an argument");
    refused(parse(&a, err, "-c", "p", "-t", NULL), err, "unknown option -t"); /* --check-config has no short form */
    refused(parse(&a, err, "-c", "p", "-V", NULL), err, "unknown option -V");
    refused(parse(&a, err, "-c", "p", "--frob\x1b[1m", NULL), err, "unknown option --frob\\x1b[1m");
    refused(parse(&a, err, "-c", "p", "--help=1", NULL), err, "--help takes no argument");
    refused(parse(&a, err, "-c", "p", "x", NULL), err, "unexpected argument x");

    CHECK_CTX("called again: getopt starts over");
    CHECK_RC(parse(&a, err, "-hc", NULL), 0, err);
    if (CHECK_RC(parse(&a, err, "-c", "q", NULL), 0, err))
        CHECK_EQ_STR(a.config, "q");
    return check_done("registrar_args");
}
