#!/usr/bin/env bash
# pipe2me-pod's graceful stop (--drain-timeout, docs/OPERATIONS.md "Stopping a pod"): on SIGTERM the
# pod gives its idle pre-connections back (the relay's idle count for the label drops to 0 while a
# transfer still runs) and lets the joined tunnels finish: a 4 MiB echo in flight at the signal
# comes back whole and the pod exits 0 after it with tunnels_left=0; a silent consumer is cut at
# --drain-timeout 1 (tunnels_left=1); a consumer whose request already waits on an idle
# pre-connection when the signal comes (the pod held with SIGSTOP meanwhile) is answered, not
# reset; a second SIGTERM ends the drain at once; --drain-timeout 0 stops at once as before.
# Every step waits for a state (a log line, a byte count, a Redis field), never for a fixed time.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require socat jq ss sha256sum
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
POOL=3
P2M_POOL=$POOL
LABEL=drain

# Every pod below runs in front of the TCP echo with the same state dir (the session it keeps spares
# a TOTP step per start), its output in $T/$POD_LOG.log; p2m_start_pod waits until its pool is full
# and the relay counts it idle, and sets POD_PID.

# term_pod: SIGTERM, and the pod logs that it stops (a check).
term_pod() {
    kill -TERM "$POD_PID"
    p2m_wait_until "pod ($POD_LOG) logs event=stopping" p2m_log_has "$POD_LOG" 'event=stopping .*drain_timeout='
}

# pod_exits: waits until the pod has exited, reaps it; its exit status must be 0 (two checks).
pod_exits() {
    local rc=0
    p2m_wait_until "pod ($POD_LOG) exits" p2m_dead "$POD_PID"
    wait "$POD_PID" || rc=$?
    p2m_forget "$POD_PID"
    expect_eq 0 "$rc" "pod ($POD_LOG) exit status"
    expect_log_clean "$POD_LOG"
}

# drained_line: the pod's event=drained line (a check that there is exactly one).
drained_line() {
    expect_eq 1 "$(p2m_log_count "$POD_LOG" 'event=drained')" "pod ($POD_LOG): one event=drained line"
    DRAINED=$(grep -- 'event=drained' "$T/$POD_LOG.log")
}

# consumer NAME LINGER IN OUT: socat to the consumer port with IN as its input (a file or a FIFO),
# what comes back in OUT; sets CONSUMER_PID. Once one direction has ended it gives the other LINGER
# seconds (socat -t): long for a transfer that must complete, short for a consumer whose input
# stays open, so that it exits once the pod's side closes.
consumer() {
    # shellcheck disable=SC2016 # the inner shell expands its arguments
    p2m_bg "$1" bash -c 'exec socat -t "$2" -T 120 - "TCP:127.0.0.1:$1" <"$3" >"$4"' _ "$Q" "$2" "$3" "$4"
    CONSUMER_PID=$P2M_BG_PID
}


# consumer_done NAME: the consumer exited with status 0 and wrote nothing on stderr (no reset).
consumer_done() {
    local rc=0
    p2m_wait_until "consumer $1 exits" p2m_dead "$CONSUMER_PID"
    wait "$CONSUMER_PID" || rc=$?
    p2m_forget "$CONSUMER_PID"
    expect_eq 0 "$rc" "consumer $1 exit status"
    expect_empty "$T/$1.log"
}

# pod_state_is STATE: the pod's status.json says STATE.
pod_state_is() { [[ $(jq -r .state "$T/podstate/status.json") == "$1" ]]; }

# pod_rx_waiting PID: one of PID's TCP connections has bytes in its receive queue (in any state:
# the consumer's end of stream may have come after them).
pod_rx_waiting() {
    ss -Htanp | awk -v p="pid=$1," 'index($0, p) && $1 != "LISTEN" && $2 > 0 { found = 1 } END { exit !found }'
}

# ---------------------------------------------------------------- setup

p2m_start_system '{}'
admin pod add poddrain --label "$LABEL" -o "$T/pod.json" >/dev/null
p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO_TCP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_TCP"

# The usage text names the option.
expect_status 0 "$POD_BIN" --help
expect_match '--drain-timeout S' "$(cat "$OUT")" "--help shows --drain-timeout"

