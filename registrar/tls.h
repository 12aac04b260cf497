#ifndef REGISTRAR_TLS_H
#define REGISTRAR_TLS_H

#include <stddef.h>

#include "names.h"
#include "p2m/config.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;

/* The CA that signs pod certificates (PROTOCOL 4). */
typedef struct {
    X509 *cert;
    EVP_PKEY *key;
    char *pem; /* what GET /cacert serves: the CA file as it is */
    size_t pem_len;
    char *chain; /* PEM sent after every issued certificate: the CA and its issuers below the root;
                    NULL when the CA is itself the root */
    size_t chain_len;
} tls_ca_t;

/* Loads the CA and the registrar's certificate for DOMAIN, *.DOMAIN and the rest of names.
 *
 * The CA is the operator's (registrar.ca_cert and registrar.ca_key: the signing CA first in the
 * file, then its issuers) or, without them, state_dir/ca.pem and ca-key.pem, an EC P-256 root
 * created on first start. The registrar's certificate is the operator's (registrar.cert and .key,
 * e.g. from ACME) or state_dir/registrar.pem and registrar-key.pem, (re)made when missing, expired,
 * not issued by the CA, or without one of names' DNS names and addresses (logged cert_reissued).
 * An operator's certificate is never changed; a name of names it lacks is logged
 * (cert_name_missing) and still answered in the Host check. Private keys are written with mode 0600 and refused when group or
 * others may read them; files are written to a temporary name and renamed, so a crash never leaves half a key. Returns an SSL_CTX
 * (TLS 1.2 and up, ALPN h2 and http/1.1) and fills *ca, or NULL with err. */
SSL_CTX *tls_setup(const p2m_config_t *cfg, const registrar_names_t *names, tls_ca_t *ca, char *err);

void tls_ca_free(tls_ca_t *ca);

#endif
