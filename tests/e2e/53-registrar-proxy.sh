#!/usr/bin/env bash
# pipe2me-registrar's PROXY listener (registrar.proxy_listen), where the relay's SNI port passes the
# registrar's own names: one PROXY protocol v1 line naming the consumer, then TLS. Driven by a
# python3 client (socket + ssl, the registrar's CA) that writes the line itself, with the TLS
# ClientHello in the same segment or after it:
# - /cacert, a 404 for an unknown label, a TOTP registration, a consumer redirect and a failed
#   authentication are served as on the HTTPS listener, with the consumer's address from the PROXY
#   line in the lease, the rate-limit keys and the log lines (via=sni), IPv4 and IPv6;
# - 421 Misdirected Request when Host is not the connection's TLS server name, over HTTP/1.1 and
#   over HTTP/2 (a second stream on a connection to DOMAIN), counted as fail:421; any Host on a
#   connection without a server name;
# - a peer outside registrar.proxy_from is closed before anything is read, logged once per address
#   and interval and then counted; garbage, a PROXY line whose address is not an IP, a ClientHello
#   without a PROXY line and a connection that never completes its line are closed (the last after
#   10 s) and logged, and the registrar serves on.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq oathtool python3 ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay tools/pipe2me-admin
REGISTRAR_BIN=$P2M_BUILD_DIR/registrar/pipe2me-registrar
DOMAIN=pipe2me.localhost
CONSUMER=198.51.100.7 # the address the PROXY lines name

# ---------------------------------------------------------------- the client

# p2mproxy.py: one connection to the PROXY listener. Prints one JSON object: {"closed": true,
# "error": ..., "seconds": ...} when the registrar closed the connection before answering, else the
# responses in order, each {"status", "headers" (lower-case names), "body", "version"}.
cat >"$T/p2mproxy.py" <<'EOF'
import argparse, json, socket, ssl, sys, time

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--src", default="127.0.0.1")
p.add_argument("--ca", required=True)
p.add_argument("--proxy", default="PROXY TCP4 198.51.100.7 127.0.0.1 40000 443", help="the line, without CRLF; '' sends none")
p.add_argument("--sni", default="", help="the TLS server name; '' sends none")
p.add_argument("--separate", action="store_true", help="the PROXY line and the ClientHello in two writes")
p.add_argument("--raw", help="send these bytes (\\r\\n escapes allowed) instead of the line and TLS, then wait for the close")
p.add_argument("--h2", action="store_true", help="HTTP/2 over ALPN h2, one stream per request")
p.add_argument("--req", action="append", default=[], help="METHOD HOST PATH [HEADER: VALUE]... separated by '|'")
p.add_argument("--body", default="")
p.add_argument("--timeout", type=float, default=20)
a = p.parse_args()
t0 = time.monotonic()


def closed(err):
    print(json.dumps({"closed": True, "error": err, "seconds": round(time.monotonic() - t0, 2)}))
    sys.exit(0)


s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((a.src, 0))
s.settimeout(a.timeout)
s.connect(("127.0.0.1", a.port))
line = (a.proxy + "\r\n").encode() if a.proxy else b""

if a.raw is not None:
    try:
        s.sendall(a.raw.encode().decode("unicode_escape").encode("latin-1"))
        got = s.recv(65536)
        closed("eof" if not got else "data:%d" % len(got))
    except (ConnectionResetError, BrokenPipeError) as e:
        closed(type(e).__name__)
    except socket.timeout:
        print(json.dumps({"closed": False, "error": "timeout"}))
        sys.exit(0)

ctx = ssl.create_default_context(cafile=a.ca)
if not a.sni:
    ctx.check_hostname = False  # no server name to check; the chain is still verified
ctx.set_alpn_protocols(["h2"] if a.h2 else ["http/1.1"])
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_side=False, server_hostname=a.sni or None)


