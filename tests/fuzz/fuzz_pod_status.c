/* libFuzzer target for pod_status_parse (pod/provision.c), which reads back DIR/status.json for
 * `pipe2me-pod status` (a file in a directory others may be able to write): it never crashes or
 * leaks, refuses with one printable line, gives a process ID 1..2^31-1 and NUL-terminated strings
 * that fit their fields, and the document written back from a result (as status.c lays it out)
 * parses to the same result. */

#include "fuzz.h"
#include "p2m/err.h"
#include "pod.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pod_status_t st, again;
    char err[P2M_ERR_LEN] = "";

    /* data is exactly size bytes with no NUL after it: ASan catches a parser that reads on */
    int rc = pod_status_parse((const char *)data, size, &st, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        return 0;
    }
    FUZZ_CHECK(st.pid >= 1 && st.pid <= 0x7fffffff);
    FUZZ_CHECK(FUZZ_TERMINATED(st.state) && FUZZ_TERMINATED(st.id) && FUZZ_TERMINATED(st.label) && FUZZ_TERMINATED(st.forward) &&
               FUZZ_TERMINATED(st.registrar_state) && FUZZ_TERMINATED(st.relay_state) && FUZZ_TERMINATED(st.local_state) &&
               FUZZ_TERMINATED(st.registrar_error) && FUZZ_TERMINATED(st.relay_error) && FUZZ_TERMINATED(st.proxy));

    /* JSON integers are signed 64-bit: every counter fits below 2^63 */
    json_t *doc = json_pack(
        "{sIsssssssssIsIs{sIsIsIsIsIsIsIsIsI}s{sIsIsI}s{sIsI}s{sIsI}s{ssssss}s{ssss}ss}", "pid", (json_int_t)st.pid, "state",
        st.state, "id", st.id, "label", st.label, "forward", st.forward, "updated", (json_int_t)st.updated, "started",
        (json_int_t)st.started, "pool", "target", (json_int_t)st.pool_target, "floor", (json_int_t)st.pool_floor, "ceiling",
        (json_int_t)st.pool_ceiling, "idle", (json_int_t)st.pool_idle, "connecting", (json_int_t)st.pool_connecting, "registering",
        (json_int_t)st.pool_registering, "joined", (json_int_t)st.pool_joined, "waiting", (json_int_t)st.consumers_waiting,
        "waited", (json_int_t)st.consumers_waited, "tunnels", "active", (json_int_t)st.tunnels_active, "total",
        (json_int_t)st.tunnels_total, "failed", (json_int_t)st.tunnels_failed, "registrations", "ok", (json_int_t)st.registrations,
        "failed", (json_int_t)st.registration_failures, "bytes", "in", (json_int_t)st.bytes_in, "out", (json_int_t)st.bytes_out,
        "health", "registrar", st.registrar_state, "relay", st.relay_state, "local", st.local_state, "errors", "registrar",
        st.registrar_error, "relay", st.relay_error, "proxy", st.proxy);
    FUZZ_CHECK(doc != NULL); /* jansson read the strings, so they are UTF-8 without NUL */
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    FUZZ_CHECK(text != NULL);
    FUZZ_CHECK(pod_status_parse(text, strlen(text), &again, err) == 0);
    free(text);
    FUZZ_CHECK(memcmp(&st, &again, sizeof(st)) == 0);
    return 0;
}
