#!/usr/bin/env bash
# pipe2me-pod --direct-lan and --source end to end (issue 20, the pod's side; docs/PROTOCOL.md 3.10):
# real redis-server, registrar, relay, `pipe2me-pod test`'s echo services and pods that register
# from 127.0.0.20 (--source) and listen on 127.0.0.21 (--direct-lan).
#   - the pod says at start what its registration declares (started: source= direct_lan=
#     declares=); the registrar registers it and the relay takes its pre-connections from
#     127.0.0.20;
#   - --tls-terminate: the LAN listener serves TLS with the pod's certificate for LABEL.DOMAIN,
#     verified by curl --resolve with the registrar's CA, in front of the HTTP echo;
#   - without it (--protocol tcp): the local service's bytes, 300 KB each way unchanged, one
#     connection to the local service per accepted connection;
#   - none of it goes through the relay: its byte counters (p2m:stats:relay:r1) do not change;
#   - direct connections count against the pod's tunnel limit: beyond it they are closed at once,
#     and served again below it;
#   - a run file's direct_lan and source do the same, and SIGHUP moves the listener;
#   - a --direct-lan address already taken is a clear error at start (exit 2); SIGTERM closes the
#     listener.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat openssl jq ss cmp
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
DOMAIN=pipe2me.localhost
SRC=127.0.0.20
LAN=127.0.0.21
P2M_POOL=2 # each pod's --pool

# relay_stats: relay r1's counters in Redis, one FIELD VALUE per line, sorted.
relay_stats() { rcli HGETALL p2m:stats:relay:r1 | paste - - | sort; }
# cert_names FILE NAME: the certificate in FILE names NAME.
cert_names() { openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | grep -q "DNS:$2\(,\|$\)"; }
# lan_listening PORT: something listens on $LAN:PORT.
lan_listening() { [[ -n $(ss -Htln "( src $LAN and sport = :$1 )") ]]; }

# ---------------------------------------------------------------- setup

# shellcheck disable=SC2119 # p2m_start_system takes an optional argument
p2m_start_system
p2m_free_port ECHO_HTTP
p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP" --forward-tcp "$ECHO_TCP"
ECHO_PID=$P2M_BG_PID
p2m_wait_until "the echo services listen" p2m_listening "$ECHO_TCP"
for label in web tcp; do
    admin pod add "pod$label" --label "$label" -o "$T/pod$label.json" >/dev/null
done

# ---------------------------------------------------------------- TLS on the LAN listener

p2m_free_port LAN_TLS
p2m_start_pod -w both podweb web "127.0.0.1:$ECHO_HTTP" --tls-terminate --domain "$DOMAIN" \
    --source "$SRC" --direct-lan "$LAN:$LAN_TLS"
p2m_wait_until "the pod listens on $LAN:$LAN_TLS" lan_listening "$LAN_TLS"
p2m_wait_until "the pod has its certificate" p2m_log_has podweb 'event=cert_issued label=web'
expect_match "event=started .* label=web .* source=$SRC direct_lan=$LAN:$LAN_TLS direct_public=none declares=direct_lan( |$)" \
    "$(grep event=started "$T/podweb.log")" "started: what the registration declares"
p2m_log_has podweb "event=direct_listening label=web listen=$LAN:$LAN_TLS tls=yes forward=127.0.0.1:$ECHO_HTTP" ||
    fail "no direct_listening line"
p2m_ok
p2m_log_has podweb 'event=registered label=web' || fail "the pod did not register"
expect_eq "$SRC" "$(admin --json lease ls | jq -r '[.[] | select(.label == "web")][0].addr')" "the lease's address is --source"
p2m_ok

before=$(relay_stats)
for i in 1 2 3; do
    got=$(curl -sS --max-time 20 --interface "$SRC" --resolve "web.$DOMAIN:$LAN_TLS:$LAN" --cacert "$T/state/ca.pem" \
        -H "X-Direct: $i" "https://web.$DOMAIN:$LAN_TLS/direct$i") || fail "curl to the LAN listener failed"
    expect_match $'^GET /direct'"$i"$' HTTP/1\\.1\r\n' "$got" "LAN listener, TLS verified: request $i"
    expect_match $'\r\nX-Direct: '"$i"$'\r\n' "$got" "LAN listener, TLS verified: our header $i"
