use super::*;
use crate::wire::link::{InitView, INIT_LEN, RESP_LEN};

const PUB_B: [u8; 32] = [0xb0; 32];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// An init-shaped message to B with its macs written by `macs`.
fn init(macs: &mut PeerMacs, now: Millis) -> Vec<u8> {
    let mut m = vec![0u8; INIT_LEN];
    InitView::emit_header(&mut m, 77).unwrap().fill(0x5a);
    macs.seal_init(&mut m, now);
    m
}

#[test]
fn mac1_is_keyed_by_the_responders_public_key() {
    let b = CookieChecker::new(&PUB_B);
    let good = init(&mut PeerMacs::new(&PUB_B), 0);
    assert!(b.mac1_ok(&good));
    let wrong = init(&mut PeerMacs::new(&[0xc0; 32]), 0);
    assert!(!b.mac1_ok(&wrong));
    // Any changed byte in front of mac1 voids it; mac2 is not covered.
    for i in [0, 4, 40, INIT_LEN - 33] {
        let mut m = good.clone();
        m[i] ^= 1;
        assert!(!b.mac1_ok(&m), "byte {i}");
    }
    let mut m = good.clone();
    m[INIT_LEN - 1] ^= 1;
    assert!(b.mac1_ok(&m));
    assert!(!b.mac1_ok(&[]) && !b.mac1_ok(&[0; 31]));
    // Responses carry it too, keyed by the initiator's key.
    let mut resp = vec![0u8; RESP_LEN];
    resp[0] = 6;
    PeerMacs::new(&PUB_B).seal_resp(&mut resp);
    assert!(b.mac1_ok(&resp));
    assert_eq!(&resp[RESP_LEN - 16..], &[0; 16]);
}

#[test]
fn a_cookie_makes_mac2_valid_from_its_address_only_and_for_a_while() {
    let mut b = CookieChecker::new(&PUB_B);
    let mut a = PeerMacs::new(&PUB_B);
    let (home, elsewhere) = (addr("10.0.0.1:5900"), addr("10.0.0.1:5901"));
    let first = init(&mut a, 0);
    assert_eq!(b.mac2(&first, home, 0), Mac2::Missing);
    let mut reply = [0u8; COOKIE_REPLY_LEN];
    assert_eq!(
        b.reply(&first, 77, home, 0, &mut reply),
        Ok(COOKIE_REPLY_LEN)
    );
    assert!(!a.has_cookie(0));
    a.take_reply(&reply, 10).unwrap();
    assert!(a.has_cookie(10));
    let second = init(&mut a, 20);
    assert_eq!(b.mac2(&second, home, 20), Mac2::Valid);
    // Bound to the address (the port too): useless from anywhere else.
    assert_eq!(b.mac2(&second, elsewhere, 20), Mac2::Invalid);
    assert_eq!(b.mac2(&second, addr("10.0.0.2:5900"), 20), Mac2::Invalid);
    // Bound to the message: a changed byte voids it.
    let mut changed = second.clone();
    changed[10] ^= 1;
    assert_eq!(b.mac2(&changed, home, 20), Mac2::Invalid);
    // The secret expires: the same init is refused, and the initiator stops using the cookie.
    assert_eq!(b.mac2(&second, home, SECRET_LIFETIME), Mac2::Invalid);
    assert!(!a.has_cookie(10 + COOKIE_LIFETIME));
    let late = init(&mut a, 10 + COOKIE_LIFETIME);
    assert_eq!(b.mac2(&late, home, 10 + COOKIE_LIFETIME), Mac2::Missing);
    // A new secret after expiry: the old cookie is invalid under it.
    let t = SECRET_LIFETIME + 1;
    b.reply(&late, 77, home, t, &mut reply).unwrap();
    assert_eq!(b.mac2(&second, home, t), Mac2::Invalid);
}

#[test]
fn a_cookie_reply_opens_only_for_the_init_it_answers_and_the_right_key() {
    let mut b = CookieChecker::new(&PUB_B);
    let home = addr("10.0.0.1:5900");
    let mut a = PeerMacs::new(&PUB_B);
    // No init sent yet: nothing to bind a reply to.
    let other = init(&mut PeerMacs::new(&PUB_B), 0);
    let mut reply = [0u8; COOKIE_REPLY_LEN];
    b.reply(&other, 77, home, 0, &mut reply).unwrap();
    assert_eq!(a.take_reply(&reply, 0), Err(SecureError::UnknownSession));
    // A reply made for another init (another mac1 as associated data) does not open.
    let ours = init(&mut a, 5);
    // Another init (another time in it, so another mac1) of the same initiator.
    let mut theirs = other.clone();
    theirs[20] ^= 1;
    PeerMacs::new(&PUB_B).seal_init(&mut theirs, 5);
    assert_ne!(
        theirs[INIT_LEN - 32..INIT_LEN - 16],
        ours[INIT_LEN - 32..INIT_LEN - 16]
    );
    b.reply(&theirs, 77, home, 5, &mut reply).unwrap();
    assert_eq!(a.take_reply(&reply, 5), Err(SecureError::Auth));
    assert!(!a.has_cookie(5));
    // Nor one sealed under another responder's cookie key, nor a changed byte.
    let mut c = CookieChecker::new(&[0xc0; 32]);
    c.reply(&ours, 77, home, 5, &mut reply).unwrap();
    assert_eq!(a.take_reply(&reply, 5), Err(SecureError::Auth));
    b.reply(&ours, 77, home, 5, &mut reply).unwrap();
    for i in [9, 40, COOKIE_REPLY_LEN - 1] {
        let mut r = reply;
        r[i] ^= 1;
        assert_eq!(a.take_reply(&r, 5), Err(SecureError::Auth), "byte {i}");
    }
    assert_eq!(a.take_reply(&reply[..63], 5), Err(SecureError::Malformed));
    assert!(!a.has_cookie(5));
    a.take_reply(&reply, 5).unwrap();
    assert!(a.has_cookie(5));
}

#[test]
fn replies_use_fresh_nonces() {
    let mut b = CookieChecker::new(&PUB_B);
    let m = init(&mut PeerMacs::new(&PUB_B), 0);
    let (mut r1, mut r2) = ([0u8; COOKIE_REPLY_LEN], [0u8; COOKIE_REPLY_LEN]);
    b.reply(&m, 1, addr("10.0.0.1:1"), 0, &mut r1).unwrap();
    b.reply(&m, 1, addr("10.0.0.1:1"), 0, &mut r2).unwrap();
    assert_ne!(r1[8..32], r2[8..32]);
    assert_ne!(r1[32..], r2[32..]);
}

#[test]
fn random_bytes_never_panic() {
    let mut b = CookieChecker::new(&PUB_B);
    let mut a = PeerMacs::new(&PUB_B);
    init(&mut a, 0);
    let mut x: u64 = 0x1234_5678;
    let mut out = [0u8; COOKIE_REPLY_LEN];
    for n in 0..400usize {
        let msg: Vec<u8> = (0..n % 200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = b.mac1_ok(&msg);
        assert!(a.take_reply(&msg, 0).is_err());
        if msg.len() >= 2 * MAC_LEN {
            let _ = b.mac2(&msg, addr("10.0.0.1:1"), 0);
            let _ = b.reply(&msg, 1, addr("10.0.0.1:1"), 0, &mut out);
        }
    }
}
