/* Authenticating a pod for a registration or a certificate request (auth.h). */
#include "auth.h"
#include "redis_h2o.h"
#include "registrar.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/store_cmd.h"
#include "p2m/totp.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* An op handed back by redis_send: only the two kinds that embed auth_op_t come here. */
static auth_op_t *auth_of(op_t *op)
{
    assert(op->kind == OP_REGISTER || op->kind == OP_CERTIFICATE);
    return (auth_op_t *)op;
}

static p2m_auth_limits_t auth_limits(const registrar_t *r)
{
    return (p2m_auth_limits_t){.free = r->cfg.registrar.auth_fail_limit,
                               .window = r->cfg.registrar.auth_fail_window,
                               .backoff_max = r->cfg.registrar.auth_backoff_max};
}

const char *auth_scheme(const auth_op_t *op)
{
    return op->auth.scheme == P2M_AUTH_BEARER ? "bearer" : op->auth.scheme == P2M_AUTH_TOTP ? "totp" : "-";
}

/* What a wrong code and an unknown pod ID both answer, byte for byte (no enumeration of IDs). */
static const char auth_failed[] = "authentication failed";

/* 401 with WWW-Authenticate: TOTP. `why` goes to the log and the fail:COUNTER statistic, `answer`
 * to the client. The limiters were counted before the code was checked (auth_lookup), so a
 * refusal costs no further Redis round trip than the statistic. */
static void refuse_auth(auth_op_t *op, const char *counter, const char *why, const char *answer)
{
    p2m_store_cmd_t cmd;
    char name[64];
    snprintf(name, sizeof(name), "fail:%s", counter);
    if (p2m_store_cmd_stat(&cmd, name) == 0)
        redis_send_nowait(op->super.r, &cmd);
    op->log_result(op, 401, why);
    op_header(&op->super, "WWW-Authenticate", "TOTP");
    op_respond(&op->super, 401, "Unauthorized", answer);
}

void auth_fail(auth_op_t *op, int status, const char *reason, const char *why)
{
    p2m_store_cmd_t cmd;
    char counter[64];
    snprintf(counter, sizeof(counter), "fail:%d", status);
    if (p2m_store_cmd_stat(&cmd, counter) == 0)
        redis_send_nowait(op->super.r, &cmd);
    op->log_result(op, status, why);
    op_respond(&op->super, status, reason, why);
}

void auth_unavailable(auth_op_t *op)
{
    op_header(&op->super, "Retry-After", "5");
    auth_fail(op, 503, "Service Unavailable", "registry unavailable");
}

static void limited(auth_op_t *op, const char *retry_after)
{
    op_header(&op->super, "Retry-After", retry_after != NULL ? retry_after : "60");
    auth_fail(op, 429, "Too Many Requests", "too many failed attempts; try later");
}

/* A session credential: 32 random bytes, base64url. Redis keeps only its SHA-256. */
static int make_session(auth_op_t *op)
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

void auth_session_headers(auth_op_t *op)
{
    if (op->session[0] != '\0') {
        char ttl[16];
        snprintf(ttl, sizeof(ttl), "%u", op->super.r->cfg.registrar.session_ttl);
        op_header(&op->super, "P2M-Session", op->session);
        op_header(&op->super, "P2M-Session-Expires", ttl);
    }
}

/* Answers every outcome a lookup or commit script can report but "ok". Returns 1 when op has been
 * answered (and freed), 0 when the caller goes on. */
static int settled(auth_op_t *op, const char *status, const redisReply *rep)
{
    if (op->super.req == NULL) { /* the pod gave up */
        op_free(&op->super);
        return 1;
    }
    if (status != NULL && strcmp(status, "ok") == 0)
        return 0;
    if (status != NULL && strcmp(status, "reused") == 0) {
        op->reused = 1;
        return 0;
    }
    if (status == NULL)
        auth_unavailable(op);
    else if (strcmp(status, "limited") == 0)
        limited(op, redis_reply_str(rep, 1));
    else if (strcmp(status, "nopod") == 0) /* removed between lookup and commit */
        refuse_auth(op, "nopod", "unknown pod", auth_failed);
    else if (strcmp(status, "replay") == 0)
        refuse_auth(op, "replay", "token already used", "token already used");
    else if (strcmp(status, "badsession") == 0)
        refuse_auth(op, "badsession", "session expired or revoked", "session expired or revoked");
    else if (strcmp(status, "disabled") == 0)
        auth_fail(op, 403, "Forbidden", "pod disabled");
    else if (strcmp(status, "notowner") == 0)
        auth_fail(op, 403, "Forbidden", "label not owned by this pod");
    else
        auth_unavailable(op);
    return 1;
}

