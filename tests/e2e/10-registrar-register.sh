#!/usr/bin/env bash
# pipe2me-registrar, pod side (docs/PROTOCOL.md 1 and 3.2-3.4): PUT /register/LABEL with TOTP and
# Bearer credentials against the real registrar, relay and a private redis-server, driven by curl
# and oathtool. Covers the 200 response and its headers, the relay listening before the 200,
# replay and clock skew, 401/403 for unknown pods, wrong tokens, missing headers, foreign labels,
# disabled, removed and re-keyed pods, the order of the checks, the brute-force backoff (429), the
# pre-connection address rule, lease expiry, leaks, no free port and a relay that cannot bind or
# never answers (503), an IPv6 relay address, and the counters in /metrics. The last sections
# check the rate limit against malformed requests and session revocation by `label rm`.
#
# Failed authentications count per (pod ID, source address), per pod ID and per address over the
# distinct IDs that failed there (auth_fail_limit 3 here: three cost nothing, then the waits
# double). So each group of refusals uses its own loopback source address (curl --interface
# 127.0.0.N) and, where the ID counts, its own pod; 127.0.0.1 sees two failures in the whole test.
# A wrong code and an unknown pod answer the same "authentication failed" (PROTOCOL 1.2); the
# counters in /metrics still tell them apart.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl oathtool jq socat ss sha256sum
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay tools/pipe2me-admin
NAME=r1
PRECONNECT=5
SESSION_TTL=300
FAIL_LIMIT=3
FAIL_WINDOW=600

# ---------------------------------------------------------------- helpers

lease_count() { rcli --scan --pattern 'p2m:lease:*' | wc -l; }
lease_count_is() { [[ $(lease_count) == "$1" ]]; }
# plain_leases: the leases of label plain (other labels' leases may expire at any moment).
plain_leases() { rcli EVAL "local n = 0 for _, k in ipairs(redis.call('KEYS', 'p2m:lease:*')) do
    if redis.call('HGET', k, 'label') == 'plain' then n = n + 1 end end return n" 0; }

# The counters /metrics must show at the end: successful registrations and refusals by reason.
REG_OK=0
declare -A FAILS=()
count_fail() { FAILS[$1]=$((${FAILS[$1]:-0} + 1)); }

# expect_refused CODE BODY DESC [REASON]: an error response with a text/plain one-line reason; 401s
# carry WWW-Authenticate: TOTP. REASON is the failure counter of an "authentication failed".
expect_refused() {
    expect_http "$1" "$3"
    expect_eq "$2" "$(body)" "$3: body"
    expect_match '^text/plain' "$(hdr content-type)" "$3: content type"
    has_hdr p2m-session && fail "$3: a refusal carries P2M-Session"$'\n'"$(resp_dump)"
    if [[ $1 == 401 ]]; then
        expect_eq TOTP "$(hdr www-authenticate)" "$3: WWW-Authenticate"
        case $2 in
        "token already used") count_fail replay ;;
        "authentication failed") count_fail "${4:?expect_refused: which failure (badtoken or nopod)}" ;;
        "Authorization header missing") count_fail noauth ;;
        "session expired or revoked") count_fail badsession ;;
        *) count_fail badauth ;;
        esac
    else
        count_fail "$1"
    fi
}


# expect_registered DESC: the last response is a registration 200 (PROTOCOL 1.3) with the relay
# already listening on the port; sets PORT.
expect_registered() {
    expect_http 200 "$1"
    expect_eq text/plain "$(hdr content-type)" "$1: content type"
    expect_match "^$RELAY_ADDR_RE:[0-9]+\$" "$(body)" "$1: body is ADDRESS:PORT"
    PORT=$(body)
    PORT=${PORT##*:}
    p2m_listening "$PORT" || fail "$1: the relay does not listen on $PORT when the 200 arrives"
    ((PORT >= RANGE_LO && PORT <= RANGE_HI)) || fail "$1: port $PORT outside the relay range $RANGE_LO-$RANGE_HI"
    p2m_ok
    REG_OK=$((REG_OK + 1))
}

# expect_session DESC: the registration 200 carries a new session credential; sets SESSION.
expect_session() {
    SESSION=$(hdr p2m-session)
    expect_match '^[A-Za-z0-9._~+/=-]{1,128}$' "$SESSION" "$1: P2M-Session"
    expect_eq "$SESSION_TTL" "$(hdr p2m-session-expires)" "$1: P2M-Session-Expires"
    SESSIONS+=("$SESSION")
}
SESSIONS=()

# now_code SECRET: the current code of SECRET, for requests the registrar refuses before it
# spends a step (unknown pod, wrong secret).
now_code() { CODE_=$(p2m_totp_code "$1" $(($(date +%s) / 30))); }


# ---------------------------------------------------------------- setup

RELAY_ADDR_RE='127\.0\.0\.1' # the relay's public_address as the 200 body shows it

p2m_start_redis
p2m_free_port_range RANGE_LO RANGE_HI 16
MAIN_LO=$RANGE_LO MAIN_HI=$RANGE_HI
p2m_free_port ONE_PORT
p2m_free_port_range SQUAT_PORT FREE_PORT 2
p2m_free_port GHOST_PORT
p2m_write_config "$(jq -nc --arg ports "$RANGE_LO-$RANGE_HI" --argjson pre $PRECONNECT --argjson st $SESSION_TTL \
    --argjson lim $FAIL_LIMIT --argjson win $FAIL_WINDOW \
    '{relay: {name: "r1", ports: $ports},
      registrar: {preconnect_timeout: $pre, session_ttl: $st, auth_fail_limit: $lim, auth_fail_window: $win}}')"
