#ifndef REGISTRAR_REDIS_H2O_H
#define REGISTRAR_REDIS_H2O_H

#include <stddef.h>
#include <stdint.h>

#include "p2m/store_cmd.h"

/* The registrar's Redis: the connection manager (p2m/redis.h) on h2o's event loop. It knows ops
 * only as the argument handed back to a reply's callback. */

typedef struct registrar registrar_t;
typedef struct op op_t;
struct redisReply;

/* What a relay's "PORT ok" / "PORT fail REASON" on the bound channel is handed to. */
typedef void (*redis_bound_cb)(registrar_t *r, uint16_t port, int ok, const char *reason);

/* Starts the connection manager on r's h2o loop (r->redis, r->redis_ev); on_bound gets the relays'
 * answers from the subscription. Sets r->fatal when Redis holds another schema version. Returns 0. */
int redis_start(registrar_t *r, redis_bound_cb on_bound, char *err);

/* Sends a command; cb gets (op, the reply or NULL on failure or a Redis error) once, and the reply
 * is freed when cb returns. Returns 0, or -1 when Redis is down (cb is then never called). op is
 * borrowed: it must live until cb runs. */
int redis_send(registrar_t *r, const p2m_store_cmd_t *cmd, void (*cb)(op_t *, struct redisReply *), op_t *op);

/* The i-th element of an array reply when it is a string, else NULL (also for a NULL reply). */
const char *redis_reply_str(const struct redisReply *rep, size_t i);

/* Fire and forget (statistics, announcements): dropped while Redis is down. */
void redis_send_nowait(registrar_t *r, const p2m_store_cmd_t *cmd);

#endif
