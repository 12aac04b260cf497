#!/usr/bin/env bash
# pipe2me-registrar's own names and its metrics (docs/OPERATIONS.md "The registrar's names" and
# "Metrics", PROTOCOL 2.3), against the real registrar, relay and a private redis-server, driven
# by curl, openssl and oathtool:
#   - the certificate it makes carries DOMAIN, *.DOMAIN, every registrar.names entry and its own
#     addresses as IP names (a listener on every address adds 127.0.0.1 and ::1), so a TAAS client
#     that names the registrar by address verifies it: PUT /register/LABEL by IP is a 200;
#   - a Host that is a registrar.names entry or one of its addresses ([::1] too, with or without a
#     port) is answered as the registrar, others are 404, and plain HTTP sends each to its own name;
#   - a name added to the config re-issues the certificate at the next start from the same CA
#     (event=cert_reissued), and a start without change leaves it alone; an operator's certificate
#     is never touched, its missing names only logged;
#   - /metrics: on the metrics listener; on HTTPS only with registrar.metrics_token as a Bearer
#     credential (401 without it or with another), and 404 there when no token is configured.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl oathtool jq openssl ss sha256sum
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay tools/pipe2me-admin
REGISTRAR_BIN=$P2M_BUILD_DIR/registrar/pipe2me-registrar
DOMAIN=pipe2me.localhost
NAME1=registrar.example.test
NAME2=other.example.test
TOKEN=$(openssl rand -hex 20)

# ---------------------------------------------------------------- helpers

answers() { curl -4 -s -o /dev/null --max-time 2 --cacert "$P2M_CA" "https://$DOMAIN:$P2M_HTTPS_PORT/cacert"; }

# san FILE: the subjectAltName of the certificate in FILE, one entry per line.
san() { openssl x509 -in "$1" -noout -ext subjectAltName | tail -n +2 | tr ',' '\n' | sed 's/^ *//'; }

# expect_san FILE ENTRY...: every ENTRY (an extended regex of one whole line) is in FILE's SAN.
expect_san() {
    local file=$1 e names
    shift
    names=$(san "$file")
    for e in "$@"; do
        grep -Eqx -- "$e" <<<"$names" || fail "$(basename -- "$file"): no SAN entry /$e/ in:"$'\n'"$names"
        p2m_ok
    done
}

restart_registrar() { # CONFIG LOGNAME
    p2m_stop registrar "$REGISTRAR_PID"
    p2m_start_registrar "$1" "$2"
    p2m_wait_until "the registrar answers again" answers
}

# ---------------------------------------------------------------- setup

# HTTP on every address: the certificate gets 127.0.0.1 and ::1 for it.
p2m_free_port HTTP_ANY
p2m_start_system "{\"registrar\": {\"http\": \"0.0.0.0:$HTTP_ANY\", \"names\": [\"Registrar.Example.TEST\"],
    \"metrics_token\": \"$TOKEN\"}}"
BASE=https://127.0.0.1:$P2M_HTTPS_PORT
p2m_add_pod demo demo
CERT=$T/state/registrar.pem
expect_eq 1 "$(p2m_log_count registrar 'event=cert_created')" "the registrar made its certificate"

# ---------------------------------------------------------------- the certificate

expect_san "$CERT" "DNS:$DOMAIN" "DNS:\*\.$DOMAIN" "DNS:$NAME1" "IP Address:127\.0\.0\.1" "IP Address:(::1|0:0:0:0:0:0:0:1)"
expect_eq 5 "$(san "$CERT" | wc -l)" "nothing else in the SAN"
expect_status 0 openssl verify -purpose sslserver -CAfile "$P2M_CA" -verify_ip 127.0.0.1 "$CERT"
expect_status 0 openssl verify -purpose sslserver -CAfile "$P2M_CA" -verify_ip ::1 "$CERT"
expect_status 0 openssl verify -purpose sslserver -CAfile "$P2M_CA" -verify_hostname "$NAME1" "$CERT"
expect_status 2 openssl verify -purpose sslserver -CAfile "$P2M_CA" -verify_ip 127.0.0.2 "$CERT"
expect_status 2 openssl verify -purpose sslserver -CAfile "$P2M_CA" -verify_hostname "$NAME2" "$CERT"
expect_match 'Verify return code: 0 ' "$(openssl s_client -connect "127.0.0.1:$P2M_HTTPS_PORT" -CAfile "$P2M_CA" -verify_ip 127.0.0.1 \
    -verify_return_error </dev/null 2>&1)" "s_client -verify_ip 127.0.0.1"

