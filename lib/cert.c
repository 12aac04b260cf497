#include "p2m/cert.h"
#include "p2m/err.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Longest DNS name (RFC 1035), and longest CN (RFC 5280 ub-common-name): a longer name goes in
 * the subjectAltName only, which is what clients match against anyway. */
#define DNS_NAME_MAX 253
#define CN_MAX 64

/* Most bytes of a request's own text that a reason quotes (PROTOCOL 4.2: reasons go back in a 400). */
#define QUOTE_MAX 64

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
    GENERAL_NAMES *ret = NULL;

    if (gens == NULL || gen == NULL || dns == NULL || !ASN1_STRING_set(dns, name, -1))
        goto Exit;
    GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
    dns = NULL;
    if (!sk_GENERAL_NAME_push(gens, gen))
        goto Exit;
    ret = gens;

Exit:
    ASN1_IA5STRING_free(dns);
    if (ret == NULL) {
        GENERAL_NAME_free(gen); /* holds dns once set0 took it */
        sk_GENERAL_NAME_free(gens);
    }
    return ret;
}

/* Appends DNS:name to gens. Returns 0 or -1 (out of memory). */
static int san_push(GENERAL_NAMES *gens, const char *name)
{
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
    if (gen == NULL || dns == NULL || !ASN1_STRING_set(dns, name, -1)) {
        GENERAL_NAME_free(gen);
        ASN1_IA5STRING_free(dns);
        return -1;
    }
    GENERAL_NAME_set0_value(gen, GEN_DNS, dns);
    if (!sk_GENERAL_NAME_push(gens, gen)) {
        GENERAL_NAME_free(gen);
        return -1;
    }
    return 0;
}

/* The names an issued certificate carries (PROTOCOL 4.3): name, then for name LABEL.DOMAIN the
 * direct-path names LABEL.direct.DOMAIN and LABEL.lan.DOMAIN (issue 20), so that a consumer sent
 * to a short path verifies the pod as it would through the relay. A name without a dot, or whose
 * direct names would pass DNS_NAME_MAX, gets only itself. */
