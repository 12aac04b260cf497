/* --tls-terminate: the pod's key and its certificate for LABEL.DOMAIN (docs/PROTOCOL.md 4.4).
 *
 * DIR/tls/ (mode 0700) holds key.pem (EC P-256, made once, mode 0600), cert.pem (the chain as the
 * registrar returned it) and ca.pem (GET /cacert). Every file is written to a temporary name,
 * fsync'd and renamed, so that a crash leaves the old file or the new one.
 *
 * At start the files are loaded and checked: the certificate must match the key, name LABEL.DOMAIN
 * in its subjectAltName, verify against ca.pem for a TLS server, and be less than two thirds through
 * its lifetime. Otherwise, and at that two-thirds point while running, the pod renews: GET /cacert
 * (so that a CA the registrar has changed is followed), a CSR from p2m_csr_make(), POST
 * /certificate/LABEL through register.c (same curl handle, same credential), and the chain that
 * comes back is checked like the one on disk before it replaces it. tls_server_ctx() builds the
 * server context from the new files; the old context is released (live connections keep their
 * reference). The first certificate in place lets the pool fill.
 *
 * Failures are retried with a backoff: register.c's for the registrar's own troubles (it holds
 * its requests for Retry-After too), and from a minute up to an hour when the registrar refused
 * the CSR (400) or sent a certificate that does not check, as asking again at once would only get
 * the same answer. The current certificate, if any, is served meanwhile. The key is never logged. */
#include "pod.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "p2m/cert.h"
#include "p2m/err.h"
#include "chain.h"

#define CERT_MAGIC 0x43455254u          /* "CERT" */
#define CERT_REFUSED_MIN_MS 60000       /* a refused CSR or a bad certificate: retried after a minute, */
#define CERT_REFUSED_MAX_MS 3600000     /* doubling up to an hour */
#define CERT_CHECK_MAX_MS (3600 * 1000) /* the renewal timer wakes at least hourly: clocks jump */
#define CERT_RENEW_MIN_MS 5000          /* a certificate is kept at least this long */

typedef struct pod_cert cert_t;

struct pod_cert {
    uint32_t magic;
    pod_t *pod;
    char name[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 2]; /* LABEL.DOMAIN */
    char dir[POD_PATH_MAX + 8];                    /* DIR/tls */
    char key_path[POD_PATH_MAX + 32], cert_path[POD_PATH_MAX + 32], ca_path[POD_PATH_MAX + 32];
    EVP_PKEY *key;
    STACK_OF(X509) * chain; /* installed: what pod->tls_ctx serves; NULL when none */
    long long not_before, not_after;
    long long since; /* when we got it (unix seconds) */
    char serial[80];
    STACK_OF(X509) * ca; /* ca.pem, NULL when none */
    p2m_loop_timer_t timer;
    int busy;              /* a renewal runs: /cacert, then the certificate */
    char why[256];         /* the reason given to renew(), as its callers word it */
    pod_backoff_t bo;      /* the registrar's troubles */
    pod_backoff_t refused; /* refusals in a row (400, a bad certificate): a minute doubling to an hour, no jitter */
    unsigned long renewed; /* certificates installed since start */
};

static cert_t *cert_check(cert_t *c)
{
    if (c == NULL || c->magic != CERT_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "cert_bad_magic", "ptr=%p", (void *)c);
        abort();
    }
    return c;
}

/* OpenSSL's last error, one line. */
static const char *ssl_error(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, cap, "unknown error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

/* --- files ------------------------------------------------------------------------------------ */

/* Writes len bytes to path.tmp (mode, created afresh), fsyncs it and leaves it there; the caller
 * renames it with file_commit() or removes it. Returns 0 or -1 with err. */
static int file_stage(const char *path, const void *data, size_t len, mode_t mode, char *err)
{
    char tmp[POD_PATH_MAX + 48];
    size_t off = 0;
    int ret = -1;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return p2m_err(err, "%s: %s", tmp, strerror(errno));
    while (off < len) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            p2m_err(err, "%s: %s", tmp, strerror(errno));
            goto Exit;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0) {
        p2m_err(err, "%s: fsync: %s", tmp, strerror(errno));
        goto Exit;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        p2m_err(err, "%s: %s", tmp, strerror(errno));
        goto Exit;
    }
    ret = 0;
Exit:
    if (fd >= 0)
        close(fd);
    if (ret != 0)
        unlink(tmp);
    return ret;
}

