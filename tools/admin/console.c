/* pipe2me-admin serve: the admin web console (issue 21) on libh2o.
 *
 * One process, one event loop, one operator. The token comes from a file of mode 0600 or 0400,
 * read once. POST /login with it opens a session: a random cookie kept in memory with an idle
 * and an absolute expiry, and a CSRF token of its own that every state-changing POST must carry.
 * The listings (GET /api/pods, /api/labels, /api/relays) are the CLI's --json, built by the same
 * functions (pod_list, label_list, relay_list). Redis is asked synchronously, on the loop: a
 * console serves one person, and admin_connect's timeout bounds a request. */
#include "admin.h"
#include "login_limit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <h2o.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "p2m/addr.h"
#include "p2m/log.h"
#include "p2m/webform.h"

#define CONSOLE_LISTEN_DEFAULT "127.0.0.1:8893"
#define CONSOLE_COOKIE "p2m_console"
#define CONSOLE_TOKEN_MAX 1024            /* bytes of the token file (one line) */
#define CONSOLE_SECRET_BYTES 32           /* random bytes in a session ID and a CSRF token */
#define CONSOLE_SECRET_LEN 43             /* their base64url length */
#define CONSOLE_SESSIONS_MAX 16           /* open sessions; the least recently used goes first */
#define CONSOLE_IDLE_DEFAULT_S (30 * 60)  /* --idle's default */
#define CONSOLE_ABSOLUTE_S (12 * 60 * 60) /* a session ends this long after login, used or not */
#define CONSOLE_BODY_MAX P2M_FORM_BODY_MAX
#define CONSOLE_MAGIC 0x636f6e73u /* "cons" */
/* Wrong tokens before logins are refused (429): from one address in 10 min, then from all in 1 min,
 * so that a spread of addresses guesses no faster than 20 a minute. */
#define CONSOLE_LOGIN_FAILS_ADDR 5
#define CONSOLE_LOGIN_WINDOW_ADDR_S 600
#define CONSOLE_LOGIN_FAILS_ALL 20
#define CONSOLE_LOGIN_WINDOW_ALL_S 60

typedef struct {
    int in_use;
    char id[CONSOLE_SECRET_LEN + 1];
    char csrf[CONSOLE_SECRET_LEN + 1];
    uint64_t created_ms, used_ms; /* h2o_now */
} session_t;

typedef struct {
    uint32_t magic;
    admin_t *a;
    char token[CONSOLE_TOKEN_MAX + 1];
    int tls, loopback;
    uint16_t port;
    char self[2][P2M_HOST_MAX + 16]; /* the authorities a loopback console answers to: ADDR:PORT, localhost:PORT */
    uint64_t idle_ms;
    session_t sessions[CONSOLE_SESSIONS_MAX];
    login_limit_t logins;
    h2o_globalconf_t conf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept;
    SSL_CTX *ssl;
} console_t;

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* --- answering ------------------------------------------------------------------------------- */

/* The request path without its query (which a log never needs) as a log field (p2m_log_safe). */
static const char *log_path(h2o_req_t *req, char *out, size_t cap)
{
    return p2m_log_safe(req->path.base, req->query_at != SIZE_MAX ? req->query_at : req->path.len, "/._-", out, cap);
}

static const char *log_method(h2o_req_t *req)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (h2o_memis(req->method.base, req->method.len, known[i], strlen(known[i])))
            return known[i];
    return "other";
}

/* The security headers go on every answer, h2o's own errors too (413 for a body over
 * max_request_entity_size, 400, 404 for a path outside "/"): a filter on the host's path and on
 * its fallback path, which h2o_send_error_generic binds when no path was chosen yet. */
static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    static const struct {
        const char *name, *value;
    } headers[] = {
        {"content-security-policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"},
        {"x-content-type-options", "nosniff"},
        {"referrer-policy", "no-referrer"},
        {"cache-control", "no-store"},
        {"x-frame-options", "DENY"},
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
        h2o_set_header_by_str(&req->pool, &req->res.headers, headers[i].name, strlen(headers[i].name), 1, headers[i].value,
                              strlen(headers[i].value), 1);
    h2o_setup_next_ostream(req, slot);
    (void)self;
}

/* Every answer of ours goes out here: the body and the request's log line (the headers: on_setup_ostream). */
static void send_answer(h2o_req_t *req, int status, const char *reason, const char *ctype, const char *body, size_t len)
{
    struct timeval now;
    char path[128];

    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    gettimeofday(&now, NULL);
    long long ms = (long long)(now.tv_sec - req->timestamps.request_begin_at.tv_sec) * 1000 +
                   (now.tv_usec - req->timestamps.request_begin_at.tv_usec) / 1000;
    p2m_log(P2M_LOG_INFO, "console_request", "method=%s path=%s status=%d ms=%lld", log_method(req),
            log_path(req, path, sizeof(path)), status, ms < 0 ? 0 : ms);
    h2o_send_inline(req, body, len);
}

static void send_json(h2o_req_t *req, int status, const char *reason, json_t *v)
{
    char *s = v != NULL ? json_dumps(v, JSON_INDENT(2)) : NULL;
    if (s == NULL) {
        static const char oom[] = "{\"error\": \"cannot build the JSON reply\"}\n";
        send_answer(req, 500, "Internal Server Error", "application/json", oom, sizeof(oom) - 1);
        return;
    }
    h2o_iovec_t body = h2o_concat(&req->pool, h2o_iovec_init(s, strlen(s)), h2o_iovec_init(H2O_STRLIT("\n")));
    free(s);
    send_answer(req, status, reason, "application/json", body.base, body.len);
}

