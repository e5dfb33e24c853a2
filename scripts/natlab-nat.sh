# shellcheck shell=bash
# Sourced by natlab.sh: the NAT routers' nftables rules, and the `flush` and `remap` commands
# that make a router forget its mappings (as a home router does when they expire or it
# restarts), optionally mapping the host's flows to other public ports from then on.

# The NAT of router i, as one nftables table in the router's namespace.
#   masquerade without flags keeps the source port whenever it is free, so every destination
#   sees the same mapping (endpoint-independent mapping), and conntrack lets in only replies
#   from the exact address and port the host sent to (address+port-dependent filtering): a
#   port-restricted cone. `random,fully-random` picks a new random port for each new flow, i.e.
#   each destination: symmetric. `full` adds a DNAT of every inbound UDP port to the host, which
#   with the port kept by masquerade is endpoint-independent filtering: a full cone.
#   Unsolicited packets to the router itself are dropped in `input`, before conntrack confirms
#   an entry for them: a confirmed entry (R_peer:p -> R_wan:q) would make the router pick another
#   port for the host's own later flow to R_peer:p, which breaks simultaneous hole punching
#   (real home routers drop them silently as well).
nat_rules() {
    local i=$1 nat=$2 flags="" full_pre="" full_fwd=""
    [ "$nat" != sym ] || flags=" random,fully-random"
    if [ "$nat" = full ]; then
        full_pre="        iifname \"wan0\" udp dport 1024-65535 dnat to 192.168.$i.2"
        full_fwd="        iifname \"wan0\" oifname \"lan0\" ct status dnat accept"
    fi
    cat <<EOF
table ip natlab {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
$full_pre
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" ip saddr 192.168.$i.0/24 masquerade$flags
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
$full_fwd
    }
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan0" ct state established,related accept
        iifname "wan0" icmp type echo-request accept
        iifname "wan0" drop
    }
}
EOF
    # IPv6 (LAB_V6=1) is routed, not translated, behind the stateful firewall home routers
    # have: out from the LAN, and back only what answers it (a hole punched from both sides
    # passes, as through a port-restricted cone).
    [ "$V6" = 1 ] || return 0
    cat <<EOF
table ip6 natlab6 {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "lan0" oifname "wan0" accept
        icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, echo-request } accept
    }
}
EOF
}

# The conntrack table of namespace $1 flushed over ctnetlink (IPCTNL_MSG_CT_DELETE without a
# tuple deletes every entry; the `conntrack` tool is not needed).
conntrack_flush() {
    ip netns exec "$1" python3 -c '
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
# nlmsghdr (type: CTNETLINK << 8 | CT_DELETE; flags: REQUEST | ACK), nfgenmsg (AF_INET)
s.sendto(struct.pack("=IHHII", 20, (1 << 8) | 2, 1 | 4, 1, 0) + struct.pack("=BBH", 2, 0, 0), (0, 0))
err = struct.unpack("=i", s.recv(4096)[16:20])[0]
sys.exit("conntrack flush: error %d" % -err if err else 0)
'
}

# flush|remap hN: host N's router forgets every mapping; `remap` first moves its masquerade
# to the next range of 1000 ports (20000-20999, then 21000-21999, ...), so that the host's
# flows get new public ports: what a NAT whose mapping expired may do.
cmd_nat() {
    local action=$1 node=${2:-} i nat flags="" k lo
    [[ $node =~ ^h[1-9]$ ]] || die "usage: $0 $action hN"
    i=${node#h}
    [ "$i" -le "$HOSTS" ] || die "$node: the lab has $HOSTS hosts"
    nat=$(nat_of "$i")
    [ "$nat" != none ] || die "$node has no NAT (LAB_NATS says none)"
    require_root "$action"
    if [ "$action" = remap ]; then
        [ "$nat" != sym ] || flags=" random,fully-random"
        k=$(cat "$DIR/$node/remaps" 2>/dev/null || echo 0)
        lo=$((20000 + 1000 * (k % 40)))
        echo $((k + 1)) >"$DIR/$node/remaps"
        ip netns exec "$P-r$i" nft flush chain ip natlab postrouting
        ip netns exec "$P-r$i" nft add rule ip natlab postrouting oifname wan0 \
            ip saddr "192.168.$i.0/24" meta l4proto "{ tcp, udp }" \
            masquerade to ":$lo-$((lo + 999))$flags"
        ip netns exec "$P-r$i" nft add rule ip natlab postrouting oifname wan0 \
            ip saddr "192.168.$i.0/24" masquerade"$flags"
        say "r$i: $node's flows now map to ports $lo-$((lo + 999))"
    fi
    conntrack_flush "$P-r$i"
    say "r$i: mappings flushed"
}
