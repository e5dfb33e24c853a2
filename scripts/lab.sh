#!/usr/bin/env bash
# The IPOP switch-mode lab (docs: README.md "The lab").
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
#   LAB_HOSTS      2 to 32 (default 3). Up to 9 hosts each has two containers, hIc1 and hIc2 at
#                  10.0.3.I1 and 10.0.3.I2; from 10 hosts on each has one, hIc1 at 10.0.3.(100+I)
#                  (scripts/scale.sh measures such a lab)
#   LAB_CONTAINERS 1 or 2 containers per host (default: 2 up to 9 hosts, 1 above; the second
#                  container of a host I above 9 is at 10.0.3.(200+I))
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
#   LAB_CIPHER     "cipher" of every host's config (e.g. aes-256-gcm, chacha20-poly1305, auto;
#                  default: none written, the config default applies)
#   LAB_CIPHERS    "cipher" per host, e.g. "h2=chacha20-poly1305" on top of LAB_CIPHER
#   LAB_WAIT_LINKS 0: `up` waits for the daemons and the bridge only, not for links (for labs
#                  where some links must not come up)
#   LAB_WAIT       seconds `up` waits for every link to come online (default 20)
#   LAB_KEEP_ON_FAIL 1: a failed `up` leaves the lab in place for inspection (default: torn down)
#   LAB_MTU        the containers' MTU (default 1500, LXC's)
#   LAB_TAP_MTU    "tap_mtu" in the configs (default: not written, the config default, 1500)
#   LAB_LINK_MTU   "link_mtu" in the configs (default: not written, the config default, 1500)
#   LAB_UNDERLAY_MTU  MTU of the underlay veths (u0 and its switch port; default 1500), e.g.
#                  1400 for a path smaller than link_mtu
#   LAB_UNDERLAY   4 (default): the underlay is IPv4, hosts at 10.99.0.N; 6: IPv6 only, hosts at
#                  fd99::N, and the configs' peer endpoints are [fd99::N]:port
#   LAB_LOSS       percent of the link datagrams the underlay switch drops at random, each way
#                  (nftables `numgen random`; default 0)
#   LAB_REORDER    percent of the link datagrams the switch holds back in a slow queue (a 5 Mbit/s
#                  HTB class with room for 10 datagrams), so that later ones overtake them; those
#                  that do not fit are dropped (default 0)
#   LAB_DUP        percent of the link datagrams the switch sends twice (nftables `dup`; default 0)
#   RUST_LOG       passed to the daemons (default info; set empty, the configs' levels apply)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/scripts/lab.sh"
LAB_SCRIPT=lab.sh
# Namespaces, processes, teardown, binaries, packages, readiness: shared with natlab.sh. Also
# where the binaries are (BIN, TINCAN_BIN, CONTROLLER_BIN) and the config's ports and TAP MTU.
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"

P=${LAB_PREFIX:-ipl}
HOSTS=${LAB_HOSTS:-3}
DIR=${LAB_DIR:-/tmp/ipop-lab-$P}
ICC=${LAB_ICC:-1}
NO_DAEMONS=${LAB_NO_DAEMONS:-0}
SEC=${LAB_SEC:-1}
PLAIN_HOSTS=${LAB_PLAIN_HOSTS:-}
ROGUE_HOSTS=${LAB_ROGUE_HOSTS:-}
REKEY=${LAB_REKEY:-}
CIPHER=${LAB_CIPHER:-}
CIPHERS=${LAB_CIPHERS:-}
UNDERLAY=${LAB_UNDERLAY:-4}
WAIT_LINKS=${LAB_WAIT_LINKS:-1}
# A wide lab needs longer: every host starts 31 links and the checks take a while.
WAIT=${LAB_WAIT:-$((HOSTS > 9 ? 3 * HOSTS : 20))}
LOSS=${LAB_LOSS:-0}
REORDER=${LAB_REORDER:-0}
DUP=${LAB_DUP:-0}
LINK_MTU=${LAB_LINK_MTU:-}

