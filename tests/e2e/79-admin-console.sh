#!/usr/bin/env bash
# pipe2me-admin serve, the web console (issue 21, docs/OPERATIONS.md "Web console"), driven by curl
# against a real stack (redis, the registrar, relay r1) with two pods: without the session cookie
# every page and /api/* is 401; a wrong token is 401 and logged without the token; the right one
# sets an HttpOnly, SameSite=Strict cookie; /api/pods, /api/labels and /api/relays are exactly what
# pipe2me-admin --json pod ls, label ls and relay ls print; a forged, doubled, logged-out or idle
# cookie is 401; a POST without the session's CSRF token, with a foreign Origin or a cross-site
# Sec-Fetch-Site is 403; a foreign Host is 421; the security headers are on every answer; the page
# loads its script from the binary; pod add answers with the provisioning file once, disable, enable
# and rm (confirmed by the ID) change what the CLI shows; label add, rm (confirmed), share and
# unshare do what the CLI does and refuse what it refuses; pod rotate (confirmed) answers with the
# new provisioning file once, after which the registrar refuses the old secret; h2o's own 413 and
# 400 carry the security headers (but for the fixed 400 it writes for a request line it cannot
# parse); five wrong tokens from one address make its sixth login, with the right token, 429 with
# Retry-After while another address still logs in, and twenty over all addresses within a minute
# refuse every address; it works over TLS; and serve refuses a token file of mode 0644 and a
# non-loopback --listen without --public --cert --key (exit 2).
# shellcheck disable=SC2119 # p2m_start_system takes an optional argument
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require jq curl openssl oathtool
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay tools/pipe2me-admin
ADMIN=$P2M_BUILD_DIR/tools/pipe2me-admin
CSP="default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

p2m_start_system
expect_status 0 admin pod add pod1 --label alpha
SECRET1=$(jq -er .secret "$OUT")
expect_status 0 admin pod add pod2 --label beta --label gamma
expect_status 0 admin label share alpha pod2
expect_status 0 admin pod disable pod2

TOKEN=$(openssl rand -hex 24)
TOKEN_FILE=$T/console.token
(umask 077 && printf '%s\n' "$TOKEN" >"$TOKEN_FILE")

# console_start NAME VAR ARGS...: starts pipe2me-admin serve on a free loopback port (CONSOLE_PORT)
# with ARGS, logging to $T/NAME.log, and waits until it listens; sets VAR to its base URL and
# CONSOLE_PID.
console_start() {
    local name=$1 var=$2
    shift 2
    p2m_free_port CONSOLE_PORT # a global: p2m_free_port's own locals would shadow a local here
    p2m_bg "$name" "$ADMIN" -c "$P2M_CONFIG" serve --listen "127.0.0.1:$CONSOLE_PORT" --token-file "$TOKEN_FILE" "$@"
    CONSOLE_PID=$P2M_BG_PID
    p2m_wait_until "the console $name listens on $CONSOLE_PORT" p2m_listening "$CONSOLE_PORT"
    printf -v "$var" 'http://127.0.0.1:%s' "$CONSOLE_PORT"
}

# expect_security_headers: the last answer has the console's security headers.
expect_security_headers() {
    expect_eq "$CSP" "$(hdr content-security-policy)" "Content-Security-Policy: $LAST_REQ"
    expect_eq nosniff "$(hdr x-content-type-options)" "X-Content-Type-Options: $LAST_REQ"
    expect_eq no-referrer "$(hdr referrer-policy)" "Referrer-Policy: $LAST_REQ"
    expect_eq no-store "$(hdr cache-control)" "Cache-Control: $LAST_REQ"
}

# login TOKEN: POST /login; sets COOKIE (name=value) when the answer set one.
login() {
    hreq -X POST --data-urlencode "token=$1" "$URL/login"
    COOKIE=$(hdr set-cookie | sed -n 's/^\(p2m_console=[^;]*\).*/\1/p')
}

# api_matches_cli PATH COMMAND...: GET PATH with the cookie equals pipe2me-admin --json COMMAND
# (both sorted by jq -S); a predicate, since the relay's counters may move between the two.
api_matches_cli() {
    local api cli
    api=$(curl -4 -sS --max-time 10 -H "Cookie: $COOKIE" "$URL$1" | jq -S .) || return 1
    cli=$(admin --json "${@:2}" | jq -S .) || return 1
    [[ $api == "$cli" && -n $api ]]
}

