//! Authenticated, encrypted links: Noise IK (X25519, ChaCha20-Poly1305, BLAKE2s) through the
//! `snow` crate for the handshake, sans-IO. Each node has a static key; a peer is pinned by the
//! fingerprint of its static public key. The initiator knows the responder's key in advance
//! (IK), so one round trip sets up a session with forward secrecy (ephemeral keys on both
//! sides).
//!
//! Data messages are sealed and opened in place with `ring`, under the two keys the handshake
//! splits into (one per direction), with the cipher negotiated inside the handshake: the
//! initiator's init offers a set ([`CipherOffer`]), the responder's response names the one
//! chosen ([`CipherOffer::choose`]): AES-256-GCM when both CPUs run it in hardware, otherwise
//! ChaCha20-Poly1305, within what both offer. Both are Noise payloads, bound into the
//! handshake hash, so nobody on the path can change the choice.
//!
//! This module is the cryptography only; the layout of the init, response and sealed messages
//! is in [`crate::wire::link`]. The sealed message's counter is the AEAD nonce, checked against
//! a sliding replay window after decryption succeeds; its header is the associated data. The init's time (sender's wall clock, ms)
//! must grow per peer, so a captured init replayed later cannot reset a session. Inner types
//! reuse the plaintext link types: data, ICC, keepalive.
//!
//! Handshake messages also carry WireGuard's mac1 and mac2, and a responder under load answers
//! with a cookie reply: [`cookie`] (the link core decides when; see `link::handshake`).
//!
//! Key confirmation (WireGuard's rule): the responder's new session waits, unconfirmed, until
//! the first authentic message from the initiator arrives on it; only then does it send on it.
//! Until then it keeps sending on its previous session, if any. An init replayed where the
//! time check cannot see it (the responder restarted, trimmed the link or changed its key, so
//! it forgot the peer's last init time) yields such a session, which never confirms: the
//! session's keys need the initiator's ephemeral private key, which a replayer lacks. So
//! nothing needs persisting across restarts: a replayed init costs one response datagram and
//! one unconfirmed slot, never a confirmed session.

use crate::id::{Fingerprint, Millis, Uid};
use crate::replay::ReplayWindow;
use crate::wire::link::{
    init_payload, CookieReplyView, CountedHeader, InitView, MessageType, RespView, SealedView,
    DATA_HEADER_LEN, INIT_PAYLOAD_LEN, PROLOGUE, RESP_PAYLOAD_LEN, TAG_LEN,
};
use crate::wire::link_handshake::{INIT_NOISE_LEN, RESP_NOISE_LEN};
use cookie::PeerMacs;
use ring::aead::Aad;
use snow::HandshakeState;

pub use crate::wire::link::{INIT_LEN, RESP_LEN, SEALED_OVERHEAD as DATA_OVERHEAD};

mod cipher;
pub mod cookie;
mod static_key;

pub use cipher::{aes_hardware, Cipher, CipherOffer, CipherSetting};
use cipher::{nonce, SessionKeys};
pub use static_key::StaticKey;

pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
pub const KEY_LEN: usize = 32;

/// Sessions kept per link: the current one and the ones it replaces, for in-flight traffic.
const MAX_SESSIONS: usize = 3;
/// Handshake retries: 1 s, doubling, at most this.
const MAX_BACKOFF: Millis = 8_000;
/// A responder's session not confirmed within this is dropped: the initiator confirms at once
/// (a keepalive) and keeps sending, so a session this old was never going to be confirmed.
const CONFIRM_WITHIN: Millis = MAX_BACKOFF * 2;
/// Start a new session when the current one has carried this many messages.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureError {
    /// Not a message of this format (length, type).
    Malformed,
    /// Failed authentication: wrong key, flipped bits, forged.
    Auth,
    /// Authentic but seen before (counter) or older than the last (init time).
    Replay,
    /// No session with that index (expired, or from an earlier run of the peer).
    UnknownSession,
    /// An init from a static key that is not pinned for any link.
    UnknownPeer,
    /// The peers offer no cipher in common (each one's `"cipher"` key), or a response chose
    /// one we did not offer.
    NoCommonCipher,
}

impl std::fmt::Display for SecureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecureError::Malformed => "malformed",
            SecureError::Auth => "authentication failed",
            SecureError::Replay => "replayed",
            SecureError::UnknownSession => "unknown session",
            SecureError::UnknownPeer => "key not pinned",
            SecureError::NoCommonCipher => "no cipher in common",
        })
    }
}

