//! `LinkMessage::parse` and the handshake views (`InitView`, `RespView`, `CookieReplyView`) on
//! any datagram: never panic, and what they accept re-emits to the same bytes (up to the flag
//! and reserved bits the parser ignores).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::wire::link::{
    emit_header, CookieReplyView, FragHeader, InitView, LinkMessage, MessageType, RespView,
    COOKIE_REPLY_LEN, DATA_HEADER_LEN, FLAG_REPLY_WANTED, FRAG_META_LEN, HELLO_LEN, INIT_LEN,
    MAC_LEN, RESP_LEN,
};

/// The input with the bits the parser does not read cleared: the rest of byte 1 and the two
/// reserved bytes of the preamble.
fn canonical_preamble(data: &[u8], flag_mask: u8) -> Vec<u8> {
    let mut v = data.to_vec();
    v[1] &= flag_mask;
    v[2] = 0;
    v[3] = 0;
    v
}

/// The handshake views: an accepted message has its exact length, and its header, body and
/// macs re-emit to the same bytes.
fn handshakes(data: &[u8]) {
    if let Ok(v) = InitView::parse(data) {
        assert_eq!(data.len(), INIT_LEN);
        let mut buf = data.to_vec();
        let noise = InitView::emit_header(&mut buf, v.sender_idx).expect("sized");
        assert_eq!(&noise[..], v.noise);
        assert_eq!(buf, canonical_preamble(data, 0));
        assert_eq!([v.mac1, v.mac2].concat(), &data[INIT_LEN - 2 * MAC_LEN..]);
    }
    if let Ok(v) = RespView::parse(data) {
        assert_eq!(data.len(), RESP_LEN);
        let mut buf = data.to_vec();
        let noise = RespView::emit_header(&mut buf, v.sender_idx, v.receiver_idx).expect("sized");
        assert_eq!(&noise[..], v.noise);
        assert_eq!(buf, canonical_preamble(data, 0));
        assert_eq!(v.mac1, &data[RESP_LEN - 2 * MAC_LEN..RESP_LEN - MAC_LEN]);
    }
    if let Ok(v) = CookieReplyView::parse(data) {
        assert_eq!(data.len(), COOKIE_REPLY_LEN);
        let mut buf = data.to_vec();
        let (nonce, sealed) = CookieReplyView::emit_header(&mut buf, v.receiver_idx).expect("sized");
        assert_eq!((&nonce[..], &sealed[..]), (v.nonce, v.sealed));
        assert_eq!(buf, canonical_preamble(data, 0));
    }
}

fuzz_target!(|data: &[u8]| {
    handshakes(data);
    let Ok(msg) = LinkMessage::parse(data) else {
        return;
    };
    match msg {
        LinkMessage::Hello(h) => {
            assert_eq!(data.len(), HELLO_LEN);
            let mut buf = [0u8; HELLO_LEN];
            assert_eq!(h.emit(&mut buf), Ok(HELLO_LEN));
            assert_eq!(&buf[..], &canonical_preamble(data, FLAG_REPLY_WANTED)[..]);
            assert_eq!(LinkMessage::parse(&buf), Ok(LinkMessage::Hello(h)));
        }
        LinkMessage::Data {
            receiver_idx,
            counter,
            frame,
        } => {
            assert_eq!(frame, &data[DATA_HEADER_LEN..]);
            check_header(data, MessageType::Data, receiver_idx, counter);
        }
        LinkMessage::Icc {
            receiver_idx,
            counter,
            payload,
        } => {
            assert_eq!(payload, &data[DATA_HEADER_LEN..]);
            check_header(data, MessageType::Icc, receiver_idx, counter);
        }
        LinkMessage::Keepalive {
            receiver_idx,
            counter,
        } => {
            assert_eq!(data.len(), DATA_HEADER_LEN);
            check_header(data, MessageType::Keepalive, receiver_idx, counter);
        }
        LinkMessage::WithMeta {
            msg_type,
            receiver_idx,
            counter,
            body,
        } => {
            assert_eq!(body, &data[DATA_HEADER_LEN..]);
            check_header(data, msg_type, receiver_idx, counter);
            // A fragment header that reads re-emits to the same bytes.
            if let Ok((h, _)) = FragHeader::parse(body) {
                let mut meta = [0u8; FRAG_META_LEN];
                h.emit(&mut meta).expect("sized");
                assert_eq!(&meta[..], &body[..FRAG_META_LEN]);
                if let Some(r) = h.piece() {
                    assert!(r.start < r.end && r.end <= h.total as usize);
                }
            }
        }
    }
});

fn check_header(data: &[u8], msg_type: MessageType, receiver_idx: u32, counter: u64) {
    let mut buf = data.to_vec();
    emit_header(&mut buf, msg_type, receiver_idx, counter).expect("valid header");
    assert_eq!(buf, canonical_preamble(data, 0));
}
