//! Messages between tincans over UDP: one message per datagram, a type byte first. This module
//! owns the layout of all ten (the handshakes' in [`super::link_handshake`]); `secure` owns only
//! the cryptography inside types 5-7 and 10.
//!
//! Every message starts with a 4-byte preamble `[type][flags][0][0]`. After it (integers
//! little-endian):
//!
//! | type | name        | layout after the preamble                                          |
//! |------|-------------|--------------------------------------------------------------------|
//! | 1    | hello       | sender_idx u32, sender uid 20 B, receiver uid 20 B, boot id u64    |
//! | 2    | data        | receiver_idx u32, counter u64, Ethernet frame                      |
//! | 3    | icc         | receiver_idx u32, counter u64, JSON (controller to controller)     |
//! | 4    | keepalive   | receiver_idx u32, counter u64                                      |
//! | 5    | init        | sender_idx u32, Noise IK message 1 (payload: uid 20 B, time u64,   |
//! |      |             | cipher offer u8)                                                   |
//! | 6    | resp        | sender_idx u32, receiver_idx u32, Noise IK message 2 (payload:     |
//! |      |             | cipher choice u8)                                                  |
//! | 7    | sealed      | receiver_idx u32, counter u64, AEAD(inner type u8, payload)        |
//! | 8    | data, csum  | receiver_idx u32, counter u64, csum start u16, offset u16, frame   |
//! | 9    | fragment    | receiver_idx u32, counter u64, id u32, total u32, index u8, count u8, |
//! |      |             | piece                                                              |
//! | 10   | cookie reply| receiver_idx u32, nonce 24 B, encrypted cookie 32 B                |
//!
//! Inits and responses end with mac1 and mac2 (16 bytes each); their layouts, and the cookie
//! reply's, are in [`super::link_handshake`].
//!
//! Types 1-4, 8 and 9 are the plaintext links (`"sec": false`); 5-7 and 10 the encrypted ones, whose
//! sealed payload starts with an inner type (2, 3, 4, 8 or 9). An *inner message* is
//! `[inner type][inner meta][payload]`: on a plaintext link the type is the message's first
//! byte and the rest follows the counted header; on an encrypted link all of it is sealed.
//!
//! - Type 8 is an Ethernet frame whose TCP/UDP checksum is still to be finished
//!   ([`crate::offload::Csum::Partial`]): `start` (from the Ethernet header) and `offset` (from
//!   `start`) of the checksum field, so the receiving kernel finishes it.
//! - Type 9 is one piece of an inner message too large for one link datagram. The message
//!   (`total` bytes, its own inner type first: 2, 3 or 8) is cut into `count` (2-255) pieces of
//!   `ceil(total / count)` bytes, the last one shorter or equal; piece `index` holds bytes
//!   `index * size ..` of it. `id` names the message among the sender's messages on that link.
//!   Each piece is sealed (or sent) as a message of its own, with its own counter, so the
//!   replay window and authentication work per piece; the receiver puts them back together
//!   (bounded state: `crate::link::frag`).
//!
//! `receiver_idx` is the index the receiving tincan gave the session, so the receive path
//! finds the link without hashing addresses and keeps working when a NAT rebinds the sender's
//! port. The counter is per session and
//! direction; on sealed messages it is the AEAD nonce, checked by the replay window.
//!
//! Version 3 of the encrypted format ([`PROLOGUE`] `"ipop-switch/3"` is the Noise prologue, so
//! it is bound into the handshake hash): inits and responses carry mac1 and mac2, and a
//! responder under load answers an init with a cookie reply (type 10) instead of a response
//! (see [`crate::secure::cookie`]). Since version 2, the init's payload ends with the initiator's cipher
//! offer, a bit set ([`CIPHER_AES_256_GCM`], [`CIPHER_CHACHA20_POLY1305`], and
//! [`OFFER_AES_HARDWARE`] when its CPU runs AES-GCM in hardware; other bits are reserved, sent
//! as 0 and ignored); the response's payload is the responder's choice, one cipher bit. Both
//! are inside the Noise payloads, so a changed byte fails the handshake and nobody on the path
//! can downgrade the choice. A sealed message is the cipher's AEAD under the session's key for
//! its direction, nonce = 4 zero bytes then the counter (u64 little-endian), and the 16-byte
//! header as associated data. A peer of version 1 (no prologue, 28-byte init payload, empty
//! response payload) fails the handshake: its init has another length, and the handshake hash
//! differs; a peer of version 2 (the same messages without the macs) is told apart by the
//! length of its messages, refused and counted.

