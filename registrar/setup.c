/* POST /setup: self-service setup with a token (PROTOCOL 1.6).
 *
 *   body and Authorization checked here -> setup script (store_cmd.c) -> 200 provisioning JSON
 *
 * The script checks the token, spends one use and creates the pod at once. The label is chosen
 * here before it runs; when the script answers that the token has another label prefix, or that a
 * generated label or the pod ID is taken, the label is chosen again and the script sent again, up
 * to SETUP_TRIES times in all. */
#include "setup.h"
#include "op.h"
#include "redis_h2o.h"
#include "registrar.h"
#include "req.h"
#include "p2m/authhdr.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "p2m/setup.h"
#include "p2m/store_cmd.h"
#include "p2m/token.h"
#include "p2m/totp.h"

#include <assert.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Scripts sent for one request: one may learn the token's prefix, the others draw new labels. */
#define SETUP_TRIES 8
/* The pod ID: "setup-" and 12 random hex digits. */
#define SETUP_ID_RAND 6
/* The provisioning JSON: an otpauth URI, one label and at most P2M_SETUP_PROTOS_MAX services. */
#define SETUP_JSON_MAX 8192

typedef struct {
    op_t super;
    p2m_setup_req_t body;
    char hash[P2M_TOKEN_HASH_LEN + 1];
    char prefix[P2M_TOKEN_LABEL_PREFIX_MAX + 1]; /* the token's label prefix as last learnt ("" at first) */
    char label[P2M_LABEL_MAX + 1];               /* "-" until chosen */
    char id[P2M_ID_MAX + 1];                     /* "-" until drawn */
    char secret[P2M_TOTP_SECRET_B32_LEN + 1];    /* wiped with the op */
    unsigned tries;
} setup_op_t;

static void attempt(setup_op_t *op);

static setup_op_t *setup_of(op_t *op)
{
    assert(op->kind == OP_SETUP);
    return (setup_op_t *)op;
}

static void log_result(const setup_op_t *op, int status, const char *why)
{
    p2m_log(status == 200 ? P2M_LOG_INFO : P2M_LOG_WARN, "setup", "status=%d label=%s pod=%s addr=%s reason=\"%s\"%s", status,
            op->label, status == 200 ? op->id : "-", op->super.addr, why, op_via(&op->super));
}

/* Answers with an error: counted (fail:STATUS), logged, freed. why is the body and the reason. */
static void fail(setup_op_t *op, int status, const char *reason, const char *why)
{
    p2m_store_cmd_t cmd;
    char counter[64];
    snprintf(counter, sizeof(counter), "fail:%d", status);
    if (p2m_store_cmd_stat(&cmd, counter) == 0)
        redis_send_nowait(op->super.r, &cmd);
    log_result(op, status, why);
    if (status == 401)
        op_header(&op->super, "WWW-Authenticate", "Bearer realm=\"setup\"");
    op_respond(&op->super, status, reason, why);
}

static void unavailable(setup_op_t *op)
{
    op_header(&op->super, "Retry-After", "5");
    fail(op, 503, "Service Unavailable", "registry unavailable");
}

