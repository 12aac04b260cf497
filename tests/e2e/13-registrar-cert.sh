#!/usr/bin/env bash
# pipe2me-registrar certificates and service protocols (docs/PROTOCOL.md 1.1, 2 and 4), against the
# real registrar, relay and a private redis-server, driven by curl, openssl and oathtool:
#   - POST /certificate/LABEL with TOTP and Bearer credentials: the issued certificate verifies
#     against /cacert and carries exactly the fields PROTOCOL 4.3 names; TOTP gives a session;
#   - CSRs for other names, with extra or foreign SANs, asking for a CA, with weak or unusual keys,
#     or not CSRs at all: 400 with the reason, no TOTP step spent; 401/403/404/405/413;
#   - an operator-supplied intermediate CA (issued chains carry the intermediate, verify against
#     the root alone) and an operator-supplied registrar certificate; private keys readable by
#     others are refused at start;
#   - the registration body (protocol https, http, tcp; 400 for anything else) and the consumer
#     rule: https only to https, http to http first and else to https, tcp through GET /tcp/LABEL,
#     with real pre-connections joined to real consumers.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl oathtool jq socat ss openssl
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay tools/pipe2me-admin
REGISTRAR_BIN=$P2M_BUILD_DIR/registrar/pipe2me-registrar
DOMAIN=pipe2me.localhost
LIFETIME=3600

# ---------------------------------------------------------------- helpers

answers() { curl -4 -s -o /dev/null --max-time 2 --cacert "$2" "$1/cacert"; }

# csr NAME OUT OPENSSL_REQ_ARGS...: a CSR in $T/OUT.csr with a new key ($T/OUT.key).
csr() {
    local out=$1
    shift
    openssl req -new -nodes -keyout "$T/$out.key" -out "$T/$out.csr" "$@" 2>"$T/openssl.err" ||
        fail "openssl req $*: $(cat "$T/openssl.err")"
}
EC256=(-newkey ec -pkeyopt ec_paramgen_curve:P-256)

# cert_req LABEL AUTH FILE [CURL_ARGS...]: POST /certificate/LABEL with FILE as the body.
cert_req() {
    local label=$1 auth=$2 file=$3 args=()
    shift 3
    [[ -z $auth ]] || args=(-H "Authorization: $auth")
    hreq -X POST "${args[@]}" -H 'Content-Type: application/pkcs10' --data-binary "@$file" "$@" "$BASE/certificate/$label"
}

# expect_issued DESC NAME: the last response is a 200 chain for NAME that verifies against $P2M_CA.
expect_issued() {
    expect_http 200 "$1"
    expect_eq application/pem-certificate-chain "$(hdr content-type)" "$1: content type"
    body >"$T/issued.pem"
    openssl x509 -in "$T/issued.pem" -noout -text >"$T/issued.txt" 2>&1 || fail "$1: not a certificate: $(body)"
    expect_eq "subject=CN = $2" "$(openssl x509 -in "$T/issued.pem" -noout -subject)" "$1: subject"
    # LABEL.DOMAIN, then the direct-path names LABEL.direct.DOMAIN and LABEL.lan.DOMAIN (PROTOCOL 4.3)
    local direct="${2%%.*}.direct.${2#*.}" lan="${2%%.*}.lan.${2#*.}"
    expect_eq "DNS:$2,DNS:$direct,DNS:$lan" "$(grep -A1 'Subject Alternative Name' "$T/issued.txt" | tail -n 1 | tr -d ' ')" \
        "$1: SAN is DNS:$2 and its direct-path names"
    expect_match 'CA:FALSE' "$(grep -A1 'Basic Constraints' "$T/issued.txt" | tail -n 1)" "$1: CA:FALSE"
    expect_match 'TLS Web Server Authentication' "$(grep -A1 'Extended Key Usage' "$T/issued.txt" | tail -n 1)" "$1: EKU serverAuth"
    expect_status 0 openssl verify -purpose sslserver -CAfile "$P2M_CA" "$T/issued.pem"
    local nb na
    nb=$(date -d "$(openssl x509 -in "$T/issued.pem" -noout -startdate | cut -d= -f2)" +%s)
    na=$(date -d "$(openssl x509 -in "$T/issued.pem" -noout -enddate | cut -d= -f2)" +%s)
    expect_eq $((LIFETIME + 300)) $((na - nb)) "$1: notAfter - notBefore = cert_lifetime + 5 min"
    SERIAL=$(openssl x509 -in "$T/issued.pem" -noout -serial)
}