static void send_json_error(h2o_req_t *req, int status, const char *reason, const char *msg)
{
    json_t *v = json_pack("{s:s}", "error", msg);
    send_json(req, status, reason, v);
    json_decref(v);
}

static void send_html(h2o_req_t *req, int status, const char *reason, const char *html)
{
    send_answer(req, status, reason, "text/html; charset=utf-8", html, strlen(html));
}

static const char login_page[] = "<!DOCTYPE html>\n"
                                 "<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pipe2me console: log in</title>"
                                 "<link rel=\"stylesheet\" href=\"/static/console.css\"></head>\n"
                                 "<body><main><h1>pipe2me console</h1>\n"
                                 "<form method=\"post\" action=\"/login\">"
                                 "<label>Token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required "
                                 "autofocus></label> <button type=\"submit\">Log in</button></form>\n"
                                 "</main></body></html>\n";

/* tools/admin/console/console.js and console.css, compiled in (embed.cmake). */
extern const unsigned char console_asset_js[], console_asset_css[];
extern const size_t console_asset_js_len, console_asset_css_len;
/* tools/admin/console/chart.js: the pods' charts, which console.js draws with. */
extern const unsigned char console_asset_chart[];
extern const size_t console_asset_chart_len;

/* The console's page for a session: its CSRF token in the forms and a meta tag, which the
 * console's script reads (the cookie it may not). The token is base64url: nothing to escape. The
 * tables are filled by /static/console.js from the API, and refreshed every 5 s. */
static void send_home(h2o_req_t *req, const session_t *s)
{
    h2o_iovec_t csrf = h2o_iovec_init(s->csrf, strlen(s->csrf));
    h2o_iovec_t html = h2o_concat(
        &req->pool,
        h2o_iovec_init(H2O_STRLIT("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pipe2me console</title>"
                                  "<meta name=\"csrf\" content=\"")),
        csrf,
        h2o_iovec_init(H2O_STRLIT("\"><link rel=\"stylesheet\" href=\"/static/console.css\">"
                                  "<script src=\"/static/chart.js\" defer></script>"
                                  "<script src=\"/static/console.js\" defer></script></head>\n<body><main>"
                                  "<h1>pipe2me console</h1>\n<nav><form method=\"post\" action=\"/logout\">"
                                  "<input type=\"hidden\" name=\"csrf\" value=\"")),
        csrf,
        h2o_iovec_init(H2O_STRLIT("\"><button type=\"submit\">Log out</button></form> <span id=\"updated\"></span></nav>\n"
                                  "<h2>Pods</h2><table id=\"pods\"></table>\n"
                                  "<h3>Add a pod</h3><form method=\"post\" action=\"/pod/add\">"
                                  "<input type=\"hidden\" name=\"csrf\" value=\"")),
        csrf,
        h2o_iovec_init(H2O_STRLIT("\"><label>ID <input name=\"id\" required></label> "
                                  "<label>Labels <input name=\"labels\" placeholder=\"generated if empty\"></label> "
                                  "<button type=\"submit\">Add and download its provisioning file</button></form>"
                                  "<p>The file holds the pod's secret and is offered once: keep it.</p>\n"
                                  "<h2>Labels</h2><table id=\"labels\"></table>\n"
                                  "<h2>Relays</h2><table id=\"relays\"></table>\n</main></body></html>\n")));
    send_answer(req, 200, "OK", "text/html; charset=utf-8", html.base, html.len);
}

/* --- sessions ---------------------------------------------------------------------------------- */

static int random_secret(char *out)
{
    unsigned char raw[CONSOLE_SECRET_BYTES];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    int n = p2m_b64url_encode(raw, sizeof(raw), out, CONSOLE_SECRET_LEN + 1);
    OPENSSL_cleanse(raw, sizeof(raw));
    return n == CONSOLE_SECRET_LEN ? 0 : -1;
}

static int session_live(const console_t *c, const session_t *s, uint64_t now)
{
    return s->in_use && now - s->used_ms < c->idle_ms && now - s->created_ms < (uint64_t)CONSOLE_ABSOLUTE_S * 1000;
}

static void session_end(session_t *s)
{
    OPENSSL_cleanse(s, sizeof(*s));
}

/* A new session in a free slot, else in place of the least recently used. NULL when the random
 * source fails. */
static session_t *session_new(console_t *c)
{
    uint64_t now = h2o_now(c->ctx.loop);
    session_t *slot = NULL;
    for (size_t i = 0; i < CONSOLE_SESSIONS_MAX; i++) {
        session_t *s = &c->sessions[i];
        if (s->in_use && !session_live(c, s, now))
            session_end(s);
        if (!s->in_use) {
            if (slot == NULL || slot->in_use)
                slot = s;
        } else if (slot == NULL || (slot->in_use && s->used_ms < slot->used_ms)) {
            slot = s;
        }
    }
    if (slot->in_use)
        p2m_log(P2M_LOG_INFO, "console_session_evicted", "sessions=%d", CONSOLE_SESSIONS_MAX);
    session_end(slot);
    if (random_secret(slot->id) != 0 || random_secret(slot->csrf) != 0) {
        session_end(slot);
        return NULL;
    }
    slot->in_use = 1;
    slot->created_ms = slot->used_ms = now;
    return slot;
}

