use std::time::Duration;

use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::*;
use crate::breaker::{BreakerSettings, Breakers};
use crate::observer::{BreakerState, NoopObserver};

fn breakers() -> Arc<Breakers> {
    let settings = BreakerSettings {
        consecutive_failures: 2,
        ..BreakerSettings::default()
    };
    Breakers::new(settings, Arc::new(NoopObserver))
}

fn grpc_response(status_in_head: Option<&'static str>) -> Response<BoxBody> {
    let mut rsp = Response::new(crate::body::empty());
    rsp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    if let Some(s) = status_in_head {
        rsp.headers_mut()
            .insert("grpc-status", HeaderValue::from_static(s));
    }
    rsp
}

fn ticket(b: &Arc<Breakers>) -> Ticket {
    b.admit(
        &Arc::from("p"),
        Some(Instant::now() + Duration::from_secs(5)),
    )
    .expect("closed breaker admits")
}

#[tokio::test(start_paused = true)]
async fn trailers_only_statuses_are_judged_by_class() {
    let b = breakers();
    for app_status in ["0", "5", "3", "9"] {
        let mut r = Ok(grpc_response(Some(app_status)));
        assert!(settle(&mut r, ticket(&b)).is_none());
    }
    assert_eq!(b.state("p"), BreakerState::Closed);
    for _ in 0..2 {
        let mut r = Ok(grpc_response(Some("14")));
        assert!(settle(&mut r, ticket(&b)).is_none());
    }
    assert_eq!(b.state("p"), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_status_in_the_trailers_is_judged_when_the_body_ends() {
    let b = breakers();
    for code in ["13", "13"] {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static(code));
        let body = http_body_util::StreamBody::new(futures_util::stream::iter([
            Ok::<_, BoxError>(Frame::data(bytes::Bytes::from("msg"))),
            Ok(Frame::trailers(trailers)),
        ]))
        .boxed();
        let (parts, _) = grpc_response(None).into_parts();
        let mut r = Ok(Response::from_parts(parts, body));
        assert!(settle(&mut r, ticket(&b)).is_none());
        assert_eq!(b.state("p"), BreakerState::Closed, "not judged yet");
        let rsp = judge_on_trailers(r.unwrap());
        let collected = rsp.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], code);
    }
    assert_eq!(b.state("p"), BreakerState::Open);
}

#[test]
fn http_answers_fall_through() {
    let b = breakers();
    let mut rsp = Response::new(crate::body::empty());
    *rsp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let mut r = Ok(rsp);
    let t = settle(&mut r, ticket(&b)).expect("not a gRPC answer");
    t.finish(true);
}

#[test]
fn only_trailers_only_unavailable_is_retryable() {
    assert!(is_unavailable_before_any_message(&grpc_response(Some(
        "14"
    ))));
    assert!(!is_unavailable_before_any_message(&grpc_response(Some(
        "13"
    ))));
    assert!(!is_unavailable_before_any_message(&grpc_response(None)));
}