static GENERAL_NAMES *san_issued(const char *name)
{
    GENERAL_NAMES *gens = san_for(name);
    const char *dot = strchr(name, '.');
    if (gens == NULL || dot == NULL || strlen(name) + sizeof(".direct") - 1 > DNS_NAME_MAX)
        return gens;
    static const char *const sub[] = {"direct", "lan"};
    for (size_t i = 0; i < sizeof(sub) / sizeof(sub[0]); i++) {
        char extra[DNS_NAME_MAX + 1];
        snprintf(extra, sizeof(extra), "%.*s.%s%s", (int)(dot - name), name, sub[i], dot);
        if (san_push(gens, extra) != 0) {
            GENERAL_NAMES_free(gens);
            return NULL;
        }
    }
    return gens;
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

/* Renders s[0..len), text from a request, for a reason: at most QUOTE_MAX bytes, each byte outside
 * printable ASCII as '?', "..." when cut. out holds QUOTE_MAX + 4 bytes. */
static const char *quote(const void *s, size_t len, char *out)
{
    const unsigned char *p = s;
    size_t n = len > QUOTE_MAX ? QUOTE_MAX : len;
    for (size_t i = 0; i < n; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    strcpy(out + n, len > n ? "..." : "");
    return out;
}

/* An OID as a reason shows it: OpenSSL's short name, else the dotted form, quoted. */
static const char *quote_object(const ASN1_OBJECT *obj, char *out)
{
    char text[128];
    int nid = OBJ_obj2nid(obj);
    if (nid != NID_undef)
        return quote(OBJ_nid2sn(nid), strlen(OBJ_nid2sn(nid)), out);
    int n = OBJ_obj2txt(text, sizeof(text), obj, 1);
    if (n <= 0)
        return "an unknown attribute";
    return quote(text, strnlen(text, sizeof(text)), out);
}

/* Whether s[0..len) is name, ignoring ASCII case (name is plain ASCII; s may hold anything). */
static int name_equal(const void *s, size_t len, const char *name)
{
    const unsigned char *p = s;
    if (len != strlen(name))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char a = p[i], b = (unsigned char)name[i];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b - 'A' + 'a');
        if (a != b)
            return 0;
    }
    return 1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The DER inside exactly one PEM CERTIFICATE REQUEST block that only white space surrounds.
 * On success *der is OPENSSL_malloc'd. */
static int pem_unwrap(const char *pem, size_t len, unsigned char **der, long *der_len, char *err)
{
    BIO *in = NULL;
    char *type = NULL, *header = NULL, *rest = NULL, quoted[QUOTE_MAX + 4];
    int rc = -1;
    long rest_len;
    size_t start = 0;

    *der = NULL;
    while (start < len && is_space((unsigned char)pem[start]))
        start++;
    /* PEM_read_bio skips anything before a BEGIN line; we allow only white space there */
    if (len - start < 11 || memcmp(pem + start, "-----BEGIN ", 11) != 0) {
        p2m_err(err, "not a PEM certificate request");
        goto Exit;
    }
    if ((in = BIO_new_mem_buf(pem + start, (int)(len - start))) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    if (!PEM_read_bio(in, &type, &header, der, der_len)) {
        p2m_err(err, "not a PEM certificate request");
        goto Exit;
    }
    if (strcmp(type, PEM_STRING_X509_REQ) != 0 && strcmp(type, PEM_STRING_X509_REQ_OLD) != 0) {
        p2m_err(err, "CSR is a PEM %s, not a CERTIFICATE REQUEST", quote(type, strlen(type), quoted));
        goto Exit;
    }
    if (header[0] != '\0') {
        p2m_err(err, "CSR PEM block has headers (an encrypted block?)");
        goto Exit;
    }
    rest_len = BIO_get_mem_data(in, &rest);
    for (long i = 0; i < rest_len; i++) {
        if (!is_space((unsigned char)rest[i])) {
            p2m_err(err, rest_len - i >= 11 && memcmp(rest + i, "-----BEGIN ", 11) == 0 ? "CSR has more than one PEM block"
                                                                                        : "CSR has text after its PEM block");
            goto Exit;
        }
    }
    rc = 0;

Exit:
    if (rc != 0) {
        OPENSSL_free(*der);
        *der = NULL;
    }
    OPENSSL_free(type);
    OPENSSL_free(header);
    BIO_free(in);
    return rc;
}

/* RSA 2048..8192 bits, or EC on a named P-256, P-384 or P-521. */
static int key_acceptable(EVP_PKEY *key, char *err)
{
    if (key == NULL)
        return p2m_err(err, "CSR key: unsupported or malformed public key");
    if (EVP_PKEY_is_a(key, "RSA")) {
        int bits = EVP_PKEY_get_bits(key);
        if (bits < 2048)
            return p2m_err(err, "CSR key: RSA %d bits, at least 2048 needed", bits);
        if (bits > 8192)
            return p2m_err(err, "CSR key: RSA %d bits, at most 8192 allowed", bits);
        return 0;
    }
    if (EVP_PKEY_is_a(key, "EC")) {
        static const char *const curves[] = {"prime256v1", "secp384r1", "secp521r1"};
        char group[80], encoding[32], quoted[QUOTE_MAX + 4];
        size_t group_len = 0;
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_EC_ENCODING, encoding, sizeof(encoding), NULL) &&
            strcmp(encoding, OSSL_PKEY_EC_ENCODING_GROUP) != 0)
            return p2m_err(err, "CSR key: EC with explicit parameters, a named curve needed");
        if (!EVP_PKEY_get_group_name(key, group, sizeof(group), &group_len))
            return p2m_err(err, "CSR key: EC without a named curve, P-256, P-384 or P-521 needed");
        for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
            if (strcmp(group, curves[i]) == 0)
                return 0;
        }
        return p2m_err(err, "CSR key: EC curve %s, P-256, P-384 or P-521 needed", quote(group, group_len, quoted));
    }
    const char *type = EVP_PKEY_get0_type_name(key);
    char quoted[QUOTE_MAX + 4];
    return p2m_err(err, "CSR key: %s, RSA (2048-8192 bits) or EC (P-256, P-384, P-521) needed",
                   type == NULL ? "unknown type" : quote(type, strlen(type), quoted));
}

/* Finds the CN, refusing any other subject attribute and a second CN. *cn stays NULL without one. */
static int subject_cn(X509_REQ *req, const ASN1_STRING **cn, char *err)
{
    const X509_NAME *subject = X509_REQ_get_subject_name(req);
    char quoted[QUOTE_MAX + 4];

    *cn = NULL;
    for (int i = 0; i < X509_NAME_entry_count(subject); i++) {
        const X509_NAME_ENTRY *entry = X509_NAME_get_entry(subject, i);
        const ASN1_OBJECT *obj = X509_NAME_ENTRY_get_object(entry);
        if (OBJ_obj2nid(obj) != NID_commonName)
            return p2m_err(err, "CSR subject has %s, only CN allowed", quote_object(obj, quoted));
        if (*cn != NULL)
            return p2m_err(err, "CSR subject has more than one CN");
        *cn = X509_NAME_ENTRY_get_data(entry);
    }
    return 0;
}

