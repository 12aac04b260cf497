/* libFuzzer target for p2m_hostport_parse, p2m_port_parse and p2m_hostport_format: a parsed
 * address has a host in [A-Za-z0-9.:-]{0,255} and a port 1-65535, and formatting it parses back to
 * the same host and port. */

#include "fuzz.h"
#include "p2m/addr.h"
#include "p2m/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_port_parse(const uint8_t *data, size_t size)
{
    uint16_t port = 0;
    int rc = p2m_port_parse((const char *)data, size, &port);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0)
        return;
    unsigned long v = 0;
    FUZZ_CHECK(size >= 1);
    for (size_t i = 0; i < size; i++) {
        FUZZ_CHECK(data[i] >= '0' && data[i] <= '9');
        if (v <= 65535)
            v = v * 10 + (unsigned long)(data[i] - '0');
    }
    FUZZ_CHECK(v >= 1 && v <= 65535 && v == port);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_port_parse(data, size);

    char *s = fuzz_cstr(data, size);
    if (s == NULL)
        return 0;

    p2m_hostport_t hp, back;
    char err[P2M_ERR_LEN] = "", buf[P2M_HOST_MAX + 16];
    int rc = p2m_hostport_parse(s, &hp, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err(err);
        goto Exit;
    }
    size_t hl = strnlen(hp.host, sizeof(hp.host));
    FUZZ_CHECK(hl <= P2M_HOST_MAX);
    for (size_t i = 0; i < hl; i++) {
        char c = hp.host[i];
        FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == ':' ||
                   c == '-');
    }
    FUZZ_CHECK(hp.port >= 1);

    int n = p2m_hostport_format(hp.host, hp.port, buf, sizeof(buf));
    FUZZ_CHECK(n > 0 && (size_t)n == strlen(buf));
    FUZZ_CHECK(p2m_hostport_parse(buf, &back, err) == 0);
    FUZZ_CHECK(strcmp(back.host, hp.host) == 0 && back.port == hp.port);
    /* too small a buffer is refused, never overrun */
    char *tight = malloc((size_t)n);
    FUZZ_CHECK(p2m_hostport_format(hp.host, hp.port, tight, (size_t)n) == -1);
    free(tight);

Exit:
    free(s);
    return 0;
}
