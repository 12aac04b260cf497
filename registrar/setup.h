#ifndef REGISTRAR_SETUP_H
#define REGISTRAR_SETUP_H

#include <h2o.h>

typedef struct registrar registrar_t;

/* POST /setup (PROTOCOL 1.6): redeems the setup token of the request's Authorization: Bearer for
 * a new pod with the services the body asks for, and answers req with the pod's provisioning JSON
 * or an error, logged as event=setup. */
void setup_handle(registrar_t *r, h2o_req_t *req);

#endif
