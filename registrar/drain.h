#ifndef REGISTRAR_DRAIN_H
#define REGISTRAR_DRAIN_H

#include <h2o.h>

/* The registrar's heartbeat in Redis (p2m:registrar:NAME, p2m/store.h) and where it sends its
 * pods: registrar.pods_to for good (308), or the drain key `pipe2me-admin registrar drain` sets
 * (307), read with each heartbeat (docs/PROTOCOL.md 1.7). */

typedef struct registrar registrar_t;

/* Beats now (and again soon while Redis is down), then every P2M_REGISTRAR_HEARTBEAT_MS. Call once
 * the loop and Redis are set up. */
void drain_start(registrar_t *r);

/* Where pods go instead of here, with the status to send them with (307 or 308); NULL when they
 * register here. pods_to wins over a drain. */
const char *drain_target(const registrar_t *r, int *status);

/* PUT /register/... and POST /certificate/... (kind "register" or "certificate"): when pods go
 * elsewhere, answers 307 or 308 with Location: that URL plus the request's path, logs it and
 * returns 1; else 0. Reads nothing of the request but its path: no Authorization is looked at. */
int drain_redirect(registrar_t *r, h2o_req_t *req, const char *kind, const char *label, size_t label_len);

#endif
