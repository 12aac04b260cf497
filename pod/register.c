/* The pod's requests to the registrar with libcurl's multi interface on the p2m loop: PUT
 * {registrar}/register/LABEL (docs/PROTOCOL.md 1) for the pool, and for cert.c POST
 * /certificate/LABEL (PROTOCOL 4) and GET /cacert. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to call it back (CURLMOPT_TIMERFUNCTION); we call
 * curl_multi_socket_action() from the loop's callbacks. curl resolves names with its threaded
 * resolver, so nothing here blocks the loop. All three kinds go through one request path.
 *
 * Credentials: the first authenticated request (a registration or a certificate) uses TOTP and
 * returns a session credential (P2M-Session), presented as Bearer until it expires or a 401 says
 * it is dead. A TOTP code is accepted once per 30-second step, so a TOTP request is never sent
 * twice in one step: the second waits for the next step rather than burn a 401 (which the
 * registrar counts toward its 429 lockout). With --state-dir the last step used is kept in
 * DIR/totp-step, so that a restarted pod does not reuse it. Only one TOTP request is in flight at
 * a time, and nothing else that needs the credential; with a session, up to REG_PARALLEL.
 *
 * Failures hold all requests: 429 and 503 for Retry-After, others for an exponential backoff with
 * jitter, except a 400 to a certificate request (the CSR is at fault, not the registrar). State
 * changes are logged once (registrar_down, registrar_up); the attempts in between at debug level.
 * Certificate outcomes go to cert_fetched(), which logs them. Neither the secret, the TOTP codes
 * nor the session credential are logged. */
#include "pod.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/totp.h"
#include "reg_header.h"

#define REG_MAGIC 0x52454749u   /* "REGI" */
#define REQ_MAGIC 0x52455155u   /* "REQU" */
#define CSOCK_MAGIC 0x43534f43u /* "CSOC" */
#define REG_PARALLEL 8          /* Bearer registrations in flight at once, multiplexed on one HTTP/2 connection */
/* Pre-connections one registration asks for (PROTOCOL 1.1): a pool refills with one request per
 * batch instead of one per connection, the registrar's and the relay's work per lease shared. */
#define REG_LEASE_CONNS P2M_LEASE_CONNS_MAX
#define REG_BODY_MAX 256    /* ADDRESS:PORT, or a one-line reason */
#define REG_BODY_LIMIT 4096 /* a longer registration response is aborted */
#define REG_PEM_MAX 65536   /* a certificate chain or /cacert: a longer one is aborted */
#define REG_RETRY_AFTER_DEFAULT 60
#define REG_CONNECT_TIMEOUT_MS 5000L
#define REG_TIMEOUT_MS 20000L  /* the registrar waits up to 3 x 3 s for the relay */
#define REG_STEP_MARGIN_MS 250 /* after a step boundary, so that clocks agree */

typedef struct req req_t;
typedef struct csock csock_t;

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
    CURLM *multi;
    p2m_loop_timer_t curl_timer; /* CURLMOPT_TIMERFUNCTION */
    p2m_loop_timer_t hold;       /* no request until it fires */
    pod_backoff_t bo;
    pod_health_t health;
    char last_failure[64];                         /* the failure last logged at warn or error: repeats go to debug */
    char url[3][P2M_URL_MAX + P2M_LABEL_MAX + 16]; /* by reg_kind_t */
    int single;                                    /* the registrar refused "connections": ask for one */
    char step_path[POD_PATH_MAX + 16];             /* "" without --state-dir */
    char session_path[POD_PATH_MAX + 16];          /* "" without --state-dir */

    req_t *reqs;
    unsigned inflight; /* pre-connections asked for by the registrations in flight */
    unsigned nauth;    /* requests that carry the credential (registrations, certificates) */
    int totp_inflight;
    uint64_t step_used; /* last TOTP step a request may have consumed */

    /* cert.c's requests: asked for (want), in flight (cur); the CSR of the next certificate request */
    int want[3];
    req_t *cur[3];
    char *csr;
    size_t csr_len;

    char session[REG_SESSION_MAX + 1]; /* "" when none */
    uint64_t session_until;            /* loop ms */

    csock_t *socks; /* every socket curl asked us to watch */
};