/* The live session the request's cookie names, or NULL (and *why says which way it failed: no
 * cookie, a malformed header, or a value that is no live session's). Touches it. */
static session_t *session_find(console_t *c, h2o_req_t *req, const char **why)
{
    char value[CONSOLE_SECRET_LEN + 1], err[P2M_ERR_LEN];
    int found = 0;
    session_t *hit = NULL;

    *why = "no_cookie";
    /* HTTP/2 may split cookies over several headers: the cookie must be in exactly one of them. */
    for (ssize_t at = -1; (at = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, at)) >= 0;) {
        h2o_iovec_t v = req->headers.entries[at].value;
        char one[CONSOLE_SECRET_LEN + 1];
        int rc = p2m_cookie_find(v.base, v.len, CONSOLE_COOKIE, one, sizeof(one), err);
        if (rc < 0 || (rc == 1 && found)) {
            *why = "bad_cookie";
            return NULL;
        }
        if (rc == 1) {
            found = 1;
            memcpy(value, one, sizeof(value));
        }
    }
    if (!found)
        return NULL;
    *why = "unknown_session";
    if (strlen(value) != CONSOLE_SECRET_LEN)
        return NULL;
    uint64_t now = h2o_now(c->ctx.loop);
    for (size_t i = 0; i < CONSOLE_SESSIONS_MAX; i++) {
        session_t *s = &c->sessions[i];
        /* every slot is compared, in constant time, so that the time says nothing of the IDs */
        if (s->in_use && CRYPTO_memcmp(s->id, value, CONSOLE_SECRET_LEN) == 0)
            hit = s;
    }
    OPENSSL_cleanse(value, sizeof(value));
    if (hit != NULL && !session_live(c, hit, now)) {
        session_end(hit);
        *why = "expired";
        return NULL;
    }
    if (hit != NULL)
        hit->used_ms = now;
    return hit;
}

static void set_cookie(console_t *c, h2o_req_t *req, const char *value, int clear)
{
    h2o_iovec_t v = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT(CONSOLE_COOKIE "=")), h2o_iovec_init(value, strlen(value)),
                               h2o_iovec_init(H2O_STRLIT("; Path=/; HttpOnly; SameSite=Strict")),
                               c->tls ? h2o_iovec_init(H2O_STRLIT("; Secure")) : h2o_iovec_init("", 0),
                               clear ? h2o_iovec_init(H2O_STRLIT("; Max-Age=0")) : h2o_iovec_init("", 0));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, v.base, v.len);
}

/* --- checks ------------------------------------------------------------------------------------ */

static h2o_iovec_t header(h2o_req_t *req, const char *name)
{
    ssize_t at = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return at >= 0 ? req->headers.entries[at].value : h2o_iovec_init(NULL, 0);
}

/* A loopback console answers only to its own names: a page whose name was rebound to 127.0.0.1
 * (DNS rebinding) sends its own Host. */
static int host_ok(console_t *c, h2o_req_t *req)
{
    if (!c->loopback)
        return 1;
    for (size_t i = 0; i < 2; i++)
        if (h2o_lcstris(req->authority.base, req->authority.len, c->self[i], strlen(c->self[i])))
            return 1;
    return 0;
}

/* For a POST: the browser says it comes from a page of the console's own origin (the scheme and
 * the Host it asked, which host_ok has checked on loopback), or says nothing (curl). Any other
 * Origin, and Sec-Fetch-Site cross-site or same-site (another port of the same host is same-site,
 * and SameSite=Strict cookies go there), is refused. Origin "null" is what a browser sends for the
 * console's own forms under Referrer-Policy no-referrer (Fetch, "serializing a request origin"):
 * it passes only beside Sec-Fetch-Site same-origin, which no page can set. */
static int origin_ok(console_t *c, h2o_req_t *req, const char **why)
{
    h2o_iovec_t sfs = header(req, "sec-fetch-site");
    if (sfs.base != NULL &&
        (h2o_lcstris(sfs.base, sfs.len, H2O_STRLIT("cross-site")) || h2o_lcstris(sfs.base, sfs.len, H2O_STRLIT("same-site")))) {
        *why = "sec_fetch_site";
        return 0;
    }
    h2o_iovec_t origin = header(req, "origin");
    if (origin.base == NULL)
        return 1;
    if (h2o_memis(origin.base, origin.len, H2O_STRLIT("null")) && sfs.base != NULL &&
        h2o_lcstris(sfs.base, sfs.len, H2O_STRLIT("same-origin")))
        return 1;
    h2o_iovec_t own =
        h2o_concat(&req->pool, c->tls ? h2o_iovec_init(H2O_STRLIT("https://")) : h2o_iovec_init(H2O_STRLIT("http://")),
                   req->authority, h2o_iovec_init("", 1));
    const char *allowed[1] = {own.base};
    if (p2m_origin_allowed(origin.base, origin.len, allowed, 1))
        return 1;
    *why = "origin";
    return 0;
}

/* The body as a form: a POST must say application/x-www-form-urlencoded. Returns 0, or -1 having
 * answered. */