fn params() -> snow::params::NoiseParams {
    NOISE_PARAMS.parse().expect("valid Noise parameters")
}

/// A Noise IK handshake state with this format's parameters and prologue.
fn handshake(
    key: &StaticKey,
    remote: Option<&Fingerprint>,
    prologue: &[u8],
) -> Result<HandshakeState, SecureError> {
    let b = snow::Builder::new(params())
        .prologue(prologue)
        .and_then(|b| b.local_private_key(key.private()))
        .map_err(|_| SecureError::Malformed)?;
    match remote {
        Some(r) => b.remote_public_key(&r.0).and_then(|b| b.build_initiator()),
        None => b.build_responder(),
    }
    .map_err(|_| SecureError::Malformed)
}

struct Session {
    local_idx: u32,
    remote_idx: u32,
    keys: SessionKeys,
    created: Millis,
    tx_counter: u64,
    replay: ReplayWindow,
    initiator: bool,
}

struct Pending {
    hs: HandshakeState,
    local_idx: u32,
    sent_at: Millis,
}

/// What an init carries once decrypted: who sent it and the state to answer it with.
pub struct InitReceived {
    pub peer_static: Fingerprint,
    pub peer_uid: Uid,
    pub time: u64,
    /// The ciphers the initiator offers.
    pub offer: CipherOffer,
    sender_idx: u32,
    hs: HandshakeState,
}

/// Reads a handshake init addressed to `key`. The caller then finds the link pinned to
/// `peer_static` and calls [`SecureLink::accept`].
pub fn read_init(key: &StaticKey, msg: &[u8]) -> Result<InitReceived, SecureError> {
    read_init_with(key, msg, PROLOGUE)
}

fn read_init_with(
    key: &StaticKey,
    msg: &[u8],
    prologue: &[u8],
) -> Result<InitReceived, SecureError> {
    let init = InitView::parse(msg).map_err(|_| SecureError::Malformed)?;
    let mut hs = handshake(key, None, prologue)?;
    let mut payload = [0u8; 64];
    let n = hs
        .read_message(init.noise, &mut payload)
        .map_err(|_| SecureError::Auth)?;
    if n != INIT_PAYLOAD_LEN {
        return Err(SecureError::Malformed);
    }
    let peer_static: [u8; KEY_LEN] = hs
        .get_remote_static()
        .and_then(|s| s.try_into().ok())
        .ok_or(SecureError::Malformed)?;
    let peer_uid = Uid(payload[init_payload::UID].try_into().expect("20 bytes"));
    let time = u64::from_le_bytes(payload[init_payload::TIME].try_into().expect("8 bytes"));
    Ok(InitReceived {
        peer_static: Fingerprint(peer_static),
        peer_uid,
        time,
        offer: CipherOffer::from_byte(payload[init_payload::OFFER]),
        sender_idx: init.sender_idx,
        hs,
    })
}

/// A data message that decrypted: its inner type, the payload length (the payload is
/// `out[1..1 + len]` after [`SecureLink::decrypt`], `msg[DATA_HEADER_LEN + 1..][..len]` after
/// [`SecureLink::decrypt_in_place`]), and whether it confirmed the responder's new session
/// (the link is up on it from now on, and the sender is where the handshake's initiator is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub inner: u8,
    pub len: usize,
    pub confirmed: bool,
}

/// Where a sealed message's session index is, without decrypting: for the receive path to find
/// the link.
pub fn data_receiver_idx(msg: &[u8]) -> Option<u32> {
    SealedView::parse(msg).ok().map(|v| v.receiver_idx)
}

/// The receiver index of a response message.
pub fn resp_receiver_idx(msg: &[u8]) -> Option<u32> {
    RespView::parse(msg).ok().map(|v| v.receiver_idx)
}

/// The receiver index of a cookie reply (the sender index of the init it answers).
pub fn cookie_receiver_idx(msg: &[u8]) -> Option<u32> {
    CookieReplyView::parse(msg).ok().map(|v| v.receiver_idx)
}