pub use super::link_handshake::{
    CookieReplyView, InitView, RespView, COOKIE_REPLY_LEN, INIT_LEN, MAC_LEN, RESP_LEN,
    V2_INIT_LEN, V2_RESP_LEN,
};
use super::{Result, WireError};
use crate::id::Uid;

/// The first byte of every link message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Hello = 1,
    Data = 2,
    Icc = 3,
    Keepalive = 4,
    Init = 5,
    Resp = 6,
    Sealed = 7,
    /// A frame with its checksum still to finish (csum start and offset in front of it).
    DataPartial = 8,
    /// One piece of a larger inner message.
    Fragment = 9,
    /// A responder under load answers an init with a cookie instead of a response.
    CookieReply = 10,
    /// The sender is shutting down this link (tincan stopping): down at once, no timeout.
    Close = 11,
}

impl MessageType {
    pub fn from_u8(b: u8) -> Option<MessageType> {
        Some(match b {
            1 => MessageType::Hello,
            2 => MessageType::Data,
            3 => MessageType::Icc,
            4 => MessageType::Keepalive,
            5 => MessageType::Init,
            6 => MessageType::Resp,
            7 => MessageType::Sealed,
            8 => MessageType::DataPartial,
            9 => MessageType::Fragment,
            10 => MessageType::CookieReply,
            11 => MessageType::Close,
            _ => return None,
        })
    }

    /// The type of a datagram, from its first byte.
    pub fn of(datagram: &[u8]) -> Option<MessageType> {
        datagram.first().copied().and_then(MessageType::from_u8)
    }

    /// Messages of encrypted links (`"sec": true`).
    pub fn is_secure(self) -> bool {
        matches!(
            self,
            MessageType::Init | MessageType::Resp | MessageType::Sealed | MessageType::CookieReply
        )
    }

    /// The inner types a sealed message may carry, and the plaintext types with a header.
    pub fn has_counter_header(self) -> bool {
        matches!(
            self,
            MessageType::Data
                | MessageType::Icc
                | MessageType::Keepalive
                | MessageType::DataPartial
                | MessageType::Fragment
                | MessageType::Close
        )
    }
}

/// Byte ranges of every message, by type.
mod field {
    use core::ops::Range;
    pub type Field = Range<usize>;

    pub const TYPE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const RESERVED: Field = 2..4;

    pub mod hello {
        use super::Field;
        pub const SENDER_IDX: Field = 4..8;
        pub const SENDER_UID: Field = 8..28;
        pub const RECEIVER_UID: Field = 28..48;
        pub const BOOT_ID: Field = 48..56;
    }

    /// Data, ICC, keepalive and sealed messages share this header.
    pub mod counted {
        use super::Field;
        pub const RECEIVER_IDX: Field = 4..8;
        pub const COUNTER: Field = 8..16;
        pub const PAYLOAD: usize = 16;
    }
}

