# shellcheck shell=bash
# The plumbing shared by scripts/lab.sh and scripts/natlab.sh (sourced, not run; scripts/test.sh
# and the benchmarks use parts of it): namespaces, the processes a lab starts and stops,
# teardown, the IPOP binaries, Debian packages, and the readiness check of `up`. The lab scripts
# keep their topology and their command line.
#
# The sourcing script sets, before it sources this file: REPO (the checkout), LAB_SCRIPT (its
# name in messages, e.g. "lab.sh"), SELF (its path: `usage` prints its header comment); and
# before it calls anything here: P (namespace prefix), DIR (state dir), HOSTS. A script with
# processes other than the IPOP daemons redefines `proc_argv` (and `proc_ready`).
#
# Sourcing sets where the binaries are (BIN, BIN_IS_DEFAULT, TINCAN_BIN, CONTROLLER_BIN,
# IPOPCTL_BIN), the user the daemons run as (DAEMON_USER) and the ports and sizes of the
# generated configs.

if [ -n "${IPOP_BIN_DIR:-}" ]; then
    BIN=$IPOP_BIN_DIR
    BIN_IS_DEFAULT=0
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case $CARGO_TARGET_DIR in
        /*) BIN=$CARGO_TARGET_DIR/release ;;
        *) BIN=$REPO/$CARGO_TARGET_DIR/release ;;
    esac
    BIN_IS_DEFAULT=1
else
    BIN=$REPO/target/release
    BIN_IS_DEFAULT=1
fi
TINCAN_BIN=$BIN/ipop-tincan
CONTROLLER_BIN=$BIN/gvpn-controller
IPOPCTL_BIN=$BIN/ipopctl

# The daemons are started as root, as an operator would without systemd, and run as their
# default user after start-up: "ipop" if that account exists (the package creates it), else
# "nobody" (README.md, "Privileges"). What they read or write after that (the config on
# SIGHUP, <key_file>.learned beside the key) is that user's: see `own_host_dir`.
if getent passwd ipop >/dev/null 2>&1; then DAEMON_USER=ipop; else DAEMON_USER=nobody; fi

# Ports and sizes of the generated configs. Containers keep LXC's MTU, 1500 (LAB_MTU overrides
# it); the TAP takes the config's "tap_mtu" (default 1500) unless LAB_TAP_MTU is set; frames
# larger than one link datagram cross in link fragments. LAB_UNDERLAY_MTU is the MTU of the
# underlay veths (default 1500; e.g. 1400 for a smaller path). README.md, "Overlay MTU". (Some
# are used by the sourcing scripts only.)
TINCAN_PORT=5800
# shellcheck disable=SC2034
ICC_PORT=30000
# shellcheck disable=SC2034
LINK_PORT=5900
TAP=ipop
CONTAINER_MTU=${LAB_MTU:-1500}
# shellcheck disable=SC2034
TAP_MTU=${LAB_TAP_MTU:-}
# shellcheck disable=SC2034
UNDERLAY_MTU=${LAB_UNDERLAY_MTU:-1500}

# --- messages --------------------------------------------------------------------------------

die() {
    echo "$LAB_SCRIPT: $*" >&2
    exit 1
}
say() { echo "$LAB_SCRIPT${P:+[$P]}: $*"; }

usage() {
    sed -n '2,/^set -euo/p' "$SELF" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

require_root() {
    [ "$(id -u)" -eq 0 ] ||
        die "needs root (it creates network namespaces): run  sudo $0 ${1:-up}"
}

# --- Debian packages -------------------------------------------------------------------------

# missing_packages SPEC...: the Debian packages of the SPECs that are not satisfied, each once,
# on one line. A SPEC is TOOL:PACKAGE, satisfied when TOOL is on PATH (whoever installed it),
# or PACKAGE, satisfied when dpkg has PACKAGE installed.
missing_packages() {
    local spec pkg pkgs=""
    for spec in "$@"; do
        pkg=${spec#*:}
        if [[ $spec == *:* ]]; then
            ! command -v "${spec%%:*}" >/dev/null 2>&1 || continue
        else
            [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ] ||
                continue
        fi
        [[ " $pkgs " == *" $pkg "* ]] || pkgs+=" $pkg"
    done
    echo "${pkgs# }"
}

# ensure_packages SPEC...: installs with apt-get the packages of the SPECs that are missing.
# Every script of the project installs through here, and so do the tests when they bring up a
# lab: scripts/test.sh installs everything first, and when the tests run in parallel and their
# labs find a package missing anyway, they must not run apt-get side by side (the second one
# fails on dpkg's lock). So the installing runs under an exclusive flock on one lock file, and
# checks again under the lock what is still missing: a caller that waited finds the packages
# there and installs nothing, which makes this idempotent. One `apt-get update`, then one
# install, with service starts denied by a temporary policy-rc.d (Debian's prosody and coturn
# packages would start and enable their system services) unless the machine has one of its own.
# LAB_NO_INSTALL=1: fail instead, naming the packages.
ensure_packages() {
    local pkgs lock=/run/lock/ipop-deps.lock
    pkgs=$(missing_packages "$@")
    [ -n "$pkgs" ] || return 0
    [ "${LAB_NO_INSTALL:-0}" != 1 ] || die "missing packages: $pkgs (LAB_NO_INSTALL=1: install them first)"
    command -v apt-get >/dev/null 2>&1 || die "missing packages: $pkgs (and no apt-get to install them)"
    [ "$(id -u)" -eq 0 ] || die "missing packages: $pkgs (installing them needs root)"
    command -v flock >/dev/null 2>&1 || die "missing packages: $pkgs (and no flock: apt-get install util-linux)"
    [ -d /run/lock ] || lock=/tmp/ipop-deps.lock
    # shellcheck disable=SC2094 # the lock file is only locked, never read or written
    (install_locked "$lock" "$@") 9>>"$lock" || exit 1
}

# The part of ensure_packages under the lock, in a subshell whose fd 9 is the lock file.
install_locked() {
    local lock=$1 pkgs policy=/usr/sbin/policy-rc.d
    shift
    if ! flock -n 9; then
        say "waiting for another install to finish ($lock)"
        flock -w 1800 9 || die "waited 30 min for $lock"
    fi
    pkgs=$(missing_packages "$@")
    [ -n "$pkgs" ] || return 0
    say "installing $pkgs (services not started)"
    trap 'exit 130' INT TERM
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# %s: no service starts while it installs packages\nexit 101\n' \
            "$LAB_SCRIPT" >"$policy"
        chmod 0755 "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || say "warning: apt-get update failed; installing from the lists there are"
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $pkgs >/dev/null ||
        die "apt-get install $pkgs failed"
    pkgs=$(missing_packages "$@")
    [ -z "$pkgs" ] || die "still missing after apt-get: $pkgs"
}

# --- the IPOP binaries -----------------------------------------------------------------------

find_cargo() {
    local c home
    if c=$(command -v cargo 2>/dev/null); then echo "$c" && return 0; fi
    if [ -n "${SUDO_USER:-}" ]; then
        home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
        [ -x "$home/.cargo/bin/cargo" ] && echo "$home/.cargo/bin/cargo" && return 0
    fi
    [ -x /root/.cargo/bin/cargo ] && echo /root/.cargo/bin/cargo && return 0
    return 1
}

# cargo_build CARGO: `cargo build --release --workspace`, as the user who owns the checkout
# when run with sudo, so that target/ does not end up owned by root.
cargo_build() {
    local b=(env PATH="$(dirname "$1"):$PATH" "$1" build --release --workspace --manifest-path "$REPO/Cargo.toml")
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] &&
        [ "$(stat -c %U "$REPO")" = "$SUDO_USER" ]; then
        sudo -u "$SUDO_USER" -H "${b[@]}"
    else
        "${b[@]}"
    fi
}

# Build when a binary is missing or older than any source file.
ensure_binaries() {
    local stale="" b cargo
    for b in "$TINCAN_BIN" "$CONTROLLER_BIN" "$IPOPCTL_BIN"; do
        if [ ! -x "$b" ]; then
            stale="missing $b"
        elif [ -n "$(find "$REPO/Cargo.toml" "$REPO/Cargo.lock" "$REPO/proto" "$REPO/tincan" \
            "$REPO/controller" "$REPO/service" "$REPO/ipopctl" \
            \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) \
            -newer "$b" -print -quit 2>/dev/null)" ]; then
            stale="sources newer than $b"
        fi
    done
    [ -n "$stale" ] || return 0
    if [ "$BIN_IS_DEFAULT" = 0 ]; then
        # The user chose these binaries: use them, only say when they look old.
        [[ $stale != missing* ]] || die "$stale (IPOP_BIN_DIR is set: build or copy them there first)"
        say "warning: $stale (IPOP_BIN_DIR is set: not rebuilding)"
        return 0
    fi
    cargo=$(find_cargo) || die "$stale, and no cargo found: install Rust (rustup.rs), then  cargo build --release --workspace"
    say "building ($stale): cargo build --release --workspace"
    cargo_build "$cargo"
}

# /dev/net/tun for the TAP: load the module only when the device is missing, make the node
# when there is no module either.
ensure_tun() {
    [ ! -e /dev/net/tun ] || return 0
    modprobe tun 2>/dev/null || true
    [ ! -e /dev/net/tun ] || return 0
    mkdir -p /dev/net
    mknod /dev/net/tun c 10 200 || die "cannot create /dev/net/tun"
    chmod 0666 /dev/net/tun
}

# --- namespaces ------------------------------------------------------------------------------

# Every namespace of this lab, one per line; nothing (and success) when there are none.
lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$P-" || true
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$P-$1"; }

# Host numbers present (from the namespaces, so `status` and `kill` work whatever the
# environment says now).
lab_hosts() {
    lab_namespaces | sed -n "s/^$P-h\([0-9]\{1,2\}\)\$/\1/p" | sort -n
}

# Per-namespace sysctls, set before any interface exists so new interfaces inherit the defaults.
# IPv6 DAD and router advertisements off: addresses are usable at once and nothing autoconfigures.
ns_sysctls() {
    local ns=$1
    shift
    local kv=("$@")
    if [ -d /proc/sys/net/ipv6 ]; then
        kv+=(net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
            net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0)
    fi
    [ ${#kv[@]} -eq 0 ] || ip netns exec "$ns" sysctl -q -w "${kv[@]}" >/dev/null
}

# new_ns NODE [SYSCTL=VALUE...]: the namespace $P-NODE, its sysctls set before any interface
# exists, loopback up.
new_ns() {
    local ns=$P-$1
    shift
    ip netns add "$ns"
    ns_sysctls "$ns" "$@"
    ip -n "$ns" link set lo up
}

# new_host_ns I: the namespace of host I. ip_forward=1 as LXC's lxc-net sets it, and redirects
# on as the kernel default: a host that routes a container's frame back out of lxcbr0 then
# sends an ICMP redirect, which is the original switch mode's bug the tests look for. Set
# explicitly because new namespaces inherit IPv4 settings from the machine's own.
new_host_ns() {
    new_ns "h$1" net.ipv4.ip_forward=1 \
        net.ipv4.conf.all.send_redirects=1 net.ipv4.conf.default.send_redirects=1
}

# Container addresses. Up to 9 hosts, host I has two containers, hIc1 and hIc2, at 10.0.3.I1
# and 10.0.3.I2 (fd00:3::I1, fd00:3::I2). A lab of 10 to 32 hosts ("wide", scripts/lab.sh) gives
# host I one container, hIc1, at 10.0.3.(100+I) (fd00:3::(100+I)), and with LAB_CONTAINERS=2 a
# second, hIc2, at 10.0.3.(200+I). Hosts' bridges are 10.0.3.I either way. HOSTS decides.
lab_wide() { [ "${HOSTS:-3}" -gt 9 ]; }
# ensure_neigh_room: the kernel's neighbour table is shared by all namespaces (gc_thresh3,
# default 1024 entries). A wide lab has about 2 entries per pair of hosts (underlay and
# containers), so past about 20 hosts the default overflows ("neighbour table overflow") and
# pings fail at random. Raised to fit, never lowered; said once.
ensure_neigh_room() {
    lab_wide || return 0
    local want=$((4 * HOSTS * HOSTS + 1024)) fam cur
    for fam in ipv4 ipv6; do
        cur=$(sysctl -n "net.$fam.neigh.default.gc_thresh3")
        if [ "$cur" -lt "$want" ]; then
            say "raising net.$fam.neigh.default.gc_thresh3 from $cur to $want (and gc_thresh2 to $((want / 2))) for $HOSTS hosts"
            sysctl -q -w "net.$fam.neigh.default.gc_thresh2=$((want / 2))" \
                "net.$fam.neigh.default.gc_thresh3=$want" >/dev/null
        fi
    done
}
containers_per_host() {
    if [ -n "${LAB_CONTAINERS:-}" ]; then echo "$LAB_CONTAINERS"; elif lab_wide; then echo 1; else echo 2; fi
}
# container_host_part I C: the last part of container C of host I's addresses (IPv4 and IPv6).
container_host_part() {
    if lab_wide; then echo $((100 * $2 + $1)); else echo "$1$2"; fi
}
container_ip4() { echo "10.0.3.$(container_host_part "$1" "$2")"; }
container_ip6() { echo "fd00:3::$(container_host_part "$1" "$2")"; }

# add_lxc_host I: in host I's namespace, the LXC-style bridge lxcbr0 10.0.3.I/24 and its
# containers $P-hIc1 (and $P-hIc2) on it, addressed as above.
add_lxc_host() {
    local i=$1 c h=$P-h$1 cn
    ip -n "$h" link add lxcbr0 type bridge stp_state 0 forward_delay 0
    ip -n "$h" addr add "10.0.3.$i/24" dev lxcbr0
    ip -n "$h" link set lxcbr0 up
    for c in $(seq 1 "$(containers_per_host)"); do
        cn=$P-h${i}c$c
        new_ns "h${i}c$c"
        # Both ends at the containers' MTU: a bridge does not fragment, it drops a frame
        # larger than the egress port's MTU (the TAP's, too).
        ip -n "$h" link add "c$c" mtu "$CONTAINER_MTU" type veth \
            peer name eth0 mtu "$CONTAINER_MTU" netns "$cn"
        ip -n "$h" link set "c$c" master lxcbr0 up
        ip -n "$cn" addr add "$(container_ip4 "$i" "$c")/24" dev eth0
        if [ -d /proc/sys/net/ipv6 ]; then
            ip -n "$cn" addr add "$(container_ip6 "$i" "$c")/64" dev eth0 nodad
        fi
        ip -n "$cn" link set eth0 up
    done
}

# --- keys and the files of the daemons' user -------------------------------------------------

# make_key FILE: a new key in FILE (`ipopctl genkey`, mode 0600, owned by DAEMON_USER, as an
# operator makes it); prints its fingerprint.
make_key() {
    [ -x "$IPOPCTL_BIN" ] || die "$IPOPCTL_BIN not found: build it first (cargo build --release --workspace)"
    "$IPOPCTL_BIN" genkey "$1" 2>"$1.err" ||
        die "cannot make a key with $IPOPCTL_BIN genkey $1: $(cat "$1.err")"
    rm -f "$1.err"
    chown "$DAEMON_USER:" "$1"
}

# own_host_dir DIR: a host's directory (config, key, learned keys) becomes DAEMON_USER's, and
# the lab's directory above it is traversable, so that the daemons reach their files after
# they left root.
own_host_dir() {
    chmod 0755 "$(dirname "$1")"
    chown -R "$DAEMON_USER:" "$1"
}

# --- processes: the IPOP daemons, and a script's other processes -----------------------------
# A process is "NODE:NAME": h<i>:tincan and h<i>:controller in every lab, and whatever else the
# script's `proc_argv` knows (natlab.sh: srv:prosody, srv:turnserver). Its pidfile is
# $DIR/NODE/NAME.pid; its output goes to $DIR/NODE/NAME.log for the IPOP daemons, to NAME.out
# for the others (servers that write their own NAME.log).

# daemon_argv NODE NAME: sets PROC_ARGV to the command line of an IPOP daemon; fails for
# another NAME. tincan reads its control port, first MTU and key from the config, as the
# systemd unit starts it.
daemon_argv() {
    case $2 in
        tincan) PROC_ARGV=("$TINCAN_BIN" --config "$DIR/$1/config.json" --tap "$TAP") ;;
        controller) PROC_ARGV=("$CONTROLLER_BIN" -c "$DIR/$1/config.json") ;;
        *) return 1 ;;
    esac
}

# proc_argv NODE NAME: sets PROC_ARGV to the process's command line.
proc_argv() {
    daemon_argv "$@" || die "daemon: expected tincan or controller, got '$2'"
}

# proc_ready NODE NAME: called after `start` started a process; waits until it serves.
proc_ready() { :; }

proc_out() {
    case $2 in
        tincan | controller) echo "$DIR/$1/$2.log" ;;
        *) echo "$DIR/$1/$2.out" ;;
    esac
}

# True when PID is alive and is that process of this lab: the binary's name is one of its
# arguments (prosody runs as `lua5.4 /usr/bin/prosody ...`), and, but for tincan, an argument
# names this lab's dir (another lab's controller or prosody is not ours). This guards against a
# recycled PID; a zombie has an empty command line and counts as gone.
pid_is_proc() {
    local pid=$1 name=$2 want a args=() found=0 mine=0 PROC_ARGV=()
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    proc_argv "" "$name"
    want=${PROC_ARGV[0]##*/}
    { mapfile -d '' args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    for a in "${args[@]}"; do
        [ "${a##*/}" != "$want" ] || found=1
        [[ $a != "$DIR/"* ]] || mine=1
    done
    [ "$name" = tincan ] && mine=1
    [ $found = 1 ] && [ $mine = 1 ]
}