static int read_form(h2o_req_t *req, p2m_form_t *form, int api)
{
    char err[P2M_ERR_LEN];
    h2o_iovec_t ct = header(req, "content-type");
    static const char want[] = "application/x-www-form-urlencoded";
    memset(form, 0, sizeof(*form));
    if (ct.base == NULL || ct.len < sizeof(want) - 1 || strncasecmp(ct.base, want, sizeof(want) - 1) != 0 ||
        (ct.len > sizeof(want) - 1 && ct.base[sizeof(want) - 1] != ';')) {
        if (api)
            send_json_error(req, 415, "Unsupported Media Type", "expected application/x-www-form-urlencoded");
        else
            send_html(req, 415, "Unsupported Media Type", "<!DOCTYPE html><p>expected a form</p>\n");
        return -1;
    }
    if (p2m_form_parse(req->entity.base, req->entity.len, form, err) != 0) {
        send_json_error(req, 400, "Bad Request", err);
        return -1;
    }
    return 0;
}

/* --- requests ---------------------------------------------------------------------------------- */

static void on_login(console_t *c, h2o_req_t *req)
{
    char addr[64] = "unknown", err[P2M_ERR_LEN];
    struct sockaddr_storage ss;
    p2m_form_t form;
    const char *token, *reason = NULL;

    if (req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) != 0) {
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof(addr));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof(addr));
    }
    const char *scope;
    unsigned wait = login_limit_check(&c->logins, addr, h2o_now(c->ctx.loop), &scope);
    if (wait > 0) {
        /* refused before the token is looked at: the right one waits too */
        char retry[16];
        snprintf(retry, sizeof(retry), "%u", wait);
        p2m_log(P2M_LOG_WARN, "console_refused", "status=429 reason=rate scope=%s addr=%s retry_s=%u", scope, addr, wait);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, retry, strlen(retry));
        send_html(req, 429, "Too Many Requests", "<!DOCTYPE html><p>too many wrong tokens: try again later</p>\n");
        return;
    }
    if (read_form(req, &form, 0) != 0) {
        p2m_log(P2M_LOG_WARN, "console_login", "result=fail reason=bad_form addr=%s", addr);
        return;
    }
    if (p2m_form_get(&form, "token", &token, err) != 0)
        reason = "no_token";
    else if (!p2m_secret_equal(token, c->token))
        reason = "bad_token";
    if (reason != NULL) {
        login_limit_fail(&c->logins, addr, h2o_now(c->ctx.loop));
        p2m_form_dispose(&form);
        p2m_log(P2M_LOG_WARN, "console_login", "result=fail reason=%s addr=%s", reason, addr);
        send_html(req, 401, "Unauthorized", login_page);
        return;
    }
    p2m_form_dispose(&form);
    session_t *s = session_new(c);
    if (s == NULL) {
        p2m_log(P2M_LOG_ERROR, "console_login", "result=fail reason=random addr=%s", addr);
        send_html(req, 500, "Internal Server Error", "<!DOCTYPE html><p>no random bytes</p>\n");
        return;
    }
    login_limit_ok(&c->logins, addr);
    p2m_log(P2M_LOG_INFO, "console_login", "result=ok addr=%s", addr);
    set_cookie(c, req, s->id, 0);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, H2O_STRLIT("/"));
    send_html(req, 303, "See Other", "<!DOCTYPE html><p><a href=\"/\">continue</a></p>\n");
}

/* A state-changing POST from a session: its form must carry the session's CSRF token. Returns
 * 0 with *form (p2m_form_dispose it), or -1 having answered. */
static int post_checked(h2o_req_t *req, session_t *s, p2m_form_t *form)
{
    const char *csrf;
    char err[P2M_ERR_LEN];
    if (read_form(req, form, 0) != 0)
        return -1;
    if (p2m_form_get(form, "csrf", &csrf, err) != 0 || !p2m_secret_equal(csrf, s->csrf)) {
        p2m_form_dispose(form);
        p2m_log(P2M_LOG_WARN, "console_refused", "status=403 reason=csrf");
        send_html(req, 403, "Forbidden", "<!DOCTYPE html><p>forbidden: the form lacks this session's CSRF token</p>\n");
        return -1;
    }
    return 0;
}

static void on_api_list(console_t *c, h2o_req_t *req, admin_list_fn list)
{
    char err[P2M_ERR_LEN] = "unknown error";
    json_t *arr = NULL;
    if (list(c->a, &arr, NULL, err) != 0) {
        p2m_log(P2M_LOG_WARN, "console_api_failed", "reason=redis");
        char *line = admin_escape_dup(err);
        send_json_error(req, 502, "Bad Gateway", line);
        free(line);
        return;
    }
    send_json(req, 200, "OK", arr);
    json_decref(arr);
}

/* GET /api/pods/ID/series: the pod's last hour (pod_series_fetch), 400 for a malformed ID, 404
 * for an unknown pod. Returns 1 having answered, 0 when path is another one. */
