//! The control side of the data plane: the typed JSON-RPC methods the controller (and
//! `--rpc`) call (`proto::api::tincan`), who may call them, the notifications tincan sends
//! back, and whether the controller is alive.
//!
//! Methods that change state are answered only on the control socket, to root or tincan's own
//! user (`control_sock`); the UDP port answers `get_state` and `echo_request` to anyone local
//! and refuses the rest with an error that says where to go.

use crate::control_sock::{Caller, ConnId};
use crate::dataplane::{Node, CONTROLLER_TIMEOUT_MS};
use ipop_tincan::keys;
use log::{debug, info, warn};
use proto::api::tincan::{
    ConStat, CreateLink, EchoReply, Icc, LinkStatus, PuntFrame, SetLocalIp, SetNat,
    TincanNotification, TincanRequest,
};
use proto::api::{self, ApiError, ErrorCode};
use proto::id::{Millis, Uid};
use proto::link::{LinkId, LocalConfig, SendError};
use proto::nat::TurnServerConfig;
use proto::neigh::nd_responder::NdResponder;
use proto::neigh::responder::Responder;
use proto::rpc::{self, Incoming};
use proto::secure::CipherOffer;
use proto::wire::ethernet::{peek_header, HEADER_LEN as ETH_HEADER};
use proto::wire::link::MAX_INNER_LEN;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// What identifies this node once `set_local_ip` loaded it; it changes only with a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    uid: Uid,
    sec: bool,
    key_file: Option<PathBuf>,
}

/// What the controller told tincan about itself, and whether it is still there.
#[derive(Debug, Default)]
pub struct Control {
    /// The controller's connection to the control socket (it called `set_cb_endpoint` on it).
    cb: Option<ConnId>,
    identity: Option<Identity>,
    heard: Option<Millis>,
    alive: bool,
    pub switchmode: u8,
    pub ip4: Option<Ipv4Addr>,
    pub link_port: Option<u16>,
    /// Interfaces whose addresses are never candidates (network_ignore_list).
    pub ignore_ifs: Vec<String>,
    /// The ARP bindings the controller programmed (`set_neigh`), answered in the data plane.
    pub neigh: Responder,
    /// The IPv6 bindings the controller programmed (`set_nd`), answered in the data plane.
    pub nd: NdResponder,
}

impl Control {
    /// Where notifications go.
    pub fn cb(&self) -> Option<ConnId> {
        self.cb
    }

    /// The controller's connection closed: notifications have nowhere to go until it connects
    /// again (liveness runs out as usual).
    pub fn controller_gone(&mut self) {
        if self.cb.take().is_some() {
            info!("controller's connection to the control socket closed");
        }
    }

    /// ARP goes to the controller only while it answers.
    pub fn alive(&self) -> bool {
        self.alive
    }

    /// A message came from the controller's connection.
    fn heard_from_controller(&mut self, now: Millis) {
        self.heard = Some(now);
        if !self.alive {
            self.alive = true;
            info!("controller is answering: ARP goes to it");
        }
    }

    /// When the controller counts as silent unless it speaks again.
    pub fn controller_deadline(&self) -> Option<Millis> {
        self.heard
            .filter(|_| self.alive)
            .map(|t| t + CONTROLLER_TIMEOUT_MS)
    }

    /// Updates liveness; returns the new state when it changed.
    pub fn check_controller(&mut self, now: Millis) -> Option<bool> {
        let alive = self
            .heard
            .is_some_and(|t| now.saturating_sub(t) < CONTROLLER_TIMEOUT_MS);
        (alive != self.alive).then(|| {
            self.alive = alive;
            if !alive {
                // Its successor programs its own bindings; until then ARP is flooded.
                self.neigh.clear();
                self.nd.clear();
            }
            alive
        })
    }
}

/// Largest ICC message (JSON bytes): what link fragments carry, less the inner type.
const MAX_ICC_LEN: usize = MAX_INNER_LEN - 1;

fn link_not_up(uid: &Uid) -> ApiError {
    ApiError::new(ErrorCode::LinkNotUp, format!("link to {uid} is not up"))
}

fn no_link(uid: &Uid) -> ApiError {
    ApiError::param("uid", format_args!("no link to {uid}"))
}

