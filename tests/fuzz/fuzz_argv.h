#ifndef P2M_TEST_FUZZ_ARGV_H
#define P2M_TEST_FUZZ_ARGV_H

/* For the command-line targets (fuzz_*_args.c): the input split on NUL bytes is argv[1..], so a
 * corpus file is the arguments written one after another with a NUL between them.
 *
 *   fuzz_argv_t av;
 *   if (fuzz_argv_split(&av, "pipe2me-relay", data, size) != 0) return 0;
 *   ... parse(av.argc, av.argv, ...) ...
 *   fuzz_argv_free(&av);
 *
 * Each argument is its own malloc'd copy, so that ASan catches a parser reading past one. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ARGC_MAX 1024 /* longer inputs are cut: more than any parser here accepts */

typedef struct {
    int argc;
    char **argv; /* argc entries and a NULL; a parser may reorder the array (getopt does) */
    char **own;  /* the same strings in their original order, for freeing */
} fuzz_argv_t;

/* Splits data into av->argv[1..] at each NUL (no input: argc 1; n NULs: n + 1 arguments, maybe
 * empty). Returns 0, or -1 when out of memory. */
static inline int fuzz_argv_split(fuzz_argv_t *av, const char *prog, const uint8_t *data, size_t size)
{
    size_t n = 1;
    for (size_t i = 0; i < size; i++)
        n += data[i] == '\0';
    if (size == 0)
        n = 0;
    if (n > FUZZ_ARGC_MAX - 1)
        n = FUZZ_ARGC_MAX - 1;
    av->argc = (int)n + 1;
    av->argv = calloc(n + 2, sizeof(char *));
    av->own = calloc(n + 2, sizeof(char *));
    if (av->argv == NULL || av->own == NULL)
        goto Fail;
    av->own[0] = strdup(prog);
    if (av->own[0] == NULL)
        goto Fail;
    const uint8_t *p = data, *end = data + size;
    for (size_t i = 1; i <= n; i++) {
        const uint8_t *nul = memchr(p, '\0', (size_t)(end - p));
        size_t len = nul != NULL ? (size_t)(nul - p) : (size_t)(end - p);
        if ((av->own[i] = malloc(len + 1)) == NULL)
            goto Fail;
        memcpy(av->own[i], p, len);
        av->own[i][len] = '\0';
        p += len + (nul != NULL);
    }
    memcpy(av->argv, av->own, (n + 1) * sizeof(char *));
    return 0;
Fail:
    if (av->own != NULL)
        for (size_t i = 0; i <= n; i++)
            free(av->own[i]);
    free(av->own);
    free(av->argv);
    return -1;
}

static inline void fuzz_argv_free(fuzz_argv_t *av)
{
    for (int i = 0; i < av->argc; i++)
        free(av->own[i]);
    free(av->own);
    free(av->argv);
}

/* 1 when s is one of the argument strings (or points into one): what a parser hands back must be
 * borrowed from argv, not from a buffer of its own. */
static inline int fuzz_argv_owns(const fuzz_argv_t *av, const char *s)
{
    for (int i = 0; i < av->argc; i++)
        if (s >= av->own[i] && s <= av->own[i] + strlen(av->own[i]))
            return 1;
    return 0;
}

#endif
