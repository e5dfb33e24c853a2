//! XMPP signalling with the original IPOP conventions:
//! log in with TLS (STARTTLS) as `username` with the resource `tincan<uid>`, send presence at
//! log-in and every 120 s, discover the other nodes from the presence of `tincan<40 hex>`
//! resources, and exchange `{uid, type, data}` messages as
//! `<iq type="get" to=FULLJID><query xmlns="jabber:iq:tincan"><data>D</data><type>T</type></query></iq>`.
//!
//! [`XmppClient::start`] spawns the module's tasks on the caller's tokio runtime; the handle
//! delivers [`XmppEvent`]s ([`XmppClient::recv`]) and queues messages ([`XmppClient::send`]).
//! The XMPP stack is `tokio-xmpp`'s `StanzaStream` (resource binding, liveness pings, reconnect
//! slot); this module supplies the connector (TCP, STARTTLS with rustls, SASL) so that it can
//! trust the CA in `xmpp_ca`, classify a SASL failure as final, and report connection loss.
//!
//! - `stanza`: the JID, resource and `jabber:iq:tincan` query conventions (pure);
//! - `allow`: which accounts may signal (the roster, or `xmpp_allow`) (pure);
//! - `limit`: the bound on the size of one stanza from the server;
//! - `tls`: the rustls configuration and the certificate pinning of `xmpp_ca`;
//! - `login`: TCP, STARTTLS, SASL, stream restart;
//! - `connection`: state shared with the reconnect task, the reconnect loop and its backoff;
//! - `session`: the task that owns the stream, its events and the handle's commands.
//!
//! Differences from the original (on purpose): an IQ get is answered with an IQ result (peers
//! that never answer are fine: results are not awaited), a query without `<type>` or `<data>` is
//! counted and answered with `bad-request` instead of crashing, and a wrong password stops the
//! module with one [`XmppEvent::AuthFailed`] instead of retrying.

mod allow;
mod connection;
mod limit;
mod login;
mod session;
mod stanza;
mod tls;

pub use limit::MAX_STANZA;
pub use session::PRESENCE_INTERVAL;
pub use stanza::{parse_tincan_query, tincan_query, NS_TINCAN, RESOURCE_PREFIX};

use proto::id::Uid;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_xmpp::minidom::Element;

/// What the module needs from the gvpn config (`xmpp_username`, `xmpp_password`, `xmpp_host`,
/// `xmpp_port`, and the new `xmpp_ca`).
#[derive(Clone)]
pub struct XmppConfig {
    /// Server to connect to (name or IP literal).
    pub host: String,
    /// TCP port; 0 means 5222.
    pub port: u16,
    /// The account's JID, e.g. `node1@ipop.lab`; without '@' it is `username@host`.
    pub username: String,
    pub password: String,
    /// The local uid: the resource is `tincan<uid>`.
    pub uid: Uid,
    /// PEM file with extra trust anchors (a lab CA, or the server's own self-signed
    /// certificate, which is then accepted as-is); the system roots are always trusted too.
    pub ca_file: Option<PathBuf>,
    /// `xmpp_allow`: the bare JIDs whose presence and queries are accepted. `None`: the
    /// account's roster decides (subscription "both" or "from"). Our own account always is.
    pub allow: Option<Vec<String>>,
}

impl fmt::Debug for XmppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XmppConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("uid", &self.uid)
            .field("ca_file", &self.ca_file)
            .field("allow", &self.allow)
            .finish()
    }
}

