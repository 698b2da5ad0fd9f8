//! The fast path against hyper alone: every sequence of up to three
//! requests, plain and not, pipelined on one connection, must get the same
//! answers (status and body, and where the connection ends) from the
//! listener as from a server that is hyper alone.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::tests::{echo, echo_server};
use crate::body::RequestBody;

/// Requests of every kind the fast path takes or hands over.
const REQUESTS: [&[u8]; 9] = [
    b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n",
    b"POST /b HTTP/1.1\r\ncontent-length: 3\r\n\r\nxyz",
    b"HEAD /c HTTP/1.1\r\n\r\n",
    b"POST /d HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"GET /e HTTP/1.1\r\nconnection: close\r\n\r\n",
    b"GET /f HTTP/1.0\r\n\r\n",
    b"GET /g HTTP/1.1\r\nbad header: x\r\n\r\n",
    b"POST /h HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nhi",
    b"GET http://svc.shardmesh/i?q=1 HTTP/1.1\r\nx-shardmesh-key: k\r\n\r\n",
];

/// A server that is hyper's HTTP/1.1 alone, answering with [`echo`].
async fn hyper_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(echo(req.map(RequestBody::Streamed)).await)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Sends `bytes`, closes the sending side, and reads all that comes back.
async fn exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the server ends the connection")
        .unwrap_or_default();
    got
}

/// The answers in `wire`: status and body of each, in order, for requests
/// whose HEAD-ness is `heads` (a HEAD answer has no body).
fn answers(wire: &[u8], heads: &[bool]) -> Vec<(u16, Bytes)> {
    let mut out = Vec::new();
    let mut rest = wire;
    let mut heads = heads.iter();
    let mut head_request = false;
    while !rest.is_empty() {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut rsp = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(len)) = rsp.parse(rest) else {
            out.push((0, Bytes::copy_from_slice(rest)));
            break;
        };
        let status = rsp.code.unwrap_or(0);
        if status >= 200 {
            head_request = heads.next().copied().unwrap_or(false);
        }
        let length = rsp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        let body_len = if head_request || status < 200 {
            0
        } else {
            length
        };
        let body_end = (len + body_len).min(rest.len());
        out.push((status, Bytes::copy_from_slice(&rest[len..body_end])));
        rest = &rest[body_end..];
    }
    out
}

#[tokio::test]
async fn every_short_pipeline_is_answered_as_hyper_answers_it() {
    let (ours, _count, _stop) = echo_server().await;
    let theirs = hyper_server().await;
    let n = REQUESTS.len();
    let mut sequences: Vec<Vec<usize>> = (0..n).map(|a| vec![a]).collect();
    for a in 0..n {
        for b in 0..n {
            sequences.push(vec![a, b]);
            for c in 0..n {
                sequences.push(vec![a, b, c]);
            }
        }
    }
    for sequence in sequences {
        let bytes: Vec<u8> = sequence
            .iter()
            .flat_map(|&i| REQUESTS[i].to_vec())
            .collect();
        let heads: Vec<bool> = sequence
            .iter()
            .map(|&i| REQUESTS[i].starts_with(b"HEAD"))
            .collect();
        let (a, b) = tokio::join!(exchange(&ours, &bytes), exchange(&theirs, &bytes));
        assert_eq!(
            answers(&a, &heads),
            answers(&b, &heads),
            "requests {sequence:?}:\nours:\n{}\nhyper:\n{}",
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b)
        );
    }
}
