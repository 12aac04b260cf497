# pipe2me-admin label ...: add (normalized, idempotent for the owner, refused for another pod),
# share and unshare (more pods behind one label), rm and ls against a real redis-server.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require jq
p2m_require_built tools/pipe2me-admin
p2m_start_redis
p2m_write_config

expect_status 0 admin pod add alpha --label one
expect_status 0 admin pod add beta --label two

# ---- label add: lower-cased, shown by pod show and label ls
expect_status 0 admin label add alpha Extra
expect_eq "label extra added to pod alpha" "$(cat "$OUT")"
expect_empty "$ERR"
expect_eq alpha "$(rcli HGET p2m:labels extra)" "owner in Redis"
expect_eq 1 "$(rcli SISMEMBER p2m:pod:alpha:labels extra)" "label in the pod's set"
expect_status 0 admin pod show alpha
expect_eq "labels: extra,one" "$(sed -n 3p "$OUT")"

# ---- label add of a label the pod already owns: success, nothing changes
redis_snapshot
expect_status 0 admin label add alpha EXTRA
expect_eq "label extra already belongs to pod alpha" "$(cat "$OUT")"
expect_redis_unchanged
expect_status 0 admin --json label add alpha extra
expect_eq '{"ok":true,"label":"extra","pod":"alpha","existed":true,"protocol":"https"}' "$(json -c .)"
expect_redis_unchanged
expect_status 0 admin label add beta b2 --json
expect_eq '{"ok":true,"label":"b2","pod":"beta","existed":false,"protocol":"https"}' "$(json -c .)"

# ---- a label owned by another pod is refused, in any case
admin_fails -r 'extra' label add beta extra
admin_fails -r 'two' label add alpha TWO
admin_fails -r 'one' pod add gamma --label one
admin_fails -r 'one' pod add gamma --label fresh --label one
expect_eq 0 "$(rcli HEXISTS p2m:labels fresh)" "refused pod add left no label behind"
expect_eq 0 "$(rcli EXISTS p2m:pod:gamma)" "refused pod add left no pod behind"
expect_eq alpha "$(rcli HGET p2m:labels extra)" "owner unchanged"

# ---- label ls: sorted by label, text and JSON
expect_status 0 admin label ls
expect_match '^LABEL +POD +PROTOCOL +CONSUMERS$' "$(head -n 1 "$OUT")" "label ls header"
expect_eq "b2 beta https 0|extra alpha https 0|one alpha https 0|two beta https 0" "$(tail -n +2 "$OUT" | tr -s ' ' | paste -sd '|')" \
    "label ls rows"
expect_status 0 admin label ls --json
expect_eq '[{"label":"b2","pod":"beta"},{"label":"extra","pod":"alpha"},{"label":"one","pod":"alpha"},{"label":"two","pod":"beta"}]' \
    "$(json -c '[.[] | {label: .label, pod: .pod}]')" "label ls --json"
expect_eq '["https"]' "$(json -c '[.[].protocol] | unique')" "label ls --json: the default protocol"

# ---- label share / unshare: more pods serve a label beside its owner; ls shows them all
expect_status 0 admin pod add gamma --label three
expect_status 0 admin label share Extra gamma
expect_eq "pod gamma shares label extra of pod alpha" "$(cat "$OUT")"
expect_eq 1 "$(rcli SISMEMBER p2m:label:extra:sharers gamma)" "sharer in Redis"
expect_eq 1 "$(rcli SISMEMBER p2m:pod:gamma:shares extra)" "label in the sharer's set"
expect_status 0 admin pod show gamma
expect_eq "labels: three|shares: extra" "$(grep -E '^(labels|shares):' "$OUT" | paste -sd '|')" "pod show: the labels it shares"
expect_status 0 admin pod show gamma --json
expect_eq '["extra"]' "$(json -c .shares)" "pod show --json: shares"
expect_status 0 admin pod show alpha --json
expect_eq 'false' "$(json 'has("shares") | tostring')" "pod show --json: no shares, no key"
expect_eq alpha "$(rcli HGET p2m:labels extra)" "the owner stays"
redis_snapshot
expect_status 0 admin label share extra gamma --json
expect_eq '{"ok":true,"label":"extra","pod":"gamma","owner":"alpha","existed":true}' "$(json -c .)"
expect_redis_unchanged
expect_status 0 admin label share extra beta
expect_status 0 admin label ls
expect_eq "b2 beta https 0|extra alpha,beta,gamma https 0|one alpha https 0|three gamma https 0|two beta https 0" \
    "$(tail -n +2 "$OUT" | tr -s ' ' | paste -sd '|')" "label ls rows: the owner, then the sharers"
