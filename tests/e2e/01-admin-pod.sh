# pipe2me-admin pod ...: add (with and without labels, -o FILE), ls, show, disable, enable,
# rotate-secret and rm against a real redis-server; secrets checked with oathtool.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require jq oathtool
p2m_require_built tools/pipe2me-admin
p2m_start_redis
p2m_write_config

# check_provisioning ID LABELS_JSON: $OUT is the provisioning JSON of pod ID; sets SECRET.
check_provisioning() {
    expect_eq "$1" "$(json .id)" "provisioning id"
    expect_eq "$2" "$(json -c '.labels')" "provisioning labels"
    expect_eq "https://pipe2me.localhost:$P2M_HTTPS_PORT" "$(json .registrar)" "registrar URL from the config"
    expect_eq "pipe2me.localhost" "$(json .domain)" "domain from the config"
    expect_eq '["digits","domain","id","labels","otpauth","registrar","secret"]' "$(json -c 'keys')" "provisioning fields"
    expect_eq 6 "$(json .digits)" "provisioning digits: the default"
    SECRET=$(json .secret)
    expect_match '^[A-Z2-7]{32}$' "$SECRET" "secret is 32 base32 characters"
    expect_match "^otpauth://totp/pipe2me:$1\\?(.*&)?secret=$SECRET(&|$)" "$(json .otpauth)" "otpauth URI"
    expect_match '[?&]issuer=pipe2me(&|$)' "$(json .otpauth)" "otpauth issuer"
    expect_match '^[0-9]{6}$' "$(oathtool --totp -b "$SECRET")" "oathtool takes the secret"
    expect_eq "$SECRET" "$(rcli HGET "p2m:pod:$1" secret)" "secret stored in Redis"
}

# ---- pod add with labels: normalized to lower case
expect_status 0 admin pod add web1 --label Web --label api
expect_empty "$ERR"
check_provisioning web1 '["web","api"]'
SECRET1=$SECRET
expect_eq "api web" "$(rcli SMEMBERS p2m:pod:web1:labels | sort | xargs)" "labels set in Redis"
expect_eq web1 "$(rcli HGET p2m:labels web)" "label owner in Redis"
expect_eq 1 "$(rcli SISMEMBER p2m:pods web1)" "pod listed in p2m:pods"
expect_eq 0 "$(rcli HGET p2m:pod:web1 disabled)" "new pod enabled"

# oathtool and otpauth agree with each other: the code for a fixed time is stable
expect_match '^[0-9]{6}$' "$(oathtool --totp -b --now '2026-01-01 00:00:00 UTC' "$SECRET1")"

# ---- pod add without a label: a readable one is generated; options may come first
expect_status 0 admin --json pod add web2
check_provisioning web2 "$(json -c .labels)"
GEN=$(json '.labels[0]')
expect_eq 1 "$(json '.labels | length')" "one generated label"
expect_match '^[a-z]+-[a-z]+-[a-z]+$' "$GEN" "generated label"
expect_eq web2 "$(rcli HGET p2m:labels "$GEN")" "generated label owned"

# ---- limits that are still valid: 64-byte ID, 63-byte label, ID with dots and dashes
ID64=$(printf 'a%.0s' {1..64})
L63=$(printf 'b%.0s' {1..63})
expect_status 0 admin pod add "$ID64" --label "$L63"
check_provisioning "$ID64" "[\"$L63\"]"
expect_status 0 admin pod add 9.x_y-Z --label=x1-2
check_provisioning 9.x_y-Z '["x1-2"]'

# ---- -o FILE: mode 0600, nothing on stdout, one note on stderr, never overwritten
umask 022
expect_status 0 admin pod add web3 --label w3 -o "$T/web3.json"
expect_empty "$OUT"
expect_file_one_line "$ERR" "^pipe2me-admin: .*web3"
expect_eq 600 "$(stat -c %a "$T/web3.json")" "provisioning file mode"
cp "$T/web3.json" "$OUT"
check_provisioning web3 '["w3"]'
cp "$T/web3.json" "$T/web3.orig"
admin_fails -r 'exists' pod add web4 --label w4 --output "$T/web3.json"
cmp -s "$T/web3.json" "$T/web3.orig" || fail "provisioning file was overwritten"
expect_eq 0 "$(rcli EXISTS p2m:pod:web4)" "refused -o created no pod"
ln -s "$T/nowhere" "$T/link.json"
admin_fails -r 'exists' pod add web4 -o "$T/link.json"
[[ ! -e $T/nowhere ]] || fail "-o followed a symlink"

