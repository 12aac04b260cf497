#!/usr/bin/env bash
# Several machines, on loopback addresses of their own: three relays (r1 on 127.0.0.2, r2 on .3,
# r3 on .4, each its public_address and a third of one port range) and two registrars (A on
# 127.0.0.5, B on .6, one CA) sharing a Redis primary with a replica and three Sentinels (lib.sh
# p2m_sentinel_setup); four labels, each a pod (--protocol http, pool 4)
# in front of one HTTP echo, registered through B. A consumer asks a registrar for
# http://LABEL.DOMAIN:PORT/, gets its 307 to LABEL.DOMAIN:Q and connects to Q on the relay whose
# range holds Q (what a DNS that knows where each label's relay is would answer).
#   1. every label is served through either registrar, from one relay each (its home);
#   2. kill -9 the relay of label alpha: its pods re-register on the next relay of their
#      rendezvous order and alpha is served again (the time it took is printed, not judged), as are
#      the labels that never were on it; the registrar notices the dead relay by its missing
#      subscription (event=relay_gone) rather than waiting for its heartbeat to lapse; no lease
#      names the dead relay afterwards;
#   3. kill -9 registrar A: B keeps answering, every label served through it; A restarted answers.
# A load of consumers (every label in turn, through B, one at a time) runs from before the relay's
# kill to the end: every consumer that started once all labels were served again was served.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require curl jq
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
LABELS=(alpha bravo charlie delta)
RELAYS=(r1 r2 r3)
declare -A ADDR=([r1]=127.0.0.2 [r2]=127.0.0.3 [r3]=127.0.0.4 [A]=127.0.0.5 [B]=127.0.0.6)
declare -A LO HI

p2m_sentinel_setup
rcli() { rp "$P2M_PRIMARY" "$@"; } # lib.sh's helpers ask the primary
P2M_REDIS_SOCK=$T/unused.sock p2m_write_config "$(jq -n --argjson r "$P2M_REDIS_JSON" '{redis: $r, relay: {wait_timeout: 10}}')"
p2m_free_port_range plo phi 96
for i in 0 1 2; do
    LO[${RELAYS[$i]}]=$((plo + 32 * i)) HI[${RELAYS[$i]}]=$((plo + 32 * i + 31))
done
PS=$P2M_HTTPS_PORT PH=$P2M_HTTP_PORT

