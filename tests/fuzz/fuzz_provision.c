/* libFuzzer target for the pod's provisioning file parser (pod/provision.c: provision_parse): it
 * never crashes or leaks, fails with one printable line, and a document it accepts holds values
 * that pass the same checks again (ID, labels lower-cased, secret 16-64 bytes, https registrar,
 * normalised domain, digits 6 or 8).
 */

#include "fuzz.h"
#include "pod.h"
#include "p2m/err.h"
#include "p2m/label.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static provision_t p;
    char err[P2M_ERR_LEN] = "", e[P2M_ERR_LEN], norm[P2M_DOMAIN_MAX + 1], host[P2M_HOST_MAX + 1];
    char base[P2M_URL_MAX + 1];
    uint16_t port;

    /* data is exactly size bytes with no NUL after it: ASan catches a parser that reads on */
    int rc = provision_parse((const char *)data, size, &p, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        FUZZ_CHECK(p.secret_len == 0);
        return 0;
    }
    FUZZ_CHECK(size <= POD_PROVISION_MAX);
    FUZZ_CHECK(FUZZ_TERMINATED(p.id) && FUZZ_TERMINATED(p.registrar) && FUZZ_TERMINATED(p.domain));
    FUZZ_CHECK(p2m_id_valid(p.id, strlen(p.id), e) == 0);
    FUZZ_CHECK(p.secret_len >= POD_SECRET_MIN && p.secret_len <= POD_SECRET_MAX);
    FUZZ_CHECK(p.nlabels >= 1 && p.nlabels <= POD_LABELS_MAX);
    for (size_t i = 0; i < p.nlabels; i++) {
        char l[P2M_LABEL_MAX + 1];
        FUZZ_CHECK(FUZZ_TERMINATED(p.labels[i]));
        FUZZ_CHECK(p2m_label_normalize(p.labels[i], strlen(p.labels[i]), l, e) == 0 && strcmp(l, p.labels[i]) == 0);
    }
    FUZZ_CHECK(strncmp(p.registrar, "https://", 8) == 0);
    FUZZ_CHECK(pod_registrar_url_parse(p.registrar, base, host, &port, e) == 0 && strcmp(base, p.registrar) == 0);
    FUZZ_CHECK(p2m_domain_normalize(p.domain, norm, e) == 0 && strcmp(norm, p.domain) == 0);
    FUZZ_CHECK(p.digits == 6 || p.digits == 8);
    return 0;
}
