//! Tests of the link cryptography: handshakes, data both ways, replays and forgeries refused,
//! key confirmation, rekeying.

use super::*;

struct Node {
    key: StaticKey,
    uid: Uid,
}

fn node(n: u8) -> Node {
    Node {
        key: StaticKey::generate(),
        uid: Uid([n; 20]),
    }
}

/// Runs a handshake a -> b; returns both links.
fn pair(a: &Node, b: &Node) -> (SecureLink, SecureLink) {
    let mut la = SecureLink::new(b.key.fingerprint());
    let mut lb = SecureLink::new(a.key.fingerprint());
    let mut init = [0u8; INIT_LEN];
    let n = la
        .start_handshake(&a.key, &a.uid, 0x0001_0001, 1000, 0, &mut init)
        .unwrap();
    let got = read_init(&b.key, &init[..n]).unwrap();
    assert_eq!(got.peer_uid, a.uid);
    assert_eq!(got.peer_static, a.key.fingerprint());
    let mut resp = [0u8; RESP_LEN];
    let m = lb.accept(got, 0x0002_0001, 0, &mut resp).unwrap();
    la.on_response(&resp[..m], 1).unwrap();
    (la, lb)
}

#[test]
fn handshake_then_data_both_ways() {
    let (a, b) = (node(1), node(2));
    let (mut la, mut lb) = pair(&a, &b);
    let mut scratch = Vec::new();
    let mut wire = [0u8; 200];
    let mut plain = [0u8; 200];
    // The responder waits for the initiator's first message before it sends.
    assert!(!lb.has_session() && lb.awaits_confirmation());
    assert_eq!(
        lb.encrypt(3, b"early", &mut scratch, &mut wire),
        Err(SecureError::UnknownSession)
    );
    let n = la
        .encrypt(2, b"frame bytes", &mut scratch, &mut wire)
        .unwrap();
    assert_eq!(n, 11 + DATA_OVERHEAD);
    assert_eq!(data_receiver_idx(&wire[..n]), Some(0x0002_0001));
    // Ciphertext does not contain the plaintext.
    assert!(!wire[..n].windows(5).any(|w| w == b"frame"));
    let o = lb.decrypt(&wire[..n], &mut plain).unwrap();
    assert_eq!((o.inner, &plain[1..1 + o.len]), (2, &b"frame bytes"[..]));
    assert!(o.confirmed && lb.has_session() && !lb.awaits_confirmation());
    let n = lb.encrypt(3, b"{}", &mut scratch, &mut wire).unwrap();
    let o = la.decrypt(&wire[..n], &mut plain).unwrap();
    assert_eq!((o.inner, &plain[1..1 + o.len]), (3, &b"{}"[..]));
    assert!(!o.confirmed);
}

#[test]
fn replayed_and_flipped_messages_are_refused() {
    let (a, b) = (node(1), node(2));
    let (mut la, mut lb) = pair(&a, &b);
    let mut scratch = Vec::new();
    let mut wire = [0u8; 100];
    let mut plain = [0u8; 100];
    let n = la.encrypt(2, b"hello", &mut scratch, &mut wire).unwrap();
    lb.decrypt(&wire[..n], &mut plain).unwrap();
    assert_eq!(lb.decrypt(&wire[..n], &mut plain), Err(SecureError::Replay));
    let n = la.encrypt(2, b"hello", &mut scratch, &mut wire).unwrap();
    let mut flipped = wire;
    flipped[20] ^= 0x01;
    assert_eq!(
        lb.decrypt(&flipped[..n], &mut plain),
        Err(SecureError::Auth)
    );
    // A forged counter does not move the window: the real message still passes.
    lb.decrypt(&wire[..n], &mut plain).unwrap();
    assert_eq!((lb.replays, lb.auth_failures), (1, 1));
}

