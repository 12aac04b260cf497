#!/usr/bin/env bash
# The whole system under many consumers: a private redis-server, pipe2me-registrar, pipe2me-relay,
# one pipe2me-pod (--pool 64) in front of `pipe2me-pod test`'s TCP echo, and p2m-load as the
# consumers, all on the consumer port Q of the registrar's 307.
#   1. 200 consumers at once, each 64 KiB echoed and checked byte for byte: all served;
#   2. 10,000 consumers, 20 at a time, each 1 KiB echoed and checked: all served;
# and after each, with bounded polling, everything returns to where it started: the relay's and
# the pod's descriptors (sockets and others exactly; pipes are a pool that stays open, bounded, so
# they are compared from the end of phase 1 on), and in Redis the pre-connection leases equal the
# pool size and the consumer lease is the only other one. Sized to finish well within 4 minutes on
# 2 cores with ASan builds; it prints what it measured. P2M_SCALE_PARALLEL, P2M_SCALE_CONNS and
# P2M_SCALE_CONCURRENCY change the sizes.
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
REG_BIN=$P2M_BUILD_DIR/registrar/pipe2me-registrar
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
RELAY_NAME=sys
LABEL=scale
POOL=64
PARALLEL=${P2M_SCALE_PARALLEL:-200}
CONNS=${P2M_SCALE_CONNS:-10000}
CONCURRENCY=${P2M_SCALE_CONCURRENCY:-20}
SETTLE=30 # seconds everything has to return to its starting state after a phase

# p2m-load comes with the build (tests/tools); without it, it is compiled here.
LOAD=$P2M_BUILD_DIR/tests/tools/p2m-load
if [[ ! -x $LOAD ]]; then
    p2m_require cc
    LOAD=$T/p2m-load
    cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o "$LOAD" "$P2M_SOURCE_DIR/tests/tools/p2m-load.c" ||
        fail "cannot compile tests/tools/p2m-load.c"
fi

# ---------------------------------------------------------------- helpers

