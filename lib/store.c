#include "p2m/store.h"
#include "p2m/sentinel.h"
#include "p2m/err.h"
#include "p2m/store_cmd.h"
#include "store_priv.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* The keys the admin's side reads or writes, documented in store.h; the names shared with the
 * asynchronous side are in store_priv.h. */
#define KEY_MAX 128

/* Scripts report refusals as "P2M <reason>" errors; store_call strips the tag. */
#define LUA_NEED_POD "if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('P2M unknown pod ' .. ARGV[1]) end\n"

/* KEYS: pod, pod-labels, pods, labels, labels-protocol. ARGV: id, secret, created, token_reuse,
 * digits, label... A new label starts with the default protocol, whatever an older run left. */
static const char lua_pod_add[] = LUA_POD_CREATE
    "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('P2M pod ' .. ARGV[1] .. ' exists already') end\n"
    "for i = 6, #ARGV do\n"
    "  local owner = redis.call('HGET', KEYS[4], ARGV[i])\n"
    "  if owner then return redis.error_reply('P2M label ' .. ARGV[i] .. ' belongs to pod ' .. owner) end\n"
    "end\n"
    "pod_create(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], {unpack(ARGV, 6)})\n"
    "return 'OK'\n";

/* Forgets the consumer ports of label l's services (their leases end with the label's, below). */
#define LUA_FORGET_CPORTS                                                                                                          \
    "local function forget_cports(l)\n"                                                                                            \
    "  for _, s in ipairs({l, l .. ':http', l .. ':tcp'}) do\n"                                                                    \
    "    local p = redis.call('GET', 'p2m:cport:' .. s)\n"                                                                         \
    "    if p then redis.call('SREM', 'p2m:cports:service', p) redis.call('DEL', 'p2m:cport:' .. s) end\n"                         \
    "  end\n"                                                                                                                      \
    "end\n"

/* The sharers' set of label l, and the shares set of pod p, as the scripts spell them. */
#define LUA_SHARE_KEYS                                                                                                             \
    "local function sharers_key(l) return '" P2M_KEY_LABEL "' .. l .. '" P2M_KEY_SHARERS "' end\n"                                 \
    "local function shares_key(p) return '" P2M_KEY_POD "' .. p .. '" P2M_KEY_POD_SHARES "' end\n"

/* Forgets the sharers of label l (a label removed takes them along). Returns them. */
#define LUA_FORGET_SHARERS                                                                                                         \
    LUA_SHARE_KEYS "local function forget_sharers(l)\n"                                                                            \
                   "  local m = redis.call('SMEMBERS', sharers_key(l))\n"                                                          \
                   "  for _, p in ipairs(m) do redis.call('SREM', shares_key(p), l) end\n"                                         \
                   "  redis.call('DEL', sharers_key(l))\n"                                                                         \
                   "  return m\n"                                                                                                  \
                   "end\n"

/* KEYS: pod, pod-labels, pods, labels, labels-protocol, pod-shares. ARGV: id. Returns the labels
 * removed that had sharers, whose leases (the sharers' too) the caller ends. */
static const char lua_pod_rm[] = LUA_NEED_POD LUA_FORGET_CPORTS LUA_FORGET_SHARERS
    "local shared = {}\n"
    "for _, l in ipairs(redis.call('SMEMBERS', KEYS[2])) do\n"
    "  redis.call('HDEL', KEYS[4], l) redis.call('HDEL', KEYS[5], l) forget_cports(l)\n"
    "  if #forget_sharers(l) > 0 then table.insert(shared, l) end\n"
    "end\n"
    "for _, l in ipairs(redis.call('SMEMBERS', KEYS[6])) do redis.call('SREM', sharers_key(l), ARGV[1]) end\n"
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[6])\n"
    "redis.call('SREM', KEYS[3], ARGV[1])\n"
    "redis.call('PUBLISH', '" P2M_CHANNEL_EVENTS "', 'pod ' .. ARGV[1])\n"
    "return shared\n";

/* KEYS: pod. ARGV: id, field, value. Any change of credentials or state bumps the epoch. */
static const char lua_pod_set[] = LUA_NEED_POD "redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
                                               "redis.call('HINCRBY', KEYS[1], 'epoch', 1)\n"
                                               "redis.call('PUBLISH', '" P2M_CHANNEL_EVENTS "', 'pod ' .. ARGV[1])\n"
                                               "return 'OK'\n";

/* KEYS: pod, pod-labels, labels, labels-protocol. ARGV: id, label, protocol ('' = not given).
 * Returns {1 if the pod owned it already, the label's protocol afterwards ('' = the default)}. */
static const char lua_label_add[] =
    LUA_NEED_POD "local owner = redis.call('HGET', KEYS[3], ARGV[2])\n"
                 "if owner and owner ~= ARGV[1] then\n"
                 "  return redis.error_reply('P2M label ' .. ARGV[2] .. ' belongs to pod ' .. owner)\n"
                 "end\n"
                 "if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])\n"
                 "elseif not owner then redis.call('HDEL', KEYS[4], ARGV[2]) end\n"
                 "if not owner then\n"
                 "  redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])\n"
                 "  redis.call('SADD', KEYS[2], ARGV[2])\n"
                 "end\n"
                 "return {owner and 1 or 0, redis.call('HGET', KEYS[4], ARGV[2]) or ''}\n";

/* KEYS: labels, labels-protocol. ARGV: label, protocol. Returns the owner. */
static const char lua_label_protocol[] = "local owner = redis.call('HGET', KEYS[1], ARGV[1])\n"
                                         "if not owner then return redis.error_reply('P2M unknown label ' .. ARGV[1]) end\n"
                                         "redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
                                         "return owner\n";

/* KEYS: pod. ARGV: id, then field, value pairs. Settings leave the epoch alone: a pod whose
 * OTPs change length or reuse is still the same pod, and its sessions stay valid. */
static const char lua_pod_settings[] = LUA_NEED_POD "for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end\n"
                                                    "return 'OK'\n";

/* KEYS: labels, labels-protocol. ARGV: label, pod-key prefix. Returns {former owner, sharers...};
 * the owner's epoch is bumped so that session credentials issued for the label die with it (the
 * sharers' fail their next ownership check). */
static const char lua_label_rm[] =
    LUA_FORGET_CPORTS LUA_FORGET_SHARERS "local owner = redis.call('HGET', KEYS[1], ARGV[1])\n"
                                         "if not owner then return redis.error_reply('P2M unknown label ' .. ARGV[1]) end\n"
                                         "redis.call('HDEL', KEYS[1], ARGV[1])\n"
                                         "redis.call('HDEL', KEYS[2], ARGV[1])\n"
                                         "forget_cports(ARGV[1])\n"
                                         "local out = forget_sharers(ARGV[1])\n"
                                         "table.insert(out, 1, owner)\n"
                                         "redis.call('SREM', ARGV[2] .. owner .. ':labels', ARGV[1])\n"
                                         "if redis.call('EXISTS', ARGV[2] .. owner) == 1 then\n"
                                         "  redis.call('HINCRBY', ARGV[2] .. owner, 'epoch', 1)\n"
                                         "end\n"
                                         "return out\n";

/* KEYS: pod, pod-shares, labels, label-sharers. ARGV: id, label, most sharers. Returns {1 if the
 * pod shared it already, the owner}. */
static const char lua_label_share[] =
    LUA_NEED_POD "local owner = redis.call('HGET', KEYS[3], ARGV[2])\n"
                 "if not owner then return redis.error_reply('P2M unknown label ' .. ARGV[2]) end\n"
                 "if owner == ARGV[1] then return redis.error_reply('P2M pod ' .. owner .. ' owns label ' .. ARGV[2]) end\n"
                 "if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return {1, owner} end\n"
                 "if redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[3]) then\n"
                 "  return redis.error_reply('P2M label ' .. ARGV[2] .. ' has ' .. ARGV[3] .. ' sharers already (the most)')\n"
                 "end\n"
                 "redis.call('SADD', KEYS[4], ARGV[1])\n"
                 "redis.call('SADD', KEYS[2], ARGV[2])\n"
                 "return {0, owner}\n";

/* KEYS: pod-shares, labels, label-sharers. ARGV: id, label. Returns the owner. */
static const char lua_label_unshare[] =
    "local owner = redis.call('HGET', KEYS[2], ARGV[2])\n"
    "if not owner then return redis.error_reply('P2M unknown label ' .. ARGV[2]) end\n"
    "if redis.call('SREM', KEYS[3], ARGV[1]) == 0 then\n"
    "  if owner == ARGV[1] then\n"
    "    return redis.error_reply('P2M pod ' .. owner .. ' owns label ' .. ARGV[2] .. ' (label rm takes it)')\n"
    "  end\n"
    "  return redis.error_reply('P2M pod ' .. ARGV[1] .. ' does not share label ' .. ARGV[2])\n"
    "end\n"
    "redis.call('SREM', KEYS[1], ARGV[2])\n"
    "return owner\n";

/* ARGV: labels, labels-protocol. Returns {label, owner, protocol or false, {sharers}} per label, in
 * one read so that the three agree. */
static const char lua_label_list[] = LUA_SHARE_KEYS "local out = {}\n"
                                                    "local h = redis.call('HGETALL', ARGV[1])\n"
                                                    "for i = 1, #h, 2 do\n"
                                                    "  table.insert(out, {h[i], h[i + 1], redis.call('HGET', ARGV[2], h[i]),\n"
                                                    "                     redis.call('SMEMBERS', sharers_key(h[i]))})\n"
                                                    "end\n"
                                                    "return out\n";

