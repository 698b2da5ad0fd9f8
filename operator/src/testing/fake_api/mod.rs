//! A small in-memory Kubernetes API server, as a `tower::Service` that a
//! `kube::Client` talks to: list, watch (resumable by resourceVersion, 410
//! when too old), get, create, server-side apply and merge patches (also of
//! `/status`), replace, delete with owner-reference garbage collection,
//! resourceVersion preconditions (409), and injected faults. It counts every
//! write so tests and the benchmark can assert "zero writes".
//!
//! Written by hand because no maintained crate does this for kube 5
//! (`kube-fake-client` targets kube 4 and has no watch).

mod store;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};

pub use store::{merge, Key, HISTORY};
use store::{Store, Watcher};

/// The response body: a whole JSON document, or a stream of watch events.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

/// A scripted failure: the next `times` requests matching it get `status`.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only this method (`None`: any).
    pub method: Option<Method>,
    /// Only paths containing this.
    pub path_contains: String,
    /// The HTTP status returned (e.g. 500, 409).
    pub status: u16,
    /// How many requests fail.
    pub times: usize,
}

/// One request the server saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path (no query).
    pub path: String,
}

/// The server; clones share state.
#[derive(Clone, Default)]
pub struct FakeApi {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    store: Mutex<Store>,
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<Fault>>,
    /// Simulate the StatefulSet controller: every written StatefulSet is at once fully ready.
    ready_statefulsets: std::sync::atomic::AtomicBool,
    /// ServiceAccount tokens TokenReview accepts: token -> (namespace, account, pod).
    tokens: Mutex<HashMap<String, TokenOwner>>,
    /// The one audience a token was issued for; tokens absent here suit any audience.
    token_audiences: Mutex<HashMap<String, String>>,
}

/// Who a fake token belongs to: namespace, ServiceAccount, bound pod.
type TokenOwner = (String, String, Option<String>);

/// A parsed API path.
struct Route {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeApi {
    /// An empty server.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client of this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// Makes every StatefulSet written report all replicas ready and updated.
    pub fn simulate_ready_statefulsets(&self, on: bool) {
        self.inner
            .ready_statefulsets
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes TokenReview accept `token` as ServiceAccount `account` of
    /// `namespace`, bound to `pod` when given (like a projected token).
    pub fn add_token(&self, token: &str, namespace: &str, account: &str, pod: Option<&str>) {
        lock(&self.inner.tokens).insert(
            token.to_string(),
            (
                namespace.to_string(),
                account.to_string(),
                pod.map(String::from),
            ),
        );
    }

    /// Restricts `token` to `audience`: a TokenReview asking for other
    /// audiences fails, like the API server's audience check.
    pub fn set_token_audience(&self, token: &str, audience: &str) {
        lock(&self.inner.token_audiences).insert(token.to_string(), audience.to_string());
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.inner.calls).clone()
    }

