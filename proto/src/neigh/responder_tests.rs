//! The data-plane responder: the reply's fields, what it refuses to answer, malformed input,
//! and the table's bounds.

use super::*;
use crate::wire::arp::ArpPacket;
use crate::wire::ethernet::EthernetFrame;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 3, last)
}
fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}
fn arp(op: Operation, from: u8, spa: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    ArpRepr {
        op,
        sha: mac(from),
        spa,
        tha: MacAddr::ZERO,
        tpa: target,
    }
    .to_frame(MacAddr::BROADCAST, mac(from))
}
fn request(from: u8, target: u8) -> Vec<u8> {
    arp(Operation::Request, from, ip(from), ip(target))
}
fn nobody(_: &MacAddr) -> bool {
    false
}
/// A table holding 10.0.3.21 at 02:..:15 (a host behind a link).
fn responder() -> Responder {
    let mut r = Responder::default();
    let set = SetNeigh {
        replace: None,
        add: vec![NeighBinding {
            ip: ip(21),
            mac: mac(0x15),
        }],
        remove: vec![],
    };
    assert_eq!(r.apply(&set, nobody), 0);
    r
}

#[test]
fn the_reply_carries_the_targets_real_mac_to_the_requester() {
    let mut r = responder();
    let frame = r.answer(&request(11, 21), nobody).unwrap();
    let (dst, src, reply) = ArpRepr::parse_frame(&frame).unwrap();
    assert_eq!(dst, mac(11), "sent to the requester, not broadcast");
    assert_eq!(src, mac(0x15), "from the target's real MAC, not the TAP's");
    assert_eq!(
        reply,
        ArpRepr {
            op: Operation::Reply,
            sha: mac(0x15),
            spa: ip(21),
            tha: mac(11),
            tpa: ip(11),
        }
    );
    let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
    assert_eq!(ArpPacket::new_checked(eth.payload()).unwrap().oper(), 2);
    assert_eq!(frame.len(), 60, "padded to the Ethernet minimum");
    assert_eq!(r.counters.arp_answered_locally, 1);
}

#[test]
fn only_ordinary_requests_for_a_binding_are_answered() {
    let mut r = responder();
    let cases = [
        // Nobody told tincan about 10.0.3.22.
        (request(11, 22), Skip::Miss),
        // Replies, gratuitous ARP and address probes are the controller's.
        (arp(Operation::Reply, 11, ip(11), ip(21)), Skip::NotRequest),
        (
            arp(Operation::Request, 11, ip(11), ip(11)),
            Skip::Announcement,
        ),
        (
            arp(Operation::Request, 11, Ipv4Addr::UNSPECIFIED, ip(21)),
            Skip::Announcement,
        ),
        // A sender that claims the bound address or MAC: a conflict or a host that moved here.
        (
            arp(Operation::Request, 12, ip(21), ip(21)),
            Skip::Announcement,
        ),
        (request(0x15, 21), Skip::Announcement),
        (
            arp(Operation::Request, 0x15, ip(12), ip(21)),
            Skip::SenderInTable,
        ),
    ];
    for (frame, why) in cases {
        assert_eq!(r.answer(&frame, nobody), Err(why), "{frame:02x?}");
    }
    // The sender's claimed address is a bound one.
    let mut claims_bound_ip = request(11, 21);
    claims_bound_ip[28..32].copy_from_slice(&ip(21).octets());
    claims_bound_ip[38..42].copy_from_slice(&ip(21).octets());
    assert_eq!(r.answer(&claims_bound_ip, nobody), Err(Skip::Announcement));
    let mut r2 = responder();
    r2.apply(
        &SetNeigh {
            add: vec![NeighBinding {
                ip: ip(30),
                mac: mac(0x30),
            }],
            ..SetNeigh::default()
        },
        nobody,
    );
    assert_eq!(
        r2.answer(&request(30, 21), nobody),
        Err(Skip::SenderInTable),
        "a bound address asking from our bridge is the controller's to judge"
    );
    // The sender MAC must be the frame's source, and a unicast one.
    let mut spoofed = request(11, 21);
    spoofed[6..12].copy_from_slice(&mac(12).0);
    assert_eq!(r.answer(&spoofed, nobody), Err(Skip::BadSender));
    let mut group = request(11, 21);
    group[6] = 0x01;
    group[22] = 0x01;
    assert_eq!(r.answer(&group, nobody), Err(Skip::BadSender));
    assert_eq!(r.counters.arp_answered_locally, 0);
    assert!(r.take_reports().is_empty());
}

