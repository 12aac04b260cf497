/* Unit tests for lib/cert.c against lib/include/p2m/cert.h and docs/PROTOCOL.md 4: CSRs the
 * registrar must accept, and issued certificates checked field by field and verified against a
 * test CA; hostile CSRs (other names, extra names, CA requests, weak or foreign keys, broken PEM
 * and DER) refused with the expected reason. Every key and CSR is made here with OpenSSL. */

#include "check.h"
#include "p2m/cert.h"
#include "p2m/err.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NAME "demo.pipe2me.localhost"

static long long now;
static X509 *ca;
static EVP_PKEY *ca_key;
static long long ca_not_after;

static EVP_PKEY *k_p256, *k_p384, *k_p521, *k_rsa2048, *k_rsa1024, *k_rsa1536, *k_k1, *k_ed25519, *k_rsa9000, *k_explicit;

static void die(const char *what)
{
    printf("FATAL: %s\n", what);
    ERR_print_errors_fp(stdout);
    exit(2);
}

static EVP_PKEY *ec_key(const char *curve)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
    if (key == NULL)
        die(curve);
    return key;
}

static EVP_PKEY *rsa_key(size_t bits)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
    if (key == NULL)
        die("RSA key");
    return key;
}

/* A P-256 key whose public key is encoded with the curve's parameters spelled out. */
static EVP_PKEY *explicit_p256_key(void)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
                           OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, "explicit", 0),
                           OSSL_PARAM_construct_end()};
    if (ctx == NULL || EVP_PKEY_keygen_init(ctx) <= 0 || !EVP_PKEY_CTX_set_params(ctx, params) || EVP_PKEY_generate(ctx, &key) <= 0)
        die("explicit EC key");
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* An RSA public key of 9000 bits (no private half): the size check must refuse it before any
 * signature is looked at. */
static EVP_PKEY *rsa_public_9000(void)
{
    BIGNUM *n = BN_new(), *e = BN_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *key = NULL;

    if (n == NULL || e == NULL || bld == NULL || ctx == NULL || !BN_rand(n, 9000, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ODD) ||
        !BN_set_word(e, 65537) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) || (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        die("RSA 9000 public key");
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(e);
    return key;
}

static const EVP_MD *digest_for(EVP_PKEY *key)
{
    return EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448") ? NULL : EVP_sha256();
}

static void add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    if (ext == NULL || !X509_add_ext(cert, ext, -1))
        die(value);
    X509_EXTENSION_free(ext);
}

/* A self-signed EC P-256 CA, valid from an hour ago for ten days; with_skid 0 leaves out its
 * subjectKeyIdentifier, so that the issuer has to compute the authorityKeyIdentifier itself. */
static X509 *make_ca(EVP_PKEY *key, const char *cn, int with_skid)
{
    X509 *cert = X509_new();
    X509V3_CTX ctx;
    if (cert == NULL || !X509_set_version(cert, X509_VERSION_3) || !ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) ||
        !X509_NAME_add_entry_by_NID(X509_get_subject_name(cert), NID_commonName, MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_set_issuer_name(cert, X509_get_subject_name(cert)) || !X509_set_pubkey(cert, key) ||
        ASN1_TIME_set(X509_getm_notBefore(cert), (time_t)(now - 3600)) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(cert), (time_t)(now + 10 * 86400)) == NULL)
        die("CA");
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    add_ext(cert, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (with_skid)
        add_ext(cert, &ctx, NID_subject_key_identifier, "hash");
    if (X509_sign(cert, key, EVP_sha256()) <= 0)
        die("CA signature");
    return cert;
}

/* What a test CSR holds. Unset members mean "none". */
struct spec {
    EVP_PKEY *key;    /* public key in the request (required) */
    EVP_PKEY *signer; /* signs the request; NULL: key */
    const char *cn;   /* subject CN (cn_len bytes, or strlen when cn_len is 0) */
    size_t cn_len;
    int second_cn;        /* a second CN, equal to the first */
    int org;              /* an O= attribute as well */
    const char *san;      /* subjectAltName, in openssl.cnf syntax: "DNS:a,IP:127.0.0.1" */
    int second_san;       /* the same subjectAltName twice in the request */
    const char *bc;       /* basicConstraints, e.g. "critical,CA:TRUE" */
    const char *extra;    /* keyUsage as requested (never copied) */
    const char *ext_req2; /* a Microsoft-style second extension request holding this basicConstraints */
    int garbage_nid;      /* an extension of this type whose value is not DER */
};

static X509_EXTENSION *conf_ext(int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, NULL, nid, value);
    if (ext == NULL)
        die(value);
    return ext;
}

