#!/usr/bin/env bash
# pipe2me-relay warns when relay.ports has ports in the kernel's ephemeral range
# (net.ipv4.ip_local_port_range) that net.ipv4.ip_local_reserved_ports does not reserve: outgoing
# connections on the host may take them before a lease does. --check-config prints one line
# `pipe2me-relay: warning: ...` on stderr and still exits 0; a running relay (with --workers too)
# logs one event=port_range_ephemeral. A range outside draws neither.
#
# The relay listens only on leased ports and nothing here leases one, so a relay.ports inside the
# ephemeral range binds nothing. The sysctls are read, never written.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require_built relay/pipe2me-relay
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay
P2M_WAIT_SECONDS=15 # how long p2m_wait_until waits
EPH_FILE=/proc/sys/net/ipv4/ip_local_port_range
RES_FILE=/proc/sys/net/ipv4/ip_local_reserved_ports

[[ -r $EPH_FILE && -r $RES_FILE ]] || fail "this test needs $EPH_FILE and $RES_FILE"
read -r EPH_LO EPH_HI <"$EPH_FILE"
RESERVED=$(cat "$RES_FILE")
[[ $EPH_LO =~ ^[0-9]+$ && $EPH_HI =~ ^[0-9]+$ ]] || fail "$EPH_FILE: $(p2m_show "$EPH_LO $EPH_HI")"

