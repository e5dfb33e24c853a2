//! The authenticated control channel of ipop-tincan: a Unix stream socket in the abstract
//! namespace (scoped to the network namespace, no file to clean up), named from the control
//! port, carrying the same JSON-RPC messages as the UDP port, one compact JSON object per line.
//!
//! Who may change tincan's state is decided by the kernel's credentials of the connecting
//! process (`SO_PEERCRED`), not by anything in the messages; see docs/architecture.md, "Who may
//! steer the daemons". The UDP port answers only [`read_only`] methods.

/// The longest line either side accepts (a `set_neigh` of 4096 bindings is about 200 KB); a
/// longer one is counted and the connection closed.
pub const MAX_LINE: usize = 256 * 1024;

/// The abstract socket name of the tincan whose control port is `port`, without the leading
/// NUL byte: `ipop-tincan/5800`. Shown to people as `@ipop-tincan/5800`.
pub fn socket_name(port: u16) -> String {
    format!("ipop-tincan/{port}")
}

/// The abstract socket name of the controller whose `icc_port` is `port`:
/// `ipop-controller/30000` (where `ipopctl log-level` goes).
pub fn controller_socket_name(port: u16) -> String {
    format!("ipop-controller/{port}")
}

/// The name as people write it (`ss -xl` shows it so): `@ipop-tincan/5800`.
pub fn socket_display(port: u16) -> String {
    format!("@{}", socket_name(port))
}

/// Whether a tincan method only reads: `get_state` and `echo_request`, answered to any local
/// process on the UDP port and on the stream. Every other method of tincan changes state and is
/// answered only on the stream, to root or tincan's own user.
pub fn read_only(method: &str) -> bool {
    matches!(method, "get_state" | "echo_request")
}

/// Whether `method` is one of tincan's methods that change state (a method tincan does not
/// have is neither: it gets "method not found" wherever it arrives).
pub fn changes_state(method: &str) -> bool {
    !read_only(method) && crate::api::tincan::TincanRequest::METHODS.contains(&method)
}

/// The error message for a state-changing `method` that arrived where it may not.
pub fn refusal(method: &str, port: u16, uid: Option<u32>) -> String {
    let from = match uid {
        Some(uid) => format!(" (this connection is uid {uid})"),
        None => String::new(),
    };
    format!(
        "{method} changes state: only over the control socket {}, as root or tincan's user{from}",
        socket_display(port)
    )
}

/// Why a stream's input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// A line longer than the bound: the connection is closed.
    TooLong,
}

/// Cuts a byte stream into lines of at most `max` bytes, without the newline. Bytes are fed as
/// they arrive; complete lines come out in order. Empty lines are skipped.
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as lines.
    start: usize,
    /// Where the search for the next newline resumes.
    scanned: usize,
    max: usize,
}

impl LineReader {
    pub fn new(max: usize) -> LineReader {
        LineReader {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max,
        }
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, `None` when there is none yet, or an error when the line being
    /// read is already longer than the bound (the reader is then unusable: close the stream).
    pub fn next_line(&mut self) -> Option<Result<&[u8], LineError>> {
        loop {
            let from = self.scanned.max(self.start);
            match self.buf[from..].iter().position(|b| *b == b'\n') {
                Some(i) => {
                    let end = from + i;
                    let line_start = self.start;
                    self.start = end + 1;
                    self.scanned = self.start;
                    if end - line_start > self.max {
                        return Some(Err(LineError::TooLong));
                    }
                    let line = trim_cr(&self.buf[line_start..end]);
                    if line.is_empty() {
                        continue;
                    }
                    // Borrow again: `line` above borrowed `self.buf` for the check only.
                    let len = line.len();
                    return Some(Ok(&self.buf[line_start..line_start + len]));
                }
                None => {
                    self.scanned = self.buf.len();
                    if self.buf.len() - self.start > self.max {
                        return Some(Err(LineError::TooLong));
                    }
                    self.compact();
                    return None;
                }
            }
        }
    }

    /// Bytes held that are not yet a complete line.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A message as it goes on the stream: the JSON followed by a newline (our serialiser never
/// writes a newline inside compact JSON).
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(message.len() + 1);
    v.extend_from_slice(message);
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(r: &mut LineReader) -> Vec<Result<Vec<u8>, LineError>> {
        let mut out = Vec::new();
        while let Some(l) = r.next_line() {
            let stop = l.is_err();
            out.push(l.map(<[u8]>::to_vec));
            if stop {
                break;
            }
        }
        out
    }

    #[test]
    fn lines_come_out_whole_whatever_the_reads() {
        let input = b"{\"a\":1}\n\n{\"b\":2}\r\n{\"c\":3}\n";
        for chunk in 1..input.len() {
            let mut r = LineReader::new(64);
            let mut got = Vec::new();
            for part in input.chunks(chunk) {
                r.feed(part);
                got.extend(lines(&mut r));
            }
            let want: Vec<Result<Vec<u8>, LineError>> = vec![
                Ok(b"{\"a\":1}".to_vec()),
                Ok(b"{\"b\":2}".to_vec()),
                Ok(b"{\"c\":3}".to_vec()),
            ];
            assert_eq!(got, want, "chunks of {chunk}");
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn a_line_over_the_bound_is_refused_also_before_its_newline() {
        let mut r = LineReader::new(8);
        r.feed(b"12345678\n");
        assert_eq!(lines(&mut r), vec![Ok(b"12345678".to_vec())]);
        r.feed(b"123456789");
        assert_eq!(r.next_line(), Some(Err(LineError::TooLong)));
        let mut r = LineReader::new(8);
        r.feed(b"123456789\nok\n");
        assert_eq!(r.next_line(), Some(Err(LineError::TooLong)));
        // Memory stays bounded while no newline comes: the caller closes on the error.
        let mut r = LineReader::new(8);
        r.feed(b"1234");
        assert_eq!(r.next_line(), None);
        assert_eq!(r.pending(), 4);
    }

    #[test]
    fn methods_are_read_only_or_change_state() {
        use crate::api::tincan::TincanRequest;
        for m in TincanRequest::METHODS {
            assert_ne!(read_only(m), changes_state(m), "{m}");
        }
        assert!(read_only("get_state") && read_only("echo_request"));
        for m in [
            "set_local_ip",
            "set_nat",
            "create_link",
            "inject_frame",
            "set_cb_endpoint",
        ] {
            assert!(changes_state(m), "{m}");
        }
        assert!(!changes_state("nope") && !read_only("nope"));
        assert_eq!(socket_display(5800), "@ipop-tincan/5800");
        let msg = refusal("set_nat", 5800, Some(65534));
        assert!(
            msg.contains("set_nat changes state")
                && msg.contains("@ipop-tincan/5800")
                && msg.contains("uid 65534"),
            "{msg}"
        );
    }
}
