#!/usr/bin/env bash
# pipe2me-relay's data path: consumers on consumer leases joined to idle pre-connections of the
# same label, bytes both ways unchanged (TLS passes through), half-closes passed on, a bounded
# wait for a pre-connection, idle timeout, per-address limit, and the per-label counters in
# p2m:stats:relay:NAME. Pods are socat processes whose far end is cat (an echo service) or an
# openssl s_server; consumers are socat and curl, all on loopback.
. "$(dirname -- "$0")/lib.sh"

p2m_require socat ss openssl curl sha256sum
p2m_require_built relay/pipe2me-relay
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay
NAME=r1

wait_until() {
    local desc=$1 i
    shift
    for ((i = 0; i < 150; i++)); do
        "$@" 2>/dev/null && {
            p2m_ok
            return 0
        }
        sleep 0.1
    done
    fail "timed out waiting until $desc"
}
redis_is() { [[ $(rcli "${@:2}") == "$1" ]]; }
listening() { [[ -n $(ss -Htln "( sport = :$1 )") ]]; }
log_has() { grep -q -- "$1" "$T/relay.log"; }
log_count() { grep -c -- "$1" "$T/relay.log" || true; }
file_is() { [[ -f $1 && $(cat "$1") == "$2" ]]; }
dead() { ! p2m_alive "$1"; }

start_relay() {
    p2m_bg relay "$RELAY_BIN" -c "$1"
    RELAY_PID=$P2M_BG_PID
    wait_until "the relay heartbeat is in Redis" redis_is 1 EXISTS "p2m:relay:$NAME"
    wait_until "the relay is subscribed" log_has "event=redis_subscribed"
}

stop_relay() {
    local rc=0
    kill -TERM "$RELAY_PID"
    wait_until "the relay exits on TERM" dead "$RELAY_PID"
    wait "$RELAY_PID" || rc=$?
    p2m_forget "$RELAY_PID"
    expect_eq 0 "$rc" "relay exit status after SIGTERM"
}

# Ports handed out in order from the relay's range.
NEXT=0
next_port() { printf -v "$1" '%s' $((PORT_LO + NEXT)) && NEXT=$((NEXT + 1)); }

# lease PORT KIND LABEL ADDR TTL: as the registrar does (PROTOCOL 3.2), then waits for the bind.
lease() {
    rcli HSET "p2m:lease:$1" kind "$2" label "$3" pod pod1 addr "$4" relay "$NAME" created "$(date +%s)" \
        state pending >/dev/null
    rcli EXPIRE "p2m:lease:$1" "$5" >/dev/null
    rcli PUBLISH "p2m:relay:$NAME" "lease $1" >/dev/null
    wait_until "lease $1 is bound" redis_is bound HGET "p2m:lease:$1" state
    wait_until "port $1 listens" listening "$1"
}

# echo_pod NAME LABEL: leases a pre port for LABEL and connects an echo pod to it; waits until
# the relay counts it idle. Sets POD_PID and POD_PORT.
echo_pod() {
    local before
    before=$(rcli HGET "p2m:idle:$NAME" "$2")
    next_port POD_PORT
    lease "$POD_PORT" pre "$2" 127.0.0.1 10
    p2m_bg "$1" socat -t 30 -T 60 "TCP:127.0.0.1:$POD_PORT" EXEC:cat
    POD_PID=$P2M_BG_PID
    wait_until "pod $1 is idle" redis_is $((${before:-0} + 1)) HGET "p2m:idle:$NAME" "$2"
}

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_free_port_range PORT_LO PORT_HI 64
p2m_write_config "{\"relay\": {\"name\": \"$NAME\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 2,
    \"idle_timeout\": 3, \"max_conns_per_addr\": 3}}"
start_relay "$P2M_CONFIG"

next_port Q
lease "$Q" consumer web 127.0.0.1 60

# ---------------------------------------------------------------- one exchange, half-closes both ways

