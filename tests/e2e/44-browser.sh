#!/usr/bin/env bash
# A real browser on the quickstart: `tools/quickstart --detach DIR` starts redis-server, the
# registrar, the relay (with its SNI port), the demo web service and the demo pod; Debian's headless
# Chromium, driven by playwright-core (tests/browser/open-page.mjs), opens the consumer URL
# quickstart prints, https://demo.pipe2me.localhost:SNIPORT/, and the demo page renders ("Hello
# from pipe2me") with no redirect (status chain 200), over TLS that ends at the pod. Before that,
# the same browser downloads https://pipe2me.localhost:SNIPORT/cacert through the same port: it
# then holds an HTTP/2 connection to the registrar whose certificate covers *.pipe2me.localhost at
# the same address, which Chromium may reuse for the label's URL (connection coalescing); the
# registrar answers such a request 421 and the browser opens its own connection, so the page still
# comes from the pod (checked by the certificate it came with). The 307 URL printed beside it is
# opened too: the chain 307,200 to the service's consumer port. The PNG screenshot of the SNI page
# is kept as $P2M_BUILD_DIR/e2e-44-browser.png. The demo service must answer `/` with its page.
#
# The CA is trusted the way a person would trust it: Chromium reads $HOME/.pki/nssdb, so the
# browser runs with HOME set to a fresh directory whose NSS database holds DIR/state/ca.pem (added
# with certutil). The same navigation with an empty NSS database must fail with
# ERR_CERT_AUTHORITY_INVALID: certificate checks are on. Chromium resolves *.localhost to loopback
# by itself (open-page.mjs checks that each response came from a loopback address).
#
# Not in the way of 43-quickstart.sh under ctest -j2: quickstart builds into
# P2M_QUICKSTART_BUILD_DIR=$P2M_BUILD_DIR/quickstart-44 (reused by the next run), and DIR holds a
# config written beforehand with free ports (quickstart keeps a config it finds).
#
# Needs what tests/run installs: chromium, certutil (libnss3-tools), node and npm, and
# tests/browser/node_modules (npm ci). Fails, never skips, when one is missing.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl openssl ss redis-server jq certutil node
p2m_require_browser
PAGE="Hello from pipe2me"
DIR=$T/qs
SHOT_KEEP=$P2M_BUILD_DIR/e2e-44-browser.png # the screenshot, kept after $T is removed

# ---------------------------------------------------------------- a private quickstart

export P2M_QUICKSTART_BUILD_DIR=$P2M_BUILD_DIR/quickstart-44
QS=$P2M_SOURCE_DIR/tools/quickstart

# Free ports for the registrar (HTTPS, HTTP, PROXY listener), the relay (range, SNI port) and the
# demo web service, in the config quickstart reads.
mkdir -p -- "$DIR"
p2m_free_port_range RELAY_LO RELAY_HI 32
p2m_free_port SNI_PORT
p2m_free_port PROXY_PORT
p2m_write_config "{\"redis\": \"unix:$DIR/redis.sock\", \"state_dir\": \"$DIR/state\",
    \"registrar\": {\"proxy_listen\": \"127.0.0.1:$PROXY_PORT\"},
    \"relay\": {\"ports\": \"$RELAY_LO-$RELAY_HI\", \"sni_listen\": \"127.0.0.1:$SNI_PORT\"}}" "$DIR/pipe2me.json"
p2m_free_port DEMO_PORT
echo "$DEMO_PORT" >"$DIR/demo.port"

p2m_quickstart_trap "$QS" "$DIR"

t0=$(p2m_now_ms)
rc=0
timeout 540 "$QS" --detach "$DIR" >"$T/qs.out" 2>"$T/qs.err" || rc=$?
t1=$(p2m_now_ms)
((rc == 0)) || fail "tools/quickstart --detach exited with status $rc"$'\n'"--- stderr:"$'\n'"$(cat "$T/qs.err")"
p2m_ok
echo "browser: quickstart --detach (build included) took $((t1 - t0)) ms"

printed=$(sed -n 's/^quickstart: consumer URL: //p' "$T/qs.out")
expect_eq "https://demo.pipe2me.localhost:$SNI_PORT/" "$printed" "the consumer URL quickstart prints (the SNI port)"
printed307=$(sed -n "s/^quickstart: or through the registrar's redirect: curl -L --cacert [^ ]* //p" "$T/qs.out")
expect_eq "https://demo.pipe2me.localhost:$P2M_HTTPS_PORT/" "$printed307" "the 307 URL quickstart prints beside it"
sni_url=$printed
url=$printed307
CA=$DIR/state/ca.pem
[[ -s $CA ]] || fail "quickstart left no CA certificate in $CA"

