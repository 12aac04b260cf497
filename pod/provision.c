/* The pod's settings: the command line, the secret file and the provisioning file, checked and
 * bounded before anything else runs. jansson appears only here in the pod (the provisioning file,
 * and the status file the running pod writes, read back by `pipe2me-pod status`).
 *
 * The secret is never copied into an error message: messages about it say what is wrong, not
 * what was there, and jansson's syntax errors (which quote the input) are reduced to a position. */
#include "pod.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/totp.h"

/* --- small helpers ---------------------------------------------------------------------------- */

/* Renders outside text for an error message: printable ASCII kept, the rest as \xNN, cut at 48. */
const char *pod_shown(const char *s, char *buf, size_t cap)
{
    size_t n = 0, i;
    for (i = 0; s[i] != '\0' && n + 8 < cap && i < 48; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            buf[n++] = (char)c;
        else
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
    }
    if (s[i] != '\0' && n + 4 < cap) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* Renders a file name for an error message: printable ASCII kept, any other byte as \xNN (a name
 * holding a newline must not break the one-line reason), cut short to fit cap. */
static const char *path_shown(const char *path, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; path[i] != '\0' && n + 5 < cap; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c >= 0x20 && c < 0x7f)
            buf[n++] = (char)c;
        else
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
    }
    buf[n] = '\0';
    return buf;
}

/* jansson's copies of the provisioning text hold the secret: wipe them when freed. */
static void *wiping_malloc(size_t n)
{
    return malloc(n);
}

static void wiping_free(void *p)
{
    if (p != NULL) {
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
    }
}

void pod_json_wiping_init(void)
{
    static int done;
    if (!done) {
        json_set_alloc_funcs(wiping_malloc, wiping_free);
        done = 1;
    }
}

/* Refuses a file that holds a secret when group or others may read it (mode: its st_mode).
 * Returns 0 or -1 with err naming the file. */
static int private_check(const char *path, mode_t mode, char *err)
{
    char shown_path[P2M_ERR_LEN];
    if ((mode & 077) == 0)
        return 0;
    path_shown(path, shown_path, sizeof(shown_path));
    return p2m_err(err, "%s: holds a secret but group or others may read it (mode %03o): chmod 600 %s", shown_path,
                   (unsigned)(mode & 0777), shown_path);
}

/* Reads a regular file of at most max bytes into a NUL-terminated buffer (wipe and free() it).
 * With `private`, refuses a file group or others may read (it holds a secret). mode (NULL for
 * none) receives the file's st_mode, for a caller that learns only from the text whether it is
 * private. */
char *pod_file_read(const char *path, size_t max, int private, mode_t *mode, size_t *len, char *err)
{
    char *buf = NULL, shown_path[P2M_ERR_LEN];
    struct stat st;
    size_t got = 0;
    int ok = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        p2m_err(err, "%s: %s", path_shown(path, shown_path, sizeof(shown_path)), strerror(errno));
        goto Exit;
    }
    if (fstat(fd, &st) != 0) {
        p2m_err(err, "%s: %s", path_shown(path, shown_path, sizeof(shown_path)), strerror(errno));
        goto Exit;
    }
    if (!S_ISREG(st.st_mode)) {
        p2m_err(err, "%s: not a regular file", path_shown(path, shown_path, sizeof(shown_path)));
        goto Exit;
    }
    if (private && private_check(path, st.st_mode, err) != 0)
        goto Exit;
    if (mode != NULL)
        *mode = st.st_mode;
    if ((size_t)st.st_size > max) {
        p2m_err(err, "%s: larger than %zu bytes", path_shown(path, shown_path, sizeof(shown_path)), max);
        goto Exit;
    }
    if ((buf = malloc(max + 1)) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, max + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            p2m_err(err, "%s: %s", path_shown(path, shown_path, sizeof(shown_path)), strerror(errno));
            goto Exit;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > max) {
            p2m_err(err, "%s: larger than %zu bytes", path_shown(path, shown_path, sizeof(shown_path)), max);
            goto Exit;
        }
    }
    buf[got] = '\0';
    *len = got;
    ok = 1;
Exit:
    if (!ok && buf != NULL) {
        explicit_bzero(buf, max + 1);
        free(buf);
        buf = NULL;
    }
    if (fd >= 0)
        close(fd);
    return buf;
}

/* --- secrets ---------------------------------------------------------------------------------- */

