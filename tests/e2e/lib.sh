# tests/e2e/lib.sh: what every tests/e2e/NN-name.sh sources first.
#
# It gives the test a private temp dir $T, a private redis-server on a unix socket, a config
# file, free loopback ports, background programs whose output goes to $T/NAME.log, and
# assertions that say what was expected and what came back. On exit it stops only the pids it
# started (TERM, then KILL after a bounded wait), dumps every $T/*.log when the test failed,
# and removes $T (kept when P2M_KEEP_TMP=1).
#
# ctest sets P2M_BUILD_DIR and P2M_SOURCE_DIR; by hand, `bash tests/e2e/01-admin-pod.sh` uses
# <repo>/build. Needs bash >= 4.4, redis-server, redis-cli, jq and ss (iproute2).
#
# Functions that record state (p2m_bg, p2m_start_redis, p2m_free_port, ...) must run in the
# test's own shell, never inside $(...) or a pipeline.
# shellcheck shell=bash

set -eEuo pipefail
export LC_ALL=C
# Everything runs on loopback: no proxy from the environment, which curl and pipe2me-pod would use
# (tests/e2e/63-pod-proxy.sh sets its own).
unset http_proxy https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

P2M_E2E_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
: "${P2M_SOURCE_DIR:=$(cd -- "$P2M_E2E_DIR/../.." && pwd)}"
: "${P2M_BUILD_DIR:=$P2M_SOURCE_DIR/build}"
export P2M_SOURCE_DIR P2M_BUILD_DIR

# shellcheck source=common.sh
. "$P2M_E2E_DIR/common.sh"

P2M_TEST=$(basename -- "$0" .sh)
P2M_CHECKS=0        # assertions passed
P2M_MAIN_PID=$$     # the test's own shell (fail in a subshell leaves a note, see fail)
P2M_REDIS_PID=

