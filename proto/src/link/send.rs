//! The sending half of the link core: frames (the hot path, into the caller's buffer), ICC,
//! hellos, handshakes and keepalives (queued), and the timers that call for them.

use super::path::Route;
use super::{frag, Encapsulated, LinkEvent, LinkId, LinkTable, SendError, Transmit};
use super::{FRAME_HEADROOM, RELAY_OVERHEAD, UNDERLAY_OVERHEAD, UNDERLAY_OVERHEAD_V6};
use crate::id::{Candidate, Millis};
use crate::offload::Csum;
use crate::secure::INIT_LEN;
use crate::wire::link::{emit_csum_meta, emit_header, FragHeader, MessageType};
use crate::wire::link::{DATA_HEADER_LEN, FRAG_META_LEN, HELLO_LEN, TAG_LEN};
use log::info;
use std::net::SocketAddr;

/// How an inner message goes out: `count` datagrams of `stride` bytes (the last one
/// shorter or equal), `len` bytes in all, each with a piece of `size` bytes (a whole message:
/// `count` 1).
struct Layout {
    count: usize,
    size: usize,
    stride: usize,
    len: usize,
}

impl LinkTable {
    /// Seals the frame at `plaintext[FRAME_HEADROOM..]` for `link` into `out`, with its
    /// checksum state `csum`. The bytes in front of the frame are the caller's headroom: the
    /// inner type (and the csum meta of a [`Csum::Partial`] frame) go there, so the frame is
    /// not copied before encryption. A frame too large for one link datagram is cut into
    /// fragments: `out` then holds their datagrams, `stride` bytes apart. On a relayed path
    /// the datagrams are queued instead.
    pub fn encapsulate(
        &mut self,
        now: Millis,
        link: LinkId,
        plaintext: &mut [u8],
        csum: Csum,
        out: &mut [u8],
    ) -> Result<Encapsulated, SendError> {
        if plaintext.len() <= FRAME_HEADROOM {
            return Err(SendError::TooLarge);
        }
        let frame_len = plaintext.len() - FRAME_HEADROOM;
        let start = match csum {
            Csum::Done => {
                plaintext[FRAME_HEADROOM - 1] = MessageType::Data as u8;
                FRAME_HEADROOM - 1
            }
            Csum::Partial { start, offset } => {
                plaintext[0] = MessageType::DataPartial as u8;
                emit_csum_meta(&mut plaintext[1..], start, offset)
                    .map_err(|_| SendError::TooLarge)?;
                0
            }
        };
        let r = self.send_inner(now, link, &plaintext[start..], out)?;
        let link = self.links[link].as_mut().expect("sent on it");
        link.live.counters.tx_frames += 1;
        link.live.counters.tx_bytes += frame_len as u64;
        Ok(r)
    }

    /// Sends `payload` (JSON) to the controller behind the link to `uid`, in fragments if it
    /// is larger than one link datagram.
    pub fn send_icc(&mut self, now: Millis, link: LinkId, payload: &[u8]) -> Result<(), SendError> {
        let mut plain = std::mem::take(&mut self.scratch);
        plain.clear();
        plain.push(MessageType::Icc as u8);
        plain.extend_from_slice(payload);
        let r = self.layout(link, plain.len()).and_then(|l| {
            let mut out = vec![0u8; l.len];
            self.send_inner(now, link, &plain, &mut out)
                .map(|e| (e, out))
        });
        self.scratch = plain;
        if let (Encapsulated::Send { to, len, stride }, out) = r? {
            for d in out[..len].chunks(stride) {
                self.transmits.push_back(Transmit {
                    to,
                    payload: d.to_vec(),
                });
            }
        }
        self.counters.icc_tx += 1;
        if let Some(Some(l)) = self.links.get_mut(link) {
            l.live.counters.icc_tx += 1;
        }
        Ok(())
    }

