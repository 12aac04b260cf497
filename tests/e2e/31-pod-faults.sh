#!/usr/bin/env bash
# pipe2me-pod when things break: the registrar down at start (the pod backs off without spinning
# and registers once it is up), the local service down (the consumer sees a clean close, the pod
# serves again once the service is back), the pod killed with -9 mid-transfer (the consumer sees
# the close; a restarted pod serves the next consumer), and the relay restarted (the pod registers
# again and serves). Consumers are socat on the consumer port the registrar redirects to.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
POOL=3
P2M_POOL=$POOL

# pool_full [SINCE]: the pod's status says its pool is full, in a status written after SINCE.
pool_full() { p2m_pool_full "$T/podstate" "$POOL" "${1:-0}"; }

start_registrar() {
    p2m_start_registrar
    p2m_wait_until "the registrar listens" p2m_listening "$P2M_HTTPS_PORT"
}
start_echo() {
    p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO_TCP"
    ECHO_PID=$P2M_BG_PID
    p2m_wait_until "the echo service listens" p2m_listening "$ECHO_TCP"
}
# served MSG: a consumer gets MSG echoed back through the pod.
served() { [[ $(printf '%s' "$1" | timeout 10 socat -t 5 - "TCP:127.0.0.1:$Q") == "$1" ]]; }

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_free_port_range PORT_LO PORT_HI 32
p2m_write_config "{\"relay\": {\"name\": \"r1\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 10}}"
# The registrar makes its CA on first start; the pod is given that file.
start_registrar
p2m_wait_until "the registrar wrote its CA" test -s "$T/state/ca.pem"
p2m_kill "$REGISTRAR_PID"
p2m_start_relay
admin pod add pod1 --label echo -o "$T/pod1.json" >/dev/null
p2m_free_port ECHO_TCP
start_echo

# ---------------------------------------------------------------- the registrar down at start

p2m_start_pod -f "$T/pod1.json" -d "$T/podstate" -w none pod "" "127.0.0.1:$ECHO_TCP" --log-level debug
# Retries with backoff: at least two attempts (however long a loaded machine takes to make them),
# and at most two a second over at least 5 s (a slow machine makes fewer, never more).
t0=$(p2m_now_ms)
p2m_wait_until -t 60 "the pod retries its registration" p2m_log_count_above pod 'event=register_start' 1
sleep 5
attempts=$(p2m_log_count pod 'event=register_start') secs=$((($(p2m_now_ms) - t0 + 999) / 1000))
((attempts <= 2 * secs)) || fail "registration attempts in $secs s with the registrar down: $attempts, want at most $((2 * secs))"
p2m_ok
expect_eq 1 "$(p2m_log_count pod 'event=registrar_down')" "the registrar being down is logged once at warn level"
p2m_log_has pod 'level=warn event=registrar_down label=echo error=".*" retry_ms=' || fail "registrar_down line"
p2m_ok
expect_eq down "$(p2m_pod_json "$T/podstate" .health.registrar)" "status: registrar down"
expect_eq 0 "$(p2m_pod_json "$T/podstate" .pool.idle)" "status: nothing idle while the registrar is down"

start_registrar
p2m_wait_until "the registrar sees the relay" p2m_registrar_healthy
p2m_wait_until "the pod registers once the registrar is up" pool_full
p2m_log_has pod 'event=registrar_up' || fail "no registrar_up line"
p2m_ok
p2m_consumer_port Q https echo
served "first" || fail "the first consumer was not served"
p2m_ok

# ---------------------------------------------------------------- the local service down

p2m_kill "$ECHO_PID"
since=$(date +%s)
got=$(printf 'nobody home' | timeout 15 socat -t 5 - "TCP:127.0.0.1:$Q" 2>"$T/socat.err") || fail "consumer exit status $? (a reset?): $(cat "$T/socat.err")"
expect_eq "" "$got" "a consumer of a service that is down reads nothing"
expect_empty "$T/socat.err"
p2m_wait_until "the pod logs the service down" p2m_log_has pod 'level=warn event=local_down label=echo reason="Connection refused"'
p2m_log_has pod 'event=tunnel_close label=echo lease=[0-9]* fd=[0-9-]* local_fd=[0-9-]* reason=local_down error="Connection refused"' ||
    fail "no tunnel_close line for the refused local connect"
p2m_ok
start_echo
p2m_wait_until "a consumer is served once the service is back" served "back again"
p2m_wait_until "the pod logs the service up" p2m_log_has pod 'event=local_up'
p2m_wait_until "the pool refills after the local backoff" pool_full "$since"

# ---------------------------------------------------------------- kill -9 mid-transfer

p2m_bg slow bash -c "for i in \$(seq 1 3000); do echo line\$i; sleep 0.01; done | socat -t 2 - TCP:127.0.0.1:$Q >'$T/slow.out'"
SLOW_PID=$P2M_BG_PID
p2m_wait_until "the transfer is under way" grep -q line20 "$T/slow.out"
kill -KILL "$POD_PID"
wait "$POD_PID" 2>/dev/null || true
p2m_forget "$POD_PID"
p2m_wait_until "the consumer sees the close" p2m_dead "$SLOW_PID"
p2m_kill "$SLOW_PID"
lines=$(wc -l <"$T/slow.out")
((lines < 3000)) || fail "the transfer was not cut: $lines lines"
p2m_ok

# A restarted pod (same state dir) goes on with its session and serves the next consumer.
mv "$T/pod.log" "$T/pod-killed.log"
since=$(date +%s)
p2m_start_pod -f "$T/pod1.json" -d "$T/podstate" -w none pod "" "127.0.0.1:$ECHO_TCP" --log-level debug
p2m_wait_until "the restarted pod fills its pool" pool_full "$since"
p2m_log_has pod 'event=session_resumed' || fail "the restarted pod did not resume its session"
p2m_ok
expect_eq 0 "$(p2m_log_count pod 'status=401')" "no 401 after the restart"
served "after restart" || fail "the restarted pod did not serve"
p2m_ok

# ---------------------------------------------------------------- relay restart

since=$(date +%s)
p2m_kill "$RELAY_PID"
# An idle pre-connection the relay closes reads as end of stream, which PROTOCOL 3.5 makes a
# consumer that sent nothing: forwarded (the echo sees a connection closed at once) and refilled.
p2m_wait_until "the pod sees its pre-connections end" p2m_log_has pod 'event=preconn_eof label=echo lease=[0-9]* fd=[0-9]* idle_ms='
p2m_start_relay
p2m_wait_until "the pod registers again after the relay restart" pool_full "$since"
p2m_wait_until "a consumer is served after the relay restart" served "relay is back"

# ---------------------------------------------------------------- clean stop

p2m_stop pod "$POD_PID"
expect_log_clean pod 'level=error'
secret=$(jq -r .secret "$T/pod1.json")
! grep -rqF -- "$secret" "$T/pod.log" "$T/podstate" || fail "the secret was written where it must not be"
p2m_ok