console_start console URL

# ---- without a session: 401 everywhere, pages with the login form and the API with JSON
for path in / /api/pods /api/labels /api/relays /nothing-here; do
    hreq "$URL$path"
    expect_http 401 "GET $path without a cookie"
    expect_security_headers
done
hreq "$URL/"
expect_match '<form method="post" action="/login">' "$(body)" "the 401 page is the login form"
hreq "$URL/api/pods"
expect_eq "application/json" "$(hdr content-type)" "the API answers JSON"
expect_eq "log in first: POST /login" "$(jq -r .error "$T/resp.b")" "the API's 401 says why"
hreq "$URL/login"
expect_http 200 "GET /login"
expect_security_headers

# ---- a wrong token: 401, logged, and no token in the log
login "wrong-$TOKEN"
expect_http 401 "POST /login with a wrong token"
expect_eq "" "$COOKIE" "no cookie for a wrong token"
login ""
expect_http 401 "POST /login with an empty token"
hreq -X POST "$URL/login" --data "user=x"
expect_http 401 "POST /login without a token field"
hreq -X POST "$URL/login" --data "token=a&token=b"
expect_http 401 "POST /login with two token fields"
hreq -X POST "$URL/login" --data "token=%00"
expect_http 400 "POST /login with a NUL in the form"
hreq -X POST "$URL/login" -H 'Content-Type: application/json' --data "{\"token\":\"$TOKEN\"}"
expect_http 415 "POST /login with JSON"
p2m_wait_until "the failures are logged" p2m_log_has console 'event=console_login result=fail reason=bad_token addr=127.0.0.1'
expect_match 'reason=no_token' "$(cat "$T/console.log")" "a login without a token is logged"

# ---- the right token: a session cookie, HttpOnly, SameSite=Strict, not Secure over plain HTTP
login "$TOKEN"
expect_http 303 "POST /login with the token"
expect_eq / "$(hdr location)" "login sends to /"
expect_security_headers
SETCOOKIE=$(hdr set-cookie)
expect_match '^p2m_console=[A-Za-z0-9_-]{43}; ' "$SETCOOKIE" "the cookie: 32 random bytes, base64url"
expect_match '; HttpOnly(;|$)' "$SETCOOKIE" "the cookie is HttpOnly"
expect_match '; SameSite=Strict(;|$)' "$SETCOOKIE" "the cookie is SameSite=Strict"
expect_match '; Path=/(;|$)' "$SETCOOKIE" "the cookie is for the whole console"
expect_no_match 'Secure' "$SETCOOKIE" "no Secure flag over plain HTTP"
p2m_wait_until "the login is logged" p2m_log_has console 'event=console_login result=ok addr=127.0.0.1'
if grep -qF -- "$TOKEN" "$T/console.log"; then fail "the console logged the token"; fi
p2m_ok

# ---- with the cookie: the page (with its CSRF token) and the CLI's JSON
hreq -H "Cookie: $COOKIE" "$URL/"
expect_http 200 "GET / with the cookie"
expect_security_headers
CSRF=$(body | sed -n 's/.*<meta name="csrf" content="\([A-Za-z0-9_-]*\)">.*/\1/p')
expect_match '^[A-Za-z0-9_-]{43}$' "$CSRF" "the page carries the session's CSRF token"
expect_match "name=\"csrf\" value=\"$CSRF\"" "$(body)" "the logout form carries it"
hreq -H "Cookie: other=1; $COOKIE; third=\"x\"" "$URL/api/pods"
expect_http 200 "GET /api/pods with the cookie among others"
expect_security_headers
expect_eq "application/json" "$(hdr content-type)" "/api/pods is JSON"
expect_eq "pod1 pod2" "$(jq -r '[.[].id] | sort | join(" ")' "$T/resp.b")" "/api/pods lists both pods"
p2m_wait_until "/api/pods is pipe2me-admin --json pod ls" api_matches_cli /api/pods pod ls
p2m_wait_until "/api/labels is pipe2me-admin --json label ls" api_matches_cli /api/labels label ls
p2m_wait_until "/api/relays is pipe2me-admin --json relay ls" api_matches_cli /api/relays relay ls
expect_eq r1 "$(curl -4 -sS -H "Cookie: $COOKIE" "$URL/api/relays" | jq -r '.[].name')" "/api/relays lists r1"
hreq -H "Cookie: $COOKIE" "$URL/api/nothing"
expect_http 404 "an unknown API path"

