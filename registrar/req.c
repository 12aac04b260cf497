/* Naming a request's peer and answering it: shared by the router and every request kind. */
#include "req.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

void req_sockaddr_str(const struct sockaddr *sa, char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        /* An IPv4 client on a dual-stack socket is the same client as on an IPv4 socket. */
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)cap);
    }
}

void req_peer_addr(h2o_req_t *req, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (len == 0)
        snprintf(out, cap, "unknown");
    else
        req_sockaddr_str((struct sockaddr *)&ss, out, cap);
}

void req_send_body(h2o_req_t *req, const char *body, size_t len)
{
    /* h2o_send_inline leaves the length unset, and HTTP/1.1 then ends the body by closing the
     * connection: every redirect would cost the client a new TLS handshake. */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void req_send_text(h2o_req_t *req, int status, const char *reason, const char *body)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s\n", body);
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    req_send_body(req, line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}
