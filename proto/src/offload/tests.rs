//! Hand-built frames through `split`, `Coalescer` and the checksum helpers. The frame builder
//! and checker here are shared with the property tests (`tests_prop.rs`).

use super::headers::{parse_tcp, tcp_pseudo_sum};
use super::*;

pub(super) const ACK: u8 = 0x10;
pub(super) const PSH: u8 = 0x08;
pub(super) const FIN: u8 = 0x01;
pub(super) const CWR: u8 = 0x80;
pub(super) const SYN: u8 = 0x02;

/// A TCP super-frame to build.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub v6: bool,
    /// VLAN tags: 0, 1 (802.1Q) or 2 (802.1ad outer, 802.1Q inner).
    pub tags: usize,
    pub payload: Vec<u8>,
    pub flags: u8,
    pub seq: u32,
    pub id: u16,
    /// TCP options, a multiple of 4 bytes.
    pub options: Vec<u8>,
    pub gso_size: u16,
    /// Source port (to tell flows apart).
    pub sport: u16,
}

impl Spec {
    pub fn new(v6: bool, tags: usize, payload_len: usize, gso_size: u16) -> Spec {
        Spec {
            v6,
            tags,
            payload: (0..payload_len).map(|i| (i * 7 + i / 251) as u8).collect(),
            flags: ACK,
            seq: 0xffff_f000,
            id: 0xfffe,
            // NOP, NOP, timestamp.
            options: vec![1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78],
            gso_size,
            sport: 40000,
        }
    }
}

/// The frame as the TAP would hand it over (TCP checksum field = pseudo-header sum, IPv4
/// header checksum valid) and its virtio-net header.
pub(super) fn build(s: &Spec) -> (VnetHdr, Vec<u8>) {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if s.tags == 2 {
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x07]);
    }
    if s.tags >= 1 {
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x64]);
    }
    let l4_len = 20 + s.options.len() + s.payload.len();
    if s.v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0x01, 0x23, 0x45]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0x00]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&s.id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    }
    let l4 = f.len();
    f.extend_from_slice(&s.sport.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    f.extend_from_slice(&s.seq.to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    f.push(((20 + s.options.len()) / 4 * 16) as u8);
    f.push(s.flags);
    f.extend_from_slice(&[0x10, 0x00, 0, 0, 0, 0]);
    f.extend_from_slice(&s.options);
    f.extend_from_slice(&s.payload);
    let t = parse_tcp(&f).expect("built frame parses");
    let end = f.len();
    headers::fix_lengths(&mut f, &t, end);
    let hdr = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: if s.v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        },
        hdr_len: t.payload as u16,
        gso_size: s.gso_size,
        csum_start: l4 as u16,
        csum_offset: 16,
    };
    (hdr, f)
}

/// Whether `frame` is a TCP/IP packet whose IPv4 header checksum and TCP checksum verify.
pub(super) fn verifies(frame: &[u8]) -> bool {
    let Ok(t) = parse_tcp(frame) else {
        return false;
    };
    let ip_ok = t.ipv6 || ones_sum(&frame[t.l3..t.l4]) == 0xffff;
    let pseudo = u32::from(tcp_pseudo_sum(frame, &t, t.end - t.l4));
    let mut s = pseudo + u32::from(ones_sum(&frame[t.l4..t.end]));
    s = (s & 0xffff) + (s >> 16);
    ip_ok && s == 0xffff
}

/// Splits and returns the finished-or-not segments with their checksum state.
pub(super) fn split_all(
    hdr: &VnetHdr,
    frame: &[u8],
    max_seg: usize,
) -> Result<Vec<(Vec<u8>, Csum)>, OffloadError> {
    let mut scratch = vec![0u8; 3 + max_seg.max(frame.len())];
    let mut out = Vec::new();
    let n = split(hdr, frame, max_seg, &mut scratch, 3, |seg, csum| {
        out.push((seg[3..].to_vec(), csum));
    })?;
    assert_eq!(n, out.len());
    Ok(out)
}

pub(super) fn finished(mut frame: Vec<u8>, csum: Csum) -> Vec<u8> {
    finish_checksum(&mut frame, csum).expect("checksum in range");
    frame
}

#[test]
fn vnet_header_round_trips_and_maps_to_csum() {
    let bytes = [1, 0x81, 0x42, 0, 0xa8, 0x05, 0x22, 0, 16, 0];
    let h = VnetHdr::parse(&bytes).unwrap();
    assert_eq!(
        h,
        VnetHdr {
            flags: 1,
            gso_type: 0x81,
            hdr_len: 0x42,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16
        }
    );
    assert_eq!(h.emit(), bytes);
    assert_eq!(
        h.csum(),
        Csum::Partial {
            start: 34,
            offset: 16
        }
    );
    assert_eq!(VnetHdr::parse(&bytes[..9]), Err(OffloadError::ShortVnetHdr));
    let valid = VnetHdr {
        flags: VIRTIO_NET_HDR_F_DATA_VALID,
        ..h
    };
    assert_eq!(valid.csum(), Csum::Done);
    assert_eq!(VnetHdr::from(Csum::Done).emit(), [0; 10]);
    let p = VnetHdr::from_csum(Csum::Partial {
        start: 38,
        offset: 6,
    });
    assert_eq!(p.emit(), [1, 0, 0, 0, 0, 0, 38, 0, 6, 0]);
}

