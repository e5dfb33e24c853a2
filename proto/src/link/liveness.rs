//! One link to a peer tincan: liveness, hellos and keepalives, as a state machine with time as
//! an argument. The caller owns the socket; this says when to send what and reports the link
//! going up or down.
//!
//! Keepalives are passive, as WireGuard's are, so that an idle link costs one datagram every
//! [`IDLE_KEEPALIVE`] each way (enough to hold NAT bindings) while a peer that stops answering
//! during traffic is found within seconds:
//! - a node that received data (frames, ICC: anything but a keepalive) and sent nothing back
//!   within [`REPLY_AFTER`] sends a keepalive, so a sender hears from a live peer at least that
//!   often;
//! - a node that sent data and then, more than [`REPLY_AFTER`] later, data again, and has heard
//!   nothing for [`ANSWER_WITHIN`] after that second send, declares the link down: two answers
//!   in a row were missing while traffic flowed;
//! - a link with nothing sent for [`IDLE_KEEPALIVE`] sends a keepalive, and a link that heard
//!   nothing for [`IDLE_DEAD`] is down.

use crate::id::Millis;
use crate::id::Uid;
use crate::wire::link::Hello;
use std::net::SocketAddr;

/// While the link is not up, a hello goes out this often.
pub const HELLO_INTERVAL: Millis = 1_000;
/// When nothing was sent for this long on an up link, a keepalive goes out: NAT bindings for
/// UDP last 30 s or more (Linux conntrack: 30 s unanswered, 120 s once answered).
pub const IDLE_KEEPALIVE: Millis = 15_000;
/// Data received and nothing sent back for this long: a keepalive answers it.
pub const REPLY_AFTER: Millis = 1_000;
/// How long a peer has to answer data sent to it (its [`REPLY_AFTER`] plus the round trip).
pub const ANSWER_WITHIN: Millis = 2_000;
/// A link whose peer has been silent this long is down, traffic or not: it misses two idle
/// keepalives and then some.
pub const IDLE_DEAD: Millis = 2 * IDLE_KEEPALIVE + 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Configured, no answer yet (or answer lost after a down).
    Connecting,
    Up,
    Down,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    Up,
    Down,
}

/// What `poll` asks the caller to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTimer {
    Nothing,
    SendHello,
    SendKeepalive,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct LinkCounters {
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub icc_tx: u64,
    pub icc_rx: u64,
    pub tx_errors: u64,
    pub ups: u64,
    pub downs: u64,
    /// Frames from the peer with a source MAC it may not speak for (a host on our bridge, or
    /// one bound to another peer), dropped.
    pub refused_macs: u64,
}

#[derive(Debug)]
pub struct LinkSession {
    pub peer_uid: Uid,
    pub endpoint: SocketAddr,
    /// Our index for this link: the peer puts it in every message it sends us.
    pub local_idx: u32,
    /// The peer's index for this link, learned from its hello.
    pub remote_idx: Option<u32>,
    pub peer_boot: Option<u64>,
    pub state: LinkState,
    pub last_rx: Option<Millis>,
    pub last_tx: Millis,
    /// The first data (not a keepalive) from the peer since our last send: it wants an answer.
    unreplied_data: Option<Millis>,
    /// Our first data since the peer was last heard, and our first data at least
    /// [`REPLY_AFTER`] after that one (the send whose answer decides).
    unanswered: Option<(Millis, Option<Millis>)>,
    last_hello: Option<Millis>,
    tx_counter: u64,
    pub counters: LinkCounters,
}

