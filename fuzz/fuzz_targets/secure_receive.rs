//! The receive path of encrypted links (Noise IK, `proto::secure`).
//!
//! Every input is first fed as a raw datagram to `data_receiver_idx`, `resp_receiver_idx`,
//! `cookie_receiver_idx`, `read_init` (to both nodes' keys), the mac1 and mac2 checks of a
//! `CookieChecker`, `SecureLink::on_response` and `SecureLink::on_cookie_reply` (to a link
//! with a pending handshake when the receiver index is the one it waits for) and
//! `SecureLink::decrypt` (on both ends of an established session). None may panic; a
//! response, cookie reply or data message that was not made with the right keys must be
//! refused, and an init only gets a session from the link that pins its sender's key.
//!
//! Then, if the first byte selects it, the rest of the input mutates a valid message (a length
//! change, then `(position u16 le, xor u8)` triples):
//!
//! - `0xA0`: an init; `read_init` fails or returns the sender's real key, uid, time and cipher
//!   offer (a changed offer byte never gets through: no downgrade); its mac1 passes only if no
//!   byte in front of mac2 changed;
//! - `0xA1`: a response; `on_response` fails, or nothing authenticated changed and the session
//!   it installs talks to the responder's, on the cipher the responder chose; its mac1 passes
//!   only if no byte in front of mac2 changed;
//! - `0xA3`: the responder's cookie reply to the pending init; `on_cookie_reply` fails, or
//!   only the reserved bytes changed and the initiator holds the cookie;
//! - `0xA2`: a data message (type and payload from the input); `decrypt` and `decrypt_in_place`
//!   fail or return the original plaintext, and no byte may have changed (the header is the
//!   AEAD's associated data).
//!
//! With `0xB1` and `0xB2` in place of `0xA1` and `0xA2`, the same on a session whose responder
//! chose ChaCha20-Poly1305 (AES-256-GCM otherwise), so both ciphers are fuzzed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::id::Uid;
use proto::secure::cookie::CookieChecker;
use proto::secure::{
    cookie_receiver_idx, data_receiver_idx, read_init, resp_receiver_idx, Cipher, CipherOffer,
    CipherSetting, SecureLink, StaticKey, INIT_LEN, RESP_LEN,
};
use proto::wire::link::{COOKIE_REPLY_LEN, MAC_LEN};
use std::net::SocketAddr;
use std::cell::RefCell;
use std::sync::OnceLock;

const IDX_A: u32 = 0x0a0a_0001;
const IDX_B: u32 = 0x0b0b_0002;
const UID_A: Uid = Uid([0xaa; 20]);
const INIT_TIME: u64 = 1_700_000_000_000;
const NOW: u64 = 5_000;

struct Keys {
    a: StaticKey,
    b: StaticKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        a: StaticKey::from_private(&[0x11; 32]).expect("32 bytes"),
        b: StaticKey::from_private(&[0x22; 32]).expect("32 bytes"),
    })
}

/// Both ciphers, AES-256-GCM preferred (as on a CPU with AES in hardware).
const BOTH: CipherOffer = CipherOffer::new(CipherSetting::Auto, true);

/// The offer that makes a session use `cipher`.
fn offer(cipher: Cipher) -> CipherOffer {
    match cipher {
        Cipher::Aes256Gcm => BOTH,
        Cipher::ChaCha20Poly1305 => CipherOffer::new(CipherSetting::ChaCha20Poly1305, true),
    }
}

/// A's link to B (A offering both ciphers) with an init sent, and that init.
fn start() -> (SecureLink, Vec<u8>) {
    let k = keys();
    let mut a = SecureLink::with_offer(k.b.fingerprint(), BOTH);
    let mut init = vec![0u8; INIT_LEN];
    let n = a
        .start_handshake(&k.a, &UID_A, IDX_A, INIT_TIME, NOW, &mut init)
        .expect("init");
    assert_eq!(n, INIT_LEN);
    (a, init)
}

/// A (initiator, still pending), B (responder offering what makes it choose `cipher`, its
/// session awaiting A's confirmation) and B's response.
fn half_open(cipher: Cipher) -> (SecureLink, SecureLink, Vec<u8>) {
    let k = keys();
    let (a, init) = start();
    let mut b = SecureLink::with_offer(k.a.fingerprint(), offer(cipher));
    let got = read_init(&k.b, &init).expect("valid init");
    let mut resp = vec![0u8; RESP_LEN];
    let n = b.accept(got, IDX_B, NOW, &mut resp).expect("accept");
    assert_eq!(n, RESP_LEN);
    (a, b, resp)
}

fn established(cipher: Cipher) -> (SecureLink, SecureLink) {
    let (mut a, b, resp) = half_open(cipher);
    a.on_response(&resp, NOW).expect("valid response");
    assert_eq!(a.cipher(), Some(cipher));
    (a, b)
}

