//! ARP replication: tincan's notifications (punted frames, ICC messages, link events) into
//! the ARP table, and the table's actions out (frames injected, ICC sent, MACs programmed,
//! conflicts reported), and the checks of the bridge's forwarding database the table asks for
//! when a peer claims one of this host's MACs (`proto::neigh`, the migration rule).

use super::Controller;
use log::{debug, info, warn};
use proto::api::tincan::{
    InjectFrame, LinkStatus, ReleaseMac, SendIcc, SetMac, TincanNotification,
};
use proto::icc::IccMsg;
use proto::id::Uid;
use proto::neigh::{NeighAction, Owner};
use proto::wire::icmpv6;
use std::time::Instant;

impl Controller {
    pub(super) fn on_notification(&mut self, n: TincanNotification) {
        let now = self.now_ms();
        match n {
            TincanNotification::PuntFrame(p) if icmpv6::is_nd(&p.frame) => {
                self.on_punted_nd(&p.frame, now);
            }
            TincanNotification::PuntFrame(p) => {
                let actions = self.neigh.on_local_arp(&p.frame, now);
                self.apply(actions);
            }
            TincanNotification::Icc(icc) => {
                self.counters.icc_received += 1;
                match IccMsg::from_json(&icc.msg) {
                    Ok(m @ (IccMsg::NdRequest { .. } | IccMsg::NdReply { .. })) => {
                        self.on_icc_nd(icc.uid, &m, now);
                    }
                    Ok(m) => {
                        let actions = self.neigh.on_icc(icc.uid, &m, now);
                        self.apply(actions);
                    }
                    Err(e) => {
                        self.counters.bad_notifications += 1;
                        debug!("from {}: {e}", icc.uid);
                    }
                }
            }
            TincanNotification::ConStat(c) => {
                let online = c.data == LinkStatus::Online;
                info!(
                    "peer {} is {}",
                    c.uid,
                    if online { "online" } else { "offline" }
                );
                self.peer_online.insert(c.uid, online);
                if !online {
                    // The peer withdrew its hosts with its link: they may show up elsewhere
                    // (the migration rule of `proto::neigh`), and are asked for again.
                    let withdrawn = self.neigh.remove_owner(c.uid);
                    if withdrawn > 0 {
                        info!("{withdrawn} ARP entries of peer {} withdrawn", c.uid);
                    }
                }
                if let Some(sig) = self.signal.as_mut() {
                    sig.on_link_status(c.uid, online, now);
                }
            }
            TincanNotification::NdAnswered(n) => self.on_nd_answered(&n, now),
            TincanNotification::NeighAnswered(n) => {
                for a in &n.answers {
                    let actions = self.neigh.on_answered_by_tincan(a, now);
                    self.apply(actions);
                }
            }
        }
        self.program_neigh();
        self.program_nd(false);
    }

    /// Tells tincan what changed among the bindings it answers ARP from (`set_neigh`): the
    /// peers' fresh entries, exactly those this table would answer with an injected reply.
    pub(super) fn program_neigh(&mut self) {
        let want = self.neigh.answerable(self.now_ms());
        for call in self.programmed.update(want) {
            self.counters.neigh_programmed += 1;
            self.send_rpc(call);
        }
    }

    /// Programs tincan's whole table again, replacing what it holds (it restarted, or holds
    /// another number of bindings than it was sent).
    pub(super) fn reprogram_neigh(&mut self) {
        self.neigh_reprogrammed_at = Some(Instant::now());
        let want = self.neigh.answerable(self.now_ms());
        for call in self.programmed.resend(want) {
            self.counters.neigh_programmed += 1;
            self.send_rpc(call);
        }
    }

    pub(super) fn apply(&mut self, actions: Vec<NeighAction>) {
        for a in actions {
            match a {
                NeighAction::Inject(frame) => {
                    self.counters.frames_injected += 1;
                    self.send_rpc(InjectFrame { frame });
                }
                NeighAction::IccBroadcast(msg) => {
                    let online: Vec<Uid> = self
                        .peer_online
                        .iter()
                        .filter(|(_, up)| **up)
                        .map(|(u, _)| *u)
                        .collect();
                    for uid in online {
                        self.send_icc(uid, &msg);
                    }
                }
                NeighAction::IccSend(uid, msg) => self.send_icc(uid, &msg),
                NeighAction::ProgramMac { mac, uid } => {
                    self.counters.macs_programmed += 1;
                    self.send_rpc(SetMac { mac, uid });
                }
                NeighAction::CheckBridge { mac } => {
                    if !self.bridge_checks.contains(&mac) {
                        self.bridge_checks.push(mac);
                    }
                }
                NeighAction::ReleaseMac { mac, uid } => {
                    match uid {
                        None => {
                            info!("{mac} left this host's bridge: released, withdrawn from peers")
                        }
                        Some(u) => info!("{mac} withdrawn by peer {u}"),
                    }
                    self.counters.macs_released += 1;
                    self.send_rpc(ReleaseMac { mac, uid });
                }
                NeighAction::Conflict {
                    ip,
                    kept_mac,
                    kept_owner,
                    claimed_mac,
                    claimed_by,
                } => {
                    warn!(
                        "address conflict: {ip} is {kept_mac} on {} and {claimed_mac} on {}; keeping {kept_mac}",
                        owner_text(kept_owner),
                        owner_text(claimed_by)
                    );
                }
            }
        }
    }

    /// Answers the checks of the bridge the ARP table asked for, with one read of the
    /// bridge's forwarding database. Without a bridge (or when it cannot be read) nothing is
    /// decided: this host's bindings stay, and the table asks again at its next tick.
    pub(super) async fn run_bridge_checks(&mut self) {
        if self.bridge_checks.is_empty() {
            return;
        }
        let macs = std::mem::take(&mut self.bridge_checks);
        let (Some(netlink), Some(bridge), Some(tap)) = (
            self.netlink.as_ref(),
            self.cfg.bridge.as_ref(),
            self.tap_name.as_ref(),
        ) else {
            debug!(
                "no bridge to check for {} MACs claimed by peers",
                macs.len()
            );
            return;
        };
        let on_bridge = match netlink.fdb_macs(bridge, tap).await {
            Ok(m) => m,
            Err(e) => {
                warn!("cannot check the bridge for MACs claimed by peers: {e}");
                return;
            }
        };
        let now = self.now_ms();
        for mac in macs {
            let actions = self
                .neigh
                .on_bridge_check(mac, on_bridge.contains(&mac.0), now);
            self.apply(actions);
        }
        self.program_neigh();
    }

    pub(super) fn send_icc(&mut self, uid: Uid, msg: &IccMsg) {
        if !self.peer_online.get(&uid).copied().unwrap_or(false) {
            self.counters.icc_send_failed += 1;
            return;
        }
        self.counters.icc_sent += 1;
        self.send_rpc(SendIcc {
            uid,
            msg: msg.to_json(),
        });
    }
}

fn owner_text(o: Owner) -> String {
    match o {
        Owner::Local => "this host's bridge".into(),
        Owner::Peer(u) => format!("peer {u}"),
    }
}