# ---------------------------------------------------------------- the machines
# registrar_config NAME: A keeps the CA in $T/state (as every test's pods expect); B signs with it.
registrar_config() {
    local a=${ADDR[$1]} extra
    extra=$(jq -n --arg a "$a" --arg ps "$PS" --arg ph "$PH" --arg st "$T/state$([[ $1 == A ]] || echo "-$1")" \
        --arg ca "$T/state/ca.pem" --arg key "$T/state/ca-key.pem" --arg name "$1" '
        {state_dir: $st, registrar: {https: "\($a):\($ps)", http: "\($a):\($ph)", url: "https://\($a):\($ps)",
                                     metrics_listen: null}}
        * (if $name == "A" then {} else {registrar: {ca_cert: $ca, ca_key: $key}} end)')
    mkdir -p "$T/state-$1"
    jq --argjson e "$extra" '. * $e' "$P2M_CONFIG" >"$T/reg-$1.json" || fail "registrar_config $1"
}
relay_config() {
    jq --arg n "$1" --arg a "${ADDR[$1]}" --arg p "${LO[$1]}-${HI[$1]}" \
        '.relay.name = $n | .relay.listen = $a | .public_address = $a | .relay.ports = $p' "$P2M_CONFIG" >"$T/relay-$1.json" ||
        fail "relay_config $1"
}
declare -A PID
start_registrar() {
    p2m_start_registrar "$T/reg-$1.json" "registrar-$1"
    PID[$1]=$REGISTRAR_PID
}
registrar_answers() {
    curl -sS --max-time 5 --cacert "$T/state/ca.pem" -o /dev/null -w '%{http_code}' "https://${ADDR[$1]}:$PS/_health" | grep -qx 200
}

registrar_config A
registrar_config B
start_registrar A
p2m_wait_until -t 60 "registrar A wrote its CA" test -s "$T/state/ca-key.pem"
start_registrar B
for r in "${RELAYS[@]}"; do
    relay_config "$r"
    p2m_start_relay "$T/relay-$r.json" "relay-$r"
    PID[$r]=$RELAY_PID
done
for g in A B; do
    p2m_wait_until -t 60 "registrar $g answers /_health" registrar_answers "$g"
done

p2m_free_port PE
p2m_bg echo "$POD_BIN" test --forward-http "$PE"
p2m_wait_until "the echo listens" p2m_listening "$PE"
P2M_POOL=4
for l in "${LABELS[@]}"; do
    p2m_start_pod "pod_$l" "$l" "127.0.0.1:$PE" --protocol http --registrar "https://${ADDR[B]}:$PS"
done

# ---------------------------------------------------------------- consumers
# relay_of_port Q: the relay whose range holds Q.
relay_of_port() {
    local r
    for r in "${RELAYS[@]}"; do
        if (($1 >= LO[$r] && $1 <= HI[$r])); then
            echo "$r"
            return 0
        fi
    done
    return 1
}
# consume REGISTRAR LABEL PATH: one consumer through REGISTRAR's 307, on the relay that holds Q;
# the echo must answer with the request line. Returns 1 (with $T/consume.err) when not served.
consume() {
    local reg=$1 l=$2 path=$3 got q r
    got=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' \
        --connect-to "$l.pipe2me.localhost:$PH:${ADDR[$reg]}:$PH" "http://$l.pipe2me.localhost:$PH/$path" 2>"$T/consume.err") ||
        return 1
    [[ $got =~ ^307\ http://$l\.pipe2me\.localhost:([0-9]+)/$path$ ]] || {
        echo "no 307: $got" >"$T/consume.err"
        return 1
    }
    q=${BASH_REMATCH[1]}
    r=$(relay_of_port "$q") || {
        echo "port $q is no relay's" >"$T/consume.err"
        return 1
    }
    got=$(curl -sS --max-time 20 --connect-to "$l.pipe2me.localhost:$q:${ADDR[$r]}:$q" "http://$l.pipe2me.localhost:$q/$path" \
        2>"$T/consume.err") || return 1
    [[ $got == "GET /$path HTTP/1.1"* ]] || {
        echo "not the echo: ${got:0:80}" >"$T/consume.err"
        return 1
    }
    LAST_RELAY=$r
}
expect_served() {
    consume "$@" || fail "$2 through registrar $1 not served: $(cat "$T/consume.err")"
    p2m_ok
}
# home LABEL: the relay holding LABEL's idle pre-connections ("" when none or several do).
home() {
    local r n found=()
    for r in "${RELAYS[@]}"; do
        n=$(rcli HGET "p2m:idle:$r" "$1:http")
        ((${n:-0} > 0)) && found+=("$r")
    done
    ((${#found[@]} == 1)) && echo "${found[0]}"
}

# ---------------------------------------------------------------- 1. all served, each from its home
for l in "${LABELS[@]}"; do
    for g in A B; do
        expect_served "$g" "$l" "one-$g"
    done
    h=$(home "$l")
    [[ -n $h ]] || fail "label $l's idle pre-connections are not on exactly one relay"
    expect_eq "$h" "$LAST_RELAY" "label $l's consumers go to its home relay"
done

# ---------------------------------------------------------------- the load
# One consumer after another, every label in turn, through B, until $T/load.stop exists; one line
# per consumer: START_MS END_MS ok|fail LABEL.
load_loop() {
    local i=0 l t0 r
    while [[ ! -e $T/load.stop ]]; do
        l=${LABELS[i % ${#LABELS[@]}]}
        i=$((i + 1))
        t0=$(p2m_now_ms)
        r=fail
        consume B "$l" "load-$i" && r=ok
        echo "$t0 $(p2m_now_ms) $r $l" >>"$T/load.tsv"
    done
}
load_loop &
LOAD_PID=$!
p2m_wait_until "the load runs" p2m_size_at_least "$T/load.tsv" 1

# ---------------------------------------------------------------- 2. kill -9 alpha's relay
dead=$(home alpha)
echo "# alpha's relay is $dead; killing it (-9)"
t0=$(p2m_now_ms)
kill -KILL "${PID[$dead]}"
p2m_wait_until "relay $dead is gone" p2m_dead "${PID[$dead]}"
p2m_forget "${PID[$dead]}"
p2m_wait_until -t 120 "alpha is served again" consume B alpha after-kill
t1=$(p2m_now_ms)
echo "# alpha served again $((t1 - t0)) ms after relay $dead was killed, on ${LAST_RELAY}"
[[ $LAST_RELAY != "$dead" ]] || fail "alpha served by the dead relay $dead"
# alpha's next lease went to its home first, whose heartbeat outlives it by up to 15 s: the
# registrar saw that no relay got the announcement and took the relay out of the ranking.
p2m_log_has registrar-B "event=relay_gone relay=$dead " || fail "registrar B did not notice relay $dead gone"
for l in "${LABELS[@]}"; do
    p2m_wait_until -t 120 "$l is served through A after the kill" consume A "$l" two-A
    p2m_wait_until -t 120 "$l is served through B after the kill" consume B "$l" two-B
done
t_rec=$(p2m_now_ms)
echo "# every label served again through both registrars $((t_rec - t0)) ms after the kill"
p2m_wait_until -t 60 "the dead relay's heartbeat lapses" p2m_redis_is 0 EXISTS "p2m:relay:$dead"
no_lease_on_dead() {
    local k
    for k in $(rcli --scan --pattern 'p2m:lease:*'); do
        [[ $(rcli HGET "$k" relay) != "$dead" ]] || return 1
    done
}
p2m_wait_until -t 120 "no lease names the dead relay $dead" no_lease_on_dead
for l in "${LABELS[@]}"; do
    expect_served B "$l" three
done

# ---------------------------------------------------------------- 3. kill -9 registrar A
kill -KILL "${PID[A]}"
p2m_wait_until "registrar A is gone" p2m_dead "${PID[A]}"
p2m_forget "${PID[A]}"
for l in "${LABELS[@]}"; do
    expect_served B "$l" four
done
registrar_answers B || fail "registrar B stopped answering"
start_registrar A
p2m_wait_until -t 60 "registrar A answers again" registrar_answers A
for l in "${LABELS[@]}"; do
    expect_served A "$l" five
done

touch "$T/load.stop"
wait "$LOAD_PID"
after=$(awk -v t="$t_rec" '$1 >= t' "$T/load.tsv" | wc -l)
failed=$(awk -v t="$t_rec" '$1 >= t && $3 != "ok"' "$T/load.tsv")
echo "# load: $(wc -l <"$T/load.tsv") consumers, $(grep -c ' fail ' "$T/load.tsv" || true) not served (all before the recovery), $after after it"
((after > 0)) || fail "no load consumer started after the recovery"
expect_eq "" "$failed" "load consumers not served after the recovery"

for r in "${RELAYS[@]}"; do
    [[ $r == "$dead" ]] || expect_log_clean "relay-$r"
done
