//! Tests of the link core through its public operations, with a simulated clock and no
//! sockets: [`Node`] is one table with its address, [`Pair`] wires two of them together in
//! memory. Files: handshake acceptance and rate limits (`accept`), mac1, mac2 and cookies
//! under load (`cookie`), key confirmation and
//! replayed inits (`confirm`), session indices (`index`), handshake and liveness timers
//! (`timers`), candidates and paths (`paths`), two cores end to end (`pair`), a link through
//! our own TURN relay (`turn`), frames and ICC messages in link fragments (`frag`).

mod accept;
mod confirm;
mod cookie;
mod frag;
mod index;
mod pair;
mod paths;
mod timers;
mod turn;

use super::{Encapsulated, FRAME_HEADROOM};
use super::{LinkEvent, LinkId, LinkTable, LocalConfig, Received, SendError, Transmit};
use crate::id::{Candidate, Fingerprint, Millis, Uid};
use crate::offload::Csum;
use crate::secure::StaticKey;
use crate::wire::link::MessageType;
use std::net::SocketAddr;

/// The wall clock at `now` = 0 (inits carry it).
const WALL: u64 = 1_790_000_000_000;
/// The session lifetime of tests that do not rekey.
const LONG: Millis = 3_600_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// One node: its link table, uid, key and the address of its link socket (10.99.0.n:5900).
struct Node {
    t: LinkTable,
    uid: Uid,
    addr: SocketAddr,
    key: Option<StaticKey>,
}

/// What a datagram carried for the caller.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Frame(LinkId, Vec<u8>),
    Icc(LinkId, Vec<u8>),
    Nothing,
}

impl Node {
    /// Runs the node's timers if `poll_timeout` says they are due at `now`, and checks that
    /// the next deadline is then later than `now` (the driving loop cannot spin).
    fn run_due_timers(&mut self, now: Millis) {
        if self.t.poll_timeout().is_some_and(|t| t <= now) {
            self.t.handle_timeout(now);
            let after = self.t.poll_timeout().unwrap();
            assert!(after > now, "poll_timeout {after} after handling {now}");
        }
    }

    /// Node `n` with uid `[n; 20]`, encrypted with a fresh key if `sec`.
    fn new(n: u8, sec: bool, rekey_after: Millis) -> Node {
        Node::with(n, Uid([n; 20]), sec.then(StaticKey::generate), rekey_after)
    }

    fn with(n: u8, uid: Uid, key: Option<StaticKey>, rekey_after: Millis) -> Node {
        let mut t = LinkTable::new(n as u64, 0x5eed_0000 + n as u64, WALL);
        let cfg = LocalConfig {
            uid,
            sec: key.is_some(),
            key: key.clone(),
            cipher: Default::default(),
            rekey_after,
        };
        t.configure(cfg).unwrap();
        let addr = SocketAddr::from(([10, 99, 0, n], 5900));
        Node { t, uid, addr, key }
    }

    fn fpr(&self) -> Option<Fingerprint> {
        self.key.as_ref().map(StaticKey::fingerprint)
    }

    /// Creates the link to `peer` at its address, pinning its key.
    fn link_to(&mut self, now: Millis, peer: &Node) -> LinkId {
        self.t
            .create_link(now, peer.uid, Some(peer.addr), vec![], peer.fpr())
            .unwrap()
    }

    fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.t.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<LinkEvent> {
        std::iter::from_fn(|| self.t.poll_event()).collect()
    }

    fn recv(&mut self, now: Millis, from: SocketAddr, datagram: &[u8]) -> Got {
        self.recv_csum(now, from, datagram).0
    }

    /// Like [`recv`](Self::recv), with the checksum state of a frame.
    fn recv_csum(&mut self, now: Millis, from: SocketAddr, datagram: &[u8]) -> (Got, Csum) {
        let mut out = vec![0u8; 70_000];
        match self.t.handle_datagram(now, from, datagram, &mut out) {
            Received::Frame { link, range, csum } => (Got::Frame(link, out[range].to_vec()), csum),
            Received::Icc { link, range } => (Got::Icc(link, out[range].to_vec()), Csum::Done),
            Received::Nothing => (Got::Nothing, Csum::Done),
        }
    }

    /// Encapsulates `frame` for `link`: the datagram to send.
    fn frame(&mut self, now: Millis, link: LinkId, frame: &[u8]) -> Result<Transmit, SendError> {
        let mut d = self.datagrams(now, link, frame, Csum::Done)?;
        assert_eq!(d.len(), 1, "a small frame in one datagram");
        Ok(d.remove(0))
    }