/* The requested extensions. An extension request is optional; a second one (or a second value in
 * it) could hide extensions from X509_REQ_get_extensions, which reads only the first, so those
 * are refused. */
static int requested_extensions(X509_REQ *req, STACK_OF(X509_EXTENSION) * *exts, char *err)
{
    int requests = 0;

    *exts = NULL;
    for (int i = 0; i < X509_REQ_get_attr_count(req); i++) {
        X509_ATTRIBUTE *attr = X509_REQ_get_attr(req, i);
        int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attr));
        if (nid != NID_ext_req && nid != NID_ms_ext_req)
            continue;
        if (++requests > 1)
            return p2m_err(err, "CSR has more than one extension request");
        if (X509_ATTRIBUTE_count(attr) != 1)
            return p2m_err(err, "CSR extension request has %d values, 1 allowed", X509_ATTRIBUTE_count(attr));
    }
    if (requests == 0)
        return 0;
    if ((*exts = X509_REQ_get_extensions(req)) == NULL)
        return p2m_err(err, "CSR extension request does not parse");
    return 0;
}

/* The one extension of type nid in exts (*found NULL when absent); a repeated one is refused. */
static int unique_extension(const STACK_OF(X509_EXTENSION) * exts, int nid, const char *what, X509_EXTENSION **found, char *err)
{
    *found = NULL;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != nid)
            continue;
        if (*found != NULL)
            return p2m_err(err, "CSR has more than one %s extension", what);
        *found = ext;
    }
    return 0;
}

static const char *general_name_kind(int type)
{
    switch (type) {
    case GEN_IPADD:
        return "an IP address";
    case GEN_EMAIL:
        return "an email address";
    case GEN_URI:
        return "a URI";
    case GEN_OTHERNAME:
        return "an otherName";
    case GEN_DIRNAME:
        return "a directory name";
    case GEN_RID:
        return "a registered ID";
    case GEN_X400:
        return "an X.400 address";
    case GEN_EDIPARTY:
        return "an EDI party name";
    default:
        return "an unknown name type";
    }
}

/* subjectAltName, if present: exactly DNS:name. */
static int check_san(X509_EXTENSION *ext, const char *name, char *err)
{
    GENERAL_NAMES *gens = X509V3_EXT_d2i(ext);
    char quoted[QUOTE_MAX + 4];
    int rc = -1;

    if (gens == NULL) {
        p2m_err(err, "CSR subjectAltName does not parse");
        goto Exit;
    }
    if (sk_GENERAL_NAME_num(gens) != 1) {
        p2m_err(err, "CSR has %d subjectAltName entries, 1 (DNS:%s) allowed", sk_GENERAL_NAME_num(gens), name);
        goto Exit;
    }
    const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, 0);
    if (gen->type != GEN_DNS) {
        p2m_err(err, "CSR subjectAltName has %s, only DNS:%s allowed", general_name_kind(gen->type), name);
        goto Exit;
    }
    const ASN1_IA5STRING *dns = gen->d.dNSName;
    if (!name_equal(dns->data, (size_t)dns->length, name)) {
        p2m_err(err, "CSR names %s, not %s", quote(dns->data, (size_t)dns->length, quoted), name);
        goto Exit;
    }
    rc = 0;

Exit:
    GENERAL_NAMES_free(gens);
    return rc;
}

static int check_basic_constraints(X509_EXTENSION *ext, char *err)
{
    BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(ext);
    int rc = -1;

    if (bc == NULL)
        p2m_err(err, "CSR basicConstraints does not parse");
    else if (bc->ca)
        p2m_err(err, "CSR asks for a CA certificate");
    else
        rc = 0;
    BASIC_CONSTRAINTS_free(bc);
    return rc;
}

