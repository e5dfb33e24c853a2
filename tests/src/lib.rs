//! Lab helpers for the integration tests in `tests/tests/*.rs`.
//!
//! This crate owns the Rust side of the network-namespace lab: [`Lab`] brings up
//! `scripts/lab.sh` with a unique prefix and tears it down on drop (also when the test panics),
//! and its methods run commands in the lab's namespaces, ping, read the daemons' `get_state`,
//! read ICMP counters, and stop or restart a daemon. The topology and addresses are those of
//! `scripts/lab.sh`; see README.md, "The lab".
//!
//! A test that needs the lab starts with
//!
//! ```no_run
//! # use ipop_lab_tests::*;
//! if !require_root() {
//!     return;
//! }
//! let lab = Lab::up(&prefix("arp"), 2, true);
//! let r = lab.ping("h1c1", &ip4("h2c1"), 3, None);
//! assert!(r.is_clean(), "{}", r.raw);
//! ```

mod scale;
pub use scale::LinkDatagrams;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Control port of `ipop-tincan` in the lab (`svpn_port`).
pub const TINCAN_PORT: u16 = 5800;
/// Control port of `gvpn-controller` in the lab (`icc_port`).
pub const CONTROLLER_PORT: u16 = 30000;
/// The MTU of the lab's containers' `eth0` and of the TAP (LXC's and the config's default).
pub const OVERLAY_MTU: usize = 1500;

/// The two daemons that run in every host namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Tincan,
    Controller,
}

impl Daemon {
    /// The name `scripts/lab.sh kill|start` and the log/pid files use.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Tincan => "tincan",
            Daemon::Controller => "controller",
        }
    }

    /// The loopback port its JSON-RPC interface listens on.
    pub fn port(self) -> u16 {
        match self {
            Daemon::Tincan => TINCAN_PORT,
            Daemon::Controller => CONTROLLER_PORT,
        }
    }
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `scripts/lab.sh` in this workspace.
pub fn lab_script() -> PathBuf {
    workspace_root().join("scripts/lab.sh")
}

/// Where `ipop-tincan` and `gvpn-controller` are: `$IPOP_BIN_DIR`, else
/// `$CARGO_TARGET_DIR/release`, else `<workspace>/target/release`. Does not check they exist:
/// see [`require_binaries`].
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("IPOP_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        let d = if d.is_absolute() {
            d
        } else {
            workspace_root().join(d)
        };
        return d.join("release");
    }
    workspace_root().join("target/release")
}

/// Panics, saying how to build them, unless both binaries are in [`bin_dir`].
pub fn require_binaries() -> PathBuf {
    let dir = bin_dir();
    for name in ["ipop-tincan", "gvpn-controller"] {
        let p = dir.join(name);
        assert!(
            p.is_file(),
            "{} does not exist: run `cargo build --release --workspace` first \
             (or point IPOP_BIN_DIR at the binaries)",
            p.display()
        );
    }
    dir
}

fn is_root() -> bool {
    // The effective uid is the second field of "Uid:" in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|d| d.join(tool).is_file())
}

/// Whether a lab test can run here. Returns false, after printing "skipped: needs ...", when
/// something is missing (root, `/dev/net/tun`, `ip`, `ping`, `python3`) and `CI` is not "true":
/// the test should then return early. With `CI=true` a missing requirement panics instead, so a
/// test that needs root never passes silently in CI.
pub fn require_root() -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_string());
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".to_string());
    }
    for tool in ["ip", "ping", "python3"] {
        if !on_path(tool) {
            missing.push(format!("`{tool}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(", ");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "this lab test needs {what}, and CI=true, so it must not be skipped: \
             run the tests as root with scripts/test.sh, which installs the packages they use"
        );
    }
    eprintln!("skipped: needs {what} (run the tests as root with scripts/test.sh)");
    false
}

/// Panics, naming what is missing, unless every tool is on PATH. For the tools a test needs
/// beyond those of [`require_root`] (e.g. `iperf3`): the tests never install packages
/// themselves, `scripts/test.sh` installs them all before it runs the tests.
pub fn require_tools(tools: &[&str]) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    assert!(
        missing.is_empty(),
        "this test needs {}, which is not installed: run the tests as root with scripts/test.sh, \
         which installs the packages they use",
        missing.join(", ")
    );
}

