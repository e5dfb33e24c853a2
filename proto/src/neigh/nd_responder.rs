//! IPv6 neighbour discovery in the data plane: what tincan does with an ND frame from the
//! local bridge while the controller replicates neighbours (`"icc": true`, controller alive).
//!
//! - a multicast neighbour solicitation for a target the controller programmed (`set_nd`) is
//!   answered here with the target's real MAC (solicited, override, the target link-layer
//!   option, hop limit 255) and reported (`nd_answered`); any other multicast solicitation goes
//!   to the controller only, as ARP does;
//! - a duplicate address detection probe (source `::`) is never answered here: it floods, so
//!   the real owner hears it and defends its address;
//! - a unicast solicitation (neighbour unreachability detection) goes on to its target;
//! - an advertisement goes on as usual, and a copy goes to the controller, which learns (or
//!   refreshes) the binding;
//! - malformed or invalid ND (RFC 4861 7.1) is dropped and counted;
//! - anything else (multicast listener discovery, all other IPv6) is not ND and goes on.

use super::responder::Reports;
use crate::api::tincan::{NdAnswer, NdBinding, SetNd};
use crate::wire::ethernet::MacAddr;
use crate::wire::icmpv6::{self, NdMessage};
use std::collections::HashMap;
use std::net::Ipv6Addr;

/// What to do with a frame from the local bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NdVerdict {
    /// Not for this module (or a probe, or a unicast solicitation): switch it as usual.
    Pass,
    /// Switch it as usual, and give the controller a copy.
    PassAndPunt,
    /// To the controller only.
    Punt,
    /// Malformed: dropped (counted).
    Drop,
    /// Write this answer to the TAP; report `NdAnswer` once it was written.
    Answer(Vec<u8>, NdAnswer),
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct NdResponderCounters {
    /// Neighbour solicitations from the local bridge answered here.
    pub nd_answered_locally: u64,
    /// Solicitations given to the controller only, and copies of advertisements.
    pub nd_punted: u64,
    /// Duplicate address detection probes, flooded to their owner.
    pub nd_dad_flooded: u64,
    /// Malformed or invalid ND frames from the bridge, dropped.
    pub nd_malformed: u64,
    /// `set_nd` bindings refused: a group or zero MAC, a host on the local bridge, or the
    /// table full.
    pub nd_refused: u64,
    /// Answers left out of a full report.
    pub nd_reports_dropped: u64,
}

#[derive(Debug, Default)]
pub struct NdResponder {
    entries: HashMap<Ipv6Addr, NdBinding>,
    reports: Reports<NdAnswer>,
    pub counters: NdResponderCounters,
}

impl NdResponder {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, ip: &Ipv6Addr) -> Option<NdBinding> {
        self.entries.get(ip).copied()
    }

    /// Forgets every binding (the controller went silent).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Carries out a `set_nd`; a binding with a group or zero MAC, a MAC `is_local` (a host on
    /// the local bridge), or beyond the table's size is refused and counted. Returns how many.
    pub fn apply(&mut self, set: &SetNd, is_local: impl Fn(&MacAddr) -> bool) -> usize {
        if set.replace == Some(true) {
            self.entries.clear();
        }
        for ip in &set.remove {
            self.entries.remove(ip);
        }
        let mut refused = 0;
        for b in &set.add {
            let full =
                self.entries.len() >= SetNd::MAX_ENTRIES && !self.entries.contains_key(&b.ip);
            let m = &b.mac;
            if m.is_group() || m.is_zero() || is_local(m) || full || b.ip.is_multicast() {
                self.entries.remove(&b.ip);
                refused += 1;
                continue;
            }
            self.entries.insert(b.ip, *b);
        }
        self.counters.nd_refused += refused as u64;
        refused
    }

    /// What to do with `frame` from the local bridge (see the module's documentation).
    /// `is_local` tells the MACs of hosts on the local bridge. Counts what it decides, but an
    /// answer only once [`NdResponder::answered`].
    pub fn on_frame(&mut self, frame: &[u8], is_local: impl Fn(&MacAddr) -> bool) -> NdVerdict {
        if !icmpv6::is_nd(frame) {
            return NdVerdict::Pass;
        }
        let Ok(f) = icmpv6::parse_frame(frame) else {
            self.counters.nd_malformed += 1;
            return NdVerdict::Drop;
        };
        let s = match f.msg {
            NdMessage::Advert(_) => {
                self.counters.nd_punted += 1;
                return NdVerdict::PassAndPunt;
            }
            NdMessage::Solicit(_) if f.is_dad() => {
                self.counters.nd_dad_flooded += 1;
                return NdVerdict::Pass;
            }
            NdMessage::Solicit(_) if !f.eth_dst.is_group() => return NdVerdict::Pass,
            NdMessage::Solicit(s) => s,
        };
        let requester = s.source_ll.unwrap_or(f.eth_src);
        let answerable = requester == f.eth_src
            && !requester.is_group()
            && !requester.is_zero()
            // A requester that claims an address or MAC of the table: the controller decides.
            && !self.entries.contains_key(&f.src)
            && !self.entries.values().any(|b| b.mac == requester);
        let binding = self.entries.get(&s.target).filter(|b| !is_local(&b.mac));
        let (Some(b), true) = (binding, answerable) else {
            self.counters.nd_punted += 1;
            return NdVerdict::Punt;
        };
        let reply = icmpv6::answer_frame(s.target, b.mac, b.router, f.src, requester);
        let asked = NdAnswer {
            ip: s.target,
            requester_ip: f.src,
            requester_mac: requester,
        };
        NdVerdict::Answer(reply, asked)
    }

    /// The answer to `asked` was written: counted, and kept for the next report.
    pub fn answered(&mut self, asked: NdAnswer) {
        self.counters.nd_answered_locally += 1;
        if !self.reports.push(asked) {
            self.counters.nd_reports_dropped += 1;
        }
    }

    /// The answers since the last call, each once.
    pub fn take_reports(&mut self) -> Vec<NdAnswer> {
        self.reports.take()
    }
}

#[cfg(test)]
#[path = "nd_responder_tests.rs"]
mod tests;
