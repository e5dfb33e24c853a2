use super::*;
use serde_json::json;

const H1: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 1);
const H2: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 2);
const H3: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 3);

fn uid(ip: Ipv4Addr) -> String {
    Uid::from_ip4(ip).to_string()
}

/// h1's tincan: h2 online and encrypted, h3 offline, never heard from.
fn tincan() -> TincanSnapshot {
    let state = json!({
        "type": "local_state", "_uid": uid(H1), "_ip4": "10.0.3.1", "_fpr": "",
        "_mac": "02:00:00:00:00:01", "sec": true, "rekey_after_secs": 120, "candidates": [],
        "nat": {"srflx": null, "relay": null, "turn_server": null, "mapping": "unknown",
                "stun_responses": 0, "relayed_in": 0, "relayed_out": 0},
        "tap": "ipop", "mtu": 1500, "boot_id": 7, "configured": true, "switchmode": 1,
        "icc": true, "controller_alive": true, "link_port": 5900,
        "counters": {"tap_rx_frames": 10, "tap_rx_bytes": 1000, "tap_tx_frames": 20,
                     "tap_tx_bytes": 2000, "drop_link_down": 3, "drop_oversize": 0,
                     "flooded_frames": 4,
                     // Names no metric can carry: left out, never an invalid exposition.
                     "bad\"name": 1, "sneaky_total": 2, "Upper": 3},
        "peers": [
            {"type": "peer_state", "uid": uid(H2), "status": "online",
             "endpoint": "10.99.0.2:5900", "security": "noise", "path": "direct",
             "rtt_ms": 3, "candidates": [], "fpr": null, "handshakes": 2, "last_rx_ms": 500,
             "last_handshake_ms": 2000, "tx_frames": 5, "tx_bytes": 500, "rx_frames": 6,
             "rx_bytes": 600, "refused_macs": 1, "ups": 1},
            {"type": "peer_state", "uid": uid(H3), "status": "offline",
             "endpoint": "10.99.0.3:5900", "security": "noise", "path": "static",
             "rtt_ms": null, "candidates": [], "fpr": null, "handshakes": 0,
             "last_rx_ms": null}
        ],
        "macs": [{"mac": "02:00:00:00:00:21", "uid": uid(H2), "age_ms": 10}],
    });
    TincanSnapshot {
        state: serde_json::from_value(state).unwrap(),
        at_unix: 1_000_000.0,
    }
}

fn controller() -> ControllerState {
    serde_json::from_value(json!({
        "uid": uid(H1), "ip4": "10.0.3.1", "icc": true, "tincan_alive": true, "tap": "ipop",
        "bridge": null,
        "peers": [{"uid": uid(H2), "online": true, "claims_refused": 4,
                   "requests_rate_limited": 5}],
        "counters": {"icc_sent": 9, "arp_punted": 8},
        "neigh": [{"ip": "10.0.3.3", "mac": "02:00:00:00:00:03", "owner": uid(H3), "age_ms": 1}],
        "xmpp": "online", "signalling": null,
    }))
    .unwrap()
}

/// h2 named by the config, h3 by its own neighbour entry.
fn rendered(tincan_alive: bool) -> String {
    let c = ControllerState {
        tincan_alive,
        ..controller()
    };
    let t = tincan();
    render(&c, tincan_alive.then_some(&t), &peer_ip4s([H2], &c))
}

fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

fn labels(ip: Ipv4Addr) -> String {
    format!("peer=\"{}\",peer_ip4=\"{ip}\"", uid(ip))
}

