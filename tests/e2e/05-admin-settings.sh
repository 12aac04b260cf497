# pipe2me-admin settings against a real redis-server: a pod's token reuse and OTP digits (pod add,
# pod set, pod show, the provisioning file the pod reads), a label's default protocol (label add,
# label set, label ls), bad values refused with nothing changed, and label rm and pod rm taking the
# protocol entry with the label.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require jq oathtool
p2m_require_built tools/pipe2me-admin pod/pipe2me-pod
p2m_start_redis
p2m_write_config
POD=$P2M_BUILD_DIR/pod/pipe2me-pod

# ---- pod add: the defaults are written out, and shown
expect_status 0 admin pod add plain --label p1
expect_eq 6 "$(json .digits)" "default digits in the provisioning JSON"
expect_match '[?&]digits=6(&|$)' "$(json .otpauth)" "otpauth digits"
expect_eq none "$(rcli HGET p2m:pod:plain token_reuse)" "token_reuse in Redis"
expect_eq 6 "$(rcli HGET p2m:pod:plain digits)" "digits in Redis"
expect_status 0 admin pod show plain
expect_eq "token_reuse: none" "$(sed -n 6p "$OUT")"
expect_eq "digits: 6" "$(sed -n 7p "$OUT")"

# ---- pod add with both settings; the provisioning file says 8 and the pod takes it
umask 022
expect_status 0 admin pod add taas --label t1 --token-reuse same-address --digits 8 -o "$T/taas.json"
expect_empty "$OUT"
expect_eq 600 "$(stat -c %a "$T/taas.json")" "provisioning file mode"
cp "$T/taas.json" "$OUT"
expect_eq 8 "$(json .digits)" "provisioning digits"
expect_match '[?&]digits=8(&|$)' "$(json .otpauth)" "otpauth digits"
SECRET=$(json .secret)
expect_match '^[0-9]{8}$' "$(oathtool --totp -d 8 -b "$SECRET")" "oathtool: an 8-digit code from the secret"
expect_eq same-address "$(rcli HGET p2m:pod:taas token_reuse)"
expect_eq 8 "$(rcli HGET p2m:pod:taas digits)"
expect_status 0 admin pod show taas --json
expect_eq '{"token_reuse":"same-address","digits":8}' "$(json -c '{token_reuse, digits}')"
expect_status 0 "$POD" env --provision "$T/taas.json"
expect_match "^P2M_ID='taas'$" "$(grep '^P2M_ID=' "$OUT")" "the pod reads a provisioning file with digits 8"
# a file from before "digits" existed still works; one with another count does not
jq 'del(.digits)' "$T/taas.json" >"$T/old.json" && chmod 600 "$T/old.json"
expect_status 0 "$POD" env --provision "$T/old.json"
jq '.digits = 7' "$T/taas.json" >"$T/seven.json" && chmod 600 "$T/seven.json"
expect_status 2 "$POD" env --provision "$T/seven.json"
expect_match 'digits: expected 6 or 8' "$(cat "$ERR")"
jq '.digits = "8"' "$T/taas.json" >"$T/str.json" && chmod 600 "$T/str.json"
expect_status 2 "$POD" env --provision "$T/str.json"
expect_match 'digits: expected 6 or 8' "$(cat "$ERR")"

# rotate-secret keeps the pod's digits in the new file
expect_status 0 admin pod rotate-secret taas
expect_eq 8 "$(json .digits)" "rotate-secret: digits"
expect_match '[?&]digits=8(&|$)' "$(json .otpauth)"

# ---- pod set: one setting or both, round trip through pod show; the epoch stays
expect_status 0 admin pod show plain --json
EPOCH=$(json .epoch)
expect_status 0 admin pod set plain --token-reuse same-address
expect_eq "pod plain: token_reuse same-address, digits 6" "$(cat "$OUT")"
expect_empty "$ERR"
expect_status 0 admin pod show plain --json
expect_eq '{"token_reuse":"same-address","digits":6}' "$(json -c '{token_reuse, digits}')"
expect_eq "$EPOCH" "$(json .epoch)" "pod set keeps the epoch (sessions stay)"

