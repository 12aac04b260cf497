/* The TOTP step used and the session credential, kept in the state directory: see session.h. */
#include "session.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "p2m/totp.h"

#define SESSION_STEP_MARGIN_MS 250 /* after a step boundary, so that clocks agree */

/* Reads at most cap - 1 bytes of a small file into buf. Returns the length or -1. */
static ssize_t small_read(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

/* Replaces path with len bytes of data (mode 0600) through path.tmp and rename(2); a failure
 * leaves the old file. */
static void small_write(const char *path, const char *data, size_t len)
{
    char tmp[POD_PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    unlink(tmp); /* created afresh, so with mode 0600 */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return;
    int ok = write(fd, data, len) == (ssize_t)len;
    close(fd);
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
}

void pod_steps_init(pod_steps_t *steps, const char *dir)
{
    char buf[32];
    unsigned long long v = 0;
    memset(steps, 0, sizeof(*steps));
    if (dir[0] == '\0')
        return;
    snprintf(steps->path, sizeof(steps->path), "%s/totp-step", dir);
    if (small_read(steps->path, buf, sizeof(buf)) > 0 && sscanf(buf, "%llu", &v) == 1)
        steps->used = v;
}

static void session_load(pod_session_t *s)
{
    char buf[REG_SESSION_MAX + P2M_ID_MAX + P2M_LABEL_MAX + 64];
    char id[P2M_ID_MAX + 1], label[P2M_LABEL_MAX + 1], cred[REG_SESSION_MAX + 1];
    unsigned long long until = 0, now = (unsigned long long)time(NULL);
    if (small_read(s->session_path, buf, sizeof(buf)) > 0 && sscanf(buf, "v1 %64s %63s %llu %128s", id, label, &until, cred) == 4 &&
        strcmp(id, s->id) == 0 && strcmp(label, s->label) == 0 && reg_session_valid(cred) && until > now + 60 &&
        until < now + 30ull * 86400) {
        pod_session_set(s, cred, (unsigned)(until - now), 0);
        p2m_log(P2M_LOG_INFO, "session_resumed", "label=%s expires_s=%llu", s->label, until - now);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_cleanse(cred, sizeof(cred));
}

void pod_session_init(pod_session_t *s, const pod_args_t *args, p2m_loop_t *loop, pod_steps_t *steps, const char *session_path)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", args->id);
    snprintf(s->label, sizeof(s->label), "%s", args->label);
    s->loop = loop;
    if (steps == NULL)
        pod_steps_init(&s->own_steps, args->state_dir);
    s->steps = steps != NULL ? steps : &s->own_steps;
    if (session_path != NULL)
        snprintf(s->session_path, sizeof(s->session_path), "%s", session_path);
    else if (args->state_dir[0] != '\0')
        snprintf(s->session_path, sizeof(s->session_path), "%s/session", args->state_dir);
    if (s->session_path[0] != '\0')
        session_load(s);
}

void pod_session_wipe(pod_session_t *s)
{
    OPENSSL_cleanse(s->cred, sizeof(s->cred));
}

int pod_session_step_next(pod_session_t *s, uint64_t *step, unsigned *wait_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_step = (uint64_t)ts.tv_sec / P2M_TOTP_STEP;
    if (s->steps->used > now_step + 1) /* saved before the clock was set back: the registrar's clock decides */
        s->steps->used = 0;
    if (now_step <= s->steps->used) {
        uint64_t next_ms = (s->steps->used + 1) * P2M_TOTP_STEP * 1000ull;
        uint64_t now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
        *wait_ms = (unsigned)(next_ms > now_ms ? next_ms - now_ms : 0) + SESSION_STEP_MARGIN_MS;
        return -1;
    }
    *step = now_step;
    return 0;
}

uint64_t pod_session_step_use(pod_session_t *s, uint64_t step)
{
    char buf[32];
    uint64_t prev = s->steps->used;
    s->steps->used = step;
    if (s->steps->path[0] != '\0') {
        int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)step);
        small_write(s->steps->path, buf, (size_t)n);
    }
    return prev;
}

void pod_session_step_unuse(pod_session_t *s, uint64_t prev)
{
    s->steps->used = prev;
}

void pod_session_set(pod_session_t *s, const char *cred, unsigned ttl_s, int save)
{
    char buf[REG_SESSION_MAX + P2M_ID_MAX + P2M_LABEL_MAX + 64];
    uint64_t ttl_ms = (uint64_t)ttl_s * 1000u;
    uint64_t margin = ttl_ms / 10 < 30000 ? ttl_ms / 10 : 30000;
    snprintf(s->cred, sizeof(s->cred), "%s", cred);
    s->until = p2m_loop_now(s->loop) + ttl_ms - margin;
    if (!save || s->session_path[0] == '\0')
        return;
    int n = snprintf(buf, sizeof(buf), "v1 %s %s %llu %s\n", s->id, s->label, (unsigned long long)time(NULL) + ttl_s, cred);
    if (n > 0 && (size_t)n < sizeof(buf))
        small_write(s->session_path, buf, (size_t)n);
    OPENSSL_cleanse(buf, sizeof(buf));
}

void pod_session_drop(pod_session_t *s)
{
    OPENSSL_cleanse(s->cred, sizeof(s->cred));
    s->cred[0] = '\0';
    if (s->session_path[0] != '\0')
        unlink(s->session_path);
}

void pod_session_expire(pod_session_t *s)
{
    if (s->cred[0] != '\0' && p2m_loop_now(s->loop) >= s->until) {
        p2m_log(P2M_LOG_INFO, "session_expired", "label=%s", s->label);
        pod_session_drop(s);
    }
}
