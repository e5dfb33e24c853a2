#!/usr/bin/env bash
# Time from daemon start to the first ping reply across NATs (scripts/natlab.sh, "cone cone sym"):
# h1c1 -> h2c1 (cone to cone, direct) and h1c1 -> h3c1 (cone to symmetric, relayed). As root.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LAB_PREFIX=bnat LAB_NATS="cone cone sym"
[ "$(id -u)" -eq 0 ] || { echo "bench-nat.sh: needs root (network namespaces)" >&2; exit 1; }
trap '"$REPO/scripts/natlab.sh" down >/dev/null 2>&1 || true' EXIT INT TERM
"$REPO/scripts/natlab.sh" down >/dev/null 2>&1 || true
LAB_NO_DAEMONS=1 "$REPO/scripts/natlab.sh" up >/dev/null
start=$(date +%s%N)
for h in h1 h2 h3; do "$REPO/scripts/natlab.sh" start "$h" tincan >/dev/null; done
for h in h1 h2 h3; do "$REPO/scripts/natlab.sh" start "$h" controller >/dev/null; done
direct="" relayed=""
for _ in $(seq 600); do
    if [ -z "$direct" ] && ip netns exec bnat-h1c1 ping -c1 -W1 -q 10.0.3.21 >/dev/null 2>&1; then
        direct=$(( ($(date +%s%N) - start) / 1000000 ))
    fi
    if [ -z "$relayed" ] && ip netns exec bnat-h1c1 ping -c1 -W1 -q 10.0.3.31 >/dev/null 2>&1; then
        relayed=$(( ($(date +%s%N) - start) / 1000000 ))
    fi
    [ -n "$direct" ] && [ -n "$relayed" ] && break
    sleep 0.1
done
echo "direct  (cone -> cone): first reply ${direct:-none} ms after daemon start"
echo "relayed (cone -> sym):  first reply ${relayed:-none} ms after daemon start"
"$REPO/scripts/natlab.sh" status 2>/dev/null | grep "link " || true
