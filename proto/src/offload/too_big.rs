//! Frames from the local bridge that are larger than the overlay carries: a bridge port with a
//! larger MTU than the overlay's (a jumbo-frame VM) sends them. A TCP SYN has its MSS clamped
//! ([`super::clamp_mss`]); any other IP packet too big is answered here with the ICMP message
//! that makes its sender use smaller packets, as a router on a path with a smaller MTU would:
//! ICMPv4 "fragmentation needed" (type 3, code 4) for IPv4 with DF set, ICMPv6 "packet too
//! big" (type 2) for IPv6. The answer comes from the packet's destination address and MAC,
//! goes to its source, and quotes the start of the packet, so that the sender's kernel finds
//! the connection and lowers its path MTU.
//!
//! IPv4 without DF is cut into IP fragments that fit, as a router does (RFC 791). No answer
//! (the frame is only dropped) for what RFC 1122/1812 and RFC 4443 say must get none: ICMP
//! errors themselves, packets to a group address, from an address that is not a single host,
//! and anything that is not IP (or IPv4 with options and without DF, which is not cut).

use super::csum::{pseudo_sum_v6, set_ipv4_checksum};
use super::headers::{be16, l3_offset, put16, put32, ETH_HLEN, VLAN_TAG_LEN};
use super::ones_sum;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const IPV4_DF: u16 = 0x4000;
/// IPv4: the answer is at most this long (RFC 1812, 4.3.2.3), its quote what is left.
const V4_ANSWER_MAX: usize = 576;
/// IPv6: the answer fits the minimum MTU (RFC 4443, 2.4 (c)).
const V6_ANSWER_MAX: usize = 1280;
const ICMP_HLEN: usize = 8;

/// What to do with a frame from the bridge, given the overlay's MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TooBig {
    /// Its IP packet (or its payload, if not IP) fits the MTU.
    Fits,
    /// Too big: write this frame back into the bridge, and drop the original.
    Answer(Vec<u8>),
    /// IPv4 without DF, too big: these frames (its fragments) go instead.
    Fragments(Vec<Vec<u8>>),
    /// Too big, and not to be answered: drop it.
    Drop,
}

/// Whether `frame` (an Ethernet frame, up to two VLAN tags) fits an overlay of MTU `mtu`, and
/// the ICMP answer if it does not and may have one.
pub fn too_big(frame: &[u8], mtu: u16) -> TooBig {
    let mtu_len = usize::from(mtu);
    let Ok((l3, ethertype)) = l3_offset(frame) else {
        return if frame.len() > ETH_HLEN + 2 * VLAN_TAG_LEN + mtu_len {
            TooBig::Drop
        } else {
            TooBig::Fits
        };
    };
    let packet = &frame[l3..];
    if packet.len() <= mtu_len {
        return TooBig::Fits;
    }
    if ethertype == ETHERTYPE_IPV4 && packet.len() >= 20 && be16(packet, 6) & IPV4_DF == 0 {
        return match fragment_v4(frame, l3, mtu) {
            Some(f) => TooBig::Fragments(f),
            None => TooBig::Drop,
        };
    }
    let dst_mac = &frame[0..6];
    let src_mac = &frame[6..12];
    // Group MACs: a broadcast or multicast packet is never answered, nor a group source.
    if dst_mac[0] & 1 != 0 || src_mac[0] & 1 != 0 {
        return TooBig::Drop;
    }
    let answer = match ethertype {
        ETHERTYPE_IPV4 => answer_v4(packet, mtu),
        ETHERTYPE_IPV6 => answer_v6(packet, mtu),
        _ => None,
    };
    match answer {
        Some(ip) => {
            let mut out = Vec::with_capacity(l3 + ip.len());
            out.extend_from_slice(src_mac);
            out.extend_from_slice(dst_mac);
            // The tags and EtherType, as they were: the answer stays in the sender's VLAN.
            out.extend_from_slice(&frame[12..l3]);
            out.extend_from_slice(&ip);
            TooBig::Answer(out)
        }
        None => TooBig::Drop,
    }
}

/// ICMPv4 "fragmentation needed" for the IPv4 packet `p` (the frame's bytes from the IP
/// header on), or None if it must get none.
fn answer_v4(p: &[u8], mtu: u16) -> Option<Vec<u8>> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(be16(p, 2));
    if ihl < 20 || total < ihl || total > p.len() {
        return None;
    }
    let flags_frag = be16(p, 6);
    // Without DF the packet should be fragmented, not answered; a later fragment has no
    // transport header to quote.
    if flags_frag & IPV4_DF == 0 || flags_frag & 0x1fff != 0 {
        return None;
    }
    let (src, dst) = (&p[12..16], &p[16..20]);
    let single_host = |a: &[u8]| a[0] != 0 && a[0] < 224 && a[0] != 127;
    if !single_host(src) || !single_host(dst) || src == dst {
        return None;
    }
    // An ICMP error is never answered with one (RFC 1122, 3.2.2): only echo, timestamp and
    // the other queries and replies are.
    if p[9] == IPPROTO_ICMP {
        let icmp_type = *p.get(ihl)?;
        if matches!(icmp_type, 3 | 4 | 5 | 11 | 12) {
            return None;
        }
    }
    let quote = (total).min(V4_ANSWER_MAX - 20 - ICMP_HLEN);
    let mut out = vec![0u8; 20 + ICMP_HLEN + quote];
    out[0] = 0x45;
    put16(&mut out, 2, (20 + ICMP_HLEN + quote) as u16);
    out[8] = 64;
    out[9] = IPPROTO_ICMP;
    out[12..16].copy_from_slice(dst);
    out[16..20].copy_from_slice(src);
    set_ipv4_checksum(&mut out[..20]);
    let icmp = &mut out[20..];
    icmp[0] = 3;
    icmp[1] = 4;
    put16(icmp, 6, mtu);
    icmp[ICMP_HLEN..].copy_from_slice(&p[..quote]);
    let sum = !ones_sum(icmp);
    put16(icmp, 2, sum);
    Some(out)
}

