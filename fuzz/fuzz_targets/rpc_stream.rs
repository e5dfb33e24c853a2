//! The line framing of tincan's control socket (`proto::rpc_stream::LineReader`) on any byte
//! stream cut into any reads: it never panics, never hands out a line over its bound, one with
//! a newline, or an empty one, and the lines it hands out are those of the stream (less one
//! `\r` before each newline), in order, up to the first line over the bound, which it refuses
//! (also before that line's newline).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::rpc_stream::{LineError, LineReader};

const MAX: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut % 32) + 1;
    let mut reader = LineReader::new(MAX);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut refused = false;
    'feed: for part in stream.chunks(chunk) {
        reader.feed(part);
        while let Some(line) = reader.next_line() {
            match line {
                Ok(l) => {
                    assert!(!l.is_empty() && l.len() <= MAX && !l.contains(&b'\n'));
                    let _ = proto::rpc::parse(l);
                    got.push(l.to_vec());
                }
                Err(LineError::TooLong) => {
                    refused = true;
                    break 'feed;
                }
            }
        }
        assert!(reader.pending() <= MAX);
    }
    // The stream's lines by hand, up to the first one over the bound.
    let mut want = Vec::new();
    let mut segments: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
    let trailing = segments.pop().unwrap_or_default();
    let mut overlong = false;
    for s in segments {
        if s.len() > MAX {
            overlong = true;
            break;
        }
        let s = s.strip_suffix(b"\r").unwrap_or(s);
        if !s.is_empty() {
            want.push(s.to_vec());
        }
    }
    overlong = overlong || trailing.len() > MAX;
    assert_eq!(refused, overlong, "refusal");
    assert_eq!(got, want);
    if !refused {
        assert_eq!(reader.pending(), trailing.len());
    }
});
