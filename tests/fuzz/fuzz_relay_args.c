/* libFuzzer target for relay_args_parse (relay/args.c), pipe2me-relay's command line; the input
 * split on NUL bytes is argv[1..] (fuzz_argv.h). It returns 0 or -1, refuses with one printable
 * line, gives values within args.h's bounds with the config path borrowed from argv, and the
 * canonical command line built from a result parses to the same result (which also shows that
 * getopt's state is reset between calls). */

#include "args.h"
#include "fuzz.h"
#include "fuzz_argv.h"
#include "p2m/err.h"
#include "relay.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_argv_t av;
    relay_args_t a, b;
    char err[P2M_ERR_LEN] = "";

    if (fuzz_argv_split(&av, "pipe2me-relay", data, size) != 0)
        return 0;
    int rc = relay_args_parse(av.argc, av.argv, &a, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        goto Exit;
    }
    FUZZ_CHECK(a.action == RELAY_ACTION_RUN || a.action == RELAY_ACTION_HELP || a.action == RELAY_ACTION_VERSION);
    if (a.action != RELAY_ACTION_RUN)
        goto Exit;
    FUZZ_CHECK(a.config != NULL && fuzz_argv_owns(&av, a.config));
    FUZZ_CHECK(a.check_only == 0 || a.check_only == 1);
    FUZZ_CHECK(a.workers >= 1 && a.workers <= RELAY_WORKERS_MAX);
    FUZZ_CHECK(a.pipes >= 1 && a.pipes <= RELAY_PIPES_MAX);
    FUZZ_CHECK(a.pipe_size >= RELAY_PIPE_SIZE_MIN && a.pipe_size <= RELAY_PIPE_SIZE_MAX);

    char workers[16], pipes[16], pipe_size[16];
    snprintf(workers, sizeof(workers), "%u", a.workers);
    snprintf(pipes, sizeof(pipes), "%u", a.pipes);
    snprintf(pipe_size, sizeof(pipe_size), "%u", a.pipe_size);
    char *canon[] = {"pipe2me-relay",
                     "--pipes",
                     pipes,
                     "--config",
                     (char *)a.config,
                     "-w",
                     workers,
                     "--pipe-size",
                     pipe_size,
                     a.check_only ? "--check-config" : "--",
                     NULL};
    err[0] = '\0';
    FUZZ_CHECK(relay_args_parse(10, canon, &b, err) == 0);
    FUZZ_CHECK(b.action == RELAY_ACTION_RUN && b.config == a.config && b.check_only == a.check_only && b.workers == a.workers &&
               b.pipes == a.pipes && b.pipe_size == a.pipe_size);
Exit:
    fuzz_argv_free(&av);
    return 0;
}
