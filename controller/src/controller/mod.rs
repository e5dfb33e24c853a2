//! The controller's loop: a connection to tincan's control socket `@ipop-tincan/<svpn_port>`
//! (checked to be held by root or our own user) that carries RPCs to tincan and its
//! notifications (punted ARP, ICC, link events) back, one UDP socket on 127.0.0.1:<icc_port>
//! that answers status queries, a heartbeat that drives the timers of the ARP table and of
//! signalling (and connects to tincan again when it restarted), and the XMPP module's events;
//! all on one tokio task. What crosses the socket is the typed control API
//! (`proto::api`); ARP decisions come from `proto::neigh`, signalling decisions from
//! `proto::signal`; the controller carries out their actions:
//!
//! - `channel`: the connection to tincan's control socket;
//! - `tincan`: tincan's state, its configuration, the TAP on the bridge;
//! - `arp`: ARP replication between tincan and the ARP table;
//! - `signalling`: XMPP events and the signalling state machine;
//! - `status`: the controller's own `get_state`;
//! - `metrics`, `metrics_http`: the Prometheus endpoint (`metrics_port`).

use crate::bridge::Netlink;
use crate::source::ConfigSource;
use crate::xmpp::{XmppClient, XmppConfig, XmppEvent};
use channel::{channel_ready, TincanChannel};
use log::{info, warn};
use proto::api as typed;
use proto::api::controller::{ControllerRequest, XmppState};
use proto::api::tincan::{self as api, EchoReply, TincanNotification, TincanRequest, TurnServer};
use proto::config::{Config, HostPort};
use proto::id::{Candidate, Fingerprint, Millis, Uid};
use proto::neigh::{NeighConfig, NeighTable, Programmed};
use proto::rpc::{self, Incoming};
use proto::signal::{HeldOffers, Signalling};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::time::MissedTickBehavior;

mod admin;
pub use admin::bind as bind_admin_socket;
mod arp;
mod channel;
mod metrics;
mod metrics_http;
mod nd;
mod service;
mod signalling;
mod status;
mod tincan;

/// How often tincan is asked for its state; it also tells tincan we are alive.
const HEARTBEAT: Duration = Duration::from_millis(1_000);
/// tincan silent this long: say so (once) and keep trying.
const TINCAN_TIMEOUT: Duration = Duration::from_millis(3_000);

#[derive(Debug, Default, Serialize)]
struct Counters {
    icc_sent: u64,
    icc_send_failed: u64,
    icc_received: u64,
    frames_injected: u64,
    macs_programmed: u64,
    /// `release_mac` calls sent to tincan (a host left our bridge, or a peer withdrew it).
    macs_released: u64,
    /// Tagged ARP of VLANs beyond the tables kept (`proto::neigh::vlan::MAX_VLANS`): ignored.
    vlans_refused: u64,
    /// ICC messages for a VLAN without a table when peers have opened half of them already.
    vlan_icc_ignored: u64,
    /// `set_neigh` calls sent to tincan.
    neigh_programmed: u64,
    /// tincan's ARP bindings programmed whole again because its count differed.
    neigh_reprogrammed: u64,
    tincan_configured: u64,
    tincan_restarts_seen: u64,
    /// tincan's uid or "sec" no longer matched the config, so it was configured again.
    tincan_configured_again: u64,
    rpc_errors: u64,
    /// Answers arriving on the UDP port (tincan answers over its control socket): ignored.
    foreign_source: u64,
    /// Notifications arriving on the UDP port (tincan's come over its control socket): ignored.
    udp_notifications_ignored: u64,
    /// Connections to tincan's control socket refused because another user held it.
    tincan_socket_refused: u64,
    /// Connections made to tincan's control socket.
    tincan_connected: u64,
    /// Requests not sent: no connection to tincan, or its queue was full.
    rpc_not_sent: u64,
    bad_notifications: u64,
    status_queries: u64,
}

/// A peer named in the config's `"peers"`, with its identity typed.
struct StaticPeer {
    uid: Uid,
    endpoint: SocketAddr,
    fpr: Option<Fingerprint>,
}