static int on_api_series(console_t *c, h2o_req_t *req, h2o_iovec_t path)
{
    static const char prefix[] = "/api/pods/", suffix[] = "/series";
    const size_t np = sizeof(prefix) - 1, ns = sizeof(suffix) - 1;
    if (path.len <= np + ns || memcmp(path.base, prefix, np) != 0 || memcmp(path.base + path.len - ns, suffix, ns) != 0)
        return 0;
    char id[P2M_ID_MAX + 2], err[P2M_ERR_LEN] = "unknown error";
    size_t len = path.len - np - ns;
    json_t *obj = NULL;
    int status;
    if (len >= sizeof(id)) /* longer than any ID: cut to one byte too long, which the parser refuses */
        len = sizeof(id) - 1;
    memcpy(id, path.base + np, len);
    id[len] = '\0';
    if (memchr(id, '\0', len) != NULL) /* a NUL in the path: no ID */
        id[0] = '\0';
    if (pod_series_fetch(c->a, id, &obj, &status, err) != 0) {
        if (status == 502)
            p2m_log(P2M_LOG_WARN, "console_api_failed", "reason=redis");
        char *line = admin_escape_dup(err);
        send_json_error(req, status, status == 400 ? "Bad Request" : status == 404 ? "Not Found" : "Bad Gateway", line);
        free(line);
        return 1;
    }
    send_json(req, 200, "OK", obj);
    json_decref(obj);
    return 1;
}

/* text with &, <, >, " and ' written as entities, from the request's pool. */
static const char *html_escape(h2o_req_t *req, const char *text)
{
    size_t n = 0, len = strlen(text);
    char *out = h2o_mem_alloc_pool(&req->pool, len * 6 + 1);
    for (size_t i = 0; i < len; i++) {
        const char *ent = text[i] == '&'    ? "&amp;"
                          : text[i] == '<'  ? "&lt;"
                          : text[i] == '>'  ? "&gt;"
                          : text[i] == '"'  ? "&quot;"
                          : text[i] == '\'' ? "&#39;"
                                            : NULL;
        if (ent != NULL) {
            memcpy(out + n, ent, strlen(ent));
            n += strlen(ent);
        } else {
            out[n++] = text[i];
        }
    }
    out[n] = '\0';
    return out;
}

/* An action the CLI's handler refused: its reason (escaped: it may quote the form's input) with
 * a way back. */
