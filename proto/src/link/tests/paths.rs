//! Candidates: the order handshakes probe them in, the relay as the path of last resort, and
//! the way back to a direct path.

use super::*;
use crate::link::peer::DIRECT_PROBE_INTERVAL;
use crate::link::PathKind;

fn cands() -> Vec<Candidate> {
    [
        "host:192.168.1.2:5900",
        "srflx:203.0.113.2:40000",
        "relay:203.0.113.10:49152",
    ]
    .iter()
    .map(|c| c.parse().unwrap())
    .collect()
}

/// Destinations of the inits or hellos A sent at `at`.
fn probes_at(p: &Pair, at: Millis) -> Vec<SocketAddr> {
    let probe = |s: &&Sent| matches!(s.kind(), Some(MessageType::Init | MessageType::Hello));
    let sent = p.log.iter().filter(|s| s.dir == Dir::AtoB && s.at == at);
    sent.filter(probe).map(|s| s.to).collect()
}

#[test]
fn handshakes_probe_the_endpoint_then_every_candidate_in_order() {
    let mut a = Node::new(1, true, LONG);
    let b = Node::new(2, true, LONG);
    let mut c = cands();
    // Unusable offers are dropped, duplicates too.
    c.insert(1, "host:127.0.0.1:5900".parse().unwrap());
    c.insert(2, c[0]);
    a.t.create_link(0, b.uid, None, c, b.fpr()).unwrap();
    let sent = a.transmits();
    assert!(sent.iter().all(is_init));
    assert!(sent.iter().all(|t| t.payload == sent[0].payload));
    let to: Vec<SocketAddr> = sent.iter().map(|t| t.to).collect();
    let want: Vec<SocketAddr> = cands().iter().map(|c| c.addr()).collect();
    assert_eq!(to, want);
    let link = a.t.link(0).unwrap();
    assert_eq!((link.endpoint(), link.candidates.len()), (want[0], 3));
}

#[test]
fn a_relayed_link_probes_its_direct_candidates_every_10_s_and_moves_back() {
    let relay = cands()[2].addr();
    for sec in [true, false] {
        for (answers, kind) in [
            (cands()[0], PathKind::Direct),
            (cands()[1], PathKind::Reflexive),
        ] {
            let (a, b) = (Node::new(1, sec, LONG), Node::new(2, sec, LONG));
            // Only B's relay reaches it.
            let mut p = Pair::via(a, b, cands(), relay);
            p.run_until(1);
            assert!(p.a.up(p.ab), "sec {sec}: no link through the relay");
            let link = p.a.t.link(p.ab).unwrap();
            assert_eq!((link.endpoint(), link.path()), (relay, PathKind::Relayed));
            assert!(link.is_relayed());
            assert_eq!(p.seal(Dir::AtoB, b"x").to, relay);
            // Probes of the direct candidates only, every 10 s; the link stays up meanwhile.
            let direct = vec![cands()[0].addr(), cands()[1].addr()];
            let mut t = DIRECT_PROBE_INTERVAL;
            while t <= 3 * DIRECT_PROBE_INTERVAL {
                p.run_until(t - 1);
                assert!(probes_at(&p, t - 1).is_empty());
                p.run_until(t);
                assert_eq!(probes_at(&p, t), direct, "sec {sec} at {t}");
                t += DIRECT_PROBE_INTERVAL;
            }
            assert!(p.a.up(p.ab) && p.downs() == 0);
            assert_eq!(p.a.t.link(p.ab).unwrap().path(), PathKind::Relayed);
            // The hole opens just before the next probe: B is reachable at (and answers
            // from) a direct candidate.
            p.run_until(t - 1);
            p.b_seen_as = answers.addr();
            p.run_until(t);
            assert_eq!(probes_at(&p, t), direct);
            let link = p.a.t.link(p.ab).unwrap();
            assert_eq!(link.path(), kind, "sec {sec} via {answers}");
            assert_eq!(link.endpoint(), answers.addr());
            assert_eq!(p.seal(Dir::AtoB, b"x").to, answers.addr());
            p.frames_cross("direct");
            // Back on a direct path: no more probes.
            p.run_until(t + 2 * DIRECT_PROBE_INTERVAL);
            let later = p.log.iter().filter(|s| s.dir == Dir::AtoB && s.at > t);
            assert!(
                later
                    .filter(|s| s.kind() == Some(MessageType::Init))
                    .count()
                    == 0
            );
            assert_eq!(
                p.downs(),
                0,
                "sec {sec} via {answers}: {:?} {:?}",
                p.ev_a,
                p.ev_b
            );
        }
    }
}