BASE=https://pipe2me.localhost:$P2M_HTTPS_PORT

for p in demo other skew dis gone rot lock lock2 pre plain relabel; do p2m_add_pod "$p" "$p"; done

p2m_start_relay
p2m_start_registrar
p2m_wait_until "the registrar answers /_health with 200" p2m_health_is 200
[[ -s $P2M_CA ]] || fail "the registrar did not create $P2M_CA"
p2m_ok

# ---------------------------------------------------------------- TOTP registration (1.1-1.3)

p2m_totp_fresh demo
DEMO_CODE=$CODE_
p2m_reg demo "$(p2m_totp_auth demo "$DEMO_CODE")"
expect_registered "TOTP registration"
expect_session "TOTP registration"
DEMO_SESSION=$SESSION
P1=$PORT
expect_eq "pre|demo|demo|127.0.0.1|r1|bound" "$(rcli HMGET "p2m:lease:$P1" kind label pod addr relay state | paste -sd'|')" \
    "lease fields of $P1"
ttl=$(rcli TTL "p2m:lease:$P1")
((ttl > 0 && ttl <= PRECONNECT)) || fail "lease $P1 TTL $ttl, want 1-$PRECONNECT (preconnect_timeout)"
p2m_ok
expect_match '^[0-9]+$' "$(rcli HGET "p2m:lease:$P1" created)" "lease created"
# Redis keeps the credential's SHA-256 only, bound to pod and label, with the session TTL.
DIGEST=$(printf '%s' "$DEMO_SESSION" | sha256sum | cut -c1-64)
expect_eq "demo|demo" "$(rcli HMGET "p2m:session:$DIGEST" pod label | paste -sd'|')" "session hash by digest"
ttl=$(rcli TTL "p2m:session:$DIGEST")
((ttl > 0 && ttl <= SESSION_TTL)) || fail "session TTL $ttl, want 1-$SESSION_TTL"
p2m_ok
redis_snapshot "$T/keys"
! grep -qF -- "$DEMO_SESSION" "$T/keys" || fail "Redis holds the session credential itself"
p2m_ok

# Bearer: another port, no new credential.
p2m_reg demo "Bearer $DEMO_SESSION"
expect_registered "Bearer registration"
has_hdr p2m-session && fail "a Bearer registration returned a new P2M-Session"$'\n'"$(resp_dump)"
has_hdr p2m-session-expires && fail "a Bearer registration returned P2M-Session-Expires"$'\n'"$(resp_dump)"
p2m_ok
[[ $PORT != "$P1" ]] || fail "the Bearer registration got $P1 again while its lease lives"
p2m_ok
expect_eq demo "$(rcli HGET "p2m:lease:$PORT" pod)" "the Bearer lease belongs to demo"
expect_eq 1 "$(hdr p2m-connections)" "a registration without \"connections\": P2M-Connections 1"
expect_eq "" "$(rcli HGET "p2m:lease:$PORT" conns)" "a one-connection lease has no conns field"

