#!/usr/bin/env bash
# The SNI port (relay.sni_listen; PROTOCOL 2.4): https://LABEL.DOMAIN:SNIPORT/ reaches the pod with
# no redirect, the relay reading the ClientHello's server name without terminating TLS; DOMAIN, no
# server name and unknown labels go to the registrar's PROXY listener (registrar.proxy_listen)
# with the consumer's own address; hostile first flights (a client that sends nothing, a truncated
# ClientHello, one over 16 KiB, bytes that are not TLS) are closed without a hang and without
# costing the pod a pre-connection; a consumer that reaches a relay which is not its service's
# home is sent there by the registrar's 307. Real redis-server, registrar, two relays and a pod with
# --tls-terminate in front of `pipe2me-pod test`'s HTTP echo; consumers are curl, openssl s_client
# and python3.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss openssl python3 oathtool
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
P2M_POOL=2
DOMAIN=pipe2me.localhost

p2m_free_port SNI
p2m_free_port PROXY
p2m_free_port_range LO HI 64
p2m_start_system "{\"relay\": {\"ports\": \"$LO-$HI\", \"sni_listen\": \"127.0.0.1:$SNI\", \"first_byte_timeout\": 2},
    \"registrar\": {\"proxy_listen\": \"127.0.0.1:$PROXY\", \"proxy_from\": [\"127.0.0.1\"]}}"
p2m_wait_until "the relay listens on the SNI port" p2m_listening "$SNI"
p2m_wait_until "the registrar listens on its PROXY port" p2m_listening "$PROXY"
admin pod add demo --label demo -o "$T/demo.json" >/dev/null
p2m_free_port ECHO_HTTP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"
p2m_start_pod demo demo "127.0.0.1:$ECHO_HTTP" --tls-terminate
p2m_wait_until "the relay holds the pool" p2m_idle_is "$P2M_POOL" demo

# ---------------------------------------------------------------- a consumer, no redirect

hreq --interface 127.0.0.3 "https://demo.$DOMAIN:$SNI/hello"
expect_http 200 "https://demo.$DOMAIN:SNIPORT/hello"
has_hdr location && fail "the SNI port answered with a redirect"$'\n'"$(resp_dump)"
expect_match "^GET /hello HTTP/1.1" "$(head -n 1 "$T/resp.b")" "the pod's echo, through the SNI port"
got=$(curl -4 -sS --max-time 10 --cacert "$P2M_CA" -o /dev/null -w '%{http_code} %{num_redirects}' -L "https://demo.$DOMAIN:$SNI/again")
expect_eq "200 0" "$got" "curl -L: 200 and no redirect"
p2m_wait_until "the relay logged the SNI consumers' tunnels" p2m_log_has relay "event=tunnel_join lease=$SNI label=demo .*sni=1"
p2m_wait_until "the pool is full again" p2m_idle_is "$P2M_POOL" demo

# ---------------------------------------------------------------- the registrar's names

hreq --interface 127.0.0.4 "https://$DOMAIN:$SNI/cacert"
expect_http 200 "/cacert through the SNI port"
cmp -s "$T/resp.b" "$P2M_CA" || fail "/cacert through the SNI port differs from state/ca.pem"
p2m_ok
p2m_wait_until "the registrar logged the consumer's own address" p2m_log_has registrar "127.0.0.4"
p2m_log_has relay "event=sni_route .*to=registrar reason=registrar_name" || fail "no sni_route to the registrar logged"
p2m_ok

# A TOTP registration through the SNI port: the registrar sees the pod's own address (127.0.0.5),
# so the lease it makes names that address, not the relay's.
p2m_add_pod other other
p2m_totp_fresh other
hreq --interface 127.0.0.5 -X PUT -H "Authorization: $(p2m_totp_auth other "$CODE_")" "https://$DOMAIN:$SNI/register/other"
expect_http 200 "a TOTP registration through the SNI port"
P=$(body | sed 's/.*://')
expect_eq "127.0.0.5" "$(rcli HGET "p2m:lease:$P" addr)" "the lease names the pod's address, from the PROXY line"

