#!/usr/bin/env bash
# pipe2me-relay follows leases (docs/PROTOCOL.md 3.1-3.4), driven the way the registrar drives it:
# leases written with redis-cli, "lease PORT" published on p2m:relay:NAME, answers read on
# p2m:bound. Pods are bash /dev/tcp and socat connections on loopback.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require socat ss
p2m_require_built relay/pipe2me-relay
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay
NAME=r1
P2M_WAIT_SECONDS=15 # how long p2m_wait_until waits

# ---------------------------------------------------------------- helpers

# Subscribes to p2m:bound in the background; answers land in $T/bound.log, one per line.
start_bound_listener() {
    : >"$T/bound.log"
    p2m_bg bound redis-cli -s "$P2M_REDIS_SOCK" SUBSCRIBE p2m:bound
    BOUND_PID=$P2M_BG_PID
    p2m_wait_until "the p2m:bound subscription is active" p2m_redis_is $'p2m:bound\n1' PUBSUB NUMSUB p2m:bound
}
bound_has() { grep -qx -- "$1" "$T/bound.log"; }


# lease_ok [-c CONNS] PORT KIND LABEL POD ADDR TTL: p2m_lease for this relay, then wait for
# "PORT ok" and the listener.
lease_ok() {
    p2m_lease -r "$NAME" "$@"
    [[ $1 != -c ]] || shift 2
    p2m_wait_until "relay answers '$1 ok'" bound_has "$1 ok"
    expect_eq bound "$(rcli HGET "p2m:lease:$1" state)" "lease $1 state after binding"
    p2m_listening "$1" || fail "port $1 is not listening after '$1 ok'"
    p2m_ok
}

# pod NAME PORT [BIND]: holds a TCP connection to PORT open (from BIND if given) until killed.
pod() {
    local name=$1 port=$2 bind=${3:-}
    if [[ -n $bind ]]; then
        p2m_bg "$name" socat -u "TCP:127.0.0.1:$port,bind=$bind" STDOUT
    else
        p2m_bg "$name" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && exec cat <&3"
    fi
}

idle_count() { rcli HGET "p2m:idle:$NAME" "$1"; }

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_write_config '{"relay": {"name": "r1"}, "registrar": {"preconnect_timeout": 10, "consumer_ttl": 60}}'
ports=()
for ((p = P2M_RELAY_PORT_LO; p <= P2M_RELAY_PORT_HI; p++)); do ports+=("$p"); done

# --check-config validates and exits; a relay.listen that does not resolve is refused.
expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --check-config
expect_match "configuration ok" "$(cat "$OUT")"
jq '.relay.listen = "no-such-host.invalid"' "$P2M_CONFIG" >"$T/bad.json"
expect_status 2 "$RELAY_BIN" -c "$T/bad.json" --check-config
expect_match '^pipe2me-relay: relay.listen' "$(cat "$ERR")"
expect_status 2 "$RELAY_BIN"
expect_status 0 "$RELAY_BIN" --version

# A stale idle hash from an earlier run is deleted at start.
rcli HSET "p2m:idle:$NAME" ghost 3 >/dev/null
start_bound_listener
p2m_start_relay

# ---------------------------------------------------------------- heartbeat (3.1)

expect_eq 127.0.0.1 "$(rcli HGET "p2m:relay:$NAME" address)" "relay address"
expect_eq "$P2M_RELAY_PORT_LO-$P2M_RELAY_PORT_HI" "$(rcli HGET "p2m:relay:$NAME" ports)" "relay ports"
expect_match '^[0-9]+$' "$(rcli HGET "p2m:relay:$NAME" started)" "relay started"
ttl=$(rcli TTL "p2m:relay:$NAME")
((ttl > 0 && ttl <= 15)) || fail "relay hash TTL $ttl, want 1-15"
expect_eq 1 "$(rcli SISMEMBER p2m:relays "$NAME")" "relay in p2m:relays"
p2m_wait_until "the stale idle hash is gone" p2m_redis_is 0 EXISTS "p2m:idle:$NAME"

# ---------------------------------------------------------------- a pre lease (3.3, 3.4)

