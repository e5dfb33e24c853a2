//! The link core, sans-IO: every link of a node to its peers, as one state machine driven the
//! way quinn-proto and snownet are. The caller owns the socket, the clock and the buffers:
//!
//! - [`LinkTable::handle_datagram`]`(now, from, datagram, out)` for every datagram on the link
//!   socket: returns the frame or ICC message it carried (decrypted into `out`, put back
//!   together from link fragments if it came in pieces), or nothing;
//! - [`LinkTable::encapsulate`]`(now, link, plaintext, csum, out)` for every frame to send:
//!   the datagram is written into `out` (no allocation on this path), or the equal-size
//!   datagrams of its fragments when it is too large for one (see [`frag`]);
//! - [`LinkTable::handle_timeout`]`(now)` when [`LinkTable::poll_timeout`] says so;
//! - then drain [`LinkTable::poll_transmit`] (handshakes, hellos, keepalives, ICC, STUN/TURN)
//!   and [`LinkTable::poll_event`] (links up and down).
//!
//! The table holds the slots, session index allocation, the uid and key maps, the handshake
//! budget and the NAT client; [`peer::Link`] holds one peer's liveness, sessions, candidates
//! and path.

pub mod frag;
mod handshake;
pub mod liveness;
pub mod path;
pub mod peer;
mod recv;
mod send;
#[cfg(test)]
mod tests;

use crate::id::{Candidate, Fingerprint, Millis, Uid};
use crate::nat::{Nat, TurnServerConfig};
use crate::offload::Csum;
use crate::secure::{CipherOffer, StaticKey};
use crate::wire::link::CSUM_META_LEN;
use frag::{FragBudget, FragCounters};
use log::{info, warn};
use peer::Link;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

pub use handshake::{UNDER_LOAD_FOR, UNDER_LOAD_RATE};
pub use path::{PathKind, Route};

/// A link's slot in the table; stable for the link's life, reused after a trim.
pub type LinkId = usize;

pub const MAX_LINKS: usize = 4_096;
/// Candidates kept from one peer's offer (an offer with thousands would turn our handshakes
/// into a reflection flood).
pub const MAX_CANDIDATES: usize = 8;
/// Space [`LinkTable::encapsulate`] needs in front of the frame in its `plaintext` buffer: the
/// largest inner header of a whole frame (inner type and csum meta), so no frame is copied
/// before sealing unless it has to be cut into fragments.
pub const FRAME_HEADROOM: usize = 1 + CSUM_META_LEN;
/// The underlay MTU assumed until configured: Ethernet's.
pub const DEFAULT_LINK_MTU: u16 = 1500;
/// Accepted underlay MTUs: IPv4's minimum to jumbo frames.
pub const LINK_MTU_RANGE: std::ops::RangeInclusive<u16> = 576..=9000;
/// IPv4 and UDP headers in front of every link datagram on the underlay.
pub const UNDERLAY_OVERHEAD: usize = 28;
/// IPv6 and UDP headers, for a peer reached over IPv6.
pub const UNDERLAY_OVERHEAD_V6: usize = 48;
/// Bytes a TURN Send indication adds around a datagram relayed through our TURN server
/// (header, XOR-PEER-ADDRESS for IPv6, DATA with padding), rounded up.
pub const RELAY_OVERHEAD: usize = 64;
/// A kind of bad input is logged at most this often.
const LOG_EVERY: Millis = 10_000;

/// A datagram to send on the link socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// A change the caller must act on (tell the controller, withdraw MACs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    Up {
        link: LinkId,
        uid: Uid,
        endpoint: SocketAddr,
    },
    Down {
        link: LinkId,
        uid: Uid,
        endpoint: SocketAddr,
    },
}

/// What a datagram carried for the caller; the payload is `out[range]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An Ethernet frame from the peer of `link`.
    Frame {
        link: LinkId,
        range: std::ops::Range<usize>,
        /// Whether the receiving kernel still has to finish the frame's TCP/UDP checksum.
        csum: Csum,
    },
    /// An ICC message (JSON) from the controller behind `link`.
    Icc {
        link: LinkId,
        range: std::ops::Range<usize>,
    },
    /// Nothing for the caller: a handshake, keepalive, STUN/TURN message, or a counted drop.
    Nothing,
}

