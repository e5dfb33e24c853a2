//! The metrics endpoint's text: the controller's `get_state` and the last `get_state` answer
//! of tincan (polled every second), in the OpenMetrics text format that Prometheus scrapes
//! (docs/metrics.md). Written by `prometheus-client`, so names, types, units, `_total`
//! suffixes and label escaping follow the format; the values are copied from the two states at
//! each scrape, nothing is counted twice. The HTTP side is `metrics_http`.

use super::Controller;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use proto::api::controller::{ControllerState, NeighOwner, XmppState};
use proto::api::tincan::{LinkStatus, LocalState};
use proto::id::Uid;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

/// tincan's last `get_state` answer, and when it came (Unix seconds): its ages ("since the
/// last handshake") become timestamps, as Prometheus asks.
#[derive(Debug, Clone)]
pub(super) struct TincanSnapshot {
    pub state: LocalState,
    pub at_unix: f64,
}

impl TincanSnapshot {
    pub fn now(state: LocalState) -> TincanSnapshot {
        let at_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        TincanSnapshot { state, at_unix }
    }
}

/// Labels of a per-peer series: the uid, and the overlay address when it is known (the
/// config's peers, or a neighbour entry whose address is the owner's own), else "".
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
    peer_ip4: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerReason {
    #[prometheus(flatten)]
    peer: PeerLabels,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerPath {
    #[prometheus(flatten)]
    peer: PeerLabels,
    path: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// A label set the families take.
trait Labels: EncodeLabelSet + Clone + Debug + Hash + Eq + Send + Sync + 'static {}
impl<T: EncodeLabelSet + Clone + Debug + Hash + Eq + Send + Sync + 'static> Labels for T {}

type FloatGauge = Gauge<f64, AtomicU64>;

/// One registry per scrape, filled from the states.
struct Families(Registry);

impl Families {
    fn register(&mut self, name: &str, help: &str, unit: Option<Unit>, metric: impl MetricT) {
        match unit {
            Some(u) => self.0.register_with_unit(name, help, u, metric),
            None => self.0.register(name, help, metric),
        }
    }

    /// A family of metrics `M`, each set from its value by `set`.
    fn family<L: Labels, M: Default, V>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (L, V)>,
        set: impl Fn(&M, V),
    ) where
        Family<L, M>: MetricT,
    {
        let family = Family::<L, M>::default();
        for (labels, v) in samples {
            set(&family.get_or_create(&labels), v);
        }
        self.register(name, help, unit, family);
    }

    /// A counter family; `name` without `_total` or the unit (the encoder adds them).
    fn counters<L: Labels>(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) {
        self.family(name, help, unit, samples, |c: &Counter, v| {
            c.inc_by(v);
        });
    }

    fn counter(&mut self, name: &str, help: &str, unit: Option<Unit>, v: u64) {
        let c = Counter::<u64>::default();
        c.inc_by(v);
        self.register(name, help, unit, c);
    }

    fn gauges<L: Labels>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, i64)>,
    ) {
        self.family(name, help, None, samples, |g: &Gauge, v| {
            g.set(v);
        });
    }

    fn gauge(&mut self, name: &str, help: &str, v: i64) {
        let g = Gauge::<i64>::default();
        g.set(v);
        self.register(name, help, None, g);
    }

    fn seconds<L: Labels>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) {
        self.family(
            name,
            help,
            Some(Unit::Seconds),
            samples,
            |g: &FloatGauge, v| {
                g.set(v);
            },
        );
    }
}

/// What `Registry::register` takes.
trait MetricT: prometheus_client::registry::Metric {}
impl<T: prometheus_client::registry::Metric> MetricT for T {}

/// A counter's name as the map gives it, usable in a metric name: `[a-z0-9_]`, starting with
/// a letter, not ending in `_total` (tincan's names come from another process).
fn usable(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.ends_with("_total")
        && !name.ends_with("_created")
}

/// tincan's counters that have metrics of their own, left out of the generic `ipop_tincan_*`.
fn tincan_specific(name: &str) -> bool {
    name.starts_with("drop_") || name.starts_with("tap_rx_") || name.starts_with("tap_tx_")
}

/// The overlay address of each uid, where it is known: the config's peers, then any
/// neighbour entry whose address is the owner's own (a uid is the sha1 of the node's ip4).
pub(super) fn peer_ip4s(
    config_peers: impl IntoIterator<Item = Ipv4Addr>,
    c: &ControllerState,
) -> BTreeMap<Uid, Ipv4Addr> {
    let mut ip4s: BTreeMap<Uid, Ipv4Addr> = config_peers
        .into_iter()
        .map(|ip| (Uid::from_ip4(ip), ip))
        .collect();
    for n in &c.neigh {
        if let NeighOwner::Peer(u) = n.owner {
            if Uid::from_ip4(n.ip) == u {
                ip4s.entry(u).or_insert(n.ip);
            }
        }
    }
    ip4s
}

