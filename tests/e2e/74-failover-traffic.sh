#!/usr/bin/env bash
# Redis failover under traffic: a primary and a replica (requirepass) with three Sentinels; the
# registrar, the relay and a pod (tcp service, pool 4, in front of a TCP echo) running; a consumer
# streaming through a joined tunnel. Then, twice (the primary killed, then the new one):
#   - an admin change acknowledged (WAIT) just before `kill -9` of the primary is on the new one;
#   - the tunnel joined before the kill carries on: every byte streamed across the failover comes
#     back intact (tunnels never depend on Redis);
#   - new consumers are served again once the Sentinels have elected the replica: the time from the
#     kill is measured and printed (not judged);
#   - the killed server, started again, comes back as a replica of the new primary, and a change
#     made then is acknowledged by it; nothing else breaks.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require redis-server redis-cli jq curl python3
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
P2M_WAIT_SECONDS=90 # a failover takes seconds; under load, more
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod

rcli() { rp "$P2M_PRIMARY" "$@"; } # lib.sh's helpers ask the current primary

# ---------------------------------------------------------------- Redis, Sentinels, the system
p2m_sentinel_setup
declare -A PORT PID
for n in a b; do PORT[$n]=${P2M_REDIS_PORT[$n]} PID[$n]=${P2M_REDIS_PID[$n]}; done
# start_server NAME [PRIMARY_PORT]: server NAME on PORT[NAME] again, a replica when a primary is given.
start_server() {
    p2m_redis_server "$1" "${PORT[$1]}" "${2:-}"
    PID[$1]=$P2M_BG_PID
}

P2M_REDIS_SOCK=$T/unused.sock p2m_write_config "$(jq -n --argjson r "$P2M_REDIS_JSON" '{redis: $r, relay: {name: "r1"}}')"
p2m_free_port_range rlo rhi 32
jq --arg p "$rlo-$rhi" '.relay.ports = $p' "$P2M_CONFIG" >"$T/c.json" && mv "$T/c.json" "$P2M_CONFIG"
p2m_start_registrar
p2m_start_relay
p2m_wait_until "the registrar wrote its CA" test -s "$T/state/ca.pem"
p2m_wait_until "the registrar is healthy" p2m_registrar_healthy

p2m_free_port ECHO
p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO"
p2m_wait_until "the echo listens" p2m_listening "$ECHO"
P2M_POOL=4
p2m_start_pod web web "127.0.0.1:$ECHO" --protocol tcp

# served: a new consumer asks the registrar for web's tcp port (Redis) and gets 64 bytes echoed.
served() {
    local q got
    q=$(curl -sS --max-time 5 --cacert "$P2M_CA" "https://pipe2me.localhost:$P2M_HTTPS_PORT/tcp/web" 2>/dev/null) || return 1
    [[ $q =~ ^web\.pipe2me\.localhost:([0-9]+)$ ]] || return 1
    got=$(python3 - "${BASH_REMATCH[1]}" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
msg = b"x" * 64
s.sendall(msg)
got = b""
while len(got) < len(msg):
    b = s.recv(4096)
    if not b:
        break
    got += b
print("ok" if got == msg else "bad")
PY
    ) || return 1
    [[ $got == ok ]]
}
p2m_wait_until "a consumer is served" served

cat >"$T/stream.py" <<'PY'
import os, selectors, socket, sys, time
port, stop, result, flowing = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
sel = selectors.DefaultSelector()
sel.register(s, selectors.EVENT_READ)
sent, got, i, closed, eof = b"", b"", 0, False, False
deadline, next_send = time.time() + 600, 0.0
while time.time() < deadline and not eof:
    now = time.time()
    if not closed and os.path.exists(stop):
        s.shutdown(socket.SHUT_WR)
        closed = True
    if not closed and now >= next_send:
        line = b"line %08d %s\n" % (i, b"p" * 200)
        s.sendall(line)
        sent += line
        i += 1
        next_send = now + 0.05
    for _ in sel.select(timeout=0.05):
        b = s.recv(65536)
        if b:
            got += b
            if not os.path.exists(flowing):
                open(flowing, "w").close()
        else:
            eof = True
    if closed and len(got) >= len(sent):
        break
with open(result, "w") as f:
    f.write("ok %d\n" % len(sent) if got == sent and i > 0 else "bad sent=%d got=%d\n" % (len(sent), len(got)))
PY
# stream_start NAME: a consumer that streams numbered lines through one tunnel, 20 a second, until
# $T/NAME.stop exists, then half-closes and checks that every byte came back, in order; it writes
# "ok BYTES" or the problem to $T/NAME.result.
stream_start() {
    local q
    q=$(curl -sS --max-time 10 --cacert "$P2M_CA" "https://pipe2me.localhost:$P2M_HTTPS_PORT/tcp/web") ||
        fail "no tcp port for the stream"
    [[ $q =~ ^web\.pipe2me\.localhost:([0-9]+)$ ]] || fail "tcp/web: $q"
    p2m_bg "stream-$1" python3 "$T/stream.py" "${BASH_REMATCH[1]}" "$T/$1.stop" "$T/$1.result" "$T/$1.flowing"
}

# ---------------------------------------------------------------- failover, twice
round=0
for pair in "a b" "b a"; do
    read -r old new <<<"$pair"
    round=$((round + 1))
    [[ $(p2m_sentinel_primary) == "${PORT[$old]}" ]] || fail "round $round: the Sentinels name $(p2m_sentinel_primary), not $old"
    stream_start "s$round"
    p2m_wait_until "round $round: the stream flows" test -e "$T/s$round.flowing"
    expect_status 0 admin pod add "acked$round" --label "acked$round"
    t0=$(p2m_now_ms)
    kill -KILL "${PID[$old]}"
    p2m_kill "${PID[$old]}" # reaps it
    p2m_wait_until "round $round: the Sentinels elect $new" p2m_sentinel_moved_from "${PORT[$old]}"
    expect_eq "${PORT[$new]}" "$(p2m_sentinel_primary)" "round $round: the new primary"
    P2M_PRIMARY=${PORT[$new]}
    p2m_wait_until "round $round: new consumers are served again" served
    t1=$(p2m_now_ms)
    echo "# round $round: new consumers served again $((t1 - t0)) ms after kill -9 of the primary"
    expect_eq 1 "$(rp "${PORT[$new]}" SISMEMBER p2m:pods "acked$round")" "round $round: the change acknowledged before the kill"
    touch "$T/s$round.stop"
    p2m_wait_until "round $round: the stream ends" test -s "$T/s$round.result"
    expect_match "^ok [0-9]+" "$(cat "$T/s$round.result")" "round $round: every byte streamed across the failover came back"
    # The killed server comes back: the Sentinels make it a replica of the new primary.
    start_server "$old"
    p2m_wait_until "round $round: $old replicates $new" p2m_info_has "${PORT[$old]}" "master_port:${PORT[$new]}.*master_link_status:up"
    for s in "${P2M_SENTINELS[@]}"; do
        p2m_wait_until "round $round: sentinel $s sees $old as a replica" p2m_sentinel_ready "$s" 1
    done
    expect_status 0 admin pod add "after$round" --label "after$round"
    expect_eq 1 "$(rp "${PORT[$old]}" SISMEMBER p2m:pods "after$round")" "round $round: the returned server acknowledged a change"
    p2m_wait_until "round $round: the registrar is healthy" p2m_registrar_healthy
    served || fail "round $round: a consumer after the old primary's return was not served"
    p2m_ok
done
expect_log_clean relay 'level=error'
expect_log_clean registrar 'level=error'
