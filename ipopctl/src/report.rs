//! The status report: both daemons' `get_state` answers (or why there is none) combined into
//! one object, with each peer's name, its link, its controller's view, the MACs and neighbour
//! entries behind it, and the lines that say what is wrong. Pure: no I/O, no clock; the
//! answers carry every age. Its JSON form is documented in docs/ipopctl.md.

use crate::client::{CallError, Daemon};
use proto::api::controller::{ControllerState, NeighOwner, PeerOnline, XmppState};
use proto::api::tincan::{LinkStatus, LocalState, PeerState, Security};
use proto::id::{Fingerprint, Millis, Uid};
use proto::wire::ethernet::MacAddr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

/// The version of the JSON object's layout: fields are only ever added within one version.
pub const FORMAT: u32 = 1;

/// `ipopctl status --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub format: u32,
    pub node: Node,
    pub tincan: DaemonAnswer<LocalState>,
    pub controller: DaemonAnswer<ControllerState>,
    pub peers: Vec<Peer>,
    pub macs: Vec<MacRow>,
    pub neigh: Vec<NeighRow>,
    /// What is wrong, one line each; empty when all is well.
    pub problems: Vec<String>,
}

/// A daemon's address and its `get_state` answer, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonAnswer<T> {
    pub address: SocketAddr,
    /// Null when the daemon answered.
    pub error: Option<String>,
    /// The daemon's `get_state` result as docs/rpc.md describes it; null without an answer.
    pub state: Option<T>,
}

impl<T> DaemonAnswer<T> {
    pub fn new(daemon: Daemon, answer: Result<T, CallError>) -> DaemonAnswer<T> {
        let (error, state) = match answer {
            Ok(s) => (None, Some(s)),
            Err(e) => (Some(daemon.describe(&e)), None),
        };
        DaemonAnswer {
            address: daemon.addr,
            error,
            state,
        }
    }
}

/// This node, from whichever daemon knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub uid: Option<Uid>,
    pub ip4: Option<Ipv4Addr>,
    /// This node's key fingerprint: what its peers' configs pin as `fpr`.
    pub fpr: Option<Fingerprint>,
    pub tap: Option<String>,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u16>,
    pub bridge: Option<String>,
    /// Links encrypted.
    pub sec: Option<bool>,
    pub xmpp: Option<XmppState>,
    /// tincan hears from the controller.
    pub controller_alive: Option<bool>,
    /// The controller hears from tincan.
    pub tincan_alive: Option<bool>,
    /// tincan's version and time since it started.
    pub version: Option<String>,
    pub uptime_ms: Option<Millis>,
}

/// One peer: every uid that tincan has a link to, the controller knows, or the config names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub uid: Uid,
    /// Its ip4 when known, else the first 8 hex digits of its uid.
    pub name: String,
    pub ip4: Option<Ipv4Addr>,
    /// tincan's link to it (a `peer_state` of tincan's `get_state`); null without a link.
    pub link: Option<PeerState>,
    /// The controller's entry for it; null when the controller has none.
    pub controller: Option<PeerOnline>,
    /// MAC addresses tincan forwards to it.
    pub macs: Vec<MacAddr>,
    /// IP addresses the controller's ARP table places behind it.
    pub neigh: Vec<Ipv4Addr>,
}

/// A MAC address bound to a peer's link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MacRow {
    pub mac: MacAddr,
    pub uid: Uid,
    pub peer: String,
    pub age_ms: Millis,
}

/// One entry of the controller's ARP table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeighRow {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub owner: NeighOwner,
    /// `"local"`, or the owning peer's name.
    pub peer: String,
    pub age_ms: Millis,
}

