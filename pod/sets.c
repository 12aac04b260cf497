/* Tunnel sets, as pipe2me kept them: `setup` redeems a setup token (POST /setup, PROTOCOL 1.6) for
 * a new pod and keeps it in DIR/LABEL.DOMAIN/, which `list`, `env LABEL.DOMAIN`, `run LABEL.DOMAIN`
 * and `test LABEL.DOMAIN` read:
 *
 *   DIR/LABEL.DOMAIN/pod.json          the run file, with the pod's provisioning inline (mode 0600)
 *   DIR/LABEL.DOMAIN/cacert.pem        GET /cacert: the CA of the registrar's and the pod's certificates
 *   DIR/LABEL.DOMAIN/registrar-ca.pem  a copy of setup's --cacert, which the pod trusts the registrar with
 *   DIR/LABEL.DOMAIN/state/            the running pod's state (run's state_dir)
 *
 * The answer to POST /setup holds the pod's only copy of its secret: it goes to a private file in
 * DIR before anything else is done with it, and that file is removed only once the set's run file is
 * written and loads; when anything fails on the way it stays, and the error names it. */
#include "pod.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/setup.h"

#define SETUP_ANSWER_MAX (64 * 1024) /* the registrar's provisioning JSON is under 8 KiB */
#define SETUP_CACERT_MAX (256 * 1024)
#define SETUP_TIMEOUT_S 60L
#define SETUP_CONNECT_TIMEOUT_S 15L
#define SETS_MAX 4096 /* sets list reads in one DIR */

