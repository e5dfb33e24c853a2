//! ipop-tincan's control API: the requests it answers on 127.0.0.1:<svpn_port>, the
//! notifications it sends to the controller, and its `get_state` report (docs/rpc.md).
//!
//! Field names, optional fields and defaults are the wire's: a param absent from a request (or
//! null, which is how an unset optional param goes out) takes the default written here, and the
//! report keeps `""` for what is not known yet.

use super::{calls, de, ApiError, Params};
use crate::id::{Candidate, Fingerprint, Millis, Uid};
use crate::wire::ethernet::MacAddr;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

calls! {
    /// A request to ipop-tincan.
    pub enum TincanRequest {
        "set_logging" => SetLogging(SetLogging),
        "set_cb_endpoint" => SetCbEndpoint(SetCbEndpoint),
        "set_local_ip" => SetLocalIp(SetLocalIp),
        "set_nat" => SetNat(SetNat),
        "set_switchmode" => SetSwitchmode(SetSwitchmode),
        "create_link" => CreateLink(CreateLink),
        "trim_link" => TrimLink(TrimLink),
        "set_mac" => SetMac(SetMac),
        "inject_frame" => InjectFrame(InjectFrame),
        "send_icc" => SendIcc(SendIcc),
        "get_state" => GetState(GetState),
        "echo_request" => EchoRequest(EchoRequest),
    }
}

calls! {
    /// A notification from ipop-tincan to the controller's callback endpoint.
    pub enum TincanNotification {
        "punt_frame" => PuntFrame(PuntFrame),
        "icc" => Icc(Icc),
        "con_stat" => ConStat(ConStat),
    }
}

/// `set_logging`: 0 off, 1 warnings, 2 info, 3 debug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLogging {
    #[serde(deserialize_with = "de::int::<_, _, 0, 3>")]
    pub logging: u8,
}

impl SetLogging {
    pub fn level_filter(&self) -> log::LevelFilter {
        match self.logging {
            0 => log::LevelFilter::Off,
            1 => log::LevelFilter::Warn,
            2 => log::LevelFilter::Info,
            _ => log::LevelFilter::Debug,
        }
    }
}

/// `set_cb_endpoint`: where notifications go. The original sent `"::"` (or nothing) for "the
/// sender's address"; anything else must be a loopback address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetCbEndpoint {
    #[serde(default = "unspecified", deserialize_with = "cb_ip")]
    pub ip: IpAddr,
    #[serde(deserialize_with = "de::int::<_, _, 1, 65535>")]
    pub port: u16,
}

impl SetCbEndpoint {
    /// The callback endpoint, for a request that came from `from`.
    pub fn endpoint(&self, from: SocketAddr) -> SocketAddr {
        let ip = if self.ip.is_unspecified() {
            from.ip()
        } else {
            self.ip
        };
        SocketAddr::new(ip, self.port)
    }
}

fn unspecified() -> IpAddr {
    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
}

fn cb_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    use serde::de::Error;
    let ip = de::opt_text::<D, IpAddr>(d)?.unwrap_or_else(unspecified);
    if ip.is_unspecified() || ip.is_loopback() {
        Ok(ip)
    } else {
        Err(D::Error::custom(format!(
            "expected a loopback address, got {ip}"
        )))
    }
}

/// `set_local_ip`: this node's identity, link socket, TAP MTU and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLocalIp {
    pub uid: Uid,
    #[serde(deserialize_with = "de::text")]
    pub ip4: Ipv4Addr,
    #[serde(default, deserialize_with = "de::opt_int::<_, _, 0, 32>")]
    pub ip4_mask: Option<u8>,
    /// The TAP's IPv6 address, as the original controller derived it from the uid.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub ip6: Option<Ipv6Addr>,
    #[serde(default, deserialize_with = "de::opt_int::<_, _, 0, 128>")]
    pub ip6_mask: Option<u8>,
    #[serde(default, deserialize_with = "de::opt_int::<_, _, 0, 32>")]
    pub subnet_mask: Option<u8>,
    #[serde(default, deserialize_with = "de::opt_switchmode")]
    pub switchmode: Option<u8>,
    /// Absent: unchanged.
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub icc: Option<bool>,
    #[serde(
        default = "SetLocalIp::default_link_port",
        deserialize_with = "de::int::<_, _, 1, 65535>"
    )]
    pub link_port: u16,
    /// Absent: unchanged.
    #[serde(default, deserialize_with = "de::opt_int::<_, _, 576, 9000>")]
    pub mtu: Option<u16>,
    #[serde(default = "yes", deserialize_with = "de::flag")]
    pub sec: bool,
    /// Absolute; required with `sec`. Loaded, or created with mode 0600.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(
        default = "SetLocalIp::default_rekey_after_secs",
        deserialize_with = "de::int::<_, _, 1, 86_400>"
    )]
    pub rekey_after_secs: u32,
}

