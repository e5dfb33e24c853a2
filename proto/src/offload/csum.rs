//! The Internet checksum (RFC 1071): one's-complement sums, pseudo-header sums, and finishing a
//! partial checksum in software.

use super::{Csum, OffloadError};

/// Adds `data` to a running sum of native-endian 64-bit words; returns the sum and the number
/// of carries out of bit 63 (each worth 1 modulo 0xffff, like the end-around carry).
fn sum_words(data: &[u8]) -> (u64, u64) {
    let mut acc = 0u64;
    let mut carries = 0u64;
    let mut add = |w: u64| {
        let (s, c) = acc.overflowing_add(w);
        acc = s;
        carries += u64::from(c);
    };
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        add(u64::from_ne_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // An odd last byte is the high byte of a zero-padded 16-bit word, as the padding does.
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        add(u64::from_ne_bytes(w));
    }
    (acc, carries)
}

/// Folds a sum of 16-bit words (with carries in the upper bits) to 16 bits.
fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The one's-complement sum of `data` read as big-endian 16-bit words (an odd last byte padded
/// with zero), folded to 16 bits and not complemented. Sums 8 bytes at a time.
pub fn ones_sum(data: &[u8]) -> u16 {
    let (acc, carries) = sum_words(data);
    // 2^16 = 1 modulo 0xffff, so the four 16-bit lanes of a u64 add up as they are; summing
    // native-endian words gives the byte-swapped sum on a little-endian host (RFC 1071, 2(B)),
    // which its native-endian bytes turn back into the big-endian value.
    let ne = fold((acc >> 32) + (acc & 0xffff_ffff) + carries);
    u16::from_be_bytes(ne.to_ne_bytes())
}

/// The pseudo-header sum (folded, not complemented) of an IPv4 packet carrying `l4_len` bytes
/// of protocol `proto`: what the checksum field of a partial-checksum segment holds.
pub fn pseudo_sum_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4_len: u16) -> u16 {
    let w = |b: &[u8; 4]| {
        u64::from(u16::from_be_bytes([b[0], b[1]])) + u64::from(u16::from_be_bytes([b[2], b[3]]))
    };
    fold(w(src) + w(dst) + u64::from(proto) + u64::from(l4_len))
}

/// The pseudo-header sum (folded, not complemented) of an IPv6 packet carrying `l4_len` bytes
/// of protocol `proto` (RFC 8200, 8.1).
pub fn pseudo_sum_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u16 {
    let s = u64::from(ones_sum(src)) + u64::from(ones_sum(dst));
    fold(s + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff) + u64::from(proto))
}

/// The checksum of an IPv4 header whose checksum field (bytes 10..12) is zero.
pub fn ipv4_header_checksum(hdr: &[u8]) -> u16 {
    !ones_sum(hdr)
}

/// Writes the header checksum of the IPv4 header `hdr` (its whole length, options included).
pub(crate) fn set_ipv4_checksum(hdr: &mut [u8]) {
    hdr[10..12].copy_from_slice(&[0, 0]);
    let c = ipv4_header_checksum(hdr);
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Completes a partial checksum in software, as the kernel would for a `NEEDS_CSUM` frame: the
/// one's-complement sum from `start` to the end of `frame` (the field at `start + offset`
/// holding the pseudo-header sum) is complemented and stored in that field; a result of 0 is
/// stored as 0xffff (the same in one's complement, and the only valid form for UDP).
/// `Done` leaves the frame alone.
pub fn finish_checksum(frame: &mut [u8], csum: Csum) -> Result<(), OffloadError> {
    let Csum::Partial { start, offset } = csum else {
        return Ok(());
    };
    let (start, at) = (usize::from(start), usize::from(start) + usize::from(offset));
    if at + 2 > frame.len() {
        return Err(OffloadError::CsumOutOfRange);
    }
    let c = !ones_sum(&frame[start..]);
    let c = if c == 0 { 0xffff } else { c };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}