/* snprintf that says whether it all fitted: 0, or -1 when out was cut short. */
__attribute__((format(printf, 3, 4))) static int fit(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int pod_sets_dir(char *out, size_t cap, char *err)
{
    if (geteuid() == 0) {
        snprintf(out, cap, "%s", POD_SETS_ROOT_DIR);
        return 0;
    }
    const char *home = getenv("HOME");
    if (home == NULL || home[0] != '/')
        return p2m_err(err, "HOME is not an absolute path: give --dir DIR");
    if (strlen(home) + sizeof("/.pipe2me/pods") > cap || strlen(home) + sizeof("/.pipe2me/pods") > 2048)
        return p2m_err(err, "HOME is too long: give --dir DIR");
    snprintf(out, cap, "%s/.pipe2me/pods", home);
    return 0;
}

/* --- the answer, into the set's run file ------------------------------------------------------- */

/* The answer's string at key, or NULL when it is missing or not a string without NUL bytes. */
static const char *answer_str(json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_string(v) || memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
        return NULL;
    return json_string_value(v);
}

/* The checks of the answer's services: as many as asked for, each of the pod's label, with the
 * protocol asked for in that place and nothing but "label", "protocol" and "url". Returns 0 or -1. */
static int answer_services(json_t *services, const pod_args_t *a, const char *label, char *err)
{
    char buf[64];
    if (!json_is_array(services) || json_array_size(services) != a->nprotos)
        return p2m_err(err, "the registrar's answer: \"services\": expected a list of the %zu services asked for", a->nprotos);
    for (size_t i = 0; i < a->nprotos; i++) {
        json_t *svc = json_array_get(services, i), *v;
        const char *key;
        if (!json_is_object(svc))
            return p2m_err(err, "the registrar's answer: services[%zu]: expected an object", i);
        json_object_foreach(svc, key, v)
        {
            if (strcmp(key, "label") != 0 && strcmp(key, "protocol") != 0 && strcmp(key, "url") != 0)
                return p2m_err(err, "the registrar's answer: services[%zu]: unknown key \"%s\"", i,
                               pod_shown(key, buf, sizeof(buf)));
        }
        const char *l = answer_str(svc, "label"), *p = answer_str(svc, "protocol");
        if (l == NULL || strcmp(l, label) != 0)
            return p2m_err(err, "the registrar's answer: services[%zu].label: expected the pod's label %s", i, label);
        if (p == NULL || strcmp(p, p2m_proto_name(a->protos[i])) != 0)
            return p2m_err(err, "the registrar's answer: services[%zu].protocol: expected %s, as asked", i,
                           p2m_proto_name(a->protos[i]));
        v = json_object_get(svc, "url");
        if (v != NULL && answer_str(svc, "url") == NULL)
            return p2m_err(err, "the registrar's answer: services[%zu].url: expected a string", i);
    }
    return 0;
}

/* The run file's services: the answer's, each with its forward address (and TLS in the pod for https). */
static json_t *run_services(json_t *services, const pod_args_t *a, const char *label)
{
    json_t *out = json_array();
    for (size_t i = 0; out != NULL && i < a->nprotos; i++) {
        char fwd[32];
        json_t *svc = json_object();
        const char *url = answer_str(json_array_get(services, i), "url");
        snprintf(fwd, sizeof(fwd), "127.0.0.1:%u", (unsigned)a->local_ports[i]);
        if (svc == NULL || json_array_append_new(out, svc) != 0 || json_object_set_new(svc, "label", json_string(label)) != 0 ||
            json_object_set_new(svc, "protocol", json_string(p2m_proto_name(a->protos[i]))) != 0 ||
            json_object_set_new(svc, "forward", json_string(fwd)) != 0 ||
            (url != NULL && json_object_set_new(svc, "url", json_string(url)) != 0) ||
            (a->protos[i] == P2M_PROTO_HTTPS && json_object_set_new(svc, "tls_terminate", json_true()) != 0)) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

char *pod_setup_config(const char *answer, size_t len, const pod_args_t *a, const char *set_dir, const char *cacert, char *fqdn,
                       char *err)
{
    /* What the answer may hold: the provisioning keys (checked again when the run file loads) and
     * the services. Anything else would be a key of the run file the registrar has no say in. */
    static const char *const answer_keys[] = {"id", "secret", "digits", "labels", "registrar", "domain", "otpauth", "services"};
    json_error_t jerr;
    json_t *doc = NULL, *out = NULL, *v, *svcs = NULL;
    const char *key, *label, *domain;
    char norm[P2M_LABEL_MAX + 1], dom[P2M_DOMAIN_MAX + 1], e[P2M_ERR_LEN], buf[64], state[POD_PATH_MAX + 1];
    char *text = NULL;

    pod_json_wiping_init(); /* the answer holds the secret */
    if (len > SETUP_ANSWER_MAX) {
        p2m_err(err, "the registrar's answer: longer than %d bytes", SETUP_ANSWER_MAX);
        goto Exit;
    }
    /* jansson's message quotes the input, which holds the secret: only the position is kept. */
    if ((doc = json_loadb(answer, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        p2m_err(err, "the registrar's answer is not JSON (line %d, column %d)", jerr.line, jerr.column);
        goto Exit;
    }
    if (!json_is_object(doc)) {
        p2m_err(err, "the registrar's answer: expected a JSON object");
        goto Exit;
    }
    json_object_foreach(doc, key, v)
    {
        size_t k;
        for (k = 0; k < sizeof(answer_keys) / sizeof(answer_keys[0]) && strcmp(answer_keys[k], key) != 0; k++)
            ;
        if (k == sizeof(answer_keys) / sizeof(answer_keys[0])) {
            p2m_err(err, "the registrar's answer: unknown key \"%s\"", pod_shown(key, buf, sizeof(buf)));
            goto Exit;
        }
    }
    json_t *labels = json_object_get(doc, "labels");
    if (!json_is_array(labels) || json_array_size(labels) != 1 || !json_is_string(json_array_get(labels, 0))) {
        p2m_err(err, "the registrar's answer: \"labels\": expected the new pod's one label");
        goto Exit;
    }
    label = json_string_value(json_array_get(labels, 0));
    if (p2m_label_normalize(label, json_string_length(json_array_get(labels, 0)), norm, e) != 0 || strcmp(norm, label) != 0) {
        p2m_err(err, "the registrar's answer: labels[0]: not a label in lower case");
        goto Exit;
    }
    if ((domain = answer_str(doc, "domain")) == NULL || p2m_domain_normalize(domain, dom, e) != 0 || strcmp(dom, domain) != 0) {
        p2m_err(err, "the registrar's answer: \"domain\": expected a domain name in lower case");
        goto Exit;
    }
    if (strlen(label) + 1 + strlen(domain) > P2M_DOMAIN_MAX) {
        p2m_err(err, "the registrar's answer: %s.%s is longer than a domain name may be", label, domain);
        goto Exit;
    }
    if (a->label[0] != '\0' && strcmp(a->label, label) != 0) {
        p2m_err(err, "the registrar's answer: the label %s, not %s as asked", label, a->label);
        goto Exit;
    }
    if (answer_services(json_object_get(doc, "services"), a, label, err) != 0)
        goto Exit;
    if (strlen(set_dir) + sizeof("/" POD_SET_STATE) > sizeof(state)) {
        p2m_err(err, "%s: too long", set_dir);
        goto Exit;
    }
    fit(state, sizeof(state), "%s/%s", set_dir, POD_SET_STATE);
    if ((out = json_object()) == NULL)
        goto Oom;
    json_object_foreach(doc, key, v)
    {
        if (strcmp(key, "services") != 0 && json_object_set(out, key, v) != 0)
            goto Oom;
    }
    if (json_object_set_new(out, "state_dir", json_string(state)) != 0 ||
        (cacert != NULL && json_object_set_new(out, "cacert", json_string(cacert)) != 0) ||
        (a->proxy_arg[0] != '\0' && json_object_set_new(out, "proxy", json_string(a->proxy_arg)) != 0) ||
        (svcs = run_services(json_object_get(doc, "services"), a, label)) == NULL ||
        json_object_set_new(out, "services", svcs) != 0)
        goto Oom;
    if ((text = json_dumps(out, JSON_INDENT(2))) == NULL)
        goto Oom;
    snprintf(fqdn, P2M_DOMAIN_MAX + 1, "%s.%s", label, domain);
    goto Exit;
Oom:
    p2m_err(err, "out of memory");
Exit:
    json_decref(out);
    json_decref(doc);
    return text;
}

/* --- files ------------------------------------------------------------------------------------ */

/* mkdir -p with mode for what it makes. Returns 0 or -1 with errno. */
static int mkdirs(const char *path, mode_t mode)
{
    char p[POD_PATH_MAX + 1];
    fit(p, sizeof(p), "%s", path);
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    if (mkdir(p, mode) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(p, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* --- setup ------------------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t len, max;
    int over;
} sink_t;

static size_t on_body(char *p, size_t size, size_t nmemb, void *data)
{
    sink_t *s = data;
    size_t n = size * nmemb;
    if (s->len + n > s->max) {
        s->over = 1;
        return 0; /* aborts the transfer */
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

typedef struct {
    long status;
    char retry_after[16];
} reply_t;

static size_t on_header(char *p, size_t size, size_t nmemb, void *data)
{
    reply_t *r = data;
    size_t n = size * nmemb;
    if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        size_t i = 12, k = 0;
        while (i < n && p[i] == ' ')
            i++;
        while (i < n && k + 1 < sizeof(r->retry_after) && p[i] >= '0' && p[i] <= '9')
            r->retry_after[k++] = p[i++];
        r->retry_after[k] = '\0';
    }
    return n;
}

/* One HTTPS request to the registrar: POST body to path, or GET when body is NULL. The answer goes
 * to sink, the status and Retry-After to *r. Returns 0 when an answer came, or -1 with err. */
static int registrar_request(const pod_args_t *a, const char *path, const char *body, sink_t *sink, reply_t *r, char *err)
{
    char url[P2M_URL_MAX + 32], auth[POD_AUTH_MAX + 32], cerr[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    const pod_proxy_t *px = pod_args_use_proxy(a, a->reg_host);
    int bad = 0, ret = -1;
    CURL *e = curl_easy_init();
    memset(r, 0, sizeof(*r));
    if (e == NULL)
        return p2m_err(err, "curl_easy_init failed");
    snprintf(url, sizeof(url), "%s%s", a->registrar, path);
    bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, SETUP_CONNECT_TIMEOUT_S) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT, SETUP_TIMEOUT_S) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_USERAGENT, "pipe2me-pod/" P2M_VERSION) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, sink) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, r) != CURLE_OK;
    if (a->cacert[0] != '\0')
        bad |= curl_easy_setopt(e, CURLOPT_CAINFO, a->cacert) != CURLE_OK;
    if (px != NULL) {
        bad |= curl_easy_setopt(e, CURLOPT_PROXY, px->url) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_PROXYTYPE, (long)CURLPROXY_HTTP) != CURLE_OK;
        if (px->auth) {
            bad |= curl_easy_setopt(e, CURLOPT_PROXYAUTH, (long)CURLAUTH_BASIC) != CURLE_OK;
            bad |= curl_easy_setopt(e, CURLOPT_PROXYUSERNAME, px->user) != CURLE_OK;
            bad |= curl_easy_setopt(e, CURLOPT_PROXYPASSWORD, px->pass) != CURLE_OK;
        }
    } else {
        bad |= curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK; /* no_proxy said so, or there is none */
    }
    if (body != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", a->auth);
        hdrs = curl_slist_append(hdrs, auth);
        hdrs = hdrs != NULL ? curl_slist_append(hdrs, "Content-Type: application/json") : NULL;
        explicit_bzero(auth, sizeof(auth));
        bad |= hdrs == NULL;
        bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK;
        bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, body) != CURLE_OK;
    }
    if (bad) {
        p2m_err(err, "cannot set up the request to %s", url);
        goto Exit;
    }
    CURLcode rc = curl_easy_perform(e);
    if (sink->over) {
        p2m_err(err, "%s: the answer is longer than %zu bytes", url, sink->max);
        goto Exit;
    }
    if (rc != CURLE_OK) {
        p2m_err(err, "%s: %s", url, cerr[0] != '\0' ? cerr : curl_easy_strerror(rc));
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE)
            p2m_err(err, "%s: %s (give the registrar's CA with --cacert FILE)", url,
                    cerr[0] != '\0' ? cerr : curl_easy_strerror(rc));
        goto Exit;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    ret = 0;
Exit:
    if (hdrs != NULL) {
        /* The list holds the token: wipe it before it is freed. */
        for (struct curl_slist *h = hdrs; h != NULL; h = h->next)
            explicit_bzero(h->data, strlen(h->data));
        curl_slist_free_all(hdrs);
    }
    curl_easy_cleanup(e);
    return ret;
}

/* Moves aside what is at path (an older set of the same name, whose pod is gone since the registrar
 * handed its label out again) as path.replaced-TIME, so that nothing of it is lost. */
static int move_aside(const char *path, char *moved, size_t cap)
{
    fit(moved, cap, "%s.replaced-%lld", path, (long long)time(NULL));
    return rename(path, moved);
}

/* The answer is kept in a private file under DIR until the set's run file loads. */
static void keep_answer(const char *tmp, const char *dir, const char *id_hint, char *kept, size_t cap)
{
    fit(kept, cap, "%s/setup-answer-%s-%lld.json", dir, id_hint, (long long)time(NULL));
    if (rename(tmp, kept) != 0)
        fit(kept, cap, "%s", tmp);
}

int setup_command(const pod_args_t *a)
{
    char err[P2M_ERR_LEN], dir[PATH_MAX], tmp[PATH_MAX + 32], kept[PATH_MAX + 64], set_dir[PATH_MAX], path[PATH_MAX + 32];
    char fqdn[P2M_DOMAIN_MAX + 1], body[512], ca_copy[PATH_MAX + 32], moved[PATH_MAX + 64];
    p2m_setup_req_t req;
    pod_args_t *proxied = NULL, *run = NULL;
    sink_t sink = {0};
    reply_t reply;
    char *config = NULL;
    int fd = -1, ret = 2, curl_ok = 0, answer_kept = 0;

    /* Everything local is checked before the token is spent: the directory, the request's body. */
    memset(&reply, 0, sizeof(reply));
    tmp[0] = '\0';
    memset(&req, 0, sizeof(req));
    memcpy(req.protos, a->protos, a->nprotos * sizeof(a->protos[0]));
    req.nprotos = a->nprotos;
    snprintf(req.label, sizeof(req.label), "%s", a->label);
    if (p2m_setup_body_format(&req, body, sizeof(body)) < 0) {
        fprintf(stderr, "pipe2me-pod: setup: cannot form the request\n");
        return 2;
    }
    if (mkdirs(a->dir, 0700) != 0 || realpath(a->dir, dir) == NULL) {
        fprintf(stderr, "pipe2me-pod: --dir %s: %s\n", a->dir, strerror(errno));
        return 2;
    }
    if (strlen(dir) + 1 + P2M_DOMAIN_MAX + 64 > POD_PATH_MAX) {
        fprintf(stderr, "pipe2me-pod: --dir %s: too long for the sets' files\n", dir);
        return 2;
    }
    fit(tmp, sizeof(tmp), "%s/.setup-answer-XXXXXX", dir);
    if ((fd = mkstemp(tmp)) < 0) {
        fprintf(stderr, "pipe2me-pod: --dir %s: cannot write there: %s\n", dir, strerror(errno));
        return 2;
    }
    if (a->cacert[0] != '\0' && access(a->cacert, R_OK) != 0) {
        fprintf(stderr, "pipe2me-pod: --cacert %s: %s\n", a->cacert, strerror(errno));
        goto Exit;
    }
    if ((proxied = malloc(sizeof(*proxied))) == NULL || (run = calloc(1, sizeof(*run))) == NULL ||
        (sink.buf = malloc(SETUP_ANSWER_MAX + 1)) == NULL) {
        fprintf(stderr, "pipe2me-pod: out of memory\n");
        goto Exit;
    }
    /* Without --proxy, https_proxy and no_proxy apply as they do to the pod. */
    *proxied = *a;
    if (pod_args_proxy_env(proxied, getenv("https_proxy"), getenv("HTTPS_PROXY"), getenv("no_proxy"), getenv("NO_PROXY"), err) !=
        0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        goto Exit;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "pipe2me-pod: curl_global_init failed\n");
        goto Exit;
    }
    curl_ok = 1;
    sink.max = SETUP_ANSWER_MAX;
    ret = 1;
    if (registrar_request(proxied, "/setup", body, &sink, &reply, err) != 0) {
        fprintf(stderr, "pipe2me-pod: setup: %s\n", err);
        goto Exit;
    }
    if (reply.status != 200) {
        char line[200];
        size_t n = strcspn(sink.buf, "\r\n");
        snprintf(line, sizeof(line), "%.*s", (int)(n < 120 ? n : 120), sink.buf);
        for (char *p = line; *p != '\0'; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
        fprintf(stderr, "pipe2me-pod: setup refused: %ld %s%s%s%s\n", reply.status, line,
                reply.retry_after[0] != '\0' ? " (try again in " : "", reply.retry_after,
                reply.retry_after[0] != '\0' ? " s)" : "");
        goto Exit;
    }
    /* The pod exists now and this is its only secret: keep it before anything else. */
    for (size_t off = 0; off < sink.len;) {
        ssize_t n = write(fd, sink.buf + off, sink.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "pipe2me-pod: setup: %s: %s (the pod was made; its provisioning is lost)\n", tmp, strerror(errno));
            goto Exit;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        fprintf(stderr, "pipe2me-pod: setup: %s: %s\n", tmp, strerror(errno));
        goto Exit;
    }
    fd = -1;
    answer_kept = 1;
    fqdn[0] = '\0';
    {
        /* First pass for the name, second with the set's paths. */
        char probe_fqdn[P2M_DOMAIN_MAX + 1];
        char *t = pod_setup_config(sink.buf, sink.len, a, dir, NULL, probe_fqdn, err);
        if (t == NULL) {
            keep_answer(tmp, dir, "unusable", kept, sizeof(kept));
            fprintf(stderr, "pipe2me-pod: setup: %s; the pod was made and its answer is kept in %s\n", err, kept);
            goto Exit;
        }
        explicit_bzero(t, strlen(t));
        free(t);
        snprintf(fqdn, sizeof(fqdn), "%s", probe_fqdn);
    }
    fit(set_dir, sizeof(set_dir), "%s/%s", dir, fqdn);
    if (access(set_dir, F_OK) == 0) {
        if (move_aside(set_dir, moved, sizeof(moved)) != 0) {
            keep_answer(tmp, dir, fqdn, kept, sizeof(kept));
            fprintf(stderr, "pipe2me-pod: setup: %s exists and cannot be moved aside: %s; the answer is kept in %s\n", set_dir,
                    strerror(errno), kept);
            goto Exit;
        }
        fprintf(stderr, "pipe2me-pod: setup: an older %s was moved to %s\n", set_dir, moved);
    }
    if (mkdir(set_dir, 0700) != 0) {
        keep_answer(tmp, dir, fqdn, kept, sizeof(kept));
        fprintf(stderr, "pipe2me-pod: setup: %s: %s; the answer is kept in %s\n", set_dir, strerror(errno), kept);
        goto Exit;
    }
    if (a->cacert[0] != '\0') {
        size_t len;
        char *ca = pod_file_read(a->cacert, SETUP_CACERT_MAX, 0, NULL, &len, err);
        fit(ca_copy, sizeof(ca_copy), "%s/%s", set_dir, POD_SET_REGISTRAR_CA);
        if (ca == NULL || pod_file_write(ca_copy, ca, len, 0644, 1) != 0) {
            keep_answer(tmp, dir, fqdn, kept, sizeof(kept));
            fprintf(stderr, "pipe2me-pod: setup: %s: cannot copy %s: %s; the answer is kept in %s\n", ca_copy, a->cacert,
                    strerror(errno), kept);
            free(ca);
            goto Exit;
        }
        free(ca);
    }
    if ((config = pod_setup_config(sink.buf, sink.len, a, set_dir, a->cacert[0] != '\0' ? ca_copy : NULL, fqdn, err)) == NULL) {
        keep_answer(tmp, dir, fqdn, kept, sizeof(kept));
        fprintf(stderr, "pipe2me-pod: setup: %s; the answer is kept in %s\n", err, kept);
        goto Exit;
    }
    fit(path, sizeof(path), "%s/%s", set_dir, POD_SET_FILE);
    if (pod_file_write(path, config, strlen(config), 0600, 1) != 0) {
        keep_answer(tmp, dir, fqdn, kept, sizeof(kept));
        fprintf(stderr, "pipe2me-pod: setup: %s: %s; the answer is kept in %s\n", path, strerror(errno), kept);
        goto Exit;
    }
    /* The run file must load as `run` will load it before the answer is let go. */
    {
        pod_args_t *svcs;
        size_t n;
        run->cmd = POD_CMD_RUN;
        fit(run->config, sizeof(run->config), "%s", path);
        if (pod_run_load(run, &svcs, &n, err) != 0) {
            keep_answer(tmp, dir, fqdn, kept, sizeof(kept));
            fprintf(stderr, "pipe2me-pod: setup: the registrar's answer makes no valid run file: %s; the answer is kept in %s\n",
                    err, kept);
            goto Exit;
        }
        pod_run_free(svcs, n);
    }
    unlink(tmp);
    /* The CA consumers (and curl --cacert) check the pod's certificates with. */
    sink.len = 0;
    sink.max = SETUP_CACERT_MAX < SETUP_ANSWER_MAX ? SETUP_CACERT_MAX : SETUP_ANSWER_MAX;
    fit(path, sizeof(path), "%s/%s", set_dir, POD_SET_CACERT);
    if (registrar_request(proxied, "/cacert", NULL, &sink, &reply, err) != 0 || reply.status != 200 ||
        strstr(sink.buf, "-----BEGIN CERTIFICATE-----") == NULL || pod_file_write(path, sink.buf, sink.len, 0644, 1) != 0) {
        if (err[0] == '\0' || reply.status != 0)
            snprintf(err, sizeof(err), "status %ld or not a PEM certificate", reply.status);
        fprintf(stderr, "pipe2me-pod: setup: warning: GET /cacert failed (%s): %s is missing; the set works without it\n", err,
                path);
    }
    printf("%s\n", fqdn);
    fflush(stdout);
    fprintf(stderr, "pipe2me-pod: tunnel set %s ready in %s: pipe2me-pod run %s%s%s\n", fqdn, set_dir, fqdn,
            strcmp(a->dir, dir) == 0 ? "" : " --dir ", strcmp(a->dir, dir) == 0 ? "" : dir);
    ret = 0;
Exit:
    if (fd >= 0)
        close(fd);
    if (!answer_kept && tmp[0] != '\0')
        unlink(tmp); /* no answer came, or it never got there */
    if (config != NULL) {
        explicit_bzero(config, strlen(config));
        free(config);
    }
    if (sink.buf != NULL) {
        explicit_bzero(sink.buf, sink.len);
        free(sink.buf);
    }
    if (proxied != NULL) {
        pod_args_wipe(proxied);
        free(proxied);
    }
    free(run);
    if (curl_ok)
        curl_global_cleanup();
    return ret;
}

/* --- list and env ------------------------------------------------------------------------------- */

static int cmp_names(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The sets under dir: names that are a LABEL.DOMAIN with a pod.json, sorted. Returns their count
 * (*names to free with each name), or -1 with errno (ENOENT: no such dir, which holds no set). */
static int set_names(const char *dir, char ***names)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **v = NULL;
    int n = 0;
    *names = NULL;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL && n < SETS_MAX) {
        char norm[P2M_DOMAIN_MAX + 1], e[P2M_ERR_LEN], path[POD_PATH_MAX + P2M_DOMAIN_MAX + 32];
        struct stat st;
        if (de->d_name[0] == '.' || strlen(de->d_name) > P2M_DOMAIN_MAX || p2m_domain_normalize(de->d_name, norm, e) != 0 ||
            strcmp(norm, de->d_name) != 0 || strchr(norm, '.') == NULL)
            continue;
        fit(path, sizeof(path), "%s/%s/%s", dir, de->d_name, POD_SET_FILE);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        char **nv = realloc(v, (size_t)(n + 1) * sizeof(*v));
        if (nv == NULL || (nv[n] = strdup(de->d_name)) == NULL) {
            v = nv != NULL ? nv : v;
            break;
        }
        v = nv;
        n++;
    }
    closedir(d);
    if (n > 0)
        qsort(v, (size_t)n, sizeof(*v), cmp_names);
    *names = v;
    return n;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Loads the set's run file as run does. Returns 0 with its services, or -1 with err. */
static int set_load(const char *config, pod_args_t **svcs, size_t *n, char *err)
{
    pod_args_t *run = calloc(1, sizeof(*run));
    if (run == NULL)
        return p2m_err(err, "out of memory");
    run->cmd = POD_CMD_RUN;
    fit(run->config, sizeof(run->config), "%s", config);
    int rc = pod_run_load(run, svcs, n, err);
    free(run);
    return rc;
}

/* The set's process directory: a service's state_dir less its /NAME. */
static void set_state_dir(const pod_args_t *svc, char *out, size_t cap)
{
    const char *slash = strrchr(svc->state_dir, '/');
    fit(out, cap, "%.*s", slash != NULL ? (int)(slash - svc->state_dir) : 0, svc->state_dir);
}

int list_command(const pod_args_t *a)
{
    char **names = NULL;
    int n = set_names(a->dir, &names), bad = 0;
    json_t *doc = NULL, *sets = NULL;
    if (n < 0 && errno != ENOENT) {
        fprintf(stderr, "pipe2me-pod: --dir %s: %s\n", a->dir, strerror(errno));
        return 2;
    }
    if (n < 0)
        n = 0;
    if (a->json && ((doc = json_object()) == NULL || (sets = json_array()) == NULL ||
                    json_object_set_new(doc, "dir", json_string(a->dir)) || json_object_set_new(doc, "sets", sets))) {
        fprintf(stderr, "pipe2me-pod: out of memory\n");
        json_decref(doc);
        free_names(names, n);
        return 2;
    }
    for (int i = 0; i < n; i++) {
        char config[POD_PATH_MAX + 1], err[P2M_ERR_LEN];
        pod_args_t *svcs = NULL;
        size_t ns = 0;
        if (fit(config, sizeof(config), "%s/%s/%s", a->dir, names[i], POD_SET_FILE) != 0)
            continue; /* cannot be: --dir was checked for room */
        if (set_load(config, &svcs, &ns, err) != 0) {
            bad = 1;
            if (a->json)
                json_array_append_new(sets, json_pack("{s:s, s:s}", "fqdn", names[i], "error", err));
            else
                printf("%s  error: %s\n", names[i], err);
            continue;
        }
        long pid = status_running_pid(svcs[0].state_dir);
        if (a->json) {
            json_t *set =
                json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "fqdn", names[i], "id", svcs[0].id, "label", svcs[0].label,
                          "domain", svcs[0].domain, "registrar", svcs[0].registrar, "config", config, "running", pid != 0);
            json_t *list = json_array();
            for (size_t k = 0; set != NULL && list != NULL && k < ns; k++) {
                char local[P2M_HOST_MAX + 16];
                p2m_hostport_format(svcs[k].forward.host, svcs[k].forward.port, local, sizeof(local));
                json_array_append_new(list,
                                      json_pack("{s:s, s:o, s:s}", "protocol", p2m_proto_name(svcs[k].proto), "url",
                                                svcs[k].url[0] != '\0' ? json_string(svcs[k].url) : json_null(), "local", local));
            }
            if (set != NULL) {
                json_object_set_new(set, "pid", pid != 0 ? json_integer(pid) : json_null());
                json_object_set_new(set, "services", list != NULL ? list : json_array());
                json_array_append_new(sets, set);
            } else {
                json_decref(list);
            }
        } else {
            if (pid != 0)
                printf("%s  running (pid %ld)\n", names[i], pid);
            else
                printf("%s  stopped\n", names[i]);
            for (size_t k = 0; k < ns; k++) {
                char local[P2M_HOST_MAX + 16];
                p2m_hostport_format(svcs[k].forward.host, svcs[k].forward.port, local, sizeof(local));
                printf("  %-5s  %s  %s\n", p2m_proto_name(svcs[k].proto), svcs[k].url[0] != '\0' ? svcs[k].url : "-", local);
            }
        }
        pod_run_free(svcs, ns);
    }
    if (a->json) {
        char *text = json_dumps(doc, JSON_INDENT(2));
        if (text != NULL)
            printf("%s\n", text);
        free(text);
        json_decref(doc);
    } else if (n == 0) {
        fprintf(stderr, "pipe2me-pod: no tunnel set in %s (pipe2me-pod setup makes one)\n", a->dir);
    }
    free_names(names, n);
    return bad ? 1 : 0;
}

int set_env_command(const pod_args_t *a)
{
    char err[P2M_ERR_LEN], fqdn[P2M_DOMAIN_MAX + 1], set_dir[POD_PATH_MAX + 1], state[POD_PATH_MAX + 1], path[POD_PATH_MAX + 32];
    pod_args_t *svcs = NULL;
    size_t n = 0;
    int bad = 0;
    if (set_load(a->config, &svcs, &n, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        return 2;
    }
    fit(fqdn, sizeof(fqdn), "%s.%s", svcs[0].label, svcs[0].domain);
    fit(set_dir, sizeof(set_dir), "%s/%s", a->dir, a->set);
    set_state_dir(&svcs[0], state, sizeof(state));
    bad |= env_assign("P2M_FQDN", fqdn);
    bad |= env_assign("P2M_ID", svcs[0].id);
    bad |= env_assign("P2M_LABEL", svcs[0].label);
    bad |= env_assign("P2M_DOMAIN", svcs[0].domain);
    bad |= env_assign("P2M_REGISTRAR", svcs[0].registrar);
    bad |= env_assign("P2M_DIR", set_dir);
    bad |= env_assign("P2M_RUN_FILE", a->config);
    bad |= env_assign("P2M_STATE_DIR", state);
    fit(path, sizeof(path), "%s/%s", set_dir, POD_SET_CACERT);
    if (access(path, R_OK) == 0)
        bad |= env_assign("P2M_CACERT", path);
    for (size_t i = 0; i < n; i++)
        if (svcs[i].url[0] != '\0') {
            bad |= env_assign("P2M_URL", svcs[i].url);
            break;
        }
    for (size_t i = 0; i < n; i++) {
        char name[32], local[P2M_HOST_MAX + 16];
        const char *proto = p2m_proto_name(svcs[i].proto);
        char up[8];
        size_t k;
        for (k = 0; proto[k] != '\0' && k + 1 < sizeof(up); k++)
            up[k] = (char)(proto[k] - 'a' + 'A');
        up[k] = '\0';
        if (svcs[i].url[0] != '\0') {
            snprintf(name, sizeof(name), "P2M_URL_%s", up);
            bad |= env_assign(name, svcs[i].url);
        }
        snprintf(name, sizeof(name), "P2M_LOCAL_%s", up);
        p2m_hostport_format(svcs[i].forward.host, svcs[i].forward.port, local, sizeof(local));
        bad |= env_assign(name, local);
    }
    pod_run_free(svcs, n);
    return bad ? 2 : 0;
}
