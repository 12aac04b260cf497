#!/usr/bin/env bash
# pipe2me-pod --tls-terminate and --protocol end to end (docs/PROTOCOL.md 1.1, 2.1 and 4): real
# redis-server, registrar (certificates living 60 s), relay and pods on loopback; consumers are
# curl, openssl s_client and socat, verifying against the CA the pod fetched.
#   - the pod makes its key (mode 0600), gets its certificate and the CA before any pre-connection,
#     with one TOTP step: the registrations after it use the session the certificate brought;
#   - HTTPS through the 307 to the pod's TLS in front of `pipe2me-pod test`'s plain HTTP echo;
#     s_client sees CN=LABEL.DOMAIN and verifies; ALPN h2 offered gets HTTP/1.1 (--alpn default);
#   - 1 MiB through TLS to the TCP echo and back, unchanged (the HTTP echo takes 64 KiB bodies);
#   - a running pod renews its certificate by itself (the serial changes), and serves the new one;
#   - an expired certificate in DIR/tls/cert.pem (signed with the registrar's CA key), or another
#     pod's, is replaced at start; a fresh one is loaded as it is;
#   - --protocol http: the plain-HTTP listener redirects to http://LABEL.DOMAIN:Q/ and curl -L gets
#     the echo; https:// for that label finds no https service (503).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat openssl jq ss cmp
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
DOMAIN=pipe2me.localhost
P2M_POOL=2 # each pod's --pool

log_line() { grep -n -m 1 -- "$2" "$T/$1.log" | cut -d: -f1; }
serial_of() { openssl x509 -noout -serial -in "$1" | sed 's/^serial=//'; }
serial_is_not() { local s; s=$(serial_of "$1") && [[ -n $s && $s != "$2" ]]; }


# stop_pod NAME: TERM; it must exit 0.
stop_pod() {
    local pid_var=${1^^}_PID
    p2m_stop "$1" "${!pid_var}"
}

# https_get LABEL PATH [CURL_ARGS...]: through the registrar's 307, verified with the pod's CA.
https_get() {
    local label=$1 path=$2
    shift 2
    curl -sS -L --max-time 20 --cacert "$T/pod$label/tls/ca.pem" --connect-to ::127.0.0.1: "$@" \
        "https://$label.$DOMAIN:$P2M_HTTPS_PORT$path"
}

# s_client LABEL Q [ARGS...]: a TLS handshake with the pod, verified, its output in $OUT.
s_client() {
    local label=$1 q=$2
    shift 2
    echo | timeout 20 openssl s_client -connect "127.0.0.1:$q" -servername "$label.$DOMAIN" \
        -CAfile "$T/pod$label/tls/ca.pem" -verify_hostname "$label.$DOMAIN" "$@" >"$OUT" 2>&1 || true
}

# ---------------------------------------------------------------- setup

p2m_start_system '{"registrar": {"cert_lifetime": 60}}'
for label in web bulk plain; do
    admin pod add "pod$label" --label "$label" -o "$T/pod$label.json" >/dev/null
done
p2m_free_port ECHO_HTTP
p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP" --forward-tcp "$ECHO_TCP"
p2m_wait_until "the echo services listen" p2m_listening "$ECHO_TCP"

# The flags' errors: one line, exit status 2, before anything starts.
expect_status 2 "$POD_BIN" register --provision "$T/podweb.json" --forward "127.0.0.1:$ECHO_HTTP" --tls-terminate
expect_match '^pipe2me-pod: --tls-terminate needs --state-dir' "$(cat "$ERR")" "--tls-terminate without --state-dir"
expect_status 2 "$POD_BIN" register --provision "$T/podweb.json" --forward "127.0.0.1:$ECHO_HTTP" --tls-terminate \
    --state-dir "$T/x" --protocol http
expect_match 'needs --protocol https' "$(cat "$ERR")" "--tls-terminate with --protocol http"
expect_status 2 "$POD_BIN" register --provision "$T/podweb.json" --forward "127.0.0.1:$ECHO_HTTP" --alpn h2
expect_match '--alpn is for --tls-terminate' "$(cat "$ERR")" "--alpn without --tls-terminate"
[[ ! -e $T/x ]] || fail "a refused command line created its state directory"
p2m_ok

