#!/usr/bin/env bash
# Data-plane benchmark (README.md "Measurements"; docs/architecture.md).
#
# In one run, on 2-host namespace labs side by side (scripts/lab.sh, LAB_HOSTS=2, one lab per
# plane), measures container to container, h1c1 (10.0.3.11) -> h2c1 (10.0.3.21), these planes:
#   vxlan   kernel VXLAN: `LAB_NO_DAEMONS=1 lab.sh up`, then in each host a vxlan device (id 42,
#           remote = the other host's underlay address, dstport 4789, dev u0) on lxcbr0
#   tinc    tinc 1.0 (Debian package `tinc`) in switch mode, one tincd per host namespace over
#           the underlay, its TAP tinc0 on lxcbr0; tinc's default cipher and digest unless
#           BENCH_TINC_CIPHER / BENCH_TINC_DIGEST say otherwise
#   aes     ours (ipop-tincan + gvpn-controller, `lab.sh up`), "cipher": "aes-256-gcm"
#   chacha  ours, "cipher": "chacha20-poly1305"
#   plain   ours, "sec": false (LAB_SEC=0)
# A cipher plane whose config the built gvpn-controller refuses (`--check`: unknown key or
# value) is skipped with a note; when both are, the plane "sec" (ours encrypted, no "cipher"
# key: the built-in cipher) stands in for them. Every round runs each measurement on every
# plane back to back, so the noise of a shared machine hits all alike:
#   ping      ping -i 0.01 (300 pings; 50 with --quick): RTT min, average, p99, loss
#   first     `ip neigh flush dev eth0` in h1c1, then one ping: its RTT (5 times, median);
#             for ours also the messages through the controllers per such ping (tincan's
#             counters icc_tx + icc_rx + arp_punted, both hosts)
#   tcp       iperf3 TCP one stream, 4 streams (-P 4), one stream reverse (-R), 6 s each
#             (2 s with --quick); during the one-stream run, CPU time (utime+stime from
#             /proc/PID/stat) of the data-plane processes (ipop-tincan, tincd) of both hosts
#             and, separately, of the controllers, per GB received; then the peak RSS
#             (VmHWM) of the larger data-plane process
#   udp64     iperf3 -u -l 18 (an 18-byte payload is a 64-byte Ethernet frame with its FCS),
#             offered at up to BENCH_UDP_PPS packets/s for 5 s (2 s): delivered packets/s, loss
#   alt MTU   the containers (both veth ends, all 4) and the plane's device moved to the other
#             MTU (1500 when --mtu is 1400), TCP one stream, and back
# and after the rounds, once, a separate TCP one-stream transfer per plane with the system calls
# of both data-plane processes counted (`perf stat -e raw_syscalls:sys_enter`, or `strace -c -f`
# where perf does not work), per GB. Kernel VXLAN has no process: CPU, RSS and system calls n/a.
#
#   sudo scripts/bench.sh [--quick] [--rounds N] [--json FILE] [--mtu M] [--alt-mtu M]
#                         [--planes LIST]
#     --quick        one round, short durations (a smoke test; figures are rough)
#     --rounds N     rounds (default 3; the table shows medians)
#     --json FILE    also write every result (each round, medians, ratios) as JSON to FILE
#     --mtu M        MTU of the containers' interfaces (default 1400, or BENCH_MTU)
#     --alt-mtu M    the MTU of the extra TCP row (default 1500 when M is 1400, else 1400; 0: none)
#     --planes LIST  comma-separated subset of tinc,aes,chacha,plain (vxlan always runs: the
#                    ratios are to it)
# Progress goes to stderr; the header and the Markdown table (rows = metrics, columns = planes,
# each cell the median and its ratio to VXLAN) to stdout. Exit status 1 when a measurement
# failed ("fail" in the table); the table is printed anyway.
#
# Container MTU above what a plane carries: VXLAN needs 50 bytes more on the underlay (u0 and
# the switch ports are raised to M + 50 when that exceeds 1500); tinc keeps the underlay at 1500
# and its tinc0 at M, and answers frames above its path MTU with ICMP "fragmentation needed"
# (containers then send smaller packets); ours keeps its TAP as lab.sh and tincan configure it.
#
# Environment:
#   BENCH_PREFIX       lab prefix stem, 1-10 letters/digits (default bench): the labs are
#                      ${BENCH_PREFIX}vx, tc, ag, cp, pl (and ip for "sec")
#   IPOP_BIN_DIR       where ipop-tincan and gvpn-controller are (default <repo>/target/release;
#                      built with `cargo build --release --workspace` when missing)
#   BENCH_MTU          as --mtu
#   BENCH_UDP_PPS      offered rate of the 64-byte test, packets/s (default 1000000; iperf3
#                      sends fewer when it cannot keep up: the "offered" row says what it sent)
#   BENCH_SYSCALLS     perf (default when it works) or strace
#   BENCH_TINC_CIPHER  tinc's Cipher (default: tinc's own, aes-256-cbc; "none" turns it off)
#   BENCH_TINC_DIGEST  tinc's Digest (default: tinc's own, sha256; "none" turns it off)
#   LAB_ICC, LAB_REKEY, RUST_LOG pass on to lab.sh for the planes of ours.
#
# Installs what it needs with apt-get when missing (tinc iperf3 iputils-ping iproute2 python3
# linux-perf strace). Every interface and process lives in namespaces this script creates; on
# exit, also on failure or Ctrl-C, it stops the processes it started (by PID) and removes the
# labs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_SCRIPT=bench.sh
# ensure_packages, find_cargo, cargo_build (die and say are this script's own, below).
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"
LAB=$REPO/scripts/lab.sh
STAT=$REPO/scripts/benchstat.py
BIN=${IPOP_BIN_DIR:-$REPO/target/release}
STEM=${BENCH_PREFIX:-bench}
ALL_PLANES=(vxlan tinc aes chacha plain sec)
declare -A PFX=([vxlan]=${STEM}vx [tinc]=${STEM}tc [aes]=${STEM}ag [chacha]=${STEM}cp
    [plain]=${STEM}pl [sec]=${STEM}ip)