# ---------------------------------------------------------------- the registrar by address and by name

# A TAAS client with the registrar's CA and its address for URL: curl checks the IP name.
hreq "$BASE/cacert"
expect_http 200 "GET /cacert by IP, verified"
p2m_totp_fresh demo
hreq -X PUT -H "Authorization: $(p2m_totp_auth demo "$CODE_")" "$BASE/register/demo"
expect_http 200 "PUT /register/demo by IP with TOTP"
expect_match '^127\.0\.0\.1:[0-9]+$' "$(body)" "the registration names the relay's port"
expect_match '.' "$(hdr p2m-session)" "a session credential"

hreq --resolve "$NAME1:$P2M_HTTPS_PORT:127.0.0.1" "https://$NAME1:$P2M_HTTPS_PORT/_health"
expect_http 200 "/_health at a registrar.names entry, verified"
hreq --resolve "$NAME1:$P2M_HTTPS_PORT:127.0.0.1" "https://$NAME1:$P2M_HTTPS_PORT/nope"
expect_http 404 "an unknown path at a registrar.names entry"
expect_eq "not found" "$(body)" "... is the registrar's 404, not the unknown host's"
for h in "$NAME1" "REGISTRAR.example.test." "$NAME1:$P2M_HTTPS_PORT" 127.0.0.1 "127.0.0.1:$P2M_HTTPS_PORT" "[::1]" \
    "[::1]:$P2M_HTTPS_PORT" "[0:0::1]:1"; do
    hreq -H "Host: $h" "$BASE/_health"
    expect_http 200 "/_health with Host $h"
done
for h in 127.0.0.2 "$NAME2" "x.$NAME1" "[::2]" "::1" "[127.0.0.1]" "$NAME1:0"; do
    hreq -H "Host: $h" "$BASE/_health"
    expect_http 404 "/_health with Host $h"
done
# Plain HTTP sends the registrar's names to the same name on HTTPS.
for h in "127.0.0.1:$HTTP_ANY|https://127.0.0.1:$P2M_HTTPS_PORT/x" "[::1]|https://[::1]:$P2M_HTTPS_PORT/x" \
    "$NAME1|https://$NAME1:$P2M_HTTPS_PORT/x" "$DOMAIN|https://$DOMAIN:$P2M_HTTPS_PORT/x"; do
    hreq -H "Host: ${h%%|*}" "http://127.0.0.1:$HTTP_ANY/x"
    expect_http 308 "plain HTTP with Host ${h%%|*}"
    expect_eq "${h#*|}" "$(hdr location)" "the 308's Location for Host ${h%%|*}"
done

# ---------------------------------------------------------------- /metrics

hreq "$P2M_METRICS_URL"
expect_http 200 "/metrics on the metrics listener"
expect_match '(^|'$'\n'')pipe2me_relays 1('$'\n''|$)' "$(body)" "the metrics listener serves the metrics"
hreq -I "$P2M_METRICS_URL"
expect_http 200 "HEAD /metrics on the metrics listener"
hreq "http://127.0.0.1:$P2M_METRICS_PORT/_health"
expect_http 200 "/_health on the metrics listener"
for p in /cacert /register/demo /nope /metrics/x; do
    hreq "http://127.0.0.1:$P2M_METRICS_PORT$p"
    expect_http 404 "$p on the metrics listener"
done
hreq -X POST "$P2M_METRICS_URL"
expect_http 405 "POST /metrics on the metrics listener"