/// The encrypted side of one link.
pub struct SecureLink {
    pub peer_static: Fingerprint,
    /// The ciphers this side offers (as initiator) and chooses from (as responder).
    offer: CipherOffer,
    /// [`PROLOGUE`]; another one only in tests, to play a peer of another version.
    prologue: &'static [u8],
    pending: Option<Pending>,
    /// mac1 and mac2 of our handshake messages to the peer, and its cookie.
    macs: PeerMacs,
    /// Confirmed sessions, oldest first; the last one sends.
    sessions: Vec<Session>,
    /// The session of the last init we answered, until the initiator confirms it: at most one,
    /// so replayed inits cannot pile up sessions; a newer init replaces it.
    unconfirmed: Option<Session>,
    /// The newest init time accepted from the peer. Not persisted: a new link (after a
    /// restart, trim or key change) starts from 0, and key confirmation makes the init
    /// replayed then harmless (see the module's first lines).
    last_peer_init_time: u64,
    next_attempt: Millis,
    backoff: Millis,
    pub handshakes_completed: u64,
    pub replays: u64,
    pub auth_failures: u64,
    /// Responder sessions dropped unconfirmed (replaced by a newer init, or expired): a lost
    /// confirmation, or a replayed init.
    pub unconfirmed_dropped: u64,
    /// Handshakes refused for want of a cipher both sides offer.
    pub no_common_cipher: u64,
}

impl SecureLink {
    /// A link offering what `"cipher": "auto"` offers on this CPU.
    pub fn new(peer_static: Fingerprint) -> SecureLink {
        SecureLink::with_offer(peer_static, CipherOffer::default())
    }

    pub fn with_offer(peer_static: Fingerprint, offer: CipherOffer) -> SecureLink {
        SecureLink {
            peer_static,
            offer,
            prologue: PROLOGUE,
            pending: None,
            macs: PeerMacs::new(&peer_static.0),
            sessions: Vec::new(),
            unconfirmed: None,
            last_peer_init_time: 0,
            next_attempt: 0,
            backoff: 1_000,
            handshakes_completed: 0,
            replays: 0,
            auth_failures: 0,
            unconfirmed_dropped: 0,
            no_common_cipher: 0,
        }
    }

    pub fn offer(&self) -> CipherOffer {
        self.offer
    }

    /// The cipher of the session this side sends on, if any.
    pub fn cipher(&self) -> Option<Cipher> {
        self.sessions.last().map(|s| s.keys.cipher)
    }

    /// Whether a confirmed session exists to send on.
    pub fn has_session(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Whether an answered init waits for the initiator to confirm its session.
    pub fn awaits_confirmation(&self) -> bool {
        self.unconfirmed.is_some()
    }

    /// The current session's peer index, if any.
    pub fn remote_idx(&self) -> Option<u32> {
        self.sessions.last().map(|s| s.remote_idx)
    }

    /// Whether this link owns session index `idx` (current, previous, unconfirmed or pending).
    pub fn owns_index(&self, idx: u32) -> bool {
        self.indices().any(|i| i == idx)
    }

    /// Every session index this link owns (current, previous, unconfirmed or pending).
    pub fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        let pending = self.pending.as_ref().map(|p| p.local_idx);
        let unconfirmed = self.unconfirmed.as_ref().map(|s| s.local_idx);
        let sessions = self.sessions.iter().map(|s| s.local_idx);
        sessions.chain(unconfirmed).chain(pending)
    }

    /// Drops every session (the link went down): the next exchange starts from a handshake.
    pub fn reset(&mut self) {
        self.sessions.clear();
        self.unconfirmed = None;
        self.pending = None;
        self.next_attempt = 0;
        self.backoff = 1_000;
    }

    /// Whether to send a handshake now: no session yet (with retry backoff), or the current
    /// one is due for rekeying (time or volume). `rekey_after` is in ms. Not while an init we
    /// answered awaits confirmation: the peer is setting up a session right now, and its
    /// retries replace ours; an init of ours would only double the work.
    pub fn wants_handshake(&self, now: Millis, rekey_after: Millis) -> bool {
        if now < self.next_attempt || self.unconfirmed.is_some() {
            return false;
        }
        match self.sessions.last() {
            None => true,
            Some(s) => {
                // The initiator of the current session rekeys on time; the responder only
                // later, so both rarely start at once.
                let due = if s.initiator {
                    rekey_after
                } else {
                    rekey_after + rekey_after / 4
                };
                now.saturating_sub(s.created) >= due || s.tx_counter >= REKEY_AFTER_MESSAGES
            }
        }
    }

