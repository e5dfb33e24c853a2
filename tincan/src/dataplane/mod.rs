//! The data plane's I/O shell: the TAP, the link socket, the control socket and the buffers,
//! in one mio loop that sleeps until the link core's `poll_timeout()` (or its own MAC-aging and
//! controller-liveness deadlines). Forwarding decisions come from `proto::switch`, everything
//! about links from `proto::link::LinkTable`; this file reads, asks, writes and counts.
//!
//! I/O: the TAP is read one frame per `read` (with a virtio-net header when the kernel allows
//! one, see `tap.rs`); sealed datagrams are queued in a [`TxBatch`] and sent at the end of each
//! batch of frames (runs to one peer as UDP GSO sends, see `udp.rs`), and datagrams from links
//! are received with `recvmmsg` and UDP GRO.

mod nd;
mod to_links;
mod to_tap;

use crate::control::Control;
use crate::control_sock::{Caller, ControlSock, LISTENER};
use crate::signals::{SignalAction, Signals};
use crate::tap::{Offload, Tap};
use crate::udp::{BatchSocket, RxBatch, TxBatch, UdpCounters};
use log::{info, warn};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use proto::id::Millis;
use proto::link::{LinkEvent, LinkId, LinkTable, FRAME_HEADROOM};
use proto::offload::{Coalescer, VNET_HDR_LEN};
use proto::storm::{StormControl, StormRates};
use proto::switch::Switch;
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TAP: Token = Token(0);
const LINK: Token = Token(1);
const CTRL: Token = Token(2);
const SIGNALS: Token = Token(3);
/// The tag of datagrams that belong to no link (the link core's own transmits).
const NO_LINK: LinkId = LinkId::MAX;

/// Frames or datagrams handled per source per wake-up before the others get a turn.
const BATCH: usize = 64;
/// The controller heartbeats every second; after this much silence ARP is flooded instead.
pub const CONTROLLER_TIMEOUT_MS: Millis = 3_000;
const MAC_TABLE_SIZE: usize = 8_192;
const MAC_TTL_MS: Millis = 300_000;
const MAC_EXPIRE_EVERY: Millis = 1_000;
/// How often the bridge's ports are read for MTUs above the TAP's (a few sysfs reads).
const BRIDGE_MTU_CHECK_EVERY: Millis = 10_000;
/// The TAP device's MTU is never raised above this (frames are read into 64 KiB buffers).
const MAX_DEVICE_MTU: u32 = 65_000;
/// ICMP "too big" answers written into the bridge, at most this many per second (after a
/// burst of as many): a sender that ignores them costs a bounded amount of work.
const TOO_BIG_PER_SEC: f64 = 100.0;
/// While frames keep the loop busy, it looks for due link timers at most this often: finding
/// them is a pass over every link, which must not run for every batch of frames (a node with
/// hundreds of peers would spend its time there); the timers are in seconds.
const TIMER_CHECK_EVERY: Millis = 10;
/// Largest datagram we accept or send: jumbo TAP MTU plus headers.
pub const BUF_LEN: usize = 65_536;
/// Where a frame read from the TAP starts in `Node::buf`: room before it for the link core's
/// headroom. The TAP's virtio-net header lands in the 10 bytes just before the frame (over
/// that headroom): it is parsed right after the read, before the link core writes there.
const FRAME_AT: usize = VNET_HDR_LEN + FRAME_HEADROOM;
/// Where the plaintext the link core seals starts in `Node::buf`.
const PLAIN_AT: usize = FRAME_AT - FRAME_HEADROOM;
/// Receives per `recvmmsg`, each up to a full GRO receive of 64 KB.
const RX_BATCH: usize = 32;
/// `recvmmsg` calls per wake-up before the other sources get a turn.
const RX_CALLS: usize = 4;
/// Bytes of sealed datagrams queued before they are sent (the end of a batch sends them too).
const TX_BATCH_BYTES: usize = 128 << 10;