# ---- forged and malformed cookies
FORGED=p2m_console=$(openssl rand 32 | basenc --base64url | tr -d '=')
for cookie in "$FORGED" "p2m_console=" "p2m_console=${COOKIE#p2m_console=}x" "p2m_console=${COOKIE#p2m_console=} x" \
    "$COOKIE; $COOKIE" "$COOKIE; $FORGED" "P2M_CONSOLE=${COOKIE#p2m_console=}"; do
    hreq -H "Cookie: $cookie" "$URL/api/pods"
    expect_http 401 "GET /api/pods with the cookie $cookie"
done
hreq -H "Cookie: $COOKIE" -H "Cookie: $COOKIE" "$URL/api/pods"
expect_http 401 "the cookie in two Cookie headers"
p2m_wait_until "forged cookies are logged" p2m_log_has console 'event=console_refused status=401 reason=unknown_session'
expect_match 'event=console_refused status=401 reason=bad_cookie' "$(cat "$T/console.log")" "malformed cookies are logged"

# ---- POSTs: CSRF token, Origin, Sec-Fetch-Site, Host
hreq -X POST -H "Cookie: $COOKIE" --data "x=1" "$URL/logout"
expect_http 403 "POST /logout without the CSRF token"
expect_security_headers
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$FORGED" "$URL/logout"
expect_http 403 "POST /logout with a wrong CSRF token"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&csrf=$CSRF" "$URL/logout"
expect_http 403 "POST /logout with the CSRF token twice"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF" "$URL/pods/nothing"
expect_http 404 "a POST to an action that does not exist, after the CSRF check"
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: http://evil.example" --data "csrf=$CSRF" "$URL/logout"
expect_http 403 "POST /logout from a foreign Origin"
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: ${URL/127.0.0.1/localhost}0" --data "csrf=$CSRF" "$URL/logout"
expect_http 403 "POST /logout from another port's Origin"
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: null" --data "csrf=$CSRF" "$URL/logout"
expect_http 403 "POST /logout from Origin null"
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: null" -H "Sec-Fetch-Site: cross-site" --data "csrf=$CSRF" "$URL/logout"
expect_http 403 "POST /logout from Origin null, cross-site"
hreq -X POST -H "Cookie: $COOKIE" -H "Sec-Fetch-Site: cross-site" --data "csrf=$CSRF" "$URL/logout"
expect_http 403 "POST /logout with Sec-Fetch-Site: cross-site"
hreq -X POST -H "Cookie: $COOKIE" -H "Sec-Fetch-Site: same-site" --data "csrf=$CSRF" "$URL/logout"
expect_http 403 "POST /logout with Sec-Fetch-Site: same-site (another port of this host)"
hreq -X POST -H "Origin: http://evil.example" --data-urlencode "token=$TOKEN" "$URL/login"
expect_http 403 "POST /login from a foreign Origin"
expect_eq "" "$(hdr set-cookie)" "no cookie for a login from a foreign Origin"
hreq -H "Cookie: $COOKIE" -H "Host: evil.example:${URL##*:}" "$URL/api/pods"
expect_http 421 "a foreign Host (DNS rebinding)"
hreq -X DELETE -H "Cookie: $COOKIE" "$URL/api/pods"
expect_http 405 "DELETE"
p2m_wait_until "the refusals are logged" p2m_log_has console 'event=console_refused status=403 reason=origin'
expect_match 'event=console_refused status=403 reason=csrf' "$(cat "$T/console.log")" "CSRF refusals are logged"
expect_match 'event=console_refused status=403 reason=sec_fetch_site' "$(cat "$T/console.log")" "Sec-Fetch-Site refusals are logged"

# ---- the page's script and style: from the binary, under the same headers
hreq -H "Cookie: $COOKIE" "$URL/"
expect_match '<script src="/static/console.js" defer></script>' "$(body)" "the page loads its script from the console"
expect_no_match '<script>|<script [^s]| on[a-z]+=' "$(body)" "no inline script or event handler"
hreq "$URL/static/console.js"
expect_http 200 "GET /static/console.js"
expect_match '^text/javascript' "$(hdr content-type)" "the script's type"
expect_security_headers
expect_match 'fetch\(path' "$(body)" "the script polls the API"
hreq "$URL/static/console.css"
expect_http 200 "GET /static/console.css"

