//! Link signalling over XMPP (the original gvpn connection protocol),
//! as a state machine: feed it presence, messages, our own candidates and ticks; it says what
//! to send and which links to create or trim.
//!
//! Messages: `con_req` and `con_resp`, data `"<fpr> <candidate> <candidate> ..."` (the
//! original's layout: fingerprint, space, candidates), read once into an [`Offer`] where it
//! arrives. Collision rule (the modular
//! controller's, which settles what the original left to repetition): a `con_req` is accepted
//! when we have not sent one to that peer, or when our uid is the smaller; otherwise ours is
//! the request that wins, and since the peer evidently did not take it (it was lost, or
//! arrived before the peer was ready), we send it again at once, for the peer to accept.
//! So whichever node starts first, exactly one request wins on both sides and is answered.
//! Accepting means creating the link and answering `con_resp` (once we have candidates: a
//! request accepted before that is answered when they arrive). Links are idempotent in
//! tincan, so a `con_resp` after a change of our candidates just updates the peer's view.
//!
//! A request without an answer is repeated after 1 s, then 2, 4 and 8 s, then every
//! `wait_time` ([`RETRY_FIRST`]). Offers that arrive before signalling runs (the local tincan
//! has not reported its key yet) are held by [`HeldOffers`] and fed in when it starts.
//!
//! Keys: a message names a uid and a key, and any account allowed on the XMPP server can send
//! one, so a message alone never changes the key a uid links with. A uid with a configured key
//! (`"peers"`, [`Signalling::pin_configured`]) keeps it; a signalled uid keeps the first key it
//! linked with (trust on first use, [`Signalling::learned`]) until the operator forgets it
//! ([`Signalling::forget`]) *and* no link made with the old key is left (it is trimmed once it
//! has been down for the offline limit). Offers with another key are refused and counted.
//!
//! Bounds: at most [`MAX_SIGNALLED_PEERS`] peers in signalling and [`MAX_LEARNED_KEYS`]
//! learned keys; what does not fit is refused and counted ([`SignalCounters`]).

use crate::id::{Candidate, Fingerprint, IdError, Millis, Uid};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

mod held;
pub use held::{HeldOffers, HOLD_MAX_AGE};

/// The first repetition of an unanswered `con_req` comes this long after it; each further
/// one waits twice as long, up to `wait_time`.
pub const RETRY_FIRST: Millis = 1_000;

/// The data of `con_req` and `con_resp`: the sender's key and the addresses its link socket
/// may be reached at. Text form `"<fpr> <candidate> ..."`, words separated by white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub fpr: Fingerprint,
    pub candidates: Vec<Candidate>,
}

impl fmt::Display for Offer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.fpr)?;
        for c in &self.candidates {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

impl FromStr for Offer {
    type Err = IdError;

    /// The fingerprint must be 64 hex digits and every candidate well-formed: an offer with a
    /// word we cannot read is refused whole, as tincan would refuse the link made from it.
    fn from_str(data: &str) -> Result<Offer, IdError> {
        let mut words = data.split_whitespace();
        let fpr = words
            .next()
            .ok_or_else(|| IdError("expected \"<fpr> <candidate> ...\", got nothing".into()))?
            .parse()?;
        // An offer is input from the network: only as many candidates as a link keeps are
        // read, so one offer cannot grow the controller's memory or its request to tincan
        // without bound (tincan would drop the rest anyway).
        let candidates = words
            .take(crate::link::MAX_CANDIDATES)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(Offer { fpr, candidates })
    }
}

/// The most bytes of learned keys read back: [`MAX_LEARNED_KEYS`] lines and some comments.
pub const MAX_LEARNED_TEXT: usize = 256 * 1024;

/// Learned keys as text, one `<uid> <fpr>` a line, sorted by uid (the file the controller
/// keeps beside the key file).
pub fn format_learned<'a>(keys: impl Iterator<Item = (&'a Uid, &'a Fingerprint)>) -> String {
    let mut lines: Vec<String> = keys.map(|(u, f)| format!("{u} {f}\n")).collect();
    lines.sort();
    let mut text = String::from(
        "# keys learned from XMPP signalling on first use: <uid> <fingerprint>\n\
         # delete a line to accept a new key for that uid once its old link is gone\n",
    );
    text.extend(lines);
    text
}

