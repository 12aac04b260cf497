/* relay/match.c: consumers joined to idle pre-connections of the same service. A relay in this
 * process (relay_harness.h) against a private redis-server; the test's sockets are the pods (on
 * pre leases) and the consumers (on the service's consumer port). The oldest idle pre-connection
 * is taken first and carries bytes both ways; a consumer with none waits in a FIFO queue and is
 * joined at once when a pre-connection comes; a pre-connection of another service of the label is
 * never taken; a waiting consumer that leaves leaves the queue; one nobody serves is closed after
 * relay.wait_timeout (never sooner); a pre-connection whose pod left is never joined; a label
 * several pods serve gives consumers to its pods in turn, skipping a pod whose pre-connections
 * closed; a pre-connection reset under a consumer's first bytes (its pod gave it back) passes the
 * consumer, bytes intact, to the next one, while a pod's answer, more bytes from the consumer or
 * the pod's end of stream end that trial. */
#include "relay_harness.h"

static rh_t h;
static unsigned next_port;

static int nidle_is(rh_t *hh, void *arg)
{
    return hh->r->nidle == (size_t)(uintptr_t)arg;
}

static int nwaiting_is(rh_t *hh, void *arg)
{
    return hh->r->nwaiting == (size_t)(uintptr_t)arg;
}

/* Pod id's pre-connection for service: a fresh pre lease, bound, then connected; waits until the
 * relay counts idle pre-connections (nidle_after, or the wait queue shrinks when a consumer was
 * waiting: then pass -1). */
static int pod_of(const char *service, const char *id, long nidle_after)
{
    unsigned p = next_port++;
    char want[32];
    rh_lease(&h, p, "pre", service, id, "127.0.0.1", RH_NAME, "");
    snprintf(want, sizeof(want), "%u ok", p);
    if (!CHECK_EQ_STR(rh_answer(&h, p), want))
        return -1;
    int fd = rh_connect((uint16_t)p, NULL);
    CHECK(fd >= 0);
    if (nidle_after >= 0)
        CHECK_MSG(rh_until(&h, nidle_is, (void *)(uintptr_t)nidle_after), "idle %zu, want %ld", h.r->nidle, nidle_after);
    return fd;
}

/* pod1's pre-connection (pod_of). */
static int pod(const char *service, long nidle_after)
{
    return pod_of(service, "pod1", nidle_after);
}

/* The number of pods in lab's ring of idle pre-connections. */
static unsigned ring_len(const label_t *lab)
{
    unsigned n = 0;
    const podq_t *q = lab->turn;
    if (q != NULL)
        do {
            n++;
            q = q->next;
        } while (q != lab->turn && n < 100);
    return n;
}

/* A consumer on port q that sends what. */
static int consumer(unsigned q, const char *what)
{
    int fd = rh_connect((uint16_t)q, NULL);
    if (CHECK(fd >= 0))
        CHECK(send(fd, what, strlen(what), 0) == (ssize_t)strlen(what));
    return fd;
}

/* peer reads exactly want (and nothing more arrives meanwhile). */
static void expect_reads(int fd, const char *want, const char *who)
{
    rh_peer_t p = {.fd = fd};
    CHECK_MSG(rh_until(&h, rh_peer_has, &p), "%s read nothing", who);
    while (p.len < strlen(want) && !p.eof && rh_until(&h, rh_peer_has, &p) && p.len < strlen(want))
        ;
    CHECK_MSG(strcmp(p.buf, want) == 0 && !p.eof, "%s: want \"%s\", got \"%s\"%s", who, want, p.buf, p.eof ? " and EOF" : "");
}

/* Nothing arrives at fd for ms while the loop turns. */
static void expect_quiet(int fd, unsigned ms, const char *who)
{
    rh_turn(&h, ms);
    rh_peer_t p = {.fd = fd};
    rh_read(&p);
    CHECK_MSG(p.len == 0 && !p.eof, "%s: want nothing, got \"%s\"%s", who, p.buf, p.eof ? " and EOF" : "");
}