impl Node {
    /// Answers one control message (a UDP datagram or a line of the control socket); returns
    /// the reply, if the request wants one.
    pub fn handle_ctrl(&mut self, message: &[u8], caller: Caller, now: Millis) -> Option<Vec<u8>> {
        let from_controller = caller.conn().is_some() && caller.conn() == self.control.cb();
        if from_controller {
            self.control.heard_from_controller(now);
        }
        match rpc::parse(message) {
            Incoming::Call { id, method, params } => {
                let result = if proto::rpc_stream::changes_state(&method) && !caller.trusted() {
                    Err(self.refuse(&method, caller))
                } else {
                    TincanRequest::from_call(&method, params)
                        .and_then(|r| self.call(r, caller, now))
                };
                if let Err(e) = &result {
                    if e.code != ErrorCode::NotPermitted {
                        debug!("rpc {method} from {caller:?}: {}", e.message);
                        self.counters.ctrl_bad_request += 1;
                    }
                }
                // The controller's heartbeat paces the reports of ARP answered here.
                if from_controller {
                    self.report_neigh_answers();
                    self.report_nd_answers();
                }
                id.map(|id| api::response(id, result))
            }
            Incoming::Response { .. } => None,
            Incoming::Invalid { id, error } => {
                self.counters.ctrl_bad_request += 1;
                id.map(|id| rpc::response(id, Err(error)))
            }
        }
    }

    /// A state-changing call from a caller that may not change state: counted, logged (the
    /// first and then every 100th), and answered with where to go.
    fn refuse(&mut self, method: &str, caller: Caller) -> ApiError {
        let n = &mut self.ctl_sock.counters.control_refused_unauthenticated;
        *n += 1;
        let message = proto::rpc_stream::refusal(method, self.ctl_sock.port, caller.uid());
        if *n % 100 == 1 {
            let who = match caller {
                Caller::Udp(from) => format!("UDP {from}"),
                Caller::Stream { uid, .. } => format!("uid {uid} on the control socket"),
            };
            warn!("refused {method} from {who} ({n} refused so far): {message}");
        }
        ApiError::new(ErrorCode::NotPermitted, message)
    }

