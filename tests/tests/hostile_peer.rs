//! A linked peer that lies: its controller claims other hosts' addresses over ICC, and frames
//! from its bridge carry another host's source MAC. The victim's containers, its bridge and the
//! traffic between honest hosts must not notice, and both daemons must count what they refused.

use ipop_lab_tests::{ip4, prefix, require_root, Lab, TINCAN_PORT};
use serde_json::{json, Value};

/// A MAC the hostile peer makes up.
const EVIL_MAC: &str = "02:66:66:66:66:01";

/// The bridge port of lxcbr0 in `host` that `mac` is learned on, if any.
fn fdb_port(lab: &Lab, host: &str, mac: &str) -> Option<String> {
    let out = lab.exec_ok(host, &["bridge", "fdb", "show", "br", "lxcbr0"]);
    out.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.first() == Some(&mac) && w.get(1) == Some(&"dev")).then(|| w[2].to_string())
    })
}

/// The entry of `uid` in a `get_state` answer's `peers`.
fn peer<'a>(state: &'a Value, uid: &str) -> &'a Value {
    state["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["uid"] == uid)
        .unwrap_or_else(|| panic!("no peer {uid} in {state}"))
}

fn count(v: &Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

#[test]
fn a_hostile_peer_cannot_claim_other_hosts_addresses() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("hostile"), 3, true);
    let uid = |h: &str| lab.tincan_state(h)["_uid"].as_str().unwrap().to_string();
    let (uid_h1, uid_h2) = (uid("h1"), uid("h2"));
    let h1c1_mac = lab.mac_of("h1c1", "eth0");
    let gateway_mac = lab.mac_of("h1", "lxcbr0");

    // Honest traffic first: h1c1 speaks on h1's bridge and across the overlay to h3, h1c2 knows
    // h1c1 and the gateway.
    for (from, to) in [
        ("h1c1", ip4("h3c1")),
        ("h3c1", ip4("h1c1")),
        ("h1c2", ip4("h1c1")),
        ("h1c2", ip4("h1")),
    ] {
        let r = lab.ping(from, &to, 2, None);
        assert!(r.is_clean(), "{from} -> {to} before the attack:\n{}", r.raw);
    }
    assert_eq!(lab.neigh_mac("h1c2", &ip4("h1c1")), Some(h1c1_mac.clone()));
    assert_eq!(fdb_port(&lab, "h1", &h1c1_mac).as_deref(), Some("c1"));
    let c1_before = lab.controller_state("h1");
    let before = count(peer(&c1_before, &uid_h2), "claims_refused");

    // (a) h2's controller (played by hand through h2's tincan) claims h1c1's IP and the
    // gateway's for a MAC of its choosing, h1c1's MAC under a new IP, and answers for h1c1.
    let claims = [
        json!({"msg_type": "arp_request", "target_ip4": ip4("h1c2"),
               "requester_ip4": ip4("h1c1"), "requester_mac": EVIL_MAC}),
        json!({"msg_type": "arp_request", "target_ip4": ip4("h1c2"),
               "requester_ip4": ip4("h1"), "requester_mac": EVIL_MAC}),
        json!({"msg_type": "arp_request", "target_ip4": ip4("h1c2"),
               "requester_ip4": "10.0.3.99", "requester_mac": h1c1_mac}),
        json!({"msg_type": "arp_reply", "target_ip4": ip4("h1c1"), "mac": EVIL_MAC,
               "uid": uid_h2}),
    ];
    for msg in &claims {
        let params = json!({"uid": uid_h1, "msg": msg});
        lab.rpc("h2", TINCAN_PORT, "send_icc", Some(&params))
            .unwrap_or_else(|e| panic!("send_icc {msg}: {e}"));
    }
    // A burst of requests h2 may make (for its own host h2c1): more than the per-peer rate,
    // sent as root over h2's tincan's control socket.
    let burst = format!(
        r#"
import json, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0ipop-tincan/{port}")
for i in range(60):
    msg = {{"msg_type": "arp_request", "target_ip4": "10.0.3.%d" % (150 + i),
            "requester_ip4": "{ip}", "requester_mac": "{mac}"}}
    req = {{"jsonrpc": "2.0", "id": i, "method": "send_icc",
            "params": {{"uid": "{uid}", "msg": msg}}}}
    s.sendall(json.dumps(req).encode() + b"\n")
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
"#,
        ip = ip4("h2c1"),
        mac = lab.mac_of("h2c1", "eth0"),
        uid = uid_h1,
        port = TINCAN_PORT,
    );
    lab.exec_ok("h2", &["python3", "-c", &burst]);

    // (b) A container on h2's bridge sends broadcasts with h1c1's source MAC: h2's tincan
    // floods them to h1 and h3 (not ARP, which it would punt to its controller).
    let spoof = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
