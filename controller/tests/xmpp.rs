//! Integration test of the XMPP signalling module (`controller/src/xmpp/`) against a real
//! prosody running as a plain process in a fresh network namespace.
//!
//! Needs root (network namespace) and the Debian packages `prosody` and `openssl`, which
//! `scripts/test.sh` installs. Not root, or prosody missing: skipped with a message, unless
//! CI=true, where that is a failure.
//!
//! The clients run as tasks on one tokio runtime whose single worker thread, named "xmpp", is
//! started inside the namespace; the scenario itself is synchronous and polls their events.

use gvpn_controller::xmpp;
use proto::id::Uid;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::{Handle, Runtime};
use xmpp::{XmppClient, XmppConfig, XmppEvent};

const DOMAIN: &str = "ipop.lab";
const UID_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
const UID_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";
const UID_C: &str = "ccccccccccccccccccccccccccccccccccccccc3";
const UID_D: &str = "ddddddddddddddddddddddddddddddddddddddd4";

/// A uid constant as the typed uid.
fn u(text: &str) -> Uid {
    text.parse().unwrap()
}

static XMPP_THREAD_PANICS: AtomicUsize = AtomicUsize::new(0);

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skip (or, under CI, fail) when the environment cannot run the test.
fn preconditions() -> bool {
    let mut missing = Vec::new();
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_owned());
    }
    for cmd in ["ip", "prosody", "prosodyctl", "openssl"] {
        if !have(cmd) {
            missing.push(cmd.to_owned());
        }
    }
    if missing.is_empty() {
        return true;
    }
    if ci() {
        panic!(
            "CI=true but this test needs: {} (run the tests as root with scripts/test.sh, \
             which installs prosody and openssl)",
            missing.join(", ")
        );
    }
    if missing == ["root"] {
        println!("skipped: needs root");
    } else {
        println!(
            "skipped: needs {} (scripts/test.sh installs them)",
            missing.join(", ")
        );
    }
    false
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace, its prosody and the temp dir; torn down on drop, also after a panic.
struct Lab {
    ns: String,
    dir: PathBuf,
    prosody: Option<Child>,
    ns_created: bool,
}

/// Remove the namespaces (and the prosody in them) and temp dirs of earlier runs of this test
/// that were killed before their guard ran (SIGKILL, SIGPIPE): `xmpptest<pid>` whose pid is gone.
fn reap_stale_namespaces() {
    let Ok(dir) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = ["xmpptest", "xmpptrust"]
            .iter()
            .find_map(|pre| name.strip_prefix(pre))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
            for p in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = p.parse::<i32>() {
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        eprintln!("removed stale namespace {name} (test process {pid} is gone)");
        if let Ok(tmp) = fs::read_dir(std::env::temp_dir()) {
            let prefix = format!("xmpptest-{pid}-");
            for d in tmp.flatten() {
                if d.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = fs::remove_dir_all(d.path());
                }
            }
        }
    }
}