/// Reads [`format_learned`]'s text: the keys (at most [`MAX_LEARNED_KEYS`]) and the number of
/// lines that were neither a key, a comment nor blank, or were over the limit.
pub fn parse_learned(text: &str) -> (Vec<(Uid, Fingerprint)>, usize) {
    let mut keys = Vec::new();
    let mut bad = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let parsed = match (words.next(), words.next(), words.next()) {
            (Some(u), Some(f), None) => u.parse::<Uid>().ok().zip(f.parse::<Fingerprint>().ok()),
            _ => None,
        };
        match parsed {
            Some(k) if keys.len() < MAX_LEARNED_KEYS => keys.push(k),
            _ => bad += 1,
        }
    }
    (keys, bad)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalAction {
    /// Send a message of this type to the peer over XMPP.
    Send {
        uid: Uid,
        msg_type: &'static str,
        data: Offer,
    },
    /// Create (or update) the link with what the peer signalled.
    CreateLink {
        uid: Uid,
        fpr: Fingerprint,
        candidates: Vec<Candidate>,
    },
    /// Remove the link and everything learned through it.
    TrimLink { uid: Uid },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Seen in presence, nothing sent yet (we wait for our candidates).
    Seen,
    /// We sent `con_req` at this time.
    ReqSent(Millis),
    /// The link was created from the peer's fingerprint and candidates.
    Linked,
}

#[derive(Debug, Clone)]
struct Peer {
    state: PeerState,
    fpr: Option<Fingerprint>,
    /// Last time the link was reported online, or when it was created.
    last_online: Millis,
    online: bool,
    /// Seen on XMPP and not gone since.
    present: bool,
    /// `con_req`s sent since the last answer (for the retry backoff).
    attempts: u32,
}

impl Peer {
    fn new(now: Millis) -> Peer {
        Peer {
            state: PeerState::Seen,
            fpr: None,
            last_online: now,
            online: false,
            present: true,
            attempts: 0,
        }
    }
}

/// The most peers signalling keeps state for: each may become a link in tincan, so a stranger
/// naming new uids cannot make the node create links without bound.
pub const MAX_SIGNALLED_PEERS: usize = 256;
/// The most keys learned on first use that are kept (configured keys are not counted).
pub const MAX_LEARNED_KEYS: usize = 1024;

/// What signalling refused, for the controller's `get_state` (`signal_` + the field name).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SignalCounters {
    /// Offers for a uid with a configured key (`"peers"`) that carried another key.
    pub refused_key: u64,
    /// Offers for a uid whose key was learned on first use that carried another key.
    pub refused_new_key: u64,
    /// Presence or offers from a new uid while [`MAX_SIGNALLED_PEERS`] peers are known.
    pub peers_full: u64,
    /// Offers from a new uid while [`MAX_LEARNED_KEYS`] keys are learned.
    pub learned_full: u64,
    /// `con_req` messages sent (first requests, retries, and requests sent again after the
    /// peer's request lost the collision rule).
    pub requests_sent: u64,
    /// `con_resp` messages sent (answers, and candidate updates to linked peers).
    pub responses_sent: u64,
    /// `con_req` messages received.
    pub requests_received: u64,
    /// Requests of a peer that lost the collision rule, answered by sending ours again.
    pub requests_lost_collision: u64,
    /// Offers that arrived before signalling ran, held and fed in when it started.
    pub held_early: u64,
    /// Held offers not fed in: older than [`HOLD_MAX_AGE`] when signalling started, or over
    /// the bound of [`HeldOffers`].
    pub held_dropped: u64,
}

/// Why an offer was refused: the first refusal of each kind per uid is returned by
/// [`Signalling::take_refusals`], for the caller to log once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The offer's key is not the configured one.
    ConfiguredKey {
        uid: Uid,
        pinned: Fingerprint,
        offered: Fingerprint,
    },
    /// The offer's key is not the one learned on first use.
    LearnedKey {
        uid: Uid,
        pinned: Fingerprint,
        offered: Fingerprint,
    },
    /// [`MAX_SIGNALLED_PEERS`] reached.
    PeersFull { uid: Uid },
    /// [`MAX_LEARNED_KEYS`] reached.
    LearnedFull { uid: Uid },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pin {
    Configured(Fingerprint),
    Learned(Fingerprint),
}

