//! IPv6 neighbour discovery replicated like ARP: after a container flushed its neighbour
//! cache, its next solicitation for a remote container is answered by its own host's tincan
//! with the real MAC, no ICC crossing; a duplicate address detection probe for a remote
//! container's address is not answered on its behalf but reaches it, it defends its address
//! and the prober marks its copy `dadfailed`; and a peer's ICC claim for an IPv6 address of
//! our bridge is refused and counted.

use ipop_lab_tests::{ip6, prefix, require_root, wait_until, Lab, TINCAN_PORT};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A MAC the hostile peer makes up.
const EVIL_MAC: &str = "02:66:66:66:66:06";

fn counter(state: &Value, name: &str) -> u64 {
    state["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {state}"))
}

/// The controller's IPv6 entry for `ip` (`neigh6` of its `get_state`), if any.
fn neigh6(state: &Value, ip: &str) -> Option<Value> {
    state["neigh6"]
        .as_array()
        .unwrap_or_else(|| panic!("no neigh6 in {state}"))
        .iter()
        .find(|e| e["ip"] == ip)
        .cloned()
}

fn nd_entries(lab: &Lab, host: &str) -> u64 {
    lab.tincan_state(host)["nd_entries"]
        .as_u64()
        .expect("nd_entries in get_state")
}

/// The ICMPv6 counter `name` of a container (`/proc/net/snmp6`).
fn icmp6(lab: &Lab, node: &str, name: &str) -> u64 {
    lab.snmp_counter(node, "Icmp6", name)
}

