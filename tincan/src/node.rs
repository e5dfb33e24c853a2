//! The tincan node: one mio loop over the TAP, the link socket and the control socket, plus a
//! 100 ms tick for link timers and aging. Forwarding decisions come from `proto::switch`, link
//! liveness from `proto::link`; this file only moves bytes and answers RPCs.

use log::{debug, error, info, warn};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use proto::link::{LinkEvent, LinkSession, LinkState, LinkTimer};
use proto::rpc::{self, Incoming, ParamReader, RpcError};
use proto::switch::{Switch, TapVerdict};
use proto::wire::ethernet::{MacAddr, HEADER_LEN as ETH_HEADER};
use proto::wire::link::{self as linkwire, LinkMessage, Uid, DATA_HEADER_LEN};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tun::AbstractDevice;

const TAP: Token = Token(0);
const LINK: Token = Token(1);
const CTRL: Token = Token(2);

/// Frames or datagrams handled per source per wake-up before the others get a turn.
const BATCH: usize = 64;
const TICK: Duration = Duration::from_millis(100);
/// The controller heartbeats every second; after this much silence ARP is flooded instead.
const CONTROLLER_TIMEOUT_MS: u64 = 3_000;
const MAC_TABLE_SIZE: usize = 8_192;
const MAC_TTL_MS: u64 = 300_000;
const MAX_LINKS: usize = 4_096;
/// Largest datagram we accept or send: jumbo TAP MTU plus headers.
const BUF_LEN: usize = 65_536;

/// Counters for everything the data plane drops or does, readable with `get_state`.
#[derive(Debug, Default, Serialize)]
struct Counters {
    tap_rx_frames: u64,
    tap_rx_bytes: u64,
    tap_tx_frames: u64,
    tap_tx_bytes: u64,
    tap_write_errors: u64,
    link_rx_datagrams: u64,
    link_tx_errors: u64,
    flooded_frames: u64,
    unknown_unicast: u64,
    arp_punted: u64,
    arp_flooded: u64,
    punt_errors: u64,
    injected_frames: u64,
    icc_tx: u64,
    icc_rx: u64,
    mac_moves: u64,
    drop_truncated_frame: u64,
    drop_group_source: u64,
    drop_oversize: u64,
    drop_link_down: u64,
    drop_no_links: u64,
    drop_bad_link_message: u64,
    drop_unknown_index: u64,
    drop_unknown_peer: u64,
    drop_wrong_receiver: u64,
    drop_not_configured: u64,
    drop_bad_icc: u64,
    ctrl_foreign_source: u64,
    ctrl_bad_request: u64,
}

struct Local {
    uid: Uid,
    ip4: Ipv4Addr,
    link_port: u16,
}

