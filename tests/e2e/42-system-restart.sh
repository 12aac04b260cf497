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
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
REG_BIN=$P2M_BUILD_DIR/registrar/pipe2me-registrar
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
RELAY_NAME=sys
LABEL=rs
POOL=2
WAIT_TIMEOUT=10 # relay.wait_timeout: a consumer nobody serves is closed after this

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
not_listening() { ! listening "$1"; }
# lease_kinds_are KINDS: the kinds of the leases `pipe2me-admin lease ls` lists, in its order.
lease_kinds_are() { [[ $(admin lease ls --json | jq -r '[.[] | .kind] | join(" ")') == "$1" ]]; }
established() { [[ -n $(ss -Htn state established "( sport = :$1 )") ]]; }
dead() { ! p2m_alive "$1"; }
healthy() { curl -fsS --max-time 2 --cacert "$T/state/ca.pem" "https://pipe2me.localhost:$P2M_HTTPS_PORT/_health" >/dev/null; }
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
size_at_least() { (($(stat -c %s "$1" 2>/dev/null || echo 0) >= $2)); }
idle_is() { redis_is "$1" HGET "p2m:idle:$RELAY_NAME" "$LABEL"; }
pod_status_is() { [[ $("$POD_BIN" status --state-dir "$T/pod.state" --json | jq -r "$1") == "$2" ]]; }
# relay_closes: the tunnel_close lines the relay logged for the consumer port Q.
relay_closes() { grep -c "event=tunnel_close lease=$Q " "$T/relay.log" || true; }
relay_closed_more() { (($(relay_closes) > $1)); }

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

# echo_ok MSG: one consumer on Q sends the line MSG, half-closes and gets MSG back.
echo_ok() {
    local got
    got=$(printf '%s\n' "$1" | timeout 20 socat -t 15 -T 15 - "TCP:127.0.0.1:$Q") || return 1
    [[ $got == "$1" ]]
}

# fds PID: "TOTAL SOCKETS PIPES OTHER", PID's open descriptors by kind.
fds() {
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null |
        awk '/^socket:/ { s++; next } /^pipe:/ { p++; next } { o++ } END { printf "%d %d %d %d\n", s + p + o, s, p, o }'
}
# fds_like PID WANT: PID's sockets and other descriptors are as in WANT (an fds line). Pipes are a
# pool that stays open once used (lib/include/p2m/splice.h); 41-system-scale checks they stay put.
fds_like() {
    local now w
    read -r -a now <<<"$(fds "$1")"
    read -r -a w <<<"$2"
    [[ ${now[1]} == "${w[1]}" && ${now[3]} == "${w[3]}" ]]
}
show_fds() {
    local f
    read -r -a f <<<"$1"
    echo "total=${f[0]} sockets=${f[1]} pipes=${f[2]} other=${f[3]}"
}

