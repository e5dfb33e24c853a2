#!/usr/bin/env bash
# Data-plane benchmark (README.md "Measurements"; docs/architecture.md).
#
# In one run, on the same 2-host namespace lab (scripts/lab.sh, LAB_HOSTS=2), measures container
# to container, h1c1 (10.0.3.11) -> h2c1 (10.0.3.21), containers at MTU 1400, three data planes:
#   ours   ipop-tincan + gvpn-controller: `lab.sh up`, binaries from target/release, links as
#          lab.sh configures them (encrypted unless LAB_SEC=0; LAB_SEC/LAB_ICC/LAB_REKEY pass on)
#   vxlan  kernel VXLAN: `LAB_NO_DAEMONS=1 lab.sh up`, then in each host a vxlan device
#          (id 42, remote = the other host's underlay address, dstport 4789, dev u0, MTU 1400)
#          attached to lxcbr0
#   tinc   tinc 1.0 (Debian package `tinc`) in switch mode, one tincd per host namespace over
#          the underlay, its TAP tinc0 (MTU 1400) attached to lxcbr0; tinc's default cipher and
#          digest unless BENCH_TINC_CIPHER / BENCH_TINC_DIGEST say otherwise
# Each round runs every measurement on the three planes back to back (ours, vxlan, tinc), so
# the noise of a shared machine hits all three alike:
#   ping -c 20 -i 0.05 (average RTT), iperf3 TCP 5 s one stream, iperf3 TCP 5 s 4 streams (-P 4)
# It prints a table of medians over the rounds with ratios ours/vxlan and ours/tinc, plus the
# date, nproc, kernel, git commit and the command. Progress goes to stderr, the table to stdout.
#
#   sudo scripts/bench.sh [--rounds N] [--json FILE]
#     --rounds N   rounds of the three measurements (default 3; the table shows medians)
#     --json FILE  also write every result (each round, medians, ratios) as JSON to FILE
#
# Environment:
#   BENCH_PREFIX       lab prefix stem, 1-10 letters/digits (default bench): the labs are
#                      ${BENCH_PREFIX}ip, ${BENCH_PREFIX}vx, ${BENCH_PREFIX}tc
#   IPOP_BIN_DIR       where ipop-tincan and gvpn-controller are (default <repo>/target/release;
#                      built with `cargo build --release --workspace` when missing)
#   BENCH_TINC_CIPHER  tinc's Cipher (default: tinc's own, aes-256-cbc; "none" turns it off)
#   BENCH_TINC_DIGEST  tinc's Digest (default: tinc's own, sha256; "none" turns it off)
#
# Installs what it needs with apt-get when missing (tinc iperf3 iputils-ping iproute2 python3).
# Every interface and process lives in namespaces this script creates; on exit, also on failure
# or Ctrl-C, it stops the processes it started (by PID) and removes the three labs.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_SCRIPT=bench.sh
# ensure_packages, find_cargo, cargo_build (die and say are this script's own, below).
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"
LAB=$REPO/scripts/lab.sh
BIN=${IPOP_BIN_DIR:-$REPO/target/release}
STEM=${BENCH_PREFIX:-bench}
PLANES=(ours vxlan tinc)
declare -A PFX=([ours]=${STEM}ip [vxlan]=${STEM}vx [tinc]=${STEM}tc)
SRC=h1c1
DST=h2c1
DST_IP=10.0.3.21
MTU=1400
IPERF_PORT=5201
TINC_CIPHER=${BENCH_TINC_CIPHER:-}
TINC_DIGEST=${BENCH_TINC_DIGEST:-}

ROUNDS=3
JSON_OUT=""
COMMAND=""
WORK=""
LOCK_FD=""
LOCK_FILE=""
CLEANING=0
FG_PID=""
PIDS=() # every background process this script started (iperf3 servers, tincd)
declare -A TINCD_PID=()

