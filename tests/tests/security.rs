//! Secure links against the outside world: only pinned keys get a link, replayed and tampered
//! datagrams are dropped and counted, garbage does not disturb traffic, a `sec` mismatch
//! gives no link and says so on both sides, so does a cipher offer with nothing in common, a
//! host offering only ChaCha20-Poly1305 links with it, rekeying under load breaks nothing, and
//! an init replayed after restarts moves no endpoint.

use ipop_lab_tests::{
    ip4, prefix, require_root, require_tools, wait_until, Daemon, Lab, LabOptions, PingOpts,
};
use serde_json::Value;
use std::time::Duration;

fn counter(state: &Value, name: &str) -> u64 {
    state["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {state}"))
}

fn lab(tag: &str, hosts: u8, wait_links: bool, env: &[(&str, &str)]) -> Lab {
    Lab::up_with(
        &prefix(tag),
        LabOptions {
            hosts,
            wait_links,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..LabOptions::default()
        },
    )
}

fn log(lab: &Lab, host: &str, daemon: Daemon) -> String {
    let path = lab.dir().join(host).join(format!("{}.log", daemon.name()));
    std::fs::read_to_string(&path).unwrap_or_default()
}

/// A python script for a host's namespace: prints (in hex) the payload of the first UDP
/// datagram to the link port that arrives on the host's underlay veth (AF_PACKET) and for which
/// `cond` holds (a Python expression over `src`, the source IP, and `payload`), within `secs`
/// seconds; exits 1 if none did.
fn sniffer(cond: &str, secs: u32) -> String {
    format!(
        r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(("u0", 0))
s.settimeout(1.0)
end = time.time() + {secs}
while time.time() < end:
    try:
        pkt = s.recv(65535)
    except socket.timeout:
        continue
    ip = pkt[14:]
    if ip[9] != 17:
        continue
    src = socket.inet_ntoa(ip[12:16])
    ihl = (ip[0] & 15) * 4
    udp = ip[ihl:]
    dport = struct.unpack("!H", udp[2:4])[0]
    payload = udp[8:]
    if dport == 5900 and {cond}:
        print(payload.hex())
        sys.exit(0)
sys.exit(1)
"#
    )
}

/// The link of `host`'s tincan to the peer with uid `uid`.
fn peer<'a>(state: &'a Value, uid: &str) -> &'a Value {
    state["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["uid"] == uid)
        .unwrap_or_else(|| panic!("no peer {uid} in {state}"))
}

#[test]
fn only_a_pinned_key_gets_a_link() {
    if !require_root() {
        return;
    }
    // h1 and h2 pin a decoy key for h3: h3's real key is pinned nowhere.
    let lab = lab("rogue", 3, false, &[("LAB_ROGUE_HOSTS", "h3")]);
    let uid = |h: &str| lab.tincan_state(h)["_uid"].as_str().unwrap().to_string();
    let (uid2, uid3) = (uid("h2"), uid("h3"));
    assert!(
        wait_until(Duration::from_secs(10), || {
            peer(&lab.tincan_state("h1"), &uid2)["status"] == "online"
        }),
        "h1-h2 should link up:\n{}",
        lab.status()
    );
    let r = lab.ping("h1c1", &ip4("h2c1"), 2, None);
    assert!(r.is_clean(), "{}", r.raw);

    // Give h3 time for several handshake attempts.
    std::thread::sleep(Duration::from_secs(3));
    let r = lab.ping_with(
        "h1c1",
        &ip4("h3c1"),
        &PingOpts {
            deadline_secs: Some(3),
            ..PingOpts::new(3)
        },
    );
    assert_eq!(
        r.received, 0,
        "a ping crossed to the unpinned host:\n{}",
        r.raw
    );
    let r = lab.ping_with(
        "h3c1",
        &ip4("h2c2"),
        &PingOpts {
            deadline_secs: Some(3),
            ..PingOpts::new(3)
        },
    );
    assert_eq!(
        r.received, 0,
        "a ping crossed from the unpinned host:\n{}",
        r.raw
    );

    for h in ["h1", "h2"] {
        let s = lab.tincan_state(h);
        let l = peer(&s, &uid3);
        assert_eq!(l["status"], "offline", "{h}: {l}");
        assert_eq!(
            l["rx_frames"], 0,
            "{h} took frames from the unpinned host: {l}"
        );
        assert!(
            counter(&s, "drop_unknown_key") >= 1,
            "{h} should have refused h3's handshakes: {s}"
        );
        assert!(
            log(&lab, h, Daemon::Tincan).contains("not pinned for any peer"),
            "{h}'s log should say why:\n{}",
            lab.log_tail(h, Daemon::Tincan)
        );
    }
    // h3 cannot even read the handshakes meant for the decoy key: their mac1 is keyed by the
    // decoy's public key, so h3 drops them before any key exchange.
    let s3 = lab.tincan_state("h3");
    assert!(counter(&s3, "drop_bad_mac1") >= 1, "{s3}");
    assert_eq!(counter(&s3, "drop_auth"), 0, "{s3}");
    assert_eq!(counter(&s3, "tap_tx_frames"), 0, "{s3}");
}

