#!/usr/bin/env bash
# pipe2me-pod setup, list, env, test and run of tunnel sets (PROTOCOL 1.6, pipe2me-pod(1)): a token
# with 2 uses and 2 tunnels; `setup --protocols https,http --local-ports A,B` prints LABEL.DOMAIN
# and keeps the set in DIR/LABEL.DOMAIN/; `list` shows both URLs; `test` serves them with echo
# services (https with the pod's certificate) and curl --cacert through the registrar's redirects
# gets GET /hello back over both; a second setup works, a third is refused with 401 and makes
# nothing; an expired token and 3 tunnels on a 2-tunnel token are refused; bad arguments spend
# nothing; eight parallel `setup`s of a 1-use token make exactly one pod and one set.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod

p2m_start_system
REG=https://pipe2me.localhost:$P2M_HTTPS_PORT
SETS=$T/sets

pods() { admin --json pod ls | jq -r '.[].id' | sort; }
uses_left() { admin token ls --json | jq -r --arg id "$1" '.[] | select(.id == $id) | .uses_left'; }
new_token() {
    admin --json token add "$@" >"$T/tok.json" || fail "token add $* failed"
    TOKEN=$(jq -r .token "$T/tok.json") TOKEN_ID=$(jq -r .id "$T/tok.json")
}
# pod_setup ARGS...: pipe2me-pod setup against the registrar into $SETS; RC, $T/setup.out, $T/setup.err.
pod_setup() {
    RC=0
    "$POD_BIN" setup --registrar "$REG" --cacert "$P2M_CA" --dir "$SETS" "$@" >"$T/setup.out" 2>"$T/setup.err" || RC=$?
}
sets() { find "$SETS" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort; }

# ---------------------------------------------------------------- first use
new_token --uses 2 --tunnels 2
p2m_free_port PA
p2m_free_port PB
pod_setup --auth "$TOKEN" --protocols https,http --local-ports "$PA,$PB"
expect_eq 0 "$RC" "setup exit status ($(cat "$T/setup.err"))"
FQDN=$(cat "$T/setup.out")
expect_match '^[a-z]+-[a-z]+-[a-z]+\.pipe2me\.localhost$' "$FQDN" "setup prints the FQDN"
LABEL=${FQDN%%.*}
SET=$SETS/$FQDN
expect_eq 600 "$(stat -c %a "$SET/pod.json")" "the run file is private"
expect_eq 700 "$(stat -c %a "$SET")" "the set's directory is private"
cmp -s "$SET/cacert.pem" "$P2M_CA" || fail "cacert.pem is not the registrar's CA"
cmp -s "$SET/registrar-ca.pem" "$P2M_CA" || fail "registrar-ca.pem is not the --cacert given"
expect_eq "" "$(find "$SETS" -maxdepth 1 -name '*setup-answer*')" "no answer file left behind"
expect_eq "$LABEL" "$(jq -r '.labels[0]' "$SET/pod.json")" "the run file's label"
expect_eq "https|127.0.0.1:$PA|true http|127.0.0.1:$PB|null" \
    "$(jq -r '[.services[] | "\(.protocol)|\(.forward)|\(.tls_terminate)"] | join(" ")' "$SET/pod.json")" "the services"
expect_eq 1 "$(uses_left "$TOKEN_ID")" "one use left"
ID1=$(jq -r .id "$SET/pod.json")
pods | grep -qx "$ID1" || fail "pod $ID1 not in pod ls"

# ---------------------------------------------------------------- list and env
URL_S="https://$FQDN:$P2M_HTTPS_PORT/" URL_H="http://$FQDN:$P2M_HTTP_PORT/"
"$POD_BIN" list --dir "$SETS" >"$T/list.txt" || fail "list failed: $(cat "$T/list.txt")"
grep -q "^$FQDN  stopped$" "$T/list.txt" || fail "list: no stopped $FQDN: $(cat "$T/list.txt")"
grep -q "https  $URL_S  127.0.0.1:$PA" "$T/list.txt" || fail "list: no https URL: $(cat "$T/list.txt")"
grep -q "http   $URL_H  127.0.0.1:$PB" "$T/list.txt" || fail "list: no http URL: $(cat "$T/list.txt")"
"$POD_BIN" list --dir "$SETS" --json >"$T/list.json" || fail "list --json failed"
expect_eq "$URL_S $URL_H" "$(jq -r --arg f "$FQDN" '.sets[] | select(.fqdn == $f) | [.services[].url] | join(" ")' "$T/list.json")" \
    "list --json: both URLs"
