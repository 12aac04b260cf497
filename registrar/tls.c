#include "tls.h"
#include "p2m/cert.h"
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
    X509 *cert = X509_new(), *ret = NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    if (cert == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
        goto Exit;
    serial[0] &= 0x7f;
    if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL)
        goto Exit;
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
            goto Exit;
    } else {
        if (add_ext(cert, iss, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
            add_ext(cert, iss, NID_key_usage, "critical,digitalSignature") != 0 ||
            add_ext(cert, iss, NID_ext_key_usage, "serverAuth") != 0 || add_ext(cert, iss, NID_subject_alt_name, san) != 0 ||
            add_ext(cert, iss, NID_authority_key_identifier, "keyid:always") != 0)
            goto Exit;
    }
    if (X509_sign(cert, issuer_key != NULL ? issuer_key : key, EVP_sha256()) == 0)
        goto Exit;
    ret = cert;
Exit:
    BN_free(bn);
    if (ret == NULL)
        X509_free(cert);
    return ret;
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

/* A private key that group or others may read is refused: it signs every pod's certificate. */
static int key_private(const char *what, const char *path, char *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return p2m_err(err, "%s %s: %s", what, path, strerror(errno));
    if ((st.st_mode & 077) != 0)
        return p2m_err(err, "%s %s: readable by group or others (mode %03o); chmod 600 it", what, path,
                       (unsigned)(st.st_mode & 0777));
    return 0;
}

static int is_self_signed(X509 *x)
{
    return X509_check_issued(x, x) == X509_V_OK;
}

/* Appends cert's PEM to *buf (malloc'd, grown). */
static int append_pem(char **buf, size_t *len, X509 *cert)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    if (bio == NULL || PEM_write_bio_X509(bio, cert) != 1) {
        BIO_free(bio);
        return -1;
    }
    long n = BIO_get_mem_data(bio, &data);
    char *grown = realloc(*buf, *len + (size_t)n + 1);
    if (grown == NULL) {
        BIO_free(bio);
        return -1;
    }
    memcpy(grown + *len, data, (size_t)n);
    *len += (size_t)n;
    grown[*len] = '\0';
    *buf = grown;
    BIO_free(bio);
    return 0;
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

/* An operator's CA: ca_cert holds the signing CA first, then its issuers. Builds the chain that
 * goes out with every issued certificate: the CA and its issuers, up to but not including a
 * self-signed root (a client must already trust the root; sending it proves nothing). */
static int load_operator_ca(const p2m_registrar_config_t *rc, tls_ca_t *ca, char *err)
{
    if (key_private("registrar.ca_key", rc->ca_key, err) != 0)
        return -1;
    FILE *f = fopen(rc->ca_cert, "r");
    if (f == NULL)
        return p2m_err(err, "registrar.ca_cert %s: %s", rc->ca_cert, strerror(errno));
    X509 *x;
    int n = 0, ret = -1;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (n++ == 0)
            ca->cert = x;
        if (!is_self_signed(x) && append_pem(&ca->chain, &ca->chain_len, x) != 0) {
            if (x != ca->cert)
                X509_free(x);
            p2m_err(err, "out of memory");
            goto Exit;
        }
        if (x != ca->cert)
            X509_free(x);
    }
    ERR_clear_error(); /* the end of the file reads as an error */
    if (ca->cert == NULL) {
        p2m_err(err, "registrar.ca_cert %s: no PEM certificate", rc->ca_cert);
        goto Exit;
    }
    if (X509_check_ca(ca->cert) < 1) {
        p2m_err(err, "registrar.ca_cert %s: the first certificate is not a CA", rc->ca_cert);
        goto Exit;
    }
    if ((ca->key = read_key(rc->ca_key)) == NULL) {
        p2m_err(err, "registrar.ca_key %s: not a PEM private key", rc->ca_key);
        goto Exit;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        p2m_err(err, "registrar.ca_key %s: does not match registrar.ca_cert", rc->ca_key);
        goto Exit;
    }
    if ((ca->pem = slurp(rc->ca_cert, &ca->pem_len)) == NULL) {
        p2m_err(err, "registrar.ca_cert %s: %s", rc->ca_cert, strerror(errno));
        goto Exit;
    }
    ret = 0;
Exit:
    fclose(f);
    return ret;
}

