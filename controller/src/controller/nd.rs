//! IPv6 neighbour discovery replicated like ARP: tincan's punted ND frames, ICC `nd_request` /
//! `nd_reply` and `nd_answered` reports into the ND table (`proto::neigh::nd`), its actions out
//! through the same paths as ARP's, and its bindings programmed into tincan (`set_nd`).

use super::Controller;
use log::warn;
use proto::api::tincan::NdAnswered;
use proto::icc::IccMsg;
use proto::id::{Millis, Uid};
use proto::neigh::nd::{NdAction, NdTable};
use proto::neigh::{NeighConfig, Owner, ProgrammedNd};
use std::time::{Duration, Instant};

/// The most often tincan's whole ND table is programmed again when its count is off.
const ND_REPROGRAM_EVERY: Duration = Duration::from_secs(5);

/// The controller's IPv6 neighbour state.
#[derive(Debug)]
pub(super) struct Nd {
    pub table: NdTable,
    /// What tincan's ND responder was told to hold.
    programmed: ProgrammedNd,
    reprogrammed_at: Option<Instant>,
}

impl Nd {
    pub fn new(uid: Uid) -> Nd {
        Nd {
            table: NdTable::new(uid, NeighConfig::default()),
            programmed: ProgrammedNd::default(),
            reprogrammed_at: None,
        }
    }
}

impl Controller {
    /// An ND frame tincan punted from the local bridge.
    pub(super) fn on_punted_nd(&mut self, frame: &[u8], now: Millis) {
        let actions = self.nd.table.on_local_frame(frame, now);
        self.apply_nd(actions);
    }

    /// An ICC `nd_request` or `nd_reply` from peer `from`.
    pub(super) fn on_icc_nd(&mut self, from: Uid, msg: &IccMsg, now: Millis) {
        let neigh = &self.neigh;
        // A MAC the ARP table holds for our own bridge is no peer's either.
        let local_mac = |m: &_| {
            neigh
                .entries()
                .any(|(_, e)| e.owner == Owner::Local && e.mac == *m)
        };
        let actions = self.nd.table.on_icc(from, msg, now, local_mac);
        self.apply_nd(actions);
    }

    /// tincan answered solicitations from its table.
    pub(super) fn on_nd_answered(&mut self, n: &NdAnswered, now: Millis) {
        for a in &n.answers {
            let actions = self.nd.table.on_answered_by_tincan(a, now);
            self.apply_nd(actions);
        }
    }

    /// Once a second: ages the table, re-probes used entries, withdraws the bindings of peers
    /// whose link is down or gone, and programs tincan with what changed.
    pub(super) fn tick_nd(&mut self) {
        let gone: Vec<Uid> = self
            .nd
            .table
            .entries()
            .filter_map(|(_, e)| match e.owner {
                Owner::Peer(u) if !self.peer_online.get(&u).copied().unwrap_or(false) => Some(u),
                _ => None,
            })
            .collect();
        for u in gone {
            self.nd.table.remove_owner(u);
        }
        let actions = self.nd.table.tick(self.now_ms());
        self.apply_nd(actions);
        self.program_nd(false);
    }

    /// Tells tincan what changed among the bindings it answers solicitations from (`set_nd`);
    /// with `replace`, its whole table again (it restarted, or holds another number of
    /// bindings than it was sent).
    pub(super) fn program_nd(&mut self, replace: bool) {
        if replace {
            self.nd.reprogrammed_at = Some(Instant::now());
        }
        let want = self.nd.table.answerable(self.now_ms());
        for call in self.nd.programmed.update(want, replace) {
            self.counters.neigh_programmed += 1;
            self.send_rpc(call);
        }
    }

    /// After a `get_state` answer: tincan's ND table holds another number of bindings than it
    /// was sent (one lost on the way): program it again, at most every few seconds.
    pub(super) fn check_nd_programmed(&mut self, configured: bool, nd_entries: u64) {
        if configured
            && nd_entries != self.nd.programmed.len() as u64
            && self
                .nd
                .reprogrammed_at
                .is_none_or(|t| t.elapsed() >= ND_REPROGRAM_EVERY)
        {
            self.counters.neigh_reprogrammed += 1;
            self.program_nd(true);
        }
    }

    fn apply_nd(&mut self, actions: Vec<NdAction>) {
        let who = |o: Owner| match o {
            Owner::Local => "this host's bridge".to_string(),
            Owner::Peer(u) => format!("peer {u}"),
        };
        let mut same = Vec::new();
        for a in actions {
            match a {
                NdAction::Do(a) => same.push(a),
                NdAction::Conflict { ip, kept, claimed } => warn!(
                    "address conflict: {ip} is {} on {} and {} on {}; keeping {}",
                    kept.0,
                    who(kept.1),
                    claimed.0,
                    who(claimed.1),
                    kept.0
                ),
            }
        }
        self.apply(same);
    }
}