    /// When [`wants_handshake`](Self::wants_handshake) turns true at the earliest, and when
    /// a pending handshake or an old session is due to expire: the link's next timer.
    pub fn next_handshake_at(&self, rekey_after: Millis) -> Millis {
        let rekey = match self.sessions.last() {
            None => 0,
            Some(s) if s.initiator => s.created + rekey_after,
            Some(s) => s.created + rekey_after + rekey_after / 4,
        };
        let mut next = match &self.unconfirmed {
            // No handshake of ours before it is confirmed or expires.
            Some(u) => u.created + CONFIRM_WITHIN + 1,
            None => rekey.max(self.next_attempt),
        };
        if let Some(p) = &self.pending {
            next = next.min(p.sent_at + MAX_BACKOFF * 2 + 1);
        }
        if self.sessions.len() > 1 {
            let oldest = self.sessions[0].created + rekey_after.saturating_mul(3);
            next = next.min(oldest);
        }
        next
    }

    /// Writes a handshake init into `out` (at least [`INIT_LEN`] bytes); returns its length.
    /// `time` is the sender's wall clock in ms, which must grow between inits.
    pub fn start_handshake(
        &mut self,
        key: &StaticKey,
        local_uid: &Uid,
        local_idx: u32,
        time: u64,
        now: Millis,
        out: &mut [u8],
    ) -> Result<usize, SecureError> {
        let noise_out =
            InitView::emit_header(out, local_idx).map_err(|_| SecureError::Malformed)?;
        let mut hs = handshake(key, Some(&self.peer_static), self.prologue)?;
        let mut payload = [0u8; INIT_PAYLOAD_LEN];
        payload[init_payload::UID].copy_from_slice(local_uid.as_bytes());
        payload[init_payload::TIME].copy_from_slice(&time.to_le_bytes());
        payload[init_payload::OFFER] = self.offer.to_byte();
        let n = hs
            .write_message(&payload, noise_out)
            .map_err(|_| SecureError::Malformed)?;
        if n != INIT_NOISE_LEN {
            return Err(SecureError::Malformed);
        }
        self.macs.seal_init(&mut out[..INIT_LEN], now);
        self.pending = Some(Pending {
            hs,
            local_idx,
            sent_at: now,
        });
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(INIT_LEN)
    }

    /// Answers an init that [`read_init`] attributed to this link's pinned key: chooses the
    /// cipher ([`CipherOffer::choose`]), writes the response into `out` (at least [`RESP_LEN`]
    /// bytes) and keeps the new session unconfirmed, replacing an earlier unconfirmed one.
    /// Sending stays on the current session (if any) until the initiator's first message on
    /// the new one ([`decrypt`](Self::decrypt)). Without a cipher in common: no response,
    /// [`SecureError::NoCommonCipher`].
    pub fn accept(
        &mut self,
        mut init: InitReceived,
        local_idx: u32,
        now: Millis,
        out: &mut [u8],
    ) -> Result<usize, SecureError> {
        if init.peer_static != self.peer_static {
            return Err(SecureError::UnknownPeer);
        }
        if init.time <= self.last_peer_init_time {
            self.replays += 1;
            return Err(SecureError::Replay);
        }
        let Some(cipher) = self.offer.choose(init.offer) else {
            self.no_common_cipher += 1;
            return Err(SecureError::NoCommonCipher);
        };
        let noise_out = RespView::emit_header(out, local_idx, init.sender_idx)
            .map_err(|_| SecureError::Malformed)?;
        let n = init
            .hs
            .write_message(&[cipher.bit()], noise_out)
            .map_err(|_| SecureError::Malformed)?;
        if n != RESP_NOISE_LEN || !init.hs.is_handshake_finished() {
            return Err(SecureError::Malformed);
        }
        self.macs.seal_resp(&mut out[..RESP_LEN]);
        let keys = SessionKeys::split(&mut init.hs, cipher, false);
        self.last_peer_init_time = init.time;
        let replaced = self.unconfirmed.replace(Session {
            local_idx,
            remote_idx: init.sender_idx,
            keys,
            created: now,
            tx_counter: 0,
            replay: ReplayWindow::new(),
            initiator: false,
        });
        if replaced.is_some() {
            self.unconfirmed_dropped += 1;
        }
        Ok(RESP_LEN)
    }

    /// A cookie reply to our pending init (the peer is under load): the cookie is kept for
    /// the next inits' mac2, and the next init goes out at once rather than after the backoff.
    /// Refused unless it answers the pending init (its index, and its mac1 as the AEAD's
    /// associated data).
    pub fn on_cookie_reply(&mut self, msg: &[u8], now: Millis) -> Result<(), SecureError> {
        let idx = cookie_receiver_idx(msg).ok_or(SecureError::Malformed)?;
        if self.pending.as_ref().is_none_or(|p| p.local_idx != idx) {
            return Err(SecureError::UnknownSession);
        }
        if let Err(e) = self.macs.take_reply(msg, now) {
            self.auth_failures += 1;
            return Err(e);
        }
        self.next_attempt = now;
        Ok(())
    }