# Several pre-connections on one port (PROTOCOL 1.1, 1.3): the lease says how many, the 200 too.
hreq -X PUT -H "Authorization: Bearer $DEMO_SESSION" --data-binary '{"connections":5}' "$BASE/register/demo"
expect_registered "a registration for 5 connections"
expect_eq 5 "$(hdr p2m-connections)" "P2M-Connections of a 5-connection registration"
expect_eq 5 "$(rcli HGET "p2m:lease:$PORT" conns)" "the lease's conns field"
p2m_wait_until "the relay logs a listener for 5" p2m_log_has relay "event=lease_listen lease=$PORT kind=pre label=demo pod=demo addr=127.0.0.1 fd=[0-9]* conns=5"
expect_eq "" "$(rcli HGET p2m:pod:demo pool:demo)" "no pool target recorded for a body without \"pool\""
# "pool" (PROTOCOL 1.1): only recorded, on the pod's hash per service, for pod ls.
hreq -X PUT -H "Authorization: Bearer $DEMO_SESSION" --data-binary '{"protocol":"https","connections":32,"pool":4}' "$BASE/register/demo"
expect_registered "a registration for 32 connections"
expect_eq 32 "$(hdr p2m-connections)" "P2M-Connections at the maximum"
expect_eq 4 "$(rcli HGET p2m:pod:demo pool:demo)" "the body's pool target recorded as pool:SERVICE"
for b in '{"pool":0}' '{"pool":1025}' '{"pool":-1}' '{"pool":"4"}' '{"pool":4.0}' '{"pool":null}'; do
    hreq -X PUT -H "Authorization: Bearer $DEMO_SESSION" --data-binary "$b" "$BASE/register/demo"
    expect_http 400 "a registration body $b"
    expect_match "^pool: expected an integer from 1 to 1024" "$(body)" "the 400 for $b names the key"
done
for b in '{"connections":0}' '{"connections":33}' '{"connections":-1}' '{"connections":"2"}' '{"connections":2.5}' \
    '{"connections":null}' '{"connections":2,"connections":3}'; do
    hreq -X PUT -H "Authorization: Bearer $DEMO_SESSION" --data-binary "$b" "$BASE/register/demo"
    expect_http 400 "a registration body $b"
    expect_match '^(connections: expected an integer from 1 to 32|body: not JSON)' "$(body)" "the 400 for $b says why"
done

# ---------------------------------------------------------------- refusals from 127.0.0.1 (two)

# Replay of the same token: 401 (failure 1 of 127.0.0.1, 1 of demo).
p2m_reg demo "$(p2m_totp_auth demo "$DEMO_CODE")"
expect_refused 401 "token already used" "replayed TOTP code"

# Labels the pod does not own: 403, not counted as failed authentication.
p2m_totp_fresh demo
p2m_reg other "$(p2m_totp_auth demo "$CODE_")"
expect_refused 403 "label not owned by this pod" "TOTP for another pod's label"
p2m_reg other "Bearer $DEMO_SESSION"
expect_refused 403 "label not owned by this pod" "Bearer for another label"
p2m_reg nosuch "Bearer $DEMO_SESSION"
expect_refused 403 "label not owned by this pod" "Bearer for a label nobody owns"
p2m_totp_fresh other
p2m_reg nosuch "$(p2m_totp_auth other "$CODE_")"
expect_refused 403 "label not owned by this pod" "TOTP for a label nobody owns"
p2m_totp_fresh other
p2m_reg demo "$(p2m_totp_auth other "$CODE_")"
expect_refused 403 "label not owned by this pod" "TOTP of pod other for demo's label"

# A wrong token: 401 (failure 2 of 127.0.0.1, 1 of other).
p2m_wrong_code "${P2M_SECRET[other]}"
p2m_reg other "$(p2m_totp_auth other "$CODE_")"
expect_refused 401 "authentication failed" "wrong TOTP code" badtoken

# ---------------------------------------------------------------- plain HTTP never registers

# The HTTP listener sends a registration to HTTPS (308) without looking at it: no lease, and the
# code is not spent, so it works over HTTPS afterwards.
p2m_totp_fresh plain
expect_eq 0 "$(plain_leases)" "label plain has no lease before"
hreq -X PUT -H "Authorization: $(p2m_totp_auth plain "$CODE_")" "http://pipe2me.localhost:$P2M_HTTP_PORT/register/plain"
expect_http 308 "PUT /register over plain HTTP"
expect_eq "https://pipe2me.localhost:$P2M_HTTPS_PORT/register/plain" "$(hdr location)" "308 Location"
expect_eq 0 "$(plain_leases)" "plain HTTP leased nothing"
p2m_reg plain "$(p2m_totp_auth plain "$CODE_")"
expect_registered "the same code over HTTPS"
expect_session "the same code over HTTPS"

# ---------------------------------------------------------------- 127.0.0.10: checks in order

