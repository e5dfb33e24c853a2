//! Tests of the config: every key's default, the errors that name key, value and expectation,
//! layering, and the warnings for unsupported keys.

use super::*;

/// sha1 of "10.0.3.1", from `printf %s 10.0.3.1 | sha1sum`.
pub(super) const UID_10_0_3_1: &str = "4a4453572792b408e0ac91a75e6b6f89146e171b";
/// sha1 of "10.0.3.2", from `printf %s 10.0.3.2 | sha1sum`.
pub(super) const UID_10_0_3_2: &str = "d05719abdcdedb54fa14f4d049532fd97c5e2bfb";

pub(super) fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
    Config::from_json_str(text, "config.json")
}

pub(super) fn parse_ok(text: &str) -> (Config, Vec<String>) {
    parse(text).unwrap_or_else(|e| panic!("{text} refused: {e}"))
}

pub(super) fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("{text} accepted"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn uid(text: &str) -> Uid {
    text.parse().unwrap()
}

pub(super) fn texts<T: ToString>(items: &[T]) -> Vec<String> {
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
