/* POST /certificate/LABEL: a certificate for LABEL.DOMAIN, signed by the registrar's CA
 * (PROTOCOL.md 4). The CSR is checked before authentication, so that a malformed request costs
 * neither a Redis round trip nor the pod's TOTP step; issuing happens once auth_start() has
 * confirmed the pod owns the label. */
#include "certificate.h"
#include "auth.h"
#include "redis_h2o.h"
#include "registrar.h"
#include "req.h"
#include "p2m/cert.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/store_cmd.h"

#include <assert.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct {
    auth_op_t super;
    X509_REQ *csr; /* the checked request, freed with the op */
} cert_op_t;

static cert_op_t *cert_of(op_t *op)
{
    assert(op->kind == OP_CERTIFICATE);
    return (cert_op_t *)op;
}

static void pod_name(const auth_op_t *op, char *out, size_t cap)
{
    snprintf(out, cap, "%s.%s", op->label, op->super.r->cfg.domain);
}

/* The line of an answer auth.c gives; the 200's own line, with the serial, is on_authorized's. */
static void log_result(const auth_op_t *op, int status, const char *why)
{
    p2m_log(status == 200 ? P2M_LOG_INFO : P2M_LOG_WARN, "certificate", "status=%d label=%s pod=%s addr=%s auth=%s reason=\"%s\"%s",
            status, op->label, op->id[0] ? op->id : "-", op->super.addr, auth_scheme(op), why, op_via(&op->super));
}

static void on_authorized(auth_op_t *a)
{
    cert_op_t *op = cert_of(&a->super);
    registrar_t *r = a->super.r;
    char err[P2M_ERR_LEN], name[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 2];
    pod_name(a, name, sizeof(name));
    X509 *cert = p2m_cert_issue(op->csr, name, r->ca.cert, r->ca.key, (long long)time(NULL), r->cfg.registrar.cert_lifetime, err);
    BIO *bio = NULL;
    if (cert == NULL || (bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509(bio, cert) != 1 ||
        (r->ca.chain_len != 0 && BIO_write(bio, r->ca.chain, (int)r->ca.chain_len) != (int)r->ca.chain_len)) {
        p2m_log(P2M_LOG_ERROR, "certificate_failed", "label=%s pod=%s error=\"%s\"", a->label, a->id,
                cert == NULL ? err : "out of memory");
        X509_free(cert);
        BIO_free(bio);
        auth_fail(a, 500, "Internal Server Error", "could not issue the certificate");
        return;
    }

    char serial[80] = "?";
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL)
        snprintf(serial, sizeof(serial), "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    long long not_before = 0, not_after = 0;
    p2m_cert_validity(cert, &not_before, &not_after);
    p2m_log(P2M_LOG_INFO, "certificate", "status=200 label=%s pod=%s addr=%s auth=%s serial=%s not_after=%lld", a->label, a->id,
            a->super.addr, auth_scheme(a), serial, not_after);
    p2m_store_cmd_t cmd;
    if (p2m_store_cmd_stat(&cmd, "certificates") == 0)
        redis_send_nowait(r, &cmd);

    if (a->super.req != NULL) {
        h2o_req_t *req = a->super.req;
        char *data;
        long n = BIO_get_mem_data(bio, &data);
        auth_session_headers(a);
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/pem-certificate-chain"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        h2o_iovec_t body = h2o_strdup(&req->pool, data, (size_t)n);
        req_send_body(req, body.base, body.len);
    }
    X509_free(cert);
    BIO_free(bio);
    op_free(&a->super);
}

static void release(op_t *base)
{
    X509_REQ_free(cert_of(base)->csr);
}

void certificate_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len)
{
    cert_op_t *op = (cert_op_t *)op_new(r, req, OP_CERTIFICATE, sizeof(*op));
    auth_op_t *a = &op->super;
    char err[P2M_ERR_LEN], name[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 2];
    a->super.release = release;
    a->on_authorized = on_authorized;
    a->log_result = log_result;
    if (p2m_label_normalize(label_part, label_len, a->label, err) != 0) {
        snprintf(a->label, sizeof(a->label), "-");
        auth_fail(a, 404, "Not Found", "no such label");
        return;
    }
    size_t len = req->entity.base != NULL ? req->entity.len : 0;
    if (len > P2M_CSR_MAX) {
        auth_fail(a, 413, "Payload Too Large", "CSR longer than 16384 bytes");
        return;
    }
    pod_name(a, name, sizeof(name));
    if ((op->csr = p2m_csr_check(len != 0 ? req->entity.base : "", len, name, err)) == NULL) {
        auth_fail(a, 400, "Bad Request", err);
        return;
    }
    auth_start(a);
}