# Authentication comes before authorisation: a bad credential for a label the pod does not own,
# or for no label at all, is 401, not 403 (1.2 steps 3 and 4).
p2m_wrong_code "${P2M_SECRET[demo]}"
p2m_reg -s 127.0.0.10 other "$(p2m_totp_auth demo "$CODE_")"
expect_refused 401 "authentication failed" "wrong code for another pod's label" badtoken
now_code "${P2M_SECRET[demo]}"
p2m_reg -s 127.0.0.10 nosuch "$(p2m_totp_auth ghost2 "$CODE_")"
expect_refused 401 "authentication failed" "unknown pod for an unknown label" nopod

# Pod IDs are case-sensitive; one over 64 bytes is malformed (127.0.0.11).
now_code "${P2M_SECRET[demo]}"
p2m_reg -s 127.0.0.11 demo "$(p2m_totp_auth DEMO "$CODE_")"
expect_refused 401 "authentication failed" "the pod ID in upper case" nopod
p2m_reg -s 127.0.0.11 demo "$(p2m_totp_auth "$(printf 'd%.0s' {1..65})" "$CODE_")"
expect_http 401 "a 65-byte pod ID"
expect_match '^malformed Authorization' "$(body)" "a 65-byte pod ID: body"
count_fail badauth

# ---------------------------------------------------------------- 127.0.0.5: unknown pod, no header

now_code "${P2M_SECRET[demo]}"
p2m_reg -s 127.0.0.5 demo "$(p2m_totp_auth ghost "$CODE_")"
expect_refused 401 "authentication failed" "TOTP for an unknown pod" nopod
p2m_reg -s 127.0.0.5 demo ""
expect_refused 401 "Authorization header missing" "no Authorization header"

# ---------------------------------------------------------------- clock skew (1.2 step 3)

# The previous step is inside the window. Make sure the step does not end while the request is
# on its way: wait out the last 5 s of a step first (bounded).
i=0
while (($(date +%s) % 30 >= 25 && i++ < 60)); do sleep 0.2; done
p2m_totp_use skew $(($(date +%s) / 30 - 1))
p2m_reg skew "$(p2m_totp_auth skew "$CODE_")"
expect_registered "TOTP code of the previous step"
expect_session "TOTP code of the previous step"

# Three steps away either side is outside the window, however the clock moves meanwhile.
p2m_totp_use skew $(($(date +%s) / 30 - 3))
p2m_reg -s 127.0.0.6 skew "$(p2m_totp_auth skew "$CODE_")"
expect_refused 401 "authentication failed" "TOTP code 90 s old" badtoken
p2m_totp_use skew $(($(date +%s) / 30 + 3))
p2m_reg -s 127.0.0.6 skew "$(p2m_totp_auth skew "$CODE_")"
expect_refused 401 "authentication failed" "TOTP code 90 s ahead" badtoken

# ---------------------------------------------------------------- disable / enable (127.0.0.7)

p2m_totp_fresh dis
p2m_reg dis "$(p2m_totp_auth dis "$CODE_")"
expect_registered "registration of pod dis"
expect_session "registration of pod dis"
DIS_SESSION=$SESSION
DIS_PORT=$PORT
expect_status 0 admin pod disable dis
p2m_totp_fresh dis
p2m_reg dis "$(p2m_totp_auth dis "$CODE_")"
expect_refused 403 "pod disabled" "TOTP of a disabled pod"
expect_eq 0 "$(rcli EXISTS "p2m:lease:$DIS_PORT")" "disabling the pod ended its lease"
p2m_wait_until "the relay closes the disabled pod's port $DIS_PORT" p2m_not_listening "$DIS_PORT"
p2m_reg -s 127.0.0.7 dis "Bearer $DIS_SESSION"
expect_refused 401 "session expired or revoked" "session of a disabled pod"
expect_status 0 admin pod enable dis
p2m_reg -s 127.0.0.7 dis "Bearer $DIS_SESSION"
expect_refused 401 "session expired or revoked" "pre-disable session after enable"
p2m_totp_fresh dis
p2m_reg dis "$(p2m_totp_auth dis "$CODE_")"
expect_registered "TOTP of the re-enabled pod"
expect_session "TOTP of the re-enabled pod"

# ---------------------------------------------------------------- pod rm (127.0.0.8)

p2m_totp_fresh gone
p2m_reg gone "$(p2m_totp_auth gone "$CODE_")"
expect_registered "registration of pod gone"
expect_session "registration of pod gone"
GONE_SESSION=$SESSION
expect_status 0 admin pod rm gone
p2m_reg -s 127.0.0.8 gone "Bearer $GONE_SESSION"
expect_refused 401 "session expired or revoked" "session of a removed pod"
now_code "${P2M_SECRET[gone]}"
p2m_reg -s 127.0.0.8 gone "$(p2m_totp_auth gone "$CODE_")"
expect_refused 401 "authentication failed" "TOTP of a removed pod" nopod

