//! Accepting handshakes without letting a flood lock real peers out. An init is checked in
//! this order, cheapest first: its length (a version-2 init is told apart), mac1 (one keyed
//! hash: who does not know our public key stops here), then, under load, mac2 (a cookie that
//! proves the sender receives at its source address; without one, a cookie reply instead of
//! any Diffie-Hellman work), the sender's own rate, the global budget of Diffie-Hellman work,
//! and at last (decrypted) the pinned key and the uid bound to it. See [`crate::secure::cookie`].
//!
//! Load: more than [`UNDER_LOAD_RATE`] inits per second with a valid mac1 (or the global
//! budget spent) puts the node under load for [`UNDER_LOAD_FOR`] after the last such init.
//! Under load only inits with a valid mac2 reach the budget, so a flood from spoofed addresses
//! (which never receive their cookies) cannot spend it.

use super::path::Route;
use super::LinkTable;
use crate::id::Millis;
use crate::ratelimit::RateLimiter;
use crate::secure::cookie::{CookieChecker, Mac2};
use crate::secure::{self, SecureError, StaticKey, RESP_LEN};
use crate::wire::link::{InitView, RespView, COOKIE_REPLY_LEN, V2_INIT_LEN, V2_RESP_LEN};
use std::net::{IpAddr, SocketAddr};

/// Handshakes per second from one source address, and its burst.
const PER_SOURCE_RATE: (f64, f64) = (10.0, 20.0);
/// Handshakes per second from all sources together.
const GLOBAL_RATE: f64 = 300.0;
/// Inits per second (with a valid mac1, from all sources) above which the node is under load.
pub const UNDER_LOAD_RATE: u32 = 100;
/// How long the node stays under load after the last init over the rate.
pub const UNDER_LOAD_FOR: Millis = 1_000;
/// The key of the rate limiters that count all sources together.
const ALL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// What stands between an init and Diffie-Hellman work.
pub(super) struct HandshakeGate {
    per_source: RateLimiter,
    budget: RateLimiter,
    /// Inits with a valid mac1 arriving, all sources together; None: always under load.
    load: Option<RateLimiter>,
    under_load_until: Millis,
    /// Our mac1 key and cookie secret; None until a static key is configured.
    checker: Option<CookieChecker>,
}

impl HandshakeGate {
    pub(super) fn new() -> HandshakeGate {
        HandshakeGate {
            per_source: RateLimiter::new(PER_SOURCE_RATE.0, PER_SOURCE_RATE.1, 4096),
            budget: RateLimiter::new(GLOBAL_RATE, GLOBAL_RATE, 1),
            load: Some(load_meter(UNDER_LOAD_RATE)),
            under_load_until: 0,
            checker: None,
        }
    }

    /// This node's static key (mac1 is keyed by its public half).
    pub(super) fn set_key(&mut self, key: Option<&StaticKey>) {
        self.checker = key.map(|k| CookieChecker::new(k.public()));
    }

    fn under_load(&self, now: Millis) -> bool {
        self.load.is_none() || now < self.under_load_until
    }
}

fn load_meter(per_sec: u32) -> RateLimiter {
    RateLimiter::new(f64::from(per_sec), f64::from(per_sec), 1)
}

impl LinkTable {
    /// Inits per second (valid mac1) above which this node asks for cookies
    /// ([`UNDER_LOAD_RATE`] unless set); 0: always.
    pub fn set_handshake_load(&mut self, per_sec: u32) {
        self.gate.load = (per_sec > 0).then(|| load_meter(per_sec));
    }

    /// Whether this node is under load now: inits without a valid mac2 get a cookie reply.
    pub fn under_load(&self, now: Millis) -> bool {
        self.gate.under_load(now)
    }

    /// Refreshes the under-load gauge of the counters.
    pub(super) fn load_gauge(&mut self, now: Millis) {
        self.counters.handshake_under_load = u64::from(self.gate.under_load(now));
    }

    fn enter_load(&mut self, now: Millis) {
        if !self.gate.under_load(now) {
            self.counters.handshake_load_periods += 1;
            self.log_limited("under_load", now, || {
                "handshakes arrive faster than this node serves them: under load, inits must \
                 now carry a cookie for their address (cookie replies sent)"
                    .to_string()
            });
        }
        self.gate.under_load_until = now + UNDER_LOAD_FOR;
        self.load_gauge(now);
    }

    /// A handshake message of version 2 (no macs): counted, and said once in a while.
    fn old_version(&mut self, now: Millis, from: SocketAddr) {
        self.counters.drop_old_version += 1;
        self.log_limited("old_version", now, || {
            format!("handshake from {from} in wire format version 2 (no mac1/mac2): refused; that node runs an older ipop-tincan")
        });
    }

    /// Whether a response (of any length) may go on to its pending handshake: right length,
    /// valid mac1 (keyed by our public key). Counted when not.
    pub(super) fn resp_passes(&mut self, now: Millis, from: SocketAddr, msg: &[u8]) -> bool {
        if RespView::parse(msg).is_err() {
            match msg.len() {
                V2_RESP_LEN => self.old_version(now, from),
                _ => self.counters.drop_bad_link_message += 1,
            }
            return false;
        }
        if !self.gate.checker.as_ref().is_some_and(|c| c.mac1_ok(msg)) {
            self.counters.drop_bad_mac1 += 1;
            return false;
        }
        true
    }