/* Appends s to out as a JSON string (quotes and escapes). Returns the new length, or cap on overflow. */
static size_t json_str(char *out, size_t n, size_t cap, const char *s)
{
    if (n >= cap)
        return cap;
    out[n++] = '"';
    for (; *s != '\0' && n < cap; s++) {
        unsigned char c = (unsigned char)*s;
        int w;
        if (c == '"' || c == '\\')
            w = snprintf(out + n, cap - n, "\\%c", c);
        else if (c < 0x20)
            w = snprintf(out + n, cap - n, "\\u%04x", c);
        else
            w = snprintf(out + n, cap - n, "%c", c);
        if (w < 0 || (size_t)w >= cap - n)
            return cap;
        n += (size_t)w;
    }
    if (n + 1 >= cap)
        return cap;
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

static size_t json_raw(char *out, size_t n, size_t cap, const char *s)
{
    if (n >= cap)
        return cap;
    int w = snprintf(out + n, cap - n, "%s", s);
    return w < 0 || (size_t)w >= cap - n ? cap : n + (size_t)w;
}

/* The URL consumers open for an https or http service of label (PROTOCOL 2.1): LABEL.DOMAIN on the
 * port of registrar.url for https, of the plain-HTTP listener for http, each left out when it is
 * the scheme's default. "" for tcp (GET /tcp/LABEL tells its port) and for http without a listener. */
static void service_url(const p2m_config_t *cfg, const char *label, p2m_proto_t proto, char *out, size_t cap)
{
    unsigned port = 0;
    out[0] = '\0';
    if (proto == P2M_PROTO_HTTPS) {
        /* registrar.url is https://HOST[:PORT][/PREFIX], HOST possibly a bracketed IPv6 address. */
        const char *p = cfg->registrar.url + strlen("https://");
        if (*p == '[')
            p += strcspn(p, "]");
        p += strcspn(p, ":/");
        port = *p == ':' ? (unsigned)strtoul(p + 1, NULL, 10) : 443;
        if (port == 443)
            snprintf(out, cap, "https://%s.%s/", label, cfg->domain);
        else
            snprintf(out, cap, "https://%s.%s:%u/", label, cfg->domain, port);
    } else if (proto == P2M_PROTO_HTTP && cfg->registrar.http_enabled) {
        port = cfg->registrar.http.port;
        if (port == 80)
            snprintf(out, cap, "http://%s.%s/", label, cfg->domain);
        else
            snprintf(out, cap, "http://%s.%s:%u/", label, cfg->domain, port);
    }
}

/* The provisioning JSON as `pipe2me-admin pod add -o` writes it (keys in its order, indented by
 * two), with "services": one {"label", "protocol", "url"} per protocol asked for (see service_url()). Returns its length, or
 * 0 when it does not fit in cap. */
static size_t provisioning(const setup_op_t *op, char *out, size_t cap)
{
    const p2m_config_t *cfg = &op->super.r->cfg;
    char uri[1024], digits[8], url[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 32];
    size_t n = 0;
    if (p2m_totp_uri("pipe2me", op->id, op->secret, P2M_TOTP_DIGITS, uri, sizeof(uri)) < 0)
        return 0;
    snprintf(digits, sizeof(digits), "%u", (unsigned)P2M_TOTP_DIGITS);
    n = json_raw(out, n, cap, "{\n  \"id\": ");
    n = json_str(out, n, cap, op->id);
    n = json_raw(out, n, cap, ",\n  \"secret\": ");
    n = json_str(out, n, cap, op->secret);
    n = json_raw(out, n, cap, ",\n  \"digits\": ");
    n = json_raw(out, n, cap, digits);
    n = json_raw(out, n, cap, ",\n  \"labels\": [\n    ");
    n = json_str(out, n, cap, op->label);
    n = json_raw(out, n, cap, "\n  ],\n  \"registrar\": ");
    n = json_str(out, n, cap, cfg->registrar.url);
    n = json_raw(out, n, cap, ",\n  \"domain\": ");
    n = json_str(out, n, cap, cfg->domain);
    n = json_raw(out, n, cap, ",\n  \"otpauth\": ");
    n = json_str(out, n, cap, uri);
    n = json_raw(out, n, cap, ",\n  \"services\": [");
    for (size_t i = 0; i < op->body.nprotos; i++) {
        n = json_raw(out, n, cap, i == 0 ? "\n    {\n      \"label\": " : ",\n    {\n      \"label\": ");
        n = json_str(out, n, cap, op->label);
        n = json_raw(out, n, cap, ",\n      \"protocol\": ");
        n = json_str(out, n, cap, p2m_proto_name(op->body.protos[i]));
        service_url(cfg, op->label, op->body.protos[i], url, sizeof(url));
        if (url[0] != '\0') {
            n = json_raw(out, n, cap, ",\n      \"url\": ");
            n = json_str(out, n, cap, url);
        }
        n = json_raw(out, n, cap, "\n    }");
    }
    n = json_raw(out, n, cap, "\n  ]\n}\n");
    OPENSSL_cleanse(uri, sizeof(uri));
    return n >= cap ? 0 : n;
}

static void respond_ok(setup_op_t *op, const char *uses_left)
{
    char *body = malloc(SETUP_JSON_MAX);
    size_t len = body != NULL ? provisioning(op, body, SETUP_JSON_MAX) : 0;
    char why[64];
    if (len == 0) {
        /* The pod exists and the use is spent, but its secret cannot be told: an operator runs
         * pod rotate-secret. Never expected: every field is bounded well below SETUP_JSON_MAX. */
        p2m_log(P2M_LOG_ERROR, "setup_json", "pod=%s label=%s", op->id, op->label);
        free(body);
        fail(op, 500, "Internal Server Error", "cannot format the provisioning JSON");
        return;
    }
    p2m_store_cmd_t cmd;
    if (p2m_store_cmd_stat(&cmd, "setups") == 0)
        redis_send_nowait(op->super.r, &cmd);
    snprintf(why, sizeof(why), "ok uses_left=%.16s", uses_left != NULL ? uses_left : "?");
    log_result(op, 200, why);
    if (op->super.req != NULL) {
        h2o_req_t *req = op->super.req;
        req->res.status = 200;
        req->res.reason = "OK";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
        req_send_body(req, body, len); /* h2o_send_inline copies it */
    }
    OPENSSL_cleanse(body, SETUP_JSON_MAX);
    free(body);
    op_free(&op->super);
}

/* Chooses the label for the token's prefix as last learnt: the wanted one (403 when the prefix
 * does not allow it) or a generated one. Returns 0, or -1 when op has been answered. */
static int choose_label(setup_op_t *op)
{
    char err[P2M_ERR_LEN];
    if (op->body.label[0] != '\0') {
        if (p2m_setup_label_allowed(op->body.label, op->prefix, err) != 0) {
            char why[P2M_ERR_LEN + 32];
            snprintf(why, sizeof(why), "label not allowed: %s", err);
            fail(op, 403, "Forbidden", why);
            return -1;
        }
        snprintf(op->label, sizeof(op->label), "%s", op->body.label);
        return 0;
    }
    if (p2m_setup_label_generate(op->prefix, op->label, sizeof(op->label)) != 0) {
        snprintf(op->label, sizeof(op->label), "-");
        fail(op, 500, "Internal Server Error", "cannot generate a label");
        return -1;
    }
    return 0;
}

static void on_setup(op_t *base, redisReply *rep)
{
    setup_op_t *op = setup_of(base);
    const char *status = redis_reply_str(rep, 0), *arg = redis_reply_str(rep, 1);
    char why[96];
    if (status != NULL && strcmp(status, "ok") == 0) {
        respond_ok(op, arg); /* the pod exists: answer even when the client has gone, for the log */
        return;
    }
    if (base->req == NULL) { /* the client gave up; nothing was made */
        op_free(base);
        return;
    }
    if (status == NULL) {
        unavailable(op);
    } else if (strcmp(status, "limited") == 0) {
        op_header(base, "Retry-After", arg != NULL ? arg : "60");
        fail(op, 429, "Too Many Requests", "too many failed attempts; try later");
    } else if (strcmp(status, "unknown") == 0 || strcmp(status, "expired") == 0 || strcmp(status, "spent") == 0) {
        /* One answer for all three: a guesser learns nothing about which tokens exist. */
        snprintf(why, sizeof(why), "setup token unknown, expired or spent");
        log_result(op, 401, status);
        p2m_store_cmd_t cmd;
        if (p2m_store_cmd_stat(&cmd, "fail:401") == 0)
            redis_send_nowait(base->r, &cmd);
        op_header(base, "WWW-Authenticate", "Bearer realm=\"setup\"");
        op_respond(base, 401, "Unauthorized", why);
    } else if (strcmp(status, "tunnels") == 0) {
        snprintf(why, sizeof(why), "token allows %.8s services, asked for %zu", arg != NULL ? arg : "?", op->body.nprotos);
        fail(op, 403, "Forbidden", why);
    } else if (strcmp(status, "taken") == 0) {
        fail(op, 409, "Conflict", "label taken");
    } else if ((strcmp(status, "prefix") == 0 || strcmp(status, "collision") == 0) && ++op->tries < SETUP_TRIES) {
        if (strcmp(status, "prefix") == 0)
            snprintf(op->prefix, sizeof(op->prefix), "%s", arg != NULL ? arg : "");
        if (choose_label(op) == 0)
            attempt(op);
    } else if (strcmp(status, "prefix") == 0 || strcmp(status, "collision") == 0) {
        op_header(base, "Retry-After", "5");
        fail(op, 503, "Service Unavailable", "no free label; try again or ask for one");
    } else {
        unavailable(op);
    }
}

/* Draws a pod ID and a TOTP secret and sends the script. */
static void attempt(setup_op_t *op)
{
    registrar_t *r = op->super.r;
    unsigned char rnd[SETUP_ID_RAND];
    char err[P2M_ERR_LEN];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1 || p2m_totp_secret_new(op->secret, err) != 0) {
        fail(op, 500, "Internal Server Error", "random generator failed");
        return;
    }
    int n = snprintf(op->id, sizeof(op->id), "setup-");
    for (size_t i = 0; i < sizeof(rnd); i++)
        n += snprintf(op->id + n, sizeof(op->id) - (size_t)n, "%02x", rnd[i]);
    p2m_auth_limits_t lim = {.free = r->cfg.registrar.auth_fail_limit,
                             .window = r->cfg.registrar.auth_fail_window,
                             .backoff_max = r->cfg.registrar.auth_backoff_max};
    p2m_setup_cmd_t s = {.hash = op->hash,
                         .prefix = op->prefix,
                         .label = op->label,
                         .wanted = op->body.label[0] != '\0',
                         .id = op->id,
                         .secret = op->secret,
                         .digits = P2M_TOTP_DIGITS,
                         .nprotos = op->body.nprotos,
                         .addr = op->super.addr,
                         .now = (long long)time(NULL)};
    p2m_store_cmd_t cmd;
    if (p2m_store_cmd_setup(&cmd, &s, &lim) != 0 || redis_send(r, &cmd, on_setup, &op->super) != 0)
        unavailable(op);
}

