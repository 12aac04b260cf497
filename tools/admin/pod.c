/* pipe2me-admin pod ...: create, list, show, remove, disable, enable and re-key pods. */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "p2m/addr.h"
#include "p2m/totp.h"

#define POD_LABEL_TRIES 20 /* generated labels tried before giving up */
#define POD_URI_LEN 1024   /* otpauth URI: issuer, a percent-encoded ID and the secret fit */

/* Where the provisioning JSON goes: stdout, or a file created for it (-o). */
typedef struct {
    const char *path; /* NULL: stdout */
    int fd;
    char **capture; /* the console's (admin_t.capture_text): the text goes there instead */
    size_t *capture_len;
} sink_t;

/* Refuses -o FILE early, before Redis is contacted, when FILE already exists. The O_EXCL open in
 * sink_open() is what guarantees it; this only spares a connection. */
static int sink_check(const admin_t *a, char *err)
{
    char q[ADMIN_QUOTE_LEN];
    struct stat sb;
    if (a->output != NULL && lstat(a->output, &sb) == 0)
        return p2m_err(err, "%s already exists; refusing to overwrite it", admin_quote(a->output, q));
    return 0;
}

/* Creates the -o file, mode 0600 whatever the umask, never following or replacing anything. */
static int sink_open(const admin_t *a, sink_t *sink, char *err)
{
    char q[ADMIN_QUOTE_LEN];
    sink->path = a->output;
    sink->fd = -1;
    sink->capture = a->capture_text;
    sink->capture_len = a->capture_len;
    if (sink->path == NULL)
        return 0;
    sink->fd = open(sink->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (sink->fd < 0) {
        if (errno == EEXIST)
            return p2m_err(err, "%s already exists; refusing to overwrite it", admin_quote(sink->path, q));
        return p2m_err(err, "%s: %s", admin_quote(sink->path, q), strerror(errno));
    }
    if (fchmod(sink->fd, 0600) != 0) {
        p2m_err(err, "%s: %s", admin_quote(sink->path, q), strerror(errno));
        close(sink->fd);
        unlink(sink->path);
        sink->fd = -1;
        return -1;
    }
    return 0;
}

/* Removes the -o file after a failure, so that no stale or empty provisioning file is left. */
static void sink_discard(sink_t *sink)
{
    if (sink->fd >= 0) {
        close(sink->fd);
        unlink(sink->path);
        sink->fd = -1;
    }
}

static int write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One --service LABEL[:PROTOCOL]=HOST:PORT, checked. */
typedef struct {
    char label[P2M_LABEL_MAX + 1]; /* lower-cased */
    int have_proto;
    p2m_proto_t proto;   /* https when not given, as the pod takes it */
    const char *forward; /* HOST:PORT as given, borrowed from argv */
} service_t;

/* Checks the --service values into svcs (ADMIN_SERVICES_MAX): the syntax, the label, the protocol
 * (exact spellings, as --protocol) and HOST:PORT (as the pod parses "forward"), no two with the same
 * label and protocol. Which labels the pod has is checked later (services_owned). Returns 0 or -1
 * with err quoting the value. */
static int services_parse(const admin_t *a, service_t *svcs, char *err)
{
    char q[ADMIN_QUOTE_LEN], why[P2M_ERR_LEN];
    for (size_t i = 0; i < a->nservices; i++) {
        const char *arg = a->services[i], *eq = strchr(arg, '=');
        service_t *s = &svcs[i];
        memset(s, 0, sizeof(*s));
        s->proto = P2M_PROTO_HTTPS;
        if (eq == NULL)
            return p2m_err(err, "option --service: expected LABEL[:PROTOCOL]=HOST:PORT, not %s", admin_quote(arg, q));
        const char *colon = memchr(arg, ':', (size_t)(eq - arg));
        size_t label_len = (size_t)((colon != NULL ? colon : eq) - arg);
        if (p2m_label_normalize(arg, label_len, s->label, why) != 0)
            return p2m_err(err, "option --service %s: invalid label: %s", admin_quote(arg, q), why);
        if (colon != NULL) {
            if (p2m_proto_parse(colon + 1, (size_t)(eq - colon - 1), &s->proto, why) != 0)
                return p2m_err(err, "option --service %s: expected the protocol http, https or tcp", admin_quote(arg, q));
            s->have_proto = 1;
        }
        p2m_hostport_t hp;
        if (p2m_hostport_parse(eq + 1, &hp, why) != 0)
            return p2m_err(err, "option --service %s: HOST:PORT: %s", admin_quote(arg, q), why);
        s->forward = eq + 1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(svcs[j].label, s->label) == 0 && svcs[j].proto == s->proto)
                return p2m_err(err, "option --service: %s with protocol %s given twice", s->label, p2m_proto_name(s->proto));
        }
    }
    return 0;
}