/// Hello flag: the sender has not heard from the receiver yet and wants a hello back.
pub const FLAG_REPLY_WANTED: u8 = 0x01;
pub const UID_LEN: usize = Uid::LEN;
/// Bytes in front of the payload in a data, ICC, keepalive or sealed message.
pub const DATA_HEADER_LEN: usize = field::counted::PAYLOAD;
pub const HELLO_LEN: usize = field::hello::BOOT_ID.end;
/// AEAD tag at the end of a sealed message and of the Noise handshake parts.
pub const TAG_LEN: usize = 16;
/// The Noise prologue of every handshake: the version of the encrypted link format. A peer
/// with another one fails the handshake (the prologue is in the handshake hash).
pub const PROLOGUE: &[u8] = b"ipop-switch/3";
/// Cipher bits of the init's offer and the response's choice.
pub const CIPHER_AES_256_GCM: u8 = 0x01;
pub const CIPHER_CHACHA20_POLY1305: u8 = 0x02;
/// Offer bit: the initiator's CPU runs AES-256-GCM in hardware (AES-NI and carry-less
/// multiply), so AES-256-GCM is the better choice when the responder's does too.
pub const OFFER_AES_HARDWARE: u8 = 0x80;
/// Byte ranges of the init's Noise payload: the sender's uid, its wall clock (ms, u64 LE), its
/// cipher offer.
pub mod init_payload {
    use super::field::Field;
    pub const UID: Field = 0..20;
    pub const TIME: Field = 20..28;
    pub const OFFER: usize = 28;
}
/// The init's Noise payload: uid, time, cipher offer.
pub const INIT_PAYLOAD_LEN: usize = init_payload::OFFER + 1;
/// The response's Noise payload: the chosen cipher's bit.
pub const RESP_PAYLOAD_LEN: usize = 1;
/// All bytes a sealed message adds to its payload: header, inner type, tag.
pub const SEALED_OVERHEAD: usize = DATA_HEADER_LEN + 1 + TAG_LEN;
/// The meta of a type-8 inner message: csum start u16, csum offset u16.
pub const CSUM_META_LEN: usize = 4;
/// The meta of a fragment: id u32, total u32, index u8, count u8.
pub const FRAG_META_LEN: usize = 10;
/// Largest inner message (type, meta and payload) that fragments carry: a 64 KiB frame with
/// its inner header and an 802.1Q tag, with room to spare.
pub const MAX_INNER_LEN: usize = 65_600;

/// Writes the csum meta of a type-8 message (`buf` holds at least [`CSUM_META_LEN`] bytes).
pub fn emit_csum_meta(buf: &mut [u8], start: u16, offset: u16) -> Result<()> {
    if buf.len() < CSUM_META_LEN {
        return Err(WireError::Truncated);
    }
    buf[0..2].copy_from_slice(&start.to_le_bytes());
    buf[2..4].copy_from_slice(&offset.to_le_bytes());
    Ok(())
}

/// Reads the csum meta of a type-8 message body: `(start, offset, frame)`. The checksum field
/// (2 bytes at `start + offset`) must lie inside the frame.
pub fn parse_csum_meta(b: &[u8]) -> Result<(u16, u16, &[u8])> {
    if b.len() < CSUM_META_LEN {
        return Err(WireError::Truncated);
    }
    let start = u16::from_le_bytes([b[0], b[1]]);
    let offset = u16::from_le_bytes([b[2], b[3]]);
    let frame = &b[CSUM_META_LEN..];
    if start as usize + offset as usize + 2 > frame.len() {
        return Err(WireError::Malformed);
    }
    Ok((start, offset, frame))
}

/// The meta of a fragment (inner type 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragHeader {
    pub id: u32,
    /// Length of the whole inner message.
    pub total: u32,
    pub index: u8,
    pub count: u8,
}

impl FragHeader {
    /// Reads the header of a fragment body; returns it and the piece.
    pub fn parse(b: &[u8]) -> Result<(FragHeader, &[u8])> {
        if b.len() < FRAG_META_LEN {
            return Err(WireError::Truncated);
        }
        let h = FragHeader {
            id: u32_at(b, 0..4),
            total: u32_at(b, 4..8),
            index: b[8],
            count: b[9],
        };
        Ok((h, &b[FRAG_META_LEN..]))
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < FRAG_META_LEN {
            return Err(WireError::Truncated);
        }
        buf[0..4].copy_from_slice(&self.id.to_le_bytes());
        buf[4..8].copy_from_slice(&self.total.to_le_bytes());
        buf[8] = self.index;
        buf[9] = self.count;
        Ok(())
    }

