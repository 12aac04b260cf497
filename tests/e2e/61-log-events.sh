#!/usr/bin/env bash
# shellcheck disable=SC2016 # the backquotes in the patterns are the check's own, not expansions
# The log event catalogue (docs/OPERATIONS.md, Log events) lists every event the programs can log,
# at the levels they log it, and nothing else. tests/tools/log_events.py follows every p2m_log call
# in lib/, registrar/, relay/, pod/ and tools/ back to its literals: plain ones, `?:` of them, and
# the arguments given to wrappers (tunnel_log, reg_failed, P2M_LOG_ERR, ...) at each of their calls;
# an event it cannot follow fails the check, as does any difference from the catalogue.
#
# Then the same check on copies of the tree, each changed in one way it must catch: a new event
# (literal, `?:`, through a new function or macro wrapper, through P2M_LOG_ERR), an event passed
# as a variable or through a wrapper called with one, p2m_log taken as a pointer, a row missing
# from the catalogue, a row for an event no longer logged, a wrong level.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require python3
TOOL=$P2M_SOURCE_DIR/tests/tools/log_events.py
DOC=docs/OPERATIONS.md

# ---- the tree as it is
if ! python3 "$TOOL" check --source "$P2M_SOURCE_DIR" >"$OUT" 2>"$ERR"; then
    fail "the log event catalogue does not match the code:"$'\n'"$(cat "$OUT" "$ERR")"
fi
p2m_ok
expect_status 0 python3 "$TOOL" list --source "$P2M_SOURCE_DIR"
NAMES=$(cut -f2 "$OUT" | sort -u | wc -l)
((NAMES >= 100)) || fail "only $NAMES event names found: the extraction lost some"
p2m_ok
# One of each way an event reaches p2m_log, found with its program and levels.
for want in $'pipe2me-relay\ttunnel_close\tinfo' $'pipe2me-pod\ttunnel_close\tinfo' \
    $'pipe2me-pod\tregister_retry\tdebug' $'pipe2me-pod\tregister_limited\terror' \
    $'pipe2me-pod\tregistrar_unavailable\twarn' $'pipe2me-pod\tpreconn_eof\tinfo' \
    $'pipe2me-registrar\tstartup_failed\terror' $'pipe2me-registrar\ttcp_port\tinfo, warn' \
    $'Several programs\tredis_disconnected\tinfo, warn'; do
    grep -qF -- "$want"$'\t' "$OUT" || fail "log_events.py list lacks $(p2m_show "$want")"
    p2m_ok
done

# ---- copies of the tree, each changed in one way
BASE=$T/base
mkdir -p "$BASE/docs"
for d in lib registrar relay pod tools; do
    cp -r -- "$P2M_SOURCE_DIR/$d" "$BASE/$d"
done
cp -- "$P2M_SOURCE_DIR/$DOC" "$BASE/$DOC"
expect_status 0 python3 "$TOOL" check --source "$BASE"

CASE=
# fresh NAME: a new copy of the tree in $CASE.
fresh() {
    CASE=$T/$1
    cp -r -- "$BASE" "$CASE"
}

# must_fail REGEX...: the check on $CASE fails, and its output matches every REGEX.
must_fail() {
    local re
    expect_status 1 python3 "$TOOL" check --source "$CASE"
    for re in "$@"; do
        grep -qE -- "$re" "$OUT" || fail "$(basename -- "$CASE"): the check's output lacks /$re/:"$'\n'"$(cat "$OUT")"
        p2m_ok
    done
}

# A new literal event, and one as a `?:` of literals (levels paired by their condition).
fresh literal
cat >>"$CASE/relay/relay.c" <<'EOF'
void t61_literal(int x)
{
    p2m_log(P2M_LOG_INFO, "t61_new_literal", "x=%d", x);
    p2m_log(x ? P2M_LOG_DEBUG : P2M_LOG_WARN, x ? "t61_then" : "t61_else", NULL);
}
EOF
must_fail 'pipe2me-relay logs `t61_new_literal` \(info\) at relay/relay\.c:' \
    'pipe2me-relay logs `t61_then` \(debug\)' 'pipe2me-relay logs `t61_else` \(warn\)'