hreq "$BASE/metrics"
expect_http 401 "/metrics on HTTPS without the token"
expect_match '^Bearer' "$(hdr www-authenticate)" "401 names Bearer"
expect_no_match pipe2me_ "$(body)" "no metrics in the 401"
hreq -H "Authorization: Bearer ${TOKEN}x" "$BASE/metrics"
expect_http 401 "/metrics on HTTPS with another token"
hreq -H "Authorization: Bearer ${TOKEN:0:39}" "$BASE/metrics"
expect_http 401 "/metrics on HTTPS with a prefix of the token"
hreq -H "Authorization: Basic $TOKEN" "$BASE/metrics"
expect_http 401 "/metrics on HTTPS with the token under another scheme"
hreq -H "Authorization: Bearer $TOKEN" -H "Authorization: Bearer $TOKEN" "$BASE/metrics"
expect_http 401 "/metrics on HTTPS with two Authorization headers"
hreq -H "Authorization: Bearer $TOKEN" "$BASE/metrics"
expect_http 200 "/metrics on HTTPS with the token"
expect_match '(^|'$'\n'')pipe2me_relays 1('$'\n''|$)' "$(body)" "the token gets the metrics"
hreq -H "Authorization: bearer  $TOKEN " -H "Host: $NAME1" "$BASE/metrics"
expect_http 200 "/metrics with the scheme in lower case, extra spaces and a registrar.names Host"
hreq "http://127.0.0.1:$HTTP_ANY/metrics"
expect_http 308 "/metrics on plain HTTP goes to HTTPS"
expect_eq 5 "$(p2m_log_count registrar 'event=metrics_refused status=401')" "each 401 is logged"
! grep -qF -- "$TOKEN" "$T/registrar.log" || fail "registrar.log holds the metrics token"
p2m_ok

expect_status 0 "$REGISTRAR_BIN" -c "$P2M_CONFIG" --check-config
expect_match "(^|"$'\n'")metrics_listen 127\.0\.0\.1:$P2M_METRICS_PORT \(plain HTTP: /metrics and /_health only\)" "$(cat "$OUT")" \
    "--check-config names the metrics listener"
expect_match "(^|"$'\n'")names $DOMAIN \*\.$DOMAIN $NAME1 127\.0\.0\.1 ::1("$'\n'"|$)" "$(cat "$OUT")" "--check-config lists the names"
expect_no_match "$TOKEN" "$(cat "$OUT")" "--check-config does not print the token"
jq '.registrar.metrics_listen = null' "$P2M_CONFIG" >"$T/nometrics.json"
expect_status 0 "$REGISTRAR_BIN" -c "$T/nometrics.json" --check-config
expect_match "(^|"$'\n'")metrics_listen off("$'\n'"|$)" "$(cat "$OUT")" "--check-config: metrics_listen null"
jq --arg n "$DOMAIN" '.registrar.names = [$n]' "$P2M_CONFIG" >"$T/bad.json"
expect_status 2 "$REGISTRAR_BIN" -c "$T/bad.json" --check-config
expect_match "registrar\.names\[0\]: $DOMAIN is the domain" "$(cat "$ERR")" "DOMAIN itself is refused in names"

# ---------------------------------------------------------------- a name added: re-issued from the same CA

CA_SUM=$(sha256sum <"$P2M_CA")
CERT_SUM=$(sha256sum <"$CERT")
jq --arg a "$NAME1" --arg b "$NAME2" '.registrar.names = [$a, $b] | .registrar.metrics_token = null' "$P2M_CONFIG" >"$T/two.json"
restart_registrar "$T/two.json" registrar-two
expect_eq 1 "$(p2m_log_count registrar-two "event=cert_reissued path=$CERT domain=$DOMAIN reason=missing_name name=$NAME2\$")" \
    "one cert_reissued line names the missing name"
