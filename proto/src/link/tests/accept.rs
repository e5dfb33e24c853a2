//! Handshake acceptance: the pinned key and the uid bound to it, and the order of the checks
//! that keep a flood from spending what real peers need.

use super::*;
use crate::secure::{SecureLink, INIT_LEN};

/// B with a link to A (A's key pinned), and A with a link to B; A's first init, not yet
/// delivered.
fn a_and_b() -> (Node, Node, Vec<u8>) {
    let (mut a, mut b) = (Node::new(1, true, LONG), Node::new(2, true, LONG));
    b.link_to(0, &a);
    b.transmits();
    a.link_to(0, &b);
    let init = a.transmits().into_iter().find(is_init).unwrap().payload;
    (a, b, init)
}

/// An init to `to` signed with `key` that claims to come from `uid`.
fn forged_init(key: &StaticKey, uid: Uid, to: &Node) -> Vec<u8> {
    let mut out = vec![0u8; INIT_LEN];
    let mut s = SecureLink::new(to.fpr().unwrap());
    let n = s
        .start_handshake(key, &uid, 0x0001_0000, WALL + 5, 0, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

/// Whether A's init, delivered to B from A's address now, brings the link up on both sides
/// (B's once A's keepalive confirms the session).
fn links(a: &mut Node, b: &mut Node, init: &[u8], now: Millis) -> bool {
    b.recv(now, a.addr, init);
    let resp = b.transmits();
    for t in &resp {
        a.recv(now, b.addr, &t.payload);
    }
    for t in a.transmits() {
        b.recv(now, a.addr, &t.payload);
    }
    let up = |evs: Vec<LinkEvent>| evs.iter().any(|e| matches!(e, LinkEvent::Up { .. }));
    let (ua, ub) = (up(a.events()), up(b.events()));
    assert_eq!(ua, ub, "one side up, the other not");
    ua
}

#[test]
fn a_pinned_key_with_its_uid_brings_the_link_up_on_both_sides() {
    let (mut a, mut b, init) = a_and_b();
    b.recv(0, a.addr, &init);
    // B answers, but is not up before A confirms the session.
    assert!(b.events().is_empty() && !b.up(0));
    let resp = b.transmits();
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].to, a.addr);
    a.recv(3, b.addr, &resp[0].payload);
    assert_eq!(
        a.events(),
        [LinkEvent::Up {
            link: 0,
            uid: b.uid,
            endpoint: b.addr
        }]
    );
    assert_eq!(a.t.link(0).unwrap().rtt_ms, Some(3));
    assert_eq!(a.t.link(0).unwrap().last_handshake, Some(3));
    assert_eq!(b.t.link(0).unwrap().last_handshake, None);
    // A confirms at once with a keepalive: B is up.
    let confirm = a.transmits();
    assert_eq!(confirm.len(), 1);
    assert_eq!(b.recv(3, a.addr, &confirm[0].payload), Got::Nothing);
    assert_eq!(b.t.link(0).unwrap().last_handshake, Some(3));
    // B's round trip: from its response (at 0) to the confirmation (at 3).
    assert_eq!(b.t.link(0).unwrap().rtt_ms, Some(3));
    assert_eq!(
        b.events(),
        [LinkEvent::Up {
            link: 0,
            uid: a.uid,
            endpoint: a.addr
        }]
    );
    // The same init again (captured and replayed) is refused: it cannot reset the session.
    assert_eq!(b.recv(5, a.addr, &init), Got::Nothing);
    assert_eq!(b.t.counters().drop_replay, 1);
    assert!(b.events().is_empty() && b.transmits().is_empty());
    assert_eq!(a.t.counters().handshakes_completed, 1);
    assert_eq!(b.t.counters().handshakes_completed, 1);
    // Data crosses both ways.
    let t = a.frame(3, 0, b"ping").unwrap();
    assert_eq!(
        b.recv(3, a.addr, &t.payload),
        Got::Frame(0, b"ping".to_vec())
    );
    let t = b.frame(3, 0, b"pong").unwrap();
    assert_eq!(
        a.recv(3, b.addr, &t.payload),
        Got::Frame(0, b"pong".to_vec())
    );
}

#[test]
fn an_unpinned_key_is_refused_and_counted() {
    let (_a, mut b, _) = a_and_b();
    let mut m = Node::new(3, true, LONG);
    m.link_to(0, &b);
    let init = m.transmits().into_iter().find(is_init).unwrap().payload;
    assert_eq!(b.recv(0, m.addr, &init), Got::Nothing);
    assert_eq!(b.t.counters().drop_unknown_key, 1);
    assert!(b.events().is_empty() && b.transmits().is_empty());
    assert!(b.t.link_of(&m.uid).is_none());
}