    /// Encapsulates `frame` for `link` with `csum`: the datagrams to send (more than one for
    /// a frame in fragments), checking that they are `stride` bytes apart.
    fn datagrams(
        &mut self,
        now: Millis,
        link: LinkId,
        frame: &[u8],
        csum: Csum,
    ) -> Result<Vec<Transmit>, SendError> {
        let mut plain = vec![0u8; FRAME_HEADROOM + frame.len()];
        plain[FRAME_HEADROOM..].copy_from_slice(frame);
        let mut out = vec![0u8; 70_000];
        match self.t.encapsulate(now, link, &mut plain, csum, &mut out)? {
            Encapsulated::Send { to, len, stride } => {
                assert!(stride > 0 && stride <= len);
                let d = out[..len].chunks(stride).map(|d| Transmit {
                    to,
                    payload: d.to_vec(),
                });
                Ok(d.collect())
            }
            Encapsulated::Queued => Ok(std::iter::from_fn(|| self.t.poll_transmit()).collect()),
        }
    }

    fn up(&self, link: LinkId) -> bool {
        self.t.link(link).is_some_and(|l| l.is_up())
    }
}

fn is_init(t: &Transmit) -> bool {
    MessageType::of(&t.payload) == Some(MessageType::Init)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    AtoB,
    BtoA,
}

/// A datagram offered to the simulated network.
#[derive(Debug, Clone)]
struct Sent {
    at: Millis,
    dir: Dir,
    to: SocketAddr,
    payload: Vec<u8>,
    delivered: bool,
}

impl Sent {
    fn kind(&self) -> Option<MessageType> {
        MessageType::of(&self.payload)
    }
}

/// Decides the fate of each datagram: true delivers it.
type Fate = Box<dyn FnMut(&Sent) -> bool>;

/// Two link cores wired together: A's datagrams to B's current address reach B (from A's
/// address), B's datagrams to A reach A from `b_seen_as` (B's address, or where B's NAT maps
/// it now). Time moves from one `poll_timeout` to the next.
struct Pair {
    a: Node,
    b: Node,
    ab: LinkId,
    ba: LinkId,
    now: Millis,
    b_seen_as: SocketAddr,
    log: Vec<Sent>,
    /// Frames received by A and by B, with the time.
    at_a: Vec<(Millis, Vec<u8>)>,
    at_b: Vec<(Millis, Vec<u8>)>,
    ev_a: Vec<(Millis, LinkEvent)>,
    ev_b: Vec<(Millis, LinkEvent)>,
    fate: Fate,
}

impl Pair {
    /// A and B linked to each other, A the initiator (B's own first init is lost), connected
    /// at time 0.
    fn new(sec: bool, rekey_after: Millis) -> Pair {
        let (a, b) = (
            Node::new(1, sec, rekey_after),
            Node::new(2, sec, rekey_after),
        );
        Pair::of(a, b)
    }

    fn of(a: Node, b: Node) -> Pair {
        let seen = b.addr;
        Pair::via(a, b, vec![], seen)
    }

    /// Like [`of`](Self::of), A knowing B by its `candidates` only, and B's datagrams coming
    /// from (and reaching B at) `b_seen_as`.
    fn via(a: Node, b: Node, candidates: Vec<Candidate>, b_seen_as: SocketAddr) -> Pair {
        Pair::build(a, b, (candidates, vec![]), b_seen_as, Box::new(|_| true))
    }

    /// The general case: A knows B by `candidates` (its address if none), B knows A by
    /// `b_knows` (likewise); `fate` decides from the first datagram on.
    fn build(
        mut a: Node,
        mut b: Node,
        (candidates, b_knows): (Vec<Candidate>, Vec<Candidate>),
        b_seen_as: SocketAddr,
        fate: Fate,
    ) -> Pair {
        let endpoint = b_knows.is_empty().then_some(a.addr);
        let ba = b.t.create_link(0, a.uid, endpoint, b_knows, a.fpr());
        let ba = ba.unwrap();
        b.transmits();
        let endpoint = candidates.is_empty().then_some(b.addr);
        let ab = a.t.create_link(0, b.uid, endpoint, candidates, b.fpr());
        let ab = ab.unwrap();
        let mut p = Pair {
            a,
            b,
            ab,
            ba,
            now: 0,
            b_seen_as,
            log: Vec::new(),
            at_a: Vec::new(),
            at_b: Vec::new(),
            ev_a: Vec::new(),
            ev_b: Vec::new(),
            fate,
        };
        p.flush();
        p
    }

