/* libFuzzer target for p2m_id_valid: the result must agree with a reference predicate written
 * from label.h (1-64 bytes of [A-Za-z0-9._-], starting with a letter or digit). */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/label.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_alnum(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static int reference_id(const uint8_t *s, size_t len)
{
    if (len == 0 || len > P2M_ID_MAX || !is_alnum(s[0]))
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[P2M_ERR_LEN] = "";
    int rc = p2m_id_valid((const char *)data, size, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK((rc == 0) == reference_id(data, size));
    if (rc != 0) {
        fuzz_check_err(err);
        return 0;
    }
    /* a valid ID never holds the bytes that would break out of a quoted header value or a Redis key */
    FUZZ_CHECK(memchr(data, '"', size) == NULL && memchr(data, ':', size) == NULL && memchr(data, ' ', size) == NULL);
    return 0;
}