validate_env() {
    [[ $P =~ ^[A-Za-z0-9]{1,12}$ ]] ||
        die "LAB_PREFIX: expected 1-12 letters or digits (no '-': it separates the node name), got '$P'"
    if ! [[ $HOSTS =~ ^[0-9]{1,2}$ ]] || [ "$HOSTS" -lt 2 ] || [ "$HOSTS" -gt 32 ]; then
        die "LAB_HOSTS: expected 2 to 32, got '$HOSTS'"
    fi
    [[ -z ${LAB_CONTAINERS:-} || $LAB_CONTAINERS =~ ^[12]$ ]] ||
        die "LAB_CONTAINERS: expected 1 or 2, got '$LAB_CONTAINERS'"
    local pct
    for pct in LOSS REORDER DUP; do
        [[ ${!pct} =~ ^[0-9]{1,2}$ ]] || die "LAB_$pct: expected a percentage 0-99, got '${!pct}'"
    done
    [[ $ICC =~ ^[01]$ ]] || die "LAB_ICC: expected 0 or 1, got '$ICC'"
    [[ $NO_DAEMONS =~ ^[01]$ ]] || die "LAB_NO_DAEMONS: expected 0 or 1, got '$NO_DAEMONS'"
    [[ $SEC =~ ^[01]$ ]] || die "LAB_SEC: expected 0 or 1, got '$SEC'"
    [[ $PLAIN_HOSTS =~ ^(h[0-9]{1,2}( h[0-9]{1,2})*)?$ ]] || die "LAB_PLAIN_HOSTS: expected host names like 'h2 h3', got '$PLAIN_HOSTS'"
    [[ $ROGUE_HOSTS =~ ^(h[0-9]{1,2}( h[0-9]{1,2})*)?$ ]] || die "LAB_ROGUE_HOSTS: expected host names like 'h3', got '$ROGUE_HOSTS'"
    [[ -z $REKEY || $REKEY =~ ^[1-9][0-9]*$ ]] || die "LAB_REKEY: expected seconds, got '$REKEY'"
    [[ $CIPHER =~ ^[a-z0-9-]*$ ]] || die "LAB_CIPHER: expected a cipher name like aes-256-gcm, got '$CIPHER'"
    local c='h[0-9]{1,2}=(auto|aes-256-gcm|chacha20-poly1305)'
    [[ $CIPHERS =~ ^($c( $c)*)?$ ]] || die "LAB_CIPHERS: expected entries like 'h2=chacha20-poly1305', got '$CIPHERS'"
    [[ $WAIT =~ ^[0-9]+$ ]] || die "LAB_WAIT: expected seconds, got '$WAIT'"
    [[ $UNDERLAY =~ ^[46]$ ]] || die "LAB_UNDERLAY: expected 4 or 6, got '$UNDERLAY'"
    local v
    for v in LAB_MTU LAB_TAP_MTU LAB_LINK_MTU LAB_UNDERLAY_MTU; do
        [[ -z ${!v:-} || ${!v} =~ ^[0-9]{3,4}$ ]] ||
            die "$v: expected an MTU (e.g. 1500), got '${!v}'"
    done
}

require_tools() {
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (Debian: apt-get install iproute2 iputils-ping procps python3)"
}

# --- topology and configs --------------------------------------------------------------------

build_topology() {
    local i sw=$P-sw h
    new_ns sw
    ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0
    ip -n "$sw" link set br0 up

    for i in $(seq 1 "$HOSTS"); do
        h=$P-h$i
        new_host_ns "$i"
        # Underlay: u0 in the host, h<i> in the switch's br0.
        ip -n "$sw" link add "h$i" type veth peer name u0 netns "$h"
        ip -n "$sw" link set "h$i" mtu "$UNDERLAY_MTU" master br0 up
        ip -n "$h" link set u0 mtu "$UNDERLAY_MTU" up
        if [ "$UNDERLAY" = 6 ]; then
            ip -n "$h" addr add "fd99::$i/64" dev u0 nodad
        else
            ip -n "$h" addr add "10.99.0.$i/24" dev u0
        fi
        add_lxc_host "$i"
    done
    impair_underlay
}