/// Builds the report from the two answers and the config's peers (ip4 of each).
pub fn assemble(
    tincan: DaemonAnswer<LocalState>,
    controller: DaemonAnswer<ControllerState>,
    config_peers: &[Ipv4Addr],
) -> Status {
    let t = tincan.state.as_ref();
    let c = controller.state.as_ref();
    // Names: the config's peers, then any neighbour entry whose IP is the owner's own
    // address (a uid is the sha1 of the node's ip4).
    let mut ip4s: BTreeMap<Uid, Ipv4Addr> = config_peers
        .iter()
        .map(|ip| (Uid::from_ip4(*ip), *ip))
        .collect();
    for n in c.iter().flat_map(|c| &c.neigh) {
        if let NeighOwner::Peer(u) = n.owner {
            if Uid::from_ip4(n.ip) == u {
                ip4s.entry(u).or_insert(n.ip);
            }
        }
    }
    let name = |u: &Uid| ip4s.get(u).map_or_else(|| u.short(), Ipv4Addr::to_string);

    let mut uids: Vec<Uid> = ip4s.keys().copied().collect();
    uids.extend(t.iter().flat_map(|t| t.peers.iter().map(|p| p.uid)));
    uids.extend(c.iter().flat_map(|c| c.peers.iter().map(|p| p.uid)));
    // Only peers: a neighbour entry's owner without a link is not one.
    uids.retain(|u| {
        config_peers.iter().any(|ip| Uid::from_ip4(*ip) == *u)
            || t.is_some_and(|t| t.peers.iter().any(|p| p.uid == *u))
            || c.is_some_and(|c| c.peers.iter().any(|p| p.uid == *u))
    });
    uids.sort_by_key(|u| (!ip4s.contains_key(u), ip4s.get(u).copied(), *u));
    uids.dedup();

    let macs: Vec<MacRow> = t
        .iter()
        .flat_map(|t| &t.macs)
        .map(|m| MacRow {
            mac: m.mac,
            uid: m.uid,
            peer: name(&m.uid),
            age_ms: m.age_ms,
        })
        .collect();
    let neigh: Vec<NeighRow> = c
        .iter()
        .flat_map(|c| &c.neigh)
        .map(|n| NeighRow {
            ip: n.ip,
            mac: n.mac,
            owner: n.owner,
            peer: match n.owner {
                NeighOwner::Local => "local".into(),
                NeighOwner::Peer(u) => name(&u),
            },
            age_ms: n.age_ms,
        })
        .collect();
    let peers: Vec<Peer> = uids
        .iter()
        .map(|u| Peer {
            uid: *u,
            name: name(u),
            ip4: ip4s.get(u).copied(),
            link: t
                .and_then(|t| t.peers.iter().find(|p| p.uid == *u))
                .cloned(),
            controller: c
                .and_then(|c| c.peers.iter().find(|p| p.uid == *u))
                .cloned(),
            macs: macs.iter().filter(|m| m.uid == *u).map(|m| m.mac).collect(),
            neigh: neigh
                .iter()
                .filter(|n| n.owner == NeighOwner::Peer(*u))
                .map(|n| n.ip)
                .collect(),
        })
        .collect();
    let node = Node {
        uid: t.and_then(|t| t.uid).or(c.map(|c| c.uid)),
        ip4: t.and_then(|t| t.ip4).or(c.map(|c| c.ip4)),
        fpr: t.and_then(|t| t.fpr),
        tap: t
            .map(|t| t.tap.clone())
            .or_else(|| c.and_then(|c| c.tap.clone())),
        mac: t.map(|t| t.mac),
        mtu: t.map(|t| t.mtu),
        bridge: c.and_then(|c| c.bridge.clone()),
        sec: t.map(|t| t.sec),
        xmpp: c.map(|c| c.xmpp),
        controller_alive: t.map(|t| t.controller_alive),
        tincan_alive: c.map(|c| c.tincan_alive),
        version: t.map(|t| t.version.clone()),
        uptime_ms: t.map(|t| t.uptime_ms),
    };
    let mut status = Status {
        format: FORMAT,
        node,
        tincan,
        controller,
        peers,
        macs,
        neigh,
        problems: Vec::new(),
    };
    status.problems = problems(&status);
    status
}

