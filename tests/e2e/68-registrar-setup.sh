#!/usr/bin/env bash
# POST /setup (PROTOCOL 1.6): a token with 2 uses and 2 tunnels makes a pod per use, whose answer
# is a provisioning JSON that `pipe2me-pod run --config` registers with (forwards and cacert added);
# the third use is 401 and makes nothing; 3 protocols for 2 tunnels, a bad body and a taken wanted
# label are refused without spending a use; an expired token is 401; ten parallel redemptions of a
# 1-use token make exactly one pod; every request is one event=setup line.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod

p2m_start_system
URL=https://pipe2me.localhost:$P2M_HTTPS_PORT/setup

# setup TOKEN BODY [CURL_ARGS...]: POST /setup; CODE, $T/resp.h and $T/resp.b as hreq leaves them.
setup() { hreq -H "Authorization: Bearer $1" -H 'Content-Type: application/json' -d "$2" "${@:3}" "$URL"; }
pods() { admin --json pod ls | jq -r '.[].id' | sort; }
uses_left() { admin token ls --json | jq -r --arg id "$1" '.[] | select(.id == $id) | .uses_left'; }
# new_token ARGS...: TOKEN and TOKEN_ID of a new token.
new_token() {
    admin --json token add "$@" >"$T/tok.json" || fail "token add $* failed"
    TOKEN=$(jq -r .token "$T/tok.json") TOKEN_ID=$(jq -r .id "$T/tok.json")
}

# ---------------------------------------------------------------- first use: a pod that registers
new_token --uses 2 --tunnels 2
setup "$TOKEN" '{"protocols":["https","http"]}'
expect_http 200 "first use"
expect_eq application/json "$(hdr content-type)" "content type"
cp "$T/resp.b" "$T/p1.json"
ID1=$(jq -r .id "$T/p1.json") L1=$(jq -r '.labels[0]' "$T/p1.json")
expect_match '^setup-[0-9a-f]{12}$' "$ID1" "the pod ID"
expect_match '^[a-z]+-[a-z]+-[a-z]+$' "$L1" "a generated label"
expect_eq "6|pipe2me.localhost|https://pipe2me.localhost:$P2M_HTTPS_PORT" \
    "$(jq -r '"\(.digits)|\(.domain)|\(.registrar)"' "$T/p1.json")" "digits, domain, registrar"
expect_match '^[A-Z2-7]{32}$' "$(jq -r .secret "$T/p1.json")" "the secret"
expect_match '^otpauth://totp/' "$(jq -r .otpauth "$T/p1.json")" "the otpauth URI"
expect_eq "[{\"label\":\"$L1\",\"protocol\":\"https\",\"url\":\"https://$L1.pipe2me.localhost:$P2M_HTTPS_PORT/\"},{\"label\":\"$L1\",\"protocol\":\"http\",\"url\":\"http://$L1.pipe2me.localhost:$P2M_HTTP_PORT/\"}]" \
    "$(jq -c .services "$T/p1.json")" "the services with their URLs, no forward"
pods | grep -qx "$ID1" || fail "pod $ID1 not in pod ls: $(admin pod ls)"
admin label ls | grep -q "$L1.*$ID1" || fail "label $L1 of $ID1 not in label ls: $(admin label ls)"
expect_eq 1 "$(uses_left "$TOKEN_ID")" "one use left"
p2m_log_has registrar "event=setup status=200 label=$L1 pod=$ID1 addr=127.0.0.1" || fail "no event=setup line for the first use"

(umask 077 && jq --arg ca "$T/state/ca.pem" '.cacert = $ca | .services |= map(. + {forward: "127.0.0.1:1", pool: 2})' \
    "$T/p1.json" >"$T/run.json") || fail "jq could not make the run file"
RUN=$T/run
since=$(($(date +%s) - 1))
p2m_bg setuppod "$POD_BIN" run --config "$T/run.json" --state-dir "$RUN"
for svc in "$L1" "$L1-http"; do
    p2m_wait_until -t 90 "service $svc fills its pool" p2m_pool_full "$RUN/$svc" 2 "$since"
done

# ---------------------------------------------------------------- refusals that spend nothing
before=$(pods)
setup "$TOKEN" '{"protocols":["https","http","tcp"]}'
expect_http 403 "3 protocols for 2 tunnels"
expect_match 'token allows 2 services, asked for 3' "$(body)" "the reason"
setup "$TOKEN" '{"protocols":["ftp"]}'
expect_http 400 "a bad body"
setup "$TOKEN" "{\"protocols\":[\"http\"],\"label\":\"$L1\"}"
expect_http 409 "a taken wanted label"
expect_eq "label taken" "$(body)" "409 body"
hreq -X GET -H "Authorization: Bearer $TOKEN" "$URL"
expect_http 405 "GET /setup"
hreq -H 'Content-Type: application/json' -d '{"protocols":["http"]}' "$URL"
expect_http 401 "no Authorization"
expect_eq "$before" "$(pods)" "no pod made by the refusals"
expect_eq 1 "$(uses_left "$TOKEN_ID")" "still one use left"

# ---------------------------------------------------------------- second use (a wanted label), third
setup "$TOKEN" '{"protocols":["tcp"],"label":"my-own"}'
expect_http 200 "second use"
expect_eq "my-own" "$(jq -r '.labels[0]' "$T/resp.b")" "the wanted label"
expect_eq "[{\"label\":\"my-own\",\"protocol\":\"tcp\"}]" "$(jq -c .services "$T/resp.b")" "one tcp service"
expect_eq 0 "$(uses_left "$TOKEN_ID")" "no use left"
before=$(pods)
setup "$TOKEN" '{"protocols":["https"]}'
expect_http 401 "third use"
expect_eq "setup token unknown, expired or spent" "$(body)" "401 body"
expect_eq "$before" "$(pods)" "no pod made by the third use"
setup "p2mt_$(printf 'x%.0s' {1..43})" '{"protocols":["https"]}'
expect_http 401 "an unknown token"
expect_eq "$before" "$(pods)" "no pod made by an unknown token"

# ---------------------------------------------------------------- an expired token
new_token --expires 1s
deadline=$((SECONDS + 10))
while (($(date +%s) <= $(jq -r .expires "$T/tok.json"))); do
    ((SECONDS < deadline)) || fail "the token did not expire in 10 s"
    sleep 0.2
done
setup "$TOKEN" '{"protocols":["https"]}'
expect_http 401 "an expired token"
expect_eq "$before" "$(pods)" "no pod made by an expired token"

# ---------------------------------------------------------------- ten at once, one use
new_token --uses 1
par=()
for i in $(seq 10); do
    curl -4 -sS --max-time 20 --cacert "$P2M_CA" -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $TOKEN" \
        -d '{"protocols":["http"]}' "$URL" >"$T/par.$i" &
    par+=($!)
done
wait "${par[@]}" # not a bare wait: that would wait for the registrar too
expect_eq 1 "$(cat "$T"/par.* | grep -c '^200$')" "exactly one 200 of ten"
expect_eq 9 "$(cat "$T"/par.* | grep -c '^401$')" "nine 401s"
expect_eq 1 "$(comm -13 <(echo "$before") <(pods) | wc -l)" "exactly one new pod"

expect_log_clean registrar
