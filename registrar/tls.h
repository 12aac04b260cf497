#ifndef REGISTRAR_TLS_H
#define REGISTRAR_TLS_H

#include <stddef.h>

#include "p2m/config.h"

typedef struct ssl_ctx_st SSL_CTX;

/* Loads the registrar's CA and its certificate for DOMAIN and *.DOMAIN from the state directory,
 * creating them on first start: an EC P-256 CA (ca.pem, ca-key.pem) and a certificate signed by it
 * (registrar.pem, registrar-key.pem). Private keys are written with mode 0600, every file is
 * written to a temporary name and renamed, so a crash never leaves half a key. Returns an SSL_CTX
 * (TLS 1.2 and up, ALPN h2 and http/1.1) and the CA certificate in PEM (*ca_pem, malloc'd), or
 * NULL with err. */
SSL_CTX *tls_setup(const p2m_config_t *cfg, char **ca_pem, size_t *ca_pem_len, char *err);

#endif
