#!/usr/bin/env bash
# The project's test command (README.md, "Test"). As root, on Debian with Rust installed (the
# integration tests build network namespaces and run real servers in them):
#
#   scripts/test.sh [ARGS...]      ARGS go to cargo test, e.g.  scripts/test.sh rekey
#   scripts/test.sh --deps-only    steps 1 and 2 only
#   scripts/test.sh --help
#
# 1. Installs with apt-get the Debian packages the tests use, those that are missing: one
#    `apt-get update`, one `apt-get install`, with the packages' system services kept from
#    starting (a temporary policy-rc.d), under the lock every install of the lab scripts takes
#    (lablib.sh, ensure_packages):
#      iproute2       ip, ss: namespaces, veths, bridges
#      iputils-ping   ping
#      procps         sysctl in the namespaces
#      coreutils      timeout, sha1sum
#      python3        the labs read get_state; tests send crafted datagrams and capture them
#      iperf3         TCP across rekeys (tests/tests/security.rs)
#      prosody        the XMPP server of the NAT lab and of controller/tests/xmpp.rs
#      coturn         the STUN/TURN server of the NAT lab
#      nftables       the NAT routers of the NAT lab
#      openssl        the certificates of the XMPP servers
#      systemd        systemd-analyze verify on the units (tests/tests/service.rs)
#      dpkg binutils  scripts/package.sh: dpkg-deb, strip (tests/tests/service.rs)
#      man-db groff-base   the package's man pages rendered (tests/tests/service.rs)
#      python3-prometheus-client   the OpenMetrics parser of tests/tests/metrics.rs
#      kmod           only when /dev/net/tun is missing (modprobe tun)
# 2. Makes sure /dev/net/tun exists (modprobe tun, else mknod).
# 3. Runs  cargo build --release --workspace && cargo test --release --workspace [ARGS...]
#    in the checkout, as root, and exits with cargo's status.
#
# Environment: LAB_NO_INSTALL=1 installs nothing (fails, naming what is missing); CI=true makes
# a test that cannot run here fail instead of printing "skipped".
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/scripts/test.sh"
LAB_SCRIPT=test.sh
# ensure_packages, ensure_tun, find_cargo, die, say, usage.
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"

PACKAGES=(ip:iproute2 ss:iproute2 ping:iputils-ping sysctl:procps timeout:coreutils
    sha1sum:coreutils python3:python3 iperf3:iperf3 prosody:prosody prosodyctl:prosody
    turnserver:coturn nft:nftables openssl:openssl systemd-analyze:systemd dpkg-deb:dpkg
    strip:binutils man:man-db groff:groff-base python3-prometheus-client)

deps_only=0
case ${1:-} in
    -h | --help)
        usage
        exit 0
        ;;
    --deps-only)
        [ $# -eq 1 ] || die "--deps-only takes no other argument"
        deps_only=1
        ;;
esac

[ "$(id -u)" -eq 0 ] ||
    die "needs root (the tests create network namespaces and install packages): run  sudo $0${*:+ $*}"

# 1 and 2.
[ -e /dev/net/tun ] || PACKAGES+=(modprobe:kmod)
ensure_packages "${PACKAGES[@]}"
ensure_tun
[ "$deps_only" = 0 ] || exit 0

# 3. Root's cargo, or that of the user who ran sudo (then with their toolchains, unless root
#    has its own).
cargo=$(find_cargo) || die "cargo not found: install Rust (https://rustup.rs), then run this again"
PATH="$(dirname "$cargo"):$PATH"
export PATH
home=$(getent passwd "${SUDO_USER:-root}" | cut -d: -f6)
if [ -z "${RUSTUP_HOME:-}" ] && [ ! -d "$HOME/.rustup" ] && [ "$cargo" = "$home/.cargo/bin/cargo" ] &&
    [ -d "$home/.rustup" ]; then
    export RUSTUP_HOME=$home/.rustup
fi
cd "$REPO"
say "cargo build --release --workspace && cargo test --release --workspace${*:+ $*}"
cargo build --release --workspace && cargo test --release --workspace "$@"
