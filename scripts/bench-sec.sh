#!/usr/bin/env bash
# Encrypted links vs "sec": false, in one run: two 2-host labs side by side, iperf3 TCP 5 s from
# h1c1 to h2c1, ROUNDS rounds interleaved, then a 20-ping RTT on each. As root.
#   scripts/bench-sec.sh [ROUNDS]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "bench-sec.sh: ROUNDS: expected 1-99, got '$ROUNDS'" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench-sec.sh: needs root (network namespaces)" >&2; exit 1; }
LAB_SCRIPT=bench-sec.sh
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"
ensure_packages iperf3:iperf3
cleanup() {
    LAB_PREFIX=bsec "$REPO/scripts/lab.sh" down >/dev/null 2>&1 || true
    LAB_PREFIX=bpln "$REPO/scripts/lab.sh" down >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
cleanup
LAB_PREFIX=bsec LAB_HOSTS=2 LAB_SEC=1 "$REPO/scripts/lab.sh" up >/dev/null
LAB_PREFIX=bpln LAB_HOSTS=2 LAB_SEC=0 "$REPO/scripts/lab.sh" up >/dev/null
echo "commit $(git -C "$REPO" rev-parse --short HEAD), $(date -u '+%F %T') UTC, nproc $(nproc)"
for r in $(seq "$ROUNDS"); do
    for p in bsec bpln; do
        ip netns exec "$p-h2c1" timeout 20 iperf3 -s -1 >/dev/null 2>&1 &
        sleep 0.5
        bps=$(ip netns exec "$p-h1c1" timeout 20 iperf3 -c 10.0.3.21 -t 5 -J |
            python3 -c "import json,sys; print(round(json.load(sys.stdin)['end']['sum_received']['bits_per_second']/1e9,2))")
        wait
        echo "round $r $([ $p = bsec ] && echo encrypted || echo plaintext): $bps Gbit/s"
    done
done
for p in bsec bpln; do
    echo "$([ $p = bsec ] && echo encrypted || echo plaintext) ping: $(ip netns exec "$p-h1c1" ping -c 20 -i 0.05 -w 10 -q 10.0.3.21 | tail -1)"
done