    fn call(&mut self, req: TincanRequest, caller: Caller, now: Millis) -> Result<Value, ApiError> {
        match req {
            TincanRequest::EchoRequest(e) => {
                Ok(serde_json::to_value(EchoReply { msg: e.msg }).expect("echo serialises"))
            }
            TincanRequest::SetLogging(l) => {
                // An operator's RUST_LOG wins over the config and over ipopctl.
                let fixed = std::env::var("RUST_LOG").is_ok_and(|v| !v.is_empty());
                let level = l.level_filter();
                if !fixed && level != log::max_level() {
                    let line = format!("log level now {level}");
                    if level >= log::LevelFilter::Info {
                        log::set_max_level(level);
                        info!("{line}");
                    } else {
                        info!("{line}");
                        log::set_max_level(level);
                    }
                }
                Ok(serde_json::json!({
                    "level": log::max_level().to_string().to_lowercase(),
                    "fixed_by_rust_log": fixed,
                }))
            }
            TincanRequest::SetCbEndpoint(_) => {
                // Only a trusted connection gets here: notifications go over it (the address
                // in the params dates from the UDP callbacks and is not used).
                let conn = caller.conn().expect("state changes come over the socket");
                if self.control.cb() != Some(conn) {
                    info!(
                        "controller (uid {}) connected: notifications go over its connection",
                        caller.uid().unwrap_or(0)
                    );
                }
                self.control.cb = Some(conn);
                self.control.heard_from_controller(now);
                Ok(api::DONE)
            }
            TincanRequest::SetLocalIp(p) => self.set_local_ip(p),
            TincanRequest::SetSwitchmode(s) => {
                self.control.switchmode = s.switchmode;
                if let Some(icc) = s.icc {
                    self.set_icc(icc);
                }
                Ok(api::DONE)
            }
            TincanRequest::CreateLink(c) => self.create_link(c, now),
            TincanRequest::SetNat(n) => {
                self.set_nat(n);
                Ok(api::DONE)
            }
            TincanRequest::TrimLink(t) => {
                let id = self.core.trim_link(&t.uid).map_err(|_| no_link(&t.uid))?;
                let removed = self.switch.macs.remove_port(id);
                info!("{removed} MAC entries of {} withdrawn", t.uid);
                Ok(api::DONE)
            }
            TincanRequest::SetMac(m) => {
                let id = self.core.link_of(&m.uid).ok_or_else(|| no_link(&m.uid))?;
                let station = proto::mactable::Station {
                    vid: m.vlan.unwrap_or(0),
                    mac: m.mac,
                };
                match self.switch.program(station, id, now) {
                    proto::mactable::Learned::Refused => Err(ApiError::param(
                        "mac",
                        format_args!(
                            "{} not accepted (group address, a host on the local bridge, or table full)",
                            m.mac
                        ),
                    )),
                    _ => Ok(api::DONE),
                }
            }
            TincanRequest::ReleaseMac(r) => {
                let port = match &r.uid {
                    Some(uid) => Some(self.core.link_of(uid).ok_or_else(|| no_link(uid))?),
                    None => None,
                };
                let station = proto::mactable::Station {
                    vid: r.vlan.unwrap_or(0),
                    mac: r.mac,
                };
                let released = self.switch.release(station, port);
                if released {
                    info!(
                        "{} released ({})",
                        r.mac,
                        match &r.uid {
                            Some(uid) => format!("withdrawn by {uid}"),
                            None => "left the local bridge".into(),
                        }
                    );
                }
                Ok(serde_json::json!({ "released": released }))
            }
            TincanRequest::InjectFrame(f) => {
                let max = self.tap.max_overlay_frame();
                if f.frame.len() < ETH_HEADER || f.frame.len() > max {
                    self.counters.drop_oversize += 1;
                    return Err(ApiError::param(
                        "frame",
                        format_args!("expected {ETH_HEADER}-{max} bytes, got {}", f.frame.len()),
                    ));
                }
                // The controller injects frames on behalf of peers' hosts (ARP requests and
                // replies): never with the source of a host on our own bridge, which would
                // move that host onto the TAP in the bridge.
                if let Ok((_, src, _)) = peek_header(&f.frame) {
                    if self.switch.is_local(&src, now) {
                        self.counters.inject_refused_local_source += 1;
                        return Err(ApiError::param(
                            "frame",
                            format_args!("source {src} is a host on the local bridge"),
                        ));
                    }
                }
                match self.tap.send(&f.frame) {
                    Ok(_) => {
                        self.counters.injected_frames += 1;
                        Ok(api::DONE)
                    }
                    Err(e) => {
                        self.counters.tap_write_errors += 1;
                        Err(ApiError::new(
                            ErrorCode::TapWriteFailed,
                            format!("TAP write failed: {e}"),
                        ))
                    }
                }
            }
            TincanRequest::SendIcc(s) => {
                let payload = serde_json::to_vec(&s.msg).expect("JSON serialises");
                if payload.len() > MAX_ICC_LEN {
                    return Err(ApiError::param(
                        "msg",
                        format_args!(
                            "{} bytes, more than the {MAX_ICC_LEN} an ICC message may have",
                            payload.len()
                        ),
                    ));
                }
                let id = self.core.link_of(&s.uid).ok_or_else(|| no_link(&s.uid))?;
                match self.core.send_icc(now, id, &payload) {
                    Ok(()) => Ok(api::DONE),
                    Err(SendError::NoLink) => Err(no_link(&s.uid)),
                    Err(_) => Err(link_not_up(&s.uid)),
                }
            }
            TincanRequest::SetNeigh(n) => {
                self.set_neigh(&n, now);
                Ok(api::DONE)
            }
            TincanRequest::SetNd(n) => {
                self.set_nd(&n, now);
                Ok(api::DONE)
            }
            TincanRequest::GetState(_) => {
                Ok(serde_json::to_value(self.local_state(now)).expect("state serialises"))
            }
        }
    }

    fn set_icc(&mut self, icc: bool) {
        if self.switch.punt_arp != icc {
            info!(
                "ARP {}",
                if icc {
                    "goes to the controller (icc on)"
                } else {
                    "is flooded like any broadcast (icc off)"
                }
            );
        }
        self.switch.punt_arp = icc;
    }

    /// The identity of the first `set_local_ip` stays until tincan restarts: the same values
    /// again are fine (a restarted controller configures tincan again), others are refused.
    fn check_identity(&mut self, p: &SetLocalIp) -> Result<Identity, ApiError> {
        let new = Identity {
            uid: p.uid,
            sec: p.sec,
            key_file: p.key_file.clone().filter(|_| p.sec),
        };
        let Some(old) = &self.control.identity else {
            return Ok(new);
        };
        let mut changes = Vec::new();
        if old.uid != new.uid {
            changes.push(format!("uid {} -> {}", old.uid, new.uid));
        }
        if old.sec != new.sec {
            changes.push(format!("\"sec\" {} -> {}", old.sec, new.sec));
        }
        if old.sec && new.sec && old.key_file != new.key_file {
            let show = |k: &Option<PathBuf>| {
                k.as_ref()
                    .map_or("none".to_string(), |p| p.display().to_string())
            };
            changes.push(format!(
                "key_file {} -> {}",
                show(&old.key_file),
                show(&new.key_file)
            ));
        }
        if changes.is_empty() {
            return Ok(new);
        }
        self.ctl_sock.counters.control_refused_identity_change += 1;
        let message = format!(
            "set_local_ip would change this tincan's identity ({}): refused, the loaded one \
             stays; restart ipop-tincan to take another",
            changes.join(", ")
        );
        warn!("{message}");
        Err(ApiError::new(ErrorCode::NotPermitted, message))
    }

