//! Contested addresses: moves and conflicts (docs/architecture.md, "Moves and conflicts").
//!
//! A peer's claim for an IP that another owner holds (a fresh entry of the table: our bridge
//! or another peer) does not replace the entry. It is kept beside it as a [`Contest`], one per
//! IP, and the entry stays what the table answers with. The owner settles it, speaking for
//! itself:
//! - the owner withdraws the binding (`arp_withdraw`), its link goes down, or its entry ages
//!   out: the claim takes its place at once (or at the next tick), if it was heard within the
//!   ttl;
//! - the claimant withdraws, its link goes down, or its claim is not heard again within the
//!   ttl: the contest is dropped.
//!
//! When the owner is our own bridge, this host decides: the controller checks the bridge's
//! forwarding database (`CheckBridge`) at once when a peer claims a local IP with the same MAC
//! (a host that moved away from here), and every tick while a contest of a local binding lasts.
//! A MAC that is on no bridge port but the TAP has left: its local bindings are released
//! (tincan drops its local binding, `ReleaseMac`), withdrawn from every peer, and the claim
//! takes over. A MAC still on the bridge stays ours, and the claim is a conflict.
//!
//! A contest with two MACs is a conflict from the start: reported once (`Conflict`, naming
//! both owners and the one kept) and listed until settled. One with the same MAC, held by a
//! peer, is a move waiting for its old owner's withdrawal.

use super::{arp_request_frame, NeighAction, NeighEntry, NeighTable, Owner};
use crate::icc::IccMsg;
use crate::id::{Millis, Uid};
use crate::wire::ethernet::MacAddr;
use std::net::Ipv4Addr;

/// Contests held at most; beyond that, new claims are refused without one.
const MAX_CONTESTS: usize = 1_024;

/// A claim for an IP held by another owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contest {
    /// The MAC claimed.
    pub mac: MacAddr,
    /// The peer claiming it.
    pub by: Uid,
    /// First and last heard.
    pub since: Millis,
    pub seen: Millis,
    /// Reported as a conflict (two MACs, or a MAC still on our bridge).
    pub reported: bool,
    /// Against a binding of our own bridge: it is taken over only once our bridge's forwarding
    /// database no longer has the MAC (`on_bridge_check`), never because the local entry aged
    /// (a host whose ARP does not reach the TAP for a while is still there).
    pub against_local: bool,
}

impl NeighTable {
    /// The contests: the IP, the entry kept, and the claim beside it.
    pub fn contests(&self) -> impl Iterator<Item = (&Ipv4Addr, &NeighEntry, &Contest)> {
        self.contests
            .iter()
            .filter_map(|(ip, c)| Some((ip, self.entries.get(ip)?, c)))
    }

    /// Records peer `by`'s refused claim that `ip` is at `mac`, against the entry for `ip`.
    /// Returns whether the refusal counts against the peer: not while our bridge is being
    /// checked for a MAC that may have left it.
    pub(super) fn contest(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        by: Uid,
        now: Millis,
        out: &mut Vec<NeighAction>,
    ) -> bool {
        let Some(kept) = self.entries.get(&ip).map(|e| (e.mac, e.owner)) else {
            return true;
        };
        let prev = self.contests.get(&ip).copied();
        if let Some(c) = self.contests.get_mut(&ip) {
            if c.by == by && c.mac == mac {
                c.seen = now;
                return c.reported || kept != (mac, Owner::Local);
            }
            // One live claim per IP: another peer's claim does not replace it (it waits for
            // the first to be settled or to lapse), so a pending move cannot be bumped.
            if c.by != by && now.saturating_sub(c.seen) < self.cfg.ttl {
                return true;
            }
        }
        if prev.is_none() && self.contests.len() >= MAX_CONTESTS {
            return true;
        }
        // The same peer changing its claim keeps what was already reported and checked, so
        // alternating claims cost neither a log line nor a bridge check each.
        let again = prev.filter(|p| p.by == by);
        let mut c = Contest {
            mac,
            by,
            since: again.map_or(now, |p| p.since),
            seen: now,
            reported: again.is_some_and(|p| p.reported),
            against_local: kept.1 == Owner::Local,
        };
        let counted = if kept.0 != mac {
            if !c.reported {
                c.reported = true;
                self.report(ip, kept, (mac, Owner::Peer(by)), out);
            }
            true
        } else if kept.1 == Owner::Local {
            // The same MAC from a peer: moved away from our bridge, or a conflict.
            if again.is_none() {
                out.push(NeighAction::CheckBridge { mac });
            }
            false
        } else {
            true
        };
        self.contests.insert(ip, c);
        counted
    }

    /// Our bridge claims `ip` while peer `peer` held it freshly with another MAC (`old`): the
    /// local binding is kept, the peer's becomes a contest.
    pub(super) fn keep_local_over(
        &mut self,
        ip: Ipv4Addr,
        peer: Uid,
        old: &NeighEntry,
        now: Millis,
        out: &mut Vec<NeighAction>,
    ) {
        let mac = self.entries.get(&ip).map_or(old.mac, |e| e.mac);
        self.report(ip, (mac, Owner::Local), (old.mac, Owner::Peer(peer)), out);
        if self.contests.contains_key(&ip) || self.contests.len() < MAX_CONTESTS {
            self.contests.insert(
                ip,
                Contest {
                    mac: old.mac,
                    by: peer,
                    since: now,
                    seen: old.updated,
                    reported: true,
                    against_local: true,
                },
            );
        }
    }

