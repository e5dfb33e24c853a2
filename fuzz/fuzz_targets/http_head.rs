//! The metrics endpoint's request head (`proto::http_head`), as any local process may send it.
//! Besides never panicking: where the head ends is inside the buffer and at an empty line; a
//! head over the limit is always `TooLarge`; and `GET /metrics` is recognised only from a
//! request line that says exactly that.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::http_head::{head_end, parse_head, Request, MAX_REQUEST_BYTES};

fuzz_target!(|data: &[u8]| {
    if let Some(end) = head_end(data) {
        assert!(end < data.len());
        let tail = &data[end..];
        assert!(tail.starts_with(b"\r\n\r\n") || tail.starts_with(b"\n\n"));
    }
    let request = parse_head(data);
    if data.len() > MAX_REQUEST_BYTES {
        assert_eq!(request, Request::TooLarge);
    }
    if request == Request::Metrics {
        let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            line.starts_with(b"GET /metrics"),
            "{:?}",
            String::from_utf8_lossy(line)
        );
        assert!(line.windows(7).any(|w| w == b"HTTP/1."));
    }
});
