//! ARP answered in the data plane: the table of bindings the controller programs into tincan
//! (`set_neigh`), the reply tincan builds from it for a request from the local bridge, and the
//! batched report of what it answered (`neigh_answered`).
//!
//! tincan answers only what the controller would have answered with an injected reply: an
//! ordinary request from a host on the local bridge for the IPv4 address of a host behind a
//! link. Everything else (a miss, a gratuitous ARP or an address probe, a reply, a request whose
//! sender claims an address or MAC the table holds, a malformed frame) is left to the
//! controller, exactly as before.

use crate::api::tincan::{NeighAnswer, NeighBinding, SetNeigh};
use crate::wire::arp::{ArpRepr, Operation};
use crate::wire::ethernet::MacAddr;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// Answers held for the next report; more are counted and left out (the controller refreshes
/// from the ones it gets, and a host asks again).
pub const MAX_REPORTS: usize = 256;

/// Why a frame is not answered here (it goes to the controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not an Ethernet/IPv4 ARP packet.
    Malformed,
    /// A reply.
    NotRequest,
    /// A gratuitous ARP or an address probe (no sender address).
    Announcement,
    /// The sender MAC is a group or zero address, or not the frame's source.
    BadSender,
    /// The sender claims an address or MAC the table holds for a host behind a link: the
    /// controller decides (a conflict, or a host that moved here).
    SenderInTable,
    /// No binding for the target.
    Miss,
    /// The binding's MAC is a host on the local bridge.
    TargetLocal,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ResponderCounters {
    /// ARP requests from the local bridge answered here.
    pub arp_answered_locally: u64,
    /// `set_neigh` bindings refused: a group or zero MAC, a host on the local bridge, or the
    /// table full.
    pub neigh_refused: u64,
    /// Answers left out of a full report.
    pub neigh_reports_dropped: u64,
}

#[derive(Debug, Default)]
pub struct Responder {
    entries: HashMap<Ipv4Addr, MacAddr>,
    reports: Reports<NeighAnswer>,
    pub counters: ResponderCounters,
}

/// Answers since the last report, each once, at most [`MAX_REPORTS`].
#[derive(Debug)]
pub struct Reports<T> {
    list: Vec<T>,
    seen: HashSet<T>,
}

impl<T> Default for Reports<T> {
    fn default() -> Self {
        Reports {
            list: Vec::new(),
            seen: HashSet::new(),
        }
    }
}

impl<T: Copy + Eq + std::hash::Hash> Reports<T> {
    /// Keeps `t` for the next report; false if the report is full (it is left out).
    pub fn push(&mut self, t: T) -> bool {
        if self.seen.contains(&t) {
            return true;
        }
        if self.list.len() >= MAX_REPORTS {
            return false;
        }
        self.seen.insert(t);
        self.list.push(t);
        true
    }

    /// The answers since the last call, each once; empty when there were none.
    pub fn take(&mut self) -> Vec<T> {
        self.seen.clear();
        std::mem::take(&mut self.list)
    }
}

/// The reply to the ARP request `frame` for a target at `lookup(target)`: sender the target's
/// IP and real MAC, target the requester, sent to the requester's MAC. Returns the reply frame
/// and who asked for what.
pub fn reply_to(
    frame: &[u8],
    lookup: impl Fn(&Ipv4Addr) -> Option<MacAddr>,
) -> Result<(Vec<u8>, NeighAnswer), Skip> {
    let (_dst, eth_src, arp) = ArpRepr::parse_frame(frame).map_err(|_| Skip::Malformed)?;
    if arp.op != Operation::Request {
        return Err(Skip::NotRequest);
    }
    if arp.is_gratuitous() || arp.spa.is_unspecified() {
        return Err(Skip::Announcement);
    }
    if arp.sha.is_group() || arp.sha.is_zero() || arp.sha != eth_src {
        return Err(Skip::BadSender);
    }
    let mac = lookup(&arp.tpa).ok_or(Skip::Miss)?;
    let reply = ArpRepr {
        op: Operation::Reply,
        sha: mac,
        spa: arp.tpa,
        tha: arp.sha,
        tpa: arp.spa,
    }
    .to_frame(arp.sha, mac);
    let asked = NeighAnswer {
        ip: arp.tpa,
        requester_ip: arp.spa,
        requester_mac: arp.sha,
    };
    Ok((reply, asked))
}

impl Responder {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, ip: &Ipv4Addr) -> Option<MacAddr> {
        self.entries.get(ip).copied()
    }

    /// Forgets every binding (the controller went silent; its successor programs its own).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Carries out a `set_neigh`. A binding whose MAC is a group or zero address, or
    /// `is_local` (a host on the local bridge), or that would overflow the table, is refused
    /// and counted. Returns how many were refused.
    pub fn apply(&mut self, set: &SetNeigh, is_local: impl Fn(&MacAddr) -> bool) -> usize {
        if set.replace == Some(true) {
            self.entries.clear();
        }
        for ip in &set.remove {
            self.entries.remove(ip);
        }
        let mut refused = 0;
        for NeighBinding { ip, mac } in &set.add {
            let full =
                self.entries.len() >= SetNeigh::MAX_ENTRIES && !self.entries.contains_key(ip);
            if mac.is_group() || mac.is_zero() || is_local(mac) || full {
                // A stale binding for that IP must not keep answering either.
                self.entries.remove(ip);
                refused += 1;
                continue;
            }
            self.entries.insert(*ip, *mac);
        }
        self.counters.neigh_refused += refused as u64;
        refused
    }

    /// The reply to an ARP `frame` from the local bridge, if this table answers it, and who
    /// asked for what (for [`Responder::answered`] once the reply is written). `is_local` tells
    /// the MACs of hosts on the local bridge: never given out as a remote host's.
    pub fn reply(
        &self,
        frame: &[u8],
        is_local: impl Fn(&MacAddr) -> bool,
    ) -> Result<(Vec<u8>, NeighAnswer), Skip> {
        let (reply, asked) = reply_to(frame, |ip| self.entries.get(ip).copied())?;
        if self.entries.get(&asked.ip).is_some_and(&is_local) {
            return Err(Skip::TargetLocal);
        }
        if self.entries.contains_key(&asked.requester_ip)
            || self.entries.values().any(|m| *m == asked.requester_mac)
        {
            return Err(Skip::SenderInTable);
        }
        Ok((reply, asked))
    }

    /// The reply to `asked` was delivered: counted, and kept for the next report.
    pub fn answered(&mut self, asked: NeighAnswer) {
        self.counters.arp_answered_locally += 1;
        if !self.reports.push(asked) {
            self.counters.neigh_reports_dropped += 1;
        }
    }

    /// [`Responder::reply`], counted and reported as delivered.
    pub fn answer(
        &mut self,
        frame: &[u8],
        is_local: impl Fn(&MacAddr) -> bool,
    ) -> Result<Vec<u8>, Skip> {
        let (reply, asked) = self.reply(frame, is_local)?;
        self.answered(asked);
        Ok(reply)
    }

    /// The answers since the last call, each once; empty when there were none.
    pub fn take_reports(&mut self) -> Vec<NeighAnswer> {
        self.reports.take()
    }
}

#[cfg(test)]
#[path = "responder_tests.rs"]
mod tests;