echo_pod pod1 web
P1=$POD_PORT
got=$(printf 'hello relay' | timeout 20 socat -t 10 - "TCP:127.0.0.1:$Q")
expect_eq 'hello relay' "$got" "echo through the tunnel"
wait_until "the tunnel closes when both directions are done" \
    log_has "event=tunnel_close lease=$Q label=web fd=[0-9]* pre=$P1 pod_fd=[0-9]* reason=done bytes_in=11 bytes_out=11"
log_has "event=tunnel_join lease=$Q label=web" || fail "no tunnel_join line"
p2m_ok
wait_until "the joined pre-connection is no longer idle" redis_is "" HGET "p2m:idle:$NAME" web
wait_until "the joined pre lease is deleted" redis_is 0 EXISTS "p2m:lease:$P1"
wait_until "pod1 exits" dead "$POD_PID"

# ---------------------------------------------------------------- 32 MiB both ways, intact

head -c $((32 << 20)) /dev/urandom >"$T/big.in"
echo_pod pod2 web
timeout 120 socat -t 30 -T 60 - "TCP:127.0.0.1:$Q" <"$T/big.in" >"$T/big.out"
expect_eq "$(sha256sum <"$T/big.in")" "$(sha256sum <"$T/big.out")" "32 MiB echoed through the tunnel unchanged"
wait_until "the big tunnel closes" log_has "reason=done bytes_in=$((32 << 20)) bytes_out=$((32 << 20))"

# ---------------------------------------------------------------- a consumer waits for a pod

# The consumer connects, sends and half-closes before any pre-connection is idle: its bytes wait
# in the kernel, and it is joined when a pod arrives.
p2m_bg early bash -c "printf 'sent early' | socat -t 20 -T 30 - TCP:127.0.0.1:$Q >'$T/early.out'"
EARLY=$P2M_BG_PID
wait_until "the consumer waits" log_has "event=consumer_wait lease=$Q label=web"
echo_pod_nowait() {
    next_port POD_PORT
    lease "$POD_PORT" pre web 127.0.0.1 10
    p2m_bg "$1" socat -t 30 -T 60 "TCP:127.0.0.1:$POD_PORT" EXEC:cat
}
echo_pod_nowait pod3
wait_until "the waiting consumer gets its echo" file_is "$T/early.out" 'sent early'
wait_until "the early consumer exits" dead "$EARLY"
p2m_kill "$EARLY"
# Joined at once: never counted idle, and its lease is deleted.
wait_until "the pre lease joined at once is deleted" redis_is 0 EXISTS "p2m:lease:$POD_PORT"
expect_eq "" "$(rcli HGET "p2m:idle:$NAME" web)" "idle count after a direct join"

# No pod comes: the consumer is closed after relay.wait_timeout.
got=$(timeout 20 socat -u "TCP:127.0.0.1:$Q" STDOUT </dev/null || true)
expect_eq "" "$got" "a consumer nobody serves reads nothing"
wait_until "the wait timeout is logged" log_has "event=consumer_close lease=$Q label=web fd=[0-9]* reason=wait_timeout"

# ---------------------------------------------------------------- who may connect, how often

# Another address is refused on a consumer port.
timeout 10 socat -u "TCP:127.0.0.1:$Q,bind=127.0.0.2" STDOUT </dev/null || true
wait_until "the foreign consumer is refused" log_has "event=conn_refused lease=$Q kind=consumer label=web fd=[0-9]* peer=127.0.0.2"

# relay.max_conns_per_addr = 3: three wait, the fourth is refused at once.
waiters=()
for i in 1 2 3; do
    p2m_bg "waiter$i" socat -u "TCP:127.0.0.1:$Q" STDOUT
    waiters+=("$P2M_BG_PID")
    wait_until "waiter $i waits" eval "(( \$(log_count 'event=consumer_wait lease=$Q') >= $((i + 2)) ))"
done
timeout 10 socat -u "TCP:127.0.0.1:$Q" STDOUT </dev/null || true
wait_until "the fourth connection is refused" log_has "event=conn_refused lease=$Q kind=consumer label=web fd=[0-9]* peer=127.0.0.1 reason=limit max=3"
for pid in "${waiters[@]}"; do
    wait_until "a waiter is released by the wait timeout" dead "$pid"
    p2m_kill "$pid"