# A unix socket path must fit in sun_path (107 bytes): keep $T short when TMPDIR is long.
p2m_tmp=${TMPDIR:-/tmp}
((${#p2m_tmp} <= 60)) || p2m_tmp=/tmp
T=$(mktemp -d "$p2m_tmp/p2m-$P2M_TEST.XXXXXX")
unset p2m_tmp
OUT=$T/stdout # what expect_status captured
ERR=$T/stderr
P2M_CA=$T/state/ca.pem # the CA hreq and the other curl helpers trust: the registrar's, unless a test sets another

# ---------------------------------------------------------------- processes
# (p2m_bg, p2m_kill, p2m_alive, p2m_dead: common.sh)

p2m_cleanup() {
    local rc=$? f
    set +eE
    trap - EXIT ERR
    p2m_stop_all

    if ((rc == 0)) && [[ -s $T/failed-in-subshell ]]; then
        echo "e2e: a check failed inside a command substitution:" >&2
        cat -- "$T/failed-in-subshell" >&2
        rc=1
    fi
    if ((rc != 0)); then
        echo "e2e: $P2M_TEST FAILED (status $rc) after $P2M_CHECKS checks passed" >&2
        for f in "$T"/*.log; do
            [[ -e $f ]] || continue
            echo "======== $(basename -- "$f") ========" >&2
            cat -- "$f" >&2
        done
    else
        echo "e2e: $P2M_TEST: $P2M_CHECKS checks passed"
    fi
    if [[ ${P2M_KEEP_TMP:-0} == 1 ]]; then
        echo "e2e: kept $T" >&2
    else
        rm -rf -- "$T"
    fi
    exit "$rc"
}

p2m_on_err() {
    echo "FAIL $(p2m_where): command failed with status $1: $2" >&2
}

trap p2m_cleanup EXIT
trap 'p2m_on_err $? "$BASH_COMMAND"' ERR
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- assertions

# The test-script line that led here: the innermost caller outside lib.sh and common.sh and, when that line is
# inside one of the script's own helpers, the line of the script that called the helper
# ("10-registrar-register.sh:95 (from line 240)").
p2m_where() {
    local i n=${#BASH_SOURCE[@]} outer
    for ((i = 1; i < n; i++)); do
        if [[ ${BASH_SOURCE[i]} != "${BASH_SOURCE[0]}" && ${BASH_SOURCE[i]} != "$P2M_E2E_DIR/common.sh" ]]; then
            outer=${BASH_LINENO[n - 2]}
            if ((i < n - 1)) && [[ $outer != "${BASH_LINENO[i - 1]}" ]]; then
                echo "$(basename -- "${BASH_SOURCE[i]}"):${BASH_LINENO[i - 1]} (from line $outer)"
            else
                echo "$(basename -- "${BASH_SOURCE[i]}"):${BASH_LINENO[i - 1]}"
            fi
            return
        fi
    done
    basename -- "$0"
}

# Shows a value for a failure message: quoted, with unprintable bytes made visible.
p2m_show() {
    if [[ $1 =~ ^[[:print:]]*$ ]]; then
        printf "'%s'" "$1"
    else
        printf '%q' "$1"
    fi
}

p2m_cmdline() {
    local a s=
    for a in "$@"; do
        s+=" $(p2m_show "$a")"
    done
    echo "${s# }"
}

p2m_ok() { P2M_CHECKS=$((P2M_CHECKS + 1)); }

# fail MSG...: reports where and why, and ends the test. Called inside a command substitution
# ("$(json ...)") it can only end that subshell, so it also leaves a note that p2m_cleanup turns
# into the test's failure; a background job's failure (p2m_bg, P2M_IN_BG) is judged by its waiter.
fail() {
    echo "FAIL $(p2m_where): $*" >&2
    if [[ $BASHPID != "$P2M_MAIN_PID" && -z ${P2M_IN_BG:-} ]]; then
        echo "FAIL $(p2m_where): $*" >>"$T/failed-in-subshell"
    fi
    exit 1
}

# p2m_require CMD...: fails unless every command is installed.
p2m_require() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || fail "$c is not installed"
    done
}

# expect_eq WANT GOT [MSG]
expect_eq() {
    if [[ $1 == "$2" ]]; then
        p2m_ok
        return 0
    fi
    fail "${3:-values differ}"$'\n'"  want: $(p2m_show "$1")"$'\n'"  got:  $(p2m_show "$2")"
}

# expect_match REGEX STRING [MSG]: STRING matches the extended REGEX.
expect_match() {
    if [[ $2 =~ $1 ]]; then
        p2m_ok
        return 0
    fi
    fail "${3:-no match}"$'\n'"  want: /$1/"$'\n'"  got:  $(p2m_show "$2")"
}

# expect_no_match REGEX STRING [MSG]
expect_no_match() {
    if ! [[ $2 =~ $1 ]]; then
        p2m_ok
        return 0
    fi
    fail "${3:-unexpected match}"$'\n'"  must not match: /$1/"$'\n'"  got: $(p2m_show "$2")"
}

# expect_status WANT CMD...: runs CMD with stdout in $OUT and stderr in $ERR and checks its
# exit status.
expect_status() {
    local want=$1 got=0
    shift
    "$@" >"$OUT" 2>"$ERR" || got=$?
    if [[ $got == "$want" ]]; then
        p2m_ok
        return 0
    fi
    fail "exit status $got, want $want: $(p2m_cmdline "$@")"$'\n'"--- stdout:"$'\n'"$(cat "$OUT")"$'\n'"--- stderr:"$'\n'"$(cat "$ERR")"
}

# expect_file_one_line FILE [REGEX]: FILE holds exactly one newline-terminated line, which
# matches REGEX if given.
expect_file_one_line() {
    local file=$1 re=${2:-} line
    if [[ $(wc -l <"$file") != 1 || $(tail -c 1 "$file" | wc -l) != 1 ]]; then
        fail "$(basename -- "$file"): want exactly one line, got:"$'\n'"$(cat -A "$file")"
    fi
    line=$(cat "$file")
    [[ -z $re ]] || expect_match "$re" "$line" "$(basename -- "$file"): line does not match"
    p2m_ok
}

# expect_empty FILE
expect_empty() {
    [[ -s $1 ]] && fail "$(basename -- "$1"): want empty, got:"$'\n'"$(cat -A "$1")"
    p2m_ok
}

# ---------------------------------------------------------------- ports and config
# (p2m_free_port, p2m_free_port_range, p2m_listening: common.sh)

# p2m_write_config [JSON [FILE]]: writes FILE (default $T/pipe2me.json) for loopback use on
# fresh ports, with JSON (an object) merged over it recursively, and exports P2M_CONFIG=FILE and
# the ports chosen: P2M_HTTPS_PORT, P2M_HTTP_PORT, P2M_METRICS_PORT (registrar.metrics_listen,
# whose default port two registrars on one host cannot share), P2M_RELAY_PORT_LO,
# P2M_RELAY_PORT_HI, and P2M_METRICS_URL, where the registrar serves /metrics. Call
# p2m_start_redis first (or set P2M_REDIS_SOCK) so that the config names the right socket.
# shellcheck disable=SC2120 # the argument is optional
p2m_write_config() {
    local extra=${1:-'{}'} file=${2:-$T/pipe2me.json}
    p2m_free_port P2M_HTTPS_PORT
    p2m_free_port P2M_HTTP_PORT
    p2m_free_port P2M_METRICS_PORT
    p2m_free_port_range P2M_RELAY_PORT_LO P2M_RELAY_PORT_HI 8
    P2M_METRICS_URL=http://127.0.0.1:$P2M_METRICS_PORT/metrics
    export P2M_HTTPS_PORT P2M_HTTP_PORT P2M_METRICS_PORT P2M_METRICS_URL P2M_RELAY_PORT_LO P2M_RELAY_PORT_HI
    mkdir -p "$T/state"
    jq -n --argjson extra "$extra" \
        --arg redis "unix:${P2M_REDIS_SOCK:-$T/redis.sock}" --arg state "$T/state" \
        --arg https "127.0.0.1:$P2M_HTTPS_PORT" --arg http "127.0.0.1:$P2M_HTTP_PORT" \
        --arg metrics "127.0.0.1:$P2M_METRICS_PORT" \
        --arg url "https://pipe2me.localhost:$P2M_HTTPS_PORT" \
        --arg ports "$P2M_RELAY_PORT_LO-$P2M_RELAY_PORT_HI" '
        {
            domain: "pipe2me.localhost",
            public_address: "127.0.0.1",
            redis: $redis,
            state_dir: $state,
            registrar: {https: $https, http: $http, url: $url, metrics_listen: $metrics},
            relay: {ports: $ports, listen: "127.0.0.1"}
        } * $extra' >"$file" || fail "p2m_write_config: bad JSON $(p2m_show "$extra")"
    export P2M_CONFIG=$file
}

# ---------------------------------------------------------------- redis

# rcli ARGS...: redis-cli on the test's redis.
rcli() {
    redis-cli -s "${P2M_REDIS_SOCK:-$T/redis.sock}" "$@"
}

# p2m_start_redis [ARGS...]: starts a private redis-server (AOF on, no RDB) on $T/redis.sock, with
# ARGS as further options (`--key-load-delay 100`), waits (300 tries, 0.1 s apart) for it to answer and exports
# P2M_REDIS_SOCK. Its data stays in $T across restarts.
p2m_start_redis() {
    local i
    p2m_require redis-server redis-cli
    export P2M_REDIS_SOCK=$T/redis.sock
    rm -f -- "$P2M_REDIS_SOCK"
    p2m_bg redis redis-server --port 0 --unixsocket "$P2M_REDIS_SOCK" --unixsocketperm 700 --dir "$T" \
        --appendonly yes --daemonize no --save '' "$@"
    P2M_REDIS_PID=$P2M_BG_PID
    for ((i = 0; i < 300; i++)); do
        [[ $(rcli ping 2>/dev/null) == PONG ]] && return 0
        p2m_alive "$P2M_REDIS_PID" || fail "redis-server exited while starting (see redis.log)"
        sleep 0.1
    done
    fail "redis-server did not answer on $P2M_REDIS_SOCK after 300 tries"
}

# p2m_stop_redis: stops it gracefully (the AOF is flushed) and waits for it to exit.
p2m_stop_redis() {
    [[ -n $P2M_REDIS_PID ]] || fail "p2m_stop_redis: redis is not running"
    p2m_kill "$P2M_REDIS_PID" 10
    P2M_REDIS_PID=
}

p2m_restart_redis() {
    p2m_stop_redis
    p2m_start_redis
}

# The whole p2m:* keyspace as sorted text lines `KEY TYPE [TTL] VALUE`, read in one atomic
# script. Bytes outside printable ASCII are written \xNN; whether a key expires is recorded but
# not its TTL, which moves.
p2m_snapshot_lua='
local function esc(s)
  return (string.gsub(s, "[^%w%p ]", function(c) return string.format("\\x%02x", string.byte(c)) end))
end
local out, cursor = {}, "0"
repeat
  local r = redis.call("SCAN", cursor, "MATCH", "p2m:*", "COUNT", 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local t = redis.call("TYPE", k).ok
    local v = {}
    if t == "string" then
      v = {esc(redis.call("GET", k))}
    elseif t == "hash" then
      local h = redis.call("HGETALL", k)
      for i = 1, #h, 2 do v[#v + 1] = esc(h[i]) .. "=" .. esc(h[i + 1]) end
      table.sort(v)
    elseif t == "set" then
      for _, m in ipairs(redis.call("SMEMBERS", k)) do v[#v + 1] = esc(m) end
      table.sort(v)
    elseif t == "zset" then
      local z = redis.call("ZRANGE", k, 0, -1, "WITHSCORES")
      for i = 1, #z, 2 do v[#v + 1] = esc(z[i]) .. "@" .. z[i + 1] end
    elseif t == "list" then
      for _, m in ipairs(redis.call("LRANGE", k, 0, -1)) do v[#v + 1] = esc(m) end
    end
    local ttl = redis.call("PTTL", k) >= 0 and " expires" or ""
    out[#out + 1] = esc(k) .. " " .. t .. ttl .. " " .. table.concat(v, " ")
  end
until cursor == "0"
return out'

# redis_snapshot [FILE]: writes the p2m:* keyspace to FILE (default $T/snapshot).
redis_snapshot() {
    local file=${1:-$T/snapshot} raw
    raw=$(rcli EVAL "$p2m_snapshot_lua" 0) || fail "redis_snapshot: redis-cli failed: $raw"
    [[ $raw != ERR* ]] || fail "redis_snapshot: $raw"
    printf '%s\n' "$raw" | sed '/^$/d' | sort >"$file"
}

# expect_redis_unchanged [FILE]: the p2m:* keyspace is what redis_snapshot saved in FILE.
expect_redis_unchanged() {
    local before=${1:-$T/snapshot} d
    redis_snapshot "$T/snapshot.now"
    if ! d=$(diff -u "$before" "$T/snapshot.now"); then
        fail "Redis changed:"$'\n'"$d"
    fi
    p2m_ok
}

# ---------------------------------------------------------------- pipe2me-admin

# admin ARGS...: the built pipe2me-admin with the test's config.
admin() {
    "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$P2M_CONFIG" "$@"
}

# json FILTER [JQ_ARGS...]: jq -er on the last captured stdout ($OUT); fails the test when jq does.
json() {
    jq -er "$@" <"$OUT" || fail "jq $(p2m_cmdline "$@") on:"$'\n'"$(cat "$OUT")"
}

# admin_fails [-r REGEX] ARGS...: pipe2me-admin ARGS must exit with status 2, print nothing on
# stdout and one line `pipe2me-admin: REASON` on stderr (REASON matching REGEX), and leave
# Redis as it was.
admin_fails() {
    local re=
    if [[ ${1:-} == -r ]]; then
        re=$2
        shift 2
    fi
    redis_snapshot "$T/snapshot.before"
    expect_status 2 admin "$@"
    expect_empty "$OUT"
    expect_file_one_line "$ERR" '^pipe2me-admin: [^[:space:]]'
    [[ -z $re ]] || expect_match "$re" "$(cat "$ERR")" "admin $(p2m_cmdline "$@"): unexpected reason"
    expect_redis_unchanged "$T/snapshot.before"
}

# p2m_require_built PATH...: fails unless the build tree has these programs.
p2m_require_built() {
    local p
    for p in "$@"; do
        [[ -x $P2M_BUILD_DIR/$p ]] || fail "$P2M_BUILD_DIR/$p is missing: cmake -S . -B build && cmake --build build"
    done
}

# p2m_require_browser: node >= 20, Debian's chromium and playwright-core (tests/run installs them
# all; a browser test fails, never skips, without them). Sets CHROMIUM and BROWSER_DIR.
p2m_require_browser() {
    p2m_require node
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    ((major >= 20)) || fail "node $(node --version) is too old: playwright-core needs node >= 20"
    CHROMIUM=/usr/bin/chromium
    BROWSER_DIR=$P2M_SOURCE_DIR/tests/browser
    [[ -x $CHROMIUM ]] || fail "$CHROMIUM is missing: tests/run installs Debian's chromium (apt-get install chromium)"
    [[ -f $BROWSER_DIR/node_modules/playwright-core/package.json ]] ||
        fail "playwright-core is missing: (cd tests/browser && npm ci --no-audit --no-fund), as tests/run does"
}

# ---------------------------------------------------------------- polling
# (p2m_wait_until, p2m_listening, p2m_dead: common.sh)

# Predicates for p2m_wait_until (and for plain if/||).

# p2m_redis_is WANT ARGS...: `rcli ARGS` prints exactly WANT.
p2m_redis_is() { [[ $(rcli "${@:2}") == "$1" ]]; }

# p2m_log_has NAME REGEX: a line of $T/NAME.log matches the basic REGEX.
p2m_log_has() { grep -q -- "$2" "$T/$1.log"; }

# p2m_log_count NAME REGEX: prints how many lines of $T/NAME.log match the basic REGEX.
p2m_log_count() { grep -c -- "$2" "$T/$1.log" || true; }

# p2m_log_count_above NAME REGEX N: more than N lines of $T/NAME.log match.
p2m_log_count_above() { (($(p2m_log_count "$1" "$2") > $3)); }

# p2m_file_is FILE TEXT: FILE exists and holds TEXT (trailing newlines aside).
p2m_file_is() { [[ -f $1 && $(cat "$1") == "$2" ]]; }

# p2m_now_ms: the time in milliseconds, for the durations tests print.
p2m_now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# p2m_size_at_least FILE N: FILE exists and holds N bytes or more.
p2m_size_at_least() { (($(stat -c %s "$1" 2>/dev/null || echo 0) >= $2)); }

# expect_log_clean NAME [REGEX]: no line of $T/NAME.log matches the extended REGEX (default: an
# error line or a sanitizer report, $P2M_LOG_ERRORS).
P2M_LOG_ERRORS='level=error|ERROR: AddressSanitizer|runtime error:|LeakSanitizer'
expect_log_clean() {
    local lines
    if lines=$(grep -E -- "${2:-$P2M_LOG_ERRORS}" "$T/$1.log"); then
        fail "$1.log has lines matching /${2:-$P2M_LOG_ERRORS}/:"$'\n'"$lines"
    fi
    p2m_ok
}

# ---------------------------------------------------------------- stopping programs

# p2m_reap WHAT PID...: waits (a check each) until every PID, which p2m_bg started, has exited by
# itself ("WHAT PID exits"), and reaps it.
p2m_reap() {
    local what=$1 pid
    shift
    for pid in "$@"; do
        p2m_wait_until "$what $pid exits" p2m_dead "$pid"
        p2m_kill "$pid"
    done
}

# p2m_term [-t SECONDS] NAME PID: sends TERM to PID, which p2m_bg started, and waits (a check, as
# long as p2m_wait_until) until it exits; reaps it and sets P2M_EXIT_STATUS to its exit status.
p2m_term() {
    local limit=()
    if [[ $1 == -t ]]; then
        limit=(-t "$2")
        shift 2
    fi
    kill -TERM "$2"
    p2m_wait_until "${limit[@]}" "$1 exits on TERM" p2m_dead "$2"
    P2M_EXIT_STATUS=0
    wait "$2" || P2M_EXIT_STATUS=$?
    p2m_forget "$2"
}

# p2m_stop [-t SECONDS] NAME PID: p2m_term, and the exit status must be 0 (two checks). Under the
# sanitizers that includes LeakSanitizer, which reports at exit.
p2m_stop() {
    p2m_term "$@"
    expect_eq 0 "$P2M_EXIT_STATUS" "${*: -2:1} exit status after SIGTERM"
}

# ---------------------------------------------------------------- HTTP

# hreq CURL_ARGS...: one request with curl (IPv4, at most 10 s, trusting $P2M_CA). Sets CODE to
# the status and LAST_REQ to the command line, and leaves the headers in $T/resp.h and the body in
# $T/resp.b; a curl failure fails the test. When P2M_HREQ_LOCATIONS names a file, the Location of
# every response to an https:// URL is appended to it (to check that HTTPS never sends to http:).
hreq() {
    local rc=0
    CODE=$(curl -4 -sS --max-time 10 --cacert "$P2M_CA" -D "$T/resp.h" -o "$T/resp.b" -w '%{http_code}' "$@" 2>"$T/curl.err") ||
        rc=$?
    ((rc == 0)) || fail "curl failed with status $rc: $(p2m_cmdline "$@")"$'\n'"$(cat "$T/curl.err")"
    LAST_REQ=$(p2m_cmdline "$@")
    [[ -z ${P2M_HREQ_LOCATIONS:-} || " $* " != *" https://"* ]] || hdr location >>"$P2M_HREQ_LOCATIONS"
}

# hdr NAME: the value of the last response's header NAME (case-insensitive; the last of several),
# "" when absent.
hdr() { tr -d '\r' <"$T/resp.h" | sed -n "s/^$1:[[:space:]]*//Ip" | tail -n 1; }

# has_hdr NAME: the last response has a header NAME.
has_hdr() { tr -d '\r' <"$T/resp.h" | grep -qi "^$1:"; }

# body: the last response's body.
body() { cat "$T/resp.b"; }

# resp_dump: the last request and its response's headers and body, for a failure message.
resp_dump() { printf '%s\n--- headers:\n%s\n--- body:\n%s' "$LAST_REQ" "$(tr -d '\r' <"$T/resp.h")" "$(body)"; }

# expect_http CODES DESC: the last response's status matches CODES, an extended regex ('400|404').
expect_http() {
    [[ $CODE =~ ^($1)$ ]] || fail "$2: HTTP $CODE, want $1"$'\n'"$(resp_dump)"
    p2m_ok
}

# p2m_health_is CODE: the registrar answers /_health with status CODE.
p2m_health_is() {
    [[ $(curl -4 -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$P2M_CA" \
        "https://pipe2me.localhost:$P2M_HTTPS_PORT/_health") == "$1" ]]
}

# p2m_registrar_healthy: the registrar answers /_health with 200 (Redis and a relay are live).
p2m_registrar_healthy() { p2m_health_is 200; }

# ---------------------------------------------------------------- pods and TOTP codes

# A TOTP step is accepted once per pod (replay protection), whatever the secret, so every step a
# request spends is recorded per pod and never reused unless a test means to.
declare -A P2M_SECRET=()    # pod ID -> its secret, as p2m_add_pod got it
declare -A P2M_TOTP_USED=() # "POD:STEP" -> 1 once a code of that step was handed out
P2M_CODES=()                # every code handed out, to check that no log holds one

# p2m_add_pod ID LABEL: `admin pod add ID --label LABEL` must succeed (a check); records the
# secret in P2M_SECRET[ID].
p2m_add_pod() {
    expect_status 0 admin pod add "$1" --label "$2"
    P2M_SECRET[$1]=$(jq -er .secret "$OUT")
}

# p2m_totp_code SECRET STEP: the code of the base32 SECRET for the 30-s time step STEP.
p2m_totp_code() { oathtool --totp -b "$1" --now "@$(($2 * 30))"; }

# p2m_totp_use POD STEP [SECRET]: sets CODE_ to POD's code at STEP (of SECRET, default
# P2M_SECRET[POD]) and records the step as spent.
p2m_totp_use() {
    P2M_TOTP_USED[$1:$2]=1
    CODE_=$(p2m_totp_code "${3:-${P2M_SECRET[$1]}}" "$2")
    P2M_CODES+=("$CODE_")
}

# p2m_totp_fresh POD [SECRET]: sets CODE_ to a code POD has not spent that the registrar accepts
# now: the current or the next step (both stay inside the +-1 window for 30 s at least), else the
# previous one while 5 s or more of the current step remain; else it waits for the next step.
p2m_totp_fresh() {
    local i now cur s
    for ((i = 0; i < 40; i++)); do
        now=$(date +%s)
        cur=$((now / 30))
        for s in "$cur" "$((cur + 1))" "$((cur - 1))"; do
            ((s != cur - 1 || now % 30 < 25)) || continue
            if [[ -z ${P2M_TOTP_USED[$1:$s]:-} ]]; then
                p2m_totp_use "$1" "$s" "${2:-}"
                return 0
            fi
        done
        sleep 1
    done
    fail "no unspent TOTP step for pod $1 within 40 s"
}

# p2m_totp_auth ID CODE: the Authorization value for a TOTP code.
p2m_totp_auth() { printf 'TOTP username="%s", response="%s"' "$1" "$2"; }

# p2m_wrong_code SECRET: sets CODE_ to a 6-digit code that matches none of SECRET's steps from
# now-1 to now+2 (so no step is spent by a request that carries it).
p2m_wrong_code() {
    local cur=$(($(date +%s) / 30)) s n=$((RANDOM * 30 % 1000000)) codes=" "
    for ((s = cur - 1; s <= cur + 2; s++)); do codes+="$(p2m_totp_code "$1" "$s") "; done
    while [[ $codes == *" $(printf '%06d' "$n") "* ]]; do n=$(((n + 1) % 1000000)); done
    CODE_=$(printf '%06d' "$n")
}

# p2m_reg [-s SRC] [-b BODY] LABEL AUTH: PUT /register/LABEL to the registrar's HTTPS listener
# (hreq), from source address SRC when given, with Authorization AUTH ("" sends none) and, with
# -b, BODY as application/json (even when empty). Sets REG_PORT to the port of a 200's body, else "".
p2m_reg() {
    local args=()
    while [[ $1 == -[sb] ]]; do
        case $1 in
        -s) args+=(--interface "$2") ;;
        -b) args+=(-H 'Content-Type: application/json' --data-binary "$2") ;;
        esac
        shift 2
    done
    [[ -z $2 ]] || args+=(-H "Authorization: $2")
    hreq -X PUT "${args[@]}" "https://pipe2me.localhost:$P2M_HTTPS_PORT/register/$1"
    # shellcheck disable=SC2034 # the tests read it
    REG_PORT=''
    [[ $CODE != 200 ]] || REG_PORT=$(body | sed 's/.*://')
}

# p2m_lease [-r RELAY] [-c CONNS] [-t CREATED] [-w] PORT KIND LABEL POD ADDR TTL: writes the lease
# p2m:lease:PORT as the registrar does (kind, label, pod, addr, created: CREATED or now) with a TTL
# of TTL s. With -r, for relay RELAY: relay and state pending too (and conns CONNS with -c), and
# announces it on p2m:relay:RELAY; with -w as well, waits (two checks) until the relay bound it
# and listens on PORT. Without -r it is a record only, as pipe2me-admin lists it.
p2m_lease() {
    local relay='' created='' wait=0 fields=()
    while [[ $1 == -[rctw] ]]; do
        case $1 in
        -r) relay=$2 ;;
        -c) fields+=(conns "$2") ;;
        -t) created=$2 ;;
        -w) wait=1 && shift && continue ;;
        esac
        shift 2
    done
    [[ -z $relay ]] || fields=(relay "$relay" state pending "${fields[@]}")
    rcli HSET "p2m:lease:$1" kind "$2" label "$3" pod "$4" addr "$5" created "${created:-$(date +%s)}" "${fields[@]}" >/dev/null
    rcli EXPIRE "p2m:lease:$1" "$6" >/dev/null
    [[ -n $relay ]] || return 0
    rcli PUBLISH "p2m:relay:$relay" "lease $1" >/dev/null
    ((wait)) || return 0
    p2m_wait_until "lease $1 is bound" p2m_redis_is bound HGET "p2m:lease:$1" state
    p2m_wait_until "port $1 listens" p2m_listening "$1"
}

# ---------------------------------------------------------------- the whole system

# p2m_start_registrar [CONFIG [LOGNAME]]: starts pipe2me-registrar with CONFIG (default
# $P2M_CONFIG), its output appended to $T/LOGNAME.log (default registrar); sets REGISTRAR_PID.
# shellcheck disable=SC2120 # the arguments are optional
p2m_start_registrar() {
    p2m_bg "${2:-registrar}" "$P2M_BUILD_DIR/registrar/pipe2me-registrar" -c "${1:-$P2M_CONFIG}"
    REGISTRAR_PID=$P2M_BG_PID
}

# p2m_start_relay [CONFIG [LOGNAME]]: starts pipe2me-relay with CONFIG (default $P2M_CONFIG), its
# output appended to $T/LOGNAME.log (default relay); sets RELAY_PID and waits (two checks) until
# the heartbeat of CONFIG's relay.name names CONFIG's relay.ports and the log says it subscribed.
# shellcheck disable=SC2120 # the arguments are optional
p2m_start_relay() {
    local config=${1:-$P2M_CONFIG} log=${2:-relay} name ports subscribed=0
    name=$(jq -er .relay.name "$config") || fail "p2m_start_relay: $config names no relay.name"
    ports=$(jq -er .relay.ports "$config") || fail "p2m_start_relay: $config names no relay.ports"
    [[ ! -e $T/$log.log ]] || subscribed=$(p2m_log_count "$log" event=redis_subscribed)
    p2m_bg "$log" "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$config"
    RELAY_PID=$P2M_BG_PID
    p2m_wait_until -t 60 "the relay heartbeat names ports $ports" p2m_redis_is "$ports" HGET "p2m:relay:$name" ports
    p2m_wait_until -t 60 "the relay is subscribed" p2m_log_count_above "$log" event=redis_subscribed "$subscribed"
}

# p2m_start_system [JSON]: redis-server, a config (relay "r1" on 32 fresh ports, wait_timeout 10,
# with JSON merged over it), the registrar and the relay; waits for the registrar's CA in
# $T/state/ca.pem and for /_health. Sets REGISTRAR_PID and RELAY_PID, and P2M_RELAY_PORT_LO and
# P2M_RELAY_PORT_HI to the relay's range.
p2m_start_system() {
    local extra=${1:-'{}'} sys_lo sys_hi merged # not lo/hi: p2m_free_port_range has locals of those names
    p2m_start_redis
    p2m_free_port_range sys_lo sys_hi 32
    merged=$(jq -n --argjson a "{\"relay\": {\"name\": \"r1\", \"ports\": \"$sys_lo-$sys_hi\", \"wait_timeout\": 10}}" \
        --argjson b "$extra" '$a * $b') || fail "p2m_start_system: bad JSON $(p2m_show "$extra")"
    p2m_write_config "$merged"
    [[ $(jq -r .relay.ports "$P2M_CONFIG") =~ ^([0-9]+)-([0-9]+)$ ]] || fail "p2m_start_system: relay.ports is not LO-HI"
    export P2M_RELAY_PORT_LO=${BASH_REMATCH[1]} P2M_RELAY_PORT_HI=${BASH_REMATCH[2]}
    p2m_start_registrar "$P2M_CONFIG"
    p2m_bg relay "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$P2M_CONFIG"
    RELAY_PID=$P2M_BG_PID
    p2m_wait_until -t 60 "the registrar wrote its CA" test -s "$T/state/ca.pem"
    p2m_wait_until -t 60 "the registrar sees the relay" p2m_registrar_healthy
}

# p2m_consumer_port VAR SCHEME LABEL: the registrar's SCHEME listener (https or http) must answer
# this address's request for LABEL with a 307 to a consumer port (a check); sets VAR to that port.
p2m_consumer_port() {
    local port got
    port=$([[ $2 == http ]] && echo "$P2M_HTTP_PORT" || echo "$P2M_HTTPS_PORT")
    got=$(curl -sS --max-time 10 --cacert "$P2M_CA" --connect-to ::127.0.0.1: -o /dev/null \
        -w '%{http_code} %{redirect_url}' "$2://$3.pipe2me.localhost:$port/") || fail "curl could not ask the registrar for $3"
    [[ $got =~ ^307\ $2://$3\.pipe2me\.localhost:([0-9]+)/$ ]] ||
        fail "redirect for $3: want 307 to $2://$3.pipe2me.localhost:Q/, got $(p2m_show "$got")"
    printf -v "$1" '%s' "${BASH_REMATCH[1]}"
    p2m_ok
}

# p2m_tcp_port VAR LABEL: the registrar must answer GET /tcp/LABEL with LABEL.pipe2me.localhost:Q,
# the consumer port of LABEL's tcp service (a check); sets VAR to Q.
p2m_tcp_port() {
    local got
    got=$(curl -sS --max-time 10 --cacert "$P2M_CA" --connect-to ::127.0.0.1: \
        "https://pipe2me.localhost:$P2M_HTTPS_PORT/tcp/$2") || fail "curl could not ask the registrar for tcp/$2"
    [[ $got =~ ^$2\.pipe2me\.localhost:([0-9]+)$ ]] || fail "tcp/$2: want $2.pipe2me.localhost:Q, got $(p2m_show "$got")"
    printf -v "$1" '%s' "${BASH_REMATCH[1]}"
    p2m_ok
}

# p2m_pod_json DIR FILTER: a field of `pipe2me-pod status --state-dir DIR --json`.
p2m_pod_json() { "$P2M_BUILD_DIR/pod/pipe2me-pod" status --state-dir "$1" --json | jq -r "$2"; }

# p2m_pool_full DIR N [SINCE]: the pod's status (written every second) says N idle
# pre-connections, in a status written after unix time SINCE.
p2m_pool_full() {
    [[ $(p2m_pod_json "$1" '"\(.updated) \(.pool.idle)"') =~ ^([0-9]+)\ ([0-9]+)$ ]] &&
        ((BASH_REMATCH[1] > ${3:-0} && BASH_REMATCH[2] == $2))
}

# p2m_start_pod [-f FILE] [-d DIR] [-o LOG] [-w WAIT] NAME LABEL FORWARD [ARGS...]: `pipe2me-pod
# register` in front of FORWARD (HOST:PORT) with ARGS and a pool of $P2M_POOL (default 2),
# provisioned from FILE (default $T/NAME.json; when it does not exist, `admin pod add NAME --label
# LABEL` writes it first), its state in DIR (default $T/NAME), its output appended to $T/LOG.log
# (default NAME), and --label LABEL unless LABEL is "" (then the provisioning file's label). Sets
# NAME_PID (upper case) and P2M_BG_PID. WAIT says what to wait for, a check each, 60 s at most (a
# loaded machine registers slowly): pool (the default), until a status the pod wrote after it
# started says its pool is full; relay, until the relay counts $P2M_POOL idle pre-connections of
# LABEL (p2m_idle_is); both; none.
p2m_start_pod() {
    local file='' dir='' log='' wait=pool name label fwd since labelarg=() pool=${P2M_POOL:-2} pid
    while [[ $1 == -[fdow] ]]; do
        case $1 in
        -f) file=$2 ;;
        -d) dir=$2 ;;
        -o) log=$2 ;;
        -w) wait=$2 ;;
        esac
        shift 2
    done
    name=$1 label=$2 fwd=$3
    shift 3
    file=${file:-$T/$name.json} dir=${dir:-$T/$name} log=${log:-$name}
    [[ -z $label ]] || labelarg=(--label "$label")
    [[ -e $file ]] || admin pod add "$name" --label "$label" -o "$file" >/dev/null ||
        fail "p2m_start_pod: admin pod add $name failed"
    since=$(($(date +%s) - 1))
    p2m_bg "$log" "$P2M_BUILD_DIR/pod/pipe2me-pod" register --provision "$file" "${labelarg[@]}" --forward "$fwd" \
        --cacert "$T/state/ca.pem" --state-dir "$dir" --pool "$pool" "$@"
    pid=$P2M_BG_PID
    printf -v "${name^^}_PID" '%s' "$pid"
    case $wait in
    pool | both) p2m_wait_until -t 60 "pod $name fills its pool" p2m_pool_full "$dir" "$pool" "$since" ;;&
    relay | both) p2m_wait_until -t 60 "the relay counts $pool idle pre-connections of $label" p2m_idle_is "$pool" "$label" ;;
    pool | none) ;;
    *) fail "p2m_start_pod: -w $wait: expected pool, relay, both or none" ;;
    esac
    P2M_BG_PID=$pid
}

