//! Ethernet II frames and MAC addresses.

use super::{Result, WireError};
use std::fmt;
use std::str::FromStr;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn from_bytes(b: &[u8]) -> Result<MacAddr> {
        let a: [u8; 6] = b.try_into().map_err(|_| WireError::Truncated)?;
        Ok(MacAddr(a))
    }

    /// Group bit set: broadcast, IPv4 multicast (01:00:5e), IPv6 multicast (33:33), STP, LLDP...
    pub fn is_group(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts
                .next()
                .ok_or_else(|| format!("expected a MAC address aa:bb:cc:dd:ee:ff, got {s:?}"))?;
            if p.len() != 2 {
                return Err(format!(
                    "expected a MAC address aa:bb:cc:dd:ee:ff, got {s:?}"
                ));
            }
            *byte = u8::from_str_radix(p, 16)
                .map_err(|_| format!("expected a MAC address aa:bb:cc:dd:ee:ff, got {s:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!(
                "expected a MAC address aa:bb:cc:dd:ee:ff, got {s:?}"
            ));
        }
        Ok(MacAddr(out))
    }
}

crate::id::text_serde!(MacAddr);

pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
}

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    pub fn dst(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(m)
    }

    pub fn src(&self) -> MacAddr {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(m)
    }

    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&m.0);
    }
    pub fn set_src(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&m.0);
    }
    pub fn set_ethertype(&mut self, t: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&t.to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// Reads only what the forwarding path needs, without building a view.
/// Returns (dst, src, ethertype) or `Truncated`.
#[inline]
pub fn peek_header(frame: &[u8]) -> Result<(MacAddr, MacAddr, u16)> {
    if frame.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    let mut d = [0u8; 6];
    let mut s = [0u8; 6];
    d.copy_from_slice(&frame[0..6]);
    s.copy_from_slice(&frame[6..12]);
    Ok((
        MacAddr(d),
        MacAddr(s),
        u16::from_be_bytes([frame[12], frame[13]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request as captured from a container: dst broadcast, src 02:42:0a:00:03:0b.
    const FRAME: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b, 0x08, 0x06, 0x00,
        0x01,
    ];

    #[test]
    fn parse_header() {
        let f = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.src(), MacAddr([0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b]));
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn emit_header() {
        let mut buf = [0u8; 16];
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_dst(MacAddr::BROADCAST);
        f.set_src(MacAddr([0x02, 0x42, 0x0a, 0x00, 0x03, 0x0b]));
        f.set_ethertype(ethertype::ARP);
        f.payload_mut().copy_from_slice(&[0x00, 0x01]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME[..13]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(peek_header(&[]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn group_bit() {
        assert!(MacAddr::BROADCAST.is_group());
        assert!(MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]).is_group());
        assert!(MacAddr([0x33, 0x33, 0, 0, 0, 1]).is_group());
        assert!(!MacAddr([0x02, 0x42, 0, 0, 0, 1]).is_group());
    }

    #[test]
    fn mac_text_round_trip() {
        let m: MacAddr = "02:42:0a:00:03:0b".parse().unwrap();
        assert_eq!(m.to_string(), "02:42:0a:00:03:0b");
        assert!("02:42:0a:00:03".parse::<MacAddr>().is_err());
        assert!("02:42:0a:00:03:0b:01".parse::<MacAddr>().is_err());
        assert!("zz:42:0a:00:03:0b".parse::<MacAddr>().is_err());
        assert!("2:42:0a:00:03:0b".parse::<MacAddr>().is_err());
    }
}
