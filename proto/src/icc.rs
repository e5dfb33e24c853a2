//! Messages between controllers (ICC). They ride inside tincan's links as JSON; the sending
//! peer is whatever link they arrived on, never what the message claims. A message about an
//! 802.1Q VLAN carries `"vlan": 1-4094` beside its fields ([`IccMsg::to_json_in`],
//! [`vlan_of`]); without it, it is about untagged frames.

use crate::id::Uid;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg_type", rename_all = "snake_case")]
pub enum IccMsg {
    /// A host behind the sender asks who has `target_ip4`.
    ArpRequest {
        target_ip4: Ipv4Addr,
        requester_ip4: Ipv4Addr,
        /// `aa:bb:cc:dd:ee:ff`: the requester's real MAC, used as the source of the injected request.
        requester_mac: String,
    },
    /// `target_ip4` is at `mac`, on the bridge of node `uid`.
    ArpReply {
        target_ip4: Ipv4Addr,
        mac: String,
        uid: Uid,
    },
    /// IPv6: a host behind the sender solicits `target_ip6` (never a duplicate address
    /// detection probe: those reach the owner itself).
    NdRequest {
        target_ip6: Ipv6Addr,
        requester_ip6: Ipv6Addr,
        /// The requester's real MAC, the source of the injected solicitation.
        requester_mac: String,
    },
    /// IPv6: `target_ip6` is at `mac`, on the bridge of node `uid`; `router` as its own
    /// advertisements say.
    NdReply {
        target_ip6: Ipv6Addr,
        mac: String,
        uid: Uid,
        #[serde(default)]
        router: bool,
    },
    /// `target_ip4` is no longer at `mac` on the sender's bridge (the host left it: its bridge
    /// no longer has the MAC on any port). Only the sender's own bindings are withdrawn.
    ArpWithdraw { target_ip4: Ipv4Addr, mac: String },
}

impl IccMsg {
    pub fn from_json(v: &serde_json::Value) -> Result<IccMsg, String> {
        IccMsg::deserialize(v).map_err(|e| format!("bad ICC message: {e}"))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("ICC messages always serialise")
    }

    /// The message about VLAN `vid` (0: untagged, no `vlan` field).
    pub fn to_json_in(&self, vid: u16) -> serde_json::Value {
        let mut v = self.to_json();
        if vid != 0 {
            v["vlan"] = vid.into();
        }
        v
    }
}

/// The VLAN a message is about: its `vlan` field, 0 without one; an error for a field that is
/// not a VLAN id (1-4094).
pub fn vlan_of(v: &serde_json::Value) -> Result<u16, String> {
    match v.get("vlan") {
        None => Ok(0),
        Some(n) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| crate::neigh::vlan::is_vlan(*n))
            .ok_or_else(|| format!("bad ICC message: vlan {n} is not 1-4094")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arp_request_json() {
        let m = IccMsg::ArpRequest {
            target_ip4: "10.0.3.21".parse().unwrap(),
            requester_ip4: "10.0.3.11".parse().unwrap(),
            requester_mac: "02:00:00:00:00:11".into(),
        };
        let v = json!({"msg_type": "arp_request", "target_ip4": "10.0.3.21",
                       "requester_ip4": "10.0.3.11", "requester_mac": "02:00:00:00:00:11"});
        assert_eq!(m.to_json(), v);
        assert_eq!(IccMsg::from_json(&v).unwrap(), m);
    }

    #[test]
    fn arp_reply_json_carries_the_uid_as_40_hex() {
        let uid = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
        let m = IccMsg::ArpReply {
            target_ip4: "10.0.3.21".parse().unwrap(),
            mac: "02:00:00:00:00:21".into(),
            uid: uid.parse().unwrap(),
        };
        let v = json!({"msg_type": "arp_reply", "target_ip4": "10.0.3.21",
                       "mac": "02:00:00:00:00:21", "uid": uid});
        assert_eq!(m.to_json(), v);
        assert_eq!(IccMsg::from_json(&v).unwrap(), m);
        let bad = json!({"msg_type": "arp_reply", "target_ip4": "10.0.3.21",
                         "mac": "02:00:00:00:00:21", "uid": "not-a-uid"});
        let e = IccMsg::from_json(&bad).unwrap_err();
        assert!(e.contains("40 hex digits"), "{e}");
    }

    #[test]
    fn nd_messages_json() {
        let uid = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
        let v = json!({"msg_type": "nd_reply", "target_ip6": "fd00:3::21",
                       "mac": "02:00:00:00:00:21", "uid": uid});
        let m = IccMsg::from_json(&v).unwrap();
        assert!(matches!(m, IccMsg::NdReply { router: false, .. }), "{m:?}");
        let v = json!({"msg_type": "nd_request", "target_ip6": "fd00:3::21",
                       "requester_ip6": "fd00:3::11", "requester_mac": "02:00:00:00:00:11"});
        assert_eq!(IccMsg::from_json(&v).unwrap().to_json(), v);
        let bad = json!({"msg_type": "nd_request", "target_ip6": "10.0.3.21",
                         "requester_ip6": "fd00:3::11", "requester_mac": "02:00:00:00:00:11"});
        assert!(IccMsg::from_json(&bad).is_err());
    }

    #[test]
    fn arp_withdraw_json() {
        let m = IccMsg::ArpWithdraw {
            target_ip4: "10.0.3.21".parse().unwrap(),
            mac: "02:00:00:00:00:21".into(),
        };
        let v = json!({"msg_type": "arp_withdraw", "target_ip4": "10.0.3.21",
                       "mac": "02:00:00:00:00:21"});
        assert_eq!(m.to_json(), v);
        assert_eq!(IccMsg::from_json(&v).unwrap(), m);
    }

    #[test]
    fn a_message_about_a_vlan_says_which() {
        let m = IccMsg::ArpWithdraw {
            target_ip4: "10.0.3.21".parse().unwrap(),
            mac: "02:00:00:00:00:21".into(),
        };
        let v = m.to_json_in(42);
        assert_eq!(v["vlan"], 42);
        assert_eq!(
            (vlan_of(&v), IccMsg::from_json(&v)),
            (Ok(42), Ok(m.clone()))
        );
        assert_eq!(vlan_of(&m.to_json_in(0)), Ok(0));
        for bad in [json!(0), json!(4095), json!(-1), json!("7"), json!(70000)] {
            let mut v = m.to_json();
            v["vlan"] = bad;
            assert!(vlan_of(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn bad_messages_are_errors() {
        assert!(IccMsg::from_json(&json!({"msg_type": "nope"})).is_err());
        assert!(
            IccMsg::from_json(&json!({"msg_type": "arp_reply", "target_ip4": "x",
                                          "mac": "m", "uid": "u"}))
            .is_err()
        );
        assert!(IccMsg::from_json(&json!([1, 2])).is_err());
    }
}