pub struct Node {
    poll: Poll,
    tap: tun::Device,
    tap_name: String,
    tap_mac: MacAddr,
    mtu: u16,
    ctrl: UdpSocket,
    link_sock: Option<UdpSocket>,
    local: Option<Local>,
    switchmode: u64,
    boot_id: u64,
    start: Instant,
    links: Vec<Option<LinkSession>>,
    by_uid: HashMap<Uid, usize>,
    switch: Switch<usize>,
    cb: Option<SocketAddr>,
    controller_heard: Option<u64>,
    controller_alive: bool,
    counters: Counters,
    /// Receive buffer; frames are read at `DATA_HEADER_LEN` so the link header is written in
    /// front of them without a copy.
    buf: Vec<u8>,
    ctrl_buf: Vec<u8>,
    last_expire: u64,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

fn read_mac(ifname: &str) -> MacAddr {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(MacAddr::ZERO)
}

fn random_u64() -> u64 {
    // Unpredictability is not needed here (the boot id only tells restarts apart), so the
    // std hasher's per-process random keys are enough.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl Node {
    pub fn new(tap_name: &str, port: u16, mtu: u16) -> io::Result<Node> {
        let mut cfg = tun::Configuration::default();
        cfg.tun_name(tap_name).layer(tun::Layer::L2).mtu(mtu).up();
        let tap = tun::create(&cfg).map_err(|e| {
            io_err(
                &format!("cannot create TAP {tap_name:?} (needs root and /dev/net/tun)"),
                e,
            )
        })?;
        tap.set_nonblock()?;
        let tap_name = tap.tun_name().unwrap_or_else(|_| tap_name.to_string());
        let tap_mac = read_mac(&tap_name);
        let ctrl_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut ctrl = UdpSocket::bind(ctrl_addr).map_err(|e| {
            io_err(
                &format!("cannot bind control port {ctrl_addr} (is another ipop-tincan running?)"),
                e,
            )
        })?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&tap.as_raw_fd()), TAP, Interest::READABLE)?;
        poll.registry()
            .register(&mut ctrl, CTRL, Interest::READABLE)?;
        info!("TAP {tap_name} up, mac {tap_mac}, mtu {mtu}; control on {ctrl_addr}");
        warn!(
            "links are plaintext: encryption is not implemented yet, use only on trusted underlays"
        );
        let mut switch = Switch::new(MAC_TABLE_SIZE, MAC_TTL_MS);
        switch.punt_arp = false;
        Ok(Node {
            poll,
            tap,
            tap_name,
            tap_mac,
            mtu,
            ctrl,
            link_sock: None,
            local: None,
            switchmode: 1,
            boot_id: random_u64(),
            start: Instant::now(),
            links: Vec::new(),
            by_uid: HashMap::new(),
            switch,
            cb: None,
            controller_heard: None,
            controller_alive: false,
            counters: Counters::default(),
            buf: vec![0u8; BUF_LEN],
            ctrl_buf: vec![0u8; BUF_LEN],
            last_expire: 0,
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        let mut next_tick = Instant::now();
        // Edge-triggered sources not drained to WouldBlock in the last round.
        let (mut tap_more, mut link_more, mut ctrl_more) = (true, false, false);
        loop {
            let timeout = if tap_more || link_more || ctrl_more {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                match ev.token() {
                    TAP => tap_more = true,
                    LINK => link_more = true,
                    CTRL => ctrl_more = true,
                    _ => {}
                }
            }
            if ctrl_more {
                ctrl_more = self.drain_ctrl();
            }
            if tap_more {
                tap_more = self.drain_tap();
            }
            if link_more {
                link_more = self.drain_link();
            }
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + TICK;
            }
        }
    }

    // ---- TAP -> links ----------------------------------------------------------------

    /// Returns true if the TAP may hold more frames.
    fn drain_tap(&mut self) -> bool {
        for _ in 0..BATCH {
            let n = match self.tap.recv(&mut self.buf[DATA_HEADER_LEN..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error!("TAP read: {e}");
                    return false;
                }
            };
            self.counters.tap_rx_frames += 1;
            self.counters.tap_rx_bytes += n as u64;
            self.on_tap_frame(n);
        }
        true
    }

    fn on_tap_frame(&mut self, n: usize) {
        let now = self.now();
        let frame_end = DATA_HEADER_LEN + n;
        if n > self.mtu as usize + ETH_HEADER {
            self.counters.drop_oversize += 1;
            return;
        }
        let verdict = {
            let frame = &self.buf[DATA_HEADER_LEN..frame_end];
            self.switch.from_tap(frame, self.controller_alive, now)
        };
        match verdict {
            TapVerdict::Punt => {
                self.counters.arp_punted += 1;
                let frame = hex::encode(&self.buf[DATA_HEADER_LEN..frame_end]);
                self.notify("punt_frame", json!({"frame": frame, "uid": null}));
            }
            TapVerdict::Flood(reason) => {
                use proto::switch::FloodReason;
                match reason {
                    FloodReason::UnknownUnicast => self.counters.unknown_unicast += 1,
                    FloodReason::Arp => self.counters.arp_flooded += 1,
                    FloodReason::Multicast => {}
                }
                self.counters.flooded_frames += 1;
                let mut sent = 0;
                for slot in 0..self.links.len() {
                    if self.send_data(slot, frame_end, now) {
                        sent += 1;
                    }
                }
                if sent == 0 {
                    self.counters.drop_no_links += 1;
                }
            }
            TapVerdict::Unicast(slot) => {
                if !self.send_data(slot, frame_end, now) {
                    self.counters.drop_link_down += 1;
                }
            }
            TapVerdict::Drop(_) => self.counters.drop_truncated_frame += 1,
        }
    }