# ---------------------------------------------------------------- the first certificate

p2m_start_pod podweb web "127.0.0.1:$ECHO_HTTP" --tls-terminate --log-level debug
TLS=$T/podweb/tls
expect_eq 700 "$(stat -c %a "$TLS")" "DIR/tls mode"
expect_eq 600 "$(stat -c %a "$TLS/key.pem")" "DIR/tls/key.pem mode"
openssl pkey -in "$TLS/key.pem" -noout -text 2>/dev/null | grep -q 'NIST CURVE: P-256' || fail "key.pem is not EC P-256"
p2m_ok
expect_eq "$(openssl x509 -noout -fingerprint -sha256 -in "$T/state/ca.pem")" \
    "$(openssl x509 -noout -fingerprint -sha256 -in "$TLS/ca.pem")" "DIR/tls/ca.pem is the registrar's CA"
openssl verify -purpose sslserver -CAfile "$TLS/ca.pem" "$TLS/cert.pem" >"$OUT" 2>&1 || fail "cert.pem does not verify: $(cat "$OUT")"
p2m_ok
expect_match "DNS:web\\.$DOMAIN" "$(openssl x509 -noout -ext subjectAltName -in "$TLS/cert.pem")" "cert.pem's SAN"
openssl x509 -noout -pubkey -in "$TLS/cert.pem" >"$T/pub.cert"
openssl pkey -pubout -in "$TLS/key.pem" >"$T/pub.key"
cmp -s "$T/pub.cert" "$T/pub.key" || fail "cert.pem is not for key.pem"
p2m_ok

# No pre-connection before the certificate, and one TOTP step for both: the certificate request
# brings the session, every registration uses it.
issued=$(log_line podweb 'event=cert_issued label=web ')
registered=$(log_line podweb 'event=registered label=web ')
[[ -n $issued && -n $registered ]] && ((issued < registered)) ||
    fail "want cert_issued (line ${issued:-none}) before the first registration (line ${registered:-none})"
p2m_ok
expect_match 'event=session_new label=web .* via=certificate' "$(grep 'event=session_new' "$T/podweb.log")" "the session came with the certificate"
expect_eq 0 "$(p2m_log_count podweb 'event=registered label=web .* auth=totp')" "no registration spent a TOTP step"
expect_match "event=cert_issued label=web name=web\\.$DOMAIN serial=[0-9A-F]+ not_before=[0-9]+ not_after=[0-9]+" \
    "$(grep 'event=cert_issued' "$T/podweb.log")" "cert_issued line"
expect_match 'event=cert_renew_scheduled label=web at=[0-9]+ ' "$(grep 'event=cert_renew_scheduled' "$T/podweb.log")" \
    "cert_renew_scheduled line"
expect_match 'event=registered label=web .* protocol=https' "$(grep 'event=registered' "$T/podweb.log")" "registered as https"
expect_match '^[0-9]+$' "$(p2m_pod_json "$T/podweb" .cert_not_after)" "status: cert_not_after"

# ---------------------------------------------------------------- HTTPS through the pod's TLS

got=$(https_get web '/hello?x=1' -H 'X-Probe: 42')
expect_match $'^GET /hello\\?x=1 HTTP/1\\.1\r\n' "$got" "echo through TLS: request line"
expect_match $'\r\nHost: web\\.pipe2me\\.localhost:[0-9]+\r\n' "$got" "echo through TLS: Host header"
expect_match $'\r\nX-Probe: 42\r\n' "$got" "echo through TLS: our header"

