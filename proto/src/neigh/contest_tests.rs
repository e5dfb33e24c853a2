//! Moves and conflicts: claims for a held IP wait beside the entry until its owner gives it up.

use super::super::tests::{icc_reply, ip, mac, request, table, OTHER, PEER};
use super::*;
use crate::wire::arp::ArpRepr;

fn claim(target: u8, m: MacAddr, owner: Uid) -> IccMsg {
    IccMsg::ArpReply {
        target_ip4: ip(target),
        mac: m.to_string(),
        uid: owner,
    }
}

fn withdraw(target: u8, m: MacAddr) -> IccMsg {
    IccMsg::ArpWithdraw {
        target_ip4: ip(target),
        mac: m.to_string(),
    }
}

fn owner_of(t: &NeighTable, target: u8) -> Option<(MacAddr, Owner)> {
    t.get(&ip(target)).map(|e| (e.mac, e.owner))
}

fn refused(t: &NeighTable, uid: Uid) -> u64 {
    t.peer_claims()
        .find(|(u, _)| **u == uid)
        .map_or(0, |(_, p)| p.claims_refused)
}

fn changes_nothing(actions: &[NeighAction]) -> bool {
    !actions.iter().any(|a| {
        matches!(
            a,
            NeighAction::ProgramMac { .. }
                | NeighAction::Inject(_)
                | NeighAction::ReleaseMac { .. }
                | NeighAction::IccBroadcast(IccMsg::ArpWithdraw { .. })
        )
    })
}

#[test]
fn a_host_that_left_our_bridge_moves_to_the_peer_that_claims_it() {
    let mut t = table();
    t.on_local_arp(&request(11, 1), 0); // 10.0.3.11 at mac(11) on our bridge
                                        // PEER announces the same host: we ask our bridge before anything changes.
    let a = t.on_icc(PEER, &icc_reply(11, PEER), 10);
    assert_eq!(a, vec![NeighAction::CheckBridge { mac: mac(11) }]);
    assert_eq!(owner_of(&t, 11), Some((mac(11), Owner::Local)));
    // The bridge no longer has it: released here, withdrawn everywhere, now behind PEER.
    let a = t.on_bridge_check(mac(11), false, 20);
    assert_eq!(
        a,
        vec![
            NeighAction::ReleaseMac {
                mac: mac(11),
                uid: None
            },
            NeighAction::IccBroadcast(withdraw(11, mac(11))),
            NeighAction::ProgramMac {
                mac: mac(11),
                uid: PEER
            },
        ]
    );
    assert_eq!(owner_of(&t, 11), Some((mac(11), Owner::Peer(PEER))));
    assert_eq!(t.contests().count(), 0);
    assert_eq!(refused(&t, PEER), 0);
    assert_eq!((t.counters.released, t.counters.contests_settled), (1, 1));
}

#[test]
fn a_peer_cannot_move_a_host_that_is_still_on_our_bridge() {
    let mut t = table();
    t.on_local_arp(&request(11, 1), 0);
    let a = t.on_icc(PEER, &icc_reply(11, PEER), 10);
    assert_eq!(a, vec![NeighAction::CheckBridge { mac: mac(11) }]);
    // Still on a port of the bridge: a conflict, reported once, naming both; local kept.
    let a = t.on_bridge_check(mac(11), true, 20);
    assert_eq!(
        a,
        vec![NeighAction::Conflict {
            ip: ip(11),
            kept_mac: mac(11),
            kept_owner: Owner::Local,
            claimed_mac: mac(11),
            claimed_by: Owner::Peer(PEER),
        }]
    );
    assert!(t.on_bridge_check(mac(11), true, 30).is_empty());
    assert_eq!(owner_of(&t, 11), Some((mac(11), Owner::Local)));
    assert_eq!(refused(&t, PEER), 1);
    // The claim repeated is refused and counted; the bridge is checked every tick meanwhile.
    assert!(changes_nothing(&t.on_icc(PEER, &icc_reply(11, PEER), 40)));
    assert_eq!(refused(&t, PEER), 2);
    assert_eq!(
        t.tick(1_000),
        vec![NeighAction::CheckBridge { mac: mac(11) }]
    );
    // This host's own address never moves, whatever the bridge says.
    t.pin_local(ip(1));
    t.on_local_arp(&request(1, 11), 50);
    t.on_icc(PEER, &claim(1, mac(1), PEER), 60);
    assert!(changes_nothing(&t.on_bridge_check(mac(1), false, 70)));
    assert_eq!(owner_of(&t, 1), Some((mac(1), Owner::Local)));
}

