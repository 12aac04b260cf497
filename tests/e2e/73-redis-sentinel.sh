#!/usr/bin/env bash
# Redis behind Sentinel, with AUTH: a primary and one replica (both requirepass), three
# `redis-server --sentinel` on loopback ports. pipe2me-admin finds the primary through the
# Sentinels and WAITs for the replica; the relay and the registrar (lib/redis.c) follow a failover
# (SENTINEL FAILOVER, deterministic) to the new primary; a wrong password and an unconfirmed
# change are one-line errors. Every wait is for a condition, with a generous bound.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require redis-server redis-cli jq ss
p2m_require_built tools/pipe2me-admin relay/pipe2me-relay
P2M_WAIT_SECONDS=60 # how long p2m_wait_until waits (a failover takes seconds)
PW=$P2M_SENTINEL_PW

# ---------------------------------------------------------------- helpers (and lib.sh's rp, rs)

# rcli ARGS...: lib.sh's helpers (p2m_start_relay, p2m_redis_is) ask the current primary.
CUR_PRIMARY=
rcli() { rp "$CUR_PRIMARY" "$@"; }
info_has() { p2m_info_has "$@"; }
# sentinel_names S PORT: Sentinel S names 127.0.0.1:PORT as the primary.
sentinel_names() { [[ $(rs "$1" SENTINEL get-master-addr-by-name pipe2me | tr '\n' ' ') == "127.0.0.1 $2 " ]]; }
# sentinels_name PORT: every Sentinel names PORT, with no failover in progress (each has announced it).
sentinels_name() {
    local s
    for s in "$S1" "$S2" "$S3"; do
        sentinel_names "$s" "$1" || return 1
        [[ $(rs "$s" SENTINEL master pipe2me | sed -n '/^flags$/{n;p;}') == master ]] || return 1
    done
}
# p2m_redis_port_has PORT KEY: KEY exists on the server at PORT.
p2m_redis_port_has() { [[ $(rp "$1" EXISTS "$2") == 1 ]]; }
# sentinel_moved_from PORT: Sentinel 1 names a primary other than 127.0.0.1:PORT.
sentinel_moved_from() { p2m_sentinel_moved_from "$@"; }

# ---------------------------------------------------------------- setup

p2m_sentinel_setup
PRIMARY_PORT=${P2M_REDIS_PORT[a]} REPLICA_PORT=${P2M_REDIS_PORT[b]}
PRIMARY_PID=${P2M_REDIS_PID[a]} REPLICA_PID=${P2M_REDIS_PID[b]}
S1=${P2M_SENTINELS[0]} S2=${P2M_SENTINELS[1]} S3=${P2M_SENTINELS[2]}
CUR_PRIMARY=$PRIMARY_PORT

redis_json() { # redis_json PASSWORD_FILE [EXTRA_JSON]
    jq -n --arg pw "$1" --argjson extra "${2:-{\}}" --arg s1 "127.0.0.1:$S1" --arg s2 "127.0.0.1:$S2" --arg s3 "127.0.0.1:$S3" \
        '{redis: ({sentinels: [$s1, $s2, $s3], master: "pipe2me", password_file: $pw, wait_replicas: 1,
                   wait_timeout_ms: 5000} * $extra), relay: {name: "r1"}}'
}
P2M_REDIS_SOCK=$T/unused.sock p2m_write_config "$(redis_json "$T/redis.pw")"
expect_status 0 "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$P2M_CONFIG" --check-config

# ---------------------------------------------------------------- the sync store through the Sentinels, with WAIT

expect_status 0 admin pod add sp1 --label alpha
expect_eq 1 "$(rp "$PRIMARY_PORT" SISMEMBER p2m:pods sp1)" "the pod is on the primary"
# WAIT returned 1 ack: the replica has it already, no polling needed
expect_eq 1 "$(rp "$REPLICA_PORT" SISMEMBER p2m:pods sp1)" "the pod is on the replica after WAIT"
expect_status 0 admin pod ls

# A password file group may read is refused before anything connects; so is a wrong password.
cp "$T/redis.pw" "$T/loose.pw"
chmod 640 "$T/loose.pw"
redis_json "$T/loose.pw" >"$T/loose.json"
expect_status 2 "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$T/loose.json" pod ls
expect_match "redis.password_file: .*group or others may read it" "$(cat "$ERR")"
printf 'not-the-password\n' >"$T/wrong.pw"
chmod 600 "$T/wrong.pw"
redis_json "$T/wrong.pw" >"$T/wrong.json"
expect_status 2 "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$T/wrong.json" pod ls
expect_file_one_line "$ERR" '^pipe2me-admin: .*AUTH refused: WRONGPASS'
expect_no_match "not-the-password|$PW" "$(cat "$ERR")" "the error shows a password"
# A Sentinel that is gone (nothing listens on its port) is skipped: the next one answers.
p2m_free_port DEAD_SENTINEL
jq --arg d "127.0.0.1:$DEAD_SENTINEL" '.redis.sentinels = [$d] + .redis.sentinels' "$P2M_CONFIG" >"$T/dead-first.json"
expect_status 0 "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$T/dead-first.json" pod ls
expect_match sp1 "$(cat "$OUT")"
# A direct address with the right password works too (AUTH without Sentinels).
jq -n --arg a "127.0.0.1:$PRIMARY_PORT" --arg pw "$T/redis.pw" '{redis: {address: $a, password_file: $pw}}' >"$T/direct.json"
expect_status 0 "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$T/direct.json" pod ls
expect_match sp1 "$(cat "$OUT")"

