#ifndef REGISTRAR_REGISTER_H
#define REGISTRAR_REGISTER_H

#include <h2o.h>
#include <stddef.h>

typedef struct registrar registrar_t;

/* PUT /register/LABEL (PROTOCOL 1): label_part (label_len bytes, the path after the prefix,
 * unchecked) and the body's service are checked, the pod authenticated (auth.h), a pre-connection
 * port leased and the relay's bind awaited (lease.h); answers req with the relay's HOST:PORT or an
 * error, logged as event=register. */
void register_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len);

#endif