static USED_PREFIXES: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn existing_namespaces() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A lab prefix for one test, 5 characters: the tag's first letter, one letter from a hash of
/// the tag, and the process id mod 1000 (e.g. `ak042`). Unique within this process, and never
/// one that already has namespaces, so tests can run in parallel with each other and with
/// other test processes.
pub fn prefix(tag: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let first = tag
        .chars()
        .find(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or('x');
    // FNV-1a: stable across runs, so a test keeps its prefix.
    let mut h: u32 = 0x811c_9dc5;
    for b in tag.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let pid = std::process::id() % 1000;
    let namespaces = existing_namespaces();
    let mut used = USED_PREFIXES.lock().unwrap_or_else(|e| e.into_inner());
    let used = used.get_or_insert_with(HashSet::new);
    for k in 0..ALPHABET.len() {
        let c = ALPHABET[(h as usize + k) % ALPHABET.len()] as char;
        let candidate = format!("{first}{c}{pid:03}");
        let taken = namespaces
            .iter()
            .any(|n| n.starts_with(&format!("{candidate}-")));
        if !taken && used.insert(candidate.clone()) {
            return candidate;
        }
    }
    panic!("no free lab prefix for tag {tag:?}: stale labs? see `ip netns list`");
}

/// The lab's IPv4 address of a node: `h2` -> 10.0.3.2 (its lxcbr0), `h2c1` -> 10.0.3.21.
pub fn ip4(node: &str) -> String {
    let (h, c) = parse_node(node);
    match c {
        Some(c) => format!("10.0.3.{h}{c}"),
        None => format!("10.0.3.{h}"),
    }
}

/// The lab's IPv6 ULA of a container: `h2c1` -> fd00:3::21.
pub fn ip6(node: &str) -> String {
    match parse_node(node) {
        (h, Some(c)) => format!("fd00:3::{h}{c}"),
        _ => panic!("{node:?}: only containers (hNcM) have an IPv6 address"),
    }
}

/// The underlay address of a host: `h2` -> 10.99.0.2.
pub fn underlay_ip(host: &str) -> String {
    match parse_node(host) {
        (h, None) => format!("10.99.0.{h}"),
        _ => panic!("{host:?}: expected a host name like h2"),
    }
}

fn parse_node(node: &str) -> (u8, Option<u8>) {
    let b = node.as_bytes();
    let digit = |i: usize| b.get(i).filter(|d| d.is_ascii_digit()).map(|d| d - b'0');
    match (b.first(), digit(1), b.get(2), digit(3), b.len()) {
        (Some(b'h'), Some(h), None, None, 2) => (h, None),
        (Some(b'h'), Some(h), Some(b'c'), Some(c), 4) => (h, Some(c)),
        _ => panic!("{node:?}: expected a lab node like h2 or h2c1"),
    }
}

/// Polls `f` every 100 ms until it returns true or `timeout` has passed; returns its last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How a lab is brought up; [`Lab::up`] uses the defaults except `hosts` and `icc`.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// 2 to 32 hosts (from 10 on, one container each: [`Lab::container_ip4`]).
    pub hosts: u8,
    /// `"icc": true` (ARP replicated by the controllers) or false (plain learning switch).
    pub icc: bool,
    /// false: namespaces and configs only, no daemon started (`LAB_NO_DAEMONS=1`).
    pub daemons: bool,
    /// Seconds `up` waits for every link to come online (`LAB_WAIT`).
    pub wait_secs: u32,
    /// false: `up` does not wait for the links (`LAB_WAIT_LINKS=0`), for labs where some
    /// links must stay down.
    pub wait_links: bool,
    /// More variables for `scripts/lab.sh` (e.g. `LAB_ROGUE_HOSTS`, `LAB_REKEY`); the daemons
    /// inherit them, so `IPOP_NO_OFFLOAD=1` here puts every tincan on the plain TAP path (as
    /// does running the tests with `IPOP_NO_OFFLOAD=1` in their own environment).
    pub env: Vec<(String, String)>,
}