    /// The bytes of the inner message this piece holds, or None if the header is inconsistent
    /// (fewer than 2 pieces, index out of range, total out of range, an empty last piece).
    pub fn piece(&self) -> Option<core::ops::Range<usize>> {
        let (total, count, index) = (
            self.total as usize,
            self.count as usize,
            self.index as usize,
        );
        if count < 2 || index >= count || total < count || total > MAX_INNER_LEN {
            return None;
        }
        let size = total.div_ceil(count);
        if (count - 1) * size >= total {
            return None;
        }
        let start = index * size;
        Some(start..(start + size).min(total))
    }
}

fn u32_at(b: &[u8], f: field::Field) -> u32 {
    u32::from_le_bytes(b[f].try_into().expect("4-byte field"))
}

fn u64_at(b: &[u8], f: field::Field) -> u64 {
    u64::from_le_bytes(b[f].try_into().expect("8-byte field"))
}

fn preamble(buf: &mut [u8], t: MessageType, flags: u8) {
    buf[field::TYPE] = t as u8;
    buf[field::FLAGS] = flags;
    buf[field::RESERVED].fill(0);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub reply_wanted: bool,
    pub sender_idx: u32,
    pub sender_uid: Uid,
    pub receiver_uid: Uid,
    pub boot_id: u64,
}

/// A parsed plaintext link message (types 1-4); payloads borrow from the datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkMessage<'a> {
    Hello(Hello),
    Data {
        receiver_idx: u32,
        counter: u64,
        frame: &'a [u8],
    },
    Icc {
        receiver_idx: u32,
        counter: u64,
        payload: &'a [u8],
    },
    Keepalive {
        receiver_idx: u32,
        counter: u64,
    },
    /// Type 8, 9 or 11: a body that starts with inner meta (see the module's table; a close has
    /// an empty body).
    WithMeta {
        msg_type: MessageType,
        receiver_idx: u32,
        counter: u64,
        body: &'a [u8],
    },
}

impl<'a> LinkMessage<'a> {
    pub fn parse(b: &'a [u8]) -> Result<LinkMessage<'a>> {
        if b.len() < 4 {
            return Err(WireError::Truncated);
        }
        match MessageType::from_u8(b[field::TYPE]) {
            Some(MessageType::Hello) => {
                if b.len() != HELLO_LEN {
                    return Err(if b.len() < HELLO_LEN {
                        WireError::Truncated
                    } else {
                        WireError::Malformed
                    });
                }
                let uid = |f: field::Field| Uid(b[f].try_into().expect("20-byte field"));
                Ok(LinkMessage::Hello(Hello {
                    reply_wanted: b[field::FLAGS] & FLAG_REPLY_WANTED != 0,
                    sender_idx: u32_at(b, field::hello::SENDER_IDX),
                    sender_uid: uid(field::hello::SENDER_UID),
                    receiver_uid: uid(field::hello::RECEIVER_UID),
                    boot_id: u64_at(b, field::hello::BOOT_ID),
                }))
            }
            Some(t @ (MessageType::DataPartial | MessageType::Fragment | MessageType::Close)) => {
                let h = CountedHeader::parse(b)?;
                Ok(LinkMessage::WithMeta {
                    msg_type: t,
                    receiver_idx: h.receiver_idx,
                    counter: h.counter,
                    body: &b[DATA_HEADER_LEN..],
                })
            }
            Some(t @ (MessageType::Data | MessageType::Icc | MessageType::Keepalive)) => {
                let h = CountedHeader::parse(b)?;
                let rest = &b[DATA_HEADER_LEN..];
                let (receiver_idx, counter) = (h.receiver_idx, h.counter);
                Ok(match t {
                    MessageType::Data => LinkMessage::Data {
                        receiver_idx,
                        counter,
                        frame: rest,
                    },
                    MessageType::Icc => LinkMessage::Icc {
                        receiver_idx,
                        counter,
                        payload: rest,
                    },
                    _ => {
                        if !rest.is_empty() {
                            return Err(WireError::Malformed);
                        }
                        LinkMessage::Keepalive {
                            receiver_idx,
                            counter,
                        }
                    }
                })
            }
            _ => Err(WireError::Malformed),
        }
    }
}

impl Hello {
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        if buf.len() < HELLO_LEN {
            return Err(WireError::Truncated);
        }
        let flags = if self.reply_wanted {
            FLAG_REPLY_WANTED
        } else {
            0
        };
        preamble(buf, MessageType::Hello, flags);
        buf[field::hello::SENDER_IDX].copy_from_slice(&self.sender_idx.to_le_bytes());
        buf[field::hello::SENDER_UID].copy_from_slice(&self.sender_uid.0);
        buf[field::hello::RECEIVER_UID].copy_from_slice(&self.receiver_uid.0);
        buf[field::hello::BOOT_ID].copy_from_slice(&self.boot_id.to_le_bytes());
        Ok(HELLO_LEN)
    }
}

