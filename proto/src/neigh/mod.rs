//! The controller's ARP mapping table and its decisions, as a state
//! machine: feed it punted ARP frames, ICC messages and clock ticks; carry out the actions it
//! returns (inject a frame into the TAP, send ICC, program tincan's MAC table, report).
//!
//! Invariants it keeps:
//! - a local ARP request is answered locally only from a fresh entry owned by a peer, with the
//!   target's real MAC as sender and source, never the TAP's;
//! - an unknown target costs one ICC `arp_request` per holdoff period, however many hosts ask;
//! - a remote claim never silently replaces a fresh local binding: that is a conflict, reported;
//! - a peer speaks only for itself: a claim (an `arp_reply`, or the requester of an
//!   `arp_request`) for an IP or MAC bound to our own bridge, or to another peer while that
//!   binding is fresh, is refused and counted per peer, and nothing is programmed, injected or
//!   recorded for it;
//! - `arp_request`s from one peer are rate-limited, so that one peer cannot make us inject
//!   requests into our bridge without bound.
//!
//! The migration rule: a binding moves from one owner to another when its owner gives it up:
//! it withdraws it (`arp_withdraw`, sent once the host left its bridge), its link goes down or
//! is trimmed (`remove_owner`), or it aged out (not refreshed for `ttl`). Until then another
//! peer's claim is kept beside the binding as a contest (module `contest`): a move waiting for
//! the old owner's word when the MAC is the same, a conflict when it differs. This host is the
//! owner of what its bridge holds, and checks its bridge's forwarding database when a peer
//! claims one of its MACs (`CheckBridge`): a MAC no longer on any bridge port but the TAP has
//! left, and its bindings are released and withdrawn; a MAC still there stays ours. Nothing a
//! peer says can be checked against another peer's bridge, so only the owner's own word (or
//! its silence, or its link going down) moves a binding; a lying peer cannot make a host that
//! still sits on its real bridge move.

use crate::icc::IccMsg;
use crate::id::{Millis, Uid};
use crate::ratelimit::RateLimiter;
use crate::wire::arp::{ArpRepr, Operation};
use crate::wire::ethernet::MacAddr;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

mod claims;
mod contest;
pub mod nd;
mod nd_program;
pub mod nd_responder;
mod program;
pub mod responder;
pub mod vlan;

pub use claims::{PeerClaims, Refusal};
pub use contest::Contest;
pub use nd_program::{ProgrammedNd, ND_CHUNK};
pub use program::{Programmed, CHUNK};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// On our own bridge.
    Local,
    /// On the bridge of the node with this uid.
    Peer(Uid),
}

#[derive(Debug, Clone)]
pub struct NeighEntry {
    pub mac: MacAddr,
    pub owner: Owner,
    pub updated: Millis,
    /// A local host that asked for this entry most recently: used as the requester when the
    /// entry is re-probed before it expires.
    pub last_requester: Option<(Ipv4Addr, MacAddr)>,
    /// Answered locally since the last refresh: worth re-probing.
    pub used: bool,
    probed_at: Option<Millis>,
}

