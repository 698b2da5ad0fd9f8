//! Resilience through real sidecars on loopback: retries, deadlines and
//! circuit breakers as a caller sees them.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::*;

/// One caller sidecar (`web-0`, no app traffic) and one `bank` member whose
/// app answers with `handler`.
async fn caller_and_bank<F, Fut>(
    handler: F,
    tweak: impl Fn(&mut shardmesh_config::ServiceConfig),
) -> (TestApp, Vec<Member>)
where
    F: Fn(http::Request<bytes::Bytes>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let bank = start_app("bank-0", handler).await;
    let web = start_app("web-0", |_| async { (StatusCode::OK, String::new()) }).await;
    let mut bank_svc = service("bank", 4);
    tweak(&mut bank_svc);
    let specs = vec![
        MemberSpec {
            name: "web-0".into(),
            service: "web".into(),
            app: web.addr,
        },
        MemberSpec {
            name: "bank-0".into(),
            service: "bank".into(),
            app: bank.addr,
        },
    ];
    let members = start_mesh(specs, vec![bank_svc, service("web", 1)], |_| {}).await;
    (bank, members)
}

#[tokio::test]
async fn transient_503_is_retried_for_get() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let (_bank, members) = caller_and_bank(
        move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy".into())
                } else {
                    (StatusCode::OK, "ok".into())
                }
            }
        },
        |_| {},
    )
    .await;
    let got = send(
        members[0].addrs.outbound,
        "GET",
        "/accounts/a",
        &[("x-shardmesh-service", "bank")],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let text = metrics(&members[0]).await;
    assert_eq!(
        metric_value(&text, "shardmesh_retries_total{service=\"bank\"}"),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn post_is_not_retried_on_503_unless_marked_idempotent() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let (_bank, members) = caller_and_bank(
        move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::SERVICE_UNAVAILABLE, "busy".into()) }
        },
        |_| {},
    )
    .await;
    let out = members[0].addrs.outbound;
    let got = send(
        out,
        "POST",
        "/accounts/a/deposit",
        &[("x-shardmesh-service", "bank")],
        "{}",
    )
    .await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        got.header("x-shardmesh-error"),
        None,
        "the app's own 503 passes through"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "POST must not be retried");

    let got = send(
        out,
        "POST",
        "/accounts/a/deposit",
        &[
            ("x-shardmesh-service", "bank"),
            ("x-shardmesh-idempotent", "true"),
        ],
        "{}",
    )
    .await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1 + 3,
        "idempotent POST gets all 3 tries"
    );
}

#[tokio::test]
async fn upstream_slower_than_the_deadline_gives_504() {
    let (_bank, members) = caller_and_bank(
        |_| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, "late".into())
        },
        |s| s.resilience.retries.attempts = 1,
    )
    .await;
    let started = Instant::now();
    let got = send(
        members[0].addrs.outbound,
        "GET",
        "/accounts/a",
        &[
            ("x-shardmesh-service", "bank"),
            ("x-shardmesh-timeout-ms", "200"),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT, "{}", got.body);
    assert_eq!(got.header("x-shardmesh-error"), Some("timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at the deadline, not after the app"
    );
}

#[tokio::test]
async fn flapping_upstream_opens_the_breaker_then_closes_via_half_open() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let (bank, members) = caller_and_bank(
        move |_| {
            let ok = h.load(Ordering::SeqCst);
            async move {
                if ok {
                    (StatusCode::OK, "ok".into())
                } else {
                    // A hung app: the pod fails (an app's own 5xx would not
                    // count against the pod; see the breaker's `judge`).
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    (StatusCode::OK, "late".into())
                }
            }
        },
        |s| {
            s.resilience.retries.attempts = 1;
            s.resilience.breaker.open_ms = 300;
            s.resilience.breaker.max_open_ms = 600;
        },
    )
    .await;
    let out = members[0].addrs.outbound;
    let hdr = [
        ("x-shardmesh-service", "bank"),
        ("x-shardmesh-timeout-ms", "150"),
    ];
    // Five failures (deadlines passed) in a row open the breaker.
    for _ in 0..5 {
        let got = send(out, "GET", "/accounts/a", &hdr, "").await;
        assert_eq!(got.status, StatusCode::GATEWAY_TIMEOUT, "{}", got.body);
    }
    let hits_before = bank.hits.load(Ordering::SeqCst);
    let got = send(out, "GET", "/accounts/a", &hdr, "").await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        got.header("x-shardmesh-error"),
        Some("circuit-open"),
        "{}",
        got.body
    );
    assert_eq!(
        bank.hits.load(Ordering::SeqCst),
        hits_before,
        "fail fast: the app was not called"
    );

    // The upstream recovers; after the open period a probe closes the breaker.
    healthy.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = send(out, "GET", "/accounts/a", &hdr, "").await;
        if got.status == StatusCode::OK {
            break;
        }
        assert_eq!(got.header("x-shardmesh-error"), Some("circuit-open"));
        assert!(Instant::now() < deadline, "breaker never closed");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval, not a timing assumption
    }
    let text = metrics(&members[0]).await;
    assert_eq!(
        metric_value(&text, "shardmesh_circuit_breaker_state{peer=\"bank-0\"}"),
        0.0,
        "{text}"
    );
    for to in ["open", "half-open", "closed"] {
        let line =
            format!("shardmesh_circuit_breaker_transitions_total{{peer=\"bank-0\",to=\"{to}\"}}");
        assert!(
            metric_value(&text, &line) >= 1.0,
            "missing transition to {to}: {text}"
        );
    }
}

