//! The session task: owns the stanza stream, answers its events (login, loss, presence, IQs)
//! and the handle's commands, keeps the uid -> full JID map of the other nodes, and refreshes
//! our presence every 120 s.

use super::allow::Allow;
use super::connection::{connect_loop, Shared};
use super::stanza::{parse_tincan_query, tincan_query, tincan_uid, NS_TINCAN};
use super::{Command, Counters, XmppEvent};
use futures::StreamExt;
use proto::id::Uid;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::roster::Roster;
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
/// The most nodes in the uid -> JID map; presence from further new uids is ignored and counted.
const MAX_PEERS: usize = 1024;
/// The most accounts a refusal is logged for (once each); later ones are only counted.
const MAX_REPORTED: usize = 64;

/// State of the main task.
struct Session {
    shared: Arc<Shared>,
    online: bool,
    bound: Option<FullJid>,
    /// uid -> full JID last seen (presence or query), at most [`MAX_PEERS`].
    peers: HashMap<Uid, FullJid>,
    next_id: u64,
    /// Which accounts may signal.
    allow: Allow,
    /// The id of our roster request, until its result arrives.
    roster_request: Option<String>,
    /// Accounts whose refusal was logged.
    reported: HashSet<String>,
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
        // The roster before our presence: the server answers in order, so the roster is known
        // before the other nodes' presence (their answer to ours) arrives.
        if self.allow.uses_roster() {
            let id = self.iq_id();
            let get = Iq::from_get(
                id.clone(),
                Roster {
                    ver: None,
                    items: Vec::new(),
                },
            );
            if self.enqueue(stream, get.into()).await {
                self.roster_request = Some(id);
            } else {
                log::warn!("XMPP: roster request not queued (stream stuck)");
            }
        }
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

    /// Whether `from`'s account may signal; counts and logs (once per account) when not.
    fn allowed(&mut self, from: &Jid, what: &str) -> bool {
        let bare = from.to_bare();
        if self.allow.allows(bare.as_str()) {
            return true;
        }
        Counters::bump(&self.shared.counters.not_allowed);
        if self.reported.len() < MAX_REPORTED && self.reported.insert(bare.to_string()) {
            log::warn!(
                "XMPP: {what} from {from} ignored: {bare} is {} (counted as xmpp_not_allowed)",
                if self.allow.uses_roster() {
                    "not on the roster with a subscription both or from"
                } else {
                    "not in xmpp_allow"
                }
            );
        }
        false
    }

    /// The roster (our request's result) or a roster push.
    fn on_roster(&mut self, payload: &Element, push: bool) {
        let Ok(roster) = Roster::try_from(payload.clone()) else {
            log::debug!("XMPP: unreadable roster ignored");
            return;
        };
        let counters = self.shared.counters.clone();
        if !push {
            let left_out = self.allow.set_roster(
                roster
                    .items
                    .iter()
                    .map(|i| (i.jid.to_string(), &i.subscription)),
            );
            if left_out > 0 {
                counters
                    .roster_full
                    .fetch_add(left_out as u64, Ordering::Relaxed);
                log::warn!(
                    "XMPP: roster over {} items; {left_out} left out",
                    super::allow::MAX_ROSTER
                );
            }
            log::info!("XMPP: roster of {} contacts", roster.items.len());
            let gone: Vec<Uid> = self
                .peers
                .iter()
                .filter(|(_, j)| !self.allow.allows(j.to_bare().as_str()))
                .map(|(u, _)| *u)
                .collect();
            self.withdraw(gone);
            return;
        }
        for item in &roster.items {
            let bare = item.jid.to_string();
            match self.allow.push(&bare, &item.subscription) {
                None => Counters::bump(&counters.roster_full),
                Some((true, false)) => {
                    log::info!("XMPP: {bare} no longer on the roster: its nodes are ignored");
                    let gone: Vec<Uid> = self
                        .peers
                        .iter()
                        .filter(|(_, j)| j.to_bare().as_str().eq_ignore_ascii_case(&bare))
                        .map(|(u, _)| *u)
                        .collect();
                    self.withdraw(gone);
                }
                Some((false, true)) => {
                    log::info!("XMPP: {bare} on the roster");
                    self.reported.remove(&bare.to_lowercase());
                }
                Some(_) => {}
            }
        }
    }