impl SetLocalIp {
    pub const DEFAULT_LINK_PORT: u16 = 5900;
    pub const DEFAULT_REKEY_AFTER_SECS: u32 = 120;

    fn default_link_port() -> u16 {
        Self::DEFAULT_LINK_PORT
    }

    fn default_rekey_after_secs() -> u32 {
        Self::DEFAULT_REKEY_AFTER_SECS
    }
}

fn yes() -> bool {
    true
}

impl Params for SetLocalIp {
    fn check(&self) -> Result<(), ApiError> {
        match &self.key_file {
            Some(path) if !path.is_absolute() => Err(ApiError::param(
                "key_file",
                format_args!("expected an absolute path, got {}", path.display()),
            )),
            None if self.sec => Err(ApiError::param(
                "key_file",
                "required while \"sec\" is true",
            )),
            _ => Ok(()),
        }
    }
}

/// `set_nat`: STUN servers, a TURN server, and interfaces whose addresses are never offered.
/// Servers are addresses: the controller resolves names, tincan never waits on DNS.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetNat {
    #[serde(default, deserialize_with = "de::text_list")]
    pub stun: Vec<SocketAddr>,
    #[serde(default)]
    pub turn: Option<TurnServer>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub ignore: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnServer {
    #[serde(deserialize_with = "de::text")]
    pub server: SocketAddr,
    pub user: String,
    pub pass: String,
}

/// `set_switchmode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetSwitchmode {
    #[serde(deserialize_with = "de::switchmode")]
    pub switchmode: u8,
    /// Absent: unchanged.
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub icc: Option<bool>,
}

/// `create_link`: idempotent; the same uid again updates the endpoint, candidates and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateLink {
    pub uid: Uid,
    /// Absent: the first candidate.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub endpoint: Option<SocketAddr>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub candidates: Vec<Candidate>,
    /// The peer's pinned key; required while links are encrypted. `""` is absent.
    #[serde(default, deserialize_with = "de::opt_text")]
    pub fpr: Option<Fingerprint>,
}

impl Params for CreateLink {
    fn check(&self) -> Result<(), ApiError> {
        if self.endpoint.is_none() && self.candidates.is_empty() {
            return Err(ApiError::new(
                super::ErrorCode::InvalidParams,
                "\"endpoint\" or \"candidates\": one is required",
            ));
        }
        Ok(())
    }
}

/// `trim_link`: also withdraws the link's MAC entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimLink {
    pub uid: Uid,
}

/// `set_mac`: MAC -> link, aged like a learned entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMac {
    pub mac: MacAddr,
    pub uid: Uid,
}

/// `inject_frame`: an Ethernet frame for the TAP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectFrame {
    #[serde(with = "de::hex_frame")]
    pub frame: Vec<u8>,
}

/// `send_icc`: a message for the controller behind a link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendIcc {
    pub uid: Uid,
    pub msg: Value,
}

/// `get_state`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GetState {
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub stats: Option<bool>,
}

/// `echo_request`: answered with [`EchoReply`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EchoRequest {
    #[serde(default)]
    pub msg: Value,
}

/// The answer to `echo_request`: `{"type": "echo_reply", "msg": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "echo_reply")]
pub struct EchoReply {
    #[serde(default)]
    pub msg: Value,
}

/// `punt_frame`: an ARP or neighbour-discovery frame for the controller to decide on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PuntFrame {
    #[serde(with = "de::hex_frame")]
    pub frame: Vec<u8>,
    /// The link it came from; null for the local TAP.
    #[serde(default)]
    pub uid: Option<Uid>,
}

