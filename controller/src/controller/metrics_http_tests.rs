use super::*;
use std::time::Instant as StdInstant;

/// An endpoint whose "controller" answers every scrape with `# EOF`.
async fn endpoint() -> SocketAddr {
    let mut e = Endpoint::bind(0).await.unwrap();
    let addr = e.addr();
    tokio::spawn(async move {
        while let Some(reply) = e.next().await {
            let _ = reply.send("# EOF\n".into());
        }
    });
    addr
}

/// Sends `request`, reads the answer to the end (bounded to 5 s).
async fn ask(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answered within 5 s")
        .unwrap();
    String::from_utf8(out).unwrap()
}

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n";

#[tokio::test]
async fn get_metrics_is_answered_other_paths_and_methods_are_refused() {
    let addr = endpoint().await;
    assert!(addr.ip().is_loopback());
    let ok = ask(addr, SCRAPE).await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(
        ok.contains(&format!("\r\nContent-Type: {CONTENT_TYPE}\r\n")),
        "{ok}"
    );
    assert!(ok.contains("\r\nContent-Length: 6\r\n"), "{ok}");
    assert!(ok.ends_with("\r\n\r\n# EOF\n"), "{ok}");
    // A query string and bare LF line ends are fine.
    let lf = ask(addr, b"GET /metrics?x=1 HTTP/1.0\n\n").await;
    assert!(lf.starts_with("HTTP/1.1 200 OK\r\n"), "{lf}");
    for (req, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "404"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "405",
        ),
        (b"GET /metrics SPDY/3\r\n\r\n", "400"),
        (b"\xff\xfe\r\n\r\n", "400"),
    ] {
        let r = ask(addr, req).await;
        assert!(r.starts_with(&format!("HTTP/1.1 {status} ")), "{r}");
    }
}

#[tokio::test]
async fn an_endless_request_head_is_cut_at_8_kib() {
    let addr = endpoint().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let junk = vec![b'a'; 1024];
    let mut sent = 0;
    let mut out = Vec::new();
    // More than the endpoint reads, as a client that does not wait would send.
    while sent < 64 * 1024 {
        if s.write_all(&junk).await.is_err() {
            break;
        }
        sent += junk.len();
    }
    let _ = timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 431 "),
        "after {sent} bytes: {text}"
    );
    assert!(ask(addr, SCRAPE).await.starts_with("HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn silent_connections_neither_block_a_scrape_nor_stay_open() {
    let addr = endpoint().await;
    // Twice as many silent connections as the endpoint keeps.
    let mut silent = Vec::new();
    for _ in 0..2 * MAX_CONNECTIONS {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(GRACE + Duration::from_millis(50)).await;
    let t = StdInstant::now();
    let ok = ask(addr, SCRAPE).await;
    assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // Each silent one is closed: the oldest to make room, the others after the read timeout.
    let t = StdInstant::now();
    for mut s in silent {
        let mut buf = [0u8; 64];
        let n = timeout(READ_TIMEOUT + Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed within the read timeout");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    assert!(t.elapsed() <= READ_TIMEOUT + Duration::from_secs(1));
}

#[test]
fn request_heads_are_parsed_by_their_request_line() {
    assert_eq!(parse_head(b"GET /metrics HTTP/1.1"), Request::Metrics);
    assert_eq!(parse_head(b"GET /metrics HTTP/1.1 x"), Request::Bad);
    assert_eq!(parse_head(b"GET  /metrics HTTP/1.1"), Request::Bad);
    assert_eq!(parse_head(b""), Request::Bad);
    assert_eq!(
        parse_head(b"HEAD /metrics HTTP/1.1"),
        Request::MethodNotAllowed
    );
    assert_eq!(
        parse_head(&[b'a'; MAX_REQUEST_BYTES + 1]),
        Request::TooLarge
    );
    assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(20));
    assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\n"), Some(19));
    assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
}
