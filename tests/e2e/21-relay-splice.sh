#!/usr/bin/env bash
# pipe2me-relay's data path: consumers on consumer leases joined to idle pre-connections of the
# same label, bytes both ways unchanged (TLS passes through), half-closes passed on, a bounded
# wait for a pre-connection, idle timeout, per-address limit, and the per-label counters in
# p2m:stats:relay:NAME. Pods are socat processes whose far end is cat (an echo service) or an
# openssl s_server; consumers are socat and curl, all on loopback.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require socat ss openssl curl sha256sum
p2m_require_built relay/pipe2me-relay
NAME=r1
P2M_WAIT_SECONDS=15 # how long p2m_wait_until waits

# Ports handed out in order from the relay's range.
NEXT=0
next_port() { printf -v "$1" '%s' $((PORT_LO + NEXT)) && NEXT=$((NEXT + 1)); }


# echo_pod NAME LABEL: leases a pre port for LABEL and connects an echo pod to it; waits until
# the relay counts it idle. Sets POD_PID and POD_PORT.
echo_pod() {
    local before
    before=$(rcli HGET "p2m:idle:$NAME" "$2")
    next_port POD_PORT
    p2m_lease -r "$NAME" -w "$POD_PORT" pre "$2" pod1 127.0.0.1 10
    p2m_bg "$1" socat -t 30 -T 60 "TCP:127.0.0.1:$POD_PORT" EXEC:cat
    POD_PID=$P2M_BG_PID
    p2m_wait_until "pod $1 is idle" p2m_redis_is $((${before:-0} + 1)) HGET "p2m:idle:$NAME" "$2"
}

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_free_port_range PORT_LO PORT_HI 64
p2m_write_config "{\"relay\": {\"name\": \"$NAME\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 2,
    \"idle_timeout\": 3, \"max_conns_per_addr\": 3, \"first_byte_timeout\": 2}}"
p2m_start_relay

next_port Q
p2m_lease -r "$NAME" -w "$Q" consumer web pod1 127.0.0.1 60

# ---------------------------------------------------------------- one exchange, half-closes both ways

echo_pod pod1 web
P1=$POD_PORT
got=$(printf 'hello relay' | timeout 20 socat -t 10 - "TCP:127.0.0.1:$Q")
expect_eq 'hello relay' "$got" "echo through the tunnel"
p2m_wait_until "the tunnel closes when both directions are done" \
    p2m_log_has relay "event=tunnel_close lease=$Q label=web fd=[0-9]* pre=$P1 pod_fd=[0-9]* reason=done bytes_in=11 bytes_out=11"
p2m_log_has relay "event=tunnel_join lease=$Q label=web" || fail "no tunnel_join line"
p2m_ok
p2m_wait_until "the joined pre-connection is no longer idle" p2m_redis_is "" HGET "p2m:idle:$NAME" web
p2m_wait_until "the joined pre lease is deleted" p2m_redis_is 0 EXISTS "p2m:lease:$P1"
p2m_wait_until "pod1 exits" p2m_dead "$POD_PID"

# ---------------------------------------------------------------- 32 MiB both ways, intact

head -c $((32 << 20)) /dev/urandom >"$T/big.in"
echo_pod pod2 web
timeout 120 socat -t 30 -T 60 - "TCP:127.0.0.1:$Q" <"$T/big.in" >"$T/big.out"
expect_eq "$(sha256sum <"$T/big.in")" "$(sha256sum <"$T/big.out")" "32 MiB echoed through the tunnel unchanged"
p2m_wait_until "the big tunnel closes" p2m_log_has relay "reason=done bytes_in=$((32 << 20)) bytes_out=$((32 << 20))"

# ---------------------------------------------------------------- a consumer waits for a pod

# The consumer connects, sends and half-closes before any pre-connection is idle: its bytes wait
# in the kernel, and it is joined when a pod arrives.
p2m_bg early bash -c "printf 'sent early' | socat -t 20 -T 30 - TCP:127.0.0.1:$Q >'$T/early.out'"
EARLY=$P2M_BG_PID
p2m_wait_until "the consumer waits" p2m_log_has relay "event=consumer_wait lease=$Q label=web"
echo_pod_nowait() {
    next_port POD_PORT
    p2m_lease -r "$NAME" -w "$POD_PORT" pre web pod1 127.0.0.1 10
    p2m_bg "$1" socat -t 30 -T 60 "TCP:127.0.0.1:$POD_PORT" EXEC:cat
}
echo_pod_nowait pod3
p2m_wait_until "the waiting consumer gets its echo" p2m_file_is "$T/early.out" 'sent early'
p2m_wait_until "the early consumer exits" p2m_dead "$EARLY"
p2m_kill "$EARLY"
# Joined at once: never counted idle, and its lease is deleted.
p2m_wait_until "the pre lease joined at once is deleted" p2m_redis_is 0 EXISTS "p2m:lease:$POD_PORT"
expect_eq "" "$(rcli HGET "p2m:idle:$NAME" web)" "idle count after a direct join"

# A consumer that never sends takes no pre-connection: closed after relay.first_byte_timeout.
got=$(timeout 20 socat -u "TCP:127.0.0.1:$Q" STDOUT </dev/null || true)
expect_eq "" "$got" "a silent consumer reads nothing"
p2m_wait_until "the first-byte timeout is logged" p2m_log_has relay "event=consumer_close lease=$Q label=web fd=[0-9]* reason=first_byte_timeout"

