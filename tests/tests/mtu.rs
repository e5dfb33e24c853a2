//! MTU 1500 just works: containers at LXC's MTU (1500) on both hosts, the config's defaults
//! (TAP MTU 1500, `link_mtu` 1500), so full-size frames are larger than one link datagram and
//! cross in link fragments. Checked as a user would: bulk TCP arrives intact both ways,
//! full-size pings with DF set and full-size UDP datagrams are delivered, IPv6 too; and the
//! same over an underlay whose MTU is only 1400 (the link socket lets IP fragment), and over an
//! IPv6-only underlay.

use ipop_lab_tests::{ip4, ip6, prefix, require_root, Lab, LabOptions, PingOpts, OVERLAY_MTU};
use std::process::{Command, Stdio};

/// Bytes of each bulk transfer.
const BULK: usize = 50 << 20;

/// Accepts one TCP connection on port argv[1] and prints the bytes received and their sha256.
const TCP_RECEIVER: &str = r#"
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(20)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b)
    n += len(b)
c.close()
print(n, h.hexdigest())
"#;

/// Sends argv[4] pseudo-random bytes (seed argv[3]) to argv[1]:argv[2] over TCP, then prints
/// their length and sha256.
const TCP_SENDER: &str = r#"
import hashlib, random, socket, sys, time
data = random.Random(int(sys.argv[3])).randbytes(int(sys.argv[4]))
for _ in range(100):
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
        break
    except OSError:
        time.sleep(0.1)
s.settimeout(20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(len(data), hashlib.sha256(data).hexdigest())
"#;

/// Receives UDP datagrams on port argv[1] until 2 s of silence; prints how many arrived whole
/// (1472 bytes, the content the sender gives datagram i).
const UDP_RECEIVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(10)
good = set()
try:
    while True:
        b, _ = s.recvfrom(65536)
        s.settimeout(2)
        i = int.from_bytes(b[:4], "big")
        if len(b) == 1472 and b == i.to_bytes(4, "big") + bytes([i % 251]) * 1468:
            good.add(i)
except socket.timeout:
    pass
print(len(good))
"#;

/// Sends argv[3] datagrams of 1472 bytes (the most an IPv4 datagram at MTU 1500 carries
/// unfragmented) to argv[1]:argv[2], with DF set, 2 ms apart.
const UDP_SENDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO: never fragment
time.sleep(0.5)
for i in range(int(sys.argv[3])):
    s.sendto(i.to_bytes(4, "big") + bytes([i % 251]) * 1468, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.002)
"#;

/// A lab of two hosts with the config's MTU defaults, its underlay veths at `underlay_mtu`.
fn lab(tag: &str, underlay_mtu: u32, plain_tap: bool) -> Lab {
    lab_with(tag, underlay_mtu, plain_tap, &[])
}

/// [`lab`] with more `scripts/lab.sh` variables.
fn lab_with(tag: &str, underlay_mtu: u32, plain_tap: bool, env: &[(&str, &str)]) -> Lab {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("LAB_UNDERLAY_MTU".into(), underlay_mtu.to_string()));
    let opts = LabOptions {
        hosts: 2,
        env,
        ..LabOptions::default()
    }
    .plain_tap(plain_tap);
    let lab = Lab::up_with(&prefix(tag), opts);
    for node in ["h1c1", "h2c1"] {
        let mtu = lab.exec_ok(node, &["cat", "/sys/class/net/eth0/mtu"]);
        assert_eq!(mtu.trim(), OVERLAY_MTU.to_string(), "{node}'s eth0");
    }
    let u0 = lab.exec_ok("h1", &["cat", "/sys/class/net/u0/mtu"]);
    assert_eq!(u0.trim(), underlay_mtu.to_string());
    let s = lab.tincan_state("h1");
    assert_eq!(
        (s["mtu"].as_u64(), s["link_mtu"].as_u64()),
        (Some(1500), Some(1500))
    );
    lab
}

