//! Storm control: a broadcast storm from one host's container is cut to the configured rate
//! where it enters the overlay, unicast between the hosts keeps flowing meanwhile, and a peer
//! that does not limit its own floods is limited by every receiver.

use ipop_lab_tests::{ip4, prefix, require_root, wait_until, Daemon, Lab, LabOptions, PingOpts};
use serde_json::Value;
use std::time::Duration;

/// Sends broadcast frames of ethertype 0x88b5 (local experimental) on eth0 as fast as it can
/// for argv[1] seconds; prints how many.
const STORM: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
src = open("/sys/class/net/eth0/address").read().strip()
frame = b"\xff" * 6 + bytes.fromhex(src.replace(":", "")) + b"\x88\xb5" + b"storm" * 12
end, n = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    for _ in range(100):
        try:
            s.send(frame)
            n += 1
        except OSError:
            pass
print(n)
"#;

/// Counts frames of ethertype 0x88b5 arriving on eth0 for argv[1] seconds.
const COUNT: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind(("eth0", 0))
s.settimeout(0.2)
end, n = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    try:
        s.recv(2048)
        n += 1
    except socket.timeout:
        pass
print(n)
"#;

fn counter(state: &Value, name: &str) -> u64 {
    state["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {}", state["counters"]))
}

/// A storm of `secs` from h1c1 while h2c1 counts what arrives and h2c2 pings h3c2: (frames
/// sent, frames received at h2c1). (h1's own bridge carries the storm at full rate, as any
/// switch would: its other containers' traffic competes with it there, before the overlay.)
fn storm(lab: &Lab, secs: u32) -> (u64, u64) {
    std::thread::scope(|s| {
        let count = s.spawn(|| {
            let out = lab.exec_ok(
                "h2c1",
                &[
                    "timeout",
                    "20",
                    "python3",
                    "-c",
                    COUNT,
                    &(secs + 2).to_string(),
                ],
            );
            out.trim().parse::<u64>().expect("a count")
        });
        let sent = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            let out = lab.exec_ok(
                "h1c1",
                &["timeout", "20", "python3", "-c", STORM, &secs.to_string()],
            );
            out.trim().parse::<u64>().expect("a count")
        });
        // Unicast between the other hosts during the storm.
        std::thread::sleep(Duration::from_millis(800));
        let opts = PingOpts {
            interval: 0.1,
            ..PingOpts::new(10)
        };
        let r = lab.ping_with("h2c2", &ip4("h3c2"), &opts);
        assert!(r.is_clean(), "h2c2 -> h3c2 during the storm:\n{}", r.raw);
        (sent.join().unwrap(), count.join().unwrap())
    })
}

#[test]
fn a_broadcast_storm_is_cut_to_its_rate_and_unicast_keeps_flowing() {
    if !require_root() {
        return;
    }
    let lab = Lab::up_with(
        &prefix("storm"),
        LabOptions {
            hosts: 3,
            ..LabOptions::default()
        },
    );
    // The default: 1,000 broadcast frames per second into the overlay, a second's burst.
    let secs = 3;
    let (sent, got) = storm(&lab, secs);
    let h1 = lab.tincan_state("h1");
    assert!(sent > 10_000, "the storm sent only {sent} frames");
    assert!(
        counter(&h1, "storm_drop_broadcast") > 0,
        "{}",
        h1["counters"]
    );
    let limit = 1_000 * (u64::from(secs) + 1) + 1_000;
    assert!(
        got > 500 && got <= limit,
        "h2c1 got {got} of {sent} storm frames (limit {limit})"
    );

    // h1 stops limiting its floods (as a peer without storm control would): h2 and h3 limit
    // what it sends them.
    let path = lab.dir().join("h1/config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["storm_broadcast_pps"] = 0.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let pid = std::fs::read_to_string(lab.dir().join("h1/controller.pid")).unwrap();
    lab.exec_ok("h1", &["kill", "-HUP", pid.trim()]);
    assert!(
        wait_until(Duration::from_secs(5), || {
            lab.log_tail("h1", Daemon::Tincan)
                .contains("storm control: broadcast 0")
        }),
        "h1's tincan did not take the new rate:\n{}",
        lab.log_tail("h1", Daemon::Controller)
    );
    let before = counter(&lab.tincan_state("h1"), "storm_drop_broadcast");
    let (sent, got) = storm(&lab, secs);
    assert_eq!(
        counter(&lab.tincan_state("h1"), "storm_drop_broadcast"),
        before,
        "h1 still limits"
    );
    let h2 = lab.tincan_state("h2");
    assert!(
        counter(&h2, "storm_in_drop_broadcast") > 0,
        "{}",
        h2["counters"]
    );
    assert!(
        got > 500 && got <= limit,
        "h2c1 got {got} of {sent} storm frames from an unlimited peer (limit {limit})"
    );
}
