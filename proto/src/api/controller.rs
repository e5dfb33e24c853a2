//! gvpn-controller's control API: what it answers on 127.0.0.1:<icc_port> besides tincan's
//! notifications (docs/rpc.md), and its `get_state` report.

use super::calls;
use super::tincan::{Counters, EchoRequest, GetState};
use crate::id::{Fingerprint, Millis, Uid};
use crate::wire::ethernet::MacAddr;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

calls! {
    /// A request to gvpn-controller.
    pub enum ControllerRequest {
        "get_state" => GetState(GetState),
        "echo_request" => EchoRequest(EchoRequest),
    }
}

/// The controller's `get_state` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerState {
    pub uid: Uid,
    pub ip4: Ipv4Addr,
    pub icc: bool,
    /// tincan answered within the last few seconds.
    pub tincan_alive: bool,
    /// tincan's TAP, once tincan has reported it.
    pub tap: Option<String>,
    /// The bridge the TAP is attached to, when the config names one.
    pub bridge: Option<String>,
    pub peers: Vec<PeerOnline>,
    pub counters: Counters,
    /// The ARP mapping table.
    pub neigh: Vec<NeighState>,
    /// Claims for an IP held by another owner, beside the entry kept (docs/architecture.md,
    /// "Moves and conflicts").
    #[serde(default)]
    pub conflicts: Vec<ConflictState>,
    pub xmpp: XmppState,
    /// Peers known from signalling; null without XMPP.
    pub signalling: Option<Vec<SignallingPeer>>,
    /// Entries left out of `peers`, `signalling` and `neigh` (with `conflicts`) to keep the
    /// answer within [`super::MAX_STATE_BYTES`].
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub peers_truncated: u64,
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub signalling_truncated: u64,
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub neigh_truncated: u64,
    /// The IPv6 neighbour table.
    #[serde(default)]
    pub neigh6: Vec<Neigh6State>,
    /// Entries left out of `neigh6` (the oldest, before anything else).
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub neigh6_truncated: u64,
}

impl ControllerState {
    /// Leaves out what does not fit in `max` bytes of JSON, and counts it: the oldest ARP
    /// entries first, then signalling peers, then link states.
    pub fn bound(&mut self, max: usize) {
        let mut peers = std::mem::take(&mut self.peers);
        let mut signalling = self.signalling.as_mut().map(std::mem::take);
        let mut neigh = std::mem::take(&mut self.neigh);
        let mut neigh6 = std::mem::take(&mut self.neigh6);
        self.neigh6_truncated = u64::MAX;
        let mut conflicts = std::mem::take(&mut self.conflicts);
        self.peers_truncated = u64::MAX;
        self.signalling_truncated = u64::MAX;
        self.neigh_truncated = u64::MAX;
        let mut budget = max.saturating_sub(super::json_len(self));
        self.peers_truncated = super::keep_fitting(&mut peers, &mut budget);
        self.signalling_truncated = signalling
            .as_mut()
            .map_or(0, |s| super::keep_fitting(s, &mut budget));
        conflicts.sort_by_key(|c| c.age_ms);
        let conflicts_left_out = super::keep_fitting(&mut conflicts, &mut budget);
        neigh.sort_by_key(|n| n.age_ms);
        self.neigh_truncated = super::keep_fitting(&mut neigh, &mut budget) + conflicts_left_out;
        self.conflicts = conflicts;
        neigh6.sort_by_key(|n| n.age_ms);
        self.neigh6_truncated = super::keep_fitting(&mut neigh6, &mut budget);
        self.neigh6 = neigh6;
        self.peers = peers;
        self.signalling = signalling;
        self.neigh = neigh;
    }
}

/// A peer, whether its link is up, and what its controller was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerOnline {
    pub uid: Uid,
    pub online: bool,
    /// ICC claims for an IP or MAC bound to this host or to another peer.
    #[serde(default)]
    pub claims_refused: u64,
    /// ICC `arp_request`s over the per-peer rate.
    #[serde(default)]
    pub requests_rate_limited: u64,
}

