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
#   scripts/natlab.sh flush hN             host N's router forgets every mapping (conntrack flushed)
#   scripts/natlab.sh remap hN             ... and maps host N's flows to new public ports
#
# `check` runs scripts/natlab-check.py against the running lab: XMPP login of every node from
# its host (TLS through the NATs, presence, an IQ each way), the NAT type each host shows to
# STUN, UDP hole punching between every pair, and a TURN relay from every host behind `sym`.
# It ends with "N passed, N failed" and fails if anything did.
#
# Environment:
#   LAB_PREFIX     namespace prefix, letters/digits only (default inat); one lab per prefix
#   LAB_NATS       NAT type per host, h1 first (default "cone cone sym"; 2 to 32 hosts):
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
LAB_SCRIPT=natlab.sh
CHECK_PY="$REPO/scripts/natlab-check.py"
# Namespaces, processes, teardown, binaries, packages, readiness: shared with lab.sh. Also where
# the binaries are (BIN, TINCAN_BIN, CONTROLLER_BIN) and, as in lab.sh, the config's ports, TAP
# and MTU.
# shellcheck source=scripts/lablib.sh
source "$REPO/scripts/lablib.sh"
# The routers' nftables rules, and `flush` / `remap` of their mappings.
# shellcheck source=scripts/natlab-nat.sh
source "$REPO/scripts/natlab-nat.sh"

P=${LAB_PREFIX:-inat}
DIR=${LAB_DIR:-/tmp/ipop-natlab-$P}
NATS_RAW=${LAB_NATS:-cone cone sym}
NO_DAEMONS=${LAB_NO_DAEMONS:-0}
WAIT=${LAB_WAIT:-60}
WAIT_LINKS=${LAB_WAIT_LINKS:-1}
UDP_TIMEOUT=${LAB_UDP_TIMEOUT:-}
V6=${LAB_V6:-0}
read -r -a NATS <<<"$NATS_RAW"
HOSTS=${#NATS[@]}

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

# State files.
MARKER=$DIR/.ipop-natlab
CA_PEM=$DIR/xmpp-ca.pem # the CA that signed prosody's certificate: what `xmpp_ca` names
SRV_DIR=$DIR/srv
PKI_DIR=$SRV_DIR/pki
PROSODY_CFG=$SRV_DIR/prosody/prosody.cfg.lua
TURN_DIR=$SRV_DIR/turn

validate_env() {
    local n
    [[ $P =~ ^[A-Za-z0-9]{1,10}$ ]] ||
        die "LAB_PREFIX: expected 1-10 letters or digits (no '-': it separates the node name), got '$P'"
    [[ $HOSTS -ge 2 && $HOSTS -le 32 ]] ||
        die "LAB_NATS: expected 2 to 32 NAT types (one per host), got '$NATS_RAW'"
    for n in "${NATS[@]}"; do
        [[ $n =~ ^(none|full|cone|sym)$ ]] ||
            die "LAB_NATS: '$n' is not a NAT type (expected none, full, cone or sym) in '$NATS_RAW'"
    done
    [[ $NO_DAEMONS =~ ^[01]$ ]] || die "LAB_NO_DAEMONS: expected 0 or 1, got '$NO_DAEMONS'"
    [[ $WAIT =~ ^[0-9]+$ ]] || die "LAB_WAIT: expected seconds, got '$WAIT'"
    [[ $WAIT_LINKS =~ ^[01]$ ]] || die "LAB_WAIT_LINKS: expected 0 or 1, got '$WAIT_LINKS'"
    [[ -z $UDP_TIMEOUT || $UDP_TIMEOUT =~ ^[1-9][0-9]*$ ]] ||
        die "LAB_UDP_TIMEOUT: expected seconds, got '$UDP_TIMEOUT'"
    [[ $V6 =~ ^[01]$ ]] || die "LAB_V6: expected 0 or 1, got '$V6'"
    [[ $V6 = 0 || -d /proc/sys/net/ipv6 ]] || die "LAB_V6=1: this kernel has no IPv6"
}

# tool:package pairs for everything `up` runs. `up` installs the missing ones (ensure_packages,
# in lablib.sh: serialised by a lock, so parallel tests that bring up NAT labs do not run apt-get
# side by side, and a no-op once scripts/test.sh has installed them).
PACKAGES="ip:iproute2 ss:iproute2 sysctl:procps timeout:coreutils nft:nftables openssl:openssl
prosody:prosody prosodyctl:prosody turnserver:coturn python3:python3"

# --- namespaces ------------------------------------------------------------------------------

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

# LAB_V6=1: host i's and router i's IPv6 addresses. The public net is 2001:db8:ff::/64 (router
# or `none` host i at 2001:db8:ff::(100+i)), the LAN of router i 2001:db8:i::/64 (router ::1,
# host ::2). Routers route each other's LANs; a `none` host routes them too.
v6_pub() { echo "2001:db8:ff::$((100 + $1))"; }
v6_routes() {
    local ns=$1 self=$2 j
    for j in $(seq 1 "$HOSTS"); do
        [ "$j" != "$self" ] && [ "${NATS[$((j - 1))]}" != none ] || continue
        ip -n "$ns" -6 route add "2001:db8:$j::/64" via "$(v6_pub "$j")"
    done
}

build_topology() {
    local i nat pub=$P-pub h r v6_fwd
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
        new_host_ns "$i"
        if [ "$nat" = none ]; then
            ip -n "$pub" link add "h$i" type veth peer name u0 netns "$h"
            ip -n "$pub" link set "h$i" master inet0 up
            ip -n "$h" addr add "$PUB_NET.$((100 + i))/24" dev u0
            ip -n "$h" link set u0 mtu 1500 up
            if [ "$V6" = 1 ]; then
                ip -n "$h" addr add "$(v6_pub "$i")/64" dev u0 nodad
                v6_routes "$h" "$i"
            fi
        else
            v6_fwd=()
            [ "$V6" = 0 ] || v6_fwd=(net.ipv6.conf.all.forwarding=1)
            new_ns "r$i" net.ipv4.ip_forward=1 "${v6_fwd[@]}"
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
            if [ "$V6" = 1 ]; then
                ip -n "$r" addr add "$(v6_pub "$i")/64" dev wan0 nodad
                ip -n "$r" addr add "2001:db8:$i::1/64" dev lan0 nodad
                ip -n "$h" addr add "2001:db8:$i::2/64" dev u0 nodad
                ip -n "$h" -6 route add default via "2001:db8:$i::1"
                v6_routes "$r" "$i"
            fi
            nat_rules "$i" "$nat" | ip netns exec "$r" nft -f - ||
                die "nft: cannot load the $nat NAT rules into $r"
            if [ -n "$UDP_TIMEOUT" ]; then
                ip netns exec "$r" sysctl -q -w \
                    "net.netfilter.nf_conntrack_udp_timeout=$UDP_TIMEOUT" \
                    "net.netfilter.nf_conntrack_udp_timeout_stream=$UDP_TIMEOUT" >/dev/null
            fi
        fi

        # The host's LXC-style bridge and two containers, as in scripts/lab.sh.
        add_lxc_host "$i"
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
# Besides lablib.sh's h<i>:tincan and h<i>:controller, srv:prosody and srv:turnserver. Their
# output goes to $DIR/srv/NAME.out; they write their own NAME.log.

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
        *) daemon_argv "$node" "$name" || die "expected tincan, controller, prosody or turnserver, got '$name'" ;;
    esac
}

