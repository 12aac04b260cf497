/* relay/ports.c: listeners follow leases (PROTOCOL 3.3, 3.4). A relay in this process
 * (relay_harness.h) against a private redis-server: an announced lease is bound and answered
 * "PORT ok" with its state bound; hostile leases (bad kind, service, pod, address, conns, none at
 * all, outside the range) are answered "fail" and another relay's is ignored, without a listener; a port someone else
 * holds is answered "fail" and marked busy; a pre lease accepts only its pod's address and only
 * as many connections as it allows; a service's consumer port takes every address; an unlease
 * closes the listener. */
#include "relay_harness.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

static rh_t h;

static int no_lease(rh_t *hh, void *arg)
{
    return ports_find(hh->r, (uint16_t)(uintptr_t)arg) == NULL;
}

static int lease_listens(rh_t *hh, void *arg)
{
    lease_t *l = ports_find(hh->r, (uint16_t)(uintptr_t)arg);
    return l != NULL && l->listener.fd >= 0;
}

static int connected(rh_t *hh, void *arg)
{
    return strcmp(redis_fmt(hh->rc, hh->got, sizeof(hh->got), "HGET p2m:lease:%u state", (unsigned)(uintptr_t)arg), "connected") == 0;
}

static int idle_is(rh_t *hh, void *arg)
{
    return hh->r->nidle == (size_t)(uintptr_t)arg;
}

static void expect_answer(unsigned port, const char *want_suffix)
{
    char want[64];
    snprintf(want, sizeof(want), "%u %s", port, want_suffix);
    CHECK_EQ_STR(rh_answer(&h, port), want);
}

/* The listening socket whose inode arg points at is no descriptor of this process any more
 * (rh_until predicate). Not "a connection to its port is refused": once the relay let the port go,
 * any other program on the machine (another test's relay, say) may listen on it. */
