//! Tests of tincan's control API: every call round-trips, bad params are named, and the
//! documented `get_state` example parses.

use super::super::tests::assert_documented;
use super::super::ErrorCode;
use super::*;
use crate::rpc::{self, Id, Incoming};
use serde_json::json;

const UID: &str = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
const FPR: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn call(datagram: &[u8]) -> (Option<Id>, String, serde_json::Map<String, Value>) {
    match rpc::parse(datagram) {
        Incoming::Call { id, method, params } => (id, method, params),
        other => panic!("{other:?}"),
    }
}

fn request(method: &str, params: Value) -> Result<TincanRequest, ApiError> {
    let (_, m, p) = call(&rpc::request(1, method, params));
    TincanRequest::from_call(&m, p)
}

fn every_request() -> Vec<TincanRequest> {
    let uid: Uid = UID.parse().unwrap();
    vec![
        SetLogging { logging: 2 }.into(),
        SetCbEndpoint {
            ip: "127.0.0.1".parse().unwrap(),
            port: 30000,
        }
        .into(),
        SetLocalIp {
            uid,
            ip4: "10.0.3.1".parse().unwrap(),
            ip4_mask: Some(24),
            ip6: Some("fd50:dbc:41f2:4a3c::1".parse().unwrap()),
            ip6_mask: Some(64),
            subnet_mask: Some(24),
            switchmode: Some(1),
            icc: Some(true),
            link_port: 5901,
            mtu: Some(1400),
            link_mtu: Some(1500),
            sec: true,
            key_file: Some("/etc/ipop/ipop.key".into()),
            rekey_after_secs: 60,
            cipher: crate::secure::CipherSetting::ChaCha20Poly1305,
            storm: Some(crate::storm::StormRates {
                broadcast_pps: 10,
                multicast_pps: 0,
                unknown_unicast_pps: 30,
            }),
        }
        .into(),
        SetNat {
            stun: vec!["192.0.2.1:3478".parse().unwrap()],
            turn: Some(TurnServer {
                server: "192.0.2.2:3478".parse().unwrap(),
                user: "u".into(),
                pass: "p".into(),
            }),
            ignore: vec!["docker0".into()],
        }
        .into(),
        SetSwitchmode {
            switchmode: 1,
            icc: Some(false),
        }
        .into(),
        CreateLink {
            uid,
            endpoint: Some("10.99.0.2:5900".parse().unwrap()),
            candidates: vec!["srflx:203.0.113.1:5900".parse().unwrap()],
            fpr: Some(FPR.parse().unwrap()),
        }
        .into(),
        TrimLink { uid }.into(),
        SetMac {
            mac: "02:00:00:00:00:01".parse().unwrap(),
            uid,
            vlan: Some(10),
        }
        .into(),
        ReleaseMac {
            mac: "02:00:00:00:00:01".parse().unwrap(),
            uid: Some(uid),
            vlan: None,
        }
        .into(),
        InjectFrame {
            frame: vec![0xff; 42],
        }
        .into(),
        SendIcc {
            uid,
            msg: json!({"type": "arp_request", "ip": "10.0.3.7"}),
        }
        .into(),
        SetNeigh {
            replace: Some(true),
            add: vec![NeighBinding {
                ip: "10.0.3.21".parse().unwrap(),
                mac: "02:00:00:00:00:15".parse().unwrap(),
            }],
            remove: vec!["10.0.3.22".parse().unwrap()],
        }
        .into(),
        SetNd {
            replace: None,
            add: vec![NdBinding {
                ip: "fd00:3::21".parse().unwrap(),
                mac: "02:00:00:00:00:15".parse().unwrap(),
                router: true,
            }],
            remove: vec!["fd00:3::22".parse().unwrap()],
        }
        .into(),
        GetState { stats: Some(true) }.into(),
        EchoRequest { msg: json!("hi") }.into(),
    ]
}

#[test]
fn every_request_round_trips_through_a_datagram() {
    let all = every_request();
    let methods: Vec<&str> = all.iter().map(TincanRequest::method).collect();
    assert_eq!(methods, TincanRequest::METHODS);
    for r in all {
        let (id, method, params) = call(&r.request(9));
        assert_eq!(id, Some(Id::Num(9)));
        assert_eq!(TincanRequest::from_call(&method, params).unwrap(), r);
    }
}

