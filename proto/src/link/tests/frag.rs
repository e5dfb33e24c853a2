//! Link fragments end to end: frames larger than one link datagram arrive whole, with their
//! checksum state, through loss, duplicates and reordering; reassembly stays within its bounds
//! whatever a peer sends; large ICC messages cross too.

use super::*;
use crate::link::frag::{LINK_BUDGET, MAX_PENDING, REASSEMBLY_TIMEOUT, TOTAL_BUDGET};
use crate::wire::link::{FragHeader, DATA_HEADER_LEN, FRAG_META_LEN};

/// A frame of `len` bytes whose content depends on `seed`.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A linked pair, up at time 10.
fn linked(sec: bool) -> Pair {
    let mut p = Pair::new(sec, LONG);
    p.run_until(10);
    assert!(p.a.up(p.ab) && p.b.up(p.ba));
    p
}

/// A's datagrams for `f` (with `csum`) on its link to B.
fn cut(p: &mut Pair, f: &[u8], csum: Csum) -> Vec<Transmit> {
    let now = p.now;
    p.a.datagrams(now, p.ab, f, csum).unwrap()
}

/// Hands `datagrams` to B; returns what came out of each.
fn to_b(p: &mut Pair, datagrams: &[Transmit]) -> Vec<(Got, Csum)> {
    let (now, from) = (p.now, p.a.addr);
    datagrams
        .iter()
        .map(|d| p.b.recv_csum(now, from, &d.payload))
        .collect()
}

