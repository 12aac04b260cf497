#!/usr/bin/env bash
# pipe2me-pod behind an HTTP proxy: a real tinyproxy on 127.0.0.1 with basic auth, CONNECT allowed to
# the registrar's port and the relay's range only, and its outgoing connections bound to 127.0.0.2.
#   - --proxy http://USER:PASSWORD@127.0.0.1:PORT (the password percent-encoded): the pod registers
#     and fills its pool only through the proxy (the registrar and the relay see 127.0.0.2), and
#     consumers are served; the password is in neither the log nor the status; with --tls-terminate
#     its certificate comes through the proxy too;
#   - a wrong password: the registrations' CONNECT (libcurl's) is refused, the log and `status` say so
#     (proxy_refused, errors.registrar), and the pod retries with a growing backoff, no busy loop;
#   - the pod's own CONNECT for pre-connections refused the same way (https_proxy with a wrong
#     password, no_proxy exempting the registrar only): proxy_refused what=relay, errors.relay;
#   - bytes right behind a proxy's 200 are the tunnel's (a fake proxy written in bash), and the
#     CONNECT request is as PROTOCOL 1.5 says, with RFC 7617's Basic example;
#   - https_proxy in the environment instead of --proxy works the same;
#   - no_proxy naming the registrar's and the relay's hosts bypasses the proxy (a proxy that would
#     refuse the pod is never asked).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl socat jq ss tinyproxy
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_POOL=2
PROXY_USER=p2muser
PROXY_PASS=p2m-pass.w0rd # tinyproxy's BasicAuth takes [-a-z0-9._]
PROXY_PASS_URL=p2m%2Dpass.w0rd
EGRESS=127.0.0.2 # the proxy's outgoing address: what the registrar and the relay must see

# ---------------------------------------------------------------- setup

# shellcheck disable=SC2119 # p2m_start_system takes an optional argument
p2m_start_system
p2m_free_port PROXY_PORT
{
    echo "Port $PROXY_PORT"
    echo "Listen 127.0.0.1"
    echo "Bind $EGRESS"
    echo "Allow 127.0.0.1"
    echo "BasicAuth $PROXY_USER $PROXY_PASS"
    echo "LogLevel Connect"
    echo "MaxClients 200"
    echo "Timeout 600"
    echo "ConnectPort $P2M_HTTPS_PORT"
    for ((p = P2M_RELAY_PORT_LO; p <= P2M_RELAY_PORT_HI; p++)); do
        echo "ConnectPort $p"
    done
} >"$T/tinyproxy.conf"
p2m_bg tinyproxy tinyproxy -d -c "$T/tinyproxy.conf"
p2m_wait_until "tinyproxy listens on $PROXY_PORT" p2m_listening "$PROXY_PORT"
PROXY=http://$PROXY_USER:$PROXY_PASS_URL@127.0.0.1:$PROXY_PORT
PROXY_SHOWN=http://$PROXY_USER@127.0.0.1:$PROXY_PORT
# The proxy resolves what it is asked to CONNECT to, and the system's resolver knows no
# pipe2me.localhost: the pods that go through it name the registrar by its address, which its
# certificate carries.
REGISTRAR_IP=https://127.0.0.1:$P2M_HTTPS_PORT

p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"

# served LABEL N: N consumers of http://LABEL.pipe2me.localhost each get their request echoed.
served() {
    local q i got
    p2m_consumer_port q http "$1"
    for ((i = 0; i < $2; i++)); do
        got=$(curl -sS --noproxy '*' --max-time 20 "http://$1.pipe2me.localhost:$q/c$i") || fail "consumer $i of $1 failed"
        [[ $got == "GET /c$i HTTP/1.1"* ]] || fail "consumer $i of $1: got $(p2m_show "$got")"
        p2m_ok
    done
}

# p2m_pod_json_match DIR FILTER REGEX: a field of the pod's status matches the extended REGEX.
p2m_pod_json_match() { [[ $(p2m_pod_json "$1" "$2") =~ $3 ]]; }

# registered_from LABEL ADDR [PROTOCOL]: the registrar's 200s for LABEL came from ADDR, and the relay
# listens for the pod's pre-connections from ADDR only.
registered_from() {
    local svc=$1:${3:-http} # the relay names a service LABEL:PROTOCOL, or LABEL for https
    [[ ${3:-http} != https ]] || svc=$1
    p2m_log_has registrar "event=register status=200 label=$1 .* addr=$2 " || fail "no registration of $1 from $2"
    ! grep "event=register status=200 label=$1 " "$T/registrar.log" | grep -qv " addr=$2 " ||
        fail "a registration of $1 from another address than $2:"$'\n'"$(grep "label=$1 " "$T/registrar.log")"
    p2m_ok
    p2m_log_has relay "event=lease_listen lease=[0-9]* kind=pre label=$svc .* addr=$2 " || fail "no lease of $1 for $2 at the relay"
    ! grep "event=lease_listen lease=[0-9]* kind=pre label=$svc " "$T/relay.log" | grep -qv " addr=$2 " ||
        fail "a lease of $1 for another address than $2"
    p2m_ok
}

