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
PW=e2e-failover-pw-41c2

rp() { redis-cli -h 127.0.0.1 -p "$1" -a "$PW" --no-auth-warning "${@:2}"; }
CUR_PRIMARY=
rcli() { rp "$CUR_PRIMARY" "$@"; } # lib.sh's helpers ask the current primary
rs() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
info_has() { [[ $(rp "$1" INFO replication | tr -d '\r') =~ $2 ]]; }
sentinel_primary() { rs "$S1" SENTINEL get-master-addr-by-name pipe2me | sed -n 2p; }
sentinel_moved_from() {
    local a
    a=$(sentinel_primary)
    [[ -n $a && $a != "$1" ]]
}
sentinel_ready() {
    local m
    m=$(rs "$1" SENTINEL master pipe2me | tr '\n' ' ')
    [[ $m =~ num-slaves\ 1\  && $m =~ num-other-sentinels\ 2\  ]]
}

# ---------------------------------------------------------------- Redis, Sentinels, the system
declare -A PORT PID
p2m_free_port "PORT[a]"
p2m_free_port "PORT[b]"
p2m_free_port S1
p2m_free_port S2
p2m_free_port S3
printf '%s\n' "$PW" >"$T/redis.pw"
chmod 600 "$T/redis.pw"
common=(--bind 127.0.0.1 --save '' --appendonly no --requirepass "$PW" --masterauth "$PW")
# start_server NAME [PRIMARY_PORT]: a Redis server on PORT[NAME], a replica when a primary is given.
start_server() {
    mkdir -p "$T/$1"
    p2m_bg "redis-$1" redis-server --port "${PORT[$1]}" --dir "$T/$1" "${common[@]}" ${2:+--replicaof 127.0.0.1 "$2"}
    PID[$1]=$P2M_BG_PID
}
start_server a
start_server b "${PORT[a]}"
CUR_PRIMARY=${PORT[a]}
p2m_wait_until "b replicates a" info_has "${PORT[b]}" master_link_status:up
for s in "$S1" "$S2" "$S3"; do
    cat >"$T/sentinel-$s.conf" <<CONF
port $s
bind 127.0.0.1
dir $T
sentinel monitor pipe2me 127.0.0.1 ${PORT[a]} 2
sentinel auth-pass pipe2me $PW
sentinel down-after-milliseconds pipe2me 1000
sentinel failover-timeout pipe2me 5000
CONF
    p2m_bg "sentinel-$s" redis-server "$T/sentinel-$s.conf" --sentinel
done
for s in "$S1" "$S2" "$S3"; do
    p2m_wait_until "sentinel $s sees the replica and the other sentinels" sentinel_ready "$s"
done

P2M_REDIS_SOCK=$T/unused.sock p2m_write_config "$(jq -n --arg pw "$T/redis.pw" \
    --arg s1 "127.0.0.1:$S1" --arg s2 "127.0.0.1:$S2" --arg s3 "127.0.0.1:$S3" \
    '{redis: {sentinels: [$s1, $s2, $s3], master: "pipe2me", password_file: $pw, wait_replicas: 1, wait_timeout_ms: 5000},
      relay: {name: "r1"}}')"
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
    [[ $(sentinel_primary) == "${PORT[$old]}" ]] || fail "round $round: the Sentinels name $(sentinel_primary), not $old"
    stream_start "s$round"
    p2m_wait_until "round $round: the stream flows" test -e "$T/s$round.flowing"
    expect_status 0 admin pod add "acked$round" --label "acked$round"
    t0=$(p2m_now_ms)
    kill -KILL "${PID[$old]}"
    p2m_kill "${PID[$old]}" # reaps it
    p2m_wait_until "round $round: the Sentinels elect $new" sentinel_moved_from "${PORT[$old]}"
    expect_eq "${PORT[$new]}" "$(sentinel_primary)" "round $round: the new primary"
    CUR_PRIMARY=${PORT[$new]}
    p2m_wait_until "round $round: new consumers are served again" served
    t1=$(p2m_now_ms)
    echo "# round $round: new consumers served again $((t1 - t0)) ms after kill -9 of the primary"
    expect_eq 1 "$(rp "${PORT[$new]}" SISMEMBER p2m:pods "acked$round")" "round $round: the change acknowledged before the kill"
    touch "$T/s$round.stop"
    p2m_wait_until "round $round: the stream ends" test -s "$T/s$round.result"
    expect_match "^ok [0-9]+" "$(cat "$T/s$round.result")" "round $round: every byte streamed across the failover came back"
    # The killed server comes back: the Sentinels make it a replica of the new primary.
    start_server "$old"
    p2m_wait_until "round $round: $old replicates $new" info_has "${PORT[$old]}" "master_port:${PORT[$new]}.*master_link_status:up"
    for s in "$S1" "$S2" "$S3"; do
        p2m_wait_until "round $round: sentinel $s sees $old as a replica" sentinel_ready "$s"
    done
    expect_status 0 admin pod add "after$round" --label "after$round"
    expect_eq 1 "$(rp "${PORT[$old]}" SISMEMBER p2m:pods "after$round")" "round $round: the returned server acknowledged a change"
    p2m_wait_until "round $round: the registrar is healthy" p2m_registrar_healthy
    served || fail "round $round: a consumer after the old primary's return was not served"
    p2m_ok
done
expect_log_clean relay 'level=error'
expect_log_clean registrar 'level=error'
