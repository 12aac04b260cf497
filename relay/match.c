/* Joining consumers to idle pre-connections of the same label.
 *
 * Each label keeps its idle pre-connections and its waiting consumers as FIFO lists of tunnels.
 * The idle ones are also queued per pod (podq_t), the queues in a ring: a label several pods serve
 * (pipe2me-admin label share) gives each consumer to the next pod in turn that has an idle
 * pre-connection, its oldest. A pod whose pre-connections close (it died, or was disabled and the
 * relay closed them) leaves the ring with its last one, and the others take every consumer.
 * A tunnel object is made for whichever half arrives first and the other half's socket is
 * attached to it, so a join allocates nothing. A consumer with no idle pre-connection waits at
 * most relay.wait_timeout seconds, in a queue of at most RELAY_WAIT_MAX per label. Labels live in
 * a chained hash table while leases, tunnels or unpublished counters name them. */
#include "relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "p2m/err.h"

#define LABEL_BUCKETS_MIN 64

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

int match_init(relay_t *r, char *err)
{
    (void)err;
    r->nbuckets = LABEL_BUCKETS_MIN;
    r->labels = relay_xcalloc(r->nbuckets, sizeof(*r->labels));
    return 0;
}

static void ring_free(label_t *l)
{
    while (l->turn != NULL) {
        podq_t *q = l->turn;
        l->turn = q->next != q ? q->next : NULL;
        q->prev->next = q->next;
        q->next->prev = q->prev;
        free(q);
    }
}

void match_free(relay_t *r)
{
    for (size_t i = 0; r->labels != NULL && i < r->nbuckets; i++) {
        while (r->labels[i] != NULL) {
            label_t *l = r->labels[i];
            r->labels[i] = l->_hnext;
            ring_free(l);
            free(l);
        }
    }
    free(r->labels);
    r->labels = NULL;
    r->nlabels = 0;
}

static void grow(relay_t *r)
{
    size_t n = r->nbuckets * 2;
    label_t **b = relay_xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < r->nbuckets; i++) {
        while (r->labels[i] != NULL) {
            label_t *l = r->labels[i];
            r->labels[i] = l->_hnext;
            size_t j = hash_name(l->name) & (n - 1);
            l->_hnext = b[j];
            b[j] = l;
        }
    }
    free(r->labels);
    r->labels = b;
    r->nbuckets = n;
}

label_t *label_find(relay_t *r, const char *name)
{
    for (label_t *l = r->labels[hash_name(name) & (r->nbuckets - 1)]; l != NULL; l = l->_hnext)
        if (strcmp(l->name, name) == 0)
            return l;
    return NULL;
}

