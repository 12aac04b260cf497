#!/usr/bin/env bash
# A burst of consumers against a pod with a small pool (issue "No consumer turned away"): 200
# consumers at once, each from its own 127.0.0.x, ask https://demo.DOMAIN/ of the registrar and
# follow its 307 to the relay; the pod (--pool 4, --tls-terminate in front of the HTTP echo) has
# 4 idle pre-connections. Every consumer must get 200 and its own request echoed back: no 503,
# none cut. The consumers that found no idle pre-connection wait at the relay while the pod, told
# of them by its registrations, grows its pool; afterwards the pool shrinks back to its floor.
# Then the pod is killed: a consumer still gets its 307 within registrar.alive_window and waits at
# the relay, which closes it cleanly (end of stream, not a reset) after relay.wait_timeout and
# counts it; after the window the label answers 503 with Retry-After.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss python3
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
N=200            # consumers in the burst
P2M_POOL=4       # the pod's --pool, the floor
ALIVE_WINDOW=10  # registrar.alive_window, the least allowed
P2M_WAIT_SECONDS=120 # every wait below is for an outcome, not a deadline

# ---------------------------------------------------------------- setup

# One consumer port per source address (PROTOCOL 3.6): N of them, and half the range at most.
p2m_free_port_range PORT_LO PORT_HI 600
# The burst must not depend on how fast this machine serves it: consumers may wait long.
p2m_start_system "{\"relay\": {\"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 300, \"max_conns_per_addr\": 64},
    \"registrar\": {\"alive_window\": $ALIVE_WINDOW, \"consumer_ports_per_label\": 1024}}"
admin pod add demo --label demo -o "$T/demo.json" >/dev/null

p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"
p2m_start_pod demo demo "127.0.0.1:$ECHO_HTTP" --tls-terminate
expect_eq "$P2M_POOL" "$(p2m_pod_json "$T/demo" .pool.floor)" "status: pool floor"
expect_eq 256 "$(p2m_pod_json "$T/demo" .pool.ceiling)" "status: pool ceiling (default)"
expect_eq "$P2M_POOL" "$(p2m_pod_json "$T/demo" .pool.target)" "status: pool target at rest"

# ---------------------------------------------------------------- the burst

# One curl process runs every transfer at once (--parallel-immediate opens a connection per
# transfer instead of waiting to multiplex): consumer i from 127.0.0.(i+2), its own path, the 307
# followed on the same address.
mkdir -p "$T/burst"
for ((i = 0; i < N; i++)); do
    printf 'url = "https://demo.pipe2me.localhost:%s/burst/%d"\ninterface = 127.0.0.%d\noutput = "%s/burst/%d"\n' \
        "$P2M_HTTPS_PORT" "$i" "$((i + 2))" "$T" "$i"
    printf 'location\ncacert = "%s"\nhttp1.1\nmax-time = 600\n' "$P2M_CA"
    printf 'write-out = "%%{http_code} %%{num_redirects} %%{url_effective}\\n"\n'
    ((i == N - 1)) || printf 'next\n'
done >"$T/burst.curl"
since=$(date +%s)
curl --parallel --parallel-immediate --parallel-max "$N" -sS -K "$T/burst.curl" >"$T/burst.out" 2>"$T/burst.err" || true

expect_eq "$N" "$(wc -l <"$T/burst.out")" "one result line per consumer"$'\n'"$(head -c 2000 "$T/burst.err")"
bad=$(grep -vE "^200 1 https://demo\.pipe2me\.localhost:[0-9]+/burst/[0-9]+\$" "$T/burst.out" || true)
[[ -z $bad ]] || fail "consumers not served 200 after one redirect:"$'\n'"$(sort "$T/burst.out" | uniq -c | sort -rn | head)"$'\n'"$(
    head -c 2000 "$T/burst.err")"
p2m_ok
for ((i = 0; i < N; i++)); do
    head -n 1 "$T/burst/$i" | grep -q "^GET /burst/$i HTTP/1.1" || fail "consumer $i got another body:"$'\n'"$(head -c 300 "$T/burst/$i")"
done
p2m_ok
expect_eq 0 "$(grep -c 'status=503' "$T/registrar.log" || true)" "no 503 from the registrar"
expect_eq 0 "$(p2m_log_count relay 'reason=queue_full\|event=consumer_wait_timeout')" "no consumer refused or timed out at the relay"

# The relay queued consumers, and the pod grew its pool for them (its log says why).
queued=$(p2m_log_count relay event=consumer_wait)
((queued > 0)) || fail "no consumer waited at the relay: the burst never outran the pool of $P2M_POOL"
p2m_ok
grep -q 'event=pool_target .*reason=\(waiting\|ran_dry\)' "$T/demo.log" ||
    fail "the pod never raised its pool target:"$'\n'"$(grep -E 'event=(registered|pool_)' "$T/demo.log" | tail -n 5)"
