#!/usr/bin/env bash
# pipe2me-admin check (docs/OPERATIONS.md, Checking a deployment): on a clean stack (redis, the
# registrar, relay r1) every finding is ok, the exit status is 0 and --json says "ok": true. Then
# one fault at a time, each found by its check's name with exit status 1 and put right again, after
# which the stack is clean again: a broken config file, a wrong schema version, an unset one (which
# check does not write, unlike the other commands), Redis stopped, a second relay whose range
# overlaps r1's, a config whose relay.ports lie in this host's ephemeral range, the CA key made
# world-readable, a relay killed without leaving (its heartbeat expires while it stays listed), and
# a registrar.names entry the registrar's certificate lacks. Usage errors exit 2.
# shellcheck disable=SC2016,SC2119 # jq expands its own $n; p2m_start_system and p2m_start_redis take optional arguments
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require jq
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay tools/pipe2me-admin
P2M_WAIT_SECONDS=40 # Redis restarts and relay heartbeats (15-s TTL) take seconds
NAMES=(config redis schema relays relay_ports ephemeral_ports ca cert clock clock_skew)
EPH_FILE=/proc/sys/net/ipv4/ip_local_port_range
RES_FILE=/proc/sys/net/ipv4/ip_local_reserved_ports

# check_passes: `admin check` exits 0 (its output in $OUT and $ERR): a predicate for p2m_wait_until,
# since a stack just restarted needs a moment (a relay's heartbeat after Redis came back).
check_passes() { admin check >"$OUT" 2>"$ERR"; }

# expect_clean WHAT: check becomes clean: exit 0, nothing on stderr, one line per check, every one
# `check=NAME status=ok detail="..."` (ephemeral_ports may be skip where the /proc files cannot be
# read), kept in $CLEAN; --json parses and says ok with every finding ok.
CLEAN=$T/clean.txt
expect_clean() {
    local name line
    p2m_wait_until "check is clean ($1)" check_passes
    expect_empty "$ERR"
    cp "$OUT" "$CLEAN"
    while IFS= read -r line; do
        if [[ ! -r $EPH_FILE && $line == 'check=ephemeral_ports status=skip '* ]]; then
            continue
        fi
        expect_match '^check=[a-z_]+ status=ok detail="[^"]*"$' "$line" "check line ($1)"
    done <"$OUT"
    for name in "${NAMES[@]}"; do
        grep -q "^check=$name status=" "$OUT" || fail "check $name is not reported ($1):"$'\n'"$(cat "$OUT")"
        p2m_ok
    done
    expect_status 0 admin check --json
    json '.ok == true' >/dev/null
    json --argjson n "${#NAMES[@]}" '[.findings[].name] | unique | length == $n' >/dev/null
    json '[.findings[] | select(.status != "ok" and .name != "ephemeral_ports")] | length == 0' >/dev/null
    json 'all(.findings[]; (.name | type) == "string" and (.status | type) == "string" and (.detail | type) == "string")' >/dev/null
}

# expect_finding [-c FILE] NAME STATUS REGEX: check (with config FILE when given) exits 1, nothing on
# stderr, with a line `check=NAME status=STATUS detail="..."` whose detail matches the extended
# REGEX (the text kept in $FOUND); --json says "ok": false and holds that finding.
FOUND=$T/found.txt
expect_finding() {
    local cfg=$P2M_CONFIG got
    if [[ $1 == -c ]]; then
        cfg=$2
        shift 2
    fi
    P2M_CONFIG=$cfg expect_status 1 admin check
    expect_empty "$ERR"
    got=$(grep -- "^check=$1 status=$2 " "$OUT" || true)
    [[ -n $got ]] || fail "no line check=$1 status=$2 in:"$'\n'"$(cat "$OUT")"
    expect_match "detail=\"[^\"]*$3" "$got" "check $1: detail"
    cp "$OUT" "$FOUND"
    echo "check: found: $got"
    P2M_CONFIG=$cfg expect_status 1 admin check --json
    json '.ok == false' >/dev/null
    json --arg n "$1" --arg s "$2" --arg re "$3" 'any(.findings[]; .name == $n and .status == $s and (.detail | test($re)))' \
        >/dev/null
}

# ---------------------------------------------------------------- a clean stack

p2m_start_system
expect_clean "the system as started"
expect_match '^check=relays status=ok detail="relay r1: live ' "$(grep '^check=relays ' "$CLEAN")"
echo "check: clean:"
sed 's/^/    /' "$CLEAN"

# Usage errors: exit 2, one line on stderr, nothing changed.
admin_fails -r 'check: too many arguments \(usage: pipe2me-admin check\)$' check now
admin_fails -r 'check: option --label does not apply$' check --label x
admin_fails -r 'check: option --output does not apply$' check -o "$T/out"
admin_fails -r 'check: option --digits does not apply$' check --digits 6
expect_status 0 admin --help
expect_match $'\n  check  ' "$(cat "$OUT")" "--help lists check"
expect_match 'check exits with 0 when every finding is ok or skip, 1 when one is' "$(cat "$OUT")" "--help: check's exit status"

# ---------------------------------------------------------------- (1) a broken config file

head -c 40 "$P2M_CONFIG" >"$T/broken.json"
expect_finding -c "$T/broken.json" config fail 'broken\.json: invalid JSON at line [0-9]+ column [0-9]+'
expect_match '^check=redis status=skip detail="the configuration did not load"$' "$(grep '^check=redis ' "$FOUND" || true)"
jq '.relay.prots = "1-2"' "$P2M_CONFIG" >"$T/unknown.json"
expect_finding -c "$T/unknown.json" config fail 'unknown\.json: relay\.prots: unknown key'
# the same file through $P2M_CONFIG, without -c
expect_status 1 env P2M_CONFIG="$T/unknown.json" "$P2M_BUILD_DIR/tools/pipe2me-admin" check
expect_match '^check=config status=fail detail=".*relay\.prots: unknown key"$' "$(grep '^check=config ' "$OUT")"
expect_clean "the config file as it was"

