#ifndef P2M_STORE_PRIV_H
#define P2M_STORE_PRIV_H

/* Private to lib/store*.c: programs call the builders instead.
 *
 * The key names and channels that C code in store.c, store_cmd.c and store_relay.c builds or
 * compares, each spelled once (the schema: p2m/store.h). The relay's scripts paste these literals
 * where they name a key; the registrar's and the admin's scripts spell in Lua the keys they
 * derive inside the script. */

#define P2M_KEY_SCHEMA "p2m:schema"
#define P2M_KEY_PODS "p2m:pods"
#define P2M_KEY_LABELS "p2m:labels"
#define P2M_KEY_LABELS_PROTOCOL "p2m:labels:protocol"
#define P2M_KEY_LABEL "p2m:label:"   /* + LABEL + P2M_KEY_SHARERS */
#define P2M_KEY_SHARERS ":sharers"   /* the pods that share LABEL */
#define P2M_KEY_POD "p2m:pod:"       /* + ID: the pod's hash; + ID + P2M_KEY_POD_SHARES */
#define P2M_KEY_POD_SHARES ":shares" /* the labels pod ID shares */
#define P2M_KEY_POD_LABELS ":labels" /* + after P2M_KEY_POD ID: the labels pod ID owns */
#define P2M_KEY_RELAYS "p2m:relays"
#define P2M_KEY_DRAINING "p2m:draining"         /* the relays an operator is draining */
#define P2M_KEY_LEASE "p2m:lease:"              /* + PORT */
#define P2M_KEY_LEASE_PATTERN P2M_KEY_LEASE "*" /* for SCAN */
#define P2M_KEY_RELAY "p2m:relay:"              /* + NAME: the heartbeat hash, and the channel of its "lease PORT" */
#define P2M_KEY_IDLE "p2m:idle:"                /* + NAME */
#define P2M_KEY_WAIT "p2m:wait:"                /* + NAME */
#define P2M_KEY_RELAY_STATS "p2m:stats:relay:"  /* + NAME */
#define P2M_KEY_TUNNELS "p2m:tunnels:"          /* + NAME: SERVICE -> tunnels open at relay NAME */
#define P2M_KEY_SERIES "p2m:series:"            /* + SERVICE:MINUTE: the service's counts in that minute */
#define P2M_KEY_PORTBUSY "p2m:portbusy:"        /* + NAME:PORT */
#define P2M_KEY_ALIVE "p2m:alive:"              /* + SERVICE */
#define P2M_KEY_REGISTRARS "p2m:registrars"
#define P2M_KEY_REGISTRAR "p2m:registrar:"     /* + NAME: the heartbeat hash; + NAME + P2M_KEY_DRAIN */
#define P2M_KEY_DRAIN ":drain"                 /* the URL registrar NAME sends its pods to */
#define P2M_KEY_CPORT "p2m:cport:"             /* + SERVICE: the service's consumer port */
#define P2M_KEY_DIRECT "p2m:direct:"           /* + SERVICE: the direct paths its pod declared */
#define P2M_KEY_DIRECT_OK "p2m:direct-ok:"     /* + SERVICE: the public path last verified */
#define P2M_KEY_DIRECT_LOCK "p2m:direct-lock:" /* + LABEL: the registrar checking it this interval */
#define P2M_KEY_DIRECT_SENT "p2m:direct-sent:" /* + SERVICE:ADDR: a consumer sent to a direct path */
#define P2M_KEY_DIRECTS "p2m:directs"          /* the labels the checker visits */
#define P2M_KEY_DNS_NAMES "p2m:dns:names"      /* NAME -> the address the registrar wrote for it */
#define P2M_KEY_TOKENS "p2m:tokens"
#define P2M_KEY_TOKEN "p2m:token:" /* + HASH */
#define P2M_CHANNEL_BOUND "p2m:bound"
#define P2M_CHANNEL_EVENTS "p2m:events"

/* Creates pod id as `pipe2me-admin pod add` does, for the scripts that make pods (store.c's
 * pod add, store_cmd.c's setup): its hash kpod, its label set kplabels, its ID in the pods set
 * kpods, each label of the Lua list `labels` owned by it in klabels with the default protocol
 * (a field an older pod left in klproto goes), then "pod ID" on the events channel. The caller
 * has checked that neither the pod nor any label exists. */
#define LUA_POD_CREATE                                                                                                             \
    "local function pod_create(kpod, kplabels, kpods, klabels, klproto, id, secret, created, reuse, digits, labels)\n"             \
    "  redis.call('HSET', kpod, 'secret', secret, 'created', created, 'disabled', '0', 'epoch', '0', 'token_reuse', reuse,\n"      \
    "             'digits', digits)\n"                                                                                             \
    "  redis.call('SADD', kpods, id)\n"                                                                                            \
    "  for _, l in ipairs(labels) do\n"                                                                                            \
    "    redis.call('HSET', klabels, l, id)\n"                                                                                     \
    "    redis.call('HDEL', klproto, l)\n"                                                                                         \
    "    redis.call('SADD', kplabels, l)\n"                                                                                        \
    "  end\n"                                                                                                                      \
    "  redis.call('PUBLISH', '" P2M_CHANNEL_EVENTS "', 'pod ' .. id)\n"                                                            \
    "end\n"

/* The argv builder under every p2m_store_cmd_* (store_cmd.c). Each returns 0, or -1 when the command
 * is full: P2M_STORE_CMD_ARGS arguments or its buffer. */
#include "p2m/store_cmd.h"

void store_cmd_begin(p2m_store_cmd_t *c);
int store_cmd_push(p2m_store_cmd_t *c, const char *s);
/* A long constant (a script), not copied. */
int store_cmd_push_static(p2m_store_cmd_t *c, const char *s, size_t n);
int store_cmd_pushu(p2m_store_cmd_t *c, unsigned long long v);
int store_cmd_pushf(p2m_store_cmd_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Starts EVAL of script with nkeys keys. */
#define STORE_EVAL(c, script, nkeys)                                                                                               \
    (store_cmd_begin(c),                                                                                                           \
     store_cmd_push(c, "EVAL") || store_cmd_push_static(c, script, sizeof(script) - 1) || store_cmd_pushu(c, nkeys))

#endif