declare -A LABEL=([vxlan]="kernel VXLAN" [tinc]="tinc 1.0" [aes]="ours AES-256-GCM"
    [chacha]="ours ChaCha20-Poly1305" [plain]="ours \"sec\": false"
    [sec]="ours encrypted (built-in cipher)")
declare -A CIPHER=([aes]=aes-256-gcm [chacha]=chacha20-poly1305)
SRC=h1c1
DST=h2c1
DST_IP=10.0.3.21
IPERF_PORT=5201
TINC_CIPHER=${BENCH_TINC_CIPHER:-}
TINC_DIGEST=${BENCH_TINC_DIGEST:-}
MTU=${BENCH_MTU:-1400}
ALT_MTU=""
UDP_PPS=${BENCH_UDP_PPS:-1000000}
SYSCALL_TOOL=${BENCH_SYSCALLS:-}

ROUNDS=3
QUICK=0
WANT_PLANES="tinc,aes,chacha,plain"
JSON_OUT=""
COMMAND=""
WORK=""
LOCK_FD=""
LOCK_FILE=""
CLEANING=0
FG_PID=""
PIDS=() # every background process this script started (iperf3 servers, tincd, perf, strace)
PLANES=()
NOTES=""
declare -A TINCD_PID=()

die() {
    echo "bench.sh: $*" >&2
    exit 1
}
say() { echo "bench.sh: $*" >&2; }
note() {
    say "note: $*"
    NOTES+="$*"$'\n'
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

# The command line as typed, with the environment that changes what is measured.
command_line() {
    local v s=""
    [ -z "${SUDO_USER:-}" ] || s="sudo "
    for v in BENCH_PREFIX IPOP_BIN_DIR BENCH_MTU BENCH_UDP_PPS BENCH_SYSCALLS BENCH_TINC_CIPHER \
        BENCH_TINC_DIGEST LAB_ICC LAB_REKEY; do
        [ -z "${!v:-}" ] || s+="$v=${!v} "
    done
    s+=$0
    [ $# -eq 0 ] || s+=$(printf ' %q' "$@")
    echo "$s"
}

mtu_ok() { [[ $1 =~ ^[0-9]{4}$ ]] && [ "$1" -ge 1280 ] && [ "$1" -le 9000 ]; }

parse_args() {
    local p
    while [ $# -gt 0 ]; do
        case $1 in
            --json | --rounds | --mtu | --alt-mtu | --planes)
                [ $# -ge 2 ] || die "$1 needs a value"
                ;;
        esac
        case $1 in
            --json) JSON_OUT=$2 ;;
            --rounds) ROUNDS=$2 ;;
            --mtu) MTU=$2 ;;
            --alt-mtu) ALT_MTU=$2 ;;
            --planes) WANT_PLANES=$2 ;;
            --quick)
                QUICK=1
                ROUNDS=1
                shift
                continue
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *)
                usage >&2
                exit 2
                ;;
        esac
        shift 2
    done
    [[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || die "--rounds: expected a number 1-99, got '$ROUNDS'"
    mtu_ok "$MTU" || die "--mtu/BENCH_MTU: expected 1280-9000, got '$MTU'"
    if [ -z "$ALT_MTU" ]; then
        ALT_MTU=1400
        [ "$MTU" != 1400 ] || ALT_MTU=1500
    fi
    [ "$ALT_MTU" = 0 ] || mtu_ok "$ALT_MTU" || die "--alt-mtu: expected 0 or 1280-9000, got '$ALT_MTU'"
    [ "$ALT_MTU" != "$MTU" ] || ALT_MTU=0
    [[ $WANT_PLANES =~ ^[a-z,]*$ ]] || die "--planes: expected a list like tinc,aes,plain"
    for p in ${WANT_PLANES//,/ }; do
        [[ $p =~ ^(vxlan|tinc|aes|chacha|plain)$ ]] || die "--planes: unknown plane '$p' (tinc, aes, chacha, plain)"
    done
    [[ $UDP_PPS =~ ^[1-9][0-9]*$ ]] || die "BENCH_UDP_PPS: expected packets per second, got '$UDP_PPS'"
    [[ $SYSCALL_TOOL =~ ^(|perf|strace)$ ]] || die "BENCH_SYSCALLS: expected perf or strace"
    [[ $STEM =~ ^[A-Za-z0-9]{1,10}$ ]] || die "BENCH_PREFIX: expected 1-10 letters or digits, got '$STEM'"
    [[ $TINC_CIPHER =~ ^[A-Za-z0-9-]*$ && $TINC_DIGEST =~ ^[A-Za-z0-9-]*$ ]] ||
        die "BENCH_TINC_CIPHER/BENCH_TINC_DIGEST: expected an OpenSSL name or none"
}

# Durations and counts of the two modes.
set_durations() {
    if [ "$QUICK" = 1 ]; then
        T_TCP=2 T_UDP=2 T_SYS=2 N_PING=50 N_FIRST=3
    else
        T_TCP=6 T_UDP=5 T_SYS=4 N_PING=300 N_FIRST=5
    fi
}

# --- prerequisites ---------------------------------------------------------------------------

# Installed with apt-get when missing (lablib.sh, under the same lock as the labs' installs).
ensure_bench_packages() {
    ensure_packages tincd:tinc iperf3:iperf3 ping:iputils-ping ip:iproute2 ss:iproute2 \
        python3:python3 sysctl:procps timeout:coreutils flock:util-linux >&2
    if [ "$SYSCALL_TOOL" != strace ]; then
        (ensure_packages perf:linux-perf) >&2 || say "linux-perf could not be installed"
    fi
}

# Picks how system calls are counted: perf when it counts a process here, else strace.
choose_syscall_tool() {
    local pid out n
    if [ "$SYSCALL_TOOL" != strace ] && command -v perf >/dev/null 2>&1; then
        python3 -c 'import os, time
t = time.time()
while time.time() - t < 3: os.getppid()' &
        pid=$!
        out=$WORK/perf-check.txt
        timeout 10 perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$out" -- sleep 0.3 \
            >/dev/null 2>&1 || true
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        n=$(python3 "$STAT" perf "$out" 2>/dev/null || echo NA)
        if [[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ]; then
            SYSCALL_TOOL=perf
            SYSCALL_DESC="perf stat -e raw_syscalls:sys_enter on both data-plane processes, during a separate ${T_SYS} s TCP one-stream transfer"
            return 0
        fi
        [ "$SYSCALL_TOOL" != perf ] || die "BENCH_SYSCALLS=perf: perf stat -e raw_syscalls:sys_enter does not count here"
        note "perf stat -e raw_syscalls:sys_enter does not count here: system calls counted with strace"
    fi
    ensure_packages strace:strace >&2
    SYSCALL_TOOL=strace
    SYSCALL_DESC="strace -c -f on both data-plane processes, during a separate ${T_SYS} s TCP one-stream transfer (strace slows the processes: system calls are counted in that pass only)"
}

ensure_binaries() {
    local cargo newer
    if [ -x "$BIN/ipop-tincan" ] && [ -x "$BIN/gvpn-controller" ]; then
        [ -z "${IPOP_BIN_DIR:-}" ] || return 0 # chosen binaries: built from whatever they were
        newer=$(find "$REPO/proto" "$REPO/tincan" "$REPO/controller" -name '*.rs' \
            -newer "$BIN/ipop-tincan" -print -quit 2>/dev/null || true)
        [ -z "$newer" ] || say "note: sources are newer than $BIN/ipop-tincan (e.g. $newer);" \
            "measuring the binaries as they are (cargo build --release --workspace to update)"
        return 0
    fi
    [ -z "${IPOP_BIN_DIR:-}" ] || die "no ipop-tincan/gvpn-controller in IPOP_BIN_DIR=$BIN"
    cargo=$(find_cargo) || die "no binaries in $BIN and no cargo: install Rust, then cargo build --release --workspace"
    say "building: cargo build --release --workspace"
    cargo_build "$cargo" >&2 # as the checkout's owner under sudo: target/ stays theirs
}

# True when the built gvpn-controller accepts "cipher": CIPHER; prints why not otherwise.
cipher_accepted() {
    local c=$1 f=$WORK/cipher-check.json out
    printf '{"ip4": "10.0.3.1", "switchmode": 1, "sec": true, "cipher": "%s", "peers": []}\n' \
        "$c" >"$f"
    if ! out=$(timeout 10 "$BIN/gvpn-controller" --check -c "$f" 2>&1); then
        echo "gvpn-controller --check refuses \"cipher\": \"$c\": $(echo "$out" | tail -n 1)"
        return 1
    fi
    if grep -qi 'unknown key "cipher"' <<<"$out"; then
        echo "the built gvpn-controller does not know the config key \"cipher\" (it ignores it)"
        return 1
    fi
}

# The planes of this run, in column order: vxlan, tinc, then ours (encrypted, then plaintext).
choose_planes() {
    local p why enc=0 skipped=0
    PLANES=(vxlan)
    for p in tinc aes chacha sec plain; do
        if [ "$p" = sec ]; then
            # Stands in for the cipher planes when the binary knows neither.
            if [ $skipped = 0 ] || [ $enc = 1 ]; then continue; fi
            note "plane ${LABEL[sec]} measured instead: \"sec\": true, no \"cipher\" key"
        else
            [[ ,$WANT_PLANES, == *,$p,* ]] || continue
        fi
        if [ -n "${CIPHER[$p]:-}" ]; then
            if ! why=$(cipher_accepted "${CIPHER[$p]}"); then
                note "plane ${LABEL[$p]} skipped: $why"
                skipped=1
                continue
            fi
            enc=1
        fi
        PLANES+=("$p")
    done
}

is_ours() { [[ $1 =~ ^(aes|chacha|plain|sec)$ ]]; }

# --- lab and cleanup -------------------------------------------------------------------------

# lab.sh for one plane's lab. Only ours runs the daemons, with the plane's "sec" and "cipher";
# LAB_ICC, LAB_REKEY and RUST_LOG pass through, lab.sh settings that would break or merge the
# labs do not.
lab() {
    local plane=$1 nd=1 sec=1 cipher=""
    shift
    if is_ours "$plane"; then nd=0; fi
    [ "$plane" != plain ] || sec=0
    cipher=${CIPHER[$plane]:-}
    env -u LAB_DIR -u LAB_PLAIN_HOSTS -u LAB_ROGUE_HOSTS -u LAB_WAIT_LINKS -u LAB_KEEP_ON_FAIL \
        LAB_PREFIX="${PFX[$plane]}" LAB_HOSTS=2 LAB_NO_DAEMONS=$nd LAB_SEC=$sec \
        LAB_CIPHER="$cipher" IPOP_BIN_DIR="$BIN" bash "$LAB" "$@"
}

ns() { echo "${PFX[$1]}-$2"; }

lab_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -q "^${PFX[$1]}-"; }

# Ends one process this script started, if PID still is that program (guards a recycled PID).
stop_pid() {
    local pid=$1 name=$2 sig=${3:-TERM}
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q "$name" || return 0
    kill -"$sig" "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? p left re=""
    [ "$CLEANING" = 0 ] || return 0
    CLEANING=1
    trap '' INT TERM # a second Ctrl-C must not cut the teardown short
    trap - EXIT
    if [ -n "$FG_PID" ]; then # our child, not reaped yet: its PID cannot have been reused
        kill -TERM "$FG_PID" 2>/dev/null || true
        wait "$FG_PID" 2>/dev/null || true
    fi
    for p in "${PIDS[@]}"; do
        stop_pid "${p%%:*}" "${p#*:}"
    done
    # lab.sh down also ends whatever is left inside the lab's namespaces, then deletes them.
    for p in "${ALL_PLANES[@]}"; do
        if lab_exists "$p" || [ -d "/tmp/ipop-lab-${PFX[$p]}" ]; then
            lab "$p" down >&2 || say "warning: lab.sh down for ${PFX[$p]} failed"
        fi
        re+="${re:+|}${PFX[$p]}"
    done
    [ -z "$WORK" ] || rm -rf "$WORK"
    [ -z "$LOCK_FILE" ] || rm -f "$LOCK_FILE"
    left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^($re)-" | tr '\n' ' ' || true)
    if [ -n "$left" ]; then
        say "ERROR: namespaces left behind: $left"
        [ "$rc" -ne 0 ] || rc=1
    fi
    exit "$rc"
}

# Runs a bounded command (ping, iperf3 under `timeout`) as a background job and waits for it.
# A foreground child that handles SIGINT itself and exits normally makes bash drop a Ctrl-C
# without running the INT trap; `wait` instead returns at once and the trap runs, and cleanup
# ends the job by FG_PID.
run() {
    local rc=0
    "$@" &
    FG_PID=$!
    wait "$FG_PID" || rc=$?
    FG_PID=""
    return "$rc"
}

# --- setup of the planes ---------------------------------------------------------------------

# Seconds (3 decimals) from START (an $EPOCHREALTIME) to now.
since() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$EPOCHREALTIME"; }

# Pings DST from SRC every 50 ms until the first reply (at most 30 s).
first_reply() {
    run timeout --foreground 35 ip netns exec "$(ns "$1" "$SRC")" \
        ping -n -q -c 1 -i 0.05 -w 30 "$DST_IP" >/dev/null 2>&1
}

setup_ours() {
    local plane=$1 t0=$EPOCHREALTIME
    lab "$plane" up >&2
    first_reply "$plane" || die "$plane: no ping reply from $DST to $SRC within 30 s"
    SETUP[$plane]=$(since "$t0")
}

setup_vxlan() {
    local t0=$EPOCHREALTIME i j h
    lab vxlan up >&2
    for i in 1 2; do
        j=$((3 - i))
        h=$(ns vxlan "h$i")
        ip -n "$h" link add vx0 type vxlan id 42 remote "10.99.0.$j" dstport 4789 dev u0
        ip -n "$h" link set vx0 mtu 1400 master lxcbr0 up
    done
    first_reply vxlan || die "vxlan: no ping reply within 30 s"
    SETUP[vxlan]=$(since "$t0")
}

# Config, keys and host files of both tinc nodes, under $WORK/tinc/hN (before the clock starts).
write_tinc_configs() {
    local i j d
    for i in 1 2; do
        j=$((3 - i))
        d=$WORK/tinc/h$i
        mkdir -p "$d/hosts"
        cat >"$d/tinc.conf" <<EOF
Name = h$i
Mode = switch
DeviceType = tap
Interface = tinc0
AddressFamily = ipv4
ConnectTo = h$j
EOF
        {
            echo "Address = 10.99.0.$i"
            echo "Port = 655"
            [ -z "$TINC_CIPHER" ] || echo "Cipher = $TINC_CIPHER"
            [ -z "$TINC_DIGEST" ] || echo "Digest = $TINC_DIGEST"
        } >"$d/hosts/h$i"
        # Runs inside the host namespace (tincd runs there): onto the bridge (MTU: set_mtu).
        cat >"$d/tinc-up" <<EOF
#!/bin/sh
ip link set "\$INTERFACE" mtu 1400
ip link set "\$INTERFACE" master lxcbr0
ip link set "\$INTERFACE" up
EOF
        chmod +x "$d/tinc-up"
        # Not a tty on stdin: tincd takes the default files (rsa_key.priv, hosts/h$i) unasked.
        tincd -c "$d" -K2048 </dev/null >"$d/keygen.log" 2>&1 || {
            cat "$d/keygen.log" >&2
            die "tinc: key generation failed"
        }
    done
    cp "$WORK/tinc/h1/hosts/h1" "$WORK/tinc/h2/hosts/"
    cp "$WORK/tinc/h2/hosts/h2" "$WORK/tinc/h1/hosts/"
}

start_tincd() {
    local i=$1 d=$WORK/tinc/h$1
    ip netns exec "$(ns tinc "h$i")" tincd -D -c "$d" --pidfile="$d/tincd.pid" \
        --logfile="$d/tincd.log" >"$d/tincd.out" 2>&1 &
    TINCD_PID[$i]=$!
    PIDS+=("$!:tincd")
}

# "MIN MAX" of tinc's path MTU to the other node, from a node dump (SIGUSR2 writes it to the log).
tinc_pmtu() {
    local i=$1 j=$((3 - $1)) log=$WORK/tinc/h$1/tincd.log line
    kill -USR2 "${TINCD_PID[$i]}" 2>/dev/null || return 1
    sleep 0.3
    line=$(grep -E "^.*tinc\[[0-9]+\]: +h$j at .* pmtu [0-9]+ \(min [0-9]+ max [0-9]+\)" "$log" | tail -n 1)
    [[ $line =~ min\ ([0-9]+)\ max\ ([0-9]+) ]] || return 1
    echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
}

setup_tinc() {
    local t0 i mm fixed=0
    lab tinc up >&2
    write_tinc_configs
    t0=$EPOCHREALTIME
    start_tincd 2
    start_tincd 1
    first_reply tinc || {
        tail -n 20 "$WORK"/tinc/h*/tincd.log "$WORK"/tinc/h*/tincd.out >&2 || true
        die "tinc: no ping reply within 30 s"
    }
    SETUP[tinc]=$(since "$t0")
    # Until tinc has found the path MTU (about 10 probes), frames above the lower bound go over
    # its TCP meta connection: wait until both nodes report min = max before measuring.
    for _ in $(seq 60); do
        fixed=1
        for i in 1 2; do
            mm=$(tinc_pmtu "$i") || mm="0 1"
            [ "${mm% *}" = "${mm#* }" ] && [ "${mm% *}" -gt 0 ] || fixed=0
        done
        [ $fixed = 0 ] || break
        sleep 0.5
    done
    if [ $fixed = 1 ]; then
        TINC_PMTU=${mm% *}
    else
        note "tinc did not settle its path MTU within 30 s; measured anyway"
        TINC_PMTU=""
    fi
}

# set_mtu PLANE M: the containers (eth0 of all four, and the host ends c1, c2) at M, and what
# the plane needs to carry M (see the header). Between measurements: nothing is in flight.
set_mtu() {
    local plane=$1 m=$2 i c under=1500 h
    [ "$plane" != vxlan ] || [ $((m + 50)) -le 1500 ] || under=$((m + 50))
    for i in 1 2; do
        h=$(ns "$plane" "h$i")
        if [ "$plane" = vxlan ]; then
            ip -n "$(ns vxlan sw)" link set "h$i" mtu "$under"
            ip -n "$h" link set u0 mtu "$under"
            ip -n "$h" link set vx0 mtu "$m"
        fi
        [ "$plane" != tinc ] || ip -n "$h" link set tinc0 mtu "$m"
        for c in 1 2; do
            ip -n "$h" link set "c$c" mtu "$m"
            ip -n "$(ns "$plane" "h${i}c$c")" link set eth0 mtu "$m"
            # Path MTUs learned at the other MTU (tinc's "fragmentation needed") go too.
            ip -n "$(ns "$plane" "h${i}c$c")" route flush cache 2>/dev/null || true
        done
    done
}

# The MTU of ours's TAP (as tincan set it) for the header.
tap_mtu() {
    ip -n "$(ns "$1" h1)" -o link show ipop 2>/dev/null | sed -n 's/.* mtu \([0-9]*\).*/\1/p'
}

# --- the processes measured ------------------------------------------------------------------

# vpn_pids PLANE ROLE: PIDs of the data-plane processes (ROLE dp: ipop-tincan, tincd) or of the
# controllers (ctl), both hosts; nothing for kernel VXLAN or tinc's controllers.
vpn_pids() {
    local plane=$1 role=$2 i f name=tincan
    [ "$role" = dp ] || name=controller
    for i in 1 2; do
        if [ "$plane" = tinc ]; then
            [ "$role" != dp ] || echo "${TINCD_PID[$i]}"
        elif is_ours "$plane"; then
            f=/tmp/ipop-lab-${PFX[$plane]}/h$i/$name.pid
            [ ! -f "$f" ] || cat "$f"
        fi
    done
}

# CPU ticks (utime + stime) summed over PIDS; fails when one is gone.
cpu_ticks() {
    local pid sum=0 stat rest f
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
        rest=${stat##*) } # fields from the 3rd on: the name in parentheses may hold spaces
        read -r -a f <<<"$rest"
        sum=$((sum + f[11] + f[12])) # utime and stime: fields 14 and 15
    done
    echo "$sum"
}

# Peak RSS (VmHWM) in MB of the larger of PIDS.
peak_rss_mb() {
    local pid kb max=0
    for pid in "$@"; do
        kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
        [ -z "$kb" ] || [ "$kb" -le "$max" ] || max=$kb
    done
    [ "$max" -gt 0 ] || return 1
    python3 -c "import sys; print('%.2f' % (int(sys.argv[1]) / 1024))" "$max"
}

# --- measurements ----------------------------------------------------------------------------

# Appends "ROUND PLANE METRIC VALUE" lines to $RESULTS; VALUE is "NA" when the measurement
# failed, "n/a" when it does not apply.
record() { echo "$*" >>"$RESULTS"; }

measure_ping() {
    local round=$1 plane=$2 out=$WORK/ping-$1-$2.txt min avg p99 loss
    run timeout --foreground $((N_PING / 50 + 15)) ip netns exec "$(ns "$plane" "$SRC")" \
        ping -n -c "$N_PING" -i 0.01 -W 1 -w $((N_PING / 50 + 10)) "$DST_IP" >"$out" 2>&1 || true
    read -r min avg p99 loss < <(python3 "$STAT" ping "$out")
    record "$round $plane ping_min_ms $min"
    record "$round $plane ping_avg_ms $avg"
    record "$round $plane ping_p99_ms $p99"
    record "$round $plane ping_loss_pct $loss"
    say "round $round ${LABEL[$plane]} ping x$N_PING: min $min avg $avg p99 $p99 ms, loss $loss%"
}

# Messages through the controllers so far, both hosts: tincan's icc_tx + icc_rx + arp_punted.
ctl_messages() {
    local i sum=0 n
    for i in 1 2; do
        n=$(timeout 5 ip netns exec "$(ns "$1" "h$i")" "$BIN/ipop-tincan" --rpc get_state \
            --port "$TINCAN_PORT" 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin).get("counters") or {}
print(sum(c.get(k, 0) for k in ("icc_tx", "icc_rx", "arp_punted")))') || return 1
        sum=$((sum + n))
    done
    echo "$sum"
}

# The first ping after flushing h1c1's neighbour cache: N_FIRST times, the median is recorded;
# for ours also the messages that went through the controllers meanwhile, per ping.
measure_first_ping() {
    local round=$1 plane=$2 out k src rtts=() v m0="" m1="" msgs=""
    src=$(ns "$plane" "$SRC")
    ! is_ours "$plane" || m0=$(ctl_messages "$plane") || m0=""
    for k in $(seq "$N_FIRST"); do
        out=$WORK/first-$round-$plane-$k.txt
        ip -n "$src" neigh flush dev eth0 2>/dev/null || true
        run timeout --foreground 5 ip netns exec "$src" \
            ping -n -c 1 -W 2 "$DST_IP" >"$out" 2>&1 || true
        rtts+=("$(python3 "$STAT" rtt "$out")")
        sleep 0.1
    done
    v=$(python3 -c '
import statistics, sys
xs = [float(x) for x in sys.argv[1:] if x != "NA"]
print("%.3f" % statistics.median(xs) if len(xs) == len(sys.argv[1:]) else "NA")' "${rtts[@]}")
    record "$round $plane first_ping_ms $v"
    if is_ours "$plane"; then
        m1=$(ctl_messages "$plane") || m1=""
        if [ -n "$m0" ] && [ -n "$m1" ]; then
            msgs=$(python3 -c 'import sys; print("%.2f" % ((int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3])))' "$m0" "$m1" "$N_FIRST")
        else
            msgs=NA
        fi
        record "$round $plane first_ping_ctl_msgs $msgs"
    else
        record "$round $plane first_ping_ctl_msgs n/a"
    fi
    say "round $round ${LABEL[$plane]} first ping after neighbour flush: ${rtts[*]} ms (median $v)${msgs:+, $msgs messages via the controllers per ping}"
}

# Starts a one-off iperf3 server in h2c1 (bounded by timeout, stopped by PID in any case) and
# waits until it listens.
iperf_server() {
    local plane=$1 log=$2
    timeout --foreground $((T_TCP + 40)) ip netns exec "$(ns "$plane" "$DST")" \
        iperf3 -s -1 -B "$DST_IP" -p "$IPERF_PORT" >"$log" 2>&1 &
    SPID=$!
    PIDS+=("$SPID:iperf3")
    for _ in $(seq 50); do
        [ -z "$(ip netns exec "$(ns "$plane" "$DST")" ss -Hln "sport = :$IPERF_PORT" 2>/dev/null)" ] || break
        sleep 0.1
    done
}

# iperf_client PLANE OUT SECONDS ARGS...: the client in h1c1, bounded.
iperf_client() {
    local plane=$1 out=$2 t=$3
    shift 3
    run timeout --foreground $((t + 20)) ip netns exec "$(ns "$plane" "$SRC")" \
        iperf3 -c "$DST_IP" -p "$IPERF_PORT" -t "$t" -J --connect-timeout 3000 "$@" \
        >"$out" 2>&1 || true
    stop_pid "$SPID" iperf3
}

# measure_tcp ROUND PLANE NAME ARGS...: iperf3 TCP, T_TCP seconds; NAME is the metric's middle
# (1, 4, R, 1_alt). The one-stream run at the main MTU also measures CPU per GB and peak RSS.
measure_tcp() {
    local round=$1 plane=$2 name=$3 out parsed bps retr bytes cpu=0 dp=() ctl=() d0 c0 d1 c1
    shift 3
    out=$WORK/iperf-$round-$plane-$name.json
    if [ "$name" = 1 ] && [ "$plane" != vxlan ]; then
        cpu=1
        mapfile -t dp < <(vpn_pids "$plane" dp)
        mapfile -t ctl < <(vpn_pids "$plane" ctl)
    fi
    iperf_server "$plane" "$out.server"
    if [ $cpu = 1 ]; then
        d0=$(cpu_ticks "${dp[@]}") || d0=""
        c0=$(cpu_ticks "${ctl[@]}") || c0=""
    fi
    iperf_client "$plane" "$out" "$T_TCP" "$@"
    if [ $cpu = 1 ]; then
        d1=$(cpu_ticks "${dp[@]}") || d1=""
        c1=$(cpu_ticks "${ctl[@]}") || c1=""
    fi
    parsed=$(python3 "$STAT" tcp "$out")
    read -r bps retr bytes _ <<<"$parsed"
    record "$round $plane tcp_${name}_bps $bps"
    [ "$name" != 1 ] || record "$round $plane tcp_1_retransmits $retr"
    if [ "$bps" = NA ]; then
        say "round $round ${LABEL[$plane]} TCP $name: FAILED: ${parsed#NA NA NA } (see $out)"
    else
        say "round $round ${LABEL[$plane]} TCP $name: $((bps / 1000000)) Mbit/s, $retr retransmits"
    fi
    [ "$name" = 1 ] || return 0
    if [ "$plane" = vxlan ]; then
        record "$round $plane cpu_vpn_s_per_gb n/a"
        record "$round $plane cpu_ctl_s_per_gb n/a"
        record "$round $plane rss_peak_mb n/a"
        return 0
    fi
    record "$round $plane cpu_vpn_s_per_gb $(per_gb "$d0" "$d1" "$bytes")"
    if [ ${#ctl[@]} -gt 0 ]; then
        record "$round $plane cpu_ctl_s_per_gb $(per_gb "$c0" "$c1" "$bytes")"
    else
        record "$round $plane cpu_ctl_s_per_gb n/a"
    fi
    record "$round $plane rss_peak_mb $(peak_rss_mb "${dp[@]}" || echo NA)"
}

# per_gb TICKS0 TICKS1 BYTES: CPU-seconds per 10^9 bytes, NA when a figure is missing.
per_gb() {
    python3 -c '
import os, sys
try:
    t0, t1, b = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    print("%.4f" % ((t1 - t0) / os.sysconf("SC_CLK_TCK") / (b / 1e9)) if b > 0 else "NA")
except ValueError:
    print("NA")' "$1" "$2" "$3"
}

# 64-byte frames: iperf3 -u -l 18 at up to UDP_PPS packets/s for T_UDP seconds.
measure_udp64() {
    local round=$1 plane=$2 out=$WORK/udp64-$1-$2.json parsed sent got loss
    iperf_server "$plane" "$out.server"
    iperf_client "$plane" "$out" "$T_UDP" -u -l 18 -b $((UDP_PPS * 18 * 8))
    parsed=$(python3 "$STAT" udp "$out")
    read -r sent got loss _ <<<"$parsed"
    record "$round $plane udp64_sent_pps $sent"
    record "$round $plane udp64_pps $got"
    record "$round $plane udp64_loss_pct $loss"
    if [ "$got" = NA ]; then
        say "round $round ${LABEL[$plane]} UDP 64-byte frames: FAILED: ${parsed#NA NA NA } (see $out)"
    else
        say "round $round ${LABEL[$plane]} UDP 64-byte frames: sent $sent/s, delivered $got/s, loss $loss%"
    fi
}

# Once per run: system calls of both data-plane processes during a separate transfer.
measure_syscalls() {
    local round=$1 plane=$2 out=$WORK/sys-$2.json cnt=$WORK/sys-$2.txt dp=() cpid n bytes v
    if ! { [ "$plane" = tinc ] || is_ours "$plane"; }; then
        record "$round $plane syscalls_per_gb n/a"
        return 0
    fi
    mapfile -t dp < <(vpn_pids "$plane" dp)
    iperf_server "$plane" "$out.server"
    if [ "$SYSCALL_TOOL" = perf ]; then
        perf stat -x, -e raw_syscalls:sys_enter -p "$(
            IFS=,
            echo "${dp[*]}"
        )" -o "$cnt" &
        cpid=$!
        PIDS+=("$cpid:perf")
    else
        local a=()
        for n in "${dp[@]}"; do a+=(-p "$n"); done
        strace -c -f -o "$cnt" "${a[@]}" &
        cpid=$!
        PIDS+=("$cpid:strace")
    fi
    sleep 0.3 # attached
    iperf_client "$plane" "$out" "$T_SYS"
    stop_pid "$cpid" "$SYSCALL_TOOL" INT # both print their counts on SIGINT
    n=$(python3 "$STAT" "$SYSCALL_TOOL" "$cnt" 2>/dev/null || echo NA)
    read -r _ _ bytes _ <<<"$(python3 "$STAT" tcp "$out")"
    v=$(python3 -c '
import sys
try:
    print("%.0f" % (int(sys.argv[1]) / (int(sys.argv[2]) / 1e9)))
except (ValueError, ZeroDivisionError):
    print("NA")' "$n" "$bytes")
    record "$round $plane syscalls_per_gb $v"
    say "${LABEL[$plane]} system calls ($SYSCALL_TOOL): $n for $bytes bytes: $v per GB"
}

# --- report ----------------------------------------------------------------------------------

report() {
    local labels="" p
    for p in "${PLANES[@]}"; do labels+="${labels:+|}${LABEL[$p]}"; done
    BENCH_JSON=$JSON_OUT BENCH_ROUNDS=$ROUNDS BENCH_COMMAND=$COMMAND \
        BENCH_COMMIT=$COMMIT BENCH_DIRTY=$DIRTY BENCH_DATE=$DATE BENCH_NPROC=$(nproc) \
        BENCH_KERNEL=$(uname -r) BENCH_LOADAVG="$LOADAVG" BENCH_PLANES="${PLANES[*]}" \
        BENCH_PLANE_LABELS="$labels" BENCH_MTU=$MTU BENCH_ALT_MTU=$ALT_MTU \
        BENCH_MTU_NOTE="$MTU_NOTE" BENCH_NOTES="$NOTES" BENCH_SYSCALL_TOOL="$SYSCALL_DESC" \
        BENCH_BINARIES="$BIN (ipop-tincan built $(date -u -r "$BIN/ipop-tincan" '+%Y-%m-%d %H:%M UTC'))" \
        BENCH_IPERF3=$(iperf3 --version 2>/dev/null | head -n 1 | awk '{print $2}') \
        BENCH_TINC=$(tincd --version 2>/dev/null | head -n 1 | awk '{print $3}') \
        BENCH_TINC_NOTE="switch mode, cipher ${TINC_CIPHER:-aes-256-cbc (default)}, digest ${TINC_DIGEST:-sha256 (default)}, path MTU ${TINC_PMTU:-not settled}" \
        BENCH_SETUP="$(for k in "${!SETUP[@]}"; do echo "$k=${SETUP[$k]}"; done)" \
        python3 "$STAT" report "$RESULTS"
}

# --- main ------------------------------------------------------------------------------------

main() {
    parse_args "$@"
    set_durations
    COMMAND=$(command_line "$@")
    [ "$(id -u)" -eq 0 ] || die "needs root (it creates network namespaces): run  sudo $0 $*"
    ensure_bench_packages
    ensure_binaries

    # One bench per prefix at a time; with the lock held, labs with our prefixes are leftovers.
    local lock=/run/lock
    [ -d "$lock" ] || lock=/tmp
    exec {LOCK_FD}>"$lock/ipop-bench-$STEM.lock"
    flock -n "$LOCK_FD" || die "another bench.sh with BENCH_PREFIX=$STEM is running"
    LOCK_FILE=$lock/ipop-bench-$STEM.lock

    trap cleanup EXIT
    trap 'say "interrupted"; exit 130' INT
    trap 'say "terminated"; exit 143' TERM
    local p r
    for p in "${ALL_PLANES[@]}"; do
        if lab_exists "$p" || [ -d "/tmp/ipop-lab-${PFX[$p]}" ]; then
            say "removing the leftover lab ${PFX[$p]} of an earlier run"
            lab "$p" down >&2
        fi
    done
    WORK=$(mktemp -d /tmp/ipop-bench.XXXXXX)
    RESULTS=$WORK/results.txt
    : >"$RESULTS"
    DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
    LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
    COMMIT=$(git -C "$REPO" -c safe.directory="$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    DIRTY=0
    [ -z "$(git -C "$REPO" -c safe.directory="$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] || DIRTY=1
    declare -gA SETUP=()
    TINC_PMTU=""
    choose_planes
    choose_syscall_tool

    say "setting up: $(for p in "${PLANES[@]}"; do printf '%s (%s) ' "${LABEL[$p]}" "${PFX[$p]}"; done)"
    for p in "${PLANES[@]}"; do
        case $p in
            vxlan) setup_vxlan ;;
            tinc) setup_tinc ;;
            *) setup_ours "$p" ;;
        esac
    done
    MTU_NOTE="VXLAN device at the container MTU, underlay raised to MTU + 50 above 1450"
    [[ " ${PLANES[*]} " != *" tinc "* ]] || MTU_NOTE+="; tinc0 at the container MTU"
    for p in "${PLANES[@]}"; do
        set_mtu "$p" "$MTU"
        if is_ours "$p"; then MTU_NOTE+="; ${LABEL[$p]} TAP $(tap_mtu "$p")"; fi
    done
    for p in "${PLANES[@]}"; do # ARP and link warm-up, and a last check that each plane works
        run timeout --foreground 10 ip netns exec "$(ns "$p" "$SRC")" \
            ping -n -q -c 3 -i 0.2 -W 1 -w 5 "$DST_IP" >/dev/null 2>&1 || die "$p: lost pings in warm-up"
    done

    for r in $(seq 1 "$ROUNDS"); do
        for p in "${PLANES[@]}"; do measure_ping "$r" "$p"; done
        for p in "${PLANES[@]}"; do measure_first_ping "$r" "$p"; done
        for p in "${PLANES[@]}"; do measure_tcp "$r" "$p" 1; done
        for p in "${PLANES[@]}"; do measure_tcp "$r" "$p" 4 -P 4; done
        for p in "${PLANES[@]}"; do measure_tcp "$r" "$p" R -R; done
        for p in "${PLANES[@]}"; do measure_udp64 "$r" "$p"; done
        if [ "$ALT_MTU" != 0 ]; then
            for p in "${PLANES[@]}"; do set_mtu "$p" "$ALT_MTU"; done
            for p in "${PLANES[@]}"; do measure_tcp "$r" "$p" 1_alt; done
            for p in "${PLANES[@]}"; do set_mtu "$p" "$MTU"; done
        fi
    done
    for p in "${PLANES[@]}"; do measure_syscalls "$ROUNDS" "$p"; done
    report
    [ -z "$JSON_OUT" ] || say "results written to $JSON_OUT"
    if grep -q ' NA$' "$RESULTS"; then
        say "some measurements failed (fail in the table)"
        exit 1
    fi
}

main "$@"
