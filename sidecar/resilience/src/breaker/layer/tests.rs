use super::*;
use crate::backoff::Jitter;
use crate::breaker::BreakerSettings;
use crate::deadline::{Deadline, TryDeadline};
use crate::errors::{boxed_cause, CircuitOpen};
use crate::observer::{BreakerState, Observer};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

/// Records breaker transitions.
#[derive(Default)]
struct Transitions(Mutex<Vec<(String, BreakerState)>>);

impl Observer for Transitions {
    fn breaker_transition(&self, peer: &str, to: BreakerState) {
        self.0.lock().unwrap().push((peer.to_owned(), to));
    }
}

impl Transitions {
    fn states(&self) -> Vec<BreakerState> {
        self.0.lock().unwrap().iter().map(|(_, s)| *s).collect()
    }
}

/// An upstream answering with the status currently in `status`, counting calls.
#[derive(Clone, Default)]
struct Upstream {
    status: Arc<AtomicU16>,
    calls: Arc<AtomicU32>,
}

impl Upstream {
    fn answering(code: u16) -> Self {
        let up = Self::default();
        up.status.store(code, Ordering::SeqCst);
        up
    }

    fn service(
        &self,
    ) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError> + Clone {
        let up = self.clone();
        tower::service_fn(move |_req: Request<()>| {
            up.calls.fetch_add(1, Ordering::SeqCst);
            let code = up.status.load(Ordering::SeqCst);
            // A failing pod: its sidecar cannot reach its app.
            let mut rsp = Response::builder().status(code);
            if code >= 500 {
                rsp = rsp.header("x-shardmesh-error", "unavailable");
            }
            async move { Ok::<_, BoxError>(rsp.body(()).unwrap()) }
        })
    }
}

fn to_peer(peer: &str) -> Request<()> {
    let mut req = Request::get("/").body(()).unwrap();
    req.extensions_mut().insert(Peer(peer.into()));
    req
}

fn breakers(observer: Arc<Transitions>) -> Arc<Breakers> {
    Breakers::with_jitter(BreakerSettings::default(), observer, Jitter::fixed(0.0))
}

