//! The Ethernet header views and the ARP parser on any frame: never panic, and an ARP frame
//! that parses re-emits (`to_frame`) to a frame that parses back to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::wire::arp::{ArpPacket, ArpRepr, PACKET_LEN};
use proto::wire::ethernet::{ethertype, peek_header, EthernetFrame, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let peeked = peek_header(data);
    match EthernetFrame::new_checked(data) {
        Ok(frame) => {
            let (dst, src, et) = peeked.expect("peek_header agrees with new_checked");
            assert_eq!(
                (frame.dst(), frame.src(), frame.ethertype()),
                (dst, src, et)
            );
            assert_eq!(frame.payload(), &data[HEADER_LEN..]);
            let _ = (dst.is_group(), dst.is_broadcast(), src.is_zero());
            // The MAC text form round-trips.
            assert_eq!(src.to_string().parse(), Ok(src));
            // The ARP view on its own, whatever the ethertype says.
            if let Ok(p) = ArpPacket::new_checked(frame.payload()) {
                let _ = (p.oper(), p.sha(), p.spa(), p.tha(), p.tpa());
                let _ = ArpRepr::parse(&p);
            }
        }
        Err(_) => {
            assert!(data.len() < HEADER_LEN);
            assert!(peeked.is_err());
        }
    }

    let Ok((dst, src, repr)) = ArpRepr::parse_frame(data) else {
        return;
    };
    assert!(data.len() >= HEADER_LEN + PACKET_LEN);
    let _ = repr.is_gratuitous();
    let out = repr.to_frame(dst, src);
    assert!(out.len() >= 60);
    assert_eq!(
        peek_header(&out).expect("emitted header"),
        (dst, src, ethertype::ARP)
    );
    assert_eq!(ArpRepr::parse_frame(&out), Ok((dst, src, repr)));
    // The 42 bytes that make up the header and ARP packet are exactly the input's.
    assert_eq!(
        &out[..HEADER_LEN + PACKET_LEN],
        &data[..HEADER_LEN + PACKET_LEN]
    );
});