    /// Whether the peer gave us a cookie that is still fresh (our inits carry mac2).
    pub fn has_cookie(&self, now: Millis) -> bool {
        self.macs.has_cookie(now)
    }

    /// A response to our pending init. Returns Ok once the session is installed, on the
    /// cipher the responder chose (one we offered, or the handshake fails).
    pub fn on_response(&mut self, msg: &[u8], now: Millis) -> Result<(), SecureError> {
        let Ok(resp) = RespView::parse(msg) else {
            return Err(SecureError::Malformed);
        };
        let Some(p) = self
            .pending
            .as_mut()
            .filter(|p| p.local_idx == resp.receiver_idx)
        else {
            return Err(SecureError::UnknownSession);
        };
        let sender_idx = resp.sender_idx;
        let mut payload = [0u8; 16];
        let n = match p.hs.read_message(resp.noise, &mut payload) {
            Ok(n) => n,
            Err(_) => {
                self.auth_failures += 1;
                return Err(SecureError::Auth);
            }
        };
        let mut p = self.pending.take().expect("checked");
        if n != RESP_PAYLOAD_LEN || !p.hs.is_handshake_finished() {
            return Err(SecureError::Malformed);
        }
        // Authentic, so the responder chose this; one we did not offer is its mistake (or a
        // peer that ignores its config), and the handshake fails rather than falls back.
        let Some(cipher) = self.offer.accepts(payload[0]) else {
            self.no_common_cipher += 1;
            return Err(SecureError::NoCommonCipher);
        };
        let keys = SessionKeys::split(&mut p.hs, cipher, true);
        self.install(Session {
            local_idx: p.local_idx,
            remote_idx: sender_idx,
            keys,
            created: now,
            tx_counter: 0,
            replay: ReplayWindow::new(),
            initiator: true,
        });
        Ok(())
    }

    /// Adds a session that completed (ours answered, or the peer's confirmed). A confirmed
    /// session goes before any we completed since answering its init (both sides initiated at
    /// once): the newer one keeps sending, so rekeys stay where they were.
    fn install(&mut self, s: Session) {
        if self.sessions.len() >= MAX_SESSIONS {
            self.sessions.remove(0);
        }
        let at = match s.initiator {
            true => self.sessions.len(),
            false => self
                .sessions
                .iter()
                .position(|x| x.created >= s.created)
                .unwrap_or(self.sessions.len()),
        };
        self.sessions.insert(at, s);
        self.handshakes_completed += 1;
        self.backoff = 1_000;
        self.next_attempt = 0;
    }

    /// Encrypts `inner_type` + `payload` into `out` as a data message on the current session;
    /// returns its length. `out` needs `payload.len() + DATA_OVERHEAD` bytes.
    pub fn encrypt(
        &mut self,
        inner_type: u8,
        payload: &[u8],
        scratch: &mut Vec<u8>,
        out: &mut [u8],
    ) -> Result<usize, SecureError> {
        scratch.clear();
        scratch.push(inner_type);
        scratch.extend_from_slice(payload);
        self.encrypt_prefixed(scratch, out)
    }