static void send_action_error(h2o_req_t *req, int status, const char *reason, const char *err)
{
    char *line = admin_escape_dup(err);
    h2o_iovec_t html = h2o_concat(&req->pool,
                                  h2o_iovec_init(H2O_STRLIT("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                                                            "<title>pipe2me console: refused</title></head><body><p>")),
                                  h2o_iovec_init(html_escape(req, line), strlen(html_escape(req, line))),
                                  h2o_iovec_init(H2O_STRLIT("</p><p><a href=\"/\">back</a></p></body></html>\n")));
    free(line);
    send_answer(req, status, reason, "text/html; charset=utf-8", html.base, html.len);
}

/* A console action: the CLI command it runs and how the form fills that command's line. */
typedef struct {
    const char *path, *name;
    int (*run)(admin_t *, char *);
    const char *words[2]; /* the form fields that become the command's words, in order (NULL: fewer) */
    int download;         /* answers with the provisioning file the command drew (pod add, pod rotate-secret) */
    int confirm;          /* needs confirm= the first word typed again */
    int labels;           /* labels= fills --label (space- or comma-separated) */
    int protocol;         /* protocol= (optional) fills --protocol */
} action_t;

static const action_t actions[] = {
    {"/pod/add", "pod_add", pod_add, {"id", NULL}, 1, 0, 1, 0},
    {"/pod/disable", "pod_disable", pod_disable, {"id", NULL}, 0, 0, 0, 0},
    {"/pod/enable", "pod_enable", pod_enable, {"id", NULL}, 0, 0, 0, 0},
    {"/pod/rm", "pod_rm", pod_rm, {"id", NULL}, 0, 1, 0, 0},
    {"/pod/rotate", "pod_rotate", pod_rotate_secret, {"id", NULL}, 1, 1, 0, 0},
    {"/label/add", "label_add", label_add, {"id", "label"}, 0, 0, 0, 1},
    {"/label/rm", "label_rm", label_rm, {"label", NULL}, 0, 1, 0, 0},
    {"/label/share", "label_share", label_share, {"label", "id"}, 0, 0, 0, 0},
    {"/label/unshare", "label_unshare", label_unshare, {"label", "id"}, 0, 0, 0, 0},
};

/* A form field as a word of the command line: an ID or a label, checked as the CLI checks it so
 * that the log line may quote it (a label lower-cased, as the store keeps it). */
static int action_word(const p2m_form_t *form, const char *field, char *out, size_t cap, char *err)
{
    const char *v;
    if (p2m_form_get(form, field, &v, err) != 0)
        return -1;
    if (strcmp(field, "label") == 0)
        return admin_check_label(v, out, err);
    if (admin_check_id(v, err) != 0)
        return -1;
    size_t n = strlen(v);
    if (n >= cap) /* admin_check_id bounds it; this says so to the compiler */
        return p2m_err(err, "ID too long");
    memcpy(out, v, n + 1);
    return 0;
}

/* POST of an action (form, CSRF already checked): runs the CLI's handler over a copy of the
 * console's admin_t, so that the checks and the errors are the CLI's. pod add and pod rotate
 * answer with the provisioning file as a download: it is drawn for this answer and kept nowhere,
 * so it cannot be offered twice (sending the form again draws another secret). rm and rotate
 * need confirm= the ID (label rm: the label) typed again. */
static void on_action(console_t *c, h2o_req_t *req, const action_t *act, const p2m_form_t *form)
{
    char err[P2M_ERR_LEN] = "unknown error", *labels = NULL, *text = NULL, *args[2];
    char words[2][P2M_ID_MAX + P2M_LABEL_MAX + 2] = {"", ""};
    const char *v, *id = "-", *label = "-";
    size_t text_len = 0, nwords = 0;
    json_t *confirmed = NULL;
    admin_t x = *c->a;

    for (; nwords < 2 && act->words[nwords] != NULL; nwords++) {
        if (action_word(form, act->words[nwords], words[nwords], sizeof(words[nwords]), err) != 0) {
            p2m_log(P2M_LOG_INFO, "console_action", "action=%s result=fail reason=%s", act->name, act->words[nwords]);
            send_action_error(req, 400, "Bad Request", err);
            return;
        }
        if (strcmp(act->words[nwords], "id") == 0)
            id = words[nwords];
        else
            label = words[nwords];
        args[nwords] = words[nwords];
    }
    if (act->confirm && (p2m_form_get(form, "confirm", &v, err) != 0 || strcmp(v, words[0]) != 0)) {
        p2m_log(P2M_LOG_INFO, "console_action", "action=%s result=fail reason=confirm id=%s label=%s", act->name, id, label);
        send_action_error(req, 400, "Bad Request", "to go on, type the name again in the confirm field");
        return;
    }
    x.args = args;
    x.nargs = nwords;
    x.json = 1;
    x.nlabels = 0;
    x.have_proto = 0;
    x.capture = &confirmed;
    if (act->download) {
        x.capture_text = &text;
        x.capture_len = &text_len;
    }
    if (act->protocol && p2m_form_get(form, "protocol", &v, err) == 0 && v[0] != '\0') {
        if (p2m_proto_parse(v, strlen(v), &x.proto, err) != 0)
            goto Refused;
        x.have_proto = 1;
    }
    if (act->labels && p2m_form_get(form, "labels", &v, err) == 0) {
        labels = strdup(v);
        if (labels == NULL)
            abort();
        for (char *save = NULL, *t = strtok_r(labels, " ,\t\r\n", &save); t != NULL; t = strtok_r(NULL, " ,\t\r\n", &save)) {
            if (x.nlabels == ADMIN_LABELS_MAX) {
                snprintf(err, sizeof(err), "too many labels (at most %d)", ADMIN_LABELS_MAX);
                goto Refused;
            }
            x.labels[x.nlabels++] = t;
        }
    }
    if (act->run(&x, err) != 0)
        goto Refused;
    p2m_log(P2M_LOG_INFO, "console_action", "action=%s result=ok id=%s label=%s", act->name, id, label);
    if (act->download) {
        char disp[sizeof(words[0]) + 64];
        snprintf(disp, sizeof(disp), "attachment; filename=\"pipe2me-%s.json\"", id);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-disposition"), 1, NULL, disp, strlen(disp));
        /* h2o sends the body from its pool: copy, then wipe ours (it holds the pod's secret) */
        char *body = h2o_mem_alloc_pool(&req->pool, text_len + 1);
        memcpy(body, text, text_len);
        send_answer(req, 200, "OK", "application/json", body, text_len);
    } else {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, H2O_STRLIT("/"));
        send_html(req, 303, "See Other", "<!DOCTYPE html><p><a href=\"/\">continue</a></p>\n");
    }
    goto Exit;
Refused:
    p2m_log(P2M_LOG_INFO, "console_action", "action=%s result=fail reason=refused id=%s label=%s", act->name, id, label);
    send_action_error(req, 400, "Bad Request", err);
Exit:
    if (text != NULL) {
        OPENSSL_cleanse(text, text_len);
        free(text);
    }
    free(labels);
    json_decref(confirmed);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    console_t *c = *(console_t **)(self + 1);
    if (c->magic != CONSOLE_MAGIC)
        abort();
    h2o_iovec_t path = req->path_normalized;
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int is_api = path.len >= 5 && memcmp(path.base, "/api/", 5) == 0;
    const char *why = NULL;

    if (!host_ok(c, req)) {
        p2m_log(P2M_LOG_WARN, "console_refused", "status=421 reason=host");
        send_html(req, 421, "Misdirected Request", "<!DOCTYPE html><p>this console answers to its own address only</p>\n");
        return 0;
    }
    if (!is_get && !is_post) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD, POST"));
        send_html(req, 405, "Method Not Allowed", "<!DOCTYPE html><p>method not allowed</p>\n");
        return 0;
    }
    if (is_post && !origin_ok(c, req, &why)) {
        p2m_log(P2M_LOG_WARN, "console_refused", "status=403 reason=%s", why);
        send_html(req, 403, "Forbidden", "<!DOCTYPE html><p>forbidden: a request from another site</p>\n");
        return 0;
    }
    /* What needs no session: the login form, the style sheet and the script (no secret in either). */
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/static/console.css")) && is_get) {
        send_answer(req, 200, "OK", "text/css; charset=utf-8", (const char *)console_asset_css, console_asset_css_len);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/static/console.js")) && is_get) {
        send_answer(req, 200, "OK", "text/javascript; charset=utf-8", (const char *)console_asset_js, console_asset_js_len);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/static/chart.js")) && is_get) {
        send_answer(req, 200, "OK", "text/javascript; charset=utf-8", (const char *)console_asset_chart, console_asset_chart_len);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/login"))) {
        if (is_post)
            on_login(c, req);
        else
            send_html(req, 200, "OK", login_page);
        return 0;
    }
    session_t *s = session_find(c, req, &why);
    if (s == NULL) {
        /* A cookie that opens nothing is worth a line (a forgery, or a session that ended); no
         * cookie at all is every first visit. */
        if (strcmp(why, "no_cookie") != 0)
            p2m_log(P2M_LOG_INFO, "console_refused", "status=401 reason=%s", why);
        if (is_api)
            send_json_error(req, 401, "Unauthorized", "log in first: POST /login");
        else
            send_html(req, 401, "Unauthorized", login_page);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/logout"))) {
        p2m_form_t form;
        if (!is_post) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
            send_html(req, 405, "Method Not Allowed", "<!DOCTYPE html><p>use POST /logout</p>\n");
            return 0;
        }
        if (post_checked(req, s, &form) != 0)
            return 0;
        p2m_form_dispose(&form);
        session_end(s);
        p2m_log(P2M_LOG_INFO, "console_logout", "sessions_max=%d", CONSOLE_SESSIONS_MAX);
        set_cookie(c, req, "", 1);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, H2O_STRLIT("/"));
        send_html(req, 303, "See Other", "<!DOCTYPE html><p><a href=\"/\">continue</a></p>\n");
        return 0;
    }
    if (is_post) { /* an action: its CSRF check first, whatever the path */
        p2m_form_t form;
        if (post_checked(req, s, &form) != 0)
            return 0;
        size_t i = 0;
        while (i < sizeof(actions) / sizeof(actions[0]) &&
               !h2o_memis(path.base, path.len, actions[i].path, strlen(actions[i].path)))
            i++;
        if (i < sizeof(actions) / sizeof(actions[0]))
            on_action(c, req, &actions[i], &form);
        else
            send_html(req, 404, "Not Found", "<!DOCTYPE html><p>no such action</p>\n");
        p2m_form_dispose(&form);
        return 0;
    }
    static const struct {
        const char *path;
        admin_list_fn list;
    } lists[] = {{"/api/pods", pod_list}, {"/api/labels", label_list}, {"/api/relays", relay_list}};
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        if (h2o_memis(path.base, path.len, lists[i].path, strlen(lists[i].path))) {
            on_api_list(c, req, lists[i].list);
            return 0;
        }
    }
    if (is_get && on_api_series(c, req, path))
        return 0;
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/"))) {
        send_home(req, s);
        return 0;
    }
    if (is_api)
        send_json_error(req, 404, "Not Found", "no such API");
    else
        send_html(req, 404, "Not Found", "<!DOCTYPE html><p>not found</p>\n");
    return 0;
}

