//! [`HostPort`]: a server or peer address as a config writes it, `host:port` with a host name
//! or an IP literal, validated once and never looked up here. Resolving a name is the caller's
//! business (the controller does it once at start); an IP literal needs no lookup.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// `host:port`, `ip:port` or `[ipv6]:port`, port 1-65535.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: Host,
    port: u16,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl HostPort {
    /// The host as written: a name, or the IP address without brackets.
    pub fn host(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address when the host is an IP literal; `None` for a name, which the caller
    /// resolves.
    pub fn addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

impl From<SocketAddr> for HostPort {
    fn from(a: SocketAddr) -> HostPort {
        HostPort {
            host: Host::Ip(a.ip()),
            port: a.port(),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

impl fmt::Debug for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostPort({self})")
    }
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(text: &str) -> Result<HostPort, String> {
        let bad = |detail: &str| format!("expected \"host:port\", got {text:?}{detail}");
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad(""))?;
        let port: u16 = port.parse().map_err(|_| bad(""))?;
        if port == 0 {
            return Err(bad(" (port 0)"));
        }
        let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
        let host = bracketed.unwrap_or(host);
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) if is_host_name(host) => Host::Name(host.to_owned()),
            Err(_) => return Err(bad("")),
        };
        Ok(HostPort { host, port })
    }
}

/// Letters, digits, '-', '_' and '.', at most 253 bytes: what a resolver can be asked for.
fn is_host_name(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

crate::id::text_serde!(HostPort);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_need_no_lookup_and_names_are_kept() {
        let a: HostPort = "192.0.2.1:3478".parse().unwrap();
        assert_eq!(a.addr(), Some("192.0.2.1:3478".parse().unwrap()));
        let v6: HostPort = "[fe80::1]:6000".parse().unwrap();
        assert_eq!(v6.addr(), Some("[fe80::1]:6000".parse().unwrap()));
        assert_eq!(v6.host(), "fe80::1");
        let n: HostPort = "stun.l.google.com:19302".parse().unwrap();
        assert_eq!(
            (n.addr(), n.host().as_str(), n.port()),
            (None, "stun.l.google.com", 19302)
        );
        for text in [
            "192.0.2.1:3478",
            "[fe80::1]:6000",
            "stun.l.google.com:19302",
        ] {
            let h: HostPort = text.parse().unwrap();
            assert_eq!(h.to_string(), text);
            assert_eq!(h.to_string().parse::<HostPort>().unwrap(), h);
        }
        assert_eq!(
            HostPort::from("10.99.0.2:5900".parse::<SocketAddr>().unwrap()).to_string(),
            "10.99.0.2:5900"
        );
    }

    #[test]
    fn bad_text_says_what_was_expected() {
        for bad in [
            "", "host", ":5", "h:0", "h:65536", "h:x", "a b:5", "[]:5", "[[x]]:5", "a:b:5",
        ] {
            let e = bad.parse::<HostPort>().unwrap_err();
            assert!(e.starts_with("expected \"host:port\", got "), "{bad}: {e}");
        }
        assert!("10.0.0.1:0"
            .parse::<HostPort>()
            .unwrap_err()
            .ends_with("(port 0)"));
    }
}
