#!/usr/bin/env bash
# Draining a relay (pipe2me-admin relay drain; PROTOCOL 3.9) takes it out with nothing cut. Two
# relays r1 and r2 (disjoint ranges) on one Redis, a registrar, and a pod with --tls-terminate in
# front of `pipe2me-pod test`'s HTTP echo. While consumers keep asking the registrar (curl -L
# through its 307, two loops) and one slow upload runs through a tunnel on the label's relay, that
# relay is drained: every request is served, the upload comes back byte for byte, the consumers
# move to the other relay, and `relay ls --json` shows the drained one reach 0 leases, idle
# pre-connections and tunnels. It is then stopped (SIGTERM) and the label is served on the other
# one; relay undrain puts it back in the ranking (drained in turn, the other relay gives its pod
# back to it, without traffic). The refusals: an unknown relay, a relay that is down (--force
# marks it anyway), --force where it does not apply.
# shellcheck disable=SC2119 # p2m_start_redis and p2m_start_registrar take optional arguments
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss cmp
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_POOL=3
CONSUMER_TTL=4 # the moved consumer port's lease expires this long after the move

p2m_start_redis
p2m_free_port_range LO1 HI1 16
p2m_free_port_range LO2 HI2 16
p2m_write_config "{\"relay\": {\"name\": \"r1\", \"ports\": \"$LO1-$HI1\", \"wait_timeout\": 5},
    \"registrar\": {\"consumer_ttl\": $CONSUMER_TTL}}"
jq --arg p "$LO2-$HI2" '.relay.name = "r2" | .relay.ports = $p' "$P2M_CONFIG" >"$T/r2.json"
cp "$P2M_CONFIG" "$T/r1.json"
p2m_start_registrar
p2m_start_relay "$T/r1.json" r1
R1_PID=$RELAY_PID
p2m_start_relay "$T/r2.json" r2
R2_PID=$RELAY_PID
p2m_wait_until -t 60 "the registrar wrote its CA" test -s "$T/state/ca.pem"
p2m_wait_until -t 60 "the registrar sees the relays" p2m_registrar_healthy

# ---------------------------------------------------------------- relay ls, and the refusals

OUT=$T/ls.json
admin --json relay ls >"$OUT" || fail "relay ls --json failed"
expect_eq "r1 r2" "$(json '[.[].name] | join(" ")')" "relay ls names both relays"
expect_eq "$LO1-$HI1 false 0" "$(json '.[0] | "\(.ports) \(.draining) \(.tunnels)"')" "r1's row"
expect_eq 127.0.0.1 "$(json '.[1].address')" "r2's address"
admin relay ls | grep -q '^NAME  *ADDRESS  *PORTS  *STARTED  *LEASES  *IDLE  *TUNNELS  *DRAINING$' ||
    fail "relay ls: no header line"$'\n'"$(admin relay ls)"
p2m_ok

# refused (exit 2, one line, nothing changed)
refused() { # WANT ARGS...: admin ARGS exits 2 with WANT in its one line
    local want=$1 rc=0 err
    shift
    err=$(admin "$@" 2>&1 >/dev/null) || rc=$?
    expect_eq 2 "$rc" "admin $* exit status"
    expect_match "^pipe2me-admin: .*$want" "$err" "admin $*"
    expect_eq 1 "$(printf '%s\n' "$err" | wc -l)" "admin $*: one line"
}
refused "unknown relay nosuch" relay drain nosuch
refused "unknown relay nosuch" relay undrain nosuch
refused "invalid relay name" relay drain 'bad name'
refused "option --force does not apply" relay ls --force
refused "missing argument" relay drain
expect_eq 0 "$(rcli EXISTS p2m:draining)" "the refusals marked nothing"
# --force marks a name with no heartbeat (a relay that is down), and undrain --force clears it
admin relay drain ghost --force >/dev/null || fail "relay drain ghost --force"
expect_eq 1 "$(rcli SISMEMBER p2m:draining ghost)" "ghost is marked"
admin relay undrain ghost --force >/dev/null || fail "relay undrain ghost --force"
expect_eq 0 "$(rcli EXISTS p2m:draining)" "and unmarked"

# ---------------------------------------------------------------- the pod, its relay

p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"
p2m_start_pod demo demo "127.0.0.1:$ECHO_HTTP" --tls-terminate

