#!/usr/bin/env bash
# A port scan cannot flood the relay's log (issue 12, docs/OPERATIONS.md "Logs"): refused
# connections are logged in full once per (peer address, reason) and interval, the rest counted
# and logged as one `event=conn_refused_repeat ... count=N` line per interval.
#
# Real redis-server, registrar, relay (a 200-port range) and a pod on loopback. Consumer redirects
# from 60 source addresses make 60 consumer ports listen (a consumer port accepts its own address
# only); then one other address, 127.0.0.200, connects to every port of a 1,000-port window around
# the range, several passes, with a small python3 client. Every connection that reached a relay
# port was refused; the relay's lines about that peer must stay within
# reasons * (1 + ceil(elapsed / 10 s) + 1), elapsed measured, so the bound does not depend on
# the machine's speed, and the lines in full plus the counts reported must add up to the
# refusals the scanner made (nothing lost), also across a relay shutdown.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq socat ss python3
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
RANGE=200     # relay ports
CONSUMERS=60  # source addresses 127.0.0.2 .. 127.0.0.61, one consumer port each
WINDOW=1000   # ports scanned
PASSES=8      # over the window
SCANNER=127.0.0.200
INTERVAL_S=10 # RELAY_REFUSAL_INTERVAL_MS

# ---------------------------------------------------------------- setup

# The relay range stays below the kernel's ephemeral ports, so that no outgoing connection takes a
# leased port meanwhile (lib.sh picks 20000-31999).
read -r EPH_LO EPH_HI </proc/sys/net/ipv4/ip_local_port_range
p2m_free_port_range LO HI "$RANGE"
((HI < EPH_LO || LO > EPH_HI)) || fail "relay range $LO-$HI overlaps ip_local_port_range $EPH_LO-$EPH_HI"
p2m_ok
# Per-address consumer ports: one listening port per consumer address, for the scan to hit.
p2m_start_system "{\"relay\": {\"ports\": \"$LO-$HI\"}, \"registrar\": {\"consumer_ttl\": 600, \"consumer_ports\": \"per-address\"}}"

p2m_free_port BACKEND
p2m_bg backend socat "TCP-LISTEN:$BACKEND,bind=127.0.0.1,reuseaddr,fork" /dev/null
p2m_wait_until "the backend listens" p2m_listening "$BACKEND"
expect_status 0 admin pod add podweb --label web -o "$T/podweb.json"
p2m_start_pod podweb web "127.0.0.1:$BACKEND"