#[tokio::test(start_paused = true)]
async fn flapping_peer_opens_fails_fast_then_closes_via_half_open() {
    let events = Arc::new(Transitions::default());
    let reg = breakers(events.clone());
    let layer = BreakerLayer::new(reg.clone());
    let up = Upstream::answering(500);

    for _ in 0..5 {
        let rsp = layer
            .layer(up.service())
            .oneshot(to_peer("bank-0"))
            .await
            .unwrap();
        assert_eq!(rsp.status(), 500);
    }
    assert_eq!(reg.state("bank-0"), BreakerState::Open);

    // Open: fails fast without touching the upstream, and no time passes.
    let start = Instant::now();
    let err = layer
        .layer(up.service())
        .oneshot(to_peer("bank-0"))
        .await
        .unwrap_err();
    assert_eq!(
        boxed_cause::<CircuitOpen>(&err).map(|e| e.peer.as_str()),
        Some("bank-0")
    );
    assert_eq!(up.calls.load(Ordering::SeqCst), 5);
    assert_eq!(start.elapsed(), Duration::ZERO);

    // Another peer is unaffected.
    assert!(layer
        .layer(up.service())
        .oneshot(to_peer("bank-1"))
        .await
        .is_ok());

    // After the open period the upstream has recovered: the probe closes it.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(reg.is_available("bank-0", Instant::now()));
    up.status.store(200, Ordering::SeqCst);
    let rsp = layer
        .layer(up.service())
        .oneshot(to_peer("bank-0"))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(reg.state("bank-0"), BreakerState::Closed);
    assert_eq!(
        events.states(),
        [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn errors_count_as_failures() {
    let reg = breakers(Arc::default());
    let layer = BreakerLayer::new(reg.clone());
    let failing = tower::service_fn(|_r: Request<()>| async {
        Err::<Response<()>, BoxError>("connection reset".into())
    });
    for _ in 0..5 {
        assert!(layer.layer(failing).oneshot(to_peer("p")).await.is_err());
    }
    assert_eq!(reg.state("p"), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_lets_one_probe_through_at_a_time() {
    let reg = breakers(Arc::default());
    let layer = BreakerLayer::new(reg.clone());
    let up = Upstream::answering(503);
    for _ in 0..5 {
        let _ = layer.layer(up.service()).oneshot(to_peer("p")).await;
    }
    tokio::time::advance(Duration::from_secs(5)).await;

    let (mock, mut handle) = tower_test::mock::pair::<Request<()>, Response<()>>();
    let probe = tokio::spawn(layer.layer(mock).oneshot(to_peer("p")));
    let (_req, respond) = handle.next_request().await.expect("probe reaches upstream");
    assert_eq!(reg.state("p"), BreakerState::HalfOpen);

    // While the probe is out, others fail fast.
    for _ in 0..3 {
        let err = layer
            .layer(up.service())
            .oneshot(to_peer("p"))
            .await
            .unwrap_err();
        assert!(boxed_cause::<CircuitOpen>(&err).is_some());
    }
    respond.send_response(Response::new(()));
    assert!(probe.await.unwrap().is_ok());
    assert_eq!(reg.state("p"), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_try_cut_by_its_deadline_counts_as_a_failure() {
    let reg = breakers(Arc::default());
    let layer = BreakerLayer::new(reg.clone());
    let hang = tower::service_fn(|_r: Request<()>| {
        std::future::pending::<Result<Response<()>, BoxError>>()
    });
    for _ in 0..5 {
        let end = Instant::now() + Duration::from_millis(100);
        let mut req = to_peer("p");
        req.extensions_mut().insert(TryDeadline(end));
        let cut = tokio::time::timeout_at(end, layer.layer(hang).oneshot(req)).await;
        assert!(cut.is_err());
    }
    assert_eq!(reg.state("p"), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_counts_for_nothing_and_frees_the_probe() {
    let reg = breakers(Arc::default());
    let layer = BreakerLayer::new(reg.clone());
    let hang = tower::service_fn(|_r: Request<()>| {
        std::future::pending::<Result<Response<()>, BoxError>>()
    });
    // Ten callers give up early (no deadline reached): nothing is counted.
    for _ in 0..10 {
        let mut req = to_peer("p");
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(10)));
        let cut =
            tokio::time::timeout(Duration::from_millis(10), layer.layer(hang).oneshot(req)).await;
        assert!(cut.is_err());
    }
    assert_eq!(reg.state("p"), BreakerState::Closed);

    // Open it, then cancel the half-open probe: the next request may probe.
    let up = Upstream::answering(500);
    for _ in 0..5 {
        let _ = layer.layer(up.service()).oneshot(to_peer("p")).await;
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    let cut = tokio::time::timeout(
        Duration::from_millis(10),
        layer.layer(hang).oneshot(to_peer("p")),
    )
    .await;
    assert!(cut.is_err());
    assert!(reg.is_available("p", Instant::now()));
    up.status.store(200, Ordering::SeqCst);
    assert!(layer
        .layer(up.service())
        .oneshot(to_peer("p"))
        .await
        .is_ok());
    assert_eq!(reg.state("p"), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_peer_pass_through() {
    let reg = breakers(Arc::default());
    let layer = BreakerLayer::new(reg.clone());
    let up = Upstream::answering(500);
    for _ in 0..10 {
        let req = Request::get("/").body(()).unwrap();
        assert!(layer.layer(up.service()).oneshot(req).await.is_ok());
    }
    assert!(reg.snapshot().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_forgotten_peer_starts_closed_and_the_gauge_follows() {
    let events = Arc::new(Transitions::default());
    let reg = breakers(events.clone());
    let layer = BreakerLayer::new(reg.clone());
    let up = Upstream::answering(500);
    for _ in 0..5 {
        let _ = layer.layer(up.service()).oneshot(to_peer("bank-1")).await;
    }
    assert_eq!(reg.state("bank-1"), BreakerState::Open);
    // The pod restarted (a new gossip generation): forget what we learned.
    reg.forget("bank-1");
    assert_eq!(reg.state("bank-1"), BreakerState::Closed);
    assert_eq!(
        events.states().last(),
        Some(&BreakerState::Closed),
        "the state gauge is told"
    );
    up.status.store(200, Ordering::SeqCst);
    let rsp = layer
        .layer(up.service())
        .oneshot(to_peer("bank-1"))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200, "no open period inherited");
    // Forgetting a closed or unknown breaker reports nothing.
    let before = events.states().len();
    reg.forget("bank-1");
    reg.forget("never-seen");
    assert_eq!(events.states().len(), before);
}

#[tokio::test(start_paused = true)]
async fn registry_forgets_departed_peers() {
    let reg = breakers(Arc::default());
    let layer = BreakerLayer::new(reg.clone());
    let up = Upstream::answering(200);
    for p in ["a", "b", "c"] {
        let _ = layer.layer(up.service()).oneshot(to_peer(p)).await;
    }
    reg.retain(|p| p != "b");
    let mut peers: Vec<String> = reg
        .snapshot()
        .into_iter()
        .map(|(p, _)| p.to_string())
        .collect();
    peers.sort();
    assert_eq!(peers, ["a", "c"]);
    assert!(reg.is_available("never-seen", Instant::now()));
}

/// A service answering 503 with the mesh error `reason`, or a plain 503
/// when `reason` is empty.
fn mesh_answer(
    reason: &'static str,
) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError> + Clone {
    tower::service_fn(move |_r: Request<()>| async move {
        let mut rsp = Response::builder().status(503);
        if !reason.is_empty() {
            rsp = rsp.header("x-shardmesh-error", reason);
        }
        Ok::<_, BoxError>(rsp.body(()).unwrap())
    })
}

#[tokio::test(start_paused = true)]
async fn no_owner_and_overloaded_answers_do_not_count_as_failures() {
    for reason in ["no-owner", "overloaded"] {
        let reg = breakers(Arc::default());
        let layer = BreakerLayer::new(reg.clone());
        for _ in 0..50 {
            let rsp = layer
                .layer(mesh_answer(reason))
                .oneshot(to_peer("p"))
                .await
                .unwrap();
            assert_eq!(rsp.status(), 503);
        }
        assert_eq!(reg.state("p"), BreakerState::Closed, "{reason}");
    }
}

#[tokio::test(start_paused = true)]
async fn app_errors_never_open_the_breaker_of_a_pod() {
    // The app answers 503 for reasons of its own (a saga's downstream is
    // down, a fenced term): the pod is fine, its other keys must not fail fast.
    let reg = breakers(Arc::default());
    let layer = BreakerLayer::new(reg.clone());
    for _ in 0..50 {
        let rsp = layer
            .layer(mesh_answer(""))
            .oneshot(to_peer("p"))
            .await
            .unwrap();
        assert_eq!(rsp.status(), 503);
    }
    assert_eq!(reg.state("p"), BreakerState::Closed);
    // The peer sidecar's `timeout` (its app too slow) does count.
    for _ in 0..5 {
        let _ = layer
            .layer(mesh_answer("timeout"))
            .oneshot(to_peer("p"))
            .await;
    }
    assert_eq!(reg.state("p"), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn overloaded_answers_do_not_reset_a_failure_streak() {
    // A peer whose app times out while its sidecar sheds the excess: the
    // shed answers must not hide the failures from the breaker.
    let reg = breakers(Arc::default());
    let layer = BreakerLayer::new(reg.clone());
    for _ in 0..4 {
        let _ = layer
            .layer(mesh_answer("unavailable"))
            .oneshot(to_peer("p"))
            .await;
        let _ = layer
            .layer(mesh_answer("overloaded"))
            .oneshot(to_peer("p"))
            .await;
    }
    assert_eq!(reg.state("p"), BreakerState::Closed);
    let _ = layer
        .layer(mesh_answer("unavailable"))
        .oneshot(to_peer("p"))
        .await;
    assert_eq!(reg.state("p"), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_probe_neither_closes_nor_reopens_the_breaker() {
    let events = Arc::new(Transitions::default());
    let reg = breakers(events.clone());
    let layer = BreakerLayer::new(reg.clone());
    for _ in 0..5 {
        let _ = layer
            .layer(mesh_answer("unavailable"))
            .oneshot(to_peer("p"))
            .await;
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    let rsp = layer
        .layer(mesh_answer("overloaded"))
        .oneshot(to_peer("p"))
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503);
    assert_eq!(reg.state("p"), BreakerState::HalfOpen);
    // The probe slot is free again: the next request probes and closes it.
    assert!(reg.is_available("p", Instant::now()));
    let up = Upstream::answering(200);
    assert!(layer
        .layer(up.service())
        .oneshot(to_peer("p"))
        .await
        .is_ok());
    assert_eq!(
        events.states(),
        [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Closed
        ]
    );
}
