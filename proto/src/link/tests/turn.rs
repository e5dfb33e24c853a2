//! Our own TURN relay: a node that no direct path reaches links through it. The server is a
//! small simulation of a TURN server's answers (allocation with long-term credentials,
//! permissions, Send and Data indications).

use super::*;
use crate::link::{PathKind, Route};
use crate::nat::TurnServerConfig;
use std::net::IpAddr;
use turn_client_proto::stun::types::attribute::{
    ErrorCode, MessageIntegrity, Nonce, Realm, XorMappedAddress,
};
use turn_client_proto::stun::types::message::{
    IntegrityAlgorithm, LongTermCredentials, LongTermKeyCredentials, Message, MessageClass,
    MessageType as StunType, MessageWrite, MessageWriteExt, MessageWriteVec, TransactionId,
};
use turn_client_proto::stun::types::prelude::AttributeStaticType;
use turn_client_proto::types::attribute::{Data, Lifetime, XorPeerAddress, XorRelayedAddress};
use turn_client_proto::types::message::{ALLOCATE, CREATE_PERMISSION, DATA, REFRESH, SEND};

const SERVER: &str = "203.0.113.3:3478";
const RELAYED: &str = "203.0.113.3:50000";

struct FakeTurn {
    key: LongTermKeyCredentials,
    permitted: Vec<IpAddr>,
    /// The lifetime each Refresh asked for (0: delete the allocation).
    refreshes: Vec<u32>,
}

impl FakeTurn {
    fn new() -> FakeTurn {
        let creds = LongTermCredentials::new("user".into(), "pass".into());
        FakeTurn {
            key: creds.to_key("realm".into()),
            permitted: Vec::new(),
            refreshes: Vec::new(),
        }
    }

    fn sign(&self, mut reply: MessageWriteVec) -> Vec<u8> {
        let key = self.key.clone().into();
        reply
            .add_message_integrity(&key, IntegrityAlgorithm::Sha1)
            .unwrap();
        reply.finish()
    }

    /// A datagram from the client at `client`: answers to it, and datagrams it relays to
    /// peers (sent from the relayed address).
    fn on_client(&mut self, client: SocketAddr, b: &[u8]) -> (Vec<Vec<u8>>, Vec<Transmit>) {
        let msg = Message::from_bytes(b).expect("the client speaks STUN");
        let tid = msg.transaction_id();
        let authed = msg.has_attribute(MessageIntegrity::TYPE);
        let mut relay = Vec::new();
        let answer = match msg.method() {
            ALLOCATE if !authed => {
                let mut r = Message::builder_error(&msg, MessageWriteVec::new());
                r.add_attribute(&Realm::new("realm").unwrap()).unwrap();
                r.add_attribute(&Nonce::new("nonce").unwrap()).unwrap();
                let code = ErrorCode::builder(ErrorCode::UNAUTHORIZED).build().unwrap();
                r.add_attribute(&code).unwrap();
                Some(r.finish())
            }
            ALLOCATE => {
                let mut r = Message::builder_success(&msg, MessageWriteVec::new());
                let relayed = XorRelayedAddress::new(addr(RELAYED), tid);
                r.add_attribute(&relayed).unwrap();
                r.add_attribute(&XorMappedAddress::new(client, tid))
                    .unwrap();
                r.add_attribute(&Lifetime::new(600)).unwrap();
                Some(self.sign(r))
            }
            CREATE_PERMISSION => {
                let peer = msg.attribute::<XorPeerAddress>().unwrap().addr(tid);
                self.permitted.push(peer.ip());
                Some(self.sign(Message::builder_success(&msg, MessageWriteVec::new())))
            }
            REFRESH => {
                let asked = msg.attribute::<Lifetime>().map_or(600, |l| l.seconds());
                self.refreshes.push(asked);
                let mut r = Message::builder_success(&msg, MessageWriteVec::new());
                r.add_attribute(&Lifetime::new(600)).unwrap();
                Some(self.sign(r))
            }
            SEND => {
                let peer = msg.attribute::<XorPeerAddress>().unwrap().addr(tid);
                let data = msg.attribute::<Data>().unwrap().data().to_vec();
                if self.permitted.contains(&peer.ip()) {
                    relay.push(Transmit {
                        to: peer,
                        payload: data,
                    });
                }
                None
            }
            m => panic!("unexpected TURN method {m:?}"),
        };
        (answer.into_iter().collect(), relay)
    }

    /// A peer's datagram to the relayed address: the Data indication for the client, if the
    /// peer is permitted.
    fn on_peer(&self, peer: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        if !self.permitted.contains(&peer.ip()) {
            return None;
        }
        let tid = TransactionId::generate();
        let mtype = StunType::from_class_method(MessageClass::Indication, DATA);
        let mut m = Message::builder(mtype, tid, MessageWriteVec::new());
        m.add_attribute(&XorPeerAddress::new(peer, tid)).unwrap();
        m.add_attribute(&Data::new(data)).unwrap();
        Some(m.finish())
    }
}

