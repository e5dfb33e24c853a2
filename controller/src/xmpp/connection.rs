//! The connection to the XMPP server and its upkeep: the state shared by the session task and
//! the reconnect task ([`Shared`]), and the reconnect loop the stream calls whenever it needs a
//! connection: login attempts with backoff (1 s doubling to 30 s), one `Offline` event per loss,
//! and a final `AuthFailed` that stops the module.

use super::login::{login, LoginError};
use super::stanza::build_jid;
use super::tls::tls_config;
use super::{Counters, XmppConfig, XmppEvent};
use proto::id::Uid;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_rustls::rustls::ClientConfig;
use tokio_xmpp::jid::FullJid;
use tokio_xmpp::stanzastream::Connection;

const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session shorter than this does not reset the reconnect backoff (e.g. two nodes with the
/// same uid kicking each other off the server).
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// Bound on one connection attempt (TCP + STARTTLS + SASL + stream restart).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Starting,
    Online,
    Offline,
    Failed,
}

pub(crate) struct LinkState {
    status: Status,
    /// Wait before the next attempt if the last connection did not last.
    delay: Duration,
    /// When the last connection was handed to the stream (None: never).
    handed_over: Option<Instant>,
    /// When that connection came online (None: it never did).
    online_since: Option<Instant>,
}

/// State shared by the session task and the reconnect task.
pub(crate) struct Shared {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) password: String,
    pub(crate) uid: Uid,
    pub(crate) jid: FullJid,
    /// `xmpp_allow`, lower-cased; `None`: the roster decides.
    pub(crate) allow: Option<Vec<String>>,
    pub(crate) tls: Arc<ClientConfig>,
    events: mpsc::Sender<XmppEvent>,
    pub(crate) counters: Arc<Counters>,
    link: Mutex<LinkState>,
    /// A final failure: the session task ends.
    pub(crate) fatal: Notify,
    /// Set when the session task ends: the reconnect task stops trying.
    stopped: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(
        cfg: XmppConfig,
        events: mpsc::Sender<XmppEvent>,
        counters: Arc<Counters>,
    ) -> Result<Shared, String> {
        let uid = cfg.uid;
        let host = cfg
            .host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err("xmpp_host is empty".into());
        }
        let jid = build_jid(&cfg.username, &host, uid)?;
        let tls = Arc::new(tls_config(cfg.ca_file.as_deref())?);
        Ok(Shared {
            host,
            port: if cfg.port == 0 { 5222 } else { cfg.port },
            password: cfg.password,
            uid,
            jid,
            allow: cfg.allow,
            tls,
            events,
            counters,
            link: Mutex::new(LinkState {
                status: Status::Starting,
                delay: BACKOFF_INITIAL,
                handed_over: None,
                online_since: None,
            }),
            fatal: Notify::new(),
            stopped: watch::Sender::new(false),
        })
    }

    /// Hands an event to the controller loop; one it has no room for is dropped and counted
    /// (logged once).
    pub(crate) fn emit(&self, ev: XmppEvent) {
        if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(ev) {
            if self.counters.events_dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                log::warn!(
                    "XMPP: the controller is not taking events; {ev:?} dropped (and any \
                     further; counted as xmpp_events_dropped)"
                );
            }
        }
    }

    fn link(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_online(&self) {
        let mut l = self.link();
        l.status = Status::Online;
        l.online_since = Some(Instant::now());
    }

    /// The stream reported a lost connection.
    pub(crate) fn connection_lost(&self) {
        let mut l = self.link();
        if l.status == Status::Online {
            l.status = Status::Offline;
            drop(l);
            log::info!(
                "XMPP: connection to {}:{} lost; reconnecting",
                self.host,
                self.port
            );
            self.emit(XmppEvent::Offline(
                "connection to the XMPP server lost".into(),
            ));
        }
    }

    /// A connection attempt failed; the caller retries after `delay`.
    fn attempt_failed(&self, msg: &str, delay: Duration) {
        log::warn!(
            "XMPP: cannot log in to {}:{} as {}: {msg}; retrying in {} s",
            self.host,
            self.port,
            self.jid,
            delay.as_secs()
        );
        let mut l = self.link();
        if matches!(l.status, Status::Online | Status::Starting) {
            l.status = Status::Offline;
            drop(l);
            self.emit(XmppEvent::Offline(msg.to_owned()));
        }
    }

    fn final_failure(&self, msg: String) {
        log::error!(
            "XMPP: login to {}:{} as {} failed: {msg}; not retrying (check xmpp_username and \
             xmpp_password)",
            self.host,
            self.port,
            self.jid.to_bare()
        );
        self.link().status = Status::Failed;
        self.emit(XmppEvent::AuthFailed(msg));
        self.fatal.notify_one();
    }

    /// The session task has ended: no more login attempts.
    pub(crate) fn stop(&self) {
        self.stopped.send_replace(true);
    }
}

/// Called by the stream whenever it needs a connection: retry until one is up, a final
/// failure, or the session task has ended.
pub(crate) async fn connect_loop(shared: Arc<Shared>, mut slot: oneshot::Sender<Connection>) {
    let mut stopped = shared.stopped.subscribe();
    let conn = tokio::select! {
        conn = attempts(&shared) => conn,
        _ = stopped.wait_for(|s| *s) => None,
    };
    match conn {
        // Err: the stream is gone (shutting down); nothing to do.
        Some(conn) => {
            let _ = slot.send(conn);
        }
        // Keep the slot until the stream's worker is gone: dropping it while the worker waits
        // for a connection makes the worker panic. The worker goes when the runtime does.
        None => slot.closed().await,
    }
}

/// Login attempts with backoff; `None` after a final failure.
async fn attempts(shared: &Shared) -> Option<Connection> {
    // Reconnect at once after a session that lasted; otherwise (it never came online, or was
    // dropped within seconds) continue the backoff, so that no server quirk or uid clash can
    // make a tight reconnect loop.
    let mut delay = {
        let l = shared.link();
        let lasted = l
            .online_since
            .is_some_and(|t| t.elapsed() >= STABLE_SESSION);
        match l.handed_over {
            Some(_) if !lasted => Some(l.delay),
            _ => None,
        }
    };
    if let Some(d) = delay {
        log::debug!("XMPP: short session; reconnecting in {} s", d.as_secs());
        tokio::time::sleep(d).await;
    }
    loop {
        let cur = delay.unwrap_or(BACKOFF_INITIAL);
        let next = (cur * 2).min(BACKOFF_MAX);
        match tokio::time::timeout(LOGIN_TIMEOUT, login(shared)).await {
            Ok(Ok(conn)) => {
                let mut l = shared.link();
                l.delay = if delay.is_some() {
                    next
                } else {
                    BACKOFF_INITIAL
                };
                l.handed_over = Some(Instant::now());
                l.online_since = None;
                return Some(conn);
            }
            Ok(Err(LoginError::Final(msg))) => {
                shared.final_failure(msg);
                return None;
            }
            Ok(Err(LoginError::Retry(msg))) => shared.attempt_failed(&msg, cur),
            Err(_) => shared.attempt_failed(
                &format!("no login within {} s", LOGIN_TIMEOUT.as_secs()),
                cur,
            ),
        }
        tokio::time::sleep(cur).await;
        delay = Some(next);
    }
}