/* The CA created on first start in state_dir: a self-signed root, so nothing goes with issued
 * certificates. */
static int load_own_ca(const char *ca_path, const char *ca_key_path, tls_ca_t *ca, char *err)
{
    if (access(ca_path, R_OK) == 0 && access(ca_key_path, R_OK) == 0) {
        if (key_private("CA key", ca_key_path, err) != 0)
            return -1;
        if ((ca->cert = read_cert(ca_path)) == NULL || (ca->key = read_key(ca_key_path)) == NULL)
            return p2m_err(err, "%s or %s: unreadable PEM", ca_path, ca_key_path);
    } else {
        if ((ca->key = EVP_EC_gen("P-256")) == NULL ||
            (ca->cert = make_cert(ca->key, "pipe2me CA", NULL, NULL, CA_DAYS, NULL)) == NULL)
            return p2m_err(err, "creating the CA: %s", ssl_reason());
        if (write_pem(ca_key_path, 0600, emit_key, ca->key, err) != 0 || write_pem(ca_path, 0644, emit_cert, ca->cert, err) != 0)
            return -1;
        p2m_log(P2M_LOG_INFO, "ca_created", "path=%s", ca_path);
    }
    if ((ca->pem = slurp(ca_path, &ca->pem_len)) == NULL)
        return p2m_err(err, "%s: %s", ca_path, strerror(errno));
    return 0;
}

/* The leaf, then the CA's chain: what registrar.pem holds. */
static int emit_leaf_chain(BIO *b, void *arg)
{
    void **pair = arg;
    const tls_ca_t *ca = pair[1];
    return PEM_write_bio_X509(b, pair[0]) == 1 &&
                   (ca->chain_len == 0 || BIO_write(b, ca->chain, (int)ca->chain_len) == (int)ca->chain_len)
               ? 1
               : 0;
}

/* The first of names' DNS names and addresses that cert lacks, or NULL when it has them all. */
static const char *missing_name(const X509 *cert, const registrar_names_t *names)
{
    for (unsigned i = 0; i < names->ndns; i++)
        if (!p2m_cert_has_name(cert, names->dns[i]))
            return names->dns[i];
    for (unsigned i = 0; i < names->naddrs; i++)
        if (!p2m_cert_has_name(cert, names->addrs[i]))
            return names->addrs[i];
    return NULL;
}

/* Makes the registrar's certificate for names when it is missing, expired, was not issued by the
 * current CA (the CA was replaced) or lacks a name (registrar.names or a listener changed). */
