#!/usr/bin/env bash
# Several services in one pipe2me-pod process: `run --config FILE` with an https service (TLS
# terminated by the pod) and an http service under label alpha and a tcp echo under label beta;
# consumers reach all three; `status` shows every service; the two alpha services share one session
# (one TOTP code for the label). SIGHUP with a file that removes alpha's http service and adds gamma's
# keeps a transfer through beta intact (sha256 of 2 x 4 MiB each way, half before and half after the
# reload), serves gamma, and drains the removed one; SIGHUP with a broken file changes nothing.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq python3 sha256sum ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod

p2m_start_system
admin pod add runpod --label alpha --label beta --label gamma -o "$T/runpod.json" >/dev/null

p2m_free_port ECHO_HTTP
p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP" --forward-tcp "$ECHO_TCP"
p2m_wait_until "the echo services listen" p2m_listening "$ECHO_TCP"

RUN=$T/run
# write_config FILE SERVICES_JSON
write_config() {
    jq -n --arg p "$T/runpod.json" --arg ca "$T/state/ca.pem" --arg d "$RUN" --argjson s "$2" \
        '{provision: $p, cacert: $ca, state_dir: $d, drain_timeout: 10, services: $s}' >"$1"
}
svc_alpha=$(jq -n --arg f "127.0.0.1:$ECHO_HTTP" '{label: "alpha", forward: $f, tls_terminate: true, pool: 2}')
svc_alpha_http=$(jq -n --arg f "127.0.0.1:$ECHO_HTTP" '{label: "alpha", protocol: "http", forward: $f, pool: 2}')
svc_beta=$(jq -n --arg f "127.0.0.1:$ECHO_TCP" '{label: "beta", protocol: "tcp", forward: $f, pool: 2}')
svc_gamma=$(jq -n --arg f "127.0.0.1:$ECHO_HTTP" '{label: "gamma", protocol: "http", forward: $f, pool: 2}')
write_config "$T/pod.json" "[$svc_alpha, $svc_alpha_http, $svc_beta]"

since=$(($(date +%s) - 1))
p2m_bg runpod "$POD_BIN" run --config "$T/pod.json"
RUNPOD_PID=$P2M_BG_PID
for svc in alpha alpha-http beta-tcp; do
    p2m_wait_until -t 90 "service $svc fills its pool" p2m_pool_full "$RUN/$svc" 2 "$since"
done
expect_eq "$RUNPOD_PID" "$(cat "$RUN/alpha/pod.pid")" "one process runs every service"
expect_eq "$RUNPOD_PID" "$(cat "$RUN/beta-tcp/pod.pid")" "one process runs every service (beta)"
# One TOTP code per label: alpha's two services share a session; beta has its own.
# (alpha's first request may be its certificate's: --tls-terminate asks for it first.)
totp_uses() { grep -cE "event=(register|certificate) status=200 label=$1 .*pod=runpod .*auth=totp" "$T/registrar.log" || true; }
expect_eq 1 "$(totp_uses alpha)" "alpha: one TOTP code for its two services"
expect_eq 1 "$(totp_uses beta)" "beta: one TOTP code"

# ---------------------------------------------------------------- consumers reach all three
got=$(curl -sS -L --max-time 20 --cacert "$T/state/ca.pem" "https://alpha.pipe2me.localhost:$P2M_HTTPS_PORT/via-https") ||
    fail "curl to alpha (https) failed"
expect_match "^GET /via-https HTTP/1.1" "$got" "alpha https (TLS ended by the pod) reaches the echo"
p2m_consumer_port QH http alpha
expect_match "^GET /via-http HTTP/1.1" "$(curl -sS --max-time 20 "http://alpha.pipe2me.localhost:$QH/via-http")" "alpha http reaches the echo"
tcp_port() {
    local body
    body=$(curl -sS --max-time 10 --cacert "$T/state/ca.pem" "https://pipe2me.localhost:$P2M_HTTPS_PORT/tcp/$1") || return 1
    [[ $body =~ :([0-9]+)$ ]] && echo "${BASH_REMATCH[1]}"
}
QT=$(tcp_port beta) || fail "GET /tcp/beta failed"
expect_eq "tcp echo" "$(printf 'tcp echo' | timeout 10 socat -t 5 - "TCP:127.0.0.1:$QT")" "beta tcp reaches the echo"

