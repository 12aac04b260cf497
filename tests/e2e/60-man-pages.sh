#!/usr/bin/env bash
# The man pages scdoc made from docs/man/*.scd into the build tree render without a warning from
# groff, and agree with the programs they describe:
#   - every option a program's --help prints (long --name and short -x) has an entry of its own in
#     the page's OPTIONS section, and no entry is there twice;
#   - every option the page's SYNOPSIS, COMMANDS and OPTIONS sections name is one --help prints;
#   - pipe2me-admin's command words (pod add, label ls, ...) and pipe2me-pod's commands (register,
#     status, ...) are the same in --help and in the page's COMMANDS section.
# Options are read from the roff source (the rendered text breaks long options at hyphens). An
# entry is a text line followed by `.RS 4`, as scdoc writes a term and its indented description.
# Needs man (man-db) and groff.
# shellcheck source=tests/e2e/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

p2m_require man groff
p2m_require_built registrar/pipe2me-registrar relay/pipe2me-relay pod/pipe2me-pod tools/pipe2me-admin
MAN=$P2M_BUILD_DIR/docs/man
PAGES=(pipe2me-registrar.8 pipe2me-relay.8 pipe2me-pod.1 pipe2me-admin.8 pipe2me.json.5)

# ---------------------------------------------------------------- helpers

# roff_text PAGE: the page's roff source with the escapes scdoc writes undone (fonts, \&, \-,
# bullets), so that "\fB--config\fR" reads "--config".
roff_text() {
    sed -e 's/\\f[BIRP]//g' -e 's/\\&//g' -e 's/\\-/-/g' -e 's/\\([a-z][a-z]//g' \
        -e "s/\\\\h'[^']*'//g" -e 's/\\c$//' -e 's/\\e/\\/g' "$1"
}

