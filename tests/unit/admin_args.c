/* Unit tests for admin_args_parse (tools/admin/args.c), pipe2me-admin's command line: options
 * anywhere until "--", the command table's argument counts and options, help and version, and
 * refusals in one printable line. (tests/e2e/04-admin-errors.sh runs the same through the tool.) */

#include "admin.h"
#include "check.h"
#include "p2m/err.h"

#include <stdarg.h>
#include <string.h>

static admin_t a; /* large (the config): keep it off the stack */

/* Runs admin_args_parse on a NULL-terminated list of arguments after the program name. */
static int parse(admin_action_t *action, const admin_command_t **cmd, char *err, ...)
{
    static char *argv[ADMIN_ARGC_MAX + 7];
    va_list ap;
    va_start(ap, err);
    int argc = check_argv(argv, ADMIN_ARGC_MAX + 7, "pipe2me-admin", ap);
    va_end(ap);
    memset(&a, 0, sizeof(a));
    err[0] = '\0';
    return admin_args_parse(argc, argv, &a, action, cmd, err);
}

int main(void)
{
    admin_action_t action;
    const admin_command_t *cmd;
    char err[P2M_ERR_LEN];

    CHECK_CTX("pod add with every option, options anywhere");
    if (CHECK_RC(parse(&action, &cmd, err, "--label", "web", "pod", "-c", "c.json", "add", "--json", "p1", "--label=API", "-o",
                       "out", NULL),
                 0, err)) {
        CHECK_EQ_INT(action, ADMIN_ACTION_RUN);
        CHECK(cmd != NULL && strcmp(cmd->group, "pod") == 0 && strcmp(cmd->verb, "add") == 0);
        CHECK_EQ_STR(a.config_path, "c.json");
        CHECK_EQ_INT(a.json, 1);
        CHECK_EQ_STR(a.output, "out");
        CHECK_EQ_INT(a.nlabels, 2);
        if (a.nlabels == 2) {
            CHECK_EQ_STR(a.labels[0], "web");
            CHECK_EQ_STR(a.labels[1], "API");
        }
        if (CHECK_EQ_INT(a.nargs, 1))
            CHECK_EQ_STR(a.args[0], "p1");
    }
    CHECK_CTX("pod series ID --json");
    if (CHECK_RC(parse(&action, &cmd, err, "pod", "series", "--json", "p1", NULL), 0, err)) {
        CHECK(cmd != NULL && strcmp(cmd->group, "pod") == 0 && strcmp(cmd->verb, "series") == 0);
        CHECK_EQ_INT(a.json, 1);
        if (CHECK_EQ_INT(a.nargs, 1))
            CHECK_EQ_STR(a.args[0], "p1");
    }
    CHECK_CTX("after --, words only");
    if (CHECK_RC(parse(&action, &cmd, err, "--", "label", "rm", "-web", NULL), 0, err) && CHECK_EQ_INT(a.nargs, 1))
        CHECK_EQ_STR(a.args[0], "-web");
    CHECK_CTX("a lone - is a word");
    if (CHECK_RC(parse(&action, &cmd, err, "label", "rm", "-", NULL), 0, err) && CHECK_EQ_INT(a.nargs, 1))
        CHECK_EQ_STR(a.args[0], "-");

    CHECK_CTX("help and version");
    CHECK(parse(&action, &cmd, err, "help", NULL) == 0 && action == ADMIN_ACTION_HELP && cmd == NULL);
    CHECK(parse(&action, &cmd, err, "pod", "frob", "-h", NULL) == 0 && action == ADMIN_ACTION_HELP);
    CHECK(parse(&action, &cmd, err, "--version", "--help", NULL) == 0 && action == ADMIN_ACTION_HELP);
    CHECK(parse(&action, &cmd, err, "--version", "pod", NULL) == 0 && action == ADMIN_ACTION_VERSION);

    CHECK_CTX("refused");
    check_refusal(parse(&action, &cmd, err, NULL), err, "missing command");
    check_refusal(parse(&action, &cmd, err, "pods", NULL), err, "unknown command \"pods\"");
    check_refusal(parse(&action, &cmd, err, "pod", NULL), err, "pod: missing subcommand");
    check_refusal(parse(&action, &cmd, err, "pod", "frob\n", NULL), err, "unknown subcommand \"frob\\x0a\"");
    check_refusal(parse(&action, &cmd, err, "pod", "show", NULL), err, "missing argument (usage: pipe2me-admin pod show ID)");
    check_refusal(parse(&action, &cmd, err, "pod", "ls", "x", NULL), err, "too many arguments (usage: pipe2me-admin pod ls)");
    check_refusal(parse(&action, &cmd, err, "pod", "ls", "--label", "x", NULL), err, "option --label does not apply");
    check_refusal(parse(&action, &cmd, err, "label", "ls", "-o", "x", NULL), err, "option --output does not apply");
    check_refusal(parse(&action, &cmd, err, "pod", "add", "p", "-o", "a", "--output=b", NULL), err, "--output given twice");
    check_refusal(parse(&action, &cmd, err, "-c", "a", "--config", "b", "pod", "ls", NULL), err, "--config given twice");
    check_refusal(parse(&action, &cmd, err, "pod", "ls", "-c", NULL), err, "option --config needs an argument");
    check_refusal(parse(&action, &cmd, err, "pod", "ls", "--config=", NULL), err, "option --config: empty argument");
    check_refusal(parse(&action, &cmd, err, "pod", "ls", "--jsonx", NULL), err, "unknown option \"--jsonx\"");
    check_refusal(parse(&action, &cmd, err, "pod", "ls", "-\xff", NULL), err, "unknown option \"-\\xff\"");

    CHECK_CTX("relay ls, drain, undrain; --force only where it applies");
    if (CHECK_RC(parse(&action, &cmd, err, "relay", "ls", "--json", NULL), 0, err))
        CHECK(cmd != NULL && cmd->run == relay_ls && a.json == 1 && a.nargs == 0);
    if (CHECK_RC(parse(&action, &cmd, err, "--force", "relay", "drain", "r1", NULL), 0, err) && CHECK_EQ_INT(a.nargs, 1)) {
        CHECK(cmd != NULL && cmd->run == relay_drain);
        CHECK_EQ_INT(a.force, 1);
        CHECK_EQ_STR(a.args[0], "r1");
    }
    if (CHECK_RC(parse(&action, &cmd, err, "relay", "undrain", "r1", NULL), 0, err)) {
        CHECK(cmd != NULL && cmd->run == relay_undrain);
        CHECK_EQ_INT(a.force, 0);
    }
    check_refusal(parse(&action, &cmd, err, "relay", "drain", NULL), err,
                  "relay drain: missing argument (usage: pipe2me-admin relay drain NAME [--force])");
    check_refusal(parse(&action, &cmd, err, "relay", "undrain", "r1", "r2", NULL), err, "relay undrain: too many arguments");
    check_refusal(parse(&action, &cmd, err, "relay", "ls", "--force", NULL), err, "relay ls: option --force does not apply");
    check_refusal(parse(&action, &cmd, err, "pod", "rm", "p1", "--force", NULL), err, "pod rm: option --force does not apply");
    check_refusal(parse(&action, &cmd, err, "relay", "drain", "r1", "--label", "x", NULL), err, "option --label does not apply");
    check_refusal(parse(&action, &cmd, err, "relay", "drains", "r1", NULL), err, "relay: unknown subcommand \"drains\"");
    check_refusal(parse(&action, &cmd, err, "relay", "drain", "r1", "--forced", NULL), err, "unknown option \"--forced\"");

    CHECK_CTX("serve: one word, its options, and only there");
    if (CHECK_RC(parse(&action, &cmd, err, "serve", "--token-file", "t", "--listen=127.0.0.1:1", "--idle", "10m", NULL), 0, err)) {
        CHECK(cmd != NULL && cmd->run == console_serve && cmd->verb == NULL);
        CHECK_EQ_STR(a.token_file, "t");
        CHECK_EQ_STR(a.listen, "127.0.0.1:1");
        CHECK_EQ_INT(a.idle, 600);
        CHECK(a.cert == NULL && a.key == NULL && a.public_ == 0);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "--public", "--cert", "c.pem", "serve", "--key=k.pem", "--token-file=t", NULL), 0,
                 err)) {
        CHECK_EQ_STR(a.cert, "c.pem");
        CHECK_EQ_STR(a.key, "k.pem");
        CHECK_EQ_INT(a.public_, 1);
        CHECK(a.listen == NULL && a.idle == 0);
    }
    check_refusal(parse(&action, &cmd, err, "serve", "extra", NULL), err, "serve: too many arguments");
    check_refusal(parse(&action, &cmd, err, "serve", "--listen", "a", "--listen", "b", NULL), err, "option --listen given twice");
    check_refusal(parse(&action, &cmd, err, "serve", "--token-file", "a", "--token-file=b", NULL), err,
                  "option --token-file given twice");
    check_refusal(parse(&action, &cmd, err, "serve", "--cert", NULL), err, "option --cert needs an argument");
    check_refusal(parse(&action, &cmd, err, "serve", "--key=", NULL), err, "option --key: empty argument");
    check_refusal(parse(&action, &cmd, err, "serve", "--idle", "0s", NULL), err, "option --idle: expected a duration");
    check_refusal(parse(&action, &cmd, err, "serve", "--idle", "5", NULL), err, "option --idle: expected a duration");
    check_refusal(parse(&action, &cmd, err, "serve", "--idle", "1m", "--idle", "2m", NULL), err, "option --idle given twice");
    check_refusal(parse(&action, &cmd, err, "serve", "--listens", "x", NULL), err, "unknown option \"--listens\"");
    check_refusal(parse(&action, &cmd, err, "pod", "ls", "--listen", "x", NULL), err, "pod ls: option --listen does not apply");
    check_refusal(parse(&action, &cmd, err, "check", "--token-file", "x", NULL), err, "check: option --token-file does not apply");
    check_refusal(parse(&action, &cmd, err, "relay", "ls", "--public", NULL), err, "relay ls: option --public does not apply");
    check_refusal(parse(&action, &cmd, err, "label", "ls", "--idle", "1m", NULL), err, "label ls: option --idle does not apply");
    check_refusal(parse(&action, &cmd, err, "lease", "ls", "--key", "k", NULL), err, "lease ls: option --key does not apply");
    check_refusal(parse(&action, &cmd, err, "serve", "--json", "--force", NULL), err, "serve: option --force does not apply");

    CHECK_CTX("check: one word, no arguments, the global options anywhere");
    if (CHECK_RC(parse(&action, &cmd, err, "check", NULL), 0, err)) {
        CHECK_EQ_INT(action, ADMIN_ACTION_RUN);
        CHECK(cmd != NULL && cmd->run == check_run && strcmp(cmd->group, "check") == 0 && cmd->verb == NULL);
        CHECK(cmd != NULL && cmd->own_config);
        CHECK_EQ_INT(a.nargs, 0);
        CHECK_EQ_INT(a.json, 0);
        CHECK(a.config_path == NULL);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "--json", "check", "-c", "c.json", NULL), 0, err)) {
        CHECK(cmd != NULL && cmd->run == check_run);
        CHECK_EQ_INT(a.json, 1);
        CHECK_EQ_STR(a.config_path, "c.json");
        CHECK_EQ_INT(a.nargs, 0);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "--config=c.json", "--", "check", NULL), 0, err))
        CHECK(cmd != NULL && cmd->run == check_run);
    CHECK(parse(&action, &cmd, err, "check", "--help", NULL) == 0 && action == ADMIN_ACTION_HELP && cmd == NULL);
    CHECK(parse(&action, &cmd, err, "help", "check", NULL) == 0 && action == ADMIN_ACTION_HELP && cmd == NULL);
    CHECK_CTX("the other commands do not report their configuration");
    if (CHECK_RC(parse(&action, &cmd, err, "pod", "ls", NULL), 0, err))
        CHECK(cmd != NULL && !cmd->own_config);

    CHECK_CTX("check refused");
    static const struct {
        const char *argv[6];
        const char *want;
    } bad_check[] = {
        {{"check", "now"}, "check: too many arguments (usage: pipe2me-admin check)"},
        {{"check", "--", "--json"}, "check: too many arguments"},
        {{"check", "-"}, "check: too many arguments"},
        {{"check", ""}, "check: too many arguments"},
        {{"check", "check"}, "check: too many arguments"},
        {{"check", "ls"}, "check: too many arguments"},
        {{"check", "--label", "x"}, "check: option --label does not apply"},
        {{"check", "-o", "out"}, "check: option --output does not apply"},
        {{"check", "--output=out"}, "check: option --output does not apply"},
        {{"check", "--digits", "6"}, "check: option --digits does not apply"},
        {{"check", "--token-reuse=none"}, "check: option --token-reuse does not apply"},
        {{"check", "--protocol", "tcp"}, "check: option --protocol does not apply"},
        {{"check", "--digits", "7"}, "option --digits: expected 6 or 8, not \"7\""},
        {{"check", "--json", "--jsonx"}, "unknown option \"--jsonx\""},
        {{"check", "-c"}, "option --config needs an argument"},
        {{"check", "-c", "a", "-c", "b"}, "option --config given twice"},
        {{"check", "--config="}, "option --config: empty argument"},
        {{"check", "-x"}, "unknown option \"-x\""},
        {{"CHECK"}, "unknown command \"CHECK\""},
        {{"checks"}, "unknown command \"checks\""},
        {{"chec"}, "unknown command \"chec\""},
        {{"check\n"}, "unknown command \"check\\x0a\""},
        {{"check\xff"}, "unknown command \"check\\xff\""},
        {{" check"}, "unknown command \" check\""},
        {{"pod", "check"}, "pod: unknown subcommand \"check\""},
    };
    for (size_t i = 0; i < sizeof(bad_check) / sizeof(bad_check[0]); i++) {
        static char *argv[8];
        int argc = 0;
        argv[argc++] = "pipe2me-admin";
        for (size_t j = 0; j < 6 && bad_check[i].argv[j] != NULL; j++)
            argv[argc++] = (char *)bad_check[i].argv[j];
        argv[argc] = NULL;
        CHECK_CTX("check refused row %zu: %s", i, bad_check[i].want);
        memset(&a, 0, sizeof(a));
        err[0] = '\0';
        check_refusal(admin_args_parse(argc, argv, &a, &action, &cmd, err), err, bad_check[i].want);
    }
    CHECK_CTX("check: an overlong argument is refused before the command is looked at");
    {
        static char big[ADMIN_ARG_MAX + 2];
        memset(big, 'c', ADMIN_ARG_MAX + 1);
        check_refusal(parse(&action, &cmd, err, "check", big, NULL), err, "argument 2 is longer than 4096 bytes");
    }

    CHECK_CTX("settings: pod add, pod set, label add, label set");
    if (CHECK_RC(parse(&action, &cmd, err, "pod", "add", "p1", "--token-reuse", "same-address", "--digits=8", NULL), 0, err)) {
        CHECK(cmd != NULL && strcmp(cmd->verb, "add") == 0);
        CHECK_EQ_INT(a.have_token_reuse, 1);
        CHECK_EQ_INT(a.token_reuse, P2M_TOKEN_REUSE_SAME_ADDRESS);
        CHECK_EQ_INT(a.digits, 8);
        CHECK_EQ_INT(a.have_proto, 0);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "pod", "add", "p1", NULL), 0, err)) {
        CHECK_EQ_INT(a.have_token_reuse, 0);
        CHECK_EQ_INT(a.digits, 0);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "--digits", "6", "pod", "set", "p1", NULL), 0, err)) {
        CHECK(cmd != NULL && cmd->run == pod_set);
        CHECK_EQ_INT(a.digits, 6);
        CHECK_EQ_INT(a.have_token_reuse, 0);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "pod", "set", "p1", "--token-reuse=none", NULL), 0, err)) {
        CHECK_EQ_INT(a.have_token_reuse, 1);
        CHECK_EQ_INT(a.token_reuse, P2M_TOKEN_REUSE_NONE);
        CHECK_EQ_INT(a.digits, 0);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "label", "add", "p1", "web", "--protocol", "tcp", NULL), 0, err)) {
        CHECK(cmd != NULL && cmd->run == label_add);
        CHECK_EQ_INT(a.have_proto, 1);
        CHECK_EQ_INT(a.proto, P2M_PROTO_TCP);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "label", "add", "p1", "web", NULL), 0, err))
        CHECK_EQ_INT(a.have_proto, 0);
    if (CHECK_RC(parse(&action, &cmd, err, "label", "set", "web", "--protocol=http", NULL), 0, err)) {
        CHECK(cmd != NULL && cmd->run == label_set);
        CHECK_EQ_INT(a.proto, P2M_PROTO_HTTP);
    }
    if (CHECK_RC(parse(&action, &cmd, err, "label", "set", "web", "--protocol", "https", NULL), 0, err))
        CHECK_EQ_INT(a.proto, P2M_PROTO_HTTPS);
    CHECK_CTX("label share and unshare: LABEL ID, no option");
    if (CHECK_RC(parse(&action, &cmd, err, "label", "share", "web", "p2", NULL), 0, err) && CHECK_EQ_INT(a.nargs, 2)) {
        CHECK(cmd != NULL && cmd->run == label_share);
        CHECK_EQ_STR(a.args[0], "web");
        CHECK_EQ_STR(a.args[1], "p2");
    }
    if (CHECK_RC(parse(&action, &cmd, err, "--json", "label", "unshare", "web", "p2", NULL), 0, err))
        CHECK(cmd != NULL && cmd->run == label_unshare && a.json == 1);
    if (CHECK_RC(parse(&action, &cmd, err, "label", "share", "--", "web", "-p", NULL), 0, err) && CHECK_EQ_INT(a.nargs, 2))
        CHECK_EQ_STR(a.args[1], "-p");
    static const struct {
        const char *argv[6];
        const char *want;
    } share_bad[] = {
        {{"label", "share"}, "label share: missing argument (usage: pipe2me-admin label share LABEL ID)"},
        {{"label", "share", "web"}, "label share: missing argument"},
        {{"label", "share", "web", "p2", "p3"}, "label share: too many arguments"},
        {{"label", "unshare", "web"}, "label unshare: missing argument (usage: pipe2me-admin label unshare LABEL ID)"},
        {{"label", "unshare", "web", "p2", "x"}, "label unshare: too many arguments"},
        {{"label", "share", "web", "p2", "--protocol", "tcp"}, "label share: option --protocol does not apply"},
        {{"label", "share", "web", "p2", "--label", "x"}, "label share: option --label does not apply"},
        {{"label", "unshare", "web", "p2", "-o", "f"}, "label unshare: option --output does not apply"},
        {{"label", "unshare", "web", "p2", "--digits", "8"}, "label unshare: option --digits does not apply"},
        {{"label", "sharex", "web", "p2"}, "label: unknown subcommand \"sharex\""},
        {{"label", "Share", "web", "p2"}, "label: unknown subcommand \"Share\""},
    };
    for (size_t i = 0; i < sizeof(share_bad) / sizeof(share_bad[0]); i++) {
        static char *argv[8];
        int argc = 0;
        argv[argc++] = "pipe2me-admin";
        for (size_t j = 0; j < 6 && share_bad[i].argv[j] != NULL; j++)
            argv[argc++] = (char *)share_bad[i].argv[j];
        argv[argc] = NULL;
        CHECK_CTX("label share refused row %zu: %s", i, share_bad[i].want);
        memset(&a, 0, sizeof(a));
        err[0] = '\0';
        check_refusal(admin_args_parse(argc, argv, &a, &action, &cmd, err), err, share_bad[i].want);
    }
    /* The handlers check LABEL and ID before they connect: hostile ones are refused here, with no
     * Redis anywhere (a connection attempt would fail with another message). */
    static const struct {
        const char *label, *id, *want;
    } share_hostile[] = {
        {"", "p2", "invalid label \"\""},
        {"-web", "p2", "invalid label \"-web\""},
        {"we b", "p2", "invalid label \"we b\""},
        {"web\n", "p2", "invalid label \"web\\x0a\""},
        {"web.example", "p2", "invalid label \"web.example\""},
        {"web", "", "invalid pod ID \"\""},
        {"web", "-p2", "invalid pod ID \"-p2\""},
        {"web", "p 2", "invalid pod ID \"p 2\""},
        {"web", "p2\x1b[2J", "invalid pod ID \"p2\\x1b[2J\""},
        {"web", "p/2", "invalid pod ID"},
    };
    for (size_t i = 0; i < sizeof(share_hostile) / sizeof(share_hostile[0]); i++) {
        for (int unshare = 0; unshare <= 1; unshare++) {
            CHECK_CTX("label %s refuses row %zu: %s", unshare ? "unshare" : "share", i, share_hostile[i].want);
            if (!CHECK_RC(parse(&action, &cmd, err, "label", unshare ? "unshare" : "share", "--", share_hostile[i].label,
                                share_hostile[i].id, NULL),
                          0, err))
                continue;
            check_refusal(cmd->run(&a, err), err, share_hostile[i].want);
        }
    }
    static char longlabel[P2M_LABEL_MAX + 2], longid[P2M_ID_MAX + 2];
    memset(longlabel, 'a', P2M_LABEL_MAX + 1);
    memset(longid, 'i', P2M_ID_MAX + 1);
    CHECK_CTX("label share: a label or ID one byte too long");
    if (CHECK_RC(parse(&action, &cmd, err, "label", "share", longlabel, "p2", NULL), 0, err))
        check_refusal(cmd->run(&a, err), err, "invalid label");
    if (CHECK_RC(parse(&action, &cmd, err, "label", "share", "web", longid, NULL), 0, err))
        check_refusal(cmd->run(&a, err), err, "invalid pod ID");

    CHECK_CTX("settings: after --, a setting option is a word");
    check_refusal(parse(&action, &cmd, err, "pod", "set", "p1", "--", "--digits", "8", NULL), err, "too many arguments");

    CHECK_CTX("settings refused");
    static const struct {
        const char *argv[8];
        const char *want;
    } bad[] = {
        {{"pod", "add", "p", "--digits", "9"}, "option --digits: expected 6 or 8, not \"9\""},
        {{"pod", "add", "p", "--digits", "7"}, "option --digits: expected 6 or 8, not \"7\""},
        {{"pod", "add", "p", "--digits", ""}, "option --digits: expected 6 or 8, not \"\""},
        {{"pod", "add", "p", "--digits="}, "option --digits: expected 6 or 8, not \"\""},
        {{"pod", "add", "p", "--digits", "08"}, "option --digits: expected 6 or 8"},
        {{"pod", "add", "p", "--digits", " 8"}, "option --digits: expected 6 or 8"},
        {{"pod", "add", "p", "--digits", "8 "}, "option --digits: expected 6 or 8"},
        {{"pod", "add", "p", "--digits", "-6"}, "option --digits: expected 6 or 8"},
        {{"pod", "add", "p", "--digits", "1e9"}, "option --digits: expected 6 or 8"},
        {{"pod", "add", "p", "--digits", "6\n"}, "option --digits: expected 6 or 8, not \"6\\x0a\""},
        {{"pod", "add", "p", "--digits"}, "option --digits needs an argument: 6 or 8"},
        {{"pod", "add", "p", "--digits", "6", "--digits", "6"}, "option --digits given twice"},
        {{"pod", "add", "p", "--digits", "6", "--digits=8"}, "option --digits given twice"},
        {{"pod", "add", "p", "--digitsx", "6"}, "unknown option \"--digitsx\""},
        {{"pod", "add", "p", "--token-reuse", "yes"}, "option --token-reuse: expected none or same-address, not \"yes\""},
        {{"pod", "add", "p", "--token-reuse", "Same-Address"}, "option --token-reuse: expected none or same-address"},
        {{"pod", "add", "p", "--token-reuse", "same-address\x1b"}, "not \"same-address\\x1b\""},
        {{"pod", "add", "p", "--token-reuse", ""}, "option --token-reuse: expected none or same-address, not \"\""},
        {{"pod", "add", "p", "--token-reuse"}, "option --token-reuse needs an argument: none or same-address"},
        {{"pod", "set", "p", "--token-reuse", "none", "--token-reuse=same-address"}, "option --token-reuse given twice"},
        {{"label", "add", "p", "l", "--protocol", "ftp"}, "option --protocol: expected http, https or tcp, not \"ftp\""},
        {{"label", "add", "p", "l", "--protocol", "TCP"}, "option --protocol: expected http, https or tcp"},
        {{"label", "add", "p", "l", "--protocol", "http:"}, "option --protocol: expected http, https or tcp"},
        {{"label", "add", "p", "l", "--protocol="}, "option --protocol: expected http, https or tcp"},
        {{"label", "add", "p", "l", "--protocol", "tcp", "--protocol", "tcp"}, "option --protocol given twice"},
        {{"pod", "set", "p"}, "pod set: nothing to change"},
        {{"label", "set", "l"}, "label set: nothing to change"},
        {{"pod", "set"}, "missing argument"},
        {{"label", "set", "l", "m", "--protocol", "tcp"}, "too many arguments"},
        {{"pod", "show", "p", "--digits", "8"}, "pod show: option --digits does not apply"},
        {{"pod", "series"}, "missing argument (usage: pipe2me-admin pod series ID)"},
        {{"pod", "series", "p", "q"}, "too many arguments (usage: pipe2me-admin pod series ID)"},
        {{"pod", "series", "p", "--label", "x"}, "pod series: option --label does not apply"},
        {{"pod", "series", "p", "-o", "x"}, "pod series: option --output does not apply"},
        {{"pod", "series", "p", "--listen", "127.0.0.1:1"}, "pod series: option --listen does not apply"},
        {{"pod", "rotate-secret", "p", "--digits", "8"}, "option --digits does not apply"},
        {{"pod", "add", "p", "--protocol", "tcp"}, "pod add: option --protocol does not apply"},
        {{"pod", "set", "p", "--protocol", "tcp"}, "pod set: option --protocol does not apply"},
        {{"pod", "set", "p", "--digits", "8", "--label", "x"}, "option --label does not apply"},
        {{"pod", "set", "p", "--digits", "8", "-o", "x"}, "option --output does not apply"},
        {{"label", "set", "l", "--protocol", "tcp", "--digits", "8"}, "label set: option --digits does not apply"},
        {{"label", "ls", "--protocol", "tcp"}, "label ls: option --protocol does not apply"},
        {{"label", "add", "p", "l", "--token-reuse", "none"}, "option --token-reuse does not apply"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        static char *argv[10];
        int argc = 0;
        argv[argc++] = "pipe2me-admin";
        for (size_t j = 0; j < 8 && bad[i].argv[j] != NULL; j++)
            argv[argc++] = (char *)bad[i].argv[j];
        argv[argc] = NULL;
        CHECK_CTX("settings refused row %zu: %s", i, bad[i].want);
        memset(&a, 0, sizeof(a));
        err[0] = '\0';
        check_refusal(admin_args_parse(argc, argv, &a, &action, &cmd, err), err, bad[i].want);
    }

    CHECK_CTX("token add: every option, and the defaults left to the handler");
    if (CHECK_RC(parse(&action, &cmd, err, "token", "add", "--uses", "1000000", "--tunnels=32", "--expires", "3650d",
                       "--label-prefix", "dev-", NULL),
                 0, err)) {
        CHECK(cmd != NULL && cmd->run == token_add);
        CHECK_EQ_INT(a.uses, 1000000);
        CHECK_EQ_INT(a.tunnels, 32);
        CHECK_EQ_INT(a.expires, 3650LL * 86400);
        CHECK_EQ_STR(a.label_prefix, "dev-");
    }
    if (CHECK_RC(parse(&action, &cmd, err, "token", "add", NULL), 0, err)) {
        CHECK_EQ_INT(a.uses, 0);
        CHECK_EQ_INT(a.tunnels, 0);
        CHECK_EQ_INT(a.expires, 0);
        CHECK(a.label_prefix == NULL);
    }
    static const struct {
        const char *v;
        long long secs;
    } durations[] = {{"1s", 1},
                     {"30s", 30},
                     {"10m", 600},
                     {"12h", 43200},
                     {"7d", 604800},
                     {"315360000s", 315360000},
                     {"5256000m", 315360000},
                     {"87600h", 315360000}};
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        CHECK_CTX("token add --expires %s", durations[i].v);
        if (CHECK_RC(parse(&action, &cmd, err, "token", "add", "--expires", durations[i].v, NULL), 0, err))
            CHECK_EQ_INT(a.expires, durations[i].secs);
    }
    CHECK_CTX("token ls and rm");
    CHECK(parse(&action, &cmd, err, "token", "ls", "--json", NULL) == 0 && cmd != NULL && cmd->run == token_ls && a.json);
    if (CHECK_RC(parse(&action, &cmd, err, "token", "rm", "0123456789ab", NULL), 0, err) && CHECK_EQ_INT(a.nargs, 1))
        CHECK(cmd != NULL && cmd->run == token_rm);

    CHECK_CTX("token options refused");
