//! The control socket: an abstract Unix stream socket `@ipop-tincan/<port>` beside the UDP
//! control port, one JSON-RPC message per line (`proto::rpc_stream`). The kernel tells who
//! connected (`SO_PEERCRED`): only root and tincan's own user may change state, on their own
//! connection. The controller's connection also carries tincan's notifications.
//!
//! Everything is bounded and non-blocking: at most [`MAX_CONNS`] connections (a trusted caller
//! takes the place of the oldest untrusted one when all are taken), lines of at most
//! [`MAX_LINE`] bytes (a longer one closes the connection), at most [`MAX_OUT`] bytes queued
//! for a connection that does not read (what does not fit is dropped and counted), and a
//! bounded number of lines per connection per wake-up, so the data plane never waits on it.

use log::{info, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use proto::rpc_stream::{self, LineError, LineReader, MAX_LINE};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

/// Connections held at once.
pub const MAX_CONNS: usize = 8;
/// Bytes queued for one connection; beyond, answers and notifications are dropped.
pub const MAX_OUT: usize = 1 << 20;
/// Lines handled per connection per wake-up before the other sources get a turn.
const LINES_PER_WAKE: usize = 64;
/// The listener's token; connection `i` has `CONN_BASE + i`.
pub const LISTENER: Token = Token(8);
const CONN_BASE: usize = 16;

/// One connection, by slot and by a serial that is never reused (a slot is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId {
    pub slot: usize,
    pub serial: u64,
}

/// Who sent a control message.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    /// The UDP port: anyone local; read-only methods only.
    Udp(std::net::SocketAddr),
    /// A connection to the control socket, with the uid the kernel gave.
    Stream {
        conn: ConnId,
        uid: u32,
        trusted: bool,
    },
}

impl Caller {
    pub fn trusted(&self) -> bool {
        matches!(self, Caller::Stream { trusted: true, .. })
    }

    pub fn conn(&self) -> Option<ConnId> {
        match self {
            Caller::Stream { conn, .. } => Some(*conn),
            Caller::Udp(_) => None,
        }
    }

    pub fn uid(&self) -> Option<u32> {
        match self {
            Caller::Stream { uid, .. } => Some(*uid),
            Caller::Udp(_) => None,
        }
    }
}

/// Counters of the control channels, in `get_state`.
#[derive(Debug, Default, Serialize)]
pub struct ControlCounters {
    /// State-changing methods refused: on the UDP port, or from a user other than root and
    /// tincan's own.
    pub control_refused_unauthenticated: u64,
    /// `set_local_ip` refused because it would change the loaded identity.
    pub control_refused_identity_change: u64,
    pub control_conns_accepted: u64,
    /// Connections refused (all slots taken by trusted callers, or by others for an
    /// untrusted newcomer) or closed to make room for a trusted one.
    pub control_conns_refused: u64,
    /// Connections closed for a line over the bound.
    pub control_line_too_long: u64,
    /// Answers and notifications dropped because the reader did not keep up.
    pub control_out_dropped: u64,
}

struct Conn {
    stream: UnixStream,
    serial: u64,
    uid: u32,
    trusted: bool,
    rx: LineReader,
    tx: Vec<u8>,
    /// Readable data may be left (edge-triggered: read until `WouldBlock`).
    more: bool,
}

pub struct ControlSock {
    listener: UnixListener,
    conns: Vec<Option<Conn>>,
    next_serial: u64,
    pub port: u16,
    pub counters: ControlCounters,
    read_buf: Vec<u8>,
}

pub use ipop_tincan::ctl_client::{euid, peer_uid};

/// The abstract address `@ipop-tincan/<port>`.
pub fn address(port: u16) -> io::Result<std::os::unix::net::SocketAddr> {
    ipop_tincan::ctl_client::abstract_address(&rpc_stream::socket_name(port))
}

impl ControlSock {
    pub fn bind(port: u16, registry: &Registry) -> io::Result<ControlSock> {
        let shown = rpc_stream::socket_display(port);
        let mut listener = UnixListener::bind_addr(&address(port)?).map_err(|e| {
            io::Error::other(format!(
                "cannot bind control socket {shown} (is another ipop-tincan running?): {e}"
            ))
        })?;
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(ControlSock {
            listener,
            conns: (0..MAX_CONNS).map(|_| None).collect(),
            next_serial: 1,
            port,
            counters: ControlCounters::default(),
            read_buf: vec![0u8; 64 * 1024],
        })
    }

    /// The connection of `token`, if it is one of ours.
    pub fn slot_of(token: Token) -> Option<usize> {
        token
            .0
            .checked_sub(CONN_BASE)
            .filter(|slot| *slot < MAX_CONNS)
    }

