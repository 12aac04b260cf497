/* libFuzzer target for p2m_register_body_parse (PROTOCOL.md 1.1): it must return 0 or -1, give a
 * known protocol on success and a one-line reason on failure, and parse its own canonical form
 * back to the same protocol. */

#include "p2m/err.h"
#include "p2m/service.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                                                                           \
    do {                                                                                                                           \
        if (!(cond)) {                                                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);                                           \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2m_proto_t proto = (p2m_proto_t)99, again;
    char err[P2M_ERR_LEN] = "";
    int rc = p2m_register_body_parse((const char *)data, size, &proto, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        size_t n = strnlen(err, P2M_ERR_LEN);
        FUZZ_CHECK(n > 0 && n < P2M_ERR_LEN);
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK((unsigned char)err[i] >= 0x20 && (unsigned char)err[i] < 0x7f);
        return 0;
    }
    FUZZ_CHECK(proto == P2M_PROTO_HTTPS || proto == P2M_PROTO_HTTP || proto == P2M_PROTO_TCP);
    char canon[64];
    int n = snprintf(canon, sizeof(canon), "{\"protocol\":\"%s\"}", p2m_proto_name(proto));
    FUZZ_CHECK(p2m_register_body_parse(canon, (size_t)n, &again, err) == 0 && again == proto);
    return 0;
}
