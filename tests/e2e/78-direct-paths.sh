#!/usr/bin/env bash
# The shortest path end to end (issue 20, docs/PROTOCOL.md 5): real redis-server, registrar,
# relay, knotd with a TSIG key (the registrar's dns section), and a real pipe2me-pod that registers
# from 127.0.0.20 (--source), listens on 127.0.0.21 (--direct-lan, TLS with its certificate in front
# of an HTTP echo) and declares 127.0.0.22 (--direct-public), where socat plays the router that
# forwards that port to the LAN listener.
#   - with registrar.direct.public_private off (the default) the loopback public path is never
#     checked nor used, and only the lan name is written; on, the registrar checks it over TLS and
#     writes web.direct.DOMAIN too (dig, with dns.ttl); the pod's certificate names both;
#   - a consumer from the pod's address gets a 307 to the lan name, resolves it with dig at the
#     test's DNS server, and `curl --resolve --cacert` completes a verified request to the pod with
#     no byte through the relay; one from 127.0.0.30 gets the direct name, the same way;
#   - that consumer coming back within retry_window gets the relay, which serves it;
#   - with the router's forward gone the check fails, the direct name goes, and a consumer from
#     elsewhere gets the relay; the lan name stays;
#   - an https request is never sent to an http URL, and an http one to this https-only label gets
#     https;
#   - the pod stopped, both names go.
# Every wait polls a condition.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat openssl jq ss dig knotd
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
ZONE=pipe2me.localhost
LABEL=web
LAN_NAME=$LABEL.lan.$ZONE
DIRECT_NAME=$LABEL.direct.$ZONE
TTL=7
SRC=127.0.0.20 LAN=127.0.0.21 PUB=127.0.0.22 ELSEWHERE=127.0.0.30
WILDCARD="300 127.0.0.1"
P2M_POOL=2

