//! Key confirmation: the responder sends on a new session only once the initiator has sent on
//! it, and a replayed init (seen before, or after the responder forgot the peer's last one)
//! neither moves the endpoint nor takes the link off the session in use.

use super::*;
use crate::secure::{data_receiver_idx, DATA_OVERHEAD};

/// Where an attacker replays captured inits from.
const ELSEWHERE: &str = "203.0.113.66:5900";

/// The receiver index B's next frame to A goes to: which of A's sessions B sends on.
fn b_sends_to(p: &mut Pair) -> u32 {
    data_receiver_idx(&p.seal(Dir::BtoA, b"probe").payload).unwrap()
}

/// Drops A's first sealed datagram to B at `at` or later: the keepalive that confirms.
fn lose_confirmation(at: Millis) -> Fate {
    let mut lost = false;
    Box::new(move |s| {
        let lose =
            !lost && s.at >= at && s.dir == Dir::AtoB && s.kind() == Some(MessageType::Sealed);
        lost |= lose;
        !lose
    })
}

/// Every init A sent to B, in order.
fn inits_a_sent(p: &Pair) -> Vec<Vec<u8>> {
    let init = |s: &&Sent| s.dir == Dir::AtoB && s.kind() == Some(MessageType::Init);
    p.log
        .iter()
        .filter(init)
        .map(|s| s.payload.clone())
        .collect()
}

/// Whether B answered an init whose session is not confirmed yet.
fn b_awaits_confirmation(p: &Pair) -> bool {
    let link = p.b.t.link(p.ba).unwrap();
    link.secure.as_ref().unwrap().awaits_confirmation()
}

/// A and B linked and talking at 2 s, and A's first init captured on the way; then B
/// restarts: a new table (another boot, other indices) with the same key, and its link to A
/// created again, which queues B's init at once.
fn restarted_after_a_capture() -> (Pair, Vec<u8>) {
    let mut p = Pair::new(true, LONG);
    p.run_until(2_000);
    p.frames_cross("up");
    let captured = inits_a_sent(&p).remove(0);
    let (uid, key) = (p.b.uid, p.b.key.clone());
    let mut t = LinkTable::new(22, 0x0bad_5eed, WALL);
    let cfg = LocalConfig {
        uid,
        sec: true,
        key: key.clone(),
        cipher: Default::default(),
        rekey_after: LONG,
    };
    t.configure(cfg).unwrap();
    let addr = p.b.addr;
    p.b = Node { t, uid, addr, key };
    p.ba = p.b.link_to(p.now, &p.a);
    (p, captured)
}

#[test]
fn a_responder_without_a_session_is_not_up_and_refuses_frames_until_confirmed() {
    let (mut a, mut b) = (Node::new(1, true, LONG), Node::new(2, true, LONG));
    let ba = b.link_to(0, &a);
    b.transmits();
    let ab = a.link_to(0, &b);
    let init = a.transmits().into_iter().find(is_init).unwrap();
    b.recv(0, a.addr, &init.payload);
    let resp = b.transmits();
    assert_eq!(resp.len(), 1);
    // Answered, but nothing to send on yet: not up, no event, frames refused.
    assert!(!b.up(ba) && b.events().is_empty());
    assert_eq!(b.frame(0, ba, b"early"), Err(SendError::NotUp));
    assert_eq!(b.t.counters().handshakes_completed, 0);
    // A is up on the response and may send at once.
    a.recv(2, b.addr, &resp[0].payload);
    assert!(a.up(ab));
    let frame = a.frame(2, ab, b"first").unwrap();
    // A's confirming keepalive is still queued: its first frame confirms just as well.
    assert_eq!(
        b.recv(2, a.addr, &frame.payload),
        Got::Frame(ba, b"first".to_vec())
    );
    assert!(b.up(ba));
    let up = LinkEvent::Up {
        link: ba,
        uid: a.uid,
        endpoint: a.addr,
    };
    assert_eq!(b.events(), [up]);
    assert_eq!(b.t.counters().handshakes_completed, 1);
    let back = b.frame(2, ba, b"answer").unwrap();
    assert_eq!(
        a.recv(2, b.addr, &back.payload),
        Got::Frame(ab, b"answer".to_vec())
    );
}

