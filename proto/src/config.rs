//! The IPOP gvpn config: every key of the original `gvpn_controller.py` CONFIG under its original
//! name and default, plus this project's additions (`peers`, `bridge`, `link_port`, `tap_mtu`,
//! ...). This module owns the table of keys (one descriptor per key: name, type, default, check,
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
    /// tincan's control port on loopback.
    svpn_port: u16 = 5800, "svpn_port", int(1, 65535), Support::Supported;
    /// Hex digits of a uid; only whole sha1 uids (40) are supported.
    uid_size: usize = UID_SIZE, "uid_size",
        int(UID_SIZE as u64, UID_SIZE as u64)
            .expecting("40 (only whole 40-digit uids are supported)"),
        Support::Supported;
    /// Links are authenticated and encrypted; false is plaintext, for trusted networks only.
    sec: bool = true, "sec", boolean(), Support::Supported;
    /// Seconds.
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
    /// The controller's port on loopback for what tincan hands up (punts, ICC, link events).
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
    /// Interfaces whose addresses are never offered to peers (with XMPP signalling).
    network_ignore_list: Vec<String> = Vec::new(), "network_ignore_list", strings(),
        Support::Unsupported("links use the one socket on \"link_port\"");
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
    /// MTU of the TAP: room for the link overhead on a 1500-byte underlay.
    tap_mtu: u16 = 1400, "tap_mtu", int(576, 9000), Support::Supported;
    /// This node's static key (X25519, hex). None: `ipop.key` beside the config file.
    key_file: Option<PathBuf> = None, "key_file", opt_path(), Support::Supported;
    /// PEM file the XMPP client trusts besides the system roots (a private CA, or the server's
    /// self-signed certificate).
    xmpp_ca: Option<PathBuf> = None, "xmpp_ca", opt_path(), Support::Supported;
    /// Seconds after which an encrypted link runs a new handshake.
    rekey_interval: u64 = 120, "rekey_interval", seconds(1, 86400), Support::Supported;
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

const LOG_LEVELS: &str =
    "one of \"DEBUG\", \"INFO\", \"WARNING\", \"ERROR\", \"CRITICAL\", \"PKTDUMP\"";

/// A JSON integer (not a string, float or negative number) in `lo..=hi`.
fn int<T: TryFrom<u64> + 'static>(lo: u64, hi: u64) -> Reader<T> {
    Reader::new(format!("an integer {lo}-{hi}"), move |v| {
        v.as_u64()
            .filter(|n| (lo..=hi).contains(n))
            .and_then(|n| T::try_from(n).ok())
    })
}

fn seconds<T: TryFrom<u64> + 'static>(lo: u64, hi: u64) -> Reader<T> {
    int(lo, hi).expecting(format!("an integer {lo}-{hi} (seconds)"))
}

fn boolean() -> Reader<bool> {
    Reader::new("true or false", Value::as_bool)
}

fn opt_string() -> Reader<Option<String>> {
    Reader::new("a string or null", |v| match v {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        _ => None,
    })
}

fn strings() -> Reader<Vec<String>> {
    Reader::new("a list of strings", |v| {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect()
    })
}

fn ipv4() -> Reader<Ipv4Addr> {
    Reader::new("an IPv4 address string", |v| v.as_str()?.parse().ok())
}

fn log_level() -> Reader<LogLevel> {
    Reader::new(LOG_LEVELS, |v| LogLevel::parse(v.as_str()?))
}

fn opt_path() -> Reader<Option<PathBuf>> {
    Reader::new("a non-empty path string or null", |v| match v {
        Value::Null => Some(None),
        Value::String(s) if !s.is_empty() => Some(Some(PathBuf::from(s))),
        _ => None,
    })
}

fn host_port(v: &Value) -> Option<HostPort> {
    v.as_str()?.parse().ok()
}

fn host_ports() -> Reader<Vec<HostPort>> {
    Reader::new("a list of \"host:port\" strings", |v| {
        v.as_array()?.iter().map(host_port).collect()
    })
}

fn turn_servers() -> Reader<Vec<TurnServer>> {
    Reader::new(
        "a list of {\"server\": \"host:port\", \"user\", \"pass\"} objects with string values",
        |v| {
            v.as_array()?
                .iter()
                .map(|t| {
                    let object = t.as_object()?;
                    let get = |name: &str| object.get(name)?.as_str().map(str::to_owned);
                    Some(TurnServer {
                        server: host_port(object.get("server")?)?,
                        user: get("user")?,
                        pass: get("pass")?,
                    })
                })
                .collect()
        },
    )
}

