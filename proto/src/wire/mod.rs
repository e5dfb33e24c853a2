//! Wire formats: zero-copy views over byte buffers, in the manner of smoltcp's `wire` module.
//! A malformed input is an `Err`, never a panic or an out-of-bounds index.

pub mod arp;
pub mod ethernet;
pub mod icmpv6;
pub mod link;
pub mod link_handshake;

use std::fmt;

/// Why a buffer could not be read as the format asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than the fixed header of the format.
    Truncated,
    /// A field holds a value this implementation does not accept.
    Malformed,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated"),
            WireError::Malformed => f.write_str("malformed"),
        }
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = std::result::Result<T, WireError>;
