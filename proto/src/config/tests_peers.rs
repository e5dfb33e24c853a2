//! Tests of the config's structure: peers, ports, the bridge name, and the warnings for
//! unsupported keys.

use super::tests::*;
use super::*;

#[test]
fn peers_are_parsed_with_their_uid() {
    let (c, warnings) = parse_ok(
        r#"{"switchmode": 1, "ip4": "10.0.3.1", "peers": [
            {"ip4": "10.0.3.2", "endpoint": "192.168.50.2:5900", "fpr": "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"},
            {"ip4": "10.0.3.3", "endpoint": "[fe80::1]:6000", "fpr": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}
        ]}"#,
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.peers.len(), 2);
    assert_eq!(
        c.peers[0],
        PeerConfig {
            ip4: Ipv4Addr::new(10, 0, 3, 2),
            uid: uid(UID_10_0_3_2),
            endpoint: "192.168.50.2:5900".parse().unwrap(),
            fpr: Some("ab".repeat(32).parse().unwrap()),
        }
    );
    assert_eq!(c.peers[1].uid, Uid::from_ip4(Ipv4Addr::new(10, 0, 3, 3)));
    assert_eq!(
        c.peers[1].endpoint.addr(),
        Some("[fe80::1]:6000".parse().unwrap())
    );
}

#[test]
fn duplicate_peer_is_refused() {
    let e = error(
        r#"{"switchmode": 1, "peers": [
            {"ip4": "10.0.3.2", "endpoint": "192.168.50.2:5900"},
            {"ip4": "10.0.3.2", "endpoint": "192.168.50.3:5900"}
        ]}"#,
    );
    assert_eq!(
        e,
        r#"config.json: "peers"[1]."ip4": expected an address not already given by "peers"[0], got "10.0.3.2""#
    );
}

#[test]
fn peer_with_our_own_ip4_is_refused() {
    let e = error(
        r#"{"switchmode": 1, "ip4": "10.0.3.1",
            "peers": [{"ip4": "10.0.3.1", "endpoint": "192.168.50.2:5900"}]}"#,
    );
    assert_eq!(
        e,
        r#"config.json: "peers"[0]."ip4": expected an address other than our own "ip4", got "10.0.3.1""#
    );
}

#[test]
fn malformed_peers_are_refused() {
    let e = error(r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2"}]}"#);
    assert_eq!(e, r#"config.json: "peers"[0]: missing "endpoint""#);
    let e =
        error(r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2", "endpoint": "192.168.50.2"}]}"#);
    assert!(
        e.starts_with(r#"config.json: "peers"[0]."endpoint": expected "ip:port""#),
        "{e}"
    );
    assert!(e.ends_with(r#"got "192.168.50.2""#), "{e}");
    let e =
        error(r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2", "endpoint": "192.168.50.2:0"}]}"#);
    assert!(e.contains("(port 0)"), "{e}");
    let e = error(r#"{"switchmode": 1, "peers": {"ip4": "10.0.3.2"}}"#);
    assert!(
        e.starts_with(r#"config.json: "peers": expected a list"#),
        "{e}"
    );
    let (_, warnings) = parse_ok(
        r#"{"switchmode": 1, "sec": false, "peers": [{"ip4": "10.0.3.2", "endpoint": "1.2.3.4:5", "x": 1}]}"#,
    );
    assert_eq!(
        warnings,
        [r#"config.json: "peers"[0]: unknown key "x" ignored"#]
    );
}

#[test]
fn ports_must_be_distinct() {
    assert_eq!(
        error(r#"{"switchmode": 1, "icc_port": 5800}"#),
        r#"config.json: "icc_port": expected a port different from "svpn_port" (5800), got 5800"#
    );
    assert!(error(r#"{"switchmode": 1, "link_port": 30000}"#)
        .starts_with(r#"config.json: "link_port": expected a port different from "icc_port""#));
    // The key the user wrote is blamed even when it comes first in the table.
    assert!(error(r#"{"switchmode": 1, "svpn_port": 5900}"#)
        .starts_with(r#"config.json: "svpn_port": expected a port different from "link_port""#));
}

#[test]
fn bridge_must_be_an_interface_name() {
    assert_eq!(
        parse_ok(r#"{"switchmode": 1, "bridge": "lxcbr0"}"#)
            .0
            .bridge
            .as_deref(),
        Some("lxcbr0")
    );
    for bad in [
        r#""""#,
        r#""a/b""#,
        r#""a b""#,
        r#""a:b""#,
        r#"".""#,
        r#""sixteen_chars_xx""#,
        "1",
    ] {
        let e = error(&format!(r#"{{"switchmode": 1, "bridge": {bad}}}"#));
        assert!(
            e.starts_with(r#"config.json: "bridge": expected a Linux interface name"#),
            "{e}"
        );
    }
}

#[test]
fn unsupported_keys_warn_only_when_not_default() {
    let (c, warnings) = parse_ok(
        r#"{"switchmode": 1, "xmpp_port": 5222, "trim_enabled": false, "stat_report": false,
            "xmpp_host": null, "multihop_cl": 100}"#,
    );
    assert_eq!(c.xmpp_port, 5222);
    assert!(warnings.is_empty(), "{warnings:?}");

    let (c, warnings) = parse_ok(
        r#"{"switchmode": 1, "xmpp_host": "xmpp.example.org", "xmpp_username": "a@b",
            "xmpp_password": "pw", "trim_enabled": true, "stat_report": true,
            "stun": ["stun.example.org:3478"]}"#,
    );
    assert_eq!(c.xmpp_host.as_deref(), Some("xmpp.example.org"));
    assert_eq!(texts(&c.stun), ["stun.example.org:3478"]);
    for key in ["trim_enabled", "stat_report"] {
        let hits = warnings
            .iter()
            .filter(|w| {
                w.starts_with(&format!(
                    r#"config.json: "{key}" is not supported yet and is ignored for now"#
                ))
            })
            .count();
        assert_eq!(hits, 1, "{key}: {warnings:?}");
    }
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn unsupported_keys_are_still_type_checked() {
    assert!(error(r#"{"switchmode": 1, "stun": ["no-port"]}"#)
        .starts_with(r#"config.json: "stun": expected"#));
    assert!(error(r#"{"switchmode": 1, "turn": [{"server": "t:1"}]}"#)
        .starts_with(r#"config.json: "turn": expected"#));
    assert!(error(r#"{"switchmode": 1, "xmpp_port": "5222"}"#)
        .starts_with(r#"config.json: "xmpp_port": expected"#));
    let (c, _) = parse_ok(
        r#"{"switchmode": 1, "turn": [{"server": "t.example.org:3478", "user": "u", "pass": "p"}]}"#,
    );
    assert_eq!(c.turn[0].server.to_string(), "t.example.org:3478");
}

#[test]
fn debug_output_hides_secrets() {
    let (c, _) = parse_ok(
        r#"{"switchmode": 1, "xmpp_password": "hunter2",
            "turn": [{"server": "t:1", "user": "u", "pass": "swordfish"}]}"#,
    );
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("swordfish"),
        "{shown}"
    );
}
