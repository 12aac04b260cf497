/* libFuzzer target for p2m_register_body_parse (PROTOCOL.md 1.1): it must return 0 or -1, give a
 * known protocol on success and a one-line reason on failure, and parse its own canonical form
 * back to the same protocol. */

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
    char err[P2M_ERR_LEN] = "";
    int rc = p2m_register_body_parse((const char *)data, size, &proto, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        return 0;
    }
    FUZZ_CHECK(proto == P2M_PROTO_HTTPS || proto == P2M_PROTO_HTTP || proto == P2M_PROTO_TCP);
    char canon[64];
    int n = snprintf(canon, sizeof(canon), "{\"protocol\":\"%s\"}", p2m_proto_name(proto));
    FUZZ_CHECK(p2m_register_body_parse(canon, (size_t)n, &again, err) == 0 && again == proto);
    return 0;
}