/// What the module reports to the controller loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmppEvent {
    /// Logged in (or session resumed) and presence sent.
    Online,
    /// Final: wrong password or another SASL failure, or a config the module cannot use (bad
    /// JID, unreadable `xmpp_ca`). The module has stopped and will not retry.
    AuthFailed(String),
    /// Connection lost or refused (sent once per loss, not per attempt); the module reconnects
    /// by itself with backoff (1 s doubling to 30 s) and then sends `Online` again.
    Offline(String),
    /// Presence from a `tincan<uid>` resource that is not us. Repeats at every presence of that
    /// node (every 120 s, and after every (re)login of either side): a freshness signal.
    PeerAvailable { uid: Uid, jid: String },
    /// Presence of type unavailable from that node.
    PeerUnavailable { uid: Uid },
    /// A `jabber:iq:tincan` query from a `tincan<uid>` resource.
    Message {
        uid: Uid,
        msg_type: String,
        data: String,
    },
}

/// Events waiting for the controller loop; more are dropped and counted (`events_dropped`).
const EVENT_QUEUE: usize = 1024;
/// Messages waiting to be sent; more are dropped and counted (`dropped`).
const COMMAND_QUEUE: usize = 1024;

/// Counters, for status and tests (in the controller's `get_state` as `xmpp_<name>`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct XmppStats {
    /// Successful logins (new sessions and resumptions).
    pub logins: u64,
    /// Messages handed to the stream.
    pub sent: u64,
    /// Messages dropped by `send`: uid never seen, not logged in, or queue stuck.
    pub dropped: u64,
    /// Well-formed tincan queries received.
    pub received: u64,
    /// Tincan queries received without `<data>` or `<type>`, or from a non-tincan resource.
    pub malformed: u64,
    /// IQ results received (peers acknowledging our queries).
    pub iq_results: u64,
    /// Presence and queries from accounts neither on the roster (both/from) nor in
    /// `xmpp_allow`: ignored.
    pub not_allowed: u64,
    /// Connections closed because the server sent a stanza over [`MAX_STANZA`] bytes.
    pub stanza_too_big: u64,
    /// Events dropped because the controller did not take them ([`EVENT_QUEUE`]).
    pub events_dropped: u64,
    /// Nodes not tracked because the uid -> JID map was full.
    pub peers_full: u64,
    /// Roster items left out because the roster was over its bound.
    pub roster_full: u64,
}

#[derive(Default)]
struct Counters {
    logins: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    malformed: AtomicU64,
    iq_results: AtomicU64,
    not_allowed: AtomicU64,
    stanza_too_big: AtomicU64,
    events_dropped: AtomicU64,
    peers_full: AtomicU64,
    roster_full: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> XmppStats {
        XmppStats {
            logins: self.logins.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            iq_results: self.iq_results.load(Ordering::Relaxed),
            not_allowed: self.not_allowed.load(Ordering::Relaxed),
            stanza_too_big: self.stanza_too_big.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            peers_full: self.peers_full.load(Ordering::Relaxed),
            roster_full: self.roster_full.load(Ordering::Relaxed),
        }
    }
}

enum Command {
    Send {
        to_uid: Uid,
        msg_type: String,
        data: String,
    },
    Raw {
        to_uid: Uid,
        payload: Element,
    },
    RawTo {
        to: String,
        payload: Element,
    },
    Stop,
}

/// Handle on the module's tasks. Dropping it stops them like [`XmppClient::stop`], without
/// waiting.
pub struct XmppClient {
    events: mpsc::Receiver<XmppEvent>,
    cmds: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    task: Option<JoinHandle<()>>,
}

