//! Tests of the IPv6 table: local answers, ICC requests and replies, duplicate address
//! detection, advertisements, claims refused from peers, bounds and programming.

use super::*;
use crate::api::tincan::NdAnswer;
use crate::neigh::ProgrammedNd;
use crate::wire::icmpv6::{parse_frame, Advert, NdFrame, Solicit};

const ME: Uid = Uid([0x11; 20]);
const PEER: Uid = Uid([0x22; 20]);
const OTHER: Uid = Uid([0x33; 20]);

fn ip(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 0, last)
}
fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}
fn table() -> NdTable {
    NdTable::new(ME, NeighConfig::default())
}
fn solicit(from: u8, target: u16) -> Vec<u8> {
    icmpv6::solicit_frame(ip(u16::from(from)), mac(from), ip(target))
}
fn dad(from: u8, target: u16) -> Vec<u8> {
    let dst = icmpv6::solicited_node(&ip(target));
    NdFrame {
        eth_dst: icmpv6::multicast_mac(&dst),
        eth_src: mac(from),
        src: Ipv6Addr::UNSPECIFIED,
        dst,
        msg: NdMessage::Solicit(Solicit {
            target: ip(target),
            source_ll: None,
        }),
    }
    .to_frame()
}
/// The solicited advertisement host `from` sends to host `to`.
fn advert(from: u8, to: u8) -> Vec<u8> {
    icmpv6::answer_frame(
        ip(u16::from(from)),
        mac(from),
        false,
        ip(u16::from(to)),
        mac(to),
    )
}
fn reply(target: u8, owner: Uid) -> IccMsg {
    IccMsg::NdReply {
        target_ip6: ip(u16::from(target)),
        mac: mac(target).to_string(),
        uid: owner,
        router: false,
    }
}
fn nobody(_: &MacAddr) -> bool {
    false
}
fn injected(a: &[NdAction]) -> Vec<NdFrame> {
    a.iter()
        .filter_map(|a| match a {
            NdAction::Do(NeighAction::Inject(f)) => Some(parse_frame(f).expect("valid ND")),
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_resolution_crosses_icc_once_and_the_second_is_answered_locally() {
    let mut t = table();
    let a = t.on_local_frame(&solicit(11, 21), 0);
    assert_eq!(
        a,
        vec![NdAction::Do(NeighAction::IccBroadcast(IccMsg::NdRequest {
            target_ip6: ip(21),
            requester_ip6: ip(11),
            requester_mac: mac(11).to_string(),
        }))]
    );
    assert!(
        t.on_local_frame(&solicit(11, 21), 500).is_empty(),
        "held off"
    );
    assert_eq!(t.counters.icc_requests_suppressed, 1);

    // The owner's controller answers: programmed, and the requester gets its answer.
    let a = t.on_icc(PEER, &reply(21, PEER), 600, nobody);
    assert!(a.contains(&NdAction::Do(NeighAction::ProgramMac {
        mac: mac(21),
        uid: PEER
    })));
    let f = injected(&a);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].eth_src, f[0].eth_dst), (mac(21), mac(11)));
    assert_eq!((f[0].src, f[0].dst), (ip(21), ip(11)));
    assert_eq!(
        f[0].msg,
        NdMessage::Advert(Advert {
            target: ip(21),
            router: false,
            solicited: true,
            override_: true,
            target_ll: Some(mac(21)),
        })
    );

    // The second resolution: answered at once, no ICC.
    let a = t.on_local_frame(&solicit(11, 21), 5_000);
    assert_eq!(injected(&a).len(), 1, "{a:?}");
    assert!(!a
        .iter()
        .any(|a| matches!(a, NdAction::Do(NeighAction::IccBroadcast(_)))));
    assert_eq!(t.counters.solicitations_answered_locally, 1);
    assert_eq!(t.counters.icc_requests_sent, 1);
    // tincan may answer it from now on.
    let want = t.answerable(5_000);
    assert_eq!(want.get(&ip(21)).map(|b| b.mac), Some(mac(21)));
    assert!(!want.contains_key(&ip(11)), "never a host of our bridge");
}

