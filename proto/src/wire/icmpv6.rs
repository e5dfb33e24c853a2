//! IPv6 neighbour discovery (RFC 4861): neighbour solicitations and advertisements carried
//! in Ethernet frames, read with the validity checks of RFC 4861 7.1 (hop limit 255, code 0,
//! checksum, length, option lengths, target not multicast, the rules for the unspecified
//! source) and built with their ICMPv6 checksum. Only ND directly after the IPv6 header is
//! read; other ICMPv6 (multicast listener discovery, echo, errors) is not ND.

use super::ethernet::{ethertype, EthernetFrame, MacAddr, HEADER_LEN};
use super::{Result, WireError};
use crate::offload::{ones_sum, pseudo_sum_v6};
use std::net::Ipv6Addr;

pub const NEXT_HEADER_ICMPV6: u8 = 58;
pub const TYPE_NS: u8 = 135;
pub const TYPE_NA: u8 = 136;
const IPV6_HEADER_LEN: usize = 40;
/// An NS or NA without options: type, code, checksum, flags/reserved, target.
const ND_LEN: usize = 24;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;
/// Where the ICMPv6 message starts in a frame.
const ICMP_AT: usize = HEADER_LEN + IPV6_HEADER_LEN;

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// The all-nodes address, where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A neighbour solicitation: who has `target`? `source_ll` is the solicitor's MAC, absent
/// from a duplicate address detection probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicit {
    pub target: Ipv6Addr,
    pub source_ll: Option<MacAddr>,
}

/// A neighbour advertisement: `target` is at `target_ll` (if given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    pub target: Ipv6Addr,
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
    pub target_ll: Option<MacAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdMessage {
    Solicit(Solicit),
    Advert(Advert),
}

/// A valid NS or NA in an Ethernet frame, with the addresses around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdFrame {
    pub eth_dst: MacAddr,
    pub eth_src: MacAddr,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub msg: NdMessage,
}

impl NdFrame {
    /// A duplicate address detection probe: an NS from the unspecified address.
    pub fn is_dad(&self) -> bool {
        matches!(self.msg, NdMessage::Solicit(_)) && self.src.is_unspecified()
    }
}

/// Whether `frame` is an Ethernet/IPv6 frame whose next header is ICMPv6 of type NS or NA:
/// a few byte comparisons, for the data path. Such a frame that [`parse_frame`] refuses is
/// malformed ND.
pub fn is_nd(frame: &[u8]) -> bool {
    frame.len() > ICMP_AT
        && frame[12..14] == ethertype::IPV6.to_be_bytes()
        && frame[HEADER_LEN + 6] == NEXT_HEADER_ICMPV6
        && matches!(frame[ICMP_AT], TYPE_NS | TYPE_NA)
}

fn ip6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

fn add_folded(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The ICMPv6 checksum of `msg` (its checksum field included as it is) between `src` and `dst`:
/// 0 (or 0xffff) for a message whose field is right; with the field zeroed, its value.
fn icmp_sum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let pseudo = pseudo_sum_v6(
        &src.octets(),
        &dst.octets(),
        NEXT_HEADER_ICMPV6,
        msg.len() as u32,
    );
    !add_folded(pseudo, ones_sum(msg))
}