/// Captures one encrypted data datagram arriving at h2's link port (python, AF_PACKET on the
/// underlay veth), then sends it again as it was and with one byte flipped, from h1.
#[test]
fn replayed_and_tampered_datagrams_are_dropped_and_counted() {
    if !require_root() {
        return;
    }
    let lab = lab("replay", 2, true, &[]);
    let sniff = sniffer("len(payload) > 100 and payload[0] == 7", 8);
    let (captured, ping) = std::thread::scope(|s| {
        let sniffer = s.spawn(|| lab.exec("h2", &["python3", "-c", &sniff]));
        std::thread::sleep(Duration::from_millis(300));
        let ping = lab.ping("h1c1", &ip4("h2c1"), 10, None);
        (sniffer.join().unwrap(), ping)
    });
    assert!(ping.is_clean(), "{}", ping.raw);
    assert!(
        captured.status.success(),
        "no data datagram captured: {}",
        String::from_utf8_lossy(&captured.stderr)
    );
    let hex = String::from_utf8_lossy(&captured.stdout).trim().to_string();
    let before = lab.tincan_state("h2");
    let send = format!(
        r#"
import socket
d = bytes.fromhex("{hex}")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(d, ("10.99.0.2", 5900))
# One flipped bit in the counter (the AEAD nonce): new to the replay window, so it reaches
# decryption, which must refuse it.
f = bytearray(d); f[15] ^= 0x40
s.sendto(bytes(f), ("10.99.0.2", 5900))
"#
    );
    lab.exec_ok("h1", &["python3", "-c", &send]);
    let moved = wait_until(Duration::from_secs(3), || {
        let after = lab.tincan_state("h2");
        counter(&after, "drop_replay") > counter(&before, "drop_replay")
            && counter(&after, "drop_auth") > counter(&before, "drop_auth")
    });
    assert!(
        moved,
        "replay and auth counters should move:\nbefore {}\nafter {}",
        before["counters"],
        lab.tincan_state("h2")["counters"]
    );
    let after = lab.tincan_state("h2");
    assert_eq!(
        counter(&after, "tap_tx_frames"),
        counter(&before, "tap_tx_frames"),
        "a replayed or tampered frame reached the bridge"
    );
    // The link is unharmed.
    let r = lab.ping("h1c1", &ip4("h2c1"), 3, None);
    assert!(r.is_clean(), "{}", r.raw);
}

