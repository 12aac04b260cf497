/* libFuzzer target for p2m_domain_normalize: a normalized domain is the lower-cased input, at most
 * 253 bytes, made of labels that p2m_label_normalize accepts, and normalizes again to itself. */

#include "fuzz.h"
#include "p2m/config.h"
#include "p2m/err.h"
#include "p2m/label.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    if (s == NULL)
        return 0;

    char out[P2M_DOMAIN_MAX + 1], again[P2M_DOMAIN_MAX + 1], err[P2M_ERR_LEN] = "";
    int rc = p2m_domain_normalize(s, out, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err(err);
        goto Exit;
    }
    size_t ol = strnlen(out, sizeof(out)), sl = strlen(s);
    FUZZ_CHECK(ol >= 1 && ol <= P2M_DOMAIN_MAX && ol == sl);
    for (size_t i = 0; i < sl; i++) {
        char c = s[i];
        FUZZ_CHECK(out[i] == ((c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c));
    }
    /* each dot-separated part is a DNS label */
    for (const char *p = out;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot != NULL ? (size_t)(dot - p) : strlen(p);
        char label[P2M_LABEL_MAX + 1];
        FUZZ_CHECK(p2m_label_normalize(p, len, label, err) == 0);
        if (dot == NULL)
            break;
        p = dot + 1;
    }
    FUZZ_CHECK(p2m_domain_normalize(out, again, err) == 0 && strcmp(out, again) == 0);

Exit:
    free(s);
    return 0;
}
