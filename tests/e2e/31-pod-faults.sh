#!/usr/bin/env bash
# pipe2me-pod when things break: the registrar down at start (the pod backs off without spinning
# and registers once it is up), the local service down (the consumer sees a clean close, the pod
# serves again once the service is back), the pod killed with -9 mid-transfer (the consumer sees
# the close; a restarted pod serves the next consumer), and the relay restarted (the pod registers
# again and serves). Consumers are socat on the consumer port the registrar redirects to.
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
POOL=3

# wait_until DESC CMD...: polls CMD (every 0.1 s, at most 20 s) until it succeeds.
wait_until() {
    local desc=$1 i
    shift
    for ((i = 0; i < 200; i++)); do
        "$@" 2>/dev/null && {
            p2m_ok
            return 0
        }
        sleep 0.1
    done
    fail "timed out waiting until $desc"
}
listening() { [[ -n $(ss -Htln "( sport = :$1 )") ]]; }
healthy() { curl -fsS --max-time 2 --cacert "$T/state/ca.pem" "https://pipe2me.localhost:$P2M_HTTPS_PORT/_health" >/dev/null; }
dead() { ! p2m_alive "$1"; }
pod_json() { "$POD_BIN" status --state-dir "$T/podstate" --json | jq -r "$1"; }
# pool_full [SINCE]: the status (written every second) says the pool is full, written after SINCE.
pool_full() { [[ $(pod_json '"\(.updated) \(.pool.idle)"') =~ ^([0-9]+)\ ([0-9]+)$ ]] && ((BASH_REMATCH[1] > ${1:-0} && BASH_REMATCH[2] == POOL)); }
pod_log_has() { grep -q -- "$1" "$T/pod.log"; }
pod_log_count() { grep -c -- "$1" "$T/pod.log" || true; }
is() { [[ $("${@:2}") == "$1" ]]; }