/* Renames path.tmp over path and syncs the directory. Returns 0 or -1 with err. */
static int file_commit(const cert_t *c, const char *path, char *err)
{
    char tmp[POD_PATH_MAX + 48];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (rename(tmp, path) != 0) {
        p2m_err(err, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    int dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the rename itself; a failure only costs durability */
        close(dfd);
    }
    return 0;
}

static int file_write(const cert_t *c, const char *path, const void *data, size_t len, mode_t mode, char *err)
{
    return file_stage(path, data, len, mode, err) != 0 ? -1 : file_commit(c, path, err);
}

/* Reads a PEM file of at most CHAIN_PEM_MAX bytes. Returns its certificates or NULL with err
 * ("missing" when there is no file). */
static STACK_OF(X509) * chain_load(const char *path, char *err)
{
    char *buf = NULL, e[P2M_ERR_LEN];
    STACK_OF(X509) *sk = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        p2m_err(err, errno == ENOENT ? "missing" : "unreadable: %s", strerror(errno));
        return NULL;
    }
    if ((buf = malloc(CHAIN_PEM_MAX + 1)) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, CHAIN_PEM_MAX + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            p2m_err(err, "unreadable: %s", strerror(errno));
            goto Exit;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > CHAIN_PEM_MAX) {
            p2m_err(err, "unreadable: larger than %d bytes", CHAIN_PEM_MAX);
            goto Exit;
        }
    }
    if ((sk = chain_parse(buf, got, e)) == NULL)
        p2m_err(err, "unreadable: %s", e);
Exit:
    free(buf);
    close(fd);
    return sk;
}

/* --- the key ---------------------------------------------------------------------------------- */

/* Loads DIR/tls/key.pem, or makes an EC P-256 key and writes it there (mode 0600) when there is
 * none. Returns 0 or -1 with err. */
