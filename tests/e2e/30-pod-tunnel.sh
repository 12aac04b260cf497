#!/usr/bin/env bash
# pipe2me-pod end to end: real redis-server, registrar, relay and pods on loopback; consumers are
# curl and socat. HTTPS through the tunnel to an openssl s_server whose certificate the registrar's
# CA signed (TLS ends at the pod's side), plain HTTP to `pipe2me-pod test`'s echo page, 64 MiB
# each way through its TCP echo, 50 consumers at once, half-closes, the pool refilled to N in
# `pipe2me-pod status`, and the pod's descriptors back to their baseline after 500 consumers.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat openssl sha256sum jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_POOL=4 # each pod's --pool

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
fds_at_most() { (($(fds "$1") <= $2)); }

# ---------------------------------------------------------------- setup

p2m_free_port_range PORT_LO PORT_HI 64
p2m_start_system "{\"relay\": {\"ports\": \"$PORT_LO-$PORT_HI\"}}"

# One pod (ID and secret) per pod process: a TOTP code is accepted once per pod and 30-s step.
for label in web echo tcp; do
    admin pod add "pod$label" --label "$label" -o "$T/pod$label.json" >/dev/null
    expect_eq 600 "$(stat -c %a "$T/pod$label.json")" "provisioning file mode"
done

# pipe2me-pod env: shell assignments from the provisioning file, never the secret.
"$POD_BIN" env --provision "$T/podweb.json" >"$OUT"
(
    eval "$(cat "$OUT")"
    expect_eq podweb "$P2M_ID" "env: P2M_ID"
    expect_eq web "$P2M_LABEL" "env: P2M_LABEL"
    expect_eq "https://web.pipe2me.localhost:$P2M_HTTPS_PORT" "$P2M_URL" "env: P2M_URL"
    expect_eq "https://pipe2me.localhost:$P2M_HTTPS_PORT" "$P2M_REGISTRAR" "env: P2M_REGISTRAR"
)
! grep -qF -- "$(jq -r .secret "$T/podweb.json")" "$OUT" || fail "env printed the secret"
p2m_ok

# The local services: pipe2me-pod test's echoes, and an HTTPS site with a certificate from the
# registrar's CA for web.pipe2me.localhost.
p2m_free_port ECHO_HTTP
p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP" --forward-tcp "$ECHO_TCP"
ECHO_PID=$P2M_BG_PID
p2m_wait_until "the echo services listen" p2m_listening "$ECHO_TCP"

mkdir -p "$T/www"
echo "hello through the tunnel" >"$T/www/hello"
p2m_https_site "$T/www" WEB

p2m_start_pod podweb web "127.0.0.1:$WEB"
p2m_start_pod podecho echo "localhost:$ECHO_HTTP"
p2m_start_pod podtcp tcp "127.0.0.1:$ECHO_TCP"
expect_eq "$P2M_POOL" "$(p2m_pod_json "$T/podtcp" .pool.target)" "status: pool target"
expect_eq up "$(p2m_pod_json "$T/podtcp" .health.registrar)" "status: registrar health"

# ---------------------------------------------------------------- HTTPS and HTTP through tunnels

