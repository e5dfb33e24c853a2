//! Tests of the config: every key's default, the errors that name key, value and expectation,
//! layering, and the warnings for unsupported keys.

use super::*;
use serde_json::json;

/// sha1 of "10.0.3.1", from `printf %s 10.0.3.1 | sha1sum`.
const UID_10_0_3_1: &str = "4a4453572792b408e0ac91a75e6b6f89146e171b";
/// sha1 of "10.0.3.2", from `printf %s 10.0.3.2 | sha1sum`.
const UID_10_0_3_2: &str = "d05719abdcdedb54fa14f4d049532fd97c5e2bfb";

fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    Config::from_json_str(text, "config.json")
}

fn parse_ok(text: &str) -> (Config, Vec<String>) {
    parse(text).unwrap_or_else(|e| panic!("{text} refused: {e}"))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("{text} accepted"),
        Err(e) => e.to_string(),
    }
}

fn uid(text: &str) -> Uid {
    text.parse().unwrap()
}

fn texts<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(T::to_string).collect()
}

#[test]
fn defaults_match_the_original_table() {
    let c = Config::default();
    assert_eq!(c.xmpp_username, None);
    assert_eq!(c.xmpp_password, None);
    assert_eq!(c.xmpp_host, None);
    assert_eq!(c.xmpp_port, 5222);
    assert_eq!(c.ip4, Ipv4Addr::new(172, 16, 0, 1));
    assert_eq!(c.ip4_mask, 24);
    assert_eq!(c.ip6_mask, 64);
    assert_eq!(c.subnet_mask, 32);
    assert_eq!(c.svpn_port, 5800);
    assert_eq!(c.uid_size, 40);
    assert!(c.sec);
    assert_eq!(c.wait_time, 15);
    assert_eq!(c.buf_size, 65507);
    assert_eq!(c.tincan_logging, 1);
    assert_eq!(c.controller_logging, LogLevel::Info);
    assert!(!c.icc);
    assert_eq!(c.icc_port, 30000);
    assert_eq!(c.switchmode, 0);
    assert_eq!(
        texts(&c.stun),
        [
            "stun.l.google.com:19302",
            "stun1.l.google.com:19302",
            "stun2.l.google.com:19302",
            "stun3.l.google.com:19302",
            "stun4.l.google.com:19302",
        ]
    );
    assert!(c.turn.is_empty());
    assert_eq!(c.local_uid, "");
    assert!(c.network_ignore_list.is_empty());
    assert!(!c.on_demand_connection);
    assert_eq!(c.on_demand_inactive_timeout, 600);
    assert!(!c.trim_enabled);
    assert!(!c.router_mode);
    assert_eq!(c.contr_port, 5801);
    assert_eq!(c.tincan_path, None);
    assert!(c.peers.is_empty());
    assert_eq!(c.bridge, None);
    assert_eq!(c.link_port, 5900);
    assert_eq!(c.tap_mtu, 1500);
    assert_eq!(c.link_mtu, 1500);
}