#[test]
fn every_notification_round_trips_through_a_datagram() {
    let uid: Uid = UID.parse().unwrap();
    let all: Vec<TincanNotification> = vec![
        PuntFrame {
            frame: vec![1, 2, 3],
            uid: None,
        }
        .into(),
        Icc {
            uid,
            msg: json!({"type": "arp_reply"}),
        }
        .into(),
        ConStat {
            uid,
            data: LinkStatus::Online,
        }
        .into(),
        NeighAnswered {
            answers: vec![NeighAnswer {
                ip: "10.0.3.21".parse().unwrap(),
                requester_ip: "10.0.3.11".parse().unwrap(),
                requester_mac: "02:00:00:00:00:0b".parse().unwrap(),
            }],
        }
        .into(),
        NdAnswered {
            answers: vec![NdAnswer {
                ip: "fd00:3::21".parse().unwrap(),
                requester_ip: "fd00:3::11".parse().unwrap(),
                requester_mac: "02:00:00:00:00:0b".parse().unwrap(),
            }],
        }
        .into(),
    ];
    let methods: Vec<&str> = all.iter().map(TincanNotification::method).collect();
    assert_eq!(methods, TincanNotification::METHODS);
    for n in all {
        let (id, method, params) = call(&n.notification());
        assert_eq!(id, None);
        assert_eq!(TincanNotification::from_call(&method, params).unwrap(), n);
    }
}

#[test]
fn notifications_keep_their_wire_form() {
    let uid: Uid = UID.parse().unwrap();
    let punt = TincanNotification::from(PuntFrame {
        frame: vec![0xff, 0x01],
        uid: None,
    });
    assert_eq!(punt.params(), json!({"frame": "ff01", "uid": null}));
    let stat = TincanNotification::from(ConStat {
        uid,
        data: LinkStatus::Offline,
    });
    assert_eq!(stat.params(), json!({"uid": UID, "data": "offline"}));
    let echo = serde_json::to_value(EchoReply { msg: json!(5) }).unwrap();
    assert_eq!(echo, json!({"type": "echo_reply", "msg": 5}));
}

#[test]
fn defaults_are_the_documented_ones() {
    let r = request(
        "set_local_ip",
        json!({"uid": UID, "ip4": "10.0.3.1", "sec": false}),
    )
    .unwrap();
    let TincanRequest::SetLocalIp(p) = r else {
        panic!("{r:?}")
    };
    assert_eq!(p.link_port, 5900);
    assert_eq!(p.rekey_after_secs, 120);
    assert_eq!((p.mtu, p.icc, p.switchmode), (None, None, None));
    assert_eq!(p.link_mtu, None);
    // The original controller's 0/1 flags, and "" for "no key" in create_link.
    let r = request(
        "create_link",
        json!({"uid": UID, "endpoint": "10.99.0.2:5900", "fpr": "", "sec": 1}),
    )
    .unwrap();
    assert!(matches!(
        r,
        TincanRequest::CreateLink(CreateLink { fpr: None, .. })
    ));
    let r = request("set_cb_endpoint", json!({"ip": "::", "port": 30000})).unwrap();
    let TincanRequest::SetCbEndpoint(cb) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        cb.endpoint("127.0.0.1:4000".parse().unwrap()),
        "127.0.0.1:30000".parse().unwrap()
    );
    assert_eq!(
        request("set_nat", json!({"stun": null, "turn": null})).unwrap(),
        SetNat::default().into()
    );
    assert_eq!(
        request("get_state", json!({})).unwrap(),
        GetState::default().into()
    );
}

