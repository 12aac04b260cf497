# pipe2me-admin lease ...: ls and rm, and pod rm ending the pod's leases. The registrar makes
# leases; here they are written with redis-cli following the schema in lib/include/p2m/store.h.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require jq
p2m_require_built tools/pipe2me-admin
p2m_start_redis
p2m_write_config


expect_status 0 admin pod add p1 --label l1 --label l1b
expect_status 0 admin pod add p2 --label l2

# ---- no leases yet
expect_status 0 admin lease ls
expect_match '^PORT +KIND +LABEL +POD +ADDR +TTL$' "$(cat "$OUT")" "lease ls with nothing leased"
expect_status 0 admin lease ls --json
expect_eq '[]' "$(json -c .)"

NOW=$(date +%s)
p2m_lease -t "$NOW" "$P2M_RELAY_PORT_LO" pre l1 p1 127.0.0.1 300
p2m_lease -t "$NOW" "$((P2M_RELAY_PORT_LO + 1))" consumer l2 p2 127.0.0.2 200
p2m_lease -t "$NOW" "$((P2M_RELAY_PORT_LO + 2))" pre l1b p1 ::1 100
P1=$P2M_RELAY_PORT_LO P2=$((P2M_RELAY_PORT_LO + 1)) P3=$((P2M_RELAY_PORT_LO + 2))

# ---- lease ls: sorted by port, TTL counting down
expect_status 0 admin lease ls
expect_empty "$ERR"
expect_match '^PORT +KIND +LABEL +POD +ADDR +TTL$' "$(head -n 1 "$OUT")" "lease ls header"
expect_eq 4 "$(wc -l <"$OUT")" "lease ls: header and 3 leases"
expect_match "^$P1 +pre +l1 +p1 +127\\.0\\.0\\.1 +(29[0-9]|300)s$" "$(sed -n 2p "$OUT")" "lease ls row 1"
expect_match "^$P2 +consumer +l2 +p2 +127\\.0\\.0\\.2 +(19[0-9]|200)s$" "$(sed -n 3p "$OUT")" "lease ls row 2"
expect_match "^$P3 +pre +l1b +p1 +::1 +([89][0-9]|100)s$" "$(sed -n 4p "$OUT")" "lease ls row 3"

expect_status 0 admin lease ls --json
expect_eq "[$P1,$P2,$P3]" "$(json -c '[.[].port]')" "lease ls --json ports, sorted"
expect_eq '["addr","created","kind","label","pod","port","ttl"]' "$(json -c '.[0] | keys')" "lease fields"
expect_eq "{\"port\":$P2,\"kind\":\"consumer\",\"label\":\"l2\",\"pod\":\"p2\",\"addr\":\"127.0.0.2\",\"created\":$NOW}" \
    "$(json -c '.[1] | del(.ttl)')" "lease ls --json entry"
TTL=$(json '.[1].ttl')
((TTL > 0 && TTL <= 200)) || fail "lease ttl $TTL not in 1..200"

# ---- lease rm: the key goes; a second rm is an error that changes nothing
expect_status 0 admin lease rm "$P2"
expect_eq "lease $P2 removed" "$(cat "$OUT")"
expect_eq 0 "$(rcli EXISTS "p2m:lease:$P2")" "lease key removed"
admin_fails -r "$P2" lease rm "$P2"
expect_status 0 admin lease ls --json
expect_eq "[$P1,$P3]" "$(json -c '[.[].port]')"

# the --json form of lease rm
p2m_lease -t "$NOW" "$P2" consumer l2 p2 127.0.0.2 200
expect_status 0 admin --json lease rm "$P2"
expect_eq "{\"ok\":true,\"port\":$P2}" "$(json -c .)"

# ---- pod rm ends that pod's leases and leaves the others
p2m_lease -t "$NOW" "$P2" consumer l2 p2 127.0.0.2 200
expect_status 0 admin pod rm p1
expect_eq 0 "$(rcli EXISTS "p2m:lease:$P1" "p2m:lease:$P3")" "pod rm removed the pod's leases"
expect_eq 1 "$(rcli EXISTS "p2m:lease:$P2")" "pod rm kept other pods' leases"
expect_status 0 admin lease ls
expect_eq 2 "$(wc -l <"$OUT")"
expect_match "^$P2 +consumer +l2 +p2 " "$(sed -n 2p "$OUT")"

# ---- an expired lease is gone from the list
p2m_lease -t "$NOW" 65535 pre l2 p2 127.0.0.1 1
expect_status 0 admin lease ls --json
expect_eq "[$P2,65535]" "$(json -c '[.[].port]')" "port 65535 listed"
ports_listed() { [[ $(admin lease ls --json | jq -c '[.[].port]') == "$1" ]]; }
p2m_wait_until "the expired lease is not listed" ports_listed "[$P2]"

# ---- taking a label ends the leases made for it; disabling a pod ends all of its leases
expect_status 0 admin label add p2 l2b
p2m_lease -t "$NOW" "$P1" pre l2b p2 127.0.0.1 300
p2m_lease -t "$NOW" "$P3" pre l2 p2 127.0.0.1 300
expect_status 0 admin label rm l2b
expect_eq 0 "$(rcli EXISTS "p2m:lease:$P1")" "label rm ended the label's lease"
expect_eq 2 "$(rcli EXISTS "p2m:lease:$P2" "p2m:lease:$P3")" "label rm kept other labels' leases"
expect_status 0 admin pod disable p2
expect_eq 0 "$(rcli EXISTS "p2m:lease:$P2" "p2m:lease:$P3")" "pod disable ended the pod's leases"
expect_status 0 admin lease ls
expect_eq 1 "$(wc -l <"$OUT")" "lease ls: header only"
