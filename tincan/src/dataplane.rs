//! The data plane's I/O shell: the TAP, the link socket, the control socket and the buffers,
//! in one mio loop that sleeps until the link core's `poll_timeout()` (or its own MAC-aging and
//! controller-liveness deadlines). Forwarding decisions come from `proto::switch`, everything
//! about links from `proto::link::LinkTable`; this file reads, asks, writes and counts.

use crate::control::Control;
use log::{error, info, warn};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use proto::id::Millis;
use proto::link::{
    Encapsulated, LinkEvent, LinkId, LinkTable, Received, SendError, FRAME_HEADROOM,
};
use proto::offload::Csum;
use proto::switch::{DropReason, FloodReason, LinkVerdict, Switch, TapVerdict};
use proto::wire::ethernet::{MacAddr, HEADER_LEN as ETH_HEADER};
use serde::Serialize;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tun::AbstractDevice;

const TAP: Token = Token(0);
const LINK: Token = Token(1);
const CTRL: Token = Token(2);

/// Frames or datagrams handled per source per wake-up before the others get a turn.
const BATCH: usize = 64;
/// The controller heartbeats every second; after this much silence ARP is flooded instead.
pub const CONTROLLER_TIMEOUT_MS: Millis = 3_000;
const MAC_TABLE_SIZE: usize = 8_192;
const MAC_TTL_MS: Millis = 300_000;
const MAC_EXPIRE_EVERY: Millis = 1_000;
/// Largest datagram we accept or send: jumbo TAP MTU plus headers.
pub const BUF_LEN: usize = 65_536;

/// What the shell counts (the link core counts the rest): readable with `get_state`.
#[derive(Debug, Default, Serialize)]
pub struct Counters {
    pub tap_rx_frames: u64,
    pub tap_rx_bytes: u64,
    pub tap_tx_frames: u64,
    pub tap_tx_bytes: u64,
    pub tap_write_errors: u64,
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
}

/// The TAP device.
pub struct Tap {
    pub dev: tun::Device,
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u16,
}

impl Tap {
    fn open(name: &str, mtu: u16) -> io::Result<Tap> {
        let mut cfg = tun::Configuration::default();
        cfg.tun_name(name).layer(tun::Layer::L2).mtu(mtu).up();
        let dev = tun::create(&cfg).map_err(|e| {
            io::Error::other(format!(
                "cannot create TAP {name:?} (needs root and /dev/net/tun): {e}"
            ))
        })?;
        dev.set_nonblock()?;
        let name = dev.tun_name().unwrap_or_else(|_| name.to_string());
        let mac = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(MacAddr::ZERO);
        Ok(Tap {
            dev,
            name,
            mac,
            mtu,
        })
    }

    /// Largest frame the TAP carries: its MTU plus the Ethernet header.
    pub fn max_frame(&self) -> usize {
        self.mtu as usize + ETH_HEADER
    }
}

pub struct Node {
    poll: Poll,
    pub tap: Tap,
    pub ctrl: UdpSocket,
    pub link_sock: Option<UdpSocket>,
    pub core: LinkTable,
    pub switch: Switch<LinkId>,
    pub control: Control,
    pub counters: Counters,
    start: Instant,
    /// Frames are read at `buf[FRAME_HEADROOM..]`, so the link core seals them in place.
    buf: Vec<u8>,
    /// Sealed datagrams out, opened frames in.
    out: Vec<u8>,
    ctrl_buf: Vec<u8>,
    last_expire: Millis,
}