#[test]
fn a_bad_param_is_named_with_what_was_expected() {
    let cases = [
        (
            "trim_link",
            json!({"uid": "abc"}),
            "\"uid\": expected a uid of 40 hex digits, got \"abc\"",
        ),
        ("trim_link", json!({}), "\"uid\": missing"),
        (
            "set_logging",
            json!({"logging": 7}),
            "\"logging\": expected an integer 0-3, got 7",
        ),
        (
            "set_cb_endpoint",
            json!({"ip": "127.0.0.1", "port": "abc"}),
            "\"port\": expected an integer 1-65535, got \"abc\"",
        ),
        (
            "set_cb_endpoint",
            json!({"ip": "10.0.0.1", "port": 1}),
            "\"ip\": expected a loopback address, got 10.0.0.1",
        ),
        (
            "set_cb_endpoint",
            json!({"ip": "x", "port": 1}),
            "\"ip\": expected an IP address, got \"x\"",
        ),
        (
            "set_switchmode",
            json!({"switchmode": 0}),
            "\"switchmode\": 0 (routed GroupVPN mode) is not implemented; use 1",
        ),
        (
            "set_switchmode",
            json!({"switchmode": 1, "icc": "yes"}),
            "\"icc\": expected a boolean, got \"yes\"",
        ),
        (
            "set_local_ip",
            json!({"uid": UID, "ip4": "10.0.3"}),
            "\"ip4\": expected an IPv4 address, got \"10.0.3\"",
        ),
        (
            "set_local_ip",
            json!({"uid": UID, "ip4": "10.0.3.1", "mtu": 100, "sec": false}),
            "\"mtu\": expected an integer 576-9000, got 100",
        ),
        (
            "set_local_ip",
            json!({"uid": UID, "ip4": "10.0.3.1", "link_mtu": 9001, "sec": false}),
            "\"link_mtu\": expected an integer 576-9000, got 9001",
        ),
        (
            "set_local_ip",
            json!({"uid": UID, "ip4": "10.0.3.1"}),
            "\"key_file\": required while \"sec\" is true",
        ),
        (
            "set_local_ip",
            json!({"uid": UID, "ip4": "10.0.3.1", "key_file": "k"}),
            "\"key_file\": expected an absolute path, got k",
        ),
        (
            "set_nat",
            json!({"stun": ["stun.example.org:3478"]}),
            "\"stun\": item 0: expected ip:port, got \"stun.example.org:3478\"",
        ),
        (
            "set_nat",
            json!({"turn": {"server": "x", "user": "u", "pass": "p"}}),
            "\"turn.server\": expected ip:port, got \"x\"",
        ),
        (
            "create_link",
            json!({"uid": UID, "endpoint": "nowhere"}),
            "\"endpoint\": expected ip:port, got \"nowhere\"",
        ),
        (
            "create_link",
            json!({"uid": UID}),
            "\"endpoint\" or \"candidates\": one is required",
        ),
        (
            "create_link",
            json!({"uid": UID, "candidates": ["x"]}),
            "\"candidates[0]\": expected a candidate",
        ),
        (
            "create_link",
            json!({"uid": UID, "endpoint": "1.2.3.4:5", "fpr": "zz"}),
            "\"fpr\": expected a key fingerprint of 64 hex digits, got \"zz\"",
        ),
        (
            "set_neigh",
            json!({"add": [{"ip": "10.0.3.300", "mac": "02:00:00:00:00:01"}]}),
            "\"add[0].ip\": expected an IPv4 address",
        ),
        (
            "set_neigh",
            json!({"remove": ["fe80::1"]}),
            "\"remove\": item 0: expected an IPv4 address",
        ),
        (
            "set_neigh",
            json!({"remove": vec!["10.0.3.1"; SetNeigh::MAX_ENTRIES + 1]}),
            "\"remove\": at most 4096 entries",
        ),
        (
            "set_mac",
            json!({"uid": UID, "mac": "01:02"}),
            "\"mac\": expected a MAC address aa:bb:cc:dd:ee:ff, got \"01:02\"",
        ),
        (
            "inject_frame",
            json!({"frame": "abc"}),
            "\"frame\": expected an even number of hex digits",
        ),
        ("send_icc", json!({"uid": UID}), "\"msg\": missing"),
        (
            "set_nat",
            json!({"turn": {"server": "192.0.2.1:3478", "user": "u"}}),
            "\"turn.pass\": missing",
        ),
    ];
    for (method, params, message) in cases {
        let e = request(method, params.clone()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams, "{method} {params}");
        assert!(
            e.message.starts_with(message),
            "{method} {params}: {:?} should start with {message:?}",
            e.message
        );
    }
    let e = request("reboot", json!({})).unwrap_err();
    assert_eq!(e.code, ErrorCode::MethodNotFound);
    assert!(e.message.contains("reboot"), "{e}");
}

/// The example in docs/rpc.md is a real report.
#[test]
fn the_documented_state_parses_and_round_trips() {
    let doc = include_str!("../../../docs/rpc.md");
    let start = doc
        .find("```json")
        .expect("docs/rpc.md has a get_state example")
        + 7;
    let text = &doc[start..];
    let text = &text[..text.find("```").unwrap()];
    let state: LocalState = serde_json::from_str(text).expect("the example parses");
    assert_eq!(state.peers[0].status, LinkStatus::Online);
    assert_eq!(state.link_port, Some(5900));
    let again: LocalState = serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
    assert_eq!(again, state);
    let v = serde_json::to_value(&state).unwrap();
    assert_eq!(v["type"], "local_state");
    assert_eq!(v["peers"][0]["type"], "peer_state");
}

