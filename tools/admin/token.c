/* pipe2me-admin token ...: make, list and remove setup tokens, the currency of self-service setup
 * (each use creates one pod). A token is printed once, when made: Redis keeps only its SHA-256, and
 * listings name it by the first P2M_TOKEN_ID_LEN hex digits of that hash. */
#include "admin.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_USES_DEFAULT 1
#define TOKEN_TUNNELS_DEFAULT 4

int token_add(admin_t *a, char *err)
{
    int ret = -1;
    char token[P2M_TOKEN_LEN + 1] = "", hash[P2M_TOKEN_HASH_LEN + 1];
    p2m_store_t *st = NULL;
    long long now = (long long)time(NULL);
    long long uses = a->uses > 0 ? a->uses : TOKEN_USES_DEFAULT;
    long long tunnels = a->tunnels > 0 ? a->tunnels : TOKEN_TUNNELS_DEFAULT;
    long long expires = a->expires > 0 ? now + a->expires : 0;
    const char *prefix = a->label_prefix != NULL ? a->label_prefix : "";

    if (p2m_token_new(token, err) != 0 || p2m_token_hash(token, strlen(token), hash, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_token_add(st, hash, uses, tunnels, expires, prefix, now, err) != 0)
        goto Exit;
    ret = admin_confirm(a,
                        json_pack("{s:b, s:s, s:s%, s:s, s:I, s:I, s:I, s:s}", "ok", 1, "token", token, "id", hash,
                                  (size_t)P2M_TOKEN_ID_LEN, "hash", hash, "uses", (json_int_t)uses, "tunnels", (json_int_t)tunnels,
                                  "expires", (json_int_t)expires, "label_prefix", prefix),
                        err, "%s", token);
Exit:
    OPENSSL_cleanse(token, sizeof(token));
    p2m_store_free(st);
    return ret;
}

int token_ls(admin_t *a, char *err)
{
    static const char *const headers[] = {"ID", "USES_LEFT", "TUNNELS", "EXPIRES", "LABEL_PREFIX", "PODS", "CREATED"};
    int ret = -1;
    p2m_store_t *st = NULL;
    p2m_token_info_t *ts = NULL;
    size_t n = 0;
    json_t *arr = NULL;
    admin_table_t table;
    long long now = (long long)time(NULL);

    admin_table_init(&table, 7, headers);
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_token_list(st, &ts, &n, err) != 0)
        goto Exit;
    if (a->json) {
        if ((arr = json_array()) == NULL) {
            p2m_err(err, "cannot build the JSON reply");
            goto Exit;
        }
        for (size_t i = 0; i < n; i++) {
            const p2m_token_info_t *t = &ts[i];
            json_t *obj = json_pack("{s:s%, s:s, s:I, s:I, s:I, s:I, s:b, s:s, s:I, s:I}", "id", t->hash, (size_t)P2M_TOKEN_ID_LEN,
                                    "hash", t->hash, "uses", (json_int_t)t->uses, "uses_left", (json_int_t)t->uses_left, "tunnels",
                                    (json_int_t)t->tunnels, "expires", (json_int_t)t->expires, "expired",
                                    t->expires != 0 && t->expires <= now, "label_prefix", t->label_prefix, "pods_created",
                                    (json_int_t)t->pods_created, "created", (json_int_t)t->created);
            if (json_array_append_new(arr, obj) != 0) {
                p2m_err(err, "cannot build the JSON reply");
                goto Exit;
            }
        }
        if (admin_json_print(arr, err) != 0)
            goto Exit;
    } else {
        for (size_t i = 0; i < n; i++) {
            const p2m_token_info_t *t = &ts[i];
            char id[P2M_TOKEN_ID_LEN + 1], left[24], tunnels[24], pods[24], when[ADMIN_TIME_LEN + 16], created[ADMIN_TIME_LEN];
            snprintf(id, sizeof(id), "%.*s", P2M_TOKEN_ID_LEN, t->hash);
            snprintf(left, sizeof(left), "%lld", t->uses_left);
            snprintf(tunnels, sizeof(tunnels), "%lld", t->tunnels);
            snprintf(pods, sizeof(pods), "%lld", t->pods_created);
            if (t->expires == 0) {
                snprintf(when, sizeof(when), "never");
            } else {
                char iso[ADMIN_TIME_LEN];
                snprintf(when, sizeof(when), "%s%s", admin_time_iso(t->expires, iso), t->expires <= now ? " (expired)" : "");
            }
            const char *row[] = {id, left, tunnels, when, t->label_prefix, pods, admin_time_iso(t->created, created)};
            admin_table_add(&table, row);
        }
        if (admin_table_print(&table, err) != 0)
            goto Exit;
    }
    ret = 0;
Exit:
    json_decref(arr);
    free(ts);
    admin_table_dispose(&table);
    p2m_store_free(st);
    return ret;
}

int token_rm(admin_t *a, char *err)
{
    int ret = -1;
    const char *arg = a->args[0];
    char q[ADMIN_QUOTE_LEN], hash[P2M_TOKEN_HASH_LEN + 1];
    size_t len = strlen(arg);
    p2m_store_t *st = NULL;

    if (!p2m_token_hex_valid(arg, len, P2M_TOKEN_ID_LEN) && !p2m_token_hex_valid(arg, len, P2M_TOKEN_HASH_LEN)) {
        p2m_err(err, "invalid token ID %s: expected the %d lower-case hex digits token ls shows, or the full hash",
                admin_quote(arg, q), P2M_TOKEN_ID_LEN);
        goto Exit;
    }
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_token_rm(st, arg, hash, err) != 0)
        goto Exit;
    ret = admin_confirm(a, json_pack("{s:b, s:s%, s:s}", "ok", 1, "id", hash, (size_t)P2M_TOKEN_ID_LEN, "hash", hash), err,
                        "token %.*s removed", P2M_TOKEN_ID_LEN, hash);
Exit:
    p2m_store_free(st);
    return ret;
}