# ---------------------------------------------------------------- rotate-secret (127.0.0.9)

p2m_totp_fresh rot
p2m_reg rot "$(p2m_totp_auth rot "$CODE_")"
expect_registered "registration of pod rot"
expect_session "registration of pod rot"
ROT_SESSION=$SESSION
OLD_SECRET=${P2M_SECRET[rot]}
expect_status 0 admin pod rotate-secret rot
P2M_SECRET[rot]=$(jq -er .secret "$OUT")
[[ ${P2M_SECRET[rot]} != "$OLD_SECRET" ]] || fail "rotate-secret kept the secret"
p2m_ok
now_code "$OLD_SECRET"
p2m_reg -s 127.0.0.9 rot "$(p2m_totp_auth rot "$CODE_")"
expect_refused 401 "authentication failed" "a code of the old secret" badtoken
p2m_reg -s 127.0.0.9 rot "Bearer $ROT_SESSION"
expect_refused 401 "session expired or revoked" "a session issued before rotate-secret"
p2m_totp_fresh rot
p2m_reg rot "$(p2m_totp_auth rot "$CODE_")"
expect_registered "a code of the new secret"
expect_session "a code of the new secret"

# ---------------------------------------------------------------- brute-force backoff (1.2 step 2)

# Pod lock, which never registered, guessed from 127.0.0.3: FAIL_LIMIT wrong codes cost nothing,
# then every further one doubles the wait (1, 2, 4 s ...). The guesser sits the waits out
# (Retry-After), so that each code it sends is checked, until 8 have failed: the wait is then 16 s.
fails=0 waits=0
while ((fails < 8)); do
    p2m_wrong_code "${P2M_SECRET[lock]}"
    p2m_reg -s 127.0.0.3 lock "$(p2m_totp_auth lock "$CODE_")"
    if [[ $CODE == 429 ]]; then
        expect_refused 429 "too many failed attempts; try later" "a guess during a wait"
        ra=$(hdr retry-after)
        [[ $ra =~ ^[0-9]+$ ]] && ((ra >= 1 && ra <= 16)) || fail "Retry-After '$ra' of a wait, want 1-16"
        ((++waits < 20)) || fail "more waits than 8 failures can cause"
        sleep "$ra"
        continue
    fi
    expect_refused 401 "authentication failed" "wrong code $((fails + 1)) of pod lock" badtoken
    fails=$((fails + 1))
done
expect_eq 8 "$(rcli HGET p2m:limit:pair:lock:127.0.0.3 n)" "failures of (lock, 127.0.0.3)"
expect_eq 8 "$(rcli HGET p2m:limit:id:lock n)" "failures of lock"
for k in p2m:limit:pair:lock:127.0.0.3 p2m:limit:id:lock; do
    ttl=$(rcli TTL "$k")
    ((ttl > 0 && ttl <= FAIL_WINDOW + 16)) || fail "$k TTL $ttl, want 1-$((FAIL_WINDOW + 16))"
    p2m_ok
done
# Now even the right code waits: the guesser learns nothing until the wait ends.
p2m_totp_fresh lock
p2m_reg -s 127.0.0.3 lock "$(p2m_totp_auth lock "$CODE_")"
expect_refused 429 "too many failed attempts; try later" "the right code during the 16 s wait"
ra=$(hdr retry-after)
if ! [[ $ra =~ ^[0-9]+$ ]] || ((ra < 1 || ra > 16)); then
    fail "429 Retry-After '$ra', want 1-16"
