use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::*;

#[test]
fn probes_and_metrics_answer() {
    let metrics = Metrics::new().unwrap();
    metrics.observe(Duration::from_millis(3), Ok(()));
    let health = Health::default();
    let get = Method::GET;
    assert_eq!(
        respond(&get, "/healthz", &metrics, &health).status(),
        StatusCode::OK
    );
    assert_eq!(
        respond(&get, "/readyz", &metrics, &health).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    health.ready.store(true, Ordering::Relaxed);
    assert_eq!(
        respond(&get, "/readyz", &metrics, &health).status(),
        StatusCode::OK
    );
    assert_eq!(
        respond(&get, "/nope", &metrics, &health).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        respond(&Method::POST, "/metrics", &metrics, &health).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn serves_over_tcp_and_stops_on_shutdown() {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Metrics::new().unwrap();
    metrics.observe(Duration::from_millis(3), Ok(()));
    let health = Arc::new(Health::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, metrics, health, async move {
        let _ = stopped.await;
    }));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{addr}/metrics").parse().unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("shardmesh_reconciliations_total 1"), "{text}");
    assert!(
        text.contains("shardmesh_reconcile_duration_seconds_bucket"),
        "{text}"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}
