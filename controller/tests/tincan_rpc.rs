//! The controller's loop against a stand-in for ipop-tincan on loopback: what it sends to
//! configure tincan (method order and JSON, as docs/rpc.md gives them), how it takes a link
//! event, and what its own `get_state` answers. No root needed.

use gvpn_controller::controller::Controller;
use proto::config::Config;
use proto::id::Uid;
use serde_json::{json, Value};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn recv(sock: &UdpSocket) -> (Value, SocketAddr) {
    let mut buf = [0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).expect("a datagram within 5 s");
    (serde_json::from_slice(&buf[..n]).unwrap(), from)
}

/// The next request, skipping the heartbeat's `get_state`s.
fn next_request(sock: &UdpSocket) -> Value {
    loop {
        let (v, _) = recv(sock);
        if v["method"] != "get_state" {
            return v;
        }
    }
}

/// Params as tincan reads them: a null param is an absent one.
fn set(params: &Value) -> Value {
    let mut p = params.as_object().expect("params are an object").clone();
    p.retain(|_, v| !v.is_null());
    Value::Object(p)
}

fn uid(ip4: &str) -> String {
    Uid::from_ip4(ip4.parse().unwrap()).to_string()
}

#[test]
fn configures_tincan_takes_link_events_and_answers_its_own_get_state() {
    let tincan = UdpSocket::bind("127.0.0.1:0").unwrap();
    tincan
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let icc_port = free_port();
    let text = json!({
        "switchmode": 1, "ip4": "10.0.3.1", "sec": false,
        "svpn_port": tincan.local_addr().unwrap().port(), "icc_port": icc_port,
        "peers": [{"ip4": "10.0.3.2", "endpoint": "192.0.2.2:5900"}]
    })
    .to_string();
    let (cfg, _) = Config::from_json_layers(&[(&text, "test")]).unwrap();
    Controller::spawn_thread(cfg, "/nonexistent/ipop.key".into());

    // The heartbeat asks for tincan's state; an unconfigured tincan answers.
    let (req, controller) = recv(&tincan);
    assert_eq!(req["method"], "get_state");
    assert_eq!(set(&req["params"]), json!({}));
    let state = json!({
        "type": "local_state", "_uid": "", "_ip4": "", "_fpr": "", "_mac": "02:00:00:00:00:01",
        "sec": false, "rekey_after_secs": 120, "candidates": [],
        "nat": {"srflx": null, "relay": null, "turn_server": null, "mapping": "unknown",
                "stun_responses": 0, "relayed_in": 0, "relayed_out": 0},
        "tap": "ipop", "mtu": 1400, "version": "test", "boot_id": 7, "uptime_ms": 5,
        "configured": false, "switchmode": 1, "icc": true, "controller_alive": false,
        "link_port": null, "counters": {}, "peers": [], "macs": []
    });
    let answer = json!({"jsonrpc": "2.0", "id": req["id"], "result": state});
    tincan
        .send_to(answer.to_string().as_bytes(), controller)
        .unwrap();

    // It configures tincan, in this order.
    let mut calls = Vec::new();
    while calls.len() < 5 {
        calls.push(next_request(&tincan));
    }
    let methods: Vec<&str> = calls
        .iter()
        .map(|c| c["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "set_logging",
            "set_cb_endpoint",
            "set_local_ip",
            "set_switchmode",
            "create_link"
        ]
    );
    assert_eq!(
        set(&calls[1]["params"]),
        json!({"ip": "127.0.0.1", "port": icc_port})
    );
    let local = &calls[2]["params"];
    assert_eq!(local["uid"], uid("10.0.3.1"));
    assert_eq!(local["ip4"], "10.0.3.1");
    assert_eq!(local["sec"], false);
    assert_eq!(local["key_file"], Value::Null);
    assert_eq!(
        set(&calls[4]["params"]),
        json!({"uid": uid("10.0.3.2"), "endpoint": "192.0.2.2:5900", "candidates": []})
    );

    // tincan reports the link up.
    let up = json!({"jsonrpc": "2.0", "method": "con_stat",
                    "params": {"uid": uid("10.0.3.2"), "data": "online"}});
    tincan
        .send_to(up.to_string().as_bytes(), controller)
        .unwrap();

    // The controller's own state, asked by a status client.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut online = false;
    for id in 0..50 {
        let q = json!({"jsonrpc": "2.0", "id": id, "method": "get_state", "params": {}});
        client
            .send_to(q.to_string().as_bytes(), controller)
            .unwrap();
        let (a, _) = recv(&client);
        let s = &a["result"];
        assert_eq!(s["uid"], uid("10.0.3.1"));
        assert_eq!(s["ip4"], "10.0.3.1");
        assert_eq!(s["tap"], "ipop");
        assert_eq!(s["tincan_alive"], true);
        assert_eq!(s["xmpp"], "off");
        assert_eq!(s["signalling"], Value::Null);
        let expected = json!([{"uid": uid("10.0.3.2"), "online": true, "claims_refused": 0,
                               "requests_rate_limited": 0}]);
        if s["peers"] == expected {
            online = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(online, "con_stat online not reflected in get_state");

    // A method the controller does not have is refused with its name.
    let q = json!({"jsonrpc": "2.0", "id": 99, "method": "create_link", "params": {}});
    client
        .send_to(q.to_string().as_bytes(), controller)
        .unwrap();
    let (a, _) = recv(&client);
    assert_eq!(a["error"]["code"], -32601, "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("create_link"),
        "{a}"
    );
}
