//! The IPOP gvpn config: every key of the original `gvpn_controller.py` CONFIG under its original
//! name and default, plus this project's additions (`peers`, `bridge`, `link_port`, `tap_mtu`,
//! `link_mtu`, ...). This module owns the table of keys (one descriptor per key: name, type, default, check,
//! help), parsing and validation, the layering of `-c FILE` under `-s JSON`, and the identities
//! derived from the config (uid, `gen_ip6`).
//!
//! It reads no files and resolves no names: the caller hands in each layer's text, and server
//! and peer addresses stay [`HostPort`]s for the caller to resolve.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value};

pub use crate::hostport::HostPort;
use crate::id::{Fingerprint, Uid};
pub use crate::secure::CipherSetting;

macro_rules! ip6_prefix {
    () => {
        "fd50:0dbc:41f2:4a3c"
    };
}

/// The /64 prefix `gen_ip6` puts in front of a uid, as in the original.
pub const IP6_PREFIX: &str = ip6_prefix!();

/// Hex digits in a uid: a whole SHA-1. The only `uid_size` accepted.
pub const UID_SIZE: usize = 40;

/// How `-s JSON` is named in messages, after the flag the user typed.
pub const OVERRIDE_SOURCE: &str = "-s";

/// Named in messages when neither `-c` nor `-s` was given, so only defaults are at fault.
const DEFAULTS_SOURCE: &str = "built-in defaults";

const DEFAULT_STUN: [&str; 5] = [
    "stun.l.google.com:19302",
    "stun1.l.google.com:19302",
    "stun2.l.google.com:19302",
    "stun3.l.google.com:19302",
    "stun4.l.google.com:19302",
];

/// Whether the controller uses a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Supported,
    /// Used, and its value is never shown (`Debug` prints `<redacted>`).
    Secret,
    /// Accepted for compatibility and type-checked, but its feature is not built yet: a value
    /// other than the default is ignored with a warning that names the key and says why.
    Unsupported(&'static str),
}

impl Support {
    fn is_secret(self) -> bool {
        self == Support::Secret
    }

    fn unsupported(self) -> Option<&'static str> {
        match self {
            Support::Unsupported(why) => Some(why),
            _ => None,
        }
    }
}

/// One key of the config, as the table describes it.
#[derive(Debug, Clone)]
pub struct KeyDoc {
    pub name: &'static str,
    /// What the key takes, as error messages say it.
    pub expected: String,
    /// The default, as JSON.
    pub default: Value,
    /// The help text, one line per element.
    pub help: &'static [&'static str],
    pub support: Support,
}

/// How one key's JSON value is read: what it takes (for messages) and the parser. A parser
/// refuses with `None` (the message is then `"key": expected ..., got ...`) or with a whole
/// message about a place inside the value; it may note warnings.
struct Reader<T> {
    expected: String,
    #[allow(clippy::type_complexity)]
    parse: Box<dyn Fn(&Value, &mut Vec<String>) -> Result<T, Option<String>>>,
}

impl<T> Reader<T> {
    fn new(expected: impl Into<String>, parse: impl Fn(&Value) -> Option<T> + 'static) -> Self {
        Reader {
            expected: expected.into(),
            parse: Box::new(move |v, _| parse(v).ok_or(None)),
        }
    }

    /// The same parser, described otherwise.
    fn expecting(self, expected: impl Into<String>) -> Self {
        Reader {
            expected: expected.into(),
            ..self
        }
    }
}