# wait_until SECONDS DESC CMD...: polls CMD every 0.1 s until it succeeds, for at most SECONDS.
wait_until() {
    local limit=$1 desc=$2 end=$((SECONDS + $1))
    shift 2
    while ((SECONDS < end)); do
        "$@" 2>/dev/null && {
            p2m_ok
            return 0
        }
        sleep 0.1
    done
    fail "timed out after ${limit}s waiting until $desc"
}
redis_is() { [[ $(rcli "${@:2}") == "$1" ]]; }
listening() { [[ -n $(ss -Htln "( sport = :$1 )") ]]; }
dead() { ! p2m_alive "$1"; }
healthy() { curl -fsS --max-time 2 --cacert "$T/state/ca.pem" "https://pipe2me.localhost:$P2M_HTTPS_PORT/_health" >/dev/null; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# stop_prog NAME PID: SIGTERM; it must exit within 15 s with status 0 (LeakSanitizer included).
stop_prog() {
    local rc=0
    kill -TERM "$2"
    wait_until 15 "$1 exits after SIGTERM" dead "$2"
    wait "$2" || rc=$?
    p2m_forget "$2"
    expect_eq 0 "$rc" "$1: exit status after SIGTERM"
}

# consumer_port VAR LABEL: VAR = the consumer port Q of the registrar's 307 for LABEL (PROTOCOL 2).
consumer_port() {
    local got
    got=$(curl -sS --max-time 10 --cacert "$T/state/ca.pem" -o /dev/null -w '%{http_code} %{redirect_url}' \
        "https://$2.pipe2me.localhost:$P2M_HTTPS_PORT/") || fail "curl could not ask the registrar for $2"
    [[ $got =~ ^307\ https://$2\.pipe2me\.localhost:([0-9]+)/$ ]] ||
        fail "redirect for $2: want 307 to https://$2.pipe2me.localhost:Q/, got $(p2m_show "$got")"
    printf -v "$1" '%s' "${BASH_REMATCH[1]}"
    p2m_ok
}

# fds PID: "TOTAL SOCKETS PIPES OTHER", PID's open descriptors by kind.
fds() {
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
        awk '/^socket:/ { s++; next } /^pipe:/ { p++; next } { o++ } END { printf "%d %d %d %d\n", s + p + o, s, p, o }'
}
# fds_like PID WANT [PIPES_TOO]: PID's sockets and other descriptors are as in WANT (an fds line);
# its pipes too when PIPES_TOO is 1.
fds_like() {
    local now w
    read -r -a now <<<"$(fds "$1")"
    read -r -a w <<<"$2"
    [[ ${now[1]} == "${w[1]}" && ${now[3]} == "${w[3]}" && (${3:-0} == 0 || ${now[2]} == "${w[2]}") ]]
}
show_fds() {
    local f
    read -r -a f <<<"$1"
    echo "total=${f[0]} sockets=${f[1]} pipes=${f[2]} other=${f[3]}"
}

# leases: "PRE CONSUMER OTHER", the p2m:lease:* hashes by kind, read in one script.
leases_lua='
local n = {0, 0, 0}
local cursor = "0"
repeat
  local r = redis.call("SCAN", cursor, "MATCH", "p2m:lease:*", "COUNT", 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local kind = redis.call("HGET", k, "kind")
    local i = kind == "pre" and 1 or kind == "consumer" and 2 or 3
    n[i] = n[i] + 1
  end
until cursor == "0"
return n'
leases() { rcli EVAL "$leases_lua" 0 | paste -sd ' '; }
leases_are() { [[ $(leases) == "$1" ]]; }
idle_is() { redis_is "$1" HGET "p2m:idle:$RELAY_NAME" "$LABEL"; }

# at_rest WHEN: the pool is full again and every count is back where it started; prints them.
at_rest() {
    local t0 t1
    t0=$(now_ms)
    wait_until $SETTLE "$1: the relay holds $POOL idle pre-connections again" idle_is "$POOL"
    wait_until $SETTLE "$1: Redis holds $POOL pre leases and 1 consumer lease (pre consumer other)" \
        leases_are "$POOL 1 0"
    wait_until $SETTLE "$1: the relay's sockets and other descriptors are back to $(show_fds "$RELAY_FDS0")" \
        fds_like "$RELAY_PID" "$RELAY_FDS0"
    wait_until $SETTLE "$1: the pod's sockets and other descriptors are back to $(show_fds "$POD_FDS0")" \
        fds_like "$POD_PID" "$POD_FDS0"
    t1=$(now_ms)
    echo "scale: $1: at rest after $((t1 - t0)) ms: leases (pre consumer other) $(leases)," \
        "relay fds $(show_fds "$(fds "$RELAY_PID")"), pod fds $(show_fds "$(fds "$POD_PID")")"
}

# load NAME ARGS...: runs p2m-load, which must serve every connection; its summary goes to $T/NAME.
load() {
    local name=$1 rc=0
    shift
    timeout 200 "$LOAD" "$@" >"$T/$name" 2>&1 || rc=$?
    echo "scale: $name: $(tr '\n' ' ' <"$T/$name")"
    ((rc == 0)) || fail "$name: not every consumer was served (p2m-load status $rc): $(cat "$T/$name")"
    p2m_ok
}

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_free_port_range PORT_LO PORT_HI 200
p2m_write_config "{\"relay\": {\"name\": \"$RELAY_NAME\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 30,
    \"idle_timeout\": 60, \"max_conns_per_addr\": 256}, \"registrar\": {\"consumer_ttl\": 600}}"
p2m_bg registrar "$REG_BIN" -c "$P2M_CONFIG"
REG_PID=$P2M_BG_PID
p2m_bg relay "$RELAY_BIN" -c "$P2M_CONFIG"
RELAY_PID=$P2M_BG_PID
wait_until 20 "the registrar wrote its CA" test -s "$T/state/ca.pem"
wait_until 20 "the registrar answers /_health with a live relay" healthy

p2m_free_port ECHO_TCP
p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO_TCP" --forward-http "$ECHO_HTTP"
wait_until 10 "the echo service listens" listening "$ECHO_TCP"

admin pod add podscale --label "$LABEL" -o "$T/podscale.json" >/dev/null
mkdir -m 700 "$T/podscale.state"
t0=$(now_ms)
p2m_bg pod "$POD_BIN" register --provision "$T/podscale.json" --forward "127.0.0.1:$ECHO_TCP" --pool "$POOL" \
    --cacert "$T/state/ca.pem" --state-dir "$T/podscale.state"
POD_PID=$P2M_BG_PID
wait_until 60 "the relay holds the pod's $POOL idle pre-connections" idle_is "$POOL"
t1=$(now_ms)
echo "scale: pool of $POOL filled in $((t1 - t0)) ms"
consumer_port Q "$LABEL"
wait_until $SETTLE "Redis holds $POOL pre leases and 1 consumer lease (pre consumer other)" leases_are "$POOL 1 0"
RELAY_FDS0=$(fds "$RELAY_PID")
POD_FDS0=$(fds "$POD_PID")
echo "scale: start: relay fds $(show_fds "$RELAY_FDS0"), pod fds $(show_fds "$POD_FDS0"), leases (pre consumer other) $(leases)"

# ---------------------------------------------------------------- 1. many at once

load phase1 -c "$PARALLEL" -p "$PARALLEL" -b 65536 -t 60 127.0.0.1 "$Q"
at_rest "after $PARALLEL at once"
RELAY_FDS1=$(fds "$RELAY_PID")
POD_FDS1=$(fds "$POD_PID")

# ---------------------------------------------------------------- 2. many, one after another

load phase2 -c "$CONNS" -p "$CONCURRENCY" -b 1024 -t 60 127.0.0.1 "$Q"
at_rest "after $CONNS, $CONCURRENCY at a time"
# The pipes opened in phase 1 stay in their pools; phase 2 must not have added any, nor anything else.
wait_until $SETTLE "the relay's descriptors, pipes included, are back to $(show_fds "$RELAY_FDS1")" \
    fds_like "$RELAY_PID" "$RELAY_FDS1" 1
wait_until $SETTLE "the pod's descriptors, pipes included, are back to $(show_fds "$POD_FDS1")" \
    fds_like "$POD_PID" "$POD_FDS1" 1

# ---------------------------------------------------------------- the counters agree

status_is() { [[ $("$POD_BIN" status --state-dir "$T/podscale.state" --json | jq -r "$1") == "$2" ]]; }
wait_until 5 "the pod's status counts $((PARALLEL + CONNS)) tunnels, none failed" \
    status_is '"\(.tunnels.total) \(.tunnels.failed)"' "$((PARALLEL + CONNS)) 0"
wait_until 15 "the relay's per-label counter counts every tunnel" \
    redis_is $((PARALLEL + CONNS)) HGET "p2m:stats:relay:$RELAY_NAME" "$LABEL:conns"

stop_prog pod "$POD_PID"
stop_prog relay "$RELAY_PID"
stop_prog registrar "$REG_PID"
for f in registrar relay pod echo; do
    ! grep -E 'level=error|ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$T/$f.log" || fail "$f.log reports errors"
    p2m_ok
done
echo "scale: done in ${SECONDS}s"