    /// The largest frame with a [`Csum::Partial`] state that crosses link `id` in one datagram
    /// now (what TCP super-frames are cut to); 0 for no link.
    pub fn max_whole_frame(&self, id: LinkId) -> usize {
        // The inner message is the frame behind the whole headroom (type byte and csum meta).
        self.limits(id)
            .map(|(max, overhead)| max.saturating_sub(overhead + FRAME_HEADROOM))
            .unwrap_or(0)
    }

    /// The largest datagram on link `id` now, and what a datagram adds to its inner message.
    fn limits(&self, id: LinkId) -> Result<(usize, usize), SendError> {
        let Some(Some(link)) = self.links.get(id) else {
            return Err(SendError::NoLink);
        };
        let mtu = link.link_mtu.unwrap_or(self.link_mtu) as usize;
        let relay = if link.route == Route::ViaRelay {
            RELAY_OVERHEAD
        } else {
            0
        };
        // Through a relay, the underlay is the one to our (IPv4) TURN server.
        let ip = if link.endpoint().is_ipv6() && relay == 0 {
            UNDERLAY_OVERHEAD_V6
        } else {
            UNDERLAY_OVERHEAD
        };
        let max = mtu.saturating_sub(ip + relay);
        // Sealed: the header, the inner message, the tag. Plaintext: the header's type byte is
        // the inner type.
        let overhead = if link.secure.is_some() {
            DATA_HEADER_LEN + TAG_LEN
        } else {
            DATA_HEADER_LEN - 1
        };
        Ok((max, overhead))
    }

    /// How an inner message of `inner_len` bytes goes out on link `id` now: in one datagram,
    /// or in fragments when it would be larger than the link's largest datagram.
    fn layout(&self, id: LinkId, inner_len: usize) -> Result<Layout, SendError> {
        let (max, overhead) = self.limits(id)?;
        let whole = overhead + inner_len;
        if whole <= max {
            return Ok(Layout {
                count: 1,
                size: inner_len,
                stride: whole,
                len: whole,
            });
        }
        let head = overhead + 1 + FRAG_META_LEN;
        let (count, size) =
            frag::plan(inner_len, max.saturating_sub(head)).ok_or(SendError::TooLarge)?;
        let last = inner_len - (count - 1) * size;
        Ok(Layout {
            count,
            size,
            stride: head + size,
            len: (count - 1) * (head + size) + head + last,
        })
    }

    /// `inner` = [inner type][meta][payload]: sealed (or behind the plaintext header) into
    /// `out`, whole or in fragments, and sent or queued by the link's route.
    fn send_inner(
        &mut self,
        now: Millis,
        id: LinkId,
        inner: &[u8],
        out: &mut [u8],
    ) -> Result<Encapsulated, SendError> {
        let l = self.layout(id, inner.len())?;
        if out.len() < l.len {
            return Err(SendError::TooLarge);
        }
        if l.count == 1 {
            self.seal_one(now, id, inner, out)?;
        } else {
            self.seal_fragments(now, id, inner, &l, out)?;
        }
        let link = self.links[id].as_ref().expect("laid out");
        let (to, route) = (link.endpoint(), link.route);
        match route {
            Route::Direct => Ok(Encapsulated::Send {
                to,
                len: l.len,
                stride: l.stride,
            }),
            Route::ViaRelay => {
                for d in out[..l.len].chunks(l.stride) {
                    if !self.queue(to, Route::ViaRelay, d, now) {
                        let link = self.links[id].as_mut().expect("laid out");
                        link.live.counters.tx_errors += 1;
                        return Err(SendError::NoRelay);
                    }
                }
                Ok(Encapsulated::Queued)
            }
        }
    }

