# pipe2me-admin token ...: add with each option (the token printed once, only its SHA-256 in Redis),
# ls and ls --json, rm by short ID and by full hash, and the refusals, against a real redis-server.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require jq sha256sum
p2m_require_built tools/pipe2me-admin
p2m_start_redis
p2m_write_config

# keyspace: every key with its contents, hashes, sets and strings spelled out.
keyspace() {
    local k
    rcli --scan | while read -r k; do
        printf '%s\n' "$k"
        case $(rcli TYPE "$k") in
        hash) rcli HGETALL "$k" ;;
        set) rcli SMEMBERS "$k" ;;
        string) rcli GET "$k" ;;
        esac
    done
}

# check_token TOKEN: TOKEN has the documented form, is stored under its SHA-256 and nowhere in
# Redis itself; sets HASH and ID.
check_token() {
    expect_match '^p2mt_[A-Za-z0-9_-]{43}$' "$1" "token form"
    HASH=$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)
    ID=${HASH:0:12}
    expect_eq 1 "$(rcli SISMEMBER p2m:tokens "$HASH")" "token hash listed in p2m:tokens"
    expect_eq 1 "$(rcli EXISTS "p2m:token:$HASH")" "token stored under its hash"
    keyspace >"$T/keyspace"
    grep -qF -- "${1#p2mt_}" "$T/keyspace" && fail "the token is in Redis"
    p2m_ok
}

# ---- token add with the defaults: the token alone on stdout
expect_status 0 admin token add
expect_empty "$ERR"
expect_eq 1 "$(wc -l <"$OUT")" "token add prints one line"
TOK1=$(cat "$OUT")
check_token "$TOK1"
H1=$HASH ID1=$ID
expect_eq "1 1 4 0  0" "$(rcli HMGET "p2m:token:$H1" uses uses_left tunnels expires label_prefix pods_created | xargs -d '\n' echo)" \
    "defaults stored: 1 use, 4 tunnels, no expiry, no prefix"
t_now=$(date +%s)
created=$(rcli HGET "p2m:token:$H1" created)
((created >= t_now - 5 && created <= t_now)) || fail "created $created is not now ($t_now)"

# ---- token add with every option, --json
expect_status 0 admin --json token add --uses 3 --tunnels=32 --expires 7d --label-prefix lab-
TOK2=$(json .token)
check_token "$TOK2"
H2=$HASH ID2=$ID
expect_eq true "$(json .ok)" "ok"
expect_eq "$ID2 $H2 3 32 lab-" "$(json -j '.id, " ", .hash, " ", .uses, " ", .tunnels, " ", .label_prefix')" "token add --json fields"
exp=$(json .expires)
t_now=$(date +%s)
((exp >= t_now + 604800 - 5 && exp <= t_now + 604800)) || fail "expires $exp is not 7 days from $t_now"
expect_eq "3 3 32 $exp lab-" "$(rcli HMGET "p2m:token:$H2" uses uses_left tunnels expires label_prefix | xargs)" "stored"

# each option alone, and the bounds
expect_status 0 admin token add --uses 1000000
check_token "$(cat "$OUT")"
expect_eq 1000000 "$(rcli HGET "p2m:token:$HASH" uses_left)" "--uses 1000000"
expect_status 0 admin token add --tunnels 1
check_token "$(cat "$OUT")"
expect_eq 1 "$(rcli HGET "p2m:token:$HASH" tunnels)" "--tunnels 1"
expect_status 0 admin token add --expires=3650d
check_token "$(cat "$OUT")"
H5=$HASH
exp5=$(rcli HGET "p2m:token:$H5" expires)
((exp5 - $(date +%s) > 3649 * 86400)) || fail "--expires 3650d stored $exp5"
expect_status 0 admin token add --expires 30s --label-prefix aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
check_token "$(cat "$OUT")"
H6=$HASH ID6=$ID
[[ $TOK1 != "$TOK2" ]] || fail "two tokens are the same"
expect_eq 6 "$(rcli SCARD p2m:tokens)" "six tokens"

