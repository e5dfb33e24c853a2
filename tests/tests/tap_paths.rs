//! The TAP's two paths: with a virtio-net header, TSO and checksum offload (the default) and
//! plain (`IPOP_NO_OFFLOAD=1`, as on a kernel that refuses the header). Each names itself in
//! tincan's log and, while a bulk TCP transfer runs, carries every other kind of traffic a
//! segment has (ICMP, IPv6, UDP unicast and broadcast, ARP, a second TCP stream, an
//! 802.1Q-tagged flow) intact; the bulk transfer arrives intact both ways.

use ipop_lab_tests::{ip4, ip6, prefix, require_root, require_tools, Lab, LabOptions};

const BULK_BYTES: u64 = 200 << 20;
const SECOND_BYTES: u64 = 20 << 20;
const TAGGED_FRAMES: u32 = 200;

/// Receives on eth0 for up to 8 s (or until the last frame) the 802.1Q frames of VLAN 42 with
/// EtherType 0x88b5 from argv[1]; prints how many arrived with their tag and payload intact.
/// The kernel hands the tag over beside the frame (PACKET_AUXDATA), as a NIC would.
const TAGGED_SINK: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0)); s.setsockopt(263, 8, 1); s.settimeout(0.5)
src = bytes.fromhex(sys.argv[1].replace(":", "")); ok = 0; end = time.time() + 8
while time.time() < end:
    try:
        d, anc, _, _ = s.recvmsg(4096, 256)
    except socket.timeout:
        continue
    if d[6:12] != src: continue
    tci = None
    for lvl, typ, data in anc:
        if lvl == 263 and typ == 8:
            st, _, _, _, _, t, _ = struct.unpack("IIIHHHH", data[:20])
            if st & 0x10: tci = t
    if d[12:14] == b"\x81\x00": tci, d = struct.unpack("!H", d[14:16])[0], d[:12] + d[16:]
    if tci is None or tci & 0xfff != 42 or d[12:14] != b"\x88\xb5": continue
    i = d[14]
    if d[15:15 + 200] == bytes([i]) * 200: ok += 1
    if i == 199: break
print(ok)
"#;

/// Sends 200 802.1Q frames (VLAN 42, EtherType 0x88b5) from eth0 to MAC argv[1].
const TAGGED_SOURCE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0))
dst = bytes.fromhex(sys.argv[1].replace(":", "")); src = s.getsockname()[4]
time.sleep(0.5)
for i in range(200):
    s.send(dst + src + b"\x81\x00\x00\x2a\x88\xb5" + bytes([i]) + bytes([i]) * 200)
    time.sleep(0.003)
"#;

/// Receives UDP on port 7000 (unicast and broadcast) for up to 8 s or until "end" arrives;
/// prints how many datagrams of each kind arrived intact.
const UDP_SINK: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7000)); s.settimeout(0.5)
got = {"u": 0, "b": 0}; end = time.time() + 8
while time.time() < end:
    try:
        d, _ = s.recvfrom(2048)
    except socket.timeout:
        continue
    if d == b"end": break
    k = d[:1].decode()
    if k in got and d[1:] == bytes([len(d) % 251]) * (len(d) - 1): got[k] += 1
print(got["u"], got["b"])
"#;

/// Sends 300 unicast datagrams of 100-1400 bytes to argv[1] and 20 broadcasts to argv[2].
const UDP_SOURCE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
time.sleep(0.5)
for i in range(300):
    n = 100 + (i * 37) % 1300
    s.sendto(b"u" + bytes([n % 251]) * (n - 1), (sys.argv[1], 7000)); time.sleep(0.002)
for i in range(20):
    s.sendto(b"b" + bytes([64 % 251]) * 63, (sys.argv[2], 7000)); time.sleep(0.01)
time.sleep(0.3); s.sendto(b"end", (sys.argv[1], 7000))
"#;

fn counter(state: &serde_json::Value, name: &str) -> u64 {
    state["counters"][name].as_u64().unwrap_or(0)
}

