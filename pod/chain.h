#ifndef POD_CHAIN_H
#define POD_CHAIN_H

/* A PEM certificate chain as the registrar answers POST /certificate/LABEL and GET /cacert
 * (docs/PROTOCOL.md 4), and as cert.c keeps it in DIR/tls/cert.pem and ca.pem. A pure parser, kept
 * apart from cert.c so that unit tests and tests/fuzz/fuzz_chain.c reach it. */

#include <stddef.h>

#define CHAIN_PEM_MAX 65536 /* bytes of a chain or CA file */
#define CHAIN_CERTS_MAX 8   /* certificates in a chain or CA file */

struct stack_st_X509; /* STACK_OF(X509): OpenSSL stays out of this header */

/* Reads the CERTIFICATE blocks in pem[0..len) (not NUL-terminated; text outside the blocks is
 * skipped, as OpenSSL's PEM reader does) in their order. Returns a new stack of 1 to
 * CHAIN_CERTS_MAX certificates that the caller frees with sk_X509_pop_free(sk, X509_free), or NULL
 * with err when the input is empty, longer than CHAIN_PEM_MAX, holds no certificate or more than
 * CHAIN_CERTS_MAX, or a PEM block (of any type) that does not decode to what it says it is. OpenSSL's
 * error queue is left empty either way. */
struct stack_st_X509 *chain_parse(const char *pem, size_t len, char *err);

#endif
