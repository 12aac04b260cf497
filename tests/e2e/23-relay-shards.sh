#!/usr/bin/env bash
# Several relays (pipe2me-relay --workers 2, i.e. two relays w-0 and w-1 sharing one Redis): each
# service's pre-connections all go to one relay, its home by rendezvous hashing (PROTOCOL 3.2), so
# the consumer port the registrar leases on the relay holding them finds them there. Before, they
# were spread at random and consumers of one 307 waited on one worker while the pool sat on the
# other (wait_timeout). Checked with a real registrar, the relay supervisor, a pod (--pool 16) per
# label for 4 labels, and p2m-load: 300 consumers of each label through its 307, every byte echoed
# and checked, all served; each label's idle pre-connections are on one worker.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq ss
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
LOAD=$P2M_BUILD_DIR/tests/tools/p2m-load
[[ -x $LOAD ]] || fail "$LOAD is missing"
POOL=16
LABELS=(alpha bravo charlie delta)

p2m_start_redis
p2m_free_port_range PORT_LO PORT_HI 200
p2m_write_config "{\"relay\": {\"name\": \"w\", \"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 10},
    \"registrar\": {\"consumer_ttl\": 600}}"
p2m_bg relay "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$P2M_CONFIG" --workers 2
p2m_wait_until "worker 0 heartbeats" p2m_redis_is 1 EXISTS p2m:relay:w-0
p2m_wait_until "worker 1 heartbeats" p2m_redis_is 1 EXISTS p2m:relay:w-1
p2m_bg registrar "$P2M_BUILD_DIR/registrar/pipe2me-registrar" -c "$P2M_CONFIG"
p2m_wait_until "the registrar wrote its CA" test -s "$T/state/ca.pem"
p2m_wait_until "the registrar sees the relays" p2m_registrar_healthy

p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-tcp "$ECHO_TCP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_TCP"

# idle_on LABEL: "N0 N1", the label's idle pre-connections on worker 0 and worker 1.
idle_on() {
    local a b
    a=$(rcli HGET p2m:idle:w-0 "$1")
    b=$(rcli HGET p2m:idle:w-1 "$1")
    echo "${a:-0} ${b:-0}"
}
one_home() { [[ $(idle_on "$1") == "$POOL 0" || $(idle_on "$1") == "0 $POOL" ]]; }

for l in "${LABELS[@]}"; do
    admin pod add "pod-$l" --label "$l" -o "$T/pod-$l.json" >/dev/null 2>&1
    mkdir -m 700 "$T/pod-$l"
    p2m_bg "pod-$l" "$POD_BIN" register --provision "$T/pod-$l.json" --forward "127.0.0.1:$ECHO_TCP" --pool "$POOL" \
        --cacert "$T/state/ca.pem" --state-dir "$T/pod-$l"
done
homes=""
for l in "${LABELS[@]}"; do
    p2m_wait_until "$l's $POOL idle pre-connections are all on one worker" one_home "$l"
    homes+="$l=$(idle_on "$l" | awk '{print ($1 ? "w-0" : "w-1")}') "
done
echo "shards: homes: $homes"

for l in "${LABELS[@]}"; do
    p2m_consumer_port Q https "$l"
    rc=0
    timeout 120 "$LOAD" -c 300 -p 10 -b 4096 -t 30 127.0.0.1 "$Q" >"$T/load-$l" 2>&1 || rc=$?
    echo "shards: $l: $(tr '\n' ' ' <"$T/load-$l")"
    ((rc == 0)) || fail "$l: not every consumer was served (p2m-load status $rc): $(cat "$T/load-$l")"
    p2m_ok
    p2m_wait_until "$l's pool is full again, on its home" one_home "$l"
done
expect_eq 0 "$(p2m_log_count relay 'reason=wait_timeout')" "no consumer timed out waiting"

# A relay started by mistake with a range that overlaps the workers' (PROTOCOL 3.1: relays sharing
# a Redis need disjoint ranges) says so at its first heartbeat, naming the relays it collides with,
# and so do they at theirs; once it has stopped they say the overlap is gone.
jq '.relay.name = "stray"' "$P2M_CONFIG" >"$T/stray.json"
p2m_bg stray "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$T/stray.json"
STRAY_PID=$P2M_BG_PID
p2m_wait_until "the stray relay warns of w-0" p2m_log_count_above stray "event=relay_range_overlap relay=stray .*other=w-0 " 0
p2m_wait_until "the stray relay warns of w-1" p2m_log_count_above stray "event=relay_range_overlap relay=stray .*other=w-1 " 0
p2m_wait_until "the workers warn of the stray relay" p2m_log_count_above relay "event=relay_range_overlap relay=w-[01] .*other=stray " 1
p2m_stop stray "$STRAY_PID"
p2m_wait_until "the workers see the overlap gone" p2m_log_count_above relay "event=relay_range_overlap_gone relay=w-[01] " 1
expect_eq 1 "$(p2m_log_count stray 'event=relay_range_overlap relay=stray .*other=w-0 ')" "one warning per overlap, not one per heartbeat"