/// An API enum's name on the wire (`"direct"`, `"online"`, ...).
fn wire_name(v: impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The whole exposition: the controller's state `c`, tincan's last answer `t` (None when
/// tincan is not answering: its series are then left out rather than shown stale), and the
/// peers' overlay addresses.
pub(super) fn render(
    c: &ControllerState,
    t: Option<&TincanSnapshot>,
    ip4s: &BTreeMap<Uid, Ipv4Addr>,
) -> String {
    let label = |u: &Uid| PeerLabels {
        peer: u.to_string(),
        peer_ip4: ip4s.get(u).map(Ipv4Addr::to_string).unwrap_or_default(),
    };
    let mut f = Families(Registry::default());
    f.gauge(
        "ipop_tincan_up",
        "1 when ipop-tincan answered the controller's get_state within the last 3 seconds",
        i64::from(c.tincan_alive && t.is_some()),
    );
    f.gauges(
        "ipop_xmpp_state",
        "The XMPP signalling session: 1 for the current state, 0 for the others",
        [
            XmppState::Off,
            XmppState::Online,
            XmppState::Offline,
            XmppState::Failed,
        ]
        .into_iter()
        .map(|s| {
            let label = StateLabel {
                state: wire_name(s),
            };
            (label, i64::from(s == c.xmpp))
        }),
    );
    f.gauge(
        "ipop_neigh_entries",
        "Entries in the controller's ARP table",
        (c.neigh.len() as u64 + c.neigh_truncated) as i64,
    );
    f.gauge(
        "ipop_nd_entries",
        "Entries in the controller's IPv6 neighbour table",
        (c.neigh6.len() as u64 + c.neigh6_truncated) as i64,
    );
    f.counters(
        "ipop_peer_claims_refused",
        "ICC claims from the peer for an IP or MAC bound to this host or to another peer",
        None,
        c.peers.iter().map(|p| (label(&p.uid), p.claims_refused)),
    );
    f.counters(
        "ipop_peer_requests_rate_limited",
        "ICC arp_requests from the peer over its rate, not answered",
        None,
        c.peers
            .iter()
            .map(|p| (label(&p.uid), p.requests_rate_limited)),
    );
    for (name, v) in c.counters.iter().filter(|(n, _)| usable(n)) {
        f.counter(
            &format!("ipop_controller_{name}"),
            &format!("gvpn-controller's counter {name} (get_state \"counters\", docs/rpc.md)"),
            None,
            *v,
        );
    }
    if let Some(t) = t {
        render_tincan(&mut f, t, &label);
    }
    let mut out = String::new();
    encode(&mut out, &f.0).expect("writing to a String does not fail");
    out
}

fn render_tincan(f: &mut Families, t: &TincanSnapshot, label: &dyn Fn(&Uid) -> PeerLabels) {
    let s = &t.state;
    let counter = |name: &str| s.counters.get(name).copied().unwrap_or(0);
    f.gauge(
        "ipop_tincan_configured",
        "1 once the controller has configured ipop-tincan (set_local_ip)",
        i64::from(s.configured),
    );
    for (dir, what) in [("rx", "read from"), ("tx", "wrote to")] {
        f.counter(
            &format!("ipop_tap_{dir}_frames"),
            &format!("Frames ipop-tincan {what} the TAP"),
            None,
            counter(&format!("tap_{dir}_frames")),
        );
        f.counter(
            &format!("ipop_tap_{dir}"),
            &format!("Bytes of the frames ipop-tincan {what} the TAP"),
            Some(Unit::Bytes),
            counter(&format!("tap_{dir}_bytes")),
        );
    }
    f.counters(
        "ipop_tincan_dropped_frames",
        "Frames ipop-tincan dropped, by reason (its drop_* counters)",
        None,
        s.counters.iter().filter_map(|(n, v)| {
            let reason = n.strip_prefix("drop_")?;
            let reason = Reason {
                reason: reason.into(),
            };
            usable(n).then_some((reason, *v))
        }),
    );
    for (name, v) in s.counters.iter() {
        if usable(name) && !tincan_specific(name) {
            f.counter(
                &format!("ipop_tincan_{name}"),
                &format!("ipop-tincan's counter {name} (get_state \"counters\", docs/rpc.md)"),
                None,
                *v,
            );
        }
    }
    f.gauge(
        "ipop_tincan_macs",
        "MAC addresses ipop-tincan forwards to a link",
        (s.macs.len() as u64 + s.macs_truncated) as i64,
    );
    let peers = &s.peers;
    let per_peer = |get: fn(&proto::api::tincan::PeerState) -> u64| {
        peers.iter().map(move |p| (label(&p.uid), get(p)))
    };
    f.gauges(
        "ipop_peer_up",
        "1 while the link to the peer is online",
        peers
            .iter()
            .map(|p| (label(&p.uid), i64::from(p.status == LinkStatus::Online))),
    );
    f.gauges(
        "ipop_peer_path",
        "How the link reaches the peer (label path: direct, reflexive, relayed or static; \
         endpoint: the address it sends to); always 1",
        peers.iter().map(|p| {
            let l = PeerPath {
                peer: label(&p.uid),
                path: wire_name(p.path),
                endpoint: p.endpoint.to_string(),
            };
            (l, 1)
        }),
    );
    for (dir, what) in [("rx", "received from"), ("tx", "sent to")] {
        let rx = dir == "rx";
        f.counters(
            &format!("ipop_peer_{dir}_frames"),
            &format!("Frames {what} the peer over the link"),
            None,
            per_peer(if rx { |p| p.rx_frames } else { |p| p.tx_frames }),
        );
        f.counters(
            &format!("ipop_peer_{dir}"),
            &format!("Bytes of the frames {what} the peer over the link"),
            Some(Unit::Bytes),
            per_peer(if rx { |p| p.rx_bytes } else { |p| p.tx_bytes }),
        );
        f.counters(
            &format!("ipop_peer_icc_{dir}_messages"),
            &format!("Controller-to-controller messages {what} the peer"),
            None,
            per_peer(if rx { |p| p.icc_rx } else { |p| p.icc_tx }),
        );
    }
    f.counters(
        "ipop_peer_dropped",
        "Messages from or for the peer dropped, by reason (refused_mac: a source MAC the \
         peer may not speak for; fragment: link fragments expired, invalid or over budget; \
         send_error: the link socket refused the datagram)",
        None,
        peers.iter().flat_map(|p| {
            [
                ("refused_mac", p.refused_macs),
                ("fragment", p.frag_dropped),
                ("send_error", p.tx_errors),
            ]
            .map(|(reason, v)| {
                let l = PeerReason {
                    peer: label(&p.uid),
                    reason: reason.into(),
                };
                (l, v)
            })
        }),
    );
    f.counters(
        "ipop_peer_link_ups",
        "Times the link to the peer came online",
        None,
        per_peer(|p| p.ups),
    );
    f.counters(
        "ipop_peer_link_downs",
        "Times the link to the peer went offline",
        None,
        per_peer(|p| p.downs),
    );
    f.counters(
        "ipop_peer_handshakes",
        "Completed handshakes with the peer (encrypted links only)",
        None,
        peers
            .iter()
            .filter_map(|p| Some((label(&p.uid), p.handshakes?))),
    );
    f.seconds(
        "ipop_peer_rtt",
        "Round-trip time to the peer, measured by the last handshake (whole milliseconds)",
        peers
            .iter()
            .filter_map(|p| Some((label(&p.uid), p.rtt_ms? as f64 / 1000.0))),
    );
    let at = |age_ms: u64| t.at_unix - age_ms as f64 / 1000.0;
    f.seconds(
        "ipop_peer_last_handshake_timestamp",
        "When the last handshake with the peer completed (Unix time)",
        peers
            .iter()
            .filter_map(|p| Some((label(&p.uid), at(p.last_handshake_ms?)))),
    );
    f.seconds(
        "ipop_peer_last_rx_timestamp",
        "When the last datagram from the peer arrived (Unix time)",
        peers
            .iter()
            .filter_map(|p| Some((label(&p.uid), at(p.last_rx_ms?)))),
    );
}

impl Controller {
    /// Keeps tincan's answer for the next scrape (only with the endpoint on).
    pub(super) fn keep_for_metrics(&mut self, state: &LocalState) {
        if self.metrics.is_some() {
            self.tincan_snapshot = Some(TincanSnapshot::now(state.clone()));
        }
    }

    /// The text of one scrape.
    pub(super) fn metrics_text(&self) -> String {
        let c = self.state();
        let ip4s = peer_ip4s(self.cfg.peers.iter().map(|p| p.ip4), &c);
        let t = self.tincan_snapshot.as_ref().filter(|_| c.tincan_alive);
        render(&c, t, &ip4s)
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
