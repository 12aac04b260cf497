/* The running pod process: one or more services on one loop. `register` is one service from the
 * command line; `run --config FILE` is the file's services, each with its own pool, registrations
 * and state in DIR/NAME, the services of one label sharing one session credential and all of them
 * one TOTP step record (DIR/totp-step: a code is accepted once per pod and step).
 *
 * Everything that frees or drains happens here, between turns of the loop, never inside one of its
 * callbacks: a callback that wants it (a signal, SIGHUP, a drained service's last tunnel, its drain
 * timer) stops the loop and main_loop() looks at the flags. SIGTERM or SIGINT drains every service
 * (idle pre-connections given back, joined tunnels given --drain-timeout); a second one cuts them.
 * SIGHUP (run only) reads the file again: services it no longer names drain as on SIGTERM, new ones
 * start, unchanged ones keep their tunnels; a file that does not load changes nothing. */
#include "pod.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/totp.h"
#include "session.h"

typedef struct label_session {
    char label[P2M_LABEL_MAX + 1];
    pod_session_t sess;
    unsigned users; /* services of the label using it */
} label_session_t;

typedef struct service {
    pod_args_t args; /* the pod reads them through pod.args: they live as long as it */
    pod_t pod;
    char name[POD_SERVICE_NAME_MAX + 1];
    label_session_t *ls; /* run: its label's session */
    int started;         /* the pieces service_start() set up, for service_end() */
    int status_ok;
    int draining; /* service_drain() ran: it ends when its tunnels are gone or its time is up */
} service_t;

typedef struct {
    const pod_args_t *cli; /* the command line */
    p2m_loop_t *loop;
    int is_run;
    char dir[POD_PATH_MAX + 1]; /* run: the state directory of the process, "" for none */
    pod_steps_t steps;          /* run: shared by every service's session */
    service_t *svcs[POD_RUN_SERVICES_MAX];
    size_t n;
    label_session_t *labels[POD_RUN_SERVICES_MAX];
    int stop;     /* a first SIGTERM/SIGINT */
    int stop_now; /* a second */
    int reload;   /* SIGHUP */
    int signo;    /* the first SIGTERM or SIGINT */
    echo_t *echo; /* test: the echo services on the local ports */
} runner_t;

/* test of a run file: echo services on the local ports its services forward to, which must be on
 * 127.0.0.1 (where the echo listens). Returns 0 or -1 with err. */
static int start_echo(runner_t *r, const pod_args_t *svcs, size_t n, char *err)
{
    echo_port_t ports[ECHO_PORTS_MAX];
    for (size_t i = 0; i < n && i < ECHO_PORTS_MAX; i++) {
        if (strcmp(svcs[i].forward.host, "127.0.0.1") != 0 && strcasecmp(svcs[i].forward.host, "localhost") != 0)
            return p2m_err(err, "test serves echo on 127.0.0.1: services[%zu] forwards to %s", i, svcs[i].forward.host);
        ports[i] = (echo_port_t){.tcp = svcs[i].proto == P2M_PROTO_TCP, .port = svcs[i].forward.port};
    }
    r->echo = echo_start(r->loop, ports, n, err);
    return r->echo != NULL ? 0 : -1;
}

