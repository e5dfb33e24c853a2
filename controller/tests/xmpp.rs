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
        let Some(pid) = name
            .strip_prefix("xmpptest")
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
    fn new() -> Lab {
        reap_stale_namespaces();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag = format!("{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(format!("xmpptest-{tag}"));
        let mut lab = Lab {
            ns: format!("xmpptest{}", std::process::id()),
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
        let d = self.dir.display();
        fs::write(
            self.path("groups.txt"),
            format!("[ipop]\nnode1@{DOMAIN}\nnode2@{DOMAIN}\n"),
        )
        .unwrap();
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

fn scenario(lab: &mut Lab) {
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

    let mut lab = Lab::new();
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
