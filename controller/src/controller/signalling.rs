//! The XMPP module's events and the signalling state machine's actions: presence and offers
//! in, `con_req`/`con_resp` out, links created and trimmed in tincan.

use super::Controller;
use crate::xmpp::XmppEvent;
use log::{debug, error, info, warn};
use proto::api::controller::XmppState;
use proto::api::tincan::{CreateLink, TrimLink};
use proto::id::{Candidate, Fingerprint, Uid};
use proto::signal::{Offer, SignalAction};

impl Controller {
    pub(super) fn on_xmpp(&mut self, ev: XmppEvent) {
        let now = self.now_ms();
        match ev {
            XmppEvent::Online => {
                info!("XMPP: online");
                self.xmpp_state = XmppState::Online;
            }
            XmppEvent::Offline(why) => {
                // Established links do not depend on the XMPP server.
                warn!("XMPP: offline ({why}); reconnecting; links stay up");
                self.xmpp_state = XmppState::Offline;
            }
            XmppEvent::AuthFailed(why) => {
                error!("XMPP: {why}; no peer discovery until the config is fixed and the controller restarted");
                self.xmpp_state = XmppState::Failed;
            }
            XmppEvent::PeerAvailable { uid, .. } => {
                self.xmpp_present.insert(uid);
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_available(uid, now);
                    self.apply_signal(actions);
                }
            }
            XmppEvent::PeerUnavailable { uid } => {
                info!("XMPP: peer {uid} left");
                self.xmpp_present.remove(&uid);
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_unavailable(uid);
                    self.apply_signal(actions);
                }
            }
            XmppEvent::Message {
                uid,
                msg_type,
                data,
            } => {
                // The offer is read here, once; one we cannot read is ignored, as the
                // original ignored it.
                let offer = match data.parse::<Offer>() {
                    Ok(o) => o,
                    Err(e) => {
                        debug!("XMPP: {msg_type} from {uid} ignored: {e}");
                        return;
                    }
                };
                if let Some(sig) = self.signal.as_mut() {
                    let actions = sig.on_message(uid, &msg_type, &offer, now);
                    self.apply_signal(actions);
                }
            }
        }
    }

    pub(super) fn create_signalled_link(
        &mut self,
        uid: Uid,
        fpr: Fingerprint,
        candidates: Vec<Candidate>,
    ) {
        self.peer_online.entry(uid).or_insert(false);
        let fpr = self.cfg.sec.then_some(fpr);
        self.send_rpc(CreateLink {
            uid,
            endpoint: None,
            candidates,
            fpr,
        });
    }

    pub(super) fn apply_signal(&mut self, actions: Vec<SignalAction>) {
        for a in actions {
            match a {
                SignalAction::Send {
                    uid,
                    msg_type,
                    data,
                } => {
                    if let Some(x) = self.xmpp.as_ref() {
                        x.send(uid, msg_type, &data.to_string());
                    }
                }
                SignalAction::CreateLink {
                    uid,
                    fpr,
                    candidates,
                } => {
                    if !self.signalled.contains_key(&uid) {
                        info!(
                            "signalled link to {uid} (fingerprint {fpr}, {} candidates)",
                            candidates.len()
                        );
                    }
                    self.create_signalled_link(uid, fpr, candidates.clone());
                    self.signalled.insert(uid, (fpr, candidates));
                }
                SignalAction::TrimLink { uid } => {
                    self.signalled.remove(&uid);
                    self.peer_online.remove(&uid);
                    let withdrawn = self.neigh.remove_owner(uid);
                    info!("trimming link to {uid}; {withdrawn} ARP entries withdrawn");
                    self.send_rpc(TrimLink { uid });
                }
            }
        }
    }
}