def flush(prefix=b""):
    data = prefix + out.read()
    try:
        if data:
            s.sendall(data)
    except (ConnectionResetError, BrokenPipeError) as e:
        closed(type(e).__name__)


def fill():
    try:
        chunk = s.recv(65536)
    except (ConnectionResetError, BrokenPipeError) as e:
        return closed(type(e).__name__)
    if not chunk:
        inc.write_eof()
        return False
    inc.write(chunk)
    return True


if a.separate and line:
    flush(line)
    line = b""
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        flush(line)
        line = b""
        if not fill():
            closed("eof during the handshake")
    except (ssl.SSLError, ssl.SSLEOFError) as e:
        closed("tls: %s" % e)
flush()


def send(data):
    tls.write(data)
    flush()


def recv_some():
    while True:
        try:
            return tls.read(65536)
        except ssl.SSLWantReadError:
            if not fill():
                return b""
        except ssl.SSLZeroReturnError:
            return b""


def request_parts(spec):
    parts = spec.split("|")
    return parts[0], parts[1], parts[2], [h.split(": ", 1) for h in parts[3:]]


responses = []
if not a.h2:
    for i, spec in enumerate(a.req):
        method, host, path, headers = request_parts(spec)
        last = i == len(a.req) - 1
        body = a.body.encode()
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (method, path, host, len(body))
        head += "".join("%s: %s\r\n" % (k, v) for k, v in headers)
        head += "Connection: close\r\n" if last else ""
        send(head.encode() + b"\r\n" + body)
        buf = b""
        while b"\r\n\r\n" not in buf:
            more = recv_some()
            if not more:
                closed("eof before response %d" % (i + 1))
            buf += more
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(rest) < n:
            more = recv_some()
            if not more:
                break
            rest += more
        responses.append({"version": lines[0].split(" ")[0], "status": int(lines[0].split(" ")[1]),
                          "headers": hdrs, "body": rest[:n].decode("latin-1")})
    print(json.dumps(responses))
    sys.exit(0)

# HTTP/2 by hand: the preface, an empty SETTINGS, then one HEADERS frame per request on streams 1,
# 3, ... (literal fields with new names, no Huffman); responses are read until each stream ends.
if tls.selected_alpn_protocol() != "h2":
    closed("no h2 from ALPN: %r" % tls.selected_alpn_protocol())


def frame(ftype, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def lit(name, value):
    n, v = name.encode(), value.encode()
    return bytes([0, len(n)]) + n + bytes([len(v)]) + v


# The HPACK Huffman codes of the digits (RFC 7541 B): enough for a :status value.
HUFF = {"00000": "0", "00001": "1", "00010": "2", "011001": "3", "011010": "4", "011011": "5", "011100": "6",
        "011101": "7", "011110": "8", "011111": "9"}
STATIC = {8: "200", 9: "204", 10: "206", 11: "304", 12: "400", 13: "404", 14: "500"}


def status_of(block):
    b = block[0]
    if b & 0x80:
        return int(STATIC[b & 0x7f])
    idx = b & 0x3f if b & 0x40 else b & 0x0f
    if idx < 8 or idx > 14:
        raise ValueError("first field is not :status: %r" % block[:8])
    huff, n = block[1] & 0x80, block[1] & 0x7f
    raw = block[2:2 + n]
    if not huff:
        return int(raw.decode())
    bits, code, out = "".join(format(x, "08b") for x in raw), "", ""
    for bit in bits:
        code += bit
        if code in HUFF:
            out, code = out + HUFF[code], ""
    return int(out)


payload = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
for i, spec in enumerate(a.req):
    method, host, path, headers = request_parts(spec)
    block = lit(":method", method) + lit(":scheme", "https") + lit(":authority", host) + lit(":path", path)
    payload += frame(1, 0x5, 2 * i + 1, block)  # END_STREAM | END_HEADERS
send(payload)
buf, status, bodies, ended = b"", {}, {}, set()
while len(ended) < len(a.req):
    while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
        more = recv_some()
        if not more:
            closed("eof in HTTP/2 after %d of %d streams" % (len(ended), len(a.req)))
        buf += more
    n = int.from_bytes(buf[:3], "big")
    ftype, flags, stream, body = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n]
    buf = buf[9 + n:]
    if ftype == 4 and not flags & 1:
        send(frame(4, 1, 0, b""))  # SETTINGS ACK
    elif ftype == 1:
        status[stream] = status_of(body[5:] if flags & 0x20 else body)  # skip PRIORITY fields when present
        bodies.setdefault(stream, b"")
    elif ftype == 0:
        bodies[stream] = bodies.get(stream, b"") + body
    elif ftype == 7:
        closed("GOAWAY %r" % body)
    if ftype in (0, 1) and flags & 1:
        ended.add(stream)