/// Starts `script` with `args` in `node`, bounded by `secs`; its stdout is piped.
fn spawn(lab: &Lab, node: &str, secs: u32, script: &str, args: &[&str]) -> std::process::Child {
    Command::new("timeout")
        .args([&secs.to_string(), "ip", "netns", "exec", &lab.ns(node)])
        .args(["python3", "-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timeout ip netns exec python3")
}

fn output(child: std::process::Child, what: &str) -> String {
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// BULK bytes over TCP from `from` to `to` arrive intact: same length, same sha256.
fn bulk_tcp(lab: &Lab, from: &str, to: &str, seed: u32) {
    let port = "5201";
    let rx = spawn(lab, to, 40, TCP_RECEIVER, &[port]);
    let tx = spawn(
        lab,
        from,
        40,
        TCP_SENDER,
        &[&ip4(to), port, &seed.to_string(), &BULK.to_string()],
    );
    let sent = output(tx, &format!("TCP sender {from} -> {to}"));
    let received = output(rx, &format!("TCP receiver {to}"));
    assert!(sent.starts_with(&format!("{BULK} ")), "{sent}");
    assert_eq!(received, sent, "{from} -> {to}: received differs from sent");
}

fn full_size_ping(lab: &Lab, from: &str, to: &str) {
    let opts = PingOpts {
        size: Some(OVERLAY_MTU - 28),
        dont_fragment: true,
        ..PingOpts::new(3)
    };
    let r = lab.ping_with(from, &ip4(to), &opts);
    assert!(
        r.is_clean(),
        "ping -s 1472 -M do {from} -> {to}:\n{}",
        r.raw
    );
}

/// Fragments crossed (both tincans reassembled some) and no frame was too big.
fn fragments_used(lab: &Lab) {
    for h in ["h1", "h2"] {
        let s = lab.tincan_state(h);
        let c = &s["counters"];
        assert!(c["frag_reassembled"].as_u64() > Some(0), "{h}: {c}");
        assert_eq!(c["drop_oversize"].as_u64(), Some(0), "{h}: {c}");
        let peer = &s["peers"][0];
        assert!(peer["frag_reassembled"].as_u64() > Some(0), "{h}: {peer}");
    }
}

/// What a user at MTU 1500 notices: full-size pings both ways (IPv4 with DF, IPv6), full-size
/// UDP datagrams with DF, and bulk TCP both ways, all intact.
fn full_size_traffic(lab: &Lab, seed: u32) {
    full_size_ping(lab, "h1c1", "h2c1");
    full_size_ping(lab, "h2c2", "h1c2");
    // IPv6 at 1500: 1452 bytes of ICMPv6 payload fill it (40 IPv6, 8 ICMPv6).
    let opts = PingOpts {
        size: Some(OVERLAY_MTU - 48),
        dont_fragment: true,
        ipv6: true,
        ..PingOpts::new(3)
    };
    let r = lab.ping_with("h1c1", &ip6("h2c1"), &opts);
    assert!(r.is_clean(), "ping -6 -s 1452 -M do:\n{}", r.raw);
    // Full-size UDP datagrams, DF set.
    let rx = spawn(lab, "h2c1", 30, UDP_RECEIVER, &["5301"]);
    let tx = spawn(lab, "h1c1", 30, UDP_SENDER, &[&ip4("h2c1"), "5301", "200"]);
    output(tx, "UDP sender");
    let got: usize = output(rx, "UDP receiver").parse().expect("a count");
    assert!(
        got >= 190,
        "{got} of 200 1472-byte UDP datagrams arrived whole"
    );
    bulk_tcp(lab, "h1c1", "h2c1", seed);
    bulk_tcp(lab, "h2c2", "h1c2", seed + 1);
    fragments_used(lab);
}

#[test]
fn containers_at_mtu_1500_over_a_1500_underlay() {
    if !require_root() {
        return;
    }
    full_size_traffic(&lab("mtu1500", 1500, false), 1);
}

#[test]
fn containers_at_mtu_1500_on_the_plain_tap_path() {
    if !require_root() {
        return;
    }
    full_size_traffic(&lab("mtuplain", 1500, true), 5);
}

#[test]
fn containers_at_mtu_1500_over_a_1400_underlay() {
    if !require_root() {
        return;
    }
    let lab = lab("mtu1400", 1400, false);
    full_size_traffic(&lab, 3);
    // A frame that fits one link datagram of link_mtu (1500) but not the 1400-byte path: the
    // datagram crosses the underlay in IP fragments (the link socket never sets DF).
    let before = lab.snmp_counter("h2", "Ip", "ReasmOKs");
    let opts = PingOpts {
        size: Some(1380),
        dont_fragment: true,
        ..PingOpts::new(3)
    };
    let r = lab.ping_with("h1c1", &ip4("h2c1"), &opts);
    assert!(r.is_clean(), "ping -s 1380 -M do:\n{}", r.raw);
    let after = lab.snmp_counter("h2", "Ip", "ReasmOKs");
    assert!(
        after >= before + 3,
        "h2 reassembled {} IP packets",
        after - before
    );
}

#[test]
fn containers_at_mtu_1500_over_an_ipv6_only_underlay() {
    if !require_root() {
        return;
    }
    let lab = lab_with("mtu6", 1500, false, &[("LAB_UNDERLAY", "6")]);
    let u0 = lab.exec_ok("h1", &["ip", "-o", "addr", "show", "dev", "u0"]);
    assert!(
        u0.contains("fd99::1/64") && !u0.contains(" inet "),
        "h1's underlay is not IPv6 only: {u0}"
    );
    for (host, peer) in [("h1", "[fd99::2]:5900"), ("h2", "[fd99::1]:5900")] {
        let s = lab.tincan_state(host);
        assert_eq!(s["peers"][0]["endpoint"], peer, "{host}: {}", s["peers"]);
    }
    // IPv6 and UDP headers take 20 bytes more than IPv4's: link datagrams are cut to fit.
    full_size_traffic(&lab, 9);
}

/// Two containers with jumbo frames (MTU 9000, their bridge ports too) on hosts whose TAPs
/// have 1500: TCP between them would send 9000-byte segments that the bridge drops at the
/// TAP; tincan clamps the MSS of their SYNs, so bulk TCP arrives intact both ways, and it
/// names the port in its log. Other packets too big are answered with ICMP "too big": a ping
/// with DF learns the overlay's MTU, and pings without DF then get through in fragments, over
/// IPv4 and IPv6.
#[test]
fn jumbo_frame_containers_get_tcp_through_with_a_clamped_mss() {
    if !require_root() {
        return;
    }
    let lab = lab("mtujumbo", 1500, false);
    for (host, node) in [("h1", "h1c1"), ("h2", "h2c1")] {
        lab.exec_ok(host, &["ip", "link", "set", "c1", "mtu", "9000"]);
        lab.exec_ok(node, &["ip", "link", "set", "eth0", "mtu", "9000"]);
    }
    bulk_tcp(&lab, "h1c1", "h2c1", 11);
    bulk_tcp(&lab, "h2c1", "h1c1", 12);
    for host in ["h1", "h2"] {
        let c = &lab.tincan_state(host)["counters"];
        assert!(c["mss_clamped"].as_u64() > Some(0), "{host}: {c}");
    }
    // The ports are read every 10 s.
    let warned = ipop_lab_tests::wait_until(std::time::Duration::from_secs(12), || {
        lab.log_tail("h1", ipop_lab_tests::Daemon::Tincan)
            .contains("port c1 has MTU 9000")
    });
    assert!(
        warned,
        "{}",
        lab.log_tail("h1", ipop_lab_tests::Daemon::Tincan)
    );
    assert!(
        lab.log_tail("h1", ipop_lab_tests::Daemon::Tincan)
            .contains("device MTU raised to 9000"),
        "{}",
        lab.log_tail("h1", ipop_lab_tests::Daemon::Tincan)
    );
    for ipv6 in [false, true] {
        let to = if ipv6 { ip6("h2c1") } else { ip4("h2c1") };
        // With DF: the first request is answered "too big" with the overlay's MTU (later
        // ones fail at the sender, which now knows it).
        let df = PingOpts {
            size: Some(4000),
            ipv6,
            dont_fragment: true,
            ..PingOpts::new(3)
        };
        let r = lab.ping_with("h1c1", &to, &df);
        let said = r.raw.to_lowercase();
        assert!(
            r.received == 0 && said.contains("mtu") && said.contains("1500"),
            "ping -s 4000 -M do (ipv6 {ipv6}) should learn MTU 1500:\n{}",
            r.raw
        );
        // Without DF the sender now fragments to the path MTU. The answering side learns the
        // MTU from the answer to its first too-big reply (over IPv6, which only senders
        // fragment, that first reply is lost, as behind any router with a smaller MTU).
        let plain = PingOpts {
            size: Some(4000),
            ipv6,
            ..PingOpts::new(3)
        };
        let r = lab.ping_with("h1c1", &to, &plain);
        assert!(
            r.received == 3 && r.duplicates == 0 && r.transmitted <= 4,
            "ping -s 4000 (ipv6 {ipv6}):\n{}",
            r.raw
        );
    }
    let c = &lab.tincan_state("h1")["counters"];
    assert!(c["icmp_too_big_sent"].as_u64() >= Some(2), "h1: {c}");
}