"$POD_BIN" status --state-dir "$RUN" >"$OUT" || fail "status of the run directory: exit $?"$'\n'"$(cat "$OUT")"
for svc in alpha alpha-http beta-tcp; do
    expect_match "== service $svc" "$(cat "$OUT")" "status shows $svc"
done
expect_eq "alpha alpha-http beta-tcp" "$("$POD_BIN" status --state-dir "$RUN" --json | jq -r '.services | keys | join(" ")')" \
    "status --json: every service"

# ---------------------------------------------------------------- SIGHUP: add gamma, remove alpha-http
# A consumer of beta sends half its bytes and reads their echo, waits for the reload, then sends
# the rest; what came back must be what went, byte for byte.
cat >"$T/transfer.py" <<'EOF'
import hashlib, os, socket, sys, time
port, ready, go = int(sys.argv[1]), sys.argv[2], sys.argv[3]
half = 4 << 20
data = os.urandom(2 * half)
s = socket.create_connection(("127.0.0.1", port), timeout=60)
def exchange(chunk):
    got = bytearray()
    s.sendall(chunk)
    while len(got) < len(chunk):
        b = s.recv(1 << 16)
        if not b:
            sys.exit("closed after %d of %d bytes" % (len(got), len(chunk)))
        got += b
    return bytes(got)
back = exchange(data[:half])
open(ready, "w").close()
deadline = time.time() + 120
while not os.path.exists(go):
    if time.time() > deadline:
        sys.exit("no go")
    time.sleep(0.05)
back += exchange(data[half:])
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(back).hexdigest())
EOF
p2m_bg transfer python3 "$T/transfer.py" "$QT" "$T/ready" "$T/go"
TRANSFER_PID=$P2M_BG_PID
p2m_wait_until -t 60 "the first half went through beta" test -e "$T/ready"

write_config "$T/pod.json" "[$svc_alpha, $svc_beta, $svc_gamma]"
since=$(($(date +%s) - 1))
kill -HUP "$RUNPOD_PID"
p2m_wait_until -t 60 "the pod reloads" p2m_log_has runpod 'event=reloaded '
expect_match "event=reloaded config=$T/pod.json services=3 kept=2 added=1 removed=1 was=3" "$(grep 'event=reloaded' "$T/runpod.log")" \
    "reloaded: two kept, one added, one removed"
touch "$T/go"
p2m_wait_until -t 60 "the transfer ends" p2m_dead "$TRANSFER_PID"
read -r sent back <"$T/transfer.log" || fail "the transfer printed nothing: $(cat "$T/transfer.log")"
expect_eq "$sent" "$back" "the transfer through beta is intact across the reload (sha256)"

p2m_wait_until -t 90 "gamma fills its pool" p2m_pool_full "$RUN/gamma-http" 2 "$since"
p2m_consumer_port QG http gamma
expect_match "^GET /gamma HTTP/1.1" "$(curl -sS --max-time 20 "http://gamma.pipe2me.localhost:$QG/gamma")" "the added gamma is served"
got=$(curl -sS -L --max-time 20 --cacert "$T/state/ca.pem" "https://alpha.pipe2me.localhost:$P2M_HTTPS_PORT/after") || fail "alpha after the reload"
expect_match "^GET /after HTTP/1.1" "$got" "alpha (kept) is still served"
expect_match "event=drained label=alpha " "$(cat "$T/runpod.log")" "the removed alpha-http drained"
expect_eq stopped "$(jq -r .state "$RUN/alpha-http/status.json")" "alpha-http's status says stopped"
expect_eq "alpha beta-tcp gamma-http" "$("$POD_BIN" status --state-dir "$RUN" --json | jq -r '.services | keys | join(" ")')" \
    "status after the reload: alpha, beta-tcp, gamma-http"
