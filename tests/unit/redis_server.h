#ifndef P2M_TEST_REDIS_SERVER_H
#define P2M_TEST_REDIS_SERVER_H

/* A private redis-server for unit tests that run Lua scripts for real (limiter.c, store_cmd.c): a
 * unix socket in a temp dir, no persistence. Needs redis-server on PATH. */

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Starts the server in dir (its socket path goes to sock) and connects *rc to it. Returns its pid,
 * or -1 when it did not start. */
static inline pid_t test_redis_start(const char *dir, char *sock, size_t cap, redisContext **rc)
{
    snprintf(sock, cap, "%s/redis.sock", dir);
    pid_t pid = fork();
    if (pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL)
            _exit(127);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--dir", dir,
               "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    /* Ready when the socket answers; a stopped child is a failure, not something to wait out. */
    for (;;) {
        int status;
        if (pid < 0 || waitpid(pid, &status, WNOHANG) != 0)
            return -1;
        *rc = redisConnectUnix(sock);
        if (*rc != NULL && (*rc)->err == 0)
            return pid;
        redisFree(*rc);
        *rc = NULL;
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
}

/* Disconnects rc, stops the server and removes what it left in dir, and dir. */
static inline void test_redis_stop(pid_t pid, redisContext *rc, const char *dir, const char *sock)
{
    char path[200];
    redisFree(rc);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    snprintf(path, sizeof(path), "%s/dump.rdb", dir);
    unlink(path);
    unlink(sock);
    rmdir(dir);
}

#endif