#[test]
fn a_third_party_moves_a_host_when_its_old_owner_withdraws_it() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    // OTHER announces PEER's host: held, not taken.
    assert!(changes_nothing(&t.on_icc(OTHER, &icc_reply(21, OTHER), 10)));
    assert_eq!(owner_of(&t, 21), Some((mac(21), Owner::Peer(PEER))));
    // OTHER cannot withdraw what PEER holds.
    t.on_icc(PEER, &icc_reply(22, PEER), 12);
    assert!(t.on_icc(OTHER, &withdraw(22, mac(22)), 15).is_empty());
    assert_eq!(t.counters.withdrawals_ignored, 1);
    assert_eq!(owner_of(&t, 22), Some((mac(22), Owner::Peer(PEER))));
    // PEER withdraws it: tincan drops PEER's binding, OTHER's claim takes over at once.
    let a = t.on_icc(PEER, &withdraw(21, mac(21)), 20);
    assert_eq!(
        a,
        vec![
            NeighAction::ReleaseMac {
                mac: mac(21),
                uid: Some(PEER)
            },
            NeighAction::ProgramMac {
                mac: mac(21),
                uid: OTHER
            },
        ]
    );
    assert_eq!(owner_of(&t, 21), Some((mac(21), Owner::Peer(OTHER))));
    assert_eq!(t.contests().count(), 0);
}

#[test]
fn a_withdrawal_that_arrives_before_the_new_claim_frees_the_address() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    let a = t.on_icc(PEER, &withdraw(21, mac(21)), 10);
    assert_eq!(
        a,
        vec![NeighAction::ReleaseMac {
            mac: mac(21),
            uid: Some(PEER)
        }]
    );
    assert!(t.get(&ip(21)).is_none());
    let a = t.on_icc(OTHER, &icc_reply(21, OTHER), 20);
    assert!(a.contains(&NeighAction::ProgramMac {
        mac: mac(21),
        uid: OTHER
    }));
}

#[test]
fn a_conflict_between_peers_keeps_the_first_owner_and_clears_when_the_claimant_goes() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    let a = t.on_icc(OTHER, &claim(21, mac(99), OTHER), 10);
    assert_eq!(
        a,
        vec![NeighAction::Conflict {
            ip: ip(21),
            kept_mac: mac(21),
            kept_owner: Owner::Peer(PEER),
            claimed_mac: mac(99),
            claimed_by: Owner::Peer(OTHER),
        }]
    );
    // Reported once, however often the claim is repeated; what the report kept is kept.
    assert!(t.on_icc(OTHER, &claim(21, mac(99), OTHER), 20).is_empty());
    assert_eq!(t.counters.conflicts, 1);
    assert_eq!(owner_of(&t, 21), Some((mac(21), Owner::Peer(PEER))));
    assert_eq!(t.answerable(30).get(&ip(21)), Some(&mac(21)));
    let listed: Vec<_> = t
        .contests()
        .map(|(ip, e, c)| (*ip, e.mac, e.owner, c.mac, c.by))
        .collect();
    assert_eq!(
        listed,
        vec![(ip(21), mac(21), Owner::Peer(PEER), mac(99), OTHER)]
    );
    // The claimant withdraws its host: the conflict is gone, the first owner stays.
    assert!(changes_nothing(&t.on_icc(
        OTHER,
        &withdraw(21, mac(99)),
        40
    )));
    assert_eq!(t.contests().count(), 0);
    assert_eq!(owner_of(&t, 21), Some((mac(21), Owner::Peer(PEER))));
    // Or its link goes down.
    t.on_icc(OTHER, &claim(21, mac(99), OTHER), 50);
    assert_eq!(t.contests().count(), 1);
    t.remove_owner(OTHER);
    assert_eq!(t.contests().count(), 0);
}

#[test]
fn a_conflict_clears_when_the_first_owner_goes_and_the_claim_takes_over() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    t.on_icc(OTHER, &claim(21, mac(99), OTHER), 10);
    t.remove_owner(PEER);
    let a = t.tick(1_000);
    assert!(a.contains(&NeighAction::ProgramMac {
        mac: mac(99),
        uid: OTHER
    }));
    // The hosts on our bridge learn the new MAC from a gratuitous ARP.
    assert!(
        a.iter().any(|a| matches!(a, NeighAction::Inject(f)
            if ArpRepr::parse_frame(f).is_ok_and(|(_, _, r)| r.sha == mac(99) && r.is_gratuitous()))),
        "{a:?}"
    );
    assert_eq!(owner_of(&t, 21), Some((mac(99), Owner::Peer(OTHER))));
    assert_eq!(t.contests().count(), 0);
}

