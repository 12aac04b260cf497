#!/usr/bin/env bash
# Fair authentication (issue 14, docs/PROTOCOL.md 1.2, docs/OPERATIONS.md "Security model"): the
# limiters punish the guesser, not the pod.
#
# Real redis-server, registrar, relay and pipe2me pods on loopback; the guesser and the checks use
# curl (with --interface for the source address) and oathtool.
#
# 1. An unknown pod ID and a wrong code get byte-identical answers (headers but Date, and body).
# 2. 100 wrong codes for pod A from 127.0.0.9 and 127.0.0.10, while consumers keep using A: A, at
#    127.0.0.1, keeps its pool full throughout and registers again with TOTP (its session lives
#    15 s) while the guesses come in; the guessing addresses are backed off (429, Retry-After).
# 3. A broken pod B (wrong secret) at 127.0.0.1 fails and is backed off; pod C, new at 127.0.0.1,
#    registers and keeps its pool meanwhile.
# 4. A pod with 8-digit codes works with `oathtool -d 8`, and as a pipe2me pod.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl oathtool jq socat ss cmp
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
GUESSES=100


# consume LABEL Q N: one consumer through consumer port Q, its echo checked; then the pod of LABEL
# (state in $T/LABEL, pool of 2) has its pool back.
consume() {
    local got
    got=$(printf '%s-%s\n' "$1" "$3" | socat -t 5 -T 10 - "TCP:127.0.0.1:$2") || fail "consumer $3 of $1: socat failed"
    expect_eq "$1-$3" "$got" "consumer $3 of $1: the echo"
    p2m_wait_until -t 60 "pod $1 refilled its pool after consumer $3" p2m_pool_full "$T/$1" 2 "$(($(date +%s) - 1))"
}

# ---------------------------------------------------------------- setup

p2m_start_system '{"registrar": {"session_ttl": 15, "auth_fail_limit": 5, "auth_backoff_max": 900}}'
p2m_free_port ECHO
p2m_bg echo socat "TCP-LISTEN:$ECHO,bind=127.0.0.1,reuseaddr,fork" EXEC:cat
p2m_wait_until "the echo backend listens" p2m_listening "$ECHO"
BASE=https://pipe2me.localhost:$P2M_HTTPS_PORT
for p in a b c; do expect_status 0 admin pod add "$p" --label "$p" -o "$T/$p.json"; done
SECRET_A=$(jq -er .secret "$T/a.json")
p2m_start_pod a a "127.0.0.1:$ECHO"
p2m_consumer_port QA https a
# B, with a wrong secret, at the same address: it fails from now on (section 3).
(umask 077 && jq '.secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"' "$T/b.json" >"$T/b-broken.json")
p2m_bg b "$P2M_BUILD_DIR/pod/pipe2me-pod" register --provision "$T/b-broken.json" --label b --forward "127.0.0.1:$ECHO" \
    --cacert "$T/state/ca.pem" --state-dir "$T/b" --pool 2

# ---------------------------------------------------------------- 1. no enumeration

# From two fresh addresses, so that the limiters are in the same state for both.
p2m_wrong_code "$SECRET_A"
curl -4 -sS --max-time 10 --cacert "$P2M_CA" --interface 127.0.0.20 -X PUT -D "$T/nopod.h" -o "$T/nopod.b" \
    -H "Authorization: $(p2m_totp_auth nosuchpod "$CODE_")" "$BASE/register/a"
curl -4 -sS --max-time 10 --cacert "$P2M_CA" --interface 127.0.0.21 -X PUT -D "$T/badtoken.h" -o "$T/badtoken.b" \
    -H "Authorization: $(p2m_totp_auth a "$CODE_")" "$BASE/register/a"
for f in nopod badtoken; do tr -d '\r' <"$T/$f.h" | grep -vi '^date:' >"$T/$f.hh"; done
expect_match '^HTTP/[0-9.]+ 401' "$(head -n 1 "$T/nopod.hh")" "an unknown pod ID: 401"
cmp -s "$T/nopod.hh" "$T/badtoken.hh" || fail "unknown ID and wrong code: the headers differ"$'\n'"$(diff "$T/nopod.hh" "$T/badtoken.hh")"
p2m_ok
cmp -s "$T/nopod.b" "$T/badtoken.b" || fail "unknown ID and wrong code: the bodies differ"
p2m_ok
expect_eq "authentication failed" "$(cat "$T/badtoken.b")" "the body of both"
p2m_wait_until "the log still tells them apart" p2m_log_has registrar 'event=register status=401 label=a .*pod=nosuchpod addr=127.0.0.20 .*reason="unknown pod"'

# ---------------------------------------------------------------- 2. a stranger guesses A's codes

