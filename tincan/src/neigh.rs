//! ARP answered in the data plane: a request from the local bridge for a binding the
//! controller programmed (`set_neigh`) is answered here, written to the TAP and reported to the
//! controller in batches (`neigh_answered`); everything else is punted as before. The decisions
//! are `proto::neigh::responder`'s.

use crate::control::Control;
use crate::dataplane::Node;
use crate::tap::Tap;
use proto::api::tincan::{NeighAnswered, SetNeigh, TincanNotification};
use proto::id::Millis;
use proto::link::LinkId;
use proto::switch::Switch;

/// Answers the ARP `frame` from the local bridge if the responder holds its target; false
/// leaves the frame to be punted to the controller.
pub fn answer(
    control: &mut Control,
    switch: &Switch<LinkId>,
    tap: &Tap,
    frame: &[u8],
    now: Millis,
) -> bool {
    let Ok((reply, asked)) = control.neigh.reply(frame, |mac| switch.is_local(mac, now)) else {
        return false;
    };
    // A reply the TAP refused is not an answer: the controller gets the request instead.
    if tap.send(&reply).is_err() {
        return false;
    }
    control.neigh.answered(asked);
    true
}

impl Node {
    /// `set_neigh`: bindings of hosts on the local bridge are refused (and counted).
    pub fn set_neigh(&mut self, set: &SetNeigh, now: Millis) {
        let switch = &self.switch;
        self.control
            .neigh
            .apply(set, |mac| switch.is_local(mac, now));
    }

    /// Reports to the controller what was answered since the last report, if anything.
    pub fn report_neigh_answers(&mut self) {
        let answers = self.control.neigh.take_reports();
        if answers.is_empty() {
            return;
        }
        let n = TincanNotification::NeighAnswered(NeighAnswered { answers });
        self.notify(&n.notification());
    }
}
