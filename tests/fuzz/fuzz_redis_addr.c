/* libFuzzer target for p2m_redis_addr_parse: a unix address has a path of 1-107 bytes that the
 * input spelled after "unix:", a TCP address has a port 1-65535. */

#include "fuzz.h"
#include "p2m/addr.h"
#include "p2m/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    if (s == NULL)
        return 0;

    p2m_redis_addr_t a;
    char err[P2M_ERR_LEN] = "";
    int rc = p2m_redis_addr_parse(s, &a, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err(err);
        goto Exit;
    }
    if (a.is_unix) {
        size_t pl = strnlen(a.path, sizeof(a.path));
        FUZZ_CHECK(pl >= 1 && pl <= P2M_PATH_MAX);
        FUZZ_CHECK(strncmp(s, "unix:", 5) == 0 && strcmp(s + 5, a.path) == 0);
    } else {
        FUZZ_CHECK(a.tcp.port >= 1);
        FUZZ_CHECK(strnlen(a.tcp.host, sizeof(a.tcp.host)) <= P2M_HOST_MAX);
        /* the TCP form is exactly what p2m_hostport_parse accepts */
        p2m_hostport_t hp;
        FUZZ_CHECK(p2m_hostport_parse(s, &hp, err) == 0);
        FUZZ_CHECK(strcmp(hp.host, a.tcp.host) == 0 && hp.port == a.tcp.port);
    }

Exit:
    free(s);
    return 0;
}