done
# The certificate the LAN listener shows is LABEL.DOMAIN's, signed by the registrar's CA.
echo | timeout 20 openssl s_client -connect "$LAN:$LAN_TLS" -servername "web.$DOMAIN" -CAfile "$T/state/ca.pem" \
    -verify_hostname "web.$DOMAIN" >"$OUT" 2>&1 || true
expect_match 'Verify return code: 0 \(ok\)' "$(cat "$OUT")" "s_client verifies web.$DOMAIN on the LAN listener"
p2m_wait_until "the pod logs 3 direct connections served" p2m_log_count_above podweb \
    "event=direct_close label=web lease=0 .* reason=.* bytes_in=[1-9]" 2
p2m_log_has podweb "event=direct_accept label=web listen=$LAN:$LAN_TLS peer=$SRC:[0-9]* fd=[0-9]* tls=yes" ||
    fail "no direct_accept from $SRC"
! p2m_log_has podweb event=tunnel_open || fail "a tunnel through the relay opened"
p2m_ok
expect_eq "$before" "$(relay_stats)" "the relay's byte counters after the LAN requests"

# A wrong name is not served as another: the certificate is LABEL.DOMAIN's only.
curl -sS --max-time 20 --resolve "other.$DOMAIN:$LAN_TLS:$LAN" --cacert "$T/state/ca.pem" \
    "https://other.$DOMAIN:$LAN_TLS/" >/dev/null 2>&1 && fail "curl accepted web's certificate for other.$DOMAIN"
p2m_ok

# ---------------------------------------------------------------- raw bytes without TLS

p2m_free_port LAN_TCP
p2m_start_pod -w pool podtcp tcp "127.0.0.1:$ECHO_TCP" --protocol tcp --source "$SRC" --direct-lan "$LAN:$LAN_TCP"
p2m_wait_until "the pod listens on $LAN:$LAN_TCP" lan_listening "$LAN_TCP"
expect_match "event=started .* label=tcp .* tls_terminate=no .* direct_lan=$LAN:$LAN_TCP direct_public=none declares=direct_lan" \
    "$(grep event=started "$T/podtcp.log")" "started: the tcp pod"
before=$(relay_stats)
head -c 300000 /dev/urandom >"$T/raw.in"
for i in 1 2 3; do
    timeout 20 socat -t 10 - "TCP:$LAN:$LAN_TCP" <"$T/raw.in" >"$T/raw.out" || fail "socat $i to the LAN listener failed"
    cmp -s "$T/raw.in" "$T/raw.out" || fail "300 KB through the LAN listener ($i): the echo differs"
    p2m_ok
done
p2m_wait_until "the pod logs 3 raw connections done" p2m_log_count_above podtcp \
    "event=direct_close label=tcp lease=0 .* reason=done bytes_in=300000 bytes_out=300000" 2
expect_eq 3 "$(p2m_log_count podtcp "event=direct_open label=tcp lease=0 .* forward=127.0.0.1:$ECHO_TCP")" \
    "one connection to the local service per accepted connection"
expect_eq 3 "$(p2m_log_count podtcp "event=direct_accept label=tcp .* tls=no")" "accepted connections"
expect_eq "$before" "$(relay_stats)" "the relay's byte counters after the raw LAN connections"

# ---------------------------------------------------------------- the tunnel limit

# With 100 descriptors the pod allows 6 tunnels (max_tunnels, the pool's budget too): connections
# held open beyond it are accepted and closed at once (direct_refused reason=limit), and once they
# end the listener serves again.
admin pod add podlim --label lim -o "$T/podlim.json" >/dev/null
p2m_free_port LAN_LIM
# shellcheck disable=SC2016 # the inner shell expands its arguments
p2m_bg podlim bash -c 'ulimit -n 100 && exec "$@"' _ "$POD_BIN" register --provision "$T/podlim.json" --label lim \
    --forward "127.0.0.1:$ECHO_TCP" --protocol tcp --cacert "$T/state/ca.pem" --state-dir "$T/podlim" --pool 1 \
    --source "$SRC" --direct-lan "$LAN:$LAN_LIM"
