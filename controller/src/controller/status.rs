//! The controller's own `get_state` answer.

use super::{Controller, TINCAN_TIMEOUT};
use proto::api::controller::{
    ConflictState, ControllerState, Neigh6State, NeighOwner, NeighState, PeerOnline, SignallingPeer,
};
use proto::api::tincan as api;
use proto::neigh::Owner;
use serde::Serialize;

impl Controller {
    /// The `get_state` answer.
    pub(super) fn state(&self) -> ControllerState {
        let now = self.now_ms();
        let tables =
            std::iter::once((0, &self.neigh)).chain(self.vlans.iter().map(|(v, t)| (*v, t)));
        let mut neigh = Vec::new();
        let mut conflicts = Vec::new();
        let mut neigh_counters = counter_map(&self.neigh.counters);
        for (vlan, table) in tables {
            neigh.extend(table.entries().map(|(ip, e)| NeighState {
                ip: *ip,
                vlan,
                mac: e.mac,
                owner: owner(e.owner),
                age_ms: now.saturating_sub(e.updated),
            }));
            conflicts.extend(table.contests().map(|(ip, e, c)| ConflictState {
                ip: *ip,
                vlan,
                kept_mac: e.mac,
                kept_owner: owner(e.owner),
                claimed_mac: c.mac,
                claimed_by: NeighOwner::Peer(c.by),
                conflict: c.reported,
                age_ms: now.saturating_sub(c.since),
            }));
            if vlan != 0 {
                for (k, v) in counter_map(&table.counters) {
                    *neigh_counters.entry(k).or_default() += v;
                }
            }
        }
        let mut counters = counter_map(&self.counters);
        counters.extend(neigh_counters);
        add_prefixed(&mut counters, "nd_", &self.nd.table.counters);
        if let Some(sig) = self.signal.as_ref() {
            add_prefixed(&mut counters, "signal_", &sig.counters);
        }
        if let Some(x) = self.xmpp.as_ref() {
            add_prefixed(&mut counters, "xmpp_", &x.stats());
        }
        let mut state = ControllerState {
            uid: self.uid,
            ip4: self.cfg.ip4,
            icc: self.cfg.icc,
            tincan_alive: self
                .last_tincan_answer
                .is_some_and(|t| t.elapsed() < TINCAN_TIMEOUT),
            tap: self.tap_name.clone(),
            bridge: self.cfg.bridge.clone(),
            peers: self
                .peer_online
                .iter()
                .map(|(u, up)| {
                    let refused = self
                        .neigh
                        .peer_claims()
                        .find(|(p, _)| *p == u)
                        .map(|(_, c)| *c)
                        .unwrap_or_default();
                    // IPv4 and IPv6 claims together.
                    let nd = self.nd.table.peer_claims(u);
                    PeerOnline {
                        uid: *u,
                        online: *up,
                        claims_refused: refused.claims_refused + nd.claims_refused,
                        requests_rate_limited: refused.requests_rate_limited
                            + nd.requests_rate_limited,
                    }
                })
                .collect(),
            counters,
            neigh,
            conflicts,
            xmpp: self.xmpp_state,
            signalling: self.signal.as_ref().map(|s| {
                s.peers()
                    .map(|(u, st, f)| SignallingPeer {
                        uid: *u,
                        state: format!("{st:?}"),
                        fpr: f.copied(),
                    })
                    .collect()
            }),
            peers_truncated: 0,
            signalling_truncated: 0,
            neigh_truncated: 0,
            neigh6: self
                .nd
                .table
                .entries()
                .map(|(ip, e)| Neigh6State {
                    ip: *ip,
                    mac: e.mac,
                    owner: owner(e.owner),
                    router: e.router,
                    age_ms: now.saturating_sub(e.updated),
                })
                .collect(),
            neigh6_truncated: 0,
        };
        state.bound(proto::api::MAX_STATE_BYTES);
        if state.neigh_truncated
            + state.neigh6_truncated
            + state.peers_truncated
            + state.signalling_truncated
            > 0
            && !self.state_truncated_reported.get()
        {
            log::warn!(
                "get_state: the answer would exceed {} bytes; {} ARP entries, {} IPv6 \
                 neighbours, {} signalling peers and {} links left out (counted in the answer; \
                 logged once)",
                proto::api::MAX_STATE_BYTES,
                state.neigh_truncated,
                state.neigh6_truncated,
                state.signalling_truncated,
                state.peers_truncated
            );
            self.state_truncated_reported.set(true);
        }
        state
    }
}

fn owner(o: Owner) -> NeighOwner {
    match o {
        Owner::Local => NeighOwner::Local,
        Owner::Peer(u) => NeighOwner::Peer(u),
    }
}

/// Adds a struct of `u64` counters to `out`, each name with `prefix` in front.
fn add_prefixed(out: &mut api::Counters, prefix: &str, counters: &impl Serialize) {
    out.extend(
        counter_map(counters)
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v)),
    );
}

/// A struct of `u64` counters as the API's name -> count map.
fn counter_map(counters: &impl Serialize) -> api::Counters {
    serde_json::to_value(counters)
        .and_then(serde_json::from_value)
        .expect("counters are u64 fields")
}
