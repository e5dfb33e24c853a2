//! Finding the IP and TCP headers of an Ethernet frame (with up to two VLAN tags).

use super::OffloadError;

pub(crate) const ETH_HLEN: usize = 14;
pub(crate) const VLAN_TAG_LEN: usize = 4;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
pub(crate) const ETHERTYPE_VLAN: u16 = 0x8100;
pub(crate) const ETHERTYPE_QINQ: u16 = 0x88a8;
const MAX_TAGS: usize = 2;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPV6_HLEN: usize = 40;
pub(crate) const TCP_MIN_HLEN: usize = 20;
/// Offset of the checksum field in the TCP header.
pub(crate) const TCP_CSUM_OFFSET: u16 = 16;
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_URG: u8 = 0x20;
pub(crate) const TCP_CWR: u8 = 0x80;

/// IPv6 next-header values that are extension headers (RFC 8200 and the IANA registry).
const IPV6_EXT_HEADERS: [u8; 9] = [0, 43, 44, 50, 51, 60, 135, 139, 140];

/// Where the headers of a TCP frame are, in bytes from the start of the Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpFrame {
    pub ipv6: bool,
    /// The IP header (14 plus 4 per VLAN tag).
    pub l3: usize,
    /// The TCP header.
    pub l4: usize,
    /// The TCP payload.
    pub payload: usize,
    /// The end of the IP packet (the frame may have padding after it).
    pub end: usize,
}

impl TcpFrame {
    pub fn payload_len(&self) -> usize {
        self.end - self.payload
    }
}

