//! Tests of the ARP table: local answers, ICC requests and replies, aging, conflicts, and
//! claims refused from peers that do not own the address.

use super::*;

pub(super) const ME: Uid = Uid([0x11; 20]);
pub(super) const PEER: Uid = Uid([0x22; 20]);
pub(super) const OTHER: Uid = Uid([0x33; 20]);

pub(super) fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 3, last)
}
pub(super) fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}
pub(super) fn request(from: u8, target: u8) -> Vec<u8> {
    ArpRepr {
        op: Operation::Request,
        sha: mac(from),
        spa: ip(from),
        tha: MacAddr::ZERO,
        tpa: ip(target),
    }
    .to_frame(MacAddr::BROADCAST, mac(from))
}
pub(super) fn reply(from: u8, to: u8) -> Vec<u8> {
    arp_reply_frame(ip(from), mac(from), ip(to), mac(to))
}
pub(super) fn table() -> NeighTable {
    NeighTable::new(ME, NeighConfig::default())
}
pub(super) fn icc_reply(target: u8, owner: Uid) -> IccMsg {
    IccMsg::ArpReply {
        target_ip4: ip(target),
        mac: mac(target).to_string(),
        uid: owner,
    }
}

#[test]
fn unknown_target_is_replicated_once_then_answered_from_the_reply() {
    let mut t = table();
    let a = t.on_local_arp(&request(11, 21), 0);
    assert_eq!(
        a,
        vec![NeighAction::IccBroadcast(IccMsg::ArpRequest {
            target_ip4: ip(21),
            requester_ip4: ip(11),
            requester_mac: mac(11).to_string(),
        })]
    );
    // The kernel retries within the holdoff: no second ICC message.
    assert!(t.on_local_arp(&request(11, 21), 500).is_empty());
    assert_eq!(t.counters.icc_requests_sent, 1);
    assert_eq!(t.counters.icc_requests_suppressed, 1);

    let a = t.on_icc(PEER, &icc_reply(21, PEER), 600);
    assert_eq!(
        a,
        vec![
            NeighAction::ProgramMac {
                mac: mac(21),
                uid: PEER
            },
            NeighAction::Inject(reply(21, 11)),
        ]
    );
    // The injected reply carries the target's real MAC, addressed to the requester.
    let (dst, src, r) = ArpRepr::parse_frame(&reply(21, 11)).unwrap();
    assert_eq!(
        (dst, src, r.sha, r.spa),
        (mac(11), mac(21), mac(21), ip(21))
    );
}

#[test]
fn known_target_is_answered_locally_without_icc() {
    let mut t = table();
    t.on_local_arp(&request(11, 21), 0);
    t.on_icc(PEER, &icc_reply(21, PEER), 10);
    let a = t.on_local_arp(&request(12, 21), 20);
    assert_eq!(a, vec![NeighAction::Inject(reply(21, 12))]);
    assert_eq!(t.counters.answered_locally, 1);
    assert_eq!(t.counters.icc_requests_sent, 1);
}

#[test]
fn local_target_gets_no_answer_and_no_icc() {
    let mut t = table();
    // 10.0.3.12 spoke on our bridge, so it is local.
    t.on_local_arp(&request(12, 1), 0);
    let before = t.counters.icc_requests_sent;
    assert!(t.on_local_arp(&request(11, 12), 10).is_empty());
    assert_eq!(t.counters.local_target, 1);
    assert_eq!(t.counters.icc_requests_sent, before);
}

#[test]
fn peer_request_is_injected_with_the_requesters_real_mac_and_the_reply_announced() {
    let mut t = table();
    let req = IccMsg::ArpRequest {
        target_ip4: ip(21),
        requester_ip4: ip(11),
        requester_mac: mac(11).to_string(),
    };
    let a = t.on_icc(PEER, &req, 0);
    assert_eq!(
        a,
        vec![
            NeighAction::ProgramMac {
                mac: mac(11),
                uid: PEER
            },
            NeighAction::Inject(request(11, 21)),
        ]
    );
    // The local target answers; the reply is punted and goes back as ICC.
    let a = t.on_local_arp(&reply(21, 11), 5);
    assert_eq!(
        a,
        vec![NeighAction::IccBroadcast(IccMsg::ArpReply {
            target_ip4: ip(21),
            mac: mac(21).to_string(),
            uid: ME
        })]
    );
    assert_eq!(t.get(&ip(21)).unwrap().owner, Owner::Local);
    assert_eq!(t.get(&ip(11)).unwrap().owner, Owner::Peer(PEER));
}

