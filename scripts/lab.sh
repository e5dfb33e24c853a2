#!/usr/bin/env bash
# The IPOP switch-mode lab (docs: DESIGN.md section 8, README.md "The lab").
#
# Builds, in network namespaces only, the picture from the original switch-mode wiki page:
# hosts on an underlay switch, each host with an LXC-style bridge `lxcbr0` and two containers,
# `ipop-tincan` and `gvpn-controller` running inside every host namespace. Nothing here touches
# the machine's own interfaces: every veth is created inside a lab namespace, and `down` removes
# every namespace whose name starts with "$LAB_PREFIX-".
#
#   scripts/lab.sh up | down | status | demo [--keep]
#   scripts/lab.sh exec NODE CMD...        NODE: sw, h1, h1c2, ...
#   scripts/lab.sh kill|start hN tincan|controller
#
# Environment:
#   LAB_PREFIX     namespace prefix, letters/digits only (default ipl); one lab per prefix
#   LAB_HOSTS      2 or 3 (default 3)
#   LAB_DIR        state dir: configs, logs, pidfiles (default /tmp/ipop-lab-$LAB_PREFIX)
#   IPOP_BIN_DIR   where ipop-tincan and gvpn-controller are (default <repo>/target/release,
#                  or $CARGO_TARGET_DIR/release when that is set)
#   LAB_ICC        1: "icc": true, ARP replicated by the controllers (default); 0: learning switch
#   LAB_NO_DAEMONS 1: build the namespaces and configs only, start no daemon, wait for nothing
#   LAB_SEC        1: encrypted links, "sec": true, a key per host pinned by the others (default);
#                  0: "sec": false everywhere
#   LAB_PLAIN_HOSTS  hosts that say "sec": false even so (e.g. "h2"): a sec mismatch
#   LAB_ROGUE_HOSTS  hosts whose real key the others do not pin (they pin another key instead)
#   LAB_REKEY      "rekey_interval" in seconds (default: the config default, 120)
#   LAB_WAIT_LINKS 0: `up` waits for the daemons and the bridge only, not for links (for labs
#                  where some links must not come up)
#   LAB_WAIT       seconds `up` waits for every link to come online (default 20)
#   LAB_KEEP_ON_FAIL 1: a failed `up` leaves the lab in place for inspection (default: torn down)
#   RUST_LOG       passed to the daemons (default info)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/scripts/lab.sh"

P=${LAB_PREFIX:-ipl}
HOSTS=${LAB_HOSTS:-3}
DIR=${LAB_DIR:-/tmp/ipop-lab-$P}
ICC=${LAB_ICC:-1}
NO_DAEMONS=${LAB_NO_DAEMONS:-0}
SEC=${LAB_SEC:-1}
PLAIN_HOSTS=${LAB_PLAIN_HOSTS:-}
ROGUE_HOSTS=${LAB_ROGUE_HOSTS:-}
REKEY=${LAB_REKEY:-}
WAIT_LINKS=${LAB_WAIT_LINKS:-1}
WAIT=${LAB_WAIT:-20}

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

# Ports and sizes of the generated configs. The TAP MTU is 1400 because a link datagram carries
# the whole inner Ethernet frame: 1500 (underlay) - 20 (IPv4) - 8 (UDP) - 16 (link header)
# - 14 (inner Ethernet) = 1442 bytes of payload at most, rounded down to leave room for an
# authentication tag. README.md, "Overlay MTU".
TINCAN_PORT=5800
ICC_PORT=30000
LINK_PORT=5900
TAP=ipop
TAP_MTU=1400

die() {
    echo "lab.sh: $*" >&2
    exit 1
}
say() { echo "lab.sh[$P]: $*"; }