/// Each key once: `field: type = default, "key", reader, support;`, with its help as doc
/// comments. From this come the struct, its `Default` and `Debug`, the parser, the warnings
/// for unsupported keys and [`Config::keys`].
macro_rules! config_keys {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $default:expr, $key:literal, $reader:expr, $support:expr;
    )*) => {
        /// The parsed, validated config. Field names are the original keys; the two with a '-'
        /// in the original (`on-demand_*`) use '_' here.
        #[derive(Clone, PartialEq, Eq)]
        pub struct Config {
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        /// The original's defaults (switchmode 0 included, which validation then refuses) and
        /// ours for the added keys.
        impl Default for Config {
            fn default() -> Config {
                Config { $($field: $default,)* }
            }
        }

        // Secrets are redacted so that logging a config at debug level cannot leak them.
        impl fmt::Debug for Config {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut s = f.debug_struct("Config");
                $(
                    if $support.is_secret() {
                        s.field(stringify!($field), &"<redacted>");
                    } else {
                        s.field(stringify!($field), &self.$field);
                    }
                )*
                s.finish()
            }
        }

        impl Config {
    /// The storm control rates of the `storm_*_pps` keys.
    pub fn storm_rates(&self) -> crate::storm::StormRates {
        crate::storm::StormRates {
            broadcast_pps: self.storm_broadcast_pps,
            multicast_pps: self.storm_multicast_pps,
            unknown_unicast_pps: self.storm_unknown_unicast_pps,
        }
    }

            /// Every key, in the order of the table.
            pub fn keys() -> Vec<KeyDoc> {
                let d = Config::default();
                vec![$(KeyDoc {
                    name: $key,
                    expected: {
                        let reader: Reader<$ty> = $reader;
                        reader.expected
                    },
                    default: serde_json::to_value(&d.$field).expect("defaults serialise"),
                    help: {
                        const HELP: &[&str] = &[$($doc.trim_ascii()),*];
                        HELP
                    },
                    support: $support,
                },)*]
            }

            /// The keys whose values differ between `self` and `other`, in the order of the
            /// table: what a reload has to apply or refuse.
            pub fn changed_keys(&self, other: &Config) -> Vec<&'static str> {
                let mut changed = Vec::new();
                $(
                    if self.$field != other.$field {
                        changed.push($key);
                    }
                )*
                changed
            }

            fn read(input: &mut Input) -> Result<Config, ConfigError> {
                let d = Config::default();
                Ok(Config { $($field: input.value($key, d.$field, $reader)?,)* })
            }

            /// Keys whose feature is not built yet. Silent when they hold their default, since
            /// then ignoring them changes nothing.
            fn warn_unsupported(&self, input: &Input, warnings: &mut Vec<String>) {
                let d = Config::default();
                $(
                    if let Some(why) = $support.unsupported() {
                        if self.$field != d.$field && input.is_present($key) {
                            warnings.push(ignored(input.source($key), $key, why));
                        }
                    }
                )*
            }
        }
    };
}