/// The IPv4 packet at `frame[l3..]` (without DF, it may be a fragment itself) cut into
/// fragments of at most `mtu` bytes, each behind a copy of the Ethernet header and tags; None
/// for a packet that is not well-formed, or has options (which RFC 791 copies selectively).
fn fragment_v4(frame: &[u8], l3: usize, mtu: u16) -> Option<Vec<Vec<u8>>> {
    let p = &frame[l3..];
    if p[0] != 0x45 {
        return None;
    }
    let total = usize::from(be16(p, 2));
    if total < 20 || total > p.len() {
        return None;
    }
    let flags_frag = be16(p, 6);
    let (base, more) = (
        usize::from(flags_frag & 0x1fff) * 8,
        flags_frag & 0x2000 != 0,
    );
    let chunk = (usize::from(mtu).checked_sub(20)? / 8) * 8;
    if chunk == 0 {
        return None;
    }
    let payload = &p[20..total];
    let mut out = Vec::with_capacity(payload.len().div_ceil(chunk));
    for (i, piece) in payload.chunks(chunk).enumerate() {
        let last = (i + 1) * chunk >= payload.len();
        let offset = (base + i * chunk) / 8;
        if offset > 0x1fff {
            return None;
        }
        let mut f = Vec::with_capacity(l3 + 20 + piece.len());
        f.extend_from_slice(&frame[..l3]);
        f.extend_from_slice(&p[..20]);
        f.extend_from_slice(piece);
        let h = &mut f[l3..l3 + 20];
        put16(h, 2, (20 + piece.len()) as u16);
        put16(h, 6, offset as u16 | if last && !more { 0 } else { 0x2000 });
        set_ipv4_checksum(h);
        out.push(f);
    }
    Some(out)
}

/// ICMPv6 "packet too big" for the IPv6 packet `p`, or None if it must get none.
fn answer_v6(p: &[u8], mtu: u16) -> Option<Vec<u8>> {
    if p.len() < 40 || p[0] >> 4 != 6 {
        return None;
    }
    let src: &[u8; 16] = p[8..24].try_into().ok()?;
    let dst: &[u8; 16] = p[24..40].try_into().ok()?;
    // Not from the unspecified address or a group; not to a group (RFC 4443 allows it there,
    // but a multicast stream's sender would hear it from every receiver's side).
    if src == &[0; 16] || src[0] == 0xff || dst[0] == 0xff || src == dst {
        return None;
    }
    if is_icmpv6_error(p) {
        return None;
    }
    let quote = p.len().min(V6_ANSWER_MAX - 40 - ICMP_HLEN);
    let icmp_len = ICMP_HLEN + quote;
    let mut out = vec![0u8; 40 + icmp_len];
    out[0] = 0x60;
    put16(&mut out, 4, icmp_len as u16);
    out[6] = IPPROTO_ICMPV6;
    out[7] = 64;
    out[8..24].copy_from_slice(dst);
    out[24..40].copy_from_slice(src);
    let icmp = &mut out[40..];
    icmp[0] = 2;
    put32(icmp, 4, u32::from(mtu));
    icmp[ICMP_HLEN..].copy_from_slice(&p[..quote]);
    let pseudo = pseudo_sum_v6(dst, src, IPPROTO_ICMPV6, icmp_len as u32);
    let sum = !fold(u32::from(pseudo) + u32::from(ones_sum(icmp)));
    put16(icmp, 2, sum);
    Some(out)
}

/// Whether the IPv6 packet `p` carries an ICMPv6 error (type below 128), after the
/// extension headers that have the common layout (hop-by-hop, routing, destination options)
/// and a first fragment. A packet whose headers cannot be followed counts as one: no answer.
fn is_icmpv6_error(p: &[u8]) -> bool {
    let mut next = p[6];
    let mut off = 40;
    for _ in 0..8 {
        match next {
            IPPROTO_ICMPV6 => return p.get(off).is_none_or(|t| *t < 128),
            0 | 43 | 60 => {
                let (Some(&n), Some(&len)) = (p.get(off), p.get(off + 1)) else {
                    return true;
                };
                next = n;
                off += (usize::from(len) + 1) * 8;
            }
            44 => {
                let (Some(&n), Some(frag)) = (p.get(off), p.get(off + 2..off + 4)) else {
                    return true;
                };
                if be16(frag, 0) & 0xfff8 != 0 {
                    // A later fragment: the upper-layer header is not here.
                    return true;
                }
                next = n;
                off += 8;
            }
            _ => return false,
        }
    }
    true
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[cfg(test)]
#[path = "too_big_tests.rs"]
mod tests;
