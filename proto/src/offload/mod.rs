//! Segmentation offload for a Layer-2 overlay: the virtio-net header that a TAP opened with
//! `IFF_VNET_HDR` puts in front of every frame, and the checksum state a frame carries across
//! a link (inside the encrypted part), so that neither end computes TCP/UDP checksums in
//! software when both kernels can finish them.

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