expect_eq "false|$ID1" "$(jq -r '.sets[0] | "\(.running)|\(.id)"' "$T/list.json")" "list --json: stopped, its ID"
env_out=$("$POD_BIN" env "$FQDN" --dir "$SETS") || fail "env $FQDN failed"
expect_eq "$FQDN|$URL_S|$URL_H|127.0.0.1:$PA|$SET/cacert.pem|$ID1|$SET/pod.json" \
    "$(eval "$env_out" && echo "$P2M_FQDN|$P2M_URL_HTTPS|$P2M_URL_HTTP|$P2M_LOCAL_HTTPS|$P2M_CACERT|$P2M_ID|$P2M_RUN_FILE")" \
    "env's variables"
grep -qi secret <<<"$env_out" && fail "env prints something about the secret: $env_out"
code=0
"$POD_BIN" env nosuch.pipe2me.localhost --dir "$SETS" 2>"$T/env.err" || code=$?
expect_eq 2 "$code" "env of an unknown set"
expect_match "no tunnel set nosuch.pipe2me.localhost in $SETS" "$(cat "$T/env.err")" "env's error"

# ---------------------------------------------------------------- test: echo behind both services
since=$(($(date +%s) - 1))
p2m_bg settest "$POD_BIN" test "$FQDN" --dir "$SETS"
TEST_PID=$P2M_BG_PID
for svc in "$LABEL" "$LABEL-http"; do
    p2m_wait_until -t 90 "service $svc fills its pool" p2m_pool_full "$SET/state/$svc" 4 "$since"
done
got=$(curl -sS -L --max-time 20 --cacert "$SET/cacert.pem" "${URL_S}hello") || fail "curl over https failed"
expect_match "^GET /hello HTTP/1.1" "$got" "GET /hello comes back over https"
got=$(curl -sS -L --max-time 20 "${URL_H}hello") || fail "curl over http failed"
expect_match "^GET /hello HTTP/1.1" "$got" "GET /hello comes back over http"
# The https service is TLS served by the pod with its own certificate for the FQDN.
curl -sS -L -v --max-time 20 --cacert "$SET/cacert.pem" -o /dev/null "${URL_S}x" 2>"$T/curl-v.txt" || fail "curl -v failed"
sans=$(grep -i 'subjectAltName:\|subject:' "$T/curl-v.txt" | tail -n 2)
expect_match "subject: CN=$FQDN" "$sans" "the https service's certificate is the pod's own, for $FQDN"
"$POD_BIN" list --dir "$SETS" | grep -q "^$FQDN  running (pid $TEST_PID)$" || fail "list does not show the set running"
p2m_stop settest "$TEST_PID"

# ---------------------------------------------------------------- run, second use, third use
p2m_free_port PC
pod_setup --auth "$TOKEN" --protocols tcp --local-ports "$PC" --label my-own
expect_eq "0|my-own.pipe2me.localhost" "$RC|$(cat "$T/setup.out")" "second use, a wanted label"
expect_eq 0 "$(uses_left "$TOKEN_ID")" "no use left"
before_pods=$(pods) before_sets=$(sets)
pod_setup --auth "$TOKEN" --protocols https --local-ports "$PC"
expect_eq 1 "$RC" "third use's exit status"
expect_match "setup refused: 401 setup token unknown, expired or spent" "$(cat "$T/setup.err")" "third use's error"
expect_eq "" "$(cat "$T/setup.out")" "third use prints no FQDN"
expect_eq "$before_pods" "$(pods)" "no pod made by the third use"
expect_eq "$before_sets" "$(sets)" "no set or file made by the third use"
since=$(($(date +%s) - 1))
p2m_bg setrun "$POD_BIN" run my-own.pipe2me.localhost --dir "$SETS"
p2m_wait_until -t 90 "run my-own fills its pool" p2m_pool_full "$SETS/my-own.pipe2me.localhost/state/my-own-tcp" 4 "$since"
p2m_stop setrun "$P2M_BG_PID"

