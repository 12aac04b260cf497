/* The pod's requests to the registrar: PUT {registrar}/register/LABEL (docs/PROTOCOL.md 1) for
 * the pool, and for cert.c POST /certificate/LABEL (PROTOCOL 4) and GET /cacert. Here they are
 * built, started when the credential and the holds allow, and their answers acted on; curl runs
 * them on the p2m loop (curl_loop.c). All three kinds go through one request path.
 *
 * Credentials: the first authenticated request (a registration or a certificate) uses TOTP and
 * returns a session credential (P2M-Session), presented as Bearer until it expires or a 401 says
 * it is dead. A TOTP code is accepted once per 30-second step, so a TOTP request is never sent
 * twice in one step: the second waits for the next step rather than burn a 401 (which the
 * registrar counts toward its 429 lockout). session.c keeps the step used and the session, with
 * --state-dir across restarts. Only one TOTP request is in flight at a time, and nothing else that
 * needs the credential; with a session, up to REG_PARALLEL.
 *
 * Failures hold all requests: 429 and 503 for Retry-After, others for an exponential backoff with
 * jitter (backoff.c), except a 400 to a certificate request (the CSR is at fault, not the
 * registrar). State changes are logged once (registrar_down, registrar_up); the attempts in
 * between at debug level. Certificate outcomes go to cert_fetched(), which logs them. Neither the
 * secret, the TOTP codes nor the session credential are logged. */
#include "pod.h"

#include <assert.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "curl_loop.h"
#include "p2m/err.h"
#include "p2m/totp.h"
#include "reg_header.h"
#include "redirect.h"
#include "session.h"

#define REG_MAGIC 0x52454749u /* "REGI" */
#define REQ_MAGIC 0x52455155u /* "REQU" */
#define REG_PARALLEL 8        /* Bearer registrations in flight at once, multiplexed on one HTTP/2 connection */
/* Pre-connections one registration asks for (PROTOCOL 1.1): a pool refills with one request per
 * batch instead of one per connection, the registrar's and the relay's work per lease shared. */
#define REG_LEASE_CONNS P2M_LEASE_CONNS_MAX
#define REG_BODY_MAX 256    /* ADDRESS:PORT, or a one-line reason */
#define REG_BODY_LIMIT 4096 /* a longer registration response is aborted */
#define REG_PEM_MAX 65536   /* a certificate chain or /cacert: a longer one is aborted */
#define REG_RETRY_AFTER_DEFAULT 60
#define REG_CONNECT_TIMEOUT_MS 5000L
#define REG_TIMEOUT_MS 20000L /* the registrar waits up to 3 x 3 s for the relay */

typedef struct req req_t;

typedef enum { AUTH_NONE = 0, AUTH_TOTP, AUTH_BEARER } auth_t;

/* What each kind of request is. */
static const struct {
    const char *name;   /* for log lines */
    const char *method; /* NULL for GET */
    const char *type;   /* Content-Type of the request body */
    int auth;
    size_t body_max; /* bytes of the response kept */
    size_t body_limit;
} kinds[] = {
    [REG_REGISTER] = {"register", "PUT", "application/json", 1, REG_BODY_MAX, REG_BODY_LIMIT},
    [REG_CERT] = {"certificate", "POST", "application/pkcs10", 1, REG_PEM_MAX, REG_PEM_MAX},
    [REG_CACERT] = {"cacert", NULL, NULL, 0, REG_PEM_MAX, REG_PEM_MAX},
};

struct reg {
    uint32_t magic;
    pod_t *pod;
    pod_curl_loop_t *curl;
    p2m_loop_timer_t hold; /* no request until it fires */
    pod_backoff_t bo;
    pod_health_t health;
    char last_failure[64];                 /* the failure last logged at warn or error: repeats go to debug */
    char error[P2M_ERR_LEN];               /* why the registrar is down, for status; "" when up */
    const pod_proxy_t *proxy;              /* the proxy requests go through, NULL: direct */
    long proxy_refused;                    /* the proxy's refusal last logged at error, 0: none since up */
    char target[P2M_HOST_MAX + 16];        /* the registrar's HOST:PORT, what the proxy is asked to CONNECT to */
    char url[3][POD_REDIRECT_URL_MAX + 1]; /* by reg_kind_t; a followed 308 replaces its kind's */
    int single;                            /* the registrar refused "connections": ask for one */

    req_t *reqs;
    unsigned inflight; /* pre-connections asked for by the registrations in flight */
    unsigned nauth;    /* requests that carry the credential (registrations, certificates) */

    /* cert.c's requests: asked for (want), in flight (cur); the CSR of the next certificate request */
    int want[3];
    req_t *cur[3];
    char *csr;
    size_t csr_len;

    pod_session_t own_sess; /* the TOTP step used and the session credential, unless... */
    pod_session_t *sess;    /* ...the runner shares one per label (pod->session): own_sess or that */
};

