//! Peer discovery and NAT traversal end to end (scripts/natlab.sh): hosts behind nftables NATs
//! find each other over a real XMPP server (prosody) with original-style gvpn configs, punch
//! holes with STUN, fall back to a real TURN server (coturn), survive an XMPP outage, come
//! back after a restart, and refuse a key that does not match the signalled fingerprint.

mod natlab;

use ipop_lab_tests::{bin_dir, require_root, wait_until};
use natlab::{ip, NatLab};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn three_hosts_behind_three_kinds_of_nat_find_each_other_and_ping_once() {
    if !require_root() {
        return;
    }
    let lab = NatLab::up("nat3", "full cone sym");
    eprintln!(
        "natlab up (start to every link online): {:.1} s",
        lab.up_secs
    );
    let containers = ["h1c1", "h1c2", "h2c1", "h2c2", "h3c1", "h3c2"];
    for from in containers {
        for to in containers {
            if from[..2] == to[..2] {
                continue;
            }
            let (received, dup, text) = lab.ping(from, &ip(to), 2);
            assert_eq!(received, 2, "{from} -> {to}:\n{text}");
            assert!(!dup, "{from} -> {to} duplicates:\n{text}");
        }
    }
    // The configs are original-style: no static peers.
    let cfg = std::fs::read_to_string(lab.dir.join("h1/config.json")).unwrap();
    assert!(cfg.contains("xmpp_username") && !cfg.contains("\"peers\""));
}

#[test]
fn cone_peers_go_direct_symmetric_peers_go_through_turn() {
    if !require_root() {
        return;
    }
    let lab = NatLab::up("natp", "cone cone sym sym");
    let uids: Vec<String> = ["h1", "h2", "h3", "h4"]
        .iter()
        .map(|h| lab.uid(h))
        .collect();
    let path = |host: &str, peer: usize| -> String {
        lab.links(host)
            .into_iter()
            .find(|(u, _, _)| *u == uids[peer])
            .map(|(_, _, p)| p)
            .unwrap_or_default()
    };
    // Two port-restricted cone NATs: a direct (reflexive) path, no relay.
    assert_eq!(path("h1", 1), "reflexive", "h1 -> h2");
    assert_eq!(path("h2", 0), "reflexive", "h2 -> h1");
    // Two symmetric NATs: only the relay works.
    assert_eq!(path("h3", 3), "relayed", "h3 -> h4");
    assert_eq!(path("h4", 2), "relayed", "h4 -> h3");
    let (received, dup, text) = lab.ping("h3c1", &ip("h4c2"), 3);
    assert!(received == 3 && !dup, "{text}");
    let (received, dup, text) = lab.ping("h1c2", &ip("h2c1"), 3);
    assert!(received == 3 && !dup, "{text}");
    // Nothing of the cone pair went through TURN: h1's and h2's only other peers are the
    // symmetric ones, so take their relay counters before and after a cone-to-cone burst.
    let relayed = |h: &str| {
        let n = &lab.state(h)["nat"];
        n["relayed_in"].as_u64().unwrap_or(0) + n["relayed_out"].as_u64().unwrap_or(0)
    };
    let before = (relayed("h1"), relayed("h2"));
    let (received, _, text) = lab.ping("h1c1", &ip("h2c2"), 10);
    assert_eq!(received, 10, "{text}");
    let after = (relayed("h1"), relayed("h2"));
    // Keepalives to the relayed peers may run meanwhile; 10 pings each way would be >= 20.
    assert!(
        after.0 - before.0 < 10 && after.1 - before.1 < 10,
        "cone-to-cone traffic went through TURN: {before:?} -> {after:?}"
    );
    // What the operator sees on h3: h4's row says "relayed" with the address h3 sends to
    // through the relay (h4's own relay address, or h4's NAT's through ours), as tincan's
    // state does.
    let config = lab.dir.join("h3/config.json");
    let ipopctl = bin_dir().join("ipopctl");
    let (ipopctl, config) = (ipopctl.to_str().unwrap(), config.to_str().unwrap());
    let out = lab.exec("h3", &[ipopctl, "-c", config, "status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ipopctl status --json on h3: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let row = status["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["uid"] == uids[3].as_str()))
        .unwrap_or_else(|| panic!("no row for h4: {status}"))
        .clone();
    assert_eq!(row["link"]["path"], "relayed", "{row}");
    let endpoint = row["link"]["endpoint"].as_str().unwrap_or_default();
    let h4 = lab.state("h3")["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["uid"] == uids[3].as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(h4["endpoint"].as_str(), Some(endpoint), "{row}");
    assert!(endpoint.starts_with("203.0.113."), "{row}");
    let table = lab.exec("h3", &[ipopctl, "-c", config, "peers"]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.contains(" relayed ") && l.contains(endpoint)),
        "{table}"
    );
    let status = String::from_utf8_lossy(&lab.script(&["status"]).stdout).into_owned();
    eprintln!("{status}");
}