/// The kernel's `dev_valid_name`, so a bad name fails here and not at attach time.
fn opt_ifname() -> Reader<Option<String>> {
    Reader::new(
        "a Linux interface name (1-15 bytes, no '/', ':' or whitespace) or null",
        |v| match v {
            Value::Null => Some(None),
            Value::String(s) if valid_ifname(s) => Some(Some(s.clone())),
            _ => None,
        },
    )
}

fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `"peers"`: a list of `{"ip4", "endpoint", "fpr"}`; messages name the entry and its field.
fn peers() -> Reader<Vec<PeerConfig>> {
    Reader {
        expected: "a list of {\"ip4\", \"endpoint\"} objects".to_owned(),
        parse: Box::new(|value, notes| {
            let entries = value.as_array().ok_or(None)?;
            let mut peers: Vec<PeerConfig> = Vec::with_capacity(entries.len());
            for (i, entry) in entries.iter().enumerate() {
                let peer = parse_peer(&format!("\"peers\"[{i}]"), entry, &peers, notes)?;
                peers.push(peer);
            }
            Ok(peers)
        }),
    }
}

fn parse_peer(
    place: &str,
    entry: &Value,
    earlier: &[PeerConfig],
    notes: &mut Vec<String>,
) -> Result<PeerConfig, Option<String>> {
    let at = |field: &str, expected: &str, got: &Value| {
        Some(format!(
            "{place}.{}: expected {expected}, got {}",
            quoted(field),
            shown(got)
        ))
    };
    let object = entry.as_object().ok_or_else(|| {
        Some(format!(
            "{place}: expected an object {{\"ip4\": ..., \"endpoint\": ...}}, got {}",
            shown(entry)
        ))
    })?;
    let field = |name: &str| {
        object
            .get(name)
            .ok_or_else(|| Some(format!("{place}: missing {}", quoted(name))))
    };

    let ip4_value = field("ip4")?;
    let ip4: Ipv4Addr = ip4_value
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| at("ip4", "an IPv4 address string", ip4_value))?;
    if let Some(j) = earlier.iter().position(|p| p.ip4 == ip4) {
        let expected = format!("an address not already given by \"peers\"[{j}]");
        return Err(at("ip4", &expected, ip4_value));
    }

    let endpoint_value = field("endpoint")?;
    let endpoint = match endpoint_value.as_str().map(str::parse::<HostPort>) {
        Some(Ok(endpoint)) => endpoint,
        refused => {
            let mut message = at("endpoint", "\"ip:port\" or \"host:port\"", endpoint_value);
            if let (Some(m), Some(Err(e))) = (message.as_mut(), refused) {
                if e.ends_with("(port 0)") {
                    m.push_str(" (port 0)");
                }
            }
            return Err(message);
        }
    };

    let fpr = match object.get("fpr") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| s.parse::<Fingerprint>().ok())
                .ok_or_else(|| at("fpr", "a key fingerprint of 64 hex digits", v))?,
        ),
    };

    for key in object
        .keys()
        .filter(|k| !["ip4", "endpoint", "fpr"].contains(&k.as_str()))
    {
        notes.push(format!("{place}: unknown key {} ignored", quoted(key)));
    }
    Ok(PeerConfig {
        ip4,
        uid: Uid::from_ip4(ip4),
        endpoint,
        fpr,
    })
}

/// A peer with our own address would be a link to ourselves.
fn check_own_ip4(config: &Config, input: &Input) -> Result<(), ConfigError> {
    match config.peers.iter().position(|p| p.ip4 == config.ip4) {
        None => Ok(()),
        Some(i) => Err(wrong(
            input.source("peers"),
            &format!("\"peers\"[{i}].\"ip4\""),
            "an address other than our own \"ip4\"",
            &Value::from(config.ip4.to_string()),
        )),
    }
}

/// XMPP signalling needs the whole account: a host alone is a half-written config.
fn check_xmpp(config: &Config, input: &Input) -> Result<(), ConfigError> {
    if config.xmpp_host.is_none() {
        return Ok(());
    }
    for (key, missing) in [
        ("xmpp_username", config.xmpp_username.is_none()),
        ("xmpp_password", config.xmpp_password.is_none()),
    ] {
        if missing {
            return Err(ConfigError(format!(
                "{}: \"{key}\": required when \"xmpp_host\" is set (the XMPP account that \
                 signals links), missing",
                input.source("xmpp_host")
            )));
        }
    }
    Ok(())
}

