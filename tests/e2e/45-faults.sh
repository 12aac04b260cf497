#!/usr/bin/env bash
# Faults under traffic (docs/RELIABILITY.md, Faults): a private redis-server (AOF), the registrar,
# the relay and two pods on loopback:
#   - podtcp (--protocol tcp, plain splice) in front of `pipe2me-pod test`'s TCP echo: consumers
#     ask GET /tcp/LABEL for a port, then p2m-load sends 64 KiB and checks every byte that comes back;
#   - podtls (--tls-terminate) in front of the same program's HTTP echo: consumers are curl -L
#     through the registrar's 307, verifying the pod's certificate, POSTing 32 KiB of random bytes
#     that the echo must return unchanged.
# Two consumer loops run all the time. In turn, the relay, the registrar, each pod and
# redis-server get kill -9 while a slow consumer of each service is mid-transfer, and are started
# again at once, as an init system would. For each it prints how long until consumers are served
# again (the first checked transfer that started after the restart, counted from the kill); only
# a generous bound (60 s) is asserted. Then:
#   - every transfer that completed was intact; every transfer cut by a kill ended (an end of stream
#     or an error) within its timeout, and what arrived before the cut is a prefix of what was sent;
#   - no lease leaked: the pre leases in Redis hold exactly the pools' pre-connections (every one an
#     established connection at the relay, none without one) and the consumer leases are each a
#     listener; the relay's idle counts are the pools;
#   - every process, restarted or not, is back to the descriptors it had before (sockets and
#     others; pipes are a pool);
#   - what was not killed is still running;
#   - after the Redis restart (its AOF takes about a second to load, during which Redis answers
#     -LOADING): pods, labels and secrets are all there, and a pod started again without its
#     session registers with TOTP;
#   - no log line of any program holds a TOTP secret (base32 or hex), a session credential, a TOTP
#     code the pods used, or private key material; key and state files are mode 0600.
# P2M_FAULT_ROUNDS=N repeats the kills N times (default 1) and prints min/median/max;
# P2M_FAULT_REDIS_LOAD_MS=0 restarts Redis without the loading delay.
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss socat oathtool cmp od base32 python3
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin tests/tools/p2m-load
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
LOAD=$P2M_BUILD_DIR/tests/tools/p2m-load
ROUNDS=${P2M_FAULT_ROUNDS:-1}
POOL=2
BOUND=60   # seconds: serving again later than this fails the test
SETTLE=45  # seconds leases and descriptors have to come back after a fault (a relay crash: the lease TTL, 30)
XFER_MAX=15 # seconds any one consumer transfer may take (relay.wait_timeout is 5)
export P2M_POOL=$POOL

# ---------------------------------------------------------------- consumers

