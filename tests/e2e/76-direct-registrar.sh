#!/usr/bin/env bash
# The registrar's side of direct paths (issue 20, PROTOCOL 5), with a real knotd on a loopback
# port and a TSIG key: a pod (curl by hand, from 127.0.0.20) registers with direct_lan and
# direct_public while openssl s_server serves the public address with the pod's certificate. The
# registrar checks it over TLS and writes LABEL.lan.DOMAIN and LABEL.direct.DOMAIN by RFC 2136,
# with dns.ttl (dig); a consumer from the pod's address is sent to the lan name, one from elsewhere
# to the direct name, one that comes back within retry_window to the relay, and every one to the
# relay once the public listener is down; http gets the http service's lan path as http, https is
# never sent to http. The names go when the pod is disabled and when it stops registering; a
# registrar restart puts back what the zone lost; a second registrar without a dns section sends
# nobody to a direct path and checks nothing. Every wait polls a condition.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require knotd dig openssl curl oathtool ss jq python3
p2m_require_built tests/tools/p2m-dnsupd
UPD=$P2M_BUILD_DIR/tests/tools/p2m-dnsupd
ZONE=pipe2me.localhost
LABEL=web
LAN_NAME=$LABEL.lan.$ZONE
DIRECT_NAME=$LABEL.direct.$ZONE
TTL=7
POD_ADDR=127.0.0.20 # where the pod registers from, and the same-network consumer
ELSEWHERE=127.0.0.30

answer() { p2m_dns_answer "$1"; }
answer_is() { p2m_dns_answer_is "$@"; }
# The zone's wildcard answers a name without records of its own (see p2m/dnsupd.h).
WILDCARD="300 127.0.0.1"

# consumer SRC SCHEME PATH: a consumer's request for LABEL from SRC; sets CODE and LOC.
consumer() {
    local port=$P2M_HTTPS_PORT
    [[ $2 == https ]] || port=$P2M_HTTP_PORT
    hreq --interface "$1" "$2://$LABEL.$ZONE:$port$3"
    LOC=$(hdr location)
}
# expect_sent SRC SCHEME WANT_RE DESC: a 307 whose Location matches WANT_RE.
expect_sent() {
    consumer "$1" "$2" /path?q=1
    expect_http 307 "$4"
    expect_match "$3" "$LOC" "$4"
}
RELAY_RE="^https://$LABEL\\.$ZONE:[0-9]+/path\\?q=1\$"

# ---------------------------------------------------------------- knotd with a zone and a key

p2m_knot_start "$ZONE" p2m-registrar hmac-sha256
DNS_PORT=$P2M_DNS_PORT
SECRET=$P2M_TSIG_SECRET

# ---------------------------------------------------------------- the system, with dns

p2m_free_port LAN_PORT
p2m_free_port LAN_HTTP_PORT
p2m_free_port PUB_PORT
EXTRA=$(jq -n --arg server "127.0.0.1:$DNS_PORT" --arg key "$T/tsig.key" --argjson ttl "$TTL" '{
    dns: {server: $server, zone: "pipe2me.localhost", tsig_key_file: $key, ttl: $ttl},
    registrar: {alive_window: 10, direct: {check_interval: 1, retry_window: 5, public_private: true}}}')
p2m_start_system "$EXTRA"
p2m_wait_until "the checker started" p2m_log_has registrar "event=direct_started check_interval=1 dns=$ZONE"

# A key file others may read stops the registrar at start, naming the file.
cp "$T/tsig.key" "$T/open.key"
chmod 644 "$T/open.key"
jq --arg k "$T/open.key" '.dns.tsig_key_file = $k' "$P2M_CONFIG" >"$T/open.json"
expect_status 2 "$P2M_BUILD_DIR/registrar/pipe2me-registrar" -c "$T/open.json" --check-config
expect_file_one_line "$ERR" "dns.tsig_key_file: .*open.key.*mode 0644"
! grep -qF -- "$SECRET" "$ERR" "$OUT" || fail "the TSIG secret appears in the output"
p2m_ok

p2m_add_pod pod1 "$LABEL"
BODY=$(jq -cn --arg lan "127.0.0.21:$LAN_PORT" --arg pub "127.0.0.22:$PUB_PORT" '{direct_lan: $lan, direct_public: $pub}')
BODY_HTTP=$(jq -cn --arg lan "127.0.0.21:$LAN_HTTP_PORT" '{protocol: "http", direct_lan: $lan}')