# No pod comes: a consumer that spoke is closed after relay.wait_timeout.
got=$(printf x | timeout 20 socat -t 20 - "TCP:127.0.0.1:$Q" || true)
expect_eq "" "$got" "a consumer nobody serves reads nothing"
p2m_wait_until "the wait timeout is logged" p2m_log_has relay "event=consumer_close lease=$Q label=web fd=[0-9]* reason=wait_timeout"

# ---------------------------------------------------------------- who may connect, how often

# Another address is refused on a consumer port.
timeout 10 socat -u "TCP:127.0.0.1:$Q,bind=127.0.0.2" STDOUT </dev/null || true
p2m_wait_until "the foreign consumer is refused" p2m_log_has relay "event=conn_refused lease=$Q kind=consumer label=web fd=[0-9]* peer=127.0.0.2"

# relay.max_conns_per_addr = 3: three wait, the fourth is refused at once.
waiters=()
for i in 1 2 3; do
    p2m_bg "waiter$i" socat -t 1 "SYSTEM:printf x; sleep 30" "TCP:127.0.0.1:$Q"
    waiters+=("$P2M_BG_PID")
    p2m_wait_until "waiter $i waits" p2m_log_count_above relay "event=consumer_wait lease=$Q" $((i + 1))
done
timeout 10 socat -u "TCP:127.0.0.1:$Q" STDOUT </dev/null || true
p2m_wait_until "the fourth connection is refused" p2m_log_has relay "event=conn_refused lease=$Q kind=consumer label=web fd=[0-9]* peer=127.0.0.1 reason=limit max=3"
p2m_reap "waiter released by the wait timeout:" "${waiters[@]}"

# ---------------------------------------------------------------- idle timeout

echo_pod pod4 web
# One byte to be joined, then silence both ways.
p2m_bg quiet socat -t 1 "SYSTEM:printf q; sleep 30" "TCP:127.0.0.1:$Q"
QUIET=$P2M_BG_PID
p2m_wait_until "the quiet consumer is joined" p2m_log_count_above relay "event=tunnel_join lease=$Q" 3
p2m_wait_until "the silent tunnel is closed by the idle timeout" p2m_log_has relay "event=tunnel_close lease=$Q .* reason=idle_timeout"
p2m_wait_until "the quiet consumer sees the close" p2m_dead "$QUIET"
p2m_kill "$QUIET"

# ---------------------------------------------------------------- TLS passes through

mkdir -p "$T/www"
echo "through the tunnel" >"$T/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=web.pipe2me.localhost" \
    -keyout "$T/web.key" -out "$T/web.pem" 2>/dev/null
p2m_free_port WEB
# exec in place, so the PID p2m_bg records is the server's own and the EXIT trap stops it.
p2m_bg web bash -c 'cd "$1" && shift && exec "$@"' _ "$T/www" openssl s_server -quiet -WWW -accept "127.0.0.1:$WEB" -cert "$T/web.pem" -key "$T/web.key"
p2m_wait_until "the web service listens" p2m_listening "$WEB"
next_port P
p2m_lease -r "$NAME" -w "$P" pre web pod1 127.0.0.1 10
p2m_bg tlspod socat -T 60 "TCP:127.0.0.1:$P" "TCP:127.0.0.1:$WEB"
p2m_wait_until "the TLS pod is idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" web
got=$(curl -sS --max-time 20 --cacert "$T/web.pem" --resolve "web.pipe2me.localhost:$Q:127.0.0.1" \
    "https://web.pipe2me.localhost:$Q/index.html")
expect_eq "through the tunnel" "$got" "HTTPS end to end: the certificate is the pod's, not the relay's"

# ---------------------------------------------------------------- many tunnels at once

p2m_stop relay "$RELAY_PID"
p2m_write_config "{\"relay\": {\"name\": \"$NAME\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 10,
    \"idle_timeout\": 30, \"max_conns_per_addr\": 100}}"
: >"$T/relay.log"
p2m_start_relay
p2m_wait_until "the consumer lease is bound again after the restart" p2m_listening "$Q"
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
p2m_reap consumer "${consumers[@]}"
for i in $(seq 1 24); do
    cmp -s "$T/m$i.in" "$T/m$i.out" || fail "consumer $i: echo differs from what it sent"
    p2m_ok
done
p2m_wait_until "all 24 tunnels closed cleanly" eval "(( \$(p2m_log_count relay 'event=tunnel_close .* reason=done') == 24 ))"
p2m_wait_until "no pre-connection is left idle" p2m_redis_is "" HGET "p2m:idle:$NAME" web

# ---------------------------------------------------------------- counters for /metrics

stats() { rcli HGET "p2m:stats:relay:$NAME" "$1"; }
# 1 + 1 + 1 + 1 (idle timeout) + 1 (TLS) joins before the restart, 24 after.
p2m_wait_until "per-label connection counter" p2m_redis_is 29 HGET "p2m:stats:relay:$NAME" web:conns
in=$(stats web:bytes_in)
out=$(stats web:bytes_out)
((in > (32 << 20) && out > (32 << 20))) || fail "byte counters too small: in=$in out=$out"
p2m_ok

p2m_stop relay "$RELAY_PID"
expect_log_clean relay 'level=error'
