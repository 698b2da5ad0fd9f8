//! The layers composed the way the sidecar's outbound path uses them:
//! deadline → bulkhead → retry → (router sets Peer) → breaker → upstream.
//! Checks that they fit together and that their errors survive the stack.

use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use shardmesh_resilience::body::{self, BoxBody};
use shardmesh_resilience::{
    boxed_cause, BoxError, BreakerLayer, BreakerSettings, BreakerState, Breakers, BulkheadLayer,
    BulkheadSettings, Bulkheads, CircuitOpen, DeadlineExceeded, DeadlineLayer, Jitter,
    NoopObserver, Peer, RetryLayer, RetrySettings,
};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

type Stack = BoxCloneService<Request<BoxBody>, Response<()>, BoxError>;

/// An upstream pod answering `status` after `delay_ms`, counting requests.
#[derive(Clone, Default)]
struct Pod {
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
}

fn stack(pod: &Pod, breakers: Arc<Breakers>) -> Stack {
    stack_with(pod, breakers, RetrySettings::default())
}

fn stack_with(pod: &Pod, breakers: Arc<Breakers>, retry: RetrySettings) -> Stack {
    let pod = pod.clone();
    let upstream = tower::service_fn(move |_req: Request<BoxBody>| {
        let pod = pod.clone();
        async move {
            pod.calls.fetch_add(1, Ordering::SeqCst);
            let delay = pod.delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay.into())).await;
            let status = pod.status.load(Ordering::SeqCst);
            // A failing pod: its sidecar answers that its app is unreachable.
            let mut rsp = Response::builder().status(status);
            if status >= 500 {
                rsp = rsp.header("x-shardmesh-error", "unavailable");
            }
            Ok::<_, BoxError>(rsp.body(()).unwrap())
        }
    });
    let observer = Arc::new(NoopObserver);
    let bulkheads = Bulkheads::new(observer.clone());
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(10)))
        .layer(BulkheadLayer::new(
            bulkheads.get("bank", BulkheadSettings::default()),
        ))
        .layer(RetryLayer::new("bank", retry, observer).with_jitter(Jitter::fixed(1.0)))
        // The router's job in the sidecar: pick the owner and name it.
        .map_request(|mut req: Request<BoxBody>| {
            req.extensions_mut().insert(Peer("bank-0".into()));
            req
        })
        .layer(BreakerLayer::new(breakers))
        .service(upstream);
    BoxCloneService::new(svc)
}

fn get(timeout_ms: Option<u64>) -> Request<BoxBody> {
    let mut b = Request::get("/accounts/a");
    if let Some(ms) = timeout_ms {
        b = b.header("x-shardmesh-timeout-ms", ms);
    }
    b.body(body::empty()).unwrap()
}

fn breakers() -> Arc<Breakers> {
    Breakers::with_jitter(
        BreakerSettings::default(),
        Arc::new(NoopObserver),
        Jitter::fixed(0.0),
    )
}

#[tokio::test(start_paused = true)]
async fn failing_pod_is_retried_then_its_breaker_fails_fast_then_recovers() {
    let pod = Pod::default();
    pod.status.store(503, Ordering::SeqCst);
    let breakers = breakers();
    let svc = stack(&pod, breakers.clone());

    // First request: three tries, all 503 → the last 503 comes back.
    let rsp = svc.clone().oneshot(get(None)).await.unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(pod.calls.load(Ordering::SeqCst), 3);

    // Second request: two more failures trip the breaker (5 in a row); its
    // third try fails fast, and circuit-open is not retried.
    let err = svc.clone().oneshot(get(None)).await.unwrap_err();
    assert!(boxed_cause::<CircuitOpen>(&err).is_some(), "{err}");
    assert_eq!(pod.calls.load(Ordering::SeqCst), 5);
    assert_eq!(breakers.state("bank-0"), BreakerState::Open);

    // While open, requests fail at once and never reach the pod.
    let start = Instant::now();
    let err = svc.clone().oneshot(get(None)).await.unwrap_err();
    assert!(boxed_cause::<CircuitOpen>(&err).is_some());
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(pod.calls.load(Ordering::SeqCst), 5);

    // The pod recovers; after the open period the probe closes the breaker.
    pod.status.store(200, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    let rsp = svc.clone().oneshot(get(None)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(breakers.state("bank-0"), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_pod_gives_deadline_exceeded_at_the_callers_deadline() {
    let pod = Pod::default();
    pod.status.store(200, Ordering::SeqCst);
    pod.delay_ms.store(30_000, Ordering::SeqCst);
    let breakers = breakers();
    let svc = stack(&pod, breakers.clone());
    let start = Instant::now();
    let err = svc.oneshot(get(Some(200))).await.unwrap_err();
    assert!(boxed_cause::<DeadlineExceeded>(&err).is_some(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(200));
    assert_eq!(pod.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn bad_timeout_header_is_refused_before_any_try() {
    let pod = Pod::default();
    let svc = stack(&pod, breakers());
    let req = Request::get("/")
        .header("x-shardmesh-timeout-ms", "soon")
        .body(body::empty())
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(boxed_cause::<shardmesh_resilience::BadTimeoutHeader>(&err).is_some());
    assert_eq!(pod.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn per_try_timeouts_count_against_the_breaker() {
    // A pod that never answers in time: each cut try is a breaker failure,
    // so the fifth trips it and the sixth try fails fast.
    let pod = Pod::default();
    pod.status.store(200, Ordering::SeqCst);
    pod.delay_ms.store(30_000, Ordering::SeqCst);
    let breakers = breakers();
    let retry = RetrySettings {
        per_try: Some(Duration::from_millis(100)),
        ..RetrySettings::default()
    };
    let svc = stack_with(&pod, breakers.clone(), retry);
    let start = Instant::now();
    let err = svc.clone().oneshot(get(None)).await.unwrap_err();
    // Three tries of 100 ms with 25 ms and 50 ms of backoff between them.
    assert_eq!(start.elapsed(), Duration::from_millis(375));
    assert!(
        boxed_cause::<shardmesh_resilience::TryTimeout>(&err).is_some(),
        "{err}"
    );
    assert_eq!(breakers.state("bank-0"), BreakerState::Closed);
    let err = svc.clone().oneshot(get(None)).await.unwrap_err();
    assert!(boxed_cause::<CircuitOpen>(&err).is_some(), "{err}");
    assert_eq!(pod.calls.load(Ordering::SeqCst), 5);
    assert_eq!(breakers.state("bank-0"), BreakerState::Open);
}
