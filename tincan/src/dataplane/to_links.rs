//! TAP -> links: frames and TCP super-frames read from the TAP, switched, cut to fit each
//! link, sealed and queued for one batched send.

use super::{flush_batch, Node, BATCH, FRAME_AT, PLAIN_AT};
use log::{debug, error};
use proto::id::Millis;
use proto::link::{Encapsulated, LinkId, SendError, FRAME_HEADROOM};
use proto::offload::{self, Csum, TooBig, VnetHdr};
use proto::storm::FloodClass;
use proto::switch::{FloodReason, TapVerdict};
use proto::wire::ethernet::{peek_header, HEADER_LEN as ETH_HEADER};
use std::io;

impl Node {
    /// Returns true if the TAP may hold more frames. Sends what it sealed before returning.
    pub(super) fn drain_tap(&mut self) -> bool {
        let more = self.read_tap();
        self.flush_tx();
        more
    }

    fn read_tap(&mut self) -> bool {
        // One clock read per batch: a batch takes well under a millisecond.
        let now = self.now();
        for _ in 0..BATCH {
            let (n, meta) = match self.tap.recv(&mut self.buf, FRAME_AT) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Counted, logged once, and the TAP drained on: mio wakes us once per edge.
                Err(e) => {
                    if self.counters.tap_read_errors == 0 {
                        error!("TAP read: {e} (counted in tap_read_errors from now on)");
                    }
                    self.counters.tap_read_errors += 1;
                    continue;
                }
            };
            self.counters.tap_rx_frames += 1;
            self.counters.tap_rx_bytes += n as u64;
            if meta.gso_type != 0 {
                self.counters.tap_rx_super_frames += 1;
            }
            self.on_tap_frame(n, meta, now);
        }
        true
    }

    fn on_tap_frame(&mut self, n: usize, meta: VnetHdr, now: Millis) {
        // A TCP super-frame (TSO) is larger than the MTU; it is cut to fit each link.
        if meta.gso_type == 0 && n > self.tap.max_frame() {
            self.counters.drop_oversize += 1;
            return;
        }
        let end = FRAME_AT + n;
        // Larger than the overlay carries (from a bridge port with a larger MTU): answered
        // with ICMP, or dropped.
        if meta.gso_type == 0 && n > ETH_HEADER + usize::from(self.tap.mtu) {
            let mut verdict = offload::too_big(&self.buf[FRAME_AT..end], self.tap.mtu);
            // A packet cut into fragments needs its whole checksum first.
            if matches!(verdict, TooBig::Fragments(_)) && meta.csum() != Csum::Done {
                if offload::finish_checksum(&mut self.buf[FRAME_AT..end], meta.csum()).is_err() {
                    self.counters.drop_bad_csum += 1;
                    return;
                }
                verdict = offload::too_big(&self.buf[FRAME_AT..end], self.tap.mtu);
            }
            match verdict {
                TooBig::Fits => {}
                TooBig::Fragments(frames) => {
                    self.counters.ip_fragmented += 1;
                    for f in frames {
                        self.buf[FRAME_AT..FRAME_AT + f.len()].copy_from_slice(&f);
                        self.on_tap_frame(f.len(), VnetHdr::default(), now);
                    }
                    return;
                }
                TooBig::Answer(answer) => {
                    if self.too_big_rate.allow((), now) && self.tap.send(&answer).is_ok() {
                        self.counters.icmp_too_big_sent += 1;
                    }
                    self.counters.drop_oversize += 1;
                    return;
                }
                TooBig::Drop => {
                    self.counters.drop_oversize += 1;
                    return;
                }
            }
        }
        // A SYN from a bridge port with a larger MTU than the TAP's asks for segments the TAP
        // would drop: its MSS is lowered to what the overlay carries.
        if meta.gso_type == 0
            && offload::clamp_mss(&mut self.buf[FRAME_AT..end], meta.csum(), self.tap.mtu)
        {
            self.counters.mss_clamped += 1;
        }
        let verdict = self
            .switch
            .from_tap(&self.buf[FRAME_AT..end], self.control.alive(), now);
        // IPv6 neighbour discovery, replicated like ARP (the `nd` module).
        if self.switch.punt_arp && self.control.alive() && self.nd_handled(end, meta, now) {
            return;
        }
        match verdict {
            TapVerdict::Punt
                if crate::neigh::answer(
                    &mut self.control,
                    &self.switch,
                    &self.tap,
                    &self.buf[FRAME_AT..end],
                    now,
                ) => {}
            TapVerdict::Punt => {
                self.counters.arp_punted += 1;
                let frame = self.buf[FRAME_AT..end].to_vec();
                self.punt_frame(&frame);
            }
            TapVerdict::Flood(reason) => {
                // Storm control: each class of flood at most its rate (counted by class).
                let Ok((dst, _, _)) = peek_header(&self.buf[FRAME_AT..end]) else {
                    return;
                };
                if !self.storm.allow(FloodClass::of(&dst), now) {
                    return;
                }
                match reason {
                    FloodReason::UnknownUnicast => self.counters.unknown_unicast += 1,
                    FloodReason::Arp => self.counters.arp_flooded += 1,
                    FloodReason::Multicast => {}
                }
                self.counters.flooded_frames += 1;
                let mut sent = 0;
                // By slot, so that flooding allocates nothing; empty slots refuse the frame.
                for id in 0..self.core.slots() {
                    if self.send_frame(id, end, meta, now) {
                        sent += 1;
                    }
                }
                if sent == 0 {
                    self.counters.drop_no_links += 1;
                }
            }
            TapVerdict::Unicast(id) => {
                if !self.send_frame(id, end, meta, now) {
                    self.counters.drop_link_down += 1;
                }
            }
            TapVerdict::Drop(_) => self.counters.drop_truncated_frame += 1,
        }
    }

    /// Seals the frame at `buf[FRAME_AT..end]` for link `id` and queues it; a TCP super-frame
    /// is cut into segments that each fit one link datagram first.
    fn send_frame(&mut self, id: LinkId, end: usize, meta: VnetHdr, now: Millis) -> bool {
        if self.link_sock.is_none() {
            return false;
        }
        if meta.gso_type != 0 {
            return self.send_super_frame(id, end, &meta, now);
        }
        match self.core.encapsulate(
            now,
            id,
            &mut self.buf[PLAIN_AT..end],
            meta.csum(),
            self.tx.spare(),
        ) {
            // One datagram, or the equal-size link fragments of a frame too large for one.
            Ok(Encapsulated::Send { to, len, stride }) => {
                self.queue_sealed(len, stride, to, id);
                true
            }
            Ok(Encapsulated::Queued) => true,
            Err(SendError::NoRelay) => {
                self.counters.link_tx_errors += 1;
                false
            }
            Err(_) => false,
        }
    }

    /// Cuts the TCP super-frame at `buf[FRAME_AT..end]` into segments of at most the link's
    /// largest whole frame, each sealed and queued with its checksum left to the far kernel.
    fn send_super_frame(&mut self, id: LinkId, end: usize, hdr: &VnetHdr, now: Millis) -> bool {
        if !self.core.link(id).is_some_and(|l| l.is_up()) {
            return false;
        }
        let max = self.core.max_whole_frame(id);
        let Node {
            core,
            tx,
            link_sock,
            counters,
            buf,
            seg,
            ..
        } = self;
        let mut sent = true;
        let split = offload::split(
            hdr,
            &buf[FRAME_AT..end],
            max,
            seg,
            FRAME_HEADROOM,
            |plain, csum| match core.encapsulate(now, id, plain, csum, tx.spare()) {
                Ok(Encapsulated::Send { to, len, stride }) => {
                    tx.commit(len, stride, to, id);
                    if tx.full() {
                        flush_batch(tx, link_sock.as_mut(), core, counters);
                    }
                }
                Ok(Encapsulated::Queued) => {}
                Err(e) => {
                    if e == SendError::NoRelay {
                        counters.link_tx_errors += 1;
                    }
                    sent = false;
                }
            },
        );
        match split {
            Ok(n) => {
                counters.tap_segments_cut += n as u64;
                sent
            }
            Err(e) => {
                counters.drop_tap_offload += 1;
                debug!("TAP super-frame not cut: {e}");
                false
            }
        }
    }
}
