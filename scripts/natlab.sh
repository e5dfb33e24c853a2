#!/usr/bin/env bash
# The IPOP NAT lab (docs/natlab.md): hosts behind NAT routers, a real XMPP server and a real
# STUN/TURN server on a "public" network, all in network namespaces.
#
# A namespace `$P-pub` holds the "internet", the bridge inet0 on 203.0.113.0/24. The servers live
# in `$P-srv` at 203.0.113.10: prosody (XMPP, TLS, VirtualHost ipop.lab, accounts node<i> /
# pw-node<i> in one shared-roster group) and coturn's turnserver (STUN + TURN on UDP 3478, a
# second STUN listener on 3479, user ipop / pw-turn, realm ipop.lab). Each host h<i> sits behind
# its own NAT router `$P-r<i>` (WAN 203.0.113.(100+i), LAN 192.168.<i>.0/24, host 192.168.<i>.2)
# whose nftables rules make the NAT type of LAB_NATS; or, for `none`, directly on inet0 at
# 203.0.113.(100+i). Inside each host: lxcbr0 10.0.3.<i>/24 with two containers, as scripts/lab.sh.
# Each host gets an original-style gvpn config (XMPP account, stun, turn; no static peers).
# Nothing here touches the machine's own interfaces, and no system service is started: the
# servers are plain processes inside `$P-srv` with their config, data, logs and pidfiles in
# LAB_DIR. `down` removes every namespace whose name starts with "$LAB_PREFIX-".
#
#   scripts/natlab.sh up | down | status | check
#   scripts/natlab.sh exec NODE CMD...     NODE: pub, srv, r1, h1, h1c2, ...
#   scripts/natlab.sh kill|start hN tincan|controller
#   scripts/natlab.sh kill|start srv prosody|turnserver
#
# `check` runs scripts/natlab-check.py against the running lab: XMPP login of every node from
# its host (TLS through the NATs, presence, an IQ each way), the NAT type each host shows to
# STUN, UDP hole punching between every pair, and a TURN relay from every host behind `sym`.
# It ends with "N passed, N failed" and fails if anything did.
#
# Environment:
#   LAB_PREFIX     namespace prefix, letters/digits only (default inat); one lab per prefix
#   LAB_NATS       NAT type per host, h1 first (default "cone cone sym"; 2 to 9 hosts):
#                    none  host directly on the public net, no NAT
#                    full  full cone: endpoint-independent mapping and filtering
#                    cone  port-restricted cone: endpoint-independent mapping,
#                          address+port-dependent filtering (Linux masquerade)
#                    sym   symmetric: endpoint-dependent mapping (masquerade fully-random)
#   LAB_DIR        state dir (default /tmp/ipop-natlab-$LAB_PREFIX)
#   IPOP_BIN_DIR   where ipop-tincan and gvpn-controller are (default <repo>/target/release,
#                  or $CARGO_TARGET_DIR/release when that is set)
#   LAB_NO_DAEMONS 1: namespaces, NATs, servers and configs only; start no IPOP daemon
#   LAB_WAIT       seconds `up` waits for every link to come online (default 60)
#   LAB_WAIT_LINKS 0: `up` waits for the daemons and the bridge only, not for links
#   LAB_UDP_TIMEOUT  seconds a NAT router keeps an idle UDP mapping (sets conntrack's
#                  udp_timeout and udp_timeout_stream in every router; default: the kernel's,
#                  30 s for one-way flows and 120 s once both ways have been seen)
#   LAB_KEEP_ON_FAIL 1: a failed `up` leaves the lab in place for inspection (default: torn down)
#   LAB_NO_INSTALL 1: never apt-get missing packages (default: `up` installs them, with service
#                  start-up blocked by a temporary policy-rc.d)
#   RUST_LOG       passed to the daemons (default info)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$REPO/scripts/natlab.sh"
CHECK_PY="$REPO/scripts/natlab-check.py"

