//! ipop-tincan's control API: the requests it answers on 127.0.0.1:<svpn_port>, the
//! notifications it sends to the controller, and its `get_state` report (docs/rpc.md).
//!
//! Field names, optional fields and defaults are the wire's: a param absent from a request (or
//! null, which is how an unset optional param goes out) takes the default written here, and the
//! report keeps `""` for what is not known yet.

use super::{calls, de, ApiError, Params};
use crate::id::{Candidate, Fingerprint, Millis, Uid};
use crate::secure::{Cipher, CipherSetting};
use crate::wire::ethernet::MacAddr;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

pub use super::tincan_nd::{NdAnswer, NdAnswered, NdBinding, SetNd};

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
        "release_mac" => ReleaseMac(ReleaseMac),
        "inject_frame" => InjectFrame(InjectFrame),
        "send_icc" => SendIcc(SendIcc),
        "set_neigh" => SetNeigh(SetNeigh),
        "set_nd" => SetNd(SetNd),
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
        "neigh_answered" => NeighAnswered(NeighAnswered),
        "nd_answered" => NdAnswered(NdAnswered),
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
    /// The underlay's largest IP packet: link datagrams are at most this less 28 bytes, larger
    /// frames cross in link fragments. Absent: unchanged (1500 until set).
    #[serde(default, deserialize_with = "de::opt_int::<_, _, 576, 9000>")]
    pub link_mtu: Option<u16>,
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
    /// The ciphers encrypted links offer in their handshakes.
    #[serde(default)]
    pub cipher: CipherSetting,
    /// Storm control: the flood rates per class. Absent: unchanged (the defaults until set).
    #[serde(default)]
    pub storm: Option<crate::storm::StormRates>,
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
    /// The 802.1Q VLAN the binding is in; absent for untagged frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}

/// `release_mac`: drop tincan's binding of `mac` at once: the local one (no `uid`: the host
/// left the local bridge, so a link may speak for it), or the one to the link to `uid` (that
/// peer withdrew it). Answers `{"released": bool}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMac {
    pub mac: MacAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Uid>,
    /// With `uid`: the 802.1Q VLAN of the binding; absent for untagged frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
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

/// `set_neigh`: the IPv4 -> MAC bindings of hosts behind links that tincan answers ARP
/// requests from the local bridge for (docs/architecture.md, "ARP replication"). `replace`
/// empties the table first; then `remove`, then `add`. At most
/// [`SetNeigh::MAX_ENTRIES`] bindings are held; each list is bounded the same.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetNeigh {
    #[serde(default, deserialize_with = "de::opt_flag")]
    pub replace: Option<bool>,
    #[serde(default, deserialize_with = "de::null_default")]
    pub add: Vec<NeighBinding>,
    #[serde(default, deserialize_with = "de::text_list")]
    pub remove: Vec<Ipv4Addr>,
}

impl SetNeigh {
    /// The most bindings tincan holds.
    pub const MAX_ENTRIES: usize = 4_096;
}

impl Params for SetNeigh {
    fn check(&self) -> Result<(), ApiError> {
        let lists = [("add", self.add.len()), ("remove", self.remove.len())];
        super::tincan_nd::at_most(&lists, Self::MAX_ENTRIES)
    }
}

/// One binding of `set_neigh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighBinding {
    #[serde(deserialize_with = "de::text")]
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
}

/// `neigh_answered`: ARP requests tincan answered from its `set_neigh` table since the last
/// report, so the controller refreshes and re-probes those entries as if it had answered.
/// Batched: one report per control datagram from the controller at most, each answer once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NeighAnswered {
    #[serde(default, deserialize_with = "de::null_default")]
    pub answers: Vec<NeighAnswer>,
}

/// One answer of `neigh_answered`: who asked (`requester_ip`, `requester_mac`, a host on the
/// local bridge) for `ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NeighAnswer {
    #[serde(deserialize_with = "de::text")]
    pub ip: Ipv4Addr,
    #[serde(deserialize_with = "de::text")]
    pub requester_ip: Ipv4Addr,
    pub requester_mac: MacAddr,
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
impl Params for SetMac {
    fn check(&self) -> Result<(), ApiError> {
        check_vlan(self.vlan)
    }
}
impl Params for ReleaseMac {
    fn check(&self) -> Result<(), ApiError> {
        check_vlan(self.vlan)
    }
}