# expect_csr_refused REASON_RE DESC: 400 with a one-line text/plain reason matching REASON_RE.
expect_csr_refused() {
    expect_http 400 "$2"
    expect_match '^text/plain' "$(hdr content-type)" "$2: content type"
    expect_match "$1" "$(body)" "$2: reason"
    (($(body | wc -l) == 1)) || fail "$2: the reason is not one line: $(body)"
    p2m_ok
}

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_write_config "$(jq -nc --argjson life $LIFETIME '{relay: {name: "r1"}, registrar: {cert_lifetime: $life, auth_fail_limit: 50}}')"
BASE=https://$DOMAIN:$P2M_HTTPS_PORT
HBASE=http://$DOMAIN:$P2M_HTTP_PORT
for p in demo other web; do p2m_add_pod "$p" "$p"; done

p2m_start_relay
p2m_start_registrar
p2m_wait_until "the registrar created its CA" test -s "$P2M_CA"
p2m_wait_until "the registrar answers" answers "$BASE" "$P2M_CA"
expect_eq 600 "$(stat -c %a "$T/state/ca-key.pem")" "the CA key is mode 0600"
expect_eq 600 "$(stat -c %a "$T/state/registrar-key.pem")" "the registrar key is mode 0600"

# ---------------------------------------------------------------- issuing (PROTOCOL 4)

NAME=demo.$DOMAIN
csr good -subj "/CN=$NAME" -addext "subjectAltName=DNS:$NAME" "${EC256[@]}"
p2m_totp_fresh demo
cert_req demo "$(p2m_totp_auth demo "$CODE_")" "$T/good.csr"
expect_issued "TOTP, EC P-256, CN and SAN" "$NAME"
SESSION=$(hdr p2m-session)
expect_match '^[A-Za-z0-9._~+/=-]{16,128}$' "$SESSION" "a TOTP certificate request returns P2M-Session"
expect_match 'Digital Signature' "$(grep -A1 'X509v3 Key Usage' "$T/issued.txt" | tail -n 1)" "EC: keyUsage digitalSignature"
expect_no_match 'Key Encipherment' "$(grep -A1 'X509v3 Key Usage' "$T/issued.txt" | tail -n 1)" "EC: no keyEncipherment"
# The certificate is for the CSR's key.
expect_eq "$(openssl pkey -in "$T/good.key" -pubout)" "$(openssl x509 -in "$T/issued.pem" -noout -pubkey)" "issued for the CSR's key"
FIRST_SERIAL=$SERIAL

cert_req demo "Bearer $SESSION" "$T/good.csr"
expect_issued "Bearer, the same CSR again" "$NAME"
expect_eq "" "$(hdr p2m-session)" "a Bearer certificate request gets no new session"
[[ $SERIAL != "$FIRST_SERIAL" ]] || fail "two certificates share serial $SERIAL"
p2m_ok

csr rsa -subj "/CN=$NAME" -newkey rsa:2048
cert_req demo "Bearer $SESSION" "$T/rsa.csr"
expect_issued "RSA 2048, CN only" "$NAME"
expect_match 'Key Encipherment' "$(grep -A1 'X509v3 Key Usage' "$T/issued.txt" | tail -n 1)" "RSA: keyEncipherment"

csr upper -subj "/CN=DEMO.Pipe2me.LOCALHOST" -addext "subjectAltName=DNS:Demo.$DOMAIN" "${EC256[@]}"
cert_req DEMO "Bearer $SESSION" "$T/upper.csr"
expect_issued "names compare case-insensitively" "$NAME"

