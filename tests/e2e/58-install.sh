#!/usr/bin/env bash
# Installed like a Debian service: `cmake --install` into a temporary prefix lists exactly the
# expected files; the installed programs run, the sample configuration passes --check-config, the
# units pass `systemd-analyze verify` (their man: references resolved against the installed pages);
# an installed pipe2me-pod runs from a pod file shaped like the example (`run --config`, as the
# pipe2me-pod@NAME unit starts it) and serves consumers; the Debian package builds with
# `dpkg-buildpackage -b -us -uc`, has no lintian errors, depends on the libraries it links, creates
# the pipe2me user and enables or starts nothing when installed (into a dpkg root of its own); and
# start-up failures exit 2 with one line, before anything is written.
# shellcheck source=tests/e2e/lib.sh
. "$(dirname -- "$0")/lib.sh"

p2m_require jq curl systemd-analyze man dpkg-buildpackage dpkg-deb lintian fakeroot python3
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin

# ---------------------------------------------------------------- cmake --install

ROOT=$T/root
cmake --install "$P2M_BUILD_DIR" --prefix "$ROOT" >"$T/install.log" 2>&1 || fail "cmake --install failed:"$'\n'"$(cat "$T/install.log")"
want_files='bin/pipe2me-admin
bin/pipe2me-pod
bin/pipe2me-registrar
bin/pipe2me-relay
etc/pipe2me/pipe2me.json
etc/pipe2me/pods/
lib/systemd/system/pipe2me-pod@.service
lib/systemd/system/pipe2me-registrar.service
lib/systemd/system/pipe2me-relay.service
lib/sysusers.d/pipe2me.conf
share/doc/pipe2me/examples/pod.json
share/man/man1/pipe2me-pod.1
share/man/man5/pipe2me.json.5
share/man/man8/pipe2me-admin.8
share/man/man8/pipe2me-registrar.8
share/man/man8/pipe2me-relay.8'
# Files, and directories that hold nothing (etc/pipe2me/pods/), relative to the prefix.
list_installed() {
    local f
    (cd "$1" && find . -type f -o -type d -empty) | sed 's|^\./||' | while read -r f; do
        if [[ -d $1/$f ]]; then echo "$f/"; else echo "$f"; fi
    done | sort
}
got_files=$(list_installed "$ROOT")
expect_eq "$want_files" "$got_files" "cmake --install: the installed files"
for prog in registrar relay pod admin; do
    expect_status 0 "$ROOT/bin/pipe2me-$prog" --version
    expect_match "^pipe2me-$prog [0-9]+\.[0-9]+\.[0-9]+$" "$(cat "$OUT")" "pipe2me-$prog --version"
done
[[ -x $ROOT/bin/pipe2me-admin && ! -L $ROOT/bin/pipe2me-admin ]] && file_head=$(head -c 4 "$ROOT/bin/pipe2me-admin" | od -An -c | tr -d ' ')
expect_eq '177ELF' "${file_head:-}" "pipe2me-admin is installed as a program, not a script"

# The sample configuration passes both programs' checks.
expect_status 0 "$ROOT/bin/pipe2me-registrar" -c "$ROOT/etc/pipe2me/pipe2me.json" --check-config
expect_match "pipe2me.json: ok" "$(cat "$OUT")" "registrar --check-config on the sample"
expect_status 0 "$ROOT/bin/pipe2me-relay" -c "$ROOT/etc/pipe2me/pipe2me.json" --check-config
expect_match "configuration ok" "$(cat "$OUT")" "relay --check-config on the sample"
jq -e '.services | length == 1' "$ROOT/share/doc/pipe2me/examples/pod.json" >/dev/null || fail "the example pod file is not a one-service run config"
p2m_ok

# ---------------------------------------------------------------- systemd units