/// What the shell counts (the link core counts the rest): readable with `get_state`.
#[derive(Debug, Default, Serialize)]
pub struct Counters {
    pub tap_rx_frames: u64,
    pub tap_rx_bytes: u64,
    pub tap_tx_frames: u64,
    pub tap_tx_bytes: u64,
    pub tap_write_errors: u64,
    pub tap_read_errors: u64,
    /// Frames from links whose checksum state names no TCP/UDP checksum field of the frame.
    pub drop_bad_csum: u64,
    /// TCP super-frames (TSO) read from the TAP, and the segments they were cut into.
    pub tap_rx_super_frames: u64,
    pub tap_segments_cut: u64,
    /// Coalesced TCP super-frames written to the TAP.
    pub tap_tx_super_frames: u64,
    pub link_tx_errors: u64,
    pub flooded_frames: u64,
    pub unknown_unicast: u64,
    pub arp_punted: u64,
    pub arp_flooded: u64,
    pub punt_errors: u64,
    pub injected_frames: u64,
    pub drop_truncated_frame: u64,
    pub drop_group_source: u64,
    pub drop_oversize: u64,
    pub drop_link_down: u64,
    pub drop_no_links: u64,
    pub ctrl_foreign_source: u64,
    pub ctrl_bad_request: u64,
    pub drop_bad_icc: u64,
    /// Frames from links whose source MAC the peer may not speak for (per peer: `refused_macs`).
    pub drop_refused_mac: u64,
    /// `inject_frame` refused: its source MAC is a host on the local bridge.
    pub inject_refused_local_source: u64,
    /// Frames from the TAP that still needed a checksum or segmentation (offloads the TAP
    /// was not opened for).
    pub drop_tap_offload: u64,
    /// TCP SYNs whose MSS was lowered to fit the TAP's MTU.
    pub mss_clamped: u64,
    /// ICMP "fragmentation needed" / "packet too big" answers to packets from the bridge
    /// larger than the overlay's MTU.
    pub icmp_too_big_sent: u64,
    /// IPv4 packets without DF from the bridge, larger than the overlay's MTU, sent on in IP
    /// fragments.
    pub ip_fragmented: u64,
    /// Broadcast and multicast from peers beyond the storm control rates, dropped.
    pub storm_in_drop_broadcast: u64,
    pub storm_in_drop_multicast: u64,
    #[serde(flatten)]
    pub udp: UdpCounters,
}

pub struct Node {
    poll: Poll,
    pub tap: Tap,
    pub ctrl: UdpSocket,
    /// The control socket `@ipop-tincan/<port>`: the controller's connection, and any other
    /// local caller's.
    pub ctl_sock: ControlSock,
    pub link_sock: Option<BatchSocket>,
    pub core: LinkTable,
    pub switch: Switch<LinkId>,
    pub control: Control,
    pub counters: Counters,
    /// Storm control of what the bridge floods into the overlay.
    pub storm: StormControl,
    /// Storm control of the broadcast and multicast each peer sends us.
    pub storm_in: HashMap<LinkId, StormControl>,
    start: Instant,
    /// Frames are read at `buf[FRAME_AT..]`, so the link core seals them in place.
    buf: Vec<u8>,
    /// Opened frames in.
    out: Vec<u8>,
    /// Sealed datagrams out, sent at the end of a batch.
    tx: TxBatch,
    rx: RxBatch,
    /// Segments of a TCP super-frame read from the TAP, cut one at a time for the link core.
    seg: Vec<u8>,
    /// Segments from links merged back into super-frames for the TAP (virtio-net path).
    coalescer: Coalescer,
    ctrl_buf: Vec<u8>,
    last_expire: Millis,
    last_mtu_check: Option<Millis>,
    /// When the loop last looked for due link timers ([`TIMER_CHECK_EVERY`]).
    timers_checked: Millis,
    /// Bridge ports already reported for an MTU larger than the TAP's (with that MTU).
    big_ports: HashMap<String, u32>,
    /// Bounds the ICMP "too big" answers.
    too_big_rate: proto::ratelimit::RateLimiter<()>,
    /// SIGTERM, SIGINT and SIGHUP, when the binary blocked them ([`Node::watch_signals`]).
    signals: Option<Signals>,
}

