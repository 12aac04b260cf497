/* The registrar's own names and addresses: one list for its certificate and its Host check, so
 * that a name is never in one and not the other. */
#include "names.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static void add_addr(registrar_names_t *out, const char *ip)
{
    for (unsigned i = 0; i < out->naddrs; i++)
        if (strcmp(out->addrs[i], ip) == 0)
            return;
    if (out->naddrs < REGISTRAR_ADDRS_MAX)
        snprintf(out->addrs[out->naddrs++], sizeof(out->addrs[0]), "%s", ip);
}

/* host as a canonical IP literal (IPv4-mapped IPv6 as IPv4), or "" when it is a name. */
static void canonical_ip(const char *host, char *out, size_t cap)
{
    unsigned char a[16];
    out[0] = '\0';
    if (inet_pton(AF_INET, host, a) == 1) {
        inet_ntop(AF_INET, a, out, (socklen_t)cap);
    } else if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, v4mapped, 12) == 0)
            inet_ntop(AF_INET, a + 12, out, (socklen_t)cap);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)cap);
    }
}

/* A listener on every address is reached on loopback at least, by both families: a client on the
 * same host (a TAAS client, a health check) names it 127.0.0.1 or [::1]. Its other addresses are
 * not known here; an operator lists the names it is reached by in registrar.names. */
static void add_listener(registrar_names_t *out, const p2m_hostport_t *hp)
{
    char ip[INET6_ADDRSTRLEN];
    canonical_ip(hp->host, ip, sizeof(ip));
    if (hp->host[0] == '\0' || strcmp(ip, "0.0.0.0") == 0 || strcmp(ip, "::") == 0) {
        add_addr(out, "127.0.0.1");
        add_addr(out, "::1");
    } else if (ip[0] != '\0') {
        add_addr(out, ip);
    }
}

void registrar_names_init(const p2m_config_t *cfg, registrar_names_t *out)
{
    const p2m_registrar_config_t *rc = &cfg->registrar;
    char ip[INET6_ADDRSTRLEN];
    memset(out, 0, sizeof(*out));
    snprintf(out->dns[out->ndns++], sizeof(out->dns[0]), "%s", cfg->domain);
    snprintf(out->dns[out->ndns++], sizeof(out->dns[0]), "*.%s", cfg->domain);
    for (unsigned i = 0; i < rc->nnames; i++) {
        snprintf(out->dns[out->ndns++], sizeof(out->dns[0]), "%s", rc->names[i]);
        out->own[out->nown++] = rc->names[i];
    }
    canonical_ip(cfg->public_address, ip, sizeof(ip));
    if (ip[0] != '\0')
        add_addr(out, ip);
    add_listener(out, &rc->listen);
    if (rc->http_enabled)
        add_listener(out, &rc->http);
    if (rc->proxy_enabled)
        add_listener(out, &rc->proxy_listen);
    for (unsigned i = 0; i < out->naddrs; i++)
        out->own[out->nown++] = out->addrs[i];
}