static int key_load(cert_t *c, char *err)
{
    char e[256];
    struct stat st;
    BIO *bio = NULL;
    int ret = -1;
    if (lstat(c->key_path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return p2m_err(err, "%s: not a regular file", c->key_path);
        if ((st.st_mode & 077) != 0 && chmod(c->key_path, 0600) != 0)
            return p2m_err(err, "%s: group or others may read it and chmod 600 failed: %s", c->key_path, strerror(errno));
        if ((bio = BIO_new_file(c->key_path, "r")) == NULL || (c->key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) == NULL) {
            ERR_clear_error();
            p2m_err(err, "%s: not a PEM private key (remove it and a new key is made)", c->key_path);
            goto Exit;
        }
        ret = 0;
        goto Exit;
    }
    if (errno != ENOENT)
        return p2m_err(err, "%s: %s", c->key_path, strerror(errno));

    /* A secure-heap BIO wipes the PEM text when freed. */
    char *pem;
    long len;
    if ((c->key = EVP_EC_gen("P-256")) == NULL) {
        p2m_err(err, "cannot make an EC P-256 key: %s", ssl_error(e, sizeof(e)));
        goto Exit;
    }
    if ((bio = BIO_new(BIO_s_secmem())) == NULL || !PEM_write_bio_PrivateKey(bio, c->key, NULL, NULL, 0, NULL, NULL) ||
        (len = BIO_get_mem_data(bio, &pem)) <= 0) {
        p2m_err(err, "cannot write the key: %s", ssl_error(e, sizeof(e)));
        goto Exit;
    }
    if (file_write(c, c->key_path, pem, (size_t)len, 0600, err) != 0)
        goto Exit;
    p2m_log(P2M_LOG_INFO, "cert_key_created", "label=%s type=ec-p256", c->pod->args->label);
    ret = 0;
Exit:
    BIO_free(bio);
    if (ret != 0) {
        EVP_PKEY_free(c->key);
        c->key = NULL;
    }
    return ret;
}

/* --- checking a chain ------------------------------------------------------------------------- */

/* Why chain (the leaf first) may not be served with our key as LABEL.DOMAIN, trusted by ca for a
 * TLS server, at unix time now: NULL when it may, else a short reason in why. Writes the leaf's
 * validity to *nb and *na. */
static const char *chain_problem(const cert_t *c, STACK_OF(X509) * chain, STACK_OF(X509) * ca, long long now, long long *nb,
                                 long long *na, char *why, size_t cap)
{
    X509 *leaf = sk_X509_value(chain, 0);
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *rest = NULL;
    const char *ret = why;

    *nb = *na = 0;
    if (leaf == NULL) {
        snprintf(why, cap, "missing");
        return why;
    }
    if (X509_check_private_key(leaf, c->key) != 1) {
        ERR_clear_error();
        snprintf(why, cap, "not for our key");
        return why;
    }
    if (X509_check_host(leaf, c->name, strlen(c->name), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) != 1) {
        snprintf(why, cap, "not for %s", c->name);
        return why;
    }
    if (p2m_cert_validity(leaf, nb, na) != 0 || *na <= *nb) {
        snprintf(why, cap, "unreadable validity");
        return why;
    }
    if (now >= *na) {
        snprintf(why, cap, "expired");
        return why;
    }
    if (ca == NULL) {
        snprintf(why, cap, "no CA to verify it with");
        return why;
    }
    if ((store = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL || (rest = sk_X509_new_null()) == NULL) {
        snprintf(why, cap, "out of memory");
        goto Exit;
    }
    for (int i = 0; i < sk_X509_num(ca); i++)
        if (!X509_STORE_add_cert(store, sk_X509_value(ca, i))) {
            snprintf(why, cap, "cannot use the CA");
            goto Exit;
        }
    for (int i = 1; i < sk_X509_num(chain); i++)
        if (!sk_X509_push(rest, sk_X509_value(chain, i))) {
            snprintf(why, cap, "out of memory");
            goto Exit;
        }
    if (!X509_STORE_CTX_init(ctx, store, leaf, rest) || !X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER)) {
        snprintf(why, cap, "cannot verify");
        goto Exit;
    }
    if (X509_verify_cert(ctx) != 1) {
        snprintf(why, cap, "does not verify against the CA: %s", X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        goto Exit;
    }
    ret = NULL;
Exit:
    ERR_clear_error();
    sk_X509_free(rest); /* the certificates belong to chain */
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ret;
}

/* With --direct-lan the certificate must also carry LABEL.direct.DOMAIN and LABEL.lan.DOMAIN,
 * the names a consumer reaches the router's port and the LAN listener by (the registrar issues
 * all three together). The first name missing into name (cap bytes), and 1; 0 when none
 * is missing or there are no direct paths. */
static int names_missing(const cert_t *c, STACK_OF(X509) * chain, char *name, size_t cap)
{
    static const char *const under[] = {"direct", "lan"};
    const pod_args_t *a = c->pod->args;
    X509 *leaf = sk_X509_value(chain, 0);
    if (a->direct_lan.host[0] == '\0' || leaf == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(under) / sizeof(under[0]); i++) {
        snprintf(name, cap, "%s.%s.%s", a->label, under[i], a->domain);
        if (!p2m_cert_has_name(leaf, name))
            return 1;
    }
    return 0;
}

/* The leaf's serial in hex. */
static void serial_hex(X509 *leaf, char *out, size_t cap)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    snprintf(out, cap, "%s", hex != NULL ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
}

/* --- renewal ---------------------------------------------------------------------------------- */

static long long unix_now(void)
{
    return (long long)time(NULL);
}

/* The renewal point (PROTOCOL 4.4): two thirds of the lifetime, counted from when we got the
 * certificate when that is later than its notBefore (the registrar backdates notBefore for clock
 * skew, which would make a short lifetime due at once). */
static long long renew_at(long long nb, long long na, long long since)
{
    long long start = since > nb && since < na ? since : nb;
    return start + (na - start) * 2 / 3;
}

/* Arms the timer for the renewal point of the installed certificate (woken at least hourly, and
 * checked again then; never sooner than CERT_RENEW_MIN_MS after it was installed). */
static void schedule_renewal(cert_t *c)
{
    long long at = renew_at(c->not_before, c->not_after, c->since), now = unix_now();
    uint64_t ms = at > now ? (uint64_t)(at - now) * 1000u : 0;
    if (ms < CERT_RENEW_MIN_MS && now - c->since < CERT_RENEW_MIN_MS / 1000)
        ms = CERT_RENEW_MIN_MS;
    if (ms > CERT_CHECK_MAX_MS)
        ms = CERT_CHECK_MAX_MS;
    p2m_loop_timer_start(c->pod->loop, &c->timer, ms);
    p2m_log(P2M_LOG_INFO, "cert_renew_scheduled", "label=%s at=%lld in_s=%lld not_after=%lld", c->pod->args->label, at,
            at > now ? at - now : 0, c->not_after);
}

/* A renewal failed: logs it, and retries after register.c's hold or our backoff, whichever is later
 * (refused: a minute doubling to an hour). */
static void renewal_failed(cert_t *c, long status, const char *reason, unsigned retry_ms, int refused)
{
    uint64_t ms;
    c->busy = 0;
    if (refused) {
        ms = pod_backoff_next(&c->refused);
    } else {
        ms = pod_backoff_next(&c->bo);
    }
    if (ms < retry_ms)
        ms = retry_ms;
    p2m_log(c->chain != NULL ? P2M_LOG_WARN : P2M_LOG_ERROR, "cert_failed",
            "label=%s status=%ld reason=\"%s\" retry_ms=%llu serving=%s", c->pod->args->label, status, reason,
            (unsigned long long)ms, c->chain != NULL ? "old" : "none");
    p2m_loop_timer_start(c->pod->loop, &c->timer, ms);
}

/* Starts a renewal: /cacert first, then the certificate (cert_fetched). */
static void renew(cert_t *c, const char *why)
{
    if (c->busy || c->pod->stopping)
        return;
    c->busy = 1;
    snprintf(c->why, sizeof(c->why), "%s", why);
    p2m_loop_timer_stop(c->pod->loop, &c->timer);
    pod_register_fetch(c->pod, REG_CACERT, NULL, 0);
}

/* Whether the installed certificate needs renewing now; renews or re-arms the timer. */
static void cert_evaluate(cert_t *c)
{
    char why[160];
    long long nb, na, now = unix_now();
    if (c->busy)
        return;
    if (c->chain == NULL)
        renew(c, "missing");
    else if (chain_problem(c, c->chain, c->ca, now, &nb, &na, why, sizeof(why)) != NULL)
        renew(c, why);
    else if (now >= renew_at(c->not_before, c->not_after, c->since) && now - c->since >= CERT_RENEW_MIN_MS / 1000)
        renew(c, "two thirds of its lifetime passed");
    else
        schedule_renewal(c);
}

static void on_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    cert_t *c = cert_check((cert_t *)((char *)t - offsetof(cert_t, timer)));
    cert_evaluate(c);
}

/* Makes chain (checked; valid from nb to na, ours since `since`) the one served: a server context
 * from its file (cert_path.tmp when staged, then renamed over cert_path). Takes chain. Returns 0,
 * or -1 with err (chain freed, nothing served changed). */
static int install(cert_t *c, STACK_OF(X509) * chain, long long nb, long long na, long long since, int staged, char *err)
{
    char tmp[POD_PATH_MAX + 48], e[P2M_ERR_LEN];
    pod_t *pod = c->pod;
    int ret = -1;
    snprintf(tmp, sizeof(tmp), "%s.tmp", c->cert_path);
    SSL_CTX *ctx = tls_server_ctx(staged ? tmp : c->cert_path, c->key_path, pod->args->alpn, e);
    if (ctx == NULL) {
        p2m_err(err, "cannot serve it: %s", e);
        goto Exit;
    }
    if (staged && file_commit(c, c->cert_path, err) != 0) {
        SSL_CTX_free(ctx);
        goto Exit;
    }
    int first = pod->tls_ctx == NULL;
    SSL_CTX_free(pod->tls_ctx); /* live connections keep their own reference */
    pod->tls_ctx = ctx;
    sk_X509_pop_free(c->chain, X509_free);
    c->chain = chain;
    c->not_before = nb;
    c->not_after = na;
    c->since = since;
    serial_hex(sk_X509_value(chain, 0), c->serial, sizeof(c->serial));
    ret = 0;
    if (first)
        pool_refill(pod); /* the pool waited for the first certificate */
Exit:
    if (ret != 0 && staged)
        unlink(tmp);
    if (ret != 0)
        sk_X509_pop_free(chain, X509_free);
    return ret;
}

/* GET /cacert answered: keep it as ca.pem, then ask for the certificate. */
static void got_cacert(cert_t *c, const char *body, size_t len)
{
    char err[2 * P2M_ERR_LEN], e[P2M_ERR_LEN];
    STACK_OF(X509) *ca = chain_parse(body, len, e);
    if (ca == NULL) {
        snprintf(err, sizeof(err), "GET /cacert: %s", e);
        renewal_failed(c, 200, err, 0, 1);
        return;
    }
    if (file_write(c, c->ca_path, body, len, 0644, e) != 0) {
        sk_X509_pop_free(ca, X509_free);
        renewal_failed(c, 200, e, 0, 0);
        return;
    }
    sk_X509_pop_free(c->ca, X509_free);
    c->ca = ca;

    size_t csr_len = 0;
    char *csr = p2m_csr_make(c->key, c->name, &csr_len, e);
    if (csr == NULL) {
        snprintf(err, sizeof(err), "cannot make the CSR: %s", e);
        renewal_failed(c, 0, err, 0, 1);
        return;
    }
    p2m_log(P2M_LOG_INFO, "cert_requested", "label=%s name=%s reason=\"%s\"", c->pod->args->label, c->name, c->why);
    pod_register_fetch(c->pod, REG_CERT, csr, csr_len);
    free(csr);
}

/* POST /certificate answered: check the chain like the one on disk, then install it. */
static void got_cert(cert_t *c, const char *body, size_t len)
{
    char err[2 * P2M_ERR_LEN], e[P2M_ERR_LEN], why[160];
    long long nb, na;
    STACK_OF(X509) *chain = chain_parse(body, len, e);
    if (chain == NULL) {
        snprintf(err, sizeof(err), "the response: %s", e);
        renewal_failed(c, 200, err, 0, 1);
        return;
    }
    long long now = unix_now();
    if (chain_problem(c, chain, c->ca, now, &nb, &na, why, sizeof(why)) != NULL) {
        snprintf(err, sizeof(err), "the issued certificate: %s", why);
        sk_X509_pop_free(chain, X509_free);
        renewal_failed(c, 200, err, 0, 1);
        return;
    }
    if (file_stage(c->cert_path, body, len, 0644, e) != 0) {
        sk_X509_pop_free(chain, X509_free);
        renewal_failed(c, 200, e, 0, 0);
        return;
    }
    if (install(c, chain, nb, na, now, 1, e) != 0) {
        renewal_failed(c, 200, e, 0, 1);
        return;
    }
    c->busy = 0;
    pod_backoff_reset(&c->refused);
    pod_backoff_reset(&c->bo);
    c->renewed++;
    p2m_log(P2M_LOG_INFO, "cert_issued", "label=%s name=%s serial=%s not_before=%lld not_after=%lld", c->pod->args->label, c->name,
            c->serial, c->not_before, c->not_after);
    /* Served all the same: LABEL.DOMAIN works, and asking again would get the same certificate
     * from this registrar. The next start asks again (reason "names"). */
    char missing[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 16];
    if (names_missing(c, c->chain, missing, sizeof(missing)))
        p2m_log(P2M_LOG_WARN, "cert_names_missing", "label=%s serial=%s missing=%s", c->pod->args->label, c->serial, missing);
    schedule_renewal(c);
}

void cert_fetched(pod_t *pod, reg_kind_t kind, long status, const char *body, size_t len, const char *reason, unsigned retry_ms)
{
    cert_t *c = pod->cert;
    if (c == NULL || !c->busy)
        return;
    cert_check(c);
    if (body == NULL) {
        char err[P2M_ERR_LEN];
        snprintf(err, sizeof(err), "%s: %s", kind == REG_CACERT ? "GET /cacert" : "POST /certificate",
                 reason != NULL && reason[0] != '\0' ? reason : "-");
        renewal_failed(c, status, err, retry_ms, status == 400);
        return;
    }
    if (kind == REG_CACERT)
        got_cacert(c, body, len);
    else
        got_cert(c, body, len);
}

/* --- public ----------------------------------------------------------------------------------- */

int cert_start(pod_t *pod, char *err)
{
    const pod_args_t *a = pod->args;
    char e[P2M_ERR_LEN], why[160];
    struct stat st;
    long long nb, na;
    cert_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return p2m_err(err, "out of memory");
    c->magic = CERT_MAGIC;
    c->pod = pod;
    c->refused = (pod_backoff_t){.min_ms = CERT_REFUSED_MIN_MS, .max_ms = CERT_REFUSED_MAX_MS, .exact = 1};
    p2m_loop_timer_init(&c->timer, on_timer);
    pod->cert = c;
    if ((size_t)snprintf(c->name, sizeof(c->name), "%s.%s", a->label, a->domain) >= sizeof(c->name) ||
        strlen(c->name) > P2M_DOMAIN_MAX)
        return p2m_err(err, "%s.%s: longer than a domain name may be", a->label, a->domain);
    snprintf(c->dir, sizeof(c->dir), "%s/tls", a->state_dir);
    snprintf(c->key_path, sizeof(c->key_path), "%s/key.pem", c->dir);
    snprintf(c->cert_path, sizeof(c->cert_path), "%s/cert.pem", c->dir);
    snprintf(c->ca_path, sizeof(c->ca_path), "%s/ca.pem", c->dir);
    if (mkdir(a->state_dir, 0700) != 0 && errno != EEXIST)
        return p2m_err(err, "--state-dir %s: %s", a->state_dir, strerror(errno));
    if (mkdir(c->dir, 0700) != 0 && errno != EEXIST)
        return p2m_err(err, "%s: %s", c->dir, strerror(errno));
    if (lstat(c->dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return p2m_err(err, "%s: not a directory", c->dir);
    if ((st.st_mode & 077) != 0 && chmod(c->dir, 0700) != 0)
        return p2m_err(err, "%s: chmod 700: %s", c->dir, strerror(errno));
    if (key_load(c, err) != 0)
        return -1;

    /* What is on disk: served if it checks (and renewed at once when due), else renewed at once. */
    c->ca = chain_load(c->ca_path, e);
    STACK_OF(X509) *chain = chain_load(c->cert_path, e);
    const char *problem = chain == NULL ? e : chain_problem(c, chain, c->ca, unix_now(), &nb, &na, why, sizeof(why));
    char missing[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 16];
    if (problem == NULL && names_missing(c, chain, missing, sizeof(missing)))
        problem = "names"; /* direct paths configured since it was issued, or an older registrar issued it */
    if (problem != NULL) {
        p2m_log(P2M_LOG_INFO, "cert_unusable", "label=%s path=%s reason=\"%s\"", a->label, c->cert_path, problem);
        sk_X509_pop_free(chain, X509_free);
        renew(c, problem);
        return 0;
    }
    /* When we got it: the file's time, within its validity. */
    long long since = nb;
    if (stat(c->cert_path, &st) == 0 && (long long)st.st_mtime > nb && (long long)st.st_mtime <= unix_now())
        since = (long long)st.st_mtime;
    if (install(c, chain, nb, na, since, 0, e) != 0) {
        p2m_log(P2M_LOG_WARN, "cert_unusable", "label=%s path=%s reason=\"%s\"", a->label, c->cert_path, e);
        renew(c, "unusable");
        return 0;
    }
    p2m_log(P2M_LOG_INFO, "cert_loaded", "label=%s name=%s serial=%s not_after=%lld", a->label, c->name, c->serial, c->not_after);
    cert_evaluate(c);
    return 0;
}

void cert_stop(pod_t *pod)
{
    cert_t *c = pod->cert;
    if (c == NULL)
        return;
    cert_check(c);
    p2m_loop_timer_stop(pod->loop, &c->timer);
    pod_register_fetch_cancel(pod);
    SSL_CTX_free(pod->tls_ctx);
    pod->tls_ctx = NULL;
    sk_X509_pop_free(c->chain, X509_free);
    sk_X509_pop_free(c->ca, X509_free);
    EVP_PKEY_free(c->key);
    c->magic = POD_DEAD;
    free(c);
    pod->cert = NULL;
}

long long cert_not_after(const pod_t *pod)
{
    return pod->cert != NULL && pod->cert->chain != NULL ? pod->cert->not_after : 0;
}
