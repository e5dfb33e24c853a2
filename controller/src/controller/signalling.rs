//! The XMPP module's events and the signalling state machine's actions: presence and offers
//! in, `con_req`/`con_resp` out, links created and trimmed in tincan.

use super::Controller;
use crate::xmpp::XmppEvent;
use log::{debug, error, info, warn};
use proto::api::controller::XmppState;
use proto::api::tincan::{CreateLink, TrimLink};
use proto::id::{Candidate, Fingerprint, Uid};
use proto::signal::{
    format_learned, parse_learned, Offer, Refusal, SignalAction, Signalling, MAX_LEARNED_TEXT,
    MAX_SIGNALLED_PEERS,
};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::SystemTime;

/// Reads the learned-keys file: `None` when there is none; refused (an error) when it is a
/// symbolic link, not a regular file, another user's than root's or ours, open to group or
/// others ([`ipop_service::private_file`]) or larger than [`MAX_LEARNED_TEXT`].
fn read_learned_file(path: &Path) -> io::Result<Option<(String, Option<SystemTime>)>> {
    let owners = ipop_service::private_file::root_or_me();
    let Some(f) =
        ipop_service::private_file::open(path, "file", Some(&owners)).map_err(io::Error::other)?
    else {
        return Ok(None);
    };
    let meta = f.metadata()?;
    let mut text = String::new();
    f.take(MAX_LEARNED_TEXT as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > MAX_LEARNED_TEXT {
        return Err(io::Error::other(format!(
            "larger than {MAX_LEARNED_TEXT} bytes"
        )));
    }
    Ok(Some((text, meta.modified().ok())))
}

/// Writes `text` to `path` through a temporary file (mode 0600) renamed over it.
fn write_learned_file(path: &Path, text: &str) -> io::Result<Option<SystemTime>> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(fs::metadata(path)?.modified().ok())
}

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
                if self.xmpp_present.len() < MAX_SIGNALLED_PEERS || self.xmpp_present.contains(&uid)
                {
                    self.xmpp_present.insert(uid);
                }
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
                } else if self.held_offers.hold(uid, &msg_type, &offer, now) {
                    info!(
                        "XMPP: {msg_type} from {uid} held until ipop-tincan reports its key \
                         (then answered)"
                    );
                }
            }
        }
    }

    /// Signalling starts once tincan has reported our key: the configured peers' keys are
    /// pinned, and the keys learned earlier are read back.
    pub(super) fn start_signalling(&mut self, fpr: Fingerprint) {
        let now = self.now_ms();
        let mut sig = Signalling::new(self.uid, fpr, self.cfg.wait_time);
        for p in &self.peers {
            if let Some(f) = p.fpr {
                sig.pin_configured(p.uid, f);
            }
        }
        let mut actions = Vec::new();
        for uid in &self.xmpp_present {
            actions.extend(sig.on_available(*uid, now));
        }
        self.signal = Some(sig);
        self.reload_learned(true);
        // Offers that came early go through every check now, after the pins are read.
        if let Some(sig) = self.signal.as_mut() {
            actions.extend(self.held_offers.release(sig, now));
        }
        self.apply_signal(actions);
    }

    /// Reads the learned-keys file again if it changed (or `force`): keys in it are pinned,
    /// learned keys no longer in it are forgotten (the operator deleted their lines).
    pub(super) fn reload_learned(&mut self, force: bool) {
        let (Some(path), Some(sig)) = (self.learned_file.clone(), self.signal.as_mut()) else {
            return;
        };
        let (text, mtime) = match read_learned_file(&path) {
            Ok(Some(t)) => t,
            Ok(None) => (String::new(), None),
            Err(e) => {
                if !self.learned_file_error_reported {
                    error!("learned keys {}: {e}; not used", path.display());
                    self.learned_file_error_reported = true;
                }
                return;
            }
        };
        if !force && mtime == self.learned_mtime {
            return;
        }
        self.learned_mtime = mtime;
        let (keys, bad) = parse_learned(&text);
        if bad > 0 {
            warn!("learned keys {}: {bad} lines ignored", path.display());
        }
        let kept: std::collections::HashSet<Uid> = keys.iter().map(|(u, _)| *u).collect();
        let gone: Vec<Uid> = sig
            .learned()
            .map(|(u, _)| *u)
            .filter(|u| !kept.contains(u))
            .collect();
        for uid in gone {
            if sig.forget(uid) {
                info!(
                    "the learned key of {uid} was removed from {}: a new key is accepted once \
                     its old link is gone",
                    path.display()
                );
            }
        }
        for (uid, fpr) in keys {
            sig.pin_learned(uid, fpr);
        }
    }

    /// Persists newly learned keys and logs refusals (each once).
    fn after_signal(&mut self) {
        let Some(sig) = self.signal.as_mut() else {
            return;
        };
        for r in sig.take_refusals() {
            match r {
                Refusal::ConfiguredKey {
                    uid,
                    pinned,
                    offered,
                } => warn!(
                    "signalling: refused key {offered} for {uid}: \"peers\" pins {pinned} \
                     (another XMPP account claiming that uid?); counted as signal_refused_key"
                ),
                Refusal::LearnedKey {
                    uid,
                    pinned,
                    offered,
                } => warn!(
                    "signalling: refused key {offered} for {uid}: it linked with {pinned}; to \
                     accept a new key, delete its line from the learned keys file; counted as \
                     signal_refused_new_key"
                ),
                Refusal::PeersFull { uid } => warn!(
                    "signalling: {MAX_SIGNALLED_PEERS} peers already; {uid} and any further \
                     new uid ignored; counted as signal_peers_full"
                ),
                Refusal::LearnedFull { uid } => warn!(
                    "signalling: the learned keys are full; {uid} and any further new uid \
                     refused; counted as signal_learned_full"
                ),
            }
        }
        if sig.take_learned().is_empty() {
            return;
        }
        let Some(path) = self.learned_file.clone() else {
            return;
        };
        let text = format_learned(sig.learned());
        match write_learned_file(&path, &text) {
            Ok(mtime) => self.learned_mtime = mtime,
            Err(e) => error!("cannot write learned keys to {}: {e}", path.display()),
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
        self.after_signal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_learned_file_that_is_a_link_or_open_to_others_is_refused() {
        let dir = std::env::temp_dir().join(format!("ipop-learned-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let file = dir.join("ipop.key.learned");
        assert!(read_learned_file(&file).unwrap().is_none());
        write_learned_file(&file, "# none\n").unwrap();
        assert_eq!(read_learned_file(&file).unwrap().unwrap().0, "# none\n");
        let link = dir.join("link.learned");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = read_learned_file(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_learned_file(&file).unwrap_err().to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