p2m_ok
grown=$(sed -n 's/.*event=pool_target .* target=\([0-9]*\) .*/\1/p' "$T/demo.log" | sort -n | tail -n 1)
((grown > P2M_POOL)) || fail "pool target never above the floor ($grown)"
p2m_ok
echo "e2e: $N consumers served; $queued waited at the relay; the pool grew to $grown" >&2

# The registrar's /metrics counts them per label (the relay adds its counters every heartbeat).
metric() {
    curl -fsS --max-time 5 "$P2M_METRICS_URL" | sed -n "s/^$1 //p"
}
metric_is() { [[ $(metric "$1") == "$2" ]]; }
metric_positive() { [[ $(metric "$1") =~ ^[1-9][0-9]*$ ]]; }
p2m_wait_until "the relay reported the queued consumers" metric_is 'pipe2me_consumers_queued_total{label="demo"}' "$queued"
p2m_wait_until "the relay reported them served" metric_is 'pipe2me_consumers_waited_served_total{label="demo"}' "$queued"
expect_eq "" "$(metric 'pipe2me_failures_total{reason="503"}')" "/metrics: no 503"

# After the burst: back to the floor, the extra pre-connections given back to the relay.
at_floor() {
    [[ $(p2m_pod_json "$T/demo" '"\(.pool.target) \(.pool.idle) \(.pool.connecting) \(.pool.registering) \(.pool.joined)"') == \
        "$P2M_POOL $P2M_POOL 0 0 0" ]]
}
p2m_wait_until "the pod's pool is back at its floor" at_floor
p2m_wait_until "the relay holds the floor's pre-connections only" p2m_redis_is "$P2M_POOL" HGET p2m:idle:r1 demo
grep -q "event=pool_floor" "$T/demo.log" || fail "no pool_floor line in the pod's log"
p2m_ok

# ---------------------------------------------------------------- the pod goes away

# Short waits for this part: the relay restarts with wait_timeout 2 (the pod re-registers).
p2m_stop relay "$RELAY_PID"
jq '.relay.wait_timeout = 2' "$P2M_CONFIG" >"$P2M_CONFIG.new" && mv "$P2M_CONFIG.new" "$P2M_CONFIG"
p2m_start_relay
p2m_wait_until "the pod refills its pool on the new relay" p2m_redis_is "$P2M_POOL" HGET p2m:idle:r1 demo
# Its registrations since said how many consumers have had to wait so far: the relay's count,
# complete now (a relay writes its counters before it stops).
p2m_wait_until "status: the consumers that had to wait" eval '[[ $(p2m_pod_json "$T/demo" .pool.waited) == "$queued" ]]'

p2m_kill "$DEMO_PID"
p2m_wait_until "the relay saw the pod's pre-connections close" p2m_redis_is "" HGET p2m:idle:r1 demo
# Within the window the label is still served: a 307, and the consumer waits at the relay.
p2m_consumer_port Q https demo
grep -q "event=redirect status=307 label=demo .*queued=yes" "$T/registrar.log" || fail "the 307 was not marked queued"
p2m_ok
# The wait ends after wait_timeout with an end of stream (a reset would fail the read).
python3 - "$Q" >"$T/waited.out" 2>&1 <<'EOF' || fail "the waiting consumer was not closed cleanly: $(cat "$T/waited.out")"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
s.sendall(b"\x16\x03\x01\x00\x05hello")  # first bytes: it queues for a pre-connection
t0 = time.monotonic()
data = s.recv(4096)  # b"" at end of stream; ConnectionResetError on a reset
print("eof" if data == b"" else "data %r" % data, "after %.1f s" % (time.monotonic() - t0))
sys.exit(0 if data == b"" else 1)
EOF
p2m_ok
grep -q 'event=consumer_wait_timeout' "$T/relay.log" || fail "no consumer_wait_timeout line in the relay log"
p2m_ok
p2m_wait_until "the relay reported the timed-out consumer" metric_positive 'pipe2me_consumers_wait_timeouts_total{label="demo"}'

# After the window without the pod: 503 at once, not a redirect to a wait.
gone() {
    hreq "https://demo.pipe2me.localhost:$P2M_HTTPS_PORT/late"
    [[ $CODE == 503 ]]
}
p2m_wait_until "the label answers 503 once the pod has been gone for the window" gone
expect_eq 10 "$(hdr retry-after)" "503 Retry-After"
expect_eq "the pod is offline; try again later" "$(body)" "503 body"
has_hdr location && fail "the 503 carries a Location"$'\n'"$(resp_dump)"
hreq "https://pipe2me.localhost:$P2M_HTTPS_PORT/tcp/demo"
expect_http 503 "GET /tcp/demo with no tcp service"
p2m_ok
