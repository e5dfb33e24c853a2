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

use crate::id::{Candidate, Fingerprint, IdError, Millis, Uid};
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

#[derive(Debug)]
pub struct Signalling {
    own_uid: Uid,
    own_fpr: Fingerprint,
    candidates: Vec<Candidate>,
    peers: HashMap<Uid, Peer>,
    /// A `con_req` without an answer is repeated after this long.
    retry: Millis,
    /// A linked peer whose link has been offline this long is trimmed and asked again.
    offline_limit: Millis,
    /// Offers for a linked peer that carried another key.
    pub refused_offers: u64,
}

impl Signalling {
    /// `wait_time` is the config's (seconds): the original's maintenance period.
    pub fn new(own_uid: Uid, own_fpr: Fingerprint, wait_time_secs: u64) -> Self {
        Signalling {
            own_uid,
            own_fpr,
            candidates: Vec::new(),
            peers: HashMap::new(),
            retry: wait_time_secs.clamp(1, 60) * 1000,
            offline_limit: (wait_time_secs * 2).clamp(10, 600) * 1000,
            refused_offers: 0,
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
        if uid == self.own_uid {
            return out;
        }
        let fpr = offer.fpr;
        let candidates = offer.candidates.clone();
        let peer = self.peers.entry(uid).or_insert(Peer {
            state: PeerState::Seen,
            fpr: None,
            last_online: now,
            online: false,
            present: true,
        });
        // Once a peer is linked with a key, an offer with another key is not that peer (any
        // XMPP account can claim any uid): ignored until the link is trimmed.
        if peer.state == PeerState::Linked && peer.fpr.is_some_and(|f| f != fpr) {
            self.refused_offers += 1;
            return out;
        }
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
        assert_eq!(a.refused_offers, 1);
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