    /// Cuts `inner` into the pieces `l` says, each sealed as a fragment into `out`, `l.stride`
    /// bytes apart.
    fn seal_fragments(
        &mut self,
        now: Millis,
        id: LinkId,
        inner: &[u8],
        l: &Layout,
        out: &mut [u8],
    ) -> Result<(), SendError> {
        let link = self.links[id].as_mut().expect("laid out");
        let frag_id = link.next_frag_id;
        link.next_frag_id = link.next_frag_id.wrapping_add(1);
        let mut piece = std::mem::take(&mut self.frag_scratch);
        let mut r = Ok(());
        for (i, chunk) in inner.chunks(l.size).enumerate() {
            let h = FragHeader {
                id: frag_id,
                total: inner.len() as u32,
                index: i as u8,
                count: l.count as u8,
            };
            piece.clear();
            piece.resize(1 + FRAG_META_LEN, 0);
            piece[0] = MessageType::Fragment as u8;
            h.emit(&mut piece[1..]).expect("sized");
            piece.extend_from_slice(chunk);
            r = self
                .seal_one(now, id, &piece, &mut out[i * l.stride..])
                .map(|_| ());
            if r.is_err() {
                break;
            }
        }
        self.frag_scratch = piece;
        r?;
        self.with_frag(id, |f| f.counters.frag_tx += l.count as u64);
        Ok(())
    }

    /// `inner` = [inner type][payload]: sealed on encrypted links, or the plaintext header
    /// in front of the payload otherwise, into `out`; returns the datagram's length.
    pub(super) fn seal_one(
        &mut self,
        now: Millis,
        id: LinkId,
        inner: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        let Some(Some(link)) = self.links.get_mut(id) else {
            return Err(SendError::NoLink);
        };
        let (true, Some(ridx)) = (link.is_up(), link.live.remote_idx) else {
            return Err(SendError::NotUp);
        };
        if let Some(sec) = link.secure.as_mut() {
            let n = sec.encrypt_prefixed(inner, out).map_err(|e| match e {
                crate::secure::SecureError::UnknownSession => SendError::NotUp,
                _ => SendError::TooLarge,
            })?;
            link.live
                .sent(now, inner[0] != MessageType::Keepalive as u8);
            Ok(n)
        } else {
            let end = DATA_HEADER_LEN + inner.len() - 1;
            if out.len() < end {
                return Err(SendError::TooLarge);
            }
            out[DATA_HEADER_LEN..end].copy_from_slice(&inner[1..]);
            let t = MessageType::from_u8(inner[0]).ok_or(SendError::TooLarge)?;
            let counter = link.live.next_counter(now, t != MessageType::Keepalive);
            emit_header(out, t, ridx, counter).map_err(|_| SendError::TooLarge)?;
            Ok(end)
        }
    }

    /// A frame of `link` that the caller accepted (the switch let it through to the TAP):
    /// counted on the link.
    pub fn note_rx_frame(&mut self, link: LinkId, len: usize) {
        if let Some(Some(l)) = self.links.get_mut(link) {
            l.live.counters.rx_frames += 1;
            l.live.counters.rx_bytes += len as u64;
        }
    }

    /// The caller could not send a datagram of `link` (socket error): counted on the link.
    pub fn note_tx_error(&mut self, link: LinkId) {
        if let Some(Some(l)) = self.links.get_mut(link) {
            l.live.counters.tx_errors += 1;
        }
    }

    /// Counts a frame from `link` dropped for its source MAC (`proto::switch`).
    pub fn note_refused_mac(&mut self, link: LinkId) {
        if let Some(Some(l)) = self.links.get_mut(link) {
            l.live.counters.refused_macs += 1;
        }
    }

    /// Queues `payload` for `to`, wrapped for our TURN relay when `route` says so. False when
    /// the relay cannot take it yet (no allocation, or no permission for the peer: one is
    /// requested).
    pub(super) fn queue(
        &mut self,
        to: SocketAddr,
        route: Route,
        payload: &[u8],
        now: Millis,
    ) -> bool {
        match route {
            Route::Direct => self.transmits.push_back(Transmit {
                to,
                payload: payload.to_vec(),
            }),
            Route::ViaRelay => match self.nat.relay_to(to, payload, now) {
                Some((server, wrapped)) => self.transmits.push_back(Transmit {
                    to: server,
                    payload: wrapped,
                }),
                None => return false,
            },
        }
        true
    }

