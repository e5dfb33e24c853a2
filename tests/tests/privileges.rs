//! Least privilege: started as root (as the lab starts them), both daemons run as the
//! unprivileged default user ("ipop" if it exists, else "nobody") with only CAP_NET_ADMIN,
//! and what still needs that capability works (forced socket buffers, the TAP's MTU, the
//! bridge after a controller restart); a key file that is a symbolic link, belongs to another
//! user or is missing is refused with a message, and no key is created anywhere.

use ipop_lab_tests::{bin_dir, ip4, prefix, require_root, wait_until, Daemon, Lab, LabOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn two_hosts(tag: &str) -> Lab {
    Lab::up_with(
        &prefix(tag),
        LabOptions {
            hosts: 2,
            ..LabOptions::default()
        },
    )
}

/// The uid the daemons run as by default: "ipop" if that account exists, else "nobody".
fn daemon_uid() -> (String, String) {
    for user in ["ipop", "nobody"] {
        let out = Command::new("id").args(["-u", user]).output().unwrap();
        if out.status.success() {
            let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
            return (user.to_string(), uid);
        }
    }
    panic!("neither ipop nor nobody exists");
}

/// The fields of /proc/PID/status that say who a process is and what it may do.
fn credentials(pid: u32) -> Vec<(String, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| ["Uid", "Gid", "Groups", "NoNewPrivs"].contains(k) || k.starts_with("Cap"))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

fn field<'a>(c: &'a [(String, String)], k: &str) -> &'a str {
    c.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {k} in {c:?}"))
}

fn log_of(lab: &Lab, host: &str, daemon: Daemon) -> String {
    std::fs::read_to_string(lab.dir().join(host).join(format!("{}.log", daemon.name())))
        .unwrap_or_default()
}