got=$(curl -sS -L --max-time 20 --cacert "$T/state/ca.pem" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/hello")
expect_eq "hello through the tunnel" "$got" "HTTPS via the 307 to the pod's s_server"

p2m_consumer_port QE https echo
got=$(curl -sS --max-time 20 -H 'X-Probe: 42' "http://echo.pipe2me.localhost:$QE/hello?x=1")
expect_match $'^GET /hello\\?x=1 HTTP/1\\.1\r\n' "$got" "echo page: request line"
expect_match $'\r\nHost: echo\\.pipe2me\\.localhost:'"$QE"$'\r\n' "$got" "echo page: Host header"
expect_match $'\r\nX-Probe: 42\r\n' "$got" "echo page: our header"

# ---------------------------------------------------------------- 64 MiB each way

p2m_consumer_port QT https tcp
head -c $((64 << 20)) /dev/urandom >"$T/big.in"
timeout 100 socat -t 30 -T 60 -b 262144 - "TCP:127.0.0.1:$QT" <"$T/big.in" >"$T/big.out"
expect_eq "$(sha256sum <"$T/big.in")" "$(sha256sum <"$T/big.out")" "64 MiB through the TCP echo, unchanged"
rm -f "$T/big.in" "$T/big.out"
p2m_wait_until "the pod logs the big tunnel" grep -q "event=tunnel_close label=tcp .* reason=done bytes_in=$((64 << 20)) bytes_out=$((64 << 20))" "$T/podtcp.log"

# ---------------------------------------------------------------- half-close

# The consumer shuts its write side after the request and still reads the whole reply.
got=$(printf 'GET /half HTTP/1.0\r\nHost: x\r\n\r\n' | timeout 20 socat -t 10 - "TCP:127.0.0.1:$QE" && echo .)
expect_match $'^HTTP/1\\.1 200 OK\r\n.*\r\n\r\nGET /half HTTP/1\\.0\r\nHost: x\r\n\r\n\\.$' "$got" "HTTP reply after a half-close"
head -c 300000 /dev/urandom >"$T/half.in"
timeout 20 socat -t 10 - "TCP:127.0.0.1:$QT" <"$T/half.in" >"$T/half.out"
cmp -s "$T/half.in" "$T/half.out" || fail "TCP echo after a half-close: the reply differs"
p2m_ok

# ---------------------------------------------------------------- 50 consumers at once

since=$(date +%s)
pids=()
for i in $(seq 1 50); do
    p2m_bg "c$i" curl -sS --max-time 30 -o "$T/c$i.out" "http://echo.pipe2me.localhost:$QE/c$i"
    pids+=("$P2M_BG_PID")
done
p2m_reap consumer "${pids[@]}"
for i in $(seq 1 50); do
    [[ -f $T/c$i.out ]] && grep -q "^GET /c$i HTTP/1.1" "$T/c$i.out" || fail "consumer $i was not served: $(cat "$T/c$i.log" 2>/dev/null)"
    p2m_ok
done
p2m_wait_until "the echo pod refills its pool to $P2M_POOL" p2m_pool_full "$T/podecho" "$P2M_POOL" "$since"
# The status is written every second: the one that shows the pool full may predate the last close.
tunnels_active_is() { [[ $(p2m_pod_json "$1" .tunnels.active) == "$2" ]]; }
p2m_wait_until "no tunnel left active" tunnels_active_is "$T/podecho" 0
(($(p2m_pod_json "$T/podecho" .tunnels.total) >= 52)) || fail "tunnels.total: $(p2m_pod_json "$T/podecho" .tunnels.total)"
p2m_ok

"$POD_BIN" status --state-dir "$T/podecho" >"$OUT"
expect_match "pool +$P2M_POOL/$P2M_POOL idle" "$(cat "$OUT")" "status table: pool refilled"
expect_match "state +running" "$(cat "$OUT")" "status table: running"

# ---------------------------------------------------------------- descriptors after 500 consumers

p2m_wait_until "the tcp pod refills its pool" p2m_pool_full "$T/podtcp" "$P2M_POOL" "$(date +%s)"
base=$(fds "$PODTCP_PID")
since=$(date +%s)
for ((i = 0; i < 500; i++)); do
    got=$(printf 'p%d' "$i" | timeout 10 socat -t 5 - "TCP:127.0.0.1:$QT") || fail "consumer $i failed"
    [[ $got == "p$i" ]] || fail "consumer $i: got $(p2m_show "$got")"
done
p2m_ok
p2m_wait_until "the tcp pod refills its pool after 500 consumers" p2m_pool_full "$T/podtcp" "$P2M_POOL" "$since"
p2m_wait_until "the tcp pod's descriptors are back to $base" fds_at_most "$PODTCP_PID" "$base"
echo "e2e: the tcp pod holds $(fds "$PODTCP_PID") descriptors after 500 consumers, $base before"
p2m_wait_until "no tunnel left active after 500 consumers" tunnels_active_is "$T/podtcp" 0

# ---------------------------------------------------------------- clean stop

for name in podweb podecho podtcp; do
    pid_var=${name^^}_PID
    p2m_stop "$name" "${!pid_var}"
    expect_eq stopped "$(jq -r .state "$T/$name/status.json")" "$name status after exit"
    [[ ! -e $T/$name/pod.pid ]] || fail "$name left its pid file"
    p2m_ok
    expect_log_clean "$name" 'level=error'
    expect_pod_secret_kept "$name"
done
p2m_kill "$ECHO_PID"
