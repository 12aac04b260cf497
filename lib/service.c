#include "p2m/service.h"
#include "p2m/err.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static const char *const names[] = {[P2M_PROTO_HTTPS] = "https", [P2M_PROTO_HTTP] = "http", [P2M_PROTO_TCP] = "tcp"};

const char *p2m_proto_name(p2m_proto_t proto)
{
    return (unsigned)proto < sizeof(names) / sizeof(names[0]) ? names[proto] : "?";
}

int p2m_proto_parse(const char *s, size_t len, p2m_proto_t *proto, char *err)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
            *proto = (p2m_proto_t)i;
            return 0;
        }
    }
    return p2m_err(err, "protocol: expected \"https\", \"http\" or \"tcp\"");
}

void p2m_service_key(const char *label, p2m_proto_t proto, char *out)
{
    if (proto == P2M_PROTO_HTTPS)
        snprintf(out, P2M_SERVICE_MAX + 1, "%.*s", P2M_LABEL_MAX, label);
    else
        snprintf(out, P2M_SERVICE_MAX + 1, "%.*s:%s", P2M_LABEL_MAX, label, p2m_proto_name(proto));
}

int p2m_service_normalize(const char *s, size_t len, char *out, char *err)
{
    const char *colon = memchr(s, ':', len);
    size_t label_len = colon != NULL ? (size_t)(colon - s) : len;
    p2m_proto_t proto = P2M_PROTO_HTTPS;
    char label[P2M_LABEL_MAX + 1];
    if (p2m_label_normalize(s, label_len, label, err) != 0)
        return -1;
    if (colon != NULL) {
        /* https is the bare label: "web:https" would be a second name for the same service. */
        if (p2m_proto_parse(colon + 1, len - label_len - 1, &proto, err) != 0 || proto == P2M_PROTO_HTTPS)
            return p2m_err(err, "service: expected LABEL, LABEL:http or LABEL:tcp");
    }
    p2m_service_key(label, proto, out);
    return 0;
}

int p2m_service_body_parse(const char *body, size_t len, p2m_proto_t *proto, unsigned *conns, char *err)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    *proto = P2M_PROTO_HTTPS;
    *conns = 1;
    if (i == len)
        return 0;
    if (len > P2M_REGISTER_BODY_MAX)
        return p2m_err(err, "body: longer than %d bytes", P2M_REGISTER_BODY_MAX);

    json_error_t jerr;
    /* JSON_REJECT_DUPLICATES: {"protocol":"http","protocol":"https"} is ambiguous, not a choice. */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return p2m_err(err, "body: not JSON (line %d column %d)", jerr.line, jerr.column);
    int ret = -1;
    if (!json_is_object(root)) {
        p2m_err(err, "body: expected a JSON object");
        goto Exit;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "protocol") == 0) {
            if (!json_is_string(value)) {
                p2m_err(err, "protocol: expected \"https\", \"http\" or \"tcp\"");
                goto Exit;
            }
            if (p2m_proto_parse(json_string_value(value), json_string_length(value), proto, err) != 0)
                goto Exit;
        } else if (strcmp(key, "connections") == 0) {
            /* An integer, not 2.0 or "2": a pod that sends something else has a bug worth hearing of. */
            if (!json_is_integer(value) || json_integer_value(value) < 1 || json_integer_value(value) > P2M_LEASE_CONNS_MAX) {
                p2m_err(err, "connections: expected an integer from 1 to %d", P2M_LEASE_CONNS_MAX);
                goto Exit;
            }
            *conns = (unsigned)json_integer_value(value);
        } else {
            /* The key may hold anything: name only its length, never its bytes. */
            p2m_err(err, "body: unknown key (%zu bytes); the keys are \"protocol\" and \"connections\"", strlen(key));
            goto Exit;
        }
    }
    ret = 0;
Exit:
    json_decref(root);
    return ret;
}
