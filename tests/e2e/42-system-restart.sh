#!/usr/bin/env bash
# The whole system when parts of it die: a private redis-server, pipe2me-registrar, pipe2me-relay
# and pipe2me-pod on loopback in front of a socat service (a line-echo, or an endless stream).
#   - the pod killed (-9) mid-transfer: the consumer sees an end of stream (not a reset), within a
#     bound; the dead pod's leases go; the pod started again serves the next consumer;
#   - the relay restarted (SIGTERM, then started again): the pod registers again and is served
#     again; `pipe2me-admin lease ls` then lists only live leases (each pre lease an established
#     connection, the consumer lease a listener), and the pod's descriptors are back to before;
#   - the local service down: the consumer's connection is closed at once (well before the relay's
#     wait_timeout); the service back: served again.
# Every time is bounded and printed.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
RELAY_NAME=sys
LABEL=rs
POOL=2
P2M_POOL=$POOL P2M_RELAY_NAME=$RELAY_NAME
WAIT_TIMEOUT=10 # relay.wait_timeout: a consumer nobody serves is closed after this

# ---------------------------------------------------------------- helpers

# lease_kinds_are KINDS: the kinds of the leases `pipe2me-admin lease ls` lists, in its order.
lease_kinds_are() { [[ $(admin lease ls --json | jq -r '[.[] | .kind] | join(" ")') == "$1" ]]; }
pod_status_is() { [[ $("$POD_BIN" status --state-dir "$T/pod.state" --json | jq -r "$1") == "$2" ]]; }

# echo_ok MSG: one consumer on Q sends the line MSG, half-closes and gets MSG back.
echo_ok() {
    local got
    got=$(printf '%s\n' "$1" | timeout 20 socat -t 15 -T 15 - "TCP:127.0.0.1:$Q") || return 1
    [[ $got == "$1" ]]
}

