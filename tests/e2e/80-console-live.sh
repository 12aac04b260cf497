#!/usr/bin/env bash
# The live numbers of pod ls, label ls and the web console (issue 21, docs/OPERATIONS.md "Web
# console"), against a real stack: redis, the registrar, relay r1, one pod in front of
# `pipe2me-pod test`'s TCP echo. After the pod registers, pod ls --json says online, its idle
# pre-connections, last_registration and pool_target (the --pool its registrations declare, also in
# the table and GET /api/pods); 5 consumers of 1000 bytes each and one held open then show
# in pod ls (tunnels and consumers now, bytes totals), label ls (consumers) and the last hour's
# series (pod series ID --json, GET /api/pods/ID/series): 6 tunnels joined, at least the bytes sent
# each way, a tunnels gauge of at least 1. The series route is 401 without the session, 404 for an
# unknown pod, 400 for a malformed ID; the page loads chart.js. A stopped pod goes offline.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require jq curl socat openssl
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
ADMIN=$P2M_BUILD_DIR/tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_WAIT_SECONDS=60 # the relay writes its numbers every 5 s: every wait is for an outcome
P2M_POOL=3          # the pod's --pool
N=5                 # consumers that come and go
SIZE=1000           # bytes each sends (and gets back)

p2m_free_port_range PORT_LO PORT_HI 32
p2m_start_system "{\"relay\": {\"ports\": \"$PORT_LO-$PORT_HI\"}, \"registrar\": {\"alive_window\": 10}}"

p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO_TCP"
p2m_wait_until "the echo listens" p2m_listening "$ECHO_TCP"

# pod_field ID FILTER: FILTER over pod ID's entry of pod ls --json.
pod_field() { admin pod ls --json >"$T/ls.json" && jq -r --arg id "$1" ".[] | select(.id == \$id) | $2" "$T/ls.json"; }
pod_field_is() { [[ $(pod_field "$1" "$2") == "$3" ]]; }
label_consumers_is() {
    admin label ls --json >"$T/ls.json" && [[ $(jq -r --arg l "$1" '.[] | select(.label == $l) | .consumers' "$T/ls.json") == "$2" ]]
}
# series_is FILTER WANT: FILTER over `pod series live1 --json` prints WANT.
series_is() { admin pod series live1 --json >"$T/series.json" && [[ $(jq -r "$1" "$T/series.json") == "$2" ]]; }

# ---- before the pod runs: offline, nothing counted
admin pod add live1 --label live -o "$T/live1.json" >/dev/null
expect_status 0 admin pod ls --json
expect_eq 'false 0 0 null null' \
    "$(json -r '.[] | select(.id == "live1") | "\(.online) \(.idle) \(.tunnels) \(.last_registration) \(.pool_target)"')" \
    "pod ls --json: a pod that never registered"
expect_status 0 admin pod series live1 --json
expect_eq 60 "$(json '.minutes | length')" "pod series: 60 minutes"
expect_eq "$(($(date +%s) / 60))" "$(json .minute_now)" "pod series: minute_now is now"
expect_eq 0 "$(json '[.minutes[].conns] | add')" "pod series: zero-filled"
expect_eq true "$(json '[.minutes[].minute] | . == ([range(.[0]; .[0] + 60)])')" "pod series: consecutive minutes, oldest first"
expect_eq "$(json .minute_now)" "$(json '.minutes[59].minute')" "pod series: the last entry is now"

# ---- the pod registers
BEFORE=$(date +%s)
p2m_start_pod live1 live "127.0.0.1:$ECHO_TCP"
p2m_wait_until "pod ls says live1 is online" pod_field_is live1 .online true
p2m_wait_until "pod ls counts its $P2M_POOL idle pre-connections" pod_field_is live1 .idle "$P2M_POOL"
LAST=$(pod_field live1 .last_registration)
((LAST >= BEFORE - 1 && LAST <= $(date +%s))) || fail "last_registration $LAST is not the registration's time (since $BEFORE)"
expect_eq "$P2M_POOL" "$(pod_field live1 .pool_target)" "pod ls --json: pool_target is the pod's --pool"
expect_eq "$P2M_POOL" "$(rcli HGET p2m:pod:live1 pool:live)" "the registration recorded pool:SERVICE on the pod's hash"
p2m_ok
expect_status 0 admin pod ls
expect_match '^live1 +enabled +live +[0-9TZ:-]+ +yes +[0-9]+ +'"$P2M_POOL"' +0 +0 +[0-9]+ +[0-9]+ +[0-9]{4}-' "$(grep '^live1 ' "$OUT")" "pod ls row"

# ---- consumers through the tunnel
p2m_consumer_port Q https live
head -c "$SIZE" /dev/urandom >"$T/payload"
for ((i = 1; i <= N; i++)); do
    timeout 30 socat -t 10 - "TCP:127.0.0.1:$Q" <"$T/payload" >"$T/c$i.out"
    cmp -s "$T/payload" "$T/c$i.out" || fail "consumer $i: the echo differs"
done
p2m_ok
# One more, held open: a tunnel now (the relay joins a consumer at its first byte).
p2m_bg hold bash -c "exec 3<>/dev/tcp/127.0.0.1/$Q && printf x >&3 && exec sleep 600"
HOLD_PID=$P2M_BG_PID
p2m_wait_until "pod ls counts 1 tunnel open" pod_field_is live1 .tunnels 1
p2m_wait_until "pod ls counts 1 consumer" pod_field_is live1 .consumers 1
p2m_wait_until "label ls counts 1 consumer of live" label_consumers_is live 1
p2m_wait_until "pod ls counts $((N + 1)) tunnels joined" pod_field_is live1 .conns $((N + 1))
p2m_wait_until "pod ls counts the bytes each way" pod_field_is live1 '.bytes_in >= '"$((N * SIZE))"' and .bytes_out >= '"$((N * SIZE))" true