X509_REQ *p2m_csr_check(const char *pem, size_t len, const char *name, char *err)
{
    X509_REQ *req = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_EXTENSION *san = NULL, *bc = NULL;
    const ASN1_STRING *cn;
    unsigned char *der = NULL, *cn_utf8 = NULL;
    const unsigned char *p;
    char quoted[QUOTE_MAX + 4];
    long der_len = 0;
    int cn_len, ok = 0;

    if (name_valid(name, err) != 0)
        goto Exit;
    if (pem == NULL || len == 0) {
        p2m_err(err, "CSR is empty");
        goto Exit;
    }
    if (len > P2M_CSR_MAX) {
        p2m_err(err, "CSR is larger than %d bytes", P2M_CSR_MAX);
        goto Exit;
    }
    if (memchr(pem, '\0', len) != NULL) {
        p2m_err(err, "CSR contains a NUL byte");
        goto Exit;
    }
    if (pem_unwrap(pem, len, &der, &der_len, err) != 0)
        goto Exit;
    p = der;
    if ((req = d2i_X509_REQ(NULL, &p, der_len)) == NULL) {
        p2m_err(err, "CSR is not a PKCS #10 certificate request");
        goto Exit;
    }
    if (p != der + der_len) {
        p2m_err(err, "CSR has bytes after its certificate request");
        goto Exit;
    }
    if (X509_REQ_get_version(req) != X509_REQ_VERSION_1) {
        p2m_err(err, "CSR version is not 1");
        goto Exit;
    }
    /* the key before the signature: a refused key costs no public-key operation */
    EVP_PKEY *key = X509_REQ_get0_pubkey(req);
    if (key_acceptable(key, err) != 0)
        goto Exit;
    if (X509_REQ_verify(req, key) != 1) {
        p2m_err(err, "CSR signature does not verify");
        goto Exit;
    }
    if (subject_cn(req, &cn, err) != 0)
        goto Exit;
    if (cn != NULL) {
        if ((cn_len = ASN1_STRING_to_UTF8(&cn_utf8, cn)) < 0) {
            p2m_err(err, "CSR subject CN is not a valid string");
            goto Exit;
        }
        if (!name_equal(cn_utf8, (size_t)cn_len, name)) {
            p2m_err(err, "CSR names %s, not %s", quote(cn_utf8, (size_t)cn_len, quoted), name);
            goto Exit;
        }
    }
    if (requested_extensions(req, &exts, err) != 0 ||
        unique_extension(exts, NID_subject_alt_name, "subjectAltName", &san, err) != 0 ||
        unique_extension(exts, NID_basic_constraints, "basicConstraints", &bc, err) != 0)
        goto Exit;
    if (san != NULL && check_san(san, name, err) != 0)
        goto Exit;
    if (san == NULL && cn == NULL) {
        p2m_err(err, "CSR has neither a CN nor a subjectAltName");
        goto Exit;
    }
    if (bc != NULL && check_basic_constraints(bc, err) != 0)
        goto Exit;
    ok = 1;

Exit:
    OPENSSL_free(cn_utf8);
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (!ok) {
        X509_REQ_free(req);
        req = NULL;
        /* what OpenSSL queued about this request is in err; don't leave it to confuse a later caller */
        ERR_clear_error();
    }
    return req;
}