# Through a new function wrapper (called from another file of its program) and a macro wrapper.
fresh wrapper
cat >>"$CASE/pod/pool.c" <<'EOF'
void t61_log(p2m_log_level_t level, const char *what, const char *event)
{
    p2m_log(level, event, "what=%s", what);
}
#define T61_WARN(ev) p2m_log(P2M_LOG_WARN, ev, NULL)
static void t61_macro(void)
{
    T61_WARN("t61_via_macro");
}
EOF
cat >>"$CASE/pod/status.c" <<'EOF'
void t61_log(p2m_log_level_t level, const char *what, const char *event);
static void t61_caller(int up)
{
    t61_log(up ? P2M_LOG_INFO : P2M_LOG_ERROR, "x", up ? "t61_up" : "t61_down");
}
EOF
must_fail 'pipe2me-pod logs `t61_up` \(info\) at pod/status\.c:' 'pipe2me-pod logs `t61_down` \(error\)' \
    'pipe2me-pod logs `t61_via_macro` \(warn\) at pod/pool\.c:'

# Through P2M_LOG_ERR (a macro of lib/, used in a program).
fresh logerr
printf '%s\n' 'void t61_err(void) { P2M_LOG_ERR("t61_through_log_err", "e=%d", 1); }' >>"$CASE/tools/admin/util.c"
must_fail 'pipe2me-admin logs `t61_through_log_err` \(error\) at tools/admin/util\.c:'

# An event in a variable cannot be followed: the check fails and names the call.
fresh variable
cat >>"$CASE/registrar/op.c" <<'EOF'
void t61_variable(int x)
{
    const char *ev = x ? "a" : "b";
    p2m_log(P2M_LOG_INFO, ev, NULL);
}
EOF
LINE=$(grep -n 'p2m_log(P2M_LOG_INFO, ev, NULL)' "$CASE/registrar/op.c" | cut -d: -f1)
must_fail "^registrar/op\\.c:$LINE: cannot follow the event argument \`ev\`"

# Nor a wrapper's parameter when one of its calls passes a variable, nor a level in a variable,
# nor a wrapper never called.
fresh wrapper_variable
cat >>"$CASE/relay/ports.c" <<'EOF'
static void t61_wrap(const char *event)
{
    p2m_log(P2M_LOG_INFO, event, NULL);
}
static void t61_unused(const char *event)
{
    p2m_log(P2M_LOG_INFO, event, NULL);
}
void t61_callers(int x)
{
    const char *name = x ? "a" : "b";
    p2m_log_level_t lvl = P2M_LOG_INFO;
    t61_wrap("t61_fine");
    t61_wrap(name);
    p2m_log(lvl, "t61_level_unknown", NULL);
}
EOF
must_fail '^relay/ports\.c:[0-9]+: cannot follow the event argument `name` \(logged through relay/ports\.c:[0-9]+\)' \
    '^relay/ports\.c:[0-9]+: cannot follow the level argument `lvl`' 'logs `t61_fine`' \
    '^relay/ports\.c:[0-9]+: t61_unused passes its parameter to p2m_log \(at relay/ports\.c:[0-9]+\) but is never called'

# Nor p2m_log or a wrapper taken as a pointer.
fresh pointer
printf '%s\n' 'void (*t61_logger)(p2m_log_level_t, const char *, const char *, ...) = p2m_log;' >>"$CASE/pod/echo.c"
printf '%s\n' 'void *t61_wrapper = (void *)tunnel_log;' >>"$CASE/relay/sni.c"
must_fail '^pod/echo\.c:[0-9]+: p2m_log used other than in a call' '^relay/sni\.c:[0-9]+: tunnel_log used other than in a call'

# The catalogue: a row missing, a row for an event no longer logged, a wrong level.
fresh catalogue
python3 - "$CASE/$DOC" <<'EOF'
import sys
path = sys.argv[1]
lines = open(path).read().split("\n")
out = []
for line in lines:
    if line.startswith("| `redis_connected` |"):
        continue  # missing
    if line.startswith("| `register_single` |"):
        line = line.replace("| warn |", "| info |", 1)  # wrong level
    out.append(line)
    if line.startswith("| `relay_start` |"):
        out.append("| `t61_gone` | info | `x=` | Nothing. |")  # not logged
open(path, "w").write("\n".join(out))
EOF
must_fail 'Several programs logs `redis_connected` \(info\) at lib/redis\.c:' \
    "^$DOC:[0-9]+: the catalogue lists \`t61_gone\` under pipe2me-relay, which does not log it" \
    "^$DOC:[0-9]+: \`register_single\` \\(pipe2me-pod\\) is logged at warn, the catalogue says info"