# ---- the series: exact conns, at least the bytes, the tunnels gauge
p2m_wait_until "pod series counts $((N + 1)) tunnels joined" series_is '[.minutes[].conns] | add' $((N + 1))
p2m_wait_until "pod series counts the bytes" series_is "([.minutes[].bytes_in] | add) >= $((N * SIZE)) and ([.minutes[].bytes_out] | add) >= $((N * SIZE))" true
p2m_wait_until "pod series saw the tunnel open" series_is '[.minutes[].tunnels] | max >= 1' true
expect_eq $((N + 1)) "$(jq '[.minutes[-3:][].conns] | add' "$T/series.json")" "the conns are in the last minutes"
expect_status 0 admin pod series live1
expect_eq 61 "$(wc -l <"$OUT")" "pod series: a header and 60 minutes"
expect_match '^MINUTE +CONNS +TUNNELS +BYTES_IN +BYTES_OUT$' "$(head -n 1 "$OUT")" "pod series header"
# The relay's keys: one bucket per service and minute, with a TTL of about an hour.
KEY=$(rcli --scan --pattern 'p2m:series:live:*' | head -n 1)
[[ -n $KEY ]] || fail "no p2m:series:live:MINUTE key"
TTL=$(rcli TTL "$KEY")
((TTL > 3000 && TTL <= 3900)) || fail "$KEY has TTL $TTL, want about 65 minutes"
expect_match '^[1-9]' "$(rcli HGET "$KEY" tunnels:r1)$(rcli HGET "$KEY" conns)" "$KEY: r1's gauge or conns"
expect_eq 1 "$(rcli HGET p2m:tunnels:r1 live)" "p2m:tunnels:r1 counts the open tunnel"

admin_fails -r 'invalid pod ID' pod series 'bad!id'
admin_fails -r 'unknown pod ghost' pod series ghost

# ---- the console
TOKEN=$(openssl rand -hex 24)
(umask 077 && printf '%s\n' "$TOKEN" >"$T/console.token")
p2m_free_port CONSOLE_PORT
p2m_bg console "$ADMIN" -c "$P2M_CONFIG" serve --listen "127.0.0.1:$CONSOLE_PORT" --token-file "$T/console.token"
p2m_wait_until "the console listens" p2m_listening "$CONSOLE_PORT"
URL=http://127.0.0.1:$CONSOLE_PORT

hreq "$URL/api/pods/live1/series"
expect_http 401 "the series without a cookie"
hreq -X POST --data-urlencode "token=$TOKEN" "$URL/login"
COOKIE=$(hdr set-cookie | sed -n 's/^\(p2m_console=[^;]*\).*/\1/p')
[[ -n $COOKIE ]] || fail "no session cookie"
hreq -H "Cookie: $COOKIE" "$URL/api/pods/live1/series"
expect_http 200 "GET /api/pods/live1/series"
expect_eq application/json "$(hdr content-type)" "the series is JSON"
expect_eq "live1 60 $((N + 1))" "$(jq -r '"\(.pod) \(.minutes | length) \([.minutes[].conns] | add)"' "$T/resp.b")" \
    "the console's series: the same conns"
hreq -H "Cookie: $COOKIE" "$URL/api/pods/ghost/series"
expect_http 404 "the series of an unknown pod"
expect_match 'unknown pod ghost' "$(jq -r .error "$T/resp.b")" "404 says why"
hreq -H "Cookie: $COOKIE" "$URL/api/pods/bad!id/series"
expect_http 400 "the series of a malformed ID"
hreq -H "Cookie: $COOKIE" "$URL/api/pods/$(printf 'a%.0s' {1..70})/series"
expect_http 400 "the series of an ID too long"
hreq -H "Cookie: $COOKIE" "$URL/api/pods"
expect_eq "true 1 $P2M_POOL" "$(jq -r '.[] | select(.id == "live1") | "\(.online) \(.tunnels) \(.pool_target)"' "$T/resp.b")" \
    "/api/pods: live fields"
hreq -H "Cookie: $COOKIE" "$URL/"
expect_match '<script src="/static/chart.js" defer></script><script src="/static/console.js" defer>' "$(body)" \
    "the page loads chart.js before console.js"
hreq "$URL/static/chart.js"
expect_http 200 "GET /static/chart.js"
expect_match '^text/javascript' "$(hdr content-type)" "chart.js is a script"
expect_match 'createElementNS' "$(body)" "chart.js draws with the DOM"

# ---- the consumer leaves, the pod stops: offline
p2m_kill "$HOLD_PID"
p2m_wait_until "pod ls counts no tunnel" pod_field_is live1 .tunnels 0
p2m_stop live1 "$LIVE1_PID"
p2m_wait_until "pod ls says live1 is offline" pod_field_is live1 .online false
expect_eq "0 0" "$(pod_field live1 '"\(.idle) \(.consumers)"')" "an offline pod: no idle pre-connection, no consumer"
hreq -H "Cookie: $COOKIE" "$URL/api/pods"
expect_eq false "$(jq -r '.[] | select(.id == "live1") | .online' "$T/resp.b")" "/api/pods: offline"

p2m_stop relay "$RELAY_PID"
expect_log_clean relay
echo "$P2M_TEST: $P2M_CHECKS checks passed"