config_keys! {
    /// The XMPP account that signals links (with `xmpp_password` and `xmpp_host`).
    xmpp_username: Option<String> = None, "xmpp_username", opt_string(), Support::Supported;
    /// The XMPP account's password.
    xmpp_password: Option<String> = None, "xmpp_password", opt_string(), Support::Secret;
    /// The XMPP server; setting it turns on signalling.
    xmpp_host: Option<String> = None, "xmpp_host", opt_string(), Support::Supported;
    /// The XMPP server's port.
    xmpp_port: u16 = 5222, "xmpp_port", int(1, 65535), Support::Supported;
    /// This node's overlay address; its sha1 is the uid.
    ip4: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1), "ip4", ipv4(), Support::Supported;
    /// Prefix length of the overlay's IPv4 network.
    ip4_mask: u8 = 24, "ip4_mask", int(0, 32), Support::Supported;
    /// Prefix length of the TAP's IPv6 network.
    ip6_mask: u8 = 64, "ip6_mask", int(0, 128), Support::Supported;
    /// The original's per-node subnet prefix length (routed mode).
    subnet_mask: u8 = 32, "subnet_mask", int(0, 32), Support::Supported;
    /// tincan's control port on loopback (read-only queries over UDP; state changes over the
    /// control socket @ipop-tincan/<svpn_port>, for root and tincan's user only).
    svpn_port: u16 = 5800, "svpn_port", int(1, 65535), Support::Supported;
    /// Hex digits of a uid; only whole sha1 uids (40) are supported.
    uid_size: usize = UID_SIZE, "uid_size",
        int(UID_SIZE as u64, UID_SIZE as u64)
            .expecting("40 (only whole 40-digit uids are supported)"),
        Support::Supported;
    /// Links are authenticated and encrypted; false is plaintext, for trusted networks only.
    sec: bool = true, "sec", boolean(), Support::Supported;
    /// Seconds: an unanswered `con_req` is repeated after 1, 2, 4 and 8 s, then every
    /// `wait_time`; a signalled link offline for twice this (at least 10 s) is trimmed and
    /// asked for again.
    wait_time: u64 = 15, "wait_time", seconds(1, 86400), Support::Supported;
    /// Capped at the largest UDP payload, which is what the original's default is.
    buf_size: usize = 65507, "buf_size", int(1024, 65507), Support::Supported;
    /// tincan's log level: 0 off, 1 warnings, 2 info, 3 debug.
    tincan_logging: u8 = 1, "tincan_logging", int(0, 3), Support::Supported;
    /// The controller's log level, by the original's Python level names.
    controller_logging: LogLevel = LogLevel::Info, "controller_logging", log_level(),
        Support::Supported;
    /// ARP replicated by the controllers (true) or flooded like any broadcast (false).
    icc: bool = false, "icc", boolean(), Support::Supported;
    /// The controller's status port on loopback (`get_state`); tincan's punts, ICC messages and
    /// link events come over its control socket instead.
    icc_port: u16 = 30000, "icc_port", int(1, 65535), Support::Supported;
    /// 0 (routed GroupVPN, refused by validation) or 1 (switch mode).
    switchmode: u8 = 0, "switchmode", int(0, 1).expecting("0 or 1"), Support::Supported;
    /// STUN servers, resolved by the controller.
    stun: Vec<HostPort> = DEFAULT_STUN.iter().map(|s| s.parse().expect("valid")).collect(),
        "stun", host_ports(), Support::Supported;
    /// TURN servers; the first is used.
    turn: Vec<TurnServer> = Vec::new(), "turn", turn_servers(), Support::Supported;
    /// The original's explicit uid.
    local_uid: String = String::new(), "local_uid",
        Reader::new("a string", |v| v.as_str().map(str::to_owned)),
        Support::Unsupported("the uid is sha1 of \"ip4\"");
    /// Interfaces whose addresses are never offered to peers as host candidates (with XMPP
    /// signalling); the TAP and its bridge never are.
    network_ignore_list: Vec<String> = Vec::new(), "network_ignore_list", strings(),
        Support::Supported;
    /// Key `"on-demand_connection"`.
    on_demand_connection: bool = false, "on-demand_connection", boolean(),
        Support::Unsupported("links to all \"peers\" are opened at start");
    /// Key `"on-demand_inactive_timeout"`, seconds.
    on_demand_inactive_timeout: u64 = 600, "on-demand_inactive_timeout",
        seconds(1, u32::MAX as u64), Support::Supported;
    /// Close links that have been idle (the original's on-demand trimming).
    trim_enabled: bool = false, "trim_enabled", boolean(),
        Support::Unsupported("links are not trimmed");
    /// The original's router mode.
    router_mode: bool = false, "router_mode", boolean(),
        Support::Unsupported("router mode is not implemented");
    /// The original controller's own port.
    contr_port: u16 = 5801, "contr_port", int(1, 65535), Support::Supported;
    /// The tincan binary the original controller started.
    tincan_path: Option<PathBuf> = None, "tincan_path", opt_path(), Support::Supported;
    /// Static peers, in place of XMPP discovery.
    peers: Vec<PeerConfig> = Vec::new(), "peers", peers(), Support::Supported;
    /// Linux bridge the TAP is attached to, if the controller should do it.
    bridge: Option<String> = None, "bridge", opt_ifname(), Support::Supported;
    /// tincan's UDP port for links on the underlay.
    link_port: u16 = 5900, "link_port", int(1, 65535), Support::Supported;
    /// MTU of the TAP: the containers' MTU (frames larger than one link datagram cross in
    /// link fragments).
    tap_mtu: u16 = 1500, "tap_mtu", int(576, 9000), Support::Supported;
    /// Largest IP packet on the underlay between the hosts: a link datagram is at most this
    /// less 28 bytes (IPv4 and UDP); larger frames cross in link fragments.
    link_mtu: u16 = 1500, "link_mtu", int(576, 9000), Support::Supported;
    /// This node's static key (X25519, hex). None: `ipop.key` beside the config file.
    key_file: Option<PathBuf> = None, "key_file", opt_path(), Support::Supported;
    /// Create `key_file` (mode 0600) when it does not exist; otherwise a missing key is an error
    /// that points at `ipopctl genkey`.
    create_key: bool = false, "create_key", boolean(), Support::Supported;
    /// PEM file the XMPP client trusts besides the system roots (a private CA, or the server's
    /// self-signed certificate).
    xmpp_ca: Option<PathBuf> = None, "xmpp_ca", opt_path(), Support::Supported;
    /// The XMPP accounts (bare JIDs) whose presence and signalling are accepted. None: those
    /// on the account's roster with a subscription "both" or "from".
    xmpp_allow: Option<Vec<String>> = None, "xmpp_allow", opt_bare_jids(), Support::Supported;
    /// Seconds after which an encrypted link runs a new handshake.
    rekey_interval: u64 = 120, "rekey_interval", seconds(1, 86400), Support::Supported;
    /// The ciphers encrypted links offer: "auto" (both: AES-256-GCM where both CPUs run it in
    /// hardware, ChaCha20-Poly1305 otherwise), "aes-256-gcm" or "chacha20-poly1305" (only that
    /// one: no link with a peer that offers only the other).
    cipher: CipherSetting = CipherSetting::Auto, "cipher", cipher(), Support::Supported;
    /// Broadcast frames per second the bridge may flood into the overlay, and each peer into
    /// this host (storm control; 0: no limit).
    storm_broadcast_pps: u32 = 1_000, "storm_broadcast_pps", int(0, 10_000_000), Support::Supported;
    /// Multicast frames per second, likewise (IPv6 neighbour discovery, mDNS, ...).
    storm_multicast_pps: u32 = 2_000, "storm_multicast_pps", int(0, 10_000_000), Support::Supported;
    /// Frames per second to unknown unicast addresses the bridge may flood into the overlay.
    storm_unknown_unicast_pps: u32 = 5_000, "storm_unknown_unicast_pps", int(0, 10_000_000),
        Support::Supported;
    /// TCP port on 127.0.0.1 where the controller serves Prometheus metrics (`GET /metrics`);
    /// null: no endpoint. Changing it takes a restart.
    metrics_port: Option<u16> = None, "metrics_port", opt_int(1, 65535), Support::Supported;
}

