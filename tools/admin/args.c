/* pipe2me-admin's command line: see admin_args_parse() in admin.h. */
#include "admin.h"

#include <stdio.h>
#include <string.h>

#include "p2m/token.h"

#define POD_SETTINGS (ADMIN_OPT_TOKEN_REUSE | ADMIN_OPT_DIGITS)

static const admin_command_t commands[] = {
    {"pod", "add", 1, 1, ADMIN_OPT_LABEL | ADMIN_OPT_OUTPUT | ADMIN_OPT_SERVICE | POD_SETTINGS, 0, pod_add,
     "ID [--label LABEL]... [--token-reuse none|same-address] [--digits 6|8] [-o FILE] [--service LABEL[:PROTOCOL]=HOST:PORT]..."},
    {"pod", "ls", 0, 0, 0, 0, pod_ls, ""},
    {"pod", "show", 1, 1, 0, 0, pod_show, "ID"},
    {"pod", "series", 1, 1, 0, 0, pod_series, "ID"},
    {"pod", "set", 1, 1, POD_SETTINGS, POD_SETTINGS, pod_set, "ID [--token-reuse none|same-address] [--digits 6|8]"},
    {"pod", "rm", 1, 1, 0, 0, pod_rm, "ID"},
    {"pod", "disable", 1, 1, 0, 0, pod_disable, "ID"},
    {"pod", "enable", 1, 1, 0, 0, pod_enable, "ID"},
    {"pod", "rotate-secret", 1, 1, ADMIN_OPT_OUTPUT | ADMIN_OPT_SERVICE, 0, pod_rotate_secret,
     "ID [-o FILE] [--service LABEL[:PROTOCOL]=HOST:PORT]..."},
    {"label", "add", 2, 2, ADMIN_OPT_PROTOCOL, 0, label_add, "ID LABEL [--protocol http|https|tcp]"},
    {"label", "set", 1, 1, ADMIN_OPT_PROTOCOL, ADMIN_OPT_PROTOCOL, label_set, "LABEL --protocol http|https|tcp"},
    {"label", "rm", 1, 1, 0, 0, label_rm, "LABEL"},
    {"label", "share", 2, 2, 0, 0, label_share, "LABEL ID"},
    {"label", "unshare", 2, 2, 0, 0, label_unshare, "LABEL ID"},
    {"label", "ls", 0, 0, 0, 0, label_ls, ""},
    {"lease", "ls", 0, 0, 0, 0, lease_ls, ""},
    {"lease", "rm", 1, 1, 0, 0, lease_rm, "PORT"},
    {"relay", "ls", 0, 0, 0, 0, relay_ls, ""},
    {"relay", "drain", 1, 1, ADMIN_OPT_FORCE, 0, relay_drain, "NAME [--force]"},
    {"relay", "undrain", 1, 1, ADMIN_OPT_FORCE, 0, relay_undrain, "NAME [--force]"},
    {"token", "add", 0, 0, ADMIN_OPT_USES | ADMIN_OPT_TUNNELS | ADMIN_OPT_EXPIRES | ADMIN_OPT_LABEL_PREFIX, 0, token_add,
     "[--uses N] [--tunnels M] [--expires DURATION] [--label-prefix P]"},
    {"token", "ls", 0, 0, 0, 0, token_ls, ""},
    {"token", "rm", 1, 1, 0, 0, token_rm, "ID"},
    {"registrar", "ls", 0, 0, 0, 0, registrar_ls, ""},
    {"registrar", "drain", 1, 1, ADMIN_OPT_TO, ADMIN_OPT_TO, registrar_drain, "NAME --to URL"},
    {"registrar", "undrain", 1, 1, 0, 0, registrar_undrain, "NAME"},
    {"check", NULL, 0, 0, 0, 0, check_run, "", 1},
    {"serve", NULL, 0, 0, ADMIN_OPT_SERVE, 0, console_serve,
     "--token-file FILE [--listen HOST:PORT] [--idle DURATION] [--public --cert FILE --key FILE]"},
};

/* The options that name a setting, with the values they take as the errors spell them. */
static const struct {
    unsigned opt;
    const char *name, *values;
} setting_opts[] = {
    {ADMIN_OPT_TOKEN_REUSE, "--token-reuse", "none or same-address"},
    {ADMIN_OPT_DIGITS, "--digits", "6 or 8"},
    {ADMIN_OPT_PROTOCOL, "--protocol", "http, https or tcp"},
    {ADMIN_OPT_USES, "--uses", "a number from 1 to 1000000"},
    {ADMIN_OPT_TUNNELS, "--tunnels", "a number from 1 to 32"},
    {ADMIN_OPT_EXPIRES, "--expires", "a duration such as 30s, 10m, 12h or 7d, at most 3650d"},
    {ADMIN_OPT_LABEL_PREFIX, "--label-prefix", "1 to 40 of a-z, 0-9 and '-', not starting with '-'"},
    {ADMIN_OPT_TO, "--to", "an https:// URL (no user info, query or fragment)"},
};
_Static_assert(P2M_TOKEN_USES_MAX == 1000000 && P2M_TOKEN_TUNNELS_MAX == 32 && P2M_TOKEN_LABEL_PREFIX_MAX == 40,
               "the messages above spell the bounds");