#define EXP "option --expires: expected a duration such as 30s, 10m, 12h or 7d, at most 3650d"
#define PFX "option --label-prefix: expected 1 to 40 of a-z, 0-9 and '-', not starting with '-'"
    static const struct {
        const char *argv[6];
        const char *want;
    } tbad[] = {
        {{"token", "add", "--expires", ""}, EXP ", not \"\""},
        {{"token", "add", "--expires="}, EXP ", not \"\""},
        {{"token", "add", "--expires", "0s"}, EXP ", not \"0s\""},
        {{"token", "add", "--expires", "0d"}, EXP},
        {{"token", "add", "--expires", "-1d"}, EXP ", not \"-1d\""},
        {{"token", "add", "--expires", "+1d"}, EXP},
        {{"token", "add", "--expires", "1y"}, EXP ", not \"1y\""},
        {{"token", "add", "--expires", "3651d"}, EXP},
        {{"token", "add", "--expires", "99999d"}, EXP},
        {{"token", "add", "--expires", "315360001s"}, EXP},
        {{"token", "add", "--expires", "87601h"}, EXP},
        {{"token", "add", "--expires", "99999999999999999999d"}, EXP},
        {{"token", "add", "--expires", "1.5h"}, EXP},
        {{"token", "add", "--expires", "10"}, EXP ", not \"10\""},
        {{"token", "add", "--expires", "d"}, EXP},
        {{"token", "add", "--expires", "s"}, EXP},
        {{"token", "add", "--expires", "07d"}, EXP},
        {{"token", "add", "--expires", " 7d"}, EXP},
        {{"token", "add", "--expires", "7d "}, EXP},
        {{"token", "add", "--expires", "7D"}, EXP},
        {{"token", "add", "--expires", "1h30m"}, EXP},
        {{"token", "add", "--expires", "7d\n"}, EXP ", not \"7d\\x0a\""},
        {{"token", "add", "--expires"}, "option --expires needs an argument"},
        {{"token", "add", "--expires", "1d", "--expires", "2d"}, "option --expires given twice"},
        {{"token", "add", "--uses", "0"}, "option --uses: expected a number from 1 to 1000000, not \"0\""},
        {{"token", "add", "--uses", "1000001"}, "option --uses: expected a number from 1 to 1000000"},
        {{"token", "add", "--uses", "-1"}, "option --uses: expected a number from 1 to 1000000"},
        {{"token", "add", "--uses", ""}, "option --uses: expected a number from 1 to 1000000, not \"\""},
        {{"token", "add", "--uses", "01"}, "option --uses: expected a number from 1 to 1000000"},
        {{"token", "add", "--uses", "1e3"}, "option --uses: expected a number from 1 to 1000000"},
        {{"token", "add", "--uses", "99999999999999999999"}, "option --uses: expected a number from 1 to 1000000"},
        {{"token", "add", "--uses", " 1"}, "option --uses: expected a number from 1 to 1000000"},
        {{"token", "add", "--uses", "1", "--uses", "1"}, "option --uses given twice"},
        {{"token", "add", "--tunnels", "0"}, "option --tunnels: expected a number from 1 to 32, not \"0\""},
        {{"token", "add", "--tunnels", "33"}, "option --tunnels: expected a number from 1 to 32, not \"33\""},
        {{"token", "add", "--tunnels", "4x"}, "option --tunnels: expected a number from 1 to 32"},
        {{"token", "add", "--tunnels"}, "option --tunnels needs an argument"},
        {{"token", "add", "--label-prefix", ""}, PFX ", not \"\""},
        {{"token", "add", "--label-prefix", "dev.lab"}, PFX ", not \"dev.lab\""},
        {{"token", "add", "--label-prefix", "Dev"}, PFX ", not \"Dev\""},
        {{"token", "add", "--label-prefix", "-dev"}, PFX},
        {{"token", "add", "--label-prefix", "dev_"}, PFX},
        {{"token", "add", "--label-prefix", "d\xc3\xa9v"}, PFX ", not \"d\\xc3\\xa9v\""},
        {{"token", "add", "--label-prefix", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}, PFX}, /* 41 */
        {{"token", "add", "--label-prefix", "a", "--label-prefix", "b"}, "option --label-prefix given twice"},
        {{"token", "add", "x"}, "token add: too many arguments"},
        {{"token", "add", "--label", "web"}, "token add: option --label does not apply"},
        {{"token", "add", "--digits", "8"}, "token add: option --digits does not apply"},
        {{"token", "ls", "--uses", "2"}, "token ls: option --uses does not apply"},
        {{"token", "rm", "0123456789ab", "--tunnels", "2"}, "token rm: option --tunnels does not apply"},
        {{"token", "rm"}, "token rm: missing argument"},
        {{"token", "rm", "a", "b"}, "token rm: too many arguments"},
        {{"token", "frob"}, "unknown"},
        {{"pod", "add", "p", "--uses", "2"}, "pod add: option --uses does not apply"},
        {{"pod", "add", "p", "--expires", "1d"}, "pod add: option --expires does not apply"},
        {{"pod", "add", "p", "--label-prefix", "x"}, "pod add: option --label-prefix does not apply"},
    };