#[test]
fn ones_sum_matches_rfc1071_example_and_odd_lengths() {
    // RFC 1071, 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(ones_sum(&data), 0xddf2);
    assert_eq!(ones_sum(&[0xab]), 0xab00);
    assert_eq!(ones_sum(&[0xff; 9]), 0xff00);
    assert_eq!(ones_sum(&[]), 0);
    let mut hdr = [
        0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7,
    ];
    assert_eq!(ipv4_header_checksum(&hdr), 0xb861);
    hdr[10..12].copy_from_slice(&[0xb8, 0x61]);
    assert_eq!(ones_sum(&hdr), 0xffff);
}

#[test]
fn ipv4_super_frame_splits_into_valid_segments() {
    let mut spec = Spec::new(false, 0, 3000, 1448);
    spec.flags = ACK | PSH;
    let (hdr, frame) = build(&spec);
    let segs = split_all(&hdr, &frame, 1514).unwrap();
    assert_eq!(segs.len(), 3);
    let hdrs = 14 + 20 + 32;
    let mut payload = Vec::new();
    for (i, (seg, csum)) in segs.iter().enumerate() {
        assert_eq!(
            *csum,
            Csum::Partial {
                start: 34,
                offset: 16
            }
        );
        let len = if i < 2 { 1448 } else { 3000 - 2 * 1448 };
        assert_eq!(seg.len(), hdrs + len);
        assert_eq!(seg[..14], frame[..14], "Ethernet header copied");
        assert_eq!(
            u16::from_be_bytes([seg[16], seg[17]]) as usize,
            20 + 32 + len
        );
        assert_eq!(
            u16::from_be_bytes([seg[18], seg[19]]),
            0xfffeu16.wrapping_add(i as u16)
        );
        let seq = u32::from_be_bytes(seg[38..42].try_into().unwrap());
        assert_eq!(seq, 0xffff_f000u32.wrapping_add(1448 * i as u32));
        assert_eq!(seg[47], if i == 2 { ACK | PSH } else { ACK });
        assert!(!verifies(seg), "the checksum is still partial");
        let fin = finished(seg.clone(), *csum);
        assert!(verifies(&fin), "segment {i} verifies once finished");
        payload.extend_from_slice(&seg[hdrs..]);
    }
    assert_eq!(payload, spec.payload);
}

#[test]
fn ipv6_with_vlan_tags_splits_by_the_smaller_of_gso_size_and_link() {
    for tags in [1, 2] {
        let mut spec = Spec::new(true, tags, 5000, 8948);
        spec.flags = ACK | FIN | CWR;
        let (hdr, frame) = build(&spec);
        let l4 = 14 + 4 * tags + 40;
        assert_eq!(usize::from(hdr.csum_start), l4);
        let segs = split_all(&hdr, &frame, 1400).unwrap();
        let mss = 1400 - (l4 + 32);
        assert_eq!(segs.len(), 5000usize.div_ceil(mss));
        for (i, (seg, csum)) in segs.iter().enumerate() {
            assert!(seg.len() <= 1400);
            assert_eq!(seg[..l4 - 40], frame[..l4 - 40], "MACs and tags copied");
            assert_eq!(
                *csum,
                Csum::Partial {
                    start: l4 as u16,
                    offset: 16
                }
            );
            let plen = u16::from_be_bytes([seg[l4 - 36], seg[l4 - 35]]) as usize;
            assert_eq!(plen, seg.len() - l4);
            let flags = seg[l4 + 13];
            assert_eq!(flags & CWR != 0, i == 0, "CWR only on the first");
            assert_eq!(
                flags & FIN != 0,
                i + 1 == segs.len(),
                "FIN only on the last"
            );
            assert!(verifies(&finished(seg.clone(), *csum)));
        }
    }
}

#[test]
fn non_gso_frame_is_emitted_once_with_its_checksum_state() {
    let (_, frame) = build(&Spec::new(false, 1, 2000, 1448));
    let hdr = VnetHdr::from_csum(Csum::Partial {
        start: 38,
        offset: 16,
    });
    let segs = split_all(&hdr, &frame, 1514).unwrap();
    assert_eq!(
        segs,
        vec![(
            frame.clone(),
            Csum::Partial {
                start: 38,
                offset: 16
            }
        )]
    );
    let segs = split_all(&VnetHdr::default(), &frame[..60], 1514).unwrap();
    assert_eq!(segs, vec![(frame[..60].to_vec(), Csum::Done)]);
    let far = VnetHdr::from_csum(Csum::Partial {
        start: 59,
        offset: 0,
    });
    assert_eq!(
        split_all(&far, &frame[..60], 1514),
        Err(OffloadError::CsumOutOfRange)
    );
}