# ---------------------------------------------------------------- the relay follows a failover

# A relay with the wrong password says so in one event and never comes up; it is stopped.
jq --arg pw "$T/wrong.pw" '.redis.password_file = $pw | .relay.name = "r2"' "$P2M_CONFIG" >"$T/wrong-relay.json"
p2m_bg relay-wrong "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$T/wrong-relay.json"
WRONG_PID=$P2M_BG_PID
p2m_wait_until "the relay with the wrong password logs redis_auth_failed" p2m_log_has relay-wrong "event=redis_auth_failed conn=cmd redis=127.0.0.1:$PRIMARY_PORT error=\"WRONGPASS"
expect_eq 0 "$(rp "$PRIMARY_PORT" EXISTS p2m:relay:r2)" "a relay without AUTH wrote its heartbeat"
p2m_stop relay-wrong "$WRONG_PID"
expect_no_match "not-the-password|$PW" "$(cat "$T"/relay-wrong.log)" "the relay log shows a password"

p2m_start_relay
p2m_start_registrar
p2m_wait_until "the registrar is healthy (Redis and the relay live)" p2m_registrar_healthy
expect_match "event=redis_primary redis=127.0.0.1:$PRIMARY_PORT master=pipe2me" "$(cat "$T/registrar.log")"
expect_match "event=redis_primary redis=127.0.0.1:$PRIMARY_PORT master=pipe2me" "$(cat "$T/relay.log")"
subscribed=$(p2m_log_count relay event=redis_subscribed)
expect_eq OK "$(rs "$S1" SENTINEL FAILOVER pipe2me)" "SENTINEL FAILOVER"
for s in "$S1" "$S2" "$S3"; do
    p2m_wait_until "sentinel $s names the replica as the primary" sentinel_names "$s" "$REPLICA_PORT"
done
CUR_PRIMARY=$REPLICA_PORT
p2m_wait_until "the relay logs the failover" p2m_log_has relay "event=redis_failover master=pipe2me old=127.0.0.1:$PRIMARY_PORT new=127.0.0.1:$REPLICA_PORT"
p2m_wait_until "the relay subscribes again" p2m_log_count_above relay event=redis_subscribed "$subscribed"
p2m_wait_until "the relay names the new primary" p2m_log_has relay "event=redis_primary redis=127.0.0.1:$REPLICA_PORT"
p2m_wait_until "the registrar logs the failover" p2m_log_has registrar "event=redis_failover master=pipe2me old=127.0.0.1:$PRIMARY_PORT new=127.0.0.1:$REPLICA_PORT"
p2m_wait_until "the registrar names the new primary" p2m_log_has registrar "event=redis_primary redis=127.0.0.1:$REPLICA_PORT"
# Its heartbeat goes to the new primary: deleted there, it comes back.
expect_eq 1 "$(rp "$REPLICA_PORT" DEL p2m:relay:r1)" "the heartbeat was on the new primary"
p2m_wait_until "the relay's heartbeat reaches the new primary" p2m_redis_port_has "$REPLICA_PORT" p2m:relay:r1
p2m_wait_until "the registrar is healthy on the new primary" p2m_registrar_healthy

# ---------------------------------------------------------------- admin after the failover; WAIT unconfirmed

p2m_wait_until "the old primary replicates the new one" info_has "$PRIMARY_PORT" "master_port:$REPLICA_PORT.*master_link_status:up"
expect_status 0 admin pod add sp2 --label beta
expect_eq 1 "$(rp "$REPLICA_PORT" SISMEMBER p2m:pods sp2)" "the pod is on the new primary"
expect_eq 1 "$(rp "$PRIMARY_PORT" SISMEMBER p2m:pods sp2)" "the pod is on the new replica after WAIT"

# ---------------------------------------------------------------- kill -9 of the primary

# A third server replicates the new primary, so that two replicas remain to elect from.
p2m_free_port THIRD_PORT
p2m_redis_server third "$THIRD_PORT" "$REPLICA_PORT"
THIRD_PID=$P2M_BG_PID
p2m_wait_until "the third server is in sync" info_has "$THIRD_PORT" master_link_status:up
for s in "$S1" "$S2" "$S3"; do
    p2m_wait_until "sentinel $s sees two replicas" p2m_sentinel_ready "$s" 2
