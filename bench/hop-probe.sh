#!/usr/bin/env bash
# What one forwarding hop costs, and whether the kernel can forward for us: the measurements
# behind docs/BENCHMARKS.md, "Profile of the misses". Loopback only, about 1 minute, root (the
# sockmap probe loads a BPF program).
#
#   bench/hop-probe.sh [ROUNDS]     (default 4)
#
# 1. Request/response through one hop: p2m-bench rr (64 B, 20,000 round trips) direct and through
#    bench/hop-probe in its three modes (splice, copy, sockmap), round after round; prints each
#    round's p50/p99 and the median per mode.
# 2. Back-pressure: a client pushes as fast as it can for 5 s, through the copy and the sockmap
#    probe, to a backend that accepts and never reads. Prints the bytes the client got rid of and
#    how much MemAvailable fell meanwhile: bounded by the socket buffers when a process forwards,
#    unbounded when the kernel redirects.
set -euo pipefail
ROUNDS=${1:-4}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "usage: bench/hop-probe.sh [ROUNDS 1-99]" >&2; exit 2; }
((EUID == 0)) || { echo "bench/hop-probe.sh: needs root (BPF)" >&2; exit 2; }
SRC=$(cd -- "$(dirname -- "$0")/.." && pwd)
T=$(mktemp -d /tmp/hop-probe.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf -- "$T"
}
trap cleanup EXIT
# Each in its own process group, so that the probes' per-connection children go with them.
bg() { setsid "$@" </dev/null >>"$T/log" 2>&1 & PIDS+=($!); }
listening() { [[ -n $(ss -Htln "( sport = :$1 )") ]]; }
wait_listen() { for _ in $(seq 100); do listening "$1" && return 0; sleep 0.05; done; echo "hop-probe: :$1 never listened" >&2; exit 1; }
free_port() { local p; while :; do p=$((20000 + RANDOM % 12000)); [[ -z $(ss -Htan "( sport = :$p )") ]] && { echo "$p"; return; }; done; }

cc -std=c11 -O2 -Wall -Wextra -pthread -o "$T/p2m-bench" "$SRC/bench/p2m-bench.c"
cc -std=c11 -O2 -Wall -Wextra -o "$T/hop-probe" "$SRC/bench/hop-probe.c"

BACKEND=$(free_port)
bg "$T/p2m-bench" serve "$BACKEND"
wait_listen "$BACKEND"
declare -A PORT=([direct]=$BACKEND)
for mode in splice copy sockmap; do
    PORT[$mode]=$(free_port)
    bg "$T/hop-probe" "$mode" "${PORT[$mode]}" "$BACKEND"
    wait_listen "${PORT[$mode]}"
done

echo "1. rr 64 B x 20,000 through one hop (us), $ROUNDS rounds"
for ((r = 1; r <= ROUNDS; r++)); do
    for t in direct splice copy sockmap; do
        line=$(timeout 60 "$T/p2m-bench" rr 127.0.0.1 "${PORT[$t]}" 64 20000)
        [[ $line == *ok=1* ]] || { echo "hop-probe: $t: $line" >&2; exit 1; }
        p50=$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$line")
        p99=$(sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$line")
        printf '%s\t%s\t%s\n' "$t" "$p50" "$p99" >>"$T/rr.tsv"
        printf '  round %d %-8s p50 %7s  p99 %7s\n' "$r" "$t" "$p50" "$p99"
    done
done
med() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for t in direct splice copy sockmap; do
    printf '  median   %-8s p50 %7s  p99 %7s\n' "$t" "$(awk -F'\t' -v t="$t" '$1 == t {print $2}' "$T/rr.tsv" | med)" \
        "$(awk -F'\t' -v t="$t" '$1 == t {print $3}' "$T/rr.tsv" | med)"
done

echo "2. a client pushing for 5 s to a backend that never reads"
SINK=$(free_port)
bg python3 -c '
import socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", int(sys.argv[1]))); l.listen(8); held = []
while True: held.append(l.accept()[0])' "$SINK"
wait_listen "$SINK"
for mode in copy sockmap; do
    P=$(free_port)
    bg "$T/hop-probe" "$mode" "$P" "$SINK"
    wait_listen "$P"
    before=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    sent=$(python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.setblocking(False)
buf = bytes(65536); sent = 0; end = time.time() + 5
while time.time() < end:
    try: sent += s.send(buf)
    except BlockingIOError: time.sleep(0.005)
print(sent)' "$P")
    after=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    printf '  %-8s client sent %6d MiB; MemAvailable fell by %6d MiB\n' "$mode" $((sent >> 20)) $(((before - after) >> 10))
    kill -TERM -- "-${PIDS[-1]}" 2>/dev/null || true
done
