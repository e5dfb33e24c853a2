//! The controller's loop against a stand-in for ipop-tincan on its control socket: what it
//! sends to configure tincan (method order and JSON, as docs/rpc.md gives them), how it takes a
//! link event, that it ignores notifications on its UDP port, and what its own `get_state`
//! answers. No root needed.

use gvpn_controller::controller::Controller;
use proto::config::Config;
use proto::id::Uid;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{UnixListener, UnixStream};
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

/// The stand-in's end of the controller's connection.
struct Conn {
    lines: BufReader<UnixStream>,
    out: UnixStream,
}

impl Conn {
    /// Listens on `@ipop-tincan/<port>` and takes the controller's connection.
    fn accept(port: u16) -> Conn {
        let name = format!("ipop-tincan/{port}");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Conn {
            out: stream.try_clone().unwrap(),
            lines: BufReader::new(stream),
        }
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.lines.read_line(&mut line).expect("a line within 5 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn send(&mut self, v: &Value) {
        self.out.write_all(format!("{v}\n").as_bytes()).unwrap();
    }

    /// The next request, skipping the heartbeat's `get_state`s.
    fn next_request(&mut self) -> Value {
        loop {
            let v = self.recv();
            if v["method"] != "get_state" {
                return v;
            }
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
    let svpn_port = free_port();
    let icc_port = free_port();
    let text = json!({
        "switchmode": 1, "ip4": "10.0.3.1", "sec": false,
        "svpn_port": svpn_port, "icc_port": icc_port,
        "peers": [{"ip4": "10.0.3.2", "endpoint": "192.0.2.2:5900"}]
    })
    .to_string();
    let (cfg, _) = Config::from_json_layers(&[(&text, "test")]).unwrap();
    let listening = std::thread::spawn(move || Conn::accept(svpn_port));
    Controller::spawn_thread(cfg, "/nonexistent/ipop.key".into());
    let mut tincan = listening.join().unwrap();
    let controller = SocketAddr::from(([127, 0, 0, 1], icc_port));

    // On connecting, the controller makes its connection the one notifications go over; then
    // its heartbeat asks for tincan's state, and an unconfigured tincan answers.
    let sub = tincan.recv();
    assert_eq!(sub["method"], "set_cb_endpoint", "{sub}");
    tincan.send(&json!({"jsonrpc": "2.0", "id": sub["id"], "result": true}));
    let req = tincan.recv();
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
    tincan.send(&json!({"jsonrpc": "2.0", "id": req["id"], "result": state}));

    // It configures tincan, in this order.
    let mut calls = Vec::new();
    while calls.len() < 5 {
        calls.push(tincan.next_request());
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

    // Another local process sends a link event to the controller's UDP port: ignored. tincan
    // reports the link up over its connection.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let forged = json!({"jsonrpc": "2.0", "method": "con_stat",
                        "params": {"uid": uid("10.0.3.9"), "data": "online"}});
    client
        .send_to(forged.to_string().as_bytes(), controller)
        .unwrap();
    let up = json!({"jsonrpc": "2.0", "method": "con_stat",
                    "params": {"uid": uid("10.0.3.2"), "data": "online"}});
    tincan.send(&up);

    // The controller's own state, asked by a status client.
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
        if s["peers"] == expected && s["counters"]["udp_notifications_ignored"] == 1 {
            online = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        online,
        "con_stat online not reflected in get_state, or the forged one not ignored"
    );

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