/// What arrived whole: the frames among `got`.
fn frames(got: &[(Got, Csum)]) -> Vec<Vec<u8>> {
    got.iter()
        .filter_map(|(g, _)| match g {
            Got::Frame(_, f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_full_size_frame_crosses_a_1500_byte_underlay_whole() {
    for sec in [true, false] {
        let mut p = linked(sec);
        let big = frame(1514, 1);
        let d = cut(&mut p, &big, Csum::Done);
        // Two equal halves, each within 1500 - 28 on the underlay.
        assert_eq!(d.len(), 2, "sec {sec}");
        assert!(d
            .iter()
            .all(|t| t.payload.len() <= 1472 && t.to == p.b.addr));
        assert!(d[0].payload.len() >= d[1].payload.len());
        assert!(d[0].payload.len() - d[1].payload.len() <= 1);
        let got = to_b(&mut p, &d);
        assert_eq!(
            got[0].0,
            Got::Nothing,
            "sec {sec}: the first half alone is no frame"
        );
        assert_eq!(got[1], (Got::Frame(p.ba, big.clone()), Csum::Done));
        let (a, b) = (p.a.t.counters().frag, p.b.t.counters().frag);
        assert_eq!((a.frag_tx, b.frag_rx, b.frag_reassembled), (2, 2, 1));
        assert_eq!(
            p.b.t.link(p.ba).unwrap().frag_counters().frag_reassembled,
            1
        );
        assert_eq!(p.b.t.frag_bytes(), 0);
        // The largest frame that fits one datagram still goes whole, one more byte does not.
        // Sealed: header, inner type, frame, tag; plaintext: header, frame.
        let max = 1472 - DATA_HEADER_LEN - if sec { 1 + 16 } else { 0 };
        assert_eq!(cut(&mut p, &frame(max, 2), Csum::Done).len(), 1);
        assert_eq!(cut(&mut p, &frame(max + 1, 2), Csum::Done).len(), 2);
        // Frames keep crossing both ways afterwards.
        p.frames_cross("after");
    }
}

#[test]
fn the_checksum_state_crosses_with_the_frame() {
    for sec in [true, false] {
        let mut p = linked(sec);
        let partial = Csum::Partial {
            start: 34,
            offset: 16,
        };
        for len in [100, 1514, 9000] {
            let f = frame(len, 3);
            let d = cut(&mut p, &f, partial);
            let got = to_b(&mut p, &d);
            assert_eq!(
                got.last().unwrap(),
                &(Got::Frame(p.ba, f), partial),
                "sec {sec} len {len}"
            );
        }
        // A checksum field outside the frame is refused by the sender's peer.
        let d = cut(
            &mut p,
            &frame(40, 4),
            Csum::Partial {
                start: 34,
                offset: 6,
            },
        );
        let bad = p.b.t.counters().drop_bad_link_message;
        assert_eq!(to_b(&mut p, &d)[0].0, Got::Nothing);
        assert_eq!(p.b.t.counters().drop_bad_link_message, bad + 1);
    }
}

#[test]
fn reordered_duplicated_and_lost_fragments() {
    for sec in [true, false] {
        let mut p = linked(sec);
        let f = frame(6_000, 5);
        // Reordered: the last piece first.
        let mut d = cut(&mut p, &f, Csum::Done);
        assert_eq!(d.len(), 5, "sec {sec}");
        d.reverse();
        assert_eq!(frames(&to_b(&mut p, &d)), [&f[..]], "sec {sec} reversed");
        // Every fragment twice: delivered once. The copies are replays, sealed or plaintext.
        let d = cut(&mut p, &f, Csum::Done);
        let twice: Vec<Transmit> = d.iter().flat_map(|t| [t.clone(), t.clone()]).collect();
        assert_eq!(frames(&to_b(&mut p, &twice)), [&f[..]], "sec {sec} dup");
        assert_eq!(p.b.t.counters().drop_replay, 5, "sec {sec}");
        // One piece lost: nothing comes out, and the message is dropped after its age limit.
        let d = cut(&mut p, &f, Csum::Done);
        let got = to_b(&mut p, &d[..4]);
        assert!(frames(&got).is_empty());
        assert_eq!(p.b.t.frag_bytes(), f.len() + 1);
        let t = p.now + REASSEMBLY_TIMEOUT;
        p.run_until(t);
        assert_eq!(p.b.t.counters().frag.frag_drop_expired, 1, "sec {sec}");
        assert_eq!(p.b.t.frag_bytes(), 0);
        // The late piece then starts a message that cannot complete, and is not delivered.
        assert!(frames(&to_b(&mut p, &d[4..])).is_empty());
        // Interleaved messages both arrive.
        let (f1, f2) = (frame(3_000, 6), frame(4_000, 7));
        let (d1, d2) = (cut(&mut p, &f1, Csum::Done), cut(&mut p, &f2, Csum::Done));
        let mixed = d1.iter().zip(&d2).flat_map(|(x, y)| [y.clone(), x.clone()]);
        let mixed: Vec<Transmit> = mixed.chain(d2[d1.len()..].iter().cloned()).collect();
        let mut got = frames(&to_b(&mut p, &mixed));
        got.sort_by_key(Vec::len);
        assert_eq!(got, [f1, f2], "sec {sec} interleaved");
        p.frames_cross("after");
    }
}

#[test]
fn a_datagram_the_underlay_delivers_twice_is_one_frame() {
    for sec in [true, false] {
        let mut p = linked(sec);
        let (f1, f2) = (frame(200, 1), frame(300, 2));
        let (d1, d2) = (cut(&mut p, &f1, Csum::Done), cut(&mut p, &f2, Csum::Done));
        assert_eq!((d1.len(), d2.len()), (1, 1), "sec {sec}");
        // Reordered and each twice: the second, the first, then both again.
        let got = to_b(
            &mut p,
            &[d2[0].clone(), d1[0].clone(), d2[0].clone(), d1[0].clone()],
        );
        assert_eq!(frames(&got), [f2, f1], "sec {sec}");
        assert_eq!(p.b.t.counters().drop_replay, 2, "sec {sec}");
        p.frames_cross(&format!("sec {sec} after the copies"));
    }
}

#[test]
fn the_underlay_mtu_sets_the_datagram_size() {
    let mut p = linked(true);
    let f = frame(5_000, 8);
    assert!(p.a.t.set_link_mtu(575).is_err() && p.a.t.set_link_mtu(9001).is_err());
    p.a.t.set_link_mtu(9000).unwrap();
    assert_eq!(cut(&mut p, &f, Csum::Done).len(), 1);
    p.a.t.set_link_mtu(576).unwrap();
    let d = cut(&mut p, &f, Csum::Done);
    assert!(d.len() >= 10 && d.iter().all(|t| t.payload.len() <= 548));
    assert_eq!(frames(&to_b(&mut p, &d)), [&f[..]]);
    // One link's own MTU wins over the table's.
    p.a.t.set_link_mtu_of(p.ab, Some(1400)).unwrap();
    let d = cut(&mut p, &f, Csum::Done);
    assert!(d.iter().all(|t| t.payload.len() <= 1372) && d.len() == 4);
    assert_eq!(frames(&to_b(&mut p, &d)), [f]);
    // Nothing larger than a fragment can carry is sent.
    let huge = frame(70_000, 9);
    assert_eq!(
        p.a.datagrams(p.now, p.ab, &huge, Csum::Done),
        Err(SendError::TooLarge)
    );
}

#[test]
fn a_large_icc_message_crosses_in_fragments() {
    for sec in [true, false] {
        let mut p = linked(sec);
        let body = "x".repeat(20_000);
        let msg = format!(r#"{{"big":"{body}"}}"#);
        let now = p.now;
        p.a.t.send_icc(now, p.ab, msg.as_bytes()).unwrap();
        let d = p.a.transmits();
        assert!(d.len() >= 14 && d.iter().all(|t| t.payload.len() <= 1472));
        let got = to_b(&mut p, &d);
        let icc: Vec<&Got> = got
            .iter()
            .map(|g| &g.0)
            .filter(|g| **g != Got::Nothing)
            .collect();
        assert_eq!(icc, [&Got::Icc(p.ba, msg.into_bytes())], "sec {sec}");
        assert_eq!(p.b.t.counters().icc_rx, 1);
    }
}

/// A fragment datagram from A to B with an arbitrary header and piece: sealed on A's session
/// (an authenticated but hostile peer) or plaintext.
fn forged(p: &mut Pair, h: &[u8; FRAG_META_LEN], piece: &[u8]) -> Vec<u8> {
    let mut inner = vec![MessageType::Fragment as u8];
    inner.extend_from_slice(h);
    inner.extend_from_slice(piece);
    let mut out = vec![0u8; inner.len() + 64];
    let now = p.now;
    let n = p.a.t.seal_one(now, p.ab, &inner, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn a_hostile_peer_spraying_fragments_stays_within_the_bounds() {
    for sec in [true, false] {
        let mut p = linked(sec);
        let mut rng = 0x1234_5678_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let sprayed = 3_000;
        for i in 0..sprayed {
            let r = next();
            let mut h = [0u8; FRAG_META_LEN];
            // Few ids (so some collide), totals up to past the largest, any index and count;
            // every 3rd one consistent, so state does build up.
            let total = (r >> 8) as u32 % 70_000;
            let count = (r >> 40) as u8;
            let h2 = FragHeader {
                id: (r % 64) as u32,
                total,
                index: (r >> 48) as u8 % count.max(1),
                count,
            };
            h2.emit(&mut h).unwrap();
            let len = match (i % 3, h2.piece()) {
                (0, Some(range)) => range.len(),
                _ => (r >> 20) as usize % 1_400,
            };
            let d = forged(&mut p, &h, &vec![0xa5; len]);
            p.now += next() % 3;
            let (now, from) = (p.now, p.a.addr);
            // Reassembled junk is refused (its inner type is not one a message may have), and
            // nothing panics.
            let _ = p.b.recv(now, from, &d);
            let link = p.b.t.link(p.ba).unwrap();
            assert!(link.frag_bytes() <= LINK_BUDGET, "sec {sec}");
            assert!(link.frag_in_progress() <= MAX_PENDING);
            assert!(p.b.t.frag_bytes() <= TOTAL_BUDGET);
            assert_eq!(p.b.t.frag_bytes(), link.frag_bytes());
        }
        let c = p.b.t.counters().frag;
        assert_eq!(c.frag_rx, sprayed, "sec {sec}");
        assert!(c.frag_drop_invalid > sprayed / 2, "{c:?}");
        assert!(c.frag_drop_budget + c.frag_drop_expired > 0, "{c:?}");
        // A real frame from the same peer still arrives whole.
        let f = frame(1514, 10);
        let d = cut(&mut p, &f, Csum::Done);
        assert_eq!(frames(&to_b(&mut p, &d)), [f], "sec {sec}");
        // Short or truncated fragment headers are refused, not read past their end.
        for n in 0..FRAG_META_LEN {
            let d = forged(&mut p, &[0xff; FRAG_META_LEN], &[]);
            let d = &d[..d.len().min(DATA_HEADER_LEN + n)];
            let (now, from) = (p.now, p.a.addr);
            assert_eq!(p.b.recv(now, from, d), Got::Nothing);
        }
    }
}

#[test]
fn a_segment_of_max_whole_frame_bytes_crosses_in_one_datagram() {
    let partial = Csum::Partial {
        start: 34,
        offset: 16,
    };
    for sec in [true, false] {
        let mut p = linked(sec);
        let max = p.a.t.max_whole_frame(p.ab);
        // Sealed at link_mtu 1500: 1472 less header, type, csum meta and tag.
        assert_eq!(max, 1472 - DATA_HEADER_LEN - if sec { 16 + 5 } else { 4 });
        assert_eq!(cut(&mut p, &frame(max, 5), partial).len(), 1, "sec {sec}");
        assert_eq!(
            cut(&mut p, &frame(max + 1, 5), partial).len(),
            2,
            "sec {sec}"
        );
        assert_eq!(p.a.t.max_whole_frame(99), 0);
    }
}

#[test]
fn a_peer_reached_over_ipv6_gets_datagrams_20_bytes_smaller() {
    let (mut a, mut b) = (Node::new(1, true, LONG), Node::new(2, true, LONG));
    a.addr = addr("[fd99::1]:5900");
    b.addr = addr("[fd99::2]:5900");
    let mut p = Pair::of(a, b);
    p.run_until(10);
    assert!(p.a.up(p.ab) && p.b.up(p.ba));
    let v4 = linked(true);
    let max = p.a.t.max_whole_frame(p.ab);
    assert_eq!(max + 20, v4.a.t.max_whole_frame(v4.ab));
    // What fits crosses whole, and each datagram is within link_mtu with IPv6 and UDP headers.
    let partial = Csum::Partial {
        start: 34,
        offset: 16,
    };
    for len in [max, max + 1, 9000] {
        for d in cut(&mut p, &frame(len, 5), partial) {
            assert!(d.payload.len() + 48 <= 1500, "{} bytes", d.payload.len());
        }
    }
    assert_eq!(cut(&mut p, &frame(max, 5), partial).len(), 1);
    let datagrams = cut(&mut p, &frame(9000, 5), partial);
    let whole = frames(&to_b(&mut p, &datagrams));
    assert_eq!(whole, [frame(9000, 5)]);
}