done
kill -KILL "$REPLICA_PID"
p2m_kill "$REPLICA_PID" # reaps it
p2m_wait_until "the sentinels elect a primary other than the killed one" sentinel_moved_from "$REPLICA_PORT"
NEW_PORT=$(rs "$S1" SENTINEL get-master-addr-by-name pipe2me | sed -n 2p)
CUR_PRIMARY=$NEW_PORT
if [[ $NEW_PORT == "$THIRD_PORT" ]]; then
    OTHER_PORT=$PRIMARY_PORT OTHER_PID=$PRIMARY_PID
else
    OTHER_PORT=$THIRD_PORT OTHER_PID=$THIRD_PID
fi
p2m_wait_until "the relay finds the elected primary" p2m_log_has relay "event=redis_primary redis=127.0.0.1:$NEW_PORT"
p2m_wait_until "the registrar finds the elected primary" p2m_log_has registrar "event=redis_primary redis=127.0.0.1:$NEW_PORT"
p2m_wait_until "the registrar is healthy on the elected primary" p2m_registrar_healthy
p2m_wait_until "the other server replicates the elected primary" info_has "$OTHER_PORT" "master_port:$NEW_PORT.*master_link_status:up"
expect_status 0 admin pod add sp4 --label delta
expect_eq 1 "$(rp "$NEW_PORT" SISMEMBER p2m:pods sp4)" "the pod is on the elected primary"
expect_eq 1 "$(rp "$OTHER_PORT" SISMEMBER p2m:pods sp4)" "the pod is on its replica after WAIT"
for pod in sp1 sp2; do
    expect_eq 1 "$(rp "$NEW_PORT" SISMEMBER p2m:pods "$pod")" "pod $pod, acknowledged after WAIT, survived both failovers"
done

# ---------------------------------------------------------------- -READONLY: a primary demoted behind their back

# The primary turned into a replica (of a port where nothing listens) without a failover the
# Sentinels announce: the relay's next write gets -READONLY (or, when its connections happened to
# be made again just then, ROLE refuses the server first), it drops its connections and asks the
# Sentinels again, which still name that server, now refused by its ROLE; made a primary again, it
# is taken back. Nothing in between is written anywhere. A Sentinel's late +switch-master for the
# primary the relay is on already must not make it reconnect (reconnect=no).
p2m_wait_until "every Sentinel names the elected primary" sentinels_name "$NEW_PORT"
if p2m_log_has relay "event=redis_failover master=pipe2me old=[^ ]* new=127.0.0.1:$NEW_PORT reconnect=no"; then
    echo "sentinel: a late +switch-master for the primary the relay was on: reconnect=no"
fi
# lines_after NAME N REGEX: a line after the first N of $T/NAME.log matches REGEX.
lines_after() { tail -n +$(($2 + 1)) "$T/$1.log" | grep -q -- "$3"; }
SEEN=$(wc -l <"$T/relay.log")
p2m_free_port NOWHERE
expect_eq OK "$(rp "$NEW_PORT" REPLICAOF 127.0.0.1 "$NOWHERE")" "REPLICAOF on the primary"
p2m_wait_until "the relay stops writing to the demoted server" lines_after relay "$SEEN" \
    "event=redis_\(readonly\|not_primary conn=[a-z]*\) redis=127.0.0.1:$NEW_PORT"
p2m_wait_until "the relay refuses the demoted server by its ROLE" lines_after relay "$SEEN" "event=redis_not_primary"
expect_eq OK "$(rp "$NEW_PORT" REPLICAOF NO ONE)" "REPLICAOF NO ONE"
expect_eq 1 "$(rp "$NEW_PORT" DEL p2m:relay:r1)" "the relay's heartbeat was there"
p2m_wait_until "the relay writes its heartbeat on the primary again" p2m_redis_port_has "$NEW_PORT" p2m:relay:r1
p2m_wait_until "the registrar is healthy again" p2m_registrar_healthy

# ---------------------------------------------------------------- WAIT unconfirmed

# With the only replica stopped, WAIT gets no acknowledgement: status 3, one line, the change stands.
p2m_kill "$OTHER_PID"
redis_json "$T/redis.pw" '{"wait_timeout_ms": 200}' >"$T/short.json"
expect_status 3 "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$T/short.json" pod add sp3 --label gamma
expect_file_one_line "$ERR" '^pipe2me-admin: .*the change is on the primary but not confirmed by 1 replicas'
expect_eq 1 "$(rp "$NEW_PORT" SISMEMBER p2m:pods sp3)" "the unconfirmed change is on the primary"
# Reads do not WAIT.
expect_status 0 "$P2M_BUILD_DIR/tools/pipe2me-admin" -c "$T/short.json" pod ls

p2m_stop relay "$RELAY_PID"
p2m_stop registrar "$REGISTRAR_PID"
expect_no_match "$PW" "$(cat "$T"/relay.log "$T"/registrar.log)" "a log shows the password"