impl NeighEntry {
    fn new(mac: MacAddr, owner: Owner, now: Millis) -> Self {
        NeighEntry {
            mac,
            owner,
            updated: now,
            last_requester: None,
            used: false,
            probed_at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeighAction {
    /// Write this Ethernet frame into the local bridge (through tincan's TAP).
    Inject(Vec<u8>),
    /// Send to every peer's controller.
    IccBroadcast(IccMsg),
    /// Send to one peer's controller.
    IccSend(Uid, IccMsg),
    /// Tell tincan that `mac` lives behind the link to `uid`.
    ProgramMac { mac: MacAddr, uid: Uid },
    /// Check whether the local bridge has `mac` on a port other than the TAP, and say so
    /// ([`NeighTable::on_bridge_check`]).
    CheckBridge { mac: MacAddr },
    /// Tell tincan to drop its binding of `mac`: to our bridge (`uid` none: the host left it),
    /// or to the link to `uid` (that peer withdrew it).
    ReleaseMac { mac: MacAddr, uid: Option<Uid> },
    /// One IP claimed by two MACs on different hosts (or one MAC on two bridges).
    Conflict {
        ip: Ipv4Addr,
        kept_mac: MacAddr,
        kept_owner: Owner,
        claimed_mac: MacAddr,
        claimed_by: Owner,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct NeighConfig {
    /// An entry not refreshed for this long is dropped.
    pub ttl: Millis,
    /// Used remote entries are re-probed this long before they expire.
    pub probe_margin: Millis,
    /// At most one ICC `arp_request` per target per this period.
    pub request_holdoff: Millis,
    /// Local requesters waiting for an `arp_reply` are forgotten after this.
    pub pending_timeout: Millis,
    /// ICC `arp_request`s accepted from one peer: this many per second, after a burst of
    /// `icc_request_burst`.
    pub icc_requests_per_sec: f64,
    pub icc_request_burst: f64,
}

impl Default for NeighConfig {
    fn default() -> Self {
        NeighConfig {
            ttl: 300_000,
            probe_margin: 30_000,
            request_holdoff: 1_000,
            pending_timeout: 3_000,
            icc_requests_per_sec: 10.0,
            icc_request_burst: 20.0,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct NeighCounters {
    pub arp_punted: u64,
    pub answered_locally: u64,
    /// Requests tincan answered from the bindings programmed into it (`neigh_answered`).
    pub answered_by_tincan: u64,
    pub local_target: u64,
    pub icc_requests_sent: u64,
    pub icc_requests_suppressed: u64,
    pub icc_requests_received: u64,
    pub icc_replies_sent: u64,
    pub icc_replies_received: u64,
    pub requests_injected: u64,
    pub replies_injected: u64,
    pub reprobes_sent: u64,
    pub conflicts: u64,
    pub moved: u64,
    pub expired: u64,
    pub bad_frames: u64,
    pub bad_icc: u64,
    /// Claims refused from peers, all peers together (see [`PeerClaims`]).
    pub claims_refused: u64,
    pub icc_requests_rate_limited: u64,
    /// Local bindings released because their MAC left our bridge while a peer claimed it.
    pub released: u64,
    /// Bindings peers withdrew (`arp_withdraw`), and withdrawals of nothing they held.
    pub withdrawn: u64,
    pub withdrawals_ignored: u64,
    /// Contested claims that took over once the old owner gave the address up.
    pub contests_settled: u64,
}

const MAX_PENDING_TARGETS: usize = 1024;
const MAX_REQUESTERS_PER_TARGET: usize = 16;
const MAX_ENTRIES: usize = 16_384;
/// Peers with their own counters and request bucket; links are authenticated, so this bounds
/// nothing a stranger controls, but a table is bounded all the same.
pub(super) const MAX_PEERS: usize = 4_096;

#[derive(Debug)]
struct Pending {
    sent: Millis,
    requesters: Vec<(Ipv4Addr, MacAddr)>,
}

#[derive(Debug)]
pub struct NeighTable {
    own_uid: Uid,
    cfg: NeighConfig,
    entries: HashMap<Ipv4Addr, NeighEntry>,
    pending: HashMap<Ipv4Addr, Pending>,
    /// Targets that peers asked about recently: a local reply for them is announced.
    remote_asked: HashMap<Ipv4Addr, Millis>,
    /// This host's own addresses (its bridge's): never accepted from a peer, even before the
    /// bridge has spoken.
    own_ips: HashSet<Ipv4Addr>,
    requests: RateLimiter<Uid>,
    peers: HashMap<Uid, PeerClaims>,
    /// Claims for an IP held by another owner, at most one per IP (module `contest`).
    contests: HashMap<Ipv4Addr, Contest>,
    pub counters: NeighCounters,
}

/// A broadcast ARP request from `sender_mac`/`sender_ip` for `target_ip` (a gratuitous ARP
/// when the two IPs are the same).
fn arp_request_frame(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    ArpRepr {
        op: Operation::Request,
        sha: sender_mac,
        spa: sender_ip,
        tha: MacAddr::ZERO,
        tpa: target_ip,
    }
    .to_frame(MacAddr::BROADCAST, sender_mac)
}

fn arp_reply_frame(
    target_ip: Ipv4Addr,
    target_mac: MacAddr,
    to_ip: Ipv4Addr,
    to_mac: MacAddr,
) -> Vec<u8> {
    ArpRepr {
        op: Operation::Reply,
        sha: target_mac,
        spa: target_ip,
        tha: to_mac,
        tpa: to_ip,
    }
    .to_frame(to_mac, target_mac)
}

impl NeighTable {
    pub fn new(own_uid: Uid, cfg: NeighConfig) -> Self {
        NeighTable {
            own_uid,
            cfg,
            entries: HashMap::new(),
            pending: HashMap::new(),
            remote_asked: HashMap::new(),
            own_ips: HashSet::new(),
            requests: RateLimiter::new(cfg.icc_requests_per_sec, cfg.icc_request_burst, MAX_PEERS),
            peers: HashMap::new(),
            contests: HashMap::new(),
            counters: NeighCounters::default(),
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = (&Ipv4Addr, &NeighEntry)> {
        self.entries.iter()
    }

    pub fn get(&self, ip: &Ipv4Addr) -> Option<&NeighEntry> {
        self.entries.get(ip)
    }

    fn is_fresh(&self, e: &NeighEntry, now: Millis) -> bool {
        now.saturating_sub(e.updated) < self.cfg.ttl
    }

    /// Records that `ip` is at `mac` on our own bridge. Returns true if peers should hear of
    /// it (it moved here, or it is new or changed).
    fn record_local(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: Millis,
        out: &mut Vec<NeighAction>,
    ) -> bool {
        let ttl = self.cfg.ttl;
        match self.entries.get_mut(&ip) {
            Some(e) if e.owner == Owner::Local && e.mac == mac => {
                e.updated = now;
                false
            }
            Some(e) => {
                let fresh = now.saturating_sub(e.updated) < ttl;
                let old = e.clone();
                *e = NeighEntry::new(mac, Owner::Local, now);
                if let Owner::Peer(peer) = old.owner {
                    if old.mac == mac {
                        self.counters.moved += 1;
                    } else if fresh {
                        // Two hosts claim one IP. What our own bridge says is first-hand; keep
                        // it, and keep the peer's claim as a contest.
                        self.keep_local_over(ip, peer, &old, now, out);
                    }
                }
                true
            }
            None => {
                if self.entries.len() >= MAX_ENTRIES {
                    self.expire(now);
                    if self.entries.len() >= MAX_ENTRIES {
                        return false;
                    }
                }
                self.entries
                    .insert(ip, NeighEntry::new(mac, Owner::Local, now));
                true
            }
        }
    }

    /// Records a peer's claim that passed the claim rules. Returns false if it was not
    /// recorded (another owner's fresh binding, or the table is full).
    fn record_remote(&mut self, ip: Ipv4Addr, mac: MacAddr, uid: Uid, now: Millis) -> bool {
        let owner = Owner::Peer(uid);
        let ttl = self.cfg.ttl;
        // A claim that takes the address settles the claimant's contest for it.
        if self.contests.get(&ip).is_some_and(|c| c.by == uid) {
            self.contests.remove(&ip);
        }
        if let Some(e) = self.entries.get_mut(&ip) {
            let fresh = now.saturating_sub(e.updated) < ttl;
            if e.owner == owner && e.mac == mac {
                e.updated = now;
                e.used = false;
                e.probed_at = None;
                return true;
            }
            if fresh && e.owner != owner {
                // The claim rules let no peer take a fresh binding of another owner.
                return false;
            }
            if e.mac == mac {
                // Same host, other node: it migrated.
                self.counters.moved += 1;
            }
            // Otherwise the owner gave the IP another MAC (or the old binding aged out): the
            // owner speaks for its own bridge.
            let last_requester = e.last_requester;
            *e = NeighEntry {
                mac,
                owner,
                updated: now,
                last_requester,
                used: false,
                probed_at: None,
            };
            return true;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.expire(now);
            if self.entries.len() >= MAX_ENTRIES {
                return false;
            }
        }
        self.entries.insert(ip, NeighEntry::new(mac, owner, now));
        true
    }

    /// An ARP frame that tincan punted from the local bridge.
    pub fn on_local_arp(&mut self, frame: &[u8], now: Millis) -> Vec<NeighAction> {
        let mut out = Vec::new();
        let Ok((_eth_dst, eth_src, arp)) = ArpRepr::parse_frame(frame) else {
            self.counters.bad_frames += 1;
            return out;
        };
        if arp.sha.is_group() || arp.sha.is_zero() || eth_src.is_group() {
            self.counters.bad_frames += 1;
            return out;
        }
        self.counters.arp_punted += 1;
        // Every ARP from our bridge tells where its sender is (an address probe, SPA 0.0.0.0,
        // claims nothing yet).
        let mut announce = false;
        if !arp.spa.is_unspecified() {
            announce = self.record_local(arp.spa, arp.sha, now, &mut out);
        }

        if arp.is_gratuitous() {
            // A host (re)announcing itself, e.g. after a migration: peers refresh their tables.
            out.push(NeighAction::IccBroadcast(IccMsg::ArpReply {
                target_ip4: arp.spa,
                mac: arp.sha.to_string(),
                uid: self.own_uid,
            }));
            self.counters.icc_replies_sent += 1;
            return out;
        }

        match arp.op {
            Operation::Reply => {
                // A host on our bridge answered, typically a request a peer asked us to inject.
                let asked = self
                    .remote_asked
                    .get(&arp.spa)
                    .is_some_and(|&t| now.saturating_sub(t) < self.cfg.pending_timeout);
                if asked || announce {
                    self.remote_asked.remove(&arp.spa);
                    out.push(NeighAction::IccBroadcast(IccMsg::ArpReply {
                        target_ip4: arp.spa,
                        mac: arp.sha.to_string(),
                        uid: self.own_uid,
                    }));
                    self.counters.icc_replies_sent += 1;
                }
            }
            Operation::Request => {
                let target = arp.tpa;
                let requester = (arp.spa, arp.sha);
                if let Some(e) = self.entries.get(&target) {
                    if self.is_fresh(e, now) {
                        if e.owner == Owner::Local {
                            // The target is on our own bridge, which already carried the
                            // request to it.
                            self.counters.local_target += 1;
                            return out;
                        }
                        let frame = arp_reply_frame(target, e.mac, arp.spa, eth_src);
                        let e = self.entries.get_mut(&target).expect("just read");
                        e.used = true;
                        if !arp.spa.is_unspecified() {
                            e.last_requester = Some(requester);
                        }
                        self.counters.answered_locally += 1;
                        out.push(NeighAction::Inject(frame));
                        return out;
                    }
                }
                self.request_remote(target, requester, now, &mut out);
            }
        }
        out
    }

    fn request_remote(
        &mut self,
        target: Ipv4Addr,
        requester: (Ipv4Addr, MacAddr),
        now: Millis,
        out: &mut Vec<NeighAction>,
    ) {
        let holdoff = self.cfg.request_holdoff;
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
        if p.sent != 0 && now.saturating_sub(p.sent) < holdoff {
            self.counters.icc_requests_suppressed += 1;
            return;
        }
        // `sent` 0 means never sent; the clock may start at 0, so store at least 1.
        p.sent = now.max(1);
        self.counters.icc_requests_sent += 1;
        out.push(NeighAction::IccBroadcast(IccMsg::ArpRequest {
            target_ip4: target,
            requester_ip4: requester.0,
            requester_mac: requester.1.to_string(),
        }));
    }

    /// An ICC message from the controller of peer `from` (as authenticated by the link).
    pub fn on_icc(&mut self, from: Uid, msg: &IccMsg, now: Millis) -> Vec<NeighAction> {
        let mut out = Vec::new();
        match msg {
            IccMsg::ArpRequest {
                target_ip4,
                requester_ip4,
                requester_mac,
            } => {
                // Each request may cost an injection into our bridge, which floods it.
                if !self.allow_request(from, now) {
                    return out;
                }
                let Ok(mac) = requester_mac.parse::<MacAddr>() else {
                    self.counters.bad_icc += 1;
                    return out;
                };
                if mac.is_group() || mac.is_zero() {
                    self.counters.bad_icc += 1;
                    return out;
                }
                self.counters.icc_requests_received += 1;
                // The request speaks for its requester; injected, it would teach our bridge
                // and the target where the requester is. Only for a requester the peer may
                // speak for.
                let ip = Some(*requester_ip4).filter(|ip| !ip.is_unspecified());
                if !self.accept_claim(from, ip, mac, now, &mut out) {
                    return out;
                }
                let recorded = match ip {
                    Some(ip) => self.record_remote(ip, mac, from, now),
                    None => true,
                };
                if recorded {
                    out.push(NeighAction::ProgramMac { mac, uid: from });
                }
                if let Some(e) = self.entries.get(target_ip4) {
                    if self.is_fresh(e, now) && e.owner != Owner::Local {
                        // Some other node owns it; that node answers.
                        return out;
                    }
                }
                self.remote_asked.insert(*target_ip4, now);
                self.counters.requests_injected += 1;
                out.push(NeighAction::Inject(arp_request_frame(
                    mac,
                    *requester_ip4,
                    *target_ip4,
                )));
            }
            IccMsg::ArpReply {
                target_ip4,
                mac,
                uid,
            } => {
                let Ok(mac) = mac.parse::<MacAddr>() else {
                    self.counters.bad_icc += 1;
                    return out;
                };
                // A node speaks only for its own bridge.
                if *uid != from || mac.is_group() || mac.is_zero() {
                    self.counters.bad_icc += 1;
                    return out;
                }
                self.counters.icc_replies_received += 1;
                if !self.accept_claim(from, Some(*target_ip4), mac, now, &mut out) {
                    return out;
                }
                let moved_here_before = self
                    .entries
                    .get(target_ip4)
                    .is_some_and(|e| e.mac == mac && e.owner != Owner::Peer(from));
                if !self.record_remote(*target_ip4, mac, from, now) {
                    return out;
                }
                out.push(NeighAction::ProgramMac { mac, uid: from });
                if let Some(p) = self.pending.remove(target_ip4) {
                    for (ip, rmac) in p.requesters {
                        self.counters.replies_injected += 1;
                        out.push(NeighAction::Inject(arp_reply_frame(
                            *target_ip4,
                            mac,
                            ip,
                            rmac,
                        )));
                    }
                    if let Some(e) = self.entries.get_mut(target_ip4) {
                        e.used = true;
                    }
                } else if moved_here_before {
                    // The host moved between nodes: a gratuitous ARP makes our bridge learn
                    // its new port at once.
                    self.counters.replies_injected += 1;
                    out.push(NeighAction::Inject(arp_request_frame(
                        mac,
                        *target_ip4,
                        *target_ip4,
                    )));
                }
            }
            // IPv6: the `nd` table's.
            IccMsg::NdRequest { .. } | IccMsg::NdReply { .. } => {}
            IccMsg::ArpWithdraw { target_ip4, mac } => match mac.parse::<MacAddr>() {
                Ok(mac) if !mac.is_group() && !mac.is_zero() => {
                    self.on_withdraw(from, *target_ip4, mac, now, &mut out);
                }
                _ => self.counters.bad_icc += 1,
            },
        }
        out
    }

    /// Forgets every binding owned by peer `uid` (its link was trimmed): its hosts are asked
    /// for again, not answered from stale entries. Returns how many.
    pub fn remove_owner(&mut self, uid: Uid) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| !matches!(e.owner, Owner::Peer(u) if u == uid));
        // Its claims go with it; claims for what it held take over at the next tick.
        self.contests.retain(|_, c| c.by != uid);
        before - self.entries.len()
    }

    /// Ages entries and re-probes used remote entries before they expire. Call about once a
    /// second.
    pub fn tick(&mut self, now: Millis) -> Vec<NeighAction> {
        let mut out = Vec::new();
        self.expire(now);
        self.settle_contests(now, &mut out);
        let cfg = self.cfg;
        for (ip, e) in self.entries.iter_mut() {
            let Owner::Peer(uid) = &e.owner else { continue };
            let age = now.saturating_sub(e.updated);
            if !e.used || age + cfg.probe_margin < cfg.ttl {
                continue;
            }
            if e.probed_at
                .is_some_and(|t| now.saturating_sub(t) < cfg.request_holdoff * 5)
            {
                continue;
            }
            let Some((rip, rmac)) = e.last_requester else {
                continue;
            };
            e.probed_at = Some(now);
            self.counters.reprobes_sent += 1;
            out.push(NeighAction::IccSend(
                *uid,
                IccMsg::ArpRequest {
                    target_ip4: *ip,
                    requester_ip4: rip,
                    requester_mac: rmac.to_string(),
                },
            ));
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
mod tests;