#[test]
fn entries_age_out_and_are_asked_again() {
    let mut t = table();
    t.on_local_arp(&request(11, 21), 0);
    t.on_icc(PEER, &icc_reply(21, PEER), 10);
    t.tick(300_010);
    assert!(t.get(&ip(21)).is_none());
    assert_eq!(t.counters.expired, 2);
    let a = t.on_local_arp(&request(11, 21), 300_020);
    assert!(matches!(
        a[..],
        [NeighAction::IccBroadcast(IccMsg::ArpRequest { .. })]
    ));
}

#[test]
fn used_entries_are_reprobed_before_expiry() {
    let mut t = table();
    t.on_local_arp(&request(11, 21), 0);
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    t.on_local_arp(&request(11, 21), 1000);
    assert!(t.tick(200_000).is_empty());
    let a = t.tick(280_000);
    assert_eq!(
        a,
        vec![NeighAction::IccSend(
            PEER,
            IccMsg::ArpRequest {
                target_ip4: ip(21),
                requester_ip4: ip(11),
                requester_mac: mac(11).to_string()
            }
        )]
    );
    // Not again right away.
    assert!(t.tick(281_000).is_empty());
    // The refresh arrives: the entry lives on.
    t.on_icc(PEER, &icc_reply(21, PEER), 281_500);
    t.tick(400_000);
    assert_eq!(t.get(&ip(21)).unwrap().owner, Owner::Peer(PEER));
}

#[test]
fn remote_claim_on_a_local_ip_is_a_conflict_and_local_wins() {
    let mut t = table();
    t.on_local_arp(&request(21, 1), 0); // 10.0.3.21 is on our bridge, mac(21)
    let claim = IccMsg::ArpReply {
        target_ip4: ip(21),
        mac: mac(99).to_string(),
        uid: PEER,
    };
    let a = t.on_icc(PEER, &claim, 10);
    assert_eq!(
        a,
        vec![NeighAction::Conflict {
            ip: ip(21),
            kept_mac: mac(21),
            kept_owner: Owner::Local,
            claimed_mac: mac(99),
            claimed_by: Owner::Peer(PEER)
        }]
    );
    assert_eq!(t.get(&ip(21)).unwrap().mac, mac(21));
    assert_eq!(t.counters.conflicts, 1);
}

#[test]
fn a_node_cannot_answer_for_another() {
    let mut t = table();
    let a = t.on_icc(PEER, &icc_reply(21, OTHER), 0);
    assert!(a.is_empty());
    assert!(t.get(&ip(21)).is_none());
    assert_eq!(t.counters.bad_icc, 1);
}

#[test]
fn gratuitous_arp_refreshes_and_is_announced() {
    let mut t = table();
    let g = ArpRepr {
        op: Operation::Request,
        sha: mac(11),
        spa: ip(11),
        tha: MacAddr::ZERO,
        tpa: ip(11),
    }
    .to_frame(MacAddr::BROADCAST, mac(11));
    let a = t.on_local_arp(&g, 0);
    assert_eq!(
        a,
        vec![NeighAction::IccBroadcast(IccMsg::ArpReply {
            target_ip4: ip(11),
            mac: mac(11).to_string(),
            uid: ME
        })]
    );
    assert_eq!(t.get(&ip(11)).unwrap().updated, 0);
    t.on_local_arp(&g, 100);
    assert_eq!(t.get(&ip(11)).unwrap().updated, 100);
}

#[test]
fn a_host_that_migrates_here_is_taken_over_not_a_conflict() {
    let mut t = table();
    t.on_local_arp(&request(11, 21), 0);
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    // Now 10.0.3.21 with the same MAC speaks on our bridge.
    t.on_local_arp(&request(21, 1), 10);
    assert_eq!(t.get(&ip(21)).unwrap().owner, Owner::Local);
    assert_eq!(t.counters.moved, 1);
    assert_eq!(t.counters.conflicts, 0);
}