struct req {
    uint32_t magic;
    reg_t *reg;
    reg_kind_t kind;
    CURL *easy;
    struct curl_slist *headers;
    auth_t auth;
    unsigned conns;     /* registration: pre-connections asked for */
    char reg_body[256]; /* registration: {"protocol":"NAME","connections":N,"direct_lan":...} */
    uint64_t prev_step; /* TOTP: the step used before this request's */
    char *body;         /* kinds[kind].body_max + 1 bytes */
    size_t body_len, body_total;
    reg_header_t hdr;         /* what the response's headers said */
    pod_proxy_resp_t connect; /* through a proxy: its answer to curl's CONNECT, the first header block */
    char errbuf[CURL_ERROR_SIZE];
    char url[POD_REDIRECT_URL_MAX + 1]; /* where it goes now: reg->url[kind], or a redirect's Location */
    unsigned hops;                      /* redirects followed */
    req_t *next, *prev;
};

_Static_assert(POD_REDIRECT_URL_MAX >= P2M_URL_MAX + P2M_LABEL_MAX + 16, "a registrar URL and a path fit a redirect's URL");

static reg_t *reg_check(reg_t *reg)
{
    if (reg == NULL || reg->magic != REG_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "reg_bad_magic", "ptr=%p", (void *)reg);
        abort();
    }
    return reg;
}

static void reg_pump(reg_t *reg);

static void on_hold(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    reg_t *reg = reg_check((reg_t *)((char *)t - offsetof(reg_t, hold)));
    reg_pump(reg);
    pool_refill(reg->pod);
}

/* --- one request ------------------------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    req_t *req = userp;
    size_t len = size * n;
    req->body_total += len;
    if (req->body_total > kinds[req->kind].body_limit)
        return 0; /* aborts: no registrar answers that much */
    size_t room = kinds[req->kind].body_max - req->body_len;
    size_t take = len < room ? len : room;
    memcpy(req->body + req->body_len, data, take);
    req->body_len += take;
    req->body[req->body_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    req_t *req = userp;
    size_t len = size * n, used;
    reg_header_parse(&req->hdr, data, len);
    /* curl hands over the proxy's answer to its CONNECT first (on a new connection): its reason
     * phrase and Proxy-Authenticate make a refusal's message. On a reused tunnel this reads the
     * registrar's answer instead, which is only looked at when curl reports a refused CONNECT. */
    if (req->reg->proxy != NULL)
        pod_proxy_resp_feed(&req->connect, data, len, &used);
    return len;
}

static void req_free(req_t *req)
{
    reg_t *reg = req->reg;
    if (req->easy != NULL) {
        curl_multi_remove_handle(pod_curl_loop_multi(reg->curl), req->easy);
        curl_easy_cleanup(req->easy);
    }
    /* The Authorization header holds a TOTP code or the session credential. */
    for (struct curl_slist *h = req->headers; h != NULL; h = h->next)
        OPENSSL_cleanse(h->data, strlen(h->data));
    curl_slist_free_all(req->headers);
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        reg->reqs = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    if (req->kind == REG_REGISTER)
        reg->inflight -= req->conns;
    else if (reg->cur[req->kind] == req)
        reg->cur[req->kind] = NULL;
    if (req->auth != AUTH_NONE)
        reg->nauth--;
    OPENSSL_cleanse(req->hdr.session, sizeof(req->hdr.session));
    free(req->body);
    req->magic = POD_DEAD;
    free(req);
}

static void *oom(const char *what)
{
    p2m_log(P2M_LOG_ERROR, "oom", "what=%s", what);
    abort();
}

/* Every --pool must be a "pool" a registrar accepts (PROTOCOL 1.1). */
_Static_assert(POD_POOL_MAX <= P2M_POOL_TARGET_MAX, "every --pool must be a \"pool\" a registrar accepts");

/* The registration's body: the protocol, "connections" when more than one (a registrar that
 * predates it still answers), the direct paths when given (a registrar that predates them
 * refuses them with a 400: they are sent only when the pod has them), and "pool", the pool's
 * target at rest (--pool), for the console, unless !with_pool: a registrar that refused
 * "connections" (reg->single) predates "pool" too. */
static void register_body(const pod_t *pod, unsigned conns, int with_pool, char *out, size_t cap)
{
    const pod_args_t *a = pod->args;
    char hp[P2M_HOST_MAX + 16];
    size_t n = (size_t)snprintf(out, cap, "{\"protocol\":\"%s\"", p2m_proto_name(a->proto));
    if (conns > 1 && n < cap)
        n += (size_t)snprintf(out + n, cap - n, ",\"connections\":%u", conns);
    if (with_pool && a->pool > 0 && n < cap)
        n += (size_t)snprintf(out + n, cap - n, ",\"pool\":%u", a->pool);
    /* The addresses are canonical literals (provision.c): nothing in them needs JSON escaping. */
    if (a->direct_lan.host[0] != '\0' && n < cap) {
        p2m_hostport_format(a->direct_lan.host, a->direct_lan.port, hp, sizeof(hp));
        n += (size_t)snprintf(out + n, cap - n, ",\"direct_lan\":\"%s\"", hp);
    }
    if (a->direct_public.host[0] != '\0' && n < cap) {
        p2m_hostport_format(a->direct_public.host, a->direct_public.port, hp, sizeof(hp));
        n += (size_t)snprintf(out + n, cap - n, ",\"direct_public\":\"%s\"", hp);
    }
    if (n < cap)
        snprintf(out + n, cap - n, "}");
}

