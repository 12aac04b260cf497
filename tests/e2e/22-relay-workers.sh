#!/usr/bin/env bash
# pipe2me-relay --workers N: N ordinary relays named NAME-I over slices of relay.ports, under a
# supervisor that restarts a worker that dies and stops them all on SIGTERM.
. "$(dirname -- "$0")/lib.sh"

p2m_require ss
p2m_require_built relay/pipe2me-relay
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay

wait_until() {
    local desc=$1 i
    shift
    for ((i = 0; i < 150; i++)); do
        "$@" 2>/dev/null && {
            p2m_ok
            return 0
        }
        sleep 0.1
    done
    fail "timed out waiting until $desc"
}
redis_is() { [[ $(rcli "${@:2}") == "$1" ]]; }
listening() { [[ -n $(ss -Htln "( sport = :$1 )") ]]; }
log_count() { grep -c -- "$1" "$T/relay.log" || true; }
worker_pid() { sed -n "s/.*event=worker_start worker=$1 pid=\([0-9]*\) .*/\1/p" "$T/relay.log" | tail -n 1; }

p2m_start_redis
p2m_write_config '{"relay": {"name": "w"}}'
LO=$P2M_RELAY_PORT_LO HI=$P2M_RELAY_PORT_HI # 8 ports

expect_status 0 "$RELAY_BIN" -c "$P2M_CONFIG" --workers 2 --check-config
expect_status 2 "$RELAY_BIN" -c "$P2M_CONFIG" --workers 9 --check-config
expect_match 'cannot be split over 9 workers' "$(cat "$ERR")"
expect_status 2 "$RELAY_BIN" -c "$P2M_CONFIG" --workers 0 --check-config

p2m_bg relay "$RELAY_BIN" -c "$P2M_CONFIG" --workers 2
SUP=$P2M_BG_PID
wait_until "worker 0 heartbeats" redis_is 1 EXISTS p2m:relay:w-0
wait_until "worker 1 heartbeats" redis_is 1 EXISTS p2m:relay:w-1
expect_eq "$LO-$((LO + 3))" "$(rcli HGET p2m:relay:w-0 ports)" "worker 0's slice"
expect_eq "$((LO + 4))-$HI" "$(rcli HGET p2m:relay:w-1 ports)" "worker 1's slice"
expect_eq "" "$(rcli SMEMBERS p2m:relays | grep -x w || true)" "no relay under the bare name"

# A lease on worker 1 is bound by worker 1.
P=$((LO + 5))
rcli HSET "p2m:lease:$P" kind pre label web pod pod1 addr 127.0.0.1 relay w-1 created "$(date +%s)" state pending >/dev/null
rcli EXPIRE "p2m:lease:$P" 60 >/dev/null
rcli PUBLISH p2m:relay:w-1 "lease $P" >/dev/null
wait_until "worker 1 binds the lease" redis_is bound HGET "p2m:lease:$P" state
wait_until "port $P listens" listening "$P"

# Worker 1 dies: the supervisor starts it again, and the new process binds the lease again.
W1=$(worker_pid 1)
[[ -n $W1 && $(awk '{print $4}' "/proc/$W1/stat") == "$SUP" ]] || fail "worker 1 ($W1) is not a child of the supervisor"
p2m_ok
kill -KILL "$W1"
wait_until "the supervisor notices" grep -q "event=worker_exit worker=1 pid=$W1 signal=9" "$T/relay.log"
wait_until "worker 1 is restarted" eval '(( $(log_count "event=worker_start worker=1 ") == 2 ))'
wait_until "the new worker 1 listens on its lease again" listening "$P"
[[ $(worker_pid 1) != "$W1" ]] || fail "worker 1 kept its pid"
p2m_ok

# SIGTERM stops everything cleanly.
kill -TERM "$SUP"
wait_until "the supervisor exits" eval '! p2m_alive $SUP'
rc=0
wait "$SUP" || rc=$?
p2m_forget "$SUP"
expect_eq 0 "$rc" "supervisor exit status"
expect_eq 0 "$(rcli EXISTS p2m:relay:w-0 p2m:relay:w-1)" "both heartbeats removed"
expect_eq 2 "$(log_count 'event=relay_stop name=w-[01] status=0')" "both workers stopped cleanly"
grep -q "event=workers_stop status=0" "$T/relay.log" || fail "no workers_stop status=0"
p2m_ok