thread_local! {
    /// One session per cipher for all inputs: its state changes only when a message decrypts,
    /// which a raw input cannot make happen without the keys.
    static PAIRS: [RefCell<(SecureLink, SecureLink)>; 2] =
        Cipher::ALL.map(|c| RefCell::new(established(c)));
}

/// The established session on the cipher `selector` picks.
fn with_pair<R>(selector: u8, f: impl FnOnce(&mut SecureLink, &mut SecureLink) -> R) -> R {
    PAIRS.with(|p| {
        let (a, b) = &mut *p[usize::from(selector & 1)].borrow_mut();
        f(a, b)
    })
}

fn mutate(orig: &[u8], ctl: &[u8]) -> Vec<u8> {
    let mut m = orig.to_vec();
    let Some((&delta, flips)) = ctl.split_first() else {
        return m;
    };
    let len = (m.len() as isize + delta as i8 as isize).max(0) as usize;
    m.resize(len, 0);
    for f in flips.chunks_exact(3) {
        if !m.is_empty() {
            let at = u16::from_le_bytes([f[0], f[1]]) as usize % m.len();
            m[at] ^= f[2];
        }
    }
    m
}

/// Whether `a` and `b` agree except on the bytes listed (not authenticated by the format).
fn same_except(a: &[u8], b: &[u8], free: std::ops::Range<usize>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .enumerate()
            .all(|(i, (x, y))| free.contains(&i) || x == y)
}

fn roundtrip(from: &mut SecureLink, to: &mut SecureLink, inner: u8, payload: &[u8]) {
    let mut scratch = Vec::new();
    let mut msg = vec![0u8; payload.len() + proto::secure::DATA_OVERHEAD];
    let n = from
        .encrypt(inner, payload, &mut scratch, &mut msg)
        .expect("encrypt");
    let mut out = vec![0u8; n];
    let o = to
        .decrypt(&msg[..n], &mut out)
        .expect("decrypt own message");
    assert_eq!((o.inner, &out[1..1 + o.len]), (inner, payload));
}

/// A's address as B sees it.
fn a_addr() -> SocketAddr {
    SocketAddr::from(([10, 99, 0, 1], 5900))
}

/// Whether `m` changed only in its last `free` bytes from `orig`.
fn same_but_tail(orig: &[u8], m: &[u8], free: usize) -> bool {
    orig.len() == m.len() && orig[..orig.len() - free] == m[..m.len() - free]
}

fn raw(data: &[u8]) {
    let k = keys();
    let _ = data_receiver_idx(data);
    let ridx = resp_receiver_idx(data);
    // Nobody without B's public key makes a valid mac1 (the fuzzer would have to find a
    // keyed BLAKE2s tag); the checks never panic on any length.
    let mut checker = CookieChecker::new(k.b.public());
    if data.len() >= 2 * MAC_LEN {
        let _ = checker.mac1_ok(data);
        let _ = checker.mac2(data, a_addr(), NOW);
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        let _ = checker.reply(data, 1, a_addr(), NOW, &mut reply);
    }
    if cookie_receiver_idx(data) == Some(IDX_A) {
        let (mut a, _) = start();
        assert!(
            a.on_cookie_reply(data, NOW).is_err(),
            "forged cookie reply accepted"
        );
        assert!(!a.has_cookie(NOW));
    }
    // Anyone with a key pair can write a valid init (IK sends the initiator's key), so one
    // may decrypt; pinning is what refuses it: B's link to A takes only A's key.
    if let Ok(init) = read_init(&k.b, data) {
        let from_a = init.peer_static == k.a.fingerprint();
        let mut b = SecureLink::new(k.a.fingerprint());
        let mut resp = vec![0u8; RESP_LEN];
        let accepted = b.accept(init, IDX_B, NOW, &mut resp).is_ok();
        assert!(from_a || !accepted, "init from an unpinned key accepted");
    }
    let _ = read_init(&k.a, data).map(|init| init.time);
    if ridx == Some(IDX_A) {
        let (mut a, _) = start();
        assert!(
            a.on_response(data, NOW).is_err(),
            "forged response accepted"
        );
        assert!(!a.has_session());
    } else {
        let mut idle = SecureLink::new(k.b.fingerprint());
        assert!(idle.on_response(data, NOW).is_err());
    }
    for selector in 0..2 {
        with_pair(selector, |a, b| {
            let mut out = vec![0u8; data.len()];
            assert!(a.decrypt(data, &mut out).is_err(), "forged data accepted");
            assert!(b.decrypt(data, &mut out).is_err(), "forged data accepted");
            let mut inplace = data.to_vec();
            assert!(
                b.decrypt_in_place(&mut inplace).is_err(),
                "forged data accepted"
            );
        });
    }
}