expect_eq "$RUNPOD_PID" "$(cat "$RUN/gamma-http/pod.pid")" "gamma runs in the same process"

# ---------------------------------------------------------------- SIGHUP with a broken file
cp "$T/pod.json" "$T/pod.json.good"
printf '{"provision": "%s", "services": [{"label": "alpha", "forward": ' "$T/runpod.json" >"$T/pod.json"
kill -HUP "$RUNPOD_PID"
p2m_wait_until -t 60 "the broken file is refused" p2m_log_has runpod 'event=reload_failed '
expect_match "event=reload_failed config=$T/pod.json error=\"$T/pod.json: not JSON .*\" services=3" \
    "$(grep 'event=reload_failed' "$T/runpod.log")" "reload_failed names the file and what is wrong"
expect_eq 1 "$(p2m_log_count runpod 'event=reloaded ')" "no second reload"
expect_eq "alpha beta-tcp gamma-http" "$("$POD_BIN" status --state-dir "$RUN" --json | jq -r '.services | keys | join(" ")')" \
    "the services run on"
expect_match "^GET /still HTTP/1.1" "$(curl -sS --max-time 20 "http://gamma.pipe2me.localhost:$QG/still")" "gamma still served"
expect_eq "still tcp" "$(printf 'still tcp' | timeout 10 socat -t 5 - "TCP:127.0.0.1:$QT")" "beta still served"

# ---------------------------------------------------------------- SIGHUP that changes a service's settings
# beta's floor 2 -> 3: the old beta drains, a new one takes DIR/beta-tcp; the old one's end leaves
# the new one's status and pod.pid alone.
svc_beta3=$(jq -n --arg f "127.0.0.1:$ECHO_TCP" '{label: "beta", protocol: "tcp", forward: $f, pool: 3}')
write_config "$T/pod.json" "[$svc_alpha, $svc_beta3, $svc_gamma]"
since=$(($(date +%s) - 1))
kill -HUP "$RUNPOD_PID"
p2m_wait_until -t 60 "the pod reloads again" eval '[[ $(p2m_log_count runpod "event=reloaded ") == 2 ]]'
expect_match "services=3 kept=2 added=1 removed=1 was=3" "$(grep 'event=reloaded' "$T/runpod.log" | tail -n 1)" "beta replaced"
p2m_wait_until -t 90 "the new beta fills its pool of 3" p2m_pool_full "$RUN/beta-tcp" 3 "$since"
p2m_wait_until -t 30 "the old beta has stopped" eval '[[ $(p2m_log_count runpod "event=stopped label=beta ") == 1 ]]'
sleep_until=$(($(date +%s) + 2))
p2m_wait_until "a status written after the old beta stopped" p2m_pool_full "$RUN/beta-tcp" 3 "$sleep_until"
expect_eq running "$(jq -r .state "$RUN/beta-tcp/status.json")" "the new beta's status is its own"
expect_eq "$RUNPOD_PID" "$(cat "$RUN/beta-tcp/pod.pid")" "DIR/beta-tcp/pod.pid stays"
expect_eq "still beta" "$(printf 'still beta' | timeout 10 socat -t 5 - "TCP:127.0.0.1:$(tcp_port beta)")" "the new beta serves"

# SIGTERM: every service drains, the process exits 0.
p2m_stop runpod "$RUNPOD_PID"
expect_eq 3 "$(sed -n '/event=stopping /,$p' "$T/runpod.log" | grep -c 'event=stopped ')" "three services stopped"
expect_log_clean runpod 'event=(loop_failed|out_of_memory)'