#[test]
fn per_peer_counters_carry_type_unit_help_and_the_peers_uid_and_address() {
    let text = rendered(true);
    let h2 = labels(H2);
    has(&text, "# TYPE ipop_peer_rx_bytes counter");
    has(&text, "# UNIT ipop_peer_rx_bytes bytes");
    has(
        &text,
        "# HELP ipop_peer_rx_bytes Bytes of the frames received from the peer over the link.",
    );
    has(&text, &format!("ipop_peer_rx_bytes_total{{{h2}}} 600"));
    has(&text, &format!("ipop_peer_tx_bytes_total{{{h2}}} 500"));
    has(&text, &format!("ipop_peer_rx_frames_total{{{h2}}} 6"));
    has(&text, &format!("ipop_peer_tx_frames_total{{{h2}}} 5"));
    has(&text, &format!("ipop_peer_handshakes_total{{{h2}}} 2"));
    has(
        &text,
        &format!("ipop_peer_dropped_total{{{h2},reason=\"refused_mac\"}} 1"),
    );
    // Link state and path.
    let h3 = labels(H3);
    has(&text, &format!("ipop_peer_up{{{h2}}} 1"));
    has(&text, &format!("ipop_peer_up{{{h3}}} 0"));
    has(
        &text,
        &format!("ipop_peer_path{{{h2},path=\"direct\",endpoint=\"10.99.0.2:5900\"}} 1"),
    );
    has(
        &text,
        &format!("ipop_peer_path{{{h3},path=\"static\",endpoint=\"10.99.0.3:5900\"}} 1"),
    );
    // The controller's refusals, per peer.
    has(&text, &format!("ipop_peer_claims_refused_total{{{h2}}} 4"));
    has(
        &text,
        &format!("ipop_peer_requests_rate_limited_total{{{h2}}} 5"),
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn times_are_seconds_and_ages_become_timestamps() {
    let text = rendered(true);
    let h2 = labels(H2);
    has(&text, "# TYPE ipop_peer_rtt_seconds gauge");
    has(&text, "# UNIT ipop_peer_rtt_seconds seconds");
    has(&text, &format!("ipop_peer_rtt_seconds{{{h2}}} 0.003"));
    // Snapshot at 1_000_000 s; the handshake 2 s and the last datagram 0.5 s before.
    has(
        &text,
        &format!("ipop_peer_last_handshake_timestamp_seconds{{{h2}}} 999998.0"),
    );
    has(
        &text,
        &format!("ipop_peer_last_rx_timestamp_seconds{{{h2}}} 999999.5"),
    );
    // h3 has no RTT and never sent: no sample rather than a made-up 0.
    let h3 = labels(H3);
    assert!(!text.contains(&format!("ipop_peer_rtt_seconds{{{h3}}}")));
    assert!(!text.contains(&format!("ipop_peer_last_rx_timestamp_seconds{{{h3}}}")));
}

#[test]
fn node_metrics_drops_by_reason_and_the_counters_of_both_daemons() {
    let text = rendered(true);
    has(&text, "ipop_tincan_up 1");
    has(&text, "ipop_tincan_configured 1");
    has(&text, "ipop_tap_rx_frames_total 10");
    has(&text, "ipop_tap_rx_bytes_total 1000");
    has(&text, "ipop_tap_tx_frames_total 20");
    has(&text, "ipop_tap_tx_bytes_total 2000");
    has(&text, "# TYPE ipop_tincan_dropped_frames counter");
    has(
        &text,
        "ipop_tincan_dropped_frames_total{reason=\"link_down\"} 3",
    );
    has(
        &text,
        "ipop_tincan_dropped_frames_total{reason=\"oversize\"} 0",
    );
    has(&text, "ipop_tincan_flooded_frames_total 4");
    has(&text, "ipop_tincan_macs 1");
    has(&text, "ipop_controller_icc_sent_total 9");
    has(&text, "ipop_controller_arp_punted_total 8");
    has(&text, "ipop_neigh_entries 1");
    has(&text, "ipop_xmpp_state{state=\"online\"} 1");
    has(&text, "ipop_xmpp_state{state=\"off\"} 0");
    // The specific metrics are not repeated under the generic names.
    assert!(!text.contains("ipop_tincan_drop_link_down"), "{text}");
    assert!(!text.contains("ipop_tincan_tap_rx_bytes"), "{text}");
    // Counter names no metric name can hold are left out.
    for bad in ["bad", "sneaky", "Upper"] {
        assert!(!text.contains(bad), "{bad} in:\n{text}");
    }
}

#[test]
fn every_family_has_help_and_type_once_and_names_follow_the_conventions() {
    let text = rendered(true);
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(typed.insert(name.to_string()), "{name} typed twice");
            assert!(name.starts_with("ipop_"), "{name}");
            assert!(!name.ends_with("_total"), "{name}: the sample adds _total");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
            assert!(["counter", "gauge"].contains(&kind), "{name}: {kind}");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(typed.contains(family), "sample {line:?} before its TYPE");
            if !typed_as(&text, family, "counter") {
                assert_eq!(family, name, "{line}: _total on a gauge");
            } else {
                assert!(name.ends_with("_total"), "{line}: counter without _total");
            }
        }
    }
}

fn typed_as(text: &str, family: &str, kind: &str) -> bool {
    text.contains(&format!("# TYPE {family} {kind}\n"))
}

#[test]
fn without_tincan_its_series_are_left_out_not_shown_stale() {
    let text = rendered(false);
    has(&text, "ipop_tincan_up 0");
    for gone in ["ipop_peer_rx_bytes_total", "ipop_tap_", "ipop_peer_up{"] {
        assert!(!text.contains(gone), "{gone} in:\n{text}");
    }
    // The controller's own still are.
    has(&text, "ipop_controller_icc_sent_total 9");
    has(
        &text,
        &format!("ipop_peer_claims_refused_total{{{}}} 4", labels(H2)),
    );
}

#[test]
fn a_peer_without_a_known_address_has_an_empty_peer_ip4() {
    let c = controller();
    let t = tincan();
    let text = render(&c, Some(&t), &BTreeMap::new());
    // h3 is still named by its neighbour entry only when the caller passes it.
    has(
        &text,
        &format!("ipop_peer_up{{peer=\"{}\",peer_ip4=\"\"}} 1", uid(H2)),
    );
}