    /// Accepts every pending connection.
    pub fn accept(&mut self, registry: &Registry) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("control socket: accept: {e}");
                    return;
                }
            };
            let Ok(uid) = peer_uid(stream.as_raw_fd()) else {
                self.counters.control_conns_refused += 1;
                continue;
            };
            // The uid now, not at bind time: tincan binds as root and then drops to its user.
            let trusted = uid == 0 || uid == euid();
            let Some(slot) = self.free_slot(trusted, registry) else {
                self.counters.control_conns_refused += 1;
                continue;
            };
            if registry
                .register(
                    &mut stream,
                    Token(CONN_BASE + slot),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                self.counters.control_conns_refused += 1;
                continue;
            }
            self.counters.control_conns_accepted += 1;
            let serial = self.next_serial;
            self.next_serial += 1;
            self.conns[slot] = Some(Conn {
                stream,
                serial,
                uid,
                trusted,
                rx: LineReader::new(MAX_LINE),
                tx: Vec::new(),
                more: true,
            });
        }
    }

    /// A free slot; for a trusted caller, the slot of the oldest untrusted connection when
    /// none is free.
    fn free_slot(&mut self, trusted: bool, registry: &Registry) -> Option<usize> {
        if let Some(i) = self.conns.iter().position(Option::is_none) {
            return Some(i);
        }
        if !trusted {
            return None;
        }
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| !c.trusted).map(|c| (c.serial, i)))
            .min()?
            .1;
        self.counters.control_conns_refused += 1;
        self.close(oldest, registry);
        Some(oldest)
    }

    pub fn close(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut c) = self.conns[slot].take() {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// The id of the connection in `slot`.
    pub fn id(&self, slot: usize) -> Option<ConnId> {
        self.conns[slot].as_ref().map(|c| ConnId {
            slot,
            serial: c.serial,
        })
    }

    /// An event on `slot`: reads may be possible, and queued output goes out.
    pub fn on_event(&mut self, slot: usize, registry: &Registry) {
        if let Some(c) = self.conns[slot].as_mut() {
            c.more = true;
        }
        self.flush(slot, registry);
    }

    /// Slots with input possibly left.
    pub fn busy(&self) -> impl Iterator<Item = usize> + '_ {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| c.more).map(|_| i))
    }

    /// Up to [`LINES_PER_WAKE`] complete lines of `slot`, with who sent them and whether the
    /// connection is to be closed once they are answered (the caller closed its end, or sent
    /// a line over the bound); reads as needed.
    pub fn read_lines(&mut self, slot: usize, out: &mut Vec<Vec<u8>>) -> Option<(Caller, bool)> {
        let c = self.conns[slot].as_mut()?;
        let caller = Caller::Stream {
            conn: ConnId {
                slot,
                serial: c.serial,
            },
            uid: c.uid,
            trusted: c.trusted,
        };
        let mut close = false;
        while out.len() < LINES_PER_WAKE {
            match c.rx.next_line() {
                Some(Ok(line)) => {
                    out.push(line.to_vec());
                    continue;
                }
                Some(Err(LineError::TooLong)) => {
                    self.counters.control_line_too_long += 1;
                    warn!(
                        "control socket: uid {} sent a line over {MAX_LINE} bytes: connection closed",
                        c.uid
                    );
                    out.clear();
                    close = true;
                    break;
                }
                None => {}
            }
            match c.stream.read(&mut self.read_buf) {
                Ok(0) => {
                    close = true;
                    break;
                }
                Ok(n) => c.rx.feed(&self.read_buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.more = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    close = true;
                    break;
                }
            }
        }
        Some((caller, close))
    }

    /// Queues `message` (one line) for `conn` and writes what the socket takes; false when the
    /// connection is gone or the message was dropped.
    pub fn send(&mut self, conn: ConnId, message: &[u8], registry: &Registry) -> bool {
        let Some(c) = self.conns[conn.slot]
            .as_mut()
            .filter(|c| c.serial == conn.serial)
        else {
            return false;
        };
        if c.tx.len() + message.len() + 1 > MAX_OUT {
            self.counters.control_out_dropped += 1;
            return false;
        }
        c.tx.extend_from_slice(message);
        c.tx.push(b'\n');
        self.flush(conn.slot, registry)
    }

    /// Writes queued output until the socket would block; false if the connection closed.
    fn flush(&mut self, slot: usize, registry: &Registry) -> bool {
        let Some(c) = self.conns[slot].as_mut() else {
            return false;
        };
        let mut written = 0;
        let mut broken = false;
        while written < c.tx.len() {
            match c.stream.write(&c.tx[written..]) {
                Ok(0) => {
                    broken = true;
                    break;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        c.tx.drain(..written);
        if broken {
            info!("control socket: connection of uid {} closed", c.uid);
            self.close(slot, registry);
        }
        !broken
    }
}