#[test]
fn neighbour_discovery_is_answered_locally_dad_reaches_the_owner_and_lies_are_refused() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("nd"), 2, true);
    let target = ip6("h2c1");
    let target_mac = lab.mac_of("h2c1", "eth0");

    // First resolution: h1c1's solicitation crosses ICC once; h1's controller learns the
    // binding and programs it into tincan.
    let t = Instant::now();
    let r = lab.ping6("h1c1", &target, 1, None);
    assert!(r.is_clean(), "first ping6:\n{}", r.raw);
    eprintln!("first resolution and ping6: {:?}", t.elapsed());
    assert!(
        wait_until(Duration::from_secs(5), || nd_entries(&lab, "h1") >= 1),
        "h1's tincan never got the binding of h2c1: {}",
        lab.tincan_state("h1")
    );
    let c0 = lab.controller_state("h1");
    eprintln!(
        "h1 nd_icc_requests_sent after the first resolution: {}",
        counter(&c0, "nd_icc_requests_sent")
    );
    assert!(counter(&c0, "nd_icc_requests_sent") >= 1, "{c0}");

    // Second resolution after a flush: answered by h1's tincan, with the real MAC.
    let t0 = lab.tincan_state("h1");
    lab.exec_ok("h1c1", &["ip", "-6", "neigh", "flush", "all"]);
    assert_eq!(lab.neigh_mac("h1c1", &target), None, "the flush worked");
    let t = Instant::now();
    let r = lab.ping6("h1c1", &target, 1, None);
    assert!(r.is_clean(), "ping6 after the flush:\n{}", r.raw);
    eprintln!("second resolution and ping6: {:?}", t.elapsed());
    let (t1, c1) = (lab.tincan_state("h1"), lab.controller_state("h1"));
    assert!(
        counter(&t1, "nd_answered_locally") > counter(&t0, "nd_answered_locally"),
        "tincan should have answered the solicitation itself: {t1}"
    );
    assert_eq!(
        lab.neigh_mac("h1c1", &target).as_deref(),
        Some(target_mac.as_str()),
        "the answer carries h2c1's real MAC"
    );
    for name in [
        "icc_sent",
        "nd_icc_requests_sent",
        "nd_solicitations_answered_locally",
        "frames_injected",
    ] {
        assert_eq!(
            counter(&c1, name),
            counter(&c0, name),
            "no ICC crossed and the controller had nothing to do ({name}): {c1}"
        );
    }
    assert_eq!(counter(&t1, "nd_malformed"), 0, "{t1}");

    // DAD: h1c2 tries to take h2c1's address. h1's tincan holds a binding for it but must not
    // answer the probe: the probe reaches h2c1, which defends its address.
    let (t2, ns_in, na_out) = (
        lab.tincan_state("h1"),
        icmp6(&lab, "h2c1", "InNeighborSolicits"),
        icmp6(&lab, "h2c1", "OutNeighborAdvertisements"),
    );
    // The lab turns DAD off; h1c2 probes like any host does by default.
    lab.exec_ok(
        "h1c2",
        &["sysctl", "-q", "-w", "net.ipv6.conf.eth0.accept_dad=1"],
    );
    lab.exec_ok(
        "h1c2",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{target}/64"),
            "dev",
            "eth0",
        ],
    );
    let t = Instant::now();
    let failed = wait_until(Duration::from_secs(8), || {
        lab.exec_ok("h1c2", &["ip", "-6", "addr", "show", "dev", "eth0"])
            .contains("dadfailed")
    });
    assert!(
        failed,
        "h1c2 did not detect that {target} is taken:\n{}",
        lab.exec_ok("h1c2", &["ip", "-6", "addr", "show", "dev", "eth0"])
    );
    eprintln!("duplicate detected after {:?}", t.elapsed());
    let t3 = lab.tincan_state("h1");
    assert!(
        counter(&t3, "nd_dad_flooded") > counter(&t2, "nd_dad_flooded"),
        "the probe was flooded: {t3}"
    );
    assert_eq!(
        counter(&t3, "nd_answered_locally"),
        counter(&t2, "nd_answered_locally"),
        "a probe is never answered on the owner's behalf: {t3}"
    );
    assert!(
        icmp6(&lab, "h2c1", "InNeighborSolicits") > ns_in,
        "the owner heard the probe"
    );
    assert!(
        icmp6(&lab, "h2c1", "OutNeighborAdvertisements") > na_out,
        "the owner defended its address"
    );

    // A lie: h2's controller (played by hand through h2's tincan) claims h1c1's IPv6 address
    // for a MAC of its choosing, and asks with h1c1's address as its requester.
    let uid = |h: &str| lab.tincan_state(h)["_uid"].as_str().unwrap().to_string();
    let (uid_h1, uid_h2) = (uid("h1"), uid("h2"));
    let h1c1_mac = lab.mac_of("h1c1", "eth0");
    let r = lab.ping6("h1c2", &ip6("h1c1"), 1, None);
    assert!(r.is_clean(), "h1c2 -> h1c1:\n{}", r.raw);
    let before = lab.controller_state("h1");
    let claims = [
        json!({"msg_type": "nd_reply", "target_ip6": ip6("h1c1"), "mac": EVIL_MAC,
               "uid": uid_h2}),
        json!({"msg_type": "nd_request", "target_ip6": ip6("h1c2"),
               "requester_ip6": ip6("h1c1"), "requester_mac": EVIL_MAC}),
    ];
    for msg in &claims {
        let params = json!({"uid": uid_h1, "msg": msg});
        lab.rpc("h2", TINCAN_PORT, "send_icc", Some(&params))
            .unwrap_or_else(|e| panic!("send_icc {msg}: {e}"));
    }
    let refused = |s: &Value| counter(s, "nd_claims_refused");
    assert!(
        wait_until(Duration::from_secs(3), || refused(
            &lab.controller_state("h1")
        ) >= refused(&before) + 2),
        "h1's controller did not refuse both claims: {}",
        lab.controller_state("h1")
    );
    let after = lab.controller_state("h1");
    let peer_refused = |s: &Value| {
        s["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["uid"] == uid_h2.as_str()))
            .and_then(|p| p["claims_refused"].as_u64())
            .unwrap_or_else(|| panic!("no peer {uid_h2} in {s}"))
    };
    assert!(peer_refused(&after) >= peer_refused(&before) + 2, "{after}");
    let e = neigh6(&after, &ip6("h1c1")).expect("h1c1 in h1's IPv6 table");
    assert_eq!(
        (e["owner"].as_str(), e["mac"].as_str()),
        (Some("local"), Some(h1c1_mac.as_str())),
        "h1 keeps h1c1 on its own bridge with its real MAC: {e}"
    );
    let e = neigh6(&after, &target).expect("h2c1 in h1's IPv6 table");
    assert_eq!(
        (e["owner"].as_str(), e["mac"].as_str()),
        (Some(uid_h2.as_str()), Some(target_mac.as_str())),
        "{e}"
    );
    assert_eq!(
        lab.neigh_mac("h1c2", &ip6("h1c1")).as_deref(),
        Some(h1c1_mac.as_str()),
        "h1c2 keeps h1c1's real MAC"
    );
    let r = lab.ping6("h1c2", &ip6("h1c1"), 2, None);
    assert!(r.is_clean(), "h1c2 -> h1c1 after the lie:\n{}", r.raw);
}
