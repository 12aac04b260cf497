/* libFuzzer target for p2m_tsig_key_parse: a refusal is one printable line that quotes no input
 * (so never the secret) and leaves the key zeroed; an accepted key has a valid name, one of the
 * four algorithms and a base64 secret, and writing it back in tsig-keygen's form parses to the
 * same key. */

#include "fuzz.h"
#include "p2m/dnsupd.h"
#include "p2m/err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2m_tsig_key_t key, back;
    char err[P2M_ERR_LEN] = "";
    /* an exact copy, so that ASan sees any read past size */
    char *in = malloc(size ? size : 1);
    FUZZ_CHECK(in != NULL);
    memcpy(in, data, size);

    int rc = p2m_tsig_key_parse(in, size, &key, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        FUZZ_CHECK(strncmp(err, "tsig key: ", 10) == 0);
        static const p2m_tsig_key_t zero;
        FUZZ_CHECK(memcmp(&key, &zero, sizeof(key)) == 0);
        goto Exit;
    }
    FUZZ_CHECK(FUZZ_TERMINATED(key.name) && FUZZ_TERMINATED(key.algorithm) && FUZZ_TERMINATED(key.secret));
    size_t nl = strlen(key.name), sl = strlen(key.secret);
    FUZZ_CHECK(nl >= 1 && nl <= P2M_DNS_NAME_MAX && key.name[nl - 1] != '.');
    FUZZ_CHECK(strcmp(key.algorithm, "hmac-sha1") == 0 || strcmp(key.algorithm, "hmac-sha256") == 0 ||
               strcmp(key.algorithm, "hmac-sha384") == 0 || strcmp(key.algorithm, "hmac-sha512") == 0);
    FUZZ_CHECK(sl >= 4 && sl % 4 == 0 && sl <= P2M_TSIG_SECRET_MAX);
    FUZZ_CHECK(strspn(key.secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") == sl);

    char buf[P2M_DNS_NAME_MAX + P2M_TSIG_SECRET_MAX + 128];
    int n =
        snprintf(buf, sizeof(buf), "key \"%s\" {\n\talgorithm %s;\n\tsecret \"%s\";\n};\n", key.name, key.algorithm, key.secret);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(buf));
    FUZZ_CHECK(p2m_tsig_key_parse(buf, (size_t)n, &back, err) == 0);
    FUZZ_CHECK(memcmp(&key, &back, sizeof(key)) == 0);

Exit:
    free(in);
    return 0;
}
