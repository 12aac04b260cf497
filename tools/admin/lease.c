/* pipe2me-admin lease ...: list the relay's port leases and end one by hand. Leases are made
 * by the registrar; the admin only looks at them and takes them away. */
#include "admin.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2m/addr.h"

int lease_ls(admin_t *a, char *err)
{
    static const char *const headers[] = {"PORT", "KIND", "LABEL", "POD", "ADDR", "TTL"};
    int ret = -1;
    p2m_store_t *st = NULL;
    p2m_lease_t *leases = NULL;
    size_t n = 0;
    json_t *arr = NULL;
    admin_table_t table;

    admin_table_init(&table, 6, headers);
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_lease_list(st, &leases, &n, err) != 0)
        goto Exit;
    if (a->json) {
        if ((arr = json_array()) == NULL) {
            p2m_err(err, "cannot build the JSON reply");
            goto Exit;
        }
        for (size_t i = 0; i < n; i++) {
            const p2m_lease_t *l = &leases[i];
            json_t *obj = json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:I}", "port", (int)l->port, "kind", l->kind, "label", l->label,
                                    "pod", l->pod, "addr", l->addr, "created", (json_int_t)l->created, "ttl", (json_int_t)l->ttl);
            if (json_array_append_new(arr, obj) != 0) {
                p2m_err(err, "cannot build the JSON reply");
                goto Exit;
            }
        }
        if (admin_json_print(arr, err) != 0)
            goto Exit;
    } else {
        for (size_t i = 0; i < n; i++) {
            const p2m_lease_t *l = &leases[i];
            char port[8], ttl[24];
            snprintf(port, sizeof(port), "%u", (unsigned)l->port);
            if (l->ttl >= 0)
                snprintf(ttl, sizeof(ttl), "%llds", l->ttl);
            else
                strcpy(ttl, "-");
            const char *row[] = {port, l->kind, l->label, l->pod, l->addr, ttl};
            admin_table_add(&table, row);
        }
        if (admin_table_print(&table, err) != 0)
            goto Exit;
    }
    ret = 0;
Exit:
    json_decref(arr);
    free(leases);
    admin_table_dispose(&table);
    p2m_store_free(st);
    return ret;
}

int lease_rm(admin_t *a, char *err)
{
    int ret = -1;
    const char *arg = a->args[0];
    char q[ADMIN_QUOTE_LEN];
    uint16_t port = 0;
    p2m_store_t *st = NULL;

    if (p2m_port_parse(arg, strlen(arg), &port) != 0) {
        p2m_err(err, "invalid port %s: expected 1-65535", admin_quote(arg, q));
        goto Exit;
    }
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_lease_rm(st, port, err) != 0)
        goto Exit;
    ret = admin_confirm(a, json_pack("{s:b, s:i}", "ok", 1, "port", (int)port), err, "lease %u removed", (unsigned)port);
Exit:
    p2m_store_free(st);
    return ret;
}