# a change of digits says the pod needs a new provisioning file
expect_status 0 admin pod set plain --digits 8
expect_eq "pod plain: token_reuse same-address, digits 8" "$(cat "$OUT")"
expect_file_one_line "$ERR" "^pipe2me-admin: pod plain now takes 8-digit codes .*rotate-secret plain -o FILE"
expect_eq 8 "$(rcli HGET p2m:pod:plain digits)"
expect_status 0 admin pod set plain --digits 8 --json
expect_eq '{"ok":true,"id":"plain","token_reuse":"same-address","digits":8,"reprovision":false}' "$(json -c .)"
expect_empty "$ERR"
expect_status 0 admin --json pod set plain --token-reuse=none --digits=6
expect_eq '{"ok":true,"id":"plain","token_reuse":"none","digits":6,"reprovision":true}' "$(json -c .)"
expect_status 0 admin pod show plain
expect_eq "token_reuse: none" "$(sed -n 6p "$OUT")"
expect_eq "digits: 6" "$(sed -n 7p "$OUT")"

# a pod written before these fields existed reads as the defaults, and pod set adds them
rcli HDEL p2m:pod:plain token_reuse digits >/dev/null
expect_status 0 admin pod show plain --json
expect_eq '{"token_reuse":"none","digits":6}' "$(json -c '{token_reuse, digits}')"
expect_status 0 admin pod set plain --digits 6
expect_eq 6 "$(rcli HGET p2m:pod:plain digits)"
expect_eq 0 "$(rcli HEXISTS p2m:pod:plain token_reuse)" "pod set writes only what it is given"

# ---- bad values: exit 2, one line naming the option and its values, Redis unchanged
admin_fails -r 'option --digits: expected 6 or 8, not "9"' pod add bad --digits 9
admin_fails -r 'option --digits: expected 6 or 8, not ""' pod add bad --digits ''
admin_fails -r 'option --digits: expected 6 or 8' pod add bad --digits=
admin_fails -r 'option --digits: expected 6 or 8' pod set plain --digits 7
admin_fails -r 'option --digits needs an argument: 6 or 8' pod set plain --digits
admin_fails -r 'option --digits given twice' pod set plain --digits 8 --digits 8
admin_fails -r 'option --token-reuse: expected none or same-address, not "yes"' pod add bad --token-reuse yes
admin_fails -r 'option --token-reuse: expected none or same-address' pod set plain --token-reuse SAME-ADDRESS
admin_fails -r 'option --token-reuse given twice' pod set plain --token-reuse none --token-reuse=same-address
admin_fails -r 'pod set: nothing to change' pod set plain
admin_fails -r 'unknown pod ghost' pod set ghost --digits 8
admin_fails -r 'invalid pod ID' pod set 'a b' --digits 8
admin_fails -r 'option --digits does not apply' pod show plain --digits 8
admin_fails -r 'option --protocol does not apply' pod add bad --protocol tcp
admin_fails -r 'option --protocol: expected http, https or tcp, not "ftp"' label add plain newl --protocol ftp
admin_fails -r 'option --protocol: expected http, https or tcp' label add plain newl --protocol TCP
admin_fails -r 'option --protocol given twice' label add plain newl --protocol tcp --protocol tcp
admin_fails -r 'label set: nothing to change' label set p1
admin_fails -r 'option --protocol: expected http, https or tcp' label set p1 --protocol ''
admin_fails -r 'unknown label nosuch' label set nosuch --protocol tcp
admin_fails -r 'option --token-reuse does not apply' label add plain newl --token-reuse none
expect_eq 0 "$(rcli EXISTS p2m:pod:bad)" "no pod bad"
expect_eq 0 "$(rcli HEXISTS p2m:labels newl)" "no label newl"