#[test]
fn malformed_or_inconsistent_gso_frames_are_refused() {
    let (hdr, frame) = build(&Spec::new(false, 1, 4000, 1448));
    let e = |h: VnetHdr, f: &[u8], max: usize| split_all(&h, f, max).unwrap_err();
    assert_eq!(
        e(VnetHdr { gso_size: 0, ..hdr }, &frame, 1514),
        OffloadError::ZeroGsoSize
    );
    // A local sender asking for 1-byte segments would turn one read into 4000 datagrams.
    assert_eq!(
        e(VnetHdr { gso_size: 1, ..hdr }, &frame, 1514),
        OffloadError::TinyGsoSize
    );
    assert_eq!(
        e(
            VnetHdr {
                gso_size: 87,
                ..hdr
            },
            &frame,
            1514
        ),
        OffloadError::TinyGsoSize
    );
    assert_eq!(
        e(
            VnetHdr {
                gso_type: VIRTIO_NET_HDR_GSO_UDP,
                ..hdr
            },
            &frame,
            1514
        ),
        OffloadError::UnsupportedGso(3)
    );
    assert_eq!(
        e(
            VnetHdr {
                gso_type: 0x80,
                ..hdr
            },
            &frame,
            1514
        ),
        OffloadError::UnsupportedGso(0x80)
    );
    assert_eq!(
        e(
            VnetHdr {
                gso_type: VIRTIO_NET_HDR_GSO_TCPV6,
                ..hdr
            },
            &frame,
            1514
        ),
        OffloadError::GsoMismatch
    );
    // csum_start counted without the VLAN tag, or pointing elsewhere.
    assert_eq!(
        e(
            VnetHdr {
                csum_start: 34,
                ..hdr
            },
            &frame,
            1514
        ),
        OffloadError::CsumMismatch
    );
    assert_eq!(
        e(
            VnetHdr {
                csum_offset: 6,
                ..hdr
            },
            &frame,
            1514
        ),
        OffloadError::CsumMismatch
    );
    assert_eq!(
        e(VnetHdr { flags: 0, ..hdr }, &frame, 1514),
        OffloadError::NoChecksumOffload
    );
    assert_eq!(
        e(
            VnetHdr {
                hdr_len: 4200,
                ..hdr
            },
            &frame,
            1514
        ),
        OffloadError::HdrLenMismatch
    );
    assert_eq!(e(hdr, &frame, 70), OffloadError::SegmentTooSmall);
    let mut tiny = [0u8; 100];
    let r = split(&hdr, &frame, 1514, &mut tiny, 0, |_, _| {
        panic!("nothing emitted")
    });
    assert_eq!(r, Err(OffloadError::ScratchTooSmall));
    // Every truncation of the frame is refused (the IP length no longer fits).
    for cut in 0..frame.len() {
        assert!(
            split_all(&hdr, &frame[..cut], 1514).is_err(),
            "cut at {cut}"
        );
    }
    let mut frag = frame.clone();
    frag[18 + 6] |= 0x20; // MF
    assert_eq!(e(hdr, &frag, 1514), OffloadError::Fragment);
    let mut udp = frame.clone();
    udp[18 + 9] = 17;
    assert_eq!(e(hdr, &udp, 1514), OffloadError::NotTcp);
    let mut doff = frame.clone();
    doff[38 + 12] = 0x40;
    assert_eq!(e(hdr, &doff, 1514), OffloadError::BadTcpHeader);
    let (hdr6, mut ext) = build(&Spec::new(true, 0, 4000, 1448));
    ext[14 + 6] = 0; // hop-by-hop options
    assert_eq!(e(hdr6, &ext, 1514), OffloadError::Ipv6ExtHeader);
    let mut arp = frame.clone();
    arp[16..18].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(e(hdr, &arp, 1514), OffloadError::NotIp);
}

#[test]
fn only_a_partial_checksum_naming_the_tcp_or_udp_checksum_field_is_sane() {
    use super::partial_is_sane;
    for (v6, tags) in [(false, 0), (false, 2), (true, 1)] {
        let (hdr, frame) = build(&Spec::new(v6, tags, 1000, 1448));
        let good = hdr.csum();
        assert!(partial_is_sane(&frame, good), "v6 {v6} tags {tags}");
        assert!(partial_is_sane(&frame, Csum::Done));
        let Csum::Partial { start, offset } = good else {
            panic!("built frames need their checksum finished");
        };
        // Into the IP or Ethernet header, at the wrong field, past the packet: refused.
        for (s, o) in [
            (start - 4, offset),
            (0, offset),
            (start, 6),
            (start, 0),
            (start, 2000),
        ] {
            let bad = Csum::Partial {
                start: s,
                offset: o,
            };
            assert!(!partial_is_sane(&frame, bad), "v6 {v6} tags {tags} {bad:?}");
        }
        assert!(!partial_is_sane(&frame[..start as usize + 10], good));
    }
    // An ARP frame has no checksum to finish.
    let arp = [0u8; 60];
    let p = Csum::Partial {
        start: 34,
        offset: 16,
    };
    assert!(!partial_is_sane(&arp, p));
}