impl Node {
    pub fn new(tap_name: &str, port: u16, mtu: u16, offload: Offload) -> io::Result<Node> {
        let mut tap = Tap::open(tap_name, mtu, offload)?;
        let ctrl_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut ctrl = UdpSocket::bind(ctrl_addr).map_err(|e| {
            io::Error::other(format!(
                "cannot bind control port {ctrl_addr} (is another ipop-tincan running?): {e}"
            ))
        })?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&tap.fd()), TAP, Interest::READABLE)?;
        poll.registry()
            .register(&mut ctrl, CTRL, Interest::READABLE)?;
        let ctl_sock = ControlSock::bind(port, poll.registry())?;
        info!(
            "TAP {} up, mac {}, mtu {mtu}; control on {ctrl_addr} (read-only) and {}",
            tap.name,
            tap.mac,
            proto::rpc_stream::socket_display(port)
        );
        let tso = tap.offload == Offload::Vnet
            && match tap.enable_tso() {
                Ok(()) => true,
                Err(e) => {
                    warn!("TAP {}: no TSO ({e}): frames are read one by one", tap.name);
                    false
                }
            };
        info!(
            "TAP path: {}{}",
            tap.offload.describe(),
            if tso {
                ", TSO and checksum offload"
            } else {
                ""
            }
        );
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Two draws: the boot id is sent in the clear in plaintext hellos, so the session
        // indices must not be derivable from it.
        let (boot_id, seed) = (random_seed(), random_seed());
        Ok(Node {
            poll,
            tap,
            ctrl,
            ctl_sock,
            link_sock: None,
            core: LinkTable::new(boot_id, seed, wall),
            switch: Switch::new(MAC_TABLE_SIZE, MAC_TTL_MS),
            control: Control::default(),
            counters: Counters::default(),
            storm: StormControl::new(StormRates::default(), 0),
            storm_in: HashMap::new(),
            start: Instant::now(),
            buf: vec![0u8; FRAME_AT + BUF_LEN],
            out: vec![0u8; proto::wire::link::MAX_INNER_LEN],
            tx: TxBatch::new(TX_BATCH_BYTES, BUF_LEN),
            rx: RxBatch::new(RX_BATCH, BUF_LEN),
            seg: vec![0u8; BUF_LEN],
            coalescer: Coalescer::new(),
            ctrl_buf: vec![0u8; BUF_LEN],
            last_expire: 0,
            last_mtu_check: None,
            timers_checked: 0,
            big_ports: HashMap::new(),
            too_big_rate: proto::ratelimit::RateLimiter::new(TOO_BIG_PER_SEC, TOO_BIG_PER_SEC, 1),
            signals: None,
        })
    }

    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// Binds the link socket on `port` (every IPv6 and IPv4 address) and polls it.
    pub fn bind_link(&mut self, port: u16) -> io::Result<()> {
        // Datagrams queued for the old socket go out on it.
        self.flush_tx();
        let mut sock = BatchSocket::bind_any(port)?;
        if let Some(old) = self.link_sock.take() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&old.fd()));
            sock.inherit(&old);
        }
        self.poll
            .registry()
            .register(&mut SourceFd(&sock.fd()), LINK, Interest::READABLE)?;
        self.link_sock = Some(sock);
        Ok(())
    }

    /// Polls the signalfd: SIGTERM and SIGINT make [`Node::run`] return.
    pub fn watch_signals(&mut self, signals: Signals) -> io::Result<()> {
        self.poll.registry().register(
            &mut SourceFd(&signals.raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The loop; returns `Ok` after SIGTERM or SIGINT (see [`Node::watch_signals`]).
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        // Edge-triggered sources not drained to WouldBlock in the last round.
        let (mut tap_more, mut link_more, mut ctrl_more) = (true, false, false);
        loop {
            let sock_more = self.ctl_sock.busy().next().is_some();
            let busy = tap_more || link_more || ctrl_more || sock_more;
            let timeout = if busy {
                Duration::ZERO
            } else {
                Duration::from_millis(self.next_deadline().saturating_sub(self.now()))
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
                    LISTENER => self.ctl_sock.accept(self.poll.registry()),
                    t if ControlSock::slot_of(t).is_some() => {
                        let slot = ControlSock::slot_of(t).expect("checked");
                        self.ctl_sock.on_event(slot, self.poll.registry());
                    }
                    SIGNALS => {
                        if let Some(SignalAction::Stop(name)) =
                            self.signals.as_mut().map(Signals::drain)
                        {
                            info!(
                                "{name}: stopping; peers told, TAP {} goes with the process",
                                self.tap.name
                            );
                            // Peers drop their links now instead of after their timeout.
                            let now = self.now();
                            self.core.close_all(now);
                            self.flush();
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
            if ctrl_more {
                ctrl_more = self.drain_ctrl();
            }
            self.drain_ctl_sock();
            if tap_more {
                tap_more = self.drain_tap();
            }
            if link_more {
                link_more = self.drain_link();
            }
            let now = self.now();
            // After a sleep (which ends at the earliest deadline) always; while busy, every
            // TIMER_CHECK_EVERY.
            if !busy || now.saturating_sub(self.timers_checked) >= TIMER_CHECK_EVERY {
                self.timers_checked = now;
                if self.core.poll_timeout().is_some_and(|t| t <= now) {
                    self.core.handle_timeout(now);
                }
            }
            self.shell_timers(now);
            self.flush();
        }
    }

    /// The earliest of the link core's deadline and the shell's own timers.
    fn next_deadline(&self) -> Millis {
        let mut next = self.last_expire + MAC_EXPIRE_EVERY;
        if let Some(t) = self.core.poll_timeout() {
            next = next.min(t);
        }
        if let Some(t) = self.control.controller_deadline() {
            next = next.min(t);
        }
        next
    }

    fn shell_timers(&mut self, now: Millis) {
        if self.control.check_controller(now) == Some(false) && self.switch.punt_arp {
            warn!("controller silent for {CONTROLLER_TIMEOUT_MS} ms: flooding ARP like a plain switch until it is back");
        }
        if now.saturating_sub(self.last_expire) >= MAC_EXPIRE_EVERY {
            self.last_expire = now;
            self.switch.expire(now);
        }
        if self
            .last_mtu_check
            .is_none_or(|t| now.saturating_sub(t) >= BRIDGE_MTU_CHECK_EVERY)
        {
            self.last_mtu_check = Some(now);
            self.check_bridge_mtus();
        }
    }

    /// Warns once per bridge port whose MTU is larger than the overlay's, and raises the TAP
    /// device's MTU to the largest such port's, so that the bridge hands its larger frames to
    /// tincan instead of dropping them in silence: TCP SYNs get a clamped MSS, other IP packets
    /// too big an ICMP answer ([`proto::offload::too_big`]).
    fn check_bridge_mtus(&mut self) {
        let Some(bridge) = ipop_tincan::hostaddr::bridge_of(&self.tap.name) else {
            return;
        };
        let overlay = u32::from(self.tap.mtu);
        let mut largest = u32::from(self.tap.device_mtu);
        for (port, mtu) in ipop_tincan::hostaddr::bridge_port_mtus(&bridge) {
            if port == self.tap.name || mtu <= overlay {
                continue;
            }
            largest = largest.max(mtu);
            if self.big_ports.get(&port) != Some(&mtu) {
                warn!(
                    "bridge {bridge} port {port} has MTU {mtu}, more than the overlay's {overlay} \
                     (TAP {}): TCP crosses with its MSS clamped to {} (counted in mss_clamped); \
                     other packets over {overlay} bytes are answered with ICMP \"too big\" \
                     (icmp_too_big_sent) so that their senders use smaller ones",
                    self.tap.name,
                    proto::offload::mss_for_mtu(self.tap.mtu, false)
                );
                self.big_ports.insert(port, mtu);
            }
        }
        let largest = largest.min(MAX_DEVICE_MTU) as u16;
        if largest > self.tap.device_mtu {
            match self.tap.set_device_mtu(largest) {
                Ok(()) => info!(
                    "TAP {} device MTU raised to {largest} (the overlay's stays {overlay}), so \
                     that larger frames from the bridge are answered, not dropped",
                    self.tap.name
                ),
                Err(e) => warn!(
                    "TAP {}: cannot raise the MTU to {largest}: {e}",
                    self.tap.name
                ),
            }
        }
    }

    /// Sends the queued datagrams and what the link core queued, and acts on its events.
    pub fn flush(&mut self) {
        // After the data already queued, in order.
        while let Some(t) = self.core.poll_transmit() {
            if self.tx.full() {
                self.flush_tx();
            }
            self.tx.push(&t.payload, t.payload.len(), t.to, NO_LINK);
        }
        self.flush_tx();
        while let Some(ev) = self.core.poll_event() {
            let (uid, up) = match ev {
                LinkEvent::Up { uid, .. } => (uid, true),
                LinkEvent::Down { link, uid, .. } => {
                    self.storm_in.remove(&link);
                    let removed = self.switch.macs.remove_port(link);
                    info!("link to {uid}: {removed} MAC entries withdrawn");
                    (uid, false)
                }
            };
            self.notify_con_stat(uid, up);
        }
    }

    /// Queues the datagrams the link core sealed for `link` at `tx.spare()[..len]`: `stride`
    /// bytes each, the last possibly shorter, all to `to`.
    fn queue_sealed(&mut self, len: usize, stride: usize, to: SocketAddr, link: LinkId) {
        self.tx.commit(len, stride, to, link);
        if self.tx.full() {
            self.flush_tx();
        }
    }

    /// Sends the queued datagrams (runs to one peer in one GSO send where the kernel can).
    fn flush_tx(&mut self) {
        flush_batch(
            &mut self.tx,
            self.link_sock.as_mut(),
            &mut self.core,
            &mut self.counters,
        );
    }

    // ---- control socket --------------------------------------------------------------

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
            let now = self.now();
            let datagram = self.ctrl_buf[..n].to_vec();
            if let Some(reply) = self.handle_ctrl(&datagram, Caller::Udp(from), now) {
                let _ = self.ctrl.send_to(&reply, from);
            }
            self.flush();
        }
        true
    }

    /// Handles the lines waiting on the control socket's connections (a bounded number per
    /// connection) and answers each on its connection.
    fn drain_ctl_sock(&mut self) {
        let busy: Vec<usize> = self.ctl_sock.busy().collect();
        let mut lines = Vec::new();
        for slot in busy {
            lines.clear();
            let Some((caller, close)) = self.ctl_sock.read_lines(slot, &mut lines) else {
                continue;
            };
            for line in &lines {
                let now = self.now();
                if let Some(reply) = self.handle_ctrl(line, caller, now) {
                    if let Some(conn) = caller.conn() {
                        self.ctl_sock.send(conn, &reply, self.poll.registry());
                    }
                }
                self.flush();
            }
            if close {
                self.ctl_sock.close(slot, self.poll.registry());
            }
            if self.ctl_sock.id(slot) != caller.conn() && self.control.cb() == caller.conn() {
                self.control.controller_gone();
            }
        }
    }

    /// Sends a notification to the controller, over its connection to the control socket.
    pub fn notify(&mut self, message: &[u8]) {
        let Some(cb) = self.control.cb() else {
            self.counters.punt_errors += 1;
            return;
        };
        if !self.ctl_sock.send(cb, message, self.poll.registry()) {
            self.counters.punt_errors += 1;
        }
    }
}

/// Sends the datagrams queued in `tx` (runs to one peer in one GSO send where the kernel can).
fn flush_batch(
    tx: &mut TxBatch,
    sock: Option<&mut BatchSocket>,
    core: &mut LinkTable,
    counters: &mut Counters,
) {
    if tx.is_empty() {
        return;
    }
    match sock {
        Some(sock) => sock.send_batch(tx, &mut counters.udp, |run| {
            counters.link_tx_errors += 1;
            if run.tag != NO_LINK {
                core.note_tx_error(run.tag);
            }
        }),
        None => counters.link_tx_errors += tx.runs().len() as u64,
    }
    tx.clear();
}

/// Writes `[virtio-net header][frame]` from the coalescer to the TAP, counting it.
fn write_tap(tap: &Tap, counters: &mut Counters, hdr_and_frame: &[u8]) {
    match tap.send_raw(hdr_and_frame) {
        Ok(n) => {
            counters.tap_tx_frames += 1;
            counters.tap_tx_bytes += n.saturating_sub(VNET_HDR_LEN) as u64;
            if hdr_and_frame.get(1).is_some_and(|g| *g != 0) {
                counters.tap_tx_super_frames += 1;
            }
        }
        Err(_) => counters.tap_write_errors += 1,
    }
}

fn random_seed() -> u64 {
    // Indices need to be unpredictable to others, not secret; the std hasher's per-process
    // random keys, mixed with the time and pid, are enough.
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
