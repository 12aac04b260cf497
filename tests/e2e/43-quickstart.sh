#!/usr/bin/env bash
# tools/quickstart as a newcomer runs it: `tools/quickstart --detach DIR` builds into <repo>/build
# and starts redis-server, the registrar, the relay, a demo HTTPS site and a demo pod under DIR;
# `curl -L --cacert DIR/state/ca.pem URL` on the URL it prints returns the demo page ("Hello from
# pipe2me") over TLS that ends at the pod (subject demo.pipe2me.localhost, issued by the registrar's
# CA, the pod's key under DIR/pod/tls); `tools/quickstart --stop DIR` stops exactly the processes named in DIR/run (they are
# gone afterwards, and processes of the same programs that it did not start still run).
# Skipped, with a message, only when <repo>/build cannot be made. When <repo>/build is the tree the
# tests run from (cmake -B build), the quickstart builds into a private tree instead
# (P2M_QUICKSTART_BUILD_DIR, as 44 does): its own configure (RelWithDebInfo) and build would relink
# the programs under the tests that ctest -j runs beside this one.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl openssl ss redis-server python3 jq
QS=$P2M_SOURCE_DIR/tools/quickstart
DIR=$T/qs
PAGE="Hello from pipe2me"

if ! mkdir -p -- "$P2M_SOURCE_DIR/build" 2>/dev/null || [[ ! -w $P2M_SOURCE_DIR/build ]]; then
    echo "SKIP: $P2M_SOURCE_DIR/build cannot be made or written, and tools/quickstart builds there"
    exit 0
fi
if [[ $(cd -- "$P2M_BUILD_DIR" && pwd -P) == "$(cd -- "$P2M_SOURCE_DIR/build" && pwd -P)" ]]; then
    export P2M_QUICKSTART_BUILD_DIR=$P2M_BUILD_DIR/quickstart-43
fi

# ---------------------------------------------------------------- helpers

# runs PID: PID is a live process (not gone, not a zombie that nobody reaped yet).
runs() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

p2m_quickstart_trap "$QS" "$DIR"

# ---------------------------------------------------------------- decoys

# Processes of the same programs that the quickstart did not start: --stop must leave them alone.
p2m_start_redis
p2m_free_port DECOY
p2m_bg decoy python3 -m http.server --bind 127.0.0.1 --directory "$T" "$DECOY"
DECOY_PID=$P2M_BG_PID
p2m_wait_until -t 30 "the decoy web server listens" p2m_listening "$DECOY"

# ---------------------------------------------------------------- --detach

t0=$(p2m_now_ms)
rc=0
timeout 540 "$QS" --detach "$DIR" >"$T/qs.out" 2>"$T/qs.err" || rc=$?
t1=$(p2m_now_ms)
cat "$T/qs.out"
((rc == 0)) || fail "tools/quickstart --detach exited with status $rc"$'\n'"--- stderr:"$'\n'"$(cat "$T/qs.err")"
p2m_ok
echo "quickstart: --detach (build included) took $((t1 - t0)) ms"

