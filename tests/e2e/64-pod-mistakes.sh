#!/usr/bin/env bash
# The pod says what is wrong: a plain HTTP service behind the default --protocol https (no
# --tls-terminate) is named in one log line and in `pipe2me-pod status` ("answers plain HTTP, not
# TLS: add --tls-terminate or --protocol http"), and so is a TLS service declared http; the same
# services declared right show no problem (the probe has no false alarm); a problem that is fixed
# while the pod runs clears. A registrar certificate the pod cannot verify names --cacert and
# REGISTRAR/cacert, in the log and in status.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl openssl jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_POOL=2

p2m_start_system
REGISTRAR=https://pipe2me.localhost:$P2M_HTTPS_PORT

# The local services: a plain HTTP echo, and an HTTPS site (openssl s_server, a certificate from the
# registrar's CA for web.pipe2me.localhost).
p2m_free_port PLAIN
p2m_bg echo "$POD_BIN" test --forward-http "$PLAIN"
ECHO_PID=$P2M_BG_PID
p2m_wait_until "the HTTP echo listens" p2m_listening "$PLAIN"
mkdir -p "$T/www"
echo hello >"$T/www/hello"
p2m_https_site "$T/www" TLSPORT

problem_is() { [[ $(p2m_pod_json "$1" '.problems.local // ""') == "$2" ]]; }
registrar_problem_has() { [[ $(p2m_pod_json "$1" '.errors.registrar // ""') == *"$2"* ]]; }

# ---------------------------------------------------------------- plain HTTP behind https
want="127.0.0.1:$PLAIN answers plain HTTP, not TLS: add --tls-terminate or --protocol http"
p2m_start_pod -w relay plainpod web "127.0.0.1:$PLAIN"
p2m_wait_until "the pod names the plain HTTP service in its status" problem_is "$T/plainpod" "$want"
expect_eq 1 "$(grep -c 'event=local_protocol ' "$T/plainpod.log")" "one local_protocol line"
expect_match "event=local_protocol label=web forward=127.0.0.1:$PLAIN protocol=https problem=\"$want\"" \
    "$(cat "$T/plainpod.log")" "the log line names the service and the fix"
"$POD_BIN" status --state-dir "$T/plainpod" >"$OUT" || true
expect_match "problem     local service: $want" "$(cat "$OUT")" "pipe2me-pod status shows it"
# Consumers that meet the mistake do not repeat the line.
p2m_consumer_port QW https web
for i in 1 2 3; do
    curl -sS --max-time 10 --cacert "$T/state/ca.pem" -o /dev/null "https://web.pipe2me.localhost:$QW/" 2>/dev/null || true
done
p2m_wait_until "the pod refills its pool" p2m_pool_full "$T/plainpod" "$P2M_POOL"
expect_eq 1 "$(grep -c 'event=local_protocol ' "$T/plainpod.log")" "still one local_protocol line after consumers failed"

# Fixed while the pod runs: the plain service goes and a TLS one takes its port; the next probe
# (a failed tunnel, or the local service coming back) clears the problem.
p2m_kill "$ECHO_PID"
p2m_wait_until "the echo is gone" p2m_not_listening "$PLAIN"
# shellcheck disable=SC2016 # the inner shell expands its arguments
p2m_bg web2 bash -c 'cd -- "$1" && exec openssl s_server -quiet -WWW -accept "127.0.0.1:$2" -cert "$3" -key "$4"' _ \
    "$T/www" "$PLAIN" "$T/web.pem" "$T/web.key"
p2m_wait_until "the TLS service listens on the old port" p2m_listening "$PLAIN"
got=$(curl -sS --max-time 20 --cacert "$T/state/ca.pem" "https://web.pipe2me.localhost:$QW/hello") || true
expect_eq hello "$got" "a consumer reaches the TLS service through the same pod"
p2m_wait_until -t 120 "the problem clears" problem_is "$T/plainpod" ""
expect_match "event=local_protocol_ok label=web forward=127.0.0.1:$PLAIN protocol=https" "$(cat "$T/plainpod.log")" \
    "the log says it cleared"
