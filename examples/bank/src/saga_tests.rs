//! The saga against a fake outbound sidecar: a scripted HTTP server on 127.0.0.1:0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::*;
use crate::bank::{Bank, Mode, Route};

/// One call the fake saw: (path, op, headers service/key/idempotent).
type Seen = (String, String, [Option<String>; 3]);

/// Answers (status, mesh error reason, body) for a path and op.
type Script = fn(&str, &str) -> (u16, Option<&'static str>, serde_json::Value);

async fn fake_outbound(script: Script) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let path = req.uri().path().to_string();
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        let hdrs = [
                            h("x-shardmesh-service"),
                            h("x-shardmesh-key"),
                            h("x-shardmesh-idempotent"),
                        ];
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let op = json["op"].as_str().unwrap_or_default().to_string();
                        let (status, reason, answer) = script(&path, &op);
                        log.lock().unwrap().push((path, op, hdrs));
                        let mut resp = Response::new(Full::new(Bytes::from(answer.to_string())));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        if let Some(r) = reason {
                            resp.headers_mut()
                                .insert("x-shardmesh-error", r.parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn req() -> TransferRequest {
    TransferRequest {
        from: "alice".into(),
        to: "bob".into(),
        amount: 100,
        op: "t1".into(),
    }
}

fn calls(seen: &Arc<Mutex<Vec<Seen>>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(p, op, _)| format!("{p} {op}"))
        .collect()
}

#[tokio::test]
async fn failed_deposit_is_cancelled_then_compensated() {
    let (base, seen) = fake_outbound(|path, op| match (path, op) {
        ("/accounts/alice/withdraw", "t1:w") => (200, None, serde_json::json!({"balance": 0})),
        ("/accounts/bob/deposit", "t1:d") => (
            503,
            Some("no-owner"),
            serde_json::json!({"error": "no-owner"}),
        ),
        ("/accounts/bob/cancel", "t1:d") => (409, None, serde_json::json!({"error": "cancelled"})),
        ("/accounts/alice/deposit", "t1:c") => (200, None, serde_json::json!({"balance": 100})),
        _ => (500, None, serde_json::json!({"error": "unexpected"})),
    })
    .await;
    let accounts = Accounts::mesh(&base, Duration::from_secs(2));
    let result = transfer(&accounts, &req()).await;
    assert!(
        matches!(result, TransferResult::Compensated(_)),
        "{result:?}"
    );
    assert_eq!(result.to_http().0, 409);
    let mut expect = vec!["/accounts/alice/withdraw t1:w".to_string()];
    expect.extend(std::iter::repeat_n(
        "/accounts/bob/deposit t1:d".to_string(),
        ATTEMPTS as usize,
    ));
    expect.push("/accounts/bob/cancel t1:d".into());
    expect.push("/accounts/alice/deposit t1:c".into());
    assert_eq!(calls(&seen), expect);
    // Every step names the service, keys on its account and is marked retryable.
    for (path, _, [service, key, idem]) in seen.lock().unwrap().iter() {
        assert_eq!(service.as_deref(), Some("bank"));
        assert!(path.contains(&format!("/{}/", key.as_deref().unwrap_or("?"))));
        assert_eq!(idem.as_deref(), Some("true"));
    }
}

#[tokio::test]
async fn a_cancel_that_finds_the_deposit_applied_completes_the_transfer() {
    let (base, seen) = fake_outbound(|path, _| match path {
        "/accounts/alice/withdraw" => (200, None, serde_json::json!({"balance": 0})),
        "/accounts/bob/deposit" => (
            504,
            Some("timeout"),
            serde_json::json!({"error": "timeout"}),
        ),
        "/accounts/bob/cancel" => (200, None, serde_json::json!({"balance": 100})),
        _ => (500, None, serde_json::json!({})),
    })
    .await;
    let accounts = Accounts::mesh(&base, Duration::from_secs(2));
    assert_eq!(transfer(&accounts, &req()).await, TransferResult::Done);
    assert!(
        !calls(&seen).iter().any(|c| c.ends_with("t1:c")),
        "no compensation"
    );
}

#[tokio::test]
async fn insufficient_funds_stop_before_any_deposit() {
    let (base, seen) = fake_outbound(|_, _| {
        (
            409,
            None,
            serde_json::json!({"error": "insufficient-funds"}),
        )
    })
    .await;
    let accounts = Accounts::mesh(&base, Duration::from_secs(2));
    assert_eq!(
        transfer(&accounts, &req()).await,
        TransferResult::InsufficientFunds
    );
    assert_eq!(
        calls(&seen),
        vec!["/accounts/alice/withdraw t1:w".to_string()]
    );
}

#[tokio::test]
async fn unreachable_outbound_leaves_the_transfer_pending() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let accounts = Accounts::mesh(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1));
    let result = transfer(&accounts, &req()).await;
    assert!(matches!(result, TransferResult::Pending(_)), "{result:?}");
    assert_eq!(result.to_http().0, 503);
}

#[tokio::test]
async fn local_transfer_moves_money_once_even_when_resent() {
    let dir = tempfile::tempdir().unwrap();
    let bank = Arc::new(Bank::new(
        dir.path().to_path_buf(),
        "p".into(),
        Mode::Standalone { shards: 4 },
        None,
    ));
    bank.acquire_all().await.unwrap();
    let r = Route::default();
    bank.deposit(r, "alice", "seed", 150).await.unwrap();
    let accounts = Accounts::Local(Arc::clone(&bank));
    assert_eq!(transfer(&accounts, &req()).await, TransferResult::Done);
    assert_eq!(transfer(&accounts, &req()).await, TransferResult::Done);
    assert_eq!(bank.balance(r, "alice").await.unwrap(), 50);
    assert_eq!(bank.balance(r, "bob").await.unwrap(), 100);
    let mut big = req();
    big.op = "t2".into();
    assert_eq!(
        transfer(&accounts, &big).await,
        TransferResult::InsufficientFunds
    );
    assert_eq!(bank.balance(r, "alice").await.unwrap(), 50);
}
