#!/usr/bin/env bash
# Several pods behind one label (pipe2me-admin label share; PROTOCOL 1.2 step 4 and 3.4, OPERATIONS
# "Several pods behind one label"). Two pods, each with its own ID and its own TCP echo, register for
# label `shared`; which pod served a consumer is read from that pod's log (one `event=tunnel_open`
# per consumer joined to it), and p2m-load checks every echo byte for byte.
#   - Ownership: a sharer registers and gets a certificate for shared.DOMAIN (200); a pod that
#     neither owns nor shares the label gets 403 for both; unshared, the sharer's session is 403.
#   - 400 consumers at once: every one served, each pod between 30 and 70 percent of them.
#   - kill -9 of one pod while a load runs: every consumer that started after the kill (after kill
#     returned and the pod was reaped, by p2m-load's own start time) is served; those in flight
#     through the dead pod at that instant may fail.
#   - pod disable of a sharer: once its idle pre-connections are closed (its status says none), the
#     other pod serves every consumer.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss openssl oathtool
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_POOL=8            # each pod's --pool
N=400                 # consumers at once
P2M_WAIT_SECONDS=120  # every wait below is for an outcome, not a deadline
DOMAIN=pipe2me.localhost
BASE="https://$DOMAIN:"

# p2m-load comes with the build (tests/tools); without it, it is compiled here.
LOAD=$P2M_BUILD_DIR/tests/tools/p2m-load
if [[ ! -x $LOAD ]]; then
    p2m_require cc
    LOAD=$T/p2m-load
    cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o "$LOAD" "$P2M_SOURCE_DIR/tests/tools/p2m-load.c" ||
        fail "cannot compile tests/tools/p2m-load.c"
fi

# served POD: how many consumers POD has been joined to (its log's tunnel_open lines).
served() { p2m_log_count "$1" 'event=tunnel_open'; }

# served_sum_is N POD...: the PODs have served N consumers between them.
served_sum_is() {
    local want=$1 sum=0 pod
    shift
    for pod in "$@"; do sum=$((sum + $(served "$pod"))); done
    ((sum == want))
}

# pod_idle_is DIR N: the pod's status says N idle pre-connections.
pod_idle_is() { [[ $(p2m_pod_json "$1" .pool.idle) == "$2" ]]; }

# ---------------------------------------------------------------- setup

p2m_free_port_range PORT_LO PORT_HI 200
# Consumers may wait long on a loaded machine; all of them come from 127.0.0.1.
p2m_start_system "{\"relay\": {\"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 300, \"max_conns_per_addr\": 2048}}"
BASE+=$P2M_HTTPS_PORT

admin pod add pa --label shared -o "$T/pa.json" >/dev/null
admin pod add pb -o "$T/pb.json" >/dev/null
expect_status 0 admin label share shared pb
expect_eq "pod pb shares label shared of pod pa" "$(cat "$OUT")"

for e in A B C; do
    p2m_free_port "ECHO_$e"
    port_var=ECHO_$e
    p2m_bg "echo$e" "$POD_BIN" test --forward-tcp "${!port_var}"
    p2m_wait_until "echo $e listens" p2m_listening "${!port_var}"
done

p2m_start_pod pa shared "127.0.0.1:$ECHO_A"
p2m_start_pod pb shared "127.0.0.1:$ECHO_B"
p2m_wait_until "the relay counts both pods' idle pre-connections" p2m_idle_is $((2 * P2M_POOL)) shared
p2m_consumer_port Q https shared

# ---------------------------------------------------------------- who may serve the label (403)

admin pod add pd -o "$T/pd.json" >/dev/null   # a sharer that runs no pod process: its codes are ours
admin pod add px --label other -o "$T/px.json" >/dev/null
P2M_SECRET[pd]=$(jq -r .secret "$T/pd.json")
P2M_SECRET[px]=$(jq -r .secret "$T/px.json")
expect_status 0 admin label share shared pd
expect_status 0 admin label ls --json
expect_eq '{"label":"shared","pod":"pa","protocol":"https","consumers":0,"sharers":["pb","pd"]}' "$(json -c '.[] | select(.label == "shared")')" \
    "label ls --json: the owner and both sharers"
expect_status 0 admin label ls
expect_match '^shared +pa,pb,pd +https +[0-9]+$' "$(grep '^shared ' "$OUT")" "label ls: all the label's pods"

p2m_totp_fresh px
p2m_reg shared "$(p2m_totp_auth px "$CODE_")"
expect_http 403 "a pod that neither owns nor shares the label registers"
expect_eq "label not owned by this pod" "$(body)"
p2m_totp_fresh pd
p2m_reg shared "$(p2m_totp_auth pd "$CODE_")"
expect_http 200 "a sharer registers"
PD_SESSION=$(hdr p2m-session)
expect_match '^[A-Za-z0-9_-]{16,128}$' "$PD_SESSION" "the sharer gets a session credential"

openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=shared.$DOMAIN" -keyout "$T/shared.key" \
    -out "$T/shared.csr" 2>"$T/openssl.err" || fail "openssl req: $(cat "$T/openssl.err")"