P=${LAB_PREFIX:-inat}
DIR=${LAB_DIR:-/tmp/ipop-natlab-$P}
NATS_RAW=${LAB_NATS:-cone cone sym}
NO_DAEMONS=${LAB_NO_DAEMONS:-0}
WAIT=${LAB_WAIT:-60}
WAIT_LINKS=${LAB_WAIT_LINKS:-1}
UDP_TIMEOUT=${LAB_UDP_TIMEOUT:-}
read -r -a NATS <<<"$NATS_RAW"
HOSTS=${#NATS[@]}

if [ -n "${IPOP_BIN_DIR:-}" ]; then
    BIN=$IPOP_BIN_DIR
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case $CARGO_TARGET_DIR in
        /*) BIN=$CARGO_TARGET_DIR/release ;;
        *) BIN=$REPO/$CARGO_TARGET_DIR/release ;;
    esac
else
    BIN=$REPO/target/release
fi
TINCAN_BIN=$BIN/ipop-tincan
CONTROLLER_BIN=$BIN/gvpn-controller

# The public net and its servers.
PUB_NET=203.0.113
SRV_IP=$PUB_NET.10
DOMAIN=ipop.lab
XMPP_PORT=5222
STUN_PORT=3478
STUN_PORT2=3479 # coturn --aux-server: a second STUN/TURN listener, for the NAT mapping test
TURN_USER=ipop
TURN_PASS=pw-turn
TURN_REALM=ipop.lab

# As scripts/lab.sh: ports of the generated configs, TAP and MTU (README.md, "Overlay MTU").
TINCAN_PORT=5800
ICC_PORT=30000
LINK_PORT=5900
TAP=ipop
TAP_MTU=1400

# State files.
MARKER=$DIR/.ipop-natlab
CA_PEM=$DIR/xmpp-ca.pem # the CA that signed prosody's certificate: what `xmpp_ca` names
SRV_DIR=$DIR/srv
PKI_DIR=$SRV_DIR/pki
PROSODY_CFG=$SRV_DIR/prosody/prosody.cfg.lua
TURN_DIR=$SRV_DIR/turn

die() {
    echo "natlab.sh: $*" >&2
    exit 1
}
say() { echo "natlab.sh[$P]: $*"; }

usage() {
    sed -n '2,/^set -euo/p' "$SELF" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

validate_env() {
    local n
    [[ $P =~ ^[A-Za-z0-9]{1,10}$ ]] ||
        die "LAB_PREFIX: expected 1-10 letters or digits (no '-': it separates the node name), got '$P'"
    [[ $HOSTS -ge 2 && $HOSTS -le 9 ]] ||
        die "LAB_NATS: expected 2 to 9 NAT types (one per host), got '$NATS_RAW'"
    for n in "${NATS[@]}"; do
        [[ $n =~ ^(none|full|cone|sym)$ ]] ||
            die "LAB_NATS: '$n' is not a NAT type (expected none, full, cone or sym) in '$NATS_RAW'"
    done
    [[ $NO_DAEMONS =~ ^[01]$ ]] || die "LAB_NO_DAEMONS: expected 0 or 1, got '$NO_DAEMONS'"
    [[ $WAIT =~ ^[0-9]+$ ]] || die "LAB_WAIT: expected seconds, got '$WAIT'"
    [[ $WAIT_LINKS =~ ^[01]$ ]] || die "LAB_WAIT_LINKS: expected 0 or 1, got '$WAIT_LINKS'"
    [[ -z $UDP_TIMEOUT || $UDP_TIMEOUT =~ ^[1-9][0-9]*$ ]] ||
        die "LAB_UDP_TIMEOUT: expected seconds, got '$UDP_TIMEOUT'"
}

require_root() {
    [ "$(id -u)" -eq 0 ] ||
        die "needs root (it creates network namespaces): run  sudo $0 ${1:-up}"
}

# tool:package pairs for everything `up` runs.
TOOLS="ip:iproute2 ss:iproute2 sysctl:procps timeout:coreutils nft:nftables openssl:openssl
prosody:prosody prosodyctl:prosody turnserver:coturn python3:python3"

missing_packages() {
    local pair pkgs=""
    for pair in $TOOLS; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || [[ " $pkgs " == *" ${pair#*:} "* ]] ||
            pkgs+=" ${pair#*:}"
    done
    echo "${pkgs# }"
}

# Installs missing packages without starting their system services (Debian's prosody and coturn
# packages would start and enable one): a policy-rc.d that denies every start, only while apt
# runs, and only if the machine has none of its own.
ensure_packages() {
    local pkgs rc=0 policy=/usr/sbin/policy-rc.d made=0
    pkgs=$(missing_packages)
    [ -n "$pkgs" ] || return 0
    [ "${LAB_NO_INSTALL:-0}" != 1 ] || die "missing packages: $pkgs (LAB_NO_INSTALL=1: install them first)"
    command -v apt-get >/dev/null 2>&1 || die "missing packages: $pkgs (and no apt-get to install them)"
    say "installing $pkgs (services not started)"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# natlab.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made=1
    fi
    # shellcheck disable=SC2086
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $pkgs >/dev/null; } || rc=$?
    [ "$made" = 0 ] || rm -f "$policy"
    [ "$rc" = 0 ] || die "apt-get install $pkgs failed"
    pkgs=$(missing_packages)
    [ -z "$pkgs" ] || die "still missing after apt-get: $pkgs"
}

# --- namespaces ------------------------------------------------------------------------------

lab_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$P-" || true
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$P-$1"; }

# Host numbers present (from the namespaces, so `status` works whatever LAB_NATS says now).
lab_hosts() {
    lab_namespaces | sed -n "s/^$P-h\([0-9]\)\$/\1/p" | sort -n
}

# The NAT type of host i as the lab was built (state file), else as LAB_NATS says.
nat_of() {
    local i=$1 saved=()
    if [ -f "$DIR/nats" ]; then
        read -r -a saved <"$DIR/nats"
        echo "${saved[$((i - 1))]:-?}"
    else
        echo "${NATS[$((i - 1))]:-?}"
    fi
}

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
# exists (new interfaces inherit the defaults), loopback up.
new_ns() {
    local ns=$P-$1
    shift
    ip netns add "$ns"
    ns_sysctls "$ns" "$@"
    ip -n "$ns" link set lo up
}

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
}

build_topology() {
    local i c nat pub=$P-pub h r cn
    new_ns pub
    ip -n "$pub" link add inet0 type bridge stp_state 0 forward_delay 0
    ip -n "$pub" link set inet0 up

    new_ns srv
    ip -n "$pub" link add srv type veth peer name eth0 netns "$P-srv"
    ip -n "$pub" link set srv master inet0 up
    ip -n "$P-srv" addr add "$SRV_IP/24" dev eth0
    ip -n "$P-srv" link set eth0 up

    for i in $(seq 1 "$HOSTS"); do
        nat=${NATS[$((i - 1))]}
        h=$P-h$i
        r=$P-r$i
        # As lab.sh: ip_forward=1 as LXC sets it, redirects on as the kernel default.
        new_ns "h$i" net.ipv4.ip_forward=1 \
            net.ipv4.conf.all.send_redirects=1 net.ipv4.conf.default.send_redirects=1
        if [ "$nat" = none ]; then
            ip -n "$pub" link add "h$i" type veth peer name u0 netns "$h"
            ip -n "$pub" link set "h$i" master inet0 up
            ip -n "$h" addr add "$PUB_NET.$((100 + i))/24" dev u0
            ip -n "$h" link set u0 mtu 1500 up
        else
            new_ns "r$i" net.ipv4.ip_forward=1
            ip -n "$pub" link add "r$i" type veth peer name wan0 netns "$r"
            ip -n "$pub" link set "r$i" master inet0 up
            ip -n "$r" addr add "$PUB_NET.$((100 + i))/24" dev wan0
            ip -n "$r" link set wan0 up
            ip -n "$r" link add lan0 type veth peer name u0 netns "$h"
            ip -n "$r" addr add "192.168.$i.1/24" dev lan0
            ip -n "$r" link set lan0 up
            ip -n "$h" addr add "192.168.$i.2/24" dev u0
            ip -n "$h" link set u0 mtu 1500 up
            ip -n "$h" route add default via "192.168.$i.1"
            nat_rules "$i" "$nat" | ip netns exec "$r" nft -f - ||
                die "nft: cannot load the $nat NAT rules into $r"
            if [ -n "$UDP_TIMEOUT" ]; then
                ip netns exec "$r" sysctl -q -w \
                    "net.netfilter.nf_conntrack_udp_timeout=$UDP_TIMEOUT" \
                    "net.netfilter.nf_conntrack_udp_timeout_stream=$UDP_TIMEOUT" >/dev/null
            fi
        fi

        # The host's LXC-style bridge and two containers, exactly as scripts/lab.sh.
        ip -n "$h" link add lxcbr0 type bridge stp_state 0 forward_delay 0
        ip -n "$h" addr add "10.0.3.$i/24" dev lxcbr0
        ip -n "$h" link set lxcbr0 up
        for c in 1 2; do
            cn=$P-h${i}c$c
            new_ns "h${i}c$c"
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
    echo "${NATS[*]}" >"$DIR/nats"
}

# --- servers ---------------------------------------------------------------------------------

# A CA and a server certificate signed by it (not one self-signed certificate: rustls/webpki
# refuses a CA certificate as the end entity, and wants the name in subjectAltName).
make_pki() {
    mkdir -p "$PKI_DIR"
    (
        cd "$PKI_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 3650 -subj "/O=IPOP natlab/CN=IPOP natlab CA ($P)" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj "/O=IPOP natlab/CN=$DOMAIN" 2>/dev/null
        cat >server.ext <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$DOMAIN,IP:$SRV_IP
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 8)" \
            -days 825 -extfile server.ext -out server.pem 2>/dev/null
        # An unrelated CA, for tests that a client refuses a server its xmpp_ca did not sign.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout decoy-ca.key -out decoy-ca.pem -days 3650 -subj "/O=IPOP natlab/CN=decoy CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        chmod 0600 ca.key server.key decoy-ca.key
    ) || die "openssl: cannot make the lab's certificates in $PKI_DIR"
    cp "$PKI_DIR/ca.pem" "$CA_PEM"
}

write_prosody_config() {
    local i d=$SRV_DIR/prosody
    mkdir -p "$d/data"
    chmod 0750 "$d/data"
    {
        echo "[ipop]"
        for i in $(seq 1 "$HOSTS"); do echo "node$i@$DOMAIN"; done
    } >"$d/groups.txt"
    # run_as_root: prosody refuses to run as root otherwise, and we run it as a plain process
    # in a namespace, not as Debian's service. No s2s, no offline storage, TLS required.
    cat >"$PROSODY_CFG" <<EOF
-- generated by scripts/natlab.sh for lab '$P'
run_as_root = true
daemonize = false
data_path = "$d/data"
certificates = "$PKI_DIR"
interfaces = { "$SRV_IP" }
c2s_ports = { $XMPP_PORT }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix"; "groups" }
modules_disabled = { "s2s"; "offline" }
c2s_require_encryption = true
allow_unencrypted_plain_auth = false
authentication = "internal_hashed"
storage = "internal"
groups_file = "$d/groups.txt"
log = { { levels = { min = "info" }, to = "file", filename = "$SRV_DIR/prosody.log" } }
ssl = { key = "$PKI_DIR/server.key"; certificate = "$PKI_DIR/server.pem" }
VirtualHost "$DOMAIN"
    ssl = { key = "$PKI_DIR/server.key"; certificate = "$PKI_DIR/server.pem" }
EOF
    for i in $(seq 1 "$HOSTS"); do
        # prosodyctl only writes the account file under data_path; no server needed.
        timeout 30 prosodyctl --config "$PROSODY_CFG" register "node$i" "$DOMAIN" "pw-node$i" \
            >>"$SRV_DIR/prosodyctl.log" 2>&1 ||
            die "prosodyctl register node$i failed (see $SRV_DIR/prosodyctl.log)"
    done
}

# --- processes: the servers and the IPOP daemons ----------------------------------------------
# A process is "NODE:NAME": srv:prosody, srv:turnserver, h<i>:tincan, h<i>:controller. Its
# pidfile is $DIR/NODE/NAME.pid; its output goes to $DIR/NODE/NAME.log for the IPOP daemons (as
# in lab.sh), to NAME.out for the servers, which write their own NAME.log.

proc_out() {
    case $2 in
        tincan | controller) echo "$DIR/$1/$2.log" ;;
        *) echo "$DIR/$1/$2.out" ;;
    esac
}

proc_bin() {
    case $1 in
        prosody) echo prosody ;;
        turnserver) echo turnserver ;;
        tincan) echo "$TINCAN_BIN" ;;
        controller) echo "$CONTROLLER_BIN" ;;
        *) return 1 ;;
    esac
}

proc_argv() {
    local node=$1 name=$2
    case $name in
        prosody) PROC_ARGV=(prosody --config "$PROSODY_CFG" -F) ;;
        turnserver)
            # -n: no config file (Debian's /etc/turnserver.conf is not read); the user database
            # and pidfile in the lab dir, not /var/lib/turn and /var/run; UDP and TCP only.
            # --aux-server opens a second listener: --alt-listening-port would need a second IP
            # (coturn opens it only for RFC 5780, which wants two addresses).
            PROC_ARGV=(turnserver -n --no-cli --no-tls --no-dtls
                --listening-ip "$SRV_IP" --relay-ip "$SRV_IP" --listening-port "$STUN_PORT"
                --aux-server "$SRV_IP:$STUN_PORT2"
                --lt-cred-mech --user "$TURN_USER:$TURN_PASS" --realm "$TURN_REALM" --fingerprint
                --userdb "$TURN_DIR/turndb" --pidfile "$TURN_DIR/turnserver-own.pid"
                --log-file "$SRV_DIR/turnserver.log" --simple-log --no-stdout-log)
            ;;
        tincan) PROC_ARGV=("$TINCAN_BIN" "$TAP" "$TINCAN_PORT") ;;
        controller) PROC_ARGV=("$CONTROLLER_BIN" -c "$DIR/$node/config.json") ;;
    esac
}

# True when PID is alive and is that process of this lab: the binary's name is one of its
# arguments (prosody runs as `lua5.4 /usr/bin/prosody ...`), and, for the servers and the
# controller, an argument names this lab's dir (another lab's prosody is not ours). A zombie
# has an empty command line and counts as gone.
pid_is_proc() {
    local pid=$1 name=$2 want a args=() found=0 mine=0
    want=$(basename "$(proc_bin "$name")")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    { mapfile -d '' args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    for a in "${args[@]}"; do
        [ "${a##*/}" != "$want" ] || found=1
        [[ $a != "$DIR/"* ]] || mine=1
    done
    [ "$name" = tincan ] && mine=1
    [ $found = 1 ] && [ $mine = 1 ]
}

