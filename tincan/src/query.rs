//! `--rpc`: a one-shot JSON-RPC client for operators and tests. Methods of tincan that change
//! state go over the control socket `@ipop-tincan/<port>` (the only place tincan takes them),
//! after checking that root or our own user holds it; everything else goes to the UDP port.

use ipop_tincan::ctl_client::{self, result_of};
use proto::rpc;
use proto::rpc_stream;
use std::net::UdpSocket;
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

/// One request over tincan's control socket (see [`ctl_client::call`]).
fn call_stream(
    port: u16,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, String> {
    ctl_client::call("tincan", &rpc_stream::socket_name(port), method, params)
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