    /// Starts (or restarts) contact with the peer of `id`: a plaintext hello, or with `"sec"`
    /// a handshake init (which proves who we are), to every probe target.
    pub(super) fn connect(&mut self, id: LinkId, now: Millis) {
        if self.sec() {
            self.send_handshake(id, now, false, false);
        } else {
            self.send_hello(id, now, false);
        }
    }

    /// Sends `msg` to the targets of `id` (see [`Link::targets`](super::peer::Link::targets)).
    fn send_to_targets(&mut self, id: LinkId, msg: &[u8], now: Millis, rekey: bool, probe: bool) {
        let have_relay = self.nat.relayed().is_some();
        let Some(Some(link)) = self.links.get_mut(id) else {
            return;
        };
        // Probes go to other addresses than the peer's path: they keep nothing alive there.
        if !probe {
            link.live.last_tx = now;
        }
        for (to, route) in link.targets(have_relay, rekey, probe) {
            self.queue(to, route, msg, now);
        }
    }

    /// Sends a hello to the probe targets of `id`. It asks for a hello back while the link is
    /// not up, or with `probe` (an up link on a relayed path probing its direct candidates:
    /// only an answer from one of them moves it there).
    pub(super) fn send_hello(&mut self, id: LinkId, now: Millis, probe: bool) {
        if let Some((out, n)) = self.hello(id, now, probe) {
            self.send_to_targets(id, &out[..n], now, false, probe);
        }
    }

    /// Answers the hello that came from `to` by `route`, the same way back: the peer's
    /// signalled candidates may not reach it (a symmetric NAT, a relay of its own).
    pub(super) fn answer_hello(&mut self, id: LinkId, now: Millis, to: SocketAddr, route: Route) {
        if let Some((out, n)) = self.hello(id, now, false) {
            if let Some(Some(link)) = self.links.get_mut(id) {
                link.live.last_tx = now;
            }
            self.queue(to, route, &out[..n], now);
        }
    }

    fn hello(&mut self, id: LinkId, now: Millis, probe: bool) -> Option<([u8; HELLO_LEN], usize)> {
        let uid = self.local.as_ref()?.uid;
        let link = self.links.get_mut(id)?.as_mut()?;
        link.live.hello_sent(now);
        let mut hello = link.live.hello(uid, self.boot_id);
        hello.reply_wanted |= probe;
        let mut out = [0u8; HELLO_LEN];
        let n = hello.emit(&mut out).expect("sized for a hello");
        Some((out, n))
    }

    /// Starts a handshake with the peer of `id`: on an up link a rekey (to where the peer is)
    /// and/or a probe of its direct candidates.
    fn send_handshake(&mut self, id: LinkId, now: Millis, rekey: bool, probe: bool) {
        // Strictly growing, even if the wall clock steps back.
        let time = (self.wall_at_zero + now).max(self.last_init_time + 1);
        let idx = self.new_index(id);
        let Some(local) = self.local.as_ref() else {
            return;
        };
        let (Some(key), uid) = (local.key.as_ref(), local.uid) else {
            return;
        };
        let Some(Some(link)) = self.links.get_mut(id) else {
            return;
        };
        let Some(sec) = link.secure.as_mut() else {
            return;
        };
        let mut out = [0u8; INIT_LEN];
        if let Ok(n) = sec.start_handshake(key, &uid, idx, time, now, &mut out) {
            self.last_init_time = time;
            self.counters.handshakes_sent += 1;
            link.hs_sent_at = Some(now);
            self.send_to_targets(id, &out[..n], now, rekey, probe);
        }
    }

