//! IPv6 neighbour discovery replicated like ARP (RFC 4861): the controller's IPv6 -> MAC
//! table, as a state machine. Feed it the ND frames tincan punted from the local bridge
//! (multicast solicitations it could not answer itself, and a copy of every advertisement),
//! ICC messages and clock ticks; carry out the actions it returns.
//!
//! The rules are the ARP table's (see the parent module), for IPv6:
//! - a solicitation from the local bridge is answered locally only from a fresh entry owned by
//!   a peer, with the target's real MAC in the Ethernet source and the target link-layer
//!   option, solicited and override set, router as the owner said;
//! - an unknown target costs one ICC `nd_request` per holdoff period;
//! - a duplicate address detection probe (from `::`) is never answered here nor asked for over
//!   ICC: tincan floods it, so the real owner hears it and defends its address;
//! - an advertisement from the local bridge records the binding as local; an unsolicited one
//!   (or one answering a peer's request, or a new binding) is announced to the peers, which
//!   refresh their tables;
//! - a peer speaks only for itself: a claim for an address bound to our bridge (or a MAC seen
//!   on it, by ARP or ND), or freshly bound to another peer, is refused and counted per peer;
//! - `nd_request`s from one peer are rate-limited; every table is bounded.

use super::{NeighAction, NeighConfig, Owner, PeerClaims, Refusal, MAX_PEERS};
use crate::icc::IccMsg;
use crate::id::{Millis, Uid};
use crate::ratelimit::RateLimiter;
use crate::wire::ethernet::MacAddr;
use crate::wire::icmpv6::{self, NdMessage};
use std::collections::HashMap;
use std::net::Ipv6Addr;

const MAX_ENTRIES: usize = 16_384;
const MAX_PENDING_TARGETS: usize = 1024;
const MAX_REQUESTERS_PER_TARGET: usize = 16;

#[derive(Debug, Clone)]
pub struct NdEntry {
    pub mac: MacAddr,
    pub owner: Owner,
    /// The owner's advertisements say it is a router.
    pub router: bool,
    pub updated: Millis,
    /// A local host that asked most recently: the requester of a re-probe.
    last_requester: Option<(Ipv6Addr, MacAddr)>,
    /// Answered locally since the last refresh: worth re-probing.
    used: bool,
    probed_at: Option<Millis>,
}

impl NdEntry {
    fn new(mac: MacAddr, owner: Owner, router: bool, now: Millis) -> Self {
        NdEntry {
            mac,
            owner,
            router,
            updated: now,
            last_requester: None,
            used: false,
            probed_at: None,
        }
    }
}

/// What the table asks for: the ARP table's actions, and IPv6 address conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NdAction {
    Do(NeighAction),
    /// One IPv6 address claimed by two MACs on different hosts; `kept` stays.
    Conflict {
        ip: Ipv6Addr,
        kept: (MacAddr, Owner),
        claimed: (MacAddr, Owner),
    },
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct NdCounters {
    /// ND frames tincan punted (solicitations it did not answer, copies of advertisements).
    pub punted: u64,
    pub solicitations_answered_locally: u64,
    /// Solicitations tincan answered from the bindings programmed into it (`nd_answered`).
    pub answered_by_tincan: u64,
    pub adverts_seen: u64,
    /// Duplicate address detection probes seen: never answered on another node's behalf.
    pub dad_not_answered: u64,
    pub local_target: u64,
    pub icc_requests_sent: u64,
    pub icc_requests_suppressed: u64,
    pub icc_requests_received: u64,
    pub icc_requests_rate_limited: u64,
    pub icc_replies_sent: u64,
    pub icc_replies_received: u64,
    pub requests_injected: u64,
    pub replies_injected: u64,
    pub reprobes_sent: u64,
    pub conflicts: u64,
    pub moved: u64,
    pub expired: u64,
    /// Malformed or invalid ND (RFC 4861 7.1) punted by tincan: dropped.
    pub bad_frames: u64,
    pub bad_icc: u64,
    /// Claims refused from peers, all peers together.
    pub claims_refused: u64,
}

#[derive(Debug)]
struct Pending {
    sent: Millis,
    requesters: Vec<(Ipv6Addr, MacAddr)>,
}