#[test]
fn the_initiators_keepalive_confirms_at_once_without_traffic() {
    let mut p = Pair::new(true, LONG);
    // Nothing but the handshake and one keepalive, all at time 0: both are up.
    let kinds: Vec<(Dir, Option<MessageType>, usize)> = p
        .log
        .iter()
        .map(|s| (s.dir, s.kind(), s.payload.len()))
        .collect();
    assert_eq!(
        kinds,
        [
            (Dir::AtoB, Some(MessageType::Init), crate::secure::INIT_LEN),
            (Dir::BtoA, Some(MessageType::Resp), crate::secure::RESP_LEN),
            (Dir::AtoB, Some(MessageType::Sealed), DATA_OVERHEAD),
        ]
    );
    assert!(p.a.up(p.ab) && p.b.up(p.ba));
    let up_at = |evs: &[(Millis, LinkEvent)]| evs.iter().map(|e| e.0).collect::<Vec<_>>();
    assert_eq!((up_at(&p.ev_a), up_at(&p.ev_b)), (vec![0], vec![0]));
    p.frames_cross("confirmed");
}

#[test]
fn on_a_rekey_the_responder_keeps_sending_on_the_old_session_until_confirmed() {
    let rekey = 30_000;
    let (a, b) = (Node::new(1, true, rekey), Node::new(2, true, rekey));
    let seen = b.addr;
    let mut p = Pair::build(a, b, (vec![], vec![]), seen, lose_confirmation(rekey));
    p.run_until(rekey - 1);
    p.frames_cross("before");
    let old = b_sends_to(&mut p);
    // A rekeys; its confirming keepalive is lost. A sends on the new session at once, B still
    // on the old one, and both arrive.
    p.run_until(rekey);
    assert_eq!(p.inits(Dir::AtoB, 1), [rekey]);
    assert_eq!(b_sends_to(&mut p), old, "B switched before A confirmed");
    assert!(b_awaits_confirmation(&p));
    let na = p.at_a.len();
    p.send(Dir::BtoA, b"on the old session");
    assert_eq!(p.at_a.len(), na + 1);
    // A's next datagram (a frame here) confirms: from then on B sends on the new session.
    p.send(Dir::AtoB, b"confirms");
    assert_eq!(p.at_b.last().unwrap().1, b"confirms");
    let new = b_sends_to(&mut p);
    assert_ne!(new, old);
    p.frames_cross("after");
    p.run_until(rekey + 10_000);
    p.frames_cross("later");
    assert_eq!(p.downs(), 0);
    assert_eq!(p.b.t.counters().handshakes_unconfirmed, 0);
}

#[test]
fn a_replayed_init_from_elsewhere_moves_nothing_and_counts_a_drop() {
    let mut p = Pair::new(true, LONG);
    p.run_until(2_000);
    p.frames_cross("up");
    let captured = inits_a_sent(&p).remove(0);
    let elsewhere = addr(ELSEWHERE);
    assert_eq!(p.b.recv(p.now, elsewhere, &captured), Got::Nothing);
    assert_eq!(p.b.t.counters().drop_replay, 1);
    // No answer to the replayer, the endpoint stays, traffic goes on.
    assert!(p.b.transmits().is_empty() && p.b.events().is_empty());
    assert_eq!(p.b.t.link(p.ba).unwrap().endpoint(), p.a.addr);
    p.frames_cross("after the replay");
    p.run_until(30_000);
    p.frames_cross("later");
    assert_eq!(p.downs(), 0);
    assert_eq!(p.b.t.link(p.ba).unwrap().endpoint(), p.a.addr);
}