fn check_vlan(vlan: Option<u16>) -> Result<(), ApiError> {
    match vlan {
        Some(v) if !crate::neigh::vlan::is_vlan(v) => {
            Err(ApiError::param("vlan", format_args!("{v} is not 1-4094")))
        }
        _ => Ok(()),
    }
}
impl Params for InjectFrame {}
impl Params for SendIcc {}
impl Params for GetState {}
impl Params for EchoRequest {}
impl Params for PuntFrame {}
impl Params for Icc {}
impl Params for NeighAnswered {}
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
    /// What `set_local_ip` said links offer.
    #[serde(default)]
    pub cipher: CipherSetting,
    pub candidates: Vec<Candidate>,
    pub nat: NatState,
    /// The TAP's name.
    pub tap: String,
    pub mtu: u16,
    /// The underlay MTU links are cut for (`link_mtu`).
    #[serde(default)]
    pub link_mtu: u16,
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
    /// Bindings in the `set_neigh` table.
    #[serde(default)]
    pub neigh_entries: u64,
    /// Bindings in the `set_nd` table.
    #[serde(default)]
    pub nd_entries: u64,
    pub counters: Counters,
    pub peers: Vec<PeerState>,
    pub macs: Vec<MacEntry>,
    /// MACs seen on the local bridge within the hold: no link may speak for them.
    #[serde(default)]
    pub local_macs: Vec<MacAddr>,
    /// Links left out of `peers` to keep the answer within [`super::MAX_STATE_BYTES`].
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub peers_truncated: u64,
    /// MACs left out of `macs` (the least recently seen) and of `local_macs` for the same
    /// reason.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub macs_truncated: u64,
}

impl LocalState {
    /// Leaves out what does not fit in `max` bytes of JSON, and counts it: the MACs seen
    /// longest ago first, then, if the links alone are too many, the last links.
    pub fn bound(&mut self, max: usize) {
        let mut peers = std::mem::take(&mut self.peers);
        let mut macs = std::mem::take(&mut self.macs);
        let mut local = std::mem::take(&mut self.local_macs);
        // Measured with the largest counts, so that the counts themselves fit.
        self.peers_truncated = u64::MAX;
        self.macs_truncated = u64::MAX;
        let mut budget = max.saturating_sub(super::json_len(self));
        self.peers_truncated = super::keep_fitting(&mut peers, &mut budget);
        macs.sort_by_key(|m| m.age_ms);
        let truncated = super::keep_fitting(&mut macs, &mut budget);
        self.macs_truncated = truncated + super::keep_fitting(&mut local, &mut budget);
        self.peers = peers;
        self.macs = macs;
        self.local_macs = local;
    }
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
    /// The cipher of the session the link sends on; null without encryption or session.
    #[serde(default)]
    pub cipher: Option<Cipher>,
    /// Since the last datagram from the peer; null before the first.
    pub last_rx_ms: Option<Millis>,
    /// Since the last completed handshake, either way; null before the first.
    #[serde(default)]
    pub last_handshake_ms: Option<Millis>,
    /// Since the link was created (`create_link`).
    #[serde(default)]
    pub age_ms: Option<Millis>,
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
    /// Frames from this peer dropped because their source MAC is not the peer's to speak for:
    /// a host on our bridge, or one bound to another peer.
    #[serde(default)]
    pub refused_macs: u64,
    /// Link fragments sent and received, messages put back together from them, and messages
    /// or fragments dropped (expired, invalid, over budget).
    #[serde(default)]
    pub frag_tx: u64,
    #[serde(default)]
    pub frag_rx: u64,
    #[serde(default)]
    pub frag_reassembled: u64,
    #[serde(default)]
    pub frag_dropped: u64,
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
    /// The 802.1Q VLAN id the MAC was learned in; absent (0) for untagged frames.
    #[serde(default, skip_serializing_if = "is_untagged")]
    pub vlan: u16,
    pub uid: Uid,
    pub age_ms: Millis,
}

fn is_untagged(vid: &u16) -> bool {
    *vid == 0
}

#[cfg(test)]
#[path = "tincan_tests.rs"]
mod tests;