label_t *label_get(relay_t *r, const char *name)
{
    size_t i = hash_name(name) & (r->nbuckets - 1);
    for (label_t *l = r->labels[i]; l != NULL; l = l->_hnext) {
        if (strcmp(l->name, name) == 0) {
            l->refs++;
            return l;
        }
    }
    label_t *l = relay_xcalloc(1, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->refs = 1;
    l->_hnext = r->labels[i];
    r->labels[i] = l;
    if (++r->nlabels > r->nbuckets * 2)
        grow(r);
    return l;
}

static int counters_zero(const label_t *l)
{
    return l->bytes_in == 0 && l->bytes_out == 0 && l->conns == 0 && l->queued == 0 && l->waited_served == 0 &&
           l->wait_timeouts == 0;
}

/* Unused: no lease or tunnel names it, nothing waits to be written to Redis. */
static int label_unused(const label_t *l)
{
    return l->refs == 0 && counters_zero(l) && !l->sync_dirty;
}

static void label_remove(relay_t *r, label_t *l)
{
    label_t **pp = &r->labels[hash_name(l->name) & (r->nbuckets - 1)];
    while (*pp != l)
        pp = &(*pp)->_hnext;
    *pp = l->_hnext;
    r->nlabels--;
    free(l);
}

void label_put(relay_t *r, label_t *l)
{
    if (l == NULL)
        return;
    l->refs--;
    if (label_unused(l))
        label_remove(r, l);
}

void label_foreach(relay_t *r, void (*cb)(relay_t *r, label_t *l, void *arg), void *arg)
{
    for (size_t i = 0; i < r->nbuckets; i++)
        for (label_t *l = r->labels[i]; l != NULL; l = l->_hnext)
            cb(r, l, arg);
}

void label_flush_counters(relay_t *r, void (*emit)(relay_t *r, const label_t *l, void *arg), void *arg)
{
    for (size_t i = 0; i < r->nbuckets; i++) {
        label_t **pp = &r->labels[i];
        while (*pp != NULL) {
            label_t *l = *pp;
            if (!counters_zero(l)) {
                emit(r, l, arg);
                l->bytes_in = l->bytes_out = l->conns = 0;
                l->queued = l->waited_served = l->wait_timeouts = 0;
            }
            if (label_unused(l)) {
                *pp = l->_hnext;
                r->nlabels--;
                free(l);
            } else {
                pp = &l->_hnext;
            }
        }
    }
}

/* --- idle lists and wait queues ------------------------------------------------------------- */

static void list_append(tunnel_t **head, tunnel_t **tail, tunnel_t *t)
{
    t->next = NULL;
    t->prev = *tail;
    if (*tail != NULL)
        (*tail)->next = t;
    else
        *head = t;
    *tail = t;
}

static void list_remove(tunnel_t **head, tunnel_t **tail, tunnel_t *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        *head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        *tail = t->prev;
    t->prev = t->next = NULL;
}

/* --- the pods' turns ---------------------------------------------------------------------------- */

/* Queues idle tunnel t behind the other idle pre-connections of pod. A pod new to the ring joins
 * it last in the turn: just before the pod whose turn is next. */
static void podq_append(label_t *lab, tunnel_t *t, const char *pod)
{
    podq_t *q = lab->turn;
    if (q != NULL) {
        do {
            if (strcmp(q->pod, pod) == 0)
                break;
            q = q->next;
        } while (q != lab->turn);
        if (strcmp(q->pod, pod) != 0)
            q = NULL;
    }
    if (q == NULL) {
        q = relay_xcalloc(1, sizeof(*q));
        snprintf(q->pod, sizeof(q->pod), "%s", pod);
        if (lab->turn == NULL) {
            q->prev = q->next = q;
            lab->turn = q;
        } else {
            q->next = lab->turn;
            q->prev = lab->turn->prev;
            q->prev->next = q;
            lab->turn->prev = q;
        }
    }
    t->pq = q;
    t->pnext = NULL;
    t->pprev = q->tail;
    if (q->tail != NULL)
        q->tail->pnext = t;
    else
        q->head = t;
    q->tail = t;
    q->n++;
}

/* Takes idle tunnel t out of its pod's queue; the queue it empties leaves the ring. */
static void podq_remove(label_t *lab, tunnel_t *t)
{
    podq_t *q = t->pq;
    if (q == NULL)
        return;
    if (t->pprev != NULL)
        t->pprev->pnext = t->pnext;
    else
        q->head = t->pnext;
    if (t->pnext != NULL)
        t->pnext->pprev = t->pprev;
    else
        q->tail = t->pprev;
    t->pq = NULL;
    t->pprev = t->pnext = NULL;
    if (--q->n > 0)
        return;
    if (q->next == q) {
        lab->turn = NULL;
    } else {
        if (lab->turn == q)
            lab->turn = q->next;
        q->prev->next = q->next;
        q->next->prev = q->prev;
    }
    free(q);
}

void match_sync_mark(relay_t *r, label_t *lab)
{
    if (!lab->sync_dirty) {
        lab->sync_dirty = 1;
        lab->sync_next = r->sync_dirty;
        r->sync_dirty = lab;
    }
    if (r->redis != NULL)
        rredis_sync_soon(r->redis);
}

void match_sync_flush(relay_t *r, void (*cb)(relay_t *r, label_t *l, void *arg), void *arg)
{
    label_t *l = r->sync_dirty;
    r->sync_dirty = NULL;
    while (l != NULL) {
        label_t *next = l->sync_next;
        l->sync_next = NULL;
        l->sync_dirty = 0;
        if (cb != NULL)
            cb(r, l, arg);
        l->idle_delta = 0;
        if (label_unused(l))
            label_remove(r, l);
        l = next;
    }
}

void match_unlink(relay_t *r, tunnel_t *t)
{
    if (!t->queued)
        return;
    label_t *l = t->label;
    if (t->state == TUNNEL_IDLE) {
        podq_remove(l, t);
        list_remove(&l->idle_head, &l->idle_tail, t);
        l->nidle--;
        r->nidle--;
    } else {
        list_remove(&l->wait_head, &l->wait_tail, t);
        l->nwait--;
        r->nwaiting--;
        match_sync_mark(r, l);
    }
    t->queued = 0;
}

/* Whether a pre-connection is still open: nothing was sent on it yet, so a peek that reads end of
 * stream or an error means its pod has closed it, given it back (a reset) or died, and epoll may
 * not have said so yet.
 * Returns the reason it is not ("pod_closed", "pod_error"), or NULL when it is open. */
static const char *preconn_gone(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)))
        return NULL;
    return n == 0 || errno == ECONNRESET ? "pod_closed" : "pod_error"; /* a reset gives it back (3.5) */
}