#[test]
fn a_local_conflict_keeps_our_host_until_it_leaves_the_bridge() {
    let mut t = table();
    t.on_local_arp(&request(11, 1), 0);
    let a = t.on_icc(PEER, &claim(11, mac(99), PEER), 10);
    assert!(matches!(a[..], [NeighAction::Conflict { .. }]), "{a:?}");
    assert_eq!(refused(&t, PEER), 1);
    assert_eq!(
        t.tick(1_000),
        vec![NeighAction::CheckBridge { mac: mac(11) }]
    );
    assert!(t.on_bridge_check(mac(11), true, 1_001).is_empty());
    assert_eq!(owner_of(&t, 11), Some((mac(11), Owner::Local)));
    // Our host left: PEER's host takes the address, and our bridge hears of its MAC.
    let a = t.on_bridge_check(mac(11), false, 2_000);
    assert!(a.contains(&NeighAction::IccBroadcast(withdraw(11, mac(11)))));
    assert!(a.contains(&NeighAction::ProgramMac {
        mac: mac(99),
        uid: PEER
    }));
    assert!(a.iter().any(|a| matches!(a, NeighAction::Inject(_))));
    assert_eq!(owner_of(&t, 11), Some((mac(99), Owner::Peer(PEER))));
}

#[test]
fn our_bridge_claiming_a_peers_ip_keeps_ours_and_lists_the_peer_as_contesting() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    // A host on our bridge announces 10.0.3.21 with another MAC.
    let garp = arp_request_frame(mac(77), ip(21), ip(21));
    let a = t.on_local_arp(&garp, 10);
    assert!(a.contains(&NeighAction::Conflict {
        ip: ip(21),
        kept_mac: mac(77),
        kept_owner: Owner::Local,
        claimed_mac: mac(21),
        claimed_by: Owner::Peer(PEER),
    }));
    assert_eq!(owner_of(&t, 21), Some((mac(77), Owner::Local)));
    let listed: Vec<_> = t.contests().map(|(_, e, c)| (e.owner, c.by)).collect();
    assert_eq!(listed, vec![(Owner::Local, PEER)]);
    // PEER's host goes away there: nothing left to contest.
    t.on_icc(PEER, &withdraw(21, mac(21)), 20);
    assert_eq!(t.contests().count(), 0);
    assert_eq!(owner_of(&t, 21), Some((mac(77), Owner::Local)));
}

#[test]
fn a_claim_not_heard_again_within_the_ttl_is_dropped() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    t.on_icc(OTHER, &claim(21, mac(99), OTHER), 10);
    // PEER keeps refreshing; OTHER falls silent.
    t.on_icc(PEER, &icc_reply(21, PEER), 200_000);
    t.tick(300_010);
    assert_eq!(t.contests().count(), 0);
    assert_eq!(owner_of(&t, 21), Some((mac(21), Owner::Peer(PEER))));
}

#[test]
fn bad_withdrawals_are_counted_not_applied() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    for m in ["nope", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"] {
        let w = IccMsg::ArpWithdraw {
            target_ip4: ip(21),
            mac: m.into(),
        };
        assert!(t.on_icc(PEER, &w, 1).is_empty());
    }
    assert_eq!(t.counters.bad_icc, 3);
    // A withdrawal with another MAC than the binding's withdraws nothing.
    assert!(t.on_icc(PEER, &withdraw(21, mac(98)), 2).is_empty());
    assert_eq!(owner_of(&t, 21), Some((mac(21), Owner::Peer(PEER))));
}

#[test]
fn a_local_binding_that_ages_out_is_not_handed_to_a_peer_that_kept_claiming_it() {
    let mut t = table();
    t.on_local_arp(&request(11, 1), 0);
    t.on_icc(PEER, &claim(11, mac(99), PEER), 10);
    // The peer keeps its claim alive while our host's ARP never reaches the TAP again.
    t.on_icc(PEER, &claim(11, mac(99), PEER), 299_000);
    let a = t.tick(300_500);
    assert!(
        !a.iter()
            .any(|a| matches!(a, NeighAction::Inject(_) | NeighAction::ProgramMac { .. })),
        "{a:?}"
    );
    assert_eq!(t.contests().count(), 0);
    assert_ne!(owner_of(&t, 11), Some((mac(99), Owner::Peer(PEER))));
}

#[test]
fn a_pending_claim_is_not_bumped_by_another_peer_and_alternating_claims_report_once() {
    const OTHER2: Uid = Uid([0x44; 20]);
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    // OTHER's move claim (the same MAC) waits for PEER's withdrawal.
    t.on_icc(OTHER, &claim(21, mac(21), OTHER), 10);
    // A third claim from PEER's rival cannot replace it.
    let a = t.on_icc(OTHER2, &claim(21, mac(21), OTHER2), 20);
    assert!(a.is_empty(), "{a:?}");
    assert!(t.contests().all(|(_, _, c)| c.by == OTHER));
    // OTHER alternating between two MACs is reported as a conflict once.
    let mut reports = 0;
    for (i, m) in [99u8, 21, 98, 21, 99].iter().enumerate() {
        let a = t.on_icc(OTHER, &claim(21, mac(*m), OTHER), 30 + i as u64);
        reports += a
            .iter()
            .filter(|a| matches!(a, NeighAction::Conflict { .. }))
            .count();
    }
    assert!(reports <= 1, "{reports} conflict reports");
}
