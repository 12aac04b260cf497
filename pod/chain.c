/* A PEM certificate chain (see chain.h). */
#include "chain.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "p2m/err.h"

STACK_OF(X509) * chain_parse(const char *pem, size_t len, char *err)
{
    STACK_OF(X509) *sk = NULL, *ret = NULL;
    X509 *x;
    BIO *bio = NULL;
    if (len == 0 || len > CHAIN_PEM_MAX) {
        p2m_err(err, len == 0 ? "empty" : "larger than %d bytes", CHAIN_PEM_MAX);
        return NULL;
    }
    /* The verdict below reads OpenSSL's error queue: start it empty, whatever the pod's TLS code
     * (same thread) left in it. */
    ERR_clear_error();
    if ((bio = BIO_new_mem_buf(pem, (int)len)) == NULL || (sk = sk_X509_new_null()) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_num(sk) >= CHAIN_CERTS_MAX || !sk_X509_push(sk, x)) {
            X509_free(x);
            p2m_err(err, "more than %d certificates", CHAIN_CERTS_MAX);
            goto Exit;
        }
    }
    /* The end of the input reads as an error too: "no start line". Any other error is a block that
     * does not decode, and the certificates after it would be lost: a cut chain is refused. */
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
        if (sk_X509_num(sk) == 0)
            p2m_err(err, "a PEM block does not decode");
        else
            p2m_err(err, "a PEM block after certificate %d does not decode", sk_X509_num(sk));
        goto Exit;
    }
    if (sk_X509_num(sk) == 0) {
        p2m_err(err, "no PEM certificate");
        goto Exit;
    }
    ret = sk;
Exit:
    BIO_free(bio);
    if (ret == NULL)
        sk_X509_pop_free(sk, X509_free);
    return ret;
}
