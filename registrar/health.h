#ifndef REGISTRAR_HEALTH_H
#define REGISTRAR_HEALTH_H

#include <h2o.h>

/* The registrar's own service endpoints. Each answers req, now or once Redis has. */

typedef struct registrar registrar_t;

/* GET /_health: 200 "ok" when Redis answers and a relay has a live heartbeat, else 503. */
void health_handle(registrar_t *r, h2o_req_t *req);

/* GET /metrics: the Prometheus exposition of the counters in Redis, 503 without Redis. The caller
 * has checked that req may have them (registrar.metrics_token or the metrics listener). */
void metrics_handle(registrar_t *r, h2o_req_t *req);

/* GET /cacert: the CA's PEM file as it is. */
void cacert_handle(registrar_t *r, h2o_req_t *req);

#endif