# ---- label add --protocol, label set, label ls
expect_status 0 admin label add plain Raw --protocol tcp
expect_eq "label raw added to pod plain, protocol tcp" "$(cat "$OUT")"
expect_eq tcp "$(rcli HGET p2m:labels:protocol raw)"
expect_status 0 admin --json label add plain web --protocol=http
expect_eq '{"ok":true,"label":"web","pod":"plain","existed":false,"protocol":"http"}' "$(json -c .)"
expect_status 0 admin label add plain plainweb
expect_eq "label plainweb added to pod plain" "$(cat "$OUT")"
expect_eq 0 "$(rcli HEXISTS p2m:labels:protocol plainweb)" "no protocol given: no entry (https)"
# the owner again: without --protocol nothing changes, with it the protocol does
redis_snapshot
expect_status 0 admin --json label add plain raw
expect_eq '{"ok":true,"label":"raw","pod":"plain","existed":true,"protocol":"tcp"}' "$(json -c .)"
expect_redis_unchanged
expect_status 0 admin label add plain raw --protocol http
expect_eq "label raw already belongs to pod plain, protocol http" "$(cat "$OUT")"
expect_eq http "$(rcli HGET p2m:labels:protocol raw)"
# another pod's label is refused with its protocol untouched
admin_fails -r 'belongs to pod plain' label add taas raw --protocol tcp
expect_eq http "$(rcli HGET p2m:labels:protocol raw)"

expect_status 0 admin label set RAW --protocol tcp
expect_eq "label raw of pod plain: protocol tcp" "$(cat "$OUT")"
expect_status 0 admin label set plainweb --protocol https --json
expect_eq '{"ok":true,"label":"plainweb","pod":"plain","protocol":"https"}' "$(json -c .)"
expect_eq https "$(rcli HGET p2m:labels:protocol plainweb)"

expect_status 0 admin label ls
expect_match '^LABEL +POD +PROTOCOL +CONSUMERS$' "$(head -n 1 "$OUT")"
expect_eq "p1 plain https 0|plainweb plain https 0|raw plain tcp 0|t1 taas https 0|web plain http 0" \
    "$(tail -n +2 "$OUT" | tr -s ' ' | paste -sd '|')" "label ls rows"
expect_status 0 admin label ls --json
expect_eq '{"label":"raw","pod":"plain","protocol":"tcp","consumers":0}' "$(json -c '.[] | select(.label == "raw")')"
expect_eq '{"label":"p1","pod":"plain","protocol":"https","consumers":0}' "$(json -c '.[] | select(.label == "p1")')"

# ---- label rm takes the protocol entry; the label given again starts from the default
expect_status 0 admin label rm raw
expect_eq 0 "$(rcli HEXISTS p2m:labels:protocol raw)" "label rm removed the protocol"
expect_status 0 admin label add taas raw
expect_status 0 admin label ls --json
expect_eq https "$(json -r '.[] | select(.label == "raw") | .protocol')" "a label given again has the default"
# a stale entry (written by hand) does not survive the label's next owner
rcli HSET p2m:labels:protocol stale tcp >/dev/null
expect_status 0 admin pod add fresh --label stale
expect_eq 0 "$(rcli HEXISTS p2m:labels:protocol stale)" "pod add clears a stale protocol"
rcli HSET p2m:labels:protocol stale2 tcp >/dev/null
expect_status 0 admin label add fresh stale2
expect_eq 0 "$(rcli HEXISTS p2m:labels:protocol stale2)" "label add clears a stale protocol"

# ---- pod rm takes the protocol entries of all its labels, and no one else's
expect_status 0 admin label set web --protocol tcp
expect_status 0 admin label set t1 --protocol http
expect_status 0 admin pod rm plain
expect_eq 0 "$(rcli HEXISTS p2m:labels:protocol web)" "pod rm removed web's protocol"
expect_eq 0 "$(rcli HEXISTS p2m:labels:protocol plainweb)" "pod rm removed plainweb's protocol"
expect_eq http "$(rcli HGET p2m:labels:protocol t1)" "another pod's label keeps its protocol"
expect_status 0 admin pod rm taas
expect_status 0 admin pod rm fresh
expect_eq 0 "$(rcli EXISTS p2m:labels:protocol)" "nothing left in p2m:labels:protocol"