impl Node {
    pub fn new(tap_name: &str, port: u16, mtu: u16) -> io::Result<Node> {
        let tap = Tap::open(tap_name, mtu)?;
        let ctrl_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut ctrl = UdpSocket::bind(ctrl_addr).map_err(|e| {
            io::Error::other(format!(
                "cannot bind control port {ctrl_addr} (is another ipop-tincan running?): {e}"
            ))
        })?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&tap.dev.as_raw_fd()), TAP, Interest::READABLE)?;
        poll.registry()
            .register(&mut ctrl, CTRL, Interest::READABLE)?;
        info!(
            "TAP {} up, mac {}, mtu {mtu}; control on {ctrl_addr}",
            tap.name, tap.mac
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
            link_sock: None,
            core: LinkTable::new(boot_id, seed, wall),
            switch: Switch::new(MAC_TABLE_SIZE, MAC_TTL_MS),
            control: Control::default(),
            counters: Counters::default(),
            start: Instant::now(),
            buf: vec![0u8; BUF_LEN],
            out: vec![0u8; BUF_LEN],
            ctrl_buf: vec![0u8; BUF_LEN],
            last_expire: 0,
        })
    }

    pub fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// Binds the link socket on `port` (all IPv4 addresses) and polls it.
    pub fn bind_link(&mut self, port: u16) -> io::Result<()> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        // Bursts from the TAP arrive faster than one wake-up drains them; deep buffers absorb
        // them instead of dropping.
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        s.set_nonblocking(true)?;
        // Never DF: datagrams cut for `link_mtu` still cross a smaller path (a tunnel, PPPoE)
        // in IP fragments rather than vanish into a path-MTU black hole.
        set_pmtudisc_dont(&s);
        s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
        let mut sock = UdpSocket::from_std(s.into());
        if let Some(mut old) = self.link_sock.take() {
            let _ = self.poll.registry().deregister(&mut old);
        }
        self.poll
            .registry()
            .register(&mut sock, LINK, Interest::READABLE)?;
        self.link_sock = Some(sock);
        info!("links on UDP 0.0.0.0:{port}");
        Ok(())
    }

    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        // Edge-triggered sources not drained to WouldBlock in the last round.
        let (mut tap_more, mut link_more, mut ctrl_more) = (true, false, false);
        loop {
            let timeout = if tap_more || link_more || ctrl_more {
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
            let now = self.now();
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
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
    }

    /// Sends what the link core queued and acts on its events.
    pub fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            if let Some(sock) = self.link_sock.as_ref() {
                if sock.send_to(&t.payload, t.to).is_err() {
                    self.counters.link_tx_errors += 1;
                }
            }
        }
        while let Some(ev) = self.core.poll_event() {
            let (uid, up) = match ev {
                LinkEvent::Up { uid, .. } => (uid, true),
                LinkEvent::Down { link, uid, .. } => {
                    let removed = self.switch.macs.remove_port(link);
                    info!("link to {uid}: {removed} MAC entries withdrawn");
                    (uid, false)
                }
            };
            self.notify_con_stat(uid, up);
        }
    }

    // ---- TAP -> links ----------------------------------------------------------------

    /// Returns true if the TAP may hold more frames.
    fn drain_tap(&mut self) -> bool {
        // One clock read per batch: a batch takes well under a millisecond.
        let now = self.now();
        for _ in 0..BATCH {
            let n = match self.tap.dev.recv(&mut self.buf[FRAME_HEADROOM..]) {
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
            self.on_tap_frame(n, now);
        }
        true
    }

    fn on_tap_frame(&mut self, n: usize, now: Millis) {
        if n > self.tap.max_frame() {
            self.counters.drop_oversize += 1;
            return;
        }
        let end = FRAME_HEADROOM + n;
        let verdict =
            self.switch
                .from_tap(&self.buf[FRAME_HEADROOM..end], self.control.alive(), now);
        match verdict {
            TapVerdict::Punt => {
                self.counters.arp_punted += 1;
                let frame = self.buf[FRAME_HEADROOM..end].to_vec();
                self.punt_frame(&frame);
            }
            TapVerdict::Flood(reason) => {
                match reason {
                    FloodReason::UnknownUnicast => self.counters.unknown_unicast += 1,
                    FloodReason::Arp => self.counters.arp_flooded += 1,
                    FloodReason::Multicast => {}
                }
                self.counters.flooded_frames += 1;
                let mut sent = 0;
                // By slot, so that flooding allocates nothing; empty slots refuse the frame.
                for id in 0..self.core.slots() {
                    if self.send_frame(id, end, now) {
                        sent += 1;
                    }
                }
                if sent == 0 {
                    self.counters.drop_no_links += 1;
                }
            }
            TapVerdict::Unicast(id) => {
                if !self.send_frame(id, end, now) {
                    self.counters.drop_link_down += 1;
                }
            }
            TapVerdict::Drop(_) => self.counters.drop_truncated_frame += 1,
        }
    }

    /// Sends the frame at `buf[FRAME_HEADROOM..end]` on link `id`.
    fn send_frame(&mut self, id: LinkId, end: usize, now: Millis) -> bool {
        let Some(sock) = self.link_sock.as_ref() else {
            return false;
        };
        // The TAP hands over frames with complete checksums.
        match self
            .core
            .encapsulate(now, id, &mut self.buf[..end], Csum::Done, &mut self.out)
        {
            // One datagram, or the link fragments of a frame too large for one.
            Ok(Encapsulated::Send { to, len, stride }) => {
                let sent = self.out[..len]
                    .chunks(stride)
                    .all(|d| sock.send_to(d, to).is_ok());
                if !sent {
                    self.counters.link_tx_errors += 1;
                    self.core.note_tx_error(id);
                }
                sent
            }
            Ok(Encapsulated::Queued) => true,
            Err(SendError::NoRelay) => {
                self.counters.link_tx_errors += 1;
                false
            }
            Err(_) => false,
        }
    }

    // ---- links -> TAP ----------------------------------------------------------------

    fn drain_link(&mut self) -> bool {
        // One clock read per batch, as for the TAP.
        let now = self.now();
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
            match self
                .core
                .handle_datagram(now, from, &self.buf[..n], &mut self.out)
            {
                Received::Frame { link, range, .. } => self.deliver_frame(link, range, now),
                Received::Icc { link, range } => {
                    let msg = serde_json::from_slice(&self.out[range]);
                    self.deliver_icc(link, msg);
                }
                Received::Nothing => {}
            }
        }
        true
    }

    /// A frame from link `id` at `out[range]`: learn its source, write it to the TAP.
    fn deliver_frame(&mut self, id: LinkId, range: std::ops::Range<usize>, now: Millis) {
        let frame = &self.out[range];
        if frame.len() > self.tap.max_frame() {
            self.counters.drop_oversize += 1;
            return;
        }
        match self.switch.from_link(id, frame, now) {
            LinkVerdict::ToTap => {}
            LinkVerdict::Drop(DropReason::GroupSource) => {
                self.counters.drop_group_source += 1;
                return;
            }
            LinkVerdict::Drop(DropReason::Truncated) => {
                self.counters.drop_truncated_frame += 1;
                return;
            }
            LinkVerdict::Drop(DropReason::LocalSource | DropReason::HeldByOtherLink) => {
                self.counters.drop_refused_mac += 1;
                self.core.note_refused_mac(id);
                return;
            }
        }
        self.core.note_rx_frame(id, frame.len());
        match self.tap.dev.send(frame) {
            Ok(_) => {
                self.counters.tap_tx_frames += 1;
                self.counters.tap_tx_bytes += frame.len() as u64;
            }
            Err(_) => self.counters.tap_write_errors += 1,
        }
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
            self.control.heard_from(from, now);
            let datagram = self.ctrl_buf[..n].to_vec();
            if let Some(reply) = self.handle_ctrl(&datagram, from, now) {
                let _ = self.ctrl.send_to(&reply, from);
            }
            self.flush();
        }
        true
    }

    /// Sends a notification to the controller's callback endpoint.
    pub fn notify(&mut self, datagram: &[u8]) {
        let Some(cb) = self.control.cb() else {
            self.counters.punt_errors += 1;
            return;
        };
        if self.ctrl.send_to(datagram, cb).is_err() {
            self.counters.punt_errors += 1;
        }
    }
}

/// IP_MTU_DISCOVER = IP_PMTUDISC_DONT on the link socket: the kernel fragments datagrams larger
/// than the path instead of refusing them. A failure only costs that fallback (logged).
fn set_pmtudisc_dont(s: &socket2::Socket) {
    use nix::libc;
    let v: libc::c_int = libc::IP_PMTUDISC_DONT;
    // SAFETY: a valid socket fd and a c_int option of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            std::ptr::addr_of!(v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        warn!(
            "link socket: IP_MTU_DISCOVER: {}: datagrams larger than the path are dropped",
            io::Error::last_os_error()
        );
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
