#include "p2m/cert.h"
#include "p2m/err.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest DNS name (RFC 1035), and longest CN (RFC 5280 ub-common-name): a longer name goes in
 * the subjectAltName only, which is what clients match against anyway. */
#define DNS_NAME_MAX 253
#define CN_MAX 64

/* Our own names (not attacker data): [A-Za-z0-9.-], 1..253 bytes. They are later written into
 * certificates and formatted into reasons, so nothing else is let through. */
static int name_valid(const char *name, char *err)
{
    size_t len = name == NULL ? 0 : strlen(name);
    if (len == 0 || len > DNS_NAME_MAX)
        return p2m_err(err, "certificate name must be 1-%d bytes", DNS_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return p2m_err(err, "certificate name has a character outside [A-Za-z0-9.-]");
    }
    return 0;
}

/* SHA-256, or NULL for keys whose signature scheme takes no separate digest (Ed25519, Ed448). */
static const EVP_MD *sign_digest(EVP_PKEY *key)
{
    char name[64];
    if (EVP_PKEY_get_default_digest_name(key, name, sizeof(name)) == 2 && strcmp(name, "UNDEF") == 0)
        return NULL;
    return EVP_sha256();
}

/* subject CN=name, or an empty subject when name is too long for a CN */
static int set_subject(X509_NAME *subject, const char *name, char *err)
{
    if (strlen(name) > CN_MAX)
        return 0;
    if (!X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0))
        return p2m_err(err, "cannot set the subject CN");
    return 0;
}

/* A GENERAL_NAMES holding exactly DNS:name. */
static GENERAL_NAMES *san_for(const char *name)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_IA5STRING *dns = ASN1_IA5STRING_new();

    if (gens == NULL || gen == NULL || dns == NULL || !ASN1_STRING_set(dns, name, -1))
        goto Error;
    GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
    dns = NULL;
    if (!sk_GENERAL_NAME_push(gens, gen))
        goto Error;
    return gens;

Error:
    ASN1_IA5STRING_free(dns);
    GENERAL_NAME_free(gen);
    sk_GENERAL_NAME_free(gens);
    return NULL;
}

/* Copies what a memory BIO holds into a malloc'd NUL-terminated string. */
static char *pem_string(BIO *mem, size_t *len, char *err)
{
    char *data = NULL, *out;
    long n = BIO_get_mem_data(mem, &data);
    if (n <= 0 || data == NULL) {
        p2m_err(err, "cannot encode PEM");
        return NULL;
    }
    if ((out = malloc((size_t)n + 1)) == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    if (len != NULL)
        *len = (size_t)n;
    return out;
}

char *p2m_csr_make(EVP_PKEY *key, const char *name, size_t *len, char *err)
{
    X509_REQ *req = NULL;
    GENERAL_NAMES *san = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_EXTENSION *ext = NULL;
    BIO *mem = NULL;
    char *pem = NULL;

    if (key == NULL) {
        p2m_err(err, "no key");
        goto Exit;
    }
    if (name_valid(name, err) != 0)
        goto Exit;
    if ((req = X509_REQ_new()) == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        set_subject(X509_REQ_get_subject_name(req), name, err) != 0 || !X509_REQ_set_pubkey(req, key)) {
        p2m_err(err, "cannot build the CSR");
        goto Exit;
    }
    if ((san = san_for(name)) == NULL || (ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, san)) == NULL ||
        (exts = sk_X509_EXTENSION_new_null()) == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
        p2m_err(err, "cannot build the CSR's subjectAltName");
        goto Exit;
    }
    ext = NULL; /* exts owns it */
    if (!X509_REQ_add_extensions(req, exts)) {
        p2m_err(err, "cannot add extensions to the CSR");
        goto Exit;
    }
    if (X509_REQ_sign(req, key, sign_digest(key)) <= 0) {
        p2m_err(err, "cannot sign the CSR with this key");
        goto Exit;
    }
    if ((mem = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509_REQ(mem, req)) {
        p2m_err(err, "cannot encode the CSR as PEM");
        goto Exit;
    }
    pem = pem_string(mem, len, err);

Exit:
    BIO_free(mem);
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(san);
    X509_REQ_free(req);
    return pem;
}

int p2m_cert_validity(const X509 *cert, long long *not_before, long long *not_after)
{
    const ASN1_TIME *times[2];
    long long *outs[2] = {not_before, not_after};

    if (cert == NULL)
        return -1;
    times[0] = X509_get0_notBefore(cert);
    times[1] = X509_get0_notAfter(cert);
    for (int i = 0; i < 2; i++) {
        struct tm tm;
        /* a NULL time would make ASN1_TIME_to_tm read the clock instead */
        if (times[i] == NULL || !ASN1_TIME_to_tm(times[i], &tm))
            return -1;
        *outs[i] = (long long)timegm(&tm);
    }
    return 0;
}
