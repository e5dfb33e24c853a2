//! The link core (`proto::link::LinkTable`) on any sequence of datagrams: two encrypted nodes
//! with a live session, and the input cut into datagrams, each from one of a few addresses
//! (the real peer's among them) at a growing time, fed to `handle_datagram`, with
//! `handle_timeout` run whenever `poll_timeout` says so.
//!
//! Checked besides "never panics": nothing forged is delivered (the fuzzer cannot make a sealed
//! message, so no frame or ICC message comes out); the link's endpoint never moves (only
//! authentic traffic moves it); `poll_timeout` is never at or before a time just handled, so
//! the loop that drives the core cannot spin; and the real peer's frames still arrive after it.
//!
//! Link fragments: some steps have the real peer send a frame of the fuzzer's size and checksum
//! state, which B receives with pieces dropped, repeated or reordered as the input says (what
//! comes out is always a frame the peer sent, whole); others hand a plaintext node fragments
//! with any header and piece behind a valid counted header. Reassembly stays within its
//! per-link and total bounds throughout.
//!
//! Handshake floods: some steps send B an init of the fuzzer's bytes with a valid mac1 (as
//! someone who knows B's public key would) from one of several addresses, and others put B
//! under load or take it out, so the cookie path (mac2 checks, cookie replies) runs too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::id::{Millis, Uid};
use proto::link::frag::{LINK_BUDGET, MAX_PENDING, TOTAL_BUDGET};
use proto::link::{
    Encapsulated, LinkTable, LocalConfig, Received, FRAME_HEADROOM, UNDER_LOAD_RATE,
};
use proto::offload::Csum;
use proto::secure::cookie::PeerMacs;
use proto::secure::StaticKey;
use proto::wire::link::{emit_header, MessageType, INIT_LEN};
use std::net::SocketAddr;
use std::sync::OnceLock;

const REKEY: Millis = 120_000;

fn keys() -> &'static (StaticKey, StaticKey) {
    static K: OnceLock<(StaticKey, StaticKey)> = OnceLock::new();
    K.get_or_init(|| {
        (
            StaticKey::from_private(&[0x11; 32]).expect("32 bytes"),
            StaticKey::from_private(&[0x22; 32]).expect("32 bytes"),
        )
    })
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 99, 0, i], 5900))
}

fn node(
    key: Option<&StaticKey>,
    uid: Uid,
    peer: Uid,
    peer_key: &StaticKey,
    peer_at: SocketAddr,
) -> LinkTable {
    let mut t = LinkTable::new(u64::from(uid.0[0]), 7, 1_700_000_000_000);
    t.configure(LocalConfig {
        uid,
        sec: key.is_some(),
        key: key.cloned(),
        cipher: Default::default(),
        rekey_after: REKEY,
    })
    .expect("configured");
    let fpr = key.map(|_| peer_key.fingerprint());
    t.create_link(0, peer, Some(peer_at), Vec::new(), fpr)
        .expect("link");
    t
}

/// Runs the handshake (or hellos) both ways until both are up.
fn link_up(a: &mut LinkTable, b: &mut LinkTable) {
    for _ in 0..3 {
        a.handle_timeout(0);
        b.handle_timeout(0);
        deliver(0, a, addr(1), b);
        deliver(0, b, addr(2), a);
    }
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
}

/// The bounds of reassembly hold on `t`.
fn check_bounds(t: &LinkTable) {
    let link = t.link(0).expect("link");
    assert!(link.frag_bytes() <= LINK_BUDGET, "over the link budget");
    assert!(
        link.frag_in_progress() <= MAX_PENDING,
        "too many in progress"
    );
    assert!(t.frag_bytes() <= TOTAL_BUDGET, "over the total budget");
}

/// A sends a frame of the input's size and checksum state; B gets its datagrams in the order
/// the input says, some dropped or repeated. Returns the bytes of the input used.
fn fragments_from_a(
    now: Millis,
    a: &mut LinkTable,
    b: &mut LinkTable,
    sent: &mut Vec<Vec<u8>>,
    op: &[u8],
) -> usize {
    let Some(&[len_hi, len_lo, csum, fate]) = op.get(..4).map(|o| <&[u8; 4]>::try_from(o).unwrap())
    else {
        return op.len();
    };
    let len = 14 + usize::from(u16::from_be_bytes([len_hi, len_lo]) % 12_000);
    let frame: Vec<u8> = (0..len).map(|i| (i as u8) ^ fate).collect();
    let mut plain = vec![0u8; FRAME_HEADROOM + len];
    plain[FRAME_HEADROOM..].copy_from_slice(&frame);
    let csum = if csum & 1 == 0 {
        Csum::Done
    } else {
        Csum::Partial {
            start: u16::from(csum >> 1),
            offset: 6,
        }
    };
    let mut out = vec![0u8; 20_000];
    let Ok(Encapsulated::Send { len: n, stride, .. }) =
        a.encapsulate(now, 0, &mut plain, csum, &mut out)
    else {
        return 4;
    };
    if sent.len() == 16 {
        sent.remove(0);
    }
    sent.push(frame);
    let mut dgrams: Vec<&[u8]> = out[..n].chunks(stride).collect();
    // The input's fate byte: reverse, drop the first, repeat the last.
    if fate & 1 != 0 {
        dgrams.reverse();
    }
    if fate & 2 != 0 {
        dgrams.remove(0);
    }
    if fate & 4 != 0 {
        dgrams.push(dgrams.last().copied().unwrap_or_default());
    }
    let mut back = vec![0u8; 65_536];
    for d in dgrams {
        match b.handle_datagram(now, addr(1), d, &mut back) {
            Received::Frame {
                range, csum: got, ..
            } => {
                assert!(
                    sent.iter().any(|f| f[..] == back[range.clone()]),
                    "a frame A never sent"
                );
                if back[range.clone()] == sent[sent.len() - 1][..] {
                    assert_eq!(got, csum, "the checksum state changed");
                }
            }
            Received::Icc { .. } => panic!("an ICC message out of a frame"),
            Received::Nothing => {}
        }
        check_bounds(b);
    }
    4
}