# ---- pod ls: text and JSON, never a secret
expect_status 0 admin pod ls
expect_empty "$ERR"
expect_match '^ID +STATE +LABELS +CREATED +ONLINE +IDLE +TARGET +TUNNELS +CONSUMERS +BYTES_IN +BYTES_OUT +LAST_REGISTRATION$' \
    "$(head -n 1 "$OUT")" "pod ls header"
expect_eq 6 "$(wc -l <"$OUT")" "pod ls: header and 5 pods"
expect_match '^web1 +enabled +api,web +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z +no +0 +- +0 +0 +0 +0 +-$' \
    "$(grep '^web1 ' "$OUT")" "pod ls row"
expect_match "^web2 +enabled +$GEN " "$(grep '^web2 ' "$OUT")" "pod ls row, generated label"
grep -q "$SECRET1" "$OUT" && fail "pod ls shows a secret"

expect_status 0 admin pod ls --json
expect_eq "[\"9.x_y-Z\",\"$ID64\",\"web1\",\"web2\",\"web3\"]" "$(json -c '[.[].id] | sort')" "pod ls --json ids"
expect_eq '{"id":"web1","disabled":false,"labels":["api","web"]}' \
    "$(json -c '.[] | select(.id == "web1") | {id, disabled, labels}')" "pod ls --json entry"
expect_eq '["bytes_in","bytes_out","conns","consumers","created","disabled","id","idle","labels","last_registration","online","pool_target","tunnels","waiting"]' \
    "$(json -c '.[0] | keys')" "pod ls --json fields"
expect_eq '{"online":false,"idle":0,"pool_target":null,"tunnels":0,"consumers":0,"bytes_in":0,"last_registration":null}' \
    "$(json -c '.[] | select(.id == "web1") | {online, idle, pool_target, tunnels, consumers, bytes_in, last_registration}')" \
    "pod ls --json: live fields of a pod that never registered"
NOW=$(date +%s)
CREATED=$(json '.[] | select(.id == "web1") | .created')
((CREATED <= NOW && CREATED > NOW - 600)) || fail "created $CREATED is not recent (now $NOW)"
grep -q "$SECRET1" "$OUT" && fail "pod ls --json shows a secret"
grep -qi secret "$OUT" && fail "pod ls --json has a secret field"

# ---- pod show
expect_status 0 admin pod show web1
expect_eq "id: web1" "$(sed -n 1p "$OUT")"
expect_eq "state: enabled" "$(sed -n 2p "$OUT")"
expect_eq "labels: api,web" "$(sed -n 3p "$OUT")"
expect_match '^created: [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "$(sed -n 4p "$OUT")"
expect_match '^epoch: [0-9]+$' "$(sed -n 5p "$OUT")"
expect_eq "token_reuse: none" "$(sed -n 6p "$OUT")"
expect_eq "digits: 6" "$(sed -n 7p "$OUT")"
expect_eq 7 "$(wc -l <"$OUT")" "pod show lines"
grep -qi secret "$OUT" && fail "pod show shows the secret"
EPOCH0=$(sed -n 's/^epoch: //p' "$OUT")

expect_status 0 admin pod show web1 --json
expect_eq '["created","digits","disabled","epoch","id","labels","token_reuse"]' "$(json -c keys)" "pod show --json fields"
expect_eq "$EPOCH0" "$(json .epoch)"
expect_eq "$CREATED" "$(json .created)"

