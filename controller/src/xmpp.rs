//! XMPP signalling with the original IPOP conventions (protocol reference sections 3 and 8.2):
//! log in with TLS (STARTTLS) as `username` with the resource `tincan<uid>`, send presence at
//! log-in and every 120 s, discover the other nodes from the presence of `tincan<40 hex>`
//! resources, and exchange `{uid, type, data}` messages as
//! `<iq type="get" to=FULLJID><query xmlns="jabber:iq:tincan"><data>D</data><type>T</type></query></iq>`.
//!
//! The controller's loop is synchronous, so [`XmppClient`] runs a single-threaded tokio runtime on
//! a background thread and talks to the loop through std channels: [`XmppClient::try_recv`] polls
//! [`XmppEvent`]s, [`XmppClient::send`] queues a message. The XMPP stack is `tokio-xmpp`'s
//! [`StanzaStream`] (resource binding, stream management, liveness pings, reconnect slot); this
//! module supplies the connector (TCP, STARTTLS with rustls, SASL) so that it can trust the CA in
//! `xmpp_ca`, classify a SASL failure as final, and report connection loss.
//!
//! Differences from the original (on purpose): an IQ get is answered with an IQ result (peers
//! that never answer are fine: results are not awaited), a query without `<type>` or `<data>` is
//! counted and answered with `bad-request` instead of crashing, and a wrong password stops the
//! module with one [`XmppEvent::AuthFailed`] instead of retrying.

// Not wired into the controller yet (issue 4): remove once controller.rs uses the module.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::sasl::DefinedCondition as SaslCondition;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::stanzastream::{Connection, Event, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::{
    initiate_stream, ReadError, StreamHeader, Timeouts, XmppStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;

/// Namespace of the original's signalling query.
pub const NS_TINCAN: &str = "jabber:iq:tincan";
/// Resource prefix of every IPOP node; the uid (40 hex) follows.
pub const RESOURCE_PREFIX: &str = "tincan";
/// Presence refresh period of the original (`T:xmppnetwork.cc`).
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(120);
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session shorter than this does not reset the reconnect backoff (e.g. two nodes with the
/// same uid kicking each other off the server).
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// Bound on one connection attempt (TCP + STARTTLS + SASL + stream restart).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on handing a stanza to the stream's queue.
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the orderly shutdown in [`XmppClient::stop`].
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
const QUEUE_DEPTH: usize = 256;

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
    /// The local uid (40 hex): the resource is `tincan<uid>`.
    pub uid: String,
    /// PEM file with extra trust anchors (a lab CA, or the server's own self-signed
    /// certificate, which is then accepted as-is); the system roots are always trusted too.
    pub ca_file: Option<PathBuf>,
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
            .finish()
    }
}

/// What the module reports to the controller loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmppEvent {
    /// Logged in (or session resumed) and presence sent.
    Online,
    /// Final: wrong password or another SASL failure, or a config the module cannot use (bad
    /// JID or uid, unreadable `xmpp_ca`). The module has stopped and will not retry.
    AuthFailed(String),
    /// Connection lost or refused (sent once per loss, not per attempt); the module reconnects
    /// by itself with backoff (1 s doubling to 30 s) and then sends `Online` again.
    Offline(String),
    /// Presence from a `tincan<uid>` resource that is not us. Repeats at every presence of that
    /// node (every 120 s, and after every (re)login of either side): a freshness signal.
    PeerAvailable { uid: String, jid: String },
    /// Presence of type unavailable from that node.
    PeerUnavailable { uid: String },
    /// A `jabber:iq:tincan` query from a `tincan<uid>` resource.
    Message {
        uid: String,
        msg_type: String,
        data: String,
    },
}

/// Counters, for status and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
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
}

#[derive(Default)]
struct Counters {
    logins: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    malformed: AtomicU64,
    iq_results: AtomicU64,
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
        }
    }
}

enum Command {
    Send {
        to_uid: String,
        msg_type: String,
        data: String,
    },
    #[cfg(test)]
    Raw {
        to_uid: String,
        payload: Element,
    },
    Stop,
}