    /// Tells every peer whose link is up that it is closed (this node is stopping), so that
    /// it drops the link at once instead of after its timeout. The datagrams are queued like
    /// any others (`poll_transmit`); the links here are down afterwards. The TURN allocation,
    /// if any, is deleted ([`crate::nat::Nat::release`]).
    pub fn close_all(&mut self, now: Millis) {
        let plain = [MessageType::Close as u8];
        for id in 0..self.links.len() {
            let mut out = [0u8; DATA_HEADER_LEN + crate::secure::DATA_OVERHEAD];
            if let Ok(Encapsulated::Send { to, len, .. }) =
                self.send_inner(now, id, &plain, &mut out)
            {
                self.transmits.push_back(Transmit {
                    to,
                    payload: out[..len].to_vec(),
                });
            }
            if let Some(Some(link)) = self.links.get_mut(id) {
                link.live.restart();
            }
        }
        // The relay goes too, so that the node, restarted, gets one again at once.
        let mut nat_out = Vec::new();
        self.nat.release(now, &mut nat_out);
        for (to, payload) in nat_out {
            self.transmits.push_back(Transmit { to, payload });
        }
    }

    pub(super) fn send_keepalive(&mut self, id: LinkId, now: Millis) {
        // Due again in a keepalive interval even if this one cannot be sent.
        if let Some(Some(l)) = self.links.get_mut(id) {
            l.live.last_tx = now;
        }
        let plain = [MessageType::Keepalive as u8];
        let mut out = [0u8; DATA_HEADER_LEN + crate::secure::DATA_OVERHEAD];
        if let Ok(Encapsulated::Send { to, len, .. }) = self.send_inner(now, id, &plain, &mut out) {
            self.transmits.push_back(Transmit {
                to,
                payload: out[..len].to_vec(),
            });
        }
    }

    /// Runs every timer due at `now`: link liveness (keepalives, down), handshakes (first,
    /// retries, rekeys), hellos, probes back to a direct path, STUN and TURN.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.load_gauge(now);
        self.nat_timeout(now);
        self.link_timeouts(now);
        // Relay permissions the links asked for just now go out now, too.
        if self.nat.next_poll().is_some_and(|t| t <= now) {
            self.nat_poll(now);
        }
    }

    fn link_timeouts(&mut self, now: Millis) {
        let rekey_after = self.local.as_ref().map_or(120_000, |l| l.rekey_after);
        let sec = self.sec();
        self.expire_frags(now);
        for id in 0..self.links.len() {
            let Some(link) = self.links[id].as_mut() else {
                continue;
            };
            let due = link.due(now, rekey_after);
            self.counters.handshakes_unconfirmed += due.unconfirmed_dropped;
            if due.down {
                let (uid, endpoint) = (link.uid(), link.endpoint());
                info!("link to {uid} at {endpoint} is down (peer silent)");
                self.events.push_back(LinkEvent::Down {
                    link: id,
                    uid,
                    endpoint,
                });
            }
            if due.keepalive {
                self.send_keepalive(id, now);
            }
            if due.hello && !sec {
                self.send_hello(id, now, false);
            }
            if due.handshake || (due.direct_probe && sec) {
                self.send_handshake(id, now, due.handshake, due.direct_probe);
            } else if due.direct_probe {
                self.send_hello(id, now, true);
            }
        }
    }

    /// STUN and TURN housekeeping, and relay permissions for every peer address we know.
    fn nat_timeout(&mut self, now: Millis) {
        // Events first (an allocation just made), then permissions, then their requests.
        self.nat_poll(now);
        if self.nat.relayed().is_some() {
            let mut permit = Vec::new();
            for link in self.links.iter().flatten() {
                for c in &link.candidates {
                    if !matches!(c, Candidate::Relay(_)) {
                        permit.push(c.addr().ip());
                    }
                }
                if link.route == Route::ViaRelay {
                    permit.push(link.endpoint().ip());
                }
            }
            for ip in permit {
                self.nat.permit(ip, now);
            }
        }
        if self.nat.next_poll().is_some_and(|t| t <= now) {
            self.nat_poll(now);
        }
    }

    fn nat_poll(&mut self, now: Millis) {
        let mut out = Vec::new();
        self.nat.poll(now, &mut out);
        self.transmits.extend(
            out.into_iter()
                .map(|(to, payload)| Transmit { to, payload }),
        );
    }
}
