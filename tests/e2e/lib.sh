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

P2M_E2E_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
: "${P2M_SOURCE_DIR:=$(cd -- "$P2M_E2E_DIR/../.." && pwd)}"
: "${P2M_BUILD_DIR:=$P2M_SOURCE_DIR/build}"
export P2M_SOURCE_DIR P2M_BUILD_DIR

P2M_TEST=$(basename -- "$0" .sh)
P2M_PIDS=()         # every pid p2m_bg started and has not reaped yet
P2M_PORTS_GIVEN=" " # ports p2m_free_port handed out, so that two calls never agree
P2M_CHECKS=0        # assertions passed
P2M_REDIS_PID=

# A unix socket path must fit in sun_path (107 bytes): keep $T short when TMPDIR is long.
p2m_tmp=${TMPDIR:-/tmp}
((${#p2m_tmp} <= 60)) || p2m_tmp=/tmp
T=$(mktemp -d "$p2m_tmp/p2m-$P2M_TEST.XXXXXX")
unset p2m_tmp
OUT=$T/stdout # what expect_status captured
ERR=$T/stderr

# ---------------------------------------------------------------- processes

# Prints the state letter of PID (R, S, Z, ...) if it is a child of this shell; fails
# otherwise, so that a pid the kernel has since given to someone else is never touched.
p2m_child_state() {
    local stat rest state ppid
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    read -r state ppid _ <<<"$rest"
    [[ $ppid == "$$" ]] || return 1
    echo "$state"
}

# True while PID is our child and not yet a zombie.
p2m_alive() {
    local state
    state=$(p2m_child_state "$1") || return 1
    [[ $state != Z ]]
}

p2m_forget() {
    local keep=() pid
    for pid in "${P2M_PIDS[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    P2M_PIDS=("${keep[@]}")
}

# p2m_bg NAME CMD...: runs CMD in the background, output appended to $T/NAME.log. Sets
# P2M_BG_PID and records it for p2m_kill and the exit trap.
p2m_bg() {
    local name=$1
    shift
    "$@" </dev/null >>"$T/$name.log" 2>&1 &
    P2M_BG_PID=$!
    P2M_PIDS+=("$P2M_BG_PID")
}

# p2m_kill PID [SECONDS]: TERM, then KILL if it still runs after SECONDS (default 5); reaps it.
p2m_kill() {
    local pid=$1 limit=${2:-5} i
    if p2m_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < limit * 10; i++)); do
            p2m_alive "$pid" || break
            sleep 0.1
        done
        if p2m_alive "$pid"; then
            echo "e2e: pid $pid still runs ${limit}s after TERM; sending KILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    p2m_forget "$pid"
}

p2m_cleanup() {
    local rc=$? pid f i
    set +eE
    trap - EXIT ERR
    # TERM everything first, then give all of them one bounded wait.
    for pid in "${P2M_PIDS[@]}"; do
        p2m_alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    for ((i = 0; i < 50; i++)); do
        local running=0
        for pid in "${P2M_PIDS[@]}"; do
            p2m_alive "$pid" && running=1
        done
        ((running)) || break
        sleep 0.1
    done
    for pid in "${P2M_PIDS[@]}"; do
        if p2m_alive "$pid"; then
            echo "e2e: pid $pid still runs 5s after TERM; sending KILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    P2M_PIDS=()

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

# The test-script line that led here: the innermost caller outside lib.sh.
p2m_where() {
    local i
    for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
        if [[ ${BASH_SOURCE[i]} != "${BASH_SOURCE[0]}" ]]; then
            echo "$(basename -- "${BASH_SOURCE[i]}"):${BASH_LINENO[i - 1]}"
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

# fail MSG...: reports where and why, and ends the test.
fail() {
    echo "FAIL $(p2m_where): $*" >&2
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

# p2m_port_free PORT: nothing on 127.0.0.1 uses TCP PORT (any state) and we did not hand it out.
p2m_port_free() {
    [[ $P2M_PORTS_GIVEN != *" $1 "* ]] || return 1
    if command -v ss >/dev/null; then
        [[ -z $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 1
        fi
    fi
}

# p2m_free_port VAR: sets VAR to a free TCP port below the ephemeral range (so that outgoing
# connections do not take it meanwhile).
p2m_free_port() {
    local tries port
    for ((tries = 0; tries < 500; tries++)); do
        port=$((20000 + RANDOM % 12000))
        if p2m_port_free "$port"; then
            P2M_PORTS_GIVEN+="$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    fail "no free TCP port found"
}

# p2m_free_port_range VAR_LO VAR_HI N: N consecutive free ports.
p2m_free_port_range() {
    local tries lo p ok
    for ((tries = 0; tries < 500; tries++)); do
        lo=$((20000 + RANDOM % (12000 - $3)))
        ok=1
        for ((p = lo; p < lo + $3; p++)); do
            p2m_port_free "$p" || {
                ok=0
                break
            }
        done
        if ((ok)); then
            for ((p = lo; p < lo + $3; p++)); do
                P2M_PORTS_GIVEN+="$p "
            done
            printf -v "$1" '%s' "$lo"
            printf -v "$2" '%s' "$((lo + $3 - 1))"
            return 0
        fi
    done
    fail "no $3 consecutive free TCP ports found"
}

# p2m_write_config [JSON [FILE]]: writes FILE (default $T/pipe2me.json) for loopback use on
# fresh ports, with JSON (an object) merged over it recursively, and exports P2M_CONFIG=FILE and
# the ports chosen: P2M_HTTPS_PORT, P2M_HTTP_PORT, P2M_RELAY_PORT_LO, P2M_RELAY_PORT_HI. Call
# p2m_start_redis first (or set P2M_REDIS_SOCK) so that the config names the right socket.
# shellcheck disable=SC2120 # the argument is optional
p2m_write_config() {
    local extra=${1:-'{}'} file=${2:-$T/pipe2me.json}
    p2m_free_port P2M_HTTPS_PORT
    p2m_free_port P2M_HTTP_PORT
    p2m_free_port_range P2M_RELAY_PORT_LO P2M_RELAY_PORT_HI 8
    export P2M_HTTPS_PORT P2M_HTTP_PORT P2M_RELAY_PORT_LO P2M_RELAY_PORT_HI
    mkdir -p "$T/state"
    jq -n --argjson extra "$extra" \
        --arg redis "unix:${P2M_REDIS_SOCK:-$T/redis.sock}" --arg state "$T/state" \
        --arg https "127.0.0.1:$P2M_HTTPS_PORT" --arg http "127.0.0.1:$P2M_HTTP_PORT" \
        --arg url "https://pipe2me.localhost:$P2M_HTTPS_PORT" \
        --arg ports "$P2M_RELAY_PORT_LO-$P2M_RELAY_PORT_HI" '
        {
            domain: "pipe2me.localhost",
            public_address: "127.0.0.1",
            redis: $redis,
            state_dir: $state,
            registrar: {https: $https, http: $http, url: $url},
            relay: {ports: $ports, listen: "127.0.0.1"}
        } * $extra' >"$file" || fail "p2m_write_config: bad JSON $(p2m_show "$extra")"
    export P2M_CONFIG=$file
}

# ---------------------------------------------------------------- redis

# rcli ARGS...: redis-cli on the test's redis.
rcli() {
    redis-cli -s "${P2M_REDIS_SOCK:-$T/redis.sock}" "$@"
}

# p2m_start_redis: starts a private redis-server (AOF on, no RDB) on $T/redis.sock, waits up to
# 10 s for it to answer and exports P2M_REDIS_SOCK. Its data stays in $T across restarts.
p2m_start_redis() {
    local i
    p2m_require redis-server redis-cli
    export P2M_REDIS_SOCK=$T/redis.sock
    rm -f -- "$P2M_REDIS_SOCK"
    p2m_bg redis redis-server --port 0 --unixsocket "$P2M_REDIS_SOCK" --unixsocketperm 700 --dir "$T" \
        --appendonly yes --daemonize no --save ''
    P2M_REDIS_PID=$P2M_BG_PID
    for ((i = 0; i < 100; i++)); do
        [[ $(rcli ping 2>/dev/null) == PONG ]] && return 0
        p2m_alive "$P2M_REDIS_PID" || fail "redis-server exited while starting (see redis.log)"
        sleep 0.1
    done
    fail "redis-server did not answer on $P2M_REDIS_SOCK within 10s"
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

# ---------------------------------------------------------------- the whole system

# p2m_wait_until [-t SECONDS] DESC CMD...: polls CMD (every 0.1 s, at most SECONDS, default 20)
# until it succeeds, which counts as a check; fails the test with DESC otherwise.
p2m_wait_until() {
    local limit=20 desc i
    if [[ $1 == -t ]]; then
        limit=$2
        shift 2
    fi
    desc=$1
    shift
    for ((i = 0; i < limit * 10; i++)); do
        "$@" 2>/dev/null && {
            p2m_ok
            return 0
        }
        sleep 0.1
    done
    fail "timed out after ${limit}s waiting until $desc"
}

# p2m_listening PORT: something listens on TCP PORT.
p2m_listening() { [[ -n $(ss -Htln "( sport = :$1 )") ]]; }

# p2m_registrar_healthy: the registrar answers /_health with 200 (Redis and a relay are live).
p2m_registrar_healthy() {
    curl -fsS --max-time 2 --cacert "$T/state/ca.pem" "https://pipe2me.localhost:$P2M_HTTPS_PORT/_health" >/dev/null
}

# p2m_start_system [JSON]: redis-server, a config (relay "r1" on 32 fresh ports, wait_timeout 10,
# with JSON merged over it), the registrar and the relay; waits for the registrar's CA in
# $T/state/ca.pem and for /_health. Sets REGISTRAR_PID and RELAY_PID.
p2m_start_system() {
    local extra=${1:-'{}'} sys_lo sys_hi merged # not lo/hi: p2m_free_port_range has locals of those names
    p2m_start_redis
    p2m_free_port_range sys_lo sys_hi 32
    merged=$(jq -n --argjson a "{\"relay\": {\"name\": \"r1\", \"ports\": \"$sys_lo-$sys_hi\", \"wait_timeout\": 10}}" \
        --argjson b "$extra" '$a * $b') || fail "p2m_start_system: bad JSON $(p2m_show "$extra")"
    p2m_write_config "$merged"
    p2m_bg registrar "$P2M_BUILD_DIR/registrar/pipe2me-registrar" -c "$P2M_CONFIG"
    REGISTRAR_PID=$P2M_BG_PID
    p2m_bg relay "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$P2M_CONFIG"
    RELAY_PID=$P2M_BG_PID
    p2m_wait_until "the registrar wrote its CA" test -s "$T/state/ca.pem"
    p2m_wait_until "the registrar sees the relay" p2m_registrar_healthy
}

# p2m_consumer_port VAR SCHEME LABEL: sets VAR to the consumer port Q the registrar's SCHEME
# listener (https or http) redirects this address to for LABEL.
p2m_consumer_port() {
    local port loc
    port=$([[ $2 == http ]] && echo "$P2M_HTTP_PORT" || echo "$P2M_HTTPS_PORT")
    loc=$(curl -sS --max-time 10 --cacert "$T/state/ca.pem" --connect-to ::127.0.0.1: -o /dev/null -w '%{redirect_url}' \
        "$2://$3.pipe2me.localhost:$port/")
    [[ $loc =~ ^$2://$3\.pipe2me\.localhost:([0-9]+)/$ ]] || fail "no $2 redirect for $3: $(p2m_show "$loc")"
    printf -v "$1" '%s' "${BASH_REMATCH[1]}"
}

# p2m_pod_json DIR FILTER: a field of `pipe2me-pod status --state-dir DIR --json`.
p2m_pod_json() { "$P2M_BUILD_DIR/pod/pipe2me-pod" status --state-dir "$1" --json | jq -r "$2"; }

# p2m_pool_full DIR N [SINCE]: the pod's status (written every second) says N idle
# pre-connections, in a status written after unix time SINCE.
p2m_pool_full() {
    [[ $(p2m_pod_json "$1" '"\(.updated) \(.pool.idle)"') =~ ^([0-9]+)\ ([0-9]+)$ ]] &&
        ((BASH_REMATCH[1] > ${3:-0} && BASH_REMATCH[2] == $2))
}