/* KEYS: lease. ARGV: field, value ('' = any), port, keep ("1": not a service's consumer port, which
 * outlives a disabled pod, PROTOCOL 3.6, nor a consumer lease of a label other pods share: they
 * serve it), and optionally field2, value2 that must match too. Deletes the lease if the fields
 * match. */
static const char lua_lease_drop[] =
    LUA_SHARE_KEYS "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
                   "if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end\n"
                   "if ARGV[5] and redis.call('HGET', KEYS[1], ARGV[5]) ~= ARGV[6] then return 0 end\n"
                   "if ARGV[4] == '1' then\n"
                   "  local l = redis.call('HMGET', KEYS[1], 'addr', 'kind', 'label')\n"
                   "  if l[1] == '*' then return 0 end\n"
                   "  if l[2] == 'consumer' and l[3] and redis.call('SCARD', sharers_key(l[3])) > 0 then return 0 end\n"
                   "end\n"
                   "redis.call('DEL', KEYS[1])\n"
                   "redis.call('PUBLISH', '" P2M_CHANNEL_EVENTS "', 'unlease ' .. ARGV[3])\n"
                   "return 1\n";

struct p2m_store {
    redisContext *rc;
    char where[2 * P2M_HOST_MAX + 64]; /* "redis unix:/x.sock", "redis A via sentinel B", for messages */
    unsigned wait_replicas, wait_timeout_ms;
    int *unconfirmed; /* set to 1 when a change is not confirmed by wait_replicas (p2m_store_flag_unconfirmed) */
};