p2m_consumer_port Q https demo
H=$(rcli HGET "p2m:lease:$Q" relay)
case $H in
r1) O=r2 H_PID=$R1_PID O_PID=$R2_PID ;;
r2) O=r1 H_PID=$R2_PID O_PID=$R1_PID ;;
*) fail "the consumer port $Q names relay $(p2m_show "$H")" ;;
esac
echo "drain: demo's consumer port $Q is on $H; the other relay is $O"
p2m_wait_until "$H holds demo's $P2M_POOL idle pre-connections" p2m_idle_is "$P2M_POOL" demo "$H"

# ls_is RELAY FILTER WANT: relay ls --json says WANT for RELAY's row through FILTER.
ls_is() {
    [[ $(admin --json relay ls | jq -r --arg n "$1" ".[] | select(.name == \$n) | $2") == "$3" ]]
}

# ---------------------------------------------------------------- traffic

# consumers N: requests through the registrar's 307 (curl -L) until $T/stop exists; each failure
# (curl's error or a wrong answer) is a line in $T/fail.N, each success one in $T/ok.N.
consumers() {
    local n=$1 i=0 code
    : >"$T/fail.$n"
    : >"$T/ok.$n"
    while [[ ! -e $T/stop ]]; do
        i=$((i + 1))
        code=$(curl -4 -sS -L --max-time 20 --cacert "$P2M_CA" --connect-to ::127.0.0.1: -o "$T/c$n.b" -w '%{http_code}' \
            "https://demo.pipe2me.localhost:$P2M_HTTPS_PORT/c$n-$i" 2>>"$T/fail.$n") || code=curl
        if [[ $code == 200 && $(head -n 1 "$T/c$n.b") == "GET /c$n-$i HTTP/1.1"* ]]; then
            echo "$i" >>"$T/ok.$n"
        else
            echo "request $i: $code" >>"$T/fail.$n"
        fi
    done
}
consumers 1 &
C1=$!
P2M_PIDS+=("$C1")
consumers 2 &
C2=$!
P2M_PIDS+=("$C2")
p2m_wait_until "the consumers are served" test -s "$T/ok.2"

# A slow upload through a tunnel on $H's consumer port, open across the drain: about 60000 bytes
# at 6000 bytes/s, echoed back by the pod's service.
head -c 45000 /dev/urandom >"$T/long.raw"
base64 -w 100 "$T/long.raw" >"$T/long.in"
LONG_SIZE=$(stat -c %s "$T/long.in")
curl -4 -sS --max-time 120 --limit-rate 6000 --cacert "$P2M_CA" --connect-to ::127.0.0.1: -o "$T/long.out" \
    -w '%{http_code}' --data-binary "@$T/long.in" -H 'Content-Type: application/octet-stream' \
    "https://demo.pipe2me.localhost:$Q/long" >"$T/long.code" 2>"$T/long.err" &
LONG=$!
P2M_PIDS+=("$LONG")
p2m_wait_until "the upload is a tunnel on $H" ls_is "$H" '.tunnels > 0' true

# ---------------------------------------------------------------- drain

OUT=$T/drain.json
admin --json relay drain "$H" >"$OUT" || fail "relay drain $H"
expect_eq "true true" "$(json '"\(.ok) \(.changed)"')" "relay drain $H"
admin relay drain "$H" | grep -q "already" || fail "a second drain should say already"
p2m_ok
p2m_wait_until "$H has seen its mark" ls_is "$H" .drain_seen true
p2m_wait_until "$H logs relay_draining" p2m_log_has "$H" "event=relay_draining name=$H"
p2m_wait_until "the pod's pre-connections move to $O" p2m_redis_is 1 EXISTS "p2m:idle:$O"
moved() { [[ $(rcli GET p2m:cport:demo) != "$Q" && $(rcli HGET "p2m:lease:$(rcli GET p2m:cport:demo)" relay) == "$O" ]]; }
p2m_wait_until -t 60 "the consumer port moves to $O" moved
Q2=$(rcli GET p2m:cport:demo)
echo "drain: demo's consumer port moved to $Q2 on $O"
served_above() { (($(cat "$T/ok.1" "$T/ok.2" | wc -l) > $1)); }
ok_before=$(cat "$T/ok.1" "$T/ok.2" | wc -l)
p2m_wait_until "consumers are served on $O" p2m_log_has "$O" "lease=$Q2"
p2m_wait_until -t 60 "more consumers served after the move" served_above $((ok_before + 5))

