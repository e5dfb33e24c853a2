//! NAT traversal on the link socket, sans-IO: STUN binding requests to learn the node's
//! server-reflexive address (and keep its NAT mapping alive), and a TURN allocation
//! (turn-client-proto, also sans-IO) for peers that no direct path reaches. Everything shares
//! the one link socket, so the mappings the NAT made for STUN are the ones peers use. Time is
//! an argument (`now`, ms on the caller's clock); nothing here reads a clock or a socket.

use crate::id::Millis;
use log::{debug, info, warn};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use turn_client_proto::api::{TurnClientApi, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::types::attribute::XorMappedAddress;
use turn_client_proto::stun::types::message::{
    Message, MessageWrite, MessageWriteExt, MessageWriteVec, TransactionId, BINDING,
};
use turn_client_proto::stun::types::TransportType;
use turn_client_proto::stun::Instant as SansInstant;
use turn_client_proto::types::TurnCredentials;
use turn_client_proto::udp::TurnClientUdp;

/// STUN binding requests go out this often: it keeps the NAT mapping of the link socket alive
/// (UDP mappings commonly expire after 30 s) and notices when it changes.
const BINDING_INTERVAL_MS: u64 = 20_000;
const BINDING_RETRY_MS: u64 = 2_000;
const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

#[derive(Debug, Clone)]
pub struct TurnServerConfig {
    pub server: SocketAddr,
    pub user: String,
    pub pass: String,
}

/// What a datagram on the link socket was, for the NAT layer.
pub enum NatRecv {
    /// Not STUN/TURN: a link message.
    NotMine,
    /// A STUN or TURN control message, consumed.
    Handled,
    /// Data a peer sent to our relayed address, unwrapped.
    PeerData { peer: SocketAddr, data: Vec<u8> },
}

struct Turn {
    client: TurnClientUdp,
    server: SocketAddr,
    relayed: Option<SocketAddr>,
    failed_logged: bool,
}

pub struct Nat {
    stun: Vec<SocketAddr>,
    pending: HashMap<TransactionId, SocketAddr>,
    /// Mapped address per STUN server: different ports for different servers means an
    /// endpoint-dependent ("symmetric") NAT.
    mapped: HashMap<SocketAddr, SocketAddr>,
    next_binding: u64,
    /// When `poll` wants to run next (None: nothing configured).
    next_poll: Option<Millis>,
    turn: Option<Turn>,
    local: SocketAddr,
    pub stun_responses: u64,
    pub relayed_in: u64,
    pub relayed_out: u64,
}

/// Whether `b` looks like a STUN message (RFC 5389 header with the magic cookie and a length
/// that matches the datagram). Link messages never do: their bytes 2-3 are zero.
pub fn is_stun(b: &[u8]) -> bool {
    b.len() >= 20
        && b[0] & 0xc0 == 0
        && b[4..8] == STUN_MAGIC
        && 20 + u16::from_be_bytes([b[2], b[3]]) as usize == b.len()
}

/// TURN ChannelData starts with a channel number 0x4000-0x7fff.
fn is_channel_data(b: &[u8]) -> bool {
    b.len() >= 4 && (0x40..0x80).contains(&b[0])
}

impl Nat {
    pub fn new(local: SocketAddr) -> Nat {
        Nat {
            stun: Vec::new(),
            pending: HashMap::new(),
            mapped: HashMap::new(),
            next_binding: 0,
            next_poll: None,
            turn: None,
            local,
            stun_responses: 0,
            relayed_in: 0,
            relayed_out: 0,
        }
    }

    pub fn configure(&mut self, stun: Vec<SocketAddr>, turn: Option<TurnServerConfig>) {
        if !self.local.ip().is_unspecified() || self.local.port() != 0 {
            debug!("NAT on link socket {}", self.local);
        }
        self.next_poll = Some(0);
        if stun != self.stun {
            self.stun = stun;
            self.mapped.clear();
            self.next_binding = 0;
        }
        let same_turn = match (&self.turn, &turn) {
            (Some(t), Some(c)) => t.server == c.server,
            (None, None) => true,
            _ => false,
        };
        if !same_turn {
            self.turn = turn.map(|c| {
                let mut config = TurnConfig::new(TurnCredentials::new(&c.user, &c.pass));
                config.set_allocation_transport(TransportType::Udp);
                info!("TURN server {} (user {})", c.server, c.user);
                Turn {
                    client: TurnClientUdp::allocate(self.local, c.server, config),
                    server: c.server,
                    relayed: None,
                    failed_logged: false,
                }
            });
        }
    }

    /// The server-reflexive address, once a STUN server answered.
    pub fn srflx(&self) -> Option<SocketAddr> {
        self.mapped.values().next().copied()
    }

    pub fn relayed(&self) -> Option<SocketAddr> {
        self.turn.as_ref().and_then(|t| t.relayed)
    }

    pub fn turn_server(&self) -> Option<SocketAddr> {
        self.turn.as_ref().map(|t| t.server)
    }

    /// "independent" when every STUN server saw the same mapping, "dependent" when they
    /// differ (a symmetric NAT: reflexive candidates will not work, the relay will), or
    /// "unknown" with fewer than two answers.
    pub fn mapping_behaviour(&self) -> &'static str {
        let mut ports = self.mapped.values();
        match (ports.next(), ports.next()) {
            (Some(a), Some(b)) if a == b => "independent",
            (Some(_), Some(_)) => "dependent",
            _ => "unknown",
        }
    }

    /// Datagrams to send now: STUN binding requests, TURN requests and refreshes. Returns when
    /// to call again at the latest.
    pub fn poll(&mut self, now_ms: Millis, out: &mut Vec<(SocketAddr, Vec<u8>)>) -> Option<Millis> {
        if !self.stun.is_empty() && now_ms >= self.next_binding {
            self.pending.clear();
            for &server in &self.stun {
                let msg = Message::builder_request(BINDING, MessageWriteVec::new());
                let id = msg.transaction_id();
                self.pending.insert(id, server);
                out.push((server, msg.finish()));
            }
            let answered = !self.mapped.is_empty();
            self.next_binding = now_ms
                + if answered {
                    BINDING_INTERVAL_MS
                } else {
                    BINDING_RETRY_MS
                };
        }
        let mut next = (!self.stun.is_empty()).then_some(self.next_binding);
        let now = sans(now_ms);
        if let Some(t) = self.turn.as_mut() {
            // Runs the client's timers; it says when to come back only once its transmits are
            // drained (until then, "now"), so it is asked again below.
            t.client.poll(now);
            while let Some(tx) = t.client.poll_transmit(now) {
                debug!("TURN: {} bytes to {}", tx.data.len(), tx.to);
                out.push((tx.to, tx.data.to_vec()));
            }
            while let Some(ev) = t.client.poll_event() {
                match ev {
                    TurnEvent::AllocationCreated(_, addr) => {
                        info!("TURN relay allocated at {addr}");
                        t.relayed = Some(addr);
                    }
                    TurnEvent::AllocationCreateFailed(_) if !t.failed_logged => {
                        warn!(
                            "TURN allocation on {} failed (credentials? server?)",
                            t.server
                        );
                        t.failed_logged = true;
                    }
                    _ => {}
                }
            }
            if let TurnPollRet::WaitUntil(at) = t.client.poll(now) {
                let at_ms = (at.as_nanos().max(0) / 1_000_000) as Millis;
                next = Some(next.map_or(at_ms, |n| n.min(at_ms)));
            }
        }
        // Never in the past: a client that wants to run again at once runs in 1 ms.
        let next = next.map(|n| n.max(now_ms + 1));
        self.next_poll = next;
        next
    }

    /// The node stops: its TURN allocation is deleted (a Refresh with lifetime 0; the
    /// datagram to send is put in `out`). Behind a NAT that keeps the link socket's port, a
    /// restarted node asks from the same address and port, and the server refuses a second
    /// allocation for it (437, allocation mismatch) while the old one lives (up to its
    /// 600 s lifetime): without this, a node restarted within that time has no relay.
    pub fn release(&mut self, now_ms: Millis, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let now = sans(now_ms);
        let Some(t) = self.turn.as_mut() else {
            return;
        };
        if t.relayed.take().is_some() && t.client.delete(now).is_ok() {
            while let Some(tx) = t.client.poll_transmit(now) {
                out.push((tx.to, tx.data.to_vec()));
            }
        }
    }

    /// When [`poll`](Self::poll) has something to do at the latest.
    pub fn next_poll(&self) -> Option<Millis> {
        self.next_poll
    }

    /// The TURN client has something to send (an answer to the server, a permission
    /// request): [`poll`](Self::poll) is due now.
    fn wake(&mut self, now: Millis) {
        self.next_poll = Some(self.next_poll.map_or(now, |n| n.min(now)));
    }

    /// Lets the TURN server relay datagrams from `peer` (by IP) to us.
    pub fn permit(&mut self, peer: IpAddr, now_ms: Millis) {
        let now = sans(now_ms);
        if let Some(t) = self.turn.as_mut() {
            if t.relayed.is_some() && !t.client.have_permission(TransportType::Udp, peer) {
                let _ = t.client.create_permission(TransportType::Udp, peer, now);
                self.wake(now_ms);
            }
        }
    }

    /// Wraps `data` for `peer` through our TURN allocation: returns what to send to the TURN
    /// server.
    pub fn relay_to(
        &mut self,
        peer: SocketAddr,
        data: &[u8],
        now_ms: Millis,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        let now = sans(now_ms);
        let t = self.turn.as_mut()?;
        if !t.client.have_permission(TransportType::Udp, peer.ip()) {
            let _ = t
                .client
                .create_permission(TransportType::Udp, peer.ip(), now);
            self.wake(now_ms);
            return None;
        }
        match t.client.send_to(TransportType::Udp, peer, data, now) {
            Ok(Some(build)) => {
                self.relayed_out += 1;
                Some((t.server, build.build().data))
            }
            _ => None,
        }
    }

    /// Offers a datagram from `from` to the NAT layer.
    pub fn on_datagram(&mut self, b: &[u8], from: SocketAddr, now: Millis) -> NatRecv {
        let from_turn = self.turn.as_ref().is_some_and(|t| t.server == from);
        if !(is_stun(b) || from_turn && is_channel_data(b)) {
            return NatRecv::NotMine;
        }
        if let Ok(msg) = Message::from_bytes(b) {
            // Only the server we asked, with a success response, may tell our address.
            let asked = self.pending.get(&msg.transaction_id()).copied();
            if let Some(server) = asked.filter(|s| *s == from && msg.is_response()) {
                self.pending.remove(&msg.transaction_id());
                if let Ok(x) = msg.attribute::<XorMappedAddress>() {
                    let addr = x.addr(msg.transaction_id());
                    self.stun_responses += 1;
                    if self.mapped.get(&server) != Some(&addr) {
                        info!("STUN {server}: this node is reachable at {addr}");
                        self.mapped.insert(server, addr);
                    }
                }
                return NatRecv::Handled;
            }
        }
        if !from_turn {
            return NatRecv::Handled;
        }
        let now_ms = now;
        let now = sans(now);
        let t = self.turn.as_mut().expect("from_turn");
        let tx = Transmit::new(b, TransportType::Udp, from, self.local);
        let ret = t.client.recv(tx, now);
        // An answer may call for the next request (the authenticated allocation after a 401,
        // a permission after the allocation): send it now, not at the next timer.
        self.wake(now_ms);
        debug!(
            "TURN: {} bytes from {from}: {}",
            b.len(),
            match &ret {
                TurnRecvRet::Handled => "handled",
                TurnRecvRet::Ignored(_) => "ignored",
                TurnRecvRet::PeerData(_) => "peer data",
                TurnRecvRet::PeerIcmp { .. } => "icmp",
            }
        );
        match ret {
            TurnRecvRet::PeerData(d) => {
                self.relayed_in += 1;
                NatRecv::PeerData {
                    peer: d.peer,
                    data: d.data().to_vec(),
                }
            }
            _ => NatRecv::Handled,
        }
    }
}