for i in range(len(a.req)):
    responses.append({"version": "HTTP/2", "status": status[2 * i + 1], "headers": {},
                      "body": bodies[2 * i + 1].decode("latin-1")})
print(json.dumps(responses))
EOF

# px ARGS...: p2mproxy.py against the PROXY listener, its JSON in $T/px.json (and R0, R1...: the
# responses' "status body" for quick checks). A client failure fails the test.
px() {
    python3 "$T/p2mproxy.py" --port "$PROXY_PORT" --ca "$P2M_CA" "$@" >"$T/px.json" 2>"$T/px.err" ||
        fail "p2mproxy.py $(p2m_cmdline "$@") failed:"$'\n'"$(cat "$T/px.err")"
}
# pj FILTER: jq on the last client output.
pj() { jq -er "$@" "$T/px.json" || fail "jq $(p2m_cmdline "$@") on:"$'\n'"$(cat "$T/px.json")"; }
# expect_px STATUS BODY DESC [N]: response N (default 0) of the last client run.
expect_px() {
    local n=${4:-0}
    jq -e 'type == "array"' "$T/px.json" >/dev/null || fail "$3: no response:"$'\n'"$(cat "$T/px.json")"
    expect_eq "$1" "$(pj ".[$n].status")" "$3: status"
    expect_eq "$2" "$(pj ".[$n].body" | sed -n 1p)" "$3: body (first line)"
}
# expect_closed DESC: the registrar closed the connection without answering, before the 10-s
# PROXY line timeout could have (at once when the machine is idle; the margin is for a loaded one).
expect_closed() {
    expect_eq true "$(pj .closed)" "$1: closed by the registrar"$'\n'"$(cat "$T/px.json")"
    (($(pj '.seconds | floor') < 9)) || fail "$1: closed only after $(pj .seconds) s"
    p2m_ok
}
# refusals_of PEER REASON: refusals of (PEER, REASON) the log accounts for: the lines in full plus
# the counts of the repeat lines.
refusals_of() {
    local full counted
    full=$(p2m_log_count registrar "event=proxy_refused peer=$1 reason=$2\$")
    counted=$(sed -n "s/.*event=proxy_refused_repeat peer=$1 reason=$2 count=\([0-9]*\) .*/\1/p" "$T/registrar.log" |
        awk '{ s += $1 } END { print s + 0 }')
    echo "$full $counted"
}
refusals_are() { [[ $(refusals_of "$1" "$2") == "$3" ]]; }


# ---------------------------------------------------------------- setup

p2m_free_port PROXY_PORT
p2m_start_system "{\"registrar\": {\"proxy_listen\": \"127.0.0.1:$PROXY_PORT\", \"proxy_from\": [\"127.0.0.1\"]}}"
p2m_wait_until "the PROXY listener listens" p2m_listening "$PROXY_PORT"
BASE=https://$DOMAIN:$P2M_HTTPS_PORT

