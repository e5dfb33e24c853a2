//! `--rpc`: a one-shot JSON-RPC client for operators and tests. Methods of tincan that change
//! state go over the control socket `@ipop-tincan/<port>` (the only place tincan takes them),
//! after checking that root or our own user holds it; everything else goes to the UDP port.

use crate::control_sock::{address, euid, peer_uid};
use proto::rpc::{self, Incoming};
use proto::rpc_stream::{self, LineReader, MAX_LINE};
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(port: u16, method: &str, params: Option<&str>) -> ExitCode {
    let params: serde_json::Value = match params {
        None => serde_json::json!({}),
        Some(p) => match serde_json::from_str(p) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => {
                eprintln!("ipop-tincan: --params: expected a JSON object, got {p}");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("ipop-tincan: --params: not valid JSON: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let answer = if rpc_stream::changes_state(method) {
        call_stream(port, method, params)
    } else {
        call(port, method, params)
    };
    match answer {
        Ok(v) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("JSON serialises")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ipop-tincan: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The result of a response, or what was wrong with it.
fn result_of(method: &str, answer: &[u8]) -> Result<serde_json::Value, String> {
    match rpc::parse(answer) {
        Incoming::Response { result: Ok(v), .. } => Ok(v),
        Incoming::Response { result: Err(e), .. } => {
            Err(format!("{method}: error {}: {}", e.code.code(), e.message))
        }
        _ => Err(format!("{method}: not a JSON-RPC response")),
    }
}

/// One request over the control socket, answered within 2 s. The socket must be held by root
/// or by our own user: anyone else could be impersonating tincan to collect what we send.
fn call_stream(
    port: u16,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let shown = rpc_stream::socket_display(port);
    let addr = address(port).map_err(|e| format!("{shown}: {e}"))?;
    // Connected without waiting (a listener that does not accept is an error, not a hang),
    // then used blocking, with timeouts.
    let mio_sock = mio::net::UnixStream::connect_addr(&addr).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!("nothing listens on {shown} (tincan's control socket, where {method} must go)")
        }
        std::io::ErrorKind::WouldBlock => format!("{shown} accepts no connection (backlog full)"),
        _ => format!("cannot connect to {shown}: {e}"),
    })?;
    // SAFETY: the fd is mio's, whose ownership `into_raw_fd` hands over.
    let mut sock = unsafe { UnixStream::from_raw_fd(mio_sock.into_raw_fd()) };
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    let owner = peer_uid(sock.as_raw_fd()).map_err(|e| format!("{shown}: SO_PEERCRED: {e}"))?;
    let me = euid();
    if owner != 0 && owner != me {
        return Err(format!(
            "{shown} is held by uid {owner}, neither root nor us (uid {me}): not sending {method} to it"
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
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(format!("no answer from {shown} within 2 s"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("receive from {shown}: {e}")),
        }
    }
}

fn call(port: u16, method: &str, params: serde_json::Value) -> Result<serde_json::Value, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("cannot bind: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let req = rpc::request(1, method, params);
    let mut buf = vec![0u8; 65536];
    // UDP on loopback rarely loses a datagram, but a busy peer may: try a few times.
    for _ in 0..4 {
        sock.send_to(&req, ("127.0.0.1", port))
            .map_err(|e| format!("cannot send to 127.0.0.1:{port}: {e}"))?;
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => return result_of(method, &buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(format!("nothing listens on 127.0.0.1:{port}"));
            }
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    Err(format!("no answer from 127.0.0.1:{port} within 2 s"))
}