/* A random serial of 127 bits: positive in 16 DER bytes, never 0 (RFC 5280 4.1.2.2). */
static int set_serial(X509 *cert)
{
    unsigned char bytes[16], any;
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    int rc = -1;

    do {
        if (RAND_bytes(bytes, sizeof(bytes)) != 1)
            goto Exit;
        bytes[0] &= 0x7f;
        any = 0;
        for (size_t i = 0; i < sizeof(bytes); i++)
            any |= bytes[i];
    } while (any == 0);
    if ((bn = BN_bin2bn(bytes, sizeof(bytes), NULL)) == NULL || (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
        !X509_set_serialNumber(cert, serial))
        goto Exit;
    rc = 0;

Exit:
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}

/* A keyIdentifier: the CA's subjectKeyIdentifier, or, when it has none, the SHA-1 of its public key
 * (RFC 5280 4.2.1.2 method 1), which is what its SKID would have been. */
static int add_authority_key_id(X509 *cert, X509 *ca)
{
    const ASN1_OCTET_STRING *ca_skid = X509_get0_subject_key_id(ca);
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int rc = -1;

    if (akid == NULL)
        goto Exit;
    if (ca_skid != NULL) {
        akid->keyid = ASN1_OCTET_STRING_dup(ca_skid);
    } else if (X509_pubkey_digest(ca, EVP_sha1(), md, &md_len)) {
        if ((akid->keyid = ASN1_OCTET_STRING_new()) != NULL && !ASN1_OCTET_STRING_set(akid->keyid, md, (int)md_len))
            goto Exit;
    }
    if (akid->keyid == NULL || !X509_add1_ext_i2d(cert, NID_authority_key_identifier, akid, 0, X509V3_ADD_APPEND))
        goto Exit;
    rc = 0;

Exit:
    AUTHORITY_KEYID_free(akid);
    return rc;
}

static int add_conf_extension(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    int ok = ext != NULL && X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

X509 *p2m_cert_issue(X509_REQ *req, const char *name, X509 *ca, EVP_PKEY *ca_key, long long now, long long lifetime, char *err)
{
    X509 *cert = NULL;
    GENERAL_NAMES *san = NULL;
    EVP_PKEY *key;
    X509V3_CTX ctx;
    long long ca_not_before, ca_not_after, not_after;
    int ok = 0;

    if (req == NULL || ca == NULL || ca_key == NULL) {
        p2m_err(err, "no CSR, CA certificate or CA key");
        goto Exit;
    }
    if (name_valid(name, err) != 0)
        goto Exit;
    if (lifetime <= 0) {
        p2m_err(err, "certificate lifetime must be positive");
        goto Exit;
    }
    if ((key = X509_REQ_get0_pubkey(req)) == NULL) {
        p2m_err(err, "CSR has no usable public key");
        goto Exit;
    }
    if (!X509_check_private_key(ca, ca_key)) {
        p2m_err(err, "the CA key does not belong to the CA certificate");
        goto Exit;
    }
    if (p2m_cert_validity(ca, &ca_not_before, &ca_not_after) != 0) {
        p2m_err(err, "cannot read the CA certificate's validity");
        goto Exit;
    }
    if (ca_not_after <= now) {
        p2m_err(err, "the CA certificate has expired");
        goto Exit;
    }
    /* never past the CA's own notAfter; compared without computing now + lifetime, which may overflow */
    not_after = lifetime >= ca_not_after - now ? ca_not_after : now + lifetime;

    if ((cert = X509_new()) == NULL || !X509_set_version(cert, X509_VERSION_3) || set_serial(cert) != 0 ||
        !X509_set_issuer_name(cert, X509_get_subject_name(ca)) || set_subject(X509_get_subject_name(cert), name, err) != 0 ||
        !X509_set_pubkey(cert, key) || ASN1_TIME_set(X509_getm_notBefore(cert), (time_t)(now - 300)) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(cert), (time_t)not_after) == NULL) {
        p2m_err(err, "cannot build the certificate");
        goto Exit;
    }

    /* a certificate with an empty subject (name too long for a CN) must mark its SAN critical */
    X509V3_set_ctx(&ctx, ca, cert, NULL, NULL, 0);
    if ((san = san_issued(name)) == NULL ||
        !X509_add1_ext_i2d(cert, NID_subject_alt_name, san, strlen(name) > CN_MAX, X509V3_ADD_APPEND) ||
        add_conf_extension(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_conf_extension(cert, &ctx, NID_key_usage,
                           EVP_PKEY_is_a(key, "RSA") ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature") !=
            0 ||
        add_conf_extension(cert, &ctx, NID_ext_key_usage, "serverAuth") != 0 ||
        add_conf_extension(cert, &ctx, NID_subject_key_identifier, "hash") != 0 || add_authority_key_id(cert, ca) != 0) {
        p2m_err(err, "cannot add the certificate's extensions");
        goto Exit;
    }
    if (X509_sign(cert, ca_key, sign_digest(ca_key)) <= 0) {
        p2m_err(err, "cannot sign the certificate with the CA key");
        goto Exit;
    }
    ok = 1;

Exit:
    GENERAL_NAMES_free(san);
    if (!ok) {
        X509_free(cert);
        cert = NULL;
        ERR_clear_error();
    }
    return cert;
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

int p2m_cert_has_name(const X509 *cert, const char *name)
{
    unsigned char ip[16];
    int iplen = inet_pton(AF_INET, name, ip) == 1 ? 4 : inet_pton(AF_INET6, name, ip) == 1 ? 16 : 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (iplen != 0 && g->type == GEN_IPADD)
            found = ASN1_STRING_length(g->d.iPAddress) == iplen &&
                    memcmp(ASN1_STRING_get0_data(g->d.iPAddress), ip, (size_t)iplen) == 0;
        else if (iplen == 0 && g->type == GEN_DNS)
            found = (size_t)ASN1_STRING_length(g->d.dNSName) == strlen(name) &&
                    strncasecmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), name, strlen(name)) == 0;
    }
    GENERAL_NAMES_free(gens);
    return found;
}
