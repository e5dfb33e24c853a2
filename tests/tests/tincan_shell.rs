//! ipop-tincan as a process: nothing in it runs a program. Started with an empty environment
//! (no PATH), it still creates its TAP, serves its control port and reports this host's
//! addresses as candidates.

use ipop_lab_tests::{prefix, require_root, underlay_ip, wait_until, Lab, LabOptions, TINCAN_PORT};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Ends the tincan this test started, by its PID, also when the test fails.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tincan_with_an_empty_path_reports_its_host_candidates_and_state() {
    if !require_root() {
        return;
    }
    let lab = Lab::up_with(
        &prefix("nopath"),
        LabOptions {
            hosts: 2,
            daemons: false,
            ..LabOptions::default()
        },
    );
    let bin = lab.bin_dir().join("ipop-tincan");
    // `ip netns exec` and `env` exec in place: the child is tincan itself, with no PATH.
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.ns("h1"), "env", "-i"])
        .arg(&bin)
        .args(["--tap", "ipop", "--port", &TINCAN_PORT.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ip netns exec");
    let _tincan = Started(child);
    assert!(
        wait_until(Duration::from_secs(10), || lab
            .rpc(
                "h1",
                TINCAN_PORT,
                "echo_request",
                Some(&json!({"msg": "hi"}))
            )
            .is_ok()),
        "tincan without PATH does not answer on its control port"
    );
    let uid = "4d2a79e4e4ff1e4d3c5d9b4e0f5f8b6d2a1c3e5f";
    lab.rpc(
        "h1",
        TINCAN_PORT,
        "set_local_ip",
        Some(&json!({"uid": uid, "ip4": "10.0.3.1", "sec": false, "link_port": 5900})),
    )
    .expect("set_local_ip");
    let state = lab.tincan_state("h1");
    let candidates: Vec<&str> = state["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    let underlay = format!("host:{}:5900", underlay_ip("h1"));
    assert!(
        candidates.contains(&underlay.as_str()),
        "candidates {candidates:?} lack this host's underlay address {underlay}"
    );
    assert!(
        candidates.iter().all(|c| !c.contains("127.0.0.1")),
        "loopback offered as a candidate: {candidates:?}"
    );
    assert_eq!(state["_uid"], uid);
    assert_eq!(state["tap"], "ipop");
}