static int socket_closed(rh_t *unused, void *arg)
{
    (void)unused;
    ino_t ino = *(const ino_t *)arg;
    int found = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    struct stat st;
    if (d == NULL)
        return 0;
    while (!found && (de = readdir(d)) != NULL)
        if (de->d_name[0] != '.' && fstat(atoi(de->d_name), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == ino)
            found = 1;
    closedir(d);
    return !found;
}

static void test_bind(void)
{
    unsigned p = h.lo;
    CHECK_CTX("a pre lease is bound");
    CHECK(ports_in_range(h.r, h.lo) && ports_in_range(h.r, h.lo + RH_PORTS - 1));
    CHECK(!ports_in_range(h.r, h.lo - 1) && !ports_in_range(h.r, h.lo + RH_PORTS));
    rh_lease(&h, p, "pre", "web", "pod1", "127.0.0.1", RH_NAME, "");
    expect_answer(p, "ok");
    lease_t *l = ports_find(h.r, (uint16_t)p);
    if (CHECK(l != NULL)) {
        CHECK_EQ_INT(l->kind, LEASE_PRE);
        CHECK_EQ_STR(l->label->name, "web");
        CHECK_EQ_STR(l->pod, "pod1");
        CHECK_EQ_INT(l->conns_left, 1);
        CHECK(l->listener.fd >= 0);
    }
    CHECK_EQ_STR(redis_fmt(h.rc, h.got, sizeof(h.got), "HGET p2m:lease:%u state", p), "bound");

    CHECK_CTX("announced again: answered again, the same listener");
    int fd = l != NULL ? l->listener.fd : -1;
    redis_fmt(h.rc, h.got, sizeof(h.got), "PUBLISH p2m:relay:%s lease%s%u", RH_NAME, " ", p);
    expect_answer(p, "ok");
    CHECK(ports_find(h.r, (uint16_t)p) == l && (l == NULL || l->listener.fd == fd));

    CHECK_CTX("unlease closes it");
    struct stat lst;
    ino_t ino = fd >= 0 && fstat(fd, &lst) == 0 ? lst.st_ino : 0;
    CHECK(ino != 0);
    redis_fmt(h.rc, h.got, sizeof(h.got), "PUBLISH p2m:events unlease%s%u", " ", p);
    CHECK(rh_until(&h, no_lease, (void *)(uintptr_t)p));
    /* The listener closes with the reap at the end of a turn, however long the turns take. */
    CHECK(rh_until(&h, socket_closed, &ino));
    redis_fmt(h.rc, h.got, sizeof(h.got), "DEL p2m:lease:%u", p);
}

static void test_refused(void)
{
    static const struct {
        const char *what, *kind, *service, *pod, *addr, *relay, *conns, *answer;
    } rows[] = {
        {"kind", "post", "web", "pod1", "127.0.0.1", RH_NAME, "", "fail invalid lease"},
        {"empty kind", "''", "web", "pod1", "127.0.0.1", RH_NAME, "", "fail invalid lease"},
        {"service", "pre", "we_b", "pod1", "127.0.0.1", RH_NAME, "", "fail invalid lease"},
        {"service protocol", "pre", "web:ftp", "pod1", "127.0.0.1", RH_NAME, "", "fail invalid lease"},
        {"pod", "pre", "web", "pod/1", "127.0.0.1", RH_NAME, "", "fail invalid lease"},
        {"address", "pre", "web", "pod1", "127.0.0.256", RH_NAME, "", "fail invalid lease"},
        {"a pre lease for any address", "pre", "web", "pod1", "*", RH_NAME, "", "fail invalid lease"},
        {"conns 0", "pre", "web", "pod1", "127.0.0.1", RH_NAME, "0", "fail invalid lease"},
        {"conns 33", "pre", "web", "pod1", "127.0.0.1", RH_NAME, "33", "fail invalid lease"},
        {"conns -1", "pre", "web", "pod1", "127.0.0.1", RH_NAME, "-1", "fail invalid lease"},
        {"conns on a consumer lease", "consumer", "web", "pod1", "127.0.0.1", RH_NAME, "2", "fail invalid lease"},
    };
    unsigned p = h.lo + 1;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        CHECK_CTX("refused: %s", rows[i].what);
        rh_lease(&h, p, rows[i].kind, rows[i].service, rows[i].pod, rows[i].addr, rows[i].relay, rows[i].conns);
        expect_answer(p, rows[i].answer);
        CHECK(ports_find(h.r, (uint16_t)p) == NULL);
        redis_fmt(h.rc, h.got, sizeof(h.got), "DEL p2m:lease:%u", p);
    }

    CHECK_CTX("refused: no lease behind the announcement");
    redis_fmt(h.rc, h.got, sizeof(h.got), "PUBLISH p2m:relay:%s lease%s%u", RH_NAME, " ", p);
    expect_answer(p, "fail no lease");

    CHECK_CTX("refused: a port outside the range");
    rh_lease(&h, h.lo - 1, "pre", "web", "pod1", "127.0.0.1", RH_NAME, "");
    expect_answer(h.lo - 1, "fail port outside the relay's range");

    CHECK_CTX("ignored: another relay's lease");
    rh_lease(&h, p, "pre", "web", "pod1", "127.0.0.1", "u2", "");
    redis_fmt(h.rc, h.got, sizeof(h.got), "PUBLISH p2m:relay:%s lease%s%u", RH_NAME, " ", p);
    rh_turn(&h, 300);
    CHECK(ports_find(h.r, (uint16_t)p) == NULL);
    CHECK_EQ_INT(h.r->nleases, 0);
    redis_fmt(h.rc, h.got, sizeof(h.got), "DEL p2m:lease:%u p2m:lease:%u", p, h.lo - 1);

    CHECK_CTX("a port someone else holds: fail, marked busy");
    int holder = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (CHECK(holder >= 0 && bind(holder, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(holder, 1) == 0)) {
        rh_lease(&h, p, "pre", "web", "pod1", "127.0.0.1", RH_NAME, "");
        char *a = strdup(rh_answer(&h, p));
        char want[32];
        snprintf(want, sizeof(want), "%u fail ", p);
        CHECK_MSG(a != NULL && strncmp(a, want, strlen(want)) == 0, "answer %s", a != NULL ? a : "(null)");
        free(a);
        CHECK(ports_find(h.r, (uint16_t)p) == NULL);
        CHECK_EQ_STR(redis_fmt(h.rc, h.got, sizeof(h.got), "EXISTS p2m:portbusy:%s:%u", RH_NAME, p), "1");
    }
    close(holder);
    redis_fmt(h.rc, h.got, sizeof(h.got), "DEL p2m:lease:%u p2m:portbusy:%s:%u", p, RH_NAME, p);
}

static void test_addresses(void)
{
    unsigned p = h.lo + 2, q = h.lo + 3;
    CHECK_CTX("a pre lease takes only its pod's address");
    rh_lease(&h, p, "pre", "web", "pod1", "127.0.0.2", RH_NAME, "");
    expect_answer(p, "ok");
    rh_peer_t wrong = {.fd = rh_connect((uint16_t)p, "127.0.0.3")};
    if (CHECK(wrong.fd >= 0)) {
        CHECK_MSG(rh_until(&h, rh_peer_eof, &wrong), "a pod from another address was not closed");
        close(wrong.fd);
    }
    CHECK(lease_listens(&h, (void *)(uintptr_t)p)); /* still waiting for its own pod */
    CHECK_EQ_INT(h.r->nidle, 0);
    rh_peer_t pod = {.fd = rh_connect((uint16_t)p, "127.0.0.2")};
    CHECK(pod.fd >= 0);
    CHECK(rh_until(&h, idle_is, (void *)(uintptr_t)1));
    /* one connection: the listener is gone, the lease object stays with its idle pre-connection */
    lease_t *l = ports_find(h.r, (uint16_t)p);
    CHECK(l != NULL && l->listener.fd < 0 && l->held == 1);
    CHECK_EQ_INT(rh_connect((uint16_t)p, "127.0.0.2"), -1);
    CHECK_MSG(rh_until(&h, connected, (void *)(uintptr_t)p), "lease %u state %s, want connected", p, h.got);

    CHECK_CTX("conns 3: three pre-connections on one port, then it stops listening");
    rh_lease(&h, q, "pre", "web", "pod1", "127.0.0.1", RH_NAME, "3");
    expect_answer(q, "ok");
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = rh_connect((uint16_t)q, NULL);
        CHECK(fds[i] >= 0);
        CHECK(rh_until(&h, idle_is, (void *)(uintptr_t)(2 + i)));
    }
    l = ports_find(h.r, (uint16_t)q);
    CHECK(l != NULL && l->listener.fd < 0 && l->held == 3 && l->conns_left == 0);
    CHECK_EQ_INT(rh_connect((uint16_t)q, NULL), -1);

    CHECK_CTX("the pod closes: the idle pre-connections go, and the lease with the last");
    close(pod.fd);
    CHECK(rh_until(&h, idle_is, (void *)(uintptr_t)3));
    CHECK(rh_until(&h, no_lease, (void *)(uintptr_t)p));
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    CHECK(rh_until(&h, idle_is, (void *)(uintptr_t)0));
    CHECK(rh_until(&h, no_lease, (void *)(uintptr_t)q));

    CHECK_CTX("a consumer lease for one address, and a service's port for all");
    unsigned c1 = h.lo + 4, c2 = h.lo + 5;
    rh_lease(&h, c1, "consumer", "web", "pod1", "127.0.0.4", RH_NAME, "");
    expect_answer(c1, "ok");
    rh_lease(&h, c2, "consumer", "web:tcp", "pod1", "*", RH_NAME, "");
    expect_answer(c2, "ok");
    l = ports_find(h.r, (uint16_t)c2);
    CHECK(l != NULL && l->kind == LEASE_CONSUMER && l->any_addr && strcmp(l->label->name, "web:tcp") == 0);
    rh_peer_t other = {.fd = rh_connect((uint16_t)c1, "127.0.0.5")};
    if (CHECK(other.fd >= 0)) {
        CHECK_MSG(rh_until(&h, rh_peer_eof, &other), "a consumer from another address was not closed");
        close(other.fd);
    }
    int a1 = rh_connect((uint16_t)c2, "127.0.0.6"), a2 = rh_connect((uint16_t)c2, "127.0.0.7");
    CHECK(a1 >= 0 && a2 >= 0);
    rh_turn(&h, 200);
    CHECK(lease_listens(&h, (void *)(uintptr_t)c2)); /* a consumer port keeps listening */
    CHECK_EQ_INT(ports_find(h.r, (uint16_t)c2)->nconns, 2);
    close(a1);
    close(a2);
}

int main(void)
{
    if (rh_start(&h, "relay-ports", 5) == 0) {
        test_bind();
        test_refused();
        test_addresses();
    }
    rh_stop(&h);
    return check_done("relay_ports");
}
