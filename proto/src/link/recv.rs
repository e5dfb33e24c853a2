//! The receiving half of the link core: every datagram on the link socket, STUN/TURN first,
//! then handshakes (their acceptance in `handshake`), sealed and plaintext messages (the first on an answered init's session confirms
//! it). Every refusal is counted.

use super::path::Route;
use super::{frag, LinkEvent, LinkId, LinkTable, Received};
use crate::id::{Millis, Uid};
use crate::nat::NatRecv;
use crate::offload::Csum;
use crate::secure::{self, SecureError};
use crate::wire::link::{parse_csum_meta, FragHeader, LinkMessage, MessageType};
use crate::wire::link::{CSUM_META_LEN, DATA_HEADER_LEN, FRAG_META_LEN};
use std::net::SocketAddr;
use std::ops::Range;

impl LinkTable {
    /// A datagram from `from` on the link socket. A frame or ICC message it carried is
    /// written to `out` (which must hold a whole datagram) and returned as a range of it.
    pub fn handle_datagram(
        &mut self,
        now: Millis,
        from: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Received {
        self.counters.link_rx_datagrams += 1;
        match self.nat.on_datagram(datagram, from, now) {
            NatRecv::NotMine => self.on_link_datagram(now, from, Route::Direct, datagram, out),
            NatRecv::Handled => Received::Nothing,
            NatRecv::PeerData { peer, data } => {
                self.on_link_datagram(now, peer, Route::ViaRelay, &data, out)
            }
        }
    }

    fn on_link_datagram(
        &mut self,
        now: Millis,
        from: SocketAddr,
        route: Route,
        msg: &[u8],
        out: &mut [u8],
    ) -> Received {
        let Some(local_uid) = self.local.as_ref().map(|l| l.uid) else {
            self.counters.drop_not_configured += 1;
            return Received::Nothing;
        };
        let Some(kind) = MessageType::of(msg) else {
            self.counters.drop_bad_link_message += 1;
            return Received::Nothing;
        };
        if kind.is_secure() != self.sec() {
            self.sec_mismatch(now, from, msg);
            return Received::Nothing;
        }
        match kind {
            MessageType::Init => {
                self.on_init(now, from, route, msg);
                Received::Nothing
            }
            MessageType::Resp => {
                self.on_resp(now, from, route, msg);
                Received::Nothing
            }
            MessageType::CookieReply => {
                self.on_cookie_reply(now, msg);
                Received::Nothing
            }
            MessageType::Sealed => self.on_sealed(now, from, route, msg, out),
            _ => self.on_plain(now, from, route, local_uid, msg, out),
        }
    }

    /// One side says `"sec": true`, the other false: never a link, and a line in both logs.
    fn sec_mismatch(&mut self, now: Millis, from: SocketAddr, msg: &[u8]) {
        self.counters.drop_sec_mismatch += 1;
        if self.sec() {
            let who = match LinkMessage::parse(msg) {
                Ok(LinkMessage::Hello(h)) => format!("peer {}", h.sender_uid),
                _ => "a peer".to_string(),
            };
            self.log_limited("sec_mismatch", now, || {
                format!("{who} at {from} sends plaintext link messages (its \"sec\" is false), but \"sec\" is true here: no link")
            });
        } else {
            self.log_limited("sec_mismatch", now, || {
                format!("encrypted link message from {from} (its \"sec\" is true), but \"sec\" is false here: no link")
            });
        }
    }

    pub(super) fn count_secure_error(&mut self, e: SecureError) {
        let c = &mut self.counters;
        match e {
            SecureError::Replay => c.drop_replay += 1,
            SecureError::Auth => c.drop_auth += 1,
            SecureError::UnknownSession => c.drop_unknown_index += 1,
            SecureError::UnknownPeer => c.drop_unknown_key += 1,
            SecureError::Malformed => c.drop_bad_link_message += 1,
            SecureError::NoCommonCipher => c.drop_no_common_cipher += 1,
        }
    }

    fn on_resp(&mut self, now: Millis, from: SocketAddr, route: Route, msg: &[u8]) {
        if !self.resp_passes(now, from, msg) {
            return;
        }
        let Some(id) = secure::resp_receiver_idx(msg).and_then(|i| self.link_for_index(i)) else {
            self.counters.drop_unknown_index += 1;
            return;
        };
        let link = self.links[id].as_mut().expect("checked");
        let Some(sec) = link.secure.as_mut() else {
            self.counters.drop_unknown_index += 1;
            return;
        };
        match sec.on_response(msg, now) {
            Ok(()) => {
                link.rtt_ms = link.hs_sent_at.map(|t| now.saturating_sub(t));
                self.established(id, now, from, route);
                // The responder sends on the new session only once we have: confirm it now
                // rather than with the next frame.
                self.send_keepalive(id, now);
            }
            Err(e) => {
                if e == SecureError::NoCommonCipher {
                    let uid = link.uid();
                    self.log_limited("no_common_cipher", now, || {
                        format!("handshake response from {uid} at {from} chose a cipher this node does not offer (\"cipher\"): refused")
                    });
                }
                self.count_secure_error(e);
            }
        }
    }

    /// A handshake completed on link `id` with the peer at `from` (our init answered, or the
    /// peer's init confirmed by its first message): that is where it is now, and the link is
    /// up on the new session.
    fn established(&mut self, id: LinkId, now: Millis, from: SocketAddr, route: Route) {
        self.counters.handshakes_completed += 1;
        let Some(Some(link)) = self.links.get_mut(id) else {
            return;
        };
        link.moved_to(from, route);
        link.last_handshake = Some(now);
        let Some(ridx) = link
            .secure
            .as_ref()
            .and_then(secure::SecureLink::remote_idx)
        else {
            return;
        };
        if link.live.on_established(ridx, now).is_some() {
            self.link_up(id);
        }
    }

    fn link_up(&mut self, id: LinkId) {
        let Some(Some(link)) = self.links.get(id) else {
            return;
        };
        let (uid, endpoint) = (link.uid(), link.endpoint());
        let security = match link.secure.as_ref().map(secure::SecureLink::cipher) {
            Some(Some(c)) => format!("encrypted, {c}"),
            Some(None) => "encrypted".to_string(),
            None => "plaintext".to_string(),
        };
        log::info!("link to {uid} at {endpoint} is up ({security})");
        self.events.push_back(LinkEvent::Up {
            link: id,
            uid,
            endpoint,
        });
    }

    /// The peer closed link `id` (it is stopping): down now, its sessions void; contact starts
    /// over as for any link that is down, so a restarted peer finds us at once.
    fn peer_closed(&mut self, id: LinkId) {
        let Some(Some(link)) = self.links.get_mut(id) else {
            return;
        };
        let was_up = link.live.restart().is_some();
        link.frag.clear();
        if let Some(sec) = link.secure.as_mut() {
            sec.reset();
        }
        self.counters.links_closed_by_peer += 1;
        if was_up {
            let (uid, endpoint) = (link.uid(), link.endpoint());
            log::info!("link to {uid} at {endpoint} is down (the peer closed it)");
            self.events.push_back(LinkEvent::Down {
                link: id,
                uid,
                endpoint,
            });
        }
    }

    fn on_sealed(
        &mut self,
        now: Millis,
        from: SocketAddr,
        route: Route,
        msg: &[u8],
        out: &mut [u8],
    ) -> Received {
        let Some(id) = secure::data_receiver_idx(msg).and_then(|i| self.link_for_index(i)) else {
            self.counters.drop_unknown_index += 1;
            return Received::Nothing;
        };
        let link = self.links[id].as_mut().expect("checked");
        let Some(sec) = link.secure.as_mut() else {
            self.counters.drop_unknown_index += 1;
            return Received::Nothing;
        };
        let opened = match sec.decrypt(msg, out) {
            Ok(r) => r,
            Err(e) => {
                self.count_secure_error(e);
                return Received::Nothing;
            }
        };
        if opened.confirmed {
            let link = self.links[id].as_mut().expect("checked");
            if let Some(t) = link.resp_sent_at.take() {
                link.rtt_ms = Some(now.saturating_sub(t));
            }
            self.established(id, now, from, route);
        }
        let link = self.links[id].as_mut().expect("checked");
        // Authentic: the peer is alive, and this is where it is now.
        link.moved_to(from, route);
        let data = opened.inner != MessageType::Keepalive as u8;
        if link.live.on_message(now, data).is_some() {
            self.link_up(id);
        }
        self.deliver(now, id, opened.inner, 1..1 + opened.len, out)
    }

    fn on_plain(
        &mut self,
        now: Millis,
        from: SocketAddr,
        route: Route,
        local_uid: Uid,
        msg: &[u8],
        out: &mut [u8],
    ) -> Received {
        let parsed = match LinkMessage::parse(msg) {
            Ok(m) => m,
            Err(_) => {
                self.counters.drop_bad_link_message += 1;
                return Received::Nothing;
            }
        };
        let counter = match &parsed {
            LinkMessage::Hello(_) => 0,
            LinkMessage::Data { counter, .. }
            | LinkMessage::Icc { counter, .. }
            | LinkMessage::Keepalive { counter, .. }
            | LinkMessage::WithMeta { counter, .. } => *counter,
        };
        let (receiver_idx, kind) = match parsed {
            LinkMessage::Hello(h) => {
                if h.receiver_uid != local_uid {
                    self.counters.drop_wrong_receiver += 1;
                    return Received::Nothing;
                }
                let Some(&id) = self.by_uid.get(&h.sender_uid) else {
                    self.counters.drop_unknown_peer += 1;
                    let uid = h.sender_uid;
                    self.log_limited("unknown_peer", now, || {
                        format!("hello from {from} with uid {uid}, which is not a configured peer: dropped")
                    });
                    return Received::Nothing;
                };
                let link = self.links[id]
                    .as_mut()
                    .expect("by_uid points at live slots");
                let (ev, reply) = link.live.on_hello(&h, from, now);
                link.route = route;
                if reply {
                    self.answer_hello(id, now, from, route);
                }
                if ev.is_some() {
                    self.link_up(id);
                }
                return Received::Nothing;
            }
            LinkMessage::Data { receiver_idx, .. } => (receiver_idx, MessageType::Data),
            LinkMessage::Icc { receiver_idx, .. } => (receiver_idx, MessageType::Icc),
            LinkMessage::Keepalive { receiver_idx, .. } => (receiver_idx, MessageType::Keepalive),
            LinkMessage::WithMeta {
                msg_type,
                receiver_idx,
                ..
            } => (receiver_idx, msg_type),
        };
        let Some(id) = self.link_for_index(receiver_idx) else {
            self.counters.drop_unknown_index += 1;
            return Received::Nothing;
        };
        let link = self.links[id].as_mut().expect("checked");
        // A copy the underlay delivered twice (or a replay of one seen): dropped.
        if !link.plain_rx.accept(link.live.remote_idx, counter) {
            self.counters.drop_replay += 1;
            return Received::Nothing;
        }
        if link
            .live
            .on_message(now, kind != MessageType::Keepalive)
            .is_some()
        {
            self.link_up(id);
        }
        let payload = &msg[DATA_HEADER_LEN..];
        if out.len() < payload.len() {
            self.counters.drop_bad_link_message += 1;
            return Received::Nothing;
        }
        out[..payload.len()].copy_from_slice(payload);
        self.deliver(now, id, kind as u8, 0..payload.len(), out)
    }

    /// Hands an authentic inner message of link `id` to the caller: its type `kind`, and the
    /// rest (meta and payload) at `out[range]`. A fragment is kept until its message is whole.
    fn deliver(
        &mut self,
        now: Millis,
        id: LinkId,
        kind: u8,
        range: Range<usize>,
        out: &mut [u8],
    ) -> Received {
        let Some(Some(link)) = self.links.get_mut(id) else {
            return Received::Nothing;
        };
        match MessageType::from_u8(kind) {
            // Counted by the caller once the frame passed its own checks (note_rx_frame).
            Some(MessageType::Data) => Received::Frame {
                link: id,
                range,
                csum: Csum::Done,
            },
            Some(MessageType::DataPartial) => match parse_csum_meta(&out[range.clone()]) {
                Ok((start, offset, _)) => Received::Frame {
                    link: id,
                    range: range.start + CSUM_META_LEN..range.end,
                    csum: Csum::Partial { start, offset },
                },
                Err(_) => {
                    self.counters.drop_bad_link_message += 1;
                    Received::Nothing
                }
            },
            Some(MessageType::Icc) => {
                link.live.counters.icc_rx += 1;
                self.counters.icc_rx += 1;
                Received::Icc { link: id, range }
            }
            Some(MessageType::Keepalive) => Received::Nothing,
            Some(MessageType::Fragment) => self.on_fragment(now, id, range, out),
            Some(MessageType::Close) => {
                self.peer_closed(id);
                Received::Nothing
            }
            _ => {
                self.counters.drop_bad_link_message += 1;
                Received::Nothing
            }
        }
    }

    /// A fragment from link `id` at `out[range]`: kept; when it completes its message, that
    /// message (put together in `out`) is delivered.
    fn on_fragment(
        &mut self,
        now: Millis,
        id: LinkId,
        range: Range<usize>,
        out: &mut [u8],
    ) -> Received {
        let parsed = FragHeader::parse(&out[range.clone()]);
        let Ok((h, _)) = parsed else {
            self.with_frag(id, |f| {
                f.counters.frag_rx += 1;
                f.counters.frag_drop_invalid += 1;
            });
            return Received::Nothing;
        };
        // Over the shared budget: messages past their age on other links go first.
        if self.frag_bytes() + h.total as usize > frag::TOTAL_BUDGET {
            self.expire_frags(now);
        }
        let piece = range.start + FRAG_META_LEN..range.end;
        let whole = self.with_frag(id, |f| match f.add(now, &h, &out[piece]) {
            Ok(Some(i)) => f.take(i, out),
            _ => None,
        });
        let Some(Some(n)) = whole else {
            return Received::Nothing;
        };
        // The message inside: never a fragment or keepalive itself.
        match MessageType::from_u8(out[0]) {
            Some(MessageType::Data | MessageType::DataPartial | MessageType::Icc) => {
                self.deliver(now, id, out[0], 1..n, out)
            }
            _ => {
                self.with_frag(id, |f| f.counters.frag_drop_invalid += 1);
                Received::Nothing
            }
        }
    }
}