POD_LOG=pod-inflight
p2m_start_pod -f "$T/pod.json" -d "$T/podstate" -o "$POD_LOG" -w both pod "$LABEL" "127.0.0.1:$ECHO_TCP" --log-level debug
p2m_consumer_port Q https "$LABEL"

# ---------------------------------------------------------------- a transfer in flight

# The consumer's input is a FIFO this shell holds open: 1 MiB goes first and comes back through
# the echo, then the pod gets SIGTERM, then 3 MiB more and the end of stream.
head -c $((1 << 20)) /dev/urandom >"$T/part1"
head -c $((3 << 20)) /dev/urandom >"$T/part2"
cat "$T/part1" "$T/part2" >"$T/inflight.in"
mkfifo "$T/inflight.fifo"
consumer inflight 60 "$T/inflight.fifo" "$T/inflight.out"
exec 7>"$T/inflight.fifo"
cat "$T/part1" >&7
p2m_wait_until "the first MiB is echoed back" p2m_size_at_least "$T/inflight.out" $((1 << 20))
# The consumer took a pre-connection: once the pod has replaced it, every idle one is counted below.
p2m_wait_until "the relay counts $POOL idle again" p2m_redis_is "$POOL" HGET p2m:idle:r1 "$LABEL"

term_pod
# The pool is given back while the tunnel still runs: the relay joins nobody else to this pod.
p2m_wait_until "the relay's idle count for $LABEL drops to 0" p2m_idle_is 0 "$LABEL"
p2m_wait_until "the pod's status says draining" pod_state_is draining
expect_eq "$POOL" "$(p2m_log_count "$POD_LOG" 'event=preconn_close .*reason="draining"')" "every idle pre-connection closed"
p2m_alive "$POD_PID" || fail "the pod exited with a tunnel in flight"
p2m_ok
expect_eq 1 "$(p2m_pod_json "$T/podstate" .tunnels.active)" "status: the tunnel is still active"

cat "$T/part2" >&7
exec 7>&-
consumer_done inflight
expect_eq "$(sha256sum <"$T/inflight.in")" "$(sha256sum <"$T/inflight.out")" "4 MiB in flight at SIGTERM come back unchanged"
pod_exits
drained_line
expect_match "event=drained label=$LABEL tunnels_left=0 ms=[0-9]+" "$DRAINED" "drained with no tunnel left"
p2m_log_has "$POD_LOG" "event=tunnel_close label=$LABEL .* reason=done bytes_in=$((4 << 20)) bytes_out=$((4 << 20))" ||
    fail "the tunnel did not close as done with 4 MiB each way"
p2m_ok
n=$(sed -n '/event=stopping/,$p' "$T/$POD_LOG.log" | grep -c -e 'event=register_start' -e 'event=registered' -e 'event=preconn_idle' || true)
expect_eq 0 "$n" "no registration and no new pre-connection after SIGTERM"
expect_eq stopped "$(jq -r .state "$T/podstate/status.json")" "status after exit"

# ---------------------------------------------------------------- --drain-timeout 1 and a silent consumer

POD_LOG=pod-bound
p2m_start_pod -f "$T/pod.json" -d "$T/podstate" -o "$POD_LOG" -w both pod "$LABEL" "127.0.0.1:$ECHO_TCP" --drain-timeout 1
mkfifo "$T/silent.fifo"
consumer silent 1 "$T/silent.fifo" "$T/silent.out"
exec 7>"$T/silent.fifo"
printf 'hello' >&7
p2m_wait_until "the silent consumer is joined and echoed" p2m_file_is "$T/silent.out" hello
term_pod
pod_exits
drained_line
expect_match "event=drained label=$LABEL tunnels_left=1 ms=([0-9]+)" "$DRAINED" "the silent tunnel is left at the bound"
((BASH_REMATCH[1] >= 1000)) || fail "drained after ${BASH_REMATCH[1]} ms, before --drain-timeout 1"
p2m_ok
p2m_log_has "$POD_LOG" "event=tunnel_close label=$LABEL .* reason=shutdown" || fail "the silent tunnel was not closed at the bound"
p2m_ok
# The consumer, still holding its end open, sees the close.
p2m_wait_until "the silent consumer sees the close" p2m_dead "$CONSUMER_PID"
p2m_kill "$CONSUMER_PID"
exec 7>&-