impl LabOptions {
    /// Every tincan opens its TAP without the virtio-net header (`IPOP_NO_OFFLOAD=1`), or,
    /// with `false`, with it whatever the tests' own environment says.
    pub fn plain_tap(mut self, plain: bool) -> Self {
        let v = if plain { "1" } else { "0" };
        self.env.push(("IPOP_NO_OFFLOAD".into(), v.into()));
        self
    }
}

/// What a [`Lab::tcp_transfer`] sent and what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// SHA-256 (hex) of the bytes sent.
    pub sent_sha256: String,
    /// SHA-256 (hex) and count of the bytes the receiver read until the sender closed.
    pub received_sha256: String,
    pub received_bytes: u64,
}

/// Receiver of [`Lab::tcp_transfer`]: accepts one connection, reads to EOF, prints
/// "<sha256> <bytes>".
const TCP_SINK: &str = r#"
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(20)
c, _ = s.accept(); c.settimeout(20)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(h.hexdigest(), n)
"#;

/// Sender of [`Lab::tcp_transfer`]: connects (retrying while the receiver starts), sends
/// `argv[3]` random bytes, prints their sha256.
const TCP_SOURCE: &str = r#"
import hashlib, os, socket, sys, time
for _ in range(50):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20); break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("cannot connect")
h, left = hashlib.sha256(), int(sys.argv[3])
while left:
    b = os.urandom(min(left, 1 << 20)); c.sendall(b); h.update(b); left -= len(b)
c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
print(h.hexdigest())
"#;

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            hosts: 3,
            icc: true,
            daemons: true,
            wait_secs: 20,
            wait_links: true,
            env: Vec::new(),
        }
    }
}

/// Options of one ping; [`Lab::ping`] and [`Lab::ping6`] fill them in.
#[derive(Debug, Clone)]
pub struct PingOpts {
    /// Echo requests to get answered (`-c`).
    pub count: u32,
    /// ICMP payload bytes (`-s`), default 56.
    pub size: Option<usize>,
    /// `-6`.
    pub ipv6: bool,
    /// Seconds between requests (`-i`), default 0.2.
    pub interval: f64,
    /// Set the don't-fragment bit (`-M do`): a packet too big for a link fails instead of
    /// being fragmented.
    pub dont_fragment: bool,
    /// Hard bound on the whole ping (`-w`); default count × interval + 5 s.
    pub deadline_secs: Option<u32>,
}

impl PingOpts {
    pub fn new(count: u32) -> Self {
        PingOpts {
            count,
            size: None,
            ipv6: false,
            interval: 0.2,
            dont_fragment: false,
            deadline_secs: None,
        }
    }

    fn args(&self, to: &str) -> Vec<String> {
        let deadline = self
            .deadline_secs
            .unwrap_or_else(|| (f64::from(self.count) * self.interval).ceil() as u32 + 5);
        let mut a: Vec<String> = vec!["ping".into(), "-n".into()];
        if self.ipv6 {
            a.push("-6".into());
        }
        a.extend([
            "-c".to_string(),
            self.count.to_string(),
            "-i".into(),
            format!("{}", self.interval),
            "-W".into(),
            "1".into(),
            "-w".into(),
            deadline.to_string(),
        ]);
        if let Some(s) = self.size {
            a.push("-s".into());
            a.push(s.to_string());
        }
        if self.dont_fragment {
            a.push("-M".into());
            a.push("do".into());
        }
        a.push(to.into());
        a
    }
}

