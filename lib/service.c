#include "p2m/service.h"
#include "p2m/err.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
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

int p2m_direct_addr_public(const char *host)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1)
        return !(a[0] == 0 || a[0] == 10 || a[0] == 127 || (a[0] == 100 && (a[1] & 0xc0) == 64) || (a[0] == 169 && a[1] == 254) ||
                 (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168));
    if (inet_pton(AF_INET6, host, a) != 1)
        return 0;
    static const unsigned char loopback[16] = {[15] = 1};
    return !(memcmp(a, loopback, 16) == 0 || (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80));
}

int p2m_direct_addr_parse(const char *s, char *out, char *host, unsigned *port, char *err)
{
    size_t len = s != NULL ? strlen(s) : 0;
    char addr[INET6_ADDRSTRLEN + 1], canon[INET6_ADDRSTRLEN];
    const char *p;
    unsigned char a[16];
    int v6;
    /* Bounded before anything is copied: the longest form is "[" V6 "]:65535". */
    if (len == 0 || len > P2M_DIRECT_ADDR_MAX)
        return p2m_err(err, "expected ADDR:PORT, at most %d bytes", P2M_DIRECT_ADDR_MAX);
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(addr))
            return p2m_err(err, "expected [IPv6]:PORT");
        memcpy(addr, s + 1, (size_t)(close - s - 1));
        addr[close - s - 1] = '\0';
        p = close + 2;
        if (inet_pton(AF_INET6, addr, a) != 1)
            return p2m_err(err, "expected an IPv6 literal in brackets");
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        v6 = memcmp(a, v4mapped, 12) != 0;
        if (inet_ntop(v6 ? AF_INET6 : AF_INET, v6 ? a : a + 12, canon, sizeof(canon)) == NULL)
            return p2m_err(err, "expected an IPv6 literal in brackets");
    } else {
        const char *colon = strchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(addr))
            return p2m_err(err, "expected IPv4:PORT or [IPv6]:PORT");
        memcpy(addr, s, (size_t)(colon - s));
        addr[colon - s] = '\0';
        p = colon + 1;
        /* inet_pton takes only dotted quads here (no "1", "0x7f.1" or names): what a pod means. */
        if (inet_pton(AF_INET, addr, a) != 1)
            return p2m_err(err, "expected an IPv4 literal or a bracketed IPv6 literal, not a name");
        v6 = 0;
        memcpy(canon, addr, strlen(addr) + 1);
    }
    /* One host: a pod cannot listen on, nor a registrar check, the unspecified address (a
     * connect to it reaches the registrar's own machine), a broadcast or a multicast group. */
    const unsigned char *b = v6 ? a : (s[0] == '[' ? a + 12 : a);
    static const unsigned char zero[16];
    if (v6 ? memcmp(b, zero, 16) == 0 || b[0] == 0xff
           : memcmp(b, zero, 4) == 0 || (b[0] & 0xf0) == 0xe0 || (b[0] == 0xff && b[1] == 0xff && b[2] == 0xff && b[3] == 0xff))
        return p2m_err(err, "not the address of one host (unspecified, broadcast or multicast)");
    size_t plen = strlen(p);
    unsigned long v = 0;
    if (plen == 0 || plen > 5 || p[0] == '0' || strspn(p, "0123456789") != plen)
        return p2m_err(err, "expected a port from 1 to 65535");
    for (size_t i = 0; i < plen; i++)
        v = v * 10 + (unsigned long)(p[i] - '0');
    if (v > 65535)
        return p2m_err(err, "expected a port from 1 to 65535");
    if (out != NULL)
        snprintf(out, P2M_DIRECT_ADDR_MAX + 1, v6 ? "[%s]:%lu" : "%s:%lu", canon, v);
    if (host != NULL)
        memcpy(host, canon, strlen(canon) + 1);
    if (port != NULL)
        *port = (unsigned)v;
    return 0;
}

int p2m_service_body_parse(const char *body, size_t len, p2m_proto_t *proto, unsigned *conns, char *err)
{
    p2m_service_body_t b;
    if (p2m_service_body_parse_ex(body, len, &b, err) != 0)
        return -1;
    *proto = b.proto;
    *conns = b.conns;
    return 0;
}

int p2m_service_body_parse_ex(const char *body, size_t len, p2m_service_body_t *out, char *err)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    memset(out, 0, sizeof(*out));
    out->proto = P2M_PROTO_HTTPS;
    out->conns = 1;
    p2m_proto_t *proto = &out->proto;
    unsigned *conns = &out->conns;
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
        } else if (strcmp(key, "pool") == 0) {
            if (!json_is_integer(value) || json_integer_value(value) < 1 || json_integer_value(value) > P2M_POOL_TARGET_MAX) {
                p2m_err(err, "pool: expected an integer from 1 to %d", P2M_POOL_TARGET_MAX);
                goto Exit;
            }
            out->pool = (unsigned)json_integer_value(value);
        } else if (strcmp(key, "direct_lan") == 0 || strcmp(key, "direct_public") == 0) {
            char aerr[P2M_ERR_LEN];
            char *dst = key[7] == 'l' ? out->direct_lan : out->direct_public;
            /* json_string_value stops at an embedded NUL: such a string is refused, not cut. */
            if (!json_is_string(value) || strlen(json_string_value(value)) != json_string_length(value)) {
                p2m_err(err, "%s: expected a string ADDR:PORT", key);
                goto Exit;
            }
            if (p2m_direct_addr_parse(json_string_value(value), dst, NULL, NULL, aerr) != 0) {
                p2m_err(err, "%s: %s", key, aerr);
                goto Exit;
            }
        } else {
            /* The key may hold anything: name only its length, never its bytes. */
            p2m_err(err,
                    "body: unknown key (%zu bytes); the keys are \"protocol\", \"connections\", \"direct_lan\", "
                    "\"direct_public\" and \"pool\"",
                    strlen(key));
            goto Exit;
        }
    }
    ret = 0;
Exit:
    json_decref(root);
    return ret;
}