# ---------------------------------------------------------------- a request already waiting at SIGTERM

# The pod is held with SIGSTOP while the consumer connects and sends: the relay joins it to an idle
# pre-connection and its bytes wait in the pod's socket, unread. Then SIGTERM, then SIGCONT.
POD_LOG=pod-waiting
p2m_start_pod -f "$T/pod.json" -d "$T/podstate" -o "$POD_LOG" -w both pod "$LABEL" "127.0.0.1:$ECHO_TCP" --log-level debug
printf 'early request' >"$T/early.in"
kill -STOP "$POD_PID"
consumer early 60 "$T/early.in" "$T/early.out"
p2m_wait_until "the request waits in a stopped pod's socket" pod_rx_waiting "$POD_PID"
kill -TERM "$POD_PID"
kill -CONT "$POD_PID"
p2m_wait_until "pod ($POD_LOG) logs event=stopping" p2m_log_has "$POD_LOG" 'event=stopping .*drain_timeout=10'
consumer_done early
expect_eq "early request" "$(cat "$T/early.out")" "the waiting request is answered"
pod_exits
drained_line
expect_match "event=drained label=$LABEL tunnels_left=0 " "$DRAINED" "drained with no tunnel left"
expect_eq 1 "$(p2m_log_count "$POD_LOG" 'event=preconn_alive')" "one pre-connection came alive"
expect_eq $((POOL - 1)) "$(p2m_log_count "$POD_LOG" 'event=preconn_close .*reason="draining"')" "the others were given back"
p2m_wait_until "the relay's idle count for $LABEL is 0" p2m_idle_is 0 "$LABEL"

# ---------------------------------------------------------------- a second SIGTERM

POD_LOG=pod-twice
p2m_start_pod -f "$T/pod.json" -d "$T/podstate" -o "$POD_LOG" -w both pod "$LABEL" "127.0.0.1:$ECHO_TCP" --drain-timeout 600
mkfifo "$T/twice.fifo"
consumer twice 1 "$T/twice.fifo" "$T/twice.out"
exec 7>"$T/twice.fifo"
printf 'hold' >&7
p2m_wait_until "the consumer is joined and echoed" p2m_file_is "$T/twice.out" hold
term_pod
p2m_wait_until "the pod's status says draining" pod_state_is draining
kill -TERM "$POD_PID"
# Well within the 600-s drain: only the second signal can end it.
pod_exits
p2m_log_has "$POD_LOG" "event=stop_now signal=15 label=$LABEL tunnels=1" || fail "no event=stop_now line"
p2m_ok
drained_line
expect_match "event=drained label=$LABEL tunnels_left=1 " "$DRAINED" "the second SIGTERM leaves the tunnel"
p2m_wait_until "the consumer sees the close" p2m_dead "$CONSUMER_PID"
p2m_kill "$CONSUMER_PID"
exec 7>&-

# ---------------------------------------------------------------- --drain-timeout 0: as before

POD_LOG=pod-zero
p2m_start_pod -f "$T/pod.json" -d "$T/podstate" -o "$POD_LOG" -w both pod "$LABEL" "127.0.0.1:$ECHO_TCP" --drain-timeout 0
mkfifo "$T/zero.fifo"
consumer zero 1 "$T/zero.fifo" "$T/zero.out"
exec 7>"$T/zero.fifo"
printf 'cut' >&7
p2m_wait_until "the consumer is joined and echoed" p2m_file_is "$T/zero.out" cut
term_pod
pod_exits
drained_line
expect_match "event=drained label=$LABEL tunnels_left=1 " "$DRAINED" "--drain-timeout 0 leaves the tunnel"
expect_eq 0 "$(p2m_log_count "$POD_LOG" 'reason="draining"')" "--drain-timeout 0 gives nothing back before it closes"
p2m_wait_until "the consumer sees the close" p2m_dead "$CONSUMER_PID"
p2m_kill "$CONSUMER_PID"
exec 7>&-
p2m_wait_until "the relay's idle count for $LABEL is 0 after the stop" p2m_idle_is 0 "$LABEL"