#[derive(Debug)]
pub struct Signalling {
    own_uid: Uid,
    own_fpr: Fingerprint,
    candidates: Vec<Candidate>,
    peers: HashMap<Uid, Peer>,
    /// The key each uid is bound to: configured, or learned from its first link.
    pins: HashMap<Uid, Pin>,
    learned_count: usize,
    /// Keys learned since the last [`Signalling::take_learned`], for the caller to persist.
    newly_learned: Vec<(Uid, Fingerprint)>,
    /// Refusals not yet taken, and the (uid, kind) pairs already reported (bounded like the
    /// pins: at most one of each kind per pinned uid, plus one for each full table).
    refusals: Vec<Refusal>,
    reported: std::collections::HashSet<(Uid, u8)>,
    /// A `con_req` without an answer is repeated after this long.
    retry: Millis,
    /// A linked peer whose link has been offline this long is trimmed and asked again.
    offline_limit: Millis,
    pub counters: SignalCounters,
}

impl Signalling {
    /// `wait_time` is the config's (seconds): the original's maintenance period.
    pub fn new(own_uid: Uid, own_fpr: Fingerprint, wait_time_secs: u64) -> Self {
        Signalling {
            own_uid,
            own_fpr,
            candidates: Vec::new(),
            peers: HashMap::new(),
            pins: HashMap::new(),
            learned_count: 0,
            newly_learned: Vec::new(),
            refusals: Vec::new(),
            reported: std::collections::HashSet::new(),
            retry: wait_time_secs.clamp(1, 60) * 1000,
            offline_limit: (wait_time_secs * 2).clamp(10, 600) * 1000,
            counters: SignalCounters::default(),
        }
    }

    /// A uid with a key in the config: no offer with another key is ever accepted for it.
    pub fn pin_configured(&mut self, uid: Uid, fpr: Fingerprint) {
        if let Some(Pin::Learned(_)) = self.pins.insert(uid, Pin::Configured(fpr)) {
            self.learned_count -= 1;
        }
    }

    /// A key learned earlier (read back from where the caller persisted it). Ignored for a
    /// uid with a configured key, or when [`MAX_LEARNED_KEYS`] are known.
    pub fn pin_learned(&mut self, uid: Uid, fpr: Fingerprint) {
        match self.pins.get(&uid) {
            Some(Pin::Configured(_)) => {}
            Some(Pin::Learned(_)) => {
                self.pins.insert(uid, Pin::Learned(fpr));
            }
            None if self.learned_count < MAX_LEARNED_KEYS => {
                self.pins.insert(uid, Pin::Learned(fpr));
                self.learned_count += 1;
            }
            None => self.counters.learned_full += 1,
        }
    }

    /// The operator's action: the key learned for `uid` is forgotten, so the next offer from
    /// it is trusted on first use again, once no link with the old key is left. A configured
    /// key stays. Returns whether a learned key was forgotten.
    pub fn forget(&mut self, uid: Uid) -> bool {
        if let Some(Pin::Learned(_)) = self.pins.get(&uid) {
            self.pins.remove(&uid);
            self.learned_count -= 1;
            self.reported.retain(|(u, _)| *u != uid);
            return true;
        }
        false
    }

    /// Every key learned on first use (for the caller to persist).
    pub fn learned(&self) -> impl Iterator<Item = (&Uid, &Fingerprint)> {
        self.pins.iter().filter_map(|(u, p)| match p {
            Pin::Learned(f) => Some((u, f)),
            Pin::Configured(_) => None,
        })
    }

    /// Keys learned since the last call.
    pub fn take_learned(&mut self) -> Vec<(Uid, Fingerprint)> {
        std::mem::take(&mut self.newly_learned)
    }