# no_secret NAME: the proxy's password (as given and as sent) is in neither the pod's log nor its status.
no_secret() {
    local b64
    b64=$(printf '%s:%s' "$PROXY_USER" "$PROXY_PASS" | base64)
    ! grep -qF -e "$PROXY_PASS" -e "$PROXY_PASS_URL" -e "$b64" "$T/$1.log" "$T/$1/status.json" || fail "$1 wrote the proxy's password"
    p2m_ok
}

# ---------------------------------------------------------------- --proxy: only through the proxy

p2m_start_pod podp web "127.0.0.1:$ECHO_HTTP" --protocol http --registrar "$REGISTRAR_IP" --proxy "$PROXY"
registered_from web "$EGRESS"
p2m_log_has podp "event=started .* proxy=$PROXY_SHOWN registrar_via=proxy" || fail "the pod's start line names the proxy"
p2m_ok
# At rest, every connection to the relay's range comes from the proxy's egress (the relay refuses
# any other for a pre lease, and none was refused).
peers=$(ss -Htn state established "( sport >= :$P2M_RELAY_PORT_LO and sport <= :$P2M_RELAY_PORT_HI )" | awk '{ sub(/:[0-9]+$/, "", $4); print $4 }' | sort -u)
expect_eq "$EGRESS" "$peers" "the peers of the relay's pre-connections"
expect_log_clean relay 'event=conn_refused'
p2m_log_has tinyproxy "CONNECT 127.0.0.1:$P2M_HTTPS_PORT " || fail "tinyproxy saw no CONNECT to the registrar"
p2m_log_has tinyproxy "CONNECT 127.0.0.1:[0-9]* " || fail "tinyproxy saw no CONNECT to the relay"
p2m_ok
served web 20
expect_eq "$PROXY_SHOWN" "$(p2m_pod_json "$T/podp" .proxy)" "status: the proxy, without its password"
expect_eq up "$(p2m_pod_json "$T/podp" .health.relay)" "status: relay up"
expect_eq "" "$(p2m_pod_json "$T/podp" .errors.relay)" "status: no relay error"
"$POD_BIN" status --state-dir "$T/podp" >"$OUT"
expect_match "proxy +$PROXY_SHOWN" "$(cat "$OUT")" "status table: the proxy"
no_secret podp
# shellcheck disable=SC2153 # p2m_start_pod sets NAME_PID
p2m_stop podp "$PODP_PID"
expect_log_clean podp

# ---------------------------------------------------------------- --tls-terminate: the certificate through the proxy

p2m_start_pod podtls sec "127.0.0.1:$ECHO_HTTP" --tls-terminate --registrar "$REGISTRAR_IP" --proxy "$PROXY"
p2m_log_has registrar "event=certificate status=200 label=sec .* addr=$EGRESS " || fail "no certificate for sec requested from $EGRESS"
p2m_ok
registered_from sec "$EGRESS" https
got=$(curl -sS -L --noproxy '*' --max-time 20 --cacert "$T/state/ca.pem" "https://sec.pipe2me.localhost:$P2M_HTTPS_PORT/tls") ||
    fail "the TLS consumer failed"
expect_match '^GET /tls HTTP/1.1' "$got" "HTTPS through the pod's TLS, over a pre-connection through the proxy"
no_secret podtls
p2m_stop podtls "$PODTLS_PID"

# ---------------------------------------------------------------- a wrong password: libcurl's CONNECT

t0=$(p2m_now_ms)
p2m_start_pod -w none podbad bad "127.0.0.1:$ECHO_HTTP" --protocol http --log-level debug --registrar "$REGISTRAR_IP" \
    --proxy "http://$PROXY_USER:wrong@127.0.0.1:$PROXY_PORT"
p2m_wait_until -t 60 "podbad logs the proxy's refusal" p2m_log_has podbad 'level=error event=proxy_refused label=bad what=registrar status=40[17] '
p2m_log_has podbad "error=\"proxy $PROXY_SHOWN answered CONNECT 127.0.0.1:$P2M_HTTPS_PORT with 40[17][^\"]*: check the user and password in the proxy URL\"" ||
    fail "the refusal's message:"$'\n'"$(grep event=proxy_refused "$T/podbad.log")"