/// Where [`LinkTable::encapsulate`] put the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encapsulated {
    /// Send `out[..len]` to `to`: datagrams of `stride` bytes each, the last one possibly
    /// shorter (one datagram: `stride == len`), e.g. with one UDP GSO `sendmsg`.
    Send {
        to: SocketAddr,
        len: usize,
        stride: usize,
    },
    /// Wrapped for our TURN relay and queued: drain [`LinkTable::poll_transmit`].
    Queued,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No such link.
    NoLink,
    /// The link has no session with its peer yet (or any more).
    NotUp,
    /// Too large for a link datagram, or the buffer is too small.
    TooLarge,
    /// The path goes through our TURN relay, which has no allocation or no permission for the
    /// peer yet: dropped (counted on the link as a send error).
    NoRelay,
}

fn check_link_mtu(mtu: u16) -> Result<(), LinkError> {
    if LINK_MTU_RANGE.contains(&mtu) {
        Ok(())
    } else {
        Err(LinkError(format!(
            "\"link_mtu\": expected {}-{}, got {mtu}",
            LINK_MTU_RANGE.start(),
            LINK_MTU_RANGE.end()
        )))
    }
}

/// Why a control operation on the table was refused; the message names the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError(pub String);

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the link core counts: every dropped datagram by reason, and the handshakes.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CoreCounters {
    pub link_rx_datagrams: u64,
    pub drop_bad_link_message: u64,
    pub drop_unknown_index: u64,
    pub drop_unknown_peer: u64,
    pub drop_wrong_receiver: u64,
    pub drop_not_configured: u64,
    pub drop_replay: u64,
    pub drop_auth: u64,
    /// Handshakes refused because the peers offer no cipher in common (`"cipher"`).
    pub drop_no_common_cipher: u64,
    pub drop_sec_mismatch: u64,
    pub drop_unknown_key: u64,
    pub drop_handshake_rate: u64,
    /// Inits and responses whose mac1 is not keyed by this node's public key: dropped before
    /// any Diffie-Hellman work.
    pub drop_bad_mac1: u64,
    /// Inits under load whose mac2 is not made with the cookie of their source address (each
    /// answered with a cookie reply, as are those without a mac2).
    pub drop_bad_mac2: u64,
    /// Handshakes of wire format version 2 (without mac1 and mac2).
    pub drop_old_version: u64,
    /// Inits answered with a cookie reply instead of a response (under load).
    pub cookie_replies_sent: u64,
    /// Cookie replies to our inits that opened: the peer was under load.
    pub cookie_replies_received: u64,
    /// 1 while this node is under load (inits need a cookie), else 0.
    pub handshake_under_load: u64,
    /// Times this node went under load.
    pub handshake_load_periods: u64,
    pub handshakes_sent: u64,
    pub handshakes_completed: u64,
    /// Answered inits whose session the initiator never confirmed (replaced by a newer init,
    /// or expired): a lost confirmation, or a replayed init.
    pub handshakes_unconfirmed: u64,
    /// Links the peer closed (it was stopping): down at once.
    pub links_closed_by_peer: u64,
    pub icc_tx: u64,
    pub icc_rx: u64,
    /// Link fragments of every link, trimmed ones included.
    #[serde(flatten)]
    pub frag: FragCounters,
}

/// This node, as the controller configured it.
pub struct LocalConfig {
    pub uid: Uid,
    /// Links are encrypted (Noise) unless `"sec": false`.
    pub sec: bool,
    /// The static key; required with `sec`.
    pub key: Option<StaticKey>,
    /// The ciphers offered in handshakes (`"cipher"`).
    pub cipher: CipherOffer,
    /// Session lifetime before a new handshake.
    pub rekey_after: Millis,
}

/// What [`LinkTable::configure`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconfigured {
    pub uid_changed: bool,
    /// `sec`, the key or the cipher offer changed: every session is void and links start
    /// over.
    pub security_changed: bool,
}

pub struct LinkTable {
    local: Option<LocalConfig>,
    boot_id: u64,
    /// Wall clock (ms since the Unix epoch) at `now` = 0: inits carry the wall clock.
    wall_at_zero: u64,
    rng: u64,
    links: Vec<Option<Link>>,
    by_uid: HashMap<Uid, LinkId>,
    by_key: HashMap<Fingerprint, LinkId>,
    /// The indices of the link a slot held before its last trim: its peer may still send to
    /// them, so the slot's next link takes others.
    retired: HashMap<LinkId, Vec<u32>>,
    gate: handshake::HandshakeGate,
    last_init_time: u64,
    nat: Nat,
    transmits: VecDeque<Transmit>,
    events: VecDeque<LinkEvent>,
    counters: CoreCounters,
    last_log: HashMap<&'static str, Millis>,
    scratch: Vec<u8>,
    /// A fragment's plaintext while it is sealed.
    frag_scratch: Vec<u8>,
    /// The underlay MTU of links without one of their own.
    link_mtu: u16,
    /// Bytes of messages in progress over all links.
    frag_budget: FragBudget,
}

