# pipe2me-admin refusals: every one exits with status 2, prints nothing on stdout and exactly
# one line `pipe2me-admin: REASON` on stderr, and leaves Redis as it was (admin_fails checks
# all of that against a snapshot of the p2m:* keyspace).
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require jq
p2m_require_built tools/pipe2me-admin
p2m_start_redis
p2m_write_config
BIN=$P2M_BUILD_DIR/tools/pipe2me-admin

# Something to refuse changes to: two pods, labels, a lease.
expect_status 0 admin pod add owner --label taken --label other
expect_status 0 admin pod add second --label mine
rcli HSET "p2m:lease:$P2M_RELAY_PORT_LO" kind pre label taken pod owner addr 127.0.0.1 created "$(date +%s)" >/dev/null
rcli EXPIRE "p2m:lease:$P2M_RELAY_PORT_LO" 600 >/dev/null

ID65=$(printf 'i%.0s' {1..65})
L64=$(printf 'l%.0s' {1..64})
LONG=$(printf 'x%.0s' {1..1000})

# ---- invalid pod IDs, for every command that takes one
for cmd in "pod add" "pod show" "pod rm" "pod disable" "pod enable" "pod rotate-secret"; do
    read -ra words <<<"$cmd"
    admin_fails -r 'empty' "${words[@]}" ''
    admin_fails -r 'longer than 64' "${words[@]}" "$LONG"
    admin_fails -r 'longer than 64' "${words[@]}" "$ID65"
    admin_fails -r 'invalid pod ID' "${words[@]}" 'a/b'
    admin_fails -r 'invalid pod ID' "${words[@]}" 'a"b'
    admin_fails -r 'invalid pod ID' "${words[@]}" "a'b"
    admin_fails -r 'invalid pod ID' "${words[@]}" 'a b'
    admin_fails -r 'invalid pod ID' "${words[@]}" '.hidden'
    admin_fails -r 'invalid pod ID' "${words[@]}" '_x'
    admin_fails -r 'invalid pod ID' "${words[@]}" 'a:b'
    admin_fails -r 'invalid pod ID' "${words[@]}" $'a\nb'
    admin_fails -r 'invalid pod ID' "${words[@]}" $'a\tb'
    admin_fails -r 'invalid pod ID' "${words[@]}" $'caf\xc3\xa9'
    admin_fails -r 'invalid pod ID' "${words[@]}" 'a*'
done
admin_fails -r 'invalid pod ID' label add 'a b' newlabel
admin_fails -r 'invalid pod ID' label add "$ID65" newlabel

# the echoed argument stays short and on one line
admin_fails -r '^pipe2me-admin: invalid pod ID "x{96}\.\.\."' pod show "$LONG"
admin_fails -r '\\x0a' pod show $'bad\nid'
admin_fails -r '\\x1b' pod show $'bad\x1b[31mid'

# ---- invalid labels, in pod add --label and label add/rm
for bad in '-lead' 'trail-' '-' "$L64" 'under_score' 'dot.ted' 'sp ace' $'caf\xc3\xa9' $'\xff' $'nl\n' 'a/b'; do
    admin_fails -r 'invalid label' pod add newpod --label "$bad"
    admin_fails -r 'invalid label' pod add newpod --label ok1 --label "$bad"
    admin_fails -r 'invalid label' label add owner -- "$bad"
    admin_fails -r 'invalid label' label rm -- "$bad"
done
admin_fails -r 'label' pod add newpod --label ''
admin_fails -r 'invalid label' label add owner ''
admin_fails -r 'invalid label' label rm ''
admin_fails -r 'twice' pod add newpod --label dup --label DUP
many=()
for i in {1..33}; do many+=(--label "l$i"); done
admin_fails -r 'at most' pod add newpod "${many[@]}"

# ---- unknown pods, for every command that needs one; rotate-secret -o leaves no file
for cmd in "pod show" "pod rm" "pod disable" "pod enable" "pod rotate-secret"; do
    read -ra words <<<"$cmd"
    admin_fails -r 'unknown pod' "${words[@]}" ghost