#[test]
fn a_binding_to_a_host_on_the_local_bridge_is_never_given_out() {
    let local = |m: &MacAddr| *m == mac(0x15);
    // Refused when programmed...
    let mut r = Responder::default();
    let set = SetNeigh {
        add: vec![NeighBinding {
            ip: ip(21),
            mac: mac(0x15),
        }],
        ..SetNeigh::default()
    };
    assert_eq!(r.apply(&set, local), 1);
    assert_eq!(r.get(&ip(21)), None);
    assert_eq!(r.counters.neigh_refused, 1);
    // ...and not answered if the host showed up on the bridge after it was programmed.
    let mut r = responder();
    assert_eq!(r.answer(&request(11, 21), local), Err(Skip::TargetLocal));
    // Group and zero MACs are refused, and replace a stale binding of that IP.
    let bad = SetNeigh {
        add: vec![
            NeighBinding {
                ip: ip(21),
                mac: MacAddr::BROADCAST,
            },
            NeighBinding {
                ip: ip(22),
                mac: MacAddr::ZERO,
            },
        ],
        ..SetNeigh::default()
    };
    assert_eq!(r.apply(&bad, nobody), 2);
    assert!(r.is_empty());
}

#[test]
fn malformed_frames_are_left_to_the_controller_without_a_panic() {
    let mut r = responder();
    let good = request(11, 21);
    for n in 0..good.len() {
        if n >= 42 {
            break;
        }
        assert_eq!(
            r.answer(&good[..n], nobody),
            Err(Skip::Malformed),
            "{n} bytes"
        );
    }
    for (at, byte) in [
        (12, 0x86u8),
        (13, 0x00),
        (15, 6),
        (16, 0x86),
        (18, 8),
        (21, 9),
    ] {
        let mut bad = good.clone();
        bad[at] = byte;
        assert_eq!(r.answer(&bad, nobody), Err(Skip::Malformed), "byte {at}");
    }
    assert_eq!(r.counters.arp_answered_locally, 0);
    // The minimal 42-byte request (no padding) is answered.
    assert!(r.answer(&good[..42], nobody).is_ok());
}

#[test]
fn set_neigh_replaces_removes_and_stays_bounded() {
    let mut r = responder();
    let b = |i: u16| NeighBinding {
        ip: Ipv4Addr::from(0x0a05_0000 + u32::from(i)),
        mac: MacAddr([0x02, 1, 0, 0, (i >> 8) as u8, i as u8]),
    };
    let set = SetNeigh {
        replace: Some(true),
        add: (0..SetNeigh::MAX_ENTRIES as u16 + 10).map(b).collect(),
        remove: vec![],
    };
    assert_eq!(r.apply(&set, nobody), 10, "the table is bounded");
    assert_eq!(r.len(), SetNeigh::MAX_ENTRIES);
    assert_eq!(r.get(&ip(21)), None, "replace emptied the table first");
    // Changing a held binding is not an overflow.
    let mut moved = b(0);
    moved.mac = mac(0x77);
    let set = SetNeigh {
        add: vec![moved],
        remove: vec![b(1).ip],
        ..SetNeigh::default()
    };
    assert_eq!(r.apply(&set, nobody), 0);
    assert_eq!(r.get(&b(0).ip), Some(mac(0x77)));
    assert_eq!(r.get(&b(1).ip), None);
    r.clear();
    assert!(r.is_empty());
}

#[test]
fn answers_are_reported_once_each_and_the_report_is_bounded() {
    let mut r = responder();
    for _ in 0..3 {
        r.answer(&request(11, 21), nobody).unwrap();
    }
    r.answer(&request(12, 21), nobody).unwrap();
    assert_eq!(r.counters.arp_answered_locally, 4);
    let reports = r.take_reports();
    assert_eq!(
        reports,
        vec![
            NeighAnswer {
                ip: ip(21),
                requester_ip: ip(11),
                requester_mac: mac(11),
            },
            NeighAnswer {
                ip: ip(21),
                requester_ip: ip(12),
                requester_mac: mac(12),
            },
        ]
    );
    assert!(r.take_reports().is_empty());
    // A new report period reports the same requester again.
    r.answer(&request(11, 21), nobody).unwrap();
    assert_eq!(r.take_reports().len(), 1);
    for i in 0..(MAX_REPORTS as u32 + 5) {
        let mut f = request(11, 21);
        f[28..32].copy_from_slice(&Ipv4Addr::from(0x0a01_0000 + i).octets());
        r.answer(&f, nobody).unwrap();
    }
    assert_eq!(r.take_reports().len(), MAX_REPORTS);
    assert_eq!(r.counters.neigh_reports_dropped, 5);
}
