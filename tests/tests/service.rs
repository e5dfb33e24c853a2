//! Running as a service: SIGHUP reloads the controller's config (peers trimmed with their MACs
//! and neighbour entries, peers linked, keys that need a restart named, a broken config
//! refused), SIGTERM takes the TAP off the bridge and exits 0, readiness (`READY=1` on
//! `$NOTIFY_SOCKET`) comes only once the TAP is configured, `systemd-analyze verify` accepts
//! the units, and the Debian package builds, holds the files, and its binaries and man pages
//! work.

use ipop_lab_tests::{
    bin_dir, ip4, prefix, require_root, require_tools, wait_until, workspace_root, Daemon, Lab,
    LabOptions, TINCAN_PORT,
};
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ipop-svc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn pid_of(lab: &Lab, host: &str, daemon: Daemon) -> u32 {
    let f = lab.dir().join(host).join(format!("{}.pid", daemon.name()));
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .trim()
        .parse()
        .unwrap()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

fn log_of(lab: &Lab, host: &str, daemon: Daemon) -> String {
    std::fs::read_to_string(lab.dir().join(host).join(format!("{}.log", daemon.name())))
        .unwrap_or_default()
}

/// Installs the packages of `specs` ("tool:package") that are missing, through the lab
/// scripts' locked `ensure_packages` (scripts/test.sh has normally installed them already).
fn ensure_packages(specs: &[&str]) {
    let missing: Vec<&str> = specs
        .iter()
        .copied()
        .filter(|s| {
            let tool = s.split(':').next().unwrap();
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success()
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let lib = workspace_root().join("scripts/lablib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "LAB_SCRIPT=service-test; source '{}' && ensure_packages {}",
            lib.display(),
            missing.join(" ")
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ensure_packages {missing:?}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let tools: Vec<&str> = specs.iter().map(|s| s.split(':').next().unwrap()).collect();
    require_tools(&tools);
}

/// The peers (uids) in tincan's get_state, and the uids its MAC table forwards to.
fn tincan_peers_and_macs(lab: &Lab, host: &str) -> (Vec<String>, Vec<String>) {
    let s = lab.tincan_state(host);
    let peers = s["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["uid"].as_str().unwrap().to_string())
        .collect();
    let macs = s["macs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["uid"].as_str().unwrap().to_string())
        .collect();
    (peers, macs)
}

fn neigh_owners(lab: &Lab, host: &str) -> Vec<String> {
    lab.controller_state(host)["neigh"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["owner"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn sighup_trims_removed_peers_links_added_ones_and_names_keys_that_need_a_restart() {
    if !require_root() {
        return;
    }
    let lab = Lab::up(&prefix("hup"), 3, true);
    let h3_uid = lab.tincan_state("h3")["_uid"].as_str().unwrap().to_string();
    // Traffic from h3's containers: h1's tincan learns their MACs behind h3, its controller
    // their addresses.
    for c in ["h3c1", "h3c2"] {
        let r = lab.ping("h1c1", &ip4(c), 3, None);
        assert!(r.is_clean(), "{}", r.raw);
    }
    let (peers, macs) = tincan_peers_and_macs(&lab, "h1");
    assert!(peers.contains(&h3_uid), "{peers:?}");
    assert!(macs.contains(&h3_uid), "no MAC behind h3 learned: {macs:?}");
    assert!(neigh_owners(&lab, "h1").contains(&h3_uid));

    // h3 leaves h1's config; tap_mtu changes too (needs a restart).
    let mtu = lab.tincan_state("h1")["mtu"].as_u64().unwrap();
    let path = lab.dir().join("h1/config.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut cfg: Value = serde_json::from_str(&original).unwrap();
    cfg["peers"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["ip4"] != ip4("h3"));
    cfg["tap_mtu"] = Value::from(mtu - 100);
    std::fs::write(&path, cfg.to_string()).unwrap();
    let pid = pid_of(&lab, "h1", Daemon::Controller);
    signal(pid, "HUP");
    let gone = wait_until(Duration::from_secs(5), || {
        let (peers, macs) = tincan_peers_and_macs(&lab, "h1");
        !peers.contains(&h3_uid) && !macs.contains(&h3_uid)
    });
    assert!(
        gone,
        "h3's link or MACs still in h1's tincan: {:?}\n{}",
        tincan_peers_and_macs(&lab, "h1"),
        lab.log_tail("h1", Daemon::Controller)
    );
    assert!(
        !neigh_owners(&lab, "h1").contains(&h3_uid),
        "neighbour entries behind h3 not withdrawn"
    );
    assert!(lab.alive("h1", Daemon::Controller), "SIGHUP killed it");
    let log = log_of(&lab, "h1", Daemon::Controller);
    let line = log
        .lines()
        .find(|l| l.contains("need a restart"))
        .unwrap_or_else(|| panic!("no line about keys needing a restart:\n{log}"));
    assert!(
        line.contains("tap_mtu") && !line.contains("peers"),
        "{line}"
    );
    // tap_mtu kept its running value.
    assert_eq!(lab.tincan_state("h1")["mtu"], mtu);
    // h2 is still reachable.
    let r = lab.ping("h1c1", &ip4("h2c1"), 3, None);
    assert!(r.is_clean(), "{}", r.raw);

    // A config that no longer parses is refused; nothing changes.
    std::fs::write(&path, "{\"switchmode\": 1, \"ip4\": ").unwrap();
    signal(pid, "HUP");
    let refused = wait_until(Duration::from_secs(5), || {
        log_of(&lab, "h1", Daemon::Controller).contains("config refused, the running one stays")
    });
    assert!(refused, "{}", lab.log_tail("h1", Daemon::Controller));
    assert!(lab.alive("h1", Daemon::Controller));

    // h3 back in the config: its link comes up and carries pings again.
    std::fs::write(&path, &original).unwrap();
    signal(pid, "HUP");
    let up = wait_until(Duration::from_secs(15), || lab.peer_online("h1", &h3_uid));
    assert!(
        up,
        "h3's link did not come back: {}\n{}",
        lab.tincan_state("h1")["peers"],
        lab.log_tail("h1", Daemon::Controller)
    );
    let r = lab.ping("h1c1", &ip4("h3c1"), 3, None);
    assert!(r.is_clean(), "{}", r.raw);
}

/// A unix datagram socket for `$NOTIFY_SOCKET`, and what arrives on it.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path, name: &str) -> NotifySocket {
        let path = dir.join(name);
        let sock = UnixDatagram::bind(&path).unwrap();
        NotifySocket { sock, path }
    }

    /// The next message within `timeout`, or None.
    fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 1024];
        match self.sock.recv(&mut buf) {
            Ok(n) => Some(text(&buf[..n])),
            Err(_) => None,
        }
    }
}

/// A daemon started in a host's namespace with `$NOTIFY_SOCKET`; killed on drop.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_in(lab: &Lab, host: &str, notify: &Path, args: &[&str], log: &Path) -> Started {
    let log = std::fs::File::create(log).unwrap();
    Started(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns(host)])
            .args(args)
            .env("NOTIFY_SOCKET", notify)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// The TAP's `ip -d link` line in the host's namespace ("" when it does not exist).
fn tap_link(lab: &Lab, host: &str) -> String {
    text(&lab.exec(host, &["ip", "-d", "link", "show", "ipop"]).stdout)
}

/// For a failure message: how the process ended, or what it is doing now.
fn process_report(child: &mut Child) -> String {
    use std::os::unix::process::ExitStatusExt;
    match child.try_wait() {
        Ok(Some(st)) => format!("exited: code {:?}, signal {:?}", st.code(), st.signal()),
        Ok(None) => {
            let pid = child.id();
            let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}"));
            let state = read("status")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("State:") || l.starts_with("SigPnd:"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "running, pid {pid}, {state}, wchan {}",
                read("wchan").unwrap_or_default()
            )
        }
        Err(e) => format!("cannot tell: {e}"),
    }
}

/// Waits for the process to exit, at most `timeout`; its exit code.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn ready_only_once_the_tap_is_on_the_bridge_and_sigterm_takes_it_off() {
    if !require_root() {
        return;
    }
    let lab = Lab::up_with(
        &prefix("ready"),
        LabOptions {
            hosts: 2,
            ..LabOptions::default()
        },
    );
    // The lab's own daemons of h1 go. Without --detach-on-exit the controller's SIGTERM
    // leaves the TAP on the bridge (a controller restart loses no flow); tincan's takes it.
    lab.kill("h1", Daemon::Controller);
    assert!(
        tap_link(&lab, "h1").contains("master lxcbr0"),
        "TAP off the bridge after a plain controller SIGTERM: {}",
        tap_link(&lab, "h1")
    );
    lab.kill("h1", Daemon::Tincan);
    assert_eq!(
        tap_link(&lab, "h1"),
        "",
        "TAP left behind by tincan's SIGTERM"
    );

    let dir = tmp_dir("ready");
    let bin = bin_dir();
    let ctl_notify = NotifySocket::bind(&dir, "controller.sock");
    let tin_notify = NotifySocket::bind(&dir, "tincan.sock");
    let config = lab.dir().join("h1/config.json");
    let controller_bin = bin.join("gvpn-controller");
    let mut controller = start_in(
        &lab,
        "h1",
        &ctl_notify.path,
        &[
            controller_bin.to_str().unwrap(),
            "-c",
            config.to_str().unwrap(),
            "--detach-on-exit",
        ],
        &dir.join("controller.log"),
    );
    // No tincan yet: no readiness.
    let early = ctl_notify.recv(Duration::from_secs(2));
    assert_eq!(early, None, "controller ready without tincan");

    let tincan_bin = bin.join("ipop-tincan");
    let mut tincan = start_in(
        &lab,
        "h1",
        &tin_notify.path,
        &[
            tincan_bin.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--tap",
            "ipop",
        ],
        &dir.join("tincan.log"),
    );
    let msg = tin_notify
        .recv(Duration::from_secs(5))
        .expect("tincan sent nothing on NOTIFY_SOCKET");
    let link = tap_link(&lab, "h1");
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(
        link.contains("tun type tap") && link.contains("mtu 1500") && link.contains(",UP"),
        "tincan ready before its TAP is up: {link}"
    );
    assert_eq!(
        lab.rpc(
            "h1",
            TINCAN_PORT,
            "echo_request",
            Some(&serde_json::json!({"msg": "x"}))
        )
        .map(|_| ()),
        Ok(()),
        "tincan ready before its control port answers"
    );

    let msg = ctl_notify.recv(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "controller never ready ({}):\n{}\ntincan:\n{}",
            process_report(&mut controller.0),
            std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("tincan.log")).unwrap_or_default()
        )
    });
    // At the moment READY=1 arrives, the TAP is on the bridge and tincan is configured.
    let link = tap_link(&lab, "h1");
    assert!(msg.starts_with("READY=1"), "{msg}");
    assert!(
        link.contains("master lxcbr0"),
        "ready before the TAP is on the bridge: {link}"
    );
    assert_eq!(lab.tincan_state("h1")["configured"], true);

    // SIGTERM with --detach-on-exit (as the unit runs it): exit 0, the TAP off the bridge;
    // then tincan's: exit 0, no TAP.
    signal(controller.0.id(), "TERM");
    assert_eq!(
        wait_exit(&mut controller.0, Duration::from_secs(5)),
        Some(0)
    );
    assert!(
        ctl_notify
            .recv(Duration::from_millis(500))
            .is_some_and(|m| m.contains("STOPPING=1")),
        "no STOPPING=1"
    );
    let link = tap_link(&lab, "h1");
    assert!(link.contains("tun type tap"), "{link}");
    assert!(!link.contains("master"), "TAP still on a bridge: {link}");
    signal(tincan.0.id(), "TERM");
    assert_eq!(wait_exit(&mut tincan.0, Duration::from_secs(5)), Some(0));
    assert_eq!(tap_link(&lab, "h1"), "", "TAP left behind by tincan");
    let bridge_ports = text(
        &lab.exec("h1", &["ip", "link", "show", "master", "lxcbr0"])
            .stdout,
    );
    assert!(!bridge_ports.contains("ipop"), "{bridge_ports}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The units, with their ExecStart binaries pointed at this build (systemd-analyze checks that
/// they exist), are accepted by `systemd-analyze verify`.
#[test]
fn systemd_analyze_verify_accepts_the_units() {
    if !require_root() {
        return;
    }
    ensure_packages(&["systemd-analyze:systemd"]);
    let dir = tmp_dir("units");
    let bin = bin_dir();
    let mut units = Vec::new();
    for unit in ["ipop@.service", "ipop-tincan@.service"] {
        let src = workspace_root().join("dist/systemd").join(unit);
        let body = std::fs::read_to_string(&src).unwrap();
        for b in ["gvpn-controller", "ipop-tincan"] {
            assert!(
                !body.contains(&format!("/usr/bin/{b} ")) || bin.join(b).is_file(),
                "{b} not built"
            );
        }
        let body = body.replace("/usr/bin/", &format!("{}/", bin.display()));
        let dst = dir.join(unit);
        std::fs::write(&dst, body).unwrap();
        units.push(dst);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // A broken unit is refused: the check can fail.
    let broken = dir.join("ipop-broken@.service");
    std::fs::write(
        &broken,
        "[Service]\nType=notify\nExecStart=/nonexistent/ipop\n",
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success() || !out.stderr.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Text without the overstrikes ("X\x08X" bold, "_\x08X" underline) man uses off a terminal.
fn plain(s: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    for c in s.chars() {
        if c == '\x08' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

#[test]
fn the_package_builds_and_its_binaries_and_man_pages_work() {
    if !require_root() {
        return;
    }
    ensure_packages(&[
        "dpkg-deb:dpkg",
        "strip:binutils",
        "gzip:gzip",
        "man:man-db",
        "groff:groff-base",
    ]);
    let dir = tmp_dir("deb");
    let out = run(Command::new(workspace_root().join("scripts/package.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--out")
        .arg(&dir));
    let deb = PathBuf::from(text(&out.stdout).lines().last().unwrap().trim());
    assert!(deb.is_file(), "{}", deb.display());
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout);
    for f in [
        "./usr/bin/ipop-tincan",
        "./usr/bin/gvpn-controller",
        "./usr/bin/ipopctl",
        "./lib/systemd/system/ipop@.service",
        "./lib/systemd/system/ipop-tincan@.service",
        "./etc/ipop/config.json.example",
        "./usr/share/man/man8/ipop-tincan.8.gz",
        "./usr/share/man/man8/gvpn-controller.8.gz",
        "./usr/share/man/man8/ipopctl.8.gz",
        "./usr/share/man/man5/ipop-config.5.gz",
    ] {
        assert!(listing.contains(f), "{f} not in the package:\n{listing}");
    }
    let conffiles = text(
        &run(Command::new("dpkg-deb")
            .arg("--ctrl-tarfile")
            .arg(&deb)
            .stdout(Stdio::piped()))
        .stdout,
    );
    assert!(conffiles.contains("conffiles") && conffiles.contains("postinst"));

    let root = dir.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let version = env!("CARGO_PKG_VERSION");
    for b in ["ipop-tincan", "gvpn-controller", "ipopctl"] {
        let exe = root.join("usr/bin").join(b);
        let out = run(Command::new(&exe).arg("--version"));
        assert_eq!(text(&out.stdout).trim(), format!("{b} {version}"));
        // Stripped: no symbol table left.
        let syms = Command::new("nm").arg(&exe).output();
        if let Ok(syms) = syms {
            assert!(
                text(&syms.stderr).contains("no symbols"),
                "{b} is not stripped"
            );
        }
    }
    // The example config is one the controller accepts.
    let example = root.join("etc/ipop/config.json.example");
    let out = run(Command::new(root.join("usr/bin/gvpn-controller"))
        .arg("--check")
        .arg("-c")
        .arg(&example));
    assert!(
        text(&out.stdout).starts_with("config OK"),
        "{}",
        text(&out.stdout)
    );

    for (page, must) in [
        ("man8/ipop-tincan.8.gz", "--config"),
        ("man8/gvpn-controller.8.gz", "--check"),
        ("man8/ipopctl.8.gz", "genkey"),
        ("man5/ipop-config.5.gz", "rekey_interval"),
    ] {
        let path = root.join("usr/share/man").join(page);
        let out = run(Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")
            .env("PAGER", "cat"));
        let shown = plain(&text(&out.stdout));
        assert!(
            shown.contains("NAME") && shown.contains(must),
            "{page} renders without {must}:\n{shown}"
        );
        assert!(
            text(&out.stderr).is_empty(),
            "{page}: {}",
            text(&out.stderr)
        );
        // groff with every warning on finds nothing to say.
        let check = run(Command::new("sh").arg("-c").arg(format!(
            "zcat '{}' | groff -man -Tutf8 -ww -z 2>&1",
            path.display()
        )));
        assert_eq!(text(&check.stdout), "", "{page}: groff warnings");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Under journald (`$JOURNAL_STREAM` naming stderr) each log line starts with its syslog
/// priority; elsewhere with a timestamp and the level's name.
#[test]
fn log_lines_carry_their_level_for_journald() {
    use std::os::unix::fs::MetadataExt;
    let controller = bin_dir().join("gvpn-controller");
    if !controller.is_file() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{} not built",
            controller.display()
        );
        return;
    }
    let dir = tmp_dir("journal");
    // An unknown key: one warning, logged after logging starts; --check then exits.
    let cfg = r#"{"switchmode": 1, "ip4": "10.0.3.1", "sec": false, "no_such_key": 1}"#;
    let run_with = |journal: bool| {
        let path = dir.join(format!("stderr-{journal}"));
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let mut cmd = Command::new(&controller);
        cmd.args(["--check", "-s", cfg])
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(file);
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        assert!(cmd.status().unwrap().success());
        std::fs::read_to_string(&path).unwrap()
    };
    let journal = run_with(true);
    let line = journal.lines().next().unwrap_or_default();
    assert!(
        line.starts_with("<4>") && line.contains("no_such_key"),
        "{journal}"
    );
    let plain = run_with(false);
    let line = plain.lines().next().unwrap_or_default();
    assert!(
        line.starts_with('[') && line.contains(" WARN ") && line.contains("no_such_key"),
        "{plain}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the units rely on for `User=ipop`: both daemons do their work as an unprivileged user
/// whose only capability is CAP_NET_ADMIN (here `nobody`, through setpriv), given a
/// `/dev/net/tun` of mode 0666 as Debian's udev makes it (bind-mounted over the real one in a
/// mount namespace of the test's own, so the machine's node is left as it is).
#[test]
fn the_daemons_need_only_cap_net_admin() {
    if !require_root() {
        return;
    }
    require_tools(&["setpriv", "unshare", "mknod"]);
    let lab = Lab::up_with(
        &prefix("caps"),
        LabOptions {
            hosts: 2,
            ..LabOptions::default()
        },
    );
    lab.kill("h1", Daemon::Controller);
    lab.kill("h1", Daemon::Tincan);
    let dir = tmp_dir("caps");
    let mut perms = std::fs::metadata(&dir).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&dir, perms).unwrap();
    // The lab's config, readable by nobody, without the key (plaintext links), so that no key
    // file has to belong to nobody.
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.dir().join("h1/config.json")).unwrap())
            .unwrap();
    cfg["sec"] = Value::Bool(false);
    for p in cfg["peers"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("fpr");
    }
    let config = dir.join("config.json");
    std::fs::write(&config, cfg.to_string()).unwrap();
    let bin = bin_dir();
    let script = format!(
        r#"set -e
t= c=
trap 'kill $t $c 2>/dev/null || true' EXIT
mknod -m 0666 {dir}/tun c 10 200
mount --bind {dir}/tun /dev/net/tun
AS_NOBODY="setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all,+net_admin
    --ambient-caps=-all,+net_admin --bounding-set=-all,+net_admin"
$AS_NOBODY {bin}/ipop-tincan --config {config} --tap ipop >/dev/null 2>{dir}/tincan.log &
t=$!
sleep 0.5
$AS_NOBODY {bin}/gvpn-controller -c {config} >/dev/null 2>{dir}/controller.log &
c=$!
for _ in $(seq 50); do
    ip link show ipop 2>/dev/null | grep -q "master lxcbr0" && break
    sleep 0.2
done
ip -d link show ipop
grep CapEff /proc/$t/status /proc/$c/status
stat -c %U /proc/$t /proc/$c
kill -TERM $c; wait $c || echo "controller exit $?"
kill -TERM $t; wait $t || echo "tincan exit $?"
t= c=
"#,
        dir = dir.display(),
        bin = bin.display(),
        config = config.display(),
    );
    let out = lab.exec("h1", &["unshare", "-m", "bash", "-c", &script]);
    let stdout = text(&out.stdout);
    let logs = format!(
        "{stdout}{}\ntincan: {}\ncontroller: {}",
        text(&out.stderr),
        std::fs::read_to_string(dir.join("tincan.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default()
    );
    assert!(out.status.success(), "{logs}");
    assert!(
        stdout.contains("master lxcbr0"),
        "TAP not on the bridge: {logs}"
    );
    assert!(stdout.contains("tun type tap"), "{logs}");
    // CAP_NET_ADMIN is bit 12: 0x1000, and nothing else.
    assert_eq!(
        stdout.matches("CapEff:\t0000000000001000").count(),
        2,
        "{logs}"
    );
    assert_eq!(stdout.matches("nobody").count(), 2, "{logs}");
    assert!(!stdout.contains("exit "), "{logs}");
    let _ = std::fs::remove_dir_all(&dir);
}