static X509_REQ *build_req(const struct spec *s)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *subject;
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();

    if (req == NULL || exts == NULL || !X509_REQ_set_version(req, X509_REQ_VERSION_1) || !X509_REQ_set_pubkey(req, s->key))
        die("request");
    subject = X509_REQ_get_subject_name(req);
    if (s->org &&
        !X509_NAME_add_entry_by_NID(subject, NID_organizationName, MBSTRING_ASC, (const unsigned char *)"Evil Corp", -1, -1, 0))
        die("O");
    for (int i = 0; s->cn != NULL && i < 1 + s->second_cn; i++) {
        /* a plain string type skips OpenSSL's 64-byte CN bound, as a hostile client would */
        int len = (int)(s->cn_len ? s->cn_len : strlen(s->cn));
        if (!X509_NAME_add_entry_by_NID(subject, NID_commonName, V_ASN1_UTF8STRING, (const unsigned char *)s->cn, len, -1, 0))
            die("CN");
    }
    for (int i = 0; s->san != NULL && i < 1 + s->second_san; i++)
        sk_X509_EXTENSION_push(exts, conf_ext(NID_subject_alt_name, s->san));
    if (s->bc != NULL)
        sk_X509_EXTENSION_push(exts, conf_ext(NID_basic_constraints, s->bc));
    if (s->extra != NULL)
        sk_X509_EXTENSION_push(exts, conf_ext(NID_key_usage, s->extra));
    if (s->garbage_nid != 0) {
        ASN1_OCTET_STRING *value = ASN1_OCTET_STRING_new();
        X509_EXTENSION *ext = NULL;
        if (value == NULL || !ASN1_OCTET_STRING_set(value, (const unsigned char *)"garbage", 7) ||
            (ext = X509_EXTENSION_create_by_NID(NULL, s->garbage_nid, 0, value)) == NULL)
            die("garbage extension");
        sk_X509_EXTENSION_push(exts, ext);
        ASN1_OCTET_STRING_free(value);
    }
    if (sk_X509_EXTENSION_num(exts) > 0 && !X509_REQ_add_extensions(req, exts))
        die("extensions");
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (s->ext_req2 != NULL) {
        STACK_OF(X509_EXTENSION) *more = sk_X509_EXTENSION_new_null();
        sk_X509_EXTENSION_push(more, conf_ext(NID_basic_constraints, s->ext_req2));
        if (!X509_REQ_add_extensions_nid(req, more, NID_ms_ext_req))
            die("second extension request");
        sk_X509_EXTENSION_pop_free(more, X509_EXTENSION_free);
    }
    EVP_PKEY *signer = s->signer != NULL ? s->signer : s->key;
    if (X509_REQ_sign(req, signer, digest_for(signer)) <= 0)
        die("request signature");
    return req;
}

/* PEM of type `type` around der[0..len), as a malloc'd string. */
static char *pem_of(const char *type, const unsigned char *der, long len)
{
    BIO *mem = BIO_new(BIO_s_mem());
    char *data, *out;
    if (mem == NULL || !PEM_write_bio(mem, type, "", der, len))
        die("PEM");
    long n = BIO_get_mem_data(mem, &data);
    if ((out = malloc((size_t)n + 1)) == NULL)
        die("malloc");
    memcpy(out, data, (size_t)n);
    out[n] = '\0';
    BIO_free(mem);
    return out;
}

static char *req_pem(X509_REQ *req)
{
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    if (len <= 0)
        die("DER");
    char *pem = pem_of("CERTIFICATE REQUEST", der, len);
    OPENSSL_free(der);
    return pem;
}

static char *spec_pem(const struct spec *s)
{
    X509_REQ *req = build_req(s);
    char *pem = req_pem(req);
    X509_REQ_free(req);
    return pem;
}

/* A reason must be one line of printable ASCII that fits the buffer. */
static void check_reason_clean(const char *err)
{
    size_t n = strnlen(err, P2M_ERR_LEN), bad = 0;
    while (bad < n && err[bad] >= 0x20 && err[bad] < 0x7f)
        bad++;
    CHECK_MSG(n > 0 && n < P2M_ERR_LEN && bad == n, "reason empty, unterminated or with a control byte: %s", check_str(err));
}

/* --- issued certificates ------------------------------------------------------------------- */

static int count_ext(X509 *cert, int nid)
{
    int count = 0;
    for (int i = -1; (i = X509_get_ext_by_NID(cert, nid, i)) >= 0;)
        count++;
    return count;
}

static int ext_critical(X509 *cert, int nid)
{
    int i = X509_get_ext_by_NID(cert, nid, -1);
    return i < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(cert, i));
}

