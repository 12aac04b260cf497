/* libFuzzer target for pod_args_parse (pod/provision.c), pipe2me-pod's command line; the input
 * split on NUL bytes is argv[1..] (fuzz_argv.h). Files come from a private temp dir made once: an
 * argument "@P" (or "--NAME=@P") stands for a valid provisioning file, "@S" a secret file, "@O" a
 * secret file others may read, "@B" a broken provisioning file, "@D" the directory itself, "@E" a
 * provisioning file with 8 digits.
 *
 * It returns 0 or -1 and refuses with one line that never shows the files' secret and leaves no
 * secret in *a; a command line it accepts holds values within pod.h's bounds (the registrar URL,
 * ID, label, domain, forward address, direct paths, source, pool, ALPN list and test ports pass their
 * own checks again, digits are 6 or 8; a register command carries the files' secret, a proxy has a host and a port),
 * and the canonical command line built from the result (the proxy's user and password
 * percent-encoded again) parses to the same result. A refusal leaves no proxy password either. */

#include "fuzz.h"
#include "fuzz_argv.h"
#include "p2m/addr.h"
#include "p2m/config.h"
#include "p2m/err.h"
#include "p2m/label.h"
#include "pod.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* 20 bytes; its first 8 characters must never appear in an error unless the input holds them */
#define FILE_SECRET "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"

static char dir[4096], prov_path[4200], secret_path[4200], open_path[4200], bad_path[4200], prov8_path[4200];
static unsigned char secret_raw[POD_SECRET_MAX];
static size_t secret_len;

static void put(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) != 0 || chmod(path, mode) != 0) {
        perror(path);
        abort();
    }
}

static void cleanup(void)
{
    unlink(prov_path);
    unlink(secret_path);
    unlink(open_path);
    unlink(bad_path);
    unlink(prov8_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    char err[P2M_ERR_LEN];
    snprintf(dir, sizeof(dir), "%s/p2m-fuzz-pod-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror(dir);
        abort();
    }
    snprintf(prov_path, sizeof(prov_path), "%s/provision.json", dir);
    snprintf(secret_path, sizeof(secret_path), "%s/secret", dir);
    snprintf(open_path, sizeof(open_path), "%s/secret-open", dir);
    snprintf(bad_path, sizeof(bad_path), "%s/bad.json", dir);
    snprintf(prov8_path, sizeof(prov8_path), "%s/provision8.json", dir);
    put(prov_path,
        "{\"id\": \"pod-1\", \"secret\": \"" FILE_SECRET "\", \"labels\": [\"web\", \"Api\"], "
        "\"registrar\": \"https://reg.example.net:8443/p2m/\", \"domain\": \"Example.NET\"}\n",
        0600);
    put(prov8_path,
        "{\"id\": \"pod-8\", \"secret\": \"" FILE_SECRET "\", \"digits\": 8, \"labels\": [\"web\"], "
        "\"registrar\": \"https://reg.example.net\", \"domain\": \"example.net\"}\n",
        0600);
    put(secret_path, FILE_SECRET "\n", 0600);
    put(open_path, FILE_SECRET "\n", 0644);
    put(bad_path, "{\"id\": \"pod-1\", \"secret\": \"" FILE_SECRET "\"", 0600);
    atexit(cleanup);
    FUZZ_CHECK(pod_secret_decode(FILE_SECRET, strlen(FILE_SECRET), secret_raw, &secret_len, err) == 0);
    return 0;
}

/* Replaces "@X" or "--NAME=@X" with the file it stands for. Returns 0, or -1 when out of memory. */
static int substitute(fuzz_argv_t *av)
{
    static const struct {
        const char *token, *path;
    } files[] = {{"@P", prov_path}, {"@S", secret_path}, {"@O", open_path}, {"@B", bad_path}, {"@D", dir}, {"@E", prov8_path}};
    for (int i = 1; i < av->argc; i++) {
        char *arg = av->own[i];
        size_t n = strlen(arg);
        for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
            if (!(n >= 2 && strcmp(arg + n - 2, files[f].token) == 0 && (n == 2 || arg[n - 3] == '=')))
                continue;
            char *s = malloc(n - 2 + strlen(files[f].path) + 1);
            if (s == NULL)
                return -1;
            memcpy(s, arg, n - 2);
            strcpy(s + n - 2, files[f].path);
            free(arg);
            av->own[i] = av->argv[i] = s;
            break;
        }
    }
    return 0;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

/* 1 when data holds the first 8 characters of the files' secret, in any case. */
static int spelled_secret(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i + 8 <= size; i++)
        if (strncasecmp((const char *)data + i, FILE_SECRET, 8) == 0)
            return 1;
    return 0;
}