# ---------------------------------------------------------------- refusals that spend nothing
new_token --uses 2 --tunnels 2
for bad in "--protocols https,http --local-ports $PA" "--protocols https,https --local-ports $PA,$PB" \
    "--protocols ftp --local-ports $PA" "--local-ports 0" "--local-ports $PA --label -bad-"; do
    # shellcheck disable=SC2086 # the options are words
    pod_setup --auth "$TOKEN" $bad
    expect_eq 2 "$RC" "setup $bad: exit status"
done
pod_setup --auth "bad token" --local-ports "$PA"
expect_eq 2 "$RC" "a token with a space"
grep -q "bad token" "$T/setup.err" && fail "the token is quoted back: $(cat "$T/setup.err")"
pod_setup --auth "$TOKEN" --protocols https,http,tcp --local-ports "$PA,$PB,$PC"
expect_eq 1 "$RC" "3 tunnels on a 2-tunnel token"
expect_match "setup refused: 403 token allows 2 services, asked for 3" "$(cat "$T/setup.err")" "its error"
expect_eq 2 "$(uses_left "$TOKEN_ID")" "the refusals spent nothing"
expect_eq "$before_sets" "$(sets)" "the refusals made no set"

new_token --expires 1s
deadline=$((SECONDS + 10))
while (($(date +%s) <= $(jq -r .expires "$T/tok.json"))); do
    ((SECONDS < deadline)) || fail "the token did not expire in 10 s"
    sleep 0.2
done
pod_setup --auth "$TOKEN" --local-ports "$PA"
expect_eq 1 "$RC" "an expired token"
expect_match "setup refused: 401" "$(cat "$T/setup.err")" "an expired token's error"
expect_eq "$before_pods" "$(pods)" "no pod made by the expired token"

# ---------------------------------------------------------------- a token with a label prefix
new_token --uses 3 --label-prefix acme
pod_setup --auth "$TOKEN" --local-ports "$PA"
expect_eq 0 "$RC" "a generated label under the prefix ($(cat "$T/setup.err"))"
expect_match '^acme-[a-z]+-[a-z]+-[a-z]+\.pipe2me\.localhost$' "$(cat "$T/setup.out")" "the label has the prefix"
pod_setup --auth "$TOKEN" --local-ports "$PA" --label door
expect_eq 1 "$RC" "a wanted label outside the prefix"
expect_match "setup refused: 403 label not allowed" "$(cat "$T/setup.err")" "its error"
pod_setup --auth "$TOKEN" --local-ports "$PA" --label ACME-door
expect_eq "0|acme-door.pipe2me.localhost" "$RC|$(cat "$T/setup.out")" "a wanted label under the prefix"
expect_eq 1 "$(uses_left "$TOKEN_ID")" "the refusal spent nothing"
before_pods=$(pods) before_sets=$(sets)

# ---------------------------------------------------------------- eight at once, one use
new_token --uses 1
par=()
for i in $(seq 8); do
    (
        rc=0
        "$POD_BIN" setup --registrar "$REG" --cacert "$P2M_CA" --dir "$SETS" --auth "$TOKEN" --local-ports "$PA" \
            >"$T/par.$i.out" 2>"$T/par.$i.err" || rc=$?
        echo "$rc" >"$T/par.$i.rc"
    ) &
    par+=($!)
done
wait "${par[@]}"
expect_eq 1 "$(cat "$T"/par.*.rc | grep -c '^0$')" "exactly one setup of eight succeeds"
expect_eq 7 "$(cat "$T"/par.*.rc | grep -c '^1$')" "seven are refused"
expect_eq 7 "$(cat "$T"/par.*.err | grep -c 'setup refused: 401')" "with 401"
expect_eq 1 "$(comm -13 <(echo "$before_pods") <(pods) | wc -l)" "exactly one new pod"
expect_eq 1 "$(comm -13 <(echo "$before_sets") <(sets) | wc -l)" "exactly one new set"
expect_eq "" "$(find "$SETS" -maxdepth 1 -name '*setup-answer*')" "no answer file left behind"

expect_log_clean registrar
