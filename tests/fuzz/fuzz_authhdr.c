/* libFuzzer target for p2m_authhdr_parse: on success the fields satisfy authhdr.h (an ID that
 * p2m_id_valid accepts, a digits-only token, a bearer in its alphabet), the input held no NUL
 * and fitted P2M_AUTHHDR_MAX, and the canonical rendering of the result parses to the same. */

#include "fuzz.h"
#include "p2m/authhdr.h"
#include "p2m/err.h"
#include "p2m/label.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_bearer_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._~+/=-", c) != NULL;
}

static void check_fields(const p2m_auth_t *a)
{
    char err[P2M_ERR_LEN];
    if (a->scheme == P2M_AUTH_TOTP) {
        size_t idl = strnlen(a->id, sizeof(a->id)), tl = strnlen(a->token, sizeof(a->token));
        FUZZ_CHECK(idl < sizeof(a->id) && tl < sizeof(a->token));
        FUZZ_CHECK(p2m_id_valid(a->id, idl, err) == 0);
        FUZZ_CHECK(tl >= 6 && tl <= P2M_TOKEN_MAX); /* authhdr.h: 6 to 8 digits */
        for (size_t i = 0; i < tl; i++)
            FUZZ_CHECK(a->token[i] >= '0' && a->token[i] <= '9');
    } else {
        FUZZ_CHECK(a->scheme == P2M_AUTH_BEARER);
        size_t bl = strnlen(a->bearer, sizeof(a->bearer));
        FUZZ_CHECK(bl >= 1 && bl <= P2M_BEARER_MAX);
        for (size_t i = 0; i < bl; i++)
            FUZZ_CHECK(is_bearer_char(a->bearer[i]));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2m_auth_t a, b;
    char err[P2M_ERR_LEN] = "", canon[P2M_AUTHHDR_MAX + 1];

    int rc = p2m_authhdr_parse((const char *)data, size, &a, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err(err);
        return 0;
    }
    FUZZ_CHECK(size <= P2M_AUTHHDR_MAX);
    FUZZ_CHECK(memchr(data, '\0', size) == NULL);
    check_fields(&a);

    int n;
    if (a.scheme == P2M_AUTH_TOTP) {
        /* both fields were quoted in the input */
        char q[P2M_ID_MAX + 3];
        snprintf(q, sizeof(q), "\"%s\"", a.id);
        FUZZ_CHECK(memmem(data, size, q, strlen(q)) != NULL);
        snprintf(q, sizeof(q), "\"%s\"", a.token);
        FUZZ_CHECK(memmem(data, size, q, strlen(q)) != NULL);
        n = snprintf(canon, sizeof(canon), "TOTP username=\"%s\", response=\"%s\"", a.id, a.token);
    } else {
        FUZZ_CHECK(memmem(data, size, a.bearer, strlen(a.bearer)) != NULL);
        n = snprintf(canon, sizeof(canon), "Bearer %s", a.bearer);
    }
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(canon));
    FUZZ_CHECK(p2m_authhdr_parse(canon, (size_t)n, &b, err) == 0);
    FUZZ_CHECK(a.scheme == b.scheme);
    if (a.scheme == P2M_AUTH_TOTP)
        FUZZ_CHECK(strcmp(a.id, b.id) == 0 && strcmp(a.token, b.token) == 0);
    else
        FUZZ_CHECK(strcmp(a.bearer, b.bearer) == 0);
    return 0;
}
