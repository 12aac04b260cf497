/* pipe2me-admin: manages pods, labels, leases, relays, registrars and setup tokens in pipe2me's Redis, and checks a deployment.
 *
 * Every error prints one line `pipe2me-admin: REASON` on stderr and exits with status 2. All
 * input is checked before Redis is contacted, and the store's changes are atomic, so a refused
 * command changes nothing. `check` exits with status 1 when it ran and found problems. With
 * redis.wait_replicas, a change the replicas do not confirm in time exits with status 3: it is on
 * the primary (and may be lost in a failover), which status 2's "nothing changed" would deny. */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p2m/log.h"
#include "p2m/totp.h"

#ifndef P2M_VERSION
#define P2M_VERSION "0.1.0"
#endif

static const char usage_text[] = "Usage: pipe2me-admin [-c|--config FILE] [--json] COMMAND ...\n"
                                 "\n"
                                 "Manages pipe2me's pods, labels, leases, setup tokens and registrars in Redis, and\n"
                                 "checks a deployment.\n"
                                 "\n"
                                 "Commands:\n"
                                 "  pod add ID [--label LABEL]... [--token-reuse none|same-address] [--digits 6|8] [-o FILE]\n"
                                 "          [--service LABEL[:PROTOCOL]=HOST:PORT]...\n"
                                 "                         create a pod and print its provisioning JSON, which holds\n"
                                 "                         the secret (a readable label is generated if none is given);\n"
                                 "                         with --service, it is also the pod's run file\n"
                                 "  pod ls                 list pods with what the relays report now (online,\n"
                                 "                         idle, tunnels, consumers, bytes, last registration)\n"
                                 "  pod series ID          the pod's last hour by minute: tunnels joined, most open\n"
                                 "                         at once, bytes\n"
                                 "  pod show ID            show one pod with its settings (never its secret)\n"
                                 "  pod set ID [--token-reuse none|same-address] [--digits 6|8]\n"
                                 "                         change a pod's settings (at least one); new digits need a new\n"
                                 "                         provisioning file: pod rotate-secret ID -o FILE\n"
                                 "  pod rm ID              remove a pod with its labels, sessions and leases; the labels\n"
                                 "                         it owns go from the pods sharing them too\n"
                                 "  pod disable ID         refuse the pod's registrations, end its sessions and leases\n"
                                 "  pod enable ID          accept the pod again\n"
                                 "  pod rotate-secret ID [-o FILE] [--service LABEL[:PROTOCOL]=HOST:PORT]...\n"
                                 "                         give the pod a new secret and print the new provisioning JSON\n"
                                 "  label add ID LABEL [--protocol http|https|tcp]\n"
                                 "                         give LABEL to pod ID (with the protocol of registrations\n"
                                 "                         that name none: default https)\n"
                                 "  label set LABEL --protocol http|https|tcp\n"
                                 "                         change that protocol\n"
                                 "  label rm LABEL         take LABEL from its pod and the pods sharing it\n"
                                 "  label share LABEL ID   let pod ID serve LABEL beside its owner: consumers go to\n"
                                 "                         the idle pre-connections of all its pods in turn\n"
                                 "  label unshare LABEL ID stop pod ID serving LABEL (its idle pre-connections close)\n"
                                 "  label ls               list labels with their pods (the owner first) and protocols\n"
                                 "  lease ls               list live port leases\n"
                                 "  lease rm PORT          end the lease on PORT\n"
                                 "  relay ls               list live relays: address, ports, started, leases, idle\n"
                                 "                         pre-connections, tunnels and whether they drain\n"
                                 "  relay drain NAME [--force]\n"
                                 "                         give relay NAME no new leases: it serves what it holds,\n"
                                 "                         gives its idle pre-connections back once no consumer is\n"
                                 "                         sent to it, and can be stopped when relay ls shows 0 leases,\n"
                                 "                         idle and tunnels (--force: a relay that is down)\n"
                                 "  relay undrain NAME [--force]\n"
                                 "                         lease on relay NAME again\n"
                                 "  token add [--uses N] [--tunnels M] [--expires DURATION] [--label-prefix P]\n"
                                 "                         make a setup token and print it, once (Redis keeps only its\n"
                                 "                         SHA-256): each use creates one pod with at most M services\n"
                                 "  token ls               list tokens by ID (the hash's first 12 hex digits): uses left,\n"
                                 "                         tunnels, expiry, label prefix, pods created\n"
                                 "  token rm ID            remove a token (by that ID or its full hash)\n"
                                 "  registrar ls           list the live registrars (from their heartbeats): name, URL,\n"
                                 "                         started, serving or draining (and to where), pods_to\n"
                                 "  registrar drain NAME --to URL\n"
                                 "                         send registrar NAME's pods to the registrar at URL (https://):\n"
                                 "                         it answers registrations and certificate requests with 307\n"
                                 "                         to URL within 5 s and keeps serving consumers\n"
                                 "  registrar undrain NAME let registrar NAME take pods again\n"
                                 "  check                  check the deployment, changing nothing; one line per finding,\n"
                                 "                         check=NAME status=ok|warn|fail|skip detail=\"...\", for NAME\n"
                                 "                         config (the file loads), redis (it answers), schema (its\n"
                                 "                         version is this build's), relays (each listed has a fresh\n"
                                 "                         heartbeat), relay_ports (disjoint), ephemeral_ports (outside\n"
                                 "                         this host's unreserved ephemeral ports), ca (readable, in date,\n"
                                 "                         its key mode 0600), cert (covers DOMAIN, *.DOMAIN and\n"
                                 "                         registrar.names, in date), clock (a plausible year) and\n"
                                 "                         clock_skew (within 5 s of Redis's); with --json\n"
                                 "                         {\"ok\": true|false, \"findings\": [{name, status, detail}...]}\n"
                                 "  serve --token-file FILE [--listen HOST:PORT] [--idle DURATION]\n"
                                 "        [--public --cert FILE --key FILE]\n"
                                 "                         serve the web console (default on 127.0.0.1:8893): log in\n"
                                 "                         with the token in FILE (mode 0600 or 0400); /api/pods,\n"
                                 "                         /api/labels and /api/relays answer what ls --json prints\n"
                                 "                         its forms run pod add, disable, enable, rm, rotate-secret\n"
                                 "                         and label add, rm, share, unshare; 5 wrong tokens from an\n"
                                 "                         address in 10 min (20 from all in 1 min) make logins 429\n"
                                 "  help                   show this text\n"
                                 "\n"
                                 "Options (accepted anywhere on the line):\n"
                                 "  -c, --config FILE  configuration file; default $P2M_CONFIG, else\n"
                                 "                     " ADMIN_CONFIG_DEFAULT " (built-in defaults if that is missing)\n"
                                 "      --json         machine-readable output\n"
                                 "  -o, --output FILE  write the provisioning JSON to FILE, created with mode 0600\n"
                                 "                     (an existing FILE is never overwritten)\n"
                                 "      --token-reuse none|same-address\n"
                                 "                     none (default): a pod's one-time password is accepted once\n"
                                 "                     (RFC 6238 5.2); same-address: again within its 30 s step, for\n"
                                 "                     the same label, from the address that used it first, at most\n"
                                 "                     32 times (for clients that send one code several times)\n"
                                 "      --digits 6|8   length of the pod's one-time passwords (default 6)\n"
                                 "      --service LABEL[:PROTOCOL]=HOST:PORT\n"
                                 "                     add \"services\" to the provisioning JSON, making it a file\n"
                                 "                     that runs the pod (pipe2me-pod run --config FILE): LABEL,\n"
                                 "                     one of the pod's own, forwarded to HOST:PORT; PROTOCOL http,\n"
                                 "                     https or tcp (default https); repeatable, at most 32\n"
                                 "      --protocol http|https|tcp\n"
                                 "                     the protocol of a registration without a body (default https)\n"
                                 "      --uses N       token add: pods the token may create, 1-1000000 (default 1)\n"
                                 "      --tunnels M    token add: services per pod, 1-32 (default 4)\n"
                                 "      --expires DURATION\n"
                                 "                     token add: expire after 30s, 10m, 12h, 7d ... (at most\n"
                                 "                     3650d; default never)\n"
                                 "      --label-prefix P\n"
                                 "                     token add: labels of its pods start with P (1-40 of a-z,\n"
                                 "                     0-9, '-'; not starting with '-')\n"
                                 "      --to URL       registrar drain: the https:// URL of the registrar pods go to\n"
                                 "      --force        relay drain, relay undrain: mark a relay that is not live\n"
                                 "      --token-file FILE\n"
                                 "                     serve: the console's token, one line of at least 16 bytes in\n"
                                 "                     a file of mode 0600 or 0400, read once at start\n"
                                 "      --listen HOST:PORT\n"
                                 "                     serve: the address (default 127.0.0.1:8893); one that is not\n"
                                 "                     loopback needs --public\n"
                                 "      --idle DURATION\n"
                                 "                     serve: a session ends when unused this long (default 30m); it\n"
                                 "                     ends 12h after its login in any case\n"
                                 "      --public       serve: allow a --listen address that is not loopback; needs\n"
                                 "                     --cert and --key\n"
                                 "      --cert FILE    serve: the TLS certificate chain (PEM) the console uses\n"
                                 "      --key FILE     serve: its private key (PEM)\n"
                                 "  -h, --help         show this text\n"
                                 "      --version      show the version\n"
                                 "\n"
                                 "Exit status: 0 on success; 2 on any error, reported in one line on stderr, with\n"
                                 "nothing changed. check exits with 0 when every finding is ok or skip, 1 when one is\n"
                                 "warn or fail (a configuration that does not load is such a finding), and 2 on a\n"
                                 "usage error. 3: the change is on the Redis primary but fewer than\n"
                                 "redis.wait_replicas replicas confirmed it in time (reported on stderr).\n";

