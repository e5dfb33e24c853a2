//! The IPOP gvpn config: every key of the original `gvpn_controller.py` CONFIG under its original
//! name and default (reference/ipop-v1-protocol.md section 7), plus this project's additions
//! (`peers`, `bridge`, `link_port`, `tap_mtu`). This module owns parsing, validation, the layering
//! of `-c FILE` under `-s JSON`, and the identities derived from the config (uid, `gen_ip6`).
//!
//! Parsing reads no files ([`Config::load`] is the one helper that does). The one piece of I/O left
//! in it is resolving a peer endpoint written as a host name rather than an IP address.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sha1::{Digest, Sha1};

/// The /64 prefix `gen_ip6` puts in front of a uid, as in the original.
pub const IP6_PREFIX: &str = "fd50:0dbc:41f2:4a3c";

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

/// The parsed, validated config. Field names are the original keys; the two with a '-' in the
/// original (`on-demand_*`) use '_' here.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    pub xmpp_username: Option<String>,
    pub xmpp_password: Option<String>,
    pub xmpp_host: Option<String>,
    pub xmpp_port: u16,
    pub ip4: Ipv4Addr,
    pub ip4_mask: u8,
    pub ip6_mask: u8,
    pub subnet_mask: u8,
    /// tincan's control port on loopback.
    pub svpn_port: u16,
    pub uid_size: usize,
    pub sec: bool,
    /// Seconds.
    pub wait_time: u64,
    pub buf_size: usize,
    pub tincan_logging: u8,
    pub controller_logging: LogLevel,
    pub icc: bool,
    /// The controller's port on loopback for what tincan hands up (punts, ICC, link events).
    pub icc_port: u16,
    /// 0 (routed GroupVPN, refused by validation) or 1 (switch mode).
    pub switchmode: u8,
    /// "host:port" strings, as written.
    pub stun: Vec<String>,
    pub turn: Vec<TurnServer>,
    pub local_uid: String,
    pub network_ignore_list: Vec<String>,
    /// Key `"on-demand_connection"`.
    pub on_demand_connection: bool,
    /// Key `"on-demand_inactive_timeout"`, seconds.
    pub on_demand_inactive_timeout: u64,
    pub trim_enabled: bool,
    pub router_mode: bool,
    pub contr_port: u16,
    pub tincan_path: Option<PathBuf>,
    /// Static peers, in place of XMPP discovery.
    pub peers: Vec<PeerConfig>,
    /// Linux bridge the TAP is attached to, if the controller should do it.
    pub bridge: Option<String>,
    /// tincan's UDP port for links on the underlay.
    pub link_port: u16,
    pub tap_mtu: u16,
    /// This node's static key (X25519, hex). None: `ipop.key` beside the config file.
    pub key_file: Option<PathBuf>,
    /// PEM file the XMPP client trusts besides the system roots (a private CA, or the server's
    /// self-signed certificate).
    pub xmpp_ca: Option<PathBuf>,
    /// Seconds after which an encrypted link runs a new handshake.
    pub rekey_interval: u64,
}

/// A peer named in `"peers"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub ip4: Ipv4Addr,
    /// sha1 of the ip4 string, 40 lowercase hex digits: the same uid the peer computes for itself.
    pub uid: String,
    pub endpoint: SocketAddr,
    /// The peer's key fingerprint (64 lowercase hex digits): its link is accepted only with
    /// that key. Required while "sec" is true.
    pub fpr: Option<String>,
}

/// One `"turn"` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnServer {
    pub server: String,
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

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// sha1 of the ip4 string, lowercase hex: the original's GroupVPN uid, derived from the claimed
/// address and not from a key.
pub fn uid_for_ip4(ip4: &str) -> String {
    hex::encode(Sha1::digest(ip4.as_bytes()))
}

