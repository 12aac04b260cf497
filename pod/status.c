/* DIR/status.json and DIR/pod.pid: what `pipe2me-pod status` shows of a running pod.
 *
 * The running pod rewrites status.json every POD_STATUS_MS, atomically (a temporary file renamed
 * over it), so a reader never sees half a document. Most of its strings are validated IDs, labels and
 * addresses ([A-Za-z0-9._:-]), which need no JSON escaping; the reasons a component is down hold
 * outside text (a proxy's reason phrase, curl's errors) and are escaped (json_text()). pod.pid names
 * the running pod; a second pod on the same directory is refused while the first runs. */
#include "pod.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "p2m/err.h"

#define STATUS_DOC_MAX 8192
#define STATUS_STALE_S 10 /* a status not rewritten for this long belongs to a pod that is gone */

static const char *health_name(pod_health_t h)
{
    return h == POD_UP ? "up" : h == POD_DOWN ? "down" : "unknown";
}

/* s as the inside of a JSON string, into out (6 * strlen(s) + 1 bytes suffice): '"', '\\' and
 * control bytes escaped, bytes above 0x7e as '?'. */
static const char *json_text(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s != '\0' && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = c > 0x7e ? '?' : (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

int pod_file_write(const char *path, const char *data, size_t len, mode_t mode, int sync)
{
    char tmp[POD_PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto Fail;
        off += (size_t)n;
    }
    /* An existing path.tmp kept its mode through O_CREAT: set it. */
    if (fchmod(fd, mode) != 0 || (sync && fsync(fd) != 0))
        goto Fail;
    if (close(fd) != 0) {
        fd = -1;
        goto Fail;
    }
    if (rename(tmp, path) == 0)
        return 0;
    fd = -1;
Fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    errno = e;
    return -1;
}

static void status_write(pod_t *pod, const char *state)
{
    const pod_args_t *a = pod->args;
    char path[POD_PATH_MAX + 32], doc[STATUS_DOC_MAX];
    char cert[64] = "", reg_err[6 * P2M_ERR_LEN + 1], relay_err[6 * P2M_ERR_LEN + 1];
    uint64_t in, out;
    forward_bytes(pod, &in, &out);
    char problems[6 * sizeof(pod->local_problem) + 64] = "", esc_local[6 * sizeof(pod->local_problem) + 1];
    if (a->tls_terminate) /* 0 until the first certificate is in place */
        snprintf(cert, sizeof(cert), ",\n  \"cert_not_after\": %lld", cert_not_after(pod));
    if (pod->local_problem[0] != '\0')
        snprintf(problems, sizeof(problems), ",\n  \"problems\": {\"local\": \"%s\"}",
                 json_text(pod->local_problem, esc_local, sizeof(esc_local)));
    int n = snprintf(doc, sizeof(doc),
                     "{\n"
                     "  \"pid\": %ld,\n"
                     "  \"state\": \"%s\",\n"
                     "  \"id\": \"%s\",\n"
                     "  \"label\": \"%s\",\n"
                     "  \"forward\": \"%s\",\n"
                     "  \"started\": %llu,\n"
                     "  \"updated\": %llu,\n"
                     "  \"pool\": {\"floor\": %u, \"ceiling\": %u, \"target\": %u, \"idle\": %u, \"connecting\": %u, "
                     "\"registering\": %u, \"joined\": %u, \"waiting\": %llu, \"waited\": %llu},\n"
                     "  \"tunnels\": {\"active\": %u, \"total\": %llu, \"failed\": %llu},\n"
                     "  \"registrations\": {\"ok\": %llu, \"failed\": %llu},\n"
                     "  \"bytes\": {\"in\": %llu, \"out\": %llu},\n"
                     "  \"health\": {\"registrar\": \"%s\", \"relay\": \"%s\", \"local\": \"%s\"},\n"
                     "  \"errors\": {\"registrar\": \"%s\", \"relay\": \"%s\"},\n"
                     "  \"proxy\": \"%s\"%s%s\n"
                     "}\n",
                     (long)getpid(), state, a->id, a->label, pod->fwd_str, pod->started, (unsigned long long)time(NULL), a->pool,
                     a->pool_max, pod->target, pod->nidle, pod->nconnecting, pod_register_inflight(pod), pod->ntunnels,
                     pod->waiting, pod->waited, pod->ntunnels, (unsigned long long)pod->stats.tunnels,
                     (unsigned long long)pod->stats.tunnel_failures, (unsigned long long)pod->stats.registrations,
                     (unsigned long long)pod->stats.registration_failures, (unsigned long long)in, (unsigned long long)out,
                     health_name(pod_register_health(pod)), health_name(pod->relay_health), health_name(pod->local_health),
                     json_text(pod_register_error(pod), reg_err, sizeof(reg_err)),
                     json_text(pod->relay_health == POD_DOWN ? pod->relay_error : "", relay_err, sizeof(relay_err)), a->proxy.shown,
                     cert, problems);
    if (n < 0 || (size_t)n >= sizeof(doc))
        return;
    snprintf(path, sizeof(path), "%s/status.json", a->state_dir);
    static int failed_logged;
    if (pod_file_write(path, doc, (size_t)n, 0644, 0) != 0) {
        if (!failed_logged)
            p2m_log(P2M_LOG_WARN, "status_write_failed", "path=%s error=\"%s\"", path, strerror(errno));
        failed_logged = 1;
    } else {
        failed_logged = 0;
    }
}

static void on_status_timer(p2m_loop_t *loop, p2m_loop_timer_t *t)
{
    pod_t *pod = (pod_t *)((char *)t - offsetof(pod_t, status_timer));
    if (pod->magic != POD_MAGIC)
        abort();
    status_write(pod, pod->draining ? "draining" : "running");
    p2m_loop_timer_start(loop, t, POD_STATUS_MS);
}

void status_update(pod_t *pod)
{
    if (pod->args->state_dir[0] != '\0')
        status_write(pod, pod->draining ? "draining" : "running");
}

/* The pid in DIR/pod.pid if that process runs and is a pipe2me-pod, else 0. */
long status_running_pid(const char *dir)
{
    char path[POD_PATH_MAX + 32], buf[64], comm[64];
    long pid = 0;
    snprintf(path, sizeof(path), "%s/pod.pid", dir);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return 0;
    if (fgets(buf, sizeof(buf), f) == NULL || sscanf(buf, "%ld", &pid) != 1 || pid <= 0 || pid == (long)getpid())
        pid = 0;
    fclose(f);
    if (pid == 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
    if ((f = fopen(path, "re")) == NULL)
        return 0;
    int is_pod = fgets(comm, sizeof(comm), f) != NULL && strncmp(comm, "pipe2me-pod", 11) == 0;
    fclose(f);
    return is_pod ? pid : 0;
}

int status_start(pod_t *pod, char *err)
{
    const char *dir = pod->args->state_dir;
    char path[POD_PATH_MAX + 32], buf[32];
    struct stat st;
    pod->started = (unsigned long long)time(NULL);
    p2m_loop_timer_init(&pod->status_timer, on_status_timer);
    if (dir[0] == '\0')
        return 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return p2m_err(err, "--state-dir %s: %s", dir, strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return p2m_err(err, "--state-dir %s: not a directory", dir);
    long other = status_running_pid(dir);
    if (other != 0)
        return p2m_err(err, "--state-dir %s: pipe2me-pod %ld already runs with it", dir, other);
    snprintf(path, sizeof(path), "%s/pod.pid", dir);
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (pod_file_write(path, buf, (size_t)n, 0644, 0) != 0)
        return p2m_err(err, "%s: %s", path, strerror(errno));
    status_write(pod, "running");
    p2m_loop_timer_start(pod->loop, &pod->status_timer, POD_STATUS_MS);
    return 0;
}

void status_stop(pod_t *pod)
{
    char path[POD_PATH_MAX + 32];
    p2m_loop_timer_stop(pod->loop, &pod->status_timer);
    if (pod->args->state_dir[0] == '\0')
        return;
    status_write(pod, "stopped");
    snprintf(path, sizeof(path), "%s/pod.pid", pod->args->state_dir);
    unlink(path);
}

/* --- pipe2me-pod status ----------------------------------------------------------------------- */

static const char *human_bytes(unsigned long long v, char *buf, size_t cap)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)v;
    unsigned u = 0;
    while (d >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%llu B", v);
    else
        snprintf(buf, cap, "%.1f %s", d, units[u]);
    return buf;
}

static const char *human_age(unsigned long long s, char *buf, size_t cap)
{
    if (s < 60)
        snprintf(buf, cap, "%llus", s);
    else if (s < 3600)
        snprintf(buf, cap, "%llum%02llus", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%lluh%02llum", s / 3600, s / 60 % 60);
    else
        snprintf(buf, cap, "%llud%02lluh", s / 86400, s / 3600 % 24);
    return buf;
}

/* One status file: printed (as it is with json), *alive set. Returns 0, or 2 with the reason on
 * stderr. */
static int status_show(const char *dir, int json, int *alive_out)
{
    char path[POD_PATH_MAX + 32], doc[STATUS_DOC_MAX + 1], err[P2M_ERR_LEN], b1[32], b2[32];
    pod_status_t st;
    snprintf(path, sizeof(path), "%s/status.json", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "pipe2me-pod: %s: %s (is a pod running with --state-dir %s?)\n", path, strerror(errno), dir);
        return 2;
    }
    ssize_t n = read(fd, doc, sizeof(doc));
    close(fd);
    if (n < 0 || (size_t)n > STATUS_DOC_MAX) {
        fprintf(stderr, "pipe2me-pod: %s: %s\n", path, n < 0 ? strerror(errno) : "too large");
        return 2;
    }
    doc[n] = '\0';
    if (pod_status_parse(doc, (size_t)n, &st, err) != 0) {
        fprintf(stderr, "pipe2me-pod: %s: %s\n", path, err);
        return 2;
    }
    unsigned long long now = (unsigned long long)time(NULL);
    /* A draining pod still runs: it serves its last tunnels before it stops. */
    int live_state = strcmp(st.state, "running") == 0 || strcmp(st.state, "draining") == 0;
    int alive = live_state && (kill((pid_t)st.pid, 0) == 0 || errno == EPERM) && now <= st.updated + STATUS_STALE_S;
    *alive_out = alive;
    if (json) {
        while (n > 0 && (doc[n - 1] == '\n' || doc[n - 1] == ' '))
            n--;
        fwrite(doc, 1, (size_t)n, stdout);
        return 0;
    }
    printf("pod         %s (label %s)\n", st.id, st.label);
    if (alive)
        printf("state       %s (pid %lld, up %s, updated %s ago)\n", st.state, st.pid, human_age(now - st.started, b1, sizeof(b1)),
               human_age(now > st.updated ? now - st.updated : 0, b2, sizeof(b2)));
    else
        printf("state       %s (pid %lld, last update %s ago)\n", live_state ? "gone" : st.state, st.pid,
               human_age(now > st.updated ? now - st.updated : 0, b2, sizeof(b2)));
    printf("forward     %s\n", st.forward);
    printf("health      registrar %s, relay %s, local service %s\n", st.registrar_state, st.relay_state, st.local_state);
    if (st.registrar_error[0] != '\0')
        printf("            registrar: %s\n", st.registrar_error);
    if (st.relay_error[0] != '\0')
        printf("            relay: %s\n", st.relay_error);
    if (st.proxy[0] != '\0')
        printf("proxy       %s\n", st.proxy);
    printf("pool        %llu/%llu idle, %llu connecting, %llu registering (floor %llu, ceiling %llu)\n", st.pool_idle,
           st.pool_target, st.pool_connecting, st.pool_registering, st.pool_floor, st.pool_ceiling);
    printf("consumers   %llu joined, %llu waiting at the relay, %llu had to wait so far\n", st.pool_joined, st.consumers_waiting,
           st.consumers_waited);
    printf("tunnels     %llu active, %llu total, %llu failed\n", st.tunnels_active, st.tunnels_total, st.tunnels_failed);
    printf("registered  %llu ok, %llu failed\n", st.registrations, st.registration_failures);
    printf("traffic     %s in, %s out\n", human_bytes(st.bytes_in, b1, sizeof(b1)), human_bytes(st.bytes_out, b2, sizeof(b2)));
    if (st.local_problem[0] != '\0')
        printf("problem     local service: %s\n", st.local_problem);
    return 0;
}

int status_command(const pod_args_t *a)
{
    char path[POD_PATH_MAX + 32], line[POD_SERVICE_NAME_MAX + 8], sub[POD_PATH_MAX + POD_SERVICE_NAME_MAX + 16];
    int alive = 0, all = 1, rc;
    struct stat stt;
    snprintf(path, sizeof(path), "%s/status.json", a->state_dir);
    snprintf(sub, sizeof(sub), "%s/services", a->state_dir);
    FILE *f;
    /* A `run` process's DIR: DIR/services names the services, each with its DIR/NAME/status.json. */
    if (stat(path, &stt) != 0 && (f = fopen(sub, "re")) != NULL) {
        size_t shown = 0;
        if (a->json)
            printf("{\"services\": {");
        while (fgets(line, sizeof(line), f) != NULL) {
            line[strcspn(line, "\n")] = '\0';
            if (line[0] == '\0' || strchr(line, '/') != NULL || line[0] == '.')
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", a->state_dir, line);
            if (a->json)
                printf("%s\n\"%s\": ", shown > 0 ? "," : "", line);
            else
                printf("%s== service %s\n", shown > 0 ? "\n" : "", line);
            if ((rc = status_show(sub, a->json, &alive)) != 0) {
                fclose(f);
                return rc;
            }
            all &= alive;
            shown++;
        }
        fclose(f);
        if (a->json)
            printf("}}\n");
        if (shown == 0) {
            fprintf(stderr, "pipe2me-pod: %s/services: no service runs\n", a->state_dir);
            return 1;
        }
        return all ? 0 : 1;
    }
    if ((rc = status_show(a->state_dir, a->json, &alive)) != 0)
        return rc;
    if (a->json)
        printf("\n");
    return alive ? 0 : 1;
}
