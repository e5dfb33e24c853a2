//! What a link costs and how fast a dead peer is noticed, as an operator sees it: an idle
//! overlay sends about one keepalive per peer every 15 s (not one a second), a peer that dies
//! while traffic flows to it is reported offline within seconds, and a peer that stops cleanly
//! (SIGTERM) is reported offline at once.

use ipop_lab_tests::{ip4, prefix, require_root, wait_until, Daemon, Lab, LabOptions, PingOpts};
use std::time::{Duration, Instant};

/// Packets h1 sent on its underlay interface so far.
fn underlay_tx(lab: &Lab) -> u64 {
    let n = lab.exec_ok("h1", &["cat", "/sys/class/net/u0/statistics/tx_packets"]);
    n.trim().parse().expect("a packet count")
}

fn uid(lab: &Lab, host: &str) -> String {
    lab.tincan_state(host)["_uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_idle_link_is_cheap_and_a_dead_peer_is_found_within_seconds() {
    if !require_root() {
        return;
    }
    let lab = Lab::up_with(
        &prefix("live"),
        LabOptions {
            hosts: 3,
            ..LabOptions::default()
        },
    );
    let (h2, h3) = (uid(&lab, "h2"), uid(&lab, "h3"));
    // Idle for 16 s: at most one keepalive per peer per 15 s (two peers), an answer or two
    // to the peers' own, and the underlay's ARP. One a second would be 32.
    std::thread::sleep(Duration::from_secs(2));
    let before = underlay_tx(&lab);
    std::thread::sleep(Duration::from_secs(16));
    let sent = underlay_tx(&lab) - before;
    assert!(sent <= 10, "h1 sent {sent} packets in 16 s of idle links");
    assert!(lab.peer_online("h1", &h2) && lab.peer_online("h1", &h3));
    let r = lab.ping("h1c1", &ip4("h2c1"), 2, None);
    assert!(r.is_clean(), "{}", r.raw);

    // h2's tincan dies without a word (SIGKILL) while h1's containers keep pinging it.
    let pid = std::fs::read_to_string(lab.dir().join("h2/tincan.pid")).unwrap();
    lab.exec_ok("h2", &["kill", "-KILL", pid.trim()]);
    let died = Instant::now();
    let pinger = std::thread::scope(|s| {
        let ping = s.spawn(|| {
            lab.ping_with(
                "h1c1",
                &ip4("h2c1"),
                &PingOpts {
                    interval: 0.2,
                    deadline_secs: Some(8),
                    ..PingOpts::new(40)
                },
            )
        });
        let down = wait_until(Duration::from_secs(8), || !lab.peer_online("h1", &h2));
        let took = died.elapsed();
        let _ = ping.join();
        (down, took)
    });
    assert!(
        pinger.0,
        "h1 still reports h2 online 8 s after it died under traffic"
    );
    assert!(
        pinger.1 < Duration::from_secs(6),
        "h2 reported offline only after {:?}",
        pinger.1
    );

    // h3 stops cleanly: h1 drops the link at once, idle or not.
    let stopped = Instant::now();
    lab.kill("h3", Daemon::Tincan);
    assert!(
        wait_until(Duration::from_secs(2), || !lab.peer_online("h1", &h3)),
        "h1 still reports h3 online 2 s after its tincan stopped"
    );
    let state = lab.tincan_state("h1");
    assert!(
        state["counters"]["links_closed_by_peer"].as_u64() >= Some(1),
        "{}",
        state["counters"]
    );
    eprintln!(
        "idle: {sent} underlay packets in 16 s; dead peer found in {:?}; clean stop seen in {:?}",
        pinger.1,
        stopped.elapsed()
    );
}
