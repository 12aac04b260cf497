/* pipe2me-relay --workers N: one relay per core under a supervisor.
 *
 * A process may hold 20,000 descriptors here (DEPENDENCIES.md), two per active tunnel, so a big
 * relay runs several processes. Each worker is an ordinary relay as docs/PROTOCOL.md section 3
 * describes, named NAME-I with the I-th slice of relay.ports: its own heartbeat, idle hash, leases
 * and counters, nothing shared between workers. The registrar already spreads pre leases over
 * live relays and sends each consumer to the relay holding idle pre-connections of its label, so
 * the split needs no protocol change. The supervisor forwards SIGTERM/SIGINT, restarts a worker
 * that dies (after 1 s, doubling to 30 s while it keeps dying young) and exits 0 when every
 * worker stopped cleanly. */
#include "relay.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "p2m/err.h"

#define RESTART_MIN_MS 1000
#define RESTART_MAX_MS 30000
#define YOUNG_MS 10000 /* a worker dying sooner than this backs off further */

typedef struct {
    pid_t pid; /* 0 when not running */
    unsigned index;
    uint64_t started;
    unsigned backoff_ms;
    int spawn_due; /* restart timer fired: spawn from the main loop, outside any callback */
    p2m_loop_timer_t restart;
    struct supervisor *sv;
} worker_t;

typedef struct supervisor {
    p2m_loop_t *loop;
    const p2m_config_t *cfg;
    unsigned n, pipes, pipe_size;
    worker_t *w;
    int stopping, failed;
} supervisor_t;

int workers_config(const p2m_config_t *base, unsigned n, unsigned i, p2m_config_t *out, char *err)
{
    unsigned total = (unsigned)base->relay.ports.hi - base->relay.ports.lo + 1;
    if (n == 0 || i >= n)
        return p2m_err(err, "worker %u of %u", i, n);
    if (total < n)
        return p2m_err(err, "relay.ports: %u ports cannot be split over %u workers", total, n);
    *out = *base;
    char suffix[16];
    int slen = snprintf(suffix, sizeof(suffix), "-%u", i);
    size_t keep = strlen(base->relay.name);
    if (keep + (size_t)slen > P2M_LABEL_MAX)
        keep = P2M_LABEL_MAX - (size_t)slen;
    /* A name cut just before the suffix must not end in a hyphen: it stays a valid label. */
    while (keep > 1 && base->relay.name[keep - 1] == '-')
        keep--;
    snprintf(out->relay.name, sizeof(out->relay.name), "%.*s%s", (int)keep, base->relay.name, suffix);
    out->relay.ports.lo = (uint16_t)(base->relay.ports.lo + (uint64_t)total * i / n);
    out->relay.ports.hi = (uint16_t)(base->relay.ports.lo + (uint64_t)total * (i + 1) / n - 1);
    return 0;
}

static void spawn(supervisor_t *sv, worker_t *w)
{
    p2m_config_t cfg;
    char err[P2M_ERR_LEN];
    w->spawn_due = 0;
    if (workers_config(sv->cfg, sv->n, w->index, &cfg, err) != 0) { /* checked at start: cannot happen */
        p2m_log(P2M_LOG_ERROR, "worker_config", "worker=%u error=\"%s\"", w->index, err);
        sv->failed = 1;
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        p2m_log(P2M_LOG_ERROR, "worker_fork_failed", "worker=%u error=\"%s\"", w->index, strerror(errno));
        p2m_loop_timer_start(sv->loop, &w->restart, w->backoff_ms);
        return;
    }
    if (pid == 0) {
        /* The child owns nothing of the supervisor: close its loop (signalfd, epoll) and restore
         * the signal mask before becoming a relay. */
        unsigned pipes = sv->pipes, pipe_size = sv->pipe_size;
        p2m_loop_free(sv->loop);
        free(sv->w);
        exit(relay_run(&cfg, pipes, pipe_size));
    }
    w->pid = pid;
    w->started = p2m_loop_now(sv->loop);
    p2m_log(P2M_LOG_INFO, "worker_start", "worker=%u pid=%d name=%s ports=%u-%u", w->index, (int)pid, cfg.relay.name,
            (unsigned)cfg.relay.ports.lo, (unsigned)cfg.relay.ports.hi);
}