fi
p2m_ok
# The ID waits from any address it never authenticated from ...
p2m_reg -s 127.0.0.4 lock "$(p2m_totp_auth lock "$CODE_")"
expect_refused 429 "too many failed attempts; try later" "the guessed pod ID from another address"
expect_match '^[0-9]+$' "$(hdr retry-after)" "Retry-After of the guessed ID"
# ... but one ID's failures hold up no other pod at that address, and no live session.
p2m_totp_fresh lock2
p2m_reg -s 127.0.0.3 lock2 "$(p2m_totp_auth lock2 "$CODE_")"
expect_registered "another pod from the guessing address"
expect_session "another pod from the guessing address"
p2m_reg -s 127.0.0.3 demo "Bearer $DEMO_SESSION"
expect_registered "a live session from the guessing address"
# The path is checked before the limiters (1.2 step 1).
p2m_reg -s 127.0.0.3 'not_a_label' ""
expect_refused 404 "no such label" "an invalid label from the guessing address"
# The 429s and the 404 counted nothing; 127.0.0.4 failed nothing.
expect_eq 8 "$(rcli HGET p2m:limit:pair:lock:127.0.0.3 n)" "failures of (lock, 127.0.0.3) after the 429s"
expect_eq 0 "$(rcli EXISTS p2m:limit:pair:lock:127.0.0.4)" "(lock, 127.0.0.4) has no failures"
expect_eq 0 "$(rcli EXISTS p2m:limit:addr:127.0.0.4)" "127.0.0.4 has no failures"
# A different ID from a different address is not held up either.
p2m_totp_fresh lock2
p2m_reg -s 127.0.0.4 lock2 "$(p2m_totp_auth lock2 "$CODE_")"
expect_registered "another pod from another address"
expect_session "another pod from another address"
# 127.0.0.1 has two failures: below the limit.
p2m_reg demo "Bearer $DEMO_SESSION"
expect_registered "Bearer from 127.0.0.1 with two failures"

# ---------------------------------------------------------------- pre-connection port (1.3, 3.4)

p2m_totp_fresh pre
p2m_reg -s 127.0.0.2 pre "$(p2m_totp_auth pre "$CODE_")"
expect_registered "registration from 127.0.0.2"
expect_session "registration from 127.0.0.2"
PRE_PORT=$PORT
expect_eq 127.0.0.2 "$(rcli HGET "p2m:lease:$PRE_PORT" addr)" "the lease admits the registering address"
ttl=$(rcli TTL "p2m:lease:$PRE_PORT")
((ttl > 0 && ttl <= PRECONNECT)) || fail "lease $PRE_PORT TTL $ttl, want 1-$PRECONNECT"
p2m_ok
# From 127.0.0.1: closed at once, logged, and the port stays open for 127.0.0.2.
got=$(timeout 5 socat -u "TCP:127.0.0.1:$PRE_PORT,bind=127.0.0.1" STDOUT 2>&1 </dev/null || true)
expect_eq "" "$got" "a connection from another address reads nothing"
p2m_bg pod_pre socat -u "TCP:127.0.0.1:$PRE_PORT,bind=127.0.0.2" STDOUT
POD_PRE=$P2M_BG_PID
p2m_wait_until "the relay logs the refused address" \
    p2m_log_has relay "event=conn_refused lease=$PRE_PORT kind=pre label=pre fd=[0-9]* peer=127.0.0.1 want=127.0.0.2"
p2m_wait_until "127.0.0.2's pre-connection counts as idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" pre
p2m_wait_until "port $PRE_PORT stops listening after its one connection" p2m_not_listening "$PRE_PORT"
p2m_alive "$POD_PRE" || fail "the pre-connection from 127.0.0.2 was closed"
p2m_ok

# ---------------------------------------------------------------- an unconnected lease expires

p2m_reg demo "Bearer $DEMO_SESSION"
expect_registered "a registration nobody connects to"
P_UNUSED=$PORT
ttl=$(rcli TTL "p2m:lease:$P_UNUSED")
((ttl > 0 && ttl <= PRECONNECT)) || fail "lease $P_UNUSED TTL $ttl, want 1-$PRECONNECT"
p2m_ok
p2m_wait_until "lease $P_UNUSED expires" p2m_redis_is 0 EXISTS "p2m:lease:$P_UNUSED"
p2m_wait_until "the relay closes $P_UNUSED" p2m_not_listening "$P_UNUSED"

# No leaked leases: once every unconnected pre lease has expired, only the idle one is left.
p2m_wait_until "only the idle pre-connection's lease is left" lease_count_is 1
expect_eq "p2m:lease:$PRE_PORT" "$(rcli --scan --pattern 'p2m:lease:*')" "the remaining lease"
# The relay's own listeners only: another test's may open inside the range meanwhile.
relay_ports=" $(ss -Htlnp | awk -v pid="pid=$RELAY_PID," 'index($0, pid) { p = $4; sub(/.*:/, "", p); print p }' | tr '\n' ' ') "
for ((p = RANGE_LO; p <= RANGE_HI; p++)); do
    [[ $relay_ports != *" $p "* ]] || fail "the relay still listens on $p with no lease"
done
p2m_ok
p2m_kill "$POD_PRE"
p2m_wait_until "the closed pre-connection's lease is deleted" lease_count_is 0
p2m_wait_until "its idle count is gone" p2m_redis_is "" HGET "p2m:idle:$NAME" pre

# ---------------------------------------------------------------- no free port (1.2 step 5)

