#!/usr/bin/env bash
# Secrets (docs/RELIABILITY.md, Secrets): every program at log_level debug, started with umask 000
# so that each must set its own file modes, on loopback with a private redis-server. It drives
# every path that handles a secret:
#   - provisioning: `pod add -o FILE` and `rotate-secret -o FILE` write mode 0600 and refuse an
#     existing file, a symbolic link to one and a dangling symbolic link (nothing written, Redis
#     unchanged); a pod refuses a provisioning or secret file others may read, and its errors about
#     a malformed secret never quote it; `pipe2me-pod env` never prints it;
#   - registration: a TOTP registration, a Bearer one, a wrong code, a wrong credential, and an
#     Authorization header carrying the secret itself; Redis keeps only the SHA-256 of a session;
#   - certificates: a CSR with TOTP and with Bearer, and a --tls-terminate pod that gets its
#     certificate by itself; a pod provisioned with a wrong secret (its TOTP fails);
#   - files: the registrar's ca-key.pem and registrar-key.pem and the pod's tls/key.pem, session
#     and totp-step are 0600, its state and tls directories 0700; status.json holds no credential.
# Then no log line of any program, and no output of the tools but the provisioning itself, holds a
# TOTP secret (base32, lower case, hex), a session credential, a TOTP code sent, or a line of a
# private key.
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss openssl oathtool base32 od cmp sha256sum
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
DOMAIN=pipe2me.localhost

SECRETS=()  # every TOTP secret in play, base32
SESSIONS=() # every session credential handed out
TOOL_OUT=() # files holding the tools' output that must not hold a secret

mode_is() { expect_eq "$2" "$(stat -c %a "$1")" "mode of ${1#"$T"/}"; }
hex_of() { printf '%s' "$1" | base32 -d | od -An -v -tx1 | tr -d ' \n'; }
sha256_hex() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
keep_out() { # keep the last tool output for the final scan
    cp -- "$OUT" "$T/tool.$1.out"
    cp -- "$ERR" "$T/tool.$1.err"
    TOOL_OUT+=("$T/tool.$1.out" "$T/tool.$1.err")
}

# certreq LABEL AUTH CSR: POST /certificate/LABEL.
certreq() { hreq -X POST -H "Authorization: $2" -H 'Content-Type: application/pkcs10' --data-binary "@$3" "$BASE/certificate/$1"; }
# session_of DESC: the last response carries a P2M-Session; records it.
session_of() {
    local s
    s=$(hdr p2m-session)
    [[ -n $s ]] || fail "$1: no P2M-Session"$'\n'"$(resp_dump)"
    SESSIONS+=("$s")
    p2m_ok
}
# no_echo DESC NEEDLE: the last response (headers and body) does not hold NEEDLE.
no_echo() {
    ! grep -qF -- "$2" "$T/resp.h" "$T/resp.b" || fail "$1: the response echoes a secret"$'\n'"$(resp_dump)"
    p2m_ok
}

# ---------------------------------------------------------------- the system, with umask 000

umask 000
p2m_start_system '{"log_level": "debug", "registrar": {"auth_fail_limit": 100}}'
umask 022
BASE=https://$DOMAIN:$P2M_HTTPS_PORT
mode_is "$T/state/ca-key.pem" 600
mode_is "$T/state/registrar-key.pem" 600
hreq "$BASE/cacert"
expect_http 200 "GET /cacert"
! grep -q 'PRIVATE' "$T/resp.b" || fail "/cacert serves a private key"
p2m_ok

# ---------------------------------------------------------------- provisioning files

(umask 000 && exec "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$P2M_CONFIG" pod add poda --label sa -o "$T/poda0.json") \
    >"$OUT" 2>"$ERR" || fail "pod add -o failed: $(cat "$ERR")"
p2m_ok
keep_out podadd
mode_is "$T/poda0.json" 600
expect_empty "$OUT"
SECRET_A0=$(jq -er .secret "$T/poda0.json")
SECRETS+=("$SECRET_A0")

expect_status 0 admin pod add podb --label sb # the secret on stdout: that is the provisioning itself
P2M_SECRET[podb]=$(jq -er .secret "$OUT")
SECRETS+=("${P2M_SECRET[podb]}")

# -o never replaces or follows anything: an existing file, a link to one, a dangling link.
echo precious >"$T/victim"
ln -s "$T/victim" "$T/link-to-file.json"
ln -s "$T/nowhere.json" "$T/dangling.json"
for f in "$T/poda0.json" "$T/link-to-file.json" "$T/dangling.json"; do
    cp -- "$T/poda0.json" "$T/poda0.copy"
    admin_fails -r 'exists' pod add podc --label sc -o "$f"
    admin_fails -r 'exists' pod rotate-secret poda -o "$f"
