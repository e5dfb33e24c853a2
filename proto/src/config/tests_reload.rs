//! Tests of what a reload applies ([`Reload::plan`]) and of the config's man page.

use super::*;
use serde_json::json;

const FPR_A: &str = "9f2827bc97d7017045f48ac450efcc7d09095209a043e8d91e2f759e26ec6e05";
const FPR_B: &str = "27565a3978a73624e5fde30f23cb072726dd3976f35f6560ee2a778870361517";

fn cfg(extra: serde_json::Value) -> Config {
    let mut base = json!({
        "ip4": "10.0.3.1", "switchmode": 1, "icc": true, "bridge": "lxcbr0",
        "peers": [
            {"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900", "fpr": FPR_A},
            {"ip4": "10.0.3.3", "endpoint": "10.99.0.3:5900", "fpr": FPR_B}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    Config::from_json_str(&base.to_string(), "config.json")
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn uid(ip4: &str) -> Uid {
    Uid::from_ip4(ip4.parse().unwrap())
}

#[test]
fn an_unchanged_config_reloads_to_nothing() {
    let c = cfg(json!({}));
    let r = Reload::plan(&c, &c.clone());
    assert_eq!(r.config, c);
    assert!(r.link.is_empty() && r.trim.is_empty());
    assert!(r.applied.is_empty() && r.need_restart.is_empty());
}

#[test]
fn removed_peers_are_trimmed_added_ones_linked_changed_ones_both() {
    let running = cfg(json!({}));
    let new = cfg(json!({"peers": [
        {"ip4": "10.0.3.3", "endpoint": "10.99.0.33:5900", "fpr": FPR_B},
        {"ip4": "10.0.3.4", "endpoint": "10.99.0.4:5900", "fpr": FPR_A}
    ]}));
    let r = Reload::plan(&running, &new);
    assert_eq!(r.trim, vec![uid("10.0.3.2"), uid("10.0.3.3")]);
    let linked: Vec<String> = r.link.iter().map(|p| p.ip4.to_string()).collect();
    assert_eq!(linked, ["10.0.3.3", "10.0.3.4"]);
    assert_eq!(r.link[0].endpoint.to_string(), "10.99.0.33:5900");
    assert_eq!(r.applied, ["peers"]);
    assert!(r.need_restart.is_empty());
    assert_eq!(r.config.peers, new.peers);
}

#[test]
fn keys_that_need_a_restart_are_named_and_keep_their_running_value() {
    let running = cfg(json!({}));
    let new = cfg(json!({
        "bridge": "br9", "tap_mtu": 1300, "controller_logging": "DEBUG", "tincan_logging": 3
    }));
    let r = Reload::plan(&running, &new);
    assert_eq!(r.need_restart, ["bridge", "tap_mtu"]);
    assert_eq!(r.applied, ["tincan_logging", "controller_logging"]);
    assert_eq!(r.config.bridge.as_deref(), Some("lxcbr0"));
    assert_eq!(r.config.tap_mtu, running.tap_mtu);
    assert_eq!(r.config.controller_logging, LogLevel::Debug);
    assert_eq!(r.config.tincan_logging, 3);
    assert!(r.link.is_empty() && r.trim.is_empty());
}

#[test]
fn changed_keys_sees_every_key_of_the_table() {
    // Each key's default against a value the reader takes that is not the default.
    let d = Config {
        switchmode: 1,
        ..Config::default()
    };
    let c = cfg(json!({}));
    let changed = d.changed_keys(&c);
    for k in ["ip4", "icc", "bridge", "peers"] {
        assert!(changed.contains(&k), "{k} not in {changed:?}");
    }
    assert!(!changed.contains(&"svpn_port"));
}

#[test]
fn the_man_page_documents_every_key_with_its_default() {
    let page = man_page("9.9.9");
    assert!(page.starts_with(".TH IPOP\\-CONFIG 5 "), "{page}");
    assert!(page.contains("\"ipop 9.9.9\""));
    for k in Config::keys() {
        let name = k.name.replace('-', "\\-");
        assert!(
            page.contains(&format!("\\fB{name}\\fR (default: ")),
            "{} missing",
            k.name
        );
    }
    for (key, _, _) in IGNORED_KEYS {
        assert!(page.contains(&format!("\\fB{key}\\fR")), "{key} missing");
    }
    let mtu = Config::default().tap_mtu;
    assert!(page.contains(&format!("\\fBtap_mtu\\fR (default: {mtu})\n")));
    assert!(page.contains("\\fBxmpp_password\\fR (default: none)\n"));
    // No line starts with a roff control character unless it is a request the page meant.
    for line in page.lines() {
        if line.starts_with('.') {
            let req = line.split_whitespace().next().unwrap();
            assert!(
                [".TH", ".SH", ".TP", ".PP", ".br", ".nf", ".fi"].contains(&req),
                "stray request: {line}"
            );
        }
    }
}

#[test]
fn storm_control_rates_are_applied_on_reload_and_default_to_the_storm_defaults() {
    let running = cfg(json!({}));
    assert_eq!(running.storm_rates(), crate::storm::StormRates::default());
    let new = cfg(json!({"storm_broadcast_pps": 0, "storm_unknown_unicast_pps": 50}));
    let r = Reload::plan(&running, &new);
    assert_eq!(
        r.applied,
        ["storm_broadcast_pps", "storm_unknown_unicast_pps"]
    );
    assert!(r.need_restart.is_empty());
    assert_eq!(
        r.config.storm_rates(),
        crate::storm::StormRates {
            broadcast_pps: 0,
            multicast_pps: 2_000,
            unknown_unicast_pps: 50
        }
    );
}