expect_eq "$CA_SUM" "$(sha256sum <"$P2M_CA")" "the CA is the same"
[[ $(sha256sum <"$CERT") != "$CERT_SUM" ]] || fail "registrar.pem was not rewritten"
p2m_ok
expect_san "$CERT" "DNS:$DOMAIN" "DNS:$NAME1" "DNS:$NAME2" "IP Address:127\.0\.0\.1"
expect_status 0 openssl verify -purpose sslserver -CAfile "$P2M_CA" -verify_hostname "$NAME2" "$CERT"
hreq --resolve "$NAME2:$P2M_HTTPS_PORT:127.0.0.1" "https://$NAME2:$P2M_HTTPS_PORT/_health"
expect_http 200 "/_health at the new name, verified with the old CA"
# Without a token the HTTPS listener has no /metrics at all.
hreq "$BASE/metrics"
expect_http 404 "/metrics on HTTPS without a configured token"
hreq -H "Authorization: Bearer $TOKEN" "$BASE/metrics"
expect_http 404 "/metrics on HTTPS without a configured token, whatever the request says"
expect_eq "$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' -H "Host: $DOMAIN" "$BASE/nope" --cacert "$P2M_CA")" \
    "$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' -H "Host: $DOMAIN" "$BASE/metrics" --cacert "$P2M_CA")" \
    "/metrics looks like any unknown path"
hreq "$P2M_METRICS_URL"
expect_http 200 "the metrics listener still serves"

# The same config again: nothing to re-issue.
CERT_SUM=$(sha256sum <"$CERT")
restart_registrar "$T/two.json" registrar-three
expect_eq 0 "$(p2m_log_count registrar-three 'event=cert_\(reissued\|created\)')" "an unchanged config keeps the certificate"
expect_eq "$CERT_SUM" "$(sha256sum <"$CERT")" "registrar.pem unchanged"

# ---------------------------------------------------------------- an operator's certificate is left alone

OP=$T/op
mkdir -p "$OP"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$OP/root-key.pem" -out "$OP/root.pem" \
    -subj "/CN=Operator Root" -days 30 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$OP/wild-key.pem" -out "$OP/wild.csr" \
    -subj "/CN=$DOMAIN" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:*.%s\nextendedKeyUsage=serverAuth\n' "$DOMAIN" "$DOMAIN" >"$OP/wild.ext"
openssl x509 -req -in "$OP/wild.csr" -CA "$OP/root.pem" -CAkey "$OP/root-key.pem" -CAcreateserial -days 10 \
    -extfile "$OP/wild.ext" -out "$OP/wild.pem" 2>/dev/null
chmod 600 "$OP"/*-key.pem
OP_SUM=$(sha256sum "$OP/wild.pem" "$OP/wild-key.pem")
jq --arg c "$OP/wild.pem" --arg k "$OP/wild-key.pem" '.registrar += {cert: $c, key: $k}' "$T/two.json" >"$T/op.json"
p2m_stop registrar "$REGISTRAR_PID"
p2m_start_registrar "$T/op.json" registrar-op
P2M_CA=$OP/root.pem
p2m_wait_until "the registrar answers with the operator's certificate" answers
expect_eq "$OP_SUM" "$(sha256sum "$OP/wild.pem" "$OP/wild-key.pem")" "the operator's files are unchanged"
expect_eq 1 "$(p2m_log_count registrar-op "level=warn event=cert_name_missing path=$OP/wild.pem name=$NAME1\$")" \
    "a registrar.names entry the operator's certificate lacks is logged"
expect_eq 1 "$(p2m_log_count registrar-op "event=cert_name_missing path=$OP/wild.pem name=$NAME2\$")" "... each of them"
expect_eq 0 "$(p2m_log_count registrar-op 'event=cert_\(reissued\|created\)')" "nothing is made"
hreq -H "Host: $NAME1" "https://$DOMAIN:$P2M_HTTPS_PORT/_health"
expect_http 200 "a registrar.names Host is still the registrar's with the operator's certificate"

# ---------------------------------------------------------------- the end

for log in registrar registrar-two registrar-three; do
    expect_log_clean "$log"
done
p2m_stop registrar "$REGISTRAR_PID"
expect_log_clean registrar-op