    /// Sends `buf[..end]` (header space + frame) as a data message on link `slot`.
    fn send_data(&mut self, slot: usize, end: usize, now: u64) -> bool {
        let Some(sock) = self.link_sock.as_ref() else {
            return false;
        };
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return false;
        };
        let (LinkState::Up, Some(ridx)) = (link.state, link.remote_idx) else {
            return false;
        };
        let counter = link.next_counter(now);
        linkwire::emit_header(&mut self.buf[..end], linkwire::TYPE_DATA, ridx, counter)
            .expect("buffer holds the header");
        match sock.send_to(&self.buf[..end], link.endpoint) {
            Ok(_) => {
                link.counters.tx_frames += 1;
                link.counters.tx_bytes += (end - DATA_HEADER_LEN) as u64;
                true
            }
            Err(_) => {
                link.counters.tx_errors += 1;
                self.counters.link_tx_errors += 1;
                false
            }
        }
    }

    // ---- links -> TAP ----------------------------------------------------------------

    fn drain_link(&mut self) -> bool {
        for _ in 0..BATCH {
            let Some(sock) = self.link_sock.as_ref() else {
                return false;
            };
            let (n, from) = match sock.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from an earlier send (peer down): not ours to act on here.
                Err(_) => continue,
            };
            self.counters.link_rx_datagrams += 1;
            self.on_link_datagram(n, from);
        }
        true
    }

    fn slot_for_index(&self, idx: u32) -> Option<usize> {
        let slot = (idx & 0xffff) as usize;
        match self.links.get(slot) {
            Some(Some(l)) if l.local_idx == idx => Some(slot),
            _ => None,
        }
    }

    fn on_link_datagram(&mut self, n: usize, from: SocketAddr) {
        let now = self.now();
        let Some(local_uid) = self.local.as_ref().map(|l| l.uid) else {
            self.counters.drop_not_configured += 1;
            return;
        };
        let msg = match LinkMessage::parse(&self.buf[..n]) {
            Ok(m) => m,
            Err(_) => {
                self.counters.drop_bad_link_message += 1;
                return;
            }
        };
        match msg {
            LinkMessage::Hello(h) => {
                if h.receiver_uid != local_uid {
                    self.counters.drop_wrong_receiver += 1;
                    return;
                }
                let Some(&slot) = self.by_uid.get(&h.sender_uid) else {
                    self.counters.drop_unknown_peer += 1;
                    if self.counters.drop_unknown_peer.is_power_of_two() {
                        warn!(
                            "hello from {from} with uid {} that is not a configured peer: dropped ({} so far)",
                            hex::encode(h.sender_uid),
                            self.counters.drop_unknown_peer
                        );
                    }
                    return;
                };
                let link = self.links[slot]
                    .as_mut()
                    .expect("by_uid points at live slots");
                let (ev, reply) = link.on_hello(&h, from, now);
                if reply {
                    self.send_hello(slot, now);
                }
                if let Some(ev) = ev {
                    self.link_event(slot, ev);
                }
            }
            LinkMessage::Data {
                receiver_idx,
                frame,
                ..
            } => {
                let Some(slot) = self.slot_for_index(receiver_idx) else {
                    self.counters.drop_unknown_index += 1;
                    return;
                };
                let flen = frame.len();
                let link = self.links[slot].as_mut().expect("checked");
                let ev = link.on_rx(now);
                if let Some(ev) = ev {
                    self.link_event(slot, ev);
                }
                let frame = &self.buf[DATA_HEADER_LEN..n];
                if flen > self.mtu as usize + ETH_HEADER {
                    self.counters.drop_oversize += 1;
                    return;
                }
                match self.switch.from_link(slot, frame, now) {
                    proto::switch::LinkVerdict::ToTap => {}
                    proto::switch::LinkVerdict::Drop(r) => {
                        match r {
                            proto::switch::DropReason::GroupSource => {
                                self.counters.drop_group_source += 1
                            }
                            proto::switch::DropReason::Truncated => {
                                self.counters.drop_truncated_frame += 1
                            }
                        }
                        return;
                    }
                }
                if let Some(Some(link)) = self.links.get_mut(slot) {
                    link.counters.rx_frames += 1;
                    link.counters.rx_bytes += flen as u64;
                }
                match self.tap.send(&self.buf[DATA_HEADER_LEN..n]) {
                    Ok(_) => {
                        self.counters.tap_tx_frames += 1;
                        self.counters.tap_tx_bytes += flen as u64;
                    }
                    Err(_) => self.counters.tap_write_errors += 1,
                }
            }
            LinkMessage::Icc {
                receiver_idx,
                payload,
                ..
            } => {
                let Some(slot) = self.slot_for_index(receiver_idx) else {
                    self.counters.drop_unknown_index += 1;
                    return;
                };
                let msg: Result<Value, _> = serde_json::from_slice(payload);
                let link = self.links[slot].as_mut().expect("checked");
                let ev = link.on_rx(now);
                link.counters.icc_rx += 1;
                let uid = hex::encode(link.peer_uid);
                if let Some(ev) = ev {
                    self.link_event(slot, ev);
                }
                match msg {
                    Ok(msg) => {
                        self.counters.icc_rx += 1;
                        self.notify("icc", json!({"uid": uid, "msg": msg}));
                    }
                    Err(_) => self.counters.drop_bad_icc += 1,
                }
            }
            LinkMessage::Keepalive { receiver_idx, .. } => {
                let Some(slot) = self.slot_for_index(receiver_idx) else {
                    self.counters.drop_unknown_index += 1;
                    return;
                };
                let ev = self.links[slot].as_mut().expect("checked").on_rx(now);
                if let Some(ev) = ev {
                    self.link_event(slot, ev);
                }
            }
        }
    }

    fn send_hello(&mut self, slot: usize, now: u64) {
        let (Some(sock), Some(local)) = (self.link_sock.as_ref(), self.local.as_ref()) else {
            return;
        };
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return;
        };
        let mut out = [0u8; linkwire::HELLO_LEN];
        let n = link
            .hello(local.uid, self.boot_id)
            .emit(&mut out)
            .expect("sized for a hello");
        link.last_tx = now;
        if sock.send_to(&out[..n], link.endpoint).is_err() {
            link.counters.tx_errors += 1;
        }
    }

    fn send_control_msg(&mut self, slot: usize, msg_type: u8, payload: &[u8], now: u64) -> bool {
        let Some(sock) = self.link_sock.as_ref() else {
            return false;
        };
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return false;
        };
        let Some(ridx) = link.remote_idx else {
            return false;
        };
        let mut out = vec![0u8; DATA_HEADER_LEN + payload.len()];
        out[DATA_HEADER_LEN..].copy_from_slice(payload);
        let counter = link.next_counter(now);
        linkwire::emit_header(&mut out, msg_type, ridx, counter).expect("sized");
        sock.send_to(&out, link.endpoint).is_ok()
    }

    fn link_event(&mut self, slot: usize, ev: LinkEvent) {
        let Some(Some(link)) = self.links.get(slot) else {
            return;
        };
        let uid = hex::encode(link.peer_uid);
        let endpoint = link.endpoint;
        match ev {
            LinkEvent::Up => {
                info!("link to {uid} at {endpoint} is up");
                self.notify("con_stat", json!({"uid": uid, "data": "online"}));
            }
            LinkEvent::Down => {
                let removed = self.switch.macs.remove_port(slot);
                info!("link to {uid} at {endpoint} is down (peer silent); {removed} MAC entries withdrawn");
                self.notify("con_stat", json!({"uid": uid, "data": "offline"}));
            }
        }
    }

    // ---- timers ------------------------------------------------------------------------

    fn tick(&mut self) {
        let now = self.now();
        for slot in 0..self.links.len() {
            let Some(link) = self.links[slot].as_mut() else {
                continue;
            };
            let (ev, timer) = link.poll(now);
            if let Some(ev) = ev {
                self.link_event(slot, ev);
            }
            match timer {
                LinkTimer::SendHello => self.send_hello(slot, now),
                LinkTimer::SendKeepalive => {
                    self.send_control_msg(slot, linkwire::TYPE_KEEPALIVE, &[], now);
                }
                LinkTimer::Nothing => {}
            }
        }
        let alive = self
            .controller_heard
            .is_some_and(|t| now.saturating_sub(t) < CONTROLLER_TIMEOUT_MS);
        if alive != self.controller_alive {
            self.controller_alive = alive;
            if alive {
                info!("controller is answering: ARP goes to it again");
            } else if self.switch.punt_arp {
                warn!("controller silent for {CONTROLLER_TIMEOUT_MS} ms: flooding ARP like a plain switch until it is back");
            }
        }
        if now.saturating_sub(self.last_expire) >= 1_000 {
            self.last_expire = now;
            self.switch.macs.expire(now);
        }
    }

    // ---- control -----------------------------------------------------------------------

    fn notify(&mut self, method: &str, params: Value) {
        let Some(cb) = self.cb else {
            self.counters.punt_errors += 1;
            return;
        };
        let msg = rpc::notification(method, params);
        if self.ctrl.send_to(&msg, cb).is_err() {
            self.counters.punt_errors += 1;
        }
    }

    fn drain_ctrl(&mut self) -> bool {
        for _ in 0..BATCH {
            let (n, from) = match self.ctrl.recv_from(&mut self.ctrl_buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ECONNREFUSED from a notification to a controller that is gone.
                Err(_) => continue,
            };
            if !from.ip().is_loopback() {
                self.counters.ctrl_foreign_source += 1;
                continue;
            }
            if Some(from) == self.cb {
                self.controller_heard = Some(self.now());
                if !self.controller_alive {
                    self.controller_alive = true;
                    info!("controller at {from} is answering: ARP goes to it");
                }
            }
            let datagram = self.ctrl_buf[..n].to_vec();
            if let Some(reply) = self.handle_ctrl(&datagram, from) {
                let _ = self.ctrl.send_to(&reply, from);
            }
        }
        true
    }

    fn handle_ctrl(&mut self, datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        match rpc::parse(datagram) {
            Incoming::Call { id, method, params } => {
                let result = self.call(&method, &ParamReader(&params), from);
                if let Err(e) = &result {
                    debug!("rpc {method} from {from}: {}", e.message);
                    self.counters.ctrl_bad_request += 1;
                }
                id.map(|id| rpc::response(id, result))
            }
            Incoming::Response { .. } => None,
            Incoming::Invalid { id, error } => {
                self.counters.ctrl_bad_request += 1;
                id.map(|id| rpc::response(id, Err(error)))
            }
        }
    }

    fn call(&mut self, method: &str, p: &ParamReader, from: SocketAddr) -> Result<Value, RpcError> {
        let now = self.now();
        match method {
            "echo_request" => Ok(json!({"type": "echo_reply", "msg": p.0.get("msg")})),
            "set_logging" => {
                let level = p.u64_in("logging", 0, 3)?;
                // An operator's RUST_LOG wins over the config.
                if std::env::var_os("RUST_LOG").is_none() {
                    log::set_max_level(match level {
                        0 => log::LevelFilter::Off,
                        1 => log::LevelFilter::Warn,
                        2 => log::LevelFilter::Info,
                        _ => log::LevelFilter::Debug,
                    });
                }
                Ok(json!(true))
            }
            "set_cb_endpoint" => {
                let ip = p.str("ip")?;
                let port = p.u64_in("port", 1, 65535)? as u16;
                // "::" meant "the sender's address" in the original.
                let ip: std::net::IpAddr = if ip == "::" || ip.is_empty() {
                    from.ip()
                } else {
                    ip.parse().map_err(|_| {
                        RpcError::invalid_params(format!(
                            "\"ip\": expected an IP address, got {ip:?}"
                        ))
                    })?
                };
                if !ip.is_loopback() {
                    return Err(RpcError::invalid_params(format!(
                        "\"ip\": expected a loopback address, got {ip}"
                    )));
                }
                let cb = SocketAddr::new(ip, port);
                if self.cb != Some(cb) {
                    info!("controller callback endpoint is {cb}");
                }
                self.cb = Some(cb);
                self.controller_heard = Some(now);
                Ok(json!(true))
            }
            "set_local_ip" => self.set_local_ip(p),
            "set_switchmode" => {
                let mode = p.u64_in("switchmode", 0, 1)?;
                if mode != 1 {
                    return Err(RpcError::invalid_params(
                        "\"switchmode\": 0 (routed GroupVPN mode) is not implemented; use 1",
                    ));
                }
                self.switchmode = mode;
                if let Some(icc) = p.opt_bool("icc")? {
                    self.set_icc(icc);
                }
                Ok(json!(true))
            }
            "create_link" => self.create_link(p),
            "trim_link" => {
                let uid = p.uid("uid")?;
                let Some(slot) = self.by_uid.remove(&uid) else {
                    return Err(RpcError::invalid_params(format!(
                        "\"uid\": no link to {}",
                        hex::encode(uid)
                    )));
                };
                self.links[slot] = None;
                let removed = self.switch.macs.remove_port(slot);
                info!(
                    "link to {} trimmed; {removed} MAC entries withdrawn",
                    hex::encode(uid)
                );
                Ok(json!(true))
            }
            "set_mac" => {
                let mac: MacAddr = p
                    .str("mac")?
                    .parse()
                    .map_err(|e: String| RpcError::invalid_params(format!("\"mac\": {e}")))?;
                let uid = p.uid("uid")?;
                let Some(&slot) = self.by_uid.get(&uid) else {
                    return Err(RpcError::invalid_params(format!(
                        "\"uid\": no link to {}",
                        hex::encode(uid)
                    )));
                };
                match self.switch.macs.learn(mac, slot, now) {
                    proto::mactable::Learned::Refused => Err(RpcError::invalid_params(format!(
                        "\"mac\": {mac} not accepted (group address, or table full)"
                    ))),
                    _ => Ok(json!(true)),
                }
            }
            "inject_frame" => {
                let frame = hex::decode(p.str("frame")?).map_err(|_| {
                    RpcError::invalid_params("\"frame\": expected an even number of hex digits")
                })?;
                if frame.len() < ETH_HEADER || frame.len() > self.mtu as usize + ETH_HEADER {
                    self.counters.drop_oversize += 1;
                    return Err(RpcError::invalid_params(format!(
                        "\"frame\": expected {ETH_HEADER}-{} bytes, got {}",
                        self.mtu as usize + ETH_HEADER,
                        frame.len()
                    )));
                }
                match self.tap.send(&frame) {
                    Ok(_) => {
                        self.counters.injected_frames += 1;
                        Ok(json!(true))
                    }
                    Err(e) => {
                        self.counters.tap_write_errors += 1;
                        Err(RpcError {
                            code: proto::rpc::ErrorCode::ServerError(1),
                            message: format!("TAP write failed: {e}"),
                            data: None,
                        })
                    }
                }
            }
            "send_icc" => {
                let uid = p.uid("uid")?;
                let msg = p.value("msg")?;
                let payload = serde_json::to_vec(msg).expect("JSON serialises");
                if payload.len() + DATA_HEADER_LEN > self.mtu as usize + ETH_HEADER {
                    return Err(RpcError::invalid_params(format!(
                        "\"msg\": {} bytes, more than a link datagram carries",
                        payload.len()
                    )));
                }
                let Some(&slot) = self.by_uid.get(&uid) else {
                    return Err(RpcError::invalid_params(format!(
                        "\"uid\": no link to {}",
                        hex::encode(uid)
                    )));
                };
                if self.send_control_msg(slot, linkwire::TYPE_ICC, &payload, now) {
                    self.counters.icc_tx += 1;
                    if let Some(Some(l)) = self.links.get_mut(slot) {
                        l.counters.icc_tx += 1;
                    }
                    Ok(json!(true))
                } else {
                    Err(RpcError {
                        code: proto::rpc::ErrorCode::ServerError(2),
                        message: format!("link to {} is not up", hex::encode(uid)),
                        data: None,
                    })
                }
            }
            "get_state" => Ok(self.state_json(now)),
            _ => Err(RpcError::method_not_found()),
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

    fn set_local_ip(&mut self, p: &ParamReader) -> Result<Value, RpcError> {
        let uid = p.uid("uid")?;
        let ip4: Ipv4Addr = p.str("ip4")?.parse().map_err(|_| {
            RpcError::invalid_params(format!(
                "\"ip4\": expected an IPv4 address, got {:?}",
                p.0.get("ip4")
            ))
        })?;
        if let Some(mode) = p.opt_u64_in("switchmode", 0, 1)? {
            if mode != 1 {
                return Err(RpcError::invalid_params(
                    "\"switchmode\": 0 (routed GroupVPN mode) is not implemented; use 1",
                ));
            }
        }
        let link_port = p.opt_u64_in("link_port", 1, 65535)?.unwrap_or(5900) as u16;
        let mtu = p.opt_u64_in("mtu", 576, 9000)?.map(|m| m as u16);
        if let Some(icc) = p.opt_bool("icc")? {
            self.set_icc(icc);
        }
        if let Some(local) = &self.local {
            if local.uid != uid && !self.links.iter().all(Option::is_none) {
                return Err(RpcError::invalid_params(
                    "\"uid\": differs from the uid in use; trim the links or restart tincan first",
                ));
            }
        }
        let rebind =
            self.local.as_ref().map(|l| l.link_port) != Some(link_port) || self.link_sock.is_none();
        if rebind {
            let mut sock = bind_link_socket(link_port).map_err(|e| RpcError {
                code: proto::rpc::ErrorCode::ServerError(3),
                message: format!("cannot bind link port 0.0.0.0:{link_port}: {e}"),
                data: None,
            })?;
            if let Some(mut old) = self.link_sock.take() {
                let _ = self.poll.registry().deregister(&mut old);
            }
            self.poll
                .registry()
                .register(&mut sock, LINK, Interest::READABLE)
                .map_err(|e| RpcError::invalid_params(e.to_string()))?;
            self.link_sock = Some(sock);
            info!("links on UDP 0.0.0.0:{link_port}");
        }
        if let Some(mtu) = mtu {
            if mtu != self.mtu {
                self.tap.set_mtu(mtu).map_err(|e| RpcError {
                    code: proto::rpc::ErrorCode::ServerError(4),
                    message: format!("cannot set TAP MTU {mtu}: {e}"),
                    data: None,
                })?;
                self.mtu = mtu;
                info!("TAP {} mtu {mtu}", self.tap_name);
            }
        }
        if self.local.as_ref().map(|l| l.uid) != Some(uid) {
            info!("local uid {} (ip4 {ip4})", hex::encode(uid));
        }
        self.local = Some(Local {
            uid,
            ip4,
            link_port,
        });
        Ok(json!(true))
    }

    fn create_link(&mut self, p: &ParamReader) -> Result<Value, RpcError> {
        let uid = p.uid("uid")?;
        let ep_text = p.str("endpoint")?;
        let endpoint: SocketAddr = ep_text.parse().map_err(|_| {
            RpcError::invalid_params(format!("\"endpoint\": expected ip:port, got {ep_text:?}"))
        })?;
        if let Some(local) = &self.local {
            if local.uid == uid {
                return Err(RpcError::invalid_params(
                    "\"uid\": that is this node's own uid",
                ));
            }
        }
        if let Some(true) = p.opt_bool("sec")? {
            debug!(
                "create_link {}: sec requested, links are plaintext in this version",
                hex::encode(uid)
            );
        }
        if let Some(&slot) = self.by_uid.get(&uid) {
            let link = self.links[slot].as_mut().expect("live");
            if link.endpoint != endpoint && !link.is_up() {
                link.endpoint = endpoint;
            }
            return Ok(json!(true));
        }
        let slot = match self.links.iter().position(Option::is_none) {
            Some(s) => s,
            None if self.links.len() < MAX_LINKS => {
                self.links.push(None);
                self.links.len() - 1
            }
            None => {
                return Err(RpcError::invalid_params(format!(
                    "too many links (max {MAX_LINKS})"
                )))
            }
        };
        // The high half tells this slot's links apart across restarts and reuse.
        let generation = (self.boot_id as u32 ^ (self.now() as u32)).wrapping_shl(16);
        let local_idx = generation | slot as u32;
        self.links[slot] = Some(LinkSession::new(uid, endpoint, local_idx));
        self.by_uid.insert(uid, slot);
        info!("link to {} at {endpoint} created", hex::encode(uid));
        let now = self.now();
        self.send_hello(slot, now);
        Ok(json!(true))
    }

    fn state_json(&self, now: u64) -> Value {
        let peers: Vec<Value> = self
            .links
            .iter()
            .flatten()
            .map(|l| {
                json!({
                    "type": "peer_state",
                    "uid": hex::encode(l.peer_uid),
                    "status": if l.is_up() { "online" } else { "offline" },
                    "endpoint": l.endpoint.to_string(),
                    "security": "none",
                    "last_rx_ms": l.last_rx.map(|t| now.saturating_sub(t)),
                    "tx_frames": l.counters.tx_frames,
                    "tx_bytes": l.counters.tx_bytes,
                    "rx_frames": l.counters.rx_frames,
                    "rx_bytes": l.counters.rx_bytes,
                    "icc_tx": l.counters.icc_tx,
                    "icc_rx": l.counters.icc_rx,
                    "tx_errors": l.counters.tx_errors,
                    "ups": l.counters.ups,
                    "downs": l.counters.downs,
                })
            })
            .collect();
        let macs: Vec<Value> = self
            .switch
            .macs
            .iter()
            .filter_map(|(mac, e)| {
                let link = self.links.get(e.port)?.as_ref()?;
                Some(json!({
                    "mac": mac.to_string(),
                    "uid": hex::encode(link.peer_uid),
                    "age_ms": now.saturating_sub(e.updated),
                }))
            })
            .collect();
        let mut counters = serde_json::to_value(&self.counters).expect("counters serialise");
        let sc = &self.switch.counters;
        counters["mac_new"] = json!(sc.mac_new);
        counters["mac_moves"] = json!(sc.mac_moved);
        counters["mac_refused"] = json!(sc.mac_refused);
        json!({
            "type": "local_state",
            "_uid": self.local.as_ref().map(|l| hex::encode(l.uid)).unwrap_or_default(),
            "_ip4": self.local.as_ref().map(|l| l.ip4.to_string()).unwrap_or_default(),
            "_fpr": "",
            "_mac": self.tap_mac.to_string(),
            "tap": self.tap_name,
            "mtu": self.mtu,
            "version": crate::VERSION,
            "boot_id": self.boot_id,
            "uptime_ms": now,
            "configured": self.local.is_some(),
            "switchmode": self.switchmode,
            "icc": self.switch.punt_arp,
            "controller_alive": self.controller_alive,
            "link_port": self.local.as_ref().map(|l| l.link_port),
            "counters": counters,
            "peers": peers,
            "macs": macs,
        })
    }
}

fn bind_link_socket(port: u16) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Bursts from the TAP arrive faster than one wake-up drains them; deep buffers absorb
    // them instead of dropping.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    Ok(UdpSocket::from_std(s.into()))
}
