/* libFuzzer target for p2m_cookie_find and p2m_origin_allowed: a cookie found is within its
 * buffer and made of RFC 6265 cookie-octets only; one that is absent or refused leaves the buffer
 * empty; a refusal is one printable line; the same header with the cookie's pair appended a second
 * time is refused; and an Origin matches an allowed one only when equal to it ignoring case. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/webform.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int cookie_octet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) || (c >= 0x3c && c <= 0x5b) ||
           (c >= 0x5d && c <= 0x7e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[64], err[P2M_ERR_LEN] = "";
    const char *hdr = (const char *)data;
    int rc = p2m_cookie_find(hdr, size, "p2m_console", out, sizeof(out), err);

    FUZZ_CHECK(rc >= -1 && rc <= 1);
    FUZZ_CHECK(FUZZ_TERMINATED(out));
    if (rc == -1)
        fuzz_check_err_printable(err);
    if (rc != 1)
        FUZZ_CHECK(out[0] == '\0');
    if (rc == 1) {
        for (size_t i = 0; out[i] != '\0'; i++)
            FUZZ_CHECK(cookie_octet((unsigned char)out[i]));
        /* a second copy of the cookie makes the header ambiguous */
        if (size + 40 <= P2M_COOKIE_HDR_MAX) {
            char *twice = malloc(size + 40);
            FUZZ_CHECK(twice != NULL);
            memcpy(twice, data, size);
            memcpy(twice + size, ";p2m_console=x", 14);
            FUZZ_CHECK(p2m_cookie_find(twice, size + 14, "p2m_console", out, sizeof(out), err) == -1 && out[0] == '\0');
            free(twice);
        }
    }

    const char *const allowed[] = {"http://127.0.0.1:8893", "https://console.example:443"};
    int m = p2m_origin_allowed(hdr, size, allowed, 2);
    int want = 0;
    for (size_t i = 0; i < 2; i++)
        want |= strlen(allowed[i]) == size && memchr(hdr, '\0', size) == NULL && strncasecmp(hdr, allowed[i], size) == 0;
    FUZZ_CHECK(m == want);
    return 0;
}