void setup_handle(registrar_t *r, h2o_req_t *req)
{
    setup_op_t *op = (setup_op_t *)op_new(r, req, OP_SETUP, sizeof(*op));
    char err[P2M_ERR_LEN];
    p2m_auth_t auth;
    snprintf(op->label, sizeof(op->label), "-");
    snprintf(op->id, sizeof(op->id), "-");
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (at < 0) {
        fail(op, 401, "Unauthorized", "Authorization header missing");
        return;
    }
    if (h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, at) >= 0) {
        fail(op, 401, "Unauthorized", "more than one Authorization header");
        return;
    }
    h2o_iovec_t v = req->headers.entries[at].value;
    if (p2m_authhdr_parse(v.base, v.len, &auth, err) != 0 || auth.scheme != P2M_AUTH_BEARER) {
        OPENSSL_cleanse(&auth, sizeof(auth));
        fail(op, 401, "Unauthorized", "expected Authorization: Bearer with a setup token");
        return;
    }
    int hashed = p2m_token_hash(auth.bearer, strlen(auth.bearer), op->hash, err);
    OPENSSL_cleanse(&auth, sizeof(auth));
    if (hashed != 0) {
        unavailable(op);
        return;
    }
    if (p2m_setup_body_parse(req->entity.base != NULL ? req->entity.base : "", req->entity.base != NULL ? req->entity.len : 0,
                             &op->body, err) != 0) {
        fail(op, 400, "Bad Request", err);
        return;
    }
    if (choose_label(op) == 0)
        attempt(op);
}