#[test]
fn a_pinned_key_claiming_another_uid_or_our_own_is_refused() {
    let (mut a, mut b, init) = a_and_b();
    let key = a.key.clone().unwrap();
    // A's key, but the uid of a node B has no link with, then B's own uid.
    for (n, uid) in [(1, Uid([9; 20])), (2, b.uid)] {
        let forged = forged_init(&key, uid, &b);
        assert_eq!(b.recv(0, a.addr, &forged), Got::Nothing);
        assert_eq!(b.t.counters().drop_unknown_key, n);
        assert!(b.events().is_empty() && b.transmits().is_empty());
        assert!(!b.up(0));
    }
    // No link to its own uid, either.
    let own = b.uid;
    let e = b.t.create_link(0, own, Some(a.addr), vec![], a.fpr());
    assert!(e.unwrap_err().0.contains("own uid"));
    // The refusals spent nothing A needs: its real init still links.
    assert!(links(&mut a, &mut b, &init, 0));
}

#[test]
fn short_junk_is_counted_and_spends_no_handshake_budget() {
    let (mut a, mut b, init) = a_and_b();
    let junk_from = addr("10.99.0.77:4000");
    // Far more than the global budget's burst, half of it from A's own IP.
    for i in 0..400 {
        b.recv(0, junk_from, &[5]);
        b.recv(0, junk_from, &init[..INIT_LEN - 1]);
        b.recv(0, addr("10.99.0.1:4001"), &[5]);
        b.recv(0, addr("10.99.0.1:4001"), &init[..1 + i % (INIT_LEN - 1)]);
    }
    let c = b.t.counters();
    // Two of the prefixes have the length of a version-2 init.
    assert_eq!((c.drop_bad_link_message, c.drop_old_version), (1598, 2));
    assert_eq!((c.drop_handshake_rate, c.drop_bad_mac1), (0, 0));
    assert!(b.transmits().is_empty());
    // At the same instant, A's real init still links: neither A's IP (which sent half the
    // junk) nor the global budget (which the other address's junk would have drained) was
    // spent.
    assert!(links(&mut a, &mut b, &init, 0));
    assert_eq!(b.t.counters().drop_handshake_rate, 0);
}

#[test]
fn a_flooding_source_hits_its_own_limit_before_the_global_budget() {
    let (mut a, mut b, init) = a_and_b();
    // Inits far above the load rate do not ask for cookies here (see `cookie` for that), so
    // the limits behind it are seen alone.
    b.t.set_handshake_load(1_000_000);
    // Valid-length inits (a real one, from a key B does not pin), 1000 from one address.
    let mut m = Node::new(66, true, LONG);
    m.link_to(0, &b);
    let flood = m.transmits().into_iter().find(is_init).unwrap().payload;
    for _ in 0..1000 {
        b.recv(0, m.addr, &flood);
    }
    let c = b.t.counters();
    // Its burst (20) is decrypted and refused for the key; the rest never costs a DH.
    assert_eq!((c.drop_unknown_key, c.drop_handshake_rate), (20, 980));
    // Another source's real init, the same instant, gets through.
    assert!(links(&mut a, &mut b, &init, 0));
    // The global budget exists: many sources at once exhaust it, and then even a real init
    // waits until it refills.
    let mut refused_at = None;
    for i in 0..400u32 {
        let from = SocketAddr::from(([10, 100, (i >> 8) as u8, i as u8], 5900));
        b.recv(0, from, &flood);
        if refused_at.is_none() && b.t.counters().drop_handshake_rate > 980 {
            refused_at = Some(i);
        }
    }
    // 300 per second, 21 spent above.
    assert_eq!(refused_at, Some(279));
    // The spent budget put B under load: a real init now gets a cookie reply, not a
    // response; once the load is over (1 s without an init refused) it links.
    assert!(b.t.under_load(0) && b.t.counters().handshake_load_periods == 1);
    let mut c = Node::new(3, true, LONG);
    b.link_to(0, &c);
    b.transmits();
    c.link_to(0, &b);
    let init = c.transmits().into_iter().find(is_init).unwrap().payload;
    let cookies = b.t.counters().cookie_replies_sent;
    assert!(!links(&mut c, &mut b, &init, 0));
    assert_eq!(b.t.counters().cookie_replies_sent, cookies + 1);
    assert!(!b.t.under_load(1_000));
    assert!(links(&mut c, &mut b, &init, 1_000));
}

#[test]
fn a_plaintext_peer_and_an_encrypted_one_never_link() {
    let a = Node::new(1, true, LONG);
    let mut b = Node::new(2, false, LONG);
    // The plaintext side pins no key; the encrypted side pins one.
    b.key = Some(StaticKey::generate());
    let mut p = Pair::of(a, b);
    p.run_until(5_000);
    assert!(p.ev_a.is_empty() && p.ev_b.is_empty());
    assert!(!p.a.up(p.ab) && !p.b.up(p.ba));
    assert!(p.a.t.counters().drop_sec_mismatch >= 1);
    assert!(p.b.t.counters().drop_sec_mismatch >= 1);
    assert_eq!(p.a.t.counters().handshakes_completed, 0);
}