csr p384 -subj "/" -addext "subjectAltName=DNS:$NAME" -newkey ec -pkeyopt ec_paramgen_curve:P-384
cert_req demo "Bearer $SESSION" "$T/p384.csr"
expect_issued "EC P-384, SAN only, empty subject" "$NAME"

# ---------------------------------------------------------------- CSRs refused (400)

csr other -subj "/CN=other.$DOMAIN" -addext "subjectAltName=DNS:other.$DOMAIN" "${EC256[@]}"
csr twosan -subj "/CN=$NAME" -addext "subjectAltName=DNS:$NAME,DNS:other.$DOMAIN" "${EC256[@]}"
csr ipsan -subj "/CN=$NAME" -addext "subjectAltName=DNS:$NAME,IP:127.0.0.1" "${EC256[@]}"
csr wild -subj "/CN=*.$DOMAIN" -addext "subjectAltName=DNS:*.$DOMAIN" "${EC256[@]}"
csr suffix -subj "/CN=evil$NAME" "${EC256[@]}"
csr ca -subj "/CN=$NAME" -addext "basicConstraints=critical,CA:TRUE" "${EC256[@]}"
csr org -subj "/O=pipe2me/CN=$NAME" "${EC256[@]}"
csr cnmismatch -subj "/CN=other.$DOMAIN" -addext "subjectAltName=DNS:$NAME" "${EC256[@]}"
csr nosub -subj "/" "${EC256[@]}"
csr rsa1024 -subj "/CN=$NAME" -newkey rsa:1024
csr k1 -subj "/CN=$NAME" -newkey ec -pkeyopt ec_paramgen_curve:secp256k1
csr ed -subj "/CN=$NAME" -newkey ed25519
openssl x509 -in "$T/issued.pem" -out "$T/notcsr.pem"
printf 'garbage\n' >"$T/garbage"
: >"$T/empty"
cat "$T/good.csr" "$T/good.csr" >"$T/two.csr"
head -c 200 "$T/good.csr" >"$T/trunc.csr"
# The signature no longer matches: flip one byte of the DER inside the PEM.
openssl req -in "$T/good.csr" -outform DER -out "$T/good.der"
size=$(stat -c %s "$T/good.der")
printf '\x55' | dd of="$T/good.der" bs=1 seek=$((size - 5)) conv=notrunc status=none
openssl req -inform DER -in "$T/good.der" -out "$T/badsig.csr" 2>/dev/null ||
    { openssl base64 -in "$T/good.der" | sed '1i-----BEGIN CERTIFICATE REQUEST-----' | sed '$a-----END CERTIFICATE REQUEST-----' >"$T/badsig.csr"; }

while IFS='|' read -r file reason desc; do
    cert_req demo "Bearer $SESSION" "$T/$file"
    expect_csr_refused "$reason" "$desc"
done <<EOF
other.csr|other\.$DOMAIN|a CSR for another label
twosan.csr|subjectAltName|two DNS names
ipsan.csr|subjectAltName|an IP address besides the name
wild.csr|\*\.$DOMAIN|a wildcard
suffix.csr|evil|a name that merely ends in the label's
ca.csr|CA|a CA certificate
org.csr|subject|an organisation in the subject
cnmismatch.csr|other\.$DOMAIN|a CN that differs from the SAN
nosub.csr|CN|neither CN nor SAN
rsa1024.csr|2048|RSA 1024
k1.csr|curve|EC secp256k1
ed.csr|key|Ed25519
notcsr.pem|[Rr][Ee][Qq][Uu][Ee][Ss][Tt]|a certificate instead of a request
garbage|[Rr][Ee][Qq][Uu][Ee][Ss][Tt]|garbage
empty|empty|an empty body
two.csr|.|two requests in one body
trunc.csr|[Rr][Ee][Qq][Uu][Ee][Ss][Tt]|a truncated request
badsig.csr|.|a request whose signature does not verify
EOF