const char *pod_register_declares(const pod_t *pod)
{
    if (pod->args->direct_lan.host[0] == '\0')
        return "none";
    return pod->args->direct_public.host[0] != '\0' ? "direct_lan,direct_public" : "direct_lan";
}

/* Builds and starts one request of `kind` with the credential `auth` (TOTP: for `step`). The body
 * is the protocol declaration and `conns` (pre-connections asked for; 0 reads as 1) for a
 * registration, reg->csr for a certificate, none for /cacert. Returns 0 or -1 (logged). */
static int req_start(reg_t *reg, reg_kind_t kind, auth_t auth, uint64_t step, unsigned conns)
{
    pod_t *pod = reg->pod;
    char hdr[REG_SESSION_MAX + P2M_ID_MAX + 64], err[P2M_ERR_LEN];
    struct curl_slist *l;
    int ret = -1;
    req_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        oom("request");
    req->magic = REQ_MAGIC;
    req->reg = reg;
    req->kind = kind;
    req->auth = auth;
    snprintf(req->url, sizeof(req->url), "%s", reg->url[kind]);
    reg_header_reset(&req->hdr);
    pod_proxy_resp_init(&req->connect);
    if ((req->body = malloc(kinds[kind].body_max + 1)) == NULL)
        oom("request");
    req->body[0] = '\0';
    req->next = reg->reqs;
    if (reg->reqs != NULL)
        reg->reqs->prev = req;
    reg->reqs = req;
    if (kind == REG_REGISTER) {
        req->conns = reg->single || conns == 0 ? 1 : conns;
        register_body(pod, req->conns, !reg->single, req->reg_body, sizeof(req->reg_body));
        reg->inflight += req->conns;
    } else
        reg->cur[kind] = req;
    if (auth != AUTH_NONE)
        reg->nauth++;

    if (auth == AUTH_BEARER) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", reg->sess->cred);
    } else if (auth == AUTH_TOTP) {
        char code[P2M_TOTP_DIGITS_MAX + 1];
        if (p2m_totp_generate(pod->args->secret, pod->args->secret_len, (time_t)(step * P2M_TOTP_STEP), pod->args->digits, code,
                              err) != 0) {
            p2m_log(P2M_LOG_ERROR, "totp_failed", "error=\"%s\"", err);
            goto Exit;
        }
        snprintf(hdr, sizeof(hdr), "Authorization: TOTP username=\"%s\", response=\"%s\"", pod->args->id, code);
        OPENSSL_cleanse(code, sizeof(code));
        req->prev_step = pod_session_step_use(reg->sess, step);
    } else {
        snprintf(hdr, sizeof(hdr), "Accept: application/pem-certificate-chain, */*");
    }
    l = curl_slist_append(NULL, hdr);
    OPENSSL_cleanse(hdr, sizeof(hdr));
    if (l == NULL)
        oom("request");
    req->headers = l;
    if ((l = curl_slist_append(req->headers, "Expect:")) == NULL) /* no 100-continue round trip */
        oom("request");
    req->headers = l;
    if (kinds[kind].type != NULL) {
        snprintf(hdr, sizeof(hdr), "Content-Type: %s", kinds[kind].type);
        if ((l = curl_slist_append(req->headers, hdr)) == NULL)
            oom("request");
        req->headers = l;
    }

    if ((req->easy = curl_easy_init()) == NULL)
        oom("request");
    CURL *e = req->easy;
    int bad = 0;
    bad |= curl_easy_setopt(e, CURLOPT_URL, req->url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
    /* Redirects are followed by redirected() rather than by curl: its FOLLOWLOCATION knows no host
     * rule (MAXREDIRS, REDIR_PROTOCOLS and UNRESTRICTED_AUTH would hand the Authorization to any
     * https host), and a 308 is to be remembered for the next requests, which curl forgets. */
    bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
    if (kinds[kind].method != NULL) {
        const char *body = kind == REG_CERT ? reg->csr : req->reg_body;
        size_t len = kind == REG_CERT ? reg->csr_len : strlen(req->reg_body);
        bad |= body == NULL;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body != NULL ? body : "") != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, kinds[kind].method) != CURLE_OK;
    } else {
        bad |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK;
    }
    bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
    if (pod->args->cacert[0] != '\0')
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, pod->args->cacert) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L) != CURLE_OK; /* parallel requests share one HTTP/2 connection */
    /* The proxy is chosen here (--proxy, or the environment's less no_proxy: pod_args_use_proxy()),
     * never by curl from the environment: the relay accepts pre-connections only from the address
     * the registration came from, so both must agree (pool.c chooses alike). */
    if (reg->proxy != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_PROXY, reg->proxy->url) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_PROXYTYPE, (long)CURLPROXY_HTTP) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_NOPROXY, "") != CURLE_OK;
        if (reg->proxy->auth) {
            bad |= curl_easy_setopt(e, CURLOPT_PROXYAUTH, (long)CURLAUTH_BASIC) != CURLE_OK;
            bad |= curl_easy_setopt(e, CURLOPT_PROXYUSERNAME, reg->proxy->user) != CURLE_OK;
            bad |= curl_easy_setopt(e, CURLOPT_PROXYPASSWORD, reg->proxy->pass) != CURLE_OK;
        }
    } else {
        bad |= curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK; /* "": none, whatever the environment says */
        bad |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK;
    }
    /* --source: registrations leave from the address the pre-connections will (the relay checks it). */
    if (pod->args->source[0] != '\0') {
        char iface[P2M_HOST_MAX + 8];
        snprintf(iface, sizeof(iface), "host!%s", pod->args->source);
        bad |= curl_easy_setopt(e, CURLOPT_INTERFACE, iface) != CURLE_OK;
    }
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, REG_CONNECT_TIMEOUT_MS) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, REG_TIMEOUT_MS) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "pipe2me-pod/" P2M_VERSION) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, req) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, req) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, req) != CURLE_OK;
    if (bad) {
        p2m_log(P2M_LOG_ERROR, "curl_setopt_failed", "url=%s", req->url);
        goto Exit;
    }
    CURLMcode mc = curl_multi_add_handle(pod_curl_loop_multi(reg->curl), e);
    if (mc != CURLM_OK) {
        p2m_log(P2M_LOG_ERROR, "curl_add_failed", "error=\"%s\"", curl_multi_strerror(mc));
        goto Exit;
    }
    if (kind == REG_REGISTER)
        p2m_log(P2M_LOG_DEBUG, "register_start", "label=%s auth=%s conns=%u inflight=%u", pod->args->label,
                auth == AUTH_BEARER ? "bearer" : "totp", req->conns, reg->inflight);
    else
        p2m_log(P2M_LOG_DEBUG, "request_start", "label=%s kind=%s auth=%s", pod->args->label, kinds[kind].name,
                auth == AUTH_BEARER ? "bearer"
                : auth == AUTH_TOTP ? "totp"
                                    : "none");
    ret = 0;