static int verify_chain(X509 *cert, X509 *root)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = store != NULL && ctx != NULL && X509_STORE_add_cert(store, root) && X509_STORE_CTX_init(ctx, store, cert, NULL) &&
             X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER) && X509_verify_cert(ctx) == 1;
    if (!ok && ctx != NULL)
        check_note("verify: %s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

/* Checks every field PROTOCOL 4.3 names, for a certificate issued at `now` for `lifetime`. */
static void check_issued(X509 *cert, X509_REQ *req, const char *name, X509 *issuer, long long lifetime)
{
    EVP_PKEY *key = X509_REQ_get0_pubkey(req);
    int rsa = EVP_PKEY_is_a(key, "RSA");
    long long issuer_before, issuer_after, not_before, not_after;

    CHECK_EQ_INT(X509_get_version(cert), X509_VERSION_3);

    /* subject: only CN=name (or empty when name is too long for a CN) */
    const X509_NAME *subject = X509_get_subject_name(cert);
    if (strlen(name) <= 64) {
        char cn[300] = "";
        CHECK_EQ_INT(X509_NAME_entry_count(subject), 1);
        CHECK(X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof(cn)) > 0);
        CHECK_EQ_STR(cn, name);
    } else {
        CHECK_EQ_INT(X509_NAME_entry_count(subject), 0);
    }
    CHECK_EQ_INT(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(issuer)), 0);
    CHECK(EVP_PKEY_eq(X509_get0_pubkey(cert), key) == 1);

    /* subjectAltName: DNS:name, then LABEL.direct.DOMAIN and LABEL.lan.DOMAIN while they fit in
     * 253 bytes (issue 20), critical only with an empty subject */
    char direct[300] = "", lan[300] = "";
    const char *dot = strchr(name, '.');
    int extras = dot != NULL && strlen(name) + 7 <= 253;
    if (extras) {
        snprintf(direct, sizeof(direct), "%.*s.direct%s", (int)(dot - name), name, dot);
        snprintf(lan, sizeof(lan), "%.*s.lan%s", (int)(dot - name), name, dot);
    }
    GENERAL_NAMES *san = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (CHECK(san != NULL) && CHECK_EQ_INT(sk_GENERAL_NAME_num(san), extras ? 3 : 1)) {
        const char *want[3] = {name, direct, lan};
        for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
            const GENERAL_NAME *gen = sk_GENERAL_NAME_value(san, i);
            if (CHECK_EQ_INT(gen->type, GEN_DNS))
                CHECK_EQ_STR((const char *)ASN1_STRING_get0_data(gen->d.dNSName), want[i]);
        }
    }
    GENERAL_NAMES_free(san);
    if (extras) {
        CHECK_EQ_INT(X509_check_host(cert, direct, 0, 0, NULL), 1);
        CHECK_EQ_INT(X509_check_host(cert, lan, 0, 0, NULL), 1);
    }
    CHECK_EQ_INT(ext_critical(cert, NID_subject_alt_name), strlen(name) > 64);
    CHECK_EQ_INT(X509_check_host(cert, name, 0, 0, NULL), 1);

    /* basicConstraints critical CA:FALSE */
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cert, NID_basic_constraints, NULL, NULL);
    if (CHECK(bc != NULL))
        CHECK_EQ_INT(bc->ca, 0);
    BASIC_CONSTRAINTS_free(bc);
    CHECK_EQ_INT(ext_critical(cert, NID_basic_constraints), 1);
    CHECK_EQ_INT(X509_check_ca(cert), 0);

    /* keyUsage critical digitalSignature, + keyEncipherment for RSA, nothing else */
    CHECK_EQ_INT(ext_critical(cert, NID_key_usage), 1);
    CHECK_EQ_INT(X509_get_key_usage(cert), KU_DIGITAL_SIGNATURE | (rsa ? KU_KEY_ENCIPHERMENT : 0));
    CHECK_EQ_INT(X509_get_extended_key_usage(cert), XKU_SSL_SERVER);
    CHECK_EQ_INT(ext_critical(cert, NID_ext_key_usage), 0);

    /* key identifiers: ours from our key, the authority's matching the issuer's */
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(cert);
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(cert);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    CHECK(skid != NULL && X509_pubkey_digest(cert, EVP_sha1(), md, &md_len) && skid->length == (int)md_len &&
          memcmp(skid->data, md, md_len) == 0);
    CHECK(akid != NULL && X509_pubkey_digest(issuer, EVP_sha1(), md, &md_len) && akid->length == (int)md_len &&
          memcmp(akid->data, md, md_len) == 0);

    /* nothing else: the six extensions above and no more */
    CHECK_EQ_INT(X509_get_ext_count(cert), 6);
    CHECK_EQ_INT(count_ext(cert, NID_subject_alt_name), 1);

    /* serial: positive, non-zero, at most 127 bits */
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    if (CHECK(serial != NULL)) {
        CHECK(!BN_is_negative(serial) && !BN_is_zero(serial));
        CHECK(BN_num_bits(serial) <= 127);
        CHECK_MSG(BN_num_bits(serial) > 64, "serial of %d bits: not random enough to be 127-bit", BN_num_bits(serial));
    }
    BN_free(serial);

    /* validity: 5 minutes back, lifetime ahead, clamped to the issuer's notAfter */
    CHECK_EQ_INT(p2m_cert_validity(issuer, &issuer_before, &issuer_after), 0);
    if (CHECK_EQ_INT(p2m_cert_validity(cert, &not_before, &not_after), 0)) {
        CHECK_EQ_INT(not_before, now - 300);
        CHECK_EQ_INT(not_after, now + lifetime < issuer_after ? now + lifetime : issuer_after);
    }

    CHECK_EQ_INT(X509_get_signature_nid(cert), NID_ecdsa_with_SHA256);
    CHECK_EQ_INT(X509_verify(cert, X509_get0_pubkey(issuer)), 1);
    CHECK_MSG(verify_chain(cert, issuer), "certificate does not verify against the CA as an SSL server");
}

/* --- rows ----------------------------------------------------------------------------------- */

static void test_accepted(void)
{
    struct good {
        const char *what;
        struct spec spec;
    } rows[] = {
        {"P-256 CN only", {.key = k_p256, .cn = NAME}},
        {"P-256 SAN only", {.key = k_p256, .san = "DNS:" NAME}},
        {"P-256 CN and SAN", {.key = k_p256, .cn = NAME, .san = "DNS:" NAME}},
        {"P-384 CN only", {.key = k_p384, .cn = NAME}},
        {"P-384 SAN only", {.key = k_p384, .san = "DNS:" NAME}},
        {"P-384 CN and SAN", {.key = k_p384, .cn = NAME, .san = "DNS:" NAME}},
        {"P-521 CN and SAN", {.key = k_p521, .cn = NAME, .san = "DNS:" NAME}},
        {"RSA 2048 CN only", {.key = k_rsa2048, .cn = NAME}},
        {"RSA 2048 SAN only", {.key = k_rsa2048, .san = "DNS:" NAME}},
        {"RSA 2048 CN and SAN", {.key = k_rsa2048, .cn = NAME, .san = "DNS:" NAME}},
        {"upper-case CN and SAN", {.key = k_p256, .cn = "DEMO.Pipe2Me.LOCALHOST", .san = "DNS:Demo.PIPE2ME.localhost"}},
        {"CA:FALSE requested", {.key = k_p256, .cn = NAME, .bc = "critical,CA:FALSE"}},
        {"keyUsage requested, not copied", {.key = k_rsa2048, .cn = NAME, .extra = "keyCertSign,cRLSign"}},
    };
    char err[P2M_ERR_LEN];

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("accepted row %zu: %s", i, rows[i].what);
        char *pem = spec_pem(&rows[i].spec);
        err[0] = '\0';
        X509_REQ *req = p2m_csr_check(pem, strlen(pem), NAME, err);
        if (CHECK_MSG(req != NULL, "refused: %s", check_str(err))) {
            /* 1 day: inside the CA's 10; 30 days: clamped to the CA's notAfter */
            static const long long lifetimes[] = {86400, 30 * 86400};
            for (size_t j = 0; j < 2; j++) {
                X509 *cert = p2m_cert_issue(req, NAME, ca, ca_key, now, lifetimes[j], err);
                if (CHECK_MSG(cert != NULL, "issue: %s", check_str(err)))
                    check_issued(cert, req, NAME, ca, lifetimes[j]);
                X509_free(cert);
            }
        }
        X509_REQ_free(req);
        free(pem);
    }
    CHECK_CTX(NULL);
}

