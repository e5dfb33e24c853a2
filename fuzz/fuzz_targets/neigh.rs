//! The controller's ARP table (`proto::neigh::NeighTable`) driven by a sequence of events
//! decoded from the input. Each event is
//!
//!   `[op u8][dt u16 le][len u16 le][len bytes]`
//!
//! `op & 3`: 0 = an ARP frame punted from the local bridge (`on_local_arp`), 1 and 2 = an ICC
//! message (the bytes as JSON, through `IccMsg::from_json`) from peer P1 or P2 (`on_icc`),
//! 3 = `tick`. The clock advances by `dt` ms before the event, by `dt` s if `op & 0x80`.
//! Every check of the bridge the table asks for is answered at once: the MAC is on the bridge
//! if `op & 0x40` (`on_bridge_check`). A short final event takes what is left.
//!
//! Besides not panicking, the table must keep its invariants: every injected frame is a valid
//! ARP frame whose sender is a real unicast MAC, programmed MACs are unicast and name the peer
//! the message came from (or, after a withdrawal, the peer whose claim took over), a peer's
//! message releases only that peer's bindings, a withdrawal is sent only when the bridge no
//! longer has the MAC, and the table stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::icc::IccMsg;
use proto::id::Uid;
use proto::neigh::{NeighAction, NeighConfig, NeighTable};
use proto::wire::arp::ArpRepr;

const ME: Uid = Uid([0x11; 20]);
const P1: Uid = Uid([0x22; 20]);
const P2: Uid = Uid([0x33; 20]);
/// neigh.rs's MAX_ENTRIES.
const MAX_ENTRIES: usize = 16_384;

/// Where the actions came from.
#[derive(Clone, Copy)]
enum Source {
    Bridge,
    Peer(Uid, bool),
    Tick,
    /// `on_bridge_check` with the MAC gone from the bridge.
    Gone,
}

fn check(actions: &[NeighAction], source: Source) {
    let from = match source {
        Source::Peer(u, _) => Some(u),
        _ => None,
    };
    let withdrawal = matches!(source, Source::Peer(_, true));
    for a in actions {
        match a {
            NeighAction::Inject(frame) => {
                let (dst, src, arp) = ArpRepr::parse_frame(frame).expect("injected frame is ARP");
                assert!(!arp.sha.is_group() && !arp.sha.is_zero(), "{arp:?}");
                assert!(!src.is_group() && !src.is_zero(), "eth src {src}");
                let _ = dst;
            }
            NeighAction::ProgramMac { mac, uid } => {
                assert!(!mac.is_group() && !mac.is_zero(), "programmed {mac}");
                assert_ne!(*uid, ME, "MAC programmed behind ourselves");
                if let (Some(from), false) = (from, withdrawal) {
                    assert_eq!(*uid, from, "MAC programmed for another peer");
                }
            }
            NeighAction::IccBroadcast(m) | NeighAction::IccSend(_, m) => {
                // What we send parses back on the other side.
                assert_eq!(IccMsg::from_json(&m.to_json()).as_ref(), Ok(m));
                if let IccMsg::ArpReply { uid, .. } = m {
                    assert_eq!(*uid, ME, "we speak only for our own bridge");
                }
                if let IccMsg::ArpWithdraw { .. } = m {
                    assert!(matches!(source, Source::Gone), "withdrawn while on the bridge");
                }
            }
            NeighAction::ReleaseMac { mac, uid } => {
                assert!(!mac.is_group() && !mac.is_zero(), "released {mac}");
                match uid {
                    None => assert!(matches!(source, Source::Gone), "local binding released"),
                    Some(u) => assert_eq!(Some(*u), from, "released another peer's binding"),
                }
            }
            NeighAction::CheckBridge { mac } => {
                assert!(!mac.is_group() && !mac.is_zero(), "check for {mac}");
            }
            NeighAction::Conflict { .. } => {}
        }
    }
}

/// Answers the table's checks of the bridge: the MAC is there, or it is gone.
fn answer_checks(table: &mut NeighTable, actions: &[NeighAction], present: bool, now: u64) {
    for a in actions {
        if let NeighAction::CheckBridge { mac } = a {
            let answer = table.on_bridge_check(*mac, present, now);
            check(&answer, if present { Source::Tick } else { Source::Gone });
            assert!(
                present || !answer.iter().any(|a| matches!(a, NeighAction::CheckBridge { .. })),
                "a check answered with another check"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut table = NeighTable::new(ME, NeighConfig::default());
    let mut now: u64 = 0;
    let mut rest = data;
    while rest.len() >= 5 {
        let op = rest[0];
        let dt = u16::from_le_bytes([rest[1], rest[2]]) as u64;
        let len = u16::from_le_bytes([rest[3], rest[4]]) as usize;
        let len = len.min(rest.len() - 5);
        let body = &rest[5..5 + len];
        rest = &rest[5 + len..];
        now = now.saturating_add(if op & 0x80 != 0 { dt * 1000 } else { dt });
        match op & 3 {
            0 => {
                let actions = table.on_local_arp(body, now);
                check(&actions, Source::Bridge);
                answer_checks(&mut table, &actions, op & 0x40 != 0, now);
            }
            1 | 2 => {
                let from = if op & 3 == 1 { P1 } else { P2 };
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
                    continue;
                };
                let Ok(msg) = IccMsg::from_json(&v) else {
                    continue;
                };
                let withdrawal = matches!(msg, IccMsg::ArpWithdraw { .. });
                let actions = table.on_icc(from, &msg, now);
                check(&actions, Source::Peer(from, withdrawal));
                answer_checks(&mut table, &actions, op & 0x40 != 0, now);
            }
            _ => {
                let actions = table.tick(now);
                check(&actions, Source::Tick);
                answer_checks(&mut table, &actions, op & 0x40 != 0, now);
            }
        }
        assert!(table.entries().count() <= MAX_ENTRIES);
    }
    let _ = format!("{:?}", table.counters);
});