fn mutated_init(ctl: &[u8]) {
    let k = keys();
    // `read_init` keeps no state: one init serves every input (and saves three DH per run).
    static INIT: OnceLock<Vec<u8>> = OnceLock::new();
    let init = INIT.get_or_init(|| start().1);
    let m = mutate(init, ctl);
    if CookieChecker::new(k.b.public()).mac1_ok(&m) {
        assert!(same_but_tail(init, &m, MAC_LEN), "mac1 passed with bytes changed");
    }
    if let Ok(got) = read_init(&k.b, &m) {
        // The sender index and reserved bytes are outside Noise; the macs are the table's
        // to check (above).
        let macs = INIT_LEN - 2 * MAC_LEN..INIT_LEN;
        let (mut x, mut y) = (init.to_vec(), m.clone());
        x[macs.clone()].fill(0);
        y[macs].fill(0);
        assert!(
            same_except(&x, &y, 1..8),
            "init accepted with authenticated bytes changed"
        );
        assert_eq!(got.peer_static, k.a.fingerprint());
        assert_eq!(got.peer_uid, UID_A);
        assert_eq!(got.time, INIT_TIME);
        assert_eq!(got.offer, BOTH);
    }
}

fn mutated_resp(selector: u8, ctl: &[u8]) {
    let cipher = Cipher::ALL[usize::from(selector & 1)];
    let (mut a, mut b, resp) = half_open(cipher);
    let m = mutate(&resp, ctl);
    if CookieChecker::new(keys().a.public()).mac1_ok(&m) {
        assert!(same_but_tail(&resp, &m, MAC_LEN), "mac1 passed with bytes changed");
    }
    if a.on_response(&m, NOW).is_err() {
        assert!(!a.has_session());
        return;
    }
    let macs = RESP_LEN - 2 * MAC_LEN..RESP_LEN;
    let (mut x, mut y) = (resp.clone(), m.clone());
    x[macs.clone()].fill(0);
    y[macs].fill(0);
    assert!(
        same_except(&x, &y, 1..8),
        "response accepted with authenticated bytes changed"
    );
    assert!(a.has_session());
    assert_eq!(a.cipher(), Some(cipher));
    if m[4..8] == resp[4..8] {
        roundtrip(&mut a, &mut b, 2, b"after a mutated response");
        roundtrip(&mut b, &mut a, 3, b"both ways");
    }
}

fn mutated_cookie_reply(ctl: &[u8]) {
    let k = keys();
    let (mut a, init) = start();
    let mut checker = CookieChecker::new(k.b.public());
    let mut reply = vec![0u8; COOKIE_REPLY_LEN];
    checker
        .reply(&init, IDX_A, a_addr(), NOW, &mut reply)
        .expect("reply");
    let m = mutate(&reply, ctl);
    if a.on_cookie_reply(&m, NOW).is_err() {
        assert!(!a.has_cookie(NOW));
        return;
    }
    assert!(
        same_except(&reply, &m, 1..4),
        "cookie reply accepted with authenticated bytes changed"
    );
    assert!(a.has_cookie(NOW));
}

fn mutated_data(selector: u8, rest: &[u8]) {
    let (inner, rest) = rest.split_first().unwrap_or((&2, &[]));
    let (&n, rest) = rest.split_first().unwrap_or((&0, &[]));
    let n = (n as usize).min(rest.len());
    let (payload, ctl) = rest.split_at(n);
    with_pair(selector, |a, b| {
        let mut scratch = Vec::new();
        let mut msg = vec![0u8; payload.len() + proto::secure::DATA_OVERHEAD];
        let len = a
            .encrypt(*inner, payload, &mut scratch, &mut msg)
            .expect("encrypt");
        msg.truncate(len);
        let m = mutate(&msg, ctl);
        // Half the inputs open in place, half into another buffer.
        if ctl.len() % 2 == 0 {
            let mut out = vec![0u8; m.len().max(1)];
            if let Ok(o) = b.decrypt(&m, &mut out) {
                assert_eq!(m, msg, "data accepted with bytes changed");
                assert_eq!((o.inner, &out[1..1 + o.len]), (*inner, payload));
            }
        } else {
            let mut inplace = m.clone();
            if let Ok(o) = b.decrypt_in_place(&mut inplace) {
                assert_eq!(m, msg, "data accepted with bytes changed");
                let plain = &inplace[proto::wire::link::DATA_HEADER_LEN..];
                assert_eq!((o.inner, &plain[1..1 + o.len]), (*inner, payload));
            }
        }
    });
}

fuzz_target!(|data: &[u8]| {
    raw(data);
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // The high nibble picks the cipher: 0xA AES-256-GCM, 0xB ChaCha20-Poly1305.
    let selector = u8::from(first >> 4 == 0xB);
    match first {
        0xA0 => mutated_init(rest),
        0xA1 | 0xB1 => mutated_resp(selector, rest),
        0xA2 | 0xB2 => mutated_data(selector, rest),
        0xA3 => mutated_cookie_reply(rest),
        _ => {}
    }
});