struct req {
    uint32_t magic;
    reg_t *reg;
    reg_kind_t kind;
    CURL *easy;
    struct curl_slist *headers;
    auth_t auth;
    unsigned conns;           /* registration: pre-connections asked for */
    char reg_body[80];        /* registration: {"protocol":"NAME","connections":N} */
    uint64_t step, prev_step; /* TOTP: the step used, and step_used before it */
    char *body;               /* kinds[kind].body_max + 1 bytes */
    size_t body_len, body_total;
    reg_header_t hdr; /* what the response's headers said */
    char errbuf[CURL_ERROR_SIZE];
    req_t *next, *prev;
};

struct csock {
    uint32_t magic;
    reg_t *reg;
    p2m_loop_handler_t h;
    p2m_loop_reap_t reap;
    csock_t *next, *prev;
};

static reg_t *reg_check(reg_t *reg)
{
    if (reg == NULL || reg->magic != REG_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "reg_bad_magic", "ptr=%p", (void *)reg);
        abort();
    }
    return reg;
}

/* --- what survives a restart (with --state-dir) ----------------------------------------------
 *
 * DIR/totp-step: the last TOTP step used, so that a restarted pod waits for the next step rather
 * than burn a 401. DIR/session: the session credential with its pod, label and expiry (mode 0600,
 * like the secret file beside it), so that a restarted pod goes on with Bearer registrations. Both
 * are a few bytes on a local disk, written with rename(2); a failure only costs a TOTP round. */

/* Reads at most cap - 1 bytes of a small file into buf. Returns the length or -1. */
static ssize_t small_read(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

static void small_write(const char *path, const char *data, size_t len)
{
    char tmp[POD_PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp); /* created afresh, so with mode 0600 */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    int ok = write(fd, data, len) == (ssize_t)len;
    close(fd);
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
}

static void step_save(reg_t *reg, uint64_t step)
{
    char buf[32];
    if (reg->step_path[0] == '\0')
        return;
    int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)step);
    small_write(reg->step_path, buf, (size_t)n);
}

static void step_load(reg_t *reg)
{
    char buf[32];
    unsigned long long v = 0;
    if (small_read(reg->step_path, buf, sizeof(buf)) > 0 && sscanf(buf, "%llu", &v) == 1)
        reg->step_used = v;
}

/* Keeps the session for ttl_s seconds (less a margin: it is renewed before the registrar drops it). */
static void session_set(reg_t *reg, const char *cred, unsigned ttl_s, int save)
{
    char buf[REG_SESSION_MAX + P2M_ID_MAX + P2M_LABEL_MAX + 64];
    uint64_t ttl_ms = (uint64_t)ttl_s * 1000u;
    uint64_t margin = ttl_ms / 10 < 30000 ? ttl_ms / 10 : 30000;
    snprintf(reg->session, sizeof(reg->session), "%s", cred);
    reg->session_until = p2m_loop_now(reg->pod->loop) + ttl_ms - margin;
    if (!save || reg->session_path[0] == '\0')
        return;
    int n = snprintf(buf, sizeof(buf), "v1 %s %s %llu %s\n", reg->pod->args->id, reg->pod->args->label,
                     (unsigned long long)time(NULL) + ttl_s, cred);
    if (n > 0 && (size_t)n < sizeof(buf))
        small_write(reg->session_path, buf, (size_t)n);
    OPENSSL_cleanse(buf, sizeof(buf));
}

static void session_drop(reg_t *reg)
{
    OPENSSL_cleanse(reg->session, sizeof(reg->session));
    reg->session[0] = '\0';
    if (reg->session_path[0] != '\0')
        unlink(reg->session_path);
}