done
cmp -s "$T/poda0.json" "$T/poda0.copy" || fail "a refused -o changed the existing provisioning file"
expect_eq precious "$(cat "$T/victim")" "a refused -o wrote through the link"
[[ ! -e $T/nowhere.json ]] || fail "a refused -o created the dangling link's target"
p2m_ok

# rotate-secret -o, umask 000 again: mode 0600, a new secret.
(umask 000 && exec "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$P2M_CONFIG" pod rotate-secret poda -o "$T/poda.json") \
    >"$OUT" 2>"$ERR" || fail "rotate-secret -o failed: $(cat "$ERR")"
p2m_ok
keep_out rotate
mode_is "$T/poda.json" 600
P2M_SECRET[poda]=$(jq -er .secret "$T/poda.json")
[[ ${P2M_SECRET[poda]} != "$SECRET_A0" ]] || fail "rotate-secret kept the secret"
p2m_ok
SECRETS+=("${P2M_SECRET[poda]}")

# The pod refuses a provisioning or secret file others may read, and never quotes a bad secret.
cp -- "$T/poda.json" "$T/open.json"
chmod 644 "$T/open.json"
expect_status 2 "$POD_BIN" register --provision "$T/open.json" --forward 127.0.0.1:9 --cacert "$T/state/ca.pem"
expect_match 'group or others may read' "$(cat "$ERR")" "a provisioning file mode 0644"
keep_out open
printf '%s\n' "${P2M_SECRET[poda]}" >"$T/secret.txt"
chmod 640 "$T/secret.txt"
expect_status 2 "$POD_BIN" register --registrar "$BASE" --id poda --secret-file "$T/secret.txt" --label sa \
    --forward 127.0.0.1:9 --cacert "$T/state/ca.pem"
expect_match 'group or others may read' "$(cat "$ERR")" "a secret file mode 0640"
keep_out secretfile
BAD_SECRET=${P2M_SECRET[poda]:0:20}189${P2M_SECRET[poda]:23} # 1, 8 and 9 are not base32
jq --arg s "$BAD_SECRET" '.secret = $s' "$T/poda.json" >"$T/bad.json"
chmod 600 "$T/bad.json"
expect_status 2 "$POD_BIN" register --provision "$T/bad.json" --forward 127.0.0.1:9 --cacert "$T/state/ca.pem"
expect_match 'secret' "$(cat "$ERR")" "a malformed secret is refused"
! grep -qF -- "${BAD_SECRET:0:16}" "$ERR" || fail "the error quotes the malformed secret: $(cat "$ERR")"
p2m_ok
keep_out badsecret
expect_status 0 "$POD_BIN" env --provision "$T/poda.json"
keep_out env

# ---------------------------------------------------------------- registrations

# TOTP, then Bearer with the session it brought.
p2m_totp_fresh podb
p2m_reg sb "$(p2m_totp_auth podb "$CODE_")"
expect_http 200 "TOTP registration"
session_of "TOTP registration"
SESSION_B=${SESSIONS[-1]}
expect_eq 1 "$(rcli EXISTS "p2m:session:$(sha256_hex "$SESSION_B")")" "Redis keys the session by its SHA-256"
redis_snapshot "$T/keyspace"
! grep -qF -- "$SESSION_B" "$T/keyspace" || fail "Redis holds a session credential in clear"
p2m_ok
p2m_reg sb "Bearer $SESSION_B"
expect_http 200 "Bearer registration"

