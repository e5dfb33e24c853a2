//! Keeping tincan configured: reading its `get_state` answer (link states, our key and
//! candidates, its boot id), configuring it again after a restart, and attaching its TAP to
//! the configured bridge.

use super::Controller;
use crate::bridge::{Attached, Netlink};
use log::{error, info, warn};
use proto::api::tincan::{
    CreateLink, LinkStatus, LocalState, SetCbEndpoint, SetLocalIp, SetLogging, SetNat,
    SetSwitchmode,
};
use proto::id::{Candidate, Fingerprint, Uid};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// tincan's ARP bindings are programmed whole again at most this often when its count differs.
const NEIGH_REPROGRAM_EVERY: Duration = Duration::from_secs(5);

impl Controller {
    pub(super) async fn on_tincan_answer(&mut self, v: Value) {
        if self.tincan_silent_reported {
            info!("ipop-tincan is answering again");
        }
        self.last_tincan_answer = Some(Instant::now());
        self.tincan_silent_reported = false;
        match serde_json::from_value::<LocalState>(v) {
            Ok(state) => {
                self.tincan_state_unreadable_reported = false;
                self.on_tincan_state(state).await;
            }
            Err(e) => {
                self.counters.rpc_errors += 1;
                if !self.tincan_state_unreadable_reported {
                    error!(
                        "cannot read ipop-tincan's get_state answer ({e}); is it another version?"
                    );
                    self.tincan_state_unreadable_reported = true;
                }
            }
        }
    }

    pub(super) async fn on_tincan_state(&mut self, state: LocalState) {
        self.keep_for_metrics(&state);
        let boot = Some(state.boot_id);
        self.tap_name = Some(state.tap);
        let now = self.now_ms();
        for p in &state.peers {
            let online = p.status == LinkStatus::Online;
            self.peer_online.insert(p.uid, online);
            if let Some(sig) = self.signal.as_mut() {
                sig.on_link_status(p.uid, online, now);
            }
        }
        if self.xmpp.is_some() && self.signal.is_none() {
            // Without "sec" there is no key: the offer carries zeros where the fingerprint goes.
            let fpr = if self.cfg.sec {
                state.fpr
            } else {
                Some(Fingerprint([0; Fingerprint::LEN]))
            };
            if let Some(fpr) = fpr {
                self.start_signalling(fpr);
            }
        }
        if let Some(sig) = self.signal.as_mut() {
            let actions = sig.set_candidates(state.candidates, now);
            self.apply_signal(actions);
        }
        // Only root and our user can change tincan's state, and tincan refuses a new identity
        // once it has one; if its identity or security still differ from the config (an
        // operator's change, or another controller's), configure it again and say so.
        let drifted = state.configured
            && self.configured_boot == boot
            && (state.sec != self.cfg.sec || state.uid != Some(self.uid));
        if drifted {
            warn!(
                "ipop-tincan's uid or \"sec\" differ from the config (changed by another local \
                 process?): configuring it again"
            );
            self.counters.tincan_configured_again += 1;
            self.configure_tincan();
        }
        if self.configured_boot != boot || !state.configured {
            if self.configured_boot.is_some() && self.configured_boot != boot {
                self.counters.tincan_restarts_seen += 1;
                info!("ipop-tincan restarted (new boot id): configuring it again");
            }
            self.configure_tincan();
            self.configured_boot = boot;
        }
        // Bindings lost on the way (loopback datagrams are rarely dropped, but can be), or
        // changed by another local process: program tincan's whole ARP table again, at most
        // every few seconds.
        if state.configured
            && state.neigh_entries != self.programmed.len() as u64
            && self
                .neigh_reprogrammed_at
                .is_none_or(|t| t.elapsed() >= NEIGH_REPROGRAM_EVERY)
        {
            self.counters.neigh_reprogrammed += 1;
            self.reprogram_neigh();
        }
        self.check_nd_programmed(state.configured, state.nd_entries);
        if self.cfg.bridge.is_some()
            && self.bridge_attached_boot != boot
            && self.attach_bridge().await
        {
            self.bridge_attached_boot = boot;
        }
        self.check_ready(state.boot_id, state.configured);
    }

