//! The handshake messages of encrypted links (version 3): init (type 5), response (type 6) and
//! cookie reply (type 10). Layouts after the 4-byte preamble (integers little-endian):
//!
//! | type | name         | layout after the preamble                                         |
//! |------|--------------|-------------------------------------------------------------------|
//! | 5    | init         | sender_idx u32, Noise IK message 1 (125 B), mac1 16 B, mac2 16 B  |
//! | 6    | resp         | sender_idx u32, receiver_idx u32, Noise IK message 2 (49 B), mac1 |
//! |      |              | 16 B, mac2 16 B                                                   |
//! | 10   | cookie reply | receiver_idx u32 (the init's sender_idx), nonce 24 B, encrypted   |
//! |      |              | cookie 16 B + tag 16 B                                            |
//!
//! mac1 and mac2 (WireGuard's, see [`crate::secure::cookie`]) are the last 32 bytes of an init
//! or response: mac1 covers every byte in front of it, mac2 every byte in front of mac2. A
//! version-2 init (133 bytes; 165 now) or response (61 bytes; 93 now) had neither: [`V2_INIT_LEN`] and
//! [`V2_RESP_LEN`] let the receiver say so.

use super::link::{MessageType, INIT_PAYLOAD_LEN, RESP_PAYLOAD_LEN, TAG_LEN};
use super::{Result, WireError};

/// Length of mac1 and of mac2 (a keyed BLAKE2s-128).
pub const MAC_LEN: usize = 16;
/// Both macs at the end of an init or response.
pub const MACS_LEN: usize = 2 * MAC_LEN;
/// Noise IK message 1: e (32), encrypted s (32 + 16), encrypted payload (29 + 16).
pub const INIT_NOISE_LEN: usize = 32 + 48 + INIT_PAYLOAD_LEN + TAG_LEN;
/// Noise IK message 2: e (32), encrypted payload (1 + 16).
pub const RESP_NOISE_LEN: usize = 32 + RESP_PAYLOAD_LEN + TAG_LEN;
/// Preamble and sender index, Noise message 1, mac1, mac2.
pub const INIT_LEN: usize = INIT_NOISE + INIT_NOISE_LEN + MACS_LEN;
/// Preamble and both indices, Noise message 2, mac1, mac2.
pub const RESP_LEN: usize = RESP_NOISE + RESP_NOISE_LEN + MACS_LEN;
/// The lengths of version 2's init and response, which had no macs.
pub const V2_INIT_LEN: usize = INIT_LEN - MACS_LEN;
pub const V2_RESP_LEN: usize = RESP_LEN - MACS_LEN;
/// A cookie: a MAC of the initiator's address under the responder's secret.
pub const COOKIE_LEN: usize = 16;
/// The cookie reply's random XChaCha20-Poly1305 nonce.
pub const COOKIE_NONCE_LEN: usize = 24;
/// Preamble, receiver index, nonce, encrypted cookie and its tag.
pub const COOKIE_REPLY_LEN: usize = COOKIE_NONCE + COOKIE_NONCE_LEN + COOKIE_LEN + TAG_LEN;

const SENDER_IDX: core::ops::Range<usize> = 4..8;
const RESP_RECEIVER_IDX: core::ops::Range<usize> = 8..12;
const INIT_NOISE: usize = 8;
const RESP_NOISE: usize = 12;
const COOKIE_RECEIVER_IDX: core::ops::Range<usize> = 4..8;
const COOKIE_NONCE: usize = 8;

fn u32_at(b: &[u8], f: core::ops::Range<usize>) -> u32 {
    u32::from_le_bytes(b[f].try_into().expect("4-byte field"))
}

/// Checks a message's exact length and type.
fn check(b: &[u8], len: usize, t: MessageType) -> Result<()> {
    if b.len() < len {
        return Err(WireError::Truncated);
    }
    if b.len() != len || b[0] != t as u8 {
        return Err(WireError::Malformed);
    }
    Ok(())
}

/// Writes the preamble of a message of type `t` (`buf` holds at least 4 bytes).
fn preamble(buf: &mut [u8], t: MessageType) {
    buf[0] = t as u8;
    buf[1..4].fill(0);
}