Exit:
    if (ret != 0 && auth == AUTH_TOTP)
        pod_session_step_unuse(reg->sess, req->prev_step);
    if (ret != 0)
        req_free(req);
    return ret;
}

/* --- outcomes --------------------------------------------------------------------------------- */

/* Holds requests for ms (never shortening a longer hold). */
static void reg_hold(reg_t *reg, unsigned ms)
{
    p2m_loop_t *loop = reg->pod->loop;
    if (p2m_loop_timer_left(loop, &reg->hold) == UINT64_MAX || p2m_loop_timer_left(loop, &reg->hold) < ms)
        p2m_loop_timer_start(loop, &reg->hold, ms);
}

/* A failure of kind `kind`, logged as `event` at `level` when it differs from the last one, as
 * register_retry at debug level otherwise; holds requests for hold_ms. A failed certificate or
 * /cacert request is logged by cert.c (cert_failed): here only at debug level. */
static void reg_failed(reg_t *reg, const req_t *req, p2m_log_level_t level, const char *event, const char *kind, unsigned hold_ms,
                       const char *why, const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static void reg_failed(reg_t *reg, const req_t *req, p2m_log_level_t level, const char *event, const char *kind, unsigned hold_ms,
                       const char *why, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    reg->health = POD_DOWN;
    snprintf(reg->error, sizeof(reg->error), "%s", why);
    reg_hold(reg, hold_ms);
    if (req->kind != REG_REGISTER) {
        p2m_log(P2M_LOG_DEBUG, "request_failed", "label=%s kind=%s %s retry_ms=%u", reg->pod->args->label, kinds[req->kind].name,
                detail, hold_ms);
        return;
    }
    reg->pod->stats.registration_failures++;
    int repeat = strcmp(reg->last_failure, kind) == 0;
    if (!repeat)
        snprintf(reg->last_failure, sizeof(reg->last_failure), "%s", kind);
    p2m_log(repeat ? P2M_LOG_DEBUG : level, repeat ? "register_retry" : event, "label=%s %s retry_ms=%u", reg->pod->args->label,
            detail, hold_ms);
}

static void reg_succeeded(reg_t *reg)
{
    pod_backoff_reset(&reg->bo);
    if (reg->health != POD_UP)
        p2m_log(P2M_LOG_INFO, "registrar_up", "label=%s url=%s", reg->pod->args->label, reg->pod->args->registrar);
    reg->health = POD_UP;
    reg->last_failure[0] = '\0';
    reg->error[0] = '\0';
    reg->proxy_refused = 0;
}

/* The body's first line, printable and at most 200 bytes, for a log line. */
static const char *body_line(req_t *req)
{
    size_t n = strcspn(req->body, "\r\n");
    if (n > 200)
        n = 200;
    req->body[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)req->body[i] < 0x20 || (unsigned char)req->body[i] > 0x7e || req->body[i] == '"')
            req->body[i] = '?';
    return n > 0 ? req->body : "-";
}