    /// Every step is idempotent in tincan, so this is also how a restarted controller
    /// picks up a running tincan.
    pub(super) fn configure_tincan(&mut self) {
        self.counters.tincan_configured += 1;
        let cfg = &self.cfg;
        let logging = SetLogging {
            logging: cfg.tincan_logging,
        };
        let cb = SetCbEndpoint {
            ip: Ipv4Addr::LOCALHOST.into(),
            port: cfg.icc_port,
        };
        let local = SetLocalIp {
            uid: self.uid,
            ip4: cfg.ip4,
            ip4_mask: Some(cfg.ip4_mask),
            ip6: proto::config::gen_ip6(&self.uid).parse().ok(),
            ip6_mask: Some(cfg.ip6_mask),
            subnet_mask: Some(cfg.subnet_mask),
            switchmode: Some(cfg.switchmode),
            icc: Some(cfg.icc),
            link_port: cfg.link_port,
            mtu: Some(cfg.tap_mtu),
            link_mtu: Some(cfg.link_mtu),
            sec: cfg.sec,
            key_file: cfg.sec.then(|| self.key_file.clone()),
            rekey_after_secs: u32::try_from(cfg.rekey_interval).unwrap_or(u32::MAX),
            cipher: cfg.cipher,
            storm: Some(cfg.storm_rates()),
        };
        let mode = SetSwitchmode {
            switchmode: cfg.switchmode,
            icc: Some(cfg.icc),
        };
        let links: Vec<CreateLink> = self
            .peers
            .iter()
            .map(|p| CreateLink {
                uid: p.uid,
                endpoint: Some(p.endpoint),
                candidates: Vec::new(),
                fpr: p.fpr,
            })
            .collect();
        let nat = self.xmpp.is_some().then(|| SetNat {
            stun: self.stun.clone(),
            turn: self.turn.clone(),
            ignore: cfg.network_ignore_list.clone(),
        });
        self.send_rpc(logging);
        self.send_rpc(cb);
        self.send_rpc(local);
        self.send_rpc(mode);
        if let Some(nat) = nat {
            self.send_rpc(nat);
        }
        let n = links.len();
        for l in links {
            self.send_rpc(l);
        }
        let again: Vec<(Uid, (Fingerprint, Vec<Candidate>))> = self
            .signalled
            .iter()
            .map(|(u, l)| (*u, l.clone()))
            .collect();
        for (uid, (fpr, candidates)) in again {
            self.create_signalled_link(uid, fpr, candidates);
        }
        // A restarted tincan has no ARP bindings; a restarted controller replaces the ones
        // its predecessor programmed.
        self.reprogram_neigh();
        self.program_nd(true);
        info!("configured ipop-tincan ({n} links)");
    }

    /// Makes the TAP a port of the configured bridge; true when it is one.
    pub(super) async fn attach_bridge(&mut self) -> bool {
        let (Some(bridge), Some(tap)) = (self.cfg.bridge.clone(), self.tap_name.clone()) else {
            return false;
        };
        if self.netlink.is_none() {
            match Netlink::new() {
                Ok(n) => self.netlink = Some(n),
                Err(e) => {
                    error!("cannot attach {tap} to {bridge}: {e}");
                    return false;
                }
            }
        }
        let netlink = self.netlink.as_ref().expect("set above");
        match netlink.attach(&tap, &bridge).await {
            Ok(Attached::Now) => {
                info!("attached {tap} to bridge {bridge}");
                true
            }
            Ok(Attached::Already) => true,
            Err(e) => {
                error!("cannot attach {tap} to {bridge}: {e}");
                false
            }
        }
    }
}
