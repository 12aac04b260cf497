/* pipe2me-admin: manages pods, labels and leases in pipe2me's Redis.
 *
 * Every error prints one line `pipe2me-admin: REASON` on stderr and exits with status 2. All
 * input is checked before Redis is contacted, and the store's changes are atomic, so a refused
 * command changes nothing. */
#include "admin.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "p2m/log.h"
#include "p2m/totp.h"

#ifndef P2M_VERSION
#define P2M_VERSION "0.1.0"
#endif

#define ADMIN_CONFIG_DEFAULT "/etc/pipe2me/pipe2me.json"
#define ADMIN_QUOTE_INPUT_MAX 96 /* bytes of an echoed argument before it is cut short */
_Static_assert(ADMIN_QUOTE_LEN >= 2 + ADMIN_QUOTE_INPUT_MAX * 4 + 3 + 1, "admin_quote() output must fit");

enum { OPT_LABEL = 1, OPT_OUTPUT = 2 };

typedef struct {
    const char *group, *verb;
    size_t min_args, max_args;
    unsigned opts; /* OPT_* the command accepts besides the global ones */
    int (*run)(admin_t *a, char *err);
    const char *args_usage;
} command_t;

static const command_t commands[] = {
    {"pod", "add", 1, 1, OPT_LABEL | OPT_OUTPUT, pod_add, "ID [--label LABEL]... [-o FILE]"},
    {"pod", "ls", 0, 0, 0, pod_ls, ""},
    {"pod", "show", 1, 1, 0, pod_show, "ID"},
    {"pod", "rm", 1, 1, 0, pod_rm, "ID"},
    {"pod", "disable", 1, 1, 0, pod_disable, "ID"},
    {"pod", "enable", 1, 1, 0, pod_enable, "ID"},
    {"pod", "rotate-secret", 1, 1, OPT_OUTPUT, pod_rotate_secret, "ID [-o FILE]"},
    {"label", "add", 2, 2, 0, label_add, "ID LABEL"},
    {"label", "rm", 1, 1, 0, label_rm, "LABEL"},
    {"label", "ls", 0, 0, 0, label_ls, ""},
    {"lease", "ls", 0, 0, 0, lease_ls, ""},
    {"lease", "rm", 1, 1, 0, lease_rm, "PORT"},
};

static const char usage_text[] = "Usage: pipe2me-admin [-c|--config FILE] [--json] COMMAND ...\n"
                                 "\n"
                                 "Manages pipe2me's pods, labels and leases in Redis.\n"
                                 "\n"
                                 "Commands:\n"
                                 "  pod add ID [--label LABEL]... [-o FILE]\n"
                                 "                         create a pod and print its provisioning JSON, which holds\n"
                                 "                         the secret (a readable label is generated if none is given)\n"
                                 "  pod ls                 list pods\n"
                                 "  pod show ID            show one pod (never its secret)\n"
                                 "  pod rm ID              remove a pod with its labels, sessions and leases\n"
                                 "  pod disable ID         refuse the pod's registrations, end its sessions and leases\n"
                                 "  pod enable ID          accept the pod again\n"
                                 "  pod rotate-secret ID [-o FILE]\n"
                                 "                         give the pod a new secret and print the new provisioning JSON\n"
                                 "  label add ID LABEL     give LABEL to pod ID\n"
                                 "  label rm LABEL         take LABEL from its pod\n"
                                 "  label ls               list labels with their pods\n"
                                 "  lease ls               list live port leases\n"
                                 "  lease rm PORT          end the lease on PORT\n"
                                 "  help                   show this text\n"
                                 "\n"
                                 "Options (accepted anywhere on the line):\n"
                                 "  -c, --config FILE  configuration file; default $P2M_CONFIG, else\n"
                                 "                     " ADMIN_CONFIG_DEFAULT " (built-in defaults if that is missing)\n"
                                 "      --json         machine-readable output\n"
                                 "  -o, --output FILE  write the provisioning JSON to FILE, created with mode 0600\n"
                                 "                     (an existing FILE is never overwritten)\n"
                                 "  -h, --help         show this text\n"
                                 "      --version      show the version\n"
                                 "\n"
                                 "Exit status: 0 on success; 2 on any error, reported in one line on stderr, with\n"
                                 "nothing changed.\n";

void *admin_xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "bytes=%zu", n);
        abort();
    }
    return p;
}

