#ifndef REGISTRAR_CERTIFICATE_H
#define REGISTRAR_CERTIFICATE_H

#include <h2o.h>
#include <stddef.h>

typedef struct registrar registrar_t;

/* POST /certificate/LABEL (PROTOCOL 4): label_part (label_len bytes, unchecked) and the CSR in the
 * body are checked, the pod authenticated (auth.h), and req answered with a certificate for
 * LABEL.DOMAIN signed by the registrar's CA, or an error; logged as event=certificate. */
void certificate_handle(registrar_t *r, h2o_req_t *req, const char *label_part, size_t label_len);

#endif