# section NAME: the lines of the roff text on stdin from `.SH NAME` up to the next `.SH`.
section() {
    awk -v want="$1" '
        /^\.SH / { name = substr($0, 5); gsub(/"/, "", name); inside = (name == want); next }
        inside { print }'
}

# entries: the term lines of the roff text on stdin (a text line followed by `.RS 4`).
entries() {
    awk '/^\.RS 4$/ && prev != "" && prev !~ /^\./ { print prev } { prev = $0 }'
}

# options: the options named in the text on stdin, sorted, one per line: --long (the name up to
# the first character that cannot be in one) and -x (a word of its own).
options() {
    tr -s ' \t[](){}|,;:."'"'"'=`<>*' '\n' | grep -oE '^(--[a-z][a-z0-9-]*|-[a-zA-Z]$)' | sort -u || true
}

# own PROGRAM: the text on stdin without what it says of the other programs' command lines: from a
# mention of another pipe2me program up to the next ")" or the end of the line ("the provisioning
# file (pipe2me-admin pod add -o FILE)" in pipe2me-pod --help is not an option of pipe2me-pod).
own() {
    local others
    others=$(printf '%s\n' admin pod registrar relay | grep -vx "${1#pipe2me-}" | paste -sd '|')
    sed -E "s/pipe2me-($others)[^)]*//g"
}

# commands: the command words at the start of each line on stdin (a synopsis, cut at the first
# double space, which starts a description): up to two words of [a-z-], sorted, one per line.
commands() {
    sed -e 's/^ *//' -e 's/  .*//' |
        awk '{ out = ""; for (i = 1; i <= NF && i <= 2 && $i ~ /^[a-z][a-z-]*$/; i++) out = out (i > 1 ? " " : "") $i
               if (out != "") print out }' | sort -u
}

# expect_subset WHAT A B: every line of A is in B; else fails naming the lines that are not.
expect_subset() {
    local what=$1 missing
    missing=$(comm -23 <(printf '%s\n' "$2" | sed '/^$/d') <(printf '%s\n' "$3" | sed '/^$/d'))
    [[ -z $missing ]] || fail "$what:"$'\n'"  ${missing//$'\n'/$'\n'  }"
    p2m_ok
}

# ---------------------------------------------------------------- every page renders cleanly

for page in "${PAGES[@]}"; do
    f=$MAN/$page
    [[ -s $f ]] || fail "$f is missing or empty: cmake --build build (target man)"
    expect_status 0 env MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings=w -l "$f"
    [[ ! -s $ERR ]] || fail "$page: man --warnings printed on stderr:"$'\n'"$(cat "$ERR")"
    name=${page%.*}
    expect_match "^${name//./\\.}\\(${page##*.}\\) " "$(head -n 1 "$OUT")" "$page: the rendered page's first line"
    expect_match $'(^|\n)NAME\n +'"${name//./\\.} - " "$(cat "$OUT")" "$page: NAME section"
    for sec in SYNOPSIS DESCRIPTION "SEE ALSO"; do
        grep -qx "$sec" "$OUT" || fail "$page: no $sec section in the rendered page"
        p2m_ok
    done
done

# ---------------------------------------------------------------- options and commands

# check_program PROGRAM PAGE
check_program() {
    local prog=$1 page=$2 help text helped defined named dups sec
    help=$("$P2M_BUILD_DIR/$prog" --help | own "${prog##*/}") || fail "$prog --help failed"
    [[ -n $help ]] || fail "$prog --help printed nothing"
    text=$(roff_text "$MAN/$page" | own "${prog##*/}")
    helped=$(options <<<"$help")
    [[ -n $helped ]] || fail "$prog --help: found no option in it"

    defined=$(section OPTIONS <<<"$text" | entries | options)
    expect_subset "$page: options $prog --help prints without an entry in OPTIONS" "$helped" "$defined"
    dups=$(section OPTIONS <<<"$text" | entries | tr -s ' ,|[]=' '\n' | grep -E '^-' | sort | uniq -d || true)
    [[ -z $dups ]] || fail "$page: OPTIONS has more than one entry for: $dups"
    p2m_ok

    for sec in SYNOPSIS COMMANDS OPTIONS; do
        named=$(section "$sec" <<<"$text" | options)
        expect_subset "$page: options $sec names that $prog --help does not print" "$named" "$helped"
    done
}

check_program registrar/pipe2me-registrar pipe2me-registrar.8
check_program relay/pipe2me-relay pipe2me-relay.8
check_program pod/pipe2me-pod pipe2me-pod.1
check_program tools/pipe2me-admin pipe2me-admin.8

# check_commands PROGRAM PAGE: the commands --help lists (lines indented by exactly two spaces that
# start with a lower-case word) are the entries of the page's COMMANDS section.
check_commands() {
    local prog=$1 page=$2 helped documented
    helped=$("$P2M_BUILD_DIR/$prog" --help | grep -E '^  [a-z]' | commands)
    [[ -n $helped ]] || fail "$prog --help: found no command in it"
    documented=$(roff_text "$MAN/$page" | section COMMANDS | entries | commands)
    expect_subset "$page: commands $prog --help lists without an entry in COMMANDS" "$helped" "$documented"
    expect_subset "$page: commands in COMMANDS that $prog --help does not list" "$documented" "$helped"
}

check_commands tools/pipe2me-admin pipe2me-admin.8
check_commands pod/pipe2me-pod pipe2me-pod.1

# The extraction finds what it must, so that the checks above cannot pass on empty sets.
expect_eq "--check-config --config --help --version -c -h" \
    "$("$P2M_BUILD_DIR/registrar/pipe2me-registrar" --help | options | sort | tr '\n' ' ' | sed 's/ $//')" \
    "options in pipe2me-registrar --help"
expect_eq 26 "$("$P2M_BUILD_DIR/tools/pipe2me-admin" --help | grep -E '^  [a-z]' | commands | grep -c ' ')" \
    "two-word commands in pipe2me-admin --help"
