//! One peer's link: liveness ([`LinkSession`]), its encrypted sessions ([`SecureLink`]), its
//! pinned key, the candidates it signalled and the path in use. This file decides, for one
//! link at a time, what its timers want; the table carries it out.

use super::frag::{FragBudget, FragCounters, Reassembly};
use super::liveness::{LinkEvent as LiveEvent, LinkSession, LinkTimer, HELLO_INTERVAL};
use super::path::{path_kind, probe_targets, PathKind, Route};
use crate::id::{Candidate, Fingerprint, Millis, Uid};
use crate::replay::ReplayWindow;
use crate::secure::{CipherOffer, SecureLink};
use std::net::SocketAddr;

/// A link on a relayed path tries its direct candidates this often.
pub const DIRECT_PROBE_INTERVAL: Millis = 10_000;

/// What a link's timers want done now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The link went down (peer silent).
    pub down: bool,
    /// Plaintext links: send a hello.
    pub hello: bool,
    pub keepalive: bool,
    /// Encrypted links: start a handshake (first, retry with backoff, or rekey).
    pub handshake: bool,
    /// The link is up on a relayed path and may find a direct one: probe it.
    pub direct_probe: bool,
    /// Answered inits dropped now because their session was never confirmed.
    pub unconfirmed_dropped: u64,
}

pub struct Link {
    pub live: LinkSession,
    pub secure: Option<SecureLink>,
    /// The peer's pinned static key.
    pub fpr: Option<Fingerprint>,
    /// The peer's addresses from signalling; handshakes go to all of them until one answers.
    pub candidates: Vec<Candidate>,
    /// How the current endpoint is reached.
    pub route: Route,
    /// Round trip of the last completed handshake: init to response on the side that
    /// started it, response to the confirming first message on the other.
    pub rtt_ms: Option<Millis>,
    /// When the last handshake completed, either way.
    pub last_handshake: Option<Millis>,
    /// When the link was created.
    pub created: Millis,
    pub(super) hs_sent_at: Option<Millis>,
    /// When we last answered an init (for the round trip once its session is confirmed).
    pub(super) resp_sent_at: Option<Millis>,
    pub(super) last_direct_probe: Millis,
    /// Messages from the peer in progress (link fragments).
    pub(super) frag: Reassembly,
    /// The id of our next fragmented message to the peer.
    pub(super) next_frag_id: u32,
    /// This link's underlay MTU, if not the table's.
    pub(super) link_mtu: Option<u16>,
    /// Plaintext links: the counters of the peer's messages already delivered.
    pub(super) plain_rx: PlainReplay,
}

/// A replay window over a plaintext peer's message counters, as encrypted sessions have one:
/// a datagram the underlay delivers twice is dropped the second time instead of becoming a
/// duplicate frame. (It guards against the network, not an attacker: plaintext messages are
/// not authenticated.) The window belongs to the peer's index it started with: a peer that
/// restarted, or made its link anew, gives a new index in its hello and counts from 1 again.
#[derive(Debug, Default)]
pub struct PlainReplay {
    peer_idx: Option<u32>,
    window: ReplayWindow,
    seen_any: bool,
}

/// The largest step forward a plaintext peer's message counter may take (2^20 messages, far
/// more than are ever in flight or lost in a row).
const PLAIN_MAX_JUMP: u64 = 1 << 20;

impl PlainReplay {
    /// Whether the message with `counter` from the peer (whose index is now `peer_idx`) is new;
    /// a new one is recorded.
    pub fn accept(&mut self, peer_idx: Option<u32>, counter: u64) -> bool {
        if self.peer_idx != peer_idx {
            self.peer_idx = peer_idx;
            self.window = ReplayWindow::new();
            self.seen_any = false;
        }
        // Plaintext counters are not authenticated: one spoofed far ahead would make every real
        // message look old. A jump larger than any real burst is refused (the first counter
        // after a new index is taken as it comes).
        if self.seen_any && self.window.ahead(counter) > PLAIN_MAX_JUMP {
            return false;
        }
        if !self.window.check(counter) {
            return false;
        }
        self.seen_any = true;
        self.window.accept(counter);
        true
    }
}

impl Link {
    pub fn new(
        uid: Uid,
        endpoint: SocketAddr,
        local_idx: u32,
        fpr: Option<Fingerprint>,
        sec: Option<CipherOffer>,
        candidates: Vec<Candidate>,
    ) -> Link {
        Link {
            live: LinkSession::new(uid, endpoint, local_idx),
            secure: Self::secure_for(sec, fpr),
            fpr,
            candidates,
            route: Route::Direct,
            rtt_ms: None,
            last_handshake: None,
            created: 0,
            hs_sent_at: None,
            resp_sent_at: None,
            last_direct_probe: 0,
            frag: Reassembly::new(FragBudget::default()),
            next_frag_id: 0,
            link_mtu: None,
            plain_rx: PlainReplay::default(),
        }
    }

