#ifndef ADMIN_H
#define ADMIN_H

#include <stddef.h>

#include "p2m/config.h"
#include "p2m/err.h"
#include "p2m/label.h"
#include "p2m/service.h"
#include "p2m/store.h"
#include "p2m/token.h"

/* pipe2me-admin: args.c parses the command line, main.c loads the config and dispatches to one
 * handler in pod.c, label.c, lease.c, relay.c, registrar.c, token.c or check.c, which share the helpers in util.c. Every handler
 * validates its arguments before it connects to Redis, so a refused command changes nothing; it returns 0, or -1 with a one-line
 * reason in err that main prints as `pipe2me-admin: REASON` before exiting with status 2. A handler that ran and found problems
 * (check) returns 0 with a->problems set: main exits with status 1. */

typedef struct json_t json_t; /* jansson's; C11 allows the typedef to be repeated */

#define ADMIN_ARGC_MAX 256    /* argv entries accepted */
#define ADMIN_ARG_MAX 4096    /* bytes in one argv entry */
#define ADMIN_LABELS_MAX 32   /* --label options on one pod add */
#define ADMIN_SERVICES_MAX 32 /* --service options on one pod add or rotate-secret (the pod's run takes as many) */
#define ADMIN_QUOTE_LEN 400   /* buffer for admin_quote() */
#define ADMIN_TIME_LEN 32     /* buffer for admin_time_iso() */
#define ADMIN_TABLE_COLS_MAX 12
#define ADMIN_REDIS_TIMEOUT_MS 2000
#define ADMIN_CONFIG_DEFAULT "/etc/pipe2me/pipe2me.json" /* read when neither -c nor $P2M_CONFIG names a file */

/* One command line, parsed. Strings are borrowed from argv. */
typedef struct {
    const char *config_path;              /* -c/--config, NULL when not given */
    int json;                             /* --json */
    const char *output;                   /* -o/--output FILE, NULL when not given */
    const char *labels[ADMIN_LABELS_MAX]; /* --label values as given, in order */
    size_t nlabels;
    const char *services[ADMIN_SERVICES_MAX]; /* --service LABEL[:PROTOCOL]=HOST:PORT values as given, in order */
    size_t nservices;
    int have_token_reuse;           /* --token-reuse given */
    int token_reuse;                /* its value, P2M_TOKEN_REUSE_* */
    unsigned digits;                /* --digits: 6 or 8, 0 when not given */
    int have_proto;                 /* --protocol given */
    p2m_proto_t proto;              /* its value */
    long long uses;                 /* --uses 1..P2M_TOKEN_USES_MAX, 0 when not given */
    long long tunnels;              /* --tunnels 1..P2M_TOKEN_TUNNELS_MAX, 0 when not given */
    long long expires;              /* --expires DURATION in seconds (1..P2M_TOKEN_EXPIRES_MAX), 0 when not given */
    const char *label_prefix;       /* --label-prefix, checked (p2m_token_label_prefix_check); NULL when not given */
    char drain_to[P2M_URL_MAX + 1]; /* --to URL, checked (p2m_https_base_normalize); "" when not given */
    char **args;                    /* positional words after the command's words */
    size_t nargs;
    p2m_config_t cfg;
    const char *config_file;      /* the file cfg was loaded from; NULL: the built-in defaults */
    char config_err[P2M_ERR_LEN]; /* why it did not load ("" when it did): for a command with own_config */
    int problems;                 /* set by a handler that ran but found problems (exit status 1) */
    int force;                    /* --force */
    int unconfirmed;              /* a change WAIT did not confirm on redis.wait_replicas replicas (exit status 3) */
    const char *listen;           /* serve --listen HOST:PORT, NULL when not given */
    const char *token_file;       /* serve --token-file FILE, NULL when not given */
    const char *cert, *key;       /* serve --cert FILE, --key FILE, NULL when not given */
    int public_;                  /* serve --public */
    long long idle;               /* serve --idle DURATION in seconds, 0 when not given */
    /* The console's, NULL for the CLI: admin_confirm hands its JSON to *capture (the caller
     * json_decrefs it) instead of printing it, and pod add and rotate-secret hand the provisioning
     * text to *capture_text, *capture_len (the caller wipes and frees it) instead of writing it. */
    json_t **capture;
    char **capture_text;
    size_t *capture_len;
} admin_t;