# A wrong code, a wrong credential, and the secret itself where a code or credential goes.
p2m_totp_fresh podb
wrong=$(printf '%06d' $(((10#$CODE_ + 500000) % 1000000)))
P2M_CODES+=("$wrong")
p2m_reg sb "$(p2m_totp_auth podb "$wrong")"
expect_http 401 "a wrong code"
no_echo "a wrong code" "$wrong"
p2m_reg sb "Bearer $(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
expect_http 401 "a wrong session credential"
p2m_reg sb "$(p2m_totp_auth podb "${P2M_SECRET[podb]}")"
expect_http 401 "the secret as the response"
no_echo "the secret as the response" "${P2M_SECRET[podb]}"
p2m_reg sb "Bearer ${P2M_SECRET[podb]}"
expect_http 401 "the secret as a Bearer credential"
no_echo "the secret as a Bearer credential" "${P2M_SECRET[podb]}"

# ---------------------------------------------------------------- certificates

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=sb.$DOMAIN" \
    -addext "subjectAltName=DNS:sb.$DOMAIN" -keyout "$T/sb.key" -out "$T/sb.csr" 2>/dev/null
p2m_totp_fresh podb
certreq sb "$(p2m_totp_auth podb "$CODE_")" "$T/sb.csr"
expect_http 200 "a certificate with TOTP"
session_of "a certificate with TOTP"
certreq sb "Bearer ${SESSIONS[-1]}" "$T/sb.csr"
expect_http 200 "a certificate with Bearer"

# A --tls-terminate pod in front of the HTTP echo, started with umask 000: it makes its key, gets
# its certificate with a TOTP code and registers with the session that brought.
p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"
umask 000
p2m_start_pod poda sa "127.0.0.1:$ECHO_HTTP" --tls-terminate --log-level debug
umask 022
got=$(curl -4 -sS -L --max-time 20 --cacert "$T/state/ca.pem" --connect-to ::127.0.0.1: "https://sa.$DOMAIN:$P2M_HTTPS_PORT/hello") ||
    fail "the pod did not serve"
expect_match '^GET /hello HTTP/1.1' "$got" "served through the pod's TLS"
mode_is "$T/poda" 700
mode_is "$T/poda/tls" 700
mode_is "$T/poda/tls/key.pem" 600
mode_is "$T/poda/session" 600
mode_is "$T/poda/totp-step" 600
SESSIONS+=("$(awk '{ print $5 }' "$T/poda/session")")
for s in "${SESSIONS[-1]}" "${P2M_SECRET[poda]}"; do
    ! grep -qF -- "$s" "$T/poda/status.json" || fail "status.json holds a credential"
done
p2m_ok
expect_status 0 "$POD_BIN" status --state-dir "$T/poda" --json
keep_out status

# A pod provisioned with a valid secret that is not its own: its TOTP is refused.
WRONG_SECRET=$(head -c 20 /dev/urandom | base32)
SECRETS+=("$WRONG_SECRET")
jq --arg s "$WRONG_SECRET" '.secret = $s' "$T/poda.json" >"$T/wrong.json"
chmod 600 "$T/wrong.json"
fails0=$(p2m_log_count registrar 'status=401 .*pod=poda .*reason="wrong token"')
p2m_bg wrong "$POD_BIN" register --provision "$T/wrong.json" --label sa --forward "127.0.0.1:$ECHO_HTTP" \
    --cacert "$T/state/ca.pem" --state-dir "$T/wrong" --log-level debug
WRONG_PID=$P2M_BG_PID
p2m_wait_until "the registrar refuses the wrong secret's code" p2m_log_count_above registrar \
    'status=401 .*pod=poda .*reason="wrong token"' "$fails0"
p2m_stop wrong "$WRONG_PID"
p2m_stop poda "$PODA_PID"

# ---------------------------------------------------------------- nothing leaked

p2m_stop relay "$RELAY_PID"
p2m_stop registrar "$REGISTRAR_PID"
needles=()
for s in "${SECRETS[@]}"; do
    h=$(hex_of "$s")
    expect_eq 40 "${#h}" "hex form of a secret"
    needles+=("$s" "${s,,}" "$h" "${h^^}")
done
needles+=("${SESSIONS[@]}")
for f in "$T/state/ca-key.pem" "$T/state/registrar-key.pem" "$T/poda/tls/key.pem" "$T/sb.key"; do
    while IFS= read -r line; do
        [[ $line == -----* || ${#line} -lt 16 ]] || needles+=("$line")
    done <"$f"
done
logs=("$T"/*.log)
for n in "${needles[@]}"; do
    if hit=$(grep -lF -- "$n" "${logs[@]}" "${TOOL_OUT[@]}"); then
        fail "a secret appears in $(xargs -n 1 basename <<<"$hit" | paste -sd ' ')"
    fi
done
! grep -l 'PRIVATE KEY' "${logs[@]}" "${TOOL_OUT[@]}" || fail "a log or tool output holds a private key"
p2m_ok
# The codes sent: ours, and the last one each pod computed (its step is in totp-step).
P2M_CODES+=("$(p2m_totp_code "${P2M_SECRET[poda]}" "$(cat "$T/poda/totp-step")")")
for c in "${P2M_CODES[@]}"; do
    ! grep -qwF -- "$c" "$T/registrar.log" "$T/poda.log" "$T/wrong.log" || fail "a TOTP code appears in a log: $c"
done
p2m_ok
echo "secrets: ${#SECRETS[@]} secrets, ${#SESSIONS[@]} session credentials, ${#P2M_CODES[@]} codes and $(( ${#needles[@]} - 4 * ${#SECRETS[@]} - ${#SESSIONS[@]} )) key lines" \
    "absent from $(cat "${logs[@]}" | wc -l) log lines ($(basename -a "${logs[@]}" | paste -sd ' ')) and ${#TOOL_OUT[@]} tool outputs"
for f in registrar relay poda wrong echo; do
    expect_log_clean "$f" 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer'
done
