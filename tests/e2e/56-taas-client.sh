#!/usr/bin/env bash
# The original TAAS client (issue 14, docs/PROTOCOL.md 1.2 and 1.4, docs/OPERATIONS.md "Pods").
#
# A pod of our own that behaves as that client does, written here in bash with curl, oathtool and
# socat: it keeps a pool of 4 pre-connections, and whenever some are missing it takes the current
# TOTP code once and sends one `PUT /register/LABEL` per missing pre-connection with that same
# code (the TAAS protocol's step 6), without a body, to the registrar by IP address
# (https://127.0.0.1:PORT with the registrar's CA), with an 8-digit code; each pre-connection is a
# socat from the leased port to an echo backend, which ends when its consumer leaves.
#
# 1. Its pod set to `--token-reuse same-address`, it fills and refills the pool for P2M_TAAS_SECS
#    (default 600 s: twenty TOTP steps) while consumers come and go through the label's consumer
#    port: every PUT is answered 200, and the relay holds 4 idle pre-connections after each
#    consumer. A pipe2me pod at the same address keeps its own pool meanwhile.
# 2. Set back to the default (`--token-reuse none`), the same client is refused: one PUT per step
#    passes, the others get 401 "token already used" (and 429 once they are many), and nobody else
#    at that address is held up: the pipe2me pod keeps its pool, and a pod that never registered
#    before registers from there with TOTP.
# 3. A label's default protocol (`label add --protocol tcp`) serves registrations without a body;
#    a body still says its own.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl oathtool jq socat ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
TAAS_SECS=${P2M_TAAS_SECS:-600}
POOL=4

# ---------------------------------------------------------------- the TAAS-like client