#undef EXP
#undef PFX
    for (size_t i = 0; i < sizeof(tbad) / sizeof(tbad[0]); i++) {
        static char *argv[8];
        int argc = 0;
        argv[argc++] = "pipe2me-admin";
        for (size_t j = 0; j < 6 && tbad[i].argv[j] != NULL; j++)
            argv[argc++] = (char *)tbad[i].argv[j];
        argv[argc] = NULL;
        CHECK_CTX("token refused row %zu: %s", i, tbad[i].want);
        memset(&a, 0, sizeof(a));
        err[0] = '\0';
        check_refusal(admin_args_parse(argc, argv, &a, &action, &cmd, err), err, tbad[i].want);
    }
    CHECK_CTX("registrar ls, drain --to, undrain");
    if (CHECK_RC(parse(&action, &cmd, err, "registrar", "drain", "rega", "--to", "https://b.example:8443/p2m//", NULL), 0, err)) {
        CHECK(cmd != NULL && cmd->run == registrar_drain);
        CHECK_EQ_STR(a.drain_to, "https://b.example:8443/p2m");
    }
    if (CHECK_RC(parse(&action, &cmd, err, "--to=https://b.example", "registrar", "drain", "rega", NULL), 0, err))
        CHECK_EQ_STR(a.drain_to, "https://b.example");
    if (CHECK_RC(parse(&action, &cmd, err, "registrar", "ls", "--json", NULL), 0, err))
        CHECK(cmd != NULL && cmd->run == registrar_ls && a.json == 1);
    if (CHECK_RC(parse(&action, &cmd, err, "registrar", "undrain", "rega", NULL), 0, err))
        CHECK(cmd != NULL && cmd->run == registrar_undrain);