# A server started by `start` serves once it listens.
proc_ready() {
    case $2 in
        prosody) wait_server prosody tcp "$XMPP_PORT" ;;
        turnserver) wait_server turnserver udp "$STUN_PORT" ;;
    esac
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
        # The link key: made now when the binary is there (a lab without daemons may have
        # none; tincan then says it is missing).
        if [ -x "$IPOPCTL_BIN" ]; then
            make_key "$DIR/h$i/ipop.key" >"$DIR/h$i/fpr"
        elif [ "$NO_DAEMONS" != 1 ]; then
            die "$IPOPCTL_BIN not found: build it first (cargo build --release --workspace)"
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
  "link_port": $LINK_PORT,${TAP_MTU:+
  "tap_mtu": $TAP_MTU,}
  "xmpp_ca": "$CA_PEM",
  "key_file": "$DIR/h$i/ipop.key"
}
EOF
        own_host_dir "$DIR/h$i"
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

# --- subcommands -----------------------------------------------------------------------------

cmd_up() {
    require_root up
    local existing
    existing=$(lab_namespaces | tr '\n' ' ')
    [ -z "$existing" ] ||
        die "a lab with prefix '$P' exists already ($existing): run  LAB_PREFIX=$P $0 down"
    # shellcheck disable=SC2086
    ensure_packages $PACKAGES
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
    ensure_neigh_room
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
    start_daemons_and_wait 0.5 "$SRV_DIR/prosody.log" "$SRV_DIR/turnserver.log"
    trap - EXIT
    say "up: $HOSTS hosts behind NATs '${NATS[*]}', $([ "$WAIT_LINKS" = 1 ] && echo "all links online" || echo "daemons running"); state in $DIR"
}

cmd_down() {
    require_root down
    # Daemons first, then the servers.
    lab_down "$MARKER" "$DIR"/h*/controller.pid "$DIR"/h*/tincan.pid "$DIR"/srv/prosody.pid \
        "$DIR"/srv/turnserver.pid
}

cmd_status() {
    require_root status
    local nss i d state nat probe
    nss=$(lab_namespaces | tr '\n' ' ')
    echo "natlab $P: dir $DIR, binaries $BIN"
    if [ -z "$nss" ]; then
        echo "  no namespaces: the lab is down"
        return 0
    fi
    echo "  namespaces: $nss"
    echo "  servers ($P-srv, $SRV_IP):"
    for d in prosody turnserver; do
        proc_status srv "$d" ", log $SRV_DIR/$d.log" "not running"
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
            proc_status "h$i" "$d"
        done
        if [ -x "$TINCAN_BIN" ] && state=$(rpc_state "$i" "$TINCAN_PORT"); then
            print_tincan_state "$state" nat
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
    ensure_packages python3-slixmpp >&2
    /usr/bin/python3 -c 'import slixmpp' 2>/dev/null || return 1
    echo /usr/bin/python3
}

cmd_exec() { lab_exec "pub, srv, r1, h1, h1c2, ..." "$@"; }

# kill|start hN tincan|controller, kill|start srv prosody|turnserver
cmd_proc() {
    local action=$1 node=${2:-} name=${3:-}
    if ! [[ ($node =~ ^h[1-9][0-9]?$ && $name =~ ^(tincan|controller)$) ||
        ($node == srv && $name =~ ^(prosody|turnserver)$) ]]; then
        die "usage: $0 $action hN tincan|controller  |  $0 $action srv prosody|turnserver"
    fi
    require_root "$action"
    cmd_kill_start "$action" "$node" "$name"
}

main() {
    local cmd=${1:-help}
    [ $# -eq 0 ] || shift
    case $cmd in
        up | down | status | check | exec | kill | start | flush | remap) validate_env ;;
    esac
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        check) cmd_check "$@" ;;
        exec) cmd_exec "$@" ;;
        kill | start) cmd_proc "$cmd" "$@" ;;
        flush | remap) cmd_nat "$cmd" "$@" ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