#[test]
fn an_unpinned_key_is_not_accepted() {
    let (a, b, mallory) = (node(1), node(2), node(3));
    let mut lm = SecureLink::new(b.key.fingerprint());
    let mut init = [0u8; INIT_LEN];
    let n = lm
        .start_handshake(&mallory.key, &a.uid, 7, 1, 0, &mut init)
        .unwrap();
    // b decrypts it (IK is addressed to b's key) but finds mallory's static key: the
    // caller looks for a link pinned to it and finds none; the link for a refuses it.
    let got = read_init(&b.key, &init[..n]).unwrap();
    assert_eq!(got.peer_static, mallory.key.fingerprint());
    let mut lb = SecureLink::new(a.key.fingerprint());
    assert_eq!(
        lb.accept(got, 9, 0, &mut [0u8; RESP_LEN]).err(),
        Some(SecureError::UnknownPeer)
    );
    // An init for another node's key fails authentication outright.
    assert_eq!(read_init(&a.key, &init[..n]).err(), Some(SecureError::Auth));
}

#[test]
fn a_replayed_init_cannot_reset_the_session() {
    let (a, b) = (node(1), node(2));
    let mut la = SecureLink::new(b.key.fingerprint());
    let mut lb = SecureLink::new(a.key.fingerprint());
    let mut init = [0u8; INIT_LEN];
    la.start_handshake(&a.key, &a.uid, 1, 5000, 0, &mut init)
        .unwrap();
    let mut resp = [0u8; RESP_LEN];
    lb.accept(read_init(&b.key, &init).unwrap(), 2, 0, &mut resp)
        .unwrap();
    let again = read_init(&b.key, &init).unwrap();
    assert_eq!(
        lb.accept(again, 3, 0, &mut resp).err(),
        Some(SecureError::Replay)
    );
}

#[test]
fn a_replayed_init_the_time_check_misses_never_confirms_nor_displaces() {
    let (a, b) = (node(1), node(2));
    let mut la = SecureLink::new(b.key.fingerprint());
    let mut init = [0u8; INIT_LEN];
    la.start_handshake(&a.key, &a.uid, 0x0001_0001, 5000, 0, &mut init)
        .unwrap();
    let mut resp = [0u8; RESP_LEN];
    // B forgot A's last init time (a restart, a new link): the replay is answered...
    let mut lb = SecureLink::new(a.key.fingerprint());
    lb.accept(read_init(&b.key, &init).unwrap(), 2, 0, &mut resp)
        .unwrap();
    assert!(lb.awaits_confirmation() && !lb.has_session());
    // ...but a replayer cannot use the response (A is not waiting for it any more), and
    // A's next real init replaces the unconfirmed session.
    la.start_handshake(&a.key, &a.uid, 0x0001_0002, 6000, 1000, &mut init)
        .unwrap();
    let m = lb
        .accept(read_init(&b.key, &init).unwrap(), 3, 1000, &mut resp)
        .unwrap();
    assert_eq!(lb.unconfirmed_dropped, 1);
    la.on_response(&resp[..m], 1001).unwrap();
    let (mut scratch, mut wire, mut plain) = (Vec::new(), [0u8; 100], [0u8; 100]);
    let n = la.encrypt(4, &[], &mut scratch, &mut wire).unwrap();
    assert!(lb.decrypt(&wire[..n], &mut plain).unwrap().confirmed);
    assert_eq!(lb.remote_idx(), Some(0x0001_0002));
    // An unconfirmed session expires; the confirmed one stays.
    la.start_handshake(&a.key, &a.uid, 0x0001_0003, 7000, 2000, &mut init)
        .unwrap();
    lb.accept(read_init(&b.key, &init).unwrap(), 4, 2000, &mut resp)
        .unwrap();
    lb.expire(2000 + CONFIRM_WITHIN, 180_000);
    assert!(lb.owns_index(4));
    lb.expire(2001 + CONFIRM_WITHIN, 180_000);
    assert!(!lb.owns_index(4) && lb.owns_index(3));
    assert_eq!(lb.unconfirmed_dropped, 2);
    assert_eq!(lb.remote_idx(), Some(0x0001_0002));
}