pub struct Controller {
    cfg: Config,
    uid: Uid,
    peers: Vec<StaticPeer>,
    sock: UdpSocket,
    /// tincan's control socket, for messages: `@ipop-tincan/<svpn_port>`.
    tincan: String,
    /// The connection to it, once made and checked.
    channel: Option<TincanChannel>,
    /// An impostor holding tincan's socket was logged (until a real connection is made).
    impostor_reported: bool,
    neigh: NeighTable,
    /// IPv6 neighbours, replicated like ARP.
    nd: nd::Nd,
    /// What tincan's ARP responder was told to hold.
    programmed: Programmed,
    neigh_reprogrammed_at: Option<Instant>,
    start: Instant,
    next_id: u64,
    /// Requests in flight: id -> method, to log errors meaningfully.
    inflight: HashMap<u64, (&'static str, Instant)>,
    /// tincan's boot id we configured; a different one means tincan restarted.
    configured_boot: Option<u64>,
    last_tincan_answer: Option<Instant>,
    tincan_silent_reported: bool,
    /// The last unreadable `get_state` answer was reported; reset by a readable one.
    tincan_state_unreadable_reported: bool,
    bridge_attached_boot: Option<u64>,
    tap_name: Option<String>,
    /// Opened when the TAP is first attached to the bridge.
    netlink: Option<Netlink>,
    /// MACs the ARP table asked to look for on the bridge (`run_bridge_checks`).
    bridge_checks: Vec<(u16, proto::wire::ethernet::MacAddr)>,
    /// The ARP tables of 802.1Q VLANs, by VLAN id (`neigh` is the untagged one).
    vlans: HashMap<u16, NeighTable>,
    /// Conflicts reported and not over at the last tick, to log their end.
    conflicts_reported: HashSet<(u16, std::net::Ipv4Addr)>,
    peer_online: HashMap<Uid, bool>,
    counters: Counters,
    key_file: PathBuf,
    /// XMPP signalling, when the config names an XMPP account.
    xmpp: Option<XmppClient>,
    xmpp_state: XmppState,
    signal: Option<Signalling>,
    /// Links created from signalling: (fpr, candidates), to create again after a tincan
    /// restart.
    signalled: HashMap<Uid, (Fingerprint, Vec<Candidate>)>,
    /// Nodes present on XMPP, also before signalling could start (it needs tincan's key);
    /// at most `MAX_SIGNALLED_PEERS`.
    xmpp_present: HashSet<Uid>,
    /// Signalling offers that arrived before `signal` started (tincan had not reported its
    /// key yet): fed in when it starts, so an early request is answered, not dropped.
    held_offers: HeldOffers,
    /// Where keys learned on first use are kept: `<key_file>.learned` (with "sec" only).
    learned_file: Option<PathBuf>,
    /// The learned-keys file's modification time when last read or written.
    learned_mtime: Option<std::time::SystemTime>,
    learned_file_error_reported: bool,
    /// Our own `get_state` answer had to leave entries out (logged once).
    state_truncated_reported: std::cell::Cell<bool>,
    /// STUN and TURN servers, resolved once at start.
    stun: Vec<SocketAddr>,
    turn: Option<TurnServer>,
    /// Read again on SIGHUP.
    source: Option<ConfigSource>,
    /// The log level follows `controller_logging` (no `RUST_LOG`).
    log_follows_config: bool,
    /// `READY=1` was sent.
    ready: bool,
    /// SIGTERM and SIGINT take the TAP off the bridge.
    detach_on_exit: bool,
    /// The Prometheus endpoint, with `metrics_port`.
    metrics: Option<metrics_http::Endpoint>,
    /// `@ipop-controller/<icc_port>`: `ipopctl log-level`.
    admin: tokio::net::UnixListener,
    /// tincan's last `get_state` answer, kept for the endpoint.
    tincan_snapshot: Option<metrics::TincanSnapshot>,
}

impl Controller {
    /// Binds the socket, starts the XMPP module (when configured) and resolves the STUN and
    /// TURN servers. Must run on a tokio runtime with I/O and time enabled.
    pub async fn new(cfg: Config, key_file: PathBuf) -> io::Result<Controller> {
        let admin = admin::bind(cfg.icc_port)?;
        Controller::with_admin_socket(cfg, key_file, admin).await
    }