int p2m_store_key_pod(const char *id, char *out, size_t cap)
{
    int n = snprintf(out, cap, P2M_KEY_POD "%s", id);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int key_pod_labels(const char *id, char *out, size_t cap)
{
    int n = snprintf(out, cap, P2M_KEY_POD "%s" P2M_KEY_POD_LABELS, id);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int key_pod_shares(const char *id, char *out, size_t cap)
{
    int n = snprintf(out, cap, P2M_KEY_POD "%s" P2M_KEY_POD_SHARES, id);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static int key_label_sharers(const char *label, char *out, size_t cap)
{
    int n = snprintf(out, cap, P2M_KEY_LABEL "%s" P2M_KEY_SHARERS, label);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int p2m_store_key_lease(uint16_t port, char *out, size_t cap)
{
    int n = snprintf(out, cap, P2M_KEY_LEASE "%u", (unsigned)port);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* Runs one command. Returns the reply (caller frees) or NULL with err. Error replies become
 * NULL too: scripted refusals lose their "P2M " tag, others are prefixed with the server. */
static redisReply *store_callv(p2m_store_t *st, char *err, int argc, const char **argv, const size_t *argvlen)
{
    redisReply *r = redisCommandArgv(st->rc, argc, argv, argvlen);
    if (r == NULL) {
        p2m_err(err, "%s: %s", st->where, st->rc->errstr[0] ? st->rc->errstr : "connection lost");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "P2M ", 4) == 0)
            p2m_err(err, "%s", r->str + 4);
        else
            p2m_err(err, "%s: %s", st->where, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* Convenience over store_callv for NUL-terminated arguments, argv ending with NULL. */
static redisReply *store_call(p2m_store_t *st, char *err, ...)
{
    const char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 64;)
        argv[argc++] = a;
    va_end(ap);
    return store_callv(st, err, argc, argv, NULL);
}

/* After a change: WAIT until wait_replicas replicas have it, at most wait_timeout_ms. Every change
 * the store makes is one script, so this is the one place. Fewer acknowledgements are an error
 * saying the change stands on the primary only. */
static int store_wait(p2m_store_t *st, char *err)
{
    char n[16], ms[16];
    if (st->wait_replicas == 0)
        return 0;
    snprintf(n, sizeof(n), "%u", st->wait_replicas);
    snprintf(ms, sizeof(ms), "%u", st->wait_timeout_ms);
    redisReply *r = store_call(st, err, "WAIT", n, ms, NULL);
    if (r == NULL)
        return -1;
    long long acks = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (acks >= (long long)st->wait_replicas)
        return 0;
    if (st->unconfirmed != NULL)
        *st->unconfirmed = 1;
    return p2m_err(err, "%s: the change is on the primary but not confirmed by %u replicas within %u ms (%lld acknowledged)",
                   st->where, st->wait_replicas, st->wait_timeout_ms, acks < 0 ? 0 : acks);
}

void p2m_store_flag_unconfirmed(p2m_store_t *st, int *flag)
{
    st->unconfirmed = flag;
}

static int script_call(p2m_store_t *st, const char *script, int nkeys, const char **keys, int nargs, const char **args,
                       redisReply **out, char *err, int change)
{
    const char *argv[80];
    char nkeys_s[16];
    if (3 + nkeys + nargs > 80)
        return p2m_err(err, "too many arguments");
    snprintf(nkeys_s, sizeof(nkeys_s), "%d", nkeys);
    int argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = nkeys_s;
    for (int i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (int i = 0; i < nargs; i++)
        argv[argc++] = args[i];
    redisReply *r = store_callv(st, err, argc, argv, NULL);
    if (r == NULL)
        return -1;
    if (change && store_wait(st, err) != 0) {
        freeReplyObject(r);
        return -1;
    }
    if (out != NULL)
        *out = r;
    else
        freeReplyObject(r);
    return 0;
}

/* A script that changes the store: WAITs for the replicas (store_wait). */
static int run_script(p2m_store_t *st, const char *script, int nkeys, const char **keys, int nargs, const char **args,
                      redisReply **out, char *err)
{
    return script_call(st, script, nkeys, keys, nargs, args, out, err, 1);
}

/* A script that only reads. */
static int run_read_script(p2m_store_t *st, const char *script, int nkeys, const char **keys, int nargs, const char **args,
                           redisReply **out, char *err)
{
    return script_call(st, script, nkeys, keys, nargs, args, out, err, 0);
}

/* The check every asynchronous connection makes too (p2m_store_schema_check). */
static int check_schema(p2m_store_t *st, char *err)
{
    p2m_store_cmd_t c;
    char why[P2M_ERR_LEN];
    redisReply *r;
    if (p2m_store_cmd_schema_init(&c) != 0 || (r = store_callv(st, err, c.argc, c.argv, c.argvlen)) == NULL)
        return -1;
    freeReplyObject(r);
    if (p2m_store_cmd_schema_get(&c) != 0 || (r = store_callv(st, err, c.argc, c.argv, c.argvlen)) == NULL)
        return -1;
    int ret = p2m_store_schema_check(r, why) == 0 ? 0 : p2m_err(err, "%s: %s", st->where, why);
    freeReplyObject(r);
    return ret;
}

/* Connects (through the Sentinels when configured, with AUTH when a password is) and sets the
 * timeout; check says whether to write and check the schema version. */
static p2m_store_t *store_open(const p2m_redis_addr_t *addr, unsigned timeout_ms, int check, char *err)
{
    p2m_store_t *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        p2m_err(err, "out of memory");
        return NULL;
    }
    st->wait_replicas = addr->wait_replicas;
    st->wait_timeout_ms = addr->wait_timeout_ms;
    st->rc = p2m_redis_connect_sync(addr, timeout_ms, st->where, sizeof(st->where), err);
    if (st->rc == NULL || (check && check_schema(st, err) != 0)) {
        p2m_store_free(st);
        st = NULL;
    }
    return st;
}

p2m_store_t *p2m_store_connect(const p2m_redis_addr_t *addr, unsigned timeout_ms, char *err)
{
    return store_open(addr, timeout_ms, 1, err);
}

p2m_store_t *p2m_store_connect_raw(const p2m_redis_addr_t *addr, unsigned timeout_ms, char *err)
{
    return store_open(addr, timeout_ms, 0, err);
}

void p2m_store_free(p2m_store_t *st)
{
    if (st == NULL)
        return;
    if (st->rc != NULL)
        redisFree(st->rc);
    free(st);
}

int p2m_token_reuse_parse(const char *s, int *out)
{
    if (strcmp(s, "none") == 0)
        *out = P2M_TOKEN_REUSE_NONE;
    else if (strcmp(s, "same-address") == 0)
        *out = P2M_TOKEN_REUSE_SAME_ADDRESS;
    else
        return -1;
    return 0;
}

const char *p2m_token_reuse_name(int token_reuse)
{
    return token_reuse == P2M_TOKEN_REUSE_SAME_ADDRESS ? "same-address" : "none";
}

int p2m_store_pod_add(p2m_store_t *st, const char *id, const char *secret, const char (*labels)[P2M_LABEL_MAX + 1], size_t nlabels,
                      int token_reuse, unsigned digits, long long now, char *err)
{
    char kpod[KEY_MAX], klabels[KEY_MAX], created[24];
    const char *args[66];
    if (nlabels > 60)
        return p2m_err(err, "too many labels (at most 60 at once)");
    if (token_reuse != P2M_TOKEN_REUSE_NONE && token_reuse != P2M_TOKEN_REUSE_SAME_ADDRESS)
        return p2m_err(err, "token_reuse: expected none or same-address");
    if (digits != 6 && digits != 8)
        return p2m_err(err, "digits: expected 6 or 8");
    if (p2m_store_key_pod(id, kpod, sizeof(kpod)) < 0 || key_pod_labels(id, klabels, sizeof(klabels)) < 0)
        return p2m_err(err, "pod ID too long");
    snprintf(created, sizeof(created), "%lld", now);
    const char *keys[] = {kpod, klabels, P2M_KEY_PODS, P2M_KEY_LABELS, P2M_KEY_LABELS_PROTOCOL};
    args[0] = id;
    args[1] = secret;
    args[2] = created;
    args[3] = p2m_token_reuse_name(token_reuse);
    args[4] = digits == 8 ? "8" : "6";
    for (size_t i = 0; i < nlabels; i++)
        args[5 + i] = labels[i];
    return run_script(st, lua_pod_add, 5, keys, 5 + (int)nlabels, args, NULL, err);
}

static int cmp_label(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

void p2m_store_pod_free(p2m_pod_t *pod)
{
    if (pod == NULL)
        return;
    free(pod->labels);
    free(pod->shares);
    free(pod);
}

/* Copies a string reply into out (cap bytes, cut short); anything else leaves "". */
static void reply_copy(const redisReply *r, char *out, size_t cap)
{
    out[0] = '\0';
    if (r->type == REDIS_REPLY_STRING)
        snprintf(out, cap, "%.*s", (int)(r->len < cap ? r->len : cap - 1), r->str);
}

static long long reply_ll(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
}

int p2m_store_pod_get(p2m_store_t *st, const char *id, p2m_pod_t **out, char *err)
{
    char kpod[KEY_MAX], klabels[KEY_MAX], kshares[KEY_MAX];
    redisReply *h = NULL, *l = NULL, *sh = NULL;
    p2m_pod_t *pod = NULL;
    int ret = -1;

    if (p2m_store_key_pod(id, kpod, sizeof(kpod)) < 0 || key_pod_labels(id, klabels, sizeof(klabels)) < 0 ||
        key_pod_shares(id, kshares, sizeof(kshares)) < 0) {
        p2m_err(err, "pod ID too long");
        goto Exit;
    }
    if ((h = store_call(st, err, "HGETALL", kpod, NULL)) == NULL)
        goto Exit;
    if (h->type != REDIS_REPLY_ARRAY || h->elements == 0) {
        p2m_err(err, "unknown pod %s", id);
        goto Exit;
    }
    if ((l = store_call(st, err, "SMEMBERS", klabels, NULL)) == NULL ||
        (sh = store_call(st, err, "SMEMBERS", kshares, NULL)) == NULL)
        goto Exit;
    if ((pod = calloc(1, sizeof(*pod))) == NULL || (pod->labels = calloc(l->elements + 1, sizeof(*pod->labels))) == NULL ||
        (pod->shares = calloc(sh->elements + 1, sizeof(*pod->shares))) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    snprintf(pod->id, sizeof(pod->id), "%s", id);
    /* Fields a pod created before they existed lacks read as the defaults. Anything unexpected
     * reads as the strict choice: no reuse. */
    pod->token_reuse = P2M_TOKEN_REUSE_NONE;
    pod->digits = 6;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const char *k = h->element[i]->str, *v = h->element[i + 1]->str;
        if (k == NULL || v == NULL)
            continue;
        if (strcmp(k, "secret") == 0)
            snprintf(pod->secret, sizeof(pod->secret), "%s", v);
        else if (strcmp(k, "created") == 0)
            pod->created = reply_ll(h->element[i + 1]);
        else if (strcmp(k, "disabled") == 0)
            pod->disabled = strcmp(v, "1") == 0;
        else if (strcmp(k, "epoch") == 0)
            pod->epoch = reply_ll(h->element[i + 1]);
        else if (strcmp(k, "token_reuse") == 0)
            pod->token_reuse = strcmp(v, "same-address") == 0 ? P2M_TOKEN_REUSE_SAME_ADDRESS : P2M_TOKEN_REUSE_NONE;
        else if (strcmp(k, "digits") == 0)
            pod->digits = strcmp(v, "8") == 0 ? 8 : 6;
    }
    for (size_t i = 0; i < l->elements; i++)
        if (l->element[i]->type == REDIS_REPLY_STRING)
            snprintf(pod->labels[pod->nlabels++], P2M_LABEL_MAX + 1, "%s", l->element[i]->str);
    qsort(pod->labels, pod->nlabels, sizeof(*pod->labels), cmp_label);
    for (size_t i = 0; i < sh->elements; i++)
        if (sh->element[i]->type == REDIS_REPLY_STRING)
            snprintf(pod->shares[pod->nshares++], P2M_LABEL_MAX + 1, "%s", sh->element[i]->str);
    qsort(pod->shares, pod->nshares, sizeof(*pod->shares), cmp_label);
    *out = pod;
    pod = NULL;
    ret = 0;
Exit:
    p2m_store_pod_free(pod);
    if (h != NULL)
        freeReplyObject(h);
    if (l != NULL)
        freeReplyObject(l);
    if (sh != NULL)
        freeReplyObject(sh);
    return ret;
}

int p2m_store_pod_list(p2m_store_t *st, char (**ids)[P2M_ID_MAX + 1], size_t *nids, char *err)
{
    redisReply *r = store_call(st, err, "SMEMBERS", P2M_KEY_PODS, NULL);
    if (r == NULL)
        return -1;
    char(*list)[P2M_ID_MAX + 1] = calloc(r->elements + 1, sizeof(*list));
    if (list == NULL) {
        freeReplyObject(r);
        return p2m_err(err, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            snprintf(list[n++], P2M_ID_MAX + 1, "%s", r->element[i]->str);
    freeReplyObject(r);
    qsort(list, n, sizeof(*list), cmp_label);
    *ids = list;
    *nids = n;
    return 0;
}

/* Visits every lease key. Returns 0 or -1 with err. */
static int scan_leases(p2m_store_t *st, int (*visit)(p2m_store_t *, const char *key, void *), void *ctx, char *err)
{
    char cursor[32] = "0";
    do {
        redisReply *r = store_call(st, err, "SCAN", cursor, "MATCH", P2M_KEY_LEASE_PATTERN, "COUNT", "1000", NULL);
        if (r == NULL)
            return -1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            return p2m_err(err, "%s: unexpected SCAN reply", st->where);
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            if (keys->element[i]->type == REDIS_REPLY_STRING && visit(st, keys->element[i]->str, ctx) != 0) {
                freeReplyObject(r);
                return -1;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

typedef struct {
    const char *field, *value;
    const char *keep_service_ports; /* "1" or "0" */
    const char *field2, *value2;    /* a second field that must match too; NULL: none */
    char *err;
} drop_ctx_t;

static int drop_one(p2m_store_t *st, const char *key, void *arg)
{
    drop_ctx_t *ctx = arg;
    const char *keys[] = {key};
    const char *args[] = {ctx->field, ctx->value, key + strlen(P2M_KEY_LEASE), ctx->keep_service_ports, ctx->field2, ctx->value2};
    return run_script(st, lua_lease_drop, 1, keys, ctx->field2 != NULL ? 6 : 4, args, NULL, ctx->err);
}

/* Ends every lease whose field equals value (and field2 value2, unless field2 is NULL), so that
 * revoking a pod or a label takes effect at once rather than when the leases expire. */
static int drop_leases2(p2m_store_t *st, const char *field, const char *value, const char *field2, const char *value2,
                        int keep_service_ports, char *err)
{
    drop_ctx_t ctx = {field, value, keep_service_ports ? "1" : "0", field2, value2, err};
    return scan_leases(st, drop_one, &ctx, err);
}

static int drop_leases(p2m_store_t *st, const char *field, const char *value, int keep_service_ports, char *err)
{
    return drop_leases2(st, field, value, NULL, NULL, keep_service_ports, err);
}

int p2m_store_pod_rm(p2m_store_t *st, const char *id, char *err)
{
    char kpod[KEY_MAX], klabels[KEY_MAX], kshares[KEY_MAX];
    redisReply *r;
    if (p2m_store_key_pod(id, kpod, sizeof(kpod)) < 0 || key_pod_labels(id, klabels, sizeof(klabels)) < 0 ||
        key_pod_shares(id, kshares, sizeof(kshares)) < 0)
        return p2m_err(err, "pod ID too long");
    const char *keys[] = {kpod, klabels, P2M_KEY_PODS, P2M_KEY_LABELS, P2M_KEY_LABELS_PROTOCOL, kshares};
    const char *args[] = {id};
    if (run_script(st, lua_pod_rm, 6, keys, 1, args, &r, err) != 0)
        return -1;
    int ret = drop_leases(st, "pod", id, 0, err);
    /* The labels it owned that others shared: the sharers' leases of them end too. */
    for (size_t i = 0; ret == 0 && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            ret = drop_leases(st, "label", r->element[i]->str, 0, err);
    freeReplyObject(r);
    return ret;
}

static int pod_set(p2m_store_t *st, const char *id, const char *field, const char *value, char *err)
{
    char kpod[KEY_MAX];
    if (p2m_store_key_pod(id, kpod, sizeof(kpod)) < 0)
        return p2m_err(err, "pod ID too long");
    const char *keys[] = {kpod};
    const char *args[] = {id, field, value};
    return run_script(st, lua_pod_set, 1, keys, 3, args, NULL, err);
}

int p2m_store_pod_set_disabled(p2m_store_t *st, const char *id, int disabled, char *err)
{
    if (pod_set(st, id, "disabled", disabled ? "1" : "0", err) != 0)
        return -1;
    /* A disabled pod's services keep their consumer ports: the labels are still its. */
    return disabled ? drop_leases(st, "pod", id, 1, err) : 0;
}

int p2m_store_pod_set_secret(p2m_store_t *st, const char *id, const char *secret, char *err)
{
    return pod_set(st, id, "secret", secret, err);
}

int p2m_store_pod_set_settings(p2m_store_t *st, const char *id, int token_reuse, unsigned digits, char *err)
{
    char kpod[KEY_MAX];
    const char *args[5] = {id};
    int nargs = 1;
    if (token_reuse != -1 && token_reuse != P2M_TOKEN_REUSE_NONE && token_reuse != P2M_TOKEN_REUSE_SAME_ADDRESS)
        return p2m_err(err, "token_reuse: expected none or same-address");
    if (digits != 0 && digits != 6 && digits != 8)
        return p2m_err(err, "digits: expected 6 or 8");
    if (token_reuse == -1 && digits == 0)
        return p2m_err(err, "pod %s: no setting to change", id);
    if (p2m_store_key_pod(id, kpod, sizeof(kpod)) < 0)
        return p2m_err(err, "pod ID too long");
    if (token_reuse != -1) {
        args[nargs++] = "token_reuse";
        args[nargs++] = p2m_token_reuse_name(token_reuse);
    }
    if (digits != 0) {
        args[nargs++] = "digits";
        args[nargs++] = digits == 8 ? "8" : "6";
    }
    const char *keys[] = {kpod};
    return run_script(st, lua_pod_settings, 1, keys, nargs, args, NULL, err);
}

/* A stored protocol name to the protocol; what is not a name reads as the default. */
static p2m_proto_t proto_of(const redisReply *r)
{
    p2m_proto_t proto = P2M_PROTO_HTTPS;
    char e[P2M_ERR_LEN];
    if (r == NULL || r->type != REDIS_REPLY_STRING || p2m_proto_parse(r->str, r->len, &proto, e) != 0)
        return P2M_PROTO_HTTPS;
    return proto;
}

int p2m_store_label_add(p2m_store_t *st, const char *id, const char *label, const p2m_proto_t *proto, int *existed,
                        p2m_proto_t *proto_now, char *err)
{
    char kpod[KEY_MAX], klabels[KEY_MAX];
    if (p2m_store_key_pod(id, kpod, sizeof(kpod)) < 0 || key_pod_labels(id, klabels, sizeof(klabels)) < 0)
        return p2m_err(err, "pod ID too long");
    const char *keys[] = {kpod, klabels, P2M_KEY_LABELS, P2M_KEY_LABELS_PROTOCOL};
    const char *args[] = {id, label, proto != NULL ? p2m_proto_name(*proto) : ""};
    redisReply *r;
    if (run_script(st, lua_label_add, 4, keys, 3, args, &r, err) != 0)
        return -1;
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER;
    if (existed != NULL)
        *existed = ok && r->element[0]->integer == 1;
    if (proto_now != NULL)
        *proto_now = ok ? proto_of(r->element[1]) : P2M_PROTO_HTTPS;
    freeReplyObject(r);
    return ok ? 0 : p2m_err(err, "%s: unexpected reply to label add", st->where);
}

int p2m_store_label_set_protocol(p2m_store_t *st, const char *label, p2m_proto_t proto, char *owner, char *err)
{
    const char *keys[] = {P2M_KEY_LABELS, P2M_KEY_LABELS_PROTOCOL};
    const char *args[] = {label, p2m_proto_name(proto)};
    redisReply *r;
    if (run_script(st, lua_label_protocol, 2, keys, 2, args, &r, err) != 0)
        return -1;
    if (owner != NULL)
        snprintf(owner, P2M_ID_MAX + 1, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return 0;
}

void p2m_store_label_owner_dispose(p2m_label_owner_t *o)
{
    free(o->sharers);
    o->sharers = NULL;
    o->nsharers = 0;
}

void p2m_store_label_list_free(p2m_label_owner_t *list, size_t n)
{
    for (size_t i = 0; list != NULL && i < n; i++)
        p2m_store_label_owner_dispose(&list[i]);
    free(list);
}

/* Fills o's sharers from the string replies r[from..n), sorted. Returns 0, or -1 out of memory. */
static int sharers_fill(p2m_label_owner_t *o, redisReply **r, size_t from, size_t n)
{
    o->nsharers = 0;
    o->sharers = NULL;
    if (n <= from)
        return 0;
    if ((o->sharers = calloc(n - from, sizeof(*o->sharers))) == NULL)
        return -1;
    for (size_t i = from; i < n; i++)
        if (r[i]->type == REDIS_REPLY_STRING)
            snprintf(o->sharers[o->nsharers++], P2M_ID_MAX + 1, "%s", r[i]->str);
    qsort(o->sharers, o->nsharers, sizeof(*o->sharers), cmp_label);
    return 0;
}

int p2m_store_label_rm(p2m_store_t *st, const char *label, p2m_label_owner_t *gone, char *err)
{
    const char *keys[] = {P2M_KEY_LABELS, P2M_KEY_LABELS_PROTOCOL};
    const char *args[] = {label, P2M_KEY_POD};
    redisReply *r;
    if (run_script(st, lua_label_rm, 2, keys, 2, args, &r, err) != 0)
        return -1;
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && r->element[0]->type == REDIS_REPLY_STRING;
    if (gone != NULL) {
        memset(gone, 0, sizeof(*gone));
        snprintf(gone->label, sizeof(gone->label), "%s", label);
        if (ok) {
            snprintf(gone->pod, sizeof(gone->pod), "%s", r->element[0]->str);
            if (sharers_fill(gone, r->element, 1, r->elements) != 0) {
                freeReplyObject(r);
                return p2m_err(err, "out of memory");
            }
        }
    }
    freeReplyObject(r);
    if (!ok)
        return p2m_err(err, "%s: unexpected reply to label rm", st->where);
    return drop_leases(st, "label", label, 0, err);
}

int p2m_store_label_share(p2m_store_t *st, const char *label, const char *id, int *existed, char *owner, char *err)
{
    char kpod[KEY_MAX], kshares[KEY_MAX], ksharers[KEY_MAX], most[16];
    if (p2m_store_key_pod(id, kpod, sizeof(kpod)) < 0 || key_pod_shares(id, kshares, sizeof(kshares)) < 0)
        return p2m_err(err, "pod ID too long");
    if (key_label_sharers(label, ksharers, sizeof(ksharers)) < 0)
        return p2m_err(err, "label too long");
    snprintf(most, sizeof(most), "%d", P2M_LABEL_SHARERS_MAX);
    const char *keys[] = {kpod, kshares, P2M_KEY_LABELS, ksharers};
    const char *args[] = {id, label, most};
    redisReply *r;
    if (run_script(st, lua_label_share, 4, keys, 3, args, &r, err) != 0)
        return -1;
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_INTEGER &&
             r->element[1]->type == REDIS_REPLY_STRING;
    if (existed != NULL)
        *existed = ok && r->element[0]->integer == 1;
    if (owner != NULL)
        snprintf(owner, P2M_ID_MAX + 1, "%s", ok ? r->element[1]->str : "");
    freeReplyObject(r);
    return ok ? 0 : p2m_err(err, "%s: unexpected reply to label share", st->where);
}

int p2m_store_label_unshare(p2m_store_t *st, const char *label, const char *id, char *owner, char *err)
{
    char kshares[KEY_MAX], ksharers[KEY_MAX];
    if (key_pod_shares(id, kshares, sizeof(kshares)) < 0)
        return p2m_err(err, "pod ID too long");
    if (key_label_sharers(label, ksharers, sizeof(ksharers)) < 0)
        return p2m_err(err, "label too long");
    const char *keys[] = {kshares, P2M_KEY_LABELS, ksharers};
    const char *args[] = {id, label};
    redisReply *r;
    if (run_script(st, lua_label_unshare, 3, keys, 2, args, &r, err) != 0)
        return -1;
    if (owner != NULL)
        snprintf(owner, P2M_ID_MAX + 1, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    /* Its pre-connections of the label close at the relay; the consumer leases name the owner. */
    return drop_leases2(st, "pod", id, "label", label, 0, err);
}

int p2m_store_label_exists(p2m_store_t *st, const char *label, char *err)
{
    redisReply *r = store_call(st, err, "HEXISTS", P2M_KEY_LABELS, label, NULL);
    if (r == NULL)
        return -1;
    int ret = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return ret;
}

static int cmp_owner(const void *a, const void *b)
{
    return strcmp(((const p2m_label_owner_t *)a)->label, ((const p2m_label_owner_t *)b)->label);
}

int p2m_store_label_list(p2m_store_t *st, p2m_label_owner_t **out, size_t *n, char *err)
{
    const char *args[] = {P2M_KEY_LABELS, P2M_KEY_LABELS_PROTOCOL};
    redisReply *r = NULL;
    p2m_label_owner_t *list = NULL;
    size_t k = 0;
    int ret = -1;

    if (run_read_script(st, lua_label_list, 0, NULL, 2, args, &r, err) != 0)
        goto Exit;
    if (r->type != REDIS_REPLY_ARRAY) {
        p2m_err(err, "%s: unexpected reply listing labels", st->where);
        goto Exit;
    }
    if ((list = calloc(r->elements + 1, sizeof(*list))) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 4 || e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_STRING || e->element[3]->type != REDIS_REPLY_ARRAY)
            continue;
        p2m_label_owner_t *o = &list[k];
        reply_copy(e->element[0], o->label, sizeof(o->label));
        reply_copy(e->element[1], o->pod, sizeof(o->pod));
        o->proto = proto_of(e->element[2]);
        if (sharers_fill(o, e->element[3]->element, 0, e->element[3]->elements) != 0) {
            p2m_err(err, "out of memory");
            goto Exit;
        }
        k++;
    }
    qsort(list, k, sizeof(*list), cmp_owner);
    *out = list;
    *n = k;
    list = NULL;
    ret = 0;
Exit:
    p2m_store_label_list_free(list, k);
    if (r != NULL)
        freeReplyObject(r);
    return ret;
}

typedef struct {
    p2m_lease_t *list;
    size_t n, cap;
    char *err;
} lease_acc_t;

static int collect_lease(p2m_store_t *st, const char *key, void *arg)
{
    lease_acc_t *acc = arg;
    uint16_t port;
    const char *suffix = key + strlen(P2M_KEY_LEASE);
    if (p2m_port_parse(suffix, strlen(suffix), &port) != 0)
        return 0; /* not one of ours */
    redisReply *h = store_call(st, acc->err, "HGETALL", key, NULL);
    if (h == NULL)
        return -1;
    redisReply *t = store_call(st, acc->err, "TTL", key, NULL);
    if (t == NULL) {
        freeReplyObject(h);
        return -1;
    }
    int ret = 0;
    if (h->type == REDIS_REPLY_ARRAY && h->elements > 0) { /* it may have expired since SCAN */
        if (acc->n == acc->cap) {
            size_t cap = acc->cap ? acc->cap * 2 : 64;
            p2m_lease_t *grown = realloc(acc->list, cap * sizeof(*grown));
            if (grown == NULL) {
                ret = p2m_err(acc->err, "out of memory");
                goto Exit;
            }
            acc->list = grown;
            acc->cap = cap;
        }
        p2m_lease_t *l = &acc->list[acc->n++];
        memset(l, 0, sizeof(*l));
        l->port = port;
        l->ttl = t->type == REDIS_REPLY_INTEGER ? t->integer : -1;
        for (size_t i = 0; i + 1 < h->elements; i += 2) {
            const char *k = h->element[i]->str, *v = h->element[i + 1]->str;
            if (k == NULL || v == NULL)
                continue;
            if (strcmp(k, "kind") == 0)
                snprintf(l->kind, sizeof(l->kind), "%s", v);
            else if (strcmp(k, "label") == 0)
                snprintf(l->label, sizeof(l->label), "%s", v);
            else if (strcmp(k, "pod") == 0)
                snprintf(l->pod, sizeof(l->pod), "%s", v);
            else if (strcmp(k, "addr") == 0)
                snprintf(l->addr, sizeof(l->addr), "%s", v);
            else if (strcmp(k, "created") == 0)
                l->created = reply_ll(h->element[i + 1]);
        }
    }
Exit:
    freeReplyObject(h);
    freeReplyObject(t);
    return ret;
}

static int cmp_lease(const void *a, const void *b)
{
    return (int)((const p2m_lease_t *)a)->port - (int)((const p2m_lease_t *)b)->port;
}

int p2m_store_lease_list(p2m_store_t *st, p2m_lease_t **out, size_t *n, char *err)
{
    lease_acc_t acc = {NULL, 0, 0, err};
    if (scan_leases(st, collect_lease, &acc, err) != 0) {
        free(acc.list);
        return -1;
    }
    if (acc.list != NULL)
        qsort(acc.list, acc.n, sizeof(*acc.list), cmp_lease);
    *out = acc.list;
    *n = acc.n;
    return 0;
}

int p2m_store_lease_rm(p2m_store_t *st, uint16_t port, char *err)
{
    char key[KEY_MAX], port_s[8];
    p2m_store_key_lease(port, key, sizeof(key));
    snprintf(port_s, sizeof(port_s), "%u", (unsigned)port);
    const char *keys[] = {key};
    const char *args[] = {"kind", "", port_s, "0"};
    redisReply *r;
    if (run_script(st, lua_lease_drop, 1, keys, 4, args, &r, err) != 0)
        return -1;
    int dropped = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return dropped ? 0 : p2m_err(err, "no lease on port %u", (unsigned)port);
}

int p2m_store_schema_get(p2m_store_t *st, char *out, size_t cap, char *err)
{
    p2m_store_cmd_t c;
    redisReply *r;
    if (p2m_store_cmd_schema_get(&c) != 0 || (r = store_callv(st, err, c.argc, c.argv, c.argvlen)) == NULL)
        return -1;
    int ret = 0;
    out[0] = '\0';
    if (r->type == REDIS_REPLY_STRING) {
        snprintf(out, cap, "%.*s", (int)(r->len < cap ? r->len : cap - 1), r->str);
        ret = 1;
    } else if (r->type != REDIS_REPLY_NIL) {
        ret = p2m_err(err, "%s: p2m:schema is not a string", st->where);
    }
    freeReplyObject(r);
    return ret;
}

/* ARGV: the relays set, the heartbeat hash prefix, the draining set. Returns {name, ttl_ms, address,
 * ports, started, leases, idle, tunnels, waiting, draining (the relay's word), marked (in the
 * draining set), listed (in the relays set)}
 * per relay, the fields false when absent; read in one script so that the TTL and the fields agree.
 * A name marked draining but no longer in the relays set is listed too: the mark outlives it. */
static const char lua_relay_list[] =
    "local out, seen = {}, {}\n"
    "local function one(name, listed)\n"
    "  if seen[name] then return end\n"
    "  seen[name] = true\n"
    "  local k = ARGV[2] .. name\n"
    "  local h = redis.call('HMGET', k, 'address', 'ports', 'started', 'leases', 'idle', 'tunnels', 'waiting', 'draining')\n"
    "  table.insert(out, {name, redis.call('PTTL', k), h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8],\n"
    "                     redis.call('SISMEMBER', ARGV[3], name), listed})\n"
    "end\n"
    "for _, name in ipairs(redis.call('SMEMBERS', ARGV[1])) do one(name, 1) end\n"
    "for _, name in ipairs(redis.call('SMEMBERS', ARGV[3])) do one(name, 0) end\n"
    "return out\n";

/* A count the relay published: -1 when absent or not a number. */
static long long reply_count(const redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 18 || strspn(r->str, "0123456789") != r->len)
        return -1;
    return strtoll(r->str, NULL, 10);
}

static int cmp_relay(const void *a, const void *b)
{
    return strcmp(((const p2m_relay_info_t *)a)->name, ((const p2m_relay_info_t *)b)->name);
}

int p2m_store_relay_list(p2m_store_t *st, p2m_relay_info_t **out, size_t *n, char *err)
{
    const char *args[] = {P2M_KEY_RELAYS, P2M_KEY_RELAY, P2M_KEY_DRAINING};
    redisReply *r = NULL;
    p2m_relay_info_t *list = NULL;
    size_t k = 0;
    int ret = -1;

    if (run_read_script(st, lua_relay_list, 0, NULL, 3, args, &r, err) != 0)
        goto Exit;
    if (r->type != REDIS_REPLY_ARRAY) {
        p2m_err(err, "%s: unexpected reply listing relays", st->where);
        goto Exit;
    }
    if ((list = calloc(r->elements + 1, sizeof(*list))) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 12 || e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[10]->type != REDIS_REPLY_INTEGER ||
            e->element[11]->type != REDIS_REPLY_INTEGER)
            continue;
        p2m_relay_info_t *ri = &list[k++];
        reply_copy(e->element[0], ri->name, sizeof(ri->name));
        long long pttl = e->element[1]->integer; /* -2: no hash, -1: no TTL */
        ri->live = pttl != -2;
        ri->ttl_ms = pttl == -2 ? 0 : pttl;
        reply_copy(e->element[2], ri->address, sizeof(ri->address));
        reply_copy(e->element[3], ri->ports, sizeof(ri->ports));
        reply_copy(e->element[4], ri->started, sizeof(ri->started));
        ri->leases = reply_count(e->element[5]);
        ri->idle = reply_count(e->element[6]);
        ri->tunnels = reply_count(e->element[7]);
        ri->waiting = reply_count(e->element[8]);
        ri->drain_seen = e->element[9]->type == REDIS_REPLY_STRING && e->element[9]->len == 1 && e->element[9]->str[0] == '1';
        ri->draining = e->element[10]->integer == 1;
        ri->listed = e->element[11]->integer == 1;
    }
    qsort(list, k, sizeof(*list), cmp_relay);
    *out = list;
    *n = k;
    list = NULL;
    ret = 0;
Exit:
    free(list);
    if (r != NULL)
        freeReplyObject(r);
    return ret;
}

/* ARGV: the registrars set, the hash prefix, the drain suffix. */
static const char lua_registrar_list[] = "local out = {}\n"
                                         "for _, name in ipairs(redis.call('SMEMBERS', ARGV[1])) do\n"
                                         "  local k = ARGV[2] .. name\n"
                                         "  local pttl = redis.call('PTTL', k)\n"
                                         "  local drain = redis.call('GET', k .. ARGV[3])\n"
                                         "  if pttl == -2 and not drain then\n"
                                         "    redis.call('SREM', ARGV[1], name)\n"
                                         "  else\n"
                                         "    local h = redis.call('HMGET', k, 'url', 'started', 'pods_to', 'draining_to')\n"
                                         "    table.insert(out, {name, pttl, h[1], h[2], h[3], h[4], drain})\n"
                                         "  end\n"
                                         "end\n"
                                         "return out\n";

static int cmp_registrar(const void *a, const void *b)
{
    return strcmp(((const p2m_registrar_info_t *)a)->name, ((const p2m_registrar_info_t *)b)->name);
}

int p2m_store_registrar_list(p2m_store_t *st, p2m_registrar_info_t **out, size_t *n, char *err)
{
    const char *args[] = {P2M_KEY_REGISTRARS, P2M_KEY_REGISTRAR, P2M_KEY_DRAIN};
    redisReply *r = NULL;
    p2m_registrar_info_t *list = NULL;
    size_t k = 0;
    int ret = -1;

    /* Its pruning is housekeeping, not an admin change: no WAIT, so that ls works without replicas. */
    if (run_read_script(st, lua_registrar_list, 0, NULL, 3, args, &r, err) != 0)
        goto Exit;
    if (r->type != REDIS_REPLY_ARRAY) {
        p2m_err(err, "%s: unexpected reply listing registrars", st->where);
        goto Exit;
    }
    if ((list = calloc(r->elements + 1, sizeof(*list))) == NULL) {
        p2m_err(err, "out of memory");
        goto Exit;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 7 || e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        p2m_registrar_info_t *ri = &list[k++];
        reply_copy(e->element[0], ri->name, sizeof(ri->name));
        long long pttl = e->element[1]->integer; /* -2: no hash */
        ri->live = pttl != -2;
        ri->ttl_ms = pttl < 0 ? 0 : pttl;
        /* A missing field or key is Lua's false, a nil reply: "". */
        reply_copy(e->element[2], ri->url, sizeof(ri->url));
        reply_copy(e->element[3], ri->started, sizeof(ri->started));
        reply_copy(e->element[4], ri->pods_to, sizeof(ri->pods_to));
        reply_copy(e->element[5], ri->draining_to, sizeof(ri->draining_to));
        reply_copy(e->element[6], ri->drain, sizeof(ri->drain));
    }
    qsort(list, k, sizeof(*list), cmp_registrar);
    *out = list;
    *n = k;
    list = NULL;
    ret = 0;
Exit:
    free(list);
    if (r != NULL)
        freeReplyObject(r);
    return ret;
}

/* KEYS: the registrar's hash, its drain key. ARGV: url. */
static const char lua_registrar_drain[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end\n"
                                          "redis.call('SET', KEYS[2], ARGV[1])\n"
                                          "return 'ok'\n";

int p2m_store_registrar_drain(p2m_store_t *st, const char *name, const char *url, char *err)
{
    char khash[P2M_LABEL_MAX + 32], kdrain[P2M_LABEL_MAX + 48];
    const char *keys[] = {khash, kdrain}, *args[] = {url};
    redisReply *r = NULL;
    snprintf(khash, sizeof(khash), P2M_KEY_REGISTRAR "%s", name);
    snprintf(kdrain, sizeof(kdrain), P2M_KEY_REGISTRAR "%s" P2M_KEY_DRAIN, name);
    if (run_script(st, lua_registrar_drain, 2, keys, 1, args, &r, err) != 0)
        return -1;
    int ret = 0;
    if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_STRING)
        ret = p2m_err(err, "%s: unexpected reply draining a registrar", st->where);
    else if (strcmp(r->str, "gone") == 0)
        ret = p2m_err(err, "no live registrar %s (pipe2me-admin registrar ls)", name);
    freeReplyObject(r);
    return ret;
}

/* KEYS: the relay's heartbeat hash, the draining set. ARGV: name, "1" to mark / "0" to clear, force. */
static const char lua_relay_drain[] = "if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then\n"
                                      "  if redis.call('SISMEMBER', '" P2M_KEY_RELAYS "', ARGV[1]) == 1 then return 'down' end\n"
                                      "  return 'unknown'\n"
                                      "end\n"
                                      "if ARGV[2] == '1' then return redis.call('SADD', KEYS[2], ARGV[1]) end\n"
                                      "return redis.call('SREM', KEYS[2], ARGV[1])\n";

int p2m_store_relay_drain(p2m_store_t *st, const char *name, int draining, int force, int *changed, char *err)
{
    char key[P2M_LABEL_MAX + 64];
    if (snprintf(key, sizeof(key), P2M_KEY_RELAY "%s", name) >= (int)sizeof(key))
        return p2m_err(err, "relay name too long");
    const char *keys[] = {key, P2M_KEY_DRAINING};
    const char *args[] = {name, draining ? "1" : "0", force ? "1" : "0"};
    redisReply *r;
    if (run_script(st, lua_relay_drain, 2, keys, 3, args, &r, err) != 0)
        return -1;
    int ret = 0;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (changed != NULL)
            *changed = r->integer == 1;
    } else if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "down") == 0) {
        ret = p2m_err(err, "relay %s is not live (its heartbeat is gone); --force marks it anyway", name);
    } else if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "unknown") == 0) {
        ret = p2m_err(err, "unknown relay %s (see pipe2me-admin relay ls); --force marks it anyway", name);
    } else {
        ret = p2m_err(err, "%s: unexpected reply to relay drain", st->where);
    }
    freeReplyObject(r);
    return ret;
}

/* KEYS: the registrar's drain key. A script, as every change is, so that it is WAITed for. */
static const char lua_registrar_undrain[] = "return redis.call('DEL', KEYS[1])\n";

int p2m_store_registrar_undrain(p2m_store_t *st, const char *name, int *was, char *err)
{
    char kdrain[P2M_LABEL_MAX + 48];
    const char *keys[] = {kdrain};
    redisReply *r = NULL;
    snprintf(kdrain, sizeof(kdrain), P2M_KEY_REGISTRAR "%s" P2M_KEY_DRAIN, name);
    if (run_script(st, lua_registrar_undrain, 1, keys, 0, NULL, &r, err) != 0)
        return -1;
    if (was != NULL)
        *was = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return 0;
}

int p2m_store_time(p2m_store_t *st, long long *usec, char *err)
{
    redisReply *r = store_call(st, err, "TIME", NULL);
    if (r == NULL)
        return -1;
    int ret = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        char *end0, *end1;
        long long s = strtoll(r->element[0]->str, &end0, 10), us = strtoll(r->element[1]->str, &end1, 10);
        if (*end0 == '\0' && *end1 == '\0' && end0 != r->element[0]->str && end1 != r->element[1]->str && s >= 0 &&
            s < 100000000000LL && us >= 0 && us < 1000000) {
            *usec = s * 1000000 + us;
            ret = 0;
        }
    }
    if (ret != 0)
        p2m_err(err, "%s: unexpected TIME reply", st->where);
    freeReplyObject(r);
    return ret;
}

/* KEYS: token, tokens. ARGV: hash, uses, tunnels, expires, label_prefix, created. */
static const char lua_token_add[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('P2M token ' .. ARGV[1] .. ' exists already') end\n"
    "redis.call('HSET', KEYS[1], 'uses', ARGV[2], 'uses_left', ARGV[2], 'tunnels', ARGV[3], 'expires', ARGV[4],\n"
    "           'label_prefix', ARGV[5], 'created', ARGV[6], 'pods_created', '0')\n"
    "redis.call('SADD', KEYS[2], ARGV[1])\n"
    "return 'OK'\n";

/* ARGV: tokens, token-key prefix. Returns {hash, {field, value...}} per token whose hash exists. */
static const char lua_token_list[] = "local out = {}\n"
                                     "for _, h in ipairs(redis.call('SMEMBERS', ARGV[1])) do\n"
                                     "  local f = redis.call('HGETALL', ARGV[2] .. h)\n"
                                     "  if #f > 0 then table.insert(out, {h, f}) end\n"
                                     "end\n"
                                     "return out\n";

/* KEYS: tokens. ARGV: id (a hash or its start), token-key prefix. Returns the hash removed. */
static const char lua_token_rm[] =
    "local found = {}\n"
    "for _, h in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  if string.sub(h, 1, #ARGV[1]) == ARGV[1] then table.insert(found, h) end\n"
    "end\n"
    "if #found == 0 then return redis.error_reply('P2M unknown token ' .. ARGV[1]) end\n"
    "if #found > 1 then return redis.error_reply('P2M token ID ' .. ARGV[1] .. ' is ambiguous: give the full hash') end\n"
    "redis.call('DEL', ARGV[2] .. found[1])\n"
    "redis.call('SREM', KEYS[1], found[1])\n"
    "return found[1]\n";

static int key_token(const char *hash, char *out, size_t cap)
{
    int n = snprintf(out, cap, P2M_KEY_TOKEN "%s", hash);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int p2m_store_token_add(p2m_store_t *st, const char *hash, long long uses, long long tunnels, long long expires,
                        const char *label_prefix, long long now, char *err)
{
    char key[KEY_MAX], s_uses[24], s_tunnels[24], s_expires[24], s_created[24], why[P2M_ERR_LEN];
    if (!p2m_token_hex_valid(hash, strlen(hash), P2M_TOKEN_HASH_LEN))
        return p2m_err(err, "token hash: expected %d lower-case hex digits", P2M_TOKEN_HASH_LEN);
    if (uses < 1 || uses > P2M_TOKEN_USES_MAX)
        return p2m_err(err, "uses: expected 1..%d", P2M_TOKEN_USES_MAX);
    if (tunnels < 1 || tunnels > P2M_TOKEN_TUNNELS_MAX)
        return p2m_err(err, "tunnels: expected 1..%d", P2M_TOKEN_TUNNELS_MAX);
    if (expires < 0)
        return p2m_err(err, "expires: expected a unix time or 0");
    if (label_prefix[0] != '\0' && p2m_token_label_prefix_check(label_prefix, strlen(label_prefix), why) != 0)
        return p2m_err(err, "label prefix: %s", why);
    key_token(hash, key, sizeof(key));
    snprintf(s_uses, sizeof(s_uses), "%lld", uses);
    snprintf(s_tunnels, sizeof(s_tunnels), "%lld", tunnels);
    snprintf(s_expires, sizeof(s_expires), "%lld", expires);
    snprintf(s_created, sizeof(s_created), "%lld", now);
    const char *keys[] = {key, P2M_KEY_TOKENS};
    const char *args[] = {hash, s_uses, s_tunnels, s_expires, label_prefix, s_created};
    return run_script(st, lua_token_add, 2, keys, 6, args, NULL, err);
}

/* Fills t from HGETALL-style field, value replies. */
static void token_fill(p2m_token_info_t *t, redisReply **f, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        const char *k = f[i]->type == REDIS_REPLY_STRING ? f[i]->str : "";
        const redisReply *v = f[i + 1];
        if (strcmp(k, "uses") == 0)
            t->uses = reply_ll(v);
        else if (strcmp(k, "uses_left") == 0)
            t->uses_left = reply_ll(v);
        else if (strcmp(k, "tunnels") == 0)
            t->tunnels = reply_ll(v);
        else if (strcmp(k, "expires") == 0)
            t->expires = reply_ll(v);
        else if (strcmp(k, "label_prefix") == 0)
            reply_copy(v, t->label_prefix, sizeof(t->label_prefix));
        else if (strcmp(k, "created") == 0)
            t->created = reply_ll(v);
        else if (strcmp(k, "pods_created") == 0)
            t->pods_created = reply_ll(v);
    }
}

static int cmp_token(const void *a, const void *b)
{
    return strcmp(((const p2m_token_info_t *)a)->hash, ((const p2m_token_info_t *)b)->hash);
}

int p2m_store_token_list(p2m_store_t *st, p2m_token_info_t **out, size_t *n, char *err)
{
    redisReply *r = NULL;
    const char *args[] = {P2M_KEY_TOKENS, P2M_KEY_TOKEN};
    if (run_read_script(st, lua_token_list, 0, NULL, 2, args, &r, err) != 0)
        return -1;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return p2m_err(err, "%s: unexpected token list reply", st->where);
    }
    p2m_token_info_t *list = calloc(r->elements + 1, sizeof(*list));
    if (list == NULL) {
        freeReplyObject(r);
        return p2m_err(err, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        reply_copy(e->element[0], list[k].hash, sizeof(list[k].hash));
        token_fill(&list[k], e->element[1]->element, e->element[1]->elements);
        k++;
    }
    freeReplyObject(r);
    qsort(list, k, sizeof(*list), cmp_token);
    *out = list;
    *n = k;
    return 0;
}

int p2m_store_token_rm(p2m_store_t *st, const char *id, char *hash, char *err)
{
    size_t len = strlen(id);
    redisReply *r = NULL;
    if (!p2m_token_hex_valid(id, len, P2M_TOKEN_ID_LEN) && !p2m_token_hex_valid(id, len, P2M_TOKEN_HASH_LEN))
        return p2m_err(err, "token ID: expected %d or %d lower-case hex digits", P2M_TOKEN_ID_LEN, P2M_TOKEN_HASH_LEN);
    const char *keys[] = {P2M_KEY_TOKENS};
    const char *args[] = {id, P2M_KEY_TOKEN};
    if (run_script(st, lua_token_rm, 1, keys, 2, args, &r, err) != 0)
        return -1;
    if (hash != NULL) {
        hash[0] = '\0';
        reply_copy(r, hash, P2M_TOKEN_HASH_LEN + 1);
    }
    freeReplyObject(r);
    return 0;
}

int p2m_store_token_redeem(p2m_store_t *st, const char *hash, long long now, p2m_token_info_t *info, char *err)
{
    p2m_store_cmd_t c;
    if (p2m_store_cmd_token_redeem(&c, hash, now) != 0)
        return P2M_TOKEN_UNKNOWN; /* not a hash: nothing such is stored */
    redisReply *r = store_callv(st, err, c.argc, c.argv, c.argvlen);
    if (r == NULL)
        return -1;
    int ret = p2m_store_token_redeem_reply(r, hash, info, err);
    if (ret < 0)
        p2m_err(err, "%s: unexpected token reply", st->where);
    freeReplyObject(r);
    return ret;
}

/* --- direct paths (PROTOCOL 5) ------------------------------------------------------------------ */

/* These scripts change only marks that lapse by themselves (a lock, a verified mark, what was
 * written to DNS): run without WAIT, as the registrar's own commands are. */

int p2m_store_direct_labels(p2m_store_t *st, char (**out)[P2M_LABEL_MAX + 1], size_t *n, size_t cap, char *err)
{
    redisReply *r = store_call(st, err, "SMEMBERS", P2M_KEY_DIRECTS, NULL);
    *out = NULL;
    *n = 0;
    if (r == NULL)
        return -1;
    size_t want = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    if (want > cap)
        want = cap;
    if (want > 0 && (*out = calloc(want, sizeof(**out))) == NULL) {
        freeReplyObject(r);
        return p2m_err(err, "out of memory");
    }
    for (size_t i = 0; i < want; i++) {
        const redisReply *e = r->element[i];
        /* Only what is a label goes on: the checker builds names and keys from it. */
        if (e->type == REDIS_REPLY_STRING && p2m_label_normalize(e->str, e->len, (*out)[*n], NULL) == 0)
            (*n)++;
    }
    freeReplyObject(r);
    return 0;
}

/* KEYS: the lock, the https and http services' direct hashes, p2m:dns:names, the https service's
 * verified mark. ARGV: who, lock ms, lan name, direct name. Reply: {"busy"} or {"ok", LAN,
 * LAN_HTTP, PUBLIC, DNS_LAN, DNS_DIRECT, VERIFIED}. */
static const char lua_direct_take[] =
    "local holder = redis.call('GET', KEYS[1])\n"
    "if holder and holder ~= ARGV[1] then return {'busy'} end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "local function paths(k)\n"
    "  local h = redis.call('HMGET', k, 'pod', 'lan', 'public')\n"
    "  if not h[1] or redis.call('HGET', 'p2m:pod:' .. h[1], 'disabled') ~= '0' then return '', '' end\n"
    "  return h[2] or '', h[3] or ''\n"
    "end\n"
    "local lan, pub = paths(KEYS[2])\n"
    "local lan_http = paths(KEYS[3])\n"
    "return {'ok', lan, lan_http, pub, redis.call('HGET', KEYS[4], ARGV[3]) or '', redis.call('HGET', KEYS[4], ARGV[4]) or '',\n"
    "        redis.call('GET', KEYS[5]) or ''}\n";

/* Copies a reply string that must be a canonical direct path or address (it reaches DNS and
 * Location headers): anything else reads as "". */
static void direct_copy(const redisReply *r, char *out, int is_path)
{
    char host[INET6_ADDRSTRLEN + 8], canon[P2M_DIRECT_ADDR_MAX + 1];
    unsigned char a[16];
    out[0] = '\0';
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > P2M_DIRECT_ADDR_MAX)
        return;
    memcpy(host, r->str, r->len);
    host[r->len] = '\0';
    if (is_path ? p2m_direct_addr_parse(host, canon, NULL, NULL, NULL) == 0
                : (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1))
        memcpy(out, host, r->len + 1);
}

int p2m_store_direct_take(p2m_store_t *st, const char *label, const char *who, unsigned lock_ms, const char *lan_name,
                          const char *direct_name, p2m_direct_state_t *out, char *err)
{
    char klock[KEY_MAX], kh[KEY_MAX], khttp[KEY_MAX], kok[KEY_MAX], ms[16];
    memset(out, 0, sizeof(*out));
    snprintf(kok, sizeof(kok), P2M_KEY_DIRECT_OK "%s", label);
    snprintf(klock, sizeof(klock), P2M_KEY_DIRECT_LOCK "%s", label);
    snprintf(kh, sizeof(kh), P2M_KEY_DIRECT "%s", label);
    snprintf(khttp, sizeof(khttp), P2M_KEY_DIRECT "%s:http", label);
    snprintf(ms, sizeof(ms), "%u", lock_ms);
    const char *keys[] = {klock, kh, khttp, P2M_KEY_DNS_NAMES, kok};
    const char *args[] = {who, ms, lan_name, direct_name};
    redisReply *r = NULL;
    if (run_read_script(st, lua_direct_take, 5, keys, 4, args, &r, err) != 0)
        return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 7 && r->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[0]->str, "ok") == 0) {
        out->locked = 1;
        direct_copy(r->element[1], out->lan, 1);
        direct_copy(r->element[2], out->lan_http, 1);
        direct_copy(r->element[3], out->public_, 1);
        direct_copy(r->element[4], out->dns_lan, 0);
        direct_copy(r->element[5], out->dns_direct, 0);
        direct_copy(r->element[6], out->verified, 1);
    }
    freeReplyObject(r);
    return 0;
}

/* KEYS: the https service's direct hash, its verified mark. ARGV: the path checked, ttl ms. */
static const char lua_direct_verified[] = "if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'public') == ARGV[1] then\n"
                                          "  return redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\n"
                                          "end\n"
                                          "return redis.call('DEL', KEYS[2])\n";

int p2m_store_direct_verified(p2m_store_t *st, const char *label, const char *pub, unsigned ttl_ms, char *err)
{
    char kh[KEY_MAX], kok[KEY_MAX], ms[16];
    snprintf(kh, sizeof(kh), P2M_KEY_DIRECT "%s", label);
    snprintf(kok, sizeof(kok), P2M_KEY_DIRECT_OK "%s", label);
    snprintf(ms, sizeof(ms), "%u", ttl_ms);
    const char *keys[] = {kh, kok};
    const char *args[] = {pub, ms};
    return run_read_script(st, lua_direct_verified, 2, keys, 2, args, NULL, err);
}

int p2m_store_direct_dns_set(p2m_store_t *st, const char *label, const char *name, const char *addr, char *err)
{
    redisReply *r = addr[0] != '\0' ? store_call(st, err, "HSET", P2M_KEY_DNS_NAMES, name, addr, NULL)
                                    : store_call(st, err, "HDEL", P2M_KEY_DNS_NAMES, name, NULL);
    if (r == NULL)
        return -1;
    freeReplyObject(r);
    /* A name written keeps its label on the checker's list until the name is deleted again. */
    if (addr[0] != '\0' && (r = store_call(st, err, "SADD", P2M_KEY_DIRECTS, label, NULL)) == NULL)
        return -1;
    if (addr[0] != '\0')
        freeReplyObject(r);
    return 0;
}

static const char lua_direct_forget[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 and\n"
    "   redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 and redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 then\n"
    "  return redis.call('SREM', KEYS[4], ARGV[1])\n"
    "end\n"
    "return 0\n";

int p2m_store_direct_forget(p2m_store_t *st, const char *label, const char *lan_name, const char *direct_name, char *err)
{
    char kh[KEY_MAX], khttp[KEY_MAX];
    snprintf(kh, sizeof(kh), P2M_KEY_DIRECT "%s", label);
    snprintf(khttp, sizeof(khttp), P2M_KEY_DIRECT "%s:http", label);
    const char *keys[] = {kh, khttp, P2M_KEY_DNS_NAMES, P2M_KEY_DIRECTS};
    const char *args[] = {label, lan_name, direct_name};
    return run_read_script(st, lua_direct_forget, 4, keys, 3, args, NULL, err);
}

/* --- live numbers (the console's, pod ls, label ls) ------------------------------------------- */

/* The services of a pod (its labels and the labels it shares) or of one label: SERVICES(kind, name)
 * returns their keys, or nil for an unknown pod. Each label has up to three (p2m/service.h). */
#define LUA_SERVICES                                                                                                               \
    "local function services(kind, name)\n"                                                                                        \
    "  local labels = {name}\n"                                                                                                    \
    "  if kind == 'pod' then\n"                                                                                                    \
    "    if redis.call('EXISTS', '" P2M_KEY_POD "' .. name) == 0 then return nil end\n"                                            \
    "    labels = redis.call('SMEMBERS', '" P2M_KEY_POD "' .. name .. '" P2M_KEY_POD_LABELS "')\n"                                 \
    "    for _, l in ipairs(redis.call('SMEMBERS', '" P2M_KEY_POD "' .. name .. '" P2M_KEY_POD_SHARES "')) do\n"                   \
    "      table.insert(labels, l)\n"                                                                                              \
    "    end\n"                                                                                                                    \
    "  end\n"                                                                                                                      \
    "  local out = {}\n"                                                                                                           \
    "  for _, l in ipairs(labels) do\n"                                                                                            \
    "    table.insert(out, l) table.insert(out, l .. ':http') table.insert(out, l .. ':tcp')\n"                                    \
    "  end\n"                                                                                                                      \
    "  return out\n"                                                                                                               \
    "end\n"                                                                                                                        \
    "local function num(v) return tonumber(v or '0') or 0 end\n"

/* ARGV[1] "pod" or "label", then names. Per name, summed over its services and every relay in
 * p2m:relays: {alive, idle, waiting, tunnels, bytes_in, bytes_out, conns, last_registration,
 * pool_target}, or {} for an unknown pod; the last two for pods only, pool_target summed over the
 * pod's services that declared one (pool:SERVICE on its hash). Reads only. */
static const char lua_live[] =
    LUA_SERVICES "local relays = redis.call('SMEMBERS', '" P2M_KEY_RELAYS "')\n"
                 "local out = {}\n"
                 "for i = 2, #ARGV do\n"
                 "  local svcs = services(ARGV[1], ARGV[i])\n"
                 "  if not svcs then table.insert(out, {}) else\n"
                 "    local n = {0, 0, 0, 0, 0, 0, 0, 0, 0}\n"
                 "    for _, s in ipairs(svcs) do\n"
                 "      if redis.call('EXISTS', '" P2M_KEY_ALIVE "' .. s) == 1 then n[1] = 1 end\n"
                 "      for _, r in ipairs(relays) do\n"
                 "        n[2] = n[2] + num(redis.call('HGET', '" P2M_KEY_IDLE "' .. r, s))\n"
                 "        n[3] = n[3] + num(redis.call('HGET', '" P2M_KEY_WAIT "' .. r, s))\n"
                 "        n[4] = n[4] + num(redis.call('HGET', '" P2M_KEY_TUNNELS "' .. r, s))\n"
                 "        local st = redis.call('HMGET', '" P2M_KEY_RELAY_STATS "' .. r, s .. ':bytes_in', s .. ':bytes_out',\n"
                 "                              s .. ':conns')\n"
                 "        n[5], n[6], n[7] = n[5] + num(st[1]), n[6] + num(st[2]), n[7] + num(st[3])\n"
                 "      end\n"
                 "    end\n"
                 "    if ARGV[1] == 'pod' then\n"
                 "      n[8] = num(redis.call('HGET', '" P2M_KEY_POD "' .. ARGV[i], 'last_registration'))\n"
                 "      for _, s in ipairs(svcs) do\n"
                 "        n[9] = n[9] + num(redis.call('HGET', '" P2M_KEY_POD "' .. ARGV[i], 'pool:' .. s))\n"
                 "      end\n"
                 "    end\n"
                 "    table.insert(out, n)\n"
                 "  end\n"
                 "end\n"
                 "return out\n";

int p2m_store_live(p2m_store_t *st, int pods, const char *const *names, size_t n, p2m_live_t *out, char *err)
{
    int ret = -1;
    redisReply *r = NULL;
    const char **argv = malloc((n + 4) * sizeof(*argv));
    if (argv == NULL)
        return p2m_err(err, "out of memory");
    memset(out, 0, n * sizeof(*out));
    if (n == 0) {
        ret = 0;
        goto Exit;
    }
    size_t argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = lua_live;
    argv[argc++] = "0";
    argv[argc++] = pods ? "pod" : "label";
    for (size_t i = 0; i < n; i++)
        argv[argc++] = names[i];
    if ((r = store_callv(st, err, (int)argc, argv, NULL)) == NULL)
        goto Exit;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        p2m_err(err, "%s: unexpected reply reading live numbers", st->where);
        goto Exit;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 9)
            continue; /* a pod removed meanwhile: all zero */
        long long v[9];
        for (size_t k = 0; k < 9; k++)
            v[k] = e->element[k]->type == REDIS_REPLY_INTEGER ? e->element[k]->integer : 0;
        out[i] = (p2m_live_t){.idle = v[1],
                              .waiting = v[2],
                              .tunnels = v[3],
                              .bytes_in = v[4],
                              .bytes_out = v[5],
                              .conns = v[6],
                              .last_registration = v[7],
                              .pool_target = v[8]};
        out[i].online = v[0] != 0 || v[1] > 0 || v[3] > 0;
    }
    ret = 0;
Exit:
    if (r != NULL)
        freeReplyObject(r);
    free(argv);
    return ret;
}

/* ARGV: pod, the last minute, how many minutes. Per minute, oldest first, summed over the pod's
 * services: {minute, conns, tunnels (each relay's gauge, summed), bytes_in, bytes_out}; 'unknown'
 * for an unknown pod. Reads only. */
static const char lua_series_read[] =
    LUA_SERVICES "local svcs = services('pod', ARGV[1])\n"
                 "if not svcs then return 'unknown' end\n"
                 "local last, nm, out = tonumber(ARGV[2]), tonumber(ARGV[3]), {}\n"
                 "for m = last - nm + 1, last do\n"
                 "  local n = {m, 0, 0, 0, 0}\n"
                 "  for _, s in ipairs(svcs) do\n"
                 "    local h = redis.call('HGETALL', '" P2M_KEY_SERIES "' .. s .. ':' .. string.format('%d', m))\n"
                 "    for j = 1, #h, 2 do\n"
                 "      local f, v = h[j], num(h[j + 1])\n"
                 "      if f == 'conns' then n[2] = n[2] + v\n"
                 "      elseif string.sub(f, 1, 8) == 'tunnels:' then n[3] = n[3] + v\n"
                 "      elseif f == 'bytes_in' then n[4] = n[4] + v\n"
                 "      elseif f == 'bytes_out' then n[5] = n[5] + v end\n"
                 "    end\n"
                 "  end\n"
                 "  table.insert(out, n)\n"
                 "end\n"
                 "return out\n";

int p2m_store_pod_series(p2m_store_t *st, const char *id, long long minute_now, p2m_series_point_t out[P2M_SERIES_MINUTES],
                         char *err)
{
    char last[24], count[8];
    snprintf(last, sizeof(last), "%lld", minute_now);
    snprintf(count, sizeof(count), "%d", P2M_SERIES_MINUTES);
    const char *args[] = {id, last, count};
    redisReply *r = NULL;
    int ret = -1;
    if (run_read_script(st, lua_series_read, 0, NULL, 3, args, &r, err) != 0)
        goto Exit;
    if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "unknown") == 0) {
        p2m_err(err, "unknown pod %s", id);
        ret = 1;
        goto Exit;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != P2M_SERIES_MINUTES) {
        p2m_err(err, "%s: unexpected reply reading the series", st->where);
        goto Exit;
    }
    for (size_t i = 0; i < P2M_SERIES_MINUTES; i++) {
        const redisReply *e = r->element[i];
        long long v[5] = {minute_now - P2M_SERIES_MINUTES + 1 + (long long)i, 0, 0, 0, 0};
        for (size_t k = 0; e->type == REDIS_REPLY_ARRAY && k < e->elements && k < 5; k++)
            if (e->element[k]->type == REDIS_REPLY_INTEGER)
                v[k] = e->element[k]->integer;
        out[i] = (p2m_series_point_t){v[0], v[1], v[2], v[3], v[4]};
    }
    ret = 0;
Exit:
    if (r != NULL)
        freeReplyObject(r);
    return ret;
}