/// Two hosts behind symmetric NATs (over IPv4 only a relay joins them) that also have routed
/// IPv6 behind stateful firewalls: their IPv6 host candidates, signalled over XMPP, give a
/// direct link over IPv6, with no TURN in the way.
#[test]
fn symmetric_nat_hosts_with_ipv6_link_directly_over_ipv6() {
    if !require_root() {
        return;
    }
    let lab = NatLab::up_v6("nat6", "sym sym", true);
    for (host, peer_v6) in [
        ("h1", "[2001:db8:2::2]:5900"),
        ("h2", "[2001:db8:1::2]:5900"),
    ] {
        let peers = lab.state(host)["peers"].clone();
        assert_eq!(peers[0]["status"], "online", "{host}: {peers}");
        assert_eq!(peers[0]["path"], "direct", "{host}: {peers}");
        assert_eq!(peers[0]["endpoint"], peer_v6, "{host}: {peers}");
    }
    let relayed = |h: &str| {
        let n = &lab.state(h)["nat"];
        n["relayed_in"].as_u64().unwrap_or(0) + n["relayed_out"].as_u64().unwrap_or(0)
    };
    let before = relayed("h1");
    let (received, dup, text) = lab.ping("h1c1", &ip("h2c2"), 10);
    assert!(received == 10 && !dup, "{text}");
    assert!(relayed("h1") - before < 10, "pings went through TURN");
}

