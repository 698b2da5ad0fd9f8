//! Request body limits through real sidecars on loopback: a declared or
//! streamed body over `limits.maxRequestBodyBytes` gets 413
//! `payload-too-large`, on the outbound and on the inbound path.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SMALL: u64 = 1024;

/// Two bank members; bank-0 accepts 1 MiB, bank-1 only [`SMALL`] bytes.
async fn bank() -> (Vec<TestApp>, Vec<Member>) {
    let (apps, specs) = start_apps("bank", 2, |req| async move {
        (StatusCode::OK, format!("got {} bytes", req.body().len()))
    })
    .await;
    let members = start_mesh(specs, vec![service("bank", 20)], |c| {
        c.limits.max_request_body_bytes = if c.pod.name == "bank-0" {
            1024 * 1024
        } else {
            SMALL
        };
    })
    .await;
    (apps, members)
}

/// A key each member owns, found by asking bank-0 with an empty body.
async fn key_owned_by(members: &[Member], owner: &str) -> String {
    for i in 0..200 {
        let key = format!("k{i}");
        let got = send(
            members[0].addrs.outbound,
            "POST",
            &format!("/accounts/{key}"),
            &[("x-shardmesh-service", "bank")],
            "",
        )
        .await;
        if got.header("x-shardmesh-served-by") == Some(owner) {
            return key;
        }
    }
    panic!("no key owned by {owner} among 200");
}

#[tokio::test]
async fn declared_bodies_over_the_limit_get_413_on_both_paths() {
    let (_apps, members) = bank().await;
    let body = "x".repeat(4096);
    // Outbound: bank-1's own limit.
    let got = send(
        members[1].addrs.outbound,
        "POST",
        "/accounts/a",
        &[("x-shardmesh-service", "bank")],
        &body,
    )
    .await;
    assert_eq!(got.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", got.body);
    assert_eq!(got.header("x-shardmesh-error"), Some("payload-too-large"));
    let doc: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(doc["error"], "payload-too-large");

    // Inbound: bank-0 lets it out, bank-1 (the owner) refuses it.
    let key = key_owned_by(&members, "bank-1").await;
    let got = send(
        members[0].addrs.outbound,
        "POST",
        &format!("/accounts/{key}"),
        &[("x-shardmesh-service", "bank")],
        &body,
    )
    .await;
    assert_eq!(got.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", got.body);
    assert_eq!(got.header("x-shardmesh-error"), Some("payload-too-large"));
    assert_eq!(got.header("x-shardmesh-served-by"), Some("bank-1"));

    // Within the limits everything passes.
    let key0 = key_owned_by(&members, "bank-0").await;
    let got = send(
        members[0].addrs.outbound,
        "POST",
        &format!("/accounts/{key0}"),
        &[("x-shardmesh-service", "bank")],
        &body,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body, "got 4096 bytes");
}

#[tokio::test]
async fn a_streamed_body_without_length_is_cut_at_the_limit() {
    let (_apps, members) = bank().await;
    let mut stream = tokio::net::TcpStream::connect(members[1].addrs.outbound)
        .await
        .unwrap();
    let head = "POST /accounts/a HTTP/1.1\r\nhost: bank\r\nx-shardmesh-service: bank\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("200\r\n{}\r\n", "y".repeat(0x200));
    // 8 × 512 bytes = 4 KiB > 1 KiB; the sidecar may answer before the end,
    // so write errors after the answer are fine.
    for _ in 0..8 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("answer timed out");
    // A reset after the full answer is fine too.
    let _ = read;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload-too-large"), "{text}");
}
