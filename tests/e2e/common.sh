# tests/e2e/common.sh: the generic helpers that tests/e2e/lib.sh and bench/run share.
#
# Sourcing it has no side effect beyond defining functions and variables: no trap, no temp dir, no
# shell options. The script that sources it sets T (the directory p2m_bg writes NAME.log into)
# before it starts anything, installs its own exit trap (which calls p2m_stop_all), and may
# redefine fail (report and exit; the default prints the message and exits 1) and p2m_ok (called
# once for every check that passed; the default does nothing). Only pids p2m_bg started are ever
# signalled, and only while they are children of this shell.
#
# Functions that record state (p2m_bg, p2m_free_port, ...) must run in the script's own shell,
# never inside $(...) or a pipeline.
# shellcheck shell=bash

P2M_PIDS=()         # every pid p2m_bg started and has not reaped yet
P2M_PORTS_GIVEN=" " # ports p2m_free_port and p2m_find_port_range handed out, so that two calls never agree

# fail MSG...: reports and ends the script (lib.sh replaces it with one that names the test line).
fail() {
    echo "$(basename -- "$0"): $*" >&2
    exit 1
}

# p2m_ok: one check passed (lib.sh counts them).
p2m_ok() { :; }

# ---------------------------------------------------------------- processes

# Prints the state letter of PID (R, S, Z, ...) if it is a child of this shell; fails
# otherwise, so that a pid the kernel has since given to someone else is never touched.
p2m_child_state() {
    local stat rest state ppid
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    read -r state ppid _ <<<"$rest"
    [[ $ppid == "$$" ]] || return 1
    echo "$state"
}

# True while PID is our child and not yet a zombie.
p2m_alive() {
    local state
    state=$(p2m_child_state "$1") || return 1
    [[ $state != Z ]]
}

# p2m_dead PID: PID, which p2m_bg started, has exited (a zombie counts as exited).
p2m_dead() { ! p2m_alive "$1"; }

p2m_forget() {
    local keep=() pid
    for pid in "${P2M_PIDS[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    P2M_PIDS=("${keep[@]}")
}

# p2m_bg NAME CMD...: runs CMD in the background, output appended to $T/NAME.log. Sets
# P2M_BG_PID and records it for p2m_kill and p2m_stop_all.
p2m_bg() {
    local name=$1
    shift
    P2M_IN_BG=1 "$@" </dev/null >>"$T/$name.log" 2>&1 &
    P2M_BG_PID=$!
    P2M_PIDS+=("$P2M_BG_PID")
}

# p2m_kill PID [SECONDS]: TERM, then KILL if it still runs after SECONDS (default 5); reaps it.
p2m_kill() {
    local pid=$1 limit=${2:-5} i
    if p2m_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < limit * 10; i++)); do
            p2m_alive "$pid" || break
            sleep 0.1
        done
        if p2m_alive "$pid"; then
            echo "$(basename -- "$0"): pid $pid still runs ${limit}s after TERM; sending KILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    p2m_forget "$pid"
}

# p2m_stop_all: TERM every pid p2m_bg started, one bounded wait (5 s) for all of them, then KILL
# what still runs, and reap them all. For exit traps: never fails, under set -e too (a reaped
# child's status 143 would end the trap there).
p2m_stop_all() {
    local pid i running
    for pid in "${P2M_PIDS[@]}"; do
        if p2m_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for ((i = 0; i < 50; i++)); do
        running=0
        for pid in "${P2M_PIDS[@]}"; do
            p2m_alive "$pid" && running=1
        done
        ((running)) || break
        sleep 0.1
    done
    for pid in "${P2M_PIDS[@]}"; do
        if p2m_alive "$pid"; then
            echo "$(basename -- "$0"): pid $pid still runs 5s after TERM; sending KILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    P2M_PIDS=()
    return 0
}

# ---------------------------------------------------------------- ports

