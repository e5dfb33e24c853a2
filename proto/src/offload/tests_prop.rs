//! Property tests: splitting a super-frame and coalescing the segments gives it back, and every
//! segment is a valid TCP/IP packet once its checksum is finished.

use super::tests::{build, split_all, verifies, Spec, ACK, CWR, FIN, PSH};
use super::tests_coalesce::coalesce_all;
use super::*;
use proptest::prelude::*;

/// The RFC 1071 sum, 16 bits at a time.
fn naive_sum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn ones_sum_agrees_with_the_naive_sum(data in proptest::collection::vec(any::<u8>(), 0..300), skip in 0usize..9) {
        let d = &data[skip.min(data.len())..];
        prop_assert_eq!(ones_sum(d), naive_sum(d));
    }

    #[test]
    fn split_then_coalesce_gives_back_the_super_frame(
        v6 in any::<bool>(),
        tags in 0usize..=2,
        len in 1usize..64_000,
        gso_size in 200u16..=9000,
        max_seg in 600usize..9000,
        seq in any::<u32>(),
        id in any::<u16>(),
        opt_words in 0usize..=10,
        flags in prop::sample::select(vec![ACK, ACK | PSH, ACK | FIN, ACK | PSH | FIN, ACK | CWR]),
    ) {
        let mut spec = Spec::new(v6, tags, len, gso_size);
        spec.seq = seq;
        spec.id = id;
        spec.flags = flags;
        spec.options = (0..opt_words * 4).map(|i| if i < 2 { 1 } else { i as u8 }).collect();
        let (hdr, frame) = build(&spec);
        let segs = split_all(&hdr, &frame, max_seg).unwrap();
        let hdrs = usize::from(hdr.hdr_len);
        let mss = usize::from(gso_size).min(max_seg - hdrs);
        prop_assert_eq!(segs.len(), len.div_ceil(mss));
        for (seg, csum) in &segs {
            prop_assert!(seg.len() <= max_seg && seg.len() - hdrs <= usize::from(gso_size));
            let mut fin = seg.clone();
            finish_checksum(&mut fin, *csum).unwrap();
            prop_assert!(verifies(&fin), "segment does not verify");
        }

        let out = coalesce_all(&segs);
        prop_assert_eq!(out.len(), 1);
        let got_hdr = VnetHdr::parse(&out[0]).unwrap();
        let mut got = out[0][VNET_HDR_LEN..].to_vec();
        prop_assert_eq!(got_hdr.csum(), hdr.csum());
        if segs.len() > 1 {
            let ecn = if flags & CWR != 0 { VIRTIO_NET_HDR_GSO_ECN } else { 0 };
            prop_assert_eq!(got_hdr.gso_type, hdr.gso_type | ecn);
            prop_assert_eq!(usize::from(got_hdr.gso_size), mss);
            prop_assert_eq!(got_hdr.hdr_len, hdr.hdr_len);
        } else {
            prop_assert_eq!(got_hdr.gso_type, VIRTIO_NET_HDR_GSO_NONE);
        }
        // Before finishing (the pseudo-header sums must agree too), and after.
        prop_assert!(got == frame, "coalesced frame differs from the original");
        let mut want = frame.clone();
        finish_checksum(&mut want, hdr.csum()).unwrap();
        finish_checksum(&mut got, got_hdr.csum()).unwrap();
        prop_assert!(got == want);
        prop_assert!(verifies(&got));
    }
}