/* --- setup ------------------------------------------------------------------------------------- */

/* Reads the token: a regular file of mode 0600 or 0400 (nobody else may read it), one line of
 * printable bytes. The reason never quotes the file's content. */
static int token_load(const char *path, char *out, char *err)
{
    char q[ADMIN_QUOTE_LEN], buf[CONSOLE_TOKEN_MAX + 2];
    struct stat st;
    ssize_t n = 0;
    int ret = -1, fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

    if (fd < 0)
        return p2m_err(err, "serve: --token-file %s: %s", admin_quote(path, q), strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        p2m_err(err, "serve: --token-file %s: not a regular file", admin_quote(path, q));
        goto Exit;
    }
    if ((st.st_mode & 07777) != 0600 && (st.st_mode & 07777) != 0400) {
        p2m_err(err, "serve: --token-file %s: mode %04o, expected 0600 or 0400 (chmod 600 it)", admin_quote(path, q),
                (unsigned)(st.st_mode & 07777));
        goto Exit;
    }
    for (ssize_t r; (size_t)n < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - (size_t)n)) != 0; n += r) {
        if (r < 0) {
            p2m_err(err, "serve: --token-file %s: %s", admin_quote(path, q), strerror(errno));
            goto Exit;
        }
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if ((size_t)n > CONSOLE_TOKEN_MAX) {
        p2m_err(err, "serve: --token-file %s: longer than %d bytes", admin_quote(path, q), CONSOLE_TOKEN_MAX);
        goto Exit;
    }
    if (n < 16) {
        p2m_err(err, "serve: --token-file %s: the token is shorter than 16 bytes", admin_quote(path, q));
        goto Exit;
    }
    for (ssize_t i = 0; i < n; i++) {
        if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] == 0x7f) {
            p2m_err(err, "serve: --token-file %s: the token must be one line without spaces or control bytes",
                    admin_quote(path, q));
            goto Exit;
        }
    }
    memcpy(out, buf, (size_t)n);
    out[n] = '\0';
    ret = 0;
Exit:
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    return ret;
}

