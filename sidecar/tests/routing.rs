//! Routing through real sidecars on loopback: keys reach their owners,
//! keyless requests spread, errors follow the contract.

mod support;

use http::StatusCode;
use support::*;

async fn three_bank_members() -> (Vec<TestApp>, Vec<Member>) {
    let (apps, specs) = start_apps("bank", 3, |req| async move {
        (StatusCode::OK, format!("path={}", req.uri().path()))
    })
    .await;
    let members = start_mesh(specs, vec![service("bank", 30)], |_| {}).await;
    (apps, members)
}

#[tokio::test]
async fn keyed_requests_reach_the_same_owner_from_every_sidecar() {
    let (_apps, members) = three_bank_members().await;
    for key in ["alice", "bob", "carol", "dave", "erin"] {
        let mut owners = Vec::new();
        for m in &members {
            let got = send(
                m.addrs.outbound,
                "GET",
                &format!("/accounts/{key}"),
                &[("x-shardmesh-service", "bank")],
                "",
            )
            .await;
            assert_eq!(got.status, StatusCode::OK, "{}", got.body);
            assert_eq!(got.body, format!("path=/accounts/{key}"));
            let served_by = got.header("x-shardmesh-served-by").unwrap().to_string();
            assert_eq!(
                got.header("x-app"),
                Some(served_by.as_str()),
                "served-by names the app's pod"
            );
            owners.push(served_by);
        }
        owners.dedup();
        assert_eq!(owners.len(), 1, "key {key} served by {owners:?}");
    }
}

#[tokio::test]
async fn host_header_and_key_header_route_too() {
    let (_apps, members) = three_bank_members().await;
    let a = send(
        members[0].addrs.outbound,
        "GET",
        "/x",
        &[("host", "bank.shardmesh"), ("x-shardmesh-key", "alice")],
        "",
    )
    .await;
    let b = send(
        members[1].addrs.outbound,
        "GET",
        "/accounts/alice",
        &[("x-shardmesh-service", "bank")],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header("x-shardmesh-served-by"),
        b.header("x-shardmesh-served-by")
    );
}

#[tokio::test]
async fn keyless_requests_spread_over_members() {
    let (apps, members) = three_bank_members().await;
    for _ in 0..60 {
        let got = send(
            members[0].addrs.outbound,
            "GET",
            "/health",
            &[("x-shardmesh-service", "bank")],
            "",
        )
        .await;
        assert_eq!(got.status, StatusCode::OK);
    }
    for app in &apps {
        let hits = app.hits.load(std::sync::atomic::Ordering::SeqCst);
        assert!(hits >= 5, "every member gets keyless traffic: {hits}");
    }
}

#[tokio::test]
async fn contract_errors_for_bad_targets() {
    let (_apps, members) = three_bank_members().await;
    let out = members[0].addrs.outbound;
    let got = send(out, "GET", "/", &[], "").await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(got.header("x-shardmesh-error"), Some("bad-request"));
    assert!(
        got.body.contains("\"error\":\"bad-request\""),
        "{}",
        got.body
    );
    assert_eq!(got.header("x-shardmesh-served-by"), Some("bank-0"));

    let got = send(out, "GET", "/", &[("x-shardmesh-service", "carts")], "").await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.header("x-shardmesh-error"), Some("unknown-service"));

    let got = send(
        out,
        "GET",
        "/accounts/a",
        &[
            ("x-shardmesh-service", "bank"),
            ("x-shardmesh-timeout-ms", "soon"),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);

    let text = metrics(&members[0]).await;
    assert!(
        metric_value(&text, "shardmesh_requests_total{code=\"404\",direction=\"outbound\",reason=\"unknown-service\",service=\"unknown\"}") >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn oversized_headers_get_431_and_the_sidecar_survives() {
    let (_apps, members) = three_bank_members().await;
    let huge = "v".repeat(100 * 1024);
    let got = send(
        members[0].addrs.outbound,
        "GET",
        "/accounts/a",
        &[("x-shardmesh-service", "bank"), ("x-big", &huge)],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let got = send(
        members[0].addrs.outbound,
        "GET",
        "/accounts/a",
        &[("x-shardmesh-service", "bank")],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_endpoints_answer() {
    let (_apps, members) = three_bank_members().await;
    let admin = members[1].addrs.admin;
    assert_eq!(
        send(admin, "GET", "/live", &[], "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(admin, "GET", "/ready", &[], "").await.status,
        StatusCode::OK
    );
    let m = send(admin, "GET", "/debug/members", &[], "").await;
    let doc: serde_json::Value = serde_json::from_str(&m.body).unwrap();
    assert_eq!(doc["members"].as_array().unwrap().len(), 3);
    let s = send(admin, "GET", "/debug/shards", &[], "").await;
    let doc: serde_json::Value = serde_json::from_str(&s.body).unwrap();
    assert_eq!(doc["services"][0]["shards"].as_array().unwrap().len(), 30);
}

/// Rewrites a member's view so that every shard of `bank` belongs to `owner`.
fn stale_view(member: &Member, owner: &str) {
    let mut table = (**member.table.borrow()).clone();
    let routes = table.services.get_mut("bank").unwrap();
    let owners: Vec<Option<&str>> = (0..routes.shards).map(|_| Some(owner)).collect();
    routes.set_owners_by_name(&owners, 1);
    table.version += 1;
    member.table.send(std::sync::Arc::new(table)).unwrap();
}

#[tokio::test]
async fn a_stale_caller_is_forwarded_once_to_the_owner() {
    let (_apps, members) = three_bank_members().await;
    // The true owner of the key, as bank-1 and bank-2 see it.
    let truth = send(
        members[1].addrs.outbound,
        "GET",
        "/accounts/zed",
        &[("x-shardmesh-service", "bank")],
        "",
    )
    .await;
    let owner = truth.header("x-shardmesh-served-by").unwrap().to_string();
    // bank-0 sends to a pod that is neither the owner nor itself.
    let wrong = ["bank-1", "bank-2"]
        .into_iter()
        .find(|p| *p != owner)
        .unwrap();
    stale_view(&members[0], wrong);
    let got = send(
        members[0].addrs.outbound,
        "GET",
        "/accounts/zed",
        &[("x-shardmesh-service", "bank")],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(
        got.header("x-shardmesh-served-by"),
        Some(owner.as_str()),
        "forwarded to the owner"
    );
}

#[tokio::test]
async fn forwarding_never_loops() {
    let (_apps, members) = three_bank_members().await;
    // bank-1 believes bank-2 owns everything and bank-2 believes bank-1 does.
    stale_view(&members[0], "bank-1");
    stale_view(&members[1], "bank-2");
    stale_view(&members[2], "bank-1");
    let got = send(
        members[0].addrs.outbound,
        "GET",
        "/accounts/zed",
        &[("x-shardmesh-service", "bank")],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE, "{}", got.body);
    assert_eq!(got.header("x-shardmesh-error"), Some("no-owner"));
    assert!(got.body.contains("already forwarded"), "{}", got.body);
    // bank-2 refused the request bank-1 forwarded, naming bank-1 as the
    // owner: the header a managed forwarder waits on (docs/sharding.md).
    assert_eq!(got.header("x-shardmesh-owner"), Some("bank-1"));
}
