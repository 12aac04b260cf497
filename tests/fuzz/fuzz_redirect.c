/* libFuzzer target for the pod's check of a registrar's redirect (pod/redirect.c:
 * pod_redirect_check). The first byte picks the registrar's host and the domain; the rest, in an
 * allocation of exactly its size, is the Location. An accepted URL is copied whole, starts with
 * https:// in some case, holds no '@' before its path, no NUL, blank, control byte or '#', and its
 * host is the registrar's, the domain, or ends in "." and the domain; a refusal is one printable
 * line without the input's bytes. */

#include "fuzz.h"
#include "redirect.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const hosts[][2] = {
        {"reg.pipe2me.example", "pipe2me.example"},
        {"::1", "pipe2me.example"},
        {"127.0.0.5", ""},
        {"registrar.example.net", "p.example"},
    };
    char out[POD_REDIRECT_URL_MAX + 1], err[P2M_ERR_LEN];
    if (size < 1)
        return 0;
    const char *reg_host = hosts[data[0] % 4][0], *domain = hosts[data[0] % 4][1];
    size_t len = size - 1;
    char *url = malloc(len == 0 ? 1 : len);
    FUZZ_CHECK(url != NULL);
    memcpy(url, data + 1, len);
    err[0] = '\0';
    int rc = pod_redirect_check(url, len, reg_host, domain, out, sizeof(out), err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc == 0) {
        FUZZ_CHECK(len <= POD_REDIRECT_URL_MAX && strlen(out) == len && memcmp(out, url, len) == 0);
        FUZZ_CHECK(len >= 8 && strncasecmp(out, "https://", 8) == 0);
        size_t e = 8 + strcspn(out + 8, "/?#");
        FUZZ_CHECK(memchr(out + 8, '@', e - 8) == NULL);
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK((unsigned char)out[i] > 0x20 && (unsigned char)out[i] < 0x7f && out[i] != '#');
        /* the host: brackets off, port off */
        const char *h = out + 8;
        size_t hl;
        if (*h == '[') {
            const char *c = memchr(h, ']', e - 8);
            FUZZ_CHECK(c != NULL);
            h++;
            hl = (size_t)(c - h);
            FUZZ_CHECK(hl == strlen(reg_host) && strncasecmp(h, reg_host, hl) == 0);
        } else {
            hl = strcspn(h, ":/?");
            if (hl > e - 8)
                hl = e - 8;
            size_t dl = strlen(domain);
            int own = hl == strlen(reg_host) && strncasecmp(h, reg_host, hl) == 0;
            int dom = dl > 0 && hl == dl && strncasecmp(h, domain, dl) == 0;
            int under = dl > 0 && hl > dl + 1 && h[hl - dl - 1] == '.' && strncasecmp(h + hl - dl, domain, dl) == 0;
            FUZZ_CHECK(own || dom || under);
        }
    } else {
        fuzz_check_err_printable(err);
    }
    free(url);
    return 0;
}
