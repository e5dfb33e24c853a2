//! Messages between tincans over UDP: one message per datagram, a type byte first.
//!
//! Every message starts with a 4-byte preamble `[type][flags][0][0]`. After it:
//!
//! | type | name      | layout after the preamble                                        |
//! |------|-----------|------------------------------------------------------------------|
//! | 1    | hello     | sender_idx u32, sender uid 20 B, receiver uid 20 B, boot id u64  |
//! | 2    | data      | receiver_idx u32, counter u64, Ethernet frame                    |
//! | 3    | icc       | receiver_idx u32, counter u64, JSON (controller to controller)   |
//! | 4    | keepalive | receiver_idx u32, counter u64                                    |
//!
//! Integers are little-endian. `receiver_idx` is the index the receiving tincan gave the link
//! in its hello, so the receive path finds the link without hashing addresses and keeps
//! working when a NAT rebinds the sender's port. The counter is per link and per direction;
//! it is what the replay window of the encrypted links will check.

use super::{Result, WireError};

pub const TYPE_HELLO: u8 = 1;
pub const TYPE_DATA: u8 = 2;
pub const TYPE_ICC: u8 = 3;
pub const TYPE_KEEPALIVE: u8 = 4;

/// Hello flag: the sender has not heard from the receiver yet and wants a hello back.
pub const FLAG_REPLY_WANTED: u8 = 0x01;

pub const UID_LEN: usize = 20;
/// Bytes in front of the frame in a data message.
pub const DATA_HEADER_LEN: usize = 16;
pub const HELLO_LEN: usize = 4 + 4 + UID_LEN + UID_LEN + 8;

/// A node identity on the wire: the 20 raw bytes of sha1(ip4).
pub type Uid = [u8; UID_LEN];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub reply_wanted: bool,
    pub sender_idx: u32,
    pub sender_uid: Uid,
    pub receiver_uid: Uid,
    pub boot_id: u64,
}

/// A parsed link message; payloads borrow from the datagram.
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
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl<'a> LinkMessage<'a> {
    pub fn parse(b: &'a [u8]) -> Result<LinkMessage<'a>> {
        if b.len() < 4 {
            return Err(WireError::Truncated);
        }
        match b[0] {
            TYPE_HELLO => {
                if b.len() != HELLO_LEN {
                    return Err(if b.len() < HELLO_LEN {
                        WireError::Truncated
                    } else {
                        WireError::Malformed
                    });
                }
                let mut sender_uid = [0u8; UID_LEN];
                let mut receiver_uid = [0u8; UID_LEN];
                sender_uid.copy_from_slice(&b[8..28]);
                receiver_uid.copy_from_slice(&b[28..48]);
                Ok(LinkMessage::Hello(Hello {
                    reply_wanted: b[1] & FLAG_REPLY_WANTED != 0,
                    sender_idx: u32_at(b, 4),
                    sender_uid,
                    receiver_uid,
                    boot_id: u64_at(b, 48),
                }))
            }
            TYPE_DATA | TYPE_ICC | TYPE_KEEPALIVE => {
                if b.len() < DATA_HEADER_LEN {
                    return Err(WireError::Truncated);
                }
                let receiver_idx = u32_at(b, 4);
                let counter = u64_at(b, 8);
                let rest = &b[DATA_HEADER_LEN..];
                Ok(match b[0] {
                    TYPE_DATA => LinkMessage::Data {
                        receiver_idx,
                        counter,
                        frame: rest,
                    },
                    TYPE_ICC => LinkMessage::Icc {
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
        buf[0] = TYPE_HELLO;
        buf[1] = if self.reply_wanted {
            FLAG_REPLY_WANTED
        } else {
            0
        };
        buf[2] = 0;
        buf[3] = 0;
        buf[4..8].copy_from_slice(&self.sender_idx.to_le_bytes());
        buf[8..28].copy_from_slice(&self.sender_uid);
        buf[28..48].copy_from_slice(&self.receiver_uid);
        buf[48..56].copy_from_slice(&self.boot_id.to_le_bytes());
        Ok(HELLO_LEN)
    }
}

/// Writes the 16-byte header of a data, ICC or keepalive message in front of a payload that
/// the caller has already placed at `buf[DATA_HEADER_LEN..]`: the frame is never copied.
pub fn emit_header(buf: &mut [u8], msg_type: u8, receiver_idx: u32, counter: u64) -> Result<()> {
    if buf.len() < DATA_HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if !matches!(msg_type, TYPE_DATA | TYPE_ICC | TYPE_KEEPALIVE) {
        return Err(WireError::Malformed);
    }
    buf[0] = msg_type;
    buf[1] = 0;
    buf[2] = 0;
    buf[3] = 0;
    buf[4..8].copy_from_slice(&receiver_idx.to_le_bytes());
    buf[8..16].copy_from_slice(&counter.to_le_bytes());
    Ok(())
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
        emit_header(&mut out, TYPE_DATA, 0x0001_0007, 42).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn hello_round_trip() {
        let h = Hello {
            reply_wanted: true,
            sender_idx: 9,
            sender_uid: [0xab; 20],
            receiver_uid: [0xcd; 20],
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
        emit_header(&mut buf, TYPE_KEEPALIVE, 3, 1).unwrap();
        assert_eq!(
            LinkMessage::parse(&buf[..16]).unwrap(),
            LinkMessage::Keepalive {
                receiver_idx: 3,
                counter: 1
            }
        );
        assert_eq!(LinkMessage::parse(&buf).unwrap_err(), WireError::Malformed);
        buf[16..].copy_from_slice(b"{}  ");
        emit_header(&mut buf, TYPE_ICC, 3, 2).unwrap();
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
            LinkMessage::parse(&[9; 40]).unwrap_err(),
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
        assert!(emit_header(&mut [0u8; 15], TYPE_DATA, 0, 0).is_err());
        assert!(emit_header(&mut [0u8; 16], TYPE_HELLO, 0, 0).is_err());
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
}