impl Lab {
    /// `name`: "test" or "trust", one namespace per test of this file (they run in parallel).
    fn new(name: &str) -> Lab {
        reap_stale_namespaces();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag = format!("{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(format!("xmpptest-{tag}"));
        let mut lab = Lab {
            ns: format!("xmpp{name}{}", std::process::id()),
            dir,
            prosody: None,
            ns_created: false,
        };
        let _ = fs::remove_dir_all(&lab.dir);
        fs::create_dir_all(lab.dir.join("data")).unwrap();
        run(Command::new("ip").args(["netns", "add", &lab.ns]));
        lab.ns_created = true;
        run(Command::new("ip").args(["-n", &lab.ns, "link", "set", "lo", "up"]));
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn openssl(&self, args: &[&str]) {
        run(Command::new("openssl").current_dir(&self.dir).args(args));
    }

    /// ca.pem signs leaf.pem (SAN ipop.lab); self.pem is a bare `openssl req -x509` self-signed
    /// certificate (CA:TRUE, no SAN), as labs often make; other-ca.pem is unrelated.
    fn make_certs(&self) {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let ca = [
            &["req", "-x509", "-nodes", "-days", "2"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=ipop test CA",
            ],
        ]
        .concat();
        self.openssl(&ca);
        let csr = [
            &["req", "-nodes"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=ipop.lab",
            ],
        ]
        .concat();
        self.openssl(&csr);
        fs::write(
            self.path("leaf.ext"),
            "subjectAltName=DNS:ipop.lab\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "leaf.pem",
            "-extfile",
            "leaf.ext",
        ]);
        let selfsigned = [
            &["req", "-x509", "-nodes", "-days", "2"][..],
            &ec,
            &[
                "-keyout",
                "self.key",
                "-out",
                "self.pem",
                "-subj",
                "/CN=ipop.lab",
            ],
        ]
        .concat();
        self.openssl(&selfsigned);
        let other = [
            &["req", "-x509", "-nodes", "-days", "2"][..],
            &ec,
            &[
                "-keyout",
                "other.key",
                "-out",
                "other-ca.pem",
                "-subj",
                "/CN=other CA",
            ],
        ]
        .concat();
        self.openssl(&other);
        // The clients' xmpp_ca: a bundle of the lab CA and the self-signed server certificate.
        let mut bundle = fs::read(self.path("ca.pem")).unwrap();
        bundle.extend(fs::read(self.path("self.pem")).unwrap());
        fs::write(self.path("bundle.pem"), bundle).unwrap();
    }

    /// prosody config serving `cert`/`key`; shared roster group with node1 and node2.
    fn write_config(&self, cert: &str, key: &str) {
        self.write_config_with_group(cert, key, &["node1", "node2"]);
    }

    /// prosody config serving `cert`/`key`; one shared roster group of `members`.
    fn write_config_with_group(&self, cert: &str, key: &str, members: &[&str]) {
        let d = self.dir.display();
        let group: String = members.iter().map(|m| format!("{m}@{DOMAIN}\n")).collect();
        fs::write(self.path("groups.txt"), format!("[ipop]\n{group}")).unwrap();
        let cfg = format!(
            r#"-- generated by controller/tests/xmpp.rs
run_as_root = true
daemonize = false
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
certificates = "{d}"
plugin_paths = {{}}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ 5222 }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "presence"; "posix"; "smacks"; "groups" }}
modules_disabled = {{ "s2s"; "offline" }}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
groups_file = "{d}/groups.txt"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }} }}
ssl = {{ certificate = "{d}/{cert}"; key = "{d}/{key}" }}
VirtualHost "{DOMAIN}"
"#
        );
        fs::write(self.path("prosody.cfg.lua"), cfg).unwrap();
    }

    fn register(&self, user: &str, password: &str) {
        let cfg = self.path("prosody.cfg.lua");
        run(Command::new("prosodyctl")
            .arg("--config")
            .arg(&cfg)
            .args(["register", user, DOMAIN, password]));
    }

    fn start_prosody(&mut self) {
        assert!(self.prosody.is_none());
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("prosody.out"))
            .unwrap();
        // `ip netns exec` execs prosody: the child's PID is prosody's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "prosody", "-F", "--config"])
            .arg(self.path("prosody.cfg.lua"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn prosody");
        self.prosody = Some(child);
    }

    /// Called from inside the namespace.
    fn wait_listening(&mut self) {
        let addr: SocketAddr = "127.0.0.1:5222".parse().unwrap();
        let t0 = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(st) = self
                .prosody
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("prosody exited: {st}\n{}", self.logs());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "prosody not listening within 15 s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_prosody(&mut self) {
        if let Some(mut c) = self.prosody.take() {
            let _ = c.kill(); // SIGKILL to that PID
            let _ = c.wait();
        }
    }

    fn logs(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.path(n)).unwrap_or_default();
        format!(
            "--- prosody.out\n{}--- prosody.log\n{}",
            read("prosody.out"),
            read("prosody.log")
        )
    }

    /// Move the calling thread (and the threads it starts) into the namespace.
    fn enter(&self) {
        let f = fs::File::open(format!("/run/netns/{}", self.ns)).unwrap();
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_prosody();
        if self.ns_created {
            let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        }
        if std::thread::panicking() {
            eprintln!("lab dir kept for inspection: {}", self.dir.display());
            eprintln!("{}", self.logs());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// One client and everything it reported.
struct Node {
    name: &'static str,
    client: Option<XmppClient>,
    rt: Handle,
    events: Vec<XmppEvent>,
}

impl Node {
    fn start(
        rt: &Runtime,
        name: &'static str,
        user: &str,
        password: &str,
        uid: &str,
        ca: &Path,
    ) -> Node {
        let _in_rt = rt.enter();
        let client = XmppClient::start(XmppConfig {
            host: "127.0.0.1".into(),
            port: 5222,
            username: format!("{user}@{DOMAIN}"),
            password: password.into(),
            uid: u(uid),
            ca_file: Some(ca.to_path_buf()),
            allow: None,
        });
        Node {
            name,
            client: Some(client),
            rt: rt.handle().clone(),
            events: Vec::new(),
        }
    }

    fn c(&self) -> &XmppClient {
        self.client.as_ref().unwrap()
    }

    fn pump(&mut self) {
        while let Some(ev) = self.client.as_mut().and_then(|c| c.try_recv()) {
            eprintln!("[{:.1}] {}: {ev:?}", now(), self.name);
            self.events.push(ev);
        }
    }

    /// Index to search from for events that happen after now.
    fn mark(&mut self) -> usize {
        self.pump();
        self.events.len()
    }

    fn count(&mut self, since: usize, pred: impl Fn(&XmppEvent) -> bool) -> usize {
        self.pump();
        self.events[since..].iter().filter(|e| pred(e)).count()
    }

    /// First event since `since` matching `pred`, waiting up to `within`.
    fn wait(
        &mut self,
        since: usize,
        within: Duration,
        what: &str,
        pred: impl Fn(&XmppEvent) -> bool,
    ) -> XmppEvent {
        let t0 = Instant::now();
        loop {
            self.pump();
            if let Some(ev) = self.events[since..].iter().find(|e| pred(e)) {
                return ev.clone();
            }
            assert!(
                t0.elapsed() < within,
                "{}: no {what} within {within:?}; events since mark: {:?}",
                self.name,
                &self.events[since..]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_stat(&self, within: Duration, what: &str, pred: impl Fn(&xmpp::XmppStats) -> bool) {
        let t0 = Instant::now();
        while !pred(&self.c().stats()) {
            assert!(
                t0.elapsed() < within,
                "{}: {what} not reached within {within:?}: {:?}",
                self.name,
                self.c().stats()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop, bounded.
    fn stop(&mut self) {
        let t0 = Instant::now();
        if let Some(c) = self.client.take() {
            self.rt.block_on(c.stop());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(6),
            "{}: stop took {:?}",
            self.name,
            t0.elapsed()
        );
    }
}

fn now() -> f64 {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn is_online(e: &XmppEvent) -> bool {
    matches!(e, XmppEvent::Online)
}

fn is_offline(e: &XmppEvent) -> bool {
    matches!(e, XmppEvent::Offline(_))
}

fn sees(uid: &'static str) -> impl Fn(&XmppEvent) -> bool {
    move |e| matches!(e, XmppEvent::PeerAvailable { uid: got, .. } if *got == u(uid))
}

fn msg(uid: &'static str, ty: &'static str, data: &'static str) -> impl Fn(&XmppEvent) -> bool {
    move |e| {
        matches!(e, XmppEvent::Message { uid: got, msg_type: t, data: d }
            if *got == u(uid) && t == ty && d == data)
    }
}

const S: fn(u64) -> Duration = Duration::from_secs;

/// Enters the namespace, starts the clients' runtime (its worker thread, named "xmpp", in the
/// namespace) and prosody.
fn start_in_lab(lab: &mut Lab) -> Runtime {
    lab.enter();
    // Entered before the runtime starts its worker: the worker thread is in the namespace.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("xmpp")
        .enable_all()
        .build()
        .unwrap();
    lab.start_prosody();
    lab.wait_listening();
    rt
}

fn scenario(lab: &mut Lab) {
    let rt = start_in_lab(lab);
    eprintln!("[{:.1}] prosody up in {}", now(), lab.ns);

    let bundle = lab.path("bundle.pem");
    let mut a = Node::start(&rt, "A", "node1", "secret-a", UID_A, &bundle);
    let mut b = Node::start(&rt, "B", "node2", "secret-b", UID_B, &bundle);
    // Wrong password for an existing account.
    let mut c = Node::start(&rt, "C", "node1", "wrong", UID_C, &bundle);
    // Trusts neither the lab CA nor the server certificate.
    let other_ca = lab.path("other-ca.pem");
    let mut d = Node::start(&rt, "D", "node2", "secret-b", UID_D, &other_ca);

    // 1. Login and discovery.
    a.wait(0, S(15), "Online", is_online);
    b.wait(0, S(15), "Online", is_online);
    let ev = a.wait(0, S(10), "PeerAvailable(B)", sees(UID_B));
    assert_eq!(
        ev,
        XmppEvent::PeerAvailable {
            uid: u(UID_B),
            jid: format!("node2@{DOMAIN}/tincan{UID_B}")
        }
    );
    b.wait(0, S(10), "PeerAvailable(A)", sees(UID_A));
    assert_eq!(a.count(0, sees(UID_A)), 0, "A must not discover itself");

    // 2. Wrong password: one AuthFailed, then silence and the session task ends.
    let ev = c.wait(0, S(15), "AuthFailed", |e| {
        matches!(e, XmppEvent::AuthFailed(_))
    });
    eprintln!("C: {ev:?}");
    let t0 = Instant::now();
    while !c.c().is_finished() {
        assert!(
            t0.elapsed() < S(5),
            "C: session task still running after AuthFailed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(S(3));
    assert_eq!(c.count(0, |_| true), 1, "C: events {:?}", c.events);
    c.stop();

    // 3. Unknown certificate: Offline with a TLS reason, retried, never AuthFailed.
    let ev = d.wait(0, S(10), "Offline", is_offline);
    let XmppEvent::Offline(reason) = &ev else {
        unreachable!()
    };
    assert!(
        reason.contains("TLS") && reason.contains("certificate"),
        "D: {reason}"
    );
    assert_eq!(
        d.count(0, |e| !is_offline(e)),
        0,
        "D: events {:?}",
        d.events
    );
    d.stop();

    // 4. Messages both ways, type and data intact (spaces, XML specials, non-ASCII).
    const DATA: &str = "  AB:CD:EF 1:1:udp:10.0.0.1:5000:2130706431:u:p:local:eth0:0:1 <&>\"' é ";
    let mb = b.mark();
    a.c().send(u(UID_B), "con_req", DATA);
    b.wait(mb, S(5), "con_req from A", msg(UID_A, "con_req", DATA));
    let ma = a.mark();
    b.c().send(u(UID_A), "con_resp", "fpr cand1 cand2");
    a.wait(
        ma,
        S(5),
        "con_resp from B",
        msg(UID_B, "con_resp", "fpr cand1 cand2"),
    );
    let mb = b.mark();
    a.c().send(u(UID_B), "empty", "");
    b.wait(mb, S(5), "empty data", msg(UID_A, "empty", ""));
    // B answered A's queries with IQ results (the original never did).
    a.wait_stat(S(5), "iq_results >= 2", |s| s.iq_results >= 2);
    b.wait_stat(S(5), "iq_results >= 1", |s| s.iq_results >= 1);
    assert_eq!(b.c().stats().received, 2);

    // 5. Malformed queries are counted and ignored; the session survives.
    let mb = b.mark();
    let no_type = xmpp_query(&[("data", "x")]);
    let no_data = xmpp_query(&[("type", "con_req")]);
    a.c().send_raw_query(u(UID_B), no_type);
    a.c().send_raw_query(u(UID_B), no_data);
    b.wait_stat(S(5), "malformed == 2", |s| s.malformed == 2);
    a.c().send(u(UID_B), "after", "malformed");
    b.wait(
        mb,
        S(5),
        "message after malformed",
        msg(UID_A, "after", "malformed"),
    );
    assert_eq!(
        b.count(mb, |e| matches!(e, XmppEvent::Message { .. })),
        1,
        "B: {:?}",
        &b.events[mb..]
    );
    assert_eq!(b.count(mb, is_offline), 0);

    // 6. Unknown uid: dropped, counted.
    let dropped = a.c().stats().dropped;
    a.c().send(u(&"e".repeat(40)), "con_req", "x");
    a.wait_stat(S(5), "dropped + 1", |s| s.dropped == dropped + 1);

    // 7. The server dies and comes back (now with the self-signed certificate, accepted
    //    because it is in xmpp_ca): both clients reconnect by themselves.
    let (ma, mb) = (a.mark(), b.mark());
    let killed = Instant::now();
    lab.kill_prosody();
    eprintln!("[{:.1}] prosody killed", now());
    a.wait(ma, S(10), "Offline after kill", is_offline);
    b.wait(mb, S(10), "Offline after kill", is_offline);
    std::thread::sleep(S(2));
    lab.write_config("self.pem", "self.key");
    lab.start_prosody();
    lab.wait_listening();
    eprintln!("[{:.1}] prosody restarted", now());
    a.wait(ma, S(45), "Online after restart", is_online);
    b.wait(mb, S(45), "Online after restart", is_online);
    eprintln!(
        "[{:.1}] both back online {:.1} s after the kill",
        now(),
        killed.elapsed().as_secs_f64()
    );
    a.wait(ma, S(15), "PeerAvailable(B) after restart", sees(UID_B));
    b.wait(mb, S(15), "PeerAvailable(A) after restart", sees(UID_A));
    assert_eq!(
        a.count(ma, is_offline),
        1,
        "one Offline per loss: {:?}",
        &a.events[ma..]
    );
    let mb2 = b.mark();
    a.c().send(u(UID_B), "con_req", "after restart");
    b.wait(
        mb2,
        S(5),
        "message after restart",
        msg(UID_A, "con_req", "after restart"),
    );
    assert_eq!(a.c().stats().logins, 2);

    // 8. A node leaving is seen as unavailable.
    let ma = a.mark();
    b.stop();
    a.wait(
        ma,
        S(10),
        "PeerUnavailable(B)",
        |e| matches!(e, XmppEvent::PeerUnavailable { uid } if *uid == u(UID_B)),
    );
    a.stop();
}

fn xmpp_query(children: &[(&str, &str)]) -> tokio_xmpp::minidom::Element {
    let mut q = tokio_xmpp::minidom::Element::builder("query", xmpp::NS_TINCAN);
    for (name, text) in children {
        q = q.append(
            tokio_xmpp::minidom::Element::builder(*name, xmpp::NS_TINCAN)
                .append(*text)
                .build(),
        );
    }
    q.build()
}

#[test]
fn xmpp_signalling_against_prosody() {
    if !preconditions() {
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("xmpp") {
            XMPP_THREAD_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        prev(info)
    }));
    now();

    let mut lab = Lab::new("test");
    lab.make_certs();
    lab.write_config("leaf.pem", "leaf.key");
    lab.register("node1", "secret-a");
    lab.register("node2", "secret-b");
    // The scenario runs on its own thread, which enters the namespace; the Lab guard stays on
    // this thread and cleans up whatever happens there.
    std::thread::scope(|s| {
        s.spawn(|| scenario(&mut lab));
    });
    assert_eq!(
        XMPP_THREAD_PANICS.load(Ordering::SeqCst),
        0,
        "a panic happened on an XMPP thread"
    );
    let _ = std::io::stderr().flush();
}

// ---- The controller's trust in signalling, against the same prosody ----------------------

mod trust {
    use super::*;
    use gvpn_controller::controller::Controller;
    use proto::config::Config;
    use serde_json::{json, Value};
    use std::net::UdpSocket;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    const F1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const F2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const EVIL: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    const K5: &str = "5555555555555555555555555555555555555555555555555555555555555555";
    const K6: &str = "6666666666666666666666666666666666666666666666666666666666666666";

    fn uid_of(ip4: &str) -> String {
        Uid::from_ip4(ip4.parse().unwrap()).to_string()
    }

    /// Stands in for ipop-tincan on its control socket: answers `get_state` as a configured
    /// tincan with key F1 and one host candidate, acknowledges everything else, and records
    /// every request.
    fn fake_tincan(listener: UnixListener, log: Arc<Mutex<Vec<Value>>>) {
        use std::io::{BufRead, BufReader, Write};
        let state = json!({
            "type": "local_state", "_uid": uid_of("10.0.3.1"), "_ip4": "10.0.3.1", "_fpr": F1,
            "_mac": "02:00:00:00:00:01", "sec": true, "rekey_after_secs": 120,
            "candidates": ["host:10.0.0.1:5900"],
            "nat": {"srflx": null, "relay": null, "turn_server": null, "mapping": "unknown",
                    "stun_responses": 0, "relayed_in": 0, "relayed_out": 0},
            "tap": "ipop", "mtu": 1400, "version": "test", "boot_id": 7, "uptime_ms": 5,
            "configured": true, "switchmode": 1, "icc": true, "controller_alive": true,
            "link_port": 5900, "counters": {}, "peers": [], "macs": []
        });
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut out = stream.try_clone().unwrap();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else {
                return;
            };
            let Ok(req) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let result = if req["method"] == "get_state" {
                state.clone()
            } else {
                log.lock().unwrap().push(req.clone());
                json!(true)
            };
            if !req["id"].is_null() {
                let answer = json!({"jsonrpc": "2.0", "id": req["id"], "result": result});
                let _ = out.write_all(format!("{answer}\n").as_bytes());
            }
        }
    }

    /// The controller's `get_state`; null when it does not answer within a second (it may
    /// not have bound its port yet).
    fn controller_state(client: &UdpSocket, port: u16) -> Value {
        let q = json!({"jsonrpc": "2.0", "id": 1, "method": "get_state", "params": {}});
        client
            .send_to(q.to_string().as_bytes(), ("127.0.0.1", port))
            .unwrap();
        let mut buf = [0u8; 65536];
        match client.recv_from(&mut buf) {
            Ok((n, _)) => serde_json::from_slice::<Value>(&buf[..n]).unwrap()["result"].clone(),
            Err(_) => Value::Null,
        }
    }

    fn counter(state: &Value, name: &str) -> u64 {
        state["counters"][name].as_u64().unwrap_or(0)
    }

    fn wait_state(
        client: &UdpSocket,
        port: u16,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let t0 = Instant::now();
        loop {
            let s = controller_state(client, port);
            if pred(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < S(20),
                "controller: no {what} within 20 s: {s:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn create_links(log: &Mutex<Vec<Value>>) -> Vec<Value> {
        log.lock()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == "create_link")
            .map(|r| r["params"].clone())
            .collect()
    }

    pub(super) fn scenario(lab: &mut Lab) {
        let rt = start_in_lab(lab);
        let bundle = lab.path("bundle.pem");

        // The victim: a controller (node1, 10.0.3.1) with one static peer 10.0.3.2 pinned to
        // F2, its tincan stood in for.
        let svpn_port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let name = format!("ipop-tincan/{svpn_port}");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let tincan = UnixListener::bind_addr(&addr).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let tlog = log.clone();
        std::thread::spawn(move || fake_tincan(tincan, tlog));
        let icc_port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let key_file = lab.path("node1.key");
        let text = json!({
            "switchmode": 1, "ip4": "10.0.3.1", "sec": true,
            "svpn_port": svpn_port, "icc_port": icc_port, "stun": [],
            "xmpp_username": format!("node1@{DOMAIN}"), "xmpp_password": "secret-a",
            "xmpp_host": "127.0.0.1", "xmpp_ca": bundle,
            "key_file": key_file,
            "peers": [{"ip4": "10.0.3.2", "endpoint": "192.0.2.2:5900", "fpr": F2}]
        })
        .to_string();
        let (cfg, _) = Config::from_json_layers(&[(&text, "test")]).unwrap();
        // Its own runtime on its own thread (started here: in the namespace); it runs until
        // the test process ends.
        Controller::spawn_thread(cfg, key_file);
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        wait_state(&client, icc_port, "XMPP online with signalling", |s| {
            s["xmpp"] == "online" && s["signalling"].is_array()
        });
        let u1 = uid_of("10.0.3.1");
        let u2 = uid_of("10.0.3.2");
        let u4 = uid_of("10.0.3.4");
        let u5 = uid_of("10.0.3.5");
        let leak_u2: &'static str = Box::leak(u2.clone().into_boxed_str());
        let leak_u1: &'static str = Box::leak(u1.clone().into_boxed_str());

        // 1. Another account of the overlay (node3, on the roster) claims the static peer's
        //    uid with its own key: no link, counted.
        let mut evil = Node::start(&rt, "evil", "node3", "secret-c", leak_u2, &bundle);
        evil.wait(0, S(15), "PeerAvailable(victim)", sees(leak_u1));
        let offer = format!("{EVIL} host:10.9.9.9:5900");
        evil.c().send(u(&u1), "con_req", &offer);
        evil.c().send(u(&u1), "con_resp", &offer);
        let s = wait_state(&client, icc_port, "signal_refused_key", |s| {
            counter(s, "signal_refused_key") >= 2
        });
        eprintln!("[{:.1}] victim counters: {}", now(), s["counters"]);

        // 2. An account that is not on the roster: ignored, counted, not even answered.
        let mut stranger = Node::start(
            &rt,
            "stranger",
            "node4",
            "secret-d",
            &"4".repeat(40),
            &bundle,
        );
        stranger.wait(0, S(15), "Online", is_online);
        let to = format!("node1@{DOMAIN}/tincan{u1}");
        let q = xmpp::tincan_query("con_resp", &format!("{K6} host:10.9.9.4:5900"));
        stranger.c().send_raw_query_to(&to, q);
        let s = wait_state(&client, icc_port, "xmpp_not_allowed", |s| {
            counter(s, "xmpp_not_allowed") >= 1
        });
        assert_eq!(counter(&s, "xmpp_received"), 2, "{:#}", s["counters"]);
        assert_eq!(
            stranger.count(0, sees(leak_u1)),
            0,
            "the stranger saw the victim"
        );
        let _ = u4;

        // 3. The real peer (node2) offers its configured key: it links.
        let mut real = Node::start(&rt, "real", "node2", "secret-b", leak_u2, &bundle);
        real.wait(0, S(15), "PeerAvailable(victim)", sees(leak_u1));
        real.c()
            .send(u(&u1), "con_resp", &format!("{F2} host:10.0.0.2:5900"));
        let t0 = Instant::now();
        let linked = loop {
            let found = create_links(&log)
                .into_iter()
                .find(|p| p["uid"] == u2.as_str() && p["endpoint"].is_null() && p["fpr"] == F2);
            if let Some(p) = found {
                break p;
            }
            assert!(
                t0.elapsed() < S(10),
                "no create_link for the real peer: {:?}",
                create_links(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(linked["candidates"], json!(["host:10.0.0.2:5900"]));

        // 4. Trust on first use: a new node (10.0.3.5) links with K5, which is persisted
        //    beside the key file; a message with another key for it is refused.
        let mut newcomer = Node::start(
            &rt,
            "newcomer",
            "node3",
            "secret-c",
            Box::leak(u5.clone().into_boxed_str()),
            &bundle,
        );
        newcomer.wait(0, S(15), "PeerAvailable(victim)", sees(leak_u1));
        newcomer
            .c()
            .send(u(&u1), "con_resp", &format!("{K5} host:10.0.0.5:5900"));
        let t0 = Instant::now();
        while !create_links(&log)
            .iter()
            .any(|p| p["uid"] == u5.as_str() && p["fpr"] == K5)
        {
            assert!(t0.elapsed() < S(10), "no create_link for the newcomer");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Persisted once the link is made (the file is written after the request to tincan).
        let line = format!("{u5} {K5}");
        let t0 = Instant::now();
        loop {
            let learned = fs::read_to_string(lab.path("node1.key.learned")).unwrap_or_default();
            if learned.contains(&line) {
                break;
            }
            assert!(
                t0.elapsed() < S(5),
                "{line} not in the learned keys: {learned:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        newcomer
            .c()
            .send(u(&u1), "con_resp", &format!("{K6} host:10.9.9.5:5900"));
        let s = wait_state(&client, icc_port, "signal_refused_new_key", |s| {
            counter(s, "signal_refused_new_key") >= 1
        });

        // What the attackers got: no link with their keys, for any uid.
        let links = create_links(&log);
        for bad in [EVIL, K6] {
            assert!(
                !links.iter().any(|p| p["fpr"] == bad),
                "a link with {bad}: {links:?}"
            );
        }
        assert!(!links.iter().any(|p| p["uid"] == u4.as_str()));
        let signalled: Vec<&Value> = s["signalling"].as_array().unwrap().iter().collect();
        assert!(
            signalled
                .iter()
                .any(|p| p["uid"] == u2.as_str() && p["fpr"] == F2),
            "{signalled:?}"
        );
        assert_eq!(counter(&s, "signal_refused_key"), 2, "{:#}", s["counters"]);
        for n in [&mut evil, &mut stranger, &mut real, &mut newcomer] {
            n.stop();
        }
    }
}

#[test]
fn signalling_refuses_strangers_and_other_keys() {
    if !preconditions() {
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    now();
    let mut lab = Lab::new("trust");
    lab.make_certs();
    lab.write_config_with_group("leaf.pem", "leaf.key", &["node1", "node2", "node3"]);
    lab.register("node1", "secret-a");
    lab.register("node2", "secret-b");
    lab.register("node3", "secret-c");
    lab.register("node4", "secret-d");
    std::thread::scope(|s| {
        s.spawn(|| trust::scenario(&mut lab));
    });
}