# proc_pid NODE NAME: prints the PID of a running process of this lab; fails when it is not.
proc_pid() {
    local f=$DIR/$1/$2.pid pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    pid_is_proc "$pid" "$2" || return 1
    echo "$pid"
}

# daemon_alive I NAME: true when daemon NAME of host I runs (for host_ready).
daemon_alive() { proc_pid "h$1" "$2" >/dev/null; }

start_proc() {
    local node=$1 name=$2 d=$DIR/$1 pid out PROC_ARGV=()
    ns_exists "$node" || die "no namespace $P-$node: is the lab up?"
    case $name in
        tincan | controller) [ -f "$d/config.json" ] || die "no $d/config.json: is the lab up?" ;;
    esac
    if pid=$(proc_pid "$node" "$name"); then
        die "$node $name is already running (pid $pid)"
    fi
    proc_argv "$node" "$name"
    case $name in
        tincan | controller)
            [ -x "${PROC_ARGV[0]}" ] || die "${PROC_ARGV[0]} not found: run  cargo build --release --workspace"
            ;;
    esac
    mkdir -p "$d"
    out=$(proc_out "$node" "$name")
    echo "=== $(date '+%F %T') $LAB_SCRIPT: ip netns exec $P-$node ${PROC_ARGV[*]}" >>"$out"
    # `ip netns exec` execs the command in place, so $! is the process's own PID. All three
    # standard streams are redirected: a caller reading our output (cargo test) must not wait
    # for a daemon holding its pipe.
    RUST_LOG=${RUST_LOG-info} ip netns exec "$P-$node" "${PROC_ARGV[@]}" \
        </dev/null >>"$out" 2>&1 &
    echo $! >"$d/$name.pid"
    disown $! # not this shell's job: no "Killed" report when `down` ends it
}