UNITS=$ROOT/lib/systemd/system
cp "$UNITS/pipe2me-pod@.service" "$T/pipe2me-pod@demo.service" # verify takes an instance, not a template
for unit in "$UNITS/pipe2me-registrar.service" "$UNITS/pipe2me-relay.service" "$T/pipe2me-pod@demo.service"; do
    # MANPATH: Documentation=man:... is checked against the pages just installed.
    MANPATH=$ROOT/share/man expect_status 0 systemd-analyze verify "$unit"
    expect_empty "$ERR"
    expect_empty "$OUT"
    for line in User=pipe2me Group=pipe2me ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes Restart=on-failure \
        'StateDirectory=pipe2me' 'LimitNOFILE=[0-9]+' "ExecStart=$ROOT/bin/pipe2me-"; do
        grep -qE "^$line" "$unit" || fail "$(basename -- "$unit"): no line $line"
        p2m_ok
    done
done
for unit in registrar relay; do
    expect_match $'\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n' "$(cat "$UNITS/pipe2me-$unit.service")" "$unit: may bind 443 and 80"
    expect_match $'\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n' "$(cat "$UNITS/pipe2me-$unit.service")" "$unit: and nothing else"
    expect_match "ExecStart=$ROOT/bin/pipe2me-$unit -c $ROOT/etc/pipe2me/pipe2me.json"$'\n' "$(cat "$UNITS/pipe2me-$unit.service")" \
        "$unit: reads the installed configuration"
done
pod_unit=$(cat "$UNITS/pipe2me-pod@.service")
expect_match "ExecStart=$ROOT/bin/pipe2me-pod run --config $ROOT/etc/pipe2me/pods/%i.json --state-dir /var/lib/pipe2me/pods/%i" \
    "$pod_unit" "pod@: one pod file per instance"
expect_match $'\nCapabilityBoundingSet=\n' "$pod_unit" "pod@: no capability"
expect_match $'\nExecReload=/bin/kill -HUP \$MAINPID\n' "$pod_unit" "pod@: reload is SIGHUP (run reads its file again)"
[[ $pod_unit =~ $'\n'TimeoutStopSec=([0-9]+)s ]] || fail "pod@: no TimeoutStopSec"
drain_default=$("$ROOT/bin/pipe2me-pod" --help | sed -n 's/.*--drain-timeout S.*//p; s/.*0-3600 (default \([0-9]*\);.*/\1/p')
((BASH_REMATCH[1] > drain_default + 5)) || fail "pod@: TimeoutStopSec=${BASH_REMATCH[1]}s is not above the drain default ${drain_default}s"
p2m_ok
# A unit the verifier must refuse: the check above can fail.
sed 's/^Restart=on-failure$/Restart=sometimes/' "$UNITS/pipe2me-relay.service" >"$T/pipe2me-broken.service"
MANPATH=$ROOT/share/man systemd-analyze verify "$T/pipe2me-broken.service" >"$OUT" 2>&1 || true
expect_match "restart specifier.*sometimes" "$(cat "$OUT")" "systemd-analyze verify reports a bad Restart="

# ---------------------------------------------------------------- the installed pod, run as the unit runs it

p2m_start_system
admin pod add podrun --label echo -o "$T/podrun.json" >/dev/null
p2m_free_port ECHO_HTTP
p2m_bg echo "$ROOT/bin/pipe2me-pod" test --forward-http "$ECHO_HTTP"
p2m_wait_until "the echo service listens" p2m_listening "$ECHO_HTTP"
mkdir -p "$T/pods"
jq --arg p "$T/podrun.json" --arg ca "$T/state/ca.pem" --arg f "127.0.0.1:$ECHO_HTTP" \
    '.provision = $p | .cacert = $ca | .services[0] += {label: "echo", forward: $f, pool: 2}' \
    "$ROOT/share/doc/pipe2me/examples/pod.json" >"$T/pods/echo.json"
since=$(($(date +%s) - 1))
p2m_bg podrun "$ROOT/bin/pipe2me-pod" run --config "$T/pods/echo.json" --state-dir "$T/podrun"
PODRUN_PID=$P2M_BG_PID
p2m_wait_until -t 60 "the pod from its file fills its pool" p2m_pool_full "$T/podrun/echo-http" 2 "$since"
p2m_consumer_port QE http echo
got=$(curl -sS --max-time 20 "http://echo.pipe2me.localhost:$QE/from-run-config") || fail "curl through the run --config pod failed"
expect_match "GET /from-run-config HTTP/1.1" "$got" "a consumer reaches the service of the pod run from its file"
expect_eq echo "$(p2m_pod_json "$T/podrun/echo-http" .label)" "status: the file's label"
expect_eq echo-http "$("$ROOT/bin/pipe2me-pod" status --state-dir "$T/podrun" --json | jq -r '.services | keys | join(" ")')" \
    "status of the unit's state directory: its one service"
