/* PUT /register/LABEL: TOTP or session authentication, then a pre-connection port lease.
 *
 *   TOTP:   auth_lookup -> (TOTP check here) -> register_commit -> lease_pre -> relay bound -> 200
 *   Bearer: session_lookup -> lease_pre -> relay bound -> 200
 *
 * Each arrow is one Redis round trip; every decision that spans keys happens inside one script.
 * POST /certificate/LABEL authenticates the same way (auth_start) and then goes to certificate.c
 * instead of leasing a port. */
#include "registrar.h"
#include "req.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/totp.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LEASE_TRIES 3

static void lease_request(op_t *op);

static p2m_auth_limits_t auth_limits(const registrar_t *r)
{
    return (p2m_auth_limits_t){.free = r->cfg.registrar.auth_fail_limit,
                               .window = r->cfg.registrar.auth_fail_window,
                               .backoff_max = r->cfg.registrar.auth_backoff_max};
}

static const char *reply_str(const redisReply *r, size_t i)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements || r->element[i]->type != REDIS_REPLY_STRING)
        return NULL;
    return r->element[i]->str;
}

static void log_result(op_t *op, int status, const char *why)
{
    const char *auth = op->auth.scheme == P2M_AUTH_BEARER ? "bearer" : op->auth.scheme == P2M_AUTH_TOTP ? "totp" : "-";
    p2m_log_level_t level = status == 200 ? P2M_LOG_INFO : P2M_LOG_WARN;
    if (op->kind == OP_REGISTER)
        p2m_log(level, "register", "status=%d label=%s protocol=%s pod=%s addr=%s auth=%s lease=%u conns=%u reason=\"%s\"%s%s",
                status, op->label, p2m_proto_name(op->proto), op->id[0] ? op->id : "-", op->addr, auth, (unsigned)op->port,
                op->conns, why, op->reused ? " token=reused" : "", op_via(op));
    else
        p2m_log(level, "certificate", "status=%d label=%s pod=%s addr=%s auth=%s reason=\"%s\"%s", status, op->label,
                op->id[0] ? op->id : "-", op->addr, auth, why, op_via(op));
}

/* What a wrong code and an unknown pod ID both answer, byte for byte (no enumeration of IDs). */
static const char auth_failed[] = "authentication failed";

/* 401 with WWW-Authenticate: TOTP. `why` goes to the log and the fail:COUNTER statistic, `answer`
 * to the client. The limiters were counted before the code was checked (auth_lookup), so a
 * refusal costs no further Redis round trip than the statistic. */
static void refuse_auth(op_t *op, const char *counter, const char *why, const char *answer)
{
    p2m_cmd_t cmd;
    char name[64];
    snprintf(name, sizeof(name), "fail:%s", counter);
    if (p2m_cmd_stat(&cmd, name) == 0)
        redis_send_nowait(op->r, &cmd);
    log_result(op, 401, why);
    op_header(op, "WWW-Authenticate", "TOTP");
    op_respond(op, 401, "Unauthorized", answer);
}

void op_fail(op_t *op, int status, const char *reason, const char *why)
{
    p2m_cmd_t cmd;
    char counter[64];
    snprintf(counter, sizeof(counter), "fail:%d", status);
    if (p2m_cmd_stat(&cmd, counter) == 0)
        redis_send_nowait(op->r, &cmd);
    log_result(op, status, why);
    op_respond(op, status, reason, why);
}

static void redis_down(op_t *op)
{
    op_header(op, "Retry-After", "5");
    op_fail(op, 503, "Service Unavailable", "registry unavailable");
}

static void limited(op_t *op, const char *retry_after)
{
    op_header(op, "Retry-After", retry_after != NULL ? retry_after : "60");
    op_fail(op, 429, "Too Many Requests", "too many failed attempts; try later");
}

