//! Two link cores end to end: handshake, frames both ways, a rekey, a lost datagram, and the
//! peer moving to another address; encrypted and plaintext.

use super::*;
use crate::link::liveness::{HELLO_INTERVAL, IDLE_DEAD};

/// Loses the first datagram of type `kind` from B to A.
fn lose_first(kind: MessageType) -> Fate {
    let mut lost = false;
    Box::new(move |s| {
        let lose = !lost && s.dir == Dir::BtoA && s.kind() == Some(kind);
        lost |= lose;
        !lose
    })
}

fn up_at(events: &[(Millis, LinkEvent)]) -> Vec<Millis> {
    let up = events
        .iter()
        .filter(|(_, e)| matches!(e, LinkEvent::Up { .. }));
    up.map(|(t, _)| *t).collect()
}

#[test]
fn encrypted_cores_survive_a_lost_response_a_rekey_and_a_move() {
    let rekey = 20_000;
    let (a, b) = (Node::new(1, true, rekey), Node::new(2, true, rekey));
    let seen = b.addr;
    let mut p = Pair::build(a, b, (vec![], vec![]), seen, lose_first(MessageType::Resp));
    // B answered A's init at once; its response was lost, so A never confirmed the session
    // and neither side is up. A's retry 1 s later links both.
    assert_eq!((up_at(&p.ev_a), up_at(&p.ev_b)), (vec![], vec![]));
    assert!(!p.a.up(p.ab));
    p.run_until(999);
    assert!(!p.a.up(p.ab));
    p.run_until(1_000);
    assert_eq!(p.inits(Dir::AtoB, 0), [0, 1_000]);
    assert_eq!((up_at(&p.ev_a), up_at(&p.ev_b)), (vec![1_000], vec![1_000]));
    p.frames_cross("linked");
    // A rekeys rekey_after after its session began; traffic flows throughout.
    for t in (2_000..=rekey + 3_000).step_by(500) {
        p.run_until(t);
        p.frames_cross(&format!("at {t}"));
    }
    assert_eq!(p.inits(Dir::AtoB, 0), [0, 1_000, 1_000 + rekey]);
    assert_eq!(p.a.t.counters().handshakes_completed, 2);
    // B's NAT maps it to a new address: A follows B's first authentic datagram from there.
    let moved = addr("198.51.100.9:61000");
    p.b_seen_as = moved;
    p.send(Dir::BtoA, b"from the new address");
    assert_eq!(p.a.t.link(p.ab).unwrap().endpoint(), moved);
    assert_eq!(p.seal(Dir::AtoB, b"x").to, moved);
    p.frames_cross("moved");
    p.run_until(rekey + 10_000);
    p.frames_cross("later");
    assert_eq!(p.downs(), 0);
    assert_eq!(p.ev_a.len() + p.ev_b.len(), 2);
    // Nothing A sent after the move went to the old address.
    let stray = p.log.iter().filter(|s| s.dir == Dir::AtoB && s.to == seen);
    assert!(stray.filter(|s| s.at > rekey + 3_000).count() == 0);
}

#[test]
fn plaintext_cores_survive_a_lost_hello_and_a_move() {
    let (a, b) = (Node::new(1, false, LONG), Node::new(2, false, LONG));
    let seen = b.addr;
    let mut p = Pair::build(a, b, (vec![], vec![]), seen, lose_first(MessageType::Hello));
    // B's answer to A's first hello was lost; A says hello again 1 s later.
    assert_eq!((up_at(&p.ev_a), up_at(&p.ev_b)), (vec![], vec![0]));
    p.run_until(HELLO_INTERVAL - 1);
    assert!(!p.a.up(p.ab));
    p.run_until(HELLO_INTERVAL);
    assert_eq!(up_at(&p.ev_a), [HELLO_INTERVAL]);
    p.frames_cross("linked");
    for t in (1_500..=30_000).step_by(500) {
        p.run_until(t);
        p.frames_cross(&format!("at {t}"));
    }
    // An up link sends no hellos, only keepalives when idle.
    let hellos = p
        .log
        .iter()
        .filter(|s| s.kind() == Some(MessageType::Hello));
    assert!(hellos.filter(|s| s.at > HELLO_INTERVAL).count() == 0);
    // B moves. Plaintext data is not authenticated, so A does not follow it; A follows B's
    // next hello, which B sends once its side of the link is down.
    let moved = addr("198.51.100.9:61000");
    p.b_seen_as = moved;
    p.send(Dir::BtoA, b"from the new address");
    let t = p.now;
    p.run_until(t + IDLE_DEAD + HELLO_INTERVAL);
    assert_eq!(p.a.t.link(p.ab).unwrap().endpoint(), moved);
    assert_eq!(p.seal(Dir::AtoB, b"x").to, moved);
    p.frames_cross("moved");
    assert!(p
        .ev_a
        .iter()
        .all(|(_, e)| matches!(e, LinkEvent::Up { .. })));
}

