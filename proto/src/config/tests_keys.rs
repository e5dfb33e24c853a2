//! Tests of the config's layers (file, override string), host names, and the key table:
//! every key's default, bad value, help text, and the newer keys.

use super::tests::*;
use super::*;
use serde_json::json;

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
    assert_eq!(keys.len(), 43);
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

#[test]
fn metrics_port_is_off_unless_set_and_needs_a_restart() {
    assert_eq!(parse_ok(r#"{"switchmode": 1}"#).0.metrics_port, None);
    let on = parse_ok(r#"{"switchmode": 1, "metrics_port": 9105}"#).0;
    assert_eq!(on.metrics_port, Some(9105));
    let off = parse_ok(r#"{"switchmode": 1, "metrics_port": null}"#).0;
    assert_eq!(off.metrics_port, None);
    for bad in ["0", "65536", "\"9105\"", "-1"] {
        let e = error(&format!(r#"{{"switchmode": 1, "metrics_port": {bad}}}"#));
        assert!(
            e.contains(r#""metrics_port": expected an integer 1-65535 or null"#),
            "{e}"
        );
    }
    let plan = Reload::plan(&off, &on);
    assert_eq!(plan.need_restart, ["metrics_port"]);
    assert_eq!(plan.config.metrics_port, None);
}
