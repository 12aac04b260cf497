/* libFuzzer target for p2m_service_body_parse (PROTOCOL.md 1.1): it must return 0 or -1, give a
 * known protocol and 1 to P2M_LEASE_CONNS_MAX connections on success and a one-line reason on
 * failure, and parse its own canonical form back to the same values. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/service.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2m_proto_t proto = (p2m_proto_t)99, again;
    unsigned conns = 0, conns_again = 0;
    char err[P2M_ERR_LEN] = "";
    int rc = p2m_service_body_parse((const char *)data, size, &proto, &conns, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        return 0;
    }
    FUZZ_CHECK(proto == P2M_PROTO_HTTPS || proto == P2M_PROTO_HTTP || proto == P2M_PROTO_TCP);
    FUZZ_CHECK(conns >= 1 && conns <= P2M_LEASE_CONNS_MAX);
    char canon[80];
    int n = snprintf(canon, sizeof(canon), "{\"protocol\":\"%s\",\"connections\":%u}", p2m_proto_name(proto), conns);
    FUZZ_CHECK(p2m_service_body_parse(canon, (size_t)n, &again, &conns_again, err) == 0 && again == proto && conns_again == conns);
    return 0;
}