void match_preconn(relay_t *r, lease_t *l, int fd)
{
    label_t *lab = l->label;
    tunnel_t *w = lab->wait_head;
    const char *gone;
    if (w != NULL && (gone = preconn_gone(fd)) != NULL) {
        /* Accepted from the backlog after its pod closed it (a pod that died): no consumer for it. */
        p2m_log(P2M_LOG_INFO, "preconn_close", "lease=%u label=%s fd=%d reason=%s ms=0", (unsigned)l->port, lab->name, fd, gone);
        close(fd);
        ports_pre_release(r, l, 0);
        return;
    }
    if (w != NULL) {
        /* A consumer is waiting: join at once; the pre-connection is never counted idle. */
        match_unlink(r, w);
        lab->waited_served++;
        w->pport = l->port;
        ports_pre_release(r, l, 0);
        if (tunnel_attach(w, SIDE_POD, fd, 1) != 0) {
            close(fd);
            tunnel_close(w, "epoll");
            return;
        }
        tunnel_join(w);
        return;
    }
    tunnel_t *t = tunnel_new(r, lab);
    t->state = TUNNEL_IDLE;
    t->pport = l->port;
    if (tunnel_attach(t, SIDE_POD, fd, 0) != 0) {
        close(fd);
        t->pre = l;
        tunnel_close(t, "epoll"); /* releases l, counted 0: never announced idle */
        return;
    }
    t->pre = l;
    l->held++;
    list_append(&lab->idle_head, &lab->idle_tail, t);
    podq_append(lab, t, l->pod);
    t->queued = 1;
    lab->nidle++;
    r->nidle++;
    rredis_idle_add(r->redis, l);
    tunnel_log(P2M_LOG_INFO, t, "preconn_idle", "pod=%s idle=%u", l->pod, lab->nidle);
}

/* Joins consumer c to idle tunnel i's pre-connection: i's pre lease is released and counted down,
 * the pre-connection's epoll registration passes to c (one epoll_ctl), and i is disposed of.
 * Returns 0, or -1 when epoll refused (the pre-connection is then closed with i). */
static int idle_take(relay_t *r, tunnel_t *i, tunnel_t *c)
{
    match_unlink(r, i);
    if (i->pre != NULL) {
        lease_t *l = i->pre;
        i->pre = NULL;
        ports_pre_release(r, l, -1);
    }
    c->pport = i->pport;
    if (tunnel_take_side(c, SIDE_POD, i) != 0) {
        tunnel_close(i, "epoll");
        return -1;
    }
    tunnel_close(i, "joined"); /* nothing left to close: only the object goes */
    return 0;
}

/* The idle pre-connection of lab whose turn it is, still open: the oldest of the pod whose turn
 * is next, and the turn passes to the next pod. One whose pod has closed it may not have been
 * reported by epoll yet (its hang-up waits in the same batch as this consumer's bytes): a peek that
 * reads end of stream or an error closes it, and the next one is tried. */
static tunnel_t *idle_alive(label_t *lab)
{
    podq_t *q;
    while ((q = lab->turn) != NULL) {
        tunnel_t *i = q->head;
        const char *gone = preconn_gone(i->br.fd[SIDE_POD]);
        if (gone == NULL) {
            lab->turn = q->next;
            return i;
        }
        tunnel_close(i, gone); /* unlinks it: the ring may lose q */
    }
    return NULL;
}

void match_consumer_ready(relay_t *r, tunnel_t *c)
{
    label_t *lab = c->label;
    tunnel_t *i = idle_alive(lab);
    if (i != NULL) {
        if (idle_take(r, i, c) != 0) {
            tunnel_close(c, "epoll");
            return;
        }
        /* The consumer's bytes are there: copying them now saves the loop turn epoll would take
         * to report them again. */
        tunnel_trial(c);
        return;
    }
    if (lab->nwait >= RELAY_WAIT_MAX) {
        char pstr[64];
        if (relay_refusal_log_full(r, &c->caddr, "queue_full", c->qport, lab->name))
            p2m_log(P2M_LOG_WARN, "conn_refused", "lease=%u kind=consumer label=%s fd=%d peer=%s reason=queue_full waiting=%u",
                    (unsigned)c->qport, lab->name, c->br.fd[SIDE_CONSUMER], peer_addr_str(&c->caddr, pstr), lab->nwait);
        tunnel_close(c, "queue_full");
        return;
    }
    /* Waiting, the consumer is watched for hang-up only: its bytes stay in the kernel. */
    c->state = TUNNEL_WAIT;
    p2m_loop_set_events(r->loop, &c->br.side[SIDE_CONSUMER], EPOLLRDHUP);
    list_append(&lab->wait_head, &lab->wait_tail, c);
    c->queued = 1;
    lab->nwait++;
    lab->queued++;
    r->nwaiting++;
    match_sync_mark(r, lab);
    tunnel_wait(c);
}

void match_consumer(relay_t *r, lease_t *l, int fd, const peer_addr_t *peer)
{
    tunnel_t *c = tunnel_new(r, l->label);
    r->last_consumer = p2m_loop_now(r->loop); /* a drain waits for these to stop coming */
    c->state = TUNNEL_FIRST;
    c->qport = l->port;
    c->qgen = l->gen;
    c->caddr = *peer;
    c->limited = 1;
    if (tunnel_attach(c, SIDE_CONSUMER, fd, 1) != 0) {
        close(fd);
        tunnel_close(c, "epoll");
        return;
    }
    tunnel_first(c);
}
