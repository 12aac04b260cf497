#ifndef REGISTRAR_HTTP_H
#define REGISTRAR_HTTP_H

#include "p2m/config.h"

/* The listeners and request routing: the top of the registrar's modules. A request is sorted by
 * listener, Host, method and path and handed down to its kind (register.h, certificate.h,
 * redirect.h, health.h); nothing below calls back up. */

typedef struct registrar registrar_t;

/* Registers the handlers: before h2o_context_init. Returns 0, or -1 when registrar.metrics_token
 * cannot be hashed. */
int registrar_http_setup(registrar_t *r);

/* Checks that every configured listener's host is an IP address (what --check-config adds to the
 * shared checks). Returns 0 or -1 with err naming the key. */
int registrar_listen_check(const p2m_config_t *cfg, char *err);

/* Binds the HTTPS and HTTP listeners, the PROXY listener when registrar.proxy_listen is set and
 * the metrics listener when registrar.metrics_listen is, into r->listen_fd: first thing at start,
 * so that a port in use stops the registrar before it writes anything (its CA, say). Returns 0, or
 * -1 with err and nothing left open. */
int registrar_bind(registrar_t *r, char *err);

/* Starts accepting on the sockets registrar_bind() opened: after h2o_context_init. Returns 0 or
 * -1 with err. */
int registrar_listen(registrar_t *r, char *err);

/* Logs the PROXY listener's refusals counted but not yet reported and frees its summariser:
 * before exit, so that no count is lost. Safe to call when the listener never opened. */
void registrar_listen_close(registrar_t *r);

#endif