# A refused CSR spends no TOTP step: the same code then works with a good CSR.
p2m_totp_fresh demo
cert_req demo "$(p2m_totp_auth demo "$CODE_")" "$T/other.csr"
expect_csr_refused "other\.$DOMAIN" "TOTP with a CSR for another name"
cert_req demo "$(p2m_totp_auth demo "$CODE_")" "$T/good.csr"
expect_issued "the same TOTP code after a refused CSR" "$NAME"

# ---------------------------------------------------------------- other refusals

cert_req demo "" "$T/good.csr"
expect_http 401 "no Authorization"
cert_req other "Bearer $SESSION" "$T/good.csr"
expect_csr_refused "demo\.$DOMAIN" "demo's CSR on other's path is a name mismatch first"
csr othergood -subj "/CN=other.$DOMAIN" "${EC256[@]}"
cert_req other "Bearer $SESSION" "$T/othergood.csr"
expect_http 403 "demo's session for other's label"
p2m_totp_fresh other
cert_req other "$(p2m_totp_auth demo "$CODE_")" "$T/othergood.csr"
expect_http 401 "other's code in demo's name"
hreq -X GET "$BASE/certificate/demo"
expect_http 405 "GET /certificate/demo"
expect_eq POST "$(hdr allow)" "405 names POST"
hreq -X POST --data-binary @"$T/good.csr" "$BASE/certificate/de_mo"
expect_http 404 "an invalid label"
hreq -X POST --data-binary @"$T/good.csr" "$BASE/certificate/demo?x=1"
expect_http 404 "a query string"
head -c 17000 /dev/zero | tr '\0' 'A' >"$T/big"
cert_req demo "Bearer $SESSION" "$T/big"
expect_http 413 "a 17,000-byte body"
p2m_wait_until "p2m:stats counts the 6 certificates issued" p2m_redis_is 6 HGET p2m:stats certificates

# ---------------------------------------------------------------- service protocols (1.1, 2)

# hold NAME PORT: an idle pre-connection to PORT, echoing what a consumer sends (socat + cat).
hold() {
    p2m_bg "$1" socat "TCP4:127.0.0.1:$2" SYSTEM:cat
    eval "HOLD_$1=\$P2M_BG_PID"
}

p2m_totp_fresh web
p2m_reg -b '{"protocol":"bogus"}' web "$(p2m_totp_auth web "$CODE_")"
expect_http 400 "protocol bogus"
expect_match 'protocol' "$(body)" "the 400 names the protocol"
p2m_reg -b 'not json' web "$(p2m_totp_auth web "$CODE_")"
expect_http 400 "a body that is not JSON"
p2m_reg -b '{"protocol":"http","port":1}' web "$(p2m_totp_auth web "$CODE_")"
expect_http 400 "an unknown key"
p2m_reg -b '{"protocol":"http"}' web "$(p2m_totp_auth web "$CODE_")"
expect_http 200 "the same TOTP code after three 400s registers the http service"
WEB_SESSION=$(hdr p2m-session)
expect_eq "web|web:http" "$(rcli HMGET "p2m:lease:$REG_PORT" label service | paste -sd'|')" "the lease names label and service"
hold http "$REG_PORT"
p2m_wait_until "web:http has an idle pre-connection" p2m_idle_is 1 web:http

hreq "$BASE/x?y=1" -H "Host: web.$DOMAIN:$P2M_HTTPS_PORT"
expect_http 503 "https request with only an http service: never a downgrade"
hreq "$HBASE/x?y=1" -H "Host: web.$DOMAIN:$P2M_HTTP_PORT"
expect_http 307 "http request with an http service"
expect_match "^http://web\.$DOMAIN:[0-9]+/x\?y=1\$" "$(hdr location)" "307 to the http service"
QH=$(hdr location | sed -E 's|^http://[^:]+:([0-9]+)/.*|\1|')
expect_eq "consumer|web:http" "$(rcli HMGET "p2m:lease:$QH" kind service | paste -sd'|')" "the consumer lease is the http service's"
p2m_wait_until "the relay listens on $QH" p2m_listening "$QH"
expect_eq "hello-http" "$(printf 'hello-http' | socat -t 2 - TCP4:127.0.0.1:$QH)" "a consumer on $QH reaches the http pre-connection"