/* Loads -c FILE or $P2M_CONFIG, which must exist, else the system-wide file if there is one,
 * over the built-in defaults; a->config_file says which. On error a->cfg holds the defaults. */
static int load_config(admin_t *a, char *err)
{
    const char *path = a->config_path;
    p2m_config_defaults(&a->cfg);
    a->config_file = NULL;
    if (path == NULL) {
        path = getenv("P2M_CONFIG");
        if (path != NULL && path[0] != '\0') {
            if (strnlen(path, ADMIN_ARG_MAX + 1) > ADMIN_ARG_MAX)
                return p2m_err(err, "P2M_CONFIG is longer than %d bytes", ADMIN_ARG_MAX);
        } else {
            path = ADMIN_CONFIG_DEFAULT;
            if (access(path, F_OK) != 0 && errno == ENOENT)
                return 0;
        }
    }
    a->config_file = path;
    if (p2m_config_load(path, &a->cfg, err) != 0) {
        p2m_config_defaults(&a->cfg); /* a failed parse may have set part of it */
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int status = 2, totp_ready = 0;
    char err[P2M_ERR_LEN] = "unknown error";
    admin_t a;
    admin_action_t action;
    const admin_command_t *cmd;

    memset(&a, 0, sizeof(a));
    /* Errors reach the user as the one line below; library log lines would only add noise. */
    p2m_log_set_level(P2M_LOG_ERROR);

    if (admin_args_parse(argc, argv, &a, &action, &cmd, err) != 0)
        goto Exit;
    if (action == ADMIN_ACTION_HELP) {
        fputs(usage_text, stdout);
        if (admin_flush_stdout(err) == 0)
            status = 0;
        goto Exit;
    }
    if (action == ADMIN_ACTION_VERSION) {
        printf("pipe2me-admin %s\n", P2M_VERSION);
        if (admin_flush_stdout(err) == 0)
            status = 0;
        goto Exit;
    }
    if (load_config(&a, err) != 0) {
        if (!cmd->own_config)
            goto Exit;
        snprintf(a.config_err, sizeof(a.config_err), "%s", err);
    }
    if (a.cfg.log_level == P2M_LOG_DEBUG)
        p2m_log_set_level(P2M_LOG_DEBUG);
    if (p2m_totp_init(err) != 0)
        goto Exit;
    totp_ready = 1;
    if (cmd->run(&a, err) != 0) {
        if (a.unconfirmed)
            status = 3;
        goto Exit;
    }
    if (admin_flush_stdout(err) != 0)
        goto Exit;
    status = a.problems ? 1 : 0;

Exit:
    if (totp_ready)
        p2m_totp_done();
    if (status == 2 || status == 3) { /* 1 is check's "ran and found problems", said on stdout */
        /* err may quote outside input: escape it so that the reason stays on one line */
        char *line = admin_escape_dup(err);
        fprintf(stderr, "pipe2me-admin: %s\n", line);
        free(line);
    }
    return status;
}