fn carries_mixed_traffic_on(path: &str, plain: bool) {
    if !require_root() {
        return;
    }
    require_tools(&["python3"]);
    let opts = LabOptions {
        hosts: 2,
        ..LabOptions::default()
    }
    .plain_tap(plain);
    let lab = Lab::up_with(&prefix(&format!("tap-{path}")), opts);
    for h in ["h1", "h2"] {
        let path_log = lab.dir().join(h).join("tincan.log");
        let log = std::fs::read_to_string(&path_log).unwrap_or_else(|e| format!("({e})"));
        assert!(
            log.contains(&format!("TAP path: {path}")),
            "{h}: tincan does not say it uses the {path} path:\n{log}"
        );
    }
    std::thread::scope(|s| {
        let bulk = s.spawn(|| lab.tcp_transfer("h1c1", "h2c1", BULK_BYTES));
        // Everything else, from the other pair of containers, while the bulk transfer runs.
        let r = lab.ping("h1c2", &ip4("h2c2"), 20, None);
        assert!(r.is_clean(), "ICMP during the bulk transfer: {}", r.raw);
        let r = lab.ping6("h1c2", &ip6("h2c2"), 10, Some(1400));
        assert!(r.is_clean(), "IPv6 during the bulk transfer: {}", r.raw);
        let t = lab.tcp_transfer_to("h1c2", "h2c2", &ip4("h2c2"), "5202", SECOND_BYTES);
        assert_eq!(
            (t.received_bytes, &t.received_sha256),
            (SECOND_BYTES, &t.sent_sha256),
            "a second TCP stream during the bulk transfer"
        );
        let (mac1, mac2) = (lab.mac_of("h1c2", "eth0"), lab.mac_of("h2c2", "eth0"));
        let lab_ref = &lab;
        let sink = s.spawn(move || {
            lab_ref.exec_ok(
                "h2c2",
                &["timeout", "10", "python3", "-c", TAGGED_SINK, &mac1],
            )
        });
        lab.exec_ok(
            "h1c2",
            &["timeout", "10", "python3", "-c", TAGGED_SOURCE, &mac2],
        );
        let got = sink.join().expect("802.1Q receiver");
        let n: u32 = got.trim().parse().unwrap_or(0);
        assert!(
            n >= TAGGED_FRAMES * 95 / 100,
            "802.1Q frames of VLAN 42 intact during the bulk transfer: {got} of {TAGGED_FRAMES}"
        );
        let sink = s.spawn(|| lab.exec_ok("h2c2", &["timeout", "10", "python3", "-c", UDP_SINK]));
        lab.exec_ok(
            "h1c2",
            &[
                "timeout",
                "10",
                "python3",
                "-c",
                UDP_SOURCE,
                &ip4("h2c2"),
                "10.0.3.255",
            ],
        );
        let got = sink.join().expect("UDP receiver");
        let counts: Vec<u32> = got
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            counts.len() == 2 && counts[0] >= 285 && counts[1] >= 18,
            "UDP during the bulk transfer: unicast/broadcast intact of 300/20: {got}"
        );
        // ARP: a flushed neighbour cache asks again and gets the right answer.
        lab.exec_ok("h1c2", &["ip", "neigh", "flush", "dev", "eth0"]);
        let r = lab.ping("h1c2", &ip4("h2c2"), 1, None);
        assert!(r.is_clean(), "ARP during the bulk transfer: {}", r.raw);
        assert_eq!(
            lab.neigh_mac("h1c2", &ip4("h2c2")),
            Some(lab.mac_of("h2c2", "eth0"))
        );
        let t = bulk.join().expect("bulk transfer");
        assert_eq!(t.received_bytes, BULK_BYTES, "{t:?}");
        assert_eq!(t.received_sha256, t.sent_sha256);
    });
    // And back: frames from the link side reach the TAP intact too.
    let t = lab.tcp_transfer("h2c1", "h1c1", BULK_BYTES);
    assert_eq!(t.received_bytes, BULK_BYTES, "{t:?}");
    assert_eq!(t.received_sha256, t.sent_sha256);
    // The offload path is what carried it: super-frames read, cut, and coalesced back.
    let (s1, s2) = (lab.tincan_state("h1"), lab.tincan_state("h2"));
    for (name, host, state) in [
        ("tap_rx_super_frames", "h1", &s1),
        ("tap_tx_super_frames", "h2", &s2),
        ("tap_rx_super_frames", "h2", &s2),
        ("tap_tx_super_frames", "h1", &s1),
    ] {
        let n = counter(state, name);
        assert_eq!(n > 0, !plain, "{host} {name} = {n} on the {path} path");
    }
    assert_eq!(counter(&s1, "drop_tap_offload"), 0);
    assert_eq!(counter(&s2, "drop_tap_offload"), 0);
}

#[test]
fn the_plain_tap_path_is_logged_and_carries_mixed_traffic_and_200_mb_of_tcp() {
    carries_mixed_traffic_on("plain", true);
}

#[test]
fn the_offload_tap_path_is_logged_and_carries_mixed_traffic_and_200_mb_of_tcp() {
    carries_mixed_traffic_on("virtio-net header", false);
}