p2m_consumer_port QW https web
s_client web "$QW" -alpn h2,http/1.1
expect_match "subject=CN ?= ?web\\.pipe2me\\.localhost" "$(cat "$OUT")" "s_client: the pod's certificate"
expect_match 'Verify return code: 0 \(ok\)' "$(cat "$OUT")" "s_client: verifies against DIR/tls/ca.pem"
expect_match 'ALPN protocol: http/1\.1' "$(cat "$OUT")" "s_client: h2 offered, http/1.1 chosen"
ver=$(https_get web /alpn --http2 -o /dev/null -w '%{http_version}')
expect_eq 1.1 "$ver" "curl --http2: the default --alpn gives HTTP/1.1"

# ---------------------------------------------------------------- 1 MiB through TLS

p2m_start_pod podbulk bulk "127.0.0.1:$ECHO_TCP" --tls-terminate --log-level debug
p2m_consumer_port QB https bulk
head -c $((1 << 20)) /dev/urandom >"$T/up.in"
timeout 60 socat -t 30 -T 60 - \
    "OPENSSL:127.0.0.1:$QB,cafile=$T/podbulk/tls/ca.pem,snihost=bulk.$DOMAIN,commonname=bulk.$DOMAIN" \
    <"$T/up.in" >"$T/up.out" 2>"$T/socat.err" || fail "socat through TLS failed: $(cat "$T/socat.err")"
cmp -s "$T/up.in" "$T/up.out" || fail "1 MiB through TLS: $(stat -c %s "$T/up.out") bytes came back, and differ"
p2m_ok
p2m_wait_until "the bulk pod logs the tunnel" grep -q "event=tunnel_close label=bulk .* bytes_in=$((1 << 20)) bytes_out=$((1 << 20))" \
    "$T/podbulk.log"

# ---------------------------------------------------------------- renewal while running

serial1=$(serial_of "$TLS/cert.pem")
p2m_wait_until -t 150 "the pod renews its 60-s certificate" serial_is_not "$TLS/cert.pem" "$serial1"
expect_match 'event=cert_requested label=web .*reason="two thirds of its lifetime passed"' \
    "$(grep 'event=cert_requested' "$T/podweb.log")" "renewal logged with its reason"
(($(p2m_log_count podweb 'event=cert_issued') >= 2)) || fail "want two cert_issued lines"
p2m_ok
# The new certificate is served (a renewal may come between the two reads: try again then).
for ((i = 0; i < 5; i++)); do
    want=$(serial_of "$TLS/cert.pem")
    s_client web "$QW"
    served=$(openssl x509 -noout -serial <"$OUT" 2>/dev/null | sed 's/^serial=//') || true
    [[ $served == "$want" ]] && break
done
expect_eq "$want" "$served" "the renewed certificate is the one served"
got=$(https_get web /after-renewal)
expect_match $'^GET /after-renewal HTTP/1\\.1\r\n' "$got" "echo after the renewal"

# ---------------------------------------------------------------- an expired certificate at start

stop_pod podweb
mkdir -p "$T/ca"
: >"$T/ca/index.txt"
echo 1000 >"$T/ca/serial"
cat >"$T/ca/ca.cnf" <<EOF
[ca]
default_ca = p2m
[p2m]
database = $T/ca/index.txt
new_certs_dir = $T/ca
serial = $T/ca/serial
default_md = sha256
policy = any
x509_extensions = ext
[any]
commonName = supplied
[ext]
subjectAltName = DNS:web.$DOMAIN
extendedKeyUsage = serverAuth
basicConstraints = CA:FALSE
EOF
openssl req -new -key "$TLS/key.pem" -subj "/CN=web.$DOMAIN" -out "$T/expired.csr" 2>/dev/null
openssl ca -batch -notext -config "$T/ca/ca.cnf" -cert "$T/state/ca.pem" -keyfile "$T/state/ca-key.pem" \
    -startdate 20200101000000Z -enddate 20200102000000Z -in "$T/expired.csr" -out "$T/expired.pem" >"$OUT" 2>&1 ||
    fail "openssl ca: $(cat "$OUT")"