/* PEM framing that must still be accepted, and the size limit exactly. */
static void test_framing_accepted(void)
{
    struct spec s = {.key = k_p256, .cn = NAME, .san = "DNS:" NAME};
    char *pem = spec_pem(&s), err[P2M_ERR_LEN];
    size_t len = strlen(pem);
    char *buf = malloc(P2M_CSR_MAX);
    X509_REQ *req;

    CHECK_CTX("white space around the PEM block");
    memset(buf, ' ', 10);
    memcpy(buf + 10, "\r\n\t", 3);
    memcpy(buf + 13, pem, len);
    memcpy(buf + 13 + len, "\n\n  \r\n", 6);
    req = p2m_csr_check(buf, 13 + len + 6, NAME, err);
    CHECK_MSG(req != NULL, "refused: %s", check_str(err));
    X509_REQ_free(req);

    CHECK_CTX("exactly P2M_CSR_MAX bytes (padded with white space)");
    memcpy(buf, pem, len);
    memset(buf + len, '\n', P2M_CSR_MAX - len);
    req = p2m_csr_check(buf, P2M_CSR_MAX, NAME, err);
    CHECK_MSG(req != NULL, "refused: %s", check_str(err));
    X509_REQ_free(req);

    CHECK_CTX("CRLF line ends");
    size_t crlf_len = 0;
    for (size_t i = 0; i < len; i++) {
        if (pem[i] == '\n')
            buf[crlf_len++] = '\r';
        buf[crlf_len++] = pem[i];
    }
    req = p2m_csr_check(buf, crlf_len, NAME, err);
    CHECK_MSG(req != NULL, "refused: %s", check_str(err));
    X509_REQ_free(req);

    CHECK_CTX("not NUL-terminated: the check reads only len bytes");
    char *exact = check_exact_copy(pem, len);
    req = p2m_csr_check(exact, len, NAME, err);
    CHECK_MSG(req != NULL, "refused: %s", check_str(err));
    X509_REQ_free(req);
    free(exact);

    CHECK_CTX(NULL);
    free(buf);
    free(pem);
}

struct bad {
    const char *what;
    char *pem; /* malloc'd */
    size_t len;
    const char *reason;
};

static struct bad bad_spec(const char *what, struct spec s, const char *reason)
{
    char *pem = spec_pem(&s);
    return (struct bad){what, pem, strlen(pem), reason};
}

static struct bad bad_bytes(const char *what, const char *bytes, size_t len, const char *reason)
{
    return (struct bad){what, check_exact_copy(bytes, len), len, reason};
}

/* The DER of a good request with one byte changed, wrapped again as PEM. */
static struct bad bad_flipped(const char *what, size_t from_end, const char *reason)
{
    struct spec s = {.key = k_p256, .cn = NAME, .san = "DNS:" NAME};
    X509_REQ *req = build_req(&s);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    der[len - (int)from_end] ^= 0x01;
    char *pem = pem_of("CERTIFICATE REQUEST", der, len);
    OPENSSL_free(der);
    X509_REQ_free(req);
    return (struct bad){what, pem, strlen(pem), reason};
}

/* The DER of a good request with the first letter of its CN upper-cased after signing, re-PEMed. */
static struct bad bad_cn_altered(void)
{
    struct spec s = {.key = k_p256, .cn = NAME};
    X509_REQ *req = build_req(&s);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    unsigned char *at = memmem(der, (size_t)len, NAME, strlen(NAME));
    if (at == NULL)
        die("CN in DER");
    at[0] = 'D'; /* still the same name, case-insensitively, but the signature covers bytes */
    char *pem = pem_of("CERTIFICATE REQUEST", der, len);
    OPENSSL_free(der);
    X509_REQ_free(req);
    return (struct bad){"CN byte altered after signing", pem, strlen(pem), "CSR signature does not verify"};
}

/* A good request's DER changed by edit, wrapped again as PEM. */
static struct bad bad_der(const char *what, void (*edit)(unsigned char **der, int *len), const char *reason)
{
    struct spec s = {.key = k_p256, .cn = NAME, .san = "DNS:" NAME};
    X509_REQ *req = build_req(&s);
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    edit(&der, &len);
    char *pem = pem_of("CERTIFICATE REQUEST", der, len);
    OPENSSL_free(der);
    X509_REQ_free(req);
    return (struct bad){what, pem, strlen(pem), reason};
}

/* two bytes after the outer SEQUENCE */
static void append_bytes(unsigned char **der, int *len)
{
    if ((*der = OPENSSL_realloc(*der, (size_t)*len + 2)) == NULL)
        die("realloc");
    (*der)[(*len)++] = 0x05;
    (*der)[(*len)++] = 0x00;
}

/* version INTEGER 0 (the first 02 01 00) made 1 */
static void bump_version(unsigned char **der, int *len)
{
    unsigned char *at = memmem(*der, (size_t)*len, "\x02\x01\x00", 3);
    if (at == NULL)
        die("version in DER");
    at[2] = 0x01;
}

static struct bad bad_certificate(void)
{
    unsigned char *der = NULL;
    int len = i2d_X509(ca, &der);
    char *pem = pem_of("CERTIFICATE", der, len);
    OPENSSL_free(der);
    return (struct bad){"a CERTIFICATE, not a request", pem, strlen(pem), "CSR is a PEM CERTIFICATE, not a CERTIFICATE REQUEST"};
}

