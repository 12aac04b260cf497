#ifndef REGISTRAR_REQ_H
#define REGISTRAR_REQ_H

#include <h2o.h>
#include <stddef.h>

/* What every handler does with an h2o request, op or not: name its peer and answer it. Nothing
 * here knows the registrar, so that the router (http.c) and the request kinds below it share it. */

/* sa's address as text into out (cap bytes), an IPv4-mapped IPv6 address as IPv4; "unknown" for
 * any other family. */
void req_sockaddr_str(const struct sockaddr *sa, char *out, size_t cap);

/* req's peer address as req_sockaddr_str writes it; through registrar.proxy_listen, the address
 * the PROXY line named (h2o_socket_setpeername). */
void req_peer_addr(h2o_req_t *req, char *out, size_t cap);

/* Sends a whole response body of len bytes with its Content-Length (so HTTP/1.1 connections stay
 * open). status, reason and headers are the caller's; body must live as long as h2o_send_inline
 * needs it not to (it copies). */
void req_send_body(h2o_req_t *req, const char *body, size_t len);

/* Sends status with a one-line text/plain body ("body\n", cut at 511 bytes) and Cache-Control:
 * no-store. reason must be a static string. */
void req_send_text(h2o_req_t *req, int status, const char *reason, const char *body);

#endif