/* Options a command accepts besides the global ones (-c, --json, -h, --version). */
enum {
    ADMIN_OPT_LABEL = 1,
    ADMIN_OPT_OUTPUT = 2,
    ADMIN_OPT_TOKEN_REUSE = 4,    /* --token-reuse none|same-address */
    ADMIN_OPT_DIGITS = 8,         /* --digits 6|8 */
    ADMIN_OPT_PROTOCOL = 16,      /* --protocol http|https|tcp */
    ADMIN_OPT_SERVICE = 32,       /* --service LABEL[:PROTOCOL]=HOST:PORT, checked by the handler */
    ADMIN_OPT_USES = 64,          /* --uses N */
    ADMIN_OPT_TUNNELS = 128,      /* --tunnels M */
    ADMIN_OPT_EXPIRES = 256,      /* --expires DURATION: Ns, Nm, Nh or Nd */
    ADMIN_OPT_LABEL_PREFIX = 512, /* --label-prefix P */
    ADMIN_OPT_TO = 1024,          /* --to URL: an https:// URL */
    ADMIN_OPT_FORCE = 2048,       /* --force */
    ADMIN_OPT_SERVE = 4096,       /* --listen, --token-file, --cert, --key, --public, --idle (serve) */
};

/* One command: its two words (or one: verb NULL), how many arguments it takes, which ADMIN_OPT_* it
 * accepts and of which at least one must be given (need, 0 for none), its handler, the arguments
 * as its usage line shows them, and whether a configuration that does not load is the handler's to
 * report (own_config: main fills a->config_err and runs it over the defaults) instead of an error. */
typedef struct {
    const char *group, *verb;
    size_t min_args, max_args;
    unsigned opts, need;
    int (*run)(admin_t *a, char *err);
    const char *args_usage;
    int own_config;
} admin_command_t;

typedef enum { ADMIN_ACTION_RUN = 0, ADMIN_ACTION_HELP, ADMIN_ACTION_VERSION } admin_action_t;

/* Parses the command line (argv[0] is the program; at most ADMIN_ARGC_MAX entries of at most
 * ADMIN_ARG_MAX bytes). Options may come anywhere until "--"; the other words are moved, in order,
 * to the front of argv[1..]: the command's words (two, or one for check), then its arguments. a must be zeroed by the
 * caller; its option fields, args and nargs are filled (borrowed from argv), cfg is left alone.
 * *action is HELP for -h/--help or a first word "help", VERSION for --version; otherwise RUN with
 * *cmd the command, whose argument count and options have been checked. The values of
 * --token-reuse, --digits, --protocol, --uses, --tunnels, --expires and --label-prefix are parsed here: a bad one is refused naming
 * the option and the values it takes. Returns 0, or -1 with a one-line reason in err (outside input quoted by admin_quote). */
int admin_args_parse(int argc, char **argv, admin_t *a, admin_action_t *action, const admin_command_t **cmd, char *err);

/* The command handlers. Each reads a->args (count already checked against its usage) and
 * returns 0 or -1 with err. */
int pod_add(admin_t *a, char *err);
int pod_ls(admin_t *a, char *err);
int pod_show(admin_t *a, char *err);
int pod_rm(admin_t *a, char *err);
int pod_disable(admin_t *a, char *err);
int pod_enable(admin_t *a, char *err);
int pod_rotate_secret(admin_t *a, char *err);
int pod_set(admin_t *a, char *err);
int pod_series(admin_t *a, char *err);
int label_add(admin_t *a, char *err);
int label_set(admin_t *a, char *err);
int label_rm(admin_t *a, char *err);
int label_share(admin_t *a, char *err);
int label_unshare(admin_t *a, char *err);
int label_ls(admin_t *a, char *err);
int lease_ls(admin_t *a, char *err);
int lease_rm(admin_t *a, char *err);
int relay_ls(admin_t *a, char *err);
int relay_drain(admin_t *a, char *err);
int relay_undrain(admin_t *a, char *err);
int check_run(admin_t *a, char *err);
int token_add(admin_t *a, char *err);
int token_ls(admin_t *a, char *err);
int token_rm(admin_t *a, char *err);
int registrar_ls(admin_t *a, char *err);
int registrar_drain(admin_t *a, char *err);
int registrar_undrain(admin_t *a, char *err);
int console_serve(admin_t *a, char *err); /* console.c */

