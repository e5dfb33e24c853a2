//! The metrics endpoint's HTTP side: `GET /metrics` on 127.0.0.1:<metrics_port>, answered
//! with the text the controller's loop writes (`metrics`). Any local process can connect, so
//! nothing it does can hang or grow the controller: a request head is read for at most
//! [`READ_TIMEOUT`] and [`MAX_REQUEST_BYTES`], a connection lives at most
//! [`CONNECTION_TIMEOUT`], and connections are bounded: past [`MAX_CONNECTIONS`], one more
//! closes the oldest that has still not sent its whole request after [`GRACE`] (a scraper
//! sends it at once, so connections that send nothing push each other out, never a scrape),
//! and past [`MAX_OPEN`] a new one is closed at once. The connections run as tasks of their own; the loop only sees a request for the
//! text, one at a time, on a bounded channel.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

pub use proto::http_head::{head_end, parse_head, Request, MAX_REQUEST_BYTES};
/// Time for the whole request head to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for a connection from accept to the last byte of the answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// After the answer, what the client still sends is read and dropped for this long, this
/// much at most.
const DRAIN_TIME: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 256 * 1024;
/// Connections open at once before the oldest still sending its request is closed to take one
/// more.
pub const MAX_CONNECTIONS: usize = 8;
/// A connection this young is not closed for a newer one: its request may be on its way.
pub const GRACE: Duration = Duration::from_millis(100);
/// Connections open at once, at most (when all the others are young or being answered).
pub const MAX_OPEN: usize = 64;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A request for the metrics text, answered on the sender.
pub type TextRequest = oneshot::Sender<String>;

/// The listening endpoint; dropping it stops accepting.
pub struct Endpoint {
    requests: mpsc::Receiver<TextRequest>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Endpoint {
    /// Listens on 127.0.0.1:`port` (0: any free port). Must run on a tokio runtime.
    pub async fn bind(port: u16) -> io::Result<Endpoint> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let (tx, requests) = mpsc::channel(MAX_CONNECTIONS);
        let task = tokio::spawn(serve(listener, tx));
        Ok(Endpoint {
            requests,
            addr,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next scrape's request for the text.
    pub async fn next(&mut self) -> Option<TextRequest> {
        self.requests.recv().await
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, tx: mpsc::Sender<TextRequest>) {
    // Each connection, whether its request head is read, and when it was accepted.
    let mut open: VecDeque<(JoinHandle<()>, Arc<AtomicBool>, Instant)> = VecDeque::new();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            // Out of descriptors, or a connection reset before accept: try again shortly.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        open.retain(|(h, _, _)| !h.is_finished());
        if open.len() >= MAX_CONNECTIONS {
            let now = Instant::now();
            let stalled = open.iter().position(|(_, read, at)| {
                !read.load(Ordering::Relaxed) && now.duration_since(*at) >= GRACE
            });
            match stalled {
                Some(i) => {
                    let (oldest, _, _) = open.remove(i).expect("found");
                    oldest.abort();
                }
                // Too many young or answered ones: this one is closed.
                None if open.len() >= MAX_OPEN => continue,
                None => {}
            }
        }
        let tx = tx.clone();
        let read = Arc::new(AtomicBool::new(false));
        let head_read = read.clone();
        let task = tokio::spawn(async move {
            let _ = timeout(CONNECTION_TIMEOUT, answer(stream, tx, &head_read)).await;
        });
        open.push_back((task, read, Instant::now()));
    }
}

/// Reads a request head: up to the empty line, [`MAX_REQUEST_BYTES`] at most.
async fn read_head(stream: &mut TcpStream) -> io::Result<Request> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head) {
            return Ok(parse_head(&head[..end]));
        }
        if head.len() > MAX_REQUEST_BYTES {
            return Ok(Request::TooLarge);
        }
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

async fn answer(
    mut stream: TcpStream,
    tx: mpsc::Sender<TextRequest>,
    head_read: &AtomicBool,
) -> io::Result<()> {
    let request = timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    head_read.store(true, Ordering::Relaxed);
    let text = "text/plain; charset=utf-8";
    let reply = match request {
        Request::Metrics => {
            let (reply, body) = oneshot::channel();
            tx.send(reply)
                .await
                .map_err(|_| io::ErrorKind::BrokenPipe)?;
            let body = body.await.map_err(|_| io::ErrorKind::BrokenPipe)?;
            response("200 OK", CONTENT_TYPE, &body)
        }
        Request::NotFound => response("404 Not Found", text, "only /metrics is served\n"),
        Request::MethodNotAllowed => response(
            "405 Method Not Allowed",
            text,
            "only GET /metrics is served\n",
        ),
        Request::Bad => response("400 Bad Request", text, "not an HTTP/1 request\n"),
        Request::TooLarge => response(
            "431 Request Header Fields Too Large",
            text,
            "request head over 8 KiB\n",
        ),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await?;
    // What the client still sends (the rest of a head too large) is read and dropped for a
    // moment: closing with it unread would reset the connection, and the client could lose
    // the answer.
    let mut sink = [0u8; 4096];
    let _ = timeout(DRAIN_TIME, async {
        let mut left = DRAIN_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
#[path = "metrics_http_tests.rs"]
mod tests;