#[derive(Debug)]
pub struct NdTable {
    own_uid: Uid,
    cfg: NeighConfig,
    entries: HashMap<Ipv6Addr, NdEntry>,
    pending: HashMap<Ipv6Addr, Pending>,
    /// Targets peers asked about recently: the local answer is announced.
    remote_asked: HashMap<Ipv6Addr, Millis>,
    requests: RateLimiter<Uid>,
    peers: HashMap<Uid, PeerClaims>,
    /// Conflicts already reported, by address and claimant: one report each (bounded; the set
    /// starts over when full, so a flood costs at most one line per pair per cycle).
    reported: std::collections::HashSet<(Ipv6Addr, Uid, MacAddr)>,
    pub counters: NdCounters,
}

/// Conflict reports remembered at most.
const MAX_REPORTED: usize = 1024;

fn usable(mac: &MacAddr) -> bool {
    !mac.is_group() && !mac.is_zero()
}

/// An address a host can own on the segment: not `::`, not multicast, not loopback.
fn unicast(ip: &Ipv6Addr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && !ip.is_loopback()
}

impl NdTable {
    pub fn new(own_uid: Uid, cfg: NeighConfig) -> Self {
        NdTable {
            own_uid,
            cfg,
            entries: HashMap::new(),
            pending: HashMap::new(),
            remote_asked: HashMap::new(),
            requests: RateLimiter::new(cfg.icc_requests_per_sec, cfg.icc_request_burst, MAX_PEERS),
            peers: HashMap::new(),
            reported: std::collections::HashSet::new(),
            counters: NdCounters::default(),
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = (&Ipv6Addr, &NdEntry)> {
        self.entries.iter()
    }

    pub fn get(&self, ip: &Ipv6Addr) -> Option<&NdEntry> {
        self.entries.get(ip)
    }

    /// What each peer was refused.
    pub fn peer_claims(&self, uid: &Uid) -> PeerClaims {
        self.peers.get(uid).copied().unwrap_or_default()
    }

    pub(super) fn fresh(&self, e: &NdEntry, now: Millis) -> bool {
        now.saturating_sub(e.updated) < self.cfg.ttl
    }

    fn fresh_entry(&self, ip: &Ipv6Addr, now: Millis) -> Option<&NdEntry> {
        self.entries.get(ip).filter(|e| self.fresh(e, now))
    }

    fn conflict(
        &mut self,
        ip: Ipv6Addr,
        kept: (MacAddr, Owner),
        claimed: (MacAddr, Owner),
    ) -> NdAction {
        self.counters.conflicts += 1;
        NdAction::Conflict { ip, kept, claimed }
    }

    /// Room for one more entry (expiring old ones if needed)?
    fn room(&mut self, now: Millis) -> bool {
        if self.entries.len() >= MAX_ENTRIES {
            self.expire(now);
        }
        self.entries.len() < MAX_ENTRIES
    }

    /// Records that `ip` is at `mac` on our own bridge (`router` if an advertisement said).
    /// Returns true if it is new or changed here (peers should hear of it).
    pub(super) fn record_local(
        &mut self,
        ip: Ipv6Addr,
        mac: MacAddr,
        router: Option<bool>,
        now: Millis,
        out: &mut Vec<NdAction>,
    ) -> bool {
        let ttl = self.cfg.ttl;
        let Some(e) = self.entries.get_mut(&ip) else {
            if !self.room(now) {
                return false;
            }
            let e = NdEntry::new(mac, Owner::Local, router.unwrap_or(false), now);
            self.entries.insert(ip, e);
            return true;
        };
        if e.owner == Owner::Local && e.mac == mac {
            e.updated = now;
            let changed = router.is_some_and(|r| r != e.router);
            e.router = router.unwrap_or(e.router);
            return changed;
        }
        let (old, fresh) = ((e.mac, e.owner), now.saturating_sub(e.updated) < ttl);
        *e = NdEntry::new(mac, Owner::Local, router.unwrap_or(false), now);
        if old.0 == mac {
            self.counters.moved += 1;
        } else if fresh && old.1 != Owner::Local {
            // Two hosts claim one address. Our own bridge is first-hand: kept, and said so.
            let c = self.conflict(ip, (mac, Owner::Local), old);
            out.push(c);
        }
        true
    }

    /// Records a claim of peer `uid` that `accept_claim` allowed.
    fn record_remote(&mut self, ip: Ipv6Addr, mac: MacAddr, uid: Uid, router: bool, now: Millis) {
        let owner = Owner::Peer(uid);
        if let Some(e) = self.entries.get_mut(&ip) {
            if e.mac == mac && e.owner != owner {
                self.counters.moved += 1;
            }
            let last_requester = e.last_requester;
            *e = NdEntry::new(mac, owner, router, now);
            e.last_requester = last_requester;
        } else if self.room(now) {
            self.entries
                .insert(ip, NdEntry::new(mac, owner, router, now));
        }
    }

    /// An ND frame tincan punted from the local bridge.
    pub fn on_local_frame(&mut self, frame: &[u8], now: Millis) -> Vec<NdAction> {
        let mut out = Vec::new();
        let Ok(f) = icmpv6::parse_frame(frame) else {
            self.counters.bad_frames += 1;
            return out;
        };
        if !usable(&f.eth_src) {
            self.counters.bad_frames += 1;
            return out;
        }
        self.counters.punted += 1;
        match f.msg {
            NdMessage::Solicit(s) => {
                if f.is_dad() {
                    // Only the owner may answer a probe; it reached it (tincan floods them).
                    self.counters.dad_not_answered += 1;
                    return out;
                }
                let mac = s.source_ll.unwrap_or(f.eth_src);
                if mac != f.eth_src || !unicast(&s.target) {
                    self.counters.bad_frames += 1;
                    return out;
                }
                self.record_local(f.src, mac, None, now, &mut out);
                self.solicited(s.target, (f.src, mac), now, &mut out);
            }
            NdMessage::Advert(a) => {
                self.counters.adverts_seen += 1;
                let mac = a.target_ll.unwrap_or(f.eth_src);
                if !usable(&mac) {
                    self.counters.bad_frames += 1;
                    return out;
                }
                let changed = self.record_local(a.target, mac, Some(a.router), now, &mut out);
                let asked = self
                    .remote_asked
                    .remove(&a.target)
                    .is_some_and(|t| now.saturating_sub(t) < self.cfg.pending_timeout);
                if asked || changed || !a.solicited {
                    self.counters.icc_replies_sent += 1;
                    out.push(NdAction::Do(NeighAction::IccBroadcast(IccMsg::NdReply {
                        target_ip6: a.target,
                        mac: mac.to_string(),
                        uid: self.own_uid,
                        router: a.router,
                    })));
                }
            }
        }
        out
    }

    /// A local host at `requester` solicits `target`: answered from a fresh peer entry, else
    /// asked for over ICC.
    fn solicited(
        &mut self,
        target: Ipv6Addr,
        requester: (Ipv6Addr, MacAddr),
        now: Millis,
        out: &mut Vec<NdAction>,
    ) {
        let ttl = self.cfg.ttl;
        if let Some(e) = self.entries.get_mut(&target) {
            if now.saturating_sub(e.updated) < ttl {
                if e.owner == Owner::Local {
                    // Our bridge carried the solicitation to it.
                    self.counters.local_target += 1;
                    return;
                }
                e.used = true;
                e.last_requester = Some(requester);
                self.counters.solicitations_answered_locally += 1;
                let f = icmpv6::answer_frame(target, e.mac, e.router, requester.0, requester.1);
                out.push(NdAction::Do(NeighAction::Inject(f)));
                return;
            }
        }
        if !self.pending.contains_key(&target) && self.pending.len() >= MAX_PENDING_TARGETS {
            self.expire(now);
            if self.pending.len() >= MAX_PENDING_TARGETS {
                self.counters.icc_requests_suppressed += 1;
                return;
            }
        }
        let p = self.pending.entry(target).or_insert(Pending {
            sent: 0,
            requesters: Vec::new(),
        });
        if !p.requesters.contains(&requester) && p.requesters.len() < MAX_REQUESTERS_PER_TARGET {
            p.requesters.push(requester);
        }
        if p.sent != 0 && now.saturating_sub(p.sent) < self.cfg.request_holdoff {
            self.counters.icc_requests_suppressed += 1;
            return;
        }
        p.sent = now.max(1);
        self.counters.icc_requests_sent += 1;
        out.push(NdAction::Do(NeighAction::IccBroadcast(IccMsg::NdRequest {
            target_ip6: target,
            requester_ip6: requester.0,
            requester_mac: requester.1.to_string(),
        })));
    }

    /// An ICC message from peer `from` (as the link authenticated it). `local_mac` tells the
    /// MACs the ARP table holds for our own bridge: a peer may not claim those either.
    pub fn on_icc(
        &mut self,
        from: Uid,
        msg: &IccMsg,
        now: Millis,
        local_mac: impl Fn(&MacAddr) -> bool,
    ) -> Vec<NdAction> {
        let mut out = Vec::new();
        match msg {
            IccMsg::NdRequest {
                target_ip6,
                requester_ip6,
                requester_mac,
            } => {
                if !self.requests.allow(from, now) {
                    self.counters.icc_requests_rate_limited += 1;
                    if let Some(p) = self.peer_mut(from) {
                        p.requests_rate_limited += 1;
                    }
                    return out;
                }
                let mac = requester_mac.parse::<MacAddr>().ok().filter(usable);
                let (Some(mac), true, true) = (mac, unicast(requester_ip6), unicast(target_ip6))
                else {
                    self.counters.bad_icc += 1;
                    return out;
                };
                self.counters.icc_requests_received += 1;
                if !self.accept_claim(from, *requester_ip6, mac, now, &local_mac, &mut out) {
                    return out;
                }
                self.record_remote(*requester_ip6, mac, from, false, now);
                out.push(NdAction::Do(NeighAction::ProgramMac { mac, uid: from }));
                if self
                    .fresh_entry(target_ip6, now)
                    .is_some_and(|e| e.owner != Owner::Local)
                {
                    // Some other node owns it; that node answers.
                    return out;
                }
                self.remote_asked.insert(*target_ip6, now);
                self.counters.requests_injected += 1;
                let f = icmpv6::solicit_frame(*requester_ip6, mac, *target_ip6);
                out.push(NdAction::Do(NeighAction::Inject(f)));
            }
            IccMsg::NdReply {
                target_ip6,
                mac,
                uid,
                router,
            } => {
                let mac = mac.parse::<MacAddr>().ok().filter(usable);
                let (Some(mac), true, true) = (mac, *uid == from, unicast(target_ip6)) else {
                    self.counters.bad_icc += 1;
                    return out;
                };
                self.counters.icc_replies_received += 1;
                if !self.accept_claim(from, *target_ip6, mac, now, &local_mac, &mut out) {
                    return out;
                }
                let moved_here = self
                    .entries
                    .get(target_ip6)
                    .is_some_and(|e| e.mac == mac && e.owner != Owner::Peer(from));
                self.record_remote(*target_ip6, mac, from, *router, now);
                out.push(NdAction::Do(NeighAction::ProgramMac { mac, uid: from }));
                if let Some(p) = self.pending.remove(target_ip6) {
                    for (ip, rmac) in p.requesters {
                        self.counters.replies_injected += 1;
                        let f = icmpv6::answer_frame(*target_ip6, mac, *router, ip, rmac);
                        out.push(NdAction::Do(NeighAction::Inject(f)));
                    }
                    if let Some(e) = self.entries.get_mut(target_ip6) {
                        e.used = true;
                    }
                } else if moved_here {
                    // The host moved between nodes: an unsolicited advertisement makes our
                    // bridge learn its new port at once.
                    self.counters.replies_injected += 1;
                    let f = icmpv6::announce_frame(*target_ip6, mac, *router);
                    out.push(NdAction::Do(NeighAction::Inject(f)));
                }
            }
            IccMsg::ArpRequest { .. } | IccMsg::ArpReply { .. } | IccMsg::ArpWithdraw { .. } => {}
        }
        out
    }

    fn peer_mut(&mut self, uid: Uid) -> Option<&mut PeerClaims> {
        if !self.peers.contains_key(&uid) && self.peers.len() >= MAX_PEERS {
            return None;
        }
        Some(self.peers.entry(uid).or_default())
    }

    /// Whether peer `from` may say that `ip` is at `mac` behind it; a refusal is counted for
    /// the peer, and reported as a conflict when two MACs claim one address.
    fn accept_claim(
        &mut self,
        from: Uid,
        ip: Ipv6Addr,
        mac: MacAddr,
        now: Millis,
        local_mac: &impl Fn(&MacAddr) -> bool,
        out: &mut Vec<NdAction>,
    ) -> bool {
        let Err(why) = self.check_claim(from, ip, mac, now, local_mac) else {
            return true;
        };
        self.counters.claims_refused += 1;
        if let Some(p) = self.peer_mut(from) {
            p.claims_refused += 1;
        }
        if matches!(why, Refusal::LocalIp | Refusal::HeldIp(_)) {
            if let Some(e) = self.entries.get(&ip).filter(|e| e.mac != mac) {
                let kept = (e.mac, e.owner);
                if self.reported.len() >= MAX_REPORTED {
                    self.reported.clear();
                }
                if self.reported.insert((ip, from, mac)) {
                    let c = self.conflict(ip, kept, (mac, Owner::Peer(from)));
                    out.push(c);
                }
            }
        }
        false
    }

    fn check_claim(
        &self,
        from: Uid,
        ip: Ipv6Addr,
        mac: MacAddr,
        now: Millis,
        local_mac: &impl Fn(&MacAddr) -> bool,
    ) -> Result<(), Refusal> {
        match self.fresh_entry(&ip, now).map(|e| e.owner) {
            Some(Owner::Local) => return Err(Refusal::LocalIp),
            Some(Owner::Peer(u)) if u != from => return Err(Refusal::HeldIp(u)),
            _ => {}
        }
        if local_mac(&mac) {
            return Err(Refusal::LocalMac);
        }
        let mut held = None;
        for e in self.entries.values() {
            if e.mac != mac || !self.fresh(e, now) {
                continue;
            }
            match e.owner {
                Owner::Local => return Err(Refusal::LocalMac),
                Owner::Peer(u) if u != from => held = Some(u),
                Owner::Peer(_) => {}
            }
        }
        held.map_or(Ok(()), |u| Err(Refusal::HeldMac(u)))
    }

    /// A peer's entry for `ip` was used to answer `requester`: re-probed before it expires.
    pub(super) fn mark_used(&mut self, ip: &Ipv6Addr, requester: (Ipv6Addr, MacAddr)) -> bool {
        match self.entries.get_mut(ip) {
            Some(e) if matches!(e.owner, Owner::Peer(_)) => {
                e.used = true;
                e.last_requester = Some(requester);
                true
            }
            _ => false,
        }
    }

    /// Forgets every binding owned by peer `uid` (its link went down or was trimmed). Returns
    /// how many.
    pub fn remove_owner(&mut self, uid: Uid) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| !matches!(e.owner, Owner::Peer(u) if u == uid));
        before - self.entries.len()
    }