    /// Requests that were not reads.
    pub fn writes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method != Method::GET)
            .collect()
    }

    /// Writes to paths containing `needle`.
    pub fn writes_to(&self, needle: &str) -> usize {
        self.writes()
            .iter()
            .filter(|c| c.path.contains(needle))
            .count()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        lock(&self.inner.calls).clear();
    }

    /// Adds a scripted failure.
    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.faults).push(fault);
    }

    /// The stored object, if any (`collection` as in `apps/v1/statefulsets`).
    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.inner.store)
            .objects
            .get(&(collection.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Number of stored objects in `collection`.
    pub fn count(&self, collection: &str) -> usize {
        lock(&self.inner.store).list(collection, None, &[]).len()
    }

    /// Stores or replaces an object as a user would (not recorded as a call).
    pub fn put(&self, collection: &str, obj: Value) -> Value {
        let key = key_of(collection, &obj);
        let mut store = lock(&self.inner.store);
        match store.objects.get(&key).cloned() {
            Some(mut old) => {
                merge(&mut old, &obj);
                store.update(key, old, &|_, _| {})
            }
            None => store.create(key, obj, &|_, _| {}),
        }
    }

    /// Edits a stored object as a user would; returns false when absent.
    pub fn edit(
        &self,
        collection: &str,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> bool {
        let key = (
            collection.to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        let mut store = lock(&self.inner.store);
        let Some(mut obj) = store.objects.get(&key).cloned() else {
            return false;
        };
        f(&mut obj);
        store.update(key, obj, &|_, _| {});
        true
    }

    /// Deletes an object as a user would (with garbage collection).
    pub fn remove(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.inner.store).delete(&(collection.into(), namespace.into(), name.into()))
    }

    fn handle(
        &self,
        method: Method,
        path: &str,
        query: &HashMap<String, String>,
        content_type: &str,
        body: &[u8],
    ) -> Response<FakeBody> {
        lock(&self.inner.calls).push(Call {
            method: method.clone(),
            path: path.to_string(),
        });
        if let Some(status) = self.fault(&method, path) {
            return status_response(status, "InternalError", "injected fault");
        }
        let Some(route) = parse(path) else {
            return status_response(404, "NotFound", "unknown path");
        };
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return status_response(400, "BadRequest", &e.to_string()),
            }
        };
        let ready = self
            .inner
            .ready_statefulsets
            .load(std::sync::atomic::Ordering::Relaxed);
        let fixup = move |collection: &str, obj: &mut Value| {
            if ready && collection == "apps/v1/statefulsets" {
                mark_ready(obj);
            }
        };
        if route.collection == "authentication.k8s.io/v1/tokenreviews" && method == Method::POST {
            return self.token_review(&body);
        }
        let ns = route.namespace.clone().unwrap_or_default();
        let mut store = lock(&self.inner.store);
        match (method, route.name.clone()) {
            (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
                drop(store);
                self.watch(&route, query)
            }
            (Method::GET, None) => {
                let selector = selector(query);
                let items = store.list(&route.collection, route.namespace.as_deref(), &selector);
                json_response(
                    200,
                    &json!({
                        "apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": store.version.to_string()},
                        "items": items,
                    }),
                )
            }
            (Method::GET, Some(name)) => match store.objects.get(&(route.collection, ns, name)) {
                Some(obj) => json_response(200, obj),
                None => status_response(404, "NotFound", "not found"),
            },
            (Method::POST, None) => {
                let Some(name) = body["metadata"]["name"].as_str().map(String::from) else {
                    return status_response(422, "Invalid", "metadata.name is required");
                };
                let key = (route.collection, ns, name);
                if store.objects.contains_key(&key) {
                    return status_response(409, "AlreadyExists", "already exists");
                }
                json_response(201, &store.create(key, body, &fixup))
            }
            (Method::PATCH | Method::PUT, Some(name)) => {
                let key = (route.collection, ns, name);
                let existing = store.objects.get(&key).cloned();
                if let (Some(old), Some(rv)) =
                    (&existing, body["metadata"]["resourceVersion"].as_str())
                {
                    if old["metadata"]["resourceVersion"].as_str() != Some(rv) {
                        return status_response(409, "Conflict", "the object has been modified");
                    }
                }
                let apply = content_type.starts_with("application/apply-patch");
                let status_only = route.sub.as_deref() == Some("status");
                let new = match (existing, status_only) {
                    (None, true) => return status_response(404, "NotFound", "not found"),
                    (None, false) if apply => body,
                    (None, false) => return status_response(404, "NotFound", "not found"),
                    (Some(mut old), true) => {
                        old["status"] = body.get("status").cloned().unwrap_or(Value::Null);
                        old
                    }
                    (Some(mut old), false) => {
                        if content_type.starts_with("application/json-patch") {
                            return status_response(
                                415,
                                "UnsupportedMediaType",
                                "JSON patch is not supported",
                            );
                        }
                        merge(&mut old, &body);
                        old
                    }
                };
                json_response(200, &store.update(key, new, &fixup))
            }
            (Method::DELETE, Some(name)) => match store.delete(&(route.collection, ns, name)) {
                Some(obj) => json_response(200, &obj),
                None => status_response(404, "NotFound", "not found"),
            },
            _ => status_response(405, "MethodNotAllowed", "not supported by the fake API"),
        }
    }

    /// `authentication.k8s.io/v1` TokenReview: authenticated when the token
    /// was added with [`FakeApi::add_token`].
    fn token_review(&self, review: &Value) -> Response<FakeBody> {
        let token = review["spec"]["token"].as_str().unwrap_or_default();
        let wanted: Vec<String> = review["spec"]["audiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let audiences = match lock(&self.inner.token_audiences).get(token) {
            Some(own) if !wanted.is_empty() => {
                wanted.iter().filter(|a| *a == own).cloned().collect()
            }
            _ => wanted.clone(),
        };
        let owner = lock(&self.inner.tokens).get(token).cloned();
        let owner = owner.filter(|_| wanted.is_empty() || !audiences.is_empty());
        let status = match owner {
            Some((ns, sa, pod)) => {
                let mut extra = serde_json::Map::new();
                if let Some(pod) = pod {
                    extra.insert("authentication.kubernetes.io/pod-name".into(), json!([pod]));
                }
                json!({
                    "authenticated": true,
                    "user": {
                        "username": format!("system:serviceaccount:{ns}:{sa}"),
                        "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}")],
                        "extra": extra,
                    },
                    "audiences": audiences,
                })
            }
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        json_response(
            201,
            &json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "metadata": {"creationTimestamp": null},
                "spec": review["spec"].clone(),
                "status": status,
            }),
        )
    }

    fn fault(&self, method: &Method, path: &str) -> Option<u16> {
        let mut faults = lock(&self.inner.faults);
        let hit = faults.iter_mut().find(|f| {
            f.times > 0
                && f.method.as_ref().is_none_or(|m| m == method)
                && path.contains(&f.path_contains)
        })?;
        hit.times -= 1;
        Some(hit.status)
    }

    fn watch(&self, route: &Route, query: &HashMap<String, String>) -> Response<FakeBody> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let watcher = Watcher {
            collection: route.collection.clone(),
            namespace: route.namespace.clone(),
            selector: selector(query),
            tx,
        };
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut store = lock(&self.inner.store);
        let oldest = store
            .history
            .front()
            .map(|(v, _, _)| *v)
            .unwrap_or(store.version + 1);
        if from > 0 && from + 1 < oldest {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "status": "Failure", "reason": "Expired", "message": "too old resource version", "code": 410}});
            let _ = watcher.tx.send(gone);
        } else {
            for (version, key, event) in store.history.iter() {
                if *version > from && watcher.wants(key, &event["object"]) {
                    let _ = watcher.tx.send(event.clone());
                }
            }
            store.watchers.push(watcher);
        }
        drop(store);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            let event = rx.recv().await?;
            let mut line = serde_json::to_vec(&event).unwrap_or_default();
            line.push(b'\n');
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), rx))
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(BodyExt::boxed_unsync(StreamBody::new(stream)))
            .unwrap_or_else(|_| Response::new(empty()))
    }
}

