//! Offers that arrive before signalling runs. Signalling starts once the local tincan has
//! reported its key, which can be a second or so after the controller is on XMPP; a peer that
//! started earlier may already have sent its `con_req` by then. Such a request is held here
//! (the latest message of each uid, at most [`MAX_SIGNALLED_PEERS`] uids) and fed to
//! [`Signalling::on_message`] when signalling starts, so it is answered, not dropped.
//!
//! Holding trusts nothing: a held offer goes through every check of `on_message` (allowed
//! account, pinned key, bounds) when it is fed in, exactly as if it arrived then.

use super::{Offer, SignalAction, Signalling, MAX_SIGNALLED_PEERS};
use crate::id::{Millis, Uid};
use std::collections::HashMap;

/// A held offer older than this when signalling starts is dropped (counted): the peer has
/// repeated its request by then, or gone.
pub const HOLD_MAX_AGE: Millis = 30_000;

#[derive(Debug)]
struct Held {
    msg_type: &'static str,
    offer: Offer,
    at: Millis,
    /// Arrival order, so that offers are fed in as they came.
    seq: u64,
}

#[derive(Debug, Default)]
pub struct HeldOffers {
    held: HashMap<Uid, Held>,
    seq: u64,
    /// Offers held, and offers not held (table full) or dropped (too old): added to
    /// [`super::SignalCounters`] (`held_early`, `held_dropped`) when fed in.
    taken: u64,
    dropped: u64,
}

impl HeldOffers {
    /// Holds a `con_req` or `con_resp` from `uid`, replacing what was held for it. Other
    /// message types are not held. Returns whether it was held.
    pub fn hold(&mut self, uid: Uid, msg_type: &str, offer: &Offer, now: Millis) -> bool {
        let msg_type = match msg_type {
            "con_req" => "con_req",
            "con_resp" => "con_resp",
            _ => return false,
        };
        if !self.held.contains_key(&uid) && self.held.len() >= MAX_SIGNALLED_PEERS {
            self.dropped += 1;
            return false;
        }
        self.seq += 1;
        let held = Held {
            msg_type,
            offer: offer.clone(),
            at: now,
            seq: self.seq,
        };
        if self.held.insert(uid, held).is_none() {
            self.taken += 1;
        }
        true
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Feeds the held offers, in arrival order, to `sig` (which has just started) and returns
    /// its actions; offers older than [`HOLD_MAX_AGE`] are dropped.
    pub fn release(&mut self, sig: &mut Signalling, now: Millis) -> Vec<SignalAction> {
        let mut held: Vec<(Uid, Held)> = self.held.drain().collect();
        held.sort_by_key(|(_, h)| h.seq);
        let mut out = Vec::new();
        for (uid, h) in held {
            if now.saturating_sub(h.at) > HOLD_MAX_AGE {
                self.dropped += 1;
                self.taken -= 1;
                continue;
            }
            out.extend(sig.on_message(uid, h.msg_type, &h.offer, now));
        }
        sig.counters.held_early += std::mem::take(&mut self.taken);
        sig.counters.held_dropped += std::mem::take(&mut self.dropped);
        out
    }
}
