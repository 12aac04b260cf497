#!/usr/bin/env bash
# pipe2me-registrar, consumer side (docs/PROTOCOL.md 2 and 3.2-3.4), with registrar.consumer_ports
# "per-address" (the per-service default is 52-consumer-ports.sh): https://LABEL.DOMAIN/... is a
# 307 to a consumer port Q leased per consumer address and label, reused while it lives; 503 with
# Retry-After when no pre-connection is idle, 404 for unknown labels; the plain-HTTP listener
# only ever sends clients to HTTPS (308); the bare domain serves /_health and /cacert, the metrics
# listener /metrics.
# Also Redis going away and coming back, a consumer whose first request was abandoned while Redis
# was slow, and a browser's parallel first requests. Real registrar, relay and redis-server; a pod
# is a bash /dev/tcp connection held open to its port P.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl oathtool jq socat ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay tools/pipe2me-admin
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay
NAME=r1
CONSUMER_TTL=60
P2M_WAIT_SECONDS=25 # how long p2m_wait_until waits

# ---------------------------------------------------------------- helpers

health_body_is() { [[ $(curl -4 -s --max-time 5 --cacert "$P2M_CA" "$BASE/_health") == "$1" ]]; }

# redirect DESC URL [CURL_ARGS...]: a consumer request that must be a 307 to the same URL on a
# relay port; sets Q to that port.
REDIRECTS=0
redirect() {
    local desc=$1 url=$2 rest
    shift 2
    hreq "$@" "$url"
    expect_http 307 "$desc"
    rest=${url#https://*.pipe2me.localhost:"$P2M_HTTPS_PORT"}
    local label=${url#https://}
    label=${label%%.*}
    label=${label,,}
    expect_match "^https://$label\\.pipe2me\\.localhost:[0-9]+/" "$(hdr location)" "$desc: Location"
    Q=$(hdr location)
    Q=${Q#https://"$label".pipe2me.localhost:}
    Q=${Q%%/*}
    expect_eq "https://$label.pipe2me.localhost:$Q$rest" "$(hdr location)" "$desc: Location keeps path and query"
    ((Q >= RANGE_LO && Q <= RANGE_HI)) || fail "$desc: Q=$Q outside $RANGE_LO-$RANGE_HI"
    p2m_listening "$Q" || fail "$desc: the relay does not listen on $Q when the 307 arrives"
    p2m_ok
    REDIRECTS=$((REDIRECTS + 1))
}

# expect_lease PORT KIND LABEL ADDR MAXTTL
expect_lease() {
    expect_eq "$2|$3|$3|$4|$NAME|bound" "$(rcli HMGET "p2m:lease:$1" kind label pod addr relay state | paste -sd'|')" \
        "lease $1 fields"
    local ttl
    ttl=$(rcli TTL "p2m:lease:$1")
    ((ttl > 0 && ttl <= $5)) || fail "lease $1 TTL $ttl, want 1-$5"
    p2m_ok
}

# ---------------------------------------------------------------- setup

p2m_start_redis
p2m_free_port_range RANGE_LO RANGE_HI 24
ALIVE_WINDOW=10
p2m_write_config "{\"relay\": {\"name\": \"$NAME\", \"ports\": \"$RANGE_LO-$RANGE_HI\"},
    \"registrar\": {\"consumer_ttl\": $CONSUMER_TTL, \"preconnect_timeout\": 10, \"alive_window\": $ALIVE_WINDOW,
    \"consumer_ports\": \"per-address\"}}"
BASE=https://pipe2me.localhost:$P2M_HTTPS_PORT
HTTP=http://pipe2me.localhost:$P2M_HTTP_PORT
P2M_HREQ_LOCATIONS=$T/https-locations # every Location an HTTPS response carries
: >"$P2M_HREQ_LOCATIONS"

expect_status 0 admin pod add web --label web
WEB_SECRET=$(jq -er .secret "$OUT")
expect_status 0 admin pod add lonely --label lonely

p2m_start_relay
p2m_start_registrar
p2m_wait_until "the registrar answers /_health with 200" p2m_health_is 200

# ---------------------------------------------------------------- no idle pre-connection, unknown label

hreq "https://lonely.pipe2me.localhost:$P2M_HTTPS_PORT/x"
expect_http 503 "a label whose pod never registered"
expect_eq 10 "$(hdr retry-after)" "503 Retry-After"
expect_eq "the pod is offline; try again later" "$(body)" "503 body"
expect_match '^text/plain' "$(hdr content-type)" "503 content type"
has_hdr location && fail "the 503 carries a Location"$'\n'"$(resp_dump)"
hreq "https://nosuch.pipe2me.localhost:$P2M_HTTPS_PORT/x"
expect_http 404 "a label nobody owns"
has_hdr location && fail "the 404 carries a Location"$'\n'"$(resp_dump)"
p2m_ok
expect_eq 0 "$(rcli --scan --pattern 'p2m:lease:*' | wc -l)" "refused consumers leased nothing"

# ---------------------------------------------------------------- a pod pre-connects

hreq --interface 127.0.0.1 -X PUT -H "Authorization: TOTP username=\"web\", response=\"$(oathtool --totp -b "$WEB_SECRET")\"" \
    "$BASE/register/web"
expect_http 200 "registration of web"
P=$(body)
P=${P##*:}
p2m_bg pod_web bash -c "exec 3<>/dev/tcp/127.0.0.1/$P && exec cat <&3"
POD_WEB=$P2M_BG_PID
p2m_wait_until "web's pre-connection is idle" p2m_redis_is 1 HGET "p2m:idle:$NAME" web

# ---------------------------------------------------------------- 307 to a consumer port (2, 3.4)

redirect "GET with path and query" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/x/y?z=1"
Q1=$Q
[[ $Q1 != "$P" ]] || fail "the consumer port is the pre-connection port $P"
p2m_ok
expect_lease "$Q1" consumer web 127.0.0.1 "$CONSUMER_TTL"
expect_eq "$Q1" "$(rcli GET "p2m:consumer:web:127.0.0.1")" "consumer map for web and 127.0.0.1"
ttl=$(rcli TTL "p2m:consumer:web:127.0.0.1")
((ttl > 0 && ttl <= CONSUMER_TTL)) || fail "consumer map TTL $ttl, want 1-$CONSUMER_TTL"
p2m_ok

# Any method, the same port for the same address.
redirect "POST with a body" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/form?a=b" -X POST --data-binary 'k=v'
expect_eq "$Q1" "$Q" "POST reuses the consumer port"
redirect "DELETE" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/item/7" -X DELETE
expect_eq "$Q1" "$Q" "DELETE reuses the consumer port"
redirect "PUT" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/item/7" -X PUT --data-binary 'x'
expect_eq "$Q1" "$Q" "PUT reuses the consumer port"
redirect "PATCH over HTTP/1.1" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/p" -X PATCH --http1.1
expect_eq "$Q1" "$Q" "PATCH reuses the consumer port"
redirect "a second GET" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/"
expect_eq "$Q1" "$Q" "a second GET reuses the consumer port"
# Path and query pass through as received, escapes and dot segments included.
redirect "escaped path" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/a%20b/%2e%2e/c?x=%2F&y=" --path-as-is
redirect "dot segments" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/a/../b/./c" --path-as-is
expect_eq "$Q1" "$Q" "still the same consumer port"

# A reuse refreshes both TTLs to consumer_ttl (3.4). Shorten them, then redirect again.
rcli EXPIRE "p2m:lease:$Q1" 20 >/dev/null
rcli EXPIRE "p2m:consumer:web:127.0.0.1" 20 >/dev/null
redirect "GET after the TTLs ran down" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/again"
expect_eq "$Q1" "$Q" "the reused port"
for k in "p2m:lease:$Q1" p2m:consumer:web:127.0.0.1; do
    ttl=$(rcli TTL "$k")
    ((ttl > 20 && ttl <= CONSUMER_TTL)) || fail "$k TTL $ttl after a reuse, want 21-$CONSUMER_TTL"
    p2m_ok
done

# Another consumer address gets its own port.
redirect "GET from 127.0.0.2" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/x/y?z=1" --interface 127.0.0.2
Q2=$Q
[[ $Q2 != "$Q1" && $Q2 != "$P" ]] || fail "127.0.0.2 got port $Q2 (127.0.0.1 has $Q1, the pod $P)"
p2m_ok
expect_lease "$Q2" consumer web 127.0.0.2 "$CONSUMER_TTL"
expect_eq "$Q2" "$(rcli GET "p2m:consumer:web:127.0.0.2")" "consumer map for web and 127.0.0.2"
redirect "a second GET from 127.0.0.2" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/z" --interface 127.0.0.2
expect_eq "$Q2" "$Q" "127.0.0.2 reuses its port"
# The consumer port admits its consumer only (3.4): the relay refuses 127.0.0.2 on Q1.
got=$(timeout 5 socat -u "TCP:127.0.0.1:$Q1,bind=127.0.0.2" STDOUT 2>&1 </dev/null || true)
expect_eq "" "$got" "a connection from another address to Q1 reads nothing"
p2m_wait_until "the relay logs the refused consumer" p2m_log_has relay "event=conn_refused lease=$Q1 kind=consumer label=web .*peer=127.0.0.2"
expect_eq 1 "$(rcli HGET "p2m:idle:$NAME" web)" "the pre-connection is still idle"

# ---------------------------------------------------------------- plain HTTP (2.1)

# web has only an https service: plain HTTP for the label is sent to it (an upgrade), on the
# consumer port 127.0.0.1 already holds; the bare domain is sent to the registrar's HTTPS.
hreq "http://web.pipe2me.localhost:$P2M_HTTP_PORT/p?q"
expect_http 307 "plain HTTP GET for a label with an https service"
expect_eq "https://web.pipe2me.localhost:$Q1/p?q" "$(hdr location)" "307 Location: the https service, same consumer port"
hreq -X POST --data-binary 'x=1' "http://web.pipe2me.localhost:$P2M_HTTP_PORT/form"
expect_http 307 "plain HTTP POST"
expect_eq "https://web.pipe2me.localhost:$Q1/form" "$(hdr location)" "307 Location for a POST"
hreq "$HTTP/_health"
expect_http 308 "plain HTTP on the bare domain"
expect_eq "https://pipe2me.localhost:$P2M_HTTPS_PORT/_health" "$(hdr location)" "308 Location for the bare domain"
hreq "http://nosuch.pipe2me.localhost:$P2M_HTTP_PORT/a?b"
expect_http 404 "plain HTTP for an unknown label"
expect_eq 1 "$(rcli EXISTS "p2m:consumer:web:127.0.0.1")" "plain HTTP leased nothing new"
REDIRECTS=$((REDIRECTS + 2)) # the two plain-HTTP 307s
expect_eq 0 "$(rcli EXISTS "p2m:consumer:web:http:127.0.0.1")" "no http service, no http consumer port"
hreq -H 'Host: evil.example' "$HTTP/p"
expect_http 404 "plain HTTP for a foreign Host"
has_hdr location && fail "plain HTTP redirects a foreign Host"$'\n'"$(resp_dump)"
p2m_ok
# HTTPS never redirects to HTTP: every Location HTTPS has sent so far is https://.
expect_no_match '(^|'$'\n'')http:' "$(cat "$T/https-locations")" "an HTTPS response redirected to http:"

# ---------------------------------------------------------------- the bare domain (2)

hreq "$BASE/_health"
expect_http 200 "/_health"
expect_eq ok "$(body)" "/_health body"
hreq "$BASE/cacert"
expect_http 200 "/cacert"
cmp -s "$T/resp.b" "$P2M_CA" || fail "/cacert differs from state/ca.pem"
p2m_ok
cp "$T/resp.b" "$T/fetched-ca.pem"
expect_status 0 curl -4 -sS --max-time 10 --cacert "$T/fetched-ca.pem" -o /dev/null "$BASE/_health"
expect_match '^-----BEGIN CERTIFICATE-----' "$(head -n 1 "$T/fetched-ca.pem")" "/cacert is PEM"
hreq "$BASE/nope"
expect_http 404 "an unknown path on the bare domain"

# /metrics is served on the metrics listener alone; without registrar.metrics_token the HTTPS
# listener does not have it.
hreq "$BASE/metrics"
expect_http 404 "/metrics on the HTTPS listener without a token"
hreq "$P2M_METRICS_URL"
expect_http 200 "/metrics"
expect_match '^text/plain; version=0\.0\.4' "$(hdr content-type)" "/metrics content type"
METRICS=$(body)
metric() { sed -n "s/^$1 //p" <<<"$METRICS"; }
expect_eq "$REDIRECTS" "$(metric pipe2me_redirects_total)" "pipe2me_redirects_total (307s sent)"
expect_eq 2 "$(metric 'pipe2me_leases{kind="consumer"}')" 'pipe2me_leases{kind="consumer"}'
expect_eq 1 "$(metric 'pipe2me_leases{kind="pre"}')" 'pipe2me_leases{kind="pre"}'
expect_eq 1 "$(metric "pipe2me_idle_preconnections{relay=\"$NAME\",label=\"web\"}")" "pipe2me_idle_preconnections for web"
expect_eq 1 "$(metric pipe2me_relays)" pipe2me_relays
expect_eq 1 "$(metric 'pipe2me_failures_total{reason="503"}')" 'pipe2me_failures_total{reason="503"}'
expect_eq 2 "$(metric 'pipe2me_failures_total{reason="404"}')" 'pipe2me_failures_total{reason="404"}: an unknown label over HTTPS and over HTTP'
# Prometheus text format: every sample is NAME[{LABELS}] VALUE of a family with HELP and TYPE.
while IFS= read -r line; do
    case $line in
    "# HELP "* | "# TYPE "*) continue ;;
    esac
    expect_match '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? -?[0-9]+(\.[0-9]+)?$' \
        "$line" "/metrics sample line"
    fam=${line%%[{ ]*}
    grep -qx "# TYPE $fam \(counter\|gauge\)" <<<"$METRICS" || fail "/metrics: no TYPE line for $fam"
    grep -q "^# HELP $fam " <<<"$METRICS" || fail "/metrics: no HELP line for $fam"
done <<<"$METRICS"

# ---------------------------------------------------------------- the pod leaves, the relay stops

p2m_kill "$POD_WEB"
p2m_wait_until "web has no idle pre-connection" p2m_redis_is "" HGET "p2m:idle:$NAME" web
# Within registrar.alive_window of the pod's last sign of life a consumer is still sent to the
# relay, to wait there for the pod's next pre-connection (PROTOCOL 2.1); the mark says where.
expect_eq "$NAME" "$(rcli GET p2m:alive:web)" "the pod is marked alive on the relay"
ttl=$(rcli TTL p2m:alive:web)
((ttl > 0 && ttl <= ALIVE_WINDOW)) || fail "p2m:alive:web TTL $ttl, want 1-$ALIVE_WINDOW"
p2m_ok
hreq "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/x"
expect_http 307 "web just after its pre-connection closed: the consumer will wait"
grep -q "event=redirect status=307 label=web .*queued=yes" "$T/registrar.log" || fail "the 307 is not logged queued=yes"
p2m_ok
# Then the pod is gone: 503, no Location.
p2m_wait_until "the alive mark lapses" p2m_redis_is 0 EXISTS p2m:alive:web
hreq "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/x"
expect_http 503 "web once its pod has been gone for the alive window"
expect_eq 10 "$(hdr retry-after)" "503 Retry-After"
has_hdr location && fail "the 503 carries a Location"$'\n'"$(resp_dump)"
p2m_ok

p2m_kill "$RELAY_PID"
p2m_wait_until "/_health turns 503 without a relay heartbeat" p2m_health_is 503
hreq "$BASE/_health"
expect_http 503 "/_health without a relay"
expect_match 'no relay' "$(body)" "/_health body without a relay"
hreq "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/x"
expect_http 503 "a consumer with no relay running"
has_hdr location && fail "the 503 carries a Location"$'\n'"$(resp_dump)"
p2m_ok

# ---------------------------------------------------------------- Redis goes away and comes back

# /_health needs Redis too; requests that need it get 503 at once while it is down. After Redis is
# back the registrar reconnects by itself, and with a relay again everything works.
p2m_stop_redis
p2m_wait_until "/_health says Redis is unavailable" health_body_is "redis unavailable"
p2m_health_is 503 || fail "/_health is not 503 without Redis"
p2m_ok
hreq "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/x"
expect_http 503 "a consumer while Redis is down"
expect_match '^[0-9]+$' "$(hdr retry-after)" "503 Retry-After while Redis is down"
hreq -X PUT -H "Authorization: TOTP username=\"web\", response=\"123456\"" "$BASE/register/web"
expect_http 503 "a registration while Redis is down"
expect_match '^[0-9]+$' "$(hdr retry-after)" "503 Retry-After while Redis is down"
hreq "$P2M_METRICS_URL"
expect_http 503 "/metrics while Redis is down"
p2m_start_redis
p2m_wait_until "the registrar is back on Redis (no relay yet)" health_body_is "no relay is running"
p2m_bg relay2 "$RELAY_BIN" -c "$P2M_CONFIG"
p2m_wait_until "/_health is 200 again" p2m_health_is 200
# The step after the one spent above: fresh, and inside the window.
hreq -X PUT -H "Authorization: TOTP username=\"web\", response=\"$(oathtool --totp -b "$WEB_SECRET" --now "@$(($(date +%s) + 30))")\"" \
    "$BASE/register/web"
expect_http 200 "registration after Redis came back"
P=$(body)
P=${P##*:}
p2m_bg pod_web2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$P && exec cat <&3"
p2m_wait_until "web is idle again" p2m_redis_is 1 HGET "p2m:idle:$NAME" web
redirect "GET after Redis came back" "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/back?again=1"

expect_no_match '(^|'$'\n'')http:' "$(cat "$T/https-locations")" "an HTTPS response redirected to http:"
p2m_alive "$REGISTRAR_PID" || fail "the registrar died"
p2m_ok
expect_log_clean registrar 'ERROR: AddressSanitizer|runtime error:'

# ---------------------------------------------------------------- a consumer that gave up

# Redis is slow (CLIENT PAUSE) and the consumer's first request times out; its route is decided
# when Redis resumes, after the client has gone. The consumer's next request must still get a 307
# at once: a lease made for a departed client is announced to the relay or given back, never left
# pending for the next request to wait on.
rcli CLIENT PAUSE 1500 ALL >/dev/null
rc=0
curl -4 -sS --max-time 0.5 --cacert "$P2M_CA" --interface 127.0.0.30 -o /dev/null \
    "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/first" 2>/dev/null || rc=$?
expect_eq 28 "$rc" "the first request times out while Redis is paused"
expect_eq PONG "$(rcli PING)" "Redis answers again after the pause"
q=$(rcli GET p2m:consumer:web:127.0.0.30)
state="consumer map -> '$q', lease: $([[ -z $q ]] || rcli HGETALL "p2m:lease:$q" | paste -sd' ')"
hreq --interface 127.0.0.30 "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/second"
expect_http 307 "the next request of a consumer whose first request was abandoned (before it: $state)"

# ---------------------------------------------------------------- a browser's first requests, in parallel

# A page load opens several connections at once from one address: every request gets a 307 to
# the one consumer port leased for that address, whether it created the lease or found it still
# waiting for the relay. A few rounds, each from a fresh address.
for round in 1 2 3 4 5 6 7 8; do
    src=127.0.0.$((20 + round))
    pids=()
    for i in $(seq 1 16); do
        curl -4 -sS --max-time 10 --cacert "$P2M_CA" --interface "$src" -o /dev/null -w '%{http_code} %{redirect_url}\n' \
            "https://web.pipe2me.localhost:$P2M_HTTPS_PORT/r$i" >"$T/burst.$round.$i" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    tally=$(cat "$T"/burst."$round".* | sed 's|/r[0-9]*$||' | sort | uniq -c)
    [[ $(wc -l <<<"$tally") == 1 && $tally =~ ^\ *16\ 307\ https://web\.pipe2me\.localhost:[0-9]+$ ]] ||
        fail "16 parallel requests from $src: want 16 times 307 to one port, got:"$'\n'"$tally"$'\n'"$(grep -E 'status=503|relay_timeout' "$T/registrar.log" | tail -n 4)"
    p2m_ok
done