/* A good request's PEM, cut to keep bytes (0: all) and put between prefix and suffix. */
static struct bad bad_edit(const char *what, const char *prefix, const char *suffix, size_t keep, const char *reason)
{
    struct spec s = {.key = k_p256, .cn = NAME, .san = "DNS:" NAME};
    char *pem = spec_pem(&s);
    size_t len = strlen(pem), plen = strlen(prefix), slen = strlen(suffix);
    if (keep == 0 || keep > len)
        keep = len;
    char *out = malloc(plen + keep + slen + 1);
    memcpy(out, prefix, plen);
    memcpy(out + plen, pem, keep);
    memcpy(out + plen + keep, suffix, slen);
    free(pem);
    return (struct bad){what, out, plen + keep + slen, reason};
}

/* A PEM block with RFC 1421 headers, as an encrypted block would have. */
static struct bad bad_headers(const char *good_pem)
{
    static const char begin[] = "-----BEGIN CERTIFICATE REQUEST-----\n"
                                "Proc-Type: 4,ENCRYPTED\n"
                                "DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n";
    const char *body = strchr(good_pem, '\n') + 1;
    size_t len = strlen(begin) + strlen(body);
    char *pem = malloc(len + 1);
    strcpy(pem, begin);
    strcat(pem, body);
    return (struct bad){"PEM headers", pem, len, "CSR PEM block has headers (an encrypted block?)"};
}

#define BAD_LIT(what, lit, reason) bad_bytes(what, lit, sizeof(lit) - 1, reason)