/* Parses a decimal number from 1 to max, exactly: no sign, space or leading zero. Returns it, or
 * -1. */
static long long number_parse(const char *v, size_t len, long long max)
{
    long long n = 0;
    if (len == 0 || len > 10 || v[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (v[i] - '0');
    }
    return n <= max ? n : -1;
}

/* Parses a duration: a number and one unit, s, m, h or d ("30s", "12h"), at most
 * P2M_TOKEN_EXPIRES_MAX seconds. Returns the seconds, or -1. */
static long long duration_parse(const char *v)
{
    static const struct {
        char unit;
        long long secs;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    size_t len = strlen(v);
    if (len < 2)
        return -1;
    for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
        if (v[len - 1] != units[k].unit)
            continue;
        long long n = number_parse(v, len - 1, P2M_TOKEN_EXPIRES_MAX / units[k].secs);
        return n < 0 ? -1 : n * units[k].secs;
    }
    return -1;
}

/* Parses the value of setting option opt into a. Exact spellings only: "08", " 8" or "TCP" are
 * refused, so that what is stored is what the documentation says. */
static int setting_parse(admin_t *a, unsigned opt, const char *v)
{
    char e[P2M_ERR_LEN];
    switch (opt) {
    case ADMIN_OPT_TOKEN_REUSE:
        return p2m_token_reuse_parse(v, &a->token_reuse);
    case ADMIN_OPT_DIGITS:
        if (strcmp(v, "6") != 0 && strcmp(v, "8") != 0)
            return -1;
        a->digits = (unsigned)(v[0] - '0');
        return 0;
    case ADMIN_OPT_USES:
        return (a->uses = number_parse(v, strlen(v), P2M_TOKEN_USES_MAX)) > 0 ? 0 : -1;
    case ADMIN_OPT_TUNNELS:
        return (a->tunnels = number_parse(v, strlen(v), P2M_TOKEN_TUNNELS_MAX)) > 0 ? 0 : -1;
    case ADMIN_OPT_EXPIRES:
        return (a->expires = duration_parse(v)) > 0 ? 0 : -1;
    case ADMIN_OPT_LABEL_PREFIX:
        if (p2m_token_label_prefix_check(v, strlen(v), e) != 0)
            return -1;
        a->label_prefix = v;
        return 0;
    case ADMIN_OPT_TO:
        return p2m_https_base_normalize(v, a->drain_to, e);
    default:
        return p2m_proto_parse(v, strlen(v), &a->proto, e);
    }
}

/* Whether setting option opt was given. */
static int setting_given(const admin_t *a, unsigned opt)
{
    switch (opt) {
    case ADMIN_OPT_TOKEN_REUSE:
        return a->have_token_reuse;
    case ADMIN_OPT_DIGITS:
        return a->digits != 0;
    case ADMIN_OPT_USES:
        return a->uses > 0;
    case ADMIN_OPT_TUNNELS:
        return a->tunnels > 0;
    case ADMIN_OPT_EXPIRES:
        return a->expires > 0;
    case ADMIN_OPT_LABEL_PREFIX:
        return a->label_prefix != NULL;
    case ADMIN_OPT_TO:
        return a->drain_to[0] != '\0';
    default:
        return a->have_proto;
    }
}

static void setting_mark(admin_t *a, unsigned opt)
{
    if (opt == ADMIN_OPT_TOKEN_REUSE)
        a->have_token_reuse = 1;
    else if (opt == ADMIN_OPT_PROTOCOL)
        a->have_proto = 1;
}

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

/* Returns the index in setting_opts of the option arg names, or -1. */
static int setting_index(const char *arg, const char **inline_value)
{
    for (size_t k = 0; k < sizeof(setting_opts) / sizeof(setting_opts[0]); k++)
        if (option_is(arg, NULL, setting_opts[k].name, inline_value))
            return (int)k;
    return -1;
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
        int k;
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
        } else if (option_is(arg, NULL, "--service", &val)) {
            if (a->nservices == ADMIN_SERVICES_MAX)
                return p2m_err(err, "too many --service options (at most %d)", ADMIN_SERVICES_MAX);
            if (option_value(argc, argv, &i, "--service", val, &a->services[a->nservices], err) != 0)
                return -1;
            a->nservices++;
        } else if ((k = setting_index(arg, &val)) >= 0) {
            if (setting_given(a, setting_opts[k].opt))
                return p2m_err(err, "option %s given twice", setting_opts[k].name);
            if (val == NULL && i + 1 >= argc)
                return p2m_err(err, "option %s needs an argument: %s", setting_opts[k].name, setting_opts[k].values);
            const char *v = val != NULL ? val : argv[++i];
            if (setting_parse(a, setting_opts[k].opt, v) != 0)
                return p2m_err(err, "option %s: expected %s, not %s", setting_opts[k].name, setting_opts[k].values,
                               admin_quote(v, q));
            setting_mark(a, setting_opts[k].opt);
        } else if (strcmp(arg, "--force") == 0) {
            a->force = 1;
        } else if (option_is(arg, NULL, "--listen", &val) || option_is(arg, NULL, "--token-file", &val) ||
                   option_is(arg, NULL, "--cert", &val) || option_is(arg, NULL, "--key", &val)) {
            const char *name = arg[2] == 'l' ? "--listen" : arg[2] == 't' ? "--token-file" : arg[2] == 'c' ? "--cert" : "--key";
            const char **slot = arg[2] == 'l' ? &a->listen : arg[2] == 't' ? &a->token_file : arg[2] == 'c' ? &a->cert : &a->key;
            if (*slot != NULL)
                return p2m_err(err, "option %s given twice", name);
            if (option_value(argc, argv, &i, name, val, slot, err) != 0)
                return -1;
        } else if (option_is(arg, NULL, "--idle", &val)) {
            const char *v = NULL;
            if (a->idle != 0)
                return p2m_err(err, "option --idle given twice");
            if (option_value(argc, argv, &i, "--idle", val, &v, err) != 0)
                return -1;
            if ((a->idle = duration_parse(v)) <= 0)
                return p2m_err(err, "option --idle: expected a duration such as 30s, 10m, 12h or 7d, not %s", admin_quote(v, q));
        } else if (strcmp(arg, "--public") == 0) {
            a->public_ = 1;
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

/* Finds the command named by the first word, or the first two (a group and its verb), and checks
 * its argument count and options. */
static const admin_command_t *find_command(admin_t *a, char **words, size_t nwords, char *err)
{
    char q[ADMIN_QUOTE_LEN], name[32];
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
        if (commands[i].verb == NULL || (nwords >= 2 && strcmp(words[1], commands[i].verb) == 0)) {
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

    size_t nwords_cmd = cmd->verb != NULL ? 2 : 1, nargs = nwords - nwords_cmd;
    snprintf(name, sizeof(name), "%s%s%s", cmd->group, cmd->verb != NULL ? " " : "", cmd->verb != NULL ? cmd->verb : "");
    if (nargs < cmd->min_args || nargs > cmd->max_args) {
        p2m_err(err, "%s: %s (usage: pipe2me-admin %s%s%s)", name,
                nargs < cmd->min_args ? "missing argument" : "too many arguments", name, cmd->args_usage[0] != '\0' ? " " : "",
                cmd->args_usage);
        return NULL;
    }
    if (a->nlabels > 0 && !(cmd->opts & ADMIN_OPT_LABEL)) {
        p2m_err(err, "%s: option --label does not apply", name);
        return NULL;
    }
    if (a->output != NULL && !(cmd->opts & ADMIN_OPT_OUTPUT)) {
        p2m_err(err, "%s: option --output does not apply", name);
        return NULL;
    }
    if (a->nservices > 0 && !(cmd->opts & ADMIN_OPT_SERVICE)) {
        p2m_err(err, "%s: option --service does not apply", name);
        return NULL;
    }
    if (a->force && !(cmd->opts & ADMIN_OPT_FORCE)) {
        p2m_err(err, "%s: option --force does not apply", name);
        return NULL;
    }
    if (!(cmd->opts & ADMIN_OPT_SERVE)) {
        const char *serve_opt = a->listen != NULL       ? "--listen"
                                : a->token_file != NULL ? "--token-file"
                                : a->cert != NULL       ? "--cert"
                                : a->key != NULL        ? "--key"
                                : a->public_            ? "--public"
                                : a->idle != 0          ? "--idle"
                                                        : NULL;
        if (serve_opt != NULL) {
            p2m_err(err, "%s: option %s does not apply", name, serve_opt);
            return NULL;
        }
    }
    int needed = 0;
    for (size_t k = 0; k < sizeof(setting_opts) / sizeof(setting_opts[0]); k++) {
        if (!setting_given(a, setting_opts[k].opt))
            continue;
        if (!(cmd->opts & setting_opts[k].opt)) {
            p2m_err(err, "%s: option %s does not apply", name, setting_opts[k].name);
            return NULL;
        }
        needed |= (cmd->need & setting_opts[k].opt) != 0;
    }
    if (cmd->need != 0 && !needed) {
        p2m_err(err, "%s: nothing to change (usage: pipe2me-admin %s %s)", name, name, cmd->args_usage);
        return NULL;
    }
    a->args = words + nwords_cmd;
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