/* A registration's 200: ADDRESS:PORT. Takes req (freed here). */
static void registered(req_t *req)
{
    reg_t *reg = req->reg;
    pod_t *pod = reg->pod;
    p2m_hostport_t relay;
    char err[P2M_ERR_LEN];
    char *b = req->body;
    size_t n = req->body_len;
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' '))
        b[--n] = '\0';
    if (req->body_total > REG_BODY_MAX || p2m_hostport_parse(b, &relay, err) != 0 || relay.host[0] == '\0') {
        reg_failed(reg, req, P2M_LOG_ERROR, "register_failed", "badbody", pod_backoff_next(&reg->bo),
                   "200 to a registration, but not ADDRESS:PORT", "status=200 reason=\"response is not ADDRESS:PORT\"");
        req_free(req);
        return;
    }
    reg_succeeded(reg);
    pod->stats.registrations++;
    /* As many as the port takes, never more than asked for; no header: one (PROTOCOL 1.3). */
    unsigned conns = req->hdr.connections == 0 ? 1 : req->hdr.connections;
    if (conns > req->conns)
        conns = req->conns;
    p2m_log(P2M_LOG_INFO, "registered", "label=%s lease=%u relay=%s auth=%s protocol=%s conns=%u waiting=%ld", pod->args->label,
            (unsigned)relay.port, relay.host, req->auth == AUTH_BEARER ? "bearer" : "totp", p2m_proto_name(pod->args->proto), conns,
            req->hdr.waiting);
    pool_demand(pod, req->hdr.waiting, req->hdr.waited);
    /* The family the registrar saw us in is the one the relay accepts. */
    char *local_ip = NULL;
    int family = AF_UNSPEC;
    if (curl_easy_getinfo(req->easy, CURLINFO_LOCAL_IP, &local_ip) == CURLE_OK && local_ip != NULL && local_ip[0] != '\0')
        family = strchr(local_ip, ':') != NULL ? AF_INET6 : AF_INET;
    req_free(req);
    for (unsigned i = 0; i < conns; i++)
        pool_on_port(pod, &relay, family);
}

/* A request that got no usable answer: frees req, then gives cert.c its outcome (cert.c may ask
 * again at once). */
static void req_failed_done(req_t *req, long status, const char *reason, unsigned retry_ms)
{
    pod_t *pod = req->reg->pod;
    reg_kind_t kind = req->kind;
    req_free(req);
    if (kind != REG_REGISTER)
        cert_fetched(pod, kind, status, NULL, 0, reason, retry_ms);
}

/* A 200: keeps a new session, and hands the answer on (a relay port to the pool, a PEM body to
 * cert.c). Takes req (freed here). */
static void answered_ok(req_t *req)
{
    reg_t *reg = req->reg;
    pod_t *pod = reg->pod;
    reg_kind_t kind = req->kind;
    char reason[256];

    /* Any authenticated 200 means a TOTP request's credential is good: keep it, so that the
     * requests after a certificate go on with Bearer. */
    if (req->auth == AUTH_TOTP && req->hdr.session[0] != '\0') {
        pod_session_set(reg->sess, req->hdr.session, req->hdr.session_ttl != 0 ? req->hdr.session_ttl : 60, 1);
        p2m_log(P2M_LOG_INFO, "session_new", "label=%s expires_s=%u via=%s", pod->args->label, req->hdr.session_ttl,
                kinds[kind].name);
    }
    if (kind == REG_REGISTER) {
        registered(req);
        return;
    }
    reg_succeeded(reg);
    if (req->body_total > kinds[kind].body_max) {
        snprintf(reason, sizeof(reason), "response longer than %zu bytes", kinds[kind].body_max);
        req_failed_done(req, 200, reason, 0);
        return;
    }
    /* cert.c gets the body; the request goes first, so that cert.c may ask again at once. */
    char *body = req->body;
    size_t len = req->body_len;
    req->body = NULL;
    req_free(req);
    cert_fetched(pod, kind, 200, body, len, NULL, 0);
    free(body);
}

/* A 307 or 308 to a registration or a certificate request: sends the same request (method, body,
 * Authorization) again to the Location when pod_redirect_check() accepts it and fewer than
 * POD_REDIRECT_HOPS_MAX redirects were followed; a 308 also moves the kind's later requests there.
 * The redirecting registrar has not looked at the credential, so a TOTP code is still unspent.
 * Returns 0 when the request runs again, or -1 with a one-line reason (req untouched). */
