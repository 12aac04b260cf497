/* libFuzzer target for p2m_csr_check (lib/cert.c), the registrar's check of a pod's CSR body
 * (PROTOCOL 4.2): it never crashes or leaks, refuses with one printable line and leaves OpenSSL's
 * error queue empty, and a request it accepts really is for the name: its signature verifies, and
 * a certificate issued from it names only that host and carries the request's key. Inputs that
 * start like DER are also tried wrapped in PEM, as they are and re-signed (see below); the
 * corpus entries der_* are such. */

#include "fuzz.h"
#include "p2m/cert.h"
#include "p2m/err.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the name the seed corpus (tests/fuzz/corpus/csr) was made for */
#define NAME "demo.pipe2me.localhost"

static X509 *ca;
static EVP_PKEY *ca_key, *req_key;

/* A self-signed P-256 CA, and a key to re-sign requests with; made once, kept until exit. */
static void make_ca(void)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    req_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ca = X509_new();
    FUZZ_CHECK(ca_key != NULL && req_key != NULL && ca != NULL);
    FUZZ_CHECK(X509_set_version(ca, X509_VERSION_3) && ASN1_INTEGER_set(X509_get_serialNumber(ca), 1));
    FUZZ_CHECK(X509_NAME_add_entry_by_NID(X509_get_subject_name(ca), NID_commonName, MBSTRING_ASC, (const unsigned char *)"fuzz CA",
                                          -1, -1, 0));
    FUZZ_CHECK(X509_set_issuer_name(ca, X509_get_subject_name(ca)) && X509_set_pubkey(ca, ca_key));
    FUZZ_CHECK(X509_gmtime_adj(X509_getm_notBefore(ca), -3600) && X509_gmtime_adj(X509_getm_notAfter(ca), 86400 * 365));
    X509V3_set_ctx(&ctx, ca, ca, NULL, NULL, 0);
    FUZZ_CHECK((ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE")) != NULL);
    FUZZ_CHECK(X509_add_ext(ca, ext, -1));
    X509_EXTENSION_free(ext);
    FUZZ_CHECK(X509_sign(ca, ca_key, EVP_sha256()) > 0);
}

/* Checks one body against the invariants above. */
static void check_body(const char *body, size_t len)
{
    char err[P2M_ERR_LEN] = "";

    X509_REQ *req = p2m_csr_check(body, len, NAME, err);
    if (req == NULL) {
        fuzz_check_err_printable(err);
        FUZZ_CHECK(ERR_peek_error() == 0);
        return;
    }
    FUZZ_CHECK(len <= P2M_CSR_MAX);
    EVP_PKEY *key = X509_REQ_get0_pubkey(req);
    FUZZ_CHECK(key != NULL && X509_REQ_verify(req, key) == 1);
    FUZZ_CHECK(EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_is_a(key, "EC"));

    X509 *cert = p2m_cert_issue(req, NAME, ca, ca_key, (long long)time(NULL), 86400, err);
    FUZZ_CHECK(cert != NULL);
    FUZZ_CHECK(EVP_PKEY_eq(X509_get0_pubkey(cert), key) == 1);
    FUZZ_CHECK(X509_check_host(cert, NAME, 0, 0, NULL) == 1);
    FUZZ_CHECK(X509_check_host(cert, "other." NAME, 0, 0, NULL) != 1);
    FUZZ_CHECK(X509_check_ca(cert) == 0);
    FUZZ_CHECK(X509_get_ext_count(cert) == 6);
    FUZZ_CHECK(X509_verify(cert, ca_key) == 1);
    X509_free(cert);
    X509_REQ_free(req);
}

/* Checks der[0..len) wrapped in a CERTIFICATE REQUEST PEM block. */
static void check_pem(const unsigned char *der, long len)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *pem = NULL;
    FUZZ_CHECK(mem != NULL && PEM_write_bio(mem, "CERTIFICATE REQUEST", "", der, len));
    long pem_len = BIO_get_mem_data(mem, &pem);
    FUZZ_CHECK(pem_len > 0);
    check_body(pem, (size_t)pem_len);
    BIO_free(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ca == NULL)
        make_ca();

    /* data is exactly size bytes with no NUL after it: ASan catches a parser that reads on */
    check_body((const char *)data, size);

    /* Mutated base64 seldom decodes to DER that gets past the parser, and mutated DER seldom
     * keeps a valid signature, so an input that starts like DER (a SEQUENCE) is also checked
     * wrapped in PEM as it is, and, when it parses as a request, re-signed with our own key:
     * that reaches the subject and extension checks behind the signature. */
    if (size > 0 && size <= 12000 && data[0] == 0x30) {
        check_pem((const unsigned char *)data, (long)size);
        const unsigned char *p = data;
        X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)size);
        if (req != NULL && X509_REQ_set_pubkey(req, req_key) && X509_REQ_sign(req, req_key, EVP_sha256()) > 0) {
            unsigned char *der = NULL;
            int len = i2d_X509_REQ(req, &der);
            if (len > 0)
                check_pem(der, len);
            OPENSSL_free(der);
        }
        X509_REQ_free(req);
        ERR_clear_error();
    }
    return 0;
}