PODLIM_PID=$P2M_BG_PID
p2m_wait_until "the limited pod listens on $LAN:$LAN_LIM" lan_listening "$LAN_LIM"
[[ $(grep event=started "$T/podlim.log") =~ \ max_tunnels=([0-9]+)\  ]] || fail "no max_tunnels in podlim's started line"
MAX=${BASH_REMATCH[1]}
expect_eq 6 "$MAX" "max_tunnels with 100 descriptors"
held=()
for ((i = 0; i < MAX + 2; i++)); do
    exec {fd}<>"/dev/tcp/$LAN/$LAN_LIM" || fail "connection $i to the limited listener"
    held+=("$fd")
done
p2m_wait_until "the pod refuses beyond its limit" p2m_log_has podlim "event=direct_refused label=lim listen=$LAN:$LAN_LIM .* reason=limit"
accepted=$(p2m_log_count podlim "event=direct_accept label=lim")
((accepted >= 1 && accepted <= MAX)) || fail "$accepted connections accepted, want 1 to $MAX"
p2m_ok
for fd in "${held[@]}"; do exec {fd}>&-; done
tunnels_active_is() { [[ $(p2m_pod_json "$T/podlim" .tunnels.active) == 0 ]]; }
p2m_wait_until "the held connections end" tunnels_active_is
got=$(printf 'after the limit' | timeout 20 socat -t 5 - "TCP:$LAN:$LAN_LIM") || fail "socat after the limit"
expect_eq "after the limit" "$got" "the listener serves again below the limit"
p2m_stop podlim "$PODLIM_PID"

# --direct-public goes with it: the registration declares both.
p2m_start_pod -w none -o podpub podlim lim "127.0.0.1:$ECHO_TCP" --protocol tcp --source "$SRC" \
    --direct-lan "$LAN:$LAN_LIM" --direct-public "203.0.113.7:$LAN_LIM"
p2m_wait_until "the pod with --direct-public starts" p2m_log_has podpub event=started
expect_match "event=started .* direct_lan=$LAN:$LAN_LIM direct_public=203\.0\.113\.7:$LAN_LIM declares=direct_lan,direct_public( |$)" \
    "$(grep event=started "$T/podpub.log")" "started: both paths declared"
p2m_wait_until "the pod with --direct-public registers" p2m_log_has podpub 'event=registered label=lim'
p2m_stop podpub "$P2M_BG_PID"

# ---------------------------------------------------------------- a run file, and SIGHUP

# The run file's direct_lan (per service) and source (pod-wide); SIGHUP with another direct_lan
# drains the service on the old address and starts it on the new one.
admin pod add podrun --label run -o "$T/podrun.json" >/dev/null
p2m_free_port RUN1
p2m_free_port RUN2
run_file() {
    jq -n --arg prov "$T/podrun.json" --arg ca "$T/state/ca.pem" --arg dir "$T/runstate" --arg src "$SRC" \
        --arg fwd "127.0.0.1:$ECHO_TCP" --arg lan "$LAN:$1" \
        '{provision: $prov, cacert: $ca, state_dir: $dir, source: $src,
          services: [{label: "run", protocol: "tcp", forward: $fwd, pool: 1, direct_lan: $lan}]}' >"$T/run.json"
}
run_file "$RUN1"
p2m_bg podrun "$POD_BIN" run --config "$T/run.json"
PODRUN_PID=$P2M_BG_PID
p2m_wait_until "the run file's service listens on $LAN:$RUN1" lan_listening "$RUN1"
expect_eq "run file 1" "$(printf 'run file 1' | timeout 20 socat -t 5 - "TCP:$LAN:$RUN1")" "echo through the run file's listener"
run_file "$RUN2"
kill -HUP "$PODRUN_PID"
p2m_wait_until "after SIGHUP the service listens on $LAN:$RUN2" lan_listening "$RUN2"
p2m_wait_until "after SIGHUP nothing listens on $LAN:$RUN1" p2m_not_listening "$RUN1"
expect_eq "run file 2" "$(printf 'run file 2' | timeout 20 socat -t 5 - "TCP:$LAN:$RUN2")" "echo through the reloaded listener"
p2m_log_has podrun "event=reloaded .* kept=0 added=1 removed=1" || fail "SIGHUP did not replace the service"
p2m_ok
p2m_stop podrun "$PODRUN_PID"

