//! A node's static X25519 key pair: generated, loaded, and its fingerprint.

use super::{params, KEY_LEN};
use crate::id::Fingerprint;

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
