//! The controller's loop: one UDP socket on 127.0.0.1:<icc_port> that sends RPCs to tincan,
//! receives its notifications (punted ARP, ICC, link events) and answers status queries, a
//! heartbeat that drives the timers of the ARP table and of signalling, and the XMPP module's
//! events; all on one tokio task. ARP decisions come from `proto::neigh`, signalling decisions
//! from `proto::signal`; this file carries out their actions.

use crate::bridge::{Attached, Netlink};
use crate::xmpp::{XmppClient, XmppConfig, XmppEvent};
use log::{debug, error, info, warn};
use proto::config::Config;
use proto::icc::IccMsg;
use proto::neigh::{NeighAction, NeighConfig, NeighTable, Owner};
use proto::rpc::{self, Id, Incoming, ParamReader, RpcError};
use proto::signal::{SignalAction, Signalling};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
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

pub struct Controller {
    cfg: Config,
    uid: String,
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
    bridge_attached_boot: Option<u64>,
    tap_name: Option<String>,
    /// Opened when the TAP is first attached to the bridge.
    netlink: Option<Netlink>,
    peer_online: HashMap<String, bool>,
    counters: Counters,
    key_file: std::path::PathBuf,
    /// XMPP signalling, when the config names an XMPP account.
    xmpp: Option<XmppClient>,
    xmpp_state: &'static str,
    signal: Option<Signalling>,
    /// Links created from signalling: (fpr, candidates), to create again after a tincan
    /// restart.
    signalled: HashMap<String, (String, Vec<String>)>,
    /// Nodes present on XMPP, also before signalling could start (it needs tincan's key).
    xmpp_present: std::collections::HashSet<String>,
    /// STUN and TURN servers, resolved once at start.
    stun: Vec<String>,
    turn: Option<Value>,
}

