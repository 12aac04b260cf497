#!/usr/bin/env bash
# Soak: the whole system for SOAK_SECONDS (default 120; 3600 for the hour run, docs/RELIABILITY.md)
# under mixed consumer traffic while pods come and go, checking that nothing leaks and that no
# byte is lost or corrupted.
#
# redis-server (AOF), pipe2me-registrar, pipe2me-relay, `pipe2me-pod test` (HTTP and TCP echo) and
# five pods on loopback:
#   web    --tls-terminate in front of the HTTP echo        long-lived
#   plain  --protocol http in front of the HTTP echo        long-lived
#   tcp    --protocol tcp in front of the TCP echo          long-lived
#   term   --protocol tcp in front of the TCP echo          SIGTERM and started again every SOAK_TERM_EVERY s
#   kill   --tls-terminate in front of the HTTP echo        SIGKILL and started again every 30-50 s
# (the relay's wait_timeout is 30 s, so a consumer that comes while its pod restarts waits for it);
# Consumers, all the time, at most about 15 connections at once:
#   bulk   p2m-load, 2 at a time, 1 B to 4 MiB each, to tcp and term (every byte checked);
#   small  p2m-load, 100 connections 8 at a time, 16 B to 2 KiB, to tcp and term;
#   slow   p2m-load, 3 at a time, 20-60 KiB at 2 KiB/s (10-30 s each), to tcp;
#   http   curl -L through the registrar's 307 (--cacert, no -k) to web, plain and kill: a POST of
#          0-60,000 random bytes, whose echo must end with them (sha256);
# tcp consumers get their port from GET /tcp/LABEL before each round. Every SOAK_SAMPLE s (2; 10
# beyond 600 s) the RSS and descriptors of the registrar, relay, redis-server, echo and the
# long-lived pods go to $T/soak.csv. At the end:
#   - no transfer corrupted (a byte that came back that was not sent, or a body whose sha256 differs);
#   - every failed transfer was on a pod that was stopped or killed while it ran (in flight at the
#     signal, or started before the pod was back), at most SOAK_FAIL_PER_STOP per stop;
#   - flat: the median RSS and descriptor count of each sampled process over the last quarter is
#     within RSS +10% or +2 MiB and descriptors +5% or +3 of the second quarter's (the first quarter
#     is warm-up: pools, pipe pool, allocator arenas);
#   - traffic stopped, the relay's and long-lived pods' sockets come back to what they were after
#     warm-up; every program exits 0 on SIGTERM (LeakSanitizer included in sanitizer builds) and
#     logs no error or sanitizer report; each SIGTERM'd pod exited 0 too.
# Under AddressSanitizer every program's freed memory waits in a quarantine (256 MiB by default)
# before it is reused, so RSS climbs until the quarantine is full whatever the program does: the
# soak caps it at 4 MiB (ASAN_OPTIONS quarantine_size_mb), filled during the warm-up quarter.
# SOAK_OUT=DIR copies soak.csv, the transfer records and the summary there.
. "$(dirname -- "$0")/lib.sh"
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4

p2m_require curl jq ss sha256sum awk
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
POD_BIN=$P2M_BUILD_DIR/pod/pipe2me-pod
DOMAIN=pipe2me.localhost
DURATION=${SOAK_SECONDS:-120}
SAMPLE=${SOAK_SAMPLE:-$((DURATION <= 600 ? 2 : 10))}
TERM_EVERY=${SOAK_TERM_EVERY:-20}
FAIL_PER_STOP=${SOAK_FAIL_PER_STOP:-16}
POOL=4
POOL_TCP=8
((DURATION >= 40)) || fail "SOAK_SECONDS must be at least 40, got $DURATION"

# p2m-load comes with the build (tests/tools); without it, it is compiled here.
LOAD=$P2M_BUILD_DIR/tests/tools/p2m-load
if [[ ! -x $LOAD ]]; then
    p2m_require cc
    LOAD=$T/p2m-load
    cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o "$LOAD" "$P2M_SOURCE_DIR/tests/tools/p2m-load.c" ||
        fail "cannot compile tests/tools/p2m-load.c"
