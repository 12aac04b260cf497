/* libFuzzer target for admin_args_parse (tools/admin/args.c), pipe2me-admin's command line; the
 * input split on NUL bytes is argv[1..] (fuzz_argv.h). It returns 0 or -1 and refuses with one
 * printable line; a command it accepts has its argument count and options checked against the
 * command's own (a one-word command, check, takes its arguments after its one word), settings
 * (--token-reuse, --digits, --protocol, and token add's --uses, --tunnels, --expires and --label-prefix) hold only
 * their allowed values, registrar drain's --to an https:// URL without trailing slashes that
 * normalises to itself, --service values (at most
 * ADMIN_SERVICES_MAX) go only to the commands that take them,
 * every string it hands back is borrowed from argv, and the canonical command line built from the
 * result (options first, then "--" and the words) parses to the same result. */

#include "admin.h"
#include "fuzz.h"
#include "fuzz_argv.h"
#include "p2m/err.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static admin_t a, b; /* large (the config): keep them off the stack */
    fuzz_argv_t av;
    admin_action_t action, action2;
    const admin_command_t *cmd, *cmd2;
    char err[P2M_ERR_LEN] = "";
    char *canon[8 + 2 * ADMIN_LABELS_MAX + 2 * ADMIN_SERVICES_MAX + 6 + 8 + 2 + 2 + 2 + 1];
    char again[P2M_URL_MAX + 1];
    char uses[24], tunnels[24], expires[24];
    int n = 0;

    if (fuzz_argv_split(&av, "pipe2me-admin", data, size) != 0)
        return 0;
    memset(&a, 0, sizeof(a));
    int rc = admin_args_parse(av.argc, av.argv, &a, &action, &cmd, err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0) {
        fuzz_check_err_printable(err);
        goto Exit;
    }
    FUZZ_CHECK(av.argc <= ADMIN_ARGC_MAX);
    FUZZ_CHECK(action == ADMIN_ACTION_RUN || action == ADMIN_ACTION_HELP || action == ADMIN_ACTION_VERSION);
    if (action != ADMIN_ACTION_RUN) {
        FUZZ_CHECK(cmd == NULL);
        goto Exit;
    }
    FUZZ_CHECK(cmd != NULL && cmd->run != NULL);
    FUZZ_CHECK(a.nargs >= cmd->min_args && a.nargs <= cmd->max_args);
    size_t nwords = cmd->verb != NULL ? 2 : 1;
    FUZZ_CHECK(a.args == av.argv + 1 + nwords);
    FUZZ_CHECK(strcmp(av.argv[1], cmd->group) == 0 && (cmd->verb == NULL || strcmp(av.argv[2], cmd->verb) == 0));
    for (size_t i = 0; i < a.nargs; i++)
        FUZZ_CHECK(fuzz_argv_owns(&av, a.args[i]) && strnlen(a.args[i], ADMIN_ARG_MAX + 1) <= ADMIN_ARG_MAX);
    FUZZ_CHECK(a.nlabels <= ADMIN_LABELS_MAX);
    FUZZ_CHECK(a.nlabels == 0 || (cmd->opts & ADMIN_OPT_LABEL));
    FUZZ_CHECK(a.output == NULL || (cmd->opts & ADMIN_OPT_OUTPUT));
    FUZZ_CHECK(a.json == 0 || a.json == 1);
    FUZZ_CHECK(a.config_path == NULL || (fuzz_argv_owns(&av, a.config_path) && a.config_path[0] != '\0'));
    FUZZ_CHECK(a.output == NULL || (fuzz_argv_owns(&av, a.output) && a.output[0] != '\0'));
    for (size_t i = 0; i < a.nlabels; i++)
        FUZZ_CHECK(fuzz_argv_owns(&av, a.labels[i]) && a.labels[i][0] != '\0');
    FUZZ_CHECK(a.nservices <= ADMIN_SERVICES_MAX);
    FUZZ_CHECK(a.nservices == 0 || (cmd->opts & ADMIN_OPT_SERVICE));
    for (size_t i = 0; i < a.nservices; i++)
        FUZZ_CHECK(fuzz_argv_owns(&av, a.services[i]) && a.services[i][0] != '\0');
    FUZZ_CHECK(!a.have_token_reuse || (cmd->opts & ADMIN_OPT_TOKEN_REUSE));
    FUZZ_CHECK(a.digits == 0 || (cmd->opts & ADMIN_OPT_DIGITS));
    FUZZ_CHECK(!a.have_proto || (cmd->opts & ADMIN_OPT_PROTOCOL));
    FUZZ_CHECK(a.token_reuse == P2M_TOKEN_REUSE_NONE || (a.have_token_reuse && a.token_reuse == P2M_TOKEN_REUSE_SAME_ADDRESS));
    FUZZ_CHECK(a.digits == 0 || a.digits == 6 || a.digits == 8);
    FUZZ_CHECK(a.proto == P2M_PROTO_HTTPS || (a.have_proto && (a.proto == P2M_PROTO_HTTP || a.proto == P2M_PROTO_TCP)));
    FUZZ_CHECK(a.uses == 0 || ((cmd->opts & ADMIN_OPT_USES) && a.uses >= 1 && a.uses <= P2M_TOKEN_USES_MAX));
    FUZZ_CHECK(a.tunnels == 0 || ((cmd->opts & ADMIN_OPT_TUNNELS) && a.tunnels >= 1 && a.tunnels <= P2M_TOKEN_TUNNELS_MAX));
    FUZZ_CHECK(a.expires == 0 || ((cmd->opts & ADMIN_OPT_EXPIRES) && a.expires >= 1 && a.expires <= P2M_TOKEN_EXPIRES_MAX));
    FUZZ_CHECK(a.label_prefix == NULL || ((cmd->opts & ADMIN_OPT_LABEL_PREFIX) && fuzz_argv_owns(&av, a.label_prefix) &&
                                          p2m_token_label_prefix_check(a.label_prefix, strlen(a.label_prefix), err) == 0));
    if (a.drain_to[0] != '\0') {
        size_t tl = strlen(a.drain_to);
        FUZZ_CHECK((cmd->opts & ADMIN_OPT_TO) && tl > 8 && strncmp(a.drain_to, "https://", 8) == 0 && a.drain_to[tl - 1] != '/');
        FUZZ_CHECK(p2m_https_base_normalize(a.drain_to, again, err) == 0 && strcmp(again, a.drain_to) == 0);
        for (size_t i = 0; i < tl; i++)
            FUZZ_CHECK(a.drain_to[i] > ' ' && a.drain_to[i] <= '~' && strchr("@?#\"\\", a.drain_to[i]) == NULL);
    }
    /* a command that needs a setting got one */
    FUZZ_CHECK(cmd->need == 0 || ((cmd->need & ADMIN_OPT_TOKEN_REUSE) && a.have_token_reuse) ||
               ((cmd->need & ADMIN_OPT_DIGITS) && a.digits != 0) || ((cmd->need & ADMIN_OPT_PROTOCOL) && a.have_proto) ||
               ((cmd->need & ADMIN_OPT_TO) && a.drain_to[0] != '\0'));

    canon[n++] = "pipe2me-admin";
    if (a.config_path != NULL) {
        canon[n++] = "--config";
        canon[n++] = (char *)a.config_path;
    }
    if (a.json)
        canon[n++] = "--json";
    if (a.output != NULL) {
        canon[n++] = "-o";
        canon[n++] = (char *)a.output;
    }
    for (size_t i = 0; i < a.nlabels; i++) {
        canon[n++] = "--label";
        canon[n++] = (char *)a.labels[i];
    }
    for (size_t i = 0; i < a.nservices; i++) {
        canon[n++] = "--service";
        canon[n++] = (char *)a.services[i];
    }
    if (a.have_token_reuse) {
        canon[n++] = "--token-reuse";
        canon[n++] = (char *)p2m_token_reuse_name(a.token_reuse);
    }
    if (a.digits != 0) {
        canon[n++] = "--digits";
        canon[n++] = a.digits == 8 ? "8" : "6";
    }
    if (a.have_proto) {
        canon[n++] = "--protocol";
        canon[n++] = (char *)p2m_proto_name(a.proto);
    }
    if (a.uses != 0) {
        snprintf(uses, sizeof(uses), "%lld", a.uses);
        canon[n++] = "--uses";
        canon[n++] = uses;
    }
    if (a.tunnels != 0) {
        snprintf(tunnels, sizeof(tunnels), "--tunnels=%lld", a.tunnels);
        canon[n++] = tunnels;
    }
    if (a.expires != 0) {
        snprintf(expires, sizeof(expires), "%llds", a.expires);
        canon[n++] = "--expires";
        canon[n++] = expires;
    }
    if (a.label_prefix != NULL) {
        canon[n++] = "--label-prefix";
        canon[n++] = (char *)a.label_prefix;
    }
    if (a.drain_to[0] != '\0') {
        canon[n++] = "--to";
        canon[n++] = a.drain_to;
    }
    canon[n++] = "--";
    canon[n++] = (char *)cmd->group;
    if (cmd->verb != NULL)
        canon[n++] = (char *)cmd->verb;
    for (size_t i = 0; i < a.nargs; i++)
        canon[n++] = a.args[i];
    canon[n] = NULL;
    memset(&b, 0, sizeof(b));
    err[0] = '\0';
    FUZZ_CHECK(admin_args_parse(n, canon, &b, &action2, &cmd2, err) == 0);
    FUZZ_CHECK(action2 == ADMIN_ACTION_RUN && cmd2 == cmd);
    FUZZ_CHECK(b.config_path == a.config_path && b.output == a.output && b.json == a.json && b.nlabels == a.nlabels &&
               b.nargs == a.nargs);
    FUZZ_CHECK(b.have_token_reuse == a.have_token_reuse && b.token_reuse == a.token_reuse && b.digits == a.digits &&
               b.have_proto == a.have_proto && b.proto == a.proto);
    FUZZ_CHECK(b.uses == a.uses && b.tunnels == a.tunnels && b.expires == a.expires && b.label_prefix == a.label_prefix);
    FUZZ_CHECK(strcmp(b.drain_to, a.drain_to) == 0);
    for (size_t i = 0; i < a.nlabels; i++)
        FUZZ_CHECK(b.labels[i] == a.labels[i]);
    FUZZ_CHECK(b.nservices == a.nservices);
    for (size_t i = 0; i < a.nservices; i++)
        FUZZ_CHECK(b.services[i] == a.services[i]);
    for (size_t i = 0; i < a.nargs; i++)
        FUZZ_CHECK(b.args[i] == a.args[i]);
Exit:
    fuzz_argv_free(&av);
    return 0;
}
