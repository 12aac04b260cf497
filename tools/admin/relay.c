/* pipe2me-admin relay ...: list the relays with what they hold, and drain one (PROTOCOL 3.9): a
 * draining relay gets no new leases, serves what it holds, gives its idle pre-connections back
 * once no consumer is sent to it, and can then be stopped with nothing cut. */
#include "admin.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A count from the heartbeat as the table shows it: "-" when the relay did not publish it. */
static const char *count_str(long long v, char *out, size_t cap)
{
    if (v < 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%lld", v);
    return out;
}

/* "yes" when the operator marked it and the relay has seen the mark, "marked" while it has not (or
 * is down), "no" otherwise. */
static const char *drain_str(const p2m_relay_info_t *ri)
{
    return !ri->draining ? "no" : ri->drain_seen ? "yes" : "marked";
}

int relay_list(admin_t *a, json_t **json, admin_table_t *table, char *err)
{
    int ret = -1;
    p2m_store_t *st = NULL;
    p2m_relay_info_t *relays = NULL;
    size_t n = 0;
    json_t *arr = NULL;

    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_relay_list(st, &relays, &n, err) != 0)
        goto Exit;
    if (json != NULL && (arr = json_array()) == NULL) {
        p2m_err(err, "cannot build the JSON reply");
        goto Exit;
    }
    for (size_t i = 0; i < n; i++) {
        const p2m_relay_info_t *ri = &relays[i];
        if (!ri->live) /* a name left in the set, or a drain mark of a relay that is down */
            continue;
        char started[ADMIN_TIME_LEN], c[4][24];
        char *end;
        long long t = strtoll(ri->started, &end, 10);
        admin_time_iso(end != ri->started && *end == '\0' ? t : -1, started);
        if (arr != NULL) {
            json_t *obj = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:b}", "name", ri->name, "address", ri->address,
                                    "ports", ri->ports, "started", started, "leases", (json_int_t)ri->leases, "idle",
                                    (json_int_t)ri->idle, "tunnels", (json_int_t)ri->tunnels, "waiting", (json_int_t)ri->waiting,
                                    "draining", ri->draining, "drain_seen", ri->drain_seen);
            if (json_array_append_new(arr, obj) != 0) {
                p2m_err(err, "cannot build the JSON reply");
                goto Exit;
            }
        }
        if (table != NULL) {
            const char *row[] = {ri->name,
                                 ri->address,
                                 ri->ports,
                                 started,
                                 count_str(ri->leases, c[0], sizeof(c[0])),
                                 count_str(ri->idle, c[1], sizeof(c[1])),
                                 count_str(ri->tunnels, c[2], sizeof(c[2])),
                                 drain_str(ri)};
            admin_table_add(table, row);
        }
    }
    if (json != NULL) {
        *json = arr;
        arr = NULL;
    }
    ret = 0;
Exit:
    json_decref(arr);
    free(relays);
    p2m_store_free(st);
    return ret;
}

int relay_ls(admin_t *a, char *err)
{
    static const char *const headers[] = {"NAME", "ADDRESS", "PORTS", "STARTED", "LEASES", "IDLE", "TUNNELS", "DRAINING"};
    return admin_ls_print(a, relay_list, 8, headers, err);
}

/* Sets or clears the drain mark of the relay named by the argument. */
static int drain_set(admin_t *a, int draining, char *err)
{
    char name[P2M_LABEL_MAX + 1], q[ADMIN_QUOTE_LEN];
    int changed = 0, ret = -1;
    p2m_store_t *st = NULL;

    /* Relay names are labels (relay.name). */
    if (p2m_label_normalize(a->args[0], strlen(a->args[0]), name, NULL) != 0) {
        p2m_err(err, "invalid relay name %s: expected a relay.name (a DNS label)", admin_quote(a->args[0], q));
        goto Exit;
    }
    if ((st = admin_connect(a, err)) == NULL)
        goto Exit;
    if (p2m_store_relay_drain(st, name, draining, a->force, &changed, err) != 0)
        goto Exit;
    ret = admin_confirm(a, json_pack("{s:b, s:s, s:b, s:b}", "ok", 1, "relay", name, "draining", draining, "changed", changed), err,
                        "relay %s %s%s", name, draining ? "draining" : "not draining", changed ? "" : " (already)");
Exit:
    p2m_store_free(st);
    return ret;
}

int relay_drain(admin_t *a, char *err)
{
    return drain_set(a, 1, err);
}

int relay_undrain(admin_t *a, char *err)
{
    return drain_set(a, 0, err);
}
