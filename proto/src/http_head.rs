//! The request head of the controller's metrics endpoint (`GET /metrics`), read from any local
//! process: where the head ends and what it asks for. Pure functions; the controller does the I/O.

/// The largest request head (request line and headers) read; more is answered 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Metrics,
    NotFound,
    MethodNotAllowed,
    Bad,
    TooLarge,
}

/// Where the head ends (the empty line, CRLF or bare LF), if it has.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The request line of a head: `GET /metrics HTTP/1.x` (a query string is ignored).
pub fn parse_head(head: &[u8]) -> Request {
    if head.len() > MAX_REQUEST_BYTES {
        return Request::TooLarge;
    }
    let Ok(text) = std::str::from_utf8(head) else {
        return Request::Bad;
    };
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Bad;
    }
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Request::Metrics,
        ("GET", _) => Request::NotFound,
        _ => Request::MethodNotAllowed,
    }
}
