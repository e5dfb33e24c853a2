//! The tincan node: one mio loop over the TAP, the link socket and the control socket, plus a
//! 100 ms tick for link timers and aging. Forwarding decisions come from `proto::switch`, link
//! liveness from `proto::link`; this file only moves bytes and answers RPCs.

use log::{debug, error, info, warn};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use proto::link::{LinkEvent, LinkSession, LinkState, LinkTimer};
use proto::ratelimit::RateLimiter;
use proto::rpc::{self, Incoming, ParamReader, RpcError};
use proto::secure::{self, SecureError, SecureLink, StaticKey};
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

mod control;
pub mod keys;
pub(crate) mod nat;

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
    drop_replay: u64,
    drop_auth: u64,
    drop_sec_mismatch: u64,
    drop_unknown_key: u64,
    drop_handshake_rate: u64,
    handshakes_sent: u64,
    handshakes_completed: u64,
    ctrl_foreign_source: u64,
    ctrl_bad_request: u64,
}

/// A link: liveness (`LinkSession`), and with `"sec"` on its encrypted sessions.
struct Link {
    s: LinkSession,
    secure: Option<SecureLink>,
    /// The peer's pinned static key.
    fpr: Option<[u8; secure::KEY_LEN]>,
    /// The peer's addresses from signalling; handshakes go to all of them until one answers.
    candidates: Vec<nat::Candidate>,
    /// The endpoint is reached through our TURN allocation (it is the peer's address as our
    /// relay sees it).
    via_relay: bool,
    /// Round trip of our last completed handshake.
    rtt_ms: Option<u64>,
    hs_sent_at: Option<u64>,
    last_direct_probe: u64,
}

