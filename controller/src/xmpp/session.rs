//! The session task: owns the stanza stream, answers its events (login, loss, presence, IQs)
//! and the handle's commands, keeps the uid -> full JID map of the other nodes, and refreshes
//! our presence every 120 s.

use super::connection::{connect_loop, Shared};
use super::stanza::{parse_tincan_query, tincan_query, tincan_uid, NS_TINCAN};
use super::{Command, Counters, XmppEvent};
use futures::StreamExt;
use proto::id::Uid;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::stanzastream::{Connection, Event, StanzaStream, StreamEvent};
use tokio_xmpp::Stanza;

/// Presence refresh period of the original (`T:xmppnetwork.cc`).
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(120);
/// Bound on handing a stanza to the stream's queue.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the orderly shutdown when the handle stops the module.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const QUEUE_DEPTH: usize = 256;

/// State of the main task.
struct Session {
    shared: Arc<Shared>,
    online: bool,
    bound: Option<FullJid>,
    /// uid -> full JID last seen (presence or query).
    peers: HashMap<Uid, FullJid>,
    next_id: u64,
}

impl Session {
    async fn enqueue(&self, stream: &StanzaStream, stanza: Stanza) -> bool {
        tokio::time::timeout(ENQUEUE_TIMEOUT, stream.send(Box::new(stanza)))
            .await
            .is_ok()
    }

    fn iq_id(&mut self) -> String {
        self.next_id += 1;
        format!("tincan-{}", self.next_id)
    }

    async fn send_presence(&self, stream: &StanzaStream) {
        if !self.enqueue(stream, Presence::available().into()).await {
            log::debug!("XMPP: presence not queued (stream stuck)");
        }
    }

    async fn on_event(&mut self, stream: &StanzaStream, ev: Event) {
        match ev {
            Event::Stream(StreamEvent::Reset { bound_jid, .. }) => {
                let ours = self.shared.jid.resource().as_str();
                match bound_jid.try_into_full() {
                    Ok(full) => {
                        if full.resource().as_str() != ours {
                            log::warn!(
                                "XMPP: the server bound {full} instead of resource {ours}: other \
                                 nodes will not recognise this node"
                            );
                        }
                        self.bound = Some(full);
                    }
                    Err(bare) => log::warn!("XMPP: bound to bare JID {bare}"),
                }
                self.came_online(stream, "logged in").await;
            }
            Event::Stream(StreamEvent::Resumed) => {
                self.came_online(stream, "session resumed").await;
            }
            Event::Stream(StreamEvent::Suspended) => {
                self.online = false;
                self.shared.connection_lost();
            }
            Event::Stanza(Stanza::Presence(p)) => self.on_presence(p),
            Event::Stanza(Stanza::Iq(iq)) => self.on_iq(stream, iq).await,
            Event::Stanza(Stanza::Message(m)) => {
                log::debug!("XMPP: message stanza from {:?} ignored", m.from);
            }
        }
    }

    async fn came_online(&mut self, stream: &StanzaStream, what: &str) {
        self.online = true;
        self.shared.set_online();
        Counters::bump(&self.shared.counters.logins);
        self.send_presence(stream).await;
        log::info!(
            "XMPP: {what} to {}:{} as {}",
            self.shared.host,
            self.shared.port,
            self.bound.as_ref().unwrap_or(&self.shared.jid)
        );
        self.shared.emit(XmppEvent::Online);
    }

    fn is_self(&self, from: &Jid, uid: Uid) -> bool {
        uid == self.shared.uid
            || self
                .bound
                .as_ref()
                .is_some_and(|b| from.as_str() == b.as_str())
    }

    fn on_presence(&mut self, p: Presence) {
        let Some(from) = p.from else {
            return;
        };
        let Some(uid) = tincan_uid(&from) else {
            log::trace!("XMPP: presence from non-tincan {from} ignored");
            return;
        };
        if self.is_self(&from, uid) {
            if from.as_str() != self.bound.as_ref().map_or("", |b| b.as_str()) {
                log::warn!("XMPP: {from} claims our own uid {uid}: ignored");
            }
            return;
        }
        let Ok(full) = from.try_into_full() else {
            return;
        };
        match p.type_ {
            PresenceType::None => {
                let jid = full.to_string();
                let prev = self.peers.insert(uid, full);
                if prev.as_ref().map(|j| j.as_str()) != Some(jid.as_str()) {
                    log::info!("XMPP: peer {uid} available as {jid}");
                } else {
                    log::debug!("XMPP: presence from peer {uid}");
                }
                self.shared.emit(XmppEvent::PeerAvailable { uid, jid });
            }
            PresenceType::Unavailable => {
                log::info!("XMPP: peer {uid} unavailable ({full})");
                self.peers.remove(&uid);
                self.shared.emit(XmppEvent::PeerUnavailable { uid });
            }
            other => log::debug!("XMPP: presence {other:?} from {full} ignored"),
        }
    }

    async fn on_iq(&mut self, stream: &StanzaStream, iq: Iq) {
        match iq {
            Iq::Get {
                from, id, payload, ..
            }
            | Iq::Set {
                from, id, payload, ..
            } => {
                let reply = self.on_request(from.as_ref(), &payload);
                if let Some(to) = from {
                    let stanza = match reply {
                        Ok(()) => Iq::empty_result(to, id),
                        Err((kind, cond, text)) => {
                            Iq::from_error(id, StanzaError::new(kind, cond, "en", text)).with_to(to)
                        }
                    };
                    self.enqueue(stream, stanza.into()).await;
                }
            }
            Iq::Result { from, .. } => {
                // Results to our own pings come from the server: count the peers' only.
                if from.as_ref().and_then(tincan_uid).is_some() {
                    Counters::bump(&self.shared.counters.iq_results);
                }
                log::trace!("XMPP: IQ result from {from:?}");
            }
            Iq::Error { from, error, .. } => {
                log::debug!(
                    "XMPP: IQ error from {}: {:?}",
                    from.map(|j| j.to_string()).unwrap_or_default(),
                    error.defined_condition
                );
            }
        }
    }

