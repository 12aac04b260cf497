/* Unit tests for pod/chain.c against pod/chain.h: PEM chains as the registrar answers POST
 * /certificate and GET /cacert, with hostile rows (empty, garbage, NUL bytes, truncated PEM, bad
 * base64, a key or a CSR where a certificate belongs, a block whose DER is not a certificate, too
 * many certificates, input over CHAIN_PEM_MAX and at it). Certificates are made here. */

#include "chain.h"
#include "check.h"
#include "p2m/err.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what)
{
    fprintf(stderr, "setup failed: %s\n", what);
    ERR_print_errors_fp(stderr);
    abort();
}

/* A growing byte buffer. It grows by doubling: the over-long rows append a byte at a time, and
 * growing by the byte would copy the whole buffer each time (ASan's realloc always moves). */
typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap < 256 ? 256 : b->cap;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            die("realloc");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_reset(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static EVP_PKEY *key;
static X509 *certs[3];
static char *cert_pem[3], *key_pem, *csr_pem;

static char *bio_text(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        die("malloc");
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    BIO_free(bio);
    return s;
}

static X509 *make_cert(const char *cn, long serial)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    if (x == NULL || name == NULL || !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), serial) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name) || X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL || !X509_set_pubkey(x, key) || !X509_sign(x, key, EVP_sha256()))
        die("certificate");
    X509_NAME_free(name);
    return x;
}

static void setup(void)
{
    if ((key = EVP_EC_gen("P-256")) == NULL)
        die("key");
    for (int i = 0; i < 3; i++) {
        char cn[32];
        snprintf(cn, sizeof(cn), "chain-test-%d", i);
        certs[i] = make_cert(cn, i + 1);
        BIO *bio = BIO_new(BIO_s_mem());
        if (bio == NULL || !PEM_write_bio_X509(bio, certs[i]))
            die("PEM");
        cert_pem[i] = bio_text(bio);
    }
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
        die("key PEM");
    key_pem = bio_text(bio);

    X509_REQ *req = X509_REQ_new();
    if (req == NULL || !X509_REQ_set_pubkey(req, key) || !X509_REQ_sign(req, key, EVP_sha256()) ||
        (bio = BIO_new(BIO_s_mem())) == NULL || !PEM_write_bio_X509_REQ(bio, req))
        die("CSR");
    csr_pem = bio_text(bio);
    X509_REQ_free(req);
}

/* Parses len bytes of in from an exact copy. want > 0: that many certificates, the first of them
 * certs[first], certs[first + 1], ... (cycling through the three); want -1: refused with a reason
 * that contains reason. OpenSSL's error queue is empty afterwards either way. */
static void expect(const char *what, const char *in, size_t len, int want, int first, const char *reason)
{
    char err[P2M_ERR_LEN] = "";
    CHECK_CTX("%s (%zu bytes)", what, len);
    char *copy = check_exact_copy(in, len);
    STACK_OF(X509) *sk = chain_parse(copy, len, err);
    free(copy);
    CHECK_MSG(ERR_peek_error() == 0, "OpenSSL's error queue is not empty");
    ERR_clear_error();
    if (want < 0) {
        CHECK_MSG(sk == NULL, "accepted %d certificates", sk != NULL ? sk_X509_num(sk) : 0);
        check_refusal(sk == NULL ? -1 : 0, err, reason);
    } else if (CHECK_MSG(sk != NULL, "refused: %s", err)) {
        if (CHECK_EQ_INT(sk_X509_num(sk), want))
            for (int i = 0; i < want; i++)
                CHECK_MSG(X509_cmp(sk_X509_value(sk, i), certs[(first + i) % 3]) == 0, "certificate %d is not certs[%d]", i,
                          (first + i) % 3);
    }
    sk_X509_pop_free(sk, X509_free);
    CHECK_CTX(NULL);
}

static void expect_buf(const char *what, const buf_t *b, int want, int first, const char *reason)
{
    expect(what, b->p != NULL ? b->p : "", b->len, want, first, reason);
}