    fn set_local_ip(&mut self, p: SetLocalIp) -> Result<Value, ApiError> {
        let identity = self.check_identity(&p)?;
        let key = match &p.key_file {
            Some(path) => {
                let (key, created) = keys::load_or_create(path)
                    .map_err(|e| ApiError::new(ErrorCode::KeyFileError, e))?;
                if created {
                    info!("generated key file {}", path.display());
                }
                Some(key)
            }
            None => None,
        };
        if let Some(icc) = p.icc {
            self.set_icc(icc);
        }
        if let Some(mode) = p.switchmode {
            self.control.switchmode = mode;
        }
        self.core
            .configure(LocalConfig {
                uid: p.uid,
                sec: p.sec,
                key: if p.sec { key } else { None },
                cipher: CipherOffer::here(p.cipher),
                rekey_after: u64::from(p.rekey_after_secs) * 1000,
            })
            .map_err(|e| ApiError::new(ErrorCode::InvalidParams, e.0))?;
        self.control.identity = Some(identity);
        if let Some(mtu) = p.link_mtu.filter(|m| *m != self.core.link_mtu()) {
            self.core
                .set_link_mtu(mtu)
                .map_err(|e| ApiError::new(ErrorCode::InvalidParams, e.0))?;
            info!("link datagrams cut for an underlay MTU of {mtu}");
        }
        if self.control.link_port != Some(p.link_port) || self.link_sock.is_none() {
            self.bind_link(p.link_port).map_err(|e| {
                ApiError::new(
                    ErrorCode::CannotBindLinkPort,
                    format!("cannot bind link port 0.0.0.0:{}: {e}", p.link_port),
                )
            })?;
            self.control.link_port = Some(p.link_port);
        }
        if let Some(mtu) = p.mtu.filter(|m| *m != self.tap.mtu) {
            self.tap.set_mtu(mtu).map_err(|e| {
                ApiError::new(
                    ErrorCode::CannotSetMtu,
                    format!("cannot set TAP MTU {mtu}: {e}"),
                )
            })?;
            self.tap.mtu = mtu;
            info!("TAP {} mtu {mtu}", self.tap.name);
        }
        if let Some(rates) = p.storm.filter(|r| *r != self.storm.rates()) {
            let now = self.now();
            self.storm.set_rates(rates, now);
            self.storm_in.clear();
            info!(
                "storm control: broadcast {}, multicast {}, unknown unicast {} frames/s (0: no limit)",
                rates.broadcast_pps, rates.multicast_pps, rates.unknown_unicast_pps
            );
        }
        self.control.ip4 = Some(p.ip4);
        Ok(api::DONE)
    }

    /// STUN and TURN servers (addresses: the controller resolves names), and interfaces whose
    /// addresses are never candidates.
    fn set_nat(&mut self, n: SetNat) {
        let turn = n.turn.map(|t| TurnServerConfig {
            server: t.server,
            user: t.user,
            pass: t.pass,
        });
        self.control.ignore_ifs = n.ignore;
        self.core.set_nat(n.stun, turn);
    }

    fn create_link(&mut self, c: CreateLink, now: Millis) -> Result<Value, ApiError> {
        self.core
            .create_link(now, c.uid, c.endpoint, c.candidates, c.fpr)
            .map_err(|e| ApiError::new(ErrorCode::InvalidParams, e.0))?;
        Ok(api::DONE)
    }

    /// An ARP frame from the local bridge, for the controller.
    pub fn punt_frame(&mut self, frame: &[u8]) {
        let n = TincanNotification::PuntFrame(PuntFrame {
            frame: frame.to_vec(),
            uid: None,
        });
        self.notify(&n.notification());
    }

    /// An ICC message from the peer of link `id`: to the controller, with the uid the link
    /// authenticated (never one the message claims).
    pub fn deliver_icc(&mut self, id: LinkId, msg: Result<Value, serde_json::Error>) {
        let Some(uid) = self.core.link(id).map(|l| l.uid()) else {
            return;
        };
        match msg {
            Ok(msg) => {
                let n = TincanNotification::Icc(Icc { uid, msg });
                self.notify(&n.notification());
            }
            Err(_) => self.counters.drop_bad_icc += 1,
        }
    }

    pub fn notify_con_stat(&mut self, uid: Uid, up: bool) {
        let data = if up {
            LinkStatus::Online
        } else {
            LinkStatus::Offline
        };
        let n = TincanNotification::ConStat(ConStat { uid, data });
        self.notify(&n.notification());
    }
}