p2m_reg -b '' web "Bearer $WEB_SESSION"
expect_http 200 "an empty body registers the https service"
expect_eq "web|web" "$(rcli HMGET "p2m:lease:$REG_PORT" label service | paste -sd'|')" "https service key is the label"
hold https "$REG_PORT"
p2m_wait_until "web has an idle https pre-connection" p2m_idle_is 1 web
p2m_reg -b '{"protocol":"http"}' web "Bearer $WEB_SESSION"
expect_http 200 "a second http pre-connection"
hold http2 "$REG_PORT"
p2m_wait_until "web:http has an idle pre-connection again" p2m_idle_is 1 web:http

hreq "$BASE/" -H "Host: web.$DOMAIN:$P2M_HTTPS_PORT"
expect_http 307 "https request with an https service"
expect_match "^https://web\.$DOMAIN:[0-9]+/\$" "$(hdr location)" "307 to the https service"
QS=$(hdr location | sed -E 's|^https://[^:]+:([0-9]+)/.*|\1|')
[[ $QS != "$QH" ]] || fail "https and http services share consumer port $QS"
p2m_ok
hreq "$HBASE/" -H "Host: web.$DOMAIN:$P2M_HTTP_PORT"
expect_http 307 "http request while both services are idle"
expect_match "^http://web\.$DOMAIN:$QH/\$" "$(hdr location)" "http goes to the http service first"

# The http service goes away: http requests go to https (an upgrade, never the reverse).
p2m_kill "$HOLD_http2"
p2m_wait_until "web:http has no idle pre-connection" p2m_idle_is 0 web:http
hreq "$HBASE/z" -H "Host: web.$DOMAIN:$P2M_HTTP_PORT"
expect_http 307 "http request with only the https service"
expect_match "^https://web\.$DOMAIN:$QS/z\$" "$(hdr location)" "http falls back to the https service"

# tcp: never a redirect target; GET /tcp/LABEL names the port.
hreq "$BASE/tcp/web"
expect_http 503 "GET /tcp/web before a tcp service exists"
p2m_reg -b '{"protocol":"tcp"}' web "Bearer $WEB_SESSION"
expect_http 200 "the tcp service"
hold tcp "$REG_PORT"
p2m_wait_until "web:tcp has an idle pre-connection" p2m_idle_is 1 web:tcp
hreq "$BASE/tcp/web"
expect_http 200 "GET /tcp/web"
expect_match "^web\.$DOMAIN:[0-9]+\$" "$(body)" "the body is LABEL.DOMAIN:PORT"
QT=$(body | sed 's/.*://')
expect_eq "consumer|web:tcp|*" "$(rcli HMGET "p2m:lease:$QT" kind service addr | paste -sd'|')" \
    "the tcp service's consumer port, for every address (consumer_ports per-service)"
expect_eq "$QT" "$(rcli GET p2m:cport:web:tcp)" "the tcp service's consumer port is kept with the service"
p2m_wait_until "the relay listens on $QT" p2m_listening "$QT"
expect_eq "hello-tcp" "$(printf 'hello-tcp' | socat -t 2 - TCP4:127.0.0.1:$QT)" "a consumer on $QT reaches the tcp pre-connection"
hreq "$BASE/tcp/nosuch"
expect_http 404 "GET /tcp/ of an unknown label"
hreq -X POST "$BASE/tcp/web"
expect_http 405 "POST /tcp/web"

# ---------------------------------------------------------------- operator CA and certificate

