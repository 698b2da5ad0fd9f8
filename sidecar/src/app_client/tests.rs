//! The app client against real sockets on loopback: hyper apps and raw
//! scripted ones for the framings hyper never sends.

use super::*;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app that answers one request per connection and then closes it,
/// the worst case for a pool of kept-alive connections.
async fn one_shot_app() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            // Keep-alive is implied, yet the app closes: a stale pooled connection.
            drop(s);
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn a_connection_the_app_closed_is_not_a_failure() {
    let (addr, conns) = one_shot_app().await;
    let client = AppClient::new(&addr).unwrap();
    for _ in 0..5 {
        let req = Request::get("/x").body(crate::body::empty()).unwrap();
        let rsp = client.send(req).await.unwrap();
        assert_eq!(rsp.status(), 200);
        let body = http_body_util::BodyExt::collect(rsp.into_body())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "ok");
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 5);
}

#[tokio::test]
async fn connections_are_reused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(crate::body::full("hi")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    let client = AppClient::new(&addr).unwrap();
    for _ in 0..20 {
        let req = Request::get("/x").body(crate::body::empty()).unwrap();
        let rsp = client.send(req).await.unwrap();
        let _ = http_body_util::BodyExt::collect(rsp.into_body())
            .await
            .unwrap();
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let client = AppClient::new(&addr).unwrap();
    let req = Request::get("/x").body(crate::body::empty()).unwrap();
    let err = client.send(req).await.unwrap_err();
    assert!(
        shardmesh_resilience::boxed_cause::<ConnectError>(&err).is_some(),
        "{err}"
    );
}

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};

/// A hyper app that echoes the request body and reports the request's
/// framing header in `x-framing`; counts connections.
async fn echo_app() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let conns = Arc::new(AtomicUsize::new(0));
    let counter = conns.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let framing = if req.headers().contains_key(http::header::TRANSFER_ENCODING)
                        {
                            "chunked"
                        } else if req.headers().contains_key(http::header::CONTENT_LENGTH) {
                            "length"
                        } else {
                            "none"
                        };
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        // Answer in chunks of unknown total length: chunked coding.
                        let frames: Vec<Result<http_body::Frame<Bytes>, Infallible>> = body
                            .chunks(7)
                            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
                            .collect();
                        let mut rsp =
                            Response::new(StreamBody::new(futures_util::stream::iter(frames)));
                        rsp.headers_mut()
                            .insert("x-framing", HeaderValue::from_static(framing));
                        Ok::<_, Infallible>(rsp)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, conns)
}

