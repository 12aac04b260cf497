#!/usr/bin/env bash
# Abuse (docs/PROTOCOL.md 3.6, docs/RELIABILITY.md "Abuse"), against the real registrar, relay and
# a private redis-server:
#   - a flood of consumer requests from 60 source addresses (127.0.0.0/8) cannot take the port
#     range: consumer ports stay within the per-label, per-address and share caps, the least
#     recently used are evicted (the relay closes their listeners), a pod still registers, and a
#     legitimate consumer arriving after the flood gets a port and is served through the tunnel;
#   - silent consumer connections take no pre-connection and are closed after
#     relay.first_byte_timeout;
#   - slowloris on the registrar: an unfinished request head (HTTP) and a TLS connection that never
#     says hello are both closed by the registrar.
# Timing: waits are bounded; nothing is asserted about how fast anything happens.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl oathtool jq socat ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay tools/pipe2me-admin
REGISTRAR_BIN=$P2M_BUILD_DIR/registrar/pipe2me-registrar
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay
DOMAIN=pipe2me.localhost
RANGE=64           # relay ports
PER_ADDR=2         # registrar.consumer_ports_per_addr
PER_LABEL=8        # registrar.consumer_ports_per_label
SHARE=25           # registrar.consumer_ports_share: 16 of 64 ports
FLOOD=60           # source addresses in the flood

totp() { printf 'TOTP username="%s", response="%s"' "$1" "$(oathtool --totp -b "$2")"; }
consumer_leases() { rcli --scan --pattern 'p2m:lease:*' | while read -r k; do rcli HGET "$k" kind; done | grep -c '^consumer$' || true; }
# redirect SRC LABEL: GET https://LABEL.DOMAIN/ from source address SRC; prints "CODE PORT".
redirect() {
    curl -4 -sS --max-time 10 --interface "$1" --cacert "$CA" -o /dev/null -w '%{http_code} %{redirect_url}' \
        -H "Host: $2.$DOMAIN:$P2M_HTTPS_PORT" "$BASE/" | sed -E 's|^([0-9]+) https://[^:]+:([0-9]+)/.*|\1 \2|'
}

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_free_port_range LO HI "$RANGE"
p2m_write_config "$(jq -nc --arg ports "$LO-$HI" --argjson a $PER_ADDR --argjson l $PER_LABEL --argjson s $SHARE \
    '{relay: {name: "r1", ports: $ports, first_byte_timeout: 2, max_conns_per_addr: 64},
      registrar: {consumer_ports: "per-address", consumer_ports_per_addr: $a, consumer_ports_per_label: $l, consumer_ports_share: $s,
                  auth_fail_limit: 100}}')"
CA=$T/state/ca.pem
BASE=https://$DOMAIN:$P2M_HTTPS_PORT
declare -A SECRET=()
for p in web other third; do
    expect_status 0 admin pod add "$p" --label "$p"
    SECRET[$p]=$(jq -er .secret "$OUT")
done
p2m_bg relay "$RELAY_BIN" -c "$P2M_CONFIG"
p2m_wait_until -t 30 "the relay heartbeat" p2m_redis_is "$LO-$HI" HGET p2m:relay:r1 ports
p2m_bg registrar "$REGISTRAR_BIN" -c "$P2M_CONFIG"
p2m_wait_until -t 30 "the registrar answers" test -s "$CA"
p2m_wait_until -t 30 "the registrar answers /cacert" curl -4 -fsS -o /dev/null --max-time 2 --cacert "$CA" "$BASE/cacert"

# One idle pre-connection per label, echoing what a consumer sends (socat + cat). The session
# credential of each pod registers the next ones.
declare -A SESSION=()
hold() { # LABEL NAME
    local auth port
    if [[ -n ${SESSION[$1]:-} ]]; then auth="Bearer ${SESSION[$1]}"; else auth=$(totp "$1" "${SECRET[$1]}"); fi
    curl -4 -sS --max-time 10 --cacert "$CA" -D "$T/reg.h" -o "$T/reg.b" -X PUT -H "Authorization: $auth" \
        "$BASE/register/$1" >/dev/null
    [[ -n ${SESSION[$1]:-} ]] || SESSION[$1]=$(tr -d '\r' <"$T/reg.h" | sed -n 's/^p2m-session: *//Ip')
    port=$(sed 's/.*://' "$T/reg.b")
    [[ $port =~ ^[0-9]+$ ]] || fail "registration of $1 failed: $(cat "$T/reg.h" "$T/reg.b")"
    p2m_bg "$2" socat "TCP4:127.0.0.1:$port" SYSTEM:cat
}
hold web hold-web1
hold other hold-other
hold third hold-third
p2m_wait_until -t 30 "web has an idle pre-connection" p2m_idle_is 1 web
p2m_wait_until -t 30 "other has an idle pre-connection" p2m_idle_is 1 other
p2m_wait_until -t 30 "third has an idle pre-connection" p2m_idle_is 1 third

# ---------------------------------------------------------------- flood from many addresses

for ((i = 2; i < FLOOD + 2; i++)); do
    got=$(redirect "127.0.0.$i" web)
    [[ $got =~ ^307\ [0-9]+$ ]] || fail "flood request from 127.0.0.$i: $got"