static void test_refused(void)
{
    struct spec good = {.key = k_p256, .cn = NAME, .san = "DNS:" NAME};
    char *good_pem = spec_pem(&good);
    size_t good_len = strlen(good_pem);

    /* two copies of a good request */
    char *two = malloc(2 * good_len);
    memcpy(two, good_pem, good_len);
    memcpy(two + good_len, good_pem, good_len);
    /* a NUL inside: after the BEGIN line */
    char *nul = malloc(good_len);
    memcpy(nul, good_pem, good_len);
    nul[40] = '\0';
    /* one byte over the limit, otherwise a good request padded with white space */
    char *over = malloc(P2M_CSR_MAX + 1);
    memcpy(over, good_pem, good_len);
    memset(over + good_len, '\n', P2M_CSR_MAX + 1 - good_len);
    /* a CN of 300 bytes, to see that a reason quotes at most 64 of them */
    char long_cn[301];
    memset(long_cn, 'a', 300);
    long_cn[300] = '\0';
    static const char control_cn[] = "demo\x1b[31m\r\nX-Evil: 1\x7f\x01.pipe2me.localhost";

    struct bad rows[] = {
        bad_spec("other name", (struct spec){.key = k_p256, .cn = "other.example", .san = "DNS:other.example"},
                 "CSR names other.example, not " NAME),
        bad_spec("name as a suffix", (struct spec){.key = k_p256, .cn = "evil-" NAME, .san = "DNS:evil-" NAME},
                 "CSR names evil-" NAME ", not " NAME),
        bad_spec("name as a prefix", (struct spec){.key = k_p256, .cn = NAME ".evil", .san = "DNS:" NAME ".evil"},
                 "CSR names " NAME ".evil, not " NAME),
        bad_spec("name as a prefix, SAN only", (struct spec){.key = k_p256, .san = "DNS:" NAME ".evil"},
                 "CSR names " NAME ".evil, not " NAME),
        bad_spec("wildcard", (struct spec){.key = k_p256, .san = "DNS:*." NAME}, "CSR names *." NAME ", not " NAME),
        bad_spec("wildcard CN", (struct spec){.key = k_p256, .cn = "*." NAME}, "CSR names *." NAME ", not " NAME),
        bad_spec("trailing dot", (struct spec){.key = k_p256, .cn = NAME "."}, "CSR names " NAME "., not " NAME),
        bad_spec("two SANs", (struct spec){.key = k_p256, .cn = NAME, .san = "DNS:" NAME ",DNS:other.example"},
                 "CSR has 2 subjectAltName entries, 1 (DNS:" NAME ") allowed"),
        bad_spec("same SAN twice", (struct spec){.key = k_p256, .san = "DNS:" NAME ",DNS:" NAME},
                 "CSR has 2 subjectAltName entries, 1 (DNS:" NAME ") allowed"),
        bad_spec("SAN and IP", (struct spec){.key = k_p256, .san = "DNS:" NAME ",IP:127.0.0.1"},
                 "CSR has 2 subjectAltName entries, 1 (DNS:" NAME ") allowed"),
        bad_spec("SAN IP only", (struct spec){.key = k_p256, .cn = NAME, .san = "IP:127.0.0.1"},
                 "CSR subjectAltName has an IP address, only DNS:" NAME " allowed"),
        bad_spec("SAN email only", (struct spec){.key = k_p256, .cn = NAME, .san = "email:root@" NAME},
                 "CSR subjectAltName has an email address, only DNS:" NAME " allowed"),
        bad_spec("SAN URI only", (struct spec){.key = k_p256, .cn = NAME, .san = "URI:https://" NAME "/"},
                 "CSR subjectAltName has a URI, only DNS:" NAME " allowed"),
        bad_spec("two subjectAltName extensions", (struct spec){.key = k_p256, .san = "DNS:" NAME, .second_san = 1},
                 "CSR has more than one subjectAltName extension"),
        bad_spec("CN mismatch with correct SAN", (struct spec){.key = k_p256, .cn = "other.example", .san = "DNS:" NAME},
                 "CSR names other.example, not " NAME),
        bad_spec("extra subject attribute O", (struct spec){.key = k_p256, .cn = NAME, .org = 1},
                 "CSR subject has O, only CN allowed"),
        bad_spec("two CNs", (struct spec){.key = k_p256, .cn = NAME, .second_cn = 1}, "CSR subject has more than one CN"),
        bad_spec("no CN and no SAN", (struct spec){.key = k_p256}, "CSR has neither a CN nor a subjectAltName"),
        bad_spec("CA:TRUE", (struct spec){.key = k_p256, .cn = NAME, .san = "DNS:" NAME, .bc = "critical,CA:TRUE"},
                 "CSR asks for a CA certificate"),
        bad_spec("CA:TRUE not critical", (struct spec){.key = k_p256, .cn = NAME, .bc = "CA:TRUE,pathlen:0"},
                 "CSR asks for a CA certificate"),
        bad_spec("CA:TRUE in a second extension request",
                 (struct spec){.key = k_p256, .cn = NAME, .san = "DNS:" NAME, .ext_req2 = "critical,CA:TRUE"},
                 "CSR has more than one extension request"),
        bad_spec("RSA 1024", (struct spec){.key = k_rsa1024, .cn = NAME}, "CSR key: RSA 1024 bits, at least 2048 needed"),
        bad_spec("RSA 1536", (struct spec){.key = k_rsa1536, .cn = NAME}, "CSR key: RSA 1536 bits, at least 2048 needed"),
        bad_spec("RSA 9000 (signed by another key)", (struct spec){.key = k_rsa9000, .signer = k_rsa2048, .cn = NAME},
                 "CSR key: RSA 9000 bits, at most 8192 allowed"),
        bad_spec("EC secp256k1", (struct spec){.key = k_k1, .cn = NAME},
                 "CSR key: EC curve secp256k1, P-256, P-384 or P-521 needed"),
        bad_spec("EC P-256 with explicit parameters", (struct spec){.key = k_explicit, .cn = NAME},
                 "CSR key: EC with explicit parameters, a named curve needed"),
        bad_spec("Ed25519", (struct spec){.key = k_ed25519, .cn = NAME},
                 "CSR key: ED25519, RSA (2048-8192 bits) or EC (P-256, P-384, P-521) needed"),
        bad_spec("signed by another key", (struct spec){.key = k_p256, .signer = k_p384, .cn = NAME},
                 "CSR signature does not verify"),
        bad_flipped("signature byte flipped", 1, "CSR signature does not verify"),
        bad_cn_altered(),
        bad_der("bytes after the DER", append_bytes, "CSR has bytes after its certificate request"),
        bad_der("version 2", bump_version, "CSR version is not 1"),
        bad_spec("subjectAltName not DER", (struct spec){.key = k_p256, .cn = NAME, .garbage_nid = NID_subject_alt_name},
                 "CSR subjectAltName does not parse"),
        bad_spec("basicConstraints not DER", (struct spec){.key = k_p256, .cn = NAME, .garbage_nid = NID_basic_constraints},
                 "CSR basicConstraints does not parse"),
        bad_spec("two basicConstraints",
                 (struct spec){.key = k_p256, .cn = NAME, .bc = "CA:FALSE", .garbage_nid = NID_basic_constraints},
                 "CSR has more than one basicConstraints extension"),
        bad_edit("truncated PEM", "", "", 200, "not a PEM certificate request"),
        bad_edit("END line cut", "", "", good_len - 10, "not a PEM certificate request"),
        bad_bytes("two PEM blocks", two, 2 * good_len, "CSR has more than one PEM block"),
        bad_edit("text after the block", "", "hello\n", 0, "CSR has text after its PEM block"),
        bad_edit("text before the block", "hello\n", "", 0, "not a PEM certificate request"),
        bad_headers(good_pem),
        bad_certificate(),
        BAD_LIT("garbage", "\x30\x82\x01\xffgarbage {}<>", "not a PEM certificate request"),
        BAD_LIT("BEGIN line only", "-----BEGIN CERTIFICATE REQUEST-----\n", "not a PEM certificate request"),
        BAD_LIT("empty PEM block", "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n",
                "not a PEM certificate request"),
        BAD_LIT("base64 of garbage", "-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE REQUEST-----\n",
                "CSR is not a PKCS #10 certificate request"),
        BAD_LIT("empty", "", "CSR is empty"),
        BAD_LIT("only white space", " \r\n\t\n", "not a PEM certificate request"),
        bad_bytes("NUL inside", nul, good_len, "CSR contains a NUL byte"),
        bad_bytes("16385 bytes", over, P2M_CSR_MAX + 1, "CSR is larger than 16384 bytes"),
        bad_spec("control bytes in the CN", (struct spec){.key = k_p256, .cn = control_cn},
                 "CSR names demo?[31m??X-Evil: 1??.pipe2me.localhost, not " NAME),
        bad_spec("control bytes in the SAN", (struct spec){.key = k_p256, .san = "DNS:demo\x01\x02.x"},
                 "CSR names demo??.x, not " NAME),
        bad_spec("300-byte CN", (struct spec){.key = k_p256, .cn = long_cn},
                 "CSR names aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..., not " NAME),
        bad_spec("NUL in the CN", (struct spec){.key = k_p256, .cn = NAME "\0.evil", .cn_len = sizeof(NAME "\0.evil") - 1},
                 "CSR names " NAME "?.evil, not " NAME),
    };
    free(two);
    free(nul);
    free(over);

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char err[P2M_ERR_LEN] = "";
        CHECK_CTX("refused row %zu: %s", i, rows[i].what);
        X509_REQ *req = p2m_csr_check(rows[i].pem, rows[i].len, NAME, err);
        CHECK_MSG(req == NULL, "accepted");
        CHECK_EQ_STR(err, rows[i].reason);
        check_reason_clean(err);
        CHECK_MSG(ERR_peek_error() == 0, "OpenSSL error queue left non-empty");
        X509_REQ_free(req);
        free(rows[i].pem);
    }
    CHECK_CTX(NULL);
    free(good_pem);
}

