//! The controller's own control socket, `@ipop-controller/<icc_port>` (an abstract Unix stream
//! socket, one JSON-RPC message per line, as tincan's): where `ipopctl log-level` changes the
//! log level at run time. Only root and the controller's own user may (`SO_PEERCRED`); anyone
//! may call `echo_request`. Each connection is served by a task of its own, bounded in size
//! and time, so a slow or hostile client never holds up the controller's loop.

use ipop_service::logging;
use log::{info, LevelFilter};
use proto::api::{ApiError, ErrorCode};
use proto::rpc::{self, Id, Incoming};
use proto::rpc_stream::{self, LineReader};
use serde_json::{json, Value};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Requests here are small.
const MAX_LINE: usize = 4096;
/// A connection gets this long for its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The controller's control socket `@ipop-controller/<icc_port>`, bound and non-blocking.
pub fn bind(icc_port: u16) -> io::Result<std::os::unix::net::UnixListener> {
    let name = rpc_stream::controller_socket_name(icc_port);
    let addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?
    };
    let std = std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| {
        io::Error::other(format!(
            "cannot bind control socket @{name} (is another gvpn-controller running?): {e}"
        ))
    })?;
    std.set_nonblocking(true)?;
    Ok(std)
}

/// Serves one connection: one request, one answer. `rust_log`: RUST_LOG fixes the level.
pub(super) async fn serve(mut stream: UnixStream, rust_log: bool) {
    let Ok(cred) = stream.peer_cred() else {
        return;
    };
    let trusted = cred.uid() == 0 || cred.uid() == super::channel::euid();
    let mut lines = LineReader::new(MAX_LINE);
    let mut buf = [0u8; 1024];
    let line = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            if let Some(line) = lines.next_line() {
                return line.ok().map(<[u8]>::to_vec);
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => lines.feed(&buf[..n]),
            }
        }
    })
    .await;
    let Ok(Some(line)) = line else {
        return;
    };
    let answer = match rpc::parse(&line) {
        Incoming::Call {
            id: Some(id),
            method,
            params,
        } => rpc::response(
            id,
            call(&method, &params, trusted, cred.uid(), rust_log).map_err(Into::into),
        ),
        Incoming::Invalid {
            id: Some(id),
            error,
        } => rpc::response(id, Err(error)),
        _ => rpc::response(
            Id::Null,
            Err(ApiError::new(ErrorCode::InvalidRequest, "expected one request").into()),
        ),
    };
    let _ = stream.write_all(&rpc_stream::frame(&answer)).await;
}

fn call(
    method: &str,
    params: &serde_json::Map<String, Value>,
    trusted: bool,
    uid: u32,
    rust_log: bool,
) -> Result<Value, ApiError> {
    match method {
        "echo_request" => Ok(json!({"msg": params.get("msg").cloned()})),
        "set_log_level" if !trusted => Err(ApiError::new(
            ErrorCode::NotPermitted,
            "set_log_level changes state: only root or the controller's own user may call it",
        )),
        "set_log_level" => {
            let level = params
                .get("level")
                .and_then(Value::as_str)
                .and_then(|l| l.parse::<LevelFilter>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidParams,
                        "\"level\": expected off, error, warn, info, debug or trace",
                    )
                })?;
            if rust_log {
                return Ok(json!({"level": log::max_level().to_string().to_lowercase(),
                                 "fixed_by_rust_log": true}));
            }
            let line = format!("log level now {level} (set by uid {uid})");
            if level >= LevelFilter::Info {
                logging::set_level(level);
                info!("{line}");
            } else {
                info!("{line}");
                logging::set_level(level);
            }
            Ok(json!({"level": level.to_string().to_lowercase(), "fixed_by_rust_log": false}))
        }
        _ => Err(ApiError::new(
            ErrorCode::MethodNotFound,
            format!("no method {method} on the controller's control socket"),
        )),
    }
}