/// Original keys this project has no field for (svpn, multihop, statistics, router mode,
/// loopback addresses): accepted, and ignored with a warning when they differ from the
/// original's default (JSON text; `None`: any value but null).
pub const IGNORED_KEYS: &[(&str, Option<&str>, &str)] = &[
    ("multihop", Some("false"), MULTIHOP),
    ("multihop_cl", Some("100"), MULTIHOP),
    ("multihop_ihc", Some("3"), MULTIHOP),
    ("multihop_hl", Some("10"), MULTIHOP),
    ("multihop_tl", Some("1"), MULTIHOP),
    ("multihop_sr", Some("true"), MULTIHOP),
    ("stat_report", Some("false"), STATS),
    ("stat_server", Some("\"metrics.ipop-project.org\""), STATS),
    ("stat_server_port", Some("5000"), STATS),
    ("router_ip", None, ROUTER),
    ("router_ip4_mask", None, ROUTER),
    ("router_ip6_mask", None, ROUTER),
    ("localhost", Some("\"127.0.0.1\""), LOOPBACK),
    ("localhost6", Some("\"::1\""), LOOPBACK),
    (
        "ip6_prefix",
        Some(concat!("\"", ip6_prefix!(), "\"")),
        "the IPv6 prefix is fixed",
    ),
    ("bridge_ip", None, "use \"bridge\""),
];
const MULTIHOP: &str = "multihop is not implemented";
const STATS: &str = "statistics reporting is not implemented";
const ROUTER: &str = "router mode is not implemented";
const LOOPBACK: &str = "tincan is always on loopback";

/// A peer named in `"peers"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerConfig {
    pub ip4: Ipv4Addr,
    /// sha1 of the ip4 string: the same uid the peer computes for itself.
    #[serde(skip)]
    pub uid: Uid,
    /// Where its tincan listens; a host name is resolved by the controller.
    pub endpoint: HostPort,
    /// The peer's key: its link is accepted only with that key. Required while "sec" is true.
    pub fpr: Option<Fingerprint>,
}