int pod_secret_decode(const char *b32, size_t len, unsigned char *raw, size_t *raw_len, char *err)
{
    char buf[POD_SECRET_FILE_MAX + 1];
    unsigned char out[128];
    size_t n = 0, pad = 0;
    int ret = -1;

    *raw_len = 0;
    if (len == 0)
        return p2m_err(err, "the secret is empty");
    if (len > POD_SECRET_FILE_MAX)
        return p2m_err(err, "the secret is longer than %d characters", POD_SECRET_FILE_MAX);
    for (size_t i = 0; i < len; i++) {
        char c = b32[i];
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad != 0 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'))) {
            p2m_err(err, "the secret is not base32 (RFC 4648: A-Z, 2-7, optional = padding)");
            goto Exit;
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    size_t bytes = n * 5 / 8;
    if (bytes < POD_SECRET_MIN || bytes > POD_SECRET_MAX) {
        p2m_err(err, "the secret must decode to %d to %d bytes (it decodes to %zu)", POD_SECRET_MIN, POD_SECRET_MAX, bytes);
        goto Exit;
    }
    char derr[P2M_ERR_LEN];
    size_t got = 0;
    if (p2m_totp_secret_decode(buf, out, sizeof(out), &got, derr) != 0 || got < POD_SECRET_MIN || got > POD_SECRET_MAX) {
        p2m_err(err, "the secret is not valid base32");
        goto Exit;
    }
    memcpy(raw, out, got);
    *raw_len = got;
    ret = 0;
Exit:
    explicit_bzero(buf, sizeof(buf));
    explicit_bzero(out, sizeof(out));
    return ret;
}

int pod_secret_load(const char *path, unsigned char *raw, size_t *raw_len, char *err)
{
    size_t len = 0;
    char derr[P2M_ERR_LEN], shown_path[P2M_ERR_LEN];
    int ret = -1;
    char *text = pod_file_read(path, POD_SECRET_FILE_MAX, 1, NULL, &len, err);
    if (text == NULL)
        return -1;
    /* One line: the secret, then at most one newline (CRLF tolerated). */
    size_t n = strcspn(text, "\r\n");
    size_t rest = len - n;
    if (memchr(text, '\0', len) != NULL) {
        p2m_err(err, "%s: contains a NUL byte", path_shown(path, shown_path, sizeof(shown_path)));
        goto Exit;
    }
    if (!(rest == 0 || (rest == 1 && text[n] == '\n') || (rest == 2 && text[n] == '\r' && text[n + 1] == '\n'))) {
        p2m_err(err, "%s: expected the base32 secret on one line", path_shown(path, shown_path, sizeof(shown_path)));
        goto Exit;
    }
    if (pod_secret_decode(text, n, raw, raw_len, derr) != 0) {
        p2m_err(err, "%s: %s", path_shown(path, shown_path, sizeof(shown_path)), derr);
        goto Exit;
    }
    ret = 0;
Exit:
    explicit_bzero(text, len);
    free(text);
    return ret;
}

/* --- registrar URL ---------------------------------------------------------------------------- */

int pod_registrar_url_parse(const char *url, char *base, char *host, uint16_t *port, char *err)
{
    size_t len = strlen(url);
    if (len == 0)
        return p2m_err(err, "the registrar URL is empty");
    if (len > P2M_URL_MAX)
        return p2m_err(err, "the registrar URL is longer than %d bytes", P2M_URL_MAX);
    if (strncasecmp(url, "https://", 8) != 0)
        return p2m_err(err, "the registrar URL must start with https:// (TLS is always verified)");
    const char *auth = url + 8;
    size_t alen = strcspn(auth, "/?#");
    const char *path = auth + alen;
    if (alen == 0)
        return p2m_err(err, "the registrar URL has no host");
    if (memchr(auth, '@', alen) != NULL)
        return p2m_err(err, "the registrar URL must not carry user info");
    if (*path == '?' || *path == '#')
        return p2m_err(err, "the registrar URL must not have a query or fragment");
    for (const char *p = path; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._~/-", c) != NULL))
            return p2m_err(err, "the registrar URL's path may hold only [A-Za-z0-9._~/-]");
    }
    size_t plen = strlen(path);
    while (plen > 0 && path[plen - 1] == '/')
        plen--;
    /* Without its trailing slashes: no empty, "." or ".." segment. */
    for (const char *seg = path; seg < path + plen;) {
        const char *next = memchr(seg + 1, '/', (size_t)(path + plen - seg - 1));
        size_t sl = (next != NULL ? (size_t)(next - seg) : (size_t)(path + plen - seg)) - 1;
        if (sl == 0 || (sl == 1 && seg[1] == '.') || (sl == 2 && seg[1] == '.' && seg[2] == '.'))
            return p2m_err(err, "the registrar URL's path is not canonical");
        seg = next != NULL ? next : path + plen;
    }

    /* HOST, HOST:PORT, [V6] or [V6]:PORT */
    char a[P2M_HOST_MAX + 16];
    if (alen >= sizeof(a))
        return p2m_err(err, "the registrar URL's host is longer than %d bytes", P2M_HOST_MAX);
    memcpy(a, auth, alen);
    a[alen] = '\0';
    p2m_hostport_t hp;
    char herr[P2M_ERR_LEN];
    int has_port = a[0] == '[' ? strstr(a, "]:") != NULL : strchr(a, ':') != NULL;
    if (has_port) {
        if (p2m_hostport_parse(a, &hp, herr) != 0)
            return p2m_err(err, "the registrar URL's host: %s", herr);
    } else {
        char withport[P2M_HOST_MAX + 24];
        snprintf(withport, sizeof(withport), "%s:443", a);
        if (p2m_hostport_parse(withport, &hp, herr) != 0)
            return p2m_err(err, "the registrar URL's host: %s", herr);
        hp.port = 0;
    }
    if (hp.host[0] == '\0')
        return p2m_err(err, "the registrar URL has no host");
    if (hp.host[0] == '.' || hp.host[0] == '-')
        return p2m_err(err, "the registrar URL's host is not a name or address");

    memcpy(base, url, (size_t)(path - url) + plen);
    base[(size_t)(path - url) + plen] = '\0';
    memcpy(base, "https://", 8); /* scheme lower-cased */
    snprintf(host, P2M_HOST_MAX + 1, "%s", hp.host);
    *port = hp.port;
    return 0;
}

/* --- provisioning file ------------------------------------------------------------------------ */

static int json_str(json_t *v, const char *key, const char **out, size_t max, char *err)
{
    if (!json_is_string(v))
        return p2m_err(err, "%s: expected a string", key);
    size_t n = json_string_length(v);
    if (n == 0)
        return p2m_err(err, "%s: is empty", key);
    if (n > max)
        return p2m_err(err, "%s: longer than %zu bytes", key, max);
    if (memchr(json_string_value(v), '\0', n) != NULL)
        return p2m_err(err, "%s: contains a NUL byte", key);
    *out = json_string_value(v);
    return 0;
}

/* The keys of a provisioning document: with run's keys beside them, a run file is its own
 * provisioning file, and run's reader leaves these to provision_doc(). */
static const char *const provision_keys[] = {"id", "secret", "labels", "registrar", "domain", "digits", "otpauth", NULL};

/* A provisioning document, parsed, into *p. run: the document is run's file with the secret
 * inline, whose other keys are run's to check (config_keys), except "provision" and "secret_file",
 * which would name a second secret and are refused. Returns 0 or -1 with err; on failure *p holds
 * no secret. */
static int provision_doc(json_t *doc, int run, provision_t *p, char *err)
{
    json_t *v;
    const char *key, *s;
    char e[P2M_ERR_LEN], buf[200];
    int ret = -1, have_id = 0, have_secret = 0, have_labels = 0, have_registrar = 0, have_domain = 0;

    memset(p, 0, sizeof(*p));
    p->digits = P2M_TOTP_DIGITS; /* a file written before "digits" existed */
    if (!json_is_object(doc)) {
        p2m_err(err, "expected a JSON object");
        goto Exit;
    }
    json_object_foreach(doc, key, v)
    {
        if (run && (strcmp(key, "provision") == 0 || strcmp(key, "secret_file") == 0)) {
            p2m_err(err, "%s: the file has its own \"secret\": drop one of them", key);
            goto Exit;
        }
        if (strcmp(key, "id") == 0) {
            if (json_str(v, "id", &s, P2M_ID_MAX, err) != 0)
                goto Exit;
            if (p2m_id_valid(s, strlen(s), e) != 0) {
                p2m_err(err, "id: %s", e);
                goto Exit;
            }
            snprintf(p->id, sizeof(p->id), "%s", s);
            have_id = 1;
        } else if (strcmp(key, "secret") == 0) {
            if (!json_is_string(v)) {
                p2m_err(err, "secret: expected a string");
                goto Exit;
            }
            if (pod_secret_decode(json_string_value(v), json_string_length(v), p->secret, &p->secret_len, e) != 0) {
                p2m_err(err, "secret: %s", e);
                goto Exit;
            }
            have_secret = 1;
        } else if (strcmp(key, "labels") == 0) {
            size_t i;
            json_t *l;
            if (!json_is_array(v) || json_array_size(v) == 0) {
                p2m_err(err, "labels: expected a non-empty array of labels");
                goto Exit;
            }
            if (json_array_size(v) > POD_LABELS_MAX) {
                p2m_err(err, "labels: more than %d labels", POD_LABELS_MAX);
                goto Exit;
            }
            json_array_foreach(v, i, l)
            {
                snprintf(buf, sizeof(buf), "labels[%zu]", i);
                if (json_str(l, buf, &s, P2M_LABEL_MAX, err) != 0)
                    goto Exit;
                if (p2m_label_normalize(s, strlen(s), p->labels[i], e) != 0) {
                    p2m_err(err, "labels[%zu]: %s", i, e);
                    goto Exit;
                }
            }
            p->nlabels = json_array_size(v);
            have_labels = 1;
        } else if (strcmp(key, "registrar") == 0) {
            char host[P2M_HOST_MAX + 1];
            uint16_t port;
            if (json_str(v, "registrar", &s, P2M_URL_MAX, err) != 0)
                goto Exit;
            if (pod_registrar_url_parse(s, p->registrar, host, &port, e) != 0) {
                p2m_err(err, "registrar: %s", e);
                goto Exit;
            }
            have_registrar = 1;
        } else if (strcmp(key, "domain") == 0) {
            if (json_str(v, "domain", &s, P2M_DOMAIN_MAX, err) != 0)
                goto Exit;
            if (p2m_domain_normalize(s, p->domain, e) != 0) {
                p2m_err(err, "domain: %s", e);
                goto Exit;
            }
            have_domain = 1;
        } else if (strcmp(key, "digits") == 0) {
            /* An integer, 6 or 8: "8", 8.0 or 7 are refused rather than guessed at. */
            if (!json_is_integer(v) || (json_integer_value(v) != 6 && json_integer_value(v) != 8)) {
                p2m_err(err, "digits: expected 6 or 8");
                goto Exit;
            }
            p->digits = (unsigned)json_integer_value(v);
        } else if (strcmp(key, "otpauth") == 0) {
            /* Carries the secret again, for authenticator apps; the pod does not need it. */
            if (json_str(v, "otpauth", &s, POD_OTPAUTH_MAX, err) != 0)
                goto Exit;
            if (strncmp(s, "otpauth://totp/", 15) != 0) {
                p2m_err(err, "otpauth: expected an otpauth://totp/ URI");
                goto Exit;
            }
        } else if (!run) {
            p2m_err(err, "unknown key \"%s\"", pod_shown(key, buf, sizeof(buf)));
            goto Exit;
        }
    }
    if (!have_id || !have_secret || !have_labels || !have_registrar || !have_domain) {
        p2m_err(err, "missing key \"%s\"",
                !have_id          ? "id"
                : !have_secret    ? "secret"
                : !have_labels    ? "labels"
                : !have_registrar ? "registrar"
                                  : "domain");
        goto Exit;
    }
    ret = 0;
Exit:
    if (ret != 0) {
        explicit_bzero(p->secret, sizeof(p->secret));
        p->secret_len = 0;
    }
    return ret;
}

int provision_parse(const char *text, size_t len, provision_t *p, char *err)
{
    json_error_t jerr;
    json_t *doc = NULL;
    int ret = -1;

    memset(p, 0, sizeof(*p));
    pod_json_wiping_init();
    if (len > POD_PROVISION_MAX) {
        p2m_err(err, "larger than %d bytes", POD_PROVISION_MAX);
        goto Exit;
    }
    /* jansson's message quotes the input, which may be the secret: keep only the position. */
    if ((doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        p2m_err(err, "not valid JSON (line %d, column %d)", jerr.line, jerr.column);
        goto Exit;
    }
    ret = provision_doc(doc, 0, p, err);
Exit:
    json_decref(doc);
    return ret;
}

int provision_load(const char *path, provision_t *p, char *err)
{
    size_t len = 0;
    char e[P2M_ERR_LEN], shown_path[P2M_ERR_LEN];
    char *text = pod_file_read(path, POD_PROVISION_MAX, 1, NULL, &len, err);
    if (text == NULL) {
        memset(p, 0, sizeof(*p));
        return -1;
    }
    int ret = provision_parse(text, len, p, e);
    if (ret != 0)
        p2m_err(err, "%s: %s", path_shown(path, shown_path, sizeof(shown_path)), e);
    explicit_bzero(text, len);
    free(text);
    return ret;
}

/* --- the command line ------------------------------------------------------------------------- */

#define FOR_REG (1u << POD_CMD_REGISTER)
#define FOR_RUN (1u << POD_CMD_RUN)
#define FOR_STATUS (1u << POD_CMD_STATUS)
#define FOR_ENV (1u << POD_CMD_ENV)
#define FOR_TEST (1u << POD_CMD_TEST)
#define FOR_SETUP (1u << POD_CMD_SETUP)
#define FOR_LIST (1u << POD_CMD_LIST)
#define FOR_SETS (FOR_SETUP | FOR_LIST | FOR_ENV | FOR_RUN | FOR_TEST)

typedef struct opt opt_t;

/* Checks an option's value (NULL for a flag) and stores it in *a, at o->field unless it fills
 * more than one field. Returns 0, or -1 with err naming the option. */
typedef int (*opt_parse_t)(const opt_t *o, const char *v, pod_args_t *a, char *err);

struct opt {
    const char *name;
    const char *arg;   /* the value's name in --help; NULL: a flag, which sets the int at field */
    unsigned cmds;     /* FOR_*: the commands that take it */
    opt_parse_t parse; /* NULL: kept as given, for the checks after the table (the files read last) */
    size_t field;      /* offsetof(pod_args_t, ...) */
    unsigned lo, hi;   /* numbers: the range */
    const char *unit;  /* numbers: "a number", "seconds", "a port" */
    const char *help;  /* register's option list in --help; lines after the first start with the column */
};

#define FIELD(f) offsetof(pod_args_t, f)
#define FIELD_AT(a, o, type) ((type *)(void *)((char *)(a) + (o)->field))

static int parse_number(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_pool_max(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_port(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_path(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_domain(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_protocol(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_digits(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_tls_terminate(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_alpn(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_log_level(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_forward(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_id(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_label(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_registrar(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_proxy(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_url(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_auth(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_protocols(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_local_ports(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_source(const opt_t *o, const char *v, pod_args_t *a, char *err);
static int parse_direct(const opt_t *o, const char *v, pod_args_t *a, char *err);

/* Indexes of options[], which the checks after the table name. */
enum {
    OPT_POOL,
    OPT_POOL_MAX,
    OPT_DRAIN_TIMEOUT,
    OPT_CACERT,
    OPT_PROXY,
    OPT_STATE_DIR,
    OPT_DOMAIN,
    OPT_PROTOCOL,
    OPT_DIGITS,
    OPT_TLS_TERMINATE,
    OPT_ALPN,
    OPT_SOURCE,
    OPT_DIRECT_LAN,
    OPT_DIRECT_PUBLIC,
    OPT_LOG_LEVEL,
    OPT_FORWARD,
    OPT_FORWARD_HTTP,
    OPT_FORWARD_TCP,
    OPT_ID,
    OPT_LABEL,
    OPT_REGISTRAR,
    OPT_JSON,
    OPT_PROVISION,
    OPT_SECRET_FILE,
    OPT_CONFIG,
    OPT_URL,
    OPT_AUTH,
    OPT_PROTOCOLS,
    OPT_LOCAL_PORTS,
    OPT_DIR,
    OPT_COUNT
};

/* Every option. Values are checked in this order (what a check needs comes before it: --pool
 * before --pool-max, --state-dir and --protocol before --tls-terminate), and --help lists them in
 * it. */
static const opt_t options[OPT_COUNT] = {
    [OPT_POOL] = {"pool", "N", FOR_REG | FOR_ENV, parse_number, FIELD(pool), 1, POD_POOL_MAX, "a number",
                  "idle pre-connections kept at rest (the floor), 1-1024 (default 4)"},
    [OPT_POOL_MAX] = {"pool-max", "M", FOR_REG | FOR_ENV, parse_pool_max, FIELD(pool_max), 1, POD_POOL_MAX, "a number",
                      "the most the pool grows to while consumers wait or use it faster than\n"
                      "it refills, N-1024 (default 256, or N when higher); it shrinks back to N\n"
                      "within 16 s of the last demand"},
    [OPT_DRAIN_TIMEOUT] = {"drain-timeout", "S", FOR_REG | FOR_ENV, parse_number, FIELD(drain_timeout), 0, POD_DRAIN_MAX, "seconds",
                           "on SIGTERM or SIGINT, give the idle pre-connections back and let joined\n"
                           "tunnels finish for up to S seconds, 0-3600 (default 10; 0: cut them at\n"
                           "once); a second signal cuts them at once"},
    [OPT_CACERT] = {"cacert", "FILE", FOR_REG | FOR_ENV | FOR_SETUP, parse_path, FIELD(cacert), 0, 0, NULL,
                    "the registrar's CA certificate (GET https://DOMAIN/cacert)"},
    [OPT_PROXY] = {"proxy", "URL", FOR_REG | FOR_SETUP, parse_proxy, FIELD(proxy), 0, 0, NULL,
                   "reach the registrar and the relay through this HTTP proxy (CONNECT),\n"
                   "http://[USER:PASSWORD@]HOST[:PORT] (default: https_proxy or HTTPS_PROXY,\n"
                   "less the hosts no_proxy or NO_PROXY names)"},
    [OPT_STATE_DIR] = {"state-dir", "DIR", FOR_REG | FOR_RUN | FOR_ENV | FOR_STATUS, parse_path, FIELD(state_dir), 0, 0, NULL,
                       "write DIR/status.json every second and DIR/pod.pid"},
    [OPT_DOMAIN] = {"domain", "DOMAIN", FOR_REG | FOR_ENV, parse_domain, FIELD(domain), 0, 0, NULL,
                    "the consumers' domain (default: the provisioning file's, else the registrar's host)"},
    [OPT_PROTOCOL] = {"protocol", "PROTO", FOR_REG | FOR_ENV, parse_protocol, FIELD(proto), 0, 0, NULL,
                      "what HOST:PORT serves: https (default: TLS for LABEL.DOMAIN), http or tcp"},
    [OPT_DIGITS] = {"digits", "6|8", FOR_REG | FOR_ENV, parse_digits, FIELD(digits), 0, 0, NULL,
                    "with --secret-file: the length of the pod's one-time passwords, as\n"
                    "pipe2me-admin pod show says (default 6; a provisioning file says its own)"},
    [OPT_TLS_TERMINATE] = {"tls-terminate", NULL, FOR_REG | FOR_ENV, parse_tls_terminate, FIELD(tls_terminate), 0, 0, NULL,
                           "serve TLS for LABEL.DOMAIN in the pod, in front of a plain HOST:PORT, with a\n"
                           "certificate from the registrar kept and renewed in DIR/tls/\n"
                           "(needs --state-dir, a domain and --protocol https)"},
    [OPT_ALPN] = {"alpn", "LIST", FOR_REG | FOR_ENV, parse_alpn, FIELD(alpn), 0, POD_ALPN_MAX, NULL,
                  "with --tls-terminate: the ALPN names HOST:PORT speaks, comma-separated\n"
                  "(default http/1.1; h2,http/1.1 for a service that speaks h2c)"},
    [OPT_SOURCE] = {"source", "ADDR", FOR_REG, parse_source, FIELD(source), 0, 0, NULL,
                    "the local address registrations and pre-connections leave from (an IPv4\n"
                    "or IPv6 literal), on a machine with several: the relay takes pre-connections\n"
                    "only from the address that registered"},
    [OPT_DIRECT_LAN] = {"direct-lan", "ADDR:PORT", FOR_REG, parse_direct, FIELD(direct_lan), 0, 0, NULL,
                        "also listen at ADDR:PORT in the pod's own network (an IPv4 literal or a\n"
                        "bracketed IPv6 one) and serve there what a tunnel serves; the registration\n"
                        "declares it, for consumers in the same network (LABEL.lan.DOMAIN)"},
    [OPT_DIRECT_PUBLIC] = {"direct-public", "ADDR:PORT", FOR_REG, parse_direct, FIELD(direct_public), 0, 0, NULL,
                           "with --direct-lan: the router's public address and port that the operator\n"
                           "forwards to the --direct-lan listener; the registration declares it, for\n"
                           "the registrar to check and publish (LABEL.direct.DOMAIN)"},
    [OPT_LOG_LEVEL] = {"log-level", "LEVEL", FOR_REG | FOR_RUN | FOR_TEST, parse_log_level, FIELD(log_level), 0, 0, NULL,
                       "debug, info (default), warn or error"},
    [OPT_FORWARD] = {"forward", "HOST:PORT", FOR_REG | FOR_ENV, parse_forward, FIELD(forward), 0, 0, NULL, NULL},
    [OPT_FORWARD_HTTP] = {"forward-http", "PORT", FOR_TEST, parse_port, FIELD(http_port), 1, 65535, "a port", NULL},
    [OPT_FORWARD_TCP] = {"forward-tcp", "PORT", FOR_TEST, parse_port, FIELD(tcp_port), 1, 65535, "a port", NULL},
    [OPT_ID] = {"id", "ID", FOR_REG | FOR_ENV, parse_id, FIELD(id), 0, 0, NULL, NULL},
    [OPT_LABEL] = {"label", "LABEL", FOR_REG | FOR_ENV | FOR_SETUP, parse_label, FIELD(label), 0, 0, NULL, NULL},
    [OPT_REGISTRAR] = {"registrar", "URL", FOR_REG | FOR_ENV | FOR_SETUP, parse_registrar, FIELD(registrar), 0, 0, NULL, NULL},
    [OPT_JSON] = {"json", NULL, FOR_STATUS | FOR_LIST, NULL, FIELD(json), 0, 0, NULL, NULL},
    [OPT_PROVISION] = {"provision", "FILE", FOR_REG | FOR_ENV, NULL, 0, 0, 0, NULL, NULL},
    [OPT_SECRET_FILE] = {"secret-file", "FILE", FOR_REG | FOR_ENV, NULL, 0, 0, 0, NULL, NULL},
    [OPT_CONFIG] = {"config", "FILE", FOR_RUN | FOR_TEST, NULL, 0, 0, 0, NULL, NULL},
    /* Only in run files (setup writes it): no command takes it. */
    [OPT_URL] = {"url", "URL", 0, parse_url, FIELD(url), 0, 0, NULL, NULL},
    [OPT_AUTH] = {"auth", "TOKEN", FOR_SETUP, parse_auth, FIELD(auth), 0, 0, NULL, NULL},
    [OPT_PROTOCOLS] = {"protocols", "LIST", FOR_SETUP, parse_protocols, 0, 0, 0, NULL, NULL},
    [OPT_LOCAL_PORTS] = {"local-ports", "LIST", FOR_SETUP, parse_local_ports, 0, 0, 0, NULL, NULL},
    [OPT_DIR] = {"dir", "DIR", FOR_SETS, parse_path, FIELD(dir), 0, 0, NULL, NULL},
};

/* A decimal number lo..hi, digits only. */
static int parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    unsigned long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_number(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    if (parse_uint(v, o->lo, o->hi, FIELD_AT(a, o, unsigned)) != 0)
        return p2m_err(err, "--%s: expected %s from %u to %u", o->name, o->unit, o->lo, o->hi);
    return 0;
}

/* The ceiling: at least the floor (--pool, checked before). */
static int parse_pool_max(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    if (parse_number(o, v, a, err) != 0)
        return -1;
    if (a->pool_max < a->pool)
        return p2m_err(err, "--pool-max %u is below --pool %u: the ceiling must be at least the floor", a->pool_max, a->pool);
    return 0;
}

static int parse_port(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    unsigned port;
    if (parse_uint(v, o->lo, o->hi, &port) != 0)
        return p2m_err(err, "--%s: expected %s from %u to %u", o->name, o->unit, o->lo, o->hi);
    *FIELD_AT(a, o, uint16_t) = (uint16_t)port;
    return 0;
}

/* A path of 1..POD_PATH_MAX bytes, copied into a POD_PATH_MAX + 1 byte field. */
static int parse_path(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    size_t n = strlen(v);
    if (n == 0)
        return p2m_err(err, "--%s: empty path", o->name);
    if (n > POD_PATH_MAX)
        return p2m_err(err, "--%s: path longer than %d bytes", o->name, POD_PATH_MAX);
    memcpy(FIELD_AT(a, o, char), v, n + 1);
    return 0;
}

static int parse_domain(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (p2m_domain_normalize(v, FIELD_AT(a, o, char), e) != 0)
        return p2m_err(err, "--%s: %s", o->name, e);
    return 0;
}

static int parse_protocol(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (p2m_proto_parse(v, strlen(v), FIELD_AT(a, o, p2m_proto_t), e) != 0)
        return p2m_err(err, "--%s: expected https, http or tcp", o->name);
    return 0;
}

static int parse_digits(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    if (strcmp(v, "6") != 0 && strcmp(v, "8") != 0)
        return p2m_err(err, "--%s: expected 6 or 8", o->name);
    *FIELD_AT(a, o, unsigned) = (unsigned)(v[0] - '0');
    return 0;
}

/* The flag is set while scanning; here what it needs (checked before it in the table). */
static int parse_tls_terminate(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    (void)o;
    (void)v;
    if (a->proto != P2M_PROTO_HTTPS)
        return p2m_err(err, "--tls-terminate serves TLS: it needs --protocol https, not %s", p2m_proto_name(a->proto));
    if (a->state_dir[0] == '\0')
        return p2m_err(err, "--tls-terminate needs --state-dir DIR (the key and certificate are kept in DIR/tls/)");
    return 0;
}

/* --alpn: comma-separated protocol names as TLS's ALPN carries them (RFC 7301: 1..255 bytes each),
 * here printable ASCII without spaces, quotes or backslashes (the list is logged), no empty item,
 * at most o->hi (POD_ALPN_MAX) bytes in all. Only with --tls-terminate (set while scanning). */
static int parse_alpn(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char buf[200];
    size_t n = strlen(v);
    if (!a->tls_terminate)
        return p2m_err(err, "--alpn is for --tls-terminate: the names the local service speaks behind the pod's TLS");
    if (n == 0)
        return p2m_err(err, "--alpn: empty; expected names like h2,http/1.1");
    if (n > o->hi)
        return p2m_err(err, "--alpn: longer than %u bytes", o->hi);
    for (size_t i = 0, item = 0; i <= n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == ',' || c == '\0') {
            if (item == 0)
                return p2m_err(err, "--alpn: empty name in \"%s\"", pod_shown(v, buf, sizeof(buf)));
            if (item > 255)
                return p2m_err(err, "--alpn: a name is longer than 255 bytes");
            item = 0;
            continue;
        }
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return p2m_err(err, "--alpn: \"%s\" holds a space, quote, backslash or a byte that is not printable ASCII",
                           pod_shown(v, buf, sizeof(buf)));
        item++;
    }
    memcpy(FIELD_AT(a, o, char), v, n + 1);
    return 0;
}

static int parse_log_level(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    if (p2m_log_level_parse(v, FIELD_AT(a, o, p2m_log_level_t)) != 0)
        return p2m_err(err, "--%s: expected debug, info, warn or error", o->name);
    return 0;
}

static int parse_forward(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    p2m_hostport_t *f = FIELD_AT(a, o, p2m_hostport_t);
    if (p2m_hostport_parse(v, f, e) != 0)
        return p2m_err(err, "--%s: %s", o->name, e);
    if (f->host[0] == '\0') /* ":PORT" or "PORT": this machine */
        snprintf(f->host, sizeof(f->host), "127.0.0.1");
    a->have_forward = 1;
    return 0;
}

/* An address literal of family AF_INET or AF_INET6 (len bytes at s, no brackets) that a pod may
 * bind and a registrar may publish: not the unspecified address, not multicast or broadcast.
 * Writes its canonical text (inet_ntop) to out (INET6_ADDRSTRLEN bytes). Returns 0 or -1 with err. */
static int addr_literal(const char *s, size_t len, int family, char *out, char *err)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];
    if (len == 0)
        return p2m_err(err, "no address");
    if (len >= sizeof(buf))
        return p2m_err(err, "not an IP%s address", family == AF_INET ? "v4" : "v6");
    memcpy(buf, s, len);
    buf[len] = '\0';
    /* inet_pton is strict: no names, no octal or short IPv4 forms, no IPv6 zone. */
    if (inet_pton(family, buf, bin) != 1)
        return p2m_err(err, "not an IP%s address (a literal, not a name)", family == AF_INET ? "v4" : "v6");
    if (family == AF_INET) {
        uint32_t v4 = ((uint32_t)bin[0] << 24) | ((uint32_t)bin[1] << 16) | ((uint32_t)bin[2] << 8) | bin[3];
        if (v4 == 0 || v4 == 0xffffffffu || (v4 >> 28) == 0xe)
            return p2m_err(err, "%s is not the address of one host", buf);
    } else {
        static const unsigned char zero[16];
        if (memcmp(bin, zero, 16) == 0 || bin[0] == 0xff)
            return p2m_err(err, "%s is not the address of one host", buf);
    }
    if (inet_ntop(family, bin, out, INET6_ADDRSTRLEN) == NULL)
        return p2m_err(err, "not an IP address");
    return 0;
}

int pod_source_parse(const char *s, char *out, char *err)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']')
        return addr_literal(s + 1, n - 2, AF_INET6, out, err);
    return addr_literal(s, n, strchr(s, ':') != NULL ? AF_INET6 : AF_INET, out, err);
}

/* The grammar and the one-host rule are the registrar's (lib/service.c): a pod accepts exactly
 * what its registration may declare. */
int pod_direct_addr_parse(const char *s, p2m_hostport_t *out, char *err)
{
    unsigned port = 0;
    memset(out, 0, sizeof(*out));
    if (p2m_direct_addr_parse(s, NULL, out->host, &port, err) != 0)
        return -1;
    out->port = (uint16_t)port;
    return 0;
}

/* --source: kept as its canonical text; run.c turns it into the address sockets bind. */
static int parse_source(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (pod_source_parse(v, FIELD_AT(a, o, char), e) != 0)
        return p2m_err(err, "--%s: %s", o->name, e);
    return 0;
}

/* --direct-lan and --direct-public. --direct-public names the router's port forwarded to the
 * --direct-lan listener (checked before it in the table): without that listener there is nothing
 * behind it. */
static int parse_direct(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (pod_direct_addr_parse(v, FIELD_AT(a, o, p2m_hostport_t), e) != 0)
        return p2m_err(err, "--%s: %s", o->name, e);
    if (o == &options[OPT_DIRECT_PUBLIC] && a->direct_lan.host[0] == '\0') {
        memset(&a->direct_public, 0, sizeof(a->direct_public));
        return p2m_err(err, "--direct-public needs --direct-lan ADDR:PORT: the router forwards the public port to that listener");
    }
    return 0;
}

static int parse_id(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (p2m_id_valid(v, strlen(v), e) != 0)
        return p2m_err(err, "--%s: %s", o->name, e);
    snprintf(FIELD_AT(a, o, char), sizeof(a->id), "%s", v);
    return 0;
}

static int parse_label(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (p2m_label_normalize(v, strlen(v), FIELD_AT(a, o, char), e) != 0)
        return p2m_err(err, "--%s: %s", o->name, e);
    return 0;
}

/* Fills the URL's host and port too. */
static int parse_registrar(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (pod_registrar_url_parse(v, FIELD_AT(a, o, char), a->reg_host, &a->reg_port, e) != 0)
        return p2m_err(err, "--%s: %s", o->name, e);
    return 0;
}

/* A proxy URL (proxy.c); its error never quotes the password. */
static int parse_proxy(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (pod_proxy_url_parse(v, FIELD_AT(a, o, pod_proxy_t), e) != 0)
        return p2m_err(err, "--%s: %s", o->name, e);
    if (strlen(v) > P2M_URL_MAX)
        return p2m_err(err, "--%s: longer than %d bytes", o->name, P2M_URL_MAX);
    snprintf(a->proxy_arg, sizeof(a->proxy_arg), "%s", v);
    return 0;
}

/* A run file's "url": http:// or https://, printable ASCII without spaces, quotes or backslashes
 * (list and env print it), at most P2M_URL_MAX bytes. */
static int parse_url(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    size_t n = strlen(v);
    if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
        return p2m_err(err, "--%s: expected an http:// or https:// URL", o->name);
    if (n > P2M_URL_MAX)
        return p2m_err(err, "--%s: longer than %d bytes", o->name, P2M_URL_MAX);
    for (size_t i = 0; i < n; i++)
        if (v[i] <= ' ' || v[i] > '~' || v[i] == '"' || v[i] == '\\' || v[i] == '\'')
            return p2m_err(err, "--%s: a space, quote, backslash or non-ASCII byte at %zu", o->name, i);
    memcpy(FIELD_AT(a, o, char), v, n + 1);
    return 0;
}

/* A setup token: 1..POD_AUTH_MAX bytes of RFC 6750's b64token alphabet (it goes into an
 * Authorization header as it is: no space, quote or line break gets there). Never quoted back. */
static int parse_auth(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    size_t n = strlen(v);
    if (n == 0 || n > POD_AUTH_MAX)
        return p2m_err(err, "--%s: expected a setup token of 1 to %d characters (pipe2me-admin token add)", o->name, POD_AUTH_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-._~+/=", c) != NULL))
            return p2m_err(err, "--%s: the token has a character a setup token never has, at %zu", o->name, i);
    }
    memcpy(FIELD_AT(a, o, char), v, n + 1);
    return 0;
}

/* Splits a comma-separated list into at most max items of at most 15 bytes each, none empty.
 * Returns the count or -1 with err naming the option. */
static int split_list(const opt_t *o, const char *v, char items[][16], size_t max, char *err)
{
    size_t n = 0;
    for (const char *p = v;; p++) {
        size_t len = strcspn(p, ",");
        if (len == 0)
            return p2m_err(err, "--%s: an empty item in the list", o->name);
        if (len > 15)
            return p2m_err(err, "--%s: item %zu is too long", o->name, n + 1);
        if (n == max)
            return p2m_err(err, "--%s: more than %zu items", o->name, max);
        memcpy(items[n], p, len);
        items[n++][len] = '\0';
        p += len;
        if (*p == '\0')
            break;
    }
    return (int)n;
}

/* setup --protocols https,http,tcp: each at most once, in the order the services are made. */
static int parse_protocols(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char items[POD_SETUP_SERVICES_MAX][16], e[P2M_ERR_LEN];
    int n = split_list(o, v, items, POD_SETUP_SERVICES_MAX, err);
    if (n < 0 || n > POD_SETUP_SERVICES_MAX) /* the bound split_list keeps, said where gcc sees it */
        return -1;
    for (int i = 0; i < n; i++) {
        if (p2m_proto_parse(items[i], strlen(items[i]), &a->protos[i], e) != 0)
            return p2m_err(err, "--%s: item %d: expected https, http or tcp", o->name, i + 1);
        for (int j = 0; j < i; j++)
            if (a->protos[j] == a->protos[i])
                return p2m_err(err, "--%s: %s given twice", o->name, p2m_proto_name(a->protos[i]));
    }
    a->nprotos = (size_t)n;
    return 0;
}

/* setup --local-ports A,B: the ports on 127.0.0.1 the services forward to, one per protocol. */
static int parse_local_ports(const opt_t *o, const char *v, pod_args_t *a, char *err)
{
    char items[POD_SETUP_SERVICES_MAX][16];
    int n = split_list(o, v, items, POD_SETUP_SERVICES_MAX, err);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        unsigned port;
        if (parse_uint(items[i], 1, 65535, &port) != 0)
            return p2m_err(err, "--%s: item %d: expected a port from 1 to 65535", o->name, i + 1);
        a->local_ports[i] = (uint16_t)port;
    }
    a->nports = (size_t)n;
    return 0;
}

int pod_args_proxy_env(pod_args_t *a, const char *https_proxy, const char *https_proxy_uc, const char *no_proxy,
                       const char *no_proxy_uc, char *err)
{
    char e[P2M_ERR_LEN];
    if (a->proxy.host[0] != '\0')
        return 0;
    /* As curl: the lower-case name first, an empty value as none. */
    const char *name = "https_proxy", *v = https_proxy;
    if (v == NULL || v[0] == '\0') {
        name = "HTTPS_PROXY";
        v = https_proxy_uc;
    }
    if (v == NULL || v[0] == '\0')
        return 0;
    if (pod_proxy_url_parse(v, &a->proxy, e) != 0)
        return p2m_err(err, "the environment's %s: %s", name, e);
    a->proxy_env = 1;
    name = "no_proxy";
    v = no_proxy;
    if (v == NULL || v[0] == '\0') {
        name = "NO_PROXY";
        v = no_proxy_uc;
    }
    if (v != NULL && strlen(v) > POD_NO_PROXY_MAX) {
        pod_proxy_wipe(&a->proxy);
        memset(&a->proxy, 0, sizeof(a->proxy));
        a->proxy_env = 0;
        return p2m_err(err, "the environment's %s is longer than %d bytes", name, POD_NO_PROXY_MAX);
    }
    snprintf(a->no_proxy, sizeof(a->no_proxy), "%s", v != NULL ? v : "");
    return 0;
}

const pod_proxy_t *pod_args_use_proxy(const pod_args_t *a, const char *host)
{
    if (a->proxy.host[0] == '\0' || (a->proxy_env && pod_proxy_bypass(a->no_proxy, host)))
        return NULL;
    return &a->proxy;
}

static pod_cmd_t parse_command(const char *s)
{
    static const struct {
        const char *name;
        pod_cmd_t cmd;
    } cmds[] = {{"register", POD_CMD_REGISTER}, {"run", POD_CMD_RUN},     {"status", POD_CMD_STATUS},    {"env", POD_CMD_ENV},
                {"test", POD_CMD_TEST},         {"setup", POD_CMD_SETUP}, {"list", POD_CMD_LIST},        {"help", POD_CMD_HELP},
                {"-h", POD_CMD_HELP},           {"--help", POD_CMD_HELP}, {"--version", POD_CMD_VERSION}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(s, cmds[i].name) == 0)
            return cmds[i].cmd;
    return 0;
}

void pod_args_wipe(pod_args_t *a)
{
    explicit_bzero(a->secret, sizeof(a->secret));
    a->secret_len = 0;
    explicit_bzero(a->auth, sizeof(a->auth));
    explicit_bzero(a->proxy_arg, sizeof(a->proxy_arg));
    pod_proxy_wipe(&a->proxy);
}

void pod_args_usage(FILE *out)
{
    fputs("Usage: pipe2me-pod COMMAND [OPTIONS]\n"
          "\n"
          "  register --provision FILE --forward HOST:PORT [--label LABEL] [OPTIONS]\n"
          "  register --registrar URL --id ID --secret-file FILE --label LABEL --forward HOST:PORT [OPTIONS]\n"
          "        keep --pool idle pre-connections to the relay and join each consumer to HOST:PORT\n",
          out);
    for (size_t o = 0; o < OPT_COUNT; o++) {
        char flag[32];
        const char *h = options[o].help;
        if (h == NULL)
            continue;
        snprintf(flag, sizeof(flag), "--%s%s%s", options[o].name, options[o].arg != NULL ? " " : "",
                 options[o].arg != NULL ? options[o].arg : "");
        /* A flag too wide for its column gets a line of its own. */
        int own_line = strlen(flag) >= 20;
        if (own_line)
            fprintf(out, "        %s\n", flag);
        else
            fprintf(out, "        %-20s", flag);
        for (size_t n; *h != '\0'; h += n + (h[n] == '\n')) {
            n = strcspn(h, "\n");
            fprintf(out, "%s%.*s\n", h == options[o].help && !own_line ? "" : "                            ", (int)n, h);
        }
    }
    fputs("  run --config FILE [--state-dir DIR] [--log-level LEVEL]\n"
          "        run the services of a JSON file in one process, each with its own pool (pipe2me-pod(1)\n"
          "        lists its keys; what /etc/pipe2me/pods/NAME.json holds for the pipe2me-pod@NAME\n"
          "        service); SIGHUP reads it again: services added start, removed ones drain, the others\n"
          "        keep their tunnels; --state-dir and --log-level given here win over the file's\n"
          "  status --state-dir DIR [--json]\n"
          "        the pool and traffic of the pod running with DIR, of each service for run (exit 1 when\n"
          "        it is not running)\n"
          "  env --provision FILE | --registrar URL --id ID --label LABEL [--domain DOMAIN]\n"
          "        shell assignments: P2M_ID, P2M_LABEL, P2M_DOMAIN, P2M_URL, P2M_REGISTRAR, ... (never the secret)\n"
          "  test [--forward-http PORT] [--forward-tcp PORT]\n"
          "        HTTP echo and TCP echo services on 127.0.0.1, to check a tunnel with\n"
          "  setup --registrar URL --auth TOKEN [--protocols https,http,tcp] --local-ports PORT[,PORT...]\n"
          "        [--label LABEL] [--dir DIR] [--cacert FILE] [--proxy URL]\n"
          "        redeem a setup token (pipe2me-admin token add) for a new pod, one service per protocol\n"
          "        (default https) forwarding to 127.0.0.1:PORT, https ones with TLS served by the pod; keep\n"
          "        it as a tunnel set in DIR/LABEL.DOMAIN/ (the run file pod.json, mode 0600, and the\n"
          "        registrar's CA cacert.pem) and print LABEL.DOMAIN. DIR: ~/.pipe2me/pods, or\n"
          "        " POD_SETS_ROOT_DIR " for root\n"
          "  list [--dir DIR] [--json]\n"
          "        every tunnel set in DIR: its services, their URLs and local ports, and whether it runs\n"
          "  env LABEL.DOMAIN [--dir DIR]\n"
          "        a tunnel set's shell assignments: P2M_FQDN, P2M_URL_HTTPS, P2M_LOCAL_HTTPS, P2M_CACERT, ...\n"
          "  run LABEL.DOMAIN [--dir DIR] [--log-level LEVEL]\n"
          "        run a tunnel set (its pod.json, state in its state/)\n"
          "  test LABEL.DOMAIN [--dir DIR] | test --config FILE\n"
          "        run a tunnel set or run file with echo services on its local ports: HTTP echo for https\n"
          "        and http services (answering each request with itself), TCP echo for tcp ones\n"
          "  --help, --version\n"
          "\n"
          "The secret file holds the base32 TOTP secret on one line and must not be readable by group or\n"
          "others; so must the provisioning file (pipe2me-admin pod add -o FILE) and a run file that holds\n"
          "the secret itself (pipe2me-admin pod add -o FILE --service ...). Errors: one line on stderr,\n"
          "exit status 2.\n",
          out);
}

/* Splits argv[2..] into the options' values (val, NULL when not given) and sets the flags given.
 * Returns 0, 1 for -h or --help (a->cmd set), or -1 with err. */
static int args_scan(int argc, char **argv, const char **val, pod_args_t *a, char *err)
{
    int seen[OPT_COUNT] = {0};
    char buf[200];
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            a->cmd = POD_CMD_HELP;
            return 1;
        }
        if (arg[0] != '-' && a->set[0] == '\0' && (a->cmd == POD_CMD_ENV || a->cmd == POD_CMD_RUN || a->cmd == POD_CMD_TEST)) {
            char e[P2M_ERR_LEN];
            if (p2m_domain_normalize(arg, a->set, e) != 0 || strchr(a->set, '.') == NULL) {
                a->set[0] = '\0';
                return p2m_err(err, "%s: \"%s\" is not a tunnel set's LABEL.DOMAIN (pipe2me-pod list shows them)", argv[1],
                               pod_shown(arg, buf, sizeof(buf)));
            }
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return p2m_err(err, "unexpected argument \"%s\"", pod_shown(arg, buf, sizeof(buf)));
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        int o;
        for (o = 0; o < OPT_COUNT; o++)
            if (strlen(options[o].name) == nlen && strncmp(options[o].name, name, nlen) == 0)
                break;
        if (o == OPT_COUNT || !(options[o].cmds & (1u << a->cmd)))
            return p2m_err(err, "%s: unknown option \"%s\"", argv[1], pod_shown(arg, buf, sizeof(buf)));
        if (seen[o])
            return p2m_err(err, "--%s given twice", options[o].name);
        seen[o] = 1;
        if (options[o].arg == NULL) {
            if (eq != NULL)
                return p2m_err(err, "--%s takes no value", options[o].name);
            *FIELD_AT(a, &options[o], int) = 1;
            val[o] = "";
            continue;
        }
        if (eq != NULL) {
            val[o] = eq + 1;
        } else {
            if (i + 1 >= argc)
                return p2m_err(err, "--%s needs a value", options[o].name);
            val[o] = argv[++i];
        }
    }
    return 0;
}

/* What a provisioning document gives a pod: its ID, secret, digits, and the registrar, domain and
 * label the options did not give. Returns 0 or -1 with err. */
static int provision_apply(const provision_t *prov, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    snprintf(a->id, sizeof(a->id), "%s", prov->id);
    memcpy(a->secret, prov->secret, prov->secret_len);
    a->secret_len = prov->secret_len;
    a->digits = prov->digits;
    if (a->registrar[0] == '\0' && pod_registrar_url_parse(prov->registrar, a->registrar, a->reg_host, &a->reg_port, e) != 0)
        return p2m_err(err, "registrar: %s", e); /* cannot happen: checked when parsed */
    if (a->domain[0] == '\0')
        snprintf(a->domain, sizeof(a->domain), "%s", prov->domain);
    /* Another label than the file's is the registrar's to accept: one the pod was given or
     * shares since the file was written (pipe2me-admin label add, label share), or a 403. */
    if (a->label[0] == '\0')
        snprintf(a->label, sizeof(a->label), "%s", prov->labels[0]);
    return 0;
}

/* register and env: the provisioning file or the secret file supplies what the flags do not; run:
 * inline (non-NULL) is its file's own provisioning. Returns 0 or -1 with err. */
static int args_files(const char **val, const provision_t *inline_prov, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    provision_t *prov = NULL;
    int ret = -1;
    if (inline_prov != NULL) {
        if (provision_apply(inline_prov, a, err) != 0)
            goto Exit;
    } else if (val[OPT_PROVISION] != NULL) {
        if (val[OPT_ID] != NULL || val[OPT_SECRET_FILE] != NULL)
            return p2m_err(err, "--provision gives the ID and secret: drop --id and --secret-file");
        if (val[OPT_DIGITS] != NULL)
            return p2m_err(err, "--provision gives the digits: drop --digits");
        if (strlen(val[OPT_PROVISION]) > POD_PATH_MAX)
            return p2m_err(err, "--provision: path longer than %d bytes", POD_PATH_MAX);
        if ((prov = malloc(sizeof(*prov))) == NULL)
            return p2m_err(err, "out of memory");
        if (provision_load(val[OPT_PROVISION], prov, e) != 0) {
            p2m_err(err, "--provision %s", e);
            goto Exit;
        }
        if (provision_apply(prov, a, e) != 0) {
            p2m_err(err, "--provision: %s", e);
            goto Exit;
        }
    } else if (a->cmd != POD_CMD_ENV && val[OPT_SECRET_FILE] != NULL) {
        if (strlen(val[OPT_SECRET_FILE]) > POD_PATH_MAX) {
            p2m_err(err, "--secret-file: path longer than %d bytes", POD_PATH_MAX);
            goto Exit;
        }
        if (pod_secret_load(val[OPT_SECRET_FILE], a->secret, &a->secret_len, e) != 0) {
            p2m_err(err, "--secret-file %s", e);
            goto Exit;
        }
    }
    ret = 0;
Exit:
    if (prov != NULL) {
        explicit_bzero(prov, sizeof(*prov));
        free(prov);
    }
    return ret;
}

/* What each command needs in the end. Returns 0 or -1 with err. */
static int args_complete(const char *cmd, pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN];
    if (a->registrar[0] == '\0')
        return p2m_err(err, "%s needs --registrar URL or --provision FILE", cmd);
    if (a->id[0] == '\0')
        return p2m_err(err, "%s needs --id ID or --provision FILE", cmd);
    if (a->label[0] == '\0')
        return p2m_err(err, "%s needs --label LABEL or --provision FILE", cmd);
    if (a->cmd != POD_CMD_ENV && a->secret_len == 0)
        return p2m_err(err, "%s needs --secret-file FILE or --provision FILE", cmd);
    if (a->cmd != POD_CMD_ENV && !a->have_forward)
        return p2m_err(err, "%s needs --forward HOST:PORT (the local service)", cmd);
    if (a->tls_terminate && a->domain[0] == '\0')
        return p2m_err(err, "--tls-terminate needs the domain the certificate is for: --domain DOMAIN or --provision FILE");
    /* The domain consumers use: the registrar's host unless told otherwise. */
    if (a->domain[0] == '\0' && p2m_domain_normalize(a->reg_host, a->domain, e) != 0)
        a->domain[0] = '\0';
    return 0;
}

/* --- run's configuration file ------------------------------------------------------------------ */

#define POD_CONFIG_MAX (64 * 1024)

/* The file's keys: each is an option of register, under its name with '_' for '-'. */
typedef struct {
    const char *key;
    int opt;
    json_type type; /* JSON_STRING, JSON_INTEGER or JSON_TRUE (a boolean) */
} config_key_t;

static const config_key_t config_pod_keys[] = {
    {"registrar", OPT_REGISTRAR, JSON_STRING},
    {"id", OPT_ID, JSON_STRING},
    {"secret_file", OPT_SECRET_FILE, JSON_STRING},
    {"provision", OPT_PROVISION, JSON_STRING},
    {"digits", OPT_DIGITS, JSON_INTEGER},
    {"cacert", OPT_CACERT, JSON_STRING},
    {"state_dir", OPT_STATE_DIR, JSON_STRING},
    {"domain", OPT_DOMAIN, JSON_STRING},
    {"drain_timeout", OPT_DRAIN_TIMEOUT, JSON_INTEGER},
    {"log_level", OPT_LOG_LEVEL, JSON_STRING},
    {"proxy", OPT_PROXY, JSON_STRING},
    {"source", OPT_SOURCE, JSON_STRING},
};

static const config_key_t config_service_keys[] = {
    {"label", OPT_LABEL, JSON_STRING},
    {"protocol", OPT_PROTOCOL, JSON_STRING},
    {"forward", OPT_FORWARD, JSON_STRING},
    {"tls_terminate", OPT_TLS_TERMINATE, JSON_TRUE},
    {"alpn", OPT_ALPN, JSON_STRING},
    {"pool", OPT_POOL, JSON_INTEGER},
    {"pool_max", OPT_POOL_MAX, JSON_INTEGER},
    {"url", OPT_URL, JSON_STRING},
    {"direct_lan", OPT_DIRECT_LAN, JSON_STRING},
    {"direct_public", OPT_DIRECT_PUBLIC, JSON_STRING},
};

/* Where each option's value came from: "" for the command line, else the file's key path. */
typedef struct {
    char from[OPT_COUNT][40];
    char num[OPT_COUNT][24]; /* integers, formatted */
} config_vals_t;

/* Copies obj's keys into val (the command line's values win), checking names and types. Returns 0
 * or -1 with err naming the key. */
static int config_keys(json_t *obj, const char *where, const config_key_t *keys, size_t nkeys, int inline_prov, const char **val,
                       config_vals_t *cv, pod_args_t *a, char *err)
{
    const char *key;
    json_t *v;
    char buf[80];
    json_object_foreach(obj, key, v)
    {
        size_t k;
        if (strcmp(key, "services") == 0 && where[0] == '\0')
            continue;
        if (inline_prov && where[0] == '\0') { /* the file's own provisioning keys: provision_doc()'s */
            for (k = 0; provision_keys[k] != NULL && strcmp(provision_keys[k], key) != 0; k++)
                ;
            if (provision_keys[k] != NULL)
                continue;
        }
        for (k = 0; k < nkeys; k++)
            if (strcmp(keys[k].key, key) == 0)
                break;
        if (k == nkeys)
            return p2m_err(err, "%s\"%s\": unknown key", where, pod_shown(key, buf, sizeof(buf)));
        int o = keys[k].opt;
        if (val[o] != NULL) /* given on the command line */
            continue;
        snprintf(cv->from[o], sizeof(cv->from[o]), "%s%s", where, key);
        if (keys[k].type == JSON_STRING) {
            if (!json_is_string(v) || memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
                return p2m_err(err, "%s%s: expected a string", where, key);
            val[o] = json_string_value(v);
        } else if (keys[k].type == JSON_INTEGER) {
            if (!json_is_integer(v))
                return p2m_err(err, "%s%s: expected a whole number", where, key);
            snprintf(cv->num[o], sizeof(cv->num[o]), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            val[o] = cv->num[o];
        } else {
            if (!json_is_boolean(v))
                return p2m_err(err, "%s%s: expected true or false", where, key);
            if (json_is_true(v)) {
                *FIELD_AT(a, &options[o], int) = 1;
                val[o] = "";
            }
        }
    }
    return 0;
}

/* Reads run's file: its JSON document in *doc. A document with "secret" is its own provisioning
 * file: like one, it must not be readable by group or others, and *prov receives it (wipe and
 * free() it); otherwise *prov is NULL. Returns 0 or -1 with err naming the file. */
static int config_read(const char *path, json_t **doc, provision_t **prov, char *err)
{
    char e[P2M_ERR_LEN], shown_path[P2M_ERR_LEN];
    size_t len;
    mode_t mode = 0;
    json_error_t jerr;
    *prov = NULL;
    path_shown(path, shown_path, sizeof(shown_path));
    pod_json_wiping_init(); /* the document may hold the secret */
    char *text = pod_file_read(path, POD_CONFIG_MAX, 0, &mode, &len, e);
    if (text == NULL)
        return p2m_err(err, "--config %s", e);
    /* jansson's message quotes the input, which may be the secret: keep only the position. */
    *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    explicit_bzero(text, len);
    free(text);
    if (*doc == NULL)
        return p2m_err(err, "%s: not JSON (line %d, column %d)", shown_path, jerr.line, jerr.column);
    if (!json_is_object(*doc))
        return p2m_err(err, "%s: expected a JSON object", shown_path);
    json_t *services = json_object_get(*doc, "services");
    if (!json_is_array(services) || json_array_size(services) == 0)
        return p2m_err(err, "%s: services: expected a list of services, each with \"forward\"", shown_path);
    if (json_array_size(services) > POD_RUN_SERVICES_MAX)
        return p2m_err(err, "%s: services: more than %d", shown_path, POD_RUN_SERVICES_MAX);
    if (json_object_get(*doc, "secret") == NULL)
        return 0;
    if (private_check(path, mode, err) != 0)
        return -1;
    if ((*prov = malloc(sizeof(**prov))) == NULL)
        return p2m_err(err, "out of memory");
    if (provision_doc(*doc, 1, *prov, e) != 0) {
        free(*prov); /* provision_doc() left no secret in it */
        *prov = NULL;
        return p2m_err(err, "%s: %s", shown_path, e);
    }
    return 0;
}

/* Service i of the file into val: the pod-wide keys, then the service's. Returns 0 or -1 with err. */
static int config_service(json_t *doc, size_t i, const char *path, const provision_t *prov, const char **val, config_vals_t *cv,
                          pod_args_t *a, char *err)
{
    char e[P2M_ERR_LEN], shown_path[P2M_ERR_LEN], where[32];
    path_shown(path, shown_path, sizeof(shown_path));
    if (config_keys(doc, "", config_pod_keys, sizeof(config_pod_keys) / sizeof(config_pod_keys[0]), prov != NULL, val, cv, a, e) !=
        0)
        return p2m_err(err, "%s: %s", shown_path, e);
    json_t *svc = json_array_get(json_object_get(doc, "services"), i);
    snprintf(where, sizeof(where), "services[%zu].", i);
    if (!json_is_object(svc))
        return p2m_err(err, "%s: services[%zu]: expected an object", shown_path, i);
    if (config_keys(svc, where, config_service_keys, sizeof(config_service_keys) / sizeof(config_service_keys[0]), 0, val, cv, a,
                    e) != 0)
        return p2m_err(err, "%s: %s", shown_path, e);
    if (prov == NULL && val[OPT_PROVISION] == NULL &&
        (val[OPT_REGISTRAR] == NULL || val[OPT_ID] == NULL || val[OPT_SECRET_FILE] == NULL))
        return p2m_err(err, "%s: needs \"provision\", or \"registrar\", \"id\" and \"secret_file\"", shown_path);
    if (val[OPT_FORWARD] == NULL)
        return p2m_err(err, "%s: services[%zu]: needs \"forward\" (HOST:PORT of the local service)", shown_path, i);
    return 0;
}

/* An option's error from a file's value names the file and key instead of the option: "--pool: x"
 * becomes "FILE: services[0].pool: x". With from "", the error is only prefixed with FILE. */
static void config_err(const char *path, const char *from, const char *opt, char *err)
{
    char msg[P2M_ERR_LEN], shown_path[P2M_ERR_LEN];
    size_t n = strlen(opt);
    const char *rest = err;
    if (strncmp(err, "--", 2) == 0 && strncmp(err + 2, opt, n) == 0 && strncmp(err + 2 + n, ": ", 2) == 0)
        rest = err + 2 + n + 2;
    snprintf(msg, sizeof(msg), "%s", rest);
    path_shown(path, shown_path, sizeof(shown_path));
    if (from[0] == '\0')
        p2m_err(err, "%s: %s", shown_path, msg);
    else
        p2m_err(err, "%s: %s: %s", shown_path, from, msg);
}

static void args_defaults(pod_args_t *a)
{
    memset(a, 0, sizeof(*a));
    a->pool = POD_POOL_DEFAULT;
    a->pool_max = POD_POOL_CEILING_DEFAULT;
    a->drain_timeout = POD_DRAIN_DEFAULT;
    a->log_level = P2M_LOG_INFO;
    a->proto = P2M_PROTO_HTTPS;
    a->digits = P2M_TOTP_DIGITS;
    snprintf(a->alpn, sizeof(a->alpn), "%s", POD_ALPN_DEFAULT);
}

/* Each value on its own, in the table's order (the ceiling defaults to the floor when that is
 * higher than POD_POOL_CEILING_DEFAULT), then the files and what the command needs. cfg: run's
 * file, whose values cv says where they came from, and inline_prov its own provisioning (NULL when
 * it has none); NULL for the command line. Returns 0 or -1. */
static int args_values(const char **val, const config_vals_t *cv, const char *cfg, const provision_t *inline_prov, const char *cmd,
                       pod_args_t *a, char *err)
{
    for (size_t o = 0; o < OPT_COUNT; o++) {
        if (o == OPT_POOL_MAX && val[o] == NULL && a->pool > POD_POOL_CEILING_DEFAULT)
            a->pool_max = a->pool;
        if (val[o] != NULL && options[o].parse != NULL && options[o].parse(&options[o], val[o], a, err) != 0) {
            if (cfg != NULL && cv->from[o][0] != '\0')
                config_err(cfg, cv->from[o], options[o].name, err);
            return -1;
        }
    }
    if (a->cmd == POD_CMD_STATUS || a->cmd == POD_CMD_TEST || a->cmd == POD_CMD_SETUP || a->cmd == POD_CMD_LIST ||
        (a->cmd == POD_CMD_ENV && a->set[0] != '\0'))
        return 0;
    if (args_files(val, inline_prov, a, err) == 0 && args_complete(cmd, a, err) == 0)
        return 0;
    if (cfg != NULL)
        config_err(cfg, "", "", err);
    return -1;
}

void pod_service_name(const pod_args_t *a, char *out, size_t cap)
{
    if (a->proto == P2M_PROTO_HTTPS)
        snprintf(out, cap, "%s", a->label);
    else
        snprintf(out, cap, "%s-%s", a->label, p2m_proto_name(a->proto));
}

int pod_run_load(const pod_args_t *run, pod_args_t **out, size_t *nout, char *err)
{
    json_t *doc = NULL;
    config_vals_t *cv = NULL;
    pod_args_t *svcs = NULL;
    provision_t *prov = NULL;
    size_t n = 0;
    char shown_path[P2M_ERR_LEN];
    int ret = -1;
    *out = NULL;
    *nout = 0;
    path_shown(run->config, shown_path, sizeof(shown_path));
    if (config_read(run->config, &doc, &prov, err) != 0)
        goto Exit;
    n = json_array_size(json_object_get(doc, "services"));
    if ((svcs = calloc(n, sizeof(*svcs))) == NULL || (cv = malloc(sizeof(*cv))) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    for (size_t i = 0; i < n; i++) {
        const char *val[OPT_COUNT] = {0};
        pod_args_t *a = &svcs[i];
        char name[POD_SERVICE_NAME_MAX + 1];
        memset(cv, 0, sizeof(*cv));
        args_defaults(a);
        a->cmd = POD_CMD_RUN;
        snprintf(a->config, sizeof(a->config), "%s", run->config);
        /* The command line's --state-dir and --log-level win over the file's. */
        if (run->run_state_dir[0] != '\0')
            val[OPT_STATE_DIR] = run->run_state_dir;
        if (run->run_log_level[0] != '\0')
            val[OPT_LOG_LEVEL] = run->run_log_level;
        if (config_service(doc, i, run->config, prov, val, cv, a, err) != 0 ||
            args_values(val, cv, run->config, prov, "run", a, err) != 0)
            goto Exit;
        /* The file's own secret serves its own labels: another is a mistake to say now, not a 403 later. */
        if (prov != NULL) {
            size_t k;
            for (k = 0; k < prov->nlabels && strcmp(prov->labels[k], a->label) != 0; k++)
                ;
            if (k == prov->nlabels) {
                p2m_err(err, "%s: services[%zu].label: %s is not one of the file's \"labels\"", shown_path, i, a->label);
                goto Exit;
            }
        }
        /* Each service keeps its state in DIR/NAME: NAME is the label, with -http or -tcp for those. */
        pod_service_name(a, name, sizeof(name));
        for (size_t j = 0; j < i; j++) {
            char other[POD_SERVICE_NAME_MAX + 1];
            pod_service_name(&svcs[j], other, sizeof(other));
            if (strcmp(name, other) == 0) {
                p2m_err(err, "%s: services[%zu]: label %s with protocol %s is services[%zu] already", shown_path, i, a->label,
                        p2m_proto_name(a->proto), j);
                goto Exit;
            }
        }
        if (a->state_dir[0] != '\0') {
            size_t dl = strlen(a->state_dir);
            if (dl + 1 + strlen(name) > POD_PATH_MAX) {
                p2m_err(err, "%s: state_dir: too long for the services' directories", shown_path);
                goto Exit;
            }
            snprintf(a->state_dir + dl, sizeof(a->state_dir) - dl, "/%s", name);
        }
    }
    *out = svcs;
    *nout = n;
    svcs = NULL;
    ret = 0;
Exit:
    if (svcs != NULL) {
        for (size_t i = 0; i < n; i++)
            pod_args_wipe(&svcs[i]);
        free(svcs);
    }
    if (prov != NULL) {
        explicit_bzero(prov, sizeof(*prov));
        free(prov);
    }
    free(cv);
    json_decref(doc);
    return ret;
}

void pod_run_free(pod_args_t *svcs, size_t n)
{
    if (svcs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        pod_args_wipe(&svcs[i]);
    free(svcs);
}

/* What setup needs in the end. Returns 0 or -1 with err. */
static int setup_complete(pod_args_t *a, char *err)
{
    if (a->registrar[0] == '\0')
        return p2m_err(err, "setup needs --registrar URL");
    if (a->auth[0] == '\0')
        return p2m_err(err, "setup needs --auth TOKEN (pipe2me-admin token add makes one)");
    if (a->nprotos == 0) {
        a->protos[0] = P2M_PROTO_HTTPS;
        a->nprotos = 1;
    }
    if (a->nports == 0)
        return p2m_err(err, "setup needs --local-ports PORT[,PORT...]: where each service is on this machine");
    if (a->nports != a->nprotos)
        return p2m_err(err, "--local-ports: %zu port%s for %zu protocol%s: give one per protocol, in the same order", a->nports,
                       a->nports == 1 ? "" : "s", a->nprotos, a->nprotos == 1 ? "" : "s");
    return 0;
}

int pod_args_parse(int argc, char **argv, pod_args_t *a, char *err)
{
    const char *val[OPT_COUNT] = {0};
    char buf[200];

    args_defaults(a);
    if (argc < 2 || argv[1] == NULL)
        return p2m_err(err, "expected a command: register, run, status, env, test, setup or list (see --help)");
    if ((a->cmd = parse_command(argv[1])) == 0)
        return p2m_err(err, "unknown command \"%s\" (see --help)", pod_shown(argv[1], buf, sizeof(buf)));
    if (a->cmd == POD_CMD_HELP || a->cmd == POD_CMD_VERSION) {
        if (argc > 2)
            return p2m_err(err, "%s takes no arguments", argv[1]);
        return 0;
    }
    int rc = args_scan(argc, argv, val, a, err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (a->set[0] != '\0' || a->cmd == POD_CMD_SETUP || a->cmd == POD_CMD_LIST) {
        if (val[OPT_DIR] != NULL ? options[OPT_DIR].parse(&options[OPT_DIR], val[OPT_DIR], a, err) != 0
                                 : pod_sets_dir(a->dir, sizeof(a->dir), err) != 0)
            return -1;
    } else if (val[OPT_DIR] != NULL) {
        return p2m_err(err, "--dir goes with a tunnel set: %s LABEL.DOMAIN --dir DIR", argv[1]);
    }
    if (a->set[0] != '\0') {
        /* Everything else is in the set's run file, which the command reads. */
        for (int o = 0; o < OPT_COUNT; o++)
            if (val[o] != NULL && o != OPT_DIR && o != OPT_LOG_LEVEL)
                return p2m_err(err, "%s LABEL.DOMAIN takes only --dir and --log-level, not --%s: the rest is in the set's %s",
                               argv[1], options[o].name, POD_SET_FILE);
        int w = snprintf(a->config, sizeof(a->config), "%s/%s/%s", a->dir, a->set, POD_SET_FILE);
        if (w < 0 || (size_t)w >= sizeof(a->config))
            return p2m_err(err, "--dir: too long for the set's files");
        if (access(a->config, F_OK) != 0)
            return p2m_err(err, "%s: no tunnel set %s in %s (pipe2me-pod list --dir %s shows them)", argv[1], a->set, a->dir,
                           a->dir);
        if (a->cmd == POD_CMD_ENV)
            return 0;
        val[OPT_CONFIG] = a->config;
    }
    if (a->cmd == POD_CMD_TEST && val[OPT_CONFIG] != NULL && (val[OPT_FORWARD_HTTP] != NULL || val[OPT_FORWARD_TCP] != NULL))
        return p2m_err(err, "test serves a run file's local ports or --forward-http and --forward-tcp, not both");
    if (a->cmd == POD_CMD_RUN || (a->cmd == POD_CMD_TEST && val[OPT_CONFIG] != NULL)) {
        /* run: the file is read (and checked whole) here, and again by pod_run_load() at start and
         * on SIGHUP; *a keeps the command line. */
        pod_args_t *svcs;
        size_t n;
        if (val[OPT_CONFIG] == NULL)
            return p2m_err(err, "run needs --config FILE or a tunnel set's LABEL.DOMAIN");
        if (val[OPT_CONFIG] != a->config && a->set[0] != '\0')
            return p2m_err(err, "run takes --config FILE or LABEL.DOMAIN, not both");
        if (strlen(val[OPT_CONFIG]) > POD_PATH_MAX)
            return p2m_err(err, "--config: path longer than %d bytes", POD_PATH_MAX);
        if (val[OPT_CONFIG] != a->config)
            snprintf(a->config, sizeof(a->config), "%s", val[OPT_CONFIG]);
        if ((val[OPT_STATE_DIR] != NULL &&
             options[OPT_STATE_DIR].parse(&options[OPT_STATE_DIR], val[OPT_STATE_DIR], a, err) != 0) ||
            (val[OPT_LOG_LEVEL] != NULL && options[OPT_LOG_LEVEL].parse(&options[OPT_LOG_LEVEL], val[OPT_LOG_LEVEL], a, err) != 0))
            return -1;
        snprintf(a->run_state_dir, sizeof(a->run_state_dir), "%s", a->state_dir);
        snprintf(a->run_log_level, sizeof(a->run_log_level), "%s", val[OPT_LOG_LEVEL] != NULL ? val[OPT_LOG_LEVEL] : "");
        if (pod_run_load(a, &svcs, &n, err) != 0)
            return -1;
        /* The process logs at the first service's level (log_level is pod-wide) and keeps its
         * state in the file's state_dir unless the command line said. */
        a->log_level = svcs[0].log_level;
        pod_run_free(svcs, n);
        return 0;
    }
    if (args_values(val, NULL, NULL, NULL, argv[1], a, err) != 0) {
        pod_args_wipe(a);
        return -1;
    }
    if (a->cmd == POD_CMD_STATUS && a->state_dir[0] == '\0')
        return p2m_err(err, "status needs --state-dir DIR");
    if (a->cmd == POD_CMD_SETUP) {
        /* A refusal leaves no secret behind: --proxy's password, --auth's token. */
        if (setup_complete(a, err) != 0) {
            pod_args_wipe(a);
            return -1;
        }
        return 0;
    }
    if (a->cmd == POD_CMD_LIST)
        return 0;
    if (a->cmd == POD_CMD_TEST && a->http_port == 0 && a->tcp_port == 0)
        return p2m_err(err, "test needs --forward-http PORT, --forward-tcp PORT or both");
    if (a->cmd == POD_CMD_TEST && a->http_port == a->tcp_port)
        return p2m_err(err, "--forward-http and --forward-tcp must differ");
    return 0;
}

/* --- the status file, read back --------------------------------------------------------------- */

/* The value at path ("key" or "object.key"), NULL when there is none. */
static json_t *status_get(json_t *doc, const char *path)
{
    const char *dot = strchr(path, '.');
    json_t *v = doc;
    if (dot != NULL) {
        char first[32];
        snprintf(first, sizeof(first), "%.*s", (int)(dot - path), path);
        v = json_object_get(doc, first);
        path = dot + 1;
    }
    return json_object_get(v, path);
}

static int status_str(json_t *doc, const char *path, char *out, size_t cap)
{
    json_t *v = status_get(doc, path);
    if (!json_is_string(v) || json_string_length(v) >= cap || memchr(json_string_value(v), '\0', json_string_length(v)))
        return -1;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int status_num(json_t *doc, const char *path, unsigned long long *out)
{
    json_t *v = status_get(doc, path);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (unsigned long long)json_integer_value(v);
    return 0;
}

int pod_status_parse(const char *text, size_t len, pod_status_t *st, char *err)
{
    json_error_t jerr;
    unsigned long long pid = 0;
    int ret = -1;
    memset(st, 0, sizeof(*st));
    json_t *doc = json_loadb(text, len, 0, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        p2m_err(err, "not a status document (line %d, column %d)", jerr.line, jerr.column);
        goto Exit;
    }
    /* The pool's floor, ceiling and demand came with the elastic pool: a status written by an
     * older pod has none, and reads as 0. */
    static const struct {
        const char *path;
        size_t off;
        int optional;
    } nums[] = {
        {"updated", offsetof(pod_status_t, updated), 0},
        {"started", offsetof(pod_status_t, started), 0},
        {"pool.target", offsetof(pod_status_t, pool_target), 0},
        {"pool.floor", offsetof(pod_status_t, pool_floor), 1},
        {"pool.ceiling", offsetof(pod_status_t, pool_ceiling), 1},
        {"pool.idle", offsetof(pod_status_t, pool_idle), 0},
        {"pool.connecting", offsetof(pod_status_t, pool_connecting), 0},
        {"pool.registering", offsetof(pod_status_t, pool_registering), 0},
        {"pool.joined", offsetof(pod_status_t, pool_joined), 1},
        {"pool.waiting", offsetof(pod_status_t, consumers_waiting), 1},
        {"pool.waited", offsetof(pod_status_t, consumers_waited), 1},
        {"tunnels.active", offsetof(pod_status_t, tunnels_active), 0},
        {"tunnels.total", offsetof(pod_status_t, tunnels_total), 0},
        {"tunnels.failed", offsetof(pod_status_t, tunnels_failed), 0},
        {"registrations.ok", offsetof(pod_status_t, registrations), 0},
        {"registrations.failed", offsetof(pod_status_t, registration_failures), 0},
        {"bytes.in", offsetof(pod_status_t, bytes_in), 0},
        {"bytes.out", offsetof(pod_status_t, bytes_out), 0},
    };
    static const struct {
        const char *path;
        size_t off, cap;
        int optional; /* came later than the others: a status written by an older pod has none */
    } strs[] = {
        {"state", offsetof(pod_status_t, state), sizeof(st->state)},
        {"id", offsetof(pod_status_t, id), sizeof(st->id)},
        {"label", offsetof(pod_status_t, label), sizeof(st->label)},
        {"forward", offsetof(pod_status_t, forward), sizeof(st->forward)},
        {"health.registrar", offsetof(pod_status_t, registrar_state), sizeof(st->registrar_state)},
        {"health.relay", offsetof(pod_status_t, relay_state), sizeof(st->relay_state)},
        {"health.local", offsetof(pod_status_t, local_state), sizeof(st->local_state)},
        {"errors.registrar", offsetof(pod_status_t, registrar_error), sizeof(st->registrar_error), 1},
        {"errors.relay", offsetof(pod_status_t, relay_error), sizeof(st->relay_error), 1},
        {"proxy", offsetof(pod_status_t, proxy), sizeof(st->proxy), 1},
    };
    if (status_num(doc, "pid", &pid) != 0 || pid == 0 || pid > 0x7fffffff) {
        p2m_err(err, "pid: expected a process ID");
        goto Exit;
    }
    st->pid = (long long)pid;
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        if (nums[i].optional && status_get(doc, nums[i].path) == NULL)
            continue;
        if (status_num(doc, nums[i].path, (unsigned long long *)((char *)st + nums[i].off)) != 0) {
            p2m_err(err, "%s: expected a number", nums[i].path);
            goto Exit;
        }
    }
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (!(strs[i].optional && status_get(doc, strs[i].path) == NULL) &&
            status_str(doc, strs[i].path, (char *)st + strs[i].off, strs[i].cap) != 0) {
            p2m_err(err, "%s: expected a string", strs[i].path);
            goto Exit;
        }
    /* "problems" came with the local service's probe: optional, each of its keys too. */
    static const struct {
        const char *path;
        size_t off, cap;
    } problems[] = {
        {"problems.local", offsetof(pod_status_t, local_problem), sizeof(st->local_problem)},
    };
    for (size_t i = 0; i < sizeof(problems) / sizeof(problems[0]); i++)
        if (status_get(doc, problems[i].path) != NULL &&
            status_str(doc, problems[i].path, (char *)st + problems[i].off, problems[i].cap) != 0) {
            p2m_err(err, "%s: expected a string", problems[i].path);
            goto Exit;
        }
    ret = 0;
Exit:
    json_decref(doc);
    return ret;
}