# ---- actions: the CLI's handlers, behind the CSRF check
hreq -X POST -H "Cookie: $COOKIE" --data "id=pod3&labels=delta" "$URL/pod/add"
expect_http 403 "pod add without the CSRF token"
expect_status 2 admin pod show pod3
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: $URL" --data "csrf=$CSRF&id=pod3&labels=delta,%20epsilon" "$URL/pod/add"
expect_http 200 "pod add"
expect_match '^attachment; filename="pipe2me-pod3.json"' "$(hdr content-disposition)" "the provisioning file is a download"
expect_eq no-store "$(hdr cache-control)" "the download is not cached"
expect_eq pod3 "$(jq -r .id "$T/resp.b")" "the file names the pod"
SECRET3=$(jq -r .secret "$T/resp.b")
expect_match '^[A-Z2-7]{16,}$' "$SECRET3" "the file holds the secret"
expect_status 0 admin --json pod show pod3
expect_eq "delta epsilon false" "$(json -j '(.labels | join(" ")), " ", (.disabled | tostring)')" "pod3 as the CLI shows it"
if grep -qF -- "$SECRET3" "$T/console.log"; then fail "the console logged the pod's secret"; fi
p2m_ok
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod3" "$URL/pod/add"
expect_http 400 "pod add of an existing pod"
expect_match 'pod3' "$(body)" "the CLI's reason"
if grep -qF -- "$SECRET3" "$T/resp.b"; then fail "the secret was offered twice"; fi
p2m_ok
for path in / /api/pods /pod/add; do
    hreq -H "Cookie: $COOKIE" "$URL$path"
    if grep -qF -- "$SECRET3" "$T/resp.b"; then fail "GET $path shows the secret"; fi
    p2m_ok
done
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=%3Cscript%3E" "$URL/pod/disable"
expect_http 400 "disable with a bad ID"
expect_no_match '<script>' "$(body)" "the refusal escapes what it quotes"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod3" "$URL/pod/disable"
expect_http 303 "disable pod3"
expect_status 0 admin --json pod show pod3
expect_eq true "$(json .disabled)" "pod3 disabled"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod3" "$URL/pod/enable"
expect_http 303 "enable pod3"
expect_status 0 admin --json pod show pod3
expect_eq false "$(json '.disabled | tostring')" "pod3 enabled"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod3" "$URL/pod/rm"
expect_http 400 "rm without the confirmation"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod3&confirm=pod1" "$URL/pod/rm"
expect_http 400 "rm confirmed with another ID"
expect_status 0 admin pod show pod3
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod3&confirm=pod3" "$URL/pod/rm"
expect_http 303 "rm pod3, confirmed"
expect_status 2 admin pod show pod3
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod3&confirm=pod3" "$URL/pod/rm"
expect_http 400 "rm of a pod that is gone"
p2m_wait_until "actions are logged" p2m_log_has console 'event=console_action action=pod_rm result=ok id=pod3'
p2m_wait_until "/api/pods follows" api_matches_cli /api/pods pod ls

# ---- labels: add, share, unshare, rm; each the CLI's handler, behind the CSRF and Origin checks
for path in /label/add /label/rm /label/share /label/unshare /pod/rotate; do
    hreq -X POST -H "Cookie: $COOKIE" --data "id=pod1&label=zeta&confirm=pod1" "$URL$path"
    expect_http 403 "$path without the CSRF token"
    hreq -X POST -H "Cookie: $COOKIE" -H "Origin: http://evil.example" --data "csrf=$CSRF&id=pod1&label=zeta&confirm=pod1" \
        "$URL$path"
    expect_http 403 "$path from a foreign Origin"
done
label_is() { admin --json label ls | jq -r --arg l "$1" '.[] | select(.label == $l) | "\(.pod) \(.protocol) \(.sharers // [] | join(","))"'; }
expect_eq "" "$(label_is zeta)" "the refused label add changed nothing"
# A browser's own form under Referrer-Policy no-referrer: Origin null, Sec-Fetch-Site same-origin
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: null" -H "Sec-Fetch-Site: same-origin" \
    --data "csrf=$CSRF&id=pod1&label=Zeta&protocol=http" "$URL/label/add"
