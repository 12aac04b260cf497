#ifndef P2M_TEST_FUZZ_H
#define P2M_TEST_FUZZ_H

/* What every tests/fuzz/fuzz_<parser>.c shares:
 *
 *   FUZZ_CHECK(cond);              an invariant: on failure prints file, line and the condition, then aborts
 *   fuzz_check_err(err);           a refusal's reason: 1 to P2M_ERR_LEN - 1 bytes, no newline
 *   fuzz_check_err_printable(err); the same, every byte printable ASCII (nothing raw from the input)
 *   s = fuzz_cstr(data, size);     a NUL-terminated copy for parsers that take a C string
 *   FUZZ_TERMINATED(field);        a char array field holds a NUL
 *
 * Each target defines LLVMFuzzerTestOneInput, declared here. */

#include "p2m/err.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                                                           \
    do {                                                                                                                           \
        if (!(cond)) {                                                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                                           \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)

#define FUZZ_TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A parser's reason for a refusal is one non-empty line that fits its buffer. */
static inline void fuzz_check_err(const char *err)
{
    size_t n = strnlen(err, P2M_ERR_LEN);
    FUZZ_CHECK(n > 0 && n < P2M_ERR_LEN);
    FUZZ_CHECK(memchr(err, '\n', n) == NULL);
}

/* As fuzz_check_err, and every byte is printable ASCII: the reason quotes nothing raw. */
static inline void fuzz_check_err_printable(const char *err)
{
    size_t n = strnlen(err, P2M_ERR_LEN);
    FUZZ_CHECK(n > 0 && n < P2M_ERR_LEN);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)err[i] >= 0x20 && (unsigned char)err[i] < 0x7f);
}

/* A malloc'd copy of data[0..size) with a NUL after it (the parser sees the input up to its first
 * NUL); NULL when out of memory. The caller frees it. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
