//! `ipopctl`, the operator's tool, against the real daemons in the lab: the status table names
//! each peer by its ip4 with its path, `--json` says what the daemons' `get_state` says, and
//! "what is wrong" names an unreachable peer and a silent daemon. The key commands and the
//! errors for an absent daemon need no root.

use ipop_lab_tests::{bin_dir, ip4, prefix, require_root, underlay_ip, wait_until, Daemon, Lab};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

fn ipopctl_bin() -> PathBuf {
    let p = bin_dir().join("ipopctl");
    assert!(
        p.is_file(),
        "{} does not exist: run `cargo build --release --workspace` first",
        p.display()
    );
    p
}

fn ipopctl(args: &[&str]) -> Output {
    Command::new(ipopctl_bin())
        .args(args)
        .output()
        .expect("ipopctl runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit code 1 and one line on stderr containing every needle.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    ipop_lab_tests::assert_one_line_error(o, 1, needles);
}

/// ipopctl, which must be done within 3 s: each daemon has 1 s to answer.
fn ipopctl_bounded(args: &[&str]) -> Output {
    let start = std::time::Instant::now();
    let o = ipopctl(args);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "ipopctl {args:?} took {took:?}"
    );
    o
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ipopctl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn genkey_writes_a_0600_key_once_and_pubkey_reads_its_fingerprint() {
    let dir = tmp_dir("keys");
    let key = dir.join("node.key");
    let key_s = key.to_str().unwrap();
    let o = ipopctl(&["genkey", key_s]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let fpr = text(&o.stdout).trim().to_string();
    assert_eq!(fpr.len(), 64, "{fpr}");
    assert!(fpr.bytes().all(|b| b.is_ascii_hexdigit()), "{fpr}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read(&key).unwrap();

    let o = ipopctl(&["pubkey", key_s]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), fpr);
    // ipop-tincan reads the same file to the same fingerprint.
    let tincan = bin_dir().join("ipop-tincan");
    if tincan.is_file() {
        let o = Command::new(tincan)
            .args(["--key", key_s])
            .output()
            .unwrap();
        assert_eq!(text(&o.stdout).trim(), fpr);
    }

    let o = ipopctl(&["genkey", key_s]);
    assert_one_line_error(&o, &[key_s, "already exists"]);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        written,
        "the key was overwritten"
    );

    // Not through a symlink either, even a dangling one.
    let target = dir.join("elsewhere.key");
    let link = dir.join("link.key");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = ipopctl(&["genkey", link.to_str().unwrap()]);
    assert_one_line_error(&o, &["link.key"]);
    assert!(!target.exists(), "genkey followed the symlink");

    let missing = dir.join("missing.key");
    let o = ipopctl(&["pubkey", missing.to_str().unwrap()]);
    assert_one_line_error(&o, &["missing.key", "does not exist"]);
    assert!(!missing.exists(), "pubkey created a key");

    std::fs::write(&missing, "not a key\n").unwrap();
    std::fs::set_permissions(&missing, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = ipopctl(&["pubkey", missing.to_str().unwrap()]);
    assert_one_line_error(&o, &["missing.key", "64 hex digits"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_daemon_that_does_not_answer_is_one_line_and_exit_1_within_a_bound() {
    // Ports bound and released: nothing listens there.
    let free = || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string()
    };
    let (t, c) = (free(), free());
    let o = ipopctl_bounded(&["--tincan-port", &t, "--controller-port", &c, "status"]);
    assert_one_line_error(
        &o,
        &[
            &format!("tincan not running on 127.0.0.1:{t}"),
            &format!("controller not running on 127.0.0.1:{c}"),
        ],
    );
    let o = ipopctl(&["--tincan-port", &t, "peers"]);
    assert_one_line_error(&o, &[&format!("tincan not running on 127.0.0.1:{t}")]);
    // A port that is bound but never answers: the bounded wait.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let o = ipopctl_bounded(&["--controller-port", &port, "neigh"]);
    assert_one_line_error(
        &o,
        &[&format!("controller not answering on 127.0.0.1:{port}")],
    );
    let o = ipopctl(&["-c", "/nonexistent/ipop.json", "status"]);
    assert_one_line_error(&o, &["/nonexistent/ipop.json", "cannot read"]);

    let o = ipopctl(&["-V"]);
    assert!(o.status.success());
    assert_eq!(
        text(&o.stdout).trim(),
        format!("ipopctl {}", env!("CARGO_PKG_VERSION"))
    );
    let o = ipopctl(&["--help"]);
    assert!(o.status.success());
    for sub in ["status", "peers", "macs", "neigh", "genkey", "pubkey"] {
        assert!(text(&o.stdout).contains(sub), "{sub} missing from --help");
    }
}

/// The lab's ipopctl in host `host`, with the host's config.
fn ctl(lab: &Lab, host: &str, args: &[&str]) -> Output {
    let bin = ipopctl_bin();
    let cfg = lab.dir().join(host).join("config.json");
    let mut all = vec![
        "timeout",
        "10",
        bin.to_str().unwrap(),
        "-c",
        cfg.to_str().unwrap(),
    ];
    all.extend(args);
    lab.exec(host, &all)
}

fn ctl_json(lab: &Lab, host: &str, args: &[&str]) -> Value {
    let o = ctl(lab, host, args);
    assert!(o.status.success(), "ipopctl {args:?}: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("ipopctl {args:?}: not JSON ({e}):\n{}", text(&o.stdout)))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn status_names_each_peer_with_its_path_and_says_what_is_wrong() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("ipopctl"), 2, true);
    // Traffic, so that MACs and neighbour entries exist.
    let r = lab.ping("h1c1", &ip4("h2c1"), 2, None);
    assert!(r.is_clean(), "{}", r.raw);
    let peer_ip = ip4("h2");
    let peer_ep = format!("{}:5900", underlay_ip("h2"));

    // The table: the peer by its ip4, online, its path and endpoint.
    let o = ctl(&lab, "h1", &["status"]);
    let table = text(&o.stdout);
    assert!(o.status.success(), "{table}{}", text(&o.stderr));
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{peer_ip} ")))
        .unwrap_or_else(|| panic!("no row for {peer_ip}:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[1..4],
        ["online", "static", peer_ep.as_str()],
        "{table}"
    );
    assert!(
        table.starts_with(&format!("node {} ", ip4("h1"))),
        "{table}"
    );
    assert!(table.contains("bridge lxcbr0"), "{table}");
    assert!(table.ends_with("nothing wrong\n"), "{table}");
    // The container behind h2 in the neighbour table, owned by h2.
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("{} ", ip4("h2c1"))) && l.contains(&peer_ip)),
        "{table}"
    );

    // --json, field by field against tincan's get_state taken just before and just after.
    let before = lab.tincan_state("h1");
    let j = ctl_json(&lab, "h1", &["status", "--json"]);
    let after = lab.tincan_state("h1");
    let controller = lab.controller_state("h1");
    assert_eq!(j["format"], 1);
    assert_eq!(j["problems"], serde_json::json!([]), "{j}");
    assert_eq!(j["tincan"]["address"], "127.0.0.1:5800");
    assert_eq!(j["tincan"]["error"], Value::Null);
    assert_eq!(j["controller"]["error"], Value::Null);
    let node = &j["node"];
    for (mine, theirs) in [
        ("uid", "_uid"),
        ("ip4", "_ip4"),
        ("fpr", "_fpr"),
        ("mac", "_mac"),
        ("tap", "tap"),
        ("mtu", "mtu"),
        ("sec", "sec"),
        ("controller_alive", "controller_alive"),
        ("version", "version"),
    ] {
        assert_eq!(node[mine], before[theirs], "node.{mine}");
    }
    assert_eq!(node["bridge"], controller["bridge"]);
    assert_eq!(node["xmpp"], controller["xmpp"]);
    assert_eq!(node["tincan_alive"], true);
    let state = &j["tincan"]["state"];
    for key in [
        "_uid",
        "_ip4",
        "_fpr",
        "_mac",
        "tap",
        "boot_id",
        "link_port",
        "sec",
    ] {
        assert_eq!(state[key], before[key], "tincan.state.{key}");
    }
    assert_eq!(j["controller"]["state"]["uid"], controller["uid"]);

    let peers = j["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{j}");
    let p = &peers[0];
    let (b, a) = (&before["peers"][0], &after["peers"][0]);
    assert_eq!(p["name"], peer_ip.as_str());
    assert_eq!(p["ip4"], peer_ip.as_str());
    assert_eq!(p["uid"], b["uid"]);
    let link = &p["link"];
    assert_eq!(
        link, &state["peers"][0],
        "peers[0].link is tincan's peer_state"
    );
    for key in [
        "uid",
        "status",
        "path",
        "endpoint",
        "security",
        "fpr",
        "candidates",
    ] {
        assert_eq!(link[key], b[key], "link.{key}");
    }
    assert_eq!(link["status"], "online");
    assert_eq!(link["path"], "static");
    assert_eq!(link["endpoint"], peer_ep.as_str());
    for key in [
        "tx_frames",
        "tx_bytes",
        "rx_frames",
        "rx_bytes",
        "handshakes",
        "ups",
        "age_ms",
    ] {
        let (lo, x, hi) = (u64_of(b, key), u64_of(link, key), u64_of(a, key));
        assert!(lo <= x && x <= hi, "link.{key}: {lo} <= {x} <= {hi}");
    }
    assert!(u64_of(link, "rx_frames") > 0, "{link}");
    // Null on the side that answered the handshake: the RTT is our own handshake's.
    assert_eq!(link["rtt_ms"], b["rtt_ms"], "link.rtt_ms");
    assert!(u64_of(link, "last_handshake_ms") <= u64_of(a, "last_handshake_ms"));
    assert!(u64_of(link, "last_rx_ms") < 4_000, "{link}");
    assert_eq!(p["controller"]["online"], true);
    assert_eq!(p["controller"]["uid"], b["uid"]);
    let h2c1_mac = lab.mac_of("h2c1", "eth0");
    assert!(
        p["macs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == h2c1_mac.as_str()),
        "{p}"
    );
    assert!(
        p["neigh"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == ip4("h2c1").as_str()),
        "{p}"
    );

    // The subsets.
    let peers = ctl_json(&lab, "h1", &["peers", "--json"]);
    assert_eq!(peers[0]["uid"], b["uid"]);
    let macs = ctl_json(&lab, "h1", &["macs", "--json"]);
    assert!(
        macs.as_array()
            .unwrap()
            .iter()
            .any(|m| m["mac"] == h2c1_mac.as_str() && m["peer"] == peer_ip.as_str()),
        "{macs}"
    );
    let neigh = ctl_json(&lab, "h1", &["neigh", "--json"]);
    assert!(
        neigh
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["ip"] == ip4("h2c1").as_str()
                && n["mac"] == h2c1_mac.as_str()
                && n["owner"] == b["uid"]),
        "{neigh}"
    );
    let o = ctl(&lab, "h1", &["macs"]);
    let macs_table = text(&o.stdout);
    assert!(
        macs_table
            .lines()
            .any(|l| l.starts_with(&h2c1_mac) && l.contains(&peer_ip)),
        "{macs_table}"
    );

    // h2 gone: the line saying so appears once the link is down (4 s of silence).
    lab.kill("h2", Daemon::Controller);
    lab.kill("h2", Daemon::Tincan);
    let want = format!("peer {peer_ip}: no handshake answer for ");
    let mut last = String::new();
    let seen = wait_until(Duration::from_secs(15), || {
        last = text(&ctl(&lab, "h1", &["status"]).stdout);
        last.lines().any(|l| l.trim_start().starts_with(&want))
    });
    assert!(seen, "no {want:?} line within 15 s:\n{last}");
    let row = last
        .lines()
        .find(|l| l.starts_with(&format!("{peer_ip} ")))
        .unwrap();
    assert!(row.split_whitespace().nth(1) == Some("offline"), "{last}");
    let j = ctl_json(&lab, "h1", &["status", "--json"]);
    let problems: Vec<&str> = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&want) && p.ends_with("from 1 candidate")
                || p.starts_with(&want) && p.ends_with(&peer_ep)),
        "{problems:?}"
    );

    // h1's controller gone: status still shows tincan's side, names the silent daemon, exit 1.
    lab.kill("h1", Daemon::Controller);
    let o = ctl(&lab, "h1", &["status"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("\n  controller not running on 127.0.0.1:30000"),
        "{out}"
    );
    assert!(out.contains(&format!("\n{peer_ip} ")), "{out}");
}

/// `ipopctl log-level`: root changes both daemons' level at run time (their logs say so);
/// another user changes nothing and is told why. The daemons run without RUST_LOG here,
/// as under the units.
#[test]
fn log_level_changes_both_daemons_for_root_only() {
    if !require_root() {
        return;
    }
    let lab = Lab::up_with(
        &prefix("loglvl"),
        ipop_lab_tests::LabOptions {
            hosts: 2,
            env: vec![("RUST_LOG".into(), String::new())],
            ..ipop_lab_tests::LabOptions::default()
        },
    );
    let bin = ipopctl_bin();
    let config = lab.dir().join("h1/config.json");
    let (bin, config) = (bin.to_str().unwrap(), config.to_str().unwrap());
    let out = lab.exec("h1", &[bin, "-c", config, "log-level", "debug"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "tincan: debug\ncontroller: debug\n");
    for d in [Daemon::Tincan, Daemon::Controller] {
        let log = lab.log_tail("h1", d);
        assert!(log.contains("log level now DEBUG"), "{d:?}: {log}");
    }
    // As another user (uid 4242; the daemons run as nobody or ipop): refused by both,
    // nothing changes.
    let out = lab.exec(
        "h1",
        &[
            "setpriv",
            "--reuid=4242",
            "--regid=4242",
            "--clear-groups",
            bin,
            "-c",
            config,
            "log-level",
            "off",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("tincan") && err.contains("controller") && err.contains("error 6"),
        "{err}"
    );
    for d in [Daemon::Tincan, Daemon::Controller] {
        assert!(!lab.log_tail("h1", d).contains("log level now OFF"));
    }
    let out = lab.exec("h1", &[bin, "-c", config, "log-level", "verbose"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("expected off, error"),
        "{}",
        text(&out.stderr)
    );
}