/// Handle on the XMPP thread. Dropping it stops the thread like [`XmppClient::stop`].
pub struct XmppClient {
    events: std_mpsc::Receiver<XmppEvent>,
    cmds: mpsc::UnboundedSender<Command>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl XmppClient {
    /// Spawn the XMPP thread and start logging in. Never blocks: every outcome, including a bad
    /// config, arrives as an [`XmppEvent`].
    pub fn start(cfg: XmppConfig) -> XmppClient {
        let (ev_tx, events) = std_mpsc::channel();
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let thread_ev = ev_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("xmpp".into())
            .spawn(move || thread_main(cfg, thread_ev, cmd_rx, thread_counters));
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("XMPP: cannot start the XMPP thread: {e}");
                let _ = ev_tx.send(XmppEvent::AuthFailed(format!(
                    "cannot start the XMPP thread: {e}"
                )));
                None
            }
        };
        XmppClient {
            events,
            cmds,
            counters,
            thread,
        }
    }

    /// Next event, if any; never blocks.
    pub fn try_recv(&self) -> Option<XmppEvent> {
        self.events.try_recv().ok()
    }

    /// Send `{type, data}` to the node `to_uid`, at the full JID last seen for it (presence or
    /// message). Dropped, and logged at debug, if that uid was never seen or we are offline.
    pub fn send(&self, to_uid: &str, msg_type: &str, data: &str) {
        let cmd = Command::Send {
            to_uid: to_uid.to_ascii_lowercase(),
            msg_type: msg_type.to_owned(),
            data: data.to_owned(),
        };
        if self.cmds.send(cmd).is_err() {
            Counters::bump(&self.counters.dropped);
            log::debug!("XMPP: not running; {msg_type} to {to_uid} dropped");
        }
    }

    /// Send an arbitrary query payload to a peer (tests of the receiving side's parser).
    #[cfg(test)]
    pub fn send_raw_query(&self, to_uid: &str, payload: Element) {
        let _ = self.cmds.send(Command::Raw {
            to_uid: to_uid.to_ascii_lowercase(),
            payload,
        });
    }

    pub fn stats(&self) -> XmppStats {
        self.counters.snapshot()
    }

    /// True once the XMPP thread has ended (after `AuthFailed`, or a fatal internal error).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Log out (presence unavailable, stream close; bounded to a few seconds) and join the thread.
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for XmppClient {
    fn drop(&mut self) {
        let _ = self.cmds.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("XMPP: the XMPP thread panicked");
            }
        }
    }
}

fn thread_main(
    cfg: XmppConfig,
    events: std_mpsc::Sender<XmppEvent>,
    cmds: mpsc::UnboundedReceiver<Command>,
    counters: Arc<Counters>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("XMPP: cannot create the tokio runtime: {e}");
            let _ = events.send(XmppEvent::AuthFailed(format!("no tokio runtime: {e}")));
            return;
        }
    };
    let shared = match Shared::new(cfg, events.clone(), counters) {
        Ok(s) => Arc::new(s),
        Err(msg) => {
            log::error!("XMPP: {msg}; XMPP signalling disabled");
            let _ = events.send(XmppEvent::AuthFailed(msg));
            return;
        }
    };
    rt.block_on(run(shared, cmds));
    // Drops the reconnect task and the stream workers without polling them again.
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Starting,
    Online,
    Offline,
    Failed,
}

struct LinkState {
    status: Status,
    /// Wait before the next attempt if the last connection did not last.
    delay: Duration,
    /// When the last connection was handed to the stream (None: never).
    handed_over: Option<Instant>,
    /// When that connection came online (None: it never did).
    online_since: Option<Instant>,
}

/// State shared by the main task and the reconnect task.
struct Shared {
    host: String,
    port: u16,
    password: String,
    uid: String,
    jid: FullJid,
    tls: Arc<ClientConfig>,
    events: std_mpsc::Sender<XmppEvent>,
    counters: Arc<Counters>,
    link: Mutex<LinkState>,
    fatal: Notify,
}