# $T/consumer.sh KIND OUT STOP: checked transfers one after another until STOP exists (at most
# 240 s), one line each appended to OUT: `START_MS END_MS RESULT DETAIL`, where RESULT is ok,
# err (a clean refusal, error or end of stream), corrupt (bytes came back altered) or hang (the
# transfer ran into its timeout).
cat >"$T/consumer.sh" <<'EOF'
#!/usr/bin/env bash
kind=$1 out=$2 stop=$3
now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
tcp_once() {
    local got code rc=0
    got=$(curl -4 -sS --max-time 5 --cacert "$CA" --connect-to ::127.0.0.1: -w '\n%{http_code}' \
        "https://pipe2me.localhost:$HTTPS/tcp/$TCP_LABEL" 2>/dev/null) || { echo "err registrar_curl=$?"; return; }
    code=${got##*$'\n'}
    [[ $code == 200 && ${got%$'\n'*} =~ :([0-9]+)[[:space:]]*$ ]] || { echo "err registrar_http=$code"; return; }
    got=$("$LOAD" -c 1 -b 65536 -t "$XFER_MAX" 127.0.0.1 "${BASH_REMATCH[1]}" 2>&1) || rc=$?
    if ((rc == 0)); then
        echo ok
    elif [[ $got =~ reason=(mismatch|too_long) ]]; then
        echo "corrupt ${BASH_REMATCH[1]}"
    elif [[ $got =~ reason=timeout ]]; then
        echo "hang p2m-load"
    else
        echo "err $(sed -n 's/^fail \(reason=[a-z_]*\).*/\1/p' <<<"$got" | head -n 1)"
    fi
}
tls_once() {
    local code rc=0
    code=$(curl -4 -sS -L --max-time 120 --speed-limit 1 --speed-time "$XFER_MAX" --cacert "$CA" --connect-to ::127.0.0.1: -H 'Expect:' \
        --data-binary "@$PAYLOAD" -o "$out.body" -w '%{http_code}' "https://$TLS_LABEL.pipe2me.localhost:$HTTPS/x" \
        2>/dev/null) || rc=$?
    if ((rc == 28)); then
        echo "hang curl"
    elif ((rc != 0 || code != 200)); then
        echo "err curl=$rc http=$code"
    elif tail -c "$(stat -c %s "$PAYLOAD")" "$out.body" | cmp -s - "$PAYLOAD"; then
        echo ok
    else
        echo "corrupt body"
    fi
}
while [[ ! -e $stop ]] && ((SECONDS < 240)); do
    t0=$(now_ms)
    r=$("${kind}_once")
    echo "$t0 $(now_ms) $r" >>"$out"
done
EOF

# traffic_start NAME: both consumer loops (TRAFFIC_TCP_PID and TRAFFIC_TLS_PID, read by name), their results in $T/NAME-tcp.out and $T/NAME-tls.out.
# shellcheck disable=SC2034 # traffic_stop reads the pids by name
traffic_start() {
    TRAFFIC=$1
    rm -f -- "$T/traffic.stop"
    : >"$T/$TRAFFIC-tcp.out"
    : >"$T/$TRAFFIC-tls.out"
    p2m_bg consumers env CA="$P2M_CA" HTTPS="$P2M_HTTPS_PORT" LOAD="$LOAD" XFER_MAX="$XFER_MAX" PAYLOAD="$T/payload" \
        TCP_LABEL=fecho bash "$T/consumer.sh" tcp "$T/$TRAFFIC-tcp.out" "$T/traffic.stop"
    TRAFFIC_TCP_PID=$P2M_BG_PID
    p2m_bg consumers env CA="$P2M_CA" HTTPS="$P2M_HTTPS_PORT" LOAD="$LOAD" XFER_MAX="$XFER_MAX" PAYLOAD="$T/payload" \
        TLS_LABEL=fweb bash "$T/consumer.sh" tls "$T/$TRAFFIC-tls.out" "$T/traffic.stop"
    TRAFFIC_TLS_PID=$P2M_BG_PID
}

# traffic_stop: ends both loops (each within one transfer) and checks every transfer they made:
# none corrupted, none hung. Prints the counts.
traffic_stop() {
    local k f bad
    touch "$T/traffic.stop"
    for k in TCP TLS; do
        local pid_var=TRAFFIC_${k}_PID
        p2m_wait_until -t 150 "the ${k,,} consumer loop stops" p2m_dead "${!pid_var}"
        wait "${!pid_var}" || fail "the ${k,,} consumer loop failed"
        p2m_forget "${!pid_var}"
    done
    for k in tcp tls; do
        f=$T/$TRAFFIC-$k.out
        if bad=$(grep -E '^[0-9]+ [0-9]+ (corrupt|hang)' "$f"); then
            fail "$TRAFFIC: $k consumers saw corrupted or hung transfers:"$'\n'"$bad"
        fi
        p2m_ok
        TOTAL_OK=$((TOTAL_OK + $(grep -c ' ok$' "$f" || true)))
        TOTAL_ERR=$((TOTAL_ERR + $(grep -c ' err' "$f" || true)))
    done
}

# served_since KIND SINCE_MS: a transfer of KIND that started at SINCE_MS or later succeeded; sets
# SERVED_MS to when the first such ended.
served_since() {
    local line
    line=$(awk -v since="$2" '$1 >= since && $3 == "ok" { print $2; exit }' "$T/$TRAFFIC-$1.out")
    [[ -n $line ]] || return 1
    SERVED_MS=$line
}

# served_or_died KIND SINCE_MS: served_since, or a process that was not killed has died (then
# DIED names it): no use waiting for consumers then.
served_or_died() {
    local p pv
    for p in relay registrar podtcp podtls echo; do
        pv=${p^^}_PID
        p2m_alive "${!pv}" || {
            DIED=$p
            return 0
        }
    done
    served_since "$@"
}

# failed_between KIND FROM_MS TO_MS: how many transfers of KIND ended in an error in [FROM, TO].
failed_between() { awk -v a="$2" -v b="$3" '$2 >= a && $2 <= b && $3 == "err"' "$T/$TRAFFIC-$1.out" | wc -l; }

# traffic_wait_ok N: both loops have completed N transfers each in this traffic run.
traffic_has_ok() { (($(grep -c ' ok$' "$T/$TRAFFIC-tcp.out" || true) >= $1 && $(grep -c ' ok$' "$T/$TRAFFIC-tls.out" || true) >= $1)); }

# Slow consumers, in flight when the kill comes. tcp: 400 lines, one every 10 ms at the fastest,
# from one python3 process ($T/slow.py) that holds after line 200 until the test has killed and
# restarted (slow_release), so that the kill finds it mid-transfer however slow the machine is;
# what comes back must be a prefix of what was sent. tls: 32 KiB POSTed at 8 KiB/s straight to the
# consumer port (as a browser does after the 307), which the echo must return unchanged. Both are
# bounded by progress, not by wall time: a transfer hangs when what it waits for does not come for
# XFER_MAX s (slow.py exits 124, curl's --speed-time 28).
seq -f 'line %g of the slow consumer' 1 400 >"$T/slow.want"
cat >"$T/slow.py" <<'EOF'
# slow.py PORT WANT OUT HOLD RELEASE IDLE: sends WANT's lines to 127.0.0.1:PORT, at most one per 10
# ms, holding before line HOLD (0-based) until the file RELEASE exists, and half-closes after the
# last; writes what comes back to OUT. Exits 0 at the end of stream (or 1 s after all of it came
# back), 1 on a connection error, 124 when something sent has not come back and nothing arrived
# for IDLE s.
import os, select, socket, sys, time

port, want, out, hold, release, idle = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
lines = open(want, "rb").read().splitlines(keepends=True)
s = socket.create_connection(("127.0.0.1", port), timeout=idle)
f = open(out, "wb", buffering=0)
sent = got = i = 0
last = next_send = time.monotonic()
while True:
    now = time.monotonic()
    if i < len(lines) and now >= next_send and (i != hold or os.path.exists(release)):
        if got == sent:
            last = now  # the hang clock starts when something is outstanding
        try:
            s.sendall(lines[i])
        except OSError:
            sys.exit(1)
        sent += len(lines[i])
        i += 1
        next_send = now + 0.01
        if i == len(lines):
            s.shutdown(socket.SHUT_WR)
    if got == sent and i == len(lines) and now - last > 1:
        sys.exit(0)
    if got < sent and now - last > idle:
        sys.exit(124)
    if select.select([s], [], [], 0.01)[0]:
        try:
            d = s.recv(65536)
        except OSError:
            sys.exit(1)
        if not d:
            sys.exit(0)
        f.write(d)
        got += len(d)
        last = time.monotonic()
EOF
slow_start() {
    local got q
    got=$(curl -4 -sS --max-time 10 --cacert "$P2M_CA" --connect-to ::127.0.0.1: \
        "https://pipe2me.localhost:$P2M_HTTPS_PORT/tcp/fecho") || fail "GET /tcp/fecho failed"
    [[ $got =~ :([0-9]+)[[:space:]]*$ ]] || fail "GET /tcp/fecho: $(p2m_show "$got")"
    q=${BASH_REMATCH[1]}
    rm -f -- "$T/slow.release" "$T/slow-tcp.got" # not the last round's lines: the wait below reads this one's
    p2m_bg slowtcp python3 "$T/slow.py" "$q" "$T/slow.want" "$T/slow-tcp.got" 200 "$T/slow.release" "$XFER_MAX"
    SLOW_TCP_PID=$P2M_BG_PID
    p2m_wait_until -t 60 "the slow tcp consumer is under way (200 lines back)" grep -q '^line 200 ' "$T/slow-tcp.got"
    p2m_consumer_port q https fweb
    p2m_bg slowtls curl -4 -sS --max-time 300 --speed-limit 1 --speed-time "$XFER_MAX" --limit-rate 8k --cacert "$P2M_CA" \
        --connect-to ::127.0.0.1: -H 'Expect:' --data-binary "@$T/payload" -o "$T/slow-tls.got" -w '%{http_code}\n' \
        "https://fweb.pipe2me.localhost:$q/slow"
    SLOW_TLS_PID=$P2M_BG_PID
    # The upload takes 4 s once connected, and the kill follows at once.
    p2m_wait_until -t 60 "the slow tls consumer is connected" connected_to "$q"
}

# connected_to PORT: a TCP connection to 127.0.0.1:PORT is established.
connected_to() { [[ -n $(ss -Htn state established "( dport = :$1 )") ]]; }

# slow_release: the slow tcp consumer sends the rest of its lines.
slow_release() { touch "$T/slow.release"; }

# slow_end WHAT EXPECT: both slow consumers end within their bound; nothing altered arrives.
# EXPECT names the services whose transfer must have been cut ("tcp tls", "tcp", "") -- the others
# must have completed. Sets SLOW_RESULT to a summary.
slow_end() {
    local what=$1 expect=" $2 " rc n
    p2m_wait_until -t 300 "$what: the slow tcp consumer ends" p2m_dead "$SLOW_TCP_PID"
    rc=0
    wait "$SLOW_TCP_PID" || rc=$?
    p2m_forget "$SLOW_TCP_PID"
    ((rc != 124)) || fail "$what: the slow tcp consumer hung (nothing came back for ${XFER_MAX}s)"
    n=$(stat -c %s "$T/slow-tcp.got")
    head -c "$n" "$T/slow.want" | cmp -s - "$T/slow-tcp.got" || fail "$what: the slow tcp consumer got altered bytes"
    if [[ $expect == *" tcp "* ]]; then
        ((n < $(stat -c %s "$T/slow.want"))) || fail "$what: the slow tcp transfer was not cut"
        SLOW_RESULT="tcp cut after $n bytes (status $rc)"
    else
        if ((rc != 0)) || ! cmp -s "$T/slow.want" "$T/slow-tcp.got"; then
            fail "$what: the slow tcp transfer did not complete (status $rc, $n bytes)"
        fi
        SLOW_RESULT="tcp complete"
    fi
    p2m_ok

    p2m_wait_until -t 300 "$what: the slow tls consumer ends" p2m_dead "$SLOW_TLS_PID"
    rc=0
    wait "$SLOW_TLS_PID" || rc=$?
    p2m_forget "$SLOW_TLS_PID"
    ((rc != 28)) || fail "$what: the slow tls consumer hung (under 1 byte/s for ${XFER_MAX}s)"
    if ((rc == 0)) && [[ $(tail -n 1 "$T/slowtls.log") == 200 ]]; then
        tail -c "$(stat -c %s "$T/payload")" "$T/slow-tls.got" | cmp -s - "$T/payload" ||
            fail "$what: the slow tls consumer got an altered body"
        [[ $expect != *" tls "* ]] || fail "$what: the slow tls transfer was not cut"
        SLOW_RESULT+=", tls complete"
    else
        [[ $expect == *" tls "* ]] || fail "$what: the slow tls transfer did not complete (curl status $rc)"
        SLOW_RESULT+=", tls cut (curl status $rc)"
    fi
    p2m_ok
}

# ---------------------------------------------------------------- state checks

# leases_settled: the pre leases in Redis hold exactly 2*POOL established connections at the relay,
# none holds none, and consumer leases are each a listener at the relay (one per service at most);
# the relay counts POOL idle pre-connections per service.
leases_settled() {
    local json pre consumer other p
    json=$(admin lease ls --json) || return 1
    read -r -a pre <<<"$(jq -r '[.[] | select(.kind == "pre") | .port] | join(" ")' <<<"$json")"
    read -r -a consumer <<<"$(jq -r '[.[] | select(.kind == "consumer") | .port] | join(" ")' <<<"$json")"
    other=$(jq -r '[.[] | select(.kind != "pre" and .kind != "consumer")] | length' <<<"$json")
    ((${#pre[@]} >= 1 && ${#pre[@]} <= 2 * POOL && ${#consumer[@]} <= 2 && other == 0)) || return 1
    p2m_pre_conns_are $((2 * POOL)) || return 1
    for p in "${consumer[@]}"; do
        p2m_listening "$p" || return 1
    done
    p2m_redis_is $POOL HGET p2m:idle:r1 fecho:tcp && p2m_redis_is $POOL HGET p2m:idle:r1 fweb
}

# settle WHAT: no leaked lease, every process back to its descriptors of before.
settle() {
    local t0 t1 p
    t0=$(p2m_now_ms)
    p2m_wait_until -t $SETTLE "$1: only live leases, holding $((2 * POOL)) pre-connections, and the consumer ports" leases_settled
    t1=$(p2m_now_ms)
    for p in relay registrar podtcp podtls echo; do
        local pid_var=${p^^}_PID fds_var=${p^^}_FDS0
        p2m_wait_until -t $SETTLE "$1: $p's sockets and other descriptors are back to $(p2m_show_fds "${!fds_var}")" \
            p2m_fds_like "${!pid_var}" "${!fds_var}"
    done
    echo "faults: $1: leases live-only after $((t1 - t0)) ms ($(admin lease ls --json | jq -r 'group_by(.kind) |
        map("\(length) \(.[0].kind)") | join(", ")')), every process's descriptors back $(($(p2m_now_ms) - t0)) ms after" \
        "the traffic stopped (relay $(p2m_show_fds "$(p2m_fds "$RELAY_PID")"))"
}

# ---------------------------------------------------------------- restarts, as init would

kill9() {
    kill -KILL "$1"
    wait "$1" 2>/dev/null || true
    p2m_forget "$1"
}
restart_relay() { p2m_start_relay; }
restart_registrar() { p2m_start_registrar; }
# restart_redis: the AOF replayed at about REDIS_LOAD_MS in all (--key-load-delay per command), as a
# real dataset takes time to load: Redis accepts connections meanwhile and answers -LOADING.
REDIS_LOAD_MS=${P2M_FAULT_REDIS_LOAD_MS:-1000}
restart_redis() {
    local cmds
    if ((REDIS_LOAD_MS == 0)); then
        REDIS_CMDS='?' REDIS_DELAY_US=0
        p2m_start_redis
        return
    fi
    cmds=$(cat "$T"/appendonlydir/*.incr.aof 2>/dev/null | grep -c '^\*[0-9]' || true)
    ((cmds > 0)) || cmds=1
    REDIS_DELAY_US=$((REDIS_LOAD_MS * 1000 / cmds))
    ((REDIS_DELAY_US > 0)) || REDIS_DELAY_US=1
    REDIS_CMDS=$cmds
    p2m_start_redis --key-load-delay "$REDIS_DELAY_US"
}
restart_podtcp() { restart_pod podtcp; }
restart_podtls() { restart_pod podtls; }
# restart_pod NAME: as p2m_start_pod, after removing the dead pod's status so that the wait sees
# the new one's.
restart_pod() {
    rm -f -- "$T/$1/status.json"
    case $1 in
    podtcp) p2m_start_pod podtcp fecho "127.0.0.1:$ECHO_TCP" --protocol tcp ;;
    podtls) p2m_start_pod podtls fweb "127.0.0.1:$ECHO_HTTP" --tls-terminate ;;
    esac
}

declare -A FIG=() # component -> "ms ms ..." over the rounds

# fault NAME PID_VAR KINDS CUT: kill -9 of the process in PID_VAR during traffic, restarted at
# once; waits until every service in KINDS is served again; CUT names the slow transfers the kill
# must cut.
fault() {
    local name=$1 pid_var=$2 kinds=$3 cut=$4 t_kill t_restart t_up k p worst=0 per='' fails=0
    traffic_start "$name-$ROUND"
    p2m_wait_until -t 30 "$name: consumers are served before the kill" traffic_has_ok 2
    slow_start
    t_kill=$(p2m_now_ms)
    kill9 "${!pid_var}"
    t_restart=$(p2m_now_ms)
    "restart_$name"
    t_up=$(p2m_now_ms)
    slow_release
    DIED=
    for k in $kinds; do
        p2m_wait_until -t $BOUND "$name: $k consumers are served again" served_or_died "$k" "$t_restart"
        [[ -z $DIED ]] || fail "$name: $DIED died after the kill of $name; its log ends:"$'\n'"$(tail -n 5 "$T/$DIED.log")"
        per+="$k $((SERVED_MS - t_kill)) ms, "
        ((SERVED_MS - t_kill <= worst)) || worst=$((SERVED_MS - t_kill))
        fails=$((fails + $(failed_between "$k" "$t_kill" "$SERVED_MS")))
    done
    slow_end "$name" "$cut"
    traffic_stop
    # What was not killed is still there.
    for p in relay registrar podtcp podtls echo; do
        local pv=${p^^}_PID
        p2m_alive "${!pv}" || fail "$name: $p died after the kill of $name (see $p.log)"
    done
    p2m_alive "$P2M_REDIS_PID" || fail "$name: redis-server died"
    p2m_ok
    FIG[$name]+="$worst "
    [[ $name != redis || $REDIS_DELAY_US == 0 ]] || per+="the AOF's $REDIS_CMDS commands replayed at ${REDIS_DELAY_US} us each, "
    echo "faults: $name kill -9 -> serving again in $worst ms (${per}restarted and ready after $((t_up - t_kill)) ms;" \
        "$fails transfers failed cleanly meanwhile; in flight: $SLOW_RESULT)"
    settle "$name"
}

# ---------------------------------------------------------------- setup

head -c 32768 /dev/urandom >"$T/payload"
p2m_start_system '{"relay": {"wait_timeout": 5, "idle_timeout": 60}, "registrar": {"consumer_ttl": 300}}'
admin pod add podtcp --label fecho -o "$T/podtcp.json" 2>/dev/null
admin pod add podtls --label fweb -o "$T/podtls.json" 2>/dev/null
p2m_free_port ECHO_TCP
p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO_TCP" --forward-http "$ECHO_HTTP"
ECHO_PID=$P2M_BG_PID
p2m_wait_until "the echo services listen" p2m_listening "$ECHO_HTTP"
restart_pod podtcp
restart_pod podtls
TOTAL_OK=0 TOTAL_ERR=0

# A first round of traffic with nothing killed: every transfer succeeds, and what the processes
# hold afterwards is their baseline.
traffic_start warmup
p2m_wait_until -t 30 "consumers of both services are served" traffic_has_ok 5
traffic_stop
bad=$(cat "$T"/warmup-*.out | grep -v ' ok$' || true)
[[ -z $bad ]] || fail "with nothing killed, transfers failed:"$'\n'"$bad"
p2m_ok
p2m_wait_until -t $SETTLE "warmup: only live leases" leases_settled
sleep 1 # the pods' status and registrations come to rest
for p in relay registrar podtcp podtls echo; do
    pid_var=${p^^}_PID
    printf -v "${p^^}_FDS0" '%s' "$(p2m_fds "${!pid_var}")"
done
echo "faults: baseline: relay $(p2m_show_fds "$RELAY_FDS0"), registrar $(p2m_show_fds "$REGISTRAR_FDS0"),"\
    "podtcp $(p2m_show_fds "$PODTCP_FDS0"), podtls $(p2m_show_fds "$PODTLS_FDS0"); leases:"
p2m_show_leases

# Persistent state before any fault, to compare after the Redis restart (not the live numbers,
# which the faults change).
PERSISTENT_PODS='map({id, disabled, labels, created})'
PERSISTENT_LABELS='map(del(.consumers))'
admin pod ls --json | jq -S "$PERSISTENT_PODS" >"$T/pods.before"
admin label ls --json | jq -S "$PERSISTENT_LABELS" >"$T/labels.before"
for id in podtcp podtls; do
    expect_eq "$(jq -r .secret "$T/$id.json")" "$(rcli HGET "p2m:pod:$id" secret)" "$id's secret in Redis"
done

# ---------------------------------------------------------------- the faults

SESSIONS=() # every session credential the pods held, for the log check
collect_sessions() {
    local p
    for p in podtcp podtls; do
        [[ ! -s $T/$p/session ]] || SESSIONS+=("$(awk '{ print $5 }' "$T/$p/session")")
    done
}
collect_sessions
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    fault relay RELAY_PID "tcp tls" "tcp tls"
    fault registrar REGISTRAR_PID "tcp tls" ""
    fault podtcp PODTCP_PID tcp tcp
    fault podtls PODTLS_PID tls tls
    collect_sessions
    fault redis P2M_REDIS_PID "tcp tls" ""

    # Redis came back from its AOF: pods, labels and secrets are all there.
    admin pod ls --json | jq -S "$PERSISTENT_PODS" >"$T/pods.after"
    admin label ls --json | jq -S "$PERSISTENT_LABELS" >"$T/labels.after"
    cmp -s "$T/pods.before" "$T/pods.after" || fail "pod ls differs after the Redis restart:"$'\n'"$(diff "$T/pods.before" "$T/pods.after")"
    cmp -s "$T/labels.before" "$T/labels.after" || fail "label ls differs after the Redis restart:"$'\n'"$(diff "$T/labels.before" "$T/labels.after")"
    p2m_ok
    for id in podtcp podtls; do
        expect_eq "$(jq -r .secret "$T/$id.json")" "$(rcli HGET "p2m:pod:$id" secret)" "$id's secret after the Redis restart"
    done

    # The TOTP secret still works: podtls, stopped and started again without its session, registers
    # with a TOTP code (its last step is long past: no wait for a fresh one).
    collect_sessions
    p2m_stop podtls "$PODTLS_PID"
    rm -f -- "$T/podtls/session"
    totp_before=$(p2m_log_count registrar 'event=register status=200 label=fweb .*auth=totp')
    t0=$(p2m_now_ms)
    restart_pod podtls
    p2m_wait_until -t 45 "podtls registered with TOTP" p2m_log_count_above registrar \
        'event=register status=200 label=fweb .*auth=totp' "$totp_before"
    echo "faults: after the Redis restart, podtls (no session) registered with TOTP and filled its pool in $(($(p2m_now_ms) - t0)) ms"
    collect_sessions
    # Its descriptors are those of a fresh start, as at the baseline.
    settle "podtls started with TOTP"
done

# ---------------------------------------------------------------- figures

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END { print v[1], v[int((NR + 1) / 2)], v[NR] }'; }
if ((ROUNDS > 1)); then
    for c in relay registrar podtcp podtls redis; do
        read -r lo mid hi <<<"$(median <<<"${FIG[$c]}")"
        echo "faults: $c kill -9 -> serving again: min $lo ms, median $mid ms, max $hi ms over $ROUNDS rounds (${FIG[$c]% })"
    done
fi
echo "faults: $TOTAL_OK transfers intact, $TOTAL_ERR refused or cut cleanly, none corrupted or hung"

# ---------------------------------------------------------------- clean exits

for p in podtcp podtls; do
    pid_var=${p^^}_PID
    p2m_stop "$p" "${!pid_var}"
done
p2m_stop relay "$RELAY_PID"
p2m_stop registrar "$REGISTRAR_PID"
p2m_stop echo "$ECHO_PID"
for f in registrar relay podtcp podtls echo; do
    expect_log_clean "$f" 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer'
done

# ---------------------------------------------------------------- secrets

# No log line of any program holds a secret: the TOTP secrets (base32 as provisioned, lower case,
# and raw hex), a session credential the pods held, a TOTP code of a step the pods spent, or a line
# of a private key. Key and state files are 0600.
needles=()
for id in podtcp podtls; do
    s=$(jq -r .secret "$T/$id.json")
    hex=$(printf '%s' "$s" | base32 -d | od -An -v -tx1 | tr -d ' \n')
    expect_eq 40 "${#hex}" "the hex form of $id's secret"
    needles+=("$s" "${s,,}" "$hex" "${hex^^}")
done
((${#SESSIONS[@]} > 0)) || fail "no session credential was seen"
needles+=("${SESSIONS[@]}")
for f in "$T/state/ca-key.pem" "$T/state/registrar-key.pem" "$T/podtls/tls/key.pem"; do
    expect_eq 600 "$(stat -c %a "$f")" "mode of $(basename -- "$(dirname -- "$f")")/$(basename -- "$f")"
    while IFS= read -r line; do
        [[ $line == -----* || ${#line} -lt 16 ]] || needles+=("$line")
    done <"$f"
done
for f in "$T/podtcp.json" "$T/podtls.json" "$T"/pod*/session "$T"/pod*/totp-step; do
    [[ -e $f ]] || continue
    expect_eq 600 "$(stat -c %a "$f")" "mode of ${f#"$T"/}"
done
logs=("$T"/*.log)
for n in "${needles[@]}"; do
    if hit=$(grep -lF -- "$n" "${logs[@]}"); then
        fail "a secret appears in $(xargs -n 1 basename <<<"$hit" | paste -sd ' ')"
    fi
done
! grep -l 'PRIVATE KEY' "${logs[@]}" || fail "a log holds a private key"
p2m_ok
# The codes of the steps the pods spent, in the logs that could ever see one.
for id in podtcp podtls; do
    s=$(jq -r .secret "$T/$id.json")
    step=$(cat "$T/$id/totp-step")
    code=$(p2m_totp_code "$s" "$step")
    ! grep -qwF -- "$code" "$T/registrar.log" "$T/$id.log" || fail "a TOTP code of $id appears in a log: $code"
done
p2m_ok
echo "faults: no secret, session credential, code or key line in $(cat "${logs[@]}" | wc -l) log lines of $(basename -a "${logs[@]}" | paste -sd ' ')"
echo "faults: done in ${SECONDS}s"
