//! tincan's API for IPv6 neighbour discovery answered in the data plane: `set_nd` (the
//! IPv6 -> MAC bindings it answers solicitations from) and `nd_answered` (what it answered),
//! the IPv6 counterparts of `set_neigh` and `neigh_answered` (docs/rpc.md).

use super::{de, ApiError, Params};
use crate::wire::ethernet::MacAddr;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;

/// `set_nd`: the IPv6 -> MAC bindings of hosts behind links that tincan answers neighbour
/// solicitations from the local bridge for (docs/architecture.md, "IPv6 neighbour
/// discovery"). `replace` empties the table first; then `remove`, then `add`. At most
/// [`SetNd::MAX_ENTRIES`] bindings are held; each list is bounded the same.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetNd {
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub replace: Option<bool>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub add: Vec<NdBinding>,
    #[serde(default, deserialize_with = "de::text_list")]
    pub remove: Vec<Ipv6Addr>,
}

impl SetNd {
    /// The most bindings tincan holds.
    pub const MAX_ENTRIES: usize = 4_096;
}

impl Params for SetNd {
    fn check(&self) -> Result<(), ApiError> {
        let lists = [("add", self.add.len()), ("remove", self.remove.len())];
        at_most(&lists, Self::MAX_ENTRIES)
    }
}

/// Each of the named `lists` (name, length) holds at most `max` entries: else an error that
/// names the first one that holds more.
pub(super) fn at_most(lists: &[(&str, usize)], max: usize) -> Result<(), ApiError> {
    match lists.iter().find(|(_, len)| *len > max) {
        Some((name, len)) => Err(ApiError::param(
            name,
            format_args!("at most {max} entries, got {len}"),
        )),
        None => Ok(()),
    }
}

/// One binding of `set_nd`: `ip` is at `mac`; `router` as the owner's own advertisements say
/// (an answer must not tell a host that its router is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NdBinding {
    #[serde(deserialize_with = "de::text")]
    pub ip: Ipv6Addr,
    pub mac: MacAddr,
    #[serde(default, deserialize_with = "de::flag")]
    pub router: bool,
}

/// `nd_answered`: neighbour solicitations tincan answered from its `set_nd` table since the
/// last report. Batched like `neigh_answered`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NdAnswered {
    #[serde(default, deserialize_with = "de::null_default")]
    pub answers: Vec<NdAnswer>,
}

/// One answer of `nd_answered`: who asked (`requester_ip`, `requester_mac`, a host on the
/// local bridge) for `ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NdAnswer {
    #[serde(deserialize_with = "de::text")]
    pub ip: Ipv6Addr,
    #[serde(deserialize_with = "de::text")]
    pub requester_ip: Ipv6Addr,
    pub requester_mac: MacAddr,
}

impl Params for NdAnswered {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_nd_reads_text_addresses_and_defaults() {
        let v = json!({"add": [{"ip": "fd00:3::21", "mac": "02:00:00:00:00:21"}],
                       "remove": ["fd00:3::22"]});
        let s: SetNd = serde_json::from_value(v).unwrap();
        assert_eq!(s.replace, None);
        assert_eq!(s.add[0].ip, "fd00:3::21".parse::<Ipv6Addr>().unwrap());
        assert!(!s.add[0].router);
        assert_eq!(s.remove.len(), 1);
        let bad = json!({"add": [{"ip": "10.0.3.21", "mac": "02:00:00:00:00:21"}]});
        let e = serde_json::from_value::<SetNd>(bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("IPv6"), "{e}");
        let many = SetNd {
            remove: vec![Ipv6Addr::LOCALHOST; SetNd::MAX_ENTRIES + 1],
            ..SetNd::default()
        };
        assert!(many.check().is_err());
    }
}