#[test]
fn minimal_config_is_the_defaults_with_switchmode_1_and_no_warnings() {
    let (c, warnings) = parse_ok(r#"{"switchmode": 1}"#);
    assert_eq!(
        c,
        Config {
            switchmode: 1,
            ..Config::default()
        }
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn uid_is_sha1_of_the_ip4_string() {
    let (c, _) = parse_ok(r#"{"switchmode": 1, "ip4": "10.0.3.1"}"#);
    assert_eq!(c.uid(), uid(UID_10_0_3_1));
    assert_eq!(c.uid().to_string().len(), UID_SIZE);
}

#[test]
fn gen_ip6_puts_the_first_16_uid_digits_after_the_prefix() {
    assert_eq!(
        gen_ip6(&uid(UID_10_0_3_1)),
        "fd50:0dbc:41f2:4a3c:4a44:5357:2792:b408"
    );
}

#[test]
fn wrong_value_names_source_key_expectation_and_value() {
    assert_eq!(
        error(r#"{"switchmode": 1, "icc_port": "abc"}"#),
        r#"config.json: "icc_port": expected an integer 1-65535, got "abc""#
    );
}

#[test]
fn integers_must_be_json_integers_in_range() {
    for bad in [r#""5800""#, "5800.0", "5800.5", "-1", "0", "65536", "true"] {
        let e = error(&format!(r#"{{"switchmode": 1, "svpn_port": {bad}}}"#));
        assert_eq!(
            e,
            format!(r#"config.json: "svpn_port": expected an integer 1-65535, got {bad}"#)
        );
    }
    assert!(error(r#"{"switchmode": 1, "ip4_mask": 33}"#)
        .contains(r#""ip4_mask": expected an integer 0-32"#));
    assert!(error(r#"{"switchmode": 1, "ip6_mask": 129}"#).contains(r#""ip6_mask""#));
    assert!(error(r#"{"switchmode": 1, "tincan_logging": 4}"#).contains(r#""tincan_logging""#));
    assert!(error(r#"{"switchmode": 1, "wait_time": 0}"#).contains(r#""wait_time""#));
    assert!(error(r#"{"switchmode": 1, "tap_mtu": 575}"#).contains("576-9000"));
    assert!(error(r#"{"switchmode": 1, "tap_mtu": 9001}"#).contains("576-9000"));
    assert_eq!(
        parse_ok(r#"{"switchmode": 1, "tap_mtu": 9000}"#).0.tap_mtu,
        9000
    );
    assert!(error(r#"{"switchmode": 1, "link_mtu": 575}"#)
        .contains(r#""link_mtu": expected an integer 576-9000"#));
    assert!(error(r#"{"switchmode": 1, "link_mtu": 9001}"#).contains("576-9000"));
    assert_eq!(
        parse_ok(r#"{"switchmode": 1, "link_mtu": 1400}"#)
            .0
            .link_mtu,
        1400
    );
}

#[test]
fn booleans_must_be_json_booleans() {
    assert_eq!(
        error(r#"{"switchmode": 1, "icc": "true"}"#),
        r#"config.json: "icc": expected true or false, got "true""#
    );
    assert!(error(r#"{"switchmode": 1, "sec": 1}"#).contains(r#""sec": expected true or false"#));
    let (c, warnings) = parse_ok(r#"{"switchmode": 1, "icc": true, "sec": false}"#);
    assert!(c.icc && !c.sec);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn ip4_must_be_an_ipv4_address() {
    assert_eq!(
        error(r#"{"switchmode": 1, "ip4": "10.0.3"}"#),
        r#"config.json: "ip4": expected an IPv4 address string, got "10.0.3""#
    );
    assert!(error(r#"{"switchmode": 1, "ip4": "::1"}"#).contains(r#""ip4""#));
}

#[test]
fn uid_size_other_than_40_is_refused() {
    let e = error(r#"{"switchmode": 1, "uid_size": 20}"#);
    assert!(
        e.starts_with(r#"config.json: "uid_size": expected 40"#),
        "{e}"
    );
    assert!(e.ends_with("got 20"), "{e}");
    assert_eq!(
        parse_ok(r#"{"switchmode": 1, "uid_size": 40}"#).0.uid_size,
        40
    );
}

#[test]
fn controller_logging_takes_level_names_in_either_case() {
    for (text, level) in [
        ("DEBUG", LogLevel::Debug),
        ("debug", LogLevel::Debug),
        ("WARNING", LogLevel::Warning),
        ("critical", LogLevel::Critical),
        ("PKTDUMP", LogLevel::Pktdump),
    ] {
        let json = format!(r#"{{"switchmode": 1, "controller_logging": "{text}"}}"#);
        assert_eq!(parse_ok(&json).0.controller_logging, level);
    }
    let e = error(r#"{"switchmode": 1, "controller_logging": "LOUD"}"#);
    assert!(
        e.starts_with(r#"config.json: "controller_logging": expected one of "DEBUG""#),
        "{e}"
    );
    assert!(e.ends_with(r#"got "LOUD""#), "{e}");
}

#[test]
fn broken_json_names_the_source_and_the_position() {
    let e = error(r#"{"switchmode": 1,"#);
    assert!(e.starts_with("config.json: not valid JSON: "), "{e}");
    assert!(e.contains("line 1 column"), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn top_level_must_be_an_object() {
    assert_eq!(
        error("[1, 2]"),
        "config.json: expected a JSON object at the top level, got [1,2]"
    );
}

#[test]
fn unknown_key_is_a_warning_not_an_error() {
    let (c, warnings) = parse_ok(r#"{"switchmode": 1, "foo": 3}"#);
    assert_eq!(c.switchmode, 1);
    assert_eq!(warnings, [r#"config.json: unknown key "foo" ignored"#]);
}

#[test]
fn switchmode_0_is_refused_with_the_hint() {
    let e = error(r#"{"switchmode": 0}"#);
    assert!(e.starts_with(r#"config.json: "switchmode": 0"#), "{e}");
    assert!(
        e.contains("GroupVPN") && e.contains("not implemented"),
        "{e}"
    );
    assert!(e.contains(r#"set "switchmode": 1"#), "{e}");

    // 0 is also the original's default, so leaving it out is refused the same way.
    let e = error("{}");
    assert!(
        e.starts_with(r#"config.json: "switchmode" defaults to 0"#),
        "{e}"
    );
    assert!(e.contains(r#"set "switchmode": 1"#), "{e}");

    let e = Config::from_json_layers(&[]).unwrap_err().to_string();
    assert!(e.contains(r#"set "switchmode": 1"#), "{e}");
}

#[test]
fn switchmode_other_than_0_or_1_is_an_error_naming_the_key() {
    assert_eq!(
        error(r#"{"switchmode": 2}"#),
        r#"config.json: "switchmode": expected 0 or 1, got 2"#
    );
}

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

#[test]
fn override_string_wins_over_file_values() {
    let file = r#"{"switchmode": 1, "ip4": "10.0.3.1", "icc_port": 30001, "tap_mtu": 1300}"#;
    let (c, warnings) = Config::from_json_layers(&[
        (file, "config.json"),
        (r#"{"ip4": "10.0.3.2", "tap_mtu": 1280}"#, OVERRIDE_SOURCE),
    ])
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.ip4, Ipv4Addr::new(10, 0, 3, 2));
    assert_eq!(c.tap_mtu, 1280);
    // Keys the override does not name keep the file's values.
    assert_eq!(c.icc_port, 30001);
    assert_eq!(c.switchmode, 1);
    assert_eq!(c.uid(), uid(UID_10_0_3_2));
}

#[test]
fn messages_name_the_layer_that_gave_the_value() {
    let file = (r#"{"switchmode": 1, "foo": 1}"#, "/etc/ipop/config.json");
    let e =
        Config::from_json_layers(&[file, (r#"{"icc_port": "abc"}"#, OVERRIDE_SOURCE)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"-s: "icc_port": expected an integer 1-65535, got "abc""#
    );
    let (_, warnings) =
        Config::from_json_layers(&[file, (r#"{"bar": 1}"#, OVERRIDE_SOURCE)]).unwrap();
    assert_eq!(
        warnings,
        [
            r#"-s: unknown key "bar" ignored"#,
            r#"/etc/ipop/config.json: unknown key "foo" ignored"#,
        ]
    );
    let e = Config::from_json_layers(&[file, ("{", OVERRIDE_SOURCE)])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("-s: not valid JSON: "), "{e}");
    let (c, _) = Config::from_json_layers(&[(r#"{"switchmode": 1}"#, OVERRIDE_SOURCE)]).unwrap();
    assert_eq!(c.switchmode, 1);
}

#[test]
fn unreadable_file_message() {
    let e = ConfigError::unreadable(
        "/etc/ipop/config.json",
        &std::io::Error::from(std::io::ErrorKind::NotFound),
    );
    assert_eq!(
        e.to_string(),
        "/etc/ipop/config.json: cannot read: entity not found"
    );
}

#[test]
fn host_names_are_kept_for_the_caller_to_resolve() {
    let (c, _) = parse_ok(
        r#"{"switchmode": 1, "sec": false, "stun": ["stun.example.org:3478", "192.0.2.1:3478"],
            "peers": [{"ip4": "10.0.3.2", "endpoint": "host2.example.org:5900"}]}"#,
    );
    assert_eq!(c.peers[0].endpoint.addr(), None);
    assert_eq!(c.peers[0].endpoint.host(), "host2.example.org");
    assert_eq!(c.peers[0].endpoint.port(), 5900);
    assert_eq!(c.stun[0].addr(), None);
    assert_eq!(c.stun[1].addr(), Some("192.0.2.1:3478".parse().unwrap()));
}

/// Every key of the table: its default, written out, reads back as the default; a value
/// of no key's type is refused with the file, the key, what it takes and the value.
#[test]
fn every_key_takes_its_default_and_refuses_a_bad_value_by_name() {
    let keys = Config::keys();
    assert_eq!(keys.len(), 38);
    for k in &keys {
        if k.name == "switchmode" {
            continue; // its default, 0, is refused (switchmode_0_is_refused_with_the_hint)
        }
        let text = json!({"switchmode": 1, k.name: k.default}).to_string();
        let (c, warnings) = parse_ok(&text);
        assert_eq!(
            c,
            Config {
                switchmode: 1,
                ..Config::default()
            },
            "{}",
            k.name
        );
        assert!(warnings.is_empty(), "{}: {warnings:?}", k.name);

        let bad = json!({"not": ["a", "value"]});
        let text = json!({"switchmode": 1, k.name: bad}).to_string();
        assert_eq!(
            error(&text),
            format!(
                r#"config.json: "{}": expected {}, got {{"not":["a","value"]}}"#,
                k.name, k.expected
            )
        );
    }
    let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
    for original in [
        "xmpp_username",
        "xmpp_password",
        "xmpp_host",
        "ip4",
        "ip4_mask",
        "ip6_mask",
        "subnet_mask",
        "svpn_port",
        "uid_size",
        "sec",
        "wait_time",
        "buf_size",
        "tincan_logging",
        "controller_logging",
        "icc",
        "icc_port",
        "switchmode",
        "stun",
        "turn",
        "local_uid",
        "network_ignore_list",
        "on-demand_connection",
        "on-demand_inactive_timeout",
        "trim_enabled",
        "router_mode",
    ] {
        assert!(
            names.contains(&original),
            "{original} is missing from the table"
        );
    }
}

/// Every unsupported key, given a value other than its default, is accepted with a warning
/// that names it; so is every original key without a field.
#[test]
fn network_ignore_list_is_read_without_a_warning() {
    let (c, warnings) =
        parse_ok(r#"{"switchmode": 1, "network_ignore_list": ["virbr0", "docker0"]}"#);
    assert_eq!(c.network_ignore_list, ["virbr0", "docker0"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn xmpp_allow_is_a_bounded_list_of_bare_jids() {
    let (c, _) = parse_ok(r#"{"switchmode": 1}"#);
    assert_eq!(c.xmpp_allow, None);
    let (c, warnings) =
        parse_ok(r#"{"switchmode": 1, "xmpp_allow": ["Node1@IPOP.lab", "node2@ipop.lab"]}"#);
    assert_eq!(
        c.xmpp_allow.as_deref(),
        Some(&["node1@ipop.lab".to_owned(), "node2@ipop.lab".to_owned()][..])
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    for bad in [
        r#""node1@ipop.lab""#,
        r#"["node1"]"#,
        r#"["node1@ipop.lab/tincan"]"#,
        r#"["@ipop.lab"]"#,
        r#"["a b@ipop.lab"]"#,
        r#"[1]"#,
    ] {
        let e = error(&format!(r#"{{"switchmode": 1, "xmpp_allow": {bad}}}"#));
        assert!(
            e.contains("xmpp_allow") && e.contains("bare JID"),
            "{bad}: {e}"
        );
    }
    let many: Vec<String> = (0..=readers::MAX_XMPP_ALLOW)
        .map(|i| format!("\"n{i}@d\""))
        .collect();
    let e = error(&format!(
        r#"{{"switchmode": 1, "xmpp_allow": [{}]}}"#,
        many.join(",")
    ));
    assert!(e.contains("at most 4096"), "{e}");
}

#[test]
fn unsupported_keys_warn_naming_the_key() {
    let other = |default: &Value| match default {
        Value::Bool(b) => json!(!b),
        Value::String(_) => json!("x"),
        Value::Array(_) => json!(["eth9"]),
        Value::Number(n) => json!(n.as_u64().unwrap() + 1),
        Value::Null => json!("x"),
        Value::Object(_) => unreachable!(),
    };
    let unsupported: Vec<KeyDoc> = Config::keys()
        .into_iter()
        .filter(|k| matches!(k.support, Support::Unsupported(_)))
        .collect();
    assert_eq!(unsupported.len(), 4);
    let ignored_keys = IGNORED_KEYS.iter().map(|(name, default, _)| {
        let default = default.map_or(Value::Null, |d| serde_json::from_str(d).unwrap());
        (*name, default)
    });
    for (name, default) in unsupported
        .iter()
        .map(|k| (k.name, k.default.clone()))
        .chain(ignored_keys)
    {
        let (_, warnings) = parse_ok(&json!({"switchmode": 1, name: default}).to_string());
        assert!(warnings.is_empty(), "{name} at its default: {warnings:?}");
        let value = other(&default);
        let (_, warnings) = parse_ok(&json!({"switchmode": 1, name: value}).to_string());
        assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
        assert!(
            warnings[0].starts_with(&format!(
                r#"config.json: "{name}" is not supported yet and is ignored for now ("#
            )),
            "{}",
            warnings[0]
        );
    }
}

#[test]
fn every_key_has_help() {
    let keys = Config::keys();
    for k in &keys {
        assert!(!k.help.is_empty(), "{} has no help text", k.name);
    }
    let sec = keys.iter().find(|k| k.name == "sec").unwrap();
    assert!(
        sec.help[0].starts_with("Links are authenticated"),
        "{:?}",
        sec.help
    );
}

mod key_tests {
    use super::*;

    #[test]
    fn sec_requires_a_fingerprint_per_peer_and_names_the_peer() {
        let e = Config::from_json_str(
            r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900"}]}"#,
            "config.json",
        )
        .unwrap_err();
        assert!(
            e.0.starts_with("config.json: \"peers\"[0]: missing \"fpr\""),
            "{e}"
        );
        let (c, _) = Config::from_json_str(
        r#"{"switchmode": 1, "sec": false, "peers": [{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900"}]}"#,
        "config.json",
    )
    .unwrap();
        assert_eq!(c.peers[0].fpr, None);
    }

    #[test]
    fn bad_fingerprint_and_rekey_values_are_named() {
        let e = Config::from_json_str(
        r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900", "fpr": "abc"}]}"#,
        "c.json",
    )
    .unwrap_err();
        assert!(
            e.0.contains("\"peers\"[0].\"fpr\"") && e.0.contains("64 hex"),
            "{e}"
        );
        let e = Config::from_json_str(r#"{"switchmode": 1, "rekey_interval": 0}"#, "c.json")
            .unwrap_err();
        assert!(e.0.contains("\"rekey_interval\""), "{e}");
        let (c, _) = Config::from_json_str(
            r#"{"switchmode": 1, "rekey_interval": 5, "key_file": "/etc/ipop/k"}"#,
            "c.json",
        )
        .unwrap();
        assert_eq!(
            (c.rekey_interval, c.key_file),
            (5, Some(PathBuf::from("/etc/ipop/k")))
        );
    }
}

#[test]
fn cipher_restricts_the_offer() {
    assert_eq!(
        parse_ok(r#"{"switchmode": 1}"#).0.cipher,
        CipherSetting::Auto
    );
    for (text, setting) in [
        ("auto", CipherSetting::Auto),
        ("aes-256-gcm", CipherSetting::Aes256Gcm),
        ("chacha20-poly1305", CipherSetting::ChaCha20Poly1305),
    ] {
        let c = parse_ok(&format!(r#"{{"switchmode": 1, "cipher": "{text}"}}"#)).0;
        assert_eq!(c.cipher, setting);
    }
    let e = error(r#"{"switchmode": 1, "cipher": "aes"}"#);
    assert!(
        e.contains(r#""cipher": expected one of "auto", "aes-256-gcm", "chacha20-poly1305""#),
        "{e}"
    );
}