# The relay restarts with a one-port range (the registrar reads ranges from the heartbeat) and
# an IPv6 public address, which the 200 body writes in brackets.
jq --arg p "$ONE_PORT-$ONE_PORT" '.relay.ports = $p | .public_address = "::1"' "$P2M_CONFIG" >"$T/one.json"
p2m_kill "$RELAY_PID"
p2m_start_relay "$T/one.json" relay-one
RANGE_LO=$ONE_PORT RANGE_HI=$ONE_PORT RELAY_ADDR_RE='\[::1\]'
p2m_reg demo "Bearer $DEMO_SESSION"
expect_registered "registration on a one-port relay"
expect_eq "[::1]:$ONE_PORT" "$(body)" "the only port, at the relay's IPv6 address"
RELAY_ADDR_RE='127\.0\.0\.1'
# Connected, the lease lives as long as the pod does: the next request deterministically finds
# no port.
p2m_bg pod_one socat -u "TCP:127.0.0.1:$ONE_PORT,bind=127.0.0.1" STDOUT
POD_ONE=$P2M_BG_PID
p2m_wait_until "the pre-connection on $ONE_PORT is idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" demo
p2m_reg demo "Bearer $DEMO_SESSION"
expect_refused 503 "no free port" "registration with every port leased"
expect_eq 5 "$(hdr retry-after)" "503 Retry-After"
p2m_kill "$POD_ONE"
p2m_wait_until "no lease is left" lease_count_is 0

# ---------------------------------------------------------------- the relay cannot bind (3.2, 3.3)

# Two ports, the first held by another program: the relay reports "fail", the registrar marks it
# busy and leases the other one; once that is taken too, 503.
p2m_kill "$RELAY_PID"
p2m_bg squatter socat "TCP-LISTEN:$SQUAT_PORT,bind=127.0.0.1,reuseaddr,fork" /dev/null
SQUATTER=$P2M_BG_PID
p2m_wait_until "the squatter listens on $SQUAT_PORT" p2m_listening "$SQUAT_PORT"
jq --arg p "$SQUAT_PORT-$FREE_PORT" '.relay.ports = $p' "$P2M_CONFIG" >"$T/two.json"
p2m_start_relay "$T/two.json" relay-two
RANGE_LO=$SQUAT_PORT RANGE_HI=$FREE_PORT
p2m_reg demo "Bearer $DEMO_SESSION"
expect_registered "registration with one of two ports taken by another program"
expect_eq "$FREE_PORT" "$PORT" "the port the relay could bind"
p2m_bg pod_two socat -u "TCP:127.0.0.1:$FREE_PORT,bind=127.0.0.1" STDOUT
POD_TWO=$P2M_BG_PID
p2m_wait_until "the pre-connection on $FREE_PORT is idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" demo
p2m_reg demo "Bearer $DEMO_SESSION"
expect_http 503 "registration when the only other port cannot be bound"
expect_match '^(no free port|relay could not listen)$' "$(body)" "503 body"
expect_eq 5 "$(hdr retry-after)" "503 Retry-After"
count_fail 503
expect_eq 1 "$(rcli GET "p2m:portbusy:$NAME:$SQUAT_PORT")" "the squatted port is marked busy"
ttl=$(rcli TTL "p2m:portbusy:$NAME:$SQUAT_PORT")
((ttl > 0 && ttl <= 60)) || fail "portbusy TTL $ttl, want 1-60"
p2m_ok
expect_eq 0 "$(rcli EXISTS "p2m:lease:$SQUAT_PORT")" "no lease on the squatted port"
p2m_kill "$POD_TWO"
p2m_kill "$SQUATTER"
p2m_wait_until "no lease is left" lease_count_is 0

# ---------------------------------------------------------------- a relay that never answers (3.2)

# A heartbeat with something subscribed to the relay's channel that never answers: the registrar
# waits at most 3 s for "PORT ok", answers 503 and gives the pending lease back at once rather
# than after its TTL.
p2m_kill "$RELAY_PID"
ghost_heartbeat() {
    rcli HSET p2m:relay:ghost address 127.0.0.1 ports "$GHOST_PORT-$GHOST_PORT" started "$(date +%s)" >/dev/null
    rcli EXPIRE p2m:relay:ghost 60 >/dev/null
    rcli SADD p2m:relays ghost >/dev/null
}
ghost_heartbeat
p2m_bg ghostsub redis-cli -s "$P2M_REDIS_SOCK" SUBSCRIBE p2m:relay:ghost
GHOST_SUB=$P2M_BG_PID
ghost_subscribed() { [[ $(rcli PUBSUB NUMSUB p2m:relay:ghost | tail -n 1) == 1 ]]; }
p2m_wait_until "the silent subscriber is there" ghost_subscribed
p2m_reg demo "Bearer $DEMO_SESSION"
expect_refused 503 "relay did not answer" "registration on a relay that never answers"
expect_eq 5 "$(hdr retry-after)" "503 Retry-After"
p2m_wait_until "the abandoned pending lease is deleted" lease_count_is 0
p2m_kill "$GHOST_SUB"

