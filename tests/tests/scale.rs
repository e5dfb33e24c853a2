//! A 12-host full mesh (the reduced form of `scripts/scale.sh 32`): every container reaches
//! every other, and an idle link costs at most one datagram every 10 s each way while still
//! sending one at least every 25 s (to hold NAT bindings). A rekey (every 120 s by default)
//! adds two datagrams one way and one the other; `scripts/scale.sh 32` measures idle windows
//! with rekeys in them (README.md, "Scale: 32 hosts").

use ipop_lab_tests::*;
use std::time::{Duration, Instant};

const HOSTS: u8 = 12;
/// The idle window: long enough for every link's keepalive (every 15 s) to go out at least
/// once each way.
const WINDOW: Duration = Duration::from_secs(30);
/// At most one datagram every 10 s each way (README.md, "Scale").
const MAX_PER_LINK: u64 = WINDOW.as_secs() / 10;

#[test]
fn twelve_hosts_reach_each_other_and_idle_links_stay_quiet() {
    if !require_root() {
        return;
    }
    require_tools(&["nft"]);
    let started = Instant::now();
    let lab = Lab::up_with(
        &prefix("scale12"),
        LabOptions {
            hosts: HOSTS,
            wait_secs: 90,
            ..LabOptions::default()
        },
    );
    let up = started.elapsed();

    // Every pair, all 132 at once, each ping bounded (3 requests, 10 s at most).
    let opts = PingOpts {
        deadline_secs: Some(10),
        ..PingOpts::new(3)
    };
    let t = Instant::now();
    let results = lab.ping_all_pairs(&opts);
    let pinged = t.elapsed();
    assert_eq!(results.len(), usize::from(HOSTS) * usize::from(HOSTS - 1));
    let unreached: Vec<String> = results
        .iter()
        .filter(|(_, _, r)| r.received == 0)
        .map(|(f, t, r)| format!("{f} -> {t}: {}", r.raw.lines().last().unwrap_or("")))
        .collect();
    assert!(
        unreached.is_empty(),
        "{} of {} pairs never answered:\n{}",
        unreached.len(),
        results.len(),
        unreached.join("\n")
    );
    let dups: Vec<String> = results
        .iter()
        .filter(|(_, _, r)| r.duplicates > 0)
        .map(|(f, t, r)| format!("{f} -> {t}: {} duplicates", r.duplicates))
        .collect();
    assert!(dups.is_empty(), "duplicate replies:\n{}", dups.join("\n"));

    // Idle: no traffic in the containers. Every link, each way, within the bound.
    lab.count_link_datagrams();
    std::thread::sleep(Duration::from_secs(2)); // the pings' last answers and keepalives
    let before: Vec<LinkDatagrams> = lab
        .host_names()
        .iter()
        .map(|h| lab.link_datagrams(h))
        .collect();
    let flaps_before = lab.link_flaps();
    std::thread::sleep(WINDOW);
    let mut over = Vec::new();
    let mut silent = Vec::new();
    let mut counts = Vec::new();
    for (i, h) in lab.host_names().iter().enumerate() {
        let after = lab.link_datagrams(h);
        for j in (1..=HOSTS).filter(|&j| usize::from(j) != i + 1) {
            // The lab's underlay: host J at 10.99.0.J.
            let peer = format!("10.99.0.{j}");
            let n = after.tx.get(&peer).copied().unwrap_or(0)
                - before[i].tx.get(&peer).copied().unwrap_or(0);
            counts.push(n);
            if n > MAX_PER_LINK {
                over.push(format!("{h} -> {peer}: {n} datagrams in {WINDOW:?}"));
            }
            if n == 0 {
                silent.push(format!("{h} -> {peer}"));
            }
        }
    }
    counts.sort_unstable();
    let total: u64 = counts.iter().sum();
    eprintln!(
        "scale: {HOSTS} hosts up in {up:.1?}, {} pairs pinged in {pinged:.1?}; idle {WINDOW:?}: \
         {} link directions, {total} datagrams (min {}, median {}, max {} per link)",
        results.len(),
        counts.len(),
        counts[0],
        counts[counts.len() / 2],
        counts[counts.len() - 1],
    );
    assert!(
        over.is_empty(),
        "idle links over {MAX_PER_LINK} datagrams in {WINDOW:?}:\n{}",
        over.join("\n")
    );
    assert!(
        silent.is_empty(),
        "idle links that sent nothing in {WINDOW:?} (NAT bindings would expire):\n{}",
        silent.join("\n")
    );
    assert_eq!(
        lab.link_flaps(),
        flaps_before,
        "links went up or down while idle"
    );
}
