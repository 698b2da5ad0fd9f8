use super::*;
use crate::errors::{boxed_cause, ConnectError, Overloaded};
use crate::observer::Observer;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use tower::ServiceExt;

/// Counts observer events.
#[derive(Default)]
struct Events {
    retries: AtomicU32,
    exhausted: AtomicU32,
}

impl Observer for Events {
    fn retry(&self, service: &str) {
        assert_eq!(service, "bank");
        self.retries.fetch_add(1, Ordering::SeqCst);
    }
    fn retry_budget_exhausted(&self, _service: &str) {
        self.exhausted.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the scripted upstream does on one try.
#[derive(Clone, Copy, Debug)]
enum Step {
    Status(u16),
    /// A mesh refusal with this `x-shardmesh-error` reason.
    Refused(&'static str),
    Connect,
    Other,
    Sleep(u64, u16),
}

/// An upstream that plays `script` in order (repeating the last step) and
/// records each body it received.
#[derive(Clone)]
struct Upstream {
    script: Arc<Vec<Step>>,
    calls: Arc<AtomicU32>,
    bodies: Arc<Mutex<Vec<bytes::Bytes>>>,
}

impl Upstream {
    fn new(script: &[Step]) -> Self {
        Self {
            script: Arc::new(script.to_vec()),
            calls: Arc::default(),
            bodies: Arc::default(),
        }
    }
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Request<BoxBody>> for Upstream {
    type Response = Response<()>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BoxBody>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
        let step = self.script[n.min(self.script.len() - 1)];
        let bodies = self.bodies.clone();
        Box::pin(async move {
            let body = req.into_body().collect().await?.to_bytes();
            bodies.lock().unwrap().push(body);
            let status = |code: u16| Ok(Response::builder().status(code).body(()).unwrap());
            match step {
                Step::Status(code) => status(code),
                Step::Refused(reason) => Ok(Response::builder()
                    .status(503)
                    .header("x-shardmesh-error", reason)
                    .body(())
                    .unwrap()),
                Step::Connect => Err(ConnectError("connection refused".into()).into()),
                Step::Other => Err("connection reset mid-response".into()),
                Step::Sleep(ms, code) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    status(code)
                }
            }
        })
    }
}

fn settings() -> RetrySettings {
    RetrySettings::default()
}

fn layer(settings: RetrySettings, events: Arc<Events>) -> RetryLayer {
    RetryLayer::new("bank", settings, events).with_jitter(Jitter::fixed(1.0))
}

fn req(method: Method) -> Request<BoxBody> {
    Request::builder()
        .method(method)
        .uri("/accounts/a")
        .body(body::full("payload"))
        .unwrap()
}

async fn send(
    layer: &RetryLayer,
    up: &Upstream,
    r: Request<BoxBody>,
) -> Result<Response<()>, BoxError> {
    layer.layer(up.clone()).oneshot(r).await
}

#[tokio::test(start_paused = true)]
async fn get_is_retried_on_503_with_backoff_and_the_same_body() {
    let events = Arc::new(Events::default());
    let l = layer(settings(), events.clone());
    let up = Upstream::new(&[Step::Status(503), Step::Status(503), Step::Status(200)]);
    let start = Instant::now();
    let rsp = send(&l, &up, req(Method::GET)).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(up.calls(), 3);
    assert_eq!(events.retries.load(Ordering::SeqCst), 2);
    // Jitter fixed at the maximum: 25 ms then 50 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(75));
    let bodies = up.bodies.lock().unwrap();
    assert!(bodies.iter().all(|b| b == "payload"), "{bodies:?}");
}

#[tokio::test(start_paused = true)]
async fn post_is_not_retried_on_503() {
    let l = layer(settings(), Arc::default());
    let up = Upstream::new(&[Step::Status(503), Step::Status(200)]);
    let rsp = send(&l, &up, req(Method::POST)).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_marked_idempotent_is_retried_on_503() {
    let l = layer(settings(), Arc::default());
    let up = Upstream::new(&[Step::Status(503), Step::Status(200)]);
    let mut r = req(Method::POST);
    r.headers_mut()
        .insert("x-shardmesh-idempotent", "true".parse().unwrap());
    assert_eq!(send(&l, &up, r).await.unwrap().status(), StatusCode::OK);
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn peer_refusals_are_retried_even_for_post() {
    // A peer refuses `overloaded` or `no-owner` before its app sees the
    // request (a full queue; a shard in handoff, or two views that name
    // each other as the owner).
    for reason in ["overloaded", "no-owner"] {
        let l = layer(settings(), Arc::default());
        let up = Upstream::new(&[Step::Refused(reason), Step::Status(200)]);
        assert_eq!(
            send(&l, &up, req(Method::POST)).await.unwrap().status(),
            StatusCode::OK,
            "{reason}"
        );
        assert_eq!(up.calls(), 2, "{reason}");
    }
}

#[tokio::test(start_paused = true)]
async fn connect_error_is_retried_even_for_post() {
    let l = layer(settings(), Arc::default());
    let up = Upstream::new(&[Step::Connect, Step::Connect, Step::Status(201)]);
    assert_eq!(
        send(&l, &up, req(Method::POST)).await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(up.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn connect_errors_give_up_after_the_attempts_with_the_typed_error() {
    let l = layer(settings(), Arc::default());
    let up = Upstream::new(&[Step::Connect]);
    let err = send(&l, &up, req(Method::GET)).await.unwrap_err();
    assert!(boxed_cause::<ConnectError>(&err).is_some(), "{err}");
    assert_eq!(up.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn other_errors_are_retried_only_when_idempotent() {
    let l = layer(settings(), Arc::default());
    let up = Upstream::new(&[Step::Other, Step::Status(200)]);
    assert!(send(&l, &up, req(Method::POST)).await.is_err());
    assert_eq!(up.calls(), 1);
    let up = Upstream::new(&[Step::Other, Step::Status(200)]);
    assert!(send(&l, &up, req(Method::PUT)).await.is_ok());
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn success_and_client_errors_are_final() {
    let l = layer(settings(), Arc::default());
    for code in [200, 404, 409, 500] {
        let up = Upstream::new(&[Step::Status(code), Step::Status(200)]);
        assert_eq!(
            send(&l, &up, req(Method::GET))
                .await
                .unwrap()
                .status()
                .as_u16(),
            code
        );
        assert_eq!(up.calls(), 1, "status {code}");
    }
}

#[tokio::test(start_paused = true)]
async fn streamed_body_is_not_retried_even_on_connect_error() {
    let mut s = settings();
    s.max_replay_body_bytes = 16;
    let l = layer(s, Arc::default());
    let up = Upstream::new(&[Step::Connect, Step::Status(200)]);
    let r = Request::put("/x")
        .body(body::full(vec![1u8; 1024]))
        .unwrap();
    let err = send(&l, &up, r).await.unwrap_err();
    assert!(boxed_cause::<ConnectError>(&err).is_some());
    assert_eq!(up.calls(), 1);
    assert_eq!(
        up.bodies.lock().unwrap()[0].len(),
        1024,
        "the body still streams whole"
    );
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_cuts_a_slow_try_and_retries() {
    let mut s = settings();
    s.per_try = Some(Duration::from_millis(500));
    let l = layer(s, Arc::default()).with_jitter(Jitter::fixed(0.0));
    let up = Upstream::new(&[Step::Sleep(5_000, 200), Step::Sleep(100, 200)]);
    let start = Instant::now();
    let rsp = send(&l, &up, req(Method::GET)).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    assert_eq!(start.elapsed(), Duration::from_millis(600));
}

#[tokio::test(start_paused = true)]
async fn per_try_timeout_on_the_last_try_is_a_typed_error() {
    let mut s = settings();
    s.per_try = Some(Duration::from_millis(200));
    s.attempts = 2;
    let l = layer(s, Arc::default()).with_jitter(Jitter::fixed(0.0));
    let up = Upstream::new(&[Step::Sleep(5_000, 200)]);
    let err = send(&l, &up, req(Method::GET)).await.unwrap_err();
    assert!(boxed_cause::<TryTimeout>(&err).is_some(), "{err}");
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn deadline_bounds_the_try_and_gives_deadline_exceeded() {
    let l = layer(settings(), Arc::default());
    let up = Upstream::new(&[Step::Sleep(60_000, 200)]);
    let mut r = req(Method::GET);
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    let start = Instant::now();
    let err = send(&l, &up, r).await.unwrap_err();
    assert!(boxed_cause::<DeadlineExceeded>(&err).is_some(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(up.calls(), 1, "a passed deadline is never retried");
}

#[tokio::test(start_paused = true)]
async fn each_try_forwards_the_remaining_deadline() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let up = tower::service_fn(move |r: Request<BoxBody>| {
        let v = r.headers()["x-shardmesh-timeout-ms"]
            .to_str()
            .unwrap()
            .to_owned();
        seen2.lock().unwrap().push(v);
        async { Ok::<_, BoxError>(Response::builder().status(503).body(()).unwrap()) }
    });
    let l = layer(settings(), Arc::default());
    let mut r = req(Method::GET);
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    let _ = l.layer(up).oneshot(r).await;
    assert_eq!(*seen.lock().unwrap(), ["1000", "975", "925"]);
}

#[tokio::test(start_paused = true)]
async fn no_retry_when_the_backoff_would_pass_the_deadline() {
    let l = layer(settings(), Arc::default());
    let up = Upstream::new(&[Step::Sleep(990, 503), Step::Status(200)]);
    let mut r = req(Method::GET);
    r.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    let rsp = send(&l, &up, r).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn budget_refuses_retries_beyond_the_ratio() {
    // 20 % with no per-second reserve: 100 requests earn exactly 20 retries;
    // every other failed request ends in RetryBudgetExhausted.
    let mut s = settings();
    s.budget_min_per_second = 0;
    s.attempts = 2;
    let events = Arc::new(Events::default());
    let l = layer(s, events.clone()).with_jitter(Jitter::fixed(0.0));
    let up = Upstream::new(&[Step::Status(503)]);
    let mut exhausted = 0;
    for _ in 0..100 {
        match send(&l, &up, req(Method::GET)).await {
            Err(e) if boxed_cause::<RetryBudgetExhausted>(&e).is_some() => exhausted += 1,
            Ok(rsp) => assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(events.retries.load(Ordering::SeqCst), 20);
    assert_eq!(up.calls(), 120);
    assert_eq!(exhausted, 80);
    assert_eq!(events.exhausted.load(Ordering::SeqCst), 80);
}

#[tokio::test(start_paused = true)]
async fn a_peer_refusal_is_returned_when_the_budget_refuses_a_retry() {
    for reason in ["overloaded", "no-owner"] {
        let mut s = settings();
        s.budget_min_per_second = 0;
        s.budget_ratio = 0.0;
        let l = layer(s, Arc::default()).with_jitter(Jitter::fixed(0.0));
        let up = tower::service_fn(move |_r: Request<BoxBody>| async move {
            let rsp = Response::builder()
                .status(503)
                .header("x-shardmesh-error", reason)
                .header("retry-after", "1")
                .body(())
                .unwrap();
            Ok::<_, BoxError>(rsp)
        });
        let rsp = tower::ServiceExt::oneshot(l.layer(up), req(Method::POST))
            .await
            .unwrap();
        assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(rsp.headers()["x-shardmesh-error"], reason);
    }
}

#[tokio::test(start_paused = true)]
async fn budget_reserve_allows_min_per_second_then_recovers_after_the_window() {
    // 0 % ratio and 1 retry/s over a 10 s window: a reserve of 10 retries.
    let mut s = settings();
    s.budget_ratio = 0.0;
    s.budget_min_per_second = 1;
    s.attempts = 2;
    let events = Arc::new(Events::default());
    let l = layer(s, events.clone()).with_jitter(Jitter::fixed(0.0));
    let up = Upstream::new(&[Step::Connect]);
    for _ in 0..30 {
        let _ = send(&l, &up, req(Method::POST)).await;
    }
    assert_eq!(events.retries.load(Ordering::SeqCst), 10);
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..30 {
        let _ = send(&l, &up, req(Method::POST)).await;
    }
    assert_eq!(events.retries.load(Ordering::SeqCst), 20);
}

#[tokio::test(start_paused = true)]
async fn local_overloaded_error_is_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let up = tower::service_fn(move |_r: Request<BoxBody>| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err::<Response<()>, BoxError>(
                    Overloaded {
                        retry_after: Duration::from_secs(1),
                    }
                    .into(),
                )
            } else {
                Ok(Response::new(()))
            }
        }
    });
    let l = layer(settings(), Arc::default());
    assert!(l.layer(up).oneshot(req(Method::POST)).await.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn settings_come_from_the_policy() {
    let s = RetrySettings::from(&shardmesh_config::ResiliencePolicy::default());
    assert_eq!(s.attempts, 3);
    assert_eq!(s.backoff_base, Duration::from_millis(25));
    assert_eq!(s.backoff_max, Duration::from_secs(1));
    assert!((s.budget_ratio - 0.2).abs() < 1e-6);
    assert_eq!(s.budget_min_per_second, 10);
    assert_eq!(s.budget_window, Duration::from_secs(10));
    assert_eq!(s.max_replay_body_bytes, 64 * 1024);
    assert_eq!(s.per_try, None);
}

#[test]
fn out_of_range_budget_settings_do_not_panic() {
    let mut s = settings();
    s.budget_window = Duration::from_secs(600);
    s.budget_ratio = f32::NAN;
    s.budget_min_per_second = u32::MAX;
    let _ = s.budget();
}

#[tokio::test(start_paused = true)]
async fn absurd_timeouts_do_not_panic() {
    let mut s = settings();
    s.per_try = Some(Duration::MAX);
    s.backoff_base = Duration::MAX;
    s.backoff_max = Duration::MAX;
    s.attempts = 2;
    let l = layer(s, Arc::default());
    let up = Upstream::new(&[Step::Status(503), Step::Status(200)]);
    let mut r = req(Method::GET);
    r.extensions_mut().insert(Deadline::after(Duration::MAX));
    // The backoff would end past the (saturated) deadline: no retry, the
    // real outcome comes back, and nothing overflowed on the way.
    let rsp = send(&l, &up, r).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Without a deadline it sleeps the (saturated) backoff, which the
    // paused clock skips, and retries.
    let up = Upstream::new(&[Step::Status(503), Step::Status(200)]);
    let rsp = send(&l, &up, req(Method::GET)).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
}

#[test]
fn the_per_request_future_stays_small() {
    // Every request moves this future into a box; nesting async fns used to
    // copy the request head into each level (2.8 KiB). Guard against regrowth.
    let l = layer(settings(), Arc::default());
    let mut svc = l.layer(Upstream::new(&[Step::Status(200)]));
    let f = svc.call(req(Method::GET));
    let size = std::mem::size_of_val(&*f);
    assert!(size <= 2048, "retry future is {size} bytes");
}