relay_stats() { rcli HGETALL p2m:stats:relay:r1 | paste - - | sort; }
relay_bytes_in() { rcli HGET p2m:stats:relay:r1 "$LABEL:bytes_in"; }
# follow SRC URL NAME: resolves URL's host with dig at knotd and fetches URL from SRC with curl
# --resolve and the registrar's CA (a verified request); sets GOT to the echo.
follow() {
    local src=$1 url=$2 host port addr
    [[ $url =~ ^https://([^:/]+):([0-9]+)/ ]] || fail "not an https URL with a port: $url"
    host=${BASH_REMATCH[1]} port=${BASH_REMATCH[2]}
    addr=$(p2m_dns_answer "$host" | awk 'NR == 1 {print $2}')
    [[ -n $addr ]] || fail "dig has no address for $host"
    GOT=$(curl -sS --max-time 20 --interface "$src" --resolve "$host:$port:$addr" --cacert "$P2M_CA" "$url") ||
        fail "curl $url (at $addr) from $src failed"
}
# sent SRC SCHEME PATH: a consumer's request for LABEL from SRC; sets CODE and LOC.
sent() {
    local port=$P2M_HTTPS_PORT
    [[ $2 == https ]] || port=$P2M_HTTP_PORT
    hreq --interface "$1" "$2://$LABEL.$ZONE:$port$3"
    expect_http 307 "$2 from $1"
    LOC=$(hdr location)
}

# ---------------------------------------------------------------- DNS, the system, the echo

p2m_knot_start "$ZONE" p2m-registrar hmac-sha256
EXTRA=$(jq -n --arg server "127.0.0.1:$P2M_DNS_PORT" --arg key "$T/tsig.key" --argjson ttl "$TTL" '{
    dns: {server: $server, zone: "pipe2me.localhost", tsig_key_file: $key, ttl: $ttl},
    registrar: {alive_window: 10, direct: {check_interval: 1, retry_window: 5}}}')
p2m_start_system "$EXTRA"
p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"

# ---------------------------------------------------------------- the pod, and the router's forward

p2m_free_port LAN_PORT
p2m_free_port PUB_PORT
p2m_bg router socat -d -d "TCP-LISTEN:$PUB_PORT,bind=$PUB,fork,reuseaddr" "TCP:$LAN:$LAN_PORT"
ROUTER_PID=$P2M_BG_PID
p2m_wait_until "the router's forward listens" p2m_listening "$PUB_PORT"
p2m_start_pod -w both podweb "$LABEL" "127.0.0.1:$ECHO_HTTP" --tls-terminate --domain "$ZONE" \
    --source "$SRC" --direct-lan "$LAN:$LAN_PORT" --direct-public "$PUB:$PUB_PORT"
p2m_wait_until "the pod has its certificate" p2m_log_has podweb "event=cert_issued label=$LABEL"
SANS=$(openssl x509 -in "$T/podweb/tls/cert.pem" -noout -ext subjectAltName)
for n in "$LABEL.$ZONE" "$LAN_NAME" "$DIRECT_NAME"; do
    expect_match "DNS:${n//./\\.}(,|$)" "$SANS" "the pod's certificate names $n"
done

p2m_wait_until "$LAN_NAME holds the LAN address, with dns.ttl" p2m_dns_answer_is "$LAN_NAME" "$TTL $LAN"
p2m_wait_until "a loopback public path is refused without a connection" p2m_log_has registrar \
    "event=direct_check label=$LABEL public=$PUB:$PUB_PORT result=fail reason=\"a loopback, private or link-local address"
! p2m_log_has router "accepting connection" || fail "the registrar connected to the loopback public path: $(cat "$T/router.log")"
expect_eq "$WILDCARD" "$(p2m_dns_answer "$DIRECT_NAME")" "no direct name for a loopback public path"
sent "$ELSEWHERE" https /private
expect_match "^https://${LABEL}\\.${ZONE//./\\.}:[0-9]+/private\$" "$(hdr location)" "elsewhere, the public path not allowed: the relay"
# A lab on one machine: the operator allows it.
p2m_stop registrar "$REGISTRAR_PID"
jq '.registrar.direct.public_private = true' "$P2M_CONFIG" >"$T/allow.json" && mv "$T/allow.json" "$P2M_CONFIG"
p2m_start_registrar
p2m_wait_until "$DIRECT_NAME holds the checked public address" p2m_dns_answer_is "$DIRECT_NAME" "$TTL $PUB"
expect_eq "$SRC" "$(rcli HGET "p2m:direct:$LABEL" src)" "the pod registered from --source"

# ---------------------------------------------------------------- the shortest paths, no relay byte

export P2M_HREQ_LOCATIONS=$T/https-locations
before=$(relay_stats)
sent "$SRC" https /lan1?x=1
expect_match "^https://${LAN_NAME//./\\.}:$LAN_PORT/lan1\\?x=1\$" "$LOC" "same network: the lan name"
follow "$SRC" "$LOC"
expect_match $'^GET /lan1\\?x=1 HTTP/1\\.1\r\n' "$GOT" "the pod's echo over the lan path"
sent "$ELSEWHERE" https /direct1
expect_match "^https://${DIRECT_NAME//./\\.}:$PUB_PORT/direct1\$" "$LOC" "elsewhere, the check passed: the direct name"
follow "$ELSEWHERE" "$LOC"
expect_match $'^GET /direct1 HTTP/1\\.1\r\n' "$GOT" "the pod's echo over the direct path"
p2m_wait_until "the pod logs both direct connections" p2m_log_count_above podweb \
    "event=direct_close label=$LABEL .*bytes_in=[1-9]" 1
expect_eq "$before" "$(relay_stats)" "the relay's counters: no byte through the relay"
! p2m_log_has podweb event=tunnel_open || fail "a tunnel through the relay opened"
p2m_ok

# ---------------------------------------------------------------- back within retry_window: the relay

sent "$ELSEWHERE" https /again
expect_match "^https://${LABEL}\\.${ZONE//./\\.}:[0-9]+/again\$" "$LOC" "the consumer came back: the relay"
hreq -L --interface "$ELSEWHERE" --connect-to ::127.0.0.1: "https://$LABEL.$ZONE:$P2M_HTTPS_PORT/again"
expect_http 200 "served through the relay"
expect_match "^GET /again HTTP/1.1" "$(head -n 1 "$T/resp.b")" "the pod's echo through the relay"
relay_counted() { [[ $(relay_bytes_in) =~ ^[1-9] ]]; }
p2m_wait_until "the relay counted the bytes" relay_counted

# ---------------------------------------------------------------- the router's forward gone

p2m_kill "$ROUTER_PID" # the router forwards no more
p2m_wait_until "the failed check is logged" p2m_log_has registrar "event=direct_check label=$LABEL public=$PUB:$PUB_PORT result=fail"
p2m_wait_until "$DIRECT_NAME is deleted" p2m_dns_answer_is "$DIRECT_NAME" "$WILDCARD"
sent 127.0.0.31 https /down
expect_match "^https://${LABEL}\\.${ZONE//./\\.}:[0-9]+/down\$" "$LOC" "elsewhere, the public path down: the relay"
expect_eq "$TTL $LAN" "$(p2m_dns_answer "$LAN_NAME")" "the lan name stays"
p2m_wait_until "$SRC's mark of the lan path lapses (retry_window)" p2m_redis_is 0 EXISTS "p2m:direct-sent:$LABEL:$SRC"
sent "$SRC" https /lan2
expect_match "^https://${LAN_NAME//./\\.}:$LAN_PORT/lan2\$" "$LOC" "same network: still the lan name"

# ---------------------------------------------------------------- never a downgrade

sent "$SRC" http /plain
expect_match "^https://" "$LOC" "an http request to an https-only label goes to https"
expect_eq "" "$(grep -v '^https://' "$P2M_HREQ_LOCATIONS" || true)" "no https request was sent to anything but https"

# ---------------------------------------------------------------- the pod gone: the names go

p2m_stop podweb "$PODWEB_PID"
p2m_wait_until "$LAN_NAME is deleted once the pod is gone" p2m_dns_answer_is "$LAN_NAME" "$WILDCARD"
expect_eq "$WILDCARD" "$(p2m_dns_answer "$DIRECT_NAME")" "$DIRECT_NAME stays deleted"
hreq --interface "$SRC" "https://$LABEL.$ZONE:$P2M_HTTPS_PORT/gone"
expect_no_match "lan\\.|direct\\." "$(hdr location)" "the pod gone: no short path (HTTP $CODE)"
expect_log_clean registrar
p2m_ok
