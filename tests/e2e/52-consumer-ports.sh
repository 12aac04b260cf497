#!/usr/bin/env bash
# A consumer port per service, for the service's life (registrar.consumer_ports "per-service", the
# default; PROTOCOL 3.6): every consumer of the label, from any address, is sent to the same port,
# which outlives consumer_ttl, a kill -9 and restart of the relay, of the registrar and of the pod,
# and the pod being disabled; it ends with the label. Real registrar, relay, redis-server and a pod
# with --tls-terminate in front of `pipe2me-pod test`'s HTTP echo; consumers are curl.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
CONSUMER_TTL=2
P2M_POOL=2

p2m_free_port_range LO HI 64
p2m_start_system "{\"relay\": {\"ports\": \"$LO-$HI\"}, \"registrar\": {\"consumer_ttl\": $CONSUMER_TTL}}"
expect_eq null "$(jq .registrar.consumer_ports "$P2M_CONFIG")" "the test runs with the default"
admin pod add demo --label demo -o "$T/demo.json" >/dev/null
p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"
p2m_start_pod demo demo "127.0.0.1:$ECHO_HTTP" --tls-terminate

# q_from ADDR: the port of the 307 the registrar sends ADDR for https://demo.DOMAIN/ (a check).
q_from() {
    local got
    got=$(curl -sS --max-time 10 --cacert "$P2M_CA" --interface "$1" -o /dev/null -w '%{http_code} %{redirect_url}' \
        "https://demo.pipe2me.localhost:$P2M_HTTPS_PORT/x") || fail "curl from $1 could not ask the registrar"
    [[ $got =~ ^307\ https://demo\.pipe2me\.localhost:([0-9]+)/x$ ]] || fail "redirect for $1: got $(p2m_show "$got")"
    Q_GOT=${BASH_REMATCH[1]}
    p2m_ok
}
# served_on PORT ADDR: a request from ADDR straight to the port gets the pod's echo (a check).
served_on() {
    hreq --interface "$2" "https://demo.pipe2me.localhost:$1/on-$1-from-$2"
    expect_http 200 "a consumer from $2 on port $1"
    expect_match "^GET /on-$1-from-$2 HTTP/1.1" "$(head -n 1 "$T/resp.b")" "the pod's echo"
}
expect_service_port() { # WHAT: the registrar still sends every address to $Q, and it serves
    q_from 127.0.0.1
    expect_eq "$Q" "$Q_GOT" "$1: the port for 127.0.0.1"
    q_from 127.0.0.7
    expect_eq "$Q" "$Q_GOT" "$1: the port for 127.0.0.7"
    p2m_wait_until "$1: the relay listens on $Q" p2m_listening "$Q"
    served_on "$Q" 127.0.0.7
}

# ---------------------------------------------------------------- one port, every address

q_from 127.0.0.1
Q=$Q_GOT
((Q >= LO && Q <= HI)) || fail "Q=$Q outside the relay's range $LO-$HI"
expect_eq "$Q" "$(rcli GET p2m:cport:demo)" "p2m:cport:demo names the port"
expect_eq "consumer|demo|*|bound" "$(rcli HMGET "p2m:lease:$Q" kind service addr state | paste -sd'|')" "the service's lease"
expect_eq -1 "$(rcli TTL "p2m:lease:$Q")" "a bound service port has no TTL"
expect_eq -1 "$(rcli TTL p2m:cport:demo)" "nor has its name"
expect_eq 1 "$(rcli SISMEMBER p2m:cports:service "$Q")" "p2m:cports:service holds it"
served_on "$Q" 127.0.0.1
for a in 127.0.0.2 127.0.0.3 127.0.0.4; do
    q_from "$a"
    expect_eq "$Q" "$Q_GOT" "the same port for $a"
    served_on "$Q" "$a"
done
expect_eq 0 "$(rcli --scan --pattern 'p2m:consumer:*' | wc -l)" "no per-address map"

# ---------------------------------------------------------------- it outlives consumer_ttl

sleep $((3 * CONSUMER_TTL + 1))
p2m_listening "$Q" || fail "the relay stopped listening on $Q after $((3 * CONSUMER_TTL + 1)) s without a consumer"
served_on "$Q" 127.0.0.5
expect_service_port "after three consumer_ttl"

# ---------------------------------------------------------------- restarts

kill -KILL "$RELAY_PID"
wait "$RELAY_PID" 2>/dev/null || true
p2m_forget "$RELAY_PID"
p2m_start_relay
p2m_wait_until "the pod refills its pool on the restarted relay" p2m_redis_is "$P2M_POOL" HGET p2m:idle:r1 demo
expect_service_port "after kill -9 of the relay"

kill -KILL "$REGISTRAR_PID"
wait "$REGISTRAR_PID" 2>/dev/null || true
p2m_forget "$REGISTRAR_PID"
p2m_start_registrar
p2m_wait_until "the registrar answers again" p2m_registrar_healthy
expect_service_port "after kill -9 of the registrar"

kill -KILL "$DEMO_PID"
wait "$DEMO_PID" 2>/dev/null || true
p2m_forget "$DEMO_PID"
rm -f -- "$T/demo/status.json"
p2m_start_pod demo demo "127.0.0.1:$ECHO_HTTP" --tls-terminate
expect_service_port "after kill -9 of the pod"

# Disabled, the pod's pre-connections end but the label is still its own: the port stays.
expect_status 0 admin pod disable demo
p2m_wait_until "the disabled pod's pre-connections end" p2m_redis_is "" HGET p2m:idle:r1 demo
expect_eq "$Q" "$(rcli GET p2m:cport:demo)" "a disabled pod's service keeps its port"
p2m_listening "$Q" || fail "the relay stopped listening on $Q when the pod was disabled"
p2m_ok
expect_status 0 admin pod enable demo
p2m_wait_until "the enabled pod fills its pool again" p2m_redis_is "$P2M_POOL" HGET p2m:idle:r1 demo
expect_service_port "after disable and enable"

# ---------------------------------------------------------------- it ends with the label

expect_status 0 admin label rm demo
p2m_wait_until "the relay stops listening on $Q" p2m_not_listening "$Q"
expect_eq 0 "$(rcli EXISTS p2m:cport:demo)" "the label's removal forgets its port"
expect_eq 0 "$(rcli EXISTS "p2m:lease:$Q")" "and ends its lease"
expect_eq 0 "$(rcli SISMEMBER p2m:cports:service "$Q")" "and takes it out of p2m:cports:service"
hreq "https://demo.pipe2me.localhost:$P2M_HTTPS_PORT/x"
expect_http 404 "the label is gone"