p2m_wait_until -t 150 "the slow upload ends" p2m_dead "$LONG"
wait "$LONG" || fail "the slow upload failed: $(cat "$T/long.err")"
p2m_forget "$LONG"
expect_eq 200 "$(cat "$T/long.code")" "the slow upload's status"
expect_eq "POST /long HTTP/1.1" "$(head -n 1 "$T/long.out" | tr -d '\r')" "the echo of the upload"
tail -c "$LONG_SIZE" "$T/long.out" | cmp -s - "$T/long.in" || fail "the upload came back changed"
p2m_ok

p2m_wait_until -t 60 "$H holds nothing: 0 leases, idle, tunnels" ls_is "$H" '"\(.leases) \(.idle) \(.tunnels) \(.waiting)"' "0 0 0 0"
p2m_wait_until "$H logs relay_drained" p2m_log_has "$H" "event=relay_drained name=$H"
expect_eq 0 "$(rcli HLEN "p2m:idle:$H")" "no idle pre-connection of $H in Redis"

touch "$T/stop"
p2m_wait_until "the consumers stop" p2m_dead "$C1"
p2m_wait_until "the consumers stop" p2m_dead "$C2"
wait "$C1" "$C2" || true
p2m_forget "$C1"
p2m_forget "$C2"
fails=$(cat "$T/fail.1" "$T/fail.2")
expect_eq "" "$fails" "no consumer refused or cut during the drain"
echo "drain: $(cat "$T/ok.1" "$T/ok.2" | wc -l) consumers served, none failed"

# ---------------------------------------------------------------- stop it: nothing changes

p2m_stop r1-or-r2 "$H_PID"
for i in 1 2 3; do
    hreq -L --connect-to ::127.0.0.1: "https://demo.pipe2me.localhost:$P2M_HTTPS_PORT/after-$i"
    expect_http 200 "a consumer after $H stopped"
    expect_match "^GET /after-$i HTTP/1.1" "$(head -n 1 "$T/resp.b")" "the pod's echo after $H stopped"
done
p2m_wait_until "the pod's pool is whole on $O" p2m_idle_is "$P2M_POOL" demo "$O"

# ---------------------------------------------------------------- undrain

refused "(unknown relay $H|relay $H is not live)" relay undrain "$H" # a stopped relay leaves p2m:relays
admin relay undrain "$H" --force >/dev/null || fail "relay undrain $H --force"
expect_eq 0 "$(rcli SISMEMBER p2m:draining "$H")" "$H unmarked"
p2m_start_relay "$T/$H.json" "$H"
H_PID=$RELAY_PID
p2m_wait_until "$H heartbeats, not draining" ls_is "$H" '"\(.draining) \(.drain_seen)"' "false false"
# Back in the ranking: with $O drained, and no traffic, $O gives the pod's pre-connections back
# after wait_timeout and they all come to $H.
admin relay drain "$O" >/dev/null || fail "relay drain $O"
p2m_wait_until -t 60 "$O gives its idle pre-connections back" p2m_log_has "$O" "event=relay_drain_idle name=$O"
p2m_wait_until -t 60 "the pod's pool is whole on $H" p2m_idle_is "$P2M_POOL" demo "$H"
hreq -L --connect-to ::127.0.0.1: "https://demo.pipe2me.localhost:$P2M_HTTPS_PORT/back"
expect_http 200 "a consumer once $H is back"
expect_eq "$H" "$(rcli HGET "p2m:lease:$(rcli GET p2m:cport:demo)" relay)" "the consumer port is on $H again"
# Every relay draining: they are used anyway, and the registrar says so.
admin relay drain "$H" >/dev/null || fail "relay drain $H"
p2m_wait_until "$H has seen its mark" ls_is "$H" .drain_seen true
for i in 1 2; do
    hreq -L --connect-to ::127.0.0.1: "https://demo.pipe2me.localhost:$P2M_HTTPS_PORT/all-$i"
    expect_http 200 "a consumer while every relay drains"
done
p2m_wait_until "the registrar logs a lease on a draining relay" p2m_log_has registrar "event=lease_on_draining_relay "
p2m_wait_until "the pool is whole again, on $H" p2m_idle_is "$P2M_POOL" demo "$H"
admin relay undrain "$H" >/dev/null || fail "relay undrain $H"
admin relay undrain "$O" >/dev/null || fail "relay undrain $O"
p2m_wait_until "$O heartbeats, not draining" ls_is "$O" '.drain_seen' false
p2m_wait_until "$O logs relay_undrained" p2m_log_has "$O" "event=relay_undrained name=$O"

p2m_stop relay "$H_PID"
p2m_stop relay "$O_PID"
