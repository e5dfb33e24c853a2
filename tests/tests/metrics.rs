//! The controller's Prometheus endpoint (`metrics_port`), scraped from inside a lab host and
//! parsed by the Prometheus project's own OpenMetrics parser (python3-prometheus-client): the
//! per-peer counters count the pings and a bulk transfer across the overlay, the RTT is
//! tincan's, the port is on 127.0.0.1 only and absent without the key, and a local client that
//! sends an endless request or keeps opening connections that send nothing stops neither a
//! scrape nor the overlay.

use ipop_lab_tests::{
    ip4, prefix, require_root, underlay_ip, wait_until, workspace_root, Daemon, Lab,
};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PORT: u16 = 9310;
/// Debian's python3, where python3-prometheus-client installs (not a python3 of the PATH).
const PYTHON: &str = "/usr/bin/python3";

/// Fetches `argv[1]` and prints the parsed families as JSON; a text the parser refuses
/// fails the script.
const SCRAPE_PY: &str = r#"
import json, sys, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=5) as r:
    ctype = r.headers.get("Content-Type")
    text = r.read().decode()
fams = [{"name": f.name, "type": f.type, "unit": f.unit, "help": f.documentation,
         "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
        for f in text_string_to_metric_families(text)]
print(json.dumps({"content_type": ctype, "families": fams}))
"#;

/// Exits 0 if a TCP connection to argv[1]:argv[2] is refused, 1 if it is accepted.
const REFUSED_PY: &str = r#"
import socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except ConnectionRefusedError:
    sys.exit(0)
sys.exit(1)
"#;

/// For argv[2] seconds against 127.0.0.1:argv[1], five times a second: opens 24 new
/// connections that send nothing (closing the previous ones), and sends an endless request
/// head on another. Prints how many heads were cut off with an answer.
const HOSTILE_PY: &str = r#"
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
end = time.time() + secs
def conn():
    s = socket.socket()
    s.settimeout(1)
    s.connect(("127.0.0.1", port))
    return s
silent, cut = [], 0
while time.time() < end:
    for s in silent:
        s.close()
    silent = [conn() for _ in range(24)]
    s = conn()
    try:
        for _ in range(64):
            s.sendall(b"X" * 1024)
    except OSError:
        pass
    try:
        if s.recv(64).startswith(b"HTTP/1.1 431"):
            cut += 1
    except OSError:
        pass
    s.close()
    time.sleep(0.2)
print(cut)
"#;

/// Installs python3-prometheus-client when it is missing (scripts/test.sh normally has).
fn ensure_parser() {
    let has = || {
        Command::new(PYTHON)
            .args(["-c", "import prometheus_client.openmetrics.parser"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has() {
        return;
    }
    let lib = workspace_root().join("scripts/lablib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "LAB_SCRIPT=metrics-test; source '{}' && ensure_packages python3-prometheus-client",
            lib.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success() && has(),
        "python3-prometheus-client: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The parsed scrape of `path` on the host's endpoint, or the script's output.
fn scrape(lab: &Lab, host: &str, path: &str) -> Result<Value, String> {
    let url = format!("http://127.0.0.1:{PORT}{path}");
    let out = lab.exec(host, &["timeout", "10", PYTHON, "-c", SCRAPE_PY, &url]);
    if !out.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}"))
}

fn refused(lab: &Lab, from: &str, addr: &str) -> bool {
    let port = PORT.to_string();
    let out = lab.exec(
        from,
        &["timeout", "10", PYTHON, "-c", REFUSED_PY, addr, &port],
    );
    out.status.code() == Some(0)
}

/// A family of the scrape; the parser leaves out one without samples.
fn family<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["families"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
}

/// The value of sample `sample` of family `name` whose labels include `labels`.
fn value(s: &Value, name: &str, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
    family(s, name)?["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == sample && labels.iter().all(|(k, v)| x["labels"][*k] == *v))
        .map(|x| x["value"].as_f64().unwrap())
}

/// The host's link to `uid` in its tincan's get_state.
fn link_to(lab: &Lab, host: &str, uid: &str) -> Value {
    lab.tincan_state(host)["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["uid"] == uid)
        .cloned()
        .unwrap_or_else(|| panic!("{host} has no link to {uid}"))
}

/// Restarts the host's controller with `metrics_port` (a change that needs a restart) and
/// waits for a scrape that says tincan is up.
fn enable_metrics(lab: &Lab, host: &str) {
    lab.kill(host, Daemon::Controller);
    let path = lab.dir().join(host).join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg["metrics_port"] = PORT.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    lab.start(host, Daemon::Controller);
    let up = wait_until(Duration::from_secs(10), || {
        scrape(lab, host, "/metrics")
            .is_ok_and(|s| value(&s, "ipop_tincan_up", "ipop_tincan_up", &[]) == Some(1.0))
    });
    assert!(
        up,
        "{host}: no scrape with ipop_tincan_up 1: {:?}\n{}",
        scrape(lab, host, "/metrics").err(),
        lab.log_tail(host, Daemon::Controller)
    );
}

/// The RTT gauge is tincan's `rtt_ms` in seconds, present exactly when tincan has one (the
/// side that started the last handshake measures it); true when present.
fn rtt_matches_tincan(lab: &Lab, host: &str, peer: &[(&str, &str)]) -> bool {
    let s = scrape(lab, host, "/metrics").unwrap();
    let rtt = value(&s, "ipop_peer_rtt_seconds", "ipop_peer_rtt_seconds", peer);
    let link = link_to(lab, host, peer[0].1);
    let want = link["rtt_ms"].as_f64().map(|ms| ms / 1000.0);
    assert_eq!(rtt, want, "{host}: {link}");
    // Whole milliseconds: 0 is possible on a lab.
    assert!(
        rtt.is_none_or(|r| (0.0..1.0).contains(&r)),
        "{host}: rtt {rtt:?} s"
    );
    rtt.is_some()
}

#[test]
fn the_endpoint_counts_the_overlay_on_loopback_only_and_outlasts_hostile_clients() {
    if !require_root() {
        return;
    }
    ensure_parser();
    let lab = Lab::up(&prefix("metrics"), 2, true);
    // Off without the key: h2 listens on nothing.
    assert!(refused(&lab, "h2", "127.0.0.1"), "h2 has no metrics_port");

    // On in both, so that one of them started the handshake and has an RTT.
    enable_metrics(&lab, "h1");
    enable_metrics(&lab, "h2");

    let r = lab.ping("h1c1", &ip4("h2c1"), 5, None);
    assert!(r.is_clean(), "{}", r.raw);
    let h2 = lab.tincan_state("h2")["_uid"].as_str().unwrap().to_string();
    let peer = [("peer", h2.as_str()), ("peer_ip4", "10.0.3.2")];
    // tincan is polled every second: wait for the poll after the pings.
    let mut s = Value::Null;
    let counted = wait_until(Duration::from_secs(5), || {
        s = scrape(&lab, "h1", "/metrics").unwrap();
        value(
            &s,
            "ipop_peer_tx_frames",
            "ipop_peer_tx_frames_total",
            &peer,
        )
        .unwrap_or(0.0)
            >= 5.0
    });
    assert!(counted, "the pings are not counted: {s}");
    assert!(
        s["content_type"]
            .as_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        s["content_type"]
    );
    for (fam, dir) in [("ipop_peer_rx_bytes", "rx"), ("ipop_peer_tx_bytes", "tx")] {
        let f = family(&s, fam).unwrap();
        assert_eq!(
            (f["type"].as_str(), f["unit"].as_str()),
            (Some("counter"), Some("bytes"))
        );
        let v = value(&s, fam, &format!("{fam}_total"), &peer).unwrap();
        assert!(v > 0.0, "{dir} bytes for h2: {v}");
    }
    let frames = |s: &Value| value(s, "ipop_peer_tx_frames", "ipop_peer_tx_frames_total", &peer);
    let before = frames(&s).unwrap();

    // The link's state, path and RTT are tincan's.
    let link = link_to(&lab, "h1", &h2);
    assert_eq!(value(&s, "ipop_peer_up", "ipop_peer_up", &peer), Some(1.0));
    let path = link["path"].as_str().unwrap();
    let labels = [peer[0], peer[1], ("path", path)];
    assert_eq!(
        value(&s, "ipop_peer_path", "ipop_peer_path", &labels),
        Some(1.0)
    );
    let h1 = lab.tincan_state("h1")["_uid"].as_str().unwrap().to_string();
    let h1_peer = [("peer", h1.as_str()), ("peer_ip4", "10.0.3.1")];
    let measured = [
        rtt_matches_tincan(&lab, "h1", &peer),
        rtt_matches_tincan(&lab, "h2", &h1_peer),
    ];
    assert!(measured.contains(&true), "no RTT on either side");
    let hs = value(
        &s,
        "ipop_peer_handshakes",
        "ipop_peer_handshakes_total",
        &peer,
    );
    assert!(hs.unwrap() >= 1.0, "{hs:?}");
    let when = value(
        &s,
        "ipop_peer_last_handshake_timestamp_seconds",
        "ipop_peer_last_handshake_timestamp_seconds",
        &peer,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(when <= now && when > now - 300.0, "{when} vs {now}");
    assert!(value(&s, "ipop_tap_rx_frames", "ipop_tap_rx_frames_total", &[]).unwrap() >= 5.0);

    // More pings, more frames.
    let r = lab.ping("h1c1", &ip4("h2c1"), 10, None);
    assert!(r.is_clean(), "{}", r.raw);
    let grew = wait_until(Duration::from_secs(5), || {
        s = scrape(&lab, "h1", "/metrics").unwrap();
        frames(&s).unwrap() >= before + 10.0
    });
    assert!(grew, "tx frames {before} -> {:?}", frames(&s));

    // A bulk TCP transfer moves the byte counter by what crossed, plus the frames' headers.
    let bytes_to_h2 = |s: &Value| value(s, "ipop_peer_tx_bytes", "ipop_peer_tx_bytes_total", &peer);
    let b0 = bytes_to_h2(&scrape(&lab, "h1", "/metrics").unwrap()).unwrap();
    const SENT: u64 = 4 << 20;
    let t = lab.tcp_transfer("h1c1", "h2c1", SENT);
    assert_eq!(t.received_bytes, SENT, "{t:?}");
    let mut b1 = b0;
    wait_until(Duration::from_secs(5), || {
        b1 = bytes_to_h2(&scrape(&lab, "h1", "/metrics").unwrap()).unwrap();
        b1 >= b0 + SENT as f64
    });
    let ratio = (b1 - b0) / SENT as f64;
    eprintln!(
        "tx bytes to h2: {} for {SENT} bytes of TCP payload ({ratio:.3})",
        b1 - b0
    );
    assert!(
        (1.0..1.1).contains(&ratio),
        "tx bytes {b0} -> {b1} for {SENT}: {ratio}"
    );

    // Only /metrics, only on loopback.
    let other = scrape(&lab, "h1", "/").unwrap_err();
    assert!(other.contains("404"), "{other}");
    assert!(
        refused(&lab, "h1", &underlay_ip("h1")),
        "reachable on the underlay"
    );
    assert!(refused(&lab, "h1", &ip4("h1")), "reachable on the bridge");
    assert!(refused(&lab, "h2", &underlay_ip("h1")), "reachable from h2");

    // A local client holding connections open and sending endless heads.
    let hostile = Command::new("ip")
        .args(["netns", "exec", &lab.ns("h1"), PYTHON, "-c", HOSTILE_PY])
        .args([&PORT.to_string(), "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    for _ in 0..3 {
        let t = Instant::now();
        let s = scrape(&lab, "h1", "/metrics");
        assert!(s.is_ok(), "scrape under attack: {:?}", s.err());
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let r = lab.ping("h1c1", &ip4("h2c1"), 3, None);
        assert!(r.is_clean(), "{}", r.raw);
    }
    let out = hostile.wait_with_output().unwrap();
    let cut: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(cut >= 3, "endless heads answered 431: {cut}");
    assert!(lab.alive("h1", Daemon::Controller));
    assert!(scrape(&lab, "h1", "/metrics").is_ok());
}