static void on_restart(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    worker_t *w = (worker_t *)((char *)t - offsetof(worker_t, restart));
    (void)loop;
    w->spawn_due = 1; /* forking inside a callback would leave the child on the parent's stack */
}

static size_t running(const supervisor_t *sv)
{
    size_t n = 0;
    for (unsigned i = 0; i < sv->n; i++)
        n += sv->w[i].pid != 0;
    return n;
}

static void reap_children(supervisor_t *sv)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (unsigned i = 0; i < sv->n; i++) {
            worker_t *w = &sv->w[i];
            if (w->pid != pid)
                continue;
            w->pid = 0;
            int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            p2m_log(clean ? P2M_LOG_INFO : P2M_LOG_WARN, "worker_exit", "worker=%u pid=%d %s=%d", w->index, (int)pid,
                    WIFEXITED(status) ? "status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            if (sv->stopping) {
                if (!clean)
                    sv->failed = 1;
                break;
            }
            /* Died on its own: bring it back, later each time it dies young. */
            uint64_t age = p2m_loop_now(sv->loop) - w->started;
            w->backoff_ms =
                age < YOUNG_MS ? (w->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : w->backoff_ms * 2) : RESTART_MIN_MS;
            p2m_log(P2M_LOG_INFO, "worker_restart", "worker=%u in_ms=%u", w->index, w->backoff_ms);
            p2m_loop_timer_start(sv->loop, &w->restart, w->backoff_ms);
            break;
        }
    }
}

static void on_signal(p2m_loop_t *loop, int signo, void *data)
{
    supervisor_t *sv = data;
    if (signo == SIGCHLD) {
        reap_children(sv);
    } else if (!sv->stopping) {
        sv->stopping = 1;
        p2m_log(P2M_LOG_INFO, "workers_stopping", "reason=%s running=%zu", signo == SIGTERM ? "SIGTERM" : "SIGINT", running(sv));
        for (unsigned i = 0; i < sv->n; i++) {
            p2m_loop_timer_stop(loop, &sv->w[i].restart);
            sv->w[i].spawn_due = 0;
            if (sv->w[i].pid != 0)
                kill(sv->w[i].pid, signo);
        }
    } else {
        for (unsigned i = 0; i < sv->n; i++) /* a second signal: the workers stop now */
            if (sv->w[i].pid != 0)
                kill(sv->w[i].pid, signo);
    }
    if (sv->stopping && running(sv) == 0)
        p2m_loop_stop(loop);
}

int workers_run(const p2m_config_t *cfg, unsigned n, unsigned pipes, unsigned pipe_size)
{
    char err[P2M_ERR_LEN];
    static const int sigs[] = {SIGTERM, SIGINT, SIGCHLD};
    supervisor_t sv = {.cfg = cfg, .n = n, .pipes = pipes, .pipe_size = pipe_size};
    int rc = 1;

    if ((sv.loop = p2m_loop_new(err)) == NULL || p2m_loop_signals(sv.loop, sigs, 3, on_signal, &sv, err) != 0) {
        p2m_log(P2M_LOG_ERROR, "workers_failed", "error=\"%s\"", err);
        goto Exit;
    }
    sv.w = relay_xcalloc(n, sizeof(*sv.w));
    p2m_log(P2M_LOG_INFO, "workers_start", "workers=%u name=%s ports=%u-%u", n, cfg->relay.name, (unsigned)cfg->relay.ports.lo,
            (unsigned)cfg->relay.ports.hi);
    for (unsigned i = 0; i < n; i++) {
        sv.w[i].index = i;
        sv.w[i].backoff_ms = RESTART_MIN_MS;
        sv.w[i].sv = &sv;
        p2m_loop_timer_init(&sv.w[i].restart, on_restart);
        spawn(&sv, &sv.w[i]);
    }
    while (!(sv.stopping && running(&sv) == 0)) {
        if (p2m_loop_run_once(sv.loop, -1) < 0) {
            p2m_log(P2M_LOG_ERROR, "loop_failed", "error=\"%s\"", strerror(errno));
            break;
        }
        for (unsigned i = 0; i < n && !sv.stopping; i++)
            if (sv.w[i].spawn_due)
                spawn(&sv, &sv.w[i]);
    }
    rc = sv.failed ? 1 : 0;
    p2m_log(P2M_LOG_INFO, "workers_stop", "status=%d", rc);
Exit:
    free(sv.w);
    p2m_loop_free(sv.loop);
    return rc;
}