p2m_ok
# Retries with a growing backoff: wait for three attempts, then each retry_ms exceeds the one before
# (doubling, +-25%), and the attempts are few for the time they took.
p2m_wait_until -t 60 "podbad retries" p2m_log_count_above podbad 'event=register_start' 2
mapfile -t waits < <(grep -oE 'event=(registrar_down|register_retry) .*retry_ms=[0-9]+' "$T/podbad.log" | sed 's/.*retry_ms=//' | head -n 3)
((${#waits[@]} >= 2 && waits[1] > waits[0])) || fail "backoff: retry_ms ${waits[*]}"
p2m_ok
attempts=$(p2m_log_count podbad 'event=register_start') secs=$((($(p2m_now_ms) - t0 + 999) / 1000))
((attempts <= 2 * secs + 2)) || fail "registration attempts in $secs s through a refusing proxy: $attempts"
p2m_ok
expect_eq 1 "$(p2m_log_count podbad 'event=proxy_refused')" "the refusal is logged once at error level"
p2m_wait_until "podbad's status says why" p2m_pod_json_match "$T/podbad" .errors.registrar "answered CONNECT .* with 40[17]"
expect_eq down "$(p2m_pod_json "$T/podbad" .health.registrar)" "status: registrar down"
"$POD_BIN" status --state-dir "$T/podbad" >"$OUT" || true
expect_match "registrar: proxy $PROXY_SHOWN answered CONNECT [^ ]* with 40[17]" "$(cat "$OUT")" "status table: the refusal"
expect_eq 0 "$(p2m_pod_json "$T/podbad" .pool.idle)" "status: nothing idle"
no_secret podbad
p2m_stop podbad "$PODBAD_PID"

# ---------------------------------------------------------------- a wrong password: the pod's own CONNECT

# The registrar exempt by no_proxy, the relay's address not: registrations go direct, the
# pre-connections through the proxy, which refuses them.
admin pod add podsplit --label split -o "$T/podsplit.json" >/dev/null
p2m_bg podsplit env -u http_proxy -u HTTPS_PROXY -u NO_PROXY https_proxy="http://$PROXY_USER:wrong@127.0.0.1:$PROXY_PORT" \
    no_proxy=pipe2me.localhost "$POD_BIN" register --provision "$T/podsplit.json" --forward "127.0.0.1:$ECHO_HTTP" \
    --protocol http --cacert "$T/state/ca.pem" --state-dir "$T/podsplit" --pool 2
PODSPLIT_PID=$P2M_BG_PID
p2m_wait_until -t 60 "podsplit logs the proxy's refusal of its CONNECT" \
    p2m_log_has podsplit 'level=error event=proxy_refused label=split what=relay status=40[17] '
p2m_log_has podsplit "error=\"proxy $PROXY_SHOWN answered CONNECT 127.0.0.1:[0-9]* with 40[17] [^\"]*: check the user and password in the proxy URL\"" ||
    fail "the refusal's message:"$'\n'"$(grep event=proxy_refused "$T/podsplit.log")"
p2m_ok
p2m_log_has podsplit 'level=warn event=proxy_split label=split relay=127.0.0.1 relay_via=proxy registrar_via=direct' ||
    fail "podsplit does not warn that the registrar and the relay are reached differently"
p2m_ok
p2m_log_has podsplit 'level=warn event=relay_down label=split reason="proxy ' || fail "no relay_down naming the proxy"
p2m_ok
p2m_wait_until "podsplit's status says why" p2m_pod_json_match "$T/podsplit" .errors.relay "answered CONNECT .* with 40[17]"
expect_eq 1 "$(p2m_log_count podsplit 'event=proxy_refused')" "the refusal is logged once at error level"
no_secret podsplit
p2m_stop podsplit "$PODSPLIT_PID"

# ---------------------------------------------------------------- bytes right behind the proxy's answer

# A fake proxy (socat and bash, which reads the request byte by byte up to its empty line): the
# first CONNECT gets its 200 with a consumer's request right behind it, in one write, as a relay that
# joined at once would give; later ones get the 200 alone. The pod must hand those bytes to the local
# service as the tunnel's, and their answer must come back through the same connection.
cat >"$T/fakeproxy.sh" <<'EOF'
while IFS= read -r line && [[ $line != $'\r' && -n $line ]]; do
    printf '%s\n' "${line%$'\r'}" >>"$1/fake-requests"
done
if mkdir "$1/fake-first" 2>/dev/null; then
    printf 'HTTP/1.1 200 Connection established\r\nProxy-Agent: fake\r\n\r\nGET /early HTTP/1.1\r\nHost: early\r\n\r\n'
    exec timeout 20 cat >"$1/fake-answer"
fi
printf 'HTTP/1.0 200 OK\n\n'
exec timeout 20 cat >/dev/null
EOF
p2m_free_port FAKE_PORT
p2m_bg fakeproxy socat "TCP-LISTEN:$FAKE_PORT,bind=127.0.0.1,reuseaddr,fork" "SYSTEM:bash $T/fakeproxy.sh $T"
FAKE_PID=$P2M_BG_PID
p2m_wait_until "the fake proxy listens" p2m_listening "$FAKE_PORT"
admin pod add podfake --label early -o "$T/podfake.json" >/dev/null
# The registrar exempt (the fake proxy cannot CONNECT), the relay's address not.
p2m_bg podfake env -u http_proxy -u HTTPS_PROXY -u NO_PROXY https_proxy="http://Aladdin:open%20sesame@127.0.0.1:$FAKE_PORT" \
    no_proxy=pipe2me.localhost "$POD_BIN" register --provision "$T/podfake.json" --forward "127.0.0.1:$ECHO_HTTP" \
    --protocol http --cacert "$T/state/ca.pem" --state-dir "$T/podfake" --pool 1 --drain-timeout 0
PODFAKE_PID=$P2M_BG_PID
p2m_wait_until -t 60 "the early request's answer comes back through the fake proxy" grep -q '^GET /early HTTP/1.1' "$T/fake-answer"
expect_match $'^HTTP/1\\.1 200 ' "$(head -n 1 "$T/fake-answer")" "the local service's answer, whole"
mapfile -t req < <(head -n 3 "$T/fake-requests")
expect_match '^CONNECT 127\.0\.0\.1:[0-9]+ HTTP/1\.1$' "${req[0]}" "the CONNECT request line"
target=${req[0]#CONNECT }
expect_eq "Host: ${target% HTTP/1.1}" "${req[1]}" "the CONNECT request's Host"
expect_eq "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==" "${req[2]}" "Basic credentials (RFC 7617's example)"
p2m_log_has podfake 'event=tunnel_open label=early ' || fail "podfake did not take the early bytes for a consumer"
p2m_ok
p2m_stop podfake "$PODFAKE_PID"
p2m_kill "$FAKE_PID"

# ---------------------------------------------------------------- https_proxy in the environment

admin pod add podenv --label envweb -o "$T/podenv.json" >/dev/null
p2m_bg podenv env -u http_proxy -u HTTPS_PROXY -u no_proxy -u NO_PROXY https_proxy="$PROXY" "$POD_BIN" register \
    --provision "$T/podenv.json" --registrar "$REGISTRAR_IP" --forward "127.0.0.1:$ECHO_HTTP" --protocol http --cacert "$T/state/ca.pem" \
    --state-dir "$T/podenv" --pool 2
PODENV_PID=$P2M_BG_PID
p2m_wait_until -t 60 "podenv fills its pool" p2m_pool_full "$T/podenv" 2
p2m_log_has podenv "event=started .* proxy=$PROXY_SHOWN registrar_via=proxy" || fail "podenv's start line names the proxy"
p2m_ok
registered_from envweb "$EGRESS"
served envweb 5
no_secret podenv
p2m_stop podenv "$PODENV_PID"

# ---------------------------------------------------------------- no_proxy

# The proxy in the environment would refuse this pod (a wrong password): no_proxy names the
# registrar's host and the relay's address, so neither is asked through it.
admin pod add podnp --label np -o "$T/podnp.json" >/dev/null
proxy_lines=$(wc -l <"$T/tinyproxy.log")
p2m_bg podnp env -u http_proxy -u https_proxy -u no_proxy HTTPS_PROXY="http://$PROXY_USER:wrong@127.0.0.1:$PROXY_PORT" \
    NO_PROXY=" .pipe2me.localhost , 127.0.0.0/8" "$POD_BIN" register --provision "$T/podnp.json" \
    --forward "127.0.0.1:$ECHO_HTTP" --protocol http --cacert "$T/state/ca.pem" --state-dir "$T/podnp" --pool 2
PODNP_PID=$P2M_BG_PID
p2m_wait_until -t 60 "podnp fills its pool" p2m_pool_full "$T/podnp" 2
p2m_log_has podnp "event=started .* proxy=$PROXY_SHOWN registrar_via=direct" || fail "podnp's start line"
p2m_ok
registered_from np 127.0.0.1
served np 3
expect_log_clean podnp 'event=proxy_'
# No other pod runs now: the proxy saw no request since podnp started.
! tail -n +"$((proxy_lines + 1))" "$T/tinyproxy.log" | grep -q 'Request .*CONNECT' || fail "the proxy was asked while no_proxy exempts everything"
p2m_ok
p2m_stop podnp "$PODNP_PID"
