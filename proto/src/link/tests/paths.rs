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
