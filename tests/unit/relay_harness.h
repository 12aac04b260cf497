/* A relay in the test's own process for the unit tests of relay/ports.c and relay/match.c: the
 * real relay_t (relay_new, linked through p2m_relay_<name>_extra) against a private redis-server
 * (redis_server.h), on a few free loopback ports, its loop turned by the test (rh_until) while
 * the test's own sockets play pods and consumers. Leases are written and announced as the
 * registrar does; answers on p2m:bound are read from a subscribed connection. */
#ifndef P2M_TEST_RELAY_HARNESS_H
#define P2M_TEST_RELAY_HARNESS_H

#include "check.h"
#include "p2m/err.h"
#include "p2m/log.h"
#include "redis_server.h"
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>

#define RH_PORTS 32
#define RH_NAME "u1"

typedef struct {
    redis_server_t srv;
    redisContext *rc;    /* the test's commands */
    redisContext *bound; /* subscribed to p2m:bound */
    relay_t *r;
    uint16_t lo; /* the relay's ports: lo..lo+RH_PORTS-1 */
    char got[1024];
} rh_t;

static inline uint64_t rh_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Turns the relay's loop until cond(arg) holds, for at most 30 s of wall time (a loaded machine
 * is slow, never this slow). Returns 1 when it holds. */
static inline int rh_until(rh_t *h, int (*cond)(rh_t *h, void *arg), void *arg)
{
    uint64_t end = rh_ms() + 30000;
    while (!cond(h, arg)) {
        if (rh_ms() > end)
            return 0;
        p2m_loop_run_once(h->r->loop, 10);
    }
    return 1;
}

/* Turns the loop for ms milliseconds (for "nothing happens" checks). */
static inline void rh_turn(rh_t *h, unsigned ms)
{
    uint64_t end = rh_ms() + ms;
    while (rh_ms() < end)
        p2m_loop_run_once(h->r->loop, 10);
}

static inline int rh_port_free(uint16_t p)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(p), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static inline int rh_ready(rh_t *h, void *arg)
{
    (void)arg;
    return rredis_ready(h->r->redis) &&
           strcmp(redis_fmt(h->rc, h->got, sizeof(h->got), "PUBSUB NUMSUB p2m:relay:%s", RH_NAME), "p2m:relay:" RH_NAME "|1") == 0;
}

/* Starts Redis and a relay named RH_NAME on RH_PORTS free ports (20000-31999, where the kernel
 * hands out no outgoing ports by default) with relay.wait_timeout wait_timeout; waits until it
 * listens on its lease channel. Returns 0 or -1 (a check failed). */
static inline int rh_start(rh_t *h, const char *test, unsigned wait_timeout)
{
    memset(h, 0, sizeof(*h));
    signal(SIGPIPE, SIG_IGN);
    p2m_log_set_level(P2M_LOG_WARN);
    if (!CHECK(redis_server_start(&h->srv, test, &h->rc) == 0)) {
        printf("redis-server did not start (is it installed?)\n");
        return -1;
    }
    srand((unsigned)getpid());
    for (int tries = 0; tries < 200 && h->lo == 0; tries++) {
        uint16_t lo = (uint16_t)(20000 + rand() % (12000 - RH_PORTS));
        int ok = 1;
        for (uint16_t p = lo; ok && p < lo + RH_PORTS; p++)
            ok = rh_port_free(p);
        if (ok)
            h->lo = lo;
    }
    if (!CHECK_MSG(h->lo != 0, "no %d free ports", RH_PORTS))
        return -1;
    char json[1024], err[P2M_ERR_LEN] = "";
    snprintf(json, sizeof(json),
             "{\"domain\": \"pipe2me.localhost\", \"public_address\": \"127.0.0.1\", \"redis\": \"%s\", \"state_dir\": \"%s\","
             " \"relay\": {\"name\": \"%s\", \"ports\": \"%u-%u\", \"listen\": \"127.0.0.1\", \"wait_timeout\": %u, \"sni_listen\": null}}",
             h->srv.addr, h->srv.dir, RH_NAME, (unsigned)h->lo, (unsigned)(h->lo + RH_PORTS - 1), wait_timeout);
    p2m_config_t cfg;
    p2m_config_defaults(&cfg);
    if (!CHECK_RC(p2m_config_parse(json, strlen(json), &cfg, err), 0, err))
        return -1;
    h->r = relay_new(&cfg, 16, 64 * 1024, err);
    if (!CHECK_MSG(h->r != NULL, "relay_new: %s", err))
        return -1;
    h->bound = redisConnectUnix(h->srv.sock);
    if (!CHECK(h->bound != NULL && h->bound->err == 0))
        return -1;
    freeReplyObject(redisCommand(h->bound, "SUBSCRIBE p2m:bound"));
    return CHECK_MSG(rh_until(h, rh_ready, NULL), "the relay did not subscribe to its lease channel") ? 0 : -1;
}