pub(crate) fn be16(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

pub(crate) fn be32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

pub(crate) fn put16(b: &mut [u8], i: usize, v: u16) {
    b[i..i + 2].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn put32(b: &mut [u8], i: usize, v: u32) {
    b[i..i + 4].copy_from_slice(&v.to_be_bytes());
}

/// The offset of the IP header and its EtherType, after at most two VLAN tags.
pub(crate) fn l3_offset(frame: &[u8]) -> Result<(usize, u16), OffloadError> {
    let mut off = ETH_HLEN;
    for _ in 0..=MAX_TAGS {
        if frame.len() < off {
            return Err(OffloadError::Truncated);
        }
        match be16(frame, off - 2) {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ => off += VLAN_TAG_LEN,
            t => return Ok((off, t)),
        }
    }
    Err(OffloadError::NotIp)
}

/// Parses the Ethernet, VLAN, IP and TCP headers of `frame`, checking that every length is
/// consistent with the others and with the frame.
pub(crate) fn parse_tcp(frame: &[u8]) -> Result<TcpFrame, OffloadError> {
    let (l3, ethertype) = l3_offset(frame)?;
    let (ipv6, l4, end) = match ethertype {
        ETHERTYPE_IPV4 => {
            let h = frame.get(l3..l3 + 20).ok_or(OffloadError::Truncated)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(be16(h, 2));
            if h[0] >> 4 != 4 || ihl < 20 || total < ihl {
                return Err(OffloadError::BadIpHeader);
            }
            if l3 + total > frame.len() {
                return Err(OffloadError::Truncated);
            }
            if be16(h, 6) & 0x3fff != 0 {
                return Err(OffloadError::Fragment);
            }
            if h[9] != IPPROTO_TCP {
                return Err(OffloadError::NotTcp);
            }
            (false, l3 + ihl, l3 + total)
        }
        ETHERTYPE_IPV6 => {
            let h = frame
                .get(l3..l3 + IPV6_HLEN)
                .ok_or(OffloadError::Truncated)?;
            let plen = usize::from(be16(h, 4));
            if h[0] >> 4 != 6 || plen == 0 {
                // plen 0 would be a jumbogram (hop-by-hop option), which we do not handle.
                return Err(OffloadError::BadIpHeader);
            }
            if l3 + IPV6_HLEN + plen > frame.len() {
                return Err(OffloadError::Truncated);
            }
            match h[6] {
                IPPROTO_TCP => {}
                nh if IPV6_EXT_HEADERS.contains(&nh) => return Err(OffloadError::Ipv6ExtHeader),
                _ => return Err(OffloadError::NotTcp),
            }
            (true, l3 + IPV6_HLEN, l3 + IPV6_HLEN + plen)
        }
        _ => return Err(OffloadError::NotIp),
    };
    if l4 + TCP_MIN_HLEN > end {
        return Err(OffloadError::BadTcpHeader);
    }
    let doff = usize::from(frame[l4 + 12] >> 4) * 4;
    if doff < TCP_MIN_HLEN || l4 + doff > end {
        return Err(OffloadError::BadTcpHeader);
    }
    Ok(TcpFrame {
        ipv6,
        l3,
        l4,
        payload: l4 + doff,
        end,
    })
}

/// The pseudo-header sum of the TCP segment of `frame` (parsed as `t`) if its TCP part
/// (header and payload) were `l4_len` bytes long.
pub(crate) fn tcp_pseudo_sum(frame: &[u8], t: &TcpFrame, l4_len: usize) -> u16 {
    let l3 = t.l3;
    if t.ipv6 {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&frame[l3 + 8..l3 + 24]);
        dst.copy_from_slice(&frame[l3 + 24..l3 + 40]);
        super::pseudo_sum_v6(&src, &dst, IPPROTO_TCP, l4_len as u32)
    } else {
        let mut src = [0u8; 4];
        let mut dst = [0u8; 4];
        src.copy_from_slice(&frame[l3 + 12..l3 + 16]);
        dst.copy_from_slice(&frame[l3 + 16..l3 + 20]);
        super::pseudo_sum_v4(&src, &dst, IPPROTO_TCP, l4_len as u16)
    }
}

/// Rewrites the IP length field(s) and IPv4 header checksum of the headers in `frame` (parsed
/// as `t`) for an IP packet ending at `end`, and puts the pseudo-header sum for that length in
/// the TCP checksum field.
pub(crate) fn fix_lengths(frame: &mut [u8], t: &TcpFrame, end: usize) {
    if t.ipv6 {
        put16(frame, t.l3 + 4, (end - t.l3 - IPV6_HLEN) as u16);
    } else {
        put16(frame, t.l3 + 2, (end - t.l3) as u16);
        super::csum::set_ipv4_checksum(&mut frame[t.l3..t.l4]);
    }
    let pseudo = tcp_pseudo_sum(frame, t, end - t.l4);
    put16(frame, t.l4 + usize::from(TCP_CSUM_OFFSET), pseudo);
}

const IPPROTO_UDP: u8 = 17;
/// Offset of the checksum field in the UDP header.
const UDP_CSUM_OFFSET: u16 = 6;

/// Whether a frame from a peer may be handed to the kernel with this checksum state: `Done`
/// always; `Partial` only when it names exactly the TCP or UDP checksum of an unfragmented IPv4
/// or IPv6 packet (no extension headers) that the frame holds whole. Anything else would let
/// a peer choose where the kernel writes two bytes into a frame that the host's own stack
/// (netfilter, forwarding) has already looked at.
pub fn partial_is_sane(frame: &[u8], csum: super::Csum) -> bool {
    let super::Csum::Partial { start, offset } = csum else {
        return true;
    };
    let Ok((l3, ethertype)) = l3_offset(frame) else {
        return false;
    };
    let (proto, l4, end) = match ethertype {
        ETHERTYPE_IPV4 => {
            let Some(h) = frame.get(l3..l3 + 20) else {
                return false;
            };
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if h[0] >> 4 != 4 || ihl < 20 || be16(h, 6) & 0x3fff != 0 {
                return false;
            }
            (h[9], l3 + ihl, l3 + usize::from(be16(h, 2)))
        }
        ETHERTYPE_IPV6 => {
            let Some(h) = frame.get(l3..l3 + IPV6_HLEN) else {
                return false;
            };
            if h[0] >> 4 != 6 {
                return false;
            }
            (
                h[6],
                l3 + IPV6_HLEN,
                l3 + IPV6_HLEN + usize::from(be16(h, 4)),
            )
        }
        _ => return false,
    };
    let want = match proto {
        IPPROTO_TCP => TCP_CSUM_OFFSET,
        IPPROTO_UDP => UDP_CSUM_OFFSET,
        _ => return false,
    };
    usize::from(start) == l4
        && offset == want
        && end <= frame.len()
        && l4 + usize::from(offset) + 2 <= end
}
