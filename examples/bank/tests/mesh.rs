//! `bank` in mesh mode behind a fake, faulty outbound sidecar, loaded by `bank-load`.
//!
//! The fake mesh routes like the real one (service header, key header or
//! `/accounts/{key}` path, XXH3 shard, epoch headers) and injects both kinds
//! of failure deterministically: every 7th request is refused as
//! `overloaded` without reaching the app, and every 11th is forwarded and
//! then answered `timeout` — the write happened but the caller cannot know.
//! Transfers take the same faulty path for each saga step. The money check
//! must still pass, with every ambiguous write resolved.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use shardmesh_bank::http::client::HttpClient;
use shardmesh_bank::shard_key::shard_of;

use common::{bank_load, call, App};

/// Shards of the fake service.
const SHARDS: u32 = 4;
/// Epoch the fake mesh acquires at.
const EPOCH: u64 = 1;

struct FakeMesh {
    /// Base URL of the bank, set once it is up.
    app: OnceLock<String>,
    /// Counts requests, to pick which ones fail.
    seen: AtomicU64,
    /// Forwarding client.
    client: HttpClient,
}

fn mesh_error(status: u16, reason: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": reason, "message": "injected by the fake mesh"}).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("x-shardmesh-error", reason.parse().unwrap());
    resp
}

async fn route(mesh: Arc<FakeMesh>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let n = mesh.seen.fetch_add(1, Ordering::Relaxed);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if header("x-shardmesh-service").as_deref() != Some("bank") {
        return mesh_error(400, "bad-request");
    }
    let path = req.uri().path().to_string();
    let key = header("x-shardmesh-key").or_else(|| {
        path.strip_prefix("/accounts/")
            .map(|r| r.split('/').next().unwrap_or("").to_string())
    });
    if n % 7 == 3 {
        return mesh_error(503, "overloaded");
    }
    let method = req.method().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut headers = Vec::new();
    if let Some(key) = &key {
        headers.push((
            "x-shardmesh-shard".parse().unwrap(),
            shard_of(key, SHARDS).to_string(),
        ));
        headers.push(("x-shardmesh-epoch".parse().unwrap(), EPOCH.to_string()));
    }
    let base = mesh.app.get().expect("app address").clone();
    let reply = match mesh
        .client
        .send(method, &format!("{base}{path}"), &headers, json.as_ref())
        .await
    {
        Ok(r) => r,
        Err(_) => return mesh_error(502, "unavailable"),
    };
    if n % 11 == 5 {
        return mesh_error(504, "timeout");
    }
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    resp.headers_mut()
        .insert("x-shardmesh-served-by", "test-0".parse().unwrap());
    resp
}

async fn start_fake_mesh() -> (Arc<FakeMesh>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mesh = Arc::new(FakeMesh {
        app: OnceLock::new(),
        seen: AtomicU64::new(0),
        client: HttpClient::new(Duration::from_secs(10)),
    });
    let served = Arc::clone(&mesh);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mesh = Arc::clone(&served);
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let mesh = Arc::clone(&mesh);
                    async move { Ok::<_, Infallible>(route(mesh, req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (mesh, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_a_faulty_mesh_still_verifies() {
    let (mesh, outbound) = start_fake_mesh().await;
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir.path().join("data"), &["--outbound", &outbound]);
    mesh.app.set(app.base.clone()).unwrap();
    for shard in 0..SHARDS {
        let body = json!({"service": "bank", "shard": shard, "epoch": EPOCH});
        let path = format!("/shardmesh/shards/{shard}/acquire");
        assert_eq!(
            call(&app.base, hyper::Method::POST, &path, &[], Some(body))
                .await
                .0,
            200
        );
    }
    let json_path = dir.path().join("summary.json");
    let args: Vec<String> = [
        "--target",
        outbound.as_str(),
        "--duration",
        "3",
        "--max-requests",
        "1500",
        "--concurrency",
        "8",
        "--accounts",
        "16",
        "--seed",
        "9",
        "--json",
        json_path.to_str().unwrap(),
    ]
    .map(str::to_string)
    .to_vec();
    // bank-load blocks this thread; the fake mesh keeps running on the other worker.
    let (code, out) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bank_load(&args)
    })
    .await
    .unwrap();
    println!("{out}");
    assert_eq!(code, 0, "{out}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(summary["verification"]["passed"], json!(true), "{out}");
    assert!(
        summary["ambiguous"].as_u64().unwrap() > 0,
        "faults made ambiguous writes: {out}"
    );
    assert_eq!(summary["unresolved"], json!(0), "{out}");
    assert!(
        summary["by_reason"]["overloaded"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert!(
        summary["by_reason"]["timeout"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert!(
        summary["verification"]["transfers_applied"]
            .as_u64()
            .unwrap()
            > 0,
        "{out}"
    );
}