/// `icc`: a message from the controller behind a link, which authenticated the sender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Icc {
    pub uid: Uid,
    pub msg: Value,
}

/// `con_stat`: a link came up or went down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConStat {
    pub uid: Uid,
    pub data: LinkStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    Online,
    Offline,
}

impl Params for SetLogging {}
impl Params for SetCbEndpoint {}
impl Params for SetNat {}
impl Params for SetSwitchmode {}
impl Params for TrimLink {}
impl Params for SetMac {}
impl Params for InjectFrame {}
impl Params for SendIcc {}
impl Params for GetState {}
impl Params for EchoRequest {}
impl Params for PuntFrame {}
impl Params for Icc {}
impl Params for ConStat {}

/// The `get_state` result: `{"type": "local_state", ...}`. `_uid`, `_ip4` and `_fpr` are ""
/// until `set_local_ip` (and, for `_fpr`, a key) made them known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "local_state")]
pub struct LocalState {
    #[serde(
        rename = "_uid",
        serialize_with = "de::blank_none",
        deserialize_with = "de::opt_text"
    )]
    pub uid: Option<Uid>,
    #[serde(
        rename = "_ip4",
        serialize_with = "de::blank_none",
        deserialize_with = "de::opt_text"
    )]
    pub ip4: Option<Ipv4Addr>,
    /// The public half of this node's static key.
    #[serde(
        rename = "_fpr",
        serialize_with = "de::blank_none",
        deserialize_with = "de::opt_text"
    )]
    pub fpr: Option<Fingerprint>,
    /// The TAP's MAC address.
    #[serde(rename = "_mac")]
    pub mac: MacAddr,
    pub sec: bool,
    pub rekey_after_secs: u64,
    pub candidates: Vec<Candidate>,
    pub nat: NatState,
    /// The TAP's name.
    pub tap: String,
    pub mtu: u16,
    #[serde(default)]
    pub version: String,
    /// Random per start: a new one tells the controller tincan restarted.
    pub boot_id: u64,
    #[serde(default)]
    pub uptime_ms: Millis,
    /// Whether `set_local_ip` has succeeded.
    pub configured: bool,
    pub switchmode: u8,
    pub icc: bool,
    pub controller_alive: bool,
    /// Null until configured.
    pub link_port: Option<u16>,
    pub counters: Counters,
    pub peers: Vec<PeerState>,
    pub macs: Vec<MacEntry>,
}

/// Named event counts. A map, so that a counter added to a daemon is reported without a
/// change here.
pub type Counters = BTreeMap<String, u64>;

/// NAT traversal, in the `get_state` result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NatState {
    /// Our public address as STUN servers see it.
    pub srflx: Option<SocketAddr>,
    /// Our TURN allocation.
    pub relay: Option<SocketAddr>,
    pub turn_server: Option<SocketAddr>,
    pub mapping: NatMapping,
    pub stun_responses: u64,
    pub relayed_in: u64,
    pub relayed_out: u64,
}

/// Whether the NAT maps our socket to one public port for every STUN server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatMapping {
    Independent,
    Dependent,
    #[default]
    Unknown,
}

/// One link, in the `get_state` result: `{"type": "peer_state", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "peer_state")]
pub struct PeerState {
    pub uid: Uid,
    pub status: LinkStatus,
    pub endpoint: SocketAddr,
    pub security: Security,
    pub path: LinkPath,
    pub rtt_ms: Option<u64>,
    pub candidates: Vec<Candidate>,
    /// The pinned key.
    pub fpr: Option<Fingerprint>,
    /// Completed handshakes; null without encryption.
    pub handshakes: Option<u64>,
    /// Since the last datagram from the peer; null before the first.
    pub last_rx_ms: Option<Millis>,
    #[serde(default)]
    pub tx_frames: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    #[serde(default)]
    pub rx_frames: u64,
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub icc_tx: u64,
    #[serde(default)]
    pub icc_rx: u64,
    #[serde(default)]
    pub tx_errors: u64,
    #[serde(default)]
    pub ups: u64,
    #[serde(default)]
    pub downs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Noise sessions with the pinned key.
    Noise,
    /// Plaintext (`"sec": false`).
    None,
}