/* A session credential: 32 random bytes, base64url. Redis keeps only its SHA-256. */
static int make_session(op_t *op)
{
    unsigned char raw[32], digest[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0;
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        uint32_t v =
            (uint32_t)raw[i] << 16 | (i + 1 < sizeof(raw) ? (uint32_t)raw[i + 1] << 8 : 0) | (i + 2 < sizeof(raw) ? raw[i + 2] : 0);
        size_t chars = i + 2 < sizeof(raw) ? 4 : i + 1 < sizeof(raw) ? 3 : 2;
        for (size_t k = 0; k < chars; k++)
            op->session[n++] = b64[(v >> (18 - 6 * k)) & 63];
    }
    op->session[n] = '\0';
    EVP_Digest(op->session, n, digest, NULL, EVP_sha256(), NULL);
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(op->session_digest + 2 * i, 3, "%02x", digest[i]);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

static void digest_bearer(const char *cred, char *out)
{
    unsigned char digest[32];
    EVP_Digest(cred, strlen(cred), digest, NULL, EVP_sha256(), NULL);
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

void session_headers(op_t *op)
{
    if (op->session[0] != '\0') {
        char ttl[16];
        snprintf(ttl, sizeof(ttl), "%u", op->r->cfg.registrar.session_ttl);
        op_header(op, "P2M-Session", op->session);
        op_header(op, "P2M-Session-Expires", ttl);
    }
}

void register_bound(op_t *op, int ok)
{
    if (ok > 0) {
        char body[P2M_HOST_MAX + 16];
        char conns[16];
        p2m_hostport_format(op->relay_addr, op->port, body, sizeof(body));
        session_headers(op);
        /* Always sent, so that a pod knows how many connections the port takes without assuming. */
        snprintf(conns, sizeof(conns), "%u", op->conns);
        op_header(op, "P2M-Connections", conns);
        /* The demand for the service (PROTOCOL 1.3): the pod grows its pool to meet it. */
        op_header(op, "P2M-Waiting", op->waiting[0] ? op->waiting : "0");
        op_header(op, "P2M-Waited", op->waited[0] ? op->waited : "0");
        p2m_cmd_t cmd;
        if (p2m_cmd_stat(&cmd, "registrations") == 0)
            redis_send_nowait(op->r, &cmd);
        log_result(op, 200, "ok");
        if (op->req != NULL) {
            h2o_req_t *req = op->req;
            req->res.status = 200;
            req->res.reason = "OK";
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain"));
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
            req_send_body(req, body, strlen(body));
        }
        op_free(op);
        return;
    }
    if (ok == 0 && ++op->tries < LEASE_TRIES) {
        lease_request(op); /* that port was taken on the relay host: lease another */
        return;
    }
    op_header(op, "Retry-After", "5");
    op_fail(op, 503, "Service Unavailable", ok < 0 ? "relay did not answer" : "relay could not listen");
}

/* A count from a script's reply as a P2M-Waiting or P2M-Waited value: "0" when it is not digits. */
static void count_header(const char *v, char *out, size_t cap)
{
    size_t n = v != NULL ? strlen(v) : 0;
    if (n == 0 || strspn(v, "0123456789") != n)
        snprintf(out, cap, "0");
    else if (n > 9)
        snprintf(out, cap, "999999999");
    else
        snprintf(out, cap, "%s", v);
}

static void on_lease(op_t *op, redisReply *rep)
{
    const char *status = reply_str(rep, 0);
    if (op->req == NULL) { /* the pod gave up; a lease it will never use expires by itself */
        op_free(op);
        return;
    }
    if (status == NULL) {
        redis_down(op);
        return;
    }
    if (strcmp(status, "ok") != 0) {
        op_header(op, "Retry-After", "5");
        {
            op_fail(op, 503, "Service Unavailable", strcmp(status, "norelay") == 0 ? "no relay is running" : "no free port");
            return;
        }
    }
    const char *port = reply_str(rep, 1), *relay = reply_str(rep, 2), *addr = reply_str(rep, 3);
    const char *waiting = reply_str(rep, 4), *waited = reply_str(rep, 5);
    if (port == NULL || relay == NULL || addr == NULL) {
        redis_down(op);
        return;
    }
    /* Counts summed by the script from the relays' hashes: digits only reach a header, at most 9
     * of them (PROTOCOL 1.3: a larger count is sent as 999999999). */
    count_header(waiting, op->waiting, sizeof(op->waiting));
    count_header(waited, op->waited, sizeof(op->waited));
    op->port = (uint16_t)atoi(port);
    snprintf(op->relay_addr, sizeof(op->relay_addr), "%s", addr);
    lease_wait(op, relay, 1);
}

static void lease_request(op_t *op)
{
    p2m_cmd_t cmd;
    uint32_t rnd;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    if (p2m_cmd_lease_pre(&cmd, op->label, op->proto, op->id, op->addr, (long long)time(NULL),
                          op->r->cfg.registrar.preconnect_timeout, rnd & 0x7fffffff, op->conns,
                          op->r->cfg.registrar.alive_window) != 0 ||
        redis_send(op->r, &cmd, on_lease, op) != 0)
        redis_down(op);
}

/* Answers every outcome a lookup or commit script can report but "ok". Returns 1 when op has been
 * answered (and freed), 0 when the caller goes on. */
static int settled(op_t *op, const char *status, const redisReply *rep)
{
    if (op->req == NULL) { /* the pod gave up */
        op_free(op);
        return 1;
    }
    if (status != NULL && strcmp(status, "ok") == 0)
        return 0;
    if (status != NULL && strcmp(status, "reused") == 0) {
        op->reused = 1;
        return 0;
    }
    if (status == NULL)
        redis_down(op);
    else if (strcmp(status, "limited") == 0)
        limited(op, reply_str(rep, 1));
    else if (strcmp(status, "nopod") == 0) /* removed between lookup and commit */
        refuse_auth(op, "nopod", "unknown pod", auth_failed);
    else if (strcmp(status, "replay") == 0)
        refuse_auth(op, "replay", "token already used", "token already used");
    else if (strcmp(status, "badsession") == 0)
        refuse_auth(op, "badsession", "session expired or revoked", "session expired or revoked");
    else if (strcmp(status, "disabled") == 0)
        op_fail(op, 403, "Forbidden", "pod disabled");
    else if (strcmp(status, "notowner") == 0)
        op_fail(op, 403, "Forbidden", "label not owned by this pod");
    else
        redis_down(op);
    return 1;
}

/* Authenticated and authorised: what the request came for. */
static void authorized(op_t *op)
{
    if (op->kind == OP_REGISTER)
        lease_request(op);
    else
        certificate_authorized(op);
}

static void on_commit(op_t *op, redisReply *rep)
{
    int is_text = rep != NULL && (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING);
    if (!settled(op, is_text ? rep->str : NULL, rep))
        authorized(op);
}

/* A label's default protocol (admin `label add --protocol`) for a registration without a body. */
static void default_protocol(op_t *op, const char *name)
{
    p2m_proto_t proto;
    if (!op->has_body && name != NULL && name[0] != '\0' && p2m_proto_parse(name, strlen(name), &proto, NULL) == 0)
        op->proto = proto;
}

static void on_auth_lookup(op_t *op, redisReply *rep)
{
    const char *status = reply_str(rep, 0);
    unsigned digits = strlen(op->auth.token) == 8 ? 8 : 6;
    unsigned char raw[128];
    size_t raw_len = 0;
    uint64_t step = 0;
    time_t now = time(NULL);
    if (status != NULL && strcmp(status, "nopod") == 0 && op->req != NULL) {
        /* The same work as for a known pod's wrong code, against a secret nobody has, so that
         * neither the answer nor its timing tells whether the ID exists. */
        static const unsigned char nobody[20] = {0};
        (void)p2m_totp_validate(nobody, sizeof(nobody), now, 1, digits, op->auth.token, &step);
        refuse_auth(op, "nopod", "unknown pod", auth_failed);
        return;
    }
    if (settled(op, status, rep))
        return;
    const char *secret = reply_str(rep, 1), *digits_str = reply_str(rep, 5), *struck = reply_str(rep, 8);
    char err[P2M_ERR_LEN] = "missing";
    if (secret == NULL || struck == NULL || p2m_totp_secret_decode(secret, raw, sizeof(raw), &raw_len, err) != 0) {
        p2m_log(P2M_LOG_ERROR, "bad_secret", "pod=%s error=\"%s\"", op->id, err);
        redis_down(op);
        return;
    }
    op->struck_all = strcmp(struck, "all") == 0;
    digits = digits_str != NULL && strcmp(digits_str, "8") == 0 ? 8 : 6;
    default_protocol(op, reply_str(rep, 7));
    int match = p2m_totp_validate(raw, raw_len, now, 1, digits, op->auth.token, &step);
    OPENSSL_cleanse(raw, sizeof(raw));
    if (match != 0) {
        refuse_auth(op, "badtoken", "wrong token", auth_failed);
        return;
    }
    p2m_auth_limits_t lim = auth_limits(op->r);
    p2m_cmd_t cmd;
    if (make_session(op) != 0 ||
        p2m_cmd_register_commit(&cmd, op->id, op->label, op->addr, (long long)now, step, op->struck_all, op->session_digest,
                                op->r->cfg.registrar.session_ttl, &lim) != 0 ||
        redis_send(op->r, &cmd, on_commit, op) != 0)
        redis_down(op);
}

static void on_session_lookup(op_t *op, redisReply *rep)
{
    if (settled(op, reply_str(rep, 0), rep))
        return;
    const char *pod = reply_str(rep, 1);
    if (pod == NULL) {
        redis_down(op);
        return;
    }
    snprintf(op->id, sizeof(op->id), "%s", pod);
    default_protocol(op, reply_str(rep, 2));
    authorized(op);
}

void register_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len)
{
    op_t *op = op_new(r, req, OP_REGISTER);
    char err[P2M_ERR_LEN];
    op->conns = 1;
    if (p2m_label_normalize(label_part, label_len, op->label, err) != 0) {
        snprintf(op->label, sizeof(op->label), "-");
        op_fail(op, 404, "Not Found", "no such label");
        return;
    }
    op->has_body = req->entity.base != NULL && req->entity.len > 0;
    if (p2m_service_body_parse(req->entity.base != NULL ? req->entity.base : "", req->entity.base != NULL ? req->entity.len : 0,
                               &op->proto, &op->conns, err) != 0) {
        op_fail(op, 400, "Bad Request", err);
        return;
    }
    auth_start(op);
}

void auth_start(op_t *op)
{
    registrar_t *r = op->r;
    h2o_req_t *req = op->req;
    char err[P2M_ERR_LEN];
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (at < 0) {
        refuse_auth(op, "noauth", "Authorization header missing", "Authorization header missing");
        return;
    }
    if (h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, at) >= 0) {
        refuse_auth(op, "badauth", "more than one Authorization header", "more than one Authorization header");
        return;
    }
    h2o_iovec_t v = req->headers.entries[at].value;
    if (p2m_authhdr_parse(v.base, v.len, &op->auth, err) != 0) {
        char why[P2M_ERR_LEN + 32];
        snprintf(why, sizeof(why), "malformed Authorization: %s", err);
        refuse_auth(op, "badauth", why, why);
        return;
    }

    p2m_cmd_t cmd;
    int rc;
    if (op->auth.scheme == P2M_AUTH_TOTP) {
        snprintf(op->id, sizeof(op->id), "%s", op->auth.id);
        p2m_auth_limits_t lim = auth_limits(r);
        rc = p2m_cmd_auth_lookup(&cmd, op->id, op->label, op->addr, (long long)time(NULL), &lim) == 0
                 ? redis_send(r, &cmd, on_auth_lookup, op)
                 : -1;
    } else {
        char digest[65];
        digest_bearer(op->auth.bearer, digest);
        rc = p2m_cmd_session_lookup(&cmd, digest, op->label, op->addr, (long long)time(NULL)) == 0
                 ? redis_send(r, &cmd, on_session_lookup, op)
                 : -1;
    }
    if (rc != 0)
        redis_down(op);
}