#[tokio::test]
async fn connect_failure_gives_unavailable_after_retries() {
    let (_bank, mut members) =
        caller_and_bank(|_| async { (StatusCode::OK, String::new()) }, |_| {}).await;
    // Stop the bank sidecar: its inbound port now refuses connections.
    let bank = members.pop().unwrap();
    let _ = bank.stop.unwrap().send(());
    let _ = bank.done.await;
    let got = send(
        members[0].addrs.outbound,
        Method::POST.as_str(),
        "/accounts/a",
        &[("x-shardmesh-service", "bank")],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.body);
    assert_eq!(got.header("x-shardmesh-error"), Some("unavailable"));
    let text = metrics(&members[0]).await;
    assert_eq!(
        metric_value(&text, "shardmesh_retries_total{service=\"bank\"}"),
        2.0,
        "connect failures are retried even for POST: {text}"
    );
}

#[tokio::test]
async fn flood_gets_overloaded_at_once_while_another_service_still_works() {
    let slow = start_app("slow-0", |_| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        (StatusCode::OK, "slow".into())
    })
    .await;
    let fast = start_app("fast-0", |_| async { (StatusCode::OK, "fast".into()) }).await;
    let web = start_app("web-0", |_| async { (StatusCode::OK, String::new()) }).await;
    let mut slow_svc = service("slow", 2);
    slow_svc.resilience.bulkhead.max_pending = 5;
    slow_svc.resilience.retries.attempts = 1;
    let specs = vec![
        MemberSpec {
            name: "web-0".into(),
            service: "web".into(),
            app: web.addr,
        },
        MemberSpec {
            name: "slow-0".into(),
            service: "slow".into(),
            app: slow.addr,
        },
        MemberSpec {
            name: "fast-0".into(),
            service: "fast".into(),
            app: fast.addr,
        },
    ];
    let members = start_mesh(
        specs,
        vec![slow_svc, service("fast", 2), service("web", 1)],
        |_| {},
    )
    .await;
    let out = members[0].addrs.outbound;

    let started = Instant::now();
    let flood: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                send(
                    out,
                    "GET",
                    &format!("/accounts/{i}"),
                    &[("x-shardmesh-service", "slow")],
                    "",
                )
                .await
            })
        })
        .collect();
    // While the slow service's bulkhead is full, the other service is untouched.
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.hits.load(Ordering::SeqCst) < 5 {
        assert!(
            Instant::now() < deadline,
            "flood never reached the slow app"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    let got = send(
        out,
        "GET",
        "/accounts/x",
        &[("x-shardmesh-service", "fast")],
        "",
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "fast service slowed by the flood: {:?}",
        t.elapsed()
    );

    let mut overloaded = 0;
    let mut ok = 0;
    for f in flood {
        let got = f.await.unwrap();
        match got.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(got.header("x-shardmesh-error"), Some("overloaded"));
                assert!(got.header("retry-after").is_some());
                overloaded += 1;
            }
            s => panic!("unexpected {s}: {}", got.body),
        }
    }
    assert_eq!((ok, overloaded), (5, 15));
    assert!(started.elapsed() < Duration::from_secs(4));
    let text = metrics(&members[0]).await;
    assert_eq!(
        metric_value(&text, "shardmesh_load_shed_total{service=\"slow\"}"),
        15.0,
        "{text}"
    );
}

#[tokio::test]
async fn inbound_backpressure_sheds_beyond_the_queue_immediately() {
    let (release, released) = tokio::sync::watch::channel(false);
    let (bank, members) = caller_and_bank(
        move |_| {
            let mut released = released.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                (StatusCode::OK, "done".into())
            }
        },
        |s| {
            s.resilience.backpressure.max_concurrency = 2;
            s.resilience.backpressure.queue_size = 2;
            s.resilience.backpressure.max_queue_wait_ms = 10_000;
        },
    )
    .await;
    let inbound = members[1].addrs.inbound;
    let held: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                send(inbound, "GET", "/x", &[("x-shardmesh-service", "bank")], "").await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while bank.hits.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Two at the app, two queued (give the queued ones a moment to arrive).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(&members[1]).await;
        if metric_value(
            &text,
            "shardmesh_inflight_requests{direction=\"inbound\",service=\"bank\"}",
        ) >= 4.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = Instant::now();
    let got = send(inbound, "GET", "/x", &[("x-shardmesh-service", "bank")], "").await;
    assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(got.header("x-shardmesh-error"), Some("overloaded"));
    assert_eq!(got.header("retry-after"), Some("10"));
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "shed at once, took {:?}",
        t.elapsed()
    );
    release.send(true).unwrap();
    for h in held {
        assert_eq!(h.await.unwrap().status, StatusCode::OK);
    }
}
