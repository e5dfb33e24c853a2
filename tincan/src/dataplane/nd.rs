//! IPv6 neighbour discovery in the data plane, while the controller replicates neighbours: a
//! multicast solicitation from the local bridge for a binding the controller programmed
//! (`set_nd`) is answered here and reported (`nd_answered`); one for anything else goes to the
//! controller only; advertisements are switched as usual with a copy to the controller;
//! duplicate address detection probes, unicast solicitations and all other IPv6 are switched
//! as usual; malformed ND is dropped. The decisions are `proto::neigh::nd_responder`'s.

use super::{Node, FRAME_AT};
use proto::api::tincan::{NdAnswered, SetNd, TincanNotification};
use proto::id::Millis;
use proto::neigh::nd_responder::NdVerdict;
use proto::offload::{Csum, VnetHdr};

impl Node {
    /// Whether the frame at `buf[FRAME_AT..end]` from the TAP was taken care of here (answered,
    /// punted or dropped); false: switch it as usual.
    pub(super) fn nd_handled(&mut self, end: usize, meta: VnetHdr, now: Millis) -> bool {
        // A frame whose checksum the kernel left to us is no ND the kernel sent (ND checksums
        // are computed in software): it is switched as it is.
        if meta.gso_type != 0 || meta.csum() != Csum::Done {
            return false;
        }
        let switch = &self.switch;
        let frame = &self.buf[FRAME_AT..end];
        match self.control.nd.on_frame(frame, |m| switch.is_local(m, now)) {
            NdVerdict::Pass => false,
            NdVerdict::Drop => true,
            NdVerdict::PassAndPunt => {
                let frame = frame.to_vec();
                self.punt_frame(&frame);
                false
            }
            NdVerdict::Answer(reply, asked) if self.tap.send(&reply).is_ok() => {
                self.control.nd.answered(asked);
                true
            }
            // A reply the TAP refused is not an answer: the controller gets the solicitation.
            NdVerdict::Answer(..) | NdVerdict::Punt => {
                let frame = frame.to_vec();
                self.punt_frame(&frame);
                true
            }
        }
    }

    /// `set_nd`: bindings of hosts on the local bridge are refused (and counted).
    pub fn set_nd(&mut self, set: &SetNd, now: Millis) {
        let switch = &self.switch;
        self.control.nd.apply(set, |mac| switch.is_local(mac, now));
    }

    /// Reports to the controller what was answered since the last report, if anything.
    pub fn report_nd_answers(&mut self) {
        let answers = self.control.nd.take_reports();
        if answers.is_empty() {
            return;
        }
        let n = TincanNotification::NdAnswered(NdAnswered { answers });
        self.notify(&n.notification());
    }
}
