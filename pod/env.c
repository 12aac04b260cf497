/* pipe2me-pod env: the pod's settings as shell assignments, for `eval "$(pipe2me-pod env ...)"`.
 * Every value is single-quoted; the secret is never printed. */
#include "pod.h"

#include <stdio.h>
#include <string.h>

int env_quote(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    if (cap < 3)
        return -1;
    out[n++] = '\'';
    for (; *s != '\0'; s++) {
        if (*s == '\'') {
            if (n + 4 >= cap)
                return -1;
            memcpy(out + n, "'\\''", 4);
            n += 4;
        } else {
            if (n + 1 >= cap)
                return -1;
            out[n++] = *s;
        }
    }
    if (n + 2 > cap)
        return -1;
    out[n++] = '\'';
    out[n] = '\0';
    return (int)n;
}

int env_assign(const char *name, const char *value)
{
    char q[4 * POD_PATH_MAX + 8];
    if (env_quote(value, q, sizeof(q)) < 0) {
        fprintf(stderr, "pipe2me-pod: %s: value too long\n", name);
        return -1;
    }
    printf("%s=%s\n", name, q);
    return 0;
}

int env_command(const pod_args_t *a)
{
    char url[P2M_LABEL_MAX + P2M_DOMAIN_MAX + 32], fwd[P2M_HOST_MAX + 16], pool[16], pool_max[16];
    if (a->domain[0] == '\0') {
        fprintf(stderr, "pipe2me-pod: env needs --domain DOMAIN: the registrar URL's host %s is not a domain\n", a->reg_host);
        return 2;
    }
    /* Consumers reach the label on the registrar's HTTPS port. */
    if (a->reg_port != 0 && a->reg_port != 443)
        snprintf(url, sizeof(url), "https://%s.%s:%u", a->label, a->domain, (unsigned)a->reg_port);
    else
        snprintf(url, sizeof(url), "https://%s.%s", a->label, a->domain);
    snprintf(pool, sizeof(pool), "%u", a->pool);
    snprintf(pool_max, sizeof(pool_max), "%u", a->pool_max);
    int bad = 0;
    bad |= env_assign("P2M_ID", a->id);
    bad |= env_assign("P2M_LABEL", a->label);
    bad |= env_assign("P2M_DOMAIN", a->domain);
    bad |= env_assign("P2M_URL", url);
    bad |= env_assign("P2M_REGISTRAR", a->registrar);
    bad |= env_assign("P2M_POOL", pool);
    bad |= env_assign("P2M_POOL_MAX", pool_max);
    if (a->have_forward) {
        p2m_hostport_format(a->forward.host, a->forward.port, fwd, sizeof(fwd));
        bad |= env_assign("P2M_FORWARD", fwd);
    }
    if (a->state_dir[0] != '\0')
        bad |= env_assign("P2M_STATE_DIR", a->state_dir);
    return bad ? 2 : 0;
}
