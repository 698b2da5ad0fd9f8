use super::*;
use crate::errors::boxed_cause;
use std::convert::Infallible;
use tower::{service_fn, ServiceExt};

type Req = Request<()>;

/// An inner service that answers after `delay` with the timeout header it saw.
fn echo_after(
    delay: Duration,
) -> impl Service<Req, Response = (Option<String>, Option<Deadline>), Error = Infallible> + Clone {
    service_fn(move |req: Req| async move {
        tokio::time::sleep(delay).await;
        let header = req
            .headers()
            .get(&TIMEOUT_HEADER)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        Ok::<_, Infallible>((header, Deadline::of(&req)))
    })
}

fn request(timeout: Option<&str>) -> Req {
    let mut b = Request::get("/");
    if let Some(t) = timeout {
        b = b.header("x-shardmesh-timeout-ms", t);
    }
    b.body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn default_deadline_is_set_and_forwarded() {
    let svc = DeadlineLayer::new(Duration::from_secs(10)).layer(echo_after(Duration::ZERO));
    let start = Instant::now();
    let (header, deadline) = svc.oneshot(request(None)).await.unwrap();
    assert_eq!(header.as_deref(), Some("10000"));
    assert_eq!(deadline, Some(Deadline(start + Duration::from_secs(10))));
}

#[tokio::test(start_paused = true)]
async fn without_extension_still_forwards_and_enforces() {
    let layer = DeadlineLayer::new(Duration::from_secs(10)).without_extension();
    let svc = layer.layer(echo_after(Duration::ZERO));
    let (header, deadline) = svc.oneshot(request(Some("250"))).await.unwrap();
    assert_eq!(header.as_deref(), Some("250"));
    assert_eq!(deadline, None);
    let slow = layer.layer(echo_after(Duration::from_secs(60)));
    let err = slow.oneshot(request(Some("250"))).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn header_overrides_default_and_is_rewritten() {
    let svc = DeadlineLayer::new(Duration::from_secs(10)).layer(echo_after(Duration::ZERO));
    let (header, _) = svc.oneshot(request(Some("250"))).await.unwrap();
    assert_eq!(header.as_deref(), Some("250"));
}

#[tokio::test(start_paused = true)]
async fn tighter_outer_deadline_wins() {
    let svc = DeadlineLayer::new(Duration::from_secs(10)).layer(echo_after(Duration::ZERO));
    let mut req = request(Some("5000"));
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(300)));
    let (header, _) = svc.oneshot(req).await.unwrap();
    assert_eq!(header.as_deref(), Some("300"));
}

#[tokio::test(start_paused = true)]
async fn slow_inner_fails_with_deadline_exceeded_at_the_deadline() {
    let svc =
        DeadlineLayer::new(Duration::from_secs(10)).layer(echo_after(Duration::from_secs(60)));
    let start = Instant::now();
    let err = svc.oneshot(request(Some("1500"))).await.unwrap_err();
    assert!(boxed_cause::<DeadlineExceeded>(&err).is_some(), "{err}");
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
}

#[tokio::test(start_paused = true)]
async fn invalid_headers_are_typed_errors() {
    for bad in ["abc", "0", "-5", "1.5", "99999999999999999999", "3600001"] {
        let svc = DeadlineLayer::new(Duration::from_secs(10)).layer(echo_after(Duration::ZERO));
        let err = svc.oneshot(request(Some(bad))).await.unwrap_err();
        let found = boxed_cause::<BadTimeoutHeader>(&err);
        assert!(found.is_some(), "{bad}: {err}");
    }
}

#[tokio::test(start_paused = true)]
async fn stamp_rounds_up_and_refuses_a_passed_deadline() {
    let deadline = Deadline::after(Duration::from_micros(1500));
    let mut headers = HeaderMap::new();
    stamp_remaining(&mut headers, deadline).unwrap();
    assert_eq!(headers[&TIMEOUT_HEADER], "2");
    tokio::time::advance(Duration::from_millis(2)).await;
    assert_eq!(
        stamp_remaining(&mut headers, deadline),
        Err(DeadlineExceeded)
    );
}

#[test]
fn settings_come_from_the_policy() {
    let s = TimeoutSettings::from(&shardmesh_config::TimeoutPolicy {
        request_ms: 2500,
        per_try_ms: Some(400),
    });
    assert_eq!(s.request, Duration::from_millis(2500));
    assert_eq!(s.per_try, Some(Duration::from_millis(400)));
    assert_eq!(TimeoutSettings::default().request, Duration::from_secs(10));
}

#[test]
fn a_try_ends_at_the_earlier_of_its_own_and_the_request_deadline() {
    let now = Instant::now();
    let early = now + Duration::from_millis(10);
    let late = now + Duration::from_millis(20);
    let mut req = http::Request::new(());
    assert_eq!(try_ends(&req), None);
    req.extensions_mut().insert(Deadline(late));
    assert_eq!(try_ends(&req), Some(late));
    req.extensions_mut().insert(TryDeadline(early));
    assert_eq!(try_ends(&req), Some(early));
    req.extensions_mut().remove::<Deadline>();
    assert_eq!(try_ends(&req), Some(early));
}