# One consumer port per source address.
declare -A QPORT=()
for ((i = 2; i < 2 + CONSUMERS; i++)); do
    src=127.0.0.$i
    got=$(curl -4 -sS --max-time 10 --cacert "$P2M_CA" --interface "$src" -o /dev/null -w '%{http_code} %{redirect_url}' \
        "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/") || fail "curl from $src failed"
    [[ $got =~ ^307\ https://web\.pipe2me\.localhost:([0-9]+)/$ ]] || fail "redirect from $src: want a 307, got $(p2m_show "$got")"
    QPORT[$src]=${BASH_REMATCH[1]}
done
p2m_ok
expect_eq "$CONSUMERS" "$(printf '%s\n' "${QPORT[@]}" | sort -u | wc -l)" "one consumer port per address"
# consumers_listen: the relay listens on every consumer port.
consumers_listen() {
    local listening
    listening=" $(ss -Htln | awk '{ p = $4; sub(/.*:/, "", p); print p }' | tr '\n' ' ') "
    for p in "${QPORT[@]}"; do
        [[ $listening == *" $p "* ]] || return 1
    done
}
p2m_wait_until "the consumer ports listen" consumers_listen

# ---------------------------------------------------------------- the scan

# A 1,000-port window holding the range, below the ephemeral ports where it can be.
WLO=$((LO - (WINDOW - RANGE) / 2))
((WLO + WINDOW - 1 < EPH_LO)) || WLO=$((EPH_LO - WINDOW))
((WLO >= 1024)) || WLO=1024
WHI=$((WLO + WINDOW - 1))
((WLO <= LO && HI <= WHI)) || fail "window $WLO-$WHI does not hold the range $LO-$HI"

# The scanner: connects from SRC to every port of LO-HI (PASSES times), skipping the ports listed
# in SKIP_FILE, closes each connection at once, and prints the connections that reached one of the
# relay's ports listed in RELAY_FILE (each one the relay accepts and refuses) and the connects that
# succeeded elsewhere (another test's listener may open inside the range while the scan runs).
cat >"$T/scan.py" <<'EOF'
import socket, sys
src, lo, hi, passes, skip_file, relay_file = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5], sys.argv[6]
skip = {int(p) for p in open(skip_file).read().split()}
relay_ports = {int(p) for p in open(relay_file).read().split()}
relay = other = 0
for _ in range(passes):
    for port in range(lo, hi + 1):
        if port in skip:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.bind((src, 0))
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        s.close()
        if port in relay_ports:
            relay += 1
        else:
            other += 1
print(relay, other)
EOF

# scan PASSES: runs the scanner and waits until the relay has taken every connection off its
# listeners' queues; sets REFUSED (connections that reached the relay) and ELAPSED_MS (from the
# first connect until the relay accepted the last one).
scan() {
    local t0 other
    # Other programs' listeners in the window (other tests may run at the same time) are left alone.
    ss -Htln | awk -v lo="$WLO" -v hi="$WHI" -v rlo="$LO" -v rhi="$HI" \
        '{ p = $4; sub(/.*:/, "", p) } p >= lo && p <= hi && (p < rlo || p > rhi) { print p }' >"$T/skip"
    # The relay's own listeners, by its pid.
    ss -Htlnp | awk -v pid="pid=$RELAY_PID," 'index($0, pid) { p = $4; sub(/.*:/, "", p); print p }' >"$T/relay-ports"
    [[ -s $T/relay-ports ]] || fail "ss shows no listener of the relay (pid $RELAY_PID)"
    t0=$(p2m_now_ms)
    read -r REFUSED other < <(python3 "$T/scan.py" "$SCANNER" "$WLO" "$WHI" "$1" "$T/skip" "$T/relay-ports") || fail "the scanner failed"
    p2m_wait_until "the relay accepted every scanned connection" queues_empty
    ELAPSED_MS=$(($(p2m_now_ms) - t0))
    echo "scan: $1 passes of $WLO-$WHI from $SCANNER: $REFUSED connections refused by the relay, $other elsewhere, ${ELAPSED_MS} ms"
}
# No listener of the range has a connection waiting to be accepted (Recv-Q of a listener).
queues_empty() { ss -Htln | awk -v lo="$LO" -v hi="$HI" '{ p = $4; sub(/.*:/, "", p) } p >= lo && p <= hi && $2 > 0 { bad = 1 } END { exit bad }'; }

# The relay's lines about the scanner: full lines, repeat lines, and the refusals they account for.
full_lines() { p2m_log_count relay "event=conn_refused .*peer=$SCANNER "; }
repeat_lines() { p2m_log_count relay "event=conn_refused_repeat peer=$SCANNER "; }
repeat_sum() { grep -o "event=conn_refused_repeat peer=$SCANNER .*" "$T/relay.log" | sed -n 's/.* count=\([0-9]*\) .*/\1/p' | awk '{ s += $1 } END { print s + 0 }'; }
accounted() { echo $(($(full_lines) + $(repeat_sum))); }
accounted_is() { [[ $(accounted) == "$1" ]]; }
reasons() { grep -E "event=conn_refused(_repeat)? .*peer=$SCANNER " "$T/relay.log" | grep -o ' reason=[a-z_]*' | sort -u | wc -l; }

scan "$PASSES"
((REFUSED >= 300)) || fail "the scan made only $REFUSED refused connections, want hundreds"
p2m_ok

# Every refusal is accounted for once the flush (every 10 s) has logged the counts.
p2m_wait_until -t $((6 * INTERVAL_S)) "full lines + counts reported = $REFUSED refusals" accounted_is "$REFUSED"
lines=$(($(full_lines) + $(repeat_lines)))
bound=$(($(reasons) * (1 + (ELAPSED_MS + INTERVAL_S * 1000 - 1) / (INTERVAL_S * 1000) + 1)))
echo "relay log: $lines lines for $REFUSED refusals from $SCANNER ($(full_lines) in full, $(repeat_lines) repeat lines; bound $bound)"
((lines <= bound)) || fail "$lines log lines about $SCANNER for $REFUSED refusals in $ELAPSED_MS ms, want at most $bound:"$'\n'"$(grep "peer=$SCANNER" "$T/relay.log")"
p2m_ok
expect_eq 1 "$(reasons)" "the scanner is refused for its address only (reason=address)"
# The first refusal is logged as before; the repeat line names the peer, the reason, the count and
# the lease and label of the last refusal it counts.
expect_match "event=conn_refused lease=[0-9]+ kind=(consumer|pre) label=web fd=[0-9]+ peer=$SCANNER want=127\.0\.0\.[0-9]+ reason=address$" \
    "$(grep -m 1 "event=conn_refused .*peer=$SCANNER " "$T/relay.log")" "the first refusal, in full"
line=$(grep -m 1 "event=conn_refused_repeat peer=$SCANNER " "$T/relay.log")
expect_match "level=warn event=conn_refused_repeat peer=$SCANNER reason=address count=[0-9]+ interval_s=$INTERVAL_S lease=([0-9]+) label=web$" \
    "$line" "the repeat line"
if ! [[ $line =~ lease=([0-9]+) ]] || ((BASH_REMATCH[1] < LO || BASH_REMATCH[1] > HI)); then
    fail "the repeat line names a lease outside $LO-$HI: $line"
fi
p2m_ok
# The consumers' own addresses were never refused.
expect_eq 0 "$(p2m_log_count relay 'event=conn_refused.* peer=127\.0\.0\.\([2-9]\|[1-5][0-9]\|6[01]\) ')" "no refusal of a consumer"

# ---------------------------------------------------------------- counts survive a shutdown

# A second scan, then TERM before the next flush is due: the shutdown logs what it counted.
before=$(accounted)
scan 1
p2m_stop relay "$RELAY_PID"
expect_eq $((before + REFUSED)) "$(accounted)" "refusals accounted for after the relay stopped"
p2m_log_has relay "event=relay_stop name=r1 status=0" || fail "no relay_stop line"
p2m_ok
echo "relay log: $(p2m_log_count relay 'event=conn_refused ') conn_refused lines and $(p2m_log_count relay 'event=conn_refused_repeat') repeat lines in all, $(wc -c <"$T/relay.log") bytes"

expect_log_clean relay
expect_log_clean registrar 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer'