done
admin_fails -r 'unknown pod' pod rotate-secret ghost -o "$T/ghost.json"
[[ ! -e $T/ghost.json ]] || fail "refused rotate-secret left $T/ghost.json behind"
admin_fails -r 'unknown pod' label add ghost newlabel
admin_fails -r 'exists' pod add owner --label brandnew

# ---- labels owned by another pod
admin_fails -r 'taken.*owner' label add second taken
admin_fails -r 'taken.*owner' label add second TAKEN
admin_fails -r 'taken' pod add newpod --label taken
admin_fails -r 'taken' pod add newpod --label fresh --label taken
admin_fails -r 'taken' pod add newpod -o "$T/new.json" --label fresh --label taken
[[ ! -e $T/new.json ]] || fail "refused pod add left $T/new.json behind"
admin_fails -r 'unknown label' label rm nosuchlabel

# ---- ports
for bad in 0 65536 99999999999999999999 -1 abc 1x '' ' 80' '80 ' 0x50 1.5; do
    admin_fails lease rm "$bad"
done
p2m_free_port UNUSED
admin_fails -r "$UNUSED" lease rm "$UNUSED"

# ---- command line
admin_fails -r 'missing command'
admin_fails -r 'unknown command' frobnicate
admin_fails -r 'unknown command' Pod ls
admin_fails -r 'missing subcommand' pod
admin_fails -r 'missing subcommand' label
admin_fails -r 'missing subcommand' lease
admin_fails -r 'unknown subcommand' pod list
admin_fails -r 'unknown subcommand' label frob
admin_fails -r 'unknown subcommand' lease add 5
admin_fails -r 'missing argument' pod add
admin_fails -r 'missing argument' pod show
admin_fails -r 'missing argument' pod rm
admin_fails -r 'missing argument' pod disable
admin_fails -r 'missing argument' pod enable
admin_fails -r 'missing argument' pod rotate-secret
admin_fails -r 'missing argument' label add owner
admin_fails -r 'missing argument' label add
admin_fails -r 'missing argument' label rm
admin_fails -r 'missing argument' lease rm
admin_fails -r 'too many arguments' pod add a b
admin_fails -r 'too many arguments' pod show owner second
admin_fails -r 'too many arguments' pod ls extra
admin_fails -r 'too many arguments' label add owner l1 l2
admin_fails -r 'too many arguments' label ls x
admin_fails -r 'too many arguments' lease rm 1 2
admin_fails -r 'too many arguments' lease ls 1
admin_fails -r 'unknown option' --frob pod ls
admin_fails -r 'unknown option' pod ls -x
admin_fails -r 'unknown option' pod ls --jsonx
admin_fails -r 'unknown option' pod ls --label-x=a
admin_fails -r 'needs an argument' pod add newpod --label
admin_fails -r 'needs an argument' pod add newpod -o
admin_fails -r 'does not apply' pod ls --label x
admin_fails -r 'does not apply' pod rm owner --label x
admin_fails -r 'does not apply' label add owner l9 -o "$T/x.json"
admin_fails -r 'does not apply' pod show owner -o "$T/x.json"
admin_fails -r 'given twice' pod add newpod -o "$T/a.json" -o "$T/b.json"
admin_fails -r 'longer than' pod show "$(printf 'x%.0s' {1..5000})"
many=()
for i in {1..300}; do many+=("x$i"); done
admin_fails -r 'too many arguments' pod ls "${many[@]}"
[[ ! -e $T/x.json && ! -e $T/a.json && ! -e $T/b.json ]] || fail "a refused command created an output file"

# -o onto an existing file, a directory, or a path that cannot be created
: >"$T/exists.json"
admin_fails -r 'exists' pod add newpod -o "$T/exists.json"
admin_fails -r 'exists' pod rotate-secret owner -o "$T/exists.json"
admin_fails -r 'exists' pod add newpod -o "$T"
admin_fails -r 'newdir' pod add newpod -o "$T/newdir/x.json"
expect_empty "$T/exists.json"