    /// The encrypted side a link has with `sec` on (offering these ciphers) and this pinned
    /// key: none without a key.
    pub fn secure_for(sec: Option<CipherOffer>, fpr: Option<Fingerprint>) -> Option<SecureLink> {
        sec.zip(fpr)
            .map(|(offer, fpr)| SecureLink::with_offer(fpr, offer))
    }

    /// This link's fragment counters.
    pub fn frag_counters(&self) -> &FragCounters {
        &self.frag.counters
    }

    /// Bytes of the peer's messages in progress.
    pub fn frag_bytes(&self) -> usize {
        self.frag.bytes()
    }

    /// The peer's messages in progress.
    pub fn frag_in_progress(&self) -> usize {
        self.frag.in_progress()
    }

    /// This link's underlay MTU, if set apart from the table's.
    pub fn link_mtu(&self) -> Option<u16> {
        self.link_mtu
    }

    pub fn uid(&self) -> Uid {
        self.live.peer_uid
    }

    pub fn is_up(&self) -> bool {
        self.live.is_up()
    }

    pub fn endpoint(&self) -> SocketAddr {
        self.live.endpoint
    }

    pub fn path(&self) -> PathKind {
        path_kind(self.live.endpoint, self.route, &self.candidates)
    }

    /// Whether the current path goes through a relay (ours, or the peer's relay candidate).
    pub fn is_relayed(&self) -> bool {
        self.path() == PathKind::Relayed
    }

    /// Authentic traffic from the peer arrived from `from` by `route`: that is where it is now.
    pub fn moved_to(&mut self, from: SocketAddr, route: Route) {
        self.live.endpoint = from;
        self.route = route;
    }

    /// Targets for a hello or handshake now. While the link is not up: every way to the peer
    /// ([`probe_targets`]). On an up link: with `probe`, the direct candidates (a relayed link
    /// looking for its way back); otherwise, and always for a rekey (`rekey`), the endpoint by
    /// its route, where the peer is now.
    pub fn targets(&self, have_relay: bool, rekey: bool, probe: bool) -> Vec<(SocketAddr, Route)> {
        let (ep, route, up) = (self.live.endpoint, self.route, self.is_up());
        if !up {
            return probe_targets(ep, route, &self.candidates, false, have_relay);
        }
        let mut out = Vec::new();
        if rekey || !probe {
            out.push((ep, route));
        }
        if probe {
            for t in probe_targets(ep, route, &self.candidates, true, have_relay) {
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Whether the link is up on a relayed path and has a direct candidate to probe.
    fn may_probe_direct(&self) -> bool {
        let direct = |c: &Candidate| !matches!(c, Candidate::Relay(_));
        self.is_up() && self.is_relayed() && self.candidates.iter().any(direct)
    }

    /// Runs the link's timers at `now`. `sec`: links are encrypted; `rekey_after`: session
    /// lifetime before a new handshake.
    pub fn due(&mut self, now: Millis, rekey_after: Millis) -> Due {
        let (ev, timer) = self.live.poll(now);
        let mut due = Due {
            down: ev == Some(LiveEvent::Down),
            ..Due::default()
        };
        if due.down {
            // A peer that comes back may have restarted: its message ids start over.
            self.frag.clear();
        }
        match timer {
            // With "sec", retries follow the handshake's own backoff.
            LinkTimer::SendHello if self.secure.is_none() => due.hello = true,
            LinkTimer::SendKeepalive => due.keepalive = true,
            _ => {}
        }
        if let Some(sec) = self.secure.as_mut() {
            if due.down {
                sec.reset();
            }
            // Expiry first: an unconfirmed session that expires now no longer holds back a
            // handshake of ours.
            let dropped = sec.unconfirmed_dropped;
            sec.expire(now, rekey_after.saturating_mul(3));
            due.unconfirmed_dropped = sec.unconfirmed_dropped - dropped;
            due.handshake = sec.wants_handshake(now, rekey_after);
        }
        if self.may_probe_direct()
            && now.saturating_sub(self.last_direct_probe) >= DIRECT_PROBE_INTERVAL
        {
            self.last_direct_probe = now;
            due.direct_probe = true;
        }
        due
    }

    /// The latest time at which [`due`](Self::due) has something to do.
    pub fn next_due(&self, rekey_after: Millis) -> Millis {
        let l = &self.live;
        let mut next = if l.is_up() {
            l.dead_at().min(l.keepalive_at())
        } else if self.secure.is_none() {
            l.last_hello().map_or(0, |t| t + HELLO_INTERVAL)
        } else {
            Millis::MAX
        };
        if let Some(sec) = &self.secure {
            next = next.min(sec.next_handshake_at(rekey_after));
        }
        if self.may_probe_direct() {
            next = next.min(self.last_direct_probe + DIRECT_PROBE_INTERVAL);
        }
        if let Some(t) = self.frag.next_expiry() {
            next = next.min(t);
        }
        next
    }
}
