/* pipe2me-admin's command line: see admin_args_parse() in admin.h. */
#include "admin.h"

#include <string.h>

static const admin_command_t commands[] = {
    {"pod", "add", 1, 1, ADMIN_OPT_LABEL | ADMIN_OPT_OUTPUT, pod_add, "ID [--label LABEL]... [-o FILE]"},
    {"pod", "ls", 0, 0, 0, pod_ls, ""},
    {"pod", "show", 1, 1, 0, pod_show, "ID"},
    {"pod", "rm", 1, 1, 0, pod_rm, "ID"},
    {"pod", "disable", 1, 1, 0, pod_disable, "ID"},
    {"pod", "enable", 1, 1, 0, pod_enable, "ID"},
    {"pod", "rotate-secret", 1, 1, ADMIN_OPT_OUTPUT, pod_rotate_secret, "ID [-o FILE]"},
    {"label", "add", 2, 2, 0, label_add, "ID LABEL"},
    {"label", "rm", 1, 1, 0, label_rm, "LABEL"},
    {"label", "ls", 0, 0, 0, label_ls, ""},
    {"lease", "ls", 0, 0, 0, lease_ls, ""},
    {"lease", "rm", 1, 1, 0, lease_rm, "PORT"},
};

/* Matches arg against a short (may be NULL) and a long option name. A long option may carry
 * its value as --name=VALUE, which is returned in *inline_value. */
static int option_is(const char *arg, const char *shortname, const char *longname, const char **inline_value)
{
    *inline_value = NULL;
    if (shortname != NULL && strcmp(arg, shortname) == 0)
        return 1;
    size_t n = strlen(longname);
    if (strncmp(arg, longname, n) != 0)
        return 0;
    if (arg[n] == '\0')
        return 1;
    if (arg[n] == '=') {
        *inline_value = arg + n + 1;
        return 1;
    }
    return 0;
}

/* Takes the value of option name: inline (--name=VALUE) or the next argv entry. */
static int option_value(int argc, char **argv, int *i, const char *name, const char *inline_value, const char **out, char *err)
{
    if (inline_value == NULL) {
        if (*i + 1 >= argc)
            return p2m_err(err, "option %s needs an argument", name);
        inline_value = argv[++*i];
    }
    if (inline_value[0] == '\0')
        return p2m_err(err, "option %s: empty argument", name);
    *out = inline_value;
    return 0;
}

/* Splits argv into options (anywhere on the line, until "--") and words, which it moves to the
 * front of argv[1..]: the command words, then the command's arguments. */
static int parse_args(int argc, char **argv, admin_t *a, char ***words, size_t *nwords, admin_action_t *action, char *err)
{
    char q[ADMIN_QUOTE_LEN];
    size_t n = 0;
    int opts_done = 0;

    *action = ADMIN_ACTION_RUN;
    if (argc > ADMIN_ARGC_MAX)
        return p2m_err(err, "too many arguments (at most %d)", ADMIN_ARGC_MAX);
    for (int i = 1; i < argc; i++) {
        if (strnlen(argv[i], ADMIN_ARG_MAX + 1) > ADMIN_ARG_MAX)
            return p2m_err(err, "argument %d is longer than %d bytes", i, ADMIN_ARG_MAX);
    }

    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        const char *val;
        if (opts_done || arg[0] != '-' || arg[1] == '\0') {
            argv[1 + n++] = arg; /* never overtakes i: safe in place */
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            opts_done = 1;
        } else if (option_is(arg, "-c", "--config", &val)) {
            if (a->config_path != NULL)
                return p2m_err(err, "option --config given twice");
            if (option_value(argc, argv, &i, "--config", val, &a->config_path, err) != 0)
                return -1;
        } else if (option_is(arg, "-o", "--output", &val)) {
            if (a->output != NULL)
                return p2m_err(err, "option --output given twice");
            if (option_value(argc, argv, &i, "--output", val, &a->output, err) != 0)
                return -1;
        } else if (option_is(arg, NULL, "--label", &val)) {
            if (a->nlabels == ADMIN_LABELS_MAX)
                return p2m_err(err, "too many --label options (at most %d)", ADMIN_LABELS_MAX);
            if (option_value(argc, argv, &i, "--label", val, &a->labels[a->nlabels], err) != 0)
                return -1;
            a->nlabels++;
        } else if (strcmp(arg, "--json") == 0) {
            a->json = 1;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            *action = ADMIN_ACTION_HELP;
        } else if (strcmp(arg, "--version") == 0) {
            if (*action == ADMIN_ACTION_RUN)
                *action = ADMIN_ACTION_VERSION;
        } else {
            return p2m_err(err, "unknown option %s (see pipe2me-admin --help)", admin_quote(arg, q));
        }
    }
    *words = argv + 1;
    *nwords = n;
    return 0;
}

/* Finds the command named by the first two words and checks its argument count and options. */
static const admin_command_t *find_command(admin_t *a, char **words, size_t nwords, char *err)
{
    char q[ADMIN_QUOTE_LEN];
    const admin_command_t *cmd = NULL;
    int group_known = 0;

    if (nwords == 0) {
        p2m_err(err, "missing command (see pipe2me-admin --help)");
        return NULL;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(words[0], commands[i].group) != 0)
            continue;
        group_known = 1;
        if (nwords >= 2 && strcmp(words[1], commands[i].verb) == 0) {
            cmd = &commands[i];
            break;
        }
    }
    if (!group_known) {
        p2m_err(err, "unknown command %s (see pipe2me-admin --help)", admin_quote(words[0], q));
        return NULL;
    }
    if (cmd == NULL) {
        if (nwords < 2)
            p2m_err(err, "%s: missing subcommand (see pipe2me-admin --help)", words[0]);
        else
            p2m_err(err, "%s: unknown subcommand %s (see pipe2me-admin --help)", words[0], admin_quote(words[1], q));
        return NULL;
    }

    size_t nargs = nwords - 2;
    if (nargs < cmd->min_args || nargs > cmd->max_args) {
        p2m_err(err, "%s %s: %s (usage: pipe2me-admin %s %s%s%s)", cmd->group, cmd->verb,
                nargs < cmd->min_args ? "missing argument" : "too many arguments", cmd->group, cmd->verb,
                cmd->args_usage[0] != '\0' ? " " : "", cmd->args_usage);
        return NULL;
    }
    if (a->nlabels > 0 && !(cmd->opts & ADMIN_OPT_LABEL)) {
        p2m_err(err, "%s %s: option --label does not apply", cmd->group, cmd->verb);
        return NULL;
    }
    if (a->output != NULL && !(cmd->opts & ADMIN_OPT_OUTPUT)) {
        p2m_err(err, "%s %s: option --output does not apply", cmd->group, cmd->verb);
        return NULL;
    }
    a->args = words + 2;
    a->nargs = nargs;
    return cmd;
}

int admin_args_parse(int argc, char **argv, admin_t *a, admin_action_t *action, const admin_command_t **cmd, char *err)
{
    char **words = NULL;
    size_t nwords = 0;

    *cmd = NULL;
    if (parse_args(argc, argv, a, &words, &nwords, action, err) != 0)
        return -1;
    if (*action == ADMIN_ACTION_RUN && nwords > 0 && strcmp(words[0], "help") == 0)
        *action = ADMIN_ACTION_HELP;
    if (*action != ADMIN_ACTION_RUN)
        return 0;
    return (*cmd = find_command(a, words, nwords, err)) == NULL ? -1 : 0;
}