proc_pid() {
    local f=$DIR/$1/$2.pid pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    pid_is_proc "$pid" "$2" || return 1
    echo "$pid"
}

start_proc() {
    local node=$1 name=$2 d=$DIR/$1 pid out
    ns_exists "$node" || die "no namespace $P-$node: is the lab up?"
    if pid=$(proc_pid "$node" "$name"); then
        die "$node $name is already running (pid $pid)"
    fi
    proc_argv "$node" "$name"
    case $name in
        tincan | controller)
            [ -x "${PROC_ARGV[0]}" ] || die "${PROC_ARGV[0]} not found: run  cargo build --release --workspace"
            [ -f "$d/config.json" ] || die "no $d/config.json: is the lab up?"
            ;;
    esac
    mkdir -p "$d"
    out=$(proc_out "$node" "$name")
    echo "=== $(date '+%F %T') natlab.sh: ip netns exec $P-$node ${PROC_ARGV[*]}" >>"$out"
    # `ip netns exec` execs the command in place, so $! is the process's own PID. All three
    # standard streams redirected: a caller reading our output must not wait for a daemon
    # holding its pipe.
    RUST_LOG=${RUST_LOG:-info} ip netns exec "$P-$node" "${PROC_ARGV[@]}" \
        </dev/null >>"$out" 2>&1 &
    echo $! >"$d/$name.pid"
    disown $!
}

