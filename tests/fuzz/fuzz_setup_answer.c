/* libFuzzer target for the pod's reading of the registrar's answer to POST /setup
 * (pod/sets.c: pod_setup_config), asked for an https and an http service on two local ports: it
 * never crashes or leaks, refuses with one printable line, and an answer it accepts becomes a run
 * file that is JSON, names the set LABEL.DOMAIN (a label and a domain that pass their checks again),
 * and gives each of the two services its forward address, in the order asked for. */

#include "fuzz.h"
#include "pod.h"
#include "p2m/err.h"
#include "p2m/label.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pod_args_t a;
    char err[P2M_ERR_LEN] = "", fqdn[P2M_DOMAIN_MAX + 1] = "", e[P2M_ERR_LEN], norm[P2M_DOMAIN_MAX + 1];

    memset(&a, 0, sizeof(a));
    a.protos[0] = P2M_PROTO_HTTPS;
    a.protos[1] = P2M_PROTO_HTTP;
    a.nprotos = 2;
    a.local_ports[0] = 20102;
    a.local_ports[1] = 20103;
    a.nports = 2;
    /* data is exactly size bytes with no NUL after it: ASan catches a parser that reads on */
    char *text = pod_setup_config((const char *)data, size, &a, "/sets/x", size % 2 ? "/ca.pem" : NULL, fqdn, err);
    if (text == NULL) {
        fuzz_check_err_printable(err);
        return 0;
    }
    FUZZ_CHECK(FUZZ_TERMINATED(fqdn));
    FUZZ_CHECK(p2m_domain_normalize(fqdn, norm, e) == 0 && strcmp(norm, fqdn) == 0);
    const char *dot = strchr(fqdn, '.');
    FUZZ_CHECK(dot != NULL && (size_t)(dot - fqdn) <= P2M_LABEL_MAX);
    const char *f1 = strstr(text, "\"forward\": \"127.0.0.1:20102\""), *f2 = strstr(text, "\"forward\": \"127.0.0.1:20103\"");
    FUZZ_CHECK(f1 != NULL && f2 != NULL && f1 < f2);
    FUZZ_CHECK(strstr(text, "\"state_dir\": \"/sets/x/state\"") != NULL);
    explicit_bzero(text, strlen(text));
    free(text);
    return 0;
}
