//! Handshake timers (rekey, retries with backoff), liveness (keepalives, down, back up), and
//! `poll_timeout` against what `handle_timeout` does.

use super::*;
use crate::link::liveness::{ANSWER_WITHIN, IDLE_DEAD, IDLE_KEEPALIVE, REPLY_AFTER};
use crate::secure::DATA_OVERHEAD;
use crate::wire::link::DATA_HEADER_LEN;

/// Steps `n` one millisecond at a time over `from..=to`: wherever `handle_timeout` sends
/// something or reports an event, `poll_timeout` had said so (it is not later than the next
/// thing due), and after each call it points past `now`. Returns what was sent, with times.
fn step_each_ms(n: &mut Node, from: Millis, to: Millis) -> Vec<(Millis, Transmit)> {
    let mut sent = Vec::new();
    for now in from..=to {
        let due = n.t.poll_timeout().expect("a link has timers");
        n.t.handle_timeout(now);
        let (tx, ev) = (n.transmits(), n.events());
        if !tx.is_empty() || !ev.is_empty() {
            assert!(due <= now, "acted at {now}, poll_timeout said {due}");
        }
        let next = n.t.poll_timeout().unwrap();
        assert!(next > now, "poll_timeout {next} not after {now}");
        sent.extend(tx.into_iter().map(|t| (now, t)));
    }
    sent
}

#[test]
fn unanswered_handshakes_back_off_1_2_4_8_s() {
    let mut a = Node::new(1, true, LONG);
    let b = Node::new(2, true, LONG);
    a.link_to(0, &b);
    let first = a.transmits();
    assert!(first.iter().all(is_init) && first.len() == 1);
    let sent = step_each_ms(&mut a, 0, 40_000);
    assert!(sent.iter().all(|(_, t)| is_init(t) && t.to == b.addr));
    let times: Vec<Millis> = sent.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [1_000, 3_000, 7_000, 15_000, 23_000, 31_000, 39_000]);
    assert_eq!(a.t.counters().handshakes_sent, 8);
}

#[test]
fn rekey_starts_at_rekey_after_and_the_link_stays_up() {
    let rekey = 30_000;
    let mut p = Pair::new(true, rekey);
    assert_eq!(p.inits(Dir::AtoB, 0), [0]);
    p.run_until(rekey - 1);
    p.frames_cross("before");
    // Sealed on the old session, delivered after the new one is in place.
    let in_flight = p.seal(Dir::BtoA, b"in flight");
    let old_ridx = crate::secure::data_receiver_idx(&p.seal(Dir::AtoB, b"old").payload);
    assert_eq!(p.inits(Dir::AtoB, 1), [] as [Millis; 0], "rekeyed early");
    p.run_until(rekey);
    assert_eq!(p.inits(Dir::AtoB, 1), [rekey]);
    assert_eq!(p.a.t.counters().handshakes_completed, 2);
    p.offer(Dir::BtoA, in_flight);
    assert_eq!(p.at_a.last().unwrap().1, b"in flight");
    p.frames_cross("at rekey");
    let new_ridx = crate::secure::data_receiver_idx(&p.seal(Dir::AtoB, b"new").payload);
    assert_ne!(old_ridx, new_ridx, "A still sends on the old session");
    p.run_until(rekey + 5_000);
    p.frames_cross("after");
    // The responder does not rekey on its own before the initiator does again.
    assert!(p.inits(Dir::BtoA, 0).is_empty());
    p.run_until(2 * rekey);
    assert_eq!(p.inits(Dir::AtoB, 1), [rekey, 2 * rekey]);
    p.frames_cross("second rekey");
    assert_eq!(p.downs(), 0);
    assert_eq!(p.ev_a.len(), 1);
    assert_eq!(p.ev_b.len(), 1);
}

/// A's side of a link whose peer B fell silent at 100, after frames crossed both ways.
fn silent_after_100(sec: bool) -> (Pair, Node) {
    let mut p = Pair::new(sec, LONG);
    p.run_until(100);
    p.frames_cross("up");
    p.fate = Box::new(|s| s.dir == Dir::AtoB);
    let a = std::mem::replace(&mut p.a, Node::new(7, false, LONG));
    (p, a)
}

