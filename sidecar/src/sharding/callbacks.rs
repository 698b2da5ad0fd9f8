//! The app's shard callbacks: `POST /shardmesh/shards/{id}/acquire` and
//! `/release` with `{"service", "shard", "epoch"}`.

use std::time::Duration;

use http::{header, Method, Request};
use shardmesh_shards::{Callback, Outcome};

use crate::app_client::AppClient;
use crate::body::full;

/// How long the app gets to load or flush a shard before the call is
/// retried; the state machine retries failed calls.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls the app and classifies its answer: 2xx done, 404 stateless app
/// (counts as done), anything else (or no answer) failed.
pub async fn call(
    app: &AppClient,
    service: &str,
    kind: Callback,
    shard: u32,
    epoch: u64,
) -> Outcome {
    let verb = match kind {
        Callback::Acquire => "acquire",
        Callback::Release => "release",
    };
    let body =
        serde_json::json!({ "service": service, "shard": shard, "epoch": epoch }).to_string();
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/shardmesh/shards/{shard}/{verb}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(crate::headers::SHARD, shard)
        .header(crate::headers::EPOCH, epoch)
        .body(full(body));
    let Ok(req) = req else {
        return Outcome::Failed;
    };
    match tokio::time::timeout(CALLBACK_TIMEOUT, app.send(req)).await {
        Ok(Ok(rsp)) if rsp.status().is_success() => Outcome::Ok,
        Ok(Ok(rsp)) if rsp.status() == http::StatusCode::NOT_FOUND => Outcome::NotImplemented,
        Ok(Ok(rsp)) => {
            tracing::warn!(shard, epoch, status = %rsp.status(), "app {verb} callback failed");
            Outcome::Failed
        }
        Ok(Err(e)) => {
            tracing::warn!(shard, epoch, error = %e, "app {verb} callback failed");
            Outcome::Failed
        }
        Err(_) => {
            tracing::warn!(shard, epoch, "app {verb} callback timed out");
            Outcome::Failed
        }
    }
}
