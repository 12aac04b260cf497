#!/usr/bin/env bash
# RFC 2136 updates signed with TSIG (lib/dnsupd.c, through tests/tools/p2m-dnsupd) against a real
# knotd on a loopback port, checked with dig: an A record appears with its TTL, is replaced, is
# deleted (the zone's wildcard answers again: compare addresses, never look for "no answer"); A
# and AAAA together; a wrong secret, an unknown key and an unsigned update are refused with the
# RCODE and TSIG error; a server that never answers is a timeout; a key file others may read is
# refused before anything is sent. The registrar calls it from registrar/direct.c (76-direct-registrar.sh).
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require knotd dig openssl socat ss
p2m_require_built tests/tools/p2m-dnsupd
UPD=$P2M_BUILD_DIR/tests/tools/p2m-dnsupd
ZONE=pipe2me.localhost
NAME=web.direct.$ZONE
MUTE= # a UDP server that reads and never answers

answer() { p2m_dns_answer "$@"; }
upd() { "$UPD" "127.0.0.1:$P2M_DNS_PORT" "$ZONE" "$@"; }
mute_listening() { ! p2m_udp_free "$MUTE"; }

# ---------------------------------------------------------------- knotd with a zone and a key

p2m_knot_start "$ZONE" p2m-test hmac-sha512
expect_eq "300 127.0.0.1" "$(answer "$NAME" A)" "before any update the wildcard answers"

# ---------------------------------------------------------------- replace, replace, delete

expect_status 0 upd "$T/tsig.key" replace "$NAME" 30 127.0.0.7
expect_eq "30 127.0.0.7" "$(answer "$NAME" A)" "the update's record, with its TTL"
expect_status 0 upd - lookup "$NAME"
expect_eq "30 127.0.0.7" "$(cat "$OUT")" "p2m_dnsupd_lookup sees what dig sees"

expect_status 0 upd "$T/tsig.key" replace "$NAME" 30 127.0.0.8
expect_eq "30 127.0.0.8" "$(answer "$NAME" A)" "replaced, not added"

expect_status 0 upd "$T/tsig.key" replace "$NAME" 60 127.0.0.9 127.0.0.10 ::1
expect_eq $'60 127.0.0.10\n60 127.0.0.9' "$(answer "$NAME" A)" "two A records"
expect_eq "60 ::1" "$(answer "$NAME" AAAA)" "and an AAAA"
expect_status 0 upd - lookup "$NAME"
expect_eq $'60 127.0.0.10\n60 127.0.0.9\n60 ::1' "$(sort "$OUT")" "lookup returns A and AAAA"

expect_status 0 upd "$T/tsig.key" replace "$NAME" 30 127.0.0.8
expect_eq "" "$(answer "$NAME" AAAA)" "a replace with only IPv4 drops the AAAA"

expect_status 0 upd "$T/tsig.key" delete "$NAME"
expect_eq "300 127.0.0.1" "$(answer "$NAME" A)" "deleted: the wildcard answers again"
expect_status 0 upd - lookup "$NAME"
expect_eq "300 127.0.0.1" "$(cat "$OUT")" "a lookup cannot tell the wildcard from a record (see p2m/dnsupd.h)"
expect_status 0 upd "$T/tsig.key" delete "$NAME"
p2m_ok # deleting what is gone is no error

# ---------------------------------------------------------------- refusals

expect_status 0 upd "$T/tsig.key" replace "$NAME" 30 127.0.0.7
p2m_tsig_key "$T/wrong.conf" p2m-test hmac-sha512 >/dev/null
expect_status 1 upd "$T/wrong.conf" replace "$NAME" 30 127.0.0.66
expect_file_one_line "$ERR" "^p2m-dnsupd: dns update of $NAME: NOTAUTH \\(TSIG BADSIG\\)$"
p2m_tsig_key "$T/other.conf" other-key hmac-sha512 >/dev/null
expect_status 1 upd "$T/other.conf" replace "$NAME" 30 127.0.0.66
expect_file_one_line "$ERR" "^p2m-dnsupd: dns update of $NAME: NOTAUTH \\(TSIG BADKEY\\)$"
p2m_tsig_key "$T/sha256.conf" p2m-test hmac-sha256 >/dev/null
expect_status 1 upd "$T/sha256.conf" replace "$NAME" 30 127.0.0.66
expect_file_one_line "$ERR" "^p2m-dnsupd: dns update of $NAME: NOTAUTH"
expect_status 1 upd - replace "$NAME" 30 127.0.0.66
expect_file_one_line "$ERR" "^p2m-dnsupd: dns update of $NAME: NOTAUTH$"
expect_status 1 upd "$T/tsig.key" replace web.example.com 30 127.0.0.66
expect_file_one_line "$ERR" "not a name in zone $ZONE"
expect_eq "30 127.0.0.7" "$(answer "$NAME" A)" "no refused update changed the zone"

cp "$T/tsig.key" "$T/open.conf"
chmod 644 "$T/open.conf"
expect_status 1 upd "$T/open.conf" replace "$NAME" 30 127.0.0.66
expect_file_one_line "$ERR" "mode 0644 lets group or others read it; chmod 600$"
for f in "$T"/*.conf; do
    s=$(sed -n 's/.*secret "\(.*\)".*/\1/p' "$f")
    ! grep -rqF -- "$s" "$ERR" "$OUT" || fail "a secret of $(basename -- "$f") appears in the output"
done
p2m_ok

# ---------------------------------------------------------------- a server that never answers

p2m_free_port_tcp_udp MUTE
p2m_bg mute socat -u "UDP-RECV:$MUTE,bind=127.0.0.1" /dev/null
MUTE_PID=$P2M_BG_PID
p2m_wait_until "the mute server listens" mute_listening
expect_status 1 env P2M_DNSUPD_TIMEOUT_MS=500 "$UPD" "127.0.0.1:$MUTE" "$ZONE" "$T/tsig.key" replace "$NAME" 30 127.0.0.66
expect_file_one_line "$ERR" "^p2m-dnsupd: dns update of $NAME: no answer within 500 ms"
p2m_kill "$MUTE_PID"

p2m_kill "$P2M_KNOT_PID"
p2m_ok