/// How a link reaches its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPath {
    /// A host address of the peer.
    Direct,
    /// The public address of the peer's NAT.
    Reflexive,
    /// Through a TURN relay, ours or the peer's.
    Relayed,
    /// A configured endpoint, without candidates.
    Static,
}

/// A MAC address bound to a link, in the `get_state` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacEntry {
    pub mac: MacAddr,
    pub uid: Uid,
    pub age_ms: Millis,
}

#[cfg(test)]
mod tests {
    use super::super::tests::assert_documented;
    use super::super::ErrorCode;
    use super::*;
    use crate::rpc::{self, Id, Incoming};
    use serde_json::json;

    const UID: &str = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
    const FPR: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn call(datagram: &[u8]) -> (Option<Id>, String, serde_json::Map<String, Value>) {
        match rpc::parse(datagram) {
            Incoming::Call { id, method, params } => (id, method, params),
            other => panic!("{other:?}"),
        }
    }

    fn request(method: &str, params: Value) -> Result<TincanRequest, ApiError> {
        let (_, m, p) = call(&rpc::request(1, method, params));
        TincanRequest::from_call(&m, p)
    }

    fn every_request() -> Vec<TincanRequest> {
        let uid: Uid = UID.parse().unwrap();
        vec![
            SetLogging { logging: 2 }.into(),
            SetCbEndpoint {
                ip: "127.0.0.1".parse().unwrap(),
                port: 30000,
            }
            .into(),
            SetLocalIp {
                uid,
                ip4: "10.0.3.1".parse().unwrap(),
                ip4_mask: Some(24),
                ip6: Some("fd50:dbc:41f2:4a3c::1".parse().unwrap()),
                ip6_mask: Some(64),
                subnet_mask: Some(24),
                switchmode: Some(1),
                icc: Some(true),
                link_port: 5901,
                mtu: Some(1400),
                sec: true,
                key_file: Some("/etc/ipop/ipop.key".into()),
                rekey_after_secs: 60,
            }
            .into(),
            SetNat {
                stun: vec!["192.0.2.1:3478".parse().unwrap()],
                turn: Some(TurnServer {
                    server: "192.0.2.2:3478".parse().unwrap(),
                    user: "u".into(),
                    pass: "p".into(),
                }),
                ignore: vec!["docker0".into()],
            }
            .into(),
            SetSwitchmode {
                switchmode: 1,
                icc: Some(false),
            }
            .into(),
            CreateLink {
                uid,
                endpoint: Some("10.99.0.2:5900".parse().unwrap()),
                candidates: vec!["srflx:203.0.113.1:5900".parse().unwrap()],
                fpr: Some(FPR.parse().unwrap()),
            }
            .into(),
            TrimLink { uid }.into(),
            SetMac {
                mac: "02:00:00:00:00:01".parse().unwrap(),
                uid,
            }
            .into(),
            InjectFrame {
                frame: vec![0xff; 42],
            }
            .into(),
            SendIcc {
                uid,
                msg: json!({"type": "arp_request", "ip": "10.0.3.7"}),
            }
            .into(),
            GetState { stats: Some(true) }.into(),
            EchoRequest { msg: json!("hi") }.into(),
        ]
    }

    #[test]
    fn every_request_round_trips_through_a_datagram() {
        let all = every_request();
        let methods: Vec<&str> = all.iter().map(TincanRequest::method).collect();
        assert_eq!(methods, TincanRequest::METHODS);
        for r in all {
            let (id, method, params) = call(&r.request(9));
            assert_eq!(id, Some(Id::Num(9)));
            assert_eq!(TincanRequest::from_call(&method, params).unwrap(), r);
        }
    }

    #[test]
    fn every_notification_round_trips_through_a_datagram() {
        let uid: Uid = UID.parse().unwrap();
        let all: Vec<TincanNotification> = vec![
            PuntFrame {
                frame: vec![1, 2, 3],
                uid: None,
            }
            .into(),
            Icc {
                uid,
                msg: json!({"type": "arp_reply"}),
            }
            .into(),
            ConStat {
                uid,
                data: LinkStatus::Online,
            }
            .into(),
        ];
        let methods: Vec<&str> = all.iter().map(TincanNotification::method).collect();
        assert_eq!(methods, TincanNotification::METHODS);
        for n in all {
            let (id, method, params) = call(&n.notification());
            assert_eq!(id, None);
            assert_eq!(TincanNotification::from_call(&method, params).unwrap(), n);
        }
    }