    /// Offers one datagram to the network, and delivers it if it reaches the other node and
    /// `fate` lets it through.
    fn offer(&mut self, dir: Dir, t: Transmit) {
        let mut s = Sent {
            at: self.now,
            dir,
            to: t.to,
            payload: t.payload,
            delivered: false,
        };
        let reaches = match dir {
            Dir::AtoB => s.to == self.b_seen_as,
            Dir::BtoA => s.to == self.a.addr,
        };
        s.delivered = reaches && (self.fate)(&s);
        if s.delivered {
            let now = self.now;
            match dir {
                Dir::AtoB => {
                    if let Got::Frame(_, f) = self.b.recv(now, self.a.addr, &s.payload) {
                        self.at_b.push((now, f));
                    }
                }
                Dir::BtoA => {
                    if let Got::Frame(_, f) = self.a.recv(now, self.b_seen_as, &s.payload) {
                        self.at_a.push((now, f));
                    }
                }
            }
        }
        self.log.push(s);
    }

    /// Delivers everything both nodes queued, until neither has anything left.
    fn flush(&mut self) {
        loop {
            let (ta, tb) = (self.a.t.poll_transmit(), self.b.t.poll_transmit());
            if ta.is_none() && tb.is_none() {
                break;
            }
            if let Some(t) = ta {
                self.offer(Dir::AtoB, t);
            }
            if let Some(t) = tb {
                self.offer(Dir::BtoA, t);
            }
        }
        let now = self.now;
        self.ev_a
            .extend(self.a.events().into_iter().map(|e| (now, e)));
        self.ev_b
            .extend(self.b.events().into_iter().map(|e| (now, e)));
    }

    /// Runs both nodes' timers up to `until`, calling `handle_timeout` exactly when
    /// `poll_timeout` says, and checks that it never asks for a time already handled.
    fn run_until(&mut self, until: Millis) {
        for _ in 0..100_000 {
            let next = [self.a.t.poll_timeout(), self.b.t.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => self.now = self.now.max(t),
                _ => {
                    self.now = until;
                    return;
                }
            }
            let now = self.now;
            for n in [&mut self.a, &mut self.b] {
                n.run_due_timers(now);
            }
            self.flush();
        }
        panic!("timers do not advance");
    }

    /// Sends a frame in `dir` now; returns the datagram (already offered to the network).
    fn send(&mut self, dir: Dir, frame: &[u8]) -> Transmit {
        let t = self.seal(dir, frame);
        self.offer(dir, t.clone());
        self.flush();
        t
    }

    /// Seals a frame in `dir` now without sending it.
    fn seal(&mut self, dir: Dir, frame: &[u8]) -> Transmit {
        let now = self.now;
        match dir {
            Dir::AtoB => self.a.frame(now, self.ab, frame).unwrap(),
            Dir::BtoA => self.b.frame(now, self.ba, frame).unwrap(),
        }
    }

    /// Times of the inits `dir` sent at `from` or later.
    fn inits(&self, dir: Dir, from: Millis) -> Vec<Millis> {
        self.log
            .iter()
            .filter(|s| s.dir == dir && s.at >= from && s.kind() == Some(MessageType::Init))
            .map(|s| s.at)
            .collect()
    }

    fn downs(&self) -> usize {
        let down = |e: &(Millis, LinkEvent)| matches!(e.1, LinkEvent::Down { .. });
        self.ev_a.iter().filter(|e| down(e)).count() + self.ev_b.iter().filter(|e| down(e)).count()
    }

    /// Both links are up and a frame crosses each way now.
    fn frames_cross(&mut self, tag: &str) {
        assert!(self.a.up(self.ab) && self.b.up(self.ba), "{tag}: not up");
        let (na, nb) = (self.at_a.len(), self.at_b.len());
        let (fa, fb) = (format!("{tag} a->b"), format!("{tag} b->a"));
        self.send(Dir::AtoB, fa.as_bytes());
        self.send(Dir::BtoA, fb.as_bytes());
        assert_eq!(self.at_b[nb..], [(self.now, fa.into_bytes())], "{tag}");
        assert_eq!(self.at_a[na..], [(self.now, fb.into_bytes())], "{tag}");
    }
}