/// The bytes mac1 covers in an init or response of `len` bytes, and where mac1 and mac2 are.
pub fn mac_ranges(len: usize) -> (usize, core::ops::Range<usize>, core::ops::Range<usize>) {
    let m1 = len - MACS_LEN;
    (m1, m1..m1 + MAC_LEN, m1 + MAC_LEN..len)
}

/// A handshake init (type 5): the sender's index, Noise IK message 1 and the macs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitView<'a> {
    pub sender_idx: u32,
    pub noise: &'a [u8],
    pub mac1: &'a [u8],
    pub mac2: &'a [u8],
}

impl<'a> InitView<'a> {
    pub fn parse(b: &'a [u8]) -> Result<InitView<'a>> {
        check(b, INIT_LEN, MessageType::Init)?;
        let (n, m1, m2) = mac_ranges(INIT_LEN);
        Ok(InitView {
            sender_idx: u32_at(b, SENDER_IDX),
            noise: &b[INIT_NOISE..n],
            mac1: &b[m1],
            mac2: &b[m2],
        })
    }

    /// Writes the header; returns the part where Noise message 1 goes (the macs come after
    /// it, written by [`crate::secure::cookie`]).
    pub fn emit_header(buf: &mut [u8], sender_idx: u32) -> Result<&mut [u8]> {
        if buf.len() < INIT_LEN {
            return Err(WireError::Truncated);
        }
        preamble(buf, MessageType::Init);
        buf[SENDER_IDX].copy_from_slice(&sender_idx.to_le_bytes());
        Ok(&mut buf[INIT_NOISE..INIT_NOISE + INIT_NOISE_LEN])
    }
}

/// A handshake response (type 6): both indices, Noise IK message 2 and the macs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RespView<'a> {
    pub sender_idx: u32,
    pub receiver_idx: u32,
    pub noise: &'a [u8],
    pub mac1: &'a [u8],
}

impl<'a> RespView<'a> {
    pub fn parse(b: &'a [u8]) -> Result<RespView<'a>> {
        check(b, RESP_LEN, MessageType::Resp)?;
        let (n, m1, _) = mac_ranges(RESP_LEN);
        Ok(RespView {
            sender_idx: u32_at(b, SENDER_IDX),
            receiver_idx: u32_at(b, RESP_RECEIVER_IDX),
            noise: &b[RESP_NOISE..n],
            mac1: &b[m1],
        })
    }

    /// Writes the header; returns the part where Noise message 2 goes.
    pub fn emit_header(buf: &mut [u8], sender_idx: u32, receiver_idx: u32) -> Result<&mut [u8]> {
        if buf.len() < RESP_LEN {
            return Err(WireError::Truncated);
        }
        preamble(buf, MessageType::Resp);
        buf[SENDER_IDX].copy_from_slice(&sender_idx.to_le_bytes());
        buf[RESP_RECEIVER_IDX].copy_from_slice(&receiver_idx.to_le_bytes());
        Ok(&mut buf[RESP_NOISE..RESP_NOISE + RESP_NOISE_LEN])
    }
}

/// A cookie reply (type 10): sent instead of a response by a responder under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReplyView<'a> {
    /// The sender index of the init it answers.
    pub receiver_idx: u32,
    pub nonce: &'a [u8],
    /// The encrypted cookie and its tag.
    pub sealed: &'a [u8],
}

