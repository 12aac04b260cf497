/* libFuzzer target for the pod's PEM chain parser (pod/chain.c: chain_parse), which reads the
 * registrar's answers to POST /certificate and GET /cacert and the files under DIR/tls/: it never
 * crashes or leaks, refuses with one printable line and OpenSSL's error queue empty, accepts only
 * 1 to CHAIN_CERTS_MAX certificates from at most CHAIN_PEM_MAX bytes, and the accepted chain
 * written back as PEM parses to the same certificates in the same order. */

#include "chain.h"
#include "fuzz.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[P2M_ERR_LEN] = "";

    /* data is exactly size bytes with no NUL after it: ASan catches a parser that reads on */
    STACK_OF(X509) *sk = chain_parse((const char *)data, size, err);
    FUZZ_CHECK(ERR_peek_error() == 0);
    if (sk == NULL) {
        fuzz_check_err_printable(err);
        return 0;
    }
    int n = sk_X509_num(sk);
    FUZZ_CHECK(size > 0 && size <= CHAIN_PEM_MAX);
    FUZZ_CHECK(n >= 1 && n <= CHAIN_CERTS_MAX);

    BIO *out = BIO_new(BIO_s_mem());
    FUZZ_CHECK(out != NULL);
    for (int i = 0; i < n; i++)
        FUZZ_CHECK(PEM_write_bio_X509(out, sk_X509_value(sk, i)) == 1);
    char *pem;
    long len = BIO_get_mem_data(out, &pem);
    FUZZ_CHECK(len > 0);
    /* the written form may be longer than the input (line breaks); within the limit it parses back */
    if (len <= CHAIN_PEM_MAX) {
        STACK_OF(X509) *again = chain_parse(pem, (size_t)len, err);
        FUZZ_CHECK(again != NULL && ERR_peek_error() == 0);
        FUZZ_CHECK(sk_X509_num(again) == n);
        for (int i = 0; i < n; i++)
            FUZZ_CHECK(X509_cmp(sk_X509_value(sk, i), sk_X509_value(again, i)) == 0);
        sk_X509_pop_free(again, X509_free);
    }
    BIO_free(out);
    sk_X509_pop_free(sk, X509_free);
    ERR_clear_error(); /* X509_cmp's own complaints (a certificate with a broken extension, say) */
    return 0;
}