/// Sends on the link socket, directly or wrapped for our TURN relay.
fn transmit(
    sock: &UdpSocket,
    nat: &mut nat::Nat,
    data: &[u8],
    to: SocketAddr,
    via_relay: bool,
) -> io::Result<usize> {
    if via_relay {
        match nat.relay_to(to, data) {
            Some((server, wrapped)) => sock.send_to(&wrapped, server),
            None => Err(io::Error::other("no relay permission for the peer yet")),
        }
    } else {
        sock.send_to(data, to)
    }
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
    links: Vec<Option<Link>>,
    by_uid: HashMap<Uid, usize>,
    by_key: HashMap<[u8; secure::KEY_LEN], usize>,
    /// Links are encrypted (Noise) unless the config says `"sec": false`.
    sec: bool,
    key: Option<StaticKey>,
    rekey_after: u64,
    limiter: RateLimiter,
    init_budget: RateLimiter,
    last_init_time: u64,
    switch: Switch<usize>,
    cb: Option<SocketAddr>,
    controller_heard: Option<u64>,
    controller_alive: bool,
    counters: Counters,
    /// Receive buffer; frames are read at `DATA_HEADER_LEN` so the link header is written in
    /// front of them without a copy.
    buf: Vec<u8>,
    ctrl_buf: Vec<u8>,
    /// Ciphertext out, plaintext in: the encrypted path's second buffer.
    crypt_buf: Vec<u8>,
    scratch: Vec<u8>,
    last_expire: u64,
    last_log: HashMap<&'static str, u64>,
    nat: nat::Nat,
    /// Interfaces whose addresses are never candidates (network_ignore_list).
    ignore_ifs: Vec<String>,
    /// The datagram being handled came through our TURN relay.
    rx_via_relay: bool,
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
            by_key: HashMap::new(),
            sec: true,
            key: None,
            rekey_after: 120_000,
            // Per source address: 10 handshakes a second, bursts of 20.
            limiter: RateLimiter::new(10.0, 20.0, 4096),
            // All sources together: 300 handshakes a second.
            init_budget: RateLimiter::new(300.0, 300.0, 1),
            last_init_time: 0,
            switch,
            cb: None,
            controller_heard: None,
            controller_alive: false,
            counters: Counters::default(),
            buf: vec![0u8; BUF_LEN],
            ctrl_buf: vec![0u8; BUF_LEN],
            crypt_buf: vec![0u8; BUF_LEN],
            scratch: Vec::with_capacity(BUF_LEN),
            last_expire: 0,
            last_log: HashMap::new(),
            nat: nat::Nat::new(SocketAddr::from(([0, 0, 0, 0], 0))),
            ignore_ifs: Vec::new(),
            rx_via_relay: false,
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

    /// Sends the frame at `buf[DATA_HEADER_LEN..end]` as a data message on link `slot`: the
    /// plaintext header is written in front of it, or it is encrypted into `crypt_buf`.
    fn send_data(&mut self, slot: usize, end: usize, now: u64) -> bool {
        let Some(sock) = self.link_sock.as_ref() else {
            return false;
        };
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return false;
        };
        let (LinkState::Up, Some(ridx)) = (link.s.state, link.s.remote_idx) else {
            return false;
        };
        let sent = if let Some(sec) = link.secure.as_mut() {
            // The inner type goes in the byte before the frame: plaintext [type][frame].
            self.buf[DATA_HEADER_LEN - 1] = linkwire::TYPE_DATA;
            match sec.encrypt_prefixed(&self.buf[DATA_HEADER_LEN - 1..end], &mut self.crypt_buf) {
                Ok(m) => {
                    link.s.last_tx = now;
                    transmit(
                        sock,
                        &mut self.nat,
                        &self.crypt_buf[..m],
                        link.s.endpoint,
                        link.via_relay,
                    )
                }
                Err(_) => return false,
            }
        } else {
            let counter = link.s.next_counter(now);
            linkwire::emit_header(&mut self.buf[..end], linkwire::TYPE_DATA, ridx, counter)
                .expect("buffer holds the header");
            transmit(
                sock,
                &mut self.nat,
                &self.buf[..end],
                link.s.endpoint,
                link.via_relay,
            )
        };
        match sent {
            Ok(_) => {
                link.s.counters.tx_frames += 1;
                link.s.counters.tx_bytes += (end - DATA_HEADER_LEN) as u64;
                true
            }
            Err(_) => {
                link.s.counters.tx_errors += 1;
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
            self.rx_via_relay = false;
            match self.nat.on_datagram(&self.buf[..n], from) {
                nat::NatRecv::NotMine => self.on_link_datagram(n, from),
                nat::NatRecv::Handled => {}
                nat::NatRecv::PeerData { peer, data } => {
                    if data.len() <= self.buf.len() {
                        self.buf[..data.len()].copy_from_slice(&data);
                        self.rx_via_relay = true;
                        self.on_link_datagram(data.len(), peer);
                        self.rx_via_relay = false;
                    }
                }
            }
        }
        true
    }

    /// The link slot an index points at: the low 16 bits are the slot, the rest tells this
    /// slot's links and sessions apart.
    fn slot_for_index(&self, idx: u32) -> Option<usize> {
        let slot = (idx & 0xffff) as usize;
        match self.links.get(slot) {
            Some(Some(l)) if l.s.local_idx == idx => Some(slot),
            Some(Some(l)) if l.secure.as_ref().is_some_and(|s| s.owns_index(idx)) => Some(slot),
            _ => None,
        }
    }

    /// A fresh index for a new session on `slot`.
    fn new_index(&mut self, slot: usize) -> u32 {
        // Never one the slot already uses: decrypt would find the older session first.
        loop {
            let idx = ((random_u64() as u32) & 0xffff_0000) | slot as u32;
            let taken = self
                .links
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|l| {
                    l.s.local_idx == idx || l.secure.as_ref().is_some_and(|s| s.owns_index(idx))
                });
            if !taken {
                return idx;
            }
        }
    }

    /// Logs at most once every 10 s per kind: a flood of bad input must not flood the log.
    fn log_limited(&mut self, kind: &'static str, msg: impl FnOnce() -> String) {
        let now = self.now();
        let last = self.last_log.get(kind).copied();
        if last.is_none_or(|t| now.saturating_sub(t) >= 10_000) {
            self.last_log.insert(kind, now);
            warn!("{}", msg());
        }
    }

    fn on_link_datagram(&mut self, n: usize, from: SocketAddr) {
        let now = self.now();
        let Some(local_uid) = self.local.as_ref().map(|l| l.uid) else {
            self.counters.drop_not_configured += 1;
            return;
        };
        let kind = self.buf[..n].first().copied().unwrap_or(0);
        let secure_kind = matches!(
            kind,
            secure::TYPE_INIT | secure::TYPE_RESP | secure::TYPE_DATA
        );
        if secure_kind != self.sec {
            self.sec_mismatch(kind, n, from);
            return;
        }
        if self.sec {
            self.on_secure_datagram(n, from, local_uid, now);
        } else {
            self.on_plain_datagram(n, from, local_uid, now);
        }
    }

    /// One side says `"sec": true`, the other false: never a link, and a line in both logs.
    fn sec_mismatch(&mut self, kind: u8, n: usize, from: SocketAddr) {
        if !matches!(kind, 1..=7) {
            self.counters.drop_bad_link_message += 1;
            return;
        }
        self.counters.drop_sec_mismatch += 1;
        if self.sec {
            let who = match LinkMessage::parse(&self.buf[..n]) {
                Ok(LinkMessage::Hello(h)) => format!("peer {}", hex::encode(h.sender_uid)),
                _ => "a peer".to_string(),
            };
            self.log_limited("sec_mismatch", || {
                format!("{who} at {from} sends plaintext link messages (its \"sec\" is false), but \"sec\" is true here: no link")
            });
        } else {
            self.log_limited("sec_mismatch", || {
                format!("encrypted link message from {from} (its \"sec\" is true), but \"sec\" is false here: no link")
            });
        }
    }

    fn on_secure_datagram(&mut self, n: usize, from: SocketAddr, local_uid: Uid, now: u64) {
        match self.buf[0] {
            secure::TYPE_INIT => self.on_handshake_init(n, from, local_uid, now),
            secure::TYPE_RESP => {
                let Some(slot) =
                    secure::resp_receiver_idx(&self.buf[..n]).and_then(|i| self.slot_for_index(i))
                else {
                    self.counters.drop_unknown_index += 1;
                    return;
                };
                let link = self.links[slot].as_mut().expect("checked");
                let Some(sec) = link.secure.as_mut() else {
                    self.counters.drop_unknown_index += 1;
                    return;
                };
                match sec.on_response(&self.buf[..n], now) {
                    Ok(()) => {
                        link.rtt_ms = link.hs_sent_at.map(|t| now.saturating_sub(t));
                        self.session_established(slot, from, now);
                    }
                    Err(e) => self.count_secure_error(e),
                }
            }
            _ => {
                let Some(slot) =
                    secure::data_receiver_idx(&self.buf[..n]).and_then(|i| self.slot_for_index(i))
                else {
                    self.counters.drop_unknown_index += 1;
                    return;
                };
                let link = self.links[slot].as_mut().expect("checked");
                let Some(sec) = link.secure.as_mut() else {
                    self.counters.drop_unknown_index += 1;
                    return;
                };
                let (inner, len) = match sec.decrypt(&self.buf[..n], &mut self.crypt_buf) {
                    Ok(r) => r,
                    Err(e) => {
                        self.count_secure_error(e);
                        return;
                    }
                };
                // Authentic: the peer is alive, and this is where it is now.
                link.s.endpoint = from;
                link.via_relay = self.rx_via_relay;
                if let Some(ev) = link.s.on_rx(now) {
                    self.link_event(slot, ev);
                }
                match inner {
                    linkwire::TYPE_DATA => self.deliver_frame(slot, true, 1, 1 + len, now),
                    linkwire::TYPE_ICC => {
                        let msg: Result<Value, _> =
                            serde_json::from_slice(&self.crypt_buf[1..1 + len]);
                        self.deliver_icc(slot, msg);
                    }
                    linkwire::TYPE_KEEPALIVE => {}
                    _ => self.counters.drop_bad_link_message += 1,
                }
            }
        }
    }

    fn count_secure_error(&mut self, e: SecureError) {
        match e {
            SecureError::Replay => self.counters.drop_replay += 1,
            SecureError::Auth => self.counters.drop_auth += 1,
            SecureError::UnknownSession => self.counters.drop_unknown_index += 1,
            SecureError::UnknownPeer => self.counters.drop_unknown_key += 1,
            SecureError::Malformed => self.counters.drop_bad_link_message += 1,
        }
    }

    fn on_handshake_init(&mut self, n: usize, from: SocketAddr, local_uid: Uid, now: u64) {
        // Each init costs Diffie-Hellman work: a flood from some addresses must not starve
        // the handshakes (and so the links) of others.
        // Spoofed source addresses each get a fresh per-address burst: a global budget bounds
        // the key-exchange work whatever the sources.
        if !self
            .init_budget
            .allow(std::net::IpAddr::from([0, 0, 0, 0]), now)
            || !self.limiter.allow(from.ip(), now)
        {
            self.counters.drop_handshake_rate += 1;
            return;
        }
        let Some(key) = self.key.as_ref() else {
            self.counters.drop_not_configured += 1;
            return;
        };
        let init = match secure::read_init(key, &self.buf[..n]) {
            Ok(i) => i,
            Err(e) => {
                self.count_secure_error(e);
                return;
            }
        };
        let Some(&slot) = self.by_key.get(&init.peer_static) else {
            self.counters.drop_unknown_key += 1;
            let fpr = hex::encode(init.peer_static);
            self.log_limited("unknown_key", || {
                format!("handshake from {from} with key {fpr}, which is not pinned for any peer: refused")
            });
            return;
        };
        let expected_uid = self.links[slot]
            .as_ref()
            .expect("by_key points at live slots")
            .s
            .peer_uid;
        if init.peer_uid != expected_uid || init.peer_uid == local_uid {
            self.counters.drop_unknown_key += 1;
            let (claimed, fpr) = (hex::encode(init.peer_uid), hex::encode(init.peer_static));
            self.log_limited("uid_mismatch", || {
                format!("handshake from {from}: key {fpr} is pinned for another uid than the {claimed} it claims: refused")
            });
            return;
        }
        let idx = self.new_index(slot);
        let link = self.links[slot].as_mut().expect("checked");
        let Some(sec) = link.secure.as_mut() else {
            self.counters.drop_unknown_key += 1;
            return;
        };
        let mut resp = [0u8; secure::RESP_LEN];
        match sec.accept(init, idx, now, &mut resp) {
            Ok(m) => {
                if let Some(sock) = self.link_sock.as_ref() {
                    let _ = transmit(sock, &mut self.nat, &resp[..m], from, self.rx_via_relay);
                }
                self.session_established(slot, from, now);
            }
            Err(e) => self.count_secure_error(e),
        }
    }

    fn on_plain_datagram(&mut self, n: usize, from: SocketAddr, local_uid: Uid, now: u64) {
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
                    let uid = hex::encode(h.sender_uid);
                    self.log_limited("unknown_peer", || {
                        format!("hello from {from} with uid {uid}, which is not a configured peer: dropped")
                    });
                    return;
                };
                let link = self.links[slot]
                    .as_mut()
                    .expect("by_uid points at live slots");
                let (ev, reply) = link.s.on_hello(&h, from, now);
                link.via_relay = self.rx_via_relay;
                if reply {
                    self.send_hello(slot, now);
                }
                if let Some(ev) = ev {
                    self.link_event(slot, ev);
                }
            }
            LinkMessage::Data { receiver_idx, .. } => {
                if let Some(slot) = self.plain_rx(receiver_idx, now) {
                    self.deliver_frame(slot, false, DATA_HEADER_LEN, n, now);
                }
            }
            LinkMessage::Icc {
                receiver_idx,
                payload,
                ..
            } => {
                let msg: Result<Value, _> = serde_json::from_slice(payload);
                if let Some(slot) = self.plain_rx(receiver_idx, now) {
                    self.deliver_icc(slot, msg);
                }
            }
            LinkMessage::Keepalive { receiver_idx, .. } => {
                self.plain_rx(receiver_idx, now);
            }
        }
    }

    /// A plaintext data, ICC or keepalive message for session index `idx`: the link it belongs
    /// to, marked alive; or None, counted, if no link has that index.
    fn plain_rx(&mut self, idx: u32, now: u64) -> Option<usize> {
        let Some(slot) = self.slot_for_index(idx) else {
            self.counters.drop_unknown_index += 1;
            return None;
        };
        let ev = self.links[slot].as_mut().expect("checked").s.on_rx(now);
        if let Some(ev) = ev {
            self.link_event(slot, ev);
        }
        Some(slot)
    }

    /// A handshake completed on link `slot` (as initiator or responder) with the peer at
    /// `from`: that is where it is now, and the link is up on the new session.
    fn session_established(&mut self, slot: usize, from: SocketAddr, now: u64) {
        self.counters.handshakes_completed += 1;
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return;
        };
        link.s.endpoint = from;
        link.via_relay = self.rx_via_relay;
        let Some(ridx) = link.secure.as_ref().and_then(SecureLink::remote_idx) else {
            return;
        };
        if let Some(ev) = link.s.on_established(ridx, now) {
            self.link_event(slot, ev);
        }
    }

    /// A frame from link `slot`, at `crypt_buf[start..end]` (decrypted) or `buf[start..end]`:
    /// learn its source, write it to the TAP.
    fn deliver_frame(&mut self, slot: usize, decrypted: bool, start: usize, end: usize, now: u64) {
        let frame = if decrypted {
            &self.crypt_buf[start..end]
        } else {
            &self.buf[start..end]
        };
        let flen = frame.len();
        if flen > self.mtu as usize + ETH_HEADER {
            self.counters.drop_oversize += 1;
            return;
        }
        match self.switch.from_link(slot, frame, now) {
            proto::switch::LinkVerdict::ToTap => {}
            proto::switch::LinkVerdict::Drop(proto::switch::DropReason::GroupSource) => {
                self.counters.drop_group_source += 1;
                return;
            }
            proto::switch::LinkVerdict::Drop(proto::switch::DropReason::Truncated) => {
                self.counters.drop_truncated_frame += 1;
                return;
            }
        }
        if let Some(Some(link)) = self.links.get_mut(slot) {
            link.s.counters.rx_frames += 1;
            link.s.counters.rx_bytes += flen as u64;
        }
        match self.tap.send(frame) {
            Ok(_) => {
                self.counters.tap_tx_frames += 1;
                self.counters.tap_tx_bytes += flen as u64;
            }
            Err(_) => self.counters.tap_write_errors += 1,
        }
    }

    /// An ICC message from the peer of link `slot`: to the controller, with the uid the link
    /// authenticated (never one the message claims).
    fn deliver_icc(&mut self, slot: usize, msg: Result<Value, serde_json::Error>) {
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return;
        };
        link.s.counters.icc_rx += 1;
        let uid = hex::encode(link.s.peer_uid);
        match msg {
            Ok(msg) => {
                self.counters.icc_rx += 1;
                self.notify("icc", json!({"uid": uid, "msg": msg}));
            }
            Err(_) => self.counters.drop_bad_icc += 1,
        }
    }

    /// The plaintext hello, or with `"sec"` the handshake init (which proves who we are).
    fn send_hello(&mut self, slot: usize, now: u64) {
        if self.sec {
            self.send_handshake(slot, now);
            return;
        }
        let (Some(sock), Some(local)) = (self.link_sock.as_ref(), self.local.as_ref()) else {
            return;
        };
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return;
        };
        let mut out = [0u8; linkwire::HELLO_LEN];
        let n = link
            .s
            .hello(local.uid, self.boot_id)
            .emit(&mut out)
            .expect("sized for a hello");
        link.s.last_tx = now;
        let up = link.s.is_up();
        for (to, via_relay) in probe_targets(link, up, self.nat.relayed().is_some()) {
            if transmit(sock, &mut self.nat, &out[..n], to, via_relay).is_err() {
                link.s.counters.tx_errors += 1;
            }
        }
    }

    fn send_handshake(&mut self, slot: usize, now: u64) {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Strictly growing, even if the wall clock steps back.
        let time = wall.max(self.last_init_time + 1);
        let idx = self.new_index(slot);
        let (Some(sock), Some(local), Some(key)) = (
            self.link_sock.as_ref(),
            self.local.as_ref(),
            self.key.as_ref(),
        ) else {
            return;
        };
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return;
        };
        let Some(sec) = link.secure.as_mut() else {
            return;
        };
        let mut out = [0u8; secure::INIT_LEN];
        if let Ok(m) = sec.start_handshake(key, &local.uid, idx, time, now, &mut out) {
            self.last_init_time = time;
            self.counters.handshakes_sent += 1;
            link.s.last_tx = now;
            link.hs_sent_at = Some(now);
            let up = link.s.is_up();
            for (to, via_relay) in probe_targets(link, up, self.nat.relayed().is_some()) {
                if transmit(sock, &mut self.nat, &out[..m], to, via_relay).is_err() {
                    link.s.counters.tx_errors += 1;
                }
            }
        }
    }

    /// ICC or keepalive on link `slot`.
    fn send_control_msg(&mut self, slot: usize, msg_type: u8, payload: &[u8], now: u64) -> bool {
        let Some(sock) = self.link_sock.as_ref() else {
            return false;
        };
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return false;
        };
        let Some(ridx) = link.s.remote_idx else {
            return false;
        };
        if let Some(sec) = link.secure.as_mut() {
            let Ok(m) = sec.encrypt(msg_type, payload, &mut self.scratch, &mut self.crypt_buf)
            else {
                return false;
            };
            link.s.last_tx = now;
            return transmit(
                sock,
                &mut self.nat,
                &self.crypt_buf[..m],
                link.s.endpoint,
                link.via_relay,
            )
            .is_ok();
        }
        let mut out = vec![0u8; DATA_HEADER_LEN + payload.len()];
        out[DATA_HEADER_LEN..].copy_from_slice(payload);
        let counter = link.s.next_counter(now);
        linkwire::emit_header(&mut out, msg_type, ridx, counter).expect("sized");
        transmit(sock, &mut self.nat, &out, link.s.endpoint, link.via_relay).is_ok()
    }

    fn link_event(&mut self, slot: usize, ev: LinkEvent) {
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return;
        };
        let uid = hex::encode(link.s.peer_uid);
        let endpoint = link.s.endpoint;
        let security = if link.secure.is_some() {
            "encrypted"
        } else {
            "plaintext"
        };
        match ev {
            LinkEvent::Up => {
                info!("link to {uid} at {endpoint} is up ({security})");
                self.notify("con_stat", json!({"uid": uid, "data": "online"}));
            }
            LinkEvent::Down => {
                if let Some(sec) = link.secure.as_mut() {
                    sec.reset();
                }
                let removed = self.switch.macs.remove_port(slot);
                info!("link to {uid} at {endpoint} is down (peer silent); {removed} MAC entries withdrawn");
                self.notify("con_stat", json!({"uid": uid, "data": "offline"}));
            }
        }
    }

    // ---- timers ------------------------------------------------------------------------

    /// STUN and TURN housekeeping, relay permissions for every peer address we know, and,
    /// for links on a relayed path, a periodic handshake on the direct candidates so the link
    /// moves back to a direct path once one answers.
    fn nat_tick(&mut self, now: u64) {
        let Some(sock) = self.link_sock.as_ref() else {
            return;
        };
        let mut out = Vec::new();
        self.nat.poll(now, &mut out);
        for (to, data) in out {
            let _ = sock.send_to(&data, to);
        }
        if self.nat.relayed().is_some() {
            for link in self.links.iter().flatten() {
                for c in &link.candidates {
                    if !matches!(c, nat::Candidate::Relay(_)) {
                        self.nat.permit(c.addr().ip());
                    }
                }
                if link.via_relay {
                    self.nat.permit(link.s.endpoint.ip());
                }
            }
        }
        let mut probe = Vec::new();
        for (slot, link) in self.links.iter_mut().enumerate() {
            let Some(link) = link.as_mut() else { continue };
            let relayed = link.via_relay
                || link
                    .candidates
                    .iter()
                    .any(|c| matches!(c, nat::Candidate::Relay(a) if *a == link.s.endpoint));
            if link.s.is_up() && relayed && now.saturating_sub(link.last_direct_probe) >= 10_000 {
                link.last_direct_probe = now;
                probe.push(slot);
            }
        }
        for slot in probe {
            self.send_hello(slot, now);
        }
    }

    fn tick(&mut self) {
        let now = self.now();
        self.nat_tick(now);
        let reject_after = self.rekey_after.saturating_mul(3);
        for slot in 0..self.links.len() {
            let Some(link) = self.links[slot].as_mut() else {
                continue;
            };
            let (ev, timer) = link.s.poll(now);
            let rekey = link.s.is_up()
                && link
                    .secure
                    .as_ref()
                    .is_some_and(|s| s.wants_handshake(now, self.rekey_after));
            let retry = !link.s.is_up()
                && link
                    .secure
                    .as_ref()
                    .is_some_and(|s| s.wants_handshake(now, self.rekey_after));
            if let Some(sec) = link.secure.as_mut() {
                sec.expire(now, reject_after);
            }
            if let Some(ev) = ev {
                self.link_event(slot, ev);
            }
            match timer {
                // With "sec", retries follow the handshake's own backoff.
                LinkTimer::SendHello if !self.sec => self.send_hello(slot, now),
                LinkTimer::SendKeepalive => {
                    self.send_control_msg(slot, linkwire::TYPE_KEEPALIVE, &[], now);
                }
                _ => {}
            }
            if rekey || retry {
                self.send_handshake(slot, now);
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
}

/// Where a hello or handshake goes: the current endpoint, and until the link is up every
/// candidate the peer signalled (directly; and through our relay to its public addresses,
/// which is what reaches a peer behind a symmetric NAT without a relay of its own). On an up
/// link on a relayed path, the direct candidates only: probing for a way back to direct.
fn probe_targets(link: &Link, up: bool, have_relay: bool) -> Vec<(SocketAddr, bool)> {
    fn push(out: &mut Vec<(SocketAddr, bool)>, a: SocketAddr, r: bool) {
        if a.port() != 0 && !out.contains(&(a, r)) {
            out.push((a, r));
        }
    }
    let mut out: Vec<(SocketAddr, bool)> = Vec::new();
    if !up {
        push(&mut out, link.s.endpoint, link.via_relay);
    }
    for c in &link.candidates {
        match *c {
            nat::Candidate::Host(a) => push(&mut out, a, false),
            nat::Candidate::Srflx(a) => {
                push(&mut out, a, false);
                if have_relay && !up {
                    push(&mut out, a, true);
                }
            }
            nat::Candidate::Relay(a) if !up => push(&mut out, a, false),
            nat::Candidate::Relay(_) => {}
        }
    }
    if up && out.is_empty() {
        push(&mut out, link.s.endpoint, link.via_relay);
    }
    out
}
