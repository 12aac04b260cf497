/* libFuzzer target for `pipe2me-pod run --config FILE` (pod_args_parse in pod/provision.c): the
 * input is FILE's text, written to a private temp dir where "secret" is a valid secret file and
 * "provision.json" a valid provisioning file (inputs name them by path: the corpus uses the token
 * @DIR, replaced with the directory). FILE is written with mode 0600, so that an input holding
 * "secret" (a run file that is its own provisioning file) is read as such.
 *
 * It returns 0 or -1 and refuses with one line that never shows the files' secret and leaves no
 * secret in *a; a file it accepts loads again with pod_run_load(), each service with a label, a
 * forward address, a registrar and the secret, values within pod.h's bounds (direct paths and
 * source as address literals) and a name of its own. */

#include "fuzz.h"
#include "pod.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_SECRET "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U"

static char dir[4096], cfg_path[4200], secret_path[4200], prov_path[4200];

static void put(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd) != 0) {
        perror(path);
        abort();
    }
}

static void cleanup(void)
{
    unlink(cfg_path);
    unlink(secret_path);
    unlink(prov_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/p2m-fuzz-podcfg-XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror(dir);
        abort();
    }
    snprintf(cfg_path, sizeof(cfg_path), "%s/pod.json", dir);
    snprintf(secret_path, sizeof(secret_path), "%s/secret", dir);
    snprintf(prov_path, sizeof(prov_path), "%s/provision.json", dir);
    static const char prov[] = "{\"id\": \"pod-1\", \"secret\": \"" FILE_SECRET "\", \"labels\": [\"web\", \"api\"], "
                               "\"registrar\": \"https://reg.example.net:8443\", \"domain\": \"example.net\"}\n";
    put(secret_path, FILE_SECRET "\n", strlen(FILE_SECRET) + 1);
    put(prov_path, prov, strlen(prov));
    atexit(cleanup);
    return 0;
}

/* data with every "@DIR" replaced by the temp dir; NULL when out of memory. */
static char *expand(const uint8_t *data, size_t size, size_t *len)
{
    size_t dl = strlen(dir), n = 0;
    char *out = malloc(size * (dl > 4 ? dl / 4 + 1 : 1) + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < size;) {
        if (i + 4 <= size && memcmp(data + i, "@DIR", 4) == 0) {
            memcpy(out + n, dir, dl);
            n += dl;
            i += 4;
        } else {
            out[n++] = (char)data[i++];
        }
    }
    out[n] = '\0';
    *len = n;
    return out;
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pod_args_t a;
    char err[P2M_ERR_LEN] = "";
    size_t len;
    if (size > 16384)
        return 0;
    char *text = expand(data, size, &len);
    if (text == NULL)
        return 0;
    put(cfg_path, text, len);
    int spelled = strcasestr(text, "MFRGGZDF") != NULL;
    free(text);
    char *argv[] = {"pipe2me-pod", "run", "--config", cfg_path, NULL};
    int rc = pod_args_parse(4, argv, &a, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err(err);
        FUZZ_CHECK(spelled || strcasestr(err, "MFRGGZDF") == NULL);
        FUZZ_CHECK(a.secret_len == 0 && all_zero(a.secret, sizeof(a.secret)));
        return 0;
    }
    FUZZ_CHECK(a.cmd == POD_CMD_RUN);
    /* What the running pod reads, at start and on SIGHUP: the same file, so the same verdict. */
    pod_args_t *svcs = NULL;
    size_t n = 0;
    FUZZ_CHECK(pod_run_load(&a, &svcs, &n, err) == 0);
    FUZZ_CHECK(n >= 1 && n <= POD_RUN_SERVICES_MAX);
    for (size_t i = 0; i < n; i++) {
        const pod_args_t *s = &svcs[i];
        FUZZ_CHECK(s->cmd == POD_CMD_RUN);
        FUZZ_CHECK(FUZZ_TERMINATED(s->registrar) && FUZZ_TERMINATED(s->id) && FUZZ_TERMINATED(s->label) &&
                   FUZZ_TERMINATED(s->domain) && FUZZ_TERMINATED(s->cacert) && FUZZ_TERMINATED(s->state_dir) &&
                   FUZZ_TERMINATED(s->alpn) && FUZZ_TERMINATED(s->forward.host));
        FUZZ_CHECK(s->registrar[0] != '\0' && s->id[0] != '\0' && s->label[0] != '\0' && s->have_forward && s->forward.port > 0);
        FUZZ_CHECK(s->secret_len > 0 && s->secret_len <= POD_SECRET_MAX);
        FUZZ_CHECK(s->pool >= 1 && s->pool <= s->pool_max && s->pool_max <= POD_POOL_MAX);
        FUZZ_CHECK(s->drain_timeout <= POD_DRAIN_MAX);
        FUZZ_CHECK(s->digits == 6 || s->digits == 8);
        /* Direct paths and source: canonical address literals, the public path only with the LAN one. */
        FUZZ_CHECK(FUZZ_TERMINATED(s->source) && FUZZ_TERMINATED(s->direct_lan.host) && FUZZ_TERMINATED(s->direct_public.host));
        FUZZ_CHECK(s->direct_public.host[0] == '\0' || s->direct_lan.host[0] != '\0');
        FUZZ_CHECK(s->direct_lan.host[0] == '\0' || s->direct_lan.port > 0);
        FUZZ_CHECK(s->direct_public.host[0] == '\0' || s->direct_public.port > 0);
        if (s->source[0] != '\0') {
            char src[P2M_HOST_MAX + 1];
            FUZZ_CHECK(pod_source_parse(s->source, src, err) == 0 && strcmp(src, s->source) == 0);
        }
        FUZZ_CHECK(strcmp(s->source, svcs[0].source) == 0); /* pod-wide */
        /* Service names are unique: each has its own DIR/NAME. */
        char name[POD_SERVICE_NAME_MAX + 1], other[POD_SERVICE_NAME_MAX + 1];
        pod_service_name(s, name, sizeof(name));
        for (size_t j = 0; j < i; j++) {
            pod_service_name(&svcs[j], other, sizeof(other));
            FUZZ_CHECK(strcmp(name, other) != 0);
        }
    }
    pod_run_free(svcs, n);
    pod_args_wipe(&a);
    return 0;
}