#define TO "option --to: expected an https:// URL (no user info, query or fragment)"
    static const struct {
        const char *argv[7];
        const char *want;
    } rbad[] = {
        {{"registrar", "drain", "rega"}, "registrar drain: nothing to change"},
        {{"registrar", "drain", "--to", "https://b.example"}, "registrar drain: missing argument"},
        {{"registrar", "drain", "rega", "--to"}, "option --to needs an argument"},
        {{"registrar", "drain", "rega", "--to", ""}, TO ", not \"\""},
        {{"registrar", "drain", "rega", "--to", "http://b.example"}, TO ", not \"http://b.example\""},
        {{"registrar", "drain", "rega", "--to", "https://"}, TO},
        {{"registrar", "drain", "rega", "--to", "https:///x"}, TO},
        {{"registrar", "drain", "rega", "--to", "https://u@b.example"}, TO},
        {{"registrar", "drain", "rega", "--to", "https://b.example/?x"}, TO},
        {{"registrar", "drain", "rega", "--to", "https://b.example/#x"}, TO},
        {{"registrar", "drain", "rega", "--to", "https://b.example/\n"}, TO},
        {{"registrar", "drain", "rega", "--to", "https://b.example", "--to", "https://c.example"}, "option --to given twice"},
        {{"registrar", "ls", "--to", "https://b.example"}, "registrar ls: option --to does not apply"},
        {{"registrar", "undrain", "rega", "--to", "https://b.example"}, "registrar undrain: option --to does not apply"},
        {{"registrar", "undrain"}, "registrar undrain: missing argument"},
        {{"registrar", "ls", "x"}, "registrar ls: too many arguments"},
        {{"token", "add", "--to", "https://b.example"}, "token add: option --to does not apply"},
    };