# ---- disable / enable: state flips, the epoch moves on each time
expect_status 0 admin pod disable web1
expect_eq "pod web1 disabled" "$(cat "$OUT")"
expect_eq 1 "$(rcli HGET p2m:pod:web1 disabled)" "disabled in Redis"
expect_status 0 admin pod show web1 --json
expect_eq true "$(json .disabled)"
EPOCH1=$(json .epoch)
((EPOCH1 > EPOCH0)) || fail "disable did not bump the epoch ($EPOCH0 -> $EPOCH1)"
expect_status 0 admin pod ls
expect_match '^web1 +disabled ' "$(grep '^web1 ' "$OUT")" "pod ls shows disabled"

expect_status 0 admin pod enable web1 --json
expect_eq '{"ok":true,"id":"web1","state":"enabled"}' "$(json -c .)"
expect_status 0 admin pod show web1
expect_eq "state: enabled" "$(sed -n 2p "$OUT")"
EPOCH2=$(sed -n 's/^epoch: //p' "$OUT")
((EPOCH2 > EPOCH1)) || fail "enable did not bump the epoch ($EPOCH1 -> $EPOCH2)"

# ---- rotate-secret: a new secret in Redis, same labels, epoch bumped
expect_status 0 admin pod rotate-secret web1
check_provisioning web1 '["api","web"]'
[[ $SECRET != "$SECRET1" ]] || fail "rotate-secret kept the secret"
expect_status 0 admin pod show web1 --json
((EPOCH2 < $(json .epoch))) || fail "rotate-secret did not bump the epoch"

expect_status 0 admin pod rotate-secret web1 -o "$T/web1.json"
expect_empty "$OUT"
expect_eq 600 "$(stat -c %a "$T/web1.json")"
cp "$T/web1.json" "$OUT"
OLD=$SECRET
check_provisioning web1 '["api","web"]'
[[ $SECRET != "$OLD" ]] || fail "rotate-secret -o kept the secret"
admin_fails -r exists pod rotate-secret web1 -o "$T/web1.json"

# ---- pod rm: the pod, its labels and their owners are gone; others stay
expect_status 0 admin pod rm web1
expect_eq "pod web1 removed" "$(cat "$OUT")"
expect_eq 0 "$(rcli EXISTS p2m:pod:web1 p2m:pod:web1:labels)" "pod keys removed"
expect_eq 0 "$(rcli SISMEMBER p2m:pods web1)" "pod removed from p2m:pods"
expect_eq 0 "$(rcli HEXISTS p2m:labels web)" "label web released"
expect_eq 0 "$(rcli HEXISTS p2m:labels api)" "label api released"
expect_eq web2 "$(rcli HGET p2m:labels "$GEN")" "other pods keep their labels"
expect_status 0 admin pod ls --json
expect_eq "[\"9.x_y-Z\",\"$ID64\",\"web2\",\"web3\"]" "$(json -c '[.[].id] | sort')"
expect_status 0 admin pod rm web2 --json
expect_eq '{"ok":true,"id":"web2","state":"removed"}' "$(json -c .)"

# a released label can be given again
expect_status 0 admin pod add web1 --label web
check_provisioning web1 '["web"]'

# ---- state survives a redis restart (AOF)
redis_snapshot "$T/before-restart"
p2m_restart_redis
expect_redis_unchanged "$T/before-restart"
expect_status 0 admin pod show web1

# ---- help, version, and the wrapper script
expect_status 0 admin help
expect_match '^Usage: pipe2me-admin' "$(head -n 1 "$OUT")"
expect_status 0 admin pod --help
expect_match 'rotate-secret' "$(cat "$OUT")"
expect_status 0 "$P2M_BUILD_DIR/tools/pipe2me-admin" --version
expect_match '^pipe2me-admin [0-9]' "$(cat "$OUT")"
expect_status 0 "$P2M_SOURCE_DIR/tools/pipe2me-admin" --version
expect_match '^pipe2me-admin [0-9]' "$(cat "$OUT")"
expect_status 0 "$P2M_SOURCE_DIR/tools/pipe2me-admin" -c "$P2M_CONFIG" pod show web1
expect_status 2 env P2M_BUILD_DIR="$T/nobuild" "$P2M_SOURCE_DIR/tools/pipe2me-admin" --version
expect_file_one_line "$ERR" '^pipe2me-admin: .*cmake -S \. -B build && cmake --build build'
