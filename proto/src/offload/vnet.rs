//! `struct virtio_net_hdr` (10 bytes, without `num_buffers`), as a TAP opened with
//! `IFF_VNET_HDR` reads and writes it. Multi-byte fields are in the host's byte order for a
//! legacy virtio header; we read and write them little-endian, which is what x86 and arm64
//! Linux use (a big-endian host would need `TUNSETVNETLE`).

use super::{Csum, OffloadError, VNET_HDR_LEN};

/// `flags`: the checksum from `csum_start` to the end still has to be computed.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksums have been verified.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
/// `gso_type`: not a GSO frame.
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 to segment.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (not offered, refused by [`super::split`]).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6 to segment.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the first segment carries CWR, the others must not.
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// The virtio-net header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers (Ethernet to TCP). The kernel fills in a hint here (the linear
    /// part of its buffer, which may include payload), so [`super::split`] does not rely on it.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed part starts, counted from the Ethernet header.
    pub csum_start: u16,
    /// Where the checksum field is, counted from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header from the first [`VNET_HDR_LEN`] bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<VnetHdr, OffloadError> {
        let b = buf.get(..VNET_HDR_LEN).ok_or(OffloadError::ShortVnetHdr)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header's 10 bytes.
    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// The checksum state the header announces: `Partial` with `NEEDS_CSUM`, else `Done`
    /// (`DATA_VALID` or nothing: the checksums are complete or not ours to finish).
    pub fn csum(&self) -> Csum {
        if self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            Csum::Partial {
                start: self.csum_start,
                offset: self.csum_offset,
            }
        } else {
            Csum::Done
        }
    }

    /// The header of a frame that is not a GSO frame and has the given checksum state.
    pub fn from_csum(csum: Csum) -> VnetHdr {
        match csum {
            Csum::Done => VnetHdr::default(),
            Csum::Partial { start, offset } => VnetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                csum_start: start,
                csum_offset: offset,
                ..VnetHdr::default()
            },
        }
    }
}

impl From<Csum> for VnetHdr {
    fn from(csum: Csum) -> VnetHdr {
        VnetHdr::from_csum(csum)
    }
}

impl From<&VnetHdr> for Csum {
    fn from(hdr: &VnetHdr) -> Csum {
        hdr.csum()
    }
}
