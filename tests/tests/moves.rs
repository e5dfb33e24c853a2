//! Moves and conflicts on one segment (README, "Moves and conflicts"): a container that moves
//! to another host is reached there within a second of its gratuitous ARP, a peer cannot move
//! a host that is still on its real bridge, and two hosts with one IP are reported and kept
//! apart until one of them goes.

use ipop_lab_tests::{ip4, prefix, require_root, wait_until, Daemon, Lab, PingOpts, TINCAN_PORT};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Sends one gratuitous ARP (a request for its own IP) from `node`'s eth0, as `mac`/`ip`.
fn garp(lab: &Lab, node: &str, mac: &str, ip: &str) {
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = bytes.fromhex("{mac}")
ip = socket.inet_aton("{ip}")
arp = b"\x00\x01\x08\x00\x06\x04\x00\x01" + mac + ip + bytes(6) + ip
s.send(b"\xff" * 6 + mac + b"\x08\x06" + arp + bytes(18))
"#,
        mac = mac.replace(':', ""),
    );
    lab.exec_ok(node, &["python3", "-c", &script]);
}

fn uid(lab: &Lab, host: &str) -> String {
    lab.tincan_state(host)["_uid"].as_str().unwrap().to_string()
}

/// The owner (`"local"` or a uid) of `ip` in the host's controller table, if any.
fn neigh_owner(lab: &Lab, host: &str, ip: &str) -> Option<String> {
    let state = lab.controller_state(host);
    state["neigh"]
        .as_array()
        .expect("neigh")
        .iter()
        .find(|e| e["ip"] == ip)
        .map(|e| e["owner"].as_str().unwrap().to_string())
}