int main(void)
{
    const unsigned wait_timeout = 2;
    if (rh_start(&h, "relay-match", wait_timeout) != 0) {
        rh_stop(&h);
        return check_done("relay_match");
    }
    unsigned q = h.lo;
    next_port = h.lo + 1;
    rh_lease(&h, q, "consumer", "web", "pod1", "*", RH_NAME, "");
    CHECK_CTX("the consumer port");
    char want[32];
    snprintf(want, sizeof(want), "%u ok", q);
    CHECK_EQ_STR(rh_answer(&h, q), want);
    if (!CHECK(ports_find(h.r, (uint16_t)q) != NULL))
        goto Exit;

    CHECK_CTX("oldest idle pre-connection first, bytes both ways");
    int a = pod("web", 1), b = pod("web", 2);
    label_t *web = label_find(h.r, "web");
    if (CHECK(web != NULL))
        CHECK_EQ_INT(web->nidle, 2);
    int c1 = consumer(q, "hello");
    expect_reads(a, "hello", "pod a");
    CHECK(rh_until(&h, nidle_is, (void *)(uintptr_t)1));
    CHECK(send(a, "world", 5, 0) == 5);
    expect_reads(c1, "world", "consumer 1");
    expect_quiet(b, 100, "pod b");
    CHECK_EQ_INT(h.r->njoined, 1);

    CHECK_CTX("a pod that left is never joined");
    close(b);
    CHECK(rh_until(&h, nidle_is, (void *)(uintptr_t)0));
    int d = pod("web", 1);
    int c2 = consumer(q, "two");
    expect_reads(d, "two", "pod d");

    CHECK_CTX("no idle pre-connection: the consumer waits, and is joined when one comes");
    int c3 = consumer(q, "three");
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)1));
    if (web = label_find(h.r, "web"), CHECK(web != NULL))
        CHECK_EQ_INT(web->nwait, 1);
    int e = pod("web", -1);
    expect_reads(e, "three", "pod e");
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)0));
    CHECK_EQ_INT(h.r->nidle, 0); /* never counted idle */
    CHECK(send(e, "3", 1, 0) == 1);
    expect_reads(c3, "3", "consumer 3");

    CHECK_CTX("waiting consumers are served in order");
    int c4 = consumer(q, "four");
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)1));
    int c5 = consumer(q, "five");
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)2));
    int f = pod("web", -1);
    expect_reads(f, "four", "pod f");
    int g = pod("web", -1);
    expect_reads(g, "five", "pod g");
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)0));

    CHECK_CTX("another service of the label is never taken; a consumer that leaves leaves the queue");
    int t = pod("web:tcp", 1);
    int c6 = consumer(q, "six");
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)1));
    expect_quiet(t, 200, "pod of web:tcp");
    close(c6);
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)0));
    CHECK_EQ_INT(h.r->nidle, 1);

    CHECK_CTX("several pods behind the label: consumers go to them in turn, each pod's oldest first");
    size_t base = h.r->nidle;
    int s1a = pod_of("web", "pod1", (long)base + 1), s1b = pod_of("web", "pod1", (long)base + 2);
    int s1c = pod_of("web", "pod1", (long)base + 3), s2a = pod_of("web", "pod2", (long)base + 4);
    web = label_find(h.r, "web");
    if (CHECK(web != NULL))
        CHECK_EQ_INT(ring_len(web), 2);
    int k1 = consumer(q, "k1");
    expect_reads(s1a, "k1", "pod1's oldest");
    int k2 = consumer(q, "k2");
    expect_reads(s2a, "k2", "pod2's only one");
    if (CHECK(web != NULL))
        CHECK_EQ_INT(ring_len(web), 1); /* pod2 has none left: out of the ring */
    int k3 = consumer(q, "k3");
    expect_reads(s1b, "k3", "pod1's next");
    int k4 = consumer(q, "k4");
    expect_reads(s1c, "k4", "pod1's last");
    CHECK(rh_until(&h, nidle_is, (void *)(uintptr_t)base));
    if (CHECK(web != NULL))
        CHECK(web->turn == NULL);

    CHECK_CTX("a pod whose pre-connections closed is skipped: the other takes the consumers");
    int s1d = pod_of("web", "pod1", (long)base + 1), s2b = pod_of("web", "pod2", (long)base + 2);
    int s2c = pod_of("web", "pod2", (long)base + 3);
    close(s1d); /* pod1 dies: its turn comes first, whether or not the relay has read the end of stream */
    int k5 = consumer(q, "k5");
    expect_reads(s2b, "k5", "pod2, pod1 gone");
    int k6 = consumer(q, "k6");
    expect_reads(s2c, "k6", "pod2 again");
    CHECK(rh_until(&h, nidle_is, (void *)(uintptr_t)base));

    CHECK_CTX("a waiting consumer is not joined to a pre-connection its pod closed before it was accepted");
    int k7 = consumer(q, "k7");
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)1));
    unsigned dp = next_port++;
    rh_lease(&h, dp, "pre", "web", "pod2", "127.0.0.1", RH_NAME, "");
    snprintf(want, sizeof(want), "%u ok", dp);
    CHECK_EQ_STR(rh_answer(&h, dp), want);
    int dead = rh_connect((uint16_t)dp, NULL);
    CHECK(dead >= 0);
    close(dead); /* in the listener's backlog with its end of stream, before the relay accepts it */
    expect_quiet(k7, 200, "consumer 7");
    CHECK_EQ_INT(h.r->nwaiting, 1);
    int s1e = pod_of("web", "pod1", -1);
    expect_reads(s1e, "k7", "pod1's new one");
    CHECK(rh_until(&h, nwaiting_is, (void *)(uintptr_t)0));

    CHECK_CTX("a pre-connection its pod gives back (a reset) as a consumer takes it: the next one gets the same bytes, once");
    base = h.r->nidle;
    int x = pod_of("web", "pod1", (long)base + 1), y = pod_of("web", "pod1", (long)base + 2);
    int k8 = consumer(q, "k8");
    expect_reads(x, "k8", "the one given back"); /* copied on trial, still in the consumer's socket */
    struct linger reset = {1, 0};
    CHECK(setsockopt(x, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) == 0);
    close(x);
    x = -1;
    expect_reads(y, "k8", "the next one");
    CHECK(send(y, "8", 1, 0) == 1);
    expect_reads(k8, "8", "consumer 8");
    CHECK(send(k8, "+", 1, 0) == 1);
    expect_reads(y, "+", "the next one, after its answer"); /* not k8 again */

    CHECK_CTX("bytes beyond those copied end the trial before the pod answers");
    int z = pod_of("web", "pod1", (long)base + 1);
    int k9 = consumer(q, "k9");
    expect_reads(z, "k9", "pod z");
    CHECK(send(k9, "-more", 5, 0) == 5);
    expect_reads(z, "-more", "pod z, the rest");
    CHECK(send(z, "9", 1, 0) == 1);
    expect_reads(k9, "9", "consumer 9");

    CHECK_CTX("an end of stream from the pod is the service's: passed on, not tried again");
    int v = pod_of("web", "pod1", (long)base + 1), v2 = pod_of("web", "pod1", (long)base + 2);
    rh_peer_t k10 = {.fd = consumer(q, "k10")};
    expect_reads(v, "k10", "pod v");
    CHECK(shutdown(v, SHUT_WR) == 0);
    CHECK(rh_until(&h, rh_peer_eof, &k10));
    expect_quiet(v2, 100, "the pre-connection after v");
    CHECK_EQ_INT(h.r->nidle, base + 1);
    close(v2);
    v2 = -1;
    CHECK(rh_until(&h, nidle_is, (void *)(uintptr_t)base));

    CHECK_CTX("a consumer nobody serves is closed after relay.wait_timeout, not sooner");
    uint64_t t0 = rh_ms();
    rh_peer_t c7 = {.fd = consumer(q, "seven")};
    CHECK(rh_until(&h, rh_peer_eof, &c7));
    uint64_t waited = rh_ms() - t0;
    CHECK_MSG(waited + 100 >= wait_timeout * 1000u, "closed after %llu ms, wait_timeout is %u s", (unsigned long long)waited,
              wait_timeout);
    CHECK_EQ_INT(h.r->nwaiting, 0);
    close(c7.fd);

    int fds[] = {a,  c1, d,   c2,  c3, e,  c4, c5,  f, g, t,  s1a, s1b, s1c, s2a, k1,    k2,
                 k3, k4, s2b, s2c, k5, k6, k7, s1e, x, y, k8, z,   k9,  v,   v2,  k10.fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
Exit:
    rh_stop(&h);
    return check_done("relay_match");
}