# A root, an intermediate signed by it, and a wildcard certificate for the registrar.
OP=$T/op
mkdir -p "$OP"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$OP/root-key.pem" -out "$OP/root.pem" \
    -subj "/CN=Operator Root" -days 30 -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$OP/int-key.pem" -out "$OP/int.csr" \
    -subj "/CN=Operator Intermediate" 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign\nsubjectKeyIdentifier=hash\n' >"$OP/int.ext"
openssl x509 -req -in "$OP/int.csr" -CA "$OP/root.pem" -CAkey "$OP/root-key.pem" -CAcreateserial -days 20 \
    -extfile "$OP/int.ext" -out "$OP/int.pem" 2>/dev/null
cat "$OP/int.pem" "$OP/root.pem" >"$OP/ca-chain.pem"
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$OP/wild-key.pem" -out "$OP/wild.csr" \
    -subj "/CN=$DOMAIN" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:*.%s\nextendedKeyUsage=serverAuth\n' "$DOMAIN" "$DOMAIN" >"$OP/wild.ext"
openssl x509 -req -in "$OP/wild.csr" -CA "$OP/int.pem" -CAkey "$OP/int-key.pem" -CAcreateserial -days 10 \
    -extfile "$OP/wild.ext" -out "$OP/wild.pem" 2>/dev/null
cat "$OP/int.pem" >>"$OP/wild.pem"
chmod 600 "$OP"/*-key.pem

p2m_kill "$REGISTRAR_PID"
OPCONF=$T/op.json
jq --arg c "$OP/ca-chain.pem" --arg k "$OP/int-key.pem" --arg wc "$OP/wild.pem" --arg wk "$OP/wild-key.pem" \
    '.registrar += {ca_cert: $c, ca_key: $k, cert: $wc, key: $wk}' "$P2M_CONFIG" >"$OPCONF"

# Keys others may read are refused, naming the file.
chmod 644 "$OP/int-key.pem"
expect_status 2 "$REGISTRAR_BIN" -c "$OPCONF"
expect_match "registrar.ca_key .*int-key.pem: readable by group or others" "$(cat "$ERR" "$OUT")" "a 0644 CA key is refused"
chmod 600 "$OP/int-key.pem"
chmod 640 "$OP/wild-key.pem"
expect_status 2 "$REGISTRAR_BIN" -c "$OPCONF"
expect_match "registrar.key .*wild-key.pem: readable by group or others" "$(cat "$ERR" "$OUT")" "a 0640 registrar key is refused"
chmod 600 "$OP/wild-key.pem"

p2m_start_registrar "$OPCONF" registrar-op
P2M_CA=$OP/root.pem
p2m_wait_until "the registrar answers with the operator's certificate" answers "$BASE" "$P2M_CA"
expect_match "subject=CN *= *$DOMAIN" "$(openssl s_client -connect "127.0.0.1:$P2M_HTTPS_PORT" -servername "$DOMAIN" </dev/null 2>/dev/null |
    openssl x509 -noout -subject)" "the registrar serves the operator's certificate"
hreq "$BASE/cacert"
expect_http 200 "GET /cacert"
expect_eq "$(cat "$OP/ca-chain.pem")" "$(body)" "/cacert serves the operator's CA file"
cert_req demo "Bearer $SESSION" "$T/good.csr"
expect_http 200 "a certificate from the intermediate"
body >"$T/opchain.pem"
expect_eq 2 "$(grep -c 'BEGIN CERTIFICATE' "$T/opchain.pem")" "the chain is the certificate and the intermediate, not the root"
expect_eq "issuer=CN = Operator Intermediate" "$(openssl x509 -in "$T/opchain.pem" -noout -issuer)" "issued by the intermediate"
expect_status 0 openssl verify -purpose sslserver -CAfile "$OP/root.pem" -untrusted "$T/opchain.pem" "$T/opchain.pem"
na=$(date -d "$(openssl x509 -in "$T/opchain.pem" -noout -enddate | cut -d= -f2)" +%s)
((na <= $(date +%s) + LIFETIME + 5)) || fail "notAfter beyond cert_lifetime"
p2m_ok
