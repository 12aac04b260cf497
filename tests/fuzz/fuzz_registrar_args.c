/* libFuzzer target for registrar_args_parse (registrar/args.c), pipe2me-registrar's command line;
 * the input split on NUL bytes is argv[1..] (fuzz_argv.h). It returns 0 or -1, refuses with one
 * printable line, hands back a config path borrowed from argv, and the canonical command line
 * built from a result parses to the same result (which also shows that getopt's state is reset
 * between calls). */

#include "args.h"
#include "fuzz.h"
#include "fuzz_argv.h"
#include "p2m/err.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_argv_t av;
    registrar_args_t a, b;
    char err[P2M_ERR_LEN] = "";

    if (fuzz_argv_split(&av, "pipe2me-registrar", data, size) != 0)
        return 0;
    int rc = registrar_args_parse(av.argc, av.argv, &a, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        goto Exit;
    }
    FUZZ_CHECK(a.action == REGISTRAR_ACTION_RUN || a.action == REGISTRAR_ACTION_HELP || a.action == REGISTRAR_ACTION_VERSION);
    if (a.action != REGISTRAR_ACTION_RUN)
        goto Exit;
    FUZZ_CHECK(a.config != NULL && fuzz_argv_owns(&av, a.config));
    FUZZ_CHECK(a.check_only == 0 || a.check_only == 1);

    char *canon[] = {"pipe2me-registrar", "-c", (char *)a.config, a.check_only ? "--check-config" : "--", NULL};
    err[0] = '\0';
    FUZZ_CHECK(registrar_args_parse(4, canon, &b, err) == 0);
    FUZZ_CHECK(b.action == REGISTRAR_ACTION_RUN && b.config == a.config && b.check_only == a.check_only);
Exit:
    fuzz_argv_free(&av);
    return 0;
}