expect_http 303 "label add"
expect_eq "pod1 http " "$(label_is zeta)" "label zeta is pod1's, http, as label ls shows it"
expect_status 2 admin label add pod9 omega
cli_reason=$(sed 's/^pipe2me-admin: //' "$ERR")
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod9&label=omega" "$URL/label/add"
expect_http 400 "label add to a pod that does not exist"
grep -qF -- "$cli_reason" "$T/resp.b" || fail "the page does not show the CLI's reason $(p2m_show "$cli_reason")"$'\n'"$(resp_dump)"
p2m_ok
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod1&label=zeta&protocol=gopher" "$URL/label/add"
expect_http 400 "label add with an unknown protocol"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&label=zeta&id=pod2" "$URL/label/share"
expect_http 303 "label share"
expect_eq "pod1 http pod2" "$(label_is zeta)" "pod2 shares zeta"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&label=zeta&id=pod2" "$URL/label/unshare"
expect_http 303 "label unshare"
expect_eq "pod1 http " "$(label_is zeta)" "pod2 no longer shares zeta"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&label=zeta" "$URL/label/rm"
expect_http 400 "label rm without the confirmation"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&label=zeta&confirm=alpha" "$URL/label/rm"
expect_http 400 "label rm confirmed with another label"
expect_eq "pod1 http " "$(label_is zeta)" "the refused rm changed nothing"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&label=zeta&confirm=zeta" "$URL/label/rm"
expect_http 303 "label rm, confirmed"
expect_eq "" "$(label_is zeta)" "zeta is gone"
p2m_wait_until "label actions are logged" p2m_log_has console 'event=console_action action=label_rm result=ok id=- label=zeta'
p2m_wait_until "/api/labels follows" api_matches_cli /api/labels label ls

# ---- pod rotate: confirmed, the new file once; the registrar refuses the old secret
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod1" "$URL/pod/rotate"
expect_http 400 "rotate without the confirmation"
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: $URL" --data "csrf=$CSRF&id=pod1&confirm=pod1" "$URL/pod/rotate"
expect_http 200 "rotate pod1"
expect_match '^attachment; filename="pipe2me-pod1.json"' "$(hdr content-disposition)" "the new provisioning file is a download"
expect_eq no-store "$(hdr cache-control)" "the download is not cached"
expect_eq "pod1 alpha" "$(jq -r '"\(.id) \(.labels | join(","))"' "$T/resp.b")" "the new file: the pod and its labels"
NEW1=$(jq -r .secret "$T/resp.b")
[[ $NEW1 =~ ^[A-Z2-7]{16,}$ && $NEW1 != "$SECRET1" ]] || fail "rotate: no new secret in the file"
p2m_ok
for path in / /api/pods /pod/rotate; do
    hreq -H "Cookie: $COOKIE" "$URL$path"
    if grep -qF -- "$NEW1" "$T/resp.b"; then fail "GET $path shows the new secret"; fi
    p2m_ok
done
if grep -qF -- "$NEW1" "$T/console.log"; then fail "the console logged the new secret"; fi
p2m_ok
p2m_totp_fresh pod1 "$SECRET1"
p2m_reg -s 127.0.0.9 alpha "$(p2m_totp_auth pod1 "$CODE_")"
expect_http 401 "a code of the secret before the rotation"
p2m_totp_fresh pod1 "$NEW1"
p2m_reg alpha "$(p2m_totp_auth pod1 "$CODE_")"
expect_http 200 "a code of the rotated secret"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF&id=pod9&confirm=pod9" "$URL/pod/rotate"
expect_http 400 "rotate a pod that does not exist"
p2m_wait_until "the rotation is logged" p2m_log_has console 'event=console_action action=pod_rotate result=ok id=pod1'

# ---- logout with the token and the console's own Origin: the cookie is dead from then on
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: $URL" -H "Sec-Fetch-Site: same-origin" --data "csrf=$CSRF" "$URL/logout"
expect_http 303 "POST /logout with the CSRF token"
expect_match '^p2m_console=; .*Max-Age=0' "$(hdr set-cookie)" "logout clears the cookie"
hreq -H "Cookie: $COOKIE" "$URL/api/pods"
expect_http 401 "the cookie after logout"
hreq -X POST -H "Cookie: $COOKIE" --data "csrf=$CSRF" "$URL/logout"
expect_http 401 "logout again with the dead cookie"