/// A, which only its TURN server reaches from outside, and B at `b_public`, which answers
/// whatever reaches it; time moves from one `poll_timeout` to the next.
struct Relayed {
    a: Node,
    b: Node,
    turn: FakeTurn,
    b_public: SocketAddr,
    now: Millis,
    /// Datagrams that left A for B directly (lost unless `direct_open`).
    direct_from_a: Vec<(Millis, SocketAddr, bool)>,
    /// Whether A and B reach each other directly (A at its address, B at `b_public`).
    direct_open: bool,
    /// What A's link handed up.
    at_a: Vec<Got>,
    at_b: Vec<Got>,
}

impl Relayed {
    fn pump(&mut self) {
        let (server, relayed, now) = (addr(SERVER), addr(RELAYED), self.now);
        loop {
            let (ta, tb) = (self.a.t.poll_transmit(), self.b.t.poll_transmit());
            if ta.is_none() && tb.is_none() {
                return;
            }
            if let Some(t) = ta {
                if t.to == server {
                    let (answers, relay) = self.turn.on_client(self.a.addr, &t.payload);
                    for r in answers {
                        assert_eq!(self.a.recv(now, server, &r), Got::Nothing);
                    }
                    for r in relay.into_iter().filter(|r| r.to == self.b_public) {
                        let got = self.b.recv(now, relayed, &r.payload);
                        self.at_b.push(got);
                    }
                } else {
                    self.direct_from_a.push((now, t.to, is_init(&t)));
                    if self.direct_open && t.to == self.b_public {
                        let got = self.b.recv(now, self.a.addr, &t.payload);
                        self.at_b.push(got);
                    }
                }
            }
            if let Some(t) = tb {
                if t.to == relayed {
                    if let Some(ind) = self.turn.on_peer(self.b_public, &t.payload) {
                        let got = self.a.recv(now, server, &ind);
                        self.at_a.push(got);
                    }
                } else if self.direct_open && t.to == self.a.addr {
                    let got = self.a.recv(now, self.b_public, &t.payload);
                    self.at_a.push(got);
                }
            }
        }
    }

    fn run_until(&mut self, until: Millis) {
        self.pump();
        loop {
            let next = [self.a.t.poll_timeout(), self.b.t.poll_timeout()];
            match next.into_iter().flatten().min() {
                Some(t) if t <= until => self.now = self.now.max(t),
                _ => break,
            }
            let now = self.now;
            for n in [&mut self.a, &mut self.b] {
                n.run_due_timers(now);
            }
            self.pump();
        }
        self.now = until;
    }
}

/// A, which only its TURN server reaches from outside, and B at 198.51.100.2:5900, each with
/// the link to the other created at 100 ms from their signalled candidates (B knows A only by
/// its relay); returns A's link.
fn relayed_pair(rekey: Millis) -> (Relayed, LinkId) {
    let (mut a, b) = (Node::new(1, true, rekey), Node::new(2, true, rekey));
    let turn = TurnServerConfig {
        server: addr(SERVER),
        user: "user".into(),
        pass: "pass".into(),
    };
    a.t.set_nat(vec![], Some(turn));
    let b_public = addr("198.51.100.2:5900");
    let mut net = Relayed {
        a,
        b,
        turn: FakeTurn::new(),
        b_public,
        now: 0,
        direct_from_a: Vec::new(),
        direct_open: false,
        at_a: Vec::new(),
        at_b: Vec::new(),
    };
    net.run_until(100);
    let relay = Candidate::Relay(addr(RELAYED));
    let host: Candidate = "host:10.99.0.1:5900".parse().unwrap();
    let ips = [host.addr().ip()];
    assert_eq!(net.a.t.local_candidates(&ips, 5900), [host, relay]);
    let b_cands = vec![
        "host:192.168.2.2:5900".parse().unwrap(),
        Candidate::Srflx(b_public),
    ];
    let (a_uid, a_fpr, b_uid, b_fpr) = (net.a.uid, net.a.fpr(), net.b.uid, net.b.fpr());
    net.b
        .t
        .create_link(100, a_uid, None, vec![relay], a_fpr)
        .unwrap();
    let ab = net
        .a
        .t
        .create_link(100, b_uid, None, b_cands, b_fpr)
        .unwrap();
    net.run_until(100);
    (net, ab)
}

#[test]
fn under_load_both_ways_cookies_cross_the_relay_and_the_link_comes_up() {
    let (mut net, ab) = relayed_pair(LONG);
    // Both under load from the start: every init needs a cookie for the address it comes
    // from, which B sees as A's relayed address and A as B's public one (from the relay).
    net.a.t.set_handshake_load(0);
    net.b.t.set_handshake_load(0);
    net.run_until(3_000);
    assert!(
        net.a.up(ab) && net.b.up(0),
        "no link through the relay under load"
    );
    let link = net.a.t.link(ab).unwrap();
    assert_eq!(
        (link.endpoint(), link.route),
        (net.b_public, Route::ViaRelay)
    );
    let (ca, cb) = (net.a.t.counters(), net.b.t.counters());
    assert!(
        cb.cookie_replies_sent >= 1 && ca.cookie_replies_received >= 1,
        "{cb:?}"
    );
    assert_eq!((ca.drop_bad_mac2, cb.drop_bad_mac2), (0, 0));
}