#[test]
fn dad_probes_are_never_answered_nor_asked_for() {
    let mut t = table();
    t.on_icc(PEER, &reply(21, PEER), 0, nobody);
    let a = t.on_local_frame(&dad(11, 21), 10);
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(t.counters.dad_not_answered, 1);
    assert_eq!(t.counters.solicitations_answered_locally, 0);
    // A peer cannot make us inject a probe either: `::` is no requester.
    let probe = IccMsg::NdRequest {
        target_ip6: ip(21),
        requester_ip6: Ipv6Addr::UNSPECIFIED,
        requester_mac: mac(31).to_string(),
    };
    assert!(t.on_icc(PEER, &probe, 20, nobody).is_empty());
    assert_eq!(t.counters.bad_icc, 1);
}

#[test]
fn a_peer_request_is_injected_and_the_local_answer_announced() {
    let mut t = table();
    let req = IccMsg::NdRequest {
        target_ip6: ip(11),
        requester_ip6: ip(21),
        requester_mac: mac(21).to_string(),
    };
    let a = t.on_icc(PEER, &req, 0, nobody);
    let f = injected(&a);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].src, ip(21));
    assert_eq!(f[0].dst, icmpv6::solicited_node(&ip(11)));
    assert_eq!(f[0].eth_src, mac(21));
    // Our host answers on the bridge; the answer goes to the peers.
    let a = t.on_local_frame(&advert(11, 21), 100);
    assert_eq!(
        a,
        vec![NdAction::Do(NeighAction::IccBroadcast(IccMsg::NdReply {
            target_ip6: ip(11),
            mac: mac(11).to_string(),
            uid: ME,
            router: false,
        }))]
    );
    assert_eq!(t.get(&ip(11)).map(|e| e.owner), Some(Owner::Local));
    // Its next solicited answer (neighbour unreachability detection) is not announced again.
    assert!(t.on_local_frame(&advert(11, 21), 200).is_empty());
}

#[test]
fn unsolicited_advertisements_refresh_the_peers_tables() {
    let mut t = table();
    let a = t.on_local_frame(&icmpv6::announce_frame(ip(11), mac(11), true), 0);
    assert!(matches!(
        &a[..],
        [NdAction::Do(NeighAction::IccBroadcast(IccMsg::NdReply {
            router: true,
            ..
        }))]
    ));
    // On the other side: the binding is refreshed, router flag and all.
    let mut other = NdTable::new(PEER, NeighConfig::default());
    let msg = match &a[0] {
        NdAction::Do(NeighAction::IccBroadcast(m)) => m.clone(),
        _ => unreachable!(),
    };
    other.on_icc(ME, &msg, 5, nobody);
    let e = other.get(&ip(11)).unwrap();
    assert_eq!((e.mac, e.owner, e.router), (mac(11), Owner::Peer(ME), true));
    // An answer carries the router flag on.
    let a = other.on_local_frame(&solicit(21, 11), 10);
    assert!(matches!(injected(&a)[0].msg, NdMessage::Advert(ad) if ad.router));
}

#[test]
fn a_peer_claiming_an_address_of_our_bridge_is_refused_and_counted() {
    let mut t = table();
    // fd00:3::11 spoke on our bridge.
    t.on_local_frame(&solicit(11, 99), 0);
    let lie = IccMsg::NdReply {
        target_ip6: ip(11),
        mac: mac(66).to_string(),
        uid: PEER,
        router: false,
    };
    let a = t.on_icc(PEER, &lie, 10, nobody);
    assert!(
        a.iter().all(|a| matches!(a, NdAction::Conflict { .. })),
        "nothing programmed or injected: {a:?}"
    );
    assert_eq!(
        t.get(&ip(11)).map(|e| (e.mac, e.owner)),
        Some((mac(11), Owner::Local))
    );
    assert_eq!(t.counters.claims_refused, 1);
    assert_eq!(t.peer_claims(&PEER).claims_refused, 1);
    assert_eq!(t.counters.conflicts, 1);
    // A MAC the ARP table holds for our bridge, under a new address: refused too.
    let lie = IccMsg::NdReply {
        target_ip6: ip(77),
        mac: mac(77).to_string(),
        uid: PEER,
        router: false,
    };
    assert!(t.on_icc(PEER, &lie, 20, |m| *m == mac(77)).is_empty());
    assert!(t.get(&ip(77)).is_none());
    // A peer speaking for another node's host.
    assert!(t.on_icc(PEER, &reply(21, OTHER), 30, nobody).is_empty());
    assert_eq!(t.counters.bad_icc, 1);
    // Another peer's fresh binding is not taken over.
    t.on_icc(OTHER, &reply(31, OTHER), 40, nobody);
    let steal = IccMsg::NdReply {
        target_ip6: ip(31),
        mac: mac(32).to_string(),
        uid: PEER,
        router: false,
    };
    t.on_icc(PEER, &steal, 50, nobody);
    assert_eq!(t.get(&ip(31)).map(|e| e.owner), Some(Owner::Peer(OTHER)));
    assert_eq!(t.peer_claims(&PEER).claims_refused, 3);
}