/// A plaintext fragment (type 9) with any meta and piece behind a valid counted header, for
/// the plaintext node `d`, whose link's index is `idx`.
fn plaintext_fragment(now: Millis, d: &mut LinkTable, idx: u32, counter: u64, body: &[u8]) {
    let mut msg = vec![0u8; 16 + body.len()];
    msg[16..].copy_from_slice(body);
    emit_header(&mut msg, MessageType::Fragment, idx, counter).expect("sized");
    let mut back = vec![0u8; 65_536];
    let _ = d.handle_datagram(now, addr(1), &msg, &mut back);
    check_bounds(d);
}

/// Moves every queued datagram of `from` (at `from_addr`) to `to`.
fn deliver(now: Millis, from: &mut LinkTable, from_addr: SocketAddr, to: &mut LinkTable) {
    let mut out = vec![0u8; 2048];
    while let Some(t) = from.poll_transmit() {
        let _ = to.handle_datagram(now, from_addr, &t.payload, &mut out);
    }
}

fn frame_from_a_arrives(now: Millis, a: &mut LinkTable, b: &mut LinkTable) -> bool {
    let mut plain = vec![0u8; FRAME_HEADROOM + 60];
    plain[FRAME_HEADROOM..FRAME_HEADROOM + 6].copy_from_slice(&[0xff; 6]);
    let mut out = vec![0u8; 2048];
    let Ok(Encapsulated::Send { len, .. }) =
        a.encapsulate(now, 0, &mut plain, Csum::Done, &mut out)
    else {
        return false;
    };
    let mut back = vec![0u8; 2048];
    matches!(
        b.handle_datagram(now, addr(1), &out[..len], &mut back),
        Received::Frame { .. }
    )
}

fuzz_target!(|data: &[u8]| {
    let (ka, kb) = keys();
    let (ua, ub) = (Uid([0xaa; 20]), Uid([0xbb; 20]));
    let mut a = node(Some(ka), ua, ub, kb, addr(2));
    let mut b = node(Some(kb), ub, ua, ka, addr(1));
    link_up(&mut a, &mut b);
    assert!(
        frame_from_a_arrives(0, &mut a, &mut b),
        "no session to start from"
    );
    let endpoint = b.link(0).expect("link").endpoint();
    // A plaintext pair for forged fragments.
    let mut c = node(None, ua, ub, kb, addr(2));
    let mut d = node(None, ub, ua, ka, addr(1));
    link_up(&mut c, &mut d);
    let d_idx = d.link(0).expect("link").live.local_idx;
    let mut counter = 1_000;
    let mut sent = Vec::new();

    let mut now: Millis = 1;
    let mut out = vec![0u8; 65_536];
    let mut rest = data;
    // Each step: [selector][time step][length][bytes]. Selector 0-3: a datagram to B from one
    // of four addresses; 4: A sends B a frame (4 bytes of input); 5: a plaintext fragment;
    // 6: an init with a valid mac1 made of the bytes; 7: B under load (odd length) or not.
    while rest.len() >= 3 {
        let (sel, step, len) = (rest[0] % 8, rest[1], usize::from(rest[2]) * 4);
        rest = &rest[3..];
        now += Millis::from(step);
        if sel == 4 {
            let used = fragments_from_a(now, &mut a, &mut b, &mut sent, rest);
            rest = &rest[used.min(rest.len())..];
            continue;
        }
        let len = len.min(rest.len());
        let (dgram, tail) = rest.split_at(len);
        rest = tail;
        if sel == 5 {
            counter += 1;
            plaintext_fragment(now, &mut d, d_idx, counter, dgram);
            continue;
        }
        if sel == 7 {
            b.set_handshake_load(if rest.len() % 2 == 1 { 0 } else { UNDER_LOAD_RATE });
            continue;
        }
        let mut init;
        let (dgram, from) = if sel == 6 {
            init = vec![0u8; INIT_LEN];
            for (i, x) in init.iter_mut().enumerate() {
                *x = dgram.get(i % dgram.len().max(1)).copied().unwrap_or(0);
            }
            init[0] = MessageType::Init as u8;
            PeerMacs::new(kb.public()).seal_init(&mut init, now);
            (&init[..], addr(100 + step % 4))
        } else if sel == 0 {
            (dgram, addr(1))
        } else {
            (dgram, addr(100 + sel))
        };
        match b.handle_datagram(now, from, dgram, &mut out) {
            Received::Nothing => {}
            other => panic!("forged datagram delivered: {other:?}"),
        }
        if b.poll_timeout().is_some_and(|t| t <= now) {
            b.handle_timeout(now);
            assert!(
                b.poll_timeout().is_none_or(|t| t > now),
                "poll_timeout at or before the time just handled"
            );
        }
        while b.poll_transmit().is_some() {}
        while b.poll_event().is_some() {}
        assert_eq!(
            b.link(0).expect("link").endpoint(),
            endpoint,
            "endpoint moved"
        );
        check_bounds(&b);
    }
    // Before the link could time out, the real peer still gets through.
    if now < 3_000 {
        assert!(
            frame_from_a_arrives(now, &mut a, &mut b),
            "real frames refused after the input"
        );
    }
});
