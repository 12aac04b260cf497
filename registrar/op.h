#ifndef REGISTRAR_OP_H
#define REGISTRAR_OP_H

#include <h2o.h>
#include <stddef.h>

/* The state of one request that needs Redis: the base every request kind embeds as its first
 * member, `super` (h2o's handlers do the same), so that an op_t * is also a pointer to the kind's
 * struct. Each kind's struct is private to its module (register.c, certificate.c, redirect.c);
 * health.c's checks need nothing beyond the base.
 *
 * Ops are malloc'd, never in the request pool: the client may go away while a Redis reply is
 * still due. req becomes NULL then, and the op is freed when its pending callback or wait ends.
 * op.c is the one place that allocates and frees them. */

typedef struct registrar registrar_t;
typedef struct op op_t;

typedef enum { OP_REGISTER, OP_CERTIFICATE, OP_CONSUMER, OP_TCP, OP_HEALTH, OP_METRICS, OP_SETUP } op_kind_t;

struct op {
    registrar_t *r;
    h2o_req_t *req; /* NULL once h2o has disposed of the request (the client left) */
    op_kind_t kind; /* checked when an op_t * is cast back to its kind's struct */
    char addr[64];  /* peer address, IPv4 dotted or IPv6 */
    int via_sni;    /* the request came through registrar.proxy_listen (the relay's SNI port) */
    /* Set by the kind's constructor when it holds more than its struct (a CSR) or may still be
     * reached from elsewhere (a relay wait): op_free calls it first. NULL when there is nothing. */
    void (*release)(op_t *op);
    struct op_guard *_guard;
    size_t _size;
};

/* Allocates a zeroed op of size bytes (the kind's struct, at least sizeof(op_t)) for req and fills
 * the base: r, req, kind, the peer's address and via_sni. Aborts with a log line when out of
 * memory. The op is the caller's until it passes it to op_free or op_respond. */
op_t *op_new(registrar_t *r, h2o_req_t *req, op_kind_t kind, size_t size);

/* Calls op->release, detaches op from its request and frees it, wiping it first: it may hold an
 * Authorization value or a session credential. op_free(NULL) does nothing. */
void op_free(op_t *op);

/* Sends status with a one-line text/plain body ("body\n") and frees op. Does nothing to a
 * request whose client has gone, but still frees op. reason must be a static string. */
void op_respond(op_t *op, int status, const char *reason, const char *body);

/* Adds a header to op's response (before it is sent): nothing once the client has gone. name must
 * be a static string; value is copied. */
void op_header(op_t *op, const char *name, const char *value);

/* The log field added to the request lines of requests that came through the PROXY listener:
 * " via=sni", or "" for the others. */
const char *op_via(const op_t *op);

#endif
