#ifndef REGISTRAR_REDIRECT_H
#define REGISTRAR_REDIRECT_H

#include <h2o.h>
#include <stddef.h>

typedef struct registrar registrar_t;

/* A consumer's request for LABEL.DOMAIN (PROTOCOL 2.1): 307 to the consumer port leased for the
 * service the protocol rule picks, once its relay listens; label is already checked (the Host).
 * plain_http: the request came on the HTTP listener. */
void redirect_handle(registrar_t *r, h2o_req_t *req, const char *label, int plain_http);

/* GET /tcp/LABEL (PROTOCOL 2.2): leases the same way for the label's tcp service and names the
 * port in the body. label_part (label_len bytes) is unchecked. */
void tcp_port_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len);

#endif
