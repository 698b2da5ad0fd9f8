//! Test harness: small upstream apps and in-process meshes of sidecars on
//! loopback, ports chosen by the OS.
#![allow(dead_code)]

pub mod netns;
pub mod process;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shardmesh_config::{ServiceConfig, SidecarConfig, StaticMember};
use shardmesh_sidecar::routing::RoutingTable;
use shardmesh_sidecar::{BoundAddrs, Sidecar};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// What a test app answers.
pub type Reply = (StatusCode, String);

/// A running test app.
pub struct TestApp {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

/// Starts `count` apps (pods `{service}-0`, `{service}-1`, …) answering with
/// `handler`, and the member specs that put a sidecar beside each.
pub async fn start_apps<F, Fut>(
    service: &str,
    count: usize,
    handler: F,
) -> (Vec<TestApp>, Vec<MemberSpec>)
where
    F: Fn(Request<Bytes>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let mut apps = Vec::new();
    let mut specs = Vec::new();
    for i in 0..count {
        let name = format!("{service}-{i}");
        let app = start_app(&name, handler.clone()).await;
        specs.push(MemberSpec {
            name,
            service: service.into(),
            app: app.addr,
        });
        apps.push(app);
    }
    (apps, specs)
}

/// Starts an HTTP/1.1 app on 127.0.0.1:0 answering with `handler`.
pub async fn start_app<F, Fut>(name: &str, handler: F) -> TestApp
where
    F: Fn(Request<Bytes>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let (stop, mut stopped) = oneshot::channel::<()>();
    let name = name.to_string();
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = &mut stopped => return,
            };
            let handler = handler.clone();
            let name = name.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    let name = name.clone();
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (status, text) = handler(Request::from_parts(parts, body)).await;
                        let mut rsp = Response::new(Full::new(Bytes::from(text)));
                        *rsp.status_mut() = status;
                        rsp.headers_mut().insert("x-app", name.parse().unwrap());
                        Ok::<_, Infallible>(rsp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestApp {
        addr,
        hits,
        _stop: stop,
    }
}

/// One member of a test mesh.
pub struct Member {
    pub name: String,
    pub service: String,
    pub addrs: BoundAddrs,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
    pub table: tokio::sync::watch::Sender<Arc<RoutingTable>>,
    pub tls: Option<Arc<shardmesh_sidecar::tls::MeshTls>>,
}

/// Specification of a member: pod name, service, app address.
pub struct MemberSpec {
    pub name: String,
    pub service: String,
    pub app: SocketAddr,
}

/// Starts sidecars for `specs`; every sidecar knows every service in
/// `services` with the members of the specs. `tweak` edits each config.
pub async fn start_mesh(
    specs: Vec<MemberSpec>,
    services: Vec<ServiceConfig>,
    tweak: impl Fn(&mut SidecarConfig),
) -> Vec<Member> {
    let mut bound = Vec::new();
    for spec in &specs {
        let mut config = SidecarConfig::default();
        config.pod.name = spec.name.clone();
        config.pod.service = spec.service.clone();
        config.app.address = spec.app.to_string();
        config.listeners.outbound = "127.0.0.1:0".into();
        config.listeners.inbound = "127.0.0.1:0".into();
        config.listeners.admin = "127.0.0.1:0".into();
        config.shutdown_grace_ms = 5_000;
        config.services = services.clone();
        tweak(&mut config);
        let sidecar = Sidecar::bind(config.clone()).await.unwrap();
        bound.push((config, sidecar));
    }
    // Now that every inbound port is known, publish the full static table.
    let members_of = |service: &str| -> Vec<StaticMember> {
        specs
            .iter()
            .zip(bound.iter())
            .filter(|(s, _)| s.service == service)
            .map(|(s, (_, sc))| StaticMember {
                name: s.name.clone(),
                inbound: sc.addrs().inbound.to_string(),
                admin: Some(sc.addrs().admin.to_string()),
                zone: None,
                shards: None,
            })
            .collect()
    };
    let lists: Vec<Vec<Vec<StaticMember>>> = bound
        .iter()
        .map(|(config, _)| {
            config
                .services
                .iter()
                .map(|svc| members_of(&svc.name))
                .collect()
        })
        .collect();
    let mut members = Vec::new();
    for ((spec, (mut config, sidecar)), lists) in specs.iter().zip(bound).zip(lists) {
        for (svc, list) in config.services.iter_mut().zip(lists) {
            svc.members = list;
        }
        let mut table = RoutingTable::from_static_config(&config).unwrap();
        table.version = 2;
        let table_tx = sidecar.table_sender();
        table_tx.send(Arc::new(table)).unwrap();
        let addrs = sidecar.addrs();
        let tls = sidecar.tls();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(sidecar.run(async move {
            let _ = stopped.await;
        }));
        members.push(Member {
            name: spec.name.clone(),
            service: spec.service.clone(),
            addrs,
            stop: Some(stop),
            done,
            table: table_tx,
            tls,
        });
    }
    members
}

/// A service config with `shards` shards keyed by `/accounts/{key}`.
pub fn service(name: &str, shards: u32) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        shards,
        routing: shardmesh_config::RoutingConfig {
            key_header: "x-shardmesh-key".into(),
            key_from_path: Some("/accounts/{key}".into()),
        },
        resilience: Default::default(),
        members: vec![],
    }
}

/// A plain HTTP/1.1 client for tests.
pub fn client() -> hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// A response read whole.
pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request to `addr` and reads the whole answer.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let rsp = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = rsp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Fetches the admin `/metrics` text of a member.
pub async fn metrics(member: &Member) -> String {
    send(member.addrs.admin, "GET", "/metrics", &[], "")
        .await
        .body
}

/// The value of a metric line starting with `prefix` (0 when absent).
pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it holds, failing the test after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
