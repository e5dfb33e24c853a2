#!/usr/bin/env bash
# The scale lab: N hosts (2 to 32) in one full mesh, one container each, and what it costs.
#
#   scripts/scale.sh [N] [--xmpp] [--idle SECONDS] [--out DIR] [--keep]
#
# Brings up scripts/lab.sh with LAB_HOSTS=N (static peers: every config lists every other host),
# or with --xmpp scripts/natlab.sh with N hosts on the public net without NAT (no static peers:
# the controllers find each other through the lab's XMPP server and exchange candidates there),
# then runs scripts/scale.py, which reports:
#   - the time from the daemons' start until every container has reached every other (all
#     N*(N-1) pairs, ICMP echo from each container to each other every 200 ms until answered);
#   - per node, over an idle window (--idle, default 60 s, after 5 s of settling): the RSS of
#     both daemons, their CPU (percent of one core), the underlay's packets and bytes per minute
#     (u0, which carries only link datagrams), tincan's ICC messages and handshakes per minute,
#     and per link the seconds between datagrams in each direction (the idle-link bound: at
#     most one datagram every 10 s; fails otherwise);
#   - the ICC messages (all nodes) per first-time ARP (a new address pinged, 3 times);
#   - how busy the machine was (load average, CPU busy during the window).
# A Markdown table goes to stdout, the figures as JSON to DIR/scale-N-static.json (or -xmpp;
# DIR defaults to target/scale). The lab is torn down afterwards unless --keep.
#
# Environment: LAB_PREFIX (default isc for static, isx for XMPP), IPOP_BIN_DIR, RUST_LOG
# (default warn: at 32 hosts the info lines of start-up are many), LAB_REKEY (rekey_interval
# of the static lab, default the config's 120 s).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/scripts/scale.sh"
LAB_SCRIPT=scale.sh
N=32
XMPP=0
IDLE=60
OUT=$REPO/target/scale
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
        --xmpp) XMPP=1 ;;
        --idle) IDLE=${2:?--idle SECONDS} && shift ;;
        --out) OUT=${2:?--out DIR} && shift ;;
        --keep) KEEP=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$SELF" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        [0-9]*) N=$1 ;;
        *)
            echo "$LAB_SCRIPT: unknown argument '$1' (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done
[[ $N =~ ^[0-9]+$ && $N -ge 2 && $N -le 32 ]] || {
    echo "$LAB_SCRIPT: N: expected 2 to 32 hosts, got '$N'" >&2
    exit 2
}
[[ $IDLE =~ ^[0-9]+$ && $IDLE -ge 10 ]] || {
    echo "$LAB_SCRIPT: --idle: expected at least 10 seconds, got '$IDLE'" >&2
    exit 2
}
[ "$(id -u)" -eq 0 ] || {
    echo "$LAB_SCRIPT: needs root (it creates network namespaces): run  sudo $0 $N" >&2
    exit 1
}

export RUST_LOG=${RUST_LOG-warn}
export LAB_WAIT_LINKS=0 # the measurement starts at the daemons' start and waits itself
export LAB_WAIT=${LAB_WAIT:-$((4 * N))}
if [ "$XMPP" = 1 ]; then
    MODE=xmpp
    SCRIPT=$REPO/scripts/natlab.sh
    export LAB_PREFIX=${LAB_PREFIX:-isx}
    LAB_NATS=$(printf 'none %.0s' $(seq 1 "$N"))
    export LAB_NATS=${LAB_NATS% }
    DIR=${LAB_DIR:-/tmp/ipop-natlab-$LAB_PREFIX}
else
    MODE=static
    SCRIPT=$REPO/scripts/lab.sh
    export LAB_PREFIX=${LAB_PREFIX:-isc} LAB_HOSTS=$N LAB_CONTAINERS=1
    DIR=${LAB_DIR:-/tmp/ipop-lab-$LAB_PREFIX}
fi
export LAB_DIR=$DIR
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"
mkdir -p "$OUT"
JSON=$OUT/scale-$N-$MODE.json

finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$KEEP" = 1 ]; then
        echo "$LAB_SCRIPT: lab kept (--keep): LAB_PREFIX=$LAB_PREFIX $SCRIPT down" >&2
    else
        bash "$SCRIPT" down >/dev/null 2>&1 || bash "$SCRIPT" down >&2 || true
    fi
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

echo "$LAB_SCRIPT: $N hosts, $MODE signalling; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
bash "$SCRIPT" up >&2
python3 "$REPO/scripts/scale.py" --prefix "$LAB_PREFIX" --dir "$DIR" --hosts "$N" \
    --bin "$BIN" --signalling "$MODE" --idle "$IDLE" --json "$JSON"
echo "$LAB_SCRIPT: figures in $JSON" >&2