#[test]
fn a_trimmed_peers_bindings_are_withdrawn() {
    let mut t = table();
    t.on_local_arp(&request(11, 21), 0);
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    t.on_icc(OTHER, &icc_reply(31, OTHER), 0);
    assert_eq!(t.remove_owner(PEER), 1);
    assert!(t.get(&ip(21)).is_none());
    assert!(t.get(&ip(31)).is_some());
    assert!(t.get(&ip(11)).is_some());
    let a = t.on_local_arp(&request(11, 21), 10);
    assert!(matches!(
        a[..],
        [NeighAction::IccBroadcast(IccMsg::ArpRequest { .. })]
    ));
}

#[test]
fn garbage_is_counted_not_fatal() {
    let mut t = table();
    assert!(t.on_local_arp(&[0u8; 10], 0).is_empty());
    assert!(t.on_local_arp(&[0xffu8; 60], 0).is_empty());
    let bad = IccMsg::ArpRequest {
        target_ip4: ip(1),
        requester_ip4: ip(2),
        requester_mac: "not a mac".into(),
    };
    assert!(t.on_icc(PEER, &bad, 0).is_empty());
    assert_eq!(t.counters.bad_frames, 2);
    assert_eq!(t.counters.bad_icc, 1);
}

/// `arp_reply` from `uid`: `ip(target)` is at `mac`.
fn claim(target: u8, mac: MacAddr, uid: Uid) -> IccMsg {
    IccMsg::ArpReply {
        target_ip4: ip(target),
        mac: mac.to_string(),
        uid,
    }
}

fn programs(actions: &[NeighAction], mac: MacAddr, uid: Uid) -> bool {
    actions.contains(&NeighAction::ProgramMac { mac, uid })
}

fn icc_request(target: u8, requester: u8, requester_mac: MacAddr) -> IccMsg {
    IccMsg::ArpRequest {
        target_ip4: ip(target),
        requester_ip4: ip(requester),
        requester_mac: requester_mac.to_string(),
    }
}

/// Nothing in `actions` would change our bridge or tincan: no MAC programmed, no frame injected.
fn changes_nothing(actions: &[NeighAction]) -> bool {
    !actions
        .iter()
        .any(|a| matches!(a, NeighAction::ProgramMac { .. } | NeighAction::Inject(_)))
}

fn refused(t: &NeighTable, uid: Uid) -> u64 {
    t.peer_claims()
        .find(|(u, _)| **u == uid)
        .map_or(0, |(_, p)| p.claims_refused)
}

#[test]
fn a_request_from_a_peer_claiming_a_local_ip_is_refused_not_programmed_or_injected() {
    let mut t = table();
    t.on_local_arp(&request(11, 1), 0); // 10.0.3.11 is on our bridge, mac(11)
    let a = t.on_icc(PEER, &icc_request(12, 11, mac(99)), 10);
    assert!(changes_nothing(&a), "{a:?}");
    assert_eq!(
        a,
        vec![NeighAction::Conflict {
            ip: ip(11),
            kept_mac: mac(11),
            kept_owner: Owner::Local,
            claimed_mac: mac(99),
            claimed_by: Owner::Peer(PEER)
        }]
    );
    assert_eq!(t.get(&ip(11)).unwrap().mac, mac(11));
    assert_eq!(t.get(&ip(11)).unwrap().owner, Owner::Local);
    assert_eq!(t.counters.claims_refused, 1);
    assert_eq!(refused(&t, PEER), 1);
    assert_eq!(refused(&t, OTHER), 0);
}

#[test]
fn this_hosts_own_address_is_never_accepted_from_a_peer() {
    let mut t = table();
    t.pin_local(ip(1));
    // The bridge never spoke, yet the gateway's address is ours.
    let a = t.on_icc(PEER, &icc_request(11, 1, mac(99)), 0);
    assert!(changes_nothing(&a), "{a:?}");
    let claim = claim(1, mac(99), PEER);
    let a = t.on_icc(PEER, &claim, 1);
    assert!(changes_nothing(&a), "{a:?}");
    assert!(t.get(&ip(1)).is_none());
    assert_eq!(refused(&t, PEER), 2);
}

#[test]
fn a_local_mac_is_not_accepted_from_a_peer_under_any_ip() {
    let mut t = table();
    t.on_local_arp(&request(11, 1), 0);
    // The requester's IP is new, its MAC is that of a host on our bridge: injected, the request
    // would move that host onto the TAP in our bridge.
    let a = t.on_icc(PEER, &icc_request(12, 77, mac(11)), 10);
    assert!(a.is_empty(), "{a:?}");
    let claim = claim(77, mac(11), PEER);
    assert!(t.on_icc(PEER, &claim, 20).is_empty());
    assert!(t.get(&ip(77)).is_none());
    assert_eq!(refused(&t, PEER), 2);
    assert_eq!(t.counters.conflicts, 0);
}

