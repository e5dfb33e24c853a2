//! ARP replication: tincan's notifications (punted frames, ICC messages, link events) into
//! the ARP table, and the table's actions out (frames injected, ICC sent, MACs programmed,
//! conflicts reported), and the checks of the bridge's forwarding database the table asks for
//! when a peer claims one of this host's MACs (`proto::neigh`, the migration rule).

use super::Controller;
use log::{debug, info, warn};
use proto::api::tincan::{
    InjectFrame, LinkStatus, ReleaseMac, SendIcc, SetMac, TincanNotification,
};
use proto::icc::{vlan_of, IccMsg};
use proto::id::Uid;
use proto::neigh::{vlan, NeighAction, NeighConfig, NeighTable, Owner};
use proto::wire::icmpv6;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Instant;

impl Controller {
    pub(super) fn on_notification(&mut self, n: TincanNotification) {
        let now = self.now_ms();
        match n {
            TincanNotification::PuntFrame(p) if icmpv6::is_nd(&p.frame) => {
                self.on_punted_nd(&p.frame, now);
            }
            TincanNotification::PuntFrame(p) => match vlan::untag(&p.frame) {
                // Tagged: the VLAN's own table sees the frame untagged.
                Some((vid, frame)) => {
                    if let Some(t) = self.vlan_table(vid) {
                        let actions = t.on_local_arp(&frame, now);
                        self.apply_in(vid, actions);
                    }
                }
                None => {
                    let actions = self.neigh.on_local_arp(&p.frame, now);
                    self.apply(actions);
                }
            },
            TincanNotification::Icc(icc) => {
                self.counters.icc_received += 1;
                match vlan_of(&icc.msg).and_then(|vid| Ok((vid, IccMsg::from_json(&icc.msg)?))) {
                    Ok((0, m @ (IccMsg::NdRequest { .. } | IccMsg::NdReply { .. }))) => {
                        self.on_icc_nd(icc.uid, &m, now);
                    }
                    Ok((0, m)) => {
                        let actions = self.neigh.on_icc(icc.uid, &m, now);
                        self.apply(actions);
                    }
                    // Peers may open at most half of the VLAN tables: one naming VLANs cannot
                    // use up the room for the VLANs our own bridge has.
                    Ok((vid, m)) => {
                        let room =
                            self.vlans.contains_key(&vid) || self.vlans.len() < vlan::MAX_VLANS / 2;
                        let table = if room { self.vlan_table(vid) } else { None };
                        match table {
                            Some(t) => {
                                let actions = t.on_icc(icc.uid, &m, now);
                                self.apply_in(vid, actions);
                            }
                            None => self.counters.vlan_icc_ignored += 1,
                        }
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
                    let withdrawn = self.neigh.remove_owner(c.uid)
                        + self
                            .vlans
                            .values_mut()
                            .map(|t| t.remove_owner(c.uid))
                            .sum::<usize>();
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
        self.apply_in(0, actions);
    }

    /// The table of VLAN `vid` (made on first use, at most `vlan::MAX_VLANS`).
    fn vlan_table(&mut self, vid: u16) -> Option<&mut NeighTable> {
        if !self.vlans.contains_key(&vid) && self.vlans.len() >= vlan::MAX_VLANS {
            self.counters.vlans_refused += 1;
            return None;
        }
        let uid = self.uid;
        Some(
            self.vlans
                .entry(vid)
                .or_insert_with(|| NeighTable::new(uid, NeighConfig::default())),
        )
    }

    /// The tables of the VLANs, once a tick.
    pub(super) fn tick_vlans(&mut self) {
        let now = self.now_ms();
        let vids: Vec<u16> = self.vlans.keys().copied().collect();
        for vid in vids {
            let actions = self
                .vlans
                .get_mut(&vid)
                .map(|t| t.tick(now))
                .unwrap_or_default();
            self.apply_in(vid, actions);
        }
        self.log_conflicts_over();
    }

    /// Logs, once a tick, each conflict that was reported and is over (one side went).
    fn log_conflicts_over(&mut self) {
        let now: HashSet<(u16, Ipv4Addr)> = std::iter::once((0, &self.neigh))
            .chain(self.vlans.iter().map(|(v, t)| (*v, t)))
            .flat_map(|(vid, t)| {
                t.contests()
                    .filter(|(_, _, c)| c.reported)
                    .map(move |(ip, _, _)| (vid, *ip))
            })
            .collect();
        for (vid, ip) in self.conflicts_reported.difference(&now) {
            let in_vlan = if *vid == 0 {
                String::new()
            } else {
                format!(" in VLAN {vid}")
            };
            let table = if *vid == 0 {
                Some(&self.neigh)
            } else {
                self.vlans.get(vid)
            };
            match table.and_then(|t| t.get(ip)) {
                Some(e) => info!(
                    "address conflict{in_vlan} over: {ip} is {} on {}",
                    e.mac,
                    owner_text(e.owner)
                ),
                None => info!("address conflict{in_vlan} over: {ip} has no owner left"),
            }
        }
        self.conflicts_reported = now;
    }

    /// Carries out the actions of the table of VLAN `vid` (0: untagged): frames injected with
    /// the VLAN's tag, ICC messages and tincan's bindings marked with the VLAN.
    fn apply_in(&mut self, vid: u16, actions: Vec<NeighAction>) {
        let vlan = (vid != 0).then_some(vid);
        let in_vlan = match vlan {
            Some(v) => format!(" in VLAN {v}"),
            None => String::new(),
        };
        for a in actions {
            match a {
                NeighAction::Inject(frame) => {
                    self.counters.frames_injected += 1;
                    self.send_rpc(InjectFrame {
                        frame: vlan::tag(&frame, vid),
                    });
                }
                NeighAction::IccBroadcast(msg) => {
                    let online: Vec<Uid> = self
                        .peer_online
                        .iter()
                        .filter(|(_, up)| **up)
                        .map(|(u, _)| *u)
                        .collect();
                    for uid in online {
                        self.send_icc_in(vid, uid, &msg);
                    }
                }
                NeighAction::IccSend(uid, msg) => self.send_icc_in(vid, uid, &msg),
                NeighAction::ProgramMac { mac, uid } => {
                    self.counters.macs_programmed += 1;
                    self.send_rpc(SetMac { mac, uid, vlan });
                }
                NeighAction::CheckBridge { mac } => {
                    if !self.bridge_checks.contains(&(vid, mac)) {
                        self.bridge_checks.push((vid, mac));
                    }
                }
                NeighAction::ReleaseMac { mac, uid } => {
                    match uid {
                        None => info!(
                            "{mac}{in_vlan} left this host's bridge: released, withdrawn from peers"
                        ),
                        Some(u) => info!("{mac}{in_vlan} withdrawn by peer {u}"),
                    }
                    self.counters.macs_released += 1;
                    self.send_rpc(ReleaseMac { mac, uid, vlan });
                }
                NeighAction::Conflict {
                    ip,
                    kept_mac,
                    kept_owner,
                    claimed_mac,
                    claimed_by,
                } => {
                    warn!(
                        "address conflict{in_vlan}: {ip} is {kept_mac} on {} and {claimed_mac} on {}; keeping {kept_mac}",
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
        for (vid, mac) in macs {
            let present = on_bridge.contains(&mac.0);
            let actions = match vid {
                0 => self.neigh.on_bridge_check(mac, present, now),
                _ => match self.vlans.get_mut(&vid) {
                    Some(t) => t.on_bridge_check(mac, present, now),
                    None => continue,
                },
            };
            self.apply_in(vid, actions);
        }
        self.program_neigh();
    }

    /// Sends `msg`, about VLAN `vid` (0: untagged), to the controller behind the link to `uid`.
    pub(super) fn send_icc_in(&mut self, vid: u16, uid: Uid, msg: &IccMsg) {
        if !self.peer_online.get(&uid).copied().unwrap_or(false) {
            self.counters.icc_send_failed += 1;
            return;
        }
        self.counters.icc_sent += 1;
        self.send_rpc(SendIcc {
            uid,
            msg: msg.to_json_in(vid),
        });
    }
}

fn owner_text(o: Owner) -> String {
    match o {
        Owner::Local => "this host's bridge".into(),
        Owner::Peer(u) => format!("peer {u}"),
    }
}
