//! Another process on the same host, speaking to the daemons' loopback ports and to tincan's
//! control socket: it cannot make the controller put an interface of its choosing on the
//! bridge; as another user it reads tincan's state but changes nothing, over UDP or the
//! socket; holding tincan's port and socket name while tincan is down it gets nothing from the
//! controller; and not even root can give a running tincan another identity.

use ipop_lab_tests::{ip4, prefix, require_root, Daemon, Lab, LabOptions, TINCAN_PORT};
use serde_json::{json, Value};
use std::time::Duration;

fn counter(state: &Value, name: &str) -> u64 {
    state["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {state}"))
}

fn lab(tag: &str) -> Lab {
    Lab::up_with(
        &prefix(tag),
        LabOptions {
            hosts: 2,
            ..LabOptions::default()
        },
    )
}

#[test]
fn forged_answers_from_another_port_do_not_put_an_interface_on_the_bridge() {
    if !require_root() {
        return;
    }
    let lab = lab("forge");
    // A real answer, made to look like a restarted tincan whose TAP is the attacker's pick.
    let mut forged = lab.tincan_state("h1");
    forged["tap"] = "victim0".into();
    forged["boot_id"] = 4242.into();
    lab.kill("h1", Daemon::Tincan);
    lab.exec_ok(
        "h1",
        &[
            "ip", "link", "add", "victim0", "type", "veth", "peer", "name", "victim1",
        ],
    );
    // Request ids are small integers: answer every one of the first 300, from a port of its
    // own, while the controller asks a silent tincan for its state every second.
    let spray = format!(
        r#"
import json, socket, time
state = json.loads('''{}''')
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
end = time.time() + 4
while time.time() < end:
    for i in range(1, 300):
        s.sendto(json.dumps({{"jsonrpc": "2.0", "id": i, "result": state}}).encode(),
                 ("127.0.0.1", 30000))
    time.sleep(0.2)
"#,
        forged
    );
    lab.exec_ok("h1", &["python3", "-c", &spray]);
    let link = lab.exec_ok("h1", &["ip", "-o", "link", "show", "victim0"]);
    assert!(
        !link.contains("master"),
        "a forged answer put victim0 on a bridge: {link}"
    );
    let state = lab.controller_state("h1");
    assert!(
        counter(&state, "foreign_source") > 0,
        "forged answers were not counted: {state}"
    );
}

/// Runs the system's python (readable by anyone) as the unprivileged uid 4242 in `host`,
/// with `args` as its `sys.argv[1:]`.
fn as_nobody(lab: &Lab, host: &str, script: &str, args: &[&str]) -> String {
    let mut cmd = vec![
        "setpriv",
        // Not "nobody": the daemons run as nobody (or ipop) after start-up, and their own
        // user may change their state. 4242 is any other local user.
        "--reuid=4242",
        "--regid=4242",
        "--clear-groups",
        "/usr/bin/python3",
        "-c",
        script,
    ];
    cmd.extend(args);
    lab.exec_ok(host, &cmd)
}

/// Sends each request (argv[1], a JSON list of [method, params]) over UDP to 127.0.0.1:5800
/// and over the control socket, and prints the answers as a JSON list of [udp, socket] pairs.
const CALL_BOTH: &str = r#"
import json, socket, sys
calls = json.loads(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(3)
s.connect("\0ipop-tincan/5800")
f = s.makefile("rb")
out = []
for i, (method, params) in enumerate(calls):
    req = json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}).encode()
    u.sendto(req, ("127.0.0.1", 5800))
    by_udp = json.loads(u.recv(65536))
    s.sendall(req + b"\n")
    by_sock = json.loads(f.readline())
    out.append([by_udp, by_sock])
print(json.dumps(out))
"#;

/// The peers' (uid, status), sorted.
fn peers(state: &Value) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = state["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| (p["uid"].to_string(), p["status"].to_string()))
        .collect();
    p.sort();
    p
}