/* Refuses a service whose label is not one of the pod's own (a file with the secret inline serves
 * only those). Returns 0 or -1 with err. */
static int services_owned(const char *id, const service_t *svcs, size_t nsvcs, const char (*labels)[P2M_LABEL_MAX + 1],
                          size_t nlabels, char *err)
{
    for (size_t i = 0; i < nsvcs; i++) {
        size_t k;
        for (k = 0; k < nlabels && strcmp(labels[k], svcs[i].label) != 0; k++)
            ;
        if (k == nlabels)
            return p2m_err(err, "option --service: label %s is not one of pod %s's labels", svcs[i].label, id);
    }
    return 0;
}

/* The "services" list of the run file: [{"label", "protocol" (when given), "forward"}...], or NULL. */
static json_t *services_json(const service_t *svcs, size_t nsvcs)
{
    json_t *arr = json_array(), *o;
    for (size_t i = 0; arr != NULL && i < nsvcs; i++) {
        o = json_pack("{s:s}", "label", svcs[i].label);
        if (o != NULL && svcs[i].have_proto &&
            json_object_set_new(o, "protocol", json_string(p2m_proto_name(svcs[i].proto))) != 0) {
            json_decref(o);
            o = NULL;
        }
        if (o == NULL || json_object_set_new(o, "forward", json_string(svcs[i].forward)) != 0 ||
            json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* Builds the provisioning document a pod is configured with, for OTPs of `digits` digits, with
 * "services" when nsvcs > 0 (then it is also the pod's run file). Returns it or NULL with err. */
static json_t *provisioning_new(const admin_t *a, const char *id, const char *secret, unsigned digits,
                                const char (*labels)[P2M_LABEL_MAX + 1], size_t nlabels, const service_t *svcs, size_t nsvcs,
                                char *err)
{
    char uri[POD_URI_LEN];
    json_t *jlabels = NULL, *doc = NULL;

    if (p2m_totp_uri("pipe2me", id, secret, digits, uri, sizeof(uri)) < 0) {
        p2m_err(err, "pod %s: cannot build the otpauth URI", id);
        goto Exit;
    }
    if ((jlabels = json_array()) == NULL) {
        p2m_err(err, "pod %s: cannot build the provisioning JSON", id);
        goto Exit;
    }
    for (size_t i = 0; i < nlabels; i++) {
        if (json_array_append_new(jlabels, json_string(labels[i])) != 0) {
            p2m_err(err, "pod %s: cannot build the provisioning JSON", id);
            goto Exit;
        }
    }
    doc = json_pack("{s:s, s:s, s:i, s:O, s:s, s:s, s:s}", "id", id, "secret", secret, "digits", (int)digits, "labels", jlabels,
                    "registrar", a->cfg.registrar.url, "domain", a->cfg.domain, "otpauth", uri);
    if (doc != NULL && nsvcs > 0 && json_object_set_new(doc, "services", services_json(svcs, nsvcs)) != 0) {
        json_decref(doc);
        doc = NULL;
    }
    if (doc == NULL)
        p2m_err(err, "pod %s: cannot build the provisioning JSON", id);
Exit:
    json_decref(jlabels);
    explicit_bzero(uri, sizeof(uri));
    return doc;
}

/* Formats the provisioning document as pretty JSON ending in a newline. Returns the text (wipe
 * and free() it; *len bytes, no NUL) or NULL with err. Done before the store changes, so that a
 * failure here changes nothing. */
static char *provisioning_format(const admin_t *a, const char *id, const char *secret, unsigned digits,
                                 const char (*labels)[P2M_LABEL_MAX + 1], size_t nlabels, const service_t *svcs, size_t nsvcs,
                                 size_t *len, char *err)
{
    json_t *doc = NULL;
    char *text = NULL;

    if ((doc = provisioning_new(a, id, secret, digits, labels, nlabels, svcs, nsvcs, err)) == NULL)
        goto Exit;
    if ((text = json_dumps(doc, JSON_INDENT(2))) == NULL) {
        p2m_err(err, "pod %s: cannot format the provisioning JSON", id);
        goto Exit;
    }
    *len = strlen(text);
    text[(*len)++] = '\n'; /* replaces the NUL */
Exit:
    json_decref(doc);
    return text;
}

static void text_wipe(char *text, size_t len)
{
    if (text != NULL) {
        explicit_bzero(text, len);
        free(text);
    }
}

/* Delivers the provisioning text to the sink. The pod already has the secret it holds, so a
 * failure says how to recover: a new secret. */
static int provisioning_deliver(sink_t *sink, const char *id, const char *text, size_t len, char *err)
{
    char q[ADMIN_QUOTE_LEN], why[P2M_ERR_LEN];
    int ret = -1;

    if (sink->capture != NULL) {
        *sink->capture = admin_xmalloc(len + 1);
        memcpy(*sink->capture, text, len);
        (*sink->capture)[len] = '\0';
        *sink->capture_len = len;
    } else if (sink->fd < 0) {
        if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
            snprintf(why, sizeof(why), "stdout: %s", strerror(errno));
            goto Exit;
        }
    } else {
        if (write_all(sink->fd, text, len) != 0 || fsync(sink->fd) != 0) {
            snprintf(why, sizeof(why), "%s: %s", admin_quote(sink->path, q), strerror(errno));
            goto Exit;
        }
        int fd = sink->fd;
        sink->fd = -1;
        if (close(fd) != 0) {
            snprintf(why, sizeof(why), "%s: %s", admin_quote(sink->path, q), strerror(errno));
            unlink(sink->path);
            goto Exit;
        }
        char *path = admin_escape_dup(sink->path);
        fprintf(stderr, "pipe2me-admin: provisioning for pod %s (with its secret) written to %s, mode 0600\n", id, path);
        free(path);
    }
    ret = 0;

Exit:
    if (ret != 0) {
        sink_discard(sink);
        p2m_err(err, "pod %s: new secret set but not delivered: %s; run 'pipe2me-admin pod rotate-secret %s'", id, why, id);
    }
    return ret;
}

/* Normalizes the --label values into labels, refusing duplicates (after lower-casing). */
static int collect_labels(const admin_t *a, char (*labels)[P2M_LABEL_MAX + 1], size_t *nlabels, char *err)
{
    *nlabels = 0;
    for (size_t i = 0; i < a->nlabels; i++) {
        if (admin_check_label(a->labels[i], labels[i], err) != 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(labels[i], labels[j]) == 0)
                return p2m_err(err, "label %s given twice", labels[i]);
        }
        *nlabels = i + 1;
    }
    return 0;
}

/* Draws readable labels until one is free. The pod_add that follows is what settles a race. */
static int generate_label(p2m_store_t *st, char *out, char *err)
{
    for (int tries = 0; tries < POD_LABEL_TRIES; tries++) {
        if (p2m_label_generate(out) != 0)
            return p2m_err(err, "cannot generate a label");
        int taken = p2m_store_label_exists(st, out, err);
        if (taken < 0)
            return -1;
        if (taken == 0)
            return 0;
    }
    return p2m_err(err, "no free label after %d tries; give one with --label", POD_LABEL_TRIES);
}

int pod_add(admin_t *a, char *err)
{
    int ret = -1;
    const char *id = a->args[0];
    char labels[ADMIN_LABELS_MAX][P2M_LABEL_MAX + 1];
    char secret[P2M_TOTP_SECRET_B32_LEN + 1] = "", why[P2M_ERR_LEN];
    size_t nlabels = 0, len = 0;
    unsigned digits = a->digits != 0 ? a->digits : P2M_TOTP_DIGITS;
    char *text = NULL;
    p2m_store_t *st = NULL;
    sink_t sink = {NULL, -1, NULL, NULL};
    service_t svcs[ADMIN_SERVICES_MAX];

    if (admin_check_id(id, err) != 0 || collect_labels(a, labels, &nlabels, err) != 0 || services_parse(a, svcs, err) != 0)
        goto Exit;
    if (a->nservices > 0 && nlabels == 0) {
        p2m_err(err, "option --service names the pod's labels: give them with --label");
        goto Exit;
    }
    if (services_owned(id, svcs, a->nservices, (const char(*)[P2M_LABEL_MAX + 1]) labels, nlabels, err) != 0 ||
        sink_check(a, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (nlabels == 0) {
        if (generate_label(st, labels[0], err) != 0)
            goto Exit;
        nlabels = 1;
    }
    if (p2m_totp_secret_new(secret, why) != 0) {
        p2m_err(err, "cannot draw a secret: %s", why);
        goto Exit;
    }
    if ((text = provisioning_format(a, id, secret, digits, (const char(*)[P2M_LABEL_MAX + 1]) labels, nlabels, svcs, a->nservices,
                                    &len, err)) == NULL)
        goto Exit;
    if (sink_open(a, &sink, err) != 0)
        goto Exit;
    if (p2m_store_pod_add(st, id, secret, (const char(*)[P2M_LABEL_MAX + 1]) labels, nlabels,
                          a->have_token_reuse ? a->token_reuse : P2M_TOKEN_REUSE_NONE, digits, (long long)time(NULL), err) != 0)
        goto Exit;
    if (provisioning_deliver(&sink, id, text, len, err) != 0)
        goto Exit;
    ret = 0;
Exit:
    sink_discard(&sink);
    text_wipe(text, len);
    explicit_bzero(secret, sizeof(secret));
    p2m_store_free(st);
    return ret;
}

int pod_rotate_secret(admin_t *a, char *err)
{
    int ret = -1;
    const char *id = a->args[0];
    char secret[P2M_TOTP_SECRET_B32_LEN + 1] = "", why[P2M_ERR_LEN];
    size_t len = 0;
    char *text = NULL;
    p2m_store_t *st = NULL;
    p2m_pod_t *pod = NULL;
    sink_t sink = {NULL, -1, NULL, NULL};
    service_t svcs[ADMIN_SERVICES_MAX];

    if (admin_check_id(id, err) != 0 || services_parse(a, svcs, err) != 0 || sink_check(a, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_pod_get(st, id, &pod, err) != 0 ||
        services_owned(id, svcs, a->nservices, (const char(*)[P2M_LABEL_MAX + 1]) pod->labels, pod->nlabels, err) != 0)
        goto Exit;
    if (p2m_totp_secret_new(secret, why) != 0) {
        p2m_err(err, "cannot draw a secret: %s", why);
        goto Exit;
    }
    if ((text = provisioning_format(a, id, secret, pod->digits, (const char(*)[P2M_LABEL_MAX + 1]) pod->labels, pod->nlabels, svcs,
                                    a->nservices, &len, err)) == NULL)
        goto Exit;
    if (sink_open(a, &sink, err) != 0)
        goto Exit;
    if (p2m_store_pod_set_secret(st, id, secret, err) != 0)
        goto Exit;
    if (provisioning_deliver(&sink, id, text, len, err) != 0)
        goto Exit;
    ret = 0;
Exit:
    sink_discard(&sink);
    text_wipe(text, len);
    explicit_bzero(secret, sizeof(secret));
    p2m_store_pod_free(pod);
    p2m_store_free(st);
    return ret;
}

/* Returns the n labels joined with commas, to free(). */
static char *join_labels(const char (*labels)[P2M_LABEL_MAX + 1], size_t n)
{
    char *s = admin_xmalloc(n * (P2M_LABEL_MAX + 1) + 1);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strnlen(labels[i], P2M_LABEL_MAX);
        if (i > 0)
            s[pos++] = ',';
        memcpy(s + pos, labels[i], len);
        pos += len;
    }
    s[pos] = '\0';
    return s;
}

/* Returns the pod's labels joined with commas, to free(). */
static char *labels_join(const p2m_pod_t *pod)
{
    return join_labels((const char(*)[P2M_LABEL_MAX + 1]) pod->labels, pod->nlabels);
}

/* The labels the pod shares as a JSON array, or NULL (jansson failed). */
static json_t *shares_json(const p2m_pod_t *pod)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < pod->nshares; i++) {
        if (json_array_append_new(arr, json_string(pod->shares[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* Describes a pod as JSON, never with its secret; with_epoch for `show`, which adds the epoch, the
 * settings and, for a pod that shares labels, "shares". NULL when jansson fails. */
static json_t *pod_json(const p2m_pod_t *pod, int with_epoch)
{
    json_t *labels = json_array(), *obj = NULL;
    if (labels == NULL)
        return NULL;
    for (size_t i = 0; i < pod->nlabels; i++) {
        if (json_array_append_new(labels, json_string(pod->labels[i])) != 0)
            goto Exit;
    }
    obj = json_pack("{s:s, s:b, s:O, s:I}", "id", pod->id, "disabled", pod->disabled, "labels", labels, "created",
                    (json_int_t)pod->created);
    if (obj != NULL && with_epoch &&
        (json_object_set_new(obj, "epoch", json_integer((json_int_t)pod->epoch)) != 0 ||
         json_object_set_new(obj, "token_reuse", json_string(p2m_token_reuse_name(pod->token_reuse))) != 0 ||
         json_object_set_new(obj, "digits", json_integer((json_int_t)pod->digits)) != 0 ||
         (pod->nshares > 0 && json_object_set_new(obj, "shares", shares_json(pod)) != 0))) {
        json_decref(obj);
        obj = NULL;
    }
Exit:
    json_decref(labels);
    return obj;
}

/* The live numbers of n pods (p2m_store_live): one script for them all. */
static int pod_live_fetch(p2m_store_t *st, const char (*ids)[P2M_ID_MAX + 1], size_t n, p2m_live_t *out, char *err)
{
    const char **names = admin_xmalloc((n + 1) * sizeof(*names));
    for (size_t i = 0; i < n; i++)
        names[i] = ids[i];
    int ret = p2m_store_live(st, 1, names, n, out, err);
    free(names);
    return ret;
}

/* Adds a pod's live fields to obj (taken, returned; NULL when obj is or it fails). consumers are the
 * ones there now: waiting for a pre-connection and in a tunnel. pool_target is what the pod's
 * registrations declared (its --pool, summed over its services), null when none did (a pod older
 * than the key, or a TAAS client). */
static json_t *pod_live_json(json_t *obj, const p2m_live_t *l)
{
    if (obj == NULL)
        return NULL;
    if (json_object_set_new(obj, "online", json_boolean(l->online)) != 0 ||
        json_object_set_new(obj, "idle", json_integer(l->idle)) != 0 ||
        json_object_set_new(obj, "pool_target", l->pool_target > 0 ? json_integer(l->pool_target) : json_null()) != 0 ||
        json_object_set_new(obj, "waiting", json_integer(l->waiting)) != 0 ||
        json_object_set_new(obj, "tunnels", json_integer(l->tunnels)) != 0 ||
        json_object_set_new(obj, "consumers", json_integer(l->waiting + l->tunnels)) != 0 ||
        json_object_set_new(obj, "conns", json_integer(l->conns)) != 0 ||
        json_object_set_new(obj, "bytes_in", json_integer(l->bytes_in)) != 0 ||
        json_object_set_new(obj, "bytes_out", json_integer(l->bytes_out)) != 0 ||
        json_object_set_new(obj, "last_registration",
                            l->last_registration > 0 ? json_integer(l->last_registration) : json_null()) != 0) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

int pod_list(admin_t *a, json_t **json, admin_table_t *table, char *err)
{
    int ret = -1;
    p2m_store_t *st = NULL;
    char(*ids)[P2M_ID_MAX + 1] = NULL;
    size_t nids = 0, npods = 0;
    p2m_pod_t **pods = NULL;
    p2m_live_t *live = NULL;
    json_t *arr = NULL;

    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_pod_list(st, &ids, &nids, err) != 0)
        goto Exit;
    pods = admin_xmalloc(nids * sizeof(*pods));
    for (; npods < nids; npods++) {
        if (p2m_store_pod_get(st, ids[npods], &pods[npods], err) != 0)
            goto Exit;
    }
    live = admin_xmalloc((npods + 1) * sizeof(*live));
    if (pod_live_fetch(st, ids, npods, live, err) != 0)
        goto Exit;
    if (json != NULL && (arr = json_array()) == NULL) {
        p2m_err(err, "cannot build the JSON reply");
        goto Exit;
    }
    for (size_t i = 0; i < npods; i++) {
        if (arr != NULL && json_array_append_new(arr, pod_live_json(pod_json(pods[i], 0), &live[i])) != 0) {
            p2m_err(err, "cannot build the JSON reply");
            goto Exit;
        }
        if (table != NULL) {
            char created[ADMIN_TIME_LEN], *joined = labels_join(pods[i]);
            char n[6][24], last[ADMIN_TIME_LEN];
            snprintf(n[0], sizeof(n[0]), "%lld", live[i].idle);
            if (live[i].pool_target > 0)
                snprintf(n[5], sizeof(n[5]), "%lld", live[i].pool_target);
            else
                snprintf(n[5], sizeof(n[5]), "-");
            snprintf(n[1], sizeof(n[1]), "%lld", live[i].tunnels);
            snprintf(n[2], sizeof(n[2]), "%lld", live[i].waiting + live[i].tunnels);
            snprintf(n[3], sizeof(n[3]), "%lld", live[i].bytes_in);
            snprintf(n[4], sizeof(n[4]), "%lld", live[i].bytes_out);
            const char *row[] = {pods[i]->id,
                                 pods[i]->disabled ? "disabled" : "enabled",
                                 joined,
                                 admin_time_iso(pods[i]->created, created),
                                 live[i].online ? "yes" : "no",
                                 n[0],
                                 n[5],
                                 n[1],
                                 n[2],
                                 n[3],
                                 n[4],
                                 live[i].last_registration > 0 ? admin_time_iso(live[i].last_registration, last) : "-"};
            admin_table_add(table, row);
            free(joined);
        }
    }
    if (json != NULL) {
        *json = arr;
        arr = NULL;
    }
    ret = 0;
Exit:
    json_decref(arr);
    for (size_t i = 0; i < npods; i++)
        p2m_store_pod_free(pods[i]);
    free(pods);
    free(live);
    free(ids);
    p2m_store_free(st);
    return ret;
}

int pod_ls(admin_t *a, char *err)
{
    static const char *const headers[] = {"ID",     "STATE",   "LABELS",    "CREATED",  "ONLINE",    "IDLE",
                                          "TARGET", "TUNNELS", "CONSUMERS", "BYTES_IN", "BYTES_OUT", "LAST_REGISTRATION"};
    return admin_ls_print(a, pod_list, sizeof(headers) / sizeof(headers[0]), headers, err);
}

int pod_show(admin_t *a, char *err)
{
    int ret = -1;
    const char *id = a->args[0];
    p2m_store_t *st = NULL;
    p2m_pod_t *pod = NULL;
    json_t *obj = NULL;
    char *joined = NULL;

    if (admin_check_id(id, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_pod_get(st, id, &pod, err) != 0)
        goto Exit;
    if (a->json) {
        if ((obj = pod_json(pod, 1)) == NULL) {
            p2m_err(err, "cannot build the JSON reply");
            goto Exit;
        }
        if (admin_json_print(obj, err) != 0)
            goto Exit;
    } else {
        char created[ADMIN_TIME_LEN];
        joined = labels_join(pod);
        printf("id: %s\nstate: %s\nlabels: %s\ncreated: %s\nepoch: %lld\ntoken_reuse: %s\ndigits: %u\n", pod->id,
               pod->disabled ? "disabled" : "enabled", joined[0] != '\0' ? joined : "-", admin_time_iso(pod->created, created),
               pod->epoch, p2m_token_reuse_name(pod->token_reuse), pod->digits);
        if (pod->nshares > 0) { /* a line only for a pod that shares labels: others read as before */
            char *shares = join_labels((const char(*)[P2M_LABEL_MAX + 1]) pod->shares, pod->nshares);
            printf("shares: %s\n", shares);
            free(shares);
        }
    }
    ret = 0;
Exit:
    free(joined);
    json_decref(obj);
    p2m_store_pod_free(pod);
    p2m_store_free(st);
    return ret;
}

typedef enum { CHANGE_RM, CHANGE_DISABLE, CHANGE_ENABLE } change_t;

/* rm, disable and enable: one store call on an existing pod and a confirmation. */
static int pod_change(admin_t *a, change_t change, char *err)
{
    static const char *const done[] = {"removed", "disabled", "enabled"};
    int ret = -1, rc;
    const char *id = a->args[0];
    p2m_store_t *st = NULL;

    if (admin_check_id(id, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (change == CHANGE_RM)
        rc = p2m_store_pod_rm(st, id, err);
    else
        rc = p2m_store_pod_set_disabled(st, id, change == CHANGE_DISABLE, err);
    if (rc != 0)
        goto Exit;
    ret = admin_confirm(a, json_pack("{s:b, s:s, s:s}", "ok", 1, "id", id, "state", done[change]), err, "pod %s %s", id,
                        done[change]);
Exit:
    p2m_store_free(st);
    return ret;
}

int pod_rm(admin_t *a, char *err)
{
    return pod_change(a, CHANGE_RM, err);
}

int pod_disable(admin_t *a, char *err)
{
    return pod_change(a, CHANGE_DISABLE, err);
}

int pod_enable(admin_t *a, char *err)
{
    return pod_change(a, CHANGE_ENABLE, err);
}

/* pod set: changes the settings given, together. A change of digits is not one the pod can follow
 * on its own: its provisioning file (or its --digits) still says the old length, so the operator
 * is told to give it a new file. Re-printing the current secret for that would undo the rule that
 * a secret is shown once, when it is drawn; rotate-secret draws a new one with the new length. */
int pod_set(admin_t *a, char *err)
{
    int ret = -1;
    const char *id = a->args[0];
    p2m_store_t *st = NULL;
    p2m_pod_t *pod = NULL;

    if (admin_check_id(id, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_pod_get(st, id, &pod, err) != 0)
        goto Exit;
    if (p2m_store_pod_set_settings(st, id, a->have_token_reuse ? a->token_reuse : -1, a->digits, err) != 0)
        goto Exit;
    const char *reuse = p2m_token_reuse_name(a->have_token_reuse ? a->token_reuse : pod->token_reuse);
    unsigned digits = a->digits != 0 ? a->digits : pod->digits;
    int reprovision = digits != pod->digits;
    if (reprovision)
        fprintf(stderr,
                "pipe2me-admin: pod %s now takes %u-digit codes and refuses %u-digit ones: give it a new provisioning file "
                "with 'pipe2me-admin pod rotate-secret %s -o FILE' (or restart it with --digits %u)\n",
                id, digits, pod->digits, id, digits);
    ret = admin_confirm(a,
                        json_pack("{s:b, s:s, s:s, s:i, s:b}", "ok", 1, "id", id, "token_reuse", reuse, "digits", (int)digits,
                                  "reprovision", reprovision),
                        err, "pod %s: token_reuse %s, digits %u", id, reuse, digits);
Exit:
    p2m_store_pod_free(pod);
    p2m_store_free(st);
    return ret;
}

int pod_series_fetch(admin_t *a, const char *id, json_t **out, int *status, char *err)
{
    int ret = -1, rc;
    p2m_store_t *st = NULL;
    p2m_series_point_t points[P2M_SERIES_MINUTES];
    json_t *minutes = NULL;
    long long minute_now = (long long)time(NULL) / 60; /* the relays' clocks name the buckets too */

    *status = 400;
    if (admin_check_id(id, err) != 0)
        goto Exit;
    *status = 502;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if ((rc = p2m_store_pod_series(st, id, minute_now, points, err)) != 0) {
        *status = rc == 1 ? 404 : 502;
        goto Exit;
    }
    if ((minutes = json_array()) == NULL)
        goto NoJson;
    for (size_t i = 0; i < P2M_SERIES_MINUTES; i++) {
        const p2m_series_point_t *p = &points[i];
        if (json_array_append_new(minutes, json_pack("{s:I, s:I, s:I, s:I, s:I}", "minute", (json_int_t)p->minute, "conns",
                                                     (json_int_t)p->conns, "tunnels", (json_int_t)p->tunnels, "bytes_in",
                                                     (json_int_t)p->bytes_in, "bytes_out", (json_int_t)p->bytes_out)) != 0)
            goto NoJson;
    }
    if ((*out = json_pack("{s:s, s:I, s:O}", "pod", id, "minute_now", (json_int_t)minute_now, "minutes", minutes)) == NULL)
        goto NoJson;
    *status = 200;
    ret = 0;
    goto Exit;
NoJson:
    p2m_err(err, "cannot build the JSON reply");
Exit:
    json_decref(minutes);
    p2m_store_free(st);
    return ret;
}

/* pod series: the JSON as the console serves it, or a line per minute, oldest first. */
int pod_series(admin_t *a, char *err)
{
    json_t *obj = NULL;
    int status, ret = -1;
    if (pod_series_fetch(a, a->args[0], &obj, &status, err) != 0)
        goto Exit;
    if (a->json) {
        ret = admin_json_print(obj, err);
        goto Exit;
    }
    printf("MINUTE                CONNS  TUNNELS  BYTES_IN  BYTES_OUT\n");
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(obj, "minutes"), i, m)
    {
        char when[ADMIN_TIME_LEN];
        json_int_t minute = json_integer_value(json_object_get(m, "minute"));
        printf("%-20s  %5lld  %7lld  %8lld  %9lld\n", admin_time_iso((long long)minute * 60, when),
               (long long)json_integer_value(json_object_get(m, "conns")),
               (long long)json_integer_value(json_object_get(m, "tunnels")),
               (long long)json_integer_value(json_object_get(m, "bytes_in")),
               (long long)json_integer_value(json_object_get(m, "bytes_out")));
    }
    ret = admin_flush_stdout(err);
Exit:
    json_decref(obj);
    return ret;
}