# Stops processes given as NODE:NAME (e.g. h2:tincan): SIGTERM to all, up to 3 s for them to
# exit, then SIGKILL. Only the PIDs from the pidfiles, and only while they still are those
# processes.
stop_procs() {
    local spec pid n k left pids=() specs=()
    for spec in "$@"; do
        if pid=$(proc_pid "${spec%%:*}" "${spec#*:}"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            specs+=("$spec")
        fi
        rm -f "$DIR/${spec%%:*}/${spec#*:}.pid"
    done
    for n in $(seq 60); do
        left=0
        for ((k = 0; k < ${#pids[@]}; k++)); do
            ! pid_is_proc "${pids[k]}" "${specs[k]#*:}" || left=1
        done
        [ $left = 1 ] || return 0
        if [ "$n" -eq 30 ]; then
            for ((k = 0; k < ${#pids[@]}; k++)); do
                if pid_is_proc "${pids[k]}" "${specs[k]#*:}"; then
                    say "${specs[k]%%:*} ${specs[k]#*:} ignored SIGTERM for 3 s: SIGKILL"
                    kill -KILL "${pids[k]}" 2>/dev/null || true
                fi
            done
        fi
        sleep 0.1
    done
}

# The `kill` and `start` subcommands for one process (NODE and NAME checked by the caller).
cmd_kill_start() {
    local action=$1 node=$2 name=$3
    case $action in
        kill)
            if proc_pid "$node" "$name" >/dev/null; then
                stop_procs "$node:$name"
                say "$node $name stopped"
            else
                rm -f "$DIR/$node/$name.pid"
                say "$node $name was not running"
            fi
            ;;
        start)
            start_proc "$node" "$name"
            proc_ready "$node" "$name"
            say "$node $name started, pid $(cat "$DIR/$node/$name.pid")"
            ;;
    esac
}

# proc_status NODE NAME [DETAIL] [ABSENT]: the line `status` prints for a process: running
# (with DETAIL appended), NOT running (a pidfile without its process), or ABSENT when there is
# no pidfile (nothing printed when ABSENT is empty).
proc_status() {
    local node=$1 name=$2 detail=${3:-} absent=${4:-} pid
    if pid=$(proc_pid "$node" "$name"); then
        echo "    $name: running, pid $pid$detail"
    elif [ -f "$DIR/$node/$name.pid" ]; then
        echo "    $name: NOT running (pidfile says $(cat "$DIR/$node/$name.pid"))"
    elif [ -n "$absent" ]; then
        echo "    $name: $absent"
    fi
}

# print_tincan_state JSON [nat]: a tincan get_state result as `status` shows it; with `nat`,
# each link's path and handshake RTT too.
print_tincan_state() {
    printf '%s' "$1" | python3 -c '
import json, sys
nat = sys.argv[1:] == ["nat"]
s = json.loads(sys.stdin.read())
print("    tincan: tap %s mtu %s, controller_alive %s, %d MACs" % (
    s.get("tap"), s.get("mtu"), s.get("controller_alive"), len(s.get("macs") or [])))
for p in s.get("peers") or []:
    if not nat:
        print("    link %.8s %-8s %-18s tx %s rx %s frames" % (p.get("uid", "?"), p.get("status"),
              p.get("endpoint"), p.get("tx_frames"), p.get("rx_frames")))
        continue
    extra = ""
    for k in ("path", "rtt_ms", "rtt"):
        if p.get(k) is not None:
            extra += " %s %s" % (k, p.get(k))
    print("    link %.8s %-8s %-21s%s tx %s rx %s frames" % (p.get("uid", "?"), p.get("status"),
          p.get("endpoint"), extra, p.get("tx_frames"), p.get("rx_frames")))' "${@:2}" ||
        echo "    tincan: unreadable get_state"
}

# print_log_tails [FILE...]: the last 25 lines of every host's daemon logs, then of each FILE.
print_log_tails() {
    local i d f
    for i in $(seq 1 "$HOSTS"); do
        for d in tincan controller; do
            [ -f "$DIR/h$i/$d.log" ] || continue
            echo "----- h$i $d.log (last 25 lines) -----"
            tail -n 25 "$DIR/h$i/$d.log"
        done
    done
    for f in "$@"; do
        [ -f "$f" ] || continue
        echo "----- ${f#"$DIR"/} (last 25 lines) -----"
        tail -n 25 "$f"
    done
}

# --- up and down -----------------------------------------------------------------------------

# start_daemons_and_wait POLL [LOG...]: starts tincan on every host, then each controller once
# its tincan answers, and waits up to WAIT seconds (checking every POLL seconds) until every
# host is ready (host_ready). Otherwise exits 1 after printing what is missing and the log
# tails (the daemons' and each LOG's).
start_daemons_and_wait() {
    local poll=$1 i n why deadline all
    shift
    # When the daemons started (Unix time, ns): scripts/scale.sh measures from here.
    date +%s.%N >"$DIR/daemons-started"
    for i in $(seq 1 "$HOSTS"); do
        start_proc "h$i" tincan
    done
    # The controller configures tincan at start: give each tincan up to 5 s to answer first.
    for i in $(seq 1 "$HOSTS"); do
        for n in $(seq 50); do
            rpc_state "$i" "$TINCAN_PORT" >/dev/null && break
            sleep 0.1
        done
        rpc_state "$i" "$TINCAN_PORT" >/dev/null || say "warning: h$i tincan does not answer get_state yet"
        start_proc "h$i" controller
    done

    deadline=$((SECONDS + WAIT))
    while :; do
        all=1
        why=""
        for i in $(seq 1 "$HOSTS"); do
            if ! why+=$(host_ready "$i")$'\n'; then all=0; fi
        done
        # host_ready returns 2 when a daemon died: no point waiting for it.
        if [ $all = 1 ] && [ -z "${why//$'\n'/}" ]; then break; fi
        if [ $SECONDS -ge $deadline ] || [[ $why == *"is not running"* ]]; then
            echo "${LAB_SCRIPT}[$P]: up: not ready after $((SECONDS - deadline + WAIT)) s:" >&2
            printf '%s' "$why" | sed '/^$/d; s/^/  /' >&2
            print_log_tails "$@" >&2
            exit 1
        fi
        sleep "$poll"
    done
}

# The EXIT trap of `up`: after a failure, tears down what was built (unless LAB_KEEP_ON_FAIL=1).
up_failed() {
    local rc=$?
    trap - EXIT
    [ $rc -ne 0 ] || return 0
    if [ "${LAB_KEEP_ON_FAIL:-0}" = 1 ]; then
        echo "${LAB_SCRIPT}[$P]: up failed; lab kept (LAB_KEEP_ON_FAIL=1): $0 status / down" >&2
    else
        echo "${LAB_SCRIPT}[$P]: up failed; tearing down" >&2
        cmd_down >&2 || true
    fi
    exit $rc
}

# lab_down MARKER PIDFILE...: `down`. Stops the processes of the pidfiles (in that order), ends
# whatever else runs in the lab's namespaces, deletes the namespaces, and the state dir if
# MARKER is in it.
lab_down() {
    local marker=$1 f ns pids left specs=()
    shift
    # 1. What this lab started, by its pidfiles.
    for f in "$@"; do
        [ -f "$f" ] || continue
        specs+=("$(basename "$(dirname "$f")"):$(basename "$f" .pid)")
    done
    [ ${#specs[@]} -eq 0 ] || stop_procs "${specs[@]}"
    # 2. Anything still running inside this lab's own namespaces (started by `exec`, e.g. an
    #    iperf3 server, or a process whose pidfile was lost): a namespace with a process in it
    #    outlives `ip netns del`, veths and all.
    for ns in $(lab_namespaces); do
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [ -n "${pids// /}" ] || continue
        say "down: ending processes left in $ns: $pids"
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        sleep 0.5
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        # shellcheck disable=SC2086
        [ -z "${pids// /}" ] || kill -KILL $pids 2>/dev/null || true
    done
    # 3. The namespaces; their veths, bridges and nftables tables go with them.
    for ns in $(lab_namespaces); do
        ip netns del "$ns" 2>/dev/null || true
    done
    # 4. The state dir, only if this script made it (the marker guards a mistaken LAB_DIR).
    if [ -f "$marker" ]; then
        rm -rf "$DIR"
    fi
    left=$(lab_namespaces | tr '\n' ' ')
    [ -z "$left" ] || die "down: namespaces left behind: $left"
}

# lab_exec NODES NODE CMD...: `exec`, CMD in node NODE's namespace (NODES: the usage hint).
lab_exec() {
    local hint=$1
    shift
    [ $# -ge 2 ] || die "usage: $0 exec NODE CMD...   (NODE: $hint)"
    require_root exec
    local node=$1
    shift
    ns_exists "$node" || die "no node '$node' in lab '$P' (namespaces: $(lab_namespaces | tr '\n' ' '))"
    exec ip netns exec "$P-$node" "$@"
}

# --- readiness -------------------------------------------------------------------------------

# Prints the RPC result (JSON) on stdout; fails when the daemon does not answer.
rpc_state() {
    local i=$1 port=$2
    timeout 5 ip netns exec "$P-h$i" "$TINCAN_BIN" --rpc get_state --port "$port" 2>/dev/null
}

# "ONLINE TOTAL" from a tincan get_state result.
count_online() {
    python3 -c '
import json, sys
try:
    peers = json.loads(sys.stdin.read()).get("peers") or []
except Exception:
    print("0 0"); sys.exit(0)
print(sum(1 for p in peers if p.get("status") == "online"), len(peers))'
}

# The readiness condition of `up` for host i: both daemons run, its tincan answers and reports
# every other host's link online (unless WAIT_LINKS=0), and the controller has attached the TAP
# to lxcbr0. Prints what is missing otherwise; returns 2 when a daemon died.
host_ready() {
    local i=$1 state counts online d
    for d in tincan controller; do
        daemon_alive "$i" "$d" || {
            echo "h$i: $d is not running (exited? see $DIR/h$i/$d.log)"
            return 2
        }
    done
    state=$(rpc_state "$i" "$TINCAN_PORT") || {
        echo "h$i: tincan does not answer get_state on port $TINCAN_PORT"
        return 1
    }
    counts=$(printf '%s' "$state" | count_online)
    online=${counts% *}
    if [ "$WAIT_LINKS" = 1 ] && [ "$online" -lt $((HOSTS - 1)) ]; then
        echo "h$i: $online of $((HOSTS - 1)) links online (tincan reports ${counts#* } peers)"
        return 1
    fi
    ip -n "$P-h$i" link show "$TAP" 2>/dev/null | grep -q "master lxcbr0" || {
        echo "h$i: TAP $TAP is not attached to lxcbr0"
        return 1
    }
}