# ---- token ls: never a token; an expired one is marked
rcli HSET "p2m:token:$H6" expires 1000 >/dev/null # as if its 30 s were long past
rcli HSET "p2m:token:$H2" uses_left 1 pods_created 2 >/dev/null
expect_status 0 admin token ls
expect_empty "$ERR"
expect_match '^ID +USES_LEFT +TUNNELS +EXPIRES +LABEL_PREFIX +PODS +CREATED$' "$(head -n 1 "$OUT")" "token ls header"
expect_eq 7 "$(wc -l <"$OUT")" "token ls: header and 6 tokens"
expect_match "^$ID1 +1 +4 +never +- +0 +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$" "$(grep "^$ID1 " "$OUT")" "token ls row"
expect_match "^$ID2 +1 +32 +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +lab- +2 " "$(grep "^$ID2 " "$OUT")" "token ls row, options"
expect_match "^$ID6 .*1970-01-01T00:16:40Z \\(expired\\)" "$(grep "^$ID6 " "$OUT")" "token ls row, expired"
for t in "$TOK1" "$TOK2"; do
    grep -qF -- "${t#p2mt_}" "$OUT" && fail "token ls shows a token"
done
expect_status 0 admin token ls --json
expect_eq 6 "$(json 'length')" "token ls --json: 6 tokens"
expect_eq '["created","expired","expires","hash","id","label_prefix","pods_created","tunnels","uses","uses_left"]' \
    "$(json -c '.[0] | keys')" "token ls --json fields"
expect_eq "3 1 32 $exp false lab- 2" \
    "$(json -j ".[] | select(.id == \"$ID2\") | \"\\(.uses) \\(.uses_left) \\(.tunnels) \\(.expires) \\(.expired) \\(.label_prefix) \\(.pods_created)\"")" \
    "token ls --json row"
expect_eq "true 1000" "$(json -j ".[] | select(.id == \"$ID6\") | \"\\(.expired) \\(.expires)\"")" "token ls --json: expired"
expect_eq "$H1" "$(json -r ".[] | select(.id == \"$ID1\") | .hash")" "token ls --json: the full hash"
grep -qF -- "${TOK2#p2mt_}" "$OUT" && fail "token ls --json shows a token"

# ---- refusals: one line, exit 2, nothing changed
admin_fails -r 'option --uses: expected a number from 1 to 1000000, not "0"' token add --uses 0
admin_fails -r 'option --uses' token add --uses 1000001
admin_fails -r 'option --uses' token add --uses=-1
admin_fails -r 'option --tunnels: expected a number from 1 to 32, not "33"' token add --tunnels 33
admin_fails -r 'option --tunnels' token add --tunnels 0
for d in "" 0s -1d 1y 99999d 3651d 1.5h 10 7D " 7d" 1h30m; do
    admin_fails -r "option --expires: expected a duration such as 30s, 10m, 12h or 7d, at most 3650d" token add --expires "$d"
done
for p in "" dev.lab Dev -dev dev_ aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; do
    admin_fails -r "option --label-prefix: expected 1 to 40 of a-z, 0-9 and '-'" token add --label-prefix "$p"
done
admin_fails -r 'option --uses given twice' token add --uses 1 --uses 2
admin_fails -r 'token add: too many arguments' token add extra
admin_fails -r 'token add: option --label does not apply' token add --label web
admin_fails -r 'token ls: option --uses does not apply' token ls --uses 2
admin_fails -r 'pod add: option --tunnels does not apply' pod add p1 --tunnels 2
admin_fails -r 'token rm: missing argument' token rm
admin_fails -r 'invalid token ID "xyz"' token rm xyz
admin_fails -r 'invalid token ID' token rm ABCDEF012345
admin_fails -r 'invalid token ID' token rm "$TOK1"
admin_fails -r 'unknown token 000000000000' token rm 000000000000
rcli SADD p2m:tokens "${H1:0:12}ffffffffffffffffffffffffffffffffffffffffffffffffffff" >/dev/null
admin_fails -r 'is ambiguous' token rm "$ID1"
rcli SREM p2m:tokens "${H1:0:12}ffffffffffffffffffffffffffffffffffffffffffffffffffff" >/dev/null

# ---- token rm: by short ID, by full hash; the others stay
expect_status 0 admin token rm "$ID1"
expect_empty "$ERR"
expect_eq "token $ID1 removed" "$(cat "$OUT")" "token rm output"
expect_eq "0 0" "$(rcli EXISTS "p2m:token:$H1") $(rcli SISMEMBER p2m:tokens "$H1")" "token gone"
expect_status 0 admin --json token rm "$H2"
expect_eq "true $ID2 $H2" "$(json -j '"\(.ok) \(.id) \(.hash)"')" "token rm --json"
expect_eq 0 "$(rcli EXISTS "p2m:token:$H2")" "token gone (full hash)"
admin_fails -r "unknown token $ID1" token rm "$ID1"
expect_eq 4 "$(rcli SCARD p2m:tokens)" "four tokens left"
expect_eq 1 "$(rcli EXISTS "p2m:token:$H5")" "the others stay"