# p2m_idle_is N LABEL [RELAY]: relay RELAY (default $P2M_RELAY_NAME, else r1) counts N idle
# pre-connections of LABEL in p2m:idle:RELAY. The field is removed when it reaches 0, so an absent
# field is 0.
p2m_idle_is() {
    local n
    n=$(rcli HGET "p2m:idle:${3:-${P2M_RELAY_NAME:-r1}}" "$2") || return 1
    [[ ${n:-0} == "$1" ]]
}

# p2m_show_leases: `admin lease ls`, indented, for a test's progress output.
p2m_show_leases() { admin lease ls | sed 's/^/    /'; }

# expect_pod_secret_kept NAME: the secret in $T/NAME.json is in neither the log nor the status of
# the pod p2m_start_pod NAME started.
expect_pod_secret_kept() {
    local secret
    secret=$(jq -r .secret "$T/$1.json")
    ! grep -qF -- "$secret" "$T/$1.log" "$T/$1/status.json" || fail "$1 wrote its secret"
    p2m_ok
}

# p2m_https_site DIR VAR: serves the files in DIR with openssl s_server -WWW (as $T/web.log) on a
# fresh port, which VAR is set to, with a certificate for web.pipe2me.localhost that the
# registrar's CA in $T/state signed; waits (a check) until it listens.
p2m_https_site() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=web.pipe2me.localhost" \
        -keyout "$T/web.key" -out "$T/web.csr" 2>/dev/null
    printf 'subjectAltName=DNS:web.pipe2me.localhost\nextendedKeyUsage=serverAuth\n' >"$T/web.ext"
    openssl x509 -req -in "$T/web.csr" -CA "$T/state/ca.pem" -CAkey "$T/state/ca-key.pem" -CAcreateserial \
        -CAserial "$T/ca.srl" -days 1 -extfile "$T/web.ext" -out "$T/web.pem" 2>/dev/null
    p2m_free_port "$2"
    # s_server -WWW serves its working directory. p2m_bg must run in this shell (inside a
    # ( cd ... ) subshell its pid would be recorded there and the server never stopped), so cd in
    # bash, and exec, so that the pid p2m_bg records is the server's own.
    # shellcheck disable=SC2016 # the inner shell expands its arguments
    p2m_bg web bash -c 'cd -- "$1" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$2" -cert "$3" -key "$4"' _ \
        "$1" "${!2}" "$T/web.pem" "$T/web.key"
    p2m_wait_until "the HTTPS site listens on ${!2}" p2m_listening "${!2}"
}

