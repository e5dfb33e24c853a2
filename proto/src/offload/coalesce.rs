//! Gluing consecutive TCP segments of one flow back into a super-frame for the TAP (GRO).
//!
//! What may be merged follows Linux's `tcp_gro_receive` (and wireguard-go's TCP GRO, which
//! copies it): the IP headers must agree except for the lengths, the IPv4 id (which must
//! count up by one per segment) and the header checksum; the TCP headers must agree except for
//! the sequence number (which must continue the run), the checksum and the flags CWR, PSH and
//! FIN; the TCP options must be byte for byte the same, timestamps included. Segments cut from
//! one TSO super-frame carry the same timestamps, so nothing is lost on our own path, while
//! merging segments with different TSval or TSecr would hide all but the first from the
//! receiver's RTT estimate and PAWS check. We also require the same window (Linux keeps the
//! first segment's and drops later updates; an equal window loses nothing). CWR may only open a
//! run (it then gets `VIRTIO_NET_HDR_GSO_ECN`, as Linux's `tcp_gro_complete` does); PSH or FIN
//! or a payload shorter than the first ends it; SYN, RST and URG are never merged.

use super::csum::ones_sum;
use super::headers::{
    be16, be32, fix_lengths, parse_tcp, TcpFrame, IPV6_HLEN, TCP_CSUM_OFFSET, TCP_CWR, TCP_FIN,
    TCP_PSH, TCP_RST, TCP_SYN, TCP_URG,
};
use super::vnet::{
    VnetHdr, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_ECN, VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
};
use super::{Csum, VNET_HDR_LEN};

/// Flows coalesced at the same time; a segment of another flow flushes the least recently used.
pub const MAX_FLOWS: usize = 8;
/// Largest coalesced Ethernet frame (headers included), so IP lengths always fit 16 bits.
pub const MAX_SUPER_FRAME: usize = 65_535;

/// Receive-side coalescing of TCP segments into super-frames, each handed out with its
/// virtio-net header, ready for one `write` to a TAP opened with `IFF_VNET_HDR`.
///
/// Only segments whose checksum is [`Csum::Partial`] (pointing at the TCP checksum) are merged;
/// every other frame goes out unchanged, with a header saying `NEEDS_CSUM` or nothing, after
/// the pending run of its own flow, so that the order within a flow is kept. Call
/// [`Coalescer::flush`] at the end of each batch of received frames. All buffers are allocated
/// by [`Coalescer::new`].
pub struct Coalescer {
    flows: Vec<Flow>,
    /// `[vnet header][frame]` of a frame passed through.
    pass: Vec<u8>,
    tick: u64,
}

/// One pending run: `[vnet header][first segment's headers][payloads...]` in `buf`.
struct Flow {
    buf: Vec<u8>,
    active: bool,
    /// Header offsets of the first segment (within the frame, after the vnet header).
    t: TcpFrame,
    gso_size: usize,
    segments: usize,
    next_seq: u32,
    next_id: u16,
    used: u64,
}

/// What a segment that may be merged contributes.
struct Seg {
    payload: usize,
    seq: u32,
    flags: u8,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    pub fn new() -> Coalescer {
        let flow = || Flow {
            buf: Vec::with_capacity(VNET_HDR_LEN + MAX_SUPER_FRAME),
            active: false,
            t: TcpFrame {
                ipv6: false,
                l3: 0,
                l4: 0,
                payload: 0,
                end: 0,
            },
            gso_size: 0,
            segments: 0,
            next_seq: 0,
            next_id: 0,
            used: 0,
        };
        Coalescer {
            flows: (0..MAX_FLOWS).map(|_| flow()).collect(),
            pass: Vec::with_capacity(VNET_HDR_LEN + MAX_SUPER_FRAME),
            tick: 0,
        }
    }

    /// Runs waiting for more segments.
    pub fn pending(&self) -> usize {
        self.flows.iter().filter(|f| f.active).count()
    }