# register_totp: a TOTP registration of the https service from the pod's address; sets SESSION.
register_totp() {
    p2m_totp_fresh pod1
    p2m_reg -s "$POD_ADDR" -b "$BODY" "$LABEL" "$(p2m_totp_auth pod1 "$CODE_")"
    expect_http 200 "a TOTP registration with direct paths"
    SESSION=$(hdr p2m-session)
    expect_match '^[A-Za-z0-9._~+/=-]{16,128}$' "$SESSION" "the registration returns P2M-Session"
}
register_totp

# The pod's certificate (PROTOCOL 4), served on the public address by openssl s_server.
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$T/pod.key" -out "$T/pod.csr" \
    -subj "/CN=$LABEL.$ZONE" 2>"$T/openssl.err" || fail "openssl req: $(cat "$T/openssl.err")"
hreq -X POST -H "Authorization: Bearer $SESSION" -H 'Content-Type: application/pkcs10' --data-binary "@$T/pod.csr" \
    "https://$ZONE:$P2M_HTTPS_PORT/certificate/$LABEL"
expect_http 200 "the pod's certificate"
body >"$T/pod.pem"
expect_match "DNS:$DIRECT_NAME" "$(openssl x509 -in "$T/pod.pem" -noout -ext subjectAltName)" "the certificate names the direct name"
expect_match "DNS:$LAN_NAME" "$(openssl x509 -in "$T/pod.pem" -noout -ext subjectAltName)" "and the lan name"

start_public() {
    p2m_bg s_server openssl s_server -accept "127.0.0.22:$PUB_PORT" -cert "$T/pod.pem" -key "$T/pod.key" -www -quiet
    S_SERVER_PID=$P2M_BG_PID
    p2m_wait_until "the public listener listens" p2m_listening "$PUB_PORT"
}
start_public

# The pod: a registration of each service every 2 s with its session, as a pod refilling its pool.
start_pod() {
    cat >"$T/pod.sh" <<POD_EOF
while :; do
    for b in '$BODY' '$BODY_HTTP'; do
        curl -4 -sS --max-time 5 --cacert "$P2M_CA" --interface $POD_ADDR -o /dev/null -w '%{http_code}\\n' -X PUT \\
            -H "Authorization: Bearer $SESSION" -H 'Content-Type: application/json' --data-binary "\$b" \\
            "https://$ZONE:$P2M_HTTPS_PORT/register/$LABEL" || true
    done
    sleep 2
done
POD_EOF
    p2m_bg pod bash "$T/pod.sh"
    POD_PID=$P2M_BG_PID
}
start_pod

# ---------------------------------------------------------------- names in DNS, with dns.ttl

p2m_wait_until "$LAN_NAME holds the lan address" answer_is "$LAN_NAME" "$TTL 127.0.0.21"
p2m_wait_until "$DIRECT_NAME holds the verified public address" answer_is "$DIRECT_NAME" "$TTL 127.0.0.22"
expect_eq "$POD_ADDR" "$(rcli HGET "p2m:direct:$LABEL" src)" "Redis keeps the registering address"
expect_eq "127.0.0.22:$PUB_PORT" "$(rcli GET "p2m:direct-ok:$LABEL")" "the public path is marked verified"
TTL_LEFT=$(rcli TTL "p2m:direct:$LABEL")
((TTL_LEFT > 0 && TTL_LEFT <= 10)) || fail "p2m:direct:$LABEL has TTL $TTL_LEFT, want 1..10 (alive_window)"
p2m_ok
expect_match "event=direct_check label=$LABEL public=127.0.0.22:$PUB_PORT result=ok" "$(cat "$T/registrar.log")" "the check is logged"

# The direct name with the pod's certificate verifies against the CA: what a consumer sent there gets.
expect_status 0 curl -sS --max-time 5 --cacert "$P2M_CA" --resolve "$DIRECT_NAME:$PUB_PORT:127.0.0.22" -o /dev/null \
    "https://$DIRECT_NAME:$PUB_PORT/"

# ---------------------------------------------------------------- redirects

export P2M_HREQ_LOCATIONS=$T/https-locations