void *admin_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    if (q == NULL) {
        p2m_log(P2M_LOG_ERROR, "oom", "bytes=%zu", n);
        abort();
    }
    return q;
}

/* Appends s[0..len) to out at *pos, printable ASCII as is and every other byte as \xNN, while
 * there is room for the result plus reserve bytes and the NUL. Returns 0 when all of it fit. */
static int escape_append(const char *s, size_t len, char *out, size_t *pos, size_t cap, size_t reserve)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c >= 0x20 && c <= 0x7e) ? 1 : 4;
        if (*pos + need + reserve + 1 > cap) {
            out[*pos] = '\0';
            return -1;
        }
        if (need == 1) {
            out[(*pos)++] = (char)c;
        } else {
            out[(*pos)++] = '\\';
            out[(*pos)++] = 'x';
            out[(*pos)++] = hex[c >> 4];
            out[(*pos)++] = hex[c & 0xf];
        }
    }
    out[*pos] = '\0';
    return 0;
}

const char *admin_quote(const char *s, char *out)
{
    size_t len = strnlen(s, ADMIN_QUOTE_INPUT_MAX + 1), pos = 0;
    int cut = len > ADMIN_QUOTE_INPUT_MAX;
    out[pos++] = '"';
    /* ADMIN_QUOTE_INPUT_MAX bytes escaped take at most 4 times as much: always fits */
    escape_append(s, cut ? ADMIN_QUOTE_INPUT_MAX : len, out, &pos, ADMIN_QUOTE_LEN, 4);
    if (cut) {
        memcpy(out + pos, "...", 3);
        pos += 3;
    }
    out[pos++] = '"';
    out[pos] = '\0';
    return out;
}

char *admin_escape_dup(const char *s)
{
    size_t len = strlen(s), cap = len * 4 + 1, pos = 0;
    char *out = admin_xmalloc(cap);
    escape_append(s, len, out, &pos, cap, 0);
    return out;
}

const char *admin_time_iso(long long t, char *out)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t < 0 || (long long)tt != t || gmtime_r(&tt, &tm) == NULL || strftime(out, ADMIN_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        strcpy(out, "-");
    return out;
}

int admin_check_id(const char *id, char *err)
{
    char why[P2M_ERR_LEN], q[ADMIN_QUOTE_LEN];
    if (p2m_id_valid(id, strlen(id), why) != 0)
        return p2m_err(err, "invalid pod ID %s: %s", admin_quote(id, q), why);
    return 0;
}

int admin_check_label(const char *s, char *out, char *err)
{
    char why[P2M_ERR_LEN], q[ADMIN_QUOTE_LEN];
    if (p2m_label_normalize(s, strlen(s), out, why) != 0)
        return p2m_err(err, "invalid label %s: %s", admin_quote(s, q), why);
    return 0;
}

p2m_store_t *admin_connect(const admin_t *a, char *err)
{
    return p2m_store_connect(&a->cfg.redis, ADMIN_REDIS_TIMEOUT_MS, err);
}

/* Checks that stdout took everything written to it. */
static int flush_stdout(char *err)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return p2m_err(err, "stdout: %s", errno != 0 ? strerror(errno) : "write error");
    return 0;
}

int admin_json_print(json_t *v, char *err)
{
    if (json_dumpf(v, stdout, JSON_INDENT(2)) != 0 || fputc('\n', stdout) == EOF)
        return p2m_err(err, "stdout: %s", errno != 0 ? strerror(errno) : "write error");
    return flush_stdout(err);
}

int admin_confirm(const admin_t *a, json_t *obj, char *err, const char *fmt, ...)
{
    int ret = -1;
    if (obj == NULL) {
        p2m_err(err, "cannot build the JSON reply");
        goto Exit;
    }
    if (a->json) {
        if (admin_json_print(obj, err) != 0)
            goto Exit;
    } else {
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        if (flush_stdout(err) != 0)
            goto Exit;
    }
    ret = 0;
Exit:
    json_decref(obj);
    return ret;
}

void admin_table_init(admin_table_t *t, size_t ncols, const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols > ADMIN_TABLE_COLS_MAX ? ADMIN_TABLE_COLS_MAX : ncols;
    admin_table_add(t, headers);
}

