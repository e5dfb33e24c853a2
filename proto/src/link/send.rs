//! The sending half of the link core: frames (the hot path, into the caller's buffer), ICC,
//! hellos, handshakes and keepalives (queued), and the timers that call for them.

use super::path::Route;
use super::{Encapsulated, LinkEvent, LinkId, LinkTable, SendError, Transmit, FRAME_HEADROOM};
use crate::id::{Candidate, Millis};
use crate::secure::INIT_LEN;
use crate::wire::link::{emit_header, MessageType, DATA_HEADER_LEN, HELLO_LEN};
use log::info;
use std::net::SocketAddr;

impl LinkTable {
    /// Seals the frame at `plaintext[FRAME_HEADROOM..]` for `link` into `out`. The byte in
    /// front of the frame is the caller's headroom: the inner type goes there, so the frame is
    /// never copied before encryption. On a relayed path the datagram is queued instead.
    pub fn encapsulate(
        &mut self,
        now: Millis,
        link: LinkId,
        plaintext: &mut [u8],
        out: &mut [u8],
    ) -> Result<Encapsulated, SendError> {
        if plaintext.len() <= FRAME_HEADROOM {
            return Err(SendError::TooLarge);
        }
        plaintext[0] = MessageType::Data as u8;
        self.seal(now, link, plaintext, out, true)
    }

    /// Sends `payload` (JSON) to the controller behind the link to `uid`.
    pub fn send_icc(&mut self, now: Millis, link: LinkId, payload: &[u8]) -> Result<(), SendError> {
        let mut plain = std::mem::take(&mut self.scratch);
        plain.clear();
        plain.push(MessageType::Icc as u8);
        plain.extend_from_slice(payload);
        let mut out = vec![0u8; plain.len() + crate::secure::DATA_OVERHEAD + DATA_HEADER_LEN];
        let r = self.seal(now, link, &plain, &mut out, false);
        self.scratch = plain;
        match r? {
            Encapsulated::Send { to, len } => {
                out.truncate(len);
                self.transmits.push_back(Transmit { to, payload: out });
            }
            Encapsulated::Queued => {}
        }
        self.counters.icc_tx += 1;
        if let Some(Some(l)) = self.links.get_mut(link) {
            l.live.counters.icc_tx += 1;
        }
        Ok(())
    }

    /// `plaintext` = [inner type][payload]: sealed on encrypted links, or the plaintext header
    /// in front of the payload otherwise, into `out`.
    fn seal(
        &mut self,
        now: Millis,
        id: LinkId,
        plaintext: &[u8],
        out: &mut [u8],
        frame: bool,
    ) -> Result<Encapsulated, SendError> {
        let Some(Some(link)) = self.links.get_mut(id) else {
            return Err(SendError::NoLink);
        };
        let (true, Some(ridx)) = (link.is_up(), link.live.remote_idx) else {
            return Err(SendError::NotUp);
        };
        let payload_len = plaintext.len() - 1;
        let len = if let Some(sec) = link.secure.as_mut() {
            let n = sec.encrypt_prefixed(plaintext, out).map_err(|e| match e {
                crate::secure::SecureError::UnknownSession => SendError::NotUp,
                _ => SendError::TooLarge,
            })?;
            link.live.last_tx = now;
            n
        } else {
            let end = DATA_HEADER_LEN + payload_len;
            if out.len() < end {
                return Err(SendError::TooLarge);
            }
            out[DATA_HEADER_LEN..end].copy_from_slice(&plaintext[1..]);
            let t = MessageType::from_u8(plaintext[0]).ok_or(SendError::TooLarge)?;
            let counter = link.live.next_counter(now);
            emit_header(out, t, ridx, counter).map_err(|_| SendError::TooLarge)?;
            end
        };
        if frame {
            link.live.counters.tx_frames += 1;
            link.live.counters.tx_bytes += payload_len as u64;
        }
        let (to, route) = (link.endpoint(), link.route);
        match route {
            Route::Direct => Ok(Encapsulated::Send { to, len }),
            Route::ViaRelay => {
                if self.queue(to, Route::ViaRelay, &out[..len], now) {
                    return Ok(Encapsulated::Queued);
                }
                let link = self.links[id].as_mut().expect("checked above");
                link.live.counters.tx_errors += 1;
                if frame {
                    link.live.counters.tx_frames -= 1;
                    link.live.counters.tx_bytes -= payload_len as u64;
                }
                Err(SendError::NoRelay)
            }
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
        link.live.last_tx = now;
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

    pub(super) fn send_keepalive(&mut self, id: LinkId, now: Millis) {
        // Due again in a keepalive interval even if this one cannot be sent.
        if let Some(Some(l)) = self.links.get_mut(id) {
            l.live.last_tx = now;
        }
        let plain = [MessageType::Keepalive as u8];
        let mut out = [0u8; DATA_HEADER_LEN + crate::secure::DATA_OVERHEAD];
        if let Ok(Encapsulated::Send { to, len }) = self.seal(now, id, &plain, &mut out, false) {
            self.transmits.push_back(Transmit {
                to,
                payload: out[..len].to_vec(),
            });
        }
    }

    /// Runs every timer due at `now`: link liveness (keepalives, down), handshakes (first,
    /// retries, rekeys), hellos, probes back to a direct path, STUN and TURN.
    pub fn handle_timeout(&mut self, now: Millis) {
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