usage() {
    sed -n '2,/^set -euo/p' "$SELF" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

validate_env() {
    [[ $P =~ ^[A-Za-z0-9]{1,12}$ ]] ||
        die "LAB_PREFIX: expected 1-12 letters or digits (no '-': it separates the node name), got '$P'"
    [[ $HOSTS =~ ^[23]$ ]] || die "LAB_HOSTS: expected 2 or 3, got '$HOSTS'"
    [[ $ICC =~ ^[01]$ ]] || die "LAB_ICC: expected 0 or 1, got '$ICC'"
    [[ $NO_DAEMONS =~ ^[01]$ ]] || die "LAB_NO_DAEMONS: expected 0 or 1, got '$NO_DAEMONS'"
    [[ $SEC =~ ^[01]$ ]] || die "LAB_SEC: expected 0 or 1, got '$SEC'"
    [[ $PLAIN_HOSTS =~ ^(h[123]( h[123])*)?$ ]] || die "LAB_PLAIN_HOSTS: expected host names like 'h2 h3', got '$PLAIN_HOSTS'"
    [[ $ROGUE_HOSTS =~ ^(h[123]( h[123])*)?$ ]] || die "LAB_ROGUE_HOSTS: expected host names like 'h3', got '$ROGUE_HOSTS'"
    [[ -z $REKEY || $REKEY =~ ^[1-9][0-9]*$ ]] || die "LAB_REKEY: expected seconds, got '$REKEY'"
    [[ $WAIT =~ ^[0-9]+$ ]] || die "LAB_WAIT: expected seconds, got '$WAIT'"
}

require_root() {
    [ "$(id -u)" -eq 0 ] ||
        die "needs root (it creates network namespaces): run  sudo $0 ${1:-up}"
}

require_tools() {
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (Debian: apt-get install iproute2 iputils-ping procps python3)"
}

# --- namespaces ------------------------------------------------------------------------------

# Every namespace of this lab, one per line; nothing (and success) when there are none.
lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$P-" || true
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$P-$1"; }

# Host numbers present (from the namespaces, so `status` and `kill` work whatever LAB_HOSTS says).
lab_hosts() {
    lab_namespaces | sed -n "s/^$P-h\([0-9]\)\$/\1/p" | sort -n
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

build_topology() {
    local i c sw=$P-sw h cn
    ip netns add "$sw"
    ns_sysctls "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$sw" link set br0 up

    for i in $(seq 1 "$HOSTS"); do
        h=$P-h$i
        ip netns add "$h"
        # ip_forward=1 as LXC's lxc-net sets it, and redirects on as the kernel default: a host
        # that routes a container's frame back out of lxcbr0 then sends an ICMP redirect, which is
        # the original switch mode's bug the tests look for. Set explicitly because new
        # namespaces inherit IPv4 settings from the machine's own.
        ns_sysctls "$h" net.ipv4.ip_forward=1 \
            net.ipv4.conf.all.send_redirects=1 net.ipv4.conf.default.send_redirects=1
        ip -n "$h" link set lo up

        # Underlay: u0 in the host, h<i> in the switch's br0.
        ip -n "$sw" link add "h$i" type veth peer name u0 netns "$h"
        ip -n "$sw" link set "h$i" master br0 up
        ip -n "$h" link set u0 mtu 1500 up
        ip -n "$h" addr add "10.99.0.$i/24" dev u0

        ip -n "$h" link add lxcbr0 type bridge stp_state 0 forward_delay 0
        ip -n "$h" addr add "10.0.3.$i/24" dev lxcbr0
        ip -n "$h" link set lxcbr0 up

        for c in 1 2; do
            cn=$P-h${i}c$c
            ip netns add "$cn"
            ns_sysctls "$cn"
            ip -n "$cn" link set lo up
            # Both ends at the overlay MTU: a bridge does not fragment, it drops a frame larger
            # than the egress port's MTU, so a container at 1500 would lose its large packets
            # silently on the way into the 1400-byte TAP.
            ip -n "$h" link add "c$c" mtu "$TAP_MTU" type veth \
                peer name eth0 mtu "$TAP_MTU" netns "$cn"
            ip -n "$h" link set "c$c" master lxcbr0 up
            ip -n "$cn" addr add "10.0.3.$i$c/24" dev eth0
            if [ -d /proc/sys/net/ipv6 ]; then
                ip -n "$cn" addr add "fd00:3::$i$c/64" dev eth0 nodad
            fi
            ip -n "$cn" link set eth0 up
        done
    done
}

in_list() { [[ " $2 " == *" $1 "* ]]; }

# Each host's key (ipop.key beside its config, made by `ipop-tincan --key`) and the fingerprint
# the other hosts pin for it: its own, or for a rogue host an unrelated key's.
make_keys() {
    local i
    for i in $(seq 1 "$HOSTS"); do
        mkdir -p "$DIR/h$i"
        "$TINCAN_BIN" --key "$DIR/h$i/ipop.key" >"$DIR/h$i/fpr" 2>/dev/null ||
            die "cannot make a key with $TINCAN_BIN --key"
        if in_list "h$i" "$ROGUE_HOSTS"; then
            "$TINCAN_BIN" --key "$DIR/h$i/decoy.key" >"$DIR/h$i/pinned-fpr" 2>/dev/null
        else
            cp "$DIR/h$i/fpr" "$DIR/h$i/pinned-fpr"
        fi
    done
}

write_configs() {
    local i j peers sep icc sec fpr rekey=""
    icc=$([ "$ICC" = 1 ] && echo true || echo false)
    # Keys need the binary; a lab without daemons may not have one.
    if [ "$SEC" = 1 ] && [ -x "$TINCAN_BIN" ]; then
        make_keys
    elif [ "$SEC" = 1 ] && [ "$NO_DAEMONS" != 1 ]; then
        die "$TINCAN_BIN not found: build it first (cargo build --release --workspace)"
    fi
    [ -z "$REKEY" ] || rekey=$'\n'"  \"rekey_interval\": $REKEY,"
    for i in $(seq 1 "$HOSTS"); do
        mkdir -p "$DIR/h$i"
        sec=false
        if [ "$SEC" = 1 ] && [ -f "$DIR/h$i/fpr" ] && ! in_list "h$i" "$PLAIN_HOSTS"; then
            sec=true
        fi
        peers=""
        sep=""
        for j in $(seq 1 "$HOSTS"); do
            [ "$j" != "$i" ] || continue
            fpr=""
            if [ -f "$DIR/h$j/pinned-fpr" ]; then
                fpr=", \"fpr\": \"$(cat "$DIR/h$j/pinned-fpr")\""
            fi
            peers+="$sep"$'\n'"    {\"ip4\": \"10.0.3.$j\", \"endpoint\": \"10.99.0.$j:$LINK_PORT\"$fpr}"
            sep=","
        done
        cat >"$DIR/h$i/config.json" <<EOF
{
  "ip4": "10.0.3.$i",
  "switchmode": 1,
  "icc": $icc,
  "icc_port": $ICC_PORT,
  "svpn_port": $TINCAN_PORT,
  "link_port": $LINK_PORT,
  "tap_mtu": $TAP_MTU,
  "bridge": "lxcbr0",
  "sec": $sec,$rekey
  "key_file": "$DIR/h$i/ipop.key",
  "tincan_logging": 1,
  "controller_logging": "INFO",
  "peers": [$peers
  ]
}
EOF
    done
}

# --- daemons ---------------------------------------------------------------------------------

daemon_bin() {
    case $1 in
        tincan) echo "$TINCAN_BIN" ;;
        controller) echo "$CONTROLLER_BIN" ;;
        *) die "daemon: expected tincan or controller, got '$1'" ;;
    esac
}

