//! Cutting a TCP super-frame from the TAP (TSO) into segments that fit one link datagram.

use super::headers::{
    be16, be32, fix_lengths, parse_tcp, put16, put32, TCP_CSUM_OFFSET, TCP_CWR, TCP_FIN, TCP_PSH,
};
use super::vnet::{
    VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
};
use super::{Csum, OffloadError};

/// The smallest gso_size cut: TCP's smallest MSS (Linux `TCP_MIN_MSS`).
pub const MIN_GSO_SIZE: u16 = 88;

/// Splits the Ethernet frame `frame`, read from the TAP after the virtio-net header `hdr`, into
/// frames of at most `max_seg_frame` bytes, and hands each to `emit` as
/// `&mut scratch[..headroom + len]` with the frame at `[headroom..]`, so that the caller can
/// seal it in place. Returns the number of frames emitted.
///
/// A frame that is not a GSO frame is emitted once, whatever its size, with the checksum state
/// of `hdr` (`scratch` must hold `headroom + frame.len()`). A TCP GSO frame is cut into
/// segments carrying at most `gso_size` payload bytes and fitting `max_seg_frame` (the largest
/// such size for all but the last); each gets a copy of the Ethernet header with its VLAN tags
/// and of the IP and TCP headers with the IP lengths, the IPv4 id (incremented per segment),
/// the IPv4 header checksum, the sequence number and the flags (FIN and PSH only on the last,
/// CWR only on the first) adjusted. Its TCP checksum field holds the pseudo-header sum for its
/// length and it is emitted as [`Csum::Partial`]: no payload byte is summed. `scratch` must
/// hold `headroom` plus the first segment (`headroom + max_seg_frame` always does).
///
/// Nothing is emitted when the frame is refused: malformed or truncated headers, a GSO type
/// other than TCP, a `gso_size` below [`MIN_GSO_SIZE`], `csum_start`/`csum_offset` not pointing at the TCP
/// checksum (`csum_start` counts from the Ethernet header), or buffers too small.
pub fn split<F: FnMut(&mut [u8], Csum)>(
    hdr: &VnetHdr,
    frame: &[u8],
    max_seg_frame: usize,
    scratch: &mut [u8],
    headroom: usize,
    mut emit: F,
) -> Result<usize, OffloadError> {
    if hdr.gso_type == VIRTIO_NET_HDR_GSO_NONE {
        let csum = hdr.csum();
        if let Csum::Partial { start, offset } = csum {
            if usize::from(start) + usize::from(offset) + 2 > frame.len() {
                return Err(OffloadError::CsumOutOfRange);
            }
        }
        let out = scratch_for(scratch, headroom, frame.len())?;
        out[headroom..].copy_from_slice(frame);
        emit(out, csum);
        return Ok(1);
    }
    let ipv6 = match hdr.gso_type & !VIRTIO_NET_HDR_GSO_ECN {
        VIRTIO_NET_HDR_GSO_TCPV4 => false,
        VIRTIO_NET_HDR_GSO_TCPV6 => true,
        _ => return Err(OffloadError::UnsupportedGso(hdr.gso_type)),
    };
    let t = parse_tcp(frame)?;
    if t.ipv6 != ipv6 {
        return Err(OffloadError::GsoMismatch);
    }
    if hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
        return Err(OffloadError::NoChecksumOffload);
    }
    if usize::from(hdr.csum_start) != t.l4 || hdr.csum_offset != TCP_CSUM_OFFSET {
        return Err(OffloadError::CsumMismatch);
    }
    // The kernel puts the length of its buffer's linear part in hdr_len ("a hint as to how
    // much should be linear", include/linux/virtio_net.h), which may include payload, so like
    // wireguard-go we take the header length from the parsed headers and only refuse a hint
    // that points past the frame.
    if usize::from(hdr.hdr_len) > frame.len() {
        return Err(OffloadError::HdrLenMismatch);
    }
    if hdr.gso_size == 0 {
        return Err(OffloadError::ZeroGsoSize);
    }
    // Linux's TCP_MIN_MSS: no real stack segments smaller, and a local sender that asks for
    // less would turn one 64 KB read into thousands of datagrams for every link.
    if hdr.gso_size < MIN_GSO_SIZE {
        return Err(OffloadError::TinyGsoSize);
    }
    let hdrs = t.payload;
    let payload = t.payload_len();
    if max_seg_frame <= hdrs {
        return Err(OffloadError::SegmentTooSmall);
    }
    let mss = usize::from(hdr.gso_size).min(max_seg_frame - hdrs);
    scratch_for(scratch, headroom, hdrs + mss.min(payload))?;

    let segments = payload.div_ceil(mss).max(1);
    let (l3, l4) = (t.l3, t.l4);
    let seq0 = be32(frame, l4 + 4);
    let id0 = be16(frame, l3 + 4);
    let flags0 = frame[l4 + 13];
    for i in 0..segments {
        let off = i * mss;
        let len = mss.min(payload - off);
        let out = &mut scratch[..headroom + hdrs + len];
        let seg = &mut out[headroom..];
        seg[..hdrs].copy_from_slice(&frame[..hdrs]);
        seg[hdrs..].copy_from_slice(&frame[hdrs + off..hdrs + off + len]);
        if !ipv6 {
            put16(seg, l3 + 4, id0.wrapping_add(i as u16));
        }
        fix_lengths(seg, &t, hdrs + len);
        put32(seg, l4 + 4, seq0.wrapping_add(off as u32));
        let mut flags = flags0;
        if i + 1 < segments {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        seg[l4 + 13] = flags;
        let csum = Csum::Partial {
            start: l4 as u16,
            offset: TCP_CSUM_OFFSET,
        };
        emit(out, csum);
    }
    Ok(segments)
}

/// `scratch[..headroom + len]`, or an error if it is shorter.
fn scratch_for(scratch: &mut [u8], headroom: usize, len: usize) -> Result<&mut [u8], OffloadError> {
    headroom
        .checked_add(len)
        .and_then(|n| scratch.get_mut(..n))
        .ok_or(OffloadError::ScratchTooSmall)
}