/// An IP claimed by two owners: the binding kept (what the table answers with) and the claim
/// beside it. `conflict` is false for a move that waits for the old owner's withdrawal (the
/// same MAC, claimed by a peer while another peer holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictState {
    pub ip: Ipv4Addr,
    /// The 802.1Q VLAN; absent for untagged.
    #[serde(default, skip_serializing_if = "is_untagged")]
    pub vlan: u16,
    pub kept_mac: MacAddr,
    pub kept_owner: NeighOwner,
    pub claimed_mac: MacAddr,
    pub claimed_by: NeighOwner,
    pub conflict: bool,
    /// Since the claim was first heard.
    pub age_ms: Millis,
}

/// One IPv6 neighbour mapping: IP -> (MAC, owner); `router` as the owner's advertisements say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neigh6State {
    pub ip: Ipv6Addr,
    pub mac: MacAddr,
    pub owner: NeighOwner,
    #[serde(default)]
    pub router: bool,
    pub age_ms: Millis,
}

fn is_untagged(vid: &u16) -> bool {
    *vid == 0
}

/// One ARP mapping: IP -> (MAC, owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighState {
    pub ip: Ipv4Addr,
    /// The 802.1Q VLAN of the entry; absent for untagged.
    #[serde(default, skip_serializing_if = "is_untagged")]
    pub vlan: u16,
    pub mac: MacAddr,
    pub owner: NeighOwner,
    pub age_ms: Millis,
}

/// Where an address lives: `"local"` (this host's bridge) or the owning peer's uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighOwner {
    Local,
    Peer(Uid),
}

impl fmt::Display for NeighOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NeighOwner::Local => f.write_str("local"),
            NeighOwner::Peer(uid) => uid.fmt(f),
        }
    }
}

impl FromStr for NeighOwner {
    type Err = crate::id::IdError;

    fn from_str(s: &str) -> Result<NeighOwner, Self::Err> {
        match s {
            "local" => Ok(NeighOwner::Local),
            uid => uid.parse().map(NeighOwner::Peer),
        }
    }
}

crate::id::text_serde!(NeighOwner);

/// The XMPP client: off (no account configured), online, offline (reconnecting), or failed
/// (refused the account; fix the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XmppState {
    Off,
    Online,
    Offline,
    Failed,
}

/// A peer in signalling: its state and the key it offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignallingPeer {
    pub uid: Uid,
    pub state: String,
    pub fpr: Option<Fingerprint>,
}

#[cfg(test)]
mod tests {
    use super::super::tests::assert_documented;
    use super::*;
    use crate::rpc::{self, Incoming};
    use serde_json::json;

    const UID: &str = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";

    #[test]
    fn requests_round_trip_through_a_datagram() {
        let all: Vec<ControllerRequest> = vec![
            GetState::default().into(),
            EchoRequest { msg: json!(1) }.into(),
        ];
        for r in all {
            let Incoming::Call { method, params, .. } = rpc::parse(&r.request(3)) else {
                panic!()
            };
            assert_eq!(ControllerRequest::from_call(&method, params).unwrap(), r);
        }
    }

