//! Black-box tests: the real `bank` and `bank-load` binaries on 127.0.0.1.

mod common;

use hyper::Method;
use serde_json::{json, Value};

use common::{bank_load, call, App};

#[test]
fn load_against_standalone_app_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir.path().join("data"), &["--standalone", "8"]);
    let json = dir.path().join("summary.json");
    let (code, out) = bank_load(&[
        "--target",
        &app.base,
        "--duration",
        "2",
        "--max-requests",
        "20000",
        "--concurrency",
        "8",
        "--accounts",
        "20",
        "--seed",
        "42",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(summary["verification"]["passed"], json!(true), "{out}");
    assert_eq!(summary["failed_requests"], json!(0), "{out}");
    assert!(summary["requests"].as_u64().unwrap() > 100, "{out}");
    assert!(
        summary["verification"]["transfers_applied"]
            .as_u64()
            .unwrap()
            > 0,
        "{out}"
    );
    assert!(out.contains("latency ms: p50"), "{out}");
}

#[test]
fn lost_deposits_fail_verification() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &dir.path().join("data"),
        &["--standalone", "4", "--fault", "lose-every-nth-deposit=25"],
    );
    let (code, out) = bank_load(&[
        "--target",
        &app.base,
        "--duration",
        "5",
        "--max-requests",
        "400",
        "--concurrency",
        "4",
        "--accounts",
        "10",
        "--mix",
        "deposit=3,withdraw=1,balance=1",
        // No same-answer re-sends: they would re-apply (heal) some of the lost deposits.
        "--replay",
        "0",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("verification FAILED"), "{out}");
    assert!(out.contains("money not conserved"), "{out}");
}

#[tokio::test]
async fn a_crash_keeps_acknowledged_writes_and_their_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let app = App::start(&data, &["--standalone", "4"]);
    let dep = json!({"amount": 1000, "op": "d1"});
    let (s, b) = call(
        &app.base,
        Method::POST,
        "/accounts/alice/deposit",
        &[],
        Some(dep.clone()),
    )
    .await;
    assert_eq!((s, b), (200, json!({"balance": 1000})));
    let wd = json!({"amount": 300, "op": "w1"});
    let (s, b) = call(
        &app.base,
        Method::POST,
        "/accounts/alice/withdraw",
        &[],
        Some(wd.clone()),
    )
    .await;
    assert_eq!((s, b), (200, json!({"balance": 700})));
    app.kill();

    let app = App::start(&data, &["--standalone", "4"]);
    let (_, b) = call(&app.base, Method::GET, "/accounts/alice", &[], None).await;
    assert_eq!(b, json!({"balance": 700}));
    let (s, b) = call(
        &app.base,
        Method::POST,
        "/accounts/alice/withdraw",
        &[],
        Some(wd),
    )
    .await;
    assert_eq!(
        (s, b),
        (200, json!({"balance": 700})),
        "same op, first answer"
    );
    let (s, b) = call(
        &app.base,
        Method::POST,
        "/accounts/alice/deposit",
        &[],
        Some(dep),
    )
    .await;
    assert_eq!(
        (s, b),
        (200, json!({"balance": 1000})),
        "same op, first answer"
    );
    let (_, b) = call(&app.base, Method::GET, "/accounts/alice", &[], None).await;
    assert_eq!(b, json!({"balance": 700}), "re-sent ops changed nothing");
}

#[tokio::test]
async fn mesh_mode_callbacks_and_fencing_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir.path().join("data"), &[]);
    let base = app.base.as_str();
    let at = |shard: &'static str, epoch: &'static str| {
        [("x-shardmesh-shard", shard), ("x-shardmesh-epoch", epoch)]
    };
    let dep = |op: &str| Some(json!({"amount": 5, "op": op}));
    let cb = |epoch: u64| Some(json!({"service": "bank", "shard": 2, "epoch": epoch}));

    let (s, b) = call(
        base,
        Method::POST,
        "/accounts/a/deposit",
        &at("2", "3"),
        dep("x"),
    )
    .await;
    assert_eq!((s, b["error"].clone()), (503, json!("shard-not-owned")));
    assert_eq!(
        call(
            base,
            Method::POST,
            "/shardmesh/shards/2/acquire",
            &[],
            cb(3)
        )
        .await
        .0,
        200
    );
    let (s, b) = call(
        base,
        Method::POST,
        "/accounts/a/deposit",
        &at("2", "2"),
        dep("x"),
    )
    .await;
    assert_eq!((s, b["error"].clone()), (409, json!("stale-epoch")));
    let (s, b) = call(
        base,
        Method::POST,
        "/accounts/a/deposit",
        &at("2", "3"),
        dep("x"),
    )
    .await;
    assert_eq!(
        (s, b),
        (200, json!({"balance": 5})),
        "the stale write changed nothing"
    );
    let (s, _) = call(base, Method::POST, "/accounts/a/deposit", &[], dep("y")).await;
    assert_eq!(s, 400, "mesh mode needs the shard headers");
    assert_eq!(
        call(
            base,
            Method::POST,
            "/shardmesh/shards/2/release",
            &[],
            cb(3)
        )
        .await
        .0,
        200
    );
    let (s, _) = call(base, Method::GET, "/accounts/a", &at("2", "3"), None).await;
    assert_eq!(s, 503);

    // Bad input: clear JSON errors, never a crash.
    let mismatch = Some(json!({"shard": 7, "epoch": 1}));
    assert_eq!(
        call(
            base,
            Method::POST,
            "/shardmesh/shards/2/acquire",
            &[],
            mismatch
        )
        .await
        .0,
        400
    );
    let (s, b) = call(
        base,
        Method::POST,
        "/accounts/a/deposit",
        &at("2", "3"),
        Some(json!({"amount": 0, "op": "z"})),
    )
    .await;
    assert_eq!((s, b["error"].clone()), (400, json!("bad-request")));
    let big = Some(json!({"amount": 1, "op": "x".repeat(20_000)}));
    assert_eq!(
        call(base, Method::POST, "/accounts/a/deposit", &[], big)
            .await
            .0,
        413
    );
    let (s, _) = call(base, Method::POST, "/transfers", &[], Some(json!("nope"))).await;
    assert_eq!(s, 400);
    assert_eq!(call(base, Method::GET, "/nowhere", &[], None).await.0, 404);
    assert_eq!(
        call(base, Method::DELETE, "/accounts/a", &[], None).await.0,
        405
    );
    let (s, _) = call(
        base,
        Method::GET,
        "/accounts/a",
        &[("x-shardmesh-shard", "-1")],
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(call(base, Method::GET, "/ready", &[], None).await.0, 200);
}

