/* pipe2me-pod: the command line. Settings are parsed by provision.c; `register` runs the pool on
 * a p2m loop until SIGTERM or SIGINT. */
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
#include <unistd.h>

#include "p2m/err.h"
#include "p2m/totp.h"

/* --forward's host to an address, before the loop runs (so the loop never waits for DNS). */
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

/* The first SIGTERM/SIGINT ends the pool's loop; run_register() then drains outside any callback
 * (pod_register_free() runs the loop's deferred frees, which must not happen in the middle of a batch). A
 * second one, while the drain runs or before it starts, cuts the joined tunnels at once. */
static void on_signal(p2m_loop_t *loop, int signo, void *data)
{
    pod_t *pod = data;
    if (pod->stop_now)
        return;
    if (pod->stopping) {
        p2m_log(P2M_LOG_INFO, "stop_now", "signal=%d label=%s tunnels=%u", signo, pod->args->label, pod->ntunnels);
        pod->stop_now = 1;
        p2m_loop_stop(loop);
        return;
    }
    p2m_log(P2M_LOG_INFO, "stopping", "signal=%d label=%s tunnels=%u idle=%u drain_timeout=%u", signo, pod->args->label,
            pod->ntunnels, pod->nidle, pod->args->drain_timeout);
    pod->stopping = 1;
    p2m_loop_stop(loop);
}

static void on_drain_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    pod_t *pod = (pod_t *)((char *)t - offsetof(pod_t, drain_timer));
    if (pod->magic != POD_MAGIC)
        abort();
    p2m_loop_stop(loop);
}

/* After the first signal: no more registrations, the idle pre-connections given back (those whose
 * consumer's bytes already wait are served), and the loop run again until the last tunnel closes,
 * --drain-timeout passes or a second signal comes. What is left is cut by the caller, as before.
 * Returns 0, or -1 with errno when the loop fails. */
static int drain(pod_t *pod)
{
    uint64_t t0 = p2m_loop_now(pod->loop);
    int rc = 0;
    pod_register_free(pod); /* aborts registrations in flight and stops their timers; the status says "unknown" */
    if (!pod->stop_now && pod->args->drain_timeout > 0) {
        pod->draining = 1;
        pool_drain(pod);
        status_update(pod);
        if (pod->ntunnels > 0) {
            p2m_loop_timer_init(&pod->drain_timer, on_drain_timer);
            p2m_loop_timer_start(pod->loop, &pod->drain_timer, (uint64_t)pod->args->drain_timeout * 1000u);
            rc = p2m_loop_run(pod->loop);
            p2m_loop_timer_stop(pod->loop, &pod->drain_timer);
        }
        pod->draining = 0;
    }
    p2m_loop_update_now(pod->loop);
    p2m_log(P2M_LOG_INFO, "drained", "label=%s tunnels_left=%u ms=%llu", pod->args->label, pod->ntunnels,
            (unsigned long long)(p2m_loop_now(pod->loop) - t0));
    return rc;
}

static int run_register(const pod_args_t *a)
{
    static pod_t pod;
    char err[P2M_ERR_LEN] = "";
    int ret = 1, curl_ok = 0, status_ok = 0;
    static const int sigs[] = {SIGTERM, SIGINT};

    pod.magic = POD_MAGIC;
    pod.args = a;
    p2m_log_set_level(a->log_level);
    signal(SIGPIPE, SIG_IGN); /* splice(2) to a closed socket raises it */
    if (a->cacert[0] != '\0' && access(a->cacert, R_OK) != 0) {
        fprintf(stderr, "pipe2me-pod: --cacert %s: %s\n", a->cacert, strerror(errno));
        return 2;
    }
    if (resolve_forward(&pod, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        return 2;
    }
    if (p2m_totp_init(err) != 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "pipe2me-pod: %s\n", err[0] ? err : "curl_global_init failed");
        return 2;
    }
    curl_ok = 1;
    if ((pod.loop = p2m_loop_new(err)) == NULL || pool_init(&pod, err) != 0 ||
        p2m_loop_signals(pod.loop, sigs, 2, on_signal, &pod, err) != 0 || pod_register_new(&pod, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        ret = 2;
        goto Exit;
    }
    if (status_start(&pod, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        ret = 2;
        goto Exit;
    }
    status_ok = 1;
    /* The password never: shown is the URL without it. */
    p2m_log(P2M_LOG_INFO, "started",
            "id=%s label=%s registrar=%s forward=%s pool=%u pool_max=%u max_tunnels=%u protocol=%s tls_terminate=%s proxy=%s "
            "registrar_via=%s",
            a->id, a->label, a->registrar, pod.fwd_str, a->pool, a->pool_max, pod.max_tunnels, p2m_proto_name(a->proto),
            a->tls_terminate ? "yes" : "no", a->proxy.host[0] != '\0' ? a->proxy.shown : "none",
            pod_register_proxy(&pod) != NULL ? "proxy" : "direct");
    /* --tls-terminate: the certificate first (after status_start(), which keeps a second pod off
     * DIR); no pre-connection opens before it is in place (pod_register_start() waits for pod.tls_ctx). */
    if (a->tls_terminate && cert_start(&pod, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        ret = 2;
        goto Exit;
    }
    pool_refill(&pod);
    if (p2m_loop_run(pod.loop) != 0 || drain(&pod) != 0) {
        P2M_LOG_ERR("loop_failed", "error=\"%s\"", strerror(errno));
        goto Exit;
    }
    ret = 0;
Exit:
    pod.stopping = 1;
    if (pod.loop != NULL) {
        forward_close_all(&pod);
        pool_close_all(&pod);
        if (status_ok)
            status_stop(&pod); /* before pod_register_free(): it reports the registrar's state */
        cert_stop(&pod);       /* before pod_register_free(): it cancels its requests */
        pod_register_free(&pod);
        p2m_loop_reap(pod.loop);
    }
    p2m_pipe_pool_free(pod.pipes);
    p2m_loop_free(pod.loop);
    if (curl_ok) {
        curl_global_cleanup();
        p2m_totp_done();
    }
    if (ret == 0)
        p2m_log(P2M_LOG_INFO, "stopped", "label=%s tunnels=%llu registrations=%llu", a->label,
                (unsigned long long)pod.stats.tunnels, (unsigned long long)pod.stats.registrations);
    return ret;
}

int main(int argc, char **argv)
{
    static pod_args_t args;
    char err[P2M_ERR_LEN];
    int ret;

    if (pod_args_parse(argc, argv, &args, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s\n", err);
        return 2;
    }
    switch (args.cmd) {
    case POD_CMD_HELP:
        pod_args_usage(stdout);
        return 0;
    case POD_CMD_VERSION:
        printf("pipe2me-pod %s\n", P2M_VERSION);
        return 0;
    case POD_CMD_STATUS:
        return status_command(&args);
    case POD_CMD_ENV:
        ret = env_command(&args);
        break;
    case POD_CMD_TEST:
        ret = echo_command(&args);
        break;
    case POD_CMD_REGISTER:
    case POD_CMD_RUN:
        if (pod_args_proxy_env(&args, getenv("https_proxy"), getenv("HTTPS_PROXY"), getenv("no_proxy"), getenv("NO_PROXY"), err) !=
            0) {
            fprintf(stderr, "pipe2me-pod: %s\n", err);
            ret = 2;
            break;
        }
        ret = run_register(&args);
        break;
    default:
        ret = 2;
        break;
    }
    pod_args_wipe(&args);
    return ret;
}