impl Controller {
    /// Binds the socket, starts the XMPP module (when configured) and resolves the STUN and
    /// TURN servers. Must run on a tokio runtime with I/O and time enabled.
    pub async fn new(cfg: Config, key_file: std::path::PathBuf) -> io::Result<Controller> {
        let addr = SocketAddr::from(([127, 0, 0, 1], cfg.icc_port));
        let sock = UdpSocket::bind(addr).await.map_err(|e| {
            io::Error::other(format!(
                "cannot bind {addr} (icc_port; is another gvpn-controller running?): {e}"
            ))
        })?;
        let uid = cfg.uid();
        info!(
            "uid {uid} (ip4 {}), {} static peers, tincan at 127.0.0.1:{}, icc {}",
            cfg.ip4,
            cfg.peers.len(),
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
        let peer_online = cfg.peers.iter().map(|p| (p.uid.clone(), false)).collect();
        let xmpp = match (&cfg.xmpp_host, &cfg.xmpp_username, &cfg.xmpp_password) {
            (Some(host), Some(user), Some(pass)) => {
                info!("XMPP signalling as {user} on {host}:{}", cfg.xmpp_port);
                Some(XmppClient::start(XmppConfig {
                    host: host.clone(),
                    port: cfg.xmpp_port,
                    username: user.clone(),
                    password: pass.clone(),
                    uid: uid.clone(),
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
                Some(t) => resolve_ipv4(&t.server)
                    .await
                    .map(|server| json!({"server": server, "user": t.user, "pass": t.pass})),
                None => None,
            };
            (stun, turn)
        } else {
            (Vec::new(), None)
        };
        Ok(Controller {
            tincan: SocketAddr::from(([127, 0, 0, 1], cfg.svpn_port)),
            neigh: NeighTable::new(uid.clone(), NeighConfig::default()),
            uid,
            sock,
            cfg,
            start: Instant::now(),
            next_id: 1,
            inflight: HashMap::new(),
            configured_boot: None,
            last_tincan_answer: None,
            tincan_silent_reported: false,
            bridge_attached_boot: None,
            tap_name: None,
            netlink: None,
            peer_online,
            counters: Counters::default(),
            key_file,
            xmpp,
            xmpp_state: "off",
            signal: None,
            signalled: HashMap::new(),
            xmpp_present: Default::default(),
            stun,
            turn,
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
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
    fn send_rpc(&mut self, method: &'static str, params: Value) {
        let id = self.next_id;
        self.next_id += 1;
        self.inflight.insert(id, (method, Instant::now()));
        let _ = self
            .sock
            .try_send_to(&rpc::request(id, method, params), self.tincan);
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
        self.send_rpc("get_state", json!({}));
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
                            self.on_tincan_state(&v).await;
                        }
                    }
                    Err(e) => {
                        self.counters.rpc_errors += 1;
                        warn!("tincan refused {method}: {}", e.message);
                    }
                }
            }
            Incoming::Call { id, method, params } => {
                let from_tincan = from == self.tincan;
                let result = if from_tincan && id.is_none() {
                    self.on_notification(&method, &ParamReader(&params));
                    return;
                } else {
                    self.on_query(&method)
                };
                if let Some(id) = id {
                    let _ = self.sock.try_send_to(&rpc::response(id, result), from);
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

    fn on_query(&mut self, method: &str) -> Result<Value, RpcError> {
        match method {
            "get_state" => {
                self.counters.status_queries += 1;
                Ok(self.state_json())
            }
            "echo_request" => Ok(json!({"type": "echo_reply"})),
            _ => Err(RpcError::method_not_found()),
        }
    }

    async fn on_tincan_state(&mut self, v: &Value) {
        if self.tincan_silent_reported {
            info!("ipop-tincan is answering again");
        }
        self.last_tincan_answer = Some(Instant::now());
        self.tincan_silent_reported = false;
        let boot = v.get("boot_id").and_then(Value::as_u64);
        let configured = v
            .get("configured")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.tap_name = v.get("tap").and_then(Value::as_str).map(str::to_string);
        let now = self.now_ms();
        if let Some(peers) = v.get("peers").and_then(Value::as_array) {
            for p in peers {
                if let (Some(uid), Some(status)) = (
                    p.get("uid").and_then(Value::as_str),
                    p.get("status").and_then(Value::as_str),
                ) {
                    self.peer_online.insert(uid.to_string(), status == "online");
                    if let Some(sig) = self.signal.as_mut() {
                        sig.on_link_status(uid, status == "online", now);
                    }
                }
            }
        }
        if self.xmpp.is_some() && self.signal.is_none() {
            // Without "sec" there is no key: the offer carries zeros where the fingerprint goes.
            let zeros = "0".repeat(64);
            let fpr = if self.cfg.sec {
                v.get("_fpr")
                    .and_then(Value::as_str)
                    .filter(|f| f.len() == 64)
            } else {
                Some(zeros.as_str())
            };
            if let Some(fpr) = fpr {
                let mut sig =
                    Signalling::new(self.uid.clone(), fpr.to_string(), self.cfg.wait_time);
                let mut actions = Vec::new();
                for uid in &self.xmpp_present {
                    actions.extend(sig.on_available(uid, now));
                }
                self.signal = Some(sig);
                self.apply_signal(actions);
            }
        }
        if let Some(cands) = v.get("candidates").and_then(Value::as_array) {
            let cands: Vec<String> = cands
                .iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect();
            if let Some(sig) = self.signal.as_mut() {
                let actions = sig.set_candidates(cands, now);
                self.apply_signal(actions);
            }
        }
        if boot.is_none() || self.configured_boot != boot || !configured {
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
        let logging = json!({"logging": cfg.tincan_logging});
        let cb = json!({"ip": "127.0.0.1", "port": cfg.icc_port});
        let local = json!({
            "uid": self.uid,
            "ip4": cfg.ip4.to_string(),
            "ip4_mask": cfg.ip4_mask,
            "ip6": proto::config::gen_ip6(&self.uid),
            "ip6_mask": cfg.ip6_mask,
            "subnet_mask": cfg.subnet_mask,
            "switchmode": cfg.switchmode,
            "icc": cfg.icc,
            "link_port": cfg.link_port,
            "mtu": cfg.tap_mtu,
            "sec": cfg.sec,
            "key_file": if cfg.sec { Some(self.key_file.display().to_string()) } else { None },
            "rekey_after_secs": cfg.rekey_interval,
        });
        let mode = json!({"switchmode": cfg.switchmode, "icc": cfg.icc});
        let links: Vec<Value> = cfg
            .peers
            .iter()
            .map(|p| {
                json!({"uid": p.uid, "endpoint": p.endpoint.to_string(), "fpr": p.fpr, "sec": cfg.sec})
            })
            .collect();
        self.send_rpc("set_logging", logging);
        self.send_rpc("set_cb_endpoint", cb);
        self.send_rpc("set_local_ip", local);
        self.send_rpc("set_switchmode", mode);
        if self.xmpp.is_some() {
            let nat = json!({
                "stun": self.stun,
                "turn": self.turn,
                "ignore": self.cfg.network_ignore_list,
            });
            self.send_rpc("set_nat", nat);
        }
        for l in links {
            self.send_rpc("create_link", l);
        }
        let again: Vec<(String, (String, Vec<String>))> = self
            .signalled
            .iter()
            .map(|(u, l)| (u.clone(), l.clone()))
            .collect();
        for (uid, (fpr, candidates)) in again {
            self.create_signalled_link(&uid, &fpr, &candidates);
        }
        info!("configured ipop-tincan ({} links)", self.cfg.peers.len());
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
                self.xmpp_state = "online";
            }
            XmppEvent::Offline(why) => {
                // Established links do not depend on the XMPP server.
                warn!("XMPP: offline ({why}); reconnecting; links stay up");
                self.xmpp_state = "offline";
            }
            XmppEvent::AuthFailed(why) => {
                error!("XMPP: {why}; no peer discovery until the config is fixed and the controller restarted");
                self.xmpp_state = "failed";
            }
            XmppEvent::PeerAvailable { uid, .. } => {
                self.xmpp_present.insert(uid.clone());
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_available(&uid, now);
                    self.apply_signal(actions);
                }
            }
            XmppEvent::PeerUnavailable { uid } => {
                info!("XMPP: peer {uid} left");
                self.xmpp_present.remove(&uid);
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_unavailable(&uid);
                    self.apply_signal(actions);
                }
            }
            XmppEvent::Message {
                uid,
                msg_type,
                data,
            } => {
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_message(&uid, &msg_type, &data, now);
                    self.apply_signal(actions);
                }
            }
        }
    }

    fn create_signalled_link(&mut self, uid: &str, fpr: &str, candidates: &[String]) {
        self.peer_online.entry(uid.to_string()).or_insert(false);
        self.send_rpc(
            "create_link",
            json!({
                "uid": uid,
                "fpr": if self.cfg.sec { fpr } else { "" },
                "candidates": candidates,
                "sec": self.cfg.sec,
            }),
        );
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
                        x.send(&uid, msg_type, &data);
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
                    self.create_signalled_link(&uid, &fpr, &candidates);
                    self.signalled.insert(uid, (fpr, candidates));
                }
                SignalAction::TrimLink { uid } => {
                    self.signalled.remove(&uid);
                    self.peer_online.remove(&uid);
                    let withdrawn = self.neigh.remove_owner(&uid);
                    info!("trimming link to {uid}; {withdrawn} ARP entries withdrawn");
                    self.send_rpc("trim_link", json!({"uid": uid}));
                }
            }
        }
    }

    fn on_notification(&mut self, method: &str, p: &ParamReader) {
        let now = self.now_ms();
        match method {
            "punt_frame" => {
                let Some(frame) = p.str("frame").ok().and_then(|h| hex::decode(h).ok()) else {
                    self.counters.bad_notifications += 1;
                    return;
                };
                let actions = self.neigh.on_local_arp(&frame, now);
                self.apply(actions);
            }
            "icc" => {
                let (Ok(uid), Ok(msg)) = (p.str("uid"), p.value("msg")) else {
                    self.counters.bad_notifications += 1;
                    return;
                };
                self.counters.icc_received += 1;
                match IccMsg::from_json(msg) {
                    Ok(m) => {
                        let uid = uid.to_string();
                        let actions = self.neigh.on_icc(&uid, &m, now);
                        self.apply(actions);
                    }
                    Err(e) => {
                        self.counters.bad_notifications += 1;
                        debug!("from {uid}: {e}");
                    }
                }
            }
            "con_stat" => {
                if let (Ok(uid), Ok(data)) = (p.str("uid"), p.str("data")) {
                    info!("peer {uid} is {data}");
                    self.peer_online.insert(uid.to_string(), data == "online");
                    let now = self.now_ms();
                    if let Some(sig) = self.signal.as_mut() {
                        sig.on_link_status(uid, data == "online", now);
                    }
                }
            }
            _ => self.counters.bad_notifications += 1,
        }
    }

    fn apply(&mut self, actions: Vec<NeighAction>) {
        for a in actions {
            match a {
                NeighAction::Inject(frame) => {
                    self.counters.frames_injected += 1;
                    self.send_rpc("inject_frame", json!({"frame": hex::encode(frame)}));
                }
                NeighAction::IccBroadcast(msg) => {
                    let online: Vec<String> = self
                        .peer_online
                        .iter()
                        .filter(|(_, up)| **up)
                        .map(|(u, _)| u.clone())
                        .collect();
                    for uid in online {
                        self.send_icc(&uid, &msg);
                    }
                }
                NeighAction::IccSend(uid, msg) => self.send_icc(&uid, &msg),
                NeighAction::ProgramMac { mac, uid } => {
                    self.counters.macs_programmed += 1;
                    self.send_rpc("set_mac", json!({"mac": mac.to_string(), "uid": uid}));
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
                        owner_text(&kept_owner),
                        owner_text(&claimed_by)
                    );
                }
            }
        }
    }

    fn send_icc(&mut self, uid: &str, msg: &IccMsg) {
        if !self.peer_online.get(uid).copied().unwrap_or(false) {
            self.counters.icc_send_failed += 1;
            return;
        }
        self.counters.icc_sent += 1;
        self.send_rpc("send_icc", json!({"uid": uid, "msg": msg.to_json()}));
    }

    fn state_json(&self) -> Value {
        let now = self.now_ms();
        let neigh: Vec<Value> = self
            .neigh
            .entries()
            .map(|(ip, e)| {
                json!({
                    "ip": ip.to_string(),
                    "mac": e.mac.to_string(),
                    "owner": match &e.owner { Owner::Local => "local".to_string(), Owner::Peer(u) => u.clone() },
                    "age_ms": now.saturating_sub(e.updated),
                })
            })
            .collect();
        let mut counters = serde_json::to_value(&self.counters).expect("serialises");
        if let (Some(c), Ok(Value::Object(n))) = (
            counters.as_object_mut(),
            serde_json::to_value(self.neigh.counters),
        ) {
            c.extend(n);
        }
        json!({
            "uid": self.uid,
            "ip4": self.cfg.ip4.to_string(),
            "icc": self.cfg.icc,
            "tincan_alive": self.last_tincan_answer.is_some_and(|t| t.elapsed() < TINCAN_TIMEOUT),
            "tap": self.tap_name,
            "bridge": self.cfg.bridge,
            "peers": self.peer_online.iter().map(|(u, up)| json!({"uid": u, "online": up})).collect::<Vec<_>>(),
            "counters": counters,
            "neigh": neigh,
            "xmpp": self.xmpp_state,
            "signalling": self.signal.as_ref().map(|s| s.peers().map(|(u, st, f)| json!({"uid": u, "state": format!("{st:?}"), "fpr": f})).collect::<Vec<_>>()),
        })
    }
}

/// The XMPP module's next event; never, without XMPP.
async fn next_xmpp_event(xmpp: &mut Option<XmppClient>) -> Option<XmppEvent> {
    match xmpp {
        Some(x) => x.recv().await,
        None => std::future::pending().await,
    }
}

/// The first IPv4 address of `host:port`, as text; `None`, with a warning, if there is none.
async fn resolve_ipv4(server: &str) -> Option<String> {
    let found = tokio::net::lookup_host(server)
        .await
        .ok()
        .and_then(|mut a| a.find(SocketAddr::is_ipv4));
    if found.is_none() {
        warn!("STUN/TURN server {server:?} does not resolve to an IPv4 address; not used");
    }
    found.map(|a| a.to_string())
}

fn owner_text(o: &Owner) -> String {
    match o {
        Owner::Local => "this host's bridge".into(),
        Owner::Peer(u) => format!("peer {u}"),
    }
}
