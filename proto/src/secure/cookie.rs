//! mac1, mac2 and cookies: WireGuard's defence against handshake floods (its paper, section
//! 5.3), so that a flood costs the responder no Diffie-Hellman work.
//!
//! - mac1 = MAC(HASH("mac1----" || responder's static public key), message up to mac1), on every
//!   init and response. Only who knows the responder's public key makes a valid one, and the
//!   responder checks it with one keyed hash before anything else.
//! - Under load, a responder answers an init without a valid mac2 with a cookie reply instead
//!   of a response: the cookie = MAC(secret, initiator's IP address and port), where the secret
//!   is random and replaced every [`SECRET_LIFETIME`], sealed with XChaCha20-Poly1305 under
//!   HASH("cookie--" || responder's static public key), a random nonce, and the init's mac1 as
//!   associated data: only who sent that init (and saw the reply at its address) can open it.
//! - The initiator keeps the cookie for [`COOKIE_LIFETIME`] and puts mac2 = MAC(cookie,
//!   message up to mac2) on its inits. A valid mac2 proves that the sender receives at its
//!   source address, so the responder then limits it per address; a spoofed flood gets no
//!   cookies and cannot pass.
//!
//! HASH is BLAKE2s-256 and MAC is keyed BLAKE2s with a 16-byte output, as in WireGuard (the
//! `blake2` crate); the cookie's AEAD is the `chacha20poly1305` crate's XChaCha20-Poly1305,
//! whose 24-byte nonces can be drawn at random without counting them.

use super::SecureError;
use crate::id::Millis;
use crate::wire::link::{CookieReplyView, COOKIE_REPLY_LEN, MAC_LEN};
use crate::wire::link_handshake::{mac_ranges, COOKIE_LEN, COOKIE_NONCE_LEN};
use blake2::digest::consts::U16;
use blake2::digest::{Digest, Mac};
use blake2::{Blake2s256, Blake2sMac};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use ring::rand::{SecureRandom, SystemRandom};
use std::net::SocketAddr;

/// The responder's cookie secret is replaced this often (WireGuard's 120 s).
pub const SECRET_LIFETIME: Millis = 120_000;
/// The initiator uses a cookie this long after it arrived; a little less than the secret's
/// lifetime, so that a cookie is not used when it can no longer be valid.
pub const COOKIE_LIFETIME: Millis = SECRET_LIFETIME - 5_000;

const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";

type Mac16 = Blake2sMac<U16>;

fn hash(label: &[u8], public: &[u8; 32]) -> [u8; 32] {
    Blake2s256::new()
        .chain_update(label)
        .chain_update(public)
        .finalize()
        .into()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut m =
        <Mac16 as blake2::digest::KeyInit>::new_from_slice(key).expect("key of 16-32 bytes");
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

/// Compares in constant time.
fn mac_ok(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut m =
        <Mac16 as blake2::digest::KeyInit>::new_from_slice(key).expect("key of 16-32 bytes");
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.verify_slice(tag).is_ok()
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    b
}

fn address_bytes(a: SocketAddr) -> Vec<u8> {
    let mut v = match a.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// What an init's mac2 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mac2 {
    /// All zeros: the initiator holds no cookie.
    Missing,
    /// Made with the cookie of the address the init came from, under the current secret.
    Valid,
    /// Anything else: another address's cookie, an expired secret's, or forged.
    Invalid,
}

/// The responder's side, one per node: checks mac1 and mac2 of what arrives and makes cookie
/// replies.
pub struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: [u8; 32],
    /// When the secret was drawn; None before the first cookie.
    secret_at: Option<Millis>,
}

impl CookieChecker {
    /// For the node whose static public key is `public`.
    pub fn new(public: &[u8; 32]) -> CookieChecker {
        CookieChecker {
            mac1_key: hash(LABEL_MAC1, public),
            cookie_key: hash(LABEL_COOKIE, public),
            secret: [0; 32],
            secret_at: None,
        }
    }

    /// Whether `msg`, an init or response of valid length, carries a valid mac1 for this node.
    pub fn mac1_ok(&self, msg: &[u8]) -> bool {
        if msg.len() < 2 * MAC_LEN {
            return false;
        }
        let (body, m1, _) = mac_ranges(msg.len());
        mac_ok(&self.mac1_key, &[&msg[..body]], &msg[m1])
    }

    /// The cookie of address `from` now, if a secret is current (none before the first cookie
    /// reply, nor once the secret expired).
    fn current_cookie(&self, from: SocketAddr, now: Millis) -> Option<[u8; COOKIE_LEN]> {
        let at = self.secret_at?;
        (now.saturating_sub(at) < SECRET_LIFETIME)
            .then(|| mac(&self.secret, &[&address_bytes(from)]))
    }

