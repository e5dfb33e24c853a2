//! The TAP's two paths: with a virtio-net header (the default) and plain (`IPOP_NO_OFFLOAD=1`,
//! as on a kernel that refuses the header). Each names itself in tincan's log and carries
//! pings and a TCP transfer intact.

use ipop_lab_tests::{ip4, prefix, require_root, require_tools, Lab, LabOptions};

const TRANSFER_BYTES: u64 = 20 << 20;

fn carries_ping_and_tcp_on(path: &str, plain: bool) {
    if !require_root() {
        return;
    }
    require_tools(&["python3"]);
    let opts = LabOptions {
        hosts: 2,
        ..LabOptions::default()
    }
    .plain_tap(plain);
    let lab = Lab::up_with(&prefix(&format!("tap-{path}")), opts);
    for h in ["h1", "h2"] {
        let path_log = lab.dir().join(h).join("tincan.log");
        let log = std::fs::read_to_string(&path_log).unwrap_or_else(|e| format!("({e})"));
        assert!(
            log.contains(&format!("TAP path: {path}")),
            "{h}: tincan does not say it uses the {path} path:\n{log}"
        );
    }
    let r = lab.ping("h1c1", &ip4("h2c1"), 5, None);
    assert!(r.is_clean(), "{}", r.raw);
    let t = lab.tcp_transfer("h1c1", "h2c1", TRANSFER_BYTES);
    assert_eq!(t.received_bytes, TRANSFER_BYTES, "{t:?}");
    assert_eq!(t.received_sha256, t.sent_sha256);
    // And back: frames from the link side reach the TAP intact too.
    let t = lab.tcp_transfer("h2c1", "h1c1", TRANSFER_BYTES);
    assert_eq!(t.received_bytes, TRANSFER_BYTES, "{t:?}");
    assert_eq!(t.received_sha256, t.sent_sha256);
}

#[test]
fn the_plain_tap_path_is_logged_and_carries_ping_and_20_mb_of_tcp() {
    carries_ping_and_tcp_on("plain", true);
}

#[test]
fn the_virtio_header_tap_path_is_logged_and_carries_ping_and_20_mb_of_tcp() {
    carries_ping_and_tcp_on("virtio-net header", false);
}
