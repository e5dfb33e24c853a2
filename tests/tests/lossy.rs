//! A lossy underlay (`LAB_LOSS`, `LAB_REORDER`, `LAB_DUP` of scripts/lab.sh): the switch
//! between the hosts drops 5 % of the link datagrams at random, holds 5 % back so that later
//! ones overtake them, and sends 2 % twice. TCP across the overlay still delivers 100 MB
//! intact, no link goes down, and no duplicated datagram becomes a duplicate frame: the
//! receiving tincan's replay window drops the copies (counted in `drop_replay`), and a ping
//! running through it all sees no duplicate reply. The same over plaintext links
//! (`"sec": false`), whose message counters have a replay window too, with 20 MB.

use ipop_lab_tests::*;
use std::time::Instant;

/// 100 MB: what the issue asks for; about 4 s at 5 % loss on an idle machine (`LOSSY_MB`
/// overrides it).
const DEFAULT_MB: u64 = 100;

fn counter(lab: &Lab, host: &str, name: &str) -> u64 {
    lab.tincan_state(host)["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("{host}: no counter {name}"))
}

/// Packets the switch's rule with `needle` matched (all of its copies summed).
fn switch_rule_packets(lab: &Lab, needle: &str) -> u64 {
    lab.exec_ok("sw", &["nft", "list", "ruleset"])
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| *x == "packets")?;
            w.get(i + 1)?.parse::<u64>().ok()
        })
        .sum()
}

#[test]
fn tcp_crosses_a_lossy_reordering_duplicating_underlay_intact() {
    let mb = std::env::var("LOSSY_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MB);
    lossy_transfer("lossy", true, mb);
}

#[test]
fn plaintext_links_deliver_no_duplicate_either() {
    lossy_transfer("lossyplain", false, 20);
}

fn lossy_transfer(tag: &str, sec: bool, mb: u64) {
    if !require_root() {
        return;
    }
    require_tools(&["nft", "tc", "python3"]);
    let lab = Lab::up_with(
        &prefix(tag),
        LabOptions {
            hosts: 2,
            wait_secs: 30,
            env: vec![
                ("LAB_LOSS".into(), "5".into()),
                ("LAB_REORDER".into(), "5".into()),
                ("LAB_DUP".into(), "2".into()),
                ("LAB_SEC".into(), if sec { "1" } else { "0" }.into()),
            ],
            ..LabOptions::default()
        },
    );
    let flaps_before = lab.link_flaps();
    let replay_before = counter(&lab, "h2", "drop_replay");

    // A ping through the whole transfer: every reply a frame, so a duplicated frame shows as
    // DUP!. Bounded: 300 requests 20 ms apart, 30 s at most.
    let t = Instant::now();
    let (transfer, ping) = std::thread::scope(|s| {
        let ping = s.spawn(|| {
            lab.ping_with(
                "h2c1",
                &ip4("h1c1"),
                &PingOpts {
                    interval: 0.02,
                    deadline_secs: Some(30),
                    ..PingOpts::new(300)
                },
            )
        });
        let transfer = lab.tcp_transfer("h1c1", "h2c1", mb << 20);
        (transfer, ping.join().expect("ping thread"))
    });
    let took = t.elapsed();

    let dropped = switch_rule_packets(&lab, "drop");
    let held = switch_rule_packets(&lab, "priority set");
    let copied = switch_rule_packets(&lab, "dup to");
    let replays = counter(&lab, "h2", "drop_replay") - replay_before;
    eprintln!(
        "lossy (sec {sec}): {mb} MB in {took:.1?} ({:.0} Mbit/s); switch dropped {dropped}, held back \
         {held}, copied {copied} datagrams; h2 dropped {replays} replays; ping {}/{} +{} dup",
        (mb * 8) as f64 / took.as_secs_f64(),
        ping.received,
        ping.transmitted,
        ping.duplicates
    );
    assert_eq!(transfer.received_bytes, mb << 20, "{transfer:?}");
    assert_eq!(transfer.sent_sha256, transfer.received_sha256);
    // The underlay did mistreat the transfer's datagrams...
    assert!(
        dropped > 20 * mb && held > 20 * mb && copied > 5 * mb,
        "{dropped} {held} {copied}"
    );
    // ... the copies reached tincan and were dropped there, ...
    assert!(
        replays > 0,
        "no duplicated datagram reached h2's replay window"
    );
    // ... and none became a frame.
    assert_eq!(ping.duplicates, 0, "{}", ping.raw);
    assert!(ping.received > 0, "{}", ping.raw);
    assert_eq!(lab.link_flaps(), flaps_before, "a link went down or up");
}
