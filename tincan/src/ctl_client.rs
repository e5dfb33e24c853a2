//! The client side of the daemons' control sockets (abstract Unix stream sockets, one JSON-RPC
//! message per line; `proto::rpc_stream`): who holds a socket (`SO_PEERCRED`) and one
//! request answered within 2 s. Used by `ipop-tincan --rpc` and `ipopctl`; the daemons use
//! [`peer_uid`] and [`euid`] to decide who may change their state.

use proto::rpc::{self, Incoming};
use proto::rpc_stream::{self, LineReader, MAX_LINE};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The uid of the process at the other end of a Unix socket (`SO_PEERCRED`).
pub fn peer_uid(fd: RawFd) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// Who may hold a daemon's control socket for us to talk to it: root, our own user, and the
/// `ipop` account the package creates (the daemons' user under the systemd units, which bind
/// their sockets as that user). Not `nobody`: anything may run as `nobody`, and the daemons
/// that drop to it bind their sockets as root first.
pub fn trusted_holders() -> Vec<u32> {
    let mut uids = vec![0, euid()];
    if let Ok(Some(u)) = nix::unistd::User::from_name(ipop_service::privileges::DEFAULT_USER) {
        uids.push(u.uid.as_raw());
    }
    uids
}

/// The abstract socket address `name` (shown as `@name`).
pub fn abstract_address(name: &str) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}

/// The result of a JSON-RPC response, or what was wrong with it.
pub fn result_of(method: &str, answer: &[u8]) -> Result<serde_json::Value, String> {
    match rpc::parse(answer) {
        Incoming::Response { result: Ok(v), .. } => Ok(v),
        Incoming::Response { result: Err(e), .. } => {
            Err(format!("{method}: error {}: {}", e.code.code(), e.message))
        }
        _ => Err(format!("{method}: not a JSON-RPC response")),
    }
}

/// One request over the control socket `@name` of `daemon`, answered within 2 s. The socket
/// must be held by one of [`trusted_holders`]: anyone else could be impersonating the daemon
/// to collect what we send.
pub fn call(
    daemon: &str,
    name: &str,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let shown = format!("@{name}");
    let addr = abstract_address(name).map_err(|e| format!("{shown}: {e}"))?;
    // Connected without waiting (a listener that does not accept is an error, not a hang),
    // then used blocking, with timeouts.
    let mio_sock = mio::net::UnixStream::connect_addr(&addr).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            format!(
                "nothing listens on {shown} ({daemon}'s control socket, where {method} must go)"
            )
        }
        io::ErrorKind::WouldBlock => format!("{shown} accepts no connection (backlog full)"),
        _ => format!("cannot connect to {shown}: {e}"),
    })?;
    // SAFETY: the fd is mio's, whose ownership `into_raw_fd` hands over.
    let mut sock = unsafe { UnixStream::from_raw_fd(mio_sock.into_raw_fd()) };
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    let owner = peer_uid(sock.as_raw_fd()).map_err(|e| format!("{shown}: SO_PEERCRED: {e}"))?;
    if !trusted_holders().contains(&owner) {
        return Err(format!(
            "{shown} is held by uid {owner}, not root, us (uid {}) nor the user {}: not sending {method} to it",
            euid(),
            ipop_service::privileges::DEFAULT_USER
        ));
    }
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .and_then(|_| sock.set_write_timeout(Some(Duration::from_secs(2))))
        .map_err(|e| e.to_string())?;
    sock.write_all(&rpc_stream::frame(&rpc::request(1, method, params)))
        .map_err(|e| format!("cannot send to {shown}: {e}"))?;
    let mut lines = LineReader::new(MAX_LINE);
    let mut buf = vec![0u8; 65536];
    loop {
        if let Some(line) = lines.next_line() {
            let line = line.map_err(|_| format!("{method}: an answer over {MAX_LINE} bytes"))?;
            return result_of(method, line);
        }
        match sock.read(&mut buf) {
            Ok(0) => return Err(format!("{method}: {shown} closed without an answer")),
            Ok(n) => lines.feed(&buf[..n]),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(format!("no answer from {shown} within 2 s"))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receive from {shown}: {e}")),
        }
    }
}