/// The TURN client's clock: the caller's milliseconds.
fn sans(now: Millis) -> SansInstant {
    SansInstant::from_nanos((now as i64).saturating_mul(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_is_told_apart_from_link_messages() {
        let msg = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
        assert!(is_stun(&msg));
        // A plaintext hello (type 1, bytes 2-3 zero, 56 bytes) is not STUN.
        let mut hello = [0u8; 56];
        hello[0] = 1;
        hello[4..8].copy_from_slice(&STUN_MAGIC);
        assert!(!is_stun(&hello));
        assert!(!is_stun(&[7u8; 40]));
    }

    #[test]
    fn a_binding_response_gives_the_reflexive_address() {
        let mut nat = Nat::new("0.0.0.0:5900".parse().unwrap());
        let server: SocketAddr = "203.0.113.10:3478".parse().unwrap();
        nat.configure(vec![server], None);
        let mut out = Vec::new();
        nat.poll(0, &mut out);
        assert_eq!(out.len(), 1);
        let req = Message::from_bytes(&out[0].1).unwrap();
        let mapped: SocketAddr = "203.0.113.101:40000".parse().unwrap();
        let mut resp = Message::builder_success(&req, MessageWriteVec::new());
        resp.add_attribute(&XorMappedAddress::new(mapped, req.transaction_id()))
            .unwrap();
        let resp = resp.finish();
        assert!(matches!(
            nat.on_datagram(&resp, server, 0),
            NatRecv::Handled
        ));
        assert_eq!(nat.srflx(), Some(mapped));
        // A response nobody asked for changes nothing.
        let mut stray = Message::builder_success(&req, MessageWriteVec::new());
        stray
            .add_attribute(&XorMappedAddress::new(
                "1.2.3.4:5".parse().unwrap(),
                req.transaction_id(),
            ))
            .unwrap();
        nat.on_datagram(&stray.finish(), server, 0);
        assert_eq!(nat.srflx(), Some(mapped));
    }
}