frame = b"\xff" * 6 + bytes.fromhex("{src}") + b"\x88\xb5" + b"hostile" + bytes(39)
for _ in range(20):
    s.send(frame)
    time.sleep(0.02)
"#,
        src = h1c1_mac.replace(':', ""),
    );
    lab.exec_ok("h2c1", &["python3", "-c", &spoof]);
    std::thread::sleep(std::time::Duration::from_millis(500));

    // The victim's bridge keeps h1c1 on its own port, not on the TAP.
    assert_eq!(
        fdb_port(&lab, "h1", &h1c1_mac).as_deref(),
        Some("c1"),
        "h1's bridge moved h1c1's MAC:\n{}",
        lab.exec_ok("h1", &["bridge", "fdb", "show", "br", "lxcbr0"])
    );
    // The victim's containers keep the real MACs of h1c1 and of the gateway.
    assert_eq!(lab.neigh_mac("h1c2", &ip4("h1c1")), Some(h1c1_mac.clone()));
    for c in ["h1c1", "h1c2"] {
        let gw = lab.neigh_mac(c, &ip4("h1"));
        assert!(
            gw.is_none() || gw.as_deref() == Some(gateway_mac.as_str()),
            "{c} maps the gateway {} to {gw:?}, not {gateway_mac}",
            ip4("h1")
        );
    }
    assert_eq!(lab.neigh_mac("h1c2", "10.0.3.99"), None);
    // Honest hosts still reach each other.
    for (from, to) in [("h3c1", ip4("h1c1")), ("h1c1", ip4("h3c1"))] {
        let r = lab.ping(from, &to, 3, None);
        assert!(r.is_clean(), "{from} -> {to} after the attack:\n{}", r.raw);
    }

    // What was refused is counted, per peer: by h1's controller (claims, requests over the
    // rate) and by h1's and h3's tincan (frames with h1c1's source from h2).
    let c1 = lab.controller_state("h1");
    let p = peer(&c1, &uid_h2);
    assert!(
        count(p, "claims_refused") >= before + claims.len() as u64,
        "h1's controller should have refused h2's claims: {c1}"
    );
    assert!(
        count(p, "requests_rate_limited") >= 10,
        "h1's controller should have rate-limited h2's requests: {c1}"
    );
    let neigh_h1c1 = c1["neigh"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ip"] == ip4("h1c1"))
        .cloned();
    if let Some(e) = neigh_h1c1 {
        assert_eq!(
            (e["mac"].as_str(), e["owner"].as_str()),
            (Some(h1c1_mac.as_str()), Some("local"))
        );
    }
    let t1 = lab.tincan_state("h1");
    assert!(
        count(peer(&t1, &uid_h2), "refused_macs") >= 1,
        "h1's tincan should have dropped h2's frames with h1c1's MAC: {t1}"
    );
    assert_eq!(count(peer(&t1, &uid("h3")), "refused_macs"), 0, "{t1}");
    let t3 = lab.tincan_state("h3");
    assert!(
        count(peer(&t3, &uid_h2), "refused_macs") >= 1,
        "h3's tincan should have refused h1c1's MAC from h2: {t3}"
    );
    // h2's honest controller was not refused anything by h3, which heard none of this.
    let c3 = lab.controller_state("h3");
    assert_eq!(count(peer(&c3, &uid_h1), "claims_refused"), 0, "{c3}");
}
