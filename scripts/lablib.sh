# shellcheck shell=bash
# Shared by scripts/lab.sh and scripts/natlab.sh (sourced, not run): how a lab asks a host's
# tincan for its state and decides that the host is ready. The sourcing script defines P, DIR,
# HOSTS, TINCAN_BIN, TINCAN_PORT, TAP, WAIT_LINKS, and `daemon_alive I NAME` (true when daemon
# NAME of host I runs).

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