fn local_macs(lab: &Lab, host: &str) -> Vec<String> {
    let state = lab.tincan_state(host);
    state["local_macs"]
        .as_array()
        .unwrap_or_else(|| panic!("{host}: no local_macs in {state}"))
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

/// The host's conflicts for `ip`: (kept_mac, kept_owner, claimed_mac, claimed_by, conflict).
fn conflicts(lab: &Lab, host: &str, ip: &str) -> Vec<(String, String, String, String, bool)> {
    let state = lab.controller_state(host);
    let text = |v: &Value| v.as_str().unwrap().to_string();
    state["conflicts"]
        .as_array()
        .unwrap_or_else(|| panic!("{host}: no conflicts in {state}"))
        .iter()
        .filter(|c| c["ip"] == ip)
        .map(|c| {
            (
                text(&c["kept_mac"]),
                text(&c["kept_owner"]),
                text(&c["claimed_mac"]),
                text(&c["claimed_by"]),
                c["conflict"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The whole log of the host's controller.
fn controller_log(lab: &Lab, host: &str) -> String {
    let path = lab
        .dir()
        .join(host)
        .join(format!("{}.log", Daemon::Controller.name()));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ping_clean(lab: &Lab, from: &str, to: &str) {
    let r = lab.ping(from, to, 3, None);
    assert!(r.is_clean(), "{from} -> {to}:\n{}", r.raw);
    assert_eq!(r.duplicates, 0, "{from} -> {to} duplicates:\n{}", r.raw);
}

#[test]
fn a_container_moved_to_another_host_is_reached_there_within_a_second() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("moves"), 3, true);
    let (ip, mac) = (ip4("h1c1"), lab.mac_of("h1c1", "eth0"));
    let (uid1, uid3) = (uid(&lab, "h1"), uid(&lab, "h3"));
    let mtu = lab.exec_ok("h1c1", &["cat", "/sys/class/net/eth0/mtu"]);
    // Every host knows the container at h1.
    for from in ["h2c1", "h3c1", "h1c2"] {
        ping_clean(&lab, from, &ip);
    }
    assert!(local_macs(&lab, "h1").contains(&mac));
    assert_eq!(neigh_owner(&lab, "h2", &ip), Some(uid1.clone()));

    // The move: the container's link leaves h1's bridge and comes up on h3's, same MAC and IP.
    lab.exec_ok("h1", &["ip", "link", "del", "c1"]);
    let container_ns = lab.ns("h1c1");
    lab.exec_ok(
        "h3",
        &[
            "ip",
            "link",
            "add",
            "m1",
            "mtu",
            mtu.trim(),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &container_ns,
        ],
    );
    lab.exec_ok("h3", &["ip", "link", "set", "m1", "master", "lxcbr0", "up"]);
    for args in [
        vec!["ip", "link", "set", "eth0", "address", mac.as_str()],
        vec!["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        vec!["ip", "link", "set", "eth0", "up"],
    ] {
        lab.exec_ok("h1c1", &args);
    }
    garp(&lab, "h1c1", &mac, &ip);
    let announced = Instant::now();
    // h2's container pings it (its ARP cache still has the MAC): the first answer comes from
    // h3 within a second of the announcement.
    let first = PingOpts {
        interval: 0.05,
        deadline_secs: Some(3),
        ..PingOpts::new(1)
    };
    let r = lab.ping_with("h2c1", &ip, &first);
    let took = announced.elapsed();
    assert!(r.received == 1, "h2c1 -> {ip} after the move:\n{}", r.raw);
    eprintln!("first answer from the moved container {took:?} after its gratuitous ARP");
    assert!(
        took < Duration::from_secs(1),
        "the moved container answered {took:?} after its announcement:\n{}",
        r.raw
    );
    // Once, from everywhere.
    for from in ["h2c1", "h1c2", "h3c1"] {
        ping_clean(&lab, from, &ip);
    }
    // h1 dropped the old place: its tincan no longer has the MAC on its bridge, and both its
    // daemons have it behind h3, as h2's do.
    assert!(
        !local_macs(&lab, "h1").contains(&mac),
        "{}",
        lab.tincan_state("h1")
    );
    let t1 = lab.tincan_state("h1");
    let behind: Vec<&Value> = t1["macs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["mac"] == mac.as_str())
        .collect();
    assert!(
        behind.iter().all(|m| m["uid"] == uid3.as_str()),
        "h1's tincan: {t1}"
    );
    assert_eq!(neigh_owner(&lab, "h1", &ip), Some(uid3.clone()));
    assert_eq!(neigh_owner(&lab, "h2", &ip), Some(uid3.clone()));
    assert_eq!(neigh_owner(&lab, "h3", &ip).as_deref(), Some("local"));
    let c1 = lab.controller_state("h1");
    assert!(c1["counters"]["released"].as_u64() >= Some(1), "{c1}");
    assert!(conflicts(&lab, "h1", &ip).is_empty(), "{c1}");
}

#[test]
fn a_peer_cannot_move_a_host_that_is_still_on_its_bridge() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("nomove"), 3, true);
    let (ip, mac) = (ip4("h1c1"), lab.mac_of("h1c1", "eth0"));
    let (uid1, uid2, uid3) = (uid(&lab, "h1"), uid(&lab, "h2"), uid(&lab, "h3"));
    for from in ["h2c1", "h3c1"] {
        ping_clean(&lab, from, &ip);
    }
    // h3 claims h1c1 twice over: a container on its bridge announces h1c1's MAC and IP, and
    // its controller (played by hand) announces them to h1 and h2 over ICC.
    garp(&lab, "h3c1", &mac, &ip);
    for to in [&uid1, &uid2] {
        let msg = json!({"msg_type": "arp_reply", "target_ip4": ip, "mac": mac, "uid": uid3});
        lab.rpc(
            "h3",
            TINCAN_PORT,
            "send_icc",
            Some(&json!({"uid": to, "msg": msg})),
        )
        .unwrap_or_else(|e| panic!("send_icc: {e}"));
    }
    // h1 checked its bridge, found the host there, and reports the conflict.
    let reported = wait_until(Duration::from_secs(5), || {
        conflicts(&lab, "h1", &ip).contains(&(
            mac.clone(),
            "local".into(),
            mac.clone(),
            uid3.clone(),
            true,
        ))
    });
    assert!(reported, "h1: {}", lab.controller_state("h1"));
    // Nothing moved: h1 keeps its host, h2 keeps it at h1, and h2's container reaches the real
    // one, once.
    assert!(local_macs(&lab, "h1").contains(&mac));
    assert_eq!(neigh_owner(&lab, "h1", &ip).as_deref(), Some("local"));
    assert_eq!(neigh_owner(&lab, "h2", &ip), Some(uid1.clone()));
    ping_clean(&lab, "h2c1", &ip);
    let t2 = lab.tincan_state("h2");
    assert!(
        t2["macs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["mac"] == mac.as_str())
            .all(|m| m["uid"] == uid1.as_str()),
        "h2's tincan: {t2}"
    );
    let c1 = lab.controller_state("h1");
    assert_eq!(c1["counters"]["released"].as_u64(), Some(0), "{c1}");
}

#[test]
fn two_hosts_with_one_ip_are_reported_and_each_keeps_its_own_until_one_goes() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("conflict"), 3, true);
    let ip = ip4("h1c1");
    let (mac1, mac2) = (lab.mac_of("h1c1", "eth0"), lab.mac_of("h2c1", "eth0"));
    let (uid1, uid2) = (uid(&lab, "h1"), uid(&lab, "h2"));
    // h1c1 is the first owner, known to h2 and h3.
    for from in ["h2c2", "h3c1"] {
        ping_clean(&lab, from, &ip);
    }
    // h2c1 takes the same IP and announces it.
    lab.exec_ok(
        "h2c1",
        &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
    );
    garp(&lab, "h2c1", &mac2, &ip);
    let expected = [
        (
            "h1",
            (
                mac1.clone(),
                "local".to_string(),
                mac2.clone(),
                uid2.clone(),
            ),
        ),
        (
            "h2",
            (
                mac2.clone(),
                "local".to_string(),
                mac1.clone(),
                uid1.clone(),
            ),
        ),
        (
            "h3",
            (mac1.clone(), uid1.clone(), mac2.clone(), uid2.clone()),
        ),
    ];
    for (host, (kept_mac, kept_owner, claimed_mac, claimed_by)) in &expected {
        let want = (
            kept_mac.clone(),
            kept_owner.clone(),
            claimed_mac.clone(),
            claimed_by.clone(),
            true,
        );
        let seen = wait_until(Duration::from_secs(5), || {
            conflicts(&lab, host, &ip) == [want.clone()]
        });
        assert!(seen, "{host}: {}", lab.controller_state(host));
    }
    // Each owner's own containers reach their own host; the third host reaches the first.
    for (from, want) in [("h1c2", &mac1), ("h2c2", &mac2), ("h3c1", &mac1)] {
        lab.exec_ok(from, &["ip", "neigh", "flush", "dev", "eth0"]);
        ping_clean(&lab, from, &ip);
        assert_eq!(lab.neigh_mac(from, &ip).as_ref(), Some(want), "{from}");
    }

    // h2c1 goes: every controller drops the conflict, and h2's containers reach h1c1.
    lab.exec_ok("h2", &["ip", "link", "del", "c1"]);
    for host in ["h1", "h2", "h3"] {
        let cleared = wait_until(Duration::from_secs(5), || {
            conflicts(&lab, host, &ip).is_empty()
        });
        assert!(cleared, "{host}: {}", lab.controller_state(host));
    }
    assert_eq!(neigh_owner(&lab, "h2", &ip), Some(uid1.clone()));
    ping_clean(&lab, "h2c2", &ip);
    assert_eq!(lab.neigh_mac("h2c2", &ip), Some(mac1.clone()));
    // The third host's log said what it kept, and that the conflict is over.
    let log = controller_log(&lab, "h3");
    let said = format!(
        "address conflict: {ip} is {mac1} on peer {uid1} and {mac2} on peer {uid2}; keeping {mac1}"
    );
    assert!(log.contains(&said), "h3's log lacks {said:?}:\n{log}");
    let over = format!("address conflict over: {ip} is {mac1} on peer {uid1}");
    assert!(log.contains(&over), "h3's log lacks {over:?}:\n{log}");
}
