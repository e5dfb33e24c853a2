//! Tests of the ARP table: local answers, ICC requests and replies, aging, conflicts, and
//! claims refused from peers that do not own the address.

use super::*;

const ME: Uid = Uid([0x11; 20]);
const PEER: Uid = Uid([0x22; 20]);
const OTHER: Uid = Uid([0x33; 20]);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 3, last)
}
fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}
fn request(from: u8, target: u8) -> Vec<u8> {
    ArpRepr {
        op: Operation::Request,
        sha: mac(from),
        spa: ip(from),
        tha: MacAddr::ZERO,
        tpa: ip(target),
    }
    .to_frame(MacAddr::BROADCAST, mac(from))
}
fn reply(from: u8, to: u8) -> Vec<u8> {
    arp_reply_frame(ip(from), mac(from), ip(to), mac(to))
}
fn table() -> NeighTable {
    NeighTable::new(ME, NeighConfig::default())
}
fn icc_reply(target: u8, owner: Uid) -> IccMsg {
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