#[test]
fn rekey_keeps_old_session_for_in_flight_traffic() {
    let (a, b) = (node(1), node(2));
    let (mut la, mut lb) = pair(&a, &b);
    let mut scratch = Vec::new();
    let mut wire = [0u8; 100];
    let mut plain = [0u8; 100];
    let first = la.encrypt(2, b"first", &mut scratch, &mut wire).unwrap();
    assert!(lb.decrypt(&wire[..first], &mut plain).unwrap().confirmed);
    let old = la.encrypt(2, b"old", &mut scratch, &mut wire).unwrap();
    let old_msg = wire[..old].to_vec();
    assert!(!la.wants_handshake(1000, 120_000));
    assert!(la.wants_handshake(120_001, 120_000));
    let mut init = [0u8; INIT_LEN];
    la.start_handshake(&a.key, &a.uid, 0x0001_0002, 2000, 120_001, &mut init)
        .unwrap();
    let mut resp = [0u8; RESP_LEN];
    let m = lb
        .accept(
            read_init(&b.key, &init).unwrap(),
            0x0002_0002,
            120_001,
            &mut resp,
        )
        .unwrap();
    la.on_response(&resp[..m], 120_002).unwrap();
    // Until A's first message on the new session, B sends on the old one.
    let n = lb.encrypt(3, b"b", &mut scratch, &mut wire).unwrap();
    assert_eq!(data_receiver_idx(&wire[..n]), Some(0x0001_0001));
    // Old message still decrypts on the previous session; new traffic uses the new one.
    assert!(!lb.decrypt(&old_msg, &mut plain).unwrap().confirmed);
    let n = la.encrypt(2, b"new", &mut scratch, &mut wire).unwrap();
    assert_eq!(data_receiver_idx(&wire[..n]), Some(0x0002_0002));
    assert!(lb.decrypt(&wire[..n], &mut plain).unwrap().confirmed);
    let n = lb.encrypt(3, b"b", &mut scratch, &mut wire).unwrap();
    assert_eq!(data_receiver_idx(&wire[..n]), Some(0x0001_0002));
    // Long after, the old session is gone.
    lb.expire(500_000, 180_000);
    assert!(!lb.owns_index(0x0002_0001) && lb.owns_index(0x0002_0002));
}

#[test]
fn retries_back_off() {
    let (a, b) = (node(1), node(2));
    let mut la = SecureLink::new(b.key.fingerprint());
    let mut init = [0u8; INIT_LEN];
    let mut t = 0;
    let mut gaps = Vec::new();
    let mut last = 0;
    for _ in 0..6 {
        while !la.wants_handshake(t, 120_000) {
            t += 100;
        }
        gaps.push(t - last);
        last = t;
        la.start_handshake(&a.key, &a.uid, 1, t, t, &mut init)
            .unwrap();
    }
    assert_eq!(gaps, vec![0, 1000, 2000, 4000, 8000, 8000]);
}

#[test]
fn garbage_never_panics() {
    let b = node(2);
    let mut lb = SecureLink::new(Fingerprint([9; 32]));
    let mut plain = [0u8; 64];
    for len in 0..200usize {
        let mut msg = vec![0u8; len];
        for (i, x) in msg.iter_mut().enumerate() {
            *x = (i * 31 + len) as u8;
        }
        for t in [5, 6, 7, 0, 255] {
            if !msg.is_empty() {
                msg[0] = t;
            }
            let _ = read_init(&b.key, &msg);
            let _ = lb.on_response(&msg, 0);
            let _ = lb.decrypt(&msg, &mut plain);
        }
    }
}

#[test]
fn keys_round_trip_and_fingerprints_parse() {
    let k = StaticKey::generate();
    let k2 = StaticKey::from_private(k.private()).unwrap();
    assert_eq!(k.public(), k2.public());
    let text = k.fingerprint().to_string();
    assert_eq!(text.parse::<Fingerprint>().unwrap().0, *k.public());
    assert!(StaticKey::from_private(&[1, 2, 3]).is_none());
}