fn streamed(parts: &[&'static str]) -> BoxBody {
    let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = parts
        .iter()
        .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    BoxBody::new(StreamBody::new(futures_util::stream::iter(frames)))
}

async fn text(rsp: Response<BoxBody>) -> String {
    let bytes = rsp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn request_bodies_go_out_by_length_or_in_chunks_and_come_back_chunked() {
    let (addr, conns) = echo_app().await;
    let client = AppClient::new(&addr).unwrap();

    let req = Request::post("/e")
        .body(crate::body::full("a fixed-length body of 36 bytes here"))
        .unwrap();
    let rsp = client.send(req).await.unwrap();
    assert_eq!(rsp.headers()["x-framing"], "length");
    assert_eq!(text(rsp).await, "a fixed-length body of 36 bytes here");

    let req = Request::post("/e")
        .body(streamed(&["one ", "", "two ", "three"]))
        .unwrap();
    let rsp = client.send(req).await.unwrap();
    assert_eq!(rsp.headers()["x-framing"], "chunked");
    assert!(!rsp.headers().contains_key(http::header::TRANSFER_ENCODING));
    assert_eq!(text(rsp).await, "one two three");

    let req = Request::post("/e").body(crate::body::empty()).unwrap();
    let rsp = client.send(req).await.unwrap();
    assert_eq!(rsp.headers()["x-framing"], "length");
    assert_eq!(text(rsp).await, "");

    // Every exchange ended cleanly, so one connection carried all three.
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

/// An app that reads each request head and answers with `script`, then
/// closes the connection if `close` is set.
async fn scripted_app(script: &'static [u8], close: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.clear();
                    // Byte by byte: every parser state sees a partial buffer.
                    for b in script {
                        if s.write_all(&[*b]).await.is_err() {
                            return;
                        }
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn get(addr: &str, method: http::Method) -> Result<Response<BoxBody>, BoxError> {
    let client = AppClient::new(addr).unwrap();
    let req = Request::builder()
        .method(method)
        .uri("/s")
        .body(crate::body::empty())
        .unwrap();
    client.send(req).await
}

#[tokio::test]
async fn chunk_extensions_trailers_and_interim_answers_are_understood() {
    let addr = scripted_app(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\
          connection: keep-alive, x-private\r\nx-private: 1\r\nx-kept: 2\r\n\r\n\
          5;ext=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nx-trailer: t\r\n\r\n",
        false,
    )
    .await;
    let rsp = get(&addr, http::Method::GET).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-kept"], "2");
    for gone in ["x-private", "connection", "transfer-encoding"] {
        assert!(!rsp.headers().contains_key(gone), "{gone} crossed the hop");
    }
    assert_eq!(text(rsp).await, "hello, chunked!");
}

#[tokio::test]
async fn a_body_until_close_and_bodiless_answers_are_framed_right() {
    let addr = scripted_app(b"HTTP/1.0 200 OK\r\nx: y\r\n\r\nuntil the very end", true).await;
    let rsp = get(&addr, http::Method::GET).await.unwrap();
    assert_eq!(text(rsp).await, "until the very end");

    let addr = scripted_app(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false).await;
    let rsp = get(&addr, http::Method::HEAD).await.unwrap();
    assert_eq!(rsp.headers()["content-length"], "5");
    assert!(rsp.body().is_end_stream());
    assert_eq!(text(rsp).await, "");

    let addr = scripted_app(b"HTTP/1.1 204 No Content\r\n\r\n", false).await;
    let rsp = get(&addr, http::Method::GET).await.unwrap();
    assert_eq!(rsp.status(), 204);
    assert_eq!(text(rsp).await, "");
}

#[tokio::test]
async fn malformed_answers_are_errors_never_panics() {
    let heads: [&'static [u8]; 5] = [
        b"HTTP/1.1 abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxx",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
        b"SMTP ready\r\n\r\n",
    ];
    for head in heads {
        let addr = scripted_app(head, true).await;
        let err = get(&addr, http::Method::GET).await.unwrap_err();
        assert!(
            shardmesh_resilience::boxed_cause::<AppError>(&err).is_some(),
            "{err}"
        );
    }
    let bodies: [&'static [u8]; 3] = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nno\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokX\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
    ];
    for script in bodies {
        let addr = scripted_app(script, true).await;
        let rsp = get(&addr, http::Method::GET).await.unwrap();
        let err = rsp.into_body().collect().await.unwrap_err();
        assert!(err.downcast_ref::<AppError>().is_some(), "{err}");
    }
}

#[tokio::test]
async fn an_endless_response_head_is_refused_at_the_limit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
        let line = [b'x'; 1024];
        // Far beyond the limit, but bounded: the client must give up first.
        for _ in 0..1024 {
            if s.write_all(&line).await.is_err() {
                return;
            }
        }
    });
    let err = get(&addr, http::Method::GET).await.unwrap_err();
    assert!(
        matches!(err.downcast_ref::<AppError>(), Some(AppError::HeadTooLarge)),
        "{err}"
    );
}

#[tokio::test]
async fn an_answer_before_the_whole_body_is_taken_is_not_a_deadlock() {
    // The app answers 413 after the head and never reads the body.
    let addr = scripted_app(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig",
        false,
    )
    .await;
    let client = AppClient::new(&addr).unwrap();
    // 16 MiB, more than any socket buffer holds, offered without end of stream.
    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
    let frames = (0..256).map(move |_| Ok::<_, BoxError>(http_body::Frame::data(chunk.clone())));
    let body = BoxBody::new(StreamBody::new(futures_util::stream::iter(frames)));
    let req = Request::post("/upload").body(body).unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(20), client.send(req))
        .await
        .expect("the answer was not heard while the body was being sent")
        .unwrap();
    assert_eq!(rsp.status(), 413);
    assert_eq!(text(rsp).await, "big");
    // The connection stopped mid-request, so it was not pooled.
    assert!(client.pool.idle.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_request_body_error_keeps_its_cause() {
    let (addr, _) = echo_app().await;
    let client = AppClient::new(&addr).unwrap();
    let body = crate::body::limited(crate::body::full("more than four bytes"), 4);
    let req = Request::post("/e").body(body).unwrap();
    let err = client.send(req).await.unwrap_err();
    assert!(
        shardmesh_resilience::boxed_cause::<http_body_util::LengthLimitError>(&err).is_some(),
        "{err}"
    );
}