impl LinkTable {
    /// `boot_id` tells this run apart from earlier ones (in hellos and index generations);
    /// `seed` makes session indices unpredictable; `wall_at_zero` is the wall clock at
    /// `now` = 0.
    pub fn new(boot_id: u64, seed: u64, wall_at_zero: u64) -> LinkTable {
        LinkTable {
            local: None,
            boot_id,
            wall_at_zero,
            rng: seed,
            links: Vec::new(),
            by_uid: HashMap::new(),
            by_key: HashMap::new(),
            retired: HashMap::new(),
            gate: handshake::HandshakeGate::new(),
            last_init_time: 0,
            nat: Nat::new(SocketAddr::from(([0, 0, 0, 0], 0))),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: CoreCounters::default(),
            last_log: HashMap::new(),
            scratch: Vec::with_capacity(2048),
            frag_scratch: Vec::with_capacity(2048),
            link_mtu: DEFAULT_LINK_MTU,
            frag_budget: FragBudget::default(),
        }
    }

    /// The largest IP packet on the underlay (`link_mtu`): a link datagram is at most this
    /// less [`UNDERLAY_OVERHEAD`] (or [`UNDERLAY_OVERHEAD_V6`] for a peer reached over IPv6);
    /// larger inner messages go in fragments.
    pub fn set_link_mtu(&mut self, mtu: u16) -> Result<(), LinkError> {
        check_link_mtu(mtu)?;
        self.link_mtu = mtu;
        Ok(())
    }

    pub fn link_mtu(&self) -> u16 {
        self.link_mtu
    }

    /// An underlay MTU for one link (a path known to be smaller), or None for the table's.
    pub fn set_link_mtu_of(&mut self, id: LinkId, mtu: Option<u16>) -> Result<(), LinkError> {
        if let Some(m) = mtu {
            check_link_mtu(m)?;
        }
        let Some(Some(link)) = self.links.get_mut(id) else {
            return Err(LinkError(format!("no link {id}")));
        };
        link.link_mtu = mtu;
        Ok(())
    }

    /// Bytes held by messages in progress over all links.
    pub fn frag_bytes(&self) -> usize {
        self.frag_budget.used()
    }

    /// Runs `f` on the reassembly state of link `id`, adding what it counted to the totals.
    fn with_frag<R>(
        &mut self,
        id: LinkId,
        f: impl FnOnce(&mut frag::Reassembly) -> R,
    ) -> Option<R> {
        let link = self.links.get_mut(id)?.as_mut()?;
        let before = link.frag.counters;
        let r = f(&mut link.frag);
        self.counters.frag.add_since(&before, &link.frag.counters);
        Some(r)
    }

    /// Drops messages in progress past their age limit on every link.
    fn expire_frags(&mut self, now: Millis) {
        for id in 0..self.links.len() {
            self.with_frag(id, |r| r.expire(now));
        }
    }

    pub fn boot_id(&self) -> u64 {
        self.boot_id
    }

    pub fn local(&self) -> Option<&LocalConfig> {
        self.local.as_ref()
    }

    pub fn sec(&self) -> bool {
        self.local.as_ref().is_none_or(|l| l.sec)
    }

    /// With `sec`, the ciphers a link's handshakes offer; None for plaintext links.
    fn cipher_offer(&self) -> Option<CipherOffer> {
        self.sec().then(|| {
            self.local
                .as_ref()
                .map_or_else(CipherOffer::default, |l| l.cipher)
        })
    }

    pub fn counters(&self) -> &CoreCounters {
        &self.counters
    }

    pub fn nat(&self) -> &Nat {
        &self.nat
    }

