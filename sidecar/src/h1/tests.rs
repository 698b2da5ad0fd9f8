//! The fast path against real sockets on loopback, with hyper behind it for
//! what it hands over.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::io::DuplexStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::body::{full, RequestBody};
use crate::server::{serve as serve_listener, Protocols, ServerLimits};

/// A listener answering with [`echo`]; counts requests. Returns its
/// address and the stop switch.
pub(super) async fn echo_server() -> (String, Arc<AtomicUsize>, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = ServerLimits {
        max_header_bytes: 16 * 1024,
        header_read_timeout: Duration::from_secs(2),
        max_connections: 64,
    };
    tokio::spawn(serve_listener(
        listener,
        Protocols::Http1AndH2,
        limits,
        None,
        move |req: Request<RequestBody>, _peer| {
            counter.fetch_add(1, Ordering::SeqCst);
            echo(req)
        },
        async move {
            let _ = rx.await;
        },
        Duration::from_secs(2),
    ));
    (addr, count, tx)
}

/// Answers `METHOD TARGET BODY` with the request's own method, target and
/// body.
pub(super) async fn echo(req: Request<RequestBody>) -> Response<BoxBody> {
    let (parts, body) = req.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = format!(
        "{} {} {}",
        parts.method,
        parts.uri,
        String::from_utf8_lossy(&body)
    );
    Response::new(full(text))
}

/// Writes `bytes` and reads until the peer closes or `responses` complete
/// responses (by content-length) have arrived.
async fn exchange(stream: &mut TcpStream, bytes: &[u8], responses: usize) -> String {
    stream.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if complete_responses(&text) >= responses {
            return text;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        if n == 0 {
            return String::from_utf8_lossy(&got).to_string();
        }
        got.extend_from_slice(&chunk[..n]);
    }
}

fn complete_responses(text: &str) -> usize {
    let mut count = 0;
    let mut rest = text;
    while let Some(end) = rest.find("\r\n\r\n") {
        let head = &rest[..end];
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if rest.len() < end + 4 + len {
            break;
        }
        count += 1;
        rest = &rest[end + 4 + len..];
    }
    count
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (addr, count, _stop) = echo_server().await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let text = exchange(
        &mut s,
        b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nPOST /b HTTP/1.1\r\ncontent-length: 3\r\n\r\nxyz",
        2,
    )
    .await;
    let a = text.find("GET /a ").unwrap();
    let b = text.find("POST /b xyz").unwrap();
    assert!(a < b, "{text}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // The answer to HEAD carries the length a GET would get, and no body:
    // the next response follows its head at once.
    let text = exchange(
        &mut s,
        b"HEAD /c HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n",
        1,
    )
    .await;
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("content-length: 8"), "{text}");
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_chunked_request_is_handed_to_hyper_mid_connection() {
    let (addr, _count, _stop) = echo_server().await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let first = exchange(&mut s, b"GET /fast HTTP/1.1\r\n\r\n", 1).await;
    assert!(first.contains("GET /fast "), "{first}");
    // hyper reads the chunked body; the connection stays open after it.
    let second = exchange(
        &mut s,
        b"POST /slow HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        1,
    )
    .await;
    assert!(second.contains("POST /slow abc"), "{second}");
    let third = exchange(&mut s, b"GET /again HTTP/1.1\r\n\r\n", 1).await;
    assert!(third.contains("GET /again "), "{third}");
}

#[tokio::test]
async fn a_bad_head_gets_hypers_400_and_an_oversized_one_431() {
    let (addr, count, _stop) = echo_server().await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let text = exchange(&mut s, b"GET / HTTP/1.1\r\nbad header: x\r\n\r\n", 1).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut big = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
    big.resize(20 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    let text = exchange(&mut s, &big, 1).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let (addr, _count, _stop) = echo_server().await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    // Reads to the end: the server must close after the one response.
    let text = exchange(&mut s, b"GET /x HTTP/1.1\r\nconnection: close\r\n\r\n", 2).await;
    assert_eq!(complete_responses(&text), 1, "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
}

/// The fast path alone on an in-memory stream, answering "x", with a 2 s
/// header read timeout; returns its task and its shutdown switch.
fn serve_x(server: DuplexStream) -> (JoinHandle<Ended<DuplexStream>>, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(serve(
        server,
        |_req: Request<Option<Bytes>>| async { Response::new(full("x")) },
        Duration::from_secs(2),
        rx,
    ));
    (task, tx)
}

/// Whether `task` ended with the connection closed within 3 s.
async fn closed_in_time(task: JoinHandle<Ended<DuplexStream>>) -> bool {
    match tokio::time::timeout(Duration::from_secs(3), task).await {
        Ok(ended) => matches!(ended.unwrap(), Ended::Closed),
        Err(_) => false,
    }
}

#[tokio::test(start_paused = true)]
async fn a_head_that_never_completes_is_dropped_after_the_read_timeout() {
    let (mut client, server) = tokio::io::duplex(1024);
    let (task, _stop) = serve_x(server);
    client
        .write_all(b"GET / HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    assert!(closed_in_time(task).await);
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_dropped_after_the_read_timeout() {
    let (_client, server) = tokio::io::duplex(1024);
    let (task, _stop) = serve_x(server);
    assert!(closed_in_time(task).await);
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_waits_until_shutdown() {
    let (mut client, server) = tokio::io::duplex(4096);
    let (task, stop) = serve_x(server);
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\nx") {
        let mut chunk = [0u8; 1024];
        let n = client.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!task.is_finished(), "idle keep-alive connections are kept");
    stop.send(true).unwrap();
    assert!(closed_in_time(task).await);
}

#[tokio::test(start_paused = true)]
async fn a_request_in_flight_at_shutdown_is_answered_with_close() {
    let (mut client, server) = tokio::io::duplex(4096);
    let (tx, rx) = watch::channel(false);
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered = std::sync::Mutex::new(Some(entered_tx));
    let task = tokio::spawn(serve(
        server,
        move |_req: Request<Option<Bytes>>| {
            if let Some(tx) = entered.lock().unwrap().take() {
                let _ = tx.send(());
            }
            async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Response::new(full("done"))
            }
        },
        Duration::from_secs(2),
        rx,
    ));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    entered_rx.await.unwrap();
    tx.send(true).unwrap();
    let mut text = String::new();
    client.read_to_string(&mut text).await.unwrap();
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(text.ends_with("done"), "{text}");
    assert!(matches!(task.await.unwrap(), Ended::Closed));
}
