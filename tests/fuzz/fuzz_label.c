/* libFuzzer target for p2m_label_normalize: the result must agree with a reference predicate
 * written from label.h, be the lower-cased input, and normalize again to itself. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/label.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1-63 bytes of [A-Za-z0-9-], no leading or trailing hyphen */
static int reference_label(const uint8_t *s, size_t len)
{
    if (len == 0 || len > P2M_LABEL_MAX || s[0] == '-' || s[len - 1] == '-')
        return 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[P2M_LABEL_MAX + 1], again[P2M_LABEL_MAX + 1], err[P2M_ERR_LEN] = "";

    int rc = p2m_label_normalize((const char *)data, size, out, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK((rc == 0) == reference_label(data, size));
    if (rc != 0) {
        fuzz_check_err(err);
        return 0;
    }
    FUZZ_CHECK(strnlen(out, sizeof(out)) == size);
    for (size_t i = 0; i < size; i++) {
        uint8_t c = data[i];
        FUZZ_CHECK(out[i] == ((c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c));
    }
    FUZZ_CHECK(p2m_label_normalize(out, size, again, err) == 0);
    FUZZ_CHECK(strcmp(out, again) == 0);
    /* every label is also a valid pod ID */
    FUZZ_CHECK(p2m_id_valid(out, size, err) == 0);
    return 0;
}