#[test]
fn a_hello_is_answered_the_way_it_came() {
    for sec in [true, false] {
        let (a, b) = (Node::new(1, sec, LONG), Node::new(2, sec, LONG));
        // B knows A only by the addresses A signalled, none of which reaches A (a symmetric
        // NAT maps A's socket to 10.99.0.1:5900 for B alone); A's datagrams reach B.
        let signalled = ["host:192.168.7.1:5900", "srflx:198.51.100.1:5900"];
        let b_knows = signalled.iter().map(|c| c.parse().unwrap()).collect();
        let seen = b.addr;
        let mut p = Pair::build(a, b, (vec![], b_knows), seen, Box::new(|_| true));
        p.run_until(1);
        assert!(p.b.up(p.ba), "sec {sec}");
        assert!(p.a.up(p.ab), "sec {sec}: the answer did not go back to A");
        assert_eq!(p.b.t.link(p.ba).unwrap().endpoint(), p.a.addr);
        p.frames_cross("linked");
    }
}

#[test]
fn both_sides_initiating_at_once_link_and_rekey() {
    let rekey = 10_000;
    let (a, b) = (Node::new(1, true, rekey), Node::new(2, true, rekey));
    let seen = b.addr;
    // Everything before 1 s is lost; then both retry at the same instant.
    let lossy: Fate = Box::new(|s| s.at >= 1_000);
    let mut p = Pair::build(a, b, (vec![], vec![]), seen, lossy);
    p.run_until(1_000);
    assert_eq!(
        (p.inits(Dir::AtoB, 1), p.inits(Dir::BtoA, 1)),
        (vec![1_000], vec![1_000])
    );
    assert_eq!((up_at(&p.ev_a), up_at(&p.ev_b)), (vec![1_000], vec![1_000]));
    assert_eq!(p.a.t.counters().handshakes_completed, 2);
    for t in (1_500..=3 * rekey + 2_000).step_by(500) {
        p.run_until(t);
        p.frames_cross(&format!("at {t}"));
    }
    assert_eq!(p.downs(), 0);
    assert!(p.inits(Dir::AtoB, 1_001).contains(&(1_000 + rekey)));
}

#[test]
fn icc_messages_cross_both_ways() {
    for sec in [true, false] {
        let mut p = Pair::new(sec, LONG);
        p.run_until(10);
        let (now, a_addr, b_addr) = (p.now, p.a.addr, p.b.addr);
        p.a.t.send_icc(now, p.ab, br#"{"to":"b"}"#).unwrap();
        let t = p.a.t.poll_transmit().unwrap();
        assert_eq!(t.to, b_addr);
        let got = p.b.recv(now, a_addr, &t.payload);
        assert_eq!(got, Got::Icc(p.ba, br#"{"to":"b"}"#.to_vec()), "sec {sec}");
        p.b.t.send_icc(now, p.ba, b"{}").unwrap();
        let t = p.b.t.poll_transmit().unwrap();
        assert_eq!(
            p.a.recv(now, b_addr, &t.payload),
            Got::Icc(p.ab, b"{}".to_vec())
        );
        assert_eq!((p.a.t.counters().icc_tx, p.a.t.counters().icc_rx), (1, 1));
        let ghost = p.a.t.send_icc(now, 99, b"{}");
        assert_eq!(ghost, Err(SendError::NoLink));
    }
}

/// Roaming follows authenticated data only: a captured data datagram replayed from another
/// address, or a forged one, moves nothing; the peer's own next datagram from a new address
/// (its NAT gave it a new port) moves the endpoint at once.
#[test]
fn only_authentic_fresh_data_moves_the_endpoint() {
    let mut p = Pair::new(true, LONG);
    p.run_until(2_000);
    p.frames_cross("up");
    let home = p.b_seen_as;
    let elsewhere = addr("203.0.113.66:5900");
    // Replayed from elsewhere: refused, counted, nowhere moved.
    let captured = p.send(Dir::BtoA, b"captured");
    assert_eq!(p.a.recv(p.now, elsewhere, &captured.payload), Got::Nothing);
    assert_eq!(p.a.t.counters().drop_replay, 1);
    assert_eq!(p.a.t.link(p.ab).unwrap().endpoint(), home);
    // Forged (one byte of the sealed part changed) from elsewhere: refused, nowhere moved.
    let fresh = p.seal(Dir::BtoA, b"fresh");
    let mut forged = fresh.payload.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(p.a.recv(p.now, elsewhere, &forged), Got::Nothing);
    assert_eq!(p.a.t.counters().drop_auth, 1);
    assert_eq!(p.a.t.link(p.ab).unwrap().endpoint(), home);
    p.frames_cross("after the replay and the forgery");
    // The real datagram from the new address: delivered, and A answers there from now on.
    let moved = addr("203.0.113.101:20140");
    assert!(matches!(
        p.a.recv(p.now, moved, &fresh.payload),
        Got::Frame(_, f) if f == b"fresh"
    ));
    assert_eq!(p.a.t.link(p.ab).unwrap().endpoint(), moved);
    p.b_seen_as = moved;
    p.frames_cross("moved");
    assert_eq!(p.downs(), 0);
}