P=${ports[0]}
lease_ok "$P" pre web pod1 127.0.0.1 10
pod pod1 "$P"
POD1=$P2M_BG_PID
p2m_wait_until "the pre-connection counts as idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" web
p2m_wait_until "the pre port stops listening after one connection" p2m_not_listening "$P"
ttl=$(rcli TTL "p2m:lease:$P")
((ttl > 10 && ttl <= 30)) || fail "idle lease TTL $ttl, want 11-30 (kept alive by the relay)"
p2m_ok
ttl=$(rcli TTL "p2m:idle:$NAME")
((ttl > 0 && ttl <= 15)) || fail "idle hash TTL $ttl, want 1-15"
p2m_ok
p2m_wait_until "the relay logs the idle pre-connection" p2m_log_has relay "event=preconn_idle lease=$P label=web fd="

# The pod goes away: the count comes down and the lease is deleted.
p2m_kill "$POD1"
p2m_wait_until "the idle count drops to nothing" p2m_redis_is "" HGET "p2m:idle:$NAME" web
p2m_wait_until "the used pre lease is deleted" p2m_redis_is 0 EXISTS "p2m:lease:$P"
p2m_wait_until "the relay logs the closed pre-connection" p2m_log_has relay "event=preconn_close lease=$P label=web"

# ---------------------------------------------------------------- several connections on one pre lease (1.1, 3.4)

# The range has 8 ports and the sections around this one hold the others: every case here reuses
# the first, whose lease above is gone (bound.log is emptied so that its old answers do not count).
# conns 3: the port takes three connections, then stops listening; the lease lives while one of
# them is idle and goes with the last.
P=${ports[0]}
: >"$T/bound.log"
lease_ok -c 3 "$P" pre multi pod1 127.0.0.1 10
pod m1 "$P"
M1=$P2M_BG_PID
pod m2 "$P"
M2=$P2M_BG_PID
p2m_wait_until "two of three count as idle" p2m_redis_is 2 HGET "p2m:idle:$NAME" multi
p2m_listening "$P" || fail "port $P stopped listening after two of its three connections"
p2m_ok
expect_eq connected "$(rcli HGET "p2m:lease:$P" state)" "a multi lease with connections in it"
pod m3 "$P"
M3=$P2M_BG_PID
p2m_wait_until "three count as idle" p2m_redis_is 3 HGET "p2m:idle:$NAME" multi
p2m_wait_until "the port stops listening after its third connection" p2m_not_listening "$P"
p2m_kill "$M1"
p2m_kill "$M2"
p2m_wait_until "two closed, one idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" multi
expect_eq 1 "$(rcli EXISTS "p2m:lease:$P")" "the lease lives while one of its connections is idle"
ttl=$(rcli TTL "p2m:lease:$P")
((ttl > 10 && ttl <= 30)) || fail "multi lease TTL $ttl, want 11-30 (kept alive by the relay)"
p2m_ok
p2m_kill "$M3"
p2m_wait_until "no idle left" p2m_redis_is "" HGET "p2m:idle:$NAME" multi
p2m_wait_until "the lease goes with its last connection" p2m_redis_is 0 EXISTS "p2m:lease:$P"

# conns 4 and one connection: preconnect_timeout (10 s) after binding the port stops listening,
# the lease stays for the one idle connection.
p2m_wait_until "its port is closed" p2m_not_listening "$P"
: >"$T/bound.log"
lease_ok -c 4 "$P" pre multi pod1 127.0.0.1 30
pod m4 "$P"
M4=$P2M_BG_PID
p2m_wait_until "one counts as idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" multi
p2m_wait_until -t 30 "the listener closes at the deadline" p2m_log_has relay \
    "event=lease_listen_done lease=$P kind=pre label=multi reason=deadline unused=3 held=1"
p2m_wait_until "the port stops listening" p2m_not_listening "$P"
expect_eq 1 "$(rcli EXISTS "p2m:lease:$P")" "the lease lives for its idle connection"
p2m_kill "$M4"
p2m_wait_until "the lease goes with its connection" p2m_redis_is 0 EXISTS "p2m:lease:$P"

# conns 4 and none: at the deadline the listener closes and the lease is deleted.
: >"$T/bound.log"
lease_ok -c 4 "$P" pre multi pod1 127.0.0.1 30
p2m_wait_until -t 30 "the unused lease is deleted at the deadline" p2m_redis_is 0 EXISTS "p2m:lease:$P"
p2m_wait_until "its port stops listening" p2m_not_listening "$P"

