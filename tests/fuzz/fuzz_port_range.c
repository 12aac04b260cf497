/* libFuzzer target for p2m_port_range_parse: a parsed range has 1 <= lo <= hi, and "LO-HI" built
 * from it parses to the same range. */

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

    p2m_port_range_t r, back;
    char err[P2M_ERR_LEN] = "", buf[32];
    int rc = p2m_port_range_parse(s, &r, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err(err);
        goto Exit;
    }
    FUZZ_CHECK(r.lo >= 1 && r.lo <= r.hi);
    /* only digits and at most one hyphen were accepted (s stops at the first NUL of data) */
    size_t hyphens = 0, sl = strlen(s);
    FUZZ_CHECK(sl >= 1);
    for (size_t i = 0; i < sl; i++) {
        FUZZ_CHECK((s[i] >= '0' && s[i] <= '9') || s[i] == '-');
        hyphens += s[i] == '-';
    }
    FUZZ_CHECK(hyphens <= 1);
    snprintf(buf, sizeof(buf), "%u-%u", (unsigned)r.lo, (unsigned)r.hi);
    FUZZ_CHECK(p2m_port_range_parse(buf, &back, err) == 0);
    FUZZ_CHECK(back.lo == r.lo && back.hi == r.hi);

Exit:
    free(s);
    return 0;
}
