#!/usr/bin/env bash
# The admin web console in a real browser (issue 21): Debian's headless Chromium, driven by
# playwright-core (tests/browser/console.mjs, one step per run, the session kept between runs),
# against redis-server, the registrar, relay r1, an HTTP echo service and pipe2me-admin serve.
# In the browser: log in with the token; add pod web with label web through the form and save the
# provisioning download; a real pipe2me-pod started from that file comes online in the live view
# without a reload; a consumer (curl -L through the registrar's 307) gets the echo; disable in the
# page ends the pod's pre-connections and consumers no longer get through; enable brings it back;
# a new secret in the page gives the file once (GET of the action is no download), after which the
# registrar refuses the old secret and accepts the new one, and a pod started from the new file
# comes online; remove (confirmed) takes the row away. Screenshots of each step are kept as
# $P2M_BUILD_DIR/e2e-81-STEP.png. No timing thresholds: every wait is bounded (60 s) and polled.
#
# Needs what tests/run installs: chromium, node and tests/browser/node_modules (npm ci). Fails,
# never skips, when one is missing.
# shellcheck disable=SC2119 # p2m_start_system takes an optional argument
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq openssl oathtool ss node
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
p2m_require_browser
ADMIN=$P2M_BUILD_DIR/tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_POOL=2
SHOTS=$P2M_BUILD_DIR/e2e-81

p2m_start_system
p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"

TOKEN_FILE=$T/console.token
(umask 077 && openssl rand -hex 24 >"$TOKEN_FILE")
p2m_free_port CONSOLE_PORT
p2m_bg console "$ADMIN" -c "$P2M_CONFIG" serve --listen "127.0.0.1:$CONSOLE_PORT" --token-file "$TOKEN_FILE"
CONSOLE_PID=$P2M_BG_PID
p2m_wait_until "the console listens on $CONSOLE_PORT" p2m_listening "$CONSOLE_PORT"
URL=http://127.0.0.1:$CONSOLE_PORT

# browser STEP ARGS...: one step of console.mjs (its output in $OUT, stderr in $ERR), which must
# pass; bounded.
browser() {
    HOME=$T TMPDIR=$T timeout 180 node "$BROWSER_DIR/console.mjs" --url "$URL" --state "$T/browser-state.json" \
        --shot "$SHOTS" --timeout 60 "$@" >"$T/browser.out" 2>"$T/browser.err" ||
        fail "console.mjs $*: status $?"$'\n'"$(cat "$T/browser.err")"
    cat "$T/browser.out"
    expect_match "^result=ok step=$1( |$)" "$(tail -n 1 "$T/browser.out")" "console.mjs $1"
}

# consume PATH: curl -L through the registrar's 307 to the pod, trusting the registrar's CA; sets
# CODE and leaves the body in $T/resp.b (hreq).
consume() { hreq -L --connect-to ::127.0.0.1: "https://web.pipe2me.localhost:$P2M_HTTPS_PORT$1"; }

# ---------------------------------------------------------------- log in, add a pod

browser login "$TOKEN_FILE"
browser add web web "$T/web.json"
expect_eq "600" "$(stat -c %a "$T/web.json")" "the saved provisioning file's mode"
expect_status 0 admin --json pod show web
expect_eq "web" "$(jq -r '.labels | join(",")' "$OUT")" "the pod the form added, as the CLI shows it"
SECRET_OLD=$(jq -r .secret "$T/web.json")
if grep -qF -- "$SECRET_OLD" "$T/console.log"; then fail "the console logged the secret"; fi
p2m_ok

# ---------------------------------------------------------------- it comes online, live

# The page is open and shows the pod offline before the pod starts; it must see it come online
# without a reload.
HOME=$T TMPDIR=$T timeout 180 node "$BROWSER_DIR/console.mjs" --url "$URL" --state "$T/browser-state.json" \
    --shot "$SHOTS" --timeout 60 watch web >"$T/watch.out" 2>"$T/watch.err" &
WATCH_PID=$!
P2M_PIDS+=("$WATCH_PID")
p2m_wait_until -t 60 "the page watches the offline pod" grep -qx watching "$T/watch.out"
p2m_start_pod -f "$T/web.json" -w both web web "127.0.0.1:$ECHO_HTTP" --tls-terminate
wait "$WATCH_PID" || fail "console.mjs watch web: status $?"$'\n'"$(cat "$T/watch.err")"
cat "$T/watch.out"
expect_match '^result=ok step=watch live=no-reload' "$(tail -n 1 "$T/watch.out")" "the live view showed the pod online"

