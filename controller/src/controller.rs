//! The controller's loop: one UDP socket on 127.0.0.1:<icc_port> that sends RPCs to tincan,
//! receives its notifications (punted ARP, ICC, link events) and answers status queries, a
//! heartbeat that drives the timers of the ARP table and of signalling, and the XMPP module's
//! events; all on one tokio task. What crosses the socket is the typed control API
//! (`proto::api`); ARP decisions come from `proto::neigh`, signalling decisions from
//! `proto::signal`; this file carries out their actions.

use crate::bridge::{Attached, Netlink};
use crate::xmpp::{XmppClient, XmppConfig, XmppEvent};
use log::{debug, error, info, warn};
use proto::api as typed;
use proto::api::controller::{
    ControllerRequest, ControllerState, NeighOwner, NeighState, PeerOnline, SignallingPeer,
    XmppState,
};
use proto::api::tincan::{
    self as api, CreateLink, EchoReply, InjectFrame, LinkStatus, LocalState, SendIcc,
    SetCbEndpoint, SetLocalIp, SetLogging, SetMac, SetNat, SetSwitchmode, TincanNotification,
    TincanRequest, TrimLink, TurnServer,
};
use proto::config::Config;
use proto::icc::IccMsg;
use proto::id::{Candidate, Fingerprint, Millis, Uid};
use proto::neigh::{NeighAction, NeighConfig, NeighTable, Owner};
use proto::rpc::{self, Id, Incoming};
use proto::signal::{Offer, SignalAction, Signalling};
use serde::Serialize;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::time::MissedTickBehavior;

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
    tincan_configured: u64,
    tincan_restarts_seen: u64,
    rpc_errors: u64,
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
    tincan: SocketAddr,
    neigh: NeighTable,
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
    /// Nodes present on XMPP, also before signalling could start (it needs tincan's key).
    xmpp_present: HashSet<Uid>,
    /// STUN and TURN servers, resolved once at start.
    stun: Vec<SocketAddr>,
    turn: Option<TurnServer>,
}

impl Controller {
    /// Binds the socket, starts the XMPP module (when configured) and resolves the STUN and
    /// TURN servers. Must run on a tokio runtime with I/O and time enabled.
    pub async fn new(cfg: Config, key_file: PathBuf) -> io::Result<Controller> {
        let addr = SocketAddr::from(([127, 0, 0, 1], cfg.icc_port));
        let sock = UdpSocket::bind(addr).await.map_err(|e| {
            io::Error::other(format!(
                "cannot bind {addr} (icc_port; is another gvpn-controller running?): {e}"
            ))
        })?;
        let uid = Uid::from_ip4(cfg.ip4);
        let peers = cfg
            .peers
            .iter()
            .map(|p| {
                let fpr = p.fpr.as_deref().map(str::parse).transpose().map_err(|e| {
                    io::Error::other(format!("\"peers\": peer {}: \"fpr\": {e}", p.ip4))
                })?;
                Ok(StaticPeer {
                    uid: Uid::from_ip4(p.ip4),
                    endpoint: p.endpoint,
                    fpr,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        info!(
            "uid {uid} (ip4 {}), {} static peers, tincan at 127.0.0.1:{}, icc {}",
            cfg.ip4,
            peers.len(),
            cfg.svpn_port,
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
                }))
            }
            _ => None,
        };
        // Names are looked up once, here: tincan's loop must never wait on DNS. A server that
        // does not resolve is left out, with a warning.
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
        Ok(Controller {
            tincan: SocketAddr::from(([127, 0, 0, 1], cfg.svpn_port)),
            neigh: NeighTable::new(uid, NeighConfig::default()),
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
            peer_online,
            counters: Counters::default(),
            key_file,
            xmpp,
            xmpp_state: XmppState::Off,
            signal: None,
            signalled: HashMap::new(),
            xmpp_present: HashSet::new(),
            stun,
            turn,
        })
    }