    /// [`Controller::new`] with its control socket already bound ([`bind_admin_socket`]): by
    /// root before the privileges are dropped, so that clients see root hold it, as they see
    /// for tincan's.
    pub async fn with_admin_socket(
        cfg: Config,
        key_file: PathBuf,
        admin: std::os::unix::net::UnixListener,
    ) -> io::Result<Controller> {
        let admin = tokio::net::UnixListener::from_std(admin)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], cfg.icc_port));
        let sock = UdpSocket::bind(addr).await.map_err(|e| {
            io::Error::other(format!(
                "cannot bind {addr} (icc_port; is another gvpn-controller running?): {e}"
            ))
        })?;
        let metrics = match cfg.metrics_port {
            Some(port) => Some(metrics_http::Endpoint::bind(port).await.map_err(|e| {
                io::Error::other(format!("cannot bind 127.0.0.1:{port} (metrics_port): {e}"))
            })?),
            None => None,
        };
        if let Some(m) = &metrics {
            info!("Prometheus metrics on http://{}/metrics", m.addr());
        }
        let uid = cfg.uid();
        // Names are looked up once, here: tincan's loop must never wait on DNS.
        let mut peers = Vec::with_capacity(cfg.peers.len());
        for (i, p) in cfg.peers.iter().enumerate() {
            peers.push(StaticPeer {
                uid: p.uid,
                endpoint: resolve_peer(i, &p.endpoint).await?,
                fpr: p.fpr,
            });
        }
        info!(
            "uid {uid} (ip4 {}), {} static peers, tincan at {}, icc {}",
            cfg.ip4,
            peers.len(),
            proto::rpc_stream::socket_display(cfg.svpn_port),
            if cfg.icc {
                "on: ARP replicated by the controllers"
            } else {
                "off: plain learning switch"
            }
        );
        if cfg.sec {
            info!("links encrypted; key file {}", key_file.display());
        } else {
            warn!("\"sec\": false: links are plaintext and unauthenticated; use only on a trusted network");
        }
        let peer_online = peers.iter().map(|p| (p.uid, false)).collect();
        let xmpp = match (&cfg.xmpp_host, &cfg.xmpp_username, &cfg.xmpp_password) {
            (Some(host), Some(user), Some(pass)) => {
                info!("XMPP signalling as {user} on {host}:{}", cfg.xmpp_port);
                Some(XmppClient::start(XmppConfig {
                    host: host.clone(),
                    port: cfg.xmpp_port,
                    username: user.clone(),
                    password: pass.clone(),
                    uid,
                    ca_file: cfg.xmpp_ca.clone(),
                    allow: cfg.xmpp_allow.clone(),
                }))
            }
            _ => None,
        };
        // A STUN or TURN server that does not resolve is left out, with a warning.
        let (stun, turn) = if xmpp.is_some() {
            let mut stun = Vec::new();
            for s in &cfg.stun {
                stun.extend(resolve_ipv4(s).await);
            }
            let turn = match cfg.turn.first() {
                Some(t) => resolve_ipv4(&t.server).await.map(|server| TurnServer {
                    server,
                    user: t.user.clone(),
                    pass: t.pass.clone(),
                }),
                None => None,
            };
            (stun, turn)
        } else {
            (Vec::new(), None)
        };
        let mut neigh = NeighTable::new(uid, NeighConfig::default());
        // Our own address (the bridge's, in switch mode) is never a peer's to claim.
        neigh.pin_local(cfg.ip4);
        let learned_file = cfg
            .sec
            .then(|| learned_path(&key_file, std::env::var_os("STATE_DIRECTORY")));
        Ok(Controller {
            tincan: proto::rpc_stream::socket_display(cfg.svpn_port),
            channel: None,
            impostor_reported: false,
            neigh,
            nd: nd::Nd::new(uid),
            programmed: Programmed::default(),
            neigh_reprogrammed_at: None,
            uid,
            peers,
            sock,
            cfg,
            start: Instant::now(),
            next_id: 1,
            inflight: HashMap::new(),
            configured_boot: None,
            last_tincan_answer: None,
            tincan_silent_reported: false,
            tincan_state_unreadable_reported: false,
            bridge_attached_boot: None,
            tap_name: None,
            netlink: None,
            bridge_checks: Vec::new(),
            vlans: HashMap::new(),
            conflicts_reported: HashSet::new(),
            peer_online,
            counters: Counters::default(),
            key_file,
            xmpp,
            xmpp_state: XmppState::Off,
            signal: None,
            signalled: HashMap::new(),
            xmpp_present: HashSet::new(),
            held_offers: HeldOffers::default(),
            learned_file,
            learned_mtime: None,
            learned_file_error_reported: false,
            state_truncated_reported: std::cell::Cell::new(false),
            stun,
            turn,
            source: None,
            log_follows_config: false,
            ready: false,
            detach_on_exit: false,
            metrics,
            admin,
            tincan_snapshot: None,
        })
    }

    /// Runs a controller on a thread of its own, with a current-thread runtime (for tests and
    /// embedding; the thread, and its namespaces, are the caller's). The thread ends with the
    /// loop's error.
    pub fn spawn_thread(cfg: Config, key_file: PathBuf) -> std::thread::JoinHandle<io::Result<()>> {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async { Controller::new(cfg, key_file).await?.run().await })
        })
    }

    fn now_ms(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// The loop; returns after SIGTERM or SIGINT (`Ok`) or on a socket error. SIGHUP reloads
    /// the config (see [`Controller::reload_from`]).
    pub async fn run(mut self) -> io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut buf = vec![0u8; 65536];
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    self.connect_tincan().await;
                    self.heartbeat();
                    self.run_bridge_checks().await;
                }
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        if from.ip().is_loopback() {
                            self.handle(&buf[..n], from);
                        }
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::Interrupted => {}
                    // ECONNREFUSED: tincan is not (yet) there; the heartbeat notices.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) => {
                        // Log out of XMPP (bounded) before the runtime goes.
                        if let Some(x) = self.xmpp.take() {
                            x.stop().await;
                        }
                        return Err(e);
                    }
                },
                r = channel_ready(&self.channel) => {
                    self.on_channel_ready(r).await;
                    self.run_bridge_checks().await;
                }
                Some(ev) = next_xmpp_event(&mut self.xmpp) => self.on_xmpp(ev),
                Ok((stream, _)) = self.admin.accept() => {
                    tokio::spawn(admin::serve(stream, !self.log_follows_config));
                }
                Some(reply) = next_scrape(&mut self.metrics) => {
                    let _ = reply.send(self.metrics_text());
                }
                _ = hup.recv() => self.reload().await,
                _ = term.recv() => {
                    self.shutdown("SIGTERM").await;
                    return Ok(());
                }
                _ = int.recv() => {
                    self.shutdown("SIGINT").await;
                    return Ok(());
                }
            }
        }
    }

    /// Requests go over the connection to tincan's control socket without waiting (queued
    /// when the socket cannot take them at once); without a connection they are not sent, and
    /// the heartbeat repeats what matters once tincan is back.
    fn send_rpc(&mut self, req: impl Into<TincanRequest>) {
        let req = req.into();
        let Some(ch) = self.channel.as_mut() else {
            self.counters.rpc_not_sent += 1;
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        if ch.send(&req.request(id)) {
            self.inflight.insert(id, (req.method(), Instant::now()));
        } else {
            self.counters.rpc_not_sent += 1;
        }
    }

    fn heartbeat(&mut self) {
        let now = Instant::now();
        self.inflight
            .retain(|_, (_, sent)| now.duration_since(*sent) < Duration::from_secs(10));
        let silent = match self.last_tincan_answer {
            Some(t) => now.duration_since(t) >= TINCAN_TIMEOUT,
            None => now.duration_since(self.start) >= TINCAN_TIMEOUT,
        };
        if silent && !self.tincan_silent_reported {
            warn!(
                "ipop-tincan is not answering on {}; will configure it when it is back",
                self.tincan
            );
            self.tincan_silent_reported = true;
        }
        let actions = self.neigh.tick(self.now_ms());
        self.apply(actions);
        self.tick_vlans();
        // Before the state query, so that its answer counts tincan's bindings after the change.
        self.program_neigh();
        self.tick_nd();
        self.send_rpc(api::GetState::default());
        let now = self.now_ms();
        self.reload_learned(false);
        if let Some(sig) = self.signal.as_mut() {
            let actions = sig.tick(now);
            self.apply_signal(actions);
        }
    }

    /// A datagram on the UDP port: status queries are answered; answers and notifications,
    /// which tincan sends over its control socket, are ignored and counted (another local
    /// process guessing a request id must not steer the controller).
    fn handle(&mut self, datagram: &[u8], from: SocketAddr) {
        match rpc::parse(datagram) {
            Incoming::Response { .. } => {
                self.counters.foreign_source += 1;
            }
            Incoming::Call {
                id: None, method, ..
            } if TincanNotification::METHODS.contains(&method.as_str()) => {
                self.counters.udp_notifications_ignored += 1;
            }
            Incoming::Call { id, method, params } => {
                let result =
                    ControllerRequest::from_call(&method, params).map(|q| self.on_query(q));
                if let Some(id) = id {
                    let _ = self.sock.try_send_to(&typed::response(id, result), from);
                }
            }
            Incoming::Invalid { id, error } => {
                self.counters.bad_notifications += 1;
                if let Some(id) = id {
                    let _ = self.sock.try_send_to(&rpc::response(id, Err(error)), from);
                }
            }
        }
    }

    fn on_query(&mut self, q: ControllerRequest) -> Value {
        let answer = match q {
            ControllerRequest::GetState(_) => {
                self.counters.status_queries += 1;
                serde_json::to_value(self.state())
            }
            ControllerRequest::EchoRequest(e) => serde_json::to_value(EchoReply { msg: e.msg }),
        };
        answer.expect("API types serialise")
    }
}