# p2m_fds PID: "TOTAL SOCKETS PIPES OTHER", PID's open descriptors by kind.
p2m_fds() {
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
        awk '/^socket:/ { s++; next } /^pipe:/ { p++; next } { o++ } END { printf "%d %d %d %d\n", s + p + o, s, p, o }'
}

# p2m_fds_like PID WANT [PIPES_TOO]: PID's sockets and other descriptors are as in WANT (a p2m_fds
# line), its pipes too when PIPES_TOO is 1. Pipes are otherwise left out: they are a pool that
# stays open once used (lib/include/p2m/splice.h).
p2m_fds_like() {
    local now w
    read -r -a now <<<"$(p2m_fds "$1")"
    read -r -a w <<<"$2"
    [[ ${now[1]} == "${w[1]}" && ${now[3]} == "${w[3]}" && (${3:-0} == 0 || ${now[2]} == "${w[2]}") ]]
}

# p2m_show_fds FDS: a p2m_fds line, readable.
p2m_show_fds() {
    local f
    read -r -a f <<<"$1"
    echo "total=${f[0]} sockets=${f[1]} pipes=${f[2]} other=${f[3]}"
}

# ---------------------------------------------------------------- tools/quickstart

# p2m_quickstart_trap QS DIR: from now on, the exit trap first stops what `QS --detach DIR`
# started (`QS --stop DIR`: its processes are not our children, so p2m_cleanup cannot), and when
# the test failed keeps the last lines of DIR's logs as $T/qs-*.log, dumped with ours.
p2m_quickstart_trap() {
    P2M_QS=$1 P2M_QS_DIR=$2
    trap p2m_quickstart_exit EXIT
}

