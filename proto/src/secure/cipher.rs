//! The data messages' AEAD: which ciphers exist, what a node offers and how the two sides
//! settle on one, and a session's keys (from the Noise split) with the nonce layout.

use super::KEY_LEN;
use crate::wire::link::{CIPHER_AES_256_GCM, CIPHER_CHACHA20_POLY1305, OFFER_AES_HARDWARE};
use ring::aead::{self, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use snow::HandshakeState;

/// The AEAD of a session's data messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cipher {
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl Cipher {
    pub const ALL: [Cipher; 2] = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305];

    /// As the config and `get_state` name it.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Its bit in an offer and a choice (see [`crate::wire::link`]).
    pub(super) fn bit(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => CIPHER_AES_256_GCM,
            Cipher::ChaCha20Poly1305 => CIPHER_CHACHA20_POLY1305,
        }
    }

    pub(super) fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

impl std::fmt::Display for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the `"cipher"` config key says: offer both (the default) or only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum CipherSetting {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl CipherSetting {
    pub const NAMES: [&'static str; 3] = ["auto", "aes-256-gcm", "chacha20-poly1305"];

    pub fn parse(s: &str) -> Option<CipherSetting> {
        Some(match s {
            "auto" => CipherSetting::Auto,
            "aes-256-gcm" => CipherSetting::Aes256Gcm,
            "chacha20-poly1305" => CipherSetting::ChaCha20Poly1305,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            CipherSetting::Auto => "auto",
            CipherSetting::Aes256Gcm => Cipher::Aes256Gcm.name(),
            CipherSetting::ChaCha20Poly1305 => Cipher::ChaCha20Poly1305.name(),
        }
    }
}

/// Whether this CPU runs AES-256-GCM in hardware (AES and carry-less multiply instructions).
pub fn aes_hardware() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The ciphers a node offers in its handshakes, and whether AES-256-GCM is fast on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherOffer {
    /// Cipher bits.
    pub(super) ciphers: u8,
    pub(super) aes_hardware: bool,
}

impl CipherOffer {
    /// The offer of a node configured with `setting` whose CPU does (or not) run AES-GCM in
    /// hardware.
    pub const fn new(setting: CipherSetting, aes_hardware: bool) -> CipherOffer {
        let ciphers = match setting {
            CipherSetting::Auto => CIPHER_AES_256_GCM | CIPHER_CHACHA20_POLY1305,
            CipherSetting::Aes256Gcm => CIPHER_AES_256_GCM,
            CipherSetting::ChaCha20Poly1305 => CIPHER_CHACHA20_POLY1305,
        };
        CipherOffer {
            ciphers,
            aes_hardware,
        }
    }

    /// The offer of this node with `setting`, on this CPU.
    pub fn here(setting: CipherSetting) -> CipherOffer {
        CipherOffer::new(setting, aes_hardware())
    }

    /// The offer byte of an init.
    pub fn to_byte(self) -> u8 {
        self.ciphers
            | if self.aes_hardware {
                OFFER_AES_HARDWARE
            } else {
                0
            }
    }

    /// An init's offer byte; unknown cipher bits (a later version's) are ignored.
    pub fn from_byte(b: u8) -> CipherOffer {
        CipherOffer {
            ciphers: b & (CIPHER_AES_256_GCM | CIPHER_CHACHA20_POLY1305),
            aes_hardware: b & OFFER_AES_HARDWARE != 0,
        }
    }

    /// The setting that makes this offer (an offer of nothing reads as `Auto`).
    pub fn setting(self) -> CipherSetting {
        match (
            self.offers(Cipher::Aes256Gcm),
            self.offers(Cipher::ChaCha20Poly1305),
        ) {
            (true, false) => CipherSetting::Aes256Gcm,
            (false, true) => CipherSetting::ChaCha20Poly1305,
            _ => CipherSetting::Auto,
        }
    }

    pub fn offers(self, c: Cipher) -> bool {
        self.ciphers & c.bit() != 0
    }

    /// The responder's choice between its offer (`self`) and the initiator's: a cipher both
    /// offer; AES-256-GCM only if it is the only one in common or both CPUs run it in hardware
    /// (ChaCha20-Poly1305 is faster in software). None: nothing in common.
    pub fn choose(self, initiator: CipherOffer) -> Option<Cipher> {
        let both = |c: Cipher| self.offers(c) && initiator.offers(c);
        match (both(Cipher::Aes256Gcm), both(Cipher::ChaCha20Poly1305)) {
            (true, true) if self.aes_hardware && initiator.aes_hardware => Some(Cipher::Aes256Gcm),
            (_, true) => Some(Cipher::ChaCha20Poly1305),
            (true, false) => Some(Cipher::Aes256Gcm),
            (false, false) => None,
        }
    }

    /// The cipher a response's choice byte names, if it is one cipher we offered.
    pub(super) fn accepts(self, choice: u8) -> Option<Cipher> {
        Cipher::ALL
            .into_iter()
            .find(|c| c.bit() == choice && self.offers(*c))
    }
}

impl Default for CipherOffer {
    /// `"cipher": "auto"` on this CPU.
    fn default() -> CipherOffer {
        CipherOffer::here(CipherSetting::Auto)
    }
}

impl std::fmt::Display for CipherOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Cipher::ALL
            .into_iter()
            .filter(|c| self.offers(*c))
            .map(Cipher::name)
            .collect();
        if names.is_empty() {
            f.write_str("nothing")?;
        } else {
            f.write_str(&names.join(", "))?;
        }
        if self.offers(Cipher::Aes256Gcm) && self.aes_hardware {
            f.write_str(" (AES in hardware)")?;
        }
        Ok(())
    }
}

/// A session's keys, one per direction, for its cipher.
pub(super) struct SessionKeys {
    pub(super) cipher: Cipher,
    pub(super) tx: LessSafeKey,
    pub(super) rx: LessSafeKey,
}

impl SessionKeys {
    /// From a finished handshake: Noise's split gives the initiator's sending key first.
    pub(super) fn split(hs: &mut HandshakeState, cipher: Cipher, initiator: bool) -> SessionKeys {
        let (mut k1, mut k2) = hs.dangerously_get_raw_split();
        let key = |k: &[u8; KEY_LEN]| {
            LessSafeKey::new(
                UnboundKey::new(cipher.algorithm(), k).expect("32-byte keys fit both ciphers"),
            )
        };
        let (tx, rx) = if initiator {
            (key(&k1), key(&k2))
        } else {
            (key(&k2), key(&k1))
        };
        k1.fill(0);
        k2.fill(0);
        SessionKeys { cipher, tx, rx }
    }
}

/// A sealed message's nonce: 4 zero bytes, then the counter (little-endian).
pub(super) fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}