/* The values of a parsed command line pass their own checks again. */
static void check_values(const pod_args_t *a)
{
    char e[P2M_ERR_LEN], base[P2M_URL_MAX + 1], host[P2M_HOST_MAX + 1], l[P2M_LABEL_MAX + 1], d[P2M_DOMAIN_MAX + 1];
    uint16_t port;

    FUZZ_CHECK(FUZZ_TERMINATED(a->registrar) && FUZZ_TERMINATED(a->reg_host) && FUZZ_TERMINATED(a->id) &&
               FUZZ_TERMINATED(a->label) && FUZZ_TERMINATED(a->domain) && FUZZ_TERMINATED(a->cacert) &&
               FUZZ_TERMINATED(a->state_dir) && FUZZ_TERMINATED(a->alpn) && FUZZ_TERMINATED(a->forward.host));
    FUZZ_CHECK(a->pool >= 1 && a->pool <= POD_POOL_MAX);
    FUZZ_CHECK(a->pool_max >= a->pool && a->pool_max <= POD_POOL_MAX);
    FUZZ_CHECK(a->drain_timeout <= POD_DRAIN_MAX);
    FUZZ_CHECK(a->log_level >= P2M_LOG_DEBUG && a->log_level <= P2M_LOG_ERROR);
    FUZZ_CHECK(a->proto == P2M_PROTO_HTTPS || a->proto == P2M_PROTO_HTTP || a->proto == P2M_PROTO_TCP);
    FUZZ_CHECK(a->digits == 6 || a->digits == 8);
    FUZZ_CHECK(a->secret_len == 0 || (a->secret_len >= POD_SECRET_MIN && a->secret_len <= POD_SECRET_MAX));
    FUZZ_CHECK(all_zero(a->secret + a->secret_len, sizeof(a->secret) - a->secret_len));
    size_t alpn = strlen(a->alpn);
    FUZZ_CHECK(alpn >= 1 && alpn <= POD_ALPN_MAX && a->alpn[0] != ',' && a->alpn[alpn - 1] != ',' && strstr(a->alpn, ",,") == NULL);
    for (size_t i = 0; i < alpn; i++)
        FUZZ_CHECK(a->alpn[i] > 0x20 && a->alpn[i] < 0x7f && a->alpn[i] != '"' && a->alpn[i] != '\\');
    switch (a->cmd) {
    case POD_CMD_STATUS:
        FUZZ_CHECK(a->state_dir[0] != '\0');
        return;
    case POD_CMD_TEST:
        FUZZ_CHECK((a->http_port != 0 || a->tcp_port != 0) && a->http_port != a->tcp_port);
        return;
    case POD_CMD_LIST:
        FUZZ_CHECK(FUZZ_TERMINATED(a->dir) && a->dir[0] != '\0');
        return;
    case POD_CMD_SETUP:
        FUZZ_CHECK(FUZZ_TERMINATED(a->dir) && a->dir[0] != '\0' && FUZZ_TERMINATED(a->auth) && FUZZ_TERMINATED(a->proxy_arg));
        FUZZ_CHECK(strncmp(a->registrar, "https://", 8) == 0);
        FUZZ_CHECK(a->label[0] == '\0' || (p2m_label_normalize(a->label, strlen(a->label), l, e) == 0 && strcmp(l, a->label) == 0));
        FUZZ_CHECK(a->nprotos >= 1 && a->nprotos <= POD_SETUP_SERVICES_MAX && a->nports == a->nprotos);
        for (size_t i = 0; i < a->nprotos; i++) {
            FUZZ_CHECK(a->local_ports[i] >= 1);
            FUZZ_CHECK(a->protos[i] == P2M_PROTO_HTTPS || a->protos[i] == P2M_PROTO_HTTP || a->protos[i] == P2M_PROTO_TCP);
            for (size_t j = 0; j < i; j++)
                FUZZ_CHECK(a->protos[j] != a->protos[i]);
        }
        /* the token goes into a header as it is: nothing but b64token characters */
        FUZZ_CHECK(a->auth[0] != '\0' && strlen(a->auth) <= POD_AUTH_MAX);
        for (const char *c = a->auth; *c != '\0'; c++)
            FUZZ_CHECK((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
                       strchr("-._~+/=", *c) != NULL);
        return;
    case POD_CMD_REGISTER:
    case POD_CMD_ENV:
        break;
    default:
        FUZZ_CHECK(!"a command pod.h does not name");
    }
    FUZZ_CHECK(strncmp(a->registrar, "https://", 8) == 0);
    FUZZ_CHECK(pod_registrar_url_parse(a->registrar, base, host, &port, e) == 0);
    FUZZ_CHECK(strcmp(base, a->registrar) == 0 && strcmp(host, a->reg_host) == 0 && port == a->reg_port);
    FUZZ_CHECK(p2m_id_valid(a->id, strlen(a->id), e) == 0);
    FUZZ_CHECK(p2m_label_normalize(a->label, strlen(a->label), l, e) == 0 && strcmp(l, a->label) == 0);
    FUZZ_CHECK(a->domain[0] == '\0' || (p2m_domain_normalize(a->domain, d, e) == 0 && strcmp(d, a->domain) == 0));
    FUZZ_CHECK(!a->have_forward || (a->forward.host[0] != '\0' && a->forward.port >= 1));
    FUZZ_CHECK(!a->tls_terminate || (a->proto == P2M_PROTO_HTTPS && a->state_dir[0] != '\0' && a->domain[0] != '\0'));
    FUZZ_CHECK(FUZZ_TERMINATED(a->proxy.host) && FUZZ_TERMINATED(a->proxy.user) && FUZZ_TERMINATED(a->proxy.pass));
    FUZZ_CHECK(a->proxy.host[0] == '\0' ? a->proxy.port == 0 && !a->proxy.auth : a->proxy.port >= 1);
    FUZZ_CHECK(a->proxy_env == 0); /* the environment is main.c's to read */
    /* Direct paths and --source: register only, canonical address literals, the public one only
     * with the LAN one. */
    FUZZ_CHECK(FUZZ_TERMINATED(a->source) && FUZZ_TERMINATED(a->direct_lan.host) && FUZZ_TERMINATED(a->direct_public.host));
    FUZZ_CHECK(a->cmd == POD_CMD_REGISTER || (a->source[0] == '\0' && a->direct_lan.host[0] == '\0'));
    FUZZ_CHECK(a->direct_public.host[0] == '\0' || a->direct_lan.host[0] != '\0');
    if (a->source[0] != '\0') {
        char src[P2M_HOST_MAX + 1];
        FUZZ_CHECK(pod_source_parse(a->source, src, e) == 0 && strcmp(src, a->source) == 0);
    }
    const p2m_hostport_t *direct[] = {&a->direct_lan, &a->direct_public};
    for (size_t i = 0; i < 2; i++) {
        p2m_hostport_t again;
        char text[P2M_HOST_MAX + 16];
        if (direct[i]->host[0] == '\0')
            continue;
        FUZZ_CHECK(direct[i]->port >= 1 && p2m_hostport_format(direct[i]->host, direct[i]->port, text, sizeof(text)) > 0);
        FUZZ_CHECK(pod_direct_addr_parse(text, &again, e) == 0 && strcmp(again.host, direct[i]->host) == 0 &&
                   again.port == direct[i]->port);
    }
    if (a->cmd == POD_CMD_REGISTER) {
        FUZZ_CHECK(a->have_forward);
        /* the only secrets it can have read are the files' */
        FUZZ_CHECK(a->secret_len == secret_len && memcmp(a->secret, secret_raw, secret_len) == 0);
    }
}

/* Appends s to out at *n with only what must be percent-encoded so (a byte that is not printable
 * ASCII, or one of "%/?#"), so that the URL is never longer than the one given (which had those
 * encoded too; ':' and '@' need not be: the user has no ':', and the last '@' ends the user info). */
static void pct(const char *s, char *out, size_t *n)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c > 0x20 && c < 0x7f && strchr("%/?#", c) == NULL)
            out[(*n)++] = (char)c;
        else
            *n += (size_t)sprintf(out + *n, "%%%02X", c);
    }
}