expect_sent "$POD_ADDR" https "^https://$LAN_NAME:$LAN_PORT/path\\?q=1\$" "https, same network: the lan name"
expect_sent "$POD_ADDR" http "^http://$LAN_NAME:$LAN_HTTP_PORT/path\\?q=1\$" "http, same network: the http service's lan path, as http"
expect_sent "$ELSEWHERE" https "^https://$DIRECT_NAME:$PUB_PORT/path\\?q=1\$" "https, elsewhere: the direct name"
expect_sent "$ELSEWHERE" https "$RELAY_RE" "https, elsewhere, back within retry_window: the relay"
expect_sent 127.0.0.31 http "^https://$DIRECT_NAME:$PUB_PORT/path\\?q=1\$" "http, elsewhere: the https direct path (no http one)"
expect_eq "" "$(grep -h '^http:' "$P2M_HREQ_LOCATIONS" || true)" "no https request was sent to http"
p2m_wait_until "the retry mark lapses after retry_window" p2m_redis_is 0 EXISTS "p2m:direct-sent:$LABEL:$ELSEWHERE"
expect_sent "$ELSEWHERE" https "^https://$DIRECT_NAME:$PUB_PORT/" "after retry_window: the direct name again"

# ---------------------------------------------------------------- a registrar restart reconciles

p2m_stop registrar "$REGISTRAR_PID"
# What the zone lost or gained while the registrar was away: the lan name points elsewhere.
expect_status 0 "$UPD" "127.0.0.1:$DNS_PORT" "$ZONE" "$T/tsig.key" replace "$LAN_NAME" 60 127.0.0.99
expect_eq "60 127.0.0.99" "$(answer "$LAN_NAME")" "the zone changed behind the registrar's back"
p2m_start_registrar
p2m_wait_until "the restarted registrar puts the lan name back" answer_is "$LAN_NAME" "$TTL 127.0.0.21"
expect_eq "$TTL 127.0.0.22" "$(answer "$DIRECT_NAME")" "the direct name is as it was"
p2m_wait_until "the restart logged the reconciling update" p2m_log_has registrar "event=dns_update name=$LAN_NAME addr=127.0.0.21 was=127.0.0.99 ttl=$TTL reconcile=yes"
expect_eq 127.0.0.21 "$(rcli HGET p2m:dns:names "$LAN_NAME")" "Redis remembers what was written"

# ---------------------------------------------------------------- a failed check stops the direct path

# In its place a listener that accepts and never says a word: the handshake has one deadline as a
# whole (DIRECT_IO_MS, 3 s), and the check fails by it rather than waiting on each read.
p2m_kill "$S_SERVER_PID"
p2m_bg silent python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.22", int(sys.argv[1]))); s.listen(16); s.settimeout(1)
held, end = [], time.monotonic() + 120
while time.monotonic() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
' "$PUB_PORT"
SILENT_PID=$P2M_BG_PID
p2m_wait_until "the silent listener listens" p2m_listening "$PUB_PORT"
p2m_wait_until "the failed check is logged" p2m_log_has registrar "event=direct_check label=$LABEL public=127.0.0.22:$PUB_PORT result=fail reason=\"TLS handshake: not done within 3000 ms\""
p2m_kill "$SILENT_PID"
p2m_wait_until "the verified mark is gone" p2m_redis_is 0 EXISTS "p2m:direct-ok:$LABEL"
p2m_wait_until "$DIRECT_NAME is deleted" answer_is "$DIRECT_NAME" "$WILDCARD"
expect_sent 127.0.0.32 https "$RELAY_RE" "elsewhere, the public listener down: the relay"
expect_eq "$TTL 127.0.0.21" "$(answer "$LAN_NAME")" "the lan name stays"
start_public
p2m_wait_until "a passing check brings the direct name back" answer_is "$DIRECT_NAME" "$TTL 127.0.0.22"

# ---------------------------------------------------------------- a disabled pod loses its names

expect_status 0 admin pod disable pod1
p2m_wait_until "$LAN_NAME is deleted once the pod is disabled" answer_is "$LAN_NAME" "$WILDCARD"
p2m_wait_until "$DIRECT_NAME too" answer_is "$DIRECT_NAME" "$WILDCARD"
consumer 127.0.0.33 https /path
expect_no_match "lan\\.|direct\\." "$LOC" "a disabled pod's consumers are not sent to a direct path (HTTP $CODE)"
expect_status 0 admin pod enable pod1
p2m_term pod "$POD_PID" # its session died with the disable
register_totp
start_pod
p2m_wait_until "enabled and registering again: $LAN_NAME is back" answer_is "$LAN_NAME" "$TTL 127.0.0.21"