#[tokio::test]
async fn injected_delay_slows_requests_and_can_be_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(
        &dir.path().join("data"),
        &[
            "--standalone",
            "2",
            "--fault",
            "delay-ms=1000",
            "--debug-api",
        ],
    );
    let started = std::time::Instant::now();
    assert_eq!(
        call(&app.base, Method::GET, "/accounts/a", &[], None)
            .await
            .0,
        200
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(1000));
    let (s, _) = call(
        &app.base,
        Method::PUT,
        "/debug/delay-ms",
        &[],
        Some(json!({"ms": 0})),
    )
    .await;
    assert_eq!(s, 200);
    let started = std::time::Instant::now();
    assert_eq!(
        call(&app.base, Method::GET, "/accounts/a", &[], None)
            .await
            .0,
        200
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(1000));
    let bad = Some(json!({"ms": 10_000_000}));
    assert_eq!(
        call(&app.base, Method::PUT, "/debug/delay-ms", &[], bad)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn a_new_owner_takes_over_a_crashed_owners_shard_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shared");
    let acquire = |epoch: u64| Some(json!({"service": "bank", "shard": 1, "epoch": epoch}));
    let old = App::start(&data, &[]);
    assert_eq!(
        call(
            &old.base,
            Method::POST,
            "/shardmesh/shards/1/acquire",
            &[],
            acquire(1)
        )
        .await
        .0,
        200
    );
    let at1 = [("x-shardmesh-shard", "1"), ("x-shardmesh-epoch", "1")];
    for (op, amount) in [("a", 100), ("b", 250)] {
        let body = Some(json!({"amount": amount, "op": op}));
        assert_eq!(
            call(
                &old.base,
                Method::POST,
                "/accounts/carol/deposit",
                &at1,
                body
            )
            .await
            .0,
            200
        );
    }
    old.kill();

    // The shard is declared dead and re-owned at a newer epoch by another pod on the same storage.
    let new = App::start(&data, &[]);
    assert_eq!(
        call(
            &new.base,
            Method::POST,
            "/shardmesh/shards/1/acquire",
            &[],
            acquire(2)
        )
        .await
        .0,
        200
    );
    let at2 = [("x-shardmesh-shard", "1"), ("x-shardmesh-epoch", "2")];
    let (_, b) = call(&new.base, Method::GET, "/accounts/carol", &at2, None).await;
    assert_eq!(b, json!({"balance": 350}));
    let again = Some(json!({"amount": 100, "op": "a"}));
    let (s, b) = call(
        &new.base,
        Method::POST,
        "/accounts/carol/deposit",
        &at2,
        again,
    )
    .await;
    assert_eq!(
        (s, b),
        (200, json!({"balance": 100})),
        "the op keeps its first answer across the handoff"
    );
}

#[test]
fn a_refusing_target_is_skipped_without_failing_requests() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&dir.path().join("data"), &["--standalone", "4"]);
    // A port nobody listens on: bind, note, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("http://{dead}");
    let json_path = dir.path().join("summary.json");
    let (code, out) = bank_load(&[
        "--target",
        &dead,
        "--target",
        &app.base,
        "--max-requests",
        "300",
        "--duration",
        "10",
        "--concurrency",
        "4",
        "--accounts",
        "8",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(summary["failed_requests"], json!(0), "{out}");
    assert!(summary["failovers"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(summary["verification"]["passed"], json!(true), "{out}");
}