    /// Takes one received frame with its checksum state. `emit` gets zero or more
    /// `[vnet header][frame]` buffers: runs this frame ends or pushes out, and the frame itself
    /// unless it is kept to be merged with the next ones.
    pub fn push(&mut self, frame: &[u8], csum: Csum, mut emit: impl FnMut(&[u8])) {
        self.tick += 1;
        let Ok(t) = parse_tcp(frame) else {
            return self.pass_through(frame, csum, &mut emit);
        };
        let slot = self
            .flows
            .iter()
            .position(|f| f.active && f.same_flow(frame, &t));
        let seg = mergeable(frame, &t, csum);
        match (slot, seg) {
            (Some(i), Some(seg)) if self.flows[i].can_merge(frame, &t, &seg) => {
                let f = &mut self.flows[i];
                f.buf.extend_from_slice(&frame[t.payload..t.end]);
                f.segments += 1;
                f.next_seq = seg.seq.wrapping_add(seg.payload as u32);
                f.next_id = f.next_id.wrapping_add(1);
                f.used = self.tick;
                let l4 = VNET_HDR_LEN + f.t.l4;
                f.buf[l4 + 13] |= seg.flags & (TCP_PSH | TCP_FIN);
                if seg.payload < f.gso_size || seg.flags & (TCP_PSH | TCP_FIN) != 0 {
                    f.flush(&mut emit);
                }
            }
            (Some(i), Some(seg)) => {
                self.flows[i].flush(&mut emit);
                self.start(i, frame, &t, &seg, csum, &mut emit);
            }
            (Some(i), None) => {
                self.flows[i].flush(&mut emit);
                self.pass_through(frame, csum, &mut emit);
            }
            (None, Some(seg)) => {
                let i = match self.flows.iter().position(|f| !f.active) {
                    Some(i) => i,
                    None => {
                        let lru = (0..MAX_FLOWS)
                            .min_by_key(|&i| self.flows[i].used)
                            .unwrap_or(0);
                        self.flows[lru].flush(&mut emit);
                        lru
                    }
                };
                self.start(i, frame, &t, &seg, csum, &mut emit);
            }
            (None, None) => self.pass_through(frame, csum, &mut emit),
        }
    }

    /// Hands out every pending run.
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        for f in &mut self.flows {
            f.flush(&mut emit);
        }
    }

    /// Opens a run in slot `i` (free) with `frame`, or passes the frame through if it already
    /// ends the run it would open.
    fn start(
        &mut self,
        i: usize,
        frame: &[u8],
        t: &TcpFrame,
        seg: &Seg,
        csum: Csum,
        emit: &mut impl FnMut(&[u8]),
    ) {
        if seg.flags & (TCP_PSH | TCP_FIN) != 0 {
            return self.pass_through(frame, csum, emit);
        }
        let f = &mut self.flows[i];
        f.buf.clear();
        f.buf.extend_from_slice(&[0; VNET_HDR_LEN]);
        f.buf.extend_from_slice(frame);
        f.active = true;
        f.t = *t;
        f.gso_size = seg.payload;
        f.segments = 1;
        f.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        f.next_id = if t.ipv6 {
            0
        } else {
            be16(frame, t.l3 + 4).wrapping_add(1)
        };
        f.used = self.tick;
    }

    fn pass_through(&mut self, frame: &[u8], csum: Csum, emit: &mut impl FnMut(&[u8])) {
        self.pass.clear();
        self.pass
            .extend_from_slice(&VnetHdr::from_csum(csum).emit());
        self.pass.extend_from_slice(frame);
        emit(&self.pass);
    }
}

/// The segment's contribution if it may open or join a run: a partial checksum on the TCP
/// checksum, some payload, no padding, no SYN/RST/URG, an IPv4 header without options and with
/// a valid checksum (as Linux GRO wants), and room in a super-frame.
fn mergeable(frame: &[u8], t: &TcpFrame, csum: Csum) -> Option<Seg> {
    let want = Csum::Partial {
        start: t.l4 as u16,
        offset: TCP_CSUM_OFFSET,
    };
    let flags = frame[t.l4 + 13];
    let ok = csum == want
        && t.payload_len() > 0
        && t.end == frame.len()
        && frame.len() <= MAX_SUPER_FRAME
        && flags & (TCP_SYN | TCP_RST | TCP_URG) == 0
        && (t.ipv6 || (t.l4 - t.l3 == 20 && ones_sum(&frame[t.l3..t.l4]) == 0xffff));
    ok.then(|| Seg {
        payload: t.payload_len(),
        seq: be32(frame, t.l4 + 4),
        flags,
    })
}

