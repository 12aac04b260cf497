#!/usr/bin/env bash
# The pod's run file from pipe2me-admin: `pod add ID --label ... -o FILE --service ...` writes the
# provisioning JSON with a "services" list, mode 600, and `pipe2me-pod run --config FILE` runs it as
# it is (with "cacert" added, mode kept): both services (http and tcp) fill their pools and their
# consumers reach the local services. A bad --service, or a label the pod does not own, is refused
# with nothing changed in Redis and no file left; the same run file readable by group is refused
# with one clear line.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq socat ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod

p2m_start_system

p2m_free_port ECHO_HTTP
p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP" --forward-tcp "$ECHO_TCP"
p2m_wait_until "the echo services listen" p2m_listening "$ECHO_TCP"

# ---------------------------------------------------------------- the file
F=$T/filepod.json
expect_status 0 admin pod add filepod --label web --label ssh -o "$F" \
    --service "web:http=127.0.0.1:$ECHO_HTTP" --service "ssh:tcp=127.0.0.1:$ECHO_TCP"
expect_empty "$OUT"
expect_match "written to $F, mode 0600" "$(cat "$ERR")" "pod add says where the file went"
expect_eq 600 "$(stat -c %a "$F")" "the run file is mode 600"
expect_eq "filepod|web ssh|6" "$(jq -r '"\(.id)|\(.labels | join(" "))|\(.digits)"' "$F")" "the provisioning keys"
expect_match '^[A-Z2-7]{32}$' "$(jq -r .secret "$F")" "the secret is inline"
expect_eq "[{\"label\":\"web\",\"protocol\":\"http\",\"forward\":\"127.0.0.1:$ECHO_HTTP\"},{\"label\":\"ssh\",\"protocol\":\"tcp\",\"forward\":\"127.0.0.1:$ECHO_TCP\"}]" \
    "$(jq -c .services "$F")" "the services, in order"

# ---------------------------------------------------------------- refused: nothing changes
admin_fails -r "option --service: label api is not one of pod other's labels" \
    pod add other --label web2 -o "$T/other.json" --service api=127.0.0.1:1
[[ ! -e $T/other.json ]] || fail "a refused pod add left $T/other.json"
admin_fails -r 'option --service "web2:ftp=127.0.0.1:1": expected the protocol http, https or tcp' \
    pod add other --label web2 --service web2:ftp=127.0.0.1:1
admin_fails -r 'HOST:PORT' pod add other --label web2 --service 'web2=127.0.0.1:99999'
admin_fails -r 'option --service: label nope is not one of pod filepod.s labels' \
    pod rotate-secret filepod -o "$T/rotated.json" --service nope=127.0.0.1:1
[[ ! -e $T/rotated.json ]] || fail "a refused rotate-secret left $T/rotated.json"
admin_fails -r 'pod ls: option --service does not apply' pod ls --service web=127.0.0.1:1

# ---------------------------------------------------------------- the pod runs it
(umask 077 && jq --arg ca "$T/state/ca.pem" '.cacert = $ca' "$F" >"$T/run.json") || fail "jq could not add cacert"
expect_eq 600 "$(stat -c %a "$T/run.json")" "the file with cacert is still mode 600"
RUN=$T/run
since=$(($(date +%s) - 1))
p2m_bg filepod "$POD_BIN" run --config "$T/run.json" --state-dir "$RUN"
FILEPOD_PID=$P2M_BG_PID
for svc in web-http ssh-tcp; do
    p2m_wait_until -t 90 "service $svc fills its pool" p2m_pool_full "$RUN/$svc" 4 "$since"
done

p2m_consumer_port QH http web
expect_match "^GET /from-the-file HTTP/1.1" "$(curl -sS --max-time 20 "http://web.pipe2me.localhost:$QH/from-the-file")" \
    "web (http) reaches the echo"
body=$(curl -sS --max-time 10 --cacert "$T/state/ca.pem" "https://pipe2me.localhost:$P2M_HTTPS_PORT/tcp/ssh") ||
    fail "GET /tcp/ssh failed"
[[ $body =~ :([0-9]+)$ ]] || fail "GET /tcp/ssh: no port in $(p2m_show "$body")"
QT=${BASH_REMATCH[1]}
expect_eq "tcp echo" "$(printf 'tcp echo' | timeout 10 socat -t 5 - "TCP:127.0.0.1:$QT")" "ssh (tcp) reaches the echo"
p2m_stop filepod "$FILEPOD_PID"
expect_log_clean filepod 'event=(loop_failed|out_of_memory)'

# ---------------------------------------------------------------- readable by group: refused
chmod 640 "$T/run.json"
expect_status 2 "$POD_BIN" run --config "$T/run.json" --state-dir "$RUN"
expect_file_one_line "$ERR" "$T/run.json: holds a secret but group or others may read it \(mode 640\): chmod 600 $T/run.json"
expect_empty "$OUT"
