/* libFuzzer target for p2m_service_body_parse and _ex (PROTOCOL.md 1.1): they must agree, return 0
 * or -1, give a known protocol, 1 to P2M_LEASE_CONNS_MAX connections, a pool target of 0 (absent)
 * to P2M_POOL_TARGET_MAX and direct paths that are empty or canonical on success and a one-line reason on failure, and parse their
 * own canonical form back to the same values. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/service.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2m_proto_t proto = (p2m_proto_t)99;
    unsigned conns = 0;
    p2m_service_body_t b, again;
    char err[P2M_ERR_LEN] = "", err2[P2M_ERR_LEN] = "";
    int rc = p2m_service_body_parse((const char *)data, size, &proto, &conns, err);
    int rc_ex = p2m_service_body_parse_ex((const char *)data, size, &b, err2);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(rc == rc_ex);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        fuzz_check_err_printable(err2);
        return 0;
    }
    FUZZ_CHECK(proto == b.proto && conns == b.conns);
    FUZZ_CHECK(proto == P2M_PROTO_HTTPS || proto == P2M_PROTO_HTTP || proto == P2M_PROTO_TCP);
    FUZZ_CHECK(conns >= 1 && conns <= P2M_LEASE_CONNS_MAX);
    FUZZ_CHECK(b.pool <= P2M_POOL_TARGET_MAX);
    FUZZ_CHECK(strlen(b.direct_lan) <= P2M_DIRECT_ADDR_MAX && strlen(b.direct_public) <= P2M_DIRECT_ADDR_MAX);
    /* a canonical path parses to itself */
    const char *paths[2] = {b.direct_lan, b.direct_public};
    for (int i = 0; i < 2; i++) {
        char canon[P2M_DIRECT_ADDR_MAX + 1];
        if (paths[i][0] != '\0')
            FUZZ_CHECK(p2m_direct_addr_parse(paths[i], canon, NULL, NULL, err) == 0 && strcmp(canon, paths[i]) == 0);
    }
    char body[300];
    int n = snprintf(body, sizeof(body), "{\"protocol\":\"%s\",\"connections\":%u", p2m_proto_name(proto), conns);
    if (b.direct_lan[0] != '\0')
        n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"direct_lan\":\"%s\"", b.direct_lan);
    if (b.direct_public[0] != '\0')
        n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"direct_public\":\"%s\"", b.direct_public);
    if (b.pool != 0)
        n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"pool\":%u", b.pool);
    n += snprintf(body + n, sizeof(body) - (size_t)n, "}");
    FUZZ_CHECK(p2m_service_body_parse_ex(body, (size_t)n, &again, err) == 0 && again.proto == proto && again.conns == conns &&
               strcmp(again.direct_lan, b.direct_lan) == 0 && strcmp(again.direct_public, b.direct_public) == 0 &&
               again.pool == b.pool);
    return 0;
}
