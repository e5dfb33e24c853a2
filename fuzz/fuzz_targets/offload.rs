//! The TAP offload code (`proto::offload`) on any frame: `VnetHdr::parse`, `split` and a
//! `Coalescer` fed with the segments and the frame itself must never panic. The input is
//!
//!   `[mode u8][max_seg u16 le][rest]`
//!
//! Mode bit 0 clear: `rest` is `[virtio-net header, 10 bytes][frame]`, as read from the TAP.
//! Mode bit 0 set: a well-formed TCP super-frame is built (IPv6 if bit 1, one VLAN tag if bit
//! 2, PSH if bit 3) with `rest` = `[gso_size u16 le][n u8][n x (pos u16 le, byte)][payload]`;
//! the `n` (at most 8) bytes replace the frame's at `pos` (modulo its length).
//!
//! `clamp_mss` and `too_big` run on every frame too: an ICMP answer fits 576 bytes (IPv4) or
//! 1280 (IPv6) behind the frame's Ethernet header and tags; fragments carry the packet's
//! bytes, each within the MTU.
//!
//! Besides not panicking: segments fit `max_seg`, carry at most `gso_size` payload bytes and
//! have a checksum field inside them; every coalesced buffer starts with a parsable header
//! and stays within 64 KB when it is a GSO frame; nothing stays pending after `flush`; and an
//! unaltered built frame comes back byte for byte from split then coalesce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::offload::{
    finish_checksum, split, Coalescer, Csum, VnetHdr, MAX_SUPER_FRAME, MIN_GSO_SIZE,
    VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6, VNET_HDR_LEN,
};

const HEADROOM: usize = 3;

/// A TCP super-frame with consistent lengths and checksums, and its virtio-net header.
fn build(mode: u8, gso_size: u16, payload: &[u8]) -> (VnetHdr, Vec<u8>) {
    let (v6, tagged, psh) = (mode & 2 != 0, mode & 4 != 0, mode & 8 != 0);
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if tagged {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
    }
    let l4_len = 32 + payload.len();
    let l3 = f.len() + 2;
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&[0xfe; 16]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let c = proto::offload::ipv4_header_checksum(&f[l3..l3 + 20]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = f.len();
    let flags = if psh { 0x18 } else { 0x10 };
    f.extend_from_slice(&[
        0x9c, 0x40, 0x14, 0x51, 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 1, 0x80,
    ]);
    f.extend_from_slice(&[
        flags, 0x10, 0, 0, 0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2,
    ]);
    f.extend_from_slice(payload);
    let pseudo = if v6 {
        proto::offload::pseudo_sum_v6(&[0xfd; 16], &[0xfe; 16], 6, l4_len as u32)
    } else {
        proto::offload::pseudo_sum_v4(&[10, 0, 0, 1], &[10, 0, 0, 2], 6, l4_len as u16)
    };
    f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
    let hdr = VnetHdr {
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gso_type: if v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        },
        hdr_len: (l4 + 32) as u16,
        gso_size,
        csum_start: l4 as u16,
        csum_offset: 16,
    };
    (hdr, f)
}

/// One buffer from the coalescer: a header that parses, and a GSO frame within 64 KB.
fn check(b: &[u8]) -> Vec<u8> {
    let h = VnetHdr::parse(b).expect("coalesced buffer starts with a header");
    if h.gso_type != VIRTIO_NET_HDR_GSO_NONE {
        assert!(b.len() - VNET_HDR_LEN <= MAX_SUPER_FRAME);
        assert!(h.gso_size > 0 && h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0);
    }
    b.to_vec()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let mode = data[0];
    let max_seg = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let rest = &data[3..];
    let (hdr, frame, intact) = if mode & 1 == 0 {
        let Ok(hdr) = VnetHdr::parse(rest) else {
            return;
        };
        assert_eq!(VnetHdr::parse(&hdr.emit()), Ok(hdr));
        (hdr, rest[VNET_HDR_LEN..].to_vec(), false)
    } else {
        if rest.len() < 3 {
            return;
        }
        let gso_size = u16::from_le_bytes([rest[0], rest[1]]);
        let n = usize::from(rest[2] % 9);
        let Some(edits) = rest.get(3..3 + 3 * n) else {
            return;
        };
        let payload = &rest[3 + 3 * n..];
        let (hdr, mut frame) = build(mode, gso_size, &payload[..payload.len().min(60_000)]);
        let len = frame.len();
        for e in edits.chunks(3) {
            frame[usize::from(u16::from_le_bytes([e[0], e[1]])) % len] = e[2];
        }
        (hdr, frame, n == 0)
    };
    // MSS clamping of any frame never panics, never grows it, and a clamped frame is left
    // with nothing more to clamp.
    let mut clamped = frame.clone();
    let mtu = (max_seg as u16).clamp(576, 9000);
    if proto::offload::clamp_mss(&mut clamped, hdr.csum(), mtu) {
        assert_eq!(clamped.len(), frame.len());
        assert!(!proto::offload::clamp_mss(&mut clamped, hdr.csum(), mtu));
    }

    match proto::offload::too_big(&frame, mtu) {
        proto::offload::TooBig::Answer(a) => assert!(a.len() <= 14 + 8 + 1280, "{}", a.len()),
        proto::offload::TooBig::Fragments(f) => {
            for piece in &f {
                assert!(piece.len() <= 14 + 8 + usize::from(mtu), "{}", piece.len());
            }
        }
        proto::offload::TooBig::Fits | proto::offload::TooBig::Drop => {}
    }

    let mut scratch = vec![0u8; HEADROOM + max_seg.max(frame.len())];
    let mut segments: Vec<(Vec<u8>, Csum)> = Vec::new();
    let result = split(
        &hdr,
        &frame,
        max_seg,
        &mut scratch,
        HEADROOM,
        |out, csum| {
            let mut seg = out[HEADROOM..].to_vec();
            assert!(
                finish_checksum(&mut seg, csum).is_ok(),
                "checksum field outside the segment"
            );
            segments.push((out[HEADROOM..].to_vec(), csum));
        },
    );
    match result {
        Ok(n) => {
            assert_eq!(n, segments.len());
            assert!(n >= 1);
            if hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE {
                for (seg, _) in &segments {
                    assert!(seg.len() <= max_seg, "segment of {} > {max_seg}", seg.len());
                    // hdr_len is exact only in an unchanged frame we built (the kernel's is a hint).
                    if intact {
                        let payload = seg.len() - usize::from(hdr.hdr_len);
                        assert!(payload <= usize::from(hdr.gso_size));
                    }
                }
            }
        }
        Err(_) => {
            assert!(segments.is_empty());
            assert!(!intact || hdr.gso_size < MIN_GSO_SIZE || max_seg <= usize::from(hdr.hdr_len));
        }
    }

    let mut c = Coalescer::new();
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (seg, csum) in &segments {
        c.push(seg, *csum, |b| out.push(check(b)));
    }
    c.flush(|b| out.push(check(b)));
    assert_eq!(c.pending(), 0);
    if intact && result.is_ok() && frame.len() <= MAX_SUPER_FRAME {
        assert_eq!(out.len(), 1, "one super-frame back");
        assert_eq!(out[0][VNET_HDR_LEN..], frame[..], "the super-frame back");
    }
    // The frame itself, with the checksum state its header announces.
    c.push(&frame, hdr.csum(), |b| out.push(check(b)));
    c.flush(|b| out.push(check(b)));
    assert_eq!(c.pending(), 0);
});