# True when PID is alive and is the daemon this lab started. The command line check guards
# against a recycled PID; a zombie has an empty command line and counts as gone.
pid_is_daemon() {
    local pid=$1 name a args=()
    name=$(basename "$(daemon_bin "$2")")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    { mapfile -d '' args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    for a in "${args[@]}"; do
        [ "${a##*/}" != "$name" ] || return 0
    done
    return 1
}

daemon_pid() {
    local f=$DIR/h$1/$2.pid pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    pid_is_daemon "$pid" "$2" || return 1
    echo "$pid"
}

start_daemon() {
    local i=$1 d=$2 hd=$DIR/h$1 pid argv
    ns_exists "h$i" || die "no namespace $P-h$i: is the lab up?"
    [ -f "$hd/config.json" ] || die "no $hd/config.json: is the lab up?"
    if pid=$(daemon_pid "$i" "$d"); then
        die "h$i $d is already running (pid $pid)"
    fi
    case $d in
        tincan) argv=("$TINCAN_BIN" "$TAP" "$TINCAN_PORT") ;;
        controller) argv=("$CONTROLLER_BIN" -c "$hd/config.json") ;;
        *) die "daemon: expected tincan or controller, got '$d'" ;;
    esac
    [ -x "${argv[0]}" ] || die "${argv[0]} not found: run  cargo build --release --workspace"
    echo "=== $(date '+%F %T') lab.sh: ip netns exec $P-h$i ${argv[*]}" >>"$hd/$d.log"
    # `ip netns exec` execs the command in place, so $! is the daemon's own PID. All three
    # standard streams are redirected: a caller reading our output (cargo test) must not wait
    # for a daemon holding its pipe.
    RUST_LOG=${RUST_LOG:-info} ip netns exec "$P-h$i" "${argv[@]}" \
        </dev/null >>"$hd/$d.log" 2>&1 &
    echo $! >"$hd/$d.pid"
    disown $! # not this shell's job: no "Killed" report when `down` ends it
}