first_guess=$(($(wc -l <"$T/registrar.log") + 1))
declare -A STATUS=() BACKED_OFF=()
for ((i = 1; i <= GUESSES; i++)); do
    src=127.0.0.$((9 + i % 2))
    p2m_wrong_code "$SECRET_A"
    hreq --interface "$src" -X PUT -H "Authorization: $(p2m_totp_auth a "$CODE_")" "$BASE/register/a"
    expect_http '401|429' "guess $i from $src"
    STATUS[$CODE]=$((${STATUS[$CODE]:-0} + 1))
    if [[ $CODE == 429 ]]; then
        expect_match '^[1-9][0-9]*$' "$(hdr retry-after)" "guess $i: Retry-After"
        BACKED_OFF[$src]=$((${BACKED_OFF[$src]:-0} + 1))
    fi
    # Meanwhile consumers keep using A, which refills (with TOTP once its session has expired).
    ((i % 10 != 0)) || consume a "$QA" "$i"
    sleep 0.3
done
last_guess=$(wc -l <"$T/registrar.log")
echo "guesses: ${STATUS[401]:-0} checked and refused (401), ${STATUS[429]:-0} backed off (429)"
((${STATUS[429]:-0} >= GUESSES / 2)) || fail "only ${STATUS[429]:-0} of $GUESSES guesses were backed off"
p2m_ok
# Both guessing addresses were backed off, by the ID's limiter (neither is A's own address).
for src in 127.0.0.9 127.0.0.10; do
    ((${BACKED_OFF[$src]:-0} >= GUESSES / 4)) || fail "$src: only ${BACKED_OFF[$src]:-0} guesses backed off"
    p2m_ok
done
# It counted every checked guess, and the wrong code of section 1; nothing of A's own.
want=$((${STATUS[401]:-0} + 1))
((want == $(rcli HGET p2m:limit:id:a n))) || fail "the ID's limiter counted $(rcli HGET p2m:limit:id:a n), want $want"
p2m_ok
# A was never refused, and registered with TOTP while the guesses came in.
# (A 401 "session expired or revoked" is no refusal: it sends the pod back to TOTP.)
expect_eq 0 "$(p2m_log_count registrar 'event=register status=4[0-9]* label=a .*pod=a addr=127.0.0.1 .*reason="\(wrong\|too\|token\)')" \
    "refusals of pod a at 127.0.0.1"
totp_during=$(sed -n "${first_guess},${last_guess}p" "$T/registrar.log" |
    grep -c 'event=register status=200 label=a protocol=https pod=a addr=127.0.0.1 auth=totp' || true)
echo "pod a: $totp_during TOTP registrations from 127.0.0.1 between the first and the last guess"
((totp_during >= 1)) || fail "pod a did not register with TOTP while it was being guessed"
p2m_ok
# Its status is rewritten every second, and a registration may be on its way (the session expires
# every 15 s here): wait for a full pool rather than read one instant.
p2m_wait_until -t 60 "pod a has its pool of 2 (it was not locked out)" p2m_pool_full "$T/a" 2
p2m_log_has a 'event=register_limited' && fail "pod a was limited"
p2m_ok

# ---------------------------------------------------------------- 3. a broken neighbour

# B (started with the setup) tries once a TOTP step, backing off as pods do.
b_failed() { (($(p2m_log_count registrar 'event=register status=401 label=b .*pod=b addr=127.0.0.1 ') >= 2)); }
p2m_wait_until -t 120 "pod b fails twice" b_failed
# C, never seen before at 127.0.0.1, registers there and keeps its pool while B goes on failing.
p2m_start_pod c c "127.0.0.1:$ECHO"
p2m_consumer_port QC https c
for i in 1 2 3; do consume c "$QC" "$i"; done
expect_eq 0 "$(p2m_log_count registrar 'event=register status=4[0-9]* label=c ')" "refusals of pod c"
b_fails=$(p2m_log_count registrar 'event=register status=\(401\|429\) label=b ')
((b_fails >= 2 && $(rcli HGET p2m:limit:pair:b:127.0.0.1 n) >= 2)) || fail "pod b: $b_fails refusals, limiter $(rcli HGETALL p2m:limit:pair:b:127.0.0.1)"
p2m_ok
echo "pod b: $b_fails refusals; pod c: pool full after 3 consumers"

# ---------------------------------------------------------------- 4. eight digits

# By hand (pod eight) and as a pipe2me pod (pod eight2): separate pods, so that neither spends the
# other's step.
for p in eight eight2; do
    expect_status 0 admin pod add "$p" --label "$p" --digits 8 -o "$T/$p.json"
    expect_eq 8 "$(jq -r .digits "$T/$p.json")" "the provisioning file of $p says 8 digits"
done
SECRET_8=$(jq -er .secret "$T/eight.json")
code6=$(oathtool --totp -b "$SECRET_8")
hreq --interface 127.0.0.30 -X PUT -H "Authorization: $(p2m_totp_auth eight "$code6")" "$BASE/register/eight"
expect_http 401 "a 6-digit code for an 8-digit pod"
code8=$(oathtool --totp -d 8 -b "$SECRET_8")
expect_match '^[0-9]{8}$' "$code8" "oathtool -d 8"
hreq --interface 127.0.0.30 -X PUT -H "Authorization: $(p2m_totp_auth eight "$code8")" "$BASE/register/eight"
expect_http 200 "an 8-digit code"
p2m_start_pod eight2 eight2 "127.0.0.1:$ECHO"
p2m_consumer_port Q8 https eight2
consume eight2 "$Q8" 1

expect_log_clean registrar 'ERROR: AddressSanitizer|runtime error:'
