//! `Config::from_json_str` on any UTF-8 text: never panics, and an accepted config yields the
//! identities derived from it (uid, `gen_ip6`) without panicking.
//!
//! A peer endpoint written as a host name is resolved by the parser (the one piece of I/O in
//! it). Inputs that contain such an endpoint are skipped, so the fuzzer never queries DNS:
//! that would be slow, flaky and send fuzz-generated names to the network's resolver.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::config::{gen_ip6, Config, UID_SIZE};
use serde_json::Value;
use std::net::SocketAddr;

/// True if some `peers[i].endpoint` is a string that is not an IP literal with a port, i.e.
/// one the parser would look up. Any layout the parser would refuse earlier does not matter.
fn would_resolve(v: &Value) -> bool {
    let Some(peers) = v.get("peers").and_then(Value::as_array) else {
        return false;
    };
    peers.iter().any(|p| {
        p.get("endpoint")
            .and_then(Value::as_str)
            .is_some_and(|e| e.parse::<SocketAddr>().is_err())
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The parser itself reads JSON with serde_json; so does this guard. Text serde_json
    // refuses is refused by the parser before any lookup.
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        if would_resolve(&v) {
            return;
        }
    }
    let Ok((cfg, warnings)) = Config::from_json_str(text, "fuzz") else {
        return;
    };
    let _ = format!("{cfg:?} {warnings:?}");
    let uid = cfg.uid();
    assert_eq!(uid.len(), UID_SIZE);
    let _ = gen_ip6(&uid);
    for p in &cfg.peers {
        assert_eq!(p.uid.len(), UID_SIZE);
        assert_ne!(p.ip4, cfg.ip4);
        assert_ne!(p.endpoint.port(), 0);
        let _ = gen_ip6(&p.uid);
    }
});
