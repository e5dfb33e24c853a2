//! One typed JSON-RPC request to a daemon on loopback, answered within a bounded time.

use proto::rpc::{self, Id, Incoming};
use serde::de::DeserializeOwned;
use std::fmt;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How long a daemon has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Loopback rarely loses a datagram, but a busy daemon may: the request goes out again this
/// often until the timeout.
const RESEND: Duration = Duration::from_millis(250);

/// Why a daemon gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Nothing listens on the port (ICMP port unreachable).
    NotRunning,
    /// No answer within [`TIMEOUT`].
    NoAnswer,
    /// The daemon answered with an error.
    Refused(String),
    /// The answer is not the typed result (another version of the daemon?).
    Unreadable(String),
    /// A local socket error.
    Io(String),
}

/// A daemon, by name and address, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Daemon {
    pub name: &'static str,
    pub addr: SocketAddr,
}

impl Daemon {
    /// One line saying what went wrong with this daemon.
    pub fn describe(&self, e: &CallError) -> String {
        let Daemon { name, addr } = self;
        match e {
            CallError::NotRunning => {
                format!("{name} not running on {addr} (nothing listens there)")
            }
            CallError::NoAnswer => format!(
                "{name} not answering on {addr} (no answer within {} s)",
                TIMEOUT.as_secs()
            ),
            CallError::Refused(m) => format!("{name} on {addr} refused the request: {m}"),
            CallError::Unreadable(m) => format!("{name} on {addr}: unreadable answer: {m}"),
            CallError::Io(m) => format!("{name} on {addr}: {m}"),
        }
    }
}

impl fmt::Display for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.name, self.addr)
    }
}

/// Sends `request` (a request datagram with id `id`) to `to` and reads the result as `T`.
pub fn call<T: DeserializeOwned>(to: SocketAddr, request: &[u8], id: u64) -> Result<T, CallError> {
    let io = |e: std::io::Error| CallError::Io(e.to_string());
    let sock = UdpSocket::bind((to.ip(), 0)).map_err(io)?;
    // Connected, so that an ICMP port unreachable comes back as ConnectionRefused.
    sock.connect(to).map_err(io)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(CallError::NoAnswer);
        }
        match sock.send(request) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                return Err(CallError::NotRunning)
            }
            Err(e) => return Err(io(e)),
        }
        let resend_at = (now + RESEND).min(deadline);
        while let Some(wait) = resend_at.checked_duration_since(Instant::now()) {
            if wait.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(wait)).map_err(io)?;
            match sock.recv(&mut buf) {
                Ok(n) => match rpc::parse(&buf[..n]) {
                    Incoming::Response {
                        id: Id::Num(got),
                        result,
                    } if got == id => {
                        return match result {
                            Ok(v) => serde_json::from_value(v)
                                .map_err(|e| CallError::Unreadable(e.to_string())),
                            Err(e) => Err(CallError::Refused(format!(
                                "error {}: {}",
                                e.code.code(),
                                e.message
                            ))),
                        };
                    }
                    // An answer to an earlier datagram of ours, or noise: keep waiting.
                    _ => continue,
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    return Err(CallError::NotRunning)
                }
                Err(e) => return Err(io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::api::tincan::{EchoReply, EchoRequest, TincanRequest};

    #[test]
    fn a_closed_port_is_not_running_and_a_silent_one_does_not_answer_in_time() {
        // A port bound and then released: nothing listens there.
        let free = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let req = TincanRequest::from(EchoRequest::default()).request(1);
        assert_eq!(
            call::<EchoReply>(free, &req, 1).unwrap_err(),
            CallError::NotRunning
        );
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let e = call::<EchoReply>(silent.local_addr().unwrap(), &req, 1).unwrap_err();
        assert_eq!(e, CallError::NoAnswer);
        let took = start.elapsed();
        assert!(took >= TIMEOUT && took < TIMEOUT * 2, "{took:?}");
        let d = Daemon {
            name: "tincan",
            addr: silent.local_addr().unwrap(),
        };
        assert!(d
            .describe(&e)
            .starts_with("tincan not answering on 127.0.0.1:"));
    }

    #[test]
    fn the_answer_with_our_id_is_read_as_the_typed_result() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let Incoming::Call { id: Some(id), .. } = rpc::parse(&buf[..n]) else {
                panic!("not a request")
            };
            // A stale answer first, then ours.
            let stale = rpc::response(Id::Num(99), Ok(serde_json::json!({"type": "x"})));
            server.send_to(&stale, from).unwrap();
            let ok = EchoReply {
                msg: serde_json::json!("hi"),
            };
            let ok = rpc::response(id, Ok(serde_json::to_value(ok).unwrap()));
            server.send_to(&ok, from).unwrap();
        });
        let req = TincanRequest::from(EchoRequest::default()).request(7);
        let r: EchoReply = call(addr, &req, 7).unwrap();
        assert_eq!(r.msg, "hi");
        t.join().unwrap();
    }
}