die() {
    echo "bench.sh: $*" >&2
    exit 1
}
say() { echo "bench.sh: $*" >&2; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

# The command line as typed, with the environment that changes what is measured.
command_line() {
    local v s=""
    [ -z "${SUDO_USER:-}" ] || s="sudo "
    for v in BENCH_PREFIX IPOP_BIN_DIR BENCH_TINC_CIPHER BENCH_TINC_DIGEST LAB_SEC LAB_ICC LAB_REKEY; do
        [ -z "${!v:-}" ] || s+="$v=${!v} "
    done
    s+=$0
    [ $# -eq 0 ] || s+=$(printf ' %q' "$@")
    echo "$s"
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --json)
                [ $# -ge 2 ] || die "--json needs a file name"
                JSON_OUT=$2
                shift 2
                ;;
            --rounds)
                if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]?$ ]]; then die "--rounds needs a number 1-99"; fi
                ROUNDS=$2
                shift 2
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
    done
    [[ $STEM =~ ^[A-Za-z0-9]{1,10}$ ]] || die "BENCH_PREFIX: expected 1-10 letters or digits, got '$STEM'"
    [[ $TINC_CIPHER =~ ^[A-Za-z0-9-]*$ && $TINC_DIGEST =~ ^[A-Za-z0-9-]*$ ]] ||
        die "BENCH_TINC_CIPHER/BENCH_TINC_DIGEST: expected an OpenSSL name or none"
}

# --- prerequisites ---------------------------------------------------------------------------

# Installed with apt-get when missing (lablib.sh, under the same lock as the labs' installs).
ensure_bench_packages() {
    ensure_packages tincd:tinc iperf3:iperf3 ping:iputils-ping ip:iproute2 ss:iproute2 \
        python3:python3 sysctl:procps timeout:coreutils flock:util-linux >&2
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

# --- lab and cleanup -------------------------------------------------------------------------

# lab.sh for one plane's lab. Only "ours" runs the daemons; LAB_SEC, LAB_ICC, LAB_REKEY and
# RUST_LOG pass through to it, lab.sh settings that would break or merge the labs do not.
lab() {
    local plane=$1 nd=1
    shift
    [ "$plane" != ours ] || nd=0
    env -u LAB_DIR -u LAB_PLAIN_HOSTS -u LAB_ROGUE_HOSTS -u LAB_WAIT_LINKS -u LAB_KEEP_ON_FAIL \
        LAB_PREFIX="${PFX[$plane]}" LAB_HOSTS=2 LAB_NO_DAEMONS=$nd IPOP_BIN_DIR="$BIN" \
        bash "$LAB" "$@"
}

ns() { echo "${PFX[$1]}-$2"; }

lab_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -q "^${PFX[$1]}-"; }