# ---------------------------------------------------------------- a taken address, the stop

# Another pod on the same --direct-lan: a clear error before it registers, exit 2.
expect_status 2 timeout 30 "$POD_BIN" register --provision "$T/podtcp.json" --label tcp --forward "127.0.0.1:$ECHO_TCP" \
    --protocol tcp --cacert "$T/state/ca.pem" --state-dir "$T/podtcp2" --direct-lan "$LAN:$LAN_TCP"
expect_match "^pipe2me-pod: --direct-lan $LAN:$LAN_TCP: cannot listen: Address already in use$" "$(grep -v '^ts=' "$ERR")" \
    "a second pod on a taken --direct-lan: the error"
! grep -q event=started "$ERR" || fail "the second pod logged started before its listener failed"
p2m_ok

# Hostile values never start a pod.
for bad in "localhost:$LAN_TCP" "$LAN" "$LAN:0" "::1:$LAN_TCP" "0.0.0.0:$LAN_TCP"; do
    expect_status 2 "$POD_BIN" register --provision "$T/podtcp.json" --forward "127.0.0.1:$ECHO_TCP" --direct-lan "$bad"
    expect_match '^pipe2me-pod: --direct-lan: ' "$(cat "$ERR")" "--direct-lan $bad refused"
done
expect_status 2 "$POD_BIN" register --provision "$T/podtcp.json" --forward "127.0.0.1:$ECHO_TCP" --direct-public "203.0.113.7:443"
expect_match '^pipe2me-pod: --direct-public needs --direct-lan' "$(cat "$ERR")" "--direct-public alone refused"

for name in podweb podtcp; do
    pid_var=${name^^}_PID
    p2m_stop "$name" "${!pid_var}"
    p2m_log_has "$name" "event=direct_stopped label=" || fail "$name: no direct_stopped"
    p2m_ok
    expect_log_clean "$name" 'level=error'
    expect_pod_secret_kept "$name"
done
p2m_not_listening "$LAN_TLS" || fail "$LAN:$LAN_TLS still listens after the stop"
p2m_ok

# ---------------------------------------------------------------- the certificate's names

# A certificate without LABEL.direct.DOMAIN and LABEL.lan.DOMAIN (as a registrar older than direct
# paths issued; here signed with the registrar's CA by openssl) is unusable at the next start
# (reason names), and a new one, with the names, is requested.
expect_match "DNS:web\\.lan\\.$DOMAIN" "$(openssl x509 -in "$T/podweb/tls/cert.pem" -noout -ext subjectAltName)" \
    "the pod's certificate names web.lan.$DOMAIN"
openssl req -new -key "$T/podweb/tls/key.pem" -subj "/CN=web.$DOMAIN" -out "$T/old.csr" 2>"$ERR" || fail "openssl req: $(cat "$ERR")"
printf 'subjectAltName=DNS:web.%s\n' "$DOMAIN" >"$T/old.ext"
openssl x509 -req -in "$T/old.csr" -CA "$T/state/ca.pem" -CAkey "$T/state/ca-key.pem" -CAcreateserial -days 30 \
    -extfile "$T/old.ext" -out "$T/podweb/tls/cert.pem" 2>"$ERR" || fail "openssl x509: $(cat "$ERR")"
p2m_start_pod -w none -o podweb2 podweb web "127.0.0.1:$ECHO_HTTP" --tls-terminate --domain "$DOMAIN" \
    --source "$SRC" --direct-lan "$LAN:$LAN_TLS"
p2m_wait_until "the restarted pod asks for a certificate with the names" p2m_log_has podweb2 \
    'event=cert_requested label=web name=web.pipe2me.localhost reason="names"'
p2m_log_has podweb2 'event=cert_unusable label=web path=.* reason="names"' || fail "no cert_unusable reason=names"
p2m_wait_until "the new certificate names web.direct.$DOMAIN" cert_names "$T/podweb/tls/cert.pem" "web.direct.$DOMAIN"
p2m_stop podweb2 "$P2M_BG_PID"
p2m_kill "$ECHO_PID"
