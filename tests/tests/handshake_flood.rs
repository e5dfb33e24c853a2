//! A handshake flood from spoofed source addresses does not lock a real peer out: while h1 (as
//! an attacker who knows h2's public key, so its inits' mac1 is valid) floods h2 with inits and
//! 1-byte datagrams from a hundred and fifty addresses it does not own, far over h2's budget of
//! handshakes, h1's tincan restarts and links again within a few seconds, and h2's counters
//! show that the flood was answered with cookies and drops, not with key exchanges.

use ipop_lab_tests::{ip4, prefix, require_root, wait_until, Daemon, Lab, LabOptions};
use serde_json::Value;
use std::time::{Duration, Instant};

fn counter(state: &Value, name: &str) -> u64 {
    state["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {state}"))
}

/// Python for h1's namespace: for `secs` seconds, `rate` datagrams a second to h2's link port
/// through a raw socket (IP_HDRINCL), each from a random source in 10.99.0.100-249 (addresses
/// no host has) and a random port: three in four are inits with a valid mac1 for the public key
/// in argv[1] (random Noise bytes, no mac2), one in four a single byte. Prints the datagrams
/// sent and the seconds it took.
const FLOOD: &str = r#"
import hashlib, os, random, socket, struct, sys, time
pub = bytes.fromhex(sys.argv[1]); rate = int(sys.argv[2]); secs = float(sys.argv[3])
key = hashlib.blake2s(b"mac1----" + pub).digest()
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
dst = socket.inet_aton("10.99.0.2")
def datagram(src, sport, payload):
    udp = struct.pack("!HHHH", sport, 5900, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    return ip + udp
sent, start = 0, time.time()
while True:
    t = time.time() - start
    if t >= secs:
        break
    while sent < int(t * rate):
        src = bytes([10, 99, 0, random.randrange(100, 250)])
        if sent % 4 == 3:
            payload = b"\x05"
        else:
            body = bytes([5, 0, 0, 0]) + os.urandom(4 + 125)
            payload = body + hashlib.blake2s(body, key=key, digest_size=16).digest() + bytes(16)
        s.sendto(datagram(src, random.randrange(1024, 65536), payload), ("10.99.0.2", 0))
        sent += 1
    time.sleep(0.002)
print(sent, time.time() - start)
"#;

#[test]
fn a_spoofed_handshake_flood_does_not_keep_a_restarted_peer_from_linking() {
    if !require_root() {
        return;
    }
    let lab = Lab::up_with(
        &prefix("hflood"),
        LabOptions {
            hosts: 2,
            wait_links: true,
            ..LabOptions::default()
        },
    );
    let before = lab.tincan_state("h2");
    let fpr = before["_fpr"]
        .as_str()
        .expect("h2's fingerprint")
        .to_string();
    let (rate, secs) = (4000u32, 6.0f64);
    let (rate_s, secs_s) = (rate.to_string(), secs.to_string());
    let args = ["python3", "-c", FLOOD, &fpr, &rate_s, &secs_s];
    let (flood, linked_after) = std::thread::scope(|s| {
        let flood = s.spawn(|| lab.exec_ok("h1", &args));
        // A second into the flood, h1's tincan restarts: its link to h2 starts over with a
        // handshake that h2, under load, answers with a cookie first.
        std::thread::sleep(Duration::from_secs(1));
        lab.kill("h1", Daemon::Tincan);
        lab.start("h1", Daemon::Tincan);
        let t0 = Instant::now();
        // Until h1 is up again (its tincan reports the link online) and h2 shows it confirmed.
        let up = wait_until(Duration::from_secs(10), || {
            lab.links_online("h1") == 1
                && counter(&lab.tincan_state("h2"), "handshakes_completed")
                    > counter(&before, "handshakes_completed")
        });
        let linked_after = up.then(|| t0.elapsed());
        (flood.join().unwrap(), linked_after)
    });
    let mut f = flood.split_whitespace();
    let sent: u64 = f
        .next()
        .and_then(|n| n.parse().ok())
        .expect("datagrams sent");
    let took: f64 = f.next().and_then(|n| n.parse().ok()).expect("seconds");
    let after = lab.tincan_state("h2");
    let h1 = lab.tincan_state("h1");
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    let inits = sent - sent / 4;
    println!(
        "flood: {sent} datagrams in {took:.1} s ({:.0}/s, {inits} inits); h2: {} cookie replies, \
         {} handshakes refused after a key exchange (drop_auth), {} completed, {} rate-limited, \
         {} 1-byte drops; h1 linked {linked_after:?} after its restart, with {} cookie(s)",
        sent as f64 / took,
        delta("cookie_replies_sent"),
        delta("drop_auth"),
        delta("handshakes_completed"),
        delta("drop_handshake_rate"),
        delta("drop_bad_link_message"),
        counter(&h1, "cookie_replies_received"),
    );
    assert!(
        sent as f64 / took > 1_000.0,
        "the flood was too slow to test anything: {sent} in {took:.1} s"
    );
    let linked_after = linked_after.unwrap_or_else(|| {
        panic!(
            "h1 did not link again during the flood:\n{}\nh2 {}",
            lab.status(),
            after["counters"]
        )
    });
    assert!(
        linked_after < Duration::from_secs(5),
        "h1 took {linked_after:?} to link again"
    );
    // It linked while the flood went on (the flood began a second before the restart).
    assert!(linked_after.as_secs_f64() + 1.0 < took);
    // The flood was answered with cookies: only the inits before h2 went under load (at most
    // a second's worth of its load rate, 100) cost a key exchange, each refused after it.
    assert!(counter(&after, "handshake_load_periods") >= 1, "{after}");
    assert!(delta("drop_auth") <= 150, "{}", after["counters"]);
    assert!(
        delta("cookie_replies_sent") * 10 >= inits * 8,
        "{inits} inits, {} cookie replies",
        delta("cookie_replies_sent")
    );
    assert!(delta("drop_bad_link_message") * 10 >= (sent / 4) * 9);
    // h1 got there through a cookie.
    assert!(counter(&h1, "cookie_replies_received") >= 1, "{h1}");
    assert!(lab.ping("h1c1", &ip4("h2c1"), 2, None).received >= 1);
}