/* p2m_csr_make's output passes p2m_csr_check, for every key kind the check accepts. */
static void test_make(void)
{
    EVP_PKEY *keys[] = {k_p256, k_p384, k_p521, k_rsa2048};
    char err[P2M_ERR_LEN];
    size_t len;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        CHECK_CTX("p2m_csr_make key %zu", i);
        char *pem = p2m_csr_make(keys[i], NAME, &len, err);
        if (!CHECK_MSG(pem != NULL, "make: %s", check_str(err)))
            continue;
        CHECK_EQ_INT(strlen(pem), len);
        CHECK(strncmp(pem, "-----BEGIN CERTIFICATE REQUEST-----\n", 36) == 0);
        X509_REQ *req = p2m_csr_check(pem, len, NAME, err);
        if (CHECK_MSG(req != NULL, "check: %s", check_str(err))) {
            const X509_NAME *subject = X509_REQ_get_subject_name(req);
            CHECK_EQ_INT(X509_NAME_entry_count(subject), 1);
            CHECK(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), keys[i]) == 1);
            STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
            CHECK_EQ_INT(sk_X509_EXTENSION_num(exts), 1);
            sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        }
        /* the same request checked for another name is refused */
        X509_REQ *other = p2m_csr_check(pem, len, "other.pipe2me.localhost", err);
        CHECK(other == NULL);
        CHECK_EQ_STR(err, "CSR names " NAME ", not other.pipe2me.localhost");
        X509_REQ_free(other);
        X509_REQ_free(req);
        free(pem);
    }

    CHECK_CTX("p2m_csr_make with Ed25519 (made, refused by the check)");
    char *pem = p2m_csr_make(k_ed25519, NAME, &len, err);
    if (CHECK_MSG(pem != NULL, "make: %s", check_str(err))) {
        X509_REQ *req = p2m_csr_check(pem, len, NAME, err);
        CHECK(req == NULL);
        X509_REQ_free(req);
    }
    free(pem);

    CHECK_CTX("p2m_csr_make: len may be NULL");
    pem = p2m_csr_make(k_p256, NAME, NULL, err);
    CHECK(pem != NULL);
    free(pem);

    static const char *const bad_names[] = {"", "demo pipe2me", "demo\n.x", "demo/x", "*.demo.x", NULL};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        CHECK_CTX("p2m_csr_make bad name %zu: %s", i, check_str(bad_names[i]));
        err[0] = '\0';
        pem = p2m_csr_make(k_p256, bad_names[i], &len, err);
        CHECK(pem == NULL);
        CHECK(err[0] != '\0');
        free(pem);
    }
    CHECK_CTX("p2m_csr_make without a key");
    err[0] = '\0';
    CHECK(p2m_csr_make(NULL, NAME, &len, err) == NULL && err[0] != '\0');

    /* a label of 63 characters makes a name longer than a CN may be: SAN only, and a
     * certificate with an empty subject and a critical SAN */
    char long_name[100];
    memset(long_name, 'a', 63);
    strcpy(long_name + 63, ".pipe2me.localhost");
    CHECK_CTX("name of %zu bytes", strlen(long_name));
    pem = p2m_csr_make(k_p256, long_name, &len, err);
    if (CHECK_MSG(pem != NULL, "make: %s", check_str(err))) {
        X509_REQ *req = p2m_csr_check(pem, len, long_name, err);
        if (CHECK_MSG(req != NULL, "check: %s", check_str(err))) {
            CHECK_EQ_INT(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
            X509 *cert = p2m_cert_issue(req, long_name, ca, ca_key, now, 86400, err);
            if (CHECK_MSG(cert != NULL, "issue: %s", check_str(err)))
                check_issued(cert, req, long_name, ca, 86400);
            X509_free(cert);
        }
        X509_REQ_free(req);
    }
    free(pem);
    CHECK_CTX(NULL);
}

static void test_issue(void)
{
    struct spec s = {.key = k_p256, .cn = NAME};
    X509_REQ *req = build_req(&s);
    char err[P2M_ERR_LEN];
    X509 *cert, *again;

    CHECK_CTX("two issues give two serials");
    cert = p2m_cert_issue(req, NAME, ca, ca_key, now, 86400, err);
    again = p2m_cert_issue(req, NAME, ca, ca_key, now, 86400, err);
    if (CHECK(cert != NULL && again != NULL))
        CHECK(ASN1_INTEGER_cmp(X509_get0_serialNumber(cert), X509_get0_serialNumber(again)) != 0);
    X509_free(cert);
    X509_free(again);

    CHECK_CTX("issuer without a subjectKeyIdentifier");
    EVP_PKEY *other_key = ec_key("P-256");
    X509 *other_ca = make_ca(other_key, "pipe2me test CA without SKID", 0);
    CHECK(X509_get0_subject_key_id(other_ca) == NULL);
    cert = p2m_cert_issue(req, NAME, other_ca, other_key, now, 86400, err);
    if (CHECK_MSG(cert != NULL, "issue: %s", check_str(err)))
        check_issued(cert, req, NAME, other_ca, 86400);
    X509_free(cert);

    CHECK_CTX("CA key that is not the CA's");
    err[0] = '\0';
    cert = p2m_cert_issue(req, NAME, ca, other_key, now, 86400, err);
    CHECK(cert == NULL);
    CHECK_EQ_STR(err, "the CA key does not belong to the CA certificate");
    X509_free(cert);

    CHECK_CTX("expired CA");
    cert = p2m_cert_issue(req, NAME, ca, ca_key, ca_not_after, 86400, err);
    CHECK(cert == NULL);
    CHECK_EQ_STR(err, "the CA certificate has expired");
    X509_free(cert);

    CHECK_CTX("lifetime 0 and negative");
    cert = p2m_cert_issue(req, NAME, ca, ca_key, now, 0, err);
    CHECK(cert == NULL);
    X509_free(cert);
    cert = p2m_cert_issue(req, NAME, ca, ca_key, now, -1, err);
    CHECK(cert == NULL);
    X509_free(cert);

    CHECK_CTX("huge lifetime: clamped, no overflow");
    cert = p2m_cert_issue(req, NAME, ca, ca_key, now, 0x7fffffffffffffffLL, err);
    if (CHECK_MSG(cert != NULL, "issue: %s", check_str(err))) {
        long long nb, na;
        CHECK_EQ_INT(p2m_cert_validity(cert, &nb, &na), 0);
        CHECK_EQ_INT(na, ca_not_after);
    }
    X509_free(cert);

    CHECK_CTX("bad name, missing arguments");
    CHECK(p2m_cert_issue(req, "demo\r\n.x", ca, ca_key, now, 86400, err) == NULL);
    CHECK(p2m_cert_issue(NULL, NAME, ca, ca_key, now, 86400, err) == NULL);
    CHECK(p2m_cert_issue(req, NAME, NULL, ca_key, now, 86400, err) == NULL);
    CHECK(p2m_cert_issue(req, NAME, ca, NULL, now, 86400, err) == NULL);

    CHECK_CTX("RSA key: keyEncipherment");
    X509_REQ *rsa_req = build_req(&(struct spec){.key = k_rsa2048, .cn = NAME});
    cert = p2m_cert_issue(rsa_req, NAME, ca, ca_key, now, 86400, err);
    if (CHECK(cert != NULL))
        CHECK(X509_get_key_usage(cert) & KU_KEY_ENCIPHERMENT);
    X509_free(cert);
    X509_REQ_free(rsa_req);

    X509_free(other_ca);
    EVP_PKEY_free(other_key);
    X509_REQ_free(req);
    CHECK_CTX(NULL);
}

