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

/// Which injected failure a request gets.
#[derive(Clone, Copy)]
enum Fault {
    /// Refused without reaching the app.
    Overloaded,
    /// Forwarded, then answered `timeout`: the write happened.
    LostAnswer,
    /// Refused as `no-owner` without reaching the app.
    NoOwner,
}

/// Picks the fault (if any) for request number `n` to `path` with op id `op`.
type Policy = fn(u64, &str, Option<&str>) -> Option<Fault>;

struct FakeMesh {
    /// Fault policy.
    policy: Policy,
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
    let method = req.method().clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let op = json.as_ref().and_then(|j| j["op"].as_str());
    let fault = (mesh.policy)(n, &path, op);
    match fault {
        Some(Fault::Overloaded) => return mesh_error(503, "overloaded"),
        Some(Fault::NoOwner) => return mesh_error(503, "no-owner"),
        _ => {}
    }
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
    if matches!(fault, Some(Fault::LostAnswer)) {
        return mesh_error(504, "timeout");
    }
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    resp.headers_mut()
        .insert("x-shardmesh-served-by", "test-0".parse().unwrap());
    resp
}

async fn start_fake_mesh(policy: Policy) -> (Arc<FakeMesh>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mesh = Arc::new(FakeMesh {
        policy,
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

/// Starts the fake mesh and a mesh-mode bank behind it, acquires every shard,
/// runs `bank-load` through the mesh, and returns (exit code, output, JSON summary).
async fn run_through_mesh(policy: Policy, seed: &str, mix: &str) -> (i32, String, Value) {
    let (mesh, outbound) = start_fake_mesh(policy).await;
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
        seed,
        "--mix",
        mix,
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
    let summary = serde_json::from_slice(&std::fs::read(&json_path).unwrap_or_default())
        .unwrap_or(Value::Null);
    (code, out, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_through_a_faulty_mesh_still_verifies() {
    let policy: Policy = |n, _, _| match (n % 7, n % 11) {
        (3, _) => Some(Fault::Overloaded),
        (_, 5) => Some(Fault::LostAnswer),
        _ => None,
    };
    let (code, out, summary) =
        run_through_mesh(policy, "9", "deposit=40,withdraw=20,transfer=20,balance=20").await;
    assert_eq!(code, 0, "{out}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_whose_deposit_never_lands_are_compensated() {
    // The saga's deposit step of every transfer numbered 0 mod 4 always meets `no-owner`.
    let policy: Policy = |_, path, op| {
        if !path.ends_with("/deposit") {
            return None;
        }
        let index = op?
            .strip_suffix(":d")?
            .rsplit('-')
            .next()?
            .parse::<u64>()
            .ok()?;
        (index % 4 == 0).then_some(Fault::NoOwner)
    };
    let (code, out, summary) =
        run_through_mesh(policy, "5", "deposit=2,transfer=2,balance=1").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(summary["verification"]["passed"], json!(true), "{out}");
    assert!(
        summary["app_errors"]["transfer-failed"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert!(
        summary["verification"]["transfers_applied"]
            .as_u64()
            .unwrap()
            > 0,
        "{out}"
    );
    assert!(summary["replayed"].as_u64().unwrap() > 0, "{out}");
}