# Stops daemons given as "i:name" (e.g. 2:tincan): SIGTERM to all, up to 3 s for them to exit,
# then SIGKILL. Only the PIDs from the pidfiles, and only while they still are those daemons.
stop_daemons() {
    local spec i d pid n pids=() specs=()
    for spec in "$@"; do
        i=${spec%%:*}
        d=${spec#*:}
        if pid=$(daemon_pid "$i" "$d"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            specs+=("$spec")
        fi
        rm -f "$DIR/h$i/$d.pid"
    done
    for n in $(seq 60); do
        alive_daemons "${pids[@]}" "${specs[@]}" >/dev/null || return 0
        [ "$n" -lt 30 ] || {
            for spec in $(alive_daemons "${pids[@]}" "${specs[@]}"); do
                say "h${spec%%:*} ${spec#*:} ignored SIGTERM for 3 s: SIGKILL"
            done
            for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
        }
        sleep 0.1
    done
}

# alive_daemons PID... SPEC...: prints the specs whose PID still is that daemon; fails if none.
alive_daemons() {
    local half=$(($# / 2)) k found=1 args=("$@")
    for ((k = 0; k < half; k++)); do
        if pid_is_daemon "${args[k]}" "${args[k + half]#*:}"; then
            echo "${args[k + half]}"
            found=0
        fi
    done
    return $found
}

# rpc_state, count_online, host_ready: shared with the other lab script.
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"

daemon_alive() { daemon_pid "$1" "$2" >/dev/null; }

print_log_tails() {
    local i d
    for i in $(seq 1 "$HOSTS"); do
        for d in tincan controller; do
            [ -f "$DIR/h$i/$d.log" ] || continue
            echo "----- h$i $d.log (last 25 lines) -----"
            tail -n 25 "$DIR/h$i/$d.log"
        done
    done
}

# --- subcommands -----------------------------------------------------------------------------

cmd_up() {
    require_root up
    require_tools ip sysctl timeout
    local existing
    existing=$(lab_namespaces | tr '\n' ' ')
    [ -z "$existing" ] ||
        die "a lab with prefix '$P' exists already ($existing): run  LAB_PREFIX=$P $0 down"
    if [ "$NO_DAEMONS" = 0 ]; then
        require_tools python3
        if ! [ -x "$TINCAN_BIN" ] || ! [ -x "$CONTROLLER_BIN" ]; then
            die "no ipop-tincan/gvpn-controller in $BIN: run  cargo build --release --workspace  (or set IPOP_BIN_DIR)"
        fi
    fi

    # From here on, a failure tears down what was built (unless LAB_KEEP_ON_FAIL=1).
    trap 'up_failed' EXIT
    mkdir -p "$DIR"
    echo "$P" >"$DIR/.ipop-lab"
    build_topology
    write_configs

    if [ "$NO_DAEMONS" = 1 ]; then
        trap - EXIT
        say "up: $HOSTS hosts, no daemons (LAB_NO_DAEMONS=1); configs in $DIR"
        return 0
    fi

    local i n why deadline all
    for i in $(seq 1 "$HOSTS"); do
        start_daemon "$i" tincan
    done
    # The controller configures tincan at start: give each tincan up to 5 s to answer first.
    for i in $(seq 1 "$HOSTS"); do
        for n in $(seq 50); do
            rpc_state "$i" "$TINCAN_PORT" >/dev/null && break
            sleep 0.1
        done
        rpc_state "$i" "$TINCAN_PORT" >/dev/null || say "warning: h$i tincan does not answer get_state yet"
        start_daemon "$i" controller
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
            echo "lab.sh[$P]: up: not ready after $((SECONDS - deadline + WAIT)) s:" >&2
            printf '%s' "$why" | sed '/^$/d; s/^/  /' >&2
            print_log_tails >&2
            exit 1
        fi
        sleep 0.3
    done
    trap - EXIT
    say "up: $HOSTS hosts, $([ "$WAIT_LINKS" = 1 ] && echo "all links online" || echo "daemons running"), icc=$([ "$ICC" = 1 ] && echo true || echo false); state in $DIR"
}

up_failed() {
    local rc=$?
    trap - EXIT
    [ $rc -ne 0 ] || return 0
    if [ "${LAB_KEEP_ON_FAIL:-0}" = 1 ]; then
        echo "lab.sh[$P]: up failed; lab kept (LAB_KEEP_ON_FAIL=1): $0 status / down" >&2
    else
        echo "lab.sh[$P]: up failed; tearing down" >&2
        cmd_down >&2 || true
    fi
    exit $rc
}

cmd_down() {
    require_root down
    local f i d pids ns left specs=()
    # 1. The daemons this lab started, by their pidfiles.
    if [ -d "$DIR" ]; then
        for f in "$DIR"/h*/tincan.pid "$DIR"/h*/controller.pid; do
            [ -f "$f" ] || continue
            i=$(basename "$(dirname "$f")")
            d=$(basename "$f" .pid)
            specs+=("${i#h}:$d")
        done
    fi
    [ ${#specs[@]} -eq 0 ] || stop_daemons "${specs[@]}"
    # 2. Anything still running inside this lab's own namespaces (started by `exec`, e.g. an
    #    iperf3 server): a namespace with a process in it outlives `ip netns del`, veths and all.
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
    # 3. The namespaces; their veths and bridges go with them.
    for ns in $(lab_namespaces); do
        ip netns del "$ns" 2>/dev/null || true
    done
    # 4. The state dir, only if this script made it (the marker guards a mistaken LAB_DIR).
    if [ -f "$DIR/.ipop-lab" ]; then
        rm -rf "$DIR"
    fi
    left=$(lab_namespaces | tr '\n' ' ')
    [ -z "$left" ] || die "down: namespaces left behind: $left"
}

cmd_status() {
    require_root status
    local nss i d pid state
    nss=$(lab_namespaces | tr '\n' ' ')
    echo "lab $P: dir $DIR, binaries $BIN"
    if [ -z "$nss" ]; then
        echo "  no namespaces: the lab is down"
        return 0
    fi
    echo "  namespaces: $nss"
    for i in $(lab_hosts); do
        echo "  h$i (10.99.0.$i, lxcbr0 10.0.3.$i):"
        for d in tincan controller; do
            if pid=$(daemon_pid "$i" "$d"); then
                echo "    $d: running, pid $pid"
            elif [ -f "$DIR/h$i/$d.pid" ]; then
                echo "    $d: NOT running (pidfile says $(cat "$DIR/h$i/$d.pid"))"
            else
                echo "    $d: not started"
            fi
        done
        if state=$(rpc_state "$i" "$TINCAN_PORT"); then
            printf '%s' "$state" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
print("    tincan: tap %s mtu %s, controller_alive %s, %d MACs" % (
    s.get("tap"), s.get("mtu"), s.get("controller_alive"), len(s.get("macs") or [])))
for p in s.get("peers") or []:
    print("    link %.8s %-8s %-18s tx %s rx %s frames" % (p.get("uid", "?"), p.get("status"),
          p.get("endpoint"), p.get("tx_frames"), p.get("rx_frames")))' || echo "    tincan: unreadable get_state"
        elif daemon_pid "$i" tincan >/dev/null; then
            echo "    tincan: no answer to get_state"
        fi
        if state=$(rpc_state "$i" "$ICC_PORT"); then
            printf '%s' "$state" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
print("    controller: tincan_alive %s, %d neighbours" % (s.get("tincan_alive"), len(s.get("neigh") or [])))' ||
                echo "    controller: unreadable get_state"
        fi
        printf '    TAP: %s\n' "$(ip -n "$P-h$i" -br link show "$TAP" 2>/dev/null || echo absent)"
    done
}

cmd_exec() {
    [ $# -ge 2 ] || die "usage: $0 exec NODE CMD...   (NODE: sw, h1, h1c2, ...)"
    require_root exec
    local node=$1
    shift
    ns_exists "$node" || die "no node '$node' in lab '$P' (namespaces: $(lab_namespaces | tr '\n' ' '))"
    exec ip netns exec "$P-$node" "$@"
}

# kill|start hN tincan|controller
cmd_daemon() {
    local action=$1 node=${2:-} d=${3:-}
    if ! [[ $node =~ ^h[1-9]$ && $d =~ ^(tincan|controller)$ ]]; then
        die "usage: $0 $action hN tincan|controller"
    fi
    require_root "$action"
    local i=${node#h}
    case $action in
        kill)
            if daemon_pid "$i" "$d" >/dev/null; then
                stop_daemons "$i:$d"
                say "$node $d stopped"
            else
                rm -f "$DIR/$node/$d.pid"
                say "$node $d was not running"
            fi
            ;;
        start)
            start_daemon "$i" "$d"
            say "$node $d started, pid $(cat "$DIR/$node/$d.pid")"
            ;;
    esac
}

# --- demo ------------------------------------------------------------------------------------

ensure_tools() {
    local pair tool pkgs=()
    for pair in ip:iproute2 ping:iputils-ping python3:python3 sysctl:procps timeout:coreutils; do
        tool=${pair%%:*}
        command -v "$tool" >/dev/null 2>&1 || pkgs+=("${pair#*:}")
    done
    [ ${#pkgs[@]} -gt 0 ] || return 0
    command -v apt-get >/dev/null 2>&1 || die "missing packages: ${pkgs[*]} (and no apt-get to install them)"
    say "installing ${pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

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

# Build when a binary is missing or older than any source file.
ensure_binaries() {
    local stale="" b cargo
    for b in "$TINCAN_BIN" "$CONTROLLER_BIN"; do
        if [ ! -x "$b" ]; then
            stale="missing $b"
        elif [ -n "$(find "$REPO/Cargo.toml" "$REPO/Cargo.lock" "$REPO/proto" "$REPO/tincan" \
            "$REPO/controller" \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) \
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
    if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] &&
        [ "$(stat -c %U "$REPO")" = "$SUDO_USER" ]; then
        # Build as the user who owns the checkout, so target/ does not end up owned by root.
        sudo -u "$SUDO_USER" -H env PATH="$(dirname "$cargo"):$PATH" \
            "$cargo" build --release --workspace --manifest-path "$REPO/Cargo.toml"
    else
        env PATH="$(dirname "$cargo"):$PATH" \
            "$cargo" build --release --workspace --manifest-path "$REPO/Cargo.toml"
    fi
}

# "tx rx dup avg" from one ping output file (avg "-" when nothing came back).
ping_summary() {
    local f=$1 tx=0 rx=0 dup=0 avg=- line
    line=$(grep 'packets transmitted' "$f" || true)
    [[ $line =~ ([0-9]+)\ packets\ transmitted,\ ([0-9]+)\ received ]] &&
        tx=${BASH_REMATCH[1]} rx=${BASH_REMATCH[2]}
    [[ $line =~ \+([0-9]+)\ duplicates ]] && dup=${BASH_REMATCH[1]}
    line=$(grep -E '^(rtt|round-trip)' "$f" || true)
    [[ $line =~ =\ [0-9.]+/([0-9.]+)/ ]] && avg=${BASH_REMATCH[1]}
    echo "$tx $rx $dup $avg"
}

# One matrix: every container pings every container on the other hosts, all pairs at once.
# Prints the matrix; returns the number of pairs with loss or duplicates.
ping_matrix() {
    local fam=$1 out=$DIR/demo-$1 nodes=() n s d addr tx rx dup avg cell ok bad=0 dups=0 pairs=0
    local -A ip
    mkdir -p "$out"
    for n in $(seq 1 "$HOSTS"); do
        for s in 1 2; do
            nodes+=("h${n}c$s")
            if [ "$fam" = ipv4 ]; then ip[h${n}c$s]=10.0.3.$n$s; else ip[h${n}c$s]=fd00:3::$n$s; fi
        done
    done
    for s in "${nodes[@]}"; do
        for d in "${nodes[@]}"; do
            [ "${s:0:2}" != "${d:0:2}" ] || continue
            addr=${ip[$d]}
            { ip netns exec "$P-$s" ping -n -c 3 -W 1 -w 5 "$addr" || true; } >"$out/$s-$d" 2>&1 &
        done
    done
    wait
    echo
    echo "$fam: every container pings every container on the other hosts (ping -c 3 -W 1 -w 5)"
    echo "cells: average RTT in ms; 'rx/tx' when replies were missing; '+Nd' = N duplicate replies"
    printf '  %-14s' "from \\ to"
    for d in "${nodes[@]}"; do printf ' %13s' "$d"; done
    echo
    for s in "${nodes[@]}"; do
        printf '  %-14s' "$s ${ip[$s]}"
        for d in "${nodes[@]}"; do
            if [ "${s:0:2}" = "${d:0:2}" ]; then
                printf ' %13s' "."
                continue
            fi
            read -r tx rx dup avg < <(ping_summary "$out/$s-$d")
            pairs=$((pairs + 1))
            ok=1
            if [ "$rx" = 0 ]; then
                cell="no reply"
                ok=0
            elif [ "$rx" = "$tx" ] && [ "$rx" -ge 3 ]; then
                cell=$avg
            else
                cell="$rx/$tx $avg"
                ok=0
            fi
            if [ "$dup" != 0 ]; then
                cell+=" +${dup}d"
                dups=$((dups + 1))
                ok=0
            fi
            [ $ok = 1 ] || bad=$((bad + 1))
            printf ' %13s' "$cell"
        done
        echo
    done
    echo "  $fam: $pairs pairs, $((pairs - bad)) clean (3 replies, no duplicates), $dups with DUP!"
    return $bad
}

cmd_demo() {
    local keep=0 a bad4=0 bad6=0
    for a in "$@"; do
        case $a in
            --keep) keep=1 ;;
            *) die "demo: unknown option '$a' (only --keep)" ;;
        esac
    done
    require_root demo
    ensure_tools
    ensure_binaries
    [ -z "$(lab_namespaces)" ] ||
        die "a lab with prefix '$P' exists already: run  LAB_PREFIX=$P $0 down  (or use another LAB_PREFIX)"

    DEMO_KEEP=$keep
    trap 'demo_exit' EXIT
    trap 'exit 130' INT TERM
    # `up` runs as its own process: it has its own failure trap and tears down after itself.
    LAB_NO_DAEMONS=0 bash "$SELF" up
    bash "$SELF" status
    ping_matrix ipv4 || bad4=$?
    if [ -d /proc/sys/net/ipv6 ]; then ping_matrix ipv6 || bad6=$?; fi
    echo
    if [ $((bad4 + bad6)) -eq 0 ]; then
        say "demo: every container reached every container on the other hosts, once per ping"
        DEMO_RC=0
    else
        say "demo: FAILED: $bad4 IPv4 and $bad6 IPv6 pairs with loss or duplicates (logs: $DIR/h*/)"
        print_log_tails
        DEMO_RC=1
    fi
}

demo_exit() {
    local rc=$?
    trap - EXIT INT TERM
    [ $rc -ne 0 ] || rc=${DEMO_RC:-0}
    if [ "${DEMO_KEEP:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
        say "lab kept (--keep): try  $0 exec h1c1 ping -c 3 -w 5 10.0.3.21 ; then  $0 down"
    else
        say "tearing down"
        cmd_down || true
    fi
    exit "$rc"
}

# --- main ------------------------------------------------------------------------------------

main() {
    local cmd=${1:-help}
    [ $# -eq 0 ] || shift
    case $cmd in
        up | down | status | demo | exec | kill | start) validate_env ;;
    esac
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        exec) cmd_exec "$@" ;;
        kill | start) cmd_daemon "$cmd" "$@" ;;
        demo) cmd_demo "$@" ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