    /// Like [`encrypt`](Self::encrypt) for a plaintext that already starts with its inner
    /// type byte: the forwarding path reads frames right behind that byte. The plaintext is
    /// copied once, into `out` behind the header, and sealed there.
    pub fn encrypt_prefixed(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SecureError> {
        let len = plaintext.len();
        let Some(body) = out.get_mut(DATA_HEADER_LEN..DATA_HEADER_LEN + len) else {
            return Err(SecureError::Malformed);
        };
        body.copy_from_slice(plaintext);
        self.encrypt_in_place(out, len)
    }

    /// Seals the plaintext (inner type byte first) that the caller placed at
    /// `buf[DATA_HEADER_LEN..][..len]` where it is: writes the header in front and the tag
    /// behind it; returns the message length (`len + DATA_HEADER_LEN + TAG_LEN`, at most
    /// `buf.len()`).
    pub fn encrypt_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SecureError> {
        let Some(s) = self.sessions.last_mut() else {
            return Err(SecureError::UnknownSession);
        };
        let total = DATA_HEADER_LEN + len + TAG_LEN;
        if len == 0 || buf.len() < total {
            return Err(SecureError::Malformed);
        }
        let counter = s.tx_counter;
        s.tx_counter += 1;
        CountedHeader {
            msg_type: MessageType::Sealed,
            receiver_idx: s.remote_idx,
            counter,
        }
        .emit(buf)
        .map_err(|_| SecureError::Malformed)?;
        let (header, body) = buf[..total].split_at_mut(DATA_HEADER_LEN);
        let (plain, tag_out) = body.split_at_mut(len);
        let tag = s
            .keys
            .tx
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*header), plain)
            .map_err(|_| SecureError::Malformed)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(total)
    }

    /// Decrypts a data message into `out` (at least `msg.len() - DATA_HEADER_LEN` bytes: the
    /// ciphertext is copied there once and opened in place). The first one that arrives on the
    /// unconfirmed session confirms it: it becomes the current session, the one this side
    /// sends on.
    pub fn decrypt(&mut self, msg: &[u8], out: &mut [u8]) -> Result<Opened, SecureError> {
        let Ok(sealed) = SealedView::parse(msg) else {
            return Err(SecureError::Malformed);
        };
        let Some(body) = out.get_mut(..sealed.ciphertext.len()) else {
            return Err(SecureError::Malformed);
        };
        body.copy_from_slice(sealed.ciphertext);
        self.open(&msg[..DATA_HEADER_LEN], body)
    }

    /// Like [`decrypt`](Self::decrypt), opening the message where it is: the plaintext (inner
    /// type first) is then at `msg[DATA_HEADER_LEN..]`.
    pub fn decrypt_in_place(&mut self, msg: &mut [u8]) -> Result<Opened, SecureError> {
        if SealedView::parse(msg).is_err() {
            return Err(SecureError::Malformed);
        }
        let (header, body) = msg.split_at_mut(DATA_HEADER_LEN);
        self.open(header, body)
    }

    /// Opens `body` (ciphertext and tag) in place, `header` (a valid sealed header) being the
    /// associated data; the plaintext is then at the front of `body`.
    fn open(&mut self, header: &[u8], body: &mut [u8]) -> Result<Opened, SecureError> {
        let h = CountedHeader::parse(header).map_err(|_| SecureError::Malformed)?;
        let on_unconfirmed = self
            .unconfirmed
            .as_ref()
            .is_some_and(|s| s.local_idx == h.receiver_idx);
        let session = if on_unconfirmed {
            self.unconfirmed.as_mut()
        } else {
            self.sessions
                .iter_mut()
                .find(|s| s.local_idx == h.receiver_idx)
        };
        let Some(s) = session else {
            return Err(SecureError::UnknownSession);
        };
        let counter = h.counter;
        if !s.replay.check(counter) {
            self.replays += 1;
            return Err(SecureError::Replay);
        }
        let n = match s
            .keys
            .rx
            .open_in_place(nonce(counter), Aad::from(header), body)
        {
            Ok(plain) => plain.len(),
            Err(_) => {
                self.auth_failures += 1;
                return Err(SecureError::Auth);
            }
        };
        s.replay.accept(counter);
        if n == 0 {
            return Err(SecureError::Malformed);
        }
        if on_unconfirmed {
            let s = self.unconfirmed.take().expect("found above");
            self.install(s);
        }
        Ok(Opened {
            inner: body[0],
            len: n - 1,
            confirmed: on_unconfirmed,
        })
    }

    /// Drops sessions older than `reject_after` ms, except the newest while no other exists
    /// (traffic never stops because a rekey is late; the link's liveness decides).
    pub fn expire(&mut self, now: Millis, reject_after: Millis) {
        let newest = self.sessions.len().saturating_sub(1);
        let mut i = 0;
        self.sessions.retain(|s| {
            let keep = i == newest || now.saturating_sub(s.created) < reject_after;
            i += 1;
            keep
        });
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_sub(p.sent_at) > MAX_BACKOFF * 2)
        {
            self.pending = None;
        }
        if self
            .unconfirmed
            .as_ref()
            .is_some_and(|s| now.saturating_sub(s.created) > CONFIRM_WITHIN)
        {
            self.unconfirmed = None;
            self.unconfirmed_dropped += 1;
        }
    }
}

#[cfg(test)]
#[path = "secure_tests.rs"]
mod tests;
