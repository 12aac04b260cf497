#!/usr/bin/env bash
# Taking a registrar out (PROTOCOL 1.7, OPERATIONS "Taking a registrar out"): two registrars, A and
# B, share one Redis and one relay; a pod registered with A serves `pipe2me-pod test`'s HTTP echo.
# `admin registrar ls` lists both from their heartbeats; `registrar drain A --to B`: A answers the
# pod's registrations with 307 to B (before looking at its credential), the pod follows and its
# registrations go to B, while consumers asking A are served throughout and the pod's registrar
# stays up, and a pod that starts meanwhile gets its certificate from B; `registrar undrain A` brings the pod's registrations back to A. A third registrar whose
# registrar.pods_to names a foreign host sends a pod there with 308: the pod refuses (logged), and
# nothing reaches that host, where a listener records every byte. A fourth whose pods_to names B
# answers 308: the pod follows once, then registers with B directly.
#
# Both registrars listen on 127.0.0.1 with ports of their own: a pod follows only to its
# registrar's host, DOMAIN or a name under it, and curl resolves pipe2me.localhost (and every
# name under it) to loopback 127.0.0.1, so a second loopback address (127.0.0.6) could not be
# reached by a name the pod may follow.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq socat
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_POOL=2

# ---------------------------------------------------------------- setup: A, B, the relay, a pod

p2m_start_system '{"registrar": {"name": "rega"}}'
PA=$P2M_HTTPS_PORT
URL_A=https://pipe2me.localhost:$PA

# B: A's configuration on ports of its own, with its own name and URL; A's state directory (its CA
# and certificate) is shared, so the pod's --cacert trusts both.
p2m_free_port PB
p2m_free_port PB_HTTP
p2m_free_port PB_METRICS
URL_B=https://pipe2me.localhost:$PB
jq --arg https "127.0.0.1:$PB" --arg http "127.0.0.1:$PB_HTTP" --arg metrics "127.0.0.1:$PB_METRICS" --arg url "$URL_B" \
    '.registrar += {name: "regb", https: $https, http: $http, metrics_listen: $metrics, url: $url}' \
    "$P2M_CONFIG" >"$T/b.json"
p2m_start_registrar "$T/b.json" registrar-b
REGB_PID=$REGISTRAR_PID

# registrars_are NAMES...: `admin registrar ls --json` names exactly these live registrars.
registrars_are() {
    [[ $(admin --json registrar ls | jq -r '[.[] | select(.live) | .name] | join(" ")') == "$*" ]]
}
p2m_wait_until -t 30 "admin registrar ls shows both registrars" registrars_are rega regb

admin --json registrar ls >"$OUT"
expect_eq "$URL_A" "$(json '.[] | select(.name == "rega") | .url')" "ls: A's URL"
expect_eq "$URL_B" "$(json '.[] | select(.name == "regb") | .url')" "ls: B's URL"
expect_eq false "$(json '.[] | select(.name == "rega") | .draining | tostring')" "ls: A serves"
admin registrar ls >"$OUT"
expect_match $'rega +'"$URL_A"' +[0-9T:-]+Z +serving' "$(cat "$OUT")" "ls table: A serving"

p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"
p2m_start_pod podecho echo "127.0.0.1:$ECHO_HTTP"

# consume TAG [LABEL]: a consumer asks A for LABEL (default echo; the registrar's 307 to the
# consumer port), then fetches /TAG there through the relay and the pod; each one takes a
# pre-connection, which the pod replaces with a registration.
consume() {
    local q got label=${2:-echo}
    p2m_consumer_port q https "$label"
    got=$(curl -sS --max-time 20 "http://$label.pipe2me.localhost:$q/$1") || fail "consumer $1: curl failed"
    expect_match "^GET /$1 HTTP/1\\.1"$'\r\n' "$got" "consumer $1 of $label is answered by the echo"
}
# registered_at LOG N [LABEL]: LOG has more than N successful registrations of LABEL (default echo).
registered_at() { (($(p2m_log_count "$1" "event=register status=200 label=${3:-echo} ") > $2)); }
# consume_until [-l LABEL] DESC CHECK...: consumers of LABEL (default echo) until CHECK holds (each
# makes the pod register again).
consume_until() {
    local label=echo desc i
    if [[ $1 == -l ]]; then
        label=$2
        shift 2
    fi
    desc=$1
    shift
    for ((i = 0; i < 200; i++)); do
        "$@" && {
            p2m_ok
            return 0
        }
        consume "c$i" "$label"
        sleep 0.2
    done
    fail "$desc: not after 200 consumers"
}

consume before
p2m_log_has registrar "event=register status=200 label=echo " || fail "the pod registered with A"
expect_eq 0 "$(p2m_log_count registrar-b 'event=register ')" "B has seen no registration yet"

