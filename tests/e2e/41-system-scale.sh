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
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
RELAY_NAME=sys
LABEL=scale
POOL=64
P2M_RELAY_NAME=$RELAY_NAME
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
# at_rest_leases: the pre leases hold the POOL pre-connections (a lease takes up to 32), one consumer
# lease, nothing else.
at_rest_leases() {
    local n
    read -r -a n <<<"$(leases)"
    ((n[0] >= 1 && n[0] <= POOL && n[1] == 1 && n[2] == 0)) && p2m_pre_conns_are "$POOL"
}

# at_rest WHEN: the pool is full again and every count is back where it started; prints them.
at_rest() {
    local t0 t1
    t0=$(p2m_now_ms)
    p2m_wait_until -t $SETTLE "$1: the relay holds $POOL idle pre-connections again" p2m_idle_is "$POOL" "$LABEL"
    p2m_wait_until -t $SETTLE "$1: Redis holds pre leases for $POOL pre-connections and 1 consumer lease" at_rest_leases
    p2m_wait_until -t $SETTLE "$1: the relay's sockets and other descriptors are back to $(p2m_show_fds "$RELAY_FDS0")" \
        p2m_fds_like "$RELAY_PID" "$RELAY_FDS0"
    p2m_wait_until -t $SETTLE "$1: the pod's sockets and other descriptors are back to $(p2m_show_fds "$POD_FDS0")" \
        p2m_fds_like "$POD_PID" "$POD_FDS0"
    t1=$(p2m_now_ms)
    echo "scale: $1: at rest after $((t1 - t0)) ms: leases (pre consumer other) $(leases)," \
        "relay fds $(p2m_show_fds "$(p2m_fds "$RELAY_PID")"), pod fds $(p2m_show_fds "$(p2m_fds "$POD_PID")")"
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

p2m_free_port_range PORT_LO PORT_HI 200
p2m_start_system "{\"relay\": {\"name\": \"$RELAY_NAME\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 30,
    \"idle_timeout\": 60, \"max_conns_per_addr\": 256}, \"registrar\": {\"consumer_ttl\": 600}}"

p2m_free_port ECHO_TCP
p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO_TCP" --forward-http "$ECHO_HTTP"
p2m_wait_until -t 30 "the echo service listens" p2m_listening "$ECHO_TCP"

admin pod add podscale --label "$LABEL" -o "$T/podscale.json" >/dev/null
mkdir -m 700 "$T/podscale.state"
t0=$(p2m_now_ms)
p2m_bg pod "$POD_BIN" register --provision "$T/podscale.json" --forward "127.0.0.1:$ECHO_TCP" --pool "$POOL" \
    --cacert "$T/state/ca.pem" --state-dir "$T/podscale.state"
POD_PID=$P2M_BG_PID
p2m_wait_until -t 60 "the relay holds the pod's $POOL idle pre-connections" p2m_idle_is "$POOL" "$LABEL"
t1=$(p2m_now_ms)
echo "scale: pool of $POOL filled in $((t1 - t0)) ms"
p2m_consumer_port Q https "$LABEL"
p2m_wait_until -t $SETTLE "Redis holds pre leases for $POOL pre-connections and 1 consumer lease" at_rest_leases
RELAY_FDS0=$(p2m_fds "$RELAY_PID")
POD_FDS0=$(p2m_fds "$POD_PID")
echo "scale: start: relay fds $(p2m_show_fds "$RELAY_FDS0"), pod fds $(p2m_show_fds "$POD_FDS0"), leases (pre consumer other) $(leases)"

# ---------------------------------------------------------------- 1. many at once

load phase1 -c "$PARALLEL" -p "$PARALLEL" -b 65536 -t 60 127.0.0.1 "$Q"
at_rest "after $PARALLEL at once"
RELAY_FDS1=$(p2m_fds "$RELAY_PID")
POD_FDS1=$(p2m_fds "$POD_PID")

# ---------------------------------------------------------------- 2. many, one after another

load phase2 -c "$CONNS" -p "$CONCURRENCY" -b 1024 -t 60 127.0.0.1 "$Q"
at_rest "after $CONNS, $CONCURRENCY at a time"
# The pipes opened in phase 1 stay in their pools; phase 2 must not have added any, nor anything else.
p2m_wait_until -t $SETTLE "the relay's descriptors, pipes included, are back to $(p2m_show_fds "$RELAY_FDS1")" \
    p2m_fds_like "$RELAY_PID" "$RELAY_FDS1" 1
p2m_wait_until -t $SETTLE "the pod's descriptors, pipes included, are back to $(p2m_show_fds "$POD_FDS1")" \
    p2m_fds_like "$POD_PID" "$POD_FDS1" 1

# ---------------------------------------------------------------- the counters agree

status_is() { [[ $("$POD_BIN" status --state-dir "$T/podscale.state" --json | jq -r "$1") == "$2" ]]; }
p2m_wait_until -t 30 "the pod's status counts $((PARALLEL + CONNS)) tunnels, none failed" \
    status_is '"\(.tunnels.total) \(.tunnels.failed)"' "$((PARALLEL + CONNS)) 0"
p2m_wait_until -t 30 "the relay's per-label counter counts every tunnel" \
    p2m_redis_is $((PARALLEL + CONNS)) HGET "p2m:stats:relay:$RELAY_NAME" "$LABEL:conns"

p2m_stop -t 15 pod "$POD_PID"
p2m_stop -t 15 relay "$RELAY_PID"
p2m_stop -t 15 registrar "$REGISTRAR_PID"
for f in registrar relay pod echo; do
    expect_log_clean "$f"
done
echo "scale: done in ${SECONDS}s"
