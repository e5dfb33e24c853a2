//! mac1, mac2 and cookies in the link core: what a flood costs, and that a real peer links
//! through one (see `link::handshake`).

use super::*;
use crate::secure::cookie::{COOKIE_LIFETIME, SECRET_LIFETIME};
use crate::wire::link::{INIT_LEN, MAC_LEN};

/// A with a link to B and B with a link to A (keys pinned both ways); nothing sent yet.
fn pair() -> (Node, Node) {
    let (mut a, mut b) = (Node::new(1, true, LONG), Node::new(2, true, LONG));
    b.link_to(0, &a);
    b.transmits();
    a.link_to(0, &b);
    (a, b)
}

fn of_type(ts: &[Transmit], t: MessageType) -> Vec<Transmit> {
    ts.iter()
        .filter(|x| MessageType::of(&x.payload) == Some(t))
        .cloned()
        .collect()
}

fn mac2(init: &[u8]) -> &[u8] {
    &init[INIT_LEN - MAC_LEN..]
}

/// Delivers what A and B send each other, running their timers at `now`, for a few rounds;
/// whether both are up then.
fn exchange(a: &mut Node, b: &mut Node, now: Millis) -> bool {
    let a_from = a.addr;
    for _ in 0..6 {
        a.run_due_timers(now);
        for t in a.transmits() {
            b.recv(now, a_from, &t.payload);
        }
        b.run_due_timers(now);
        for t in b.transmits() {
            if t.to == a_from {
                a.recv(now, b.addr, &t.payload);
            }
        }
    }
    a.up(0) && b.up(0)
}

/// With B always under load: A's first init gets a cookie reply from B at time 0; A's next
/// init, with mac2, not yet delivered.
fn init_with_cookie(a: &mut Node, b: &mut Node) -> Vec<u8> {
    b.t.set_handshake_load(0);
    let init = a.transmits().into_iter().find(is_init).unwrap().payload;
    b.recv(0, a.addr, &init);
    for t in b.transmits() {
        a.recv(0, b.addr, &t.payload);
    }
    a.run_due_timers(0);
    a.transmits().into_iter().find(is_init).unwrap().payload
}

#[test]
fn a_wrong_mac1_is_dropped_before_any_diffie_hellman() {
    let (mut a, mut b) = pair();
    // M pins a key for B that is not B's: its inits' mac1 is keyed by that key.
    let mut m = Node::new(3, true, LONG);
    b.link_to(0, &m);
    b.transmits();
    let wrong = Node::new(2, true, LONG);
    m.link_to(0, &wrong);
    let init = m.transmits().into_iter().find(is_init).unwrap().payload;
    for i in 0..1000u32 {
        let from = SocketAddr::from(([10, 100, (i >> 8) as u8, i as u8], 5900));
        assert_eq!(b.recv(0, from, &init), Got::Nothing);
    }
    let c = b.t.counters();
    // No decryption was tried (it would fail as drop_auth), no budget spent, nothing sent.
    assert_eq!((c.drop_bad_mac1, c.drop_auth), (1000, 0));
    assert_eq!((c.drop_handshake_rate, c.cookie_replies_sent), (0, 0));
    assert_eq!(c.handshake_load_periods, 0);
    assert!(b.transmits().is_empty());
    // A real init at the same instant links.
    assert!(exchange(&mut a, &mut b, 0));
    // A response with a wrong mac1 is dropped before its pending handshake is touched.
    let mut resp = vec![0u8; crate::wire::link::RESP_LEN];
    resp[0] = MessageType::Resp as u8;
    a.recv(1, b.addr, &resp);
    assert_eq!(a.t.counters().drop_bad_mac1, 1);
}