static int ensure_registrar_cert(const p2m_config_t *cfg, const registrar_names_t *names, const tls_ca_t *ca, const char *crt_path,
                                 const char *key_path, char *err)
{
    X509 *leaf = NULL;
    EVP_PKEY *key = NULL;
    int ret = -1;
    char reason[P2M_DOMAIN_MAX + 32] = "";
    if (access(crt_path, R_OK) == 0 && access(key_path, R_OK) == 0 && (leaf = read_cert(crt_path)) != NULL) {
        const char *lacks;
        if (X509_check_issued(ca->cert, leaf) != X509_V_OK)
            snprintf(reason, sizeof(reason), "reason=other_ca");
        else if (X509_cmp_time(X509_get0_notAfter(leaf), NULL) <= 0)
            snprintf(reason, sizeof(reason), "reason=expired");
        else if ((lacks = missing_name(leaf, names)) != NULL)
            snprintf(reason, sizeof(reason), "reason=missing_name name=%s", lacks);
        else {
            ret = 0;
            goto Exit;
        }
    }
    X509_free(leaf);
    /* "DNS:" or "IP:" and a comma per entry */
    char san[(P2M_NAMES_MAX + 2) * (P2M_DOMAIN_MAX + 8) + REGISTRAR_ADDRS_MAX * (INET6_ADDRSTRLEN + 4)];
    size_t n = 0;
    for (unsigned i = 0; i < names->ndns; i++)
        n += (size_t)snprintf(san + n, sizeof(san) - n, "%sDNS:%s", n ? "," : "", names->dns[i]);
    for (unsigned i = 0; i < names->naddrs; i++)
        n += (size_t)snprintf(san + n, sizeof(san) - n, ",IP:%s", names->addrs[i]);
    if ((key = EVP_EC_gen("P-256")) == NULL || (leaf = make_cert(key, cfg->domain, ca->cert, ca->key, LEAF_DAYS, san)) == NULL) {
        p2m_err(err, "creating the registrar certificate: %s", ssl_reason());
        goto Exit;
    }
    void *pair[2] = {leaf, (void *)ca};
    if (write_pem(key_path, 0600, emit_key, key, err) != 0 || write_pem(crt_path, 0644, emit_leaf_chain, pair, err) != 0)
        goto Exit;
    if (reason[0] != '\0')
        p2m_log(P2M_LOG_INFO, "cert_reissued", "path=%s domain=%s %s", crt_path, cfg->domain, reason);
    else
        p2m_log(P2M_LOG_INFO, "cert_created", "path=%s domain=%s", crt_path, cfg->domain);
    ret = 0;
Exit:
    X509_free(leaf);
    EVP_PKEY_free(key);
    return ret;
}

/* An operator's certificate is theirs to change: each registrar.names entry it lacks is only
 * logged, since a client naming it would fail verification. Addresses are not checked: public
 * CAs rarely certify them. */
static void check_operator_cert(const char *path, const registrar_names_t *names)
{
    X509 *leaf = read_cert(path);
    if (leaf == NULL)
        return;                                /* SSL_CTX_use_certificate_chain_file says why */
    for (unsigned i = 2; i < names->ndns; i++) /* after DOMAIN and *.DOMAIN */
        if (!p2m_cert_has_name(leaf, names->dns[i]))
            p2m_log(P2M_LOG_WARN, "cert_name_missing", "path=%s name=%s", path, names->dns[i]);
    X509_free(leaf);
}

void tls_ca_free(tls_ca_t *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca->pem);
    free(ca->chain);
    memset(ca, 0, sizeof(*ca));
}

SSL_CTX *tls_setup(const p2m_config_t *cfg, const registrar_names_t *names, tls_ca_t *ca, char *err)
{
    char ca_path[P2M_PATH_MAX + 32], ca_key_path[P2M_PATH_MAX + 32], crt_path[P2M_PATH_MAX + 32], key_path[P2M_PATH_MAX + 32];
    const p2m_registrar_config_t *rc = &cfg->registrar;
    SSL_CTX *ctx = NULL, *ret = NULL;

    memset(ca, 0, sizeof(*ca));
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
    if ((rc->ca_cert[0] != '\0' ? load_operator_ca(rc, ca, err) : load_own_ca(ca_path, ca_key_path, ca, err)) != 0)
        goto Exit;
    if (rc->cert[0] != '\0') {
        snprintf(crt_path, sizeof(crt_path), "%s", rc->cert);
        snprintf(key_path, sizeof(key_path), "%s", rc->key);
        if (key_private("registrar.key", key_path, err) != 0)
            goto Exit;
        check_operator_cert(crt_path, names);
    } else if (ensure_registrar_cert(cfg, names, ca, crt_path, key_path, err) != 0) {
        goto Exit;
    }

    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        p2m_err(err, "SSL_CTX_new: %s", ssl_reason());
        goto Exit;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, crt_path) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        p2m_err(err, "%s: %s", crt_path, ssl_reason());
        goto Exit;
    }
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    ret = ctx;
Exit:
    if (ret == NULL) {
        SSL_CTX_free(ctx);
        tls_ca_free(ca);
    }
    return ret;
}