#[test]
fn an_idle_link_answers_data_within_1_s_then_keeps_alive_every_15_s_and_goes_down_after_40_s() {
    for sec in [true, false] {
        let (mut p, mut a) = silent_after_100(sec);
        let dead = 100 + IDLE_DEAD;
        let sent = step_each_ms(&mut a, 101, dead - 1);
        let keepalive_len = if sec { DATA_OVERHEAD } else { DATA_HEADER_LEN };
        // B's frame at 100 is answered 1 s later; then one keepalive per 15 s, nothing else.
        assert!(sent.iter().all(|(_, t)| t.payload.len() == keepalive_len));
        assert_eq!(
            sent.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            [
                100 + REPLY_AFTER,
                100 + REPLY_AFTER + IDLE_KEEPALIVE,
                100 + REPLY_AFTER + 2 * IDLE_KEEPALIVE
            ],
            "sec {sec}"
        );
        let down = LinkEvent::Down {
            link: p.ab,
            uid: p.b.uid,
            endpoint: p.b.addr,
        };
        assert!(a.up(p.ab));
        // Down IDLE_DEAD after the last word from B, and contact starts over.
        a.t.handle_timeout(dead);
        assert!(!a.up(p.ab));
        assert_eq!(a.events(), [down], "sec {sec}");
        let again = a.transmits();
        assert!(again.iter().all(|t| t.to == p.b.addr) && !again.is_empty());
        assert_eq!(
            a.t.encapsulate(dead, p.ab, &mut [0; 8], Csum::Done, &mut [0; 64]),
            Err(SendError::NotUp)
        );
        // B answers again: the link comes back.
        p.a = a;
        p.now = dead;
        p.fate = Box::new(|_| true);
        for t in again {
            p.offer(Dir::AtoB, t);
        }
        p.flush();
        p.run_until(dead + 2_000);
        assert!(p
            .ev_a
            .iter()
            .any(|(_, e)| matches!(e, LinkEvent::Up { .. })));
        p.frames_cross("back");
    }
}

#[test]
fn a_peer_that_leaves_our_frames_unanswered_is_down_within_3_s() {
    for sec in [true, false] {
        let (p, mut a) = silent_after_100(sec);
        // A frame every 100 ms from 1 s on, unanswered.
        let mut down_at = None;
        for now in (1_000..20_000).step_by(100) {
            a.t.handle_timeout(now);
            if a.events()
                .iter()
                .any(|e| matches!(e, LinkEvent::Down { .. }))
            {
                down_at = Some(now);
                break;
            }
            a.frame(now, p.ab, b"to a silent peer").unwrap();
        }
        // The first unanswered frame went at 1 s (A's keepalive answer to B at 1.1 s is no
        // frame); the one a second later decides.
        assert_eq!(
            down_at,
            Some(1_000 + REPLY_AFTER + ANSWER_WITHIN),
            "sec {sec}"
        );
    }
}

#[test]
fn a_new_key_starts_the_links_over_without_spinning() {
    let mut p = Pair::new(true, LONG);
    p.run_until(2_500);
    p.frames_cross("up");
    // A's controller gives it a new key: every session is void.
    let key = StaticKey::generate();
    let cfg = LocalConfig {
        uid: p.a.uid,
        sec: true,
        key: Some(key.clone()),
        cipher: Default::default(),
        rekey_after: LONG,
    };
    assert!(p.a.t.configure(cfg).unwrap().security_changed);
    p.a.key = Some(key);
    let down = LinkEvent::Down {
        link: p.ab,
        uid: p.b.uid,
        endpoint: p.b.addr,
    };
    assert_eq!(p.a.events(), [down]);
    assert!(!p.a.up(p.ab));
    assert_eq!(p.a.frame(2_500, p.ab, b"x"), Err(SendError::NotUp));
    // A starts over with handshakes on the new key, which B refuses until it pins it; A's
    // timers never ask for a time they have already handled.
    let mut a = std::mem::replace(&mut p.a, Node::new(7, false, LONG));
    let sent = step_each_ms(&mut a, 2_500, 8_000);
    let inits: Vec<Millis> = sent
        .iter()
        .filter(|(_, t)| is_init(t))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(inits, [2_500, 3_500, 5_500]);
    p.a = a;
    // Once B pins the new key, A's next retry links.
    let fpr = p.a.fpr();
    let a_uid = p.a.uid;
    p.b.t.trim_link(&a_uid).unwrap();
    p.b.t
        .create_link(8_000, a_uid, Some(p.a.addr), vec![], fpr)
        .unwrap();
    p.b.transmits();
    p.now = 8_000;
    p.run_until(9_500);
    assert!(p.a.up(p.ab));
    p.frames_cross("new key");
}

#[test]
fn a_closed_link_is_down_at_the_peer_at_once_and_a_replayed_close_does_nothing() {
    for sec in [true, false] {
        let mut p = Pair::new(sec, LONG);
        p.run_until(100);
        p.frames_cross("up");
        // A stops: its close reaches B, which drops the link now, not 40 s later.
        p.a.t.close_all(p.now);
        let close = p.a.transmits();
        assert_eq!(close.len(), 1, "sec {sec}");
        let from = p.a.addr;
        assert_eq!(p.b.recv(p.now, from, &close[0].payload), Got::Nothing);
        assert!(!p.b.up(p.ba), "sec {sec}: B still up after A closed");
        assert_eq!(
            p.b.events(),
            [LinkEvent::Down {
                link: p.ba,
                uid: p.a.uid,
                endpoint: p.a.addr
            }]
        );
        assert_eq!(p.b.t.counters().links_closed_by_peer, 1);
        // Both sides want the link again (A did not go away here): it comes back.
        p.run_until(p.now + 5_000);
        p.frames_cross("back");
        if sec {
            // The close, replayed, is refused by the replay window: the link stays up.
            assert_eq!(p.b.recv(p.now, from, &close[0].payload), Got::Nothing);
            assert!(p.b.up(p.ba));
            assert_eq!(p.b.t.counters().links_closed_by_peer, 1);
        }
    }
}