static void session_load(reg_t *reg)
{
    char buf[REG_SESSION_MAX + P2M_ID_MAX + P2M_LABEL_MAX + 64];
    char id[P2M_ID_MAX + 1], label[P2M_LABEL_MAX + 1], cred[REG_SESSION_MAX + 1];
    unsigned long long until = 0, now = (unsigned long long)time(NULL);
    if (small_read(reg->session_path, buf, sizeof(buf)) > 0 &&
        sscanf(buf, "v1 %64s %63s %llu %128s", id, label, &until, cred) == 4 && strcmp(id, reg->pod->args->id) == 0 &&
        strcmp(label, reg->pod->args->label) == 0 && reg_session_valid(cred) && until > now + 60 && until < now + 30ull * 86400) {
        session_set(reg, cred, (unsigned)(until - now), 0);
        p2m_log(P2M_LOG_INFO, "session_resumed", "label=%s expires_s=%llu", reg->pod->args->label, until - now);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_cleanse(cred, sizeof(cred));
}

/* --- curl's sockets and timer on the loop ----------------------------------------------------- */

static void reg_check_done(reg_t *reg);

static void reap_csock(p2m_loop_reap_t *r)
{
    csock_t *cs = (csock_t *)((char *)r - offsetof(csock_t, reap));
    free(cs);
}

static void csock_drop(reg_t *reg, csock_t *cs)
{
    p2m_loop_del(reg->pod->loop, &cs->h);
    if (cs->prev != NULL)
        cs->prev->next = cs->next;
    else
        reg->socks = cs->next;
    if (cs->next != NULL)
        cs->next->prev = cs->prev;
    cs->magic = POD_DEAD;
    p2m_loop_defer(reg->pod->loop, &cs->reap, reap_csock);
}

static void on_curl_io(p2m_loop_t *loop, p2m_loop_handler_t *h, uint32_t events)
{
    (void)loop;
    csock_t *cs = (csock_t *)((char *)h - offsetof(csock_t, h));
    if (cs->magic != CSOCK_MAGIC) {
        p2m_log(P2M_LOG_ERROR, "csock_bad_magic", "ptr=%p", (void *)cs);
        abort();
    }
    reg_t *reg = reg_check(cs->reg);
    int mask = 0, running = 0;
    if (events & (EPOLLIN | EPOLLHUP))
        mask |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        mask |= CURL_CSELECT_OUT;
    if (events & EPOLLERR)
        mask |= CURL_CSELECT_ERR;
    /* cs may be dropped inside (CURL_POLL_REMOVE); its memory lives until the end of the turn. */
    curl_multi_socket_action(reg->multi, h->fd, mask, &running);
    reg_check_done(reg);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    reg_t *reg = reg_check(userp);
    csock_t *cs = socketp;
    char err[P2M_ERR_LEN];

    if (what == CURL_POLL_REMOVE) {
        if (cs != NULL) {
            curl_multi_assign(reg->multi, s, NULL);
            csock_drop(reg, cs);
        }
        return 0;
    }
    uint32_t ev = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    if (cs == NULL) {
        if ((cs = calloc(1, sizeof(*cs))) == NULL) {
            p2m_log(P2M_LOG_ERROR, "oom", "what=curl_socket");
            abort();
        }
        cs->magic = CSOCK_MAGIC;
        cs->reg = reg;
        p2m_loop_handler_init(&cs->h);
        if (p2m_loop_add(reg->pod->loop, &cs->h, s, ev, on_curl_io, err) != 0) {
            p2m_log(P2M_LOG_ERROR, "curl_socket_failed", "fd=%d error=\"%s\"", (int)s, err);
            free(cs);
            return -1;
        }
        cs->next = reg->socks;
        if (reg->socks != NULL)
            reg->socks->prev = cs;
        reg->socks = cs;
        curl_multi_assign(reg->multi, s, cs);
        return 0;
    }
    if (p2m_loop_set_events(reg->pod->loop, &cs->h, ev) != 0) {
        p2m_log(P2M_LOG_ERROR, "curl_socket_failed", "fd=%d error=\"%s\"", (int)s, strerror(errno));
        return -1;
    }
    return 0;
}

static int on_curl_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    reg_t *reg = reg_check(userp);
    /* Only arm here: curl must not be called back from inside this callback. */
    if (timeout_ms < 0)
        p2m_loop_timer_stop(reg->pod->loop, &reg->curl_timer);
    else
        p2m_loop_timer_start(reg->pod->loop, &reg->curl_timer, (uint64_t)timeout_ms);
    return 0;
}

static void on_curl_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    (void)loop;
    reg_t *reg = reg_check((reg_t *)((char *)t - offsetof(reg_t, curl_timer)));
    int running = 0;
    curl_multi_socket_action(reg->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    reg_check_done(reg);
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
    size_t len = size * n;
    reg_header_parse(&req->hdr, data, len);
    return len;
}

