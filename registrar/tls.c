#include "tls.h"
#include "p2m/err.h"
#include "p2m/log.h"

#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CA_DAYS 3650
#define LEAF_DAYS 365

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_get_error();
    return e != 0 ? ERR_reason_error_string(e) : "unknown OpenSSL error";
}

/* Writes a PEM object through a temporary file renamed into place, with the given mode. */
static int write_pem(const char *path, int mode, int (*emit)(BIO *, void *), void *obj, char *err)
{
    char tmp[P2M_PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return p2m_err(err, "%s: %s", tmp, strerror(errno));
    BIO *bio = BIO_new_fd(fd, BIO_CLOSE);
    int ok = bio != NULL && emit(bio, obj) == 1 && BIO_flush(bio) == 1 && fsync(fd) == 0;
    if (bio != NULL)
        BIO_free(bio);
    else
        close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return p2m_err(err, "%s: cannot write", path);
    }
    return 0;
}

static int emit_cert(BIO *b, void *x)
{
    return PEM_write_bio_X509(b, x);
}

static int emit_key(BIO *b, void *k)
{
    return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -1;
}

/* Builds a certificate for key, signed by issuer_key (self-signed when issuer is NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, int days, const char *san)
{
    X509 *cert = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    if (cert == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
        goto Error;
    serial[0] &= 0x7f;
    if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL)
        goto Error;
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"pipe2me", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(cert, issuer != NULL ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer != NULL ? issuer : cert;
    if (issuer == NULL) {
        if (add_ext(cert, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") != 0 ||
            add_ext(cert, iss, NID_key_usage, "critical,keyCertSign,cRLSign") != 0 ||
            add_ext(cert, iss, NID_subject_key_identifier, "hash") != 0)
            goto Error;
    } else {
        if (add_ext(cert, iss, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
            add_ext(cert, iss, NID_key_usage, "critical,digitalSignature") != 0 ||
            add_ext(cert, iss, NID_ext_key_usage, "serverAuth") != 0 || add_ext(cert, iss, NID_subject_alt_name, san) != 0 ||
            add_ext(cert, iss, NID_authority_key_identifier, "keyid:always") != 0)
            goto Error;
    }
    if (X509_sign(cert, issuer_key != NULL ? issuer_key : key, EVP_sha256()) == 0)
        goto Error;
    BN_free(bn);
    return cert;
Error:
    BN_free(bn);
    X509_free(cert);
    return NULL;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* Makes the CA and the registrar certificate if either is missing. */
static int ensure_files(const p2m_config_t *cfg, const char *ca_path, const char *ca_key_path, const char *crt_path,
                        const char *key_path, char *err)
{
    X509 *ca = NULL, *leaf = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    int ret = -1;

    if (access(ca_path, R_OK) == 0 && access(ca_key_path, R_OK) == 0) {
        if ((ca = read_cert(ca_path)) == NULL || (ca_key = read_key(ca_key_path)) == NULL) {
            p2m_err(err, "%s or %s: unreadable PEM", ca_path, ca_key_path);
            goto Exit;
        }
    } else {
        if ((ca_key = EVP_EC_gen("P-256")) == NULL || (ca = make_cert(ca_key, "pipe2me CA", NULL, NULL, CA_DAYS, NULL)) == NULL) {
            p2m_err(err, "creating the CA: %s", ssl_reason());
            goto Exit;
        }
        if (write_pem(ca_key_path, 0600, emit_key, ca_key, err) != 0 || write_pem(ca_path, 0644, emit_cert, ca, err) != 0)
            goto Exit;
        p2m_log(P2M_LOG_INFO, "ca_created", "path=%s", ca_path);
        unlink(crt_path); /* a new CA invalidates the old certificate */
    }
    if (access(crt_path, R_OK) != 0 || access(key_path, R_OK) != 0) {
        char san[2 * P2M_DOMAIN_MAX + 16];
        snprintf(san, sizeof(san), "DNS:%s,DNS:*.%s", cfg->domain, cfg->domain);
        if ((key = EVP_EC_gen("P-256")) == NULL || (leaf = make_cert(key, cfg->domain, ca, ca_key, LEAF_DAYS, san)) == NULL) {
            p2m_err(err, "creating the registrar certificate: %s", ssl_reason());
            goto Exit;
        }
        if (write_pem(key_path, 0600, emit_key, key, err) != 0 || write_pem(crt_path, 0644, emit_cert, leaf, err) != 0)
            goto Exit;
        p2m_log(P2M_LOG_INFO, "cert_created", "path=%s domain=%s", crt_path, cfg->domain);
    }
    ret = 0;
Exit:
    X509_free(ca);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return ret;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = malloc(65536);
    size_t n = buf != NULL ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    *len = n;
    return buf;
}

SSL_CTX *tls_setup(const p2m_config_t *cfg, char **ca_pem, size_t *ca_pem_len, char *err)
{
    char ca_path[P2M_PATH_MAX + 32], ca_key_path[P2M_PATH_MAX + 32], crt_path[P2M_PATH_MAX + 32], key_path[P2M_PATH_MAX + 32];
    SSL_CTX *ctx = NULL;

    if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
        p2m_err(err, "state_dir %s: %s", cfg->state_dir, strerror(errno));
        return NULL;
    }
    if (path_join(ca_path, sizeof(ca_path), cfg->state_dir, "ca.pem") != 0 ||
        path_join(ca_key_path, sizeof(ca_key_path), cfg->state_dir, "ca-key.pem") != 0 ||
        path_join(crt_path, sizeof(crt_path), cfg->state_dir, "registrar.pem") != 0 ||
        path_join(key_path, sizeof(key_path), cfg->state_dir, "registrar-key.pem") != 0) {
        p2m_err(err, "state_dir: path too long");
        return NULL;
    }
    if (ensure_files(cfg, ca_path, ca_key_path, crt_path, key_path, err) != 0)
        return NULL;

    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        p2m_err(err, "SSL_CTX_new: %s", ssl_reason());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, crt_path) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        p2m_err(err, "%s: %s", crt_path, ssl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    if ((*ca_pem = slurp(ca_path, ca_pem_len)) == NULL) {
        p2m_err(err, "%s: %s", ca_path, strerror(errno));
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
