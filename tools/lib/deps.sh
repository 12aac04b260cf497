# Sourced by tools/quickstart, tests/run and bench/run: installs the Debian packages pipe2me needs,
# only those missing, so a second run touches nothing.

P2M_PKGS_BUILD="cmake make gcc pkg-config libh2o-evloop-dev libssl-dev libhiredis-dev liboath-dev
    libcurl4-openssl-dev libjansson-dev zlib1g-dev"
P2M_PKGS_RUN="redis-server redis-tools oathtool curl openssl iproute2 procps"
P2M_PKGS_TEST="clang libclang-rt-14-dev jq socat"

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
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}