/// With "sec" on, a link is accepted only with the key pinned for it, so each peer needs one.
fn check_fingerprints(config: &Config, input: &Input) -> Result<(), ConfigError> {
    if !config.sec {
        return Ok(());
    }
    match config.peers.iter().position(|p| p.fpr.is_none()) {
        None => Ok(()),
        Some(i) => Err(ConfigError(format!(
            "{}: \"peers\"[{i}]: missing \"fpr\" (the peer's key fingerprint, printed by \
             `ipop-tincan --key FILE`), required while \"sec\" is true",
            input.source("peers")
        ))),
    }
}

fn check_switchmode(config: &Config, input: &Input) -> Result<(), ConfigError> {
    if config.switchmode != 0 {
        return Ok(());
    }
    let source = input.source("switchmode");
    let what = if input.is_present("switchmode") {
        "\"switchmode\": 0 selects"
    } else {
        "\"switchmode\" defaults to 0,"
    };
    Err(ConfigError(format!(
        "{source}: {what} the original's routed GroupVPN mode, which is not implemented; \
         set \"switchmode\": 1 for switch mode"
    )))
}

/// svpn_port, icc_port and link_port are all bound by the same host; a clash would only show up
/// later as a bind failure or as one process reading the other's datagrams.
fn check_distinct_ports(config: &Config, input: &Input) -> Result<(), ConfigError> {
    let ports = [
        ("svpn_port", config.svpn_port),
        ("icc_port", config.icc_port),
        ("link_port", config.link_port),
    ];
    for (i, &(later, port)) in ports.iter().enumerate() {
        for &(earlier, other) in &ports[..i] {
            if port != other {
                continue;
            }
            // The defaults differ, so at least one of the two was written: blame that one.
            let (key, other_key) = if input.is_present(later) {
                (later, earlier)
            } else {
                (earlier, later)
            };
            return Err(ConfigError(format!(
                "{}: \"{key}\": expected a port different from \"{other_key}\" ({port}), got {port}",
                input.source(key)
            )));
        }
    }
    Ok(())
}

/// What is left after the known keys were taken: original keys this project has no field for,
/// and keys nobody knows.
fn warn_leftovers(input: Input, warnings: &mut Vec<String>) {
    for (key, (value, source)) in input.values {
        match IGNORED_KEYS.iter().find(|(name, _, _)| *name == key) {
            Some((_, default, why)) => {
                let differs = match default {
                    Some(default) => {
                        value != serde_json::from_str::<Value>(default).expect("valid JSON")
                    }
                    None => !value.is_null(),
                };
                if differs {
                    warnings.push(ignored(source, &key, why));
                }
            }
            None => warnings.push(format!("{source}: unknown key {} ignored", quoted(&key))),
        }
    }
}

fn ignored(source: &str, key: &str, why: &str) -> String {
    format!(
        "{source}: {} is not supported yet and is ignored for now ({why})",
        quoted(key)
    )
}

fn wrong(source: &str, place: &str, expected: &str, got: &Value) -> ConfigError {
    ConfigError(format!(
        "{source}: {place}: expected {expected}, got {}",
        shown(got)
    ))
}

fn quoted(key: &str) -> String {
    Value::from(key).to_string()
}