static void req_free(req_t *req)
{
    reg_t *reg = req->reg;
    if (req->easy != NULL) {
        curl_multi_remove_handle(reg->multi, req->easy);
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
    if (req->auth == AUTH_TOTP)
        reg->totp_inflight = 0;
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

/* Builds and starts one request of `kind` with the credential `auth` (TOTP: for `step`). The body
 * is the protocol declaration and `conns` (pre-connections asked for; 0 reads as 1) for a
 * registration, reg->csr for a certificate, none for /cacert. Returns 0 or -1 (logged). */
static int req_start(reg_t *reg, reg_kind_t kind, auth_t auth, uint64_t step, unsigned conns)
{
    pod_t *pod = reg->pod;
    char hdr[REG_SESSION_MAX + P2M_ID_MAX + 64], err[P2M_ERR_LEN];
    struct curl_slist *l;
    req_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        oom("request");
    req->magic = REQ_MAGIC;
    req->reg = reg;
    req->kind = kind;
    req->auth = auth;
    reg_header_reset(&req->hdr);
    if ((req->body = malloc(kinds[kind].body_max + 1)) == NULL)
        oom("request");
    req->body[0] = '\0';
    req->next = reg->reqs;
    if (reg->reqs != NULL)
        reg->reqs->prev = req;
    reg->reqs = req;
    if (kind == REG_REGISTER) {
        req->conns = reg->single || conns == 0 ? 1 : conns;
        /* "connections" only when more than one: a registrar that predates it still answers. */
        if (req->conns > 1)
            snprintf(req->reg_body, sizeof(req->reg_body), "{\"protocol\":\"%s\",\"connections\":%u}",
                     p2m_proto_name(pod->args->proto), req->conns);
        else
            snprintf(req->reg_body, sizeof(req->reg_body), "{\"protocol\":\"%s\"}", p2m_proto_name(pod->args->proto));
        reg->inflight += req->conns;
    } else
        reg->cur[kind] = req;
    if (auth != AUTH_NONE)
        reg->nauth++;

    if (auth == AUTH_BEARER) {
        snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", reg->session);
    } else if (auth == AUTH_TOTP) {
        char code[P2M_TOTP_DIGITS_MAX + 1];
        if (p2m_totp_generate(pod->args->secret, pod->args->secret_len, (time_t)(step * P2M_TOTP_STEP), pod->args->digits, code,
                              err) != 0) {
            p2m_log(P2M_LOG_ERROR, "totp_failed", "error=\"%s\"", err);
            goto Fail;
        }
        snprintf(hdr, sizeof(hdr), "Authorization: TOTP username=\"%s\", response=\"%s\"", pod->args->id, code);
        OPENSSL_cleanse(code, sizeof(code));
        req->step = step;
        req->prev_step = reg->step_used;
        reg->step_used = step;
        reg->totp_inflight = 1;
        step_save(reg, step);
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
    bad |= curl_easy_setopt(e, CURLOPT_URL, reg->url[kind]) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
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
    bad |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*") != CURLE_OK; /* the lease binds our own address */
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
        p2m_log(P2M_LOG_ERROR, "curl_setopt_failed", "url=%s", reg->url[kind]);
        goto Fail;
    }
    CURLMcode mc = curl_multi_add_handle(reg->multi, e);
    if (mc != CURLM_OK) {
        p2m_log(P2M_LOG_ERROR, "curl_add_failed", "error=\"%s\"", curl_multi_strerror(mc));
        goto Fail;
    }
    if (kind == REG_REGISTER)
        p2m_log(P2M_LOG_DEBUG, "register_start", "label=%s auth=%s conns=%u inflight=%u", pod->args->label,
                auth == AUTH_BEARER ? "bearer" : "totp", req->conns, reg->inflight);
    else
        p2m_log(P2M_LOG_DEBUG, "request_start", "label=%s kind=%s auth=%s", pod->args->label, kinds[kind].name,
                auth == AUTH_BEARER ? "bearer"
                : auth == AUTH_TOTP ? "totp"
                                    : "none");
    return 0;
Fail:
    if (auth == AUTH_TOTP)
        reg->step_used = req->prev_step;
    req_free(req);
    return -1;
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
                       const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static void reg_failed(reg_t *reg, const req_t *req, p2m_log_level_t level, const char *event, const char *kind, unsigned hold_ms,
                       const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    reg->health = POD_DOWN;
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
                   "status=200 reason=\"response is not ADDRESS:PORT\"");
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

static void req_done(req_t *req, CURLcode rc)
{
    reg_t *reg = req->reg;
    pod_t *pod = reg->pod;
    reg_kind_t kind = req->kind;
    long status = 0;
    curl_off_t sent = 0;
    unsigned retry_ms = 0;
    char reason[256] = "";

    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(req->easy, CURLINFO_REQUEST_SIZE, &sent);
    if (rc != CURLE_OK)
        status = 0;
    if (req->auth == AUTH_TOTP && status == 0 && sent == 0) /* the code never left: its step is still unused */
        reg->step_used = req->prev_step;

    if (status == 200) {
        /* Any authenticated 200 means a TOTP request's credential is good: keep it, so that the
         * requests after a certificate go on with Bearer. */
        if (req->auth == AUTH_TOTP && req->hdr.session[0] != '\0') {
            session_set(reg, req->hdr.session, req->hdr.session_ttl != 0 ? req->hdr.session_ttl : 60, 1);
            p2m_log(P2M_LOG_INFO, "session_new", "label=%s expires_s=%u via=%s", pod->args->label, req->hdr.session_ttl,
                    kinds[kind].name);
        }
        if (kind == REG_REGISTER) {
            registered(req);
            goto Next;
        }
        reg_succeeded(reg);
        if (req->body_total > kinds[kind].body_max) {
            snprintf(reason, sizeof(reason), "response longer than %zu bytes", kinds[kind].body_max);
            goto Deliver;
        }
        /* cert.c gets the body; the request goes first, so that cert.c may ask again at once. */
        char *body = req->body;
        size_t len = req->body_len;
        req->body = NULL;
        req_free(req);
        cert_fetched(pod, kind, 200, body, len, NULL, 0);
        free(body);
        goto Next;
    }
    if ((status == 401 || status == 403) && req->auth == AUTH_BEARER) {
        /* Expired or revoked (401), or for another label (403): back to TOTP at once, which says
         * what is really wrong (the step rule still applies). Parallel requests share the fate; a
         * certificate request is asked again. */
        if (reg->session[0] != '\0') {
            p2m_log(P2M_LOG_INFO, "session_rejected", "label=%s status=%ld kind=%s reason=\"%s\"", pod->args->label, status,
                    kinds[kind].name, body_line(req));
            session_drop(reg);
        }
        if (kind != REG_REGISTER)
            reg->want[kind] = 1;
        req_free(req);
        goto Next;
    }
    if (status == 429 || status == 503) {
        long ra = req->hdr.retry_after;
        retry_ms = ra >= 0         ? (unsigned)(ra > 0 ? ra : 1) * 1000u
                   : status == 429 ? REG_RETRY_AFTER_DEFAULT * 1000u
                                   : pod_backoff_next(&reg->bo);
        snprintf(reason, sizeof(reason), "%s", body_line(req));
        reg_failed(reg, req, status == 429 ? P2M_LOG_ERROR : P2M_LOG_WARN,
                   status == 429 ? "register_limited" : "registrar_unavailable", status == 429 ? "limited" : "unavailable",
                   retry_ms, "status=%ld reason=\"%s\"", status, reason);
    } else if (status == 0) {
        snprintf(reason, sizeof(reason), "%s", req->errbuf[0] != '\0' ? req->errbuf : curl_easy_strerror(rc));
        if (req->body_total > kinds[kind].body_limit)
            snprintf(reason, sizeof(reason), "response longer than %zu bytes", kinds[kind].body_limit);
        retry_ms = pod_backoff_next(&reg->bo);
        reg_failed(reg, req, P2M_LOG_WARN, "registrar_down", "transport", retry_ms, "error=\"%s\"", reason);
    } else if (status == 400 && kind == REG_REGISTER && req->conns > 1 && !reg->single) {
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
        retry_ms = pod_backoff_next(&reg->bo);
        reg_failed(reg, req, P2M_LOG_ERROR, "register_refused", k, retry_ms, "status=%ld auth=%s reason=\"%s\"", status,
                   req->auth == AUTH_BEARER ? "bearer" : "totp", reason);
    }
Deliver:
    req_free(req);
    if (kind != REG_REGISTER)
        cert_fetched(pod, kind, status, NULL, 0, reason, retry_ms);
Next:
    reg_pump(reg);
    pool_refill(pod);
}

static void reg_check_done(reg_t *reg)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(reg->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        req_t *req = NULL;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        if (req == NULL || req->magic != REQ_MAGIC) {
            p2m_log(P2M_LOG_ERROR, "req_bad_magic", "ptr=%p", (void *)req);
            abort();
        }
        req_done(req, rc);
    }
}

/* --- what to start next ----------------------------------------------------------------------- */

/* Drops a session past its end. */
static void session_check(reg_t *reg)
{
    if (reg->session[0] != '\0' && p2m_loop_now(reg->pod->loop) >= reg->session_until) {
        p2m_log(P2M_LOG_INFO, "session_expired", "label=%s", reg->pod->args->label);
        session_drop(reg);
    }
}

/* Starts a request of `kind` with the credential, when the credential allows one now: with a
 * session, up to REG_PARALLEL at once; with TOTP, one at a time and each step once (a TOTP request
 * in flight may bring a session). Waiting for the next step holds all requests until it starts.
 * Returns 1 when started. */
static int start_authed(reg_t *reg, reg_kind_t kind, unsigned conns)
{
    if (reg->session[0] != '\0')
        return reg->nauth < REG_PARALLEL && req_start(reg, kind, AUTH_BEARER, 0, conns) == 0;
    if (reg->nauth > 0)
        return 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t step = (uint64_t)ts.tv_sec / P2M_TOTP_STEP;
    if (reg->step_used > step + 1) /* saved before the clock was set back: the registrar's clock decides */
        reg->step_used = 0;
    if (step <= reg->step_used) {
        uint64_t next_ms = (reg->step_used + 1) * P2M_TOTP_STEP * 1000ull;
        uint64_t now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        unsigned wait = (unsigned)(next_ms > now_ms ? next_ms - now_ms : 0) + REG_STEP_MARGIN_MS;
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
    session_check(reg);
    if (reg->want[REG_CACERT] && reg->cur[REG_CACERT] == NULL && req_start(reg, REG_CACERT, AUTH_NONE, 0, 0) == 0)
        reg->want[REG_CACERT] = 0;
    if (reg->want[REG_CERT] && reg->cur[REG_CERT] == NULL && start_authed(reg, REG_CERT, 0))
        reg->want[REG_CERT] = 0;
}

/* --- public ----------------------------------------------------------------------------------- */

int reg_new(pod_t *pod, char *err)
{
    reg_t *reg = calloc(1, sizeof(*reg));
    if (reg == NULL)
        return p2m_err(err, "out of memory");
    reg->magic = REG_MAGIC;
    reg->pod = pod;
    p2m_loop_timer_init(&reg->curl_timer, on_curl_timer);
    p2m_loop_timer_init(&reg->hold, on_hold);
    snprintf(reg->url[REG_REGISTER], sizeof(reg->url[0]), "%s/register/%s", pod->args->registrar, pod->args->label);
    snprintf(reg->url[REG_CERT], sizeof(reg->url[0]), "%s/certificate/%s", pod->args->registrar, pod->args->label);
    snprintf(reg->url[REG_CACERT], sizeof(reg->url[0]), "%s/cacert", pod->args->registrar);
    if (pod->args->state_dir[0] != '\0') {
        snprintf(reg->step_path, sizeof(reg->step_path), "%s/totp-step", pod->args->state_dir);
        snprintf(reg->session_path, sizeof(reg->session_path), "%s/session", pod->args->state_dir);
        step_load(reg);
        session_load(reg);
    }
    if ((reg->multi = curl_multi_init()) == NULL) {
        free(reg);
        return p2m_err(err, "curl_multi_init failed");
    }
    curl_multi_setopt(reg->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(reg->multi, CURLMOPT_SOCKETDATA, reg);
    curl_multi_setopt(reg->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer_set);
    curl_multi_setopt(reg->multi, CURLMOPT_TIMERDATA, reg);
    curl_multi_setopt(reg->multi, CURLMOPT_MAXCONNECTS, 2L);
    pod->reg = reg;
    return 0;
}

void reg_free(pod_t *pod)
{
    reg_t *reg = pod->reg;
    if (reg == NULL)
        return;
    while (reg->reqs != NULL)
        req_free(reg->reqs);
    curl_multi_cleanup(reg->multi); /* closes cached connections, calling on_curl_socket */
    while (reg->socks != NULL)
        csock_drop(reg, reg->socks);
    p2m_loop_timer_stop(pod->loop, &reg->curl_timer);
    p2m_loop_timer_stop(pod->loop, &reg->hold);
    p2m_loop_reap(pod->loop);
    OPENSSL_cleanse(reg->session, sizeof(reg->session));
    free(reg->csr);
    reg->magic = POD_DEAD;
    free(reg);
    pod->reg = NULL;
}

unsigned reg_inflight(const pod_t *pod)
{
    return pod->reg != NULL ? pod->reg->inflight : 0;
}

pod_health_t reg_health(const pod_t *pod)
{
    return pod->reg != NULL ? pod->reg->health : POD_UNKNOWN;
}

void reg_fetch(pod_t *pod, reg_kind_t kind, const char *csr, size_t len)
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

void reg_fetch_cancel(pod_t *pod)
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

unsigned reg_start(pod_t *pod, unsigned want)
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