/// Captures a handshake init of h1's on the underlay (python, AF_PACKET on h2's veth) as h1's
/// tincan restarts; then h2's tincan restarts, forgetting h1's init times, and the init is
/// replayed from another address. h2 answers it at most, never switches to it: the link stays
/// up at h1's real address, and the replay is counted (as a replay, or as a session that was
/// never confirmed).
#[test]
fn a_replayed_init_after_restarts_moves_no_endpoint_and_breaks_no_traffic() {
    if !require_root() {
        return;
    }
    let lab = lab("rinit", 2, true, &[]);
    // A handshake init (type 5, 165 bytes) from h1's link socket.
    let sniff = sniffer(
        r#"src == "10.99.0.1" and len(payload) == 165 and payload[0] == 5"#,
        20,
    );
    let captured = std::thread::scope(|s| {
        let sniffer = s.spawn(|| lab.exec("h2", &["python3", "-c", &sniff]));
        std::thread::sleep(Duration::from_millis(300));
        lab.kill("h1", Daemon::Tincan);
        lab.start("h1", Daemon::Tincan);
        sniffer.join().unwrap()
    });
    assert!(
        captured.status.success(),
        "no init from h1 captured: {}",
        String::from_utf8_lossy(&captured.stderr)
    );
    let hex = String::from_utf8_lossy(&captured.stdout).trim().to_string();
    let online = |what: &str| {
        assert!(
            lab.wait_links_online(Duration::from_secs(20)),
            "links should be back {what}:\n{}",
            lab.status()
        );
    };
    online("after h1's restart");
    lab.kill("h2", Daemon::Tincan);
    lab.start("h2", Daemon::Tincan);
    online("after h2's restart");
    let r = lab.ping("h1c1", &ip4("h2c1"), 2, None);
    assert!(r.is_clean(), "{}", r.raw);
    let uid1 = lab.tincan_state("h1")["_uid"].as_str().unwrap().to_string();
    let before = lab.tincan_state("h2");
    let replayed = |s: &Value| counter(s, "drop_replay") + counter(s, "handshakes_unconfirmed");
    lab.exec_ok("h1", &["ip", "addr", "add", "10.99.0.66/24", "dev", "u0"]);
    let send = format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.99.0.66", 5966))
s.sendto(bytes.fromhex("{hex}"), ("10.99.0.2", 5900))
"#
    );
    let (ping, moved) = std::thread::scope(|s| {
        let ping = s.spawn(|| {
            lab.ping_with(
                "h1c1",
                &ip4("h2c1"),
                &PingOpts {
                    interval: 0.5,
                    deadline_secs: Some(30),
                    ..PingOpts::new(44)
                },
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        lab.exec_ok("h1", &["python3", "-c", &send]);
        // An unconfirmed session is dropped (and counted) 16 s after it was answered.
        let moved = wait_until(Duration::from_secs(20), || {
            replayed(&lab.tincan_state("h2")) > replayed(&before)
        });
        (ping.join().unwrap(), moved)
    });
    let after = lab.tincan_state("h2");
    assert!(
        moved,
        "the replayed init was not counted:\nbefore {}\nafter {}",
        before["counters"], after["counters"]
    );
    assert_eq!(
        ping.received, 44,
        "pings lost after the replay:\n{}",
        ping.raw
    );
    let (l1_before, l1_after) = (peer(&before, &uid1), peer(&after, &uid1));
    assert_eq!(l1_after["endpoint"], "10.99.0.1:5900", "{l1_after}");
    assert_eq!(l1_after["status"], "online", "{l1_after}");
    assert_eq!(l1_after["downs"], l1_before["downs"], "{l1_after}");
}

#[test]
fn a_garbage_burst_during_a_ping_loses_nothing() {
    if !require_root() {
        return;
    }
    let lab = lab("burst", 2, true, &[]);
    // Bounded: 1400 datagrams in all, from the underlay of the other host.
    let burst = r#"
import socket, os, random
random.seed(7)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dst = ("10.99.0.2", 5900)
n = 0
for i in range(600):                       # random bytes, random sizes
    s.sendto(os.urandom(random.randint(0, 1500)), dst); n += 1
for i in range(300):                       # truncated handshakes
    s.sendto(bytes([5, 0, 0, 0]) + os.urandom(random.randint(0, 128)), dst); n += 1
for i in range(300):                       # full-size (165-byte) handshakes, not authentic
    s.sendto(bytes([5, 0, 0, 0]) + os.urandom(161), dst); n += 1
for i in range(150):                       # data messages for sessions that do not exist
    s.sendto(bytes([7, 0, 0, 0]) + os.urandom(60), dst); n += 1
for i in range(50):                        # oversize: fragmented on the underlay
    s.sendto(bytes([7, 0, 0, 0]) + os.urandom(9000), dst); n += 1
print(n)
"#;
    let before = lab.tincan_state("h2");
    let (ping, sent) = std::thread::scope(|s| {
        let ping = s.spawn(|| {
            lab.ping_with(
                "h1c1",
                &ip4("h2c1"),
                &PingOpts {
                    interval: 0.05,
                    deadline_secs: Some(15),
                    ..PingOpts::new(80)
                },
            )
        });
        std::thread::sleep(Duration::from_millis(500));
        let out = lab.exec_ok("h1", &["python3", "-c", burst]);
        (ping.join().unwrap(), out.trim().parse::<u64>().unwrap())
    });
    assert_eq!(
        ping.received, 80,
        "pings lost during the burst:\n{}",
        ping.raw
    );
    assert_eq!(ping.duplicates, 0, "{}", ping.raw);
    assert!(lab.alive("h2", Daemon::Tincan));
    let after = lab.tincan_state("h2");
    let drops = |s: &Value| {
        [
            "drop_bad_link_message",
            "drop_auth",
            "drop_unknown_index",
            "drop_handshake_rate",
            "drop_bad_mac1",
            "drop_sec_mismatch",
            "drop_unknown_key",
            "drop_replay",
        ]
        .iter()
        .map(|k| counter(s, k))
        .sum::<u64>()
    };
    let counted = drops(&after) - drops(&before);
    // Loopback-free veth underlay: every datagram arrives; each one is a counted drop.
    assert!(
        counted * 10 >= sent * 9,
        "{sent} garbage datagrams sent, only {counted} counted as drops: {after}"
    );
    // The full-size handshakes were dropped at mac1, before any key exchange.
    assert!(
        counter(&after, "drop_bad_mac1") - counter(&before, "drop_bad_mac1") >= 270,
        "the handshake flood was not dropped at mac1: {after}"
    );
}

/// h1 and h2 of `lab` log `lines` (h1's, h2's) within 8 s, count `drops`, and have no link.
fn no_link_and_both_say(lab: &Lab, lines: [&str; 2], drops: &str) {
    let hosts = ["h1", "h2"];
    assert!(
        wait_until(Duration::from_secs(8), || {
            hosts
                .iter()
                .zip(lines)
                .all(|(h, line)| log(lab, h, Daemon::Tincan).contains(line))
        }),
        "both sides should say why there is no link:\nh1:\n{}\nh2:\n{}",
        lab.log_tail("h1", Daemon::Tincan),
        lab.log_tail("h2", Daemon::Tincan)
    );
    for h in hosts {
        assert_eq!(lab.links_online(h), 0, "{h} has a link");
        assert!(counter(&lab.tincan_state(h), drops) > 0, "{h}: no {drops}");
    }
}

#[test]
fn a_sec_mismatch_gives_no_link_and_a_log_line_on_both_sides() {
    if !require_root() {
        return;
    }
    let lab = lab("mism", 2, false, &[("LAB_PLAIN_HOSTS", "h2")]);
    no_link_and_both_say(
        &lab,
        [
            "but \"sec\" is true here: no link",
            "but \"sec\" is false here: no link",
        ],
        "drop_sec_mismatch",
    );
    assert!(log(&lab, "h2", Daemon::Tincan).contains("PLAINTEXT"));
    let r = lab.ping_with(
        "h1c1",
        &ip4("h2c1"),
        &PingOpts {
            deadline_secs: Some(2),
            ..PingOpts::new(2)
        },
    );
    assert_eq!(r.received, 0, "{}", r.raw);
}

/// Whether this CPU runs AES-GCM in hardware, as tincan decides it (x86: AES-NI and PCLMULQDQ).
fn aes_hardware() -> bool {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    has("aes") && has("pclmulqdq")
}

#[test]
fn a_host_offering_only_chacha20_poly1305_links_with_it() {
    if !require_root() {
        return;
    }
    // h2 offers ChaCha20-Poly1305 only; h1 and h3 the default, both ciphers.
    let lab = lab("ciph", 3, true, &[("LAB_CIPHERS", "h2=chacha20-poly1305")]);
    let states: Vec<Value> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| lab.tincan_state(h))
        .collect();
    let uid = |i: usize| states[i]["_uid"].as_str().unwrap().to_string();
    let cipher = |from: usize, to: usize| peer(&states[from], &uid(to))["cipher"].clone();
    assert_eq!(states[1]["cipher"], "chacha20-poly1305");
    assert_eq!(states[0]["cipher"], "auto");
    for (a, b) in [(0, 1), (1, 0), (2, 1), (1, 2)] {
        assert_eq!(
            cipher(a, b),
            "chacha20-poly1305",
            "h{} -> h{}:\n{}",
            a + 1,
            b + 1,
            lab.status()
        );
    }
    // Two default hosts: AES-256-GCM where the CPU runs it in hardware (both are this CPU).
    let auto = if aes_hardware() {
        "aes-256-gcm"
    } else {
        "chacha20-poly1305"
    };
    assert_eq!((cipher(0, 2), cipher(2, 0)), (auto.into(), auto.into()));
    for (from, to) in [
        ("h1c1", "h2c1"),
        ("h2c2", "h1c2"),
        ("h3c1", "h2c2"),
        ("h1c2", "h3c1"),
    ] {
        let r = lab.ping(from, &ip4(to), 3, None);
        assert!(r.is_clean(), "{from} -> {to}: {}", r.raw);
    }
    for h in ["h1", "h2", "h3"] {
        assert_eq!(counter(&lab.tincan_state(h), "drop_no_common_cipher"), 0);
    }
}

#[test]
fn hosts_without_a_common_cipher_get_no_link_and_say_why() {
    if !require_root() {
        return;
    }
    let lab = lab(
        "nociph",
        2,
        false,
        &[("LAB_CIPHERS", "h1=aes-256-gcm h2=chacha20-poly1305")],
    );
    let why = "no cipher in common, refused";
    no_link_and_both_say(&lab, [why, why], "drop_no_common_cipher");
}

#[test]
fn rekeying_under_iperf3_loses_no_connection() {
    if !require_root() {
        return;
    }
    require_tools(&["iperf3"]);
    let lab = lab("rekey", 2, true, &[("LAB_REKEY", "2")]);
    let uid2 = lab.tincan_state("h2")["_uid"].as_str().unwrap().to_string();
    let hs_before = peer(&lab.tincan_state("h1"), &uid2)["handshakes"]
        .as_u64()
        .unwrap();
    let client = std::thread::scope(|s| {
        s.spawn(|| lab.exec("h2c1", &["timeout", "30", "iperf3", "-s", "-1"]));
        std::thread::sleep(Duration::from_millis(500));
        lab.exec(
            "h1c1",
            &[
                "timeout",
                "25",
                "iperf3",
                "-c",
                &ip4("h2c1"),
                "-t",
                "8",
                "-J",
            ],
        )
    });
    let json: Value = serde_json::from_slice(&client.stdout).unwrap_or(Value::Null);
    assert!(
        client.status.success(),
        "iperf3 failed across rekeys: {}\n{}",
        json["error"],
        String::from_utf8_lossy(&client.stderr)
    );
    let received = json["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 10_000_000, "iperf3 moved only {received} bytes");
    let hs_after = peer(&lab.tincan_state("h1"), &uid2)["handshakes"]
        .as_u64()
        .unwrap();
    assert!(
        hs_after >= hs_before + 3,
        "expected several rekeys in 8 s at a 2 s interval: {hs_before} -> {hs_after}"
    );
    let r = lab.ping("h1c1", &ip4("h2c1"), 3, None);
    assert!(r.is_clean(), "{}", r.raw);
}
