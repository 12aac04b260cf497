/* pipe2me-admin label ...: give labels to pods, take them away, list who owns what. */
#include "admin.h"

#include <jansson.h>
#include <stdlib.h>

/* label add ID LABEL [--protocol P]: the protocol is said in the confirmation only when asked
 * for, so that a plain add reads as before; JSON always carries it. */
int label_add(admin_t *a, char *err)
{
    int ret = -1, existed = 0;
    const char *id = a->args[0];
    char label[P2M_LABEL_MAX + 1], note[32] = "";
    p2m_store_t *st = NULL;
    p2m_proto_t proto = P2M_PROTO_HTTPS;

    if (admin_check_id(id, err) != 0 || admin_check_label(a->args[1], label, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_label_add(st, id, label, a->have_proto ? &a->proto : NULL, &existed, &proto, err) != 0)
        goto Exit;
    if (a->have_proto)
        snprintf(note, sizeof(note), ", protocol %s", p2m_proto_name(proto));
    ret = admin_confirm(a,
                        json_pack("{s:b, s:s, s:s, s:b, s:s}", "ok", 1, "label", label, "pod", id, "existed", existed, "protocol",
                                  p2m_proto_name(proto)),
                        err, existed ? "label %s already belongs to pod %s%s" : "label %s added to pod %s%s", label, id, note);
Exit:
    p2m_store_free(st);
    return ret;
}

int label_set(admin_t *a, char *err)
{
    int ret = -1;
    char label[P2M_LABEL_MAX + 1], owner[P2M_ID_MAX + 1] = "";
    p2m_store_t *st = NULL;

    if (admin_check_label(a->args[0], label, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_label_set_protocol(st, label, a->proto, owner, err) != 0)
        goto Exit;
    ret = admin_confirm(
        a, json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "label", label, "pod", owner, "protocol", p2m_proto_name(a->proto)), err,
        "label %s of pod %s: protocol %s", label, owner, p2m_proto_name(a->proto));
Exit:
    p2m_store_free(st);
    return ret;
}

int label_rm(admin_t *a, char *err)
{
    int ret = -1;
    char label[P2M_LABEL_MAX + 1], owner[P2M_ID_MAX + 1] = "";
    p2m_store_t *st = NULL;

    if (admin_check_label(a->args[0], label, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_label_rm(st, label, owner, err) != 0)
        goto Exit;
    ret = admin_confirm(a, json_pack("{s:b, s:s, s:s}", "ok", 1, "label", label, "pod", owner), err, "label %s removed from pod %s",
                        label, owner);
Exit:
    p2m_store_free(st);
    return ret;
}

int label_ls(admin_t *a, char *err)
{
    static const char *const headers[] = {"LABEL", "POD", "PROTOCOL"};
    int ret = -1;
    p2m_store_t *st = NULL;
    p2m_label_owner_t *owners = NULL;
    size_t n = 0;
    json_t *arr = NULL;
    admin_table_t table;

    admin_table_init(&table, 3, headers);
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_label_list(st, &owners, &n, err) != 0)
        goto Exit;
    if (a->json) {
        if ((arr = json_array()) == NULL) {
            p2m_err(err, "cannot build the JSON reply");
            goto Exit;
        }
        for (size_t i = 0; i < n; i++) {
            if (json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "label", owners[i].label, "pod", owners[i].pod, "protocol",
                                                     p2m_proto_name(owners[i].proto))) != 0) {
                p2m_err(err, "cannot build the JSON reply");
                goto Exit;
            }
        }
        if (admin_json_print(arr, err) != 0)
            goto Exit;
    } else {
        for (size_t i = 0; i < n; i++) {
            const char *row[] = {owners[i].label, owners[i].pod, p2m_proto_name(owners[i].proto)};
            admin_table_add(&table, row);
        }
        if (admin_table_print(&table, err) != 0)
            goto Exit;
    }
    ret = 0;
Exit:
    json_decref(arr);
    free(owners);
    admin_table_dispose(&table);
    p2m_store_free(st);
    return ret;
}