# ---- one line per request, with method, path, status and duration
expect_match 'event=console_request method=GET path=/api/pods status=200 ms=[0-9]+' "$(cat "$T/console.log")" "request lines"
expect_match 'event=console_request method=POST path=/logout status=303 ms=[0-9]+' "$(cat "$T/console.log")" "POST lines"
expect_log_clean console
if grep -qF -- "$TOKEN" "$T/console.log"; then fail "the console logged the token"; fi
p2m_ok
p2m_stop console "$CONSOLE_PID"

# ---- an idle session expires (--idle 1s). Every use renews it, so the cookie is not polled: the
# test waits until 1.5 s have passed since its last use, then asks once.
console_start console-idle URL --idle 1s
login "$TOKEN"
expect_http 303 "login on the console with --idle 1s"
LAST_USE=$(p2m_now_ms)
idle_passed() { (($(p2m_now_ms) - LAST_USE > 1500)); }
p2m_wait_until "1.5 s pass without the cookie being used" idle_passed
hreq -H "Cookie: $COOKIE" "$URL/api/pods"
expect_http 401 "the cookie after its session idled out"
p2m_wait_until "the expiry is logged" p2m_log_has console-idle 'event=console_refused status=401 reason=expired'
p2m_stop console-idle "$CONSOLE_PID"

# ---- TLS (--cert, --key), here on loopback: the same console over https, the cookie Secure
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$T/console.key" -out "$T/console.crt" 2>"$T/openssl.err" ||
    fail "openssl req: $(cat "$T/openssl.err")"
console_start console-tls URL --cert "$T/console.crt" --key "$T/console.key"
URL=${URL/http:/https:}
P2M_CA_SAVED=$P2M_CA P2M_CA=$T/console.crt
hreq "$URL/api/pods"
expect_http 401 "GET /api/pods over TLS without a cookie"
expect_security_headers
login "$TOKEN"
expect_http 303 "login over TLS"
expect_match '; Secure(;|$)' "$(hdr set-cookie)" "the cookie is Secure over TLS"
hreq -H "Cookie: $COOKIE" "$URL/api/labels"
expect_http 200 "GET /api/labels over TLS with the cookie"
hreq -X POST -H "Cookie: $COOKIE" -H "Origin: ${URL/https:/http:}" --data "x=1" "$URL/logout"
expect_http 403 "the http:// origin is foreign to the https:// console"
P2M_CA=$P2M_CA_SAVED
p2m_stop console-tls "$CONSOLE_PID"

# ---- h2o's own answers carry the security headers: 413 for a body over the limit, 400 for a
# broken chunked body. A request line h2o cannot parse gets its fixed 400 written straight to the
# socket, before any handler or filter: exactly that answer, without them (docs/OPERATIONS.md).
console_start console-h2o URL
head -c 70000 /dev/zero | tr '\0' a >"$T/big.form"
hreq -X POST -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$T/big.form" "$URL/login"
expect_http 413 "a body over 64 KiB"
expect_security_headers
expect_eq DENY "$(hdr x-frame-options)" "X-Frame-Options on h2o's 413"
# raw_http REQUEST: sends REQUEST to the console and prints the answer (the connection closes).
raw_http() {
    local answer
    exec 3<>"/dev/tcp/127.0.0.1/${URL##*:}" || fail "cannot connect to the console"
    printf '%b' "$1" >&3
    answer=$(timeout 10 cat <&3 | tr -d '\r')
    exec 3<&-
    printf '%s\n' "$answer"
}
answer=$(raw_http "POST /login HTTP/1.1\r\nHost: ${URL#http://}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n")
expect_match '^HTTP/1.1 400 ' "$answer" "a broken chunked body"
expect_match "content-security-policy: $CSP" "$answer" "CSP on h2o's 400"
expect_match 'x-frame-options: DENY' "$answer" "X-Frame-Options on h2o's 400"
expect_match 'x-content-type-options: nosniff' "$answer" "nosniff on h2o's 400"
answer=$(raw_http "GARBAGE\r\n\r\n")
expect_eq $'HTTP/1.1 400 Bad Request\nContent-Type: text/plain; charset=utf-8\nConnection: close\nContent-Length: 11\n\nBad Request' \
    "$answer" "h2o's fixed answer to a request line it cannot parse"