/// The 16-byte header of data, ICC, keepalive and sealed messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountedHeader {
    pub msg_type: MessageType,
    pub receiver_idx: u32,
    pub counter: u64,
}

impl CountedHeader {
    pub fn parse(b: &[u8]) -> Result<CountedHeader> {
        if b.len() < DATA_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let msg_type = MessageType::from_u8(b[field::TYPE]).ok_or(WireError::Malformed)?;
        if !(msg_type.has_counter_header() || msg_type == MessageType::Sealed) {
            return Err(WireError::Malformed);
        }
        Ok(CountedHeader {
            msg_type,
            receiver_idx: u32_at(b, field::counted::RECEIVER_IDX),
            counter: u64_at(b, field::counted::COUNTER),
        })
    }

    /// Writes the header in front of a payload that the caller has already placed at
    /// `buf[DATA_HEADER_LEN..]`: the payload is never copied.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if buf.len() < DATA_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if !(self.msg_type.has_counter_header() || self.msg_type == MessageType::Sealed) {
            return Err(WireError::Malformed);
        }
        preamble(buf, self.msg_type, 0);
        buf[field::counted::RECEIVER_IDX].copy_from_slice(&self.receiver_idx.to_le_bytes());
        buf[field::counted::COUNTER].copy_from_slice(&self.counter.to_le_bytes());
        Ok(())
    }
}

/// Writes the header of a plaintext data, ICC or keepalive message (see [`CountedHeader::emit`]).
pub fn emit_header(
    buf: &mut [u8],
    msg_type: MessageType,
    receiver_idx: u32,
    counter: u64,
) -> Result<()> {
    if !msg_type.has_counter_header() {
        return Err(WireError::Malformed);
    }
    CountedHeader {
        msg_type,
        receiver_idx,
        counter,
    }
    .emit(buf)
}

/// A sealed message (type 7): the counted header, then the AEAD ciphertext and tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedView<'a> {
    pub receiver_idx: u32,
    pub counter: u64,
    pub ciphertext: &'a [u8],
}

