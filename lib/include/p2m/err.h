#ifndef P2M_ERR_H
#define P2M_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* Size of the caller-owned buffer every fallible p2m function fills with a one-line reason. */
#define P2M_ERR_LEN 256

/* Formats a reason into err (which may be NULL) and returns -1, so that error paths read
 * `return p2m_err(err, "relay.ports: expected LO-HI");`. */
int p2m_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
