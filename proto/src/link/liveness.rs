//! One link to a peer tincan: liveness, hellos and keepalives, as a state machine with time as
//! an argument. The caller owns the socket; this says when to send what and reports the link
//! going up or down.

use crate::id::Millis;
use crate::id::Uid;
use crate::wire::link::Hello;
use std::net::SocketAddr;

/// While the link is not up, a hello goes out this often.
pub const HELLO_INTERVAL: Millis = 1_000;
/// When nothing was sent for this long on an up link, a keepalive goes out.
pub const KEEPALIVE_INTERVAL: Millis = 1_000;
/// A link whose peer has been silent this long is down.
pub const DEAD_AFTER: Millis = 4_000;

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

    /// The counter for the next message we send.
    pub fn next_counter(&mut self, now: Millis) -> u64 {
        self.last_tx = now;
        self.tx_counter += 1;
        self.tx_counter
    }

    /// Timers: returns a state change (down) and what to send.
    pub fn poll(&mut self, now: Millis) -> (Option<LinkEvent>, LinkTimer) {
        let mut ev = None;
        if self.state == LinkState::Up {
            let silent = now.saturating_sub(self.last_rx.unwrap_or(0));
            if silent >= DEAD_AFTER {
                self.state = LinkState::Down;
                self.counters.downs += 1;
                // Forget the peer's index: a restarted peer gives a new one in its hello.
                self.remote_idx = None;
                ev = Some(LinkEvent::Down);
            }
        }
        let timer = match self.state {
            LinkState::Up => {
                if now.saturating_sub(self.last_tx) >= KEEPALIVE_INTERVAL {
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
    fn keepalive_when_idle_and_down_when_silent_then_back() {
        let mut l = LinkSession::new(Uid([2; 20]), ep(), 5);
        l.on_hello(&hello_from_peer(42, false), ep(), 0);
        l.next_counter(0);
        assert_eq!(l.poll(500).1, LinkTimer::Nothing);
        assert_eq!(l.poll(1000).1, LinkTimer::SendKeepalive);
        l.next_counter(1000);
        assert_eq!(l.on_rx(2000), None);
        assert_eq!(l.poll(5999).0, None);
        let (ev, t) = l.poll(6000);
        assert_eq!(ev, Some(LinkEvent::Down));
        assert_eq!(t, LinkTimer::SendHello);
        assert_eq!(l.remote_idx, None);
        // Data with no known index does not bring it up; the next hello does.
        assert_eq!(l.on_rx(6100), None);
        let (ev, _) = l.on_hello(&hello_from_peer(43, true), ep(), 6200);
        assert_eq!(ev, Some(LinkEvent::Up));
        assert_eq!(l.counters.ups, 2);
        assert_eq!(l.counters.downs, 1);
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
        assert_eq!(l.next_counter(1), 1);
        assert_eq!(l.next_counter(2), 2);
        assert_eq!(l.last_tx, 2);
    }
}