#[test]
fn under_load_an_init_without_mac2_gets_a_cookie_and_the_retry_links() {
    let (mut a, mut b) = pair();
    b.t.set_handshake_load(0);
    assert!(b.t.under_load(0));
    let init = a.transmits().into_iter().find(is_init).unwrap().payload;
    assert_eq!(mac2(&init), [0; MAC_LEN]);
    b.recv(0, a.addr, &init);
    let sent = b.transmits();
    assert_eq!(sent.len(), 1);
    assert_eq!(of_type(&sent, MessageType::CookieReply).len(), 1);
    assert_eq!(sent[0].to, a.addr);
    assert_eq!(b.t.counters().cookie_replies_sent, 1);
    assert_eq!(b.t.counters().drop_bad_mac2, 0);
    // A keeps the cookie and sends its next init at once, with mac2.
    a.recv(5, b.addr, &sent[0].payload);
    assert_eq!(a.t.counters().cookie_replies_received, 1);
    assert!(a.t.link(0).unwrap().secure.as_ref().unwrap().has_cookie(5));
    assert_eq!(a.t.poll_timeout(), Some(5));
    a.run_due_timers(5);
    let retry = a.transmits().into_iter().find(is_init).unwrap().payload;
    assert_ne!(mac2(&retry), [0; MAC_LEN]);
    b.recv(5, a.addr, &retry);
    let sent = b.transmits();
    assert_eq!(of_type(&sent, MessageType::Resp).len(), 1, "{sent:?}");
    for t in sent {
        a.recv(5, b.addr, &t.payload);
    }
    assert!(exchange(&mut a, &mut b, 5));
    assert_eq!(b.t.counters().cookie_replies_sent, 1);
}

#[test]
fn a_cookie_is_bound_to_the_address_it_was_sent_to() {
    let (mut a, mut b) = pair();
    let home = a.addr;
    let retry = init_with_cookie(&mut a, &mut b);
    // The init with home's cookie, from another port and from another host: no response,
    // a cookie reply to where it came from, a bad mac2 counted.
    for (n, other) in [addr("10.99.0.1:5901"), addr("10.99.0.9:5900")]
        .into_iter()
        .enumerate()
    {
        b.recv(0, other, &retry);
        let sent = b.transmits();
        assert!(of_type(&sent, MessageType::Resp).is_empty());
        assert_eq!(of_type(&sent, MessageType::CookieReply)[0].to, other);
        assert_eq!(b.t.counters().drop_bad_mac2, n as u64 + 1);
    }
    assert!(!b.up(0));
    // From home, it is served.
    b.recv(0, home, &retry);
    assert_eq!(of_type(&b.transmits(), MessageType::Resp).len(), 1);
}

#[test]
fn a_cookie_expires() {
    let (mut a, mut b) = pair();
    let retry = init_with_cookie(&mut a, &mut b);
    // The responder's secret is replaced: the same init, never seen before, is refused.
    let late = SECRET_LIFETIME;
    b.recv(late, a.addr, &retry);
    assert_eq!(b.t.counters().drop_bad_mac2, 1);
    assert!(of_type(&b.transmits(), MessageType::Resp).is_empty());
    // And the initiator stops using the cookie before that.
    let sec = a.t.link(0).unwrap().secure.as_ref().unwrap();
    assert!(sec.has_cookie(COOKIE_LIFETIME - 1) && !sec.has_cookie(COOKIE_LIFETIME));
}