p2m_quickstart_exit() {
    local rc=$? f
    set +eE
    trap - ERR
    [[ ! -d $P2M_QS_DIR/run ]] || "$P2M_QS" --stop "$P2M_QS_DIR" >/dev/null 2>&1 || true
    if ((rc != 0)); then
        for f in "$P2M_QS_DIR"/log/*.log "$P2M_QS_DIR"/cmake.log; do
            [[ -e $f ]] && tail -n 200 -- "$f" >"$T/qs-$(basename -- "$f")"
        done
    fi
    (exit "$rc")
    p2m_cleanup
}

# p2m_pre_conns_are N: the pre leases in Redis hold N established connections at the relay between
# them, and none holds none (a leaked lease). One lease may take up to 32 connections (PROTOCOL
# 1.1), so lease keys and pre-connections are not counted one for one. Meant for a system at rest:
# a joined tunnel keeps its pod-side connection on the lease's port.
P2M_PRE_PORTS_LUA='
local ports, cursor = {}, "0"
repeat
  local r = redis.call("SCAN", cursor, "MATCH", "p2m:lease:*", "COUNT", 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    if redis.call("HGET", k, "kind") == "pre" then ports[#ports + 1] = string.sub(k, 11) end
  end
until cursor == "0"
return ports'
p2m_pre_conns_are() {
    local ports
    ports=$(rcli EVAL "$P2M_PRE_PORTS_LUA" 0) || return 1
    ss -Htn state established | awk -v want="$1" '
        NR == FNR { if ($1 != "") n[$1] = 0; next }
        { k = $3; sub(/.*:/, "", k); if (k in n) n[k]++ }
        END { t = 0; for (k in n) { if (n[k] == 0) exit 1; t += n[k] } exit (t == want ? 0 : 1) }' <(printf '%s\n' "$ports") -
}

# ---------------------------------------------------------------- Redis with Sentinel
# A primary and replicas with requirepass, and three `redis-server --sentinel` (quorum 2,
# down-after 1000 ms, failover-timeout 5000 ms) monitoring the primary as "pipe2me", on loopback
# ports. p2m_sentinel_setup starts them; rcli (and with it every helper above) asks the server at
# P2M_PRIMARY, which a test moves when the Sentinels elect another.
P2M_SENTINEL_PW=e2e-sentinel-pw-7f3a

# rp PORT ARGS...: redis-cli on the server at PORT, with the password.
rp() { redis-cli -h 127.0.0.1 -p "$1" -a "$P2M_SENTINEL_PW" --no-auth-warning "${@:2}"; }
# rs PORT ARGS...: redis-cli on the Sentinel at PORT.
rs() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
# p2m_info_has PORT REGEX: INFO replication of the server at PORT matches REGEX.
p2m_info_has() { [[ $(rp "$1" INFO replication | tr -d '\r') =~ $2 ]]; }
# p2m_sentinel_ready S N: Sentinel S knows N replicas and the two other Sentinels.
p2m_sentinel_ready() {
    local m
    m=$(rs "$1" SENTINEL master pipe2me | tr '\n' ' ')
    [[ $m =~ num-slaves\ $2\  && $m =~ num-other-sentinels\ 2\  ]]
}
# p2m_sentinel_primary: the port the first Sentinel names as the primary.
p2m_sentinel_primary() { rs "${P2M_SENTINELS[0]}" SENTINEL get-master-addr-by-name pipe2me | sed -n 2p; }
# p2m_sentinel_moved_from PORT: the first Sentinel names a primary other than PORT.
p2m_sentinel_moved_from() {
    local a
    a=$(p2m_sentinel_primary)
    [[ -n $a && $a != "$1" ]]
}

# p2m_redis_server NAME PORT [PRIMARY_PORT]: a Redis server with the password on PORT, data in
# $T/NAME, a replica of PRIMARY_PORT when given; output in $T/redis-NAME.log; sets P2M_BG_PID.
p2m_redis_server() {
    mkdir -p "$T/$1"
    p2m_bg "redis-$1" redis-server --port "$2" --dir "$T/$1" --bind 127.0.0.1 --save '' --appendonly no \
        --requirepass "$P2M_SENTINEL_PW" --masterauth "$P2M_SENTINEL_PW" ${3:+--replicaof 127.0.0.1 "$3"}
}

# p2m_sentinel_setup: servers a (the primary) and b (its replica) on fresh ports, in sync, and three
# Sentinels that know them; writes the password to $T/redis.pw (mode 0600). Sets P2M_REDIS_PORT[a|b],
# P2M_REDIS_PID[a|b], P2M_SENTINELS (their ports), P2M_PRIMARY (a's port) and P2M_REDIS_JSON, the
# config's "redis" object (wait_replicas 1, wait_timeout_ms 5000).
declare -A P2M_REDIS_PORT P2M_REDIS_PID
P2M_SENTINELS=()
P2M_PRIMARY=
p2m_sentinel_setup() {
    local s n
    p2m_require redis-server redis-cli jq
    p2m_free_port "P2M_REDIS_PORT[a]"
    p2m_free_port "P2M_REDIS_PORT[b]"
    printf '%s\n' "$P2M_SENTINEL_PW" >"$T/redis.pw"
    chmod 600 "$T/redis.pw"
    p2m_redis_server a "${P2M_REDIS_PORT[a]}"
    P2M_REDIS_PID[a]=$P2M_BG_PID
    p2m_redis_server b "${P2M_REDIS_PORT[b]}" "${P2M_REDIS_PORT[a]}"
    P2M_REDIS_PID[b]=$P2M_BG_PID
    P2M_PRIMARY=${P2M_REDIS_PORT[a]}
    p2m_wait_until -t 60 "b replicates a" p2m_info_has "${P2M_REDIS_PORT[b]}" master_link_status:up
    for n in 1 2 3; do
        p2m_free_port s
        P2M_SENTINELS+=("$s")
        # Each Sentinel rewrites its own config file: one writable file per Sentinel.
        cat >"$T/sentinel-$s.conf" <<CONF
port $s
bind 127.0.0.1
dir $T
sentinel monitor pipe2me 127.0.0.1 ${P2M_REDIS_PORT[a]} 2
sentinel auth-pass pipe2me $P2M_SENTINEL_PW
sentinel down-after-milliseconds pipe2me 1000
sentinel failover-timeout pipe2me 5000
CONF
        p2m_bg "sentinel-$s" redis-server "$T/sentinel-$s.conf" --sentinel
    done
    for s in "${P2M_SENTINELS[@]}"; do
        p2m_wait_until -t 60 "sentinel $s sees the replica and the other sentinels" p2m_sentinel_ready "$s" 1
    done
    P2M_REDIS_JSON=$(jq -n --arg pw "$T/redis.pw" --argjson s "$(printf '"127.0.0.1:%s"\n' "${P2M_SENTINELS[@]}" | jq -s .)" \
        '{sentinels: $s, master: "pipe2me", password_file: $pw, wait_replicas: 1, wait_timeout_ms: 5000}')
}

# ---------------------------------------------------------------- an authoritative DNS server

# p2m_udp_free PORT: nothing on 127.0.0.1 uses UDP PORT.
p2m_udp_free() { [[ -z $(ss -Huan "( sport = :$1 )" 2>/dev/null) ]]; }
# p2m_free_port_tcp_udp VAR: a port free for TCP (p2m_free_port) and for UDP, in VAR.
p2m_free_port_tcp_udp() {
    local i
    for ((i = 0; i < 50; i++)); do
        p2m_free_port "$1"
        p2m_udp_free "${!1}" && return 0
    done
    fail "no port free for both TCP and UDP"
}
# p2m_tsig_key FILE NAME ALGORITHM: a BIND key file as tsig-keygen writes it (Debian 12's bind9
# packages have no tsig-keygen), mode 0600; prints the secret.
p2m_tsig_key() {
    local secret
    secret=$(openssl rand -base64 32)
    (
        umask 077
        printf 'key "%s" {\n\talgorithm %s;\n\tsecret "%s";\n};\n' "$2" "$3" "$secret" >"$1"
    )
    echo "$secret"
}
# p2m_dns_answer NAME [TYPE]: what knotd (P2M_DNS_PORT) answers for NAME, "TTL ADDRESS" lines, sorted.
p2m_dns_answer() {
    dig +norecurse +time=2 +tries=1 @127.0.0.1 -p "$P2M_DNS_PORT" "$1" "${2:-A}" +noall +answer | awk '{print $2, $5}' | sort
}
p2m_dns_answer_is() { [[ $(p2m_dns_answer "$1") == "$2" ]]; }
# p2m_knot_start ZONE KEYNAME ALGORITHM: knotd on 127.0.0.1:P2M_DNS_PORT (UDP and TCP), authoritative
# for ZONE (SOA, NS, ns A 127.0.0.1 and a wildcard `* A 127.0.0.1`, TTL 300), accepting RFC 2136
# updates signed with the key it writes to $T/tsig.key (its secret in P2M_TSIG_SECRET). The
# wildcard answers every name without records of its own: compare addresses, never look for "no
# answer". zonefile-sync -1: updates stay in knotd's journal, the zone file is never rewritten.
# Its pid is P2M_KNOT_PID.
p2m_knot_start() {
    local zone=$1 key=$2 alg=$3
    p2m_require knotd dig openssl ss
    p2m_free_port_tcp_udp P2M_DNS_PORT
    mkdir -m 700 "$T/knot"
    P2M_TSIG_SECRET=$(p2m_tsig_key "$T/tsig.key" "$key" "$alg")
    cat >"$T/knot/zone" <<ZONE_EOF
\$ORIGIN $zone.
\$TTL 300
@ SOA ns admin 1 3600 600 86400 30
@ NS ns
ns A 127.0.0.1
* A 127.0.0.1
ZONE_EOF
    cat >"$T/knot/knot.conf" <<KNOT_EOF
server:
    listen: 127.0.0.1@$P2M_DNS_PORT
    rundir: $T/knot
log:
  - target: stderr
    any: info
database:
    storage: $T/knot
key:
  - id: $key
    algorithm: $alg
    secret: $P2M_TSIG_SECRET
acl:
  - id: update
    key: $key
    action: update
zone:
  - domain: $zone
    storage: $T/knot
    file: zone
    acl: update
    zonefile-sync: -1
KNOT_EOF
    p2m_bg knotd knotd -c "$T/knot/knot.conf"
    P2M_KNOT_PID=$P2M_BG_PID
    p2m_wait_until "knotd answers for $zone" p2m_dns_answer_is "ns.$zone" "300 127.0.0.1"
}