impl<'a> CookieReplyView<'a> {
    pub fn parse(b: &'a [u8]) -> Result<CookieReplyView<'a>> {
        check(b, COOKIE_REPLY_LEN, MessageType::CookieReply)?;
        Ok(CookieReplyView {
            receiver_idx: u32_at(b, COOKIE_RECEIVER_IDX),
            nonce: &b[COOKIE_NONCE..COOKIE_NONCE + COOKIE_NONCE_LEN],
            sealed: &b[COOKIE_NONCE + COOKIE_NONCE_LEN..],
        })
    }

    /// Writes the header into `buf` (at least [`COOKIE_REPLY_LEN`] bytes); returns the nonce
    /// and the part where the encrypted cookie and its tag go.
    pub fn emit_header(buf: &mut [u8], receiver_idx: u32) -> Result<(&mut [u8], &mut [u8])> {
        if buf.len() < COOKIE_REPLY_LEN {
            return Err(WireError::Truncated);
        }
        preamble(buf, MessageType::CookieReply);
        buf[COOKIE_RECEIVER_IDX].copy_from_slice(&receiver_idx.to_le_bytes());
        let rest = &mut buf[COOKIE_NONCE..COOKIE_REPLY_LEN];
        Ok(rest.split_at_mut(COOKIE_NONCE_LEN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_version_3() {
        assert_eq!((INIT_LEN, RESP_LEN, COOKIE_REPLY_LEN), (165, 93, 64));
        assert_eq!((V2_INIT_LEN, V2_RESP_LEN), (133, 61));
    }

    #[test]
    fn init_and_resp_views() {
        let mut init = [0u8; INIT_LEN];
        InitView::emit_header(&mut init, 0x0102_0304)
            .unwrap()
            .fill(0xee);
        init[INIT_LEN - 32..INIT_LEN - 16].fill(1);
        init[INIT_LEN - 16..].fill(2);
        assert_eq!(&init[..8], &[5, 0, 0, 0, 4, 3, 2, 1]);
        let v = InitView::parse(&init).unwrap();
        assert_eq!((v.sender_idx, v.noise.len()), (0x0102_0304, INIT_NOISE_LEN));
        assert!(v.noise.iter().all(|&b| b == 0xee));
        assert_eq!((v.mac1, v.mac2), (&[1u8; 16][..], &[2u8; 16][..]));
        assert_eq!(
            InitView::parse(&init[..INIT_LEN - 1]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            InitView::parse(&init[..V2_INIT_LEN]),
            Err(WireError::Truncated)
        );
        let mut resp = [0u8; RESP_LEN];
        RespView::emit_header(&mut resp, 7, 9).unwrap().fill(0xdd);
        assert_eq!(&resp[..12], &[6, 0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 0]);
        let v = RespView::parse(&resp).unwrap();
        assert_eq!((v.sender_idx, v.receiver_idx), (7, 9));
        assert_eq!(v.noise.len(), RESP_NOISE_LEN);
        assert_eq!(v.mac1, &[0u8; 16][..]);
        assert_eq!(InitView::parse(&resp), Err(WireError::Truncated));
        let mut long = [0u8; INIT_LEN + 1];
        long[..INIT_LEN].copy_from_slice(&init);
        assert_eq!(InitView::parse(&long), Err(WireError::Malformed));
    }

    #[test]
    fn cookie_reply_view() {
        let mut b = [0u8; COOKIE_REPLY_LEN];
        let (nonce, sealed) = CookieReplyView::emit_header(&mut b, 0x0a0b_0c0d).unwrap();
        nonce.fill(3);
        sealed.fill(4);
        assert_eq!(&b[..8], &[10, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a]);
        let v = CookieReplyView::parse(&b).unwrap();
        assert_eq!(v.receiver_idx, 0x0a0b_0c0d);
        assert_eq!((v.nonce, v.sealed), (&[3u8; 24][..], &[4u8; 32][..]));
        assert_eq!(CookieReplyView::parse(&b[..63]), Err(WireError::Truncated));
        b[0] = 5;
        assert_eq!(CookieReplyView::parse(&b), Err(WireError::Malformed));
        assert!(CookieReplyView::emit_header(&mut [0u8; 63], 1).is_err());
    }

    #[test]
    fn any_prefix_of_any_type_is_an_error_not_a_panic() {
        let mut buf = [0u8; 200];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 31) as u8;
        }
        for t in [5u8, 6, 10, 0, 255] {
            buf[0] = t;
            for n in 0..buf.len() {
                let _ = InitView::parse(&buf[..n]);
                let _ = RespView::parse(&buf[..n]);
                let _ = CookieReplyView::parse(&buf[..n]);
            }
        }
    }
}