static void test_validity(void)
{
    long long nb = 0, na = 0;
    CHECK_CTX("p2m_cert_validity");
    CHECK_EQ_INT(p2m_cert_validity(ca, &nb, &na), 0);
    CHECK_EQ_INT(nb, now - 3600);
    CHECK_EQ_INT(na, now + 10 * 86400);
    CHECK_EQ_INT(p2m_cert_validity(NULL, &nb, &na), -1);

    /* GeneralizedTime past 2049 and a UTCTime before 1970 */
    X509 *cert = X509_new();
    ASN1_TIME_set_string(X509_getm_notBefore(cert), "19691231235959Z");
    ASN1_TIME_set_string(X509_getm_notAfter(cert), "20991231235959Z");
    CHECK_EQ_INT(p2m_cert_validity(cert, &nb, &na), 0);
    CHECK_EQ_INT(nb, -1);
    CHECK_EQ_INT(na, 4102444799LL);
    X509_free(cert);

    /* an unreadable notBefore */
    cert = X509_new();
    ASN1_STRING_set(X509_getm_notBefore(cert), "garbage", 7);
    CHECK_EQ_INT(p2m_cert_validity(cert, &nb, &na), -1);
    X509_free(cert);
    CHECK_CTX(NULL);
}

/* p2m_cert_has_name: exact DNS entries (case-insensitive, a wildcard only as itself) and IP
 * entries by address; a name never matches an IP entry nor the reverse. */
static void test_has_name(void)
{
    X509 *cert = X509_new();
    X509V3_CTX ctx;
    CHECK_CTX("p2m_cert_has_name");
    CHECK_EQ_INT(p2m_cert_has_name(cert, "example.org"), 0); /* no subjectAltName at all */
    X509V3_set_ctx(&ctx, ca, cert, NULL, NULL, 0);
    add_ext(cert, &ctx, NID_subject_alt_name, "DNS:Example.ORG,DNS:*.t.example.org,IP:127.0.0.1,IP:2001:db8::1,DNS:10.0.0.1");
    static const struct {
        const char *name;
        int want;
    } rows[] = {
        {"example.org", 1},
        {"EXAMPLE.org", 1},
        {"example.org.", 0},
        {"xexample.org", 0},
        {"example.or", 0},
        {"*.t.example.org", 1},
        {"a.t.example.org", 0},
        {"t.example.org", 0},
        {"127.0.0.1", 1},
        {"127.0.0.2", 0},
        {"::1", 0},
        {"2001:db8::1", 1},
        {"2001:DB8:0::1", 1},
        {"::ffff:127.0.0.1", 0}, /* 16 bytes, not 4 */
        {"10.0.0.1", 0},         /* a DNS entry spelled like an address is no IP entry */
        {"", 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("p2m_cert_has_name %s", rows[i].name);
        CHECK_EQ_INT(p2m_cert_has_name(cert, rows[i].name), rows[i].want);
    }
    X509_free(cert);
    CHECK_CTX(NULL);
}

int main(void)
{
    now = (long long)time(NULL);
    k_p256 = ec_key("P-256");
    k_p384 = ec_key("P-384");
    k_p521 = ec_key("P-521");
    k_k1 = ec_key("secp256k1");
    k_explicit = explicit_p256_key();
    k_rsa1024 = rsa_key(1024);
    k_rsa1536 = rsa_key(1536);
    k_rsa2048 = rsa_key(2048);
    k_rsa9000 = rsa_public_9000();
    if ((k_ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL)
        die("Ed25519");
    ca_key = ec_key("P-256");
    ca = make_ca(ca_key, "pipe2me test CA", 1);
    ca_not_after = now + 10 * 86400;

    test_validity();
    test_has_name();
    test_accepted();
    test_framing_accepted();
    test_refused();
    test_make();
    test_issue();

    X509_free(ca);
    EVP_PKEY *keys[] = {ca_key, k_p256, k_p384, k_p521, k_k1, k_explicit, k_rsa1024, k_rsa1536, k_rsa2048, k_rsa9000, k_ed25519};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        EVP_PKEY_free(keys[i]);
    return check_done("cert");
}