#[test]
fn an_xmpp_outage_keeps_links_and_a_restarted_node_comes_back() {
    if !require_root() {
        return;
    }
    let lab = NatLab::up("natx", "cone cone cone");
    let hosts = ["h1", "h2", "h3"];
    // The XMPP server goes away: established links stay, traffic flows.
    lab.ok(&["kill", "srv", "prosody"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(lab.all_online(&hosts), "links dropped with the XMPP server");
    let (received, _, text) = lab.ping("h1c1", &ip("h3c1"), 3);
    assert_eq!(received, 3, "{text}");
    // h3 leaves while the server is down, and comes back once it is up again.
    lab.ok(&["kill", "h3", "controller"]);
    lab.ok(&["kill", "h3", "tincan"]);
    lab.ok(&["start", "srv", "prosody"]);
    lab.ok(&["start", "h3", "tincan"]);
    lab.ok(&["start", "h3", "controller"]);
    let t = Instant::now();
    let back = wait_until(Duration::from_secs(45), || lab.all_online(&hosts));
    let secs = t.elapsed().as_secs_f64();
    assert!(back, "h3 did not rejoin within 45 s");
    eprintln!("restarted node back in the overlay after {secs:.1} s");
    let (received, dup, text) = lab.ping("h3c2", &ip("h1c2"), 3);
    assert!(received == 3 && !dup, "{text}");
    // The others logged in again by themselves.
    assert!(lab.log("h1", "controller").contains("XMPP: online"));
}

#[test]
fn a_key_that_does_not_match_the_signalled_fingerprint_is_refused() {
    if !require_root() {
        return;
    }
    let lab = NatLab::up("natk", "cone cone");
    let uid2 = lab.uid("h2");
    // h2's tincan comes back with another key than the one its controller signalled.
    lab.ok(&["kill", "h2", "tincan"]);
    let key = lab.dir.join("h2/ipop.key");
    std::fs::remove_file(&key).unwrap();
    let out = Command::new(bin_dir().join("ipop-tincan"))
        .arg("--key")
        .arg(&key)
        .arg("--create-key")
        .output()
        .unwrap();
    assert!(out.status.success());
    lab.ok(&["start", "h2", "tincan"]);
    let refused = wait_until(Duration::from_secs(20), || {
        lab.state("h1")["counters"]["drop_unknown_key"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    assert!(refused, "h1 should refuse h2's new key");
    // The old session dies with the old tincan; no new one may come up.
    let offline = wait_until(Duration::from_secs(10), || {
        lab.links("h1")
            .iter()
            .any(|(u, s, _)| *u == uid2 && s == "offline")
    });
    assert!(offline, "h1's link to h2 should be down");
    std::thread::sleep(Duration::from_secs(3));
    let l = lab.links("h1");
    let link = l.iter().find(|(u, _, _)| *u == uid2).expect("link to h2");
    assert_eq!(link.1, "offline", "h1 linked with an unsignalled key");
    assert!(lab.log("h1", "tincan").contains("not pinned for any peer"));
}

/// A key learned from signalling is kept: while h2 is down, the account of h3 (on the shared
/// roster, with its own key) signals as h2's uid; h1 refuses the key, counts it and never
/// links, and links with the real h2 again when it returns.
#[test]
fn another_account_cannot_take_over_a_down_peers_uid() {
    if !require_root() {
        return;
    }
    let lab = NatLab::up("natt", "cone cone cone");
    let uid1 = lab.uid("h1");
    let uid2 = lab.uid("h2");
    let fpr2 = lab.state("h2")["_fpr"].as_str().unwrap().to_string();
    let fpr3 = lab.state("h3")["_fpr"].as_str().unwrap().to_string();
    assert_ne!(fpr2, fpr3);
    let controller = |host: &str| -> Value {
        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(lab.dir.join(host).join("config.json")).unwrap(),
        )
        .unwrap();
        lab.rpc_state(host, cfg["icc_port"].as_u64().unwrap() as u16)
    };
    let link_to = |host: &str, uid: &str| -> Option<Value> {
        lab.state(host)["peers"]
            .as_array()?
            .iter()
            .find(|p| p["uid"] == uid)
            .cloned()
    };

    // h2 stops; h3 comes back as 10.0.3.2 (h2's uid) with its own key and account.
    lab.ok(&["kill", "h2", "controller"]);
    lab.ok(&["kill", "h2", "tincan"]);
    assert_eq!(lab.state("h2"), Value::Null, "h2's tincan still answers");
    // Gone from XMPP with its link down: h1 trims the link (only the learned key is left).
    let trimmed = wait_until(Duration::from_secs(20), || link_to("h1", &uid2).is_none());
    assert!(
        trimmed,
        "h1 keeps its link to h2: {:?}",
        link_to("h1", &uid2)
    );
    lab.ok(&["kill", "h3", "controller"]);
    lab.ok(&["kill", "h3", "tincan"]);
    let cfg3 = lab.dir.join("h3/config.json");
    let text = std::fs::read_to_string(&cfg3).unwrap();
    std::fs::write(&cfg3, text.replace("\"10.0.3.3\"", "\"10.0.3.2\"")).unwrap();
    lab.ok(&["start", "h3", "tincan"]);
    lab.ok(&["start", "h3", "controller"]);
    let refused = wait_until(Duration::from_secs(60), || {
        controller("h1")["counters"]["signal_refused_new_key"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    assert!(refused, "h1 should refuse the new key offered for h2's uid");
    // For a few seconds more: h1 has no link with h3's key, and h3 none to h1.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if let Some(l) = link_to("h1", &uid2) {
            assert_ne!(l["fpr"], fpr3.as_str(), "h1 linked with h3's key: {l}");
            assert_eq!(l["status"], "offline", "{l}");
        }
        if let Some(l) = link_to("h3", &uid1) {
            assert_eq!(l["status"], "offline", "h3 linked with h1: {l}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(lab
        .log("h1", "controller")
        .contains("signal_refused_new_key"));

    // h3 goes, the real h2 comes back: linked again, with its own key.
    lab.ok(&["kill", "h3", "controller"]);
    lab.ok(&["kill", "h3", "tincan"]);
    lab.ok(&["start", "h2", "tincan"]);
    lab.ok(&["start", "h2", "controller"]);
    let back = wait_until(Duration::from_secs(60), || {
        link_to("h1", &uid2).is_some_and(|l| l["status"] == "online" && l["fpr"] == fpr2.as_str())
    });
    assert!(
        back,
        "h1 should link with the real h2 again: {:?}",
        link_to("h1", &uid2)
    );
    let (received, dup, text) = lab.ping("h1c1", &ip("h2c1"), 3);
    assert!(received == 3 && !dup, "{text}");
}