done
p2m_ok
n=$(rcli ZCARD p2m:cports:label:web)
((n <= PER_LABEL)) || fail "label web holds $n consumer ports, cap $PER_LABEL"
p2m_ok
n=$(consumer_leases)
((n <= PER_LABEL)) || fail "$n consumer leases after the flood, cap $PER_LABEL"
p2m_ok
ev=$(rcli HGET p2m:stats evictions)
((ev >= FLOOD - PER_LABEL)) || fail "evictions: $ev, want at least $((FLOOD - PER_LABEL))"
p2m_ok
# The relay follows the evictions: it listens on the consumer ports that live, not on the evicted.
live_ports=$(rcli ZRANGE p2m:cports 0 -1 | sort -n | paste -sd' ')
listening_consumers() {
    local p count=0
    for p in $(ss -Htln "( sport >= :$LO and sport <= :$HI )" | awk '{n = split($4, a, ":"); print a[n]}'); do
        [[ $(rcli HGET "p2m:lease:$p" kind) == consumer ]] && count=$((count + 1))
    done
    ((count == $(rcli ZCARD p2m:cports)))
}
p2m_wait_until -t 30 "the relay listens on the live consumer ports only ($live_ports)" listening_consumers
# Pods still find ports: the range is not exhausted.
hold web hold-web2
p2m_wait_until -t 30 "web registered a second pre-connection after the flood" p2m_idle_is 2 web

# A legitimate consumer after the flood is served.
got=$(redirect 127.0.0.1 web)
[[ $got =~ ^307\ ([0-9]+)$ ]] || fail "the legitimate consumer got $got"
Q=${BASH_REMATCH[1]}
p2m_ok
expect_eq "hello" "$(printf hello | socat -t 5 - "TCP4:127.0.0.1:$Q")" "the legitimate consumer's bytes come back through the tunnel"

# Per address: one address asking for three labels holds at most PER_ADDR ports.
for l in web other third; do
    got=$(redirect 127.0.0.100 "$l")
    [[ $got =~ ^307\ [0-9]+$ ]] || fail "127.0.0.100 for $l: $got"
done
expect_eq "$PER_ADDR" "$(rcli ZCARD p2m:cports:addr:127.0.0.100)" "127.0.0.100 holds $PER_ADDR consumer ports"
expect_eq 0 "$(rcli EXISTS p2m:consumer:web:127.0.0.100)" "its least recently used port (web) was evicted"
# The share: across labels and addresses, consumers never hold more than SHARE % of the range.
for ((i = 2; i < 40; i++)); do redirect "127.0.1.$i" other >/dev/null; redirect "127.0.2.$i" third >/dev/null; done
n=$(consumer_leases)
((n <= RANGE * SHARE / 100)) || fail "$n consumer leases, share cap $((RANGE * SHARE / 100))"
p2m_ok

# ---------------------------------------------------------------- silent consumers (relay)

got=$(redirect 127.0.0.1 third)
[[ $got =~ ^307\ ([0-9]+)$ ]] || fail "third: $got"
Q3=${BASH_REMATCH[1]}
silent=()
for i in 1 2 3 4 5; do
    p2m_bg "silent$i" socat -u "TCP4:127.0.0.1:$Q3" STDOUT
    silent+=("$P2M_BG_PID")
done
p2m_wait_until -t 30 "the silent consumers are closed by the first-byte timeout" \
    eval "[[ \$(grep -c 'event=consumer_close lease=$Q3 .*reason=first_byte_timeout' '$T/relay.log') -ge 5 ]]"
expect_eq 1 "$(rcli HGET p2m:idle:r1 third)" "the silent consumers took no pre-connection"
for pid in "${silent[@]}"; do p2m_kill "$pid"; done
expect_eq "ping" "$(printf ping | socat -t 5 - "TCP4:127.0.0.1:$Q3")" "a consumer that speaks is still served"

# ---------------------------------------------------------------- slowloris on the registrar

# held_open PORT PREFIX: connects to PORT, sends PREFIX (printf format) and keeps its side open
# for 45 s; succeeds when the server ends the connection within 40 s. Sets HELD_S.
held_open() {
    local fd sleeper rc=0 t0=$SECONDS
    exec {fd}< <(printf "$2"; exec sleep 45)
    sleeper=$!
    timeout 40 socat -t 1 - "TCP4:127.0.0.1:$1" <&"$fd" >/dev/null 2>&1 || rc=$?
    HELD_S=$((SECONDS - t0))
    kill "$sleeper" 2>/dev/null || true
    exec {fd}<&-
    ((rc != 124))
}
# An unfinished request head on the plain-HTTP listener: closed by the registrar.
held_open "$P2M_HTTP_PORT" 'GET / HTTP/1.1\r\nHost: pipe2me.localhost\r\n' ||
    fail "an unfinished HTTP request head was still open after 40 s"
p2m_ok
echo "abuse: unfinished HTTP head closed by the registrar after $HELD_S s"
# A TCP connection to HTTPS that never sends a ClientHello.
held_open "$P2M_HTTPS_PORT" '' || fail "a silent TLS connection was still open after 40 s"
p2m_ok
echo "abuse: silent TLS connection closed by the registrar after $HELD_S s"
# The registrar still answers.
expect_status 0 curl -4 -fsS -o /dev/null --max-time 5 --cacert "$CA" "$BASE/cacert"