    /// Handle an IQ get/set; `Err` is the error to answer with.
    fn on_request(
        &mut self,
        from: Option<&Jid>,
        payload: &Element,
    ) -> Result<(), (ErrorType, DefinedCondition, &'static str)> {
        if payload.is("ping", ns::PING) {
            return Ok(());
        }
        if !payload.is("query", NS_TINCAN) {
            log::debug!(
                "XMPP: unsupported IQ {{{}}}{} from {from:?}",
                payload.ns(),
                payload.name()
            );
            return Err((
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "not supported",
            ));
        }
        let counters = &self.shared.counters;
        let Some((from, uid)) = from.and_then(|f| Some((f, tincan_uid(f)?))) else {
            Counters::bump(&counters.malformed);
            log::debug!("XMPP: tincan query from non-tincan {from:?} ignored");
            return Err((
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                "sender is not a tincan resource",
            ));
        };
        let Some((msg_type, data)) = parse_tincan_query(payload) else {
            Counters::bump(&counters.malformed);
            log::debug!("XMPP: malformed tincan query from {from} ignored");
            return Err((
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "a tincan query needs <data> and a non-empty <type>",
            ));
        };
        if self.is_self(from, uid) {
            return Ok(());
        }
        Counters::bump(&counters.received);
        // As the original: any stanza from a tincan resource maps its uid to that JID, so
        // that we can answer a node whose presence we cannot see.
        if let Ok(full) = from.clone().try_into_full() {
            if let std::collections::hash_map::Entry::Vacant(e) = self.peers.entry(uid) {
                log::debug!("XMPP: uid {uid} mapped to {full} from a query");
                e.insert(full);
            }
        }
        log::debug!("XMPP: {msg_type} from {uid}: {data}");
        self.shared.emit(XmppEvent::Message {
            uid,
            msg_type,
            data,
        });
        Ok(())
    }

    async fn send_query(&mut self, stream: &StanzaStream, to_uid: Uid, what: &str, q: Element) {
        let counters = &self.shared.counters;
        let Some(to) = self.peers.get(&to_uid).cloned() else {
            Counters::bump(&counters.dropped);
            log::debug!("XMPP: {what} to unknown uid {to_uid} dropped");
            return;
        };
        if !self.online {
            Counters::bump(&counters.dropped);
            log::debug!("XMPP: offline; {what} to {to_uid} dropped");
            return;
        }
        let id = self.iq_id();
        let iq = Iq::Get {
            from: None,
            to: Some(to.into()),
            id,
            payload: q,
        };
        if self.enqueue(stream, iq.into()).await {
            Counters::bump(&self.shared.counters.sent);
        } else {
            Counters::bump(&self.shared.counters.dropped);
            log::debug!("XMPP: {what} to {to_uid} dropped (stream queue stuck)");
        }
    }

    async fn on_command(&mut self, stream: &StanzaStream, cmd: Command) {
        match cmd {
            Command::Send {
                to_uid,
                msg_type,
                data,
            } => {
                log::debug!("XMPP: sending {msg_type} to {to_uid}: {data}");
                let q = tincan_query(&msg_type, &data);
                self.send_query(stream, to_uid, &msg_type, q).await;
            }
            Command::Raw { to_uid, payload } => {
                self.send_query(stream, to_uid, "raw query", payload).await;
            }
            Command::Stop => {}
        }
    }
}

pub(crate) async fn run(shared: Arc<Shared>, mut cmds: mpsc::UnboundedReceiver<Command>) {
    let rs = shared.clone();
    let reconnector = Box::new(
        move |_: Option<String>, slot: oneshot::Sender<Connection>| {
            tokio::spawn(connect_loop(rs.clone(), slot));
        },
    );
    let mut stream = StanzaStream::new(reconnector, QUEUE_DEPTH);
    let mut session = Session {
        shared: shared.clone(),
        online: false,
        bound: None,
        peers: HashMap::new(),
        next_id: 0,
    };
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + PRESENCE_INTERVAL,
        PRESENCE_INTERVAL,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let fatal = loop {
        tokio::select! {
            ev = stream.next() => match ev {
                Some(ev) => session.on_event(&stream, ev).await,
                None => {
                    log::error!("XMPP: the stream ended unexpectedly; XMPP signalling stopped");
                    break true;
                }
            },
            cmd = cmds.recv() => match cmd {
                None | Some(Command::Stop) => break false,
                Some(cmd) => session.on_command(&stream, cmd).await,
            },
            _ = tick.tick() => {
                if session.online {
                    log::trace!("XMPP: presence refresh");
                    session.send_presence(&stream).await;
                }
            }
            _ = shared.fatal.notified() => break true,
        }
    };
    shared.stop();
    if fatal || !session.online {
        // Not connected: nothing to close. The stream's worker waits for a connection that
        // will not come, idle, until the runtime ends.
        return;
    }
    let _ = session
        .enqueue(&stream, Presence::unavailable().into())
        .await;
    // Orderly close (unavailable presence flushed, stream footer), bounded.
    if tokio::time::timeout(CLOSE_TIMEOUT, stream.close())
        .await
        .is_err()
    {
        log::debug!("XMPP: stream close timed out");
    }
    log::info!("XMPP: logged out");
}
