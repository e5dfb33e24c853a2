use super::*;

/// fd00:3::11 (02:42:0a:00:03:0b) asks who has fd00:3::21; the checksum was computed by an
/// independent RFC 1071 implementation.
const NS: [u8; 86] = [
    0x33, 0x33, 0xff, 0x00, 0x00, 0x21, 0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b, 0x86, 0xdd, 0x60, 0x00,
    0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x01, 0xff, 0x00, 0x00, 0x21, 0x87, 0x00, 0x6f, 0xf7, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x00,
    0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x21, 0x01, 0x01,
    0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b,
];

const REQ_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b]);
const OWNER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x21]);

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn parses_a_solicitation_and_builds_the_same_bytes() {
    assert!(is_nd(&NS));
    let f = parse_frame(&NS).unwrap();
    assert_eq!(f.src, ip("fd00:3::11"));
    assert_eq!(f.dst, ip("ff02::1:ff00:21"));
    assert_eq!(f.eth_src, REQ_MAC);
    assert_eq!(
        f.msg,
        NdMessage::Solicit(Solicit {
            target: ip("fd00:3::21"),
            source_ll: Some(REQ_MAC),
        })
    );
    assert!(!f.is_dad());
    assert_eq!(
        solicit_frame(ip("fd00:3::11"), REQ_MAC, ip("fd00:3::21")),
        NS.to_vec()
    );
}

#[test]
fn the_answer_is_a_valid_solicited_override_advertisement_with_hop_limit_255() {
    let a = answer_frame(
        ip("fd00:3::21"),
        OWNER_MAC,
        false,
        ip("fd00:3::11"),
        REQ_MAC,
    );
    // Ethernet: to the requester, from the owner's real MAC.
    assert_eq!(&a[0..6], &REQ_MAC.0);
    assert_eq!(&a[6..12], &OWNER_MAC.0);
    assert_eq!(a[21], 255, "hop limit");
    assert_eq!(a[54], TYPE_NA);
    assert_eq!(
        a[58],
        FLAG_SOLICITED | FLAG_OVERRIDE,
        "flags S and O, not R"
    );
    // The checksum verifies independently of the parser: the sum over pseudo-header and
    // message is 0xffff.
    let (src, dst) = (ip6_at(&a, 22), ip6_at(&a, 38));
    assert_eq!(src, ip("fd00:3::21"));
    assert_eq!(dst, ip("fd00:3::11"));
    assert!(matches!(icmp_sum(&src, &dst, &a[ICMP_AT..]), 0 | 0xffff));
    let f = parse_frame(&a).unwrap();
    assert_eq!(
        f.msg,
        NdMessage::Advert(Advert {
            target: ip("fd00:3::21"),
            router: false,
            solicited: true,
            override_: true,
            target_ll: Some(OWNER_MAC),
        })
    );
    let r = answer_frame(ip("fd00:3::1"), OWNER_MAC, true, ip("fd00:3::11"), REQ_MAC);
    assert_eq!(r[58], FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE);
}

#[test]
fn an_announcement_goes_to_all_nodes_unsolicited() {
    let a = announce_frame(ip("fd00:3::21"), OWNER_MAC, false);
    let f = parse_frame(&a).unwrap();
    assert_eq!(f.dst, ALL_NODES);
    assert_eq!(f.eth_dst, MacAddr([0x33, 0x33, 0, 0, 0, 1]));
    assert!(matches!(f.msg, NdMessage::Advert(a) if !a.solicited && a.override_));
}

/// A DAD probe: from ::, to the solicited-node address, no source link-layer option.
fn dad_probe(target: Ipv6Addr) -> Vec<u8> {
    NdFrame {
        eth_dst: multicast_mac(&solicited_node(&target)),
        eth_src: REQ_MAC,
        src: Ipv6Addr::UNSPECIFIED,
        dst: solicited_node(&target),
        msg: NdMessage::Solicit(Solicit {
            target,
            source_ll: None,
        }),
    }
    .to_frame()
}

