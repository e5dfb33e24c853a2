//! Enrolment without XMPP, as an operator does it: `ipopctl invite` on one host prints a line,
//! `ipopctl join LINE` on another adds that node to its config, a reload (SIGHUP) links them.

use ipop_lab_tests::{bin_dir, ip4, prefix, require_root, underlay_ip, wait_until, Daemon, Lab};
use serde_json::Value;
use std::process::Output;
use std::time::Duration;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ipopctl -c <host's config> ARGS` inside the host's namespace.
fn ipopctl(lab: &Lab, host: &str, args: &[&str]) -> Output {
    let bin = bin_dir().join("ipopctl");
    let config = lab.dir().join(host).join("config.json");
    let mut argv = vec![bin.to_str().unwrap(), "-c", config.to_str().unwrap()];
    argv.extend_from_slice(args);
    lab.exec(host, &argv)
}

fn reload(lab: &Lab, host: &str) {
    let pid = std::fs::read_to_string(lab.dir().join(host).join("controller.pid")).unwrap();
    lab.exec_ok(host, &["kill", "-HUP", pid.trim()]);
}

fn peer_ips(lab: &Lab, host: &str) -> Vec<String> {
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.dir().join(host).join("config.json")).unwrap(),
    )
    .unwrap();
    cfg["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ip4"].as_str().unwrap().to_string())
        .collect()
}

/// Removes `gone` from `host`'s config `peers` and reloads.
fn forget(lab: &Lab, host: &str, gone: &str) {
    let path = lab.dir().join(host).join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["peers"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["ip4"] != ip4(gone));
    std::fs::write(&path, cfg.to_string()).unwrap();
    reload(lab, host);
}

fn linked(lab: &Lab, host: &str, other: &str) -> bool {
    let uid = lab.tincan_state(other)["_uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    lab.peer_online(host, &uid)
}

#[test]
fn invite_and_join_link_two_hosts_that_did_not_know_each_other() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("join"), 3, true);
    forget(&lab, "h1", "h3");
    forget(&lab, "h3", "h1");
    assert!(
        wait_until(Duration::from_secs(10), || !linked(&lab, "h1", "h3")),
        "h1 and h3 still linked after leaving each other's configs"
    );

    // h3's invitation: its only underlay address (the bridge and TAP are left out) and key.
    let out = ipopctl(&lab, "h3", &["invite"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout).trim().to_string();
    let fpr = lab.tincan_state("h3")["_fpr"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        line.starts_with("ipop-peer:")
            && line.contains(&format!("ip4={}", ip4("h3")))
            && line.contains(&format!("endpoint={}:", underlay_ip("h3"))),
        "{line}"
    );
    if !fpr.is_empty() {
        assert!(line.contains(&fpr), "{line} lacks h3's key {fpr}");
    }

    // Joined on h1; then the other way; each reloads.
    let out = ipopctl(&lab, "h1", &["join", &line]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("added peer"),
        "{}",
        text(&out.stderr)
    );
    assert!(peer_ips(&lab, "h1").contains(&ip4("h3")));
    let again = ipopctl(&lab, "h1", &["join", &line]);
    assert!(again.status.success() && text(&again.stderr).contains("nothing changed"));
    let back = ipopctl(&lab, "h1", &["invite"]);
    assert!(back.status.success(), "{}", text(&back.stderr));
    let back = text(&back.stdout).trim().to_string();
    let out = ipopctl(&lab, "h3", &["join", &back]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    reload(&lab, "h1");
    reload(&lab, "h3");
    assert!(
        wait_until(Duration::from_secs(15), || linked(&lab, "h1", "h3")),
        "no link after invite/join and reload:\n{}",
        lab.log_tail("h1", Daemon::Controller)
    );
    let r = lab.ping("h1c1", &ip4("h3c1"), 3, None);
    assert!(r.is_clean(), "{}", r.raw);

    // A node's own line, or a damaged one, changes nothing and says why.
    let before = std::fs::read_to_string(lab.dir().join("h1/config.json")).unwrap();
    let own = ipopctl(&lab, "h1", &["join", &back]);
    assert_eq!(own.status.code(), Some(1));
    assert!(text(&own.stderr).contains("own"), "{}", text(&own.stderr));
    let cut = ipopctl(&lab, "h1", &["join", &line[..line.len() - 5]]);
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut.stderr));
    assert_eq!(
        std::fs::read_to_string(lab.dir().join("h1/config.json")).unwrap(),
        before
    );
}
