//! Session indices: the slot in the low 16 bits, never one the slot still (or just) used.

use super::*;
use crate::wire::link::{emit_header, InitView, DATA_HEADER_LEN};

/// What `next_random` adds to the generator's state per call.
const STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// A plaintext data message for index `idx`.
fn plain_data(idx: u32, frame: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; DATA_HEADER_LEN + frame.len()];
    m[DATA_HEADER_LEN..].copy_from_slice(frame);
    emit_header(&mut m, MessageType::Data, idx, 1).unwrap();
    m
}

#[test]
fn a_trimmed_slot_is_reused_with_another_index() {
    let mut a = Node::new(1, false, LONG);
    let peers: Vec<Node> = (2..5).map(|n| Node::new(n, false, LONG)).collect();
    let mut before = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        before.push(a.t.rng);
        assert_eq!(a.link_to(0, p), i);
        let idx = a.t.link(i).unwrap().live.local_idx;
        assert_eq!(idx & 0xffff, i as u32, "slot in the low bits");
    }
    let old = a.t.link(1).unwrap().live.local_idx;
    assert_eq!(a.t.trim_link(&peers[1].uid), Ok(1));
    // The message the old peer still sends is dropped.
    assert_eq!(
        a.recv(0, peers[1].addr, &plain_data(old, b"x")),
        Got::Nothing
    );
    assert_eq!(a.t.counters().drop_unknown_index, 1);
    // The next link takes slot 1; even when the generator draws the old index again (here
    // made certain by rewinding it), the new link gets another.
    a.t.rng = before[1];
    let c = Node::new(9, false, LONG);
    assert_eq!(a.link_to(0, &c), 1);
    let new = a.t.link(1).unwrap().live.local_idx;
    assert_eq!(new & 0xffff, 1);
    assert_ne!(new, old);
    assert_eq!(
        a.recv(0, peers[1].addr, &plain_data(old, b"x")),
        Got::Nothing
    );
    assert_eq!(a.t.counters().drop_unknown_index, 2);
    // The new index reaches the new link.
    assert_eq!(
        a.recv(0, c.addr, &plain_data(new, b"y")),
        Got::Frame(1, b"y".to_vec())
    );
}

#[test]
fn messages_for_a_trimmed_links_sessions_are_dropped() {
    let mut p = Pair::new(true, LONG);
    p.frames_cross("up");
    // B seals a frame on the session; A trims B and links to C in the same slot.
    let stale = p.seal(Dir::BtoA, b"late");
    let b_uid = p.b.uid;
    assert_eq!(p.a.t.trim_link(&b_uid), Ok(p.ab));
    let c = Node::new(3, true, LONG);
    assert_eq!(p.a.link_to(0, &c), p.ab);
    let from = p.b.addr;
    assert_eq!(p.a.recv(0, from, &stale.payload), Got::Nothing);
    assert_eq!(p.a.t.counters().drop_unknown_index, 1);
    assert_eq!(p.a.t.counters().drop_auth, 0);
}

#[test]
fn a_new_session_never_takes_an_index_the_link_still_owns() {
    let rekey = 10_000;
    let mut p = Pair::new(true, rekey);
    let first = p.log.iter().find(|s| s.kind() == Some(MessageType::Init));
    let x = InitView::parse(&first.unwrap().payload).unwrap().sender_idx;
    assert_eq!(x & 0xffff, p.ab as u32);
    // Rewind A's generator so that its next draw is the index of the current session.
    p.a.t.rng = p.a.t.rng.wrapping_sub(STEP);
    let rewound = p.a.t.rng;
    assert_eq!(p.a.t.next_random() as u32 & 0xffff_0000, x & 0xffff_0000);
    p.a.t.rng = rewound;
    p.run_until(rekey);
    let rekey_init = p
        .log
        .iter()
        .rev()
        .find(|s| s.kind() == Some(MessageType::Init));
    let rekey_init = rekey_init.unwrap();
    assert_eq!(rekey_init.at, rekey);
    let y = InitView::parse(&rekey_init.payload).unwrap().sender_idx;
    assert_ne!(
        y, x,
        "the rekey reused the index of the session it replaces"
    );
    assert_eq!(y & 0xffff, p.ab as u32);
    assert_eq!(
        p.a.t.rng,
        rewound.wrapping_add(STEP.wrapping_mul(2)),
        "drew twice"
    );
    // Both sessions work: the new one now, and the old one for what was in flight.
    p.frames_cross("after rekey");
    assert_eq!(p.downs(), 0);
}
