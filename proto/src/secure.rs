//! Authenticated, encrypted links: Noise IK (X25519, ChaCha20-Poly1305, BLAKE2s) through the
//! `snow` crate, sans-IO. Each node has a static key; a peer is pinned by the fingerprint of
//! its static public key. The initiator knows the responder's key in advance (IK), so one
//! round trip sets up a session with forward secrecy (ephemeral keys on both sides).
//!
//! This module is the cryptography only; the layout of the init, response and sealed messages
//! is in [`crate::wire::link`]. The sealed message's counter is the AEAD nonce, checked against
//! a sliding replay window after decryption succeeds. The init's time (sender's wall clock, ms)
//! must grow per peer, so a captured init replayed later cannot reset a session. Inner types
//! reuse the plaintext link types: data, ICC, keepalive.
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
    CountedHeader, InitView, MessageType, RespView, SealedView, DATA_HEADER_LEN, INIT_PAYLOAD_LEN,
    TAG_LEN, UID_LEN,
};
use snow::{HandshakeState, StatelessTransportState};

pub use crate::wire::link::{INIT_LEN, RESP_LEN, SEALED_OVERHEAD as DATA_OVERHEAD};

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
}

impl std::fmt::Display for SecureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SecureError::Malformed => "malformed",
            SecureError::Auth => "authentication failed",
            SecureError::Replay => "replayed",
            SecureError::UnknownSession => "unknown session",
            SecureError::UnknownPeer => "key not pinned",
        })
    }
}

/// Bytes of the Noise part of a handshake message of `len` bytes with an `header`-byte header.
const fn noise_len(len: usize, header: usize) -> usize {
    len - header
}

fn params() -> snow::params::NoiseParams {
    NOISE_PARAMS.parse().expect("valid Noise parameters")
}

/// A node's static X25519 key pair.
#[derive(Clone)]
pub struct StaticKey {
    private: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKey({})", self.fingerprint())
    }
}

impl StaticKey {
    pub fn generate() -> StaticKey {
        let kp = snow::Builder::new(params())
            .generate_keypair()
            .expect("the OS random source works");
        Self::from_private(&kp.private).expect("32-byte key")
    }

    pub fn from_private(private: &[u8]) -> Option<StaticKey> {
        use snow::resolvers::CryptoResolver;
        let private: [u8; KEY_LEN] = private.try_into().ok()?;
        let mut dh = snow::resolvers::DefaultResolver
            .resolve_dh(&snow::params::DHChoice::Curve25519)
            .expect("curve25519 is built in");
        dh.set(&private);
        let public: [u8; KEY_LEN] = dh.pubkey().try_into().ok()?;
        Some(StaticKey { private, public })
    }

    pub fn private(&self) -> &[u8; KEY_LEN] {
        &self.private
    }

    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// What the config and RPCs call `fpr`: the public key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(self.public)
    }
}

struct Session {
    local_idx: u32,
    remote_idx: u32,
    transport: StatelessTransportState,
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
    sender_idx: u32,
    hs: HandshakeState,
}

/// Reads a handshake init addressed to `key`. The caller then finds the link pinned to
/// `peer_static` and calls [`SecureLink::accept`].
pub fn read_init(key: &StaticKey, msg: &[u8]) -> Result<InitReceived, SecureError> {
    let init = InitView::parse(msg).map_err(|_| SecureError::Malformed)?;
    let mut hs = snow::Builder::new(params())
        .local_private_key(key.private())
        .and_then(|b| b.build_responder())
        .map_err(|_| SecureError::Malformed)?;
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
    let peer_uid = Uid(payload[..UID_LEN].try_into().expect("20 bytes"));
    let time = u64::from_le_bytes(
        payload[UID_LEN..INIT_PAYLOAD_LEN]
            .try_into()
            .expect("8 bytes"),
    );
    Ok(InitReceived {
        peer_static: Fingerprint(peer_static),
        peer_uid,
        time,
        sender_idx: init.sender_idx,
        hs,
    })
}

/// A data message that decrypted: its inner type, the payload length (the payload is
/// `out[1..1 + len]`), and whether it confirmed the responder's new session (the link is up
/// on it from now on, and the sender is where the handshake's initiator is).
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

/// The encrypted side of one link.
pub struct SecureLink {
    pub peer_static: Fingerprint,
    pending: Option<Pending>,
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
}

