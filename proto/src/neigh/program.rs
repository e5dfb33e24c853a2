//! The bindings the controller programs into tincan's ARP responder (`set_neigh`): exactly
//! those it would answer a local request from with an injected reply, i.e. fresh entries owned
//! by a peer, learned under the claim rules. Never a host of our own bridge. [`Programmed`]
//! remembers what was sent and turns the table's changes into `set_neigh` calls.

use super::{NeighAction, NeighTable, Owner};
use crate::api::tincan::{NeighAnswer, NeighBinding, SetNeigh};
use crate::id::Millis;
use crate::wire::ethernet::MacAddr;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Bindings per `set_neigh` call, so that one call fits a datagram comfortably.
pub const CHUNK: usize = 256;

impl NeighTable {
    /// The bindings tincan may answer from: fresh entries owned by a peer, at most
    /// [`SetNeigh::MAX_ENTRIES`] (the most recently refreshed).
    pub fn answerable(&self, now: Millis) -> HashMap<Ipv4Addr, MacAddr> {
        let mut peer: Vec<(&Ipv4Addr, &super::NeighEntry)> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.owner, Owner::Peer(_)) && self.is_fresh(e, now))
            .collect();
        if peer.len() > SetNeigh::MAX_ENTRIES {
            peer.sort_by_key(|(_, e)| std::cmp::Reverse(e.updated));
            peer.truncate(SetNeigh::MAX_ENTRIES);
        }
        peer.into_iter().map(|(ip, e)| (*ip, e.mac)).collect()
    }

    /// tincan answered `a` from its table: the same bookkeeping as an answer injected by the
    /// controller (the requester is on our bridge; the entry was used, and is re-probed before
    /// it expires on behalf of that requester). An answer that does not fit the table (a group
    /// requester, or an entry that went meanwhile) changes no entry; the actions are conflicts
    /// the requester's address caused, as for a punted request.
    pub fn on_answered_by_tincan(&mut self, a: &NeighAnswer, now: Millis) -> Vec<NeighAction> {
        let mut out = Vec::new();
        let m = a.requester_mac;
        if m.is_group() || m.is_zero() || a.requester_ip.is_unspecified() {
            self.counters.bad_frames += 1;
            return out;
        }
        self.record_local(a.requester_ip, m, now, &mut out);
        if let Some(e) = self.entries.get_mut(&a.ip) {
            if matches!(e.owner, Owner::Peer(_)) {
                e.used = true;
                e.last_requester = Some((a.requester_ip, m));
                self.counters.answered_by_tincan += 1;
            }
        }
        out
    }
}

/// What tincan was told (`set_neigh`), to send only changes.
#[derive(Debug, Default)]
pub struct Programmed {
    sent: HashMap<Ipv4Addr, MacAddr>,
}

impl Programmed {
    /// Bindings tincan should hold.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// The calls that change tincan's table from what was sent to `want` (none when nothing
    /// changed).
    pub fn update(&mut self, want: HashMap<Ipv4Addr, MacAddr>) -> Vec<SetNeigh> {
        let remove: Vec<Ipv4Addr> = self
            .sent
            .keys()
            .filter(|ip| !want.contains_key(ip))
            .copied()
            .collect();
        let add: Vec<NeighBinding> = want
            .iter()
            .filter(|(ip, mac)| self.sent.get(ip) != Some(mac))
            .map(|(ip, mac)| NeighBinding { ip: *ip, mac: *mac })
            .collect();
        self.sent = want;
        chunks(false, add, remove)
    }

    /// The calls that replace tincan's table with `want` (it restarted, or holds another
    /// number of bindings than it was sent): at least one, the first with `replace`.
    pub fn resend(&mut self, want: HashMap<Ipv4Addr, MacAddr>) -> Vec<SetNeigh> {
        let add = want
            .iter()
            .map(|(ip, mac)| NeighBinding { ip: *ip, mac: *mac })
            .collect();
        self.sent = want;
        chunks(true, add, Vec::new())
    }
}

fn chunks(replace: bool, add: Vec<NeighBinding>, remove: Vec<Ipv4Addr>) -> Vec<SetNeigh> {
    let mut out = Vec::new();
    let mut add = add.chunks(CHUNK);
    let mut remove = remove.chunks(CHUNK);
    loop {
        let (a, r) = (add.next(), remove.next());
        if a.is_none() && r.is_none() && !(replace && out.is_empty()) {
            return out;
        }
        out.push(SetNeigh {
            replace: (replace && out.is_empty()).then_some(true),
            add: a.map(<[_]>::to_vec).unwrap_or_default(),
            remove: r.map(<[_]>::to_vec).unwrap_or_default(),
        });
    }
}

#[cfg(test)]
#[path = "program_tests.rs"]
mod tests;
