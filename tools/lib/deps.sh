# Sourced by tools/quickstart, tests/run and bench/run: installs the Debian packages pipe2me needs,
# only those missing, so a second run touches nothing.

P2M_PKGS_BUILD="cmake make gcc pkg-config libh2o-evloop-dev libssl-dev libhiredis-dev liboath-dev
    libcurl4-openssl-dev libjansson-dev zlib1g-dev libldns-dev scdoc"
P2M_PKGS_RUN="redis-server redis-tools oathtool curl openssl iproute2 procps"
# chromium and certutil (libnss3-tools) are for the browser test, tests/e2e/44-browser.sh; it also
# needs node and npm, which p2m_ensure_node installs only when they are not on PATH at all.
# debhelper, dpkg-dev, fakeroot and lintian build and check the Debian package (tests/e2e/58-install.sh),
# systemd's systemd-analyze verifies its units, man-db and groff render its man pages. tinyproxy is the
# HTTP proxy of tests/e2e/63-pod-proxy.sh, which runs its own in the foreground (on a host with systemd the
# package also starts its service on port 8888, which the test does not use).
# knot (knotd) and bind9-dnsutils (dig) are the authoritative server and the outside client of
# tests/e2e/75-dns-update.sh, which writes its TSIG keys in tsig-keygen's form with openssl
# (Debian 12's bind9-utils has no tsig-keygen).
P2M_PKGS_TEST="knot bind9-dnsutils clang libclang-rt-14-dev jq socat chromium libnss3-tools debhelper dpkg-dev fakeroot lintian tinyproxy
    systemd man-db groff-base"

# p2m_ensure_packages PKG...: apt-get installs the packages that are not installed yet.
p2m_ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "pipe2me: missing packages: ${missing[*]} (run as root, or install them with apt-get)" >&2
        return 1
    fi
    echo "pipe2me: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # An install straight from a stale or empty package list fails; update once, then install.
    # Another apt-get (a second checkout's install, say) may hold the dpkg lock: wait for it.
    local apt=(apt-get -o DPkg::Lock::Timeout=300)
    if ! "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        "${apt[@]}" update -q >/dev/null
        "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# p2m_ensure_node: node and npm on PATH. A node that is already there (from outside Debian, with
# its own npm) is kept: Debian's nodejs and npm are installed only for the commands missing.
p2m_ensure_node() {
    local pkgs=()
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
    [ ${#pkgs[@]} -eq 0 ] || p2m_ensure_packages "${pkgs[@]}"
}

# p2m_ensure_npm_ci DIR: the packages of DIR/package-lock.json in DIR/node_modules, installed by
# `npm ci` when node_modules is missing or older than the lock file.
p2m_ensure_npm_ci() {
    local dir=$1 log
    if [ -f "$dir/node_modules/.package-lock.json" ] && ! [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        return 0
    fi
    echo "pipe2me: installing the npm packages of $dir (npm ci)" >&2
    log=$(mktemp)
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "pipe2me: npm ci failed in $dir" >&2
        return 1
    fi
    rm -f "$log"
}