impl<'a> SealedView<'a> {
    pub fn parse(b: &'a [u8]) -> Result<SealedView<'a>> {
        if b.len() < SEALED_OVERHEAD {
            return Err(WireError::Truncated);
        }
        let h = CountedHeader::parse(b)?;
        if h.msg_type != MessageType::Sealed {
            return Err(WireError::Malformed);
        }
        Ok(SealedView {
            receiver_idx: h.receiver_idx,
            counter: h.counter,
            ciphertext: &b[DATA_HEADER_LEN..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_bytes() {
        let bytes = [
            2, 0, 0, 0, // data
            0x07, 0x00, 0x01, 0x00, // receiver idx 0x00010007
            0x2a, 0, 0, 0, 0, 0, 0, 0, // counter 42
            0xff, 0xff, // frame bytes
        ];
        assert_eq!(
            LinkMessage::parse(&bytes).unwrap(),
            LinkMessage::Data {
                receiver_idx: 0x0001_0007,
                counter: 42,
                frame: &[0xff, 0xff]
            }
        );
        let mut out = bytes;
        out[..16].fill(0);
        emit_header(&mut out, MessageType::Data, 0x0001_0007, 42).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn hello_round_trip() {
        let h = Hello {
            reply_wanted: true,
            sender_idx: 9,
            sender_uid: Uid([0xab; 20]),
            receiver_uid: Uid([0xcd; 20]),
            boot_id: 0x0102_0304_0506_0708,
        };
        let mut buf = [0u8; 64];
        let n = h.emit(&mut buf).unwrap();
        assert_eq!(n, HELLO_LEN);
        assert_eq!(&buf[..4], &[1, 1, 0, 0]);
        assert_eq!(&buf[48..56], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(
            LinkMessage::parse(&buf[..n]).unwrap(),
            LinkMessage::Hello(h)
        );
    }

    #[test]
    fn keepalive_and_icc() {
        let mut buf = [0u8; 20];
        emit_header(&mut buf, MessageType::Keepalive, 3, 1).unwrap();
        assert_eq!(
            LinkMessage::parse(&buf[..16]).unwrap(),
            LinkMessage::Keepalive {
                receiver_idx: 3,
                counter: 1
            }
        );
        assert_eq!(LinkMessage::parse(&buf).unwrap_err(), WireError::Malformed);
        buf[16..].copy_from_slice(b"{}  ");
        emit_header(&mut buf, MessageType::Icc, 3, 2).unwrap();
        assert!(matches!(
            LinkMessage::parse(&buf).unwrap(),
            LinkMessage::Icc {
                payload: b"{}  ",
                counter: 2,
                ..
            }
        ));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(LinkMessage::parse(&[]).unwrap_err(), WireError::Truncated);
        assert_eq!(
            LinkMessage::parse(&[2, 0, 0]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            LinkMessage::parse(&[2; 15]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            LinkMessage::parse(&[10; 40]).unwrap_err(),
            WireError::Malformed
        );
        assert_eq!(
            LinkMessage::parse(&[1; 55]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            LinkMessage::parse(&[1; 57]).unwrap_err(),
            WireError::Malformed
        );
        assert!(emit_header(&mut [0u8; 15], MessageType::Data, 0, 0).is_err());
        assert!(emit_header(&mut [0u8; 16], MessageType::Hello, 0, 0).is_err());
    }

    #[test]
    fn parse_never_panics_on_any_prefix() {
        let mut buf = [0u8; 80];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 37) as u8;
        }
        for t in 0..=5u8 {
            buf[0] = t;
            for n in 0..buf.len() {
                let _ = LinkMessage::parse(&buf[..n]);
            }
        }
    }

    #[test]
    fn sealed_view() {
        let mut sealed = [0u8; SEALED_OVERHEAD + 4];
        CountedHeader {
            msg_type: MessageType::Sealed,
            receiver_idx: 3,
            counter: 5,
        }
        .emit(&mut sealed)
        .unwrap();
        let v = SealedView::parse(&sealed).unwrap();
        assert_eq!((v.receiver_idx, v.counter, v.ciphertext.len()), (3, 5, 21));
        assert_eq!(
            SealedView::parse(&sealed[..SEALED_OVERHEAD - 1]),
            Err(WireError::Truncated)
        );
        // A plaintext data message is not a sealed one, and vice versa.
        sealed[0] = 2;
        assert_eq!(SealedView::parse(&sealed), Err(WireError::Malformed));
        assert_eq!(MessageType::of(&[7]), Some(MessageType::Sealed));
        assert!(MessageType::Sealed.is_secure() && !MessageType::Data.is_secure());
        assert_eq!(MessageType::of(&[10]), Some(MessageType::CookieReply));
        assert!(MessageType::CookieReply.is_secure());
        assert_eq!(MessageType::of(&[12]), None);
    }
}