# ---- configuration
# -c given twice, or naming a file that does not exist (also through P2M_CONFIG)
admin_fails -r 'twice' -c "$P2M_CONFIG" pod ls
redis_snapshot
expect_status 2 "$BIN" pod ls -c
expect_file_one_line "$ERR" '^pipe2me-admin: option --config needs an argument$'
expect_status 2 "$BIN" -c "$T/missing.json" pod ls
expect_file_one_line "$ERR" '^pipe2me-admin: .*missing\.json'
expect_status 2 env P2M_CONFIG="$T/missing.json" "$BIN" pod ls
expect_file_one_line "$ERR" '^pipe2me-admin: .*missing\.json'
expect_status 2 "$BIN" --config= pod ls
expect_file_one_line "$ERR" '^pipe2me-admin: option --config: empty argument$'
expect_redis_unchanged

# config_fails REGEX JSON ARGS...: with this config, ARGS fail with REGEX and change nothing.
config_fails() {
    local re=$1 json=$2
    shift 2
    printf '%s\n' "$json" >"$T/bad.json"
    expect_status 2 "$BIN" -c "$T/bad.json" "$@"
    expect_empty "$OUT"
    expect_file_one_line "$ERR" "^pipe2me-admin: .*$re"
    expect_redis_unchanged
}
REDIS="\"redis\": \"unix:$P2M_REDIS_SOCK\""
config_fails 'bogus' "{$REDIS, \"bogus\": 1}" pod rm owner
config_fails 'relay\.bogus' "{$REDIS, \"relay\": {\"bogus\": 1}}" pod rm owner
config_fails 'registrar\.frob' "{$REDIS, \"registrar\": {\"frob\": true}}" label rm taken
config_fails 'relay\.ports' "{$REDIS, \"relay\": {\"ports\": \"9-1\"}}" pod disable owner
config_fails 'domain' "{$REDIS, \"domain\": \"bad domain\"}" pod add newpod
config_fails 'redis' "{\"redis\": 42}" pod rm owner
config_fails 'JSON' "{$REDIS," pod rm owner
config_fails 'JSON|object' "[1, 2]" pod rm owner
config_fails '' "" pod rm owner

# ---- Redis out of reach: no socket, nothing listening on a TCP port
config_fails 'nowhere\.sock' "{\"redis\": \"unix:$T/nowhere.sock\"}" pod add newpod
config_fails 'nowhere\.sock' "{\"redis\": \"unix:$T/nowhere.sock\"}" pod ls
config_fails 'nowhere\.sock' "{\"redis\": \"unix:$T/nowhere.sock\"}" lease rm 5
config_fails "127\\.0\\.0\\.1:$UNUSED" "{\"redis\": \"127.0.0.1:$UNUSED\"}" pod show owner
p2m_write_config "{\"redis\": \"unix:$T/nowhere.sock\"}"
admin_fails -r 'nowhere\.sock' label ls
admin_fails -r 'nowhere\.sock' pod rotate-secret owner -o "$T/rot.json"
[[ ! -e $T/rot.json ]] || fail "rotate-secret without Redis left $T/rot.json behind"

# ---- after all that, the original state is intact and still works
p2m_write_config
expect_status 0 admin pod ls --json
expect_eq '["owner","second"]' "$(jq -c '[.[].id]' <"$OUT")"
expect_status 0 admin label ls --json
expect_eq '[{"label":"mine","pod":"second"},{"label":"other","pod":"owner"},{"label":"taken","pod":"owner"}]' \
    "$(jq -c '[.[] | {label: .label, pod: .pod}]' <"$OUT")"
expect_eq '["https"]' "$(jq -c '[.[].protocol] | unique' <"$OUT")" "label ls --json: the default protocol"