    fn now_ms(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// The loop; returns only on a socket error.
    pub async fn run(mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 65536];
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = beat.tick() => self.heartbeat(),
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        if from.ip().is_loopback() {
                            self.handle(&buf[..n], from).await;
                        }
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::Interrupted => {}
                    // ECONNREFUSED: tincan is not (yet) there; the heartbeat notices.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                    Err(e) => return Err(e),
                },
                Some(ev) = next_xmpp_event(&mut self.xmpp) => self.on_xmpp(ev),
            }
        }
    }

    /// Requests are small datagrams on loopback: sent without waiting; one that the socket
    /// cannot take at once is lost like any datagram, and the heartbeat repeats what matters.
    fn send_rpc(&mut self, req: impl Into<TincanRequest>) {
        let req = req.into();
        let id = self.next_id;
        self.next_id += 1;
        self.inflight.insert(id, (req.method(), Instant::now()));
        let _ = self.sock.try_send_to(&req.request(id), self.tincan);
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
        self.send_rpc(api::GetState::default());
        let actions = self.neigh.tick(self.now_ms());
        self.apply(actions);
        let now = self.now_ms();
        if let Some(sig) = self.signal.as_mut() {
            let actions = sig.tick(now);
            self.apply_signal(actions);
        }
    }

    async fn handle(&mut self, datagram: &[u8], from: SocketAddr) {
        match rpc::parse(datagram) {
            Incoming::Response { id, result } => {
                let Id::Num(n) = id else { return };
                let Some((method, _)) = self.inflight.remove(&n) else {
                    return;
                };
                match result {
                    Ok(v) => {
                        if method == "get_state" {
                            self.on_tincan_answer(v).await;
                        }
                    }
                    Err(e) => {
                        self.counters.rpc_errors += 1;
                        warn!("tincan refused {method}: {}", e.message);
                    }
                }
            }
            Incoming::Call { id, method, params } => {
                if from == self.tincan && id.is_none() {
                    match TincanNotification::from_call(&method, params) {
                        Ok(n) => self.on_notification(n),
                        Err(e) => {
                            self.counters.bad_notifications += 1;
                            debug!("notification {method} from tincan: {e}");
                        }
                    }
                    return;
                }
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

    async fn on_tincan_answer(&mut self, v: Value) {
        if self.tincan_silent_reported {
            info!("ipop-tincan is answering again");
        }
        self.last_tincan_answer = Some(Instant::now());
        self.tincan_silent_reported = false;
        match serde_json::from_value::<LocalState>(v) {
            Ok(state) => {
                self.tincan_state_unreadable_reported = false;
                self.on_tincan_state(state).await;
            }
            Err(e) => {
                self.counters.rpc_errors += 1;
                if !self.tincan_state_unreadable_reported {
                    error!(
                        "cannot read ipop-tincan's get_state answer ({e}); is it another version?"
                    );
                    self.tincan_state_unreadable_reported = true;
                }
            }
        }
    }

    async fn on_tincan_state(&mut self, state: LocalState) {
        let boot = Some(state.boot_id);
        self.tap_name = Some(state.tap);
        let now = self.now_ms();
        for p in &state.peers {
            let online = p.status == LinkStatus::Online;
            self.peer_online.insert(p.uid, online);
            if let Some(sig) = self.signal.as_mut() {
                sig.on_link_status(p.uid, online, now);
            }
        }
        if self.xmpp.is_some() && self.signal.is_none() {
            // Without "sec" there is no key: the offer carries zeros where the fingerprint goes.
            let fpr = if self.cfg.sec {
                state.fpr
            } else {
                Some(Fingerprint([0; Fingerprint::LEN]))
            };
            if let Some(fpr) = fpr {
                let mut sig = Signalling::new(self.uid, fpr, self.cfg.wait_time);
                let mut actions = Vec::new();
                for uid in &self.xmpp_present {
                    actions.extend(sig.on_available(*uid, now));
                }
                self.signal = Some(sig);
                self.apply_signal(actions);
            }
        }
        if let Some(sig) = self.signal.as_mut() {
            let actions = sig.set_candidates(state.candidates, now);
            self.apply_signal(actions);
        }
        if self.configured_boot != boot || !state.configured {
            if self.configured_boot.is_some() && self.configured_boot != boot {
                self.counters.tincan_restarts_seen += 1;
                info!("ipop-tincan restarted (new boot id): configuring it again");
            }
            self.configure_tincan();
            self.configured_boot = boot;
        }
        if self.cfg.bridge.is_some()
            && self.bridge_attached_boot != boot
            && self.attach_bridge().await
        {
            self.bridge_attached_boot = boot;
        }
    }

    /// Every step is idempotent in tincan, so this is also how a restarted controller
    /// picks up a running tincan.
    fn configure_tincan(&mut self) {
        self.counters.tincan_configured += 1;
        let cfg = &self.cfg;
        let logging = SetLogging {
            logging: cfg.tincan_logging,
        };
        let cb = SetCbEndpoint {
            ip: Ipv4Addr::LOCALHOST.into(),
            port: cfg.icc_port,
        };
        let local = SetLocalIp {
            uid: self.uid,
            ip4: cfg.ip4,
            ip4_mask: Some(cfg.ip4_mask),
            ip6: proto::config::gen_ip6(&self.uid.to_string()).parse().ok(),
            ip6_mask: Some(cfg.ip6_mask),
            subnet_mask: Some(cfg.subnet_mask),
            switchmode: Some(cfg.switchmode),
            icc: Some(cfg.icc),
            link_port: cfg.link_port,
            mtu: Some(cfg.tap_mtu),
            sec: cfg.sec,
            key_file: cfg.sec.then(|| self.key_file.clone()),
            rekey_after_secs: u32::try_from(cfg.rekey_interval).unwrap_or(u32::MAX),
        };
        let mode = SetSwitchmode {
            switchmode: cfg.switchmode,
            icc: Some(cfg.icc),
        };
        let links: Vec<CreateLink> = self
            .peers
            .iter()
            .map(|p| CreateLink {
                uid: p.uid,
                endpoint: Some(p.endpoint),
                candidates: Vec::new(),
                fpr: p.fpr,
            })
            .collect();
        let nat = self.xmpp.is_some().then(|| SetNat {
            stun: self.stun.clone(),
            turn: self.turn.clone(),
            ignore: cfg.network_ignore_list.clone(),
        });
        self.send_rpc(logging);
        self.send_rpc(cb);
        self.send_rpc(local);
        self.send_rpc(mode);
        if let Some(nat) = nat {
            self.send_rpc(nat);
        }
        let n = links.len();
        for l in links {
            self.send_rpc(l);
        }
        let again: Vec<(Uid, (Fingerprint, Vec<Candidate>))> = self
            .signalled
            .iter()
            .map(|(u, l)| (*u, l.clone()))
            .collect();
        for (uid, (fpr, candidates)) in again {
            self.create_signalled_link(uid, fpr, candidates);
        }
        info!("configured ipop-tincan ({n} links)");
    }

    /// Makes the TAP a port of the configured bridge; true when it is one.
    async fn attach_bridge(&mut self) -> bool {
        let (Some(bridge), Some(tap)) = (self.cfg.bridge.clone(), self.tap_name.clone()) else {
            return false;
        };
        if self.netlink.is_none() {
            match Netlink::new() {
                Ok(n) => self.netlink = Some(n),
                Err(e) => {
                    error!("cannot attach {tap} to {bridge}: {e}");
                    return false;
                }
            }
        }
        let netlink = self.netlink.as_ref().expect("set above");
        match netlink.attach(&tap, &bridge).await {
            Ok(Attached::Now) => {
                info!("attached {tap} to bridge {bridge}");
                true
            }
            Ok(Attached::Already) => true,
            Err(e) => {
                error!("cannot attach {tap} to {bridge}: {e}");
                false
            }
        }
    }

    fn on_xmpp(&mut self, ev: XmppEvent) {
        let now = self.now_ms();
        match ev {
            XmppEvent::Online => {
                info!("XMPP: online");
                self.xmpp_state = XmppState::Online;
            }
            XmppEvent::Offline(why) => {
                // Established links do not depend on the XMPP server.
                warn!("XMPP: offline ({why}); reconnecting; links stay up");
                self.xmpp_state = XmppState::Offline;
            }
            XmppEvent::AuthFailed(why) => {
                error!("XMPP: {why}; no peer discovery until the config is fixed and the controller restarted");
                self.xmpp_state = XmppState::Failed;
            }
            XmppEvent::PeerAvailable { uid, .. } => {
                self.xmpp_present.insert(uid);
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_available(uid, now);
                    self.apply_signal(actions);
                }
            }
            XmppEvent::PeerUnavailable { uid } => {
                info!("XMPP: peer {uid} left");
                self.xmpp_present.remove(&uid);
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_unavailable(uid);
                    self.apply_signal(actions);
                }
            }
            XmppEvent::Message {
                uid,
                msg_type,
                data,
            } => {
                // The offer is read here, once; one we cannot read is ignored, as the
                // original ignored it.
                let offer = match data.parse::<Offer>() {
                    Ok(o) => o,
                    Err(e) => {
                        debug!("XMPP: {msg_type} from {uid} ignored: {e}");
                        return;
                    }
                };
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_message(uid, &msg_type, &offer, now);
                    self.apply_signal(actions);
                }
            }
        }
    }

    fn create_signalled_link(&mut self, uid: Uid, fpr: Fingerprint, candidates: Vec<Candidate>) {
        self.peer_online.entry(uid).or_insert(false);
        let fpr = self.cfg.sec.then_some(fpr);
        self.send_rpc(CreateLink {
            uid,
            endpoint: None,
            candidates,
            fpr,
        });
    }

    fn apply_signal(&mut self, actions: Vec<SignalAction>) {
        for a in actions {
            match a {
                SignalAction::Send {
                    uid,
                    msg_type,
                    data,
                } => {
                    if let Some(x) = self.xmpp.as_ref() {
                        x.send(uid, msg_type, &data.to_string());
                    }
                }
                SignalAction::CreateLink {
                    uid,
                    fpr,
                    candidates,
                } => {
                    if !self.signalled.contains_key(&uid) {
                        info!(
                            "signalled link to {uid} (fingerprint {fpr}, {} candidates)",
                            candidates.len()
                        );
                    }
                    self.create_signalled_link(uid, fpr, candidates.clone());
                    self.signalled.insert(uid, (fpr, candidates));
                }
                SignalAction::TrimLink { uid } => {
                    self.signalled.remove(&uid);
                    self.peer_online.remove(&uid);
                    let withdrawn = self.neigh.remove_owner(uid);
                    info!("trimming link to {uid}; {withdrawn} ARP entries withdrawn");
                    self.send_rpc(TrimLink { uid });
                }
            }
        }
    }

    fn on_notification(&mut self, n: TincanNotification) {
        let now = self.now_ms();
        match n {
            TincanNotification::PuntFrame(p) => {
                let actions = self.neigh.on_local_arp(&p.frame, now);
                self.apply(actions);
            }
            TincanNotification::Icc(icc) => {
                self.counters.icc_received += 1;
                match IccMsg::from_json(&icc.msg) {
                    Ok(m) => {
                        let actions = self.neigh.on_icc(icc.uid, &m, now);
                        self.apply(actions);
                    }
                    Err(e) => {
                        self.counters.bad_notifications += 1;
                        debug!("from {}: {e}", icc.uid);
                    }
                }
            }
            TincanNotification::ConStat(c) => {
                let online = c.data == LinkStatus::Online;
                info!(
                    "peer {} is {}",
                    c.uid,
                    if online { "online" } else { "offline" }
                );
                self.peer_online.insert(c.uid, online);
                if let Some(sig) = self.signal.as_mut() {
                    sig.on_link_status(c.uid, online, now);
                }
            }
        }
    }

    fn apply(&mut self, actions: Vec<NeighAction>) {
        for a in actions {
            match a {
                NeighAction::Inject(frame) => {
                    self.counters.frames_injected += 1;
                    self.send_rpc(InjectFrame { frame });
                }
                NeighAction::IccBroadcast(msg) => {
                    let online: Vec<Uid> = self
                        .peer_online
                        .iter()
                        .filter(|(_, up)| **up)
                        .map(|(u, _)| *u)
                        .collect();
                    for uid in online {
                        self.send_icc(uid, &msg);
                    }
                }
                NeighAction::IccSend(uid, msg) => self.send_icc(uid, &msg),
                NeighAction::ProgramMac { mac, uid } => {
                    self.counters.macs_programmed += 1;
                    self.send_rpc(SetMac { mac, uid });
                }
                NeighAction::Conflict {
                    ip,
                    kept_mac,
                    kept_owner,
                    claimed_mac,
                    claimed_by,
                } => {
                    warn!(
                        "address conflict: {ip} is {kept_mac} on {} and {claimed_mac} on {}; keeping {kept_mac}",
                        owner_text(kept_owner),
                        owner_text(claimed_by)
                    );
                }
            }
        }
    }

    fn send_icc(&mut self, uid: Uid, msg: &IccMsg) {
        if !self.peer_online.get(&uid).copied().unwrap_or(false) {
            self.counters.icc_send_failed += 1;
            return;
        }
        self.counters.icc_sent += 1;
        self.send_rpc(SendIcc {
            uid,
            msg: msg.to_json(),
        });
    }

    /// The `get_state` answer.
    fn state(&self) -> ControllerState {
        let now = self.now_ms();
        let neigh = self
            .neigh
            .entries()
            .map(|(ip, e)| NeighState {
                ip: *ip,
                mac: e.mac,
                owner: match e.owner {
                    Owner::Local => NeighOwner::Local,
                    Owner::Peer(u) => NeighOwner::Peer(u),
                },
                age_ms: now.saturating_sub(e.updated),
            })
            .collect();
        let mut counters = counter_map(&self.counters);
        counters.extend(counter_map(&self.neigh.counters));
        ControllerState {
            uid: self.uid,
            ip4: self.cfg.ip4,
            icc: self.cfg.icc,
            tincan_alive: self
                .last_tincan_answer
                .is_some_and(|t| t.elapsed() < TINCAN_TIMEOUT),
            tap: self.tap_name.clone(),
            bridge: self.cfg.bridge.clone(),
            peers: self
                .peer_online
                .iter()
                .map(|(u, up)| PeerOnline {
                    uid: *u,
                    online: *up,
                })
                .collect(),
            counters,
            neigh,
            xmpp: self.xmpp_state,
            signalling: self.signal.as_ref().map(|s| {
                s.peers()
                    .map(|(u, st, f)| SignallingPeer {
                        uid: *u,
                        state: format!("{st:?}"),
                        fpr: f.copied(),
                    })
                    .collect()
            }),
        }
    }
}

/// A struct of `u64` counters as the API's name -> count map.
fn counter_map(counters: &impl Serialize) -> api::Counters {
    serde_json::to_value(counters)
        .and_then(serde_json::from_value)
        .expect("counters are u64 fields")
}

/// The XMPP module's next event; never, without XMPP.
async fn next_xmpp_event(xmpp: &mut Option<XmppClient>) -> Option<XmppEvent> {
    match xmpp {
        Some(x) => x.recv().await,
        None => std::future::pending().await,
    }
}

/// The first IPv4 address of `host:port`; `None`, with a warning, if there is none.
async fn resolve_ipv4(server: &str) -> Option<SocketAddr> {
    let found = tokio::net::lookup_host(server)
        .await
        .ok()
        .and_then(|mut a| a.find(SocketAddr::is_ipv4));
    if found.is_none() {
        warn!("STUN/TURN server {server:?} does not resolve to an IPv4 address; not used");
    }
    found
}

fn owner_text(o: Owner) -> String {
    match o {
        Owner::Local => "this host's bridge".into(),
        Owner::Peer(u) => format!("peer {u}"),
    }
}