    /// Whether an init may cost Diffie-Hellman work (see the module's first lines). A cookie
    /// reply is queued when load asks for one.
    fn init_passes(&mut self, now: Millis, from: SocketAddr, route: Route, msg: &[u8]) -> bool {
        let Ok(init) = InitView::parse(msg) else {
            match msg.len() {
                V2_INIT_LEN => self.old_version(now, from),
                _ => self.counters.drop_bad_link_message += 1,
            }
            return false;
        };
        let Some(checker) = self.gate.checker.as_ref() else {
            self.counters.drop_not_configured += 1;
            return false;
        };
        if !checker.mac1_ok(msg) {
            self.counters.drop_bad_mac1 += 1;
            return false;
        }
        if self.gate.load.as_mut().is_some_and(|l| !l.allow(ALL, now)) {
            self.enter_load(now);
        }
        if self.gate.under_load(now) {
            let checker = self.gate.checker.as_mut().expect("checked");
            match checker.mac2(msg, from, now) {
                Mac2::Valid => {}
                m => {
                    if m == Mac2::Invalid {
                        self.counters.drop_bad_mac2 += 1;
                    }
                    let mut reply = [0u8; COOKIE_REPLY_LEN];
                    if let Ok(n) = checker.reply(msg, init.sender_idx, from, now, &mut reply) {
                        if self.queue(from, route, &reply[..n], now) {
                            self.counters.cookie_replies_sent += 1;
                        }
                    }
                    return false;
                }
            }
        }
        if !self.gate.per_source.allow(from.ip(), now) {
            self.counters.drop_handshake_rate += 1;
            return false;
        }
        if !self.gate.budget.allow(ALL, now) {
            self.counters.drop_handshake_rate += 1;
            self.enter_load(now);
            return false;
        }
        true
    }

    /// A handshake init: through [`init_passes`](Self::init_passes), then decrypted, then the
    /// pinned key and the uid bound to that key.
    pub(super) fn on_init(&mut self, now: Millis, from: SocketAddr, route: Route, msg: &[u8]) {
        if !self.init_passes(now, from, route, msg) {
            return;
        }
        let Some((local_uid, Some(key))) = self.local.as_ref().map(|l| (l.uid, l.key.as_ref()))
        else {
            self.counters.drop_not_configured += 1;
            return;
        };
        let init = match secure::read_init(key, msg) {
            Ok(i) => i,
            Err(e) => return self.count_secure_error(e),
        };
        let Some(&id) = self.by_key.get(&init.peer_static) else {
            self.counters.drop_unknown_key += 1;
            let fpr = init.peer_static;
            self.log_limited("unknown_key", now, || {
                format!("handshake from {from} with key {fpr}, which is not pinned for any peer: refused")
            });
            return;
        };
        let expected = self.links[id]
            .as_ref()
            .expect("by_key points at live slots")
            .uid();
        if init.peer_uid != expected || init.peer_uid == local_uid {
            self.counters.drop_unknown_key += 1;
            let (claimed, fpr) = (init.peer_uid, init.peer_static);
            self.log_limited("uid_mismatch", now, || {
                format!("handshake from {from}: key {fpr} is pinned for another uid than the {claimed} it claims: refused")
            });
            return;
        }
        let idx = self.new_index(id);
        let link = self.links[id].as_mut().expect("checked");
        let Some(sec) = link.secure.as_mut() else {
            self.counters.drop_unknown_key += 1;
            return;
        };
        let mut resp = [0u8; RESP_LEN];
        let dropped = sec.unconfirmed_dropped;
        let (theirs, ours, uid) = (init.offer, sec.offer(), init.peer_uid);
        let accepted = sec.accept(init, idx, now, &mut resp);
        self.counters.handshakes_unconfirmed += sec.unconfirmed_dropped - dropped;
        // Answered, not established: the session waits for the initiator to confirm it (see
        // `secure`), so an init replayed from elsewhere neither moves the endpoint nor
        // displaces the session in use.
        match accepted {
            Ok(n) => {
                link.resp_sent_at = Some(now);
                self.queue(from, route, &resp[..n], now);
            }
            Err(SecureError::NoCommonCipher) => {
                self.count_secure_error(SecureError::NoCommonCipher);
                self.log_limited("no_common_cipher", now, || {
                    format!("handshake from {uid} at {from}: it offers {theirs}, this node offers {ours} (\"cipher\"): no cipher in common, refused")
                });
            }
            Err(e) => self.count_secure_error(e),
        }
    }

    /// A cookie reply to one of our inits: the link keeps the cookie and sends its next init
    /// at once, with mac2.
    pub(super) fn on_cookie_reply(&mut self, now: Millis, msg: &[u8]) {
        let Some(id) = secure::cookie_receiver_idx(msg).and_then(|i| self.link_for_index(i)) else {
            self.counters.drop_unknown_index += 1;
            return;
        };
        let Some(sec) = self.links[id].as_mut().and_then(|l| l.secure.as_mut()) else {
            self.counters.drop_unknown_index += 1;
            return;
        };
        match sec.on_cookie_reply(msg, now) {
            Ok(()) => self.counters.cookie_replies_received += 1,
            Err(e) => self.count_secure_error(e),
        }
    }
}
