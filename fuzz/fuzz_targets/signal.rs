//! Link signalling (`proto::signal`) on what any XMPP account can send: the offer text of a
//! `con_req`/`con_resp` (`Offer::from_str`), the learned-keys file (`parse_learned`), and the
//! state machine driven by a sequence of events decoded from the input:
//!
//!   `[op u8][peer u8][dt u16 le][len u8][len bytes]`
//!
//! `op % 8`: 0 presence, 1 presence gone, 2 `con_req`, 3 `con_resp` (the bytes as the offer's
//! text; an offer that does not parse is dropped, as the controller drops it), 4 link up,
//! 5 link down, 6 tick, 7 our candidates change. `peer` picks one of 8 uids: 0 is our own,
//! 1 has a configured key. The clock advances by `dt` ms before the event.
//!
//! Checked besides "never panics": an offer that parses prints back to itself; no action ever
//! names our own uid; the peer with a configured key is only ever linked with that key; and a
//! signalled peer, once linked with a key, is linked with no other (nothing here forgets keys).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::id::{Candidate, Fingerprint, Uid};
use proto::signal::{parse_learned, Offer, SignalAction, Signalling};
use std::collections::HashMap;

fn uid(i: u8) -> Uid {
    Uid([0x10 + i; Uid::LEN])
}

fn fpr(i: u8) -> Fingerprint {
    Fingerprint([0xa0 + i; Fingerprint::LEN])
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(offer) = text.parse::<Offer>() {
        let again: Offer = offer
            .to_string()
            .parse()
            .expect("an offer prints to its own text");
        assert_eq!(again, offer);
    }
    let (keys, _) = parse_learned(&text);
    assert!(keys.len() <= proto::signal::MAX_LEARNED_KEYS);

    let own = uid(0);
    let pinned = uid(1);
    let mut s = Signalling::new(own, fpr(0), 15);
    s.pin_configured(pinned, fpr(1));
    let mut linked_with: HashMap<Uid, Fingerprint> = HashMap::new();
    let mut now = 0u64;
    let mut rest = data;
    while rest.len() >= 5 {
        let (op, peer) = (rest[0] % 8, uid(rest[1] % 8));
        now += u16::from_le_bytes([rest[2], rest[3]]) as u64;
        let len = (rest[4] as usize).min(rest.len() - 5);
        let body = &rest[5..5 + len];
        rest = &rest[5 + len..];
        let actions = match op {
            0 => s.on_available(peer, now),
            1 => s.on_unavailable(peer),
            2 | 3 => {
                let Ok(offer) = String::from_utf8_lossy(body).parse::<Offer>() else {
                    continue;
                };
                let msg_type = if op == 2 { "con_req" } else { "con_resp" };
                s.on_message(peer, msg_type, &offer, now)
            }
            4 | 5 => {
                s.on_link_status(peer, op == 4, now);
                Vec::new()
            }
            6 => s.tick(now),
            _ => {
                let candidates: Vec<Candidate> = String::from_utf8_lossy(body)
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                s.set_candidates(candidates, now)
            }
        };
        for a in actions {
            let named = match &a {
                SignalAction::Send { uid, .. } | SignalAction::TrimLink { uid } => *uid,
                SignalAction::CreateLink { uid, fpr: key, .. } => {
                    if *uid == pinned {
                        assert_eq!(*key, fpr(1), "the configured peer linked with another key");
                    }
                    let first = *linked_with.entry(*uid).or_insert(*key);
                    assert_eq!(first, *key, "a signalled peer was linked with a second key");
                    *uid
                }
            };
            assert_ne!(named, own, "an action for our own uid: {a:?}");
        }
        let _ = s.take_learned();
        let _ = s.take_refusals();
    }
});
