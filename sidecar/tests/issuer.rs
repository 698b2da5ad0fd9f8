//! The sidecar's identity-endpoint client: a sidecar with `tls.issuer`
//! generates its key in memory, gets its certificate by CSR with its token,
//! serves mTLS with it, and renews it at 70 % of the lifetime while traffic
//! keeps flowing. A refused token stops the start with a clear error.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use shardmesh_config::{IssuerConfig, TlsConfig};
use shardmesh_identity::ca::LeafSpec;
use shardmesh_identity::{Authority, CertStore, LeafKey, SpiffeId};
use support::*;

const TD: &str = "mesh.test";
const TOKEN: &str = "token-of-bank";

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardmesh-issuer-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A stand-in for the operator's endpoint: signs CSRs for `sa/bank` with
/// `life`, for bearer `TOKEN` only. Returns its URL and the issue count.
async fn start_issuer(ca: Arc<Authority>, life: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let key = LeafKey::generate().unwrap();
    let id = SpiffeId::new(TD, "shardmesh", "operator").unwrap();
    let cert = ca
        .issue_for_key(
            key.key_pair(),
            &LeafSpec::new(id, vec!["localhost".into()], Duration::from_secs(3600)),
        )
        .unwrap();
    let store = Arc::new(CertStore::from_pem(cert.as_bytes(), key.key_pem().as_bytes()).unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(
        shardmesh_identity::tls::endpoint_server_config(store).unwrap(),
    );
    let issued = Arc::new(AtomicUsize::new(0));
    let count = issued.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, ca, count) = (acceptor.clone(), ca.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (ca, count) = (ca.clone(), count.clone());
                    async move {
                        let ok = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            == Some(&format!("Bearer {TOKEN}"));
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let (status, text) = if !ok {
                            (StatusCode::UNAUTHORIZED, "bad token".to_string())
                        } else {
                            let id = SpiffeId::new(TD, "shop", "bank").unwrap();
                            let now = time::OffsetDateTime::now_utc();
                            let spec = LeafSpec {
                                id,
                                dns_names: vec![],
                                not_before: now,
                                not_after: now + life,
                            };
                            count.fetch_add(1, Ordering::SeqCst);
                            (
                                StatusCode::OK,
                                ca.issue_from_csr(std::str::from_utf8(&body).unwrap(), &spec)
                                    .unwrap(),
                            )
                        };
                        let mut rsp = Response::new(Full::new(Bytes::from(text)));
                        *rsp.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(rsp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://localhost:{}", addr.port()), issued)
}

fn tls(dir: &Path, url: &str, token: &str) -> TlsConfig {
    let token_file = dir.join(format!("token-{token}"));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    TlsConfig {
        trust_domain: TD.into(),
        ca_file: dir.join("ca.crt").display().to_string(),
        cert_file: None,
        key_file: None,
        issuer: Some(IssuerConfig {
            url: url.into(),
            token_file: token_file.display().to_string(),
        }),
        allowed_identities: vec![],
        handshake_timeout_ms: 2000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_by_csr_at_start_and_renewed_at_seventy_percent_under_traffic() {
    let dir = scratch("renew");
    let ca = Arc::new(Authority::generate(TD).unwrap());
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    // 3 s certificates: renewal due 2.1 s after each issue.
    let (url, issued) = start_issuer(ca.clone(), Duration::from_secs(3)).await;
    let mut apps = Vec::new();
    let mut specs = Vec::new();
    for i in 0..2 {
        let name = format!("bank-{i}");
        apps.push(start_app(&name, |_| async { (StatusCode::OK, "ok".to_string()) }).await);
        specs.push(MemberSpec {
            name,
            service: "bank".into(),
            app: apps[i].addr,
        });
    }
    let (d, u) = (dir.clone(), url.clone());
    let members = start_mesh(specs, vec![service("bank", 8)], move |c| {
        c.tls = Some(tls(&d, &u, TOKEN));
    })
    .await;
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "one CSR per sidecar at start"
    );
    let first = members[0].tls.as_ref().unwrap().info();
    assert_eq!(first.id.uri(), "spiffe://mesh.test/ns/shop/sa/bank");
    // Steady traffic across two renewals of both sidecars: nothing fails.
    let (mut ok, mut failed) = (0usize, Vec::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut i = 0usize;
    while issued.load(Ordering::SeqCst) < 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "renewals did not happen: {} issued",
            issued.load(Ordering::SeqCst)
        );
        let got = send(
            members[i % 2].addrs.outbound,
            "GET",
            &format!("/accounts/k{i}"),
            &[("x-shardmesh-service", "bank")],
            "",
        )
        .await;
        if got.status == StatusCode::OK {
            ok += 1;
        } else {
            failed.push(format!("{} {}", got.status, got.body));
        }
        i += 1;
    }
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(3)]
    );
    let now = members[0].tls.as_ref().unwrap().info();
    assert!(now.not_after > first.not_after);
    // Renewed no earlier than 70 % into the first certificate's life.
    assert!(std::time::SystemTime::now() >= first.renew_at());
    println!(
        "issuer: {} certificates issued, {ok} requests, 0 failed",
        issued.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_refused_token_stops_the_start_with_a_clear_error() {
    let dir = scratch("refused");
    let ca = Arc::new(Authority::generate(TD).unwrap());
    std::fs::write(dir.join("ca.crt"), ca.cert_pem()).unwrap();
    let (url, issued) = start_issuer(ca, Duration::from_secs(3600)).await;
    let mut c = shardmesh_config::SidecarConfig::default();
    c.pod.name = "bank-0".into();
    c.pod.service = "bank".into();
    c.listeners.outbound = "127.0.0.1:0".into();
    c.listeners.inbound = "127.0.0.1:0".into();
    c.listeners.admin = "127.0.0.1:0".into();
    c.services = vec![service("bank", 4)];
    c.tls = Some(tls(&dir, &url, "stolen"));
    let err = match shardmesh_sidecar::Sidecar::bind(c).await {
        Ok(_) => panic!("started with a refused token"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("refused the CSR (401"), "{err}");
    assert_eq!(issued.load(Ordering::SeqCst), 0);
}