p2m_stop console-h2o "$CONSOLE_PID"

# ---- the login limiter: 5 wrong tokens from one address, then 429 for it (the right token too)
# with Retry-After; another address still logs in; 20 failures over all addresses in a minute,
# then 429 for every address
console_start console-rate URL
for ((i = 1; i <= 5; i++)); do
    hreq --interface 127.0.0.2 -X POST --data-urlencode "token=wrong-$i" "$URL/login"
    expect_http 401 "wrong token $i from 127.0.0.2"
done
hreq --interface 127.0.0.2 -X POST --data-urlencode "token=$TOKEN" "$URL/login"
expect_http 429 "the right token from 127.0.0.2 after 5 wrong ones"
expect_eq "" "$(hdr set-cookie)" "no cookie on a refused login"
expect_match '^[0-9]+$' "$(hdr retry-after)" "Retry-After in seconds"
(($(hdr retry-after) >= 1 && $(hdr retry-after) <= 600)) || fail "Retry-After $(hdr retry-after): want 1-600"
p2m_ok
expect_security_headers
hreq --interface 127.0.0.3 -X POST --data-urlencode "token=$TOKEN" "$URL/login"
expect_http 303 "the right token from 127.0.0.3"
p2m_wait_until "the refusal is logged" p2m_log_has console-rate 'event=console_refused status=429 reason=rate scope=addr addr=127.0.0.2'
for addr in 127.0.0.4 127.0.0.5 127.0.0.6; do
    for ((i = 1; i <= 5; i++)); do
        hreq --interface "$addr" -X POST --data-urlencode "token=wrong-$i" "$URL/login"
        expect_http 401 "wrong token $i from $addr"
    done
done
hreq --interface 127.0.0.7 -X POST --data-urlencode "token=$TOKEN" "$URL/login"
expect_http 429 "the right token from a fresh address after 20 failures over all addresses"
p2m_wait_until "the global refusal is logged" p2m_log_has console-rate 'event=console_refused status=429 reason=rate scope=global addr=127.0.0.7'
if grep -qF -- "$TOKEN" "$T/console-rate.log"; then fail "the console logged the token"; fi
p2m_ok
p2m_stop console-rate "$CONSOLE_PID"

# ---- refusals at start: exit 2, one line, nothing listening
chmod 0644 "$TOKEN_FILE"
expect_status 2 "$ADMIN" -c "$P2M_CONFIG" serve --listen 127.0.0.1:1 --token-file "$TOKEN_FILE"
expect_file_one_line "$ERR" '^pipe2me-admin: serve: --token-file .*mode 0644, expected 0600 or 0400'
expect_no_match "$TOKEN" "$(cat "$ERR")" "the refusal does not show the token"
chmod 0400 "$TOKEN_FILE"
p2m_free_port PUBPORT
expect_status 2 "$ADMIN" -c "$P2M_CONFIG" serve --listen "0.0.0.0:$PUBPORT" --token-file "$TOKEN_FILE"
expect_file_one_line "$ERR" '^pipe2me-admin: serve: --listen "0.0.0.0:[0-9]+" is not a loopback address'
expect_status 2 "$ADMIN" -c "$P2M_CONFIG" serve --listen "0.0.0.0:$PUBPORT" --token-file "$TOKEN_FILE" --public
expect_file_one_line "$ERR" '^pipe2me-admin: serve: --public needs --cert FILE and --key FILE'
expect_status 2 "$ADMIN" -c "$P2M_CONFIG" serve --listen "127.0.0.1:$PUBPORT" --token-file "$TOKEN_FILE" --cert "$T/nothing.pem"
expect_file_one_line "$ERR" '^pipe2me-admin: serve: --cert and --key go together'
expect_status 2 "$ADMIN" -c "$P2M_CONFIG" serve --listen "127.0.0.1:$PUBPORT"
expect_file_one_line "$ERR" '^pipe2me-admin: serve: --token-file FILE is required'
expect_status 2 "$ADMIN" -c "$P2M_CONFIG" pod ls --listen "127.0.0.1:$PUBPORT"
expect_file_one_line "$ERR" '^pipe2me-admin: pod ls: option --listen does not apply'
p2m_not_listening "$PUBPORT" || fail "a refused serve left port $PUBPORT listening"
p2m_ok

echo "$P2M_TEST: $P2M_CHECKS checks passed"
