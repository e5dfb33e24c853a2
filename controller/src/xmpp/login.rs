//! Logging in: TCP, STARTTLS (TLS is required), SASL and the stream restart, giving a stream
//! ready for resource binding; and which failures are final (a refused password) and which are
//! retried.

use super::connection::Shared;
use futures::{SinkExt, StreamExt};
use std::borrow::Cow;
use std::time::Duration;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::sasl::DefinedCondition as SaslCondition;
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::stanzastream::Connection;
use tokio_xmpp::xmlstream::{
    initiate_stream, ReadError, StreamHeader, Timeouts, XmppStream, XmppStreamElement,
};

pub(crate) enum LoginError {
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
pub(crate) async fn login(shared: &Shared) -> Result<Connection, LoginError> {
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
    // Every byte from the server after TLS is metered: no stanza over MAX_STANZA is parsed.
    let tls = super::limit::Limited::new(tls, shared.counters.clone());
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