static void on_commit(op_t *base, redisReply *rep)
{
    auth_op_t *op = auth_of(base);
    int is_text = rep != NULL && (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING);
    if (!settled(op, is_text ? rep->str : NULL, rep))
        op->on_authorized(op);
}

/* The label's default protocol (admin `label add --protocol`), as a lookup script reports it. */
static void label_protocol(auth_op_t *op, const char *name)
{
    p2m_proto_t proto;
    if (name != NULL && name[0] != '\0' && p2m_proto_parse(name, strlen(name), &proto, NULL) == 0) {
        op->label_proto = proto;
        op->has_label_proto = 1;
    }
}

static void on_auth_lookup(op_t *base, redisReply *rep)
{
    auth_op_t *op = auth_of(base);
    const char *status = redis_reply_str(rep, 0);
    unsigned digits = strlen(op->auth.token) == 8 ? 8 : 6;
    unsigned char raw[128];
    size_t raw_len = 0;
    uint64_t step = 0;
    time_t now = time(NULL);
    if (status != NULL && strcmp(status, "nopod") == 0 && op->super.req != NULL) {
        /* The same work as for a known pod's wrong code, against a secret nobody has, so that
         * neither the answer nor its timing tells whether the ID exists. */
        static const unsigned char nobody[20] = {0};
        (void)p2m_totp_validate(nobody, sizeof(nobody), now, 1, digits, op->auth.token, &step);
        refuse_auth(op, "nopod", "unknown pod", auth_failed);
        return;
    }
    if (settled(op, status, rep))
        return;
    const char *secret = redis_reply_str(rep, 1), *digits_str = redis_reply_str(rep, 5), *struck = redis_reply_str(rep, 8);
    char err[P2M_ERR_LEN] = "missing";
    if (secret == NULL || struck == NULL || p2m_totp_secret_decode(secret, raw, sizeof(raw), &raw_len, err) != 0) {
        p2m_log(P2M_LOG_ERROR, "bad_secret", "pod=%s error=\"%s\"", op->id, err);
        auth_unavailable(op);
        return;
    }
    op->struck_all = strcmp(struck, "all") == 0;
    digits = digits_str != NULL && strcmp(digits_str, "8") == 0 ? 8 : 6;
    label_protocol(op, redis_reply_str(rep, 7));
    int match = p2m_totp_validate(raw, raw_len, now, 1, digits, op->auth.token, &step);
    OPENSSL_cleanse(raw, sizeof(raw));
    if (match != 0) {
        refuse_auth(op, "badtoken", "wrong token", auth_failed);
        return;
    }
    registrar_t *r = op->super.r;
    p2m_auth_limits_t lim = auth_limits(r);
    p2m_store_cmd_t cmd;
    if (make_session(op) != 0 ||
        p2m_store_cmd_register_commit(&cmd, op->id, op->label, op->super.addr, (long long)now, step, op->struck_all,
                                      op->session_digest, r->cfg.registrar.session_ttl, &lim) != 0 ||
        redis_send(r, &cmd, on_commit, &op->super) != 0)
        auth_unavailable(op);
}

static void on_session_lookup(op_t *base, redisReply *rep)
{
    auth_op_t *op = auth_of(base);
    if (settled(op, redis_reply_str(rep, 0), rep))
        return;
    const char *pod = redis_reply_str(rep, 1);
    if (pod == NULL) {
        auth_unavailable(op);
        return;
    }
    snprintf(op->id, sizeof(op->id), "%s", pod);
    label_protocol(op, redis_reply_str(rep, 2));
    op->on_authorized(op);
}

void auth_start(auth_op_t *op)
{
    registrar_t *r = op->super.r;
    h2o_req_t *req = op->super.req;
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

    p2m_store_cmd_t cmd;
    int rc;
    if (op->auth.scheme == P2M_AUTH_TOTP) {
        snprintf(op->id, sizeof(op->id), "%s", op->auth.id);
        p2m_auth_limits_t lim = auth_limits(r);
        rc = p2m_store_cmd_auth_lookup(&cmd, op->id, op->label, op->super.addr, (long long)time(NULL), &lim) == 0
                 ? redis_send(r, &cmd, on_auth_lookup, &op->super)
                 : -1;
    } else {
        char digest[65];
        digest_bearer(op->auth.bearer, digest);
        rc = p2m_store_cmd_session_lookup(&cmd, digest, op->label, op->super.addr, (long long)time(NULL)) == 0
                 ? redis_send(r, &cmd, on_session_lookup, &op->super)
                 : -1;
    }
    if (rc != 0)
        auth_unavailable(op);
}
