/* Unit tests for relay_args_parse (relay/args.c), pipe2me-relay's command line: defaults, every
 * option in its short, long and --name=VALUE forms, limits +-1, and refusals that name the option
 * in one printable line. */

#include "args.h"
#include "check.h"
#include "p2m/err.h"
#include "relay.h"

#include <stdarg.h>
#include <string.h>

/* Runs relay_args_parse on a NULL-terminated list of arguments after the program name. */
static int parse(relay_args_t *a, char *err, ...)
{
    char *argv[32];
    va_list ap;
    va_start(ap, err);
    int argc = check_argv(argv, 32, "pipe2me-relay", ap);
    va_end(ap);
    err[0] = '\0';
    return relay_args_parse(argc, argv, a, err);
}

int main(void)
{
    relay_args_t a;
    char err[P2M_ERR_LEN];

    CHECK_CTX("defaults");
    if (CHECK_RC(parse(&a, err, "-c", "p.json", NULL), 0, err)) {
        CHECK_EQ_INT(a.action, RELAY_ACTION_RUN);
        CHECK_EQ_STR(a.config, "p.json");
        CHECK_EQ_INT(a.check_only, 0);
        CHECK_EQ_INT(a.workers, 1);
        CHECK_EQ_INT(a.pipes, RELAY_PIPES_DEFAULT);
        CHECK_EQ_INT(a.pipe_size, RELAY_PIPE_SIZE_DEFAULT);
    }

    CHECK_CTX("every option, long forms");
    if (CHECK_RC(parse(&a, err, "--config=c", "--check-config", "--workers", "64", "--pipes=8192", "--pipe-size", "1048576", NULL),
                 0, err)) {
        CHECK_EQ_STR(a.config, "c");
        CHECK_EQ_INT(a.check_only, 1);
        CHECK_EQ_INT(a.workers, 64);
        CHECK_EQ_INT(a.pipes, 8192);
        CHECK_EQ_INT(a.pipe_size, 1048576);
    }
    CHECK_CTX("short forms, clustered, options after a word are still options");
    if (CHECK_RC(parse(&a, err, "-tcx.json", "-w1", "--pipes", "1", "--pipe-size", "4096", NULL), 0, err)) {
        CHECK_EQ_STR(a.config, "x.json");
        CHECK_EQ_INT(a.check_only, 1);
        CHECK_EQ_INT(a.workers, 1);
        CHECK_EQ_INT(a.pipes, 1);
        CHECK_EQ_INT(a.pipe_size, 4096);
    }
    CHECK_CTX("workers auto");
    if (CHECK_RC(parse(&a, err, "-c", "p", "-w", "auto", NULL), 0, err))
        CHECK(a.workers >= 1 && a.workers <= RELAY_WORKERS_MAX);
    CHECK_CTX("a config path that looks like an option");
    if (CHECK_RC(parse(&a, err, "-c", "--check-config", NULL), 0, err)) {
        CHECK_EQ_STR(a.config, "--check-config");
        CHECK_EQ_INT(a.check_only, 0);
    }

    CHECK_CTX("help and version");
    CHECK(parse(&a, err, "--help", NULL) == 0 && a.action == RELAY_ACTION_HELP);
    CHECK(parse(&a, err, "-c", "p", "-h", "--workers", "0", NULL) == 0 && a.action == RELAY_ACTION_HELP);
    CHECK(parse(&a, err, "--version", NULL) == 0 && a.action == RELAY_ACTION_VERSION);
    check_refusal(parse(&a, err, "--workers", "0", "--help", NULL), err, "--workers"); /* in order: the error comes first */

    CHECK_CTX("refusals");
    check_refusal(parse(&a, err, NULL), err, "-c FILE is required");
    check_refusal(parse(&a, err, "-t", NULL), err, "-c FILE is required");
    check_refusal(parse(&a, err, "-c", "p", "--workers", "0", NULL), err, "--workers: expected 1 to 64 or auto, got 0");
    check_refusal(parse(&a, err, "-c", "p", "--workers", "65", NULL), err, "got 65");
    check_refusal(parse(&a, err, "-c", "p", "--workers", "-1", NULL), err, "got -1");
    check_refusal(parse(&a, err, "-c", "p", "--workers", "", NULL), err, "--workers");
    check_refusal(parse(&a, err, "-c", "p", "--workers", "2x", NULL), err, "got 2x");
    check_refusal(parse(&a, err, "-c", "p", "--workers", "4294967297", NULL), err, "--workers");
    check_refusal(parse(&a, err, "-c", "p", "--pipes", "0", NULL), err, "--pipes: expected 1 to 8192");
    check_refusal(parse(&a, err, "-c", "p", "--pipes", "8193", NULL), err, "--pipes");
    check_refusal(parse(&a, err, "-c", "p", "--pipe-size", "4095", NULL), err, "--pipe-size: expected 4096 to 1048576 bytes");
    check_refusal(parse(&a, err, "-c", "p", "--pipe-size", "1048577", NULL), err, "--pipe-size");
    check_refusal(parse(&a, err, "-c", NULL), err, "-c needs an argument");
    check_refusal(parse(&a, err, "-c", "p", "--pipes", NULL), err, "--pipes needs an argument");
    check_refusal(parse(&a, err, "-c", "p", "--config", NULL), err, "--config needs an argument");
    check_refusal(parse(&a, err, "-c", "p", "-x", NULL), err, "unknown option -x");
    check_refusal(parse(&a, err, "-c", "p", "-tx", NULL), err, "unknown option -x"); /* not the program's name */
    check_refusal(parse(&a, err, "-c", "p", "-\x01", NULL), err, "unknown option -\\x01");
    check_refusal(parse(&a, err, "-c", "p", "--frob\n", NULL), err, "unknown option --frob\\x0a");
    check_refusal(parse(&a, err, "-c", "p", "--pipe", "9", NULL), err, "unknown option --pipe"); /* ambiguous */
    check_refusal(parse(&a, err, "-c", "p", "--check-config=yes", NULL), err, "--check-config takes no argument");
    check_refusal(parse(&a, err, "-c", "p", "extra\xff", NULL), err, "unexpected argument extra\\xff");
    check_refusal(parse(&a, err, "-c", "p", "--", "-t", NULL), err, "unexpected argument -t");

    CHECK_CTX("a long value is cut short in the reason");
    char longv[300];
    memset(longv, '9', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    check_refusal(parse(&a, err, "-c", "p", "--pipes", longv, NULL), err, "...");
    CHECK(strlen(err) < 120);

    CHECK_CTX("called again: getopt starts over");
    CHECK_RC(parse(&a, err, "-c", "p", "-x", NULL), -1, err);
    if (CHECK_RC(parse(&a, err, "-c", "q", NULL), 0, err))
        CHECK_EQ_STR(a.config, "q");
    return check_done("relay_args");
}