#[test]
fn another_user_reads_tincans_state_but_changes_nothing_and_root_cannot_change_its_identity() {
    if !require_root() {
        return;
    }
    let lab = lab("nobody");
    let before = lab.tincan_state("h1");
    let uid = before["_uid"].as_str().unwrap().to_string();
    let uid_h2 = lab.tincan_state("h2")["_uid"].as_str().unwrap().to_string();
    let frame = format!(
        "ffffffffffff020000000066080600010800060400010200000000660a00030c{}",
        "00".repeat(10)
    );
    let changes = json!([
        ["set_local_ip", {"uid": uid, "ip4": "10.0.3.1", "sec": false}],
        ["set_local_ip", {"uid": uid, "ip4": "10.0.3.1", "sec": true, "key_file": "/tmp/nobody.key"}],
        ["create_link", {"uid": "ab".repeat(20), "endpoint": "10.99.0.9:5900", "fpr": "cd".repeat(32)}],
        ["trim_link", {"uid": uid_h2}],
        ["inject_frame", {"frame": frame}],
        ["set_neigh", {"replace": true, "add": [{"ip": "10.0.3.12", "mac": "02:00:00:00:00:66"}]}],
        ["set_nat", {"stun": ["127.0.0.1:3478"],
                     "turn": {"server": "127.0.0.1:3478", "user": "u", "pass": "p"}}],
        ["set_mac", {"mac": "02:00:00:00:00:66", "uid": uid_h2}],
        ["send_icc", {"uid": uid_h2, "msg": {"msg_type": "hello"}}],
        ["set_cb_endpoint", {"ip": "127.0.0.1", "port": 4444}],
        ["set_switchmode", {"switchmode": 1, "icc": false}],
        ["set_logging", {"logging": 0}],
    ]);
    let n = changes.as_array().unwrap().len();
    let mut calls = changes.as_array().unwrap().clone();
    calls.push(json!(["get_state", {}]));
    let out = as_nobody(
        &lab,
        "h1",
        CALL_BOTH,
        &[&Value::from(calls.clone()).to_string()],
    );
    let answers: Vec<Value> = serde_json::from_str(out.trim()).expect("the script's JSON");
    assert_eq!(answers.len(), calls.len(), "{out}");
    for (call, pair) in calls.iter().zip(&answers).take(n) {
        for (how, a) in ["UDP", "the socket"].iter().zip(pair.as_array().unwrap()) {
            let msg = a["error"]["message"].as_str().unwrap_or_default();
            assert!(
                a["error"]["code"] == 6
                    && msg.contains("changes state")
                    && msg.contains("@ipop-tincan/5800"),
                "{} over {how} as nobody was not refused: {a}",
                call[0]
            );
        }
    }
    // Reading works for anyone, over both.
    for a in answers[n].as_array().unwrap() {
        assert_eq!(
            a["result"]["_uid"],
            uid.as_str(),
            "get_state as nobody: {a}"
        );
    }
    // Nothing changed, and every refusal was counted.
    let after = lab.tincan_state("h1");
    assert_eq!(
        counter(&after, "control_refused_unauthenticated"),
        counter(&before, "control_refused_unauthenticated") + 2 * n as u64,
        "{}",
        after["counters"]
    );
    assert_eq!(after["_uid"], before["_uid"]);
    assert_eq!(after["_fpr"], before["_fpr"]);
    assert_eq!((&after["sec"], &after["icc"]), (&json!(true), &json!(true)));
    assert_eq!(after["nat"]["turn_server"], Value::Null, "{}", after["nat"]);
    assert_eq!(peers(&after), peers(&before));
    assert_eq!(after["controller_alive"], true);
    assert_eq!(
        counter(&after, "injected_frames"),
        counter(&before, "injected_frames")
    );
    assert!(!std::path::Path::new("/tmp/nobody.key").exists());

    // Root cannot give the running tincan another uid, turn "sec" off or load another key;
    // the same identity again (what a restarted controller sends) is fine.
    let key = lab.dir().join("h1").join("ipop.key");
    let key = key.to_str().unwrap();
    let other = "12".repeat(20);
    for (params, says) in [
        (
            json!({"uid": other, "ip4": "10.0.3.1", "sec": true, "key_file": key}),
            "uid",
        ),
        (
            json!({"uid": uid, "ip4": "10.0.3.1", "sec": false}),
            "\"sec\" true -> false",
        ),
        (
            json!({"uid": uid, "ip4": "10.0.3.1", "sec": true, "key_file": "/tmp/root.key"}),
            "key_file",
        ),
    ] {
        let e = lab
            .rpc("h1", TINCAN_PORT, "set_local_ip", Some(&params))
            .expect_err("a new identity from root was accepted");
        assert!(
            e.contains("would change this tincan's identity") && e.contains(says),
            "{params}: {e}"
        );
    }
    assert!(!std::path::Path::new("/tmp/root.key").exists());
    lab.rpc(
        "h1",
        TINCAN_PORT,
        "set_local_ip",
        Some(&json!({"uid": uid, "ip4": "10.0.3.1", "sec": true, "key_file": key})),
    )
    .expect("the same identity again");
    let last = lab.tincan_state("h1");
    assert_eq!(last["_uid"], before["_uid"]);
    assert_eq!(last["_fpr"], before["_fpr"]);
    assert_eq!(counter(&last, "control_refused_identity_change"), 3);
    let ping = lab.ping("h1c1", &ip4("h2c1"), 3, None);
    assert!(ping.is_clean(), "{}", ping.raw);
}

