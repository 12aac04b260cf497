/* A private redis-server for the unit tests that drive lib/store*.c and the relay against a real
 * Redis: started on a unix socket in a fresh temp dir, without persistence, and stopped (TERM,
 * reaped, its files removed) at the end. Needs redis-server on PATH. */
#ifndef P2M_TEST_REDIS_SERVER_H
#define P2M_TEST_REDIS_SERVER_H

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    pid_t pid;
    char dir[64];
    char sock[128];
    char addr[160]; /* "unix:SOCK", as a config or p2m_redis_addr_parse() spells it */
} redis_server_t;

/* Starts redis-server in a new temp dir named after test and connects *rc (blocking) to it.
 * Returns 0, or -1 (nothing left running) when it cannot start: ready means the socket answers, and
 * a child that exits first is a failure, not something to wait out. */
static inline int redis_server_start(redis_server_t *s, const char *test, redisContext **rc)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/p2m-%s.XXXXXX", test);
    if (mkdtemp(s->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    snprintf(s->addr, sizeof(s->addr), "unix:%s", s->sock);
    s->pid = fork();
    if (s->pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL)
            _exit(127);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", s->sock, "--unixsocketperm", "700", "--dir", s->dir,
               "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    for (;;) {
        int status;
        if (s->pid < 0 || waitpid(s->pid, &status, WNOHANG) != 0) {
            rmdir(s->dir);
            s->pid = 0;
            return -1;
        }
        *rc = redisConnectUnix(s->sock);
        if (*rc != NULL && (*rc)->err == 0)
            return 0;
        redisFree(*rc);
        *rc = NULL;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
}

/* Stops it and removes its files. A server that never started is a no-op. */
static inline void redis_server_stop(redis_server_t *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, NULL, 0);
    char path[200];
    snprintf(path, sizeof(path), "%s/dump.rdb", s->dir);
    unlink(path);
    unlink(s->sock);
    rmdir(s->dir);
    s->pid = 0;
}

/* Runs a command on rc and renders its reply as one line: a string or status as it is, an integer
 * in decimal, nil as "(nil)", an error as "error: MSG", an array as its elements joined by "|". */
static inline const char *redis_fmt(redisContext *rc, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void redis_render(const redisReply *r, char *out, size_t cap)
{
    size_t n;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        snprintf(out, cap, "%s", r->str);
        break;
    case REDIS_REPLY_ERROR:
        snprintf(out, cap, "error: %s", r->str);
        break;
    case REDIS_REPLY_INTEGER:
        snprintf(out, cap, "%lld", r->integer);
        break;
    case REDIS_REPLY_NIL:
        snprintf(out, cap, "(nil)");
        break;
    case REDIS_REPLY_ARRAY:
        out[0] = '\0';
        for (size_t i = 0; i < r->elements && (n = strlen(out)) + 1 < cap; i++) {
            if (i > 0)
                out[n++] = '|', out[n] = '\0';
            redis_render(r->element[i], out + n, cap - n);
        }
        break;
    default:
        snprintf(out, cap, "reply type %d", r->type);
    }
}
static inline const char *redis_fmt(redisContext *rc, char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    if (r == NULL)
        snprintf(out, cap, "no reply: %s", rc->errstr);
    else
        redis_render(r, out, cap);
    freeReplyObject(r);
    return out;
}

#endif