fi

# ---------------------------------------------------------------- pods

declare -A POD_PID=() POD_ARGS=()

# pod_start NAME: starts pod NAME (its label is its name) with POD_ARGS[NAME], state in $T/NAME.
pod_start() {
    local name=$1 args
    read -r -a args <<<"${POD_ARGS[$name]}"
    p2m_bg "pod-$name" "$POD_BIN" register --provision "$T/$name.json" --label "$name" --cacert "$T/state/ca.pem" \
        --state-dir "$T/$name" "${args[@]}"
    POD_PID[$name]=$P2M_BG_PID
}

# pod_up NAME [SINCE]: NAME's status, written after unix time SINCE, shows an idle pre-connection.
pod_up() {
    [[ $(p2m_pod_json "$T/$1" '"\(.updated) \(.pool.idle)"') =~ ^([0-9]+)\ ([0-9]+)$ ]] &&
        ((BASH_REMATCH[1] > ${2:-0} && BASH_REMATCH[2] >= 1))
}

# ---------------------------------------------------------------- samples

# fd_kinds PID: "TOTAL,SOCKETS,PIPES", PID's open descriptors (one that closes while they are
# listed may be missed: find then fails, which is not an error here).
fd_kinds() {
    { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null || true; } |
        awk '/^socket:/ { s++ } /^pipe:/ { p++ } END { printf "%d,%d,%d\n", NR, s, p }'
}

# sample: one CSV row per sampled process: t_s,process,pid,rss_kib,fds,sockets,pipes.
SAMPLED=(registrar relay redis echo web plain tcp)
declare -A SAMPLE_PID=()
sample() {
    local t=$(($(p2m_now_ms) - T0_MS)) name pid rss
    for name in "${SAMPLED[@]}"; do
        pid=${SAMPLE_PID[$name]}
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || rss=
        [[ -n $rss ]] || fail "sample: $name (pid $pid) is gone"
        printf '%d.%03d,%s,%s,%s,%s\n' $((t / 1000)) $((t % 1000)) "$name" "$pid" "$rss" "$(fd_kinds "$pid")" >>"$T/soak.csv"
    done
}

sockets_of() { fd_kinds "$1" | cut -d, -f2; }
sockets_are() { [[ $(sockets_of "$1") == "$2" ]]; }

# ---------------------------------------------------------------- consumers

# Each worker runs in the background until DEADLINE (unix ms) and appends one line per transfer to
# $T/rec-NAME: LABEL KIND INDEX START_MS END_MS BYTES GOT RESULT (p2m-load -o, with two columns in
# front). A worker never fails the test itself: the records are judged at the end.

# tcp_port VAR LABEL: VAR = the consumer port of GET /tcp/LABEL; a 503 (its pod gone for longer than
# registrar.alive_window: the consumer is no longer queued) is retried for 30 s and counted in
# $T/busy-LABEL.
tcp_port() {
    local got i
    for ((i = 0; i < 120; i++)); do
        got=$(curl -sS --max-time 10 --cacert "$T/state/ca.pem" --connect-to ::127.0.0.1: -w ' %{http_code}' \
            "https://$DOMAIN:$P2M_HTTPS_PORT/tcp/$2" 2>&1) || got="curl failed: $got"
        if [[ $got =~ ^$2\.$DOMAIN:([0-9]+)$'\n'?\ 200$ ]]; then
            printf -v "$1" '%s' "${BASH_REMATCH[1]}"
            return 0
        fi
        echo "$(p2m_now_ms) ${got//$'\n'/ }" >>"$T/busy-$2"
        sleep 0.25
    done
    return 1
}

