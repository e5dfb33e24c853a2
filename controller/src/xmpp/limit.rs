//! The bound on one stanza from the server. The XML parser below `tokio-xmpp` builds each
//! stanza in memory whatever its size, so the bytes are metered before they reach it: a
//! [`StanzaMeter`] follows the XML nesting just enough to know where a stanza (a child of
//! `<stream:stream>`) ends, and [`Limited`] closes the connection (counted as
//! `xmpp_stanza_too_big`, logged once) when one grows over [`MAX_STANZA`] bytes. The module
//! then reconnects as after any connection loss.
//!
//! The bound is prosody's own default for what a client may send (`c2s_stanza_size_limit`,
//! 256 KiB): another account on the same server cannot get a stanza that big to us, so it
//! cannot use the bound to disconnect us; only a hostile or broken server can.

use super::Counters;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use proto::stanza_meter::StanzaMeter;
pub use proto::stanza_meter::MAX_STANZA;

/// The server's side of the connection, metered: a read that completes a stanza over
/// [`MAX_STANZA`] fails, which ends the connection.
pub(crate) struct Limited<S> {
    inner: S,
    meter: StanzaMeter,
    counters: Arc<Counters>,
}

impl<S> Limited<S> {
    pub(crate) fn new(inner: S, counters: Arc<Counters>) -> Limited<S> {
        Limited {
            inner,
            meter: StanzaMeter::new(MAX_STANZA),
            counters,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.meter.feed(&buf.filled()[before..]).is_err() {
                    if this.counters.stanza_too_big.fetch_add(1, Ordering::Relaxed) == 0 {
                        log::warn!(
                            "XMPP: the server sent a stanza over {MAX_STANZA} bytes; connection \
                             closed (counted as xmpp_stanza_too_big; logged once)"
                        );
                    }
                    buf.set_filled(before);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("stanza over {MAX_STANZA} bytes"),
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A stream header and a stanza of about `n` bytes (the meter's own cases are in proto).
    const HEADER: &str = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";

    fn iq(n: usize) -> String {
        format!("<message><body>{}</body></message>", "x".repeat(n))
    }

    #[tokio::test]
    async fn a_stanza_over_the_bound_ends_the_read_and_is_counted() {
        let counters = Arc::new(Counters::default());
        let small = format!("{HEADER}{}", iq(1000));
        let mut ok = Limited::new(small.as_bytes(), counters.clone());
        let mut out = Vec::new();
        ok.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, small.as_bytes());
        let big = format!("{HEADER}{}{}", iq(1000), iq(MAX_STANZA));
        let mut bad = Limited::new(big.as_bytes(), counters.clone());
        let mut out = Vec::new();
        let err = bad.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(out.len() <= HEADER.len() + iq(1000).len() + MAX_STANZA);
        assert_eq!(counters.snapshot().stanza_too_big, 1);
    }
}
