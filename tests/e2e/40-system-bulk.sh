#!/usr/bin/env bash
# The whole system moving bulk data: a private redis-server, pipe2me-registrar, pipe2me-relay and
# pipe2me-pod on loopback, consumers sent by the registrar's 307 to their consumer port Q.
#   - 1 GiB consumer -> pod: the local service hashes what arrives and answers with the hash after
#     the consumer's end of stream, so the consumer's half-close must cross the tunnel and the
#     consumer must still get the whole answer after shutting its write side;
#   - 1 GiB pod -> consumer: the local service sends the file and shuts its write side; the consumer
#     reads to end of stream and only then answers, which must still reach the service;
#   - a web page over HTTPS with `curl -L --cacert STATE/ca.pem` (no -k): TLS ends at the pod's
#     openssl s_server, whose certificate the registrar's CA signed for web.pipe2me.localhost.
# sha256 is compared at both ends, the byte counts in the pod's and the relay's logs, and every
# program must exit 0 on SIGTERM (LeakSanitizer included) with no error or sanitizer report logged.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat openssl sha256sum jq ss df
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
RELAY_NAME=sys
POOL=2
P2M_POOL=$POOL P2M_RELAY_NAME=$RELAY_NAME
BIG=$((1 << 30))

# ---------------------------------------------------------------- helpers

# mib_per_s MS: throughput of $BIG bytes in MS milliseconds.
mib_per_s() { echo $((BIG * 1000 / ($1 > 0 ? $1 : 1) / 1048576)); }

# ---------------------------------------------------------------- setup

avail_kib=$(df -Pk "$T" | awk 'NR == 2 { print $4 }')
((avail_kib > 3 * 1048576)) || fail "need 3 GiB free in $T for the 1 GiB test data, have $((avail_kib / 1024)) MiB"

p2m_start_system "{\"relay\": {\"name\": \"$RELAY_NAME\", \"idle_timeout\": 120}, \"registrar\": {\"consumer_ttl\": 300}}"