# unreserved LO HI [LIST]: prints how many of LO..HI the reserved-ports LIST (default: this host's
# ip_local_reserved_ports) leaves out.
unreserved() {
    local lo=$1 hi=$2 item a b p items
    local -A res=()
    IFS=, read -r -a items <<<"${3-$RESERVED}"
    for item in "${items[@]}"; do
        [[ $item =~ ^([0-9]+)(-([0-9]+))?$ ]] || continue
        a=${BASH_REMATCH[1]} b=${BASH_REMATCH[3]:-${BASH_REMATCH[1]}}
        a=$((a < lo ? lo : a)) b=$((b > hi ? hi : b))
        for ((p = a; p <= b; p++)); do res[$p]=1; done
    done
    echo $((hi - lo + 1 - ${#res[@]}))
}

# relay_run NAME LOG ARGS...: starts the relay with ARGS on $P2M_CONFIG, waits until every worker
# heartbeats (NAME, or NAME-0 and NAME-1 with --workers 2) and stops it.
relay_run() {
    local name=$1 log=$2 pid
    shift 2
    p2m_bg "$log" "$RELAY_BIN" -c "$P2M_CONFIG" "$@"
    pid=$P2M_BG_PID
    if [[ $* == *--workers* ]]; then
        p2m_wait_until "worker 0 heartbeats" p2m_redis_is 1 EXISTS "p2m:relay:$name-0"
        p2m_wait_until "worker 1 heartbeats" p2m_redis_is 1 EXISTS "p2m:relay:$name-1"
    else
        p2m_wait_until "the relay heartbeats" p2m_redis_is 1 EXISTS "p2m:relay:$name"
    fi
    p2m_stop "$log" "$pid"
}

p2m_start_redis

# ---------------------------------------------------------------- (a) a range inside the ephemeral range

# 16 ports in the middle of the ephemeral range, not all of them reserved.
LO=$(((EPH_LO + EPH_HI) / 2 - 8)) HI=$(((EPH_LO + EPH_HI) / 2 + 7))
((LO >= EPH_LO && HI <= EPH_HI)) || fail "the ephemeral range $EPH_LO-$EPH_HI is too small for 16 ports"
AT_RISK=$(unreserved "$LO" "$HI")
((AT_RISK > 0)) || fail "ip_local_reserved_ports reserves all of $LO-$HI: nothing to warn about here"
p2m_write_config "{\"relay\": {\"name\": \"in\", \"ports\": \"$LO-$HI\"}}"

WANT="ports=$LO-$HI ephemeral=$EPH_LO-$EPH_HI overlap=$LO-$HI at_risk=$AT_RISK fix=\"sysctl -w net.ipv4.ip_local_reserved_ports=[0-9,-]+\""
expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --check-config
expect_match "configuration ok \\(relay in, ports $LO-$HI" "$(cat "$OUT")"
expect_file_one_line "$ERR" "^pipe2me-relay: warning: relay.ports overlaps the kernel's ephemeral ports \\(net\\.ipv4\\.ip_local_port_range\\).* net\\.ipv4\\.ip_local_reserved_ports: $WANT\$"
# The suggested list keeps what is reserved today and adds the overlap.
[[ $(cat "$ERR") =~ ip_local_reserved_ports=([0-9,-]+)\"$ ]] || fail "no fix in $(p2m_show "$(cat "$ERR")")"
FIX=${BASH_REMATCH[1]}
[[ -n $RESERVED ]] || expect_eq "$LO-$HI" "$FIX" "the sysctl value with nothing reserved before"
expect_eq 0 "$(unreserved "$LO" "$HI" "$FIX")" "ports of $LO-$HI the suggested list $FIX leaves out"

# Once with --workers too: the warning is about relay.ports, before it is split.
expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --check-config --workers 2
expect_file_one_line "$ERR" "^pipe2me-relay: warning: .* $WANT\$"

# A running relay logs it once, at level warn.
relay_run in relay-in
expect_eq 1 "$(p2m_log_count relay-in 'event=port_range_ephemeral')" "port_range_ephemeral lines"
expect_match "level=warn event=port_range_ephemeral $WANT\$" "$(grep -- event=port_range_ephemeral "$T/relay-in.log")"
expect_log_clean relay-in

relay_run in relay-in-workers --workers 2
expect_eq 1 "$(p2m_log_count relay-in-workers 'event=port_range_ephemeral')" "port_range_ephemeral lines with --workers 2"
expect_eq 2 "$(p2m_log_count relay-in-workers 'event=relay_stop name=in-[01] status=0')" "both workers ran and stopped"
expect_log_clean relay-in-workers

# Half in, half out (when there is room below the ephemeral range): the overlap is the upper half.
if ((EPH_LO > 1024 + 8)); then
    LO2=$((EPH_LO - 8)) HI2=$((EPH_LO + 7))
    p2m_write_config "{\"relay\": {\"name\": \"half\", \"ports\": \"$LO2-$HI2\"}}"
    expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --check-config
    if (($(unreserved "$EPH_LO" "$HI2") > 0)); then
        expect_file_one_line "$ERR" "^pipe2me-relay: warning: .* ports=$LO2-$HI2 ephemeral=$EPH_LO-$EPH_HI overlap=$EPH_LO-$HI2 at_risk=$(unreserved "$EPH_LO" "$HI2") "
    else
        expect_empty "$ERR"
    fi
fi

# ---------------------------------------------------------------- (b) a range outside

# lib.sh picks its ports outside the ephemeral range: a plain config draws no warning.
p2m_write_config '{"relay": {"name": "out"}}'
((P2M_RELAY_PORT_HI < EPH_LO || P2M_RELAY_PORT_LO > EPH_HI)) ||
    fail "lib.sh picked $P2M_RELAY_PORT_LO-$P2M_RELAY_PORT_HI, inside ip_local_port_range $EPH_LO-$EPH_HI"
p2m_ok
expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --check-config
expect_match "configuration ok" "$(cat "$OUT")"
expect_empty "$ERR"
expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --check-config --workers 2
expect_empty "$ERR"
relay_run out relay-out
expect_eq 0 "$(p2m_log_count relay-out 'port_range_ephemeral')" "port_range_ephemeral lines for a range outside"
expect_log_clean relay-out

# A range right next to the ephemeral range, on either side, is outside too.
for range in "$((EPH_LO - 16))-$((EPH_LO - 1))" "$((EPH_HI + 1))-$((EPH_HI + 16))"; do
    [[ $range =~ ^([0-9]+)-([0-9]+)$ ]] && ((BASH_REMATCH[1] >= 1 && BASH_REMATCH[2] <= 65535)) || continue
    p2m_write_config "{\"relay\": {\"name\": \"edge\", \"ports\": \"$range\"}}"
    expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --check-config
    expect_empty "$ERR"
done

# Reserved ports inside the ephemeral range draw no warning (only where this host reserves some:
# the test never writes the sysctl).
if [[ $RESERVED =~ (^|,)([0-9]+)(-([0-9]+))?($|,) ]]; then
    RLO=${BASH_REMATCH[2]} RHI=${BASH_REMATCH[4]:-${BASH_REMATCH[2]}}
    if ((RLO >= EPH_LO && RHI <= EPH_HI)); then
        p2m_write_config "{\"relay\": {\"name\": \"reserved\", \"ports\": \"$RLO-$RHI\"}}"
        expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --check-config
        expect_empty "$ERR"
    fi
fi
