#!/usr/bin/env bash
# pipe2me-relay --workers N: N ordinary relays named NAME-I over slices of relay.ports, under a
# supervisor that restarts a worker that dies and stops them all on SIGTERM.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require ss
p2m_require_built relay/pipe2me-relay
RELAY_BIN=$P2M_BUILD_DIR/relay/pipe2me-relay
P2M_WAIT_SECONDS=15 # how long p2m_wait_until waits

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
p2m_wait_until "worker 0 heartbeats" p2m_redis_is 1 EXISTS p2m:relay:w-0
p2m_wait_until "worker 1 heartbeats" p2m_redis_is 1 EXISTS p2m:relay:w-1
expect_eq "$LO-$((LO + 3))" "$(rcli HGET p2m:relay:w-0 ports)" "worker 0's slice"
expect_eq "$((LO + 4))-$HI" "$(rcli HGET p2m:relay:w-1 ports)" "worker 1's slice"
expect_eq "" "$(rcli SMEMBERS p2m:relays | grep -x w || true)" "no relay under the bare name"

# A lease on worker 1 is bound by worker 1.
P=$((LO + 5))
rcli HSET "p2m:lease:$P" kind pre label web pod pod1 addr 127.0.0.1 relay w-1 created "$(date +%s)" state pending >/dev/null
rcli EXPIRE "p2m:lease:$P" 60 >/dev/null
rcli PUBLISH p2m:relay:w-1 "lease $P" >/dev/null
p2m_wait_until "worker 1 binds the lease" p2m_redis_is bound HGET "p2m:lease:$P" state
p2m_wait_until "port $P listens" p2m_listening "$P"

# Worker 1 dies: the supervisor starts it again, and the new process binds the lease again.
W1=$(worker_pid 1)
[[ -n $W1 && $(awk '{print $4}' "/proc/$W1/stat") == "$SUP" ]] || fail "worker 1 ($W1) is not a child of the supervisor"
p2m_ok
kill -KILL "$W1"
p2m_wait_until "the supervisor notices" p2m_log_has relay "event=worker_exit worker=1 pid=$W1 signal=9"
p2m_wait_until "worker 1 is restarted" eval '(( $(p2m_log_count relay "event=worker_start worker=1 ") == 2 ))'
p2m_wait_until "the new worker 1 listens on its lease again" p2m_listening "$P"
[[ $(worker_pid 1) != "$W1" ]] || fail "worker 1 kept its pid"
p2m_ok

# SIGTERM stops everything cleanly.
p2m_stop supervisor "$SUP"
expect_eq 0 "$(rcli EXISTS p2m:relay:w-0 p2m:relay:w-1)" "both heartbeats removed"
expect_eq 2 "$(p2m_log_count relay 'event=relay_stop name=w-[01] status=0')" "both workers stopped cleanly"
p2m_log_has relay "event=workers_stop status=0" || fail "no workers_stop status=0"
p2m_ok
