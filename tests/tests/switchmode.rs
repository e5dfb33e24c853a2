//! Switch mode end to end: the real ipop-tincan and gvpn-controller in the namespace lab,
//! checked the way a user would notice: pings arrive once, ARP is answered on the host, nothing
//! is ICMP-redirected, daemons can be restarted under traffic.

use ipop_lab_tests::{ip4, ip6, prefix, require_root, Daemon, Lab, PingOpts, OVERLAY_MTU};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

fn counter(state: &Value, name: &str) -> u64 {
    state["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {state}"))
}

fn peer_status(state: &Value) -> HashMap<String, (String, u64)> {
    state["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| {
            (
                p["uid"].as_str().unwrap().to_string(),
                (
                    p["status"].as_str().unwrap().to_string(),
                    p["downs"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn every_container_reaches_every_remote_container_once_without_redirects() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("mesh"), 3, true);
    let containers = lab.containers();
    for from in &containers {
        for to in &containers {
            if from[..2] == to[..2] {
                continue; // same host: not the overlay's business
            }
            let r = lab.ping(from, &ip4(to), 2, None);
            assert!(r.is_clean(), "{from} -> {to}:\n{}", r.raw);
            assert_eq!(r.duplicates, 0, "{from} -> {to} duplicates:\n{}", r.raw);
        }
    }
    // IPv6 (neighbour discovery rides the 33:33:* multicast flood).
    for (from, to) in [("h1c1", "h2c2"), ("h2c1", "h3c1"), ("h3c2", "h1c2")] {
        let r = lab.ping6(from, &ip6(to), 2, None);
        assert!(r.is_clean(), "{from} -> {to} over IPv6:\n{}", r.raw);
    }
    // A payload that fills the overlay MTU (less 20 IPv4 and 8 ICMP), not fragmented.
    let full = PingOpts {
        size: Some(OVERLAY_MTU - 28),
        dont_fragment: true,
        ..PingOpts::new(3)
    };
    let r = lab.ping_with("h1c1", &ip4("h3c2"), &full);
    assert!(r.is_clean(), "full-MTU ping:\n{}", r.raw);
    let r = lab.ping_with("h3c2", &ip4("h2c1"), &full);
    assert!(r.is_clean(), "full-MTU ping:\n{}", r.raw);

    for h in lab.host_names() {
        assert_eq!(
            lab.snmp_counter(&h, "Icmp", "OutRedirects"),
            0,
            "{h} sent ICMP redirects"
        );
        // The TAP is a bridge port, with no address of its own.
        let addrs = lab.exec_ok(&h, &["ip", "-4", "addr", "show", "dev", "ipop"]);
        assert!(
            !addrs.contains("inet "),
            "{h}: ipop has an address:\n{addrs}"
        );
    }
}

#[test]
fn a_broadcast_reaches_each_remote_container_exactly_once() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("bcast"), 3, true);
    for c in lab.containers() {
        lab.exec_ok(
            &c,
            &["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"],
        );
    }
    // With -c, ping stops at the third answer; a deadline alone lets every answer to the
    // first three requests arrive (bounded: 4 s).
    let out = lab.exec(
        "h1c1",
        &["ping", "-b", "-i", "0.5", "-w", "4", "10.0.3.255"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // "64 bytes from 10.0.3.21: icmp_seq=1 ttl=64 time=0.3 ms"
    let mut seen: HashMap<(String, u32), u32> = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.split("bytes from ").nth(1) else {
            continue;
        };
        let ip = rest.split(':').next().unwrap().to_string();
        let Some(seq) = rest
            .split("icmp_seq=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        *seen.entry((ip, seq)).or_default() += 1;
    }
    for remote in ["h2c1", "h2c2", "h3c1", "h3c2"] {
        for seq in 1..=3 {
            assert_eq!(
                seen.get(&(ip4(remote), seq)).copied().unwrap_or(0),
                1,
                "{remote} answered broadcast seq {seq} not exactly once ({:?}, {}):\n{text}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn first_arp_crosses_the_overlay_once_then_is_answered_locally() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("arp"), 3, true);
    let target_mac = lab.mac_of("h2c1", "eth0");
    let c0 = lab.controller_state("h1");
    let t0 = lab.tincan_state("h1");

    let r = lab.ping("h1c1", &ip4("h2c1"), 2, None);
    assert!(r.is_clean(), "{}", r.raw);
    let c1 = lab.controller_state("h1");
    assert_eq!(
        counter(&c1, "icc_requests_sent") - counter(&c0, "icc_requests_sent"),
        1,
        "the first ARP for h2c1 should cost one ICC request: {c1}"
    );
    assert_eq!(
        lab.neigh_mac("h1c1", &ip4("h2c1")).as_deref(),
        Some(target_mac.as_str()),
        "h1c1 should hold h2c1's real MAC"
    );
    let t1 = lab.tincan_state("h1");
    // One ICC request went out to each of the two peers; the answer came back.
    assert!(counter(&t1, "icc_tx") >= counter(&t0, "icc_tx") + 2);

    // The container forgets; its next ARP is answered by its own host's controller.
    lab.exec_ok("h1c1", &["ip", "neigh", "flush", "dev", "eth0"]);
    assert_eq!(lab.neigh_mac("h1c1", &ip4("h2c1")), None);
    let r = lab.ping("h1c1", &ip4("h2c1"), 2, None);
    assert!(r.is_clean(), "{}", r.raw);
    let c2 = lab.controller_state("h1");
    let t2 = lab.tincan_state("h1");
    assert_eq!(
        counter(&c2, "icc_requests_sent"),
        counter(&c1, "icc_requests_sent"),
        "no ICC request the second time"
    );
    assert_eq!(
        counter(&t2, "icc_tx"),
        counter(&t1, "icc_tx"),
        "nothing sent to peers' controllers"
    );
    // Answered on this host: by tincan from the binding the controller programmed into it.
    assert!(
        counter(&t2, "arp_answered_locally") > counter(&t1, "arp_answered_locally"),
        "tincan answers the ARP itself: {t2}"
    );
    assert_eq!(
        counter(&c2, "answered_locally"),
        counter(&c1, "answered_locally")
    );
    assert_eq!(
        lab.neigh_mac("h1c1", &ip4("h2c1")).as_deref(),
        Some(target_mac.as_str()),
        "the local answer carries the target's real MAC"
    );
    let tap_mac = lab.tincan_state("h1")["_mac"].as_str().unwrap().to_string();
    assert_ne!(target_mac, tap_mac);
}

#[test]
fn controller_restart_under_traffic_loses_nothing() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("ctlr"), 2, true);
    let r = lab.ping("h1c1", &ip4("h2c1"), 1, None);
    assert!(r.is_clean(), "{}", r.raw);
    std::thread::scope(|s| {
        let ping = s.spawn(|| {
            lab.ping_with(
                "h1c1",
                &ip4("h2c1"),
                &PingOpts {
                    interval: 0.1,
                    deadline_secs: Some(20),
                    ..PingOpts::new(60)
                },
            )
        });
        std::thread::sleep(Duration::from_millis(1000));
        lab.kill("h1", Daemon::Controller);
        std::thread::sleep(Duration::from_millis(2000));
        lab.start("h1", Daemon::Controller);
        let r = ping.join().unwrap();
        // Established unicast flows never need the controller: nothing may be lost.
        assert_eq!(r.transmitted, 60, "{}", r.raw);
        assert_eq!(
            r.received, 60,
            "pings lost across a controller restart:\n{}",
            r.raw
        );
        assert_eq!(r.duplicates, 0, "{}", r.raw);
    });
    // The restarted controller is back in charge: a fresh ARP resolution works through it.
    assert!(ipop_lab_tests::wait_until(Duration::from_secs(10), || {
        lab.rpc("h1", 30000, "get_state", None)
            .is_ok_and(|s| s["tincan_alive"] == Value::Bool(true))
    }));
    lab.exec_ok("h1c2", &["ip", "neigh", "flush", "dev", "eth0"]);
    let before = lab.controller_state("h1");
    let r = lab.ping("h1c2", &ip4("h2c2"), 2, None);
    assert!(r.is_clean(), "{}", r.raw);
    let after = lab.controller_state("h1");
    assert!(counter(&after, "arp_punted") > counter(&before, "arp_punted"));
    assert!(lab.tincan_state("h1")["controller_alive"] == Value::Bool(true));
}

#[test]
fn a_killed_tincan_takes_only_its_links_down_and_comes_back() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("tinc"), 3, true);
    let uid_h2 = lab.tincan_state("h2")["_uid"].as_str().unwrap().to_string();
    let uid_h3 = lab.tincan_state("h3")["_uid"].as_str().unwrap().to_string();

    lab.kill("h2", Daemon::Tincan);
    assert!(
        ipop_lab_tests::wait_until(Duration::from_secs(10), || {
            peer_status(&lab.tincan_state("h1"))[&uid_h2].0 == "offline"
        }),
        "h1's link to h2 should go down"
    );
    // The other link is untouched, and still carries traffic.
    let s = peer_status(&lab.tincan_state("h1"));
    assert_eq!(s[&uid_h3], ("online".to_string(), 0));
    let r = lab.ping("h1c1", &ip4("h3c1"), 2, None);
    assert!(r.is_clean(), "{}", r.raw);

    lab.start("h2", Daemon::Tincan);
    assert!(
        lab.wait_links_online(Duration::from_secs(15)),
        "links should come back by themselves:\n{}",
        lab.status()
    );
    let r = lab.ping("h1c1", &ip4("h2c1"), 3, None);
    assert!(r.is_clean(), "after tincan restart:\n{}", r.raw);
    let s = peer_status(&lab.tincan_state("h1"));
    assert_eq!(s[&uid_h3].1, 0, "the h1-h3 link never went down");
    assert_eq!(s[&uid_h2].1, 1, "the h1-h2 link went down once");
    // h2's controller noticed the restart and configured the new tincan.
    assert!(counter(&lab.controller_state("h2"), "tincan_restarts_seen") >= 1);
}

#[test]
fn garbage_on_every_port_is_counted_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("junk"), 2, true);
    // Bounded: 200 datagrams of each kind, sent from inside the lab.
    let script = r#"
import socket, os, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(200):
    n = (i * 37) % 1500
    s.sendto(os.urandom(n), ("10.99.0.1", 5900))          # link port, from the other host
for i in range(50):
    for d in (b"", b"\x01", b"{", b"[1,2]", b'{"jsonrpc":"2.0","id":1,"method":"nope"}',
              b'{"jsonrpc":"2.0","id":2,"method":"create_link","params":{"uid":"zz"}}',
              b'{"jsonrpc":"2.0","id":3,"method":"inject_frame","params":{"frame":"00"}}',
              os.urandom(100)):
        s.sendto(d, ("127.0.0.1", 5800 if i % 2 else 30000))
"#;
    let before = lab.tincan_state("h1");
    lab.exec_ok("h2", &["python3", "-c", script]);
    let r = lab.ping("h2c1", &ip4("h1c1"), 3, None);
    assert!(r.is_clean(), "{}", r.raw);
    let after = lab.tincan_state("h1");
    assert!(
        counter(&after, "drop_bad_link_message") + counter(&after, "drop_unknown_index")
            >= counter(&before, "drop_bad_link_message")
                + counter(&before, "drop_unknown_index")
                + 150,
        "link garbage should be counted as drops: {after}"
    );
    assert!(lab.alive("h1", Daemon::Tincan) && lab.alive("h2", Daemon::Tincan));
    assert!(lab.alive("h2", Daemon::Controller));
    let t2 = lab.tincan_state("h2");
    assert!(counter(&t2, "ctrl_bad_request") >= 100, "{t2}");
}

#[test]
fn without_icc_the_overlay_is_a_plain_learning_switch() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("plain"), 2, false);
    let r = lab.ping("h1c1", &ip4("h2c2"), 3, None);
    assert!(r.is_clean(), "{}", r.raw);
    let t = lab.tincan_state("h1");
    assert!(counter(&t, "arp_flooded") >= 1, "{t}");
    assert_eq!(counter(&t, "arp_punted"), 0);
    assert_eq!(counter(&lab.controller_state("h1"), "icc_requests_sent"), 0);
}
