use super::*;
use crate::offload::headers::{ETHERTYPE_QINQ, ETHERTYPE_VLAN};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];

fn eth(tags: &[u16], ethertype: u16, packet: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    for (i, vid) in tags.iter().enumerate() {
        let tpid = if i + 1 < tags.len() {
            ETHERTYPE_QINQ
        } else {
            ETHERTYPE_VLAN
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

/// An IPv4 packet of `total` bytes, protocol `proto`, with DF if `df`; the transport header's
/// first byte is `l4_first`.
fn v4(total: usize, proto: u8, df: bool, l4_first: u8) -> Vec<u8> {
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    put16(&mut p, 2, total as u16);
    put16(&mut p, 6, if df { IPV4_DF } else { 0 });
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&[10, 0, 3, 11]);
    p[16..20].copy_from_slice(&[10, 0, 3, 21]);
    set_ipv4_checksum(&mut p[..20]);
    p[20] = l4_first;
    for (i, b) in p[21..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn v6(len: usize, next: u8, l4_first: u8) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x60;
    put16(&mut p, 4, (len - 40) as u16);
    p[6] = next;
    p[7] = 64;
    p[8] = 0xfd;
    p[23] = 0x11;
    p[24] = 0xfd;
    p[39] = 0x21;
    p[40] = l4_first;
    p
}

fn answer(frame: &[u8], mtu: u16) -> Vec<u8> {
    match too_big(frame, mtu) {
        TooBig::Answer(a) => a,
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn an_ipv4_packet_with_df_over_the_mtu_gets_fragmentation_needed() {
    let packet = v4(2000, 17, true, 0x30);
    for tags in [&[][..], &[42], &[7, 42]] {
        let frame = eth(tags, ETHERTYPE_IPV4, &packet);
        let a = answer(&frame, 1500);
        let l3 = 14 + 4 * tags.len();
        assert_eq!(&a[0..6], &SRC_MAC, "to the sender");
        assert_eq!(&a[6..12], &DST_MAC, "from the destination");
        assert_eq!(&a[12..l3], &frame[12..l3], "same tags and EtherType");
        let ip = &a[l3..];
        assert!(ip.len() <= 576);
        assert_eq!(ones_sum(&ip[..20]), 0xffff, "IPv4 header checksum");
        assert_eq!(usize::from(be16(ip, 2)), ip.len());
        assert_eq!(ip[9], IPPROTO_ICMP);
        assert_eq!(&ip[12..16], &[10, 0, 3, 21]);
        assert_eq!(&ip[16..20], &[10, 0, 3, 11]);
        let icmp = &ip[20..];
        assert_eq!((icmp[0], icmp[1]), (3, 4));
        assert_eq!(be16(icmp, 6), 1500);
        assert_eq!(ones_sum(icmp), 0xffff, "ICMP checksum");
        assert_eq!(
            &icmp[8..],
            &packet[..icmp.len() - 8],
            "quotes the packet's start"
        );
    }
}

#[test]
fn an_ipv6_packet_over_the_mtu_gets_packet_too_big() {
    let packet = v6(3000, 17, 0);
    let frame = eth(&[42], ETHERTYPE_IPV6, &packet);
    let a = answer(&frame, 1500);
    let ip = &a[18..];
    assert!(ip.len() <= 1280);
    assert_eq!(ip[6], IPPROTO_ICMPV6);
    assert_eq!(&ip[8..24], &packet[24..40]);
    assert_eq!(&ip[24..40], &packet[8..24]);
    let icmp = &ip[40..];
    assert_eq!(usize::from(be16(ip, 4)), icmp.len());
    assert_eq!(icmp[0], 2);
    assert_eq!(be32(icmp, 4), 1500);
    let src: [u8; 16] = ip[8..24].try_into().unwrap();
    let dst: [u8; 16] = ip[24..40].try_into().unwrap();
    let pseudo = pseudo_sum_v6(&src, &dst, IPPROTO_ICMPV6, icmp.len() as u32);
    assert_eq!(
        fold(u32::from(pseudo) + u32::from(ones_sum(icmp))),
        0xffff,
        "ICMPv6 checksum"
    );
    assert_eq!(&icmp[8..], &packet[..icmp.len() - 8]);
    // An echo request (128) is answered too; behind a hop-by-hop header as well.
    assert!(matches!(
        too_big(&eth(&[], ETHERTYPE_IPV6, &v6(3000, 58, 128)), 1500),
        TooBig::Answer(_)
    ));
    let mut hbh = v6(3000, 0, 58);
    hbh[41] = 0;
    hbh[48] = 128;
    assert!(matches!(
        too_big(&eth(&[], ETHERTYPE_IPV6, &hbh), 1500),
        TooBig::Answer(_)
    ));
}

fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

#[test]
fn what_fits_passes_and_what_must_not_be_answered_is_dropped() {
    // Fits: exactly the MTU, tagged or not.
    assert_eq!(
        too_big(&eth(&[], ETHERTYPE_IPV4, &v4(1500, 17, true, 0)), 1500),
        TooBig::Fits
    );
    assert_eq!(
        too_big(&eth(&[1, 2], ETHERTYPE_IPV6, &v6(1500, 17, 0)), 1500),
        TooBig::Fits
    );
    assert_eq!(too_big(&eth(&[], 0x88b5, &[0u8; 1500]), 1500), TooBig::Fits);
    // Not IP, too big.
    assert_eq!(too_big(&eth(&[], 0x88b5, &[0u8; 2000]), 1500), TooBig::Drop);
    // IPv4 without DF and with options: not cut, dropped.
    let mut opts = v4(2000, 17, false, 0);
    opts[0] = 0x46;
    assert_eq!(
        too_big(&eth(&[], ETHERTYPE_IPV4, &opts), 1500),
        TooBig::Drop
    );
    // ICMP errors are never answered; an echo request is.
    assert_eq!(
        too_big(&eth(&[], ETHERTYPE_IPV4, &v4(2000, 1, true, 3)), 1500),
        TooBig::Drop
    );
    assert!(matches!(
        too_big(&eth(&[], ETHERTYPE_IPV4, &v4(2000, 1, true, 8)), 1500),
        TooBig::Answer(_)
    ));
    assert_eq!(
        too_big(&eth(&[], ETHERTYPE_IPV6, &v6(2000, 58, 1)), 1500),
        TooBig::Drop
    );
    // Group destinations and sources.
    let mut bcast = eth(&[], ETHERTYPE_IPV4, &v4(2000, 17, true, 0));
    bcast[0..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(too_big(&bcast, 1500), TooBig::Drop);
    let mut mcast = v4(2000, 17, true, 0);
    mcast[16] = 239;
    assert_eq!(
        too_big(&eth(&[], ETHERTYPE_IPV4, &mcast), 1500),
        TooBig::Drop
    );
    let mut unspec = v6(2000, 17, 0);
    unspec[8..24].fill(0);
    assert_eq!(
        too_big(&eth(&[], ETHERTYPE_IPV6, &unspec), 1500),
        TooBig::Drop
    );
    // A later IPv6 fragment: no transport header to quote.
    let mut frag = v6(2000, 44, 17);
    frag[43] = 0x08;
    assert_eq!(
        too_big(&eth(&[], ETHERTYPE_IPV6, &frag), 1500),
        TooBig::Drop
    );
    // Lengths that lie.
    let mut short = v4(2000, 17, true, 0);
    put16(&mut short, 2, 4000);
    assert_eq!(
        too_big(&eth(&[], ETHERTYPE_IPV4, &short), 1500),
        TooBig::Drop
    );
    for n in 0..40 {
        let f = eth(&[], ETHERTYPE_IPV6, &v6(2000, 17, 0)[..n]);
        assert_eq!(too_big(&f, 1500), TooBig::Fits);
    }
}

#[test]
fn ipv4_without_df_is_cut_into_fragments_that_reassemble() {
    for (total, base_mf) in [(2000usize, false), (4028, false), (9000, true)] {
        let mut packet = v4(total, 17, false, 0x55);
        if base_mf {
            // Already a first fragment of something larger: every piece keeps MF.
            put16(&mut packet, 6, 0x2000);
            set_ipv4_checksum(&mut packet[..20]);
        }
        let frame = eth(&[42], ETHERTYPE_IPV4, &packet);
        let TooBig::Fragments(frags) = too_big(&frame, 1500) else {
            panic!("expected fragments");
        };
        let mut payload = vec![0u8; total - 20];
        let mut seen = 0;
        for (i, f) in frags.iter().enumerate() {
            assert_eq!(&f[..18], &frame[..18], "same Ethernet header and tag");
            let ip = &f[18..];
            assert!(ip.len() <= 1500);
            assert_eq!(usize::from(be16(ip, 2)), ip.len());
            assert_eq!(ones_sum(&ip[..20]), 0xffff, "header checksum");
            assert_eq!(&ip[12..20], &packet[12..20]);
            assert_eq!(be16(ip, 4), be16(&packet, 4), "same id");
            let ff = be16(ip, 6);
            let off = usize::from(ff & 0x1fff) * 8;
            let mf = ff & 0x2000 != 0;
            assert_eq!(mf, base_mf || i + 1 < frags.len());
            payload[off..off + ip.len() - 20].copy_from_slice(&ip[20..]);
            seen += ip.len() - 20;
        }
        assert_eq!(seen, total - 20);
        assert_eq!(&payload[..], &packet[20..]);
    }
}
