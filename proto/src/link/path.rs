//! Path choice for one link: where hellos and handshakes go (every candidate until one
//! answers, then probes back towards a direct path), and how the link reaches its peer now.

use crate::id::Candidate;
use std::net::SocketAddr;

/// How datagrams to an address leave this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// Straight from the link socket.
    Direct,
    /// Wrapped for our TURN relay, which sends them on from its relayed address.
    ViaRelay,
}

/// What `get_state` calls the path of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A host address of the peer.
    Direct,
    /// The public address of the peer's NAT (a punched hole).
    Reflexive,
    /// Through a TURN relay, ours or the peer's.
    Relayed,
    /// A configured endpoint, without candidates.
    Static,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Reflexive => "reflexive",
            PathKind::Relayed => "relayed",
            PathKind::Static => "static",
        }
    }
}

/// The path of a link whose peer is at `endpoint`, reached by `route`.
pub fn path_kind(endpoint: SocketAddr, route: Route, candidates: &[Candidate]) -> PathKind {
    if route == Route::ViaRelay {
        return PathKind::Relayed;
    }
    match candidates.iter().find(|c| c.addr() == endpoint) {
        Some(Candidate::Relay(_)) => PathKind::Relayed,
        Some(Candidate::Host(_)) => PathKind::Direct,
        Some(Candidate::Srflx(_)) => PathKind::Reflexive,
        None if candidates.is_empty() => PathKind::Static,
        None => PathKind::Reflexive,
    }
}

/// Where a hello or handshake goes, in this order: the current endpoint (while the link is not
/// up), then every candidate the peer signalled: host and reflexive addresses directly, and
/// while the link is down also its public addresses through our relay (what reaches a peer
/// behind a symmetric NAT without a relay of its own) and its relay. On an up link on a
/// relayed path, the direct candidates only: probing for a way back to a direct path. Never
/// the same target twice, never port 0.
pub fn probe_targets(
    endpoint: SocketAddr,
    route: Route,
    candidates: &[Candidate],
    up: bool,
    have_relay: bool,
) -> Vec<(SocketAddr, Route)> {
    fn push(out: &mut Vec<(SocketAddr, Route)>, a: SocketAddr, r: Route) {
        if a.port() != 0 && !out.contains(&(a, r)) {
            out.push((a, r));
        }
    }
    let mut out = Vec::new();
    if !up {
        push(&mut out, endpoint, route);
    }
    for c in candidates {
        match *c {
            Candidate::Host(a) => push(&mut out, a, Route::Direct),
            Candidate::Srflx(a) => {
                push(&mut out, a, Route::Direct);
                if have_relay && !up {
                    push(&mut out, a, Route::ViaRelay);
                }
            }
            Candidate::Relay(a) if !up => push(&mut out, a, Route::Direct),
            Candidate::Relay(_) => {}
        }
    }
    if up && out.is_empty() {
        push(&mut out, endpoint, route);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Candidate {
        s.parse().unwrap()
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_down_link_probes_the_endpoint_then_every_candidate_in_order() {
        let cands = [
            c("host:192.168.1.2:5900"),
            c("srflx:203.0.113.2:40000"),
            c("relay:203.0.113.10:49152"),
        ];
        let t = probe_targets(a("192.168.1.2:5900"), Route::Direct, &cands, false, true);
        assert_eq!(
            t,
            vec![
                (a("192.168.1.2:5900"), Route::Direct),
                (a("203.0.113.2:40000"), Route::Direct),
                (a("203.0.113.2:40000"), Route::ViaRelay),
                (a("203.0.113.10:49152"), Route::Direct),
            ]
        );
        // Without a relay of our own, nothing goes through one.
        let t = probe_targets(a("192.168.1.2:5900"), Route::Direct, &cands, false, false);
        assert!(t.iter().all(|(_, r)| *r == Route::Direct));
    }

    #[test]
    fn an_up_relayed_link_probes_only_the_direct_candidates() {
        let cands = [
            c("host:192.168.1.2:5900"),
            c("srflx:203.0.113.2:40000"),
            c("relay:203.0.113.10:49152"),
        ];
        let t = probe_targets(a("203.0.113.10:49152"), Route::Direct, &cands, true, true);
        assert_eq!(
            t,
            vec![
                (a("192.168.1.2:5900"), Route::Direct),
                (a("203.0.113.2:40000"), Route::Direct),
            ]
        );
        // A static link keeps its endpoint.
        let t = probe_targets(a("10.99.0.2:5900"), Route::Direct, &[], true, false);
        assert_eq!(t, vec![(a("10.99.0.2:5900"), Route::Direct)]);
        assert!(probe_targets(a("10.99.0.2:0"), Route::Direct, &[], false, false).is_empty());
    }

    #[test]
    fn the_path_is_named_after_the_candidate_in_use() {
        let cands = [
            c("host:192.168.1.2:5900"),
            c("srflx:203.0.113.2:40000"),
            c("relay:203.0.113.10:49152"),
        ];
        let k = |ep: &str, r| path_kind(a(ep), r, &cands);
        assert_eq!(k("192.168.1.2:5900", Route::Direct), PathKind::Direct);
        assert_eq!(k("203.0.113.2:40000", Route::Direct), PathKind::Reflexive);
        assert_eq!(k("203.0.113.2:40000", Route::ViaRelay), PathKind::Relayed);
        assert_eq!(k("203.0.113.10:49152", Route::Direct), PathKind::Relayed);
        assert_eq!(k("198.51.100.7:1000", Route::Direct), PathKind::Reflexive);
        assert_eq!(
            path_kind(a("10.99.0.2:5900"), Route::Direct, &[]),
            PathKind::Static
        );
    }
}
