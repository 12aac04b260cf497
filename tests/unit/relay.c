/* Unit tests for the relay's pure parts (relay/, linked through p2m_relay_extra): how --workers
 * splits the name and the port range, peer addresses, the per-address limit, the label table and
 * its counters. The event-driven parts are covered by tests/e2e/2x-relay-*.sh. */

#include "check.h"
#include "p2m/err.h"
#include "p2m/label.h"
#include "relay.h"

#include <stdlib.h>
#include <string.h>

static void test_workers_config(void)
{
    char err[P2M_ERR_LEN] = "", check[P2M_LABEL_MAX + 1];
    p2m_config_t base, w;
    p2m_config_defaults(&base);
    strcpy(base.relay.name, "relay");
    base.relay.ports = (p2m_port_range_t){20000, 20009};

    CHECK_CTX("workers: 3 over 10 ports");
    unsigned next = 20000;
    for (unsigned i = 0; i < 3; i++) {
        if (!CHECK_RC(workers_config(&base, 3, i, &w, err), 0, err))
            continue;
        char want[16];
        snprintf(want, sizeof(want), "relay-%u", i);
        CHECK_EQ_STR(w.relay.name, want);
        CHECK_EQ_INT(w.relay.ports.lo, next); /* contiguous, no gap, no overlap */
        CHECK(w.relay.ports.hi >= w.relay.ports.lo);
        next = w.relay.ports.hi + 1u;
        CHECK_EQ_STR(w.redis_str, base.redis_str); /* everything else is the base's */
    }
    CHECK_EQ_INT(next, 20010);

    CHECK_CTX("workers: limits");
    CHECK_RC(workers_config(&base, 10, 9, &w, err), 0, err);
    CHECK_EQ_INT(w.relay.ports.lo, 20009);
    CHECK_EQ_INT(w.relay.ports.hi, 20009);
    CHECK_RC(workers_config(&base, 11, 0, &w, err), -1, err);
    CHECK_RC(workers_config(&base, 3, 3, &w, err), -1, err);
    CHECK_RC(workers_config(&base, 0, 0, &w, err), -1, err);
    base.relay.ports = (p2m_port_range_t){1, 65535};
    CHECK_RC(workers_config(&base, 64, 63, &w, err), 0, err);
    CHECK_EQ_INT(w.relay.ports.hi, 65535);

    /* The longest name still yields a valid label ending in the suffix, also when the cut lands
     * on a hyphen. */
    const char *names[] = {"a23456789012345678901234567890123456789012345678901234567890123",
                           "a2345678901234567890123456789012345678901234567890123456789-0123"};
    for (size_t k = 0; k < 2; k++) {
        CHECK_CTX("workers: name %s", names[k]);
        snprintf(base.relay.name, sizeof(base.relay.name), "%.63s", names[k]);
        if (!CHECK_RC(workers_config(&base, 64, 42, &w, err), 0, err))
            continue;
        CHECK(strlen(w.relay.name) <= P2M_LABEL_MAX);
        CHECK_RC(p2m_label_normalize(w.relay.name, strlen(w.relay.name), check, err), 0, err);
        CHECK(strcmp(w.relay.name + strlen(w.relay.name) - 3, "-42") == 0);
    }
}