/// What iputils `ping` reported.
#[derive(Debug, Clone, PartialEq)]
pub struct PingResult {
    pub transmitted: u32,
    /// Distinct echo requests answered (duplicates not included).
    pub received: u32,
    /// Extra copies of replies ("+N duplicates", the lines marked DUP!).
    pub duplicates: u32,
    pub rtt_avg_ms: Option<f64>,
    /// The whole output, stdout then stderr, for assertion messages.
    pub raw: String,
}

impl PingResult {
    /// Every echo request sent was answered exactly once. (With `-w`, ping keeps sending until
    /// `count` replies arrived, so one loss shows up as transmitted > received.)
    pub fn is_clean(&self) -> bool {
        self.received > 0 && self.received == self.transmitted && self.duplicates == 0
    }
}

/// Parses iputils ping output: the "N packets transmitted, M received, +D duplicates" line and
/// the "rtt min/avg/max/mdev" line. Missing lines give zeros and `None`.
pub fn parse_ping(raw: &str) -> PingResult {
    let mut r = PingResult {
        transmitted: 0,
        received: 0,
        duplicates: 0,
        rtt_avg_ms: None,
        raw: raw.to_string(),
    };
    for line in raw.lines() {
        if line.contains("packets transmitted") {
            for part in line.split(',') {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.trim_start_matches('+').parse::<u32>() else {
                    continue;
                };
                match what {
                    "packets" => r.transmitted = n,
                    "received" => r.received = n,
                    "duplicates" => r.duplicates = n,
                    _ => {}
                }
            }
        } else if line.starts_with("rtt ") || line.starts_with("round-trip ") {
            r.rtt_avg_ms = line
                .split('=')
                .nth(1)
                .and_then(|v| v.trim().split('/').nth(1))
                .and_then(|v| v.parse().ok());
        }
    }
    r
}

/// Reads one counter from `/proc/net/snmp` text ("Icmp", "OutRedirects") or, for a group
/// ending in 6 ("Icmp6", "OutRedirects"), from `/proc/net/snmp6` text ("Icmp6OutRedirects N").
pub fn parse_snmp(text: &str, group: &str, name: &str) -> Option<u64> {
    if group.ends_with('6') {
        let key = format!("{group}{name}");
        return text.lines().find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key.as_str()))
                .then(|| w.next()?.parse().ok())
                .flatten()
        });
    }
    // Pairs of lines: "Icmp: InMsgs InErrors ..." then "Icmp: 3 0 ...".
    let head = format!("{group}:");
    let mut lines = text
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(&head));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Runs `scripts/lab.sh ARGS` for the lab `prefix` with the environment a [`Lab`] uses.
pub fn lab_sh(prefix: &str, opts: &LabOptions, args: &[&str]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(lab_script())
        .args(args)
        .env("LAB_PREFIX", prefix)
        .env("LAB_HOSTS", opts.hosts.to_string())
        .env("LAB_DIR", lab_dir(prefix))
        .env("IPOP_BIN_DIR", bin_dir())
        .env("LAB_ICC", if opts.icc { "1" } else { "0" })
        .env("LAB_NO_DAEMONS", if opts.daemons { "0" } else { "1" })
        .env("LAB_WAIT", opts.wait_secs.to_string())
        .env("LAB_WAIT_LINKS", if opts.wait_links { "1" } else { "0" })
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", lab_script().display()))
}

fn lab_dir(prefix: &str) -> PathBuf {
    PathBuf::from(format!("/tmp/ipop-lab-{prefix}"))
}

/// A command's exit `code` and one line on stderr containing every `needle`, no panic: how a
/// binary reports a user's mistake.
pub fn assert_one_line_error(o: &Output, code: i32, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr:\n{err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} missing from:\n{err}");
    }
}

