//! The XMPP stanza bound (`proto::stanza_meter::StanzaMeter`) on any byte stream from the
//! server. Besides never panicking, the meter must not depend on how the stream is cut into
//! reads: the input is fed once whole and once in the chunks its first bytes choose, and both
//! must give the same verdict; and a stream is never refused before it has sent more bytes
//! than the limit (no stanza can be over the limit before that).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::stanza_meter::StanzaMeter;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let limit = 64 + (cuts as usize) * 4;
    let whole = StanzaMeter::new(limit).feed(rest).is_ok();

    let mut chunked = StanzaMeter::new(limit);
    let mut ok = true;
    let mut at = 0;
    let mut step = 1 + (cuts as usize % 7);
    while at < rest.len() && ok {
        let end = (at + step).min(rest.len());
        ok = chunked.feed(&rest[at..end]).is_ok();
        at = end;
        step = 1 + (step * 5 + 3) % 13;
    }
    assert_eq!(whole, ok, "the verdict depends on how the stream is cut");
    if rest.len() <= limit {
        assert!(
            whole,
            "refused {} bytes under a limit of {limit}",
            rest.len()
        );
    }
});