static void test_peer_addr(void)
{
    struct row {
        const char *in;
        int rc;
        const char *out;
    } rows[] = {
        {"127.0.0.1", 0, "127.0.0.1"},
        {"::ffff:127.0.0.1", 0, "127.0.0.1"}, /* what a dual-stack socket reports for IPv4 */
        {"::1", 0, "::1"},
        {"2001:db8::1", 0, "2001:db8::1"},
        {"0.0.0.0", 0, "0.0.0.0"},
        {"", -1, NULL},
        {"localhost", -1, NULL},
        {"127.0.0.1 ", -1, NULL},
        {" 127.0.0.1", -1, NULL},
        {"127.0.0", -1, NULL},
        {"256.0.0.1", -1, NULL},
        {"[::1]", -1, NULL},
        {"::1%lo", -1, NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        peer_addr_t a;
        char buf[PEER_ADDR_STRLEN];
        CHECK_CTX("peer_addr %s", check_str(rows[i].in));
        if (!CHECK_EQ_INT(peer_addr_parse(rows[i].in, &a), rows[i].rc) || rows[i].rc != 0)
            continue;
        CHECK_EQ_STR(peer_addr_str(&a, buf), rows[i].out);
    }
    peer_addr_t a, b;
    peer_addr_parse("127.0.0.1", &a);
    peer_addr_parse("::ffff:127.0.0.1", &b);
    CHECK_CTX("v4 and v4-mapped compare equal");
    CHECK(memcmp(&a, &b, sizeof(a)) == 0);
}

static void test_limits(void)
{
    limits_t *lim = limits_new(3);
    peer_addr_t a, b;
    peer_addr_parse("192.0.2.1", &a);
    peer_addr_parse("192.0.2.2", &b);
    CHECK_CTX("limits");
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(limits_acquire(lim, &a), 0);
    CHECK_EQ_INT(limits_acquire(lim, &a), -1);
    CHECK_EQ_INT(limits_count(lim, &a), 3);
    CHECK_EQ_INT(limits_acquire(lim, &b), 0); /* per address */
    limits_release(lim, &a);
    CHECK_EQ_INT(limits_acquire(lim, &a), 0);
    for (int i = 0; i < 3; i++)
        limits_release(lim, &a);
    CHECK_EQ_INT(limits_count(lim, &a), 0);
    limits_release(lim, &a); /* unknown: no-op */
    CHECK_EQ_INT(limits_count(lim, &a), 0);
    /* Many addresses: the table grows and still finds every one. */
    for (unsigned i = 0; i < 5000; i++) {
        peer_addr_t x;
        char s[64];
        snprintf(s, sizeof(s), "2001:db8::%x", i);
        peer_addr_parse(s, &x);
        limits_acquire(lim, &x);
    }
    int all = 1;
    for (unsigned i = 0; i < 5000; i++) {
        peer_addr_t x;
        char s[64];
        snprintf(s, sizeof(s), "2001:db8::%x", i);
        peer_addr_parse(s, &x);
        all &= limits_count(lim, &x) == 1;
        limits_release(lim, &x);
    }
    CHECK_MSG(all, "an address lost its count while the table grew");
    limits_free(lim);
    limits_free(NULL);
}

static unsigned emitted;
static void emit(relay_t *r, const label_t *l, void *arg)
{
    (void)r;
    (void)arg;
    emitted++;
    CHECK(l->bytes_in != 0 || l->bytes_out != 0 || l->conns != 0);
}

static void test_labels(void)
{
    relay_t r;
    char err[P2M_ERR_LEN] = "", name[32];
    memset(&r, 0, sizeof(r));
    CHECK_CTX("labels");
    CHECK_RC(match_init(&r, err), 0, err);
    label_t *web = label_get(&r, "web");
    CHECK(label_get(&r, "web") == web);
    CHECK_EQ_INT(web->refs, 2);
    /* Enough labels to grow the table several times. */
    label_t *many[1000];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "l%d", i);
        many[i] = label_get(&r, name);
    }
    CHECK_EQ_INT(r.nlabels, 1001);
    int found = 1;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "l%d", i);
        label_t *l = label_get(&r, name);
        found &= l == many[i];
        label_put(&r, l);
    }
    CHECK_MSG(found, "a label moved or was duplicated while the table grew");
    for (int i = 0; i < 1000; i++)
        label_put(&r, many[i]); /* unreferenced, no counters: freed at once */
    CHECK_EQ_INT(r.nlabels, 1);

    /* An unreferenced label with unpublished counters lives until they are flushed. */
    web->bytes_in = 10;
    web->conns = 1;
    label_put(&r, web);
    label_put(&r, web);
    CHECK_EQ_INT(r.nlabels, 1);
    label_t *api = label_get(&r, "api");
    label_flush_counters(&r, emit, NULL);
    CHECK_EQ_INT(emitted, 1);
    CHECK_EQ_INT(r.nlabels, 1); /* web gone, api kept (referenced) */
    label_flush_counters(&r, emit, NULL);
    CHECK_EQ_INT(emitted, 1); /* nothing new to publish */
    label_put(&r, api);
    CHECK_EQ_INT(r.nlabels, 0);
    match_free(&r);
}

int main(void)
{
    test_workers_config();
    test_peer_addr();
    test_limits();
    test_labels();
    return check_done("relay");
}