static inline void rh_stop(rh_t *h)
{
    relay_free(h->r);
    redisFree(h->bound);
    redisFree(h->rc);
    redis_server_stop(&h->srv);
}

/* rh_lease(h, port, kind, service, pod, addr, relay, conns): writes the lease as the registrar
 * does (state pending, TTL 60 s; conns "" for none) and announces it on the relay's channel. */
static inline void rh_lease(rh_t *h, unsigned port, const char *kind, const char *service, const char *pod, const char *addr,
                            const char *relay, const char *conns)
{
    char label[P2M_LABEL_MAX + 1];
    snprintf(label, sizeof(label), "%.*s", (int)strcspn(service, ":"), service);
    redis_fmt(h->rc, h->got, sizeof(h->got), "HSET p2m:lease:%u kind %s label %s service %s pod %s addr %s relay %s created %lld state pending",
              port, kind, label, service, pod, addr, relay, (long long)time(NULL));
    if (conns[0] != '\0')
        redis_fmt(h->rc, h->got, sizeof(h->got), "HSET p2m:lease:%u conns %s", port, conns);
    redis_fmt(h->rc, h->got, sizeof(h->got), "EXPIRE p2m:lease:%u 60", port);
    redis_fmt(h->rc, h->got, sizeof(h->got), "PUBLISH p2m:relay:%s %s%u", relay, "lease ", port);
}

/* The relay's next answer about PORT on p2m:bound ("PORT ok", "PORT fail REASON"), waiting while
 * the loop turns; answers about other ports are skipped (a lease announced twice before its first
 * answer is answered twice); "" after 30 s. */
typedef struct {
    char msg[128];
    unsigned port;
} rh_answer_t;
static inline int rh_answered(rh_t *h, void *arg)
{
    rh_answer_t *a = arg;
    redisReply *r = NULL;
    if (redisGetReplyFromReader(h->bound, (void **)&r) != REDIS_OK)
        return 0;
    if (r == NULL) { /* nothing buffered: read what the socket has, without blocking */
        struct pollfd pfd = {.fd = h->bound->fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) != 1 || redisBufferRead(h->bound) != REDIS_OK ||
            redisGetReplyFromReader(h->bound, (void **)&r) != REDIS_OK || r == NULL)
            return 0;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING &&
        strtoul(r->element[2]->str, NULL, 10) == a->port)
        snprintf(a->msg, sizeof(a->msg), "%s", r->element[2]->str);
    freeReplyObject(r);
    return a->msg[0] != '\0';
}
static inline const char *rh_answer(rh_t *h, unsigned port)
{
    static rh_answer_t a;
    a.msg[0] = '\0';
    a.port = port;
    rh_until(h, rh_answered, &a);
    return a.msg;
}

/* A blocking TCP connection to 127.0.0.1:port from source address src ("127.0.0.1" when NULL),
 * then non-blocking; -1 when refused. */
static inline int rh_connect(uint16_t port, const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (src != NULL) {
        struct sockaddr_in from = {.sin_family = AF_INET};
        inet_pton(AF_INET, src, &from.sin_addr);
        if (bind(fd, (struct sockaddr *)&from, sizeof(from)) != 0) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* What a test socket reads: its bytes so far, and whether its peer closed it. */
typedef struct {
    int fd;
    char buf[256];
    size_t len;
    int eof;
} rh_peer_t;

static inline void rh_read(rh_peer_t *p)
{
    for (;;) {
        ssize_t n = recv(p->fd, p->buf + p->len, sizeof(p->buf) - 1 - p->len, 0);
        if (n > 0) {
            p->len += (size_t)n;
            p->buf[p->len] = '\0';
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            p->eof = 1;
        return;
    }
}

/* Predicates for rh_until. */
static inline int rh_peer_has(rh_t *h, void *arg) /* rh_peer_t: some bytes or EOF */
{
    (void)h;
    rh_peer_t *p = arg;
    rh_read(p);
    return p->len > 0 || p->eof;
}
static inline int rh_peer_eof(rh_t *h, void *arg)
{
    (void)h;
    rh_peer_t *p = arg;
    rh_read(p);
    return p->eof;
}

#endif
