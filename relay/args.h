#ifndef RELAY_ARGS_H
#define RELAY_ARGS_H

/* pipe2me-relay's command line (args.c), apart from main.c so that tests and the fuzz target
 * (tests/fuzz/fuzz_relay_args.c) run it without starting a relay. */

#define RELAY_WORKERS_MAX 64
#define RELAY_PIPES_MAX 8192
#define RELAY_PIPE_SIZE_MIN 4096
#define RELAY_PIPE_SIZE_MAX 1048576

typedef enum { RELAY_ACTION_RUN = 0, RELAY_ACTION_HELP, RELAY_ACTION_VERSION } relay_action_t;

typedef struct {
    relay_action_t action; /* HELP or VERSION: the first -h/--help or --version seen; nothing else is checked */
    const char *config;    /* -c FILE, borrowed from argv; never NULL when action is RUN */
    int check_only;        /* -t, --check-config */
    unsigned workers;      /* -w N: 1..RELAY_WORKERS_MAX, "auto" the online cores within that; default 1 */
    unsigned pipes;        /* --pipes: 1..RELAY_PIPES_MAX, default RELAY_PIPES_DEFAULT */
    unsigned pipe_size;    /* --pipe-size: RELAY_PIPE_SIZE_MIN..RELAY_PIPE_SIZE_MAX, default RELAY_PIPE_SIZE_DEFAULT */
} relay_args_t;

/* Parses argv[1..argc) (argv[0] is the program; getopt_long may reorder argv) into *out, which
 * is reset to the defaults first. Resets getopt's state, so it may be called more than once.
 * Returns 0, or -1 with a one-line reason in err (printable ASCII: outside bytes are quoted as
 * \xNN) that main prints before exiting with status 2. */
int relay_args_parse(int argc, char **argv, relay_args_t *out, char *err);

#endif
