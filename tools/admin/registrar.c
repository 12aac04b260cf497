/* pipe2me-admin registrar ...: the live registrars (their heartbeats in Redis), and the drain
 * switch that sends a registrar's pods to another (docs/PROTOCOL.md 1.7, OPERATIONS.md "Taking a
 * registrar out"). The registrar reads its drain key with each heartbeat. */
#include "admin.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int registrar_ls(admin_t *a, char *err)
{
    static const char *const headers[] = {"NAME", "URL", "STARTED", "STATE", "PODS_TO"};
    int ret = -1;
    p2m_store_t *st = NULL;
    p2m_registrar_info_t *rs = NULL;
    size_t n = 0;
    json_t *arr = NULL;
    admin_table_t table;

    admin_table_init(&table, 5, headers);
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_registrar_list(st, &rs, &n, err) != 0)
        goto Exit;
    if (a->json) {
        if ((arr = json_array()) == NULL) {
            p2m_err(err, "cannot build the JSON reply");
            goto Exit;
        }
        for (size_t i = 0; i < n; i++) {
            const p2m_registrar_info_t *r = &rs[i];
            /* draining: the drain key says so; draining_to: where the registrar itself last read it. */
            json_t *obj =
                json_pack("{s:s, s:b, s:s, s:I, s:b, s:s?, s:s?, s:s?}", "name", r->name, "live", r->live, "url", r->url, "started",
                          (json_int_t)strtoll(r->started, NULL, 10), "draining", r->drain[0] != '\0', "drain_to",
                          r->drain[0] != '\0' ? r->drain : NULL, "draining_to", r->draining_to[0] != '\0' ? r->draining_to : NULL,
                          "pods_to", r->pods_to[0] != '\0' ? r->pods_to : NULL);
            if (obj == NULL || json_array_append_new(arr, obj) != 0) {
                p2m_err(err, "cannot build the JSON reply");
                goto Exit;
            }
        }
        if (admin_json_print(arr, err) != 0)
            goto Exit;
    } else {
        for (size_t i = 0; i < n; i++) {
            const p2m_registrar_info_t *r = &rs[i];
            char started[ADMIN_TIME_LEN], state[P2M_URL_MAX + 64];
            long long t = strtoll(r->started, NULL, 10);
            if (!r->live)
                snprintf(state, sizeof(state), "gone (draining to %s)", r->drain);
            else if (r->drain[0] != '\0')
                snprintf(state, sizeof(state), "draining to %s%s", r->drain,
                         strcmp(r->drain, r->draining_to) != 0 ? " (not yet read)" : "");
            else
                snprintf(state, sizeof(state), "serving");
            const char *row[] = {r->name, r->live ? r->url : "-", t > 0 ? admin_time_iso(t, started) : "-", state,
                                 r->pods_to[0] != '\0' ? r->pods_to : "-"};
            admin_table_add(&table, row);
        }
        if (admin_table_print(&table, err) != 0)
            goto Exit;
    }
    ret = 0;
Exit:
    json_decref(arr);
    free(rs);
    admin_table_dispose(&table);
    p2m_store_free(st);
    return ret;
}

/* The NAME argument: a label, as registrar.name is. */
static int registrar_name(const char *arg, char *name, char *err)
{
    char q[ADMIN_QUOTE_LEN], lerr[P2M_ERR_LEN];
    if (p2m_label_normalize(arg, strlen(arg), name, lerr) != 0)
        return p2m_err(err, "invalid registrar name %s: %s", admin_quote(arg, q), lerr);
    return 0;
}

int registrar_drain(admin_t *a, char *err)
{
    int ret = -1;
    char name[P2M_LABEL_MAX + 1];
    p2m_store_t *st = NULL;

    if (registrar_name(a->args[0], name, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_registrar_drain(st, name, a->drain_to, err) != 0)
        goto Exit;
    ret = admin_confirm(a, json_pack("{s:b, s:s, s:s}", "ok", 1, "name", name, "drain_to", a->drain_to), err,
                        "registrar %s draining to %s (within %d s)", name, a->drain_to, P2M_REGISTRAR_HEARTBEAT_MS / 1000);
Exit:
    p2m_store_free(st);
    return ret;
}

int registrar_undrain(admin_t *a, char *err)
{
    int ret = -1, was = 0;
    char name[P2M_LABEL_MAX + 1];
    p2m_store_t *st = NULL;

    if (registrar_name(a->args[0], name, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_registrar_undrain(st, name, &was, err) != 0)
        goto Exit;
    ret = admin_confirm(a, json_pack("{s:b, s:s, s:b}", "ok", 1, "name", name, "was_draining", was), err, "registrar %s %s", name,
                        was ? "no longer draining" : "was not draining");
Exit:
    p2m_store_free(st);
    return ret;
}
