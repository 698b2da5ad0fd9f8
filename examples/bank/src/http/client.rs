//! A small HTTP/1 client shared by the transfer saga and `bank-load`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Largest response body read, in bytes.
const MAX_RESPONSE: usize = 64 * 1024;

/// A pooled keep-alive HTTP/1 client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// The pooled hyper client.
    inner: Client<HttpConnector, Full<Bytes>>,
    /// Deadline of one request, connect to last body byte.
    timeout: Duration,
}

/// A response: status, headers and the (bounded) body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

/// Why no response came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The deadline passed.
    Timeout,
    /// No connection could be made: the request was certainly not sent.
    Connect(String),
    /// The connection failed after the request may have been sent.
    Transport(String),
}

// === impl HttpClient ===

impl HttpClient {
    /// A client whose requests each time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient { inner, timeout }
    }

    /// Sends `method uri` with `headers` and an optional JSON body.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(HeaderName, String)],
        json: Option<&serde_json::Value>,
    ) -> Result<Reply, SendError> {
        let body = match json {
            Some(v) => Bytes::from(v.to_string()),
            None => Bytes::new(),
        };
        let mut req = Request::builder().method(method).uri(uri);
        if json.is_some() {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in headers {
            req = req.header(name, value.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| SendError::Transport(format!("bad request: {e}")))?;
        let call = async {
            let resp = self.inner.request(req).await.map_err(|e| {
                if e.is_connect() {
                    SendError::Connect(e.to_string())
                } else {
                    SendError::Transport(e.to_string())
                }
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| SendError::Transport(format!("reading body: {e}")))?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Timeout),
        }
    }
}

// === impl Reply ===

impl Reply {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `error` field of a JSON body, if any.
    pub fn error(&self) -> Option<String> {
        self.json()
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
    }

    /// The mesh's `x-shardmesh-error` reason, if the mesh made this answer.
    pub fn mesh_error(&self) -> Option<String> {
        self.headers
            .get(crate::http::headers::ERROR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}
