//! The control side of the data plane: the typed JSON-RPC methods the controller (and
//! `--rpc`) call (`proto::api::tincan`), the notifications tincan sends back, and whether the
//! controller is alive.

use crate::dataplane::{Node, CONTROLLER_TIMEOUT_MS};
use ipop_tincan::keys;
use log::{debug, info};
use proto::api::tincan::{
    ConStat, CreateLink, EchoReply, Icc, LinkStatus, PuntFrame, SetLocalIp, SetNat,
    TincanNotification, TincanRequest,
};
use proto::api::{self, ApiError, ErrorCode};
use proto::id::{Millis, Uid};
use proto::link::{LinkId, LocalConfig, SendError};
use proto::nat::TurnServerConfig;
use proto::neigh::responder::Responder;
use proto::rpc::{self, Incoming};
use proto::secure::CipherOffer;
use proto::wire::ethernet::{peek_header, HEADER_LEN as ETH_HEADER};
use proto::wire::link::MAX_INNER_LEN;
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};

/// What the controller told tincan about itself, and whether it is still there.
#[derive(Debug, Default)]
pub struct Control {
    cb: Option<SocketAddr>,
    heard: Option<Millis>,
    alive: bool,
    pub switchmode: u8,
    pub ip4: Option<Ipv4Addr>,
    pub link_port: Option<u16>,
    /// Interfaces whose addresses are never candidates (network_ignore_list).
    pub ignore_ifs: Vec<String>,
    /// The ARP bindings the controller programmed (`set_neigh`), answered in the data plane.
    pub neigh: Responder,
}

impl Control {
    /// Where notifications go.
    pub fn cb(&self) -> Option<SocketAddr> {
        self.cb
    }

    /// ARP goes to the controller only while it answers.
    pub fn alive(&self) -> bool {
        self.alive
    }

    /// A datagram came from `from` on the control socket.
    pub fn heard_from(&mut self, from: SocketAddr, now: Millis) {
        if Some(from) == self.cb {
            self.heard = Some(now);
            if !self.alive {
                self.alive = true;
                info!("controller at {from} is answering: ARP goes to it");
            }
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
    /// Answers one control datagram; returns the reply, if the request wants one.
    pub fn handle_ctrl(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now: Millis,
    ) -> Option<Vec<u8>> {
        match rpc::parse(datagram) {
            Incoming::Call { id, method, params } => {
                let result =
                    TincanRequest::from_call(&method, params).and_then(|r| self.call(r, from, now));
                if let Err(e) = &result {
                    debug!("rpc {method} from {from}: {}", e.message);
                    self.counters.ctrl_bad_request += 1;
                }
                // The controller's heartbeat paces the reports of ARP answered here.
                if Some(from) == self.control.cb() {
                    self.report_neigh_answers();
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

    fn call(
        &mut self,
        req: TincanRequest,
        from: SocketAddr,
        now: Millis,
    ) -> Result<Value, ApiError> {
        match req {
            TincanRequest::EchoRequest(e) => {
                Ok(serde_json::to_value(EchoReply { msg: e.msg }).expect("echo serialises"))
            }
            TincanRequest::SetLogging(l) => {
                // An operator's RUST_LOG wins over the config.
                if std::env::var_os("RUST_LOG").is_none() {
                    log::set_max_level(l.level_filter());
                }
                Ok(api::DONE)
            }
            TincanRequest::SetCbEndpoint(c) => {
                let cb = c.endpoint(from);
                if self.control.cb() != Some(cb) {
                    info!("controller callback endpoint is {cb}");
                }
                self.control.cb = Some(cb);
                self.control.heard_from(cb, now);
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
                match self.switch.program(m.mac, id, now) {
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
            TincanRequest::InjectFrame(f) => {
                let max = self.tap.max_frame();
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

    fn set_local_ip(&mut self, p: SetLocalIp) -> Result<Value, ApiError> {
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