# A conns field out of range, or on a consumer lease, is an invalid lease.
for c in 0 33 x 007; do
    : >"$T/bound.log"
    p2m_lease -r "$NAME" -c "$c" "$P" pre multi pod1 127.0.0.1 10
    p2m_wait_until "conns $c is refused" bound_has "$P fail invalid lease"
    p2m_not_listening "$P" || fail "port $P listens for a lease with conns $c"
    p2m_ok
done
: >"$T/bound.log"
p2m_lease -r "$NAME" -c 2 "$P" consumer multi pod1 127.0.0.1 10
p2m_wait_until "conns on a consumer lease is refused" bound_has "$P fail invalid lease"
rcli DEL "p2m:lease:$P" >/dev/null
p2m_wait_until "the invalid leases are logged" p2m_log_has relay "event=lease_invalid lease=$P field=conns"

# ---------------------------------------------------------------- only the lease's address

P=${ports[1]}
lease_ok "$P" pre api pod1 127.0.0.2 10
# From 127.0.0.1: refused (closed at once), and the port keeps listening for the right pod.
got=$(timeout 5 socat -u "TCP:127.0.0.1:$P,bind=127.0.0.1" STDOUT 2>&1 </dev/null || true)
expect_eq "" "$got" "a refused connection reads nothing"
p2m_wait_until "the refusal is logged" p2m_log_has relay "event=conn_refused lease=$P kind=pre label=api fd=[0-9]* peer=127.0.0.1 want=127.0.0.2"
p2m_listening "$P" || fail "port $P stopped listening after a refused connection"
p2m_ok
pod pod2 "$P" 127.0.0.2
POD2=$P2M_BG_PID
p2m_wait_until "the right address becomes idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" api
p2m_wait_until "the pre port stops listening" p2m_not_listening "$P"

# ---------------------------------------------------------------- port busy (3.3 failure)

P=${ports[2]}
p2m_bg squatter socat "TCP-LISTEN:$P,bind=127.0.0.1,reuseaddr,fork" /dev/null
SQUAT=$P2M_BG_PID
p2m_wait_until "the squatter listens" p2m_listening "$P"
p2m_lease -r "$NAME" "$P" pre web pod1 127.0.0.1 10
p2m_wait_until "relay answers '$P fail ...'" grep -q "^$P fail " "$T/bound.log"
expect_eq 0 "$(rcli EXISTS "p2m:lease:$P")" "the busy port's lease is deleted"
expect_eq 1 "$(rcli GET "p2m:portbusy:$NAME:$P")" "portbusy key"
ttl=$(rcli TTL "p2m:portbusy:$NAME:$P")
((ttl > 0 && ttl <= 60)) || fail "portbusy TTL $ttl, want 1-60"
p2m_ok
p2m_kill "$SQUAT"

# ---------------------------------------------------------------- leases that go away

# A consumer lease ended by a revocation: "unlease PORT" on p2m:events closes it at once. The
# notice goes first and the key stays until the close is seen: with the key deleted first, the
# relay's periodic check (every 2 s) could find it gone before the notice arrives, and close it
# for that reason instead.
Q=${ports[3]}
lease_ok "$Q" consumer web pod1 127.0.0.1 60
rcli PUBLISH p2m:events "unlease $Q" >/dev/null
p2m_wait_until "the unleased port stops listening" p2m_not_listening "$Q"
p2m_wait_until "the close is logged" p2m_log_has relay "event=lease_closed lease=$Q kind=consumer label=web pod=pod1 reason=unlease"
rcli DEL "p2m:lease:$Q" >/dev/null

# A pre lease nobody connects to expires; the periodic check closes the listener.
P=${ports[4]}
lease_ok "$P" pre web pod1 127.0.0.1 30
rcli EXPIRE "p2m:lease:$P" 1 >/dev/null
p2m_wait_until "the expired lease's port stops listening" p2m_not_listening "$P"
p2m_wait_until "the expiry is logged" p2m_log_has relay "event=lease_closed lease=$P kind=pre label=web pod=pod1 reason=lease_gone"

