//! HTTP clients: pooled HTTP/2 to other sidecars (h2c, or h2 over mutual
//! TLS when the mesh has a trust anchor), pooled HTTP/1.1 to the local app. Connect failures are wrapped in the resilience crate's
//! `ConnectError` so retries know that nothing was sent.

use std::time::Duration;

use http::{Request, Response, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use shardmesh_resilience::{BoxError, ConnectError};

use crate::body::{boxed, BoxBody};

/// Time to establish a TCP connection before calling it a connect failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A pooled client; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    inner: Inner,
    version: Version,
}

#[derive(Clone)]
enum Inner {
    Plain(Client<HttpConnector, BoxBody>),
    Tls(Client<hyper_rustls::HttpsConnector<HttpConnector>, BoxBody>),
}

impl HttpClient {
    /// HTTP/2 with prior knowledge, one multiplexed connection per peer.
    pub fn h2c() -> Self {
        Self {
            inner: Inner::Plain(h2_builder().build(connector())),
            version: Version::HTTP_2,
        }
    }

    /// HTTP/2 over mutual TLS 1.3 (ALPN h2), one multiplexed connection per
    /// peer. The certificate comes from the config's resolver at each
    /// handshake, so renewal needs no new client.
    pub fn h2_tls(config: &rustls::ClientConfig) -> Self {
        let mut config = config.clone();
        // The connector sets ALPN itself.
        config.alpn_protocols.clear();
        let mut http = connector();
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http2()
            .wrap_connector(http);
        Self {
            inner: Inner::Tls(h2_builder().build(https)),
            version: Version::HTTP_2,
        }
    }

    /// HTTP/1.1 with keep-alive, for the local app.
    pub fn http1() -> Self {
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024);
        Self {
            inner: Inner::Plain(builder.build(connector())),
            version: Version::HTTP_11,
        }
    }

    /// Sends `req` to `authority` (`host:port`), keeping its path and query.
    pub async fn send(
        &self,
        authority: &str,
        mut req: Request<BoxBody>,
    ) -> Result<Response<BoxBody>, BoxError> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let scheme = match self.inner {
            Inner::Plain(_) => "http",
            Inner::Tls(_) => "https",
        };
        let uri: Uri = format!("{scheme}://{authority}{path}").parse()?;
        *req.uri_mut() = uri;
        // The version of the hop, not of the caller's request.
        *req.version_mut() = self.version;
        let sent = match &self.inner {
            Inner::Plain(c) => c.request(req).await,
            Inner::Tls(c) => c.request(req).await,
        };
        match sent {
            Ok(rsp) => Ok(rsp.map(boxed)),
            Err(e) if e.is_connect() => Err(Box::new(ConnectError(Box::new(e)))),
            Err(e) => Err(Box::new(e)),
        }
    }
}

/// The pooled HTTP/2 settings of the sidecar-to-sidecar hop.
fn h2_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .http2_only(true)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_adaptive_window(true)
        .http2_keep_alive_interval(Some(Duration::from_secs(10)))
        .http2_keep_alive_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90));
    builder
}

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(CONNECT_TIMEOUT));
    c.enforce_http(true);
    c
}