impl LinkSession {
    pub fn new(peer_uid: Uid, endpoint: SocketAddr, local_idx: u32) -> Self {
        LinkSession {
            peer_uid,
            endpoint,
            local_idx,
            remote_idx: None,
            peer_boot: None,
            state: LinkState::Connecting,
            last_rx: None,
            last_tx: 0,
            unreplied_data: None,
            unanswered: None,
            last_hello: None,
            tx_counter: 0,
            counters: LinkCounters::default(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.state == LinkState::Up
    }

    /// The hello we send to this peer.
    pub fn hello(&self, local_uid: Uid, boot_id: u64) -> Hello {
        Hello {
            reply_wanted: !self.is_up(),
            sender_idx: self.local_idx,
            sender_uid: local_uid,
            receiver_uid: self.peer_uid,
            boot_id,
        }
    }

    /// A hello from this peer arrived from `from`. Returns the state change, if any, and
    /// whether to answer with our own hello.
    pub fn on_hello(
        &mut self,
        h: &Hello,
        from: SocketAddr,
        now: Millis,
    ) -> (Option<LinkEvent>, bool) {
        // The peer's address is where its hellos come from: this follows a NAT rebinding.
        self.endpoint = from;
        self.remote_idx = Some(h.sender_idx);
        self.peer_boot = Some(h.boot_id);
        let ev = self.mark_rx(now);
        (ev, h.reply_wanted)
    }

    /// An encrypted session was set up with the peer (handshake done either way): the link is
    /// up, and `remote_idx` is the peer's index of the current session.
    pub fn on_established(&mut self, remote_idx: u32, now: Millis) -> Option<LinkEvent> {
        self.remote_idx = Some(remote_idx);
        self.mark_rx(now)
    }

    /// An authentic message from the peer proves it alive; `data`: it is not a keepalive, and
    /// wants an answer within [`REPLY_AFTER`].
    pub fn on_message(&mut self, now: Millis, data: bool) -> Option<LinkEvent> {
        if data && self.unreplied_data.is_none_or(|r| r < self.last_tx) {
            self.unreplied_data = Some(now);
        }
        self.on_rx(now)
    }

    /// Any authentic message from the peer (data, ICC, keepalive) proves it alive.
    pub fn on_rx(&mut self, now: Millis) -> Option<LinkEvent> {
        if self.remote_idx.is_none() {
            // We cannot answer before its hello told us its index.
            self.last_rx = Some(now);
            return None;
        }
        self.mark_rx(now)
    }

    fn mark_rx(&mut self, now: Millis) -> Option<LinkEvent> {
        self.last_rx = Some(now);
        self.unanswered = None;
        if self.state != LinkState::Up {
            self.state = LinkState::Up;
            self.counters.ups += 1;
            return Some(LinkEvent::Up);
        }
        None
    }

    /// The sessions with the peer are void (this node's key or `"sec"` changed): the link is
    /// down until the peer answers again. Returns the state change, if any.
    pub fn restart(&mut self) -> Option<LinkEvent> {
        self.remote_idx = None;
        self.unanswered = None;
        if self.state != LinkState::Up {
            return None;
        }
        self.state = LinkState::Down;
        self.counters.downs += 1;
        Some(LinkEvent::Down)
    }

    /// A hello went out at `now`: while the link is not up, the next is due a
    /// [`HELLO_INTERVAL`] later (the first one, sent as the link is created, counts too).
    pub fn hello_sent(&mut self, now: Millis) {
        if !self.is_up() {
            self.last_hello = Some(now);
        }
    }

    /// When the last hello went out, while the link was not up.
    pub fn last_hello(&self) -> Option<Millis> {
        self.last_hello
    }

    /// A message went out to the peer at `now`; `data`: not a keepalive (an answer is due).
    pub fn sent(&mut self, now: Millis, data: bool) {
        self.last_tx = now;
        if !data {
            return;
        }
        self.unanswered = match self.unanswered {
            None => Some((now, None)),
            Some((first, None)) if now.saturating_sub(first) >= REPLY_AFTER => {
                Some((first, Some(now)))
            }
            kept => kept,
        };
    }

    /// The counter for the next message we send (plaintext links), and the send noted.
    pub fn next_counter(&mut self, now: Millis, data: bool) -> u64 {
        self.sent(now, data);
        self.tx_counter += 1;
        self.tx_counter
    }

    /// When the peer is down unless it is heard before: [`IDLE_DEAD`] after it was last
    /// heard, or sooner while it leaves our data unanswered.
    pub fn dead_at(&self) -> Millis {
        let idle = self.last_rx.unwrap_or(0) + IDLE_DEAD;
        match self.unanswered {
            Some((_, Some(second))) => idle.min(second + ANSWER_WITHIN),
            _ => idle,
        }
    }

    /// When a keepalive is due unless something else goes out first.
    pub fn keepalive_at(&self) -> Millis {
        let idle = self.last_tx + IDLE_KEEPALIVE;
        match self.unreplied_data {
            // Data came after our last send: answer it.
            Some(r) if r >= self.last_tx => idle.min(r + REPLY_AFTER),
            _ => idle,
        }
    }

    /// Timers: returns a state change (down) and what to send.
    pub fn poll(&mut self, now: Millis) -> (Option<LinkEvent>, LinkTimer) {
        let mut ev = None;
        if self.state == LinkState::Up && now >= self.dead_at() {
            self.state = LinkState::Down;
            self.counters.downs += 1;
            // Forget the peer's index: a restarted peer gives a new one in its hello.
            self.remote_idx = None;
            self.unanswered = None;
            ev = Some(LinkEvent::Down);
        }
        let timer = match self.state {
            LinkState::Up => {
                if now >= self.keepalive_at() {
                    LinkTimer::SendKeepalive
                } else {
                    LinkTimer::Nothing
                }
            }
            LinkState::Connecting | LinkState::Down => match self.last_hello {
                Some(t) if now.saturating_sub(t) < HELLO_INTERVAL => LinkTimer::Nothing,
                _ => {
                    self.last_hello = Some(now);
                    LinkTimer::SendHello
                }
            },
        };
        (ev, timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> SocketAddr {
        "10.99.0.2:5900".parse().unwrap()
    }

    fn hello_from_peer(idx: u32, reply_wanted: bool) -> Hello {
        Hello {
            reply_wanted,
            sender_idx: idx,
            sender_uid: Uid([2; 20]),
            receiver_uid: Uid([1; 20]),
            boot_id: 77,
        }
    }

    #[test]
    fn comes_up_on_hello_and_answers_when_asked() {
        let mut l = LinkSession::new(Uid([2; 20]), ep(), 5);
        assert_eq!(l.poll(0), (None, LinkTimer::SendHello));
        assert_eq!(l.poll(500), (None, LinkTimer::Nothing));
        assert_eq!(l.poll(1000), (None, LinkTimer::SendHello));
        assert!(l.hello(Uid([1; 20]), 9).reply_wanted);
        let (ev, reply) = l.on_hello(&hello_from_peer(42, true), ep(), 1100);
        assert_eq!(ev, Some(LinkEvent::Up));
        assert!(reply);
        assert_eq!(l.remote_idx, Some(42));
        assert!(!l.hello(Uid([1; 20]), 9).reply_wanted);
    }

    #[test]
    fn an_idle_link_keeps_alive_every_15_s_and_is_down_after_40_s_of_silence() {
        let mut l = LinkSession::new(Uid([2; 20]), ep(), 5);
        l.on_hello(&hello_from_peer(42, false), ep(), 0);
        l.next_counter(0, false);
        assert_eq!(l.poll(14_999).1, LinkTimer::Nothing);
        assert_eq!(l.poll(15_000).1, LinkTimer::SendKeepalive);
        l.next_counter(15_000, false);
        // The peer's keepalives keep it up; they ask for no answer.
        assert_eq!(l.on_message(16_000, false), None);
        assert_eq!(l.poll(20_000), (None, LinkTimer::Nothing));
        assert_eq!(l.poll(29_999).1, LinkTimer::Nothing);
        assert_eq!(l.keepalive_at(), 30_000);
        assert_eq!(l.poll(16_000 + IDLE_DEAD - 1).0, None);
        let (ev, t) = l.poll(16_000 + IDLE_DEAD);
        assert_eq!(ev, Some(LinkEvent::Down));
        assert_eq!(t, LinkTimer::SendHello);
        assert_eq!(l.remote_idx, None);
        // Data with no known index does not bring it up; the next hello does.
        assert_eq!(l.on_rx(60_000), None);
        let (ev, _) = l.on_hello(&hello_from_peer(43, true), ep(), 60_100);
        assert_eq!(ev, Some(LinkEvent::Up));
        assert_eq!(l.counters.ups, 2);
        assert_eq!(l.counters.downs, 1);
    }

    #[test]
    fn data_received_is_answered_within_a_second() {
        let mut l = LinkSession::new(Uid([2; 20]), ep(), 5);
        l.on_hello(&hello_from_peer(42, false), ep(), 0);
        l.next_counter(0, false);
        l.on_message(5_000, true);
        assert_eq!(l.poll(5_999).1, LinkTimer::Nothing);
        assert_eq!(l.poll(6_000).1, LinkTimer::SendKeepalive);
        l.next_counter(6_000, false);
        // Answered: nothing more until more data comes, or the idle keepalive.
        assert_eq!(l.poll(7_000).1, LinkTimer::Nothing);
        assert_eq!(l.keepalive_at(), 21_000);
        // Our own data in the meantime is the answer.
        l.on_message(8_000, true);
        l.next_counter(8_500, true);
        assert_eq!(l.poll(9_500).1, LinkTimer::Nothing);
    }

    #[test]
    fn a_peer_that_stops_answering_our_traffic_is_down_within_seconds() {
        let (mut a, mut b) = (
            LinkSession::new(Uid([2; 20]), ep(), 5),
            LinkSession::new(Uid([1; 20]), ep(), 6),
        );
        a.on_hello(&hello_from_peer(42, false), ep(), 0);
        b.on_hello(&hello_from_peer(5, false), ep(), 0);
        // A sends frames every 100 ms from 10 s on; B receives them and answers as its timers
        // say, until it dies at 12 s.
        let (mut down, mut b_answers) = (None, 0);
        for t in (10_000..30_000).step_by(100) {
            a.next_counter(t, true);
            if t < 12_000 {
                b.on_message(t, true);
                if b.poll(t).1 == LinkTimer::SendKeepalive {
                    b.next_counter(t, false);
                    b_answers += 1;
                    a.on_message(t, false);
                }
            }
            if a.poll(t).0 == Some(LinkEvent::Down) {
                down = Some(t);
                break;
            }
        }
        // B answered a second after A's first frame; A's first frame after that answer went at
        // 11.1 s, the one a second later decides.
        assert_eq!(b_answers, 1);
        assert_eq!(down, Some(11_100 + REPLY_AFTER + ANSWER_WITHIN));
    }

    #[test]
    fn one_lost_answer_to_a_lone_frame_is_not_a_down() {
        let mut l = LinkSession::new(Uid([2; 20]), ep(), 5);
        l.on_hello(&hello_from_peer(42, false), ep(), 0);
        l.next_counter(1_000, true);
        // Its keepalive answer is lost; nothing else is sent.
        for t in (1_000..20_000).step_by(100) {
            assert_eq!(l.poll(t).0, None, "down at {t}");
        }
    }

    #[test]
    fn endpoint_follows_the_peer() {
        let mut l = LinkSession::new(Uid([2; 20]), ep(), 5);
        let moved: SocketAddr = "10.99.0.9:4000".parse().unwrap();
        l.on_hello(&hello_from_peer(1, false), moved, 0);
        assert_eq!(l.endpoint, moved);
    }

    #[test]
    fn counters_increase() {
        let mut l = LinkSession::new(Uid([2; 20]), ep(), 5);
        assert_eq!(l.next_counter(1, true), 1);
        assert_eq!(l.next_counter(2, false), 2);
        assert_eq!(l.last_tx, 2);
    }
}
