//! The sd_notify protocol: newline-separated `KEY=VALUE` assignments in one datagram to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading
//! '@'). Without the variable nothing is sent, so the daemons run the same outside systemd.
//!
//! A dozen lines with the standard library's `UnixDatagram` instead of a crate: the protocol is
//! one `sendto`, and the abstract-name case needs `SocketAddrExt`, which std has.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where `$NOTIFY_SOCKET` points: a path, or an abstract name for "@name".
fn address(name: &str) -> io::Result<SocketAddr> {
    match name.strip_prefix('@') {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name.as_bytes()),
        None => SocketAddr::from_pathname(name),
    }
}

/// Sends `state` (e.g. "READY=1\nSTATUS=...") to `socket` (a `$NOTIFY_SOCKET` value).
pub fn notify_to(socket: &str, state: &str) -> io::Result<()> {
    if socket.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty NOTIFY_SOCKET",
        ));
    }
    let addr = address(socket)?;
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::other("short write to NOTIFY_SOCKET"));
    }
    Ok(())
}

/// A socket connected to `$NOTIFY_SOCKET` while the daemon could still reach it: a path only
/// root may write to stays reachable after the drop to another user (connecting checks the
/// permission, sending on the connected socket does not).
static CONNECTED: std::sync::OnceLock<UnixDatagram> = std::sync::OnceLock::new();

/// Connects to `$NOTIFY_SOCKET` now, for the later notifications (see [`CONNECTED`]); does
/// nothing without the variable, and a failure leaves [`notify`] connecting each time.
pub fn connect_early() {
    let Ok(socket) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let sock = address(&socket).and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.connect_addr(&addr)?;
        Ok(sock)
    });
    if let Ok(sock) = sock {
        let _ = CONNECTED.set(sock);
    }
}

/// Sends `state` to `$NOTIFY_SOCKET`. `Ok(false)` when the variable is not set (not run by a
/// service manager that waits for it); an error is the caller's to log, never fatal.
pub fn notify(state: &str) -> io::Result<bool> {
    let Ok(socket) = std::env::var("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    if let Some(sock) = CONNECTED.get() {
        if sock.send(state.as_bytes())? != state.len() {
            return Err(io::Error::other("short write to NOTIFY_SOCKET"));
        }
        return Ok(true);
    }
    notify_to(&socket, state).map(|()| true)
}

/// [`notify`], logging a failure as a warning: readiness is worth a line, never a crash.
fn notify_logged(state: &str) {
    if let Err(e) = notify(state) {
        log::warn!("cannot notify the service manager ({state:?}): {e}");
    }
}

/// `READY=1` with a status line: the daemon does what it is for.
pub fn ready(status: &str) {
    notify_logged(&format!("READY=1\nSTATUS={status}"));
}

/// `RELOADING=1`: a reload started; [`ready`] ends it.
pub fn reloading() {
    notify_logged("RELOADING=1");
}

/// `STOPPING=1`: the daemon is shutting down.
pub fn stopping() {
    notify_logged("STOPPING=1");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_path_socket_gets_the_state() {
        let dir = std::env::temp_dir().join(format!("ipop-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1\nSTATUS=up").unwrap();
        assert_eq!(received(&sock), "READY=1\nSTATUS=up");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_abstract_name_starts_with_an_at_sign() {
        let name = format!("ipop-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(&format!("@{name}"), "STOPPING=1").unwrap();
        assert_eq!(received(&sock), "STOPPING=1");
    }

    #[test]
    fn a_socket_nobody_listens_on_is_an_error_not_a_panic() {
        let e = notify_to("/nonexistent/ipop/notify.sock", "READY=1").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(notify_to("", "READY=1").is_err());
    }
}