impl Shared {
    fn new(
        cfg: XmppConfig,
        events: std_mpsc::Sender<XmppEvent>,
        counters: Arc<Counters>,
    ) -> Result<Shared, String> {
        let uid = check_uid(&cfg.uid)?;
        let host = cfg
            .host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err("xmpp_host is empty".into());
        }
        let jid = build_jid(&cfg.username, &host, &uid)?;
        let tls = Arc::new(tls_config(cfg.ca_file.as_deref())?);
        Ok(Shared {
            host,
            port: if cfg.port == 0 { 5222 } else { cfg.port },
            password: cfg.password,
            uid,
            jid,
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
        })
    }

    fn emit(&self, ev: XmppEvent) {
        let _ = self.events.send(ev);
    }

    fn link(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_online(&self) {
        let mut l = self.link();
        l.status = Status::Online;
        l.online_since = Some(Instant::now());
    }

    /// The stream reported a lost connection.
    fn connection_lost(&self) {
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
}

/// `uid` must be 40 hex digits; returned lowercase.
fn check_uid(uid: &str) -> Result<String, String> {
    if uid.len() == 40 && uid.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(uid.to_ascii_lowercase())
    } else {
        Err(format!("uid {uid:?} is not 40 hex digits"))
    }
}

/// The full JID to log in with: `username` (or `username@host`) + `/tincan<uid>`.
fn build_jid(username: &str, host: &str, uid: &str) -> Result<FullJid, String> {
    let username = username.trim();
    if username.is_empty() {
        return Err("xmpp_username is empty".into());
    }
    let bare = if username.contains('@') {
        let j = Jid::new(username).map_err(|e| format!("xmpp_username {username:?}: {e}"))?;
        j.to_bare()
    } else {
        let s = format!("{username}@{host}");
        BareJid::new(&s).map_err(|e| format!("JID {s:?}: {e}"))?
    };
    if bare.node().is_none() {
        return Err(format!("xmpp_username {username:?} has no user part"));
    }
    bare.with_resource_str(&format!("{RESOURCE_PREFIX}{uid}"))
        .map_err(|e| format!("resource for uid {uid}: {e}"))
}

/// The uid of a `tincan<40 hex>` resource (lowercase), if `jid` has one.
fn tincan_uid(jid: &Jid) -> Option<String> {
    let res = jid.resource()?.as_str();
    let hex = res.strip_prefix(RESOURCE_PREFIX)?;
    check_uid(hex).ok()
}

/// `<query xmlns="jabber:iq:tincan"><data>D</data><type>T</type></query>`
pub fn tincan_query(msg_type: &str, data: &str) -> Element {
    Element::builder("query", NS_TINCAN)
        .append(Element::builder("data", NS_TINCAN).append(data).build())
        .append(Element::builder("type", NS_TINCAN).append(msg_type).build())
        .build()
}

/// `(type, data)` of a tincan query; `None` if `<type>` or `<data>` is missing or `<type>` is
/// empty. The children are matched by name whatever their namespace.
pub fn parse_tincan_query(query: &Element) -> Option<(String, String)> {
    let child = |name: &str| query.children().find(|c| c.name() == name);
    let msg_type = child("type")?.text();
    let data = child("data")?.text();
    if msg_type.is_empty() {
        return None;
    }
    Some((msg_type, data))
}

/// Accepts certificates that chain to the trust anchors (system roots + `xmpp_ca`) and, in
/// addition, any certificate byte-identical to one in `xmpp_ca`: a lab's self-signed server
/// certificate works even without a subjectAltName or with CA:TRUE, as `openssl req -x509` makes.
#[derive(Debug)]
struct PinningVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// rustls (ring provider) trusting the system roots plus the certificates in `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    log::debug!("XMPP: {added} system trust anchors");
    let mut pinned = Vec::new();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("xmpp_ca {}: cannot read: {e}", path.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("xmpp_ca {}: {e}", path.display()))?;
            // A leaf used as its own anchor may be refused as an anchor; it is pinned anyway.
            let _ = roots.add(cert.clone());
            pinned.push(cert);
        }
        if pinned.is_empty() {
            return Err(format!(
                "xmpp_ca {}: no PEM certificate in the file",
                path.display()
            ));
        }
    }
    if roots.is_empty() && pinned.is_empty() {
        return Err("no trust anchors: no system roots and no xmpp_ca".into());
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("TLS verifier: {e}"))?;
    let verifier = Arc::new(PinningVerifier { inner, pinned });
    let cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(cfg)
}

