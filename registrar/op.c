/* The one place ops are created and freed (op.h). */
#include "op.h"
#include "registrar.h"
#include "req.h"
#include "p2m/log.h"

#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>

/* Lives in the request's pool: when h2o disposes of the request (the response went out, or the
 * client left first), it detaches the op so that a late Redis reply never touches a freed req. */
struct op_guard {
    op_t *op;
};

static void on_guard_dispose(void *p)
{
    struct op_guard *g = p;
    if (g->op != NULL) {
        g->op->req = NULL;
        g->op->_guard = NULL;
    }
}

op_t *op_new(registrar_t *r, h2o_req_t *req, op_kind_t kind, size_t size)
{
    op_t *op = calloc(1, size);
    if (op == NULL) {
        p2m_log(P2M_LOG_ERROR, "out_of_memory", "where=op_new");
        abort();
    }
    op->r = r;
    op->req = req;
    op->kind = kind;
    op->_size = size;
    op->_guard = h2o_mem_alloc_shared(&req->pool, sizeof(*op->_guard), on_guard_dispose);
    op->_guard->op = op;
    req_peer_addr(req, op->addr, sizeof(op->addr));
    /* Each listener has its own host list: the connection's names the listener it came on. */
    op->via_sni = req->conn->hosts == r->accept_proxy.hosts;
    return op;
}

const char *op_via(const op_t *op)
{
    return op->via_sni ? " via=sni" : "";
}

void op_free(op_t *op)
{
    if (op == NULL)
        return;
    if (op->release != NULL)
        op->release(op);
    if (op->_guard != NULL)
        op->_guard->op = NULL;
    /* The op held the Authorization value and, after a TOTP login, the new session credential. */
    OPENSSL_cleanse(op, op->_size);
    free(op);
}

void op_header(op_t *op, const char *name, const char *value)
{
    if (op->req == NULL)
        return;
    h2o_req_t *req = op->req;
    h2o_iovec_t v = h2o_strdup(&req->pool, value, SIZE_MAX);
    /* HTTP/2 wants lower-case field names; HTTP/1 responses keep the usual spelling. */
    h2o_iovec_t lower = h2o_strdup(&req->pool, name, SIZE_MAX);
    h2o_strtolower(lower.base, lower.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, lower.base, lower.len, 1, name, v.base, v.len);
}

void op_respond(op_t *op, int status, const char *reason, const char *body)
{
    if (op->req != NULL)
        req_send_text(op->req, status, reason, body);
    op_free(op);
}