# ---------------------------------------------------------------- (2) the schema, and Redis stopped

rcli SET p2m:schema 2 >/dev/null
expect_finding schema fail 'p2m:schema is 2, this build knows 1'
rcli SET p2m:schema 1 >/dev/null
expect_clean "schema 1 again"

# An unset version is a warning, and check leaves it unset (the other commands write it).
rcli DEL p2m:schema >/dev/null
expect_finding schema warn 'p2m:schema is not set'
expect_eq 0 "$(rcli EXISTS p2m:schema)" "check wrote no schema version"
rcli SET p2m:schema 1 >/dev/null
expect_clean "schema set again"

p2m_stop_redis
expect_finding redis fail "redis unix:$T/redis\.sock: "
for name in schema relays relay_ports ephemeral_ports clock_skew; do
    expect_match "^check=$name status=skip detail=\"Redis is unreachable\"$" "$(grep "^check=$name " "$FOUND")"
done
expect_match '^check=ca status=ok ' "$(grep '^check=ca ' "$FOUND")" "the files are checked without Redis"
p2m_start_redis
expect_clean "Redis back"

# ---------------------------------------------------------------- (3) overlapping relay ranges

jq --arg p "$((P2M_RELAY_PORT_LO + 4))-$((P2M_RELAY_PORT_HI + 4))" '.relay.name = "stray" | .relay.ports = $p' \
    "$P2M_CONFIG" >"$T/stray.json"
p2m_start_relay "$T/stray.json" stray
STRAY_PID=$RELAY_PID
R1="$P2M_RELAY_PORT_LO-$P2M_RELAY_PORT_HI" OVERLAP="$((P2M_RELAY_PORT_LO + 4))-$P2M_RELAY_PORT_HI"
expect_finding relay_ports fail "relay r1 \($R1\) and relay stray \([0-9]+-[0-9]+\) overlap at $OVERLAP:"
p2m_stop stray "$STRAY_PID"
expect_clean "the stray relay stopped"

# A config whose relay.ports lie in this host's ephemeral range, unreserved: a warning with the
# sysctl that reserves them. (Where the files cannot be read, or that range is all reserved, there
# is nothing to see.)
if [[ -r $EPH_FILE && -r $RES_FILE ]]; then
    read -r EPH_LO EPH_HI <"$EPH_FILE"
    LO=$(((EPH_LO + EPH_HI) / 2 - 8)) HI=$(((EPH_LO + EPH_HI) / 2 + 7))
    jq --arg p "$LO-$HI" '.relay.name = "eph" | .relay.ports = $p' "$P2M_CONFIG" >"$T/eph.json"
    P2M_CONFIG=$T/eph.json admin check >"$OUT" 2>"$ERR" || true
    if grep -q '^check=ephemeral_ports status=warn ' "$OUT"; then
        expect_finding -c "$T/eph.json" ephemeral_ports warn \
            "relay\.ports of $T/eph\.json \($LO-$HI\): [0-9]+ ports .* sysctl -w net\.ipv4\.ip_local_reserved_ports="
    else
        echo "check: $LO-$HI is reserved on this host; no ephemeral warning to see"
    fi
fi

# ---------------------------------------------------------------- (4) a world-readable CA key

chmod 644 "$T/state/ca-key.pem"
expect_finding ca fail "CA key $T/state/ca-key\.pem is mode 0644, readable by group or others .*: chmod 600 $T/state/ca-key\.pem"
chmod 600 "$T/state/ca-key.pem"
expect_clean "the CA key private again"

# ---------------------------------------------------------------- (5) a relay killed without leaving

p2m_free_port_range R2_LO R2_HI 8
jq --arg p "$R2_LO-$R2_HI" '.relay.name = "r2" | .relay.ports = $p' "$P2M_CONFIG" >"$T/r2.json"
p2m_start_relay "$T/r2.json" r2
R2_PID=$RELAY_PID
expect_clean "two relays"
expect_eq 2 "$(grep -c '^check=relays status=ok ' "$CLEAN")" "a relays line per relay"
kill -KILL "$R2_PID"
p2m_reap "relay r2" "$R2_PID"
p2m_wait_until "r2's heartbeat expires" p2m_redis_is 0 EXISTS p2m:relay:r2
expect_eq 1 "$(rcli SISMEMBER p2m:relays r2)" "r2 is still listed"
expect_finding relays fail 'relay r2: listed in p2m:relays but its heartbeat is gone'
expect_match '^check=relays status=ok detail="relay r1: ' "$(grep '^check=relays status=ok' "$FOUND")" "r1 is still fine"
p2m_start_relay "$T/r2.json" r2
R2_PID=$RELAY_PID
expect_clean "r2 back"
p2m_stop r2 "$R2_PID"
expect_clean "r2 stopped as it should"
expect_eq 1 "$(grep -c '^check=relays ' "$CLEAN")" "r2 left p2m:relays"

# ---------------------------------------------------------------- (6) a name the certificate lacks

# registrar.names gains a name, and the registrar has not been restarted to reissue its certificate.
jq '.registrar.names = ["registrar.example.org"]' "$P2M_CONFIG" >"$T/names.json"
expect_finding -c "$T/names.json" cert fail \
    "the registrar's certificate $T/state/registrar\.pem lacks registrar\.example\.org, .*restart the registrar"
expect_clean "the config the registrar runs with"

expect_log_clean registrar
expect_log_clean relay
