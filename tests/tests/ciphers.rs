//! A few hundred MB of TCP cross the overlay intact in both directions with each cipher and on
//! plaintext links (`"sec": false`), at the containers' default MTU, through the offload path.

use ipop_lab_tests::{prefix, require_root, require_tools, Lab, LabOptions};

const BULK_BYTES: u64 = 200 << 20;

fn bulk_both_ways(tag: &str, env: &[(&str, &str)], cipher: Option<&str>) {
    if !require_root() {
        return;
    }
    require_tools(&["python3"]);
    let lab = Lab::up_with(
        &prefix(tag),
        LabOptions {
            hosts: 2,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..LabOptions::default()
        },
    );
    let state = lab.tincan_state("h1");
    let peer = &state["peers"][0];
    assert_eq!(
        peer["cipher"].as_str(),
        cipher,
        "the link's cipher: {peer:#}"
    );
    for (from, to) in [("h1c1", "h2c1"), ("h2c1", "h1c1")] {
        let t = lab.tcp_transfer(from, to, BULK_BYTES);
        assert_eq!(t.received_bytes, BULK_BYTES, "{from} -> {to}: {t:?}");
        assert_eq!(t.received_sha256, t.sent_sha256, "{from} -> {to}");
    }
}

#[test]
fn two_hundred_mb_each_way_with_aes_256_gcm() {
    bulk_both_ways(
        "c-aes",
        &[("LAB_CIPHER", "aes-256-gcm")],
        Some("aes-256-gcm"),
    );
}

#[test]
fn two_hundred_mb_each_way_with_chacha20_poly1305() {
    bulk_both_ways(
        "c-chacha",
        &[("LAB_CIPHER", "chacha20-poly1305")],
        Some("chacha20-poly1305"),
    );
}

#[test]
fn two_hundred_mb_each_way_in_plaintext() {
    bulk_both_ways("c-plain", &[("LAB_SEC", "0")], None);
}
