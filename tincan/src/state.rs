//! `get_state`: the data plane's report, built from the link core, the switch and the shell's
//! counters into the typed `LocalState` of the control API.

use crate::dataplane::Node;
use ipop_tincan::hostaddr;
use proto::api::tincan::{
    Counters, LinkPath, LinkStatus, LocalState, MacEntry, NatMapping, NatState, PeerState, Security,
};
use proto::id::{Candidate, Millis};
use proto::link::peer::Link;
use proto::link::PathKind;
use proto::secure::CipherSetting;
use serde::Serialize;

/// Adds every integer field of `s` (a counters struct) to `out`.
fn add_counters(out: &mut Counters, s: &impl Serialize) {
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(s) {
        for (k, v) in m {
            if let Some(n) = v.as_u64() {
                out.insert(k, n);
            }
        }
    }
}

fn peer_state(link: &Link, now: Millis) -> PeerState {
    let l = &link.live;
    let f = link.frag_counters();
    PeerState {
        uid: link.uid(),
        status: if link.is_up() {
            LinkStatus::Online
        } else {
            LinkStatus::Offline
        },
        endpoint: link.endpoint(),
        security: if link.secure.is_some() {
            Security::Noise
        } else {
            Security::None
        },
        path: match link.path() {
            PathKind::Direct => LinkPath::Direct,
            PathKind::Reflexive => LinkPath::Reflexive,
            PathKind::Relayed => LinkPath::Relayed,
            PathKind::Static => LinkPath::Static,
        },
        rtt_ms: link.rtt_ms,
        candidates: link.candidates.clone(),
        fpr: link.fpr,
        handshakes: link.secure.as_ref().map(|s| s.handshakes_completed),
        cipher: link.secure.as_ref().and_then(|s| s.cipher()),
        last_rx_ms: l.last_rx.map(|t| now.saturating_sub(t)),
        last_handshake_ms: link.last_handshake.map(|t| now.saturating_sub(t)),
        age_ms: Some(now.saturating_sub(link.created)),
        tx_frames: l.counters.tx_frames,
        tx_bytes: l.counters.tx_bytes,
        rx_frames: l.counters.rx_frames,
        rx_bytes: l.counters.rx_bytes,
        icc_tx: l.counters.icc_tx,
        icc_rx: l.counters.icc_rx,
        tx_errors: l.counters.tx_errors,
        ups: l.counters.ups,
        downs: l.counters.downs,
        refused_macs: l.counters.refused_macs,
        frag_tx: f.frag_tx,
        frag_rx: f.frag_rx,
        frag_reassembled: f.frag_reassembled,
        frag_dropped: f.frag_drop_expired + f.frag_drop_invalid + f.frag_drop_budget,
    }
}

impl Node {
    /// This node's candidates: host addresses (not the TAP, not the bridge it is a port of,
    /// not ignored interfaces), the STUN-reflexive address, the TURN relay.
    pub fn candidates(&self) -> Vec<Candidate> {
        let Some(port) = self.control.link_port else {
            return Vec::new();
        };
        let mut ignore = self.control.ignore_ifs.clone();
        ignore.push(self.tap.name.clone());
        ignore.extend(hostaddr::bridge_of(&self.tap.name));
        self.core
            .local_candidates(&hostaddr::host_addresses(&ignore), port)
    }

    /// The `get_state` answer, bounded to [`proto::api::MAX_STATE_BYTES`]: a peer spraying
    /// source MACs fills the MAC table, not the answer (the MACs left out are counted in
    /// `macs_truncated`; the first time, a warning is logged).
    pub fn local_state(&self, now: Millis) -> LocalState {
        let mut state = self.full_state(now);
        state.bound(proto::api::MAX_STATE_BYTES);
        if (state.macs_truncated > 0 || state.peers_truncated > 0)
            && !TRUNCATION_REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            log::warn!(
                "get_state: the answer would exceed {} bytes; {} MACs and {} links left out \
                 (counted in the answer; logged once)",
                proto::api::MAX_STATE_BYTES,
                state.macs_truncated,
                state.peers_truncated
            );
        }
        state
    }

    fn full_state(&self, now: Millis) -> LocalState {
        let mut counters = Counters::new();
        add_counters(&mut counters, &self.counters);
        add_counters(&mut counters, self.core.counters());
        add_counters(&mut counters, &self.control.neigh.counters);
        add_counters(&mut counters, &self.control.nd.counters);
        add_counters(&mut counters, &self.storm.counters);
        add_counters(&mut counters, &self.ctl_sock.counters);
        let sc = &self.switch.counters;
        counters.insert("mac_new".into(), sc.mac_new);
        counters.insert("mac_moves".into(), sc.mac_moved);
        counters.insert("mac_refused".into(), sc.mac_refused);
        counters.insert("refused_local_source".into(), sc.refused_local_source);
        counters.insert("refused_held_mac".into(), sc.refused_held_mac);
        let nat = self.core.nat();
        let local = self.core.local();
        LocalState {
            uid: local.map(|l| l.uid),
            ip4: self.control.ip4,
            fpr: local.and_then(|l| l.key.as_ref()).map(|k| k.fingerprint()),
            mac: self.tap.mac,
            sec: self.core.sec(),
            rekey_after_secs: local.map_or(120, |l| l.rekey_after / 1000),
            cipher: local.map_or(CipherSetting::Auto, |l| l.cipher.setting()),
            candidates: self.candidates(),
            nat: NatState {
                srflx: nat.srflx(),
                relay: nat.relayed(),
                turn_server: nat.turn_server(),
                mapping: match nat.mapping_behaviour() {
                    "independent" => NatMapping::Independent,
                    "dependent" => NatMapping::Dependent,
                    _ => NatMapping::Unknown,
                },
                stun_responses: nat.stun_responses,
                relayed_in: nat.relayed_in,
                relayed_out: nat.relayed_out,
            },
            tap: self.tap.name.clone(),
            mtu: self.tap.mtu,
            link_mtu: self.core.link_mtu(),
            version: crate::VERSION.to_string(),
            boot_id: self.core.boot_id(),
            uptime_ms: now,
            configured: local.is_some(),
            switchmode: self.control.switchmode,
            icc: self.switch.punt_arp,
            controller_alive: self.control.alive(),
            link_port: self.control.link_port,
            neigh_entries: self.control.neigh.len() as u64,
            nd_entries: self.control.nd.len() as u64,
            counters,
            peers: self.core.links().map(|(_, l)| peer_state(l, now)).collect(),
            macs: self
                .switch
                .macs
                .iter()
                .filter_map(|(station, e)| {
                    Some(MacEntry {
                        mac: station.mac,
                        vlan: station.vid,
                        uid: self.core.link(e.port)?.uid(),
                        age_ms: now.saturating_sub(e.updated),
                    })
                })
                .collect(),
            local_macs: self
                .switch
                .local
                .iter()
                .map(|(station, _)| station.mac)
                .filter(|mac| self.switch.is_local(mac, now))
                .collect(),
            peers_truncated: 0,
            macs_truncated: 0,
        }
    }
}

/// Whether a truncated `get_state` answer was logged.
static TRUNCATION_REPORTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