/// Seconds, for a person.
fn secs(ms: Millis) -> String {
    format!("{} s", ms / 1000)
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

fn owner_text(s: &Status, o: &NeighOwner) -> String {
    match o {
        NeighOwner::Local => "this host's bridge".into(),
        NeighOwner::Peer(u) => match s.peers.iter().find(|p| p.uid == *u) {
            Some(p) => format!("peer {}", p.name),
            None => format!("peer {u}"),
        },
    }
}

/// What is wrong, one line each.
fn problems(s: &Status) -> Vec<String> {
    let mut out: Vec<String> = [&s.tincan.error, &s.controller.error]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if let Some(t) = &s.tincan.state {
        if !t.configured {
            out.push("tincan is not configured yet (the controller configures it)".into());
        }
        if !t.controller_alive {
            out.push("tincan hears nothing from the controller".into());
        }
    }
    if let Some(c) = &s.controller.state {
        if !c.tincan_alive {
            out.push("the controller gets no answer from tincan".into());
        }
        match c.xmpp {
            XmppState::Failed => out.push(
                "XMPP: the server refused the account (check xmpp_username, xmpp_password)".into(),
            ),
            XmppState::Offline => out.push("XMPP: not connected to the server (retrying)".into()),
            XmppState::Off | XmppState::Online => {}
        }
        for k in c.conflicts.iter().filter(|k| k.conflict) {
            out.push(format!(
                "address conflict: {} is {} on {} (kept) and {} on {}",
                k.ip,
                k.kept_mac,
                owner_text(s, &k.kept_owner),
                k.claimed_mac,
                owner_text(s, &k.claimed_by)
            ));
        }
    }
    let tincan_configured = s.tincan.state.as_ref().is_some_and(|t| t.configured);
    for p in &s.peers {
        let name = &p.name;
        match &p.link {
            Some(l) if l.status == LinkStatus::Offline => {
                let silent = l.last_rx_ms.or(l.age_ms).unwrap_or(0);
                let what = match l.security {
                    Security::Noise => "handshake",
                    Security::None => "hello",
                };
                let from = if l.candidates.is_empty() {
                    l.endpoint.to_string()
                } else {
                    plural(l.candidates.len(), "candidate")
                };
                out.push(format!(
                    "peer {name}: no {what} answer for {} from {from}",
                    secs(silent)
                ));
            }
            Some(l) => {
                if l.refused_macs > 0 {
                    out.push(format!(
                        "peer {name}: {} refused (source MAC not the peer's to speak for)",
                        plural(l.refused_macs as usize, "frame")
                    ));
                }
                if l.tx_errors > 0 {
                    out.push(format!(
                        "peer {name}: {} on the link socket",
                        plural(l.tx_errors as usize, "send error")
                    ));
                }
            }
            None if tincan_configured => {
                out.push(format!("peer {name}: tincan has no link to it"));
            }
            None => {}
        }
        if let Some(c) = &p.controller {
            if c.claims_refused > 0 {
                out.push(format!(
                    "peer {name}: {} refused by the controller",
                    plural(c.claims_refused as usize, "ARP claim")
                ));
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proto::api::controller::NeighState;
    use proto::api::tincan::{LinkPath, MacEntry, NatState};
    use proto::id::Candidate;

    pub const H1: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 1);
    pub const H2: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 2);
    pub const H3: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 3);

    pub fn link(ip: Ipv4Addr, status: LinkStatus, path: LinkPath) -> PeerState {
        let online = status == LinkStatus::Online;
        PeerState {
            uid: Uid::from_ip4(ip),
            status,
            endpoint: SocketAddr::from(([10, 99, 0, ip.octets()[3]], 5900)),
            security: Security::Noise,
            path,
            rtt_ms: online.then_some(2),
            candidates: vec![
                Candidate::Host(SocketAddr::from(([10, 99, 0, ip.octets()[3]], 5900))),
                Candidate::Srflx("203.0.113.7:5900".parse().unwrap()),
                Candidate::Relay("192.0.2.10:49152".parse().unwrap()),
            ],
            fpr: Some(Fingerprint([ip.octets()[3]; 32])),
            handshakes: Some(u64::from(online)),
            cipher: online.then_some(proto::secure::Cipher::Aes256Gcm),
            last_rx_ms: online.then_some(300),
            last_handshake_ms: online.then_some(61_000),
            age_ms: Some(125_000),
            tx_frames: 120,
            tx_bytes: 15_360,
            rx_frames: 110,
            rx_bytes: 2_500_000,
            icc_tx: 1,
            icc_rx: 1,
            tx_errors: 0,
            ups: u64::from(online),
            downs: 0,
            refused_macs: 0,
            frag_tx: 0,
            frag_rx: 0,
            frag_reassembled: 0,
            frag_dropped: 0,
        }
    }

    pub fn tincan_state(peers: Vec<PeerState>) -> LocalState {
        let macs = peers
            .iter()
            .enumerate()
            .map(|(i, p)| MacEntry {
                mac: MacAddr([2, 0, 0, 0, 0, i as u8 + 1]),
                vlan: 0,
                uid: p.uid,
                age_ms: 1_000,
            })
            .collect();
        LocalState {
            uid: Some(Uid::from_ip4(H1)),
            ip4: Some(H1),
            fpr: Some(Fingerprint([1; 32])),
            mac: MacAddr([2, 0x5e, 0, 0, 0, 1]),
            sec: true,
            rekey_after_secs: 120,
            cipher: Default::default(),
            candidates: vec![],
            nat: NatState::default(),
            tap: "ipop".into(),
            mtu: 1500,
            link_mtu: 1500,
            version: "0.1.0".into(),
            boot_id: 7,
            uptime_ms: 200_000,
            configured: true,
            switchmode: 1,
            icc: true,
            controller_alive: true,
            link_port: Some(5900),
            neigh_entries: 0,
            nd_entries: 0,
            counters: Default::default(),
            peers,
            macs,
            local_macs: Vec::new(),
            peers_truncated: 0,
            macs_truncated: 0,
        }
    }

    pub fn controller_state(online: &[(Ipv4Addr, bool)]) -> ControllerState {
        ControllerState {
            uid: Uid::from_ip4(H1),
            ip4: H1,
            icc: true,
            tincan_alive: true,
            tap: Some("ipop".into()),
            bridge: Some("lxcbr0".into()),
            peers: online
                .iter()
                .map(|(ip, up)| PeerOnline {
                    uid: Uid::from_ip4(*ip),
                    online: *up,
                    claims_refused: 0,
                    requests_rate_limited: 0,
                })
                .collect(),
            counters: Default::default(),
            neigh: vec![
                NeighState {
                    ip: Ipv4Addr::new(10, 0, 3, 11),
                    vlan: 0,
                    mac: MacAddr([2, 0, 0, 0, 0, 0x11]),
                    owner: NeighOwner::Local,
                    age_ms: 500,
                },
                NeighState {
                    ip: Ipv4Addr::new(10, 0, 3, 21),
                    vlan: 0,
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    owner: NeighOwner::Peer(Uid::from_ip4(H2)),
                    age_ms: 700,
                },
            ],
            conflicts: Vec::new(),
            xmpp: XmppState::Off,
            signalling: None,
            peers_truncated: 0,
            signalling_truncated: 0,
            neigh_truncated: 0,
            neigh6: vec![],
            neigh6_truncated: 0,
        }
    }

    pub fn daemon(port: u16) -> Daemon {
        Daemon {
            name: if port == 5800 { "tincan" } else { "controller" },
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    pub fn answered<T>(port: u16, state: T) -> DaemonAnswer<T> {
        DaemonAnswer::new(daemon(port), Ok(state))
    }

    /// h1 of a three-host lab: h2 up directly, h3 never answered.
    pub fn three_hosts() -> Status {
        let t = tincan_state(vec![
            link(H2, LinkStatus::Online, LinkPath::Direct),
            link(H3, LinkStatus::Offline, LinkPath::Static),
        ]);
        let c = controller_state(&[(H2, true)]);
        assemble(answered(5800, t), answered(30000, c), &[H2, H3])
    }

    #[test]
    fn peers_are_named_by_their_ip4_and_carry_both_daemons_views() {
        let s = three_hosts();
        let names: Vec<&str> = s.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["10.0.3.2", "10.0.3.3"]);
        let h2 = &s.peers[0];
        assert_eq!(h2.link.as_ref().unwrap().path, LinkPath::Direct);
        assert!(h2.controller.as_ref().unwrap().online);
        assert_eq!(h2.macs, [MacAddr([2, 0, 0, 0, 0, 1])]);
        assert_eq!(h2.neigh, [Ipv4Addr::new(10, 0, 3, 21)]);
        assert!(s.peers[1].controller.is_none());
        assert_eq!(s.node.bridge.as_deref(), Some("lxcbr0"));
        assert_eq!(s.node.ip4, Some(H1));
        assert_eq!(s.neigh[0].peer, "local");
        assert_eq!(s.neigh[1].peer, "10.0.3.2");
        assert_eq!(s.macs[1].peer, "10.0.3.3");
    }

    #[test]
    fn without_the_config_a_peer_is_named_by_its_own_neighbour_entry_or_short_uid() {
        let t = tincan_state(vec![
            link(H2, LinkStatus::Online, LinkPath::Direct),
            link(H3, LinkStatus::Online, LinkPath::Relayed),
        ]);
        let mut c = controller_state(&[(H2, true), (H3, true)]);
        c.neigh.push(NeighState {
            ip: H2,
            vlan: 0,
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            owner: NeighOwner::Peer(Uid::from_ip4(H2)),
            age_ms: 1,
        });
        let s = assemble(answered(5800, t), answered(30000, c), &[]);
        let names: Vec<&str> = s.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["10.0.3.2".to_string(), Uid::from_ip4(H3).short()]);
    }

    #[test]
    fn an_address_conflict_is_a_problem_naming_both_owners() {
        let t = tincan_state(vec![link(H2, LinkStatus::Online, LinkPath::Direct)]);
        let mut c = controller_state(&[(H2, true)]);
        let conflict = |conflict| proto::api::controller::ConflictState {
            ip: Ipv4Addr::new(10, 0, 3, 11),
            vlan: 0,
            kept_mac: MacAddr([2, 0, 0, 0, 0, 0x11]),
            kept_owner: NeighOwner::Local,
            claimed_mac: MacAddr([2, 0, 0, 0, 0, 0x21]),
            claimed_by: NeighOwner::Peer(Uid::from_ip4(H2)),
            conflict,
            age_ms: 5,
        };
        // A move waiting for its old owner is not a problem.
        c.conflicts = vec![conflict(true), conflict(false)];
        let s = assemble(answered(5800, t), answered(30000, c), &[H2]);
        assert_eq!(
            s.problems,
            ["address conflict: 10.0.3.11 is 02:00:00:00:00:11 on this host's bridge (kept) and \
              02:00:00:00:00:21 on peer 10.0.3.2"]
        );
    }

    #[test]
    fn an_unanswered_peer_and_a_silent_daemon_are_said_in_one_line_each() {
        let s = three_hosts();
        assert_eq!(
            s.problems,
            ["peer 10.0.3.3: no handshake answer for 125 s from 3 candidates"]
        );
        let mut t = tincan_state(vec![link(H2, LinkStatus::Offline, LinkPath::Direct)]);
        t.peers[0].last_rx_ms = Some(40_400);
        t.peers[0].candidates.truncate(1);
        t.controller_alive = false;
        let c = DaemonAnswer::new(daemon(30000), Err(CallError::NoAnswer));
        let s = assemble(answered(5800, t), c, &[H2]);
        assert_eq!(
            s.problems,
            [
                "controller not answering on 127.0.0.1:30000 (no answer within 1 s)",
                "tincan hears nothing from the controller",
                "peer 10.0.3.2: no handshake answer for 40 s from 1 candidate",
            ]
        );
        let t = DaemonAnswer::new(daemon(5800), Err(CallError::NotRunning));
        let s = assemble(t, answered(30000, controller_state(&[])), &[H2]);
        assert_eq!(
            s.problems,
            ["tincan not running on 127.0.0.1:5800 (nothing listens there)"]
        );
        assert_eq!(s.peers[0].name, "10.0.3.2");
        assert!(s.peers[0].link.is_none());
    }

    #[test]
    fn the_json_object_keeps_its_documented_fields_and_reads_back() {
        let s = three_hosts();
        let v = serde_json::to_value(&s).unwrap();
        let doc = include_str!("../../docs/ipopctl.md");
        for key in [
            "format",
            "node",
            "tincan",
            "controller",
            "peers",
            "macs",
            "neigh",
            "problems",
        ] {
            assert!(v.get(key).is_some(), "no {key}");
            assert!(doc.contains(&format!("`{key}`")), "{key} undocumented");
        }
        for (obj, sample) in [
            ("node", &v["node"]),
            ("peers", &v["peers"][0]),
            ("macs", &v["macs"][0]),
            ("neigh", &v["neigh"][0]),
            ("tincan", &v["tincan"]),
        ] {
            for key in sample.as_object().unwrap().keys() {
                assert!(
                    doc.contains(&format!("`{obj}.{key}`"))
                        || doc.contains(&format!("`{obj}[].{key}`")),
                    "{obj}.{key} undocumented in docs/ipopctl.md"
                );
            }
        }
        assert_eq!(v["format"], 1);
        assert_eq!(v["peers"][0]["link"]["path"], "direct");
        assert_eq!(v["peers"][0]["link"]["rtt_ms"], 2);
        assert_eq!(v["tincan"]["error"], serde_json::Value::Null);
        assert_eq!(
            v["tincan"]["state"],
            serde_json::to_value(s.tincan.state.as_ref().unwrap()).unwrap()
        );
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
