/* libFuzzer target for p2m_form_parse and p2m_form_get: on success there are at most
 * P2M_FORM_FIELDS_MAX fields, each name 1..P2M_FORM_KEY_MAX bytes of [A-Za-z0-9_.-], each value
 * within P2M_FORM_VALUE_MAX without NUL or a control byte but TAB, CR and LF, value_len its
 * length; re-encoding every field (%XX for each byte) parses back to the same fields. On failure
 * the reason is one printable line and no field is left. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/webform.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2m_form_t f, again;
    char err[P2M_ERR_LEN] = "";
    const char *v;
    int rc = p2m_form_parse((const char *)data, size, &f, err);

    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        FUZZ_CHECK(f.n == 0);
        return 0;
    }
    FUZZ_CHECK(f.n <= P2M_FORM_FIELDS_MAX);
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < f.n; i++) {
        size_t kl = strlen(f.f[i].key);
        FUZZ_CHECK(kl >= 1 && kl <= P2M_FORM_KEY_MAX);
        for (size_t j = 0; j < kl; j++)
            FUZZ_CHECK(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", f.f[i].key[j]) != NULL);
        FUZZ_CHECK(strlen(f.f[i].value) == f.f[i].value_len && f.f[i].value_len <= P2M_FORM_VALUE_MAX);
        for (size_t j = 0; j < f.f[i].value_len; j++) {
            unsigned char c = (unsigned char)f.f[i].value[j];
            FUZZ_CHECK((c >= 0x20 && c != 0x7f) || c == '\t' || c == '\r' || c == '\n');
        }
        cap += kl + 3 * f.f[i].value_len + 2;
        /* get agrees with the list: one copy is found, two are refused */
        size_t copies = 0;
        for (size_t j = 0; j < f.n; j++)
            copies += strcmp(f.f[j].key, f.f[i].key) == 0;
        int grc = p2m_form_get(&f, f.f[i].key, &v, err);
        FUZZ_CHECK(copies == 1 ? grc == 0 && v == f.f[i].value : grc == -1 && v == NULL);
    }
    char *enc = malloc(cap);
    FUZZ_CHECK(enc != NULL);
    for (size_t i = 0; i < f.n; i++) {
        len += (size_t)snprintf(enc + len, cap - len, "%s%s=", i ? "&" : "", f.f[i].key);
        for (size_t j = 0; j < f.f[i].value_len; j++)
            len += (size_t)snprintf(enc + len, cap - len, "%%%02X", (unsigned char)f.f[i].value[j]);
    }
    /* %XX triples the value, which may take it over the body limit: only compare when it fits */
    if (len <= P2M_FORM_BODY_MAX) {
        FUZZ_CHECK(p2m_form_parse(enc, len, &again, err) == 0 && again.n == f.n);
        for (size_t i = 0; i < f.n; i++)
            FUZZ_CHECK(strcmp(again.f[i].key, f.f[i].key) == 0 && again.f[i].value_len == f.f[i].value_len &&
                       memcmp(again.f[i].value, f.f[i].value, f.f[i].value_len) == 0);
        p2m_form_dispose(&again);
    }
    free(enc);
    p2m_form_dispose(&f);
    FUZZ_CHECK(f.n == 0);
    return 0;
}