#[test]
fn a_replayed_init_after_a_restart_does_not_take_over_while_the_link_reestablishes() {
    let (mut p, captured) = restarted_after_a_capture();
    let now = p.now;
    // Before anything else arrives, the init captured earlier is replayed from elsewhere. B
    // forgot A's init times, so it answers (to the replayer), but the session waits for a
    // confirmation that cannot come, and the link neither moves nor comes up.
    let elsewhere = addr(ELSEWHERE);
    assert_eq!(p.b.recv(now, elsewhere, &captured), Got::Nothing);
    let link = p.b.t.link(p.ba).unwrap();
    assert_eq!(link.endpoint(), p.a.addr);
    assert!(!link.is_up() && p.b.events().is_empty());
    assert_eq!(p.b.frame(now, p.ba, b"x"), Err(SendError::NotUp));
    // B's own init reaches A; the link comes back up on it, at A's real address.
    p.flush();
    assert!(p.a.up(p.ab) && p.b.up(p.ba));
    assert_eq!(p.b.t.link(p.ba).unwrap().endpoint(), p.a.addr);
    p.frames_cross("re-established");
    let answered = |s: &&Sent| s.dir == Dir::BtoA && s.to == elsewhere;
    let to_replayer: Vec<_> = p.log.iter().filter(answered).map(Sent::kind).collect();
    assert_eq!(to_replayer, [Some(MessageType::Resp)]);
    // The replay's session never confirms and is dropped, counted; the link stays up.
    for t in (now + 1_000..=now + 20_000).step_by(1_000) {
        p.run_until(t);
        p.frames_cross(&format!("at {t}"));
    }
    assert_eq!(p.b.t.counters().handshakes_unconfirmed, 1);
    assert!(!b_awaits_confirmation(&p));
    assert_eq!(p.b.t.link(p.ba).unwrap().endpoint(), p.a.addr);
    let ev = |evs: &[(Millis, LinkEvent)]| evs.iter().filter(|e| e.0 >= now).count();
    assert_eq!(
        (ev(&p.ev_a), ev(&p.ev_b)),
        (0, 1),
        "A stayed up, B came up once"
    );
}

#[test]
fn a_replayed_init_when_the_restarted_sides_own_init_is_lost_yields_to_the_real_peer() {
    let (mut p, captured) = restarted_after_a_capture();
    let now = p.now;
    // B's first init is lost; the replay arrives.
    p.b.transmits();
    p.b.recv(now, addr(ELSEWHERE), &captured);
    p.b.transmits();
    // A's old session is void at B, so A's frames go unanswered: A goes down and starts over;
    // its new init replaces the replay's session, and the link comes up where A really is.
    for t in [now, now + 1_100] {
        p.run_until(t);
        let _ = p.a.frame(t, p.ab, b"unanswered");
    }
    p.run_until(now + 10_000);
    assert!(p.a.up(p.ab) && p.b.up(p.ba));
    assert_eq!(p.b.t.link(p.ba).unwrap().endpoint(), p.a.addr);
    assert_eq!(p.b.t.counters().handshakes_unconfirmed, 1);
    p.frames_cross("back");
}

#[test]
fn a_replayed_init_after_a_trim_or_a_key_change_moves_nothing() {
    // A trimmed and re-created link forgets A's init times: the replay is answered, never
    // confirmed, and the link comes up on B's own init at A's real address.
    let mut p = Pair::new(true, LONG);
    p.run_until(2_000);
    let captured = inits_a_sent(&p).remove(0);
    let (a_uid, a_fpr, now) = (p.a.uid, p.a.fpr(), p.now);
    p.b.t.trim_link(&a_uid).unwrap();
    let ba = p.b.t.create_link(now, a_uid, Some(p.a.addr), vec![], a_fpr);
    p.ba = ba.unwrap();
    p.b.recv(now, addr(ELSEWHERE), &captured);
    assert!(!p.b.up(p.ba) && b_awaits_confirmation(&p));
    p.flush();
    p.frames_cross("re-created");
    assert_eq!(p.b.t.link(p.ba).unwrap().endpoint(), p.a.addr);
    // A's new key, pinned by B: the captured init carries the old one, pinned nowhere.
    let new_fpr = Some(StaticKey::generate().fingerprint());
    p.b.t.trim_link(&a_uid).unwrap();
    let ba =
        p.b.t
            .create_link(now, a_uid, Some(p.a.addr), vec![], new_fpr);
    p.ba = ba.unwrap();
    let unknown = p.b.t.counters().drop_unknown_key;
    p.b.recv(now, addr(ELSEWHERE), &captured);
    assert_eq!(p.b.t.counters().drop_unknown_key, unknown + 1);
    assert!(!p.b.up(p.ba) && !b_awaits_confirmation(&p));
    assert_eq!(p.b.t.link(p.ba).unwrap().endpoint(), p.a.addr);
    // B's new key: the captured init was for the old one, so its mac1 is wrong: dropped
    // before any Diffie-Hellman work.
    let key = StaticKey::generate();
    let cfg = LocalConfig {
        uid: p.b.uid,
        sec: true,
        key: Some(key),
        cipher: Default::default(),
        rekey_after: LONG,
    };
    p.b.t.configure(cfg).unwrap();
    let bad_mac1 = p.b.t.counters().drop_bad_mac1;
    p.b.recv(now, addr(ELSEWHERE), &captured);
    assert_eq!(p.b.t.counters().drop_bad_mac1, bad_mac1 + 1);
}