#[test]
fn a_node_no_direct_path_reaches_links_through_its_relay() {
    let rekey = 25_000;
    let (mut net, ab) = relayed_pair(rekey);
    let b_public = net.b_public;
    // The handshake went to every candidate directly, and to B's public address through
    // the relay.
    let direct: Vec<SocketAddr> = net.direct_from_a.iter().map(|d| d.1).collect();
    assert!(direct.contains(&b_public) && direct.contains(&addr("192.168.2.2:5900")));
    // That first copy waited for the relay permission, which went out at once; the first
    // retry, 1 s later, links.
    net.run_until(1_099);
    assert!(!net.a.up(ab));
    net.run_until(1_100);
    let link = net.a.t.link(ab).unwrap();
    assert!(link.is_up(), "no link through the relay");
    assert_eq!((link.endpoint(), link.route), (b_public, Route::ViaRelay));
    assert_eq!(link.path(), PathKind::Relayed);
    // Frames go both ways through it: A's are queued for the TURN server.
    let now = net.now;
    let t = net.a.frame(now, ab, b"via relay").unwrap();
    assert_eq!(t.to, addr(SERVER));
    let (_, relayed) = net.turn.on_client(net.a.addr, &t.payload);
    assert_eq!(relayed[0].to, b_public);
    let got = net.b.recv(now, addr(RELAYED), &relayed[0].payload);
    assert!(matches!(got, Got::Frame(_, f) if f == b"via relay"));
    let t = net.b.frame(now, 0, b"back").unwrap();
    assert_eq!(t.to, addr(RELAYED));
    let ind = net.turn.on_peer(b_public, &t.payload).unwrap();
    assert_eq!(
        net.a.recv(now, addr(SERVER), &ind),
        Got::Frame(ab, b"back".to_vec())
    );
    // It stays up on keepalives through the relay, and rekeys through it.
    let completed = |net: &Relayed| net.a.t.counters().handshakes_completed;
    for at in [1_100 + rekey, 1_100 + 2 * rekey] {
        net.run_until(at - 1);
        let before = completed(&net);
        net.run_until(at);
        assert!(
            completed(&net) > before,
            "no rekey through the relay at {at}"
        );
    }
    net.run_until(61_100);
    assert!(net.a.up(ab) && net.b.up(0));
    // Idle, it costs about one keepalive per IDLE_KEEPALIVE, plus two messages per rekey
    // (an init and the keepalive that confirms it), not one datagram a second.
    let b_rx = net.at_b.len() as u64;
    let idle = 60_000 / crate::link::liveness::IDLE_KEEPALIVE;
    assert!(
        b_rx >= idle && b_rx <= idle + 2 * 2 + 3,
        "{b_rx} messages through the relay in 60 s"
    );
    // Meanwhile A probed B's direct candidates every 10 s, in vain.
    let probes = |net: &Relayed, from: Millis| {
        let inits = net
            .direct_from_a
            .iter()
            .filter(|(t, _, init)| *init && *t > from);
        let mut times: Vec<Millis> = inits.map(|(t, _, _)| *t).collect();
        times.dedup();
        times
    };
    assert_eq!(
        probes(&net, 1_100),
        [10_000, 20_000, 30_000, 40_000, 50_000, 60_000]
    );
    assert_eq!(net.a.t.link(ab).unwrap().route, Route::ViaRelay);
    // The direct path opens: the next probe moves the link off the relay.
    net.direct_open = true;
    net.run_until(70_000);
    let link = net.a.t.link(ab).unwrap();
    assert_eq!((link.endpoint(), link.route), (b_public, Route::Direct));
    assert_eq!(link.path(), PathKind::Reflexive);
    let t = net.a.frame(70_000, ab, b"direct").unwrap();
    assert_eq!(t.to, b_public);
    net.run_until(100_000);
    // No more probes: the only handshake since is the rekey of the direct session.
    assert_eq!(probes(&net, 70_000), [70_000 + rekey]);
    assert!(net.a.up(ab) && net.b.up(0));
}

/// A node that stops deletes its allocation (a Refresh with lifetime 0), so that it gets a
/// relay again at once when it restarts behind a NAT that keeps its port (the server refuses
/// a second allocation for the same address and port while the first lives).
#[test]
fn a_stopping_node_deletes_its_allocation() {
    let (mut net, _ab) = relayed_pair(LONG);
    net.run_until(1_000);
    assert!(net.turn.refreshes.is_empty(), "{:?}", net.turn.refreshes);
    let now = net.now;
    net.a.t.close_all(now);
    net.pump();
    assert_eq!(net.turn.refreshes, [0]);
    let host: Candidate = "host:10.99.0.1:5900".parse().unwrap();
    assert_eq!(net.a.t.local_candidates(&[host.addr().ip()], 5900), [host]);
    // Nothing more to delete: a second stop sends nothing to the server.
    net.a.t.close_all(now);
    net.pump();
    assert_eq!(net.turn.refreshes, [0]);
}
