//! This host's addresses for host candidates, read with getifaddrs(3): no program is run, so
//! this works with an empty PATH and never blocks the forwarding loop on a child process.

use std::net::IpAddr;

/// Every address of an interface that is up, IPv4 first, except loopback, IPv6 link-local
/// (it needs a scope, and a peer elsewhere cannot reach it) and the addresses of `ignore` (the
/// TAP, the bridge it is a port of, and the config's `network_ignore_list`).
pub fn host_addresses(ignore: &[String]) -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut v6 = Vec::new();
    for ifa in addrs {
        if ignore.contains(&ifa.interface_name) {
            continue;
        }
        if !ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(addr) = ifa.address.as_ref() else {
            continue;
        };
        if let Some(sin) = addr.as_sockaddr_in() {
            let ip = IpAddr::V4(sin.ip());
            if !ip.is_loopback() && !out.contains(&ip) {
                out.push(ip);
            }
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            let ip = sin6.ip();
            let link_local = ip.segments()[0] & 0xffc0 == 0xfe80;
            if !ip.is_loopback() && !link_local && !v6.contains(&IpAddr::V6(ip)) {
                v6.push(IpAddr::V6(ip));
            }
        }
    }
    out.extend(v6);
    out
}

/// The bridge `ifname` is a port of, from sysfs.
pub fn bridge_of(ifname: &str) -> Option<String> {
    let target = std::fs::read_link(format!("/sys/class/net/{ifname}/master")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// The ports of bridge `bridge` and their MTUs, from sysfs (empty when it is no bridge).
pub fn bridge_port_mtus(bridge: &str) -> Vec<(String, u32)> {
    let Ok(dir) = std::fs::read_dir(format!("/sys/class/net/{bridge}/brif")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u32)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let port = e.file_name().to_string_lossy().into_owned();
            let mtu = std::fs::read_to_string(format!("/sys/class/net/{port}/mtu")).ok()?;
            Some((port, mtu.trim().parse().ok()?))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_never_a_candidate_and_ignored_interfaces_are_skipped() {
        let all = host_addresses(&[]);
        assert!(all.iter().all(|ip| !ip.is_loopback()));
        assert!(all.iter().all(|ip| match ip {
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 != 0xfe80,
            IpAddr::V4(_) => true,
        }));
        // Ignoring every interface leaves nothing.
        let names: Vec<String> = nix::ifaddrs::getifaddrs()
            .map(|a| a.map(|i| i.interface_name).collect())
            .unwrap_or_default();
        assert!(host_addresses(&names).is_empty());
    }
}