t0=$(p2m_now_ms)
head -c "$BIG" /dev/urandom >"$T/big.in"
t1=$(p2m_now_ms)
BIG_SUM=$(sha256sum <"$T/big.in")
SUM_LEN=$((${#BIG_SUM} + 1)) # the service's answer: sha256sum's line
echo "bulk: 1 GiB of test data generated in $((t1 - t0)) ms"

# Local services, one per pod:
#   up:   sha256sum of everything up to the end of stream, then its answer;
#   down: the file, then end of stream (its write side only: socat passes a file's end on as a
#         half-close), while whatever the consumer sends, before and after, goes to down.req.
p2m_free_port SVC_UP
p2m_free_port SVC_DOWN
p2m_bg svc-up socat -t 120 -T 120 "TCP-LISTEN:$SVC_UP,bind=127.0.0.1,reuseaddr,fork" EXEC:sha256sum
p2m_bg svc-down socat -t 120 -T 120 "TCP-LISTEN:$SVC_DOWN,bind=127.0.0.1,reuseaddr,fork" \
    "OPEN:$T/big.in,rdonly!!OPEN:$T/down.req,creat,wronly,trunc"

mkdir -p "$T/www"
printf '<h1>bulk web page</h1>\n' >"$T/www/index.html"
p2m_https_site "$T/www" SVC_WEB
for port in "$SVC_UP" "$SVC_DOWN"; do
    p2m_wait_until -t 30 "a local service listens on $port" p2m_listening "$port"
done

# Each its own pod ID (a TOTP step is accepted once per pod); each waits until its pool is full. up
# and down are plain TCP services: declared tcp (consumers ask GET /tcp/LABEL for their port), so
# that no probe of the pod's (pod/probe.c: it checks what an https service speaks) connects to them.
p2m_start_pod podup up "127.0.0.1:$SVC_UP" --protocol tcp
POD_UP=$P2M_BG_PID
p2m_start_pod poddown down "127.0.0.1:$SVC_DOWN" --protocol tcp
POD_DOWN=$P2M_BG_PID
p2m_start_pod -w relay podweb web "127.0.0.1:$SVC_WEB"
POD_WEB=$P2M_BG_PID

# ---------------------------------------------------------------- 1 GiB consumer -> pod

p2m_tcp_port QUP up
t0=$(p2m_now_ms)
timeout 300 socat -t 120 -T 120 -b 262144 - "TCP:127.0.0.1:$QUP" <"$T/big.in" >"$T/up.resp" ||
    fail "the upload consumer failed (status $?)"
t1=$(p2m_now_ms)
expect_eq "$BIG_SUM" "$(cat "$T/up.resp")" "sha256 of 1 GiB as the pod's service received it, answered after the consumer's half-close"
UP_MS=$((t1 - t0))
echo "bulk: 1 GiB consumer -> pod in $UP_MS ms ($(mib_per_s $UP_MS) MiB/s), hash answered after the half-close"
p2m_wait_until "the pod logs the upload tunnel's bytes" \
    grep -q "event=tunnel_close label=up .*reason=done bytes_in=$BIG bytes_out=$SUM_LEN" "$T/podup.log"
p2m_wait_until "the relay logs the upload tunnel's bytes" \
    grep -q "event=tunnel_close lease=$QUP label=up:tcp .*reason=done bytes_in=$BIG bytes_out=$SUM_LEN" "$T/relay.log"

# ---------------------------------------------------------------- 1 GiB pod -> consumer

p2m_tcp_port QDOWN down
t0=$(p2m_now_ms)
# The consumer reads to the end of stream, then still writes: the service's half-close must reach
# it as an end of stream, and the tunnel must keep the consumer -> pod direction open.
# shellcheck disable=SC2016 # the inner shell expands its arguments
timeout 300 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET\n" >&3
    sha256sum <&3 >"$2" || exit 1
    printf "ack after end of stream\n" >&3
    exec 3>&-' _ "$QDOWN" "$T/down.sum" || fail "the download consumer failed (status $?)"
t1=$(p2m_now_ms)
expect_eq "$BIG_SUM" "$(cat "$T/down.sum")" "sha256 of 1 GiB as the consumer received it"
DOWN_MS=$((t1 - t0))
echo "bulk: 1 GiB pod -> consumer in $DOWN_MS ms ($(mib_per_s $DOWN_MS) MiB/s), consumer answered after the pod's half-close"
p2m_wait_until "the service got the consumer's answer sent after the pod's end of stream" \
    p2m_file_is "$T/down.req" $'GET\nack after end of stream'
p2m_wait_until "the pod logs the download tunnel's bytes" \
    grep -q "event=tunnel_close label=down .*reason=done bytes_in=$((4 + 24)) bytes_out=$BIG" "$T/poddown.log"

# ---------------------------------------------------------------- a web page over HTTPS

got=$(curl -sS -L --max-time 30 --cacert "$T/state/ca.pem" -w '\n%{http_code} %{num_redirects} %{url_effective}' \
    "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/index.html") || fail "curl -L through the tunnel failed"
expect_match $'^<h1>bulk web page</h1>\n\n200 1 https://web\\.pipe2me\\.localhost:[0-9]+/index\\.html$' "$got" \
    "the page from the pod's s_server, one 307 away, certificate verified with the registrar's CA"
q=${got##*:}
q=${q%%/*}
[[ $q != "$P2M_HTTPS_PORT" && $q -ge $P2M_RELAY_PORT_LO && $q -le $P2M_RELAY_PORT_HI ]] || fail "the page came from port $q, not a relay port"
p2m_ok

# ---------------------------------------------------------------- clean exits, clean logs

p2m_stop -t 15 podup "$POD_UP"
p2m_stop -t 15 poddown "$POD_DOWN"
p2m_stop -t 15 podweb "$POD_WEB"
p2m_stop -t 15 relay "$RELAY_PID"
p2m_stop -t 15 registrar "$REGISTRAR_PID"
for f in registrar relay podup poddown podweb; do
    expect_log_clean "$f"
done
rm -f "$T/big.in"
echo "bulk: upload $(mib_per_s $UP_MS) MiB/s, download $(mib_per_s $DOWN_MS) MiB/s"