done

# ---------------------------------------------------------------- idle timeout

echo_pod pod4 web
p2m_bg quiet socat -u "TCP:127.0.0.1:$Q" STDOUT
QUIET=$P2M_BG_PID
wait_until "the quiet consumer is joined" eval "(( \$(log_count 'event=tunnel_join lease=$Q') >= 4 ))"
wait_until "the silent tunnel is closed by the idle timeout" log_has "event=tunnel_close lease=$Q .* reason=idle_timeout"
wait_until "the quiet consumer sees the close" dead "$QUIET"
p2m_kill "$QUIET"

# ---------------------------------------------------------------- TLS passes through

mkdir -p "$T/www"
echo "through the tunnel" >"$T/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=web.pipe2me.localhost" \
    -keyout "$T/web.key" -out "$T/web.pem" 2>/dev/null
p2m_free_port WEB
# exec in place, so the PID p2m_bg records is the server's own and the EXIT trap stops it.
p2m_bg web bash -c 'cd "$1" && shift && exec "$@"' _ "$T/www" openssl s_server -quiet -WWW -accept "127.0.0.1:$WEB" -cert "$T/web.pem" -key "$T/web.key"
wait_until "the web service listens" listening "$WEB"
next_port P
lease "$P" pre web 127.0.0.1 10
p2m_bg tlspod socat -T 60 "TCP:127.0.0.1:$P" "TCP:127.0.0.1:$WEB"
wait_until "the TLS pod is idle" redis_is 1 HGET "p2m:idle:$NAME" web
got=$(curl -sS --max-time 20 --cacert "$T/web.pem" --resolve "web.pipe2me.localhost:$Q:127.0.0.1" \
    "https://web.pipe2me.localhost:$Q/index.html")
expect_eq "through the tunnel" "$got" "HTTPS end to end: the certificate is the pod's, not the relay's"

# ---------------------------------------------------------------- many tunnels at once

stop_relay
p2m_write_config "{\"relay\": {\"name\": \"$NAME\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 10,
    \"idle_timeout\": 30, \"max_conns_per_addr\": 100}}"
: >"$T/relay.log"
start_relay "$P2M_CONFIG"
wait_until "the consumer lease is bound again after the restart" listening "$Q"
pods=()
for i in $(seq 1 24); do
    echo_pod "mpod$i" web
    pods+=("$POD_PID")
done
consumers=()
for i in $(seq 1 24); do
    head -c $((100000 + i * 7919)) /dev/urandom >"$T/m$i.in"
    p2m_bg "mcons$i" bash -c "socat -t 20 -T 60 - TCP:127.0.0.1:$Q <'$T/m$i.in' >'$T/m$i.out'"
    consumers+=("$P2M_BG_PID")
done
for pid in "${consumers[@]}"; do
    wait_until "consumer $pid finishes" dead "$pid"
    p2m_kill "$pid"
done
for i in $(seq 1 24); do
    cmp -s "$T/m$i.in" "$T/m$i.out" || fail "consumer $i: echo differs from what it sent"
    p2m_ok
done
wait_until "all 24 tunnels closed cleanly" eval "(( \$(log_count 'event=tunnel_close .* reason=done') == 24 ))"
wait_until "no pre-connection is left idle" redis_is "" HGET "p2m:idle:$NAME" web

# ---------------------------------------------------------------- counters for /metrics

stats() { rcli HGET "p2m:stats:relay:$NAME" "$1"; }
# 1 + 1 + 1 + 1 (idle timeout) + 1 (TLS) joins before the restart, 24 after.
wait_until "per-label connection counter" redis_is 29 HGET "p2m:stats:relay:$NAME" web:conns
in=$(stats web:bytes_in)
out=$(stats web:bytes_out)
((in > (32 << 20) && out > (32 << 20))) || fail "byte counters too small: in=$in out=$out"
p2m_ok

stop_relay
! grep -E 'level=error' "$T/relay.log" || fail "the relay logged errors"
p2m_ok
