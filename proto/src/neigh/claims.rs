//! Who may claim what: a peer speaks only for the hosts behind it. Its claims (an `arp_reply`,
//! or the requester of an `arp_request`) are checked against this host's own addresses, the
//! bindings of its bridge and the fresh bindings of other peers; refusals and rate-limited
//! requests are counted per peer. The migration rule is in the parent module's documentation.

use super::{NeighAction, NeighTable, Owner, MAX_PEERS};
use crate::id::{Millis, Uid};
use crate::wire::ethernet::MacAddr;
use std::net::Ipv4Addr;

/// What one peer's controller was refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PeerClaims {
    /// Claims for an IP or MAC that is bound to our bridge or to another peer.
    pub claims_refused: u64,
    /// ICC `arp_request`s over the peer's rate.
    pub requests_rate_limited: u64,
}

/// Why a peer's claim was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The IP is this host's own or on our bridge.
    LocalIp,
    /// The MAC is on our bridge.
    LocalMac,
    /// The IP is bound to another peer, freshly.
    HeldIp(Uid),
    /// The MAC is bound to another peer, freshly.
    HeldMac(Uid),
}

impl NeighTable {
    /// `ip` is this host's own address on the bridge: a peer's claim for it is always refused.
    pub fn pin_local(&mut self, ip: Ipv4Addr) {
        self.own_ips.insert(ip);
    }

    /// What each peer was refused.
    pub fn peer_claims(&self) -> impl Iterator<Item = (&Uid, &PeerClaims)> {
        self.peers.iter()
    }

    fn peer_mut(&mut self, uid: Uid) -> Option<&mut PeerClaims> {
        if !self.peers.contains_key(&uid) && self.peers.len() >= MAX_PEERS {
            return None;
        }
        Some(self.peers.entry(uid).or_default())
    }

    /// Whether peer `from` may say that `ip` (if any) is at `mac` behind it. A refusal is
    /// counted for the peer, and reported as a conflict when two MACs claim one IP.
    pub(super) fn accept_claim(
        &mut self,
        from: Uid,
        ip: Option<Ipv4Addr>,
        mac: MacAddr,
        now: Millis,
        out: &mut Vec<NeighAction>,
    ) -> bool {
        match self.check_claim(from, ip, mac, now) {
            Ok(()) => true,
            Err(why) => {
                let counted = match (ip, why) {
                    (Some(ip), Refusal::LocalIp | Refusal::HeldIp(_))
                        if self.entries.contains_key(&ip) =>
                    {
                        self.contest(ip, mac, from, now, out)
                    }
                    _ => true,
                };
                if counted {
                    self.count_refusal(from);
                }
                false
            }
        }
    }

    /// One more ICC `arp_request` from `from`, within its rate? Counted when not.
    pub(super) fn allow_request(&mut self, from: Uid, now: Millis) -> bool {
        if self.requests.allow(from, now) {
            return true;
        }
        self.counters.icc_requests_rate_limited += 1;
        if let Some(p) = self.peer_mut(from) {
            p.requests_rate_limited += 1;
        }
        false
    }

    fn check_claim(
        &self,
        from: Uid,
        ip: Option<Ipv4Addr>,
        mac: MacAddr,
        now: Millis,
    ) -> Result<(), Refusal> {
        if let Some(ip) = ip {
            if self.own_ips.contains(&ip) {
                return Err(Refusal::LocalIp);
            }
            match self.entries.get(&ip) {
                Some(e) if self.is_fresh(e, now) => match e.owner {
                    Owner::Local => return Err(Refusal::LocalIp),
                    Owner::Peer(u) if u != from => return Err(Refusal::HeldIp(u)),
                    Owner::Peer(_) => {}
                },
                _ => {}
            }
        }
        // Local first: a MAC on our bridge is refused whoever else holds it.
        let mut held = None;
        for e in self.entries.values() {
            if e.mac != mac || !self.is_fresh(e, now) {
                continue;
            }
            match e.owner {
                Owner::Local => return Err(Refusal::LocalMac),
                Owner::Peer(u) if u != from => held = Some(u),
                Owner::Peer(_) => {}
            }
        }
        match held {
            Some(u) => Err(Refusal::HeldMac(u)),
            None => Ok(()),
        }
    }

    /// Counts a refused claim for peer `from`.
    pub(super) fn count_refusal(&mut self, from: Uid) {
        self.counters.claims_refused += 1;
        if let Some(p) = self.peer_mut(from) {
            p.claims_refused += 1;
        }
    }
}