impl Flow {
    fn first(&self) -> &[u8] {
        &self.buf[VNET_HDR_LEN..]
    }

    /// Same hosts, VLANs, addresses and ports as the run (whether it can be merged or not).
    fn same_flow(&self, frame: &[u8], t: &TcpFrame) -> bool {
        let (a, s) = (self.first(), &self.t);
        let addrs = if t.ipv6 { 8..IPV6_HLEN } else { 12..20 };
        t.ipv6 == s.ipv6
            && t.l3 == s.l3
            && frame[..t.l3] == a[..s.l3]
            && frame[t.l3 + addrs.start..t.l3 + addrs.end]
                == a[s.l3 + addrs.start..s.l3 + addrs.end]
            && frame[t.l4..t.l4 + 4] == a[s.l4..s.l4 + 4]
    }

    /// Whether `frame`, of the same flow (see `mergeable`), continues the run.
    fn can_merge(&self, frame: &[u8], t: &TcpFrame, seg: &Seg) -> bool {
        let (a, s) = (self.first(), &self.t);
        let ip_same = if t.ipv6 {
            // Version, traffic class, flow label; next header and hop limit.
            frame[t.l3..t.l3 + 4] == a[s.l3..s.l3 + 4]
                && frame[t.l3 + 6..t.l3 + 8] == a[s.l3 + 6..s.l3 + 8]
        } else {
            // Version, IHL, TOS; flags and fragment offset, TTL, protocol; and the id counts up.
            frame[t.l3..t.l3 + 2] == a[s.l3..s.l3 + 2]
                && frame[t.l3 + 6..t.l3 + 10] == a[s.l3 + 6..s.l3 + 10]
                && be16(frame, t.l3 + 4) == self.next_id
        };
        let (l4, l4a) = (t.l4, s.l4);
        let first_flags = a[l4a + 13];
        let tcp_same = t.payload - t.l4 == s.payload - s.l4
            // Ack number, data offset, window, urgent pointer, options.
            && frame[l4 + 8..l4 + 13] == a[l4a + 8..l4a + 13]
            && frame[l4 + 14..l4 + 16] == a[l4a + 14..l4a + 16]
            && frame[l4 + 18..t.payload] == a[l4a + 18..s.payload]
            && (seg.flags ^ first_flags) & !(TCP_CWR | TCP_PSH | TCP_FIN) == 0
            && seg.flags & TCP_CWR == 0;
        ip_same
            && tcp_same
            && seg.seq == self.next_seq
            && seg.payload <= self.gso_size
            && self.buf.len() - VNET_HDR_LEN + seg.payload <= MAX_SUPER_FRAME
    }

    /// Hands out the run, if any: a lone segment unchanged with `NEEDS_CSUM`, several as one
    /// GSO super-frame.
    fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.active {
            return;
        }
        self.active = false;
        let t = self.t;
        let csum = Csum::Partial {
            start: t.l4 as u16,
            offset: TCP_CSUM_OFFSET,
        };
        let mut hdr = VnetHdr::from_csum(csum);
        if self.segments > 1 {
            let end = self.buf.len() - VNET_HDR_LEN;
            fix_lengths(&mut self.buf[VNET_HDR_LEN..], &t, end);
            let ecn = if self.first()[t.l4 + 13] & TCP_CWR != 0 {
                VIRTIO_NET_HDR_GSO_ECN
            } else {
                0
            };
            let gso = if t.ipv6 {
                VIRTIO_NET_HDR_GSO_TCPV6
            } else {
                VIRTIO_NET_HDR_GSO_TCPV4
            };
            hdr = VnetHdr {
                flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
                gso_type: gso | ecn,
                hdr_len: t.payload as u16,
                gso_size: self.gso_size as u16,
                ..hdr
            };
        }
        self.buf[..VNET_HDR_LEN].copy_from_slice(&hdr.emit());
        emit(&self.buf);
    }
}