impl XmppClient {
    /// Spawn the session task on the current tokio runtime (it must be called within one) and
    /// start logging in. Never blocks: every outcome, including a bad config, arrives as an
    /// [`XmppEvent`].
    pub fn start(cfg: XmppConfig) -> XmppClient {
        let (ev_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (cmds, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let counters = Arc::new(Counters::default());
        let task = match connection::Shared::new(cfg, ev_tx.clone(), counters.clone()) {
            Ok(shared) => Some(tokio::spawn(session::run(Arc::new(shared), cmd_rx))),
            Err(msg) => {
                log::error!("XMPP: {msg}; XMPP signalling disabled");
                let _ = ev_tx.try_send(XmppEvent::AuthFailed(msg));
                None
            }
        };
        XmppClient {
            events,
            cmds,
            counters,
            task,
        }
    }

    /// The next event; `None` once the module has stopped and every event was read.
    pub async fn recv(&mut self) -> Option<XmppEvent> {
        self.events.recv().await
    }

    /// The next event, if one is waiting; never blocks.
    pub fn try_recv(&mut self) -> Option<XmppEvent> {
        self.events.try_recv().ok()
    }

    /// Send `{type, data}` to the node `to_uid`, at the full JID last seen for it (presence or
    /// message). Dropped, and logged at debug, if that uid was never seen or we are offline.
    pub fn send(&self, to_uid: Uid, msg_type: &str, data: &str) {
        let cmd = Command::Send {
            to_uid,
            msg_type: msg_type.to_owned(),
            data: data.to_owned(),
        };
        if self.cmds.try_send(cmd).is_err() {
            Counters::bump(&self.counters.dropped);
            log::debug!("XMPP: not running or queue full; {msg_type} to {to_uid} dropped");
        }
    }

    /// Send an arbitrary query payload to a peer: for tests of the receiving side's parser.
    #[doc(hidden)]
    pub fn send_raw_query(&self, to_uid: Uid, payload: Element) {
        let _ = self.cmds.try_send(Command::Raw { to_uid, payload });
    }

    /// Send a query to a full JID that may never have been seen: for tests of the receiving
    /// side's refusal of strangers.
    #[doc(hidden)]
    pub fn send_raw_query_to(&self, to: &str, payload: Element) {
        let _ = self.cmds.try_send(Command::RawTo {
            to: to.to_owned(),
            payload,
        });
    }

    pub fn stats(&self) -> XmppStats {
        self.counters.snapshot()
    }

    /// True once the session task has ended (after `AuthFailed`, or a fatal internal error).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Log out (presence unavailable, stream close; bounded to a few seconds) and wait for the
    /// session task to end.
    pub async fn stop(mut self) {
        let _ = self.cmds.send(Command::Stop).await;
        if let Some(t) = self.task.take() {
            if let Err(e) = t.await {
                if e.is_panic() {
                    log::error!("XMPP: the session task panicked");
                }
            }
        }
    }
}

impl Drop for XmppClient {
    fn drop(&mut self) {
        let _ = self.cmds.try_send(Command::Stop);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const UID: Uid = Uid([0x01; 20]);

    async fn next_event(c: &mut XmppClient) -> XmppEvent {
        tokio::time::timeout(Duration::from_secs(5), c.recv())
            .await
            .expect("no event within 5 s")
            .expect("event channel closed")
    }

    #[tokio::test]
    async fn bad_config_is_final_and_prompt() {
        let mut c = XmppClient::start(XmppConfig {
            host: "127.0.0.1".into(),
            port: 1,
            username: "@ipop.lab".into(),
            password: "x".into(),
            uid: UID,
            ca_file: None,
            allow: None,
        });
        let ev = next_event(&mut c).await;
        assert!(
            matches!(ev, XmppEvent::AuthFailed(ref m) if m.contains("xmpp_username")),
            "{ev:?}"
        );
        c.stop().await;
    }

    #[tokio::test]
    async fn refused_connection_is_offline_then_stop_is_prompt() {
        // Port 1 on loopback: connection refused at once.
        let mut c = XmppClient::start(XmppConfig {
            host: "127.0.0.1".into(),
            port: 1,
            username: "node1@ipop.lab".into(),
            password: "x".into(),
            uid: UID,
            ca_file: None,
            allow: None,
        });
        let ev = next_event(&mut c).await;
        assert!(matches!(ev, XmppEvent::Offline(_)), "{ev:?}");
        // Retries are silent: no second Offline within the next attempts.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(c.try_recv(), None);
        let t1 = Instant::now();
        c.stop().await;
        assert!(
            t1.elapsed() < Duration::from_secs(4),
            "stop took {:?}",
            t1.elapsed()
        );
    }
}