# p2m_port_free PORT: nothing on 127.0.0.1 uses TCP PORT (any state) and we did not hand it out.
p2m_port_free() {
    [[ $P2M_PORTS_GIVEN != *" $1 "* ]] || return 1
    if command -v ss >/dev/null; then
        [[ -z $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
    else
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 1
        fi
    fi
}

# The window p2m_free_port and p2m_find_port_range pick from, P2M_PORT_BASE..+P2M_PORT_SPAN-1:
# outside the kernel's ephemeral range P2M_EPH_LO..P2M_EPH_HI (/proc/sys/net/ipv4/ip_local_port_range),
# so that outgoing connections cannot take a port we hand out, and a relay range from here draws no
# event=port_range_ephemeral warning. Up to 12,000 ports just below the range's start, from 1024
# (20000-31999 when it starts at 32000 or above, as Linux's default 32768); above its end when
# there are fewer than 1,000 below and more above; 20000-31999, nothing excluded, when the file
# cannot be read or neither side has 100 ports.
p2m_port_window() {
    local elo ehi base below above
    P2M_PORT_BASE=20000 P2M_PORT_SPAN=12000 P2M_EPH_LO=65536 P2M_EPH_HI=65536
    read -r elo ehi _ 2>/dev/null </proc/sys/net/ipv4/ip_local_port_range || return 0
    [[ $elo =~ ^[0-9]{1,5}$ && $ehi =~ ^[0-9]{1,5}$ ]] && ((elo <= ehi && ehi <= 65535)) || return 0
    P2M_EPH_LO=$elo P2M_EPH_HI=$ehi
    base=$((elo - 12000 > 20000 ? 20000 : (elo - 12000 < 1024 ? 1024 : elo - 12000)))
    below=$((elo - base < 12000 ? elo - base : 12000))
    above=$((65535 - ehi < 12000 ? 65535 - ehi : 12000))
    if ((below >= 1000 || (below >= above && below >= 100))); then
        P2M_PORT_BASE=$base P2M_PORT_SPAN=$below
    elif ((above >= 100)); then
        P2M_PORT_BASE=$((ehi + 1)) P2M_PORT_SPAN=$above
    else
        P2M_EPH_LO=65536 P2M_EPH_HI=65536
    fi
}
p2m_port_window

# p2m_free_port VAR: sets VAR to a free TCP port in the window (so that outgoing connections do
# not take it meanwhile).
p2m_free_port() {
    local tries port
    for ((tries = 0; tries < 500; tries++)); do
        port=$((P2M_PORT_BASE + RANDOM % P2M_PORT_SPAN))
        if p2m_port_free "$port"; then
            P2M_PORTS_GIVEN+="$port "
            printf -v "$1" '%s' "$port"
            return 0
        fi
    done
    fail "no free TCP port found"
}

# p2m_find_port_range VAR_LO VAR_HI N [BASE SPAN]: N consecutive free ports in BASE..BASE+SPAN-1
# (default the window), none of them in the ephemeral range, from one ss snapshot so that a range
# of thousands is cheap to check. Ports in TIME-WAIT count as used unless P2M_PORT_TIME_WAIT_OK=1
# (a listener with SO_REUSEADDR, as the relay's, may bind them). Returns 1 when it finds none.
p2m_find_port_range() {
    local lo p ok tries base=${4:-$P2M_PORT_BASE} span=${5:-$P2M_PORT_SPAN} skip=
    local -A used=()
    (($3 < span)) || return 1
    [[ ${P2M_PORT_TIME_WAIT_OK:-0} != 1 ]] || skip=TIME-WAIT
    for p in $P2M_PORTS_GIVEN $(ss -Htan | awk -v skip="$skip" '$1 != skip {n = split($4, a, ":"); print a[n]}'); do
        used[$p]=1
    done
    for ((tries = 0; tries < 500; tries++)); do
        lo=$((base + RANDOM % (span - $3))) ok=1
        ((lo + $3 - 1 < P2M_EPH_LO || lo > P2M_EPH_HI)) || continue
        for ((p = lo; p < lo + $3; p++)); do
            [[ -z ${used[$p]:-} ]] || {
                ok=0
                break
            }
        done
        ((ok)) || continue
        for ((p = lo; p < lo + $3; p++)); do
            P2M_PORTS_GIVEN+="$p "
        done
        printf -v "$1" '%s' "$lo"
        printf -v "$2" '%s' "$((lo + $3 - 1))"
        return 0
    done
    return 1
}

# p2m_free_port_range VAR_LO VAR_HI N: N consecutive free ports in the window; fails when there
# are none.
p2m_free_port_range() {
    (($3 < P2M_PORT_SPAN)) || fail "no room for $3 ports in $P2M_PORT_BASE-$((P2M_PORT_BASE + P2M_PORT_SPAN - 1))"
    p2m_find_port_range "$@" || fail "no $3 consecutive free TCP ports found"
}

# p2m_listening PORT: something listens on TCP PORT. p2m_not_listening PORT: nothing does.
p2m_listening() { [[ -n $(ss -Htln "( sport = :$1 )") ]]; }
p2m_not_listening() { ! p2m_listening "$1"; }

# ---------------------------------------------------------------- polling

# p2m_wait_until [-t SECONDS] DESC CMD...: polls CMD (every 0.1 s, at most SECONDS tries' worth,
# default $P2M_WAIT_SECONDS or 20) until it succeeds, which counts as a check (p2m_ok); fails with
# DESC otherwise. CMD's stderr is discarded. The limit counts tries, not wall time, so that a slow
# CMD on a loaded machine stretches the wait instead of using it up.
p2m_wait_until() {
    local limit=${P2M_WAIT_SECONDS:-20} desc i
    if [[ $1 == -t ]]; then
        limit=$2
        shift 2
    fi
    desc=$1
    shift
    for ((i = 0; i < limit * 10; i++)); do
        "$@" 2>/dev/null && {
            p2m_ok
            return 0
        }
        sleep 0.1
    done
    fail "timed out after ${limit}s waiting until $desc"
}