cert_req() { hreq -X POST -H "Authorization: $1" -H 'Content-Type: application/pkcs10' --data-binary "@$T/shared.csr" "$BASE/certificate/shared"; }
cert_req "Bearer $PD_SESSION"
expect_http 200 "a sharer asks for a certificate for shared.$DOMAIN"
body >"$T/pd.pem"
expect_eq "subject=CN = shared.$DOMAIN" "$(openssl x509 -in "$T/pd.pem" -noout -subject)" "the sharer's certificate names the label"
expect_status 0 openssl verify -purpose sslserver -CAfile "$P2M_CA" "$T/pd.pem"
p2m_totp_fresh px
cert_req "$(p2m_totp_auth px "$CODE_")"
expect_http 403 "a pod that neither owns nor shares the label asks for a certificate"

expect_status 0 admin label unshare shared pd
expect_eq "pod pd no longer shares label shared of pod pa" "$(cat "$OUT")"
p2m_reg shared "Bearer $PD_SESSION"
expect_http 403 "a sharer no more registers with its session"
cert_req "Bearer $PD_SESSION"
expect_http 403 "a sharer no more asks for a certificate"

# ---------------------------------------------------------------- 400 consumers at once

load_ok() { # load NAME ARGS...: p2m-load must serve every connection; its summary goes to $T/NAME.
    local name=$1 rc=0
    shift
    timeout 500 "$LOAD" "$@" >"$T/$name" 2>&1 || rc=$?
    echo "shared: $name: $(tr '\n' ' ' <"$T/$name")"
    ((rc == 0)) || fail "$name: not every consumer was served (p2m-load status $rc): $(cat "$T/$name")"
    p2m_ok
}
load_ok burst -c "$N" -p "$N" -b 2048 -t 300 127.0.0.1 "$Q"
p2m_wait_until "the pods' logs count the $N consumers" served_sum_is "$N" pa pb
A=$(served pa) B=$(served pb)
echo "shared: burst of $N: pa served $A, pb served $B"
((A * 100 >= 30 * N && A * 100 <= 70 * N)) || fail "pa served $A of $N consumers, not between 30 and 70 percent"
((B * 100 >= 30 * N && B * 100 <= 70 * N)) || fail "pb served $B of $N consumers, not between 30 and 70 percent"
p2m_ok

# ---------------------------------------------------------------- kill -9 of one pod mid-load

# Each consumer sends 4096 bytes at 16 KiB/s, at most 40 at a time, so the load lasts well past the
# kill, which comes once 100 of the 1500 have been served.
K=1500
p2m_bg kill-load "$LOAD" -c "$K" -p 40 -b 4096 -r 16384 -t 300 -o "$T/kill.conns" 127.0.0.1 "$Q"
KLOAD_PID=$P2M_BG_PID
lines_at_least() { [[ -e $1 ]] && (($(wc -l <"$1") >= $2)); }
p2m_wait_until "100 consumers of the second load served" lines_at_least "$T/kill.conns" 100
B_BEFORE=$(served pb)
kill -KILL "$PB_PID"
wait "$PB_PID" 2>/dev/null || true
p2m_forget "$PB_PID"
T_KILL=$(p2m_now_ms) # after kill returned and the pod was reaped
p2m_reap "the second load" "$KLOAD_PID"
expect_eq "$K" "$(wc -l <"$T/kill.conns")" "one line per consumer of the second load"
after=$(awk -v t="$T_KILL" '$2 > t' "$T/kill.conns" | wc -l)
bad=$(awk -v t="$T_KILL" '$2 > t && $6 != "ok"' "$T/kill.conns")
echo "shared: kill -9 of pb at $T_KILL ms: $after of $K consumers started after it;" \
    "$(awk -v t="$T_KILL" '$2 <= t && $6 != "ok"' "$T/kill.conns" | wc -l) failed before; pb had served $B_BEFORE"
[[ -z $bad ]] || fail "consumers that started after the kill were not served:"$'\n'"$(head -n 20 <<<"$bad")"
((after >= 500)) || fail "only $after consumers started after the kill: the load ended too early to show anything"
p2m_ok

# ---------------------------------------------------------------- pod disable of a sharer

admin pod add pc -o "$T/pc.json" >/dev/null
expect_status 0 admin label share shared pc
p2m_start_pod pc shared "127.0.0.1:$ECHO_C"
# Both pods have idle pre-connections now: one at a time, consumers alternate between them.
load_ok turns -c 40 -p 1 -b 512 -t 300 127.0.0.1 "$Q"
C=$(served pc)
((C > 0)) || fail "pc served none of 40 consumers one at a time"
p2m_ok
expect_status 0 admin pod disable pc
admin lease ls --json >"$T/leases.json"
expect_eq 0 "$(jq '[.[] | select(.pod == "pc")] | length' "$T/leases.json")" "pc's leases end with the disable"
p2m_wait_until "the relay closed pc's idle pre-connections" pod_idle_is "$T/pc" 0
A=$(served pa)
load_ok after-disable -c 100 -p 20 -b 1024 -t 300 127.0.0.1 "$Q"
p2m_wait_until "pa's log counts the 100 consumers" p2m_log_count_above pa 'event=tunnel_open' $((A + 99))
expect_eq "$C" "$(served pc)" "the disabled pod serves no consumer"
expect_status 0 admin label ls --json
expect_eq '["pb","pc"]' "$(json -c '.[] | select(.label == "shared") | .sharers')" "a disabled sharer still shares the label"

p2m_stop relay "$RELAY_PID"
expect_log_clean relay