#[test]
fn an_unconfigured_state_keeps_its_blanks() {
    let state = LocalState {
        uid: None,
        ip4: None,
        fpr: None,
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
        sec: true,
        rekey_after_secs: 120,
        cipher: Default::default(),
        candidates: Vec::new(),
        nat: NatState::default(),
        tap: "ipop".into(),
        mtu: 1400,
        link_mtu: 1500,
        version: "0.1.0".into(),
        boot_id: 7,
        uptime_ms: 5,
        configured: false,
        switchmode: 1,
        icc: true,
        controller_alive: false,
        link_port: None,
        neigh_entries: 0,
        nd_entries: 0,
        counters: Counters::new(),
        peers: Vec::new(),
        macs: Vec::new(),
        local_macs: Vec::new(),
        peers_truncated: 0,
        macs_truncated: 0,
    };
    let v = serde_json::to_value(&state).unwrap();
    assert_eq!(
        (&v["_uid"], &v["_ip4"], &v["_fpr"]),
        (&json!(""), &json!(""), &json!(""))
    );
    assert_eq!(v["link_port"], Value::Null);
    assert_eq!(v["nat"]["mapping"], "unknown");
    assert_eq!(serde_json::from_value::<LocalState>(v).unwrap(), state);
}

#[test]
fn docs_name_every_tincan_method() {
    assert_documented("## ipop-tincan", TincanRequest::METHODS);
    assert_documented(
        "Notifications tincan -> controller",
        TincanNotification::METHODS,
    );
}

/// A peer spraying source MACs fills tincan's MAC table (8192 entries), and a node may have
/// hundreds of links: the answer still fits one datagram, keeps every link it can and the
/// freshest MACs, and says how many it left out.
#[test]
fn a_state_too_big_for_a_datagram_is_bounded_and_counts_what_it_left_out() {
    let doc = include_str!("../../../docs/rpc.md");
    let start = doc.find("```json").unwrap() + 7;
    let text = &doc[start..];
    let mut state: LocalState = serde_json::from_str(&text[..text.find("```").unwrap()]).unwrap();
    let peer = state.peers[0].clone();
    state.macs = (0..8192u32)
        .map(|i| MacEntry {
            mac: MacAddr([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            vlan: (i % 2) as u16 * 10,
            uid: peer.uid,
            age_ms: u64::from(8192 - i),
        })
        .collect();
    let full = serde_json::to_vec(&state).unwrap().len();
    assert!(full > 65_507, "the unbounded answer is {full} bytes");
    let mut bounded = state.clone();
    bounded.bound(crate::api::MAX_STATE_BYTES);
    let reply = crate::api::response(Id::Num(1), Ok(serde_json::to_value(&bounded).unwrap()));
    assert!(reply.len() <= 65_507, "reply of {} bytes", reply.len());
    assert_eq!(bounded.peers, state.peers);
    assert!(bounded.macs.len() > 100, "{}", bounded.macs.len());
    assert_eq!(
        bounded.macs.len() as u64 + bounded.macs_truncated,
        state.macs.len() as u64
    );
    // The freshest are kept.
    assert_eq!(bounded.macs[0].age_ms, 1);
    assert!(bounded.macs.windows(2).all(|w| w[0].age_ms <= w[1].age_ms));
    let back: LocalState = serde_json::from_value(serde_json::to_value(&bounded).unwrap()).unwrap();
    assert_eq!(back, bounded);
    // Too many links: the links are cut too, and counted.
    state.peers = vec![peer; 1000];
    state.bound(crate::api::MAX_STATE_BYTES);
    assert!(serde_json::to_vec(&state).unwrap().len() <= crate::api::MAX_STATE_BYTES);
    assert_eq!(state.peers.len() as u64 + state.peers_truncated, 1000);
    assert!(state.peers_truncated > 0);
    // At most what fits in the room one more link would not: a few MACs.
    assert!(state.macs.len() < 10, "{}", state.macs.len());
    assert_eq!(state.macs.len() as u64 + state.macs_truncated, 8192);
    // A small state is left as it is, and its wire form has no truncation counts.
    let mut small: LocalState = serde_json::from_str(&text[..text.find("```").unwrap()]).unwrap();
    let before = small.clone();
    small.bound(crate::api::MAX_STATE_BYTES);
    assert_eq!(small, before);
    assert!(serde_json::to_value(&small)
        .unwrap()
        .get("macs_truncated")
        .is_none());
}
