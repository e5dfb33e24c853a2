//! Link signalling over XMPP (the original gvpn connection protocol),
//! as a state machine: feed it presence, messages, our own candidates and ticks; it says what
//! to send and which links to create or trim.
//!
//! Messages: `con_req` and `con_resp`, data `"<fpr> <candidate> <candidate> ..."` (the
//! original's layout: fingerprint, space, candidates), read once into an [`Offer`] where it
//! arrives. Collision rule (the modular
//! controller's, which settles what the original left to repetition): a `con_req` is accepted
//! when we have not sent one to that peer, or when our uid is the smaller; otherwise we wait
//! for the peer to accept ours. Accepting means creating the link and answering `con_resp`.
//! Links are idempotent in tincan, so a `con_resp` after a change of our candidates just
//! updates the peer's view.
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
                PeerState::Linked => out.push(SignalAction::Send {
                    uid,
                    msg_type: "con_resp",
                    data: self.offer(),
                }),
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
            p.state = PeerState::ReqSent(now);
        }
        out.push(SignalAction::Send {
            uid,
            msg_type: "con_req",
            data: self.offer(),
        });
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
        let new = !self.peers.contains_key(&uid);
        if new {
            self.peers.insert(
                uid,
                Peer {
                    state: PeerState::Seen,
                    fpr: None,
                    last_online: now,
                    online: false,
                    present: true,
                },
            );
        }
        if let Some(p) = self.peers.get_mut(&uid) {
            p.present = true;
        }
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
        let peer = self.peers.entry(uid).or_insert(Peer {
            state: PeerState::Seen,
            fpr: None,
            last_online: now,
            online: false,
            present: true,
        });
        match msg_type {
            "con_req" => {
                let accept = match peer.state {
                    PeerState::ReqSent(_) => self.own_uid < uid,
                    PeerState::Seen | PeerState::Linked => true,
                };
                if !accept {
                    return out;
                }
                peer.state = PeerState::Linked;
                peer.fpr = Some(fpr);
                peer.last_online = now;
                out.push(SignalAction::CreateLink {
                    uid,
                    fpr,
                    candidates,
                });
                if !self.candidates.is_empty() {
                    out.push(SignalAction::Send {
                        uid,
                        msg_type: "con_resp",
                        data: self.offer(),
                    });
                }
            }
            "con_resp" => {
                if peer.state != PeerState::Linked {
                    peer.last_online = now;
                }
                peer.state = PeerState::Linked;
                peer.fpr = Some(fpr);
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
                PeerState::ReqSent(t) if now.saturating_sub(t) >= self.retry => {
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
mod tests {
    use super::*;

    const A: Uid = Uid([0x11; 20]);
    const B: Uid = Uid([0x22; 20]);

    fn fpr(c: char) -> Fingerprint {
        std::iter::repeat_n(c, 64)
            .collect::<String>()
            .parse()
            .unwrap()
    }

    fn cand(text: &str) -> Candidate {
        text.parse().unwrap()
    }

    /// Node `f` ('a', 'b', ...) has key `fpr(f)` and the host candidate 10.0.0.<f as hex>.
    fn host_of(f: char) -> Candidate {
        cand(&format!("host:10.0.0.{}:5900", f.to_digit(16).unwrap()))
    }

    fn node(uid: Uid, f: char) -> Signalling {
        let mut s = Signalling::new(uid, fpr(f), 15);
        s.set_candidates(vec![host_of(f)], 0);
        s
    }

    /// The offer of key `f` with these candidates, read from its text as it arrives.
    fn offer(f: char, candidates: &str) -> Offer {
        format!("{} {candidates}", fpr(f)).parse().unwrap()
    }

    /// Delivers every Send from `from` to `to` as text, as XMPP carries it; returns the
    /// receiver's actions.
    fn deliver(
        from_uid: Uid,
        actions: &[SignalAction],
        to: &mut Signalling,
        now: Millis,
    ) -> Vec<SignalAction> {
        let mut out = Vec::new();
        for a in actions {
            if let SignalAction::Send { msg_type, data, .. } = a {
                let data: Offer = data.to_string().parse().unwrap();
                out.extend(to.on_message(from_uid, msg_type, &data, now));
            }
        }
        out
    }

    fn created(actions: &[SignalAction]) -> bool {
        actions
            .iter()
            .any(|a| matches!(a, SignalAction::CreateLink { .. }))
    }

    #[test]
    fn both_request_at_once_and_both_end_linked() {
        let (mut a, mut b) = (node(A, 'a'), node(B, 'b'));
        let ra = a.on_available(B, 0);
        let rb = b.on_available(A, 0);
        assert!(matches!(
            &ra[..],
            [SignalAction::Send {
                msg_type: "con_req",
                ..
            }]
        ));
        // A (smaller uid) accepts B's request; B ignores A's and waits.
        let at_a = deliver(B, &rb, &mut a, 1);
        let at_b = deliver(A, &ra, &mut b, 1);
        assert!(created(&at_a));
        assert!(at_b.is_empty());
        // A's con_resp makes B link too, with A's fingerprint and candidates.
        let at_b = deliver(A, &at_a, &mut b, 2);
        assert_eq!(
            at_b,
            vec![SignalAction::CreateLink {
                uid: A,
                fpr: fpr('a'),
                candidates: vec![host_of('a')]
            }]
        );
        assert_eq!(a.peer_state(B), Some(PeerState::Linked));
        assert_eq!(b.peer_state(A), Some(PeerState::Linked));
    }

    #[test]
    fn no_request_before_we_have_candidates() {
        let mut a = Signalling::new(A, fpr('a'), 15);
        assert!(a.on_available(B, 0).is_empty());
        let out = a.set_candidates(vec![cand("srflx:203.0.113.1:5900")], 5);
        assert!(matches!(
            &out[..],
            [SignalAction::Send {
                msg_type: "con_req",
                ..
            }]
        ));
    }

    #[test]
    fn new_candidates_are_sent_to_linked_peers() {
        let (mut a, mut b) = (node(A, 'a'), node(B, 'b'));
        let rb = b.on_available(A, 0);
        deliver(B, &rb, &mut a, 0);
        let out = a.set_candidates(vec![cand("relay:203.0.113.10:50000")], 10);
        assert!(
            matches!(&out[..], [SignalAction::Send { msg_type: "con_resp", data, .. }] if data.to_string().contains("relay:"))
        );
    }

    #[test]
    fn unanswered_requests_repeat_and_a_leaving_peer_is_trimmed() {
        let mut a = node(A, 'a');
        a.on_available(B, 0);
        assert!(a.tick(1_000).is_empty());
        assert_eq!(a.tick(15_000).len(), 1);
        a.on_message(B, "con_resp", &offer('b', "host:1.2.3.4:5900"), 16_000);
        assert_eq!(a.on_unavailable(B), vec![SignalAction::TrimLink { uid: B }]);
        assert_eq!(a.peer_state(B), None);
    }

    #[test]
    fn an_unavailable_peer_with_a_live_link_is_kept_until_the_link_dies() {
        let mut a = node(A, 'a');
        a.on_message(B, "con_req", &offer('b', "host:1.2.3.4:5900"), 0);
        a.on_link_status(B, true, 100);
        // The XMPP server went down and said everyone left: the link stays.
        assert!(a.on_unavailable(B).is_empty());
        assert!(a.tick(5_000).is_empty());
        assert_eq!(a.peer_state(B), Some(PeerState::Linked));
        // Back on XMPP: nothing to redo.
        assert!(a.on_available(B, 6_000).is_empty());
        // Really gone: unavailable, then the link dies; trimmed at the next tick.
        a.on_unavailable(B);
        a.on_link_status(B, false, 7_000);
        assert_eq!(a.tick(7_100), vec![SignalAction::TrimLink { uid: B }]);
        assert_eq!(a.peer_state(B), None);
    }

    #[test]
    fn a_link_offline_too_long_is_trimmed_and_asked_again() {
        let mut a = node(A, 'a');
        a.on_message(B, "con_req", &offer('b', "host:1.2.3.4:5900"), 0);
        a.on_link_status(B, true, 1_000);
        a.on_link_status(B, false, 2_000);
        assert!(a.tick(20_000).is_empty());
        let out = a.tick(31_000);
        assert_eq!(out[0], SignalAction::TrimLink { uid: B });
        assert!(matches!(
            &out[1],
            SignalAction::Send {
                msg_type: "con_req",
                ..
            }
        ));
    }

    #[test]
    fn a_linked_peers_key_is_not_replaced_by_another_offer() {
        let mut a = node(A, 'a');
        a.on_message(B, "con_req", &offer('b', "host:1.2.3.4:5900"), 0);
        let out = a.on_message(B, "con_resp", &offer('e', "host:6.6.6.6:5900"), 10);
        assert!(out.is_empty());
        assert_eq!(a.counters.refused_new_key, 1);
        // The same key with new candidates is an update.
        let out = a.on_message(B, "con_resp", &offer('b', "host:1.2.3.5:5900"), 20);
        assert!(matches!(&out[..], [SignalAction::CreateLink { .. }]));
    }

    #[test]
    fn bad_offers_are_refused_where_they_arrive_and_own_uid_is_ignored() {
        for bad in [
            "not-a-fingerprint host:1.2.3.4:5",
            "",
            &format!("{} host:1.2.3.4", fpr('b')),
            &format!("{} peer:1.2.3.4:5 host:1.2.3.4:5", fpr('b')),
        ] {
            assert!(bad.parse::<Offer>().is_err(), "{bad:?}");
        }
        let mut a = node(A, 'a');
        assert!(a.on_message(A, "con_req", &offer('a', ""), 0).is_empty());
        assert!(a.on_available(A, 0).is_empty());
        assert!(a.on_message(B, "other", &offer('b', ""), 0).is_empty());
    }

    #[test]
    fn an_offer_keeps_at_most_as_many_candidates_as_a_link() {
        let many: Vec<String> = (0..10_000)
            .map(|i| format!("host:10.1.{}.{}:5900", i / 250, i % 250))
            .collect();
        let o: Offer = format!("{} {}", fpr('b'), many.join(" ")).parse().unwrap();
        assert_eq!(o.candidates.len(), crate::link::MAX_CANDIDATES);
        assert_eq!(o.candidates[0], cand("host:10.1.0.0:5900"));
    }

    fn uid_n(n: u32) -> Uid {
        let mut u = [0x33; 20];
        u[..4].copy_from_slice(&n.to_be_bytes());
        Uid(u)
    }

    #[test]
    fn a_configured_key_is_kept_whatever_signalling_says() {
        let mut a = node(A, 'a');
        a.pin_configured(B, fpr('b'));
        // Another account claims B's uid with its own key: no link, counted, reported once.
        for t in [0, 10, 20_000] {
            let out = a.on_message(B, "con_req", &offer('e', "host:6.6.6.6:5900"), t);
            assert!(out.is_empty(), "{out:?}");
            assert!(a.on_message(B, "con_resp", &offer('e', ""), t).is_empty());
        }
        assert_eq!(a.counters.refused_key, 6);
        assert_eq!(
            a.take_refusals(),
            vec![Refusal::ConfiguredKey {
                uid: B,
                pinned: fpr('b'),
                offered: fpr('e')
            }]
        );
        assert!(a.take_refusals().is_empty());
        // The real B links, and its key is not "learned": it is configured.
        let out = a.on_message(B, "con_req", &offer('b', "host:1.2.3.4:5900"), 30_000);
        assert!(created(&out));
        assert!(a.take_learned().is_empty());
        assert_eq!(a.learned().count(), 0);
        // Forgetting does not touch a configured key.
        assert!(!a.forget(B));
        a.on_link_status(B, false, 30_000);
        a.tick(100_000);
        assert!(a
            .on_message(B, "con_resp", &offer('e', ""), 100_001)
            .is_empty());
        assert_eq!(a.counters.refused_key, 7);
    }

    #[test]
    fn a_learned_key_changes_only_after_the_operator_forgets_it_and_the_old_link_is_gone() {
        let mut a = node(A, 'a');
        assert!(created(&a.on_message(
            B,
            "con_req",
            &offer('b', "host:1.2.3.4:5900"),
            0
        )));
        assert_eq!(a.take_learned(), vec![(B, fpr('b'))]);
        a.on_link_status(B, true, 1_000);
        a.on_link_status(B, false, 2_000);
        // The link is trimmed after 30 s offline (wait_time 15): B is asked again, and a new
        // key offered by a message alone is still refused.
        let out = a.tick(40_000);
        assert_eq!(out[0], SignalAction::TrimLink { uid: B });
        assert!(a
            .on_message(B, "con_resp", &offer('e', ""), 40_001)
            .is_empty());
        assert_eq!(a.counters.refused_new_key, 1);
        assert!(matches!(
            &a.take_refusals()[..],
            [Refusal::LearnedKey { uid: B, .. }]
        ));
        // The old key relinks.
        assert!(created(&a.on_message(
            B,
            "con_resp",
            &offer('b', ""),
            40_002
        )));
        // The operator forgets the key while that link exists: still refused.
        assert!(a.forget(B));
        assert!(a
            .on_message(B, "con_resp", &offer('e', ""), 40_003)
            .is_empty());
        assert_eq!(a.counters.refused_new_key, 2);
        // Once the old link has been down long enough to be trimmed, the new key links and is
        // learned in turn.
        a.on_link_status(B, false, 40_004);
        assert!(a.tick(80_000).contains(&SignalAction::TrimLink { uid: B }));
        assert!(created(&a.on_message(
            B,
            "con_resp",
            &offer('e', ""),
            80_001
        )));
        assert_eq!(a.take_learned(), vec![(B, fpr('e'))]);
        assert!(a
            .on_message(B, "con_resp", &offer('b', ""), 80_002)
            .is_empty());
        assert_eq!(a.counters.refused_new_key, 3);
    }

    #[test]
    fn signalled_peers_and_learned_keys_are_bounded() {
        let mut a = node(A, 'a');
        for n in 0..MAX_SIGNALLED_PEERS as u32 {
            assert_eq!(a.on_available(uid_n(n), 0).len(), 1);
        }
        let stranger = uid_n(100_000);
        assert!(a.on_available(stranger, 1).is_empty());
        assert!(a
            .on_message(stranger, "con_req", &offer('e', "host:6.6.6.6:5900"), 1)
            .is_empty());
        assert_eq!(a.peer_state(stranger), None);
        assert_eq!(a.peers().count(), MAX_SIGNALLED_PEERS);
        assert_eq!(a.counters.peers_full, 2);
        assert!(matches!(
            &a.take_refusals()[..],
            [Refusal::PeersFull { .. }]
        ));
        // A known uid still links.
        assert!(created(&a.on_message(
            uid_n(7),
            "con_resp",
            &offer('b', ""),
            2
        )));
        // One leaves: there is room again.
        a.on_unavailable(uid_n(3));
        assert_eq!(a.on_available(stranger, 3).len(), 1);

        let mut b = node(B, 'b');
        for n in 0..MAX_LEARNED_KEYS as u32 {
            b.pin_learned(uid_n(n), fpr('c'));
        }
        assert_eq!(b.learned().count(), MAX_LEARNED_KEYS);
        assert!(b.on_message(A, "con_req", &offer('a', ""), 0).is_empty());
        assert_eq!(b.counters.learned_full, 1);
        assert!(matches!(
            &b.take_refusals()[..],
            [Refusal::LearnedFull { uid: A }]
        ));
        // A uid whose key is known still links; forgetting one makes room.
        assert!(created(&b.on_message(
            uid_n(5),
            "con_req",
            &offer('c', ""),
            1
        )));
        assert!(b.forget(uid_n(9)));
        assert!(created(&b.on_message(A, "con_req", &offer('a', ""), 2)));
    }

    #[test]
    fn learned_keys_read_back_from_their_text() {
        let mut a = node(A, 'a');
        a.on_message(B, "con_req", &offer('b', ""), 0);
        let text = format_learned(a.learned());
        let (keys, bad) = parse_learned(&text);
        assert_eq!((keys, bad), (vec![(B, fpr('b'))], 0));
        let (keys, bad) = parse_learned(&format!("{text}\nnot a key\n{B} {} extra\n", fpr('c')));
        assert_eq!((keys.len(), bad), (1, 2));
        let many: String = (0..MAX_LEARNED_KEYS as u32 + 3)
            .map(|n| format!("{} {}\n", uid_n(n), fpr('c')))
            .collect();
        let (keys, bad) = parse_learned(&many);
        assert_eq!((keys.len(), bad), (MAX_LEARNED_KEYS, 3));
    }

    #[test]
    fn offers_keep_the_original_text_form() {
        let text = format!(
            "{}  host:192.168.1.2:5900 srflx:203.0.113.101:5900\trelay:[fd00::1]:5900 ",
            "AB".repeat(32)
        );
        let o: Offer = text.parse().unwrap();
        assert_eq!(o.fpr.to_string(), "ab".repeat(32));
        assert_eq!(
            o.candidates,
            vec![
                cand("host:192.168.1.2:5900"),
                cand("srflx:203.0.113.101:5900"),
                cand("relay:[fd00::1]:5900")
            ]
        );
        assert_eq!(
            o.to_string(),
            format!(
                "{} host:192.168.1.2:5900 srflx:203.0.113.101:5900 relay:[fd00::1]:5900",
                "ab".repeat(32)
            )
        );
        // Without sec the key is all zeros; the offer is still one.
        let zeros: Offer = "0".repeat(64).parse().unwrap();
        assert_eq!(zeros.fpr, Fingerprint([0; 32]));
        assert!(zeros.candidates.is_empty());
    }
}
