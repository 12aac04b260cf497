/* libFuzzer target for p2m_setup_body_parse (PROTOCOL.md 1.6): it must return 0 or -1 and give a
 * one-line printable reason on failure; on success hold 1 to P2M_SETUP_PROTOS_MAX distinct known
 * protocols and an empty or normalized label, and its canonical body (p2m_setup_body_format) must
 * parse back to the same request. The label rule and generator run on what was accepted. */

#include "fuzz.h"
#include "p2m/err.h"
#include "p2m/setup.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    p2m_setup_req_t req, again;
    char err[P2M_ERR_LEN] = "";
    int rc = p2m_setup_body_parse((const char *)data, size, &req, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        return 0;
    }
    FUZZ_CHECK(req.nprotos >= 1 && req.nprotos <= P2M_SETUP_PROTOS_MAX);
    for (size_t i = 0; i < req.nprotos; i++) {
        FUZZ_CHECK(req.protos[i] == P2M_PROTO_HTTPS || req.protos[i] == P2M_PROTO_HTTP || req.protos[i] == P2M_PROTO_TCP);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(req.protos[j] != req.protos[i]);
    }
    FUZZ_CHECK(FUZZ_TERMINATED(req.label));
    if (req.label[0] != '\0') {
        char norm[P2M_LABEL_MAX + 1];
        FUZZ_CHECK(p2m_label_normalize(req.label, strlen(req.label), norm, err) == 0 && strcmp(norm, req.label) == 0);
        /* Without a prefix every valid label is allowed; with itself as prefix the bare label is not. */
        FUZZ_CHECK(p2m_setup_label_allowed(req.label, NULL, err) == 0);
        err[0] = '\0';
        FUZZ_CHECK(p2m_setup_label_allowed(req.label, req.label, err) == -1);
        fuzz_check_err_printable(err);
        char gen[P2M_LABEL_MAX + 1];
        FUZZ_CHECK(p2m_setup_label_generate(req.label, gen, sizeof(gen)) == 0);
        FUZZ_CHECK(p2m_label_normalize(gen, strlen(gen), norm, err) == 0 && strcmp(norm, gen) == 0);
        if (strlen(req.label) <= P2M_SETUP_PREFIX_MAX)
            FUZZ_CHECK(p2m_setup_label_allowed(gen, req.label, err) == 0);
    }

    char canon[P2M_SETUP_BODY_MAX];
    int n = p2m_setup_body_format(&req, canon, sizeof(canon));
    FUZZ_CHECK(n > 0 && (size_t)n == strlen(canon));
    FUZZ_CHECK(p2m_setup_body_parse(canon, (size_t)n, &again, err) == 0);
    FUZZ_CHECK(again.nprotos == req.nprotos && memcmp(again.protos, req.protos, req.nprotos * sizeof(req.protos[0])) == 0);
    FUZZ_CHECK(strcmp(again.label, req.label) == 0);
    return 0;
}
