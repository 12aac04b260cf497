#ifndef REGISTRAR_ARGS_H
#define REGISTRAR_ARGS_H

/* pipe2me-registrar's command line (args.c), apart from main.c so that tests and the fuzz target
 * (tests/fuzz/fuzz_registrar_args.c) run it without starting a registrar. */

typedef enum { REGISTRAR_ACTION_RUN = 0, REGISTRAR_ACTION_HELP, REGISTRAR_ACTION_VERSION } registrar_action_t;

typedef struct {
    registrar_action_t action; /* HELP or VERSION: the first -h/--help or --version seen; nothing else is checked */
    const char *config;        /* -c FILE, borrowed from argv; never NULL when action is RUN */
    int check_only;            /* --check-config */
} registrar_args_t;

/* Parses argv[1..argc) (argv[0] is the program; getopt_long may reorder argv) into *out, which
 * is zeroed first. Resets getopt's state, so it may be called more than once. Returns 0, or -1
 * with a one-line reason in err (printable ASCII: outside bytes are quoted as \xNN); main then
 * prints it and the usage and exits with status 2. */
int registrar_args_parse(int argc, char **argv, registrar_args_t *out, char *err);

#endif