expect_status 0 "$REGISTRAR_BIN" -c "$P2M_CONFIG" --check-config
expect_match "(^|"$'\n'")proxy_listen 127\.0\.0\.1:$PROXY_PORT \(HTTPS after a PROXY protocol v1 line; from 127\.0\.0\.1 only\)" \
    "$(cat "$OUT")" "--check-config names the PROXY listener"
jq '.registrar.proxy_listen = "localhost:1"' "$P2M_CONFIG" >"$T/bad.json"
expect_status 2 "$REGISTRAR_BIN" -c "$T/bad.json" --check-config
expect_eq "pipe2me-registrar: registrar.proxy_listen: localhost is not an IP address" "$(cat "$ERR")" "a named host is refused"

# In the background, for the end: a connection that sends half a PROXY line and then nothing is
# closed after the line timeout (10 s).
p2m_bg silent python3 "$T/p2mproxy.py" --port "$PROXY_PORT" --ca "$P2M_CA" --raw "PROXY TCP4 198.51.100.7" --timeout 30
SILENT_PID=$P2M_BG_PID

for p in demo rl six; do p2m_add_pod "$p" "$p"; done

# ---------------------------------------------------------------- served as on the HTTPS listener

px --sni "$DOMAIN" --req "GET|$DOMAIN|/cacert"
expect_px 200 "-----BEGIN CERTIFICATE-----" "GET /cacert through the PROXY listener"
expect_eq "$(cat "$P2M_CA")" "$(pj '.[0].body' | sed '/^$/d')" "/cacert is the registrar's CA"
expect_eq HTTP/1.1 "$(pj '.[0].version')" "HTTP/1.1 on the PROXY listener"
p2m_wait_until "the connection is logged with the consumer's address" \
    p2m_log_has registrar "event=proxy_accepted peer=127\.0\.0\.1 addr=$CONSUMER via=sni$"

# The line and the ClientHello in two writes; Host with a port and in capitals is the same name.
px --separate --sni "$DOMAIN" --req "GET|${DOMAIN^^}:443|/_health"
expect_px 200 ok "/_health, the PROXY line written alone, Host in capitals with a port"

px --sni "nosuch.$DOMAIN" --req "GET|nosuch.$DOMAIN|/x"
expect_px 404 "no such label" "an unknown label on its own connection (not 421)"
px --req "GET|nosuch.$DOMAIN|/x"
expect_px 404 "no such label" "an unknown label on a connection without a server name (not 421)"
px --req "GET|$DOMAIN|/cacert"
expect_px 200 "-----BEGIN CERTIFICATE-----" "/cacert on a connection without a server name"

# ---------------------------------------------------------------- 421 Misdirected Request

px --sni "$DOMAIN" --req "GET|demo.$DOMAIN|/x"
expect_px 421 "misdirected request: this connection is for $DOMAIN" "Host demo.DOMAIN on a DOMAIN connection"
expect_match '^text/plain' "$(pj '.[0].headers["content-type"]')" "421 content type"
expect_eq no-store "$(pj '.[0].headers["cache-control"]')" "421 Cache-Control"
px --sni "demo.$DOMAIN" --req "GET|$DOMAIN|/cacert"
expect_px 421 "misdirected request: this connection is for demo.$DOMAIN" "Host DOMAIN on a demo.DOMAIN connection"
# Several requests on one HTTP/1.1 connection: only the misdirected one is refused.
px --sni "$DOMAIN" --req "GET|$DOMAIN|/_health" --req "GET|demo.$DOMAIN|/" --req "GET|$DOMAIN|/_health"
expect_px 200 ok "1st of 3 on one connection" 0
expect_px 421 "misdirected request: this connection is for $DOMAIN" "2nd of 3 on one connection" 1
expect_px 200 ok "3rd of 3 on one connection" 2
# HTTP/2: a browser that coalesces demo.DOMAIN onto its connection to DOMAIN.
px --h2 --sni "$DOMAIN" --req "GET|$DOMAIN|/cacert" --req "GET|demo.$DOMAIN|/"
expect_px 200 "-----BEGIN CERTIFICATE-----" "HTTP/2 stream 1, /cacert on DOMAIN" 0
expect_px 421 "misdirected request: this connection is for $DOMAIN" "HTTP/2 stream 3, demo.DOMAIN on DOMAIN's connection" 1
MISDIRECTED=4
p2m_wait_until "p2m:stats counts $MISDIRECTED fail:421" p2m_redis_is "$MISDIRECTED" HGET p2m:stats fail:421
hreq "$P2M_METRICS_URL"
expect_match "pipe2me_failures_total\{reason=\"421\"\} $MISDIRECTED" "$(body)" "/metrics shows the 421s"
expect_eq "$MISDIRECTED" "$(p2m_log_count registrar "event=misdirected status=421 addr=$CONSUMER host=[^ ]* sni=[^ ]* via=sni")" \
    "421 log lines name the consumer"