expect_status 0 admin label ls --json
expect_eq '{"label":"extra","pod":"alpha","protocol":"https","consumers":0,"sharers":["beta","gamma"]}' \
    "$(json -c '.[] | select(.label == "extra")')" "label ls --json: the sharers"
expect_eq '{"label":"one","pod":"alpha","protocol":"https","consumers":0}' "$(json -c '.[] | select(.label == "one")')" \
    "label ls --json: an unshared label as before"
# refused, one line, exit 2, nothing changed
admin_fails -r ': unknown label nosuch$' label share nosuch gamma
admin_fails -r ': unknown pod ghost$' label share extra ghost
admin_fails -r ': pod alpha owns label extra$' label share extra alpha
admin_fails -r 'invalid label' label share 'ex tra' gamma
admin_fails -r 'invalid pod ID' label share extra 'gam ma'
admin_fails -r 'label share: missing argument' label share extra
admin_fails -r 'label share: too many arguments' label share extra gamma beta
admin_fails -r 'option --protocol does not apply' label share extra gamma --protocol tcp
admin_fails -r ': pod alpha owns label extra \(label rm takes it\)$' label unshare extra alpha
admin_fails -r ': pod gamma does not share label two$' label unshare two gamma
admin_fails -r ': unknown label nosuch$' label unshare nosuch gamma
admin_fails -r 'label extra belongs to pod alpha' label add gamma extra
expect_status 0 admin label unshare extra beta
expect_eq "pod beta no longer shares label extra of pod alpha" "$(cat "$OUT")"
expect_eq 0 "$(rcli SISMEMBER p2m:label:extra:sharers beta)" "beta no longer a sharer"
expect_eq 0 "$(rcli EXISTS p2m:pod:beta:shares)" "beta's shares set gone with its last share"
admin_fails -r ': pod beta does not share label extra$' label unshare extra beta
# pod rm of a sharer takes only its share
expect_status 0 admin pod rm gamma
expect_eq 0 "$(rcli EXISTS p2m:label:extra:sharers)" "the last sharer gone"
expect_eq alpha "$(rcli HGET p2m:labels extra)" "the owner keeps its label"
expect_status 0 admin label share extra beta

# ---- label rm: says who owned it, frees it for someone else
expect_status 0 admin label rm Extra
expect_eq "label extra removed from pod alpha and from the pods sharing it: beta" "$(cat "$OUT")"
expect_eq 0 "$(rcli HEXISTS p2m:labels extra)" "owner entry gone"
expect_eq 0 "$(rcli EXISTS p2m:label:extra:sharers p2m:pod:beta:shares)" "sharers gone with the label"
expect_eq 0 "$(rcli SISMEMBER p2m:pod:alpha:labels extra)" "gone from the pod's set"
admin_fails -r 'extra' label rm extra
expect_status 0 admin label add beta extra
expect_eq beta "$(rcli HGET p2m:labels extra)"
expect_status 0 admin label rm extra --json
expect_eq '{"ok":true,"label":"extra","pod":"beta"}' "$(json -c .)"

# ---- a pod may end up with no label at all; ls shows "-"
expect_status 0 admin label rm one
expect_status 0 admin pod show alpha
expect_eq "labels: -" "$(sed -n 3p "$OUT")"
expect_status 0 admin pod show alpha --json
expect_eq '[]' "$(json -c .labels)"
expect_status 0 admin pod ls
expect_match '^alpha +enabled +- ' "$(grep '^alpha ' "$OUT")"

# ---- label add to an unknown pod
admin_fails -r 'ghost' label add ghost newlabel
expect_eq 0 "$(rcli HEXISTS p2m:labels newlabel)"

# ---- label ls on an empty store
expect_status 0 admin pod rm alpha
expect_status 0 admin pod rm beta
expect_status 0 admin label ls --json
expect_eq '[]' "$(json -c .)"
expect_status 0 admin label ls
expect_eq 1 "$(wc -l <"$OUT")" "label ls: header only"
