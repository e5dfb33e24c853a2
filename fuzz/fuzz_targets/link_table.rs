//! The link core (`proto::link::LinkTable`) on any sequence of datagrams: two encrypted nodes
//! with a live session, and the input cut into datagrams, each from one of a few addresses
//! (the real peer's among them) at a growing time, fed to `handle_datagram`, with
//! `handle_timeout` run whenever `poll_timeout` says so.
//!
//! Checked besides "never panics": nothing forged is delivered (the fuzzer cannot make a sealed
//! message, so no frame or ICC message comes out); the link's endpoint never moves (only
//! authentic traffic moves it); `poll_timeout` is never at or before a time just handled, so
//! the loop that drives the core cannot spin; and the real peer's frames still arrive after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::id::{Millis, Uid};
use proto::link::{Encapsulated, LinkTable, LocalConfig, Received, FRAME_HEADROOM};
use proto::secure::StaticKey;
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
    key: &StaticKey,
    uid: Uid,
    peer: Uid,
    peer_key: &StaticKey,
    peer_at: SocketAddr,
) -> LinkTable {
    let mut t = LinkTable::new(u64::from(uid.0[0]), 7, 1_700_000_000_000);
    t.configure(LocalConfig {
        uid,
        sec: true,
        key: Some(key.clone()),
        rekey_after: REKEY,
    })
    .expect("configured");
    t.create_link(
        0,
        peer,
        Some(peer_at),
        Vec::new(),
        Some(peer_key.fingerprint()),
    )
    .expect("link");
    t
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
    let Ok(Encapsulated::Send { len, .. }) = a.encapsulate(now, 0, &mut plain, &mut out) else {
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
    let mut a = node(ka, ua, ub, kb, addr(2));
    let mut b = node(kb, ub, ua, ka, addr(1));
    // The handshake, both ways, until both are up.
    for _ in 0..3 {
        a.handle_timeout(0);
        b.handle_timeout(0);
        deliver(0, &mut a, addr(1), &mut b);
        deliver(0, &mut b, addr(2), &mut a);
    }
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    assert!(
        frame_from_a_arrives(0, &mut a, &mut b),
        "no session to start from"
    );
    let endpoint = b.link(0).expect("link").endpoint();

    let mut now: Millis = 1;
    let mut out = vec![0u8; 65_536];
    let mut rest = data;
    // Each datagram: [source selector][time step][length][bytes].
    while rest.len() >= 3 {
        let (src, step, len) = (rest[0] % 4, rest[1], usize::from(rest[2]) * 4);
        rest = &rest[3..];
        let len = len.min(rest.len());
        let (dgram, tail) = rest.split_at(len);
        rest = tail;
        now += Millis::from(step);
        let from = if src == 0 { addr(1) } else { addr(100 + src) };
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
    }
    // Before the link could time out, the real peer still gets through.
    if now < 3_000 {
        assert!(
            frame_from_a_arrives(now, &mut a, &mut b),
            "real frames refused after the input"
        );
    }
});