# An unknown label: the registrar's 404. No server name at all: the registrar.
hreq "https://nosuch.$DOMAIN:$SNI/"
expect_http 404 "an unknown label through the SNI port"
printf 'GET /_health HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$DOMAIN" |
    timeout 10 openssl s_client -quiet -noservername -connect "127.0.0.1:$SNI" -CAfile "$P2M_CA" >"$T/nosni.out" 2>"$T/nosni.err" || true
expect_match '^HTTP/1.1 200' "$(head -n 1 "$T/nosni.out")" "no server name: the registrar answers /_health"
p2m_log_has relay "reason=no_server_name" || fail "no sni_route for the nameless ClientHello"
p2m_ok

# ---------------------------------------------------------------- hostile first flights

# Each is closed (end of stream or reset) without a hang; none takes a pre-connection.
python3 - "$SNI" >"$T/hostile.out" 2>&1 <<'EOF' || fail "hostile first flights: $(cat "$T/hostile.out")"
import socket, ssl, sys, time
port = int(sys.argv[1])

def hello(name):
    """A real ClientHello, taken from an ssl object that never gets an answer."""
    ctx = ssl.create_default_context()
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outb.read()

def closed(what, payload, keep_open=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    t0 = time.monotonic()
    if payload:
        s.sendall(payload)
    try:
        data = s.recv(65536)
        end = "eof" if data == b"" else "data %d bytes" % len(data)
    except ConnectionResetError:
        end = "reset"
    except socket.timeout:
        print(what, "HUNG for 30 s")
        sys.exit(1)
    if end.startswith("data"):
        print(what, "got", end)
        sys.exit(1)
    print(what, end, "after %.1f s" % (time.monotonic() - t0))
    s.close()

h = hello("demo.pipe2me.localhost")
closed("nothing sent", b"")
closed("a truncated ClientHello", h[: len(h) // 2])
closed("not TLS", b"GET / HTTP/1.1\r\nHost: demo.pipe2me.localhost\r\n\r\n")
# One record header announcing 16384 bytes of handshake, then 17 KiB: over the 16 KiB it reads.
closed("over 16 KiB", b"\x16\x03\x01\x40\x00\x01\x00\x40\x00" + b"\x00" * 17000)
EOF
sed 's/^/e2e: /' "$T/hostile.out"
p2m_ok
expect_eq "$P2M_POOL" "$(rcli HGET p2m:idle:r1 demo)" "no pre-connection lost to the hostile flights"
p2m_log_has relay "reason=first_byte_timeout" || fail "the silent consumers were not closed by the first-byte timeout"
p2m_log_has relay "event=conn_refused sni=$SNI .*reason=not_tls" || fail "no refusal logged for the bytes that are not TLS"
p2m_ok
# And a consumer still gets through.
hreq "https://demo.$DOMAIN:$SNI/after"
expect_http 200 "a consumer after the hostile flights"

# ---------------------------------------------------------------- a second relay

# r2 has its own ports and SNI port and none of demo's pre-connections: its consumers of demo go to
# the registrar, whose 307 names demo's consumer port on r1.
p2m_free_port SNI2
p2m_free_port_range LO2 HI2 16
jq --arg ports "$LO2-$HI2" --arg sni "127.0.0.1:$SNI2" '.relay.name = "r2" | .relay.ports = $ports | .relay.sni_listen = $sni' \
    "$P2M_CONFIG" >"$T/r2.json"
p2m_start_relay "$T/r2.json" relay2
p2m_wait_until "r2 listens on its SNI port" p2m_listening "$SNI2"
got=$(curl -4 -sS --max-time 10 --cacert "$P2M_CA" -o "$T/r2.body" -w '%{http_code} %{num_redirects} %{url_effective}' -L \
    "https://demo.$DOMAIN:$SNI2/far")
[[ $got =~ ^200\ 1\ https://demo\.$DOMAIN:([0-9]+)/far$ ]] || fail "through r2: want 200 after one redirect, got $(p2m_show "$got")"
Q=${BASH_REMATCH[1]}
((Q >= LO && Q <= HI)) || fail "the 307 sent the consumer to $Q, not to demo's consumer port on r1 ($LO-$HI)"
p2m_ok
expect_match "^GET /far HTTP/1.1" "$(head -n 1 "$T/r2.body")" "the pod's echo, through r1"
p2m_log_has relay2 "event=sni_route .*to=registrar reason=elsewhere" || fail "r2 did not pass the consumer on as elsewhere"
p2m_ok