/// The TAP's IPv6 address for a uid, as the original's `gen_ip6`.
///
/// Panics if `uid` is shorter than 16 bytes or not ASCII; uids come from [`uid_for_ip4`].
pub fn gen_ip6(uid: &str) -> String {
    format!(
        "{IP6_PREFIX}:{}:{}:{}:{}",
        &uid[0..4],
        &uid[4..8],
        &uid[8..12],
        &uid[12..16]
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

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("xmpp_username", &self.xmpp_username)
            .field(
                "xmpp_password",
                &self.xmpp_password.as_ref().map(|_| "<redacted>"),
            )
            .field("xmpp_host", &self.xmpp_host)
            .field("xmpp_port", &self.xmpp_port)
            .field("ip4", &self.ip4)
            .field("ip4_mask", &self.ip4_mask)
            .field("ip6_mask", &self.ip6_mask)
            .field("subnet_mask", &self.subnet_mask)
            .field("svpn_port", &self.svpn_port)
            .field("uid_size", &self.uid_size)
            .field("sec", &self.sec)
            .field("wait_time", &self.wait_time)
            .field("buf_size", &self.buf_size)
            .field("tincan_logging", &self.tincan_logging)
            .field("controller_logging", &self.controller_logging)
            .field("icc", &self.icc)
            .field("icc_port", &self.icc_port)
            .field("switchmode", &self.switchmode)
            .field("stun", &self.stun)
            .field("turn", &self.turn)
            .field("local_uid", &self.local_uid)
            .field("network_ignore_list", &self.network_ignore_list)
            .field("on_demand_connection", &self.on_demand_connection)
            .field(
                "on_demand_inactive_timeout",
                &self.on_demand_inactive_timeout,
            )
            .field("trim_enabled", &self.trim_enabled)
            .field("router_mode", &self.router_mode)
            .field("contr_port", &self.contr_port)
            .field("tincan_path", &self.tincan_path)
            .field("peers", &self.peers)
            .field("bridge", &self.bridge)
            .field("link_port", &self.link_port)
            .field("tap_mtu", &self.tap_mtu)
            .field("key_file", &self.key_file)
            .field("xmpp_ca", &self.xmpp_ca)
            .field("rekey_interval", &self.rekey_interval)
            .finish()
    }
}

/// The original's defaults (switchmode 0 included, which validation then refuses) and ours for
/// the added keys.
impl Default for Config {
    fn default() -> Self {
        Config {
            xmpp_username: None,
            xmpp_password: None,
            xmpp_host: None,
            xmpp_port: 5222,
            ip4: Ipv4Addr::new(172, 16, 0, 1),
            ip4_mask: 24,
            ip6_mask: 64,
            subnet_mask: 32,
            svpn_port: 5800,
            uid_size: UID_SIZE,
            sec: true,
            wait_time: 15,
            buf_size: 65507,
            tincan_logging: 1,
            controller_logging: LogLevel::Info,
            icc: false,
            icc_port: 30000,
            switchmode: 0,
            stun: DEFAULT_STUN.iter().map(|s| s.to_string()).collect(),
            turn: Vec::new(),
            local_uid: String::new(),
            network_ignore_list: Vec::new(),
            on_demand_connection: false,
            on_demand_inactive_timeout: 600,
            trim_enabled: false,
            router_mode: false,
            contr_port: 5801,
            tincan_path: None,
            peers: Vec::new(),
            bridge: None,
            link_port: 5900,
            tap_mtu: 1400,
            key_file: None,
            xmpp_ca: None,
            rekey_interval: 120,
        }
    }
}

impl Config {
    /// Parse and validate. `source` names the input in messages (e.g. "config.json" or "-s").
    /// Returns the config and a list of warning lines (unknown keys, keys accepted but not
    /// supported yet). Peer endpoints given as host names are resolved here.
    pub fn from_json_str(text: &str, source: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let object = parse_object(text, source)?;
        from_layers(&[(&object, source)])
    }