# Stops processes given as NODE:NAME: SIGTERM to all, up to 3 s, then SIGKILL. Only the PIDs
# from the pidfiles, and only while they still are those processes.
stop_procs() {
    local spec pid n k pids=() specs=() left
    for spec in "$@"; do
        if pid=$(proc_pid "${spec%%:*}" "${spec#*:}"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            specs+=("$spec")
        fi
        rm -f "$DIR/${spec%%:*}/${spec#*:}.pid"
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    for n in $(seq 50); do
        left=0
        for ((k = 0; k < ${#pids[@]}; k++)); do
            ! pid_is_proc "${pids[k]}" "${specs[k]#*:}" || left=1
        done
        [ $left = 1 ] || return 0
        if [ "$n" -ge 30 ]; then
            for ((k = 0; k < ${#pids[@]}; k++)); do
                if pid_is_proc "${pids[k]}" "${specs[k]#*:}"; then
                    say "${specs[k]} ignored SIGTERM for 3 s: SIGKILL"
                    kill -KILL "${pids[k]}" 2>/dev/null || true
                fi
            done
        fi
        sleep 0.1
    done
}

# listening srv udp|tcp PORT: true when something in $P-srv listens there.
listening() {
    local flag=-Hltn
    [ "$2" = tcp ] || flag=-Hlun
    [ -n "$(ip netns exec "$P-$1" ss "$flag" "sport = :$3" 2>/dev/null)" ]
}

# Waits (bounded) until a server listens; fails early when it died.
wait_server() {
    local name=$1 proto=$2 port=$3 limit=${4:-15} deadline
    deadline=$((SECONDS + limit))
    while ! listening srv "$proto" "$port"; do
        if ! proc_pid srv "$name" >/dev/null; then
            tail -n 20 "$SRV_DIR/$name.out" "$SRV_DIR/$name.log" 2>/dev/null >&2 || true
            die "$name exited before listening on $proto $port (logs: $SRV_DIR/$name.{out,log})"
        fi
        [ $SECONDS -lt $deadline ] || die "$name does not listen on $proto $SRV_IP:$port after $limit s"
        sleep 0.2
    done
}

start_servers() {
    mkdir -p "$TURN_DIR"
    start_proc srv prosody
    start_proc srv turnserver
    wait_server prosody tcp "$XMPP_PORT"
    wait_server turnserver udp "$STUN_PORT"
    wait_server turnserver udp "$STUN_PORT2"
}

# --- configs ---------------------------------------------------------------------------------

uid_of() { printf '%s' "$1" | sha1sum | cut -c1-40; }

write_configs() {
    local i
    for i in $(seq 1 "$HOSTS"); do
        mkdir -p "$DIR/h$i"
        # The link key: made now when the binary is there (a lab without daemons may have none;
        # tincan then makes it itself, or the controller says it is missing).
        if [ -x "$TINCAN_BIN" ]; then
            "$TINCAN_BIN" --key "$DIR/h$i/ipop.key" >"$DIR/h$i/fpr" 2>/dev/null ||
                die "cannot make a key with $TINCAN_BIN --key"
        elif [ "$NO_DAEMONS" != 1 ]; then
            die "$TINCAN_BIN not found: build it first (cargo build --release --workspace)"
        fi
        cat >"$DIR/h$i/config.json" <<EOF
{
  "xmpp_username": "node$i@$DOMAIN",
  "xmpp_password": "pw-node$i",
  "xmpp_host": "$SRV_IP",
  "xmpp_port": $XMPP_PORT,
  "ip4": "10.0.3.$i",
  "switchmode": 1,
  "icc": true,
  "icc_port": $ICC_PORT,
  "svpn_port": $TINCAN_PORT,
  "stun": ["$SRV_IP:$STUN_PORT"],
  "turn": [{"server": "$SRV_IP:$STUN_PORT", "user": "$TURN_USER", "pass": "$TURN_PASS"}],
  "bridge": "lxcbr0",
  "tap_mtu": $TAP_MTU,
  "link_port": $LINK_PORT,
  "xmpp_ca": "$CA_PEM",
  "key_file": "$DIR/h$i/ipop.key"
}
EOF
    done
}

# $DIR/natlab.json: the lab described for tests and for natlab-check.py.
write_lab_json() {
    local i nat sep="" hosts="" wan addr router
    for i in $(seq 1 "$HOSTS"); do
        nat=${NATS[$((i - 1))]}
        wan=$PUB_NET.$((100 + i))
        if [ "$nat" = none ]; then
            addr=$wan
            router=null
        else
            addr=192.168.$i.2
            router="\"$P-r$i\""
        fi
        hosts+="$sep"$'\n'"    {\"name\": \"h$i\", \"nat\": \"$nat\", \"ns\": \"$P-h$i\", \"router_ns\": $router, \"wan\": \"$wan\", \"addr\": \"$addr\", \"jid\": \"node$i@$DOMAIN\", \"password\": \"pw-node$i\", \"ip4\": \"10.0.3.$i\", \"uid\": \"$(uid_of "10.0.3.$i")\", \"config\": \"$DIR/h$i/config.json\"}"
        sep=","
    done
    cat >"$DIR/natlab.json" <<EOF
{
  "prefix": "$P",
  "dir": "$DIR",
  "pub_ns": "$P-pub",
  "srv_ns": "$P-srv",
  "domain": "$DOMAIN",
  "xmpp": {"host": "$SRV_IP", "port": $XMPP_PORT, "ca": "$CA_PEM", "decoy_ca": "$PKI_DIR/decoy-ca.pem"},
  "stun": ["$SRV_IP:$STUN_PORT", "$SRV_IP:$STUN_PORT2"],
  "turn": {"server": "$SRV_IP:$STUN_PORT", "user": "$TURN_USER", "pass": "$TURN_PASS", "realm": "$TURN_REALM"},
  "hosts": [$hosts
  ]
}
EOF
}

# --- IPOP daemons ----------------------------------------------------------------------------

# rpc_state, count_online, host_ready: shared with the other lab script.
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"

daemon_alive() { proc_pid "h$1" "$2" >/dev/null; }

print_log_tails() {
    local f
    for f in "$DIR"/h*/tincan.log "$DIR"/h*/controller.log "$SRV_DIR/prosody.log" "$SRV_DIR/turnserver.log"; do
        [ -f "$f" ] || continue
        echo "----- ${f#"$DIR"/} (last 25 lines) -----"
        tail -n 25 "$f"
    done
}

start_daemons_and_wait() {
    local i n why deadline all
    for i in $(seq 1 "$HOSTS"); do
        start_proc "h$i" tincan
    done
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
        if [ $all = 1 ] && [ -z "${why//$'\n'/}" ]; then break; fi
        if [ $SECONDS -ge $deadline ] || [[ $why == *"is not running"* ]]; then
            echo "natlab.sh[$P]: up: not ready after $((SECONDS - deadline + WAIT)) s:" >&2
            printf '%s' "$why" | sed '/^$/d; s/^/  /' >&2
            print_log_tails >&2
            exit 1
        fi
        sleep 0.5
    done
}

# --- subcommands -----------------------------------------------------------------------------

cmd_up() {
    require_root up
    local existing
    existing=$(lab_namespaces | tr '\n' ' ')
    [ -z "$existing" ] ||
        die "a lab with prefix '$P' exists already ($existing): run  LAB_PREFIX=$P $0 down"
    ensure_packages
    if [ "$NO_DAEMONS" = 0 ] && { ! [ -x "$TINCAN_BIN" ] || ! [ -x "$CONTROLLER_BIN" ]; }; then
        die "no ipop-tincan/gvpn-controller in $BIN: run  cargo build --release --workspace  (or set IPOP_BIN_DIR, or LAB_NO_DAEMONS=1)"
    fi
    if [ -e "$DIR" ] && [ ! -f "$MARKER" ]; then
        [ -z "$(ls -A "$DIR" 2>/dev/null)" ] || die "LAB_DIR $DIR exists and is not a natlab state dir"
    fi

    # From here on, a failure or an interrupt tears down what was built.
    trap 'up_failed' EXIT
    trap 'exit 130' INT TERM
    rm -rf "$DIR"
    mkdir -p "$DIR" "$SRV_DIR"
    echo "$P" >"$MARKER"
    build_topology
    make_pki
    write_prosody_config
    start_servers
    write_configs
    write_lab_json

    if [ "$NO_DAEMONS" = 1 ]; then
        trap - EXIT
        say "up: $HOSTS hosts behind NATs '${NATS[*]}', servers at $SRV_IP, no IPOP daemons (LAB_NO_DAEMONS=1); state in $DIR"
        return 0
    fi
    start_daemons_and_wait
    trap - EXIT
    say "up: $HOSTS hosts behind NATs '${NATS[*]}', $([ "$WAIT_LINKS" = 1 ] && echo "all links online" || echo "daemons running"); state in $DIR"
}

up_failed() {
    local rc=$?
    trap - EXIT
    [ $rc -ne 0 ] || return 0
    if [ "${LAB_KEEP_ON_FAIL:-0}" = 1 ]; then
        echo "natlab.sh[$P]: up failed; lab kept (LAB_KEEP_ON_FAIL=1): $0 status / down" >&2
    else
        echo "natlab.sh[$P]: up failed; tearing down" >&2
        cmd_down >&2 || true
    fi
    exit $rc
}

cmd_down() {
    require_root down
    local f node specs=() ns pids left
    # 1. What this lab started, by its pidfiles: daemons first, then the servers.
    if [ -d "$DIR" ]; then
        for f in "$DIR"/h*/controller.pid "$DIR"/h*/tincan.pid "$DIR"/srv/prosody.pid "$DIR"/srv/turnserver.pid; do
            [ -f "$f" ] || continue
            node=$(basename "$(dirname "$f")")
            specs+=("$node:$(basename "$f" .pid)")
        done
    fi
    [ ${#specs[@]} -eq 0 ] || stop_procs "${specs[@]}"
    # 2. Anything still running inside this lab's own namespaces (started by `exec`, or a
    #    process whose pidfile was lost): a namespace with a process in it outlives `ip netns del`.
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
    # 3. The namespaces; veths, bridges and nftables tables go with them.
    for ns in $(lab_namespaces); do
        ip netns del "$ns" 2>/dev/null || true
    done
    # 4. The state dir, only if this script made it (the marker guards a mistaken LAB_DIR).
    if [ -f "$MARKER" ]; then
        rm -rf "$DIR"
    fi
    left=$(lab_namespaces | tr '\n' ' ')
    [ -z "$left" ] || die "down: namespaces left behind: $left"
}

cmd_status() {
    require_root status
    local nss i d pid state nat probe
    nss=$(lab_namespaces | tr '\n' ' ')
    echo "natlab $P: dir $DIR, binaries $BIN"
    if [ -z "$nss" ]; then
        echo "  no namespaces: the lab is down"
        return 0
    fi
    echo "  namespaces: $nss"
    echo "  servers ($P-srv, $SRV_IP):"
    for d in prosody turnserver; do
        if pid=$(proc_pid srv "$d"); then
            echo "    $d: running, pid $pid, log $SRV_DIR/$d.log"
        elif [ -f "$SRV_DIR/$d.pid" ]; then
            echo "    $d: NOT running (pidfile says $(cat "$SRV_DIR/$d.pid"))"
        else
            echo "    $d: not running"
        fi
    done
    printf '    xmpp  %s:%s tcp (STARTTLS, VirtualHost %s, CA %s): %s\n' "$SRV_IP" "$XMPP_PORT" \
        "$DOMAIN" "$CA_PEM" "$(listening srv tcp "$XMPP_PORT" && echo listening || echo "NOT listening")"
    printf '    stun/turn %s:%s udp, stun %s:%s udp (user %s, realm %s): %s\n' "$SRV_IP" "$STUN_PORT" \
        "$SRV_IP" "$STUN_PORT2" "$TURN_USER" "$TURN_REALM" \
        "$(listening srv udp "$STUN_PORT" && listening srv udp "$STUN_PORT2" && echo listening || echo "NOT listening")"
    for i in $(lab_hosts); do
        nat=$(nat_of "$i")
        if [ "$nat" = none ]; then
            echo "  h$i: no NAT, $PUB_NET.$((100 + i)) on inet0; lxcbr0 10.0.3.$i"
        else
            echo "  h$i: 192.168.$i.2 behind $P-r$i ($nat NAT, wan $PUB_NET.$((100 + i))); lxcbr0 10.0.3.$i"
            ip netns exec "$P-r$i" nft list table ip natlab >/dev/null 2>&1 ||
                echo "    WARNING: no nftables table natlab in $P-r$i"
        fi
        # What STUN sees: the mapping for two destinations, from a fresh socket.
        if listening srv udp "$STUN_PORT" && command -v python3 >/dev/null 2>&1; then
            probe=$(timeout 10 ip netns exec "$P-h$i" python3 "$CHECK_PY" nat --lab "$DIR/natlab.json" \
                --host "h$i" 2>&1 | tail -n 1) || true
            echo "    stun: ${probe:-no answer}"
        fi
        for d in tincan controller; do
            if pid=$(proc_pid "h$i" "$d"); then
                echo "    $d: running, pid $pid"
            elif [ -f "$DIR/h$i/$d.pid" ]; then
                echo "    $d: NOT running (pidfile says $(cat "$DIR/h$i/$d.pid"))"
            fi
        done
        if [ -x "$TINCAN_BIN" ] && state=$(rpc_state "$i" "$TINCAN_PORT"); then
            printf '%s' "$state" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
print("    tincan: tap %s mtu %s, controller_alive %s, %d MACs" % (
    s.get("tap"), s.get("mtu"), s.get("controller_alive"), len(s.get("macs") or [])))
for p in s.get("peers") or []:
    extra = ""
    for k in ("path", "rtt_ms", "rtt"):
        if p.get(k) is not None:
            extra += " %s %s" % (k, p.get(k))
    print("    link %.8s %-8s %-21s%s tx %s rx %s frames" % (p.get("uid", "?"), p.get("status"),
          p.get("endpoint"), extra, p.get("tx_frames"), p.get("rx_frames")))' || echo "    tincan: unreadable get_state"
        fi
    done
}

cmd_check() {
    require_root check
    [ -f "$DIR/natlab.json" ] || die "no $DIR/natlab.json: is the lab up (LAB_PREFIX=$P)?"
    local py
    py=$(check_python) || die "no python3 with slixmpp: apt-get install python3-slixmpp  (or pip install slixmpp)"
    "$py" "$CHECK_PY" all --lab "$DIR/natlab.json" "$@"
}

# A python3 that imports slixmpp: the one on PATH, else Debian's; installs Debian's
# python3-slixmpp when neither has it (and installing is allowed).
check_python() {
    local py
    for py in python3 /usr/bin/python3; do
        command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import slixmpp' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    [ "${LAB_NO_INSTALL:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1 || return 1
    say "installing python3-slixmpp" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends python3-slixmpp >/dev/null; } >&2 || return 1
    /usr/bin/python3 -c 'import slixmpp' 2>/dev/null || return 1
    echo /usr/bin/python3
}

cmd_exec() {
    [ $# -ge 2 ] || die "usage: $0 exec NODE CMD...   (NODE: pub, srv, r1, h1, h1c2, ...)"
    require_root exec
    local node=$1
    shift
    ns_exists "$node" || die "no node '$node' in lab '$P' (namespaces: $(lab_namespaces | tr '\n' ' '))"
    exec ip netns exec "$P-$node" "$@"
}

# kill|start hN tincan|controller, kill|start srv prosody|turnserver
cmd_proc() {
    local action=$1 node=${2:-} name=${3:-}
    if ! [[ ($node =~ ^h[1-9]$ && $name =~ ^(tincan|controller)$) ||
        ($node == srv && $name =~ ^(prosody|turnserver)$) ]]; then
        die "usage: $0 $action hN tincan|controller  |  $0 $action srv prosody|turnserver"
    fi
    require_root "$action"
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
            case $name in
                prosody) wait_server prosody tcp "$XMPP_PORT" ;;
                turnserver) wait_server turnserver udp "$STUN_PORT" ;;
            esac
            say "$node $name started, pid $(cat "$DIR/$node/$name.pid")"
            ;;
    esac
}

main() {
    local cmd=${1:-help}
    [ $# -eq 0 ] || shift
    case $cmd in
        up | down | status | check | exec | kill | start) validate_env ;;
    esac
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        check) cmd_check "$@" ;;
        exec) cmd_exec "$@" ;;
        kill | start) cmd_proc "$cmd" "$@" ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