    /// What the mac2 of `init` (of valid length, with a valid mac1) from `from` says.
    pub fn mac2(&self, init: &[u8], from: SocketAddr, now: Millis) -> Mac2 {
        let (_, _, m2) = mac_ranges(init.len());
        let tag = &init[m2.clone()];
        if tag.iter().all(|&b| b == 0) {
            return Mac2::Missing;
        }
        match self.current_cookie(from, now) {
            Some(c) if mac_ok(&c, &[&init[..m2.start]], tag) => Mac2::Valid,
            _ => Mac2::Invalid,
        }
    }

    /// Writes the cookie reply to `init` (of valid length) from `from` into `out`; returns its
    /// length ([`COOKIE_REPLY_LEN`]).
    pub fn reply(
        &mut self,
        init: &[u8],
        sender_idx: u32,
        from: SocketAddr,
        now: Millis,
        out: &mut [u8],
    ) -> Result<usize, SecureError> {
        let cookie = match self.current_cookie(from, now) {
            Some(c) => c,
            None => {
                self.secret = random();
                self.secret_at = Some(now);
                self.current_cookie(from, now).expect("just drawn")
            }
        };
        let (_, m1, _) = mac_ranges(init.len());
        let (nonce, sealed) =
            CookieReplyView::emit_header(out, sender_idx).map_err(|_| SecureError::Malformed)?;
        nonce.copy_from_slice(&random::<COOKIE_NONCE_LEN>());
        let (text, tag_out) = sealed.split_at_mut(COOKIE_LEN);
        text.copy_from_slice(&cookie);
        let tag = XChaCha20Poly1305::new(&self.cookie_key.into())
            .encrypt_in_place_detached(XNonce::from_slice(nonce), &init[m1], text)
            .map_err(|_| SecureError::Malformed)?;
        tag_out.copy_from_slice(&tag);
        Ok(COOKIE_REPLY_LEN)
    }
}

/// The initiator's side, one per peer: the macs of the messages we send to that peer, and the
/// cookie it gave us.
#[derive(Clone)]
pub struct PeerMacs {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    /// The peer's cookie for our address, and when it arrived.
    cookie: Option<([u8; COOKIE_LEN], Millis)>,
    /// mac1 of our last init: a cookie reply must be bound to it.
    last_mac1: Option<[u8; MAC_LEN]>,
}

impl PeerMacs {
    /// For messages to the peer whose static public key is `peer`.
    pub fn new(peer: &[u8; 32]) -> PeerMacs {
        PeerMacs {
            mac1_key: hash(LABEL_MAC1, peer),
            cookie_key: hash(LABEL_COOKIE, peer),
            cookie: None,
            last_mac1: None,
        }
    }

    /// Writes mac1 and mac2 at the end of `msg` (an init or response of valid length); mac2
    /// is zeros unless we hold a fresh cookie from this peer and `with_cookie`. Returns mac1.
    fn write(&self, msg: &mut [u8], now: Millis, with_cookie: bool) -> [u8; MAC_LEN] {
        let (body, m1, m2) = mac_ranges(msg.len());
        let mac1 = mac(&self.mac1_key, &[&msg[..body]]);
        msg[m1].copy_from_slice(&mac1);
        let mac2 = match self.cookie {
            Some((c, at)) if with_cookie && now.saturating_sub(at) < COOKIE_LIFETIME => {
                mac(&c, &[&msg[..m2.start]])
            }
            _ => [0; MAC_LEN],
        };
        msg[m2].copy_from_slice(&mac2);
        mac1
    }

    /// The macs of an init we send; its mac1 is what the peer's cookie reply must be bound to.
    pub fn seal_init(&mut self, msg: &mut [u8], now: Millis) {
        self.last_mac1 = Some(self.write(msg, now, true));
    }

    /// The macs of a response we send (mac2 zeros: responses are never refused for load).
    pub fn seal_resp(&self, msg: &mut [u8]) {
        self.write(msg, 0, false);
    }

    /// Whether we hold a cookie from this peer that is still fresh.
    pub fn has_cookie(&self, now: Millis) -> bool {
        self.cookie
            .is_some_and(|(_, at)| now.saturating_sub(at) < COOKIE_LIFETIME)
    }

    /// A cookie reply from this peer to our last init: the cookie is kept. Refused
    /// ([`SecureError::Auth`]) unless it opens under the peer's cookie key with our last
    /// init's mac1 as associated data.
    pub fn take_reply(&mut self, msg: &[u8], now: Millis) -> Result<(), SecureError> {
        let v = CookieReplyView::parse(msg).map_err(|_| SecureError::Malformed)?;
        let Some(ad) = self.last_mac1 else {
            return Err(SecureError::UnknownSession);
        };
        let (text, tag) = v.sealed.split_at(COOKIE_LEN);
        let mut cookie = [0u8; COOKIE_LEN];
        cookie.copy_from_slice(text);
        XChaCha20Poly1305::new(&self.cookie_key.into())
            .decrypt_in_place_detached(
                XNonce::from_slice(v.nonce),
                &ad,
                &mut cookie,
                Tag::from_slice(tag),
            )
            .map_err(|_| SecureError::Auth)?;
        self.cookie = Some((cookie, now));
        Ok(())
    }
}

#[cfg(test)]
#[path = "cookie_tests.rs"]
mod tests;
