//! Segmentation offload for a Layer-2 overlay: the virtio-net header that a TAP opened with
//! `IFF_VNET_HDR` puts in front of every frame, and the checksum state a frame carries across
//! a link (inside the encrypted part), so that neither end computes TCP/UDP checksums in
//! software when both kernels can finish them.
//!
//! On the sending side the TAP hands us TCP super-frames of up to 64 KB (TSO); [`split`] cuts
//! them into segments that each fit one link datagram. On the receiving side [`Coalescer`]
//! glues consecutive segments of one TCP flow back into a super-frame for the TAP (GRO).
//!
//! Layer-2 specifics, which the TUN-oriented code elsewhere (wireguard-go, tun-rs) does not
//! handle: every frame starts with an Ethernet header, possibly followed by one or two
//! 802.1Q/802.1ad VLAN tags (4 bytes each), and only then the IP header. The virtio header's
//! `csum_start` therefore counts from the first byte of the Ethernet header (14, plus 4 per
//! tag, plus the IP header length), and so does [`Csum::Partial::start`]. Every segment gets
//! a copy of the Ethernet header and its tags, and the coalescing key includes both MAC
//! addresses and the tags, so that frames of different hosts or VLANs are never merged.
//!
//! The checksums stay partial end to end: a segment carries in its TCP checksum field only the
//! pseudo-header sum for its own length (what the kernel expects of a `NEEDS_CSUM` frame), and
//! [`finish_checksum`] completes one in software for a path that cannot hand it to a kernel.

mod coalesce;
mod csum;
mod headers;
mod mss;
mod split;
mod too_big;
mod vnet;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_coalesce;
#[cfg(test)]
mod tests_prop;

pub use coalesce::{Coalescer, MAX_FLOWS, MAX_SUPER_FRAME};
pub use csum::{finish_checksum, ipv4_header_checksum, ones_sum, pseudo_sum_v4, pseudo_sum_v6};
pub use headers::partial_is_sane;
pub use mss::{clamp_mss, mss_for_mtu};
pub use split::{split, MIN_GSO_SIZE};
pub use too_big::{too_big, TooBig};
pub use vnet::{
    VnetHdr, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_GSO_UDP,
};

/// Length of the virtio-net header in front of every frame on a TAP with `IFF_VNET_HDR`
/// (`struct virtio_net_hdr`, without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

/// The checksum state of one Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Csum {
    /// The frame's checksums are complete (or it has none to finish).
    #[default]
    Done,
    /// The TCP/UDP checksum still has to be finished: the field at `start + offset` (bytes from
    /// the start of the Ethernet header) holds the pseudo-header sum, and the one's-complement
    /// sum from `start` to the end of the frame goes there (virtio's `NEEDS_CSUM`).
    Partial { start: u16, offset: u16 },
}

/// Why a frame from the TAP (or a checksum request) cannot be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// Fewer than [`VNET_HDR_LEN`] bytes where a virtio-net header was expected.
    ShortVnetHdr,
    /// The frame ends inside a header it announces (Ethernet, VLAN tag, IP or TCP).
    Truncated,
    /// After the Ethernet header and at most two VLAN tags comes neither IPv4 nor IPv6.
    NotIp,
    /// An IP header with a wrong version, header length or total/payload length.
    BadIpHeader,
    /// An IPv4 fragment (segmentation needs the whole TCP header).
    Fragment,
    /// An IP packet that does not carry TCP.
    NotTcp,
    /// An IPv6 packet with extension headers (not handled).
    Ipv6ExtHeader,
    /// A TCP header whose data offset is below 5 words or beyond the packet.
    BadTcpHeader,
    /// A GSO type we do not handle (UDP fragmentation offload, unknown values); the value.
    UnsupportedGso(u8),
    /// The GSO type names the other IP version than the frame carries.
    GsoMismatch,
    /// A GSO frame with a `gso_size` of 0.
    ZeroGsoSize,
    /// A gso_size below TCP's smallest MSS (88): cutting it would turn one read into
    /// thousands of datagrams.
    TinyGsoSize,
    /// A GSO frame without `NEEDS_CSUM`.
    NoChecksumOffload,
    /// `csum_start`/`csum_offset` do not point at the TCP checksum field of the parsed headers.
    CsumMismatch,
    /// `hdr_len` beyond the end of the frame.
    HdrLenMismatch,
    /// A partial checksum whose field lies outside the frame.
    CsumOutOfRange,
    /// `max_seg_frame` cannot hold the headers and one byte of payload.
    SegmentTooSmall,
    /// The scratch buffer cannot hold the headroom and one segment.
    ScratchTooSmall,
}

impl std::fmt::Display for OffloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            OffloadError::ShortVnetHdr => "virtio-net header too short",
            OffloadError::Truncated => "frame truncated inside its headers",
            OffloadError::NotIp => "not an IPv4 or IPv6 frame",
            OffloadError::BadIpHeader => "malformed IP header",
            OffloadError::Fragment => "IPv4 fragment",
            OffloadError::NotTcp => "not TCP",
            OffloadError::Ipv6ExtHeader => "IPv6 extension headers",
            OffloadError::BadTcpHeader => "malformed TCP header",
            OffloadError::UnsupportedGso(t) => return write!(f, "unsupported GSO type {t:#04x}"),
            OffloadError::GsoMismatch => "GSO type does not match the IP version",
            OffloadError::ZeroGsoSize => "GSO frame with gso_size 0",
            OffloadError::TinyGsoSize => "GSO frame with a gso_size below TCP's smallest MSS (88)",
            OffloadError::NoChecksumOffload => "GSO frame without NEEDS_CSUM",
            OffloadError::CsumMismatch => "csum_start/csum_offset do not match the headers",
            OffloadError::HdrLenMismatch => "hdr_len beyond the frame",
            OffloadError::CsumOutOfRange => "checksum field outside the frame",
            OffloadError::SegmentTooSmall => "segment size cannot hold the headers",
            OffloadError::ScratchTooSmall => "scratch buffer too small",
        };
        f.write_str(s)
    }
}

impl std::error::Error for OffloadError {}
