#ifndef P2M_SENTINEL_H
#define P2M_SENTINEL_H

#include <stddef.h>

#include "p2m/addr.h"

/* Redis Sentinel discovery and AUTH, shared by the blocking store (lib/store.c) and the
 * connection manager (lib/redis.c). hiredis 0.14 knows no Sentinel: we ask each Sentinel in turn
 * `SENTINEL get-master-addr-by-name MASTER`, connect to the address it names, AUTH when a password
 * is configured, and check with ROLE that the server is the primary; replication and elections are
 * Redis's own. The reply parsers are pure; the connect functions block, each step bounded by a
 * timeout. Passwords never appear in err. */

struct redisReply;
struct redisContext;

/* Reads a password file: a regular file group and others may not read (mode 0600 or 0400, as the
 * pod's secret files), one line of 1 to P2M_REDIS_PASSWORD_MAX bytes (a final "\n" or "\r\n" is
 * dropped; NUL, CR or LF inside are refused). out must hold P2M_REDIS_PASSWORD_MAX + 1 bytes.
 * Returns 0, or -1 with err naming the file (never its content). */
int p2m_redis_password_read(const char *path, char *out, char *err);

/* The answer to SENTINEL get-master-addr-by-name: an array of two strings, IP and port. Returns 0
 * with *out filled, or -1 with err (nil: the Sentinel does not know the master). */
int p2m_sentinel_master_reply(const struct redisReply *r, p2m_hostport_t *out, char *err);

/* The answer to ROLE: 0 when its first element is "master", else -1 with err saying what the
 * server is ("a replica", an error reply, a malformed answer). */
int p2m_sentinel_role_reply(const struct redisReply *r, char *err);

/* A +switch-master message "MASTER OLDIP OLDPORT NEWIP NEWPORT" (len bytes). Returns 1 with *old
 * and *now filled when it is about master, 0 when about another master, -1 when malformed. */
int p2m_sentinel_switch_parse(const char *msg, size_t len, const char *master, p2m_hostport_t *old, p2m_hostport_t *now);

/* Fills argv with the AUTH command for user (may be "") and password (not ""): AUTH PASSWORD or
 * AUTH USER PASSWORD. Returns argc. */
int p2m_redis_auth_argv(const char *user, const char *password, const char *argv[3]);

/* Asks sentinel number i of a (blocking, timeout_ms for the connect and the answer), AUTH first
 * when a->sentinel_password is set. Returns 0 with *primary, or -1 with err. */
int p2m_sentinel_ask(const p2m_redis_addr_t *a, unsigned i, unsigned timeout_ms, p2m_hostport_t *primary, char *err);

/* Connects (blocking, timeout_ms for the connect and every command) to a's address, or with
 * Sentinels to the primary one of them names (asking them in turn from the first until one names
 * a primary that answers ROLE with "master"); then AUTH when a password is set. where receives
 * "redis HOST:PORT" (plus " via sentinel HOST:PORT"), for messages. Returns the context (the
 * caller frees it with redisFree) or NULL with err. */
struct redisContext *p2m_redis_connect_sync(const p2m_redis_addr_t *a, unsigned timeout_ms, char *where, size_t wcap, char *err);

#endif