! openssl x509 -checkend 0 -noout -in "$T/expired.pem" >/dev/null || fail "the crafted certificate has not expired"
p2m_ok
cp "$T/expired.pem" "$TLS/cert.pem"
expired_serial=$(serial_of "$TLS/cert.pem")
p2m_start_pod podweb web "127.0.0.1:$ECHO_HTTP" --tls-terminate --log-level debug
expect_match 'event=cert_unusable label=web .*reason="expired"' "$(grep 'event=cert_unusable' "$T/podweb.log")" \
    "the expired certificate is noticed"
serial_is_not "$TLS/cert.pem" "$expired_serial" || fail "the expired certificate is still in cert.pem"
openssl x509 -checkend 30 -noout -in "$TLS/cert.pem" >/dev/null || fail "cert.pem was not replaced by a valid one"
p2m_ok
got=$(https_get web /after-expired)
expect_match $'^GET /after-expired HTTP/1\\.1\r\n' "$got" "echo after the expired certificate was replaced"

# A certificate that is fine is loaded as it is (unless it reached its renewal point meanwhile).
stop_pod podweb
age=$(($(date +%s) - $(stat -c %Y "$TLS/cert.pem")))
loaded_before=$(p2m_log_count podweb 'event=cert_loaded')
p2m_start_pod podweb web "127.0.0.1:$ECHO_HTTP" --tls-terminate --log-level debug
if ((age < 25)); then
    expect_eq $((loaded_before + 1)) "$(p2m_log_count podweb 'event=cert_loaded label=web ')" "a fresh certificate is loaded at start"
else
    echo "e2e: cert.pem was ${age}s old at the restart: not checking cert_loaded"
fi

# Another pod's certificate (another name, another key) is replaced too.
stop_pod podweb
cp "$T/podbulk/tls/cert.pem" "$TLS/cert.pem"
p2m_start_pod podweb web "127.0.0.1:$ECHO_HTTP" --tls-terminate --log-level debug
expect_match 'event=cert_unusable label=web .*reason="not for our key"' "$(grep 'event=cert_unusable' "$T/podweb.log")" \
    "another pod's certificate is noticed"
expect_match "DNS:web\\.$DOMAIN" "$(openssl x509 -noout -ext subjectAltName -in "$TLS/cert.pem")" "cert.pem is web's again"

# ---------------------------------------------------------------- --protocol http

p2m_start_pod podplain plain "127.0.0.1:$ECHO_HTTP" --protocol http --log-level debug
expect_match 'event=registered label=plain .* protocol=http' "$(grep 'event=registered' "$T/podplain.log")" "registered as http"
[[ ! -e $T/podplain/tls ]] || fail "a pod without --tls-terminate made DIR/tls"
p2m_ok
loc=$(curl -sS --max-time 10 --connect-to ::127.0.0.1: -o /dev/null -w '%{http_code} %{redirect_url}' \
    "http://plain.$DOMAIN:$P2M_HTTP_PORT/hi?there=1")
expect_match "^307 http://plain\\.pipe2me\\.localhost:[0-9]+/hi\\?there=1$" "$loc" "the plain-HTTP listener redirects to the http service"
got=$(curl -sS -L --max-time 20 --connect-to ::127.0.0.1: "http://plain.$DOMAIN:$P2M_HTTP_PORT/hi?there=1")
expect_match $'^GET /hi\\?there=1 HTTP/1\\.1\r\n' "$got" "curl -L over plain HTTP reaches the echo"
code=$(curl -sS --max-time 10 --cacert "$T/state/ca.pem" --connect-to ::127.0.0.1: -o /dev/null -w '%{http_code}' \
    "https://plain.$DOMAIN:$P2M_HTTPS_PORT/")
expect_eq 503 "$code" "https:// never goes to an http service"

# ---------------------------------------------------------------- clean stop

for name in podweb podbulk podplain; do
    stop_pod "$name"
    expect_log_clean "$name" 'level=error'
    ! grep -qE 'PRIVATE KEY|BEGIN EC' "$T/$name.log" || fail "$name logged its key"
    p2m_ok
    expect_pod_secret_kept "$name"
done
expect_eq 0 "$(p2m_log_count podweb 'event=cert_failed')" "no certificate request failed"