/* --forward's host to an address, before the service starts (so the loop never waits for DNS). */
static int resolve_forward(pod_t *pod, char *err)
{
    const p2m_hostport_t *f = &pod->args->forward;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&pod->fwd_addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&pod->fwd_addr;
    size_t hl = strlen(f->host);
    memset(&pod->fwd_addr, 0, sizeof(pod->fwd_addr));
    p2m_hostport_format(f->host, f->port, pod->fwd_str, sizeof(pod->fwd_str));
    if (inet_pton(AF_INET, f->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(f->port);
        pod->fwd_len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, f->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(f->port);
        pod->fwd_len = sizeof(*v6);
        return 0;
    }
    if (strcasecmp(f->host, "localhost") == 0 || (hl > 10 && strcasecmp(f->host + hl - 10, ".localhost") == 0)) {
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        v4->sin_port = htons(f->port);
        pod->fwd_len = sizeof(*v4);
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int rc = getaddrinfo(f->host, NULL, &hints, &ai);
    if (rc != 0 || ai == NULL || ai->ai_addrlen > sizeof(pod->fwd_addr)) {
        if (ai != NULL)
            freeaddrinfo(ai);
        return p2m_err(err, "--forward: cannot resolve %s: %s", f->host, rc != 0 ? gai_strerror(rc) : "no address");
    }
    memcpy(&pod->fwd_addr, ai->ai_addr, ai->ai_addrlen);
    pod->fwd_len = ai->ai_addrlen;
    if (pod->fwd_addr.ss_family == AF_INET)
        v4->sin_port = htons(f->port);
    else
        v6->sin6_port = htons(f->port);
    freeaddrinfo(ai);
    return 0;
}

static void on_signal(p2m_loop_t *loop, int signo, void *data)
{
    runner_t *r = data;
    if (signo == SIGHUP) {
        r->reload = 1;
    } else if (r->stop) {
        for (size_t i = 0; i < r->n && !r->stop_now; i++)
            p2m_log(P2M_LOG_INFO, "stop_now", "signal=%d label=%s tunnels=%u", signo, r->svcs[i]->args.label,
                    r->svcs[i]->pod.ntunnels);
        r->stop_now = 1;
    } else {
        r->stop = 1;
        r->signo = signo;
    }
    p2m_loop_stop(loop);
}

static void on_drain_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    pod_t *pod = (pod_t *)((char *)t - offsetof(pod_t, drain_timer));
    if (pod->magic != POD_MAGIC)
        abort();
    pod->drain_over = 1;
    p2m_loop_stop(loop);
}

/* --- one service -------------------------------------------------------------------------------- */

static label_session_t *label_session(runner_t *r, const pod_args_t *a)
{
    size_t i, free_slot = POD_RUN_SERVICES_MAX;
    for (i = 0; i < POD_RUN_SERVICES_MAX; i++) {
        if (r->labels[i] != NULL && strcmp(r->labels[i]->label, a->label) == 0) {
            r->labels[i]->users++;
            return r->labels[i];
        }
        if (r->labels[i] == NULL && free_slot == POD_RUN_SERVICES_MAX)
            free_slot = i;
    }
    label_session_t *ls = free_slot < POD_RUN_SERVICES_MAX ? calloc(1, sizeof(*ls)) : NULL;
    if (ls == NULL)
        return NULL;
    char path[POD_PATH_MAX + P2M_LABEL_MAX + 16];
    snprintf(ls->label, sizeof(ls->label), "%s", a->label);
    /* DIR/session-LABEL beside DIR/totp-step: the label's services come and go, its session stays. */
    if (r->dir[0] != '\0')
        snprintf(path, sizeof(path), "%s/session-%s", r->dir, a->label);
    pod_session_init(&ls->sess, a, r->loop, &r->steps, r->dir[0] != '\0' ? path : "");
    ls->users = 1;
    r->labels[free_slot] = ls;
    return ls;
}

static void label_session_put(runner_t *r, label_session_t *ls)
{
    if (ls == NULL || --ls->users > 0)
        return;
    for (size_t i = 0; i < POD_RUN_SERVICES_MAX; i++)
        if (r->labels[i] == ls)
            r->labels[i] = NULL;
    pod_session_wipe(&ls->sess);
    free(ls);
}

/* Starts a service whose args are set. Returns 0, or -1 with err (the caller ends it). */
static int service_start(runner_t *r, service_t *s, char *err)
{
    pod_t *pod = &s->pod;
    const pod_args_t *a = &s->args;
    pod->magic = POD_MAGIC;
    pod->args = a;
    pod->loop = r->loop;
    pod_service_name(a, s->name, sizeof(s->name));
    p2m_loop_timer_init(&pod->drain_timer, on_drain_timer);
    if (a->cacert[0] != '\0' && access(a->cacert, R_OK) != 0)
        return p2m_err(err, "--cacert %s: %s", a->cacert, strerror(errno));
    if (resolve_forward(pod, err) != 0)
        return -1;
    if (a->source[0] != '\0' && pod_sockaddr(a->source, 0, &pod->src_addr, &pod->src_len) != 0)
        return p2m_err(err, "--source %s: not an address literal", a->source); /* provision.c checked it */
    if (r->is_run && (s->ls = label_session(r, a)) == NULL)
        return p2m_err(err, "out of memory");
    if (s->ls != NULL)
        pod->session = &s->ls->sess;
    s->started = 1;
    if (pool_init(pod, err) != 0 || pod_register_new(pod, err) != 0 || status_start(pod, err) != 0)
        return -1;
    s->status_ok = 1;
    /* The LAN listener before "started": an address that cannot be bound is an error at start. A
     * consumer that comes before the first certificate is closed (tls_failed), as none can be served. */
    if (direct_start(pod, err) != 0)
        return -1;
    char lan[P2M_HOST_MAX + 16] = "none", pub[P2M_HOST_MAX + 16] = "none";
    if (a->direct_lan.host[0] != '\0')
        p2m_hostport_format(a->direct_lan.host, a->direct_lan.port, lan, sizeof(lan));
    if (a->direct_public.host[0] != '\0')
        p2m_hostport_format(a->direct_public.host, a->direct_public.port, pub, sizeof(pub));
    /* The password never: shown is the URL without it. declares=: the keys the registration
     * carries besides protocol and connections (register.c), for the operator and the tests. */
    p2m_log(P2M_LOG_INFO, "started",
            "id=%s label=%s registrar=%s forward=%s pool=%u pool_max=%u max_tunnels=%u protocol=%s tls_terminate=%s proxy=%s "
            "registrar_via=%s source=%s direct_lan=%s direct_public=%s declares=%s",
            a->id, a->label, a->registrar, pod->fwd_str, a->pool, a->pool_max, pod->max_tunnels, p2m_proto_name(a->proto),
            a->tls_terminate ? "yes" : "no", a->proxy.host[0] != '\0' ? a->proxy.shown : "none",
            pod_register_proxy(pod) != NULL ? "proxy" : "direct", a->source[0] != '\0' ? a->source : "any", lan, pub,
            pod_register_declares(pod));
    /* --tls-terminate: the certificate first (after status_start(), which keeps a second pod off
     * DIR); no pre-connection opens before it is in place (pod_register_start() waits for pod.tls_ctx). */
    if ((a->tls_terminate && cert_start(pod, err) != 0) || probe_new(pod, err) != 0)
        return -1;
    probe_kick(pod, 1);
    pool_refill(pod);
    return 0;
}

/* After the first signal, or when SIGHUP removes the service: no more registrations, the idle
 * pre-connections given back (those whose consumer's bytes already wait are served), and the
 * joined tunnels given until --drain-timeout (0: cut at once). service_drained() says when it may
 * end. Outside the loop's callbacks. */
static void service_drain(runner_t *r, service_t *s)
{
    pod_t *pod = &s->pod;
    if (s->draining)
        return;
    s->draining = 1;
    pod->stopping = 1;
    pod->drain_t0 = p2m_loop_now(r->loop);
    pod_register_free(pod); /* aborts registrations in flight and stops their timers; the status says "unknown" */
    direct_close(pod);      /* no new direct connections; accepted ones drain like tunnels */
    if (!r->stop_now && pod->args->drain_timeout > 0) {
        pod->draining = 1;
        pool_drain(pod);
        status_update(pod);
        if (pod->ntunnels > 0)
            p2m_loop_timer_start(r->loop, &pod->drain_timer, (uint64_t)pod->args->drain_timeout * 1000u);
    }
}

static int service_drained(const runner_t *r, const service_t *s)
{
    return s->draining && (r->stop_now || s->pod.ntunnels == 0 || !s->pod.draining || s->pod.drain_over);
}

/* Closes what is left and frees the service. Outside the loop's callbacks. */
static void service_end(runner_t *r, service_t *s, int clean)
{
    pod_t *pod = &s->pod;
    if (s->draining) {
        p2m_loop_update_now(r->loop);
        p2m_log(P2M_LOG_INFO, "drained", "label=%s tunnels_left=%u ms=%llu", s->args.label, pod->ntunnels,
                (unsigned long long)(p2m_loop_now(r->loop) - pod->drain_t0));
    }
    pod->stopping = 1;
    pod->draining = 0;
    if (s->started) {
        p2m_loop_timer_stop(r->loop, &pod->drain_timer);
        direct_free(pod);
        forward_close_all(pod);
        pool_close_all(pod);
        probe_free(pod);
        if (s->status_ok)
            status_stop(pod); /* before pod_register_free(): it reports the registrar's state */
        cert_stop(pod);       /* before pod_register_free(): it cancels its requests */
        pod_register_free(pod);
        p2m_loop_reap(r->loop);
        p2m_pipe_pool_free(pod->pipes);
        pod->pipes = NULL;
    }
    if (clean)
        p2m_log(P2M_LOG_INFO, "stopped", "label=%s tunnels=%llu registrations=%llu", s->args.label,
                (unsigned long long)pod->stats.tunnels, (unsigned long long)pod->stats.registrations);
    label_session_put(r, s->ls);
    pod_args_wipe(&s->args);
    pod->magic = POD_DEAD;
    free(s);
}

/* --- the process ------------------------------------------------------------------------------- */

/* run: DIR/services, the names of the services running, one per line, for `pipe2me-pod status`. */
static void write_services(const runner_t *r)
{
    char path[POD_PATH_MAX + 32], tmp[POD_PATH_MAX + 48];
    if (r->dir[0] == '\0')
        return;
    snprintf(path, sizeof(path), "%s/services", r->dir);
    snprintf(tmp, sizeof(tmp), "%s/.services.tmp", r->dir);
    FILE *f = fopen(tmp, "we");
    if (f == NULL)
        return;
    for (size_t i = 0; i < r->n; i++)
        if (!r->svcs[i]->draining)
            fprintf(f, "%s\n", r->svcs[i]->name);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        unlink(tmp);
}

/* The same service, settings and all: SIGHUP keeps it running. */
static int same_service(const pod_args_t *a, const pod_args_t *b)
{
    return strcmp(a->id, b->id) == 0 && strcmp(a->label, b->label) == 0 && a->proto == b->proto &&
           strcmp(a->registrar, b->registrar) == 0 && strcmp(a->domain, b->domain) == 0 && strcmp(a->cacert, b->cacert) == 0 &&
           strcmp(a->state_dir, b->state_dir) == 0 && strcmp(a->forward.host, b->forward.host) == 0 &&
           a->forward.port == b->forward.port && strcmp(a->source, b->source) == 0 &&
           strcmp(a->direct_lan.host, b->direct_lan.host) == 0 && a->direct_lan.port == b->direct_lan.port &&
           strcmp(a->direct_public.host, b->direct_public.host) == 0 && a->direct_public.port == b->direct_public.port &&
           a->tls_terminate == b->tls_terminate && strcmp(a->alpn, b->alpn) == 0 && a->pool == b->pool &&
           a->pool_max == b->pool_max && a->drain_timeout == b->drain_timeout && a->digits == b->digits &&
           a->secret_len == b->secret_len && memcmp(a->secret, b->secret, a->secret_len) == 0;
}

/* Adds and starts a service for args (copied). Returns 0 or -1 with err (nothing added). */
static int runner_add(runner_t *r, const pod_args_t *args, char *err)
{
    service_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return p2m_err(err, "out of memory");
    s->args = *args;
    /* Without a proxy in its settings, a service takes the environment's (https_proxy, no_proxy). */
    if (pod_args_proxy_env(&s->args, getenv("https_proxy"), getenv("HTTPS_PROXY"), getenv("no_proxy"), getenv("NO_PROXY"), err) !=
            0 ||
        service_start(r, s, err) != 0) {
        service_end(r, s, 0);
        return -1;
    }
    r->svcs[r->n++] = s;
    return 0;
}

static void runner_remove(runner_t *r, size_t i, int clean)
{
    service_t *s = r->svcs[i];
    memmove(&r->svcs[i], &r->svcs[i + 1], (r->n - i - 1) * sizeof(r->svcs[0]));
    r->n--;
    service_end(r, s, clean);
}

/* SIGHUP: the file again. Services it no longer names (or names with other settings) drain; new
 * ones start; the others keep running. A file that does not load, or a new service that cannot
 * start, is logged (reload_failed) and changes nothing else. */
static void runner_reload(runner_t *r)
{
    char err[P2M_ERR_LEN];
    pod_args_t *svcs;
    size_t n, added = 0, removed = 0, kept = 0;
    if (pod_run_load(r->cli, &svcs, &n, err) != 0) {
        p2m_log(P2M_LOG_ERROR, "reload_failed", "config=%s error=\"%s\" services=%zu", r->cli->config, err, r->n);
        return;
    }
    size_t live = 0;
    for (size_t i = 0; i < r->n; i++)
        live += !r->svcs[i]->draining;
    char *keep = calloc(n, 1);
    if (keep == NULL) {
        pod_run_free(svcs, n);
        return;
    }
    /* Drain first what goes away, so that a service moving to other settings frees its DIR/NAME. */
    for (size_t i = 0; i < r->n; i++) {
        service_t *s = r->svcs[i];
        size_t j;
        if (s->draining)
            continue;
        for (j = 0; j < n; j++)
            if (!keep[j] && same_service(&s->args, &svcs[j]))
                break;
        if (j < n) {
            keep[j] = 1;
            kept++;
        } else {
            service_drain(r, s);
            removed++;
        }
    }
    for (size_t i = 0; i < r->n;) {
        if (r->svcs[i]->draining && !r->svcs[i]->pod.draining)
            runner_remove(r, i, 1); /* drain_timeout 0, or nothing to wait for */
        else
            i++;
    }
    for (size_t j = 0; j < n; j++) {
        if (keep[j])
            continue;
        if (r->n >= POD_RUN_SERVICES_MAX || runner_add(r, &svcs[j], err) != 0) {
            if (r->n >= POD_RUN_SERVICES_MAX)
                p2m_err(err, "more than %d services, the draining ones included", POD_RUN_SERVICES_MAX);
            p2m_log(P2M_LOG_ERROR, "reload_failed", "config=%s label=%s error=\"%s\" services=%zu", r->cli->config, svcs[j].label,
                    err, r->n);
            continue;
        }
        added++;
    }
    free(keep);
    pod_run_free(svcs, n);
    /* A service that drains while its successor (same name, other settings) runs leaves DIR/NAME
     * to it: no more status writes, no "stopped" over the new one's status, no pod.pid removed. */
    for (size_t i = 0; i < r->n; i++) {
        service_t *old = r->svcs[i];
        if (!old->draining || !old->status_ok)
            continue;
        for (size_t j = 0; j < r->n; j++)
            if (!r->svcs[j]->draining && strcmp(r->svcs[j]->name, old->name) == 0) {
                p2m_loop_timer_stop(r->loop, &old->pod.status_timer);
                old->status_ok = 0;
                break;
            }
    }
    write_services(r);
    p2m_log(P2M_LOG_INFO, "reloaded", "config=%s services=%zu kept=%zu added=%zu removed=%zu was=%zu", r->cli->config, kept + added,
            kept, added, removed, live);
}

/* Runs the loop until every service has ended. Returns 0, or -1 when the loop failed. */
static int main_loop(runner_t *r)
{
    int rc = 0;
    while (r->n > 0) {
        if (p2m_loop_run(r->loop) != 0) {
            P2M_LOG_ERR("loop_failed", "error=\"%s\"", strerror(errno));
            r->stop_now = 1;
            rc = -1;
        }
        if (r->stop || r->stop_now) {
            for (size_t i = 0; i < r->n; i++) {
                service_t *s = r->svcs[i];
                if (!s->draining && r->stop)
                    p2m_log(P2M_LOG_INFO, "stopping", "signal=%d label=%s tunnels=%u idle=%u drain_timeout=%u", r->signo,
                            s->args.label, s->pod.ntunnels, s->pod.nidle, s->args.drain_timeout);
                service_drain(r, s);
            }
        } else if (r->reload) {
            r->reload = 0;
            if (r->is_run)
                runner_reload(r);
        }
        for (size_t i = 0; i < r->n;) {
            if (service_drained(r, r->svcs[i]))
                runner_remove(r, i, rc == 0);
            else
                i++;
        }
        if (!r->stop && !r->stop_now)
            write_services(r);
    }
    return rc;
}

int pod_run(const pod_args_t *cli)
{
    static runner_t r;
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    char err[P2M_ERR_LEN] = "";
    int ret = 2, curl_ok = 0;
    pod_args_t *svcs = NULL;
    size_t n = 1;

    memset(&r, 0, sizeof(r));
    r.cli = cli;
    r.is_run = cli->cmd == POD_CMD_RUN || cli->cmd == POD_CMD_TEST; /* test: of a run file (--config or a set) */
    p2m_log_set_level(cli->log_level);
    signal(SIGPIPE, SIG_IGN); /* splice(2) to a closed socket raises it */
    if (r.is_run) {
        if (pod_run_load(cli, &svcs, &n, err) != 0) {
            fprintf(stderr, "pipe2me-pod: %s\n", err);
            return 2;
        }
        /* The services' DIR/NAME are under the process's DIR, which keeps DIR/totp-step. */
        const char *sd = svcs[0].state_dir, *slash = strrchr(sd, '/');
        if (sd[0] != '\0' && slash != NULL) {
            snprintf(r.dir, sizeof(r.dir), "%.*s", (int)(slash - sd), sd);
            if (mkdir(r.dir, 0700) != 0 && errno != EEXIST) {
                fprintf(stderr, "pipe2me-pod: state_dir %s: %s\n", r.dir, strerror(errno));
                pod_run_free(svcs, n);
                return 2;
            }
        }
        pod_steps_init(&r.steps, r.dir);
    }
    if (p2m_totp_init(err) != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "pipe2me-pod: %s\n", err[0] ? err : "curl_global_init failed");
        goto Exit;
    }
    curl_ok = 1;
    if ((r.loop = p2m_loop_new(err)) == NULL || p2m_loop_signals(r.loop, sigs, r.is_run ? 3 : 2, on_signal, &r, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        goto Exit;
    }
    if (cli->cmd == POD_CMD_TEST && start_echo(&r, svcs, n, err) != 0) {
        fprintf(stderr, "pipe2me-pod: test: %s\n", err);
        goto Exit;
    }
    for (size_t i = 0; i < n; i++) {
        if (runner_add(&r, r.is_run ? &svcs[i] : cli, err) != 0) {
            fprintf(stderr, "pipe2me-pod: %s%s%s\n", r.is_run ? svcs[i].label : "", r.is_run ? ": " : "", err);
            r.stop_now = 1;
            goto Exit;
        }
    }
    pod_run_free(svcs, n);
    svcs = NULL;
    write_services(&r);
    ret = main_loop(&r) == 0 ? 0 : 1;
Exit:
    r.stop_now = 1;
    while (r.n > 0)
        runner_remove(&r, r.n - 1, 0);
    for (size_t i = 0; i < POD_RUN_SERVICES_MAX; i++)
        if (r.labels[i] != NULL) {
            pod_session_wipe(&r.labels[i]->sess);
            free(r.labels[i]);
            r.labels[i] = NULL;
        }
    pod_run_free(svcs, n);
    echo_stop(r.echo);
    p2m_loop_free(r.loop);
    if (curl_ok) {
        curl_global_cleanup();
        p2m_totp_done();
    }
    return ret;
}
