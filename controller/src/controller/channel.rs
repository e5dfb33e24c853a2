//! The controller's connection to tincan's control socket `@ipop-tincan/<svpn_port>`: requests
//! and answers, and tincan's notifications, one JSON-RPC message per line.
//!
//! Before anything is sent, the kernel says who holds the socket (`SO_PEERCRED`): it must be
//! root or the controller's own user. A local user who took tincan's name while tincan was
//! down gets a connection that is closed at once, and nothing else (no key file path, no TURN
//! password, no link): see docs/architecture.md, "Who may steer the daemons".

use super::Controller;
use log::{debug, info, warn};
use proto::api::tincan::{self as api, TincanNotification};
use proto::rpc::{self, Id, Incoming};
use proto::rpc_stream::{self, LineError, LineReader, MAX_LINE};
use std::io;
use tokio::io::{Interest, Ready};
use tokio::net::UnixStream;

/// Bytes queued for tincan before requests are dropped (tincan reads at once; this is only
/// reached when it hangs).
const MAX_OUT: usize = 4 << 20;

/// Why there is no connection.
#[derive(Debug)]
pub(super) enum ConnectError {
    /// Nothing listens: tincan is not running (yet).
    NotListening,
    /// The socket is held by another user: an impostor.
    Impostor {
        uid: u32,
        pid: Option<i32>,
    },
    Other(String),
}

pub(super) struct TincanChannel {
    stream: UnixStream,
    rx: LineReader,
    tx: Vec<u8>,
    buf: Vec<u8>,
}

/// The controller's effective uid.
pub(super) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

impl TincanChannel {
    /// Connects to tincan's control socket and checks who holds it. The connect never waits:
    /// a listener that does not accept (its backlog full) is an error, not a hang.
    pub(super) async fn connect(port: u16) -> Result<TincanChannel, ConnectError> {
        // A leading NUL byte names an abstract socket.
        let path = format!("\0{}", rpc_stream::socket_name(port));
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                    ConnectError::NotListening
                }
                _ => ConnectError::Other(e.to_string()),
            })?;
        let cred = stream
            .peer_cred()
            .map_err(|e| ConnectError::Other(format!("SO_PEERCRED: {e}")))?;
        if cred.uid() != 0 && cred.uid() != euid() {
            return Err(ConnectError::Impostor {
                uid: cred.uid(),
                pid: cred.pid(),
            });
        }
        Ok(TincanChannel {
            stream,
            rx: LineReader::new(MAX_LINE),
            tx: Vec::new(),
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Queues one message and writes what the socket takes now; false if it was dropped (the
    /// queue is full) or the connection broke.
    pub(super) fn send(&mut self, message: &[u8]) -> bool {
        if self.tx.len() + message.len() + 1 > MAX_OUT {
            return false;
        }
        self.tx.extend_from_slice(message);
        self.tx.push(b'\n');
        self.write().is_ok()
    }

    fn write(&mut self) -> io::Result<()> {
        while !self.tx.is_empty() {
            match self.stream.try_write(&self.tx) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.tx.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until there is something to read, or room for queued output.
    pub(super) async fn ready(&self) -> io::Result<Ready> {
        let interest = if self.tx.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        self.stream.ready(interest).await
    }

    /// After [`TincanChannel::ready`]: writes queued output and reads the complete lines that
    /// arrived. `Err` when the connection closed or broke (or sent a line over the bound).
    pub(super) fn service(&mut self, ready: Ready) -> io::Result<Vec<Vec<u8>>> {
        if ready.is_writable() {
            self.write()?;
        }
        let mut lines = Vec::new();
        if ready.is_readable() {
            match self.stream.try_read(&mut self.buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.rx.feed(&self.buf[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            while let Some(line) = self.rx.next_line() {
                match line {
                    Ok(l) => lines.push(l.to_vec()),
                    Err(LineError::TooLong) => {
                        return Err(io::Error::other(format!(
                            "a line over {MAX_LINE} bytes from tincan"
                        )))
                    }
                }
            }
        }
        Ok(lines)
    }
}

/// The channel's next readiness; never, without a channel.
pub(super) async fn channel_ready(ch: &Option<TincanChannel>) -> io::Result<Ready> {
    match ch {
        Some(c) => c.ready().await,
        None => std::future::pending().await,
    }
}

impl Controller {
    /// Connects to tincan's control socket if there is no connection: checks who holds it,
    /// and makes the connection the one tincan's notifications come over.
    pub(super) async fn connect_tincan(&mut self) {
        if self.channel.is_some() {
            return;
        }
        match TincanChannel::connect(self.cfg.svpn_port).await {
            Ok(ch) => {
                self.channel = Some(ch);
                self.counters.tincan_connected += 1;
                self.impostor_reported = false;
                info!("connected to ipop-tincan's control socket {}", self.tincan);
                self.send_rpc(api::SetCbEndpoint {
                    ip: std::net::Ipv4Addr::LOCALHOST.into(),
                    port: self.cfg.icc_port,
                });
            }
            Err(ConnectError::NotListening) => {}
            Err(ConnectError::Impostor { uid, pid }) => {
                self.counters.tincan_socket_refused += 1;
                if !self.impostor_reported {
                    self.impostor_reported = true;
                    warn!(
                        "{} is held by uid {uid} (pid {}), neither root nor this controller's \
                         user: not ipop-tincan; nothing sent to it",
                        self.tincan,
                        pid.map_or("?".to_string(), |p| p.to_string())
                    );
                }
            }
            Err(ConnectError::Other(e)) => {
                debug!("cannot connect to {}: {e}", self.tincan);
            }
        }
    }

    /// The connection to tincan is readable or writable: handles what came, or drops the
    /// connection when it closed (tincan stopped; the heartbeat connects again).
    pub(super) async fn on_channel_ready(&mut self, ready: io::Result<tokio::io::Ready>) {
        let lines = match ready.and_then(|r| {
            self.channel
                .as_mut()
                .expect("ready only with a channel")
                .service(r)
        }) {
            Ok(lines) => lines,
            Err(e) => {
                info!("connection to {} closed ({e})", self.tincan);
                self.channel = None;
                self.inflight.clear();
                return;
            }
        };
        for line in lines {
            self.handle_tincan(&line).await;
        }
    }

    /// A message from tincan over its control socket: an answer or a notification.
    async fn handle_tincan(&mut self, message: &[u8]) {
        match rpc::parse(message) {
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
            Incoming::Call {
                id: None,
                method,
                params,
            } => match TincanNotification::from_call(&method, params) {
                Ok(n) => self.on_notification(n),
                Err(e) => {
                    self.counters.bad_notifications += 1;
                    debug!("notification {method} from tincan: {e}");
                }
            },
            Incoming::Call { .. } | Incoming::Invalid { .. } => {
                self.counters.bad_notifications += 1;
            }
        }
    }
}