    /// Every live link with its id.
    pub fn links(&self) -> impl Iterator<Item = (LinkId, &Link)> {
        self.links
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|l| (i, l)))
    }

    /// One more than the largest link id in use: every live link's id is below it.
    pub fn slots(&self) -> usize {
        self.links.len()
    }

    pub fn link(&self, id: LinkId) -> Option<&Link> {
        self.links.get(id).and_then(Option::as_ref)
    }

    pub fn link_of(&self, uid: &Uid) -> Option<LinkId> {
        self.by_uid.get(uid).copied()
    }

    /// Sets (or changes) this node's identity and security. A uid change is refused while
    /// links exist; a change of `sec` or key voids every session, and every up link goes down
    /// (a [`LinkEvent::Down`] each) until the peer answers again.
    pub fn configure(&mut self, cfg: LocalConfig) -> Result<Reconfigured, LinkError> {
        if cfg.sec && cfg.key.is_none() {
            return Err(LinkError(
                "\"key_file\": required while \"sec\" is true".into(),
            ));
        }
        let old = self.local.as_ref();
        let uid_changed = old.map(|l| l.uid) != Some(cfg.uid);
        if uid_changed && old.is_some() && self.links.iter().any(Option::is_some) {
            return Err(LinkError(
                "\"uid\": differs from the uid in use; trim the links or restart tincan first"
                    .into(),
            ));
        }
        let key_of = |l: Option<&LocalConfig>| l.and_then(|l| l.key.as_ref()).map(|k| *k.public());
        let security_changed = old.map(|l| l.sec) != Some(cfg.sec)
            || key_of(old) != key_of(Some(&cfg))
            || (cfg.sec && old.map(|l| l.cipher) != Some(cfg.cipher));
        if security_changed {
            if cfg.sec {
                info!(
                    "links are encrypted (Noise IK; data: {}); fingerprint {}",
                    cfg.cipher,
                    cfg.key
                        .as_ref()
                        .map(StaticKey::fingerprint)
                        .expect("checked")
                );
            } else {
                warn!("\"sec\": false: links are PLAINTEXT, unauthenticated and readable on the underlay; use only on a trusted network");
            }
            // Every link starts over: down until a handshake (or hello) with the peer.
            let offer = cfg.sec.then_some(cfg.cipher);
            for (id, link) in self.links.iter_mut().enumerate() {
                let Some(link) = link else { continue };
                link.secure = Link::secure_for(offer, link.fpr);
                link.frag.clear();
                if cfg.sec && link.fpr.is_none() {
                    warn!(
                        "link to {}: no pinned key (\"fpr\"), so no link while \"sec\" is true; \
                         create it again with the peer's fingerprint",
                        link.uid()
                    );
                }
                if link.live.restart().is_some() {
                    self.events.push_back(LinkEvent::Down {
                        link: id,
                        uid: link.uid(),
                        endpoint: link.endpoint(),
                    });
                }
            }
        }
        if uid_changed {
            info!("local uid {}", cfg.uid);
        }
        self.gate.set_key(cfg.key.as_ref().filter(|_| cfg.sec));
        self.local = Some(cfg);
        Ok(Reconfigured {
            uid_changed,
            security_changed,
        })
    }

    /// STUN servers and the TURN server, spoken to from the link socket.
    pub fn set_nat(&mut self, stun: Vec<SocketAddr>, turn: Option<TurnServerConfig>) {
        self.nat.configure(stun, turn);
    }

    /// This node's candidates: `host_ips` (the caller's interface addresses, already
    /// filtered) on `port`, then the STUN-reflexive address and the TURN relay.
    pub fn local_candidates(&self, host_ips: &[IpAddr], port: u16) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = host_ips
            .iter()
            .filter(|ip| !ip.is_loopback())
            .map(|ip| Candidate::Host(SocketAddr::new(*ip, port)))
            .collect();
        out.extend(self.nat.srflx().map(Candidate::Srflx));
        out.extend(self.nat.relayed().map(Candidate::Relay));
        out
    }

    /// Creates the link to `uid`, or updates it (endpoint while down, candidates, pinned key):
    /// idempotent. Returns its id; a new link starts connecting at once.
    pub fn create_link(
        &mut self,
        now: Millis,
        uid: Uid,
        endpoint: Option<SocketAddr>,
        candidates: Vec<Candidate>,
        fpr: Option<Fingerprint>,
    ) -> Result<LinkId, LinkError> {
        let mut candidates: Vec<Candidate> =
            candidates.into_iter().filter(|c| c.is_usable()).collect();
        candidates.dedup();
        candidates.truncate(MAX_CANDIDATES);
        let endpoint = match endpoint.or_else(|| candidates.first().map(|c| c.addr())) {
            Some(e) => e,
            None => {
                return Err(LinkError(
                    "\"endpoint\" or \"candidates\": one is required".into(),
                ))
            }
        };
        if self.local.as_ref().is_some_and(|l| l.uid == uid) {
            return Err(LinkError("\"uid\": that is this node's own uid".into()));
        }
        let sec = self.cipher_offer();
        if sec.is_some() && fpr.is_none() {
            return Err(LinkError(
                "\"fpr\": required while links are encrypted (\"sec\" is true)".into(),
            ));
        }
        if let Some(k) = fpr {
            if self
                .by_key
                .get(&k)
                .is_some_and(|&s| Some(s) != self.by_uid.get(&uid).copied())
            {
                return Err(LinkError(
                    "\"fpr\": that key is already pinned for another link".into(),
                ));
            }
        }
        if let Some(&id) = self.by_uid.get(&uid) {
            let link = self.links[id]
                .as_mut()
                .expect("by_uid points at live slots");
            if link.endpoint() != endpoint && !link.is_up() {
                link.live.endpoint = endpoint;
            }
            if !candidates.is_empty() {
                link.candidates = candidates;
            }
            if link.fpr != fpr {
                if link.is_up() && link.fpr.is_some() {
                    return Err(LinkError(
                        "\"fpr\": the link is up with another key; trim it first".into(),
                    ));
                }
                // A new pinned key: sessions with the old one are void.
                if let Some(old) = link.fpr {
                    self.by_key.remove(&old);
                }
                link.fpr = fpr;
                link.secure = Link::secure_for(sec, fpr);
                if let Some(k) = fpr {
                    self.by_key.insert(k, id);
                }
            }
            return Ok(id);
        }
        let id = match self.links.iter().position(Option::is_none) {
            Some(s) => s,
            None if self.links.len() < MAX_LINKS => {
                self.links.push(None);
                self.links.len() - 1
            }
            None => return Err(LinkError(format!("too many links (max {MAX_LINKS})"))),
        };
        let local_idx = self.new_index(id);
        let mut link = Link::new(uid, endpoint, local_idx, fpr, sec, candidates);
        link.created = now;
        link.frag = frag::Reassembly::new(self.frag_budget.clone());
        link.next_frag_id = self.next_random() as u32;
        self.links[id] = Some(link);
        self.by_uid.insert(uid, id);
        if let Some(k) = fpr {
            self.by_key.insert(k, id);
        }
        info!("link to {uid} at {endpoint} created");
        self.connect(id, now);
        Ok(id)
    }

    /// Removes the link to `uid`; returns its id, for the caller to withdraw its MACs.
    pub fn trim_link(&mut self, uid: &Uid) -> Result<LinkId, LinkError> {
        let Some(id) = self.by_uid.remove(uid) else {
            return Err(LinkError(format!("\"uid\": no link to {uid}")));
        };
        if let Some(link) = self.links[id].take() {
            if let Some(k) = link.fpr {
                self.by_key.remove(&k);
            }
            let mut old = vec![link.live.local_idx];
            old.extend(link.secure.iter().flat_map(|s| s.indices()));
            self.retired.insert(id, old);
        }
        info!("link to {uid} trimmed");
        Ok(id)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called at the latest.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let rekey_after = self.local.as_ref().map_or(120_000, |l| l.rekey_after);
        let links = self
            .links
            .iter()
            .flatten()
            .map(|l| l.next_due(rekey_after))
            .min();
        match (links, self.nat.next_poll()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A fresh session index for slot `id`: the low 16 bits are the slot, the rest random, and
    /// never one the slot already uses (decryption would find the older session first) or its
    /// trimmed link used (that link's peer may still send to it).
    fn new_index(&mut self, id: LinkId) -> u32 {
        loop {
            let idx = ((self.next_random() as u32) & 0xffff_0000) | id as u32;
            let taken = self
                .links
                .get(id)
                .and_then(Option::as_ref)
                .is_some_and(|l| {
                    l.live.local_idx == idx || l.secure.as_ref().is_some_and(|s| s.owns_index(idx))
                })
                || self.retired.get(&id).is_some_and(|r| r.contains(&idx));
            if !taken {
                return idx;
            }
        }
    }

    /// The link an index points at.
    fn link_for_index(&self, idx: u32) -> Option<LinkId> {
        let id = (idx & 0xffff) as usize;
        match self.links.get(id) {
            Some(Some(l)) if l.live.local_idx == idx => Some(id),
            Some(Some(l)) if l.secure.as_ref().is_some_and(|s| s.owns_index(idx)) => Some(id),
            _ => None,
        }
    }

    /// splitmix64: session indices need to be unpredictable to an observer of one run only,
    /// not secret (the AEAD authenticates every message).
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Logs at most once every 10 s per kind: a flood of bad input must not flood the log.
    fn log_limited(&mut self, kind: &'static str, now: Millis, msg: impl FnOnce() -> String) {
        let last = self.last_log.get(kind).copied();
        if last.is_none_or(|t| now.saturating_sub(t) >= LOG_EVERY) {
            self.last_log.insert(kind, now);
            warn!("{}", msg());
        }
    }
}