fn show(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running lab. Dropping it runs `scripts/lab.sh down` (also while a test panics, after
/// printing the daemons' log tails).
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    dir: PathBuf,
    opts: LabOptions,
    bin: PathBuf,
    torn_down: bool,
}

impl Lab {
    /// Brings up a lab with `hosts` hosts and both daemons in each, waiting until every link
    /// is online. Panics with the script's output if that fails (the script has then already
    /// torn everything down).
    pub fn up(prefix: &str, hosts: u8, icc: bool) -> Lab {
        Lab::up_with(
            prefix,
            LabOptions {
                hosts,
                icc,
                ..LabOptions::default()
            },
        )
    }

    /// [`Lab::up`] with all options.
    pub fn up_with(prefix: &str, opts: LabOptions) -> Lab {
        let bin = if opts.daemons {
            require_binaries()
        } else {
            bin_dir()
        };
        let out = lab_sh(prefix, &opts, &["up"]);
        if !out.status.success() {
            // `up` tears down after itself; make sure, since no Lab exists to drop.
            let _ = lab_sh(prefix, &opts, &["down"]);
            panic!(
                "scripts/lab.sh up (prefix {prefix}) failed:\n{}",
                show(&out)
            );
        }
        Lab {
            prefix: prefix.to_string(),
            dir: lab_dir(prefix),
            opts,
            bin,
            torn_down: false,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The state dir: `h<i>/config.json`, the logs and pidfiles.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn hosts(&self) -> u8 {
        self.opts.hosts
    }

    /// Host names, `h1`..`hN`.
    pub fn host_names(&self) -> Vec<String> {
        (1..=self.opts.hosts).map(|h| format!("h{h}")).collect()
    }

    /// Container names, `h1c1`, `h1c2`, `h2c1`, ... (in a lab of 10 hosts or more, one per
    /// host: `h1c1`, `h2c1`, ...).
    pub fn containers(&self) -> Vec<String> {
        let per_host = if self.is_wide() { 1 } else { 2 };
        (1..=self.opts.hosts)
            .flat_map(|h| (1..=per_host).map(move |c| format!("h{h}c{c}")))
            .collect()
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The namespace name of a node (`sw`, `h1`, `h1c2`, ...).
    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// Runs `args` in the node's namespace (`ip netns exec`).
    pub fn exec(&self, node: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {}: {e}", self.ns(node)))
    }

    /// [`Lab::exec`] that panics, with the output, unless the command succeeds; returns stdout.
    pub fn exec_ok(&self, node: &str, args: &[&str]) -> String {
        let out = self.exec(node, args);
        assert!(
            out.status.success(),
            "{node}: {args:?} failed:\n{}",
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends `bytes` random bytes over TCP from container `from` to container `to` (port
    /// 5201), each side bounded to 60 s, and returns the hashes of what was sent and received.
    pub fn tcp_transfer(&self, from: &str, to: &str, bytes: u64) -> Transfer {
        self.tcp_transfer_to(from, to, &ip4(to), "5201", bytes)
    }

    /// [`Lab::tcp_transfer`] to address `ip` and `port` of container `to` (another interface
    /// of it, such as a VLAN, or a second transfer at once on another port).
    pub fn tcp_transfer_to(
        &self,
        from: &str,
        to: &str,
        ip: &str,
        port: &str,
        bytes: u64,
    ) -> Transfer {
        let sink = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns(to),
                "timeout",
                "60",
                "python3",
                "-c",
            ])
            .args([TCP_SINK, ip, port])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the TCP receiver in {to}: {e}"));
        let bytes_arg = bytes.to_string();
        let source = self.exec(
            from,
            &[
                "timeout", "60", "python3", "-c", TCP_SOURCE, ip, port, &bytes_arg,
            ],
        );
        let sink = sink
            .wait_with_output()
            .unwrap_or_else(|e| panic!("TCP receiver in {to}: {e}"));
        let sent = String::from_utf8_lossy(&source.stdout).trim().to_string();
        let got = String::from_utf8_lossy(&sink.stdout).to_string();
        let mut words = got.split_whitespace();
        Transfer {
            sent_sha256: if source.status.success() {
                sent
            } else {
                format!("(sender failed: {})", show(&source))
            },
            received_sha256: words
                .next()
                .map(str::to_string)
                .unwrap_or_else(|| format!("(receiver failed: {})", show(&sink))),
            received_bytes: words.next().and_then(|n| n.parse().ok()).unwrap_or(0),
        }
    }

    /// The MAC address of interface `dev` in the node's namespace (`eth0` of a container,
    /// `lxcbr0` of a host).
    pub fn mac_of(&self, node: &str, dev: &str) -> String {
        self.exec_ok(node, &["cat", &format!("/sys/class/net/{dev}/address")])
            .trim()
            .to_string()
    }

    /// The MAC the node's neighbour table holds for `ip`, if any.
    pub fn neigh_mac(&self, node: &str, ip: &str) -> Option<String> {
        let out = self.exec_ok(node, &["ip", "neigh", "show", ip]);
        let words: Vec<&str> = out.split_whitespace().collect();
        words
            .iter()
            .position(|w| *w == "lladdr")
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    }

    /// Pings IPv4 `to` from `from` with `count` requests 0.2 s apart, bounded by a deadline
    /// (`-w`) of count × 0.2 + 5 s.
    pub fn ping(&self, from: &str, to: &str, count: u32, size: Option<usize>) -> PingResult {
        self.ping_with(
            from,
            to,
            &PingOpts {
                size,
                ..PingOpts::new(count)
            },
        )
    }

    /// [`Lab::ping`] over IPv6.
    pub fn ping6(&self, from: &str, to: &str, count: u32, size: Option<usize>) -> PingResult {
        self.ping_with(
            from,
            to,
            &PingOpts {
                size,
                ipv6: true,
                ..PingOpts::new(count)
            },
        )
    }

    /// Ping with all options.
    pub fn ping_with(&self, from: &str, to: &str, opts: &PingOpts) -> PingResult {
        let args = opts.args(to);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.exec(from, &args);
        let mut raw = String::from_utf8_lossy(&out.stdout).into_owned();
        raw.push_str(&String::from_utf8_lossy(&out.stderr));
        parse_ping(&raw)
    }

    /// One JSON-RPC call through `ipop-tincan --rpc` in a host namespace; `Err` carries the
    /// tool's output when the daemon did not answer or answered with an error.
    pub fn rpc(
        &self,
        host: &str,
        port: u16,
        method: &str,
        params: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let tool = self.bin.join("ipop-tincan");
        let tool = tool.to_string_lossy();
        let port = port.to_string();
        let params = params.map(|p| p.to_string());
        let mut args = vec![
            "timeout",
            "10",
            tool.as_ref(),
            "--rpc",
            method,
            "--port",
            &port,
        ];
        if let Some(p) = &params {
            args.extend(["--params", p.as_str()]);
        }
        let out = self.exec(host, &args);
        if !out.status.success() {
            return Err(show(&out));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("--rpc {method}: output is not JSON ({e}):\n{}", show(&out)))
    }

    /// `get_state` of the host's tincan; panics if it does not answer.
    pub fn tincan_state(&self, host: &str) -> serde_json::Value {
        self.rpc(host, TINCAN_PORT, "get_state", None)
            .unwrap_or_else(|e| panic!("{host}: tincan get_state: {e}"))
    }

    /// `get_state` of the host's controller; panics if it does not answer.
    pub fn controller_state(&self, host: &str) -> serde_json::Value {
        self.rpc(host, CONTROLLER_PORT, "get_state", None)
            .unwrap_or_else(|e| panic!("{host}: controller get_state: {e}"))
    }

    /// How many of the host's links its tincan reports "online" (0 if it does not answer).
    pub fn links_online(&self, host: &str) -> usize {
        self.rpc(host, TINCAN_PORT, "get_state", None)
            .ok()
            .and_then(|s| {
                s.get("peers").and_then(|p| p.as_array()).map(|peers| {
                    peers
                        .iter()
                        .filter(|p| p.get("status").and_then(|s| s.as_str()) == Some("online"))
                        .count()
                })
            })
            .unwrap_or(0)
    }

    /// Whether the host's tincan reports its link to `uid` online.
    pub fn peer_online(&self, host: &str, uid: &str) -> bool {
        self.tincan_state(host)["peers"]
            .as_array()
            .is_some_and(|peers| {
                peers
                    .iter()
                    .any(|p| p["uid"] == uid && p["status"] == "online")
            })
    }

    /// Waits until every host's tincan reports all its links online.
    pub fn wait_links_online(&self, timeout: Duration) -> bool {
        let want = usize::from(self.opts.hosts) - 1;
        wait_until(timeout, || {
            self.host_names()
                .iter()
                .all(|h| self.links_online(h) >= want)
        })
    }

    /// A counter of `/proc/net/snmp` in the node's namespace, e.g. ("Icmp", "OutRedirects"),
    /// or of `/proc/net/snmp6` for a group ending in 6, e.g. ("Icmp6", "OutRedirects").
    pub fn snmp_counter(&self, node: &str, group: &str, name: &str) -> u64 {
        let file = if group.ends_with('6') {
            "/proc/net/snmp6"
        } else {
            "/proc/net/snmp"
        };
        let text = self.exec_ok(node, &["cat", file]);
        parse_snmp(&text, group, name)
            .unwrap_or_else(|| panic!("{node}: no counter {group} {name} in {file}"))
    }

    /// Stops a daemon (`scripts/lab.sh kill`: SIGTERM, SIGKILL after 3 s).
    pub fn kill(&self, host: &str, daemon: Daemon) {
        self.script_ok(&["kill", host, daemon.name()]);
    }

    /// Starts a daemon again (`scripts/lab.sh start`); does not wait for it to be ready.
    pub fn start(&self, host: &str, daemon: Daemon) {
        self.script_ok(&["start", host, daemon.name()]);
    }

    /// The daemon's PID from its pidfile; panics when there is none.
    pub fn pid(&self, host: &str, daemon: Daemon) -> u32 {
        let f = self.dir.join(host).join(format!("{}.pid", daemon.name()));
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: not a PID: {text}", f.display()))
    }

    /// Whether the daemon's process is still running.
    pub fn alive(&self, host: &str, daemon: Daemon) -> bool {
        let pidfile = self.dir.join(host).join(format!("{}.pid", daemon.name()));
        let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        else {
            return false;
        };
        // A zombie has an empty command line.
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    }

    /// The last 40 lines of the daemon's log.
    pub fn log_tail(&self, host: &str, daemon: Daemon) -> String {
        let path = self.dir.join(host).join(format!("{}.log", daemon.name()));
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            }
            Err(e) => format!("({}: {e})", path.display()),
        }
    }

    /// `scripts/lab.sh status` output.
    pub fn status(&self) -> String {
        let out = lab_sh(&self.prefix, &self.opts, &["status"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn script_ok(&self, args: &[&str]) {
        let out = lab_sh(&self.prefix, &self.opts, args);
        assert!(
            out.status.success(),
            "scripts/lab.sh {args:?} failed:\n{}",
            show(&out)
        );
    }

    /// Tears the lab down now and returns the script's output (drop does the same, silently).
    pub fn down(mut self) -> Output {
        self.torn_down = true;
        lab_sh(&self.prefix, &self.opts, &["down"])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        if std::thread::panicking() && self.opts.daemons {
            eprintln!("lab {}: test failed; daemon logs:", self.prefix);
            for h in self.host_names() {
                for d in [Daemon::Tincan, Daemon::Controller] {
                    eprintln!("----- {h} {} -----\n{}", d.name(), self.log_tail(&h, d));
                }
            }
        }
        let out = lab_sh(&self.prefix, &self.opts, &["down"]);
        if !out.status.success() {
            eprintln!("lab {}: down failed:\n{}", self.prefix, show(&out));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_output_with_duplicates_is_parsed() {
        let raw = "PING 10.0.3.21 (10.0.3.21) 56(84) bytes of data.\n\
            64 bytes from 10.0.3.21: icmp_seq=1 ttl=64 time=0.301 ms\n\
            64 bytes from 10.0.3.21: icmp_seq=1 ttl=64 time=0.352 ms (DUP!)\n\
            \n--- 10.0.3.21 ping statistics ---\n\
            3 packets transmitted, 3 received, +1 duplicates, 0% packet loss, time 2003ms\n\
            rtt min/avg/max/mdev = 0.301/0.452/0.610/0.100 ms\n";
        let r = parse_ping(raw);
        assert_eq!((r.transmitted, r.received, r.duplicates), (3, 3, 1));
        assert_eq!(r.rtt_avg_ms, Some(0.452));
        assert!(!r.is_clean());
    }

    #[test]
    fn ping_output_with_loss_and_errors_is_parsed() {
        let r = parse_ping(
            "4 packets transmitted, 2 received, +1 errors, 50% packet loss, time 3003ms\n\
             rtt min/avg/max/mdev = 1.3/1.5/1.6/0.1 ms, pipe 2\n",
        );
        assert_eq!((r.transmitted, r.received, r.duplicates), (4, 2, 0));
        assert_eq!(r.rtt_avg_ms, Some(1.5));
        let none = parse_ping("5 packets transmitted, 0 received, 100% packet loss, time 4099ms\n");
        assert_eq!((none.received, none.rtt_avg_ms), (0, None));
        assert!(!none.is_clean());
    }

    #[test]
    fn snmp_counters_are_found_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Icmp: InMsgs InErrors OutMsgs OutRedirects\nIcmp: 10 0 7 3\n\
            IcmpMsg: InType0 OutType8\nIcmpMsg: 4 4\n";
        assert_eq!(parse_snmp(snmp, "Icmp", "OutRedirects"), Some(3));
        assert_eq!(parse_snmp(snmp, "Ip", "DefaultTTL"), Some(64));
        assert_eq!(parse_snmp(snmp, "IcmpMsg", "OutType8"), Some(4));
        assert_eq!(parse_snmp(snmp, "Icmp", "Nope"), None);
        let snmp6 = "Icmp6InMsgs                     \t5\nIcmp6OutRedirects               \t2\n";
        assert_eq!(parse_snmp(snmp6, "Icmp6", "OutRedirects"), Some(2));
    }

    #[test]
    fn node_addresses_follow_the_lab_plan() {
        assert_eq!(ip4("h2c1"), "10.0.3.21");
        assert_eq!(ip4("h3"), "10.0.3.3");
        assert_eq!(ip6("h1c2"), "fd00:3::12");
        assert_eq!(underlay_ip("h2"), "10.99.0.2");
    }

    #[test]
    fn prefixes_are_short_and_unique() {
        let a = prefix("redirect");
        let b = prefix("restart");
        let c = prefix("redirect");
        assert!(a.len() == 5 && b.len() == 5 && c.len() == 5, "{a} {b} {c}");
        assert!(a != b && a != c && b != c, "{a} {b} {c}");
        assert!(a.chars().all(|ch| ch.is_ascii_alphanumeric()));
    }

    #[test]
    fn ping_args_are_bounded() {
        let a = PingOpts::new(10).args("10.0.3.21");
        let w = a.iter().position(|x| x == "-w").expect("-w present");
        assert_eq!(a[w + 1], "7");
        assert!(a.contains(&"-c".to_string()));
    }
}