    #[test]
    fn the_state_keeps_its_wire_form() {
        let v = json!({
            "uid": UID, "ip4": "10.0.3.1", "icc": true, "tincan_alive": true,
            "tap": "ipop", "bridge": null,
            "peers": [{"uid": UID, "online": false, "claims_refused": 2,
                       "requests_rate_limited": 1}],
            "counters": {"icc_sent": 3},
            "neigh": [
                {"ip": "10.0.3.5", "mac": "02:00:00:00:00:05", "owner": "local", "age_ms": 10},
                {"ip": "10.0.3.7", "mac": "02:00:00:00:00:07", "owner": UID, "age_ms": 20},
                {"ip": "10.0.3.7", "vlan": 10, "mac": "02:00:00:00:00:08", "owner": UID,
                 "age_ms": 20}
            ],
            "neigh6": [
                {"ip": "fd00:3::7", "mac": "02:00:00:00:00:07", "owner": UID, "router": false,
                 "age_ms": 20}
            ],
            "conflicts": [
                {"ip": "10.0.3.5", "kept_mac": "02:00:00:00:00:05", "kept_owner": "local",
                 "claimed_mac": "02:00:00:00:00:06", "claimed_by": UID, "conflict": true,
                 "age_ms": 30}
            ],
            "xmpp": "off",
            "signalling": null
        });
        let s: ControllerState = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(s.neigh[0].owner, NeighOwner::Local);
        assert_eq!(s.neigh[1].owner, NeighOwner::Peer(UID.parse().unwrap()));
        assert_eq!(s.neigh6[0].ip, "fd00:3::7".parse::<Ipv6Addr>().unwrap());
        assert_eq!(s.xmpp, XmppState::Off);
        assert_eq!(
            (s.peers[0].claims_refused, s.peers[0].requests_rate_limited),
            (2, 1)
        );
        assert_eq!(serde_json::to_value(&s).unwrap(), v);
    }

    #[test]
    fn a_state_too_big_for_a_datagram_is_bounded_and_counts_what_it_left_out() {
        let uid: Uid = UID.parse().unwrap();
        let mut s = ControllerState {
            uid,
            ip4: Ipv4Addr::new(10, 0, 3, 1),
            icc: true,
            tincan_alive: true,
            tap: None,
            bridge: None,
            peers: vec![
                PeerOnline {
                    uid,
                    online: true,
                    claims_refused: 0,
                    requests_rate_limited: 0
                };
                100
            ],
            counters: Counters::new(),
            neigh: (0..16_384u32)
                .map(|i| NeighState {
                    ip: Ipv4Addr::from(0x0a00_0000 + i),
                    vlan: 0,
                    mac: MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
                    owner: NeighOwner::Peer(uid),
                    age_ms: u64::from(i),
                })
                .collect(),
            conflicts: (0..1_024u32)
                .map(|i| ConflictState {
                    ip: Ipv4Addr::from(0x0a00_0000 + i),
                    vlan: 10,
                    kept_mac: MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
                    kept_owner: NeighOwner::Local,
                    claimed_mac: MacAddr([2, 0, 0, 1, (i >> 8) as u8, i as u8]),
                    claimed_by: NeighOwner::Peer(uid),
                    conflict: true,
                    age_ms: u64::from(i),
                })
                .collect(),
            xmpp: XmppState::Online,
            signalling: Some(vec![
                SignallingPeer {
                    uid,
                    state: "Linked".into(),
                    fpr: None
                };
                256
            ]),
            peers_truncated: 0,
            signalling_truncated: 0,
            neigh_truncated: 0,
            neigh6: vec![],
            neigh6_truncated: 0,
        };
        s.bound(crate::api::MAX_STATE_BYTES);
        let reply = crate::api::response(
            crate::rpc::Id::Num(1),
            Ok(serde_json::to_value(&s).unwrap()),
        );
        assert!(reply.len() <= 65_507, "{}", reply.len());
        assert_eq!((s.peers.len(), s.peers_truncated), (100, 0));
        assert_eq!(s.signalling.as_ref().map(Vec::len), Some(256));
        assert_eq!(
            (s.neigh.len() + s.conflicts.len()) as u64 + s.neigh_truncated,
            16_384 + 1_024
        );
        assert!(s.neigh_truncated > 0 && s.neigh[0].age_ms == 0);
    }

    #[test]
    fn docs_name_every_controller_method() {
        assert_documented("## gvpn-controller", ControllerRequest::METHODS);
    }
}
