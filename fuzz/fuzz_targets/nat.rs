//! The NAT layer of the link socket (`proto::nat::Nat`: STUN binding and the TURN client) on
//! any sequence of datagrams from the STUN servers, the TURN server and strangers, decoded
//! from the input as
//!
//!   `[op u8][dt u16 le][len u16 le][len bytes]`
//!
//! `op % 4`: 0 a datagram from a STUN server (`op & 4` picks which), 1 from the TURN server,
//! 2 from a stranger, 3 `poll` (and, with `op & 4`, relaying a datagram to a peer). With
//! `op & 8`, a datagram of 20 bytes or more is made to look like an answer to the newest
//! request sent to that address (magic cookie, length and transaction id copied in), so the
//! fuzzer reaches the attribute parsing and the TURN client's answers. The clock advances by
//! `dt` ms before the event.
//!
//! Checked besides "never panics": only a STUN server's datagram can set or change the node's
//! reflexive address (a stranger or the TURN server cannot); `poll` never asks to be called
//! again at or before the time it ran (the loop driving it cannot spin); what it sends goes
//! only to the configured servers; data relayed to a peer goes to the TURN server.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::nat::{Nat, TurnServerConfig};
use std::net::SocketAddr;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fuzz_target!(|data: &[u8]| {
    let stun = [sa("198.51.100.1:3478"), sa("198.51.100.2:3478")];
    let turn = sa("198.51.100.3:3478");
    let stranger = sa("203.0.113.9:3478");
    let mut nat = Nat::new(sa("10.0.0.1:5900"));
    nat.configure(
        stun.to_vec(),
        Some(TurnServerConfig {
            server: turn,
            user: "user".into(),
            pass: "pass".into(),
        }),
    );
    let mut now = 0u64;
    // The newest request sent to each address, for answers.
    let mut last_sent: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let poll = |nat: &mut Nat, now: u64, last_sent: &mut Vec<(SocketAddr, Vec<u8>)>| {
        let mut out = Vec::new();
        if let Some(next) = nat.poll(now, &mut out) {
            assert!(next > now, "poll at {now} asks to run again at {next}");
        }
        for (to, b) in out {
            assert!(stun.contains(&to) || to == turn, "sent to {to}");
            last_sent.retain(|(a, _)| *a != to);
            last_sent.push((to, b));
        }
    };
    poll(&mut nat, now, &mut last_sent);
    let mut rest = data;
    while rest.len() >= 5 {
        let op = rest[0];
        now += u16::from_le_bytes([rest[1], rest[2]]) as u64;
        let len = (u16::from_le_bytes([rest[3], rest[4]]) as usize).min(rest.len() - 5);
        let mut body = rest[5..5 + len].to_vec();
        rest = &rest[5 + len..];
        let from = match op % 4 {
            0 => stun[(op >> 2) as usize & 1],
            1 => turn,
            2 => stranger,
            _ => {
                poll(&mut nat, now, &mut last_sent);
                if op & 4 != 0 {
                    if let Some((to, _)) = nat.relay_to(sa("192.0.2.7:5900"), &body, now) {
                        assert_eq!(to, turn);
                    }
                }
                continue;
            }
        };
        if op & 8 != 0 && body.len() >= 20 {
            if let Some((_, req)) = last_sent.iter().find(|(a, _)| *a == from) {
                if req.len() >= 20 {
                    body[4..20].copy_from_slice(&req[4..20]);
                    let attrs = (body.len() - 20) as u16;
                    body[2..4].copy_from_slice(&attrs.to_be_bytes());
                    body[0] &= 0x3f;
                }
            }
        }
        let before = nat.srflx();
        let _ = nat.on_datagram(&body, from, now);
        if !stun.contains(&from) {
            assert_eq!(nat.srflx(), before, "{from} changed the reflexive address");
        }
        let _ = nat.mapping_behaviour();
    }
});