# leases_live: `pipe2me-admin lease ls` lists pre leases holding POOL established connections at the
# relay (none without one) and the consumer lease Q, listening; nothing else.
leases_live() {
    local json pre consumer p
    json=$(admin lease ls --json) || return 1
    pre=$(jq -r '[.[] | select(.kind == "pre") | .port] | join(" ")' <<<"$json")
    consumer=$(jq -r '[.[] | select(.kind != "pre") | "\(.kind):\(.port)"] | join(" ")' <<<"$json")
    [[ $consumer == "consumer:$Q" ]] && p2m_listening "$Q" || return 1
    read -r -a pre <<<"$pre"
    ((${#pre[@]} >= 1 && ${#pre[@]} <= POOL)) || return 1
    p2m_pre_conns_are "$POOL"
}

# The local service: a first line "stream" gets endless bytes (64 KiB every 50 ms); any other
# line is echoed back, then everything after it, up to the end of stream.
start_service() {
    p2m_bg svc socat -T 60 "TCP-LISTEN:$SVC,bind=127.0.0.1,reuseaddr,fork" "EXEC:$T/svc.sh"
    SVC_PID=$P2M_BG_PID
    p2m_wait_until -t 30 "the local service listens" p2m_listening "$SVC"
}
cat >"$T/svc.sh" <<'EOF'
#!/usr/bin/env bash
IFS= read -r line || exit 0
if [[ $line == stream ]]; then
    while head -c 65536 /dev/zero; do sleep 0.05; done
    exit 0
fi
printf '%s\n' "$line"
exec cat
EOF
chmod +x "$T/svc.sh"

# ---------------------------------------------------------------- setup

p2m_start_system "{\"relay\": {\"name\": \"$RELAY_NAME\", \"wait_timeout\": $WAIT_TIMEOUT, \"idle_timeout\": 60},
    \"registrar\": {\"consumer_ttl\": 300}}"
p2m_free_port SVC
start_service

admin pod add podrs --label "$LABEL" -o "$T/pod.json" >/dev/null
mkdir -m 700 "$T/pod.state"
p2m_start_pod -f "$T/pod.json" -d "$T/pod.state" -w none pod "" "127.0.0.1:$SVC"
p2m_wait_until -t 45 "the relay holds the pod's $POOL idle pre-connections" p2m_idle_is "$POOL" "$LABEL"
p2m_consumer_port Q https "$LABEL"
p2m_wait_until "a first consumer is served" echo_ok first
echo "restart: pod up, consumer port $Q; leases:"
p2m_show_leases

# ---------------------------------------------------------------- the pod killed mid-transfer

# shellcheck disable=SC2016 # the inner shell expands its arguments
p2m_bg stream bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 99
    printf "stream\n" >&3
    exec cat <&3 >"$2"' _ "$Q" "$T/stream.out"
STREAM_PID=$P2M_BG_PID
p2m_wait_until -t 30 "the stream is flowing (256 KiB arrived)" p2m_size_at_least "$T/stream.out" 262144
closes=$(p2m_log_count relay "event=tunnel_close lease=$Q ")
kill -KILL "$POD_PID"
t_kill=$(p2m_now_ms)
p2m_wait_until -t 30 "the consumer's connection ends after the pod died" p2m_dead "$STREAM_PID"
t_end=$(p2m_now_ms)
rc=0
wait "$STREAM_PID" || rc=$?
p2m_forget "$STREAM_PID"
expect_eq 0 "$rc" "the consumer's read ended with an end of stream, not an error (cat's status)"
p2m_wait_until -t 30 "the relay closes the tunnel" p2m_log_count_above relay "event=tunnel_close lease=$Q " "$closes"
why=$(grep "event=tunnel_close lease=$Q " "$T/relay.log" | tail -n 1 | sed -n 's/.* \(reason=[^ ]*\).*/\1/p')
echo "restart: pod killed after $(stat -c %s "$T/stream.out") bytes; the consumer saw the end $((t_end - t_kill)) ms later; relay: $why"
wait "$POD_PID" 2>/dev/null || true # reaped, as init would: a zombie still looks like a running pod
p2m_forget "$POD_PID"
p2m_wait_until -t 30 "the relay has no idle pre-connection of the dead pod" p2m_idle_is 0 "$LABEL"
p2m_wait_until -t 30 "the dead pod's pre leases are gone; only the consumer lease is left" \
    lease_kinds_are consumer

t0=$(p2m_now_ms)
p2m_start_pod -f "$T/pod.json" -d "$T/pod.state" -w none pod "" "127.0.0.1:$SVC"
p2m_wait_until -t 45 "the restarted pod's $POOL pre-connections are idle at the relay" p2m_idle_is "$POOL" "$LABEL"
p2m_consumer_port Q2 https "$LABEL"
expect_eq "$Q" "$Q2" "the consumer keeps its consumer port"
p2m_wait_until -t 30 "the next consumer is served by the restarted pod" echo_ok "after the pod restart"
t1=$(p2m_now_ms)
echo "restart: pod restarted and serving after $((t1 - t0)) ms"
p2m_wait_until -t 30 "lease ls: only live leases" leases_live
POD_FDS0=$(p2m_fds "$POD_PID")

# ---------------------------------------------------------------- the relay restarted

p2m_stop -t 15 relay "$RELAY_PID"
p2m_wait_until -t 30 "the pod sees its pre-connections closed" pod_status_is .pool.idle 0
t0=$(p2m_now_ms)
p2m_start_relay
p2m_wait_until -t 60 "the pod's $POOL pre-connections are idle at the new relay" p2m_idle_is "$POOL" "$LABEL"
t1=$(p2m_now_ms)
p2m_consumer_port Q3 https "$LABEL"
echo "restart: relay restarted; the pod's pool refilled $((t1 - t0)) ms after the start; consumer port $Q3 (was $Q)"
Q=$Q3
p2m_wait_until -t 30 "a consumer is served after the relay restart" echo_ok "after the relay restart"
t0=$(p2m_now_ms)
p2m_wait_until -t 35 "lease ls: only live leases after the relay restart" leases_live
t1=$(p2m_now_ms)
echo "restart: leases live-only $((t1 - t0)) ms after the first consumer:"
p2m_show_leases
p2m_alive "$POD_PID" || fail "the pod died during the relay restart"
p2m_ok
p2m_wait_until -t 30 "the pod's sockets and other descriptors are back to $(p2m_show_fds "$POD_FDS0")" p2m_fds_like "$POD_PID" "$POD_FDS0"
echo "restart: pod fds before the relay restart $(p2m_show_fds "$POD_FDS0"), after $(p2m_show_fds "$(p2m_fds "$POD_PID")")"

# ---------------------------------------------------------------- the local service down, then back

p2m_kill "$SVC_PID"
p2m_wait_until -t 30 "the local service is gone" p2m_not_listening "$SVC"
t0=$(p2m_now_ms)
got=$(printf 'hello\n' | timeout 30 socat -t 25 -T 25 - "TCP:127.0.0.1:$Q") || fail "the consumer failed (status $?)"
t1=$(p2m_now_ms)
expect_eq "" "$got" "with the local service down, the consumer reads nothing"
# The pod closed it, not the relay's wait timeout (which a slow machine may also reach: the
# verdict is the relay's reason, not the time it took).
! p2m_log_has relay "event=consumer_wait_timeout lease=$Q " ||
    fail "the consumer was closed by relay.wait_timeout after $((t1 - t0)) ms: the pod did not close it"
p2m_ok
p2m_wait_until -t 30 "the pod logs the refused local connection" \
    grep -q "event=tunnel_close label=$LABEL .*reason=local_down error=\"Connection refused\"" "$T/pod.log"
echo "restart: with the local service down the consumer was closed after $((t1 - t0)) ms"

t0=$(p2m_now_ms)
start_service
p2m_wait_until -t 40 "a consumer is served once the local service is back" echo_ok "service back"
t1=$(p2m_now_ms)
echo "restart: served $((t1 - t0)) ms after the local service came back"
p2m_wait_until -t 35 "lease ls: only live leases" leases_live
p2m_wait_until -t 30 "the pod's sockets and other descriptors are back to $(p2m_show_fds "$POD_FDS0")" p2m_fds_like "$POD_PID" "$POD_FDS0"
echo "restart: pod fds at the end $(p2m_show_fds "$(p2m_fds "$POD_PID")")"

# ---------------------------------------------------------------- clean exits, clean logs

p2m_stop -t 15 pod "$POD_PID"
p2m_stop -t 15 relay "$RELAY_PID"
p2m_stop -t 15 registrar "$REGISTRAR_PID"
for f in registrar relay pod; do
    expect_log_clean "$f"
done
echo "restart: done in ${SECONDS}s"