# taas-client.sh ID SECRET DIGITS URL LABEL CA BACKEND POOL SECS: runs SECS seconds, then closes
# its pre-connections and exits. One line per PUT on stdout: "put step=S status=C body=..." .
cat >"$T/taas-client.sh" <<'EOF'
#!/usr/bin/env bash
id=$1 secret=$2 digits=$3 url=$4 label=$5 ca=$6 backend=$7 pool=$8 secs=$9
pids=()
stop() { ((${#pids[@]} == 0)) || kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; exit 0; }
trap stop TERM INT
end=$((SECONDS + secs))
while ((SECONDS < end)); do
    live=()
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && live+=("$p"); done
    pids=("${live[@]}")
    need=$((pool - ${#pids[@]}))
    if ((need > 0)); then
        step=$(($(date +%s) / 30))
        code=$(oathtool --totp -b -d "$digits" --now "@$((step * 30))" "$secret")
        for ((i = 0; i < need; i++)); do
            out=$(curl -sS --max-time 10 --cacert "$ca" -X PUT -H "Authorization: TOTP username=\"$id\", response=\"$code\"" \
                -w '\n%{http_code}' "$url/register/$label" 2>&1)
            status=${out##*$'\n'} body=${out%$'\n'*}
            echo "put step=$step status=$status body=${body//$'\n'/ }"
            [[ $status == 200 && $body =~ ^(.+):([0-9]+)$ ]] || break
            socat -T 900 "TCP:${BASH_REMATCH[1]}:${BASH_REMATCH[2]}" "TCP:127.0.0.1:$backend" &
            pids+=($!)
        done
    fi
    sleep 1
done
stop
EOF

# The client's PUT lines, by status.
puts() { grep -c "^put .*status=$1 " "$T/$2.log" || true; }

# ---------------------------------------------------------------- setup

p2m_start_system '{"registrar": {"session_ttl": 600}}'
p2m_free_port ECHO
p2m_bg echo socat "TCP-LISTEN:$ECHO,bind=127.0.0.1,reuseaddr,fork" EXEC:cat
p2m_wait_until "the echo backend listens" p2m_listening "$ECHO"

expect_status 0 admin pod add taas --label taas --token-reuse same-address --digits 8 -o "$T/taas.json"
expect_eq 8 "$(jq -r .digits "$T/taas.json")" "the provisioning file's digits"
SECRET=$(jq -er .secret "$T/taas.json")
# A neighbour: a pipe2me pod at the same address (127.0.0.1).
expect_status 0 admin pod add demo --label demo -o "$T/demo.json"
p2m_start_pod demo demo "127.0.0.1:$ECHO"

# By IP: the registrar's generated certificate names its listen address.
URL="https://127.0.0.1:$P2M_HTTPS_PORT"
expect_status 0 curl -sS --max-time 10 --cacert "$P2M_CA" -o /dev/null "$URL/cacert"

# ---------------------------------------------------------------- 1. with token reuse

t0=$(date +%s)
p2m_bg taas1 bash "$T/taas-client.sh" taas "$SECRET" 8 "$URL" taas "$P2M_CA" "$ECHO" "$POOL" "$TAAS_SECS"
CLIENT=$P2M_BG_PID
p2m_wait_until "the relay holds $POOL idle pre-connections of taas" p2m_idle_is "$POOL" taas
# The first fill: one code, four PUTs, all 200 (three of them reusing the code).
head -n "$POOL" "$T/taas1.log" >"$T/first"
expect_eq "$POOL" "$(grep -c ' status=200 ' "$T/first")" "the first $POOL PUTs are 200"$'\n'"$(cat "$T/taas1.log")"
expect_eq 1 "$(grep -o 'step=[0-9]*' "$T/first" | sort -u | wc -l)" "the first $POOL PUTs carry one code"
p2m_wait_until "the registrar logged the reused code" \
    p2m_log_count_above registrar "event=register status=200 label=taas protocol=https pod=taas addr=127.0.0.1 auth=totp .*token=reused" 2

# Consumers come and go through the label's consumer port; after each, the client refills its
# pool (with a fresh code, or the current one again within its step).
p2m_consumer_port Q https taas
served=0
while (($(date +%s) < t0 + TAAS_SECS - 20)); do
    got=$(printf 'taas-%s\n' "$served" | socat -t 5 -T 10 - "TCP:127.0.0.1:$Q") || fail "consumer $served: socat failed"
    expect_eq "taas-$served" "$got" "consumer $served: the echo through a TAAS pre-connection"
    served=$((served + 1))
    p2m_wait_until -t 60 "the client refilled its pool after consumer $served" p2m_idle_is "$POOL" taas
    p2m_pool_full "$T/demo" 2 || fail "the pipe2me pod at the same address lost its pool"
    sleep 10
done
p2m_wait_until -t 120 "the TAAS client ends after ${TAAS_SECS}s" p2m_dead "$CLIENT"
steps=$(grep -o 'step=[0-9]*' "$T/taas1.log" | sort -u | wc -l)
total=$(grep -c '^put ' "$T/taas1.log")
echo "taas: $served consumers over ${TAAS_SECS}s, $total PUTs in $steps steps, all answered:"
grep -o 'status=[0-9]*' "$T/taas1.log" | sort | uniq -c
expect_eq "$total" "$(puts 200 taas1)" "every PUT of the client is 200"
# About one consumer every 11 s, and refills in most steps: at least half of each, however short
# P2M_TAAS_SECS is set.
min_served=$(((TAAS_SECS - 20) / 22)) min_steps=$((TAAS_SECS / 60))
((served >= min_served && served >= 1 && steps >= min_steps)) ||
    fail "only $served consumers in $steps steps, want $min_served and $min_steps"
p2m_ok
expect_eq 0 "$(p2m_log_count registrar 'event=register status=\(401\|429\) .*pod=taas ')" "no refusal of taas in the registrar's log"

# ---------------------------------------------------------------- 2. without token reuse

expect_status 0 admin pod set taas --token-reuse none
p2m_wait_until "the first client's pre-connections are gone" p2m_idle_is 0 taas
p2m_bg taas2 bash "$T/taas-client.sh" taas "$SECRET" 8 "$URL" taas "$P2M_CA" "$ECHO" "$POOL" 45
CLIENT=$P2M_BG_PID
p2m_wait_until "the second client is refused" p2m_log_count_above taas2 'status=401 body=token already used' 2
# Nobody else at 127.0.0.1 is held up: the pipe2me pod keeps its pool, and a pod that never
# registered before registers from there with TOTP while the refusals go on.
p2m_pool_full "$T/demo" 2 || fail "the pipe2me pod at the same address lost its pool"
p2m_ok
expect_status 0 admin pod add fresh --label fresh
FRESH_SECRET=$(jq -er .secret "$OUT")
code=$(oathtool --totp -b "$FRESH_SECRET")
hreq -X PUT -H "Authorization: $(p2m_totp_auth fresh "$code")" "$URL/register/fresh"
expect_http 200 "a new pod at the refused client's address"
p2m_wait_until -t 90 "the second client ends" p2m_dead "$CLIENT"
ok2=$(puts 200 taas2)
echo "taas without reuse: $ok2 PUTs answered 200, $(puts 401 taas2) 401, $(puts 429 taas2) 429 in 45 s"
((ok2 >= 1 && ok2 <= 3)) || fail "$ok2 PUTs of the refused client passed, want one per step (1-3 in 45 s)"
p2m_ok
p2m_pool_full "$T/demo" 2 || fail "the pipe2me pod at the same address lost its pool"
p2m_ok

# ---------------------------------------------------------------- 3. the label's default protocol

expect_status 0 admin pod add proto
PROTO_SECRET=$(jq -er .secret "$OUT")
expect_status 0 admin label add proto raw --protocol tcp
code=$(oathtool --totp -b "$PROTO_SECRET")
hreq -X PUT -H "Authorization: $(p2m_totp_auth proto "$code")" "$URL/register/raw"
expect_http 200 "a registration without a body for a tcp label"
session=$(hdr p2m-session)
p2m_wait_until "it registered the tcp service" p2m_log_has registrar "event=register status=200 label=raw protocol=tcp pod=proto "
hreq -X PUT -H "Authorization: Bearer $session" --data-binary '{"protocol": "http"}' "$URL/register/raw"
expect_http 200 "a registration with a body"
p2m_wait_until "the body's protocol wins" p2m_log_has registrar "event=register status=200 label=raw protocol=http pod=proto .*auth=bearer"
hreq -X PUT -H "Authorization: Bearer $session" "$URL/register/raw"
expect_http 200 "a Bearer registration without a body"
expect_eq 2 "$(p2m_log_count registrar 'event=register status=200 label=raw protocol=tcp ')" "the label's protocol again"

expect_log_clean registrar 'ERROR: AddressSanitizer|runtime error:'