consume /through-the-console
expect_http 200 "a consumer of the pod added in the browser"
expect_match '^GET /through-the-console HTTP/1.1' "$(head -n 1 "$T/resp.b")" "the echo"

# ---------------------------------------------------------------- disable, enable

browser disable web
expect_status 0 admin --json pod show web
expect_eq true "$(jq -r .disabled "$OUT")" "disabled, as the CLI shows it"
p2m_wait_until -t 60 "the disabled pod's pre-connections end" p2m_idle_is 0 web
# The label keeps its consumer port (the 307), but nothing is behind it: the relay, with no
# pre-connection of the pod to pair, closes the consumer's connection (or, once the pod counts as
# gone, the registrar answers 503 itself).
rc=0
code=$(curl -sS -L --max-time 30 --connect-to ::127.0.0.1: --cacert "$P2M_CA" -o "$T/disabled.b" -w '%{http_code}' \
    "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/while-disabled" 2>"$T/disabled.err") || rc=$?
echo "a consumer of the disabled pod: curl status $rc, HTTP $code: $(cat "$T/disabled.err")"
[[ ($rc != 0 && $code == 307) || ($rc == 0 && $code == 503) ]] ||
    fail "a consumer of the disabled pod: want the relay to close on it (after the 307) or the registrar's 503, got curl status $rc, HTTP $code"
p2m_ok
if [[ -f $T/disabled.b ]] && grep -q '^GET /while-disabled' "$T/disabled.b"; then fail "a consumer got through to the disabled pod"; fi
p2m_ok
browser enable web
expect_status 0 admin --json pod show web
expect_eq false "$(jq -r .disabled "$OUT")" "enabled, as the CLI shows it"
p2m_wait_until -t 60 "the enabled pod fills its pool again" p2m_idle_is "$P2M_POOL" web
consume /enabled-again
expect_http 200 "a consumer after enable"
expect_match '^GET /enabled-again HTTP/1.1' "$(head -n 1 "$T/resp.b")" "the echo after enable"

# ---------------------------------------------------------------- a new secret, once

browser rotate web "$T/web-new.json"
expect_match '^result=ok step=rotate file=pipe2me-web.json again=(404|405)$' "$(tail -n 1 "$T/browser.out")" \
    "the file is offered once: GET of the action is no download"
SECRET_NEW=$(jq -r .secret "$T/web-new.json")
[[ $SECRET_NEW =~ ^[A-Z2-7]{16,}$ && $SECRET_NEW != "$SECRET_OLD" ]] || fail "the rotation's file holds no new secret"
p2m_ok
if grep -qF -- "$SECRET_NEW" "$T/console.log"; then fail "the console logged the new secret"; fi
p2m_ok
p2m_totp_fresh web "$SECRET_OLD"
p2m_reg -s 127.0.0.9 web "$(p2m_totp_auth web "$CODE_")"
expect_http 401 "a code of the old secret"
# The pod with the old file goes; one started from the new file serves.
p2m_stop web "$WEB_PID"
p2m_start_pod -f "$T/web-new.json" -d "$T/web-new" -o web-new -w both web web "127.0.0.1:$ECHO_HTTP" --tls-terminate
consume /after-rotation
expect_http 200 "a consumer through the pod with the new file"
expect_match '^GET /after-rotation HTTP/1.1' "$(head -n 1 "$T/resp.b")" "the echo after the rotation"

# ---------------------------------------------------------------- remove

browser rm web
expect_status 2 admin pod show web
p2m_wait_until "the actions are logged" p2m_log_has console 'event=console_action action=pod_rm result=ok id=web'
for a in pod_add pod_disable pod_enable pod_rotate; do
    expect_match "event=console_action action=$a result=ok id=web" "$(cat "$T/console.log")" "$a is logged"
done
p2m_stop console "$CONSOLE_PID"
expect_log_clean console

for s in login add watch disable enable rotate rm; do
    png=$SHOTS-$s.png
    [[ -s $png ]] || fail "no screenshot $png"
    expect_eq "89504e470d0a1a0a" "$(od -An -tx1 -N8 "$png" | tr -d ' \n')" "the screenshot's PNG signature ($png)"
done
echo "browser: screenshots kept as $SHOTS-*.png"