p2m_stop podrun "$PODRUN_PID"
expect_match "event=drained" "$(cat "$T/podrun.log")" "SIGTERM drains the pod run from its file"

# A bad pod file: one line, exit 2, nothing started.
jq '.services[0].pool = 0' "$T/pods/echo.json" >"$T/pods/bad.json"
expect_status 2 "$ROOT/bin/pipe2me-pod" run --config "$T/pods/bad.json" --state-dir "$T/podbad"
expect_file_one_line "$ERR" "^pipe2me-pod: .*bad\.json: services\[0\]\.pool: expected a number from 1 to 1024$"
[[ ! -e $T/podbad ]] || fail "a refused pod file left a state directory"
p2m_ok

# ---------------------------------------------------------------- start-up without side effects

# The registrar's HTTPS port is taken: exit 2, one line, and no state_dir (no CA written).
p2m_free_port BUSY
p2m_bg busy python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(600)' "$BUSY"
BUSY_PID=$P2M_BG_PID
p2m_wait_until "the port is taken" p2m_listening "$BUSY"
jq --arg s "$T/fresh-state" --arg h "127.0.0.1:$BUSY" '.state_dir = $s | .registrar.https = $h' "$P2M_CONFIG" >"$T/busy.json"
expect_status 2 "$P2M_BUILD_DIR/registrar/pipe2me-registrar" -c "$T/busy.json"
expect_file_one_line "$ERR" "event=startup_failed error=\"registrar.https: cannot listen on 127.0.0.1:$BUSY: Address already in use\""
[[ ! -e $T/fresh-state ]] || fail "the registrar wrote $T/fresh-state before failing to bind: $(ls -la "$T/fresh-state")"
p2m_ok
# The relay's SNI port is taken (its leased ports open only when leased): exit 2, one line after
# relay_start, and no heartbeat left in Redis.
jq --arg s "127.0.0.1:$BUSY" --arg r "127.0.0.1:$P2M_HTTPS_PORT" '.relay.sni_listen = $s | .relay.sni_registrar = $r | .relay.name = "busy"' \
    "$P2M_CONFIG" >"$T/busy-relay.json"
expect_status 2 "$P2M_BUILD_DIR/relay/pipe2me-relay" -c "$T/busy-relay.json"
expect_match "event=relay_failed error=\"relay.sni_listen: cannot listen on 127.0.0.1:$BUSY: Address already in use\"" \
    "$(grep -v 'event=relay_start' "$ERR")" "relay: the taken port is the error"
expect_eq 1 "$(grep -vc 'event=relay_start' "$ERR")" "relay: one line for the failure"
expect_eq "" "$(rcli --raw HGETALL p2m:relay:busy)" "the relay that could not bind left no heartbeat"
p2m_kill "$BUSY_PID"

# ---------------------------------------------------------------- the Debian package

PKG=$T/pkg
mkdir -p "$PKG/pipe2me"
if git -C "$P2M_SOURCE_DIR" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$P2M_SOURCE_DIR" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$PKG/pipe2me"
else
    tar -C "$P2M_SOURCE_DIR" --exclude='./build*' --exclude=./.quickstart -cf - . | tar -xf - -C "$PKG/pipe2me"
fi
# The one documented command (OPERATIONS.md, "Install as a service").
(cd "$PKG/pipe2me" && DEB_BUILD_OPTIONS=parallel=2 dpkg-buildpackage -b -us -uc) >"$T/dpkg-buildpackage.log" 2>&1 ||
    fail "dpkg-buildpackage failed:"$'\n'"$(tail -n 40 "$T/dpkg-buildpackage.log")"
DEB=$(find "$PKG" -maxdepth 1 -name 'pipe2me_*.deb')
[[ -f $DEB ]] || fail "no pipe2me_*.deb in $PKG: $(ls "$PKG")"
p2m_ok
lintian --no-tag-display-limit "$DEB" >"$T/lintian.log" 2>&1 || true
if grep -q '^E: ' "$T/lintian.log"; then
    fail "lintian errors:"$'\n'"$(grep '^E: ' "$T/lintian.log")"