/* The PEM of certs[i] with line `line` (0 = BEGIN) changed by f. */
static void replace_line(buf_t *b, const char *pem, int line, const char *with)
{
    const char *p = pem;
    for (int i = 0; *p != '\0'; i++) {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) + 1 : strlen(p);
        if (i == line)
            buf_str(b, with);
        else
            buf_add(b, p, n);
        p += n;
    }
}

static void test_accepted(void)
{
    buf_t b = {0};
    expect("one certificate", cert_pem[0], strlen(cert_pem[0]), 1, 0, NULL);

    buf_str(&b, cert_pem[1]);
    buf_str(&b, cert_pem[2]);
    expect_buf("leaf and CA, in order", &b, 2, 1, NULL);
    buf_reset(&b);

    buf_str(&b, "Subject: the registrar's leaf\n");
    buf_str(&b, cert_pem[0]);
    buf_str(&b, "\nbetween the blocks: - ----- BEGIN\n\n");
    buf_str(&b, cert_pem[1]);
    buf_str(&b, "trailing text without a newline");
    expect_buf("text around and between", &b, 2, 0, NULL);
    buf_reset(&b);

    for (int i = 0; i < CHAIN_CERTS_MAX; i++)
        buf_str(&b, cert_pem[i % 3]);
    expect_buf("CHAIN_CERTS_MAX certificates", &b, CHAIN_CERTS_MAX, 0, NULL);
    buf_reset(&b);

    buf_str(&b, key_pem);
    buf_str(&b, cert_pem[0]);
    buf_str(&b, csr_pem);
    expect_buf("a key and a CSR around a certificate are skipped", &b, 1, 0, NULL);
    buf_reset(&b);

    for (const char *p = cert_pem[2]; *p != '\0'; p++) {
        if (*p == '\n')
            buf_str(&b, "\r");
        buf_add(&b, p, 1);
    }
    expect_buf("CRLF line ends", &b, 1, 2, NULL);
    buf_reset(&b);

    buf_add(&b, cert_pem[0], strlen(cert_pem[0]) - 1);
    expect_buf("no newline after END", &b, 1, 0, NULL);
    buf_reset(&b);

    /* exactly CHAIN_PEM_MAX bytes: a certificate, then blank lines */
    buf_str(&b, cert_pem[0]);
    while (b.len < CHAIN_PEM_MAX)
        buf_str(&b, "\n");
    expect("CHAIN_PEM_MAX bytes", b.p, CHAIN_PEM_MAX, 1, 0, NULL);
    buf_reset(&b);
}