/// Holds 127.0.0.1:5800 and @ipop-tincan/5800 for argv[1] seconds, as tincan would, and prints
/// what arrived: connections accepted, bytes read from them, datagrams.
const IMPOSTOR: &str = r#"
import json, select, socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 5800))
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); l.bind("\0ipop-tincan/5800"); l.listen(8)
conns, accepted, got, datagrams = [], 0, b"", []
end = time.time() + float(sys.argv[1])
while time.time() < end:
    r, _, _ = select.select([u, l] + conns, [], [], 0.1)
    for s in r:
        if s is l:
            conns.append(l.accept()[0]); accepted += 1
        elif s is u:
            datagrams.append(u.recv(65536).decode(errors="replace"))
        else:
            b = s.recv(65536)
            got += b
            if not b:
                conns.remove(s); s.close()
print(json.dumps({"accepted": accepted, "bytes": got.decode(errors="replace"),
                  "datagrams": datagrams}))
"#;

#[test]
fn a_process_holding_tincans_names_while_it_is_down_gets_nothing_from_the_controller() {
    if !require_root() {
        return;
    }
    let lab = lab("squat");
    let before = lab.controller_state("h1");
    lab.kill("h1", Daemon::Tincan);
    // nobody takes tincan's port and socket name for 4 s, while the controller tries to
    // connect every second.
    let out = as_nobody(&lab, "h1", IMPOSTOR, &["4"]);
    let got: Value = serde_json::from_str(out.trim()).expect("the impostor's JSON");
    assert!(
        got["accepted"].as_u64().unwrap() >= 2,
        "the controller never came: {got}"
    );
    assert_eq!(
        got["bytes"], "",
        "the controller sent the impostor something: {got}"
    );
    assert_eq!(
        got["datagrams"],
        json!([]),
        "datagrams to the impostor: {got}"
    );
    let state = lab.controller_state("h1");
    assert!(
        counter(&state, "tincan_socket_refused") >= 2,
        "{}",
        state["counters"]
    );
    assert_eq!(
        counter(&state, "tincan_configured"),
        counter(&before, "tincan_configured")
    );
    assert!(lab
        .log_tail("h1", Daemon::Controller)
        .contains("held by uid 4242"));
    // A squatter that never accepts (its backlog fills after one connection) does not hang
    // the controller: it keeps answering while the squatter holds the name.
    let stuck = r#"
import socket, time
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); l.bind("\0ipop-tincan/5800"); l.listen(0)
time.sleep(6)
"#;
    std::thread::scope(|s| {
        let squatter = s.spawn(|| as_nobody(&lab, "h1", stuck, &[]));
        std::thread::sleep(Duration::from_millis(2000));
        let t0 = std::time::Instant::now();
        let state = lab.controller_state("h1");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the controller took {:?} to answer",
            t0.elapsed()
        );
        assert_eq!(state["tincan_alive"], false, "{state}");
        squatter.join().unwrap();
    });
    // The real tincan comes back: the controller configures it and traffic flows.
    lab.start("h1", Daemon::Tincan);
    assert!(
        lab.wait_links_online(Duration::from_secs(20)),
        "links not back:\n{}",
        lab.status()
    );
    let ping = lab.ping("h1c1", &ip4("h2c1"), 3, None);
    assert!(ping.is_clean(), "{}", ping.raw);
    assert!(counter(&lab.controller_state("h1"), "tincan_restarts_seen") >= 1);
}