# leases_live: `pipe2me-admin lease ls` lists exactly POOL pre leases, each an established
# connection at the relay, and the consumer lease Q, listening; nothing else.
leases_live() {
    local json pre consumer p
    json=$(admin lease ls --json) || return 1
    pre=$(jq -r '[.[] | select(.kind == "pre") | .port] | join(" ")' <<<"$json")
    consumer=$(jq -r '[.[] | select(.kind != "pre") | "\(.kind):\(.port)"] | join(" ")' <<<"$json")
    [[ $consumer == "consumer:$Q" ]] && listening "$Q" || return 1
    read -r -a pre <<<"$pre"
    ((${#pre[@]} == POOL)) || return 1
    for p in "${pre[@]}"; do
        established "$p" || return 1
    done
}
show_leases() { admin lease ls | sed 's/^/    /'; }

# start_pod: the pod for LABEL in front of the service, state in $T/pod.state; sets POD_PID.
start_pod() {
    p2m_bg pod "$POD_BIN" register --provision "$T/pod.json" --forward "127.0.0.1:$SVC" --pool "$POOL" \
        --cacert "$T/state/ca.pem" --state-dir "$T/pod.state"
    POD_PID=$P2M_BG_PID
}

start_relay() {
    p2m_bg relay "$RELAY_BIN" -c "$P2M_CONFIG"
    RELAY_PID=$P2M_BG_PID
    wait_until 20 "the relay's heartbeat is in Redis" redis_is 1 EXISTS "p2m:relay:$RELAY_NAME"
}

# The local service: a first line "stream" gets endless bytes (64 KiB every 50 ms); any other
# line is echoed back, then everything after it, up to the end of stream.
start_service() {
    p2m_bg svc socat -T 60 "TCP-LISTEN:$SVC,bind=127.0.0.1,reuseaddr,fork" "EXEC:$T/svc.sh"
    SVC_PID=$P2M_BG_PID
    wait_until 10 "the local service listens" listening "$SVC"
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

p2m_start_redis
p2m_free_port_range PORT_LO PORT_HI 32
p2m_write_config "{\"relay\": {\"name\": \"$RELAY_NAME\", \"ports\": \"$PORT_LO-$PORT_HI\",
    \"wait_timeout\": $WAIT_TIMEOUT, \"idle_timeout\": 60}, \"registrar\": {\"consumer_ttl\": 300}}"
p2m_bg registrar "$REG_BIN" -c "$P2M_CONFIG"
REG_PID=$P2M_BG_PID
start_relay
wait_until 20 "the registrar wrote its CA" test -s "$T/state/ca.pem"
wait_until 20 "the registrar answers /_health with a live relay" healthy
p2m_free_port SVC
start_service

admin pod add podrs --label "$LABEL" -o "$T/pod.json" >/dev/null
mkdir -m 700 "$T/pod.state"
start_pod
wait_until 45 "the relay holds the pod's $POOL idle pre-connections" idle_is "$POOL"
consumer_port Q "$LABEL"
wait_until 20 "a first consumer is served" echo_ok first
echo "restart: pod up, consumer port $Q; leases:"
show_leases

# ---------------------------------------------------------------- the pod killed mid-transfer

# shellcheck disable=SC2016 # the inner shell expands its arguments
p2m_bg stream bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 99
    printf "stream\n" >&3
    exec cat <&3 >"$2"' _ "$Q" "$T/stream.out"
STREAM_PID=$P2M_BG_PID
wait_until 10 "the stream is flowing (256 KiB arrived)" size_at_least "$T/stream.out" 262144
closes=$(relay_closes)
kill -KILL "$POD_PID"
t_kill=$(now_ms)
wait_until 10 "the consumer's connection ends after the pod died" dead "$STREAM_PID"
t_end=$(now_ms)
rc=0
wait "$STREAM_PID" || rc=$?
p2m_forget "$STREAM_PID"
expect_eq 0 "$rc" "the consumer's read ended with an end of stream, not an error (cat's status)"
wait_until 10 "the relay closes the tunnel" relay_closed_more "$closes"
why=$(grep "event=tunnel_close lease=$Q " "$T/relay.log" | tail -n 1 | sed -n 's/.* \(reason=[^ ]*\).*/\1/p')
echo "restart: pod killed after $(stat -c %s "$T/stream.out") bytes; the consumer saw the end $((t_end - t_kill)) ms later; relay: $why"
wait "$POD_PID" 2>/dev/null || true # reaped, as init would: a zombie still looks like a running pod
p2m_forget "$POD_PID"
wait_until 10 "the relay has no idle pre-connection of the dead pod" idle_is ""
wait_until 10 "the dead pod's pre leases are gone; only the consumer lease is left" \
    lease_kinds_are consumer

t0=$(now_ms)
start_pod
wait_until 45 "the restarted pod's $POOL pre-connections are idle at the relay" idle_is "$POOL"
consumer_port Q2 "$LABEL"
expect_eq "$Q" "$Q2" "the consumer keeps its consumer port"
wait_until 10 "the next consumer is served by the restarted pod" echo_ok "after the pod restart"
t1=$(now_ms)
echo "restart: pod restarted and serving after $((t1 - t0)) ms"
wait_until 10 "lease ls: only live leases" leases_live
POD_FDS0=$(fds "$POD_PID")

# ---------------------------------------------------------------- the relay restarted

kill -TERM "$RELAY_PID"
wait_until 15 "the relay exits on SIGTERM" dead "$RELAY_PID"
rc=0
wait "$RELAY_PID" || rc=$?
p2m_forget "$RELAY_PID"
expect_eq 0 "$rc" "relay exit status after SIGTERM"
wait_until 10 "the pod sees its pre-connections closed" pod_status_is .pool.idle 0
t0=$(now_ms)
start_relay
wait_until 60 "the pod's $POOL pre-connections are idle at the new relay" idle_is "$POOL"
t1=$(now_ms)
consumer_port Q3 "$LABEL"
echo "restart: relay restarted; the pod's pool refilled $((t1 - t0)) ms after the start; consumer port $Q3 (was $Q)"
Q=$Q3
wait_until 10 "a consumer is served after the relay restart" echo_ok "after the relay restart"
t0=$(now_ms)
wait_until 35 "lease ls: only live leases after the relay restart" leases_live
t1=$(now_ms)
echo "restart: leases live-only $((t1 - t0)) ms after the first consumer:"
show_leases
p2m_alive "$POD_PID" || fail "the pod died during the relay restart"
p2m_ok
wait_until 30 "the pod's sockets and other descriptors are back to $(show_fds "$POD_FDS0")" fds_like "$POD_PID" "$POD_FDS0"
echo "restart: pod fds before the relay restart $(show_fds "$POD_FDS0"), after $(show_fds "$(fds "$POD_PID")")"

# ---------------------------------------------------------------- the local service down, then back

p2m_kill "$SVC_PID"
wait_until 10 "the local service is gone" not_listening "$SVC"
t0=$(now_ms)
got=$(printf 'hello\n' | timeout 30 socat -t 25 -T 25 - "TCP:127.0.0.1:$Q") || fail "the consumer failed (status $?)"
t1=$(now_ms)
expect_eq "" "$got" "with the local service down, the consumer reads nothing"
(((t1 - t0) < WAIT_TIMEOUT * 1000 / 2)) ||
    fail "the consumer was closed after $((t1 - t0)) ms, want well under relay.wait_timeout (${WAIT_TIMEOUT}s): the pod did not close it"
p2m_ok
wait_until 10 "the pod logs the refused local connection" \
    grep -q "event=tunnel_close label=$LABEL .*reason=local_down error=\"Connection refused\"" "$T/pod.log"
echo "restart: with the local service down the consumer was closed after $((t1 - t0)) ms"

t0=$(now_ms)
start_service
wait_until 40 "a consumer is served once the local service is back" echo_ok "service back"
t1=$(now_ms)
echo "restart: served $((t1 - t0)) ms after the local service came back"
wait_until 35 "lease ls: only live leases" leases_live
wait_until 30 "the pod's sockets and other descriptors are back to $(show_fds "$POD_FDS0")" fds_like "$POD_PID" "$POD_FDS0"
echo "restart: pod fds at the end $(show_fds "$(fds "$POD_PID")")"

# ---------------------------------------------------------------- clean exits, clean logs

stop_prog pod "$POD_PID"
stop_prog relay "$RELAY_PID"
stop_prog registrar "$REG_PID"
for f in registrar relay pod; do
    ! grep -E 'level=error|ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$T/$f.log" || fail "$f.log reports errors"
    p2m_ok
done
echo "restart: done in ${SECONDS}s"