# ---------------------------------------------------------------- drain A to B

expect_status 2 admin registrar drain rega --to "http://pipe2me.localhost:$PB"
expect_match '^pipe2me-admin: option --to: expected an https:// URL' "$(cat "$ERR")" "drain refuses http://"
expect_status 2 admin registrar drain nosuch --to "$URL_B"
expect_match 'no live registrar nosuch' "$(cat "$ERR")" "drain refuses an unknown registrar"
expect_status 0 admin registrar drain rega --to "$URL_B/"
expect_match "registrar rega draining to $URL_B " "$(cat "$OUT")" "drain confirms (the trailing slash dropped)"
p2m_wait_until -t 30 "A reads its drain key" p2m_log_has registrar "event=registrar_draining name=rega to=$URL_B\$"
admin --json registrar ls >"$OUT"
expect_eq "true $URL_B $URL_B" "$(json '.[] | select(.name == "rega") | "\(.draining) \(.drain_to) \(.draining_to)"')" \
    "ls: A draining to B"

# /_health stays 200 and says so.
got=$(curl -sS --max-time 10 --cacert "$P2M_CA" "$URL_A/_health")
expect_eq "ok, draining to $URL_B" "$got" "A's /_health while draining"

# A 307 before any authentication: a request without a credential gets it too.
got=$(curl -sS --max-time 10 --cacert "$P2M_CA" -X PUT -o /dev/null -w '%{http_code} %{redirect_url}' "$URL_A/register/echo")
expect_eq "307 $URL_B/register/echo" "$got" "A redirects a registration without looking at its credential"
got=$(curl -sS --max-time 10 --cacert "$P2M_CA" -o /dev/null -w '%{http_code}' "$URL_A/cacert")
expect_eq 200 "$got" "A still serves /cacert"

b_before=$(p2m_log_count registrar-b "event=register status=200 label=echo ")
consume_until "the pod registers with B" registered_at registrar-b "$b_before"
p2m_log_has registrar "event=register_redirect status=307 kind=register label=echo addr=127.0.0.1 to=$URL_B/register/echo\$" ||
    fail "A logs its 307s"
p2m_log_has podecho "event=register_redirected label=echo kind=register status=307 from=$URL_A/register/echo to=$URL_B/register/echo hop=1" ||
    fail "the pod logs the redirect it followed"
p2m_ok
consume during
expect_eq up "$(p2m_pod_json "$T/podecho" .health.registrar)" "the pod's registrar stays up while A drains"

# A pod that starts while A drains gets its certificate from B: the POST /certificate follows too.
p2m_start_pod podtls tls "127.0.0.1:$ECHO_HTTP" --tls-terminate
p2m_log_has podtls "event=register_redirected label=tls kind=certificate status=307 from=$URL_A/certificate/tls to=$URL_B/certificate/tls hop=1" ||
    fail "the pod follows A's 307 for its certificate"
p2m_log_has registrar-b "event=certificate status=200 label=tls " || fail "B issues the certificate"
p2m_log_has registrar "event=register_redirect status=307 kind=certificate label=tls " || fail "A logs the certificate's 307"
p2m_ok
expect_eq 0 "$(p2m_log_count registrar 'event=certificate ')" "A issues no certificate while it drains"
p2m_stop podtls "$PODTLS_PID"
expect_log_clean podtls

# ---------------------------------------------------------------- undrain A

expect_status 0 admin registrar undrain rega
expect_match "registrar rega no longer draining" "$(cat "$OUT")" "undrain confirms"
p2m_wait_until -t 30 "A reads that it is undrained" p2m_log_has registrar "event=registrar_undrained name=rega"
a_before=$(p2m_log_count registrar "event=register status=200 label=echo ")
# A 307 is not kept: the pod's next registrations go to A again.
consume_until "the pod registers with A again" registered_at registrar "$a_before"
consume after
expect_eq up "$(p2m_pod_json "$T/podecho" .health.registrar)" "the pod's registrar is up after the undrain"
expect_status 0 admin registrar undrain rega
expect_match "registrar rega was not draining" "$(cat "$OUT")" "undrain again: nothing to do"

# ---------------------------------------------------------------- a redirect to a foreign host