    /// Nodes of an account no longer allowed: as if they had left.
    fn withdraw(&mut self, uids: Vec<Uid>) {
        for uid in uids {
            self.peers.remove(&uid);
            self.shared.emit(XmppEvent::PeerUnavailable { uid });
        }
    }

    /// Whether `uid` may be (or is) in the uid -> JID map; counted when it is full.
    fn room_for(&self, uid: Uid) -> bool {
        if self.peers.contains_key(&uid) || self.peers.len() < MAX_PEERS {
            return true;
        }
        if self
            .shared
            .counters
            .peers_full
            .fetch_add(1, Ordering::Relaxed)
            == 0
        {
            log::warn!(
                "XMPP: {MAX_PEERS} nodes known; further new nodes ignored (counted as \
                 xmpp_peers_full)"
            );
        }
        false
    }

    fn on_presence(&mut self, p: Presence) {
        let Some(from) = p.from else {
            return;
        };
        let Some(uid) = tincan_uid(&from) else {
            log::trace!("XMPP: presence from non-tincan {from} ignored");
            return;
        };
        if !self.allowed(&from, "presence") {
            return;
        }
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
                if !self.room_for(uid) {
                    return;
                }
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
            Iq::Set {
                from, id, payload, ..
            } if payload.is("query", ns::ROSTER) => {
                // A roster push comes from our own account (or the server, without "from").
                let ours = from.as_ref().is_none_or(|f| {
                    f.to_bare()
                        .as_str()
                        .eq_ignore_ascii_case(self.shared.jid.to_bare().as_str())
                });
                if ours {
                    self.on_roster(&payload, true);
                    if let Some(to) = from {
                        self.enqueue(stream, Iq::empty_result(to, id).into()).await;
                    } else {
                        let result = Iq::Result {
                            from: None,
                            to: None,
                            id,
                            payload: None,
                        };
                        self.enqueue(stream, result.into()).await;
                    }
                } else {
                    Counters::bump(&self.shared.counters.not_allowed);
                    log::debug!("XMPP: roster push from {from:?} ignored");
                }
            }
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
            Iq::Result {
                id,
                payload: Some(payload),
                ..
            } if self.roster_request.as_deref() == Some(id.as_str()) => {
                self.roster_request = None;
                self.on_roster(&payload, false);
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
        if !self.allowed(from, "query") {
            // As for any query we do not serve: nothing tells a stranger more.
            return Err((
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "not supported",
            ));
        }
        if self.is_self(from, uid) {
            return Ok(());
        }
        let counters = &self.shared.counters;
        Counters::bump(&counters.received);
        // As the original: any stanza from a tincan resource maps its uid to that JID, so
        // that we can answer a node whose presence we cannot see.
        if let Ok(full) = from.clone().try_into_full() {
            if !self.peers.contains_key(&uid) && self.room_for(uid) {
                log::debug!("XMPP: uid {uid} mapped to {full} from a query");
                self.peers.insert(uid, full);
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
            Command::RawTo { to, payload } => {
                if let Ok(to) = Jid::new(&to) {
                    let id = self.iq_id();
                    let iq = Iq::Get {
                        from: None,
                        to: Some(to),
                        id,
                        payload,
                    };
                    self.enqueue(stream, iq.into()).await;
                }
            }
            Command::Stop => {}
        }
    }
}

pub(crate) async fn run(shared: Arc<Shared>, mut cmds: mpsc::Receiver<Command>) {
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
        allow: Allow::new(shared.jid.to_bare().as_str(), shared.allow.as_deref()),
        roster_request: None,
        reported: HashSet::new(),
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