static int redirected(req_t *req, long status, char *reason, size_t cap)
{
    reg_t *reg = req->reg;
    pod_t *pod = reg->pod;
    char *loc = NULL, to[POD_REDIRECT_URL_MAX + 1], err[P2M_ERR_LEN];
    /* curl's REDIRECT_URL is the Location made absolute against the request's URL (it keeps what
     * the registrar wrote otherwise), so a relative one stays on this registrar. */
    if (curl_easy_getinfo(req->easy, CURLINFO_REDIRECT_URL, &loc) != CURLE_OK || loc == NULL || loc[0] == '\0') {
        snprintf(reason, cap, "no usable Location");
        return -1;
    }
    if (pod_redirect_check(loc, strlen(loc), pod->args->reg_host, pod->args->domain, to, sizeof(to), err) != 0) {
        /* The Location as far as it is printable, for the operator: at most 120 bytes, no quote. */
        char shown[121];
        size_t n = 0;
        for (; loc[n] != '\0' && n < sizeof(shown) - 1; n++)
            shown[n] = (unsigned char)loc[n] < 0x21 || (unsigned char)loc[n] > 0x7e || loc[n] == '"' ? '?' : loc[n];
        shown[n] = '\0';
        /* A reason cut short is still a reason: only the excerpt's end goes. */
        if (snprintf(reason, cap, "%s: %s", err, shown) < 0)
            reason[0] = '\0';
        return -1;
    }
    if (req->hops >= POD_REDIRECT_HOPS_MAX) {
        snprintf(reason, cap, "more than %d redirects", POD_REDIRECT_HOPS_MAX);
        return -1;
    }
    CURLM *multi = pod_curl_loop_multi(reg->curl);
    curl_multi_remove_handle(multi, req->easy);
    if (curl_easy_setopt(req->easy, CURLOPT_URL, to) != CURLE_OK) {
        snprintf(reason, cap, "curl refused the URL");
        return -1;
    }
    p2m_log(P2M_LOG_INFO, "register_redirected", "label=%s kind=%s status=%ld from=%s to=%s hop=%u", pod->args->label,
            kinds[req->kind].name, status, req->url, to, req->hops + 1);
    if (status == 308)
        snprintf(reg->url[req->kind], sizeof(reg->url[0]), "%s", to);
    snprintf(req->url, sizeof(req->url), "%s", to);
    req->hops++;
    req->body_len = req->body_total = 0;
    req->body[0] = '\0';
    reg_header_reset(&req->hdr);
    pod_proxy_resp_init(&req->connect);
    req->errbuf[0] = '\0';
    CURLMcode mc = curl_multi_add_handle(multi, req->easy);
    if (mc != CURLM_OK) {
        snprintf(reason, cap, "%s", curl_multi_strerror(mc));
        return -1;
    }
    return 0;
}

/* Acts on a finished request's answer (rc: curl's result): holds, backoffs, the session, the
 * outcome to the pool or cert.c, each logged. Takes req (freed here). */