static void test_refused(void)
{
    buf_t b = {0};
    char big[CHAIN_PEM_MAX + 2];

    expect("empty", "", 0, -1, 0, "empty");
    expect("one NUL", "\0", 1, -1, 0, "no PEM certificate");
    expect("NULs", "\0\0\0\0\0\0\0\0", 8, -1, 0, "no PEM certificate");
    expect("garbage", "hello, world\n", 13, -1, 0, "no PEM certificate");
    expect("binary", "\xff\xfe\x30\x82\x01\x00", 6, -1, 0, "no PEM certificate");
    expect("a key", key_pem, strlen(key_pem), -1, 0, "no PEM certificate");
    expect("a CSR", csr_pem, strlen(csr_pem), -1, 0, "no PEM certificate");
    expect("BEGIN line only", "-----BEGIN CERTIFICATE-----\n", 28, -1, 0, "a PEM block does not decode");
    expect("an empty block", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", 54, -1, 0, "a PEM block does not decode");
    expect("END line only", "-----END CERTIFICATE-----\n", 26, -1, 0, "no PEM certificate");

    /* truncated */
    expect("truncated in the base64", cert_pem[0], 200, -1, 0, "a PEM block does not decode");
    expect("truncated in the END line", cert_pem[0], strlen(cert_pem[0]) - 10, -1, 0, "a PEM block does not decode");
    buf_str(&b, cert_pem[0]);
    buf_add(&b, cert_pem[1], 200);
    expect_buf("a certificate, then a truncated one", &b, -1, 0, "a PEM block after certificate 1 does not decode");
    buf_reset(&b);

    /* base64 errors */
    replace_line(&b, cert_pem[0], 2, "!!!!\n");
    expect_buf("a line that is not base64", &b, -1, 0, "a PEM block does not decode");
    buf_reset(&b);
    buf_str(&b, cert_pem[0]);
    buf_str(&b, cert_pem[1]);
    replace_line(&b, cert_pem[2], 3, "QUJD\x01QUJD\n");
    expect_buf("two certificates, then a bad base64 line", &b, -1, 0, "a PEM block after certificate 2 does not decode");
    buf_reset(&b);
    replace_line(&b, cert_pem[0], 1, "");
    expect_buf("a base64 line missing", &b, -1, 0, "a PEM block does not decode");
    buf_reset(&b);
    for (const char *p = cert_pem[0]; *p != '\0'; p++)
        if (p - cert_pem[0] != 100)
            buf_add(&b, p, 1);
        else
            buf_add(&b, "\0", 1);
    expect_buf("a NUL in the base64", &b, -1, 0, "a PEM block does not decode");
    buf_reset(&b);

    /* base64 that is not a certificate: the key's block relabelled */
    replace_line(&b, key_pem, 0, "-----BEGIN CERTIFICATE-----\n");
    char *relabelled = strdup(b.p);
    buf_reset(&b);
    if (relabelled == NULL)
        die("strdup");
    char *end = strstr(relabelled, "-----END PRIVATE KEY-----");
    if (end == NULL)
        die("key PEM has no END line");
    buf_add(&b, relabelled, (size_t)(end - relabelled));
    buf_str(&b, "-----END CERTIFICATE-----\n");
    free(relabelled);
    expect_buf("a key's DER labelled CERTIFICATE", &b, -1, 0, "a PEM block does not decode");
    buf_reset(&b);

    /* a broken block of another type also refuses the chain: it may hide a certificate */
    replace_line(&b, key_pem, 1, "!!!!\n");
    buf_str(&b, cert_pem[0]);
    expect_buf("a broken key before a certificate", &b, -1, 0, "a PEM block does not decode");
    buf_reset(&b);

    /* too many */
    for (int i = 0; i < CHAIN_CERTS_MAX + 1; i++)
        buf_str(&b, cert_pem[i % 3]);
    expect_buf("CHAIN_CERTS_MAX + 1 certificates", &b, -1, 0, "more than 8 certificates");
    buf_reset(&b);
    while (b.len + strlen(cert_pem[0]) <= CHAIN_PEM_MAX)
        buf_str(&b, cert_pem[0]);
    expect_buf("as many certificates as fit", &b, -1, 0, "more than 8 certificates");
    buf_reset(&b);

    /* over-long */
    memset(big, '\n', sizeof(big));
    memcpy(big, cert_pem[0], strlen(cert_pem[0]));
    expect("CHAIN_PEM_MAX + 1 bytes", big, CHAIN_PEM_MAX + 1, -1, 0, "larger than 65536 bytes");
    expect("CHAIN_PEM_MAX + 2 bytes", big, CHAIN_PEM_MAX + 2, -1, 0, "larger than 65536 bytes");
    buf_str(&b, cert_pem[0]);
    while (b.len <= (size_t)4 * CHAIN_PEM_MAX)
        buf_str(&b, "x");
    expect_buf("four times CHAIN_PEM_MAX", &b, -1, 0, "larger than 65536 bytes");
    buf_reset(&b);
}

int main(void)
{
    setup();
    test_accepted();
    test_refused();
    for (int i = 0; i < 3; i++) {
        X509_free(certs[i]);
        free(cert_pem[i]);
    }
    free(key_pem);
    free(csr_pem);
    EVP_PKEY_free(key);
    return check_done("chain");
}
