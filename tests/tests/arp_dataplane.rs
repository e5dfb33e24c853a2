//! ARP answered in the data plane: after a container flushed its neighbour cache, its first
//! ping to a remote container is answered by its own host's tincan from the binding the
//! controller programmed into it, with no ICC message crossing; once the binding is withdrawn
//! (the remote host's tincan stops), tincan no longer answers it.

use ipop_lab_tests::{ip4, prefix, require_root, wait_until, Daemon, Lab};
use serde_json::Value;
use std::time::Duration;

fn counter(state: &Value, name: &str) -> u64 {
    state["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {state}"))
}

fn neigh_entries(lab: &Lab, host: &str) -> u64 {
    lab.tincan_state(host)["neigh_entries"]
        .as_u64()
        .expect("neigh_entries in get_state")
}

fn flush_neighbours(lab: &Lab, node: &str) {
    lab.exec_ok(node, &["ip", "neigh", "flush", "all"]);
}

#[test]
fn the_first_ping_after_a_flush_is_answered_by_tincan_until_the_binding_is_withdrawn() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("arpdp"), 2, true);
    let target = ip4("h2c1");
    let target_mac = lab.mac_of("h2c1", "eth0");

    // Warm-up: the first ARP for h2c1 crosses the overlay once; the controller learns the
    // binding and programs it into tincan.
    let r = lab.ping("h1c1", &target, 1, None);
    assert!(r.is_clean(), "warm-up ping:\n{}", r.raw);
    assert!(
        wait_until(Duration::from_secs(5), || neigh_entries(&lab, "h1") >= 1),
        "h1's tincan never got the binding of h2c1: {}",
        lab.tincan_state("h1")
    );

    let (t0, c0) = (lab.tincan_state("h1"), lab.controller_state("h1"));
    flush_neighbours(&lab, "h1c1");
    assert_eq!(lab.neigh_mac("h1c1", &target), None, "the flush worked");
    let r = lab.ping("h1c1", &target, 1, None);
    assert!(r.is_clean(), "first ping after the flush:\n{}", r.raw);
    let (t1, c1) = (lab.tincan_state("h1"), lab.controller_state("h1"));
    assert!(
        counter(&t1, "arp_answered_locally") > counter(&t0, "arp_answered_locally"),
        "tincan should have answered the ARP itself: {t1}"
    );
    assert_eq!(
        lab.neigh_mac("h1c1", &target).as_deref(),
        Some(target_mac.as_str()),
        "the answer carries h2c1's real MAC"
    );
    for name in ["icc_requests_sent", "answered_locally", "frames_injected"] {
        assert_eq!(
            counter(&c1, name),
            counter(&c0, name),
            "the controller had nothing to do ({name}): {c1}"
        );
    }
    assert_eq!(
        counter(&t1, "icc_tx"),
        counter(&t0, "icc_tx"),
        "no ICC message crossed: {t1}"
    );
    // The controller hears of the answer afterwards (its heartbeat paces the reports), so
    // the binding is refreshed as if it had answered.
    let told = |c: &Value| counter(c, "answered_by_tincan");
    assert!(
        wait_until(Duration::from_secs(5), || told(&lab.controller_state("h1"))
            > told(&c0)),
        "the controller was never told: {}",
        lab.controller_state("h1")
    );

    // h2 goes away: its link goes down, the controller withdraws everything behind it, and
    // tincan's binding with it.
    lab.kill("h2", Daemon::Tincan);
    assert!(
        wait_until(Duration::from_secs(20), || neigh_entries(&lab, "h1") == 0),
        "the binding of h2c1 was not withdrawn from h1's tincan: {}",
        lab.tincan_state("h1")
    );
    let t2 = lab.tincan_state("h1");
    flush_neighbours(&lab, "h1c1");
    let r = lab.ping("h1c1", &target, 1, None);
    assert_eq!(
        r.received, 0,
        "h2c1 is unreachable with h2's tincan down:\n{}",
        r.raw
    );
    let t3 = lab.tincan_state("h1");
    assert_eq!(
        counter(&t3, "arp_answered_locally"),
        counter(&t2, "arp_answered_locally"),
        "a withdrawn binding must not be answered: {t3}"
    );
    assert!(
        counter(&t3, "arp_punted") > counter(&t2, "arp_punted"),
        "the request went to the controller instead: {t3}"
    );
    assert_eq!(
        lab.neigh_mac("h1c1", &target),
        None,
        "nobody answered for h2c1"
    );
}