static void answered(req_t *req, CURLcode rc)
{
    reg_t *reg = req->reg;
    pod_t *pod = reg->pod;
    reg_kind_t kind = req->kind;
    long status = 0, connect = 0;
    curl_off_t sent = 0;
    unsigned retry_ms = 0;
    char reason[P2M_ERR_LEN] = "", why[P2M_ERR_LEN];

    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(req->easy, CURLINFO_REQUEST_SIZE, &sent);
    if (rc != CURLE_OK)
        status = 0;
    /* connect: the status with which the proxy refused curl's CONNECT, 0 when it did not. The request
     * itself never left then (sent counts the CONNECT). */
    if (status == 0 && reg->proxy != NULL && curl_easy_getinfo(req->easy, CURLINFO_HTTP_CONNECTCODE, &connect) != CURLE_OK)
        connect = 0;
    if (connect >= 200 && connect <= 299)
        connect = 0;
    if (req->auth == AUTH_TOTP && status == 0 && (sent == 0 || connect != 0)) /* the code never left: its step is still unused */
        pod_session_step_unuse(reg->sess, req->prev_step);

    if (status == 200) {
        answered_ok(req);
        return;
    }
    if ((status == 307 || status == 308) && kind != REG_CACERT) {
        /* A registrar that hands its pods to another (PROTOCOL 1.7); refused: as any failure. */
        if (redirected(req, status, reason, sizeof(reason)) == 0)
            return;
        p2m_err(why, "%ld redirect refused: %s", status, reason);
        retry_ms = pod_backoff_next(&reg->bo);
        reg_failed(reg, req, P2M_LOG_ERROR, "register_redirect_refused", "redirect", retry_ms, why,
                   "status=%ld kind=%s from=%s reason=\"%s\"", status, kinds[kind].name, req->url, reason);
        req_failed_done(req, status, reason, retry_ms);
        return;
    }
    if ((status == 401 || status == 403) && req->auth == AUTH_BEARER) {
        /* Expired or revoked (401), or for another label (403): back to TOTP at once, which says
         * what is really wrong (the step rule still applies). Parallel requests share the fate; a
         * certificate request is asked again. */
        if (reg->sess->cred[0] != '\0') {
            p2m_log(P2M_LOG_INFO, "session_rejected", "label=%s status=%ld kind=%s reason=\"%s\"", pod->args->label, status,
                    kinds[kind].name, body_line(req));
            pod_session_drop(reg->sess);
        }
        if (kind != REG_REGISTER)
            reg->want[kind] = 1;
        req_free(req);
        return;
    }
    if (status == 429 || status == 503) {
        long ra = req->hdr.retry_after;
        retry_ms = ra >= 0         ? (unsigned)(ra > 0 ? ra : 1) * 1000u
                   : status == 429 ? REG_RETRY_AFTER_DEFAULT * 1000u
                                   : pod_backoff_next(&reg->bo);
        snprintf(reason, sizeof(reason), "%s", body_line(req));
        p2m_err(why, "%ld %s", status, reason);
        reg_failed(reg, req, status == 429 ? P2M_LOG_ERROR : P2M_LOG_WARN,
                   status == 429 ? "register_limited" : "registrar_unavailable", status == 429 ? "limited" : "unavailable",
                   retry_ms, why, "status=%ld reason=\"%s\"", status, reason);
    } else if (status == 0 && connect != 0) {
        /* The proxy refused curl's CONNECT: a wrong password, a port it does not allow. */
        const pod_proxy_resp_t *c = &req->connect;
        int parsed = c->status == connect; /* its answer as on_header() read it */
        char k[32];
        pod_proxy_refusal(reg->proxy, reg->target, (int)connect, parsed ? c->reason : NULL, parsed ? c->auth_scheme : NULL, reason,
                          sizeof(reason));
        snprintf(k, sizeof(k), "proxy%ld", connect);
        /* Logged at error once per refusal (any kind of request: a certificate may come first); the
         * registrar's state goes down as for any failure to reach it. */
        if (reg->proxy_refused != connect)
            p2m_log(P2M_LOG_ERROR, "proxy_refused", "label=%s what=registrar status=%ld error=\"%s\"", pod->args->label, connect,
                    reason);
        reg->proxy_refused = connect;
        retry_ms = pod_backoff_next(&reg->bo);
        reg_failed(reg, req, P2M_LOG_WARN, "registrar_down", k, retry_ms, reason, "error=\"%s\"", reason);
    } else if (status == 0) {
        snprintf(reason, sizeof(reason), "%s", req->errbuf[0] != '\0' ? req->errbuf : curl_easy_strerror(rc));
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE) {
            /* The usual first-day mistake: the registrar's own CA is not trusted. Say where it is. */
            char tls_err[sizeof(reason)];
            snprintf(tls_err, sizeof(tls_err), "%s", reason);
            snprintf(reason, sizeof(reason), "the registrar's certificate cannot be verified (%.60s): %s %.80s/cacert", tls_err,
                     pod->args->cacert[0] != '\0' ? "--cacert does not hold its CA; get the right one from"
                                                  : "give its CA with --cacert FILE, from",
                     pod->args->registrar);
        }
        if (req->body_total > kinds[kind].body_limit)
            snprintf(reason, sizeof(reason), "response longer than %zu bytes", kinds[kind].body_limit);
        if (reg->proxy != NULL)
            p2m_err(why, "%s (through proxy %s)", reason, reg->proxy->shown);
        else
            snprintf(why, sizeof(why), "%s", reason);
        retry_ms = pod_backoff_next(&reg->bo);
        reg_failed(reg, req, P2M_LOG_WARN, "registrar_down", "transport", retry_ms, why, "error=\"%s\"", why);
    } else if (status == 400 && kind == REG_REGISTER && req->conns > 1 && !reg->single && pod->args->direct_lan.host[0] == '\0') {
        /* A registrar older than "connections" refuses the key: one per registration from now on. */
        reg->single = 1;
        p2m_log(P2M_LOG_WARN, "register_single", "label=%s reason=\"%s\"", pod->args->label, body_line(req));
    } else if (status == 400 && kind != REG_REGISTER) {
        /* The registrar refused the CSR: nothing to hold the registrations for; cert.c backs off. */
        snprintf(reason, sizeof(reason), "%s", body_line(req));
    } else {
        /* 401 to TOTP (wrong secret, clock skew, step used), 403 (not our label, disabled), 404, ... */
        char k[32];
        snprintf(k, sizeof(k), "status%ld", status);
        snprintf(reason, sizeof(reason), "%s", body_line(req));
        /* A registrar older than direct paths names no key in its refusal: say which ones it may lack. */
        if (status == 400 && kind == REG_REGISTER && pod->args->direct_lan.host[0] != '\0' &&
            strstr(reason, "unknown key") != NULL) {
            size_t n = strlen(reason);
            snprintf(reason + n, sizeof(reason) - n, " (the body declares %s: a registrar older than direct paths refuses them)",
                     pod_register_declares(pod));
        }
        p2m_err(why, "%ld %s", status, reason);
        retry_ms = pod_backoff_next(&reg->bo);
        reg_failed(reg, req, P2M_LOG_ERROR, "register_refused", k, retry_ms, why, "status=%ld auth=%s reason=\"%s\"", status,
                   req->auth == AUTH_BEARER ? "bearer" : "totp", reason);
    }
    req_failed_done(req, status, reason, retry_ms);
}

/* curl_loop.c: a transfer finished. Acts on it, then starts what may start now. */
static void on_done(void *data, CURL *easy, CURLcode rc)
{
    reg_t *reg = reg_check(data);
    req_t *req = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
    if (req == NULL || req->magic != REQ_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "req_bad_magic", "ptr=%p", (void *)req);
        abort();
    }
    answered(req, rc);
    reg_pump(reg);
    pool_refill(reg->pod);
}

/* --- what to start next ----------------------------------------------------------------------- */

/* Starts a request of `kind` with the credential, when the credential allows one now: with a
 * session, up to REG_PARALLEL at once; with TOTP, one at a time and each step once (a TOTP request
 * in flight may bring a session). Waiting for the next step holds all requests until it starts.
 * Returns 1 when started. */
static int start_authed(reg_t *reg, reg_kind_t kind, unsigned conns)
{
    uint64_t step = 0;
    unsigned wait = 0;
    if (reg->sess->cred[0] != '\0')
        return reg->nauth < REG_PARALLEL && req_start(reg, kind, AUTH_BEARER, 0, conns) == 0;
    if (reg->nauth > 0)
        return 0;
    if (pod_session_step_next(reg->sess, &step, &wait) != 0) {
        p2m_log(P2M_LOG_DEBUG, "totp_wait", "label=%s wait_ms=%u", reg->pod->args->label, wait);
        reg_hold(reg, wait);
        return 0;
    }
    return req_start(reg, kind, AUTH_TOTP, step, conns) == 0;
}