p2m_stop plainpod "$PLAINPOD_PID"

# ---------------------------------------------------------------- declared right: no problem
p2m_free_port PLAIN2
p2m_bg echo2 "$POD_BIN" test --forward-http "$PLAIN2"
p2m_wait_until "the second HTTP echo listens" p2m_listening "$PLAIN2"
admin pod add tlspod --label tlsok -o "$T/tlspod.json" >/dev/null
p2m_start_pod -w relay tlspod tlsok "127.0.0.1:$TLSPORT"
admin pod add httppod --label httpok -o "$T/httppod.json" >/dev/null
p2m_start_pod httppod httpok "127.0.0.1:$PLAIN2" --protocol http
p2m_consumer_port QH http httpok
expect_match "GET /x HTTP/1.1" "$(curl -sS --max-time 20 "http://httpok.pipe2me.localhost:$QH/x")" "the http service is reached"
# Each pod's status is rewritten every second: two fresh ones without a problem.
since=$(date +%s)
p2m_wait_until "tlspod writes a status after the probe" p2m_pool_full "$T/tlspod" "$P2M_POOL" "$((since + 4))"
p2m_wait_until "httppod writes a status after the probe" p2m_pool_full "$T/httppod" "$P2M_POOL" "$((since + 4))"
expect_eq "" "$(p2m_pod_json "$T/tlspod" '.problems.local // ""')" "a TLS service declared https: no problem"
expect_eq "" "$(p2m_pod_json "$T/httppod" '.problems.local // ""')" "a plain service declared http: no problem"
expect_eq 0 "$(cat "$T/tlspod.log" "$T/httppod.log" | grep -c 'event=local_protocol' || true)" \
    "no local_protocol line for services declared right"

# ---------------------------------------------------------------- TLS declared http
admin pod add wrongpod --label wrong -o "$T/wrongpod.json" >/dev/null
p2m_start_pod wrongpod wrong "127.0.0.1:$TLSPORT" --protocol http
p2m_wait_until "a TLS service declared http is named" problem_is "$T/wrongpod" \
    "127.0.0.1:$TLSPORT answers TLS, not plain HTTP: use --protocol https"

# ---------------------------------------------------------------- the registrar's CA
# No --cacert: the system's CAs do not know the registrar's.
admin pod add nocapod --label noca -o "$T/nocapod.json" >/dev/null
p2m_bg nocapod "$POD_BIN" register --provision "$T/nocapod.json" --forward "127.0.0.1:$PLAIN2" --protocol http \
    --state-dir "$T/nocapod" --pool 1
want_ca="give its CA with --cacert FILE, from $REGISTRAR/cacert"
p2m_wait_until -t 60 "the pod names --cacert and the CA's URL in its status" registrar_problem_has "$T/nocapod" "$want_ca"
expect_match "event=registrar_down label=noca error=\"the registrar's certificate cannot be verified \(.*\): $want_ca\"" \
    "$(cat "$T/nocapod.log")" "the log line names --cacert and $REGISTRAR/cacert"
"$POD_BIN" status --state-dir "$T/nocapod" >"$OUT" || true
expect_match "registrar: the registrar's certificate cannot be verified" "$(cat "$OUT")" "status shows it"
# A --cacert that holds another CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=Some Other CA" -days 1 \
    -keyout "$T/other-key.pem" -out "$T/other-ca.pem" 2>/dev/null
admin pod add otherpod --label other -o "$T/otherpod.json" >/dev/null
p2m_bg otherpod "$POD_BIN" register --provision "$T/otherpod.json" --forward "127.0.0.1:$PLAIN2" --protocol http \
    --state-dir "$T/otherpod" --pool 1 --cacert "$T/other-ca.pem"
p2m_wait_until -t 60 "a wrong --cacert is named" registrar_problem_has "$T/otherpod" \
    "--cacert does not hold its CA; get the right one from $REGISTRAR/cacert"
