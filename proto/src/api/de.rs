//! The field readers the API types share: ranges, the original controller's 0/1 flags, IP
//! addresses with messages that show the input, hex frames, and "" read as absent. Each error
//! says what was expected; `parse_params` puts the param's name in front.

use serde::de::Error;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An integer in `MIN..=MAX`.
pub fn int<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let v = Value::deserialize(d)?;
    v.as_u64()
        .filter(|n| (MIN..=MAX).contains(n))
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| D::Error::custom(format!("expected an integer {MIN}-{MAX}, got {v}")))
}

/// [`int`], or `None` for null (and, with `#[serde(default)]`, when absent).
pub fn opt_int<'de, D, T, const MIN: u64, const MAX: u64>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => int::<_, T, MIN, MAX>(v).map(Some).map_err(D::Error::custom),
    }
}

/// A boolean; the original controller sent 0/1 for some flags.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        v => Err(D::Error::custom(format!("expected a boolean, got {v}"))),
    }
}

/// [`flag`], or `None` for null.
pub fn opt_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => flag(v).map(Some).map_err(D::Error::custom),
    }
}

/// `"switchmode"`: 1; 0 (the original's routed mode) is refused with what to do instead.
pub fn switchmode<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) if n.as_u64() == Some(0) => Err(D::Error::custom(
            "0 (routed GroupVPN mode) is not implemented; use 1",
        )),
        v => int::<_, u8, 1, 1>(v).map_err(D::Error::custom),
    }
}

/// [`switchmode`], or `None` for null.
pub fn opt_switchmode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => switchmode(v).map(Some).map_err(D::Error::custom),
    }
}

/// A value with a text form, and the message for text that is not one.
pub trait Text: FromStr + Display {
    fn refused(text: &str, err: Self::Err) -> String;
}

macro_rules! std_text {
    ($($t:ty: $what:literal),*) => {$(
        impl Text for $t {
            fn refused(text: &str, _: Self::Err) -> String {
                format!(concat!("expected ", $what, ", got {:?}"), text)
            }
        }
    )*};
}
std_text!(
    SocketAddr: "ip:port",
    IpAddr: "an IP address",
    Ipv4Addr: "an IPv4 address",
    Ipv6Addr: "an IPv6 address"
);

macro_rules! own_text {
    ($($t:ty),*) => {$(
        impl Text for $t {
            fn refused(_: &str, err: Self::Err) -> String {
                err.to_string()
            }
        }
    )*};
}
own_text!(
    crate::id::Uid,
    crate::id::Fingerprint,
    crate::id::Candidate,
    crate::wire::ethernet::MacAddr
);

fn parse_text<T: Text, E: Error>(v: Value) -> Result<T, E> {
    match v {
        Value::String(s) => s.parse().map_err(|e| E::custom(T::refused(&s, e))),
        v => Err(E::custom(format!("expected a string, got {v}"))),
    }
}

/// A value in its text form.
pub fn text<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<T, D::Error> {
    parse_text(Value::deserialize(d)?)
}

/// A value in its text form, or `None` for null or "" (how tincan says "not yet").
pub fn opt_text<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<Option<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        v => parse_text(v).map(Some),
    }
}

/// `None` as "", for the state fields that have always been "" until known.
pub fn blank_none<S: Serializer, T: Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.collect_str(t),
        None => s.serialize_str(""),
    }
}

/// A list of values in their text form; null is the empty list.
pub fn text_list<'de, D: Deserializer<'de>, T: Text>(d: D) -> Result<Vec<T>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                parse_text::<T, D::Error>(v).map_err(|e| D::Error::custom(format!("item {i}: {e}")))
            })
            .collect(),
        v => Err(D::Error::custom(format!("expected a list, got {v}"))),
    }
}

/// What a missing list and null both mean: empty.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Frames travel as hex text.
pub mod hex_frame {
    use super::*;

    pub fn serialize<S: Serializer>(frame: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(frame))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => hex::decode(s)
                .map_err(|_| D::Error::custom("expected an even number of hex digits")),
            v => Err(D::Error::custom(format!(
                "expected an even number of hex digits, got {v}"
            ))),
        }
    }
}