/* The listen address as a socket address; *loopback when it is 127.0.0.0/8 or ::1. */
static int listen_addr(const p2m_hostport_t *hp, struct sockaddr_storage *ss, socklen_t *len, int *loopback, char *err)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (hp->host[0] == '\0') {
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons(hp->port);
        *len = sizeof(*s6);
        *loopback = 0;
    } else if (inet_pton(AF_INET, hp->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(hp->port);
        *len = sizeof(*s4);
        *loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
    } else if (inet_pton(AF_INET6, hp->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(hp->port);
        *len = sizeof(*s6);
        *loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
    } else {
        return p2m_err(err, "serve: --listen: %s is not an IP address", hp->host);
    }
    return 0;
}

static SSL_CTX *tls_new(const char *cert, const char *key, char *err)
{
    char q[ADMIN_QUOTE_LEN];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        p2m_err(err, "serve: SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long e = ERR_get_error();
        p2m_err(err, "serve: --cert %s with --key: %s", admin_quote(cert, q), e != 0 ? ERR_reason_error_string(e) : "unusable");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL)
        h2o_accept(listener->data, sock);
}

int console_serve(admin_t *a, char *err)
{
    char q[ADMIN_QUOTE_LEN];
    const char *listen_s = a->listen != NULL ? a->listen : CONSOLE_LISTEN_DEFAULT;
    p2m_hostport_t hp;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    int fd = -1, ret = -1;
    /* Static: once the loop has run, h2o's connections may point at it until the process ends,
     * and the process ends soon after (as the registrar's does, without disposing the loop). */
    static console_t console;
    console_t *c = &console;
    static h2o_hostconf_t *hosts[2];

    memset(c, 0, sizeof(*c));
    c->magic = CONSOLE_MAGIC;
    c->a = a;
    /* Everything is checked before anything is bound, so that a refusal leaves nothing behind. */
    if (a->token_file == NULL) {
        p2m_err(err, "serve: --token-file FILE is required (a file of mode 0600 holding the console's token)");
        goto Exit;
    }
    if (p2m_hostport_parse(listen_s, &hp, err) != 0) {
        char e2[P2M_ERR_LEN];
        snprintf(e2, sizeof(e2), "%s", err);
        p2m_err(err, "serve: --listen %s: %s", admin_quote(listen_s, q), e2);
        goto Exit;
    }
    if (listen_addr(&hp, &ss, &sslen, &c->loopback, err) != 0)
        goto Exit;
    if ((a->cert != NULL) != (a->key != NULL)) {
        p2m_err(err, "serve: --cert and --key go together");
        goto Exit;
    }
    if (a->public_ && a->cert == NULL) {
        p2m_err(err, "serve: --public needs --cert FILE and --key FILE (the console is served over TLS only)");
        goto Exit;
    }
    if (!c->loopback && !a->public_) {
        p2m_err(err,
                "serve: --listen %s is not a loopback address: the console is loopback-only unless given --public with --cert "
                "and --key",
                admin_quote(listen_s, q));
        goto Exit;
    }
    if (token_load(a->token_file, c->token, err) != 0)
        goto Exit;
    if (a->cert != NULL && (c->ssl = tls_new(a->cert, a->key, err)) == NULL)
        goto Exit;
    c->tls = c->ssl != NULL;
    c->port = hp.port;
    c->idle_ms = (uint64_t)(a->idle > 0 ? a->idle : CONSOLE_IDLE_DEFAULT_S) * 1000;
    login_limit_init(&c->logins, CONSOLE_LOGIN_FAILS_ADDR, (uint64_t)CONSOLE_LOGIN_WINDOW_ADDR_S * 1000, CONSOLE_LOGIN_FAILS_ALL,
                     (uint64_t)CONSOLE_LOGIN_WINDOW_ALL_S * 1000);
    p2m_hostport_format(hp.host, hp.port, c->self[0], sizeof(c->self[0]));
    snprintf(c->self[1], sizeof(c->self[1]), "localhost:%u", (unsigned)hp.port);

    if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        p2m_err(err, "serve: socket: %s", strerror(errno));
        goto Exit;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, SOMAXCONN) != 0) {
        p2m_err(err, "serve: cannot listen on %s: %s", admin_quote(listen_s, q), strerror(errno));
        goto Exit;
    }

    p2m_log_set_level(a->cfg.log_level == P2M_LOG_DEBUG ? P2M_LOG_DEBUG : P2M_LOG_INFO);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    h2o_config_init(&c->conf);
    c->conf.max_request_entity_size = CONSOLE_BODY_MAX;
    c->conf.server_name = h2o_iovec_init(H2O_STRLIT("pipe2me-admin"));
    c->conf.http1.req_timeout = 10000;
    h2o_hostconf_t *host = h2o_config_register_host(&c->conf, h2o_iovec_init(H2O_STRLIT("console")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pathconf, sizeof(*h) + sizeof(console_t *));
    h->on_req = on_req;
    *(console_t **)(h + 1) = c;
    h2o_create_filter(pathconf, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_ostream;
    h2o_create_filter(&host->fallback_path, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_ostream;
    h2o_context_init(&c->ctx, h2o_evloop_create(), &c->conf);
    hosts[0] = host;
    c->accept = (h2o_accept_ctx_t){.ctx = &c->ctx, .hosts = hosts, .ssl_ctx = c->ssl};
    h2o_socket_t *sock = h2o_evloop_socket_create(c->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    fd = -1; /* the socket owns it */
    sock->data = &c->accept;
    h2o_socket_read_start(sock, on_accept);
    p2m_log(P2M_LOG_INFO, "console_listening", "addr=%s port=%u tls=%d public=%d idle_s=%llu", hp.host[0] ? hp.host : "*",
            (unsigned)hp.port, c->tls, a->public_, (unsigned long long)(c->idle_ms / 1000));
    while (!stopping)
        h2o_evloop_run(c->ctx.loop, 1000);
    p2m_log(P2M_LOG_INFO, "console_stopped", "signal=1");
    OPENSSL_cleanse(c->token, sizeof(c->token));
    OPENSSL_cleanse(c->sessions, sizeof(c->sessions));
    ret = 0;
Exit:
    if (fd >= 0)
        close(fd);
    if (ret != 0) {
        SSL_CTX_free(c->ssl);
        c->ssl = NULL;
    }
    return ret;
}