    /// Refusals not reported before (one per uid and kind; one per full table).
    pub fn take_refusals(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.refusals)
    }

    fn refuse(&mut self, r: Refusal) {
        let key = match r {
            Refusal::ConfiguredKey { uid, .. } => {
                self.counters.refused_key += 1;
                (uid, 0)
            }
            Refusal::LearnedKey { uid, .. } => {
                self.counters.refused_new_key += 1;
                (uid, 1)
            }
            Refusal::PeersFull { .. } => {
                self.counters.peers_full += 1;
                (self.own_uid, 2)
            }
            Refusal::LearnedFull { .. } => {
                self.counters.learned_full += 1;
                (self.own_uid, 3)
            }
        };
        if self.reported.insert(key) {
            self.refusals.push(r);
        }
    }

    /// Whether a new uid may get state: false (counted) once the table is full.
    fn room_for(&mut self, uid: Uid) -> bool {
        if self.peers.contains_key(&uid) || self.peers.len() < MAX_SIGNALLED_PEERS {
            return true;
        }
        self.refuse(Refusal::PeersFull { uid });
        false
    }

    /// Whether `fpr` may be `uid`'s key as far as the pins say (nothing learned here).
    fn pin_allows(&mut self, uid: Uid, fpr: Fingerprint) -> bool {
        match self.pins.get(&uid).copied() {
            Some(Pin::Configured(pinned)) if pinned != fpr => {
                self.refuse(Refusal::ConfiguredKey {
                    uid,
                    pinned,
                    offered: fpr,
                });
                false
            }
            Some(Pin::Learned(pinned)) if pinned != fpr => {
                self.refuse(Refusal::LearnedKey {
                    uid,
                    pinned,
                    offered: fpr,
                });
                false
            }
            Some(_) => true,
            None if self.learned_count >= MAX_LEARNED_KEYS => {
                self.refuse(Refusal::LearnedFull { uid });
                false
            }
            None => true,
        }
    }

    /// Trust on first use: `uid` is bound to `fpr` from now on (the caller checked there is
    /// room with [`Signalling::pin_allows`]).
    fn learn(&mut self, uid: Uid, fpr: Fingerprint) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.pins.entry(uid) {
            e.insert(Pin::Learned(fpr));
            self.learned_count += 1;
            self.newly_learned.push((uid, fpr));
        }
    }

    fn offer(&self) -> Offer {
        Offer {
            fpr: self.own_fpr,
            candidates: self.candidates.clone(),
        }
    }

    /// Sends our offer to `uid` as `msg_type`, counted.
    fn send(&mut self, uid: Uid, msg_type: &'static str, out: &mut Vec<SignalAction>) {
        match msg_type {
            "con_req" => self.counters.requests_sent += 1,
            _ => self.counters.responses_sent += 1,
        }
        out.push(SignalAction::Send {
            uid,
            msg_type,
            data: self.offer(),
        });
    }

    /// How long after the `attempts`-th request without an answer the next one goes:
    /// [`RETRY_FIRST`] doubling, at most `wait_time`.
    fn retry_after(&self, attempts: u32) -> Millis {
        let backoff = RETRY_FIRST.saturating_mul(1 << attempts.saturating_sub(1).min(16));
        backoff.min(self.retry)
    }

    pub fn peer_state(&self, uid: Uid) -> Option<PeerState> {
        self.peers.get(&uid).map(|p| p.state)
    }

    pub fn peers(&self) -> impl Iterator<Item = (&Uid, PeerState, Option<&Fingerprint>)> {
        self.peers.iter().map(|(u, p)| (u, p.state, p.fpr.as_ref()))
    }

    /// Our candidates changed (tincan learned its reflexive address, got a relay...).
    pub fn set_candidates(&mut self, candidates: Vec<Candidate>, now: Millis) -> Vec<SignalAction> {
        let mut out = Vec::new();
        if candidates == self.candidates {
            return out;
        }
        let first = self.candidates.is_empty();
        self.candidates = candidates;
        let uids: Vec<Uid> = self.peers.keys().copied().collect();
        for uid in uids {
            let state = self.peers[&uid].state;
            match state {
                PeerState::Seen if first => self.request(uid, now, &mut out),
                PeerState::Linked => self.send(uid, "con_resp", &mut out),
                _ => {}
            }
        }
        out
    }

    fn request(&mut self, uid: Uid, now: Millis, out: &mut Vec<SignalAction>) {
        if self.candidates.is_empty() {
            return;
        }
        if let Some(p) = self.peers.get_mut(&uid) {
            if !matches!(p.state, PeerState::ReqSent(_)) {
                p.attempts = 0;
            }
            p.state = PeerState::ReqSent(now);
            p.attempts = p.attempts.saturating_add(1);
        }
        self.send(uid, "con_req", out);
    }

    /// Presence from another node.
    pub fn on_available(&mut self, uid: Uid, now: Millis) -> Vec<SignalAction> {
        let mut out = Vec::new();
        if uid == self.own_uid {
            return out;
        }
        if !self.room_for(uid) {
            return out;
        }
        self.peers
            .entry(uid)
            .or_insert_with(|| Peer::new(now))
            .present = true;
        if self.peers[&uid].state == PeerState::Seen {
            self.request(uid, now, &mut out);
        }
        out
    }

    /// The node left (presence unavailable): its link is trimmed once it is down. A link that
    /// still carries traffic stays: an XMPP server that shuts down sends "unavailable" for
    /// everyone, and the data plane must not depend on it.
    pub fn on_unavailable(&mut self, uid: Uid) -> Vec<SignalAction> {
        let Some(p) = self.peers.get_mut(&uid) else {
            return Vec::new();
        };
        p.present = false;
        if p.state == PeerState::Linked && p.online {
            return Vec::new();
        }
        let linked = p.state == PeerState::Linked;
        self.peers.remove(&uid);
        if linked {
            vec![SignalAction::TrimLink { uid }]
        } else {
            Vec::new()
        }
    }

    /// A signalling message from `uid`, its data read into an [`Offer`].
    pub fn on_message(
        &mut self,
        uid: Uid,
        msg_type: &str,
        offer: &Offer,
        now: Millis,
    ) -> Vec<SignalAction> {
        let mut out = Vec::new();
        if uid == self.own_uid || !matches!(msg_type, "con_req" | "con_resp") {
            return out;
        }
        let fpr = offer.fpr;
        let candidates = offer.candidates.clone();
        if !self.room_for(uid) || !self.pin_allows(uid, fpr) {
            return out;
        }
        // Once a peer is linked with a key, an offer with another key is not that peer (any
        // XMPP account can claim any uid): ignored until the link is trimmed, whatever the
        // pins say (a forgotten key takes effect only once the old link is gone).
        if let Some(linked) = self
            .peers
            .get(&uid)
            .filter(|p| p.state == PeerState::Linked)
            .and_then(|p| p.fpr)
            .filter(|f| *f != fpr)
        {
            self.refuse(Refusal::LearnedKey {
                uid,
                pinned: linked,
                offered: fpr,
            });
            return out;
        }
        // The key is learned when a link is made with it, not before.
        let links = match (msg_type, self.peers.get(&uid).map(|p| p.state)) {
            ("con_req", Some(PeerState::ReqSent(_))) => self.own_uid < uid,
            _ => true,
        };
        if links {
            self.learn(uid, fpr);
        }
        let peer = self.peers.entry(uid).or_insert_with(|| Peer::new(now));
        match msg_type {
            "con_req" => {
                self.counters.requests_received += 1;
                let accept = match peer.state {
                    PeerState::ReqSent(_) => self.own_uid < uid,
                    PeerState::Seen | PeerState::Linked => true,
                };
                if !accept {
                    // Our request wins, but the peer asks: it did not take ours (lost, or
                    // there before it was ready). Ours again, now that it is there.
                    self.counters.requests_lost_collision += 1;
                    self.request(uid, now, &mut out);
                    return out;
                }
                peer.state = PeerState::Linked;
                peer.fpr = Some(fpr);
                peer.last_online = now;
                peer.attempts = 0;
                out.push(SignalAction::CreateLink {
                    uid,
                    fpr,
                    candidates,
                });
                if !self.candidates.is_empty() {
                    self.send(uid, "con_resp", &mut out);
                }
            }
            "con_resp" => {
                if peer.state != PeerState::Linked {
                    peer.last_online = now;
                }
                peer.state = PeerState::Linked;
                peer.fpr = Some(fpr);
                peer.attempts = 0;
                out.push(SignalAction::CreateLink {
                    uid,
                    fpr,
                    candidates,
                });
            }
            _ => {}
        }
        out
    }

    /// Link status from tincan.
    pub fn on_link_status(&mut self, uid: Uid, online: bool, now: Millis) {
        if let Some(p) = self.peers.get_mut(&uid) {
            p.online = online;
            if online {
                p.last_online = now;
            }
        }
    }

    /// Repeats unanswered requests; trims links offline too long and asks again.
    pub fn tick(&mut self, now: Millis) -> Vec<SignalAction> {
        let mut out = Vec::new();
        let uids: Vec<Uid> = self.peers.keys().copied().collect();
        for uid in uids {
            let p = self.peers[&uid].clone();
            match p.state {
                PeerState::ReqSent(t) if now.saturating_sub(t) >= self.retry_after(p.attempts) => {
                    self.request(uid, now, &mut out)
                }
                PeerState::Seen => self.request(uid, now, &mut out),
                PeerState::Linked if !p.online && !p.present => {
                    // Gone from XMPP and its link is down: it left.
                    out.push(SignalAction::TrimLink { uid });
                    self.peers.remove(&uid);
                }
                PeerState::Linked
                    if !p.online && now.saturating_sub(p.last_online) >= self.offline_limit =>
                {
                    out.push(SignalAction::TrimLink { uid });
                    if let Some(peer) = self.peers.get_mut(&uid) {
                        peer.state = PeerState::Seen;
                        peer.fpr = None;
                    }
                    self.request(uid, now, &mut out);
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