# An idle pre-connection whose lease is removed (admin lease rm) is closed and uncounted.
p2m_wait_until "pod2 is still idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" api
rcli DEL "p2m:lease:${ports[1]}" >/dev/null
p2m_wait_until "the orphaned pre-connection is closed" p2m_log_has relay "event=preconn_close lease=${ports[1]} label=api"
p2m_wait_until "its idle count is gone" p2m_redis_is "" HGET "p2m:idle:$NAME" api
p2m_wait_until "pod2 sees its connection closed" p2m_dead "$POD2"
p2m_kill "$POD2"

# A lease for another relay, or outside the range, is not ours.
P=${ports[5]}
rcli HSET "p2m:lease:$P" kind pre label web pod pod1 addr 127.0.0.1 relay other created "$(date +%s)" state pending >/dev/null
rcli EXPIRE "p2m:lease:$P" 10 >/dev/null
rcli PUBLISH "p2m:relay:$NAME" "lease $P" >/dev/null
p2m_wait_until "the foreign lease is logged" p2m_log_has relay "event=lease_foreign lease=$P"
p2m_not_listening "$P" || fail "port $P listens for another relay's lease"
p2m_ok
rcli DEL "p2m:lease:$P" >/dev/null

# A malformed lease is refused with a reason, without binding.
P=${ports[5]}
rcli HSET "p2m:lease:$P" kind pre label 'bad label!' pod pod1 addr 127.0.0.1 relay "$NAME" created "$(date +%s)" state pending >/dev/null
rcli EXPIRE "p2m:lease:$P" 10 >/dev/null
rcli PUBLISH "p2m:relay:$NAME" "lease $P" >/dev/null
p2m_wait_until "relay answers '$P fail invalid lease'" bound_has "$P fail invalid lease"
rcli DEL "p2m:lease:$P" >/dev/null

# ---------------------------------------------------------------- Redis goes away and comes back

P=${ports[6]}
lease_ok "$P" pre web pod1 127.0.0.1 10
pod pod3 "$P"
POD3=$P2M_BG_PID
p2m_wait_until "pod3 is idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" web
p2m_kill "$BOUND_PID"
p2m_stop_redis
# While Redis is down the pod leaves: the relay cannot say so until Redis is back.
p2m_kill "$POD3"
p2m_wait_until "the relay notices pod3 leaving" p2m_log_has relay "event=preconn_close lease=$P label=web"
p2m_start_redis
p2m_wait_until "the relay reconnects" p2m_log_has relay "event=redis_connected conn=cmd"
# The AOF still says 1; the resync after the reconnect says what the relay holds: nothing.
p2m_wait_until "the idle count is resynchronised" p2m_redis_is "" HGET "p2m:idle:$NAME" web
# The lease it could not delete then is deleted now, not listened on again.
p2m_wait_until "the stale pre lease is deleted" p2m_redis_is 0 EXISTS "p2m:lease:$P"
p2m_wait_until "the stale lease is logged" p2m_log_has relay "event=lease_stale lease=$P kind=pre"
p2m_not_listening "$P" || fail "the relay listens on a stale lease"
p2m_ok
p2m_wait_until "the heartbeat is back" p2m_redis_is 1 EXISTS "p2m:relay:$NAME"
start_bound_listener

# ---------------------------------------------------------------- restart: leases found by SCAN

P=${ports[7]}
p2m_stop relay "$RELAY_PID"
expect_eq 0 "$(rcli EXISTS "p2m:relay:$NAME" "p2m:idle:$NAME")" "heartbeat and idle hash removed at exit"
expect_eq 0 "$(rcli SISMEMBER p2m:relays "$NAME")" "relay left p2m:relays"
p2m_log_has relay "event=relay_stop name=$NAME status=0" || fail "no relay_stop line"
p2m_ok

# A lease made while the relay is down is bound when it starts.
p2m_lease -r "$NAME" "$P" pre web pod1 127.0.0.1 30
p2m_start_relay
p2m_wait_until "relay answers '$P ok' after its SCAN" bound_has "$P ok"
p2m_wait_until "port $P listens" p2m_listening "$P"
expect_eq bound "$(rcli HGET "p2m:lease:$P" state)" "state after the startup SCAN"

expect_log_clean relay 'level=error'