fn mark_ready(obj: &mut Value) {
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let generation = obj["metadata"]["generation"].clone();
    obj["status"] = json!({
        "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
        "updatedReplicas": replicas, "currentReplicas": replicas, "observedGeneration": generation,
    });
}

fn key_of(collection: &str, obj: &Value) -> Key {
    let meta = &obj["metadata"];
    (
        collection.to_string(),
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

fn parse(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group_version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => (version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    Some(Route {
        collection: format!("{group_version}/{plural}"),
        namespace,
        name,
        sub,
    })
}

fn selector(query: &HashMap<String, String>) -> Vec<(String, String)> {
    query
        .get("labelSelector")
        .map(|s| {
            s.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim_end_matches('=').to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn empty() -> FakeBody {
    BodyExt::boxed_unsync(Full::new(Bytes::new()))
}

fn json_response(status: u16, value: &Value) -> Response<FakeBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(BodyExt::boxed_unsync(Full::new(Bytes::from(bytes))))
        .unwrap_or_else(|_| Response::new(empty()))
}

fn status_response(code: u16, reason: &str, message: &str) -> Response<FakeBody> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": reason, "message": message, "code": code}),
    )
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

impl tower::Service<Request<kube::client::Body>> for FakeApi {
    type Response = Response<FakeBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match body.collect_bytes().await {
                Ok(b) => b,
                Err(e) => return Ok(status_response(400, "BadRequest", &e.to_string())),
            };
            let query = parse_query(parts.uri.query());
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            Ok(this.handle(
                parts.method,
                parts.uri.path(),
                &query,
                &content_type,
                &bytes,
            ))
        })
    }
}

#[cfg(test)]
mod tests;