/* Connects to the Redis named by a->cfg. Returns a store (p2m_store_free it) or NULL with err. */
p2m_store_t *admin_connect(admin_t *a, char *err);

/* Checks a pod ID from the command line. Returns 0, or -1 with err naming the ID. */
int admin_check_id(const char *id, char *err);

/* Checks and lower-cases a label from the command line into out (P2M_LABEL_MAX + 1 bytes).
 * Returns 0, or -1 with err naming the label. */
int admin_check_label(const char *s, char *out, char *err);

/* Writes s to out (ADMIN_QUOTE_LEN bytes) double-quoted and safe to print on one line: control
 * and non-ASCII bytes become \xNN, and long input is cut short with "...". Returns out. */
const char *admin_quote(const char *s, char *out);

/* Returns a copy of s (free() it) in which control and non-ASCII bytes are written \xNN, for
 * echoing outside input in full on one line. */
char *admin_escape_dup(const char *s);

/* Formats a Unix time as ISO 8601 UTC ("2026-01-01T00:00:00Z") into out (ADMIN_TIME_LEN bytes),
 * or "-" when t is not a valid time. Returns out. */
const char *admin_time_iso(long long t, char *out);

/* Checks that stdout took everything written to it. Returns 0 or -1 with err. */
int admin_flush_stdout(char *err);

/* Pretty-prints v to stdout followed by a newline. Borrows v. Returns 0 or -1 with err. */
int admin_json_print(json_t *v, char *err);

/* Reports a successful change: with --json prints obj (which must hold "ok": true and the
 * details), otherwise the formatted line. Takes ownership of obj; NULL obj (jansson failed)
 * is an error. Returns 0 or -1 with err. */
int admin_confirm(const admin_t *a, json_t *obj, char *err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A text table with a header row, columns left-aligned and separated by two spaces. Cells are
 * copied; non-printable bytes become \xNN and empty cells print as "-". */
typedef struct {
    size_t ncols, nrows, cap;
    char **cells; /* nrows * ncols, row-major; row 0 is the header */
    size_t width[ADMIN_TABLE_COLS_MAX];
} admin_table_t;

/* Starts a table with ncols (at most ADMIN_TABLE_COLS_MAX) headers. */
void admin_table_init(admin_table_t *t, size_t ncols, const char *const *headers);

/* Appends a row of t->ncols cells (borrowed, copied). */
void admin_table_add(admin_table_t *t, const char *const *cells);

/* Prints the table to stdout. Returns 0 or -1 with err. */
int admin_table_print(const admin_table_t *t, char *err);

/* Frees what the table holds; the struct itself is the caller's. */
void admin_table_dispose(admin_table_t *t);

/* The listings of pod ls, label ls and relay ls, for the CLI and the console alike (one query
 * each): connect through a, then fill *json with a new array (the caller json_decrefs it) when
 * json is not NULL, and add the table's rows when table is not NULL. Returns 0 or -1 with err. */
typedef int (*admin_list_fn)(admin_t *a, json_t **json, admin_table_t *table, char *err);
int pod_list(admin_t *a, json_t **json, admin_table_t *table, char *err);
int label_list(admin_t *a, json_t **json, admin_table_t *table, char *err);

/* A pod's last hour (p2m_store_pod_series) as the JSON of `pod series ID --json` and the console's
 * /api/pods/ID/series: {"pod", "minute_now", "minutes": [60 x {minute, conns, tunnels, bytes_in,
 * bytes_out}]}, oldest first. Returns 0 with *out (json_decref it) and *status 200, or -1 with err
 * and *status 400 (a malformed ID), 404 (an unknown pod) or 502 (Redis). */
int pod_series_fetch(admin_t *a, const char *id, json_t **out, int *status, char *err);
int relay_list(admin_t *a, json_t **json, admin_table_t *table, char *err);

/* An ls command: list's JSON with --json, else a table of ncols headers. Returns 0 or -1 with err. */
int admin_ls_print(admin_t *a, admin_list_fn list, size_t ncols, const char *const *headers, char *err);

/* malloc/realloc that abort with a log line when memory runs out. */
void *admin_xmalloc(size_t n);
void *admin_xrealloc(void *p, size_t n);

#endif