# C sends its pods to 127.0.0.1 for good: neither the pod's registrar host (pipe2me.localhost) nor
# DOMAIN. A listener there records every byte it is sent.
p2m_free_port TRAP
: >"$T/trap.bytes"
p2m_bg trap socat -u "TCP-LISTEN:$TRAP,bind=127.0.0.1,reuseaddr,fork" "OPEN:$T/trap.bytes,append"
p2m_wait_until "the trap listens" p2m_listening "$TRAP"
p2m_free_port PC
p2m_free_port PC_HTTP
p2m_free_port PC_METRICS
URL_C=https://pipe2me.localhost:$PC
jq --arg https "127.0.0.1:$PC" --arg http "127.0.0.1:$PC_HTTP" --arg metrics "127.0.0.1:$PC_METRICS" --arg url "$URL_C" \
    --arg to "https://127.0.0.1:$TRAP" \
    '.registrar += {name: "regc", https: $https, http: $http, metrics_listen: $metrics, url: $url, pods_to: $to}' \
    "$P2M_CONFIG" >"$T/c.json"
p2m_start_registrar "$T/c.json" registrar-c
REGC_PID=$REGISTRAR_PID
p2m_wait_until -t 30 "admin registrar ls shows C" registrars_are rega regb regc
admin --json registrar ls >"$OUT"
expect_eq "https://127.0.0.1:$TRAP" "$(json '.[] | select(.name == "regc") | .pods_to')" "ls: C's pods_to"

"$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$T/c.json" pod add podfar --label far -o "$T/podfar.json" >/dev/null
expect_eq "$URL_C" "$(jq -r .registrar "$T/podfar.json")" "the far pod's registrar is C"
p2m_start_pod -w none podfar far "127.0.0.1:$ECHO_HTTP"
p2m_wait_until -t 30 "the pod refuses C's redirect" p2m_log_has podfar "event=register_redirect_refused"
line=$(grep 'event=register_redirect_refused' "$T/podfar.log" | head -1)
expect_match "level=error event=register_redirect_refused label=far status=308 kind=register from=$URL_C/register/far reason=\"Location names a host that is neither the registrar's nor under the domain: https://127\\.0\\.0\\.1:$TRAP/register/far\" retry_ms=[0-9]+\$" \
    "$line" "the refusal's line"
p2m_log_has registrar-c "event=register_redirect status=308 kind=register label=far " || fail "C logs its 308"
p2m_ok
expect_eq 0 "$(stat -c %s "$T/trap.bytes")" "nothing reached the foreign host (no Authorization, no TLS hello)"
expect_eq 0 "$(p2m_log_count podfar 'event=registered ')" "the far pod did not register"

# ---------------------------------------------------------------- a 308 is kept

# D sends its pods to B for good: the pod follows the first 308 and then registers with B directly.
p2m_free_port PD
p2m_free_port PD_HTTP
p2m_free_port PD_METRICS
URL_D=https://pipe2me.localhost:$PD
jq --arg https "127.0.0.1:$PD" --arg http "127.0.0.1:$PD_HTTP" --arg metrics "127.0.0.1:$PD_METRICS" --arg url "$URL_D" \
    --arg to "$URL_B" \
    '.registrar += {name: "regd", https: $https, http: $http, metrics_listen: $metrics, url: $url, pods_to: $to}' \
    "$P2M_CONFIG" >"$T/d.json"
p2m_start_registrar "$T/d.json" registrar-d
REGD_PID=$REGISTRAR_PID
p2m_wait_until -t 30 "admin registrar ls shows D" registrars_are rega regb regc regd
"$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$T/d.json" pod add podmove --label move -o "$T/podmove.json" >/dev/null
p2m_start_pod podmove move "127.0.0.1:$ECHO_HTTP"
p2m_log_has podmove "event=register_redirected label=move kind=register status=308 from=$URL_D/register/move to=$URL_B/register/move hop=1" ||
    fail "the pod follows D's 308"
p2m_ok
d_308=$(p2m_log_count registrar-d "event=register_redirect status=308 kind=register label=move ")
((d_308 >= 1)) || fail "D logs its 308"
expect_eq 0 "$(p2m_log_count registrar-d 'event=register status=')" "D registers no pod itself"
b_before=$(p2m_log_count registrar-b "event=register status=200 label=move ")
consume_until -l move "the pod registers with B twice more" registered_at registrar-b $((b_before + 1)) move
expect_eq "$d_308" "$(p2m_log_count registrar-d "event=register_redirect status=308 kind=register label=move ")" \
    "after the 308 the pod's registrations go to B directly"

# ---------------------------------------------------------------- the end

p2m_stop podmove "$PODMOVE_PID"
for reg in d:"$REGD_PID" c:"$REGC_PID" b:"$REGB_PID"; do
    p2m_stop "registrar-${reg%%:*}" "${reg#*:}"
done
expect_log_clean registrar-d

p2m_stop podfar "$PODFAR_PID"
p2m_stop podecho "$PODECHO_PID"
expect_log_clean registrar-b
expect_log_clean podecho
expect_log_clean registrar