/// The solicited-node multicast address of `ip` (ff02::1:ffXX:XXXX).
pub fn solicited_node(ip: &Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet group address of IPv6 multicast `ip` (33:33 and its last 32 bits).
pub fn multicast_mac(ip: &Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The link-layer address options of an ND message: the source's (type 1) and the target's
/// (type 2); other options are skipped. Every option's length must be non-zero and fit.
fn options(mut opts: &[u8]) -> Result<(Option<MacAddr>, Option<MacAddr>)> {
    let (mut source, mut target) = (None, None);
    while !opts.is_empty() {
        if opts.len() < 2 {
            return Err(WireError::Truncated);
        }
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return Err(WireError::Malformed);
        }
        // On Ethernet a link-layer address option is 8 bytes long; a longer one is not ours.
        let mac = (len == 8).then(|| MacAddr::from_bytes(&opts[2..8]).expect("six bytes"));
        match opts[0] {
            OPT_SOURCE_LL => source = source.or(mac),
            OPT_TARGET_LL => target = target.or(mac),
            _ => {}
        }
        opts = &opts[len..];
    }
    Ok((source, target))
}

/// Reads an NS or NA frame, with RFC 4861's validity checks: anything else is an error.
pub fn parse_frame(frame: &[u8]) -> Result<NdFrame> {
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != ethertype::IPV6 {
        return Err(WireError::Malformed);
    }
    let ip = eth.payload();
    if ip.len() < IPV6_HEADER_LEN + ND_LEN {
        return Err(WireError::Truncated);
    }
    if ip[0] >> 4 != 6 || ip[6] != NEXT_HEADER_ICMPV6 || ip[7] != 255 {
        return Err(WireError::Malformed);
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    // Ethernet may pad a frame; what the IPv6 header says it carries must be there.
    if payload_len < ND_LEN || IPV6_HEADER_LEN + payload_len > ip.len() {
        return Err(WireError::Malformed);
    }
    let (src, dst) = (ip6_at(ip, 8), ip6_at(ip, 24));
    let msg = &ip[IPV6_HEADER_LEN..IPV6_HEADER_LEN + payload_len];
    if msg[1] != 0 || !matches!(icmp_sum(&src, &dst, msg), 0 | 0xffff) {
        return Err(WireError::Malformed);
    }
    let target = ip6_at(msg, 8);
    if target.is_multicast() || src.is_multicast() {
        return Err(WireError::Malformed);
    }
    let (source_ll, target_ll) = options(&msg[ND_LEN..])?;
    let msg = match msg[0] {
        TYPE_NS => {
            if src.is_unspecified() && (dst != solicited_node(&target) || source_ll.is_some()) {
                return Err(WireError::Malformed);
            }
            NdMessage::Solicit(Solicit { target, source_ll })
        }
        TYPE_NA => {
            let flags = msg[4];
            let solicited = flags & FLAG_SOLICITED != 0;
            if solicited && dst.is_multicast() {
                return Err(WireError::Malformed);
            }
            NdMessage::Advert(Advert {
                target,
                router: flags & FLAG_ROUTER != 0,
                solicited,
                override_: flags & FLAG_OVERRIDE != 0,
                target_ll,
            })
        }
        _ => return Err(WireError::Malformed),
    };
    Ok(NdFrame {
        eth_dst: eth.dst(),
        eth_src: eth.src(),
        src,
        dst,
        msg,
    })
}

impl NdFrame {
    /// The Ethernet frame: IPv6 with hop limit 255, the ICMPv6 message with its checksum and
    /// the link-layer address option (the source's for an NS, the target's for an NA).
    pub fn to_frame(&self) -> Vec<u8> {
        let mut msg = vec![0u8; ND_LEN + 8];
        let (target, option, mac) = match self.msg {
            NdMessage::Solicit(s) => {
                msg[0] = TYPE_NS;
                (s.target, OPT_SOURCE_LL, s.source_ll)
            }
            NdMessage::Advert(a) => {
                msg[0] = TYPE_NA;
                msg[4] = (u8::from(a.router) * FLAG_ROUTER)
                    | (u8::from(a.solicited) * FLAG_SOLICITED)
                    | (u8::from(a.override_) * FLAG_OVERRIDE);
                (a.target, OPT_TARGET_LL, a.target_ll)
            }
        };
        msg[8..24].copy_from_slice(&target.octets());
        match mac {
            Some(m) => {
                msg[24] = option;
                msg[25] = 1;
                msg[26..32].copy_from_slice(&m.0);
            }
            None => msg.truncate(ND_LEN),
        }
        let sum = icmp_sum(&self.src, &self.dst, &msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());

        let mut f = Vec::with_capacity(ICMP_AT + msg.len());
        f.extend_from_slice(&self.eth_dst.0);
        f.extend_from_slice(&self.eth_src.0);
        f.extend_from_slice(&ethertype::IPV6.to_be_bytes());
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        f.extend_from_slice(&[NEXT_HEADER_ICMPV6, 255]);
        f.extend_from_slice(&self.src.octets());
        f.extend_from_slice(&self.dst.octets());
        f.extend_from_slice(&msg);
        f
    }
}

/// The advertisement that answers, for the host at `target`/`mac`, a solicitation from
/// `to_ip`/`to_mac`: solicited, with the owner's own link-layer address and override set (see
/// docs/architecture.md, "IPv6 neighbour discovery"), router as the owner said.
pub fn answer_frame(
    target: Ipv6Addr,
    mac: MacAddr,
    router: bool,
    to_ip: Ipv6Addr,
    to_mac: MacAddr,
) -> Vec<u8> {
    NdFrame {
        eth_dst: to_mac,
        eth_src: mac,
        src: target,
        dst: to_ip,
        msg: NdMessage::Advert(Advert {
            target,
            router,
            solicited: true,
            override_: true,
            target_ll: Some(mac),
        }),
    }
    .to_frame()
}

/// An unsolicited advertisement of `target` at `mac` to all nodes (a host announcing itself).
pub fn announce_frame(target: Ipv6Addr, mac: MacAddr, router: bool) -> Vec<u8> {
    NdFrame {
        eth_dst: multicast_mac(&ALL_NODES),
        eth_src: mac,
        src: target,
        dst: ALL_NODES,
        msg: NdMessage::Advert(Advert {
            target,
            router,
            solicited: false,
            override_: true,
            target_ll: Some(mac),
        }),
    }
    .to_frame()
}

/// A multicast solicitation for `target` from `src_ip`/`src_mac` (never the unspecified
/// address: probes are not made up on a host's behalf).
pub fn solicit_frame(src_ip: Ipv6Addr, src_mac: MacAddr, target: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(&target);
    NdFrame {
        eth_dst: multicast_mac(&dst),
        eth_src: src_mac,
        src: src_ip,
        dst,
        msg: NdMessage::Solicit(Solicit {
            target,
            source_ll: Some(src_mac),
        }),
    }
    .to_frame()
}

#[cfg(test)]
#[path = "icmpv6_tests.rs"]
mod tests;