# The pod registers in the background: the registrar answers 503 until one of its pre-connections
# is idle, and 307 from then on. Asked without following, so no pre-connection is used up.
ready() {
    [[ $(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$CA" "$url" 2>/dev/null) == 307 ]]
}
end=$((SECONDS + 60))
until ready; do
    ((SECONDS < end)) || fail "the registrar did not answer $url with 307 within 60s (last answer: $(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CA" "$url" 2>&1))"
    sleep 0.2
done
p2m_ok

# ---------------------------------------------------------------- NSS databases

# new_nssdb HOME [CA]: HOME/.pki/nssdb, empty or trusting CA for TLS servers.
new_nssdb() {
    mkdir -p -- "$1/.pki/nssdb"
    certutil -d "sql:$1/.pki/nssdb" -N --empty-password || fail "certutil -N failed for $1"
    if [[ -n ${2:-} ]]; then
        certutil -d "sql:$1/.pki/nssdb" -A -t "C,," -n pipe2me-ca -i "$2" || fail "certutil -A failed for $2"
        certutil -d "sql:$1/.pki/nssdb" -L -n pipe2me-ca >/dev/null || fail "the CA is not in $1/.pki/nssdb"
    fi
    p2m_ok
}
new_nssdb "$T/home-untrusted"
new_nssdb "$T/home" "$CA"

# open_page HOME ARGS...: open-page.mjs with the browser's HOME, its profile under $T, bounded.
open_page() {
    local home=$1
    shift
    HOME=$home TMPDIR=$T timeout 120 node "$BROWSER_DIR/open-page.mjs" --timeout 60 "$@"
}

# ---------------------------------------------------------------- without the CA

expect_status 0 open_page "$T/home-untrusted" --url "$url" --expect-error 'ERR_CERT_AUTHORITY_INVALID'
cat "$OUT"
expect_match '^result=expected-error .*ERR_CERT_AUTHORITY_INVALID' "$(cat "$OUT")" \
    "without the CA in its NSS database the browser must refuse the registrar's certificate"
expect_status 0 open_page "$T/home-untrusted" --url "$sni_url" --expect-error 'ERR_CERT_AUTHORITY_INVALID'
cat "$OUT"
expect_match '^result=expected-error .*ERR_CERT_AUTHORITY_INVALID' "$(cat "$OUT")" \
    "without the CA in its NSS database the browser must refuse the pod's certificate on the SNI port"

field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" <<<" $line"; }

# ---------------------------------------------------------------- the SNI URL, after /cacert

REG_LOG=$DIR/log/registrar.log
[[ -f $REG_LOG ]] || fail "quickstart left no registrar log in $REG_LOG"
misdirected_before=$(grep -c 'status=421' "$REG_LOG" || true)
t0=$(p2m_now_ms)
expect_status 0 open_page "$T/home" --first "https://pipe2me.localhost:$SNI_PORT/cacert" \
    --url "$sni_url" --chain 200 --expect "$PAGE" --screenshot "$T/page.png"
t1=$(p2m_now_ms)
cat "$OUT"
echo "browser: /cacert, then the SNI page, rendered in $((t1 - t0)) ms (browser start included)"
expect_file_one_line "$OUT" '^result=ok '
line=$(cat "$OUT")
expect_eq "200" "$(field status_chain)" "the main-frame responses on the SNI port (no redirect)"
expect_eq "https://pipe2me.localhost:$SNI_PORT/cacert:download:certificate:$(stat -c %s "$CA")B" "$(field first)" \
    "the earlier visit: the registrar's CA certificate, through the SNI port"
expect_eq "$sni_url" "$(field final_url)" "the page's URL (the one quickstart printed)"
expect_eq "127.0.0.1:$SNI_PORT" "$(field server)" "the page was served on loopback by the relay's SNI port"
expect_eq "demo.pipe2me.localhost" "$(field tls_subject)" "the certificate the page came with (TLS ends at the pod, not the registrar)"
# Whether Chromium tried the registrar's connection first is its choice; when it did, the registrar
# logged the 421 that sent it to its own connection.
misdirected=$(($(grep -c 'status=421' "$REG_LOG" || true) - misdirected_before))
echo "browser: requests the registrar answered 421 (coalesced onto its connection): $misdirected"
[[ -s $T/page.png ]] || fail "no screenshot in $T/page.png"
cp -- "$T/page.png" "$SHOT_KEEP"

# ---------------------------------------------------------------- the 307 URL (TAAS's flow)

t0=$(p2m_now_ms)
expect_status 0 open_page "$T/home" --url "$url" --expect "$PAGE" --screenshot "$T/page307.png"
t1=$(p2m_now_ms)
cat "$OUT"
echo "browser: the page rendered in $((t1 - t0)) ms (browser start included)"
expect_file_one_line "$OUT" '^result=ok '
line=$(cat "$OUT")
expect_eq "307,200" "$(field status_chain)" "the main-frame responses"
expect_eq "$url" "$(field start_url)" "where the browser started"
final=$(field final_url)
expect_match "^https://demo\.pipe2me\.localhost:[0-9]+/$" "$final" "the page's URL after the redirect"
expect_eq "$final" "$(field location)" "the page came from the 307's Location"
port=${final#https://demo.pipe2me.localhost:}
port=${port%/}
((port >= RELAY_LO && port <= RELAY_HI)) || fail "the 307 sent the browser to port $port, outside the relay's $RELAY_LO-$RELAY_HI"
p2m_ok
expect_eq "127.0.0.1:$port" "$(field server)" "the page was served on loopback by the relay"
expect_eq "demo.pipe2me.localhost" "$(field tls_subject)" "the certificate the page came with (TLS ends at the pod's side)"

# The screenshots: non-empty PNGs.
for png in "$T/page.png" "$T/page307.png"; do
    [[ -s $png ]] || fail "no screenshot in $png"
    expect_eq "89504e470d0a1a0a" "$(od -An -tx1 -N8 "$png" | tr -d ' \n')" "the screenshot's PNG signature ($png)"
    size=$(stat -c %s "$png")
    ((size > 1000)) || fail "the screenshot $png is only $size bytes"
done
p2m_ok
echo "browser: screenshot of the SNI page ($(stat -c %s "$SHOT_KEEP") bytes) kept in $SHOT_KEEP"

# ---------------------------------------------------------------- --stop

expect_status 0 "$QS" --stop "$DIR"
expect_eq "" "$(ls "$DIR"/run/*.pid 2>/dev/null || true)" "no PID files left in $DIR/run"