impl SecureLink {
    pub fn new(peer_static: Fingerprint) -> SecureLink {
        SecureLink {
            peer_static,
            pending: None,
            sessions: Vec::new(),
            unconfirmed: None,
            last_peer_init_time: 0,
            next_attempt: 0,
            backoff: 1_000,
            handshakes_completed: 0,
            replays: 0,
            auth_failures: 0,
            unconfirmed_dropped: 0,
        }
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
        let mut hs = snow::Builder::new(params())
            .local_private_key(key.private())
            .and_then(|b| b.remote_public_key(&self.peer_static.0))
            .and_then(|b| b.build_initiator())
            .map_err(|_| SecureError::Malformed)?;
        let mut payload = [0u8; INIT_PAYLOAD_LEN];
        payload[..UID_LEN].copy_from_slice(local_uid.as_bytes());
        payload[UID_LEN..].copy_from_slice(&time.to_le_bytes());
        let n = hs
            .write_message(&payload, noise_out)
            .map_err(|_| SecureError::Malformed)?;
        if n != noise_len(INIT_LEN, 8) {
            return Err(SecureError::Malformed);
        }
        self.pending = Some(Pending {
            hs,
            local_idx,
            sent_at: now,
        });
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(INIT_LEN)
    }

    /// Answers an init that [`read_init`] attributed to this link's pinned key: writes the
    /// response into `out` (at least [`RESP_LEN`] bytes) and keeps the new session
    /// unconfirmed, replacing an earlier unconfirmed one. Sending stays on the current session
    /// (if any) until the initiator's first message on the new one ([`decrypt`](Self::decrypt)).
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
        let noise_out = RespView::emit_header(out, local_idx, init.sender_idx)
            .map_err(|_| SecureError::Malformed)?;
        let n = init
            .hs
            .write_message(&[], noise_out)
            .map_err(|_| SecureError::Malformed)?;
        if n != noise_len(RESP_LEN, 12) {
            return Err(SecureError::Malformed);
        }
        let transport = init
            .hs
            .into_stateless_transport_mode()
            .map_err(|_| SecureError::Malformed)?;
        self.last_peer_init_time = init.time;
        let replaced = self.unconfirmed.replace(Session {
            local_idx,
            remote_idx: init.sender_idx,
            transport,
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

    /// A response to our pending init. Returns Ok once the session is installed.
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
        if p.hs.read_message(resp.noise, &mut payload).is_err() {
            self.auth_failures += 1;
            return Err(SecureError::Auth);
        }
        let p = self.pending.take().expect("checked");
        let transport =
            p.hs.into_stateless_transport_mode()
                .map_err(|_| SecureError::Malformed)?;
        let _ = p.sent_at;
        self.install(Session {
            local_idx: p.local_idx,
            remote_idx: sender_idx,
            transport,
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
    /// type byte: the forwarding path reads frames right behind that byte, so nothing is
    /// copied before encryption.
    pub fn encrypt_prefixed(
        &mut self,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SecureError> {
        let Some(s) = self.sessions.last_mut() else {
            return Err(SecureError::UnknownSession);
        };
        if plaintext.is_empty() || out.len() < plaintext.len() + DATA_HEADER_LEN + TAG_LEN {
            return Err(SecureError::Malformed);
        }
        let counter = s.tx_counter;
        s.tx_counter += 1;
        CountedHeader {
            msg_type: MessageType::Sealed,
            receiver_idx: s.remote_idx,
            counter,
        }
        .emit(out)
        .map_err(|_| SecureError::Malformed)?;
        let n = s
            .transport
            .write_message(counter, plaintext, &mut out[DATA_HEADER_LEN..])
            .map_err(|_| SecureError::Malformed)?;
        Ok(DATA_HEADER_LEN + n)
    }

    /// Decrypts a data message into `out`. The first one that arrives on the unconfirmed
    /// session confirms it: it becomes the current session, the one this side sends on.
    pub fn decrypt(&mut self, msg: &[u8], out: &mut [u8]) -> Result<Opened, SecureError> {
        let Ok(sealed) = SealedView::parse(msg) else {
            return Err(SecureError::Malformed);
        };
        let on_unconfirmed = self
            .unconfirmed
            .as_ref()
            .is_some_and(|s| s.local_idx == sealed.receiver_idx);
        let session = if on_unconfirmed {
            self.unconfirmed.as_mut()
        } else {
            self.sessions
                .iter_mut()
                .find(|s| s.local_idx == sealed.receiver_idx)
        };
        let Some(s) = session else {
            return Err(SecureError::UnknownSession);
        };
        let counter = sealed.counter;
        if !s.replay.check(counter) {
            self.replays += 1;
            return Err(SecureError::Replay);
        }
        if out.len() < msg.len() - DATA_HEADER_LEN {
            return Err(SecureError::Malformed);
        }
        let n = match s.transport.read_message(counter, sealed.ciphertext, out) {
            Ok(n) => n,
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
            inner: out[0],
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
