//! The coalescer on hand-built and split frames: what passes through, what is merged, what
//! ends a run, and the bounds.

use super::tests::{build, finished, split_all, verifies, Spec, ACK, PSH, SYN};
use super::*;

/// Everything a coalescer emits for `frames` (pushed in order, then flushed).
pub(super) fn coalesce_all(frames: &[(Vec<u8>, Csum)]) -> Vec<Vec<u8>> {
    let mut c = Coalescer::new();
    let mut out = Vec::new();
    for (f, csum) in frames {
        c.push(f, *csum, |b| out.push(b.to_vec()));
    }
    c.flush(|b| out.push(b.to_vec()));
    assert_eq!(c.pending(), 0);
    out
}

#[test]
fn done_and_non_tcp_frames_pass_through_unchanged() {
    let (_, tcp) = build(&Spec::new(false, 0, 1000, 1448));
    let arp = [&tcp[..12], &[0x08, 0x06], &[7u8; 28][..]].concat();
    let out = coalesce_all(&[(tcp.clone(), Csum::Done), (arp.clone(), Csum::Done)]);
    assert_eq!(
        out,
        vec![
            [&[0u8; 10][..], &tcp].concat(),
            [&[0u8; 10][..], &arp].concat()
        ]
    );
}

#[test]
fn single_segment_goes_out_as_is_with_needs_csum() {
    let (hdr, frame) = build(&Spec::new(true, 1, 1000, 1448));
    let out = coalesce_all(&[(frame.clone(), hdr.csum())]);
    let want = VnetHdr::from_csum(hdr.csum());
    assert_eq!(out, vec![[&want.emit()[..], &frame].concat()]);
}

#[test]
fn interleaved_flows_coalesce_separately_and_a_gap_starts_a_new_run() {
    // IPv6 too: there the sequence number alone reveals the gap (no IPv4 id).
    for v6 in [false, true] {
        let (ha, a) = build(&Spec::new(v6, 0, 4000, 1000));
        let mut sb = Spec::new(v6, 0, 3000, 1000);
        sb.sport = 40001;
        let (hb, b) = build(&sb);
        let sa = split_all(&ha, &a, 1514).unwrap();
        let sbs = split_all(&hb, &b, 1514).unwrap();
        let frames = [&sa[0], &sbs[0], &sa[1], &sbs[1], &sbs[2], &sa[3]].map(|f| f.clone());
        let out = coalesce_all(&frames);
        // B: three full segments, pending until the flush; A: a run of two, then seg 3 alone
        // (seg 2 is missing), with the run flushed before it.
        assert_eq!(out.len(), 3);
        let hdr = |b: &[u8]| VnetHdr::parse(b).unwrap();
        let (l4, hdrs) = (usize::from(ha.csum_start), usize::from(ha.hdr_len));
        let gso = if v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        };
        assert_eq!(hdr(&out[0]).gso_type, gso);
        assert_eq!(out[0].len(), 10 + hdrs + 2000);
        assert_eq!(out[0][10 + l4..12 + l4], [0x9c, 0x40], "flow A");
        assert_eq!(
            out[1][10..],
            sa[3].0[..],
            "A's last segment alone, unchanged"
        );
        assert_eq!(hdr(&out[1]).gso_type, VIRTIO_NET_HDR_GSO_NONE);
        assert_eq!(hdr(&out[2]).gso_size, 1000);
        assert_eq!(out[2].len(), 10 + hdrs + 3000);
        assert!(verifies(&finished(
            out[2][10..].to_vec(),
            hdr(&out[2]).csum()
        )));
    }
}

#[test]
fn psh_ends_a_run_at_once_and_unmergeable_segments_keep_the_order() {
    let mut spec = Spec::new(false, 2, 3000, 1000);
    spec.flags = ACK | PSH;
    let (h, f) = build(&spec);
    let segs = split_all(&h, &f, 1514).unwrap();
    let mut c = Coalescer::new();
    let mut out = Vec::new();
    for (s, csum) in &segs {
        c.push(s, *csum, |b| out.push(b.to_vec()));
    }
    assert_eq!(out.len(), 1, "emitted before any flush");
    assert_eq!(c.pending(), 0);
    // A SYN of the same flow after a pending segment: the segment first, then the SYN.
    let mut syn = segs[0].0.clone();
    syn[22 + 34 + 13] = SYN;
    let frames = vec![segs[0].clone(), (syn.clone(), segs[0].1), segs[1].clone()];
    let out = coalesce_all(&frames);
    let bodies: Vec<&[u8]> = out.iter().map(|b| &b[10..]).collect();
    assert_eq!(bodies, vec![&segs[0].0[..], &syn[..], &segs[1].0[..]]);
}

#[test]
fn different_options_ack_or_vlan_are_not_merged() {
    let (h, f) = build(&Spec::new(false, 1, 2000, 1000));
    let segs = split_all(&h, &f, 1514).unwrap();
    let l4 = 38;
    for (at, what) in [
        (l4 + 20 + 7, "timestamp"),
        (l4 + 9, "ack"),
        (15, "VLAN id"),
        (6, "source MAC"),
    ] {
        let mut second = segs[1].clone();
        second.0[at] ^= 1;
        let out = coalesce_all(&[segs[0].clone(), second]);
        assert_eq!(out.len(), 2, "{what} differs: not merged");
    }
    assert_eq!(coalesce_all(&segs).len(), 1);
}

#[test]
fn runs_stop_at_64k_and_flows_beyond_the_limit_evict() {
    let (h, f) = build(&Spec::new(false, 0, 65_535 - 20 - 32, 8000));
    let segs = split_all(&h, &f, 9000).unwrap();
    let out = coalesce_all(&segs);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|b| b.len() - 10 <= MAX_SUPER_FRAME));
    let mut frames = Vec::new();
    for flow in 0..=MAX_FLOWS as u16 {
        let mut s = Spec::new(true, 0, 2000, 1000);
        s.sport = 1000 + flow;
        let (h, f) = build(&s);
        frames.push(split_all(&h, &f, 1514).unwrap()[0].clone());
    }
    let mut c = Coalescer::new();
    let mut out = Vec::new();
    for (f, csum) in &frames {
        c.push(f, *csum, |b| out.push(b.to_vec()));
    }
    assert_eq!(out.len(), 1, "the oldest flow is pushed out");
    assert_eq!(out[0][10..], frames[0].0[..]);
    assert_eq!(c.pending(), MAX_FLOWS);
}