/* Builds the canonical command line for a (only the options its command takes) and checks that it
 * parses to the same values. */
static void check_canonical(const pod_args_t *a)
{
    static const char *const cmds[] = {
        [POD_CMD_HELP] = "help", [POD_CMD_VERSION] = "--version", [POD_CMD_REGISTER] = "register", [POD_CMD_STATUS] = "status",
        [POD_CMD_ENV] = "env",   [POD_CMD_TEST] = "test",         [POD_CMD_SETUP] = "setup",       [POD_CMD_LIST] = "list"};
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    static pod_args_t b;
    char *argv[48], pool[16], pool_max[16], drain[16], fwd[P2M_HOST_MAX + 16], http[8], tcp[8], err[P2M_ERR_LEN] = "";
    char protos[32] = "", ports[32] = "", lan[P2M_HOST_MAX + 16], pub[P2M_HOST_MAX + 16];
    static char proxy[8 + 6 * POD_PROXY_CRED_MAX + P2M_HOST_MAX + 16];
    int n = 0;

    argv[n++] = "pipe2me-pod";
    argv[n++] = (char *)cmds[a->cmd];
#define OPT(name, value)                                                                                                           \
    do {                                                                                                                           \
        argv[n++] = "--" name;                                                                                                     \
        argv[n++] = (char *)(value);                                                                                               \
    } while (0)
    if (a->cmd == POD_CMD_REGISTER || a->cmd == POD_CMD_TEST)
        OPT("log-level", levels[a->log_level]);
    if (a->cmd == POD_CMD_STATUS) {
        OPT("state-dir", a->state_dir);
        if (a->json)
            argv[n++] = "--json";
    }
    if (a->cmd == POD_CMD_TEST) {
        snprintf(http, sizeof(http), "%u", (unsigned)a->http_port);
        snprintf(tcp, sizeof(tcp), "%u", (unsigned)a->tcp_port);
        if (a->http_port != 0)
            OPT("forward-http", http);
        if (a->tcp_port != 0)
            OPT("forward-tcp", tcp);
    }
    if (a->cmd == POD_CMD_REGISTER || a->cmd == POD_CMD_ENV) {
        snprintf(pool, sizeof(pool), "%u", a->pool);
        snprintf(pool_max, sizeof(pool_max), "%u", a->pool_max);
        snprintf(drain, sizeof(drain), "%u", a->drain_timeout);
        OPT("registrar", a->registrar);
        OPT("id", a->id);
        OPT("label", a->label);
        OPT("pool", pool);
        OPT("pool-max", pool_max);
        OPT("drain-timeout", drain);
        OPT("protocol", p2m_proto_name(a->proto));
        OPT("digits", a->digits == 8 ? "8" : "6");
        if (a->domain[0] != '\0')
            OPT("domain", a->domain);
        if (a->cacert[0] != '\0')
            OPT("cacert", a->cacert);
        if (a->state_dir[0] != '\0')
            OPT("state-dir", a->state_dir);
        if (a->have_forward) {
            FUZZ_CHECK(p2m_hostport_format(a->forward.host, a->forward.port, fwd, sizeof(fwd)) > 0);
            OPT("forward", fwd);
        }
        if (a->tls_terminate) {
            argv[n++] = "--tls-terminate";
            OPT("alpn", a->alpn);
        }
        if (a->cmd == POD_CMD_REGISTER)
            OPT("secret-file", secret_path);
        if (a->source[0] != '\0')
            OPT("source", a->source);
        if (a->direct_lan.host[0] != '\0') {
            FUZZ_CHECK(p2m_hostport_format(a->direct_lan.host, a->direct_lan.port, lan, sizeof(lan)) > 0);
            OPT("direct-lan", lan);
        }
        if (a->direct_public.host[0] != '\0') {
            FUZZ_CHECK(p2m_hostport_format(a->direct_public.host, a->direct_public.port, pub, sizeof(pub)) > 0);
            OPT("direct-public", pub);
        }
        if (a->proxy.host[0] != '\0') {
            /* no scheme and no default port: never longer than the URL given */
            size_t k = 0;
            if (a->proxy.auth) {
                pct(a->proxy.user, proxy, &k);
                proxy[k++] = ':';
                pct(a->proxy.pass, proxy, &k);
                proxy[k++] = '@';
            }
            if (a->proxy.port == POD_PROXY_PORT)
                snprintf(proxy + k, sizeof(proxy) - k, strchr(a->proxy.host, ':') != NULL ? "[%s]" : "%s", a->proxy.host);
            else
                FUZZ_CHECK(p2m_hostport_format(a->proxy.host, a->proxy.port, proxy + k, sizeof(proxy) - k) > 0);
            OPT("proxy", proxy);
        }
    }
    if (a->cmd == POD_CMD_LIST || a->cmd == POD_CMD_SETUP) {
        OPT("dir", a->dir);
        if (a->json)
            argv[n++] = "--json";
    }
    if (a->cmd == POD_CMD_SETUP) {
        size_t kp = 0, kn = 0;
        for (size_t i = 0; i < a->nprotos; i++) {
            kp += (size_t)snprintf(protos + kp, sizeof(protos) - kp, "%s%s", i ? "," : "", p2m_proto_name(a->protos[i]));
            kn += (size_t)snprintf(ports + kn, sizeof(ports) - kn, "%s%u", i ? "," : "", (unsigned)a->local_ports[i]);
        }
        OPT("registrar", a->registrar);
        OPT("auth", a->auth);
        OPT("protocols", protos);
        OPT("local-ports", ports);
        if (a->label[0] != '\0')
            OPT("label", a->label);
        if (a->cacert[0] != '\0')
            OPT("cacert", a->cacert);
        if (a->proxy_arg[0] != '\0')
            OPT("proxy", a->proxy_arg);
    }
#undef OPT
    argv[n] = NULL;
    FUZZ_CHECK(pod_args_parse(n, argv, &b, err) == 0);
    FUZZ_CHECK(b.cmd == a->cmd && strcmp(b.registrar, a->registrar) == 0 && strcmp(b.reg_host, a->reg_host) == 0 &&
               b.reg_port == a->reg_port && strcmp(b.id, a->id) == 0 && strcmp(b.label, a->label) == 0 &&
               strcmp(b.domain, a->domain) == 0 && b.have_forward == a->have_forward && b.pool == a->pool &&
               b.pool_max == a->pool_max && b.drain_timeout == a->drain_timeout && strcmp(b.cacert, a->cacert) == 0 &&
               strcmp(b.state_dir, a->state_dir) == 0 && b.json == a->json && b.proto == a->proto &&
               b.tls_terminate == a->tls_terminate && strcmp(b.alpn, a->alpn) == 0 && b.http_port == a->http_port &&
               b.tcp_port == a->tcp_port && b.digits == a->digits && strcmp(b.dir, a->dir) == 0 && strcmp(b.auth, a->auth) == 0 &&
               b.nprotos == a->nprotos && b.nports == a->nports &&
               memcmp(b.protos, a->protos, a->nprotos * sizeof(a->protos[0])) == 0 &&
               memcmp(b.local_ports, a->local_ports, a->nports * sizeof(a->local_ports[0])) == 0);
    FUZZ_CHECK(a->cmd == POD_CMD_STATUS || a->cmd == POD_CMD_ENV || a->cmd == POD_CMD_SETUP || a->cmd == POD_CMD_LIST ||
               b.log_level == a->log_level);
    FUZZ_CHECK(!a->have_forward || (strcmp(b.forward.host, a->forward.host) == 0 && b.forward.port == a->forward.port));
    FUZZ_CHECK(strcmp(b.source, a->source) == 0 && strcmp(b.direct_lan.host, a->direct_lan.host) == 0 &&
               b.direct_lan.port == a->direct_lan.port && strcmp(b.direct_public.host, a->direct_public.host) == 0 &&
               b.direct_public.port == a->direct_public.port);
    FUZZ_CHECK(a->cmd != POD_CMD_REGISTER || (b.secret_len == a->secret_len && memcmp(b.secret, a->secret, a->secret_len) == 0));
    FUZZ_CHECK(strcmp(b.proxy.host, a->proxy.host) == 0 && b.proxy.port == a->proxy.port && b.proxy.auth == a->proxy.auth &&
               strcmp(b.proxy.user, a->proxy.user) == 0 && strcmp(b.proxy.pass, a->proxy.pass) == 0 &&
               strcmp(b.proxy.shown, a->proxy.shown) == 0);
    pod_args_wipe(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pod_args_t a; /* large (paths): keep it off the stack */
    fuzz_argv_t av;
    char err[P2M_ERR_LEN] = "";

    if (fuzz_argv_split(&av, "pipe2me-pod", data, size) != 0)
        return 0;
    if (substitute(&av) != 0)
        goto Exit;
    int rc = pod_args_parse(av.argc, av.argv, &a, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err(err);
        FUZZ_CHECK(a.secret_len == 0 && all_zero(a.secret, sizeof(a.secret)));
        FUZZ_CHECK(all_zero((const unsigned char *)a.proxy.pass, sizeof(a.proxy.pass)));
        /* the files' secret, in either case, unless the command line itself spelled it */
        if (strcasestr(err, "MFRGGZDF") != NULL)
            FUZZ_CHECK(spelled_secret(data, size));
        goto Exit;
    }
    if (a.cmd == POD_CMD_HELP || a.cmd == POD_CMD_VERSION)
        goto Exit;
    check_values(&a);
    check_canonical(&a);
Exit:
    pod_args_wipe(&a);
    fuzz_argv_free(&av);
    return 0;
}
