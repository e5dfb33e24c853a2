//! The IPv6 bindings the controller programs into tincan's responder (`set_nd`): exactly those
//! it would answer a local solicitation from, i.e. fresh entries owned by a peer. Never a host
//! of our own bridge. [`ProgrammedNd`] remembers what was sent and sends only changes.

use super::nd::{NdAction, NdTable};
use super::Owner;
use crate::api::tincan::{NdAnswer, NdBinding, SetNd};
use crate::id::Millis;
use std::collections::HashMap;
use std::net::Ipv6Addr;

/// Bindings per `set_nd` call, so that one call fits a datagram comfortably.
pub const ND_CHUNK: usize = 128;

impl NdTable {
    /// The bindings tincan may answer from: fresh entries owned by a peer, at most
    /// [`SetNd::MAX_ENTRIES`] (the most recently refreshed).
    pub fn answerable(&self, now: Millis) -> HashMap<Ipv6Addr, NdBinding> {
        let mut peer: Vec<_> = self
            .entries()
            .filter(|(_, e)| matches!(e.owner, Owner::Peer(_)) && self.fresh(e, now))
            .collect();
        if peer.len() > SetNd::MAX_ENTRIES {
            peer.sort_by_key(|(_, e)| std::cmp::Reverse(e.updated));
            peer.truncate(SetNd::MAX_ENTRIES);
        }
        peer.into_iter()
            .map(|(ip, e)| {
                let b = NdBinding {
                    ip: *ip,
                    mac: e.mac,
                    router: e.router,
                };
                (*ip, b)
            })
            .collect()
    }

    /// tincan answered `a` from its table: the requester is on our bridge, and the entry was
    /// used (re-probed before it expires on behalf of that requester).
    pub fn on_answered_by_tincan(&mut self, a: &NdAnswer, now: Millis) -> Vec<NdAction> {
        let mut out = Vec::new();
        let m = a.requester_mac;
        if m.is_group() || m.is_zero() || a.requester_ip.is_unspecified() {
            self.counters.bad_frames += 1;
            return out;
        }
        self.record_local(a.requester_ip, m, None, now, &mut out);
        if self.mark_used(&a.ip, (a.requester_ip, m)) {
            self.counters.answered_by_tincan += 1;
        }
        out
    }
}

/// What tincan was told (`set_nd`), to send only changes.
#[derive(Debug, Default)]
pub struct ProgrammedNd {
    sent: HashMap<Ipv6Addr, NdBinding>,
}

impl ProgrammedNd {
    /// Bindings tincan should hold.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// The calls that bring tincan from what was sent to `want`; with `replace`, the calls
    /// that replace its whole table (at least one, the first with `replace`).
    pub fn update(&mut self, want: HashMap<Ipv6Addr, NdBinding>, replace: bool) -> Vec<SetNd> {
        let sent = std::mem::replace(&mut self.sent, want);
        let sent = if replace { HashMap::new() } else { sent };
        let remove: Vec<Ipv6Addr> = sent
            .keys()
            .filter(|ip| !self.sent.contains_key(ip))
            .copied()
            .collect();
        let add: Vec<NdBinding> = self
            .sent
            .values()
            .filter(|b| sent.get(&b.ip) != Some(b))
            .copied()
            .collect();
        let calls = add.len().max(remove.len()).div_ceil(ND_CHUNK);
        let calls = calls.max(usize::from(replace));
        (0..calls)
            .map(|i| {
                let part = |n: usize| i * ND_CHUNK..((i + 1) * ND_CHUNK).min(n).max(i * ND_CHUNK);
                SetNd {
                    replace: (replace && i == 0).then_some(true),
                    add: add.get(part(add.len())).unwrap_or_default().to_vec(),
                    remove: remove.get(part(remove.len())).unwrap_or_default().to_vec(),
                }
            })
            .collect()
    }
}