# ---------------------------------------------------------------- the consumer's address (PROXY line)

p2m_totp_fresh demo
px --sni "$DOMAIN" --req "PUT|$DOMAIN|/register/demo|Authorization: $(p2m_totp_auth demo "$CODE_")"
expect_eq 200 "$(pj '.[0].status')" "TOTP registration through the PROXY listener"$'\n'"$(cat "$T/px.json")"
PORT=$(pj '.[0].body')
PORT=${PORT##*:}
expect_match '^[0-9]+$' "$PORT" "the registration's port"
expect_match '.' "$(pj '.[0].headers["p2m-session"]')" "the registration carries P2M-Session"
expect_eq "$CONSUMER" "$(rcli HGET "p2m:lease:$PORT" addr)" "the lease admits the address the PROXY line named"
p2m_wait_until "the register line names the consumer, via=sni" \
    p2m_log_has registrar "event=register status=200 label=demo .* addr=$CONSUMER auth=totp lease=$PORT .*reason=\"ok\" via=sni$"

# A consumer redirect: the request line too.
px --sni "demo.$DOMAIN" --req "GET|demo.$DOMAIN|/page?x=1"
expect_eq 307 "$(pj '.[0].status')" "a consumer redirect through the PROXY listener"$'\n'"$(cat "$T/px.json")"
expect_match "^https://demo\.$DOMAIN:[0-9]+/page\?x=1\$" "$(pj '.[0].headers.location')" "its Location"
p2m_wait_until "the redirect line names the consumer, via=sni" \
    p2m_log_has registrar "event=redirect status=307 label=demo .* addr=$CONSUMER .*reason=\"ok\" via=sni$"

# The rate limits count the consumer's address, over IPv4 and IPv6 lines alike.
p2m_wrong_code "${P2M_SECRET[rl]}"
px --sni "$DOMAIN" --proxy "PROXY TCP4 198.51.100.9 127.0.0.1 40001 443" \
    --req "PUT|$DOMAIN|/register/rl|Authorization: $(p2m_totp_auth rl "$CODE_")"
expect_px 401 "authentication failed" "a wrong code through the PROXY listener"
expect_eq 1 "$(rcli HGET p2m:limit:pair:rl:198.51.100.9 n)" "the strike counts against the consumer's address"
p2m_wrong_code "${P2M_SECRET[six]}"
px --sni "$DOMAIN" --proxy "PROXY TCP6 2001:db8::7 ::1 40002 443" --req "PUT|$DOMAIN|/register/six|Authorization: $(p2m_totp_auth six "$CODE_")"
expect_px 401 "authentication failed" "a wrong code through the PROXY listener, TCP6"
expect_eq 1 "$(rcli HGET p2m:limit:pair:six:2001:db8::7 n)" "the strike counts against the consumer's IPv6 address"
expect_eq 0 "$(rcli EXISTS p2m:limit:pair:six:127.0.0.1 p2m:limit:pair:rl:127.0.0.1)" "no strike against the relay's address"
p2m_wait_until "the refusal's log line names the IPv6 consumer" \
    p2m_log_has registrar "event=register status=401 label=six .* addr=2001:db8::7 .*via=sni$"

# Requests on the HTTPS listener are not marked.
p2m_wrong_code "${P2M_SECRET[rl]}"
hreq -X PUT -H "Authorization: $(p2m_totp_auth rl "$CODE_")" "$BASE/register/rl"
expect_http 401 "a wrong code on the HTTPS listener"
p2m_wait_until "its log line" p2m_log_has registrar "event=register status=401 label=rl .* addr=127\.0\.0\.1 "
expect_eq 0 "$(p2m_log_count registrar 'addr=127\.0\.0\.1 .*via=sni')" "no via=sni on the HTTPS listener's lines"

# ---------------------------------------------------------------- refused connections

# Not in proxy_from: closed before anything is read, five times, one line in full.
for i in 1 2 3 4 5; do
    px --src 127.0.0.2 --sni "$DOMAIN" --req "GET|$DOMAIN|/cacert"
    expect_closed "connection $i from 127.0.0.2"
done
p2m_wait_until "the refused address is logged" p2m_log_has registrar "event=proxy_refused peer=127.0.0.2 reason=address$"
p2m_wait_until -t 25 "the other four are reported as counted" refusals_are 127.0.0.2 address "1 4"

# Not a PROXY line: garbage, a line whose address is not an IP, a ClientHello with no line, the
# "UNKNOWN" protocol, a line longer than 107 bytes. Each is closed at once.
px --raw 'GET / HTTP/1.1\r\nHost: pipe2me.localhost\r\n\r\n'
expect_closed "garbage instead of a PROXY line"
px --raw 'PROXY TCP4 not.an.ip 127.0.0.1 40000 443\r\n'
expect_closed "a PROXY line whose address is not an IP"
px --proxy "" --sni "$DOMAIN" --req "GET|$DOMAIN|/cacert"
expect_closed "a ClientHello without a PROXY line"
px --proxy "PROXY UNKNOWN" --sni "$DOMAIN" --req "GET|$DOMAIN|/cacert"
expect_closed "PROXY UNKNOWN"
px --raw "PROXY TCP4 198.51.100.7 127.0.0.1 40000 443$(printf '%0100d' 0)\r\n"
expect_closed "a PROXY line over 107 bytes"
p2m_wait_until "the first is logged" p2m_log_has registrar "event=proxy_refused peer=127.0.0.1 reason=proxy_line$"
p2m_wait_until -t 25 "the other four are reported as counted" refusals_are 127.0.0.1 proxy_line "1 4"

# The registrar serves on, on both listeners.
px --sni "$DOMAIN" --req "GET|$DOMAIN|/cacert"
expect_px 200 "-----BEGIN CERTIFICATE-----" "/cacert after the refusals"
p2m_health_is 200 || fail "the HTTPS listener no longer answers /_health"
p2m_ok

# The half line of the start: closed by the line timeout, logged.
p2m_wait_until -t 30 "the silent client is closed" p2m_dead "$SILENT_PID"
expect_match '"closed": true' "$(cat "$T/silent.log")" "the silent client saw the close"
s=$(jq -r '.seconds | floor' "$T/silent.log")
((s >= 9 && s < 20)) || fail "the half line was closed after $s s, want about 10"
p2m_ok
p2m_log_has registrar "event=proxy_refused peer=127.0.0.1 reason=timeout$" || fail "the timeout is not logged"
p2m_ok

# ---------------------------------------------------------------- the end

p2m_stop registrar "$REGISTRAR_PID"
expect_log_clean registrar
# Never log secrets or OTPs.
for c in "${P2M_CODES[@]}"; do
    ! grep -qwF -- "$c" "$T/registrar.log" || fail "registrar.log contains a code: $c"
done
p2m_ok
