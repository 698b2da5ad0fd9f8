//! Cost of the resilience layers per request, without any I/O: a no-op
//! upstream behind the full outbound stack (deadline, bulkhead, retry,
//! breaker) and behind the inbound backpressure layer, versus calling the
//! upstream directly. Run: `cargo bench -p shardmesh-resilience --bench stack`.
//! A name filter may follow: `... --bench stack -- retry`.
//! Bounded: a fixed number of requests per case, one thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use shardmesh_resilience::body::{self, BoxBody};
use shardmesh_resilience::*;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const REQUESTS: u32 = 200_000;

fn request() -> Request<BoxBody> {
    Request::get("/accounts/a")
        .header("host", "bank.shardmesh")
        .header("x-shardmesh-key", "a")
        .header("user-agent", "bench")
        .body(body::empty())
        .unwrap_or_default()
}

async fn measure<S>(name: &str, mut svc: S)
where
    S: Service<Request<BoxBody>, Response = Response<()>>,
    S::Error: std::fmt::Debug,
{
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    if filter.is_some_and(|f| !name.contains(&f)) {
        return;
    }
    // Warm up, then time a fixed number of sequential requests.
    for _ in 0..1_000 {
        let _ = svc.ready().await.map(|s| s.call(request()));
    }
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    for _ in 0..REQUESTS {
        let rsp = svc.ready().await.expect("ready").call(request()).await;
        assert!(rsp.is_ok());
    }
    let wall = start.elapsed().as_nanos() as u64 / u64::from(REQUESTS);
    match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) => {
            let cpu = (b - a) / u64::from(REQUESTS);
            println!("{name:<44} {cpu:>6} ns CPU/request ({wall} ns wall)");
        }
        _ => println!("{name:<44} {wall:>6} ns wall/request"),
    }
}

/// CPU time of this thread in ns (Linux schedstat), so other processes on a
/// shared machine do not inflate the figures the way wall time does.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn upstream(
) -> impl Service<Request<BoxBody>, Response = Response<()>, Error = BoxError, Future: Send>
       + Clone
       + Send
       + 'static {
    tower::service_fn(|_req: Request<BoxBody>| async { Ok::<_, BoxError>(Response::new(())) })
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let observer: SharedObserver = Arc::new(NoopObserver);
        measure("direct", upstream()).await;

        let breakers = Breakers::new(BreakerSettings::default(), observer.clone());
        let bulkheads = Bulkheads::new(observer.clone());
        let outbound = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(10)))
            .layer(BulkheadLayer::new(
                bulkheads.get("bank", BulkheadSettings::default()),
            ))
            .layer(RetryLayer::new(
                "bank",
                RetrySettings::default(),
                observer.clone(),
            ))
            .map_request(|mut req: Request<BoxBody>| {
                req.extensions_mut().insert(Peer("bank-0".into()));
                req
            })
            .layer(BreakerLayer::new(breakers))
            .service(upstream());
        measure("outbound: deadline+bulkhead+retry+breaker", outbound).await;

        let peer: Arc<str> = "bank-0".into();
        let with_peer = move |mut req: Request<BoxBody>| {
            req.extensions_mut().insert(Peer(peer.clone()));
            req
        };
        measure(
            "deadline alone",
            DeadlineLayer::new(Duration::from_secs(10)).layer(upstream()),
        )
        .await;
        let b = Bulkheads::new(observer.clone()).get("bank", BulkheadSettings::default());
        measure("bulkhead alone", BulkheadLayer::new(b).layer(upstream())).await;
        let retry = RetryLayer::new("bank", RetrySettings::default(), observer.clone());
        measure("retry alone (no deadline)", retry.layer(upstream())).await;
        let retry = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(10)))
            .layer(RetryLayer::new(
                "bank",
                RetrySettings::default(),
                observer.clone(),
            ))
            .service(upstream());
        measure("deadline+retry", retry).await;
        let breakers = Breakers::new(BreakerSettings::default(), observer.clone());
        let breaker = ServiceBuilder::new()
            .map_request(with_peer)
            .layer(BreakerLayer::new(breakers))
            .service(upstream());
        measure("breaker alone (shared peer name)", breaker).await;

        let inbound = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(10)))
            .layer(BackpressureLayer::new(
                "bank",
                BackpressureSettings::default(),
                observer.clone(),
            ))
            .service(upstream());
        measure("inbound: deadline+backpressure", inbound).await;
    });
}