fi
p2m_ok
sed 's/^/    lintian: /' "$T/lintian.log"
deb_files=$(dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's|^\./||' | grep -v -e '/$' -e '^$' | grep -v '^usr/share/doc/pipe2me/\(changelog\|copyright\)' | sort)
want_deb=$(printf '%s\n' etc/pipe2me/pipe2me.json lib/systemd/system/pipe2me-pod@.service lib/systemd/system/pipe2me-registrar.service \
    lib/systemd/system/pipe2me-relay.service usr/bin/pipe2me-admin usr/bin/pipe2me-pod usr/bin/pipe2me-registrar usr/bin/pipe2me-relay \
    usr/lib/sysusers.d/pipe2me.conf usr/share/doc/pipe2me/examples/pod.json usr/share/man/man1/pipe2me-pod.1.gz \
    usr/share/man/man5/pipe2me.json.5.gz usr/share/man/man8/pipe2me-admin.8.gz usr/share/man/man8/pipe2me-registrar.8.gz \
    usr/share/man/man8/pipe2me-relay.8.gz | sort)
expect_eq "$want_deb" "$deb_files" "the package's files"
depends=$(dpkg-deb -f "$DEB" Depends)
for lib in libh2o-evloop libhiredis liboath0 libjansson4 libcurl4 libssl3 libc6; do
    expect_match "(^|, )$lib" "$depends" "Depends names $lib"
done
# What the binaries link is what Depends covers: every NEEDED library's package is named.
for prog in pipe2me-registrar pipe2me-relay pipe2me-pod pipe2me-admin; do
    for so in $(readelf -d "$PKG/pipe2me/debian/pipe2me/usr/bin/$prog" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        path=$(ldconfig -p | awk -v so="$so" '$1 == so && !found {print $NF; found = 1}')
        [[ -n $path ]] || fail "$prog needs $so, which ldconfig does not know"
        owner=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | sed -n 1p | cut -d: -f1) || owner=
        [[ -z $owner ]] && owner=$(dpkg -S "$path" | sed -n 1p | cut -d: -f1)
        expect_match "(^|, )$owner( |,|$)" "$depends" "$prog links $so: Depends names $owner"
    done
done
expect_eq "" "$(dpkg-deb -f "$DEB" Pre-Depends)" "no Pre-Depends"

# Installed into a dpkg root of its own (maintainer scripts run against it, DPKG_ROOT): the user
# exists, nothing is enabled, and the host is left alone.
DR=$T/dpkgroot
mkdir -p "$DR/var/lib/dpkg/info" "$DR/var/lib/dpkg/updates" "$DR/etc"
: >"$DR/var/lib/dpkg/status"
touch "$T/before-dpkg"
dpkg --root="$DR" --force-script-chrootless --force-depends --force-not-root --log=/dev/null -i "$DEB" >"$T/dpkg-i.log" 2>&1 ||
    fail "dpkg -i into $DR failed:"$'\n'"$(cat "$T/dpkg-i.log")"
expect_match '^pipe2me:x:[0-9]+:[0-9]+:[^:]*:/var/lib/pipe2me:/usr/sbin/nologin$' "$(grep '^pipe2me:' "$DR/etc/passwd")" "the package creates the pipe2me system user"
uid=$(awk -F: '$1 == "pipe2me" {print $3}' "$DR/etc/passwd")
((uid < 1000)) || fail "pipe2me's uid $uid is not a system uid"
expect_eq "" "$(find "$DR/etc/systemd" -name '*.wants' 2>/dev/null || true)" "nothing enabled on install" # no etc/systemd at all: nothing
expect_eq "" "$(grep -lE 'deb-systemd-invoke (start|restart)|systemctl (start|restart)' "$DR/var/lib/dpkg/info/pipe2me."* 2>/dev/null || true)" \
    "no maintainer script starts a service"
expect_eq "" "$(find /etc/systemd /var/lib/systemd -newer "$T/before-dpkg" -name '*pipe2me*' 2>/dev/null)" "the host's systemd state is untouched"
p2m_ok