/// The value as JSON, cut short so that the message stays one readable line.
fn shown(v: &Value) -> String {
    const MAX_CHARS: usize = 60;
    let text = v.to_string();
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// sha1 of "10.0.3.1", from `printf %s 10.0.3.1 | sha1sum`.
    const UID_10_0_3_1: &str = "4a4453572792b408e0ac91a75e6b6f89146e171b";
    /// sha1 of "10.0.3.2", from `printf %s 10.0.3.2 | sha1sum`.
    const UID_10_0_3_2: &str = "d05719abdcdedb54fa14f4d049532fd97c5e2bfb";

    fn parse(text: &str) -> Result<(Config, Vec<String>), ConfigError> {
        Config::from_json_str(text, "config.json")
    }

    fn parse_ok(text: &str) -> (Config, Vec<String>) {
        parse(text).unwrap_or_else(|e| panic!("{text} refused: {e}"))
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("{text} accepted"),
            Err(e) => e.to_string(),
        }
    }

    fn uid(text: &str) -> Uid {
        text.parse().unwrap()
    }

    fn texts<T: ToString>(items: &[T]) -> Vec<String> {
        items.iter().map(T::to_string).collect()
    }

    #[test]
    fn defaults_match_the_original_table() {
        let c = Config::default();
        assert_eq!(c.xmpp_username, None);
        assert_eq!(c.xmpp_password, None);
        assert_eq!(c.xmpp_host, None);
        assert_eq!(c.xmpp_port, 5222);
        assert_eq!(c.ip4, Ipv4Addr::new(172, 16, 0, 1));
        assert_eq!(c.ip4_mask, 24);
        assert_eq!(c.ip6_mask, 64);
        assert_eq!(c.subnet_mask, 32);
        assert_eq!(c.svpn_port, 5800);
        assert_eq!(c.uid_size, 40);
        assert!(c.sec);
        assert_eq!(c.wait_time, 15);
        assert_eq!(c.buf_size, 65507);
        assert_eq!(c.tincan_logging, 1);
        assert_eq!(c.controller_logging, LogLevel::Info);
        assert!(!c.icc);
        assert_eq!(c.icc_port, 30000);
        assert_eq!(c.switchmode, 0);
        assert_eq!(
            texts(&c.stun),
            [
                "stun.l.google.com:19302",
                "stun1.l.google.com:19302",
                "stun2.l.google.com:19302",
                "stun3.l.google.com:19302",
                "stun4.l.google.com:19302",
            ]
        );
        assert!(c.turn.is_empty());
        assert_eq!(c.local_uid, "");
        assert!(c.network_ignore_list.is_empty());
        assert!(!c.on_demand_connection);
        assert_eq!(c.on_demand_inactive_timeout, 600);
        assert!(!c.trim_enabled);
        assert!(!c.router_mode);
        assert_eq!(c.contr_port, 5801);
        assert_eq!(c.tincan_path, None);
        assert!(c.peers.is_empty());
        assert_eq!(c.bridge, None);
        assert_eq!(c.link_port, 5900);
        assert_eq!(c.tap_mtu, 1400);
    }

    #[test]
    fn minimal_config_is_the_defaults_with_switchmode_1_and_no_warnings() {
        let (c, warnings) = parse_ok(r#"{"switchmode": 1}"#);
        assert_eq!(
            c,
            Config {
                switchmode: 1,
                ..Config::default()
            }
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn uid_is_sha1_of_the_ip4_string() {
        let (c, _) = parse_ok(r#"{"switchmode": 1, "ip4": "10.0.3.1"}"#);
        assert_eq!(c.uid(), uid(UID_10_0_3_1));
        assert_eq!(c.uid().to_string().len(), UID_SIZE);
    }

    #[test]
    fn gen_ip6_puts_the_first_16_uid_digits_after_the_prefix() {
        assert_eq!(
            gen_ip6(&uid(UID_10_0_3_1)),
            "fd50:0dbc:41f2:4a3c:4a44:5357:2792:b408"
        );
    }

    #[test]
    fn wrong_value_names_source_key_expectation_and_value() {
        assert_eq!(
            error(r#"{"switchmode": 1, "icc_port": "abc"}"#),
            r#"config.json: "icc_port": expected an integer 1-65535, got "abc""#
        );
    }

    #[test]
    fn integers_must_be_json_integers_in_range() {
        for bad in [r#""5800""#, "5800.0", "5800.5", "-1", "0", "65536", "true"] {
            let e = error(&format!(r#"{{"switchmode": 1, "svpn_port": {bad}}}"#));
            assert_eq!(
                e,
                format!(r#"config.json: "svpn_port": expected an integer 1-65535, got {bad}"#)
            );
        }
        assert!(error(r#"{"switchmode": 1, "ip4_mask": 33}"#)
            .contains(r#""ip4_mask": expected an integer 0-32"#));
        assert!(error(r#"{"switchmode": 1, "ip6_mask": 129}"#).contains(r#""ip6_mask""#));
        assert!(error(r#"{"switchmode": 1, "tincan_logging": 4}"#).contains(r#""tincan_logging""#));
        assert!(error(r#"{"switchmode": 1, "wait_time": 0}"#).contains(r#""wait_time""#));
        assert!(error(r#"{"switchmode": 1, "tap_mtu": 575}"#).contains("576-9000"));
        assert!(error(r#"{"switchmode": 1, "tap_mtu": 9001}"#).contains("576-9000"));
        assert_eq!(
            parse_ok(r#"{"switchmode": 1, "tap_mtu": 9000}"#).0.tap_mtu,
            9000
        );
    }

    #[test]
    fn booleans_must_be_json_booleans() {
        assert_eq!(
            error(r#"{"switchmode": 1, "icc": "true"}"#),
            r#"config.json: "icc": expected true or false, got "true""#
        );
        assert!(
            error(r#"{"switchmode": 1, "sec": 1}"#).contains(r#""sec": expected true or false"#)
        );
        let (c, warnings) = parse_ok(r#"{"switchmode": 1, "icc": true, "sec": false}"#);
        assert!(c.icc && !c.sec);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn ip4_must_be_an_ipv4_address() {
        assert_eq!(
            error(r#"{"switchmode": 1, "ip4": "10.0.3"}"#),
            r#"config.json: "ip4": expected an IPv4 address string, got "10.0.3""#
        );
        assert!(error(r#"{"switchmode": 1, "ip4": "::1"}"#).contains(r#""ip4""#));
    }

    #[test]
    fn uid_size_other_than_40_is_refused() {
        let e = error(r#"{"switchmode": 1, "uid_size": 20}"#);
        assert!(
            e.starts_with(r#"config.json: "uid_size": expected 40"#),
            "{e}"
        );
        assert!(e.ends_with("got 20"), "{e}");
        assert_eq!(
            parse_ok(r#"{"switchmode": 1, "uid_size": 40}"#).0.uid_size,
            40
        );
    }

    #[test]
    fn controller_logging_takes_level_names_in_either_case() {
        for (text, level) in [
            ("DEBUG", LogLevel::Debug),
            ("debug", LogLevel::Debug),
            ("WARNING", LogLevel::Warning),
            ("critical", LogLevel::Critical),
            ("PKTDUMP", LogLevel::Pktdump),
        ] {
            let json = format!(r#"{{"switchmode": 1, "controller_logging": "{text}"}}"#);
            assert_eq!(parse_ok(&json).0.controller_logging, level);
        }
        let e = error(r#"{"switchmode": 1, "controller_logging": "LOUD"}"#);
        assert!(
            e.starts_with(r#"config.json: "controller_logging": expected one of "DEBUG""#),
            "{e}"
        );
        assert!(e.ends_with(r#"got "LOUD""#), "{e}");
    }

    #[test]
    fn broken_json_names_the_source_and_the_position() {
        let e = error(r#"{"switchmode": 1,"#);
        assert!(e.starts_with("config.json: not valid JSON: "), "{e}");
        assert!(e.contains("line 1 column"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn top_level_must_be_an_object() {
        assert_eq!(
            error("[1, 2]"),
            "config.json: expected a JSON object at the top level, got [1,2]"
        );
    }

    #[test]
    fn unknown_key_is_a_warning_not_an_error() {
        let (c, warnings) = parse_ok(r#"{"switchmode": 1, "foo": 3}"#);
        assert_eq!(c.switchmode, 1);
        assert_eq!(warnings, [r#"config.json: unknown key "foo" ignored"#]);
    }

    #[test]
    fn switchmode_0_is_refused_with_the_hint() {
        let e = error(r#"{"switchmode": 0}"#);
        assert!(e.starts_with(r#"config.json: "switchmode": 0"#), "{e}");
        assert!(
            e.contains("GroupVPN") && e.contains("not implemented"),
            "{e}"
        );
        assert!(e.contains(r#"set "switchmode": 1"#), "{e}");

        // 0 is also the original's default, so leaving it out is refused the same way.
        let e = error("{}");
        assert!(
            e.starts_with(r#"config.json: "switchmode" defaults to 0"#),
            "{e}"
        );
        assert!(e.contains(r#"set "switchmode": 1"#), "{e}");

        let e = Config::from_json_layers(&[]).unwrap_err().to_string();
        assert!(e.contains(r#"set "switchmode": 1"#), "{e}");
    }

    #[test]
    fn switchmode_other_than_0_or_1_is_an_error_naming_the_key() {
        assert_eq!(
            error(r#"{"switchmode": 2}"#),
            r#"config.json: "switchmode": expected 0 or 1, got 2"#
        );
    }

    #[test]
    fn peers_are_parsed_with_their_uid() {
        let (c, warnings) = parse_ok(
            r#"{"switchmode": 1, "ip4": "10.0.3.1", "peers": [
                {"ip4": "10.0.3.2", "endpoint": "192.168.50.2:5900", "fpr": "ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB"},
                {"ip4": "10.0.3.3", "endpoint": "[fe80::1]:6000", "fpr": "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}
            ]}"#,
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.peers.len(), 2);
        assert_eq!(
            c.peers[0],
            PeerConfig {
                ip4: Ipv4Addr::new(10, 0, 3, 2),
                uid: uid(UID_10_0_3_2),
                endpoint: "192.168.50.2:5900".parse().unwrap(),
                fpr: Some("ab".repeat(32).parse().unwrap()),
            }
        );
        assert_eq!(c.peers[1].uid, Uid::from_ip4(Ipv4Addr::new(10, 0, 3, 3)));
        assert_eq!(
            c.peers[1].endpoint.addr(),
            Some("[fe80::1]:6000".parse().unwrap())
        );
    }

    #[test]
    fn duplicate_peer_is_refused() {
        let e = error(
            r#"{"switchmode": 1, "peers": [
                {"ip4": "10.0.3.2", "endpoint": "192.168.50.2:5900"},
                {"ip4": "10.0.3.2", "endpoint": "192.168.50.3:5900"}
            ]}"#,
        );
        assert_eq!(
            e,
            r#"config.json: "peers"[1]."ip4": expected an address not already given by "peers"[0], got "10.0.3.2""#
        );
    }

    #[test]
    fn peer_with_our_own_ip4_is_refused() {
        let e = error(
            r#"{"switchmode": 1, "ip4": "10.0.3.1",
                "peers": [{"ip4": "10.0.3.1", "endpoint": "192.168.50.2:5900"}]}"#,
        );
        assert_eq!(
            e,
            r#"config.json: "peers"[0]."ip4": expected an address other than our own "ip4", got "10.0.3.1""#
        );
    }

    #[test]
    fn malformed_peers_are_refused() {
        let e = error(r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2"}]}"#);
        assert_eq!(e, r#"config.json: "peers"[0]: missing "endpoint""#);
        let e = error(
            r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2", "endpoint": "192.168.50.2"}]}"#,
        );
        assert!(
            e.starts_with(r#"config.json: "peers"[0]."endpoint": expected "ip:port""#),
            "{e}"
        );
        assert!(e.ends_with(r#"got "192.168.50.2""#), "{e}");
        let e = error(
            r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2", "endpoint": "192.168.50.2:0"}]}"#,
        );
        assert!(e.contains("(port 0)"), "{e}");
        let e = error(r#"{"switchmode": 1, "peers": {"ip4": "10.0.3.2"}}"#);
        assert!(
            e.starts_with(r#"config.json: "peers": expected a list"#),
            "{e}"
        );
        let (_, warnings) = parse_ok(
            r#"{"switchmode": 1, "sec": false, "peers": [{"ip4": "10.0.3.2", "endpoint": "1.2.3.4:5", "x": 1}]}"#,
        );
        assert_eq!(
            warnings,
            [r#"config.json: "peers"[0]: unknown key "x" ignored"#]
        );
    }

    #[test]
    fn ports_must_be_distinct() {
        assert_eq!(
            error(r#"{"switchmode": 1, "icc_port": 5800}"#),
            r#"config.json: "icc_port": expected a port different from "svpn_port" (5800), got 5800"#
        );
        assert!(error(r#"{"switchmode": 1, "link_port": 30000}"#)
            .starts_with(r#"config.json: "link_port": expected a port different from "icc_port""#));
        // The key the user wrote is blamed even when it comes first in the table.
        assert!(
            error(r#"{"switchmode": 1, "svpn_port": 5900}"#).starts_with(
                r#"config.json: "svpn_port": expected a port different from "link_port""#
            )
        );
    }

    #[test]
    fn bridge_must_be_an_interface_name() {
        assert_eq!(
            parse_ok(r#"{"switchmode": 1, "bridge": "lxcbr0"}"#)
                .0
                .bridge
                .as_deref(),
            Some("lxcbr0")
        );
        for bad in [
            r#""""#,
            r#""a/b""#,
            r#""a b""#,
            r#""a:b""#,
            r#"".""#,
            r#""sixteen_chars_xx""#,
            "1",
        ] {
            let e = error(&format!(r#"{{"switchmode": 1, "bridge": {bad}}}"#));
            assert!(
                e.starts_with(r#"config.json: "bridge": expected a Linux interface name"#),
                "{e}"
            );
        }
    }

    #[test]
    fn unsupported_keys_warn_only_when_not_default() {
        let (c, warnings) = parse_ok(
            r#"{"switchmode": 1, "xmpp_port": 5222, "trim_enabled": false, "stat_report": false,
                "xmpp_host": null, "multihop_cl": 100}"#,
        );
        assert_eq!(c.xmpp_port, 5222);
        assert!(warnings.is_empty(), "{warnings:?}");

        let (c, warnings) = parse_ok(
            r#"{"switchmode": 1, "xmpp_host": "xmpp.example.org", "xmpp_username": "a@b",
                "xmpp_password": "pw", "trim_enabled": true, "stat_report": true,
                "stun": ["stun.example.org:3478"]}"#,
        );
        assert_eq!(c.xmpp_host.as_deref(), Some("xmpp.example.org"));
        assert_eq!(texts(&c.stun), ["stun.example.org:3478"]);
        for key in ["trim_enabled", "stat_report"] {
            let hits = warnings
                .iter()
                .filter(|w| {
                    w.starts_with(&format!(
                        r#"config.json: "{key}" is not supported yet and is ignored for now"#
                    ))
                })
                .count();
            assert_eq!(hits, 1, "{key}: {warnings:?}");
        }
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn unsupported_keys_are_still_type_checked() {
        assert!(error(r#"{"switchmode": 1, "stun": ["no-port"]}"#)
            .starts_with(r#"config.json: "stun": expected"#));
        assert!(error(r#"{"switchmode": 1, "turn": [{"server": "t:1"}]}"#)
            .starts_with(r#"config.json: "turn": expected"#));
        assert!(error(r#"{"switchmode": 1, "xmpp_port": "5222"}"#)
            .starts_with(r#"config.json: "xmpp_port": expected"#));
        let (c, _) = parse_ok(
            r#"{"switchmode": 1, "turn": [{"server": "t.example.org:3478", "user": "u", "pass": "p"}]}"#,
        );
        assert_eq!(c.turn[0].server.to_string(), "t.example.org:3478");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let (c, _) = parse_ok(
            r#"{"switchmode": 1, "xmpp_password": "hunter2",
                "turn": [{"server": "t:1", "user": "u", "pass": "swordfish"}]}"#,
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
    }

    #[test]
    fn override_string_wins_over_file_values() {
        let file = r#"{"switchmode": 1, "ip4": "10.0.3.1", "icc_port": 30001, "tap_mtu": 1300}"#;
        let (c, warnings) = Config::from_json_layers(&[
            (file, "config.json"),
            (r#"{"ip4": "10.0.3.2", "tap_mtu": 1280}"#, OVERRIDE_SOURCE),
        ])
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.ip4, Ipv4Addr::new(10, 0, 3, 2));
        assert_eq!(c.tap_mtu, 1280);
        // Keys the override does not name keep the file's values.
        assert_eq!(c.icc_port, 30001);
        assert_eq!(c.switchmode, 1);
        assert_eq!(c.uid(), uid(UID_10_0_3_2));
    }

    #[test]
    fn messages_name_the_layer_that_gave_the_value() {
        let file = (r#"{"switchmode": 1, "foo": 1}"#, "/etc/ipop/config.json");
        let e = Config::from_json_layers(&[file, (r#"{"icc_port": "abc"}"#, OVERRIDE_SOURCE)])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"-s: "icc_port": expected an integer 1-65535, got "abc""#
        );
        let (_, warnings) =
            Config::from_json_layers(&[file, (r#"{"bar": 1}"#, OVERRIDE_SOURCE)]).unwrap();
        assert_eq!(
            warnings,
            [
                r#"-s: unknown key "bar" ignored"#,
                r#"/etc/ipop/config.json: unknown key "foo" ignored"#,
            ]
        );
        let e = Config::from_json_layers(&[file, ("{", OVERRIDE_SOURCE)])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("-s: not valid JSON: "), "{e}");
        let (c, _) =
            Config::from_json_layers(&[(r#"{"switchmode": 1}"#, OVERRIDE_SOURCE)]).unwrap();
        assert_eq!(c.switchmode, 1);
    }

    #[test]
    fn unreadable_file_message() {
        let e = ConfigError::unreadable(
            "/etc/ipop/config.json",
            &std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(
            e.to_string(),
            "/etc/ipop/config.json: cannot read: entity not found"
        );
    }

    #[test]
    fn host_names_are_kept_for_the_caller_to_resolve() {
        let (c, _) = parse_ok(
            r#"{"switchmode": 1, "sec": false, "stun": ["stun.example.org:3478", "192.0.2.1:3478"],
                "peers": [{"ip4": "10.0.3.2", "endpoint": "host2.example.org:5900"}]}"#,
        );
        assert_eq!(c.peers[0].endpoint.addr(), None);
        assert_eq!(c.peers[0].endpoint.host(), "host2.example.org");
        assert_eq!(c.peers[0].endpoint.port(), 5900);
        assert_eq!(c.stun[0].addr(), None);
        assert_eq!(c.stun[1].addr(), Some("192.0.2.1:3478".parse().unwrap()));
    }

    /// Every key of the table: its default, written out, reads back as the default; a value
    /// of no key's type is refused with the file, the key, what it takes and the value.
    #[test]
    fn every_key_takes_its_default_and_refuses_a_bad_value_by_name() {
        let keys = Config::keys();
        assert_eq!(keys.len(), 35);
        for k in &keys {
            if k.name == "switchmode" {
                continue; // its default, 0, is refused (switchmode_0_is_refused_with_the_hint)
            }
            let text = json!({"switchmode": 1, k.name: k.default}).to_string();
            let (c, warnings) = parse_ok(&text);
            assert_eq!(
                c,
                Config {
                    switchmode: 1,
                    ..Config::default()
                },
                "{}",
                k.name
            );
            assert!(warnings.is_empty(), "{}: {warnings:?}", k.name);

            let bad = json!({"not": ["a", "value"]});
            let text = json!({"switchmode": 1, k.name: bad}).to_string();
            assert_eq!(
                error(&text),
                format!(
                    r#"config.json: "{}": expected {}, got {{"not":["a","value"]}}"#,
                    k.name, k.expected
                )
            );
        }
        let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
        for original in [
            "xmpp_username",
            "xmpp_password",
            "xmpp_host",
            "ip4",
            "ip4_mask",
            "ip6_mask",
            "subnet_mask",
            "svpn_port",
            "uid_size",
            "sec",
            "wait_time",
            "buf_size",
            "tincan_logging",
            "controller_logging",
            "icc",
            "icc_port",
            "switchmode",
            "stun",
            "turn",
            "local_uid",
            "network_ignore_list",
            "on-demand_connection",
            "on-demand_inactive_timeout",
            "trim_enabled",
            "router_mode",
        ] {
            assert!(
                names.contains(&original),
                "{original} is missing from the table"
            );
        }
    }

    /// Every unsupported key, given a value other than its default, is accepted with a warning
    /// that names it; so is every original key without a field.
    #[test]
    fn unsupported_keys_warn_naming_the_key() {
        let other = |default: &Value| match default {
            Value::Bool(b) => json!(!b),
            Value::String(_) => json!("x"),
            Value::Array(_) => json!(["eth9"]),
            Value::Number(n) => json!(n.as_u64().unwrap() + 1),
            Value::Null => json!("x"),
            Value::Object(_) => unreachable!(),
        };
        let unsupported: Vec<KeyDoc> = Config::keys()
            .into_iter()
            .filter(|k| matches!(k.support, Support::Unsupported(_)))
            .collect();
        assert_eq!(unsupported.len(), 5);
        let ignored_keys = IGNORED_KEYS.iter().map(|(name, default, _)| {
            let default = default.map_or(Value::Null, |d| serde_json::from_str(d).unwrap());
            (*name, default)
        });
        for (name, default) in unsupported
            .iter()
            .map(|k| (k.name, k.default.clone()))
            .chain(ignored_keys)
        {
            let (_, warnings) = parse_ok(&json!({"switchmode": 1, name: default}).to_string());
            assert!(warnings.is_empty(), "{name} at its default: {warnings:?}");
            let value = other(&default);
            let (_, warnings) = parse_ok(&json!({"switchmode": 1, name: value}).to_string());
            assert_eq!(warnings.len(), 1, "{name}: {warnings:?}");
            assert!(
                warnings[0].starts_with(&format!(
                    r#"config.json: "{name}" is not supported yet and is ignored for now ("#
                )),
                "{}",
                warnings[0]
            );
        }
    }

    #[test]
    fn every_key_has_help() {
        let keys = Config::keys();
        for k in &keys {
            assert!(!k.help.is_empty(), "{} has no help text", k.name);
        }
        let sec = keys.iter().find(|k| k.name == "sec").unwrap();
        assert!(
            sec.help[0].starts_with("Links are authenticated"),
            "{:?}",
            sec.help
        );
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn sec_requires_a_fingerprint_per_peer_and_names_the_peer() {
        let e = Config::from_json_str(
            r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900"}]}"#,
            "config.json",
        )
        .unwrap_err();
        assert!(
            e.0.starts_with("config.json: \"peers\"[0]: missing \"fpr\""),
            "{e}"
        );
        let (c, _) = Config::from_json_str(
            r#"{"switchmode": 1, "sec": false, "peers": [{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900"}]}"#,
            "config.json",
        )
        .unwrap();
        assert_eq!(c.peers[0].fpr, None);
    }

    #[test]
    fn bad_fingerprint_and_rekey_values_are_named() {
        let e = Config::from_json_str(
            r#"{"switchmode": 1, "peers": [{"ip4": "10.0.3.2", "endpoint": "10.99.0.2:5900", "fpr": "abc"}]}"#,
            "c.json",
        )
        .unwrap_err();
        assert!(
            e.0.contains("\"peers\"[0].\"fpr\"") && e.0.contains("64 hex"),
            "{e}"
        );
        let e = Config::from_json_str(r#"{"switchmode": 1, "rekey_interval": 0}"#, "c.json")
            .unwrap_err();
        assert!(e.0.contains("\"rekey_interval\""), "{e}");
        let (c, _) = Config::from_json_str(
            r#"{"switchmode": 1, "rekey_interval": 5, "key_file": "/etc/ipop/k"}"#,
            "c.json",
        )
        .unwrap();
        assert_eq!(
            (c.rekey_interval, c.key_file),
            (5, Some(PathBuf::from("/etc/ipop/k")))
        );
    }
}