# A heartbeat with nothing behind it at all (a relay killed with kill -9, its heartbeat not yet
# lapsed): nobody receives the lease's announcement, so the registrar takes the relay out at once
# (event=relay_gone) instead of waiting out the bind timeout, and with no other relay answers 503.
p2m_reg demo "Bearer $DEMO_SESSION"
expect_refused 503 "no relay is running" "registration on a relay that is gone"
expect_eq 0 "$(rcli EXISTS p2m:relay:ghost)" "the gone relay's heartbeat is removed"
p2m_log_has registrar "event=relay_gone relay=ghost " || fail "no event=relay_gone for the ghost relay"
p2m_ok
p2m_wait_until "the abandoned pending lease is deleted" lease_count_is 0
rcli DEL p2m:relay:ghost >/dev/null
rcli SREM p2m:relays ghost >/dev/null
RANGE_LO=$MAIN_LO RANGE_HI=$MAIN_HI
p2m_start_relay "$P2M_CONFIG" relay-three

# ---------------------------------------------------------------- /metrics

hreq "$P2M_METRICS_URL"
expect_http 200 "/metrics"
METRICS=$(body)
metric() { sed -n "s/^$1 //p" <<<"$METRICS"; }
expect_eq "$REG_OK" "$(metric pipe2me_registrations_total)" "pipe2me_registrations_total (successful registrations)"
((REG_OK > 0)) || fail "no registration succeeded"
for reason in "${!FAILS[@]}"; do
    expect_eq "${FAILS[$reason]}" "$(metric "pipe2me_failures_total{reason=\"$reason\"}")" \
        "pipe2me_failures_total{reason=\"$reason\"}"
done
for reason in replay badtoken nopod noauth badsession 403 429 503; do
    [[ -n ${FAILS[$reason]:-} ]] || fail "the test never produced failure reason $reason"
done
p2m_ok

# ---------------------------------------------------------------- the registrar's own health

p2m_alive "$REGISTRAR_PID" || fail "the registrar died"
p2m_ok
p2m_health_is 200 || fail "/_health is not 200 at the end"
p2m_ok
expect_log_clean registrar 'ERROR: AddressSanitizer|runtime error:'
# Never log secrets or OTPs (STYLE.md): no session credential and no code we sent.
for s in "${SESSIONS[@]}" "${P2M_CODES[@]}" "${P2M_SECRET[@]}" "$OLD_SECRET"; do
    ! grep -qwF -- "$s" "$T/registrar.log" || fail "registrar.log contains a credential or code: $s"
done
p2m_ok

# ---------------------------------------------------------------- what the limiters do not count

# A request without a pod ID to count against (no or a malformed Authorization) is refused for
# what it is, even from an address where an ID waits, and counts nothing: it checks no code.
p2m_reg -s 127.0.0.3 lock ""
expect_refused 401 "Authorization header missing" "no Authorization from the guessing address"
p2m_reg -s 127.0.0.3 lock 'TOTP username="lock", response=123456x'
expect_http 401 "malformed Authorization from the guessing address"
expect_match '^malformed Authorization' "$(body)" "malformed Authorization: body"
expect_eq 8 "$(rcli HGET p2m:limit:pair:lock:127.0.0.3 n)" "failures of (lock, 127.0.0.3) at the end"

# ---------------------------------------------------------------- label rm revokes sessions

# OPERATIONS.md: removing a label revokes its session credentials. A credential issued for the
# label stays dead when the label is given back to the same pod (127.0.0.12).
p2m_totp_fresh relabel
p2m_reg relabel "$(p2m_totp_auth relabel "$CODE_")"
expect_registered "registration of pod relabel"
expect_session "registration of pod relabel"
RELABEL_SESSION=$SESSION
expect_status 0 admin label rm relabel
p2m_reg -s 127.0.0.12 relabel "Bearer $RELABEL_SESSION"
expect_http '401|403' "a session whose label was removed"
expect_status 0 admin label add relabel relabel
p2m_reg -s 127.0.0.12 relabel "Bearer $RELABEL_SESSION"
expect_refused 401 "session expired or revoked" "a session whose label was removed and given back"