#[test]
fn both_daemons_run_unprivileged_with_only_cap_net_admin_and_the_overlay_works() {
    if !require_root() {
        return;
    }
    let lab = two_hosts("privs");
    let (user, uid) = daemon_uid();
    for host in ["h1", "h2"] {
        for daemon in [Daemon::Tincan, Daemon::Controller] {
            let pid = lab.pid(host, daemon);
            let c = credentials(pid);
            let who = format!("{host} {} (pid {pid}): {c:?}", daemon.name());
            assert_eq!(
                field(&c, "Uid"),
                format!("{uid} {uid} {uid} {uid}"),
                "{who}"
            );
            // 0x1000 is CAP_NET_ADMIN (bit 12), and nothing else.
            for set in ["CapEff", "CapPrm", "CapBnd"] {
                assert_eq!(field(&c, set), "0000000000001000", "{set} of {who}");
            }
            for set in ["CapInh", "CapAmb"] {
                assert_eq!(field(&c, set), "0000000000000000", "{set} of {who}");
            }
            assert_eq!(field(&c, "NoNewPrivs"), "1", "{who}");
            assert_ne!(field(&c, "Groups").split(' ').next(), Some("0"), "{who}");
            let log = log_of(&lab, host, daemon);
            assert!(
                log.contains(&format!("running as {user} (uid {uid}"))
                    && log.contains("capabilities: cap_net_admin;"),
                "{who}: no line saying who it runs as:\n{log}"
            );
        }
    }
    let p = lab.ping("h1c1", &ip4("h2c1"), 3, None);
    assert!(p.is_clean(), "no ping across after the drop: {p:?}");
    // The link socket, bound after the drop, still got its forced buffers (SO_RCVBUFFORCE
    // needs CAP_NET_ADMIN; without it the kernel caps them at rmem_max, 208 KiB by default).
    let ss = lab.exec_ok("h1", &["ss", "-uanm", "sport = :5900"]);
    assert!(
        ss.contains("rb16777216"),
        "link socket buffers not forced:\n{ss}"
    );

    // The controller restarts with another tap_mtu while its TAP is off the bridge: tincan
    // sets the MTU and the controller attaches the TAP again, both as the dropped user.
    lab.kill("h1", Daemon::Controller);
    lab.exec_ok("h1", &["ip", "link", "set", "ipop", "nomaster"]);
    let config = lab.dir().join("h1/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    cfg["tap_mtu"] = 1400.into();
    std::fs::write(&config, cfg.to_string()).unwrap();
    lab.start("h1", Daemon::Controller);
    let mut link = String::new();
    let back = wait_until(Duration::from_secs(10), || {
        link = lab.exec_ok("h1", &["ip", "link", "show", "ipop"]);
        link.contains("mtu 1400") && link.contains("master lxcbr0")
    });
    assert!(
        back,
        "after the controller's restart: {link}\ncontroller:\n{}\ntincan:\n{}",
        lab.log_tail("h1", Daemon::Controller),
        lab.log_tail("h1", Daemon::Tincan)
    );
    let c = credentials(lab.pid("h1", Daemon::Controller));
    assert_eq!(field(&c, "CapEff"), "0000000000001000", "{c:?}");
    let p = lab.ping("h1c1", &ip4("h2c1"), 3, None);
    assert!(p.is_clean(), "no ping across after the restart: {p:?}");
}

/// Starts h2's tincan with the key file as the test left it, and returns its log once it
/// has exited (it must, within 5 s).
fn tincan_refuses(lab: &Lab) -> String {
    let before = log_of(lab, "h2", Daemon::Tincan).len();
    lab.start("h2", Daemon::Tincan);
    // Gone, and its last words written (the start line the lab writes is not one of them).
    let said = || log_of(lab, "h2", Daemon::Tincan)[before..].lines().count() > 1;
    let exited = wait_until(Duration::from_secs(5), || {
        !lab.alive("h2", Daemon::Tincan) && said()
    });
    let log = log_of(lab, "h2", Daemon::Tincan)[before..].to_string();
    assert!(
        exited,
        "tincan runs with a bad key file, or said nothing:\n{log}"
    );
    log
}

/// The names in a directory, sorted, without the logs and pidfiles the lab writes.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".log") && !n.ends_with(".pid"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_key_file_that_is_a_link_belongs_to_another_user_or_is_missing_is_refused() {
    if !require_root() {
        return;
    }
    let lab = two_hosts("privk");
    lab.kill("h2", Daemon::Tincan);
    let dir = lab.dir().join("h2");
    let key = dir.join("ipop.key");
    let other = dir.join("other.key");
    std::fs::rename(&key, &other).unwrap();
    let other_text = std::fs::read(&other).unwrap();
    let listing = files(&dir);

    // A symbolic link to a good key of the right user.
    std::os::unix::fs::symlink(&other, &key).unwrap();
    let log = tincan_refuses(&lab);
    assert!(
        log.contains(&format!("key file {}: is a symbolic link", key.display())),
        "{log}"
    );
    std::fs::remove_file(&key).unwrap();

    // The key itself, but another user's (neither root nor the daemon's).
    std::fs::copy(&other, &key).unwrap();
    std::os::unix::fs::chown(&key, Some(4242), Some(4242)).unwrap();
    let log = tincan_refuses(&lab);
    assert!(
        log.contains(&format!("key file {}: owned by 4242", key.display()))
            && log.contains("mode 600")
            && log.contains("chown"),
        "{log}"
    );
    std::fs::remove_file(&key).unwrap();

    // No key at all: an error pointing at ipopctl genkey, and no key made.
    let log = tincan_refuses(&lab);
    assert!(
        log.contains("does not exist")
            && log.contains(&format!("ipopctl genkey {}", key.display())),
        "{log}"
    );
    assert!(!key.exists(), "tincan created {}", key.display());
    assert_eq!(
        files(&dir),
        listing,
        "files appeared or went in {}",
        dir.display()
    );
    assert_eq!(
        std::fs::read(&other).unwrap(),
        other_text,
        "the other key changed"
    );

    // The original command line (no --config) gets the key's path from the controller after
    // the drop: a key only root can read is refused with a message saying so, not created.
    std::fs::copy(&other, &key).unwrap();
    std::os::unix::fs::chown(&key, Some(0), Some(0)).unwrap();
    let out = std::fs::File::create(dir.join("legacy.out")).unwrap();
    let mut legacy = Command::new("ip")
        .args(["netns", "exec", &lab.ns("h2")])
        .arg(bin_dir().join("ipop-tincan"))
        .args(["ipop", "5800"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let refused = wait_until(Duration::from_secs(10), || {
        log_of(&lab, "h2", Daemon::Controller).contains("cannot read it as")
    });
    let _ = legacy.kill();
    let _ = legacy.wait();
    let log = log_of(&lab, "h2", Daemon::Controller);
    assert!(refused, "no refusal of the unreadable key:\n{log}");
    assert!(log.contains(&format!(
        "tincan refused set_local_ip: key file {}",
        key.display()
    )));
    assert_eq!(std::fs::metadata(&key).unwrap().uid(), 0);
}