#[test]
fn a_cookie_reply_for_another_init_or_forged_is_ignored() {
    let (mut a, mut b) = pair();
    b.t.set_handshake_load(0);
    let first = a.transmits().into_iter().find(is_init).unwrap().payload;
    b.recv(0, a.addr, &first);
    let reply = b.transmits().remove(0).payload;
    // A's next init (after its backoff) is pending when the reply to the first arrives: the
    // reply's associated data is the first init's mac1, so it does not open.
    a.run_due_timers(1_000);
    let second = a.transmits().into_iter().find(is_init).unwrap().payload;
    let mut late = reply.clone();
    late[4..8].copy_from_slice(&second[4..8]);
    a.recv(1_001, b.addr, &late);
    let c = a.t.counters();
    assert_eq!((c.drop_auth, c.cookie_replies_received), (1, 0));
    let sec = a.t.link(0).unwrap().secure.as_ref().unwrap();
    assert!(!sec.has_cookie(1_001));
    // No retry at once: the next init waits for the backoff.
    assert!(a.t.poll_timeout().unwrap() > 1_001);
    // A forged reply (random bytes behind the right index) is refused the same way; one for
    // an index A does not use is counted as such.
    let mut forged = late.clone();
    forged[8..].fill(0x42);
    a.recv(1_002, b.addr, &forged);
    assert_eq!(a.t.counters().drop_auth, 2);
    forged[4..8].copy_from_slice(&[1, 2, 3, 4]);
    let unknown = a.t.counters().drop_unknown_index;
    a.recv(1_002, b.addr, &forged);
    assert_eq!(a.t.counters().drop_unknown_index, unknown + 1);
    // The reply to the pending init works.
    b.recv(1_003, a.addr, &second);
    let reply = b.transmits().remove(0).payload;
    a.recv(1_004, b.addr, &reply);
    assert_eq!(a.t.counters().cookie_replies_received, 1);
}

#[test]
fn a_spoofed_flood_gets_cookies_not_handshakes_and_a_real_peer_links_during_it() {
    let (mut a, mut b) = pair();
    // The attacker knows B's public key (so its mac1 is valid) but not A's private key:
    // inits of its own key, unpinned at B, from 3000 spoofed addresses within one second.
    let mut m = Node::new(3, true, LONG);
    m.link_to(0, &b);
    let flood = m.transmits().into_iter().find(is_init).unwrap().payload;
    let init = a.transmits().into_iter().find(is_init).unwrap().payload;
    let mut up_at = None;
    for i in 0..3000u32 {
        let now = i as Millis / 3;
        let from = SocketAddr::from(([10, 100, (i >> 8) as u8, i as u8], 5900));
        b.recv(now, from, &flood);
        b.transmits();
        // A (restarted) sends its first init in the middle of the flood.
        if i == 1500 {
            b.recv(now, a.addr, &init);
            for t in b.transmits() {
                a.recv(now, b.addr, &t.payload);
            }
        }
        if i > 1500 && up_at.is_none() && exchange(&mut a, &mut b, now) {
            up_at = Some(now);
        }
    }
    let c = b.t.counters();
    // Decrypted (a Diffie-Hellman each) and refused for the key: only those before the load
    // set in: the load rate's burst and what refilled meanwhile.
    assert!(c.drop_unknown_key <= 110, "{c:?}");
    assert!(c.cookie_replies_sent >= 2_800, "{c:?}");
    assert_eq!(c.handshake_load_periods, 1);
    assert_eq!(up_at, Some(500), "A linked at {up_at:?}");
    assert_eq!(a.t.counters().cookie_replies_received, 1);
}

#[test]
fn random_handshake_shaped_bytes_never_panic_and_are_counted() {
    let (_a, mut b) = pair();
    let mut x: u64 = 0x9e37_79b9;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for load in [0, 100] {
        b.t.set_handshake_load(load);
        for i in 0..3000u32 {
            let len = [165, 93, 64, 133, 61, 1, 200][i as usize % 7] + (next() % 3) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            d[0] = [5, 6, 10][(next() % 3) as usize];
            let from = SocketAddr::from(([10, 7, (i >> 8) as u8, i as u8], 1 + i as u16));
            b.recv(i as Millis, from, &d);
            b.transmits();
        }
    }
    let c = b.t.counters();
    let dropped =
        c.drop_bad_link_message + c.drop_bad_mac1 + c.drop_old_version + c.drop_unknown_index;
    assert_eq!(dropped, 6000, "{c:?}");
    assert_eq!(c.cookie_replies_sent, 0);
}
