//! The data-plane ND responder: the answer's fields, what it leaves alone (probes, unicast
//! solicitations, multicast listener traffic), what it gives the controller, malformed input.

use super::*;
use crate::wire::icmpv6::{parse_frame, Advert, NdFrame, Solicit};

fn ip(last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 0, last)
}
fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}
fn nobody(_: &MacAddr) -> bool {
    false
}
fn solicit(from: u8, target: u16) -> Vec<u8> {
    icmpv6::solicit_frame(ip(u16::from(from)), mac(from), ip(target))
}
/// A table holding fd00:3::21 at 02:..:15 (a host behind a link) and the router fd00:3::1.
fn responder() -> NdResponder {
    let mut r = NdResponder::default();
    let set = SetNd {
        replace: None,
        add: vec![
            NdBinding {
                ip: ip(0x21),
                mac: mac(0x15),
                router: false,
            },
            NdBinding {
                ip: ip(1),
                mac: mac(1),
                router: true,
            },
        ],
        remove: vec![],
    };
    assert_eq!(r.apply(&set, nobody), 0);
    r
}

#[test]
fn a_multicast_solicitation_for_a_programmed_target_is_answered_with_its_real_mac() {
    let mut r = responder();
    let NdVerdict::Answer(reply, asked) = r.on_frame(&solicit(11, 0x21), nobody) else {
        panic!("not answered");
    };
    let f = parse_frame(&reply).expect("a valid advertisement, checksum and all");
    assert_eq!((f.eth_dst, f.eth_src), (mac(11), mac(0x15)));
    assert_eq!((f.src, f.dst), (ip(0x21), ip(11)));
    assert_eq!(reply[21], 255, "hop limit");
    assert_eq!(
        f.msg,
        NdMessage::Advert(Advert {
            target: ip(0x21),
            router: false,
            solicited: true,
            override_: true,
            target_ll: Some(mac(0x15)),
        })
    );
    assert_eq!(r.counters.nd_answered_locally, 0, "counted once written");
    r.answered(asked);
    r.answered(asked);
    assert_eq!(r.counters.nd_answered_locally, 2);
    assert_eq!(r.take_reports(), vec![asked], "reported once");
    // A router's answer says it is one.
    let NdVerdict::Answer(reply, _) = r.on_frame(&solicit(11, 1), nobody) else {
        panic!("not answered");
    };
    assert!(matches!(parse_frame(&reply).unwrap().msg, NdMessage::Advert(a) if a.router));
}

#[test]
fn dad_probes_flood_to_the_owner_and_are_never_answered() {
    let mut r = responder();
    let target = ip(0x21);
    let dst = icmpv6::solicited_node(&target);
    let probe = NdFrame {
        eth_dst: icmpv6::multicast_mac(&dst),
        eth_src: mac(11),
        src: Ipv6Addr::UNSPECIFIED,
        dst,
        msg: NdMessage::Solicit(Solicit {
            target,
            source_ll: None,
        }),
    }
    .to_frame();
    assert_eq!(r.on_frame(&probe, nobody), NdVerdict::Pass);
    assert_eq!(r.counters.nd_dad_flooded, 1);
    assert_eq!(r.counters.nd_answered_locally, 0);
}

#[test]
fn what_is_left_alone_or_to_the_controller() {
    let mut r = responder();
    // Unknown target: the controller asks its peers.
    assert_eq!(r.on_frame(&solicit(11, 0x99), nobody), NdVerdict::Punt);
    // The target's MAC is on our bridge now: never given out as a remote host's.
    assert_eq!(
        r.on_frame(&solicit(11, 0x21), |m| *m == mac(0x15)),
        NdVerdict::Punt
    );
    // A requester claiming an address of the table.
    assert_eq!(r.on_frame(&solicit(1, 0x21), nobody), NdVerdict::Punt);
    // A unicast solicitation (reachability): on to its target.
    let mut f = parse_frame(&solicit(11, 0x21)).unwrap();
    f.eth_dst = mac(0x15);
    f.dst = ip(0x21);
    assert_eq!(r.on_frame(&f.to_frame(), nobody), NdVerdict::Pass);
    // Advertisements: on as usual, and a copy to the controller.
    let a = icmpv6::announce_frame(ip(11), mac(11), false);
    assert_eq!(r.on_frame(&a, nobody), NdVerdict::PassAndPunt);
    // Multicast listener discovery and other IPv6: not ND.
    let mut mld = solicit(11, 0x21);
    mld[54] = 143;
    assert_eq!(r.on_frame(&mld, nobody), NdVerdict::Pass);
    assert_eq!(r.counters.nd_malformed, 0);
}

#[test]
fn malformed_nd_is_a_counted_drop() {
    let mut r = responder();
    let mut bad = solicit(11, 0x21);
    bad[21] = 1; // hop limit 1: not from this link
    assert_eq!(r.on_frame(&bad, nobody), NdVerdict::Drop);
    let mut bad = solicit(11, 0x21);
    bad[60] ^= 0xff; // checksum no longer matches
    assert_eq!(r.on_frame(&bad, nobody), NdVerdict::Drop);
    let short = &solicit(11, 0x21)[..60];
    assert_eq!(r.on_frame(short, nobody), NdVerdict::Drop);
    assert_eq!(r.counters.nd_malformed, 3);
}

#[test]
fn set_nd_refuses_local_and_group_macs_and_is_bounded() {
    let mut r = NdResponder::default();
    let b = |i: u16, m: MacAddr| NdBinding {
        ip: ip(i),
        mac: m,
        router: false,
    };
    let set = SetNd {
        replace: Some(true),
        add: vec![b(1, mac(1)), b(2, MacAddr::BROADCAST), b(3, mac(3))],
        remove: vec![],
    };
    assert_eq!(r.apply(&set, |m| *m == mac(3)), 2);
    assert_eq!(r.len(), 1);
    let many = SetNd {
        replace: Some(true),
        add: (0..=SetNd::MAX_ENTRIES as u16)
            .map(|i| b(i + 10, MacAddr([2, 0, 0, 0, (i >> 8) as u8, i as u8])))
            .collect(),
        remove: vec![],
    };
    assert_eq!(r.apply(&many, nobody), 1);
    assert_eq!(r.len(), SetNd::MAX_ENTRIES);
    r.clear();
    assert!(r.is_empty());
}