# Ends one process this script started, if PID still is that program (guards a recycled PID).
stop_pid() {
    local pid=$1 name=$2
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q "$name" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? p left
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
    for p in "${PLANES[@]}"; do
        if lab_exists "$p" || [ -d "/tmp/ipop-lab-${PFX[$p]}" ]; then
            lab "$p" down >&2 || say "warning: lab.sh down for ${PFX[$p]} failed"
        fi
    done
    [ -z "$WORK" ] || rm -rf "$WORK"
    [ -z "$LOCK_FILE" ] || rm -f "$LOCK_FILE"
    left=$(ip netns list 2>/dev/null | awk '{print $1}' |
        grep -E "^(${PFX[ours]}|${PFX[vxlan]}|${PFX[tinc]})-" | tr '\n' ' ' || true)
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

# --- setup of the three planes ---------------------------------------------------------------

# Seconds (3 decimals) from START (an $EPOCHREALTIME) to now.
since() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$EPOCHREALTIME"; }

# Pings DST from SRC every 50 ms until the first reply (at most 30 s).
first_reply() {
    run timeout --foreground 35 ip netns exec "$(ns "$1" "$SRC")" \
        ping -n -q -c 1 -i 0.05 -w 30 "$DST_IP" >/dev/null 2>&1
}

setup_ours() {
    local t0=$EPOCHREALTIME
    lab ours up >&2
    first_reply ours || die "ours: no ping reply from $DST to $SRC within 30 s"
    SETUP[ours]=$(since "$t0")
    # What lab.sh configured: encrypted links or not, ARP replication or not.
    OURS_CONFIG=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print("sec %s, icc %s" % (str(c.get("sec")).lower(), str(c.get("icc")).lower()))' \
        "/tmp/ipop-lab-${PFX[ours]}/h1/config.json" 2>/dev/null || echo "config unknown")
}

setup_vxlan() {
    local t0=$EPOCHREALTIME i j h
    lab vxlan up >&2
    SETUP[namespaces]=$(since "$t0")
    for i in 1 2; do
        j=$((3 - i))
        h=$(ns vxlan "h$i")
        ip -n "$h" link add vx0 type vxlan id 42 remote "10.99.0.$j" dstport 4789 dev u0
        ip -n "$h" link set vx0 mtu "$MTU" master lxcbr0 up
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
        # Runs inside the host namespace (tincd runs there): MTU like ours, then onto the bridge.
        cat >"$d/tinc-up" <<EOF
#!/bin/sh
ip link set "\$INTERFACE" mtu $MTU
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
        SETUP[tinc_pmtu]=$(since "$t0")
    else
        say "warning: tinc did not settle its path MTU within 30 s; measuring anyway"
        TINC_PMTU=""
    fi
}

# --- measurements ----------------------------------------------------------------------------

# Appends "ROUND PLANE METRIC VALUE" lines to $RESULTS; VALUE is "NA" when the measurement failed.
record() { echo "$*" >>"$RESULTS"; }

measure_ping() {
    local round=$1 plane=$2 out=$WORK/ping-$1-$2.txt line avg=NA loss=NA
    run timeout --foreground 20 ip netns exec "$(ns "$plane" "$SRC")" \
        ping -n -q -c 20 -i 0.05 -W 1 -w 15 "$DST_IP" >"$out" 2>&1 || true
    line=$(grep -E '^(rtt|round-trip)' "$out" || true)
    [[ $line =~ =\ [0-9.]+/([0-9.]+)/ ]] && avg=${BASH_REMATCH[1]}
    line=$(grep 'packets transmitted' "$out" || true)
    [[ $line =~ ([0-9.]+)%\ packet\ loss ]] && loss=${BASH_REMATCH[1]}
    record "$round $plane ping_rtt_avg_ms $avg"
    record "$round $plane ping_loss_pct $loss"
    say "round $round $plane ping: avg $avg ms, loss $loss%"
}

# measure_tcp ROUND PLANE STREAMS: iperf3 -t 5, bits_per_second of sum_received.
measure_tcp() {
    local round=$1 plane=$2 streams=$3 out=$WORK/iperf-$1-$2-P$3.json spid parsed bps retr
    local server=$WORK/iperf-server-$1-$2-P$3.log
    # One-off server (-1), bounded by timeout; stopped by PID below in any case.
    timeout --foreground 30 ip netns exec "$(ns "$plane" "$DST")" \
        iperf3 -s -1 -B "$DST_IP" -p "$IPERF_PORT" >"$server" 2>&1 &
    spid=$!
    PIDS+=("$spid:iperf3")
    for _ in $(seq 50); do
        [ -z "$(ip netns exec "$(ns "$plane" "$DST")" ss -Hltn "sport = :$IPERF_PORT" 2>/dev/null)" ] || break
        sleep 0.1
    done
    run timeout --foreground 25 ip netns exec "$(ns "$plane" "$SRC")" \
        iperf3 -c "$DST_IP" -p "$IPERF_PORT" -t 5 -P "$streams" -J --connect-timeout 3000 \
        >"$out" 2>&1 || true
    stop_pid "$spid" iperf3
    parsed=$(python3 - "$out" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        r = json.load(f)
    end = r["end"]
    print("%d %d" % (end["sum_received"]["bits_per_second"], end["sum_sent"].get("retransmits", -1)))
except Exception as e:
    err = r.get("error") if isinstance(locals().get("r"), dict) else None
    print("NA NA %s" % (err or repr(e)).replace("\n", " "))
EOF
    )
    read -r bps retr _ <<<"$parsed"
    record "$round $plane tcp_${streams}_bps $bps"
    record "$round $plane tcp_${streams}_retransmits $retr"
    if [ "$bps" = NA ]; then
        say "round $round $plane TCP -P $streams: FAILED: ${parsed#NA NA } (see $out)"
    else
        say "round $round $plane TCP -P $streams: $((bps / 1000000)) Mbit/s, $retr retransmits"
    fi
}

# --- report ----------------------------------------------------------------------------------

report() {
    BENCH_RESULTS=$RESULTS BENCH_JSON=$JSON_OUT BENCH_ROUNDS=$ROUNDS BENCH_COMMAND=$COMMAND \
        BENCH_COMMIT=$COMMIT BENCH_DIRTY=$DIRTY BENCH_DATE=$DATE BENCH_NPROC=$(nproc) \
        BENCH_KERNEL=$(uname -r) BENCH_LOADAVG="$LOADAVG" BENCH_OURS_CONFIG="$OURS_CONFIG" \
        BENCH_BINARIES="$BIN (ipop-tincan built $(date -u -r "$BIN/ipop-tincan" '+%Y-%m-%d %H:%M UTC'))" \
        BENCH_IPERF3=$(iperf3 --version 2>/dev/null | head -n 1 | awk '{print $2}') \
        BENCH_TINC=$(tincd --version 2>/dev/null | head -n 1 | awk '{print $3}') \
        BENCH_TINC_CIPHER_USED=${TINC_CIPHER:-aes-256-cbc (default)} \
        BENCH_TINC_DIGEST_USED=${TINC_DIGEST:-sha256 (default)} BENCH_TINC_PMTU=$TINC_PMTU \
        BENCH_SETUP="$(for k in "${!SETUP[@]}"; do echo "$k=${SETUP[$k]}"; done)" \
        python3 - <<'EOF'
import json, os, statistics

env = os.environ
planes = ["ours", "vxlan", "tinc"]
rows = {}
for line in open(env["BENCH_RESULTS"]):
    rnd, plane, metric, value = line.split()
    rows.setdefault(metric, {}).setdefault(plane, []).append(
        None if value == "NA" else float(value))

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

medians = {m: {p: med(v.get(p, [])) for p in planes} for m, v in rows.items()}

def ratio(m, other):
    a, b = medians[m]["ours"], medians[m][other]
    return a / b if a is not None and b else None

main = [("ping_rtt_avg_ms", "ping RTT avg, ms (lower is better)", 1.0, "%.3f"),
        ("tcp_1_bps", "TCP 1 stream, Gbit/s", 1e9, "%.2f"),
        ("tcp_4_bps", "TCP 4 streams, Gbit/s", 1e9, "%.2f")]
extra = [("tcp_1_retransmits", "  retransmits, 1 stream", 1.0, "%.0f"),
         ("tcp_4_retransmits", "  retransmits, 4 streams", 1.0, "%.0f"),
         ("ping_loss_pct", "  ping loss, %", 1.0, "%.0f")]
setup = dict(l.split("=", 1) for l in env["BENCH_SETUP"].splitlines() if "=" in l)

def cell(v, scale, fmt):
    return "fail" if v is None else fmt % (v / scale)

n = int(env["BENCH_ROUNDS"])
commit = env["BENCH_COMMIT"] + (" (working tree has uncommitted changes)" if env["BENCH_DIRTY"] == "1" else "")
print("IPOP switch mode: data-plane benchmark, h1c1 (10.0.3.11) -> h2c1 (10.0.3.21), MTU 1400")
print("date:     %s" % env["BENCH_DATE"])
print("command:  %s" % env["BENCH_COMMAND"])
print("commit:   %s" % commit)
print("binaries: %s" % env["BENCH_BINARIES"])
print("ours:     config from lab.sh: %s" % env["BENCH_OURS_CONFIG"])
print("machine:  nproc %s, kernel %s, loadavg at start %s" % (
    env["BENCH_NPROC"], env["BENCH_KERNEL"], env["BENCH_LOADAVG"]))
print("tools:    iperf3 %s; tinc %s, cipher %s, digest %s, path MTU %s" % (
    env["BENCH_IPERF3"], env["BENCH_TINC"], env["BENCH_TINC_CIPHER_USED"],
    env["BENCH_TINC_DIGEST_USED"], env["BENCH_TINC_PMTU"] or "not settled"))
print("rounds:   %d (each: ping, then TCP -P 1, then TCP -P 4, each on ours, vxlan, tinc in turn);"
      " medians" % n)
print()
hdr = "%-36s %10s %10s %10s %11s %10s" % ("measurement", "ours", "vxlan", "tinc",
                                        "ours/vxlan", "ours/tinc")
print(hdr)
print("-" * len(hdr))
for m, label, scale, fmt in main + extra:
    if m not in medians:
        continue
    vals = [cell(medians[m][p], scale, fmt) for p in planes]
    if (m, label, scale, fmt) in main:
        rs = ["%.2f" % r if r is not None else "-" for r in (ratio(m, "vxlan"), ratio(m, "tinc"))]
    else:
        rs = ["", ""]
    print("%-36s %10s %10s %10s %11s %10s" % (label, *vals, *rs))
print("%-36s %10s %10s %10s" % ("start to first reply, s", setup.get("ours", "-"),
                                setup.get("vxlan", "-"), setup.get("tinc", "-")))
print()
print("start to first reply: ours = lab.sh up (namespaces, daemons, wait for links online) until the"
      " first ping reply;\n  vxlan = LAB_NO_DAEMONS=1 lab.sh up (%s s of it) plus the vxlan devices"
      " until the first reply;\n  tinc = from starting both tincd (namespaces and keys made"
      " before) until the first reply; path MTU settled after %s s." % (
          setup.get("namespaces", "?"), setup.get("tinc_pmtu", "?")))

if env["BENCH_JSON"]:
    out = {
        "date": env["BENCH_DATE"], "command": env["BENCH_COMMAND"],
        "commit": env["BENCH_COMMIT"], "uncommitted_changes": env["BENCH_DIRTY"] == "1",
        "binaries": env["BENCH_BINARIES"], "ours_config": env["BENCH_OURS_CONFIG"],
        "nproc": int(env["BENCH_NPROC"]), "kernel": env["BENCH_KERNEL"],
        "loadavg_at_start": env["BENCH_LOADAVG"], "rounds": n,
        "path": {"from": "h1c1 10.0.3.11", "to": "h2c1 10.0.3.21", "container_mtu": 1400},
        "tools": {"iperf3": env["BENCH_IPERF3"], "tinc": env["BENCH_TINC"],
                  "tinc_cipher": env["BENCH_TINC_CIPHER_USED"],
                  "tinc_digest": env["BENCH_TINC_DIGEST_USED"],
                  "tinc_path_mtu": int(env["BENCH_TINC_PMTU"]) if env["BENCH_TINC_PMTU"] else None},
        "planes": planes,
        "results": {m: {p: {"median": medians[m][p], "rounds": rows[m].get(p, [])} for p in planes}
                    for m in rows},
        "ratios": {m: {"ours/vxlan": ratio(m, "vxlan"), "ours/tinc": ratio(m, "tinc")}
                   for m, *_ in main if m in medians},
        "setup_seconds": {k: float(v) for k, v in setup.items()},
    }
    with open(env["BENCH_JSON"], "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
EOF
}

# --- main ------------------------------------------------------------------------------------

main() {
    parse_args "$@"
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
    local p
    for p in "${PLANES[@]}"; do
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
    OURS_CONFIG=""

    say "setting up: ours (${PFX[ours]}), vxlan (${PFX[vxlan]}), tinc (${PFX[tinc]})"
    setup_ours
    setup_vxlan
    setup_tinc
    for p in "${PLANES[@]}"; do # ARP and link warm-up, and a last check that each plane works
        run timeout --foreground 10 ip netns exec "$(ns "$p" "$SRC")" \
            ping -n -q -c 3 -i 0.2 -W 1 -w 5 "$DST_IP" >/dev/null 2>&1 || die "$p: lost pings in warm-up"
    done

    local r
    for r in $(seq 1 "$ROUNDS"); do
        for p in "${PLANES[@]}"; do measure_ping "$r" "$p"; done
        for p in "${PLANES[@]}"; do measure_tcp "$r" "$p" 1; done
        for p in "${PLANES[@]}"; do measure_tcp "$r" "$p" 4; done
    done
    report
    [ -z "$JSON_OUT" ] || say "results written to $JSON_OUT"
    if grep -q ' NA$' "$RESULTS"; then
        say "some measurements failed (fail in the table)"
        exit 1
    fi
}

main "$@"
