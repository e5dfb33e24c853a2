//! Another process on the same host, speaking to the daemons' loopback ports: it cannot make
//! the controller put an interface of its choosing on the bridge, and a change it makes to
//! tincan's security is put back by the controller.

use ipop_lab_tests::{ip4, prefix, require_root, wait_until, Daemon, Lab, LabOptions};
use serde_json::Value;
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

#[test]
fn a_security_change_by_another_process_is_put_back() {
    if !require_root() {
        return;
    }
    let lab = lab("drift");
    let state = lab.tincan_state("h1");
    assert_eq!(state["sec"], true);
    let uid = state["_uid"].as_str().unwrap().to_string();
    // Another process turns encryption off: links drop (the peer still encrypts).
    lab.rpc(
        "h1",
        ipop_lab_tests::TINCAN_PORT,
        "set_local_ip",
        Some(&serde_json::json!({"uid": uid, "ip4": "10.0.3.1", "sec": false})),
    )
    .expect("set_local_ip");
    assert!(
        wait_until(Duration::from_secs(10), || {
            lab.tincan_state("h1")["sec"] == true && lab.links_online("h1") == 1
        }),
        "the controller did not put \"sec\" back: {}",
        lab.tincan_state("h1")
    );
    assert!(counter(&lab.controller_state("h1"), "tincan_configured_again") >= 1);
    let ping = lab.ping("h1c1", &ip4("h2c1"), 5, None);
    assert_eq!(ping.received, 5, "{}", ping.raw);
}
