//! Identity types, parsed and validated once: a node's [`Uid`], a static key's [`Fingerprint`],
//! a link [`Candidate`] address, and the millisecond clock ([`Millis`]) every state machine of
//! this crate takes as an argument. Each has one text form (`Display` / `FromStr`), which is
//! also its JSON form (serde), so the config, the control API, signalling and the logs agree.

use sha1::{Digest, Sha1};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;

/// Milliseconds on the caller's monotonic clock. State machines never read a clock: the caller
/// passes `now` in, so timers are tested deterministically.
pub type Millis = u64;

/// Why a uid, fingerprint or candidate text was refused; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError(pub String);

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdError {}

fn hex_exact<const N: usize>(s: &str, what: &str) -> Result<[u8; N], IdError> {
    let mut out = [0u8; N];
    if s.len() != 2 * N || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(IdError(format!(
            "expected {what} of {} hex digits, got {s:?}",
            2 * N
        )));
    }
    Ok(out)
}

/// Serde through the type's text form (`Display` / `FromStr`), so a bad value's message is the
/// `FromStr` error, which says what was expected.
macro_rules! text_serde {
    ($t:ty) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

/// A node's identity: sha1 of its overlay IPv4 address as text, as the original IPOP derived
/// it. 20 bytes on the wire, 40 lowercase hex digits in text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(pub [u8; Uid::LEN]);

impl Uid {
    pub const LEN: usize = 20;

    /// The uid of the node whose `ip4` is `ip4`.
    pub fn from_ip4(ip4: Ipv4Addr) -> Uid {
        Uid(Sha1::digest(ip4.to_string().as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8; Uid::LEN] {
        &self.0
    }

    /// The first 8 hex digits, for log lines.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({self})")
    }
}

impl FromStr for Uid {
    type Err = IdError;

    /// 40 hex digits, either case.
    fn from_str(s: &str) -> Result<Uid, IdError> {
        hex_exact(&s.to_ascii_lowercase(), "a uid").map(Uid)
    }
}

pub(crate) use text_serde;

text_serde!(Uid);

/// A node's static public key (X25519), which the config and the control API call `fpr`:
/// 64 lowercase hex digits in text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; Fingerprint::LEN]);

impl Fingerprint {
    pub const LEN: usize = 32;

    pub fn as_bytes(&self) -> &[u8; Fingerprint::LEN] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = IdError;

    /// 64 hex digits, either case, surrounding white space ignored.
    fn from_str(s: &str) -> Result<Fingerprint, IdError> {
        hex_exact(&s.trim().to_ascii_lowercase(), "a key fingerprint").map(Fingerprint)
    }
}

text_serde!(Fingerprint);

/// One address at which a node's link socket may be reached, as signalled to peers:
/// `host:IP:PORT` (an address of one of its interfaces), `srflx:IP:PORT` (its NAT's public
/// address, learned with STUN) or `relay:IP:PORT` (its TURN allocation). IPv6 addresses are
/// bracketed: `host:[fd00::1]:5900`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Candidate {
    Host(SocketAddr),
    Srflx(SocketAddr),
    Relay(SocketAddr),
}

impl Candidate {
    pub fn addr(self) -> SocketAddr {
        match self {
            Candidate::Host(a) | Candidate::Srflx(a) | Candidate::Relay(a) => a,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Candidate::Host(_) => "host",
            Candidate::Srflx(_) => "srflx",
            Candidate::Relay(_) => "relay",
        }
    }

    /// Whether a peer's offer of this address may be used: not unspecified, loopback or
    /// multicast, and a real port (an offer is input from the network).
    pub fn is_usable(self) -> bool {
        let a = self.addr();
        let ip = a.ip();
        !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback()) && a.port() != 0
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.addr())
    }
}

impl FromStr for Candidate {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Candidate, IdError> {
        let bad = || {
            IdError(format!(
                "expected a candidate such as \"host:192.0.2.1:5900\" (host, srflx or relay), got {s:?}"
            ))
        };
        let (kind, addr) = s.split_once(':').ok_or_else(bad)?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
        match kind {
            "host" => Ok(Candidate::Host(addr)),
            "srflx" => Ok(Candidate::Srflx(addr)),
            "relay" => Ok(Candidate::Relay(addr)),
            _ => Err(bad()),
        }
    }
}

text_serde!(Candidate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_sha1_of_the_ip4_text_and_round_trips() {
        // sha1("10.0.3.1"), as the original computed it.
        let uid = Uid::from_ip4("10.0.3.1".parse().unwrap());
        let text = uid.to_string();
        assert_eq!(text.len(), 40);
        assert_eq!(text, hex::encode(Sha1::digest(b"10.0.3.1")));
        assert_eq!(text.parse::<Uid>().unwrap(), uid);
        assert_eq!(text.to_uppercase().parse::<Uid>().unwrap(), uid);
        let json = serde_json::to_string(&uid).unwrap();
        assert_eq!(json, format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<Uid>(&json).unwrap(), uid);
    }

    #[test]
    fn bad_uids_and_fingerprints_are_refused_with_what_was_expected() {
        for bad in ["", "abc", &"g".repeat(40), &"a".repeat(41)] {
            let e = bad.parse::<Uid>().unwrap_err();
            assert!(e.0.contains("40 hex digits"), "{e}");
        }
        let e = "abc".parse::<Fingerprint>().unwrap_err();
        assert!(
            e.0.contains("64 hex digits") && e.0.contains("\"abc\""),
            "{e}"
        );
        assert!(serde_json::from_str::<Fingerprint>("\"zz\"").is_err());
        let f: Fingerprint = format!(" {} ", "AB".repeat(32)).parse().unwrap();
        assert_eq!(f.to_string(), "ab".repeat(32));
    }

    #[test]
    fn candidates_round_trip_and_bad_text_is_refused() {
        for c in [
            Candidate::Host("192.168.1.2:5900".parse().unwrap()),
            Candidate::Srflx("203.0.113.101:5900".parse().unwrap()),
            Candidate::Relay("203.0.113.10:49152".parse().unwrap()),
            Candidate::Host("[fd00::1]:5900".parse().unwrap()),
        ] {
            assert_eq!(c.to_string().parse::<Candidate>(), Ok(c));
            let json = serde_json::to_value(c).unwrap();
            assert_eq!(serde_json::from_value::<Candidate>(json).unwrap(), c);
        }
        for bad in ["", "host", "host:1.2.3.4", "peer:1.2.3.4:5", "relay:x:1"] {
            assert!(bad.parse::<Candidate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unusable_offers_are_told_apart() {
        for (text, usable) in [
            ("host:10.99.0.2:5900", true),
            ("host:0.0.0.0:5900", false),
            ("host:127.0.0.1:5900", false),
            ("srflx:224.0.0.1:5900", false),
            ("relay:203.0.113.1:0", false),
        ] {
            assert_eq!(
                text.parse::<Candidate>().unwrap().is_usable(),
                usable,
                "{text}"
            );
        }
    }
}