# ---------------------------------------------------------------- a pod that stops registering

p2m_term pod "$POD_PID"
p2m_wait_until "the direct paths lapse after alive_window" p2m_redis_is 0 EXISTS "p2m:direct:$LABEL"
p2m_wait_until "$LAN_NAME is deleted once the pod is gone" answer_is "$LAN_NAME" "$WILDCARD"
p2m_wait_until "$DIRECT_NAME too" answer_is "$DIRECT_NAME" "$WILDCARD"
p2m_wait_until "nothing is left for the checker" p2m_redis_is 0 SCARD p2m:directs
expect_eq "" "$(rcli HKEYS p2m:dns:names)" "no name is remembered"

# A registration without the keys withdraws the paths at once.
p2m_totp_fresh pod1
p2m_reg -s "$POD_ADDR" -b "$BODY" "$LABEL" "$(p2m_totp_auth pod1 "$CODE_")"
expect_http 200 "registered with paths"
SESSION=$(hdr p2m-session)
expect_eq 1 "$(rcli EXISTS "p2m:direct:$LABEL")" "the paths are recorded"
p2m_reg -s "$POD_ADDR" -b '{}' "$LABEL" "Bearer $SESSION"
expect_http 200 "registered without paths"
p2m_wait_until "a registration without paths removes them" p2m_redis_is 0 EXISTS "p2m:direct:$LABEL"

# ---------------------------------------------------------------- a registrar without dns

# A second registrar on the same Redis without a dns section: it records paths, but sends nobody
# to them and runs no checker; the first one still keeps the names and redirects.
p2m_free_port HTTPS2
p2m_free_port HTTP2
p2m_free_port METRICS2
jq --arg h "127.0.0.1:$HTTPS2" --arg p "127.0.0.1:$HTTP2" --arg m "127.0.0.1:$METRICS2" \
    'del(.dns) | .registrar.https = $h | .registrar.http = $p | .registrar.metrics_listen = $m | .registrar.name = "nodns"' \
    "$P2M_CONFIG" >"$T/nodns.json"
REGISTRAR1_PID=$REGISTRAR_PID
p2m_start_registrar "$T/nodns.json" nodns
NODNS_PID=$REGISTRAR_PID
p2m_wait_until "the registrar without dns starts, without a checker" p2m_log_has nodns "event=direct_started check_interval=1 dns=off"
p2m_reg -s "$POD_ADDR" -b "$BODY" "$LABEL" "Bearer $SESSION"
expect_http 200 "registered with paths again"
p2m_wait_until "the registrar with dns writes the lan name again" answer_is "$LAN_NAME" "$TTL 127.0.0.21"
p2m_wait_until "and the direct name" answer_is "$DIRECT_NAME" "$TTL 127.0.0.22"
hreq --interface "$POD_ADDR" --connect-to "::127.0.0.1:$HTTPS2" "https://$LABEL.$ZONE:$HTTPS2/path"
expect_http 307 "the registrar without dns answers a same-network consumer"
expect_match "^https://$LABEL\\.$ZONE:[0-9]+/path\$" "$(hdr location)" "without dns: the relay, not the lan name"
hreq --interface "$ELSEWHERE" --connect-to "::127.0.0.1:$HTTPS2" "https://$LABEL.$ZONE:$HTTPS2/path"
expect_match "^https://$LABEL\\.$ZONE:[0-9]+/path\$" "$(hdr location)" "without dns: the relay, not the direct name"
expect_sent "$POD_ADDR" https "^https://$LAN_NAME:$LAN_PORT/" "the registrar with dns still sends it to the lan name"
expect_eq 0 "$(p2m_log_count nodns 'event=direct_check\|event=dns_update\|event=redirect_direct')" "the registrar without dns neither checks nor writes"
p2m_stop nodns "$NODNS_PID"

# ---------------------------------------------------------------- logs

for code in "${P2M_CODES[@]}"; do
    ! grep -qF -- "response=\"$code\"" "$T/registrar.log" || fail "a TOTP code appears in registrar.log"
done
! grep -qF -- "$SECRET" "$T/registrar.log" || fail "the TSIG secret appears in registrar.log"
p2m_ok
expect_log_clean registrar
expect_log_clean nodns
p2m_stop registrar "$REGISTRAR1_PID"
p2m_ok
