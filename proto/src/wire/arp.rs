//! ARP for IPv4 over Ethernet (RFC 826): the only ARP this overlay understands.

use super::ethernet::{self, ethertype, EthernetFrame, MacAddr};
use super::{Result, WireError};
use std::net::Ipv4Addr;

mod field {
    use std::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

pub const PACKET_LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
}

/// A view of an ARP packet (the Ethernet payload).
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Accepts only Ethernet/IPv4 ARP (htype 1, ptype 0x0800, hlen 6, plen 4).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::HTYPE] != [0, 1] || b[field::PTYPE] != [0x08, 0x00] {
            return Err(WireError::Malformed);
        }
        if b[field::HLEN] != 6 || b[field::PLEN] != 4 {
            return Err(WireError::Malformed);
        }
        Ok(ArpPacket { buffer })
    }

    pub fn oper(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::OPER];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn sha(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::SHA.start)
    }
    pub fn spa(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::SPA.start)
    }
    pub fn tha(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::THA.start)
    }
    pub fn tpa(&self) -> Ipv4Addr {
        ip_at(self.buffer.as_ref(), field::TPA.start)
    }
}

fn mac_at(b: &[u8], at: usize) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    MacAddr(m)
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// The meaning of an ARP packet, independent of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub op: Operation,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tha: MacAddr,
    pub tpa: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<ArpRepr> {
        let op = match p.oper() {
            1 => Operation::Request,
            2 => Operation::Reply,
            _ => return Err(WireError::Malformed),
        };
        Ok(ArpRepr {
            op,
            sha: p.sha(),
            spa: p.spa(),
            tha: p.tha(),
            tpa: p.tpa(),
        })
    }

    /// Parses a whole Ethernet frame carrying ARP; returns the frame's (dst, src) too.
    pub fn parse_frame(frame: &[u8]) -> Result<(MacAddr, MacAddr, ArpRepr)> {
        let eth = EthernetFrame::new_checked(frame)?;
        if eth.ethertype() != ethertype::ARP {
            return Err(WireError::Malformed);
        }
        let arp = ArpPacket::new_checked(eth.payload())?;
        Ok((eth.dst(), eth.src(), ArpRepr::parse(&arp)?))
    }

    /// A gratuitous ARP announces the sender's own binding (SPA == TPA).
    pub fn is_gratuitous(&self) -> bool {
        self.spa == self.tpa
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        buf[field::HTYPE].copy_from_slice(&[0, 1]);
        buf[field::PTYPE].copy_from_slice(&[0x08, 0x00]);
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        let op: u16 = match self.op {
            Operation::Request => 1,
            Operation::Reply => 2,
        };
        buf[field::OPER].copy_from_slice(&op.to_be_bytes());
        buf[field::SHA].copy_from_slice(&self.sha.0);
        buf[field::SPA].copy_from_slice(&self.spa.octets());
        buf[field::THA].copy_from_slice(&self.tha.0);
        buf[field::TPA].copy_from_slice(&self.tpa.octets());
        Ok(())
    }

    /// A complete Ethernet frame carrying this ARP packet, padded to the 60-byte minimum.
    pub fn to_frame(&self, eth_dst: MacAddr, eth_src: MacAddr) -> Vec<u8> {
        let mut buf = vec![0u8; 60];
        let mut eth = EthernetFrame::new_checked(&mut buf[..]).expect("60 >= header");
        eth.set_dst(eth_dst);
        eth.set_src(eth_src);
        eth.set_ethertype(ethertype::ARP);
        self.emit(&mut buf[ethernet::HEADER_LEN..])
            .expect("46 >= ARP packet");
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `arping`-style request: who has 10.0.3.21? tell 10.0.3.11 (02:42:0a:00:03:0b).
    const REQUEST: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen op=1
        0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b, // sha
        10, 0, 3, 11, // spa
        0, 0, 0, 0, 0, 0, // tha
        10, 0, 3, 21, // tpa
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            op: Operation::Request,
            sha: MacAddr([0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b]),
            spa: Ipv4Addr::new(10, 0, 3, 11),
            tha: MacAddr::ZERO,
            tpa: Ipv4Addr::new(10, 0, 3, 21),
        }
    }

    #[test]
    fn parse_request() {
        let (dst, src, repr) = ArpRepr::parse_frame(&REQUEST).unwrap();
        assert!(dst.is_broadcast());
        assert_eq!(src, request_repr().sha);
        assert_eq!(repr, request_repr());
        assert!(!repr.is_gratuitous());
    }

    #[test]
    fn emit_request() {
        let r = request_repr();
        let frame = r.to_frame(MacAddr::BROADCAST, r.sha);
        assert_eq!(frame.len(), 60);
        assert_eq!(&frame[..42], &REQUEST[..]);
        assert!(frame[42..].iter().all(|&b| b == 0));
    }

    #[test]
    fn reply_round_trip() {
        let r = ArpRepr {
            op: Operation::Reply,
            sha: MacAddr([0x02, 0, 0, 0, 0, 0x15]),
            spa: Ipv4Addr::new(10, 0, 3, 21),
            tha: MacAddr([0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b]),
            tpa: Ipv4Addr::new(10, 0, 3, 11),
        };
        let f = r.to_frame(r.tha, r.sha);
        assert_eq!(&f[20..22], &[0x00, 0x02]);
        assert_eq!(ArpRepr::parse_frame(&f).unwrap().2, r);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            ArpRepr::parse_frame(&REQUEST[..41]).unwrap_err(),
            WireError::Truncated
        );
        let mut bad = REQUEST;
        bad[21] = 9; // op 9
        assert_eq!(
            ArpRepr::parse_frame(&bad).unwrap_err(),
            WireError::Malformed
        );
        let mut bad = REQUEST;
        bad[18] = 8; // hlen 8
        assert_eq!(
            ArpRepr::parse_frame(&bad).unwrap_err(),
            WireError::Malformed
        );
        let mut bad = REQUEST;
        bad[13] = 0x00; // IPv4, not ARP
        assert_eq!(
            ArpRepr::parse_frame(&bad).unwrap_err(),
            WireError::Malformed
        );
    }
}