    fn report(
        &mut self,
        ip: Ipv4Addr,
        kept: (MacAddr, Owner),
        claimed: (MacAddr, Owner),
        out: &mut Vec<NeighAction>,
    ) {
        self.counters.conflicts += 1;
        out.push(NeighAction::Conflict {
            ip,
            kept_mac: kept.0,
            kept_owner: kept.1,
            claimed_mac: claimed.0,
            claimed_by: claimed.1,
        });
    }

    /// The answer to `CheckBridge`: whether our bridge has `mac` on a port other than the TAP.
    /// Present: the local bindings stay, and a claim for them with the same MAC is a conflict.
    /// Gone: the local bindings of `mac` (but this host's own addresses) are released and
    /// withdrawn from every peer, and the claims for them take over.
    pub fn on_bridge_check(
        &mut self,
        mac: MacAddr,
        present: bool,
        now: Millis,
    ) -> Vec<NeighAction> {
        let mut out = Vec::new();
        let local: Vec<Ipv4Addr> = self
            .entries
            .iter()
            .filter(|(ip, e)| e.owner == Owner::Local && e.mac == mac && !self.own_ips.contains(ip))
            .map(|(ip, _)| *ip)
            .collect();
        if present {
            for ip in local {
                let Some(c) = self.contests.get_mut(&ip).filter(|c| !c.reported) else {
                    continue;
                };
                c.reported = true;
                let claimed = (c.mac, Owner::Peer(c.by));
                let by = c.by;
                self.count_refusal(by);
                self.report(ip, (mac, Owner::Local), claimed, &mut out);
            }
            return out;
        }
        if local.is_empty() {
            return out;
        }
        out.push(NeighAction::ReleaseMac { mac, uid: None });
        for ip in &local {
            self.entries.remove(ip);
            self.counters.released += 1;
            out.push(NeighAction::IccBroadcast(IccMsg::ArpWithdraw {
                target_ip4: *ip,
                mac: mac.to_string(),
            }));
        }
        for ip in local {
            self.take_over(ip, mac, now, &mut out);
        }
        out
    }

    /// Peer `from` says `ip` is no longer at `mac` on its bridge.
    pub(super) fn on_withdraw(
        &mut self,
        from: Uid,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: Millis,
        out: &mut Vec<NeighAction>,
    ) {
        let owner = Owner::Peer(from);
        if self
            .entries
            .get(&ip)
            .is_some_and(|e| e.owner == owner && e.mac == mac)
        {
            self.entries.remove(&ip);
            self.counters.withdrawn += 1;
            // tincan's binding of the MAC to the peer goes, unless another of its entries
            // still has it.
            if !self
                .entries
                .values()
                .any(|e| e.owner == owner && e.mac == mac)
            {
                out.push(NeighAction::ReleaseMac {
                    mac,
                    uid: Some(from),
                });
            }
            self.take_over(ip, mac, now, out);
        } else if self
            .contests
            .get(&ip)
            .is_some_and(|c| c.by == from && c.mac == mac)
        {
            self.contests.remove(&ip);
            self.counters.withdrawn += 1;
        } else {
            self.counters.withdrawals_ignored += 1;
        }
    }

    /// The owner of `ip` (which was at `old_mac`) gave it up: a contested claim heard within
    /// the ttl takes its place.
    fn take_over(
        &mut self,
        ip: Ipv4Addr,
        old_mac: MacAddr,
        now: Millis,
        out: &mut Vec<NeighAction>,
    ) {
        let Some(c) = self.contests.remove(&ip) else {
            return;
        };
        if now.saturating_sub(c.seen) >= self.cfg.ttl {
            return;
        }
        if self.entries.get(&ip).is_some_and(|e| self.is_fresh(e, now)) {
            // Someone holds it again (our bridge spoke meanwhile): the claim waits.
            self.contests.insert(ip, c);
            return;
        }
        self.entries.remove(&ip);
        if !self.record_remote(ip, c.mac, c.by, now) {
            return;
        }
        self.counters.contests_settled += 1;
        out.push(NeighAction::ProgramMac {
            mac: c.mac,
            uid: c.by,
        });
        if c.mac != old_mac {
            // Another MAC now: a gratuitous ARP makes our bridge's hosts use it at once.
            self.counters.replies_injected += 1;
            out.push(NeighAction::Inject(arp_request_frame(c.mac, ip, ip)));
        }
    }

    /// Once a tick: drops claims not heard within the ttl and those that won; lets claims take
    /// over addresses whose entry went; asks for a check of our bridge for every local binding
    /// still contested.
    pub(super) fn settle_contests(&mut self, now: Millis, out: &mut Vec<NeighAction>) {
        if self.contests.is_empty() {
            return;
        }
        let ttl = self.cfg.ttl;
        let mut orphans = Vec::new();
        let mut check = Vec::new();
        let entries = &self.entries;
        self.contests.retain(|ip, c| {
            if now.saturating_sub(c.seen) >= ttl {
                return false;
            }
            match entries.get(ip) {
                // A local entry that aged out: the host may well still be there.
                None if c.against_local => return false,
                None => orphans.push(*ip),
                Some(e) if e.owner == Owner::Peer(c.by) && e.mac == c.mac => return false,
                Some(e) if e.owner == Owner::Local => check.push(e.mac),
                Some(_) => {}
            }
            true
        });
        for ip in orphans {
            // The old MAC is not known any more: the gratuitous ARP goes out in any case.
            self.take_over(ip, MacAddr::ZERO, now, out);
        }
        check.sort_unstable_by_key(|m| m.0);
        check.dedup();
        out.extend(
            check
                .into_iter()
                .map(|mac| NeighAction::CheckBridge { mac }),
        );
    }
}

#[cfg(test)]
#[path = "contest_tests.rs"]
mod tests;