url=$(sed -n 's/^quickstart: consumer URL: //p' "$T/qs.out")
expect_match '^https://demo\.pipe2me\.localhost:[0-9]+/$' "$url" "the consumer URL quickstart prints"
sni_port=$(jq -r '.relay.sni_listen' "$DIR/pipe2me.json" | sed 's/.*://')
expect_eq "https://demo.pipe2me.localhost:$sni_port/" "$url" "the consumer URL is the relay's SNI port"
url307=$(sed -n 's/^quickstart: or through the registrar.s redirect: curl -L --cacert [^ ]* //p' "$T/qs.out")
https_port=$(jq -r '.registrar.https' "$DIR/pipe2me.json" | sed 's/.*://')
expect_eq "https://demo.pipe2me.localhost:$https_port/" "$url307" "the 307 URL quickstart prints beside it"
declare -A qs_pids=()
for f in "$DIR"/run/*.pid; do
    [[ -e $f ]] || fail "no PID files in $DIR/run"
    read -r pid name <"$f"
    qs_pids[$name]=$pid
done
expect_eq "demo-web pod redis registrar relay" "$(printf '%s\n' "${!qs_pids[@]}" | sort | paste -sd ' ')" \
    "the processes quickstart names in $DIR/run"
for name in "${!qs_pids[@]}"; do
    runs "${qs_pids[$name]}" || fail "$name (pid ${qs_pids[$name]}) does not run after --detach"
    p2m_ok
done

# ---------------------------------------------------------------- the demo page

# The pod registers in the background: the registrar answers 503 until its pool is idle.
page_ok() {
    curl -sS -L --max-time 10 --cacert "$DIR/state/ca.pem" "$url" >"$T/page" 2>"$T/page.err" && grep -qF "$PAGE" "$T/page"
}
t0=$(p2m_now_ms)
end=$((SECONDS + 60))
until page_ok || ((SECONDS >= end)); do
    sleep 0.5
done
t1=$(p2m_now_ms)
if ! grep -qF "$PAGE" "$T/page"; then
    # Say precisely what went wrong: the same page by its file name, through the same tunnel.
    other=$(curl -sS -L --max-time 10 --cacert "$DIR/state/ca.pem" "${url}" 2>&1 || true)
    fail "curl -L --cacert $DIR/state/ca.pem $url did not return the demo page within 60s; it returned:"$'\n'"$(cat "$T/page" "$T/page.err")"$'\n'"--- while ${url} returns:"$'\n'"$other"
fi
p2m_ok
echo "quickstart: the demo page came through the tunnel $((t1 - t0)) ms after --detach returned"

# With no redirect on the SNI port; through the 307 as well.
expect_eq "200 0" "$(curl -sS --max-time 10 --cacert "$DIR/state/ca.pem" -o /dev/null -w '%{http_code} %{num_redirects}' "$url")" \
    "the SNI URL: 200 with no redirect"
curl -sS -L --max-time 10 --cacert "$DIR/state/ca.pem" "$url307" | grep -qF "$PAGE" || fail "the 307 URL did not return the demo page"
p2m_ok

# TLS ends at the pod: the consumer port presents the pod's certificate, for its key.
loc=$(curl -sS --max-time 10 --cacert "$DIR/state/ca.pem" -o /dev/null -w '%{redirect_url}' "$url307")
qport=${loc#https://demo.pipe2me.localhost:}
qport=${qport%%/*}
openssl s_client -connect "127.0.0.1:$qport" -servername demo.pipe2me.localhost -CAfile "$DIR/state/ca.pem" </dev/null \
    >"$T/sclient" 2>&1 || true
expect_match 'subject=CN *= *demo\.pipe2me\.localhost' "$(cat "$T/sclient")" "the consumer port presents the pod's certificate"
expect_match 'Verify return code: 0 \(ok\)' "$(cat "$T/sclient")" "it verifies against the registrar's CA"
expect_eq "$(openssl pkey -in "$DIR/pod/tls/key.pem" -pubout)" \
    "$(sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' "$T/sclient" | openssl x509 -noout -pubkey)" "for the key the pod keeps"
expect_eq 600 "$(stat -c %a "$DIR/pod/tls/key.pem")" "the pod's key is mode 0600"

# pipe2me-admin check on the quickstart stack: every finding ok (or skip), exit 0. A relay heartbeat
# read just before its refresh is a warn: the check is retried until one run is clean.
admin_check_clean() {
    "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$DIR/pipe2me.json" check >"$T/check.out" 2>&1 && ! grep -qE 'status=(warn|fail)' "$T/check.out"
}
p2m_wait_until -t 60 "pipe2me-admin check is clean on the quickstart stack" admin_check_clean
expect_match 'check=relays status=ok' "$(cat "$T/check.out")" "check sees the quickstart's relay"
expect_match 'check=ca status=ok' "$(cat "$T/check.out")" "check reads the quickstart's CA"
echo "quickstart: pipe2me-admin check:"
sed 's/^/    /' "$T/check.out"

# ---------------------------------------------------------------- --stop

expect_status 0 "$QS" --stop "$DIR"
cat "$OUT"
for name in "${!qs_pids[@]}"; do
    p2m_wait_until -t 30 "$name (pid ${qs_pids[$name]}) is gone after --stop" eval "! runs ${qs_pids[$name]}"
done
expect_eq "" "$(ls "$DIR"/run/*.pid 2>/dev/null || true)" "no PID files left in $DIR/run"
p2m_alive "$DECOY_PID" || fail "--stop killed a python3 http.server it did not start"
p2m_ok
p2m_alive "$P2M_REDIS_PID" || fail "--stop killed a redis-server it did not start"
p2m_ok
