//! How each kind of config value is read from JSON: integers in a range, booleans, strings,
//! addresses, the peers list, with the messages that say what was expected.

use super::*;

pub(super) const LOG_LEVELS: &str =
    "one of \"DEBUG\", \"INFO\", \"WARNING\", \"ERROR\", \"CRITICAL\", \"PKTDUMP\"";

/// A JSON integer (not a string, float or negative number) in `lo..=hi`.
pub(super) fn int<T: TryFrom<u64> + 'static>(lo: u64, hi: u64) -> Reader<T> {
    Reader::new(format!("an integer {lo}-{hi}"), move |v| {
        v.as_u64()
            .filter(|n| (lo..=hi).contains(n))
            .and_then(|n| T::try_from(n).ok())
    })
}

/// [`int`], or null for none.
pub(super) fn opt_int<T: TryFrom<u64> + 'static>(lo: u64, hi: u64) -> Reader<Option<T>> {
    let inner = int::<T>(lo, hi);
    Reader {
        expected: format!("{} or null", inner.expected),
        parse: Box::new(move |v, notes| match v {
            Value::Null => Ok(None),
            v => (inner.parse)(v, notes).map(Some),
        }),
    }
}

pub(super) fn seconds<T: TryFrom<u64> + 'static>(lo: u64, hi: u64) -> Reader<T> {
    int(lo, hi).expecting(format!("an integer {lo}-{hi} (seconds)"))
}

pub(super) fn boolean() -> Reader<bool> {
    Reader::new("true or false", Value::as_bool)
}

pub(super) fn opt_string() -> Reader<Option<String>> {
    Reader::new("a string or null", |v| match v {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        _ => None,
    })
}

pub(super) fn strings() -> Reader<Vec<String>> {
    Reader::new("a list of strings", |v| {
        v.as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect()
    })
}

/// The most accounts `xmpp_allow` may name.
pub(super) const MAX_XMPP_ALLOW: usize = 4096;

/// Whether `s` looks like a bare JID: `user@domain`, no resource, no white space, at most
/// 1023 bytes a part (RFC 7622). Lower-cased, as servers compare them.
fn bare_jid(s: &str) -> Option<String> {
    let (node, domain) = s.split_once('@')?;
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 1023
            && !p.contains(['@', '/'])
            && !p.contains(char::is_whitespace)
    };
    (ok(node) && ok(domain)).then(|| s.to_lowercase())
}

pub(super) fn opt_bare_jids() -> Reader<Option<Vec<String>>> {
    Reader::new(
        format!("null or a list of at most {MAX_XMPP_ALLOW} bare JIDs (\"user@domain\")"),
        |v| match v {
            Value::Null => Some(None),
            Value::Array(a) if a.len() <= MAX_XMPP_ALLOW => a
                .iter()
                .map(|j| bare_jid(j.as_str()?))
                .collect::<Option<Vec<_>>>()
                .map(Some),
            _ => None,
        },
    )
}

pub(super) fn ipv4() -> Reader<Ipv4Addr> {
    Reader::new("an IPv4 address string", |v| v.as_str()?.parse().ok())
}

pub(super) fn log_level() -> Reader<LogLevel> {
    Reader::new(LOG_LEVELS, |v| LogLevel::parse(v.as_str()?))
}

pub(super) fn cipher() -> Reader<CipherSetting> {
    let names: Vec<String> = CipherSetting::NAMES
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    Reader::new(format!("one of {}", names.join(", ")), |v| {
        CipherSetting::parse(v.as_str()?)
    })
}

pub(super) fn opt_path() -> Reader<Option<PathBuf>> {
    Reader::new("a non-empty path string or null", |v| match v {
        Value::Null => Some(None),
        Value::String(s) if !s.is_empty() => Some(Some(PathBuf::from(s))),
        _ => None,
    })
}

pub(super) fn host_port(v: &Value) -> Option<HostPort> {
    v.as_str()?.parse().ok()
}

pub(super) fn host_ports() -> Reader<Vec<HostPort>> {
    Reader::new("a list of \"host:port\" strings", |v| {
        v.as_array()?.iter().map(host_port).collect()
    })
}

pub(super) fn turn_servers() -> Reader<Vec<TurnServer>> {
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
pub(super) fn opt_ifname() -> Reader<Option<String>> {
    Reader::new(
        "a Linux interface name (1-15 bytes, no '/', ':' or whitespace) or null",
        |v| match v {
            Value::Null => Some(None),
            Value::String(s) if valid_ifname(s) => Some(Some(s.clone())),
            _ => None,
        },
    )
}

pub(super) fn valid_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `"peers"`: a list of `{"ip4", "endpoint", "fpr"}`; messages name the entry and its field.
pub(super) fn peers() -> Reader<Vec<PeerConfig>> {
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

pub(super) fn parse_peer(
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
pub(super) fn check_own_ip4(config: &Config, input: &Input) -> Result<(), ConfigError> {
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
pub(super) fn check_xmpp(config: &Config, input: &Input) -> Result<(), ConfigError> {
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
pub(super) fn check_fingerprints(config: &Config, input: &Input) -> Result<(), ConfigError> {
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

pub(super) fn check_switchmode(config: &Config, input: &Input) -> Result<(), ConfigError> {
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
pub(super) fn check_distinct_ports(config: &Config, input: &Input) -> Result<(), ConfigError> {
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
pub(super) fn warn_leftovers(input: Input, warnings: &mut Vec<String>) {
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

pub(super) fn ignored(source: &str, key: &str, why: &str) -> String {
    format!(
        "{source}: {} is not supported yet and is ignored for now ({why})",
        quoted(key)
    )
}

pub(super) fn wrong(source: &str, place: &str, expected: &str, got: &Value) -> ConfigError {
    ConfigError(format!(
        "{source}: {place}: expected {expected}, got {}",
        shown(got)
    ))
}

pub(super) fn quoted(key: &str) -> String {
    Value::from(key).to_string()
}

/// The value as JSON, cut short so that the message stays one readable line.
pub(super) fn shown(v: &Value) -> String {
    const MAX_CHARS: usize = 60;
    let text = v.to_string();
    if text.chars().count() <= MAX_CHARS {
        text
    } else {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    }
}