/// One `"turn"` entry.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct TurnServer {
    pub server: HostPort,
    pub user: String,
    pub pass: String,
}

/// `controller_logging`: the Python logging level names the original accepted, and its PKTDUMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Pktdump,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

/// Why a config was refused: one line naming the input, the key, what was expected and what was
/// got.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl ConfigError {
    /// The caller could not read the file `source` (this module reads none).
    pub fn unreadable(source: &str, error: &std::io::Error) -> ConfigError {
        ConfigError(format!("{source}: cannot read: {error}"))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The TAP's IPv6 address for a uid, as the original's `gen_ip6`: the prefix, then the uid's
/// first 16 hex digits.
pub fn gen_ip6(uid: &Uid) -> String {
    let h = uid.to_string();
    format!(
        "{IP6_PREFIX}:{}:{}:{}:{}",
        &h[0..4],
        &h[4..8],
        &h[8..12],
        &h[12..16]
    )
}

impl LogLevel {
    const ALL: [LogLevel; 6] = [
        LogLevel::Pktdump,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
    ];

    /// Any case, since configs in the wild wrote both "DEBUG" and "debug".
    pub fn parse(name: &str) -> Option<LogLevel> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(name))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Pktdump => "PKTDUMP",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }

    /// The nearest `log` level: PKTDUMP (below DEBUG in the original) is trace, CRITICAL is error.
    pub fn level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Pktdump => log::LevelFilter::Trace,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Warning => log::LevelFilter::Warn,
            LogLevel::Error | LogLevel::Critical => log::LevelFilter::Error,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LogLevel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// Secrets are redacted so that logging a config at debug level cannot leak them.
impl fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnServer")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("pass", &"<redacted>")
            .finish()
    }
}

impl Config {
    /// Parse and validate. `source` names the input in messages (e.g. "config.json" or "-s").
    /// Returns the config and a list of warning lines (unknown keys, keys accepted but not
    /// supported yet).
    pub fn from_json_str(text: &str, source: &str) -> Result<(Config, Vec<String>), ConfigError> {
        Config::from_json_layers(&[(text, source)])
    }

    /// Layers of JSON text, each `(text, source)`, merged key by key, later over earlier: the
    /// `-c FILE` text (read by the caller) then the `-s JSON` overrides ([`OVERRIDE_SOURCE`]).
    /// With no layer at all, the defaults, which validation refuses for their switchmode 0.
    pub fn from_json_layers(layers: &[(&str, &str)]) -> Result<(Config, Vec<String>), ConfigError> {
        let objects = layers
            .iter()
            .map(|(text, source)| Ok((parse_object(text, source)?, *source)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let mut input = Input::new(&objects);
        let config = Config::read(&mut input)?;
        check_own_ip4(&config, &input)?;
        check_switchmode(&config, &input)?;
        check_fingerprints(&config, &input)?;
        check_xmpp(&config, &input)?;
        check_distinct_ports(&config, &input)?;
        let mut warnings = std::mem::take(&mut input.warnings);
        config.warn_unsupported(&input, &mut warnings);
        warn_leftovers(input, &mut warnings);
        Ok((config, warnings))
    }

    /// sha1 of the ip4 string, as the original derived it.
    pub fn uid(&self) -> Uid {
        Uid::from_ip4(self.ip4)
    }
}

fn parse_object(text: &str, source: &str) -> Result<Map<String, Value>, ConfigError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(ConfigError(format!(
            "{source}: expected a JSON object at the top level, got {}",
            shown(&other)
        ))),
        Err(e) => Err(ConfigError(format!("{source}: not valid JSON: {e}"))),
    }
}

/// The layers merged key by key, each value remembering which input gave it, so that a message
/// about a key names the file or the `-s` string the user has to edit.
struct Input<'a> {
    values: BTreeMap<String, (Value, &'a str)>,
    /// Sources of the keys taken so far.
    present: HashMap<&'static str, &'a str>,
    /// Named when the fault is a default nobody overrode: the file is where the fix goes.
    fallback: &'a str,
    /// What the readers noted, with its source in front.
    warnings: Vec<String>,
}