#[test]
fn stun_gives_the_reflexive_candidate_after_the_host_ones() {
    use turn_client_proto::stun::types::attribute::XorMappedAddress;
    use turn_client_proto::stun::types::message::{
        Message, MessageWrite, MessageWriteExt, MessageWriteVec,
    };
    let mut a = Node::new(1, true, LONG);
    let server = addr("203.0.113.50:3478");
    a.t.set_nat(vec![server], None);
    let ips = ["192.168.1.5".parse().unwrap(), "127.0.0.1".parse().unwrap()];
    let host: Candidate = "host:192.168.1.5:5900".parse().unwrap();
    assert_eq!(a.t.local_candidates(&ips, 5900), [host]);
    // A binding request at once, and again every 2 s while unanswered.
    assert_eq!(a.t.poll_timeout(), Some(0));
    a.t.handle_timeout(0);
    let req = a.transmits();
    assert_eq!((req.len(), req[0].to), (1, server));
    assert_eq!(a.t.poll_timeout(), Some(2_000));
    a.t.handle_timeout(1_999);
    assert!(a.transmits().is_empty());
    a.t.handle_timeout(2_000);
    let req = a.transmits().pop().unwrap();
    let req = Message::from_bytes(&req.payload).unwrap();
    let mapped = addr("198.51.100.20:40000");
    let mut resp = Message::builder_success(&req, MessageWriteVec::new());
    let xor = XorMappedAddress::new(mapped, req.transaction_id());
    resp.add_attribute(&xor).unwrap();
    let resp = resp.finish();
    // From anyone else it teaches nothing; from the server it is consumed, not a link message.
    assert_eq!(
        a.recv(2_010, addr("203.0.113.51:3478"), &resp),
        Got::Nothing
    );
    assert_eq!(a.t.local_candidates(&ips, 5900), [host]);
    assert_eq!(a.recv(2_010, server, &resp), Got::Nothing);
    assert_eq!(a.t.counters().drop_bad_link_message, 0);
    let srflx = Candidate::Srflx(mapped);
    assert_eq!(a.t.local_candidates(&ips, 5900), [host, srflx]);
    // Answered: the mapping is refreshed every 20 s.
    a.t.handle_timeout(4_000);
    assert!(a.transmits().len() == 1);
    assert_eq!(a.t.poll_timeout(), Some(24_000));
}

#[test]
fn a_relayed_link_rekeys_through_the_relay() {
    let relay = cands()[2].addr();
    let rekey = 15_000;
    let (a, b) = (Node::new(1, true, rekey), Node::new(2, true, rekey));
    let mut p = Pair::via(a, b, cands(), relay);
    p.run_until(1);
    assert_eq!(p.a.t.link(p.ab).unwrap().path(), PathKind::Relayed);
    p.run_until(rekey);
    // The rekey goes where the peer is now: through its relay.
    let rekeyed = p
        .log
        .iter()
        .filter(|s| s.at == rekey && s.kind() == Some(MessageType::Init));
    assert_eq!(rekeyed.map(|s| s.to).collect::<Vec<_>>(), [relay]);
    assert_eq!(p.a.t.counters().handshakes_completed, 2);
    p.run_until(3 * rekey + 1);
    assert_eq!(p.a.t.counters().handshakes_completed, 4);
    assert_eq!(p.a.t.link(p.ab).unwrap().path(), PathKind::Relayed);
    p.frames_cross("rekeyed");
    assert_eq!(p.downs(), 0);
}