start_registrar() {
    p2m_bg registrar "$P2M_BUILD_DIR/registrar/pipe2me-registrar" -c "$P2M_CONFIG"
    REGISTRAR_PID=$P2M_BG_PID
    wait_until "the registrar listens" listening "$P2M_HTTPS_PORT"
}
start_relay() {
    p2m_bg relay "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$P2M_CONFIG"
    RELAY_PID=$P2M_BG_PID
    wait_until "the relay heartbeat is in Redis" is 1 rcli EXISTS p2m:relay:r1
}
start_pod() {
    p2m_bg pod "$POD_BIN" register --provision "$T/pod1.json" --forward "127.0.0.1:$ECHO_TCP" --cacert "$T/state/ca.pem" \
        --state-dir "$T/podstate" --pool "$POOL" --log-level debug
    POD_PID=$P2M_BG_PID
}
start_echo() {
    p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO_TCP"
    ECHO_PID=$P2M_BG_PID
    wait_until "the echo service listens" listening "$ECHO_TCP"
}
consumer_port() {
    local loc
    loc=$(curl -sS --max-time 10 --cacert "$T/state/ca.pem" -o /dev/null -w '%{redirect_url}' \
        "https://echo.pipe2me.localhost:$P2M_HTTPS_PORT/")
    [[ $loc =~ ^https://echo\.pipe2me\.localhost:([0-9]+)/$ ]] || fail "no redirect: $(p2m_show "$loc")"
    Q=${BASH_REMATCH[1]}
}
# served MSG: a consumer gets MSG echoed back through the pod.
served() { [[ $(printf '%s' "$1" | timeout 10 socat -t 5 - "TCP:127.0.0.1:$Q") == "$1" ]]; }

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_free_port_range PORT_LO PORT_HI 32
p2m_write_config "{\"relay\": {\"name\": \"r1\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 10}}"
# The registrar makes its CA on first start; the pod is given that file.
start_registrar
wait_until "the registrar wrote its CA" test -s "$T/state/ca.pem"
p2m_kill "$REGISTRAR_PID"
start_relay
admin pod add pod1 --label echo -o "$T/pod1.json" >/dev/null
p2m_free_port ECHO_TCP
start_echo

# ---------------------------------------------------------------- the registrar down at start

start_pod
sleep 5
attempts=$(pod_log_count 'event=register_start')
((attempts >= 2 && attempts <= 10)) || fail "registration attempts in 5 s with the registrar down: $attempts, want 2..10"
p2m_ok
expect_eq 1 "$(pod_log_count 'event=registrar_down')" "the registrar being down is logged once at warn level"
pod_log_has 'level=warn event=registrar_down label=echo error=".*" retry_ms=' || fail "registrar_down line"
p2m_ok
expect_eq down "$(pod_json .health.registrar)" "status: registrar down"
expect_eq 0 "$(pod_json .pool.idle)" "status: nothing idle while the registrar is down"

start_registrar
wait_until "the registrar sees the relay" healthy
wait_until "the pod registers once the registrar is up" pool_full
pod_log_has 'event=registrar_up' || fail "no registrar_up line"
p2m_ok
consumer_port
served "first" || fail "the first consumer was not served"
p2m_ok

# ---------------------------------------------------------------- the local service down

p2m_kill "$ECHO_PID"
since=$(date +%s)
got=$(printf 'nobody home' | timeout 15 socat -t 5 - "TCP:127.0.0.1:$Q" 2>"$T/socat.err") || fail "consumer exit status $? (a reset?): $(cat "$T/socat.err")"
expect_eq "" "$got" "a consumer of a service that is down reads nothing"
expect_empty "$T/socat.err"
wait_until "the pod logs the service down" pod_log_has 'level=warn event=local_down label=echo reason="Connection refused"'
pod_log_has 'event=tunnel_close label=echo lease=[0-9]* fd=[0-9-]* local_fd=[0-9-]* reason=local_down error="Connection refused"' ||
    fail "no tunnel_close line for the refused local connect"
p2m_ok
start_echo
wait_until "a consumer is served once the service is back" served "back again"
wait_until "the pod logs the service up" pod_log_has 'event=local_up'
wait_until "the pool refills after the local backoff" pool_full "$since"

# ---------------------------------------------------------------- kill -9 mid-transfer

p2m_bg slow bash -c "for i in \$(seq 1 3000); do echo line\$i; sleep 0.01; done | socat -t 2 - TCP:127.0.0.1:$Q >'$T/slow.out'"
SLOW_PID=$P2M_BG_PID
wait_until "the transfer is under way" grep -q line20 "$T/slow.out"
kill -KILL "$POD_PID"
wait "$POD_PID" 2>/dev/null || true
p2m_forget "$POD_PID"
wait_until "the consumer sees the close" dead "$SLOW_PID"
p2m_kill "$SLOW_PID"
lines=$(wc -l <"$T/slow.out")
((lines < 3000)) || fail "the transfer was not cut: $lines lines"
p2m_ok

# A restarted pod (same state dir) goes on with its session and serves the next consumer.
mv "$T/pod.log" "$T/pod-killed.log"
since=$(date +%s)
start_pod
wait_until "the restarted pod fills its pool" pool_full "$since"
pod_log_has 'event=session_resumed' || fail "the restarted pod did not resume its session"
p2m_ok
expect_eq 0 "$(pod_log_count 'status=401')" "no 401 after the restart"
served "after restart" || fail "the restarted pod did not serve"
p2m_ok

# ---------------------------------------------------------------- relay restart

since=$(date +%s)
p2m_kill "$RELAY_PID"
# An idle pre-connection the relay closes reads as end of stream, which PROTOCOL 3.5 makes a
# consumer that sent nothing: forwarded (the echo sees a connection closed at once) and refilled.
wait_until "the pod sees its pre-connections end" pod_log_has 'event=preconn_eof label=echo lease=[0-9]* fd=[0-9]* idle_ms='
start_relay
wait_until "the pod registers again after the relay restart" pool_full "$since"
wait_until "a consumer is served after the relay restart" served "relay is back"

# ---------------------------------------------------------------- clean stop

kill -TERM "$POD_PID"
wait_until "the pod exits on TERM" dead "$POD_PID"
rc=0
wait "$POD_PID" || rc=$?
p2m_forget "$POD_PID"
expect_eq 0 "$rc" "pod exit status after SIGTERM"
! grep -E 'level=error' "$T/pod.log" || fail "the pod logged errors"
p2m_ok
secret=$(jq -r .secret "$T/pod1.json")
! grep -rqF -- "$secret" "$T/pod.log" "$T/podstate" || fail "the secret was written where it must not be"
p2m_ok