# load_worker NAME PAUSE LAST LABELS LOAD_ARGS...: rounds of p2m-load LOAD_ARGS to a label drawn
# from LABELS (space-separated), PAUSE seconds apart; no round starts in the last LAST seconds.
load_worker() {
    local name=$1 pause=$2 last=$3 labels label q rc child=
    read -r -a labels <<<"$4"
    shift 4
    trap - ERR
    set +eE
    trap '[[ -n $child ]] && kill "$child" 2>/dev/null; exit 0' TERM
    while (($(p2m_now_ms) + last * 1000 < DEADLINE)); do
        label=${labels[RANDOM % ${#labels[@]}]}
        if ! tcp_port q "$label"; then
            echo "$label $name 0 $(p2m_now_ms) $(p2m_now_ms) 0 0 noport" >>"$T/rec-$name"
            continue
        fi
        : >"$T/rec-$name.round"
        "$LOAD" -s "$((RANDOM * 32768 + RANDOM))" -o "$T/rec-$name.round" "$@" 127.0.0.1 "$q" >>"$T/load-$name.log" 2>&1 &
        child=$!
        wait "$child"
        rc=$?
        child=
        ((rc <= 1)) || echo "$label $name 0 $(p2m_now_ms) $(p2m_now_ms) 0 0 load_status_$rc" >>"$T/rec-$name"
        sed "s/^/$label $name /" "$T/rec-$name.round" >>"$T/rec-$name"
        sleep "$pause"
    done
}

# http_worker: POSTs of random bodies through the 307 to web, plain and kill in turn; the HTTP
# echo answers with the request, whose end must be the body (sha256).
http_worker() {
    local i=0 label url size off want got code start end result rc child=
    local labels=(web plain kill)
    trap - ERR
    set +eE
    trap '[[ -n $child ]] && kill "$child" 2>/dev/null; exit 0' TERM
    while (($(p2m_now_ms) < DEADLINE)); do
        i=$((i + 1))
        label=${labels[i % 3]}
        if [[ $label == plain ]]; then
            url="http://$label.$DOMAIN:$P2M_HTTP_PORT/soak/$i"
        else
            url="https://$label.$DOMAIN:$P2M_HTTPS_PORT/soak/$i"
        fi
        size=$((RANDOM * 2 % 60001))
        off=$((RANDOM * 16))
        tail -c +$((off + 1)) "$T/random.bin" | head -c "$size" >"$T/http.body"
        want=$(sha256sum <"$T/http.body")
        start=$(p2m_now_ms)
        curl -sS -L --max-time 20 --cacert "$T/state/ca.pem" --connect-to ::127.0.0.1: \
            -H 'Content-Type: application/octet-stream' --data-binary "@$T/http.body" \
            -o "$T/http.resp" -w '%{http_code} %{num_redirects}' "$url" >"$T/http.code" 2>>"$T/http-curl.log" &
        child=$!
        wait "$child"
        rc=$?
        child=
        end=$(p2m_now_ms)
        code=$(cat "$T/http.code")
        if ((rc != 0)); then
            result=curl_$rc
        elif [[ $code == "503 0" ]]; then
            result=unavailable # the registrar found the pod gone (PROTOCOL 2.1): not a transfer
        elif [[ $code != "200 1" ]]; then
            result=http_${code// /_}
        elif [[ $(head -n 1 "$T/http.resp") != "POST /soak/$i HTTP/1.1"$'\r' ]]; then
            result=mismatch
        else
            got=$(tail -c "$size" "$T/http.resp" | sha256sum)
            [[ $got == "$want" && $(stat -c %s "$T/http.resp") -gt $size ]] && result=ok || result=mismatch
        fi
        echo "$label http $i $start $end $size $([[ $result == ok ]] && echo "$size" || echo 0) $result" >>"$T/rec-http"
        sleep 0.1
    done
}

# ---------------------------------------------------------------- setup

p2m_free_port_range PORT_LO PORT_HI 64
p2m_start_system "{\"relay\": {\"ports\": \"$PORT_LO-$PORT_HI\", \"wait_timeout\": 30, \"idle_timeout\": 120},
    \"registrar\": {\"consumer_ttl\": 600, \"cert_lifetime\": ${SOAK_CERT_LIFETIME:-600}}}"
p2m_free_port ECHO_HTTP
p2m_free_port ECHO_TCP
p2m_bg echo "$POD_BIN" test --forward-http "$ECHO_HTTP" --forward-tcp "$ECHO_TCP"
ECHO_PID=$P2M_BG_PID
p2m_wait_until "the echo services listen" p2m_listening "$ECHO_TCP"
head -c 1200000 /dev/urandom >"$T/random.bin"

# Fixed pools (--pool-max = --pool): an elastic pool holds as many descriptors as the load of the
# moment asks for, which the flatness check below would read as growth. The elastic pool's growth
# and shrink are tested by 51-system-burst and measured by bench/run case 7.
POD_ARGS[web]="--forward 127.0.0.1:$ECHO_HTTP --pool $POOL --pool-max $POOL --tls-terminate"
POD_ARGS[plain]="--forward 127.0.0.1:$ECHO_HTTP --pool $POOL --pool-max $POOL --protocol http"
POD_ARGS[tcp]="--forward 127.0.0.1:$ECHO_TCP --pool $POOL_TCP --pool-max $POOL_TCP --protocol tcp"
POD_ARGS[term]="--forward 127.0.0.1:$ECHO_TCP --pool $POOL --pool-max $POOL --protocol tcp"
POD_ARGS[kill]="--forward 127.0.0.1:$ECHO_HTTP --pool $POOL --pool-max $POOL --tls-terminate"
PODS=(web plain tcp term kill)
for name in "${PODS[@]}"; do
    admin pod add "$name" --label "$name" -o "$T/$name.json" >/dev/null
    pod_start "$name"
done
for name in "${PODS[@]}"; do
    p2m_wait_until -t 60 "pod $name has an idle pre-connection" pod_up "$name"
done
# At rest after warm-up (every label's consumer port leased, every pool full): the sockets that
# the relay and the long-lived pods must come back to once the traffic stops.
tcp_port Q tcp
tcp_port Q term
p2m_consumer_port Q https web
p2m_consumer_port Q http plain
p2m_consumer_port Q https kill
pools_full() {
    local name
    for name in "${PODS[@]}"; do
        p2m_pool_full "$T/$name" "$([[ $name == tcp ]] && echo $POOL_TCP || echo $POOL)" || return 1
    done
    p2m_redis_is "$((4 * POOL + POOL_TCP))" EVAL \
        "local s = 0; for _, v in ipairs(redis.call('HVALS', KEYS[1])) do s = s + v end; return s" 1 p2m:idle:r1
}
p2m_wait_until -t 30 "every pool is full and held by the relay" pools_full
sleep 1 # a status written before the last refill's registration ended
p2m_wait_until -t 30 "every pool is full and held by the relay" pools_full
declare -A REST=([relay]=$(sockets_of "$RELAY_PID"))
for name in web plain tcp; do
    REST[$name]=$(sockets_of "${POD_PID[$name]}")
done
SAMPLE_PID=([registrar]=$REGISTRAR_PID [relay]=$RELAY_PID [redis]=$P2M_REDIS_PID [echo]=$ECHO_PID
    [web]=${POD_PID[web]} [plain]=${POD_PID[plain]} [tcp]=${POD_PID[tcp]})

echo "t_s,process,pid,rss_kib,fds,sockets,pipes" >"$T/soak.csv"
: >"$T/stops"
T0_MS=$(p2m_now_ms)
DEADLINE=$((T0_MS + DURATION * 1000))
echo "soak: ${DURATION}s, samples every ${SAMPLE}s, build $(basename -- "$P2M_BUILD_DIR"), started $(date -u +%FT%TZ)"

WORKERS=()
bg_worker() {
    local name=$1
    shift
    "$@" </dev/null >>"$T/worker-$name.log" 2>&1 &
    WORKERS+=($!)
    P2M_PIDS+=($!)
}
bg_worker bulk load_worker bulk 0.5 3 "tcp term" -c 2 -p 2 -b 1-4194304 -t 60
bg_worker small load_worker small 0.5 5 "tcp term" -c 100 -p 8 -b 16-2048 -t 30
bg_worker slow load_worker slow 0.2 30 "tcp" -c 3 -p 3 -b 20480-61440 -r 2048 -t 60
bg_worker http http_worker

# ---------------------------------------------------------------- the soak: churn and samples

# A stop: `LABEL SIGNAL STOP_MS UP_MS` in $T/stops once the pod is back (UP_MS: its status shows an
# idle pre-connection again).
declare -A CHURN_STATE=([term]=up [kill]=up) CHURN_AT=() CHURN_SINCE=()
NEXT_SAMPLE=$T0_MS
declare -A NEXT_STOP=([term]=$((T0_MS + TERM_EVERY * 1000)) [kill]=$((T0_MS + (30 + RANDOM % 21) * 1000)))
TERM_FAILED=()
churn() { # NAME SIGNAL
    local name=$1 sig=$2 pid=${POD_PID[$1]} rc=0 now
    case ${CHURN_STATE[$name]} in
    up)
        CHURN_AT[$name]=$(p2m_now_ms)
        # A job killed by a signal other than TERM gets a "Killed" line from bash: not for this one.
        [[ $sig == TERM ]] || disown "$pid"
        kill "-$sig" "$pid"
        CHURN_STATE[$name]=stopping
        ;;
    stopping)
        p2m_alive "$pid" && return 0
        wait "$pid" 2>/dev/null || rc=$?
        p2m_forget "$pid"
        [[ $sig == KILL || $rc == 0 ]] || TERM_FAILED+=("$name exited with status $rc after SIGTERM")
        CHURN_SINCE[$name]=$(date +%s)
        pod_start "$name"
        CHURN_STATE[$name]=starting
        ;;
    starting)
        pod_up "$name" "${CHURN_SINCE[$name]}" || return 0
        now=$(p2m_now_ms)
        echo "$name $sig ${CHURN_AT[$name]} $now" >>"$T/stops"
        CHURN_STATE[$name]=up
        if [[ $sig == TERM ]]; then
            NEXT_STOP[$name]=$((CHURN_AT[$name] + TERM_EVERY * 1000))
        else
            NEXT_STOP[$name]=$((now + (30 + RANDOM % 21) * 1000))
        fi
        ;;
    esac
}

while :; do
    now=$(p2m_now_ms)
    if ((now >= NEXT_SAMPLE)); then
        sample
        NEXT_SAMPLE=$((NEXT_SAMPLE + SAMPLE * 1000))
    fi
    ((now < DEADLINE)) || break
    # No stop in the last 15 s: every pod is back before the workers' last rounds end.
    for name in term kill; do
        sig=$([[ $name == term ]] && echo TERM || echo KILL)
        if [[ ${CHURN_STATE[$name]} != up ]] || ((now >= NEXT_STOP[$name] && now + 15000 < DEADLINE)); then
            churn "$name" "$sig"
        fi
        [[ ${CHURN_STATE[$name]} != starting ]] || ((now - CHURN_AT[$name] < 60000)) ||
            fail "pod $name is not back 60 s after SIG$sig"
    done
    sleep 0.2
done
# Let the churned pods come back, the workers finish their last rounds.
for name in term kill; do
    while [[ ${CHURN_STATE[$name]} != up ]]; do
        churn "$name" "$([[ $name == term ]] && echo TERM || echo KILL)"
        now=$(p2m_now_ms)
        ((now - CHURN_AT[$name] < 60000)) || fail "pod $name is not back 60 s after its stop"
        sleep 0.2
    done
done
for pid in "${WORKERS[@]}"; do
    wait "$pid" || fail "a worker ended with status $?"
    p2m_forget "$pid"
done
sample
echo "soak: traffic ended after $((($(p2m_now_ms) - T0_MS) / 1000))s"
((${#TERM_FAILED[@]} == 0)) || fail "$(printf '%s\n' "${TERM_FAILED[@]}")"
p2m_ok

# ---------------------------------------------------------------- figures

cat "$T"/rec-bulk "$T"/rec-small "$T"/rec-slow "$T"/rec-http 2>/dev/null >"$T/records"
# judge: each record is ok, unavailable (a 503 while its pod was down), corrupted, or failed; a
# failure is excused when its label's pod was stopped while it ran (inflight) or before it began
# and was not back yet (restart); else it is unexplained.
awk -v grace=2000 '
    FNR == NR { lab[++ns] = $1; sig[ns] = $2; at[ns] = $3; up[ns] = $4; next }
    {
        label = $1; kind = $2; start = $4; end = $5; res = $8
        n[kind]++
        if (res == "ok") { ok[kind]++; bytes[kind] += $6; next }
        if (res == "mismatch" || res == "too_long") { corrupt[kind]++; print "corrupted:", $0 > "/dev/stderr"; next }
        cause = ""
        for (i = 1; i <= ns; i++) {
            if (lab[i] != label) continue
            if (start <= at[i] && end >= at[i]) { cause = "inflight"; break }
            if (start > at[i] && start <= up[i] + grace) { cause = "restart"; break }
        }
        if (cause == "") { cause = "unexplained"; print "unexplained failure:", $0 > "/dev/stderr" }
        else if (res == "unavailable") cause = "unavailable"
        else stop[i]++
        fail[kind " " cause]++
        if (cause == "unexplained") unexplained++
    }
    END {
        # %.0f: byte counts pass 2^31, where some awks clamp %d
        for (k in n) printf "kind=%s transfers=%d ok=%d bytes=%.0f corrupted=%d inflight=%d restart=%d unavailable=%d unexplained=%d\n",
            k, n[k], ok[k], bytes[k], corrupt[k], fail[k " inflight"], fail[k " restart"], fail[k " unavailable"],
            fail[k " unexplained"]
        for (i = 1; i <= ns; i++) {
            g = lab[i] " " sig[i]; d = up[i] - at[i]
            if (!(g in cnt) || d < dmin[g]) dmin[g] = d
            if (d > dmax[g]) dmax[g] = d
            if (stop[i] > fmax[g]) fmax[g] = stop[i]
            cnt[g]++; dsum[g] += d; fsum[g] += stop[i]
            if (stop[i] > 0) withf[g]++
        }
        for (g in cnt) {
            split(g, a, " ")
            printf "stops label=%s signal=%s count=%d down_ms_min=%d down_ms_mean=%d down_ms_max=%d failed=%d stops_with_failures=%d failed_max_per_stop=%d\n",
                a[1], a[2], cnt[g], dmin[g], dsum[g] / cnt[g], dmax[g], fsum[g], withf[g], fmax[g]
        }
    }' "$T/stops" "$T/records" >"$T/judged" 2>"$T/judged.err"
sort -o "$T/judged" "$T/judged"

# flat: per process, start/middle/end/max and the quarters' medians.
awk -F, -v d="$DURATION" '
    NR == 1 { next }
    {
        p = $2; t = $1; k = ++cnt[p]
        rss[p, k] = $4; fds[p, k] = $5; ts[p, k] = t
        if ($4 > rmax[p]) rmax[p] = $4
        if ($5 > fmax[p]) fmax[p] = $5
        if (t >= d / 4 && t < d / 2) { q2r[p] = q2r[p] " " $4; q2f[p] = q2f[p] " " $5 }
        if (t >= 3 * d / 4) { q4r[p] = q4r[p] " " $4; q4f[p] = q4f[p] " " $5 }
    }
    function median(s,   a, m, i, j, x) {
        m = split(s, a, " ")
        for (i = 2; i <= m; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
        return m == 0 ? -1 : (m % 2 ? a[(m + 1) / 2] : int((a[m / 2] + a[m / 2 + 1]) / 2))
    }
    END {
        for (p in cnt) {
            mid = 1
            for (k = 1; k <= cnt[p]; k++) if (ts[p, k] <= d / 2) mid = k
            r2 = median(q2r[p]); r4 = median(q4r[p]); f2 = median(q2f[p]); f4 = median(q4f[p])
            rlim = r2 * 1.10 > r2 + 2048 ? int(r2 * 1.10) : r2 + 2048
            flim = f2 * 1.05 > f2 + 3 ? int(f2 * 1.05) : f2 + 3
            flat = r2 >= 0 && r4 >= 0 && r4 <= rlim && f4 <= flim ? "yes" : "NO"
            printf "process=%s rss_kib=%d/%d/%d max=%d q2=%d q4=%d limit=%d fds=%d/%d/%d max=%d q2=%d q4=%d limit=%d flat=%s\n",
                p, rss[p, 1], rss[p, mid], rss[p, cnt[p]], rmax[p], r2, r4, rlim,
                fds[p, 1], fds[p, mid], fds[p, cnt[p]], fmax[p], f2, f4, flim, flat
        }
    }' "$T/soak.csv" | sort >"$T/flat"

busy=$({ cat "$T"/busy-* 2>/dev/null || true; } | wc -l) # none when every GET /tcp/ was served
{
    echo "soak: ${DURATION}s, $((($(wc -l <"$T/soak.csv") - 1) / ${#SAMPLED[@]})) samples of ${#SAMPLED[@]} processes, stops: $(awk '$2 == "TERM"' "$T/stops" | wc -l) SIGTERM," \
        "$(awk '$2 == "KILL"' "$T/stops" | wc -l) SIGKILL; GET /tcp/ answered 503 (retried) $busy times"
    sed 's/^/soak: /' "$T/judged"
    echo "soak: rss_kib and fds are start/middle/end; q2, q4: medians of the second and last quarters"
    sed 's/^/soak: /' "$T/flat"
} | tee "$T/summary"
if [[ -n ${SOAK_OUT:-} ]]; then
    mkdir -p -- "$SOAK_OUT"
    cp -- "$T/soak.csv" "$T/summary" "$T/records" "$T/stops" "$SOAK_OUT/"
fi

[[ ! -s $T/judged.err ]] || fail "transfers corrupted or failed with no pod stopped:"$'\n'"$(head -n 20 "$T/judged.err")"
p2m_ok
corrupted=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^corrupted=/) { split($i, a, "="); s += a[2] } } END { print s + 0 }' "$T/judged")
expect_eq 0 "$corrupted" "corrupted transfers"
while read -r line; do
    [[ $line =~ failed_max_per_stop=([0-9]+) ]] && ((BASH_REMATCH[1] <= FAIL_PER_STOP)) ||
        fail "more than $FAIL_PER_STOP transfers failed with one stop: $line"
done < <(grep '^stops ' "$T/judged")
p2m_ok
for kind in bulk small slow http; do
    grep -q "^kind=$kind .* ok=[1-9]" "$T/judged" || fail "no $kind transfer succeeded"
done
p2m_ok
if grep -q 'flat=NO' "$T/flat"; then
    fail "memory or descriptors grew:"$'\n'"$(grep 'flat=NO' "$T/flat")"
fi
p2m_ok

# ---------------------------------------------------------------- at rest, and a clean exit

p2m_wait_until -t 30 "every pool is full again and held by the relay" pools_full
p2m_wait_until -t 30 "the relay's sockets are back to ${REST[relay]}" sockets_are "$RELAY_PID" "${REST[relay]}"
for name in web plain tcp; do
    p2m_wait_until -t 30 "pod $name's sockets are back to ${REST[$name]}" sockets_are "${POD_PID[$name]}" "${REST[$name]}"
done

for name in web plain tcp term kill echo relay registrar; do
    case $name in
    registrar) pid=$REGISTRAR_PID ;;
    relay) pid=$RELAY_PID ;;
    echo) pid=$ECHO_PID ;;
    *) pid=${POD_PID[$name]} ;;
    esac
    kill -TERM "$pid"
    p2m_wait_until -t 30 "$name exits on SIGTERM" p2m_dead "$pid"
    rc=0
    wait "$pid" || rc=$?
    p2m_forget "$pid"
    expect_eq 0 "$rc" "$name: exit status after SIGTERM"
done
for log in "$T"/registrar.log "$T"/relay.log "$T"/pod-*.log "$T"/echo.log; do
    if lines=$(grep -E 'level=error|ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$log" | head -n 5); then
        fail "$(basename -- "$log") reports errors:"$'\n'"$lines"
    fi
    p2m_ok
done
echo "soak: done in ${SECONDS}s"
