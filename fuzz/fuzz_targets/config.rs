//! `Config::from_json_str` on any UTF-8 text: never panics, and an accepted config yields the
//! identities derived from it (uid, `gen_ip6`) without panicking. Host names are kept as
//! `HostPort`s (the parser resolves nothing), so every input is fed, names included; each
//! address's text reads back to the same `HostPort`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::config::{gen_ip6, Config, HostPort};

fn round_trips(h: &HostPort) {
    assert_eq!(h.to_string().parse::<HostPort>().as_ref(), Ok(h));
    assert_ne!(h.port(), 0);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((cfg, warnings)) = Config::from_json_str(text, "fuzz") else {
        return;
    };
    let _ = format!("{cfg:?} {warnings:?}");
    let _ = gen_ip6(&cfg.uid());
    for p in &cfg.peers {
        assert_ne!(p.ip4, cfg.ip4);
        assert_ne!(p.uid, cfg.uid());
        round_trips(&p.endpoint);
        let _ = gen_ip6(&p.uid);
    }
    cfg.stun.iter().for_each(round_trips);
    cfg.turn.iter().for_each(|t| round_trips(&t.server));
});
