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
    va_list ap;
    va_start(ap, err);
    int argc = check_argv(argv, 32, "pipe2me-registrar", ap);
    va_end(ap);
    err[0] = '\0';
    return registrar_args_parse(argc, argv, a, err);
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
    check_refusal(parse(&a, err, NULL), err, "-c FILE is required");
    check_refusal(parse(&a, err, "--check-config", NULL), err, "-c FILE is required");
    check_refusal(parse(&a, err, "-c", NULL), err, "-c needs an argument");
    check_refusal(parse(&a, err, "--config", NULL), err, "--config needs an argument");
    check_refusal(parse(&a, err, "-c", "p", "-t", NULL), err, "unknown option -t"); /* --check-config has no short form */
    check_refusal(parse(&a, err, "-c", "p", "-V", NULL), err, "unknown option -V");
    check_refusal(parse(&a, err, "-c", "p", "--frob\x1b[1m", NULL), err, "unknown option --frob\\x1b[1m");
    check_refusal(parse(&a, err, "-c", "p", "--help=1", NULL), err, "--help takes no argument");
    check_refusal(parse(&a, err, "-c", "p", "x", NULL), err, "unexpected argument x");

    CHECK_CTX("called again: getopt starts over");
    CHECK_RC(parse(&a, err, "-hc", NULL), 0, err);
    if (CHECK_RC(parse(&a, err, "-c", "q", NULL), 0, err))
        CHECK_EQ_STR(a.config, "q");
    return check_done("registrar_args");
}