impl<'a> Input<'a> {
    fn new(layers: &[(Map<String, Value>, &'a str)]) -> Self {
        let mut values = BTreeMap::new();
        for (object, source) in layers {
            for (key, value) in object {
                values.insert(key.clone(), (value.clone(), *source));
            }
        }
        let fallback = layers.first().map_or(DEFAULTS_SOURCE, |(_, source)| source);
        Input {
            values,
            present: HashMap::new(),
            fallback,
            warnings: Vec::new(),
        }
    }

    fn source(&self, key: &str) -> &'a str {
        self.present.get(key).copied().unwrap_or(self.fallback)
    }

    fn is_present(&self, key: &str) -> bool {
        self.present.contains_key(key)
    }

    /// The key's value, or `default` when absent; a value the reader refuses is an error.
    fn value<T>(
        &mut self,
        key: &'static str,
        default: T,
        reader: Reader<T>,
    ) -> Result<T, ConfigError> {
        let Some((value, source)) = self.values.remove(key) else {
            return Ok(default);
        };
        self.present.insert(key, source);
        let mut notes = Vec::new();
        let parsed = (reader.parse)(&value, &mut notes).map_err(|refused| match refused {
            None => wrong(source, &quoted(key), &reader.expected, &value),
            Some(message) => ConfigError(format!("{source}: {message}")),
        })?;
        self.warnings
            .extend(notes.into_iter().map(|n| format!("{source}: {n}")));
        Ok(parsed)
    }
}

/// Keys a reload (SIGHUP) applies to the running controller; a change to any other key needs a
/// restart.
pub const RELOADABLE_KEYS: &[&str] = &[
    "peers",
    "controller_logging",
    "tincan_logging",
    "storm_broadcast_pps",
    "storm_multicast_pps",
    "storm_unknown_unicast_pps",
];

/// Whether a reload applies a change to `key`.
pub fn reload_applies(key: &str) -> bool {
    RELOADABLE_KEYS.contains(&key)
}

/// What a reload does, from the running config and the one read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reload {
    /// The config to run from now on: the running one with the reloadable keys taken from the
    /// new one.
    pub config: Config,
    /// Peers to link (new uid, or a changed endpoint or fpr, which is trimmed first).
    pub link: Vec<PeerConfig>,
    /// Peers to trim: no longer in `peers`, or linked again with new values.
    pub trim: Vec<Uid>,
    /// Reloadable keys that changed (applied).
    pub applied: Vec<&'static str>,
    /// Keys that changed but need a restart (their running values stay).
    pub need_restart: Vec<&'static str>,
}

impl Reload {
    pub fn plan(running: &Config, new: &Config) -> Reload {
        let changed = running.changed_keys(new);
        let (applied, need_restart): (Vec<_>, Vec<_>) =
            changed.into_iter().partition(|k| reload_applies(k));
        let mut config = running.clone();
        config.peers = new.peers.clone();
        config.controller_logging = new.controller_logging;
        config.tincan_logging = new.tincan_logging;
        config.storm_broadcast_pps = new.storm_broadcast_pps;
        config.storm_multicast_pps = new.storm_multicast_pps;
        config.storm_unknown_unicast_pps = new.storm_unknown_unicast_pps;
        let old: HashMap<Uid, &PeerConfig> = running.peers.iter().map(|p| (p.uid, p)).collect();
        let now: HashMap<Uid, &PeerConfig> = new.peers.iter().map(|p| (p.uid, p)).collect();
        let trim = running
            .peers
            .iter()
            .filter(|p| now.get(&p.uid).is_none_or(|n| *n != *p))
            .map(|p| p.uid)
            .collect();
        let link = new
            .peers
            .iter()
            .filter(|p| old.get(&p.uid).is_none_or(|o| *o != *p))
            .cloned()
            .collect();
        Reload {
            config,
            link,
            trim,
            applied,
            need_restart,
        }
    }
}

mod man;
mod readers;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_peers;
#[cfg(test)]
mod tests_reload;

pub use man::man_page;

use readers::*;