    /// Ages entries and re-probes used remote entries before they expire (an `nd_request` to
    /// the owner on behalf of the last local requester). Call about once a second.
    pub fn tick(&mut self, now: Millis) -> Vec<NdAction> {
        let mut out = Vec::new();
        self.expire(now);
        let cfg = self.cfg;
        for (ip, e) in self.entries.iter_mut() {
            let (Owner::Peer(uid), Some((rip, rmac))) = (e.owner, e.last_requester) else {
                continue;
            };
            let age = now.saturating_sub(e.updated);
            if !e.used || age + cfg.probe_margin < cfg.ttl {
                continue;
            }
            if e.probed_at
                .is_some_and(|t| now.saturating_sub(t) < cfg.request_holdoff * 5)
            {
                continue;
            }
            e.probed_at = Some(now);
            self.counters.reprobes_sent += 1;
            let msg = IccMsg::NdRequest {
                target_ip6: *ip,
                requester_ip6: rip,
                requester_mac: rmac.to_string(),
            };
            out.push(NdAction::Do(NeighAction::IccSend(uid, msg)));
        }
        out
    }

    fn expire(&mut self, now: Millis) {
        let cfg = self.cfg;
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now.saturating_sub(e.updated) < cfg.ttl);
        self.counters.expired += (before - self.entries.len()) as u64;
        self.pending
            .retain(|_, p| now.saturating_sub(p.sent) < cfg.pending_timeout);
        self.remote_asked
            .retain(|_, t| now.saturating_sub(*t) < cfg.pending_timeout);
    }
}

#[cfg(test)]
#[path = "nd_tests.rs"]
mod tests;
