//! Routing of the app's API: parse, validate, call the bank, answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response};
use serde::de::DeserializeOwned;

use crate::accounts::Accounts;
use crate::bank::{Bank, Route};
use crate::http::headers;
use crate::http::respond::{self, Body};
use crate::model::{self, CancelRequest, ShardCallback, TransferRequest, WriteRequest, MAX_BODY};

/// What the routes share.
#[derive(Debug)]
pub struct App {
    /// Shards and operations.
    pub bank: Arc<Bank>,
    /// How transfers reach accounts.
    pub accounts: Accounts,
    /// Injected delay of account and transfer requests, in ms (fault drills).
    pub delay_ms: AtomicU64,
    /// Serve `PUT /debug/delay-ms` (off unless `--debug-api`).
    pub debug_api: bool,
}

/// Answers one request; never fails (errors become JSON answers).
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let route = match route_of(&parts.headers) {
        Ok(r) => r,
        Err(msg) => return respond::error(400, "bad-request", &msg),
    };
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let msg = format!("request body over {MAX_BODY} bytes");
            return respond::error(413, "body-too-large", &msg);
        }
        Err(e) => return respond::error(400, "bad-request", &format!("reading body: {e}")),
    };
    if matches!(segments.first(), Some(&"accounts" | &"transfers")) {
        let delay = app.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
    match (&parts.method, segments.as_slice()) {
        (&Method::PUT, ["debug", "delay-ms"]) if app.debug_api => set_delay(&app, &body),
        (&Method::GET, ["live"]) | (&Method::GET, ["ready"]) => {
            respond::json(200, &serde_json::json!({ "status": "ok" }))
        }
        (&Method::GET, ["accounts", id]) => balance(&app, route, id).await,
        (&Method::POST, ["accounts", id, action]) => write(&app, route, id, action, &body).await,
        (&Method::POST, ["transfers"]) => transfer(&app, &body).await,
        (&Method::POST, ["shardmesh", "shards", id, action]) => {
            callback(&app, id, action, &body).await
        }
        (_, ["accounts", ..] | ["transfers"] | ["shardmesh", ..]) => respond::error(
            405,
            "method-not-allowed",
            "see the API table in examples/README.md",
        ),
        _ => respond::error(404, "not-found", "no such route"),
    }
}

async fn balance(app: &App, route: Route, id: &str) -> Response<Body> {
    if let Err(msg) = model::validate_account(id) {
        return respond::error(400, "bad-request", &msg);
    }
    match app.bank.balance(route, id).await {
        Ok(balance) => respond::json(200, &serde_json::json!({ "balance": balance })),
        Err(e) => respond::bank_error(&e),
    }
}

async fn write(app: &App, route: Route, id: &str, action: &str, body: &Bytes) -> Response<Body> {
    if let Err(msg) = model::validate_account(id) {
        return respond::error(400, "bad-request", &msg);
    }
    let result = match action {
        "deposit" | "withdraw" => {
            let req: WriteRequest = match parse(body) {
                Ok(r) => r,
                Err(msg) => return respond::error(400, "bad-request", &msg),
            };
            if let Err(msg) = req.validate() {
                return respond::error(400, "bad-request", &msg);
            }
            if action == "deposit" {
                app.bank.deposit(route, id, &req.op, req.amount).await
            } else {
                app.bank.withdraw(route, id, &req.op, req.amount).await
            }
        }
        "cancel" => {
            let req: CancelRequest = match parse(body) {
                Ok(r) => r,
                Err(msg) => return respond::error(400, "bad-request", &msg),
            };
            if let Err(msg) = model::validate_op(&req.op) {
                return respond::error(400, "bad-request", &msg);
            }
            app.bank.cancel(route, id, &req.op).await
        }
        _ => return respond::error(404, "not-found", "no such account action"),
    };
    match result {
        Ok(outcome) => {
            let (status, body) = outcome.to_http();
            respond::json(status, &body)
        }
        Err(e) => respond::bank_error(&e),
    }
}

async fn transfer(app: &App, body: &Bytes) -> Response<Body> {
    let req: TransferRequest = match parse(body) {
        Ok(r) => r,
        Err(msg) => return respond::error(400, "bad-request", &msg),
    };
    if let Err(msg) = req.validate() {
        return respond::error(400, "bad-request", &msg);
    }
    let (status, body) = crate::saga::transfer(&app.accounts, &req).await.to_http();
    respond::json(status, &body)
}

async fn callback(app: &App, id: &str, action: &str, body: &Bytes) -> Response<Body> {
    let Ok(id) = id.parse::<u32>() else {
        return respond::error(
            400,
            "bad-request",
            "shard id must be a non-negative integer",
        );
    };
    let req: ShardCallback = match parse(body) {
        Ok(r) => r,
        Err(msg) => return respond::error(400, "bad-request", &msg),
    };
    if req.shard != id {
        return respond::error(400, "bad-request", "shard in body differs from the path");
    }
    if req
        .service
        .as_deref()
        .is_some_and(|s| s != headers::BANK_SERVICE)
    {
        return respond::error(400, "bad-request", "service must be bank");
    }
    let result = match action {
        "acquire" => app.bank.acquire(id, req.epoch).await,
        "release" => app.bank.release(id, req.epoch).await,
        _ => return respond::error(404, "not-found", "no such shard action"),
    };
    match result {
        Ok(()) => respond::json(200, &serde_json::json!({ "shard": id, "epoch": req.epoch })),
        Err(e) => respond::bank_error(&e),
    }
}

fn set_delay(app: &App, body: &Bytes) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Delay {
        ms: u64,
    }
    match parse::<Delay>(body) {
        Ok(d) if d.ms <= crate::app::MAX_DELAY_MS => {
            app.delay_ms.store(d.ms, Ordering::Relaxed);
            respond::json(200, &serde_json::json!({ "delay_ms": d.ms }))
        }
        Ok(_) => respond::error(400, "bad-request", "ms out of range"),
        Err(msg) => respond::error(400, "bad-request", &msg),
    }
}

/// Shard and epoch headers, if present; malformed ones are a 400.
fn route_of(h: &HeaderMap) -> Result<Route, String> {
    fn num<T: std::str::FromStr>(
        h: &HeaderMap,
        name: &hyper::header::HeaderName,
    ) -> Result<Option<T>, String> {
        match h.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| format!("{name} must be a non-negative integer")),
        }
    }
    Ok(Route {
        shard: num(h, &headers::SHARD)?,
        epoch: num(h, &headers::EPOCH)?,
    })
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}
