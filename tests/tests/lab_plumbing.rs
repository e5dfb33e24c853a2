//! The lab itself, without the daemons: the namespaces, bridges, addresses and configs that
//! `scripts/lab.sh up` builds, and that `down` leaves nothing behind.

use ipop_lab_tests::{ip4, ip6, prefix, require_root, underlay_ip, Lab, LabOptions, OVERLAY_MTU};

#[test]
fn lab_builds_the_topology_and_down_removes_it() {
    if !require_root() {
        return;
    }
    let p = prefix("plumbing");
    let lab = Lab::up_with(
        &p,
        LabOptions {
            hosts: 3,
            daemons: false,
            ..LabOptions::default()
        },
    );

    // Containers on one host reach each other through lxcbr0, over IPv4 and IPv6, once each.
    for h in lab.host_names() {
        let (c1, c2) = (format!("{h}c1"), format!("{h}c2"));
        let r = lab.ping(&c1, &ip4(&c2), 2, None);
        assert!(r.is_clean(), "{c1} -> {c2}:\n{}", r.raw);
        let r = lab.ping6(&c2, &ip6(&c1), 2, None);
        assert!(r.is_clean(), "{c2} -> {c1} (IPv6):\n{}", r.raw);
        // ... and their host's bridge address.
        let r = lab.ping(&c1, &ip4(&h), 1, None);
        assert!(r.is_clean(), "{c1} -> {h}'s lxcbr0:\n{}", r.raw);
    }

    // The containers' eth0 is at the overlay MTU (LXC's 1500), as is the TAP.
    let mtu = lab.exec_ok("h2c1", &["cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), OVERLAY_MTU.to_string());

    // Hosts reach each other over the underlay switch.
    let r = lab.ping("h1", &underlay_ip("h3"), 1, None);
    assert!(r.is_clean(), "h1 -> h3 underlay:\n{}", r.raw);

    // Without the overlay daemons nothing crosses from one host's lxcbr0 to another's.
    let r = lab.ping("h1c1", &ip4("h2c1"), 1, None);
    assert_eq!(
        r.received, 0,
        "h1c1 reached h2c1 with no overlay:\n{}",
        r.raw
    );

    // Each host got a config naming the other hosts as peers.
    let cfg = std::fs::read_to_string(lab.dir().join("h2/config.json")).expect("h2 config");
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("h2 config is JSON");
    assert_eq!(cfg["ip4"], "10.0.3.2");
    assert_eq!(cfg["bridge"], "lxcbr0");
    let peers: Vec<&str> = cfg["peers"]
        .as_array()
        .expect("peers is a list")
        .iter()
        .map(|p| p["endpoint"].as_str().expect("endpoint"))
        .collect();
    assert_eq!(peers, ["10.99.0.1:5900", "10.99.0.3:5900"]);

    let dir = lab.dir().to_path_buf();
    let out = lab.down();
    assert!(out.status.success(), "down failed: {out:?}");
    let left: Vec<String> = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list")
            .stdout,
    )
    .lines()
    .filter(|l| l.starts_with(&format!("{p}-")))
    .map(str::to_string)
    .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(!dir.exists(), "{} left behind", dir.display());

    // A second down, with nothing left, succeeds too.
    let again = ipop_lab_tests::lab_sh(&p, &LabOptions::default(), &["down"]);
    assert!(again.status.success(), "second down failed: {again:?}");
}
