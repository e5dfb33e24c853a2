//! The receive path of encrypted links (Noise IK, `proto::secure`).
//!
//! Every input is first fed as a raw datagram to `data_receiver_idx`, `resp_receiver_idx`,
//! `read_init` (to both nodes' keys), `SecureLink::on_response` (to a link with a pending
//! handshake when the receiver index is the one it waits for) and `SecureLink::decrypt` (on
//! both ends of an established session). None may panic; a response or data message that was
//! not made with the session's keys must be refused, and an init only gets a session from the
//! link that pins its sender's key.
//!
//! Then, if the first byte selects it, the rest of the input mutates a valid message (a length
//! change, then `(position u16 le, xor u8)` triples):
//!
//! - `0xA0`: an init; `read_init` fails or returns the sender's real key, uid, time and cipher
//!   offer (a changed offer byte never gets through: no downgrade);
//! - `0xA1`: a response; `on_response` fails, or nothing authenticated changed and the session
//!   it installs talks to the responder's, on the cipher the responder chose;
//! - `0xA2`: a data message (type and payload from the input); `decrypt` and `decrypt_in_place`
//!   fail or return the original plaintext, and no byte may have changed (the header is the
//!   AEAD's associated data).
//!
//! With `0xB1` and `0xB2` in place of `0xA1` and `0xA2`, the same on a session whose responder
//! chose ChaCha20-Poly1305 (AES-256-GCM otherwise), so both ciphers are fuzzed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::id::Uid;
use proto::secure::{
    data_receiver_idx, read_init, resp_receiver_idx, Cipher, CipherOffer, CipherSetting,
    SecureLink, StaticKey, INIT_LEN, RESP_LEN,
};
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

fn raw(data: &[u8]) {
    let k = keys();
    let _ = data_receiver_idx(data);
    let ridx = resp_receiver_idx(data);
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
    if let Ok(got) = read_init(&k.b, &m) {
        assert!(
            same_except(init, &m, 1..8),
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
    if a.on_response(&m, NOW).is_err() {
        assert!(!a.has_session());
        return;
    }
    assert!(
        same_except(&resp, &m, 1..8),
        "response accepted with authenticated bytes changed"
    );
    assert!(a.has_session());
    assert_eq!(a.cipher(), Some(cipher));
    if m[4..8] == resp[4..8] {
        roundtrip(&mut a, &mut b, 2, b"after a mutated response");
        roundtrip(&mut b, &mut a, 3, b"both ways");
    }
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
        _ => {}
    }
});