#[test]
fn requests_from_a_peer_are_rate_limited_and_malformed_frames_counted() {
    let mut t = table();
    let mut injected_count = 0;
    for i in 0..100u16 {
        let req = IccMsg::NdRequest {
            target_ip6: ip(1000 + i),
            requester_ip6: ip(21),
            requester_mac: mac(21).to_string(),
        };
        injected_count += injected(&t.on_icc(PEER, &req, 0, nobody)).len();
    }
    assert!(injected_count <= 21, "{injected_count}");
    assert!(t.counters.icc_requests_rate_limited >= 79);
    // Malformed ND from the bridge: dropped and counted, nothing learned.
    let mut bad = solicit(11, 21);
    bad[21] = 64;
    assert!(t.on_local_frame(&bad, 1).is_empty());
    assert!(t.on_local_frame(&[0u8; 10], 1).is_empty());
    assert_eq!(t.counters.bad_frames, 2);
    assert!(t.get(&ip(11)).is_none());
}

#[test]
fn entries_age_out_and_go_with_their_owner() {
    let mut t = table();
    t.on_icc(PEER, &reply(21, PEER), 0, nobody);
    t.on_icc(OTHER, &reply(31, OTHER), 0, nobody);
    assert_eq!(t.remove_owner(PEER), 1);
    assert!(t.get(&ip(21)).is_none());
    let ttl = NeighConfig::default().ttl;
    t.tick(ttl);
    assert!(t.get(&ip(31)).is_none());
    assert_eq!(t.counters.expired, 1);
}

#[test]
fn used_entries_are_reprobed_before_they_expire() {
    let mut t = table();
    t.on_icc(PEER, &reply(21, PEER), 0, nobody);
    let a = t.on_answered_by_tincan(
        &NdAnswer {
            ip: ip(21),
            requester_ip: ip(11),
            requester_mac: mac(11),
        },
        10,
    );
    assert!(a.is_empty());
    assert_eq!(t.counters.answered_by_tincan, 1);
    let cfg = NeighConfig::default();
    let a = t.tick(cfg.ttl - cfg.probe_margin + 1);
    assert!(matches!(
        &a[..],
        [NdAction::Do(NeighAction::IccSend(
            PEER,
            IccMsg::NdRequest { .. }
        ))]
    ));
}

#[test]
fn programming_sends_only_changes_in_bounded_calls() {
    let mut t = table();
    let mut p = ProgrammedNd::default();
    assert_eq!(
        p.update(t.answerable(0), true).len(),
        1,
        "replace, even empty"
    );
    for i in 0..300u16 {
        let r = IccMsg::NdReply {
            target_ip6: ip(1000 + i),
            mac: MacAddr([0x02, 1, 0, 0, (i >> 8) as u8, i as u8]).to_string(),
            uid: PEER,
            router: false,
        };
        t.on_icc(PEER, &r, 0, nobody);
    }
    let calls = p.update(t.answerable(0), false);
    assert_eq!(calls.len(), 3);
    assert_eq!(calls.iter().map(|c| c.add.len()).sum::<usize>(), 300);
    assert!(p.update(t.answerable(0), false).is_empty());
    t.remove_owner(PEER);
    let calls = p.update(t.answerable(0), false);
    assert_eq!(calls.iter().map(|c| c.remove.len()).sum::<usize>(), 300);
    assert!(p.is_empty());
}