/// The XMPP module's next event; never, without XMPP.
async fn next_xmpp_event(xmpp: &mut Option<XmppClient>) -> Option<XmppEvent> {
    match xmpp {
        Some(x) => x.recv().await,
        None => std::future::pending().await,
    }
}

/// The metrics endpoint's next request for the text; never, without the endpoint.
async fn next_scrape(m: &mut Option<metrics_http::Endpoint>) -> Option<metrics_http::TextRequest> {
    match m {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}

/// The addresses of a server or peer: an IP literal as it is, a host name looked up.
async fn lookup(hp: &HostPort) -> io::Result<Vec<SocketAddr>> {
    match hp.addr() {
        Some(a) => Ok(vec![a]),
        None => Ok(tokio::net::lookup_host((hp.host().as_str(), hp.port()))
            .await?
            .collect()),
    }
}

/// The first IPv4 address of a STUN or TURN server; `None`, with a warning, if there is none.
async fn resolve_ipv4(server: &HostPort) -> Option<SocketAddr> {
    let found = lookup(server)
        .await
        .ok()
        .and_then(|a| a.into_iter().find(SocketAddr::is_ipv4));
    if found.is_none() {
        warn!("STUN/TURN server \"{server}\" does not resolve to an IPv4 address; not used");
    }
    found
}

/// The endpoint of `"peers"[i]`, preferring IPv4: underlays here are IPv4, and a v6 answer
/// first from the resolver must not win over a v4 one. An error names the key and the host.
async fn resolve_peer(i: usize, endpoint: &HostPort) -> io::Result<SocketAddr> {
    let found = lookup(endpoint).await.map_err(|e| {
        io::Error::other(format!(
            "\"peers\"[{i}].\"endpoint\": cannot resolve \"{endpoint}\": {e}"
        ))
    })?;
    found
        .iter()
        .find(|a| a.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| {
            io::Error::other(format!(
                "\"peers\"[{i}].\"endpoint\": \"{endpoint}\" resolves to no address"
            ))
        })
}

/// Where the keys learned from signalling are kept: `<key_file>.learned`, or, under a service
/// manager that gives the controller a state directory (`StateDirectory=`, which sets
/// `STATE_DIRECTORY`; the first one if several), `<that directory>/<key file's name>.learned`,
/// since the key's directory is then read-only to it.
fn learned_path(key_file: &std::path::Path, state_dir: Option<std::ffi::OsString>) -> PathBuf {
    let mut name = key_file
        .file_name()
        .map_or_else(|| "ipop.key".into(), |n| n.to_os_string());
    name.push(".learned");
    let dir = state_dir.and_then(|d| {
        let first = d
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        (!first.is_empty()).then(|| PathBuf::from(first))
    });
    match dir {
        Some(d) => d.join(name),
        None => key_file.with_file_name(name),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn learned_keys_go_to_the_state_directory_when_there_is_one() {
        let key = std::path::Path::new("/etc/ipop/ipop.key");
        assert_eq!(
            super::learned_path(key, None),
            std::path::Path::new("/etc/ipop/ipop.key.learned")
        );
        assert_eq!(
            super::learned_path(key, Some("/var/lib/ipop/lab".into())),
            std::path::Path::new("/var/lib/ipop/lab/ipop.key.learned")
        );
        assert_eq!(
            super::learned_path(key, Some("/var/lib/a:/var/lib/b".into())),
            std::path::Path::new("/var/lib/a/ipop.key.learned")
        );
        assert_eq!(
            super::learned_path(std::path::Path::new("k"), Some("".into())),
            std::path::Path::new("k.learned")
        );
    }

    use super::*;

    #[tokio::test]
    async fn peer_endpoints_are_resolved_once_and_ip_literals_are_not_looked_up() {
        let literal: HostPort = "192.0.2.7:5900".parse().unwrap();
        assert_eq!(
            resolve_peer(0, &literal).await.unwrap(),
            "192.0.2.7:5900".parse().unwrap()
        );
        let name: HostPort = "localhost:5901".parse().unwrap();
        let a = resolve_peer(3, &name).await.unwrap();
        assert_eq!(a, "127.0.0.1:5901".parse().unwrap());
        assert_eq!(
            resolve_ipv4(&name).await,
            Some("127.0.0.1:5901".parse().unwrap())
        );
    }
}
