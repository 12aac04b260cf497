#ifndef REGISTRAR_NAMES_H
#define REGISTRAR_NAMES_H

#include <netinet/in.h>
#include <stddef.h>

#include "p2m/config.h"

/* What the registrar answers as itself, beside LABEL.DOMAIN: the names its generated certificate
 * carries and its Host check accepts as the registrar's (docs/OPERATIONS.md, "The registrar's
 * names"). */

#define REGISTRAR_ADDRS_MAX 8

typedef struct {
    /* DOMAIN, *.DOMAIN, then registrar.names: the certificate's DNS names */
    char dns[P2M_NAMES_MAX + 2][P2M_DOMAIN_MAX + 3];
    unsigned ndns;
    /* canonical IP literals: public_address when it is one, every HTTPS or HTTP listener's
     * non-wildcard address, and 127.0.0.1 and ::1 when a listener takes every address */
    char addrs[REGISTRAR_ADDRS_MAX][INET6_ADDRSTRLEN];
    unsigned naddrs;
    /* registrar.names and addrs, for p2m_host_is_own (DOMAIN itself is p2m_host_parse's) */
    const char *own[P2M_NAMES_MAX + REGISTRAR_ADDRS_MAX];
    size_t nown;
} registrar_names_t;

/* Fills *out from cfg. out->own points into *out and into cfg->registrar.names: both must outlive
 * its use, and *out must not be copied. */
void registrar_names_init(const p2m_config_t *cfg, registrar_names_t *out);

#endif