    #[test]
    fn notifications_keep_their_wire_form() {
        let uid: Uid = UID.parse().unwrap();
        let punt = TincanNotification::from(PuntFrame {
            frame: vec![0xff, 0x01],
            uid: None,
        });
        assert_eq!(punt.params(), json!({"frame": "ff01", "uid": null}));
        let stat = TincanNotification::from(ConStat {
            uid,
            data: LinkStatus::Offline,
        });
        assert_eq!(stat.params(), json!({"uid": UID, "data": "offline"}));
        let echo = serde_json::to_value(EchoReply { msg: json!(5) }).unwrap();
        assert_eq!(echo, json!({"type": "echo_reply", "msg": 5}));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let r = request(
            "set_local_ip",
            json!({"uid": UID, "ip4": "10.0.3.1", "sec": false}),
        )
        .unwrap();
        let TincanRequest::SetLocalIp(p) = r else {
            panic!("{r:?}")
        };
        assert_eq!(p.link_port, 5900);
        assert_eq!(p.rekey_after_secs, 120);
        assert_eq!((p.mtu, p.icc, p.switchmode), (None, None, None));
        // The original controller's 0/1 flags, and "" for "no key" in create_link.
        let r = request(
            "create_link",
            json!({"uid": UID, "endpoint": "10.99.0.2:5900", "fpr": "", "sec": 1}),
        )
        .unwrap();
        assert!(matches!(
            r,
            TincanRequest::CreateLink(CreateLink { fpr: None, .. })
        ));
        let r = request("set_cb_endpoint", json!({"ip": "::", "port": 30000})).unwrap();
        let TincanRequest::SetCbEndpoint(cb) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            cb.endpoint("127.0.0.1:4000".parse().unwrap()),
            "127.0.0.1:30000".parse().unwrap()
        );
        assert_eq!(
            request("set_nat", json!({"stun": null, "turn": null})).unwrap(),
            SetNat::default().into()
        );
        assert_eq!(
            request("get_state", json!({})).unwrap(),
            GetState::default().into()
        );
    }

    #[test]
    fn a_bad_param_is_named_with_what_was_expected() {
        let cases = [
            (
                "trim_link",
                json!({"uid": "abc"}),
                "\"uid\": expected a uid of 40 hex digits, got \"abc\"",
            ),
            ("trim_link", json!({}), "\"uid\": missing"),
            (
                "set_logging",
                json!({"logging": 7}),
                "\"logging\": expected an integer 0-3, got 7",
            ),
            (
                "set_cb_endpoint",
                json!({"ip": "127.0.0.1", "port": "abc"}),
                "\"port\": expected an integer 1-65535, got \"abc\"",
            ),
            (
                "set_cb_endpoint",
                json!({"ip": "10.0.0.1", "port": 1}),
                "\"ip\": expected a loopback address, got 10.0.0.1",
            ),
            (
                "set_cb_endpoint",
                json!({"ip": "x", "port": 1}),
                "\"ip\": expected an IP address, got \"x\"",
            ),
            (
                "set_switchmode",
                json!({"switchmode": 0}),
                "\"switchmode\": 0 (routed GroupVPN mode) is not implemented; use 1",
            ),
            (
                "set_switchmode",
                json!({"switchmode": 1, "icc": "yes"}),
                "\"icc\": expected a boolean, got \"yes\"",
            ),
            (
                "set_local_ip",
                json!({"uid": UID, "ip4": "10.0.3"}),
                "\"ip4\": expected an IPv4 address, got \"10.0.3\"",
            ),
            (
                "set_local_ip",
                json!({"uid": UID, "ip4": "10.0.3.1", "mtu": 100, "sec": false}),
                "\"mtu\": expected an integer 576-9000, got 100",
            ),
            (
                "set_local_ip",
                json!({"uid": UID, "ip4": "10.0.3.1"}),
                "\"key_file\": required while \"sec\" is true",
            ),
            (
                "set_local_ip",
                json!({"uid": UID, "ip4": "10.0.3.1", "key_file": "k"}),
                "\"key_file\": expected an absolute path, got k",
            ),
            (
                "set_nat",
                json!({"stun": ["stun.example.org:3478"]}),
                "\"stun\": item 0: expected ip:port, got \"stun.example.org:3478\"",
            ),
            (
                "set_nat",
                json!({"turn": {"server": "x", "user": "u", "pass": "p"}}),
                "\"turn.server\": expected ip:port, got \"x\"",
            ),
            (
                "create_link",
                json!({"uid": UID, "endpoint": "nowhere"}),
                "\"endpoint\": expected ip:port, got \"nowhere\"",
            ),
            (
                "create_link",
                json!({"uid": UID}),
                "\"endpoint\" or \"candidates\": one is required",
            ),
            (
                "create_link",
                json!({"uid": UID, "candidates": ["x"]}),
                "\"candidates[0]\": expected a candidate",
            ),
            (
                "create_link",
                json!({"uid": UID, "endpoint": "1.2.3.4:5", "fpr": "zz"}),
                "\"fpr\": expected a key fingerprint of 64 hex digits, got \"zz\"",
            ),
            (
                "set_mac",
                json!({"uid": UID, "mac": "01:02"}),
                "\"mac\": expected a MAC address aa:bb:cc:dd:ee:ff, got \"01:02\"",
            ),
            (
                "inject_frame",
                json!({"frame": "abc"}),
                "\"frame\": expected an even number of hex digits",
            ),
            ("send_icc", json!({"uid": UID}), "\"msg\": missing"),
            (
                "set_nat",
                json!({"turn": {"server": "192.0.2.1:3478", "user": "u"}}),
                "\"turn.pass\": missing",
            ),
        ];
        for (method, params, message) in cases {
            let e = request(method, params.clone()).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams, "{method} {params}");
            assert!(
                e.message.starts_with(message),
                "{method} {params}: {:?} should start with {message:?}",
                e.message
            );
        }
        let e = request("reboot", json!({})).unwrap_err();
        assert_eq!(e.code, ErrorCode::MethodNotFound);
        assert!(e.message.contains("reboot"), "{e}");
    }

    /// The example in docs/rpc.md is a real report.
    #[test]
    fn the_documented_state_parses_and_round_trips() {
        let doc = include_str!("../../../docs/rpc.md");
        let start = doc
            .find("```json")
            .expect("docs/rpc.md has a get_state example")
            + 7;
        let text = &doc[start..];
        let text = &text[..text.find("```").unwrap()];
        let state: LocalState = serde_json::from_str(text).expect("the example parses");
        assert_eq!(state.peers[0].status, LinkStatus::Online);
        assert_eq!(state.link_port, Some(5900));
        let again: LocalState =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(again, state);
        let v = serde_json::to_value(&state).unwrap();
        assert_eq!(v["type"], "local_state");
        assert_eq!(v["peers"][0]["type"], "peer_state");
    }

    #[test]
    fn an_unconfigured_state_keeps_its_blanks() {
        let state = LocalState {
            uid: None,
            ip4: None,
            fpr: None,
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sec: true,
            rekey_after_secs: 120,
            candidates: Vec::new(),
            nat: NatState::default(),
            tap: "ipop".into(),
            mtu: 1400,
            version: "0.1.0".into(),
            boot_id: 7,
            uptime_ms: 5,
            configured: false,
            switchmode: 1,
            icc: true,
            controller_alive: false,
            link_port: None,
            counters: Counters::new(),
            peers: Vec::new(),
            macs: Vec::new(),
        };
        let v = serde_json::to_value(&state).unwrap();
        assert_eq!(
            (&v["_uid"], &v["_ip4"], &v["_fpr"]),
            (&json!(""), &json!(""), &json!(""))
        );
        assert_eq!(v["link_port"], Value::Null);
        assert_eq!(v["nat"]["mapping"], "unknown");
        assert_eq!(serde_json::from_value::<LocalState>(v).unwrap(), state);
    }

    #[test]
    fn docs_name_every_tincan_method() {
        assert_documented("## ipop-tincan", TincanRequest::METHODS);
        assert_documented(
            "Notifications tincan -> controller",
            TincanNotification::METHODS,
        );
    }
}
