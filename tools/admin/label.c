/* pipe2me-admin label ...: give labels to pods, share them with more pods, take them away, list
 * who owns and shares what. */
#include "admin.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* The sharers of o joined with sep, to free(). */
static char *sharers_join(const p2m_label_owner_t *o, const char *sep)
{
    size_t cap = 1, seplen = strlen(sep), pos = 0;
    for (size_t i = 0; i < o->nsharers; i++)
        cap += strnlen(o->sharers[i], P2M_ID_MAX) + seplen;
    char *s = admin_xmalloc(cap);
    for (size_t i = 0; i < o->nsharers; i++) {
        size_t n = strnlen(o->sharers[i], P2M_ID_MAX);
        if (i > 0) {
            memcpy(s + pos, sep, seplen);
            pos += seplen;
        }
        memcpy(s + pos, o->sharers[i], n);
        pos += n;
    }
    s[pos] = '\0';
    return s;
}

/* The sharers of o as a JSON array of strings, or NULL (jansson failed). */
static json_t *sharers_json(const p2m_label_owner_t *o)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < o->nsharers; i++) {
        if (json_array_append_new(arr, json_string(o->sharers[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

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

/* label rm LABEL: reads as before for a label nobody shares; the sharers are named when there are
 * some (JSON: "sharers" only then). */
int label_rm(admin_t *a, char *err)
{
    int ret = -1;
    char label[P2M_LABEL_MAX + 1], *joined = NULL;
    p2m_store_t *st = NULL;
    p2m_label_owner_t gone = {0};
    json_t *obj = NULL;

    if (admin_check_label(a->args[0], label, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_label_rm(st, label, &gone, err) != 0)
        goto Exit;
    obj = json_pack("{s:b, s:s, s:s}", "ok", 1, "label", label, "pod", gone.pod);
    if (gone.nsharers == 0) {
        ret = admin_confirm(a, obj, err, "label %s removed from pod %s", label, gone.pod);
        goto Exit;
    }
    if (obj != NULL && json_object_set_new(obj, "sharers", sharers_json(&gone)) != 0) {
        json_decref(obj);
        obj = NULL;
    }
    joined = sharers_join(&gone, ", ");
    ret = admin_confirm(a, obj, err, "label %s removed from pod %s and from the pods sharing it: %s", label, gone.pod, joined);
Exit:
    free(joined);
    p2m_store_label_owner_dispose(&gone);
    p2m_store_free(st);
    return ret;
}

/* label share LABEL ID */
int label_share(admin_t *a, char *err)
{
    int ret = -1, existed = 0;
    const char *id = a->args[1];
    char label[P2M_LABEL_MAX + 1], owner[P2M_ID_MAX + 1] = "";
    p2m_store_t *st = NULL;

    if (admin_check_label(a->args[0], label, err) != 0 || admin_check_id(id, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_label_share(st, label, id, &existed, owner, err) != 0)
        goto Exit;
    ret = admin_confirm(
        a, json_pack("{s:b, s:s, s:s, s:s, s:b}", "ok", 1, "label", label, "pod", id, "owner", owner, "existed", existed), err,
        existed ? "pod %s already shares label %s of pod %s" : "pod %s shares label %s of pod %s", id, label, owner);
Exit:
    p2m_store_free(st);
    return ret;
}

/* label unshare LABEL ID */
int label_unshare(admin_t *a, char *err)
{
    int ret = -1;
    const char *id = a->args[1];
    char label[P2M_LABEL_MAX + 1], owner[P2M_ID_MAX + 1] = "";
    p2m_store_t *st = NULL;

    if (admin_check_label(a->args[0], label, err) != 0 || admin_check_id(id, err) != 0)
        goto Exit;
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_label_unshare(st, label, id, owner, err) != 0)
        goto Exit;
    ret = admin_confirm(a, json_pack("{s:b, s:s, s:s, s:s}", "ok", 1, "label", label, "pod", id, "owner", owner), err,
                        "pod %s no longer shares label %s of pod %s", id, label, owner);
Exit:
    p2m_store_free(st);
    return ret;
}

/* label ls: the POD column lists the owner first, then the sharers; JSON entries carry "sharers"
 * only for a shared label, so that an unshared one reads as before. */
/* The consumers of n labels now, waiting and in a tunnel (p2m_store_live): one script for them all. */
static int label_live_fetch(p2m_store_t *st, const p2m_label_owner_t *owners, size_t n, p2m_live_t *out, char *err)
{
    const char **names = admin_xmalloc((n + 1) * sizeof(*names));
    for (size_t i = 0; i < n; i++)
        names[i] = owners[i].label;
    int ret = p2m_store_live(st, 0, names, n, out, err);
    free(names);
    return ret;
}

int label_list(admin_t *a, json_t **json, admin_table_t *table, char *err)
{
    int ret = -1;
    p2m_store_t *st = NULL;
    p2m_label_owner_t *owners = NULL;
    p2m_live_t *live = NULL;
    size_t n = 0;
    json_t *arr = NULL;

    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_label_list(st, &owners, &n, err) != 0)
        goto Exit;
    live = admin_xmalloc((n + 1) * sizeof(*live));
    if (label_live_fetch(st, owners, n, live, err) != 0)
        goto Exit;
    if (json != NULL && (arr = json_array()) == NULL) {
        p2m_err(err, "cannot build the JSON reply");
        goto Exit;
    }
    for (size_t i = 0; i < n; i++) {
        if (arr != NULL) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "label", owners[i].label, "pod", owners[i].pod, "protocol",
                                  p2m_proto_name(owners[i].proto), "consumers", (json_int_t)(live[i].waiting + live[i].tunnels));
            if (o != NULL && owners[i].nsharers > 0 && json_object_set_new(o, "sharers", sharers_json(&owners[i])) != 0) {
                json_decref(o);
                o = NULL;
            }
            if (json_array_append_new(arr, o) != 0) {
                p2m_err(err, "cannot build the JSON reply");
                goto Exit;
            }
        }
        if (table != NULL) {
            char *sharers = sharers_join(&owners[i], ","), *pods = admin_xmalloc(strlen(owners[i].pod) + strlen(sharers) + 2);
            sprintf(pods, "%s%s%s", owners[i].pod, sharers[0] != '\0' ? "," : "", sharers);
            char consumers[24];
            snprintf(consumers, sizeof(consumers), "%lld", live[i].waiting + live[i].tunnels);
            const char *row[] = {owners[i].label, pods, p2m_proto_name(owners[i].proto), consumers};
            admin_table_add(table, row);
            free(pods);
            free(sharers);
        }
    }
    if (json != NULL) {
        *json = arr;
        arr = NULL;
    }
    ret = 0;
Exit:
    json_decref(arr);
    free(live);
    p2m_store_label_list_free(owners, n);
    p2m_store_free(st);
    return ret;
}

int label_ls(admin_t *a, char *err)
{
    static const char *const headers[] = {"LABEL", "POD", "PROTOCOL", "CONSUMERS"};
    return admin_ls_print(a, label_list, 4, headers, err);
}