#[test]
fn dad_probes_are_recognised_and_checked() {
    let p = dad_probe(ip("fd00:3::21"));
    let f = parse_frame(&p).unwrap();
    assert!(f.is_dad());
    // A probe with a source link-layer option, or not to the solicited-node address, is
    // invalid (RFC 4861 7.1.1).
    let mut bad = NdFrame {
        msg: NdMessage::Solicit(Solicit {
            target: ip("fd00:3::21"),
            source_ll: Some(REQ_MAC),
        }),
        ..f
    };
    assert_eq!(parse_frame(&bad.to_frame()), Err(WireError::Malformed));
    bad.msg = f.msg;
    bad.dst = ALL_NODES;
    assert_eq!(parse_frame(&bad.to_frame()), Err(WireError::Malformed));
}

#[test]
fn invalid_nd_is_refused() {
    let set = |i: usize, v: u8| {
        let mut f = NS.to_vec();
        f[i] = v;
        f
    };
    // Hop limit 64: not from the link.
    assert_eq!(parse_frame(&set(21, 64)), Err(WireError::Malformed));
    // Code 1.
    assert_eq!(parse_frame(&set(55, 1)), Err(WireError::Malformed));
    // A wrong checksum.
    assert_eq!(parse_frame(&set(56, 0)), Err(WireError::Malformed));
    // An option of length 0 (checksum left wrong too, but the length is what matters here).
    let mut f = NS.to_vec();
    f[79] = 0;
    assert!(parse_frame(&f).is_err());
    // Payload length beyond the frame.
    assert_eq!(parse_frame(&set(19, 0x40)), Err(WireError::Malformed));
    // Truncated anywhere.
    for n in 0..NS.len() - 8 {
        assert!(parse_frame(&NS[..n]).is_err(), "{n} bytes");
    }
    // A multicast target.
    let m = solicit_frame(ip("fd00:3::11"), REQ_MAC, ip("ff02::1"));
    assert_eq!(parse_frame(&m), Err(WireError::Malformed));
    // A solicited advertisement to a multicast address.
    let mut a = parse_frame(&announce_frame(ip("fd00:3::21"), OWNER_MAC, false)).unwrap();
    if let NdMessage::Advert(ad) = &mut a.msg {
        ad.solicited = true;
    }
    assert_eq!(parse_frame(&a.to_frame()), Err(WireError::Malformed));
}

#[test]
fn padding_and_unknown_options_are_allowed() {
    let mut f = NS.to_vec();
    f.extend_from_slice(&[0; 10]);
    assert!(
        parse_frame(&f).is_ok(),
        "Ethernet padding after the payload"
    );
    // An unknown option (type 14, nonce, 8 bytes) before the source link-layer option.
    let mut msg = NS[ICMP_AT..].to_vec();
    msg.splice(24..24, [14, 1, 1, 2, 3, 4, 5, 6]);
    msg[2..4].copy_from_slice(&[0, 0]);
    let sum = icmp_sum(&ip("fd00:3::11"), &ip("ff02::1:ff00:21"), &msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = NS[..ICMP_AT].to_vec();
    f[18..20].copy_from_slice(&(msg.len() as u16).to_be_bytes());
    f.extend_from_slice(&msg);
    let p = parse_frame(&f).unwrap();
    assert!(matches!(p.msg, NdMessage::Solicit(s) if s.source_ll == Some(REQ_MAC)));
}

#[test]
fn multicast_listener_traffic_is_not_nd() {
    // An MLDv2 report (type 143) and an echo request (128) are not ND, whatever follows.
    let mut f = NS.to_vec();
    f[ICMP_AT] = 143;
    assert!(!is_nd(&f));
    f[ICMP_AT] = 128;
    assert!(!is_nd(&f));
    // IPv6 with a hop-by-hop header first (as MLD has): not ND either.
    let mut f = NS.to_vec();
    f[20] = 0;
    assert!(!is_nd(&f));
    // IPv4.
    let mut f = NS.to_vec();
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    assert!(!is_nd(&f));
}