#[test]
fn a_binding_of_one_peer_is_not_taken_by_another_until_withdrawn() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    // OTHER answers for PEER's host, with the same MAC or another one, or asks as that host.
    let same = claim(21, mac(21), OTHER);
    assert!(changes_nothing(&t.on_icc(OTHER, &same, 10)));
    let other_mac = claim(21, mac(98), OTHER);
    let a = t.on_icc(OTHER, &other_mac, 11);
    assert!(changes_nothing(&a), "{a:?}");
    assert!(matches!(a[..], [NeighAction::Conflict { .. }]), "{a:?}");
    let other_ip = claim(55, mac(21), OTHER);
    assert!(changes_nothing(&t.on_icc(OTHER, &other_ip, 12)));
    assert!(changes_nothing(&t.on_icc(
        OTHER,
        &icc_request(31, 21, mac(21)),
        13
    )));
    assert_eq!(refused(&t, OTHER), 4);
    assert_eq!(refused(&t, PEER), 0);
    let e = t.get(&ip(21)).unwrap();
    assert_eq!((e.mac, e.owner), (mac(21), Owner::Peer(PEER)));
    assert_eq!(t.counters.moved, 0);

    // PEER's link went down: its bindings are withdrawn and the host may now be behind OTHER.
    t.remove_owner(PEER);
    let a = t.on_icc(OTHER, &same, 20);
    assert!(programs(&a, mac(21), OTHER), "{a:?}");
    assert_eq!(t.get(&ip(21)).unwrap().owner, Owner::Peer(OTHER));
}

#[test]
fn a_binding_of_one_peer_moves_to_another_once_it_aged_out() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    let moved = claim(21, mac(21), OTHER);
    assert!(changes_nothing(&t.on_icc(OTHER, &moved, 299_999)));
    let a = t.on_icc(OTHER, &moved, 300_000);
    assert!(programs(&a, mac(21), OTHER), "{a:?}");
    assert_eq!(t.get(&ip(21)).unwrap().owner, Owner::Peer(OTHER));
    assert_eq!(t.counters.moved, 1);
}

#[test]
fn a_peer_still_speaks_for_its_own_hosts() {
    let mut t = table();
    t.on_icc(PEER, &icc_reply(21, PEER), 0);
    // PEER's host asks for one of ours: its own binding, refreshed, programmed, injected.
    let a = t.on_icc(PEER, &icc_request(11, 21, mac(21)), 10);
    assert_eq!(
        a,
        vec![
            NeighAction::ProgramMac {
                mac: mac(21),
                uid: PEER
            },
            NeighAction::Inject(request(21, 11)),
        ]
    );
    assert_eq!(t.counters.claims_refused, 0);
}

#[test]
fn arp_requests_are_rate_limited_per_peer() {
    let mut t = table();
    let cfg = NeighConfig::default();
    let burst = cfg.icc_request_burst as u8;
    let mut injected = 0;
    for n in 0..burst + 5 {
        let a = t.on_icc(PEER, &icc_request(100 + n, 21, mac(21)), 0);
        injected += a
            .iter()
            .filter(|a| matches!(a, NeighAction::Inject(_)))
            .count();
    }
    assert_eq!(injected, usize::from(burst));
    assert_eq!(t.counters.icc_requests_rate_limited, 5);
    let limited = |t: &NeighTable, uid: Uid| {
        t.peer_claims()
            .find(|(u, _)| **u == uid)
            .map_or(0, |(_, p)| p.requests_rate_limited)
    };
    assert_eq!(limited(&t, PEER), 5);
    // Another peer has its own budget.
    let a = t.on_icc(OTHER, &icc_request(11, 31, mac(31)), 0);
    assert!(a.iter().any(|a| matches!(a, NeighAction::Inject(_))));
    assert_eq!(limited(&t, OTHER), 0);
    // The budget refills at its rate.
    let a = t.on_icc(PEER, &icc_request(200, 21, mac(21)), 1_000);
    assert!(a.iter().any(|a| matches!(a, NeighAction::Inject(_))));
}