/* Starts what cert.c asked for, as far as holds and the credential allow. Safe to call any time
 * outside curl's callbacks. */
static void reg_pump(reg_t *reg)
{
    if (reg->pod->stopping || p2m_loop_timer_armed(&reg->hold))
        return;
    pod_session_expire(reg->sess);
    if (reg->want[REG_CACERT] && reg->cur[REG_CACERT] == NULL && req_start(reg, REG_CACERT, AUTH_NONE, 0, 0) == 0)
        reg->want[REG_CACERT] = 0;
    if (reg->want[REG_CERT] && reg->cur[REG_CERT] == NULL && start_authed(reg, REG_CERT, 0))
        reg->want[REG_CERT] = 0;
}

/* --- public ----------------------------------------------------------------------------------- */

int pod_register_new(pod_t *pod, char *err)
{
    reg_t *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return p2m_err(err, "out of memory");
    reg->magic = REG_MAGIC;
    reg->pod = pod;
    p2m_loop_timer_init(&reg->hold, on_hold);
    snprintf(reg->url[REG_REGISTER], sizeof(reg->url[0]), "%s/register/%s", pod->args->registrar, pod->args->label);
    snprintf(reg->url[REG_CERT], sizeof(reg->url[0]), "%s/certificate/%s", pod->args->registrar, pod->args->label);
    snprintf(reg->url[REG_CACERT], sizeof(reg->url[0]), "%s/cacert", pod->args->registrar);
    reg->proxy = pod_args_use_proxy(pod->args, pod->args->reg_host);
    p2m_hostport_format(pod->args->reg_host, pod->args->reg_port != 0 ? pod->args->reg_port : 443, reg->target,
                        sizeof(reg->target));
    reg->sess = pod->session;
    if (reg->sess == NULL) {
        pod_session_init(&reg->own_sess, pod->args, pod->loop, NULL, NULL);
        reg->sess = &reg->own_sess;
    }
    if ((reg->curl = pod_curl_loop_new(pod->loop, on_done, reg, err)) == NULL) {
        pod_session_wipe(&reg->own_sess);
        free(reg);
        return -1;
    }
    pod->reg = reg;
    return 0;
}

void pod_register_free(pod_t *pod)
{
    reg_t *reg = pod->reg;
    if (reg == NULL)
        return;
    while (reg->reqs != NULL)
        req_free(reg->reqs);
    p2m_loop_timer_stop(pod->loop, &reg->hold);
    pod_curl_loop_free(reg->curl);    /* also runs the loop's deferred frees */
    pod_session_wipe(&reg->own_sess); /* a shared session is its owner's to wipe */
    free(reg->csr);
    reg->magic = POD_DEAD;
    free(reg);
    pod->reg = NULL;
}

unsigned pod_register_inflight(const pod_t *pod)
{
    return pod->reg != NULL ? pod->reg->inflight : 0;
}

pod_health_t pod_register_health(const pod_t *pod)
{
    return pod->reg != NULL ? pod->reg->health : POD_UNKNOWN;
}

const char *pod_register_error(const pod_t *pod)
{
    return pod->reg != NULL && pod->reg->health == POD_DOWN ? pod->reg->error : "";
}

const pod_proxy_t *pod_register_proxy(const pod_t *pod)
{
    return pod->reg != NULL ? pod->reg->proxy : NULL;
}

void pod_register_fetch(pod_t *pod, reg_kind_t kind, const char *csr, size_t len)
{
    reg_t *reg = pod->reg;
    assert(kind == REG_CERT || kind == REG_CACERT);
    if (reg == NULL || reg->cur[kind] != NULL)
        return;
    if (kind == REG_CERT) {
        char *copy = malloc(len + 1);
        if (copy == NULL)
            oom("csr");
        memcpy(copy, csr, len);
        copy[len] = '\0';
        free(reg->csr);
        reg->csr = copy;
        reg->csr_len = len;
    }
    reg->want[kind] = 1;
    reg_pump(reg);
}

void pod_register_fetch_cancel(pod_t *pod)
{
    reg_t *reg = pod->reg;
    if (reg == NULL)
        return;
    for (int k = REG_CERT; k <= REG_CACERT; k++) {
        reg->want[k] = 0;
        if (reg->cur[k] != NULL)
            req_free(reg->cur[k]);
    }
}

unsigned pod_register_start(pod_t *pod, unsigned want)
{
    reg_t *reg = pod->reg;
    unsigned started = 0;
    if (reg == NULL)
        return 0;
    reg_pump(reg); /* cert.c's requests first: a certificate request may bring the session */
    if (pod->stopping || p2m_loop_timer_armed(&reg->hold))
        return 0;
    /* --tls-terminate: no pre-connection before the first certificate is in place. */
    if (pod->args->tls_terminate && pod->tls_ctx == NULL)
        return 0;
    while (started < want) {
        unsigned k = want - started < REG_LEASE_CONNS ? want - started : REG_LEASE_CONNS;
        if (reg->single)
            k = 1;
        if (!start_authed(reg, REG_REGISTER, k))
            break;
        started += k;
    }
    return started;
}