# LAB_LOSS, LAB_REORDER, LAB_DUP: the underlay switch mistreats link datagrams (UDP between the
# hosts), in the switch's namespace only, so the hosts' own stacks see nothing but what arrives
# (a drop in a host's output chain would fail the sender's sendto). Loss and the choice of what
# is held back are nftables rules on the bridge's forwarding path (`numgen random`, a fresh draw
# per rule); held-back datagrams get skb priority 1:20, which the HTB qdisc of every switch port
# puts in a slow class. Duplicates come from each port's ingress hook, which sends a copy into
# the bridge (`dup to "br0"`). Every rule counts: `scripts/lab.sh exec sw nft list ruleset`.
impair_underlay() {
    local sw=$P-sw i rules
    [ "$LOSS$REORDER$DUP" != 000 ] || return 0
    require_tools nft tc
    rules="table bridge ipoplab {
    chain impair {
        type filter hook forward priority 0; policy accept;"
    [ "$LOSS" = 0 ] ||
        rules+=$'\n'"        meta l4proto udp numgen random mod 100 < $LOSS counter drop"
    [ "$REORDER" = 0 ] ||
        rules+=$'\n'"        meta l4proto udp numgen random mod 100 < $REORDER counter meta priority set 1:20"
    rules+=$'\n    }\n}'
    if [ "$DUP" != 0 ]; then
        rules+=$'\n'"table netdev ipoplabdup {"
        for i in $(seq 1 "$HOSTS"); do
            rules+="
    chain port$i {
        type filter hook ingress device \"h$i\" priority 0; policy accept;
        meta l4proto udp numgen random mod 100 < $DUP counter dup to \"br0\"
    }"
        done
        rules+=$'\n}'
    fi
    printf '%s\n' "$rules" | ip netns exec "$sw" nft -f - || die "nft: cannot load the underlay's loss rules"
    # One datagram per packet on the underlay: without this, tincan's UDP GSO sends cross the
    # veths and the switch as one packet of up to 64 KB, and a rule would drop, delay or copy
    # dozens of datagrams at once.
    for i in $(seq 1 "$HOSTS"); do
        ip -n "$P-h$i" link set dev u0 gso_max_segs 1
    done
    [ "$REORDER" = 0 ] && return 0
    for i in $(seq 1 "$HOSTS"); do
        # shellcheck disable=SC2015 # any failing step dies
        ip netns exec "$sw" tc qdisc add dev "h$i" root handle 1: htb default 10 &&
            ip netns exec "$sw" tc class add dev "h$i" parent 1: classid 1:10 htb rate 10gbit quantum 60000 &&
            ip netns exec "$sw" tc class add dev "h$i" parent 1: classid 1:20 htb \
                rate 5mbit ceil 5mbit burst 1600 cburst 1600 quantum 1600 &&
            ip netns exec "$sw" tc qdisc add dev "h$i" parent 1:20 handle 20: pfifo limit 10 ||
            die "tc: cannot set up the held-back queue on the switch port h$i"
    done
}

in_list() { [[ " $2 " == *" $1 "* ]]; }

# Host I's underlay address as an endpoint's host part.
underlay_addr() {
    if [ "$UNDERLAY" = 6 ]; then echo "[fd99::$1]"; else echo "10.99.0.$1"; fi
}

# Each host's key (ipop.key beside its config, made by `ipopctl genkey`) and the fingerprint
# the other hosts pin for it: its own, or for a rogue host an unrelated key's.
make_keys() {
    local i
    for i in $(seq 1 "$HOSTS"); do
        mkdir -p "$DIR/h$i"
        make_key "$DIR/h$i/ipop.key" >"$DIR/h$i/fpr"
        if in_list "h$i" "$ROGUE_HOSTS"; then
            make_key "$DIR/h$i/decoy.key" >"$DIR/h$i/pinned-fpr"
        else
            cp "$DIR/h$i/fpr" "$DIR/h$i/pinned-fpr"
        fi
    done
}

write_configs() {
    local i j peers sep icc sec fpr rekey="" cipher="" mtus="" host_cipher entry
    icc=$([ "$ICC" = 1 ] && echo true || echo false)
    # Keys need the binary; a lab without daemons may not have one.
    if [ "$SEC" = 1 ] && [ -x "$IPOPCTL_BIN" ]; then
        make_keys
    elif [ "$SEC" = 1 ] && [ "$NO_DAEMONS" != 1 ]; then
        die "$IPOPCTL_BIN not found: build it first (cargo build --release --workspace)"
    fi
    [ -z "$REKEY" ] || rekey=$'\n'"  \"rekey_interval\": $REKEY,"
    [ -z "$CIPHER" ] || cipher=$'\n'"  \"cipher\": \"$CIPHER\","
    [ -z "$TAP_MTU" ] || mtus+=$'\n'"  \"tap_mtu\": $TAP_MTU,"
    [ -z "$LINK_MTU" ] || mtus+=$'\n'"  \"link_mtu\": $LINK_MTU,"
    for i in $(seq 1 "$HOSTS"); do
        mkdir -p "$DIR/h$i"
        sec=false
        if [ "$SEC" = 1 ] && [ -f "$DIR/h$i/fpr" ] && ! in_list "h$i" "$PLAIN_HOSTS"; then
            sec=true
        fi
        host_cipher=$cipher
        for entry in $CIPHERS; do
            [ "${entry%%=*}" != "h$i" ] || host_cipher=$'\n'"  \"cipher\": \"${entry#*=}\","
        done
        peers=""
        sep=""
        for j in $(seq 1 "$HOSTS"); do
            [ "$j" != "$i" ] || continue
            fpr=""
            if [ -f "$DIR/h$j/pinned-fpr" ]; then
                fpr=", \"fpr\": \"$(cat "$DIR/h$j/pinned-fpr")\""
            fi
            peers+="$sep"$'\n'"    {\"ip4\": \"10.0.3.$j\", \"endpoint\": \"$(underlay_addr "$j"):$LINK_PORT\"$fpr}"
            sep=","
        done
        cat >"$DIR/h$i/config.json" <<EOF
{
  "ip4": "10.0.3.$i",
  "switchmode": 1,
  "icc": $icc,
  "icc_port": $ICC_PORT,
  "svpn_port": $TINCAN_PORT,
  "link_port": $LINK_PORT,$mtus
  "bridge": "lxcbr0",
  "sec": $sec,$rekey$host_cipher
  "key_file": "$DIR/h$i/ipop.key",
  "tincan_logging": 1,
  "controller_logging": "INFO",
  "peers": [$peers
  ]
}
EOF
        own_host_dir "$DIR/h$i"
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
    ensure_neigh_room
    build_topology
    write_configs

    if [ "$NO_DAEMONS" = 1 ]; then
        trap - EXIT
        say "up: $HOSTS hosts, no daemons (LAB_NO_DAEMONS=1); configs in $DIR"
        return 0
    fi

    start_daemons_and_wait 0.3
    trap - EXIT
    say "up: $HOSTS hosts, $([ "$WAIT_LINKS" = 1 ] && echo "all links online" || echo "daemons running"), icc=$([ "$ICC" = 1 ] && echo true || echo false); state in $DIR"
}

cmd_down() {
    require_root down
    lab_down "$DIR/.ipop-lab" "$DIR"/h*/tincan.pid "$DIR"/h*/controller.pid
}

cmd_status() {
    require_root status
    local nss i d state
    nss=$(lab_namespaces | tr '\n' ' ')
    echo "lab $P: dir $DIR, binaries $BIN"
    if [ -z "$nss" ]; then
        echo "  no namespaces: the lab is down"
        return 0
    fi
    echo "  namespaces: $nss"
    for i in $(lab_hosts); do
        echo "  h$i ($(underlay_addr "$i"), lxcbr0 10.0.3.$i):"
        for d in tincan controller; do
            proc_status "h$i" "$d" "" "not started"
        done
        if state=$(rpc_state "$i" "$TINCAN_PORT"); then
            print_tincan_state "$state"
        elif proc_pid "h$i" tincan >/dev/null; then
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

cmd_exec() { lab_exec "sw, h1, h1c2, ..." "$@"; }

# kill|start hN tincan|controller
cmd_daemon() {
    local action=$1 node=${2:-} d=${3:-}
    if ! [[ $node =~ ^h[1-9][0-9]?$ && $d =~ ^(tincan|controller)$ ]]; then
        die "usage: $0 $action hN tincan|controller"
    fi
    require_root "$action"
    cmd_kill_start "$action" "$node" "$d"
}

# --- demo ------------------------------------------------------------------------------------

ensure_tools() {
    ensure_packages ip:iproute2 ping:iputils-ping python3:python3 sysctl:procps timeout:coreutils
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
        for s in $(seq 1 "$(containers_per_host)"); do
            nodes+=("h${n}c$s")
            if [ "$fam" = ipv4 ]; then ip[h${n}c$s]=$(container_ip4 "$n" "$s"); else ip[h${n}c$s]=$(container_ip6 "$n" "$s"); fi
        done
    done
    for s in "${nodes[@]}"; do
        for d in "${nodes[@]}"; do
            [ "${s%c*}" != "${d%c*}" ] || continue
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
            if [ "${s%c*}" = "${d%c*}" ]; then
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
