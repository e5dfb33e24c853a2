//! Links -> TAP: datagrams received in batches, opened, checked, learned and written to the
//! TAP (TCP segments merged back into super-frames first).

use super::{write_tap, Node, RX_BATCH, RX_CALLS};
use crate::tap::Offload;
use crate::udp::RxBatch;
use proto::id::Millis;
use proto::link::{LinkId, Received};
use proto::offload::{self, Csum};
use proto::storm::{FloodClass, StormControl};
use proto::switch::{DropReason, LinkVerdict};
use proto::wire::ethernet::peek_header;
use std::net::SocketAddr;

impl Node {
    pub(super) fn drain_link(&mut self) -> bool {
        // One clock read per batch, as for the TAP.
        let now = self.now();
        // Out of `self` while its datagrams are handled (they borrow it).
        let mut rx = std::mem::replace(&mut self.rx, RxBatch::new(0, 0));
        let mut more = false;
        for _ in 0..RX_CALLS {
            let Some(sock) = self.link_sock.as_mut() else {
                break;
            };
            match sock.recv_batch(&mut rx, &mut self.counters.udp) {
                Ok(n) => more = n == RX_BATCH,
                // ICMP errors from an earlier send (peer down): not ours to act on here.
                Err(_) => more = true,
            }
            for i in 0..rx.len() {
                let (from, datagrams) = rx.datagrams(i);
                let Some(from) = from else { continue };
                for d in datagrams {
                    self.on_datagram(from, d, now);
                }
            }
            if !more {
                break;
            }
        }
        self.rx = rx;
        self.flush_coalescer();
        more
    }

    fn on_datagram(&mut self, from: SocketAddr, datagram: &[u8], now: Millis) {
        match self
            .core
            .handle_datagram(now, from, datagram, &mut self.out)
        {
            Received::Frame { link, range, csum } => self.deliver_frame(link, range, csum, now),
            Received::Icc { link, range } => {
                let msg = serde_json::from_slice(&self.out[range]);
                self.deliver_icc(link, msg);
            }
            Received::Nothing => {}
        }
    }

    /// A frame from link `id` at `out[range]`: learn its source, write it to the TAP.
    fn deliver_frame(
        &mut self,
        id: LinkId,
        range: std::ops::Range<usize>,
        csum: Csum,
        now: Millis,
    ) {
        let frame = &self.out[range.clone()];
        // Peers send what the overlay carries: not more, even when the device takes more.
        if frame.len() > self.tap.max_overlay_frame() {
            self.counters.drop_oversize += 1;
            return;
        }
        match self.switch.from_link(id, frame, now) {
            LinkVerdict::ToTap => {}
            LinkVerdict::Drop(DropReason::GroupSource) => {
                self.counters.drop_group_source += 1;
                return;
            }
            LinkVerdict::Drop(DropReason::Truncated) => {
                self.counters.drop_truncated_frame += 1;
                return;
            }
            LinkVerdict::Drop(DropReason::LocalSource | DropReason::HeldByOtherLink) => {
                self.counters.drop_refused_mac += 1;
                self.core.note_refused_mac(id);
                return;
            }
        }
        // Storm control per peer: a peer that does not limit its own floods is limited here.
        if let Ok((dst, _, _)) = peek_header(frame) {
            if dst.is_group() {
                let rates = self.storm.rates();
                let class = FloodClass::of(&dst);
                let storm = self
                    .storm_in
                    .entry(id)
                    .or_insert_with(|| StormControl::new(rates, now));
                if !storm.allow(class, now) {
                    match class {
                        FloodClass::Broadcast => self.counters.storm_in_drop_broadcast += 1,
                        _ => self.counters.storm_in_drop_multicast += 1,
                    }
                    return;
                }
            }
        }
        // The kernel finishes a checksum where the peer says: only the TCP/UDP checksum field.
        if !offload::partial_is_sane(frame, csum) {
            self.counters.drop_bad_csum += 1;
            return;
        }
        // A SYN from a peer whose own side does not clamp (an older tincan, a jumbo port).
        let mtu = self.tap.mtu;
        if offload::clamp_mss(&mut self.out[range.clone()], csum, mtu) {
            self.counters.mss_clamped += 1;
        }
        let frame = &self.out[range.clone()];
        self.core.note_rx_frame(id, frame.len());
        let len = frame.len() as u64;
        let (tap, counters) = (&self.tap, &mut self.counters);
        if tap.offload == Offload::Vnet {
            // Runs of one TCP flow go to the TAP as one super-frame at the end of the batch.
            self.coalescer
                .push(frame, csum, |b| write_tap(tap, counters, b));
            return;
        }
        let frame = &mut self.out[range];
        if offload::finish_checksum(frame, csum).is_err() {
            self.counters.drop_tap_offload += 1;
            return;
        }
        match self.tap.send(frame) {
            Ok(_) => {
                self.counters.tap_tx_frames += 1;
                self.counters.tap_tx_bytes += len;
            }
            Err(_) => self.counters.tap_write_errors += 1,
        }
    }

    /// Writes what the coalescer still holds to the TAP.
    fn flush_coalescer(&mut self) {
        let (tap, counters) = (&self.tap, &mut self.counters);
        self.coalescer.flush(|b| write_tap(tap, counters, b));
    }
}