    /// `-c FILE` then `-s JSON` overrides merged key by key over the file (either may be absent;
    /// with neither, defaults, which validation refuses for their switchmode 0).
    pub fn load(
        file: Option<&Path>,
        overrides: Option<&str>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let file_layer = match file {
            Some(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("{name}: cannot read: {e}")))?;
                Some((parse_object(&text, &name)?, name))
            }
            None => None,
        };
        let override_layer = match overrides {
            Some(text) => Some((parse_object(text, OVERRIDE_SOURCE)?, OVERRIDE_SOURCE)),
            None => None,
        };
        let layers: Vec<(&Map<String, Value>, &str)> = file_layer
            .iter()
            .map(|(object, name)| (object, name.as_str()))
            .chain(override_layer.iter().map(|(object, name)| (object, *name)))
            .collect();
        from_layers(&layers)
    }

    /// sha1(ip4 string), lowercase hex, `uid_size` digits.
    pub fn uid(&self) -> String {
        let mut uid = uid_for_ip4(&self.ip4.to_string());
        uid.truncate(self.uid_size);
        uid
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
}

impl<'a> Input<'a> {
    fn new(layers: &[(&Map<String, Value>, &'a str)]) -> Self {
        let mut values = BTreeMap::new();
        for (object, source) in layers {
            for (key, value) in *object {
                values.insert(key.clone(), (value.clone(), *source));
            }
        }
        let fallback = layers.first().map_or(DEFAULTS_SOURCE, |(_, source)| source);
        Input {
            values,
            present: HashMap::new(),
            fallback,
        }
    }

    fn take(&mut self, key: &'static str) -> Option<(Value, &'a str)> {
        let (value, source) = self.values.remove(key)?;
        self.present.insert(key, source);
        Some((value, source))
    }

    fn source(&self, key: &str) -> &'a str {
        self.present.get(key).copied().unwrap_or(self.fallback)
    }

    fn is_present(&self, key: &str) -> bool {
        self.present.contains_key(key)
    }

    /// The key's value, or `default` when absent; a value `parse` refuses is an error.
    fn value<T>(
        &mut self,
        key: &'static str,
        default: T,
        expected: &str,
        parse: impl Fn(&Value) -> Option<T>,
    ) -> Result<T, ConfigError> {
        match self.take(key) {
            None => Ok(default),
            Some((value, source)) => {
                parse(&value).ok_or_else(|| wrong(source, &quoted(key), expected, &value))
            }
        }
    }
}

const PORT: &str = "an integer 1-65535";
const BOOL: &str = "true or false";
const STRING_OR_NULL: &str = "a string or null";
const STRING_LIST: &str = "a list of strings";
const LOG_LEVELS: &str =
    "one of \"DEBUG\", \"INFO\", \"WARNING\", \"ERROR\", \"CRITICAL\", \"PKTDUMP\"";
const IFNAME: &str = "a Linux interface name (1-15 bytes, no '/', ':' or whitespace) or null";

fn from_layers(
    layers: &[(&Map<String, Value>, &str)],
) -> Result<(Config, Vec<String>), ConfigError> {
    let mut input = Input::new(layers);
    let d = Config::default();

    let xmpp_username = input.value(
        "xmpp_username",
        d.xmpp_username.clone(),
        STRING_OR_NULL,
        opt_string,
    )?;
    let xmpp_password = input.value(
        "xmpp_password",
        d.xmpp_password.clone(),
        STRING_OR_NULL,
        opt_string,
    )?;
    let xmpp_host = input.value("xmpp_host", d.xmpp_host.clone(), STRING_OR_NULL, opt_string)?;
    let xmpp_port = input.value("xmpp_port", d.xmpp_port, PORT, int(1, 65535))?;
    let ip4 = input.value("ip4", d.ip4, "an IPv4 address string", |v| {
        v.as_str()?.parse().ok()
    })?;
    let ip4_mask = input.value("ip4_mask", d.ip4_mask, "an integer 0-32", int(0, 32))?;
    let ip6_mask = input.value("ip6_mask", d.ip6_mask, "an integer 0-128", int(0, 128))?;
    let subnet_mask = input.value("subnet_mask", d.subnet_mask, "an integer 0-32", int(0, 32))?;
    let svpn_port = input.value("svpn_port", d.svpn_port, PORT, int(1, 65535))?;
    let uid_size = input.value(
        "uid_size",
        d.uid_size,
        "40 (only whole 40-digit uids are supported)",
        int(UID_SIZE as u64, UID_SIZE as u64),
    )?;
    let sec = input.value("sec", d.sec, BOOL, Value::as_bool)?;
    let wait_time = input.value(
        "wait_time",
        d.wait_time,
        "an integer 1-86400 (seconds)",
        int(1, 86400),
    )?;
    // Capped at the largest UDP payload, which is what the original's default is.
    let buf_size = input.value(
        "buf_size",
        d.buf_size,
        "an integer 1024-65507",
        int(1024, 65507),
    )?;
    let tincan_logging = input.value(
        "tincan_logging",
        d.tincan_logging,
        "an integer 0-3",
        int(0, 3),
    )?;
    let controller_logging = input.value(
        "controller_logging",
        d.controller_logging,
        LOG_LEVELS,
        |v| LogLevel::parse(v.as_str()?),
    )?;
    let icc = input.value("icc", d.icc, BOOL, Value::as_bool)?;
    let icc_port = input.value("icc_port", d.icc_port, PORT, int(1, 65535))?;
    let switchmode = input.value("switchmode", d.switchmode, "0 or 1", int(0, 1))?;
    let stun = input.value(
        "stun",
        d.stun.clone(),
        "a list of \"host:port\" strings",
        |v| {
            v.as_array()?
                .iter()
                .map(|s| {
                    s.as_str()
                        .filter(|s| split_host_port(s).is_some())
                        .map(str::to_owned)
                })
                .collect()
        },
    )?;
    let turn = input.value(
        "turn",
        d.turn.clone(),
        "a list of {\"server\", \"user\", \"pass\"} objects with string values",
        |v| v.as_array()?.iter().map(turn_server).collect(),
    )?;
    let local_uid = input.value("local_uid", d.local_uid.clone(), "a string", |v| {
        v.as_str().map(str::to_owned)
    })?;
    let network_ignore_list = input.value(
        "network_ignore_list",
        d.network_ignore_list.clone(),
        STRING_LIST,
        string_list,
    )?;
    let on_demand_connection = input.value(
        "on-demand_connection",
        d.on_demand_connection,
        BOOL,
        Value::as_bool,
    )?;
    let on_demand_inactive_timeout = input.value(
        "on-demand_inactive_timeout",
        d.on_demand_inactive_timeout,
        "an integer 1-4294967295 (seconds)",
        int(1, u32::MAX as u64),
    )?;
    let trim_enabled = input.value("trim_enabled", d.trim_enabled, BOOL, Value::as_bool)?;
    let router_mode = input.value("router_mode", d.router_mode, BOOL, Value::as_bool)?;
    let contr_port = input.value("contr_port", d.contr_port, PORT, int(1, 65535))?;
    let tincan_path = input.value(
        "tincan_path",
        d.tincan_path.clone(),
        "a non-empty path string or null",
        |v| match v {
            Value::Null => Some(None),
            Value::String(s) if !s.is_empty() => Some(Some(PathBuf::from(s))),
            _ => None,
        },
    )?;
    let mut warnings = Vec::new();
    let peers = match input.take("peers") {
        None => d.peers.clone(),
        Some((value, source)) => parse_peers(&value, source, ip4, &mut warnings)?,
    };
    let bridge = input.value("bridge", d.bridge.clone(), IFNAME, |v| match v {
        Value::Null => Some(None),
        Value::String(s) if valid_ifname(s) => Some(Some(s.clone())),
        _ => None,
    })?;
    let link_port = input.value("link_port", d.link_port, PORT, int(1, 65535))?;
    let tap_mtu = input.value("tap_mtu", d.tap_mtu, "an integer 576-9000", int(576, 9000))?;
    let key_file = input.value(
        "key_file",
        d.key_file.clone(),
        "a non-empty path string or null",
        |v| match v {
            Value::Null => Some(None),
            Value::String(s) if !s.is_empty() => Some(Some(PathBuf::from(s))),
            _ => None,
        },
    )?;
    let xmpp_ca = input.value(
        "xmpp_ca",
        d.xmpp_ca.clone(),
        "a non-empty path string or null",
        |v| match v {
            Value::Null => Some(None),
            Value::String(s) if !s.is_empty() => Some(Some(PathBuf::from(s))),
            _ => None,
        },
    )?;
    let rekey_interval = input.value(
        "rekey_interval",
        d.rekey_interval,
        "an integer 1-86400 (seconds)",
        int(1, 86400),
    )?;

    let config = Config {
        xmpp_username,
        xmpp_password,
        xmpp_host,
        xmpp_port,
        ip4,
        ip4_mask,
        ip6_mask,
        subnet_mask,
        svpn_port,
        uid_size,
        sec,
        wait_time,
        buf_size,
        tincan_logging,
        controller_logging,
        icc,
        icc_port,
        switchmode,
        stun,
        turn,
        local_uid,
        network_ignore_list,
        on_demand_connection,
        on_demand_inactive_timeout,
        trim_enabled,
        router_mode,
        contr_port,
        tincan_path,
        peers,
        bridge,
        link_port,
        tap_mtu,
        key_file,
        xmpp_ca,
        rekey_interval,
    };

    check_switchmode(&config, &input)?;
    check_fingerprints(&config, &input)?;
    check_xmpp(&config, &input)?;
    check_distinct_ports(&config, &input)?;
    warn_unsupported(&config, &d, &input, &mut warnings);
    warn_leftovers(input, &mut warnings);
    Ok((config, warnings))
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

/// Keys kept in `Config` for compatibility whose feature is not built yet. Silent when they hold
/// their default, since then ignoring them changes nothing.
fn warn_unsupported(config: &Config, d: &Config, input: &Input, warnings: &mut Vec<String>) {
    let checks: [(&str, bool, &str); 5] = [
        (
            "on-demand_connection",
            config.on_demand_connection != d.on_demand_connection,
            "links to all \"peers\" are opened at start",
        ),
        (
            "trim_enabled",
            config.trim_enabled != d.trim_enabled,
            "links are not trimmed",
        ),
        (
            "router_mode",
            config.router_mode != d.router_mode,
            "router mode is not implemented",
        ),
        (
            "network_ignore_list",
            config.network_ignore_list != d.network_ignore_list,
            "links use the one socket on \"link_port\"",
        ),
        (
            "local_uid",
            config.local_uid != d.local_uid,
            "the uid is sha1 of \"ip4\"",
        ),
    ];
    for (key, differs, why) in checks {
        if differs && input.is_present(key) {
            warnings.push(ignored(input.source(key), key, why));
        }
    }
}

/// What is left after the known keys were taken: original keys this project has no field for,
/// and keys nobody knows.
fn warn_leftovers(input: Input, warnings: &mut Vec<String>) {
    for (key, (value, source)) in input.values {
        match untyped_original(&key) {
            Some((default, why)) => {
                let differs = match default {
                    Some(default) => value != default,
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

/// Original keys (svpn, multihop, statistics, router mode, loopback addresses) with their default
/// when the original had one, and why they do nothing here.
fn untyped_original(key: &str) -> Option<(Option<Value>, &'static str)> {
    const MULTIHOP: &str = "multihop is not implemented";
    const STATS: &str = "statistics reporting is not implemented";
    const ROUTER: &str = "router mode is not implemented";
    Some(match key {
        "multihop" => (Some(json!(false)), MULTIHOP),
        "multihop_cl" => (Some(json!(100)), MULTIHOP),
        "multihop_ihc" => (Some(json!(3)), MULTIHOP),
        "multihop_hl" => (Some(json!(10)), MULTIHOP),
        "multihop_tl" => (Some(json!(1)), MULTIHOP),
        "multihop_sr" => (Some(json!(true)), MULTIHOP),
        "stat_report" => (Some(json!(false)), STATS),
        "stat_server" => (Some(json!("metrics.ipop-project.org")), STATS),
        "stat_server_port" => (Some(json!(5000)), STATS),
        "router_ip" | "router_ip4_mask" | "router_ip6_mask" => (None, ROUTER),
        "localhost" => (Some(json!("127.0.0.1")), "tincan is always on loopback"),
        "localhost6" => (Some(json!("::1")), "tincan is always on loopback"),
        "ip6_prefix" => (Some(json!(IP6_PREFIX)), "the IPv6 prefix is fixed"),
        "bridge_ip" => (None, "use \"bridge\""),
        _ => return None,
    })
}

fn ignored(source: &str, key: &str, why: &str) -> String {
    format!(
        "{source}: {} is not supported yet and is ignored for now ({why})",
        quoted(key)
    )
}

fn parse_peers(
    value: &Value,
    source: &str,
    own_ip4: Ipv4Addr,
    warnings: &mut Vec<String>,
) -> Result<Vec<PeerConfig>, ConfigError> {
    let entries = value.as_array().ok_or_else(|| {
        wrong(
            source,
            "\"peers\"",
            "a list of {\"ip4\", \"endpoint\"} objects",
            value,
        )
    })?;
    let mut peers: Vec<PeerConfig> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let place = format!("\"peers\"[{i}]");
        let object = entry.as_object().ok_or_else(|| {
            wrong(
                source,
                &place,
                "an object {\"ip4\": ..., \"endpoint\": ...}",
                entry,
            )
        })?;
        let field = |name: &str| {
            object
                .get(name)
                .ok_or_else(|| ConfigError(format!("{source}: {place}: missing {}", quoted(name))))
        };

        let ip4_value = field("ip4")?;
        let ip4_place = format!("{place}.\"ip4\"");
        let ip4: Ipv4Addr = ip4_value
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| wrong(source, &ip4_place, "an IPv4 address string", ip4_value))?;
        if ip4 == own_ip4 {
            return Err(wrong(
                source,
                &ip4_place,
                "an address other than our own \"ip4\"",
                ip4_value,
            ));
        }
        if let Some(j) = peers.iter().position(|p| p.ip4 == ip4) {
            return Err(wrong(
                source,
                &ip4_place,
                &format!("an address not already given by \"peers\"[{j}]"),
                ip4_value,
            ));
        }

        let endpoint_value = field("endpoint")?;
        let endpoint = endpoint_value
            .as_str()
            .ok_or_else(String::new)
            .and_then(resolve_endpoint)
            .map_err(|detail| {
                let mut e = wrong(
                    source,
                    &format!("{place}.\"endpoint\""),
                    "\"ip:port\" or a resolvable \"host:port\"",
                    endpoint_value,
                );
                e.0.push_str(&detail);
                e
            })?;

        let fpr = match object.get("fpr") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .filter(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
                    .map(str::to_ascii_lowercase)
                    .ok_or_else(|| {
                        wrong(
                            source,
                            &format!("{place}.\"fpr\""),
                            "a key fingerprint of 64 hex digits",
                            v,
                        )
                    })?,
            ),
        };

        for key in object
            .keys()
            .filter(|k| *k != "ip4" && *k != "endpoint" && *k != "fpr")
        {
            warnings.push(format!(
                "{source}: {place}: unknown key {} ignored",
                quoted(key)
            ));
        }
        peers.push(PeerConfig {
            ip4,
            uid: uid_for_ip4(&ip4.to_string()),
            endpoint,
            fpr,
        });
    }
    Ok(peers)
}

/// An IP literal, or else a host name looked up now. The error is a detail for the message.
fn resolve_endpoint(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return match addr.port() {
            0 => Err(" (port 0)".to_owned()),
            _ => Ok(addr),
        };
    }
    let (host, port) = split_host_port(text).ok_or_else(String::new)?;
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!(" (cannot resolve: {e})"))?
        .collect();
    // Underlays here are IPv4; a v6 answer first from the resolver must not win over a v4 one.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| " (resolves to no address)".to_owned())
}

/// "host:port" or "[v6]:port", port 1-65535; the host is not looked up.
fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
    let plausible = !host.is_empty() && !host.chars().any(char::is_whitespace);
    plausible.then_some((host, port))
}

/// The kernel's `dev_valid_name`, so a bad name fails here and not at attach time.
fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// A JSON integer (not a string, float or negative number) in `lo..=hi`.
fn int<T: TryFrom<u64>>(lo: u64, hi: u64) -> impl Fn(&Value) -> Option<T> {
    move |v| {
        v.as_u64()
            .filter(|n| (lo..=hi).contains(n))
            .and_then(|n| T::try_from(n).ok())
    }
}

fn opt_string(v: &Value) -> Option<Option<String>> {
    match v {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        _ => None,
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn turn_server(v: &Value) -> Option<TurnServer> {
    let object = v.as_object()?;
    let get = |name: &str| object.get(name)?.as_str().map(str::to_owned);
    Some(TurnServer {
        server: get("server")?,
        user: get("user")?,
        pass: get("pass")?,
    })
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

    /// A file in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "ipop-config-test-{}-{name}.json",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
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
            c.stun,
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
        assert_eq!(uid_for_ip4("10.0.3.1"), UID_10_0_3_1);
        assert_eq!(uid_for_ip4("10.0.3.2"), UID_10_0_3_2);
        let (c, _) = parse_ok(r#"{"switchmode": 1, "ip4": "10.0.3.1"}"#);
        assert_eq!(c.uid(), UID_10_0_3_1);
        assert_eq!(c.uid().len(), UID_SIZE);
    }

    #[test]
    fn gen_ip6_puts_the_first_16_uid_digits_after_the_prefix() {
        assert_eq!(
            gen_ip6(UID_10_0_3_1),
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

        let e = Config::load(None, None).unwrap_err().to_string();
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
                uid: UID_10_0_3_2.to_owned(),
                endpoint: "192.168.50.2:5900".parse().unwrap(),
                fpr: Some("ab".repeat(32)),
            }
        );
        assert_eq!(c.peers[1].uid, uid_for_ip4("10.0.3.3"));
        assert_eq!(c.peers[1].endpoint, "[fe80::1]:6000".parse().unwrap());
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
        assert_eq!(c.stun, ["stun.example.org:3478"]);
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
        assert_eq!(c.turn[0].server, "t.example.org:3478");
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
        let file = TempFile::new(
            "override",
            r#"{"switchmode": 1, "ip4": "10.0.3.1", "icc_port": 30001, "tap_mtu": 1300}"#,
        );
        let (c, warnings) = Config::load(
            Some(&file.0),
            Some(r#"{"ip4": "10.0.3.2", "tap_mtu": 1280}"#),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.ip4, Ipv4Addr::new(10, 0, 3, 2));
        assert_eq!(c.tap_mtu, 1280);
        // Keys the override does not name keep the file's values.
        assert_eq!(c.icc_port, 30001);
        assert_eq!(c.switchmode, 1);
        assert_eq!(c.uid(), UID_10_0_3_2);
    }

    #[test]
    fn messages_name_the_layer_that_gave_the_value() {
        let file = TempFile::new("layers", r#"{"switchmode": 1, "foo": 1}"#);
        let name = file.0.display().to_string();
        let e = Config::load(Some(&file.0), Some(r#"{"icc_port": "abc"}"#)).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"-s: "icc_port": expected an integer 1-65535, got "abc""#
        );
        let (_, warnings) = Config::load(Some(&file.0), Some(r#"{"bar": 1}"#)).unwrap();
        assert_eq!(
            warnings,
            [
                r#"-s: unknown key "bar" ignored"#.to_owned(),
                format!(r#"{name}: unknown key "foo" ignored"#),
            ]
        );
        let e = Config::load(Some(&file.0), Some("{"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("-s: not valid JSON: "), "{e}");
        let (c, _) = Config::load(None, Some(r#"{"switchmode": 1}"#)).unwrap();
        assert_eq!(c.switchmode, 1);
    }

    #[test]
    fn missing_file_message() {
        let path = std::env::temp_dir().join("ipop-config-test-does-not-exist/config.json");
        let e = Config::load(Some(&path), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: cannot read: No such file or directory (os error 2)",
                path.display()
            )
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