#undef TO
    for (size_t i = 0; i < sizeof(rbad) / sizeof(rbad[0]); i++) {
        static char *argv[9];
        int argc = 0;
        argv[argc++] = "pipe2me-admin";
        for (size_t j = 0; j < 7 && rbad[i].argv[j] != NULL; j++)
            argv[argc++] = (char *)rbad[i].argv[j];
        argv[argc] = NULL;
        CHECK_CTX("registrar refused row %zu: %s", i, rbad[i].want);
        memset(&a, 0, sizeof(a));
        err[0] = '\0';
        check_refusal(admin_args_parse(argc, argv, &a, &action, &cmd, err), err, rbad[i].want);
    }
    {
        static char long_prefix[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-"; /* 40, a hyphen last */
        CHECK_CTX("token add --label-prefix of 40");
        if (CHECK_RC(parse(&action, &cmd, err, "token", "add", "--label-prefix", long_prefix, NULL), 0, err))
            CHECK_EQ_STR(a.label_prefix, long_prefix);
    }

    CHECK_CTX("--service: pod add and rotate-secret, repeatable, borrowed from argv");
    if (CHECK_RC(parse(&action, &cmd, err, "pod", "add", "p1", "--label", "web", "--service", "web:http=127.0.0.1:8080",
                       "--service=web=[::1]:8443", "-o", "f.json", NULL),
                 0, err) &&
        CHECK_EQ_INT(a.nservices, 2)) {
        CHECK(cmd != NULL && cmd->run == pod_add);
        CHECK_EQ_STR(a.services[0], "web:http=127.0.0.1:8080");
        CHECK_EQ_STR(a.services[1], "web=[::1]:8443");
    }
    if (CHECK_RC(parse(&action, &cmd, err, "pod", "rotate-secret", "p1", "--service", "web=h:1", NULL), 0, err)) {
        CHECK(cmd != NULL && cmd->run == pod_rotate_secret);
        CHECK_EQ_INT(a.nservices, 1);
    }
    static const struct {
        const char *argv[6];
        const char *want;
    } service_bad[] = {
        {{"pod", "ls", "--service", "web=h:1"}, "pod ls: option --service does not apply"},
        {{"pod", "set", "p", "--digits", "8", "--service=web=h:1"}, "pod set: option --service does not apply"},
        {{"label", "add", "p", "web", "--service", "web=h:1"}, "label add: option --service does not apply"},
        {{"check", "--service", "web=h:1"}, "check: option --service does not apply"},
        {{"pod", "add", "p", "--service"}, "option --service needs an argument"},
        {{"pod", "add", "p", "--service="}, "option --service: empty argument"},
        {{"pod", "add", "p", "--services", "web=h:1"}, "unknown option \"--services\""},
    };
    for (size_t i = 0; i < sizeof(service_bad) / sizeof(service_bad[0]); i++) {
        static char *argv[8];
        int argc = 0;
        argv[argc++] = "pipe2me-admin";
        for (size_t j = 0; j < 6 && service_bad[i].argv[j] != NULL; j++)
            argv[argc++] = (char *)service_bad[i].argv[j];
        argv[argc] = NULL;
        CHECK_CTX("--service refused row %zu: %s", i, service_bad[i].want);
        memset(&a, 0, sizeof(a));
        err[0] = '\0';
        check_refusal(admin_args_parse(argc, argv, &a, &action, &cmd, err), err, service_bad[i].want);
    }
    /* The values are the handlers' to check, before they connect: hostile ones are refused here with
     * no Redis anywhere (a connection attempt would fail with another message). */
    static const struct {
        const char *svc, *svc2; /* svc2: a second --service, or NULL */
        const char *want;
    } service_hostile[] = {
        {"web", NULL, "option --service: expected LABEL[:PROTOCOL]=HOST:PORT, not \"web\""},
        {"web:http", NULL, "expected LABEL[:PROTOCOL]=HOST:PORT"},
        {"=127.0.0.1:1", NULL, "option --service \"=127.0.0.1:1\": invalid label"},
        {":http=127.0.0.1:1", NULL, "invalid label"},
        {"-web=127.0.0.1:1", NULL, "invalid label"},
        {"we b=127.0.0.1:1", NULL, "invalid label"},
        {"web\n=127.0.0.1:1", NULL, "\"web\\x0a=127.0.0.1:1\": invalid label"},
        {"web:ftp=127.0.0.1:1", NULL, "expected the protocol http, https or tcp"},
        {"web:TCP=127.0.0.1:1", NULL, "expected the protocol http, https or tcp"},
        {"web:=127.0.0.1:1", NULL, "expected the protocol http, https or tcp"},
        {"web:http:tcp=127.0.0.1:1", NULL, "expected the protocol http, https or tcp"},
        {"web=", NULL, "HOST:PORT"},
        {"web=127.0.0.1", NULL, "HOST:PORT"},
        {"web=127.0.0.1:0", NULL, "HOST:PORT"},
        {"web=127.0.0.1:65536", NULL, "HOST:PORT"},
        {"web=127.0.0.1:80x", NULL, "HOST:PORT"},
        {"web=ho st:80", NULL, "HOST:PORT"},
        {"web=h:80\x1b[2J", NULL, "\"web=h:80\\x1b[2J\": HOST:PORT"},
        {"api=127.0.0.1:1", NULL, "option --service: label api is not one of pod p1's labels"},
        {"web=127.0.0.1:1", "WEB=127.0.0.1:2", "option --service: web with protocol https given twice"},
        {"web:https=127.0.0.1:1", "web=127.0.0.1:2", "web with protocol https given twice"},
        {"web:tcp=127.0.0.1:1", "web:tcp=127.0.0.1:2", "web with protocol tcp given twice"},
    };
    for (size_t i = 0; i < sizeof(service_hostile) / sizeof(service_hostile[0]); i++) {
        CHECK_CTX("pod add --service refuses row %zu: %s", i, service_hostile[i].want);
        int rc = service_hostile[i].svc2 == NULL
                     ? parse(&action, &cmd, err, "pod", "add", "p1", "--label", "web", "--service", service_hostile[i].svc, NULL)
                     : parse(&action, &cmd, err, "pod", "add", "p1", "--label", "web", "--service", service_hostile[i].svc,
                             "--service", service_hostile[i].svc2, NULL);
        if (CHECK_RC(rc, 0, err))
            check_refusal(cmd->run(&a, err), err, service_hostile[i].want);
        if (strstr(service_hostile[i].want, "not one of") != NULL)
            continue; /* rotate-secret learns the pod's labels from Redis */
        CHECK_CTX("pod rotate-secret --service refuses row %zu: %s", i, service_hostile[i].want);
        rc = service_hostile[i].svc2 == NULL
                 ? parse(&action, &cmd, err, "pod", "rotate-secret", "p1", "--service", service_hostile[i].svc, NULL)
                 : parse(&action, &cmd, err, "pod", "rotate-secret", "p1", "--service", service_hostile[i].svc, "--service",
                         service_hostile[i].svc2, NULL);
        if (CHECK_RC(rc, 0, err))
            check_refusal(cmd->run(&a, err), err, service_hostile[i].want);
    }
    CHECK_CTX("pod add --service without --label: the generated label is not known yet");
    if (CHECK_RC(parse(&action, &cmd, err, "pod", "add", "p1", "--service", "web=127.0.0.1:1", NULL), 0, err))
        check_refusal(cmd->run(&a, err), err, "option --service names the pod's labels: give them with --label");

    CHECK_CTX("limits");
    static char big[ADMIN_ARG_MAX + 2];
    memset(big, 'a', ADMIN_ARG_MAX + 1);
    check_refusal(parse(&action, &cmd, err, "pod", "show", big, NULL), err, "argument 3 is longer than 4096 bytes");
    big[ADMIN_ARG_MAX] = '\0';
    CHECK_RC(parse(&action, &cmd, err, "pod", "show", big, NULL), 0, err);
    check_refusal(parse(&action, &cmd, err, "pod", "add", "p", "--label", "1", "--label", "2", "--label", "3", "--label", "4",
                        "--label", "5", "--label", "6", "--label", "7", "--label", "8", "--label", "9", "--label", "10", "--label",
                        "11", "--label", "12", "--label", "13", "--label", "14", "--label", "15", "--label", "16", "--label", "17",
                        "--label", "18", "--label", "19", "--label", "20", "--label", "21", "--label", "22", "--label", "23",
                        "--label", "24", "--label", "25", "--label", "26", "--label", "27", "--label", "28", "--label", "29",
                        "--label", "30", "--label", "31", "--label", "32", "--label", "33", NULL),
                  err, "too many --label options (at most 32)");
    {
        static char *sv[2 + 2 * (ADMIN_SERVICES_MAX + 1) + 4];
        int sc = 0;
        sv[sc++] = "pipe2me-admin";
        sv[sc++] = "pod";
        sv[sc++] = "add";
        sv[sc++] = "p";
        for (int i = 0; i <= ADMIN_SERVICES_MAX; i++) {
            sv[sc++] = "--service";
            sv[sc++] = "web=127.0.0.1:1";
        }
        sv[sc] = NULL;
        memset(&a, 0, sizeof(a));
        check_refusal(admin_args_parse(sc, sv, &a, &action, &cmd, err), err, "too many --service options (at most 32)");
        memset(&a, 0, sizeof(a));
        if (CHECK_RC(admin_args_parse(sc - 2, sv, &a, &action, &cmd, err), 0, err))
            CHECK_EQ_INT(a.nservices, ADMIN_SERVICES_MAX);
    }
    static char *argv[ADMIN_ARGC_MAX + 2];
    for (int i = 0; i <= ADMIN_ARGC_MAX; i++)
        argv[i] = i == 0 ? "pipe2me-admin" : i == 1 ? "pod" : i == 2 ? "ls" : "--json";
    memset(&a, 0, sizeof(a));
    check_refusal(admin_args_parse(ADMIN_ARGC_MAX + 1, argv, &a, &action, &cmd, err), err, "too many arguments (at most 256)");
    memset(&a, 0, sizeof(a));
    CHECK_RC(admin_args_parse(ADMIN_ARGC_MAX, argv, &a, &action, &cmd, err), 0, err);
    return check_done("admin_args");
}