void admin_table_add(admin_table_t *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap == 0 ? 16 : t->cap * 2;
        t->cells = admin_xrealloc(t->cells, t->cap * t->ncols * sizeof(*t->cells));
    }
    for (size_t c = 0; c < t->ncols; c++) {
        char *cell = admin_escape_dup(cells[c] == NULL || cells[c][0] == '\0' ? "-" : cells[c]);
        size_t width = strlen(cell);
        t->cells[t->nrows * t->ncols + c] = cell;
        if (width > t->width[c])
            t->width[c] = width;
    }
    t->nrows++;
}

int admin_table_print(const admin_table_t *t, char *err)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            if (c + 1 < t->ncols)
                printf("%-*s  ", (int)t->width[c], cell);
            else
                printf("%s\n", cell);
        }
    }
    return flush_stdout(err);
}

void admin_table_dispose(admin_table_t *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

enum { ACTION_RUN, ACTION_HELP, ACTION_VERSION };

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
static int parse_args(int argc, char **argv, admin_t *a, char ***words, size_t *nwords, int *action, char *err)
{
    char q[ADMIN_QUOTE_LEN];
    size_t n = 0;
    int opts_done = 0;

    *action = ACTION_RUN;
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
            *action = ACTION_HELP;
        } else if (strcmp(arg, "--version") == 0) {
            if (*action == ACTION_RUN)
                *action = ACTION_VERSION;
        } else {
            return p2m_err(err, "unknown option %s (see pipe2me-admin --help)", admin_quote(arg, q));
        }
    }
    *words = argv + 1;
    *nwords = n;
    return 0;
}

/* Finds the command named by the first two words and checks its argument count and options. */
static const command_t *find_command(admin_t *a, char **words, size_t nwords, char *err)
{
    char q[ADMIN_QUOTE_LEN];
    const command_t *cmd = NULL;
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
    if (a->nlabels > 0 && !(cmd->opts & OPT_LABEL)) {
        p2m_err(err, "%s %s: option --label does not apply", cmd->group, cmd->verb);
        return NULL;
    }
    if (a->output != NULL && !(cmd->opts & OPT_OUTPUT)) {
        p2m_err(err, "%s %s: option --output does not apply", cmd->group, cmd->verb);
        return NULL;
    }
    a->args = words + 2;
    a->nargs = nargs;
    return cmd;
}

/* Loads -c FILE or $P2M_CONFIG, which must exist, else the system-wide file if there is one,
 * over the built-in defaults. */
static int load_config(admin_t *a, char *err)
{
    const char *path = a->config_path;
    p2m_config_defaults(&a->cfg);
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
    return p2m_config_load(path, &a->cfg, err);
}

int main(int argc, char **argv)
{
    int status = 2, totp_ready = 0, action;
    char err[P2M_ERR_LEN] = "unknown error";
    admin_t a;
    char **words = NULL;
    size_t nwords = 0;
    const command_t *cmd;

    memset(&a, 0, sizeof(a));
    /* Errors reach the user as the one line below; library log lines would only add noise. */
    p2m_log_set_level(P2M_LOG_ERROR);

    if (parse_args(argc, argv, &a, &words, &nwords, &action, err) != 0)
        goto Exit;
    if (action == ACTION_HELP || (action == ACTION_RUN && nwords > 0 && strcmp(words[0], "help") == 0)) {
        fputs(usage_text, stdout);
        if (flush_stdout(err) == 0)
            status = 0;
        goto Exit;
    }
    if (action == ACTION_VERSION) {
        printf("pipe2me-admin %s\n", P2M_VERSION);
        if (flush_stdout(err) == 0)
            status = 0;
        goto Exit;
    }
    if ((cmd = find_command(&a, words, nwords, err)) == NULL)
        goto Exit;
    if (load_config(&a, err) != 0)
        goto Exit;
    if (a.cfg.log_level == P2M_LOG_DEBUG)
        p2m_log_set_level(P2M_LOG_DEBUG);
    if (p2m_totp_init(err) != 0)
        goto Exit;
    totp_ready = 1;
    if (cmd->run(&a, err) != 0)
        goto Exit;
    if (flush_stdout(err) != 0)
        goto Exit;
    status = 0;

Exit:
    if (totp_ready)
        p2m_totp_done();
    if (status != 0) {
        /* err may quote outside input: escape it so that the reason stays on one line */
        char line[P2M_ERR_LEN * 4 + 1];
        size_t pos = 0;
        escape_append(err, strnlen(err, P2M_ERR_LEN), line, &pos, sizeof(line), 0);
        fprintf(stderr, "pipe2me-admin: %s\n", line);
    }
    return status;
}