enum LoginError {
    /// Do not retry (SASL failure).
    Final(String),
    /// Retry with backoff.
    Retry(String),
}

impl From<std::io::Error> for LoginError {
    fn from(e: std::io::Error) -> Self {
        LoginError::Retry(e.to_string())
    }
}

impl From<tokio_xmpp::xmlstream::RecvFeaturesError> for LoginError {
    fn from(e: tokio_xmpp::xmlstream::RecvFeaturesError) -> Self {
        LoginError::Retry(tokio_xmpp::Error::from(e).to_string())
    }
}

fn timeouts() -> Timeouts {
    // 30 s without incoming data makes the stream send a ping IQ to the server; nothing within
    // 15 s more and the connection is declared dead and replaced (the original pinged every
    // 15 s with a 5 s timeout).
    Timeouts {
        read_timeout: Duration::from_secs(30),
        response_timeout: Duration::from_secs(15),
    }
}

/// TCP, STARTTLS, TLS, SASL and stream restart: a stream ready for resource binding.
async fn login(shared: &Shared) -> Result<Connection, LoginError> {
    let domain = shared.jid.domain().as_str().to_owned();
    let header = || StreamHeader {
        to: Some(Cow::Owned(domain.clone())),
        from: None,
        id: None,
    };
    let tcp = TcpStream::connect((shared.host.as_str(), shared.port))
        .await
        .map_err(|e| LoginError::Retry(format!("TCP connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let plain =
        initiate_stream(BufStream::new(tcp), ns::JABBER_CLIENT, header(), timeouts()).await?;
    let (features, mut plain): (_, XmppStream<_>) = plain.recv_features().await?;
    if !features.can_starttls() {
        return Err(LoginError::Retry(
            "the server does not offer STARTTLS (TLS is required)".into(),
        ));
    }
    plain
        .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
            starttls::Request,
        )))
        .await?;
    loop {
        match plain
            .next()
            .await
            .map(|r| r.and_then(|v| v.into_read_error()))
        {
            Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
            Some(Ok(XmppStreamElement::Starttls(_))) => {
                return Err(LoginError::Retry("the server refused STARTTLS".into()))
            }
            Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => (),
            Some(Err(ReadError::HardError(e))) => return Err(e.into()),
            Some(Err(ReadError::ParseError(e))) => {
                return Err(LoginError::Retry(format!("STARTTLS: {e}")))
            }
            None | Some(Err(ReadError::StreamFooterReceived)) => {
                return Err(LoginError::Retry("disconnected during STARTTLS".into()))
            }
        }
    }
    let tcp = plain.into_inner().into_inner();
    let name = ServerName::try_from(domain.clone())
        .map_err(|e| LoginError::Final(format!("TLS server name {domain:?}: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(shared.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| LoginError::Retry(format!("TLS with {domain}: {e}")))?;
    let secure =
        initiate_stream(BufStream::new(tls), ns::JABBER_CLIENT, header(), timeouts()).await?;
    let (features, secure) = secure.recv_features().await?;
    // No channel binding: some servers advertise -PLUS mechanisms with binding types we cannot
    // match, which would look like a wrong password; the certificate check already binds us.
    let node = shared
        .jid
        .node()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    let creds = sasl::common::Credentials::default()
        .with_username(node)
        .with_password(shared.password.clone())
        .with_channel_binding(sasl::common::ChannelBinding::None);
    let authed = tokio_xmpp::client_login(secure, features.sasl_mechanisms, creds)
        .await
        .map_err(|e| match e {
            tokio_xmpp::Error::Auth(tokio_xmpp::error::AuthError::Fail(
                SaslCondition::TemporaryAuthFailure | SaslCondition::Aborted,
            )) => LoginError::Retry(e.to_string()),
            tokio_xmpp::Error::Auth(a) => LoginError::Final(format!("authentication: {a}")),
            other => LoginError::Retry(other.to_string()),
        })?;
    let bound = authed.send_header(header()).await?;
    let (mut features, stream) = bound.recv_features().await?;
    // No XEP-0198 stream management. (1) tokio-xmpp 6 cannot parse prosody's `<failed/>` without
    // 'h' when a resumption is refused (e.g. after a server restart), and would retry the
    // resumption forever. (2) A resumable session stays "available" on the server for minutes
    // (smacks_hibernation_time) after the node is gone, so peers would not see it leave.
    features.stream_management = None;
    Ok(Connection {
        stream: stream.box_stream(),
        features,
        identity: shared.jid.clone().into(),
    })
}

/// Called by the stream whenever it needs a connection: retry until one is up, a final
/// failure, or the runtime shuts down.
async fn connect_loop(shared: Arc<Shared>, slot: oneshot::Sender<Connection>) {
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
        match tokio::time::timeout(LOGIN_TIMEOUT, login(&shared)).await {
            Ok(Ok(conn)) => {
                {
                    let mut l = shared.link();
                    l.delay = if delay.is_some() {
                        next
                    } else {
                        BACKOFF_INITIAL
                    };
                    l.handed_over = Some(Instant::now());
                    l.online_since = None;
                }
                // Err: the stream is gone (shutting down); nothing to do.
                let _ = slot.send(conn);
                return;
            }
            Ok(Err(LoginError::Final(msg))) => {
                shared.final_failure(msg);
                // Keep the slot: dropping it would make the stream worker panic. The runtime
                // shuts down and drops this task.
                let _slot = slot;
                std::future::pending::<()>().await;
                return;
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

/// State of the main task.
struct Session {
    shared: Arc<Shared>,
    online: bool,
    bound: Option<FullJid>,
    /// uid -> full JID last seen (presence or query).
    peers: HashMap<String, FullJid>,
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

    fn is_self(&self, from: &Jid, uid: &str) -> bool {
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
        if self.is_self(&from, &uid) {
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
                let prev = self.peers.insert(uid.clone(), full);
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
        if self.is_self(from, &uid) {
            return Ok(());
        }
        Counters::bump(&counters.received);
        // As the original: any stanza from a tincan resource maps its uid to that JID, so
        // that we can answer a node whose presence we cannot see.
        if let Ok(full) = from.clone().try_into_full() {
            if !self.peers.contains_key(&uid) {
                log::debug!("XMPP: uid {uid} mapped to {full} from a query");
                self.peers.insert(uid.clone(), full);
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

    async fn send_query(&mut self, stream: &StanzaStream, to_uid: &str, what: &str, q: Element) {
        let counters = &self.shared.counters;
        let Some(to) = self.peers.get(to_uid).cloned() else {
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
                self.send_query(stream, &to_uid, &msg_type, q).await;
            }
            #[cfg(test)]
            Command::Raw { to_uid, payload } => {
                self.send_query(stream, &to_uid, "raw query", payload).await;
            }
            Command::Stop => {}
        }
    }
}

async fn run(shared: Arc<Shared>, mut cmds: mpsc::UnboundedReceiver<Command>) {
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
    if fatal || !session.online {
        // Not connected: nothing to close; the runtime shutdown drops the reconnect task.
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

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn jid_from_username() {
        let j = build_jid("node1@ipop.lab", "10.0.0.1", UID).unwrap();
        assert_eq!(j.to_string(), format!("node1@ipop.lab/tincan{UID}"));
        let j = build_jid("node1", "ipop.lab", UID).unwrap();
        assert_eq!(j.to_string(), format!("node1@ipop.lab/tincan{UID}"));
        // A resource in the username is replaced by ours.
        let j = build_jid("node1@ipop.lab/other", "x", UID).unwrap();
        assert_eq!(j.resource().as_str(), format!("tincan{UID}"));
        assert!(build_jid("", "ipop.lab", UID).is_err());
        assert!(build_jid("@ipop.lab", "ipop.lab", UID).is_err());
    }

    #[test]
    fn uid_rules() {
        assert_eq!(check_uid(&UID.to_uppercase()).unwrap(), UID);
        assert!(check_uid("abc").is_err());
        assert!(check_uid(&format!("{}g", &UID[..39])).is_err());
        let j = Jid::new(&format!("a@b/tincan{UID}")).unwrap();
        assert_eq!(tincan_uid(&j).as_deref(), Some(UID));
        for bad in [
            "a@b/tincan",
            "a@b/phone",
            "a@b",
            &format!("a@b/tincan{UID}0"),
        ] {
            assert_eq!(tincan_uid(&Jid::new(bad).unwrap()), None, "{bad}");
        }
    }

    #[test]
    fn query_round_trip() {
        let data = "  fpr 1:2:udp:10.0.0.1:5000 <&>\"' ";
        let q = tincan_query("con_resp", data);
        let xml = String::from(&q);
        assert!(xml.contains("jabber:iq:tincan"), "{xml}");
        let back: Element = xml.parse().unwrap();
        assert_eq!(
            parse_tincan_query(&back),
            Some(("con_resp".to_owned(), data.to_owned()))
        );
        // The original's exact form, children inheriting the namespace.
        let orig: Element = "<query xmlns='jabber:iq:tincan'><data>D</data><type>T</type></query>"
            .parse()
            .unwrap();
        assert_eq!(
            parse_tincan_query(&orig),
            Some(("T".to_owned(), "D".to_owned()))
        );
        let empty: Element = "<query xmlns='jabber:iq:tincan'><data/><type>T</type></query>"
            .parse()
            .unwrap();
        assert_eq!(parse_tincan_query(&empty), Some(("T".into(), "".into())));
    }

    #[test]
    fn malformed_queries() {
        for xml in [
            "<query xmlns='jabber:iq:tincan'><data>D</data></query>",
            "<query xmlns='jabber:iq:tincan'><type>T</type></query>",
            "<query xmlns='jabber:iq:tincan'><data>D</data><type/></query>",
            "<query xmlns='jabber:iq:tincan'/>",
        ] {
            let e: Element = xml.parse().unwrap();
            assert_eq!(parse_tincan_query(&e), None, "{xml}");
        }
    }

    #[test]
    fn tls_config_errors() {
        assert!(
            tls_config(None).is_ok() || rustls_native_certs::load_native_certs().certs.is_empty()
        );
        let err = tls_config(Some(std::path::Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        let dir = std::env::temp_dir().join(format!("xmpp-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let err = tls_config(Some(&f)).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_config_is_final_and_prompt() {
        let c = XmppClient::start(XmppConfig {
            host: "127.0.0.1".into(),
            port: 1,
            username: "node1@ipop.lab".into(),
            password: "x".into(),
            uid: "short".into(),
            ca_file: None,
        });
        let t0 = Instant::now();
        let ev = loop {
            if let Some(ev) = c.try_recv() {
                break ev;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "no event");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(
            matches!(ev, XmppEvent::AuthFailed(ref m) if m.contains("uid")),
            "{ev:?}"
        );
        c.stop();
    }

    #[test]
    fn refused_connection_is_offline_then_stop_is_prompt() {
        // Port 1 on loopback: connection refused at once.
        let c = XmppClient::start(XmppConfig {
            host: "127.0.0.1".into(),
            port: 1,
            username: "node1@ipop.lab".into(),
            password: "x".into(),
            uid: UID.into(),
            ca_file: None,
        });
        let t0 = Instant::now();
        let ev = loop {
            if let Some(ev) = c.try_recv() {
                break ev;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "no event");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(matches!(ev, XmppEvent::Offline(_)), "{ev:?}");
        // Retries are silent: no second Offline within the next attempts.
        std::thread::sleep(Duration::from_millis(3500));
        assert_eq!(c.try_recv(), None);
        let t1 = Instant::now();
        c.stop();
        assert!(
            t1.elapsed() < Duration::from_secs(4),
            "stop took {:?}",
            t1.elapsed()
        );
    }
}
